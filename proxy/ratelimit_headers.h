/*
 * ratelimit_headers: reading Atlassian's rate-limit signals off an upstream
 * response. Retry-After, Beta-Retry-After, X-RateLimit-Reset (ISO 8601 with
 * or without seconds or zone, or epoch seconds), RateLimit-Reason, and the
 * soft X-RateLimit-Remaining / X-RateLimit-NearLimit.
 *
 * Layer 2, pure: time is passed in (wall-clock ms since the epoch), no
 * locks, no I/O, no logging. Never sees a secret (only rate-limit headers).
 */
#ifndef CREDPROXY_RATELIMIT_HEADERS_H
#define CREDPROXY_RATELIMIT_HEADERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest pause an upstream header can impose (a garbage far-future date is capped here). */
#define RL_MAX_PAUSE_MS (3600 * 1000)
/* Pause after an upstream 429 that names no usable wait (Atlassian's gateway sometimes does). */
#define RL_DEFAULT_UPSTREAM_PAUSE_MS 1000
/* Longest header value looked at; longer ones are garbage. */
#define RL_MAX_HEADER_VALUE 64
/* Longest RateLimit-Reason kept (a metric label and a log word). */
#define RL_MAX_REASON 48
/*
 * A bare number in X-RateLimit-Reset at or above this is an epoch time
 * (seconds; at or above RL_EPOCH_MS_MIN, milliseconds); below it, seconds
 * from now, the way Retry-After counts.
 */
#define RL_EPOCH_SECONDS_MIN INT64_C(1000000000)
#define RL_EPOCH_MS_MIN INT64_C(100000000000)

/* The raw values of one response's rate-limit headers; each NULL when absent. */
struct rl_signals {
    const char *retry_after;
    const char *beta_retry_after;
    const char *reset;
    const char *remaining;
    const char *near_limit;
    const char *reason;
};

/*
 * Each returns 0 and the delay from now in *delay_ms (>= 0, at most
 * RL_MAX_PAUSE_MS), or -1 when the value is not of the form.
 * Retry-After (and Beta-Retry-After): delta-seconds or an HTTP-date
 * (IMF-fixdate, RFC 850, asctime).
 * X-RateLimit-Reset: ISO 8601 "YYYY-MM-DDTHH:MM[:SS[.fff]][Z|+HH:MM|-HH:MM]"
 * (no zone means UTC, as Atlassian's samples are), or a bare number: epoch
 * seconds / epoch ms / seconds from now (see RL_EPOCH_SECONDS_MIN).
 */
int rl_parse_retry_after(const char *v, int64_t wall_ms, int64_t *delay_ms);
int rl_parse_reset(const char *v, int64_t wall_ms, int64_t *delay_ms);

/*
 * The pause a 429/503 asks for: Retry-After, else Beta-Retry-After, else
 * X-RateLimit-Reset, else (429 only) RL_DEFAULT_UPSTREAM_PAUSE_MS. Returns
 * the pause in ms, 0 when none applies (other statuses, a 503 naming no
 * wait). Garbage values are skipped, not fatal.
 */
int64_t rl_signals_pause_ms(const struct rl_signals *s, int status, int64_t wall_ms);

/*
 * RateLimit-Reason as a safe label: lowercase letters, digits, '-', '_' and
 * '.', at most RL_MAX_REASON bytes (longer is cut). Writes into out
 * (cap >= RL_MAX_REASON + 1) and returns true; false with out = "" when v is
 * NULL, empty or holds anything else.
 */
bool rl_parse_reason(const char *v, char *out, size_t cap);

#endif
