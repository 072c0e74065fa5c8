/*
 * http1_msg: what the request framing (http1) and the response framing
 * (http1_resp) need from llhttp alike, kept in one place so that a rule
 * about header lines exists once:
 *   - the header block, gathered from llhttp's name and value spans into
 *     one bounded arena (offsets, so the arena can grow);
 *   - the rules every header line obeys: a token name, no obs-fold, no
 *     control byte, trailing white space trimmed, at most so many lines
 *     and bytes (a name past the line limit is refused when it completes,
 *     so an invalid byte later in it wins however the bytes arrive);
 *   - chunked trailers, counted against their limit and dropped;
 *   - the sink decoded body bytes go to;
 *   - every refusal sorted into a kind, with the one table of how each
 *     direction words it (a request's 400/431, a response's sentence for
 *     the 502 the proxy answers).
 *
 * Layer 2, pure: no I/O, no event loop, no logging. Never enables llhttp's
 * lenient flags. A refusal records its kind, never the offending bytes.
 *
 * Use: the owner embeds a struct http1_msg and its own header array,
 * resets the msg with its limits, points its llhttp_t's data at the msg
 * and lists HTTP1_MSG_CALLBACKS in its llhttp settings. The msg points
 * into its owner (the header array and count), as the llhttp_t's data
 * points at the msg: an owner is never moved after a reset.
 */
#ifndef CREDPROXY_HTTP1_MSG_H
#define CREDPROXY_HTTP1_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <llhttp.h>

/* Offsets into the msg's arena, so the arena can grow without dangling pointers. */
struct http1_header {
    uint32_t name_off, name_len;
    uint32_t value_off, value_len;
};

/* Per direction; the arena holds at most max_head_bytes plus NULs and a little slack. */
struct http1_msg_limits {
    size_t max_head_bytes;    /* start lines and header lines, CRLFs included */
    size_t max_headers;       /* header lines of one head: the owner's array */
    size_t max_trailer_bytes; /* chunked trailers: counted, never stored */
};

/* Which llhttp span is open (the request target is the request framing's own). */
enum http1_msg_span {
    HTTP1_MSG_SPAN_NONE = 0,
    HTTP1_MSG_SPAN_URL,
    HTTP1_MSG_SPAN_FIELD,
    HTTP1_MSG_SPAN_VALUE,
};

/* Why a message was refused: found here, or llhttp's own refusal sorted by llhttp_errno. */
enum http1_msg_err {
    HTTP1_MSG_OK = 0,
    HTTP1_MSG_HEAD_TOO_LARGE,     /* more than max_head_bytes */
    HTTP1_MSG_TOO_MANY_HEADERS,   /* more than max_headers lines */
    HTTP1_MSG_EMPTY_NAME,         /* ": value" */
    HTTP1_MSG_BAD_NAME,           /* a byte that is no token character */
    HTTP1_MSG_OBS_FOLD,           /* a value continued on the next line */
    HTTP1_MSG_CONTROL_BYTE,       /* in a value */
    HTTP1_MSG_TRAILERS_TOO_LARGE, /* more than max_trailer_bytes */
    HTTP1_MSG_BODY_OVERRUN,       /* llhttp handed more body than the sink holds (a bug) */
    HTTP1_MSG_CL_AMBIGUOUS,       /* HPE_UNEXPECTED_CONTENT_LENGTH */
    HTTP1_MSG_CL_INVALID,         /* HPE_INVALID_CONTENT_LENGTH */
    HTTP1_MSG_CHUNK_SIZE,         /* HPE_INVALID_CHUNK_SIZE */
    HTTP1_MSG_TE_INVALID,         /* HPE_INVALID_TRANSFER_ENCODING */
    HTTP1_MSG_HEADER_TOKEN,       /* HPE_INVALID_HEADER_TOKEN */
    HTTP1_MSG_METHOD,             /* HPE_INVALID_METHOD */
    HTTP1_MSG_URL,                /* HPE_INVALID_URL */
    HTTP1_MSG_STATUS,             /* HPE_INVALID_STATUS */
    HTTP1_MSG_VERSION,            /* HPE_INVALID_VERSION */
    HTTP1_MSG_EOF,                /* HPE_INVALID_EOF_STATE */
    HTTP1_MSG_AFTER_CLOSE,        /* HPE_CLOSED_CONNECTION */
    HTTP1_MSG_MALFORMED,          /* any other llhttp error */
    HTTP1_MSG_NERR
};

struct http1_msg {
    const struct http1_msg_limits *lim;
    struct http1_header *headers; /* the owner's array, lim->max_headers long */
    size_t *nheaders;             /* the owner's count of it */
    char *arena;                  /* names and values (and a request target), NUL-terminated */
    size_t arena_len, arena_cap;
    size_t head_bytes;                 /* raw head bytes fed so far, interim heads included */
    enum http1_msg_span span;          /* the span llhttp has open */
    enum http1_msg_span last_done;     /* the last span completed (obs-fold: value after value) */
    const char *exec_start, *exec_end; /* the bytes of the current llhttp_execute */
    bool value_at_end;                 /* the open value span reached exec_end */
    bool too_many;                     /* a name past lim->max_headers started */
    bool in_body;                      /* the head ended: name and value spans are trailers */
    size_t trailer_bytes;
    char *body_out; /* the caller's decode buffer, during one body execute only */
    size_t body_cap, body_len;
    enum http1_msg_err err; /* the first refusal found here */
};

/* How each direction words a refusal (every cell is filled). */
struct http1_msg_refusal {
    int status;           /* the request's answer: 400 or 431 */
    const char *code;     /* its code: bad_request, headers_too_large */
    const char *request;  /* its message */
    const char *response; /* the response framing's err_msg (the proxy answers 502) */
};

/*
 * Expect a new message: everything but the arena allocation (kept for
 * reuse) is forgotten and *nheaders is 0. lim, headers and nheaders are
 * borrowed for the msg's life.
 */
void http1_msg_reset(struct http1_msg *m, const struct http1_msg_limits *lim,
                     struct http1_header *headers, size_t *nheaders);
/* Another head on the same stream (the final one after an interim 1xx): headers forgotten. */
void http1_msg_begin(struct http1_msg *m);
/* Free the arena. */
void http1_msg_clear(struct http1_msg *m);

/* Append to the arena; -1 (HTTP1_MSG_HEAD_TOO_LARGE) when it would pass its bound. */
int http1_msg_append(struct http1_msg *m, const char *at, size_t n);
/* NUL-terminate what was appended; -1 as http1_msg_append. */
int http1_msg_terminate(struct http1_msg *m);
/*
 * Append to the span kind, starting it at the arena's end (*off, *len = 0)
 * when another span was open; -1 as http1_msg_append.
 */
int http1_msg_span_add(struct http1_msg *m, enum http1_msg_span kind, uint32_t *off, uint32_t *len,
                       const char *at, size_t n);

/* How many of len head bytes to feed: no more than one past the limit (that is enough to know). */
size_t http1_msg_room(const struct http1_msg *m, size_t len);
/*
 * llhttp_execute over n head bytes. *used: all n, or up to the end of the
 * head when llhttp paused there (it is resumed). Returns llhttp's answer.
 */
llhttp_errno_t http1_msg_execute(struct http1_msg *m, llhttp_t *ll, const char *data, size_t n,
                                 size_t *used);
/* Count used head bytes: -1 (HTTP1_MSG_HEAD_TOO_LARGE) past lim->max_head_bytes. */
int http1_msg_head_used(struct http1_msg *m, size_t used);

/* Decoded body bytes go to out (cap bytes) until http1_msg_body_end, which says how many. */
void http1_msg_body_begin(struct http1_msg *m, char *out, size_t cap);
size_t http1_msg_body_end(struct http1_msg *m);

/* Header i of the head (i < *nheaders); NUL-terminated, *len without the NUL. */
const char *http1_msg_name(const struct http1_msg *m, size_t i, size_t *len);
const char *http1_msg_value(const struct http1_msg *m, size_t i, size_t *len);

/* The refusal: the one found here, else llhttp's error e sorted (HPE_OK: malformed). */
enum http1_msg_err http1_msg_error(const struct http1_msg *m, llhttp_errno_t e);
/* Its wording both ways (never NULL; HTTP1_MSG_OK words as malformed). */
const struct http1_msg_refusal *http1_msg_refusal(enum http1_msg_err k);

/* The llhttp callbacks (data: the msg); HTTP1_MSG_CALLBACKS lists them for a settings table. */
int http1_msg_on_header_field(llhttp_t *ll, const char *at, size_t len);
int http1_msg_on_header_field_complete(llhttp_t *ll);
int http1_msg_on_header_value(llhttp_t *ll, const char *at, size_t len);
int http1_msg_on_header_value_complete(llhttp_t *ll);
int http1_msg_on_body(llhttp_t *ll, const char *at, size_t len);

/* clang-format off */
#define HTTP1_MSG_CALLBACKS                                                                        \
    .on_header_field = http1_msg_on_header_field,                                                  \
    .on_header_field_complete = http1_msg_on_header_field_complete,                                \
    .on_header_value = http1_msg_on_header_value,                                                  \
    .on_header_value_complete = http1_msg_on_header_value_complete,                                \
    .on_body = http1_msg_on_body
/* clang-format on */

/* RFC 9110 token characters (a header name or method is nothing else). */
bool http1_is_tchar(unsigned char c);

/*
 * Append n bytes to an arena (*arena, *len, *cap), growing it by doubling
 * from initial up to max bytes (a NUL always fits after the data). Returns
 * 0, or -1 when it would exceed max (nothing appended). Also used for the
 * libcurl engine's response head (upstream.c).
 */
int http1_arena_append(char **arena, size_t *len, size_t *cap, size_t initial, size_t max,
                       const char *at, size_t n);

#endif
