/*
 * proxy_request: a request's life and its answers (proxy_int.h), below the
 * stages: made when a head is framed, answered by whichever stage refuses
 * or by the respond stage, logged once (one audit line, the metrics), freed
 * by the connection. Never logs a header value, token or key; audit paths
 * are cut at '?'.
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
#include "rewrite.h"
#include "upstream.h"
#include "util.h"
#include "world.h"

const struct config *proxy_cfg(const struct request *r)
{
    return r->world->cfg;
}

const char *proxy_header_value(const struct conn *c, const char *name, size_t *len)
{
    int i = http1_find_header(&c->parser, name);
    if (i < 0) {
        *len = 0;
        return NULL;
    }
    return http1_header_value(&c->parser, (size_t)i, len);
}

const char *proxy_metric_client(const struct request *r, char *buf, size_t cap)
{
    if (r->client_id)
        return r->client_id;
    if (r->c->have_uid) {
        clientauth_peer_uid_id(r->c->peer_uid, buf, cap);
        return buf;
    }
    return "anonymous";
}

/* ---------------------------------------------------- the request's life */

void proxy_request_log(struct request *r)
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
                    proxy_metric_client(r, uidbuf, sizeof(uidbuf)), r->status,
                    (double)(now - r->start_ms) / 1000.0);
    metrics_upstream_connections(r->svc->metrics, upstream_take_new_connections(r->svc->up) +
                                                      h1up_take_new_connections(r->svc->h1));
}

void proxy_request_finish(struct request *r)
{
    r->finished = true;
    proxy_request_log(r);
    conn_request_done(r->c);
}

void proxy_reply_error_f(struct request *r, int status, const char *code, const char *msg,
                         const char *fields, const char *extra, bool force_close)
{
    proxy_breaker_probe_gone(r); /* a probe answered by the proxy itself (429, 503) told nothing */
    struct conn *c = r->c;
    /* A refused CONNECT ends the connection: the client may already be sending TLS. */
    bool close =
        force_close || status == 400 || status == 431 || c->parser.is_connect || conn_must_close(c);
    if (r->head_sent) {
        /* Nothing can be said any more: cut the connection. */
        conn_close_after(c);
        r->error = code;
        proxy_request_finish(r);
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
    proxy_request_finish(r);
}

void proxy_reply_error_x(struct request *r, int status, const char *code, const char *msg,
                         const char *extra, bool force_close)
{
    proxy_reply_error_f(r, status, code, msg, NULL, extra, force_close);
}

void proxy_reply_error(struct request *r, int status, const char *msg)
{
    proxy_reply_error_x(r, status, errors_code_for(status), msg, NULL, false);
}

void proxy_reply_429(struct request *r, int64_t retry_after_ms)
{
    char extra[64];
    int64_t secs = (retry_after_ms + 999) / 1000;
    if (secs < 1)
        secs = 1;
    snprintf(extra, sizeof(extra), "Retry-After: %lld\r\n", (long long)secs);
    char msg[160];
    snprintf(msg, sizeof(msg), "the rate limit of credential %s is exhausted; retry after %lld s",
             r->cred ? cred_name(r->cred) : "?", (long long)secs);
    proxy_reply_error_x(r, 429, "rate_limited", msg, extra, false);
}

struct request *proxy_request_new(const struct proxy_services *svc, struct conn *c)
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

void proxy_request_free(struct request *r)
{
    if (!r)
        return;
    if (r->credwait_ev)
        event_free(r->credwait_ev);
    world_unref(r->world);
    rewrite_free(r->rw);
    free(r->held_body);
    free(r->client_id);
    free(r->client_label);
    free(r->host);
    free(r->path);
    free(r->url);
    free(r->gateway_origin);
    free(r);
}
