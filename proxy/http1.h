/*
 * http1: strict HTTP/1.x request framing on top of llhttp, and the header
 * policy table (which request headers reach the upstream, which response
 * headers reach the client).
 *
 * Layer 2, pure: no I/O, no event loop, no logging. Never enables llhttp's
 * lenient flags; anything ambiguous (Content-Length with Transfer-Encoding,
 * duplicate Content-Length, obs-fold, control bytes, duplicate or missing
 * Host, bad chunk sizes, any Transfer-Encoding but one "chunked", a bare LF
 * in a head, chunk line or trailer, two spaces in the request line, a
 * Connection header naming a framing or credential header) is an error,
 * never a guess. llhttp must be compiled with LLHTTP_STRICT_MODE=1. Memory per parser is
 * bounded by HTTP1_MAX_HEAD_BYTES and HTTP1_MAX_HEADERS.
 */
#ifndef CREDPROXY_HTTP1_H
#define CREDPROXY_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <llhttp.h>

#include "http1_msg.h"

#define HTTP1_MAX_HEAD_BYTES (64 * 1024)    /* request line + headers, CRLFs included */
#define HTTP1_MAX_HEADERS 100               /* header lines per request */
#define HTTP1_MAX_TRAILER_BYTES (16 * 1024) /* chunked trailers: parsed, bounded, dropped */
/*
 * One chunk-size line, extensions included, CRLF excluded: 4 KiB is far
 * above anything a client sends (extensions are ignored) and keeps a
 * never-ending extension from holding a connection.
 */
#define HTTP1_MAX_CHUNK_LINE 4096
/* Hex digits of a chunk size, leading zeros included: more than 64 bits is refused. */
#define HTTP1_MAX_CHUNK_SIZE_DIGITS 16
#define HTTP1_METHOD_PEEK 8 /* first bytes of a request line kept to name a refused method */

enum http1_status {
    HTTP1_NEED_MORE = 0, /* every byte consumed; feed more */
    HTTP1_HEAD_DONE,     /* the request head is complete; *consumed stops right after it */
    HTTP1_BODY_DONE,     /* the body (and trailers) ended; *consumed stops right after it */
    HTTP1_ERROR,         /* see http1_parser.err_status / err_code / err_msg */
};

struct http1_parser {
    llhttp_t ll; /* first: the callbacks find the parser from it; its data is &msg */
    enum { HTTP1_PHASE_HEAD = 0, HTTP1_PHASE_BODY, HTTP1_PHASE_DONE, HTTP1_PHASE_ERROR } phase;

    /* Head storage (the target and header names/values, in msg's arena) and the body sink. */
    struct http1_msg msg;
    const char *method; /* static name from llhttp */
    uint32_t target_off, target_len;
    struct http1_header headers[HTTP1_MAX_HEADERS];
    size_t nheaders;
    /* Byte-level checks llhttp's strict mode leaves to us (see scan_head / scan_body). */
    bool prev_cr;         /* the previous scanned byte was CR */
    bool prev_lf;         /* the previous trailer byte was LF (a line starts) */
    bool prev_sp;         /* the previous request-line byte was SP */
    size_t scan_lines;    /* non-empty head lines scanned (the request line first) */
    size_t scan_line_len; /* bytes of the head line being scanned, CR excluded */
    bool scan_done;       /* the head's closing empty line was scanned */
    char peek[HTTP1_METHOD_PEEK];
    size_t peek_len;
    bool peek_closed; /* the method's bytes ended */
    enum {
        HTTP1_CHUNK_NONE = 0,
        HTTP1_CHUNK_SIZE_LINE,
        HTTP1_CHUNK_DATA,
        HTTP1_CHUNK_TRAILERS
    } cstate;
    size_t chunk_line_len;   /* bytes of the current chunk-size line */
    size_t chunk_digits;     /* leading hex digits of the current chunk-size line */
    bool chunk_digits_ended; /* a non-digit was seen on the current size line */
    bool last_chunk;         /* on_chunk_header saw size 0 */

    /* Facts of the parsed head (valid after HTTP1_HEAD_DONE). */
    unsigned http_major, http_minor;
    bool is_connect;
    bool is_head; /* HEAD: the response has no body */
    bool chunked;
    int64_t content_length; /* -1 when absent */
    bool has_body;          /* chunked or Content-Length > 0 */
    bool keep_alive;        /* llhttp_should_keep_alive at the end of the head */
    bool expect_continue;
    bool upgrade;   /* an Upgrade header was present */
    int host_index; /* index of the Host header, -1 when absent */

    /* Set with HTTP1_ERROR: the proxy's answer (400/405/431) and a short reason. */
    int err_status;
    const char *err_code;
    const char *err_msg;
};

/* Zero-initialise; no allocation until bytes arrive. */
void http1_parser_init(struct http1_parser *p);
/* Forget the previous message (keeps the arena allocation) and expect a new request. */
void http1_parser_reset(struct http1_parser *p);
/* Free the arena. The struct itself belongs to the caller. */
void http1_parser_clear(struct http1_parser *p);

/*
 * Feed request-head bytes. Sets *consumed to the bytes used (the rest
 * belongs to the body or to the next request). Returns HTTP1_NEED_MORE,
 * HTTP1_HEAD_DONE or HTTP1_ERROR (400 bad_request, 405 method_not_allowed,
 * 431 headers_too_large).
 */
enum http1_status http1_parse_head(struct http1_parser *p, const char *data, size_t len,
                                   size_t *consumed);

/*
 * After HTTP1_HEAD_DONE: decode body bytes from data into out (at most cap
 * decoded bytes; *produced says how many, 0 with HTTP1_ERROR). Never
 * consumes more raw bytes than cap, so decoded output always fits. Returns HTTP1_NEED_MORE,
 * HTTP1_BODY_DONE (bodiless requests answer it at once) or HTTP1_ERROR.
 */
enum http1_status http1_parse_body(struct http1_parser *p, const char *data, size_t len,
                                   size_t *consumed, char *out, size_t cap, size_t *produced);

/* Accessors (valid after HTTP1_HEAD_DONE until the next reset). */
const char *http1_method(const struct http1_parser *p);
const char *http1_target(const struct http1_parser *p, size_t *len);
const char *http1_header_name(const struct http1_parser *p, size_t i, size_t *len);
const char *http1_header_value(const struct http1_parser *p, size_t i, size_t *len);
/* First header named name (case-insensitive); its index, or -1. */
int http1_find_header(const struct http1_parser *p, const char *name);

/* What happens to a request header on its way upstream. */
enum http1_req_policy {
    HTTP1_REQ_PASS = 0, /* forward as received */
    HTTP1_REQ_DROP, /* never forwarded (secrets, hop-by-hop, Host/Expect: the proxy sets those) */
    HTTP1_REQ_CONTENT_LENGTH, /* framing: the proxy re-derives it from the parsed length */
};
enum http1_req_policy http1_request_header_policy(const char *name, size_t len);

/*
 * Headers the upstream engines write themselves (Host from the URL, framing,
 * connection management): dropped from any header block handed to them.
 */
bool http1_header_engine_owned(const char *name, size_t len);

/* Response headers: false for Set-Cookie and hop-by-hop (framing is the proxy's). */
bool http1_response_header_pass(const char *name, size_t len);

/*
 * True when name appears as a token in the comma-separated value (a
 * Connection header's list of further hop-by-hop headers).
 */
bool http1_token_listed(const char *list, size_t list_len, const char *name, size_t name_len);

/* True when a Connection header of the request lists name. */
bool http1_request_connection_lists(const struct http1_parser *p, const char *name, size_t len);

/* Standard reason phrase for a status ("OK", "Not Found"); "Unknown" when none. */
const char *http1_reason(int status);

#endif
