#!/usr/bin/python3
"""`credproxy check` against the fake Atlassian over real TLS on loopback:
good credentials, a wrong token, an unknown site, a DNS failure, a TLS
failure, CAPTCHA, 429 with its wait, an expired `expires`, --json, and the
environment's proxy variables being ignored. Every test asserts the exit
status, the message in the setup guide's words, that the secret appears
nowhere (stdout, stderr: Env.close plus our own checks for wrong tokens), and
that /_edge/tenant_info was asked without credentials.

Run: CREDPROXY_BIN=build/credproxy /usr/bin/python3 tests/integration/test_check.py [TEST...]
"""
import json
import os
import re
import subprocess

import harness as h
from harness import check

CHECK_TIMEOUT = 60


def write_config(env, sites=None, credentials=None, upstream=None, token=None, expires=None):
    """A config for check: the harness's, with an optional other token or expiry."""
    creds = credentials
    if creds is None and (token is not None or expires is not None):
        cred = {"type": "basic", "email": h.EMAIL}
        if token is not None:
            path = os.path.join(env.dir, "other-token")
            with open(path, "w") as f:
                f.write(token + "\n")
            os.chmod(path, 0o600)
            cred["token_file"] = path
        else:
            cred["token_env"] = "ITEST_ATLASSIAN_TOKEN"
        if expires is not None:
            cred["expires"] = expires
        cred["rate_limit"] = "off"
        creds = {"svc": cred}
    up = {"connect_timeout": "5s", "timeout": "20s"}
    up.update(upstream or {})
    return env.config(sites=sites, credentials=creds, upstream=up)


def run_check(env, *args, extra_env=None):
    e = h.clean_env({"ITEST_ATLASSIAN_TOKEN": h.TOKEN})
    e.update(extra_env or {})
    p = subprocess.run([h.BIN, "check", "-c", env.config_path] + list(args), env=e,
                       capture_output=True, timeout=CHECK_TIMEOUT)
    out = p.stdout.decode("utf-8", "replace")
    err = p.stderr.decode("utf-8", "replace")
    env.extra_texts += [out, err]  # Env.close checks the secret is absent from both
    h.log("  check %s -> %d\n%s%s" % (" ".join(args), p.returncode, out, err))
    return p.returncode, out, err


def lines_for(out, site, product):
    pat = re.compile(r"^(ok  |FAIL|skip) %s %s\b" % (re.escape(site), product))
    return [ln for ln in out.splitlines() if pat.match(ln)]


def tenant_info_unauthenticated(env):
    recs = env.fake.records(path="/_edge/tenant_info")
    check(recs, "check asked /_edge/tenant_info")
    for r in recs:
        check(r["authorization"] is None, "tenant_info carried no Authorization", r["host"])


@h.test
def check_good_credentials(env):
    env.start_fake()
    write_config(env, sites=[{"domain": "acme", "credential": "svc"},
                             {"host": "jira.example.org", "credential": "svc"}])
    rc, out, err = run_check(env)
    check(rc == 0, "exit 0 when every credential works", rc)
    check(lines_for(out, "acme.atlassian.net", "jira") ==
          ['ok   acme.atlassian.net jira as "Service Bot" (accountId 5b10ac8d82e05b22cc7d4e00)'],
          "the Jira ok line with displayName and accountId", out)
    check(lines_for(out, "acme.atlassian.net", "confluence") ==
          ['ok   acme.atlassian.net confluence as "Service Bot" (accountId 5b10ac8d82e05b22cc7d4e00)'],
          "the Confluence ok line", out)
    check(len(lines_for(out, "jira.example.org", "jira")) == 1 and
          lines_for(out, "jira.example.org", "jira")[0].startswith("ok   "), "host: sites too", out)
    check(len(out.splitlines()) == 4, "one line per site and product, nothing else", out)
    check("FAIL" not in out, "no FAIL line", out)
    tenant_info_unauthenticated(env)
    me = env.fake.records(host="acme.atlassian.net", path="/rest/api/3/myself")
    check(len(me) == 1 and me[0]["authorization"] == h.BASIC,
          "/myself got exactly the credential's Basic header (once)")
    wiki = env.fake.records(host="acme.atlassian.net", path="/wiki/rest/api/user/current")
    check(len(wiki) == 1 and wiki[0]["authorization"] == h.BASIC, "/wiki user/current was called")
    check(all(r["tls"] for r in env.fake.records()), "every exchange was TLS")


@h.test
def check_json_lines(env):
    env.start_fake()
    write_config(env)
    rc, out, err = run_check(env, "--json")
    check(rc == 0, "exit 0", rc)
    objs = []
    for ln in out.splitlines():
        try:
            objs.append(json.loads(ln))
        except ValueError:
            check(False, "every stdout line is one JSON object", ln)
    check(len(objs) == 2, "two objects: jira and confluence", out)
    for o in objs:
        check(set(["site", "product", "ok", "status", "cause", "message", "account"]) <= set(o),
              "the documented keys", o)
        check(o.get("site") == "acme.atlassian.net" and o.get("ok") is True and
              o.get("status") == 200 and o.get("cause") == "ok", "ok object", o)
        check(o.get("account") == {"displayName": "Service Bot",
                                   "accountId": "5b10ac8d82e05b22cc7d4e00"}, "account", o)
    check([o.get("product") for o in objs] == ["jira", "confluence"], "products in order", objs)


@h.test
def check_wrong_token(env):
    env.start_fake()
    wrong = "ATATT3xFfGF0-wrong-" + os.urandom(8).hex()
    write_config(env, token=wrong)
    rc, out, err = run_check(env)
    check(rc == 1, "exit 1 when the token is rejected", rc)
    jl = lines_for(out, "acme.atlassian.net", "jira")
    check(len(jl) == 1 and jl[0].startswith("FAIL acme.atlassian.net jira: the email/token pair "
                                            "was rejected (401"), "the 401 FAIL line", out)
    for words in ("does not say which half is wrong", h.EMAIL,
                  "matches your Atlassian account email exactly", "no extra spaces before or after",
                  "hasn't expired or been revoked",
                  "https://id.atlassian.com/manage-profile/security/api-tokens",
                  'not "Create API token with scopes"'):
        check(words in out, "message says: %s" % words, out)
    check(len(lines_for(out, "acme.atlassian.net", "confluence")) == 1, "a Confluence line too", out)
    rc, jout, _ = run_check(env, "--json")
    objs = [json.loads(ln) for ln in jout.splitlines()]
    check(rc == 1 and objs and all(o["ok"] is False and o["cause"] == "credentials_rejected" and
                                   o["status"] == 401 and o["account"] is None for o in objs),
          "--json: ok false, cause credentials_rejected, status 401", jout)
    for text in (out, err, jout):
        check(wrong not in text, "the wrong token is not printed either")
        check(h.basic(h.EMAIL, wrong)[6:] not in text, "nor its base64 form")


@h.test
def check_wrong_token_legacy_401(env):
    env.start_fake(legacy_401=True)
    write_config(env, token="ATATT3xFfGF0-wrong-" + os.urandom(8).hex())
    rc, out, err = run_check(env)
    check(rc == 1, "exit 1", rc)
    ln = lines_for(out, "acme.atlassian.net", "jira")
    check(len(ln) == 1 and "email/token pair was rejected (401 Unauthorized)" in ln[0]
          and "Seraph" not in ln[0], "the legacy text/plain 401 is the same rejection", out)


@h.test
def check_unknown_site(env):
    env.start_fake()
    write_config(env, sites=[{"domain": "unknown", "credential": "svc"}])
    rc, out, err = run_check(env)
    check(rc == 1, "exit 1 for an unknown site", rc)
    for product in ("jira", "confluence"):
        ln = lines_for(out, "unknown.atlassian.net", product)
        check(len(ln) == 1 and ln[0].startswith("FAIL unknown.atlassian.net %s: unknown site" % product)
              and '404 "Site temporarily unavailable"' in ln[0]
              and "Verify your Atlassian domain is correct" in ln[0], "unknown-site line", out)
    tenant_info_unauthenticated(env)
    check(not [r for r in env.fake.records() if r["authorization"]],
          "no credential sent to a site that does not exist")


@h.test
def check_dns_failure(env):
    env.start_fake()
    write_config(env, sites=[{"host": "nonexistent.invalid", "credential": "svc"}])
    rc, out, err = run_check(env)
    check(rc == 1, "exit 1 on a DNS failure", rc)
    ln = lines_for(out, "nonexistent.invalid", "jira")
    check(len(ln) == 1 and "nonexistent.invalid could not be resolved (" in ln[0]
          and "check DNS, network or upstream.proxy" in ln[0],
          "DNS failure named, with curl's text and what to check", out)
    check("unknown site" not in out, "a DNS failure is not called an unknown site", out)
    check("rejected" not in out, "not blamed on the credential", out)


@h.test
def check_tls_failure(env):
    env.start_fake()
    write_config(env, upstream={"ca_file": env.tls["other_ca"]})
    rc, out, err = run_check(env)
    check(rc == 1, "exit 1 when the upstream certificate does not verify", rc)
    ln = lines_for(out, "acme.atlassian.net", "jira")
    check(len(ln) == 1 and "TLS failure talking to acme.atlassian.net" in ln[0]
          and "upstream.ca_file" in ln[0], "TLS failure named", out)
    check(not [r for r in env.fake.records() if r["authorization"]],
          "no credential sent over an unverified connection")


@h.test
def check_captcha(env):
    env.start_fake(captcha=True)
    write_config(env)
    rc, out, err = run_check(env)
    check(rc == 1, "exit 1 when a CAPTCHA is required", rc)
    ln = lines_for(out, "acme.atlassian.net", "jira")
    check(len(ln) == 1 and "CAPTCHA required" in ln[0] and "AUTHENTICATION_DENIED" in ln[0]
          and "Log in once in a browser" in ln[0], "CAPTCHA line", out)
    check("email/token pair" not in out, "CAPTCHA is not reported as a bad pair", out)


@h.test
def check_rate_limited(env):
    env.start_fake(rate_limit_all=True, retry_after=7)
    write_config(env)
    rc, out, err = run_check(env)
    check(rc == 1, "exit 1 when the check could not run (429)", rc)
    ln = lines_for(out, "acme.atlassian.net", "jira")
    check(len(ln) == 1 and "rate limited by Atlassian (429); wait 7 seconds (Retry-After)" in ln[0]
          and "not a credential failure" in ln[0], "429 line with the wait", out)
    rc, jout, _ = run_check(env, "--json")
    objs = [json.loads(x) for x in jout.splitlines()]
    check(objs and all(o["cause"] == "rate_limited" and o["status"] == 429 for o in objs),
          "--json cause rate_limited", jout)


@h.test
def check_expired(env):
    env.start_fake()
    write_config(env, expires="2026-01-01")
    rc, out, err = run_check(env)
    check(rc == 1, "exit 1 when `expires` has passed", rc)
    ln = lines_for(out, "acme.atlassian.net", "jira")
    check(len(ln) == 1 and ln[0].startswith("FAIL ") and
          "expired on 2026-01-01 per the config; create a new token" in ln[0], "expired line", out)
    # Expired and also rejected by Atlassian: still the expiry is the cause given.
    write_config(env, expires="2026-01-01", token="ATATT3xFfGF0-old-" + os.urandom(6).hex())
    rc, out, err = run_check(env, "--json")
    objs = [json.loads(x) for x in out.splitlines()]
    check(rc == 1 and objs and all(o["cause"] == "token_expired" for o in objs),
          "--json cause token_expired", out)


@h.test
def check_ignores_proxy_environment(env):
    env.start_fake()
    write_config(env)
    dead = "http://127.0.0.1:%d" % h.free_port()
    rc, out, err = run_check(env, extra_env={"HTTPS_PROXY": dead, "https_proxy": dead,
                                             "ALL_PROXY": dead, "all_proxy": dead})
    check(rc == 0, "the environment's proxy variables are not used (only upstream.proxy)", out)


@h.test
def check_missing_config(env):
    p = subprocess.run([h.BIN, "check", "-c", os.path.join(env.dir, "nope.yaml")],
                       env=h.clean_env(), capture_output=True, timeout=CHECK_TIMEOUT)
    check(p.returncode == 2, "exit 2 on a configuration error", p.returncode)


if __name__ == "__main__":
    h.main()
