/* metrics: placeholder; replaced by the real implementation. */
#include "metrics.h"

#include <stdlib.h>

#include "util.h"

struct metrics {
    int unused;
};

struct metrics *metrics_new(void)
{
    return xcalloc(1, sizeof(struct metrics));
}

void metrics_free(struct metrics *m)
{
    free(m);
}

void metrics_request(struct metrics *m, const char *site, const char *cred, const char *client,
                     int code, double seconds)
{
}

void metrics_upstream_connections(struct metrics *m, unsigned n)
{
}

void metrics_config_reload(struct metrics *m, bool ok)
{
}

void metrics_client_connections(struct metrics *m, int delta)
{
}

void metrics_render(struct metrics *m, const struct config *cfg,
                    const struct ratelimit_stats *rl, struct evbuffer *out)
{
}
