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
#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define METRICS_MAX_SERIES 4096
/* Past METRICS_MAX_SERIES, folded client="other" series may add at most this many more;
 * past that every request lands in one catch-all series (all labels "other"). */
#define METRICS_MAX_OTHER_SERIES 512
/* Histogram series (one per site label); past this, site="other". */
#define METRICS_MAX_HIST_SITES 512
/* Longest label value kept (longer ones are cut); names are short, this bounds memory. */
#define METRICS_MAX_LABEL_LEN 256

/* credproxy_policy_denied_total label sets; past this they count as client="other". */
#define METRICS_MAX_POLICY_SERIES 512
#define METRICS_POLICY_LABEL_LEN 64

struct metrics;
struct evbuffer;
struct ratelimit_stats;

struct metrics *metrics_new(void);
void metrics_free(struct metrics *m);

/*
 * Label values that are not names: a request with no mapped site (denied,
 * blind-tunnelled, malformed) is counted under one site label, never under the
 * host the client asked for (that would let clients grow the label set); a
 * CONNECT is counted under its own credential label, not with an empty one.
 */
#define METRICS_SITE_UNMAPPED "(unmapped)"
#define METRICS_CRED_CONNECT "(connect)"

/* One finished proxied request (site = the mapped site's host, NULL or "" when none:
 * METRICS_SITE_UNMAPPED; cred/client may be NULL). */
void metrics_request(struct metrics *m, const char *site, const char *cred, const char *client,
                     int code, double seconds);
/* A new upstream TCP/TLS connection was opened (libcurl's num_connects). */
void metrics_upstream_connections(struct metrics *m, unsigned n);
void metrics_config_reload(struct metrics *m, bool ok);
/* A request refused with policy_denied (client id or "anonymous", class name). */
void metrics_policy_denied(struct metrics *m, const char *client, const char *cls);
/* Gauges filled at render time: active client connections. */
void metrics_client_connections(struct metrics *m, int delta);

/* Number of credproxy_requests_total label sets held now (for tests and self-checks). */
size_t metrics_series_count(struct metrics *m);

/*
 * Render everything in Prometheus text format into out. cfg (borrowed) gives
 * credential expiry; rl (may be NULL) gives the rate-limit counters.
 */
void metrics_render(struct metrics *m, const struct config *cfg, const struct ratelimit_stats *rl,
                    struct evbuffer *out);

#endif
