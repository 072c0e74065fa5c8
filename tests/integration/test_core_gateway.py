#!/usr/bin/python3
"""Gateway mode (origin-form requests to the proxy as a base URL): site choice by
SITE.localhost / ALIAS.localhost Host, the single-site shortcut, a site's own
listener, 421 site_unknown, and python3-requests against a site listener.

Run: CREDPROXY_BIN=build/credproxy /usr/bin/python3 tests/integration/test_core_gateway.py [TEST...]
"""
import harness as h
from harness import check

TWO_SITES = [{"domain": "acme", "credential": "svc"},
             {"host": "jira.example.org", "credential": "svc", "alias": "corp"}]


def _only_upstream(env, since, host):
    recs = env.fake.records(since=since)
    check(len(recs) == 1, "exactly one upstream request", [(r["host"], r["path"]) for r in recs])
    if recs:
        rec = recs[0]
        check(rec["host"] == host and rec["sni"] == host, "went to %s (Host and SNI)" % host,
              (rec["host"], rec["sni"]))
        check(rec["authorization"] == h.BASIC, "carried the site credential")
        return rec
    return None


@h.test
def gateway_site_localhost_host(env):
    env.start_fake()
    env.start_proxy(sites=TWO_SITES)
    s = env.fake.last_seq()
    r = env.curl_gateway("/rest/api/3/myself", "acme.localhost:%d" % env.port)
    check(r.status == 200 and (r.json() or {}).get("accountId"), "Host acme.localhost:PORT -> myself", r)
    _only_upstream(env, s, "acme.atlassian.net")
    # curl resolves *.localhost itself: the natural spelling works too.
    s = env.fake.last_seq()
    r = env.curl(["http://acme.localhost:%d/wiki/rest/api/user/current" % env.port])
    check(r.status == 200, "http://acme.localhost:PORT/wiki/... answers 200", r)
    _only_upstream(env, s, "acme.atlassian.net")
    env.stop_proxy()


@h.test
def gateway_alias(env):
    env.start_fake()
    env.start_proxy(sites=TWO_SITES)
    s = env.fake.last_seq()
    r = env.curl_gateway("/rest/api/2/myself", "corp.localhost:%d" % env.port)
    check(r.status == 200, "Host corp.localhost:PORT -> jira.example.org", r)
    _only_upstream(env, s, "jira.example.org")
    env.stop_proxy()


@h.test
def gateway_single_site_proxy_host(env):
    env.start_fake()
    env.start_proxy(sites=[{"domain": "acme", "credential": "svc"}])
    for host in ("127.0.0.1:%d" % env.port, "localhost:%d" % env.port):
        s = env.fake.last_seq()
        r = env.curl_gateway("/rest/api/3/myself", host)
        check(r.status == 200, "single site: Host %s -> acme" % host, r)
        _only_upstream(env, s, "acme.atlassian.net")
    env.stop_proxy()


@h.test
def gateway_site_listener(env):
    env.start_fake()
    p2 = h.free_port()
    sites = TWO_SITES + [{"domain": "acme-sandbox", "credential": "svc",
                          "listen": "127.0.0.1:%d" % p2}]
    env.start_proxy(sites=sites, extra={"gateway": {"server_names": ["credproxy"]}})
    env.wait_listen(p2, proc=env.proxy)
    # Names of the proxy (its address, loopback names, gateway.server_names) and of the site.
    for host in (None, "acme.localhost:%d" % env.port, "localhost:%d" % p2, "credproxy:%d" % p2,
                 "acme-sandbox.atlassian.net", "[::1]:%d" % p2, "10.1.2.3:%d" % p2):
        s = env.fake.last_seq()
        r = env.curl(["http://127.0.0.1:%d/rest/api/3/myself" % p2] +
                     (["-H", "Host: %s" % host] if host else []))
        check(r.status == 200, "site listener answers a Host naming the proxy or site (%s)" % host, r)
        _only_upstream(env, s, "acme-sandbox.atlassian.net")
    # DNS rebinding: a page's own name in Host never gets the credential.
    s = env.fake.last_seq()
    for host in ("whatever.example:1", "attacker.example:%d" % p2, "credproxy.evil:%d" % p2,
                 "acme.atlassian.net"):
        r = env.curl(["http://127.0.0.1:%d/rest/api/3/myself" % p2, "-H", "Host: %s" % host])
        h.proxy_error(r, 421, "misdirected")
    for raw_host in (b"attacker.example\xa0", b"attacker.example\x85", b"localhost\xa0"):
        r = h.raw_one(p2, b"GET /rest/api/3/myself HTTP/1.1\r\nHost: " + raw_host + b"\r\n\r\n")
        check(r.status in (400, 421), "Host with byte %r refused" % raw_host[-1:], r)
    # A site listener is no forward proxy: other hosts and CONNECT are refused.
    r = h.raw_one(p2, b"GET http://acme.atlassian.net/rest/api/3/myself HTTP/1.1\r\n"
                      b"Host: acme.atlassian.net\r\n\r\n")
    h.proxy_error(r, 421, "misdirected")
    r = h.raw_one(p2, b"CONNECT acme.atlassian.net:443 HTTP/1.1\r\nHost: acme.atlassian.net:443\r\n\r\n")
    h.proxy_error(r, 405, "method_not_allowed")
    check(not env.fake.records(since=s), "nothing refused reached the fake",
          [(x["host"], x["path"]) for x in env.fake.records(since=s)])
    # An absolute URL naming the listener's own site is still served.
    s = env.fake.last_seq()
    r = h.raw_one(p2, b"GET http://acme-sandbox.atlassian.net/rest/api/3/myself HTTP/1.1\r\n"
                      b"Host: acme-sandbox.atlassian.net\r\nConnection: close\r\n\r\n")
    check(r.status == 200, "absolute URL for the listener's own site", r)
    _only_upstream(env, s, "acme-sandbox.atlassian.net")
    env.stop_proxy()


@h.test
def gateway_site_unknown_421(env):
    env.start_fake()
    env.start_proxy(sites=TWO_SITES)
    s = env.fake.last_seq()
    for host in ("nosuch.localhost:%d" % env.port, "127.0.0.1:%d" % env.port,
                 "evil-acme.localhost:%d" % env.port):
        r = env.curl_gateway("/rest/api/3/myself", host)
        h.proxy_error(r, 421, "site_unknown")
    check(env.fake.last_seq() == s, "the fake received nothing for 421s",
          [(x["host"], x["path"]) for x in env.fake.records(since=s)])
    env.stop_proxy()


@h.test
def gateway_python_requests_site_listener(env):
    import requests
    env.start_fake()
    p2 = h.free_port()
    sites = [{"domain": "acme", "credential": "svc", "listen": "127.0.0.1:%d" % p2},
             {"domain": "acme-sandbox", "credential": "svc"}]
    env.start_proxy(sites=sites)
    env.wait_listen(p2, proc=env.proxy)
    sess = requests.Session()
    sess.trust_env = False
    base = "http://127.0.0.1:%d" % p2
    r = sess.get(base + "/rest/api/2/serverInfo", timeout=10)
    check(r.status_code == 200 and r.json().get("versionNumbers") == [1001, 0, 0],
          "serverInfo via requests", (r.status_code, r.text[:300]))
    r = sess.get(base + "/rest/api/3/myself", timeout=10)
    check(r.status_code == 200 and r.json().get("displayName") == "Service Bot",
          "myself via requests (keep-alive session, gzip asked)", (r.status_code, r.text[:300]))
    check("set-cookie" not in {k.lower() for k in r.headers}, "no Set-Cookie", dict(r.headers))
    r = sess.post(base + "/__upload", data=b"x" * 100000, timeout=10)
    check(r.status_code == 200 and r.json().get("length") == 100000, "POST body via requests",
          (r.status_code, r.text[:300]))
    recs = env.fake.records()
    check(all(x["host"] == "acme.atlassian.net" for x in recs), "all went to acme",
          [x["host"] for x in recs])
    env.stop_proxy()


@h.test
def gateway_rewrite_links(env):
    # gateway.rewrite_links: absolute https://SITE links in JSON and Location point at the proxy.
    env.start_fake()
    env.start_proxy(sites=[{"domain": "acme", "credential": "svc"}],
                    extra={"gateway": {"rewrite_links": True}})
    origin = "http://127.0.0.1:%d" % env.port
    r = env.curl_gateway("/rest/api/3/myself", "127.0.0.1:%d" % env.port)
    check(r.status == 200, "myself answers 200", r)
    self_link = (r.json() or {}).get("self", "")
    check(self_link.startswith(origin + "/rest/api/3/user"), "self link rewritten to the proxy",
          self_link)
    r = env.curl_gateway("/rest/api/3/attachment/content/10001", "127.0.0.1:%d" % env.port)
    check(r.status == 303 and (r.header("Location") or "").startswith(
        "https://api.media.atlassian.com/"), "media Location is NOT rewritten", r)
    env.stop_proxy()


if __name__ == "__main__":
    h.main()
