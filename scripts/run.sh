#!/usr/bin/env bash
# Set up, build and start the proxy in the foreground.
# With no -c and no CREDPROXY_CONFIG it uses ATLASSIAN_SITE, ATLASSIAN_EMAIL
# and ATLASSIAN_API_TOKEN from the environment. Extra arguments go to credproxy.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake -S . -B build >/dev/null
cmake --build build -j"$(nproc)"
exec build/credproxy run "$@"
