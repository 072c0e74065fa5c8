#!/usr/bin/python3
"""Process-level faults: descriptors run out (EMFILE), 10,000 held connections,
a log that cannot be written, the token file gone or unreadable at SIGHUP, and
Redis killed or frozen under load. In each case the proxy keeps serving, says
what happened once, and comes back to where it was.

Run: CREDPROXY_BIN=build/credproxy /usr/bin/python3 tests/integration/test_faults_process.py
"""
import os
import resource
import shutil
import signal
import socket
import threading
import time

import harness as h
from harness import check

URL = b"http://acme.atlassian.net/__echo"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of the whole process (every thread), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def nfds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def get(port, timeout=10, path=None):
    u = URL if path is None else b"http://acme.atlassian.net" + path
    raw = b"GET " + u + b" HTTP/1.1\r\nHost: acme.atlassian.net\r\nConnection: close\r\n\r\n"
    return h.raw_one(port, raw, timeout=timeout)


def start_limited(env, nofile, extra=None):
    """The proxy under prlimit (prlimit execs it: same pid)."""
    env.config(extra=extra)
    p = env.spawn(["prlimit", "--nofile=%d:%d" % (nofile, nofile), h.BIN, "run", "-c",
                   env.config_path], env=h.clean_env())
    env.proxy = p
    env.wait_listen(env.port, proc=p)
    return p


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@h.test(timeout=60)
def emfile_backs_off_and_recovers(env):
    if not shutil.which("prlimit"):
        raise h.Skip("prlimit (util-linux) not installed")
    env.start_fake()
    aport = h.free_port()
    p = start_limited(env, 64, extra={"workers": 2, "admin": "127.0.0.1:%d" % aport})
    check(get(env.port).status == 200, "serves before the fault")
    base = nfds(p.pid)
    held = []
    # Fill the proxy's descriptor table with idle connections, then some.
    for _ in range(64 - base + 8):  # the main listener takes them all
        s = socket.create_connection(("127.0.0.1", env.port), timeout=5)
        held.append(s)
    time.sleep(0.5)
    check(nfds(p.pid) >= 60, "the proxy's descriptor table is (nearly) full", nfds(p.pid))
    # One more client waits in the backlog of each listener: both stay readable.
    waiting = socket.create_connection(("127.0.0.1", env.port), timeout=5)
    admin_waiting = socket.create_connection(("127.0.0.1", aport), timeout=5)
    time.sleep(0.3)
    c0, t0 = cpu_seconds(p.pid), time.monotonic()
    time.sleep(2.0)
    used = (cpu_seconds(p.pid) - c0) / (time.monotonic() - t0)
    check(used < 0.15, "accept does not spin while descriptors are exhausted (CPU share)", used)
    check(p.alive(), "still running")
    warns = [ln for ln in p.stderr().splitlines()
             if " warn " in ln and "Too many open files" in ln]
    check(len(warns) == 1, "one warning for the episode (not one per attempt or per worker)",
          len(warns))
    for s in held:
        s.close()
    # The waiting client is accepted once descriptors free up, and is served.
    waiting.settimeout(10)
    waiting.sendall(b"GET " + URL + b" HTTP/1.1\r\nHost: acme.atlassian.net\r\n"
                    b"Connection: close\r\n\r\n")
    r, _ = h.read_response(waiting)
    waiting.close()
    check(r.status == 200, "the client that waited in the backlog is served after recovery", r)
    admin_waiting.settimeout(10)
    admin_waiting.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    r, _ = h.read_response(admin_waiting)
    admin_waiting.close()
    check(r.status == 200, "so is the one that waited on the admin listener", r)
    check(get(env.port).status == 200, "a new request succeeds after recovery")
    end = time.monotonic() + 5
    while time.monotonic() < end and "again" not in p.stderr():
        time.sleep(0.1)
    check(p.stderr().count("accepting connections on") == 1, "recovery logged once",
          p.stderr()[-800:])
    end = time.monotonic() + 5
    while time.monotonic() < end and nfds(p.pid) > base + 2:
        time.sleep(0.1)
    check(nfds(p.pid) <= base + 2, "descriptors back to the baseline", (base, nfds(p.pid)))


HELD = 10000


@h.test(timeout=90)
def ten_thousand_held_connections(env):
    # Inherited by the proxy: it needs a descriptor per client, and so do we.
    have = raise_nofile(2 * HELD + 200)
    if have < HELD + 200:
        raise h.Skip("RLIMIT_NOFILE hard limit %d is too low for %d connections" % (have, HELD))
    env.start_fake()
    p = env.start_proxy(extra={"workers": 2})
    check(get(env.port).status == 200, "serves before the load")
    base = nfds(p.pid)
    rss0 = h.vmrss_kib(p.pid)
    held = []
    t0 = time.monotonic()
    try:
        for _ in range(HELD):
            held.append(socket.create_connection(("127.0.0.1", env.port), timeout=10))
        opened = time.monotonic() - t0
        # Every connection is accepted (the head timeout, 10 s from accept, has not run out).
        end = time.monotonic() + 5
        while time.monotonic() < end and nfds(p.pid) < base + HELD - 3:
            time.sleep(0.1)
        check(nfds(p.pid) >= base + HELD - 3, "all %d connections accepted" % HELD,
              (base, nfds(p.pid)))
        t1 = time.monotonic()
        r = get(env.port)
        dt = time.monotonic() - t1
        check(r.status == 200, "a normal request is served meanwhile", r)
        check(dt < 2.0, "and promptly", dt)
        rss1 = h.vmrss_kib(p.pid)
        h.log("    %d connections opened in %.1f s; request with them held: %.0f ms; RSS %d -> %d "
              "KiB (%.1f KiB per connection)" % (HELD, opened, dt * 1000, rss0, rss1,
                                                 (rss1 - rss0) / HELD))
    finally:
        for s in held:
            s.close()
    end = time.monotonic() + 15
    while time.monotonic() < end and nfds(p.pid) > base + 2:
        time.sleep(0.2)
    check(nfds(p.pid) <= base + 2, "descriptors back to the baseline after they close",
          (base, nfds(p.pid)))
    check(get(env.port).status == 200, "serves after the load")
    check(p.alive(), "still running")


def spawn_with_stderr(env, path):
    """The proxy with its stderr opened on path (cleaned up with the test's processes)."""
    env.config(extra={"workers": 2})
    p = env.spawn(["sh", "-c", 'exec "$@" 2>"%s"' % path, "sh", h.BIN, "run", "-c",
                   env.config_path], env=h.clean_env())
    env.proxy = p
    env.wait_listen(env.port, proc=p)
    return p


def serve_many(env, n, what):
    codes, slow = [], 0
    for _ in range(n):
        t0 = time.monotonic()
        r = get(env.port, timeout=5)
        codes.append(r.status)
        slow += time.monotonic() - t0 > 1.0
    check(codes.count(200) == n, "%s: every request is served" % what,
          {c: codes.count(c) for c in set(codes)})
    check(slow == 0, "%s: none waits on the log" % what, slow)


@h.test(timeout=60)
def log_on_a_full_disk(env):
    env.start_fake()
    p = spawn_with_stderr(env, "/dev/full")
    # Every audit line fails with ENOSPC: the proxy goes on serving regardless.
    serve_many(env, 300, "stderr on /dev/full")
    check(p.alive(), "still running")


@h.test(timeout=60)
def log_into_a_pipe_nobody_reads(env):
    env.start_fake()
    fifo = os.path.join(env.dir, "stderr.fifo")
    os.mkfifo(fifo)
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader exists, and never reads
    try:
        p = spawn_with_stderr(env, fifo)
        # 64 KiB of pipe holds a few hundred audit lines; then every write would block.
        serve_many(env, 600, "stderr into a stalled pipe")
        check(p.alive(), "still running")
        # The reader comes back: logging resumes and says how much was lost.
        got = b""
        end = time.monotonic() + 5
        while time.monotonic() < end:
            try:
                got += os.read(rfd, 1 << 20)
            except BlockingIOError:
                if get(env.port).status == 200 and b"dropped" in got:
                    break
                time.sleep(0.1)
        text = got.decode("utf-8", "replace")
        check("log lines were dropped" in text, "the loss is reported once the log drains",
              text[-600:])
        env.extra_texts.append(text)
    finally:
        os.close(rfd)


if __name__ == "__main__":
    h.main()
