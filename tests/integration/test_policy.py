#!/usr/bin/python3
"""Least privilege (issue 9): named policies attached to clients, against the fake
Atlassian's policy world (projects OPS/SUP/SEC with issues, 10099 = SEC-1; Confluence
spaces DOCS/ENG with pages 65601 = DOCS, 65602 = ENG), in all three modes.

  triage-bot   policy triage: allow [read, comment, transition], projects [OPS, SUP]
  reporter-bot policy reporter: allow [read, write], projects [OPS]
  docs-bot     policy docs-writer: allow [read, write], spaces [DOCS]
  (anonymous)  default_policy: read-only

Every refusal is 403 policy_denied naming client, class, project/space and policy,
and produced no upstream record (only the proxy's own id lookups may appear). The
searches the fake received were narrowed. curl in forward, intercept and gateway
mode; python3-jira in gateway mode with basic_auth=(client id, key).

Run: CREDPROXY_BIN=build/credproxy /usr/bin/python3 tests/integration/test_policy.py [TEST...]
"""
import base64
import json
import os
import signal
import socket
import subprocess
import time

import harness as h
from harness import check

SITE = "acme.atlassian.net"
KEYS = {"triage-bot": "tk-" + os.urandom(6).hex(), "reporter-bot": "rk-" + os.urandom(6).hex(),
        "docs-bot": "dk-" + os.urandom(6).hex()}
KEY_ENV = {"triage-bot": "ITEST_TRIAGE_KEY", "reporter-bot": "ITEST_REPORTER_KEY",
           "docs-bot": "ITEST_DOCS_KEY"}
LOOKUP_QUERIES = ("fields=project", "expand=space")

POLICIES = {
    "triage": {"allow": ["read", "comment", "transition"], "projects": ["OPS", "SUP"],
               "spaces": ["ENG"]},
    "reporter": {"allow": ["read", "write"], "projects": ["OPS"]},
    "docs-writer": {"allow": ["read", "write"], "spaces": ["DOCS"]},
}


def extra(policies=None, admin_port=None, more=None):
    ex = {"policies": policies or POLICIES,
          "clients": [{"id": "triage-bot", "key_env": KEY_ENV["triage-bot"], "policy": "triage"},
                      {"id": "reporter-bot", "key_env": KEY_ENV["reporter-bot"],
                       "policy": "reporter"},
                      {"id": "docs-bot", "key_env": KEY_ENV["docs-bot"],
                       "policy": "docs-writer"}],
          "default_policy": "read-only"}
    if admin_port:
        ex["admin"] = "127.0.0.1:%d" % admin_port
    ex.update(more or {})
    return ex


def key_env():
    return {KEY_ENV[c]: k for c, k in KEYS.items()}


class World:
    """Fake with the policy world + the proxy; requests in one mode."""

    def __init__(self, env, mode, admin_port=None, more=None):
        self.env, self.mode = env, mode
        env.start_fake(policy_world=True)
        self.certs = os.path.join(env.dir, "certs")
        ex = extra(admin_port=admin_port, more=more)
        if mode == "intercept":
            ex["interception"] = {"ca_cert": os.path.join(self.certs, "ca.pem"),
                                  "ca_key": os.path.join(self.certs, "ca.key")}
            env.config(extra=ex)
            p = subprocess.run([h.BIN, "ca", "init", "-c", env.config_path, "--dir", self.certs],
                               env=h.clean_env(key_env()), capture_output=True, timeout=30)
            check(p.returncode == 0, "ca init", p.stderr)
        env.start_proxy(extra=ex, env=key_env())
        env.extra_texts.extend(KEYS.values())  # never printed: checked as secrets below

    def url(self, path):
        if self.mode == "forward":
            return "http://%s%s" % (SITE, path)
        if self.mode == "intercept":
            return "https://%s%s" % (SITE, path)
        return "http://127.0.0.1:%d%s" % (self.env.port, path)

    def req(self, client, method, path, body=None, extra_args=()):
        args = ["-X", method]
        if self.mode in ("forward", "intercept"):
            args += ["-x", "http://127.0.0.1:%d" % self.env.port]
            if client:
                args += ["--proxy-user", "%s:%s" % (client, KEYS[client])]
            if self.mode == "intercept":
                args += ["--cacert", os.path.join(self.certs, "ca.pem")]
        elif client:
            args += ["-u", "%s:%s" % (client, KEYS[client])]
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            path_b = os.path.join(self.env.dir, "body-%d" % time.monotonic_ns())
            with open(path_b, "wb") as f:
                f.write(data.encode() if isinstance(data, str) else data)
            args += ["-H", "Content-Type: application/json", "--data-binary", "@" + path_b]
        return self.env.curl(args + list(extra_args) + [self.url(path)])

    def denied(self, client, method, path, body=None, cls=None, scope=None, what=""):
        """The request is refused with policy_denied and nothing of it reached the fake."""
        seq = self.env.fake.last_seq()
        r = self.req(client, method, path, body)
        label = "%s %s %s as %s (%s)" % (self.mode, method, path, client or "anonymous", what)
        if h.proxy_error(r, 403, "policy_denied"):
            b = r.json()
            check(b.get("client") == (client or "anonymous") and (cls is None or b.get("class") == cls)
                  and b.get("policy"), label + ": body names client, class and policy", b)
            if scope:
                check(scope in (b.get("project"), b.get("space")),
                      label + ": body names the project or space %s" % scope, b)
        recs = self.env.fake.records(since=seq)
        own = [x for x in recs if is_lookup(x)]
        check(len(recs) == len(own), label + ": no upstream record of the refused request "
              "(only the proxy's own id lookups)", [(x["method"], x["target"]) for x in recs])
        return r


def is_lookup(rec):
    """The proxy's own id lookups (policy_lookup_path): GET issue?fields=project, project/{id},
    content/{id}?expand=space, v2 spaces/{id}."""
    return rec["method"] == "GET" and (
        rec["query"] in LOOKUP_QUERIES
        or (rec["path"].startswith("/rest/api/3/project/") and not rec["query"])
        or (rec["path"].startswith("/wiki/api/v2/spaces/") and not rec["query"]))


def keys_of(r):
    try:
        return sorted(i["key"] for i in r.json()["issues"])
    except (ValueError, KeyError, TypeError):
        return None


def scenario(env, mode):
    w = World(env, mode)
    fake = env.fake
    # searches are narrowed, never refused for scope alone
    r = w.req("triage-bot", "GET", "/rest/api/2/search?jql=status%20%3D%20%22To%20Do%22%20order%20by%20key")
    check(r.status == 200 and keys_of(r) == ["OPS-1", "OPS-2", "SUP-1"],
          mode + ": triage search sees only OPS and SUP issues", (r.status, r.body[:300]))
    check(fake.policy_queries and fake.policy_queries[-1][2] ==
          'project in (OPS, SUP) AND (status = "To Do") ORDER BY key',
          mode + ": the JQL reaching Atlassian was narrowed", fake.policy_queries[-1:])
    r = w.req("triage-bot", "POST", "/rest/api/3/search/jql", {"jql": "project = SEC", "maxResults": 5})
    check(r.status == 200 and keys_of(r) == [], mode + ": a JQL naming SEC finds nothing", r.body[:300])
    check(fake.policy_queries[-1][2] == "project in (OPS, SUP) AND (project = SEC)",
          mode + ": JSON-body JQL narrowed too", fake.policy_queries[-1:])
    # comment and transition in OPS
    r = w.req("triage-bot", "POST", "/rest/api/3/issue/OPS-1/comment", {"body": "seen"})
    check(r.status == 201, mode + ": triage comments on OPS-1", r)
    r = w.req("triage-bot", "POST", "/rest/api/3/issue/OPS-1/transitions", {"transition": {"id": "21"}})
    check(r.status == 204, mode + ": triage transitions OPS-1", r)
    r = w.req("triage-bot", "GET", "/rest/api/3/issue/10010")
    check(r.status == 200 and r.json().get("key") == "OPS-1", mode + ": OPS-1 by numeric id", r)
    # refusals
    w.denied("triage-bot", "DELETE", "/rest/api/3/issue/OPS-1", cls="delete", what="delete")
    w.denied("triage-bot", "GET", "/rest/api/3/issue/SEC-1", cls="read", scope="SEC", what="SEC-1")
    w.denied("triage-bot", "GET", "/rest/api/3/issue/10099", cls="read", scope="SEC",
             what="10099 belongs to SEC")
    w.denied("triage-bot", "POST", "/rest/api/3/issue/SEC-1/comment", {"body": "x"}, cls="comment",
             scope="SEC", what="comment in SEC")
    w.denied("triage-bot", "GET", "/rest/api/3/search?jql=%29%20OR%20%28project%20%3D%20SEC",
             cls="read", what="JQL escaping the narrowing")
    w.denied("triage-bot", "POST", "/rest/api/3/issue/bulkfetch", {"issueIdsOrKeys": ["SEC-1"]},
             cls="read", what="bulk fetch: scope undeterminable")
    w.denied("triage-bot", "PUT", "/rest/api/3/project/OPS", {"name": "x"}, cls="admin", what="admin")
    # create: scope from the body
    r = w.req("reporter-bot", "POST", "/rest/api/3/issue",
              {"fields": {"project": {"key": "OPS"}, "summary": "new", "issuetype": {"name": "Task"}}})
    check(r.status == 201 and r.json().get("key", "").startswith("OPS-"),
          mode + ": reporter creates an issue in OPS", r)
    w.denied("reporter-bot", "POST", "/rest/api/3/issue",
             {"fields": {"project": {"key": "SEC"}, "summary": "x", "issuetype": {"name": "Task"}}},
             cls="write", scope="SEC", what="create in SEC")
    w.denied("reporter-bot", "POST", "/rest/api/3/issue",
             {"fields": {"project": {"id": "10002"}, "summary": "x"}}, cls="write", scope="SEC",
             what="create in SEC by project id")
    # Confluence: the docs writer edits DOCS, not ENG
    r = w.req("docs-bot", "PUT", "/wiki/rest/api/content/65601",
              {"type": "page", "title": "Docs home v2", "version": {"number": 2}})
    check(r.status == 200 and r.json().get("version", {}).get("number") == 2,
          mode + ": docs-writer edits a page in DOCS", r)
    w.denied("docs-bot", "PUT", "/wiki/rest/api/content/65601",
             {"type": "page", "title": "moved", "space": {"key": "ENG"}, "version": {"number": 3}},
             cls="write", scope="ENG", what="an edit of a DOCS page naming space ENG")
    w.denied("docs-bot", "PUT", "/wiki/rest/api/content/65602",
             {"type": "page", "title": "x", "version": {"number": 2}}, cls="write", scope="ENG",
             what="edit a page in ENG")
    r = w.req("docs-bot", "GET", "/wiki/rest/api/search?cql=type%3Dpage")
    titles = sorted(x["title"] for x in (r.json() or {}).get("results", [])) if r.status == 200 else None
    check(titles == ["Docs home v2", "Runbook"], mode + ": CQL narrowed to DOCS", (r.status, titles))
    # anonymous: default_policy read-only
    r = w.req(None, "GET", "/rest/api/3/issue/SEC-1")
    check(r.status == 200, mode + ": anonymous may read (read-only, no scope)", r)
    w.denied(None, "POST", "/rest/api/3/issue/SEC-1/comment", {"body": "x"}, cls="comment",
             what="anonymous comment")
    w.denied(None, "DELETE", "/wiki/rest/api/content/65601", cls="delete", what="anonymous delete")
    # the audit line carries the class of every request
    err = env.proxy.stderr()
    check(" class=comment " in err + " " or "class=comment\n" in err, mode + ": audit has class=comment")
    check("error=policy_denied" in err, mode + ": audit records the refusals")
    return w


@h.test(timeout=90)
def policy_forward(env):
    scenario(env, "forward")


@h.test(timeout=90)
def policy_intercept(env):
    scenario(env, "intercept")


@h.test(timeout=90)
def policy_gateway(env):
    scenario(env, "gateway")


@h.test(timeout=60)
def policy_python_jira_gateway(env):
    from jira import JIRA, JIRAError
    w = World(env, "gateway")
    base = "http://127.0.0.1:%d" % env.port
    triage = JIRA(server=base, basic_auth=("triage-bot", KEYS["triage-bot"]), timeout=15)
    found = sorted(i.key for i in triage.search_issues("order by created", maxResults=50))
    check(found == ["OPS-1", "OPS-2", "SUP-1"], "python3-jira triage search sees OPS/SUP only", found)
    c = triage.add_comment("OPS-1", "triaged")
    check(c is not None, "python3-jira add_comment on OPS-1")
    triage.transition_issue("OPS-2", "31")
    check(env.fake.policy_world.issues["10011"]["status"] == "Done", "python3-jira transition OPS-2")
    for what, fn in (("issue SEC-1", lambda: triage.issue("SEC-1")),
                     ("issue 10099", lambda: triage.issue("10099")),
                     ("delete OPS-1", lambda: triage.issue("OPS-1").delete())):
        try:
            fn()
            check(False, "python3-jira %s refused" % what)
        except JIRAError as e:
            check(e.status_code == 403 and "policy_denied" in (e.text or "") + str(e.response.text),
                  "python3-jira %s: 403 policy_denied" % what, (e.status_code, e.text))
    reporter = JIRA(server=base, basic_auth=("reporter-bot", KEYS["reporter-bot"]), timeout=15)
    issue = reporter.issue("OPS-1")
    issue.update(summary="edited by reporter")  # PUT /rest/api/2/issue/10010: id lookup
    check(env.fake.policy_world.issues["10010"]["summary"] == "edited by reporter",
          "python3-jira issue.update() through its numeric self link")
    try:
        reporter.create_issue(fields={"project": {"key": "SEC"}, "summary": "x",
                                      "issuetype": {"name": "Task"}})
        check(False, "python3-jira create in SEC refused")
    except JIRAError as e:
        check(e.status_code == 403, "python3-jira create in SEC: 403", e.status_code)
    new = reporter.create_issue(fields={"project": {"key": "OPS"}, "summary": "ok",
                                        "issuetype": {"name": "Task"}})
    check(new.key.startswith("OPS-"), "python3-jira create in OPS", new.key)
    # anonymous: read-only
    anon = JIRA(server=base, timeout=15)
    check(anon.issue("SEC-1").key == "SEC-1", "anonymous python3-jira reads")
    try:
        anon.add_comment("OPS-1", "x")
        check(False, "anonymous comment refused")
    except JIRAError as e:
        check(e.status_code == 403, "anonymous comment: 403", e.status_code)
    # no dummy credential or client key reached Atlassian
    for rec in env.fake.records():
        auths = h.headers_named(rec["headers"], "authorization")
        check(auths == [h.BASIC], "%s %s carried exactly the configured credential"
              % (rec["method"], rec["path"]))


@h.test(timeout=60)
def policy_held_body_follows_body_timeout(env):
    """A held body obeys the one body rule: idle for body_timeout -> 408, nothing forwarded."""
    w = World(env, "forward", more={"body_timeout": "1500ms"})
    fake = env.fake
    auth = base64.b64encode(("docs-bot:%s" % KEYS["docs-bot"]).encode()).decode()
    head = ("POST http://%s/wiki/rest/api/content HTTP/1.1\r\nHost: %s\r\n"
            "Proxy-Authorization: Basic %s\r\nContent-Type: application/json\r\n"
            % (SITE, SITE, auth)).encode()
    for framing, part in ((b"Content-Length: 1000\r\n\r\n", b'{"type":"page"'),
                          (b"Transfer-Encoding: chunked\r\n\r\n", b'5\r\n{"typ\r\n')):
        seq = fake.last_seq()
        sock = socket.create_connection(("127.0.0.1", env.port), timeout=10)
        try:
            sock.sendall(head + framing + part)
            t0 = time.monotonic()
            r, _ = h.read_response(sock)
            dt = time.monotonic() - t0
            h.proxy_error(r, 408, "request_timeout")
            check(1.2 <= dt <= 4.5, "the held body timed out after about body_timeout", dt)
            check(h.connection_closed(sock, timeout=3), "the connection closed after the 408")
        finally:
            sock.close()
        check(fake.last_seq() == seq, "a stalled held body reached nothing upstream",
              fake.records(since=seq))
    # a held body that trickles in, never idle for body_timeout, is checked and forwarded
    body = json.dumps({"type": "page", "space": {"key": "DOCS"}, "title": "slow"}).encode()
    sock = socket.create_connection(("127.0.0.1", env.port), timeout=10)
    try:
        sock.sendall(head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body))
        for i in range(0, len(body), len(body) // 3 + 1):
            time.sleep(0.7)
            sock.sendall(body[i:i + len(body) // 3 + 1])
        r, _ = h.read_response(sock)
        check(r.status == 200, "a trickling held body (2.1 s in all, never 1.5 s idle) passes", r)
    finally:
        sock.close()


@h.test(timeout=60)
def policy_lookup_cache_metrics_and_limits(env):
    admin = h.free_port()
    w = World(env, "forward", admin_port=admin)
    fake = env.fake
    seq = fake.last_seq()
    for _ in range(3):
        r = w.req("triage-bot", "GET", "/rest/api/3/issue/10010")
        check(r.status == 200, "OPS-1 by id", r)
    lookups = [x for x in fake.records(since=seq) if x["query"] == "fields=project"]
    # one worker per test config? lookups are cached per worker: at most one per worker
    check(1 <= len(lookups) <= 4, "id lookups are cached (3 requests, %d lookups)" % len(lookups))
    check(all(h.headers_named(x["headers"], "authorization") == [h.BASIC] for x in lookups),
          "lookups carry the site's credential")
    # a body over the hold limit is refused with 413, nothing forwarded
    seq = fake.last_seq()
    big = b'{"type":"page","space":{"key":"DOCS"},"title":"' + b"x" * (1024 * 1024 + 10) + b'"}'
    r = w.req("docs-bot", "POST", "/wiki/rest/api/content", big)
    h.proxy_error(r, 413, "body_too_large")
    check(fake.last_seq() == seq, "the oversized body reached nothing upstream")
    r = w.req("docs-bot", "POST", "/wiki/rest/api/content",
              {"type": "page", "space": {"key": "DOCS"}, "title": "New"})
    check(r.status == 200, "a held body within the limit is forwarded", r)
    rec = fake.records(since=seq)[-1]
    check(rec["path"] == "/wiki/rest/api/content" and rec["body_len"] > 0,
          "the held body reached the fake", rec)
    # a chunked body is held and forwarded with a Content-Length; a chunked one in SEC is refused
    r = w.req("reporter-bot", "POST", "/rest/api/3/issue",
              {"fields": {"project": {"key": "OPS"}, "summary": "chunked"}},
              extra_args=["-H", "Transfer-Encoding: chunked"])
    check(r.status == 201, "chunked create in OPS forwarded", r)
    rec = [x for x in fake.records() if x["method"] == "POST" and x["path"] == "/rest/api/3/issue"][-1]
    check(h.header_of(rec["headers"], "Content-Length") == str(rec["body_len"])
          and h.header_of(rec["headers"], "Transfer-Encoding") is None,
          "the held body went upstream with its length", rec["headers"])
    w.denied("reporter-bot", "POST", "/rest/api/3/issue",
             {"fields": {"project": {"key": "SEC"}, "summary": "chunked"}}, scope="SEC",
             what="chunked create in SEC")
    # a client that goes away in the middle of a held body: nothing forwarded, the proxy goes on
    seq = fake.last_seq()
    auth = base64.b64encode(("docs-bot:%s" % KEYS["docs-bot"]).encode()).decode()
    raw = ("POST http://%s/wiki/rest/api/content HTTP/1.1\r\nHost: %s\r\n"
           "Proxy-Authorization: Basic %s\r\nContent-Type: application/json\r\n"
           "Content-Length: 1000\r\n\r\n{\"type\":\"page\"" % (SITE, SITE, auth)).encode()
    sock = socket.create_connection(("127.0.0.1", env.port), timeout=5)
    sock.sendall(raw)
    time.sleep(0.3)
    sock.close()
    time.sleep(0.3)
    check(fake.last_seq() == seq, "a half-sent held body reached nothing upstream")
    r = w.req("docs-bot", "GET", "/wiki/rest/api/content/65601")
    check(r.status == 200, "the proxy serves on after an abandoned hold", r)
    # method override headers are refused under a restricted policy
    r = w.req("triage-bot", "POST", "/rest/api/3/search/jql", {"jql": ""},
              extra_args=["-H", "X-HTTP-Method-Override: DELETE"])
    h.proxy_error(r, 403, "policy_denied")
    # metric
    r = env.curl(["http://127.0.0.1:%d/metrics" % admin])
    text = r.body.decode()
    check('credproxy_policy_denied_total{client="triage-bot",class="read"}' in text,
          "credproxy_policy_denied_total counts refusals", text[-800:])


@h.test(timeout=60)
def policy_gateway_identity_and_reload(env):
    w = World(env, "gateway", more={"require_client_auth": True,
                                     "allow_unauthenticated_remote": False})
    r = w.req(None, "GET", "/rest/api/3/issue/OPS-1")
    h.proxy_error(r, 401, "client_auth_required")
    check((r.header("WWW-Authenticate") or "").startswith("Basic"), "401 with WWW-Authenticate", r)
    r = w.env.curl(["-u", "someone@example.com:dummy", w.url("/rest/api/3/issue/OPS-1")])
    h.proxy_error(r, 401, "client_auth_required")
    r = w.req("triage-bot", "GET", "/rest/api/3/issue/OPS-1")
    check(r.status == 200, "Authorization: Basic id:key identifies the client", r)
    rec = env.fake.records()[-1]
    check(h.headers_named(rec["headers"], "authorization") == [h.BASIC],
          "the client's Authorization was replaced by the site's credential")
    w.denied("triage-bot", "GET", "/rest/api/3/issue/SEC-1", what="before reload")
    # reload: triage now covers SEC instead
    pol = dict(POLICIES)
    pol["triage"] = dict(POLICIES["triage"], projects=["SEC"])
    env.config(extra=extra(policies=pol, more={"require_client_auth": True}))
    env.proxy.p.send_signal(signal.SIGHUP)
    end = time.monotonic() + 5
    ok = False
    while time.monotonic() < end and not ok:
        time.sleep(0.1)
        ok = w.req("triage-bot", "GET", "/rest/api/3/issue/SEC-1").status == 200
    check(ok, "after SIGHUP the new policy is in force")
    w.denied("triage-bot", "GET", "/rest/api/3/issue/OPS-1", scope="OPS", what="after reload")


@h.test(timeout=60)
def policy_node_gateway_and_hostile_paths(env):
    """Node 20 fetch with basic auth = (client id, key), as jira.js `basic` sends it; and paths
    that could mean something else upstream never pass a restricted policy."""
    w = World(env, "gateway")
    agent = os.path.join(h.HERE, "clients", "agent.mjs")

    def node(client, path):
        e = {"AGENT_AUTH": "%s:%s" % (client, KEYS[client])} if client else {}
        p = subprocess.run(["node", agent, "gateway", w.url(path)], env=h.clean_env(e),
                           capture_output=True, text=True, timeout=30)
        try:
            return json.loads(p.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return {"error": p.stderr[-500:]}

    out = node("triage-bot", "/rest/api/3/issue/OPS-1")
    check(out.get("status") == 200, "node fetch as triage-bot reads OPS-1", out)
    out = node("triage-bot", "/rest/api/3/issue/SEC-1")
    check(out.get("status") == 403 and "policy_denied" in out.get("body", ""),
          "node fetch as triage-bot: SEC-1 refused", out)
    out = node(None, "/rest/api/3/issue/SEC-1")
    check(out.get("status") == 200, "node fetch without identity: read-only allows reads", out)
    seq = env.fake.last_seq()
    for method, path in (("GET", "/rest/api/3/issue/OPS-1/..%2F..%2Fissue%2FSEC-1"),
                         ("GET", "/rest/api/3/issue/OPS-1/../SEC-1"),
                         ("GET", "/rest/api/3/issue;x=1/SEC-1"),
                         ("DELETE", "/REST/API/3/ISSUE/OPS-1"),
                         ("POST", "/rest/api/3/not-in-the-table")):
        r = env.curl(["--path-as-is", "-X", method, "-u", "triage-bot:%s" % KEYS["triage-bot"],
                      w.url(path)])
        h.proxy_error(r, 403, "policy_denied")
    check(env.fake.last_seq() == seq, "none of the hostile paths reached Atlassian",
          [(x["method"], x["target"]) for x in env.fake.records(since=seq)])


@h.test(timeout=30)
def policy_explain_cli(env):
    env.start_fake(policy_world=True)
    env.config(extra=extra())
    cases = [(["triage-bot", "GET", "https://acme.atlassian.net/rest/api/3/issue/OPS-1"], 0, "allow"),
             (["triage-bot", "DELETE", "/rest/api/3/issue/OPS-1"], 1, "deny"),
             (["triage-bot", "GET", "/rest/api/3/issue/SEC-1"], 1, "project SEC"),
             (["-", "POST", "/rest/api/3/issue/OPS-1/comment"], 1, "read-only"),
             (["triage-bot", "GET", "/rest/api/2/search?jql=a%3D1"], 0,
              "project%20in%20%28OPS%2C%20SUP%29"),
             (["nobody", "GET", "/"], 2, "no client")]
    for args, rc, want in cases:
        # no key or token variable is set: explain needs no secret
        p = subprocess.run([h.BIN, "policy", "explain", "-c", env.config_path] + args,
                           env=h.clean_env(), capture_output=True, timeout=20, text=True)
        check(p.returncode == rc and want in p.stdout + p.stderr,
              "policy explain %s -> exit %d, mentions %r" % (" ".join(args), rc, want),
              (p.returncode, p.stdout, p.stderr))
    check(env.fake.last_seq() == 0, "policy explain contacted nothing")


if __name__ == "__main__":
    h.main()
