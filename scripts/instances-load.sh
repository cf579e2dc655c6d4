#!/usr/bin/env bash
# Load figure for instances on demand (docs/performance.md, not run in CI):
# a master and two agents on loopback, N instances of a `sustenet cluster`
# template spawned through `sustenet instances spawn` (P at a time), then all
# stopped. Prints spawn-to-ready p50/p99/max (each spawn command's wall time:
# connect, placement, process start, cluster registration) and checks that no
# instance process is left.
#
#   scripts/instances-load.sh [N=100] [P=10] [path to sustenet]
set -euo pipefail
N=${1:-100}
P=${2:-10}
BIN=${3:-$(cd "$(dirname "$0")/.." && pwd)/target/debug/sustenet}
[[ -x $BIN ]] || { echo "build it first: cargo build -p sustenet-cli ($BIN)"; exit 2; }
DIR=$(mktemp -d)
MP=$((20000 + RANDOM % 20000))
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$DIR"
}
trap cleanup EXIT
cd "$DIR"
"$BIN" keygen --master >/dev/null
"$BIN" keygen --admin --name admin_key >/dev/null
printf '[all]\nport = %d\nbind = "127.0.0.1"\n[instances]\nmax_instances = %d\n' "$MP" "$((N + 10))" > master.toml
for a in a b; do "$BIN" keygen --agent --name $a >/dev/null; done
"$BIN" master -c master.toml 2> master.log &
PIDS+=($!)
sleep 0.5
half=$(( (N + 1) / 2 + 5 ))
first=$((MP + 1))
for a in a b; do
  cat > agent-$a.toml <<TOML
[agent]
name = "$a"
key_name = "$a"
master = "127.0.0.1:$MP"
capacity = $half
port_first = $first
port_last = $((first + half + 20))
run_dir = "run-$a"
[agent.templates.room]
command = "$BIN"
args = ["cluster", "--no-config", "--key-stdin", "--key-name", "{key_name}", "--port", "{port}", "--master-ip", "127.0.0.1", "--master-port", "$MP", "--bind", "127.0.0.1", "--log-level", "warn"]
key = "stdin"
max = $half
TOML
  first=$((first + half + 21))
  "$BIN" agent -c agent-$a.toml 2> agent-$a.log &
  PIDS+=($!)
done
sleep 1
spawn_one() {
  local t0 t1
  t0=$(date +%s%N)
  "$BIN" instances --master "127.0.0.1:$MP" spawn room > "out-$1" 2>&1 || { echo "spawn $1 failed: $(cat "out-$1")" >&2; return 1; }
  t1=$(date +%s%N)
  echo $(( (t1 - t0) / 1000 )) > "us-$1"
}
start=$(date +%s%N)
batch=()
for ((i = 1; i <= N; i++)); do
  spawn_one "$i" &
  batch+=($!)
  if (( i % P == 0 || i == N )); then
    for b in "${batch[@]}"; do wait "$b"; done
    batch=()
  fi
done
total_ms=$(( ($(date +%s%N) - start) / 1000000 ))
cat us-* | sort -n > sorted
count=$(wc -l < sorted)
pct() { sed -n "$(( ($1 * count + 99) / 100 ))p" sorted; }
echo "instances ready: $count / $N in ${total_ms} ms ($P at a time)"
echo "spawn-to-ready: p50 $(( $(pct 50) / 1000 )) ms, p99 $(( $(pct 99) / 1000 )) ms, max $(( $(tail -1 sorted) / 1000 )) ms"
echo "per agent: $(grep -ho 'on agent [ab]' out-* | sort | uniq -c | tr '\n' ' ')"
ids=$("$BIN" instances --master "127.0.0.1:$MP" list | awk 'NR > 1 { print $1 }')
start=$(date +%s%N)
for id in $ids; do "$BIN" instances --master "127.0.0.1:$MP" stop "$id" > /dev/null; done
while [[ -n $("$BIN" instances --master "127.0.0.1:$MP" list | awk 'NR > 1') ]]; do sleep 0.1; done
echo "all stopped in $(( ($(date +%s%N) - start) / 1000000 )) ms"
left=$(pgrep -f -- "--master-port $MP" | wc -l || true)
echo "instance processes left: $left"
[[ $left -eq 0 ]]
