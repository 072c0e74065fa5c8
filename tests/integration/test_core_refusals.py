#!/usr/bin/python3
"""Requests the proxy must refuse, over raw sockets: malformed framing (400),
TRACE (405), oversized heads (431), foreign Origin and Upgrade (403), and
authorities that must never receive the credential (userinfo, wrong port,
look-alike hosts). Every refusal has the JSON body and X-Credproxy-Error, and
the fake receives nothing for it.

Run: CREDPROXY_BIN=build/credproxy /usr/bin/python3 tests/integration/test_core_refusals.py [TEST...]
"""
import harness as h
from harness import check

T = b"http://acme.atlassian.net/__echo"
HOST = b"Host: acme.atlassian.net\r\n"

BAD_400 = [
    ("CL+TE", b"POST " + T + b" HTTP/1.1\r\n" + HOST +
     b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("duplicate differing Content-Length", b"POST " + T + b" HTTP/1.1\r\n" + HOST +
     b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
    ("Content-Length list", b"POST " + T + b" HTTP/1.1\r\n" + HOST +
     b"Content-Length: 5, 6\r\n\r\nhello!"),
    ("bad chunk size", b"POST " + T + b" HTTP/1.1\r\n" + HOST +
     b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
    ("obs-fold", b"GET " + T + b" HTTP/1.1\r\n" + HOST + b"X-Folded: a\r\n  b\r\n\r\n"),
    ("invalid header name (space)", b"GET " + T + b" HTTP/1.1\r\n" + HOST + b"Bad Name: x\r\n\r\n"),
    ("invalid header name (paren)", b"GET " + T + b" HTTP/1.1\r\n" + HOST + b"X(y): x\r\n\r\n"),
    ("space before colon", b"GET " + T + b" HTTP/1.1\r\n" + HOST + b"X-Sp : x\r\n\r\n"),
    ("duplicate Host", b"GET " + T + b" HTTP/1.1\r\n" + HOST + HOST + b"\r\n"),
    ("missing Host", b"GET " + T + b" HTTP/1.1\r\nX-A: 1\r\n\r\n"),
    ("control byte in request line", b"GET " + T + b"\x01x HTTP/1.1\r\n" + HOST + b"\r\n"),
    ("control byte in header value", b"GET " + T + b" HTTP/1.1\r\n" + HOST + b"X-C: a\x01b\r\n\r\n"),
    ("NUL in header value", b"GET " + T + b" HTTP/1.1\r\n" + HOST + b"X-C: a\x00b\r\n\r\n"),
]


def _refused(env, what, raw, status, code=None, since=None):
    s = env.fake.last_seq() if since is None else since
    try:
        r = h.raw_one(env.port, raw, timeout=8)
    except OSError as e:
        check(False, "%s: the proxy answers" % what, e)
        return None
    if code is None:
        check(r.status == status, "%s -> %d" % (what, status), r)
        check(r.header("X-Credproxy-Error") is not None, "%s: X-Credproxy-Error" % what, r)
        body = r.json()
        check(isinstance(body, dict) and "error" in body and "message" in body,
                    "%s: JSON error body" % what, r)
    else:
        h.proxy_error(r, status, code)
    check(env.fake.last_seq() == s, "%s: the fake received nothing" % what,
          [(x["method"], x["host"], x["path"]) for x in env.fake.records(since=s)])
    return r


@h.test
def refuse_malformed_400(env):
    env.start_fake()
    env.start_proxy()
    for what, raw in BAD_400:
        r = _refused(env, what, raw, 400, "bad_request")
        if r is not None and r.status != 400:
            h.log("    (%s)" % what)
    # Sanity: the same proxy still serves a good request after all that.
    r = h.raw_one(env.port, b"GET " + T + b" HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\n")
    check(r.status == 200, "a well-formed request still works", r)
    env.stop_proxy()


@h.test
def refuse_trace_405(env):
    env.start_fake()
    env.start_proxy()
    _refused(env, "TRACE", b"TRACE " + T + b" HTTP/1.1\r\n" + HOST + b"\r\n", 405)
    env.stop_proxy()


@h.test
def refuse_large_heads_431(env):
    env.start_fake()
    env.start_proxy()
    big = b"X-Big: " + b"a" * (64 * 1024) + b"\r\n"
    _refused(env, "64 KiB+ head", b"GET " + T + b" HTTP/1.1\r\n" + HOST + big + b"\r\n", 431,
             "headers_too_large")
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(101))
    _refused(env, "101 headers", b"GET " + T + b" HTTP/1.1\r\n" + HOST + many + b"\r\n", 431,
             "headers_too_large")
    # 99 extra headers + Host = 100 lines: within the limit.
    ok = b"".join(b"X-H%d: v\r\n" % i for i in range(99))
    r = h.raw_one(env.port, b"GET " + T + b" HTTP/1.1\r\n" + HOST + ok + b"Connection: close\r\n\r\n")
    check(r.status in (200, 431), "100 header lines answered", r)
    env.stop_proxy()


@h.test
def refuse_origin_and_upgrade(env):
    env.start_fake()
    env.start_proxy()
    for origin in (b"http://evil.example", b"null", b"http://127.0.0.1:%d" % env.port,
                   b"https://evil-acme.atlassian.net"):
        _refused(env, "Origin %s" % origin.decode(), b"GET " + T + b" HTTP/1.1\r\n" + HOST +
                 b"Origin: " + origin + b"\r\n\r\n", 403, "origin_not_allowed")
    # Fetch metadata without Origin: a cross-site or same-site page is refused too.
    for site in (b"cross-site", b"same-site", b"Cross-Site"):
        _refused(env, "Sec-Fetch-Site %s" % site.decode(), b"GET " + T + b" HTTP/1.1\r\n" + HOST +
                 b"Sec-Fetch-Site: " + site + b"\r\n\r\n", 403, "origin_not_allowed")
    _refused(env, "Upgrade: websocket", b"GET " + T + b" HTTP/1.1\r\n" + HOST +
             b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", 403)
    # The site's own origin is allowed.
    s = env.fake.last_seq()
    r = h.raw_one(env.port, b"GET " + T + b" HTTP/1.1\r\n" + HOST +
                  b"Origin: https://acme.atlassian.net\r\nConnection: close\r\n\r\n")
    check(r.status == 200, "Origin https://acme.atlassian.net is allowed", r)
    check(len(env.fake.records(since=s)) == 1, "...and forwarded")
    for site in (b"same-origin", b"none"):
        s = env.fake.last_seq()
        r = h.raw_one(env.port, b"GET " + T + b" HTTP/1.1\r\n" + HOST +
                      b"Sec-Fetch-Site: " + site + b"\r\nConnection: close\r\n\r\n")
        check(r.status == 200, "Sec-Fetch-Site %s is allowed" % site.decode(), r)
        check(len(env.fake.records(since=s)) == 1, "...and forwarded")
    env.stop_proxy()


AUTHORITIES = [
    ("userinfo in URI", b"http://user:pw@acme.atlassian.net/__echo", b"acme.atlassian.net"),
    ("port other than the site's", b"http://acme.atlassian.net:8443/__echo", b"acme.atlassian.net:8443"),
    ("look-alike prefix", b"http://evil-acme.atlassian.net/__echo", b"evil-acme.atlassian.net"),
    ("look-alike suffix", b"http://acme.atlassian.net.evil.com/__echo", b"acme.atlassian.net.evil.com"),
]


@h.test
def refuse_authorities_deny(env):
    env.start_fake()
    env.start_proxy(unknown_hosts="deny")
    for what, target, host in AUTHORITIES:
        s = env.fake.last_seq()
        r = h.raw_one(env.port, b"GET " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
        if what == "userinfo in URI":
            h.proxy_error(r, 400, "bad_request")
        else:
            h.proxy_error(r, 403, "host_not_allowed")
        check(env.fake.last_seq() == s, "%s: the fake received nothing" % what)
        # The same through CONNECT.
        if what != "userinfo in URI":
            authority = host if b":" in host else host + b":443"
            r = h.raw_one(env.port, b"CONNECT " + authority + b" HTTP/1.1\r\nHost: " + authority +
                          b"\r\n\r\n")
            h.proxy_error(r, 403, "host_not_allowed")
    check(not env.fake.records(), "nothing reached the fake at all")
    env.stop_proxy()


@h.test
def refuse_authorities_tunnel(env):
    env.start_fake()
    extra_ct = env.connect_to() + ["acme.atlassian.net:8443:127.0.0.1:%d" % env.fake.port]
    env.start_proxy(unknown_hosts="tunnel", upstream={"connect_to": extra_ct})
    for what, target, host in AUTHORITIES:
        s = env.fake.last_seq()
        r = h.raw_one(env.port, b"GET " + target + b" HTTP/1.1\r\nHost: " + host +
                      b"\r\n\r\n")
        recs = env.fake.records(since=s)
        check(r.status is not None, "%s: answered" % what, r)
        for rec in recs:
            check(rec["authorization"] is None, "%s: NO Authorization upstream" % what)
        h.log("    %s -> %s, upstream requests: %d" % (what, r.status, len(recs)))
    # Blind CONNECT tunnels to look-alikes: TLS end to end, no credential inside.
    for name in ("evil-acme.atlassian.net", "acme.atlassian.net.evil.com"):
        s = env.fake.last_seq()
        r = env.curl_proxy("https://%s/__echo" % name, "--cacert", env.tls["ca"])
        check(r.status == 200, "CONNECT %s tunnelled" % name, r)
        recs = env.fake.records(since=s)
        check(len(recs) == 1 and recs[0]["authorization"] is None and recs[0]["sni"] == name,
              "%s: the fake got the request over the client's own TLS, no Authorization" % name,
              [(x["sni"], x["authorization"] is None) for x in recs])
    check(env.fake.authorized_hosts() in ([], ["acme.atlassian.net"]),
          "only acme.atlassian.net ever received an Authorization", env.fake.authorized_hosts())
    env.stop_proxy()


@h.test
def refuse_status_codes(env):
    """Malformed authorities are 400; numeric hosts 403; `//` paths 400; nothing is forwarded."""
    env.start_fake()
    env.start_proxy(unknown_hosts="deny")
    s = env.fake.last_seq()
    for what, target in (("userinfo", b"http://u@acme.atlassian.net/x"),
                         ("percent-encoded host", b"http://acme%2eatlassian.net/x"),
                         ("empty authority", b"http:///x"),
                         ("empty authority with port", b"http://:443/x")):
        r = h.raw_one(env.port, b"GET " + target + b" HTTP/1.1\r\nHost: acme.atlassian.net\r\n\r\n")
        h.proxy_error(r, 400, "bad_request")
    r = h.raw_one(env.port, b"GET //acme.atlassian.net/x HTTP/1.1\r\nHost: acme.localhost\r\n\r\n")
    h.proxy_error(r, 400, "bad_request")
    for host in (b"2130706433", b"0x7f.1", b"127.1"):
        r = h.raw_one(env.port, b"CONNECT " + host + b":443 HTTP/1.1\r\nHost: " + host + b":443\r\n\r\n")
        h.proxy_error(r, 403, "host_not_allowed")
    r = h.raw_one(env.port, b"CONNECT 10.0.0.1:443 HTTP/1.1\r\nHost: 10.0.0.1:443\r\n\r\n")
    h.proxy_error(r, 403, "host_not_allowed")
    check(not env.fake.records(since=s), "nothing reached the fake")
    env.stop_proxy()


@h.test
def refuse_loops(env):
    """With unknown_hosts: tunnel, the proxy's own addresses are refused (508), never re-entered."""
    env.start_fake()
    env.start_proxy(unknown_hosts="tunnel")
    p = env.port
    for target in (b"http://127.0.0.1:%d/x" % p, b"http://localhost:%d/x" % p,
                   b"http://foo.localhost:%d/x" % p, b"http://[::1]:%d/x" % p):
        r = h.raw_one(p, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        h.proxy_error(r, 508, "loop_detected")
    for auth in (b"127.0.0.1:%d" % p, b"localhost:%d" % p, b"a.localhost:%d" % p):
        r = h.raw_one(p, b"CONNECT " + auth + b" HTTP/1.1\r\nHost: " + auth + b"\r\n\r\n")
        h.proxy_error(r, 508, "loop_detected")
    # A request that already carries this proxy's Via marker came back in: refused.
    s = env.fake.last_seq()
    r = h.raw_one(p, b"GET " + T + b" HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\n")
    rec = env.fake.records(since=s)
    via = next((v for k, v in rec[0]["headers"] if k.lower() == "via"), "") if rec else ""
    check(r.status == 200 and "credproxy-" in via, "forwarded requests carry a Via marker", via)
    if via:
        r = h.raw_one(p, b"GET " + T + b" HTTP/1.1\r\n" + HOST + b"Via: " + via.encode() + b"\r\n\r\n")
        h.proxy_error(r, 508, "loop_detected")
        r = h.raw_one(p, b"GET " + T + b" HTTP/1.1\r\n" + HOST +
                      b"Via: 1.1 credproxy-0000000000000000\r\nConnection: close\r\n\r\n")
        check(r.status == 200, "another credproxy's marker is not a loop", r)
    env.stop_proxy()


if __name__ == "__main__":
    h.main()
