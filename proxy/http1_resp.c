/*
 * http1_resp: strict response framing on llhttp. See http1_resp.h.
 */
#include "http1_resp.h"

#include <stdlib.h>
#include <string.h>

#include "http1.h"
#include "util.h"

/* NUL terminators and slack on top of the raw head bytes. */
#define HTTP1_RESP_ARENA_MAX (HTTP1_RESP_MAX_HEAD_BYTES + 2 * HTTP1_RESP_MAX_HEADERS + 64)
#define HTTP1_RESP_ARENA_INITIAL 1024

enum { RSPAN_NONE = 0, RSPAN_FIELD = 3, RSPAN_VALUE = 4 };

static struct http1_resp *resp_of(llhttp_t *ll)
{
    return ll->data;
}

static int resp_fail(struct http1_resp *p, const char *msg)
{
    if (!p->err_msg)
        p->err_msg = msg;
    return -1;
}

static int resp_append(struct http1_resp *p, const char *at, size_t len)
{
    if (http1_arena_append(&p->arena, &p->arena_len, &p->arena_cap, HTTP1_RESP_ARENA_INITIAL,
                           HTTP1_RESP_ARENA_MAX, at, len) < 0)
        return resp_fail(p, "the upstream response head is too large");
    return 0;
}

static int resp_terminate(struct http1_resp *p)
{
    if (resp_append(p, "", 0) < 0)
        return -1;
    p->arena[p->arena_len++] = '\0';
    return 0;
}

/* A new message (the final head after interim ones starts afresh). */
static int resp_on_message_begin(llhttp_t *ll)
{
    struct http1_resp *p = resp_of(ll);
    p->arena_len = 0;
    p->nheaders = 0;
    p->span = RSPAN_NONE;
    p->last_done = RSPAN_NONE;
    return 0;
}

static int resp_on_header_field(llhttp_t *ll, const char *at, size_t len)
{
    struct http1_resp *p = resp_of(ll);
    if (p->phase != HTTP1_RESP_PHASE_HEAD) {
        p->trailer_bytes += len;
        if (p->trailer_bytes > HTTP1_RESP_MAX_TRAILER_BYTES)
            return resp_fail(p, "the upstream's chunked trailers are too large");
        return 0;
    }
    if (p->span != RSPAN_FIELD) {
        if (p->nheaders >= HTTP1_RESP_MAX_HEADERS)
            return resp_fail(p, "the upstream response has too many header fields");
        p->span = RSPAN_FIELD;
        struct http1_resp_header *h = &p->headers[p->nheaders++];
        memset(h, 0, sizeof(*h));
        h->name_off = (uint32_t)p->arena_len;
    }
    if (resp_append(p, at, len) < 0)
        return -1;
    p->headers[p->nheaders - 1].name_len += (uint32_t)len;
    return 0;
}

static int resp_on_header_field_complete(llhttp_t *ll)
{
    struct http1_resp *p = resp_of(ll);
    if (p->phase != HTTP1_RESP_PHASE_HEAD)
        return 0;
    if (p->span != RSPAN_FIELD || p->headers[p->nheaders - 1].name_len == 0)
        return resp_fail(p, "the upstream sent an empty header name");
    const struct http1_resp_header *h = &p->headers[p->nheaders - 1];
    for (uint32_t i = 0; i < h->name_len; i++) {
        if (!http1_is_tchar((unsigned char)p->arena[h->name_off + i]))
            return resp_fail(p, "the upstream sent an invalid header name");
    }
    p->span = RSPAN_NONE;
    p->last_done = RSPAN_FIELD;
    return resp_terminate(p);
}

static int resp_on_header_value(llhttp_t *ll, const char *at, size_t len)
{
    struct http1_resp *p = resp_of(ll);
    if (p->phase != HTTP1_RESP_PHASE_HEAD) {
        p->trailer_bytes += len;
        if (p->trailer_bytes > HTTP1_RESP_MAX_TRAILER_BYTES)
            return resp_fail(p, "the upstream's chunked trailers are too large");
        return 0;
    }
    if (p->span != RSPAN_VALUE) {
        /* llhttp reports an obs-fold continuation as a second value span. */
        if (p->last_done != RSPAN_FIELD)
            return resp_fail(p, "the upstream used obsolete header line folding");
        p->span = RSPAN_VALUE;
        p->headers[p->nheaders - 1].value_off = (uint32_t)p->arena_len;
    } else if (!p->value_at_end || at != p->exec_start) {
        return resp_fail(p, "the upstream used obsolete header line folding");
    }
    p->value_at_end = at + len == p->exec_end;
    if (resp_append(p, at, len) < 0)
        return -1;
    p->headers[p->nheaders - 1].value_len += (uint32_t)len;
    return 0;
}

static int resp_on_header_value_complete(llhttp_t *ll)
{
    struct http1_resp *p = resp_of(ll);
    if (p->phase != HTTP1_RESP_PHASE_HEAD)
        return 0;
    struct http1_resp_header *h = &p->headers[p->nheaders - 1];
    if (p->last_done != RSPAN_FIELD && p->span != RSPAN_VALUE)
        return resp_fail(p, "the upstream used obsolete header line folding");
    p->last_done = RSPAN_VALUE;
    if (p->span != RSPAN_VALUE) {
        h->value_off = (uint32_t)p->arena_len;
        h->value_len = 0;
    }
    p->span = RSPAN_NONE;
    while (h->value_len > 0 && (p->arena[h->value_off + h->value_len - 1] == ' ' ||
                                p->arena[h->value_off + h->value_len - 1] == '\t'))
        h->value_len--;
    p->arena_len = h->value_off + h->value_len;
    for (uint32_t i = 0; i < h->value_len; i++) {
        unsigned char c = (unsigned char)p->arena[h->value_off + i];
        if (c == '\r' || c == '\n')
            return resp_fail(p, "the upstream used obsolete header line folding");
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return resp_fail(p, "the upstream sent a control byte in a header value");
    }
    return resp_terminate(p);
}

static int resp_on_headers_complete(llhttp_t *ll)
{
    struct http1_resp *p = resp_of(ll);
    int status = llhttp_get_status_code(ll);

    p->http_major = llhttp_get_http_major(ll);
    p->http_minor = llhttp_get_http_minor(ll);
    if (p->http_major != 1 || p->http_minor > 1)
        return resp_fail(p, "the upstream answered with an HTTP version other than 1.x");
    if (status < 100 || status > 599)
        return resp_fail(p, "the upstream sent a status code outside 100..599");
    if (status == 101)
        return resp_fail(p, "the upstream tried to switch protocols (101)");
    if ((ll->flags & F_CONTENT_LENGTH) && (ll->flags & F_TRANSFER_ENCODING))
        return resp_fail(p, "the upstream sent both Content-Length and Transfer-Encoding");
    if ((ll->flags & F_TRANSFER_ENCODING) && !(ll->flags & F_CHUNKED))
        return resp_fail(p, "the upstream sent a Transfer-Encoding other than chunked");
    if (status < 200) {
        /* Interim: consumed here, never passed on; the final head follows. */
        if (++p->interim > HTTP1_RESP_MAX_INTERIM)
            return resp_fail(p, "the upstream sent too many interim (1xx) responses");
        return 1; /* no body */
    }
    p->status = status;
    p->content_length = (ll->flags & F_CONTENT_LENGTH) ? (int64_t)ll->content_length : -1;
    if (p->content_length < -1)
        return resp_fail(p, "the upstream's Content-Length is too large");
    p->keep_alive = llhttp_should_keep_alive(ll) != 0;
    if (p->head_request || status == 204 || status == 304) {
        p->framing = HTTP1_RESP_NO_BODY;
        p->phase = HTTP1_RESP_PHASE_BODY;
        return 1; /* llhttp skips any body; on_message_complete pauses */
    }
    if (ll->flags & F_CHUNKED)
        p->framing = HTTP1_RESP_CHUNKED;
    else if (ll->flags & F_CONTENT_LENGTH)
        p->framing = p->content_length == 0 ? HTTP1_RESP_NO_BODY : HTTP1_RESP_LENGTH;
    else
        p->framing = HTTP1_RESP_CLOSE;
    if (p->framing == HTTP1_RESP_CLOSE)
        p->keep_alive = false;
    p->phase = HTTP1_RESP_PHASE_BODY;
    if (p->framing == HTTP1_RESP_NO_BODY)
        return 0; /* llhttp completes the message at once; on_message_complete pauses */
    return HPE_PAUSED;
}

static int resp_on_body(llhttp_t *ll, const char *at, size_t len)
{
    struct http1_resp *p = resp_of(ll);
    if (!p->body_out || p->body_len + len > p->body_cap)
        return resp_fail(p, "internal body framing error");
    memcpy(p->body_out + p->body_len, at, len);
    p->body_len += len;
    return 0;
}

static int resp_on_message_complete(llhttp_t *ll)
{
    struct http1_resp *p = resp_of(ll);
    if (p->phase == HTTP1_RESP_PHASE_HEAD)
        return 0; /* an interim head ended: go on to the next one */
    p->phase = HTTP1_RESP_PHASE_DONE;
    return HPE_PAUSED;
}

static const llhttp_settings_t *resp_settings(void)
{
    static const llhttp_settings_t s = {
        .on_message_begin = resp_on_message_begin,
        .on_header_field = resp_on_header_field,
        .on_header_field_complete = resp_on_header_field_complete,
        .on_header_value = resp_on_header_value,
        .on_header_value_complete = resp_on_header_value_complete,
        .on_headers_complete = resp_on_headers_complete,
        .on_body = resp_on_body,
        .on_message_complete = resp_on_message_complete,
    };
    return &s;
}

void http1_resp_init(struct http1_resp *p, bool head_request)
{
    memset(p, 0, sizeof(*p));
    http1_resp_reset(p, head_request);
}

void http1_resp_reset(struct http1_resp *p, bool head_request)
{
    char *arena = p->arena;
    size_t cap = p->arena_cap;
    /* The headers array is large: only the fields in use are cleared. */
    memset(&p->ll, 0, sizeof(p->ll));
    p->phase = HTTP1_RESP_PHASE_HEAD;
    p->head_request = head_request;
    p->arena = arena;
    p->arena_cap = cap;
    p->arena_len = 0;
    p->nheaders = 0;
    p->span = RSPAN_NONE;
    p->exec_start = p->exec_end = NULL;
    p->value_at_end = false;
    p->last_done = RSPAN_NONE;
    p->head_bytes = 0;
    p->trailer_bytes = 0;
    p->interim = 0;
    p->pending_cr = false;
    p->status = 0;
    p->http_major = p->http_minor = 0;
    p->framing = HTTP1_RESP_NO_BODY;
    p->content_length = -1;
    p->keep_alive = false;
    p->body_out = NULL;
    p->body_cap = p->body_len = 0;
    p->err_msg = NULL;
    llhttp_init(&p->ll, HTTP_RESPONSE, resp_settings());
    p->ll.data = p;
}

void http1_resp_clear(struct http1_resp *p)
{
    free(p->arena);
    p->arena = NULL;
    p->arena_cap = 0;
    p->arena_len = 0;
}

static enum http1_resp_status resp_error(struct http1_resp *p, llhttp_errno_t e)
{
    p->phase = HTTP1_RESP_PHASE_ERROR;
    if (!p->err_msg) {
        switch (e) {
        case HPE_UNEXPECTED_CONTENT_LENGTH:
            p->err_msg = "the upstream's Content-Length is ambiguous";
            break;
        case HPE_INVALID_CONTENT_LENGTH:
            p->err_msg = "the upstream sent an invalid Content-Length";
            break;
        case HPE_INVALID_CHUNK_SIZE:
            p->err_msg = "the upstream sent an invalid chunk size";
            break;
        case HPE_INVALID_TRANSFER_ENCODING:
            p->err_msg = "the upstream sent an invalid Transfer-Encoding";
            break;
        case HPE_INVALID_STATUS:
            p->err_msg = "the upstream sent an invalid status line";
            break;
        case HPE_INVALID_VERSION:
            p->err_msg = "the upstream sent an invalid HTTP version";
            break;
        case HPE_INVALID_EOF_STATE:
            p->err_msg = "the upstream closed the connection in the middle of the response";
            break;
        case HPE_CLOSED_CONNECTION:
            p->err_msg = "the upstream sent bytes after announcing it would close";
            break;
        default:
            p->err_msg = "the upstream sent a malformed response";
            break;
        }
    }
    return HTTP1_RESP_ERROR;
}

/* Line endings in head bytes must be CRLF: a bare LF or a lone CR is an error. */
static int resp_check_crlf(struct http1_resp *p, const char *data, size_t n)
{
    bool cr = p->pending_cr;
    for (size_t i = 0; i < n; i++) {
        char c = data[i];
        if (cr && c != '\n')
            return resp_fail(p, "the upstream sent a bare CR in its response head");
        if (!cr && c == '\n')
            return resp_fail(p, "the upstream sent a bare LF in its response head");
        cr = c == '\r';
    }
    p->pending_cr = cr;
    return 0;
}

enum http1_resp_status http1_resp_head(struct http1_resp *p, const char *data, size_t len,
                                       size_t *consumed)
{
    *consumed = 0;
    if (p->phase == HTTP1_RESP_PHASE_ERROR)
        return HTTP1_RESP_ERROR;
    if (p->phase != HTTP1_RESP_PHASE_HEAD)
        return HTTP1_RESP_HEAD_DONE;
    size_t room = HTTP1_RESP_MAX_HEAD_BYTES + 1 - p->head_bytes;
    size_t n = len < room ? len : room;
    p->exec_start = data;
    p->exec_end = data + n;
    llhttp_errno_t e = llhttp_execute(&p->ll, data, n);
    size_t used = n;
    if (e == HPE_PAUSED) {
        used = (size_t)(llhttp_get_error_pos(&p->ll) - data);
        llhttp_resume(&p->ll);
    } else if (e != HPE_OK) {
        return resp_error(p, e);
    }
    if (resp_check_crlf(p, data, used) < 0)
        return resp_error(p, HPE_OK);
    p->head_bytes += used;
    *consumed = used;
    if (p->head_bytes > HTTP1_RESP_MAX_HEAD_BYTES) {
        resp_fail(p, "the upstream response head is too large");
        return resp_error(p, HPE_OK);
    }
    return e == HPE_PAUSED ? HTTP1_RESP_HEAD_DONE : HTTP1_RESP_NEED_MORE;
}

enum http1_resp_status http1_resp_body(struct http1_resp *p, const char *data, size_t len,
                                       size_t *consumed, char *out, size_t cap, size_t *produced)
{
    *consumed = 0;
    *produced = 0;
    if (p->phase == HTTP1_RESP_PHASE_ERROR)
        return HTTP1_RESP_ERROR;
    if (p->phase == HTTP1_RESP_PHASE_DONE)
        return HTTP1_RESP_BODY_DONE;
    if (p->phase != HTTP1_RESP_PHASE_BODY)
        return HTTP1_RESP_ERROR;
    size_t n = len < cap ? len : cap;
    if (n == 0)
        return HTTP1_RESP_NEED_MORE;
    p->body_out = out;
    p->body_cap = cap;
    p->body_len = 0;
    p->exec_start = data;
    p->exec_end = data + n;
    llhttp_errno_t e = llhttp_execute(&p->ll, data, n);
    *produced = p->body_len;
    p->body_out = NULL;
    if (e == HPE_PAUSED) {
        *consumed = (size_t)(llhttp_get_error_pos(&p->ll) - data);
        p->phase = HTTP1_RESP_PHASE_DONE;
        return HTTP1_RESP_BODY_DONE;
    }
    if (e != HPE_OK)
        return resp_error(p, e);
    *consumed = n;
    return HTTP1_RESP_NEED_MORE;
}

enum http1_resp_status http1_resp_eof(struct http1_resp *p)
{
    if (p->phase == HTTP1_RESP_PHASE_ERROR)
        return HTTP1_RESP_ERROR;
    if (p->phase == HTTP1_RESP_PHASE_DONE)
        return HTTP1_RESP_BODY_DONE;
    if (p->phase == HTTP1_RESP_PHASE_BODY && p->framing == HTTP1_RESP_CLOSE) {
        /* EOF is this body's end by definition (llhttp may not have entered its body state). */
        p->phase = HTTP1_RESP_PHASE_DONE;
        return HTTP1_RESP_BODY_DONE;
    }
    resp_fail(p, p->phase == HTTP1_RESP_PHASE_HEAD
                     ? "the upstream closed the connection before a complete response head"
                     : "the upstream closed the connection in the middle of the response body");
    return resp_error(p, HPE_OK);
}

const char *http1_resp_header_name(const struct http1_resp *p, size_t i, size_t *len)
{
    *len = p->headers[i].name_len;
    return p->arena + p->headers[i].name_off;
}

const char *http1_resp_header_value(const struct http1_resp *p, size_t i, size_t *len)
{
    *len = p->headers[i].value_len;
    return p->arena + p->headers[i].value_off;
}
