/*
 * ratelimit: one token bucket per credential (the Atlassian account whose
 * budget is shared), optional per-client buckets inside it, a bounded fair
 * wait queue, pauses from upstream 429/503, and an optional Redis store
 * that makes every replica draw on one budget.
 *
 * Shared by all worker loops and kept across reloads (buckets are keyed by
 * credential and client name). Thread-safe: see ratelimit.c for the lock
 * scheme. Callbacks always run on the event loop that asked.
 * Never sees or logs a secret.
 */
#ifndef CREDPROXY_RATELIMIT_H
#define CREDPROXY_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"

struct event_base;
struct ratelimit;
struct ratelimit_wait;

enum ratelimit_result {
    RATELIMIT_ADMIT = 0,    /* go ahead now */
    RATELIMIT_REJECT,       /* answer 429 now; *retry_after_ms says when a token frees */
    RATELIMIT_QUEUED,       /* wait: the callback will fire exactly once, unless cancelled */
};

/*
 * Fired on `base`'s loop thread when a queued request is admitted
 * (admitted = true) or given up (admitted = false: max_wait passed, or the
 * limiter is shutting down); retry_after_ms is meaningful when not admitted.
 * waited_ms is how long it waited. The wait handle is freed before the call.
 */
typedef void (*ratelimit_cb)(void *arg, bool admitted, int64_t retry_after_ms, int64_t waited_ms);

struct ratelimit_stats {
    uint64_t admitted;
    uint64_t queued_total;        /* requests that had to wait */
    uint64_t rejected;            /* 429s answered by the proxy */
    uint64_t waited_ms_total;
    uint64_t upstream_429;        /* upstream 429/503 signals seen */
    uint64_t redis_fallbacks;     /* decisions taken locally because Redis was down */
    int64_t queued_now;           /* gauge */
};

/* Created once by main; survives reloads. Returns NULL with *err on a bad store URL. */
struct ratelimit *ratelimit_new(const struct config *cfg, struct event_base *control_base,
                                char **err);
/* Apply a new config's credentials, clients and policy (reload). Keeps bucket levels by name. */
void ratelimit_configure(struct ratelimit *rl, const struct config *cfg);
/* Cancels every wait (their callbacks fire with admitted = false), frees. NULL is a no-op. */
void ratelimit_free(struct ratelimit *rl);

/*
 * Ask for one request's token for credential `cred` and client `client`
 * (NULL = anonymous). `now_ms` is util_now_ms() (injected for tests).
 * RATELIMIT_QUEUED sets *wait (cancel with ratelimit_cancel if the client goes away).
 */
enum ratelimit_result ratelimit_acquire(struct ratelimit *rl, struct event_base *base,
                                        const char *cred, const char *client, int64_t now_ms,
                                        int64_t *retry_after_ms, ratelimit_cb cb, void *arg,
                                        struct ratelimit_wait **wait);
/* Leave the queue without a callback. Must be called on the loop that queued. */
void ratelimit_cancel(struct ratelimit_wait *w);

/*
 * An upstream response for credential `cred`: status plus the raw values of
 * Retry-After, X-RateLimit-Reset, X-RateLimit-Remaining and
 * X-RateLimit-NearLimit (each NULL when absent). A 429/503 with a wait
 * pauses the credential's bucket until then.
 */
void ratelimit_upstream_response(struct ratelimit *rl, const char *cred, int status,
                                 const char *retry_after, const char *reset,
                                 const char *remaining, const char *near_limit, int64_t now_ms);

void ratelimit_get_stats(struct ratelimit *rl, struct ratelimit_stats *out);

#endif
