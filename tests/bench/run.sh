#!/usr/bin/env bash
# credproxy benchmark: builds a release binary and the CONNECT load client, then
# measures credproxy side by side with nginx, HAProxy, Squid (ssl-bump) and
# mitmproxy against one local TLS upstream, on loopback only.
#
#   tests/bench/run.sh [--quick] [--out FILE] [bench.py options...]
#
# Needs: scripts/setup.sh --bench (wrk nginx-light haproxy squid-openssl mitmproxy
# nghttp2-client linux-perf). Root is needed for Squid (it drops to 'proxy') and perf.
# Environment: BUILD_DIR (default build-bench), SKIP_BUILD=1 to reuse a binary,
# BENCH_KEEP_DIR=1 to keep the temp dir with every config and log.
# Prints a markdown table and writes it to --out (default $BUILD_DIR/bench-results.md).
# Full run ~10 minutes; --quick under a minute. Not a test: CI runs --quick at most.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build-bench}"
OUT=""
ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
    --out) OUT="$2"; shift 2 ;;
    --out=*) OUT="${1#--out=}"; shift ;;
    -h|--help) sed -n '2,13p' "$0"; /usr/bin/python3 "$HERE/bench.py" --help | tail -n +2; exit 0 ;;
    *) ARGS+=("$1"); shift ;;
    esac
done

missing=()
for tool in wrk nginx haproxy squid mitmdump curl openssl cc taskset; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "bench: missing ${missing[*]}; run scripts/setup.sh --bench" >&2
    # the harness measures whatever is present; credproxy itself and wrk are required
    for t in "${missing[@]}"; do
        case "$t" in wrk|curl|openssl|cc) exit 2 ;; esac
    done
fi

if [ "${SKIP_BUILD:-0}" != "1" ]; then
    echo "bench: building release binary in $BUILD_DIR" >&2
    cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$BUILD_DIR" -j"$(nproc)" --target credproxy >/dev/null
fi
mkdir -p "$BUILD_DIR"
cc -O2 -Wall -Wextra -Wshadow -o "$BUILD_DIR/cload" "$HERE/cload.c" -lssl -lcrypto -lpthread

# 1,000 idle clients plus their upstream connections need more than 1024 descriptors.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

exec /usr/bin/python3 "$HERE/bench.py" --bin "$BUILD_DIR/credproxy" --cload "$BUILD_DIR/cload" \
    --out "${OUT:-$BUILD_DIR/bench-results.md}" ${ARGS[@]+"${ARGS[@]}"}
