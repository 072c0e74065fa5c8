/*
 * proxy: the request pipeline. parse -> site selection -> client identity
 * -> rate limit -> strip and inject -> forward -> log and count.
 *
 * Layer 4. The only place that decides whether a request gets a
 * credential: only a mapped site chosen by the authority the proxy dials
 * (absolute URI, CONNECT target, gateway Host or the site's own listener)
 * ever receives cred_header(). Never logs a header value, token or key;
 * audit paths are cut at '?'.
 */
#ifndef CREDPROXY_PROXY_H
#define CREDPROXY_PROXY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct conn;
struct conn_pipeline;
struct world;
struct event_base;
struct evdns_base;
struct upstream;
struct ratelimit;
struct metrics;
struct route_self;
struct config_site;
struct cred;
struct upstream_exchange;
struct h1up;
struct h1up_exchange;
struct ratelimit_wait;
struct rewrite;
struct curl_slist;
struct tunnel;

#define PROXY_MAX_URL (16 * 1024) /* HTTP1_MAX_HEAD_BYTES bounds it already; this is the buffer */

/*
 * What the pipeline needs from the loop it runs on, in one place (the
 * worker fills it). All borrowed; the pointers outlive every request.
 */
struct proxy_services {
    struct event_base *base;
    struct upstream *up;
    struct h1up *h1;        /* the lean HTTP/1.1 engine; NULL without a resolver */
    struct evdns_base *dns; /* NULL: blind tunnels are unavailable */
    struct ratelimit *rl;   /* thread-safe, shared by every loop */
    struct metrics *metrics;
    const struct route_self *self;
    /* A reference to the world now in force (world_unref it). */
    struct world *(*world_acquire)(void *arg);
    void *world_arg;
};

/* The table a connection calls (conn.h); its arg is the loop's struct proxy_services. */
extern const struct conn_pipeline proxy_pipeline;

/* One request in flight on a connection. Owned by the connection (conn->req). */
struct request {
    struct conn *c;
    const struct proxy_services *svc;
    struct world *world;            /* one reference, dropped in proxy_request_free */
    const struct config_site *site; /* in world->cfg; NULL for unmapped (tunnel-mode) hosts */
    const struct cred *cred;        /* in world; NULL when no credential is injected */
    const char *mode;               /* "forward", "gateway", "intercept", "tunnel" */
    char *client_id;                /* authenticated id, or NULL */
    char *client_label;             /* id, "uid:N" or the peer address: for logs */
    char *host;                     /* upstream host for logs and metrics */
    char *path;                     /* path without query, for the audit line */
    char *url;
    char *gateway_origin; /* "http://acme.localhost:8080" when rewriting links */
    int64_t start_ms;
    int64_t wait_ms;
    int64_t upstream_ms;
    struct upstream_exchange *ex; /* libcurl's exchange, or */
    struct h1up_exchange *hx;     /* the lean engine's (at most one of the two is set) */
    struct ratelimit_wait *rlwait;
    struct rewrite *rw;    /* body rewriter (gateway JSON), or NULL */
    struct tunnel *tunnel; /* blind tunnel (CONNECT to an unmapped host), or NULL */
    uint64_t bytes_in, bytes_out;
    int status;        /* status sent to the client (0 = none yet) */
    const char *error; /* proxy error code, or NULL */
    bool body_done;    /* the request body was read to its end */
    bool body_blocked; /* read_body answered WOULD_BLOCK: resume on input */
    bool resp_paused;  /* on_body answered PAUSE: resume on drain */
    bool head_sent;
    bool out_chunked;
    bool out_no_body;
    bool out_close_delimited;
    bool finished; /* response complete; only logging remains */
};

#endif
