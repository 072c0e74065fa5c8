#!/usr/bin/python3
"""Upstream faults on loopback: what the client sees, and that nothing is lost silently.

The fake's /__fault/KIND endpoints (tests/fake_atlassian.py, "faults" section)
break the upstream side in a named way. For each fault, in the three modes
(absolute-form forward, gateway Host, intercepted CONNECT), the client must
see either the proxy's own 502/504 (before a response head) or a response
that is visibly incomplete (Content-Length short, or no chunked terminator,
and the connection closed) -- never a clean end. The audit line must carry an
error code, and the proxy must go on serving.

Run: CREDPROXY_BIN=build/credproxy /usr/bin/python3 tests/integration/test_faults.py
"""
import json
import os
import socket
import ssl
import subprocess
import time

import harness as h  # noqa: I100 (puts tests/ on sys.path)
import fake_atlassian as fa  # noqa: E402
import intercept_helpers as ih
from harness import check

SITE = "acme.atlassian.net"
BEFORE_HEAD = ["reset-before-head", "reset-mid-head", "garbage-head"]
MID_BODY_SIZED = ["reset-mid-body", "fin-mid-body", "close-notify-mid-body", "tls-alert-mid-body"]


def json_lines(proc):
    out = []
    for ln in proc.stderr().splitlines():
        try:
            o = json.loads(ln)
        except ValueError:
            continue
        if isinstance(o, dict):
            out.append(o)
    return out


def audits_for(proc, path, n=1, timeout=5.0):
    """Audit objects for path, waiting until n exist (lines are written as requests end)."""
    end = time.monotonic() + timeout
    while True:
        got = [o for o in json_lines(proc) if o.get("msg") == "audit" and o.get("path") == path]
        if len(got) >= n or time.monotonic() > end:
            return got
        time.sleep(0.05)


JSON_LOG = {"log": {"level": "debug", "audit": True, "format": "json"}}


def start(env, sites=None, upstream=None, intercept=False, unknown_hosts=None, extra_cfg=None):
    """Fake + proxy with JSON logs (audit lines are read back); returns the CA dir or None."""
    env.start_fake()
    extra = dict(JSON_LOG)
    extra.update(extra_cfg or {})
    certs = None
    if intercept:
        certs = os.path.join(env.dir, "certs")
        extra["interception"] = {"ca_cert": os.path.join(certs, "ca.pem"),
                                 "ca_key": os.path.join(certs, "ca.key")}
        env.config(sites=sites, extra=extra)
        p = subprocess.run([h.BIN, "ca", "init", "-c", env.config_path, "--dir", certs],
                           env=h.clean_env(), capture_output=True, timeout=30)
        check(p.returncode == 0, "credproxy ca init exits 0", p.stderr)
    env.start_proxy(sites=sites, upstream=upstream, unknown_hosts=unknown_hosts, extra=extra)
    return certs


class Client:
    """One client connection in one mode; .get(path) sends a request and reads one response."""

    def __init__(self, env, mode, certs=None):
        self.env, self.mode = env, mode
        if mode == "intercept":
            raw, r = ih.tunnel(env, "%s:443" % SITE)
            check(r.status == 200, "CONNECT established", r)
            ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
            self.sock = ctx.wrap_socket(raw, server_hostname=SITE)
        else:
            self.sock = socket.create_connection(("127.0.0.1", env.port), timeout=15)
        self.sock.settimeout(15)
        self.buf = b""

    def get(self, path):
        if self.mode == "forward":
            line, host = "GET http://%s%s HTTP/1.1" % (SITE, path), SITE
        elif self.mode == "gateway":
            line, host = "GET %s HTTP/1.1" % path, "acme.localhost:%d" % self.env.port
        else:
            line, host = "GET %s HTTP/1.1" % path, SITE
        self.sock.sendall(("%s\r\nHost: %s\r\n\r\n" % (line, host)).encode())
        r, self.buf = h.read_response(self.sock, self.buf)
        return r

    def closed(self):
        return h.connection_closed(self.sock, timeout=5)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def still_serves(env, mode, certs=None):
    c = Client(env, mode, certs)
    r = c.get("/rest/api/3/myself")
    c.close()
    return check(r.status == 200 and (r.json() or {}).get("displayName") == "Service Bot",
                 "%s: a normal request after the fault is served" % mode, r)


def fault_matrix(env, mode, certs=None):
    fake = env.fake
    for kind in BEFORE_HEAD:
        path = fa.FAULT_PREFIX + kind
        since = fake.last_seq()
        c = Client(env, mode, certs)
        r = c.get(path)
        what = "%s %s" % (mode, kind)
        # Bytes that are not HTTP cannot be framed; a connection that ends early failed.
        code = "upstream_bad_response" if kind == "garbage-head" else "upstream_unreachable"
        h.proxy_error(r, 502, code)
        msg = (r.json() or {}).get("message", "")
        check(SITE in msg and ("exchange" in msg or "response" in msg),
              "%s: the message names the upstream and the failure" % what, msg)
        recs = fake.records(path=path, since=since)
        check(len(recs) >= 1 and all(x["authorization"] == h.BASIC for x in recs),
              "%s: the request did reach the site (with its credential)" % what, len(recs))
        # A GET may be retried once by libcurl on a fresh connection, never more.
        check(len(recs) <= 2, "%s: not replayed more than once" % what, len(recs))
        a = audits_for(env.proxy, path)
        check(a and a[-1].get("status") == 502 and a[-1].get("error") == code,
              "%s: audited as 502 %s" % (what, code), a[-1:] or None)
        c.close()
    for kind in MID_BODY_SIZED:
        path = fa.FAULT_PREFIX + kind
        c = Client(env, mode, certs)
        r = c.get(path)
        what = "%s %s" % (mode, kind)
        check(r.status == 200, "%s: the head was passed on" % what, r)
        check(r.header("content-length") == str(fa.FAULT_BODY_LEN),
              "%s: the upstream's Content-Length is kept" % what, r)
        check(r.error == "eof in sized body" and fa.FAULT_SENT <= len(r.body) < fa.FAULT_BODY_LEN,
              "%s: the body is visibly short (never a clean end)" % what,
              (r.error, len(r.body)))
        check(r.body == fa.pattern_bytes(0, len(r.body)), "%s: the bytes that came are right" % what)
        check(c.closed(), "%s: the connection is closed" % what)
        a = audits_for(env.proxy, path)
        check(a and a[-1].get("error") == "upstream_unreachable",
              "%s: the audit line carries the error" % what, a[-1:] or None)
        c.close()
    path = fa.FAULT_PREFIX + "reset-mid-chunk"
    c = Client(env, mode, certs)
    r = c.get(path)
    what = "%s reset-mid-chunk" % mode
    check(r.status == 200 and "chunked" in (r.header("transfer-encoding") or ""),
          "%s: chunked head passed on" % what, r)
    check(r.error in ("eof in chunk", "eof in chunked body"),
          "%s: no chunked terminator (never a clean end)" % what, r.error)
    check(c.closed(), "%s: the connection is closed" % what)
    a = audits_for(env.proxy, path)
    check(a and a[-1].get("error") == "upstream_unreachable",
          "%s: the audit line carries the error" % what, a[-1:] or None)
    c.close()
    still_serves(env, mode, certs)
    check(env.proxy.alive(), "the proxy is still running")


@h.test(timeout=90)
def faults_forward_and_gateway(env):
    start(env)
    fault_matrix(env, "forward")
    fault_matrix(env, "gateway")


@h.test(timeout=90)
def faults_intercepted(env):
    certs = start(env, intercept=True)
    fault_matrix(env, "intercept", certs)


@h.test(timeout=60)
def slow_upstream(env):
    start(env, upstream={"timeout": "1s"})
    for mode in ("forward", "gateway"):
        c = Client(env, mode)
        t0 = time.monotonic()
        r = c.get("/__slow?head_delay=4&delay=0&chunks=1")
        dt = time.monotonic() - t0
        h.proxy_error(r, 504, "upstream_timeout")
        check(0.8 < dt < 3.5, "%s: answered when upstream.timeout passed" % mode, dt)
        c.close()
        # The head and some bytes came in time, the rest did not: cut, not ended.
        c = Client(env, mode)
        r = c.get(fa.FAULT_PREFIX + "stall-mid-body?secs=3")
        check(r.status == 200 and r.error == "eof in sized body"
              and fa.FAULT_SENT <= len(r.body) < fa.FAULT_BODY_LEN,
              "%s: a body that stalls past the timeout is visibly short" % mode,
              (r.status, r.error, len(r.body)))
        check(c.closed(), "%s: and the connection is closed" % mode)
        c.close()
    a = audits_for(env.proxy, "/__slow", n=2) + audits_for(env.proxy, "/__fault/stall-mid-body", n=2)
    check([x.get("error") for x in a] == ["upstream_timeout"] * 4,
          "every slow exchange is audited as upstream_timeout", a)
    still_serves(env, "forward")


@h.test(timeout=60)
def dns_failure(env):
    sites = [{"domain": "acme", "credential": "svc"},
             {"host": "nonexistent.invalid", "credential": "svc"}]
    # No name server is reachable in the test's namespace: evdns would wait for one until
    # connect_timeout, and that must still read as a DNS failure.
    start(env, sites=sites, unknown_hosts="tunnel", upstream={"connect_timeout": "2s"})
    r = h.raw_one(env.port, b"GET http://nonexistent.invalid/rest/api/3/myself HTTP/1.1\r\n"
                            b"Host: nonexistent.invalid\r\n\r\n")
    h.proxy_error(r, 502, "upstream_unreachable")
    msg = (r.json() or {}).get("message", "")
    check("resolve" in msg and "nonexistent.invalid" in msg, "the message says DNS and the host",
          msg)
    # A blind tunnel resolves with evdns, which holds the query while no name server
    # answers (none is reachable here): a DNS timeout, 504, and the message says DNS.
    s = socket.create_connection(("127.0.0.1", env.port), timeout=10)
    s.sendall(b"CONNECT unresolvable.invalid:443 HTTP/1.1\r\nHost: unresolvable.invalid:443\r\n\r\n")
    r, _ = h.read_response(s)
    s.close()
    h.proxy_error(r, 504, "upstream_timeout")
    msg = (r.json() or {}).get("message", "")
    check("resolving unresolvable.invalid" in msg and "DNS" in msg, "tunnel: the message says DNS",
          msg)
    lines = env.proxy.stderr().splitlines()
    check(all(ln.startswith("{") for ln in lines if ln.strip()),
          "every stderr line is JSON (libevent's own messages too)",
          [ln for ln in lines if not ln.startswith("{")][:3])
    check(not env.fake.records(), "nothing reached any upstream", env.fake.records())
    still_serves(env, "forward")


@h.test(timeout=60)
def dead_reused_connection_no_replay(env):
    """A pooled upstream connection that dies before the response: libcurl would send the
    request again on a fresh one. Fine for GET/PUT/DELETE; never for POST or PATCH."""
    start(env, extra_cfg={"workers": 1})
    warm = (b"GET http://acme.atlassian.net/__echo HTTP/1.1\r\nHost: acme.atlassian.net\r\n"
            b"\r\n")
    for method, body, most in (("POST", b"", 1), ("PATCH", b"", 1), ("POST", b"{}", 1),
                               ("GET", b"", 2), ("DELETE", b"", 2)):
        check(h.raw_one(env.port, warm).status == 200, "warm-up (pools a connection)")
        since = env.fake.last_seq()
        req = ("%s http://acme.atlassian.net/__fault/reset-before-head HTTP/1.1\r\n"
               "Host: acme.atlassian.net\r\nContent-Length: %d\r\n\r\n"
               % (method, len(body))).encode() + body
        r = h.raw_one(env.port, req)
        what = "%s with %d body bytes" % (method, len(body))
        h.proxy_error(r, 502, "upstream_unreachable")
        n = len(env.fake.records(path="/__fault/", since=since))
        check(1 <= n <= most, "%s: the upstream saw it at most %d time(s)" % (what, most), n)
    still_serves(env, "forward")


@h.test(timeout=60)
def upstream_resets_during_upload(env):
    """The upstream drops the connection while the client is still sending its body:
    the client gets an answer (502) rather than a hang, nothing is resent, and the proxy
    goes on serving."""
    start(env)
    size = 8 * 1024 * 1024
    for mode in ("forward", "gateway"):
        since = env.fake.last_seq()
        c = Client(env, mode)
        if mode == "forward":
            head = "POST http://%s%sreset-during-upload HTTP/1.1\r\nHost: %s\r\n" % (
                SITE, fa.FAULT_PREFIX, SITE)
        else:
            head = "POST %sreset-during-upload HTTP/1.1\r\nHost: acme.localhost:%d\r\n" % (
                fa.FAULT_PREFIX, env.port)
        c.sock.sendall((head + "Content-Length: %d\r\n\r\n" % size).encode())
        sent = 0
        chunk = b"u" * 65536
        try:
            while sent < size:
                c.sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # the proxy may stop reading once it has answered
        r, _ = h.read_response(c.sock, c.buf)
        what = "%s upload" % mode
        h.log("    %s: sent %d of %d, got %s %s" % (what, sent, size, r.status, r.error))
        if r.status is not None:
            h.proxy_error(r, 502, "upstream_unreachable")
        check(r.status == 502 or r.error is not None, "%s: an error, not a success" % what, r)
        check(c.closed(), "%s: the connection is closed (the rest of the body is unread)" % what)
        recs = env.fake.records(path=fa.FAULT_PREFIX, since=since)
        check(len(recs) == 1, "%s: sent upstream once (never replayed)" % what, len(recs))
        c.close()
    still_serves(env, "forward")


if __name__ == "__main__":
    h.main()
