/*
 * proxy: the request pipeline. See proxy.h.
 *
 * Order of decisions for every request: framing (http1) -> site selection
 * (the authority the proxy dials) -> refusals (Origin, Upgrade) -> client
 * identity -> rate limit -> header policy and injection -> forward -> one
 * audit line and the metrics.
 */
#include "proxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "clientauth.h"
#include "conn.h"
#include "cred.h"
#include "errors.h"
#include "hostmap.h"
#include "http1.h"
#include "log.h"
#include "metrics.h"
#include "mitm.h"
#include "ratelimit.h"
#include "rewrite.h"
#include "tunnel.h"
#include "upstream.h"
#include "util.h"
#include "worker.h"
#include "world.h"

#define PROXY_RL_VALUE_MAX 64       /* Retry-After & co. longer than this are ignored */
#define PROXY_HEADER_LINE_STACK 512 /* longer request header lines are built on the heap */

static const char *const MSG_NO_CA =
    "HTTPS interception is not set up: run `credproxy ca init`, then trust certs/ca.pem in the "
    "agent (credproxy env prints how)";

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

/* The client must not keep the connection after this response. */
static bool must_close(const struct conn *c)
{
    bool body_complete = c->parser.phase == HTTP1_PHASE_DONE ||
                         (c->parser.phase == HTTP1_PHASE_BODY && !c->parser.has_body);
    return !c->parser.keep_alive || !body_complete || c->peer_eof || c->close_after ||
           c->w->draining;
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
    metrics_request(c->w->sh->metrics, r->site ? r->site->host : (r->host ? r->host : ""),
                    r->cred ? cred_name(r->cred) : NULL, metric_client(r, uidbuf, sizeof(uidbuf)),
                    r->status, (double)(now - r->start_ms) / 1000.0);
    metrics_upstream_connections(c->w->sh->metrics, upstream_take_new_connections(c->w->up));
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
    bool close = force_close || status == 400 || status == 431 || must_close(c);
    if (r->head_sent) {
        /* Nothing can be said any more: cut the connection. */
        c->close_after = true;
        r->error = code;
        request_finish(r);
        return;
    }
    if (close)
        c->close_after = true;
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

static struct request *request_new(struct conn *c)
{
    struct request *r = xcalloc(1, sizeof(*r));
    r->c = c;
    r->world = shared_world_acquire(c->w->sh);
    r->start_ms = util_now_ms();
    r->upstream_ms = -1;
    r->mode = "forward";
    return r;
}

void proxy_request_free(struct request *r)
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

void proxy_request_abort(struct request *r)
{
    if (r->ex) {
        r->upstream_ms = upstream_elapsed_ms(r->ex);
        upstream_cancel(r->ex);
        r->ex = NULL;
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

void proxy_parse_error(struct conn *c, int status, const char *code, const char *msg)
{
    struct request *r = request_new(c);
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
        ratelimit_upstream_response(c->w->sh->rl, cred_name(r->cred), status, rl_value(ra, b1),
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
        c->close_after = true;
    bool close = must_close(c);
    if (close)
        c->close_after = true;

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
        upstream_cancel(r->ex);
        r->ex = NULL;
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

    r->upstream_ms = upstream_elapsed_ms(r->ex);
    r->ex = NULL;
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
            c->close_after = true; /* the rest of the request body was never read */
        request_finish(r);
        return;
    }
    int status = result == UPSTREAM_ERR_TIMEOUT ? 504 : 502;
    const char *code = errors_code_for(status);
    if (r->head_sent) {
        log_info("upstream %s failed mid-response (%s); closing the client connection",
                 r->host ? r->host : "?", detail ? detail : "error");
        r->error = code;
        c->close_after = true;
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

static bool slist_add(struct curl_slist **l, const char *line)
{
    struct curl_slist *t = curl_slist_append(*l, line);
    if (!t)
        return false;
    *l = t;
    return true;
}

/*
 * Append "name: value" without a heap copy of its own for the common short
 * line (curl_slist_append copies it anyway). The stack copy is wiped: for an
 * unmapped host it may hold the client's own Authorization.
 */
static bool slist_add_pair(struct curl_slist **l, const char *name, size_t nlen, const char *value,
                           size_t vlen)
{
    char small[PROXY_HEADER_LINE_STACK];
    char *line = small;
    bool ok;

    if (nlen + vlen + 3 > sizeof(small))
        line = xmalloc(nlen + vlen + 3);
    memcpy(line, name, nlen);
    memcpy(line + nlen, ": ", 2);
    memcpy(line + nlen + 2, value, vlen);
    line[nlen + 2 + vlen] = '\0';
    ok = slist_add(l, line);
    util_secure_zero(line, nlen + vlen + 3);
    if (line != small)
        free(line);
    return ok;
}

/* Strip, inject, start the exchange. */
static void forward(struct request *r)
{
    struct conn *c = r->c;
    const struct http1_parser *p = &c->parser;
    struct curl_slist *hl = NULL;
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
        ok = slist_add_pair(&hl, name, nlen, value, vlen);
    }
    if (ok && r->cred) {
        const char *hh = r->world->sites[world_site_index(r->world, r->site)].host_header;
        ok = slist_add_pair(&hl, "Host", 4, hh, strlen(hh)) && slist_add(&hl, cred_header(r->cred));
    }
    if (ok && r->gateway_origin)
        ok = slist_add(&hl, "Accept-Encoding: identity");
    if (ok && p->content_length >= 0) {
        char line[48];
        snprintf(line, sizeof(line), "Content-Length: %lld", (long long)p->content_length);
        ok = slist_add(&hl, line);
    }
    if (!ok) {
        curl_slist_free_all(hl);
        reply_error(r, 502, "out of memory building the upstream request");
        return;
    }
    struct upstream_request req = {
        .cfg = req_cfg(r),
        .method = http1_method(p),
        .url = r->url,
        .headers = hl,
        .body_len = p->chunked ? -1 : (p->content_length > 0 ? p->content_length : 0),
        .allow_plain_http = !r->cred && strncmp(r->url, "http://", 7) == 0,
    };
    conn_send_continue(c);
    r->ex = upstream_start(c->w->up, &req, &up_callbacks, r);
    if (!r->ex)
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
    enum ratelimit_result res = ratelimit_acquire(c->w->sh->rl, c->w->base, cred_name(r->cred),
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

static void proxy_connect(struct request *r, const char *target, size_t tlen)
{
    struct conn *c = r->c;
    struct world *w = r->world;
    struct hostmap_authority auth;

    r->path = xstrdup("");
    r->mode = "intercept";
    /* A refused CONNECT ends the connection: the client may already be sending TLS. */
    c->close_after = true;
    if (c->intercept) {
        reply_error(r, 400, "CONNECT inside an intercepted tunnel is not supported");
        return;
    }
    if (hostmap_parse_authority(target, tlen, 443, &auth) < 0 || !auth.port_given) {
        reply_error_x(r, 400, "bad_request", "CONNECT needs a host:port authority", NULL, true);
        return;
    }
    r->host = xstrdup(auth.host);
    const struct config_site *site = hostmap_lookup_forward(w->map, &auth, true);
    if (!site && w->cfg->unknown_hosts == CONFIG_UNKNOWN_TUNNEL)
        r->mode = "tunnel";
    if (identify(r) < 0)
        return;
    if (site) {
        r->site = site;
        if (!w->mitm) {
            reply_error_x(r, 403, "host_not_allowed", MSG_NO_CA, NULL, false);
            return;
        }
        SSL_CTX *ctx = mitm_ctx_for_host(w->mitm, site->host);
        SSL *ssl = ctx ? SSL_new(ctx) : NULL;
        SSL_CTX_free(ctx);
        if (!ssl) {
            char msg[400];
            snprintf(msg, sizeof(msg),
                     "cannot intercept %s: the local CA could not issue a certificate for it "
                     "(see the startup warning; re-run `credproxy ca init --force`)",
                     site->host);
            reply_error_x(r, 403, "host_not_allowed", msg, NULL, false);
            return;
        }
        c->close_after = false;
        evbuffer_add(conn_output(c), "HTTP/1.1 200 Connection Established\r\n\r\n", 39);
        r->status = 200;
        r->finished = true;
        request_log(r);
        char *client = r->client_id ? xstrdup(r->client_id) : NULL;
        c->req = NULL;
        proxy_request_free(r);
        if (conn_start_intercept(c, ssl, &auth, client, true) < 0)
            conn_close(c, "could not set up TLS interception");
        free(client);
        return;
    }
    if (w->cfg->unknown_hosts == CONFIG_UNKNOWN_DENY) {
        char msg[400];
        snprintf(msg, sizeof(msg),
                 "%s:%d is not in the site map (unknown_hosts: deny); only configured Atlassian "
                 "sites are reachable through this proxy",
                 auth.host, auth.port);
        reply_error_x(r, 403, "host_not_allowed", msg, NULL, false);
        return;
    }
    if (!c->w->dns) {
        reply_error(r, 502, "blind tunnels are unavailable (no DNS resolver)");
        return;
    }
    struct bufferevent *bev = conn_detach_for_tunnel(c);
    r->tunnel = tunnel_start(c->w->base, c->w->dns, bev, auth.host, auth.port, w->cfg, true,
                             &tun_callbacks, r);
    if (!r->tunnel) {
        conn_reattach(c, bev);
        reply_error_x(r, 400, "bad_request", "cannot tunnel to that authority", NULL, true);
    }
}

/* -------------------------------------------------------------- pipeline */

static bool same_authority(const struct hostmap_authority *a, const struct hostmap_authority *b)
{
    return a->port == b->port && util_strcaseeq(a->host, b->host);
}

void proxy_request_begin(struct conn *c)
{
    struct request *r = request_new(c);
    struct world *w = r->world;
    const struct config *cfg = w->cfg;
    const struct config_site *site = NULL;
    size_t tlen, path_len, hlen;
    const char *target = http1_target(&c->parser, &tlen);
    const char *path;
    const char *hval = header_value(c, "host", &hlen);
    char msg[600];

    c->req = r;
    if (c->parser.is_connect) {
        proxy_connect(r, target, tlen);
        return;
    }

    bool absolute = (tlen >= 7 && util_memcaseeq(target, "http://", 7)) ||
                    (tlen >= 8 && util_memcaseeq(target, "https://", 8));
    if (absolute) {
        struct hostmap_authority auth;
        bool https = false;
        size_t off = 0;
        r->mode = c->intercept ? "intercept" : "forward";
        r->path = xstrdup("");
        if (hostmap_parse_absolute(target, tlen, &auth, &https, &off) < 0) {
            reply_error_x(r, 403, "host_not_allowed",
                          "the URL's authority is not a plain host[:port] (user info or invalid "
                          "characters); it never receives a credential",
                          NULL, false);
            return;
        }
        path = target + off;
        path_len = tlen - off;
        free(r->path);
        r->path = path_for_log(path, path_len);
        r->host = xstrdup(auth.host);
        if (c->intercept) {
            struct hostmap_authority want = auth;
            if (!https && !auth.port_given)
                want.port = 443;
            if (!same_authority(&want, &c->connect_auth)) {
                snprintf(msg, sizeof(msg), "the request names %s, not the tunnel's host %s",
                         auth.host, c->connect_auth.host);
                reply_error_x(r, 403, "host_not_allowed", msg, NULL, false);
                return;
            }
            site = hostmap_lookup_forward(w->map, &c->connect_auth, true);
        } else {
            site = hostmap_lookup_forward(w->map, &auth, https);
        }
        if (!site) {
            if (c->intercept) {
                reply_error(r, 421, "the tunnel's host is no longer in the site map");
                return;
            }
            if (cfg->unknown_hosts == CONFIG_UNKNOWN_DENY) {
                snprintf(msg, sizeof(msg),
                         "%s:%d is not in the site map (unknown_hosts: deny); only configured "
                         "Atlassian sites are reachable through this proxy",
                         auth.host, auth.port);
                reply_error_x(r, 403, "host_not_allowed", msg, NULL, false);
                return;
            }
            r->mode = "tunnel";
            const char *slash = (path_len == 0 || path[0] != '/') ? "/" : "";
            if (auth.is_ipv6)
                r->url = xasprintf("%s://[%s]:%d%s%.*s", https ? "https" : "http", auth.host,
                                   auth.port, slash, (int)path_len, path);
            else
                r->url = xasprintf("%s://%s:%d%s%.*s", https ? "https" : "http", auth.host,
                                   auth.port, slash, (int)path_len, path);
        }
    } else {
        if (tlen == 0 || target[0] != '/') {
            r->path = xstrdup("");
            reply_error(r, 400, "the request target must be a path or an absolute URL");
            return;
        }
        path = target;
        path_len = tlen;
        r->path = path_for_log(path, path_len);
        struct hostmap_authority hauth;
        bool host_ok =
            hval && hostmap_parse_authority(hval, hlen, c->intercept ? 443 : 80, &hauth) == 0;
        if (c->intercept) {
            r->mode = "intercept";
            if (!host_ok || !same_authority(&hauth, &c->connect_auth)) {
                snprintf(msg, sizeof(msg),
                         "the Host header does not name the tunnel's host %s; refused",
                         c->connect_auth.host);
                r->host = xstrdup(c->connect_auth.host);
                reply_error(r, 421, msg);
                return;
            }
            site = hostmap_lookup_forward(w->map, &c->connect_auth, true);
            if (!site) {
                r->host = xstrdup(c->connect_auth.host);
                reply_error(r, 421, "the tunnel's host is no longer in the site map");
                return;
            }
        } else if (c->ls->kind == LISTENER_SITE) {
            struct hostmap_authority sa;
            memset(&sa, 0, sizeof(sa));
            snprintf(sa.host, sizeof(sa.host), "%s", c->ls->site_host);
            sa.port = c->ls->site_port;
            sa.port_given = true;
            r->mode = "gateway";
            site = hostmap_lookup(w->map, &sa);
            if (!site) {
                r->host = xstrdup(c->ls->site_host);
                reply_error(r, 421, "this listener's site is no longer configured (reloaded?)");
                return;
            }
        } else {
            r->mode = "gateway";
            if (host_ok)
                site = hostmap_lookup_gateway(w->map, &hauth);
            if (!site) {
                if (host_ok)
                    r->host = xstrdup(hauth.host);
                snprintf(msg, sizeof(msg),
                         "no site for Host %s: use SITE.localhost (or ALIAS.localhost) as the "
                         "host, an absolute http://SITE.atlassian.net URL through the proxy, or a "
                         "site's own listen address",
                         host_ok ? hauth.host : "(invalid)");
                reply_error(r, 421, msg);
                return;
            }
        }
        if (!c->intercept && cfg->gateway.rewrite_links && host_ok) {
            /* Links go back to the base the agent used: http://<its Host>. */
            char *origin = xasprintf("http://%.*s", (int)hlen, hval);
            if (rewrite_to_origin_ok(origin))
                r->gateway_origin = origin;
            else
                free(origin);
        }
    }

    if (site) {
        size_t olen;
        const char *origin = header_value(c, "origin", &olen);
        r->site = site;
        r->cred = world_site_cred(w, site);
        free(r->host);
        r->host = xstrdup(site->host);
        if (origin && !hostmap_origin_allowed(site, origin, olen)) {
            r->cred = NULL;
            reply_error_x(r, 403, "host_not_allowed",
                          "refused Origin: browser pages may not drive this proxy", NULL, false);
            return;
        }
        if (c->parser.upgrade) {
            r->cred = NULL;
            reply_error_x(r, 403, "host_not_allowed",
                          "Upgrade (WebSocket) requests are not forwarded to Atlassian sites", NULL,
                          false);
            return;
        }
        const char *slash = (path_len == 0 || path[0] != '/') ? "/" : "";
        r->url = xasprintf("%s%s%.*s", w->sites[world_site_index(w, site)].origin, slash,
                           (int)path_len, path);
    } else {
        free(r->gateway_origin);
        r->gateway_origin = NULL;
    }
    if (identify(r) < 0)
        return;
    admit_and_forward(r);
}

void proxy_body_available(struct request *r)
{
    r->body_blocked = false;
    if (r->ex)
        upstream_resume_request(r->ex);
}

int64_t proxy_body_timeout_ms(const struct request *r)
{
    return req_cfg(r)->body_timeout_ms;
}

void proxy_body_stalled(struct request *r)
{
    struct conn *c = r->c;
    if (r->ex) {
        r->upstream_ms = upstream_elapsed_ms(r->ex);
        upstream_cancel(r->ex);
        r->ex = NULL;
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

void proxy_output_drained(struct request *r)
{
    r->resp_paused = false;
    if (r->ex)
        upstream_resume_response(r->ex);
}
