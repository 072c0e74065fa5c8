#!/usr/bin/python3
"""Gateway mode (3) with real clients, as the README's "Point your agent at it"
promises: Debian's python3-jira and python3-requests on a site's own `listen`,
Node 20's fetch on the site listener, and curl on http://acme.localhost:PORT.

Each client follows links from the answers (`self`, the search/jql `nextPage`,
a `Location`) and those links must lead back to the gateway, while a Location
to the media host stays untouched and a follow-up there never carries the
credential. Every test checks that every request reaching a site carried
exactly the configured Authorization, and that the client's dummy credentials
never reached the fake.

Run: CREDPROXY_BIN=build/credproxy /usr/bin/python3 tests/integration/test_clients_gateway.py [TEST...]
"""
import base64
import json
import os
import shutil
import subprocess
import urllib.parse

import harness as h
from harness import check

CLIENTS = os.path.join(h.HERE, "clients")
SITE = "acme.atlassian.net"
DUMMY_USER = "agent@example.com"
DUMMY_TOKEN = "dummy-" + os.urandom(6).hex()
DUMMY_B64 = base64.b64encode(("%s:%s" % (DUMMY_USER, DUMMY_TOKEN)).encode()).decode()


def start(env, unknown_hosts=None):
    """Fake + proxy with one site (acme) that also has its own gateway listener."""
    env.start_fake()
    site_port = h.free_port()
    env.start_proxy(sites=[{"domain": "acme", "credential": "svc",
                            "listen": "127.0.0.1:%d" % site_port}], unknown_hosts=unknown_hosts)
    env.wait_listen(site_port, proc=env.proxy)
    return site_port


def only_configured_credential(env, since=0, at_least=1):
    """Every request to a site carried exactly one Authorization: the configured one; no
    request anywhere carried the client's dummy credentials."""
    recs = env.fake.records(since=since)
    site_recs = [r for r in recs if r["site"]]
    check(len(site_recs) >= at_least, "at least %d request(s) reached the site" % at_least,
          [(r["method"], r["target"]) for r in recs])
    for r in site_recs:
        auths = h.headers_named(r["headers"], "authorization")
        check(auths == [h.BASIC], "%s %s carried exactly the configured credential"
              % (r["method"], r["path"]), ["<other>" if a != h.BASIC else "<configured>"
                                           for a in auths])
    for r in recs:
        blob = json.dumps(r["headers"]) + r["target"]
        check(DUMMY_TOKEN not in blob and DUMMY_B64 not in blob,
              "the client's dummy credential never reached the fake (%s %s)"
              % (r["method"], r["path"]))
    return site_recs


def gw(port):
    return "http://127.0.0.1:%d" % port


@h.test
def jira_myself_and_self_links(env):
    from jira import JIRA
    sp = start(env)
    base = gw(sp)
    jira = JIRA(server=base, basic_auth=(DUMMY_USER, DUMMY_TOKEN), timeout=15)
    me = jira.myself()
    acct = env.fake.sites[SITE]["account"]
    check(me.get("accountId") == acct["accountId"] and me.get("displayName") == acct["displayName"],
          "JIRA(server=site listener).myself() returns the fake's account", me)
    check(str(me.get("self", "")).startswith(base + "/rest/api/"),
          "myself's self link points at the gateway", me.get("self"))
    paths = [r["path"] for r in env.fake.records(host=SITE)]
    check("/rest/api/2/serverInfo" in paths and "/rest/api/2/myself" in paths,
          "python3-jira asked serverInfo, then myself", paths)

    issue = jira.issue("ACME-1")
    check(issue.self == base + "/rest/api/3/issue/10001",
          "issue.self rewritten to the gateway", issue.self)
    att = issue.fields.attachment[0]
    check(att.content == base + "/rest/api/3/attachment/content/10001",
          "attachment content link rewritten to the gateway", att.content)
    s = env.fake.last_seq()
    # jira's own update() PUTs to issue.self and then refreshes from it.
    issue.update(fields={"summary": "updated through credproxy"})
    recs = env.fake.records(since=s)
    check([(r["method"], r["path"], r["status"]) for r in recs] ==
          [("PUT", "/rest/api/3/issue/10001", 204), ("GET", "/rest/api/3/issue/10001", 200)],
          "issue.update() went PUT+GET through the rewritten self link", recs)
    # And a plain requests.get of the link, no credential at all on the client side.
    import requests
    r = requests.get(issue.self, timeout=15)
    check(r.status_code == 200 and r.json().get("id") == "10001",
          "requests.get(issue.self) answers the issue", r.text[:300])
    only_configured_credential(env, at_least=6)

    # No client auth at all works the same.
    s = env.fake.last_seq()
    anon = JIRA(server=base, timeout=15)
    check(anon.myself().get("accountId") == acct["accountId"], "JIRA() without auth: myself")
    only_configured_credential(env, since=s, at_least=2)
    for rec in env.fake.records():
        check(rec["host"] == SITE and rec["sni"] == SITE and rec["tls"],
              "upstream went to acme.atlassian.net over TLS (Host and SNI)",
              (rec["host"], rec["sni"], rec["tls"]))
    env.stop_proxy()


@h.test
def jql_paging_follows_next_page(env):
    from jira import JIRA
    sp = start(env)
    base = gw(sp)
    jira = JIRA(server=base, basic_auth=(DUMMY_USER, DUMMY_TOKEN), timeout=15)
    # python3-jira 3.4.1's search_issues still uses the removed /search; an agent on the new
    # API pages by following nextPage, here with jira's own session.
    url = base + "/rest/api/3/search/jql?" + urllib.parse.urlencode(
        {"jql": "project = ACME", "maxResults": 3})
    keys, pages = [], 0
    while url and pages < 10:
        r = jira._session.get(url, timeout=15)
        pages += 1
        if not check(r.status_code == 200, "search/jql page %d: 200" % pages, r.text[:300]):
            break
        body = r.json()
        keys += [i["key"] for i in body["issues"]]
        for i in body["issues"]:
            check(i["self"].startswith(base + "/rest/api/3/issue/"),
                  "issue self in page %d points at the gateway" % pages, i["self"])
        url = body.get("nextPage")
        if url:
            check(url.startswith(base + "/rest/api/3/search/jql?"),
                  "nextPage rewritten to the gateway", url)
            check("nextPageToken=" in url and "jql=project" in url,
                  "nextPage keeps its query", url)
    check(keys == ["ACME-%d" % i for i in range(1, 8)] and pages == 3,
          "three pages, seven issues, in order", (pages, keys))
    recs = only_configured_credential(env, at_least=4)
    tokens = [r["query"] for r in recs if r["path"] == "/rest/api/3/search/jql"]
    check(len(tokens) == 3 and "nextPageToken=6" in tokens[-1], "the fake saw the paged queries",
          tokens)
    env.stop_proxy()


@h.test
def attachment_redirects(env):
    import requests
    sp = start(env, unknown_hosts="tunnel")
    base = gw(sp)
    acme = requests.Session()
    acme.auth = (DUMMY_USER, DUMMY_TOKEN)
    # A Location on the site itself is rewritten to the gateway and can be followed.
    to = "https://acme.atlassian.net/rest/api/3/myself?x=1"
    r = acme.get(base + "/__redirect?" + urllib.parse.urlencode({"to": to, "code": "303"}),
                 allow_redirects=False, timeout=15)
    check(r.status_code == 303 and r.headers.get("Location") == base + "/rest/api/3/myself?x=1",
          "Location https://acme.atlassian.net/... rewritten to the gateway", r.headers)
    r = acme.get(base + "/__redirect?" + urllib.parse.urlencode({"to": to, "code": "303"}),
                 timeout=15)
    check(r.status_code == 200 and r.json().get("accountId") and r.url.startswith(base),
          "requests follows the rewritten Location to myself", (r.status_code, r.url))
    only_configured_credential(env, at_least=3)

    # The attachment content 303 to the media host stays untouched.
    s = env.fake.last_seq()
    r = acme.get(base + "/rest/api/3/attachment/content/10001", allow_redirects=False, timeout=15)
    loc = r.headers.get("Location", "")
    check(r.status_code == 303 and loc.startswith("https://api.media.atlassian.com/file/")
          and "token=" in loc, "attachment 303 Location to the media host is untouched", loc)
    only_configured_credential(env, since=s, at_least=1)
    # Follow it the way an agent would: through the proxy (unknown_hosts: tunnel, so a blind
    # tunnel to the media host, trusting the fake's own certificate). No credential goes there.
    s = env.fake.last_seq()
    media = requests.get(loc, proxies={"https": gw(env.port)}, verify=env.tls["ca"], timeout=15)
    check(media.status_code == 200 and media.content == b"attachment body for acme.atlassian.net\n",
          "the media host served the attachment", (media.status_code, media.content[:200]))
    recs = env.fake.records(since=s)
    check([r["host"] for r in recs] == [h.fake_atlassian.MEDIA_HOST],
          "one request, to the media host", [(r["host"], r["path"]) for r in recs])
    check(all(r["authorization"] is None and "media_authorization" not in r["flags"]
              for r in recs), "the media host never got an Authorization")
    # Following the whole chain automatically from the gateway does the same.
    s = env.fake.last_seq()
    full = acme.get(base + "/rest/api/3/attachment/content/10001", timeout=15,
                    proxies={"https": gw(env.port)}, verify=env.tls["ca"])
    check(full.status_code == 200 and full.content.startswith(b"attachment body"),
          "requests follows 303 from the gateway to the media host", full.status_code)
    media_recs = env.fake.records(since=s, host=h.fake_atlassian.MEDIA_HOST)
    check(len(media_recs) == 1 and media_recs[0]["authorization"] is None,
          "the followed redirect reached the media host without any Authorization",
          [r["authorization"] is None for r in media_recs])
    only_configured_credential(env, since=s, at_least=1)
    acme.close()  # its pooled blind tunnel would hold the proxy's shutdown for shutdown_timeout
    env.stop_proxy()


@h.test
def node_fetch_gateway(env):
    if shutil.which("node") is None:
        raise h.Skip("node is not installed")
    sp = start(env)
    base = gw(sp)

    def node(*args, extra=None):
        p = subprocess.run(["node", os.path.join(CLIENTS, "agent.mjs")] + list(args),
                           env=h.clean_env(extra), capture_output=True, timeout=30)
        env.extra_texts.append(p.stdout.decode() + p.stderr.decode())
        try:
            return json.loads(p.stdout.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            return {"raw": (p.stdout + p.stderr).decode()[-1000:]}
    auth = {"AGENT_AUTH": "%s:%s" % (DUMMY_USER, DUMMY_TOKEN)}
    out = node("gateway", base + "/rest/api/3/myself", extra=auth)
    body = json.loads(out.get("body") or "{}")
    check(out.get("status") == 200 and body.get("accountId") ==
          env.fake.sites[SITE]["account"]["accountId"], "Node fetch(site listener) -> myself", out)
    check(str(body.get("self", "")).startswith(base + "/"), "self link points at the gateway",
          body.get("self"))
    out = node("gateway", base + "/rest/api/3/issue/ACME-1", extra=auth)
    link = json.loads(out.get("body") or "{}").get("self", "")
    check(link == base + "/rest/api/3/issue/10001", "issue self rewritten", out)
    out = node("gateway", link, extra=auth)
    check(out.get("status") == 200, "Node fetch follows the rewritten self link", out)
    # The main listener, single site: the README's other gateway address.
    out = node("gateway", gw(env.port) + "/rest/api/3/myself")
    check(out.get("status") == 200 and gw(env.port) + "/" in out.get("body", ""),
          "Node fetch on the main listener (one site) -> myself, links to it", out)
    only_configured_credential(env, at_least=4)
    env.stop_proxy()


@h.test
def curl_site_localhost(env):
    start(env)
    base = "http://acme.localhost:%d" % env.port
    r = env.curl([base + "/rest/api/3/myself", "-u", "%s:%s" % (DUMMY_USER, DUMMY_TOKEN)])
    body = r.json() or {}
    check(r.rc == 0 and r.status == 200 and body.get("accountId"),
          "curl http://acme.localhost:PORT/rest/api/3/myself", r)
    check(str(body.get("self", "")).startswith(base + "/rest/api/3/user"),
          "self link points at acme.localhost:PORT", body.get("self"))
    r = env.curl([base + "/rest/api/3/issue/ACME-1"])
    link = (r.json() or {}).get("self", "")
    check(link == base + "/rest/api/3/issue/10001", "issue self rewritten to acme.localhost", r)
    r = env.curl([link, "-u", "%s:%s" % (DUMMY_USER, DUMMY_TOKEN)])
    check(r.status == 200, "curl follows the self link", r)
    r = env.curl([base + "/wiki/rest/api/user/current"])
    check(r.status == 200 and (r.json() or {}).get("_links", {}).get("base") == base + "/wiki",
          "Confluence on the same gateway; _links.base rewritten", r)
    only_configured_credential(env, at_least=4)
    env.stop_proxy()


if __name__ == "__main__":
    h.main()
