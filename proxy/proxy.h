/*
 * proxy: the request pipeline. parse -> site selection -> client identity
 * -> policy (class, scope, narrowing; policy.h) -> rate limit -> strip and
 * inject -> forward -> log and count.
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

#include "breaker.h"
#include "gwroute.h"
#include "log.h"

struct conn;
struct conn_pipeline;
struct world;
struct event_base;
struct evdns_base;
struct upstream;
struct ratelimit;
struct breaker;
struct tokens;
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
struct event;

/* Bytes of a gateway 401's body looked at for "scope does not match" (issue 10). */
#define PROXY_BREAKER_SCAN 256
#define PROXY_MAX_URL (16 * 1024) /* HTTP1_MAX_HEAD_BYTES bounds it already; this is the buffer */

/*
 * What the pipeline needs from the loop it runs on, in one place (the
 * worker fills it). All borrowed; the pointers outlive every request.
 */
struct policy_cache;

struct proxy_services {
    struct event_base *base;
    struct upstream *up;
    struct h1up *h1;                   /* the lean HTTP/1.1 engine; NULL without a resolver */
    struct policy_cache *policy_cache; /* this loop's id -> project/space lookups (policy.h) */
    struct evdns_base *dns;            /* NULL: blind tunnels are unavailable */
    struct ratelimit *rl;              /* thread-safe, shared by every loop */
    struct breaker *breaker;           /* thread-safe, shared: rejected credentials (issue 10) */
    struct tokens *tokens;             /* thread-safe: minted tokens and cloudIds (issue 10) */
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
    void (*admit_next)(struct request *r); /* what runs once the admit stage lets r go */
    struct rewrite *rw;                    /* body rewriter (gateway JSON), or NULL */
    struct tunnel *tunnel;                 /* blind tunnel (CONNECT to an unmapped host), or NULL */
    struct policy_stage *pol; /* the policy stage's state (lookups, held body), or NULL */
    /* A body read whole before forwarding (by the policy stage), sent instead of the stream. */
    bool body_held;
    char *held_body;
    size_t held_len, held_off;
    const char *op_class; /* the policy class of the request (static), for the audit line */
    uint64_t bytes_in, bytes_out;
    int status;        /* status sent to the client (0 = none yet) */
    const char *error; /* proxy error code, or NULL */
    bool body_done;    /* the request body was read to its end */
    bool body_blocked; /* read_body answered WOULD_BLOCK: resume on input */
    bool resp_paused;  /* on_body answered PAUSE: resume on drain */
    /* Upstream failure detail for the audit line, or "". */
    char reason[LOG_MAX_AUDIT_REASON];
    bool head_sent;
    bool out_chunked;
    bool out_no_body;
    bool out_close_delimited;
    bool finished; /* response complete; only logging remains */
    bool probe;    /* the breaker let this one through as its probe: report the outcome */
    /* Issue 10: waiting for a minted token or a cloudId; the API gateway route. */
    struct event *credwait_ev;
    int64_t credwait_ms_start;
    bool gw_agent_url; /* the agent itself named api.atlassian.com/ex/...: URL kept */
    char gw_prefix[GWROUTE_MAX_PREFIX + 1]; /* "/ex/jira/{cloudId}" via the gateway, else "" */
    /* A gateway 401 judged after the start of its body ("scope does not match" or not). */
    bool brk_pending;
    size_t brk_scanned;
    char brk_head[PROXY_BREAKER_SCAN + 1];
    char brk_said[BREAKER_MAX_SAID + 1];
};

#endif
