#!/usr/bin/env bash
# Sets up and runs every test: unit tests, integration tests against real
# clickhouse-server processes the tests start themselves, and the real binary.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo test --locked --lib --bins --tests "$@"
