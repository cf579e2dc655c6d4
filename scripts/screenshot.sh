#!/usr/bin/env bash
# Takes docs/images/demo.png: a real screenshot of two demo clients in the same cluster,
# seeing each other, rendered by Godot under Xvfb with Mesa's software OpenGL.
# Run by hand (not in CI):
#
#   scripts/screenshot.sh [--no-build] [output.png]
#
# Starts a `sustenet master` with fresh keys in a temp folder, the demo cluster scene in a
# headless Godot, then two demo clients (bob, then alice) on a private Xvfb display; both log
# in, join the cluster, walk around and say hello; alice saves her window once she has seen
# bob for a moment. Everything started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
no_build=0; out="$REPO/docs/images/demo.png"
for a in "$@"; do
    case "$a" in
        --no-build) no_build=1 ;;
        -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "screenshot.sh: unknown flag $a" >&2; exit 2 ;;
        *) out=$(realpath -m "$a") ;;
    esac
done
say() { printf 'screenshot: %s\n' "$*"; }
die() { printf 'screenshot: error: %s\n' "$*" >&2; exit 1; }

if [ "$no_build" -eq 0 ]; then
    scripts/install-godot.sh
    scripts/build-godot.sh --debug-only
    cargo build -p sustenet-cli
fi
command -v Xvfb >/dev/null || die "Xvfb not found (apt-get install xvfb; scripts/install-godot.sh does it)"
SUSTENET="${CARGO_TARGET_DIR:-$REPO/target}/debug/sustenet"
GODOT="$REPO/scripts/godot.sh"
PROJECT="$REPO/demo_project"
mkdir -p "$PROJECT/.godot" "$(dirname "$out")"
[ -e "$PROJECT/.godot/extension_list.cfg" ] || {
    echo 'res://addons/sustenet/sustenet.gdextension' >"$PROJECT/.godot/extension_list.cfg"
    timeout 180 "$GODOT" --headless --path "$PROJECT" --import >/dev/null 2>&1 || true
}

T=$(mktemp -d /tmp/sustenet-screenshot.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null || true; done
    sleep 0.3
    for p in "${pids[@]}"; do kill -KILL -- "-$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf "$T"
}
trap cleanup EXIT
bg() { local log=$1; shift; setsid "$@" >"$log" 2>&1 & pids+=("$!"); }
wait_line() {  # wait_line <file> <regex> <seconds>
    for _ in $(seq $(( $3 * 5 ))); do grep -qE "$2" "$1" 2>/dev/null && return 0; sleep 0.2; done
    echo "--- $1"; tail -30 "$1"; die "timed out waiting for '$2' in $1"
}
port() { echo $(( 30000 + RANDOM % 20000 )); }

MP=$(port); CP=$((MP + 1))
"$SUSTENET" keygen --dir "$T/keys" --master >/dev/null
"$SUSTENET" keygen --dir "$T/keys" --name demo_cluster >/dev/null
PUB=$(tr -d '[:space:]' <"$T/keys/master.pub")
printf '[all]\nport = %s\nbind = "127.0.0.1"\nkey_dir = "%s"\n[master]\nkey_file = "%s"\n' \
    "$MP" "$T/keys" "$T/keys/master.key" >"$T/master.toml"
bg "$T/master.log" "$SUSTENET" master --config "$T/master.toml"
say "master on 127.0.0.1:$MP"
bg "$T/cluster.log" "$GODOT" --headless --path "$PROJECT" res://cluster/cluster.tscn -- \
    --master-port="$MP" --key-name=demo_cluster --key-path="$T/keys/demo_cluster" --port="$CP" --name="Demo Cluster"
wait_line "$T/cluster.log" 'cluster id=' 40
say "demo cluster registered"

d=90; while [ -e "/tmp/.X11-unix/X$d" ] || [ -e "/tmp/.X$d-lock" ]; do d=$((d + 1)); done
bg "$T/xvfb.log" Xvfb ":$d" -screen 0 1280x720x24 -nolisten tcp
for _ in $(seq 50); do [ -e "/tmp/.X11-unix/X$d" ] && break; sleep 0.1; done
export DISPLAY=":$d"
say "Xvfb on $DISPLAY"

common=(--rendering-driver opengl3 --path "$PROJECT" -- --master="127.0.0.1:$MP" --key="$PUB" --quit-after=120)
bg "$T/bob.log" "$GODOT" "${common[@]}" --user=bob --auto --autopilot --say="hi alice!"
wait_line "$T/cluster.log" 'bob joined' 60
say "bob is in; starting alice"
rm -f "$out"
timeout 150 "$GODOT" "${common[@]}" --user=alice --say="hello bob, I can see you" --screenshot="$out" >"$T/alice.log" 2>&1 || true
grep -q 'screenshot .* -> OK' "$T/alice.log" || { tail -40 "$T/alice.log"; die "no screenshot"; }
say "saved $out ($(stat -c %s "$out") bytes)"
