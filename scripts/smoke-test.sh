#!/usr/bin/env bash
# Smoke test of the addon as a Godot developer installs it, on any desktop platform (bash 3.2
# of macOS and Git Bash on Windows included):
#
#   1. a brand-new project: project.godot, addons/sustenet/ copied from this repository (with
#      whatever libraries are in addons/sustenet/bin/), and demo_project/tests/test_smoke.gd;
#   2. `godot --headless --import` of it must exit 0;
#   3. `sustenet up` on 127.0.0.1 (a master and two clusters, dev keys in the temp folder);
#   4. test_smoke.gd in Godot: the extension is loaded, its classes exist, a SustenetClient
#      logs in, lists the clusters and joins one. Must print `SMOKE OK` and exit 0.
#
#   scripts/smoke-test.sh <godot-command> <sustenet-command>
#   scripts/smoke-test.sh scripts/godot.sh target/debug/sustenet          # this machine
#   scripts/smoke-test.sh "$PWD/Godot_v4.6-stable_win64_console.exe" target/release/sustenet.exe
#
# Exit status 0 when every step passed; the failing step's log is printed otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

say() { printf 'smoke-test: %s\n' "$*"; }
die() { printf 'smoke-test: FAIL: %s\n' "$*" >&2; exit 1; }
[ $# -eq 2 ] || { awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; exit 2; }
GODOT=$1
SUSTENET=$2
case "$GODOT" in /*|[A-Za-z]:*) ;; *) GODOT="$REPO/$GODOT" ;; esac
case "$SUSTENET" in /*|[A-Za-z]:*) ;; *) SUSTENET="$REPO/$SUSTENET" ;; esac
[ -e "$GODOT" ] || die "Godot not found: $GODOT"
[ -e "$SUSTENET" ] || die "sustenet not found: $SUSTENET"
ls addons/sustenet/bin/* >/dev/null 2>&1 || die "addons/sustenet/bin/ holds no library (build it first)"

# Git Bash on Windows: hand native programs Windows paths, and no argument rewriting.
native() { if command -v cygpath >/dev/null 2>&1; then cygpath -w "$1"; else printf '%s' "$1"; fi; }
command -v cygpath >/dev/null 2>&1 && export MSYS_NO_PATHCONV=1

T=$(mktemp -d "${TMPDIR:-/tmp}/sustenet-smoke.XXXXXX")
UP_PID=""
cleanup() {
    if [ -n "$UP_PID" ]; then kill "$UP_PID" 2>/dev/null || true; wait "$UP_PID" 2>/dev/null || true; fi
    rm -rf "$T"
}
trap cleanup EXIT

# --- 1. a fresh project --------------------------------------------------------------------
P="$T/project"
mkdir -p "$P/addons"
cat >"$P/project.godot" <<'EOF'
config_version=5

[application]

config/name="Sustenet smoke test"
EOF
cp -R addons/sustenet "$P/addons/sustenet"
cp demo_project/tests/test_smoke.gd "$P/test_smoke.gd"
say "fresh project in $P with $(cd addons/sustenet/bin && ls | tr '\n' ' ')"

# --- 2. first import ---------------------------------------------------------------------------
say "godot --headless --import (first import of the project)"
rc=0; "$GODOT" --headless --path "$(native "$P")" --import >"$T/import.log" 2>&1 || rc=$?
if [ $rc -ne 0 ]; then tail -n 60 "$T/import.log"; die "the first import exited $rc"; fi

# --- 3. sustenet up ----------------------------------------------------------------------------
port=$(( 20000 + (RANDOM % 20000) ))
"$SUSTENET" up --dir "$(native "$T/dev")" --port "$port" --bind 127.0.0.1 >"$T/up.log" 2>&1 &
UP_PID=$!
i=0
until [ -s "$T/dev/client.toml" ] && grep -q public_key "$T/dev/client.toml"; do
    i=$((i + 1))
    kill -0 "$UP_PID" 2>/dev/null || { cat "$T/up.log"; die "sustenet up exited"; }
    [ $i -lt 300 ] || { cat "$T/up.log"; die "sustenet up wrote no client.toml within 30 s"; }
    sleep 0.1
done
key=$(sed -n 's/^public_key *= *"\(.*\)".*/\1/p' "$T/dev/client.toml")
[ -n "$key" ] || { cat "$T/dev/client.toml"; die "no public_key in client.toml"; }
say "sustenet up on 127.0.0.1:$port (pid $UP_PID)"

# --- 4. the smoke test in Godot ----------------------------------------------------------------
rc=0
"$GODOT" --headless --path "$(native "$P")" -s res://test_smoke.gd -- --master-port="$port" --master-key="$key" \
    >"$T/smoke.log" 2>&1 || rc=$?
grep -E '^(PASS|FAIL|smoke):' "$T/smoke.log" | sed 's/^/  /' || true
why=""
[ $rc -eq 0 ] || why="exit code $rc"
grep -q '^SMOKE OK' "$T/smoke.log" || why="$why, no SMOKE OK"
grep -q 'SCRIPT ERROR' "$T/smoke.log" && why="$why, SCRIPT ERROR"
grep -qF '[panic ' "$T/smoke.log" && why="$why, Rust panic"
if [ -n "$why" ]; then
    echo "----- Godot log -----"; tail -n 80 "$T/smoke.log"
    echo "----- sustenet up log -----"; tail -n 30 "$T/up.log"
    die "${why#, }"
fi
printf 'smoke: 1 passed, 0 failed\n'
