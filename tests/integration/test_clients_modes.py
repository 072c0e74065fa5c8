#!/usr/bin/python3
"""The README's "Point your agent at it" snippets, run as written against the
fake Atlassian in all three modes: curl (1, 2 with --cacert, `credproxy exec`,
3 with acme.localhost and the single-site address), `eval "$(credproxy env)"`
then curl, Python requests (1; 2 under `credproxy exec`) and python3-jira (3),
Node 20 (3 with fetch, 1 with node:http, 2 with a hand-made CONNECT under
`credproxy exec`; and proof that plain fetch ignores HTTPS_PROXY), and the
MCP-server pattern (an agent command under `credproxy exec` that takes its
base URL and dummy credentials from its environment).

Each snippet must appear verbatim in the README section; only the ports
(8080 -> the proxy, 8082 -> the site listener), `build/credproxy` -> the
binary under test and `python3` -> /usr/bin/python3 are substituted. Things
run from the test's own directory with CREDPROXY_CONFIG set, so
`credproxy ca init` and `certs/ca.pem` work as the README says. Every request
reaching the fake must carry exactly the configured credential and none of
the client's dummy credentials.

Run: CREDPROXY_BIN=build/credproxy /usr/bin/python3 tests/integration/test_clients_modes.py [TEST...]
"""
import base64
import json
import os
import re
import shutil
import subprocess

import harness as h
from harness import check

CLIENTS = os.path.join(h.HERE, "clients")
README = os.path.join(h.SOURCE_DIR, "README.md")
SITE = "acme.atlassian.net"
DUMMY_USER = "agent@example.com"
DUMMY_TOKEN = "not-a-secret-" + os.urandom(6).hex()
DUMMY_B64 = base64.b64encode(("%s:%s" % (DUMMY_USER, DUMMY_TOKEN)).encode()).decode()
PY = "/usr/bin/python3"


def readme_section():
    with open(README, encoding="utf-8") as f:
        text = f.read()
    a = text.find("## Point your agent at it")
    b = text.find("\n## ", a + 1)
    check(a >= 0 and b > a, "README has the section \"Point your agent at it\"")
    return text[a:b]


def code_blocks(section, lang):
    return re.findall(r"```%s\n(.*?)```" % re.escape(lang), section, re.S)


class Setup:
    """Fake + one site (acme, with its own listener) + `credproxy ca init` + the proxy, all
    run from env.dir with CREDPROXY_CONFIG, the way a newcomer follows the README."""

    def __init__(self, env):
        self.env = env
        env.start_fake()
        self.site_port = h.free_port()
        env.config(sites=[{"domain": "acme", "credential": "svc",
                           "listen": "127.0.0.1:%d" % self.site_port}])
        self.cfg = env.config_path
        self.section = readme_section()
        p = self.sh("build/credproxy ca init")
        check(p.returncode == 0 and os.path.exists(os.path.join(env.dir, "certs", "ca.pem")),
              "`credproxy ca init` (no flags) made certs/ca.pem in the current directory",
              p.stderr)
        env.proxy = env.spawn([h.BIN, "run"], env=self.environ(), cwd=env.dir)
        env.wait_listen(env.port, proc=env.proxy)
        env.wait_listen(self.site_port, proc=env.proxy)

    def environ(self, extra=None):
        e = h.clean_env({"CREDPROXY_CONFIG": self.cfg})
        e.update(extra or {})
        return e

    def subst(self, text):
        """README text -> runnable text for this test's ports and binary."""
        # Whole tokens only, so that text substituted once is left alone (the
        # binary's own path may end in build/credproxy, a port may contain 8080).
        text = re.sub(r"(?<![\w/.-])build/credproxy", lambda m: h.BIN, text)
        text = re.sub(r"(?<!\d)8080(?!\d)", str(self.env.port), text)
        return re.sub(r"(?<!\d)8082(?!\d)", str(self.site_port), text)

    def snippet(self, text):
        """Checks text is in the README section verbatim; returns it substituted."""
        check(text in self.section, "README shows verbatim: %s" % text.splitlines()[0])
        return self.subst(text)

    def sh(self, script, extra=None, timeout=40):
        p = subprocess.run(["sh", "-c", self.subst(script)], env=self.environ(extra),
                           cwd=self.env.dir, capture_output=True, timeout=timeout)
        self.env.extra_texts.append(p.stdout.decode("utf-8", "replace"))
        self.env.extra_texts.append(p.stderr.decode("utf-8", "replace"))
        return p

    def run(self, args, extra=None, timeout=40, cwd=None):
        p = subprocess.run(args, env=self.environ(extra), cwd=cwd or self.env.dir,
                           capture_output=True, timeout=timeout)
        self.env.extra_texts.append(p.stdout.decode("utf-8", "replace"))
        self.env.extra_texts.append(p.stderr.decode("utf-8", "replace"))
        return p

    def account(self):
        return self.env.fake.sites[SITE]["account"]["accountId"]


def last_json(out):
    try:
        return json.loads(out.decode("utf-8", "replace").strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def new_site_requests(env, since, n, what, tls=True):
    """Exactly n new requests reached the fake since seq `since`, all to acme over TLS with
    exactly the configured credential and nothing of the client's dummy credentials."""
    recs = env.fake.records(since=since)
    check(len(recs) == n, "%s: %d request(s) reached the fake" % (what, n),
          [(r["host"], r["method"], r["path"]) for r in recs])
    for r in recs:
        check(r["host"] == SITE and r["site"] == SITE and r["tls"] == tls and r["sni"] == SITE,
              "%s: went to %s over TLS (Host and SNI)" % (what, SITE), (r["host"], r["sni"]))
        check(h.headers_named(r["headers"], "authorization") == [h.BASIC],
              "%s: exactly the configured credential" % what,
              [a == h.BASIC for a in h.headers_named(r["headers"], "authorization")])
        blob = json.dumps(r["headers"]) + r["target"]
        check(DUMMY_TOKEN not in blob and DUMMY_B64 not in blob,
              "%s: the client's dummy credential did not reach the fake" % what)
    return recs


def no_dummy_anywhere(env):
    for r in env.fake.records():
        blob = json.dumps(r["headers"]) + r["target"]
        check(DUMMY_TOKEN not in blob and DUMMY_B64 not in blob,
              "no dummy credential in %s %s" % (r["method"], r["path"]))
        if r["site"]:
            check(r["authorization"] == h.BASIC, "configured credential on %s" % r["path"])


# (README line, where the answer's links point: "https://SITE" in modes 1-2, the gateway in 3)
CURL_LINES = [
    ("curl -x http://127.0.0.1:8080 http://acme.atlassian.net/rest/api/3/myself",
     "https://acme.atlassian.net/"),
    ("curl --proxy http://127.0.0.1:8080 --cacert certs/ca.pem "
     "https://acme.atlassian.net/rest/api/3/myself", "https://acme.atlassian.net/"),
    ("build/credproxy exec -- curl https://acme.atlassian.net/rest/api/3/myself",
     "https://acme.atlassian.net/"),
    ("curl http://acme.localhost:8080/rest/api/3/myself", "http://acme.localhost:8080/"),
    ("curl http://127.0.0.1:8080/wiki/rest/api/user/current", "http://127.0.0.1:8080/wiki/"),
]


@h.test
def curl_snippets(env):
    st = Setup(env)
    for line, links in CURL_LINES:
        cmd = st.snippet(line)
        for dummy in (False, True):
            c = cmd + (" -u %s:%s" % (DUMMY_USER, DUMMY_TOKEN) if dummy else "")
            what = "%s%s" % (line, " (with dummy -u)" if dummy else "")
            s = env.fake.last_seq()
            p = st.sh(c + " --max-time 20")
            body = last_json(p.stdout) or {}
            check(p.returncode == 0 and body.get("accountId") == st.account(),
                  "%s -> the fake's account" % what,
                  (p.returncode, p.stdout[:300], p.stderr[-300:]))
            link = body.get("self") or (body.get("_links") or {}).get("self", "")
            check(link.startswith(st.subst(links)), "%s: links point at %s" % (what, links), link)
            new_site_requests(env, s, 1, what)
    # Without --cacert the intercepting leaf is not trusted: the CA really is what makes mode 2 go.
    p = st.sh("curl -sS --max-time 20 --proxy http://127.0.0.1:8080 "
              "https://acme.atlassian.net/rest/api/3/myself")
    check(p.returncode == 60, "mode 2 without the local CA: curl refuses the certificate (60)",
          p.returncode)
    env.stop_proxy()


@h.test
def env_eval_then_curl(env):
    st = Setup(env)
    line = st.snippet('eval "$(build/credproxy env)"')
    for prefix in (line, 'eval "$(build/credproxy env --format sh)"'):
        s = env.fake.last_seq()
        p = st.sh(prefix + " && curl -sS --max-time 20 -u %s:%s "
                  "https://acme.atlassian.net/rest/api/3/myself" % (DUMMY_USER, DUMMY_TOKEN))
        body = last_json(p.stdout) or {}
        check(p.returncode == 0 and body.get("accountId") == st.account(),
              "sh: %s, then plain curl https://... -> myself" % prefix, (p.stdout[:300], p.stderr))
        new_site_requests(env, s, 1, prefix)
    env.stop_proxy()


def py_parts(st):
    blocks = code_blocks(st.section, "python")
    check(len(blocks) == 1, "README has one Python block", len(blocks))
    text = blocks[0] if blocks else ""
    parts = re.split(r"\n(?=# [123]\. )", text)
    check(len(parts) == 4, "Python block: imports + modes 1, 2, 3", parts)
    return parts + [""] * (4 - len(parts))


def as_program(header, part):
    """A README part as a program that prints its last expression as JSON."""
    lines = [ln for ln in part.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        return header
    body = lines[:-1] + ["import json", "print(json.dumps(%s))" % lines[-1]]
    return header + "\n" + "\n".join(body) + "\n"


@h.test
def python_snippets(env):
    st = Setup(env)
    imports, p1, p2, p3 = py_parts(st)
    check(imports.strip() == "import requests", "the block starts with import requests", imports)
    # Mode 1: plain python3, a Session with the http proxy.
    prog = os.path.join(env.dir, "mode1.py")
    with open(prog, "w") as f:
        f.write(st.subst(as_program(imports, p1)))
    s = env.fake.last_seq()
    p = st.run([PY, prog])
    check(p.returncode == 0 and (last_json(p.stdout) or {}).get("accountId") == st.account(),
          "Python mode 1 snippet -> myself", (p.stdout[-300:], p.stderr[-600:]))
    new_site_requests(env, s, 1, "python mode 1")
    # Mode 1 with a dummy credential on the session.
    with open(prog, "w") as f:
        f.write(st.subst(as_program(imports, p1.replace(
            "s.proxies", "s.auth = (%r, %r)\ns.proxies" % (DUMMY_USER, DUMMY_TOKEN)))))
    s = env.fake.last_seq()
    p = st.run([PY, prog])
    check(p.returncode == 0, "Python mode 1 with a dummy s.auth", p.stderr[-600:])
    new_site_requests(env, s, 1, "python mode 1 + dummy auth")

    # Mode 2: agent.py as the README says, under `credproxy exec -- python3 agent.py`.
    st.snippet("`credproxy exec -- python3 agent.py`")
    with open(os.path.join(env.dir, "agent.py"), "w") as f:
        f.write(st.subst(as_program(imports, p2)))
    s = env.fake.last_seq()
    p = st.run([h.BIN, "exec", "--", PY, "agent.py"])
    check(p.returncode == 0 and (last_json(p.stdout) or {}).get("accountId") == st.account(),
          "credproxy exec -- python3 agent.py (plain requests.get https://...) -> myself",
          (p.stdout[-300:], p.stderr[-600:]))
    new_site_requests(env, s, 1, "python mode 2")
    # It is exec's REQUESTS_CA_BUNDLE that makes it work: without the CA variables the
    # minted leaf is refused, and nothing reaches the fake.
    s = env.fake.last_seq()
    p = st.run([h.BIN, "exec", "--", "env", "-u", "REQUESTS_CA_BUNDLE", "-u", "SSL_CERT_FILE",
                "-u", "CURL_CA_BUNDLE", PY, "agent.py"])
    check(p.returncode != 0 and b"SSLError" in p.stderr,
          "under exec minus the CA variables, requests refuses the leaf", p.stderr[-400:])
    check(env.fake.records(since=s) == [], "nothing reached the fake without trust")
    # The stand-in agent with dummy credentials, following the self link.
    s = env.fake.last_seq()
    p = st.run([h.BIN, "exec", "--", PY, os.path.join(CLIENTS, "agent.py")],
               extra={"JIRA_USERNAME": DUMMY_USER, "JIRA_API_TOKEN": DUMMY_TOKEN})
    out = last_json(p.stdout) or {}
    check(p.returncode == 0 and out.get("account") == st.account() and out.get("self_status") == 200
          and str(out.get("self")).startswith("https://acme.atlassian.net/"),
          "clients/agent.py under exec: myself, issue and its https self link", out)
    new_site_requests(env, s, 3, "clients/agent.py mode 2")

    # Mode 3: python3-jira on the site listener.
    prog = os.path.join(env.dir, "mode3.py")
    with open(prog, "w") as f:
        f.write(st.subst(as_program("", p3)))
    s = env.fake.last_seq()
    p = st.run([PY, prog])
    check(p.returncode == 0 and (last_json(p.stdout) or {}).get("accountId") == st.account(),
          "JIRA(server=\"http://127.0.0.1:8082\").myself() -> myself",
          (p.stdout[-300:], p.stderr[-600:]))
    new_site_requests(env, s, 2, "python3-jira mode 3 (serverInfo, myself)")
    env.stop_proxy()


def in_private_netns():
    """True when only loopback exists (tests/isolated.sh): nothing can reach the internet."""
    try:
        with open("/proc/self/net/dev") as f:
            names = [ln.split(":")[0].strip() for ln in f.readlines()[2:]]
    except OSError:
        return False
    return names == ["lo"]


@h.test
def node_snippets(env):
    if shutil.which("node") is None:
        raise h.Skip("node is not installed")
    st = Setup(env)
    blocks = code_blocks(st.section, "js")
    check(len(blocks) == 2, "README has two Node blocks (gateway, mode 1)", len(blocks))

    def node(path, args=(), extra=None, exec_=False):
        cmd = ([h.BIN, "exec", "--"] if exec_ else []) + ["node", path] + list(args)
        p = st.run(cmd, extra=extra)
        return p, last_json(p.stdout)

    # The README's two blocks, as ES modules.
    for i, (block, what) in enumerate(zip(blocks, ("gateway fetch", "mode 1 node:http"))):
        path = os.path.join(env.dir, "readme%d.mjs" % i)
        with open(path, "w") as f:
            f.write(st.subst(block))
        s = env.fake.last_seq()
        p, out = node(path)
        # console.log of an object is not JSON; look for the account id in the text.
        check(p.returncode == 0 and st.account().encode() in p.stdout,
              "README Node %s snippet -> myself" % what, (p.stdout[-300:], p.stderr[-600:]))
        new_site_requests(env, s, 1, "README Node " + what)
    # The gateway snippet on the main listener too (one site configured).
    if blocks:
        path = os.path.join(env.dir, "readme-main.mjs")
        with open(path, "w") as f:
            f.write(st.subst(blocks[0]).replace(str(st.site_port), str(env.port)))
        s = env.fake.last_seq()
        p, _ = node(path)
        check(p.returncode == 0 and st.account().encode() in p.stdout,
              "gateway snippet on the main listener (one site)", p.stderr[-600:])
        new_site_requests(env, s, 1, "README Node gateway, main listener")

    agent = os.path.join(CLIENTS, "agent.mjs")
    dummy = {"AGENT_AUTH": "%s:%s" % (DUMMY_USER, DUMMY_TOKEN)}
    st.snippet("`credproxy exec -- node agent.mjs`")
    # Mode 2: CONNECT by hand under exec; NODE_EXTRA_CA_CERTS makes the leaf trusted.
    s = env.fake.last_seq()
    p, out = node(agent, ["connect", "https://acme.atlassian.net/rest/api/3/myself"], dummy, True)
    out = out or {}
    check(out.get("status") == 200 and st.account() in out.get("body", ""),
          "credproxy exec -- node agent.mjs connect https://... -> myself", (out, p.stderr[-400:]))
    new_site_requests(env, s, 1, "node connect under exec")
    # Mode 1 with HTTP_PROXY from exec.
    s = env.fake.last_seq()
    p, out = node(agent, ["forward", "http://acme.atlassian.net/rest/api/3/myself"], dummy, True)
    out = out or {}
    check(out.get("status") == 200 and st.account() in out.get("body", ""),
          "credproxy exec -- node agent.mjs forward http://... -> myself", (out, p.stderr[-400:]))
    new_site_requests(env, s, 1, "node forward under exec")
    # The README's claim: Node's fetch ignores HTTPS_PROXY even under exec. Only where nothing
    # but loopback exists, so the direct attempt cannot reach the internet.
    if in_private_netns():
        s = env.fake.last_seq()
        p, out = node(agent, ["fetch", "https://acme.atlassian.net/rest/api/3/myself"], dummy, True)
        out = out or {}
        check(out.get("status") is None and out.get("error"),
              "Node fetch(https://...) under exec does not use the proxy (fails direct)", out)
        check(env.fake.records(since=s) == [], "nothing reached the fake from plain fetch")
    else:
        h.log("  note: not in a private network namespace; skipped the plain-fetch check")
    no_dummy_anywhere(env)
    env.stop_proxy()


@h.test
def mcp_pattern(env):
    st = Setup(env)
    blocks = code_blocks(st.section, "json")
    check(len(blocks) == 1, "README has one JSON block (the MCP pattern)", len(blocks))
    try:
        cfg = json.loads(blocks[0])
    except (ValueError, IndexError) as e:
        check(False, "the README's MCP JSON parses", e)
        return
    servers = cfg.get("mcpServers", {})
    check(len(servers) == 1, "one server in the example", servers)
    srv = next(iter(servers.values()), {})
    args, senv = srv.get("args", []), srv.get("env", {})
    check(srv.get("command") == "credproxy" and args[:2] == ["exec", "--"] and len(args) == 3,
          "command: credproxy exec -- TOOL", srv)
    check(senv.get("JIRA_URL") == "https://acme.atlassian.net" and "CREDPROXY_CONFIG" in senv
          and senv.get("JIRA_USERNAME") and senv.get("JIRA_API_TOKEN"),
          "env: CREDPROXY_CONFIG, site URL and dummy credentials", senv)
    # The MCP host's working directory is its own: a configuration with an absolute CA path,
    # as the README advises, and the server started from /.
    mcp_cfg = os.path.join(env.dir, "mcp.yaml")
    with open(st.cfg) as f, open(mcp_cfg, "w") as g:
        g.write(f.read() + h.to_yaml({"interception": {
            "ca_cert": os.path.join(env.dir, "certs", "ca.pem"),
            "ca_key": os.path.join(env.dir, "certs", "ca.key")}}) + "\n")
    tool = [PY, os.path.join(CLIENTS, "agent.py")]
    for mode, url in (("mode 2", senv.get("JIRA_URL")),
                      ("mode 3", "http://127.0.0.1:%d" % st.site_port)):
        child = dict(senv, CREDPROXY_CONFIG=mcp_cfg, JIRA_URL=url, JIRA_USERNAME=DUMMY_USER,
                     JIRA_API_TOKEN=DUMMY_TOKEN)
        s = env.fake.last_seq()
        p = st.run([h.BIN] + args[:2] + tool, extra=child, cwd="/")
        out = last_json(p.stdout) or {}
        check(p.returncode == 0 and out.get("account") == st.account()
              and out.get("issue_status") == 200 and out.get("self_status") == 200,
              "%s: credproxy exec -- agent (JIRA_URL=%s) -> myself, issue, self" % (mode, url),
              (out, p.stderr[-600:]))
        check(str(out.get("self", "")).startswith(url + "/rest/api/3/issue/"),
              "%s: the issue's self link is on %s" % (mode, url), out.get("self"))
        new_site_requests(env, s, 3, "MCP pattern " + mode)
    env.stop_proxy()


if __name__ == "__main__":
    h.main()
