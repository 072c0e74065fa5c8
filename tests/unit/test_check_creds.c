/*
 * Unit tests for check's issue-10 diagnoses, as a table: a scoped token
 * found through the gateway, the gateway's "scope does not match" naming
 * the scope, an expired access token, and the token endpoint's answers.
 * No message may carry anything but names, statuses and fixed words.
 */
#include <string.h>

#include "check.h"
#include "testlib.h"
#include "util.h"

struct row {
    const char *what;
    int kind; /* 0 product, 1 scoped retry, 2 token endpoint */
    bool oauth, via_gateway;
    enum check_product product;
    struct check_exchange x;
    bool ret; /* kinds 1 and 2: the return value */
    const char *cause;
    const char *says;
};

static const struct row rows[] = {
    {"scoped token found through the gateway",
     1,
     false,
     false,
     CHECK_PRODUCT_JIRA,
     {.status = 200, .body = "{\"accountId\":\"abc\",\"displayName\":\"Bot\"}"},
     true,
     "scoped_token",
     "this is a scoped token: set `via: api_gateway` on credential svc"},
    {"the gateway refuses it too: not scoped, keep the 401 verdict",
     1,
     false,
     false,
     CHECK_PRODUCT_JIRA,
     {.status = 401, .body = "Client must be authenticated"},
     false,
     NULL,
     NULL},
    {"200 but anonymous at the gateway: not a scoped token",
     1,
     false,
     false,
     CHECK_PRODUCT_JIRA,
     {.status = 200, .seraph = "AUTHENTICATED_FAILED", .body = "{\"accountId\":\"x\"}"},
     false,
     NULL,
     NULL},
    {"gateway: scope does not match (401), Jira",
     0,
     false,
     true,
     CHECK_PRODUCT_JIRA,
     {.status = 401, .body = "{\"code\":401,\"message\":\"Unauthorized; scope does not match\"}"},
     false,
     "scope_missing",
     "needs read:jira-user"},
    {"gateway: scope does not match (403), Confluence, oauth",
     0,
     true,
     true,
     CHECK_PRODUCT_CONFLUENCE,
     {.status = 403, .body = "{\"code\":403,\"message\":\"Unauthorized; scope does not match\"}"},
     false,
     "scope_missing",
     "needs read:confluence-user. Add the scope to the service account"},
    {"gateway: expired token",
     0,
     false,
     true,
     CHECK_PRODUCT_JIRA,
     {.status = 401,
      .www_authenticate = "Bearer error=\"invalid_token\", "
                          "error_description=\"The access token expired\""},
     false,
     "token_expired",
     "the token expired"},
    {"gateway: plain 401 is the usual rejection",
     0,
     false,
     true,
     CHECK_PRODUCT_JIRA,
     {.status = 401},
     false,
     "credentials_rejected",
     "hasn't expired or been revoked"},
    {"token endpoint: 200", 2, true, true, CHECK_PRODUCT_JIRA, {.status = 200}, true, "ok", NULL},
    {"token endpoint: 401 wrong secret",
     2,
     true,
     true,
     CHECK_PRODUCT_JIRA,
     {.status = 401, .body = "{\"error\":\"access_denied\"}"},
     false,
     "client_credentials_rejected",
     "rejected the client credentials of svc"},
    {"token endpoint: 503",
     2,
     true,
     true,
     CHECK_PRODUCT_JIRA,
     {.status = 503, .retry_after = "2"},
     false,
     "token_endpoint_error",
     "wait 2 seconds"},
    {"token endpoint: unreachable",
     2,
     true,
     true,
     CHECK_PRODUCT_JIRA,
     {.curl_code = 7, .curl_error = "Failed to connect"},
     false,
     "connect_failure",
     "not a credential problem"},
};

int main(void)
{
    for (size_t i = 0; i < UTIL_ARRAY_LEN(rows); i++) {
        const struct row *r = &rows[i];
        struct check_target t = {
            .host = "acme.atlassian.net",
            .credential = "svc",
            .email = r->oauth ? NULL : "bot@example.com",
            .bearer = r->oauth,
            .now = 1800000000,
            .via_gateway = r->via_gateway,
            .oauth = r->oauth,
        };
        struct check_verdict v;
        memset(&v, 0, sizeof(v));
        bool ret = false;
        if (r->kind == 0)
            check_diagnose_product(&t, r->product, &r->x, &v);
        else if (r->kind == 1)
            ret = check_diagnose_scoped(&t, r->product, &r->x, &v);
        else
            ret = check_diagnose_token(&t, &r->x, &v);
        if (r->kind != 0)
            CHECK_MSG(ret == r->ret, "%s: returned %d", r->what, ret);
        if (r->cause)
            CHECK_MSG(v.cause && strcmp(v.cause, r->cause) == 0, "%s: cause %s", r->what,
                      v.cause ? v.cause : "(null)");
        if (r->says)
            CHECK_MSG(strstr(v.message, r->says) != NULL, "%s: message: %s", r->what, v.message);
    }
    TEST_DONE();
}
