/*
 * ratelimit_bucket: the token bucket, the pure base of the limiter. The
 * fair wait queue built on it is ratelimit_queue.h, the parsing of
 * Atlassian's rate-limit headers ratelimit_headers.h. Time is always passed
 * in, so every decision can be replayed exactly in a unit test.
 *
 * Layer 2. No locks, no event loop, no I/O, no logging; the caller
 * (ratelimit.c) serializes access. Never sees a secret.
 */
#ifndef CREDPROXY_RATELIMIT_BUCKET_H
#define CREDPROXY_RATELIMIT_BUCKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct rl_bucket {
    bool off;           /* rate_limit: off: never empty (upstream pauses still apply) */
    double rate_per_ms; /* refill */
    double burst;       /* capacity, >= 1 */
    double tokens;
    int64_t last_ms; /* tokens are valid as of this time (may lie in the future: paused) */
    int64_t paused_until_ms;
};

void rl_bucket_init(struct rl_bucket *b, bool off, double rate_per_sec, unsigned burst,
                    int64_t now_ms);
/* New rate/burst; keeps the current level (clamped to the new burst). */
void rl_bucket_set(struct rl_bucket *b, bool off, double rate_per_sec, unsigned burst,
                   int64_t now_ms);
/* Milliseconds until n tokens are available (0: now). Includes a pause. */
int64_t rl_bucket_wait_ms(struct rl_bucket *b, double n, int64_t now_ms);
/* Take one token if available now. */
bool rl_bucket_take(struct rl_bucket *b, int64_t now_ms);
/* Give one token back (a granted wait whose client left). */
void rl_bucket_refund(struct rl_bucket *b);
/*
 * Pause until until_ms: nothing is handed out before then and nothing
 * accrues during the pause, so the pause ends with at most one token rather
 * than a burst that would hit the upstream again at once.
 */
void rl_bucket_pause(struct rl_bucket *b, int64_t until_ms, int64_t now_ms);
/* Drop the level to at most max_tokens (upstream says it is near its limit). */
void rl_bucket_cap(struct rl_bucket *b, double max_tokens, int64_t now_ms);

#endif
