#!/bin/sh
# Runs a test inside a fresh network namespace that has only loopback, so no
# test can reach anything but 127.0.0.1/::1 (DNS look-ups fail at once instead
# of asking the machine's resolver). Needs root (CI is) and unshare(1); where
# that is not possible the test runs as is, and says so.
if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null 2>&1 && command -v ip >/dev/null 2>&1 &&
   unshare -n true 2>/dev/null; then
    exec unshare -n sh -c 'ip link set lo up && exec "$@"' sh "$@"
fi
echo "isolated.sh: not root or no unshare: running without a private network namespace" >&2
exec "$@"
