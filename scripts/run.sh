#!/usr/bin/env bash
# Sets up and runs the daemon on its managed local ClickHouse, watching
# ~/.claude (edit config.toml to change that). Stop it with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
# Only what running needs: no ccusage, no chdb engines, no browser, no ZooKeeper (those are for the tests).
TOKENBRIDGE_SKIP_CCUSAGE=1 TOKENBRIDGE_SKIP_CHDB=1 TOKENBRIDGE_SKIP_BROWSER=1 TOKENBRIDGE_SKIP_CLUSTER=1 ./scripts/setup.sh
cargo build --release --locked
exec ./target/release/tokenbridge run --config config.toml "$@"
