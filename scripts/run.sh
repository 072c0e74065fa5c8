#!/usr/bin/env bash
# Install the runtime and build packages, build only the binary (quietly), and
# start the proxy in the foreground. With no -c and no CREDPROXY_CONFIG it
# uses ATLASSIAN_SITE, ATLASSIAN_EMAIL and ATLASSIAN_API_TOKEN from the
# environment. Extra arguments go to `credproxy run`. The full tool set (tests,
# clients, containers) is scripts/test.sh's.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --runtime | sed '/^setup: all packages present$/d'
BUILD=${BUILD_DIR:-build}
log="$BUILD/run-build.log"
mkdir -p "$BUILD"
if ! { cmake -S . -B "$BUILD" && cmake --build "$BUILD" --target credproxy -j"$(nproc)"; } >"$log" 2>&1; then
  tail -n 40 "$log" >&2
  echo "run: the build failed; the whole log is in $log" >&2
  exit 1
fi
echo "run: built $BUILD/credproxy ($("$BUILD/credproxy" --version | head -n 1))" >&2
exec "$BUILD/credproxy" run "$@"
