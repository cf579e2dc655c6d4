#!/usr/bin/env bash
# Installs Debian's headless-capable Chromium on the host (package `chromium`) for the browser
# tests (the dashboard page, the WebSocket client page) and prints the path of the binary.
# Idempotent: an installed Chromium is kept.
#
#   scripts/install-chromium.sh          # -> /usr/bin/chromium
#
# Needs root and apt-get on a Debian-based host. Run Chromium through scripts/chromium.sh,
# which adds the flags a closed network and a root user need.
set -euo pipefail
log() { printf '[install-chromium] %s\n' "$*" >&2; }
die() { printf '[install-chromium] ERROR: %s\n' "$*" >&2; exit 1; }
# shellcheck source-path=SCRIPTDIR source=lib/debian-host.sh
. "$(dirname "$0")/lib/debian-host.sh"

bin=/usr/bin/chromium
if [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; then echo "$bin"; exit 0; fi
[ "$(id -u)" -eq 0 ] || die "Chromium is not installed and installing it needs root (apt-get install chromium)"
command -v apt-get >/dev/null || die "Chromium is not installed and this host has no apt-get"
host_install chromium fonts-dejavu-core >&2
[ -x "$bin" ] || die "apt-get installed chromium but $bin is missing"
log "$("$bin" --version 2>/dev/null)"
echo "$bin"
