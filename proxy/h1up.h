/*
 * h1up: the lean upstream engine. HTTPS over HTTP/1.1 spoken directly on
 * libevent (bufferevent_openssl on the socket, no filter), with the same
 * contract as upstream.h (struct upstream_request, struct
 * upstream_callbacks, UPSTREAM_PAUSE / UPSTREAM_WOULD_BLOCK, enum
 * upstream_result), so the pipeline cannot tell which engine runs.
 *
 * Layer 3. Always verifies the peer certificate and its name (the
 * configured upstream.ca_file or the system store), offers ALPN http/1.1
 * only, never follows redirects, never uses a proxy, only https. Never logs
 * header values or bodies; error details name hosts, ports and OpenSSL's
 * reason, never a header.
 *
 * Per worker: one pool per (host, port, SNI, CA file, connect_to target)
 * with at most H1POOL_MAX_ACTIVE connections in use or being set up (more
 * requests wait in arrival order, each at most upstream.connect_timeout,
 * at most H1POOL_MAX_WAITING of them) and at most H1POOL_MAX_IDLE idle
 * connections, each dropped after H1POOL_IDLE_TIMEOUT_MS or when the
 * server closes it; TLS sessions are resumed across the pool's
 * connections. A request that fails on a reused connection before any
 * response byte is retried once on a fresh connection (h1pool_may_retry).
 * Responses are framed by http1_resp; a malformed one ends
 * UPSTREAM_ERR_BAD_RESPONSE.
 */
#ifndef CREDPROXY_H1UP_H
#define CREDPROXY_H1UP_H

#include <stdint.h>

#include "upstream.h"

struct event_base;
struct evdns_base;
struct h1up;
struct h1up_exchange;

/* Bytes queued toward the upstream before the request body stops being pulled. */
#define H1UP_OUTPUT_HIGH (256 * 1024)
/* One read_body call's buffer. */
#define H1UP_BODY_CHUNK (64 * 1024)
/* Decoded chunked body bytes handed to on_body at once. */
#define H1UP_DECODE_BUF (64 * 1024)
/* Upstream bytes buffered while the client is slow (reading stops above it). */
#define H1UP_INPUT_HIGH (256 * 1024)
/* Request body bytes kept so an idempotent request can be replayed on a retry. */
#define H1UP_MAX_REPLAY (64 * 1024)
/* Pools (distinct upstream keys) per worker; unused ones are dropped past it. */
#define H1UP_MAX_POOLS 64
#define H1UP_MAX_HOST 255

/* One per worker loop; dns is borrowed and must outlive it. NULL on failure. */
struct h1up *h1up_new(struct event_base *base, struct evdns_base *dns);
/* Cancels every exchange (no callbacks), closes pooled connections, frees. NULL is a no-op. */
void h1up_free(struct h1up *h);

/* Same contract as upstream_start (only "https://" URLs; req->block or req->headers). */
struct h1up_exchange *h1up_start(struct h1up *h, const struct upstream_request *req,
                                 const struct upstream_callbacks *cb, void *arg);
void h1up_resume_request(struct h1up_exchange *ex);
void h1up_resume_response(struct h1up_exchange *ex);
void h1up_cancel(struct h1up_exchange *ex);
int64_t h1up_elapsed_ms(const struct h1up_exchange *ex);
/* New upstream connections (TCP connects that succeeded) since the last call. */
unsigned h1up_take_new_connections(struct h1up *h);

#endif
