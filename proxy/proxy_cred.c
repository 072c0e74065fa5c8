/*
 * proxy_cred: the credential's side of the pipeline (proxy_int.h), below
 * every stage: the Authorization line a request carries upstream, and what
 * Atlassian says about the credential in its answers: the rate-limit
 * signals (to the limiter), the verdict on the credential (to the breaker),
 * a refused minted token (to the token keeper). Every exchange that carries
 * the credential reports here, the client's own and the policy stage's
 * lookups alike. Never formats a secret's bytes into a message or log.
 */
#include "proxy_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "breaker.h"
#include "config.h"
#include "credstate.h"
#include "cred.h"
#include "ratelimit.h"
#include "tokens.h"
#include "upstream.h"
#include "util.h"
#include "world.h"

/* ------------------------------------------------------- the credential */

/* The credential's Authorization line: rendered at load, or the minted access token. */
bool proxy_add_cred_header(struct request *r, struct upstream_hblock *hl)
{
    if (!cred_is_minted(r->cred))
        return upstream_hblock_add_line(hl, cred_header(r->cred));
    char *line = xmalloc(TOKENS_MAX_HEADER);
    bool ok = tokens_auth_line(r->svc->tokens, cred_name(r->cred), line, TOKENS_MAX_HEADER, NULL,
                               0) == TOKENS_READY &&
              upstream_hblock_add_line(hl, line);
    util_secure_zero(line, TOKENS_MAX_HEADER);
    free(line);
    return ok;
}

/* The route said so (route_gateway_site): the credential works only through the gateway. */
bool proxy_via_gateway(const struct request *r)
{
    return r->site && r->world->cfg->credentials[r->site->credential].via_gateway;
}

/* ------------------------------------------------- what Atlassian said */

bool proxy_header_is(const struct upstream_header *h, const char *name)
{
    size_t n = strlen(name);
    return h->name_len == n && util_memcaseeq(h->name, name, n);
}

/* Copy a header value for the rate limiter (NULL when absent or too long). */
static const char *rl_value(const struct upstream_header *h, char *buf)
{
    if (!h || h->value_len >= PROXY_RL_VALUE_MAX)
        return NULL;
    memcpy(buf, h->value, h->value_len);
    buf[h->value_len] = '\0';
    return buf;
}

void proxy_headers_find(const struct upstream_header *h, size_t n, const char *const *names,
                        size_t count, const struct upstream_header **found)
{
    memset(found, 0, count * sizeof(found[0]));
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < count; k++) {
            if (!found[k] && proxy_header_is(&h[i], names[k])) {
                found[k] = &h[i];
                break;
            }
        }
    }
}

/* The answer's headers about the credential (the first of each name). */
enum cred_header {
    CH_RETRY_AFTER = 0,
    CH_RESET,
    CH_REMAINING,
    CH_NEAR_LIMIT,
    CH_BETA_RETRY_AFTER,
    CH_REASON,
    CH_SERAPH,
    CH_DENIED,
    CH_COUNT
};

static const char *const ch_names[CH_COUNT] = {
    [CH_RETRY_AFTER] = "retry-after",           [CH_RESET] = "x-ratelimit-reset",
    [CH_REMAINING] = "x-ratelimit-remaining",   [CH_NEAR_LIMIT] = "x-ratelimit-nearlimit",
    [CH_BETA_RETRY_AFTER] = "beta-retry-after", [CH_REASON] = "ratelimit-reason",
    [CH_SERAPH] = "x-seraph-loginreason",       [CH_DENIED] = "x-authentication-denied-reason",
};

static void breaker_answer(struct request *r, int status, const struct upstream_header *seraph,
                           const struct upstream_header *denied);

void proxy_cred_heard(struct request *r, int status, const struct upstream_header *h, size_t n)
{
    if (!r->cred)
        return;
    const struct upstream_header *ch[CH_COUNT];
    char b[6][PROXY_RL_VALUE_MAX];
    proxy_headers_find(h, n, ch_names, CH_COUNT, ch);
    struct rl_signals sig = {
        .retry_after = rl_value(ch[CH_RETRY_AFTER], b[0]),
        .reset = rl_value(ch[CH_RESET], b[1]),
        .remaining = rl_value(ch[CH_REMAINING], b[2]),
        .near_limit = rl_value(ch[CH_NEAR_LIMIT], b[3]),
        .beta_retry_after = rl_value(ch[CH_BETA_RETRY_AFTER], b[4]),
        .reason = rl_value(ch[CH_REASON], b[5]),
    };
    ratelimit_upstream_signals(r->svc->rl, cred_name(r->cred), status, &sig, util_now_ms());
    breaker_answer(r, status, ch[CH_SERAPH], ch[CH_DENIED]);
    if (status == 401 && cred_is_minted(r->cred))
        tokens_refused(r->svc->tokens, cred_name(r->cred)); /* revoked early: mint anew */
}

/* ---------------------------------------------------------------- breaker */

/* A probe that ended without an answer from Atlassian: no verdict either way. */
void proxy_breaker_probe_gone(struct request *r)
{
    if (!r->probe || !r->cred)
        return;
    struct breaker_info info;
    struct breaker_change chg;
    r->probe = false;
    if (breaker_report(r->svc->breaker, cred_name(r->cred), true, BREAKER_OUTCOME_NEUTRAL, NULL,
                       util_now_ms(), &info, &chg))
        credstate_log_change(&info, &chg, NULL);
}

/* Report outcome o for the credential (the probe flag goes with it). */
static void breaker_tell(struct request *r, enum breaker_outcome o, const char *said)
{
    struct breaker_info info;
    struct breaker_change chg;
    bool probe = r->probe;
    r->probe = false;
    r->brk_pending = false;
    if (breaker_report(r->svc->breaker, cred_name(r->cred), probe, o, said, util_now_ms(), &info,
                       &chg))
        credstate_log_change(&info, &chg, NULL);
}

/* Atlassian answered a request that carried the credential: tell the breaker. */
static void breaker_answer(struct request *r, int status, const struct upstream_header *seraph,
                           const struct upstream_header *denied)
{
    char sv[CREDSTATE_MAX_VALUE + 1] = "", dv[CREDSTATE_MAX_VALUE + 1] = "";
    char said[BREAKER_MAX_SAID + 1] = "";

    if (seraph)
        snprintf(sv, sizeof(sv), "%.*s", (int)seraph->value_len, seraph->value);
    if (denied)
        snprintf(dv, sizeof(dv), "%.*s", (int)denied->value_len, denied->value);
    enum breaker_outcome o = breaker_classify(status, seraph ? sv : NULL, denied ? dv : NULL);
    /* What Atlassian said is kept only for a refusal (the breaker's reason); not per 200. */
    if (o == BREAKER_OUTCOME_AUTH_FAILED || o == BREAKER_OUTCOME_CAPTCHA)
        credstate_said(status, seraph ? sv : NULL, strlen(sv), denied ? dv : NULL, strlen(dv), said,
                       sizeof(said));
    /*
     * The gateway answers a token that lacks a scope with 401 "Unauthorized;
     * scope does not match": that says nothing against the credential, so a
     * gateway 401 is judged once the start of its body has been seen.
     */
    if (o == BREAKER_OUTCOME_AUTH_FAILED && status == 401 && (r->gw_prefix[0] || r->gw_agent_url)) {
        r->brk_pending = true;
        r->brk_scanned = 0;
        snprintf(r->brk_said, sizeof(r->brk_said), "%s", said);
        return;
    }
    breaker_tell(r, o, said);
}

/* A gateway 401's body bytes: "scope does not match" within the first BREAKER_SCAN_BYTES? */
void proxy_breaker_scan(struct request *r, const char *data, size_t len)
{
    static const char needle[] = "scope does not match";
    size_t n = sizeof(needle) - 1;
    if (!r->brk_pending)
        return;
    size_t room = sizeof(r->brk_head) - 1 - r->brk_scanned;
    size_t take = len < room ? len : room;
    memcpy(r->brk_head + r->brk_scanned, data, take);
    r->brk_scanned += take;
    r->brk_head[r->brk_scanned] = '\0';
    for (size_t i = 0; i + n <= r->brk_scanned; i++) {
        if (util_memcaseeq(r->brk_head + i, needle, n)) {
            breaker_tell(r, BREAKER_OUTCOME_NEUTRAL, NULL);
            return;
        }
    }
    if (r->brk_scanned == sizeof(r->brk_head) - 1)
        breaker_tell(r, BREAKER_OUTCOME_AUTH_FAILED, r->brk_said);
}

/* The exchange ended (or the client left) with a gateway 401 still unjudged: a real refusal. */
void proxy_breaker_flush(struct request *r)
{
    if (r->brk_pending && r->cred)
        breaker_tell(r, BREAKER_OUTCOME_AUTH_FAILED, r->brk_said);
}
