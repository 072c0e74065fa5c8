/*
 * Unit tests for gwroute: which product a site path belongs to, the gateway
 * URL built for it (the path after the prefix kept exactly), and which
 * agent paths on api.atlassian.com name a cloudId (and which must not: other
 * products, look-alikes, encoded slashes, non-hex ids).
 */
#include <stdlib.h>
#include <string.h>

#include "gwroute.h"
#include "testlib.h"
#include "util.h"

#define ID "1a11d016-8984-4c3e-b9ab-142dd06acb1b"

static void test_url(void)
{
    static const struct {
        const char *path, *want;
    } cases[] = {
        {"/rest/api/3/myself", GWROUTE_ORIGIN "/ex/jira/" ID "/rest/api/3/myself"},
        {"/rest/api/2/issue/ACME-1?expand=names",
         GWROUTE_ORIGIN "/ex/jira/" ID "/rest/api/2/issue/ACME-1?expand=names"},
        {"/wiki/rest/api/user/current",
         GWROUTE_ORIGIN "/ex/confluence/" ID "/wiki/rest/api/user/current"},
        {"/wiki/api/v2/pages?limit=5",
         GWROUTE_ORIGIN "/ex/confluence/" ID "/wiki/api/v2/pages?limit=5"},
        {"/wiki", GWROUTE_ORIGIN "/ex/confluence/" ID "/wiki"},
        {"/wiki?x=1", GWROUTE_ORIGIN "/ex/confluence/" ID "/wiki?x=1"},
        {"/wikipedia/x", GWROUTE_ORIGIN "/ex/jira/" ID "/wikipedia/x"}, /* not /wiki */
        {"/rest/api/3/search/jql", GWROUTE_ORIGIN "/ex/jira/" ID "/rest/api/3/search/jql"},
        {"", GWROUTE_ORIGIN "/ex/jira/" ID "/"},
        {"/", GWROUTE_ORIGIN "/ex/jira/" ID "/"},
    };
    for (size_t i = 0; i < UTIL_ARRAY_LEN(cases); i++) {
        char *u = gwroute_url(cases[i].path, strlen(cases[i].path), ID);
        CHECK_STR(u, cases[i].want);
        free(u);
    }
    /* paths that would climb out of /ex/jira/ID once dot segments are removed (fuzz_gwroute) */
    static const char *const climbs[] = {
        "/../../jira/0b0b/rest/api/3/myself",
        "/rest/../../../confluence/0b0b/wiki",
        "/%2e%2e/%2E./jira/0b0b/x",
        "/..",
        "/./x",
        "/x/.",
        "/x\\..\\..\\y",
        "/x/..%2f..%2fy",
        "/x/%5C",
    };
    for (size_t i = 0; i < UTIL_ARRAY_LEN(climbs); i++) {
        char *u = gwroute_url(climbs[i], strlen(climbs[i]), ID);
        CHECK_MSG(u == NULL, "url for %s: %s", climbs[i], u ? u : "");
        free(u);
    }
    /* dots that are not whole segments, and dot segments in the query, are kept */
    char *u = gwroute_url("/a.b/..c/x?next=/../y", 21, ID);
    CHECK_STR(u, GWROUTE_ORIGIN "/ex/jira/" ID "/a.b/..c/x?next=/../y");
    free(u);
    CHECK(gwroute_url("/x", 2, "") == NULL);
    CHECK(gwroute_url("/x", 2, NULL) == NULL);
    char p[8];
    CHECK(gwroute_prefix(GWROUTE_JIRA, ID, p, sizeof(p)) == -1); /* does not fit */
}

static void test_parse(void)
{
    static const struct {
        const char *path;
        bool ok;
        enum gwroute_product prod;
        const char *id;
    } cases[] = {
        {"/ex/jira/" ID "/rest/api/3/myself", true, GWROUTE_JIRA, ID},
        {"/ex/confluence/" ID "/wiki/rest/api/space", true, GWROUTE_CONFLUENCE, ID},
        {"/ex/jira/" ID, true, GWROUTE_JIRA, ID},
        {"/ex/jira/" ID "?x", true, GWROUTE_JIRA, ID},
        {"/ex/jira/1A11D016-8984-4C3E-B9AB-142DD06ACB1B/x", true, GWROUTE_JIRA, ID},
        {"/ex/jira/", false, 0, NULL},
        {"/ex/jira", false, 0, NULL},
        {"/ex/bitbucket/" ID "/x", false, 0, NULL},
        {"/oauth/token", false, 0, NULL},
        {"/ex/jira/" ID "evil/x", false, 0, NULL}, /* 'v' is no hex digit */
        {"/ex/jira/..%2F" ID "/x", false, 0, NULL},
        {"/ex/jira/" ID "%2Fx", false, 0, NULL},
        {"/EX/jira/" ID "/x", false, 0, NULL},
        {"/ex//jira/" ID "/x", false, 0, NULL},
        {"//ex/jira/" ID "/x", false, 0, NULL},
        /* dot segments climb to another cloudId upstream (fuzz_gwroute) */
        {"/ex/jira/" ID "/../0b0b/rest/api/3/myself", false, 0, NULL},
        {"/ex/jira/a/../\x9e/x/y", false, 0, NULL},
        {"/ex/confluence/" ID "/%2e%2e/%2e%2e/jira/0b0b", false, 0, NULL},
        {"/ex/jira/" ID "/./x", false, 0, NULL},
        {"/ex/jira/" ID "/x\\y", false, 0, NULL},
        {"/ex/jira/" ID "/x%2fy", false, 0, NULL},
        {"/ex/jira/" ID "/x?next=/../y", true, GWROUTE_JIRA, ID},
        {"/ex/jira/" ID "/a..b/.x", true, GWROUTE_JIRA, ID},
        {"/ex/jira/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0/x", false, 0,
         NULL}, /* 65: too long */
    };
    for (size_t i = 0; i < UTIL_ARRAY_LEN(cases); i++) {
        enum gwroute_product prod = 99;
        char id[CONFIG_MAX_CLOUD_ID + 1] = "";
        bool ok = gwroute_parse(cases[i].path, strlen(cases[i].path), &prod, id, sizeof(id));
        CHECK_MSG(ok == cases[i].ok, "parse %s", cases[i].path);
        if (ok && cases[i].ok) {
            CHECK(prod == cases[i].prod);
            CHECK_STR(id, cases[i].id);
        }
    }
    char small[8];
    enum gwroute_product prod;
    CHECK(!gwroute_parse("/ex/jira/" ID "/x", strlen("/ex/jira/" ID "/x"), &prod, small,
                         sizeof(small)));
}

int main(void)
{
    test_url();
    test_parse();
    TEST_DONE();
}
