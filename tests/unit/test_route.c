/*
 * test_route: the route stage as a table. Each row is one request (listener
 * kind, tunnel or not, target, Host, Origin, Sec-Fetch-Site, Upgrade, Via
 * loop) against one of two worlds (deny / tunnel for unknown hosts), and
 * the action, mode, site, status and code it must get. Rows that must
 * never inject a credential are the majority: only ROUTE_SITE does.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "route.h"
#include "testlib.h"
#include "world.h"

static const char *const YAML_BASE = "listen: 127.0.0.1:8080\n"
                                     "credentials:\n"
                                     "  svc:\n"
                                     "    email: bot@example.com\n"
                                     "    token: \"not-a-real-token-0123456789\"\n"
                                     "sites:\n"
                                     "  - domain: acme\n"
                                     "    credential: svc\n"
                                     "  - domain: beta\n"
                                     "    credential: svc\n"
                                     "    alias: b\n"
                                     "  - domain: sandbox\n"
                                     "    credential: svc\n"
                                     "    listen: 127.0.0.1:8082\n"
                                     "gateway:\n"
                                     "  server_names: [credproxy]\n"
                                     "interception:\n"
                                     "  ca_cert: /nonexistent/ca.pem\n"
                                     "  ca_key: /nonexistent/ca.key\n";

static struct world *load_world(const char *unknown_hosts)
{
    char path[] = "/tmp/test_route_XXXXXX";
    int fd = mkstemp(path);
    struct config *cfg = NULL;
    char *err = NULL, *warn = NULL;
    struct world *w;

    if (fd < 0)
        abort();
    FILE *f = fdopen(fd, "w");
    fprintf(f, "%sunknown_hosts: %s\n", YAML_BASE, unknown_hosts);
    fclose(f);
    if (config_load_file(path, &cfg, &err) != 0) {
        fprintf(stderr, "config: %s\n", err ? err : "?");
        abort();
    }
    unlink(path);
    w = world_new(cfg, &err, &warn);
    free(warn);
    if (!w)
        abort();
    return w;
}

enum { L_MAIN = 0, L_SITE };
enum { W_DENY = 0, W_TUNNEL };

struct row {
    const char *what;
    int world;
    int listener;
    const char *tunnel; /* CONNECT host of an intercepted tunnel (port 443), or NULL */
    bool connect;
    const char *target;
    const char *host;
    const char *origin;
    const char *fetch_site;
    bool upgrade;
    bool looped;
    /* expectations */
    enum route_action action;
    const char *mode;
    const char *site; /* expected site host, or NULL */
    int status;
    const char *code;
    const char *url; /* expected upstream URL, or NULL for "don't care" */
};

#define SITE_OK(m, s, u) .action = ROUTE_SITE, .mode = m, .site = s, .url = u
#define REFUSED(st, c) .action = ROUTE_REFUSE, .status = st, .code = c

static const struct row rows[] = {
    /* ---- forward, absolute form ---- */
    {"forward plain http", W_DENY, L_MAIN, NULL, false,
     "http://acme.atlassian.net/rest/api/3/myself", "acme.atlassian.net", NULL, NULL, false, false,
     SITE_OK("forward", "acme.atlassian.net", "https://acme.atlassian.net/rest/api/3/myself")},
    {"forward https scheme", W_DENY, L_MAIN, NULL, false, "https://acme.atlassian.net/wiki/x?q=1",
     "x", NULL, NULL, false, false,
     SITE_OK("forward", "acme.atlassian.net", "https://acme.atlassian.net/wiki/x?q=1")},
    {"forward no path", W_DENY, L_MAIN, NULL, false, "http://acme.atlassian.net", "x", NULL, NULL,
     false, false, SITE_OK("forward", "acme.atlassian.net", "https://acme.atlassian.net/")},
    {"forward upper case", W_DENY, L_MAIN, NULL, false, "HTTP://ACME.Atlassian.NET/x", "x", NULL,
     NULL, false, false, SITE_OK("forward", "acme.atlassian.net", NULL)},
    {"forward unmapped deny", W_DENY, L_MAIN, NULL, false, "http://evil.example/x", "x", NULL, NULL,
     false, false, REFUSED(403, "host_not_allowed")},
    {"forward look-alike", W_DENY, L_MAIN, NULL, false, "http://evil-acme.atlassian.net/x", "x",
     NULL, NULL, false, false, REFUSED(403, "host_not_allowed")},
    {"forward suffix look-alike", W_DENY, L_MAIN, NULL, false,
     "http://acme.atlassian.net.evil.com/x", "x", NULL, NULL, false, false,
     REFUSED(403, "host_not_allowed")},
    {"forward other port", W_DENY, L_MAIN, NULL, false, "http://acme.atlassian.net:8443/x", "x",
     NULL, NULL, false, false, REFUSED(403, "host_not_allowed")},
    {"forward unmapped tunnel", W_TUNNEL, L_MAIN, NULL, false, "http://other.example/x", "x", NULL,
     NULL, false, false, .action = ROUTE_PASS, .mode = "tunnel",
     .url = "http://other.example:80/x"},
    {"forward media host under deny", W_DENY, L_MAIN, NULL, false,
     "https://api.media.atlassian.com/file/1/binary?token=t", "x", NULL, NULL, false, false,
     .action = ROUTE_PASS, .mode = "tunnel",
     .url = "https://api.media.atlassian.com:443/file/1/binary?token=t"},
    {"forward userinfo", W_DENY, L_MAIN, NULL, false, "http://u:p@acme.atlassian.net/x", "x", NULL,
     NULL, false, false, REFUSED(400, "bad_request")},
    {"forward percent host", W_DENY, L_MAIN, NULL, false, "http://acme%2eatlassian.net/x", "x",
     NULL, NULL, false, false, REFUSED(400, "bad_request")},
    {"forward empty host", W_DENY, L_MAIN, NULL, false, "http:///x", "x", NULL, NULL, false, false,
     REFUSED(400, "bad_request")},
    {"forward numeric host", W_TUNNEL, L_MAIN, NULL, false, "http://2130706433/x", "x", NULL, NULL,
     false, false, REFUSED(403, "host_not_allowed")},
    {"forward loop by address", W_TUNNEL, L_MAIN, NULL, false, "http://127.0.0.1:8080/x", "x", NULL,
     NULL, false, false, REFUSED(508, "loop_detected")},
    {"forward loop by localhost name", W_TUNNEL, L_MAIN, NULL, false, "http://a.localhost:8082/x",
     "x", NULL, NULL, false, false, REFUSED(508, "loop_detected")},
    {"forward loop by server name", W_TUNNEL, L_MAIN, NULL, false, "http://credproxy:8080/x", "x",
     NULL, NULL, false, false, REFUSED(508, "loop_detected")},
    {"forward loopback other port", W_TUNNEL, L_MAIN, NULL, false, "http://127.0.0.1:9999/x", "x",
     NULL, NULL, false, false, .action = ROUTE_PASS, .mode = "tunnel"},
    {"forward looped via", W_DENY, L_MAIN, NULL, false, "http://acme.atlassian.net/x", "x", NULL,
     NULL, false, true, REFUSED(508, "loop_detected")},
    {"forward foreign origin", W_DENY, L_MAIN, NULL, false, "http://acme.atlassian.net/x", "x",
     "http://evil.example", NULL, false, false, REFUSED(403, "origin_not_allowed")},
    {"forward own origin", W_DENY, L_MAIN, NULL, false, "http://acme.atlassian.net/x", "x",
     "https://acme.atlassian.net", NULL, false, false,
     SITE_OK("forward", "acme.atlassian.net", NULL)},
    {"forward cross-site fetch", W_DENY, L_MAIN, NULL, false, "http://acme.atlassian.net/x", "x",
     NULL, "cross-site", false, false, REFUSED(403, "origin_not_allowed")},
    {"forward same-site fetch", W_DENY, L_MAIN, NULL, false, "http://acme.atlassian.net/x", "x",
     NULL, "same-site", false, false, REFUSED(403, "origin_not_allowed")},
    {"forward same-origin fetch", W_DENY, L_MAIN, NULL, false, "http://acme.atlassian.net/x", "x",
     NULL, "same-origin", false, false, SITE_OK("forward", "acme.atlassian.net", NULL)},
    {"forward none fetch", W_DENY, L_MAIN, NULL, false, "http://acme.atlassian.net/x", "x", NULL,
     "none", false, false, SITE_OK("forward", "acme.atlassian.net", NULL)},
    {"forward upgrade", W_DENY, L_MAIN, NULL, false, "http://acme.atlassian.net/x", "x", NULL, NULL,
     true, false, REFUSED(403, "host_not_allowed")},

    /* ---- CONNECT ---- */
    {"connect mapped without CA", W_DENY, L_MAIN, NULL, true, "acme.atlassian.net:443", NULL, NULL,
     NULL, false, false, REFUSED(403, "interception_off")},
    {"connect unmapped deny", W_DENY, L_MAIN, NULL, true, "evil.example:443", NULL, NULL, NULL,
     false, false, REFUSED(403, "host_not_allowed")},
    {"connect unmapped tunnel", W_TUNNEL, L_MAIN, NULL, true, "evil.example:443", NULL, NULL, NULL,
     false, false, .action = ROUTE_CONNECT_TUNNEL, .mode = "tunnel"},
    {"connect media under deny", W_DENY, L_MAIN, NULL, true, "api.media.atlassian.com:443", NULL,
     NULL, NULL, false, false, .action = ROUTE_CONNECT_TUNNEL, .mode = "tunnel"},
    {"connect without port", W_DENY, L_MAIN, NULL, true, "acme.atlassian.net", NULL, NULL, NULL,
     false, false, REFUSED(400, "bad_request")},
    {"connect numeric", W_DENY, L_MAIN, NULL, true, "2130706433:443", NULL, NULL, NULL, false,
     false, REFUSED(403, "host_not_allowed")},
    {"connect ipv4 deny", W_DENY, L_MAIN, NULL, true, "10.0.0.1:443", NULL, NULL, NULL, false,
     false, REFUSED(403, "host_not_allowed")},
    {"connect loop", W_TUNNEL, L_MAIN, NULL, true, "127.0.0.1:8082", NULL, NULL, NULL, false, false,
     REFUSED(508, "loop_detected")},
    {"connect loop v6", W_TUNNEL, L_MAIN, NULL, true, "[::1]:8080", NULL, NULL, NULL, false, false,
     REFUSED(508, "loop_detected")},
    {"connect on site listener", W_DENY, L_SITE, NULL, true, "acme.atlassian.net:443", NULL, NULL,
     NULL, false, false, REFUSED(405, "method_not_allowed")},
    {"connect inside tunnel", W_DENY, L_MAIN, "acme.atlassian.net", true, "acme.atlassian.net:443",
     NULL, NULL, NULL, false, false, REFUSED(400, "bad_request")},

    /* ---- inside an intercepted tunnel ---- */
    {"tunnel origin form", W_DENY, L_MAIN, "acme.atlassian.net", false, "/rest/api/3/myself",
     "acme.atlassian.net", NULL, NULL, false, false,
     SITE_OK("intercept", "acme.atlassian.net", "https://acme.atlassian.net/rest/api/3/myself")},
    {"tunnel Host with port", W_DENY, L_MAIN, "acme.atlassian.net", false, "/x",
     "acme.atlassian.net:443", NULL, NULL, false, false,
     SITE_OK("intercept", "acme.atlassian.net", NULL)},
    {"tunnel other Host", W_DENY, L_MAIN, "acme.atlassian.net", false, "/x", "beta.atlassian.net",
     NULL, NULL, false, false, REFUSED(421, "site_unknown")},
    {"tunnel absolute other host", W_DENY, L_MAIN, "acme.atlassian.net", false,
     "https://beta.atlassian.net/x", "beta.atlassian.net", NULL, NULL, false, false,
     REFUSED(403, "host_not_allowed")},
    {"tunnel absolute same host", W_DENY, L_MAIN, "acme.atlassian.net", false,
     "https://acme.atlassian.net/x", "acme.atlassian.net", NULL, NULL, false, false,
     SITE_OK("intercept", "acme.atlassian.net", NULL)},
    /* The tunnel's host left the site map (a reload after the CONNECT): both forms refuse. */
    {"tunnel host gone, origin form", W_DENY, L_MAIN, "gone.atlassian.net", false, "/x",
     "gone.atlassian.net", NULL, NULL, false, false, REFUSED(421, "site_unknown")},
    {"tunnel host gone, absolute form", W_DENY, L_MAIN, "gone.atlassian.net", false,
     "https://gone.atlassian.net/x", "gone.atlassian.net", NULL, NULL, false, false,
     REFUSED(421, "site_unknown")},

    /* ---- gateway, main listener ---- */
    {"gateway SITE.localhost", W_DENY, L_MAIN, NULL, false, "/rest/api/3/myself",
     "acme.localhost:8080", NULL, NULL, false, false,
     SITE_OK("gateway", "acme.atlassian.net", "https://acme.atlassian.net/rest/api/3/myself")},
    {"gateway ALIAS.localhost", W_DENY, L_MAIN, NULL, false, "/x", "b.localhost:8080", NULL, NULL,
     false, false, SITE_OK("gateway", "beta.atlassian.net", NULL)},
    {"gateway unknown", W_DENY, L_MAIN, NULL, false, "/x", "nosuch.localhost", NULL, NULL, false,
     false, REFUSED(421, "site_unknown")},
    {"gateway loopback with 3 sites", W_DENY, L_MAIN, NULL, false, "/x", "127.0.0.1:8080", NULL,
     NULL, false, false, REFUSED(421, "site_unknown")},
    {"gateway no Host", W_DENY, L_MAIN, NULL, false, "/x", NULL, NULL, NULL, false, false,
     REFUSED(421, "site_unknown")},
    {"gateway double slash", W_DENY, L_MAIN, NULL, false, "//acme.atlassian.net/x",
     "acme.localhost", NULL, NULL, false, false, REFUSED(400, "bad_request")},
    {"gateway asterisk", W_DENY, L_MAIN, NULL, false, "*", "acme.localhost", NULL, NULL, false,
     false, REFUSED(400, "bad_request")},
    {"gateway foreign origin", W_DENY, L_MAIN, NULL, false, "/x", "acme.localhost", "null", NULL,
     false, false, REFUSED(403, "origin_not_allowed")},

    /* ---- a site's own listener (sandbox) ---- */
    {"site listener loopback Host", W_DENY, L_SITE, NULL, false, "/x", "127.0.0.1:8082", NULL, NULL,
     false, false, SITE_OK("gateway", "sandbox.atlassian.net", "https://sandbox.atlassian.net/x")},
    {"site listener localhost", W_DENY, L_SITE, NULL, false, "/x", "localhost:8082", NULL, NULL,
     false, false, SITE_OK("gateway", "sandbox.atlassian.net", NULL)},
    {"site listener other gateway name", W_DENY, L_SITE, NULL, false, "/x", "acme.localhost:8082",
     NULL, NULL, false, false, SITE_OK("gateway", "sandbox.atlassian.net", NULL)},
    {"site listener server name", W_DENY, L_SITE, NULL, false, "/x", "credproxy:8082", NULL, NULL,
     false, false, SITE_OK("gateway", "sandbox.atlassian.net", NULL)},
    {"site listener site host", W_DENY, L_SITE, NULL, false, "/x", "sandbox.atlassian.net", NULL,
     NULL, false, false, SITE_OK("gateway", "sandbox.atlassian.net", NULL)},
    {"site listener ip literal", W_DENY, L_SITE, NULL, false, "/x", "10.1.2.3:8082", NULL, NULL,
     false, false, SITE_OK("gateway", "sandbox.atlassian.net", NULL)},
    {"site listener ipv6 literal", W_DENY, L_SITE, NULL, false, "/x", "[fd00::1]:8082", NULL, NULL,
     false, false, SITE_OK("gateway", "sandbox.atlassian.net", NULL)},
    {"site listener rebinding", W_DENY, L_SITE, NULL, false, "/x", "attacker.example:8082", NULL,
     NULL, false, false, REFUSED(421, "misdirected")},
    {"site listener other site host", W_DENY, L_SITE, NULL, false, "/x", "acme.atlassian.net", NULL,
     NULL, false, false, REFUSED(421, "misdirected")},
    {"site listener server name look-alike", W_DENY, L_SITE, NULL, false, "/x",
     "credproxy.example:8082", NULL, NULL, false, false, REFUSED(421, "misdirected")},
    {"site listener bad Host byte", W_DENY, L_SITE, NULL, false, "/x", "attacker.example\xa0", NULL,
     NULL, false, false, REFUSED(421, "misdirected")},
    {"site listener no Host", W_DENY, L_SITE, NULL, false, "/x", NULL, NULL, NULL, false, false,
     REFUSED(421, "misdirected")},
    {"site listener absolute other site", W_DENY, L_SITE, NULL, false,
     "http://acme.atlassian.net/x", "acme.atlassian.net", NULL, NULL, false, false,
     REFUSED(421, "misdirected")},
    {"site listener absolute unmapped tunnel", W_TUNNEL, L_SITE, NULL, false,
     "http://other.example/x", "other.example", NULL, NULL, false, false,
     REFUSED(421, "misdirected")},
    {"site listener absolute own site", W_DENY, L_SITE, NULL, false,
     "http://sandbox.atlassian.net/x", "sandbox.atlassian.net", NULL, NULL, false, false,
     SITE_OK("gateway", "sandbox.atlassian.net", "https://sandbox.atlassian.net/x")},
    {"site listener cross-site fetch", W_DENY, L_SITE, NULL, false, "/x", "localhost:8082", NULL,
     "cross-site", false, false, REFUSED(403, "origin_not_allowed")},
};

static void run_row(struct world *const worlds[2], const struct row *t)
{
    struct route_listener main_l = {.is_site = false};
    struct route_listener site_l = {
        .is_site = true, .site_host = "sandbox.atlassian.net", .site_port = 443};
    struct route_self self = {.ports = {8080, 8082, 9090}, .nports = 3, .token = "abc"};
    struct hostmap_authority tun;
    struct route_input in = {
        .world = worlds[t->world],
        .listener = t->listener == L_SITE ? &site_l : &main_l,
        .self = &self,
        .is_connect = t->connect,
        .upgrade = t->upgrade,
        .looped = t->looped,
        .target = t->target,
        .target_len = strlen(t->target),
        .host = t->host,
        .host_len = t->host ? strlen(t->host) : 0,
        .origin = t->origin,
        .origin_len = t->origin ? strlen(t->origin) : 0,
        .fetch_site = t->fetch_site,
        .fetch_site_len = t->fetch_site ? strlen(t->fetch_site) : 0,
    };
    struct route r;

    if (t->tunnel) {
        memset(&tun, 0, sizeof(tun));
        snprintf(tun.host, sizeof(tun.host), "%s", t->tunnel);
        tun.port = 443;
        tun.port_given = true;
        in.tunnel = &tun;
    }
    route_request(&in, &r);
    CHECK_MSG(r.action == t->action, "%s: action %d, want %d (%d %s: %s)", t->what, r.action,
              t->action, r.status, r.code ? r.code : "-", r.message);
    if (t->action == ROUTE_REFUSE) {
        CHECK_MSG(r.status == t->status, "%s: status %d, want %d", t->what, r.status, t->status);
        CHECK_MSG(r.code && strcmp(r.code, t->code) == 0, "%s: code %s, want %s", t->what,
                  r.code ? r.code : "(null)", t->code);
        CHECK_MSG(r.message[0] != '\0', "%s: a refusal says why", t->what);
        CHECK_MSG(r.url == NULL && r.gateway_origin == NULL, "%s: nothing to forward", t->what);
    } else {
        CHECK_MSG(r.status == 0 && r.code == NULL, "%s: no refusal", t->what);
        CHECK_MSG(strcmp(r.mode, t->mode) == 0, "%s: mode %s, want %s", t->what, r.mode, t->mode);
    }
    /* Only ROUTE_SITE and CONNECT interception carry a site: nothing else may get a credential. */
    if (t->site) {
        CHECK_MSG(r.site && strcmp(r.site->host, t->site) == 0, "%s: site %s, want %s", t->what,
                  r.site ? r.site->host : "(none)", t->site);
    } else if (r.action != ROUTE_CONNECT_INTERCEPT) {
        CHECK_MSG(r.action != ROUTE_SITE, "%s: no credentialed route", t->what);
    }
    if (t->url)
        CHECK_MSG(r.url && strcmp(r.url, t->url) == 0, "%s: url %s, want %s", t->what,
                  r.url ? r.url : "(null)", t->url);
    route_clear(&r);
}

static void test_via(void)
{
    CHECK(route_via_is_ours("1.1 credproxy-abc", 17, "abc"));
    CHECK(route_via_is_ours("1.0 fred, 1.1 credproxy-abc", 27, "abc"));
    CHECK(route_via_is_ours("1.1 credproxy-abc, 1.1 other", 28, "abc"));
    CHECK(route_via_is_ours("1.1 credproxy-abc (comment)", 27, "abc"));
    CHECK(!route_via_is_ours("1.1 credproxy-abcd", 18, "abc"));
    CHECK(!route_via_is_ours("1.1 credproxy-ab", 16, "abc"));
    CHECK(!route_via_is_ours("1.1 credproxy-xyz", 17, "abc"));
    CHECK(!route_via_is_ours("1.1 credproxy-abc", 17, ""));
    CHECK(!route_via_is_ours(NULL, 0, "abc"));
}

static void test_media(void)
{
    CHECK(route_is_media_host("api.media.atlassian.com"));
    CHECK(route_is_media_host("API.Media.Atlassian.com"));
    CHECK(!route_is_media_host("media.atlassian.com"));
    CHECK(!route_is_media_host("api.media.atlassian.com.evil.com"));
    CHECK(!route_is_media_host("evil-api.media.atlassian.com"));
    CHECK(!route_is_media_host(NULL));
}

int main(void)
{
    struct world *worlds[2] = {load_world("deny"), load_world("tunnel")};

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        run_row(worlds, &rows[i]);
    test_via();
    test_media();
    world_unref(worlds[0]);
    world_unref(worlds[1]);
    TEST_DONE();
}
