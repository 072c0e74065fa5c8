#!/usr/bin/python3
"""The lean HTTP/1.1 upstream engine (issue 14): response framing cases end to
end, malformed responses (502 upstream_bad_response, never relayed), the retry
of a request whose pooled connection the server had closed (and no retry for a
POST whose body was sent), TLS verification failures, and the switch: with
`http2: true` or `upstream.proxy` libcurl still serves (it tolerates obs-fold,
the lean engine refuses it, which tells them apart).

Run: CREDPROXY_BIN=build/credproxy /usr/bin/python3 tests/integration/test_lean_upstream.py [TEST...]
"""
import json
import socket
import threading
import time

import harness as h
from harness import check

URL = "http://acme.atlassian.net"


def _raw(env, case, method="GET"):
    req = ("%s %s/__lean/raw?case=%s HTTP/1.1\r\nHost: acme.atlassian.net\r\n\r\n"
           % (method, URL, case)).encode()
    return h.raw_one(env.port, req)


def _metric(aport, name):
    r = h.raw_one(aport, b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    total = 0.0
    for line in (r.body or b"").decode("utf-8", "replace").splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


@h.test
def lean_framing_cases(env):
    env.start_fake()
    env.start_proxy()
    r = _raw(env, "chunked")
    check(r.status == 200 and r.body == b"hello, world", "chunked body decoded and relayed", r)
    check("upstream engine lean-h1" in env.proxy.stderr()
          and "upstream engine libcurl" not in env.proxy.stderr(),
          "the default engine is the lean one (debug log)")
    check(r.header("X-Trailer") is None, "chunked trailers dropped", r)
    r = _raw(env, "close")
    check(r.status == 200 and r.body == b"until the server closes",
          "close-delimited body relayed whole", r)
    r = _raw(env, "continue")
    check(r.status == 200 and r.body == b"final", "interim 100 and 103 consumed, final relayed", r)
    check(r.header("Link") is None, "interim headers never reach the client", r)
    r = _raw(env, "204")
    check(r.status == 204 and r.body == b"" and r.header("X-Lean") == "204", "204 without body", r)
    r = _raw(env, "304")
    check(r.status == 304 and r.body == b"", "304 without body (its Content-Length ignored)", r)
    sk = socket.create_connection(("127.0.0.1", env.port), timeout=10)
    sk.sendall(("HEAD %s/__lean/raw?case=head HTTP/1.1\r\nHost: acme.atlassian.net\r\n\r\n"
                % URL).encode())
    r, _ = h.read_response(sk, head_only=True)
    sk.close()
    check(r.status == 200 and r.body == b"" and r.header("X-Lean") == "head",
          "HEAD answer: head only", r)
    check(r.header("Content-Length") == "1234", "HEAD keeps the upstream's Content-Length", r)
    # the connection to the client stays usable after each case
    r = env.curl_proxy(URL + "/rest/api/3/myself")
    check(r.status == 200, "a normal request still works", r)
    env.stop_proxy()


@h.test
def lean_malformed_502(env):
    env.start_fake()
    env.start_proxy()
    for case in ("obsfold", "clte", "dupcl", "badchunk", "barelf", "switch", "garbage"):
        r = _raw(env, case)
        if case == "badchunk":
            # the head was fine and already relayed: the body cannot be framed, the client
            # connection is cut instead of ending the body as if complete
            check(r.error is not None, "bad chunk size: the client connection is cut", r)
            check(b"hello" not in (r.body or b""), "no byte of the unframed body relayed", r)
            continue
        h.proxy_error(r, 502, "upstream_bad_response")
        check(b"HTTP/1.1 101" not in (r.raw or b""), "%s: upstream bytes never relayed" % case, r)
    r = _raw(env, "truncated")
    check(r.status == 200 and r.error is not None,
          "a body cut short is never completed by the proxy (the client sees the cut)", r)
    r = env.curl_proxy(URL + "/rest/api/3/myself")
    check(r.status == 200, "the proxy still serves after malformed responses", r)
    env.stop_proxy()


@h.test
def lean_retry_stale_pooled_connection(env):
    env.start_fake()
    aport = h.free_port()
    env.start_proxy(extra={"workers": 1, "admin": "127.0.0.1:%d" % aport})
    env.wait_listen(aport)
    r = env.curl_proxy(URL + "/__lean/keep_then_drop")
    first = (r.json() or {}).get("conn")
    check(r.status == 200 and first, "first request answered on a pooled connection", r)
    before = _metric(aport, "credproxy_upstream_connections_total")
    s = env.fake.last_seq()
    r = env.curl_proxy(URL + "/__echo")
    check(r.status == 200, "the request whose pooled connection was closed is retried: 200", r)
    dropped = [x for x in env.fake.records(since=s) if "lean_dropped" in x["flags"]]
    echoed = [x for x in env.fake.records(since=s, path="/__echo") if not x["flags"]]
    check(len(dropped) == 1 and dropped[0]["conn"] == first, "first try went to the stale one",
          dropped)
    check(len(echoed) == 1 and echoed[0]["conn"] != first, "retried once on a fresh connection",
          echoed)
    check(echoed and echoed[0]["authorization"] == h.BASIC, "the retry carries the credential")
    after = _metric(aport, "credproxy_upstream_connections_total")
    check(after - before == 1, "the fresh connection is counted once", (before, after))
    env.stop_proxy()


@h.test
def lean_server_closes_idle_connection(env):
    env.start_fake()
    env.start_proxy(extra={"workers": 1})
    r = env.curl_proxy(URL + "/__lean/close_idle?after=0.1")
    first = (r.json() or {}).get("conn")
    check(r.status == 200 and first, "answered, then the server closes the idle connection", r)
    time.sleep(0.6)
    s = env.fake.last_seq()
    r = env.curl_proxy(URL + "/__echo")
    check(r.status == 200, "the next request is served", r)
    recs = env.fake.records(since=s)
    check(len(recs) == 1 and recs[0]["conn"] != first and not recs[0]["flags"],
          "on a fresh connection, without a failed try on the closed one", recs)
    env.stop_proxy()


@h.test
def lean_no_retry_post_with_sent_body(env):
    env.start_fake()
    env.start_proxy(extra={"workers": 1})
    r = env.curl_proxy(URL + "/__lean/echo_drop")
    check(r.status == 200, "a connection is pooled", r)
    s = env.fake.last_seq()
    body = b"x" * 1000
    req = (b"POST " + URL.encode() + b"/__upload HTTP/1.1\r\nHost: acme.atlassian.net\r\n"
           b"Content-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n" + body)
    r = h.raw_one(env.port, req)
    h.proxy_error(r, 502, "upstream_unreachable")
    ups = [x for x in env.fake.records(since=s, path="/__upload") if "lean_dropped" not in x["flags"]]
    check(not ups, "the POST was not sent again after its body went out", ups)
    env.stop_proxy()


@h.test
def lean_retry_put_replays_body(env):
    env.start_fake()
    env.start_proxy(extra={"workers": 1})
    r = env.curl_proxy(URL + "/__lean/echo_drop")
    check(r.status == 200, "a connection is pooled", r)
    s = env.fake.last_seq()
    body = bytes(range(256)) * 8
    req = (b"PUT " + URL.encode() + b"/__upload HTTP/1.1\r\nHost: acme.atlassian.net\r\n"
           b"Content-Type: application/octet-stream\r\nContent-Length: 2048\r\n\r\n" + body)
    r = h.raw_one(env.port, req)
    check(r.status == 200, "an idempotent PUT whose body went out is replayed on a fresh connection",
          r)
    got = r.json() or {}
    check(got.get("length") == 2048 and got.get("sha256") == h.sha256(body),
          "the replayed body is byte for byte the client's", got)
    ups = [x for x in env.fake.records(since=s, path="/__upload") if not x["flags"]]
    check(len(ups) == 1, "exactly one complete PUT reached the upstream", ups)
    dropped = [x for x in env.fake.records(since=s, path="/__upload") if "lean_dropped" in x["flags"]]
    check(len(dropped) == 1, "the first try went to the stale pooled connection", dropped)
    env.stop_proxy()


@h.test
def lean_tls_session_resumed(env):
    env.start_fake()
    env.start_proxy(extra={"workers": 1})
    seen = []
    for _ in range(3):
        r = env.curl_proxy(URL + "/__lean/tls")
        check(r.status == 200, "answered (the upstream closes after each)", r)
        seen.append(r.json() or {})
    check(len({x.get("conn") for x in seen}) == 3, "three upstream connections", seen)
    check(seen[0].get("session_reused") is False, "the first handshake is a full one", seen)
    check(all(x.get("session_reused") for x in seen[1:]),
          "later connections resume the pool's TLS session", seen)
    env.stop_proxy()


@h.test
def lean_tls_wrong_name_502(env):
    env.start_fake()
    ct = env.connect_to() + ["wrong-name.example.org:443:127.0.0.1:%d" % env.fake.port]
    env.start_proxy(sites=[{"host": "wrong-name.example.org", "credential": "svc"},
                           {"domain": "acme", "credential": "svc"}],
                    upstream={"connect_to": ct})
    r = env.curl_proxy("http://wrong-name.example.org/rest/api/3/myself")
    h.proxy_error(r, 502, "upstream_unreachable")
    msg = ((r.json() or {}).get("message") or "").lower()
    check("tls" in msg and "wrong-name.example.org" in msg, "the message names TLS and the host",
          msg)
    check(not env.fake.records(), "nothing (no credential) went over the unverified connection")
    env.stop_proxy()


@h.test
def lean_tls_wrong_ca_502(env):
    env.start_fake()
    env.start_proxy(upstream={"ca_file": env.tls["other_ca"]})
    r = env.curl_proxy(URL + "/rest/api/3/myself")
    h.proxy_error(r, 502, "upstream_unreachable")
    msg = ((r.json() or {}).get("message") or "").lower()
    check("tls" in msg and "certificate" in msg, "the message names TLS and the certificate", msg)
    check(not env.fake.records(), "nothing reached the fake")
    env.stop_proxy()


@h.test
def lean_http2_true_uses_libcurl(env):
    env.start_fake()
    env.start_proxy(upstream={"http2": True})
    r = _raw(env, "obsfold")
    check(r.status == 200 and r.body == b"ok", "libcurl (http2: true) serves the folded header", r)
    check("upstream engine libcurl" in env.proxy.stderr()
          and "upstream engine lean-h1" not in env.proxy.stderr(), "the debug log names libcurl")
    env.stop_proxy()


@h.test
def lean_egress_proxy_uses_libcurl(env):
    env.start_fake()
    # a tiny CONNECT proxy in front of the fake: libcurl's egress chaining must still be used
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    pport = lsock.getsockname()[1]
    seen = []

    def serve():
        while True:
            try:
                c, _ = lsock.accept()
            except OSError:
                return
            head = b""
            while b"\r\n\r\n" not in head:
                d = c.recv(4096)
                if not d:
                    break
                head += d
            seen.append(head.split(b"\r\n", 1)[0])
            u = socket.create_connection(("127.0.0.1", env.fake.port))
            c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            threading.Thread(target=_pipe, args=(c, u), daemon=True).start()
            threading.Thread(target=_pipe, args=(u, c), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    env.start_proxy(upstream={"proxy": "http://127.0.0.1:%d" % pport, "connect_to": []})
    r = _raw(env, "obsfold")
    check(r.status == 200 and r.body == b"ok", "libcurl (upstream.proxy) serves the request", r)
    check(seen and seen[0].startswith(b"CONNECT acme.atlassian.net:443"),
          "the request went through the egress proxy", seen)
    check("upstream engine libcurl" in env.proxy.stderr(), "the debug log names libcurl")
    lsock.close()
    env.stop_proxy()


def _pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


# h1pool.h: H1POOL_MAX_ACTIVE, connections per upstream and worker in use or being set up
LEAN_MAX_ACTIVE = 64


def _slow_all(env, n, head_delay):
    """n requests at once, each held head_delay s by the fake: [(response, seconds)]."""
    req = ("GET %s/__slow?head_delay=%s&delay=0&chunks=1 HTTP/1.1\r\nHost: acme.atlassian.net\r\n"
           "Connection: close\r\n\r\n" % (URL, head_delay)).encode()
    out = [None] * n
    go = threading.Event()

    def one(i):
        go.wait()
        t0 = time.monotonic()
        try:
            r = h.raw_one(env.port, req, timeout=60)
        except OSError as e:
            r = e
        out[i] = (r, time.monotonic() - t0)
    ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    go.set()
    for t in ts:
        t.join(90)
    return out


@h.test(timeout=90)
def lean_pool_cap_queues(env):
    env.start_fake()
    env.start_proxy(extra={"workers": 1})
    extra = 6
    got = _slow_all(env, LEAN_MAX_ACTIVE + extra, 2)
    ok = [x for x in got if x and getattr(x[0], "status", None) == 200]
    check(len(ok) == len(got), "every request past the cap was served, not refused",
          [x for x in got if x not in ok][:3])
    conns = {x["conn"] for x in env.fake.records(path="/__slow")}
    check(len(conns) <= LEAN_MAX_ACTIVE,
          "never more than %d upstream connections from one worker" % LEAN_MAX_ACTIVE, len(conns))
    waited = [dt for _, dt in ok if dt >= 3.5]
    check(len(waited) >= extra, "the requests past the cap waited for a connection to free up",
          sorted(dt for _, dt in ok)[-extra - 2:])
    env.stop_proxy()


@h.test(timeout=90)
def lean_pool_wait_bounded_by_connect_timeout(env):
    env.start_fake()
    env.start_proxy(extra={"workers": 1}, upstream={"connect_timeout": "3s"})
    got = _slow_all(env, LEAN_MAX_ACTIVE + 1, 7)
    served = [x for x in got if x and getattr(x[0], "status", None) == 200]
    timed_out = [x for x in got if x and getattr(x[0], "status", None) == 504]
    check(len(served) == LEAN_MAX_ACTIVE and len(timed_out) == 1,
          "the one request with no connection left gets 504, the others their answer",
          [getattr(x[0], "status", x[0]) for x in got if x not in served])
    if timed_out:
        r, dt = timed_out[0]
        h.proxy_error(r, 504, "upstream_timeout")
        msg = ((r.json() or {}).get("message") or "").lower()
        check("no connection" in msg and "became free" in msg, "the message says why", msg)
        check(2.5 <= dt < 6.5, "it waited about connect_timeout, not for a connection", dt)
    check(len(env.fake.records(path="/__slow")) == LEAN_MAX_ACTIVE,
          "the one that timed out never reached the upstream")
    env.stop_proxy()


if __name__ == "__main__":
    h.main()
