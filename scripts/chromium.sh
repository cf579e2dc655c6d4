#!/usr/bin/env bash
# Runs the installed Chromium headless with the flags this project's browser tests need:
# no sandbox (tests run as root), no GPU, no background connections (the test machines have
# no outside network), a fresh profile in a temporary folder removed on exit.
#
#   scripts/chromium.sh --screenshot=out.png --window-size=1280,800 http://127.0.0.1:9100/
#   scripts/chromium.sh --dump-dom http://127.0.0.1:9100/
#
# All arguments are passed on to Chromium after those flags.
set -euo pipefail
bin=$("$(dirname "$0")/install-chromium.sh")
profile=$(mktemp -d "${TMPDIR:-/tmp}/sustenet-chromium.XXXXXX")
trap 'rm -rf "$profile"' EXIT
"$bin" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --disable-dev-shm-usage --user-data-dir="$profile" "$@"
