/*
 * proxy: the request pipeline. See proxy.h.
 *
 * Stages, in order, each a function below (the entry point is
 * proxy_request_begin at the end of the file):
 *   parse     conn.c/http1.c frame the head; proxy_parse_error answers refusals
 *   route     stage_route: route.c decides the site, mode and URL, or refuses
 *   identify  identify: the client's id from Proxy-Authorization or its uid
 *   admit     admit_and_forward: the breaker (breaker_admit_request: a rejected
 *             credential is held back, 503 credential_rejected), the credential
 *             stage (stage_credential: a minted token and the gateway's cloudId,
 *             waited for, bounded; the API-gateway URL), then the rate limit
 *   forward   forward: strip, inject, start the upstream exchange
 *   respond   up_on_head / up_on_body / up_on_done: frame the response back
 *   log       request_log: one audit line and the metrics
 * CONNECT leaves the pipeline after identify: start_intercept or start_tunnel.
 */
#include "proxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "clientauth.h"
#include "breaker.h"
#include "conn.h"
#include "credstate.h"
#include "cred.h"
#include "errors.h"
#include "framing.h"
#include "h1up.h"
#include "hostmap.h"
#include "http1.h"
#include "log.h"
#include "metrics.h"
#include "mitm.h"
#include "policy.h"
#include "ratelimit.h"
#include "rewrite.h"
#include "gwroute.h"
#include "tokens.h"
#include "route.h"
#include "tunnel.h"
#include "upstream.h"
#include "util.h"
#include "world.h"

#define PROXY_RL_VALUE_MAX 64 /* Retry-After & co. longer than this are ignored */

/* The policy stage's state per request (see "policy stage" below). */
#define PROXY_LOOKUP_URL_MAX 512
#define PROXY_HOLD_INITIAL                                                                         \
    (16 * 1024)                  /* first size of a held-body buffer; doubles to the limit         \
                                  */
#define PROXY_HOLD_MIN_READ 4096 /* grow the buffer when less room than this is left */
#define PROXY_HOLD_TIMEOUT_MS (30 * 1000) /* a held body must arrive within this */

struct policy_stage {
    const struct config_policy *pol; /* in r->world->cfg */
    struct policy_op op;
    /* the held request body (only when the scoped policy needs it) */
    bool holding;    /* reading it now */
    bool body_ready; /* held completely: forward sends these bytes instead of the stream */
    char *held;
    size_t held_len, held_cap, held_off;
    struct event *hold_timer; /* PROXY_HOLD_TIMEOUT_MS while holding */
    /* one id lookup */
    enum policy_lookup lookup;
    char lookup_id[POLICY_MAX_KEY + 1];
    struct evbuffer *lookup_body;
    int lookup_status;
    bool lookup_too_big;
};

static void policy_stage_free(struct policy_stage *ps)
{
    if (!ps)
        return;
    free(ps->held);
    if (ps->hold_timer)
        event_free(ps->hold_timer);
    if (ps->lookup_body)
        evbuffer_free(ps->lookup_body);
    free(ps);
}

/* ---------------------------------------------------------------- helpers */

static const struct config *req_cfg(const struct request *r)
{
    return r->world->cfg;
}

static const char *header_value(const struct conn *c, const char *name, size_t *len)
{
    int i = http1_find_header(&c->parser, name);
    if (i < 0) {
        *len = 0;
        return NULL;
    }
    return http1_header_value(&c->parser, (size_t)i, len);
}

static char *path_for_log(const char *path, size_t len)
{
    const char *q = memchr(path, '?', len);
    if (q)
        len = (size_t)(q - path);
    const char *h = memchr(path, '#', len);
    if (h)
        len = (size_t)(h - path);
    return xstrndup(path, len);
}

static const char *metric_client(const struct request *r, char *buf, size_t cap)
{
    if (r->client_id)
        return r->client_id;
    if (r->c->have_uid) {
        clientauth_peer_uid_id(r->c->peer_uid, buf, cap);
        return buf;
    }
    return "anonymous";
}

/* ---------------------------------------------------- the upstream engine */

/*
 * The one switch point between the two upstream engines (the rest of the
 * pipeline cannot tell them apart): the lean HTTP/1.1 engine (h1up) for
 * HTTPS to a mapped site without upstream.http2 or an egress proxy;
 * libcurl for everything else (h2, upstream.proxy, plain http tunnel mode).
 */
static bool engine_is_lean(const struct request *r)
{
    const struct config *cfg = r->world->cfg;
    return r->svc->h1 && r->cred && !cfg->upstream.http2 &&
           !(cfg->upstream.proxy && cfg->upstream.proxy[0]) && strncmp(r->url, "https://", 8) == 0;
}

static void engine_cancel(struct request *r)
{
    if (r->ex)
        upstream_cancel(r->ex);
    if (r->hx)
        h1up_cancel(r->hx);
    r->ex = NULL;
    r->hx = NULL;
}

static int64_t engine_elapsed_ms(const struct request *r)
{
    return r->hx ? h1up_elapsed_ms(r->hx) : upstream_elapsed_ms(r->ex);
}

static void request_log(struct request *r)
{
    struct conn *c = r->c;
    char uidbuf[32];
    int64_t now = util_now_ms();
    struct log_audit a = {
        .client = r->client_label ? r->client_label : c->peer,
        .method = http1_method(&c->parser),
        .host = r->host ? r->host : "",
        .path = r->path ? r->path : "",
        .status = r->status,
        .bytes_in = r->bytes_in,
        .bytes_out = r->bytes_out,
        .total_ms = now - r->start_ms,
        .upstream_ms = r->upstream_ms,
        .ratelimit_wait_ms = r->wait_ms,
        .credential = r->cred ? cred_name(r->cred) : NULL,
        .error = r->error,
        .mode = r->mode ? r->mode : "forward",
        .op_class = r->op_class,
        .reason = r->reason[0] ? r->reason : NULL,
    };
    log_audit(&a);
    /* Bounded labels: no site -> METRICS_SITE_UNMAPPED; a CONNECT under its own label. */
    metrics_request(r->svc->metrics, r->site ? r->site->host : NULL,
                    a.method && strcmp(a.method, "CONNECT") == 0 ? METRICS_CRED_CONNECT
                    : r->cred                                    ? cred_name(r->cred)
                                                                 : NULL,
                    metric_client(r, uidbuf, sizeof(uidbuf)), r->status,
                    (double)(now - r->start_ms) / 1000.0);
    metrics_upstream_connections(r->svc->metrics, upstream_take_new_connections(r->svc->up) +
                                                      h1up_take_new_connections(r->svc->h1));
}

/* The response is complete: log, then let the connection move on (frees r). */
static void request_finish(struct request *r)
{
    r->finished = true;
    request_log(r);
    conn_request_done(r->c);
}

static void reply_error_f(struct request *r, int status, const char *code, const char *msg,
                          const char *fields, const char *extra, bool force_close);
static void breaker_probe_gone(struct request *r);
static void breaker_flush(struct request *r);

static void reply_error_x(struct request *r, int status, const char *code, const char *msg,
                          const char *extra, bool force_close)
{
    reply_error_f(r, status, code, msg, NULL, extra, force_close);
}

/* reply_error_x with more JSON members in the body (see errors_write_json). */
static void reply_error_f(struct request *r, int status, const char *code, const char *msg,
                          const char *fields, const char *extra, bool force_close)
{
    breaker_probe_gone(r); /* a probe answered by the proxy itself (429, 503) told nothing */
    struct conn *c = r->c;
    /* A refused CONNECT ends the connection: the client may already be sending TLS. */
    bool close =
        force_close || status == 400 || status == 431 || c->parser.is_connect || conn_must_close(c);
    if (r->head_sent) {
        /* Nothing can be said any more: cut the connection. */
        conn_close_after(c);
        r->error = code;
        request_finish(r);
        return;
    }
    if (close)
        conn_close_after(c);
    r->bytes_out = errors_write_json(conn_output(c), status, code, msg, fields, extra, close);
    if (status == 502 || status == 504) /* the audit line says why upstream failed */
        snprintf(r->reason, sizeof(r->reason), "%s", msg ? msg : "");
    r->status = status;
    r->error = code;
    r->head_sent = true;
    request_finish(r);
}

static void reply_error(struct request *r, int status, const char *msg)
{
    reply_error_x(r, status, errors_code_for(status), msg, NULL, false);
}

static void reply_429(struct request *r, int64_t retry_after_ms)
{
    char extra[64];
    int64_t secs = (retry_after_ms + 999) / 1000;
    if (secs < 1)
        secs = 1;
    snprintf(extra, sizeof(extra), "Retry-After: %lld\r\n", (long long)secs);
    char msg[160];
    snprintf(msg, sizeof(msg), "the rate limit of credential %s is exhausted; retry after %lld s",
             r->cred ? cred_name(r->cred) : "?", (long long)secs);
    reply_error_x(r, 429, "rate_limited", msg, extra, false);
}

static struct request *request_new(const struct proxy_services *svc, struct conn *c)
{
    struct request *r = xcalloc(1, sizeof(*r));
    r->c = c;
    r->svc = svc;
    r->world = svc->world_acquire(svc->world_arg);
    r->start_ms = util_now_ms();
    r->upstream_ms = -1;
    r->mode = "forward";
    return r;
}

static void proxy_request_free(struct request *r)
{
    if (!r)
        return;
    if (r->credwait_ev)
        event_free(r->credwait_ev);
    world_unref(r->world);
    rewrite_free(r->rw);
    policy_stage_free(r->pol);
    free(r->client_id);
    free(r->client_label);
    free(r->host);
    free(r->path);
    free(r->url);
    free(r->gateway_origin);
    free(r);
}

static void proxy_request_abort(struct request *r)
{
    breaker_flush(r);
    breaker_probe_gone(r);
    if (r->ex || r->hx) {
        r->upstream_ms = engine_elapsed_ms(r);
        engine_cancel(r);
    }
    if (r->rlwait) {
        ratelimit_cancel(r->rlwait);
        r->rlwait = NULL;
    }
    if (r->tunnel) {
        struct tunnel_stats st;
        tunnel_get_stats(r->tunnel, &st);
        r->bytes_in = st.bytes_up;
        r->bytes_out = st.bytes_down;
        r->upstream_ms = st.connect_ms;
        tunnel_free(r->tunnel);
        r->tunnel = NULL;
    }
    if (!r->finished) {
        r->finished = true;
        if (!r->status)
            r->status = 499; /* nginx's "client closed request": no response was completed */
        request_log(r);
    }
    proxy_request_free(r);
}

/* ---------------------------------------------------------------- breaker */

/* A probe that ended without an answer from Atlassian: no verdict either way. */
static void breaker_probe_gone(struct request *r)
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

static void breaker_tell(struct request *r, enum breaker_outcome o, const char *said);

/* Atlassian answered a request that carried the credential: tell the breaker. */
static void breaker_answer(struct request *r, int status, const struct upstream_header *seraph,
                           const struct upstream_header *denied)
{
    char sv[CREDSTATE_MAX_VALUE + 1] = "", dv[CREDSTATE_MAX_VALUE + 1] = "";
    char said[BREAKER_MAX_SAID + 1];

    if (seraph)
        snprintf(sv, sizeof(sv), "%.*s", (int)seraph->value_len, seraph->value);
    if (denied)
        snprintf(dv, sizeof(dv), "%.*s", (int)denied->value_len, denied->value);
    enum breaker_outcome o = breaker_classify(status, seraph ? sv : NULL, denied ? dv : NULL);
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

/* A gateway 401's body bytes: "scope does not match" within the first BREAKER_SCAN_BYTES? */
static void breaker_scan(struct request *r, const char *data, size_t len)
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
static void breaker_flush(struct request *r)
{
    if (r->brk_pending && r->cred)
        breaker_tell(r, BREAKER_OUTCOME_AUTH_FAILED, r->brk_said);
}

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
    reply_error_f(r, 503, ERRORS_CREDENTIAL_REJECTED, msg, fields, extra, false);
    return -1;
}

static void proxy_parse_error(void *arg, struct conn *c, int status, const char *code,
                              const char *msg)
{
    struct request *r = request_new(arg, c);
    c->req = r;
    r->mode = "forward";
    r->path = xstrdup("");
    log_debug("refused a request from %s: %s", c->peer, msg ? msg : code);
    reply_error_x(r, status, code ? code : "bad_request", msg ? msg : "malformed request", NULL,
                  true);
}

/* ------------------------------------------------------------- identity */

/* 0 when the client may go on; -1 after answering 407. */
static int identify(struct request *r)
{
    struct conn *c = r->c;
    const struct config *cfg = req_cfg(r);
    char buf[48];

    if (c->intercept) {
        /* The CONNECT that opened the tunnel was authenticated (or did not need to be). */
        r->client_id = c->tunnel_client ? xstrdup(c->tunnel_client) : NULL;
    } else {
        size_t len;
        const char *v = header_value(c, "proxy-authorization", &len);
        const struct config_client *cl = NULL;
        enum clientauth_result res = clientauth_check(cfg, v, len, &cl);
        bool gateway = strcmp(r->mode, "gateway") == 0;
        if (res == CLIENTAUTH_NONE && gateway && cfg->nclients > 0) {
            /*
             * Base-URL clients (python3-jira basic_auth, jira.js basic) cannot send
             * Proxy-Authorization but do send Authorization: Basic base64(id:key). One
             * that matches a configured client identifies it; any other value is ignored
             * (and, like every client Authorization, never forwarded).
             */
            size_t alen;
            const char *av = header_value(c, "authorization", &alen);
            const struct config_client *acl = NULL;
            if (av && clientauth_check(cfg, av, alen, &acl) == CLIENTAUTH_OK && acl) {
                res = CLIENTAUTH_OK;
                cl = acl;
            }
        }
        if (res == CLIENTAUTH_NONE && gateway && cfg->require_client_auth) {
            reply_error_x(r, 401, "client_auth_required",
                          "this gateway requires a client identity: send Authorization: Basic "
                          "base64(id:key) of a configured client (basic_auth=(id, key))",
                          "WWW-Authenticate: Basic realm=\"credproxy\"\r\n", false);
            return -1;
        }
        /* With no clients configured a stray Proxy-Authorization is just dropped. */
        if ((res == CLIENTAUTH_BAD && (cfg->nclients > 0 || cfg->require_client_auth)) ||
            (res == CLIENTAUTH_NONE && cfg->require_client_auth))
            r->cred = NULL; /* refused below: nothing is injected, nothing is logged as such */
        if (res == CLIENTAUTH_BAD && (cfg->nclients > 0 || cfg->require_client_auth)) {
            reply_error_x(r, 407, "client_auth_required",
                          "Proxy-Authorization was not accepted: send Basic base64(id:key) of a "
                          "configured client",
                          "Proxy-Authenticate: Basic realm=\"credproxy\"\r\n", false);
            return -1;
        }
        if (res == CLIENTAUTH_NONE && cfg->require_client_auth) {
            reply_error_x(r, 407, "client_auth_required",
                          "this proxy requires Proxy-Authorization: Basic base64(id:key)",
                          "Proxy-Authenticate: Basic realm=\"credproxy\"\r\n", false);
            return -1;
        }
        if (res == CLIENTAUTH_OK && cl)
            r->client_id = xstrdup(cl->id);
    }
    if (r->client_id) {
        r->client_label = xstrdup(r->client_id);
    } else if (c->have_uid) {
        clientauth_peer_uid_id(c->peer_uid, buf, sizeof(buf));
        r->client_label = xstrdup(buf);
    } else {
        r->client_label = xstrdup(c->peer);
    }
    return 0;
}

/* ------------------------------------------------------- upstream glue */

static int emit_evbuffer(void *arg, const char *p, size_t n)
{
    return evbuffer_add(arg, p, n);
}

/* Append buf's bytes to the client as one chunk (or raw), emptying buf. */
static void write_out(struct request *r, struct evbuffer *buf)
{
    struct evbuffer *out = conn_output(r->c);
    size_t n = evbuffer_get_length(buf);
    if (n == 0)
        return;
    if (r->out_chunked)
        evbuffer_add_printf(out, "%zx\r\n", n);
    evbuffer_add_buffer(out, buf);
    if (r->out_chunked)
        evbuffer_add(out, "\r\n", 2);
}

static bool hdr_is(const struct upstream_header *h, const char *name)
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

static bool contains_ci(const char *s, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= len; i++) {
        if (util_memcaseeq(s + i, needle, n))
            return true;
    }
    return false;
}

/* A Location on the API gateway (https://api.atlassian.com/ex/jira/ID/...) back to the agent's
 * base. */
static char *gateway_location(const struct request *r, const char *v)
{
    struct rewrite *rw =
        rewrite_new(r->world->sites[world_site_index(r->world, r->site)].origin, r->gateway_origin);
    char *nv = NULL;
    if (rw && rewrite_add_source(rw, GWROUTE_ORIGIN, r->gw_prefix) == 0)
        nv = rewrite_location_rw(rw, v);
    rewrite_free(rw);
    return nv;
}

static int up_on_head(void *arg, int status, const struct upstream_header *h, size_t n)
{
    struct request *r = arg;
    struct conn *c = r->c;
    /* The response headers the pipeline reads (the first of each name). */
    enum {
        RH_RETRY_AFTER = 0,
        RH_RESET,
        RH_REMAINING,
        RH_NEAR_LIMIT,
        RH_BETA_RETRY_AFTER,
        RH_REASON,
        RH_SERAPH,
        RH_DENIED,
        RH_CONTENT_LENGTH,
        RH_CONTENT_TYPE,
        RH_CONTENT_ENCODING,
        RH_CONNECTION,
        RH_COUNT
    };
    static const char *const rh_names[RH_COUNT] = {
        [RH_RETRY_AFTER] = "retry-after",           [RH_RESET] = "x-ratelimit-reset",
        [RH_REMAINING] = "x-ratelimit-remaining",   [RH_NEAR_LIMIT] = "x-ratelimit-nearlimit",
        [RH_BETA_RETRY_AFTER] = "beta-retry-after", [RH_REASON] = "ratelimit-reason",
        [RH_SERAPH] = "x-seraph-loginreason",       [RH_DENIED] = "x-authentication-denied-reason",
        [RH_CONTENT_LENGTH] = "content-length",     [RH_CONTENT_TYPE] = "content-type",
        [RH_CONTENT_ENCODING] = "content-encoding", [RH_CONNECTION] = "connection",
    };
    const struct upstream_header *rh[RH_COUNT] = {0};

    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < RH_COUNT; k++) {
            if (!rh[k] && hdr_is(&h[i], rh_names[k])) {
                rh[k] = &h[i];
                break;
            }
        }
    }
    const struct upstream_header *ra = rh[RH_RETRY_AFTER], *reset = rh[RH_RESET],
                                 *rem = rh[RH_REMAINING], *near = rh[RH_NEAR_LIMIT],
                                 *bra = rh[RH_BETA_RETRY_AFTER], *reason = rh[RH_REASON],
                                 *seraph = rh[RH_SERAPH], *denied = rh[RH_DENIED],
                                 *cl = rh[RH_CONTENT_LENGTH], *ctype = rh[RH_CONTENT_TYPE],
                                 *cenc = rh[RH_CONTENT_ENCODING], *connection = rh[RH_CONNECTION];
    if (r->cred) {
        char b[6][PROXY_RL_VALUE_MAX];
        struct rl_signals sig = {
            .retry_after = rl_value(ra, b[0]),
            .reset = rl_value(reset, b[1]),
            .remaining = rl_value(rem, b[2]),
            .near_limit = rl_value(near, b[3]),
            .beta_retry_after = rl_value(bra, b[4]),
            .reason = rl_value(reason, b[5]),
        };
        ratelimit_upstream_signals(r->svc->rl, cred_name(r->cred), status, &sig, util_now_ms());
        breaker_answer(r, status, seraph, denied);
        if (status == 401 && cred_is_minted(r->cred))
            tokens_refused(r->svc->tokens, cred_name(r->cred)); /* revoked early: mint anew */
    }

    bool no_body = c->parser.is_head || framing_status_has_no_body(status);
    bool encoded = cenc && !(cenc->value_len == 8 && util_memcaseeq(cenc->value, "identity", 8));
    bool json = ctype && contains_ci(ctype->value, ctype->value_len, "json");
    if (r->gateway_origin && !no_body && json && !encoded) {
        r->rw = rewrite_new(r->world->sites[world_site_index(r->world, r->site)].origin,
                            r->gateway_origin);
        if (r->rw && r->gw_prefix[0])
            rewrite_add_source(r->rw, GWROUTE_ORIGIN, r->gw_prefix);
    }
    struct framing_input fin = {
        .status = status,
        .head = c->parser.is_head,
        .client_http11 = c->parser.http_minor >= 1,
        .length_known = cl != NULL,
        .body_rewritten = r->rw != NULL,
    };
    struct framing fr = framing_decide(&fin);
    r->out_no_body = fr.mode == FRAMING_NONE;
    r->out_chunked = fr.mode == FRAMING_CHUNKED;
    r->out_close_delimited = fr.mode == FRAMING_CLOSE;
    if (fr.must_close)
        conn_close_after(c);
    bool close = conn_must_close(c);
    if (close)
        conn_close_after(c);

    struct evbuffer *out = conn_output(c);
    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n", status, http1_reason(status));
    for (size_t i = 0; i < n; i++) {
        if (hdr_is(&h[i], "content-length")) {
            /* Framing is ours: keep the upstream's length only when the bytes pass unchanged. */
            if (&h[i] == cl && fr.send_length) {
                evbuffer_add(out, "Content-Length: ", 16);
                evbuffer_add(out, h[i].value, h[i].value_len);
                evbuffer_add(out, "\r\n", 2);
            }
            continue;
        }
        if (!http1_response_header_pass(h[i].name, h[i].name_len))
            continue;
        if (connection &&
            http1_token_listed(connection->value, connection->value_len, h[i].name, h[i].name_len))
            continue;
        if (hdr_is(&h[i], "location") && r->gateway_origin) {
            char *v = xstrndup(h[i].value, h[i].value_len);
            char *nv = rewrite_location(
                v, r->world->sites[world_site_index(r->world, r->site)].origin, r->gateway_origin);
            if (!nv && r->gw_prefix[0])
                nv = gateway_location(r, v);
            evbuffer_add_printf(out, "%.*s: %s\r\n", (int)h[i].name_len, h[i].name, nv ? nv : v);
            free(nv);
            free(v);
            continue;
        }
        evbuffer_add(out, h[i].name, h[i].name_len);
        evbuffer_add(out, ": ", 2);
        evbuffer_add(out, h[i].value, h[i].value_len);
        evbuffer_add(out, "\r\n", 2);
    }
    if (r->out_chunked)
        evbuffer_add(out, "Transfer-Encoding: chunked\r\n", 28);
    if (close)
        evbuffer_add(out, "Connection: close\r\n", 19);
    evbuffer_add(out, "\r\n", 2);
    r->head_sent = true;
    r->status = status;
    return 0;
}

static int up_on_body(void *arg, const char *data, size_t len)
{
    struct request *r = arg;
    struct evbuffer *out = conn_output(r->c);

    if (r->out_no_body || len == 0)
        return 0;
    if (evbuffer_get_length(out) > CONN_OUTPUT_HIGH) {
        r->resp_paused = true;
        return UPSTREAM_PAUSE;
    }
    breaker_scan(r, data, len);
    r->bytes_out += len;
    if (r->rw) {
        struct evbuffer *tmp = evbuffer_new();
        if (!tmp || rewrite_feed(r->rw, data, len, emit_evbuffer, tmp) < 0) {
            evbuffer_free(tmp);
            return UPSTREAM_ABORT;
        }
        write_out(r, tmp);
        evbuffer_free(tmp);
        return 0;
    }
    if (r->out_chunked)
        evbuffer_add_printf(out, "%zx\r\n", len);
    evbuffer_add(out, data, len);
    if (r->out_chunked)
        evbuffer_add(out, "\r\n", 2);
    return 0;
}

static ssize_t up_read_body(void *arg, char *buf, size_t cap)
{
    struct request *r = arg;
    struct conn *c = r->c;
    bool done = false;
    if (r->pol && r->pol->body_ready) {
        /* The policy stage held (and may have rewritten) the body: send those bytes. */
        size_t n = r->pol->held_len - r->pol->held_off;
        if (n > cap)
            n = cap;
        memcpy(buf, r->pol->held + r->pol->held_off, n);
        r->pol->held_off += n;
        return (ssize_t)n;
    }
    ssize_t n = conn_read_body(c, buf, cap, &done);
    if (n == UPSTREAM_WOULD_BLOCK) {
        r->body_blocked = true;
        return n;
    }
    if (n < 0) {
        /* Bad chunk framing or the client went away mid-body: nothing valid to forward. */
        engine_cancel(r);
        if (c->parser.phase == HTTP1_PHASE_ERROR && !r->head_sent)
            reply_error_x(r, 400, "bad_request",
                          c->parser.err_msg ? c->parser.err_msg : "malformed request body", NULL,
                          true);
        else
            conn_close(c, "request body ended early");
        return UPSTREAM_WOULD_BLOCK;
    }
    r->bytes_in += (uint64_t)n;
    if (done)
        r->body_done = true;
    return n;
}

static void up_on_done(void *arg, enum upstream_result result, const char *detail)
{
    struct request *r = arg;
    struct conn *c = r->c;

    r->upstream_ms = engine_elapsed_ms(r);
    r->ex = NULL;
    r->hx = NULL;
    breaker_flush(r);      /* a gateway 401 whose body did not say "scope" */
    breaker_probe_gone(r); /* no-op once the head was reported */
    if (result == UPSTREAM_OK && r->head_sent) {
        if (r->rw) {
            struct evbuffer *tmp = evbuffer_new();
            if (tmp && rewrite_finish(r->rw, emit_evbuffer, tmp) == 0)
                write_out(r, tmp);
            evbuffer_free(tmp);
        }
        if (r->out_chunked)
            evbuffer_add(conn_output(c), "0\r\n\r\n", 5);
        if (!r->body_done && c->parser.has_body)
            conn_close_after(c); /* the rest of the request body was never read */
        request_finish(r);
        return;
    }
    int status = result == UPSTREAM_ERR_TIMEOUT ? 504 : 502;
    const char *code = result == UPSTREAM_ERR_BAD_RESPONSE ? ERRORS_UPSTREAM_BAD_RESPONSE
                                                           : errors_code_for(status);
    if (r->head_sent) {
        log_info("upstream %s failed mid-response (%s); closing the client connection",
                 r->host ? r->host : "?", detail ? detail : "error");
        r->error = code;
        conn_close_after(c);
        request_finish(r);
        return;
    }
    char msg[512];
    snprintf(msg, sizeof(msg), "%s",
             detail && *detail ? detail
             : status == 504   ? "the upstream did not answer in time"
                               : "the upstream could not be reached");
    reply_error_x(r, status, code, msg, NULL, !r->body_done && c->parser.has_body);
}

static const struct upstream_callbacks up_callbacks = {
    .on_head = up_on_head,
    .on_body = up_on_body,
    .read_body = up_read_body,
    .on_done = up_on_done,
};

/* The credential's Authorization line: rendered at load, or the minted access token. */
static bool add_cred_header(struct request *r, struct upstream_hblock *hl)
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

/* Strip, inject, start the exchange. */
static void forward(struct request *r)
{
    struct conn *c = r->c;
    const struct http1_parser *p = &c->parser;
    struct upstream_hblock hl = {0}; /* one block both engines take; wiped by them */
    bool ok = true;

    for (size_t i = 0; i < p->nheaders && ok; i++) {
        size_t nlen, vlen;
        const char *name = http1_header_name(p, i, &nlen);
        const char *value = http1_header_value(p, i, &vlen);
        enum http1_req_policy pol = http1_request_header_policy(name, nlen);
        if (pol == HTTP1_REQ_DROP) {
            /* Unmapped hosts in tunnel mode get the client's own credentials, untouched. */
            bool own = !r->cred &&
                       (util_strcaseeq(name, "authorization") || util_strcaseeq(name, "cookie"));
            if (!own)
                continue;
        }
        if (pol == HTTP1_REQ_CONTENT_LENGTH)
            continue; /* re-derived below from the parsed length */
        if (http1_request_connection_lists(p, name, nlen))
            continue;
        if (r->gateway_origin && util_strcaseeq(name, "accept-encoding"))
            continue;
        ok = upstream_hblock_add(&hl, name, nlen, value, vlen);
    }
    if (ok && r->cred) {
        const char *hh = r->world->sites[world_site_index(r->world, r->site)].host_header;
        ok = upstream_hblock_add(&hl, "Host", 4, hh, strlen(hh)) && add_cred_header(r, &hl);
    }
    if (ok && r->gateway_origin)
        ok = upstream_hblock_add_line(&hl, "Accept-Encoding: identity");
    if (ok && r->svc->self->token[0]) {
        /* Our loop marker: a request that comes back in carrying it is refused (508). */
        char via[sizeof(ROUTE_VIA_PRODUCT) + ROUTE_TOKEN_MAX + 16];
        snprintf(via, sizeof(via), "Via: 1.1 %s%s", ROUTE_VIA_PRODUCT, r->svc->self->token);
        ok = upstream_hblock_add_line(&hl, via);
    }
    bool held = r->pol && r->pol->body_ready;
    int64_t body_len = held ? (int64_t)r->pol->held_len : p->content_length;
    if (ok && (held || p->content_length >= 0)) {
        char line[48];
        snprintf(line, sizeof(line), "Content-Length: %lld", (long long)body_len);
        ok = upstream_hblock_add_line(&hl, line);
    }
    if (!ok) {
        upstream_hblock_wipe(&hl);
        reply_error(r, 502, "the upstream request head is too large");
        return;
    }
    struct upstream_request req = {
        .cfg = req_cfg(r),
        .method = http1_method(p),
        .url = r->url,
        .block = hl,
        .body_len = held         ? body_len
                    : p->chunked ? -1
                                 : (p->content_length > 0 ? p->content_length : 0),
        .allow_plain_http = !r->cred && strncmp(r->url, "http://", 7) == 0,
    };
    conn_send_continue(c);
    bool lean = engine_is_lean(r);
    log_debug("%s %s: upstream engine %s", req.method, r->host ? r->host : "-",
              lean ? "lean-h1" : "libcurl");
    if (lean)
        r->hx = h1up_start(r->svc->h1, &req, &up_callbacks, r);
    else
        r->ex = upstream_start(r->svc->up, &req, &up_callbacks, r);
    if (!r->ex && !r->hx)
        reply_error(r, 502, "could not start the upstream request");
}

/* ------------------------------------------------------------ rate limit */

static void rl_done(void *arg, bool admitted, int64_t retry_after_ms, int64_t waited_ms)
{
    struct request *r = arg;
    r->rlwait = NULL;
    r->wait_ms = waited_ms;
    if (admitted)
        forward(r);
    else
        reply_429(r, retry_after_ms);
}

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
    if (res == RATELIMIT_ADMIT) {
        forward(r);
    } else if (res == RATELIMIT_REJECT) {
        reply_429(r, retry);
    } else {
        r->rlwait = wait; /* rl_done follows; the body stays unread until then */
    }
}

/* ------------------------------------------------- credential ready (issue 10) */

/* The route said so (route_gateway_site): the credential works only through the gateway. */
static bool req_via_gateway(const struct request *r)
{
    return r->site && req_cfg(r)->credentials[r->site->credential].via_gateway;
}

static void reply_unavailable(struct request *r, const char *msg)
{
    breaker_probe_gone(r);
    reply_error_x(r, 503, ERRORS_CREDENTIAL_UNAVAILABLE, msg, "Retry-After: 5\r\n", false);
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
    if (req_via_gateway(r) && !r->gw_prefix[0] && !r->gw_agent_url) {
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
            reply_error_x(r, 400, "bad_request",
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

static void admit_and_forward(struct request *r)
{
    if (!r->cred) {
        forward(r);
        return;
    }
    if (breaker_admit_request(r) < 0)
        return;
    stage_credential(r);
}

/* ---------------------------------------------------------- policy stage */

/*
 * After identify(), before admit: the client's policy (policy.h) decides.
 * Allowed requests go on unchanged, or with a narrowed query, or with a
 * held (and possibly rewritten) body. Where the scope needs an id lookup,
 * one GET with the same credential goes upstream first (through the rate
 * limit and this worker's upstream engine; its answer never reaches the
 * client) and is cached per worker. A refusal is 403 policy_denied and
 * nothing of the request reaches upstream.
 */

static void policy_deny(struct request *r, const struct policy_decision *d)
{
    struct conn *c = r->c;
    struct policy_stage *ps = r->pol;
    char uidbuf[32];
    const char *cls = policy_class_name(ps->op.cls);
    const char *noun = ps->op.product == POLICY_PRODUCT_CONFLUENCE ? "space" : "project";
    const char *client = metric_client(r, uidbuf, sizeof(uidbuf));
    char msg[512];
    const char *fields[8] = {"client", client,       "class",
                             cls,      noun,         d->scope[0] ? d->scope : NULL,
                             "policy", ps->pol->name};

    metrics_policy_denied(r->svc->metrics, client, cls);
    snprintf(msg, sizeof(msg), "credproxy's policy for client %s refused this %s request: %s",
             client, cls, d->reason);
    r->cred = NULL;
    if (r->head_sent) {
        conn_close_after(c);
        r->error = "policy_denied";
        request_finish(r);
        return;
    }
    bool close = conn_must_close(c);
    if (close)
        conn_close_after(c);
    r->bytes_out = errors_write_fields(conn_output(c), 403, "policy_denied", msg, fields, 4, close);
    r->status = 403;
    r->error = "policy_denied";
    r->head_sent = true;
    request_finish(r);
}

static void policy_lookup_begin(struct request *r, enum policy_lookup lookup, const char *id);
static void policy_hold_begin(struct request *r);

/*
 * Allowed so far. A page edit under a space-scoped policy still has its body
 * checked (it must not name another space); everything else goes on.
 */
static void policy_allowed(struct request *r)
{
    struct policy_stage *ps = r->pol;
    if (ps->op.body == POLICY_BODY_CONF_EDIT && !ps->body_ready &&
        policy_scoped(ps->pol, ps->op.product)) {
        policy_hold_begin(r);
        return;
    }
    admit_and_forward(r);
}

/* A scope key was found (cache, lookup or body): allow and go on, or refuse. */
static void policy_after_key(struct request *r, const char *key)
{
    struct policy_decision d;
    policy_check_key(r->pol->pol, &r->pol->op, key, &d);
    if (d.verdict == POLICY_ALLOW)
        policy_allowed(r);
    else
        policy_deny(r, &d);
}

/* The held body is complete: check (and for searches rewrite) it. */
static void policy_body_held(struct request *r)
{
    struct policy_stage *ps = r->pol;
    struct policy_decision d;
    char *out = NULL;
    size_t out_len = 0;

    ps->holding = false;
    ps->body_ready = true;
    r->body_done = true;
    if (ps->hold_timer)
        evtimer_del(ps->hold_timer);
    log_debug("policy: held %zu request body bytes of %s %s for policy %s", ps->held_len,
              http1_method(&r->c->parser), r->path ? r->path : "", ps->pol->name);
    policy_apply_body(ps->pol, &ps->op, ps->held ? ps->held : "", ps->held_len, &out, &out_len, &d);
    if (out) {
        free(ps->held);
        ps->held = out;
        ps->held_len = out_len;
        ps->held_cap = out_len;
    }
    if (d.verdict == POLICY_ALLOW)
        policy_allowed(r);
    else if (d.verdict == POLICY_NEEDS_LOOKUP)
        policy_lookup_begin(r, d.lookup, d.id);
    else
        policy_deny(r, &d);
}

/* Read what the client has sent of the body; resumes from proxy_body_available. */
static void policy_hold_continue(struct request *r)
{
    struct conn *c = r->c;
    struct policy_stage *ps = r->pol;

    for (;;) {
        bool done = false;
        if (ps->held_cap - ps->held_len < PROXY_HOLD_MIN_READ) {
            ps->held_cap = ps->held_cap ? ps->held_cap * 2 : PROXY_HOLD_INITIAL;
            if (ps->held_cap > POLICY_MAX_BODY + 1)
                ps->held_cap = POLICY_MAX_BODY + 1;
            ps->held = xrealloc(ps->held, ps->held_cap + 1);
        }
        size_t room = ps->held_cap - ps->held_len;
        if (room == 0) {
            ps->holding = false;
            reply_error_x(r, 413, "body_too_large",
                          "the request body is larger than the policy check reads (1 MiB); this "
                          "client's policy needs to read it before forwarding",
                          NULL, true);
            return;
        }
        ssize_t n = conn_read_body(c, ps->held + ps->held_len, room, &done);
        if (n == UPSTREAM_WOULD_BLOCK) {
            r->body_blocked = true;
            return;
        }
        if (n < 0) {
            ps->holding = false;
            if (c->parser.phase == HTTP1_PHASE_ERROR)
                reply_error_x(r, 400, "bad_request",
                              c->parser.err_msg ? c->parser.err_msg : "malformed request body",
                              NULL, true);
            else
                conn_close(c, "request body ended early");
            return;
        }
        ps->held_len += (size_t)n;
        r->bytes_in += (uint64_t)n;
        if (ps->held_len > POLICY_MAX_BODY) {
            ps->holding = false;
            reply_error_x(r, 413, "body_too_large",
                          "the request body is larger than the policy check reads (1 MiB); this "
                          "client's policy needs to read it before forwarding",
                          NULL, true);
            return;
        }
        if (done) {
            policy_body_held(r);
            return;
        }
    }
}

static void policy_hold_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct request *r = arg;
    if (!r->pol->holding || r->finished)
        return; /* the hold already ended (answered or complete) */
    r->pol->holding = false;
    reply_error_x(r, 408, "request_timeout",
                  "the request body did not arrive in time for the policy check", NULL, true);
}

static void policy_hold_begin(struct request *r)
{
    struct conn *c = r->c;
    struct policy_stage *ps = r->pol;
    const struct http1_parser *p = &c->parser;

    if (p->content_length > POLICY_MAX_BODY) {
        reply_error_x(r, 413, "body_too_large",
                      "the request body is larger than the policy check reads (1 MiB); this "
                      "client's policy needs to read it before forwarding",
                      NULL, true);
        return;
    }
    if (!p->has_body || p->content_length == 0) {
        policy_body_held(r);
        return;
    }
    ps->holding = true;
    ps->hold_timer = evtimer_new(r->svc->base, policy_hold_timeout, r);
    if (ps->hold_timer) {
        struct timeval tv = {PROXY_HOLD_TIMEOUT_MS / 1000, (PROXY_HOLD_TIMEOUT_MS % 1000) * 1000};
        evtimer_add(ps->hold_timer, &tv);
    }
    conn_send_continue(c);
    policy_hold_continue(r);
}

static int lookup_on_head(void *arg, int status, const struct upstream_header *h, size_t n)
{
    struct request *r = arg;
    r->pol->lookup_status = status;
    if (r->cred) {
        const struct upstream_header *ra = NULL, *reset = NULL;
        char b1[PROXY_RL_VALUE_MAX], b2[PROXY_RL_VALUE_MAX];
        for (size_t i = 0; i < n; i++) {
            if (hdr_is(&h[i], "retry-after"))
                ra = &h[i];
            else if (hdr_is(&h[i], "x-ratelimit-reset"))
                reset = &h[i];
        }
        ratelimit_upstream_response(r->svc->rl, cred_name(r->cred), status, rl_value(ra, b1),
                                    rl_value(reset, b2), NULL, NULL, util_now_ms());
    }
    return 0;
}

static int lookup_on_body(void *arg, const char *data, size_t len)
{
    struct request *r = arg;
    struct policy_stage *ps = r->pol;
    if (evbuffer_get_length(ps->lookup_body) + len > POLICY_MAX_LOOKUP_BODY) {
        ps->lookup_too_big = true;
        return UPSTREAM_ABORT;
    }
    evbuffer_add(ps->lookup_body, data, len);
    return 0;
}

static ssize_t lookup_read_body(void *arg, char *buf, size_t cap)
{
    return 0;
}

static void lookup_on_done(void *arg, enum upstream_result result, const char *detail)
{
    struct request *r = arg;
    struct policy_stage *ps = r->pol;
    struct policy_decision d;
    char key[POLICY_MAX_KEY + 1];
    const char *noun = ps->op.product == POLICY_PRODUCT_CONFLUENCE ? "space" : "project";
    char msg[400];

    r->ex = NULL;
    size_t len = evbuffer_get_length(ps->lookup_body);
    const char *body = (const char *)evbuffer_pullup(ps->lookup_body, (ev_ssize_t)len);
    if (result == UPSTREAM_OK && ps->lookup_status == 200 &&
        policy_lookup_parse(ps->lookup, body ? body : "", len, key, sizeof(key)) == 0) {
        policy_cache_put(r->svc->policy_cache, r->site->host, ps->lookup, ps->lookup_id, key,
                         util_now_ms());
        log_debug("policy: looked up %s %s -> %s", policy_lookup_name(ps->lookup), ps->lookup_id,
                  key);
        policy_after_key(r, key);
        return;
    }
    if (result == UPSTREAM_OK && (ps->lookup_status == 200 || ps->lookup_status == 401 ||
                                  ps->lookup_status == 403 || ps->lookup_status == 404)) {
        /* Not visible to the account, gone, or an answer without the field: fail closed. */
        memset(&d, 0, sizeof(d));
        d.verdict = POLICY_DENY;
        snprintf(d.reason, sizeof(d.reason),
                 "the %s of %s %s could not be determined (Atlassian answered %d to the lookup)",
                 noun, policy_lookup_name(ps->lookup), ps->lookup_id, ps->lookup_status);
        policy_deny(r, &d);
        return;
    }
    if (result == UPSTREAM_OK)
        snprintf(msg, sizeof(msg),
                 "the policy check could not resolve %s %s to its %s: Atlassian answered %d",
                 policy_lookup_name(ps->lookup), ps->lookup_id, noun, ps->lookup_status);
    else
        snprintf(msg, sizeof(msg), "the policy check could not resolve %s %s to its %s: %s",
                 policy_lookup_name(ps->lookup), ps->lookup_id, noun,
                 ps->lookup_too_big ? "the answer was too large"
                 : detail           ? detail
                                    : "error");
    int status = result == UPSTREAM_ERR_TIMEOUT ? 504 : 502;
    reply_error_x(r, status, errors_code_for(status), msg, NULL,
                  !r->body_done && r->c->parser.has_body);
}

static const struct upstream_callbacks lookup_callbacks = {
    .on_head = lookup_on_head,
    .on_body = lookup_on_body,
    .read_body = lookup_read_body,
    .on_done = lookup_on_done,
};

static void policy_lookup_fetch(struct request *r)
{
    struct policy_stage *ps = r->pol;
    struct world *w = r->world;
    char path[PROXY_LOOKUP_URL_MAX];
    struct upstream_hblock hl = {0};

    if (policy_lookup_path(ps->lookup, ps->lookup_id, path, sizeof(path)) < 0) {
        struct policy_decision d;
        memset(&d, 0, sizeof(d));
        d.verdict = POLICY_DENY;
        snprintf(d.reason, sizeof(d.reason), "the id %s cannot be looked up", ps->lookup_id);
        policy_deny(r, &d);
        return;
    }
    char *url = NULL;
    if (req_via_gateway(r)) {
        /* Issue 10: a gateway credential looks ids up through the gateway too. */
        char id[CONFIG_MAX_CLOUD_ID + 1];
        if (tokens_cloud_id(r->svc->tokens, r->site->host, r->site->port, id, sizeof(id), NULL,
                            0) == TOKENS_READY)
            url = gwroute_url(path, strlen(path), id);
    }
    if (!url)
        url = xasprintf("%s%s", w->sites[world_site_index(w, r->site)].origin, path);
    /* The engines take Host from the URL. */
    bool ok = add_cred_header(r, &hl) && upstream_hblock_add_line(&hl, "Accept: application/json");
    if (!ok) {
        upstream_hblock_wipe(&hl);
        free(url);
        reply_error(r, 502, "out of memory building the policy lookup");
        return;
    }
    if (!ps->lookup_body)
        ps->lookup_body = evbuffer_new();
    struct upstream_request req = {
        .cfg = req_cfg(r), .method = "GET", .url = url, .block = hl, .body_len = 0};
    r->ex = upstream_start(r->svc->up, &req, &lookup_callbacks, r);
    free(url);
    if (!r->ex)
        reply_error(r, 502, "could not start the policy lookup");
}

static void lookup_rl_done(void *arg, bool admitted, int64_t retry_after_ms, int64_t waited_ms)
{
    struct request *r = arg;
    r->rlwait = NULL;
    r->wait_ms += waited_ms;
    if (admitted)
        policy_lookup_fetch(r);
    else
        reply_429(r, retry_after_ms);
}

/* Resolve an id: from this worker's cache, else one upstream GET (which takes a rate token). */
static void policy_lookup_begin(struct request *r, enum policy_lookup lookup, const char *id)
{
    struct conn *c = r->c;
    struct policy_stage *ps = r->pol;
    char key[POLICY_MAX_KEY + 1];

    ps->lookup = lookup;
    snprintf(ps->lookup_id, sizeof(ps->lookup_id), "%s", id);
    if (policy_cache_get(r->svc->policy_cache, r->site->host, lookup, id, util_now_ms(), key,
                         sizeof(key))) {
        policy_after_key(r, key);
        return;
    }
    int64_t retry = 0;
    struct ratelimit_wait *wait = NULL;
    const char *lane = r->client_id ? r->client_id : c->have_uid ? r->client_label : NULL;
    enum ratelimit_result res =
        ratelimit_acquire(r->svc->rl, r->svc->base, cred_name(r->cred), lane, util_now_ms(), &retry,
                          lookup_rl_done, r, &wait);
    if (res == RATELIMIT_ADMIT)
        policy_lookup_fetch(r);
    else if (res == RATELIMIT_REJECT)
        reply_429(r, retry);
    else
        r->rlwait = wait;
}

/* Headers that could make Atlassian run another method than the one classified. */
static bool policy_method_override(const struct conn *c)
{
    static const char *const names[] = {"x-http-method-override", "x-http-method",
                                        "x-method-override"};
    for (size_t i = 0; i < UTIL_ARRAY_LEN(names); i++) {
        if (http1_find_header(&c->parser, names[i]) >= 0)
            return true;
    }
    return false;
}

static void policy_stage(struct request *r, const char *path, size_t path_len)
{
    struct conn *c = r->c;
    const struct config_policy *pol;
    struct policy_stage *ps;
    struct policy_decision d;

    if (!r->cred || !r->site) {
        admit_and_forward(r); /* no credential is injected: nothing to guard */
        return;
    }
    pol = config_policy_for(req_cfg(r), r->client_id);
    struct policy_op op;
    policy_classify(http1_method(&c->parser), path, path_len, &op);
    r->op_class = policy_class_name(op.cls);
    bool unrestricted = pol->allow == POLICY_ALL_CLASSES && !pol->has_projects && !pol->has_spaces;
    if (unrestricted) {
        admit_and_forward(r); /* `full`: only the class, for the audit line */
        return;
    }
    ps = xcalloc(1, sizeof(*ps));
    ps->pol = pol;
    ps->op = op;
    r->pol = ps;
    if (policy_method_override(c)) {
        memset(&d, 0, sizeof(d));
        d.verdict = POLICY_DENY;
        snprintf(d.reason, sizeof(d.reason),
                 "a method-override header (X-HTTP-Method-Override and the like) is not allowed "
                 "under policy %s",
                 pol->name);
        policy_deny(r, &d);
        return;
    }
    policy_decide(pol, &ps->op, &d);
    switch (d.verdict) {
    case POLICY_ALLOW:
        policy_allowed(r);
        return;
    case POLICY_DENY:
        policy_deny(r, &d);
        return;
    case POLICY_NEEDS_LOOKUP:
        policy_lookup_begin(r, d.lookup, d.id);
        return;
    case POLICY_NEEDS_BODY:
        policy_hold_begin(r);
        return;
    case POLICY_NARROW_QUERY: {
        char *q = strchr(r->url, '?');
        size_t prefix = q ? (size_t)(q - r->url) : strlen(r->url);
        char *hash = q ? strchr(q, '#') : NULL;
        size_t qlen = q ? (hash ? (size_t)(hash - q - 1) : strlen(q + 1)) : 0;
        char *nq = policy_narrow_query(pol, &ps->op, q ? q + 1 : "", qlen, &d);
        if (!nq) {
            policy_deny(r, &d);
            return;
        }
        char *url = xasprintf("%.*s%s%s", (int)prefix, r->url, *nq ? "?" : "", nq);
        free(nq);
        free(r->url);
        r->url = url;
        admit_and_forward(r);
        return;
    }
    }
}

/* --------------------------------------------------------------- CONNECT */

static void tun_failed(void *arg, struct bufferevent *client, enum tunnel_result result,
                       const char *detail)
{
    struct request *r = arg;
    r->tunnel = NULL;
    conn_reattach(r->c, client);
    int status = result == TUNNEL_ERR_TIMEOUT ? 504 : 502;
    reply_error_x(r, status, errors_code_for(status), detail ? detail : "tunnel failed", NULL,
                  true);
}

static void tun_established(void *arg)
{
    struct request *r = arg;
    r->status = 200;
}

static void tun_closed(void *arg, const struct tunnel_stats *st)
{
    struct request *r = arg;
    struct conn *c = r->c;
    r->tunnel = NULL;
    r->bytes_in = st->bytes_up;
    r->bytes_out = st->bytes_down;
    r->upstream_ms = st->connect_ms;
    r->status = 200;
    r->finished = true;
    request_log(r);
    c->req = NULL;
    proxy_request_free(r);
    conn_close(c, NULL);
}

static const struct tunnel_callbacks tun_callbacks = {
    .on_failed = tun_failed,
    .on_established = tun_established,
    .on_closed = tun_closed,
};

/*
 * CONNECT to a mapped site: answer 200 and wrap the connection in TLS with
 * a leaf minted for the site. The CONNECT itself is logged and freed here;
 * the requests inside the tunnel are requests of their own.
 */
static void start_intercept(struct request *r, const struct route *rt)
{
    struct conn *c = r->c;
    /* A mapped site, or api.atlassian.com for a gateway credential (rt->site NULL). */
    const char *host = rt->site ? rt->site->host : rt->auth.host;
    SSL_CTX *ctx = mitm_ctx_for_host(r->world->mitm, host);
    SSL *ssl = ctx ? SSL_new(ctx) : NULL;

    SSL_CTX_free(ctx);
    if (!ssl) {
        char msg[400];
        snprintf(msg, sizeof(msg),
                 "cannot intercept %s: the local CA could not issue a certificate for it "
                 "(see the startup warning; re-run `credproxy ca init --force`)",
                 host);
        reply_error_x(r, 403, "interception_off", msg, NULL, true);
        return;
    }
    evbuffer_add(conn_output(c), "HTTP/1.1 200 Connection Established\r\n\r\n", 39);
    r->status = 200;
    r->finished = true;
    request_log(r);
    char *client = r->client_id ? xstrdup(r->client_id) : NULL;
    c->req = NULL;
    proxy_request_free(r);
    if (conn_start_intercept(c, ssl, &rt->auth, client, true) < 0)
        conn_close(c, "could not set up TLS interception");
    free(client);
}

/* CONNECT to an allowed unmapped host: a blind TCP tunnel, never intercepted. */
static void start_tunnel(struct request *r, const struct route *rt)
{
    struct conn *c = r->c;

    if (!r->svc->dns) {
        reply_error_x(r, 502, "upstream_unreachable",
                      "blind tunnels are unavailable (no DNS resolver)", NULL, true);
        return;
    }
    struct bufferevent *bev = conn_detach_for_tunnel(c);
    r->tunnel = tunnel_start(r->svc->base, r->svc->dns, bev, rt->auth.host, rt->auth.port,
                             r->world->cfg, true, &tun_callbacks, r);
    if (!r->tunnel) {
        conn_reattach(c, bev);
        reply_error_x(r, 400, "bad_request", "cannot tunnel to that authority", NULL, true);
    }
}

/* -------------------------------------------------------------- pipeline */

/* True when any Via header of the request carries this process's marker. */
static bool request_looped(const struct request *r)
{
    const struct http1_parser *p = &r->c->parser;
    const char *token = r->svc->self->token;

    for (size_t i = 0; i < p->nheaders; i++) {
        size_t nlen, vlen;
        const char *name = http1_header_name(p, i, &nlen);
        if (nlen != 3 || !util_memcaseeq(name, "via", 3))
            continue;
        const char *v = http1_header_value(p, i, &vlen);
        if (route_via_is_ours(v, vlen, token))
            return true;
    }
    return false;
}

/* Stage "route": where the request goes, from the facts of its head. */
static void stage_route(struct request *r, struct route *rt)
{
    struct conn *c = r->c;
    struct route_listener ls = {
        .is_site = c->ls->kind == LISTENER_SITE,
        .site_host = c->ls->site_host,
        .site_port = c->ls->site_port,
    };
    struct route_input in = {
        .world = r->world,
        .cloud_lookup = tokens_site_for_cloud_id,
        .cloud_arg = r->svc->tokens,
        .listener = &ls,
        .self = r->svc->self,
        .tunnel = c->intercept ? &c->connect_auth : NULL,
        .is_connect = c->parser.is_connect,
        .upgrade = c->parser.upgrade,
        .looped = request_looped(r),
    };
    in.target = http1_target(&c->parser, &in.target_len);
    in.host = header_value(c, "host", &in.host_len);
    in.origin = header_value(c, "origin", &in.origin_len);
    in.fetch_site = header_value(c, "sec-fetch-site", &in.fetch_site_len);
    route_request(&in, rt);

    r->mode = rt->mode;
    if (rt->host[0])
        r->host = xstrdup(rt->host);
    r->path = rt->path ? path_for_log(rt->path, rt->path_len) : xstrdup("");
    if (rt->action == ROUTE_SITE) {
        r->site = rt->site;
        r->cred = world_site_cred(r->world, rt->site);
        r->gw_agent_url = rt->gateway_agent_url;
    }
    r->url = rt->url;
    rt->url = NULL;
    r->gateway_origin = rt->gateway_origin;
    rt->gateway_origin = NULL;
}

/* The route refused: answer it. The browser, loop and interception refusals are worth a warning. */
static void route_refused(struct request *r, const struct route *rt)
{
    const char *code = rt->code;
    if (strcmp(code, "origin_not_allowed") == 0 || strcmp(code, "interception_off") == 0 ||
        strcmp(code, "misdirected") == 0 || strcmp(code, "loop_detected") == 0)
        log_warn("refused %s %s from %s: %s (%s)", http1_method(&r->c->parser),
                 r->host ? r->host : "-", r->c->peer, code, rt->message);
    reply_error_x(r, rt->status, code, rt->message, NULL, rt->close);
}

/*
 * parse (conn) -> route -> identify -> policy -> admit -> forward -> respond -> log.
 * Each stage answers and ends the request itself when it refuses.
 */
static void proxy_request_begin(void *arg, struct conn *c)
{
    struct request *r = request_new(arg, c);
    struct route rt;

    c->req = r;
    stage_route(r, &rt);
    if (rt.action == ROUTE_REFUSE) {
        route_refused(r, &rt);
        route_clear(&rt);
        return;
    }
    if (identify(r) == 0) {
        switch (rt.action) {
        case ROUTE_CONNECT_INTERCEPT:
            start_intercept(r, &rt);
            break;
        case ROUTE_CONNECT_TUNNEL:
            start_tunnel(r, &rt);
            break;
        default:
            policy_stage(r, rt.path, rt.path_len);
            break;
        }
    }
    route_clear(&rt);
}

/* Input arrived: resume an upload that waited for body bytes. */
static void proxy_body_available(struct request *r)
{
    if (!r->body_blocked)
        return;
    r->body_blocked = false;
    if (r->pol && r->pol->holding) {
        policy_hold_continue(r);
        return;
    }
    if (r->ex)
        upstream_resume_request(r->ex);
    if (r->hx)
        h1up_resume_request(r->hx);
}

/* The body idle limit in force for r (config body_timeout). */
static int64_t proxy_body_timeout_ms(struct request *r)
{
    return req_cfg(r)->body_timeout_ms;
}

/*
 * The request body promised by the head has not advanced for body_timeout:
 * cancel the upstream exchange, answer 400 if no response head was sent
 * (else just close), and close the connection.
 */
static void proxy_body_stalled(struct request *r)
{
    struct conn *c = r->c;
    if (r->ex || r->hx) {
        /* Either engine: a lean exchange left running would call back into a freed request. */
        r->upstream_ms = engine_elapsed_ms(r);
        engine_cancel(r);
    }
    r->body_blocked = false;
    log_info("request body from %s stalled for %lld ms; cancelled", c->peer,
             (long long)req_cfg(r)->body_timeout_ms);
    if (r->head_sent) {
        conn_close(c, "request body stalled");
        return;
    }
    reply_error_x(r, 400, "bad_request",
                  "the request body stalled: no bytes arrived within body_timeout", NULL, true);
}

/* The client's output drained: resume a response that paused for it. */
static void proxy_output_drained(struct request *r)
{
    if (!r->resp_paused)
        return;
    r->resp_paused = false;
    if (r->ex)
        upstream_resume_response(r->ex);
    if (r->hx)
        h1up_resume_response(r->hx);
}

const struct conn_pipeline proxy_pipeline = {
    .begin = proxy_request_begin,
    .refuse = proxy_parse_error,
    .input = proxy_body_available,
    .drained = proxy_output_drained,
    .abort = proxy_request_abort,
    .release = proxy_request_free,
    .body_idle_ms = proxy_body_timeout_ms,
    .stalled = proxy_body_stalled,
};
