#!/usr/bin/env bash
# Godot's ENet and Sustenet side by side on the MMO job (docs/performance.md, "Side by side
# with Godot's ENet"): N clients at 20 Hz, each position delivered to about 10 others, one
# reliable echo per second; the server pinned to core 0 (SERVER_CORE), the generator to
# core 1 (BENCH_CORE).
#
#   ENet:     bench/enet_relay (headless Godot, ENetMultiplayerPeer, GDScript relay to the
#             10 peers after the sender in join order) driven by sustenet-enet-bench
#   Sustenet: sustenet up --clusters 1 --max-connections 20000 driven by sustenet bench
#             --hz 20 --reliable-per-sec 1 --unreliable-per-sec 2 --world W (W for ~10
#             neighbours: N x pi x 40^2 / W^2 = 10)
#
# STATE_WINDOW_MS (unset: the cluster's default, 5) is passed to `sustenet up
# --state-window-ms`; SUSTENET_SEAL_THREADS and the other SUSTENET_* variables reach the
# server as they are.
#
# Before each run it waits for the machine to be more than 85 % idle for 6 s (at most
# IDLE_TIMEOUT seconds, default 300, then warns and goes on). Reads both processes' CPU
# time from /proc over the measured window and prints one markdown table on stdout;
# progress on stderr. Exit status non-zero if a run failed.
#
#   scripts/bench-compare.sh [--clients "1000 2000 4000 6000"] [--duration 20] [--smoke]
#                            [--keep]
#     --clients   the N to run (default 1000 2000 4000 6000)
#     --duration  seconds of the measured window on each side (default 20)
#     --smoke     N = 50, 4 s each side, no idle wait, debug binaries built from this tree;
#                 checks that both sides ran, exited 0 and delivered something
#     --keep      keep the run folder (logs, JSON) and print its path
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CLIENTS="1000 2000 4000 6000"; DURATION=20; SMOKE=0; KEEP=0
while [ $# -gt 0 ]; do
    case "$1" in
        --clients) CLIENTS=${2:?--clients needs a list}; shift 2 ;;
        --duration) DURATION=${2:?--duration needs seconds}; shift 2 ;;
        --smoke) SMOKE=1; shift ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/{/^set -euo/!p}' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench-compare.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
done
[[ "$DURATION" =~ ^[0-9]+$ && "$DURATION" -ge 4 ]] || { echo "bench-compare.sh: --duration must be a whole number >= 4" >&2; exit 2; }
for n in $CLIENTS; do [[ "$n" =~ ^[0-9]+$ && "$n" -ge 11 ]] || { echo "bench-compare.sh: each N must be a number >= 11" >&2; exit 2; }; done
SERVER_CORE=${SERVER_CORE:-0}; BENCH_CORE=${BENCH_CORE:-1}
IDLE_TIMEOUT=${IDLE_TIMEOUT:-300}; PORT=${PORT:-47900}
say() { printf 'bench-compare: %s\n' "$*" >&2; }

if [ "$SMOKE" = 1 ]; then
    CLIENTS=50; DURATION=4; IDLE_TIMEOUT=0
    # The smoke run checks the tree as it is: its own debug build, never an older release build.
    PROFILE=debug
    (cd "$ROOT" && cargo build -q -p sustenet-cli -p sustenet-enet-bench)
else
    PROFILE=release
    say "cargo build --release -p sustenet-cli -p sustenet-enet-bench"
    (cd "$ROOT" && cargo build -q --release -p sustenet-cli -p sustenet-enet-bench)
fi
SUSTENET="$ROOT/target/$PROFILE/sustenet"; ENET_BENCH="$ROOT/target/$PROFILE/sustenet-enet-bench"
"$ROOT/scripts/godot.sh" --headless --version >/dev/null 2>&1 || { echo "bench-compare.sh: Godot is not installed (scripts/install-godot.sh)" >&2; exit 1; }

DIR=$(mktemp -d /tmp/bench-compare.XXXXXX)
GROUPS_STARTED=(); PAUSE=
cleanup() {
    local g
    if [ -n "$PAUSE" ]; then kill "$PAUSE" 2>/dev/null || true; fi
    for g in "${GROUPS_STARTED[@]}"; do kill -TERM -- "-$g" 2>/dev/null || true; done
    for g in "${GROUPS_STARTED[@]}"; do wait "$g" 2>/dev/null || true; done
    if [ "$KEEP" = 1 ]; then say "run folder kept: $DIR"; else rm -rf "$DIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts a command in its own process group on core $1; its pid (= group id) in $STARTED.
start() {
    local core=$1 log=$2; shift 2
    setsid taskset -c "$core" "$@" >"$log" 2>"$log.err" </dev/null &
    STARTED=$!; GROUPS_STARTED+=("$STARTED")
}
# Sleeps in a way a signal interrupts at once (bash runs traps only between commands).
pause() { sleep "$1" & PAUSE=$!; wait "$PAUSE" || true; PAUSE=; }
# Stops a group started by start() and reaps it.
stop() { kill -TERM -- "-$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
# CPU ticks (user + system) of the given processes and their threads.
cpu() { local t=0 p f; for p in "$@"; do f=$(cut -d' ' -f14,15 "/proc/$p/stat" 2>/dev/null) || continue; t=$((t + ${f% *} + ${f#* })); done; echo "$t"; }
# Busy and total ticks of the whole machine.
machine() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
wait_for() { local file=$1 text=$2 secs=$3 pid=$4 i; for ((i = 0; i < secs * 10; i++)); do grep -q "$text" "$file" 2>/dev/null && return 0; kill -0 "$pid" 2>/dev/null || return 1; sleep 0.1; done; return 1; }
wait_idle() {
    [ "$IDLE_TIMEOUT" -gt 0 ] || return 0
    local until=$((SECONDS + IDLE_TIMEOUT)) a b
    while [ $SECONDS -lt "$until" ]; do
        a=$(machine); pause 6; b=$(machine)
        if awk -v a="$a" -v b="$b" 'BEGIN { split(a, x); split(b, y); exit !((y[1] - x[1]) < 0.15 * (y[2] - x[2])) }'; then return 0; fi
    done
    say "WARNING: the machine was not 85 % idle for 6 s within ${IDLE_TIMEOUT} s; measuring anyway"
}
# Samples CPU of the given pids and the machine over the measured window into $1 (JSON).
measure() {
    local out=$1 secs=$2; shift 2
    local s0 g0 m0 t0 s1 g1 m1 t1 hz
    s0=$(cpu "$1"); g0=$(cpu "$2" $(pgrep -P "$2" | tr '\n' ' ')); m0=$(machine); t0=$(date +%s.%N)
    pause "$secs"
    s1=$(cpu "$1"); g1=$(cpu "$2" $(pgrep -P "$2" | tr '\n' ' ')); m1=$(machine); t1=$(date +%s.%N)
    hz=$(getconf CLK_TCK)
    python3 -c 'import json,sys; a=sys.argv[1:]; w=float(a[7])-float(a[6]); m0=a[4].split(); m1=a[5].split(); hz=int(a[8])
print(json.dumps({"server_cpu": (int(a[1])-int(a[0]))/hz/w, "generator_cpu": (int(a[3])-int(a[2]))/hz/w,
 "machine_busy": 2*(int(m1[0])-int(m0[0]))/max(1,int(m1[1])-int(m0[1])), "wall": w}))' \
        "$s0" "$s1" "$g0" "$g1" "$m0" "$m1" "$t0" "$t1" "$hz" >"$out"
}

FAILED=0
run_enet() {
    local n=$1 d="$DIR/enet-$1"
    mkdir -p "$d"
    if [ "$n" -gt 4095 ]; then echo '{"skipped": "ENet allows at most 4095 peers per host"}' >"$d/result.json"; return; fi
    wait_idle; say "ENet: $n clients"
    start "$SERVER_CORE" "$d/relay.log" "$ROOT/scripts/godot.sh" --headless --path "$ROOT/bench/enet_relay" -- \
        --port "$PORT" --max-clients "$n" --lifetime $((DURATION + 300)); local relay=$STARTED
    wait_for "$d/relay.log" "RELAY ready" 60 "$relay" || { say "ENet: the relay did not start"; cat "$d/relay.log" "$d/relay.log.err" >&2 || true; FAILED=1; return; }
    start "$BENCH_CORE" "$d/gen.json" "$ENET_BENCH" --server "127.0.0.1:$PORT" --clients "$n" --duration "$DURATION" --json; local gen=$STARTED
    if wait_for "$d/gen.json.err" "window begins" 180 "$gen"; then measure "$d/cpu.json" $((DURATION - 1)) "$relay" "$gen"; fi
    local grc=0 rrc=0
    wait "$gen" || grc=$?
    for _ in $(seq 300); do kill -0 "$relay" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$relay" 2>/dev/null; then say "ENet: the relay did not exit after its clients left"; stop "$relay"; rrc=124; else wait "$relay" || rrc=$?; fi
    python3 "$ROOT/scripts/lib/bench_compare.py" enet "$d" "$grc" "$rrc" >"$d/result.json" || FAILED=1
    [ "$grc" = 0 ] && [ "$rrc" = 0 ] || { say "ENet: generator exit $grc, relay exit $rrc"; tail -n 3 "$d/gen.json.err" "$d/relay.log.err" >&2 || true; FAILED=1; }
}

run_sustenet() {
    local n=$1 d="$DIR/sustenet-$1" world ramp
    mkdir -p "$d"; cd "$d"
    world=$(awk -v n="$n" 'BEGIN { printf "%d", sqrt(n * 3.14159265 * 1600 / 10) + 0.5 }')
    ramp=$(awk -v n="$n" 'BEGIN { r = n / 250; if (r < 2) r = 2; if (r > 30) r = 30; print r }')
    wait_idle; say "Sustenet: $n clients, world $world"
    start "$SERVER_CORE" "$d/up.log" "$SUSTENET" up --clusters 1 --max-connections 20000 --port "$PORT" \
        ${STATE_WINDOW_MS:+--state-window-ms "$STATE_WINDOW_MS"}; local up=$STARTED
    local ok=
    for _ in $(seq 120); do "$SUSTENET" probe --count 1 >"$d/probe.log" 2>&1 && { ok=1; break; }; kill -0 "$up" 2>/dev/null || break; sleep 0.5; done
    [ -n "$ok" ] || { say "Sustenet: up did not answer a probe"; tail -n 5 "$d/up.log.err" "$d/probe.log" >&2 || true; stop "$up"; FAILED=1; return; }
    start "$BENCH_CORE" "$d/bench.json" "$SUSTENET" bench --clients "$n" --world "$world" --duration $((DURATION + 4)) \
        --hz 20 --reliable-per-sec 1 --unreliable-per-sec 2 --json; local bench=$STARTED
    pause "$(awk -v r="$ramp" 'BEGIN { print r + 2.3 }')"
    measure "$d/cpu.json" "$DURATION" "$up" "$bench"
    local brc=0 urc=0
    wait "$bench" || brc=$?
    if ! kill -0 "$up" 2>/dev/null; then say "Sustenet: up exited before the end of the run"; urc=1; fi
    stop "$up"; cd "$ROOT"
    python3 "$ROOT/scripts/lib/bench_compare.py" sustenet "$d" "$brc" "$urc" >"$d/result.json" || FAILED=1
    [ "$brc" = 0 ] && [ "$urc" = 0 ] || { say "Sustenet: bench exit $brc, up exit $urc"; tail -n 3 "$d/bench.json.err" >&2 || true; FAILED=1; }
}

for n in $CLIENTS; do run_enet "$n"; run_sustenet "$n"; done
python3 "$ROOT/scripts/lib/bench_compare.py" table "$DIR" $CLIENTS
if [ "$SMOKE" = 1 ]; then python3 "$ROOT/scripts/lib/bench_compare.py" smoke "$DIR" $CLIENTS || FAILED=1; fi
exit "$FAILED"
