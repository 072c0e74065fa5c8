#!/usr/bin/python3
"""Forward-proxy mode (plain URL, absolute-form): credential injection, header
policy, response passthrough, and the media redirect that must never carry the
credential.

Run: CREDPROXY_BIN=build/credproxy /usr/bin/python3 tests/integration/test_core_forward.py [TEST...]
"""
import gzip
import json

import harness as h
from harness import check


def _echo_record(env, since):
    recs = env.fake.records(path="/__echo", since=since)
    return recs[-1] if recs else None


@h.test
def forward_jira_myself(env):
    env.start_fake()
    env.start_proxy()
    r = env.curl_proxy("http://acme.atlassian.net/rest/api/3/myself")
    check(r.status == 200, "GET /rest/api/3/myself through the proxy answers 200", r)
    body = r.json() or {}
    acct = env.fake.sites["acme.atlassian.net"]["account"]
    check(body.get("accountId") == acct["accountId"], "the account of the configured credential", r)
    check(body.get("self", "").startswith("https://acme.atlassian.net/"),
          "self link untouched in forward mode", body.get("self"))
    check(r.header("X-AAccountId") == acct["accountId"], "X-AAccountId passes through", r)
    check(r.header("X-Credproxy-Error") is None, "no X-Credproxy-Error on success", r)
    check(not r.header_all("Set-Cookie"), "Set-Cookie dropped", r)
    recs = env.fake.records(path="/rest/api/3/myself")
    if check(len(recs) == 1, "exactly one upstream request", len(recs)):
        rec = recs[0]
        check(rec["authorization"] == h.BASIC, "the fake saw Basic base64(email:token)")
        check(len(h.headers_named(rec["headers"], "authorization")) == 1,
              "exactly one Authorization header upstream")
        check(rec["tls"] and rec["sni"] == "acme.atlassian.net", "TLS with SNI acme.atlassian.net",
              (rec["tls"], rec["sni"]))
        check(rec["host"] == "acme.atlassian.net", "Host acme.atlassian.net upstream", rec["host"])
        check(rec["method"] == "GET" and rec["target"] == "/rest/api/3/myself",
              "origin-form target upstream", rec["target"])
    env.stop_proxy()


@h.test
def forward_confluence_current_user(env):
    env.start_fake()
    env.start_proxy()
    r = env.curl_proxy("http://acme.atlassian.net/wiki/rest/api/user/current?expand=operations")
    check(r.status == 200, "Confluence user/current answers 200", r)
    check((r.json() or {}).get("type") == "known", "type known (authenticated)", r)
    recs = env.fake.records(path="/wiki/rest/api/user/current")
    check(len(recs) == 1 and recs[0]["authorization"] == h.BASIC,
          "Confluence path got the same credential", [x["authorization"] is not None for x in recs])
    check(recs and recs[0]["query"] == "expand=operations", "query string preserved",
          recs and recs[0]["query"])
    env.stop_proxy()


@h.test
def forward_client_credentials_replaced(env):
    env.start_fake()
    env.start_proxy()
    s = env.fake.last_seq()
    r = env.curl_proxy("http://acme.atlassian.net/__echo", "-H", "Authorization: Basic Zm9vOmJhcg==",
                       "-H", "Cookie: JSESSIONID=abc; atlassian.xsrf.token=x",
                       "-H", "Proxy-Authorization: Basic cHJveHk6cHc=", "-H", "X-Keep-Me: yes",
                       "-H", "X-Force-Accept-Language: true", "-H", "Accept-Language: de")
    check(r.status == 200, "echo answers 200", r)
    rec = _echo_record(env, s)
    if not check(rec is not None, "the fake received the request"):
        return
    hd = rec["headers"]
    check(h.headers_named(hd, "authorization") == [h.BASIC],
          "client Authorization replaced by the site credential",
          [v == h.BASIC for v in h.headers_named(hd, "authorization")])
    check(not h.headers_named(hd, "cookie"), "client Cookie removed", h.headers_named(hd, "cookie"))
    check(not h.headers_named(hd, "proxy-authorization"), "Proxy-Authorization removed")
    check(h.header_of(hd, "x-keep-me") == "yes", "end-to-end header kept", hd)
    check(h.header_of(hd, "x-force-accept-language") == "true", "X-Force-Accept-Language kept", hd)
    check(h.header_of(hd, "accept-language") == "de", "Accept-Language kept", hd)
    env.stop_proxy()


@h.test
def forward_hop_by_hop_removed(env):
    env.start_fake()
    env.start_proxy()
    s = env.fake.last_seq()
    req = (b"GET http://acme.atlassian.net/__echo HTTP/1.1\r\n"
           b"Host: acme.atlassian.net\r\n"
           b"Connection: keep-alive, X-Hop-A, x-hop-b\r\n"
           b"X-Hop-A: 1\r\nX-Hop-B: 2\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n"
           b"Proxy-Connection: keep-alive\r\nTrailer: X-Later\r\nX-End: 3\r\n\r\n")
    r = h.raw_one(env.port, req)
    check(r.status == 200, "echo answers 200", r)
    rec = _echo_record(env, s)
    if not check(rec is not None, "the fake received the request"):
        return
    names = {k.lower() for k, _ in rec["headers"]}
    for gone in ("x-hop-a", "x-hop-b", "keep-alive", "te", "proxy-connection", "trailer"):
        check(gone not in names, "hop-by-hop header %s removed" % gone, sorted(names))
    conn = (h.header_of(rec["headers"], "connection") or "").lower()
    check("x-hop" not in conn, "client Connection tokens not forwarded", conn)
    check(h.header_of(rec["headers"], "x-end") == "3", "end-to-end header kept", sorted(names))
    # Response side: the proxy's own Connection handling, no upstream hop-by-hop leaks.
    check(r.header("Keep-Alive") is None or "timeout" in r.header("Keep-Alive"),
          "no foreign Keep-Alive in the response", r)
    env.stop_proxy()


@h.test
def forward_set_cookie_dropped(env):
    env.start_fake()
    env.start_proxy()
    r = env.curl_proxy("http://acme.atlassian.net/__set_cookie")
    check(r.status == 200, "/__set_cookie answers 200", r)
    check(not [v for k, v in r.headers if k.lower() == "set-cookie"], "every Set-Cookie dropped", r)
    check(r.header("X-RateLimit-Limit") == "100", "X-RateLimit-Limit passes through", r)
    check(r.header("X-AREQUESTID") is not None, "X-AREQUESTID passes through", r)
    env.stop_proxy()


@h.test
def forward_gzip_untouched(env):
    env.start_fake()
    env.start_proxy()
    r = env.curl_proxy("http://acme.atlassian.net/rest/api/3/serverInfo", "-H", "Accept-Encoding: gzip")
    check(r.status == 200, "serverInfo answers 200", r)
    check(r.header("Content-Encoding") == "gzip", "Content-Encoding: gzip passed", r)
    check("Accept-Encoding" in (r.header("Vary") or ""), "Vary passed", r)
    try:
        data = json.loads(gzip.decompress(r.body))
        check(data.get("baseUrl") == "https://acme.atlassian.net", "body is the fake's gzip bytes",
              data)
    except (OSError, ValueError) as e:
        check(False, "body is still gzip (not decoded, not re-encoded)", "%s %r" % (e, r.body[:60]))
    rec = env.fake.records(path="/rest/api/3/serverInfo")
    check(rec and h.header_of(rec[-1]["headers"], "accept-encoding") == "gzip",
          "Accept-Encoding forwarded as sent", rec and rec[-1]["headers"])
    env.stop_proxy()


@h.test
def forward_upstream_errors_pass_through(env):
    sites = h.fake_atlassian.default_sites(h.EMAIL, "a-different-token")  # our token is rejected
    env.start_fake(sites=sites)
    env.start_proxy()
    r = env.curl_proxy("http://acme.atlassian.net/rest/api/3/myself")
    check(r.status == 401, "upstream 401 passes through", r)
    check(r.header("X-Credproxy-Error") is None, "no X-Credproxy-Error on an upstream 401", r)
    check(r.header("X-Seraph-LoginReason") == "AUTHENTICATED_FAILED", "seraph header kept", r)
    check((r.header("WWW-Authenticate") or "").startswith("OAuth realm="), "WWW-Authenticate kept", r)
    check(r.body == b"Client must be authenticated to access this resource.", "401 body kept", r)
    for code in (404, 500, 503):
        r = env.curl_proxy("http://acme.atlassian.net/__status?code=%d" % code)
        check(r.status == code and r.header("X-Credproxy-Error") is None,
              "upstream %d passes through without X-Credproxy-Error" % code, r)
        check(r.json() == {"status": code}, "upstream %d body kept" % code, r)
    env.stop_proxy()


def _attachment_redirect(env):
    r = env.curl_proxy("http://acme.atlassian.net/rest/api/3/attachment/content/10001")
    check(r.status == 303, "attachment content answers 303 (not followed by the proxy)", r)
    loc = r.header("Location") or ""
    check(loc.startswith("https://api.media.atlassian.com/file/") and "token=" in loc,
          "Location to the media host reaches the client untouched", loc)
    check(not env.fake.records(host=h.fake_atlassian.MEDIA_HOST),
          "the proxy did not follow the redirect itself")
    return loc


@h.test
def forward_media_redirect_tunnel(env):
    env.start_fake()
    env.start_proxy(unknown_hosts="tunnel")
    loc = _attachment_redirect(env)
    if not loc:
        return
    # The client follows through the proxy: CONNECT api.media.atlassian.com:443, blind tunnel.
    r = env.curl_proxy(loc, "--cacert", env.tls["ca"], "-H", "X-From-Client: 1")
    check(r.status == 200 and r.body == b"attachment body for acme.atlassian.net\n",
          "media download through the tunnel", r)
    # And as a plain-http absolute-form request (tunnel mode forwards it untouched).
    plain = "http://" + loc[len("https://"):]
    r2 = env.curl_proxy(plain)
    check(r2.status in (200, 401), "plain media request forwarded untouched", r2)
    media = env.fake.records(host=h.fake_atlassian.MEDIA_HOST)
    check(len(media) >= 1, "the media host was reached", len(media))
    for rec in media:
        check(rec["authorization"] is None and "media_authorization" not in rec["flags"],
              "media host received NO Authorization (%s)" % ("tls" if rec["tls"] else "plain"))
    env.stop_proxy()


@h.test
def forward_media_redirect_deny(env):
    env.start_fake()
    env.start_proxy(unknown_hosts="deny")
    loc = _attachment_redirect(env)
    host = h.fake_atlassian.MEDIA_HOST
    # Atlassian's media host is let through even under deny (attachments redirect there),
    # always without a credential.
    check(loc and loc.startswith("https://%s/" % host), "attachment redirects to the media host", loc)
    plain = "http://" + loc[len("https://"):] if loc else "http://%s/file/x/binary" % host
    r2 = env.curl_proxy(plain)
    check(r2.status == 200, "the media download passes through under deny", r2)
    recs = env.fake.records(host=host)
    check(len(recs) == 1 and recs[0]["authorization"] is None,
          "the media host got the request and no credential",
          [(x["host"], x["authorization"] is not None) for x in recs])
    # Any other unmapped host is still refused.
    r = h.raw_one(env.port, b"CONNECT other.example:443 HTTP/1.1\r\nHost: other.example:443\r\n\r\n")
    h.proxy_error(r, 403, "host_not_allowed")
    env.stop_proxy()


if __name__ == "__main__":
    h.main()
