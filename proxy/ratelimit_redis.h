/*
 * ratelimit_redis: the shared store behind `rate_limit.store: redis://…`.
 * One asynchronous hiredis connection on the control loop; every decision is
 * one server-side Lua script (a token bucket per credential and per client,
 * plus a credential pause key with a PX expiry) that reads Redis's own TIME,
 * so replicas never disagree on the clock and never both spend the last
 * token. EVALSHA first, EVAL when Redis answers NOSCRIPT.
 *
 * Layer 3. Runs only on the event base it was created with; never blocks
 * it (connect, commands and replies are all asynchronous). When Redis is
 * unreachable it says so once through the state callback, reconnects with
 * backoff (RL_REDIS_BACKOFF_MIN_MS doubling to RL_REDIS_BACKOFF_MAX_MS) and
 * says once when it is back. Never sees a secret; logs host:port only.
 */
#ifndef CREDPROXY_RATELIMIT_REDIS_H
#define CREDPROXY_RATELIMIT_REDIS_H

#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct rl_redis;

#define RL_REDIS_BACKOFF_MIN_MS 100
#define RL_REDIS_BACKOFF_MAX_MS 5000
/* A command without a reply for this long means Redis is gone: drop the connection. */
#define RL_REDIS_REPLY_TIMEOUT_MS 1000
/* Commands in flight at most; more are refused (the caller decides locally). */
#define RL_REDIS_MAX_PENDING 1024
#define RL_REDIS_KEY_PREFIX "credproxy:rl:"

enum rl_redis_reason {
    RL_REDIS_OK = 0,     /* admitted */
    RL_REDIS_CRED = 1,   /* the credential's bucket is empty */
    RL_REDIS_CLIENT = 2, /* the client's bucket is empty */
    RL_REDIS_PAUSED = 3, /* the credential is paused by an upstream 429/503 */
};

/*
 * A decision: ok = false when the command failed (no connection, error
 * reply, timeout, shutdown); then the caller decides locally. Runs on the
 * store's loop with no lock of ours held.
 */
typedef void (*rl_redis_reply_cb)(void *arg, bool ok, bool admitted, int64_t wait_ms,
                                  enum rl_redis_reason reason);
/* Reachability changed (also the first failure at start). */
typedef void (*rl_redis_state_cb)(void *arg, bool up);

/* Starts connecting at once. host is copied. Never returns NULL. */
struct rl_redis *rl_redis_new(struct event_base *base, const char *host, int port, int db,
                              rl_redis_state_cb state_cb, void *arg);
/* Pending replies are called with ok = false. Must run on the store's loop. NULL is a no-op. */
void rl_redis_free(struct rl_redis *r);
bool rl_redis_up(const struct rl_redis *r);

/*
 * One request's tokens: the credential's (rate 0 = off: only the pause
 * counts) and, when client is not NULL, the client's. Returns 0 when sent
 * (cb fires exactly once), -1 when not connected (cb never fires).
 */
int rl_redis_acquire(struct rl_redis *r, const char *cred, double rate_per_sec, unsigned burst,
                     const char *client, double client_rate_per_sec, unsigned client_burst,
                     rl_redis_reply_cb cb, void *arg);
/* Share an upstream pause (pause_ms > 0) or a cap on saved tokens (cap >= 0). Fire and forget. */
void rl_redis_upstream(struct rl_redis *r, const char *cred, double rate_per_sec, unsigned burst,
                       int64_t pause_ms, double cap);

#endif
