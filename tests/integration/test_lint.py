#!/usr/bin/python3
"""`credproxy lint`: a clean configuration prints nothing and exits 0; each
warning (domain normalized, inline token, token file readable by others, token
expiring within 14 days or expired, unknown_hosts: tunnel, a non-loopback
listener, allow_unauthenticated_remote) exits 0 with FILE:LINE:COL and the
warning; each error (unknown key, bad duration, token with white space, unset
variable, undefined credential, non-loopback without clients, unreadable token
file) exits 2 with FILE:LINE:COL: and a message naming the fix. The embedded
default (ATLASSIAN_*), CREDPROXY_CONFIG and the shipped conf/*.yaml examples
are linted too. The token never appears in stdout or stderr.

Run: CREDPROXY_BIN=build/credproxy /usr/bin/python3 tests/integration/test_lint.py [TEST...]
"""
import datetime
import os
import re
import subprocess

import harness as h
from harness import check

TOKEN_ENV = "ITEST_LINT_TOKEN"


# ---------------------------------------------------------------------------
# helpers
def write(env, name, text, mode=0o600):
    path = os.path.join(env.dir, name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def token_file(env, content=None, mode=0o600, name="token"):
    return write(env, name, h.TOKEN + "\n" if content is None else content, mode)


def lint(env, path=None, extra_env=None, cwd=None, base_env=None):
    """Runs `credproxy lint [-c path]`; returns (rc, stdout, stderr). Outputs are leak-checked."""
    e = h.clean_env(base_env if base_env is not None else {TOKEN_ENV: h.TOKEN})
    e.update(extra_env or {})
    args = [h.BIN, "lint"] + (["-c", path] if path else [])
    p = subprocess.run(args, env=e, capture_output=True, timeout=20, cwd=cwd or env.dir)
    out, err = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
    env.extra_texts += [out, err]
    for s in (h.TOKEN, h.B64):
        check(s not in out and s not in err, "the token is not printed by lint")
    return p.returncode, out, err


def positions(text, needle):
    """1-based (line, col) of the first occurrence of needle in text."""
    i = text.index(needle)
    line = text.count("\n", 0, i) + 1
    col = i - (text.rfind("\n", 0, i) + 1) + 1
    return line, col


def marks(text, *needles):
    return {positions(text, n) for n in needles}


def find_mark(out, path, kind):
    """All (line, col, message) reported as `path:LINE:COL: [warning: ]message`."""
    pre = r"warning: " if kind == "warning" else r"(?!warning: )"
    return [(int(m.group(1)), int(m.group(2)), m.group(3)) for m in
            re.finditer(r"^%s:(\d+):(\d+): %s(.*)$" % (re.escape(path), pre), out, re.M)]


def expect_warning(env, text, at, words, extra_env=None, only=True, name="cfg.yaml", mode=0o600):
    """Lint text: exit 0, nothing on stderr, one warning at one of the marks `at` with words."""
    path = write(env, name, text, mode)
    rc, out, err = lint(env, path, extra_env)
    check(rc == 0, "warnings still exit 0", (rc, out, err))
    check(err == "", "nothing on stderr for a valid configuration", err)
    got = find_mark(out, path, "warning")
    hits = [g for g in got if (g[0], g[1]) in at]
    check(hits, "a warning at %s (FILE:LINE:COL)" % sorted(at), out)
    if hits:
        msg = hits[0][2]
        for w in words:
            check(w in msg, "the warning says %r" % w, msg)
    if only:
        check(len(out.strip().splitlines()) == 1, "exactly one warning", out)
    return out


def expect_error(env, text, at, words, extra_env=None, name="cfg.yaml"):
    """Lint text: exit 2, nothing on stdout, FILE:LINE:COL: message at one of `at` with words."""
    path = write(env, name, text)
    rc, out, err = lint(env, path, extra_env)
    check(rc == 2, "an invalid configuration exits 2", (rc, out, err))
    check(out == "", "nothing on stdout for an invalid configuration", out)
    got = find_mark(err, path, "error")
    hits = [g for g in got if (g[0], g[1]) in at]
    check(hits, "the error at %s (FILE:LINE:COL: message)" % sorted(at), err)
    if hits:
        msg = hits[0][2]
        for w in words:
            check(w in msg, "the error says %r" % w, msg)
    return err


def base(tok_line, listen="127.0.0.1:18080", site="acme", cred_extra="", tail=""):
    return ("listen: %s\n"
            "credentials:\n"
            "  svc:\n"
            "    email: svc-bot@example.com\n"
            "    %s\n"
            "%s"
            "    rate_limit: 100/min\n"
            "sites:\n"
            "  - domain: %s\n"
            "    credential: svc\n"
            "%s") % (listen, tok_line, cred_extra, site, tail)


def utc_date(days):
    return (datetime.datetime.now(datetime.timezone.utc).date()
            + datetime.timedelta(days=days)).isoformat()


# ---------------------------------------------------------------------------
# clean
@h.test
def lint_clean_is_silent(env):
    tf = token_file(env)
    cases = {
        "token_env": base("token_env: %s" % TOKEN_ENV),
        "token_file 0600": base("token_file: %s" % tf),
        "expires in 60 days": base("token_file: %s" % tf,
                                   cred_extra="    expires: %s\n" % utc_date(60)),
        "full": base("token_env: %s" % TOKEN_ENV, listen='["127.0.0.1:18080", "[::1]:18081"]',
                     tail="unknown_hosts: deny\nrate_limit:\n  when_exhausted: reject\n"
                          "  max_wait: 500ms\nshutdown_timeout: 5m\nupstream:\n"
                          "  connect_timeout: 10s\n  timeout: 1h\nlog:\n  format: json\n"
                          "  level: warn\n  audit: false\n"),
    }
    for what, text in cases.items():
        path = write(env, "clean.yaml", text)
        rc, out, err = lint(env, path)
        check(rc == 0, "clean (%s): exit 0" % what, (rc, out, err))
        check(out == "" and err == "", "clean (%s): nothing printed" % what, (out, err))


# ---------------------------------------------------------------------------
# warnings
@h.test
def lint_warn_domain_normalized(env):
    for given in ("https://acme.atlassian.net/", "acme.atlassian.net", " acme "):
        text = base("token_env: %s" % TOKEN_ENV, site='"%s"' % given)
        at = marks(text, '"%s"' % given, "domain:")
        expect_warning(env, text, at, ["'%s'" % given, "'acme'", "normalized"])


@h.test
def lint_warn_inline_token(env):
    text = base('token: "%s"' % h.TOKEN)
    at = marks(text, "token:", '"%s"' % h.TOKEN)
    expect_warning(env, text, at, ["token_env", "token_file", "configuration file"])


@h.test
def lint_warn_token_file_mode(env):
    for mode in (0o644, 0o640, 0o604):
        tf = token_file(env, mode=mode)
        text = base("token_file: %s" % tf)
        at = marks(text, "token_file:", tf)
        expect_warning(env, text, at, ["chmod 600 %s" % tf, "%04o" % mode, "readable"])


@h.test
def lint_warn_expiry(env):
    soon = utc_date(5)
    text = base("token_env: %s" % TOKEN_ENV, cred_extra="    expires: %s\n" % soon)
    at = marks(text, "expires:", soon)
    expect_warning(env, text, at, [soon, "expires", "days left"])
    last = utc_date(13)
    text = base("token_env: %s" % TOKEN_ENV, cred_extra="    expires: %s\n" % last)
    expect_warning(env, text, marks(text, "expires:", last), [last])
    far = utc_date(30)
    path = write(env, "far.yaml", base("token_env: %s" % TOKEN_ENV,
                                        cred_extra="    expires: %s\n" % far))
    rc, out, err = lint(env, path)
    check(rc == 0 and out == "" and err == "", "expiry 30 days out: silent", (rc, out, err))
    past = "2020-01-01"
    text = base("token_env: %s" % TOKEN_ENV, cred_extra="    expires: %s\n" % past)
    expect_warning(env, text, marks(text, "expires:", past), [past, "expired"])


@h.test
def lint_warn_tunnel(env):
    text = base("token_env: %s" % TOKEN_ENV, tail="unknown_hosts: tunnel\n")
    at = marks(text, "unknown_hosts:", "tunnel\n")
    expect_warning(env, text, at, ["tunnel", "no credential"])


@h.test
def lint_warn_remote_listener(env):
    tail = "clients:\n  - id: triage-bot\n    key_env: ITEST_CLIENT_KEY\n"
    text = base("token_env: %s" % TOKEN_ENV, listen='"0.0.0.0:18080"', tail=tail)
    at = marks(text, '"0.0.0.0:18080"', "listen:")
    expect_warning(env, text, at, ["0.0.0.0:18080", "not loopback"],
                   extra_env={"ITEST_CLIENT_KEY": "client-key-" + os.urandom(6).hex()})
    # allow_unauthenticated_remote with a remote listener and no clients: valid, warned.
    text = base("token_env: %s" % TOKEN_ENV, listen='["127.0.0.1:18080", "0.0.0.0:18081"]',
                tail="allow_unauthenticated_remote: true\n")
    at = marks(text, '"0.0.0.0:18081"', "listen:")
    expect_warning(env, text, at, ["0.0.0.0:18081", "allow_unauthenticated_remote", "anyone"])
    # ... and with only loopback listeners it has no effect: warned as well.
    text = base("token_env: %s" % TOKEN_ENV, tail="allow_unauthenticated_remote: true\n")
    at = marks(text, "allow_unauthenticated_remote:", "true\n")
    expect_warning(env, text, at, ["allow_unauthenticated_remote", "no effect"])


@h.test
def lint_several_warnings(env):
    tf = token_file(env, mode=0o644)
    text = base("token_file: %s" % tf, site='"https://acme.atlassian.net/"',
                cred_extra="    expires: 2020-01-01\n", tail="unknown_hosts: tunnel\n")
    path = write(env, "many.yaml", text)
    rc, out, err = lint(env, path)
    check(rc == 0 and err == "", "several warnings: exit 0, stderr empty", (rc, out, err))
    got = find_mark(out, path, "warning")
    check(len(got) == 4 and len(out.strip().splitlines()) == 4,
          "one line per warning, each FILE:LINE:COL: warning:", out)


# ---------------------------------------------------------------------------
# errors
@h.test
def lint_error_unknown_key(env):
    text = base("token_env: %s" % TOKEN_ENV).replace("    rate_limit:", "    rate_limt:")
    expect_error(env, text, marks(text, "rate_limt"), ["rate_limt", "allowed keys", "rate_limit"])
    text = base("token_env: %s" % TOKEN_ENV, tail="listn: 1\n")
    expect_error(env, text, marks(text, "listn"), ["listn", "allowed keys", "listen"])


@h.test
def lint_error_bad_duration(env):
    for bad in ("10 seconds", "10", "-5s", "1d"):
        text = base("token_env: %s" % TOKEN_ENV, tail="shutdown_timeout: %s\n" % bad)
        at = marks(text, "shutdown_timeout: %s" % bad) | {(positions(text, "shutdown_timeout")[0],
                                                           len("shutdown_timeout: ") + 1)}
        expect_error(env, text, at, ["shutdown_timeout", "10s", bad])


@h.test
def lint_error_token_whitespace(env):
    # token_file with a trailing space (the final newline alone is fine)
    tf = token_file(env, content=h.TOKEN + " \n")
    text = base("token_file: %s" % tf)
    expect_error(env, text, marks(text, tf, "token_file:"), ["white space", "remove"])
    # leading space in the file
    tf = token_file(env, content=" " + h.TOKEN + "\n", name="token2")
    text = base("token_file: %s" % tf)
    expect_error(env, text, marks(text, tf, "token_file:"), ["white space"])
    # token_env with a trailing space
    text = base("token_env: %s" % TOKEN_ENV)
    expect_error(env, text, marks(text, TOKEN_ENV, "token_env:"), ["white space", TOKEN_ENV],
                 extra_env={TOKEN_ENV: h.TOKEN + " "})
    # inline token with a trailing space
    text = base('token: "%s "' % h.TOKEN)
    expect_error(env, text, marks(text, '"%s ' % h.TOKEN, "token:"), ["white space"])


@h.test
def lint_error_missing_env(env):
    text = base("token_env: ITEST_LINT_UNSET_VARIABLE")
    expect_error(env, text, marks(text, "ITEST_LINT_UNSET_VARIABLE", "token_env:"),
                 ["ITEST_LINT_UNSET_VARIABLE", "not set", "export"])


@h.test
def lint_error_missing_token_file(env):
    missing = os.path.join(env.dir, "no-such-token")
    text = base("token_file: %s" % missing)
    expect_error(env, text, marks(text, missing, "token_file:"), [missing, "No such file"])


@h.test
def lint_error_undefined_credential(env):
    text = base("token_env: %s" % TOKEN_ENV).replace("credential: svc", "credential: svcx")
    expect_error(env, text, marks(text, "svcx"), ["'svcx'", "not defined", "svc"])


@h.test
def lint_error_remote_without_clients(env):
    text = base("token_env: %s" % TOKEN_ENV, listen='"0.0.0.0:18080"')
    expect_error(env, text, marks(text, '"0.0.0.0:18080"', "listen:"),
                 ["0.0.0.0:18080", "not loopback", "clients", "127.0.0.1",
                  "allow_unauthenticated_remote"])


@h.test
def lint_error_yaml_syntax(env):
    text = base("token_env: %s" % TOKEN_ENV) + "  bad: [unclosed\n"
    path = write(env, "syntax.yaml", text)
    rc, out, err = lint(env, path)
    check(rc == 2 and out == "", "a YAML syntax error exits 2", (rc, out, err))
    check(re.search(r"^%s:\d+:\d+: " % re.escape(path), err, re.M) and "YAML" in err,
          "the syntax error names FILE:LINE:COL", err)


# ---------------------------------------------------------------------------
# where the configuration comes from
def atl(site="acme", token=None):
    return {"ATLASSIAN_SITE": site, "ATLASSIAN_EMAIL": h.EMAIL,
            "ATLASSIAN_API_TOKEN": h.TOKEN if token is None else token}


@h.test
def lint_embedded_default(env):
    rc, out, err = lint(env, base_env=atl())
    check(rc == 0 and out == "" and err == "", "ATLASSIAN_* set: exit 0, silent", (rc, out, err))
    rc, out, err = lint(env, base_env=atl("acme.atlassian.net"))
    # The interface accepts both forms; a warning (on stdout) is allowed, an error is not.
    check(rc == 0 and err == "", "ATLASSIAN_SITE=acme.atlassian.net: exit 0", (rc, out, err))
    rc, out, err = lint(env, base_env=atl("https://acme.atlassian.net/"))
    check(rc == 0 and err == "", "a URL as ATLASSIAN_SITE: exit 0", (rc, out, err))
    check("ATLASSIAN_SITE" in out and "https://acme.atlassian.net/" in out and "'acme'" in out
          and "warning" in out, "the warning names the variable and both forms", out)
    rc, out, err = lint(env, base_env={})
    check(rc == 2 and out == "", "nothing configured: exit 2", (rc, out, err))
    for var in ("ATLASSIAN_SITE", "ATLASSIAN_EMAIL", "ATLASSIAN_API_TOKEN", "-c",
                "CREDPROXY_CONFIG"):
        check(var in err, "the message names %s" % var, err)
    rc, out, err = lint(env, base_env={"ATLASSIAN_API_TOKEN": h.TOKEN})
    check(rc == 2 and "ATLASSIAN_SITE" in err and "ATLASSIAN_EMAIL" in err,
          "a partial set says which variables are missing", (rc, out, err))
    rc, out, err = lint(env, base_env=atl(token=h.TOKEN + " "))
    check(rc == 2 and "white space" in err and "ATLASSIAN_API_TOKEN" in err,
          "a token with a trailing space in ATLASSIAN_API_TOKEN: exit 2 naming it", (rc, out, err))


@h.test
def lint_credproxy_config_variable(env):
    text = base("token_env: %s" % TOKEN_ENV, tail="unknown_hosts: tunnel\n")
    path = write(env, "viaenv.yaml", text)
    rc, out, err = lint(env, extra_env={"CREDPROXY_CONFIG": path})
    check(rc == 0 and find_mark(out, path, "warning"),
          "CREDPROXY_CONFIG is linted (its warning names that file)", (rc, out, err))
    # It wins over the ATLASSIAN_* default: a broken file there exits 2 even with them set.
    bad = write(env, "bad.yaml", text + "bogus_key: 1\n")
    e = atl()
    e.update({TOKEN_ENV: h.TOKEN, "CREDPROXY_CONFIG": bad})
    rc, out, err = lint(env, base_env=e)
    check(rc == 2 and find_mark(err, bad, "error") and "bogus_key" in err,
          "CREDPROXY_CONFIG is used before ATLASSIAN_*", (rc, out, err))
    # -c wins over CREDPROXY_CONFIG.
    clean = write(env, "clean.yaml", base("token_env: %s" % TOKEN_ENV))
    rc, out, err = lint(env, clean, extra_env={"CREDPROXY_CONFIG": bad})
    check(rc == 0 and out == "" and err == "", "-c wins over CREDPROXY_CONFIG", (rc, out, err))


@h.test
def lint_shipped_examples(env):
    conf = os.path.join(h.SOURCE_DIR, "conf")
    names = sorted(n for n in os.listdir(conf) if n.endswith(".yaml"))
    check(len(names) >= 2, "conf/ holds the example configurations", names)
    tf = token_file(env)
    for n in names:
        with open(os.path.join(conf, n)) as f:
            text = f.read()
        text = re.sub(r"(token_file:\s*)\S+", lambda m: m.group(1) + tf, text)
        path = write(env, n, text)
        rc, out, err = lint(env, path, extra_env={"ATLASSIAN_API_TOKEN": h.TOKEN})
        check(rc == 0, "conf/%s lints with exit 0" % n, (rc, out, err))
        check(err == "", "conf/%s: nothing on stderr" % n, err)
        if out:
            h.log("    conf/%s warns: %s" % (n, out.strip()))


if __name__ == "__main__":
    h.main()
