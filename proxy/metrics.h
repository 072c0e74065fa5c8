/*
 * metrics: in-process counters and a latency histogram, rendered as
 * Prometheus text by the admin listener.
 *
 * Shared by every worker; updates are lock-free atomics on fixed series,
 * and a short mutex only when a new label set is first seen (bounded: past
 * METRICS_MAX_SERIES new label sets fold into client="other").
 * Labels carry names (site host, credential name, client id), never secrets.
 */
#ifndef CREDPROXY_METRICS_H
#define CREDPROXY_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"

#define METRICS_MAX_SERIES 4096

struct metrics;
struct evbuffer;
struct ratelimit_stats;

struct metrics *metrics_new(void);
void metrics_free(struct metrics *m);

/* One finished proxied request (site = upstream host or "" when none; cred/client may be NULL). */
void metrics_request(struct metrics *m, const char *site, const char *cred, const char *client,
                     int code, double seconds);
/* A new upstream TCP/TLS connection was opened (libcurl's num_connects). */
void metrics_upstream_connections(struct metrics *m, unsigned n);
void metrics_config_reload(struct metrics *m, bool ok);
/* Gauges filled at render time: active client connections. */
void metrics_client_connections(struct metrics *m, int delta);

/*
 * Render everything in Prometheus text format into out. cfg (borrowed) gives
 * credential expiry; rl (may be NULL) gives the rate-limit counters.
 */
void metrics_render(struct metrics *m, const struct config *cfg,
                    const struct ratelimit_stats *rl, struct evbuffer *out);

#endif
