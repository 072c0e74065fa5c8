#!/usr/bin/env bash
# credproxy soak: N minutes (default 30) of mixed traffic in all three modes
# against the fake Atlassian, a SIGHUP every minute, a fault every few seconds;
# reports RSS growth, open descriptors at start and end, and every non-2xx by
# cause. Not a test (nothing in ctest runs it): see tests/bench/soak.py.
#
#   tests/bench/soak.sh [MINUTES] [soak.py options: --concurrency N --fault-every S ...]
#
# Uses BIN (default build/credproxy; build first). Runs inside a private network
# namespace (tests/isolated.sh) when root. redis-server, when installed, is the
# rate-limit store and gets killed as one of the faults. Writes the report to
# stdout (markdown) and progress to stderr; exit 1 when a target was missed.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BIN="${BIN:-$ROOT/build/credproxy}"
MINUTES=30
if [ $# -gt 0 ] && [[ "$1" =~ ^[0-9]+([.][0-9]+)?$ ]]; then
    MINUTES="$1"
    shift
fi
case "${1:-}" in -h|--help) sed -n '2,12p' "$0"; exit 0 ;; esac
[ -x "$BIN" ] || { echo "soak: no binary at $BIN (cmake --build build, or set BIN)" >&2; exit 2; }
# Held client connections, their upstream connections and the faults' sockets.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec "$ROOT/tests/isolated.sh" /usr/bin/python3 "$HERE/soak.py" --bin "$BIN" --minutes "$MINUTES" "$@"
