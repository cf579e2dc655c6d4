#!/usr/bin/env bash
# Load figure for instances on demand (docs/performance.md, not run in CI):
# a master and two agents on loopback, N instances of a `sustenet cluster`
# template spawned through `sustenet instances spawn` (P at a time), then all
# stopped. Prints spawn-to-ready p50/p99/max (each spawn command's wall time:
# connect, placement, process start, cluster registration) and checks that no
# instance process is left.
#
#   scripts/instances-load.sh [N=100] [P=10] [path to sustenet]
#
# With SUSTENET_LOAD_EXPORT=<the demo's headless export, e.g. build/cluster/cluster.x86_64>
# the template runs that export as a dungeon instance instead (docs/instances.md §8:
# --dungeon=crypt, key in a file, --quit-on-stdin-eof), through scripts/godot-run-export.sh
# when the Godot root of scripts/install-godot.sh is there (this machine), directly otherwise.
# The agents' run folders are then inside the export's folder (the one the chroot sees).
set -euo pipefail
N=${1:-100}
P=${2:-10}
REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN=${3:-$REPO/target/debug/sustenet}
[[ -x $BIN ]] || { echo "build it first: cargo build -p sustenet-cli ($BIN)"; exit 2; }
EXPORT=${SUSTENET_LOAD_EXPORT:-}
if [[ -n $EXPORT ]]; then
  EXPORT=$(realpath -e -- "$EXPORT") || { echo "no export at $SUSTENET_LOAD_EXPORT"; exit 2; }
  RUNS=$(mktemp -d "$(dirname "$EXPORT")/load-runs.XXXXXX")
fi
DIR=$(mktemp -d)
MP=$((20000 + RANDOM % 20000))
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$DIR" ${RUNS:+"$RUNS"}
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
# room_template: the [agent.templates.room] section (a sustenet cluster, or the export).
room_template() {
  if [[ -z $EXPORT ]]; then
    cat <<TOML
[agent.templates.room]
command = "$BIN"
args = ["cluster", "--no-config", "--key-stdin", "--key-name", "{key_name}", "--port", "{port}", "--master-ip", "127.0.0.1", "--master-port", "$MP", "--bind", "127.0.0.1", "--log-level", "warn"]
key = "stdin"
max = $half
TOML
    return
  fi
  local runner=() first_arg=""
  if [[ -x /opt/sustenet-godot-root/usr/bin/godot-template-release || -n ${SUSTENET_GODOT_ROOT:-} ]]; then
    runner=("$REPO/scripts/godot-run-export.sh"); first_arg="\"$EXPORT\", "
  else
    runner=("$EXPORT")
  fi
  cat <<TOML
[agent.templates.room]
command = "${runner[0]}"
args = [$first_arg"--", "--dungeon=crypt", "--key-name={key_name}", "--key-path={key_path}", "--port={port}", "--bind=127.0.0.1", "--master-port=$MP", "--quit-on-stdin-eof"]
key = "file"
max = $half
TOML
}
for a in a b; do
  run_dir="run-$a"
  [[ -n $EXPORT ]] && run_dir="$RUNS/run-$a"
  cat > agent-$a.toml <<TOML
[agent]
name = "$a"
key_name = "$a"
master = "127.0.0.1:$MP"
capacity = $half
port_first = $first
port_last = $((first + half + 20))
run_dir = "$run_dir"
stop_grace_ms = 10000
$(room_template)
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
left=$(pgrep -f -- "--master-port[= ]$MP" | wc -l || true)
echo "instance processes left: $left"
[[ $left -eq 0 ]]
