#!/usr/bin/python3
"""The proxy's logs on stderr: log.format json (every line one JSON object,
one audit object per request with time, client or peer address, method, host,
path without the query, status, bytes in and out, total and upstream time,
rate-limit wait, credential, error code); the text audit line; log.level
(warn hides info but not the audit line; error hides warnings; debug adds
debug lines); audit: false; the startup message exactly once, naming the
listen address and how to point an agent at it; hostile input cannot forge a
line or a field; and no secret (token, Authorization values, client key,
cookie) at debug level.

Run: CREDPROXY_BIN=build/credproxy /usr/bin/python3 tests/integration/test_logs.py [TEST...]
"""
import base64
import datetime
import json
import os
import re
import signal
import time

import harness as h
from harness import check

CLIENT_ID = "triage-bot"
CLIENT_KEY = "ck-" + os.urandom(12).hex()
QUERY_SECRET = "qs-" + os.urandom(8).hex()
CLIENT_AUTH_SECRET = "client-own-bearer-" + os.urandom(8).hex()
COOKIE_SECRET = "cookie-" + os.urandom(8).hex()
_harness_redact = h.redact


def _redact_all(text):
    text = _harness_redact(text)
    for s in (CLIENT_KEY, base64.b64encode(("%s:%s" % (CLIENT_ID, CLIENT_KEY)).encode()).decode()):
        text = text.replace(s, "<REDACTED-KEY>")
    return text


h.redact = _redact_all  # check() and log() look it up at call time

TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (debug|info |warn |error) \S")
AUDIT_FIELDS = ("client", "method", "host", "path", "status", "in", "out", "ms", "upstream_ms",
                "wait_ms", "credential", "error")
MYSELF = "http://acme.atlassian.net/rest/api/3/myself"


# ---------------------------------------------------------------------------
# helpers
def start(env, fmt="json", level="info", audit=True, clients=False, credentials=None, extra=None):
    cfg = {"log": {"format": fmt, "level": level, "audit": audit}}
    penv = {}
    if clients:
        cfg["clients"] = [{"id": CLIENT_ID, "key_env": "ITEST_CLIENT_KEY"}]
        penv["ITEST_CLIENT_KEY"] = CLIENT_KEY
    cfg.update(extra or {})
    env.start_fake()
    env.start_proxy(extra=cfg, credentials=credentials, env=penv)


def lines(env):
    return env.proxy.stderr().splitlines()


def parse_json_lines(env):
    """Every stderr line must be one JSON object; returns the objects."""
    out = []
    for ln in lines(env):
        try:
            obj = json.loads(ln)
        except ValueError:
            obj = None
        if check(isinstance(obj, dict), "the line is one JSON object", ln):
            out.append(obj)
    return out


def json_audits(env, n=0, timeout=5.0):
    """Audit objects, waiting until at least n exist (lines are written as requests end)."""
    end = time.monotonic() + timeout
    while True:
        objs = []
        for ln in lines(env):
            try:
                o = json.loads(ln)
            except ValueError:
                continue
            if isinstance(o, dict) and o.get("msg") == "audit":
                objs.append(o)
        if len(objs) >= n or time.monotonic() > end:
            return objs
        time.sleep(0.05)


def text_fields(line):
    """key=value pairs of a text audit line; quoted values unescaped."""
    out = {}
    for m in re.finditer(r' (\w+)=("(?:[^"\\]|\\.)*"|\S+)', line):
        v = m.group(2)
        if v.startswith('"'):
            v = re.sub(r"\\(.)", r"\1", v[1:-1])
        out[m.group(1)] = v
    return out


def text_audits(env, n=0, timeout=5.0):
    end = time.monotonic() + timeout
    while True:
        got = [ln for ln in lines(env) if re.match(r"^\S+ info  audit ", ln)]
        if len(got) >= n or time.monotonic() > end:
            return got
        time.sleep(0.05)


def proxy_auth():
    return "Basic " + base64.b64encode(("%s:%s" % (CLIENT_ID, CLIENT_KEY)).encode()).decode()


def raw(env, head, body=b""):
    return h.raw_one(env.port, head.encode("latin-1") + body, timeout=15)


def get(env, url, extra_headers="", host="acme.atlassian.net"):
    return raw(env, "GET %s HTTP/1.1\r\nHost: %s\r\n%sConnection: close\r\n\r\n"
               % (url, host, extra_headers))


def assert_text_lines_wellformed(env):
    for ln in lines(env):
        check(TEXT_LINE.match(ln), "every text line starts with TIME LEVEL", ln)


# ---------------------------------------------------------------------------
@h.test
def logs_json_audit_fields(env):
    start(env, fmt="json")
    t0 = datetime.datetime.now(datetime.timezone.utc)
    r1 = get(env, MYSELF + "?token=" + QUERY_SECRET + "&expand=groups")
    check(r1.status == 200, "GET myself with a query", r1)
    body = os.urandom(5000)
    r2 = raw(env, "POST http://acme.atlassian.net/__upload?x=1 HTTP/1.1\r\nHost: acme.atlassian.net"
             "\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\nConnection: "
             "close\r\n\r\n" % len(body), body)
    check(r2.status == 200, "POST upload", r2)
    r3 = get(env, "http://unmapped.example.com/x?y=z", host="unmapped.example.com")
    h.proxy_error(r3, 403, "host_not_allowed")
    r4 = get(env, "http://acme.atlassian.net/__slow?head_delay=1&delay=0&chunks=1")
    check(r4.status == 200, "a slow upstream (1 s to the head)", r4)
    r5 = get(env, "http://acme.atlassian.net/rest/api/3/nothing-here")
    check(r5.status == 404, "an upstream 404", r5)
    auds = json_audits(env, 5)
    objs = parse_json_lines(env)
    check(len(objs) == len(lines(env)) and objs, "every stderr line parses as JSON")
    for o in objs:
        check(isinstance(o.get("time"), str) and o.get("level") in ("debug", "info", "warn",
                                                                     "error")
              and "msg" in o, "time, level and msg in every object", o)
    check(len(auds) == 5, "exactly one audit object per request (5)", auds)
    if len(auds) != 5:
        return
    by_path = {a.get("path"): a for a in auds}
    for a in auds:
        for f in AUDIT_FIELDS:
            check(f in a, "audit has %r" % f, a)
        check(re.match(r"^127\.0\.0\.1:\d+$", str(a.get("client"))),
              "anonymous client is the peer address", a.get("client"))
        try:
            t = datetime.datetime.strptime(a["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                tzinfo=datetime.timezone.utc)
            check(abs((t - t0).total_seconds()) < 30, "audit time is now (UTC)", a["time"])
        except (KeyError, ValueError):
            check(False, "audit time is ISO 8601 UTC", a.get("time"))
    a = by_path.get("/rest/api/3/myself")
    check(a is not None, "path without the query", sorted(by_path))
    if a:
        check(a["method"] == "GET" and a["host"] == "acme.atlassian.net" and a["status"] == 200,
              "method, host, status", a)
        check(a["in"] == 0 and a["out"] == len(r1.body), "bytes in 0, out = body length (%d)"
              % len(r1.body), a)
        check(a["credential"] == "svc" and a["error"] is None, "credential svc, no error", a)
        check(isinstance(a["ms"], int) and isinstance(a["upstream_ms"], int)
              and 0 <= a["upstream_ms"] <= a["ms"], "total >= upstream time", a)
        check(a["wait_ms"] == 0, "no rate-limit wait", a)
    check(QUERY_SECRET not in env.proxy.stderr() and "expand=groups" not in env.proxy.stderr()
          and "x=1" not in env.proxy.stderr(), "the query string appears in no log line")
    a = by_path.get("/__upload")
    if check(a is not None, "upload audited", sorted(by_path)):
        check(a["method"] == "POST" and a["in"] == len(body) and a["out"] == len(r2.body),
              "bytes in = request body (%d), out = response body" % len(body), a)
    a = [x for x in auds if x.get("status") == 403]
    if check(len(a) == 1, "the 403 is audited", auds):
        a = a[0]
        check(a["error"] == "host_not_allowed" and a["credential"] is None
              and a["upstream_ms"] is None and a["host"] == "unmapped.example.com"
              and a["path"] == "/x", "refusal: error code, no credential, no upstream time", a)
    a = by_path.get("/__slow")
    if check(a is not None, "slow request audited", sorted(by_path)):
        check(a["upstream_ms"] >= 900 and a["ms"] >= a["upstream_ms"],
              "upstream time covers the 1 s head delay", a)
    a = by_path.get("/rest/api/3/nothing-here")
    if check(a is not None, "upstream 404 audited", sorted(by_path)):
        check(a["status"] == 404 and a["error"] is None and a["credential"] == "svc",
              "upstream status, no proxy error code", a)


@h.test
def logs_text_audit_line(env):
    start(env, fmt="text", clients=True, extra={"require_client_auth": True})
    r = get(env, MYSELF + "?token=" + QUERY_SECRET, "Proxy-Authorization: %s\r\n" % proxy_auth())
    check(r.status == 200, "request as a known client", r)
    r = get(env, MYSELF)
    h.proxy_error(r, 407, "client_auth_required")
    auds = text_audits(env, 2)
    check(len(auds) == 2, "one text audit line per request", auds)
    assert_text_lines_wellformed(env)
    ok = [text_fields(x) for x in auds if " status=200 " in x]
    if check(len(ok) == 1, "the 200 line", auds):
        f = ok[0]
        for k in AUDIT_FIELDS:
            check(k in f, "text audit has %s=" % k, auds)
        check(f.get("client") == CLIENT_ID, "client id when the client authenticated", f)
        check(f.get("method") == "GET" and f.get("host") == "acme.atlassian.net"
              and f.get("path") == "/rest/api/3/myself", "method, host, path without query", f)
        check(f.get("credential") == "svc" and f.get("error") == "-", "credential, no error", f)
        check(re.match(r"^\d+$", f.get("ms", "")) and re.match(r"^\d+$", f.get("upstream_ms", ""))
              and f.get("in") == "0", "numbers", f)
    bad = [text_fields(x) for x in auds if " status=407 " in x]
    if check(len(bad) == 1, "the 407 line", auds):
        f = bad[0]
        check(re.match(r"^127\.0\.0\.1:\d+$", f.get("client", "")), "peer address when anonymous",
              f)
        check(f.get("error") == "client_auth_required" and f.get("upstream_ms") == "-",
              "error code, no upstream time", f)
        check(f.get("credential") == "-", "no credential was injected into a refused (407) "
              "request, so none is logged (log.h: NULL when none was injected)", f)
    check(QUERY_SECRET not in env.proxy.stderr(), "the query string is not logged")


@h.test(timeout=40)
def logs_rate_limit_wait(env):
    path = os.path.join(env.dir, "token")
    with open(path, "w") as f:
        f.write(h.TOKEN + "\n")
    os.chmod(path, 0o600)
    creds = {"svc": {"type": "basic", "email": h.EMAIL, "token_file": path, "rate_limit": "1/s",
                     "burst": 1}}
    start(env, fmt="json", credentials=creds, extra={"rate_limit": {"when_exhausted": "queue",
                                                                     "max_wait": "10s"}})
    for _ in range(2):
        r = get(env, MYSELF)
        check(r.status == 200, "request under a 1/s budget", r)
    auds = json_audits(env, 2)
    waits = sorted(a.get("wait_ms") or 0 for a in auds)
    check(len(auds) == 2 and waits[0] < 300 and 500 <= waits[1] <= 3000,
          "the second request waited about a second for the budget (wait_ms)", auds)
    if len(auds) == 2:
        slow = max(auds, key=lambda a: a.get("wait_ms") or 0)
        check(slow["ms"] >= slow["wait_ms"], "total time includes the wait", slow)


@h.test
def logs_levels(env):
    # warn: info lines gone, the audit line stays, warnings (the 0644 token file) shown
    path = os.path.join(env.dir, "token-0644")
    with open(path, "w") as f:
        f.write(h.TOKEN + "\n")
    os.chmod(path, 0o644)
    creds = {"svc": {"type": "basic", "email": h.EMAIL, "token_file": path, "rate_limit": "off"}}
    start(env, fmt="text", level="warn", credentials=creds)
    get(env, MYSELF)
    get(env, "http://acme.atlassian.net/a\x01b")  # refused: a debug line at most
    auds = text_audits(env, 2)
    check(len(auds) == 2, "audit lines still appear at level warn", lines(env))
    infos = [ln for ln in lines(env) if " info  " in ln[:40] and " info  audit " not in ln]
    check(not infos, "no info lines at level warn", infos)
    check(not [ln for ln in lines(env) if " debug " in ln[:40]], "no debug lines at level warn")
    check(any(" warn  " in ln[:40] and "chmod 600" in ln for ln in lines(env)),
          "warnings are shown at level warn", lines(env))
    assert_text_lines_wellformed(env)
    env.stop_proxy()
    # error: warnings hidden too, audit still there (json this time)
    env.start_proxy(credentials=creds, extra={"log": {"format": "json", "level": "error",
                                                      "audit": True}})
    get(env, MYSELF)
    auds = json_audits(env, 1)
    check(len(auds) == 1, "audit at level error", lines(env))
    objs = parse_json_lines(env)
    check(all(o.get("msg") == "audit" or o.get("level") == "error" for o in objs),
          "nothing below error except audit", objs)
    env.stop_proxy()
    # debug: the refusal reason appears as a debug line; at info it does not
    for level, want in (("debug", True), ("info", False)):
        env.start_proxy(extra={"log": {"format": "json", "level": level, "audit": True}})
        get(env, "http://acme.atlassian.net/a\x01b")
        json_audits(env, 1)
        dbg = [o for o in parse_json_lines(env) if o.get("level") == "debug"]
        check(bool(dbg) == want, "debug lines %s at level %s" % ("present" if want else "absent",
                                                                   level), dbg)
        env.stop_proxy()


@h.test
def logs_audit_off(env):
    start(env, fmt="json", level="info", audit=False)
    for _ in range(3):
        get(env, MYSELF)
    h.proxy_error(get(env, "http://unmapped.example.com/", host="unmapped.example.com"), 403,
                  "host_not_allowed")
    time.sleep(0.3)
    objs = parse_json_lines(env)
    check(not [o for o in objs if o.get("msg") == "audit"], "no audit lines with audit: false",
          objs)
    check(any("listening on" in str(o.get("msg")) for o in objs), "info lines still shown", objs)
    env.stop_proxy()
    # text too
    env.start_proxy(extra={"log": {"format": "text", "level": "debug", "audit": False}})
    get(env, MYSELF)
    time.sleep(0.3)
    check(not [ln for ln in lines(env) if " audit " in ln], "no text audit line", lines(env))


@h.test
def logs_startup_message_once(env):
    for fmt in ("text", "json"):
        if env.fake is None:
            start(env, fmt=fmt)
        else:
            env.start_proxy(extra={"log": {"format": fmt, "level": "info", "audit": True}})
        addr = "127.0.0.1:%d" % env.port
        get(env, MYSELF)
        env.proxy.p.send_signal(signal.SIGHUP)
        end = time.monotonic() + 5
        while "reloaded" not in env.proxy.stderr() and time.monotonic() < end:
            time.sleep(0.05)
        check("reloaded" in env.proxy.stderr(), "%s: the reload happened" % fmt)
        get(env, MYSELF)
        text = env.proxy.stderr()
        listening = [ln for ln in text.splitlines() if "listening on" in ln]
        check(len(listening) == 1, "%s: the startup message appears exactly once (also after "
              "a reload and traffic)" % fmt, listening)
        if listening:
            ln = listening[0]
            check(addr in ln, "%s: it names %s" % (fmt, addr), ln)
            check("HTTP_PROXY=http://%s" % addr in ln and "HTTPS_PROXY=http://%s" % addr in ln,
                  "%s: it says how to point an agent at it (HTTP(S)_PROXY=...)" % fmt, ln)
            check("credproxy env" in ln, "%s: it points at `credproxy env`" % fmt, ln)
        check(env.proxy.stdout() == "", "%s: nothing on stdout" % fmt, env.proxy.stdout())
        if fmt == "json":
            parse_json_lines(env)
        env.stop_proxy()


@h.test
def logs_startup_names_every_listener(env):
    env.start_fake()
    site_port = h.free_port()
    sock = os.path.join(env.dir, "p.sock")
    env.port = h.free_port()
    env.start_proxy(sites=[
        {"domain": "acme", "credential": "svc"},
        {"domain": "acme-sandbox", "credential": "svc", "listen": "127.0.0.1:%d" % site_port}],
        extra={"listen": ["127.0.0.1:%d" % env.port, "unix:" + sock]})
    env.wait_listen(site_port, proc=env.proxy)
    # The sockets accept before the startup lines are written: wait for the lines.
    end = time.monotonic() + 5
    while True:
        listening = [ln for ln in env.proxy.stderr().splitlines() if "listening on" in ln]
        if len(listening) >= 3 or time.monotonic() > end:
            break
        time.sleep(0.05)
    check(len(listening) == 3, "one startup line per listener", listening)
    check(any("127.0.0.1:%d" % site_port in ln and "acme-sandbox.atlassian.net" in ln
              for ln in listening), "the site listener names its site and base URL", listening)
    check(any(sock in ln for ln in listening), "the unix socket is named", listening)


@h.test
def logs_hostile_input(env):
    start(env, fmt="text", level="debug", clients=True)
    forged = "2026-01-01T00:00:00.000Z info  audit client=FORGED"
    cases = [
        # raw control bytes in the target and in a header: refused, still one clean line each
        "GET http://acme.atlassian.net/a\x01b HTTP/1.1\r\nHost: acme.atlassian.net\r\n"
        "Proxy-Authorization: %s\r\n\r\n" % proxy_auth(),
        "GET http://acme.atlassian.net/a\rb HTTP/1.1\r\nHost: acme.atlassian.net\r\n\r\n",
        # an encoded newline stays encoded
        "GET http://acme.atlassian.net/a%%0a%s HTTP/1.1\r\nHost: acme.atlassian.net\r\n"
        "Proxy-Authorization: %s\r\n\r\n" % (forged.replace(" ", "%20"), proxy_auth()),
        # quotes, backslash and '=' in the path
        'GET http://acme.atlassian.net/a"b\\c=d%%20status=999 HTTP/1.1\r\nHost: acme.atlassian.net'
        '\r\nProxy-Authorization: %s\r\n\r\n' % proxy_auth(),
        # a header value with quotes (not logged, but must not break anything)
        'GET http://acme.atlassian.net/rest/api/3/myself HTTP/1.1\r\nHost: acme.atlassian.net\r\n'
        'User-Agent: x" status=999 client="FORGED\r\nProxy-Authorization: %s\r\n\r\n'
        % proxy_auth(),
        # a claimed client id with a newline, quotes and spaces (unknown: 407)
        "GET http://acme.atlassian.net/rest/api/3/myself HTTP/1.1\r\nHost: acme.atlassian.net\r\n"
        "Proxy-Authorization: Basic %s\r\n\r\n"
        % base64.b64encode(('evil" status=200\n%s:x' % forged).encode()).decode(),
        # a gateway Host with quotes and an escape sequence
        'GET /rest/api/3/myself HTTP/1.1\r\nHost: "x status=1".localhost\r\n\r\n',
        "GET /rest/api/3/myself HTTP/1.1\r\nHost: x\xe9\x1b[31m.localhost\r\n\r\n",
        # a very long path: the line is cut, never split
        "GET http://acme.atlassian.net/%s HTTP/1.1\r\nHost: acme.atlassian.net\r\n"
        "Proxy-Authorization: %s\r\n\r\n" % ("y" * 9000, proxy_auth()),
    ]
    for c in cases:
        r = h.raw_one(env.port, c.encode("latin-1"), timeout=15)
        check(r.status is not None and r.status >= 200, "an answer for a hostile request", r)
    auds = text_audits(env, len(cases))
    check(len(auds) == len(cases), "exactly one audit line per hostile request", auds)
    assert_text_lines_wellformed(env)
    text = env.proxy.stderr()
    check("\x1b" not in text and "\x01" not in text and "\r" not in text,
          "no raw control byte reaches the log", repr(text[-800:]))
    for ln in text.splitlines():
        check(not ln.startswith("2026-01-01T00:00:00.000Z"), "no forged line", ln)
        if re.match(r"^\S+ info  audit ", ln):
            f = text_fields(ln)
            check(f.get("client") != "FORGED" and f.get("status") != "999"
                  and (re.match(r"^\d{3}$", f.get("status", "")) or ln.endswith("(truncated)")),
                  "fields not forged", ln)
    quoted = [ln for ln in auds if '/a\\"b\\\\c=d' in ln]
    check(len(quoted) == 1, 'the path with quotes is logged quoted and escaped', auds)
    if quoted:
        check(text_fields(quoted[0]).get("status") == "404", "its status is the real one (404)",
              quoted[0])
    # The long path: the line is cut, but the record keeps what an audit needs.
    longl = [ln for ln in auds if "yyyy" in ln or ln.endswith("(truncated)")]
    if check(len(longl) == 1, "one audit line for the 9000-byte path", auds):
        f = text_fields(longl[0])
        check(f.get("status") == "404" and f.get("credential") == "svc"
              and f.get("client") == CLIENT_ID,
              "the audit line for a 9000-byte path still carries status, credential and client "
              "(the path should be cut, not the fields after it)", longl[0][:300])
    env.stop_proxy()
    # The same in JSON: every line still parses and carries exactly the audit fields.
    env.start_proxy(env={"ITEST_CLIENT_KEY": CLIENT_KEY},
                    extra={"log": {"format": "json", "level": "debug", "audit": True},
                           "clients": [{"id": CLIENT_ID, "key_env": "ITEST_CLIENT_KEY"}]})
    for c in cases:
        h.raw_one(env.port, c.encode("latin-1"), timeout=15)
    auds = json_audits(env, len(cases))
    check(len(auds) == len(cases), "json: one audit object per hostile request", len(auds))
    objs = parse_json_lines(env)
    check(len(objs) == len(lines(env)), "json: every line parses, the long one included")
    for o in auds:
        check(o.get("client") != "FORGED" and o.get("status") != 999, "json: fields not forged", o)
    check(any(o.get("path") == '/a"b\\c=d%20status=999' for o in auds),
          "json: quotes and backslash round-trip in the path", [o.get("path") for o in auds])
    longo = [o for o in auds if str(o.get("path", "")).startswith("/yyyy")]
    if check(len(longo) == 1 and longo[0]["path"].endswith("...")
             and len(longo[0]["path"]) < 2000, "json: the long path is cut, marked with ...",
             [len(o.get("path", "")) for o in longo]):
        o = longo[0]
        check(o.get("status") == 404 and o.get("credential") == "svc"
              and o.get("client") == CLIENT_ID,
              "json: the audit object for a 9000-byte path still carries status, credential and "
              "client", {k: v for k, v in o.items() if k != "path"})


@h.test
def logs_no_secret_at_debug(env):
    start(env, fmt="text", level="debug", clients=True, extra={"unknown_hosts": "tunnel"})
    hdrs = ("Proxy-Authorization: %s\r\nAuthorization: Bearer %s\r\nCookie: s=%s\r\n"
            % (proxy_auth(), CLIENT_AUTH_SECRET, COOKIE_SECRET))
    check(get(env, MYSELF + "?token=" + QUERY_SECRET, hdrs).status == 200, "forward")
    check(get(env, "/rest/api/3/myself", hdrs, host="acme.localhost:%d" % env.port).status == 200,
          "gateway")
    get(env, "http://acme.atlassian.net/__status?code=401", hdrs)
    get(env, "http://acme.atlassian.net/__set_cookie", hdrs)
    # a wrong key for a known client, and a wrong key for the right id
    bad = "Basic " + base64.b64encode(("%s:%s-wrong" % (CLIENT_ID, CLIENT_KEY)).encode()).decode()
    h.proxy_error(get(env, MYSELF, "Proxy-Authorization: %s\r\n" % bad), 407,
                  "client_auth_required")
    # the tunnel to an unmapped host (plain http): no credential, but still logged
    get(env, "http://unknown.atlassian.net/x", "Proxy-Authorization: %s\r\n" % proxy_auth(),
        host="unknown.atlassian.net")
    # SIGHUP reload at debug level, then stop
    env.proxy.p.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    get(env, MYSELF, hdrs)
    env.stop_proxy()
    text = env.proxy.stderr()
    for s, name in ((CLIENT_KEY, "client key"), (proxy_auth(), "Proxy-Authorization value"),
                    (proxy_auth()[6:], "base64(id:key)"), (CLIENT_AUTH_SECRET, "client's own "
                    "Authorization"), (COOKIE_SECRET, "cookie"), (QUERY_SECRET, "query string"),
                    (CLIENT_KEY + "-wrong", "wrong key")):
        check(s not in text, "%s absent from the debug log" % name)
    env.assert_no_secret()


if __name__ == "__main__":
    h.main()
