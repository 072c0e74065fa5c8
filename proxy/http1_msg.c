/*
 * http1_msg: the header block, trailers, body sink and refusal kinds both
 * HTTP/1 framings share. See http1_msg.h.
 */
#include "http1_msg.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

/* llhttp.c tests LLHTTP_STRICT_MODE with #if: CMake defines it for llhttp and for us. */
#if !LLHTTP_STRICT_MODE
#error "llhttp must be built with LLHTTP_STRICT_MODE=1 (see CMakeLists.txt)"
#endif

#define HTTP1_MSG_ARENA_INITIAL 1024

/* The raw head bytes plus a NUL per name and value and a little slack. */
static size_t arena_max(const struct http1_msg_limits *lim)
{
    return lim->max_head_bytes + 2 * lim->max_headers + 64;
}

static struct http1_msg *msg_of(llhttp_t *ll)
{
    return ll->data;
}

static int refuse(struct http1_msg *m, enum http1_msg_err k)
{
    if (m->err == HTTP1_MSG_OK)
        m->err = k;
    return -1;
}

int http1_arena_append(char **arena, size_t *len, size_t *cap, size_t initial, size_t max,
                       const char *at, size_t n)
{
    if (*len + n + 1 > max)
        return -1;
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : initial;
        while (c < *len + n + 1)
            c *= 2;
        if (c > max)
            c = max;
        *arena = xrealloc(*arena, c);
        *cap = c;
    }
    memcpy(*arena + *len, at, n);
    *len += n;
    return 0;
}

bool http1_is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

void http1_msg_reset(struct http1_msg *m, const struct http1_msg_limits *lim,
                     struct http1_header *headers, size_t *nheaders)
{
    char *arena = m->arena;
    size_t cap = m->arena_cap;

    memset(m, 0, sizeof(*m));
    m->arena = arena;
    m->arena_cap = cap;
    m->lim = lim;
    m->headers = headers;
    m->nheaders = nheaders;
    *nheaders = 0;
}

void http1_msg_begin(struct http1_msg *m)
{
    m->arena_len = 0;
    *m->nheaders = 0;
    m->span = HTTP1_MSG_SPAN_NONE;
    m->last_done = HTTP1_MSG_SPAN_NONE;
    m->too_many = false;
}

void http1_msg_clear(struct http1_msg *m)
{
    free(m->arena);
    m->arena = NULL;
    m->arena_cap = 0;
    m->arena_len = 0;
}

int http1_msg_append(struct http1_msg *m, const char *at, size_t n)
{
    if (http1_arena_append(&m->arena, &m->arena_len, &m->arena_cap, HTTP1_MSG_ARENA_INITIAL,
                           arena_max(m->lim), at, n) < 0)
        return refuse(m, HTTP1_MSG_HEAD_TOO_LARGE);
    return 0;
}

int http1_msg_terminate(struct http1_msg *m)
{
    if (http1_msg_append(m, "", 0) < 0)
        return -1;
    m->arena[m->arena_len++] = '\0';
    return 0;
}

int http1_msg_span_add(struct http1_msg *m, enum http1_msg_span kind, uint32_t *off, uint32_t *len,
                       const char *at, size_t n)
{
    if (m->span != kind) {
        m->span = kind;
        *off = (uint32_t)m->arena_len;
        *len = 0;
    }
    if (http1_msg_append(m, at, n) < 0)
        return -1;
    *len += (uint32_t)n;
    return 0;
}

size_t http1_msg_room(const struct http1_msg *m, size_t len)
{
    size_t room = m->lim->max_head_bytes + 1 - m->head_bytes;
    return len < room ? len : room;
}

llhttp_errno_t http1_msg_execute(struct http1_msg *m, llhttp_t *ll, const char *data, size_t n,
                                 size_t *used)
{
    m->exec_start = data;
    m->exec_end = data + n;
    llhttp_errno_t e = llhttp_execute(ll, data, n);
    *used = n;
    if (e == HPE_PAUSED) {
        *used = (size_t)(llhttp_get_error_pos(ll) - data);
        llhttp_resume(ll);
    }
    return e;
}

int http1_msg_head_used(struct http1_msg *m, size_t used)
{
    m->head_bytes += used;
    if (m->head_bytes > m->lim->max_head_bytes)
        return refuse(m, HTTP1_MSG_HEAD_TOO_LARGE);
    return 0;
}

void http1_msg_body_begin(struct http1_msg *m, char *out, size_t cap)
{
    m->body_out = out;
    m->body_cap = cap;
    m->body_len = 0;
}

size_t http1_msg_body_end(struct http1_msg *m)
{
    m->body_out = NULL;
    return m->body_len;
}

const char *http1_msg_name(const struct http1_msg *m, size_t i, size_t *len)
{
    *len = m->headers[i].name_len;
    return m->arena + m->headers[i].name_off;
}

const char *http1_msg_value(const struct http1_msg *m, size_t i, size_t *len)
{
    *len = m->headers[i].value_len;
    return m->arena + m->headers[i].value_off;
}

/* The header whose name or value llhttp is handing over. */
static struct http1_header *last_header(struct http1_msg *m)
{
    return &m->headers[*m->nheaders - 1];
}

/* Trailer name and value bytes are only counted: trailers are dropped. */
static int count_trailer(struct http1_msg *m, size_t len)
{
    m->trailer_bytes += len;
    if (m->trailer_bytes > m->lim->max_trailer_bytes)
        return refuse(m, HTTP1_MSG_TRAILERS_TOO_LARGE);
    return 0;
}

int http1_msg_on_header_field(llhttp_t *ll, const char *at, size_t len)
{
    struct http1_msg *m = msg_of(ll);
    if (m->in_body)
        return count_trailer(m, len);
    if (m->too_many)
        return 0;
    if (m->span != HTTP1_MSG_SPAN_FIELD) {
        /*
         * Refused when the name is complete, not here: llhttp hands over a
         * name in one piece or many depending on how the bytes arrived, and
         * an invalid byte later in the name must win either way.
         */
        if (*m->nheaders >= m->lim->max_headers) {
            m->too_many = true;
            return 0;
        }
        memset(&m->headers[(*m->nheaders)++], 0, sizeof(struct http1_header));
    }
    struct http1_header *h = last_header(m);
    return http1_msg_span_add(m, HTTP1_MSG_SPAN_FIELD, &h->name_off, &h->name_len, at, len);
}

int http1_msg_on_header_field_complete(llhttp_t *ll)
{
    struct http1_msg *m = msg_of(ll);
    if (m->in_body)
        return 0;
    if (m->too_many)
        return refuse(m, HTTP1_MSG_TOO_MANY_HEADERS);
    if (m->span != HTTP1_MSG_SPAN_FIELD || last_header(m)->name_len == 0)
        return refuse(m, HTTP1_MSG_EMPTY_NAME);
    const struct http1_header *h = last_header(m);
    for (uint32_t i = 0; i < h->name_len; i++) {
        if (!http1_is_tchar((unsigned char)m->arena[h->name_off + i]))
            return refuse(m, HTTP1_MSG_BAD_NAME);
    }
    m->span = HTTP1_MSG_SPAN_NONE;
    m->last_done = HTTP1_MSG_SPAN_FIELD;
    return http1_msg_terminate(m);
}

int http1_msg_on_header_value(llhttp_t *ll, const char *at, size_t len)
{
    struct http1_msg *m = msg_of(ll);
    if (m->in_body)
        return count_trailer(m, len);
    if (m->span != HTTP1_MSG_SPAN_VALUE) {
        /* llhttp folds "\r\n value" continuations into a second value span: refuse obs-fold. */
        if (m->last_done != HTTP1_MSG_SPAN_FIELD)
            return refuse(m, HTTP1_MSG_OBS_FOLD);
    } else if (!m->value_at_end || at != m->exec_start) {
        /* A value continued other than across two execute calls: "\r\n SP" obs-fold. */
        return refuse(m, HTTP1_MSG_OBS_FOLD);
    }
    m->value_at_end = at + len == m->exec_end;
    struct http1_header *h = last_header(m);
    return http1_msg_span_add(m, HTTP1_MSG_SPAN_VALUE, &h->value_off, &h->value_len, at, len);
}

int http1_msg_on_header_value_complete(llhttp_t *ll)
{
    struct http1_msg *m = msg_of(ll);
    if (m->in_body)
        return 0;
    struct http1_header *h = last_header(m);
    if (m->last_done != HTTP1_MSG_SPAN_FIELD && m->span != HTTP1_MSG_SPAN_VALUE)
        return refuse(m, HTTP1_MSG_OBS_FOLD);
    m->last_done = HTTP1_MSG_SPAN_VALUE;
    if (m->span != HTTP1_MSG_SPAN_VALUE) {
        h->value_off = (uint32_t)m->arena_len;
        h->value_len = 0;
    }
    m->span = HTTP1_MSG_SPAN_NONE;
    /* Trailing optional white space is not part of the value (RFC 9110 §5.5). */
    while (h->value_len > 0 && (m->arena[h->value_off + h->value_len - 1] == ' ' ||
                                m->arena[h->value_off + h->value_len - 1] == '\t'))
        h->value_len--;
    m->arena_len = h->value_off + h->value_len;
    for (uint32_t i = 0; i < h->value_len; i++) {
        unsigned char c = (unsigned char)m->arena[h->value_off + i];
        if (c == '\r' || c == '\n')
            return refuse(m, HTTP1_MSG_OBS_FOLD);
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return refuse(m, HTTP1_MSG_CONTROL_BYTE);
    }
    return http1_msg_terminate(m);
}

int http1_msg_on_body(llhttp_t *ll, const char *at, size_t len)
{
    struct http1_msg *m = msg_of(ll);
    if (!m->body_out || m->body_len + len > m->body_cap)
        return refuse(m, HTTP1_MSG_BODY_OVERRUN);
    memcpy(m->body_out + m->body_len, at, len);
    m->body_len += len;
    return 0;
}

enum http1_msg_err http1_msg_error(const struct http1_msg *m, llhttp_errno_t e)
{
    if (m->err != HTTP1_MSG_OK)
        return m->err;
    switch (e) {
    case HPE_UNEXPECTED_CONTENT_LENGTH:
        return HTTP1_MSG_CL_AMBIGUOUS;
    case HPE_INVALID_CONTENT_LENGTH:
        return HTTP1_MSG_CL_INVALID;
    case HPE_INVALID_CHUNK_SIZE:
        return HTTP1_MSG_CHUNK_SIZE;
    case HPE_INVALID_TRANSFER_ENCODING:
        return HTTP1_MSG_TE_INVALID;
    case HPE_INVALID_HEADER_TOKEN:
        return HTTP1_MSG_HEADER_TOKEN;
    case HPE_INVALID_METHOD:
        return HTTP1_MSG_METHOD;
    case HPE_INVALID_URL:
        return HTTP1_MSG_URL;
    case HPE_INVALID_STATUS:
        return HTTP1_MSG_STATUS;
    case HPE_INVALID_VERSION:
        return HTTP1_MSG_VERSION;
    case HPE_INVALID_EOF_STATE:
        return HTTP1_MSG_EOF;
    case HPE_CLOSED_CONNECTION:
        return HTTP1_MSG_AFTER_CLOSE;
    default:
        return HTTP1_MSG_MALFORMED;
    }
}

#define BAD_REQUEST 400, "bad_request"
#define TOO_LARGE 431, "headers_too_large"
#define MALFORMED_REQUEST "malformed request"
#define MALFORMED_RESPONSE "the upstream sent a malformed response"

/*
 * Every refusal, as the request framing answers the client and as the
 * response framing words it. A kind that cannot arise one way (a status
 * line in a request) still has words there: the generic ones.
 */
static const struct http1_msg_refusal refusals[HTTP1_MSG_NERR] = {
    [HTTP1_MSG_OK] = {BAD_REQUEST, MALFORMED_REQUEST, MALFORMED_RESPONSE},
    [HTTP1_MSG_HEAD_TOO_LARGE] = {TOO_LARGE, "the request head is too large",
                                  "the upstream response head is too large"},
    [HTTP1_MSG_TOO_MANY_HEADERS] = {TOO_LARGE, "the request has too many header lines",
                                    "the upstream response has too many header fields"},
    [HTTP1_MSG_EMPTY_NAME] = {BAD_REQUEST, "empty header name",
                              "the upstream sent an empty header name"},
    [HTTP1_MSG_BAD_NAME] = {BAD_REQUEST, "invalid header name",
                            "the upstream sent an invalid header name"},
    [HTTP1_MSG_OBS_FOLD] = {BAD_REQUEST, "obsolete line folding in a header",
                            "the upstream used obsolete header line folding"},
    [HTTP1_MSG_CONTROL_BYTE] = {BAD_REQUEST, "control byte in a header value",
                                "the upstream sent a control byte in a header value"},
    [HTTP1_MSG_TRAILERS_TOO_LARGE] = {BAD_REQUEST, "chunked trailers are too large",
                                      "the upstream's chunked trailers are too large"},
    [HTTP1_MSG_BODY_OVERRUN] = {BAD_REQUEST, "internal body framing error",
                                "internal body framing error"},
    [HTTP1_MSG_CL_AMBIGUOUS] = {BAD_REQUEST, "Content-Length is ambiguous",
                                "the upstream's Content-Length is ambiguous"},
    [HTTP1_MSG_CL_INVALID] = {BAD_REQUEST, "invalid Content-Length",
                              "the upstream sent an invalid Content-Length"},
    [HTTP1_MSG_CHUNK_SIZE] = {BAD_REQUEST, "invalid chunk size",
                              "the upstream sent an invalid chunk size"},
    [HTTP1_MSG_TE_INVALID] = {BAD_REQUEST, "invalid Transfer-Encoding",
                              "the upstream sent an invalid Transfer-Encoding"},
    [HTTP1_MSG_HEADER_TOKEN] = {BAD_REQUEST, "invalid header", MALFORMED_RESPONSE},
    [HTTP1_MSG_METHOD] = {BAD_REQUEST, "unknown method", MALFORMED_RESPONSE},
    [HTTP1_MSG_URL] = {BAD_REQUEST, "invalid request target", MALFORMED_RESPONSE},
    [HTTP1_MSG_STATUS] = {BAD_REQUEST, MALFORMED_REQUEST,
                          "the upstream sent an invalid status line"},
    [HTTP1_MSG_VERSION] = {BAD_REQUEST, "invalid HTTP version",
                           "the upstream sent an invalid HTTP version"},
    [HTTP1_MSG_EOF] = {BAD_REQUEST, MALFORMED_REQUEST,
                       "the upstream closed the connection in the middle of the response"},
    [HTTP1_MSG_AFTER_CLOSE] = {BAD_REQUEST, MALFORMED_REQUEST,
                               "the upstream sent bytes after announcing it would close"},
    [HTTP1_MSG_MALFORMED] = {BAD_REQUEST, MALFORMED_REQUEST, MALFORMED_RESPONSE},
};

const struct http1_msg_refusal *http1_msg_refusal(enum http1_msg_err k)
{
    return (unsigned)k < HTTP1_MSG_NERR ? &refusals[k] : &refusals[HTTP1_MSG_MALFORMED];
}
