#!/usr/bin/python3
"""The container image: runs docker/test.sh (build docker/Dockerfile with podman
from a locally debootstrapped Debian 12 base, run it read-only as uid 10001
against the fake Atlassian, check health, /readyz, one proxied request, a clean
stop and that the token is absent from the logs).

Skips (prints "SKIP: reason", exits 0) only when this machine cannot do it at
all, which docker/test.sh reports with exit status 77: not root, podman, runc
or debootstrap missing, podman unable to start a container, the Debian mirror
unreachable, debootstrap failing. Any failure of the image build or of the
container's checks fails this test (exit 1), as does running out of time.

A cold run (no cached base image: debootstrap, then the whole image build)
takes several minutes; later runs reuse the base image and podman's layer
cache. Time limit: CREDPROXY_DOCKER_TIMEOUT seconds (default 840).

Run: /usr/bin/python3 tests/integration/test_docker.py
"""
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("CREDPROXY_SOURCE_DIR", os.path.dirname(os.path.dirname(HERE)))
SCRIPT = os.path.join(SOURCE_DIR, "docker", "test.sh")
TIMEOUT = int(os.environ.get("CREDPROXY_DOCKER_TIMEOUT", "840"))
EXIT_SKIP = 77


def main():
    if not os.access(SCRIPT, os.X_OK):
        print("FAIL test_docker: %s is missing or not executable" % SCRIPT)
        return 1
    t0 = time.monotonic()
    # Its own session, so a timeout can stop the whole tree (podman, the fake).
    p = subprocess.Popen(["bash", SCRIPT], cwd=SOURCE_DIR, stdin=subprocess.DEVNULL,
                         start_new_session=True)
    def forward(signum, frame):
        # Stopped from outside (ctest, Ctrl-C): let test.sh's trap clean up first.
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
        sys.exit(1)
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        rc = p.wait(TIMEOUT)
    except subprocess.TimeoutExpired:
        # SIGTERM first: test.sh's trap removes its container and stops the fake.
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)
        print("FAIL test_docker: docker/test.sh did not finish within %ds" % TIMEOUT)
        print("0 passed, 1 failed")
        return 1
    dt = time.monotonic() - t0
    if rc == EXIT_SKIP:
        # docker/test.sh printed "SKIP: <reason>" just above.
        print("SKIP test_docker: this machine cannot build or run the image (reason above)")
        print("0 passed, 0 failed")
        return 0
    if rc == 0:
        print("ok   test_docker (%.1fs)" % dt)
        print("1 passed, 0 failed")
        return 0
    print("FAIL test_docker: docker/test.sh exited %d (%.1fs)" % (rc, dt))
    print("0 passed, 1 failed")
    return 1


if __name__ == "__main__":
    sys.exit(main())
