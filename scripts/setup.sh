#!/usr/bin/env bash
# Installs every Debian package credproxy needs to build, test and benchmark.
# Idempotent; run as root (or with sudo available). Usage: scripts/setup.sh [--bench]
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

PKGS=(
  build-essential cmake pkg-config git ca-certificates curl openssl
  libevent-dev libssl-dev libcurl4-openssl-dev libyaml-dev libhiredis-dev
  node-llhttp
  clang-14 libclang-rt-14-dev
  redis-server
  python3 python3-requests python3-jira nodejs
  iproute2 util-linux
  podman runc debootstrap uidmap fuse-overlayfs slirp4netns
)
if [ "${1:-}" = "--bench" ]; then
  PKGS+=(wrk nginx-light haproxy squid-openssl mitmproxy nghttp2-client linux-perf)
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
