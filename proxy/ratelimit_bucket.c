/*
 * ratelimit_bucket: see ratelimit_bucket.h. Pure: the caller holds the lock
 * and passes the time.
 *
 * Tokens are doubles; comparisons allow RL_EPS so that 600 ms at 100/min is
 * exactly one token, and waits are rounded up to whole milliseconds.
 */
#include "ratelimit_bucket.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define RL_EPS 1e-9

/* ---- bucket ---- */

static void rl_bucket_refill(struct rl_bucket *b, int64_t now_ms)
{
    if (b->off || now_ms <= b->last_ms)
        return;
    b->tokens += (double)(now_ms - b->last_ms) * b->rate_per_ms;
    if (b->tokens > b->burst)
        b->tokens = b->burst;
    b->last_ms = now_ms;
}

void rl_bucket_set(struct rl_bucket *b, bool off, double rate_per_sec, unsigned burst,
                   int64_t now_ms)
{
    rl_bucket_refill(b, now_ms);
    b->off = off || !(rate_per_sec > 0);
    b->rate_per_ms = rate_per_sec > 0 ? rate_per_sec / 1000.0 : 0;
    b->burst = burst >= 1 ? (double)burst : 1.0;
    if (b->tokens > b->burst)
        b->tokens = b->burst;
    if (b->last_ms < now_ms && !b->off)
        b->last_ms = now_ms;
}

void rl_bucket_init(struct rl_bucket *b, bool off, double rate_per_sec, unsigned burst,
                    int64_t now_ms)
{
    memset(b, 0, sizeof(*b));
    b->last_ms = now_ms;
    rl_bucket_set(b, off, rate_per_sec, burst, now_ms);
    b->tokens = b->burst;
}

int64_t rl_bucket_wait_ms(struct rl_bucket *b, double n, int64_t now_ms)
{
    int64_t due = now_ms;
    if (b->paused_until_ms > due)
        due = b->paused_until_ms;
    if (b->off)
        return due - now_ms;
    rl_bucket_refill(b, now_ms);
    int64_t base = b->last_ms > now_ms ? b->last_ms : now_ms;
    if (b->tokens + RL_EPS < n) {
        double ms = (n - b->tokens) / b->rate_per_ms;
        int64_t w = (int64_t)ceil(ms - 1e-6);
        if (base + w > due)
            due = base + w;
    } else if (base > due) {
        due = base;
    }
    return due - now_ms;
}

bool rl_bucket_take(struct rl_bucket *b, int64_t now_ms)
{
    if (rl_bucket_wait_ms(b, 1.0, now_ms) > 0)
        return false;
    if (!b->off) {
        b->tokens -= 1.0;
        if (b->tokens < 0)
            b->tokens = 0;
    }
    return true;
}

void rl_bucket_refund(struct rl_bucket *b)
{
    if (b->off)
        return;
    b->tokens += 1.0;
    if (b->tokens > b->burst)
        b->tokens = b->burst;
}

void rl_bucket_pause(struct rl_bucket *b, int64_t until_ms, int64_t now_ms)
{
    if (until_ms <= now_ms)
        return;
    rl_bucket_refill(b, now_ms);
    if (until_ms > b->paused_until_ms)
        b->paused_until_ms = until_ms;
    if (!b->off) {
        if (b->tokens > 1.0)
            b->tokens = 1.0;
        if (until_ms > b->last_ms)
            b->last_ms = until_ms;
    }
}

void rl_bucket_cap(struct rl_bucket *b, double max_tokens, int64_t now_ms)
{
    rl_bucket_refill(b, now_ms);
    if (!b->off && b->tokens > max_tokens)
        b->tokens = max_tokens < 0 ? 0 : max_tokens;
}
