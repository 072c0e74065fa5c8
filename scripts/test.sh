#!/usr/bin/env bash
# Set up, then the CI stages, each in its own build directory:
#   1. build with -Werror and run every test (unit + integration)   BUILD_DIR (build)
#   2. the same under AddressSanitizer + UBSan: unit and integration
#      tests except the container test                              SANITIZE_BUILD_DIR (build-asan)
#   3. the libFuzzer targets (clang-14), each run FUZZ_SECONDS
#      (30) on its committed seeds by tests/fuzz/smoke.sh            FUZZ_BUILD_DIR (build-fuzz)
# Every stage runs by default (and in CI); developers may skip one with
# SKIP_TESTS=1, SKIP_SANITIZE=1 or SKIP_FUZZ=1. Extra arguments go to ctest
# in stages 1 and 2, e.g. scripts/test.sh -L unit. Each stage prints its time.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
jobs=$(nproc)
summary=()

stage_time() { # name start
  local dt=$(($(date +%s) - $2))
  summary+=("$(printf '%-10s %4d s' "$1" "$dt")")
  echo "== stage $1: ${dt} s"
}

if [ "${SKIP_TESTS:-0}" != 1 ]; then
  t0=$(date +%s)
  BUILD=${BUILD_DIR:-build}
  cmake -S . -B "$BUILD" -DCREDPROXY_WERROR=ON ${CMAKE_ARGS:-} >/dev/null
  cmake --build "$BUILD" -j"$jobs"
  (cd "$BUILD" && ctest --output-on-failure -j"${TEST_JOBS:-2}" "$@")
  stage_time tests "$t0"
fi

if [ "${SKIP_SANITIZE:-0}" != 1 ]; then
  t0=$(date +%s)
  ASAN_BUILD=${SANITIZE_BUILD_DIR:-build-asan}
  cmake -S . -B "$ASAN_BUILD" -DCREDPROXY_WERROR=ON -DCREDPROXY_SANITIZE=ON >/dev/null
  cmake --build "$ASAN_BUILD" -j"$jobs"
  (cd "$ASAN_BUILD" && ctest --output-on-failure -j"${TEST_JOBS:-2}" -E docker "$@")
  stage_time sanitize "$t0"
fi

if [ "${SKIP_FUZZ:-0}" != 1 ]; then
  t0=$(date +%s)
  FUZZ_BUILD=${FUZZ_BUILD_DIR:-build-fuzz}
  CC=clang-14 cmake -S . -B "$FUZZ_BUILD" -DCREDPROXY_FUZZ=ON -DBUILD_TESTING=OFF >/dev/null
  cmake --build "$FUZZ_BUILD" -j"$jobs" --target fuzz
  tests/fuzz/smoke.sh "$FUZZ_BUILD" "${FUZZ_SECONDS:-30}"
  stage_time fuzz "$t0"
fi

printf '%s\n' "stage times:" "${summary[@]}"
