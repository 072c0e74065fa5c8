/*
 * h1up: the lean HTTP/1.1 upstream engine. See h1up.h for the contract.
 *
 * Rules that keep it safe:
 *  - no caller callback runs from inside an h1up_* call: start, resume and
 *    cancel only record what to do and activate the exchange's deferred
 *    event;
 *  - an exchange is destroyed only from the loop (its deferred event, its
 *    connection's read or write event or a timer, after its last caller
 *    callback returned), and after cancel or on_done no callback runs
 *    again; a step that may end it is the last thing its caller does;
 *  - a connection goes back to the pool only when its response was framed
 *    completely, the request was sent completely, the server keeps it
 *    alive and nothing extra arrived;
 *  - every request holds one of its pool's slots (h1pool_acquire) from its
 *    first step until it ends; without a free slot it waits, first come
 *    first served, bounded by upstream.connect_timeout.
 *
 * The transport is OpenSSL straight on the socket with two libevent
 * events, not a bufferevent, so that a request costs one write(2) and one
 * read(2) and no epoll_ctl (issue 14): the read event stays registered
 * from the handshake until the connection closes (pooled or in use: one
 * callback looks at c->ex), and is taken off only while a response is
 * paused for a slow client; the request is written at once (SSL_write
 * when it is queued) and the write event is registered only while OpenSSL
 * waits for the socket; OpenSSL reads ahead (one read(2) brings a whole
 * small response), and SSL_has_pending says when the bytes it holds are
 * all taken, so no read(2) is spent to learn EAGAIN. A bufferevent_openssl
 * registers and drops write interest around every write, and cannot read
 * ahead (libevent 2.1 only asks SSL_pending, which does not count raw
 * bytes OpenSSL has buffered, and would stall on them).
 */
#include "h1up.h"

#include <errno.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "h1pool.h"
#include "http1_resp.h"
#include "tunnel.h"
#include "util.h"

#define H1UP_SWEEP_MS 5000  /* how often idle connections past their time are closed */
#define H1UP_DETAIL_MAX 512 /* error detail text */
#define H1UP_MAX_METHOD 32  /* method token length */
#define H1UP_ERRBUF 256     /* OpenSSL reason text */
#define H1UP_HEAD_SLACK 512 /* request line, Host and framing lines on top of the block */

#define H1UP_READ_CHUNK (16 * 1024)      /* one SSL_read into the input buffer */
#define H1UP_TLS_READ_BUFFER (64 * 1024) /* OpenSSL's read-ahead buffer per connection */
#define H1UP_WRITE_MAX (16 * 1024)       /* one SSL_write: at most a full TLS record */
#define H1UP_SEND_ROUNDS 4 /* body pulls of up to H1UP_OUTPUT_HIGH per turn before yielding */

static const unsigned char h1up_alpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};

struct h1up_pool;

struct h1up_conn {
    struct h1up_pool *pool;
    evutil_socket_t fd; /* owned */
    SSL *ssl;           /* owned, on fd */
    struct event *rev;  /* EV_READ|EV_PERSIST: registered for the connection's life but a pause */
    struct event *wev;  /* EV_WRITE|EV_PERSIST: registered only while OpenSSL waits to write */
    struct evbuffer *in, *out; /* decrypted response bytes; request bytes still to encrypt */
    /*
     * OpenSSL's rule: an SSL_write that could not finish is repeated with the
     * same bytes, at least as many. The front of out is never drained before
     * it succeeds, only appended to, so the next write always qualifies.
     */
    size_t retry_len;
    bool handshaking;
    bool read_wants_write, write_wants_read; /* TLS needs the other direction first */
    bool closed;              /* end of stream or a failure: nothing more comes in or goes out */
    bool reused;              /* has completed an exchange before */
    struct h1up_exchange *ex; /* NULL while idle in the pool */
};

struct h1up_pool {
    struct h1up *h;
    char *host; /* as dialed in the URL: SNI and the name verified */
    int port;
    char to_host[H1UP_MAX_HOST + 1]; /* after connect_to */
    int to_port;
    char *ca_file; /* NULL: the system store */
    SSL_CTX *ctx;
    SSL_SESSION *session; /* the newest resumable session, or NULL */
    struct h1pool book;   /* idle connections, slots and who waits for one */
    struct h1up_pool *next;
};

struct h1up {
    struct event_base *base;
    struct evdns_base *dns;
    struct h1up_pool *pools;
    size_t npools;
    unsigned new_connections;
    struct h1up_exchange *exchanges;
    struct event *sweep;
};

struct h1up_exchange {
    struct h1up *h;
    struct h1up_exchange *prev, *next;
    struct upstream_callbacks cb;
    void *arg;
    struct h1up_pool *pool;
    char method[H1UP_MAX_METHOD + 1];
    bool head_req;
    int64_t body_len;

    /* The rendered request head (holds the credential: wiped on free). */
    char *head;
    size_t head_len;

    int64_t start_ms, end_ms;
    int64_t connect_timeout_ms, timeout_ms;
    struct event *defer, *timer, *connect_timer;

    /* Connection set-up. */
    struct evdns_getaddrinfo_request *dnsreq;
    bool resolving_sync, sync_done;
    int sync_err;
    struct evutil_addrinfo *sync_ai, *ai, *ai_next;
    evutil_socket_t fd;
    struct event *connect_ev;
    int last_errno;

    /* Its pool slot: held from the first step to the end (retries keep it). */
    struct h1pool_waiter wait;
    bool has_slot;
    bool waiting; /* queued for a slot */

    struct h1up_conn *conn;

    /* Request. */
    bool sending; /* the head is queued: the body may flow */
    bool body_done;
    bool body_blocked;
    uint64_t body_sent;
    char *bodybuf;
    char *replay;
    size_t replay_len;
    bool replay_ok;

    /* Response. */
    struct http1_resp resp;
    bool response_started;
    bool head_delivered;
    uint64_t remaining; /* HTTP1_RESP_LENGTH: body bytes still due */
    char *dec;
    size_t dec_off, dec_len; /* decoded bytes not yet taken by on_body */
    bool paused;
    bool eof;
    bool resp_done;

    bool started, retried;
    bool cancelled, finished;
    bool want_resume_req, want_resume_resp;
    bool in_process; /* h1up_process is on the stack */
};

static void h1up_connect_fresh(struct h1up_exchange *ex);
/*
 * Internal step results: H1UP_GONE means the exchange ended and was freed
 * (never touch it again); H1UP_CANCELLED means the caller cancelled from a
 * callback (it lives until its deferred event destroys it).
 */
#define H1UP_GONE (-1)
#define H1UP_CANCELLED (-2)

static int h1up_process(struct h1up_exchange *ex);
static int h1up_pump(struct h1up_exchange *ex);

/* ---- pools ---- */

static void h1up_conn_free(struct h1up_conn *c)
{
    if (!c)
        return;
    /* the events first: they leave epoll before the descriptor closes */
    if (c->rev)
        event_free(c->rev);
    if (c->wev)
        event_free(c->wev);
    if (c->ssl)
        SSL_free(c->ssl);
    if (c->fd >= 0)
        evutil_closesocket(c->fd);
    if (c->in)
        evbuffer_free(c->in);
    if (c->out)
        evbuffer_free(c->out);
    free(c);
}

/* Stop (or resume) reading: a paused response, a closed connection. Registered means no syscall. */
static void h1up_conn_reading(struct h1up_conn *c, bool on)
{
    bool pending = event_pending(c->rev, EV_READ, NULL) != 0;

    if (on && !pending)
        event_add(c->rev, NULL);
    else if (!on && pending)
        event_del(c->rev);
}

static void h1up_conn_writing(struct h1up_conn *c, bool on)
{
    bool pending = event_pending(c->wev, EV_WRITE, NULL) != 0;

    if (on && !pending)
        event_add(c->wev, NULL);
    else if (!on && pending)
        event_del(c->wev);
}

/* No callback of the connection's may run any more (cancel, end of stream). */
static void h1up_conn_quiet(struct h1up_conn *c)
{
    event_del(c->rev);
    event_del(c->wev);
}

/*
 * The server may send new sessions after the handshake (TLS 1.3): keep a
 * copy of the newest. A copy, because OpenSSL marks a connection's own
 * session unresumable when that connection ends without close_notify
 * (what servers do to idle keep-alive connections).
 */
static int h1up_new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    struct h1up_conn *c = SSL_get_app_data(ssl);
    SSL_SESSION *copy;

    if (!c || !c->pool)
        return 0;
    copy = SSL_SESSION_dup(sess);
    if (!copy)
        return 0;
    if (c->pool->session)
        SSL_SESSION_free(c->pool->session);
    c->pool->session = copy;
    return 0; /* sess stays OpenSSL's */
}

static void h1up_pool_free(struct h1up_pool *p)
{
    void *items[H1POOL_MAX_IDLE];
    size_t n = h1pool_expire(&p->book, INT64_MAX / 2, items, H1POOL_MAX_IDLE);

    for (size_t i = 0; i < n; i++) {
        struct h1up_conn *c = items[i];
        c->pool = NULL;
        h1up_conn_free(c);
    }
    if (p->session)
        SSL_SESSION_free(p->session);
    SSL_CTX_free(p->ctx);
    free(p->host);
    free(p->ca_file);
    free(p);
}

static bool h1up_str_eq(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

static SSL_CTX *h1up_ctx_new(const char *ca_file)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

    if (!ctx)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if ((ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                 : SSL_CTX_set_default_verify_paths(ctx)) != 1) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    /*
     * Read ahead: one read(2) takes all the socket holds (a small response
     * in one go) instead of a record header and then its body. The write
     * buffer may move between an SSL_write and its repetition (an evbuffer
     * front, see retry_len).
     */
    SSL_CTX_set_read_ahead(ctx, 1);
    /*
     * With read-ahead OpenSSL reads into a buffer of one record by default:
     * a download cost a read(2) per 16 KiB record. A larger buffer takes up
     * to four records per read(2) (the same pooled connection keeps it).
     */
    SSL_CTX_set_default_read_buffer_len(ctx, H1UP_TLS_READ_BUFFER);
    SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, h1up_new_session_cb);
    if (SSL_CTX_set_alpn_protos(ctx, h1up_alpn, sizeof(h1up_alpn)) != 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* The pool for this key, created when new (NULL when its TLS context cannot be built). */
static struct h1up_pool *h1up_pool_get(struct h1up *h, const char *host, int port,
                                       const char *to_host, int to_port, const char *ca_file)
{
    struct h1up_pool *p, **pp;

    for (p = h->pools; p; p = p->next) {
        if (p->port == port && p->to_port == to_port && strcmp(p->host, host) == 0 &&
            strcmp(p->to_host, to_host) == 0 && h1up_str_eq(p->ca_file, ca_file))
            return p;
    }
    /* Bounded: drop unused pools (a reload changed the CA or the mappings) past the limit. */
    for (pp = &h->pools; *pp && h->npools >= H1UP_MAX_POOLS;) {
        p = *pp;
        if (p->book.active == 0 && p->book.nwaiting == 0) {
            *pp = p->next;
            h1up_pool_free(p);
            h->npools--;
        } else {
            pp = &p->next;
        }
    }
    p = xcalloc(1, sizeof(*p));
    p->ctx = h1up_ctx_new(ca_file);
    if (!p->ctx) {
        free(p);
        return NULL;
    }
    p->h = h;
    p->host = xstrdup(host);
    p->port = port;
    snprintf(p->to_host, sizeof(p->to_host), "%s", to_host);
    p->to_port = to_port;
    p->ca_file = ca_file ? xstrdup(ca_file) : NULL;
    p->next = h->pools;
    h->pools = p;
    h->npools++;
    return p;
}

/* ---- idle connections ---- */

static void h1up_idle_close(struct h1up_conn *c)
{
    if (c->pool)
        h1pool_remove(&c->pool->book, c);
    c->ex = NULL;
    h1up_conn_free(c);
}

/*
 * An idle connection became readable: the server closed it or sent junk
 * (gone either way), or TLS had something for itself (a TLS 1.3 session
 * ticket, part of a record), which leaves it usable.
 */
static void h1up_idle_readable(struct h1up_conn *c)
{
    char b;
    int n;

    ERR_clear_error();
    n = SSL_read(c->ssl, &b, 1);
    if (n <= 0 && SSL_get_error(c->ssl, n) == SSL_ERROR_WANT_READ)
        return;
    ERR_clear_error();
    h1up_idle_close(c);
}

/* Arm the sweep while any connection is idle (an idle proxy gets no timer wake-ups). */
static void h1up_sweep_arm(struct h1up *h)
{
    struct timeval tv = {.tv_sec = H1UP_SWEEP_MS / 1000, .tv_usec = (H1UP_SWEEP_MS % 1000) * 1000};

    if (!evtimer_pending(h->sweep, NULL))
        evtimer_add(h->sweep, &tv);
}

static void h1up_sweep_cb(evutil_socket_t fd, short what, void *arg)
{
    struct h1up *h = arg;
    void *items[H1POOL_MAX_IDLE];
    bool idle = false;

    (void)fd;
    (void)what;
    for (struct h1up_pool *p = h->pools; p; p = p->next) {
        size_t n = h1pool_expire(&p->book, util_now_ms(), items, H1POOL_MAX_IDLE);
        for (size_t i = 0; i < n; i++) {
            struct h1up_conn *c = items[i];
            c->ex = NULL;
            h1up_conn_free(c);
        }
        idle = idle || p->book.n > 0;
    }
    if (idle)
        h1up_sweep_arm(h);
}

/* ---- exchange lifetime ---- */

static void h1up_addrinfo_free(struct h1up_exchange *ex)
{
    if (ex->ai)
        evutil_freeaddrinfo(ex->ai);
    ex->ai = ex->ai_next = NULL;
}

static void h1up_setup_stop(struct h1up_exchange *ex)
{
    if (ex->dnsreq) {
        evdns_getaddrinfo_cancel(ex->dnsreq);
        ex->dnsreq = NULL;
    }
    if (ex->connect_ev) {
        event_free(ex->connect_ev);
        ex->connect_ev = NULL;
    }
    if (ex->fd >= 0) {
        evutil_closesocket(ex->fd);
        ex->fd = -1;
    }
    if (ex->connect_timer)
        evtimer_del(ex->connect_timer);
    h1up_addrinfo_free(ex);
}

/* The exchange an h1pool_waiter belongs to. */
static struct h1up_exchange *h1up_from_waiter(struct h1pool_waiter *w)
{
    return (struct h1up_exchange *)(void *)((char *)w - offsetof(struct h1up_exchange, wait));
}

/*
 * Leave the queue, or give the slot back; a waiter that gets it is woken
 * through its deferred event (never called back from here).
 */
static void h1up_slot_release(struct h1up_exchange *ex)
{
    struct h1pool_waiter *w;

    h1pool_unwait(&ex->pool->book, &ex->wait);
    ex->waiting = false;
    if (!ex->has_slot)
        return;
    ex->has_slot = false;
    w = h1pool_release(&ex->pool->book);
    if (w) {
        struct h1up_exchange *next = h1up_from_waiter(w);
        next->has_slot = true;
        event_active(next->defer, EV_TIMEOUT, 1);
    }
}

/* Detach and close the exchange's connection (never pooled). */
static void h1up_drop_conn(struct h1up_exchange *ex)
{
    if (ex->conn) {
        h1up_conn_free(ex->conn);
        ex->conn = NULL;
    }
}

static void h1up_destroy(struct h1up_exchange *ex)
{
    struct h1up *h = ex->h;

    h1up_setup_stop(ex);
    h1up_drop_conn(ex);
    h1up_slot_release(ex);
    if (ex->defer)
        event_free(ex->defer);
    if (ex->timer)
        event_free(ex->timer);
    if (ex->connect_timer)
        event_free(ex->connect_timer);
    if (ex->head) {
        util_secure_zero(ex->head, ex->head_len);
        free(ex->head);
    }
    free(ex->bodybuf);
    free(ex->replay);
    free(ex->dec);
    http1_resp_clear(&ex->resp);
    if (ex->prev)
        ex->prev->next = ex->next;
    else if (h->exchanges == ex)
        h->exchanges = ex->next;
    if (ex->next)
        ex->next->prev = ex->prev;
    free(ex);
}

/* The exchange ends with result: one on_done, then gone. */
static void h1up_finish(struct h1up_exchange *ex, enum upstream_result r, const char *detail)
{
    if (ex->finished || ex->cancelled)
        return;
    ex->finished = true;
    ex->end_ms = util_now_ms();
    h1up_setup_stop(ex);
    h1up_drop_conn(ex);
    if (ex->cb.on_done)
        ex->cb.on_done(ex->arg, r, detail);
    h1up_destroy(ex);
}

/* Fail with a formatted detail. */
static void h1up_fail(struct h1up_exchange *ex, enum upstream_result r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void h1up_fail(struct h1up_exchange *ex, enum upstream_result r, const char *fmt, ...)
{
    char detail[H1UP_DETAIL_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    h1up_finish(ex, r, detail);
}

/* The response completed: pool the connection when it is clean, then report. */
static void h1up_complete(struct h1up_exchange *ex)
{
    struct h1up_conn *c = ex->conn;

    /* (bytes OpenSSL holds past the response count as extra bytes too) */
    if (c && ex->resp.keep_alive && ex->body_done && !ex->eof && !c->closed &&
        !c->read_wants_write && !c->write_wants_read && evbuffer_get_length(c->in) == 0 &&
        evbuffer_get_length(c->out) == 0 && !SSL_has_pending(c->ssl) && c->pool) {
        struct h1up_conn *evicted;
        ex->conn = NULL;
        c->ex = NULL;
        c->reused = true;
        /* the read event stays registered: the same callback now watches an idle connection */
        h1up_conn_reading(c, true);
        h1up_conn_writing(c, false);
        evicted = h1pool_put(&c->pool->book, c, util_now_ms());
        if (evicted)
            h1up_idle_close(evicted);
        h1up_sweep_arm(c->pool->h);
    }
    h1up_finish(ex, UPSTREAM_OK, "ok");
}

/* ---- response ---- */

/* Hand the final head to on_head. 0 to go on, H1UP_GONE or H1UP_CANCELLED. */
static int h1up_deliver_head(struct h1up_exchange *ex)
{
    struct upstream_header hs[HTTP1_RESP_MAX_HEADERS];
    const struct http1_resp *p = &ex->resp;
    int rc;

    ex->head_delivered = true;
    for (size_t i = 0; i < p->nheaders; i++) {
        hs[i].name = http1_resp_header_name(p, i, &hs[i].name_len);
        hs[i].value = http1_resp_header_value(p, i, &hs[i].value_len);
    }
    if (p->framing == HTTP1_RESP_LENGTH)
        ex->remaining = (uint64_t)p->content_length;
    rc = ex->cb.on_head ? ex->cb.on_head(ex->arg, p->status, hs, p->nheaders) : 0;
    if (ex->cancelled)
        return H1UP_CANCELLED;
    if (rc != 0) {
        h1up_fail(ex, UPSTREAM_ERR_ABORTED, "the exchange was aborted by the proxy");
        return H1UP_GONE;
    }
    return 0;
}

/* Give body bytes to on_body. 1 consumed, 0 paused (nothing consumed), H1UP_GONE, H1UP_CANCELLED.
 */
static int h1up_give(struct h1up_exchange *ex, const char *data, size_t len)
{
    int rc;

    if (len == 0 || !ex->cb.on_body)
        return 1;
    rc = ex->cb.on_body(ex->arg, data, len);
    if (ex->cancelled)
        return H1UP_CANCELLED;
    if (rc == UPSTREAM_PAUSE) {
        ex->paused = true;
        if (ex->conn)
            h1up_conn_reading(ex->conn, false); /* level-triggered: stop, or it fires again */
        return 0;
    }
    if (rc != 0) {
        h1up_fail(ex, UPSTREAM_ERR_ABORTED, "the exchange was aborted by the proxy");
        return H1UP_GONE;
    }
    return 1;
}

/* Body bytes from one contiguous input span: bytes consumed, H1UP_GONE or H1UP_CANCELLED. */
static ssize_t h1up_body_span(struct h1up_exchange *ex, const char *data, size_t len)
{
    size_t consumed = 0, produced = 0, n;
    enum http1_resp_status st;
    int rc;

    switch (ex->resp.framing) {
    case HTTP1_RESP_LENGTH:
        /* Straight from the input buffer: no copy, no parser. */
        n = len < ex->remaining ? len : (size_t)ex->remaining;
        rc = h1up_give(ex, data, n);
        if (rc <= 0)
            return rc < 0 ? rc : 0;
        ex->remaining -= n;
        if (ex->remaining == 0)
            ex->resp_done = true;
        return (ssize_t)n;
    case HTTP1_RESP_CLOSE:
        rc = h1up_give(ex, data, len);
        if (rc <= 0)
            return rc < 0 ? rc : 0;
        return (ssize_t)len;
    case HTTP1_RESP_CHUNKED:
        if (!ex->dec)
            ex->dec = xmalloc(H1UP_DECODE_BUF);
        st = http1_resp_body(&ex->resp, data, len, &consumed, ex->dec, H1UP_DECODE_BUF, &produced);
        if (st == HTTP1_RESP_ERROR) {
            h1up_fail(ex, UPSTREAM_ERR_BAD_RESPONSE, "%s:%d: %s", ex->pool->host, ex->pool->port,
                      ex->resp.err_msg);
            return H1UP_GONE;
        }
        ex->dec_off = 0;
        ex->dec_len = produced;
        if (st == HTTP1_RESP_BODY_DONE)
            ex->resp_done = true;
        return (ssize_t)consumed;
    case HTTP1_RESP_NO_BODY:
    default:
        ex->resp_done = true;
        return 0;
    }
}

/*
 * Frame what is in the input: head, then body, honouring a pause. Returns
 * 0 while the exchange lives, -1 once it ended (freed).
 */
static int h1up_process(struct h1up_exchange *ex)
{
    struct evbuffer *in;

    if (!ex->conn)
        return 0;
    in = ex->conn->in;
    while (!ex->paused && !ex->cancelled) {
        struct evbuffer_iovec v;
        size_t consumed = 0;

        if (ex->dec_len > 0) {
            int rc = h1up_give(ex, ex->dec + ex->dec_off, ex->dec_len);
            if (rc == H1UP_GONE)
                return -1;
            if (rc == H1UP_CANCELLED)
                return 0;
            if (rc == 0)
                return 0;
            ex->dec_len = 0;
        }
        if (ex->resp_done) {
            if (!ex->body_done)
                ex->resp.keep_alive = false; /* the rest of the request was never sent */
            if (evbuffer_get_length(in) > 0)
                ex->resp.keep_alive = false; /* bytes after the response: not a clean connection */
            h1up_complete(ex);
            return -1;
        }
        if (ex->head_delivered && ex->resp.framing == HTTP1_RESP_NO_BODY) {
            ex->resp_done = true;
            continue;
        }
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0) {
            if (ex->eof)
                break;
            return 0;
        }
        ex->response_started = true;
        if (!ex->head_delivered) {
            enum http1_resp_status st =
                http1_resp_head(&ex->resp, v.iov_base, v.iov_len, &consumed);
            evbuffer_drain(in, consumed);
            if (st == HTTP1_RESP_ERROR) {
                h1up_fail(ex, UPSTREAM_ERR_BAD_RESPONSE, "%s:%d: %s", ex->pool->host,
                          ex->pool->port, ex->resp.err_msg);
                return -1;
            }
            if (st == HTTP1_RESP_HEAD_DONE) {
                int rc = h1up_deliver_head(ex);
                if (rc == H1UP_GONE)
                    return -1;
                if (rc == H1UP_CANCELLED)
                    return 0;
            }
            continue;
        }
        ssize_t n = h1up_body_span(ex, v.iov_base, v.iov_len);
        if (n == H1UP_GONE)
            return -1;
        if (n == H1UP_CANCELLED)
            return 0;
        evbuffer_drain(in, (size_t)n);
        if (n == 0 && ex->paused)
            return 0;
    }
    if (ex->paused || ex->cancelled)
        return 0;
    /* Input exhausted after EOF. */
    if (ex->head_delivered && http1_resp_eof(&ex->resp) == HTTP1_RESP_BODY_DONE &&
        ex->resp.framing != HTTP1_RESP_LENGTH) {
        ex->resp.keep_alive = false;
        ex->resp_done = true;
        h1up_complete(ex);
        return -1;
    }
    if (ex->head_delivered) {
        h1up_fail(ex, UPSTREAM_ERR_PROTOCOL,
                  "%s:%d closed the connection in the middle of the response body", ex->pool->host,
                  ex->pool->port);
        return -1;
    }
    /*
     * A connection that ends before a complete head failed (upstream_unreachable);
     * upstream_bad_response is kept for bytes that are not a valid response.
     */
    if (ex->response_started) {
        h1up_fail(ex, UPSTREAM_ERR_PROTOCOL,
                  "the exchange with %s:%d failed: it closed the connection in the middle of "
                  "the response head",
                  ex->pool->host, ex->pool->port);
        return -1;
    }
    h1up_fail(ex, UPSTREAM_ERR_PROTOCOL,
              "the exchange with %s:%d failed: it closed the connection without a response",
              ex->pool->host, ex->pool->port);
    return -1;
}

/* ---- the connection's transport while an exchange runs ---- */

/* Start over on a fresh connection (the retry rule allowed it); keeps the slot. */
static void h1up_retry(struct h1up_exchange *ex)
{
    ex->retried = true;
    h1up_drop_conn(ex);
    http1_resp_reset(&ex->resp, ex->head_req);
    ex->sending = false;
    ex->body_blocked = false;
    ex->eof = false;
    h1up_connect_fresh(ex);
}

/*
 * Read what TLS has into c->in, bounded by H1UP_INPUT_HIGH. Sets c->closed
 * at the end of the stream (close_notify or not) and on any failure: both
 * end the exchange the same way, as they did on a bufferevent.
 */
static void h1up_conn_fill(struct h1up_conn *c)
{
    while (evbuffer_get_length(c->in) < H1UP_INPUT_HIGH) {
        struct evbuffer_iovec v;
        int n, err;

        if (evbuffer_reserve_space(c->in, H1UP_READ_CHUNK, &v, 1) < 1) {
            c->closed = true;
            return;
        }
        ERR_clear_error();
        n = SSL_read(c->ssl, v.iov_base,
                     (int)(v.iov_len < H1UP_READ_CHUNK ? v.iov_len : H1UP_READ_CHUNK));
        if (n > 0) {
            v.iov_len = (size_t)n;
            evbuffer_commit_space(c->in, &v, 1);
            /*
             * All that read(2) brought is taken and it was less than a full
             * record: another SSL_read would most likely only learn EAGAIN
             * (a small response costs one read). Full records mean a bulk
             * transfer: go on while the socket has more.
             */
            if (!SSL_has_pending(c->ssl) && (size_t)n < H1UP_READ_CHUNK)
                return;
            continue;
        }
        err = SSL_get_error(c->ssl, n);
        if (err == SSL_ERROR_WANT_READ)
            return;
        if (err == SSL_ERROR_WANT_WRITE) {
            c->read_wants_write = true;
            h1up_conn_writing(c, true);
            return;
        }
        ERR_clear_error();
        c->closed = true;
        return;
    }
}

/*
 * Encrypt and write c->out. Never ends the exchange itself: a failure sets
 * c->closed and wakes the read side, which reports it from its own
 * callback (the caller may be deep in the exchange's code).
 */
static void h1up_conn_flush(struct h1up_conn *c)
{
    size_t len;

    if (c->closed || c->handshaking)
        return;
    while ((len = evbuffer_get_length(c->out)) > 0) {
        size_t n = len < H1UP_WRITE_MAX ? len : H1UP_WRITE_MAX; /* >= retry_len: see there */
        unsigned char *p = evbuffer_pullup(c->out, (ev_ssize_t)n);
        int w, err;

        if (!p) {
            err = SSL_ERROR_SSL;
        } else {
            ERR_clear_error();
            w = SSL_write(c->ssl, p, (int)n);
            if (w > 0) {
                evbuffer_drain(c->out, (size_t)w);
                c->retry_len = 0;
                continue;
            }
            c->retry_len = n;
            err = SSL_get_error(c->ssl, w);
        }
        if (err == SSL_ERROR_WANT_WRITE) {
            h1up_conn_writing(c, true);
            return;
        }
        if (err == SSL_ERROR_WANT_READ) {
            c->write_wants_read = true;
            h1up_conn_reading(c, true);
            return;
        }
        ERR_clear_error();
        c->closed = true;
        h1up_conn_writing(c, false);
        event_active(c->rev, EV_READ, 1);
        return;
    }
    if (!c->read_wants_write)
        h1up_conn_writing(c, false);
}

/* The connection ended (EOF, reset, TLS failure) while the exchange ran. */
static void h1up_on_closed(struct h1up_exchange *ex)
{
    struct h1pool_attempt a = {
        .reused_connection = ex->conn && ex->conn->reused,
        .response_started = ex->response_started,
        .retried = ex->retried,
        .body_sent = ex->body_sent,
        .body_replayable = ex->replay_ok,
        .method = ex->method,
    };

    if (h1pool_may_retry(&a)) {
        h1up_retry(ex);
        return;
    }
    ex->eof = true;
    if (ex->conn)
        h1up_conn_quiet(ex->conn);
    if (!ex->paused)
        h1up_process(ex);
}

static int h1up_pump(struct h1up_exchange *ex);
static void h1up_handshake(struct h1up_exchange *ex);

/*
 * Pull request body bytes and write them until the body is done, the
 * client has no more yet (resume_request brings us back), or the socket is
 * full (the write event does). After H1UP_SEND_ROUNDS full outputs in one
 * go it yields to the loop through the write event (the socket is writable,
 * so it fires on the next turn), so one fast upload cannot starve the
 * other connections. 0 while the exchange lives, H1UP_GONE.
 */
static int h1up_send_more(struct h1up_exchange *ex)
{
    for (int round = 0; round < H1UP_SEND_ROUNDS; round++) {
        struct h1up_conn *c;

        if (h1up_pump(ex) == H1UP_GONE)
            return H1UP_GONE;
        if (ex->cancelled || !ex->conn)
            return 0;
        c = ex->conn;
        h1up_conn_flush(c);
        if (c->closed || !ex->sending || ex->body_done || ex->body_blocked ||
            evbuffer_get_length(c->out) > H1UP_OUTPUT_HIGH / 2)
            return 0;
    }
    h1up_conn_writing(ex->conn, true);
    return 0;
}

/*
 * The socket is readable (or a failure was flagged): finish a write that
 * waited for it, read, frame. Runs only as the read event's callback and
 * touches nothing after a step that may end the exchange.
 */
static void h1up_conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct h1up_conn *c = arg;
    struct h1up_exchange *ex = c->ex;

    (void)fd;
    (void)what;
    if (!ex) {
        h1up_idle_readable(c);
        return;
    }
    if (ex->cancelled || ex->finished)
        return;
    if (c->handshaking) {
        h1up_handshake(ex);
        return;
    }
    if (c->write_wants_read) {
        c->write_wants_read = false;
        h1up_conn_flush(c);
    }
    if (!ex->paused && !c->closed) {
        h1up_conn_fill(c);
        if (h1up_process(ex) < 0 || ex->cancelled)
            return;
    }
    if (c->closed && !ex->eof)
        h1up_on_closed(ex);
    else if (ex->paused && !c->write_wants_read)
        h1up_conn_reading(c, false);
}

/* The socket is writable: the handshake, a read that waited for it, the request. */
static void h1up_conn_write_cb(evutil_socket_t fd, short what, void *arg)
{
    struct h1up_conn *c = arg;
    struct h1up_exchange *ex = c->ex;

    (void)fd;
    (void)what;
    if (!ex || ex->cancelled || ex->finished) {
        h1up_conn_writing(c, false);
        return;
    }
    if (c->handshaking) {
        h1up_handshake(ex);
        return;
    }
    if (c->read_wants_write) {
        c->read_wants_write = false;
        event_active(c->rev, EV_READ, 1);
    }
    h1up_conn_flush(c);
    if (ex->sending && !ex->body_done && !ex->body_blocked && !c->closed &&
        evbuffer_get_length(c->out) <= H1UP_OUTPUT_HIGH / 2)
        h1up_send_more(ex);
}

static void h1up_tls_error(struct h1up_exchange *ex)
{
    char reason[H1UP_ERRBUF] = "handshake failed";
    unsigned long e;
    long vr = ex->conn ? SSL_get_verify_result(ex->conn->ssl) : X509_V_OK;

    /* the last error queued names the cause best (as bufferevent_get_openssl_error did) */
    while ((e = ERR_get_error()) != 0)
        ERR_error_string_n(e, reason, sizeof(reason));
    if (vr != X509_V_OK)
        h1up_fail(ex, UPSTREAM_ERR_TLS,
                  "TLS handshake with %s failed: certificate verification failed (%s)",
                  ex->pool->host, X509_verify_cert_error_string(vr));
    else
        h1up_fail(ex, UPSTREAM_ERR_TLS, "TLS handshake with %s failed: %s", ex->pool->host, reason);
}

static void h1up_send_head(struct h1up_exchange *ex);

/* One step of the TLS handshake; on success the request goes out at once. */
static void h1up_handshake(struct h1up_exchange *ex)
{
    struct h1up_conn *c = ex->conn;
    const unsigned char *proto = NULL;
    unsigned plen = 0;
    int r, err;

    ERR_clear_error();
    r = SSL_do_handshake(c->ssl);
    if (r != 1) {
        err = SSL_get_error(c->ssl, r);
        if (err == SSL_ERROR_WANT_READ) {
            h1up_conn_writing(c, false); /* the read event is always registered */
            return;
        }
        if (err == SSL_ERROR_WANT_WRITE) {
            h1up_conn_writing(c, true);
            return;
        }
        h1up_tls_error(ex);
        return;
    }
    c->handshaking = false;
    h1up_conn_writing(c, false);
    evtimer_del(ex->connect_timer);
    SSL_get0_alpn_selected(c->ssl, &proto, &plen);
    if (plen && (plen != 8 || memcmp(proto, "http/1.1", 8) != 0)) {
        h1up_fail(ex, UPSTREAM_ERR_TLS, "TLS handshake with %s failed: it chose ALPN %.*s",
                  ex->pool->host, (int)plen, (const char *)proto);
        return;
    }
    h1up_send_head(ex);
}

/* ---- request ---- */

static void h1up_write(struct h1up_exchange *ex, const void *data, size_t len)
{
    evbuffer_add(ex->conn->out, data, len);
}

/* Keep sent body bytes while a retry could still replay them (bounded by H1UP_MAX_REPLAY). */
static void h1up_keep_replay(struct h1up_exchange *ex, const char *p, size_t n)
{
    if (ex->replay_ok && !ex->retried && !ex->response_started &&
        ex->replay_len + n <= H1UP_MAX_REPLAY) {
        if (!ex->replay)
            ex->replay = xmalloc(H1UP_MAX_REPLAY);
        memcpy(ex->replay + ex->replay_len, p, n);
        ex->replay_len += n;
    } else {
        ex->replay_ok = false;
    }
}

/*
 * Pull request body bytes while the output has room (the caller flushes).
 * 0 while the exchange lives, H1UP_GONE.
 */
static int h1up_pump(struct h1up_exchange *ex)
{
    struct evbuffer *out;

    if (!ex->conn || !ex->sending)
        return 0;
    out = ex->conn->out;
    while (!ex->body_done && !ex->body_blocked && evbuffer_get_length(out) < H1UP_OUTPUT_HIGH) {
        ssize_t n;
        struct evbuffer_iovec v;
        char *dst;
        size_t cap = H1UP_BODY_CHUNK;
        /* A known length goes straight into the output buffer; chunked needs its size line first.
         */
        bool direct = ex->body_len > 0 && evbuffer_reserve_space(out, H1UP_BODY_CHUNK, &v, 1) == 1;
        if (direct) {
            dst = v.iov_base;
            cap = v.iov_len < H1UP_BODY_CHUNK ? v.iov_len : H1UP_BODY_CHUNK;
        } else {
            if (!ex->bodybuf)
                ex->bodybuf = xmalloc(H1UP_BODY_CHUNK);
            dst = ex->bodybuf;
        }
        n = ex->cb.read_body ? ex->cb.read_body(ex->arg, dst, cap) : 0;
        if (ex->cancelled)
            return 0;
        if (n == UPSTREAM_WOULD_BLOCK) {
            ex->body_blocked = true;
            return 0;
        }
        if (n < 0 || n > (ssize_t)cap) {
            h1up_fail(ex, UPSTREAM_ERR_ABORTED, "reading the request body failed");
            return H1UP_GONE;
        }
        if (direct && n > 0) {
            /* Kept for a replay while a retry could still happen and it fits. */
            h1up_keep_replay(ex, dst, (size_t)n);
            v.iov_len = (size_t)n;
            evbuffer_commit_space(out, &v, 1);
            ex->body_sent += (uint64_t)n;
            continue;
        }
        if (n == 0) {
            if (ex->body_len < 0)
                h1up_write(ex, "0\r\n\r\n", 5);
            ex->body_done = true;
            return 0;
        }
        if (ex->body_len < 0) {
            char line[24];
            int k = snprintf(line, sizeof(line), "%zx\r\n", (size_t)n);
            h1up_write(ex, line, (size_t)k);
        }
        h1up_write(ex, ex->bodybuf, (size_t)n);
        if (ex->body_len < 0)
            h1up_write(ex, "\r\n", 2);
        h1up_keep_replay(ex, ex->bodybuf, (size_t)n);
        ex->body_sent += (uint64_t)n;
    }
    return 0;
}

/*
 * TLS is up (or a pooled connection was taken): queue the head (and, on a
 * retry, the body bytes already taken), then the body, and write at once.
 */
static void h1up_send_head(struct h1up_exchange *ex)
{
    h1up_write(ex, ex->head, ex->head_len);
    if (ex->body_sent > 0) {
        /* h1pool_may_retry allowed this only with the whole body so far in replay */
        if (ex->body_len < 0) {
            char line[24];
            int k = snprintf(line, sizeof(line), "%zx\r\n", ex->replay_len);
            h1up_write(ex, line, (size_t)k);
            h1up_write(ex, ex->replay, ex->replay_len);
            h1up_write(ex, "\r\n", 2);
        } else {
            h1up_write(ex, ex->replay, ex->replay_len);
        }
        if (ex->body_done && ex->body_len < 0)
            h1up_write(ex, "0\r\n\r\n", 5);
    }
    ex->sending = true;
    if (ex->body_len == 0 && !ex->body_done && !ex->cb.read_body)
        ex->body_done = true;
    h1up_send_more(ex);
}

/* ---- connecting ---- */

/* The TCP connection is up: wrap it in TLS and start the handshake (its first flight goes now). */
static void h1up_tls_start(struct h1up_exchange *ex)
{
    struct h1up_pool *pool = ex->pool;
    struct h1up_conn *c;
    SSL *ssl = SSL_new(pool->ctx);
    unsigned char ipbuf[sizeof(struct in6_addr)];
    bool is_ip =
        inet_pton(AF_INET, pool->host, ipbuf) == 1 || inet_pton(AF_INET6, pool->host, ipbuf) == 1;

    if (!ssl) {
        h1up_fail(ex, UPSTREAM_ERR_TLS, "TLS setup for %s failed", pool->host);
        return;
    }
    /* Verification: the chain (SSL_VERIFY_PEER on the context) and the name we dialed. */
    if (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), pool->host) != 1
              : (X509_VERIFY_PARAM_set1_host(SSL_get0_param(ssl), pool->host, 0) != 1 ||
                 SSL_set_tlsext_host_name(ssl, pool->host) != 1)) {
        SSL_free(ssl);
        h1up_fail(ex, UPSTREAM_ERR_TLS, "TLS setup for %s failed", pool->host);
        return;
    }
    if (pool->session)
        SSL_set_session(ssl, pool->session);
    c = xcalloc(1, sizeof(*c));
    c->pool = pool;
    c->ssl = ssl;
    c->fd = -1;
    c->ex = ex;
    SSL_set_app_data(ssl, c);
    SSL_set_connect_state(ssl);
    c->rev = event_new(ex->h->base, ex->fd, EV_READ | EV_PERSIST, h1up_conn_read_cb, c);
    c->wev = event_new(ex->h->base, ex->fd, EV_WRITE | EV_PERSIST, h1up_conn_write_cb, c);
    c->in = evbuffer_new();
    c->out = evbuffer_new();
    if (SSL_set_fd(ssl, ex->fd) != 1 || !c->rev || !c->wev || !c->in || !c->out ||
        event_add(c->rev, NULL) != 0) {
        h1up_conn_free(c); /* frees the SSL; the socket is still the exchange's */
        h1up_fail(ex, UPSTREAM_ERR_TLS, "TLS setup for %s failed", pool->host);
        return;
    }
    c->fd = ex->fd; /* the connection owns it now */
    ex->fd = -1;
    ex->conn = c;
    c->handshaking = true;
    h1up_handshake(ex);
}

static void h1up_connect_next(struct h1up_exchange *ex);

static void h1up_connect_ready_cb(evutil_socket_t fd, short what, void *arg)
{
    struct h1up_exchange *ex = arg;
    int err = 0;
    socklen_t len = sizeof(err);

    (void)what;
    event_free(ex->connect_ev);
    ex->connect_ev = NULL;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err != 0) {
        ex->last_errno = err;
        evutil_closesocket(ex->fd);
        ex->fd = -1;
        h1up_connect_next(ex);
        return;
    }
    ex->h->new_connections++;
    h1up_addrinfo_free(ex);
    h1up_tls_start(ex);
}

static void h1up_connect_next(struct h1up_exchange *ex)
{
    while (ex->ai_next) {
        struct evutil_addrinfo *ai = ex->ai_next;
        int one = 1;
        ex->ai_next = ai->ai_next;
        ex->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (ex->fd < 0) {
            ex->last_errno = errno;
            continue;
        }
        setsockopt(ex->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (connect(ex->fd, ai->ai_addr, (socklen_t)ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
            ex->last_errno = errno;
            evutil_closesocket(ex->fd);
            ex->fd = -1;
            continue;
        }
        ex->connect_ev = event_new(ex->h->base, ex->fd, EV_WRITE, h1up_connect_ready_cb, ex);
        if (!ex->connect_ev || event_add(ex->connect_ev, NULL) != 0) {
            h1up_fail(ex, UPSTREAM_ERR_CONNECT, "could not connect to %s:%d: out of resources",
                      ex->pool->host, ex->pool->port);
            return;
        }
        return;
    }
    h1up_fail(ex, UPSTREAM_ERR_CONNECT, "could not connect to %s:%d: %s", ex->pool->host,
              ex->pool->port,
              ex->last_errno == ECONNREFUSED ? "connection refused"
              : ex->last_errno               ? strerror(ex->last_errno)
                                             : "connection failed");
}

static void h1up_dns_result(struct h1up_exchange *ex, int err, struct evutil_addrinfo *ai)
{
    if (err != 0 || !ai) {
        if (ai)
            evutil_freeaddrinfo(ai);
        h1up_fail(ex, UPSTREAM_ERR_DNS, "could not resolve host %s", ex->pool->to_host);
        return;
    }
    ex->ai = ex->ai_next = ai;
    h1up_connect_next(ex);
}

static void h1up_dns_cb(int err, struct evutil_addrinfo *ai, void *arg)
{
    struct h1up_exchange *ex = arg;

    if (err == EVUTIL_EAI_CANCEL) {
        if (ai)
            evutil_freeaddrinfo(ai);
        return; /* ex may be gone */
    }
    if (ex->resolving_sync) {
        ex->sync_done = true;
        ex->sync_err = err;
        ex->sync_ai = ai;
        return;
    }
    ex->dnsreq = NULL;
    h1up_dns_result(ex, err, ai);
}

static void h1up_connect_fresh(struct h1up_exchange *ex)
{
    struct evutil_addrinfo hints;
    struct evdns_getaddrinfo_request *req;
    char portstr[16];

    if (ex->connect_timeout_ms > 0) {
        struct timeval tv = {.tv_sec = ex->connect_timeout_ms / 1000,
                             .tv_usec = (ex->connect_timeout_ms % 1000) * 1000};
        evtimer_add(ex->connect_timer, &tv);
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    snprintf(portstr, sizeof(portstr), "%d", ex->pool->to_port);
    ex->sync_done = false;
    ex->resolving_sync = true;
    req = evdns_getaddrinfo(ex->h->dns, ex->pool->to_host, portstr, &hints, h1up_dns_cb, ex);
    ex->resolving_sync = false;
    if (ex->sync_done) {
        h1up_dns_result(ex, ex->sync_err, ex->sync_ai);
        return;
    }
    if (!req) {
        h1up_dns_result(ex, EVUTIL_EAI_FAIL, NULL);
        return;
    }
    ex->dnsreq = req;
}

/* With a slot: a pooled connection if one is fresh, else a new one. */
static void h1up_begin_with_slot(struct h1up_exchange *ex)
{
    struct h1up_pool *pool = ex->pool;
    void *expired[H1POOL_MAX_IDLE];
    size_t nexp = 0;
    struct h1up_conn *c = h1pool_take(&pool->book, util_now_ms(), expired, H1POOL_MAX_IDLE, &nexp);

    for (size_t i = 0; i < nexp; i++) {
        struct h1up_conn *old = expired[i];
        old->ex = NULL;
        h1up_conn_free(old);
    }
    if (!c) {
        h1up_connect_fresh(ex); /* (re)arms the connect timer */
        return;
    }
    evtimer_del(ex->connect_timer); /* armed while it waited for the slot */
    c->ex = ex;
    ex->conn = c;
    h1up_send_head(ex);
}

/* First step on the loop: take a slot, or queue for one (bounded by connect_timeout). */
static void h1up_begin(struct h1up_exchange *ex)
{
    switch (h1pool_acquire(&ex->pool->book, &ex->wait)) {
    case H1POOL_GRANTED:
        ex->has_slot = true;
        h1up_begin_with_slot(ex);
        return;
    case H1POOL_QUEUED:
        ex->waiting = true;
        if (ex->connect_timeout_ms > 0) {
            struct timeval tv = {.tv_sec = ex->connect_timeout_ms / 1000,
                                 .tv_usec = (ex->connect_timeout_ms % 1000) * 1000};
            evtimer_add(ex->connect_timer, &tv);
        }
        return;
    case H1POOL_REFUSED:
    default:
        h1up_fail(ex, UPSTREAM_ERR_CONNECT,
                  "could not connect to %s:%d: %d requests already wait for one of its %d "
                  "connections",
                  ex->pool->host, ex->pool->port, H1POOL_MAX_WAITING, H1POOL_MAX_ACTIVE);
        return;
    }
}

static void h1up_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct h1up_exchange *ex = arg;

    (void)fd;
    (void)what;
    h1up_fail(ex, UPSTREAM_ERR_TIMEOUT, "%s:%d did not answer within %lld ms", ex->pool->host,
              ex->pool->port, (long long)ex->timeout_ms);
}

static void h1up_connect_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct h1up_exchange *ex = arg;

    (void)fd;
    (void)what;
    if (ex->waiting) {
        if (ex->has_slot)
            return; /* a slot came just in time: its deferred step (re)arms or stops the timer */
        h1up_fail(ex, UPSTREAM_ERR_TIMEOUT,
                  "no connection to %s:%d became free within %lld ms (all %d in use)",
                  ex->pool->host, ex->pool->port, (long long)ex->connect_timeout_ms,
                  H1POOL_MAX_ACTIVE);
        return;
    }
    if (ex->dnsreq) {
        /* the resolver never answered (no reachable name server): a DNS failure, like libcurl's */
        h1up_fail(ex, UPSTREAM_ERR_DNS, "could not resolve host %s (no DNS answer within %lld ms)",
                  ex->pool->to_host, (long long)ex->connect_timeout_ms);
        return;
    }
    h1up_fail(ex, UPSTREAM_ERR_TIMEOUT, "connecting to %s:%d timed out after %lld ms",
              ex->pool->host, ex->pool->port, (long long)ex->connect_timeout_ms);
}

static void h1up_deferred_cb(evutil_socket_t fd, short what, void *arg)
{
    struct h1up_exchange *ex = arg;

    (void)fd;
    (void)what;
    if (ex->cancelled) {
        h1up_destroy(ex);
        return;
    }
    if (!ex->started) {
        ex->started = true;
        h1up_begin(ex);
        return;
    }
    if (ex->waiting) {
        if (!ex->has_slot)
            return;          /* a resume while it waits: nothing flows yet */
        ex->waiting = false; /* a slot was passed on to it (h1up_slot_release) */
        h1up_begin_with_slot(ex);
        return;
    }
    if (ex->want_resume_req) {
        ex->want_resume_req = false;
        if (ex->body_blocked) {
            ex->body_blocked = false;
            if (h1up_send_more(ex) == H1UP_GONE)
                return;
            if (ex->cancelled) {
                h1up_destroy(ex);
                return;
            }
        }
    }
    if (ex->want_resume_resp) {
        ex->want_resume_resp = false;
        if (ex->paused) {
            ex->paused = false;
            if (ex->conn && !ex->eof)
                h1up_conn_reading(ex->conn, true);
            if (h1up_process(ex) < 0)
                return;
            if (ex->cancelled) {
                h1up_destroy(ex);
                return;
            }
            /* bytes OpenSSL already holds never make the socket readable: read them now */
            if (!ex->paused && ex->conn && !ex->eof &&
                (SSL_has_pending(ex->conn->ssl) || ex->conn->closed))
                event_active(ex->conn->rev, EV_READ, 1);
        }
    }
}

/* ---- public API ---- */

struct h1up *h1up_new(struct event_base *base, struct evdns_base *dns)
{
    struct h1up *h;

    if (!dns)
        return NULL;
    h = xcalloc(1, sizeof(*h));
    h->base = base;
    h->dns = dns;
    h->sweep = evtimer_new(base, h1up_sweep_cb, h);
    if (!h->sweep) {
        free(h);
        return NULL;
    }
    return h;
}

void h1up_free(struct h1up *h)
{
    if (!h)
        return;
    while (h->exchanges) {
        h->exchanges->finished = true;
        h1up_destroy(h->exchanges);
    }
    while (h->pools) {
        struct h1up_pool *p = h->pools;
        h->pools = p->next;
        h1up_pool_free(p);
    }
    event_free(h->sweep);
    free(h);
}

static bool h1up_is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/*
 * "https://host[:port]/target": host (brackets kept for IPv6) into host,
 * the port, and the target (at least "/"). False when it is not that shape.
 */
static bool h1up_parse_url(const char *url, char *host, size_t cap, int *port, const char **target)
{
    const char *a, *end, *colon = NULL;
    size_t hlen;

    if (strncmp(url, "https://", 8) != 0)
        return false;
    a = url + 8;
    end = a + strcspn(a, "/?#");
    if (*a == '[') {
        const char *rb = memchr(a, ']', (size_t)(end - a));
        if (!rb)
            return false;
        if (rb + 1 < end) {
            if (rb[1] != ':')
                return false;
            colon = rb + 1;
        }
    } else {
        colon = memchr(a, ':', (size_t)(end - a));
    }
    hlen = (size_t)((colon ? colon : end) - a);
    if (hlen == 0 || hlen >= cap || memchr(a, '@', (size_t)(end - a)))
        return false;
    memcpy(host, a, hlen);
    host[hlen] = '\0';
    *port = 443;
    if (colon) {
        char *e = NULL;
        long p = strtol(colon + 1, &e, 10);
        if (e != end || p <= 0 || p > 65535)
            return false;
        *port = (int)p;
    }
    *target = end; /* "", "/..." or "?..." */
    return *end != '#';
}

static void h1up_head_add(char **buf, size_t *len, size_t cap, const void *p, size_t n)
{
    if (*len + n > cap)
        return; /* sized beforehand: never reached */
    memcpy(*buf + *len, p, n);
    *len += n;
}

/*
 * The request head: request line, Host (the URL's authority, the default
 * port left out as libcurl does), the block's lines minus those the engine
 * owns, then the framing libcurl would add. Consumes block (wiped).
 */
static void h1up_render_head(struct h1up_exchange *ex, const char *host, int port,
                             const char *target, struct upstream_hblock *block)
{
    size_t cap = block->len + strlen(target) + strlen(host) + H1UP_HEAD_SLACK;
    char *buf = xmalloc(cap), line[64];
    size_t len = 0, i = 0;
    int k;

    h1up_head_add(&buf, &len, cap, ex->method, strlen(ex->method));
    h1up_head_add(&buf, &len, cap, " ", 1);
    if (target[0] != '/')
        h1up_head_add(&buf, &len, cap, "/", 1); /* "https://host?q" asks for "/?q" */
    h1up_head_add(&buf, &len, cap, target, strlen(target));
    h1up_head_add(&buf, &len, cap, " HTTP/1.1\r\nHost: ", 17);
    h1up_head_add(&buf, &len, cap, host, strlen(host));
    if (port != 443) {
        k = snprintf(line, sizeof(line), ":%d", port);
        h1up_head_add(&buf, &len, cap, line, (size_t)k);
    }
    h1up_head_add(&buf, &len, cap, "\r\n", 2);
    while (i < block->len) {
        const char *l = block->buf + i, *eol = memchr(l, '\r', block->len - i), *colon;
        size_t n = eol ? (size_t)(eol - l) : block->len - i;
        i += n + 2;
        colon = memchr(l, ':', n);
        if (!colon || colon == l || upstream_header_owned(l, (size_t)(colon - l)))
            continue;
        while (n > 0 && (l[n - 1] == ' ' || l[n - 1] == '\t'))
            n--; /* an empty value goes out as "Name:" */
        h1up_head_add(&buf, &len, cap, l, n);
        h1up_head_add(&buf, &len, cap, "\r\n", 2);
    }
    if (ex->body_len > 0) {
        k = snprintf(line, sizeof(line), "Content-Length: %lld\r\n", (long long)ex->body_len);
        h1up_head_add(&buf, &len, cap, line, (size_t)k);
    } else if (ex->body_len < 0) {
        h1up_head_add(&buf, &len, cap, "Transfer-Encoding: chunked\r\n", 28);
    } else if (strcmp(ex->method, "POST") == 0 || strcmp(ex->method, "PUT") == 0 ||
               strcmp(ex->method, "PATCH") == 0) {
        h1up_head_add(&buf, &len, cap, "Content-Length: 0\r\n", 19);
    }
    h1up_head_add(&buf, &len, cap, "\r\n", 2);
    upstream_hblock_wipe(block);
    ex->head = buf;
    ex->head_len = len;
}

/*
 * Borrows h, req (except req->block, consumed even on failure), cb (copied)
 * and arg. The caller owns the exchange until on_done returns or h1up_cancel.
 */
struct h1up_exchange *h1up_start(struct h1up *h, const struct upstream_request *req,
                                 const struct upstream_callbacks *cb, void *arg)
{
    const struct config *cfg = req->cfg;
    struct upstream_hblock block = req->block;
    struct h1up_exchange *ex;
    struct h1up_pool *pool;
    char host[H1UP_MAX_HOST + 3], bare[H1UP_MAX_HOST + 3], to_host[H1UP_MAX_HOST + 1];
    const char *target = NULL;
    int port = 0, to_port = 0;
    size_t mlen = req->method ? strlen(req->method) : 0, hlen;

    if (mlen == 0 || mlen > H1UP_MAX_METHOD || req->headers || !req->url ||
        !h1up_parse_url(req->url, host, sizeof(host), &port, &target))
        goto fail;
    for (size_t i = 0; i < mlen; i++) {
        if (!h1up_is_tchar((unsigned char)req->method[i]))
            goto fail;
    }
    /* the name verified and sent as SNI has no brackets */
    hlen = strlen(host);
    if (host[0] == '[')
        snprintf(bare, sizeof(bare), "%.*s", (int)(hlen - 2), host + 1);
    else
        snprintf(bare, sizeof(bare), "%s", host);
    if (tunnel_map_connect_to(cfg, host, port, to_host, sizeof(to_host), &to_port) < 0)
        goto fail;
    pool = h1up_pool_get(h, bare, port, to_host, to_port, cfg ? cfg->upstream.ca_file : NULL);
    if (!pool)
        goto fail;

    ex = xcalloc(1, sizeof(*ex));
    ex->h = h;
    ex->fd = -1;
    ex->pool = pool;
    memcpy(ex->method, req->method, mlen + 1);
    ex->head_req = strcmp(ex->method, "HEAD") == 0;
    ex->body_len = ex->head_req ? 0 : req->body_len;
    ex->body_done = ex->body_len == 0;
    ex->cb = *cb;
    ex->arg = arg;
    ex->replay_ok = true;
    ex->start_ms = util_now_ms();
    ex->connect_timeout_ms = cfg ? cfg->upstream.connect_timeout_ms : 0;
    ex->timeout_ms = cfg ? cfg->upstream.timeout_ms : 0;
    http1_resp_init(&ex->resp, ex->head_req);
    h1up_render_head(ex, host, port, target, &block);
    ex->next = h->exchanges;
    if (h->exchanges)
        h->exchanges->prev = ex;
    h->exchanges = ex;
    ex->defer = event_new(h->base, -1, 0, h1up_deferred_cb, ex);
    ex->timer = evtimer_new(h->base, h1up_timeout_cb, ex);
    ex->connect_timer = evtimer_new(h->base, h1up_connect_timeout_cb, ex);
    if (!ex->defer || !ex->timer || !ex->connect_timer) {
        ex->finished = true;
        h1up_destroy(ex);
        return NULL;
    }
    if (ex->timeout_ms > 0) {
        struct timeval tv = {.tv_sec = ex->timeout_ms / 1000,
                             .tv_usec = (ex->timeout_ms % 1000) * 1000};
        evtimer_add(ex->timer, &tv);
    }
    event_active(ex->defer, EV_TIMEOUT, 1);
    return ex;
fail:
    upstream_hblock_wipe(&block);
    return NULL;
}

void h1up_resume_request(struct h1up_exchange *ex)
{
    if (!ex || ex->cancelled || ex->finished)
        return;
    ex->want_resume_req = true;
    event_active(ex->defer, EV_TIMEOUT, 1);
}

void h1up_resume_response(struct h1up_exchange *ex)
{
    if (!ex || ex->cancelled || ex->finished)
        return;
    ex->want_resume_resp = true;
    event_active(ex->defer, EV_TIMEOUT, 1);
}

void h1up_cancel(struct h1up_exchange *ex)
{
    if (!ex || ex->cancelled || ex->finished)
        return;
    ex->cancelled = true;
    ex->end_ms = util_now_ms();
    /* Quiet now: no callback of ours may run for it any more. */
    if (ex->conn)
        h1up_conn_quiet(ex->conn);
    h1up_setup_stop(ex);
    evtimer_del(ex->timer);
    event_active(ex->defer, EV_TIMEOUT, 1);
}

int64_t h1up_elapsed_ms(const struct h1up_exchange *ex)
{
    if (!ex)
        return -1;
    return (ex->end_ms ? ex->end_ms : util_now_ms()) - ex->start_ms;
}

unsigned h1up_take_new_connections(struct h1up *h)
{
    unsigned n;

    if (!h)
        return 0;
    n = h->new_connections;
    h->new_connections = 0;
    return n;
}
