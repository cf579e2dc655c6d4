#!/usr/bin/env bash
# CPU per message of the load generator against the server's, on one load.
#
#   scripts/bench-cpu.sh N WORLD [extra bench arguments...]
#
# Starts `sustenet up --clusters 1` pinned to core 0 (SERVER_CORE) and
# `sustenet bench --clients N --world WORLD --hz 20 --reliable-per-sec 1
# --unreliable-per-sec 2 --json` pinned to core 1 (BENCH_CORE), reads both
# processes' CPU time (/proc/PID/stat, the bench's worker processes
# included) over the full-load window (from 2 s after the ramp to 2 s
# before the end), and prints one line: CPU of each, messages per second
# (out = positions and echoes sent, in = state records and echoes
# received) and µs of CPU per message for each. Uses the release build
# (target/release/sustenet; `cargo build --release -p sustenet-cli`).
#
# PERF_STAT=1 also counts the server's system calls over the same window
# (`perf stat -p` on the server: all of them, and sendto, sendmmsg, recvfrom,
# recvmmsg, epoll_wait) and context switches, and prints a second line with
# them and the server's user and system CPU per delivered record (state
# records and echoes received by bench). Needs perf and tracepoint access.
# It also prints how many datagrams each of the cluster's UDP receivers read
# (SUSTENET_RECEIVE_THREADS=2 runs two; docs/architecture.md §3.7).
# PERF_RECORD=FILE instead records the server's call graphs over the window
# (`perf record -F 999 -p`, call graphs from frame pointers, or as
# PERF_CALL_GRAPH says: `dwarf` unwinds Rust frames too) into FILE, for
# `perf report -i FILE`.
set -euo pipefail

N=${1:?usage: bench-cpu.sh N WORLD [bench args...]}
WORLD=${2:?usage: bench-cpu.sh N WORLD [bench args...]}
shift 2
DURATION=${DURATION:-20}
SERVER_CORE=${SERVER_CORE:-0}
BENCH_CORE=${BENCH_CORE:-1}
PORT=${PORT:-47700}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/target/release/sustenet}
[ -x "$BIN" ] || { echo "no $BIN: cargo build --release -p sustenet-cli" >&2; exit 1; }

DIR=$(mktemp -d)
SERVER=
cleanup() {
    if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
    rm -rf "$DIR"
}
trap cleanup EXIT

cd "$DIR"
taskset -c "$SERVER_CORE" "$BIN" up --clusters 1 --max-connections 20000 --port "$PORT" >up.log 2>&1 &
SERVER=$!
UP=
for _ in $(seq 120); do
    if "$BIN" probe --count 1 >probe.log 2>&1; then UP=1; break; fi
    sleep 0.5
done
[ -n "$UP" ] || { echo "sustenet up did not answer a probe within a minute:" >&2; tail -n 5 up.log probe.log >&2; exit 1; }

# CPU seconds (user + system) of the processes given.
cpu() {
    local t=0 p f
    for p in "$@"; do
        f=$(cut -d' ' -f14,15 "/proc/$p/stat" 2>/dev/null) || continue
        t=$((t + ${f% *} + ${f#* }))
    done
    echo "$t"
}

RAMP=$(awk -v n="$N" 'BEGIN { r = n / 250; if (r < 2) r = 2; if (r > 30) r = 30; print r }')
taskset -c "$BENCH_CORE" "$BIN" bench --clients "$N" --world "$WORLD" --duration "$DURATION" \
    --hz 20 --reliable-per-sec 1 --unreliable-per-sec 2 --json "$@" >bench.json 2>bench.err &
BENCH=$!
sleep "$(awk -v r="$RAMP" 'BEGIN { print r + 2.3 }')"
WORKERS=$(pgrep -P "$BENCH" | tr '\n' ' ' || true)
SU0=$(cut -d' ' -f14,15 "/proc/$SERVER/stat")
S0=$(cpu "$SERVER"); B0=$(cpu "$BENCH" $WORKERS); T0=$(date +%s.%N)
if [ -n "${PERF_RECORD:-}" ]; then
    perf record -q --call-graph "${PERF_CALL_GRAPH:-fp}" -F 999 -o "$PERF_RECORD" -p "$SERVER" -- sleep "$((DURATION - 4))" 2>/dev/null
elif [ "${PERF_STAT:-0}" = 1 ]; then
    perf stat -x, -o perf.csv -p "$SERVER" -e task-clock,context-switches,raw_syscalls:sys_enter \
        -e syscalls:sys_enter_sendto,syscalls:sys_enter_sendmmsg,syscalls:sys_enter_recvfrom \
        -e syscalls:sys_enter_recvmmsg,syscalls:sys_enter_epoll_wait -- sleep "$((DURATION - 4))"
else
    sleep "$((DURATION - 4))"
fi
S1=$(cpu "$SERVER"); B1=$(cpu "$BENCH" $WORKERS); T1=$(date +%s.%N)
SU1=$(cut -d' ' -f14,15 "/proc/$SERVER/stat")
wait "$BENCH" || true
# Datagrams each UDP receiver read (`[cluster] receive_threads`, e.g.
# SUSTENET_RECEIVE_THREADS=2), from up's metrics endpoint.
MURL=$(sed -n 's/^ *metrics *\(http[^ ]*\)$/\1/p' up.log | head -n 1)
if [ -n "$MURL" ]; then
    python3 - "$MURL" <<'EOF2' || true
import re, sys, urllib.request
text = urllib.request.urlopen(sys.argv[1], timeout=5).read().decode()
got = re.findall(r'^sustenet_cluster_udp_datagrams_received_total\{.*receiver="(\d+)".*\} (\S+)$', text, re.M)
print("UDP datagrams read by receiver: " + ", ".join(f"{r}: {float(n):.0f}" for r, n in sorted(got, key=lambda g: int(g[0]))))
EOF2
fi
HZ=$(getconf CLK_TCK)
[ -f perf.csv ] || : >perf.csv
python3 - "$S0" "$S1" "$B0" "$B1" "$T0" "$T1" "$HZ" "$N" "$WORLD" bench.json "$SU0" "$SU1" perf.csv <<'EOF'
import json, sys
s0, s1, b0, b1 = (int(x) for x in sys.argv[1:5])
t0, t1, hz = float(sys.argv[5]), float(sys.argv[6]), int(sys.argv[7])
n, world = sys.argv[8], sys.argv[9]
j = json.load(open(sys.argv[10]))
wall = t1 - t0
server, bench = (s1 - s0) / hz / wall, (b1 - b0) / hz / wall
msgs = j["msgs_out_per_s"] + j["msgs_in_per_s"]
st = j["state"]
lat = st["latency_us"]
print(f"N {n} world {world}: ok {j['ok']} errors {j['errors']}, "
      f"out {j['msgs_out_per_s']:.0f}/s (target {j['target_out_per_s']:.0f}), in {j['msgs_in_per_s']:.0f}/s; "
      f"server CPU {server * 100:.0f} %, {server * 1e6 / msgs:.2f} us/msg; "
      f"bench CPU {bench * 100:.0f} %, {bench * 1e6 / msgs:.2f} us/msg; "
      f"bench/server {bench / server:.2f}; "
      f"state delivery {100 * (st['delivery'] or 0):.1f} %, latency p50/p99 {lat['p50'] / 1000:.2f}/{lat['p99'] / 1000:.2f} ms; "
      f"echo RTT p99 reliable {j['rtt_us']['reliable']['p99'] / 1000:.2f} ms, unreliable {j['rtt_us']['unreliable']['p99'] / 1000:.2f} ms")
if open(sys.argv[13]).read().strip():
    rec = j["msgs_in_per_s"] * wall
    (u0, k0), (u1, k1) = ([int(x) for x in a.split()] for a in sys.argv[11:13])
    counts = {}
    for line in open(sys.argv[13]):
        f = line.strip().split(",")
        if len(f) > 2 and f[0].replace(".", "", 1).isdigit():
            counts[f[2].split(":")[-1]] = float(f[0])
    per = lambda k: counts.get(k, 0) / rec
    print(f"per delivered record ({rec:.0f} records in {wall:.1f} s): "
          f"server user {(u1 - u0) / hz * 1e6 / rec:.2f} us, system {(k1 - k0) / hz * 1e6 / rec:.2f} us; "
          f"syscalls {per('sys_enter'):.3f} (sendto {per('sys_enter_sendto'):.3f}, sendmmsg {per('sys_enter_sendmmsg'):.4f}, "
          f"recvfrom {per('sys_enter_recvfrom'):.3f}, recvmmsg {per('sys_enter_recvmmsg'):.4f}, "
          f"epoll_wait {per('sys_enter_epoll_wait'):.4f}); context switches {per('context-switches'):.4f}; "
          f"task-clock {counts.get('task-clock', 0) * 1e3 / rec:.2f} us")
EOF
