/*
 * proxy_policy: stage "policy" of the pipeline (proxy_int.h; the decisions
 * themselves are policy.c's, pure). After identify, before admit: the
 * client's policy decides. Allowed requests go on unchanged, or with a
 * narrowed query, or with a held (and possibly rewritten) body. Where the
 * scope needs an id lookup, one GET with the same credential goes upstream
 * first (through the rate limit and the libcurl engine; its answer never
 * reaches the client) and is cached per worker. A refusal is 403
 * policy_denied and nothing of the request reaches upstream.
 *
 * A held body is bounded by POLICY_MAX_BODY (413 body_too_large beyond) and
 * by the one body rule of the connection: bytes must keep arriving within
 * body_timeout (conn.c's body timer; proxy.c answers 408 request_timeout).
 */
#include "proxy_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "config.h"
#include "conn.h"
#include "cred.h"
#include "errors.h"
#include "gwroute.h"
#include "http1.h"
#include "log.h"
#include "metrics.h"
#include "policy.h"
#include "tokens.h"
#include "upstream.h"
#include "util.h"
#include "world.h"

#define PROXY_LOOKUP_URL_MAX 512
#define PROXY_HOLD_INITIAL                                                                         \
    (16 * 1024)                  /* first size of a held-body buffer; doubles to the limit         \
                                  */
#define PROXY_HOLD_MIN_READ 4096 /* grow the buffer when less room than this is left */

struct policy_stage {
    const struct config_policy *pol; /* in r->world->cfg */
    struct policy_op op;
    /* the held request body (only when the scoped policy needs it) */
    bool holding;    /* reading it now */
    bool body_ready; /* held completely (the bytes are r->held_body now) */
    char *held;
    size_t held_len, held_cap, held_off;
    /* one id lookup */
    enum policy_lookup lookup;
    char lookup_id[POLICY_MAX_KEY + 1];
    struct evbuffer *lookup_body;
    int lookup_status;
    bool lookup_too_big;
};

void proxy_policy_free(struct policy_stage *ps)
{
    if (!ps)
        return;
    free(ps->held);
    if (ps->lookup_body)
        evbuffer_free(ps->lookup_body);
    free(ps);
}

static void policy_hold_continue(struct request *r);

bool proxy_policy_input(struct request *r)
{
    if (!r->pol || !r->pol->holding)
        return false;
    policy_hold_continue(r);
    return true;
}

static void policy_deny(struct request *r, const struct policy_decision *d)
{
    struct policy_stage *ps = r->pol;
    char uidbuf[32];
    const char *cls = policy_class_name(ps->op.cls);
    const char *noun = ps->op.product == POLICY_PRODUCT_CONFLUENCE ? "space" : "project";
    const char *client = proxy_metric_client(r, uidbuf, sizeof(uidbuf));
    char msg[512], jfields[ERRORS_MAX_FIELDS + 1];
    const char *fields[8] = {"client", client,       "class",
                             cls,      noun,         d->scope[0] ? d->scope : NULL,
                             "policy", ps->pol->name};

    metrics_policy_denied(r->svc->metrics, client, cls);
    snprintf(msg, sizeof(msg), "credproxy's policy for client %s refused this %s request: %s",
             client, cls, d->reason);
    r->cred = NULL;
    errors_json_fields(jfields, sizeof(jfields), fields, 4);
    proxy_reply_error_f(r, 403, "policy_denied", msg, jfields, NULL, false);
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
    proxy_stage_admit(r);
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
    log_debug("policy: held %zu request body bytes of %s %s for policy %s", ps->held_len,
              http1_method(&r->c->parser), r->path ? r->path : "", ps->pol->name);
    policy_apply_body(ps->pol, &ps->op, ps->held ? ps->held : "", ps->held_len, &out, &out_len, &d);
    if (out) {
        free(ps->held);
        ps->held = out;
        ps->held_len = out_len;
        ps->held_cap = out_len;
    }
    /* The request owns the bytes from here: the forward stage sends them. */
    r->held_body = ps->held;
    r->held_len = ps->held_len;
    r->held_off = 0;
    r->body_held = true;
    ps->held = NULL;
    if (d.verdict == POLICY_ALLOW)
        policy_allowed(r);
    else if (d.verdict == POLICY_NEEDS_LOOKUP)
        policy_lookup_begin(r, d.lookup, d.id);
    else
        policy_deny(r, &d);
}

static void refuse_too_large(struct request *r)
{
    r->pol->holding = false;
    proxy_reply_error_x(r, 413, "body_too_large",
                        "the request body is larger than the policy check reads (1 MiB); this "
                        "client's policy needs to read it before forwarding",
                        NULL, true);
}

/* Read what the client has sent of the body; resumes from proxy_policy_input. */
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
            refuse_too_large(r);
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
                proxy_reply_error_x(
                    r, 400, "bad_request",
                    c->parser.err_msg ? c->parser.err_msg : "malformed request body", NULL, true);
            else
                conn_close(c, "request body ended early");
            return;
        }
        ps->held_len += (size_t)n;
        r->bytes_in += (uint64_t)n;
        if (ps->held_len > POLICY_MAX_BODY) {
            refuse_too_large(r);
            return;
        }
        if (done) {
            policy_body_held(r);
            return;
        }
    }
}

static void policy_hold_begin(struct request *r)
{
    struct conn *c = r->c;
    struct policy_stage *ps = r->pol;
    const struct http1_parser *p = &c->parser;

    if (p->content_length > POLICY_MAX_BODY) {
        refuse_too_large(r);
        return;
    }
    if (!p->has_body || p->content_length == 0) {
        policy_body_held(r);
        return;
    }
    ps->holding = true;
    conn_send_continue(c);
    policy_hold_continue(r);
}

static int lookup_on_head(void *arg, int status, const struct upstream_header *h, size_t n)
{
    struct request *r = arg;
    r->pol->lookup_status = status;
    proxy_cred_heard(r, status, h, n); /* a lookup carries the credential too */
    return 0;
}

static int lookup_on_body(void *arg, const char *data, size_t len)
{
    struct request *r = arg;
    struct policy_stage *ps = r->pol;
    proxy_breaker_scan(r, data, len);
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
    proxy_breaker_flush(r);      /* a gateway 401 whose body did not say "scope" */
    proxy_breaker_probe_gone(r); /* no-op once the head was reported */
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
    proxy_reply_error_x(r, status, errors_code_for(status), msg, NULL,
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
    if (proxy_via_gateway(r)) {
        /* Issue 10: a gateway credential looks ids up through the gateway too. */
        char id[CONFIG_MAX_CLOUD_ID + 1];
        if (tokens_cloud_id(r->svc->tokens, r->site->host, r->site->port, id, sizeof(id), NULL,
                            0) == TOKENS_READY)
            url = gwroute_url(path, strlen(path), id);
    }
    if (!url)
        url = xasprintf("%s%s", w->sites[world_site_index(w, r->site)].origin, path);
    /* The engines take Host from the URL. */
    bool ok =
        proxy_add_cred_header(r, &hl) && upstream_hblock_add_line(&hl, "Accept: application/json");
    if (!ok) {
        upstream_hblock_wipe(&hl);
        free(url);
        proxy_reply_error(r, 502, "out of memory building the policy lookup");
        return;
    }
    if (!ps->lookup_body)
        ps->lookup_body = evbuffer_new();
    struct upstream_request req = {
        .cfg = proxy_cfg(r), .method = "GET", .url = url, .block = hl, .body_len = 0};
    r->ex = upstream_start(r->svc->up, &req, &lookup_callbacks, r);
    free(url);
    if (!r->ex)
        proxy_reply_error(r, 502, "could not start the policy lookup");
}

/* Resolve an id: from this worker's cache, else one upstream GET (which takes a rate token). */
static void policy_lookup_begin(struct request *r, enum policy_lookup lookup, const char *id)
{
    struct policy_stage *ps = r->pol;
    char key[POLICY_MAX_KEY + 1];

    ps->lookup = lookup;
    snprintf(ps->lookup_id, sizeof(ps->lookup_id), "%s", id);
    if (policy_cache_get(r->svc->policy_cache, r->site->host, lookup, id, util_now_ms(), key,
                         sizeof(key))) {
        policy_after_key(r, key);
        return;
    }
    proxy_admit_then(r, policy_lookup_fetch); /* it carries the credential: the same gates */
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

void proxy_stage_policy(struct request *r, const char *path, size_t path_len)
{
    struct conn *c = r->c;
    const struct config_policy *pol;
    struct policy_stage *ps;
    struct policy_decision d;

    if (!r->cred || !r->site) {
        proxy_stage_admit(r); /* no credential is injected: nothing to guard */
        return;
    }
    pol = config_policy_for(proxy_cfg(r), r->client_id);
    struct policy_op op;
    policy_classify(http1_method(&c->parser), path, path_len, &op);
    r->op_class = policy_class_name(op.cls);
    bool unrestricted = pol->allow == POLICY_ALL_CLASSES && !pol->has_projects && !pol->has_spaces;
    if (unrestricted) {
        proxy_stage_admit(r); /* `full`: only the class, for the audit line */
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
        proxy_stage_admit(r);
        return;
    }
    }
}
