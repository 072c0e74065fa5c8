/*
 * test_route_gateway: the API-gateway decisions of the route stage (issue
 * 10) as a table. A site request of a via: api_gateway credential is marked
 * for the gateway; an agent's own https://api.atlassian.com/ex/{jira|
 * confluence}/{cloudId}/ request gets that site (cloud_id: from the config,
 * or a discovered one through the lookup) with its URL unchanged; every
 * other api.atlassian.com path, a cloudId of a site whose credential is not
 * for the gateway, and api.media.atlassian.com get no credential.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "route.h"
#include "testlib.h"
#include "util.h"
#include "world.h"

#define ID_CFG "1a11d016-8984-4c3e-b9ab-142dd06acb1b"   /* acme: cloud_id: in the config */
#define ID_DISC "00000000-0000-0000-0000-000000001235"  /* beta: discovered (the lookup) */
#define ID_PLAIN "00000000-0000-0000-0000-00000000abcd" /* plain: an unscoped credential */

static const char *const YAML = "listen: 127.0.0.1:8080\n"
                                "credentials:\n"
                                "  scoped:\n"
                                "    email: bot@example.com\n"
                                "    token: \"not-a-real-token-0123456789\"\n"
                                "    via: api_gateway\n"
                                "  plain:\n"
                                "    email: bot@example.com\n"
                                "    token: \"not-a-real-token-9876543210\"\n"
                                "sites:\n"
                                "  - domain: acme\n"
                                "    credential: scoped\n"
                                "    cloud_id: " ID_CFG "\n"
                                "  - domain: beta\n"
                                "    credential: scoped\n"
                                "  - domain: plain\n"
                                "    credential: plain\n"
                                "    cloud_id: " ID_PLAIN "\n"
                                "unknown_hosts: deny\n";

static bool lookup(void *arg, const char *id, char *host, size_t cap, int *port)
{
    (void)arg;
    if (strcmp(id, ID_DISC) != 0)
        return false;
    snprintf(host, cap, "beta.atlassian.net");
    *port = 443;
    return true;
}

struct row {
    const char *target;
    enum route_action action;
    const char *site; /* expected site host, NULL = none */
    bool via_gateway; /* expected */
    bool agent_url;   /* expected */
    const char *url;  /* expected, NULL = not checked */
};

static const struct row rows[] = {
    /* Site URLs of a gateway credential: marked, URL still the site's (the pipeline adds /ex/...).
     */
    {"https://acme.atlassian.net/rest/api/3/myself", ROUTE_SITE, "acme.atlassian.net", true, false,
     "https://acme.atlassian.net/rest/api/3/myself"},
    {"http://beta.atlassian.net/wiki/rest/api/space", ROUTE_SITE, "beta.atlassian.net", true, false,
     NULL},
    {"http://plain.atlassian.net/rest/api/3/myself", ROUTE_SITE, "plain.atlassian.net", false,
     false, NULL},
    /* The agent's own gateway URLs for a configured or discovered cloudId. */
    {"https://api.atlassian.com/ex/jira/" ID_CFG "/rest/api/3/myself", ROUTE_SITE,
     "acme.atlassian.net", true, true,
     "https://api.atlassian.com/ex/jira/" ID_CFG "/rest/api/3/myself"},
    {"http://api.atlassian.com/ex/confluence/" ID_CFG "/wiki/rest/api/space", ROUTE_SITE,
     "acme.atlassian.net", true, true,
     "https://api.atlassian.com/ex/confluence/" ID_CFG "/wiki/rest/api/space"},
    {"https://api.atlassian.com/ex/jira/" ID_DISC "/rest/api/3/myself", ROUTE_SITE,
     "beta.atlassian.net", true, true, NULL},
    {"https://API.atlassian.com:443/ex/jira/" ID_CFG "/x", ROUTE_SITE, "acme.atlassian.net", true,
     true, NULL},
    /* Never a credential: */
    {"https://api.atlassian.com/ex/jira/" ID_PLAIN "/rest/api/3/myself", ROUTE_REFUSE, NULL, false,
     false, NULL}, /* the site's credential is not for the gateway */
    {"https://api.atlassian.com/ex/jira/00000000-0000-0000-0000-0000000fffff/x", ROUTE_REFUSE, NULL,
     false, false, NULL}, /* unknown cloudId */
    {"https://api.atlassian.com/oauth/token/accessible-resources", ROUTE_REFUSE, NULL, false, false,
     NULL},
    {"https://api.atlassian.com/ex/bitbucket/" ID_CFG "/x", ROUTE_REFUSE, NULL, false, false, NULL},
    {"https://api.atlassian.com/ex/jira/" ID_CFG "x/rest", ROUTE_REFUSE, NULL, false, false, NULL},
    {"https://api.atlassian.com:8443/ex/jira/" ID_CFG "/x", ROUTE_REFUSE, NULL, false, false, NULL},
    {"https://evil.api.atlassian.com/ex/jira/" ID_CFG "/x", ROUTE_REFUSE, NULL, false, false, NULL},
    {"https://api.atlassian.com.evil.com/ex/jira/" ID_CFG "/x", ROUTE_REFUSE, NULL, false, false,
     NULL},
    {"https://api.media.atlassian.com/ex/jira/" ID_CFG "/x", ROUTE_PASS, NULL, false, false, NULL},
};

int main(void)
{
    char path[] = "/tmp/test_route_gw_XXXXXX";
    int fd = mkstemp(path);
    struct config *cfg = NULL;
    char *err = NULL, *warn = NULL;
    if (fd < 0)
        abort();
    FILE *f = fdopen(fd, "w");
    fputs(YAML, f);
    fclose(f);
    if (config_load_file(path, &cfg, &err) != 0) {
        fprintf(stderr, "config: %s\n", err ? err : "?");
        abort();
    }
    unlink(path);
    struct world *w = world_new(cfg, &err, &warn);
    free(warn);
    if (!w)
        abort();
    for (size_t i = 0; i < UTIL_ARRAY_LEN(rows); i++) {
        const struct row *row = &rows[i];
        struct route_listener ls = {0};
        struct route_input in = {
            .world = w,
            .cloud_lookup = lookup,
            .listener = &ls,
            .target = row->target,
            .target_len = strlen(row->target),
        };
        struct route rt;
        route_request(&in, &rt);
        CHECK_MSG(rt.action == row->action, "%s: action %d, want %d", row->target, rt.action,
                  row->action);
        if (row->site)
            CHECK_MSG(rt.site && strcmp(rt.site->host, row->site) == 0, "%s: site", row->target);
        else
            CHECK_MSG(rt.action != ROUTE_SITE, "%s: no credential", row->target);
        CHECK_MSG(rt.via_gateway == row->via_gateway, "%s: via_gateway", row->target);
        CHECK_MSG(rt.gateway_agent_url == row->agent_url, "%s: agent url", row->target);
        if (row->url)
            CHECK_STR(rt.url, row->url);
        route_clear(&rt);
    }
    /* CONNECT api.atlassian.com:443 with a gateway credential: intercepted (here: no CA, so
     * interception_off); inside such a tunnel only /ex/{product}/{cloudId}/ gets a site. */
    {
        struct route_listener ls = {0};
        struct route_input in = {.world = w,
                                 .cloud_lookup = lookup,
                                 .listener = &ls,
                                 .is_connect = true,
                                 .target = "api.atlassian.com:443",
                                 .target_len = strlen("api.atlassian.com:443")};
        struct route rt;
        route_request(&in, &rt);
        CHECK(rt.action == ROUTE_REFUSE && rt.status == 403 &&
              strcmp(rt.code, "interception_off") == 0);
        route_clear(&rt);
        struct hostmap_authority tun = {.port = 443, .port_given = true};
        snprintf(tun.host, sizeof(tun.host), "api.atlassian.com");
        static const struct {
            const char *target, *host;
            enum route_action action;
            int status;
        } trows[] = {
            {"/ex/jira/" ID_CFG "/rest/api/3/myself", "api.atlassian.com", ROUTE_SITE, 0},
            {"https://api.atlassian.com/ex/confluence/" ID_DISC "/wiki/x", "api.atlassian.com",
             ROUTE_SITE, 0},
            {"/oauth/token/accessible-resources", "api.atlassian.com", ROUTE_REFUSE, 403},
            {"/ex/jira/" ID_PLAIN "/x", "api.atlassian.com", ROUTE_REFUSE, 403},
            {"/ex/jira/" ID_CFG "/x", "acme.atlassian.net", ROUTE_REFUSE, 421},
        };
        for (size_t i = 0; i < UTIL_ARRAY_LEN(trows); i++) {
            struct route_input ti = {.world = w,
                                     .cloud_lookup = lookup,
                                     .listener = &ls,
                                     .tunnel = &tun,
                                     .target = trows[i].target,
                                     .target_len = strlen(trows[i].target),
                                     .host = trows[i].host,
                                     .host_len = strlen(trows[i].host)};
            route_request(&ti, &rt);
            CHECK_MSG(rt.action == trows[i].action && rt.status == trows[i].status,
                      "tunnel %s: action %d status %d", trows[i].target, rt.action, rt.status);
            if (trows[i].action == ROUTE_SITE)
                CHECK(rt.gateway_agent_url && rt.url &&
                      strncmp(rt.url, "https://api.atlassian.com/ex/", 29) == 0);
            route_clear(&rt);
        }
    }
    world_unref(w);
    TEST_DONE();
}
