/*
 * ratelimit_queue: the fair wait queue in front of each credential's token
 * bucket: one lane per client (or anonymous peer), served round-robin so
 * one busy agent cannot starve the others, with optional per-client
 * buckets inside the credential's budget.
 *
 * Layer 2, pure: no locking, no I/O; the caller (ratelimit.c) holds its
 * lock and passes the time in.
 */
#ifndef CREDPROXY_RATELIMIT_QUEUE_H
#define CREDPROXY_RATELIMIT_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "ratelimit.h"
#include "ratelimit_bucket.h"
#include "ratelimit_headers.h"

/* ---- the fair queue ---- */

struct rlq;
struct rlq_cred;
struct rlq_lane;

/* Embedded in the caller's wait object; the queue never allocates or frees it. */
struct rlq_waiter {
    struct rlq_waiter *prev, *next;
    struct rlq_lane *lane;     /* non-NULL while queued */
    struct rlq_cred *cred;     /* set when queued or granted */
    struct rlq_client *client; /* the client bucket charged, NULL when none */
    int64_t enqueued_ms;
    int64_t deadline_ms;
};

struct rlq_client;

/* What an upstream response did to a credential (so a shared store can repeat it). */
struct rlq_upstream_effect {
    int64_t pause_ms;  /* 0: no pause */
    double cap_tokens; /* < 0: no cap */
};

struct rlq *rlq_new(void);
/* Waiters still queued are unlinked, not freed (their owner frees them). NULL is a no-op. */
void rlq_free(struct rlq *q);
/*
 * Apply cfg (borrowed; nothing of it is kept): credentials and clients by
 * name, keeping levels; when_exhausted, max_wait, max_queue.
 */
void rlq_configure(struct rlq *q, const struct config *cfg, int64_t now_ms);

struct rlq_cred *rlq_cred_find(struct rlq *q, const char *name);
const char *rlq_cred_name(const struct rlq_cred *cr);
struct rl_bucket *rlq_cred_bucket(struct rlq_cred *cr);
/* The client's own bucket, or NULL when the client has no rate of its own. */
struct rlq_client *rlq_client_find(struct rlq *q, const char *name);
struct rl_bucket *rlq_client_bucket(struct rlq_client *cl);
const char *rlq_client_name(const struct rlq_client *cl);

/*
 * Local decision for one request. ADMIT: a credential token (and a client
 * token) was taken. REJECT: *retry_after_ms (>= 1) says when a token would be
 * free for this client. QUEUED: w (owned by the caller, must stay valid until
 * it leaves the queue) is at the tail of the client's lane. With w == NULL
 * nothing is queued: QUEUED then means "would queue" (a probe, so the caller
 * can allocate outside its lock and ask again).
 * force_queue: queue whenever there is room, without looking at the buckets
 * (the shared store decides later).
 */
enum ratelimit_result rlq_acquire(struct rlq *q, const char *cred, const char *client,
                                  int64_t now_ms, bool force_queue, struct rlq_waiter *w,
                                  int64_t *retry_after_ms);

/*
 * Serve the next waiter of cr round-robin across lanes, taking its tokens;
 * NULL when nobody can be served now. The returned waiter has left the queue.
 */
struct rlq_waiter *rlq_grant(struct rlq *q, struct rlq_cred *cr, int64_t now_ms);
/* Ms until rlq_grant(cr) could succeed; -1 when cr has no waiters. */
int64_t rlq_next_due_ms(struct rlq *q, struct rlq_cred *cr, int64_t now_ms);
/* Iterate credentials that have waiters: pass NULL to start. */
struct rlq_cred *rlq_next_waiting_cred(struct rlq *q, struct rlq_cred *prev);

/* Shared-store bookkeeping per credential (used by ratelimit.c only). */
struct rlq_store_state {
    bool inflight;            /* a store decision for this credential is outstanding */
    int64_t blocked_until_ms; /* the store said: no token before then */
};
struct rlq_store_state *rlq_cred_store(struct rlq_cred *cr);
struct rlq_lane *rlq_lane_find(struct rlq_cred *cr, const char *name);

/* Shared-store mode: the lane to ask about next (round-robin, skipping blocked lanes), or NULL. */
struct rlq_lane *rlq_pick_lane(struct rlq_cred *cr, int64_t now_ms);
struct rlq_waiter *rlq_lane_head(struct rlq_lane *lane);
struct rlq_client *rlq_lane_client(struct rlq_lane *lane);
const char *rlq_lane_name(const struct rlq_lane *lane);
void rlq_lane_block(struct rlq_lane *lane, int64_t until_ms);
/* Earliest blocked_until over cr's lanes that is later than now; -1 when none is blocked. */
int64_t rlq_lanes_unblock_ms(struct rlq_cred *cr, int64_t now_ms);
/* Pop the lane's head as served (round-robin advances past the lane). */
struct rlq_waiter *rlq_lane_pop(struct rlq *q, struct rlq_lane *lane);

/* Leave the queue (cancel or expiry). No-op when w is not queued. */
void rlq_remove(struct rlq *q, struct rlq_waiter *w);
/* A waiter whose deadline has passed (removed from the queue), or NULL. */
struct rlq_waiter *rlq_pop_expired(struct rlq *q, int64_t now_ms);
/* Honest wait for one more request of this credential and client: >= 1 ms. */
int64_t rlq_retry_after_ms(struct rlq *q, struct rlq_cred *cr, struct rlq_client *cl,
                           int64_t now_ms);

/*
 * An upstream response for credential `cred` (see ratelimit_upstream_response).
 * Returns what it did in *eff. Returns true when it changed the bucket.
 */
bool rlq_upstream(struct rlq *q, const char *cred, int status, const char *retry_after,
                  const char *reset, const char *remaining, const char *near_limit, int64_t now_ms,
                  int64_t wall_ms, struct rlq_upstream_effect *eff);

/* The same with every signal (Beta-Retry-After too); rlq_upstream wraps it. */
bool rlq_upstream_signals(struct rlq *q, const char *cred, int status, const struct rl_signals *sig,
                          int64_t now_ms, int64_t wall_ms, struct rlq_upstream_effect *eff);

size_t rlq_queued(const struct rlq *q);
enum config_when_exhausted rlq_mode(const struct rlq *q);
int64_t rlq_max_wait_ms(const struct rlq *q);

#endif
