/*
 * rewrite: gateway-mode link rewriting. In gateway mode the agent talks to
 * the proxy as a base URL (http://127.0.0.1:8082, http://acme.localhost:8080)
 * but Atlassian's JSON carries absolute links to the site itself
 * ("self", "nextPage", attachment "content", async-task Location headers).
 * Clients follow those and bypass the proxy. This module rewrites
 * FROM ("https://acme.atlassian.net") to TO (the gateway base the agent used)
 * in response bodies, as a stream, and in Location header values.
 *
 * What is matched (case-insensitively; hosts are case-insensitive in URLs):
 *   https://HOST                       the origin as configured
 *   https://HOST:443                   the explicit default-port spelling
 *   https:\/\/HOST  and  …:443         JSON's escaped-slash form (replaced
 *                                      by TO with its slashes escaped too)
 * and only when the match is followed by a boundary: '/', '?', '#', '"',
 * '\\' (an escaped slash or quote follows) or the end of the body. So
 * "https://acme.atlassian.net.evil.com", "https://acme.atlassian.network"
 * and "https://acme.atlassian.net:8443" are never touched, however the
 * body is split across feeds.
 *
 * Layer 2, pure: no I/O, no event loop, no libevent types. Every byte that
 * is not part of a match is passed through unchanged and in order. Memory is
 * bounded regardless of body size: a rewrite holds back at most
 * rewrite_max_held() bytes (the longest pattern) between feeds.
 *
 * Never logs. Never sees secrets (response bodies only).
 *
 * The body's length changes when TO and FROM differ in length: the caller
 * must drop Content-Length (send chunked or close-delimited) for rewritten
 * bodies, and must only feed identity-encoded bodies (no gzip/br) — a
 * compressed body passes through byte-identical only by accident.
 */
#ifndef CREDPROXY_REWRITE_H
#define CREDPROXY_REWRITE_H

#include <stdbool.h>
#include <stddef.h>

/* Longest origin accepted for FROM or TO ("https://" + 253-byte host + ":65535" fits). */
#define REWRITE_MAX_ORIGIN 300
/* Longest pattern: the escaped-slash FROM plus an explicit ":443"-style port. */
#define REWRITE_MAX_PATTERN (REWRITE_MAX_ORIGIN + 8)

struct rewrite;

/*
 * Output sink: append n bytes at p (n > 0). Return 0, or -1 to abort the
 * feed (then the rewrite's stream is broken: free it). With libevent:
 *     static int sink(void *arg, const char *p, size_t n)
 *     { return evbuffer_add(arg, p, n); }
 */
typedef int rewrite_emit_fn(void *arg, const char *p, size_t n);

/*
 * from_origin: "https://HOST" or "https://HOST:PORT" (scheme http also
 * allowed; a port equal to the scheme default is matched with and without
 * it; one trailing '/' is ignored). to_origin: "http://127.0.0.1:8082" (one
 * trailing '/' ignored; must not contain '"', '\\', control bytes or
 * whitespace). Both are copied. Returns NULL when either is malformed or
 * longer than REWRITE_MAX_ORIGIN. The caller owns the result.
 */
struct rewrite *rewrite_new(const char *from_origin, const char *to_origin);
/*
 * Also rewrite FROM_ORIGIN + PATH (a path prefix such as
 * "/ex/jira/1a11d016-8984-4c3e-b9ab-142dd06acb1b": starts with '/', no
 * trailing '/') to the same TO, with the same boundaries and spellings.
 * For the API gateway's links (issue 10). At most one extra source.
 * Returns 0, or -1 (nothing added) when malformed or too long.
 */
int rewrite_add_source(struct rewrite *rw, const char *from_origin, const char *path);
/* True when to_origin would be accepted by rewrite_new (no allocation). */
bool rewrite_to_origin_ok(const char *to_origin);
/* NULL is a no-op. Held bytes are discarded (call rewrite_finish first). */
void rewrite_free(struct rewrite *rw);

/*
 * Feed the next len bytes of the body (borrowed). Emits every byte that can
 * be decided now, holding back a possible partial match at the end.
 * Returns 0, or -1 when emit failed.
 */
int rewrite_feed(struct rewrite *rw, const char *in, size_t len, rewrite_emit_fn *emit, void *arg);

/*
 * End of body: decides and emits the held bytes (end of body counts as a
 * boundary). Afterwards the rewrite is empty and may be reused for another
 * body. Returns 0, or -1 when emit failed.
 */
int rewrite_finish(struct rewrite *rw, rewrite_emit_fn *emit, void *arg);

/* Bytes currently held back (for tests and accounting). */
size_t rewrite_held(const struct rewrite *rw);
/* The most bytes this rewrite can ever hold back between feeds. */
size_t rewrite_max_held(const struct rewrite *rw);

/*
 * Location header value: when value starts (case-insensitively) with
 * from_origin (or its explicit/omitted default-port spelling) followed by
 * '/', '?', '#' or the end, returns a new string with that prefix replaced
 * by to_origin (the caller frees it). Returns NULL when the value is to be
 * left untouched (another host, a look-alike such as
 * "https://acme.atlassian.net.evil.com", a relative reference) or when an
 * origin is malformed.
 */
char *rewrite_location(const char *value, const char *from_origin, const char *to_origin);

/* rewrite_location with every source of rw (see rewrite_add_source). */
char *rewrite_location_rw(const struct rewrite *rw, const char *value);

#endif
