#!/usr/bin/python3
"""SIGHUP reload of the real binary: rotating a token file (write the new
token, send SIGHUP) switches the Authorization sent upstream; an invalid new
configuration (broken YAML, a missing token file, a token with white space) is
refused with FILE:LINE:COL in the log and the old one keeps serving; a request
in flight finishes with the credential it started with while the next one
uses the new; a reload that adds or removes a site takes effect without a
restart (a changed listen address says it needs one); requests queued on the
rate limiter and a storm of SIGHUPs under traffic are survived; log settings
follow the reload; credproxy_config_reloads_total{result} counts both
outcomes; and neither token ever appears in any output.

Run: CREDPROXY_BIN=build/credproxy /usr/bin/python3 tests/integration/test_reload.py [TEST...]
"""
import json
import os
import re
import signal
import socket
import threading
import time

import harness as h
from harness import fake_atlassian
from harness import check

# The rotated-to token: fresh per run, and redacted from everything this file prints.
TOKEN_B = "ATATT3xFfGF0-itest-rotated-" + os.urandom(12).hex()
BASIC_A = h.basic(h.EMAIL, h.TOKEN)
BASIC_B = h.basic(h.EMAIL, TOKEN_B)
B64_B = BASIC_B[len("Basic "):]
_harness_redact = h.redact


def _redact_both(text):
    text = _harness_redact(text)
    for s in (BASIC_B, B64_B, TOKEN_B):
        text = text.replace(s, "<REDACTED-B>")
    return text


h.redact = _redact_both  # check() and log() look it up at call time

MYSELF = "http://acme.atlassian.net/rest/api/3/myself"
RELOAD_OK = "configuration reloaded"
RELOAD_BAD = "reload rejected"


# ---------------------------------------------------------------------------
# helpers
def sites_accepting_both():
    sites = fake_atlassian.default_sites(h.EMAIL, h.TOKEN)
    for s in sites.values():
        s["credentials"].append([h.EMAIL, TOKEN_B])
    return sites


def start(env, sites=None, admin=True):
    """Fake accepting tokens A and B, proxy with token_file (A) and an admin listener."""
    env.start_fake(sites=sites_accepting_both())
    extra = {}
    env.admin_port = None
    if admin:
        env.admin_port = h.free_port()
        extra["admin"] = "127.0.0.1:%d" % env.admin_port
    env.reload_extra = extra
    env.start_proxy(sites=sites, extra=extra)
    if admin:
        env.wait_listen(env.admin_port, proc=env.proxy)
    env.token_path = os.path.join(env.dir, "token")


def write_token(env, token):
    tmp = env.token_path + ".new"
    with open(tmp, "w") as f:
        f.write(token + "\n")
    os.chmod(tmp, 0o600)
    os.rename(tmp, env.token_path)


def count(env, needle):
    return sum(1 for line in env.proxy.stderr().splitlines() if needle in line)


def sighup(env, expect=RELOAD_OK, timeout=5.0):
    """Sends SIGHUP and waits for one more `expect` line. Returns that line (or None)."""
    before = count(env, expect)
    env.proxy.p.send_signal(signal.SIGHUP)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        lines = [ln for ln in env.proxy.stderr().splitlines() if expect in ln]
        if len(lines) > before:
            return lines[-1]
        time.sleep(0.05)
    check(False, "a %r log line within %.0fs of SIGHUP" % (expect, timeout),
          env.proxy.stderr()[-1500:])
    return None


def last_auth(env, host="acme.atlassian.net", path="/rest/api/3/myself"):
    recs = env.fake.records(host=host, path=path)
    return recs[-1]["authorization"] if recs else None


def which(value):
    return {BASIC_A: "A", BASIC_B: "B", None: "none"}.get(value, "other")


def request_with(env, expect, url=MYSELF, host="acme.atlassian.net"):
    """One request through the proxy; checks 200 and which token the fake saw."""
    n = len(env.fake.records(host=host))
    r = env.curl_proxy(url, timeout=15)
    check(r.status == 200, "request %s -> 200" % url, r)
    recs = env.fake.records(host=host)
    got = which(recs[-1]["authorization"]) if len(recs) > n else "no request upstream"
    check(got == expect, "upstream saw token %s" % expect, got)
    return r


def admin_metrics(env):
    r = h.raw_one(env.admin_port, ("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close"
                                   "\r\n\r\n").encode(), timeout=10)
    body = r.body.decode("utf-8", "replace")
    env.extra_texts.append(body)
    return body


def reloads(env, result):
    m = re.search(r'^credproxy_config_reloads_total\{result="%s"\} (\d+)$' % result,
                  admin_metrics(env), re.M)
    return int(m.group(1)) if m else None


def no_token_b(env):
    """Token B (and its Basic forms) appear in no process output and no collected text."""
    texts = list(env.extra_texts)
    for p in env.procs:
        texts += [p.stdout(), p.stderr()]
    for i, t in enumerate(texts):
        for s, name in ((TOKEN_B, "token B"), (B64_B, "base64(email:B)"), (BASIC_B, "Basic B")):
            check(s not in t, "secret (%s) absent from output #%d" % (name, i))


def says_restart(text):
    """A warn line saying something takes a restart (the temp dir name is not enough)."""
    return any(" warn " in ln[:32] and "after a restart" in ln for ln in text.splitlines())


def rewrite_config(env, **kw):
    """Rewrites the config file in place (same port, same admin); env.config rewrites the
    token file with token A, so the token file is restored afterwards when asked."""
    keep = None
    if os.path.exists(env.token_path):
        with open(env.token_path) as f:
            keep = f.read()
    extra = dict(env.reload_extra)
    extra.update(kw.pop("extra", {}) or {})
    env.config(extra=extra, **kw)
    if keep is not None:
        with open(env.token_path, "w") as f:
            f.write(keep)


# ---------------------------------------------------------------------------
@h.test
def reload_rotates_token_file(env):
    start(env)
    check(reloads(env, "ok") == 0 and reloads(env, "error") == 0, "no reloads counted yet",
          admin_metrics(env))
    request_with(env, "A")
    write_token(env, TOKEN_B)
    # Nothing changes before the signal: token files are read at load time only.
    request_with(env, "A")
    line = sighup(env)
    check(line and env.config_path in line, "the reload line names the file", line)
    request_with(env, "B")
    request_with(env, "B")
    check(reloads(env, "ok") == 1, 'credproxy_config_reloads_total{result="ok"} 1',
          admin_metrics(env))
    check(reloads(env, "error") == 0, 'credproxy_config_reloads_total{result="error"} 0')
    # Rotate back: a second reload works the same way.
    write_token(env, h.TOKEN)
    sighup(env)
    request_with(env, "A")
    check(reloads(env, "ok") == 2, 'reloads_total{result="ok"} 2 after two reloads')
    check(env.proxy.alive(), "the proxy is still running")
    env.stop_proxy()
    no_token_b(env)


@h.test
def reload_invalid_keeps_old(env):
    start(env)
    request_with(env, "A")
    with open(env.config_path) as f:
        good = f.read()
    # 1. broken YAML (plus a rotated token file, which must NOT be picked up)
    write_token(env, TOKEN_B)
    with open(env.config_path, "w") as f:
        f.write(good + "sites: [unclosed\n")
    line = sighup(env, RELOAD_BAD)
    check(line and re.search(r"%s:\d+:\d+: " % re.escape(env.config_path), line),
          "the rejection names FILE:LINE:COL", line)
    check(count(env, RELOAD_OK) == 0, "no 'reloaded' line for a rejected reload")
    request_with(env, "A")
    check(reloads(env, "error") == 1, 'credproxy_config_reloads_total{result="error"} 1',
          admin_metrics(env))
    check(reloads(env, "ok") == 0, 'credproxy_config_reloads_total{result="ok"} 0')
    # 2. an unknown key
    with open(env.config_path, "w") as f:
        f.write(good + "bogus_key: 1\n")
    line = sighup(env, RELOAD_BAD)
    check(line and "bogus_key" in line and env.config_path in line,
          "the rejection names the unknown key and the file", line)
    request_with(env, "A")
    # 3. the token file missing
    with open(env.config_path, "w") as f:
        f.write(good)
    os.unlink(env.token_path)
    line = sighup(env, RELOAD_BAD)
    check(line and env.token_path in line, "the rejection names the missing token file", line)
    request_with(env, "A")
    # 4. a token with a trailing space
    with open(env.token_path, "w") as f:
        f.write(TOKEN_B + " \n")
    os.chmod(env.token_path, 0o600)
    line = sighup(env, RELOAD_BAD)
    check(line and "white space" in line, "the rejection says the token has white space", line)
    request_with(env, "A")
    # 5. a credential without any token source
    with open(env.config_path, "w") as f:
        f.write(good.replace("token_file:", "tokn_file:"))
    sighup(env, RELOAD_BAD)
    request_with(env, "A")
    check(reloads(env, "error") == 4 + 1 and reloads(env, "ok") == 0,
          "five rejected reloads counted as error", admin_metrics(env))
    # And a valid configuration afterwards is taken.
    with open(env.config_path, "w") as f:
        f.write(good)
    write_token(env, TOKEN_B)
    sighup(env)
    request_with(env, "B")
    check(reloads(env, "ok") == 1, 'then reloads_total{result="ok"} 1')
    check(env.proxy.alive(), "the proxy is still running")
    env.stop_proxy()
    no_token_b(env)


def _slow(env, box, path="/__slow?delay=1&chunks=3"):
    box["r"] = h.raw_one(env.port, ("GET http://acme.atlassian.net%s HTTP/1.1\r\n"
                                    "Host: acme.atlassian.net\r\nConnection: close\r\n\r\n"
                                    % path).encode(), timeout=25)


@h.test(timeout=45)
def reload_in_flight_keeps_old(env):
    start(env, admin=False)
    box = {}
    t = threading.Thread(target=_slow, args=(env, box), daemon=True)
    t.start()
    end = time.monotonic() + 5
    while not env.fake.records(path="/__slow") and time.monotonic() < end:
        time.sleep(0.02)
    recs = env.fake.records(path="/__slow")
    check(recs and which(recs[0]["authorization"]) == "A",
          "the slow request went up with token A", recs and which(recs[0]["authorization"]))
    write_token(env, TOKEN_B)
    sighup(env)
    check(t.is_alive(), "the slow request is still in flight after the reload")
    # While it streams: new requests already use B.
    request_with(env, "B")
    # A second reload (back to A) while the first world is still in use by the slow request.
    write_token(env, h.TOKEN)
    sighup(env)
    request_with(env, "A")
    t.join(25)
    r = box.get("r")
    check(r is not None and r.status == 200 and r.error is None
          and r.body == b"chunk 0\nchunk 1\nchunk 2\n", "the in-flight request completes intact", r)
    check(len(env.fake.records(path="/__slow")) == 1, "the slow request was sent upstream once")
    # SIGTERM with another slow request in flight after the reloads: it completes, exit 0.
    box2 = {}
    t2 = threading.Thread(target=_slow, args=(env, box2, "/__slow?delay=0.5&chunks=3"),
                          daemon=True)
    t2.start()
    end = time.monotonic() + 5
    while len(env.fake.records(path="/__slow")) < 2 and time.monotonic() < end:
        time.sleep(0.02)
    env.proxy.p.send_signal(signal.SIGTERM)
    t2.join(20)
    r = box2.get("r")
    check(r is not None and r.status == 200 and r.body == b"chunk 0\nchunk 1\nchunk 2\n",
          "a slow request in flight at SIGTERM completes", r)
    try:
        rc = env.proxy.p.wait(12)
    except Exception:  # noqa: BLE001
        rc = None
    check(rc == 0, "exit 0 after the drain", rc)
    no_token_b(env)


@h.test(timeout=45)
def reload_keepalive_next_request_uses_new(env):
    """A client connection kept open across the reload: the request after SIGHUP on the same
    connection carries the new token (rotation must not wait for agents to reconnect)."""
    start(env, admin=False)
    req = (b"GET http://acme.atlassian.net/rest/api/3/myself HTTP/1.1\r\n"
           b"Host: acme.atlassian.net\r\n\r\n")
    with socket.create_connection(("127.0.0.1", env.port), timeout=10) as s:
        s.sendall(req)
        r, buf = h.read_response(s)
        check(r.status == 200, "first request on the connection", r)
        check(which(last_auth(env)) == "A", "first request used A", which(last_auth(env)))
        write_token(env, TOKEN_B)
        sighup(env)
        s.sendall(req)
        r, buf = h.read_response(s, buf)
        check(r.status == 200, "second request on the same connection", r)
        check(which(last_auth(env)) == "B", "the request after the reload used B on the same "
              "client connection", which(last_auth(env)))
    env.stop_proxy()
    no_token_b(env)


@h.test
def reload_adds_and_removes_sites(env):
    start(env, sites=[{"domain": "acme", "credential": "svc"}])
    request_with(env, "A")
    r = env.curl_proxy("http://acme-sandbox.atlassian.net/rest/api/3/myself", timeout=15)
    h.proxy_error(r, 403, "host_not_allowed")
    check(not env.fake.records(host="acme-sandbox.atlassian.net"), "nothing reached the sandbox")
    rewrite_config(env, sites=[{"domain": "acme", "credential": "svc"},
                               {"domain": "acme-sandbox", "credential": "svc"}])
    sighup(env)
    request_with(env, "A", url="http://acme-sandbox.atlassian.net/rest/api/3/myself",
                 host="acme-sandbox.atlassian.net")
    r = env.curl_gateway("/rest/api/3/myself", host="acme-sandbox.localhost:%d" % env.port)
    check(r.status == 200, "the new site works in gateway mode too", r)
    request_with(env, "A")
    check(reloads(env, "ok") == 1, 'reloads_total{result="ok"} 1', admin_metrics(env))
    # Remove acme: it is refused from now on, the sandbox still works.
    rewrite_config(env, sites=[{"domain": "acme-sandbox", "credential": "svc"}])
    sighup(env)
    n = len(env.fake.records(host="acme.atlassian.net"))
    r = env.curl_proxy(MYSELF, timeout=15)
    h.proxy_error(r, 403, "host_not_allowed")
    check(len(env.fake.records(host="acme.atlassian.net")) == n,
          "a removed site receives nothing after the reload")
    request_with(env, "A", url="http://acme-sandbox.atlassian.net/rest/api/3/myself",
                 host="acme-sandbox.atlassian.net")
    env.stop_proxy()


@h.test
def reload_listen_changed(env):
    """Listeners are bound once: a reload that changes them keeps serving and says a restart
    is needed, for a site's own listen address and for the main listen list alike."""
    start(env, admin=False)
    # A site with its own listener, added by reload (main listen unchanged).
    site_port = h.free_port()
    rewrite_config(env, sites=[{"domain": "acme", "credential": "svc"},
                               {"domain": "acme-sandbox", "credential": "svc",
                                "listen": "127.0.0.1:%d" % site_port}])
    before = len(env.proxy.stderr().splitlines())
    sighup(env)
    new = "\n".join(env.proxy.stderr().splitlines()[before:])
    bound = True
    try:
        socket.create_connection(("127.0.0.1", site_port), timeout=1).close()
    except OSError:
        bound = False
    check(bound or says_restart(new), "a site listen address added by reload is served, or the "
          "log says it takes a restart", new)
    request_with(env, "A", url="http://acme-sandbox.atlassian.net/rest/api/3/myself",
                 host="acme-sandbox.atlassian.net")
    # The main listen address changed.
    proxy_port = env.port
    rewrite_config(env, listen="127.0.0.1:%d" % h.free_port())
    before = len(env.proxy.stderr().splitlines())
    sighup(env)
    new = "\n".join(env.proxy.stderr().splitlines()[before:])
    check(says_restart(new), "changed main listen: the log says a restart is needed", new)
    env.port = proxy_port
    request_with(env, "A")  # still served on the old port
    env.stop_proxy()


@h.test(timeout=60)
def sighup_as_soon_as_the_port_accepts(env):
    """A SIGHUP sent the moment the listener accepts (a supervisor or a test may) is a reload,
    never the default action that ends the process: the handlers are set before binding.
    Seen in CI under ASan, where the gap between bind and the handlers was long."""
    env.start_fake(sites=sites_accepting_both())
    for _ in range(3):
        env.start_proxy()  # returns as soon as the port accepts
        env.proxy.p.send_signal(signal.SIGHUP)
        time.sleep(0.3)
        check(env.proxy.p.poll() is None, "the proxy is alive after an early SIGHUP",
              env.proxy.stderr()[-500:])
        r = env.curl_proxy("http://acme.atlassian.net/rest/api/3/myself")
        check(r.status == 200, "and serves", r)
        env.stop_proxy()


@h.test(timeout=50)
def reload_with_queued_requests(env):
    """Requests queued on the rate limiter while a reload changes the credential's budget and
    then renames the credential: every request is answered (200 or the proxy's 429), nothing
    crashes, and the proxy keeps serving afterwards."""
    env.start_fake(sites=sites_accepting_both())
    token_path = os.path.join(env.dir, "token")

    def creds(name, rate):
        return {name: {"type": "basic", "email": h.EMAIL, "token_file": token_path,
                       "rate_limit": rate, "burst": 1}}
    rl = {"rate_limit": {"when_exhausted": "queue", "max_wait": "8s"}}
    env.start_proxy(credentials=creds("svc", "1/s"), extra=rl)
    env.token_path = token_path
    env.reload_extra = rl
    results = []
    lock = threading.Lock()

    def one():
        r = h.raw_one(env.port, b"GET http://acme.atlassian.net/rest/api/3/myself HTTP/1.1\r\n"
                      b"Host: acme.atlassian.net\r\nConnection: close\r\n\r\n", timeout=20)
        with lock:
            results.append(r)
    threads = [threading.Thread(target=one, daemon=True) for _ in range(6)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    rewrite_config(env, credentials=creds("svc", "100/s"))
    sighup(env)
    time.sleep(0.2)
    rewrite_config(env, credentials=creds("svc2", "100/s"),
                   sites=[{"domain": "acme", "credential": "svc2"}])
    write_token(env, TOKEN_B)
    sighup(env)
    for t in threads:
        t.join(20)
    check(len(results) == 6, "every queued request was answered", len(results))
    for r in results:
        check(r.status == 200 or (r.status == 429 and r.header("X-Credproxy-Error")
                                  == "rate_limited"), "200 or the proxy's 429", r)
    check(env.proxy.alive(), "the proxy survived reloads with queued requests",
          env.proxy.stderr()[-1500:])
    request_with(env, "B")
    env.stop_proxy()
    no_token_b(env)


@h.test(timeout=50)
def reload_storm_under_traffic(env):
    """Twenty SIGHUPs while requests flow: every request is answered 200, the proxy stays up,
    and each request carries one of the two valid tokens (never a mix or nothing)."""
    start(env, admin=True)
    stop = threading.Event()
    results = []

    def traffic():
        while not stop.is_set():
            r = h.raw_one(env.port, b"GET http://acme.atlassian.net/rest/api/3/myself HTTP/1.1"
                          b"\r\nHost: acme.atlassian.net\r\nConnection: close\r\n\r\n",
                          timeout=10)
            results.append(r.status)
    ts = [threading.Thread(target=traffic, daemon=True) for _ in range(3)]
    for t in ts:
        t.start()
    for i in range(20):
        write_token(env, TOKEN_B if i % 2 == 0 else h.TOKEN)
        env.proxy.p.send_signal(signal.SIGHUP)
        time.sleep(0.1)
    time.sleep(0.5)
    stop.set()
    for t in ts:
        t.join(15)
    check(env.proxy.alive(), "the proxy survived the reload storm", env.proxy.stderr()[-1500:])
    check(results and all(s == 200 for s in results), "every request during the storm got 200",
          [s for s in results if s != 200][:10])
    seen = {which(r["authorization"]) for r in env.fake.records(path="/rest/api/3/myself")}
    check(seen <= {"A", "B"} and seen, "only token A or B was ever sent", seen)
    ok = reloads(env, "ok")
    check(ok is not None and 1 <= ok <= 20 and reloads(env, "error") == 0,
          "reloads counted as ok (signals may coalesce), none as error", ok)
    h.log("    %d requests during the storm, %s reloads" % (len(results), ok))
    env.stop_proxy()
    no_token_b(env)


@h.test
def reload_changes_logging(env):
    """log.format/level/audit are taken on reload: text -> json, audit off."""
    start(env, admin=False)
    request_with(env, "A")
    check(count(env, " audit ") >= 1, "an audit line in text format before the reload",
          env.proxy.stderr()[-1500:])
    rewrite_config(env, extra={"log": {"format": "json", "level": "info", "audit": False}})
    sighup(env)
    before = len(env.proxy.stderr().splitlines())
    request_with(env, "A")
    write_token(env, TOKEN_B)
    env.proxy.p.send_signal(signal.SIGHUP)
    end = time.monotonic() + 5
    while time.monotonic() < end and "configuration reloaded" not in \
            "".join(env.proxy.stderr().splitlines(True)[before:]):
        time.sleep(0.05)
    request_with(env, "B")
    time.sleep(0.2)
    new = env.proxy.stderr().splitlines()[before:]
    check(new, "log lines after the reload", env.proxy.stderr()[-1000:])
    for line in new:
        try:
            obj = json.loads(line)
        except ValueError:
            obj = None
        check(isinstance(obj, dict), "a JSON line after switching to json", line)
        if isinstance(obj, dict):
            check(obj.get("msg") != "audit", "no audit line with audit: false", line)
    env.stop_proxy()
    no_token_b(env)


if __name__ == "__main__":
    h.main()
