/*
 * tunnel: the blind TCP tunnel for CONNECT to a host that is not in `sites`
 * when `unknown_hosts: tunnel`. Resolves without blocking the loop (evdns),
 * honours upstream.connect_to and upstream.connect_timeout, then splices
 * bytes both ways with backpressure and half-close.
 *
 * Layer 3. Never intercepts, never parses, never logs the bytes it carries,
 * never injects a credential; it only counts bytes for the audit line.
 *
 * Sequence for the caller (the proxy core):
 *   t = tunnel_start(base, dns, client_bev, host, port, cfg, true, &cb, arg);
 *   - success: the tunnel itself writes "HTTP/1.1 200 Connection
 *     Established\r\n\r\n" (when reply_established), calls on_established,
 *     and splices until both directions end; then on_closed(stats) once.
 *   - failure (DNS, connect, timeout): on_failed hands the client
 *     bufferevent back (callbacks cleared, EV_READ disabled); the caller
 *     writes its 502/504 error response and closes it. on_closed is not
 *     called in that case.
 * Bytes the client sent after the CONNECT head that are still in the client
 * bufferevent's input are forwarded once connected.
 */
#ifndef CREDPROXY_TUNNEL_H
#define CREDPROXY_TUNNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct event_base;
struct evdns_base;
struct bufferevent;
struct tunnel;

/* Stop reading one side while the other side's unsent output is at least this. */
#define TUNNEL_MAX_BUFFERED (256 * 1024)
/* Resume reading once that output drained to this. */
#define TUNNEL_RESUME_BUFFERED (TUNNEL_MAX_BUFFERED / 2)
/* Resolved addresses tried in turn (within one connect_timeout). */
#define TUNNEL_MAX_ADDRESSES 8
#define TUNNEL_MAX_HOST_LEN 255

enum tunnel_result {
    TUNNEL_OK = 0,
    TUNNEL_ERR_DNS,     /* -> 502 upstream_unreachable */
    TUNNEL_ERR_CONNECT, /* -> 502 upstream_unreachable */
    TUNNEL_ERR_TIMEOUT, /* connect_timeout passed -> 504 upstream_timeout */
};

struct tunnel_stats {
    uint64_t bytes_up;   /* client -> upstream */
    uint64_t bytes_down; /* upstream -> client */
    int64_t connect_ms;  /* resolve + connect; -1 when never connected */
    int64_t total_ms;    /* since tunnel_start */
    const char *reason;  /* "closed" (both sides ended cleanly), "client error", "upstream error" */
};

struct tunnel_callbacks {
    /*
     * Resolve or connect failed. client is handed back to the caller (owned
     * by it now). detail: "could not resolve host x.example", "could not
     * connect to x.example:443: connection refused", … The tunnel is freed
     * right after this returns.
     */
    void (*on_failed)(void *arg, struct bufferevent *client, enum tunnel_result result,
                      const char *detail);
    /* Connected and splicing (optional; may be NULL). */
    void (*on_established)(void *arg);
    /* Both directions ended or one side failed. The tunnel is freed right after this returns. */
    void (*on_closed)(void *arg, const struct tunnel_stats *stats);
};

/*
 * Start a tunnel to host:port (host without brackets; "[::1]" is accepted
 * too), mapped through cfg->upstream.connect_to like curl --connect-to.
 * Borrows base, dns (required: one evdns_base per worker, the caller keeps
 * it alive longer than every tunnel), host and cfg (only during this call:
 * what is needed is copied). Consumes client: the tunnel owns it from now
 * on, and gives it back only through on_failed. reply_established: write the
 * CONNECT 200 line once connected (false for a plain accepted socket).
 * Returns NULL only when the arguments are unusable (NULL dns, empty host,
 * port out of range), in which case the client was NOT consumed. No
 * callback runs from inside tunnel_start.
 */
struct tunnel *tunnel_start(struct event_base *base, struct evdns_base *dns,
                            struct bufferevent *client, const char *host, int port,
                            const struct config *cfg, bool reply_established,
                            const struct tunnel_callbacks *cb, void *arg);

/* Counters so far (for a caller that tears down early and still logs). */
void tunnel_get_stats(const struct tunnel *t, struct tunnel_stats *out);

/*
 * Abort: close both sides now (client included), no callback follows. Safe
 * from inside the tunnel's own callbacks (then it takes effect on return).
 * NULL is a no-op.
 */
void tunnel_free(struct tunnel *t);

/*
 * Where a connection to host:port really goes under cfg's connect_to
 * entries (first match wins; an empty HOST or a 0 PORT matches any; an
 * empty CONNECT-HOST or 0 CONNECT-PORT keeps the original). Writes the
 * target host (brackets removed) into out_host (cap bytes) and *out_port.
 * Returns 1 when an entry matched, 0 when not, -1 when out_host is too small.
 */
int tunnel_map_connect_to(const struct config *cfg, const char *host, int port, char *out_host,
                          size_t cap, int *out_port);

#endif
