#!/usr/bin/env bash
# Load figure: W web clients (sustenet bench-web, wss) beside N native clients (sustenet bench)
# on one `sustenet up` cluster, the server pinned to CPU 0 and both generators to CPU 1
# (taskset), as docs/performance.md describes. Prints one JSON line per run with both
# generators' summaries, the server's CPU (% of one core, from /proc/PID/stat between 2 s after
# the ramp and the end) and RSS, and how busy the whole machine was (out of 200 %).
#
#   scripts/bench-web.sh [--web=W] [--native=N] [--duration=S] [--hz=H] [--neighbours=K]
#                        [--release|--debug] [--idle-wait=S]
#
# The world's side is chosen so that each client has about --neighbours=K neighbours (default 10)
# among the W + N clients (up's interest radius is 40).
# Waits up to --idle-wait seconds (default 120) for the machine to be more than 85 % idle for
# 6 s before starting; runs anyway after that, and says so in the output ("idle_before": false).
set -euo pipefail
cd "$(dirname "$0")/.."
web=500; native=500; duration=20; profile=release; idle_wait=120; hz=20; neighbours=10
for a in "$@"; do
    case "$a" in
        --web=*) web=${a#--web=} ;;
        --native=*) native=${a#--native=} ;;
        --duration=*) duration=${a#--duration=} ;;
        --hz=*) hz=${a#--hz=} ;;
        --neighbours=*) neighbours=${a#--neighbours=} ;;
        --release) profile=release ;;
        --debug) profile=debug ;;
        --idle-wait=*) idle_wait=${a#--idle-wait=} ;;
        -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench-web.sh: unknown argument $a (try --help)" >&2; exit 2 ;;
    esac
done
BIN="$PWD/${CARGO_TARGET_DIR:-target}/$profile/sustenet"
[ -x "$BIN" ] || { echo "bench-web.sh: $BIN missing (cargo build --$profile -p sustenet-cli)" >&2; exit 1; }
total=$((web + native))
world=$(python3 -c "import math; print(round(math.sqrt($total * math.pi * 1600 / $neighbours)))")
ramp=$(( total / 200 > 3 ? total / 200 : 3 ))

cpu_busy() { awk '/^cpu /{print $2+$3+$4+$6+$7+$8, $5}' /proc/stat; }
# Waits for 6 s with the machine more than 85 % idle, at most $idle_wait seconds.
idle_before=false
deadline=$(( $(date +%s) + idle_wait ))
while [ "$(date +%s)" -lt "$deadline" ]; do
    read -r b0 i0 < <(cpu_busy); sleep 6; read -r b1 i1 < <(cpu_busy)
    if [ $(( (i1 - i0) * 100 / ((b1 - b0) + (i1 - i0) + 1) )) -gt 85 ]; then idle_before=true; break; fi
done

D=$(mktemp -d /tmp/sustenet-bench-web.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$D"; }
trap cleanup EXIT
# A master port P with P + 1 (the cluster, TCP and UDP), P + 10 and P + 11 (WebSockets) free.
port=$(python3 - <<'PY'
import random, socket
def free(p, kind):
    s = socket.socket(socket.AF_INET, kind)
    try:
        s.bind(("127.0.0.1", p)); return True
    except OSError:
        return False
    finally:
        s.close()
while True:
    p = random.randint(30000, 50000)
    if all(free(q, socket.SOCK_STREAM) for q in (p, p + 1, p + 10, p + 11)) and free(p + 1, socket.SOCK_DGRAM):
        print(p); break
PY
)
( cd "$D" && exec taskset -c 0 "$BIN" up --clusters 1 --max-connections 20000 --port "$port" \
    --websocket-port $((port + 10)) --metrics-bind 127.0.0.1:0 ) >"$D/up.log" 2>&1 &
UP=$!; pids+=("$UP")
touch "$D/up.log"
for _ in $(seq 100); do grep -q '^Sustenet is up' "$D/up.log" && break; sleep 0.1; done
grep -q '^Sustenet is up' "$D/up.log" || { cat "$D/up.log"; exit 1; }

( cd "$D" && exec taskset -c 1 "$BIN" bench --clients "$native" --world "$world" --duration "$duration" \
    --ramp "$ramp" --hz "$hz" --reliable-per-sec 1 --json ) >"$D/native.json" 2>"$D/native.err" &
NB=$!; pids+=("$NB")
( cd "$D" && exec taskset -c 1 "$BIN" bench-web --clients "$web" --world "$world" --duration "$duration" \
    --ramp "$ramp" --hz "$hz" --json ) >"$D/web.json" 2>"$D/web.err" &
WB=$!; pids+=("$WB")

sleep $((ramp + 2))
kill -0 "$UP" 2>/dev/null || { echo "bench-web.sh: sustenet up stopped:" >&2; tail -20 "$D/up.log" >&2; exit 1; }
ticks() { awk '{print $14 + $15}' "/proc/$UP/stat"; }
t0=$(ticks); read -r mb0 mi0 < <(cpu_busy); s0=$(date +%s.%N)
sleep $((duration - 3))
t1=$(ticks); read -r mb1 mi1 < <(cpu_busy); s1=$(date +%s.%N)
rss=$(awk '/VmRSS/{print $2}' "/proc/$UP/status")
wait "$NB" || true
wait "$WB" || true
clk=$(getconf CLK_TCK)
python3 - "$D" "$web" "$native" "$world" "$t0" "$t1" "$s0" "$s1" "$clk" "$rss" "$mb0" "$mi0" "$mb1" "$mi1" "$idle_before" "$hz" <<'PY'
import json, sys
d, web, native, world, t0, t1, s0, s1, hz, rss, mb0, mi0, mb1, mi1, idle = sys.argv[1:16]
def load(name):
    try:
        return json.loads(open(f"{d}/{name}.json").read().strip().splitlines()[-1])
    except Exception as e:
        return {"error": str(e), "stderr": open(f"{d}/{name}.err").read()[-2000:]}
wall = float(s1) - float(s0)
busy, idle_t = int(mb1) - int(mb0), int(mi1) - int(mi0)
print(json.dumps({
    "web": int(web), "native": int(native), "world": int(world), "hz": int(sys.argv[16]),
    "server_cpu_pct": round(100 * (int(t1) - int(t0)) / int(hz) / wall, 1),
    "server_rss_mb": round(int(rss) / 1024, 1),
    "machine_busy_pct": round(200 * busy / max(busy + idle_t, 1), 1),
    "idle_before": idle == "true",
    "web_summary": load("web"), "native_summary": load("native"),
}))
PY
