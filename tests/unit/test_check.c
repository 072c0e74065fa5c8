/*
 * test_check: the pure diagnosis of `credproxy check` from a table: every
 * network failure, every Atlassian answer shape of the facts note (§1.3),
 * the expiry rules, the domain hints, the JSON field reader and the output
 * lines. Each row also states what must NOT appear (e.g. a credential cause
 * for a network failure, a query string from a Location).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "check.h"
#include "testlib.h"

#define DAY 86400
#define NOW 1780000000LL     /* 2026-05-28 */
#define EXPIRED 1767225600LL /* 2026-01-01 */

enum step { SITE, JIRA, CONF };

struct row {
    const char *name;
    enum step step;
    int target; /* 0 basic, 1 basic expired, 2 bearer, 3 expires in 5 days, 4 typo host, 5 dotted,
                   6 typo host from ATLASSIAN_SITE, 7 the embedded default */
    struct check_exchange x;
    enum check_outcome outcome;
    const char *cause;
    long status;
    bool site_continues; /* SITE rows: the return value */
    const char *want[6];
    const char *never[3];
};

static const char good_user[] =
    "{\"self\":\"https://acme.atlassian.net/rest/api/3/user?accountId=5b10ac8d82e05b22cc7d4ef5\","
    "\"accountId\":\"5b10ac8d82e05b22cc7d4ef5\",\"accountType\":\"atlassian\","
    "\"emailAddress\":\"svc-bot@example.com\",\"avatarUrls\":{\"48x48\":\"https://x/y\"},"
    "\"displayName\":\"Service "
    "Bot\",\"active\":true,\"timeZone\":\"Etc/UTC\",\"locale\":\"en_US\"}";
static const char conf_user[] = "{\"type\":\"known\",\"accountId\":\"5b10ac8d82e05b22cc7d4ef5\","
                                "\"accountType\":\"atlassian\",\"publicName\":\"Service Bot\","
                                "\"displayName\":\"Service Bot\"}";
static const char conf_anon[] = "{\"type\":\"anonymous\",\"displayName\":\"Anonymous\"}";
static const char stu[] =
    "{\"errorMessage\": \"Site temporarily unavailable\", \"errorCode\": \"OTHER\"}";
static const char unauth[] = "Client must be authenticated to access this resource.";
static const char legacy[] = "Basic authentication with passwords is deprecated.  For more "
                             "information, see: https://developer.atlassian.com/cloud/confluence/"
                             "deprecation-notice-basic-auth/\n";

#define REJECT_WORDS                                                                               \
    "svc-bot@example.com", "matches your Atlassian account email exactly",                         \
        "no extra spaces before or after", "hasn't expired or been revoked",                       \
        "not \"Create API token with scopes\""

static const struct row rows[] = {
    /* (a) the site */
    {"dns",
     SITE,
     0,
     {.curl_code = CURLE_COULDNT_RESOLVE_HOST,
      .curl_error = "Could not resolve host: acme.atlassian.net"},
     CHECK_FAIL,
     "dns_failure",
     0,
     false,
     {"acme.atlassian.net could not be resolved", "check DNS, network or upstream.proxy",
      "Could not resolve host: acme.atlassian.net", "not the site or the credential"},
     {"rejected", "unknown site", "Verify your Atlassian domain"}},
    {"dns typo",
     SITE,
     4,
     {.curl_code = CURLE_COULDNT_RESOLVE_HOST, .curl_error = "nope"},
     CHECK_FAIL,
     "dns_failure",
     0,
     false,
     {"could not be resolved", "make sure you didn't include .atlassian.net", "`domain: test`"},
     {"unknown site", "ATLASSIAN_SITE"}},
    {"dns typo, embedded default",
     SITE,
     6,
     {.curl_code = CURLE_COULDNT_RESOLVE_HOST, .curl_error = "nope"},
     CHECK_FAIL,
     "dns_failure",
     0,
     false,
     {"make sure you didn't include .atlassian.net", "`ATLASSIAN_SITE=test`"},
     {"domain:"}},
    {"unknown site, embedded default",
     SITE,
     7,
     {.status = 404, .body = "{\"errorMessage\":\"Site temporarily unavailable\"}"},
     CHECK_FAIL,
     "site_unknown",
     404,
     false,
     {"unknown site", "404", "e.g. `ATLASSIAN_SITE=test` for test.atlassian.net"},
     {"domain:"}},
    {"connect",
     SITE,
     0,
     {.curl_code = CURLE_COULDNT_CONNECT,
      .curl_error = "Failed to connect to acme.atlassian.net port 443"},
     CHECK_FAIL,
     "connect_failure",
     0,
     false,
     {"cannot connect", "Failed to connect to acme.atlassian.net port 443",
      "not a credential problem"},
     {"rejected"}},
    {"tls",
     SITE,
     0,
     {.curl_code = CURLE_PEER_FAILED_VERIFICATION,
      .curl_error = "SSL certificate problem: unable to get local issuer certificate"},
     CHECK_FAIL,
     "tls_failure",
     0,
     false,
     {"TLS failure", "unable to get local issuer certificate", "upstream.ca_file"},
     {"rejected"}},
    {"tls handshake",
     SITE,
     0,
     {.curl_code = CURLE_SSL_CONNECT_ERROR, .curl_error = NULL},
     CHECK_FAIL,
     "tls_failure",
     0,
     false,
     {"TLS failure"},
     {NULL}},
    {"timeout",
     SITE,
     0,
     {.curl_code = CURLE_OPERATION_TIMEDOUT, .curl_error = "Connection timed out"},
     CHECK_FAIL,
     "timeout",
     0,
     false,
     {"did not answer in time", "Connection timed out"},
     {NULL}},
    {"proxy",
     SITE,
     0,
     {.curl_code = CURLE_COULDNT_RESOLVE_PROXY, .curl_error = "Could not resolve proxy: corp"},
     CHECK_FAIL,
     "proxy_failure",
     0,
     false,
     {"upstream proxy", "upstream.proxy"},
     {NULL}},
    {"recv",
     SITE,
     0,
     {.curl_code = CURLE_RECV_ERROR, .curl_error = "Connection reset by peer"},
     CHECK_FAIL,
     "network_error",
     0,
     false,
     {"network error", "Connection reset by peer"},
     {NULL}},
    {"404 stu",
     SITE,
     0,
     {.status = 404, .body = stu},
     CHECK_FAIL,
     "site_unknown",
     404,
     false,
     {"unknown site", "404 \"Site temporarily unavailable\"", "Verify your Atlassian domain"},
     {"didn't include", "rejected"}},
    {"404 stu dotted",
     SITE,
     5,
     {.status = 404, .body = stu},
     CHECK_FAIL,
     "site_unknown",
     404,
     false,
     {"unknown site", "has a dot in it (acme.jira)"},
     {NULL}},
    {"tenant ok",
     SITE,
     0,
     {.status = 200, .body = "{\"cloudId\":\"a436116f-02ce-4520-8fbb-7301462a1674\"}"},
     CHECK_OK,
     "ok",
     0,
     true,
     {""},
     {NULL}},
    {"tenant plain 404 (Data Center)",
     SITE,
     0,
     {.status = 404, .body = "Not Found"},
     CHECK_OK,
     "ok",
     0,
     true,
     {""},
     {NULL}},

    /* (b) Jira */
    {"jira ok",
     JIRA,
     0,
     {.status = 200, .body = good_user},
     CHECK_OK,
     "ok",
     200,
     false,
     {"as \"Service Bot\" (accountId 5b10ac8d82e05b22cc7d4ef5)"},
     {"expires"}},
    {"jira ok soon expiring",
     JIRA,
     3,
     {.status = 200, .body = good_user},
     CHECK_OK,
     "ok",
     200,
     false,
     {"as \"Service Bot\"", "the token expires on 2026-06-02 (in 5 days)"},
     {NULL}},
    {"jira 401 seraph",
     JIRA,
     0,
     {.status = 401, .seraph = "AUTHENTICATED_FAILED", .body = unauth},
     CHECK_FAIL,
     "credentials_rejected",
     401,
     false,
     {REJECT_WORDS, "401 Unauthorized, X-Seraph-LoginReason: AUTHENTICATED_FAILED"},
     {"expired on", "CAPTCHA"}},
    {"jira 401 legacy",
     JIRA,
     0,
     {.status = 401, .body = legacy},
     CHECK_FAIL,
     "credentials_rejected",
     401,
     false,
     {REJECT_WORDS},
     {"Seraph"}},
    {"jira 401 rejection words",
     JIRA,
     0,
     {.status = 401, .body = unauth},
     CHECK_FAIL,
     "credentials_rejected",
     401,
     false,
     {"email/token pair was rejected", "does not say which half is wrong",
      "https://id.atlassian.com/manage-profile/security/api-tokens"},
     {NULL}},
    {"jira 200 anonymous",
     JIRA,
     0,
     {.status = 200, .seraph = "AUTHENTICATED_FAILED", .body = "{\"baseUrl\":\"x\"}"},
     CHECK_FAIL,
     "credentials_rejected",
     200,
     false,
     {"anonymous", REJECT_WORDS},
     {NULL}},
    {"jira 401 expired",
     JIRA,
     1,
     {.status = 401, .seraph = "AUTHENTICATED_FAILED", .body = unauth},
     CHECK_FAIL,
     "token_expired",
     401,
     false,
     {"expired on 2026-01-01 per the config; create a new token"},
     {NULL}},
    {"jira 200 expired",
     JIRA,
     1,
     {.status = 200, .body = good_user},
     CHECK_FAIL,
     "token_expired",
     200,
     false,
     {"expired on 2026-01-01 per the config; create a new token", "correct `expires`"},
     {NULL}},
    {"jira captcha",
     JIRA,
     0,
     {.status = 401, .seraph = "AUTHENTICATION_DENIED", .body = ""},
     CHECK_FAIL,
     "captcha_required",
     401,
     false,
     {"CAPTCHA required", "AUTHENTICATION_DENIED", "Log in once in a browser",
      "svc-bot@example.com"},
     {"email/token pair"}},
    {"jira captcha 403 dc",
     JIRA,
     0,
     {.status = 403,
      .seraph = "AUTHENTICATION_DENIED",
      .denied_reason = "CAPTCHA_CHALLENGE; login-url=https://x/login.jsp",
      .body = "<html>"},
     CHECK_FAIL,
     "captcha_required",
     403,
     false,
     {"CAPTCHA required"},
     {"admin"}},
    {"jira captcha lower",
     JIRA,
     0,
     {.status = 200, .seraph = "authentication_denied", .body = ""},
     CHECK_FAIL,
     "captcha_required",
     200,
     false,
     {"CAPTCHA"},
     {NULL}},
    {"jira 403",
     JIRA,
     0,
     {.status = 403, .body = "{\"errorMessages\":[\"no\"]}"},
     CHECK_FAIL,
     "forbidden",
     403,
     false,
     {"authenticated, but not allowed (403)", "ask a Jira admin to grant the account access"},
     {"rejected", "Confluence"}},
    {"jira 403 xsrf",
     JIRA,
     0,
     {.status = 403, .body = "XSRF check failed"},
     CHECK_FAIL,
     "forbidden",
     403,
     false,
     {"XSRF check failed"},
     {"admin"}},
    {"jira 404 (Confluence-only site)",
     JIRA,
     0,
     {.status = 404, .body = stu},
     CHECK_SKIP,
     "not_on_site",
     404,
     false,
     {"not on this site", "Jira is not enabled"},
     {NULL}},
    {"jira 429",
     JIRA,
     0,
     {.status = 429, .retry_after = "30", .body = "{}"},
     CHECK_FAIL,
     "rate_limited",
     429,
     false,
     {"rate limited by Atlassian", "wait 30 seconds (Retry-After)", "not a credential failure"},
     {"rejected"}},
    {"jira 429 no retry-after",
     JIRA,
     0,
     {.status = 429, .body = "{}"},
     CHECK_FAIL,
     "rate_limited",
     429,
     false,
     {"wait a few minutes before retrying"},
     {NULL}},
    {"jira 429 date",
     JIRA,
     0,
     {.status = 429, .retry_after = "Wed, 21 Oct 2026 07:28:00 GMT\r\x1b[31m", .body = "{}"},
     CHECK_FAIL,
     "rate_limited",
     429,
     false,
     {"wait until Wed, 21 Oct 2026 07:28:00 GMT[31m"},
     {"\x1b", "\r"}},
    {"jira 302",
     JIRA,
     0,
     {.status = 302, .location = "https://id.atlassian.com/login?token=SECRETISH#frag", .body = ""},
     CHECK_FAIL,
     "redirected",
     302,
     false,
     {"redirected (302) to https://id.atlassian.com/login;", "never follows redirects"},
     {"SECRETISH", "frag"}},
    {"jira 503",
     JIRA,
     0,
     {.status = 503, .retry_after = "5", .body = ""},
     CHECK_FAIL,
     "server_error",
     503,
     false,
     {"answered 503", "wait 5 seconds"},
     {"rejected"}},
    {"jira 418",
     JIRA,
     0,
     {.status = 418, .body = ""},
     CHECK_FAIL,
     "unexpected_status",
     418,
     false,
     {"unexpected answer 418"},
     {NULL}},
    {"jira 200 not a user",
     JIRA,
     0,
     {.status = 200, .body = "<html>login</html>"},
     CHECK_FAIL,
     "unexpected_response",
     200,
     false,
     {"not with a user"},
     {NULL}},
    {"jira network mid-check",
     JIRA,
     0,
     {.curl_code = CURLE_OPERATION_TIMEDOUT, .curl_error = "Operation timed out after 60000 ms"},
     CHECK_FAIL,
     "timeout",
     0,
     false,
     {"Operation timed out after 60000 ms"},
     {"rejected"}},
    {"bearer 401",
     JIRA,
     2,
     {.status = 401, .body = unauth},
     CHECK_FAIL,
     "credentials_rejected",
     401,
     false,
     {"bearer token was rejected", "hasn't expired or been revoked"},
     {"email"}},

    /* (c) Confluence */
    {"conf ok",
     CONF,
     0,
     {.status = 200, .body = conf_user},
     CHECK_OK,
     "ok",
     200,
     false,
     {"as \"Service Bot\" (accountId 5b10ac8d82e05b22cc7d4ef5)"},
     {NULL}},
    {"conf 404 skip",
     CONF,
     0,
     {.status = 404, .body = stu},
     CHECK_SKIP,
     "not_on_site",
     404,
     false,
     {"not on this site", "Confluence is not enabled on this site"},
     {NULL}},
    {"conf anonymous type",
     CONF,
     0,
     {.status = 200, .body = conf_anon},
     CHECK_FAIL,
     "credentials_rejected",
     200,
     false,
     {"anonymous", REJECT_WORDS},
     {NULL}},
    {"conf 401 impersonate",
     CONF,
     0,
     {.status = 401,
      .body = "{\"message\":\"Request rejected because issuer is either not "
              "authorized or not authorized to impersonate\",\"status-code\":401}"},
     CHECK_FAIL,
     "credentials_rejected",
     401,
     false,
     {REJECT_WORDS},
     {NULL}},
    {"conf 403",
     CONF,
     0,
     {.status = 403, .body = ""},
     CHECK_FAIL,
     "forbidden",
     403,
     false,
     {"ask a Confluence admin"},
     {"Jira"}},
};

static void make_target(int kind, struct check_target *t)
{
    memset(t, 0, sizeof(*t));
    t->host = "acme.atlassian.net";
    t->credential = "svc";
    t->email = "svc-bot@example.com";
    t->now = NOW;
    switch (kind) {
    case 1:
        t->expires = EXPIRED;
        break;
    case 2:
        t->bearer = true;
        t->email = NULL;
        break;
    case 3:
        t->expires = 1780358400LL; /* 2026-06-02 */
        break;
    case 4:
        t->host = "acme.atlassian.net.atlassian.net";
        break;
    case 5:
        t->host = "acme.jira.atlassian.net";
        break;
    case 6:
        t->host = "acme.atlassian.net.atlassian.net";
        t->env_default = true;
        break;
    case 7:
        t->env_default = true;
        break;
    default:
        break;
    }
}

static void test_table(void)
{
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct row *r = &rows[i];
        struct check_target t;
        struct check_verdict v;
        char cloud[CHECK_MAX_FIELD];

        make_target(r->target, &t);
        if (r->step == SITE) {
            bool cont = check_diagnose_site(&t, &r->x, &v, cloud, sizeof(cloud));
            CHECK_MSG(cont == r->site_continues, "%s: continues=%d", r->name, cont);
            if (cont)
                continue;
        } else {
            check_diagnose_product(
                &t, r->step == JIRA ? CHECK_PRODUCT_JIRA : CHECK_PRODUCT_CONFLUENCE, &r->x, &v);
        }
        CHECK_MSG(v.outcome == r->outcome, "%s: outcome %d, want %d (%s)", r->name, v.outcome,
                  r->outcome, v.message);
        CHECK_MSG(strcmp(v.cause, r->cause) == 0, "%s: cause %s, want %s", r->name, v.cause,
                  r->cause);
        CHECK_MSG(v.status == r->status, "%s: status %ld, want %ld", r->name, v.status, r->status);
        for (size_t k = 0; k < 6 && r->want[k]; k++)
            CHECK_MSG(strstr(v.message, r->want[k]) != NULL, "%s: message lacks \"%s\": %s",
                      r->name, r->want[k], v.message);
        for (size_t k = 0; k < 3 && r->never[k]; k++)
            CHECK_MSG(strstr(v.message, r->never[k]) == NULL, "%s: message has \"%s\": %s", r->name,
                      r->never[k], v.message);
        /* Every FAIL is "<cause>. <fix>": a sentence that tells what to do. */
        if (v.outcome == CHECK_FAIL)
            CHECK_MSG(strstr(v.message, ". ") != NULL || strstr(v.message, "; ") != NULL,
                      "%s: no fix in: %s", r->name, v.message);
    }
}

static void test_site_cloud_id(void)
{
    struct check_target t;
    struct check_verdict v;
    char cloud[CHECK_MAX_FIELD];
    struct check_exchange x = {.status = 200,
                               .body = "{\"cloudId\":\"a436116f-02ce-4520-8fbb-7301462a1674\"}"};
    make_target(0, &t);
    CHECK(check_diagnose_site(&t, &x, &v, cloud, sizeof(cloud)));
    CHECK_STR(cloud, "a436116f-02ce-4520-8fbb-7301462a1674");
    x.status = 404;
    x.body = "nope";
    CHECK(check_diagnose_site(&t, &x, &v, cloud, sizeof(cloud)));
    CHECK_STR(cloud, "");
}

static void check_domain_hint_f(const char *host, char *b, size_t cap)
{
    check_domain_hint(host, false, b, cap);
}

static void test_hints(void)
{
    char b[512];
    check_domain_hint_f("acme.atlassian.net", b, sizeof(b));
    CHECK_STR(b, "");
    check_domain_hint_f("jira.example.org", b, sizeof(b));
    CHECK_STR(b, "");
    check_domain_hint_f("acme.atlassian.net.atlassian.net", b, sizeof(b));
    CHECK(strstr(b, "didn't include .atlassian.net") != NULL);
    check_domain_hint_f("acme.jira.atlassian.net", b, sizeof(b));
    CHECK(strstr(b, "has a dot in it (acme.jira)") != NULL);
    check_domain_hint_f("acme.atlassian.com", b, sizeof(b));
    CHECK(strstr(b, "not .atlassian.com") != NULL);
    check_domain_hint_f(NULL, b, sizeof(b));
    CHECK_STR(b, "");
}

static void test_json(void)
{
    char out[32];
    CHECK(check_json_string("{\"a\":1,\"displayName\" : \"Ann \\\"Q\\\" \\u00e9\"}", "displayName",
                            out, sizeof(out)));
    CHECK_STR(out, "Ann \"Q\" \xc3\xa9");
    CHECK(check_json_string("{\"n\":\"\\ud83d\\ude00!\"}", "n", out, sizeof(out)));
    CHECK_STR(out, "\xf0\x9f\x98\x80!");
    /* Control bytes (raw or escaped) never reach the terminal. */
    CHECK(check_json_string("{\"n\":\"a\\u001b[31mb\x01\"}", "n", out, sizeof(out)));
    CHECK_STR(out, "a[31mb");
    CHECK(!check_json_string("{\"accountId\":5}", "accountId", out, sizeof(out)));
    CHECK(!check_json_string("{\"other\":\"accountId\"}", "accountId", out, sizeof(out)));
    CHECK(!check_json_string(NULL, "x", out, sizeof(out)));
    CHECK(!check_json_string("{\"displayNameX\":\"a\"}", "displayName", out, sizeof(out)));
    /* Cut on a UTF-8 boundary: 7 bytes of room, "\xc3\xa9" repeated. */
    {
        char small[8];
        CHECK(check_json_string("{\"n\":\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\"}", "n", small,
                                sizeof(small)));
        CHECK_STR(small, "\xc3\xa9\xc3\xa9\xc3\xa9");
    }
    /* Unterminated string: what was read is kept. */
    CHECK(check_json_string("{\"n\":\"abc", "n", out, sizeof(out)));
    CHECK_STR(out, "abc");
}

static char *print(bool json, int target, enum check_product p, const struct check_verdict *v,
                   const char *cloud)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    struct check_target t;
    make_target(target, &t);
    check_print_verdict(f, json, &t, p, v, cloud);
    fclose(f);
    return buf;
}

static void test_print(void)
{
    struct check_target t;
    struct check_verdict v;
    struct check_exchange x = {.status = 200, .body = good_user};
    char *s;

    make_target(0, &t);
    check_diagnose_product(&t, CHECK_PRODUCT_JIRA, &x, &v);
    s = print(false, 0, CHECK_PRODUCT_JIRA, &v, "c1");
    CHECK_STR(s, "ok   acme.atlassian.net jira as \"Service Bot\" (accountId "
                 "5b10ac8d82e05b22cc7d4ef5)\n");
    free(s);
    s = print(true, 0, CHECK_PRODUCT_JIRA, &v, "c1");
    CHECK_STR(s, "{\"site\":\"acme.atlassian.net\",\"product\":\"jira\",\"credential\":\"svc\","
                 "\"ok\":true,\"skipped\":false,\"status\":200,\"cause\":\"ok\",\"message\":\"as "
                 "\\\"Service Bot\\\" (accountId 5b10ac8d82e05b22cc7d4ef5)\",\"account\":{"
                 "\"displayName\":\"Service Bot\",\"accountId\":\"5b10ac8d82e05b22cc7d4ef5\"},"
                 "\"cloudId\":\"c1\"}\n");
    free(s);

    x.status = 404;
    x.body = stu;
    check_diagnose_product(&t, CHECK_PRODUCT_CONFLUENCE, &x, &v);
    s = print(false, 0, CHECK_PRODUCT_CONFLUENCE, &v, "");
    CHECK(strncmp(s, "skip acme.atlassian.net confluence: not on this site", 52) == 0);
    free(s);
    s = print(true, 0, CHECK_PRODUCT_CONFLUENCE, &v, "");
    CHECK(strstr(s, "\"ok\":true,\"skipped\":true,\"status\":404,\"cause\":\"not_on_site\"") !=
          NULL);
    CHECK(strstr(s, "\"account\":null,\"cloudId\":null}") != NULL);
    free(s);

    x.status = 0;
    x.curl_code = CURLE_COULDNT_RESOLVE_HOST;
    x.curl_error = "Could not resolve host: acme.atlassian.net";
    check_diagnose_product(&t, CHECK_PRODUCT_JIRA, &x, &v);
    s = print(false, 0, CHECK_PRODUCT_JIRA, &v, "");
    CHECK(strncmp(s, "FAIL acme.atlassian.net jira: ", 30) == 0 &&
          strstr(s, "acme.atlassian.net could not be resolved") && !strstr(s, "unknown site"));
    free(s);
    s = print(true, 0, CHECK_PRODUCT_JIRA, &v, "");
    CHECK(strstr(s, "\"ok\":false,\"skipped\":false,\"status\":null,\"cause\":\"dns_failure\"") !=
          NULL);
    free(s);
}

int main(void)
{
    test_table();
    test_site_cloud_id();
    test_hints();
    test_json();
    test_print();
    TEST_DONE();
}
