/*
 * http1_resp: strict HTTP/1.1 RESPONSE framing on top of llhttp (response
 * mode), fed incrementally by the upstream engine (h1up).
 *
 * Layer 2, pure: no I/O, no event loop, no logging. Never enables llhttp's
 * lenient flags. Anything malformed or ambiguous (Content-Length with
 * Transfer-Encoding, duplicate Content-Length, a Transfer-Encoding other
 * than chunked, bad chunk sizes, obs-fold, control bytes, a bare LF, a
 * status outside 100..599, 101 Switching Protocols, too many interim
 * heads) is an error the caller turns into 502 upstream_bad_response; a
 * response is never relayed half-framed.
 *
 * Body framing, decided at the end of the head: none (1xx, 204, 304, the
 * answer to HEAD), Content-Length, chunked (trailers parsed, bounded by
 * HTTP1_RESP_MAX_TRAILER_BYTES, dropped), or close-delimited (read until
 * EOF: http1_resp_eof). Interim 1xx heads (100 Continue, 103 Early Hints)
 * are consumed and never surface; only the final head does.
 *
 * Memory per parser is bounded by HTTP1_RESP_MAX_HEAD_BYTES (interim heads
 * included) and HTTP1_RESP_MAX_HEADERS.
 */
#ifndef CREDPROXY_HTTP1_RESP_H
#define CREDPROXY_HTTP1_RESP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <llhttp.h>

#include "http1_msg.h"

#define HTTP1_RESP_MAX_HEAD_BYTES (64 * 1024)    /* status lines + headers, interim heads too */
#define HTTP1_RESP_MAX_HEADERS 200               /* header lines of the final head */
#define HTTP1_RESP_MAX_TRAILER_BYTES (16 * 1024) /* chunked trailers: parsed, bounded, dropped */
#define HTTP1_RESP_MAX_INTERIM 8                 /* 1xx heads before the final one */

enum http1_resp_status {
    HTTP1_RESP_NEED_MORE = 0, /* every byte given was consumed; feed more */
    HTTP1_RESP_HEAD_DONE,     /* the final head is complete; *consumed stops right after it */
    HTTP1_RESP_BODY_DONE,     /* the body (and trailers) ended; *consumed stops right after it */
    HTTP1_RESP_ERROR,         /* see http1_resp.err_msg */
};

enum http1_resp_framing {
    HTTP1_RESP_NO_BODY = 0, /* 1xx, 204, 304, HEAD */
    HTTP1_RESP_LENGTH,      /* Content-Length */
    HTTP1_RESP_CHUNKED,     /* Transfer-Encoding: chunked */
    HTTP1_RESP_CLOSE,       /* until the server closes */
};

struct http1_resp {
    llhttp_t ll; /* first: the callbacks find the parser from it; its data is &msg */
    enum {
        HTTP1_RESP_PHASE_HEAD = 0,
        HTTP1_RESP_PHASE_BODY,
        HTTP1_RESP_PHASE_DONE,
        HTTP1_RESP_PHASE_ERROR
    } phase;
    bool head_request; /* the request was HEAD: the answer has no body */

    struct http1_msg msg; /* the head's arena, its byte count, trailers, the body sink */
    struct http1_header headers[HTTP1_RESP_MAX_HEADERS];
    size_t nheaders;
    unsigned interim; /* 1xx heads consumed */
    bool pending_cr;  /* the last head byte fed was a CR */

    /* Facts of the final head (valid after HTTP1_RESP_HEAD_DONE). */
    int status;
    unsigned http_major, http_minor;
    enum http1_resp_framing framing;
    int64_t content_length; /* -1 when absent */
    bool keep_alive;        /* the connection may carry another exchange after this one */

    const char *err_msg; /* with HTTP1_RESP_ERROR: a fixed sentence, never upstream bytes */
};

/* Zero-initialise for one response; head_request: the request was HEAD. No allocation yet. */
void http1_resp_init(struct http1_resp *p, bool head_request);
/* Expect a new response on the same connection (keeps the arena allocation). */
void http1_resp_reset(struct http1_resp *p, bool head_request);
/* Free the arena. The struct belongs to the caller. */
void http1_resp_clear(struct http1_resp *p);

/*
 * Feed head bytes. *consumed: bytes used (the rest is body or, for a
 * bodiless answer, bytes after the response). Returns NEED_MORE, HEAD_DONE
 * or ERROR. A bodiless answer ends with the head: http1_resp_body then
 * answers BODY_DONE at once.
 */
enum http1_resp_status http1_resp_head(struct http1_resp *p, const char *data, size_t len,
                                       size_t *consumed);

/*
 * After HEAD_DONE: decode body bytes from data into out (at most cap
 * decoded bytes; *produced says how many). Never consumes more raw bytes
 * than cap. Returns NEED_MORE, BODY_DONE or ERROR.
 */
enum http1_resp_status http1_resp_body(struct http1_resp *p, const char *data, size_t len,
                                       size_t *consumed, char *out, size_t cap, size_t *produced);

/*
 * The server closed the connection. BODY_DONE when that ends a
 * close-delimited body (or the response was already complete); ERROR
 * when the response was cut short (inside the head, a length or chunk).
 */
enum http1_resp_status http1_resp_eof(struct http1_resp *p);

const char *http1_resp_header_name(const struct http1_resp *p, size_t i, size_t *len);
const char *http1_resp_header_value(const struct http1_resp *p, size_t i, size_t *len);

#endif
