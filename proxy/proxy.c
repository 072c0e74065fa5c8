/*
 * proxy: the request pipeline. See proxy.h.
 *
 * Stages, in order, each a function below (the entry point is
 * proxy_request_begin at the end of the file):
 *   parse     conn.c/http1.c frame the head; proxy_parse_error answers refusals
 *   route     stage_route: route.c decides the site, mode and URL, or refuses
 *   identify  identify: the client's id from Proxy-Authorization or its uid
 *   admit     admit_and_forward: the credential's rate limit (and queue)
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
#include "conn.h"
#include "cred.h"
#include "errors.h"
#include "h1up.h"
#include "hostmap.h"
#include "http1.h"
#include "log.h"
#include "metrics.h"
#include "mitm.h"
#include "ratelimit.h"
#include "rewrite.h"
#include "route.h"
#include "tunnel.h"
#include "upstream.h"
#include "util.h"
#include "world.h"

#define PROXY_RL_VALUE_MAX 64 /* Retry-After & co. longer than this are ignored */

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
    };
    log_audit(&a);
    metrics_request(r->svc->metrics, r->site ? r->site->host : (r->host ? r->host : ""),
                    r->cred ? cred_name(r->cred) : NULL, metric_client(r, uidbuf, sizeof(uidbuf)),
                    r->status, (double)(now - r->start_ms) / 1000.0);
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

static void reply_error_x(struct request *r, int status, const char *code, const char *msg,
                          const char *extra, bool force_close)
{
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
    r->bytes_out = errors_write(conn_output(c), status, code, msg, extra, close);
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
    world_unref(r->world);
    rewrite_free(r->rw);
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

static int up_on_head(void *arg, int status, const struct upstream_header *h, size_t n)
{
    struct request *r = arg;
    struct conn *c = r->c;
    const struct upstream_header *ra = NULL, *reset = NULL, *rem = NULL, *near = NULL;
    const struct upstream_header *cl = NULL, *ctype = NULL, *cenc = NULL, *connection = NULL;

    for (size_t i = 0; i < n; i++) {
        if (hdr_is(&h[i], "retry-after"))
            ra = &h[i];
        else if (hdr_is(&h[i], "x-ratelimit-reset"))
            reset = &h[i];
        else if (hdr_is(&h[i], "x-ratelimit-remaining"))
            rem = &h[i];
        else if (hdr_is(&h[i], "x-ratelimit-nearlimit"))
            near = &h[i];
        else if (hdr_is(&h[i], "content-length") && !cl)
            cl = &h[i];
        else if (hdr_is(&h[i], "content-type"))
            ctype = &h[i];
        else if (hdr_is(&h[i], "content-encoding"))
            cenc = &h[i];
        else if (hdr_is(&h[i], "connection"))
            connection = &h[i];
    }
    if (r->cred) {
        char b1[PROXY_RL_VALUE_MAX], b2[PROXY_RL_VALUE_MAX], b3[PROXY_RL_VALUE_MAX],
            b4[PROXY_RL_VALUE_MAX];
        ratelimit_upstream_response(r->svc->rl, cred_name(r->cred), status, rl_value(ra, b1),
                                    rl_value(reset, b2), rl_value(rem, b3), rl_value(near, b4),
                                    util_now_ms());
    }

    bool no_body = c->parser.is_head || status == 204 || status == 304 || status < 200;
    bool encoded = cenc && !(cenc->value_len == 8 && util_memcaseeq(cenc->value, "identity", 8));
    bool json = ctype && contains_ci(ctype->value, ctype->value_len, "json");
    if (r->gateway_origin && !no_body && json && !encoded) {
        r->rw = rewrite_new(r->world->sites[world_site_index(r->world, r->site)].origin,
                            r->gateway_origin);
    }
    bool keep_cl = cl && !r->rw;
    bool http11 = c->parser.http_minor >= 1;
    if (no_body) {
        r->out_no_body = true;
    } else if (!keep_cl) {
        if (http11)
            r->out_chunked = true;
        else
            r->out_close_delimited = true;
    }
    if (r->out_close_delimited)
        conn_close_after(c);
    bool close = conn_must_close(c);
    if (close)
        conn_close_after(c);

    struct evbuffer *out = conn_output(c);
    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n", status, http1_reason(status));
    for (size_t i = 0; i < n; i++) {
        if (hdr_is(&h[i], "content-length")) {
            /* Framing is ours: keep the upstream's length only when the bytes pass unchanged. */
            if (&h[i] == cl && (keep_cl || (no_body && c->parser.is_head)) && status != 204 &&
                status >= 200) {
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
        ok = upstream_hblock_add(&hl, "Host", 4, hh, strlen(hh)) &&
             upstream_hblock_add_line(&hl, cred_header(r->cred));
    }
    if (ok && r->gateway_origin)
        ok = upstream_hblock_add_line(&hl, "Accept-Encoding: identity");
    if (ok && r->svc->self->token[0]) {
        /* Our loop marker: a request that comes back in carrying it is refused (508). */
        char via[sizeof(ROUTE_VIA_PRODUCT) + ROUTE_TOKEN_MAX + 16];
        snprintf(via, sizeof(via), "Via: 1.1 %s%s", ROUTE_VIA_PRODUCT, r->svc->self->token);
        ok = upstream_hblock_add_line(&hl, via);
    }
    if (ok && p->content_length >= 0) {
        char line[48];
        snprintf(line, sizeof(line), "Content-Length: %lld", (long long)p->content_length);
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
        .body_len = p->chunked ? -1 : (p->content_length > 0 ? p->content_length : 0),
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

static void admit_and_forward(struct request *r)
{
    struct conn *c = r->c;
    if (!r->cred) {
        forward(r);
        return;
    }
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
    SSL_CTX *ctx = mitm_ctx_for_host(r->world->mitm, rt->site->host);
    SSL *ssl = ctx ? SSL_new(ctx) : NULL;

    SSL_CTX_free(ctx);
    if (!ssl) {
        char msg[400];
        snprintf(msg, sizeof(msg),
                 "cannot intercept %s: the local CA could not issue a certificate for it "
                 "(see the startup warning; re-run `credproxy ca init --force`)",
                 rt->site->host);
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
 * parse (conn) -> route -> identify -> admit -> forward -> respond -> log.
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
            admit_and_forward(r);
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
    if (r->ex)
        upstream_resume_request(r->ex);
    if (r->hx)
        h1up_resume_request(r->hx);
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
};
