#!/usr/bin/env bash
# Run every libFuzzer target in BUILD_DIR for SECONDS each, on a scratch copy
# of its committed seeds (tests/fuzz/corpus/NAME), and fail on any crash,
# leak, sanitizer report, timeout or out-of-memory; FUZZ_JOBS targets run at
# once (default: the number of cores); FUZZ_TIMEOUT seconds per input (default
# 10; raise it for campaigns on a shared machine, where a starved run is not a
# hang). Prints one summary line per target (executions, exec/s, coverage) and
# keeps the full logs and any crashing input in WORK_DIR (default: a temp dir,
# kept only on failure).
# Usage: tests/fuzz/smoke.sh BUILD_DIR SECONDS [TARGET...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:?usage: smoke.sh BUILD_DIR SECONDS [TARGET...]}
secs=${2:?usage: smoke.sh BUILD_DIR SECONDS [TARGET...]}
shift 2
work=${WORK_DIR:-$(mktemp -d /tmp/credproxy-fuzz.XXXXXX)}
mkdir -p "$work"

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for bin in "$build"/fuzz_*; do
    [ -x "$bin" ] && targets+=("$(basename "$bin" | sed 's/^fuzz_//')")
  done
fi
if [ ${#targets[@]} -eq 0 ]; then
  echo "smoke.sh: no fuzz_* binaries in $build (configure with CC=clang-14 -DCREDPROXY_FUZZ=ON)" >&2
  exit 2
fi

# One target: its log and exit status land in $work (run in the background).
run_one() {
  local t=$1 bin="$build/fuzz_$1" corpus="$work/corpus-$1" log="$work/$1.log"
  rm -rf "$corpus" && mkdir -p "$corpus"
  if [ -d "$here/corpus/$t" ]; then cp "$here/corpus/$t"/* "$corpus"/ 2>/dev/null || true; fi
  # stdin from /dev/null: a fuzzed config may name /dev/stdin as a token file.
  if ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
     "$bin" -max_total_time="$secs" -timeout="${FUZZ_TIMEOUT:-10}" -rss_limit_mb=2048 -max_len=8192 \
       -print_final_stats=1 -artifact_prefix="$work/$t-" "$corpus" </dev/null >"$log" 2>&1; then
    echo ok >"$work/$t.status"
  else
    echo FAILED >"$work/$t.status"
  fi
}

# FUZZ_JOBS targets at a time (default: one per core; the stage is otherwise idle).
jobs_max=${FUZZ_JOBS:-$(nproc)}
for t in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n || true; done
  run_one "$t" &
done
wait

failed=0
for t in "${targets[@]}"; do
  log="$work/$t.log"
  status=$(cat "$work/$t.status" 2>/dev/null || echo FAILED)
  [ "$status" = ok ] || failed=1
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || echo "?")
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || echo "?")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo "?")
  printf '%-20s %-6s %10s execs %8s exec/s  cov %s\n' "$t" "$status" "$execs" "$rate" "$cov"
  if [ "$status" != ok ]; then
    grep -E 'ERROR|invariant failed|runtime error|SUMMARY|Test unit written' "$log" | head -20 || true
  fi
done
if [ "$failed" -ne 0 ]; then
  echo "smoke.sh: a fuzz target failed; logs and inputs in $work" >&2
  exit 1
fi
[ -z "${WORK_DIR:-}" ] && rm -rf "$work"
exit 0
