#!/usr/bin/python3
"""Rate limiting and client identity through the real binary (local store):
reject mode (burst passes, the rest 429 with Retry-After and
X-Credproxy-Error), queue mode (spread at the rate, all succeed), an upstream
429 with Retry-After pausing the credential, max_wait and a full queue, two
clients with separate quotas, 407 cases, the non-loopback refusal (exit 2)
and the unix-socket peer identity. Short rates keep it fast.

Run: CREDPROXY_BIN=build/credproxy /usr/bin/python3 tests/integration/test_ratelimit_local.py [TEST...]
"""
import base64
import os
import threading
import time

import harness as h
from harness import check

URL = "http://acme.atlassian.net/__echo"
KEY_A = "key-a-" + os.urandom(8).hex()
KEY_B = "key-b-" + os.urandom(8).hex()


def cred(env, rate, burst):
    return {"svc": {"type": "basic", "email": h.EMAIL,
                    "token_file": os.path.join(env.dir, "token"),
                    "rate_limit": rate, "burst": burst}}


def start(env, rate="5/s", burst=3, rl=None, clients=None, extra=None, **kw):
    env.start_fake()
    ex = {"rate_limit": rl or {"when_exhausted": "reject"}}
    if clients is not None:
        ex["clients"] = clients
    ex.update(extra or {})
    env.start_proxy(credentials=cred(env, rate, burst), extra=ex, **kw)


def get(env, url=URL, client=None, key=None, timeout=20):
    raw = b"GET " + url.encode() + b" HTTP/1.1\r\nHost: acme.atlassian.net\r\n"
    if client is not None:
        raw += b"Proxy-Authorization: Basic " + base64.b64encode(
            ("%s:%s" % (client, key)).encode()) + b"\r\n"
    raw += b"Connection: close\r\n\r\n"
    return h.raw_one(env.port, raw, timeout=timeout)


def parallel(fn, n):
    out = [None] * n
    ts = [threading.Thread(target=lambda i=i: out.__setitem__(i, fn(i))) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    return out


def is_rate_limited(r):
    return h.proxy_error(r, 429, "rate_limited") and check(
        (r.header("Retry-After") or "").isdigit() and int(r.header("Retry-After")) >= 1,
        "Retry-After in whole seconds", r)


@h.test
def reject_mode_burst_then_429(env):
    start(env, rate="5/s", burst=3)
    seq = env.fake.last_seq()
    rs = [get(env) for _ in range(6)]
    codes = [r.status for r in rs]
    check(codes[:3] == [200, 200, 200], "the burst of 3 passes", codes)
    for r in rs[3:]:
        if r.status == 429:
            is_rate_limited(r)
            check(r.header("Retry-After") == "1", "honest Retry-After (a token in <= 200 ms)", r)
    check(codes.count(200) <= 4, "at most burst + one refill pass", codes)
    check(codes.count(429) >= 2, "the rest are 429", codes)
    check(len(env.fake.records(since=seq)) == codes.count(200),
          "the fake saw only the admitted requests")
    time.sleep(0.5)
    check(get(env).status == 200, "tokens come back at the rate")


@h.test
def queue_mode_spreads_requests(env):
    start(env, rate="5/s", burst=2, rl={"when_exhausted": "queue", "max_wait": "10s"})
    t0 = time.monotonic()
    rs = parallel(lambda i: get(env), 8)
    took = time.monotonic() - t0
    codes = [r.status for r in rs]
    check(codes == [200] * 8, "every queued request succeeds", codes)
    # 2 at once, then 6 more at 5/s: >= 1.2 s (some slack for scheduling).
    check(took >= 1.0, "requests spread at the configured rate (%.2fs)" % took)
    check(took < 6, "and not much slower (%.2fs)" % took)
    recs = [x["time"] for x in env.fake.records(path="/__echo")]
    recs.sort()
    if len(recs) == 8:
        span = recs[-1] - recs[2]
        check(span >= 0.9, "the fake saw them spread (%.2fs after the burst)" % span)


@h.test
def upstream_retry_after_pauses(env):
    start(env, rate="50/s", burst=10, rl={"when_exhausted": "queue", "max_wait": "10s"})
    r = get(env, "http://acme.atlassian.net/__status?code=429&retry_after=2")
    check(r.status == 429, "the upstream 429 reaches the client", r)
    check(r.header("X-Credproxy-Error") is None, "as it came (not the proxy's own 429)", r)
    check(r.header("Retry-After") == "2", "with its Retry-After", r)
    t0 = time.monotonic()
    r2 = get(env)
    took = time.monotonic() - t0
    check(r2.status == 200, "the next request succeeds", r2)
    check(took >= 1.5, "after waiting out the pause (%.2fs)" % took)


@h.test
def upstream_pause_reject_mode(env):
    start(env, rate="50/s", burst=10)
    get(env, "http://acme.atlassian.net/__status?code=429&retry_after=3")
    r = get(env)
    is_rate_limited(r)
    check(r.header("Retry-After") in ("2", "3"), "Retry-After reflects the pause", r)


@h.test
def max_wait_and_full_queue(env):
    start(env, rate="1/min", burst=1,
          rl={"when_exhausted": "queue", "max_wait": "700ms", "max_queue": 1})
    check(get(env).status == 200, "the one token")
    results = {}

    def waiter():
        t0 = time.monotonic()
        results["wait"] = (get(env), time.monotonic() - t0)

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    full = get(env)
    took_full = time.monotonic() - t0
    t.join(20)
    is_rate_limited(full)
    check(took_full < 0.4, "a full queue answers at once (%.2fs)" % took_full)
    r, took = results.get("wait", (None, 0))
    check(r is not None and r.status == 429, "max_wait passed -> 429", r)
    if r is not None and r.status == 429:
        is_rate_limited(r)
        check(int(r.header("Retry-After")) >= 50, "honest: the next token is ~a minute away", r)
    check(0.6 <= took < 3, "after max_wait (%.2fs)" % took)


def clients():
    return [{"id": "bot-a", "key": KEY_A, "rate_limit": "1/min", "burst": 2},
            {"id": "bot-b", "key": KEY_B}]


@h.test
def two_clients_separate_quotas(env):
    start(env, rate="100/s", burst=50, clients=clients())
    a = [get(env, client="bot-a", key=KEY_A).status for _ in range(4)]
    check(a[:2] == [200, 200], "bot-a: its burst of 2", a)
    check(a[2:] == [429, 429], "bot-a: then its own quota says no", a)
    b = [get(env, client="bot-b", key=KEY_B).status for _ in range(5)]
    check(b == [200] * 5, "bot-b is not held by bot-a's quota", b)
    anon = get(env)
    check(anon.status == 200, "anonymous still allowed (require_client_auth false)", anon)
    env.assert_no_secret()
    for p in env.procs:
        for k in (KEY_A, KEY_B):
            check(k not in p.stderr(), "client keys never logged")


@h.test
def proxy_auth_407(env):
    start(env, rate="100/s", burst=50, clients=clients(), extra={"require_client_auth": True})
    seq = env.fake.last_seq()
    for what, r in (("missing", get(env)),
                    ("wrong key", get(env, client="bot-a", key="nope")),
                    ("unknown id", get(env, client="bot-x", key=KEY_A)),
                    ("empty key", get(env, client="bot-a", key=""))):
        h.proxy_error(r, 407, "client_auth_required")
        check((r.header("Proxy-Authenticate") or "").startswith("Basic"),
              "%s: Proxy-Authenticate: Basic" % what, r)
    raw = (b"GET " + URL.encode() + b" HTTP/1.1\r\nHost: acme.atlassian.net\r\n"
           b"Proxy-Authorization: Bearer abc\r\nConnection: close\r\n\r\n")
    h.proxy_error(h.raw_one(env.port, raw), 407, "client_auth_required")
    check(env.fake.last_seq() == seq, "nothing reached the fake")
    ok = get(env, client="bot-b", key=KEY_B)
    check(ok.status == 200, "a valid client passes", ok)
    recs = env.fake.records(since=seq)
    check(all(h.header_of(x["headers"], "Proxy-Authorization") is None for x in recs
              if "headers" in x), "Proxy-Authorization is not forwarded")
    for p in env.procs:
        check(KEY_B not in p.stderr() and KEY_A not in p.stderr(), "client keys never logged")


@h.test
def non_loopback_without_clients_exits_2(env):
    env.start_fake()
    env.config(credentials=cred(env, "5/s", 3), listen="0.0.0.0:%d" % h.free_port())
    p = env.spawn([h.BIN, "run", "-c", env.config_path])
    rc = None
    for _ in range(100):
        if not p.alive():
            rc = p.p.returncode
            break
        time.sleep(0.05)
    check(rc == 2, "refused with exit 2", rc)
    check("allow_unauthenticated_remote" in p.stderr() or "client" in p.stderr(),
          "the message says what to do", p.stderr()[-500:])


@h.test
def unix_socket_peer_uid(env):
    sock = os.path.join(env.dir, "proxy.sock")
    env.start_fake()
    env.port = h.free_port()
    env.config(credentials=cred(env, "100/s", 10),
               listen=["127.0.0.1:%d" % env.port, "unix:" + sock])
    env.start_proxy(args=["run", "-c", env.config_path])
    for _ in range(100):
        if os.path.exists(sock):
            break
        time.sleep(0.05)
    r = env.curl(["--unix-socket", sock, "http://acme.localhost/__echo"])
    check(r.status == 200, "request over the unix socket", r)
    time.sleep(0.3)
    check(("uid:%d" % os.getuid()) in env.proxy.stderr(),
          "the audit line names the peer uid", env.proxy.stderr()[-800:])


if __name__ == "__main__":
    h.main()
