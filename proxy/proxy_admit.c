/*
 * proxy_admit: stage "admit" of the pipeline (proxy_int.h). A request that
 * will carry a credential passes three gates, in order:
 *
 *   breaker     a credential Atlassian rejected is held back (503
 *               credential_rejected) until a probe says it works again
 *   credential  an oauth_client credential needs a minted access token, a
 *               gateway-routed site its cloudId (then the URL becomes the
 *               API gateway's); waited for, bounded (503 credential_unavailable)
 *   rate limit  a token from the credential's budget, in the client's
 *               fairness lane; queued or 429 rate_limited
 *
 * then goes on to proxy_stage_forward. Also the breaker's ears on the
 * response side (proxy_breaker_*), which proxy_forward.c calls.
 */
#include "proxy_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "breaker.h"
#include "conn.h"
#include "config.h"
#include "credstate.h"
#include "cred.h"
#include "errors.h"
#include "gwroute.h"
#include "ratelimit.h"
#include "tokens.h"
#include "upstream.h"
#include "util.h"
#include "world.h"

/* ---------------------------------------------------------------- breaker */

/* 0 when the credential may be sent; -1 after answering 503 credential_rejected. */
static int breaker_admit_request(struct request *r)
{
    struct breaker_info info;
    struct breaker_change chg;
    enum breaker_verdict v =
        breaker_admit(r->svc->breaker, cred_name(r->cred), util_now_ms(), &info, &chg);
    credstate_log_change(&info, &chg, NULL);
    if (v == BREAKER_PROBE)
        r->probe = true;
    if (v != BREAKER_HOLD)
        return 0;
    char msg[CREDSTATE_MAX_MESSAGE], fields[CREDSTATE_MAX_FIELDS], extra[CREDSTATE_MAX_HEADERS];
    credstate_rejected_reply(&info, msg, sizeof(msg), fields, sizeof(fields), extra, sizeof(extra));
    proxy_reply_error_f(r, 503, ERRORS_CREDENTIAL_REJECTED, msg, fields, extra, false);
    return -1;
}

/* ------------------------------------------------------------- rate limit */

static void rl_done(void *arg, bool admitted, int64_t retry_after_ms, int64_t waited_ms)
{
    struct request *r = arg;
    r->rlwait = NULL;
    r->wait_ms += waited_ms;
    if (admitted)
        r->admit_next(r);
    else
        proxy_reply_429(r, retry_after_ms);
}

/* A token from the credential's budget in r's fairness lane, then r->admit_next; or 429. */
static void admit_ratelimit(struct request *r)
{
    struct conn *c = r->c;
    int64_t retry = 0;
    struct ratelimit_wait *wait = NULL;
    /*
     * Fairness lanes: a configured client by its id, a unix-socket peer by its
     * uid; TCP peers without a key share the anonymous lane (their ephemeral
     * ports would otherwise make a lane per connection).
     */
    const char *lane = r->client_id ? r->client_id : c->have_uid ? r->client_label : NULL;
    enum ratelimit_result res = ratelimit_acquire(r->svc->rl, r->svc->base, cred_name(r->cred),
                                                  lane, util_now_ms(), &retry, rl_done, r, &wait);
    if (res == RATELIMIT_ADMIT)
        r->admit_next(r);
    else if (res == RATELIMIT_REJECT)
        proxy_reply_429(r, retry);
    else
        r->rlwait = wait; /* rl_done follows; the body stays unread until then */
}

/* ------------------------------------------------- credential ready (issue 10) */

static void reply_unavailable(struct request *r, const char *msg)
{
    proxy_breaker_probe_gone(r);
    proxy_reply_error_x(r, 503, ERRORS_CREDENTIAL_UNAVAILABLE, msg, "Retry-After: 5\r\n", false);
}

/*
 * Does the request have what its credential needs: a minted access token
 * (oauth_client) and, for a gateway-routed site, the cloudId (then r->url
 * becomes the gateway URL)? 0 ready, 1 not yet (wait), -1 answered 503.
 */
static int cred_ready(struct request *r)
{
    struct tokens *t = r->svc->tokens;
    char why[TOKENS_MAX_WHY], msg[TOKENS_MAX_WHY + 200];
    enum tokens_state st;

    if (cred_is_minted(r->cred)) {
        char *line = xmalloc(TOKENS_MAX_HEADER);
        st = tokens_auth_line(t, cred_name(r->cred), line, TOKENS_MAX_HEADER, why, sizeof(why));
        util_secure_zero(line, TOKENS_MAX_HEADER);
        free(line);
        if (st == TOKENS_PENDING)
            return 1;
        if (st == TOKENS_UNAVAILABLE) {
            snprintf(msg, sizeof(msg), "credential %s has no access token: %s", cred_name(r->cred),
                     why);
            reply_unavailable(r, msg);
            return -1;
        }
    }
    if (proxy_via_gateway(r) && !r->gw_prefix[0] && !r->gw_agent_url) {
        char id[CONFIG_MAX_CLOUD_ID + 1];
        st = tokens_cloud_id(t, r->site->host, r->site->port, id, sizeof(id), why, sizeof(why));
        if (st == TOKENS_PENDING)
            return 1;
        if (st == TOKENS_UNAVAILABLE) {
            snprintf(msg, sizeof(msg),
                     "site %s: the API gateway needs its cloudId, which is unknown: %s",
                     r->site->host, why);
            reply_unavailable(r, msg);
            return -1;
        }
        const char *origin = r->world->sites[world_site_index(r->world, r->site)].origin;
        const char *path = r->url + strlen(origin);
        char *url = gwroute_url(path, strlen(path), id);
        if (!url || gwroute_prefix(gwroute_product_for(path, strlen(path)), id, r->gw_prefix,
                                   sizeof(r->gw_prefix)) < 0) {
            free(url);
            /* Dot segments or encoded separators: ambiguous once normalized, so refused. */
            proxy_reply_error_x(
                r, 400, "bad_request",
                "the path cannot go through the API gateway unchanged (dot segments, "
                "backslashes or an encoded '/' are refused)",
                NULL, false);
            return -1;
        }
        free(r->url);
        r->url = url;
    }
    return 0;
}

static void stage_credential(struct request *r);

static void credwait_fire(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    stage_credential(arg);
}

/* Wait (bounded, polling) for a token or cloudId being fetched, then go on to the rate limit. */
static void stage_credential(struct request *r)
{
    int rc = cred_ready(r);
    if (rc < 0)
        return;
    if (rc == 0) {
        if (r->credwait_ms_start)
            r->wait_ms += util_now_ms() - r->credwait_ms_start;
        r->credwait_ms_start = 0; /* a lookup waited before: the request's own wait is its own */
        admit_ratelimit(r);
        return;
    }
    int64_t now = util_now_ms();
    if (!r->credwait_ms_start)
        r->credwait_ms_start = now;
    if (now - r->credwait_ms_start >= TOKENS_MAX_WAIT_MS) {
        char msg[200];
        snprintf(msg, sizeof(msg),
                 "credential %s: no access token or cloudId within %d s; see /readyz and the log",
                 cred_name(r->cred), TOKENS_MAX_WAIT_MS / 1000);
        reply_unavailable(r, msg);
        return;
    }
    if (!r->credwait_ev)
        r->credwait_ev = evtimer_new(r->svc->base, credwait_fire, r);
    struct timeval tv = {0, TOKENS_POLL_MS * 1000};
    if (!r->credwait_ev || evtimer_add(r->credwait_ev, &tv) < 0)
        reply_unavailable(r, "cannot wait for the access token");
}

void proxy_admit_then(struct request *r, void (*next)(struct request *r))
{
    if (!r->cred) {
        next(r);
        return;
    }
    r->admit_next = next;
    if (breaker_admit_request(r) < 0)
        return;
    stage_credential(r);
}

void proxy_stage_admit(struct request *r)
{
    proxy_admit_then(r, proxy_stage_forward);
}
