#!/usr/bin/python3
"""Onboarding (issue 11): what a newcomer and an agent see from `env`, `exec`,
`ca init`, `lint`, `healthcheck`, `--help` and the first messages.

- env/exec never need, read or pass on a secret; exec removes every credential
  variable and every other client's key variable; --client puts the client's
  key into the proxy URLs (and that identity works end to end).
- exec warns when nothing listens on the proxy address.
- interception.ca_cert relative to the configuration file; a missing CA is
  named by its absolute path; ca init --force mentions SIGHUP.
- per-command --help with exit codes; `exec CMD` without `--`; the missing
  file and `listen: 8080` messages; lint --no-secrets; placeholder and
  bearer-ATATT lint warnings; healthcheck alike with and without admin.

Run: CREDPROXY_BIN=build/credproxy /usr/bin/python3 tests/integration/test_onboard.py [TEST...]
"""
import os
import subprocess

import harness as h
from harness import check

KEY_A = "bot-a-key-" + os.urandom(6).hex() + "/+:@"   # needs percent-encoding in a URL
KEY_B = "bot-b-key-" + os.urandom(6).hex()
PLAIN_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent"}


def run(env, args, extra=None, cwd=None, base=None, timeout=30):
    e = dict(PLAIN_ENV if base is None else base)
    e.update(extra or {})
    p = subprocess.run([h.BIN] + list(args), env=e, cwd=cwd or env.dir, capture_output=True,
                       timeout=timeout)
    out, err = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
    env.extra_texts += [out, err]
    return p.returncode, out, err


def child_env(out):
    """`exec -- env -0` output -> dict."""
    d = {}
    for item in out.split("\0"):
        k, sep, v = item.partition("=")
        if sep:
            d[k] = v
    return d


def clients_config(env, require=False, token_env=True):
    extra = {"clients": [{"id": "bot-a", "key_env": "BOT_A_KEY"},
                         {"id": "bot-b", "key_env": "BOT_B_KEY"}]}
    if require:
        extra["require_client_auth"] = True
    creds = {"svc": {"type": "basic", "email": h.EMAIL, "token_env": "ITEST_ATLASSIAN_TOKEN",
                     "rate_limit": "off"},
             "other": {"type": "bearer", "token_env": "OTHER_CRED_TOKEN"}} if token_env else None
    return env.config(extra=extra, credentials=creds)


SECRET_VARS = {"ITEST_ATLASSIAN_TOKEN": h.TOKEN, "OTHER_CRED_TOKEN": "other-" + h.TOKEN,
               "ATLASSIAN_API_TOKEN": "default-" + h.TOKEN, "BOT_A_KEY": KEY_A,
               "BOT_B_KEY": KEY_B}


# ---------------------------------------------------------------- item 1
@h.test
def exec_child_holds_no_secret(env):
    clients_config(env)
    rc, out, err = run(env, ["exec", "-c", env.config_path, "--", "env", "-0"], extra=SECRET_VARS)
    check(rc == 0, "exec -- env exits 0", err)
    ce = child_env(out)
    for var in ("ITEST_ATLASSIAN_TOKEN", "OTHER_CRED_TOKEN", "ATLASSIAN_API_TOKEN", "BOT_A_KEY",
                "BOT_B_KEY"):
        check(var not in ce, "exec removed %s from the child's environment" % var)
    for value in SECRET_VARS.values():
        check(value not in out, "no secret value anywhere in the child's environment")
    check(ce.get("HTTPS_PROXY") == "http://127.0.0.1:%d" % env.port,
          "the child got HTTPS_PROXY without userinfo", ce.get("HTTPS_PROXY"))
    check(ce.get("PATH") == PLAIN_ENV["PATH"], "other variables pass through")


@h.test
def env_and_exec_need_no_secret(env):
    # A token_file nobody can read and a token_env that is not set: env and exec still work.
    creds = {"svc": {"type": "basic", "email": h.EMAIL,
                     "token_file": os.path.join(env.dir, "no-such-token")},
             "other": {"type": "basic", "email": h.EMAIL, "token_env": "UNSET_TOKEN_VAR"}}
    env.config(credentials=creds)
    rc, out, err = run(env, ["env", "-c", env.config_path])
    check(rc == 0 and "export HTTPS_PROXY='http://127.0.0.1:%d'" % env.port in out,
          "env with unreadable secrets exits 0 and prints HTTPS_PROXY", (rc, out, err))
    rc, out, err = run(env, ["exec", "-c", env.config_path, "--", "sh", "-c", "echo ran"])
    check(rc == 0 and out.strip() == "ran", "exec with unreadable secrets runs CMD", (rc, err))
    # run still refuses it: only the agent side is relaxed.
    rc, out, err = run(env, ["lint", "-c", env.config_path])
    check(rc == 2 and "no-such-token" in err, "lint without --no-secrets still reads the token",
          err)


@h.test
def env_embedded_default_without_variables(env):
    # The agent's shell: no ATLASSIAN_* at all, no config. The embedded default's address.
    rc, out, err = run(env, ["env"])
    check(rc == 0 and "export HTTPS_PROXY='http://127.0.0.1:8080'" in out,
          "env with no configuration at all prints the default address", (rc, out, err))
    rc, out, err = run(env, ["env"], extra={"ATLASSIAN_SITE": "acme"})
    check(rc == 0 and "HTTP_PROXY" in out, "env with only ATLASSIAN_SITE works", (rc, err))
    rc, out, err = run(env, ["exec", "--", "sh", "-c", "echo ${ATLASSIAN_API_TOKEN:+yes}none"],
                       extra={"ATLASSIAN_SITE": "acme", "ATLASSIAN_EMAIL": h.EMAIL,
                              "ATLASSIAN_API_TOKEN": h.TOKEN})
    check(rc == 0 and out.strip() == "none",
          "exec with the embedded default does not pass ATLASSIAN_API_TOKEN on", (rc, out, err))
    # The proxy itself still needs all three.
    rc, out, err = run(env, ["lint"], extra={"ATLASSIAN_SITE": "acme"})
    check(rc == 2 and "ATLASSIAN_API_TOKEN" in err, "lint/run still need the token", err)


@h.test
def client_identity_in_proxy_urls(env):
    env.start_fake()
    clients_config(env, require=True)
    env.start_proxy(args=["run", "-c", env.config_path],
                    env={"BOT_A_KEY": KEY_A, "BOT_B_KEY": KEY_B, "OTHER_CRED_TOKEN": "x" * 40})
    rc, out, err = run(env, ["env", "-c", env.config_path, "--client", "bot-a"],
                       extra={"BOT_A_KEY": KEY_A})
    enc = KEY_A.replace("/", "%2F").replace("+", "%2B").replace(":", "%3A").replace("@", "%40")
    want = "http://bot-a:%s@127.0.0.1:%d" % (enc, env.port)
    check(rc == 0 and "export HTTP_PROXY='%s'" % want in out,
          "env --client bot-a: the key, percent-encoded, in the proxy URL",
          (rc, out.replace(KEY_A, "<KEY_A>").replace(enc, "<ENC>"), err))
    check(KEY_B not in out, "env --client bot-a prints nothing of bot-b")
    rc, out, err = run(env, ["exec", "-c", env.config_path, "--client", "bot-a", "--", "env", "-0"],
                       extra=SECRET_VARS)
    ce = child_env(out)
    check(ce.get("HTTPS_PROXY") == want and ce.get("http_proxy") == want,
          "exec --client: the proxy URLs carry bot-a's identity")
    check(ce.get("BOT_A_KEY") == KEY_A, "exec --client bot-a keeps bot-a's own key variable")
    check("BOT_B_KEY" not in ce and "ITEST_ATLASSIAN_TOKEN" not in ce,
          "exec --client bot-a removes bot-b's key and the credential")
    check("nothing listens" not in err, "no 'proxy down' warning while it runs", err)
    # End to end: curl under exec --client authenticates with Proxy-Authorization.
    s = env.fake.last_seq()
    rc, out, err = run(env, ["exec", "-c", env.config_path, "--client", "bot-a", "--", "curl",
                             "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                             "http://acme.atlassian.net/rest/api/3/myself"],
                       extra=SECRET_VARS)
    check(rc == 0 and out == "200", "curl under exec --client bot-a: 200 with client auth",
          (rc, out, err))
    recs = env.fake.records(since=s)
    check(len(recs) == 1 and recs[0]["authorization"] == h.BASIC,
          "the request reached the site with the configured credential", recs)
    check(all(h.header_of(r["headers"], "proxy-authorization") is None for r in recs),
          "the client's Proxy-Authorization did not reach Atlassian")
    # Without --client the same curl is refused: require_client_auth holds.
    rc, out, err = run(env, ["exec", "-c", env.config_path, "--", "curl", "-sS", "-o", "/dev/null",
                             "-w", "%{http_code}", "http://acme.atlassian.net/rest/api/3/myself"])
    check(out == "407", "without --client: 407", (rc, out, err))
    rc, out, err = run(env, ["env", "-c", env.config_path, "--client", "nobody"])
    check(rc == 2 and "no client 'nobody'" in err and "bot-a" in err,
          "env --client with an unknown id: 2, lists the clients", err)


# ---------------------------------------------------------------- item 2
@h.test
def exec_warns_when_proxy_is_down(env):
    env.config()
    rc, out, err = run(env, ["exec", "-c", env.config_path, "--", "sh", "-c", "exit 3"])
    check(rc == 3, "exec still runs CMD and returns its status", rc)
    check("nothing listens on 127.0.0.1:%d" % env.port in err and
          "credproxy run -c %s" % env.config_path in err,
          "the warning names the address and how to start the proxy", err)


@h.test
def ca_paths_relative_to_config(env):
    env.start_fake()
    confdir = os.path.join(env.dir, "etc")
    os.makedirs(confdir)
    elsewhere = os.path.join(env.dir, "work")
    os.makedirs(elsewhere)
    env.config(extra={"interception": {"ca_cert": "certs/ca.pem", "ca_key": "certs/ca.key"}})
    path = os.path.join(confdir, "credproxy.yaml")
    os.rename(env.config_path, path)
    env.config_path = path
    want = os.path.join(confdir, "certs", "ca.pem")
    rc, out, err = run(env, ["env", "-c", path], cwd=elsewhere)
    check(rc == 0 and ("no CA at %s" % want) in err and ("no CA at %s" % want) in out,
          "a missing CA is named by the absolute path next to the config", (out, err))
    rc, out, err = run(env, ["ca", "init", "-c", path], cwd=elsewhere)
    check(rc == 0 and os.path.exists(want) and
          not os.path.exists(os.path.join(elsewhere, "certs")),
          "ca init (no --dir) writes next to the config, not the current directory", (rc, err))
    rc, out, err = run(env, ["env", "-c", path, "--format", "json"], cwd=elsewhere)
    check(rc == 0 and '"ca_cert":"%s"' % want in out, "env finds it from another directory", out)
    rc, out, err = run(env, ["ca", "init", "-c", path, "--force"], cwd=elsewhere)
    check(rc == 0 and "SIGHUP" in out, "ca init --force says a running proxy needs SIGHUP", out)
    check("pidof" not in out + err, "never suggests pidof")
    # The proxy started from yet another directory intercepts with that CA.
    env.proxy = env.spawn([h.BIN, "run", "-c", path], env=h.clean_env(
        {"ITEST_ATLASSIAN_TOKEN": h.TOKEN}), cwd="/")
    env.wait_listen(env.port, proc=env.proxy)
    r = env.curl(["--proxy", "http://127.0.0.1:%d" % env.port, "--cacert", want,
                  "https://acme.atlassian.net/rest/api/3/myself"])
    check(r.status == 200, "interception with the config-relative CA", r)


# ---------------------------------------------------------------- item 8
COMMANDS = ["run", "check", "lint", "ca init", "env", "exec", "healthcheck"]


@h.test
def help_per_command(env):
    for cmd in COMMANDS:
        for form in (cmd.split() + ["--help"], cmd.split() + ["-h"], ["help"] + cmd.split()[:1]):
            rc, out, err = run(env, form)
            check(rc == 0 and out.startswith("usage: credproxy %s" % ("[run]" if cmd == "run"
                                                                        else cmd))
                  and "Exit status:" in out and "  2  " in out + "  2  ",
                  "`credproxy %s` prints the command's usage and exit codes" % " ".join(form),
                  (rc, out[:300], err))
    rc, out, err = run(env, ["exec", "--", "sh", "-c", "echo $0", "--help"])
    check(rc == 0 and "usage" not in out, "`exec -- CMD --help` runs CMD, not our help", out)
    rc, out, err = run(env, ["--help"])
    check(rc == 0 and "--client" in out and "--no-secrets" in out, "global help lists new options")


@h.test
def exec_without_double_dash(env):
    env.config()
    rc, out, err = run(env, ["exec", "-c", env.config_path, "python3", "-c",
                             "import os; print(os.environ['HTTPS_PROXY'])"])
    check(rc == 0 and out.strip() == "http://127.0.0.1:%d" % env.port,
          "`exec python3 -c ...` (no --) runs python3 with the variables", (rc, out, err))


@h.test
def first_messages(env):
    missing = os.path.join(env.dir, "nope.yaml")
    rc, out, err = run(env, ["run", "-c", missing])
    check(rc == 2 and err.strip() == "credproxy: cannot read %s: No such file or directory"
          % missing, "missing config: one plain sentence, no :1:1", err)
    rc, out, err2 = run(env, ["-c", missing, "lint"])
    check(rc == 2 and err2 == err, "`credproxy -c FILE lint` (option first) reads the same file",
          err2)
    path = os.path.join(env.dir, "port-only.yaml")
    with open(path, "w") as f:
        f.write("listen: 8080\ncredentials:\n  svc:\n    email: a@example.com\n"
                "    token_env: T\nsites:\n  - domain: acme\n    credential: svc\n")
    rc, out, err = run(env, ["lint", "-c", path, "--no-secrets"])
    check(rc == 2 and "the host is missing" in err and "127.0.0.1:PORT" in err,
          "listen: 8080 says the host is missing", err)


@h.test
def lint_no_secrets(env):
    creds = {"svc": {"type": "basic", "email": h.EMAIL, "token_file": "/run/secrets/absent"},
             "env": {"type": "basic", "email": h.EMAIL, "token_env": "NOT_SET_HERE"}}
    env.config(credentials=creds)
    rc, out, err = run(env, ["lint", "-c", env.config_path])
    check(rc == 2, "lint reads the secrets by default (and fails here)", err)
    rc, out, err = run(env, ["lint", "-c", env.config_path, "--no-secrets"])
    check(rc == 0 and err == "", "lint --no-secrets validates the rest: 0", (rc, out, err))
    # Structure is still checked.
    with open(env.config_path, "a") as f:
        f.write("bogus_key: 1\n")
    rc, out, err = run(env, ["lint", "-c", env.config_path, "--no-secrets"])
    check(rc == 2 and "bogus_key" in err, "lint --no-secrets still rejects unknown keys", err)


@h.test
def lint_placeholder_and_bearer_tokens(env):
    for tok in ("\u2026", "changeme", "<token>", "short"):
        rc, out, err = run(env, ["lint"], extra={"ATLASSIAN_SITE": "acme",
                                                 "ATLASSIAN_EMAIL": h.EMAIL,
                                                 "ATLASSIAN_API_TOKEN": tok})
        check(rc == 0 and "looks like a placeholder" in out and "ATLASSIAN_API_TOKEN" in out,
              "lint warns about the placeholder token %r" % tok, (rc, out, err))
    rc, out, err = run(env, ["lint"], extra={"ATLASSIAN_SITE": "acme", "ATLASSIAN_EMAIL": h.EMAIL,
                                             "ATLASSIAN_API_TOKEN": h.TOKEN})
    check(rc == 0 and out == "", "a real-looking token: no warning", out)
    creds = {"svc": {"type": "bearer", "token_env": "ITEST_ATLASSIAN_TOKEN"}}
    env.config(credentials=creds)
    rc, out, err = run(env, ["lint", "-c", env.config_path],
                       extra={"ITEST_ATLASSIAN_TOKEN": h.TOKEN})
    check(rc == 0 and "type bearer with an Atlassian Cloud API token" in out and
          "type: basic" in out, "bearer + ATATT on *.atlassian.net is warned about", out)
    env.config(credentials=creds, sites=[{"host": "jira.example.org", "credential": "svc"}])
    rc, out, err = run(env, ["lint", "-c", env.config_path],
                       extra={"ITEST_ATLASSIAN_TOKEN": h.TOKEN})
    check(rc == 0 and "bearer" not in out, "bearer on a Data Center host: no warning", out)


@h.test
def healthcheck_with_and_without_admin(env):
    env.start_fake()
    for admin in (False, True):
        extra = {"admin": "127.0.0.1:%d" % h.free_port()} if admin else None
        env.port = None
        env.start_proxy(extra=extra)
        if admin:
            env.wait_listen(int(extra["admin"].rsplit(":", 1)[1]), proc=env.proxy)
        rc, out, err = run(env, ["healthcheck", "-c", env.config_path])
        check(rc == 0 and out.strip() == "ready", "healthcheck (admin=%s): 0, prints ready" % admin,
              (rc, out, err))
        log = env.proxy.stderr()
        if admin:
            check(log.count(extra["admin"]) == 1, "the admin address is logged once at start",
                  log[-1500:])
            check("admin: admin:" not in log, "no doubled prefix")
        env.proxy.stop()
        rc, out, err = run(env, ["healthcheck", "-c", env.config_path])
        check(rc == 1 and err.startswith("credproxy: healthcheck:"),
              "healthcheck (admin=%s) with the proxy stopped: 1 and a reason" % admin, (rc, err))


# ---------------------------------------------------------------- item 9
@h.test(timeout=120)
def metrics_labels_bounded(env):
    import re
    env.start_fake()
    aport = h.free_port()
    env.start_proxy(extra={"admin": "127.0.0.1:%d" % aport})
    env.wait_listen(aport, proc=env.proxy)
    denied = ["denied-%03d.example.com" % i for i in range(100)]
    for host in denied[:50]:
        r = h.raw_one(env.port, ("GET http://%s/x HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                                 % (host, host)).encode())
        check(r.status == 403, "absolute-form to %s: 403" % host, r)
    for host in denied[50:]:
        r = h.raw_one(env.port, ("CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n"
                                 % (host, host)).encode())
        check(r.status == 403, "CONNECT to %s: 403" % host, r)
    r = env.curl_proxy("http://acme.atlassian.net/rest/api/3/myself")
    check(r.status == 200, "one mapped request", r)
    body = ""
    end = h.time.monotonic() + 5
    while h.time.monotonic() < end:
        body = h.raw_one(aport, ("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                 "Connection: close\r\n\r\n").encode()).body.decode()
        if 'code="200"' in body and body.count("(unmapped)") >= 2:
            break
        h.time.sleep(0.1)
    series = re.findall(r'^credproxy_requests_total\{site="([^"]*)",credential="([^"]*)",'
                        r'client="[^"]*",code="(\d+)"\} (\d+)$', body, re.M)
    sites = sorted(set(s[0] for s in series))
    check(sites == ["(unmapped)", "acme.atlassian.net"],
          "after 100 distinct denied hosts the site labels are (unmapped) and the mapped site",
          sites)
    check(not any(hh in body for hh in denied), "no denied host name anywhere in /metrics")
    by = {(s[0], s[1], s[2]): int(s[3]) for s in series}
    check(by.get(("(unmapped)", "", "403")) == 50, "50 absolute-form denials in one series", by)
    check(by.get(("(unmapped)", "(connect)", "403")) == 50,
          "50 CONNECT denials counted under credential=\"(connect)\"", by)
    check(by.get(("acme.atlassian.net", "svc", "200")) == 1, "the mapped request as before", by)
    check(len(series) <= 3, "three series in all", series)


# ---------------------------------------------------------------- item 5
@h.test
def check_without_dns_embedded_default(env):
    # The test namespace has no DNS: what a user without network sees, in their config's words.
    rc, out, err = run(env, ["check"], extra={"ATLASSIAN_SITE": "acme", "ATLASSIAN_EMAIL": h.EMAIL,
                                              "ATLASSIAN_API_TOKEN": h.TOKEN}, timeout=60)
    check(rc == 1, "check exits 1 without DNS", (rc, err))
    lines = [ln for ln in out.splitlines() if ln.startswith("FAIL acme.atlassian.net")]
    check(len(lines) == 2 and all("acme.atlassian.net could not be resolved" in ln and
                                  "check DNS, network or upstream.proxy" in ln for ln in lines),
          "both products: could not be resolved; check DNS, network or upstream.proxy", out)
    check("unknown site" not in out and "Verify your Atlassian domain" not in out,
          "not blamed on the site name", out)
    check("domain:" not in out, "no file words (domain:) for the embedded default", out)
    # The unknown-site advice in ATLASSIAN_SITE= words: tests/unit/test_check.c ("embedded
    # default" rows); here the embedded default cannot reach the fake (no connect_to).

# ---------------------------------------------------------------- item 4 (the log part)
@h.test
def upstream_failure_reason_in_audit(env):
    env.start_fake()
    env.start_proxy(sites=[{"host": "nonexistent.invalid", "credential": "svc"}])
    r = env.curl_proxy("http://nonexistent.invalid/rest/api/3/myself")
    h.proxy_error(r, 502, "upstream_unreachable")
    log = ""
    end = h.time.monotonic() + 5
    while h.time.monotonic() < end and "error=upstream_unreachable" not in log:
        h.time.sleep(0.05)
        log = env.proxy.stderr()
    lines = [ln for ln in log.splitlines() if "error=upstream_unreachable" in ln]
    check(len(lines) == 1 and ' reason="' in lines[0] and "resolve" in lines[0].lower(),
          "the audit line carries a short reason (DNS) next to error=upstream_unreachable",
          log[-1500:])
    if lines:
        reason = lines[0].split(' reason="', 1)[-1]
        check(len(reason) <= 170, "the reason is short", reason)


if __name__ == "__main__":
    h.main()
