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
#include "ratelimit_headers.h"

struct event_base;
struct ratelimit;
struct ratelimit_wait;

enum ratelimit_result {
    RATELIMIT_ADMIT = 0, /* go ahead now */
    RATELIMIT_REJECT,    /* answer 429 now; *retry_after_ms says when a token frees */
    RATELIMIT_QUEUED,    /* wait: the callback will fire exactly once, unless cancelled */
};

/*
 * Fired on `base`'s loop thread when a queued request is admitted
 * (admitted = true) or given up (admitted = false: max_wait passed, or the
 * limiter is shutting down); retry_after_ms is meaningful when not admitted.
 * waited_ms is how long it waited. The wait handle is freed before the call.
 */
typedef void (*ratelimit_cb)(void *arg, bool admitted, int64_t retry_after_ms, int64_t waited_ms);

/* Distinct RateLimit-Reason labels counted; later ones count as "other". */
#define RATELIMIT_MAX_REASONS 16

struct ratelimit_reason_count {
    char reason[RL_MAX_REASON + 1]; /* "none" when the 429 named no reason */
    uint64_t n;
};

struct ratelimit_stats {
    uint64_t admitted;
    uint64_t queued_total; /* requests that had to wait */
    uint64_t rejected;     /* 429s answered by the proxy */
    uint64_t waited_ms_total;
    uint64_t upstream_429;    /* upstream 429/503 signals seen */
    uint64_t redis_fallbacks; /* decisions taken locally because Redis was down */
    int64_t queued_now;       /* gauge */
    struct ratelimit_reason_count by_reason[RATELIMIT_MAX_REASONS]; /* upstream_429 by reason */
    size_t nreasons;
};

/* Created once by main; survives reloads. Returns NULL with *err on a bad store URL. */
struct ratelimit *ratelimit_new(const struct config *cfg, struct event_base *control_base,
                                char **err);
/* Apply a new config's credentials, clients and policy (reload). Keeps bucket levels by name. */
void ratelimit_configure(struct ratelimit *rl, const struct config *cfg);
/*
 * Cancels every wait (their callbacks fire with admitted = false on their own
 * loops, which must still run or be drained later; the limiter's memory
 * lives until the last of them has run), frees. Call on the control loop's
 * thread. NULL is a no-op.
 */
void ratelimit_free(struct ratelimit *rl);

/*
 * Ask for one request's token for credential `cred` and client `client`
 * (NULL = anonymous; any other string is a fairness lane, and a configured
 * client id with a rate_limit also gets its own bucket). `now_ms` is
 * util_now_ms() (injected for tests). Must be called on `base`'s loop.
 * RATELIMIT_QUEUED sets *wait (cancel with ratelimit_cancel if the client
 * goes away). With a Redis store every decision is QUEUED (the answer comes
 * from Redis on the callback), in reject mode too: then the callback says
 * admitted = false at once when the shared budget is empty. Without a
 * control loop (control_base NULL) or without cb/wait, a request that would
 * wait is REJECTed instead. *retry_after_ms is >= 1 on REJECT; see
 * ratelimit_retry_after_seconds for the header value.
 */
enum ratelimit_result ratelimit_acquire(struct ratelimit *rl, struct event_base *base,
                                        const char *cred, const char *client, int64_t now_ms,
                                        int64_t *retry_after_ms, ratelimit_cb cb, void *arg,
                                        struct ratelimit_wait **wait);
/*
 * Leave the queue without a callback and free w. Must be called on the loop
 * that queued, before the callback has run. A wait already granted from the
 * local buckets (its callback pending) gives its tokens back.
 */
void ratelimit_cancel(struct ratelimit_wait *w);

/*
 * An upstream response for credential `cred`: status plus the raw values of
 * Retry-After, X-RateLimit-Reset, X-RateLimit-Remaining and
 * X-RateLimit-NearLimit (each NULL when absent). A 429/503 with a wait
 * pauses the credential's bucket until then (Retry-After: seconds or an
 * HTTP-date; else X-RateLimit-Reset: ISO 8601 with or without seconds; a
 * 429 with neither pauses RL_DEFAULT_UPSTREAM_PAUSE_MS; garbage values are
 * ignored; at most RL_MAX_PAUSE_MS). On other responses,
 * X-RateLimit-Remaining: 0 drops the saved burst to nothing and
 * X-RateLimit-NearLimit: true to at most one token: traffic continues at
 * the steady rate, never paused by these two alone. With a Redis store the
 * pause and the cap are shared with every replica. Any thread.
 */
void ratelimit_upstream_response(struct ratelimit *rl, const char *cred, int status,
                                 const char *retry_after, const char *reset, const char *remaining,
                                 const char *near_limit, int64_t now_ms);

/*
 * The same with every signal of the response (Beta-Retry-After and
 * RateLimit-Reason too; see ratelimit_headers.h for the order). The reason
 * is logged on the pause line and labels the upstream-429 count. Any thread.
 */
void ratelimit_upstream_signals(struct ratelimit *rl, const char *cred, int status,
                                const struct rl_signals *sig, int64_t now_ms);

void ratelimit_get_stats(struct ratelimit *rl, struct ratelimit_stats *out);

/* Retry-After header value for a retry_after_ms: whole seconds, rounded up, at least 1. */
int64_t ratelimit_retry_after_seconds(int64_t retry_after_ms);

#endif
