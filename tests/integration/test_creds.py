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
import subprocess
import threading
import time



import harness as h
import fake_atlassian  # noqa: E402 (harness puts tests/ on the path)
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


def start(env, token=None, rl=None, extra_cred=None, more=None, **switches):
    """Fake plus proxy with an admin listener; credential svc reads its token from a file."""
    env.start_fake(**switches)
    aport = h.free_port()
    path = token_file(env, token or h.TOKEN, "svc-token")
    cred = {"type": "basic", "email": h.EMAIL, "token_file": path, "rate_limit": "50/s",
            "burst": 10}
    cred.update(extra_cred or {})
    extra = {"admin": "127.0.0.1:%d" % aport,
             "rate_limit": rl or {"when_exhausted": "queue", "max_wait": "10s"}}
    extra.update(more or {})
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
def policy_lookups_pass_the_breaker(env):
    """A policy's id lookup carries the credential: its 401s count, an open breaker stops it."""
    start(env, token=WRONG, policy_world=True,
          more={"policies": {"ops-only": {"allow": ["read"], "projects": ["OPS"]}},
                "default_policy": "ops-only"})
    url = "http://acme.atlassian.net/rest/api/3/issue/10010"  # a numeric id: looked up first
    seq = env.fake.last_seq()
    for _ in range(3):
        r = get(env, url)
        h.proxy_error(r, 403, "policy_denied")
        check("401" in r.json().get("message", ""), "the refusal says the lookup got 401", r)
    recs = env.fake.records(since=seq)
    check(len(recs) == 3 and all(x["query"] == "fields=project" for x in recs),
          "three lookups and nothing else reached the fake", recs)
    h.proxy_error(get(env, url), 503, "credential_rejected")
    check(env.fake.last_seq() == recs[-1]["seq"] if recs else False,
          "with the breaker open, no lookup carried the rejected credential",
          env.fake.records(since=seq))


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


# ---------------------------------------------------------------- service accounts

CLIENT_ID = "cid-" + os.urandom(4).hex()
CLIENT_SECRET = "cs-SECRET-" + os.urandom(12).hex()
SCOPED = "ATATT3xFfGF0-scoped-" + os.urandom(12).hex()
TOKEN_WAIT_BOUND = 10  # TOKENS_MAX_WAIT_MS


def gateway_records(env, since=0):
    return [r for r in env.fake.records(since=since) if r["host"] == fake_atlassian.GATEWAY_HOST]


def token_records(env, since=0):
    return [r for r in env.fake.records(since=since) if r["host"] == fake_atlassian.AUTH_HOST]


def start_oauth(env, lifetime=3600, secret=CLIENT_SECRET, workers=2, extra=None, **switches):
    env.start_fake(oauth_clients={CLIENT_ID: CLIENT_SECRET}, oauth_lifetime=lifetime, **switches)
    aport = h.free_port()
    path = token_file(env, secret, "client-secret")
    cred = {"type": "oauth_client", "client_id": CLIENT_ID, "client_secret_file": path,
            "token_url": "https://auth.atlassian.com/oauth/token", "rate_limit": "off"}
    ex = {"admin": "127.0.0.1:%d" % aport, "workers": workers}
    ex.update(extra or {})
    env.start_proxy(extra=ex, credentials={"sa": cred},
                    sites=[{"domain": "acme", "credential": "sa"}])
    env.wait_listen(aport, proc=env.proxy)
    env.extra_texts.append(secret)
    return aport


def no_secret_anywhere(env, aport, *secrets):
    m = admin_get(aport, "/metrics").body.decode()
    rz = admin_get(aport, "/readyz").body.decode()
    for text in (env.proxy.stderr(), env.proxy.stdout(), m, rz):
        for sec in secrets:
            check(sec not in text, "a secret appears in no output")


@h.test(timeout=60)
def oauth_client_across_three_lifetimes(env):
    life = 2.0
    aport = start_oauth(env, lifetime=life)
    acme_id = env.fake.sites["acme.atlassian.net"]["cloud_id"]
    t0 = time.monotonic()
    codes = []
    while time.monotonic() - t0 < 3 * life + 0.3:
        r = get(env)
        codes.append(r.status)
        if r.status != 200:
            check(False, "request failed", r)
            break
        body = r.json()
        check(body.get("displayName") == "Service Bot", "the site's user, through the gateway")
        time.sleep(0.05)
    check(codes and all(c == 200 for c in codes), "every request succeeded (%d)" % len(codes))
    toks = token_records(env)
    times = [t["time"] for t in toks]
    # Renewed at 80% of 2 s: at about 0, 1.6, 3.2, 4.8 s (within 6.3 s): 4, never 2 at once.
    check(len(toks) in (4, 5), "one token request per renewal period (%d: %s)"
          % (len(toks), [round(x - times[0], 2) for x in times]))
    gaps = [b - a for a, b in zip(times, times[1:])]
    h.log("  %d requests, token requests at %s s" % (len(codes), [round(x - times[0], 2)
                                                            for x in times]))
    check(all(1.3 <= g <= 2.0 for g in gaps), "renewed before expiry, one at a time: %s"
          % [round(g, 2) for g in gaps])
    gw = gateway_records(env)
    check(gw and all(g["target"].startswith("/ex/jira/%s/rest/api/3/myself" % acme_id)
                     for g in gw), "every request went through the gateway")
    check(all((g["authorization"] or "").startswith("Bearer ") for g in gw), "with a Bearer token")
    check(not [r for r in env.fake.records() if r["host"] == "acme.atlassian.net"
               and r["authorization"]], "the site URL never got a credential")
    check(admin_get(aport, "/readyz").status == 200, "ready")
    m = admin_get(aport, "/metrics").body
    check(b'credproxy_credential_state{credential="sa",state="ok"} 1' in m, "state ok")
    minted = [g["authorization"][7:] for g in gw]
    no_secret_anywhere(env, aport, CLIENT_SECRET, *set(minted))


@h.test
def oauth_wrong_secret_is_503_unavailable_and_readyz_says_why(env):
    aport = start_oauth(env, secret="cs-WRONG-" + os.urandom(8).hex())
    r = get(env)
    h.proxy_error(r, 503, "credential_unavailable")
    check("no access token" in r.json().get("message", ""), "the message says why", r)
    check(not gateway_records(env), "nothing went to the gateway")
    rz = admin_get(aport, "/readyz")
    check(rz.status == 503 and b"credential sa has no access token" in rz.body
          and b"refused the client credentials" in rz.body, "/readyz says why", rz.body)
    m = admin_get(aport, "/metrics").body
    check(b'credproxy_credential_state{credential="sa",state="unavailable"} 1' in m,
          "state unavailable")


@h.test
def oauth_request_waits_for_the_first_token(env):
    # The token endpoint takes 1.5 s: requests arriving meanwhile wait for that one token request
    # instead of failing or starting their own.
    start_oauth(env, oauth_delay=1.5)
    t0 = time.monotonic()
    rs = [None] * 4
    ts = [threading.Thread(target=lambda i=i: rs.__setitem__(i, get(env))) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(20)
    took = time.monotonic() - t0
    check([r.status if r else None for r in rs] == [200] * 4, "every waiting request is served",
          rs)
    check(took < TOKEN_WAIT_BOUND, "within the bound (%.2fs)" % took)
    check(len(token_records(env)) == 1, "one token request for all of them (%d)"
          % len(token_records(env)))


@h.test
def oauth_endpoint_down_is_503_after_backoff(env):
    aport = start_oauth(env, oauth_unavailable=True)
    time.sleep(0.3)
    r = get(env)
    h.proxy_error(r, 503, "credential_unavailable")
    check("HTTP 503" in r.json().get("message", ""), "names the token endpoint's answer", r)
    env.fake.set(oauth_unavailable=False)
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline and get(env).status != 200:
        time.sleep(0.2)
    check(get(env).status == 200, "served once the endpoint is back (retried with backoff)")
    check(admin_get(aport, "/readyz").status == 200, "ready again")


@h.test
def oauth_revoked_token_is_replaced(env):
    aport = start_oauth(env)
    check(get(env).status == 200, "first request")
    fake_atlassian.creds_revoke_tokens(env.fake)
    r = get(env)
    check(r.status == 401, "Atlassian's 401 for the revoked token reaches the client", r)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(token_records(env)) < 2:
        time.sleep(0.05)
    check(len(token_records(env)) == 2, "a new token was minted at once")
    check(get(env).status == 200, "and serves")
    # Refused again at once (say, for a missing scope): no token request per request.
    fake_atlassian.creds_revoke_tokens(env.fake)
    for _ in range(3):
        check(get(env).status == 401, "401 passes through")
    time.sleep(0.5)
    check(len(token_records(env)) == 2, "re-minting after a 401 is bounded (TOKENS_REFUSED_REMINT_MS)")


def scoped_start(env, intercept=False):
    sites = fake_atlassian.default_sites(h.EMAIL, h.TOKEN)
    for s in sites.values():
        s["scoped"] = [[h.EMAIL, SCOPED]]
    env.start_fake(sites=sites)
    path = token_file(env, SCOPED, "scoped")
    cred = {"type": "basic", "email": h.EMAIL, "token_file": path, "via": "api_gateway",
            "rate_limit": "off"}
    extra = {}
    certs = os.path.join(env.dir, "certs")
    if intercept:
        extra["interception"] = {"ca_cert": os.path.join(certs, "ca.pem"),
                                 "ca_key": os.path.join(certs, "ca.key")}
    env.config(extra=extra, credentials={"sc": cred},
               sites=[{"domain": "acme", "credential": "sc"}])
    if intercept:
        p = subprocess.run([h.BIN, "ca", "init", "-c", env.config_path, "--dir", certs],
                           env=h.clean_env(), capture_output=True, timeout=30)
        check(p.returncode == 0, "ca init", p.stderr)
    env.start_proxy(args=["run", "-c", env.config_path])
    env.extra_texts.append("")
    return certs


def scoped_checks(env, r, mode):
    check(r.status == 200, "%s: 200 through the gateway" % mode, r)
    gw = gateway_records(env)
    acme_id = env.fake.sites["acme.atlassian.net"]["cloud_id"]
    check(gw and gw[-1]["target"] == "/ex/jira/%s/rest/api/3/myself" % acme_id,
          "%s: sent to /ex/jira/{cloudId}/rest/api/3/myself" % mode, gw[-1:] if gw else None)
    check(gw and gw[-1]["authorization"] == h.basic(h.EMAIL, SCOPED),
          "%s: with the scoped token" % mode)


@h.test
def scoped_token_forward_mode(env):
    scoped_start(env)
    r = get(env)
    scoped_checks(env, r, "forward")
    r = get(env, "http://acme.atlassian.net/wiki/rest/api/user/current")
    check(r.status == 200, "Confluence too", r)
    acme_id = env.fake.sites["acme.atlassian.net"]["cloud_id"]
    check(gateway_records(env)[-1]["target"] ==
          "/ex/confluence/%s/wiki/rest/api/user/current" % acme_id, "via /ex/confluence/")
    for text in (env.proxy.stderr(), r.body.decode()):
        check(SCOPED not in text, "the scoped token appears in no output")
    # A gateway link the agent follows itself (forward mode leaves links as they are).
    seq = env.fake.last_seq()
    r = get(env, "http://api.atlassian.com/ex/jira/%s/rest/api/3/myself" % acme_id)
    check(r.status == 200, "the agent's own gateway URL for the site's cloudId works", r)
    rec = [x for x in env.fake.records(since=seq) if x["host"] == fake_atlassian.GATEWAY_HOST]
    check(rec and rec[-1]["authorization"] == h.basic(h.EMAIL, SCOPED), "with the credential")
    seq = env.fake.last_seq()
    for url in ("http://api.atlassian.com/oauth/token/accessible-resources",
                "http://api.atlassian.com/ex/jira/00000000-0000-0000-0000-00000000ffff/x",
                "http://api.atlassian.com/ex/bitbucket/%s/x" % acme_id):
        h.proxy_error(get(env, url), 403, "host_not_allowed")
    check(not env.fake.records(since=seq), "other api.atlassian.com paths never went out")
    # Dot segments would climb to another cloudId once libcurl removes them (fuzz_gwroute):
    # neither the agent's gateway URL nor a site path may carry the credential there.
    other = "00000000-0000-0000-0000-00000000ffff"
    for url in ("http://api.atlassian.com/ex/jira/%s/../%s/rest/api/3/myself" % (acme_id, other),
                "http://api.atlassian.com/ex/jira/%s/%%2e%%2e/%s/x" % (acme_id, other),
                "http://acme.atlassian.net/../../jira/%s/rest/api/3/myself" % other,
                "http://acme.atlassian.net/rest/..%%2f..%%2f..%%2fjira/%s/x" % other):
        r = get(env, url)
        if "api.atlassian.com" in url:
            h.proxy_error(r, 403, "host_not_allowed")
        else:
            h.proxy_error(r, 400, "bad_request")
    check(not [x for x in env.fake.records(since=seq) if other in x["target"]],
          "nothing reached the other cloudId")


@h.test
def scoped_token_gateway_mode_rewrites_gateway_links(env):
    scoped_start(env)
    host = "acme.localhost:%d" % env.port
    r = h.raw_one(env.port, ("GET /rest/api/3/myself HTTP/1.1\r\nHost: %s\r\n"
                             "Connection: close\r\n\r\n" % host).encode())
    scoped_checks(env, r, "gateway")
    selfurl = r.json().get("self", "")
    check(selfurl.startswith("http://%s/rest/api/3/user?accountId=" % host),
          "the gateway's self link is rewritten to the agent's base", selfurl)
    check(b"api.atlassian.com" not in r.body, "no gateway URL left in the body", r.body)


@h.test
def scoped_token_intercept_mode(env):
    certs = scoped_start(env, intercept=True)
    res = env.curl(["-sS", "-x", "http://127.0.0.1:%d" % env.port, "--cacert",
                    os.path.join(certs, "ca.pem"), "https://acme.atlassian.net/rest/api/3/myself"])
    check(res.rc == 0 and res.status == 200, "intercept: 200", res)
    gw = gateway_records(env)
    acme_id = env.fake.sites["acme.atlassian.net"]["cloud_id"]
    check(gw and gw[-1]["target"] == "/ex/jira/%s/rest/api/3/myself" % acme_id,
          "intercept: through the gateway")
    # The agent follows a gateway link itself: CONNECT api.atlassian.com is intercepted too, and
    # only /ex/{product}/{a configured cloudId}/ gets the credential.
    seq = env.fake.last_seq()
    res = env.curl(["-sS", "-x", "http://127.0.0.1:%d" % env.port, "--cacert",
                    os.path.join(certs, "ca.pem"),
                    "https://api.atlassian.com/ex/jira/%s/rest/api/3/myself" % acme_id])
    check(res.rc == 0 and res.status == 200, "intercept: the agent's own gateway URL", res)
    rec = [x for x in env.fake.records(since=seq) if x["host"] == fake_atlassian.GATEWAY_HOST]
    check(rec and rec[-1]["authorization"] == h.basic(h.EMAIL, SCOPED), "with the credential")
    seq = env.fake.last_seq()
    res = env.curl(["-sS", "-x", "http://127.0.0.1:%d" % env.port, "--cacert",
                    os.path.join(certs, "ca.pem"),
                    "https://api.atlassian.com/oauth/token/accessible-resources"])
    check(res.status == 403, "intercept: any other api.atlassian.com path is refused", res)
    check(not env.fake.records(since=seq), "and never went out")


@h.test
def scoped_token_at_the_site_is_what_atlassian_rejects(env):
    # Without via: api_gateway the scoped token goes to the site URL, which answers 401: the
    # reason `check` suggests via: api_gateway.
    sites = fake_atlassian.default_sites(h.EMAIL, h.TOKEN)
    for s in sites.values():
        s["scoped"] = [[h.EMAIL, SCOPED]]
    env.start_fake(sites=sites)
    path = token_file(env, SCOPED, "scoped")
    env.start_proxy(credentials={"sc": {"type": "basic", "email": h.EMAIL, "token_file": path,
                                        "rate_limit": "off"}},
                    sites=[{"domain": "acme", "credential": "sc"}])
    check(get(env).status == 401, "the site refuses a scoped token")
    check(not gateway_records(env), "nothing went to the gateway")


# ---------------------------------------------------------------- check

def run_check(env, *args):
    p = subprocess.run([h.BIN, "check", "-c", env.config_path] + list(args), env=h.clean_env(),
                       capture_output=True, timeout=60)
    out, err = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
    env.extra_texts += [out, err]
    return p.returncode, out, err


def scoped_sites():
    sites = fake_atlassian.default_sites(h.EMAIL, h.TOKEN)
    for s in sites.values():
        s["scoped"] = [[h.EMAIL, SCOPED]]
    return sites


@h.test
def check_says_scoped_token_needs_via_api_gateway(env):
    env.start_fake(sites=scoped_sites())
    path = token_file(env, SCOPED, "scoped")
    env.config(credentials={"sc": {"type": "basic", "email": h.EMAIL, "token_file": path}},
               sites=[{"domain": "acme", "credential": "sc"}])
    rc, out, err = run_check(env)
    check(rc == 1, "exit 1: the config is wrong", (rc, out, err))
    check("this is a scoped token: set `via: api_gateway` on credential sc" in out,
          "says what to change", out)
    check(SCOPED not in out + err, "the token is never printed")
    # With via: api_gateway the same token checks out.
    env.config(credentials={"sc": {"type": "basic", "email": h.EMAIL, "token_file": path,
                                   "via": "api_gateway"}},
               sites=[{"domain": "acme", "credential": "sc"}])
    rc, out, err = run_check(env)
    check(rc == 0 and out.count("ok  ") == 2, "via: api_gateway: both products ok", (rc, out, err))
    acme_id = env.fake.sites["acme.atlassian.net"]["cloud_id"]
    check(any(r["target"] == "/ex/jira/%s/rest/api/3/myself" % acme_id
              for r in gateway_records(env)), "checked through the gateway")


@h.test
def check_oauth_client(env):
    env.start_fake(oauth_clients={CLIENT_ID: CLIENT_SECRET})
    path = token_file(env, CLIENT_SECRET, "client-secret")
    cred = {"type": "oauth_client", "client_id": CLIENT_ID, "client_secret_file": path,
            "token_url": "https://auth.atlassian.com/oauth/token"}
    env.config(credentials={"sa": cred}, sites=[{"domain": "acme", "credential": "sa"}])
    env.extra_texts.append(CLIENT_SECRET)
    rc, out, err = run_check(env)
    check(rc == 0 and out.count("ok  ") == 2, "oauth_client: minted and both products ok",
          (rc, out, err))
    check(len(token_records(env)) == 1, "one token request")
    check(all((r["authorization"] or "").startswith("Bearer ") for r in gateway_records(env)),
          "Bearer through the gateway")
    minted = [r["authorization"][7:] for r in gateway_records(env)]
    check(not any(m in out + err for m in minted) and CLIENT_SECRET not in out + err,
          "neither the secret nor the token is printed")
    # A wrong secret: said in the user's words.
    token_file(env, "cs-WRONG-" + os.urandom(6).hex(), "client-secret")
    rc, out, err = run_check(env)
    check(rc == 1 and "rejected the client credentials of sa" in out, "wrong secret explained",
          (rc, out, err))


@h.test
def check_names_the_missing_scope(env):
    env.start_fake(sites=scoped_sites(), gw_scope_missing=True)
    path = token_file(env, SCOPED, "scoped")
    env.config(credentials={"sc": {"type": "basic", "email": h.EMAIL, "token_file": path,
                                   "via": "api_gateway"}},
               sites=[{"domain": "acme", "credential": "sc"}])
    rc, out, err = run_check(env)
    check(rc == 1, "exit 1", (rc, out, err))
    check("lacks a scope" in out and "needs read:jira-user" in out and
          "needs read:confluence-user" in out, "names the scope each call needs", out)


@h.test
def cloud_id_is_looked_up_again_on_reload(env):
    scoped_start(env)
    check(get(env).status == 200, "first cloudId works")
    old = env.fake.sites["acme.atlassian.net"]["cloud_id"]
    new = "00000000-0000-0000-0000-0000000c0ffe"
    env.fake.sites["acme.atlassian.net"]["cloud_id"] = new
    env.fake.sites["acme.atlassian.net"]["cloud_id_aliases"] = [old]
    os.kill(env.proxy.pid, signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "cloudId %s" % new not in env.proxy.stderr():
        time.sleep(0.05)
    seq = env.fake.last_seq()
    check(get(env).status == 200, "served after the reload")
    gw = gateway_records(env, seq)
    check(gw and gw[-1]["target"].startswith("/ex/jira/%s/" % new), "with the new cloudId",
          [g["target"] for g in gw])
    check(old != new, "the id changed")


@h.test
def gateway_scope_mismatch_does_not_trip_the_breaker(env):
    # A scoped token lacking one scope: the gateway's 401 "scope does not match" is about that
    # call, not the credential; the breaker must not hold the credential back for it.
    env.start_fake(sites=scoped_sites(), gw_scope_missing=True)
    aport = h.free_port()
    path = token_file(env, SCOPED, "scoped")
    env.start_proxy(extra={"admin": "127.0.0.1:%d" % aport},
                    credentials={"sc": {"type": "basic", "email": h.EMAIL, "token_file": path,
                                        "via": "api_gateway", "rate_limit": "off"}},
                    sites=[{"domain": "acme", "credential": "sc"}])
    env.wait_listen(aport, proc=env.proxy)
    for _ in range(5):
        r = get(env)
        check(r.status == 401 and b"scope does not match" in r.body,
              "Atlassian's own 401 every time, never 503 credential_rejected", r)
    check(admin_get(aport, "/readyz").status == 200, "still ready")
    # A wrong token through the gateway is a real rejection: it trips after 3.
    token_file(env, WRONG, "scoped")
    env.fake.set(gw_scope_missing=False)
    os.kill(env.proxy.pid, signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "configuration reloaded" not in env.proxy.stderr():
        time.sleep(0.05)
    codes = [get(env).status for _ in range(4)]
    check(codes == [401, 401, 401, 503], "a wrong token at the gateway trips it", codes)


if __name__ == "__main__":
    h.main()
