/* ratelimit: placeholder that admits everything; replaced by the real limiter. */
#include "ratelimit.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

struct ratelimit {
    struct ratelimit_stats stats;
};

struct ratelimit *ratelimit_new(const struct config *cfg, struct event_base *control_base,
                                char **err)
{
    (void)cfg;
    (void)control_base;
    (void)err;
    return xcalloc(1, sizeof(struct ratelimit));
}

void ratelimit_configure(struct ratelimit *rl, const struct config *cfg)
{
    (void)rl;
    (void)cfg;
}

void ratelimit_free(struct ratelimit *rl)
{
    free(rl);
}

enum ratelimit_result ratelimit_acquire(struct ratelimit *rl, struct event_base *base,
                                        const char *cred, const char *client, int64_t now_ms,
                                        int64_t *retry_after_ms, ratelimit_cb cb, void *arg,
                                        struct ratelimit_wait **wait)
{
    rl->stats.admitted++;
    return RATELIMIT_ADMIT;
}

void ratelimit_cancel(struct ratelimit_wait *w)
{
    (void)w;
}

void ratelimit_upstream_response(struct ratelimit *rl, const char *cred, int status,
                                 const char *retry_after, const char *reset,
                                 const char *remaining, const char *near_limit, int64_t now_ms)
{
}

void ratelimit_get_stats(struct ratelimit *rl, struct ratelimit_stats *out)
{
    *out = rl->stats;
}
