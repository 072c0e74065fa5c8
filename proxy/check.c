/*
 * check: `credproxy check`. For each site, with its credential:
 *   (a) GET https://SITE/_edge/tenant_info without credentials: does the site
 *       exist, and can we reach it (DNS, TCP, TLS)?
 *   (b) GET /rest/api/3/myself with the credential (Jira);
 *   (c) GET /wiki/rest/api/user/current with the credential (Confluence).
 * Each exchange is diagnosed by a pure function from what came back; the
 * messages use the setup guide's words ("Verify your domain is correct",
 * "matches your Atlassian account email exactly", "no extra spaces before or
 * after", "hasn't expired or been revoked", "Create API token", "Wait before
 * retrying", "Check with your Jira administrator").
 *
 * A site with Jira only (or Confluence only) is normal: the missing product
 * prints `skip` and does not fail the exit status. Only when neither product
 * answers is the site a failure.
 *
 * Secrets: the credential goes to libcurl as CURLOPT_USERNAME/PASSWORD (or
 * XOAUTH2_BEARER), so libcurl renders the Authorization header itself; we
 * never format it, never enable verbose output, and the diagnosis never sees
 * the request. Redirects are never followed.
 */
#include "check.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "bodybuf.h"
#include "log.h"
#include "tokensched.h"
#include "util.h"

#define CHECK_TOKENS_URL "https://id.atlassian.com/manage-profile/security/api-tokens"
#define CHECK_SECONDS_PER_DAY 86400

static const char *check_product_name(enum check_product p)
{
    return p == CHECK_PRODUCT_JIRA ? "jira" : "confluence";
}

static const char *check_product_title(enum check_product p)
{
    return p == CHECK_PRODUCT_JIRA ? "Jira" : "Confluence";
}

static const char *check_product_path(enum check_product p)
{
    return p == CHECK_PRODUCT_JIRA ? "/rest/api/3/myself" : "/wiki/rest/api/user/current";
}

static void check_date(int64_t t, char *buf, size_t cap)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || strftime(buf, cap, "%Y-%m-%d", &tm) == 0)
        snprintf(buf, cap, "@%" PRId64, t);
}

/* Copy an untrusted header value for printing: printable ASCII only, bounded. */
static void check_clean(const char *in, char *out, size_t cap)
{
    size_t n = 0;
    if (cap == 0)
        return;
    for (; in && *in && n + 1 < cap; in++) {
        unsigned char c = (unsigned char)*in;
        if (c >= 0x20 && c < 0x7f)
            out[n++] = (char)c;
    }
    out[n] = '\0';
}

static bool check_has(const char *hay, const char *needle)
{
    return hay && strstr(hay, needle) != NULL;
}

static bool check_header_is(const char *value, const char *want)
{
    size_t n = strlen(want);
    if (!value)
        return false;
    while (*value == ' ' || *value == '\t')
        value++;
    return util_memcaseeq(value, want, n) &&
           (value[n] == '\0' || value[n] == ' ' || value[n] == ';' || value[n] == ',');
}

static void check_set(struct check_verdict *v, enum check_outcome o, const char *cause, long status)
{
    v->outcome = o;
    v->cause = cause;
    v->status = status;
}

/* printf into the verdict's message (appending). */
static void check_msg(struct check_verdict *v, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void check_msg(struct check_verdict *v, const char *fmt, ...)
{
    size_t used = strlen(v->message);
    va_list ap;
    if (used + 1 >= sizeof(v->message))
        return;
    va_start(ap, fmt);
    vsnprintf(v->message + used, sizeof(v->message) - used, fmt, ap);
    va_end(ap);
}

static void check_verdict_init(struct check_verdict *v)
{
    memset(v, 0, sizeof(*v));
    v->cause = "ok";
}

/* How the user wrote the site: the example in the words of the config they used. */
static const char *check_site_example(bool env_default)
{
    return env_default ? "`ATLASSIAN_SITE=test`" : "`domain: test`";
}

void check_domain_hint(const char *host, bool env_default, char *buf, size_t cap)
{
    static const char suffix[] = ".atlassian.net";
    size_t hl = host ? strlen(host) : 0, sl = sizeof(suffix) - 1;
    const char *ex = check_site_example(env_default);

    if (cap == 0)
        return;
    buf[0] = '\0';
    if (!host)
        return;
    if (strstr(host, ".atlassian.net.atlassian.net")) {
        snprintf(buf, cap,
                 " The domain looks typed with .atlassian.net included (%s): make sure you didn't "
                 "include .atlassian.net in the domain; write just the domain part, e.g. "
                 "%s for test.atlassian.net",
                 host, ex);
        return;
    }
    if (hl > sl && strcmp(host + hl - sl, suffix) == 0 && memchr(host, '.', hl - sl)) {
        snprintf(buf, cap,
                 " The site name has a dot in it (%.*s): an Atlassian domain is one word, the part "
                 "before .atlassian.net, e.g. %s for https://test.atlassian.net",
                 (int)(hl - sl), host, ex);
        return;
    }
    if (hl > 14 && strcmp(host + hl - 14, ".atlassian.com") == 0)
        snprintf(buf, cap,
                 " Atlassian Cloud sites end in .atlassian.net, not .atlassian.com: write just the "
                 "domain part, e.g. %s for test.atlassian.net",
                 ex);
}

/* A DNS, TCP, TLS or timeout failure: a network problem, never a credential one. */
static void check_network(const struct check_target *t, const struct check_exchange *x,
                          struct check_verdict *v)
{
    char err[CHECK_MAX_FIELD], hint[512];
    const char *e = x->curl_error && *x->curl_error ? x->curl_error
                                                    : curl_easy_strerror((CURLcode)x->curl_code);
    check_clean(e, err, sizeof(err));
    switch (x->curl_code) {
    case CURLE_COULDNT_RESOLVE_HOST:
        /* Every *.atlassian.net name resolves (Atlassian answers 404 for unknown sites), so
         * a resolver failure is the network's, not the site name's. */
        check_domain_hint(t->host, t->env_default, hint, sizeof(hint));
        check_set(v, CHECK_FAIL, "dns_failure", 0);
        check_msg(v,
                  "%s could not be resolved (%s); check DNS, network or upstream.proxy (needed "
                  "when this machine reaches the internet only through a proxy): a network "
                  "problem, not the site or the credential.%s",
                  t->host, err, hint);
        break;
    case CURLE_COULDNT_RESOLVE_PROXY:
#if LIBCURL_VERSION_NUM >= 0x074a00
    case CURLE_PROXY:
#endif
        check_set(v, CHECK_FAIL, "proxy_failure", 0);
        check_msg(v,
                  "cannot go through the upstream proxy (%s): a network problem, not a credential "
                  "problem. Check `upstream.proxy`",
                  err);
        break;
    case CURLE_COULDNT_CONNECT:
        check_set(v, CHECK_FAIL, "connect_failure", 0);
        check_msg(v,
                  "cannot connect to %s (%s): a network problem, not a credential problem. Check "
                  "the network, `upstream.proxy` and `upstream.connect_to`",
                  t->host, err);
        break;
    case CURLE_OPERATION_TIMEDOUT:
        check_set(v, CHECK_FAIL, "timeout", 0);
        check_msg(v,
                  "%s did not answer in time (%s): a network problem, not a credential problem. "
                  "Check the network and `upstream.connect_timeout`/`upstream.timeout`",
                  t->host, err);
        break;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
        check_set(v, CHECK_FAIL, "tls_failure", 0);
        check_msg(v,
                  "TLS failure talking to %s (%s): a network problem, not a credential problem. "
                  "Check `upstream.ca_file` and whether something on the way intercepts TLS",
                  t->host, err);
        break;
    default:
        check_set(v, CHECK_FAIL, "network_error", 0);
        check_msg(v,
                  "network error talking to %s (%s): not a credential problem. Check the network",
                  t->host, err);
        break;
    }
}

bool check_diagnose_site(const struct check_target *t, const struct check_exchange *x,
                         struct check_verdict *v, char *cloud_id, size_t cap)
{
    char hint[512];

    check_verdict_init(v);
    if (cap > 0)
        cloud_id[0] = '\0';
    if (x->curl_code != 0) {
        check_network(t, x, v);
        return false;
    }
    if (x->status == 404 && check_has(x->body, "Site temporarily unavailable")) {
        check_domain_hint(t->host, t->env_default, hint, sizeof(hint));
        check_set(v, CHECK_FAIL, "site_unknown", x->status);
        check_msg(v,
                  "unknown site: Atlassian answered 404 \"Site temporarily unavailable\" for %s "
                  "(no such site, or no product on it). Verify your Atlassian domain is correct: "
                  "just the domain part, e.g. %s for test.atlassian.net.%s",
                  t->host, check_site_example(t->env_default), hint);
        return false;
    }
    /* Anything else (Data Center hosts have no /_edge) goes on to the real checks. */
    if (x->status == 200 && cap > 0)
        check_json_string(x->body, "cloudId", cloud_id, cap);
    return true;
}

/* The 401 / anonymous-200 text: the pair is one unit, name both halves. */
static void check_rejected(const struct check_target *t, const char *how, struct check_verdict *v)
{
    char date[32];
    if (t->expires && t->now >= t->expires) {
        check_date(t->expires, date, sizeof(date));
        v->cause = "token_expired";
        check_msg(v,
                  "the %s was rejected (%s): the token expired on %s per the config; create a "
                  "new token at " CHECK_TOKENS_URL " (\"Create API token\") and update the "
                  "secret and `expires`",
                  t->bearer ? "token" : "email/token pair", how, date);
        return;
    }
    if (t->bearer) {
        check_msg(v,
                  "the bearer token was rejected (%s). Check that the token was copied "
                  "correctly (no extra spaces before or after) and hasn't expired or been revoked",
                  how);
        return;
    }
    check_msg(v,
              "the email/token pair was rejected (%s); Atlassian does not say which half is "
              "wrong, so check both. Verify the email (%s) matches your Atlassian account email "
              "exactly, with no typos or extra spaces. Ensure the API token was copied correctly "
              "(no extra spaces before or after) and hasn't expired or been revoked (manage "
              "tokens at " CHECK_TOKENS_URL "), and that it was made with \"Create API token\", "
              "not \"Create API token with scopes\"",
              how, t->email ? t->email : "?");
}

static void check_retry_after(const struct check_exchange *x, struct check_verdict *v)
{
    char ra[64];
    uint64_t secs;
    check_clean(x->retry_after, ra, sizeof(ra));
    if (ra[0] && util_parse_u64(ra, UINT32_MAX, &secs) == 0)
        check_msg(v, "wait %" PRIu64 " seconds (Retry-After) before retrying", secs);
    else if (ra[0])
        check_msg(v, "wait until %s (Retry-After) before retrying", ra);
    else
        check_msg(v, "wait a few minutes before retrying (no Retry-After given)");
}

/* "https://host/path" of a Location, query and fragment cut (they can carry tokens). */
static void check_location(const char *loc, char *out, size_t cap)
{
    check_clean(loc, out, cap);
    out[strcspn(out, "?#")] = '\0';
}

/* Issue 10: the scope the current-user call needs, in Atlassian's classic-scope names. */
static const char *check_product_scope(enum check_product p)
{
    return p == CHECK_PRODUCT_JIRA ? "read:jira-user" : "read:confluence-user";
}

/*
 * The gateway's "Unauthorized; scope does not match" (401 or 403): the token
 * works but lacks a scope. Names the scope the call needs.
 */
static bool check_scope_missing(const struct check_target *t, enum check_product p,
                                const struct check_exchange *x, struct check_verdict *v)
{
    if (!check_has(x->body, "scope does not match") && !check_has(x->body, "insufficient_scope"))
        return false;
    check_set(v, CHECK_FAIL, "scope_missing", x->status);
    check_msg(v,
              "the %s was accepted but lacks a scope (%ld, \"scope does not match\"): %s needs "
              "%s. %s",
              t->oauth ? "service account's OAuth credential" : "token", x->status,
              check_product_path(p), check_product_scope(p),
              t->oauth ? "Add the scope to the service account's OAuth 2.0 credential in "
                         "Atlassian Administration > Directory > Service accounts"
                       : "Create a new API token with that scope (\"Create API token with "
                         "scopes\") and replace this one");
    return true;
}

/* An access token the gateway calls expired (WWW-Authenticate error_description). */
static bool check_token_expiry(const struct check_target *t, const struct check_exchange *x,
                               struct check_verdict *v)
{
    if (!check_has(x->www_authenticate, "expired"))
        return false;
    check_set(v, CHECK_FAIL, "token_expired", x->status);
    if (t->oauth)
        check_msg(v, "the minted access token had already expired when it was used (401): "
                     "check that this machine's clock is right");
    else
        check_msg(v, "the token expired (401, \"expired\"): create a new API token "
                     "(\"Create API token with scopes\") and replace this one");
    return true;
}

bool check_diagnose_scoped(const struct check_target *t, enum check_product p,
                           const struct check_exchange *x, struct check_verdict *v)
{
    char buf[CHECK_MAX_FIELD];
    if (x->curl_code != 0 || x->status != 200 || check_header_is(x->seraph, "AUTHENTICATED_FAILED"))
        return false;
    if (!check_json_string(x->body, "accountId", buf, sizeof(buf)))
        return false;
    check_verdict_init(v);
    check_set(v, CHECK_FAIL, "scoped_token", 401);
    check_json_string(x->body, "displayName", v->display_name, sizeof(v->display_name));
    snprintf(v->account_id, sizeof(v->account_id), "%s", buf);
    check_msg(v,
              "this is a scoped token: set `via: api_gateway` on credential %s. The site URL "
              "rejected it (401), and https://api.atlassian.com/ex/%s/{cloudId}%s accepted it "
              "as \"%s\"; tokens made with \"Create API token with scopes\" (and every "
              "service account token) work only there",
              t->credential, p == CHECK_PRODUCT_JIRA ? "jira" : "confluence", check_product_path(p),
              v->display_name);
    return true;
}

bool check_diagnose_token(const struct check_target *t, const struct check_exchange *x,
                          struct check_verdict *v)
{
    check_verdict_init(v);
    if (x->curl_code != 0) {
        check_network(t, x, v);
        return false;
    }
    if (x->status == 200)
        return true;
    v->status = x->status;
    if (x->status == 400 || x->status == 401 || x->status == 403) {
        check_set(v, CHECK_FAIL, "client_credentials_rejected", x->status);
        check_msg(v,
                  "the token endpoint rejected the client credentials of %s (%ld): check that "
                  "client_id and the client secret were copied correctly (no extra spaces before "
                  "or after) and that the OAuth 2.0 credential was not deleted or rotated in "
                  "Atlassian Administration > Directory > Service accounts",
                  t->credential, x->status);
        return false;
    }
    check_set(v, CHECK_FAIL, "token_endpoint_error", x->status);
    check_msg(v, "the token endpoint answered %ld; not a credential problem. ", x->status);
    check_retry_after(x, v);
    return false;
}

void check_diagnose_product(const struct check_target *t, enum check_product p,
                            const struct check_exchange *x, struct check_verdict *v)
{
    const char *title = check_product_title(p);
    bool expired = t->expires && t->now >= t->expires;
    char buf[CHECK_MAX_FIELD], date[32];

    check_verdict_init(v);
    if (x->curl_code != 0) {
        check_network(t, x, v);
        return;
    }
    v->status = x->status;

    /* CAPTCHA first: Atlassian did not even look at the token. */
    if (check_header_is(x->seraph, "AUTHENTICATION_DENIED") ||
        check_has(x->denied_reason, "CAPTCHA")) {
        check_set(v, CHECK_FAIL, "captcha_required", x->status);
        check_msg(v,
                  "CAPTCHA required: after several failed logins Atlassian rejects this account's "
                  "API logins without checking the token (X-Seraph-LoginReason: "
                  "AUTHENTICATION_DENIED). Log in once in a browser as %s at https://%s and answer "
                  "the CAPTCHA to clear it, then run check again",
                  t->email ? t->email : "the account", t->host);
        return;
    }
    if ((x->status == 401 || x->status == 403) && check_scope_missing(t, p, x, v))
        return;
    if (x->status == 401 && t->via_gateway && check_token_expiry(t, x, v))
        return;
    if (x->status == 401) {
        check_set(v, CHECK_FAIL, "credentials_rejected", x->status);
        check_rejected(t,
                       check_header_is(x->seraph, "AUTHENTICATED_FAILED")
                           ? "401 Unauthorized, X-Seraph-LoginReason: AUTHENTICATED_FAILED"
                           : "401 Unauthorized",
                       v);
        return;
    }
    if (x->status == 200) {
        bool anonymous = check_header_is(x->seraph, "AUTHENTICATED_FAILED");
        if (!anonymous && check_json_string(x->body, "type", buf, sizeof(buf)))
            anonymous = strcmp(buf, "anonymous") == 0;
        if (anonymous) {
            check_set(v, CHECK_FAIL, "credentials_rejected", x->status);
            check_rejected(t,
                           "Atlassian answered 200 as anonymous, X-Seraph-LoginReason: "
                           "AUTHENTICATED_FAILED",
                           v);
            return;
        }
        check_json_string(x->body, "displayName", v->display_name, sizeof(v->display_name));
        if (!check_json_string(x->body, "accountId", v->account_id, sizeof(v->account_id)) &&
            !check_json_string(x->body, "key", v->account_id, sizeof(v->account_id))) {
            check_set(v, CHECK_FAIL, "unexpected_response", x->status);
            check_msg(v,
                      "%s answered 200 on %s but not with a user (no accountId). Check that %s is "
                      "the Atlassian site itself, not a login page or another service",
                      t->host, check_product_path(p), t->host);
            return;
        }
        if (expired) {
            check_date(t->expires, date, sizeof(date));
            check_set(v, CHECK_FAIL, "token_expired", x->status);
            check_msg(v,
                      "expired on %s per the config; create a new token at " CHECK_TOKENS_URL
                      " and update the secret and `expires` (Atlassian still accepted this one "
                      "as \"%s\"; if its real expiry is later, correct `expires`)",
                      date, v->display_name);
            return;
        }
        check_set(v, CHECK_OK, "ok", x->status);
        check_msg(v, "as \"%s\" (accountId %s)", v->display_name, v->account_id);
        if (t->expires && t->expires - t->now <= CONFIG_EXPIRY_WARN_DAYS * CHECK_SECONDS_PER_DAY) {
            check_date(t->expires, date, sizeof(date));
            check_msg(
                v, "; the token expires on %s (in %" PRId64 " days): create a new one before then",
                date, (t->expires - t->now + CHECK_SECONDS_PER_DAY - 1) / CHECK_SECONDS_PER_DAY);
        }
        return;
    }
    if (x->status == 403) {
        check_set(v, CHECK_FAIL, "forbidden", x->status);
        if (check_has(x->body, "XSRF check failed")) {
            check_msg(v, "XSRF check failed (403): a request header problem, not the credential. "
                         "Check `upstream.proxy` does not rewrite headers");
            return;
        }
        check_msg(v,
                  "authenticated, but not allowed (403): the account %s has no access to %s on "
                  "%s. Ensure the account has access to the %s instance: check with your %s "
                  "administrator and ask a %s admin to grant the account access",
                  t->email ? t->email : "of this credential", title, t->host, title, title, title);
        return;
    }
    if (x->status == 404) {
        check_set(v, CHECK_SKIP, "not_on_site", x->status);
        check_msg(v, "not on this site (404 on %s: %s is not enabled on this site)",
                  check_product_path(p), title);
        return;
    }
    if (x->status == 429) {
        check_set(v, CHECK_FAIL, "rate_limited", x->status);
        check_msg(v, "rate limited by Atlassian (429); ");
        check_retry_after(x, v);
        check_msg(v, ". This is not a credential failure; the proxy's `rate_limit` keeps agents "
                     "under Atlassian's limit");
        return;
    }
    if (x->status >= 300 && x->status < 400) {
        check_location(x->location, buf, sizeof(buf));
        check_set(v, CHECK_FAIL, "redirected", x->status);
        check_msg(v,
                  "redirected (%ld) to %s; check never follows redirects with a credential. "
                  "Check that %s is the site's own address",
                  x->status, buf[0] ? buf : "(no Location)", t->host);
        return;
    }
    if (x->status >= 500) {
        check_set(v, CHECK_FAIL, "server_error", x->status);
        check_msg(v, "%s answered %ld: a problem on Atlassian's side, not the credential; ",
                  t->host, x->status);
        check_retry_after(x, v);
        return;
    }
    check_set(v, CHECK_FAIL, "unexpected_status", x->status);
    check_msg(v, "unexpected answer %ld on %s. Check that %s is an Atlassian Cloud site", x->status,
              check_product_path(p), t->host);
}

/* Append one UTF-8 code point (BMP or astral) to out; false when it does not fit. */
static bool check_put_cp(char *out, size_t cap, size_t *n, unsigned cp)
{
    char tmp[4];
    size_t k;
    if (cp < 0x80) {
        tmp[0] = (char)cp;
        k = 1;
    } else if (cp < 0x800) {
        tmp[0] = (char)(0xc0 | (cp >> 6));
        tmp[1] = (char)(0x80 | (cp & 0x3f));
        k = 2;
    } else if (cp < 0x10000) {
        tmp[0] = (char)(0xe0 | (cp >> 12));
        tmp[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        tmp[2] = (char)(0x80 | (cp & 0x3f));
        k = 3;
    } else {
        tmp[0] = (char)(0xf0 | (cp >> 18));
        tmp[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        tmp[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        tmp[3] = (char)(0x80 | (cp & 0x3f));
        k = 4;
    }
    if (*n + k >= cap)
        return false;
    memcpy(out + *n, tmp, k);
    *n += k;
    return true;
}

static int check_hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

/*
 * Not a JSON parser: it finds `"key"` followed by `:` and a string, which is
 * enough for the flat user objects of /myself, /user/current and
 * /_edge/tenant_info (nested objects there carry no member of these names).
 */
bool check_json_string(const char *body, const char *key, char *out, size_t cap)
{
    size_t klen = strlen(key);
    const char *p = body;

    if (cap == 0)
        return false;
    out[0] = '\0';
    while (p && (p = strchr(p, '"')) != NULL) {
        const char *q = p + 1;
        size_t n = 0;
        if (strncmp(q, key, klen) != 0 || q[klen] != '"') {
            p = q;
            continue;
        }
        q += klen + 1;
        while (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n')
            q++;
        if (*q != ':') {
            p = q;
            continue;
        }
        q++;
        while (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n')
            q++;
        if (*q != '"') {
            p = q;
            continue;
        }
        for (q++; *q && *q != '"'; q++) {
            unsigned cp = (unsigned char)*q;
            if (*q == '\\') {
                q++;
                switch (*q) {
                case 'n':
                case 't':
                case 'r':
                case 'b':
                case 'f':
                    cp = ' ';
                    break;
                case 'u':
                    if (check_hex4(q + 1, &cp) != 0)
                        return n > 0;
                    q += 4;
                    if (cp >= 0xd800 && cp < 0xdc00 && q[1] == '\\' && q[2] == 'u') {
                        unsigned lo;
                        if (check_hex4(q + 3, &lo) == 0 && lo >= 0xdc00 && lo < 0xe000) {
                            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                            q += 6;
                        }
                    }
                    if (cp >= 0xd800 && cp < 0xe000)
                        cp = '?';
                    break;
                case '\0':
                    out[n] = '\0';
                    return true;
                default:
                    cp = (unsigned char)*q;
                    break;
                }
                if (cp < 0x20 || cp == 0x7f)
                    continue;
                if (!check_put_cp(out, cap, &n, cp))
                    break;
                continue;
            }
            if (cp < 0x20 || cp == 0x7f)
                continue; /* control bytes never reach a terminal */
            if (n + 1 >= cap)
                break;
            out[n++] = *q;
        }
        /* Never end inside a UTF-8 sequence when cut. */
        if (n + 1 >= cap || (*q != '"')) {
            while (n > 0 && ((unsigned char)out[n - 1] & 0xc0) == 0x80)
                n--;
            if (n > 0 && ((unsigned char)out[n - 1] & 0xc0) == 0xc0)
                n--;
        }
        out[n] = '\0';
        return true;
    }
    return false;
}

static void check_json_str(FILE *out, const char *s)
{
    size_t need = log_json_escape(NULL, 0, s);
    char *buf = xmalloc(need + 1);
    log_json_escape(buf, need + 1, s);
    fputs(buf, out);
    free(buf);
}

void check_print_verdict(FILE *out, bool json, const struct check_target *t, enum check_product p,
                         const struct check_verdict *v, const char *cloud_id)
{
    if (!json) {
        if (v->outcome == CHECK_OK)
            fprintf(out, "ok   %s %s %s\n", t->host, check_product_name(p), v->message);
        else
            fprintf(out, "%s %s %s: %s\n", v->outcome == CHECK_SKIP ? "skip" : "FAIL", t->host,
                    check_product_name(p), v->message);
        return;
    }
    fputs("{\"site\":", out);
    check_json_str(out, t->host);
    fprintf(out, ",\"product\":\"%s\",\"credential\":", check_product_name(p));
    check_json_str(out, t->credential);
    fprintf(out,
            ",\"ok\":%s,\"skipped\":%s,\"status\":", v->outcome != CHECK_FAIL ? "true" : "false",
            v->outcome == CHECK_SKIP ? "true" : "false");
    if (v->status)
        fprintf(out, "%ld", v->status);
    else
        fputs("null", out);
    fputs(",\"cause\":", out);
    check_json_str(out, v->cause);
    fputs(",\"message\":", out);
    check_json_str(out, v->message);
    fputs(",\"account\":", out);
    if (v->outcome == CHECK_OK) {
        fputs("{\"displayName\":", out);
        check_json_str(out, v->display_name);
        fputs(",\"accountId\":", out);
        check_json_str(out, v->account_id);
        fputs("}", out);
    } else {
        fputs("null", out);
    }
    fputs(",\"cloudId\":", out);
    check_json_str(out, cloud_id && *cloud_id ? cloud_id : NULL);
    fputs("}\n", out);
}

/* ---- the runner: libcurl, one easy handle per site so the connection is reused ---- */

struct check_io {
    char body[CHECK_MAX_BODY + 1];
    struct bodybuf sink; /* fills body */
    char seraph[CHECK_MAX_FIELD];
    char denied[CHECK_MAX_FIELD];
    char retry_after[CHECK_MAX_FIELD];
    char location[CHECK_MAX_FIELD];
    char www_auth[CHECK_MAX_FIELD];
    bool has_seraph, has_denied, has_retry_after, has_location, has_www_auth;
    char errbuf[CURL_ERROR_SIZE];
};

static void check_keep_header(const char *line, size_t len, const char *name, char *dst, bool *has)
{
    size_t nl = strlen(name), i, end;
    if (len <= nl || !util_memcaseeq(line, name, nl) || line[nl] != ':')
        return;
    i = nl + 1;
    while (i < len && (line[i] == ' ' || line[i] == '\t'))
        i++;
    end = len;
    while (end > i && (line[end - 1] == '\r' || line[end - 1] == '\n' || line[end - 1] == ' '))
        end--;
    if (end - i >= CHECK_MAX_FIELD)
        end = i + CHECK_MAX_FIELD - 1;
    memcpy(dst, line + i, end - i);
    dst[end - i] = '\0';
    *has = true;
}

static size_t check_on_header(char *line, size_t size, size_t nmemb, void *arg)
{
    struct check_io *io = arg;
    size_t n = size * nmemb;
    /* A new status line (after a proxy CONNECT or a 100) starts a new header set. */
    if (n >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        io->has_seraph = io->has_denied = io->has_retry_after = io->has_location = false;
        io->has_www_auth = false;
        return n;
    }
    check_keep_header(line, n, "WWW-Authenticate", io->www_auth, &io->has_www_auth);
    check_keep_header(line, n, "X-Seraph-LoginReason", io->seraph, &io->has_seraph);
    check_keep_header(line, n, "X-Authentication-Denied-Reason", io->denied, &io->has_denied);
    check_keep_header(line, n, "Retry-After", io->retry_after, &io->has_retry_after);
    check_keep_header(line, n, "Location", io->location, &io->has_location);
    return n;
}

/* The site's own origin: https://host[:port]. */
static char *check_site_base(const struct config_site *s)
{
    return s->port && s->port != 443 ? xasprintf("https://%s:%d", s->host, s->port)
                                     : xasprintf("https://%s", s->host);
}

/* Issue 10: the gateway base for product p: https://api.atlassian.com/ex/{jira|confluence}/ID. */
static char *check_gateway_base(enum check_product p, const char *cloud_id)
{
    return xasprintf("https://api.atlassian.com/ex/%s/%s",
                     p == CHECK_PRODUCT_JIRA ? "jira" : "confluence", cloud_id);
}

/* GET base+path on h; fills io and x (x points into io). */
static void check_get_at(CURL *h, const char *base, const char *path, struct check_io *io,
                         struct check_exchange *x)
{
    char *url = xasprintf("%s%s", base, path);
    CURLcode rc;
    long status = 0;

    bodybuf_init(&io->sink, io->body, CHECK_MAX_BODY);
    io->errbuf[0] = '\0';
    io->has_seraph = io->has_denied = io->has_retry_after = io->has_location = false;
    io->has_www_auth = false;
    curl_easy_setopt(h, CURLOPT_URL, url);
    rc = curl_easy_perform(h);
    free(url);
    if (rc == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    memset(x, 0, sizeof(*x));
    x->curl_code = (int)rc;
    x->curl_error = io->errbuf;
    x->status = status;
    x->seraph = io->has_seraph ? io->seraph : NULL;
    x->denied_reason = io->has_denied ? io->denied : NULL;
    x->retry_after = io->has_retry_after ? io->retry_after : NULL;
    x->location = io->has_location ? io->location : NULL;
    x->www_authenticate = io->has_www_auth ? io->www_auth : NULL;
    x->body = io->body;
}

/* GET https://host[:port]path on h; fills io and x (x points into io). */
static void check_get(CURL *h, const struct config_site *s, const char *path, struct check_io *io,
                      struct check_exchange *x)
{
    char *base = check_site_base(s);
    check_get_at(h, base, path, io, x);
    free(base);
}

static CURL *check_handle(const struct config *cfg, struct check_io *io, struct curl_slist *conn,
                          struct curl_slist *hdrs)
{
    CURL *h = curl_easy_init();
    int64_t timeout = cfg->upstream.timeout_ms;
    if (!h)
        return NULL;
    if (timeout <= 0 || timeout > CHECK_MAX_TIMEOUT_MS)
        timeout = CHECK_MAX_TIMEOUT_MS;
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    if (cfg->upstream.ca_file)
        curl_easy_setopt(h, CURLOPT_CAINFO, cfg->upstream.ca_file);
    if (conn)
        curl_easy_setopt(h, CURLOPT_CONNECT_TO, conn);
    /* "" disables the environment's proxy variables: only the config decides. */
    curl_easy_setopt(h, CURLOPT_PROXY, cfg->upstream.proxy ? cfg->upstream.proxy : "");
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)(cfg->upstream.connect_timeout_ms > 0
                                ? cfg->upstream.connect_timeout_ms
                                : CONFIG_DEFAULT_CONNECT_TIMEOUT_MS));
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout);
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION,
                     cfg->upstream.http2 ? CURL_HTTP_VERSION_2TLS : CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "credproxy-check/" CREDPROXY_VERSION);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, bodybuf_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &io->sink);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, check_on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, io);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, io->errbuf);
    return h;
}

/*
 * Give libcurl the credential; it renders the Authorization header itself.
 * minted: the access token of an oauth_client (else NULL).
 */
static void check_set_auth(CURL *h, const struct config_credential *c, const char *minted)
{
    if (c->type == CONFIG_CRED_BEARER || minted) {
        curl_easy_setopt(h, CURLOPT_HTTPAUTH, CURLAUTH_BEARER);
        curl_easy_setopt(h, CURLOPT_XOAUTH2_BEARER, minted ? minted : c->secret);
    } else {
        curl_easy_setopt(h, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
        curl_easy_setopt(h, CURLOPT_USERNAME, c->email ? c->email : "");
        curl_easy_setopt(h, CURLOPT_PASSWORD, c->secret);
    }
}

/*
 * Issue 10: mint an access token for an oauth_client (POST token_url, the
 * client credentials in a JSON body that is wiped afterwards). True with the
 * token in tok (the caller wipes it); false with v filled.
 */
static bool check_mint(CURL *h, const struct config_credential *c, const struct check_target *t,
                       struct check_io *io, char *tok, size_t tcap, struct check_verdict *v)
{
    struct check_exchange x;
    size_t cap =
        128 + 6 * (strlen(c->client_id) + strlen(c->secret) + (c->scopes ? strlen(c->scopes) : 0));
    char *id = xmalloc(cap), *sec = xmalloc(cap), *sc = xmalloc(cap), *body = xmalloc(cap);
    struct curl_slist *hl = curl_slist_append(NULL, "Content-Type: application/json");
    struct curl_slist *h2 = hl ? curl_slist_append(hl, "Accept: application/json") : NULL;
    bool ok = false;

    if (h2)
        hl = h2;
    log_json_escape(id, cap, c->client_id);
    log_json_escape(sec, cap, c->secret);
    if (c->scopes)
        log_json_escape(sc, cap, c->scopes);
    snprintf(body, cap,
             "{\"grant_type\": \"client_credentials\", \"client_id\": %s, \"client_secret\": "
             "%s%s%s}",
             id, sec, c->scopes ? ", \"scope\": " : "", c->scopes ? sc : "");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    check_get_at(h, c->token_url ? c->token_url : CONFIG_DEFAULT_TOKEN_URL, "", io, &x);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, NULL);
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    util_secure_zero(sec, cap);
    util_secure_zero(body, cap);
    if (check_diagnose_token(t, &x, v)) {
        int64_t life;
        char why[128];
        if (tokensched_parse(io->body, tok, tcap, &life, why, sizeof(why)) == 0) {
            ok = true;
        } else {
            check_set(v, CHECK_FAIL, "token_endpoint_error", x.status);
            check_msg(v, "the token endpoint's answer is unusable: %s", why);
        }
    }
    util_secure_zero(io->body, sizeof(io->body));
    curl_slist_free_all(hl);
    free(id);
    free(sec);
    free(sc);
    free(body);
    return ok;
}

/* Checks one site; prints its two lines. Returns true when nothing failed. */
static bool check_site(const struct config *cfg, const struct config_site *s, bool json, FILE *out,
                       struct check_io *io, struct curl_slist *conn, struct curl_slist *hdrs)
{
    const struct config_credential *c = &cfg->credentials[s->credential];
    struct check_target t = {
        .host = s->host,
        .credential = c->name,
        .email = c->type == CONFIG_CRED_BASIC ? c->email : NULL,
        .bearer = c->type != CONFIG_CRED_BASIC,
        .expires = c->expires,
        .now = util_wall_time(),
        .via_gateway = c->via_gateway,
        .oauth = c->type == CONFIG_CRED_OAUTH_CLIENT,
        .env_default = cfg->file && strcmp(cfg->file, "<environment>") == 0,
    };
    char *tok = NULL;
    struct check_verdict v[2];
    struct check_exchange x;
    char cloud_id[CHECK_MAX_FIELD] = "";
    bool ok = true;
    CURL *h;

    if (!c->secret || !*c->secret) {
        check_verdict_init(&v[0]);
        check_set(&v[0], CHECK_FAIL, "no_secret", 0);
        check_msg(&v[0],
                  "credential '%s' has no token loaded. Set its token_env variable or "
                  "token_file",
                  c->name);
        v[1] = v[0];
        goto print;
    }
    h = check_handle(cfg, io, conn, hdrs);
    if (!h) {
        check_verdict_init(&v[0]);
        check_set(&v[0], CHECK_FAIL, "internal_error", 0);
        check_msg(&v[0], "libcurl could not start");
        v[1] = v[0];
        goto print;
    }
    check_get(h, s, "/_edge/tenant_info", io, &x);
    if (!check_diagnose_site(&t, &x, &v[0], cloud_id, sizeof(cloud_id))) {
        v[1] = v[0];
        curl_easy_cleanup(h);
        goto print;
    }
    if (s->cloud_id)
        snprintf(cloud_id, sizeof(cloud_id), "%s", s->cloud_id);
    if (c->via_gateway && !cloud_id[0]) {
        check_verdict_init(&v[0]);
        check_set(&v[0], CHECK_FAIL, "cloud_id_unknown", x.status);
        check_msg(&v[0],
                  "credential %s goes through the API gateway, which needs the site's cloudId, "
                  "and https://%s/_edge/tenant_info did not give one; set cloud_id: on the site",
                  c->name, s->host);
        v[1] = v[0];
        curl_easy_cleanup(h);
        goto print;
    }
    if (t.oauth) {
        tok = xcalloc(1, TOKENSCHED_MAX_TOKEN + 1);
        if (!check_mint(h, c, &t, io, tok, TOKENSCHED_MAX_TOKEN + 1, &v[0])) {
            v[1] = v[0];
            curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
            curl_easy_cleanup(h);
            goto print;
        }
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    }
    check_set_auth(h, c, tok);
    for (int p = 0; p < 2; p++) {
        enum check_product prod = (enum check_product)p;
        if (c->via_gateway) {
            char *base = check_gateway_base(prod, cloud_id);
            check_get_at(h, base, check_product_path(prod), io, &x);
            free(base);
        } else {
            check_get(h, s, check_product_path(prod), io, &x);
        }
        check_diagnose_product(&t, prod, &x, &v[p]);
        /* A 401 at the site URL: a scoped token? Try once through the gateway. */
        if (!c->via_gateway && c->type == CONFIG_CRED_BASIC && cloud_id[0] &&
            strcmp(v[p].cause, "credentials_rejected") == 0 && x.status == 401) {
            char *base = check_gateway_base(prod, cloud_id);
            struct check_verdict scoped;
            check_get_at(h, base, check_product_path(prod), io, &x);
            free(base);
            if (check_diagnose_scoped(&t, prod, &x, &scoped))
                v[p] = scoped;
        }
    }
    curl_easy_cleanup(h);
    /* One missing product is normal; none at all means no usable site. */
    if (v[0].outcome == CHECK_SKIP && v[1].outcome == CHECK_SKIP) {
        check_set(&v[1], CHECK_FAIL, "no_product", v[1].status);
        v[1].message[0] = '\0';
        check_msg(&v[1],
                  "neither Jira nor Confluence answered on %s (404 on both). Verify your "
                  "Atlassian domain is correct and that the site has a product on it",
                  s->host);
    }
print:
    if (tok) {
        util_secure_zero(tok, TOKENSCHED_MAX_TOKEN + 1);
        free(tok);
    }
    for (int p = 0; p < 2; p++) {
        check_print_verdict(out, json, &t, (enum check_product)p, &v[p], cloud_id);
        if (v[p].outcome == CHECK_FAIL)
            ok = false;
    }
    fflush(out);
    return ok;
}

int check_run(const struct config *cfg, bool json, FILE *out)
{
    struct curl_slist *conn = NULL, *hdrs = NULL;
    struct check_io *io = xcalloc(1, sizeof(*io));
    bool all_ok = true;

    for (size_t i = 0; i < cfg->upstream.nconnect_to; i++)
        conn = curl_slist_append(conn, cfg->upstream.connect_to[i].text);
    hdrs = curl_slist_append(hdrs, "Accept: application/json");
    if (cfg->nsites == 0) {
        fprintf(stderr, "credproxy: check: no sites configured\n");
        all_ok = false;
    }
    for (size_t i = 0; i < cfg->nsites; i++) {
        if (!check_site(cfg, &cfg->sites[i], json, out, io, conn, hdrs))
            all_ok = false;
    }
    curl_slist_free_all(conn);
    curl_slist_free_all(hdrs);
    free(io);
    return all_ok ? 0 : 1;
}
