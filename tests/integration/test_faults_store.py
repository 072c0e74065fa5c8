#!/usr/bin/python3
"""Faults in what the proxy reads: the token file made unreadable before a
SIGHUP (the reload is refused with the reason, the old credential keeps
serving, no secret is logged), and Redis killed or frozen while requests are
in flight with `store: redis://` (the documented fallback: local buckets, one
warning, no request failed or held past the reply timeout).

Run: CREDPROXY_BIN=build/credproxy /usr/bin/python3 tests/integration/test_faults_store.py
"""
import os
import shutil
import signal
import socket
import threading
import time

import harness as h
from harness import check

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
URL = b"http://acme.atlassian.net/__echo"
# RL_REDIS_REPLY_TIMEOUT_MS (proxy/ratelimit_redis.h) plus the watchdog period and slack.
REDIS_STALL_BOUND_S = 2.5


def get(port, timeout=10):
    raw = b"GET " + URL + b" HTTP/1.1\r\nHost: acme.atlassian.net\r\nConnection: close\r\n\r\n"
    return h.raw_one(port, raw, timeout=timeout)


def wait_log(proc, needle, count, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.stderr().count(needle) >= count:
            return True
        time.sleep(0.05)
    return False


def clear_path(path):
    if os.path.isdir(path) and not os.path.islink(path):
        os.rmdir(path)
    elif os.path.lexists(path):
        os.unlink(path)


def write_token(path):
    clear_path(path)
    with open(path, "w") as f:
        f.write(h.TOKEN + "\n")
    os.chmod(path, 0o600)


@h.test(timeout=60)
def token_file_unreadable_at_sighup(env):
    env.start_fake()
    env.start_proxy()
    token = os.path.join(env.dir, "token")
    r = get(env.port)
    check(r.status == 200, "serves before the fault", r)
    cases = [("deleted", lambda: clear_path(token)),
             ("replaced by a directory", lambda: (clear_path(token), os.mkdir(token))),
             ("a dangling symlink",
              lambda: (clear_path(token), os.symlink(os.path.join(env.dir, "gone"), token)))]
    if os.geteuid() != 0:  # root reads a 0000 file anyway
        cases.append(("mode 0000", lambda: os.chmod(token, 0)))
    for n, (what, breakit) in enumerate(cases, 1):
        write_token(token)
        breakit()
        since = env.fake.last_seq()
        env.proxy.p.send_signal(signal.SIGHUP)
        ok = wait_log(env.proxy, "reload rejected", n)
        check(ok, "%s: the reload is refused" % what, env.proxy.stderr()[-600:])
        line = [ln for ln in env.proxy.stderr().splitlines() if "reload rejected" in ln][-1:]
        check(line and token in line[0], "%s: the log names the token file" % what, line)
        r = get(env.port)
        recs = env.fake.records(since=since)
        check(r.status == 200 and recs and recs[-1]["authorization"] == h.BASIC,
              "%s: the old credential keeps serving" % what, r)
        check(env.proxy.alive(), "%s: still running" % what)
    # Put it back: the next SIGHUP is taken again.
    write_token(token)
    env.proxy.p.send_signal(signal.SIGHUP)
    check(wait_log(env.proxy, "configuration reloaded", 1), "a repaired file reloads",
          env.proxy.stderr()[-600:])
    check(get(env.port).status == 200, "and serves")


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


class Load:
    """N threads sending requests back to back; every outcome is kept."""

    def __init__(self, port, n):
        self.port, self.stop, self.results = port, threading.Event(), []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(n)]

    def run(self):
        while not self.stop.is_set():
            t0 = time.monotonic()
            r = get(self.port, timeout=10)
            with self.lock:
                self.results.append((t0, time.monotonic() - t0, r.status, r.error))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *a):
        self.stop.set()
        for t in self.threads:
            t.join(15)


def redis_fault_under_load(env, fault):
    if not os.access(REDIS, os.X_OK):
        raise h.Skip("redis-server not installed")
    env.start_fake()
    rport = h.free_port()
    redis = start_redis(env, rport)
    cred = {"type": "basic", "email": h.EMAIL, "token_file": os.path.join(env.dir, "token"),
            "rate_limit": "6000/min", "burst": 50}
    env.start_proxy(credentials={"svc": cred},
                    extra={"rate_limit": {"when_exhausted": "queue", "max_wait": "5s",
                                          "store": "redis://127.0.0.1:%d" % rport}})
    check(wait_log(env.proxy, "reachable", 1), "the proxy reached Redis")
    with Load(env.port, 4) as load:
        time.sleep(1.0)
        t_fault = time.monotonic()
        fault(redis)
        time.sleep(3.0)
    res = load.results
    bad = [(round(dt, 2), st, err) for _, dt, st, err in res if st != 200]
    check(len(res) > 50, "traffic flowed through the fault", len(res))
    check(not bad, "every request answered 200 (local fallback: the budget is generous)",
          bad[:10])
    during = [dt for t0, dt, _, _ in res if t0 >= t_fault - 0.5]
    worst = max(during) if during else 0
    check(worst < REDIS_STALL_BOUND_S, "no request held past the Redis reply timeout", worst)
    after = [1 for t0, _, _, _ in res if t0 >= t_fault + 1.5]
    check(len(after) > 10, "requests keep flowing after the fault", len(after))
    err = env.proxy.stderr()
    check(err.count("unreachable") == 1, "one 'unreachable' warning for the episode",
          err.count("unreachable"))
    return redis


@h.test(timeout=60)
def redis_killed_under_load(env):
    redis_fault_under_load(env, lambda p: os.kill(p.pid, signal.SIGKILL))


@h.test(timeout=60)
def redis_frozen_under_load(env):
    def freeze(p):
        os.kill(p.pid, signal.SIGSTOP)
    redis = redis_fault_under_load(env, freeze)
    os.kill(redis.pid, signal.SIGCONT)


if __name__ == "__main__":
    h.main()
