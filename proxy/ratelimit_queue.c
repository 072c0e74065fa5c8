/*
 * ratelimit_queue: see ratelimit_queue.h. Pure: the caller holds the lock
 * and passes the time.
 */
#include "ratelimit_queue.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* ---- the fair queue ---- */

struct rlq_client {
    struct rlq_client *next;
    char *name;
    bool limited; /* configured with a rate of its own (not off) */
    struct rl_bucket b;
};

struct rlq_lane {
    struct rlq_lane *prev, *next; /* ring within the credential */
    struct rlq_cred *cred;
    char *name;                /* client id, "" when anonymous */
    struct rlq_client *client; /* NULL: no client bucket */
    struct rlq_waiter *head, *tail;
    size_t n;
    int64_t blocked_until_ms; /* shared store: the client bucket said no until then */
};

struct rlq_cred {
    struct rlq_cred *next;
    char *name;
    struct rl_bucket b;
    struct rlq_lane *cursor; /* the lane served next; NULL when nobody waits */
    size_t nqueued;
    bool configured; /* named in the current config */
    struct rlq_store_state store;
};

struct rlq {
    struct rlq_cred *creds; /* entries live until rlq_free: lanes and waiters point at them */
    struct rlq_client *clients;
    size_t nqueued;
    size_t max_queue;
    int64_t max_wait_ms;
    enum config_when_exhausted mode;
};

struct rlq *rlq_new(void)
{
    struct rlq *q = xcalloc(1, sizeof(*q));
    q->max_queue = CONFIG_DEFAULT_MAX_QUEUE;
    q->max_wait_ms = CONFIG_DEFAULT_MAX_WAIT_MS;
    return q;
}

static void rlq_lane_free(struct rlq_lane *lane)
{
    free(lane->name);
    free(lane);
}

void rlq_free(struct rlq *q)
{
    if (!q)
        return;
    while (q->creds) {
        struct rlq_cred *cr = q->creds;
        q->creds = cr->next;
        while (cr->cursor) {
            struct rlq_lane *lane = cr->cursor;
            for (struct rlq_waiter *w = lane->head; w;) {
                struct rlq_waiter *nx = w->next;
                w->lane = NULL;
                w->prev = w->next = NULL;
                w = nx;
            }
            if (lane->next == lane) {
                cr->cursor = NULL;
            } else {
                lane->prev->next = lane->next;
                lane->next->prev = lane->prev;
                cr->cursor = lane->next;
            }
            rlq_lane_free(lane);
        }
        free(cr->name);
        free(cr);
    }
    while (q->clients) {
        struct rlq_client *cl = q->clients;
        q->clients = cl->next;
        free(cl->name);
        free(cl);
    }
    free(q);
}

static struct rlq_cred *rlq_cred_lookup(struct rlq *q, const char *name)
{
    for (struct rlq_cred *cr = q->creds; cr; cr = cr->next) {
        if (strcmp(cr->name, name) == 0)
            return cr;
    }
    return NULL;
}

static struct rlq_client *rlq_client_lookup(struct rlq *q, const char *name)
{
    for (struct rlq_client *cl = q->clients; cl; cl = cl->next) {
        if (strcmp(cl->name, name) == 0)
            return cl;
    }
    return NULL;
}

void rlq_configure(struct rlq *q, const struct config *cfg, int64_t now_ms)
{
    q->mode = cfg->rate_limit.when_exhausted;
    q->max_wait_ms = cfg->rate_limit.max_wait_ms > 0 ? cfg->rate_limit.max_wait_ms : 0;
    q->max_queue = cfg->rate_limit.max_queue;

    for (struct rlq_cred *cr = q->creds; cr; cr = cr->next)
        cr->configured = false;
    for (size_t i = 0; i < cfg->ncredentials; i++) {
        const struct config_credential *c = &cfg->credentials[i];
        struct rlq_cred *cr = rlq_cred_lookup(q, c->name);
        unsigned burst = c->burst ? c->burst : CONFIG_DEFAULT_BURST;
        if (!cr) {
            cr = xcalloc(1, sizeof(*cr));
            cr->name = xstrdup(c->name);
            rl_bucket_init(&cr->b, c->rate_off, c->rate_per_sec, burst, now_ms);
            cr->next = q->creds;
            q->creds = cr;
        } else {
            rl_bucket_set(&cr->b, c->rate_off, c->rate_per_sec, burst, now_ms);
        }
        cr->configured = true;
    }
    /* Credentials no longer configured keep their entry, unlimited, so waiters drain. */
    for (struct rlq_cred *cr = q->creds; cr; cr = cr->next) {
        if (!cr->configured)
            rl_bucket_set(&cr->b, true, 0, (unsigned)cr->b.burst, now_ms);
    }

    for (struct rlq_client *cl = q->clients; cl; cl = cl->next)
        cl->limited = false;
    for (size_t i = 0; i < cfg->nclients; i++) {
        const struct config_client *c = &cfg->clients[i];
        if (!c->has_rate || c->rate_off)
            continue;
        struct rlq_client *cl = rlq_client_lookup(q, c->id);
        unsigned burst = c->burst ? c->burst : CONFIG_DEFAULT_BURST;
        if (!cl) {
            cl = xcalloc(1, sizeof(*cl));
            cl->name = xstrdup(c->id);
            rl_bucket_init(&cl->b, false, c->rate_per_sec, burst, now_ms);
            cl->next = q->clients;
            q->clients = cl;
        } else {
            rl_bucket_set(&cl->b, false, c->rate_per_sec, burst, now_ms);
        }
        cl->limited = true;
    }
}

struct rlq_cred *rlq_cred_find(struct rlq *q, const char *name)
{
    return name ? rlq_cred_lookup(q, name) : NULL;
}

const char *rlq_cred_name(const struct rlq_cred *cr)
{
    return cr->name;
}

struct rl_bucket *rlq_cred_bucket(struct rlq_cred *cr)
{
    return &cr->b;
}

struct rlq_client *rlq_client_find(struct rlq *q, const char *name)
{
    if (!name)
        return NULL;
    struct rlq_client *cl = rlq_client_lookup(q, name);
    return cl && cl->limited ? cl : NULL;
}

struct rl_bucket *rlq_client_bucket(struct rlq_client *cl)
{
    return &cl->b;
}

const char *rlq_client_name(const struct rlq_client *cl)
{
    return cl->name;
}

static int64_t rlq_client_wait(struct rlq_client *cl, int64_t now_ms)
{
    return cl && cl->limited ? rl_bucket_wait_ms(&cl->b, 1.0, now_ms) : 0;
}

/* Someone already queued for cr could be served right now (the pump is about to run). */
static bool rlq_cred_has_servable(struct rlq_cred *cr, int64_t now_ms)
{
    struct rlq_lane *lane = cr->cursor;
    if (!lane || rl_bucket_wait_ms(&cr->b, 1.0, now_ms) > 0)
        return false;
    do {
        if (rlq_client_wait(lane->client, now_ms) == 0)
            return true;
        lane = lane->next;
    } while (lane != cr->cursor);
    return false;
}

static struct rlq_lane *rlq_lane_get(struct rlq_cred *cr, const char *name, struct rlq_client *cl)
{
    struct rlq_lane *lane = cr->cursor;
    if (lane) {
        do {
            if (strcmp(lane->name, name) == 0)
                return lane;
            lane = lane->next;
        } while (lane != cr->cursor);
    }
    lane = xcalloc(1, sizeof(*lane));
    lane->cred = cr;
    lane->name = xstrdup(name);
    lane->client = cl;
    if (!cr->cursor) {
        lane->next = lane->prev = lane;
        cr->cursor = lane;
    } else {
        /* Join at the end of the round: just before the lane served next. */
        lane->next = cr->cursor;
        lane->prev = cr->cursor->prev;
        lane->prev->next = lane;
        cr->cursor->prev = lane;
    }
    return lane;
}

/* Unlink a now-empty lane from its ring and free it. */
static void rlq_lane_drop(struct rlq_lane *lane)
{
    struct rlq_cred *cr = lane->cred;
    if (lane->next == lane) {
        cr->cursor = NULL;
    } else {
        lane->prev->next = lane->next;
        lane->next->prev = lane->prev;
        if (cr->cursor == lane)
            cr->cursor = lane->next;
    }
    rlq_lane_free(lane);
}

static void rlq_unlink(struct rlq *q, struct rlq_waiter *w)
{
    struct rlq_lane *lane = w->lane;
    if (w->prev)
        w->prev->next = w->next;
    else
        lane->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        lane->tail = w->prev;
    w->prev = w->next = NULL;
    w->lane = NULL;
    lane->n--;
    lane->cred->nqueued--;
    q->nqueued--;
    if (lane->n == 0)
        rlq_lane_drop(lane);
}

int64_t rlq_retry_after_ms(struct rlq *q, struct rlq_cred *cr, struct rlq_client *cl,
                           int64_t now_ms)
{
    (void)q;
    /* Everyone queued for this credential is served first. */
    double need = 1.0 + (cr ? (double)cr->nqueued : 0);
    int64_t w = cr ? rl_bucket_wait_ms(&cr->b, need, now_ms) : 0;
    int64_t wc = rlq_client_wait(cl, now_ms);
    if (wc > w)
        w = wc;
    return w < 1 ? 1 : w;
}

enum ratelimit_result rlq_acquire(struct rlq *q, const char *cred, const char *client,
                                  int64_t now_ms, bool force_queue, struct rlq_waiter *w,
                                  int64_t *retry_after_ms)
{
    struct rlq_cred *cr = rlq_cred_find(q, cred);
    struct rlq_client *cl = rlq_client_find(q, client);

    *retry_after_ms = 0;
    if (!cr)
        return RATELIMIT_ADMIT; /* not a rate-limited credential */
    if (!force_queue && !rlq_cred_has_servable(cr, now_ms)) {
        /* Check the client first: never burn a credential token for a client that must wait. */
        if (rlq_client_wait(cl, now_ms) == 0 && rl_bucket_wait_ms(&cr->b, 1.0, now_ms) == 0) {
            if (cl)
                rl_bucket_take(&cl->b, now_ms);
            rl_bucket_take(&cr->b, now_ms);
            return RATELIMIT_ADMIT;
        }
    }
    if ((q->mode == CONFIG_RL_REJECT && !force_queue) || q->nqueued >= q->max_queue) {
        *retry_after_ms = rlq_retry_after_ms(q, cr, cl, now_ms);
        return RATELIMIT_REJECT;
    }
    if (!w)
        return RATELIMIT_QUEUED;
    struct rlq_lane *lane = rlq_lane_get(cr, client ? client : "", cl);
    memset(w, 0, sizeof(*w));
    w->lane = lane;
    w->cred = cr;
    w->client = cl;
    w->enqueued_ms = now_ms;
    w->deadline_ms = now_ms + q->max_wait_ms;
    w->prev = lane->tail;
    if (lane->tail)
        lane->tail->next = w;
    else
        lane->head = w;
    lane->tail = w;
    lane->n++;
    cr->nqueued++;
    q->nqueued++;
    return RATELIMIT_QUEUED;
}

struct rlq_waiter *rlq_lane_pop(struct rlq *q, struct rlq_lane *lane)
{
    struct rlq_waiter *w = lane->head;
    struct rlq_cred *cr = lane->cred;
    if (!w)
        return NULL;
    cr->cursor = lane->next; /* round-robin: the next lane goes next */
    rlq_unlink(q, w);
    return w;
}

struct rlq_waiter *rlq_grant(struct rlq *q, struct rlq_cred *cr, int64_t now_ms)
{
    struct rlq_lane *lane = cr->cursor;
    if (!lane || rl_bucket_wait_ms(&cr->b, 1.0, now_ms) > 0)
        return NULL;
    do {
        if (rlq_client_wait(lane->client, now_ms) == 0) {
            if (lane->client)
                rl_bucket_take(&lane->client->b, now_ms);
            rl_bucket_take(&cr->b, now_ms);
            return rlq_lane_pop(q, lane);
        }
        lane = lane->next;
    } while (lane != cr->cursor);
    return NULL;
}

int64_t rlq_next_due_ms(struct rlq *q, struct rlq_cred *cr, int64_t now_ms)
{
    (void)q;
    struct rlq_lane *lane = cr->cursor;
    if (!lane)
        return -1;
    int64_t due = rl_bucket_wait_ms(&cr->b, 1.0, now_ms);
    int64_t best = -1;
    do {
        int64_t wc = rlq_client_wait(lane->client, now_ms);
        if (best < 0 || wc < best)
            best = wc;
        lane = lane->next;
    } while (lane != cr->cursor);
    return best > due ? best : due;
}

struct rlq_cred *rlq_next_waiting_cred(struct rlq *q, struct rlq_cred *prev)
{
    struct rlq_cred *cr = prev ? prev->next : q->creds;
    while (cr && !cr->cursor)
        cr = cr->next;
    return cr;
}

struct rlq_lane *rlq_pick_lane(struct rlq_cred *cr, int64_t now_ms)
{
    struct rlq_lane *lane = cr->cursor;
    if (!lane)
        return NULL;
    do {
        if (lane->blocked_until_ms <= now_ms)
            return lane;
        lane = lane->next;
    } while (lane != cr->cursor);
    return NULL;
}

struct rlq_store_state *rlq_cred_store(struct rlq_cred *cr)
{
    return &cr->store;
}

struct rlq_lane *rlq_lane_find(struct rlq_cred *cr, const char *name)
{
    struct rlq_lane *lane = cr->cursor;
    if (!lane)
        return NULL;
    do {
        if (strcmp(lane->name, name) == 0)
            return lane;
        lane = lane->next;
    } while (lane != cr->cursor);
    return NULL;
}

struct rlq_waiter *rlq_lane_head(struct rlq_lane *lane)
{
    return lane->head;
}

struct rlq_client *rlq_lane_client(struct rlq_lane *lane)
{
    return lane->client;
}

const char *rlq_lane_name(const struct rlq_lane *lane)
{
    return lane->name;
}

void rlq_lane_block(struct rlq_lane *lane, int64_t until_ms)
{
    lane->blocked_until_ms = until_ms;
}

int64_t rlq_lanes_unblock_ms(struct rlq_cred *cr, int64_t now_ms)
{
    struct rlq_lane *lane = cr->cursor;
    int64_t best = -1;
    if (!lane)
        return -1;
    do {
        if (lane->blocked_until_ms > now_ms && (best < 0 || lane->blocked_until_ms < best))
            best = lane->blocked_until_ms;
        lane = lane->next;
    } while (lane != cr->cursor);
    return best;
}

void rlq_remove(struct rlq *q, struct rlq_waiter *w)
{
    if (w && w->lane)
        rlq_unlink(q, w);
}

struct rlq_waiter *rlq_pop_expired(struct rlq *q, int64_t now_ms)
{
    for (struct rlq_cred *cr = q->creds; cr; cr = cr->next) {
        struct rlq_lane *lane = cr->cursor;
        if (!lane)
            continue;
        do {
            /* Each lane is FIFO with one max_wait, so its head expires first. */
            if (lane->head && lane->head->deadline_ms <= now_ms) {
                struct rlq_waiter *w = lane->head;
                rlq_unlink(q, w);
                return w;
            }
            lane = lane->next;
        } while (cr->cursor && lane != cr->cursor);
    }
    return NULL;
}

static bool rlq_truthy(const char *v)
{
    return v && (util_strcaseeq(v, "true") || strcmp(v, "1") == 0);
}

bool rlq_upstream(struct rlq *q, const char *cred, int status, const char *retry_after,
                  const char *reset, const char *remaining, const char *near_limit, int64_t now_ms,
                  int64_t wall_ms, struct rlq_upstream_effect *eff)
{
    struct rl_signals sig = {
        .retry_after = retry_after,
        .reset = reset,
        .remaining = remaining,
        .near_limit = near_limit,
    };
    return rlq_upstream_signals(q, cred, status, &sig, now_ms, wall_ms, eff);
}

bool rlq_upstream_signals(struct rlq *q, const char *cred, int status, const struct rl_signals *sig,
                          int64_t now_ms, int64_t wall_ms, struct rlq_upstream_effect *eff)
{
    struct rlq_cred *cr = rlq_cred_find(q, cred);
    const char *remaining = sig->remaining, *near_limit = sig->near_limit;

    eff->pause_ms = 0;
    eff->cap_tokens = -1;
    if (!cr)
        return false;
    if (status == 429 || status == 503) {
        int64_t delay = rl_signals_pause_ms(sig, status, wall_ms);
        if (delay > 0) {
            rl_bucket_pause(&cr->b, now_ms + delay, now_ms);
            eff->pause_ms = delay;
            return true;
        }
        return false;
    }
    /*
     * Soft signals on successful responses: the account is shared with
     * traffic we do not see, so when Atlassian says capacity is (nearly) gone
     * we give up our saved burst and continue at the steady rate only.
     * Remaining: 0 -> no saved tokens; NearLimit: true -> at most one.
     * Neither ever stops traffic on its own.
     */
    uint64_t rem;
    if (remaining && util_parse_u64(remaining, UINT64_MAX, &rem) == 0 && rem == 0) {
        eff->cap_tokens = 0;
    } else if (rlq_truthy(near_limit)) {
        eff->cap_tokens = 1;
    }
    if (eff->cap_tokens >= 0) {
        rl_bucket_cap(&cr->b, eff->cap_tokens, now_ms);
        return true;
    }
    return false;
}

size_t rlq_queued(const struct rlq *q)
{
    return q->nqueued;
}

enum config_when_exhausted rlq_mode(const struct rlq *q)
{
    return q->mode;
}

int64_t rlq_max_wait_ms(const struct rlq *q)
{
    return q->max_wait_ms;
}
