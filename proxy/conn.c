/* conn: the client connection state machine. See conn.h. */
#define _GNU_SOURCE /* struct ucred */
#include "conn.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>

#include "log.h"
#include "metrics.h"
#include "upstream.h"
#include "util.h"

static void conn_read_cb(struct bufferevent *bev, void *arg);
static void conn_write_cb(struct bufferevent *bev, void *arg);
static void conn_event_cb(struct bufferevent *bev, short what, void *arg);

static void timer_arm(struct conn *c, int64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
}

/*
 * Direct writes (issue 14). A bufferevent with EV_WRITE enabled registers
 * write interest as soon as bytes are queued and drops it once they are
 * written: two epoll_ctl and a loop turn per response. So while its output
 * is empty the socket's bufferevent has EV_WRITE disabled; bytes queued
 * schedule flush_ev, which runs after the current callback in the same loop
 * turn and writes everything queued by then with one writev(2). What the
 * socket does not take (or an error, which the bufferevent's own write then
 * reports) goes back to the bufferevent: EV_WRITE enabled until the output
 * drains, with the same watermarks and backpressure as before.
 *
 * Intercepted, the socket's bufferevent is the raw one under the TLS filter:
 * the filter encrypts into its output (one SSL_write per loop turn, see
 * conn_start_intercept) and the same flush writes the records. Not for a
 * blind tunnel.
 */
static struct bufferevent *conn_sock_bev(const struct conn *c)
{
    return c->raw_bev ? c->raw_bev : c->bev;
}

/* Run conn_flush_cb once after the current callback (this loop turn). */
static void conn_flush_soon(struct conn *c)
{
    if (!c->flush_pending && c->flush_ev) {
        c->flush_pending = true;
        event_active(c->flush_ev, EV_WRITE, 1);
    }
}

static void conn_out_watch_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct conn *c = arg;

    if (info->n_added > 0)
        conn_flush_soon(c);
    /* drained by the bufferevent's own write: direct writes again (no syscall) */
    if (info->n_deleted > 0 && evbuffer_get_length(buf) == 0 && c->state < CONN_CLOSING &&
        (bufferevent_get_enabled(conn_sock_bev(c)) & EV_WRITE))
        bufferevent_disable(conn_sock_bev(c), EV_WRITE);
}

static void conn_direct_on(struct conn *c)
{
    struct evbuffer *out = bufferevent_get_output(conn_sock_bev(c));

    if (!c->out_watch)
        c->out_watch = evbuffer_add_cb(out, conn_out_watch_cb, c);
    if (c->out_watch && evbuffer_get_length(out) > 0)
        conn_flush_soon(c);
}

/* Hand the output back to the bufferevent for good (a blind tunnel takes the socket). */
static void conn_direct_off(struct conn *c)
{
    if (!c->out_watch || !conn_sock_bev(c))
        return;
    evbuffer_remove_cb_entry(bufferevent_get_output(conn_sock_bev(c)), c->out_watch);
    c->out_watch = NULL;
    bufferevent_enable(conn_sock_bev(c), EV_WRITE);
}

static void conn_setup_bev(struct conn *c)
{
    bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
    /* Backpressure: libevent stops reading the socket while the input holds CONN_INPUT_MAX. */
    bufferevent_setwatermark(c->bev, EV_READ, 0, CONN_INPUT_MAX);
    bufferevent_setwatermark(c->bev, EV_WRITE, CONN_OUTPUT_LOW, 0);
    if (c->raw_bev) {
        /*
         * The filter encrypts only while the raw output holds less than
         * CONN_OUTPUT_HIGH (libevent's default is no limit: a stalled agent
         * had the whole response pile up as ciphertext). Above it, plaintext
         * waits in the filter's output, where the pipeline's backpressure
         * sees it.
         */
        bufferevent_setwatermark(c->raw_bev, EV_WRITE, CONN_OUTPUT_LOW, CONN_OUTPUT_HIGH);
        bufferevent_enable(c->bev, EV_READ | EV_WRITE);
        if (c->out_watch)
            bufferevent_disable(c->raw_bev, EV_WRITE);
        return;
    }
    if (c->flush_ev) {
        conn_direct_on(c);
        if (c->out_watch) {
            bufferevent_disable(c->bev, EV_WRITE); /* a new bufferevent starts with it on */
            bufferevent_enable(c->bev, EV_READ);
            return;
        }
    }
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static void format_peer(const struct sockaddr *sa, char *buf, size_t cap)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
        snprintf(buf, cap, "%s:%u", ip, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
        snprintf(buf, cap, "[%s]:%u", ip, ntohs(in6->sin6_port));
    } else {
        snprintf(buf, cap, "unix");
    }
}

static void conn_free_cb(evutil_socket_t fd, short what, void *arg)
{
    conn_free_now(arg);
}

static void conn_output_drained(struct conn *c, size_t out);

/* flush_ev: write what the pipeline queued during this loop turn (see conn_out_watch_cb). */
static void conn_flush_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    struct evbuffer *out;
    struct bufferevent *sock;

    c->flush_pending = false;
    sock = c->bev ? conn_sock_bev(c) : NULL;
    if (c->state >= CONN_CLOSING || !sock || !c->out_watch ||
        (bufferevent_get_enabled(sock) & EV_WRITE))
        return; /* torn down, or the bufferevent writes until the output drains */
    out = bufferevent_get_output(sock);
    if (evbuffer_get_length(out) == 0)
        return;
    /* a bufferevent keeps its output's front frozen except while it writes itself */
    evbuffer_unfreeze(out, 1);
    evbuffer_write(out, bufferevent_getfd(sock));
    evbuffer_freeze(out, 1);
    if (evbuffer_get_length(out) > 0) {
        bufferevent_enable(sock, EV_WRITE);
        return;
    }
    if (c->raw_bev) {
        /* the filter may hold plaintext it stopped at the raw high watermark: its turn again */
        if (evbuffer_get_length(bufferevent_get_output(c->bev)) > 0)
            bufferevent_trigger(c->raw_bev, EV_WRITE, 0);
        return; /* the filter's own write callback reports its output draining */
    }
    conn_output_drained(c, 0);
}

static void conn_process_input(struct conn *c);

static void conn_kick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    if (c->state >= CONN_CLOSING)
        return;
    if (c->state == CONN_HEAD)
        conn_process_input(c);
}

static void conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    if (c->state == CONN_HEAD)
        conn_close(c, c->head_started ? "request head timeout" : "idle timeout");
    else if (c->state == CONN_TLS_HANDSHAKE)
        conn_close(c, "TLS handshake timeout");
    else if (c->state == CONN_REQUEST && c->req && c->body_waiting)
        c->own->pipeline->stalled(c->req);
}

/*
 * The body idle timer runs only while the upstream waits for request-body
 * bytes that have not arrived; any decoded byte (or the body's end) stops it.
 */
static void conn_body_wait(struct conn *c, bool waiting)
{
    if (waiting) {
        c->body_waiting = true;
        if (c->req)
            timer_arm(c, c->own->pipeline->body_idle_ms(c->req));
    } else if (c->body_waiting) {
        c->body_waiting = false;
        evtimer_del(c->timer);
    }
}

void conn_accept(const struct conn_owner *own, const struct listener_spec *ls, evutil_socket_t fd,
                 const struct sockaddr *sa, int socklen)
{
    struct conn *c = xcalloc(1, sizeof(*c));
    c->own = own;
    c->ls = ls;
    format_peer(sa, c->peer, sizeof(c->peer));
    if (sa->sa_family == AF_UNIX || ls->is_unix) {
        struct ucred cred;
        socklen_t len = sizeof(cred);
        c->is_unix = true;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
            c->have_uid = true;
            c->peer_uid = (unsigned)cred.uid;
        }
    } else {
        /*
         * Responses go out as a head and then body pieces (and, intercepted,
         * as separate TLS records): without TCP_NODELAY, Nagle holds the
         * second write until the client's delayed ACK.
         */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    http1_parser_init(&c->parser);
    c->bev = bufferevent_socket_new(own->base, fd, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    c->timer = evtimer_new(own->base, conn_timer_cb, c);
    c->kick = event_new(own->base, -1, 0, conn_kick_cb, c);
    c->free_ev = event_new(own->base, -1, 0, conn_free_cb, c);
    c->flush_ev = event_new(own->base, -1, 0, conn_flush_cb, c);
    if (!c->bev || !c->timer || !c->kick || !c->free_ev || !c->flush_ev) {
        log_error("out of event resources for a connection from %s", c->peer);
        if (!c->bev)
            evutil_closesocket(fd);
        own->added(own->arg, c);
        metrics_client_connections(own->metrics, 1);
        conn_free_now(c);
        return;
    }
    own->added(own->arg, c);
    metrics_client_connections(own->metrics, 1);
    conn_setup_bev(c);
    timer_arm(c, CONN_HEAD_TIMEOUT_MS);
    (void)socklen;
}

struct evbuffer *conn_output(struct conn *c)
{
    return bufferevent_get_output(c->bev);
}

struct evbuffer *conn_input(struct conn *c)
{
    return bufferevent_get_input(c->bev);
}

/* Parse as much of the next request head as the input holds. */
static void conn_process_input(struct conn *c)
{
    while (c->state == CONN_HEAD) {
        struct evbuffer *in = bufferevent_get_input(c->bev);
        size_t len = evbuffer_get_length(in);
        if (len == 0)
            return;
        if (!c->head_started) {
            c->head_started = true;
            timer_arm(c, CONN_HEAD_TIMEOUT_MS);
        }
        size_t seg = evbuffer_get_contiguous_space(in);
        const char *data = (const char *)evbuffer_pullup(in, (ev_ssize_t)seg);
        size_t consumed = 0;
        enum http1_status st = http1_parse_head(&c->parser, data, seg, &consumed);
        evbuffer_drain(in, consumed);
        if (st == HTTP1_ERROR) {
            evtimer_del(c->timer);
            c->state = CONN_REQUEST;
            c->own->pipeline->refuse(c->own->pipeline_arg, c, c->parser.err_status,
                                     c->parser.err_code, c->parser.err_msg);
            return;
        }
        if (st == HTTP1_HEAD_DONE) {
            evtimer_del(c->timer);
            c->state = CONN_REQUEST;
            c->head_started = false;
            c->sent_continue = false;
            c->own->pipeline->begin(c->own->pipeline_arg, c);
            return;
        }
        if (consumed == 0)
            return;
    }
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    if (c->state >= CONN_CLOSING)
        return;
    if (c->state == CONN_HEAD)
        conn_process_input(c);
    else if (c->state == CONN_REQUEST && c->req)
        c->own->pipeline->input(c->req);
}

static void conn_write_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    if (c->state >= CONN_CLOSING)
        return;
    conn_output_drained(c, evbuffer_get_length(bufferevent_get_output(bev)));
}

/* The output holds out bytes (at most CONN_OUTPUT_LOW) after a write. */
static void conn_output_drained(struct conn *c, size_t out)
{
    if (c->close_after && !c->req && out == 0) {
        c->graceful = true;
        conn_close(c, NULL);
        return;
    }
    if (c->req && out <= CONN_OUTPUT_LOW)
        c->own->pipeline->drained(c->req);
}

static void conn_intercept_ready(struct conn *c)
{
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
    const char *sni = ssl ? SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) : NULL;
    if (!sni || !util_strcaseeq(sni, c->connect_auth.host)) {
        log_warn("intercepted connection from %s: TLS server name %s does not match the CONNECT "
                 "host %s; closed",
                 c->peer, sni ? "differs" : "is missing", c->connect_auth.host);
        conn_close(c, NULL);
        return;
    }
    c->state = CONN_HEAD;
    c->head_started = false;
    http1_parser_reset(&c->parser);
    timer_arm(c, CONN_IDLE_TIMEOUT_MS);
    event_active(c->kick, 0, 0);
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    if (c->state >= CONN_CLOSING)
        return;
    if (what & BEV_EVENT_CONNECTED) {
        if (c->state == CONN_TLS_HANDSHAKE)
            conn_intercept_ready(c);
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        /* OpenSSL's own reason (e.g. "tlsv1 alert unknown ca"), or "" */
        char why[160] = "";
        unsigned long e = c->ssl ? bufferevent_get_openssl_error(bev) : 0;
        if (e)
            ERR_error_string_n(e, why, sizeof(why));
        if (c->state == CONN_TLS_HANDSHAKE) {
            log_info("TLS handshake with %s for %s failed (a server name other than the CONNECT "
                     "host, or the agent does not trust the credproxy CA)%s%s",
                     c->peer, c->connect_auth.host, why[0] ? ": " : "", why);
            c->graceful = true; /* flush the TLS alert before closing */
        } else if (c->ssl) {
            log_debug("intercepted connection from %s: TLS error %s (errno %d)", c->peer,
                      why[0] ? why : "-", EVUTIL_SOCKET_ERROR());
        }
        conn_close(c, "connection error");
        return;
    }
    if (what & BEV_EVENT_EOF) {
        if (c->state == CONN_REQUEST && c->req &&
            evbuffer_get_length(bufferevent_get_input(bev)) > 0) {
            /* The rest of the body may still be buffered: let the exchange read it. */
            c->peer_eof = true;
            c->own->pipeline->input(c->req);
            return;
        }
        conn_close(c, c->state == CONN_REQUEST ? "client closed mid-request" : NULL);
    }
}

bool conn_must_close(const struct conn *c)
{
    bool body_complete = c->parser.phase == HTTP1_PHASE_DONE ||
                         (c->parser.phase == HTTP1_PHASE_BODY && !c->parser.has_body);
    return !c->parser.keep_alive || !body_complete || c->peer_eof || c->close_after ||
           *c->own->draining;
}

void conn_close_after(struct conn *c)
{
    c->close_after = true;
}

void conn_request_done(struct conn *c)
{
    struct request *r = c->req;
    conn_body_wait(c, false);
    bool must_close = conn_must_close(c);
    c->req = NULL;
    c->own->pipeline->release(r);
    if (c->state >= CONN_CLOSING)
        return;
    if (must_close)
        c->close_after = true;
    if (c->close_after) {
        bufferevent_disable(c->bev, EV_READ);
        if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
            c->graceful = true;
            conn_close(c, NULL);
        }
        return;
    }
    http1_parser_reset(&c->parser);
    c->state = CONN_HEAD;
    c->head_started = false;
    timer_arm(c, CONN_IDLE_TIMEOUT_MS);
    event_active(c->kick, 0, 0);
}

void conn_send_continue(struct conn *c)
{
    if (c->sent_continue || !c->parser.expect_continue || !c->parser.has_body)
        return;
    c->sent_continue = true;
    evbuffer_add(bufferevent_get_output(c->bev), "HTTP/1.1 100 Continue\r\n\r\n", 25);
}

/*
 * libevent 2.1 reads a socket 4 KiB at a time (evbuffer_set_max_read only
 * came in 2.2), so a large upload would cost a read(2), a callback and often
 * an upstream pause/resume per 4 KiB. While a body streams on a plain socket
 * the exchange pulls up to want bytes straight into the input buffer, in
 * order with the bufferevent's own reads (same thread). End of stream and
 * errors are left to the bufferevent, which still sees the socket readable.
 */
static void conn_read_direct(struct conn *c, struct evbuffer *in, size_t want)
{
    struct evbuffer_iovec v;
    evutil_socket_t fd;
    ssize_t n;

    if (c->raw_bev || c->peer_eof || !c->bev)
        return;
    fd = bufferevent_getfd(c->bev);
    if (fd < 0)
        return;
    if (want > CONN_BODY_READ_MAX)
        want = CONN_BODY_READ_MAX;
    /* a bufferevent keeps its input's end frozen except while it reads itself */
    evbuffer_unfreeze(in, 0);
    if (evbuffer_reserve_space(in, (ev_ssize_t)want, &v, 1) == 1) {
        if (v.iov_len > want)
            v.iov_len = want;
        n = recv(fd, v.iov_base, v.iov_len, MSG_DONTWAIT);
        v.iov_len = n > 0 ? (size_t)n : 0;
        evbuffer_commit_space(in, &v, n > 0 ? 1 : 0);
    }
    evbuffer_freeze(in, 0);
}

ssize_t conn_read_body(struct conn *c, char *buf, size_t cap, bool *done)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t total = 0, consumed, produced;
    enum http1_status st;

    *done = false;
    /* (the body idle timer shares c->timer: the head timer is off while a request is served) */
    st = http1_parse_body(&c->parser, NULL, 0, &consumed, buf, cap, &produced);
    if (st == HTTP1_BODY_DONE) {
        conn_body_wait(c, false);
        *done = true;
        return 0;
    }
    if (st == HTTP1_ERROR) {
        conn_body_wait(c, false);
        return -1;
    }
    if (evbuffer_get_length(in) < cap)
        conn_read_direct(c, in, cap - evbuffer_get_length(in));
    bool raw_seen = evbuffer_get_length(in) > 0;
    while (total < cap) {
        size_t len = evbuffer_get_length(in);
        if (len == 0)
            break;
        size_t seg = evbuffer_get_contiguous_space(in);
        const char *data = (const char *)evbuffer_pullup(in, (ev_ssize_t)seg);
        st =
            http1_parse_body(&c->parser, data, seg, &consumed, buf + total, cap - total, &produced);
        evbuffer_drain(in, consumed);
        total += produced;
        if (st == HTTP1_BODY_DONE) {
            conn_body_wait(c, false);
            *done = true;
            return (ssize_t)total;
        }
        if (st == HTTP1_ERROR) {
            conn_body_wait(c, false);
            return -1;
        }
        if (consumed == 0)
            break;
    }
    if (total > 0) {
        conn_body_wait(c, false);
        return (ssize_t)total;
    }
    if (c->peer_eof) {
        conn_body_wait(c, false);
        return -1; /* the client closed before its body ended */
    }
    /* Raw bytes that decode to nothing yet (a chunk-size line) still count as progress. */
    if (!c->body_waiting || raw_seen)
        conn_body_wait(c, true);
    return UPSTREAM_WOULD_BLOCK;
}

int conn_start_intercept(struct conn *c, SSL *ssl, const struct hostmap_authority *auth,
                         const char *client_id, bool authed)
{
    /*
     * No BEV_OPT_CLOSE_ON_FREE: on close the filter is freed first and the raw
     * socket lingers until the last encrypted bytes are written (conn_free_now).
     */
    struct bufferevent *tls;

    tls = bufferevent_openssl_filter_new(c->own->base, c->bev, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                         BEV_OPT_DEFER_CALLBACKS);
    if (!tls) {
        SSL_free(ssl);
        return -1;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(tls, 1);
    /*
     * The filter encrypts on every add to its output: a response head written
     * line by line left as one TLS record per line (46 records for a 1 KiB
     * answer, each a read and a decryption for the agent). Deferred, it
     * encrypts once per loop turn, after the pipeline has written.
     */
    evbuffer_defer_callbacks(bufferevent_get_output(tls), c->own->base);
    c->raw_bev = c->bev;
    c->ssl = ssl;
    c->bev = tls;
    conn_setup_bev(c);
    c->intercept = true;
    c->connect_auth = *auth;
    free(c->tunnel_client);
    c->tunnel_client = client_id ? xstrdup(client_id) : NULL;
    c->tunnel_authed = authed;
    c->state = CONN_TLS_HANDSHAKE;
    http1_parser_reset(&c->parser);
    timer_arm(c, CONN_TLS_HANDSHAKE_TIMEOUT_MS);
    return 0;
}

struct bufferevent *conn_detach_for_tunnel(struct conn *c)
{
    struct bufferevent *bev = c->bev;
    conn_direct_off(c);
    evtimer_del(c->timer);
    bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
    bufferevent_setwatermark(bev, EV_READ, 0, 0);
    bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
    c->bev = NULL;
    c->state = CONN_TUNNEL;
    return bev;
}

void conn_reattach(struct conn *c, struct bufferevent *bev)
{
    c->bev = bev;
    c->state = CONN_REQUEST;
    conn_setup_bev(c);
}

const char *conn_state_name(enum conn_state s)
{
    switch (s) {
    case CONN_HEAD:
        return "head";
    case CONN_REQUEST:
        return "request";
    case CONN_TLS_HANDSHAKE:
        return "tls-handshake";
    case CONN_TUNNEL:
        return "tunnel";
    case CONN_CLOSING:
        return "closing";
    case CONN_LINGERING:
        return "lingering";
    }
    return "?";
}

void conn_drain(struct conn *c)
{
    if (c->state >= CONN_CLOSING)
        return;
    if ((c->state == CONN_HEAD && !c->head_started) || c->state == CONN_TLS_HANDSHAKE)
        conn_close(c, NULL);
    /* Otherwise conn_request_done sees the owner draining and closes after the response. */
}

void conn_close(struct conn *c, const char *why)
{
    if (c->state >= CONN_CLOSING)
        return;
    if (why)
        log_debug("connection from %s closed in state %s: %s", c->peer, conn_state_name(c->state),
                  why);
    c->state = CONN_CLOSING;
    if (c->timer)
        evtimer_del(c->timer);
    if (c->req) {
        struct request *r = c->req;
        c->req = NULL;
        c->own->pipeline->abort(r);
    }
    if (c->bev) {
        bufferevent_disable(c->bev, EV_READ | EV_WRITE);
        bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
    }
    if (c->free_ev)
        event_active(c->free_ev, 0, 0);
}

static void conn_linger_done(struct conn *c)
{
    c->graceful = false;
    conn_free_now(c);
}

static void conn_linger_write_cb(struct bufferevent *bev, void *arg)
{
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        conn_linger_done(arg);
}

static void conn_linger_event_cb(struct bufferevent *bev, short what, void *arg)
{
    conn_linger_done(arg);
}

static void conn_linger_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    conn_linger_done(arg);
}

/* Free the TLS filter of an intercepted connection (if any): c->bev is the raw socket after. */
static void conn_drop_tls(struct conn *c)
{
    if (!c->raw_bev)
        return;
    if (c->bev)
        bufferevent_free(c->bev);
    SSL_free(c->ssl);
    c->ssl = NULL;
    c->bev = c->raw_bev;
    c->raw_bev = NULL;
}

/*
 * Graceful close: the TLS filter (if any) is gone; write what the raw socket
 * still holds, then shut down our side so the client sees a clean end of
 * stream rather than a reset. Returns true when the free must wait.
 */
static bool conn_linger(struct conn *c)
{
    conn_drop_tls(c);
    if (!c->bev)
        return false;
    evutil_socket_t fd = bufferevent_getfd(c->bev);
    if (c->state != CONN_LINGERING && evbuffer_get_length(bufferevent_get_output(c->bev)) > 0) {
        c->state = CONN_LINGERING;
        bufferevent_setcb(c->bev, NULL, conn_linger_write_cb, conn_linger_event_cb, c);
        bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
        bufferevent_enable(c->bev, EV_WRITE);
        event_free(c->timer);
        c->timer = evtimer_new(c->own->base, conn_linger_timeout_cb, c);
        if (c->timer) {
            timer_arm(c, CONN_LINGER_MS);
            return true;
        }
    }
    if (fd >= 0)
        shutdown(fd, SHUT_WR);
    return false;
}

void conn_free_now(struct conn *c)
{
    if (c->graceful && !*c->own->destroying && conn_linger(c))
        return;
    conn_drop_tls(c);
    if (c->req) {
        struct request *r = c->req;
        c->req = NULL;
        c->own->pipeline->abort(r);
    }
    if (c->bev && c->out_watch)
        evbuffer_remove_cb_entry(bufferevent_get_output(c->bev), c->out_watch);
    c->out_watch = NULL;
    if (c->bev)
        bufferevent_free(c->bev);
    if (c->timer)
        event_free(c->timer);
    if (c->kick)
        event_free(c->kick);
    if (c->free_ev)
        event_free(c->free_ev);
    if (c->flush_ev)
        event_free(c->flush_ev);
    http1_parser_clear(&c->parser);
    free(c->tunnel_client);
    metrics_client_connections(c->own->metrics, -1);
    c->own->removed(c->own->arg, c);
    free(c);
}
