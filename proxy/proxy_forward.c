/*
 * proxy_forward: stages "forward" and "respond" of the pipeline
 * (proxy_int.h). forward strips what the client must not send upstream,
 * injects the credential, Host and our Via marker, and starts the exchange
 * on one of the two engines; respond frames the answer back to the client
 * (framing.c decides length / chunked / close / none), rewrites links for
 * the gateway, and feeds the rate limiter and the breaker what Atlassian
 * said. The engines call back through up_callbacks; neither the stages
 * before nor the client connection know which engine runs.
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
#include "framing.h"
#include "gwroute.h"
#include "h1up.h"
#include "http1.h"
#include "log.h"
#include "ratelimit.h"
#include "rewrite.h"
#include "route.h"
#include "tokens.h"
#include "upstream.h"
#include "util.h"
#include "world.h"

/* ------------------------------------------------------ the upstream engine */

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

void proxy_engine_cancel(struct request *r)
{
    if (r->ex)
        upstream_cancel(r->ex);
    if (r->hx)
        h1up_cancel(r->hx);
    r->ex = NULL;
    r->hx = NULL;
}

int64_t proxy_engine_elapsed_ms(const struct request *r)
{
    return r->hx ? h1up_elapsed_ms(r->hx) : upstream_elapsed_ms(r->ex);
}

void proxy_engine_resume_request(struct request *r)
{
    if (r->ex)
        upstream_resume_request(r->ex);
    if (r->hx)
        h1up_resume_request(r->hx);
}

void proxy_engine_resume_response(struct request *r)
{
    if (r->ex)
        upstream_resume_response(r->ex);
    if (r->hx)
        h1up_resume_response(r->hx);
}

/* ----------------------------------------------------------------- respond */

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

/* The response headers the respond stage reads itself (the first of each name). */
enum resp_header {
    RH_CONTENT_LENGTH = 0,
    RH_CONTENT_TYPE,
    RH_CONTENT_ENCODING,
    RH_CONNECTION,
    RH_COUNT
};

static const char *const rh_names[RH_COUNT] = {
    [RH_CONTENT_LENGTH] = "content-length",
    [RH_CONTENT_TYPE] = "content-type",
    [RH_CONTENT_ENCODING] = "content-encoding",
    [RH_CONNECTION] = "connection",
};

static int up_on_head(void *arg, int status, const struct upstream_header *h, size_t n)
{
    struct request *r = arg;
    struct conn *c = r->c;
    const struct upstream_header *rh[RH_COUNT];
    proxy_cred_heard(r, status, h, n);
    proxy_headers_find(h, n, rh_names, RH_COUNT, rh);
    const struct upstream_header *cl = rh[RH_CONTENT_LENGTH], *ctype = rh[RH_CONTENT_TYPE],
                                 *cenc = rh[RH_CONTENT_ENCODING], *connection = rh[RH_CONNECTION];

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
        if (proxy_header_is(&h[i], "content-length")) {
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
        if (proxy_header_is(&h[i], "location") && r->gateway_origin) {
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
    proxy_breaker_scan(r, data, len);
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
    if (r->body_held) {
        /* The policy stage read it whole (and may have rewritten it): send those bytes. */
        size_t n = r->held_len - r->held_off;
        if (n > cap)
            n = cap;
        if (n == 0)
            return 0; /* held_body is NULL for an empty body */
        memcpy(buf, r->held_body + r->held_off, n);
        r->held_off += n;
        return (ssize_t)n;
    }
    ssize_t n = conn_read_body(c, buf, cap, &done);
    if (n == UPSTREAM_WOULD_BLOCK) {
        r->body_blocked = true;
        return n;
    }
    if (n < 0) {
        /* Bad chunk framing or the client went away mid-body: nothing valid to forward. */
        proxy_engine_cancel(r);
        if (c->parser.phase == HTTP1_PHASE_ERROR && !r->head_sent)
            proxy_reply_error_x(r, 400, "bad_request",
                                c->parser.err_msg ? c->parser.err_msg : "malformed request body",
                                NULL, true);
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

    r->upstream_ms = proxy_engine_elapsed_ms(r);
    r->ex = NULL;
    r->hx = NULL;
    proxy_breaker_flush(r);      /* a gateway 401 whose body did not say "scope" */
    proxy_breaker_probe_gone(r); /* no-op once the head was reported */
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
        proxy_request_finish(r);
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
        proxy_request_finish(r);
        return;
    }
    char msg[512];
    snprintf(msg, sizeof(msg), "%s",
             detail && *detail ? detail
             : status == 504   ? "the upstream did not answer in time"
                               : "the upstream could not be reached");
    proxy_reply_error_x(r, status, code, msg, NULL, !r->body_done && c->parser.has_body);
}

static const struct upstream_callbacks up_callbacks = {
    .on_head = up_on_head,
    .on_body = up_on_body,
    .read_body = up_read_body,
    .on_done = up_on_done,
};

/* Strip, inject, start the exchange. */
void proxy_stage_forward(struct request *r)
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
        ok = upstream_hblock_add(&hl, "Host", 4, hh, strlen(hh)) && proxy_add_cred_header(r, &hl);
    }
    if (ok && r->gateway_origin)
        ok = upstream_hblock_add_line(&hl, "Accept-Encoding: identity");
    if (ok && r->svc->self->token[0]) {
        /* Our loop marker: a request that comes back in carrying it is refused (508). */
        char via[sizeof(ROUTE_VIA_PRODUCT) + ROUTE_TOKEN_MAX + 16];
        snprintf(via, sizeof(via), "Via: 1.1 %s%s", ROUTE_VIA_PRODUCT, r->svc->self->token);
        ok = upstream_hblock_add_line(&hl, via);
    }
    bool held = r->body_held;
    int64_t body_len = held ? (int64_t)r->held_len : p->content_length;
    if (ok && (held || p->content_length >= 0)) {
        char line[48];
        snprintf(line, sizeof(line), "Content-Length: %lld", (long long)body_len);
        ok = upstream_hblock_add_line(&hl, line);
    }
    if (!ok) {
        upstream_hblock_wipe(&hl);
        proxy_reply_error(r, 502, "the upstream request head is too large");
        return;
    }
    struct upstream_request req = {
        .cfg = proxy_cfg(r),
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
        proxy_reply_error(r, 502, "could not start the upstream request");
}
