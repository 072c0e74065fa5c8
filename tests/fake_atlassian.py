#!/usr/bin/python3
"""A fake Atlassian Cloud for credproxy's integration tests.

Real TLS on loopback (plain HTTP is also accepted on the same port, detected
from the first byte, so blind tunnels and plain-http forwarding of unmapped
hosts can be observed). One port serves many host names, told apart by the
Host header (SNI is recorded, and a mismatch is flagged in the record):

  * configured sites (default: acme.atlassian.net, acme-sandbox.atlassian.net,
    jira.example.org), each with accepted (email, token) pairs and an account;
  * the media host api.media.atlassian.com (serves signed attachment URLs and
    FLAGS every request that carries an Authorization header);
  * every other host: the "unknown site" 404
    {"errorMessage": "Site temporarily unavailable", "errorCode": "OTHER"}.

Library use (tests):

    fake = FakeAtlassian(cert="srv.pem", key="srv.key", state_dir=tmp)
    fake.start()                       # fake.port, fake.control_port
    ... fake.records(host="acme.atlassian.net") ...
    fake.set(rate_limit_all=True, retry_after=2)
    fake.stop()

CLI:

    /usr/bin/python3 tests/fake_atlassian.py --port 0 --cert C --key K --state-dir D
    -> prints {"port": P, "control_port": Q, "pid": N} on one line, then serves
       until SIGTERM/SIGINT. Control: plain HTTP on 127.0.0.1:Q (see Control).

Records: every request is recorded (in memory and appended to
STATE_DIR/requests.jsonl, one JSON object per line) once its body has been
read, with: seq, time, conn (connection id, unique per TCP connection), tls,
sni, alpn, peer, host (Host header without port), site (the site that served
it or null), method, target, path, query, version, headers ([[name, value],
...] as received, in order), authorization (the value or null), body_len,
body_sha256, status, flags (list: "media_authorization", "sni_host_mismatch",
"unknown_host").

Control endpoint (plain HTTP on control_port, loopback):
  GET  /__control           -> current switches (JSON)
  POST /__control           JSON object of switches to set (see SWITCHES)
  POST /__reset             clear records and restore default switches
  GET  /__records[?since=N] -> JSON list of records with seq > N
  GET  /__connections       -> {"by_sni": {sni: [conn ids]}, "total": n}

Switches (constructor keyword arguments, fake.set(...), or POST /__control):
  captcha          False | True: every request with Authorization on a site
                   answers 401 (captcha_status) + X-Seraph-LoginReason:
                   AUTHENTICATION_DENIED
  captcha_status   401 (or 403, the Data Center shape)
  captcha_after    0 | N: captcha mode turns itself on after N consecutive
                   rejected credentials
  rate_limit_all   False | True: every site request answers 429 with
                   Atlassian's header set (Retry-After = retry_after unless
                   no_retry_after)
  rate_limit_count None | N: only the next N site requests are limited
  retry_after      seconds for 429/503 (default 1)
  no_retry_after   False | True: the "gateway 429" variant without Retry-After
  unavailable      False | True: every site request answers 503 + Retry-After
  legacy_401       False | True: bad credentials answer the 2019-2022 text/plain
                   401 ("Basic authentication with passwords is deprecated.")
  gzip             True: gzip JSON/text bodies when Accept-Encoding has gzip
  chunked          False | True: send every sized response chunked instead
  burst            None | {"rate": R, "capacity": C}: per (host, method)
                   token bucket; when empty answer 429 jira-burst-based
  close_after      None | N: close each connection after N responses
  policy_world     False | True: projects OPS/SUP/SEC and spaces DOCS/ENG with
                   issues and pages (see "Policy world" below)
Debug endpoints (every host, any method): /__echo, /__download?size=N[&chunked=1],
/__upload, /__slow?head_delay=H&delay=S&chunks=N, /__redirect?to=URL[&code=302],
/__status?code=N[&retry_after=S], /__set_cookie.
Fault endpoints (every host): /__fault/KIND, see the "faults" section below.
"""

import argparse
import base64
import gzip
import hashlib
import hmac
import itertools
import json
import os
import signal
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.parse
import uuid

MEDIA_HOST = "api.media.atlassian.com"
GATEWAY_HOST = "api.atlassian.com"  # issue 10: see the credentials section at the end
AUTH_HOST = "auth.atlassian.com"
DEFAULT_EMAIL = "svc-bot@example.com"
DEFAULT_TOKEN = "ATATT3xFfGF0-fake-token-0123456789abcdef"
MAX_HEAD = 256 * 1024
MAX_KEPT_BODY = 1024 * 1024  # bodies larger than this are hashed, not kept
IDLE_TIMEOUT = 120.0
PATTERN_PERIOD = 251
IO_BLOCK = 64 * 1024
_PATTERN = bytes(i % PATTERN_PERIOD for i in range(IO_BLOCK + PATTERN_PERIOD))

DEFAULT_SWITCHES = {
    "captcha": False,
    "captcha_status": 401,
    "captcha_after": 0,
    "rate_limit_all": False,
    "rate_limit_count": None,
    "retry_after": 1,
    "no_retry_after": False,
    "unavailable": False,
    "legacy_401": False,
    "gzip": True,
    "chunked": False,
    "burst": None,
    "close_after": None,
    "policy_world": False,
    # issue 10 (credentials section): {client_id: secret}; token lifetime (s); answers
    "oauth_clients": {},
    "oauth_lifetime": 3600,
    "oauth_unavailable": False,
    "oauth_delay": 0,
    "gw_scope_missing": False,
}

RATE_LIMITED_BODY = {"errorMessages": ["The request has been rate-limited. Please try again later."],
                     "errors": {}, "status": 429}
UNAUTH_TEXT = "Client must be authenticated to access this resource."
LEGACY_401_TEXT = ("Basic authentication with passwords is deprecated.  For more information, see: "
                   "https://developer.atlassian.com/cloud/confluence/deprecation-notice-basic-auth/\n")


def pattern_bytes(offset, n):
    """n bytes of the deterministic download pattern starting at offset (n <= IO_BLOCK)."""
    start = offset % PATTERN_PERIOD
    return _PATTERN[start:start + n]


def download_sha256(size):
    """sha256 hex of /__download?size=size."""
    h = hashlib.sha256()
    off = 0
    while off < size:
        n = min(IO_BLOCK, size - off)
        h.update(pattern_bytes(off, n))
        off += n
    return h.hexdigest()


def basic_value(email, token):
    """The Authorization header value a proxy should send for (email, token)."""
    return "Basic " + base64.b64encode(("%s:%s" % (email, token)).encode()).decode()


def default_sites(email=DEFAULT_EMAIL, token=DEFAULT_TOKEN):
    """Site table: host -> {credentials, account, cloud_id, attachments}."""
    sites = {}
    for i, host in enumerate(["acme.atlassian.net", "acme-sandbox.atlassian.net",
                              "jira.example.org"]):
        sites[host] = {
            "credentials": [[email, token]],
            "account": {"accountId": "5b10ac8d82e05b22cc7d4e%02d" % i,
                        "displayName": "Service Bot", "email": email},
            "cloud_id": str(uuid.UUID(int=0x1234 + i)),
        }
    return sites


class _Request:
    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default


class _Response:
    def __init__(self, status, headers=None, body=b"", stream=None, length=None, chunked=False):
        self.status = status
        self.headers = list(headers or [])
        self.body = body
        self.stream = stream      # iterator of bytes, when streaming
        self.length = length      # Content-Length for a sized stream
        self.chunked = chunked

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


REASONS = {100: "Continue", 200: "OK", 201: "Created", 204: "No Content", 206: "Partial Content",
           301: "Moved Permanently", 302: "Found", 303: "See Other", 304: "Not Modified",
           307: "Temporary Redirect", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
           404: "Not Found", 405: "Method Not Allowed", 410: "Gone", 413: "Payload Too Large",
           429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
           503: "Service Unavailable", 504: "Gateway Timeout"}


def _json(status, obj, headers=None):
    return _Response(status, [("Content-Type", "application/json;charset=UTF-8")] + list(headers or []),
                     json.dumps(obj).encode())


def _text(status, text, headers=None, ctype="text/plain;charset=UTF-8"):
    return _Response(status, [("Content-Type", ctype)] + list(headers or []), text.encode())


class _BadRequest(Exception):
    pass


# ---------------------------------------------------------------------------
# Policy world (issue 9, least privilege): projects OPS, SUP, SEC with issues
# (keys and numeric ids; 10099 is SEC-1) and Confluence spaces DOCS and ENG
# with pages (numeric ids). Searches honour JQL `project in (...)` /
# `project = X` and CQL `space in (...)` / `space = X` (every such clause
# narrows the result: simple parsing, enough to see whether the proxy
# narrowed). Off unless the switch policy_world is set, so every other test
# sees the fake unchanged. Every JQL/CQL the fake received is kept in
# FakeAtlassian.policy_queries (method, path, query text).

POLICY_PROJECTS = {"OPS": "10000", "SUP": "10001", "SEC": "10002"}
POLICY_ISSUES = [("OPS-1", "10010"), ("OPS-2", "10011"), ("SUP-1", "10020"), ("SEC-1", "10099"),
                 ("SEC-2", "10098")]
POLICY_SPACES = {"DOCS": "98301", "ENG": "98302"}
POLICY_PAGES = [("65601", "DOCS", "Docs home"), ("65602", "ENG", "Engineering home"),
                ("65603", "DOCS", "Runbook")]
POLICY_TRANSITIONS = [{"id": "11", "name": "To Do"}, {"id": "21", "name": "In Progress"},
                      {"id": "31", "name": "Done"}]


def _policy_scope_filter(text, field):
    """The set of keys `field in (...)` / `field = X` clauses allow (None: no clause)."""
    import re
    allowed = None
    pat = re.compile(r'\b%s\s*(?:in\s*\(([^)]*)\)|=\s*("?[\w~-]+"?))' % field, re.I)
    for m in pat.finditer(text or ""):
        vals = m.group(1) if m.group(1) is not None else m.group(2)
        keys = {v.strip().strip('"').strip("'").upper() for v in vals.split(",") if v.strip()}
        allowed = keys if allowed is None else allowed & keys
    return allowed


class _PolicyWorld:
    def __init__(self):
        self.lock = threading.Lock()
        self.issues = {}
        for key, iid in POLICY_ISSUES:
            self.issues[iid] = {"key": key, "project": key.split("-")[0], "summary": "Issue " + key,
                                "status": "To Do", "comments": []}
        self.pages = {pid: {"space": sp, "title": t, "version": 1, "body": "<p>%s</p>" % t}
                      for pid, sp, t in POLICY_PAGES}
        self.next_issue = 10200
        self.next_page = 66000

    def find_issue(self, id_or_key):
        for iid, it in self.issues.items():
            if iid == id_or_key or it["key"] == id_or_key.upper():
                return iid, it
        return None, None


def _policy_issue_json(base, v, iid, it):
    pk = it["project"]
    return {"id": iid, "key": it["key"], "self": "%s/rest/api/%s/issue/%s" % (base, v, iid),
            "fields": {"summary": it["summary"], "status": {"name": it["status"]},
                       "project": {"id": POLICY_PROJECTS[pk], "key": pk, "name": pk + " project",
                                   "self": "%s/rest/api/%s/project/%s" % (base, v,
                                                                          POLICY_PROJECTS[pk])},
                       "comment": {"comments": it["comments"], "total": len(it["comments"])}}}


def _policy_page_json(base, pid, pg, v1=True):
    if v1:
        return {"id": pid, "type": "page", "status": "current", "title": pg["title"],
                "space": {"key": pg["space"], "id": int(POLICY_SPACES[pg["space"]])},
                "version": {"number": pg["version"]},
                "body": {"storage": {"value": pg["body"], "representation": "storage"}},
                "_links": {"self": "%s/wiki/rest/api/content/%s" % (base, pid)}}
    return {"id": pid, "status": "current", "title": pg["title"],
            "spaceId": POLICY_SPACES[pg["space"]], "version": {"number": pg["version"]},
            "_links": {"base": base + "/wiki"}}


def _policy_body(req):
    try:
        return json.loads(req.body or b"{}")
    except ValueError:
        return None


def policy_world_dispatch(fake, req, base):
    """The answer for a policy-world path, or None to fall through to the usual fake."""
    import re
    w = fake.policy_world
    p, m = req.path, req.method
    jm = re.match(r"^/rest/api/(2|3)/(.*)$", p)
    if jm:
        v, rest = jm.group(1), jm.group(2)
        if rest in ("search", "search/jql"):
            q = dict(req.q)
            if m == "POST":
                body = _policy_body(req)
                if not isinstance(body, dict):
                    return _json(400, {"errorMessages": ["Invalid request payload."], "errors": {}})
                q.update(body)
            jql = q.get("jql", "")
            with fake._lock:
                fake.policy_queries.append((m, p, jql))
            allowed = _policy_scope_filter(jql, "project")
            with w.lock:
                found = [_policy_issue_json(base, v, iid, it) for iid, it in sorted(w.issues.items())
                         if allowed is None or it["project"] in allowed]
            return _json(200, {"startAt": 0, "maxResults": 50, "total": len(found),
                               "issues": found, "isLast": True})
        if rest == "issue" and m == "POST":
            body = _policy_body(req) or {}
            proj = ((body.get("fields") or {}).get("project") or {})
            pk = proj.get("key") or {v2: k for k, v2 in POLICY_PROJECTS.items()}.get(str(proj.get("id")))
            if pk not in POLICY_PROJECTS:
                return _json(400, {"errorMessages": [], "errors": {"project": "valid project is required"}})
            with w.lock:
                iid = str(w.next_issue)
                w.next_issue += 1
                n = 1 + sum(1 for it in w.issues.values() if it["project"] == pk)
                key = "%s-%d" % (pk, n + 100)
                w.issues[iid] = {"key": key, "project": pk, "summary":
                                 (body.get("fields") or {}).get("summary", ""), "status": "To Do",
                                 "comments": []}
            return _json(201, {"id": iid, "key": key,
                               "self": "%s/rest/api/%s/issue/%s" % (base, v, iid)})
        im = re.match(r"^issue/([^/]+)(?:/(comment|transitions))?/?$", rest)
        if im:
            with w.lock:
                iid, it = w.find_issue(im.group(1))
                if it is None:
                    return _json(404, {"errorMessages": ["Issue does not exist or you do not have "
                                                         "permission to see it."], "errors": {}})
                sub = im.group(2)
                if sub is None and m == "GET":
                    return _json(200, _policy_issue_json(base, v, iid, it))
                if sub is None and m == "PUT":
                    body = _policy_body(req) or {}
                    it["summary"] = (body.get("fields") or {}).get("summary", it["summary"])
                    return _Response(204)
                if sub is None and m == "DELETE":
                    del w.issues[iid]
                    return _Response(204)
                if sub == "comment" and m == "GET":
                    return _json(200, {"comments": it["comments"], "total": len(it["comments"])})
                if sub == "comment" and m == "POST":
                    body = _policy_body(req) or {}
                    c = {"id": str(20000 + len(it["comments"])), "body": body.get("body"),
                         "self": "%s/rest/api/%s/issue/%s/comment/%d" % (
                             base, v, iid, 20000 + len(it["comments"]))}
                    it["comments"].append(c)
                    return _json(201, c)
                if sub == "transitions" and m == "GET":
                    return _json(200, {"transitions": POLICY_TRANSITIONS})
                if sub == "transitions" and m == "POST":
                    body = _policy_body(req) or {}
                    tid = str((body.get("transition") or {}).get("id"))
                    names = {t["id"]: t["name"] for t in POLICY_TRANSITIONS}
                    if tid not in names:
                        return _json(400, {"errorMessages": ["bad transition"], "errors": {}})
                    it["status"] = names[tid]
                    return _Response(204)
            return _json(405, {"errorMessages": ["method not allowed"], "errors": {}})
        if rest == "field" and m == "GET":
            return _json(200, [{"id": "summary", "key": "summary", "name": "Summary", "custom": False,
                                "schema": {"type": "string", "system": "summary"}}])
        pm = re.match(r"^project/([^/]+)/?$", rest)
        if pm and m == "GET":
            for k, pid in POLICY_PROJECTS.items():
                if pm.group(1) in (k, pid):
                    return _json(200, {"id": pid, "key": k, "name": k + " project",
                                       "self": "%s/rest/api/%s/project/%s" % (base, v, pid)})
            return _json(404, {"errorMessages": ["No project could be found"], "errors": {}})
        return None
    if p in ("/wiki/rest/api/search", "/wiki/rest/api/content/search") and m == "GET":
        cql = req.q.get("cql", "")
        with fake._lock:
            fake.policy_queries.append((m, p, cql))
        allowed = _policy_scope_filter(cql, "space")
        with w.lock:
            res = [_policy_page_json(base, pid, pg) for pid, pg in sorted(w.pages.items())
                   if allowed is None or pg["space"] in allowed]
        if p.endswith("/content/search"):
            return _json(200, {"results": res, "size": len(res)})
        return _json(200, {"results": [{"content": r, "title": r["title"]} for r in res],
                           "size": len(res)})
    cm = re.match(r"^/wiki/rest/api/content(?:/(\d+))?/?$", p)
    if cm:
        pid = cm.group(1)
        with w.lock:
            if pid is None and m == "POST":
                body = _policy_body(req) or {}
                sk = (body.get("space") or {}).get("key")
                if sk not in POLICY_SPACES:
                    return _json(400, {"message": "space not found", "statusCode": 400})
                npid = str(w.next_page)
                w.next_page += 1
                w.pages[npid] = {"space": sk, "title": body.get("title", ""), "version": 1,
                                 "body": ""}
                return _json(200, _policy_page_json(base, npid, w.pages[npid]))
            pg = w.pages.get(pid) if pid else None
            if pg is None:
                return _json(404, {"message": "No content found with id", "statusCode": 404})
            if m == "GET":
                return _json(200, _policy_page_json(base, pid, pg))
            if m == "PUT":
                body = _policy_body(req) or {}
                pg["version"] += 1
                pg["title"] = body.get("title", pg["title"])
                return _json(200, _policy_page_json(base, pid, pg))
            if m == "DELETE":
                del w.pages[pid]
                return _Response(204)
        return None
    vm = re.match(r"^/wiki/api/v2/(pages|spaces)(?:/(\d+))?/?$", p)
    if vm:
        kind, oid = vm.group(1), vm.group(2)
        with w.lock:
            if kind == "spaces":
                for k, sid in POLICY_SPACES.items():
                    if oid == sid:
                        return _json(200, {"id": sid, "key": k, "name": k + " space"})
                return _json(404, {"errors": [{"status": 404, "title": "Not Found"}]})
            if oid is None and m == "POST":
                body = _policy_body(req) or {}
                sk = {sid: k for k, sid in POLICY_SPACES.items()}.get(str(body.get("spaceId")))
                if sk is None:
                    return _json(400, {"errors": [{"status": 400, "title": "bad spaceId"}]})
                npid = str(w.next_page)
                w.next_page += 1
                w.pages[npid] = {"space": sk, "title": body.get("title", ""), "version": 1,
                                 "body": ""}
                return _json(200, _policy_page_json(base, npid, w.pages[npid], v1=False))
            pg = w.pages.get(oid) if oid else None
            if pg is None:
                return _json(404, {"errors": [{"status": 404, "title": "Not Found"}]})
            if m == "GET":
                return _json(200, _policy_page_json(base, oid, pg, v1=False))
            if m == "PUT":
                pg["version"] += 1
                return _json(200, _policy_page_json(base, oid, pg, v1=False))
            if m == "DELETE":
                del w.pages[oid]
                return _Response(204)
    return None


class FakeAtlassian:
    """See the module docstring."""

    def __init__(self, cert, key, state_dir, sites=None, port=0, host="127.0.0.1",
                 control_port=0, **switches):
        self.cert, self.key, self.state_dir = cert, key, state_dir
        self.sites = sites if sites is not None else default_sites()
        self.bind_host, self.want_port, self.want_control = host, port, control_port
        self.port = None
        self.control_port = None
        self._lock = threading.Lock()
        self._records = []
        self._seq = itertools.count(1)
        self._conn_ids = itertools.count(1)
        self._switches = dict(DEFAULT_SWITCHES)
        self._switches.update(switches)
        self._fail_streak = 0
        self._buckets = {}
        self._media = {}  # file uuid -> (token, bytes, name)
        self._media_key = os.urandom(16)
        self.policy_world = _PolicyWorld()  # used only with the policy_world switch
        self.policy_queries = []
        self._stop = threading.Event()
        self._socks = []
        self._threads = []
        os.makedirs(state_dir, exist_ok=True)
        self.records_path = os.path.join(state_dir, "requests.jsonl")
        for host_name, site in self.sites.items():
            site.setdefault("cloud_id", str(uuid.uuid4()))
            site.setdefault("attachments", {"10001": ("report.txt", b"attachment body for %s\n"
                                                      % host_name.encode())})

    # ---- public API -------------------------------------------------------
    def start(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        ctx.set_alpn_protocols(["http/1.1"])
        ctx.sni_callback = self._on_sni
        self._ctx = ctx
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((self.bind_host, self.want_port))
        ls.listen(128)
        self.port = ls.getsockname()[1]
        self._socks.append(ls)
        self._spawn(self._accept_loop, ls, False)
        if self.want_control is not None:
            cs = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            cs.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            cs.bind(("127.0.0.1", self.want_control))
            cs.listen(16)
            self.control_port = cs.getsockname()[1]
            self._socks.append(cs)
            self._spawn(self._accept_loop, cs, True)
        return self

    def stop(self):
        self._stop.set()
        for s in self._socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        self._socks = []

    def set(self, **switches):
        with self._lock:
            for k in switches:
                if k not in DEFAULT_SWITCHES:
                    raise KeyError("unknown switch %s" % k)
            self._switches.update(switches)
            if "captcha" in switches and not switches["captcha"]:
                self._fail_streak = 0

    def switches(self):
        with self._lock:
            return dict(self._switches)

    def reset(self):
        with self._lock:
            self._records = []
            self._switches = dict(DEFAULT_SWITCHES)
            self._fail_streak = 0
            self._buckets = {}

    def records(self, host=None, path=None, since=0):
        """Records (dicts), optionally only those for a Host / path prefix / seq > since."""
        with self._lock:
            out = list(self._records)
        return [r for r in out if r["seq"] > since and (host is None or r["host"] == host)
                and (path is None or r["path"].startswith(path))]

    def last_seq(self):
        with self._lock:
            return self._records[-1]["seq"] if self._records else 0

    def connections(self, sni=None):
        """Distinct connection ids that carried at least one request (optionally for one SNI)."""
        return sorted({r["conn"] for r in self.records() if sni is None or r["sni"] == sni})

    def authorized_hosts(self):
        """Hosts that received any Authorization header."""
        return sorted({r["host"] for r in self.records() if r["authorization"] is not None})

    # ---- plumbing ---------------------------------------------------------
    def _spawn(self, fn, *args):
        t = threading.Thread(target=fn, args=args, daemon=True)
        t.start()
        self._threads.append(t)

    def _accept_loop(self, ls, control):
        while not self._stop.is_set():
            try:
                s, peer = ls.accept()
            except OSError:
                return
            threading.Thread(target=self._serve_conn, args=(s, peer, control), daemon=True).start()

    def _on_sni(self, sslobj, name, ctx):
        sslobj._fake_sni = name

    def _serve_conn(self, raw, peer, control):
        conn = {"id": next(self._conn_ids), "peer": "%s:%d" % peer[:2], "tls": False, "sni": None,
                "alpn": None, "control": control, "responses": 0}
        sock = raw
        try:
            raw.settimeout(IDLE_TIMEOUT)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if not control:
                first = raw.recv(1, socket.MSG_PEEK)
                if not first:
                    return
                if first[0] == 0x16:
                    sock = self._ctx.wrap_socket(raw, server_side=True)
                    conn["tls"] = True
                    conn["sni"] = getattr(sock, "_fake_sni", None)
                    conn["alpn"] = sock.selected_alpn_protocol()
            rfile = sock.makefile("rb", buffering=IO_BLOCK)
            while not self._stop.is_set():
                if not self._serve_one(sock, rfile, conn):
                    break
        except (OSError, ssl.SSLError, ValueError):
            pass
        finally:
            try:
                sock.close()
            except OSError:
                pass

    # Reads one request, answers it; returns False when the connection must close.
    def _serve_one(self, sock, rfile, conn):
        try:
            req = self._read_head(rfile)
        except _BadRequest as e:
            self._send(sock, None, _text(400, "bad request: %s" % e), conn, close=True)
            return False
        if req is None:
            return False
        req.conn = conn
        if self._lean_hook(sock, rfile, req, conn):  # lean engine tests (issue 14)
            return False
        keep = req.version == "HTTP/1.1" and "close" not in req.header("connection", "").lower()
        if req.version == "HTTP/1.0" and "keep-alive" in req.header("connection", "").lower():
            keep = True
        if "100-continue" in req.header("expect", "").lower():
            sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        try:
            self._read_body(rfile, req)
        except _BadRequest as e:
            self._send(sock, req, _text(400, "bad request: %s" % e), conn, close=True)
            return False
        if conn["control"]:
            resp = self._control(req)
        else:
            resp = self._dispatch(req)
            self._record(req, resp)
        conn["responses"] += 1
        close_after = self._switches.get("close_after")
        if close_after and conn["responses"] >= close_after:
            keep = False
        self._send(sock, req, resp, conn, close=not keep)
        if getattr(resp, "fault", None) not in (None, "stall-mid-body"):
            # The fault closed the descriptor (os.close of the detached socket), but an
            # SSLSocket keeps its SSL object, which still reads that descriptor number:
            # reading on would steal bytes from whatever socket of this process (a
            # test's client) got the number next.
            return False
        return keep

    def _read_head(self, rfile):
        lines = []
        total = 0
        while True:
            line = rfile.readline(MAX_HEAD + 1)
            if not line:
                if lines:
                    raise _BadRequest("eof in head")
                return None
            total += len(line)
            if total > MAX_HEAD:
                raise _BadRequest("head too large")
            if line in (b"\r\n", b"\n"):
                if not lines:
                    continue  # tolerate a blank line between pipelined requests
                break
            lines.append(line.rstrip(b"\r\n"))
        try:
            method, target, version = lines[0].decode("latin-1").split(" ")
        except ValueError:
            raise _BadRequest("request line")
        req = _Request()
        req.method, req.target, req.version = method, target, version
        req.headers = []
        for raw in lines[1:]:
            text = raw.decode("latin-1")
            if ":" not in text:
                raise _BadRequest("header line")
            k, v = text.split(":", 1)
            req.headers.append((k, v.strip()))
        parsed = urllib.parse.urlsplit(target) if target.startswith(("http://", "https://")) \
            else urllib.parse.urlsplit("//x" + target if target.startswith("/") else target)
        req.path = parsed.path or "/"
        req.query = parsed.query
        req.q = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
        host = req.header("host", "")
        req.host_header = host
        if host.startswith("["):
            h = host[1:host.find("]")]
        else:
            h = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        req.host = h.lower().rstrip(".")
        return req

    def _read_body(self, rfile, req):
        h = hashlib.sha256()
        kept = []
        n = 0
        te = req.header("transfer-encoding")
        cl = req.header("content-length")
        if te is not None and "chunked" in te.lower():
            while True:
                line = rfile.readline(1024)
                if not line.endswith(b"\n"):
                    raise _BadRequest("chunk size line")
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise _BadRequest("chunk size")
                if size == 0:
                    while True:  # trailers
                        t = rfile.readline(MAX_HEAD)
                        if t in (b"\r\n", b"\n", b""):
                            break
                    break
                left = size
                while left:
                    data = rfile.read(min(left, IO_BLOCK))
                    if not data:
                        raise _BadRequest("eof in chunk")
                    left -= len(data)
                    n += len(data)
                    h.update(data)
                    if n <= MAX_KEPT_BODY:
                        kept.append(data)
                if rfile.readline(16) not in (b"\r\n", b"\n"):
                    raise _BadRequest("chunk terminator")
        elif cl is not None:
            try:
                left = int(cl)
            except ValueError:
                raise _BadRequest("content-length")
            while left:
                data = rfile.read(min(left, IO_BLOCK))
                if not data:
                    raise _BadRequest("eof in body")
                left -= len(data)
                n += len(data)
                h.update(data)
                if n <= MAX_KEPT_BODY:
                    kept.append(data)
        req.body_len = n
        req.body_sha256 = h.hexdigest()
        req.body = b"".join(kept) if n <= MAX_KEPT_BODY else None

    def _record(self, req, resp):
        conn = req.conn
        flags = list(getattr(req, "flags", []))
        if conn["tls"] and conn["sni"] and req.host and conn["sni"].lower() != req.host:
            flags.append("sni_host_mismatch")
        rec = {"time": time.time(), "conn": conn["id"], "tls": conn["tls"], "sni": conn["sni"],
               "alpn": conn["alpn"], "peer": conn["peer"], "host": req.host,
               "site": req.host if req.host in self.sites else None, "method": req.method,
               "target": req.target, "path": req.path, "query": req.query,
               "version": req.version, "headers": [[k, v] for k, v in req.headers],
               "authorization": req.header("authorization"), "body_len": req.body_len,
               "body_sha256": req.body_sha256, "status": resp.status, "flags": flags}
        with self._lock:
            rec["seq"] = next(self._seq)
            self._records.append(rec)
            with open(self.records_path, "a") as f:
                f.write(json.dumps(rec) + "\n")

    def _send(self, sock, req, resp, conn, close):
        if getattr(resp, "fault", None):
            return self._send_fault(sock, resp)
        head_only = req is not None and req.method == "HEAD"
        sw = self._switches
        body = resp.body
        hdrs = list(resp.headers)
        if not conn["control"]:
            hdrs += self._common_headers(req, resp)
            ctype = (resp.header("content-type") or "").lower()
            if (req is not None and resp.stream is None and body and sw.get("gzip")
                    and "gzip" in req.header("accept-encoding", "").lower()
                    and ("json" in ctype or "text" in ctype) and resp.header("content-encoding") is None):
                body = gzip.compress(body, mtime=0)
                hdrs += [("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")]
        chunked = resp.chunked or (sw.get("chunked") and not conn["control"]
                                   and resp.status not in (204, 304))
        if resp.stream is not None and resp.length is None:
            chunked = True
        if chunked:
            hdrs.append(("Transfer-Encoding", "chunked"))
        elif resp.stream is not None:
            hdrs.append(("Content-Length", str(resp.length)))
        elif resp.status not in (204, 304) and not (100 <= resp.status < 200):
            hdrs.append(("Content-Length", str(len(body))))
        if close:
            hdrs.append(("Connection", "close"))
        head = "HTTP/1.1 %d %s\r\n" % (resp.status, REASONS.get(resp.status, "Status"))
        head += "".join("%s: %s\r\n" % kv for kv in hdrs) + "\r\n"
        sock.sendall(head.encode("latin-1"))
        if head_only or resp.status in (204, 304):
            return
        chunks = resp.stream if resp.stream is not None else ([body] if body else [])
        for data in chunks:
            if not data:
                continue
            if chunked:
                sock.sendall(b"%x\r\n" % len(data) + data + b"\r\n")
            else:
                sock.sendall(data)
        if chunked:
            sock.sendall(b"0\r\n\r\n")

    def _common_headers(self, req, resp):
        out = [] if resp.header("server") else [("Server", "AtlassianEdge")]
        out += [("X-AREQUESTID", uuid.uuid4().hex),
               ("ATL-TraceId", os.urandom(8).hex()),
               ("Strict-Transport-Security", "max-age=315360000; includeSubDomains; preload"),
               ("X-Content-Type-Options", "nosniff"), ("timing-allow-origin", "*"),
               ("Date", time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()))]
        if resp.header("x-ratelimit-limit") is None:
            out += [("X-RateLimit-Limit", "100"), ("X-RateLimit-Remaining", "99")]
        if resp.header("set-cookie") is None:
            suffix = "_lin" if getattr(req, "authed", False) else "_lout"
            out.append(("Set-Cookie", "atlassian.xsrf.token=%s%s; Path=/; SameSite=None; Secure"
                        % (os.urandom(20).hex(), suffix)))
        if getattr(req, "authed", False):
            site = getattr(req, "gw_site", None) or self.sites[req.host]
            out.append(("X-AAccountId", site["account"]["accountId"]))
        return out

    # ---- control ----------------------------------------------------------
    def _control(self, req):
        if req.path == "/__control" and req.method == "GET":
            return _json(200, self.switches())
        if req.path == "/__control" and req.method == "POST":
            try:
                self.set(**json.loads(req.body or b"{}"))
            except (KeyError, ValueError, TypeError) as e:
                return _json(400, {"error": str(e)})
            return _json(200, self.switches())
        if req.path == "/__reset":
            self.reset()
            return _json(200, self.switches())
        if req.path == "/__records":
            return _json(200, self.records(since=int(req.q.get("since", "0"))))
        if req.path == "/__connections":
            by = {}
            for r in self.records():
                by.setdefault(r["sni"] or "", set()).add(r["conn"])
            return _json(200, {"by_sni": {k: sorted(v) for k, v in by.items()},
                               "total": len(self.connections())})
        return _json(404, {"error": "no such control path"})

    # ---- the fake Atlassian -----------------------------------------------
    def _dispatch(self, req):
        req.flags = []
        req.authed = False
        if req.path.startswith("/__"):
            return self._debug(req)
        if req.host == MEDIA_HOST:
            return self._media_get(req)
        if req.host == AUTH_HOST:
            return creds_oauth_token(self, req)
        site = creds_site(self, req)  # the host's site; for api.atlassian.com/ex/... its site
        if site is None:
            req.flags.append("unknown_host")
            return _json(404, {"errorMessage": "Site temporarily unavailable", "errorCode": "OTHER"})
        limited = self._limits(req)
        if limited is not None:
            return limited
        if req.path == "/_edge/tenant_info":
            return _json(200, {"cloudId": site["cloud_id"]})
        ua = req.header("user-agent", "")
        if (req.method in ("POST", "PUT", "DELETE", "PATCH") and "mozilla/" in ua.lower()
                and req.header("x-atlassian-token") is None):
            return _text(403, "XSRF check failed")
        auth = self._auth(req, site)  # "ok", "none", "bad", or a response (captcha/legacy)
        if isinstance(auth, _Response):
            return auth
        gw = creds_gateway_answer(self, req, auth)
        if gw is not None:
            return gw
        req.authed = auth == "ok"
        base = getattr(req, "gw_base", None) or "https://" + req.host
        acct = site["account"]
        p = req.path
        if self._switches.get("policy_world") and auth == "bad":
            return self._unauth(req)  # Atlassian: a wrong pair is 401 on every REST path
        if self._switches.get("policy_world") and auth == "ok":
            resp = policy_world_dispatch(self, req, base)
            if resp is not None:
                return resp
        for v in ("2", "3"):
            api = "/rest/api/%s/" % v
            if p == api + "serverInfo":
                return self._anon_ok(auth, _json(200, {
                    "baseUrl": base, "displayUrl": base, "version": "1001.0.0-SNAPSHOT",
                    "versionNumbers": [1001, 0, 0], "deploymentType": "Cloud",
                    "buildNumber": 100260, "buildDate": "2026-11-27T00:00:00.000+0000",
                    "serverTime": time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime()),
                    "scmInfo": "0" * 40, "serverTitle": "Jira"}))
            if p == api + "myself":
                if auth != "ok":
                    return self._unauth(req)
                return _json(200, {
                    "self": "%s/rest/api/%s/user?accountId=%s" % (base, v, acct["accountId"]),
                    "accountId": acct["accountId"], "accountType": "atlassian",
                    "emailAddress": acct["email"], "avatarUrls": {
                        "48x48": "https://avatar-management--avatars.us-west-2.prod.public."
                                 "atl-paas.net/default.png"},
                    "displayName": acct["displayName"], "active": True, "timeZone": "Etc/UTC",
                    "locale": "en_US", "expand": "groups,applicationRoles"})
            if p in (api + "search", api[:-1] + "/search"):
                return _json(410, {"errorMessages": [
                    "The requested API has been removed. Please migrate to the /rest/api/3/search/jql "
                    "API. A full migration guideline is available at "
                    "https://developer.atlassian.com/changelog/#CHANGE-2046"], "errors": {}})
        if p == "/rest/api/3/search/jql":
            return self._search(req, auth, base)
        if p.startswith("/rest/api/3/issue/") or p.startswith("/rest/api/2/issue/"):
            return self._issue(req, auth, base, site)
        if p in ("/rest/api/3/attachment/meta", "/rest/api/2/attachment/meta"):
            if auth != "ok":
                return self._unauth(req)
            return _json(200, {"enabled": True, "uploadLimit": 1073741824})
        if p.startswith("/rest/api/3/attachment/content/") or \
                p.startswith("/rest/api/2/attachment/content/"):
            return self._attachment(req, auth, site)
        if p == "/wiki/rest/api/user/current":
            if auth != "ok":
                return self._unauth(req)
            return _json(200, {
                "type": "known", "accountId": acct["accountId"], "accountType": "atlassian",
                "email": acct["email"], "publicName": acct["displayName"],
                "displayName": acct["displayName"],
                "profilePicture": {"path": "/wiki/aa-avatar/default.png", "width": 48,
                                   "height": 48, "isDefault": True},
                "_expandable": {"operations": "", "personalSpace": ""},
                "_links": {"self": "%s/wiki/rest/api/user?accountId=%s" % (base, acct["accountId"]),
                           "base": base + "/wiki", "context": "/wiki"}})
        if p.startswith("/wiki/rest/api/") or p.startswith("/rest/api/"):
            if p.startswith("/rest/api/user/current"):
                return _text(404, "null for uri: %s%s" % (base, p))
            return _json(404, {"errorMessages": ["null for uri: %s%s" % (base, p)], "errors": {}})
        return _text(404, "<html><title>Atlassian Cloud Notifications - Page Unavailable</title></html>",
                     ctype="text/html;charset=UTF-8")

    def _limits(self, req):
        sw = self._switches
        retry = str(int(sw.get("retry_after") or 1))
        if sw.get("unavailable"):
            return _text(503, "Service Unavailable", [("Retry-After", retry)])
        limited = False
        with self._lock:
            if sw.get("rate_limit_all"):
                cnt = sw.get("rate_limit_count")
                if cnt is None:
                    limited = True
                elif cnt > 0:
                    self._switches["rate_limit_count"] = cnt - 1
                    limited = True
            burst = sw.get("burst")
            if not limited and burst:
                key = (req.host, req.method)
                now = time.monotonic()
                tokens, last = self._buckets.get(key, (float(burst["capacity"]), now))
                tokens = min(float(burst["capacity"]), tokens + (now - last) * burst["rate"])
                if tokens >= 1.0:
                    self._buckets[key] = (tokens - 1.0, now)
                else:
                    self._buckets[key] = (tokens, now)
                    limited = True
        if not limited:
            return None
        reset = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + int(retry)))
        hdrs = [("X-RateLimit-Limit", "100"), ("X-RateLimit-Remaining", "0"),
                ("X-RateLimit-Reset", reset), ("RateLimit-Reason", "jira-burst-based")]
        if not sw.get("no_retry_after"):
            hdrs.insert(0, ("Retry-After", retry))
        return _json(429, RATE_LIMITED_BODY, hdrs)

    def _auth(self, req, site):
        value = req.header("authorization")
        if value is None:
            return "none"
        sw = self._switches
        if sw.get("captcha"):
            return _text(int(sw.get("captcha_status") or 401), "<html>CAPTCHA required</html>",
                         [("X-Seraph-LoginReason", "AUTHENTICATION_DENIED")],
                         ctype="text/html;charset=UTF-8")
        ok = False
        if value.startswith("Basic "):
            try:
                email, _, token = base64.b64decode(value[6:], validate=True).decode().partition(":")
                ok = [email, token] in [list(c) for c in site["credentials"]]
            except (ValueError, UnicodeDecodeError):
                ok = False
        elif value.startswith("Bearer "):
            ok = value[7:] in site.get("bearer", [])
        ok = ok or creds_gateway_auth(self, req, site, value)
        with self._lock:
            if ok:
                self._fail_streak = 0
            else:
                self._fail_streak += 1
                n = sw.get("captcha_after") or 0
                if n and self._fail_streak >= n:
                    self._switches["captcha"] = True
        if ok:
            return "ok"
        if sw.get("legacy_401"):
            return _Response(401, [("Content-Type", "text/plain"), ("Server", "AtlassianProxy/1.15.8.1")],
                             LEGACY_401_TEXT.encode())
        return "bad"

    def _unauth(self, req):
        realm = urllib.parse.quote("https://" + req.host, safe="")
        return _text(401, UNAUTH_TEXT, [("X-Seraph-LoginReason", "AUTHENTICATED_FAILED"),
                                        ("WWW-Authenticate", 'OAuth realm="%s"' % realm)])

    def _anon_ok(self, auth, resp):
        if auth == "bad":
            resp.headers.append(("X-Seraph-LoginReason", "AUTHENTICATED_FAILED"))
        return resp

    def _issues(self, base):
        return [{"id": str(10000 + i), "key": "ACME-%d" % i,
                 "self": "%s/rest/api/3/issue/%d" % (base, 10000 + i),
                 "fields": {"summary": "Issue %d" % i}} for i in range(1, 8)]

    def _search(self, req, auth, base):
        q = dict(req.q)
        if req.method == "POST" and req.body:
            try:
                q.update({k: v for k, v in json.loads(req.body).items()})
            except (ValueError, AttributeError):
                return _json(400, {"errorMessages": ["Invalid request payload."], "errors": {}})
        issues = self._issues(base) if auth == "ok" else []
        try:
            start = int(q.get("nextPageToken") or 0)
            size = max(1, min(100, int(q.get("maxResults") or 50)))
        except ValueError:
            return _json(400, {"errorMessages": ["bad nextPageToken"], "errors": {}})
        page = issues[start:start + size]
        out = {"issues": page, "isLast": start + size >= len(issues)}
        if not out["isLast"]:
            tok = str(start + size)
            out["nextPageToken"] = tok
            out["nextPage"] = "%s/rest/api/3/search/jql?%s" % (base, urllib.parse.urlencode(
                {"jql": q.get("jql", ""), "maxResults": size, "nextPageToken": tok}))
        return self._anon_ok(auth, _json(200, out))

    def _issue(self, req, auth, base, site):
        parts = req.path.split("/")  # ['', 'rest', 'api', '3', 'issue', KEY, ...]
        key = parts[5] if len(parts) > 5 else ""
        if auth != "ok":
            return _json(404, {"errorMessages": ["Issue does not exist or you do not have permission "
                                                 "to see it."], "errors": {}})
        if len(parts) > 6 and parts[6] == "attachments" and req.method == "POST":
            tok = (req.header("x-atlassian-token") or "").lower()
            if tok not in ("no-check", "nocheck"):
                return _text(403, "XSRF check failed")
            return _json(200, [{"self": "%s/rest/api/3/attachment/10002" % base, "id": "10002",
                                "filename": "upload.bin", "size": req.body_len}])
        if req.method in ("PUT", "DELETE"):
            return _Response(204)
        atts = [{"self": "%s/rest/api/3/attachment/%s" % (base, aid), "id": aid, "filename": name,
                 "size": len(data),
                 "content": "%s/rest/api/3/attachment/content/%s" % (base, aid)}
                for aid, (name, data) in site["attachments"].items()]
        return _json(200, {"id": "10001", "key": key, "self": "%s/rest/api/3/issue/10001" % base,
                           "fields": {"summary": "Issue %s" % key, "attachment": atts,
                                      "reporter": {"self": "%s/rest/api/3/user?accountId=%s" % (
                                          base, site["account"]["accountId"]),
                                          "accountId": site["account"]["accountId"]}}})

    def _attachment(self, req, auth, site):
        aid = req.path.rsplit("/", 1)[-1]
        if auth != "ok":
            return self._unauth(req)
        if aid not in site["attachments"]:
            return _json(404, {"errorMessages": ["The attachment does not exist"], "errors": {}})
        name, data = site["attachments"][aid]
        if req.q.get("redirect", "true") == "false":
            return _Response(200, [("Content-Type", "application/octet-stream")], data)
        fid = str(uuid.uuid5(uuid.NAMESPACE_URL, req.host + "/" + aid))
        tok = self.media_token(fid)
        with self._lock:
            self._media[fid] = (tok, data, name)
        loc = "https://%s/file/%s/binary?%s" % (MEDIA_HOST, fid, urllib.parse.urlencode(
            {"token": tok, "client": str(uuid.UUID(int=0xC11E)), "name": name, "max-age": "2940"}))
        return _Response(303, [("Location", loc)], b"")

    def media_token(self, fid):
        """The signed query token the media host accepts for file uuid fid (a JWT look-alike)."""
        h = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=").decode()
        p = base64.urlsafe_b64encode(json.dumps({"sub": fid}).encode()).rstrip(b"=").decode()
        s = base64.urlsafe_b64encode(hmac.new(self._media_key, (h + "." + p).encode(),
                                              hashlib.sha256).digest()).rstrip(b"=").decode()
        return "%s.%s.%s" % (h, p, s)

    def _media_get(self, req):
        if req.header("authorization") is not None:
            req.flags.append("media_authorization")
        parts = req.path.split("/")  # ['', 'file', uuid, 'binary']
        if len(parts) != 4 or parts[1] != "file" or parts[3] != "binary":
            return _json(404, {"error": {"code": "NotFound", "title": "Not Found"}})
        with self._lock:
            entry = self._media.get(parts[2])
        if entry is None or req.q.get("token") != entry[0]:
            return _json(401, {"error": {"code": "JwtUnauthorized", "title": "Unauthorized"}})
        return _Response(200, [("Content-Type", "application/octet-stream"),
                               ("Content-Disposition", 'attachment; filename="%s"' % entry[2])],
                         entry[1])

    # ---- debug endpoints ---------------------------------------------------
    def _debug(self, req):
        p, q = req.path, req.q
        if p.startswith(FAULT_PREFIX):
            return self._fault(req)
        if p == "/__echo":
            conn = req.conn
            return _json(200, {"method": req.method, "target": req.target, "path": req.path,
                               "query": req.query, "version": req.version,
                               "headers": [[k, v] for k, v in req.headers], "host": req.host,
                               "body_sha256": req.body_sha256, "body_len": req.body_len,
                               "sni": conn["sni"], "tls": conn["tls"], "conn": conn["id"],
                               "peer": conn["peer"]})
        if p == "/__download":
            size = int(q.get("size", "0"))
            chunked = q.get("chunked", "0") not in ("0", "", "false")

            def gen():
                off = 0
                while off < size:
                    n = min(IO_BLOCK, size - off)
                    yield pattern_bytes(off, n)
                    off += n
            return _Response(200, [("Content-Type", "application/octet-stream")], stream=gen(),
                             length=None if chunked else size, chunked=chunked)
        if p == "/__upload":
            return _json(200, {"sha256": req.body_sha256, "length": req.body_len})
        if p == "/__slow":
            head_delay = float(q.get("head_delay", "0"))
            delay = float(q.get("delay", "1"))
            chunks = int(q.get("chunks", "1"))
            time.sleep(head_delay)

            def slow():
                for i in range(chunks):
                    time.sleep(delay)
                    yield b"chunk %d\n" % i
            return _Response(200, [("Content-Type", "text/plain")], stream=slow(), chunked=True)
        if p == "/__redirect":
            return _Response(int(q.get("code", "302")), [("Location", q.get("to", "/"))], b"")
        if p == "/__status":
            code = int(q.get("code", "200"))
            hdrs = []
            if "retry_after" in q:
                hdrs.append(("Retry-After", q["retry_after"]))
            if code == 429 and "reset" in q:
                return _json(429, RATE_LIMITED_BODY, creds_ratelimit_headers(q))
            if code == 429:
                reset = time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                      time.gmtime(time.time() + int(q.get("retry_after", "1"))))
                hdrs += [("X-RateLimit-Limit", "100"), ("X-RateLimit-Remaining", "0"),
                         ("X-RateLimit-Reset", reset), ("RateLimit-Reason", "jira-burst-based")]
                return _json(429, RATE_LIMITED_BODY, hdrs)
            return _json(code, {"status": code}, hdrs)
        if p == "/__set_cookie":
            return _json(200, {"ok": True}, [
                ("Set-Cookie", "atlassian.xsrf.token=%s_lout; Path=/; SameSite=None; Secure"
                 % os.urandom(20).hex()),
                ("Set-Cookie", "tenant.session.token=fake; Path=/; HttpOnly; Secure")])
        return _json(404, {"error": "no such debug path"})

    # ---- lean engine (issue 14): raw, hand-framed responses ------------------
    # GET /__lean/raw?case=NAME answers with LEAN_RAW[NAME] byte for byte (then
    # closes); /__lean/keep_then_drop answers normally, then closes the
    # connection without answering the next request on it (a stale pooled
    # connection); /__lean/echo_drop is the same for a POST after its body.
    LEAN_RAW = {
        "chunked": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: dropped\r\n\r\n",
        "close": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the server closes",
        "continue": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
                    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal",
        "204": b"HTTP/1.1 204 No Content\r\nX-Lean: 204\r\n\r\n",
        "304": b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 42\r\n\r\n",
        "head": b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nX-Lean: head\r\n\r\n",
        "obsfold": b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
        "clte": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n0\r\n\r\n",
        "dupcl": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!",
        "badchunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        "barelf": b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
        "switch": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        "garbage": b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
        "truncated": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b",
    }

    def _lean_hook(self, sock, rfile, req, conn):
        """True when the lean-engine behaviours took the request (the connection then closes)."""
        if conn.get("lean_drop_next"):
            return True  # closed without an answer: what a server does to an idle connection
        if not req.path.startswith("/__lean/"):
            return False
        self._read_body(rfile, req)
        req.flags, req.authed = ["lean"], False
        name = req.path[len("/__lean/"):]
        if name == "raw":
            data = self.LEAN_RAW.get(req.q.get("case", ""), b"HTTP/1.1 404 Not Found\r\n\r\n")
            self._record(req, _Response(200))
            sock.sendall(data)
            return True
        if name == "tls":
            self._record(req, _Response(200))
            body = json.dumps({"conn": conn["id"], "tls": conn["tls"],
                               "session_reused": bool(getattr(sock, "session_reused", False))}
                              ).encode()
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            return True
        if name == "close_idle":
            # a keep-alive answer, then the server drops the idle connection (no Connection: close)
            self._record(req, _Response(200))
            body = json.dumps({"conn": conn["id"]}).encode()
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            time.sleep(float(req.q.get("after", "0.2")))
            return True
        if name in ("keep_then_drop", "echo_drop"):
            self._record(req, _Response(200))
            body = json.dumps({"conn": conn["id"], "body_len": req.body_len}).encode()
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            conn["lean_drop_next"] = True
            try:
                nxt = self._read_head(rfile)  # the next request on this connection...
            except _BadRequest:
                return True
            if nxt is not None:
                nxt.conn, nxt.flags, nxt.authed = conn, ["lean_dropped"], False
                nxt.body_len, nxt.body_sha256 = 0, None
                self._record(nxt, _Response(0))
            return True  # ...is never answered: the connection closes
        return False


# ---- faults ------------------------------------------------------------------
# Misbehaving upstreams for tests/integration/test_faults*.py and the soak
# (tests/bench/soak.py). GET /__fault/KIND on any host; the request is read
# and recorded as usual, then the answer breaks in the named way and the
# connection is gone:
#   reset-before-head      TCP RST before any response byte
#   reset-mid-head         part of the status line and headers, then RST
#   reset-mid-body         Content-Length: FAULT_BODY_LEN, FAULT_SENT bytes, RST
#   reset-mid-chunk        chunked, two chunks and half a third, RST
#   fin-mid-body           Content-Length: FAULT_BODY_LEN, FAULT_SENT bytes, clean FIN
#   close-notify-mid-body  as fin-mid-body over TLS, ended by a TLS close_notify
#   tls-alert-mid-body     FAULT_SENT bytes, then a raw TLS alert record, then FIN
#   garbage-head           a response that is not HTTP at all, then FIN
#   stall-mid-body?secs=S  Content-Length: FAULT_BODY_LEN, FAULT_SENT bytes, S seconds
#                          of silence (default 5), then the rest
#   reset-during-upload    (any method with a body) RST as soon as the head is read,
#                          while the body is still coming; recorded with body_len -1
#                          and status 0
FAULT_PREFIX = "/__fault/"
FAULT_BODY_LEN = 100000
FAULT_SENT = 3000
FAULT_KINDS = ("reset-before-head", "reset-mid-head", "reset-mid-body", "reset-mid-chunk",
               "fin-mid-body", "close-notify-mid-body", "tls-alert-mid-body", "garbage-head",
               "stall-mid-body", "reset-during-upload")
# A fatal handshake_failure alert as a plaintext record: after the handshake
# the peer expects encrypted records, so its TLS layer fails on it.
_RAW_TLS_ALERT = b"\x15\x03\x03\x00\x02\x02\x28"


def _fault_close(sock, reset):
    """Really close now (the request's makefile() would keep the descriptor open past
    sock.close()): with SO_LINGER 0 the peer gets a RST, else FIN. A TLS socket sends
    no close_notify either way."""
    if reset:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    else:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    try:
        os.close(sock.detach())
    except (OSError, ValueError):
        pass


def _fault_reset(sock):
    _fault_close(sock, True)


def _fault_head(length=None, chunked=False):
    h = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
    if chunked:
        h += "Transfer-Encoding: chunked\r\n"
    if length is not None:
        h += "Content-Length: %d\r\n" % length
    return (h + "\r\n").encode()


def _fault_send(fake, req):
    kind = req.path[len(FAULT_PREFIX):]
    if kind not in FAULT_KINDS:
        return _json(404, {"error": "no such fault", "kinds": list(FAULT_KINDS)})
    resp = _Response(200)
    resp.fault = kind
    resp.fault_secs = float(req.q.get("secs", "5"))
    return resp


def _fault_act(sock, kind, secs):
    body = pattern_bytes(0, FAULT_SENT)
    if kind == "reset-before-head":
        return _fault_reset(sock)
    if kind == "reset-mid-head":
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/js")
        time.sleep(0.1)
        return _fault_reset(sock)
    if kind == "garbage-head":
        sock.sendall(b"SSH-2.0-OpenSSH_9.6 not http at all\r\n\r\n")
        return _fault_close(sock, False)
    if kind == "reset-mid-chunk":
        sock.sendall(_fault_head(chunked=True) + b"800\r\n" + body[:2048] + b"\r\n"
                     + b"800\r\n" + body[:2048] + b"\r\n" + b"800\r\n" + body[:1024])
        time.sleep(0.1)
        return _fault_reset(sock)
    sock.sendall(_fault_head(length=FAULT_BODY_LEN) + body)
    if kind == "stall-mid-body":
        time.sleep(secs)
        off = FAULT_SENT
        while off < FAULT_BODY_LEN:
            n = min(IO_BLOCK, FAULT_BODY_LEN - off)
            sock.sendall(pattern_bytes(off, n))
            off += n
        return  # the connection stays usable
    time.sleep(0.1)  # let the bytes leave before the connection breaks
    if kind == "reset-mid-body":
        return _fault_reset(sock)
    if kind == "tls-alert-mid-body" and isinstance(sock, ssl.SSLSocket):
        os.write(sock.fileno(), _RAW_TLS_ALERT)
        time.sleep(0.1)
    if kind == "close-notify-mid-body" and isinstance(sock, ssl.SSLSocket):
        sock.settimeout(1.0)
        try:
            sock = sock.unwrap()  # sends close_notify; the TCP connection then ends with FIN
        except (OSError, ValueError):
            pass
    _fault_close(sock, False)


class _FaultUploadReset(Exception):
    pass


def _fault_install():
    read_body = FakeAtlassian._read_body
    serve_one = FakeAtlassian._serve_one

    def _read_body_or_reset(self, rfile, req):
        if req.path == FAULT_PREFIX + "reset-during-upload":
            req.body_len, req.body_sha256, req.body = -1, None, None
            self._record(req, _Response(0))
            raise _FaultUploadReset()
        return read_body(self, rfile, req)

    def _serve_one_or_reset(self, sock, rfile, conn):
        try:
            return serve_one(self, sock, rfile, conn)
        except _FaultUploadReset:
            _fault_reset(sock)
            return False

    FakeAtlassian._read_body = _read_body_or_reset
    FakeAtlassian._serve_one = _serve_one_or_reset
    FakeAtlassian._fault = _fault_send
    FakeAtlassian._send_fault = lambda self, sock, resp: _fault_act(sock, resp.fault,
                                                                       resp.fault_secs)


_fault_install()
# ---- end of faults -----------------------------------------------------------


# ---- credentials (issue 10): service accounts, gateway, breaker, rate-limit signals ----
#
# /__status?code=429&reset=FORMAT&reset_in=S[&retry_after=S][&beta_retry_after=S][&reason=R]
# answers a 429 whose X-RateLimit-Reset lies reset_in seconds ahead, written as
# FORMAT: "iso" (2026-01-01T01:01:01Z), "iso_local" (no zone), "epoch" (seconds).
# Retry-After only when retry_after is given: the proxy must read the reset.

def creds_ratelimit_headers(q):
    at = time.time() + float(q.get("reset_in", "2"))
    fmt = q.get("reset", "iso")
    if fmt == "epoch":
        reset = str(int(at + 0.999))
    elif fmt == "iso_local":
        reset = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at + 0.999))
    else:
        reset = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at + 0.999))
    hdrs = [("X-RateLimit-Limit", "100"), ("X-RateLimit-Remaining", "0"),
            ("X-RateLimit-Reset", reset),
            ("RateLimit-Reason", q.get("reason", "jira-burst-based"))]
    if "retry_after" in q:
        hdrs.insert(0, ("Retry-After", q["retry_after"]))
    if "beta_retry_after" in q:
        hdrs.append(("Beta-Retry-After", q["beta_retry_after"]))
    return hdrs


# The API gateway and the token endpoint.
#
# Host api.atlassian.com: /ex/jira/{cloudId}/PATH and /ex/confluence/{cloudId}/PATH
# are served as PATH of the site with that cloud_id or one of its
# "cloud_id_aliases" (a site whose id changed) (links then point at the
# gateway, as Atlassian's do); any other path answers 404. There it accepts,
# besides the site's own credentials, its "scoped" [email, token] pairs
# (which the site URL rejects like a wrong token) and Bearer access tokens
# minted by /oauth/token. Host auth.atlassian.com: POST /oauth/token with
# grant_type=client_credentials, client_id and client_secret (JSON or form)
# checked against switch oauth_clients; answers {"access_token", "expires_in":
# oauth_lifetime, "token_type": "Bearer"}; a wrong pair 401
# {"error": "access_denied"}; switch oauth_unavailable: 503; oauth_delay: seconds
# before answering. Switch gw_scope_missing: every gateway request with a good
# credential answers 401 {"code":401,"message":"Unauthorized; scope does not match"}.
# An expired access token is refused with WWW-Authenticate naming the expiry.
# creds_revoke_tokens(fake) revokes every token minted so far.

def creds_site(fake, req):
    if req.host != GATEWAY_HOST:
        return fake.sites.get(req.host)
    parts = req.path.split("/", 4)  # "", "ex", product, cloudId, rest
    if len(parts) < 4 or parts[1] != "ex" or parts[2] not in ("jira", "confluence"):
        return None
    for site in fake.sites.values():
        if parts[3].lower() in [site["cloud_id"]] + site.get("cloud_id_aliases", []):
            req.gateway = True
            req.gw_site = site
            req.gw_base = "https://%s/ex/%s/%s" % (GATEWAY_HOST, parts[2], parts[3])
            req.path = "/" + (parts[4] if len(parts) > 4 else "")
            return site
    return None


def creds_gateway_auth(fake, req, site, value):
    """True when value is good only through the gateway (scoped token, minted access token)."""
    if not getattr(req, "gateway", False):
        return False
    if value.startswith("Basic "):
        try:
            email, _, token = base64.b64decode(value[6:], validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return [email, token] in [list(c) for c in site.get("scoped", [])]
    if value.startswith("Bearer "):
        with fake._lock:
            minted = getattr(fake, "_creds_tokens", {}).get(value[7:])
        if minted is None:
            req.creds_refused = "revoked"
            return False
        if time.time() >= minted:
            req.creds_refused = "expired"
            return False
        return True
    return False


def creds_gateway_answer(fake, req, auth):
    """The gateway's own refusals (scope, expired token), or None."""
    if not getattr(req, "gateway", False):
        return None
    if auth == "ok" and fake._switches.get("gw_scope_missing"):
        return _json(401, {"code": 401, "message": "Unauthorized; scope does not match"})
    if getattr(req, "creds_refused", None) == "expired":
        return _json(401, {"code": 401, "message": "Unauthorized"}, [
            ("WWW-Authenticate", 'Bearer error="invalid_token", '
                                 'error_description="The access token expired"')])
    return None


def creds_is_gateway_request(fake, rec):
    """A record of a request to api.atlassian.com/ex/{jira|confluence}/{a site's cloudId}/."""
    if rec["host"] != GATEWAY_HOST:
        return False
    return any(rec["target"].startswith("/ex/%s/%s/" % (p, cid))
               for p in ("jira", "confluence") for site in fake.sites.values()
               for cid in [site["cloud_id"]] + site.get("cloud_id_aliases", []))


def creds_revoke_tokens(fake):
    with fake._lock:
        getattr(fake, "_creds_tokens", {}).clear()


def creds_oauth_token(fake, req):
    if req.path != "/oauth/token" or req.method != "POST":
        return _json(404, {"error": "not_found"})
    sw = fake._switches
    time.sleep(float(sw.get("oauth_delay") or 0))
    if sw.get("oauth_unavailable"):
        return _json(503, {"error": "temporarily_unavailable"}, [("Retry-After", "1")])
    raw = (req.body or b"").decode("utf-8", "replace")
    try:
        form = json.loads(raw)
    except ValueError:
        form = dict(urllib.parse.parse_qsl(raw))
    if not isinstance(form, dict) or form.get("grant_type") != "client_credentials":
        return _json(400, {"error": "unsupported_grant_type"})
    clients = sw.get("oauth_clients") or {}
    cid, secret = form.get("client_id"), form.get("client_secret")
    if cid not in clients or not hmac.compare_digest(str(clients[cid]), str(secret or "")):
        return _json(401, {"error": "access_denied", "error_description": "Unauthorized"})
    life = float(sw.get("oauth_lifetime") or 3600)
    token = "eyJfake." + base64.urlsafe_b64encode(os.urandom(24)).decode().rstrip("=")
    with fake._lock:
        if not hasattr(fake, "_creds_tokens"):
            fake._creds_tokens = {}
        fake._creds_tokens[token] = time.time() + life
    return _json(200, {"access_token": token, "expires_in": int(life) if life >= 1 else 1,
                       "token_type": "Bearer", "scope": form.get("scope", "")})


def main(argv=None):
    ap = argparse.ArgumentParser(description="fake Atlassian Cloud over TLS on loopback")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--control-port", type=int, default=0)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--sites", help="JSON file: {host: {credentials: [[email, token]], account: "
                                    "{accountId, displayName, email}}}")
    ap.add_argument("--switches", default="{}", help="JSON object of initial switches")
    a = ap.parse_args(argv)
    sites = None
    if a.sites:
        with open(a.sites) as f:
            sites = json.load(f)
    fake = FakeAtlassian(a.cert, a.key, a.state_dir, sites=sites, port=a.port,
                         control_port=a.control_port, **json.loads(a.switches))
    fake.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    sys.stdout.write(json.dumps({"port": fake.port, "control_port": fake.control_port,
                                 "pid": os.getpid()}) + "\n")
    sys.stdout.flush()
    while not done.wait(0.5):
        pass
    fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
