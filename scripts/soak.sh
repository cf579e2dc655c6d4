#!/usr/bin/env bash
# Soak run (not part of scripts/test.sh): a master and two clusters in one
# server process, SOAK_CLIENTS clients (default 1000) through joins, leaves,
# handoffs between the clusters, reconnects (a proxy cuts a client-cluster TCP
# connection every 200 ms) and garbage, for the given duration. The server's
# resident memory, open file descriptors and live tokio tasks (and the
# machine's load average) are sampled every minute into
# target/soak/soak.csv; target/soak/memory.png plots them; the run fails unless
# both are flat after the warm-up (see rust/cli/tests/soak.rs).
#
#   scripts/soak.sh [DURATION]     DURATION in seconds, or with m / h: 600, 10m, 1h (default 1h)
#
# Environment: SOAK_CLIENTS (1000), SOAK_SAMPLE_SECS (60), SOAK_WARMUP_SECS (180),
# SOAK_PROFILE (debug, or release: builds and runs the test with --release),
# SOAK_NICE (10: the niceness the build and the run get; 0 runs at normal priority).
# The players column is -1 when the master did not answer the list request within 10 s.
# The plot needs matplotlib: installed once into target/tools/python (pip --target).
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-1h}
case "$duration" in
  *h) secs=$(( ${duration%h} * 3600 )) ;;
  *m) secs=$(( ${duration%m} * 60 )) ;;
  *[!0-9]*|'') echo "usage: $0 [DURATION]  (seconds, or 10m, 1h)" >&2; exit 2 ;;
  *) secs=$duration ;;
esac

out=${SOAK_OUT:-target/soak}
mkdir -p "$out"
out=$(cd "$out" && pwd)   # the test runs in rust/cli
tools=target/tools/python
if ! PYTHONPATH=$tools python3 -c 'import matplotlib' 2>/dev/null; then
  echo "==> installing matplotlib into $tools"
  python3 -m pip install --quiet --target "$tools" matplotlib
fi

profile=()
case "${SOAK_PROFILE:-debug}" in
  debug) ;;
  release) profile=(--release) ;;
  *) echo "SOAK_PROFILE is debug or release, not '$SOAK_PROFILE'" >&2; exit 2 ;;
esac

echo "==> soak: ${SOAK_CLIENTS:-1000} clients for $secs s (${SOAK_PROFILE:-debug} build), samples in $out/soak.csv"
status=0
SOAK_SECS=$secs SOAK_OUT=$out nice -n "${SOAK_NICE:-10}" cargo test "${profile[@]}" -p sustenet-cli --test soak -- \
  --ignored --exact soak --nocapture || status=$?

PYTHONPATH=$tools python3 - "$out/soak.csv" "$out/memory.png" <<'PY'
import csv, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
rows = list(csv.DictReader(open(sys.argv[1])))
t = [int(r["seconds"]) / 60 for r in rows]
fig, ax = plt.subplots(figsize=(8, 4))
ax.plot(t, [int(r["rss_kib"]) / 1024 for r in rows], marker="o", label="resident memory (MiB)")
ax.set_xlabel("minutes")
ax.set_ylabel("MiB")
ax.set_ylim(bottom=0)
ax2 = ax.twinx()
ax2.plot(t, [int(r["fds"]) for r in rows], color="tab:orange", marker="x", label="open fds")
ax2.plot(t, [max(int(r["tasks"]), 0) for r in rows], color="tab:red", linestyle=":", label="live tokio tasks")
ax2.plot(t, [max(int(r["players"]), 0) for r in rows], color="tab:green", linestyle="--", label="players (master's list)")
ax2.set_ylabel("count")
ax2.set_ylim(bottom=0)
lines = ax.get_legend_handles_labels()
lines2 = ax2.get_legend_handles_labels()
ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="lower right")
ax.set_title("sustenet soak: master + 2 clusters, server process")
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=90)
print("plot:", sys.argv[2])
PY
[[ -f "$out/verdict.txt" ]] && echo "verdict: $(cat "$out/verdict.txt")"
exit $status
