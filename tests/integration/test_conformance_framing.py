#!/usr/bin/python3
"""Framing conformance, generated: the test builds a valid request for each
mode (absolute-form forward, intercepted CONNECT, gateway) and derives
mutations from it (Content-Length / Transfer-Encoding, chunk sizes, chunk
extensions, chunk data and CRLFs, request-line white space, line endings,
obs-fold, duplicate and misspelt headers, Connection naming framing or
credential headers, refused methods, an oversized head). Each mutation is
sent on its own connection and must get the proxy's own error (status,
X-Credproxy-Error, JSON body), the connection must close where the contract
says it does (400, 431), and the fake upstream must not have received a
request for it. Unmutated requests are sent first and must pass, so every
refusal is the mutation's doing. Also: the body idle timeout (body_timeout).

Run: CREDPROXY_BIN=build/credproxy /usr/bin/python3 tests/integration/test_conformance_framing.py
"""
import os
import socket
import ssl
import subprocess
import time

import harness as h
import intercept_helpers as ih
from harness import check

SITE = "acme.atlassian.net"
BODY = b"hello"
CHUNKED = b"5\r\nhello\r\n0\r\n\r\n"
LONG_EXT = 5000  # over http1.h's HTTP1_MAX_CHUNK_LINE (4096)
CONNECTION_FORBIDDEN = ["Host", "Content-Length", "Transfer-Encoding", "Authorization",
                        "Proxy-Authorization", "Cookie"]


class Base:
    """One mode's valid request: a request line and header lines (without CRLFs)."""

    def __init__(self, mode, method, target, host):
        self.mode = mode
        self.method = method
        self.target = target
        self.host = host

    def line(self, method=None):
        return b"%s %s HTTP/1.1" % ((method or self.method).encode(), self.target.encode())

    def headers(self, *extra):
        return [b"Host: " + self.host.encode(), b"User-Agent: conformance"] + list(extra)


def join(line, headers, body=b"", eol=b"\r\n"):
    return line + eol + b"".join(x + eol for x in headers) + eol + body


def te_head(b, *extra):
    return b.headers(b"Transfer-Encoding: chunked", *extra)


def mutations(b):
    """(name, raw bytes, expected status) for base b. Every one must be refused."""
    post = b.line("POST")
    out = []

    # -- Transfer-Encoding: exactly one "chunked" --
    for v in [b"identity, chunked", b"chunked, identity", b"chunked, chunked", b"gzip, chunked",
              b"chunked;q=1", b"chunked,", b",chunked", b"xchunked", b"chunkedx", b"chunk",
              b"identity", b"", b'"chunked"', b"chunked\x0b", b"\x0bchunked", b"chunked\x00",
              b"ch unked", b"gzip"]:
        out.append(("TE %r" % v, join(post, b.headers(b"Transfer-Encoding: " + v), CHUNKED), 400))
    for a, c in [(b"chunked", b"chunked"), (b"chunked", b"identity"), (b"identity", b"chunked"),
                 (b"gzip", b"chunked")]:
        out.append(("two TE %s/%s" % (a.decode(), c.decode()),
                    join(post, b.headers(b"Transfer-Encoding: " + a, b"Transfer-Encoding: " + c),
                         CHUNKED), 400))
    for name in [b"Transfer-Encoding :", b"Transfer-Encoding\t:", b"Transfer-Encoding\x00:",
                 b"Transfer\x0bEncoding:"]:
        out.append(("TE name %r" % name, join(post, b.headers(name + b" chunked"), CHUNKED), 400))
    out.append(("TE on HTTP/1.0",
                join(post.replace(b"HTTP/1.1", b"HTTP/1.0"), te_head(b), CHUNKED), 400))

    # -- Content-Length with Transfer-Encoding, and malformed Content-Length --
    for cl in [b"0", b"5", b"16"]:
        out.append(("CL %s + TE" % cl.decode(),
                    join(post, b.headers(b"Content-Length: " + cl, b"Transfer-Encoding: chunked"),
                         CHUNKED), 400))
        out.append(("TE + CL %s" % cl.decode(),
                    join(post, b.headers(b"Transfer-Encoding: chunked", b"Content-Length: " + cl),
                         CHUNKED), 400))
    for v in [b"5, 5", b"5,6", b"+5", b"-5", b"5 5", b"0x5", b"5.0", b"5a", b"",
              b"99999999999999999999"]:
        out.append(("CL %r" % v, join(post, b.headers(b"Content-Length: " + v), BODY), 400))
    out.append(("two CL differing",
                join(post, b.headers(b"Content-Length: 5", b"Content-Length: 6"), BODY + b"!"),
                400))
    out.append(("CL name space", join(post, b.headers(b"Content-Length : 5"), BODY), 400))

    # -- chunk sizes --
    for size in [b"00000000000000005", b"0x5", b"-5", b"+5", b"5 ", b" 5", b"5\t", b"g", b"",
                 b"fffffffffffffffff", b"5;", b"5;a=\x01", b"5 ;a=b", b"5\x00"]:
        out.append(("chunk size %r" % size,
                    join(post, te_head(b), size + b"\r\nhello\r\n0\r\n\r\n"), 400))
    out.append(("last chunk 17 zeros",
                join(post, te_head(b), b"5\r\nhello\r\n" + b"0" * 17 + b"\r\n\r\n"), 400))
    out.append(("chunk extension %d bytes" % LONG_EXT,
                join(post, te_head(b), b"5;x=" + b"v" * LONG_EXT + b"\r\nhello\r\n0\r\n\r\n"),
                400))

    # -- chunk data and the CRLFs around it --
    for name, body in [("data then XX", b"5\r\nhelloXX0\r\n\r\n"),
                       ("data then CR CR", b"5\r\nhello\r\r0\r\n\r\n"),
                       ("data longer than size", b"3\r\nhello\r\n0\r\n\r\n"),
                       ("data then bare LF", b"5\r\nhello\n0\r\n\r\n"),
                       ("size bare LF", b"5\nhello\r\n0\r\n\r\n"),
                       ("last chunk bare LF", b"5\r\nhello\r\n0\n\r\n"),
                       ("end bare LF", b"5\r\nhello\r\n0\r\n\n"),
                       ("trailer bare LF", b"5\r\nhello\r\n0\r\nX-T: 1\n\r\n"),
                       ("trailer obs-fold", b"5\r\nhello\r\n0\r\nX-T: 1\r\n 2\r\n\r\n"),
                       ("garbage chunk line", b"5\r\nhello\r\nX\r\n\r\n")]:
        out.append(("chunked " + name, join(post, te_head(b), body), 400))

    # -- request-line white space --
    m, t = b.method.encode(), b.target.encode()
    for name, line in [("two spaces after method", m + b"  " + t + b" HTTP/1.1"),
                       ("two spaces before version", m + b" " + t + b"  HTTP/1.1"),
                       ("tab after method", m + b"\t" + t + b" HTTP/1.1"),
                       ("tab before version", m + b" " + t + b"\tHTTP/1.1"),
                       ("leading space", b" " + m + b" " + t + b" HTTP/1.1"),
                       ("trailing space", m + b" " + t + b" HTTP/1.1 "),
                       ("no version", m + b" " + t),
                       ("lowercase version", m + b" " + t + b" http/1.1"),
                       ("HTTP/1.2", m + b" " + t + b" HTTP/1.2"),
                       ("vertical tab", m + b"\x0b" + t + b" HTTP/1.1")]:
        out.append(("request line " + name, join(line, b.headers()), 400))

    # -- line endings: each line of the head ended by LF alone or CR alone --
    lines = [b.line()] + b.headers(b"Accept: */*")
    for i in range(len(lines) + 1):
        for eol in (b"\n", b"\r"):
            if i == len(lines) and eol == b"\r":
                continue  # the head would just be incomplete: the proxy rightly waits
            raw = b""
            for j, ln in enumerate(lines + [b""]):
                raw += ln + (eol if j == i else b"\r\n")
            out.append(("line %d ends %r" % (i, eol), raw, 400))
    out.append(("all bare LF", join(b.line(), b.headers(), eol=b"\n"), 400))
    out.append(("leading bare LF", b"\n" + join(b.line(), b.headers()), 400))

    # -- obs-fold on each header line, with SP and with HTAB --
    hs = b.headers(b"Accept: */*")
    for i in range(len(hs)):
        for ws in (b" ", b"\t"):
            folded = hs[:i + 1] + [ws + b"folded"] + hs[i + 1:]
            out.append(("obs-fold after header %d %r" % (i, ws), join(b.line(), folded), 400))

    # -- duplicate and misspelt headers --
    out.append(("duplicate Host same",
                join(b.line(), b.headers(b"Host: " + b.host.encode())), 400))
    out.append(("duplicate Host other", join(b.line(), b.headers(b"Host: other.example")), 400))
    out.append(("Host name space", join(b.line(), [b"Host : " + b.host.encode()]), 400))
    out.append(("missing Host", join(b.line(), [b"Accept: */*"]), 400))
    out.append(("empty Host", join(b.line(), [b"Host:"]), 400))
    for name in [b"X Sp", b"X(y)", b"X\x01", b"", b"X\x7f"]:
        out.append(("header name %r" % name, join(b.line(), b.headers(name + b": 1")), 400))
    for value in [b"a\x01b", b"a\x00b", b"a\rb", b"a\x7fb"]:
        out.append(("header value %r" % value, join(b.line(), b.headers(b"X-V: " + value)), 400))

    # -- Connection naming end-to-end framing or credential headers --
    for name in CONNECTION_FORBIDDEN:
        for shape in ("%s", "close, %s", "keep-alive ,%s", "%s,x-hop"):
            v = (shape % name).encode()
            out.append(("Connection: %s" % v.decode(),
                        join(b.line(), b.headers(b"Connection: " + v)), 400))
        out.append(("Connection (2nd) lists %s" % name,
                    join(b.line(), b.headers(b"Connection: keep-alive",
                                             b"Connection: " + name.lower().encode())), 400))

    # -- methods --
    for meth in ("TRACE", "TRACK"):
        out.append((meth, join(b.line(meth), b.headers()), 405))

    # -- CONNECT's own request line (the proxy listener only: inside a tunnel it is refused anyway) --
    if b.mode == "forward":
        a = SITE.encode() + b":443"
        for name, line in [("two spaces", b"CONNECT " + a + b"  HTTP/1.1"),
                           ("two spaces before authority", b"CONNECT  " + a + b" HTTP/1.1"),
                           ("bare LF", b"CONNECT " + a + b" HTTP/1.1\n")]:
            out.append(("CONNECT " + name, line + b"\r\nHost: " + a + b"\r\n\r\n", 400))
        out.append(("CONNECT with a body",
                    b"CONNECT " + a + b" HTTP/1.1\r\nHost: " + a + b"\r\nContent-Length: 3\r\n\r\nabc",
                    400))

    # -- an oversized head --
    out.append(("head over 64 KiB",
                join(b.line(), b.headers(b"X-Big: " + b"v" * (66 * 1024))), 431))
    return out


def valid_requests(b):
    """Requests that must pass: they prove the base is sound."""
    post = b.line("POST")
    return [
        ("plain", join(b.line(), b.headers())),
        ("content-length body", join(post, b.headers(b"Content-Length: 5"), BODY)),
        ("chunked body", join(post, te_head(b), CHUNKED)),
        ("chunked extension and trailer",
         join(post, te_head(b), b"5;a=\"b\";c=d\r\nhello\r\n0\r\nX-T: 1\r\n\r\n")),
        ("chunk size 16 digits", join(post, te_head(b), b"0000000000000005\r\nhello\r\n0\r\n\r\n")),
        ("TE Chunked any case", join(post, b.headers(b"transfer-encoding: Chunked"), CHUNKED)),
        ("Connection lists a hop header",
         join(b.line(), b.headers(b"Connection: X-Hop", b"X-Hop: 1"))),
    ]


def _connect(env, b, certs):
    if b.mode != "intercept":
        return socket.create_connection(("127.0.0.1", env.port), timeout=8)
    s, r = ih.tunnel(env, "%s:443" % SITE, timeout=8)
    if r.status != 200:
        s.close()
        raise AssertionError("CONNECT refused: %r" % r)
    ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
    return ctx.wrap_socket(s, server_hostname=SITE)


def _send(env, b, certs, raw):
    """Send raw on a fresh connection; (Response, closed-after?)."""
    s = _connect(env, b, certs)
    try:
        s.sendall(raw)
        r, _ = h.read_response(s)
        closed = None
        if r.status in (400, 431):  # the contract closes after these; others may keep alive
            closed = h.connection_closed(s, timeout=3)
        return r, closed
    finally:
        s.close()


def _run_mode(env, b, certs):
    for name, raw in valid_requests(b):
        s0 = env.fake.last_seq()
        r, _ = _send(env, b, certs, raw)
        check(r.status == 200, "%s valid %s -> 200" % (b.mode, name), r)
        check(len(env.fake.records(since=s0)) == 1, "%s valid %s reached the fake" % (b.mode, name))
    cases = mutations(b)
    refused = 0
    for name, raw, status in cases:
        s0 = env.fake.last_seq()
        r, closed = _send(env, b, certs, raw)
        what = "%s %s" % (b.mode, name)
        code = {400: "bad_request", 405: "method_not_allowed", 431: "headers_too_large"}[status]
        ok = h.proxy_error(r, status, code)
        if status in (400, 431):
            ok &= check(closed, "%s: the connection is closed after %d" % (what, status))
        seen = env.fake.records(since=s0)
        ok &= check(not seen, "%s: nothing reached the fake" % what,
                    [(x["method"], x["host"], x["path"]) for x in seen])
        if not ok:
            h.log("    (case: %s; raw %r)" % (what, raw[:200]))
        refused += ok
    h.log("    %s: %d of %d mutations refused as required" % (b.mode, refused, len(cases)))
    env.assert_no_auth_to()


@h.test(timeout=120)
def conformance_forward(env):
    env.start_fake()
    env.start_proxy()
    _run_mode(env, Base("forward", "GET", "http://%s/__echo" % SITE, SITE), None)


@h.test(timeout=120)
def conformance_gateway(env):
    env.start_fake()
    env.start_proxy()
    _run_mode(env, Base("gateway", "GET", "/__echo", "acme.localhost:%d" % env.port), None)


@h.test(timeout=150)
def conformance_intercept(env):
    certs = ih.setup(env)
    _run_mode(env, Base("intercept", "GET", "/__echo", SITE), certs)


def _stall(env, raw, body_part, timeout_s, sock=None):
    """Send raw head + part of a body, then nothing: the proxy must answer 408 and close."""
    s = sock or socket.create_connection(("127.0.0.1", env.port), timeout=15)
    try:
        s.settimeout(15)
        s.sendall(raw + body_part)
        t0 = time.monotonic()
        r, _ = h.read_response(s)
        dt = time.monotonic() - t0
        h.proxy_error(r, 408, "request_timeout")
        check("stalled" in (r.json() or {}).get("message", ""), "the message names the stall", r)
        check(timeout_s * 0.8 <= dt <= timeout_s + 3, "answered after about body_timeout", dt)
        check(h.connection_closed(s, timeout=3), "the connection is closed after the stall")
    finally:
        s.close()


@h.test(timeout=60)
def body_timeout_stalled_bodies(env):
    env.start_fake()
    env.start_proxy(extra={"body_timeout": "1500ms"})
    s0 = env.fake.last_seq()
    t = b"http://%s/__echo" % SITE.encode()
    head = b"POST " + t + b" HTTP/1.1\r\nHost: " + SITE.encode() + b"\r\n"
    _stall(env, head + b"Content-Length: 100\r\n\r\n", b"0123456789", 1.5)
    _stall(env, head + b"Content-Length: 100\r\n\r\n", b"", 1.5)
    _stall(env, head + b"Transfer-Encoding: chunked\r\n\r\n", b"5\r\nhello\r\n", 1.5)
    _stall(env, head + b"Transfer-Encoding: chunked\r\n\r\n", b"5;ext", 1.5)
    check(env.fake.last_seq() == s0, "no stalled request reached the fake as a complete request",
          env.fake.records(since=s0))
    # A body that keeps arriving, slower than body_timeout in total but never idle that long.
    s = socket.create_connection(("127.0.0.1", env.port), timeout=15)
    try:
        s.sendall(head + b"Content-Length: 4\r\nConnection: close\r\n\r\n")
        for ch in b"abcd":
            time.sleep(0.6)
            s.sendall(bytes([ch]))
        r, _ = h.read_response(s)
        check(r.status == 200, "a slow but steady body is not cut", r)
    finally:
        s.close()
    env.stop_proxy()


@h.test(timeout=60)
def body_timeout_intercepted(env):
    certs = os.path.join(env.dir, "certs")
    env.start_fake()
    extra = {"interception": {"ca_cert": os.path.join(certs, "ca.pem"),
                              "ca_key": os.path.join(certs, "ca.key")},
             "body_timeout": "1s"}
    env.config(sites=ih.SITES, extra=extra)
    p = subprocess.run([h.BIN, "ca", "init", "-c", env.config_path, "--dir", certs],
                       env=h.clean_env(), capture_output=True, timeout=30)
    check(p.returncode == 0, "ca init", p.stderr)
    env.start_proxy(args=["run", "-c", env.config_path])
    s0 = env.fake.last_seq()
    s = _connect(env, Base("intercept", "POST", "/__echo", SITE), certs)
    _stall(env, b"POST /__echo HTTP/1.1\r\nHost: %s\r\nContent-Length: 10\r\n\r\n" % SITE.encode(),
           b"abc", 1.0, sock=s)
    check(env.fake.last_seq() == s0, "nothing reached the fake", env.fake.records(since=s0))


@h.test
def body_timeout_config(env):
    env.start_fake()
    for bad in ("0s", "-1s", "10", "soon"):
        env.config(extra={"body_timeout": bad})
        p = subprocess.run([h.BIN, "lint", "-c", env.config_path], env=h.clean_env(),
                           capture_output=True, timeout=30)
        out = (p.stdout + p.stderr).decode("utf-8", "replace")
        check(p.returncode != 0, "body_timeout: %s is refused" % bad, out)
        check("body_timeout" in out, "the error names body_timeout (%s)" % bad, out)
    env.config(extra={"body_timeout": "30s"})
    p = subprocess.run([h.BIN, "lint", "-c", env.config_path], env=h.clean_env(),
                       capture_output=True, timeout=30)
    check(p.returncode == 0, "body_timeout: 30s is accepted", p.stderr)


if __name__ == "__main__":
    h.main()
