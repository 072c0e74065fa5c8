/*
 * proxy: the request pipeline. See proxy.h; the stage files share
 * proxy_int.h.
 *
 * Stages, in order (the entry point is proxy_request_begin, below):
 *   parse     conn.c/http1.c frame the head; proxy_parse_error answers refusals
 *   route     stage_route: route.c decides the site, mode and URL, or refuses
 *   identify  stage_identify: the client's id from Proxy-Authorization, a
 *             gateway client's Authorization: Basic, or its uid
 *   policy    proxy_stage_policy (proxy_policy.c): class, scope, lookups, held bodies
 *   admit     proxy_stage_admit (proxy_admit.c): the breaker, the credential
 *             being ready (minted token, cloudId), the rate limit
 *   forward   proxy_stage_forward (proxy_forward.c): strip, inject, start the
 *             upstream exchange on one of the two engines
 *   respond   proxy_forward.c's up_on_head / up_on_body / up_on_done
 *   log       proxy_request_log: one audit line and the metrics
 * CONNECT leaves the pipeline after identify (proxy_connect.c).
 *
 * Each stage answers and ends the request itself when it refuses. The
 * request body has one rule whichever stage reads it (the forward stage
 * streaming it, or the policy stage holding it): bytes must keep arriving
 * within body_timeout, else 408 request_timeout and the connection closes.
 */
#include "proxy_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "clientauth.h"
#include "conn.h"
#include "cred.h"
#include "errors.h"
#include "h1up.h"
#include "http1.h"
#include "log.h"
#include "metrics.h"
#include "ratelimit.h"
#include "rewrite.h"
#include "route.h"
#include "tokens.h"
#include "tunnel.h"
#include "upstream.h"
#include "util.h"
#include "world.h"

/* ---------------------------------------------------------------- helpers */

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

/* ---------------------------------------------------- the request's end */

/* The connection is done with r: the stage states, then r itself. */
static void proxy_request_release(struct request *r)
{
    if (!r)
        return;
    proxy_policy_free(r->pol);
    r->pol = NULL;
    proxy_request_free(r);
}

static void proxy_request_abort(struct request *r)
{
    proxy_breaker_flush(r);
    proxy_breaker_probe_gone(r);
    if (r->ex || r->hx) {
        r->upstream_ms = proxy_engine_elapsed_ms(r);
        proxy_engine_cancel(r);
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
        proxy_request_log(r);
    }
    proxy_request_release(r);
}

static void proxy_parse_error(void *arg, struct conn *c, int status, const char *code,
                              const char *msg)
{
    struct request *r = proxy_request_new(arg, c);
    c->req = r;
    r->mode = "forward";
    r->path = xstrdup("");
    log_debug("refused a request from %s: %s", c->peer, msg ? msg : code);
    proxy_reply_error_x(r, status, code ? code : "bad_request", msg ? msg : "malformed request",
                        NULL, true);
}

/* ----------------------------------------------------------- stage route */

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
    in.host = proxy_header_value(c, "host", &in.host_len);
    in.origin = proxy_header_value(c, "origin", &in.origin_len);
    in.fetch_site = proxy_header_value(c, "sec-fetch-site", &in.fetch_site_len);
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
    proxy_reply_error_x(r, rt->status, code, rt->message, NULL, rt->close);
}

/* -------------------------------------------------------- stage identify */

/* 0 when the client may go on; -1 after answering 407. */
static int stage_identify(struct request *r)
{
    struct conn *c = r->c;
    const struct config *cfg = proxy_cfg(r);
    char buf[48];

    if (c->intercept) {
        /* The CONNECT that opened the tunnel was authenticated (or did not need to be). */
        r->client_id = c->tunnel_client ? xstrdup(c->tunnel_client) : NULL;
    } else {
        size_t len;
        const char *v = proxy_header_value(c, "proxy-authorization", &len);
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
            const char *av = proxy_header_value(c, "authorization", &alen);
            const struct config_client *acl = NULL;
            if (av && clientauth_check(cfg, av, alen, &acl) == CLIENTAUTH_OK && acl) {
                res = CLIENTAUTH_OK;
                cl = acl;
            }
        }
        if (res == CLIENTAUTH_NONE && gateway && cfg->require_client_auth) {
            proxy_reply_error_x(
                r, 401, "client_auth_required",
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
            proxy_reply_error_x(
                r, 407, "client_auth_required",
                "Proxy-Authorization was not accepted: send Basic base64(id:key) of a "
                "configured client",
                "Proxy-Authenticate: Basic realm=\"credproxy\"\r\n", false);
            return -1;
        }
        if (res == CLIENTAUTH_NONE && cfg->require_client_auth) {
            proxy_reply_error_x(r, 407, "client_auth_required",
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
/* -------------------------------------------------------------- pipeline */

/*
 * parse (conn) -> route -> identify -> policy -> admit -> forward -> respond -> log.
 * Each stage answers and ends the request itself when it refuses.
 */
static void proxy_request_begin(void *arg, struct conn *c)
{
    struct request *r = proxy_request_new(arg, c);
    struct route rt;

    c->req = r;
    stage_route(r, &rt);
    if (rt.action == ROUTE_REFUSE) {
        route_refused(r, &rt);
        route_clear(&rt);
        return;
    }
    if (stage_identify(r) == 0) {
        switch (rt.action) {
        case ROUTE_CONNECT_INTERCEPT:
            proxy_connect_intercept(r, &rt);
            break;
        case ROUTE_CONNECT_TUNNEL:
            proxy_connect_tunnel(r, &rt);
            break;
        default:
            proxy_stage_policy(r, rt.path, rt.path_len);
            break;
        }
    }
    route_clear(&rt);
}

/* Input arrived: resume whichever stage waits for request-body bytes. */
static void proxy_body_available(struct request *r)
{
    if (!r->body_blocked)
        return;
    r->body_blocked = false;
    if (!proxy_policy_input(r))
        proxy_engine_resume_request(r);
}

/* The body idle limit in force for r (config body_timeout). */
static int64_t proxy_body_timeout_ms(struct request *r)
{
    return proxy_cfg(r)->body_timeout_ms;
}

/*
 * The one body rule: the request body promised by the head has not advanced
 * for body_timeout, whether it was streaming upstream or held by the policy
 * stage. Cancel the upstream exchange, answer 408 if no response head was
 * sent (else just cut), and close the connection.
 */
static void proxy_body_stalled(struct request *r)
{
    struct conn *c = r->c;
    if (r->ex || r->hx) {
        /* Either engine: a lean exchange left running would call back into a freed request. */
        r->upstream_ms = proxy_engine_elapsed_ms(r);
        proxy_engine_cancel(r);
    }
    r->body_blocked = false;
    log_info("request body from %s stalled for %lld ms; cancelled", c->peer,
             (long long)proxy_cfg(r)->body_timeout_ms);
    if (r->head_sent) {
        conn_close(c, "request body stalled");
        return;
    }
    proxy_reply_error_x(r, 408, "request_timeout",
                        "the request body stalled: no bytes arrived within body_timeout", NULL,
                        true);
}

/* The client's output drained: resume a response that paused for it. */
static void proxy_output_drained(struct request *r)
{
    if (!r->resp_paused)
        return;
    r->resp_paused = false;
    proxy_engine_resume_response(r);
}

const struct conn_pipeline proxy_pipeline = {
    .begin = proxy_request_begin,
    .refuse = proxy_parse_error,
    .input = proxy_body_available,
    .drained = proxy_output_drained,
    .abort = proxy_request_abort,
    .release = proxy_request_release,
    .body_idle_ms = proxy_body_timeout_ms,
    .stalled = proxy_body_stalled,
};
