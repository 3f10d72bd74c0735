#!/usr/bin/env bash
# Installs what tokenbridge and its tests need on a fresh Debian machine:
# ClickHouse (Debian's clickhouse-server), systemd's tools, Chromium (the
# dashboard tests) and ZooKeeper (the cluster tests); for the comparison tests and the
# benchmark, ccusage pinned to 20.0.24 from the npm registry; for the modern
# ClickHouse compatibility suite (tests/compat.rs), the ClickHouse engines
# that chdb embeds, one virtualenv each under .tools/chdb.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
[ -x /usr/sbin/clickhouse-server ] || need_apt+=(clickhouse-server)
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
# The dashboard tests load the page in a real browser (not needed to run).
if [ "${TOKENBRIDGE_SKIP_BROWSER:-0}" != 1 ]; then
  command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
fi
# The cluster tests run ZooKeeper 3.8 (and Java, which it pulls in).
if [ "${TOKENBRIDGE_SKIP_CLUSTER:-0}" != 1 ]; then
  [ -f /usr/share/java/zookeeper.jar ] || need_apt+=(zookeeper)
fi
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

# Modern ClickHouse engines, in-process (see tests/compat.rs): the oldest chdb
# that reports 23.x, then 24.8, 25.8 and 26.9. Installed side by side.
if [ "${TOKENBRIDGE_SKIP_CHDB:-0}" != 1 ]; then
  pids=()
  for spec in chdb==0.11.5 chdb==2.1.1 chdb==3.7.2 chdb-core==26.9.0; do
    dir=".tools/chdb/${spec/==/-}"
    if [ -x "$dir/bin/python" ] && "$dir/bin/python" -c 'import chdb' 2>/dev/null; then
      continue
    fi
    echo "setup: installing $spec into $dir" >&2
    ( rm -rf "$dir" && python3 -m venv "$dir" \
        && "$dir/bin/pip" install --quiet --disable-pip-version-check "$spec" ) &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
fi
