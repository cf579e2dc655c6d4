#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ with cargo-fuzz (libFuzzer) for a number of
# executions each, keeping the corpus in fuzz/corpus/<target>/ and any crash
# in fuzz/artifacts/<target>/. Not part of scripts/test.sh (which runs the same
# target bodies on random inputs with proptest, on stable).
#
#   scripts/fuzz.sh [RUNS] [TARGET...]     RUNS per target (default 10000000); all targets by default
#
# cargo-fuzz is installed once into target/tools (cargo install --root). Its
# flags are nightly-only; on a stable toolchain RUSTC_BOOTSTRAP=1 lets them
# through. The targets are safe Rust (the workspace forbids unsafe code), so
# the default sanitizer is none (faster); set FUZZ_SANITIZER=address for ASan.
# FUZZ_JOBS (1) runs that many libFuzzer jobs per target; FUZZ_MAX_TIME (seconds) also stops
# each target after that long, whichever comes first.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-10000000}
shift || true
fuzz=target/tools/bin/cargo-fuzz
if [[ ! -x $fuzz ]]; then
  echo "==> installing cargo-fuzz into target/tools"
  cargo install --locked --root target/tools cargo-fuzz
fi
export RUSTC_BOOTSTRAP=1
sanitizer=${FUZZ_SANITIZER:-none}
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  mapfile -t targets < <("$fuzz" list)
fi

renice -n 10 $$ >/dev/null 2>&1 || true   # a shared machine: build and fuzz niced
"$fuzz" build -s "$sanitizer"
status=0
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  echo "==> $t: $runs executions"
  log=target/fuzz-$t.log
  extra=()
  [[ -n ${FUZZ_MAX_TIME:-} ]] && extra+=(-max_total_time="$FUZZ_MAX_TIME")
  # -jobs sends libFuzzer's output to fuzz-N.log files: only when asked for.
  [[ ${FUZZ_JOBS:-1} -gt 1 ]] && extra+=(-jobs="$FUZZ_JOBS")
  if "$fuzz" run -s "$sanitizer" "$t" "fuzz/corpus/$t" -- -runs="$runs" \
       -print_final_stats=1 "${extra[@]}" >"$log" 2>&1; then
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb|Done [0-9]+ runs" "$log" || true
    echo "$t: no finding"
  else
    status=1
    tail -30 "$log"
    echo "$t: FINDING (see $log and fuzz/artifacts/$t/)"
  fi
done
exit $status
