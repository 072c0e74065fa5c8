/*
 * ratelimit: see ratelimit.h. The bucket and queue math lives in
 * ratelimit_bucket.c (pure, clock passed in); the Redis store in
 * ratelimit_redis.c. This file is the threading glue.
 *
 * Lock scheme
 * - rl->mu protects rl->q (every bucket and the wait queue), rl->stats,
 *   rl->ops, rl->refs, rl->closing and the state of every wait. It is held
 *   only for bucket/queue arithmetic (lookups are linear over the configured
 *   credentials and the lanes of one credential) and for event_active() on a
 *   wait's event. It is never held across a user callback, a Redis command
 *   or a Redis reply, and no allocation of a wait happens under it.
 * - Lock order: rl->mu, then a libevent base lock (event_active/event_add
 *   take it). libevent never calls into us holding a base lock, so the order
 *   cannot invert.
 * - Threads: workers call acquire/cancel/upstream_response on their own
 *   loops. rl->pump_ev and everything Redis run on the control loop. A wait's
 *   event is created on the asking worker's base, so its callback runs on
 *   that loop; other threads touch it only with event_active() while holding
 *   rl->mu and only while the wait is still queued (they then mark it
 *   GRANTED or DENIED, which takes it out of the queue). The worker frees it
 *   only after it has left the queue, also decided under rl->mu, so nobody
 *   can event_active() a freed event.
 * - No busy loop: the control loop's single pump timer is armed for exactly
 *   when the next queued request could be served (next token, end of a
 *   pause, end of a client's block); each wait has its own max_wait timer.
 */
#define _GNU_SOURCE
#include "ratelimit.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "log.h"
#include "ratelimit_queue.h"
#include "ratelimit_redis.h"
#include "util.h"

/* Upstream signals waiting to be copied to the shared store (coalesced per credential). */
#define RL_MAX_PENDING_OPS 64

enum rl_wait_state { RL_WAIT_QUEUED = 0, RL_WAIT_GRANTED, RL_WAIT_DENIED };
enum rl_store_state { RL_STORE_NONE = 0, RL_STORE_CONNECTING, RL_STORE_UP, RL_STORE_DOWN };

struct ratelimit_wait {
    struct rlq_waiter node;
    struct ratelimit *rl;
    struct event *ev; /* on the asking worker's base: max_wait timer and wake-up */
    ratelimit_cb cb;
    void *arg;
    enum rl_wait_state state;
    bool local_grant; /* granted from the local buckets: a cancel refunds */
    bool delayed;     /* the store said "not yet" at least once */
    int64_t retry_after_ms;
};

struct rl_op {
    char *cred;
    int64_t pause_ms;
    double cap;
};

struct rl_ask {
    struct ratelimit *rl;
    char *cred;
    char *lane;
};

struct ratelimit {
    pthread_mutex_t mu;
    struct rlq *q;
    struct ratelimit_stats stats;
    unsigned refs; /* the owner + one per live wait */
    bool closing;
    struct event_base *control;
    struct event *pump_ev;  /* control loop: serve the queues; NULL without a control base */
    char *store;            /* as configured, NULL = local */
    struct rl_redis *redis; /* control loop only */
    _Atomic int store_state;
    struct rl_op ops[RL_MAX_PENDING_OPS];
    size_t nops;
};

static int64_t rl_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void rl_destroy(struct ratelimit *rl)
{
    rlq_free(rl->q);
    for (size_t i = 0; i < rl->nops; i++)
        free(rl->ops[i].cred);
    free(rl->store);
    pthread_mutex_destroy(&rl->mu);
    free(rl);
}

static void rl_kick(struct ratelimit *rl)
{
    if (rl->pump_ev)
        event_active(rl->pump_ev, EV_TIMEOUT, 1);
}

static struct ratelimit_wait *rl_wait_of(struct rlq_waiter *node)
{
    return (struct ratelimit_wait *)((char *)node - offsetof(struct ratelimit_wait, node));
}

/* Under rl->mu: decide a wait that has just left the queue and wake its loop. */
static void rl_deliver(struct rlq_waiter *node, enum rl_wait_state state, int64_t retry_ms)
{
    struct ratelimit_wait *w = rl_wait_of(node);
    w->state = state;
    w->retry_after_ms = retry_ms < 1 ? 1 : retry_ms;
    event_active(w->ev, EV_TIMEOUT, 1);
}

/*
 * Honest retry for a wait that gives up: the local buckets' estimate, or
 * while the shared store decides, the store's last word for the credential.
 */
static int64_t rl_retry_for(struct ratelimit *rl, struct rlq_cred *cr, struct rlq_client *cl,
                            int64_t now)
{
    int st = atomic_load(&rl->store_state);
    int64_t r = 1;
    if (st != RL_STORE_UP && st != RL_STORE_CONNECTING)
        r = rlq_retry_after_ms(rl->q, cr, cl, now);
    if (cr) {
        struct rlq_store_state *ss = rlq_cred_store(cr);
        if (ss->blocked_until_ms - now > r)
            r = ss->blocked_until_ms - now;
    }
    return r < 1 ? 1 : r;
}

static void rl_wait_fire(evutil_socket_t fd, short what, void *arg)
{
    struct ratelimit_wait *w = arg;
    struct ratelimit *rl = w->rl;
    int64_t now = util_now_ms();
    bool admitted, last;
    int64_t retry = 0, waited = now - w->node.enqueued_ms;

    (void)fd;
    (void)what;
    if (waited < 0)
        waited = 0;
    pthread_mutex_lock(&rl->mu);
    if (w->state == RL_WAIT_QUEUED) {
        /* max_wait passed before a token came. */
        struct rlq_cred *cr = w->node.cred;
        rlq_remove(rl->q, &w->node);
        w->state = RL_WAIT_DENIED;
        w->retry_after_ms = rl_retry_for(rl, cr, w->node.client, now);
    }
    admitted = w->state == RL_WAIT_GRANTED;
    if (admitted) {
        rl->stats.admitted++;
    } else {
        rl->stats.rejected++;
        retry = w->retry_after_ms;
    }
    rl->stats.waited_ms_total += (uint64_t)waited;
    rl->stats.queued_now = (int64_t)rlq_queued(rl->q);
    last = --rl->refs == 0;
    pthread_mutex_unlock(&rl->mu);

    ratelimit_cb cb = w->cb;
    void *cb_arg = w->arg;
    event_free(w->ev);
    free(w);
    if (last)
        rl_destroy(rl);
    cb(cb_arg, admitted, retry, waited);
}

/* ---- the pump (control loop) ---- */

static void rl_ask_done(void *arg, bool ok, bool admitted, int64_t wait_ms,
                        enum rl_redis_reason reason);
static void rl_deny_blocked(struct ratelimit *rl, struct rlq_cred *cr, struct rlq_lane *only_lane,
                            int64_t wait_ms, int64_t now);

static void rl_next_min(int64_t *next, int64_t d)
{
    if (d >= 0 && (*next < 0 || d < *next))
        *next = d;
}

/* Under rl->mu: serve cr from the local buckets (local store, or Redis down). */
static void rl_serve_local(struct ratelimit *rl, struct rlq_cred *cr, int64_t now, bool fallback,
                           int64_t *next)
{
    struct rlq_waiter *node;
    while ((node = rlq_grant(rl->q, cr, now)) != NULL) {
        rl_wait_of(node)->local_grant = true;
        if (fallback)
            rl->stats.redis_fallbacks++;
        rl_deliver(node, RL_WAIT_GRANTED, 0);
    }
    if (rlq_mode(rl->q) == CONFIG_RL_REJECT) {
        /* Queued while the store was up; it is not any more: answer now. */
        struct rlq_lane *lane;
        while ((lane = rlq_pick_lane(cr, INT64_MAX)) != NULL) {
            struct rlq_client *cl = rlq_lane_client(lane);
            node = rlq_lane_pop(rl->q, lane);
            rl_deliver(node, RL_WAIT_DENIED, rl_retry_for(rl, cr, cl, now));
        }
    }
    rl_next_min(next, rlq_next_due_ms(rl->q, cr, now));
}

static void rl_pump_cb(evutil_socket_t fd, short what, void *arg)
{
    struct ratelimit *rl = arg;
    int64_t now = util_now_ms();
    int64_t next = -1;
    struct rl_op ops[RL_MAX_PENDING_OPS];
    double op_rate[RL_MAX_PENDING_OPS];
    unsigned op_burst[RL_MAX_PENDING_OPS];
    size_t nops = 0, nasks = 0, cap_asks = 0;
    struct rl_ask **asks = NULL;
    struct {
        double rate, crate;
        unsigned burst, cburst;
        bool has_client;
    } *params = NULL;

    (void)fd;
    (void)what;
    pthread_mutex_lock(&rl->mu);
    if (rl->closing) {
        pthread_mutex_unlock(&rl->mu);
        return;
    }
    int st = atomic_load(&rl->store_state);
    if (st == RL_STORE_UP) {
        for (size_t i = 0; i < rl->nops; i++) {
            struct rlq_cred *cr = rlq_cred_find(rl->q, rl->ops[i].cred);
            ops[nops] = rl->ops[i];
            op_rate[nops] = cr ? rlq_cred_bucket(cr)->rate_per_ms * 1000.0 : 0;
            op_burst[nops] = cr ? (unsigned)rlq_cred_bucket(cr)->burst : 1;
            if (cr && rlq_cred_bucket(cr)->off)
                op_rate[nops] = 0;
            nops++;
        }
        rl->nops = 0;
        for (struct rlq_cred *cr = rlq_next_waiting_cred(rl->q, NULL); cr;
             cr = rlq_next_waiting_cred(rl->q, cr)) {
            struct rlq_store_state *ss = rlq_cred_store(cr);
            if (ss->inflight)
                continue;
            if (ss->blocked_until_ms > now) {
                if (rlq_mode(rl->q) == CONFIG_RL_REJECT)
                    rl_deny_blocked(rl, cr, NULL, ss->blocked_until_ms - now, now);
                else
                    rl_next_min(&next, ss->blocked_until_ms - now);
                continue;
            }
            struct rlq_lane *lane = rlq_pick_lane(cr, now);
            if (!lane) {
                int64_t u = rlq_lanes_unblock_ms(cr, now);
                if (u > 0)
                    rl_next_min(&next, u - now);
                continue;
            }
            if (nasks == cap_asks) {
                cap_asks = cap_asks ? cap_asks * 2 : 8;
                asks = xrealloc(asks, cap_asks * sizeof(*asks));
                params = xrealloc(params, cap_asks * sizeof(*params));
            }
            struct rl_ask *a = xcalloc(1, sizeof(*a));
            a->rl = rl;
            a->cred = xstrdup(rlq_cred_name(cr));
            a->lane = xstrdup(rlq_lane_name(lane));
            struct rl_bucket *b = rlq_cred_bucket(cr);
            struct rlq_client *cl = rlq_lane_client(lane);
            params[nasks].rate = b->off ? 0 : b->rate_per_ms * 1000.0;
            params[nasks].burst = (unsigned)b->burst;
            params[nasks].has_client = cl != NULL;
            params[nasks].crate = cl ? rlq_client_bucket(cl)->rate_per_ms * 1000.0 : 0;
            params[nasks].cburst = cl ? (unsigned)rlq_client_bucket(cl)->burst : 1;
            ss->inflight = true;
            asks[nasks++] = a;
        }
    } else if (st == RL_STORE_NONE || st == RL_STORE_DOWN) {
        for (struct rlq_cred *cr = rlq_next_waiting_cred(rl->q, NULL); cr;
             cr = rlq_next_waiting_cred(rl->q, cr))
            rl_serve_local(rl, cr, now, st == RL_STORE_DOWN, &next);
        for (size_t i = 0; i < rl->nops; i++)
            free(rl->ops[i].cred);
        rl->nops = 0; /* the local buckets already took these */
    }
    /* RL_STORE_CONNECTING: wait for the first verdict on Redis (the state callback kicks). */
    rl->stats.queued_now = (int64_t)rlq_queued(rl->q);
    pthread_mutex_unlock(&rl->mu);

    if (next >= 0) {
        struct timeval tv = {.tv_sec = next / 1000, .tv_usec = (next % 1000) * 1000};
        event_add(rl->pump_ev, &tv);
    }
    for (size_t i = 0; i < nops; i++) {
        rl_redis_upstream(rl->redis, ops[i].cred, op_rate[i], op_burst[i], ops[i].pause_ms,
                          ops[i].cap);
        free(ops[i].cred);
    }
    for (size_t i = 0; i < nasks; i++) {
        struct rl_ask *a = asks[i];
        /* The lane name is the client id ("" = anonymous): the client bucket is keyed by it. */
        if (rl_redis_acquire(rl->redis, a->cred, params[i].rate, params[i].burst,
                             params[i].has_client ? a->lane : NULL, params[i].crate,
                             params[i].cburst, rl_ask_done, a) < 0)
            rl_ask_done(a, false, false, 0, RL_REDIS_OK);
    }
    free(asks);
    free(params);
}

/*
 * Under rl->mu, reject mode with a shared store: answer the waiters the
 * store has just refused, with its wait. only_lane: a client's bucket said
 * no (that lane only); NULL: the credential is empty or paused (all lanes).
 */
static void rl_deny_blocked(struct ratelimit *rl, struct rlq_cred *cr, struct rlq_lane *only_lane,
                            int64_t wait_ms, int64_t now)
{
    struct rlq_lane *lane;
    while ((lane = only_lane ? only_lane : rlq_pick_lane(cr, INT64_MAX)) != NULL) {
        bool last = rlq_lane_head(lane)->next == NULL; /* the lane is freed with its last waiter */
        struct rlq_waiter *node = rlq_lane_pop(rl->q, lane);
        int64_t retry = rl_retry_for(rl, cr, node->client, now);
        rl_deliver(node, RL_WAIT_DENIED, retry > wait_ms ? retry : wait_ms);
        if (only_lane && last)
            break;
    }
}

/* A store decision for the head of one lane (control loop, no lock held on entry). */
static void rl_ask_done(void *arg, bool ok, bool admitted, int64_t wait_ms,
                        enum rl_redis_reason reason)
{
    struct rl_ask *a = arg;
    struct ratelimit *rl = a->rl;
    int64_t now = util_now_ms();
    bool closing;

    pthread_mutex_lock(&rl->mu);
    closing = rl->closing;
    struct rlq_cred *cr = closing ? NULL : rlq_cred_find(rl->q, a->cred);
    if (cr) {
        struct rlq_store_state *ss = rlq_cred_store(cr);
        struct rlq_lane *lane = rlq_lane_find(cr, a->lane);
        ss->inflight = false;
        if (!ok) {
            /* No answer from the store: this decision is local. */
            int64_t next = -1;
            rl_serve_local(rl, cr, now, true, &next);
            if (next > 0)
                ss->blocked_until_ms = now + next;
        } else if (admitted) {
            if (lane)
                rl_deliver(rlq_lane_pop(rl->q, lane), RL_WAIT_GRANTED, 0);
            /* else: the waiter left while we asked; the token is lost (conservative). */
        } else {
            if (wait_ms < 1)
                wait_ms = 1;
            if (reason == RL_REDIS_CLIENT) {
                if (lane)
                    rlq_lane_block(lane, now + wait_ms);
            } else {
                ss->blocked_until_ms = now + wait_ms;
            }
            if (rlq_mode(rl->q) == CONFIG_RL_REJECT) {
                /* Everyone held by the same empty bucket is answered now. */
                if (reason != RL_REDIS_CLIENT || lane)
                    rl_deny_blocked(rl, cr, reason == RL_REDIS_CLIENT ? lane : NULL, wait_ms, now);
            } else if (lane) {
                struct ratelimit_wait *w = rl_wait_of(rlq_lane_head(lane));
                if (!w->delayed) {
                    w->delayed = true;
                    rl->stats.queued_total++;
                }
            }
        }
    }
    pthread_mutex_unlock(&rl->mu);
    free(a->cred);
    free(a->lane);
    free(a);
    if (!closing)
        rl_kick(rl);
}

static void rl_store_state_cb(void *arg, bool up)
{
    struct ratelimit *rl = arg;
    atomic_store(&rl->store_state, up ? RL_STORE_UP : RL_STORE_DOWN);
    rl_kick(rl);
}

/* ---- public API ---- */

static int rl_parse_store(const struct config *cfg, char **host, int *port, int *db, char **err)
{
    const char *s = cfg->rate_limit.store;
    *host = NULL;
    if (cfg->rate_limit.redis_host && cfg->rate_limit.redis_port > 0) {
        *host = xstrdup(cfg->rate_limit.redis_host);
        *port = cfg->rate_limit.redis_port;
        *db = cfg->rate_limit.redis_db;
        return 0;
    }
    /* config.c normally splits the URL; accept the raw form too ("redis://HOST:PORT[/DB]"). */
    if (strncmp(s, "redis://", 8) != 0)
        goto bad;
    s += 8;
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s)
        goto bad;
    char portbuf[16];
    const char *slash = strchr(colon, '/');
    size_t plen = slash ? (size_t)(slash - colon - 1) : strlen(colon + 1);
    uint64_t p, d = 0;
    if (plen == 0 || plen >= sizeof(portbuf))
        goto bad;
    memcpy(portbuf, colon + 1, plen);
    portbuf[plen] = '\0';
    if (util_parse_u64(portbuf, 65535, &p) < 0 || p == 0)
        goto bad;
    if (slash && util_parse_u64(slash + 1, 1000, &d) < 0)
        goto bad;
    if (s[0] == '[' && colon[-1] == ']')
        *host = xstrndup(s + 1, (size_t)(colon - s - 2));
    else
        *host = xstrndup(s, (size_t)(colon - s));
    *port = (int)p;
    *db = (int)d;
    return 0;
bad:
    if (err)
        *err = xasprintf("rate_limit.store: expected local or redis://HOST:PORT[/DB]");
    return -1;
}

struct ratelimit *ratelimit_new(const struct config *cfg, struct event_base *control_base,
                                char **err)
{
    struct ratelimit *rl;
    char *host = NULL;
    int port = 0, db = 0;
    bool shared = cfg->rate_limit.store && strcmp(cfg->rate_limit.store, "local") != 0;

    if (err)
        *err = NULL;
    if (shared) {
        if (rl_parse_store(cfg, &host, &port, &db, err) < 0)
            return NULL;
        if (!control_base) {
            free(host);
            if (err)
                *err = xasprintf("rate_limit.store: a shared store needs the control loop");
            return NULL;
        }
    }
    rl = xcalloc(1, sizeof(*rl));
    pthread_mutex_init(&rl->mu, NULL);
    rl->q = rlq_new();
    rl->refs = 1;
    rl->control = control_base;
    rlq_configure(rl->q, cfg, util_now_ms());
    if (control_base)
        rl->pump_ev = event_new(control_base, -1, 0, rl_pump_cb, rl);
    rl->store = shared ? xstrdup(cfg->rate_limit.store) : NULL;
    atomic_store(&rl->store_state, shared ? RL_STORE_CONNECTING : RL_STORE_NONE);
    if (shared) {
        rl->redis = rl_redis_new(control_base, host, port, db, rl_store_state_cb, rl);
        free(host);
    }
    return rl;
}

void ratelimit_configure(struct ratelimit *rl, const struct config *cfg)
{
    const char *store = cfg->rate_limit.store;
    bool shared = store && strcmp(store, "local") != 0;
    if (shared != (rl->store != NULL) || (shared && strcmp(store, rl->store) != 0))
        log_warn("ratelimit: a changed rate_limit.store takes effect after a restart");
    pthread_mutex_lock(&rl->mu);
    rlq_configure(rl->q, cfg, util_now_ms());
    pthread_mutex_unlock(&rl->mu);
    rl_kick(rl); /* a faster rate may serve waiters sooner */
}

void ratelimit_free(struct ratelimit *rl)
{
    struct rlq_waiter *node;
    bool last;

    if (!rl)
        return;
    pthread_mutex_lock(&rl->mu);
    rl->closing = true;
    while ((node = rlq_pop_expired(rl->q, INT64_MAX)) != NULL)
        rl_deliver(node, RL_WAIT_DENIED, 1000);
    pthread_mutex_unlock(&rl->mu);

    rl_redis_free(rl->redis); /* pending asks return with ok = false and see `closing` */
    rl->redis = NULL;
    if (rl->pump_ev)
        event_free(rl->pump_ev);
    rl->pump_ev = NULL;

    pthread_mutex_lock(&rl->mu);
    last = --rl->refs == 0;
    pthread_mutex_unlock(&rl->mu);
    if (last)
        rl_destroy(rl);
}

enum ratelimit_result ratelimit_acquire(struct ratelimit *rl, struct event_base *base,
                                        const char *cred, const char *client, int64_t now_ms,
                                        int64_t *retry_after_ms, ratelimit_cb cb, void *arg,
                                        struct ratelimit_wait **wait)
{
    int64_t retry = 0, max_wait;
    int st = atomic_load(&rl->store_state);
    bool force = st == RL_STORE_CONNECTING || st == RL_STORE_UP;
    bool fallback = st == RL_STORE_DOWN;
    enum ratelimit_result r;

    if (wait)
        *wait = NULL;
    pthread_mutex_lock(&rl->mu);
    r = rl->closing ? RATELIMIT_REJECT
                    : rlq_acquire(rl->q, cred, client, now_ms, force, NULL, &retry);
    if (rl->closing)
        retry = 1000;
    if (r == RATELIMIT_QUEUED && (!rl->pump_ev || !base || !cb || !wait)) {
        /* No loop to wait on: the honest answer is "not now". */
        struct rlq_cred *cr = rlq_cred_find(rl->q, cred);
        retry = rl_retry_for(rl, cr, rlq_client_find(rl->q, client), now_ms);
        r = RATELIMIT_REJECT;
    }
    if (r != RATELIMIT_QUEUED) {
        if (r == RATELIMIT_ADMIT)
            rl->stats.admitted++;
        else
            rl->stats.rejected++;
        if (fallback)
            rl->stats.redis_fallbacks++;
    }
    max_wait = rlq_max_wait_ms(rl->q);
    pthread_mutex_unlock(&rl->mu);
    if (r != RATELIMIT_QUEUED) {
        *retry_after_ms = r == RATELIMIT_REJECT ? (retry < 1 ? 1 : retry) : 0;
        return r;
    }

    /* Would wait: build the wait outside the lock, then ask again. */
    struct ratelimit_wait *w = xcalloc(1, sizeof(*w));
    w->rl = rl;
    w->cb = cb;
    w->arg = arg;
    w->ev = event_new(base, -1, 0, rl_wait_fire, w);
    if (!w->ev) {
        free(w);
        *retry_after_ms = 1000;
        return RATELIMIT_REJECT;
    }
    struct timeval tv = {.tv_sec = max_wait / 1000, .tv_usec = (max_wait % 1000) * 1000};
    event_add(w->ev, &tv);

    pthread_mutex_lock(&rl->mu);
    r = rl->closing ? RATELIMIT_REJECT
                    : rlq_acquire(rl->q, cred, client, now_ms, force, &w->node, &retry);
    if (rl->closing)
        retry = 1000;
    if (r == RATELIMIT_QUEUED) {
        w->state = RL_WAIT_QUEUED;
        rl->refs++;
        if (!force)
            rl->stats.queued_total++;
        if (fallback)
            rl->stats.redis_fallbacks++;
        rl->stats.queued_now = (int64_t)rlq_queued(rl->q);
    } else if (r == RATELIMIT_ADMIT) {
        rl->stats.admitted++;
    } else {
        rl->stats.rejected++;
    }
    pthread_mutex_unlock(&rl->mu);

    if (r != RATELIMIT_QUEUED) {
        event_free(w->ev);
        free(w);
        *retry_after_ms = r == RATELIMIT_REJECT ? (retry < 1 ? 1 : retry) : 0;
        return r;
    }
    *retry_after_ms = 0;
    *wait = w;
    rl_kick(rl);
    return RATELIMIT_QUEUED;
}

void ratelimit_cancel(struct ratelimit_wait *w)
{
    struct ratelimit *rl;
    bool refunded = false, last;

    if (!w)
        return;
    rl = w->rl;
    pthread_mutex_lock(&rl->mu);
    if (w->state == RL_WAIT_QUEUED) {
        rlq_remove(rl->q, &w->node);
    } else if (w->state == RL_WAIT_GRANTED && w->local_grant && w->node.cred) {
        /* Granted but never used: give the tokens back. */
        rl_bucket_refund(rlq_cred_bucket(w->node.cred));
        if (w->node.client)
            rl_bucket_refund(rlq_client_bucket(w->node.client));
        refunded = true;
    }
    rl->stats.queued_now = (int64_t)rlq_queued(rl->q);
    last = --rl->refs == 0;
    bool kick = refunded && !rl->closing;
    pthread_mutex_unlock(&rl->mu);

    event_free(w->ev);
    free(w);
    if (kick)
        rl_kick(rl);
    if (last)
        rl_destroy(rl);
}

void ratelimit_upstream_response(struct ratelimit *rl, const char *cred, int status,
                                 const char *retry_after, const char *reset, const char *remaining,
                                 const char *near_limit, int64_t now_ms)
{
    struct rl_signals sig = {
        .retry_after = retry_after,
        .reset = reset,
        .remaining = remaining,
        .near_limit = near_limit,
    };
    ratelimit_upstream_signals(rl, cred, status, &sig, now_ms);
}

/* Under rl->mu: count one upstream 429 under its reason (bounded; then "other"). */
static void rl_count_reason(struct ratelimit *rl, const char *reason)
{
    struct ratelimit_stats *st = &rl->stats;
    size_t i;
    for (i = 0; i < st->nreasons; i++) {
        if (strcmp(st->by_reason[i].reason, reason) == 0)
            break;
    }
    if (i == st->nreasons) {
        if (st->nreasons < RATELIMIT_MAX_REASONS - 1) {
            st->nreasons++;
        } else {
            i = RATELIMIT_MAX_REASONS - 1; /* the last slot is the catch-all */
            reason = "other";
            st->nreasons = RATELIMIT_MAX_REASONS;
        }
        snprintf(st->by_reason[i].reason, sizeof(st->by_reason[i].reason), "%s", reason);
    }
    st->by_reason[i].n++;
}

void ratelimit_upstream_signals(struct ratelimit *rl, const char *cred, int status,
                                const struct rl_signals *sig, int64_t now_ms)
{
    struct rlq_upstream_effect eff;
    char reason[RL_MAX_REASON + 1];
    bool post = false;

    if (!rl || !cred || !sig)
        return;
    bool has_reason = rl_parse_reason(sig->reason, reason, sizeof(reason));
    int64_t wall = rl_wall_ms();
    pthread_mutex_lock(&rl->mu);
    bool changed = rlq_upstream_signals(rl->q, cred, status, sig, now_ms, wall, &eff);
    if (status == 429 || (status == 503 && eff.pause_ms > 0)) {
        rl->stats.upstream_429++;
        rl_count_reason(rl, has_reason ? reason : "none");
    }
    if (changed && rl->redis) {
        size_t i;
        for (i = 0; i < rl->nops; i++) {
            if (strcmp(rl->ops[i].cred, cred) == 0)
                break;
        }
        if (i == rl->nops && rl->nops < RL_MAX_PENDING_OPS) {
            rl->ops[i].cred = xstrdup(cred);
            rl->ops[i].pause_ms = 0;
            rl->ops[i].cap = -1;
            rl->nops++;
        }
        if (i < rl->nops) {
            if (eff.pause_ms > rl->ops[i].pause_ms)
                rl->ops[i].pause_ms = eff.pause_ms;
            if (eff.cap_tokens >= 0 && (rl->ops[i].cap < 0 || eff.cap_tokens < rl->ops[i].cap))
                rl->ops[i].cap = eff.cap_tokens;
            post = true;
        }
    }
    pthread_mutex_unlock(&rl->mu);
    if (post)
        rl_kick(rl);
    if (eff.pause_ms > 0)
        log_info("ratelimit: upstream %d for credential %s (reason: %s): pausing it for %lld ms",
                 status, cred, has_reason ? reason : "none given", (long long)eff.pause_ms);
}

void ratelimit_get_stats(struct ratelimit *rl, struct ratelimit_stats *out)
{
    pthread_mutex_lock(&rl->mu);
    *out = rl->stats;
    out->queued_now = (int64_t)rlq_queued(rl->q);
    pthread_mutex_unlock(&rl->mu);
}

int64_t ratelimit_retry_after_seconds(int64_t retry_after_ms)
{
    if (retry_after_ms <= 1000)
        return 1;
    return (retry_after_ms + 999) / 1000;
}
