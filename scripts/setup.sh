#!/usr/bin/env bash
# Installs what tokenbridge and its tests need on a fresh Debian machine:
# ClickHouse (Debian's clickhouse-server) and, for the comparison tests and the
# benchmark, ccusage pinned to 20.0.24 from the npm registry.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
[ -x /usr/sbin/clickhouse-server ] || need_apt+=(clickhouse-server)
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ "${TOKENBRIDGE_SKIP_CCUSAGE:-0}" != 1 ] && [ ! -x .tools/ccusage/node_modules/.bin/ccusage ]; then
  if command -v npm >/dev/null 2>&1; then
    echo "setup: installing ccusage@20.0.24 into .tools/ccusage" >&2
    mkdir -p .tools/ccusage
    (cd .tools/ccusage && npm install --silent --no-audit --no-fund ccusage@20.0.24 >/dev/null)
    # The package's launcher makes its native binary executable on first use;
    # the benchmark runs that binary directly.
    chmod +x .tools/ccusage/node_modules/@ccusage/ccusage-linux-x64/bin/ccusage 2>/dev/null || true
  else
    echo "setup: npm not found; ccusage comparisons will be skipped" >&2
  fi
fi
