/*
 * admin: the small admin HTTP server (evhttp): /healthz, /readyz, /metrics.
 * Also `credproxy healthcheck`, its client side.
 *
 * Layer 3. Runs on the main (control) loop. Never serves a secret.
 */
#ifndef CREDPROXY_ADMIN_H
#define CREDPROXY_ADMIN_H

#include <stdbool.h>

#include "config.h"

struct event_base;
struct metrics;
struct ratelimit;
struct breaker;
struct admin;

/* What the admin server reads; every callback runs on the control loop. */
struct admin_source {
    void *arg;
    /* The config now in force (borrowed until the callback returns). */
    const struct config *(*current_config)(void *arg);
    /* True once every listener is bound and accepting, false while draining. */
    bool (*listening)(void *arg);
    struct metrics *metrics;
    struct ratelimit *ratelimit; /* may be NULL */
    struct breaker *breaker;     /* may be NULL: rejected credentials fail /readyz */
    /* May be NULL: a credential with no usable token now, and why (oauth, cloudId). */
    int (*unavailable_reason)(void *arg, char *buf, size_t cap);
    bool (*unavailable)(void *arg, const char *credential);
};

/* Bind addr and serve. NULL with *err on failure. src is copied. */
struct admin *admin_start(struct event_base *base, const struct config_listen *addr,
                          const struct admin_source *src, char **err);
void admin_free(struct admin *a);

/*
 * Readiness from cfg alone: 0 when every credential is loaded and
 * unexpired at `now`; otherwise -1 with a reason in buf.
 */
int admin_ready_reason(const struct config *cfg, int64_t now, char *buf, size_t cap);

/* `credproxy healthcheck`: GET http://ADMIN/readyz; 0 when 200, 1 otherwise (message on stderr). */
int admin_healthcheck(const struct config *cfg);

#endif
