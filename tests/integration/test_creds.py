#!/usr/bin/python3
"""Credentials that stay healthy (issue 10), through the real binary:
Atlassian's current rate-limit signals (X-RateLimit-Reset as epoch seconds
and as ISO 8601 without Retry-After both pause the credential; the reason is
logged and labels the metric) and the breaker for rejected credentials (a
wrong token trips it after 3 requests, the 4th never reaches the fake,
/readyz says why, SIGHUP with the right token closes it; CAPTCHA opens it at
once). Env.close asserts the token appears in no output.

Run: CREDPROXY_BIN=build/credproxy /usr/bin/python3 tests/integration/test_creds.py [TEST...]
"""
import json
import os
import signal
import time

import harness as h
from harness import check

URL = "http://acme.atlassian.net/rest/api/3/myself"


def admin_get(port, path):
    return h.raw_one(port, ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n"
                            % (path, port)).encode(), timeout=10)


def get(env, url=URL, timeout=20):
    raw = ("GET %s HTTP/1.1\r\nHost: acme.atlassian.net\r\nConnection: close\r\n\r\n" % url)
    return h.raw_one(env.port, raw.encode(), timeout=timeout)


def token_file(env, token, name="token"):
    path = os.path.join(env.dir, name)
    with open(path, "w") as f:
        f.write(token + "\n")
    os.chmod(path, 0o600)
    return path


def start(env, token=None, rl=None, extra_cred=None, **switches):
    """Fake plus proxy with an admin listener; credential svc reads its token from a file."""
    env.start_fake(**switches)
    aport = h.free_port()
    path = token_file(env, token or h.TOKEN, "svc-token")
    cred = {"type": "basic", "email": h.EMAIL, "token_file": path, "rate_limit": "50/s",
            "burst": 10}
    cred.update(extra_cred or {})
    extra = {"admin": "127.0.0.1:%d" % aport,
             "rate_limit": rl or {"when_exhausted": "queue", "max_wait": "10s"}}
    env.start_proxy(extra=extra, credentials={"svc": cred})
    env.wait_listen(aport, proc=env.proxy)
    return aport, path


# ---------------------------------------------------------------- rate-limit signals

def reset_pauses(env, fmt):
    aport, _ = start(env)
    r = get(env, "http://acme.atlassian.net/__status?code=429&reset=%s&reset_in=3"
            "&reason=jira-quota-tenant-based" % fmt)
    check(r.status == 429, "the upstream 429 reaches the client", r)
    check(r.header("Retry-After") is None, "no Retry-After: only X-RateLimit-Reset", r)
    check(r.header("X-Credproxy-Error") is None, "Atlassian's own 429, untouched", r)
    t0 = time.monotonic()
    r2 = get(env, "http://acme.atlassian.net/__echo")
    took = time.monotonic() - t0
    check(r2.status == 200, "the next request succeeds", r2)
    check(took >= 2.0, "after waiting out the reset (not the 1 s default) (%s: %.2fs)" % (fmt, took))
    check(took < 6, "and not much longer (%.2fs)" % took)
    m = admin_get(aport, "/metrics")
    check(b'credproxy_upstream_ratelimited_total{reason="jira-quota-tenant-based"} 1' in m.body,
          "the upstream-429 metric is labelled with RateLimit-Reason", m.body[-2000:])
    check("reason: jira-quota-tenant-based" in env.proxy.stderr(),
          "the pause line names the reason")


@h.test
def epoch_reset_pauses(env):
    reset_pauses(env, "epoch")


@h.test
def iso_reset_pauses(env):
    reset_pauses(env, "iso")


@h.test
def iso_reset_without_zone_pauses(env):
    reset_pauses(env, "iso_local")


@h.test
def beta_retry_after_pauses(env):
    start(env)
    r = get(env, "http://acme.atlassian.net/__status?code=429&reset=garbage&reset_in=0"
            "&beta_retry_after=3")
    check(r.status == 429, "upstream 429", r)
    t0 = time.monotonic()
    check(get(env, "http://acme.atlassian.net/__echo").status == 200, "next succeeds")
    check(time.monotonic() - t0 >= 2.0, "after Beta-Retry-After's wait")


# ---------------------------------------------------------------- the breaker

WRONG = "ATATT3xFfGF0-wrong-" + os.urandom(8).hex()


def myself_records(env, since):
    return [r for r in env.fake.records(since=since) if r["path"] == "/rest/api/3/myself"]


@h.test
def wrong_token_trips_breaker_and_reload_closes_it(env):
    aport, path = start(env, token=WRONG)
    seq = env.fake.last_seq()
    rs = [get(env) for _ in range(3)]
    for r in rs:
        check(r.status == 401, "Atlassian's own 401 reaches the client", r)
        check(r.header("X-Credproxy-Error") is None, "not the proxy's error", r)
        check(r.header("X-Seraph-LoginReason") == "AUTHENTICATED_FAILED", "with its headers", r)
    check(len(myself_records(env, seq)) == 3, "three requests reached the fake")
    r4 = get(env)
    h.proxy_error(r4, 503, "credential_rejected")
    body = r4.json()
    check(body.get("credential") == "svc", "the body names the credential", body)
    check("AUTHENTICATED_FAILED" in body.get("atlassian_said", ""), "and what Atlassian said", body)
    check("credproxy check" in body.get("fix", "") and "reload" in body.get("fix", ""),
          "and what to do", body)
    check(body.get("captcha") is False, "not a CAPTCHA", body)
    check((r4.header("Retry-After") or "").isdigit(), "Retry-After until the probe", r4)
    check(len(myself_records(env, seq)) == 3, "the 4th never reached the fake")
    for _ in range(3):
        h.proxy_error(get(env), 503, "credential_rejected")
    check(len(myself_records(env, seq)) == 3, "nor did the ones after it")
    check(not env.fake.records(since=seq) or all(
        rec["path"] == "/rest/api/3/myself" for rec in env.fake.records(since=seq)),
        "nothing else went upstream")
    rz = admin_get(aport, "/readyz")
    check(rz.status == 503, "/readyz 503 while the credential is held back", rz)
    check(b"credential svc rejected by Atlassian" in rz.body and b"credproxy check" in rz.body,
          "with the reason", rz.body)
    m = admin_get(aport, "/metrics").body
    check(b'credproxy_credential_state{credential="svc",state="rejected"} 1' in m,
          "the state gauge says rejected", m[-1500:])
    check(b'credproxy_credential_state{credential="svc",state="ok"} 0' in m, "not ok")
    check(b'credproxy_credential_transitions_total{credential="svc"} 1' in m, "one transition")
    err = env.proxy.stderr()
    check(err.count("holding it back") == 1, "exactly one error line for the transition",
          err[-3000:])
    # The operator fixes the token and reloads.
    token_file(env, h.TOKEN, "svc-token")
    os.kill(env.proxy.pid, signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "configuration reloaded" not in env.proxy.stderr():
        time.sleep(0.05)
    r = get(env)
    check(r.status == 200, "after SIGHUP with the right token the breaker is closed", r)
    check(admin_get(aport, "/readyz").status == 200, "/readyz ready again")
    check("accepted again (its secret changed on reload)" in env.proxy.stderr(),
          "one info line says why it closed")
    m = admin_get(aport, "/metrics").body
    check(b'credproxy_credential_state{credential="svc",state="ok"} 1' in m, "state ok again")
    for text in [env.proxy.stderr(), env.proxy.stdout(), m.decode()]:
        check(WRONG not in text, "the wrong token appears in no output")


@h.test
def reload_with_the_same_secret_keeps_it_open(env):
    aport, _ = start(env, token=WRONG, extra_cred={"reject_after": 2})
    for _ in range(2):
        check(get(env).status == 401, "401 passes through")
    h.proxy_error(get(env), 503, "credential_rejected")
    os.kill(env.proxy.pid, signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "configuration reloaded" not in env.proxy.stderr():
        time.sleep(0.05)
    h.proxy_error(get(env), 503, "credential_rejected")
    check(admin_get(aport, "/readyz").status == 503, "still not ready")


@h.test
def captcha_opens_it_at_once(env):
    aport, _ = start(env, captcha=True)
    seq = env.fake.last_seq()
    r = get(env)
    check(r.status == 401 and r.header("X-Seraph-LoginReason") == "AUTHENTICATION_DENIED",
          "the CAPTCHA answer reaches the client once", r)
    r2 = get(env)
    h.proxy_error(r2, 503, "credential_rejected")
    body = r2.json()
    check(body.get("captcha") is True, "the body says CAPTCHA", body)
    check("log in once in a browser as %s" % h.EMAIL in body.get("fix", ""),
          "and whom to log in as", body)
    check(len(env.fake.records(since=seq)) == 1, "only the first reached the fake")
    rz = admin_get(aport, "/readyz")
    check(rz.status == 503 and b"CAPTCHA" in rz.body, "/readyz says CAPTCHA", rz)
    check(env.proxy.stderr().count("demands a CAPTCHA") == 1, "one error line")


@h.test
def failures_elsewhere_do_not_trip_a_healthy_credential(env):
    start(env)
    for _ in range(5):
        check(get(env).status == 200, "good token: 200")
    for _ in range(5):
        r = get(env, "http://acme.atlassian.net/__status?code=500")
        check(r.status == 500, "5xx passes through", r)
    check(get(env).status == 200, "5xx never opens the breaker")


if __name__ == "__main__":
    h.main()
