#!/usr/bin/env bash
# Sets up and runs the daemon on its managed local ClickHouse, watching
# ~/.claude (edit config.toml to change that). Stop it with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
TOKENBRIDGE_SKIP_CCUSAGE=1 ./scripts/setup.sh
cargo build --release --locked
exec ./target/release/tokenbridge run --config config.toml "$@"
