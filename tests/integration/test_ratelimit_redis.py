#!/usr/bin/python3
"""Two credproxy processes behind one redis-server (store: redis://) admit
exactly the shared budget between them; with Redis killed mid-test they keep
answering from their local buckets (no 5xx), log it once, and log once when
it is back. Skipped when redis-server is not installed.

Run: CREDPROXY_BIN=build/credproxy /usr/bin/python3 tests/integration/test_ratelimit_redis.py
"""
import os
import shutil
import socket
import subprocess
import time

import harness as h
from harness import check

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
URL = b"http://acme.atlassian.net/__echo"


def start_redis(env, port):
    p = env.spawn([REDIS, "--port", str(port), "--save", "", "--appendonly", "no",
                   "--bind", "127.0.0.1"])
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return p
        except OSError:
            time.sleep(0.02)
    raise AssertionError("redis-server did not start")


def start_proxy(env, rport, burst):
    """A proxy of its own (port, config file) sharing the fake and the store."""
    port = h.free_port()
    env.port = port
    env.config(credentials={"svc": {"type": "basic", "email": h.EMAIL,
                                    "token_file": os.path.join(env.dir, "token"),
                                    "rate_limit": "1/min", "burst": burst}},
               extra={"rate_limit": {"when_exhausted": "reject",
                                     "store": "redis://127.0.0.1:%d" % rport}})
    path = os.path.join(env.dir, "credproxy-%d.yaml" % port)
    os.rename(env.config_path, path)
    p = env.spawn([h.BIN, "run", "-c", path])
    env.wait_listen(port, proc=p)
    return port, p


def get(port):
    raw = b"GET " + URL + b" HTTP/1.1\r\nHost: acme.atlassian.net\r\nConnection: close\r\n\r\n"
    return h.raw_one(port, raw, timeout=10)


@h.test(timeout=90)
def two_replicas_one_budget(env):
    if not os.access(REDIS, os.X_OK):
        raise h.Skip("redis-server not installed")
    env.start_fake()
    rport = h.free_port()
    redis = start_redis(env, rport)
    pa, proc_a = start_proxy(env, rport, 4)
    pb, proc_b = start_proxy(env, rport, 4)
    time.sleep(0.3)
    codes = []
    for i in range(5):
        codes.append(get(pa).status)
        codes.append(get(pb).status)
    check(codes.count(200) == 4, "exactly the shared burst of 4 admitted across both", codes)
    check(codes.count(429) == 6, "the rest 429", codes)
    bad = [r for r in codes if r not in (200, 429)]
    check(not bad, "nothing else", codes)

    # Redis dies: both keep answering from their local buckets (burst 4 each).
    redis.kill()
    time.sleep(0.3)
    codes = []
    for i in range(6):
        codes.append(get(pa).status)
        codes.append(get(pb).status)
        time.sleep(0.15)
    check(all(c in (200, 429) for c in codes), "no failures while Redis is down", codes)
    check(codes.count(200) >= 4, "local fallback admits", codes)
    for p in (proc_a, proc_b):
        n = p.stderr().count("unreachable")
        check(n == 1, "one 'unreachable' line per process", n)

    # Back: recovery is logged once.
    start_redis(env, rport)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if all("reachable again" in p.stderr() for p in (proc_a, proc_b)):
            break
        time.sleep(0.1)
    for p in (proc_a, proc_b):
        check(p.stderr().count("reachable again") == 1, "recovery logged once",
              p.stderr()[-600:])
    codes = [get(pa).status, get(pb).status]
    check(all(c in (200, 429) for c in codes), "answers after recovery", codes)


if __name__ == "__main__":
    h.main()
