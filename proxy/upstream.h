/*
 * upstream: every exchange with an upstream server goes through libcurl's
 * multi_socket API driven by this worker's libevent loop (one CURLM per
 * worker, so connections are pooled and reused across client connections).
 *
 * Layer 3. Always verifies the peer and the host name; never follows
 * redirects; never uses a proxy from the environment (only
 * config.upstream.proxy); only https toward mapped sites. Never logs header
 * values or bodies.
 *
 * Streaming contract: request bodies are pulled from the caller
 * (read_body may answer UPSTREAM_WOULD_BLOCK, then the caller calls
 * upstream_resume_request when it has more); response bytes are pushed to
 * the caller (on_body may answer UPSTREAM_PAUSE, then the caller calls
 * upstream_resume_response once it has drained). Memory therefore does not
 * grow with body size.
 */
#ifndef CREDPROXY_UPSTREAM_H
#define CREDPROXY_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"

struct event_base;
struct curl_slist;
struct upstream;
struct upstream_exchange;

enum upstream_result {
    UPSTREAM_OK = 0,
    UPSTREAM_ERR_DNS,          /* could not resolve the host -> 502 */
    UPSTREAM_ERR_CONNECT,      /* TCP connect refused/unreachable -> 502 */
    UPSTREAM_ERR_TLS,          /* handshake or certificate verification failed -> 502 */
    UPSTREAM_ERR_TIMEOUT,      /* connect_timeout or timeout passed -> 504 */
    UPSTREAM_ERR_PROTOCOL,     /* malformed response, reset mid-body, … -> 502 */
    UPSTREAM_ERR_ABORTED,      /* the caller's callback asked to abort */
    UPSTREAM_ERR_BAD_RESPONSE, /* the response could not be framed -> 502 upstream_bad_response */
};

#define UPSTREAM_WOULD_BLOCK ((ssize_t)-2) /* read_body: nothing yet, not EOF */
#define UPSTREAM_PAUSE (-2)                /* on_body: stop pushing until resumed */
#define UPSTREAM_ABORT (-1)                /* on_head/on_body: abort the exchange */
#define UPSTREAM_MAX_RESPONSE_HEADERS 200
/* Bytes of response head lines (1xx interim heads included) before the exchange fails PROTOCOL. */
#define UPSTREAM_MAX_RESPONSE_HEAD_BYTES (64 * 1024)
/* Connections per upstream host (h2 multiplexes on one; h1 queues past this). */
#define UPSTREAM_MAX_HOST_CONNECTIONS 8
/* Idle connections kept in one worker's pool. */
#define UPSTREAM_MAX_CACHED_CONNECTIONS 64
/*
 * Finished libcurl easy handles kept (reset) for the next exchange, per
 * worker: saves curl_easy_init/cleanup and their allocations per request.
 */
#define UPSTREAM_MAX_IDLE_EASY 64
/*
 * libcurl's upload buffer for request bodies over UPSTREAM_SMALL_BODY (or of
 * unknown length): bigger sends toward the upstream; such a handle is not
 * kept for reuse, so idle handles never hold one.
 */
#define UPSTREAM_UPLOAD_BUFFER (512 * 1024)
#define UPSTREAM_SMALL_BODY (64 * 1024)

struct upstream_header {
    const char *name; /* as received (HTTP/2 gives lowercase) */
    size_t name_len;
    const char *value; /* leading/trailing white space trimmed */
    size_t value_len;
};

struct upstream_callbacks {
    /* The final response head (1xx interim responses are not passed). Return 0 or UPSTREAM_ABORT.
     */
    int (*on_head)(void *arg, int status, const struct upstream_header *headers, size_t n);
    /* Response body bytes. Return 0, UPSTREAM_PAUSE (bytes were NOT consumed) or UPSTREAM_ABORT. */
    int (*on_body)(void *arg, const char *data, size_t len);
    /*
     * Copy up to cap request-body bytes into buf: return the count, 0 at the
     * end of the body, or UPSTREAM_WOULD_BLOCK.
     */
    ssize_t (*read_body)(void *arg, char *buf, size_t cap);
    /*
     * The exchange ended. result/detail say why ("could not resolve host
     * acme.atlassian.net", …: no secrets, no header values). The exchange is
     * freed right after this returns; never called after upstream_cancel.
     */
    void (*on_done)(void *arg, enum upstream_result result, const char *detail);
};

/*
 * The request header block both engines take: "Name: value\r\n" lines,
 * built once by the pipeline. Holds the credential: wiped on free.
 */
#define UPSTREAM_MAX_HEADER_BLOCK (96 * 1024)
struct upstream_hblock {
    char *buf;
    size_t len, cap;
};

/* Append "name: value\r\n"; false (nothing appended) past UPSTREAM_MAX_HEADER_BLOCK. */
bool upstream_hblock_add(struct upstream_hblock *b, const char *name, size_t nlen,
                         const char *value, size_t vlen);
/* Append a complete "Name: value" line (no CRLF in it). */
bool upstream_hblock_add_line(struct upstream_hblock *b, const char *line);
/* Zero and free the bytes. */
void upstream_hblock_wipe(struct upstream_hblock *b);
/*
 * Names the engines own and drop from the block: Host, Content-Length,
 * Transfer-Encoding, Expect, Connection, Keep-Alive, Proxy-Connection, TE, Upgrade.
 */
bool upstream_header_owned(const char *name, size_t len);

struct upstream_request {
    const struct config *cfg; /* upstream settings; borrowed for the exchange's life */
    const char *method;       /* copied */
    const char *url;          /* "https://acme.atlassian.net:443/rest/api/3/myself?x=1" (copied) */
    /*
     * Complete "Name: value" lines to send; consumed (values zeroed before
     * free, even when upstream_start fails). Framing and hop-by-hop headers
     * in it are dropped because upstream owns them: Host (from url),
     * Content-Length and Transfer-Encoding (from body_len), Expect,
     * Connection, Keep-Alive, Proxy-Connection, TE, Upgrade. Lines with CR/LF
     * are dropped. libcurl adds no Accept or User-Agent of its own.
     */
    struct curl_slist *headers;
    /* Or the same lines as one block (used when block.buf is set; consumed likewise). */
    struct upstream_hblock block;
    /*
     * -1 unknown length (chunked on HTTP/1.1), 0 none, >0 exact
     * (Content-Length). With 0, POST/PUT/PATCH send "Content-Length: 0";
     * other methods send no body framing at all. HEAD never has a body.
     */
    int64_t body_len;
    bool allow_plain_http; /* only for unmapped hosts in tunnel mode */
};

/* One per worker loop. cfg gives defaults only; each request carries its own cfg. */
struct upstream *upstream_new(struct event_base *base);
/* Cancels every exchange still running (no callbacks), frees. NULL is a no-op. */
void upstream_free(struct upstream *up);

/*
 * Start an exchange. Returns NULL (and calls nothing) only on resource
 * failure or an unusable request (method not an HTTP token, URL libcurl
 * cannot parse); otherwise exactly one on_done will follow unless cancelled.
 * Callbacks may be invoked from inside upstream_resume_* but never from
 * inside upstream_start itself. (In this implementation resume, cancel and
 * unpause are always deferred to the next loop turn, so no callback runs
 * from inside any upstream_* call.) Never call upstream_free from a callback.
 */
struct upstream_exchange *upstream_start(struct upstream *up, const struct upstream_request *req,
                                         const struct upstream_callbacks *cb, void *arg);
void upstream_resume_request(struct upstream_exchange *ex);
void upstream_resume_response(struct upstream_exchange *ex);
/* Stop and free; safe to call from inside any of its callbacks. No callback follows. */
void upstream_cancel(struct upstream_exchange *ex);

/* Milliseconds spent on the upstream side so far (for the audit line). */
int64_t upstream_elapsed_ms(const struct upstream_exchange *ex);
/*
 * New connections opened since the last call (for
 * credproxy_upstream_connections_total): libcurl's CURLINFO_NUM_CONNECTS
 * summed over every finished or cancelled exchange, so a happy-eyeballs race
 * counts once and a reused or multiplexed connection counts zero.
 */
unsigned upstream_take_new_connections(struct upstream *up);

#endif
