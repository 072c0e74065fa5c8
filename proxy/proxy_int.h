/*
 * proxy_int: what the pipeline's stage files share. Internal to them:
 * nothing outside proxy/proxy*.c includes it.
 *
 *   proxy.c          the request's life (new, answer, log, free), the stages
 *                    "route" and "identify", and the order of all stages
 *   proxy_policy.c   stage "policy": class, scope, id lookups, held bodies
 *   proxy_admit.c    stage "admit": the breaker, the credential being ready
 *                    (minted token, cloudId), the rate limit
 *   proxy_forward.c  stages "forward" and "respond": strip and inject, the
 *                    engine switch, the response back to the client
 *   proxy_connect.c  CONNECT, which leaves the pipeline after identify
 *
 * Each stage ends the request itself when it refuses (proxy_reply_*), or
 * hands it to the next stage by calling it; nothing returns to a caller
 * that would look at the request afterwards. Layer 4, like proxy.h: never
 * logs a header value, token or key.
 */
#ifndef CREDPROXY_PROXY_INT_H
#define CREDPROXY_PROXY_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "proxy.h"

struct conn;
struct config;
struct route;
struct upstream_header;
struct upstream_hblock;
struct policy_stage;

/* Retry-After and the other rate-limit values longer than this are ignored. */
#define PROXY_RL_VALUE_MAX 64

/* ---- proxy.c: the request's life and its answers */

const struct config *proxy_cfg(const struct request *r);
/* The first value of a request header by lower-case name, or NULL (*len 0). */
const char *proxy_header_value(const struct conn *c, const char *name, size_t *len);
/* The client's label for metrics: its id, "uid:N" or "anonymous"; buf is scratch. */
const char *proxy_metric_client(const struct request *r, char *buf, size_t cap);
/* One audit line and the request's metrics. */
void proxy_request_log(struct request *r);
/* The response is complete: log it, then let the connection move on (frees r). */
void proxy_request_finish(struct request *r);
/* Free r and all it holds (no logging; proxy_request_finish logs first). */
void proxy_request_free(struct request *r);
/*
 * Answer a proxy error (JSON body, errors_write_json) and finish r. fields:
 * more JSON members or NULL; extra: more header lines or NULL; force_close
 * ends the connection after it. Once a response head went out, the
 * connection is cut instead.
 */
void proxy_reply_error_f(struct request *r, int status, const char *code, const char *msg,
                         const char *fields, const char *extra, bool force_close);
void proxy_reply_error_x(struct request *r, int status, const char *code, const char *msg,
                         const char *extra, bool force_close);
void proxy_reply_error(struct request *r, int status, const char *msg);
void proxy_reply_429(struct request *r, int64_t retry_after_ms);

/* ---- proxy_policy.c: stage "policy" (then proxy_stage_admit) */

void proxy_stage_policy(struct request *r, const char *path, size_t path_len);
/* Body bytes arrived: true when the policy stage is holding the body and took them. */
bool proxy_policy_input(struct request *r);
/* The held body, complete and checked: its length, or -1 when the body streams. */
int64_t proxy_policy_held_len(const struct request *r);
/* Copy up to cap more bytes of the held body into buf (0 at its end). */
size_t proxy_policy_read_held(struct request *r, char *buf, size_t cap);
void proxy_policy_free(struct policy_stage *ps);

/* ---- proxy_admit.c: stage "admit" (then proxy_stage_forward) */

void proxy_stage_admit(struct request *r);
/*
 * Take a rate-limit token for r's credential in r's fairness lane, then call
 * next(r) (now or when the queue lets it go), or answer 429.
 */
void proxy_ratelimit_then(struct request *r, void (*next)(struct request *r));
/* The credential's Authorization line (rendered at load, or the minted token) into hl. */
bool proxy_add_cred_header(struct request *r, struct upstream_hblock *hl);
/* The site's credential works only through the API gateway (api.atlassian.com/ex/...). */
bool proxy_via_gateway(const struct request *r);
/* The breaker hears every answer to a request that carried the credential. */
void proxy_breaker_answer(struct request *r, int status, const struct upstream_header *seraph,
                          const struct upstream_header *denied);
void proxy_breaker_scan(struct request *r, const char *data, size_t len);
void proxy_breaker_flush(struct request *r);
void proxy_breaker_probe_gone(struct request *r);

/* ---- proxy_forward.c: stages "forward" and "respond" */

void proxy_stage_forward(struct request *r);
/* The rate-limit signals of an upstream answer (headers h[0..n)) go to the limiter. */
void proxy_ratelimit_signals(struct request *r, int status, const struct upstream_header *h,
                             size_t n);
/* Whichever engine runs r's exchange. */
void proxy_engine_cancel(struct request *r);
int64_t proxy_engine_elapsed_ms(const struct request *r);
void proxy_engine_resume_request(struct request *r);
void proxy_engine_resume_response(struct request *r);

/* ---- proxy_connect.c: CONNECT */

/* A mapped site (or the API gateway): 200, then TLS with a minted leaf; frees r. */
void proxy_connect_intercept(struct request *r, const struct route *rt);
/* An allowed unmapped host: a blind TCP tunnel. */
void proxy_connect_tunnel(struct request *r, const struct route *rt);

#endif
