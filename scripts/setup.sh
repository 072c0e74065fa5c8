#!/usr/bin/env bash
# Installs the Debian packages credproxy needs. Idempotent; run as root (or with
# sudo available).
#   scripts/setup.sh             everything to build, test and run the container test
#   scripts/setup.sh --runtime   only what building and running the proxy needs (scripts/run.sh)
#   scripts/setup.sh --bench     everything, plus the benchmark's reference proxies
#   add --print (last) to print the package list instead of installing it
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# Build and run the proxy: compiler, cmake, and the libraries it links.
RUNTIME_PKGS=(
  build-essential cmake pkg-config ca-certificates openssl
  libevent-dev libssl-dev libcurl4-openssl-dev libyaml-dev libhiredis-dev libjansson-dev
  node-llhttp
)
# Tests: the fake Atlassian, clients in three languages, redis, the container test,
# and clang-14 with libFuzzer for the fuzz smoke run.
TEST_PKGS=(
  git curl
  clang-14 libclang-rt-14-dev
  redis-server
  python3 python3-requests python3-jira nodejs
  iproute2 util-linux systemd
  podman runc debootstrap uidmap fuse-overlayfs slirp4netns
)
BENCH_PKGS=(wrk nginx-light haproxy squid-openssl mitmproxy nghttp2-client linux-perf)

PKGS=("${RUNTIME_PKGS[@]}")
PRINT=0
case "${1:-}" in
  --runtime) shift ;;
  --bench) PKGS+=("${TEST_PKGS[@]}" "${BENCH_PKGS[@]}"); shift ;;
  ""|--print) PKGS+=("${TEST_PKGS[@]}") ;;
  *) echo "usage: scripts/setup.sh [--runtime|--bench] [--print]" >&2; exit 2 ;;
esac
if [ "${1:-}" = "--print" ]; then
  printf '%s\n' "${PKGS[@]}"
  exit 0
fi

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# Tests start their own redis-server on a loopback port; the packaged
# service is not needed.
echo "setup: all packages present"
