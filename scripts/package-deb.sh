#!/usr/bin/env bash
# Builds the Debian package: target/debian/tokenbridge_<version>_<arch>.deb.
#
#   scripts/package-deb.sh                   # release build, then the package
#   TOKENBRIDGE_BIN=path scripts/package-deb.sh   # package an already built binary
#
# The package installs /usr/bin/tokenbridge, the system unit
# (/lib/systemd/system/tokenbridge.service) and the user unit
# (/usr/lib/systemd/user/tokenbridge.service), a sysusers.d entry for the
# `tokenbridge` user and a tmpfiles.d entry for /var/spool/tokenbridge and
# /var/lib/tokenbridge, and a commented config /etc/tokenbridge/config.toml
# (a conffile: upgrades keep local edits). Installing starts nothing.
# Built with dpkg-deb, which every Debian machine has.
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
bin=${TOKENBRIDGE_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release --locked --bin tokenbridge
  bin=target/release/tokenbridge
fi

out=target/debian
stage=$out/tokenbridge_${version}_${arch}
rm -rf "$stage"
install -d "$stage/DEBIAN" "$stage/usr/bin" "$stage/lib/systemd/system" \
  "$stage/usr/lib/systemd/user" "$stage/usr/lib/sysusers.d" "$stage/usr/lib/tmpfiles.d" \
  "$stage/etc/tokenbridge" "$stage/usr/share/doc/tokenbridge"
install -m 0755 "$bin" "$stage/usr/bin/tokenbridge"
# Debian packages ship stripped binaries (as dh_strip does).
if command -v strip >/dev/null 2>&1; then
  strip --strip-unneeded "$stage/usr/bin/tokenbridge"
fi
sed 's|/usr/local/bin/tokenbridge|/usr/bin/tokenbridge|' systemd/tokenbridge.service \
  > "$stage/lib/systemd/system/tokenbridge.service"
sed 's|%h/.local/bin/tokenbridge|/usr/bin/tokenbridge|' systemd/tokenbridge-user.service \
  > "$stage/usr/lib/systemd/user/tokenbridge.service"
install -m 0644 packaging/deb/sysusers.conf "$stage/usr/lib/sysusers.d/tokenbridge.conf"
install -m 0644 packaging/deb/tmpfiles.conf "$stage/usr/lib/tmpfiles.d/tokenbridge.conf"
install -m 0644 packaging/deb/config.toml "$stage/etc/tokenbridge/config.toml"
install -m 0644 README.md "$stage/usr/share/doc/tokenbridge/README.md"
install -m 0644 docs/reference/config.md "$stage/usr/share/doc/tokenbridge/config.md"
install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$stage/DEBIAN/"
echo /etc/tokenbridge/config.toml > "$stage/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<CONTROL
Package: tokenbridge
Version: $version
Architecture: $arch
Maintainer: tokenbridge developers <tokenbridge@localhost>
Installed-Size: $size
Depends: libc6, adduser | systemd
Recommends: systemd
Suggests: clickhouse-server
Section: utils
Priority: optional
Homepage: https://github.com/tokenbridge/tokenbridge
Description: exact coding-agent token usage into ClickHouse
 tokenbridge tails coding agents' session transcripts (Claude Code, Codex CLI,
 Gemini CLI, Copilot CLI, Qwen Code, Kimi, Grok Build, pi, OpenClaw), counts
 their token usage exactly, deduplicates it, and loads it into ClickHouse,
 one server or a cluster for a team.
CONTROL
dpkg-deb --root-owner-group --build "$stage" "$out/" >/dev/null
echo "$out/tokenbridge_${version}_${arch}.deb"
