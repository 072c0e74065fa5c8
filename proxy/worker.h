/*
 * worker: one event-loop thread. Owns its event_base, its libcurl multi
 * (struct upstream), its listeners (evconnlistener on dups of the sockets
 * the server bound) and its client connections. Also the state every
 * worker shares with the control loop (struct server_shared).
 *
 * Layer 4. A worker's connections are touched only by its own thread; the
 * control thread talks to it only through worker_drain/worker_stop
 * (event_active / loopbreak, thread-safe under evthread_use_pthreads).
 */
#ifndef CREDPROXY_WORKER_H
#define CREDPROXY_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "conn.h"
#include "proxy.h"
#include "route.h"

struct event_base;
struct event;
struct evconnlistener;
struct upstream;
struct policy_cache;
struct h1up;
struct evdns_base;
struct ratelimit;
struct breaker;
struct tokens;
struct metrics;
struct world;
struct conn;
struct accept_backoff;

#define WORKER_MAX_LISTENERS (CONFIG_MAX_LISTEN + CONFIG_MAX_SITES)

/* What the workers share with the control loop. */
struct server_shared {
    pthread_mutex_t lock; /* guards world (the pointer only; worlds are refcounted) */
    struct world *world;
    struct ratelimit *rl;    /* thread-safe, survives reloads */
    struct breaker *breaker; /* thread-safe, survives reloads (state by credential name) */
    struct tokens *tokens;   /* thread-safe readers; fetches on the control loop */
    struct metrics *metrics; /* thread-safe atomics */
    struct listener_spec *listeners;
    size_t nlisteners;
    struct route_self self; /* our ports and Via marker, for loop refusal; set before workers */
    atomic_bool draining;
    atomic_uint accept_paused; /* listeners pausing after accept errors (accept_backoff.h) */
};

/* A reference to the world now in force (drop with world_unref). */
struct world *shared_world_acquire(struct server_shared *sh);
/* Install w (its reference moves to sh); the old world's reference is dropped. */
void shared_world_swap(struct server_shared *sh, struct world *w);

struct worker {
    struct server_shared *sh;
    unsigned index;
    struct event_base *base;
    struct upstream *up;
    struct policy_cache *policy_cache; /* id -> project/space lookups of this worker (policy.h) */
    struct h1up *h1;        /* the lean HTTP/1.1 upstream engine (NULL without a resolver) */
    struct evdns_base *dns; /* for blind tunnels; NULL when no resolver could be set up */
    pthread_t thread;
    bool started;
    struct evconnlistener *evl[WORKER_MAX_LISTENERS];
    struct worker_listener {
        struct worker *w;
        const struct listener_spec *ls;
        struct accept_backoff *ab; /* EMFILE & co.: pause instead of spinning */
    } wl[WORKER_MAX_LISTENERS];
    size_t nevl;
    struct conn *conns; /* doubly linked through conn->next/prev */
    size_t nconns;
    bool draining;
    bool destroying;           /* the loop has ended: connections are freed without lingering */
    struct conn_owner owner;   /* what this loop's connections see of it */
    struct proxy_services svc; /* what this loop's requests see of it */
    struct event *ev_drain;    /* activated by the control thread */
    struct event *done_ev;     /* control-loop event activated when this loop ends (borrowed) */
    atomic_bool finished;
};

/* Create the loop, the upstream and the listeners. 0, or -1 with *err. */
int worker_init(struct worker *w, struct server_shared *sh, unsigned index, struct event *done_ev,
                char **err);
/* Start the thread. 0 or -1. */
int worker_start(struct worker *w);
/* Thread-safe: stop accepting, close idle connections, end the loop when none remain. */
void worker_drain(struct worker *w);
/* Thread-safe: end the loop now (after shutdown_timeout). */
void worker_stop(struct worker *w);
/* Join the thread (if started), free every connection and the loop. */
void worker_destroy(struct worker *w);

#endif
