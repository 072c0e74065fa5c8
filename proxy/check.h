/*
 * check: `credproxy check`. For every site, with its credential: resolve,
 * connect, TLS, then GET /rest/api/3/myself and /wiki/rest/api/user/current,
 * and explain each failure in the setup guide's words.
 *
 * Layer 3 (libcurl easy/multi, blocking is fine: it is a command, not the
 * daemon). Never prints a secret: the diagnosis below sees only what came
 * back (status, a few response headers, the body), never the request.
 *
 * The diagnosis is pure (check_diagnose_site, check_diagnose_product): the
 * runner performs the exchanges and feeds their results in, so every
 * outcome is testable from a table without a network.
 */
#ifndef CREDPROXY_CHECK_H
#define CREDPROXY_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"

/* Response bytes kept per exchange (the rest is read and dropped). */
#define CHECK_MAX_BODY 65536
/* One diagnosis message, and one kept header or JSON field. */
#define CHECK_MAX_MESSAGE 1536
#define CHECK_MAX_FIELD 256
/* A whole exchange never takes longer than this, even with `timeout: 0`. */
#define CHECK_MAX_TIMEOUT_MS 60000

enum check_product { CHECK_PRODUCT_JIRA = 0, CHECK_PRODUCT_CONFLUENCE };
enum check_outcome { CHECK_OK = 0, CHECK_FAIL, CHECK_SKIP };

/* What one exchange produced; all borrowed. Header values are NULL when absent. */
struct check_exchange {
    int curl_code;                /* CURLcode: 0 when an HTTP response arrived */
    const char *curl_error;       /* curl's error text (CURLOPT_ERRORBUFFER); may be NULL */
    long status;                  /* HTTP status; 0 when none */
    const char *seraph;           /* X-Seraph-LoginReason */
    const char *denied_reason;    /* X-Authentication-Denied-Reason (Data Center CAPTCHA) */
    const char *retry_after;      /* Retry-After */
    const char *location;         /* Location */
    const char *www_authenticate; /* WWW-Authenticate (issue 10: an expired access token) */
    const char *body;             /* NUL-terminated, possibly cut at CHECK_MAX_BODY; may be NULL */
};

/* What the diagnosis needs from the configuration; all borrowed, no secret. */
struct check_target {
    const char *host;       /* "acme.atlassian.net" */
    const char *credential; /* credential name */
    const char *email;      /* basic: the account email; NULL for bearer */
    bool bearer;
    int64_t expires;  /* epoch seconds from `expires`, 0 = none */
    int64_t now;      /* wall clock, injected for tests */
    bool env_default; /* the embedded default: advice says ATLASSIAN_SITE=, not domain: */
    /* Issue 10: the call went through https://api.atlassian.com/ex/... (scoped token, OAuth). */
    bool via_gateway;
    bool oauth; /* an oauth_client credential: a minted access token was sent */
};

struct check_verdict {
    enum check_outcome outcome;
    const char *cause; /* stable code for --json: "ok", "credentials_rejected", ... */
    long status;       /* HTTP status or 0 (JSON null) */
    char message[CHECK_MAX_MESSAGE];
    char display_name[CHECK_MAX_FIELD];
    char account_id[CHECK_MAX_FIELD];
};

/*
 * Step (a): GET /_edge/tenant_info without credentials. Returns true when the
 * site answered well enough to go on (cloud_id filled when the body has
 * one, else ""); false with v filled with the failure, which then stands for
 * both products.
 */
bool check_diagnose_site(const struct check_target *t, const struct check_exchange *x,
                         struct check_verdict *v, char *cloud_id, size_t cap);

/* Steps (b) and (c): the authenticated current-user call of one product. */
void check_diagnose_product(const struct check_target *t, enum check_product p,
                            const struct check_exchange *x, struct check_verdict *v);

/*
 * Issue 10: a basic credential rejected at the site URL but accepted by the
 * gateway (x: the same call retried at api.atlassian.com/ex/.../{cloudId}):
 * true with v rewritten to "this is a scoped token: set `via: api_gateway`".
 */
bool check_diagnose_scoped(const struct check_target *t, enum check_product p,
                           const struct check_exchange *x, struct check_verdict *v);

/*
 * Issue 10: the token endpoint's answer for an oauth_client (status 0 with
 * curl_code set: unreachable). False with v filled when no token came.
 */
bool check_diagnose_token(const struct check_target *t, const struct check_exchange *x,
                          struct check_verdict *v);

/*
 * A hint when host looks mistyped ("acme.atlassian.net.atlassian.net", dots
 * in the site name, ".atlassian.com"); buf gets "" when it looks right.
 * env_default: word it for ATLASSIAN_SITE= instead of the file's domain:.
 */
void check_domain_hint(const char *host, bool env_default, char *buf, size_t cap);

/*
 * Read the top-level-looking string member `key` of a JSON body into out
 * (control bytes dropped, cut at cap on a UTF-8 boundary). True when found.
 */
bool check_json_string(const char *body, const char *key, char *out, size_t cap);

/* One output line (text or JSON object) for a verdict, newline included. */
void check_print_verdict(FILE *out, bool json, const struct check_target *t, enum check_product p,
                         const struct check_verdict *v, const char *cloud_id);

/* Prints one line (or one JSON object with json) per site and product to out. 0 all ok, 1 any
 * failed. */
int check_run(const struct config *cfg, bool json, FILE *out);

#endif
