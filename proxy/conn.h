/*
 * conn: one client connection. Persistent HTTP/1.1 on a bufferevent:
 * reads a request head (bounded time and size), hands it to the proxy
 * pipeline, streams the request body to the upstream on demand and the
 * response back with watermarks, answers pipelined requests strictly in
 * order (the next head is parsed only after the current response is done),
 * and tears down exactly once. After an intercepted CONNECT the same
 * machine runs over a TLS filter.
 *
 * Layer 3. A connection is only touched by its worker's thread and is
 * never freed while one of its own callbacks is on the stack (the free is
 * deferred to its own event). Never logs header values or bodies.
 */
#ifndef CREDPROXY_CONN_H
#define CREDPROXY_CONN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <event2/util.h>
#include <openssl/ssl.h>

#include "hostmap.h"
#include "http1.h"

#define CONN_HEAD_TIMEOUT_MS 10000 /* whole request head, from its first byte */
#define CONN_IDLE_TIMEOUT_MS 60000 /* keep-alive wait for the next request */
#define CONN_TLS_HANDSHAKE_TIMEOUT_MS 10000
#define CONN_INPUT_MAX (64 * 1024)    /* read high watermark: libevent stops reading above */
#define CONN_OUTPUT_HIGH (256 * 1024) /* above this, pause the upstream response */
#define CONN_OUTPUT_LOW (64 * 1024)   /* resume once drained below this */
/*
 * Largest single read(2) of a request body pulled by the exchange itself
 * (libevent 2.1 reads at most 4 KiB at a time); the input buffer then holds
 * at most this plus what the read watermark allows.
 */
#define CONN_BODY_READ_MAX (256 * 1024)
#define CONN_PEER_MAX 80
#define CONN_LINGER_MS 5000 /* at most this long to flush the last bytes on close */

struct bufferevent;
struct evbuffer;
struct evbuffer_cb_entry;
struct event;
struct event_base;
struct metrics;
struct request;
struct conn;

enum listener_kind { LISTENER_PROXY = 0, LISTENER_SITE };

/* One bound listening socket (bound once by the server; every worker accepts on it). */
struct listener_spec {
    char *text; /* "127.0.0.1:8080", "unix:/run/x.sock" (the actual port when 0 was asked) */
    enum listener_kind kind;
    bool is_unix;
    char *unix_path; /* unlinked at exit */
    char *site_host; /* LISTENER_SITE: the site this listener serves (looked up per request) */
    int site_port;
    int fd; /* owned by the server */
};

/*
 * The request pipeline as a connection sees it: a table installed by the
 * connection's owner (the worker installs proxy.c's), as upstream.c and
 * tunnel.c are reached through theirs. The connection never looks inside
 * a struct request.
 */
struct conn_pipeline {
    /* A request head was parsed into c->parser: serve it (sets c->req, answers or forwards). */
    void (*begin)(void *arg, struct conn *c);
    /* The parser refused the head: answer status/code, close after. */
    void (*refuse)(void *arg, struct conn *c, int status, const char *code, const char *msg);
    /* Input (body bytes or the client's end of stream) arrived while r is served. */
    void (*input)(struct request *r);
    /* The output drained below CONN_OUTPUT_LOW while r is served. */
    void (*drained)(struct request *r);
    /* The connection is torn down under r: cancel, log, free r. */
    void (*abort)(struct request *r);
    /* r ended with conn_request_done: free it. */
    void (*release)(struct request *r);
    /* How long r's body may stall (config body_timeout), read when the wait starts. */
    int64_t (*body_idle_ms)(struct request *r);
    /* r's body stalled for that long: cancel, answer or close (the pipeline decides). */
    void (*stalled)(struct request *r);
};

/* What a connection needs from the loop that owns it. All borrowed; same thread. */
struct conn_owner {
    struct event_base *base;
    struct metrics *metrics;
    const struct conn_pipeline *pipeline;
    void *pipeline_arg;     /* handed to begin/refuse: the pipeline's per-loop services */
    const bool *draining;   /* the owner stops: close after the current response */
    const bool *destroying; /* the loop has ended: free without lingering */
    void *arg;
    void (*added)(void *arg, struct conn *c);
    void (*removed)(void *arg, struct conn *c);
};

/*
 * One state at a time; the order matters: every state from CONN_CLOSING on
 * is teardown, and no callback acts on a connection in it.
 */
enum conn_state {
    CONN_HEAD = 0,      /* waiting for / reading a request head */
    CONN_REQUEST,       /* a request is being served (conn->req) */
    CONN_TLS_HANDSHAKE, /* after CONNECT: waiting for the client's TLS handshake */
    CONN_TUNNEL,        /* handed over to a blind tunnel: the conn only waits to be freed */
    CONN_CLOSING,       /* teardown started: the free is queued */
    CONN_LINGERING,     /* flushing the raw socket's last bytes, then the free */
};

/* "head", "request", ...: the state's name for logs. */
const char *conn_state_name(enum conn_state s);

struct conn {
    const struct conn_owner *own;
    const struct listener_spec *ls;
    struct bufferevent *bev;
    struct http1_parser parser;
    enum conn_state state;
    struct request *req;      /* the request being served, or NULL */
    struct event *timer;      /* head / idle / handshake timeout */
    struct event *kick;       /* deferred "look at the input again" */
    struct event *free_ev;    /* deferred free after teardown */
    char peer[CONN_PEER_MAX]; /* "127.0.0.1:5555", "[::1]:5555", "unix" */
    bool is_unix;
    bool have_uid;
    unsigned peer_uid;
    bool head_started; /* bytes of the current head have arrived */
    bool graceful; /* how to tear down: flush what is queued first (after a complete response) */
    struct bufferevent *raw_bev; /* under the TLS filter when intercepting (owned), else NULL */
    SSL *ssl;                    /* the filter's SSL (owned: the filter does not free it) */
    bool close_after;            /* close once the output is flushed */
    bool peer_eof;               /* the client half-closed after its request */
    bool sent_continue;
    bool body_waiting; /* the body idle timer (config body_timeout) is armed on c->timer */
    /* Interception: set after CONNECT to a mapped host. */
    bool intercept;
    struct hostmap_authority connect_auth;
    char *tunnel_client;      /* authenticated client id from the CONNECT, or NULL */
    bool tunnel_authed;       /* the CONNECT passed client auth */
    struct conn *next, *prev; /* the worker's list */
    /*
     * Direct writes of the output on a plain socket (conn.c, conn_setup_bev):
     * the deferred write, whether it is scheduled, the watch on the output.
     */
    struct event *flush_ev;
    bool flush_pending;
    struct evbuffer_cb_entry *out_watch;
};

/* A new connection on fd (consumed) accepted from ls. Never fails the process. */
void conn_accept(const struct conn_owner *own, const struct listener_spec *ls, evutil_socket_t fd,
                 const struct sockaddr *sa, int socklen);

/* Start teardown: cancel the request, close the socket, free later. Idempotent. */
void conn_close(struct conn *c, const char *why);

struct evbuffer *conn_output(struct conn *c);
struct evbuffer *conn_input(struct conn *c);

/* Pipeline -> conn: the current request is finished (its response fully queued). */
void conn_request_done(struct conn *c);

/*
 * The client must not keep the connection after the current response: it
 * asked to close, its body was not read to the end, it half-closed, a
 * close was requested, or the owner is draining. The one place this is
 * decided.
 */
bool conn_must_close(const struct conn *c);

/* Pipeline -> conn: close once the current response is flushed. */
void conn_close_after(struct conn *c);

/* Pipeline -> conn: send "100 Continue" if the client asked and it was not sent yet. */
void conn_send_continue(struct conn *c);

/*
 * Pipeline -> conn: decode up to cap request-body bytes into buf from the
 * input. Returns the count, 0 at the end of the body, UPSTREAM_WOULD_BLOCK
 * when no bytes are buffered yet, or -1 on a framing error (the caller
 * aborts the request and the connection).
 */
ssize_t conn_read_body(struct conn *c, char *buf, size_t cap, bool *done);

/* Pipeline -> conn: after "200 Connection Established": wrap in TLS as a server (ssl consumed). */
int conn_start_intercept(struct conn *c, SSL *ssl, const struct hostmap_authority *auth,
                         const char *client_id, bool authed);

/*
 * Pipeline -> conn: the client bufferevent now belongs to a blind tunnel
 * (callbacks cleared); the conn waits in CONN_TUNNEL with its request until
 * the tunnel ends. conn_reattach takes it back (tunnel setup failed).
 */
struct bufferevent *conn_detach_for_tunnel(struct conn *c);
void conn_reattach(struct conn *c, struct bufferevent *bev);

/* Worker drain: close when idle, otherwise after the current response. */
void conn_drain(struct conn *c);

/* Teardown without deferral (worker destroy after its loop ended). */
void conn_free_now(struct conn *c);

#endif
