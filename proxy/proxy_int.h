/*
 * proxy_int: what the pipeline's files share. Internal to them: nothing
 * outside proxy/proxy*.c includes it.
 *
 * The files are layered like the rest of proxy/: each calls only those
 * listed below it, so the pipeline reads top to bottom.
 *
 *   proxy.c          the order of the stages: parse refusals, "route",
 *                    "identify", then hands the request to the policy stage
 *                    (or to CONNECT); the connection's events (body bytes,
 *                    drained output, stalled body, abort)
 *   proxy_connect.c  CONNECT, which leaves the pipeline after identify
 *   proxy_policy.c   stage "policy": class, scope, id lookups, held bodies
 *   proxy_admit.c    stage "admit": the breaker, the credential being ready
 *                    (minted token, cloudId), the rate limit; for the request
 *                    and for each policy lookup, since both carry the credential
 *   proxy_forward.c  stages "forward" and "respond": strip and inject, the
 *                    engine switch, the response back to the client
 *   proxy_request.c  a request's life: new, answer (proxy_reply_*), log, free
 *   proxy_cred.c     the credential's side: its Authorization line, and what
 *                    Atlassian's answers say about it (rate-limit signals,
 *                    the breaker's verdict, a refused minted token)
 *
 * Each stage ends the request itself when it refuses, or hands it on by
 * calling the next; nothing returns to a caller that would look at the
 * request afterwards. Layer 4, like proxy.h: never logs a header value,
 * token or key.
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

/* ---- proxy_connect.c: CONNECT */

/* A mapped site (or the API gateway): 200, then TLS with a minted leaf; frees r. */
void proxy_connect_intercept(struct request *r, const struct route *rt);
/* An allowed unmapped host: a blind TCP tunnel. */
void proxy_connect_tunnel(struct request *r, const struct route *rt);

/* ---- proxy_policy.c: stage "policy" (then proxy_stage_admit) */

void proxy_stage_policy(struct request *r, const char *path, size_t path_len);
/* Body bytes arrived: true when the policy stage is holding the body and took them. */
bool proxy_policy_input(struct request *r);
void proxy_policy_free(struct policy_stage *ps);

/* ---- proxy_admit.c: stage "admit" */

/* The gates for r's credential (breaker, credential ready, rate limit), then next(r). */
void proxy_admit_then(struct request *r, void (*next)(struct request *r));
/* proxy_admit_then(r, proxy_stage_forward). */
void proxy_stage_admit(struct request *r);

/* ---- proxy_forward.c: stages "forward" and "respond" */

void proxy_stage_forward(struct request *r);
/* Whichever engine runs r's exchange. */
void proxy_engine_cancel(struct request *r);
int64_t proxy_engine_elapsed_ms(const struct request *r);
void proxy_engine_resume_request(struct request *r);
void proxy_engine_resume_response(struct request *r);

/* ---- proxy_request.c: the request's life and its answers */

/* A request on c (one reference to the world in force); the connection owns it. */
struct request *proxy_request_new(const struct proxy_services *svc, struct conn *c);
const struct config *proxy_cfg(const struct request *r);
/* The first value of a request header by lower-case name, or NULL (*len 0). */
const char *proxy_header_value(const struct conn *c, const char *name, size_t *len);
/* The client's label for metrics: its id, "uid:N" or "anonymous"; buf is scratch. */
const char *proxy_metric_client(const struct request *r, char *buf, size_t cap);
/* One audit line and the request's metrics. */
void proxy_request_log(struct request *r);
/* The response is complete: log it, then let the connection move on (frees r). */
void proxy_request_finish(struct request *r);
/* Free r and what it holds (not the stage states: proxy.c frees those first). */
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

/* ---- proxy_cred.c: the credential's side */

/* The credential's Authorization line (rendered at load, or the minted token) into hl. */
bool proxy_add_cred_header(struct request *r, struct upstream_hblock *hl);
/* The site's credential works only through the API gateway (api.atlassian.com/ex/...). */
bool proxy_via_gateway(const struct request *r);
/* Case-insensitive name match of one upstream response header. */
bool proxy_header_is(const struct upstream_header *h, const char *name);
/* found[k]: the first of h[0..n) named names[k] (lower case), or NULL. */
void proxy_headers_find(const struct upstream_header *h, size_t n, const char *const *names,
                        size_t count, const struct upstream_header **found);
/*
 * An answer to an exchange that carried r's credential arrived (status and
 * headers h[0..n)): rate-limit signals to the limiter, the verdict to the
 * breaker, a refused minted token to the token keeper.
 */
void proxy_cred_heard(struct request *r, int status, const struct upstream_header *h, size_t n);
/* The start of that answer's body (a gateway 401 says "scope does not match" there). */
void proxy_breaker_scan(struct request *r, const char *data, size_t len);
/* The exchange ended with a gateway 401 still unjudged: a real refusal. */
void proxy_breaker_flush(struct request *r);
/* A probe that ended without an answer from Atlassian: no verdict either way. */
void proxy_breaker_probe_gone(struct request *r);

#endif
