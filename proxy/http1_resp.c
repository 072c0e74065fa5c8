/*
 * http1_resp: strict response framing on llhttp. See http1_resp.h. The
 * header-block rules, the body sink and the wording of llhttp's refusals
 * are shared with the request framing (http1_msg); what is here is the
 * response's own.
 */
#include "http1_resp.h"

#include <stddef.h>
#include <string.h>

static const struct http1_msg_limits response_limits = {
    .max_head_bytes = HTTP1_RESP_MAX_HEAD_BYTES,
    .max_headers = HTTP1_RESP_MAX_HEADERS,
    .max_trailer_bytes = HTTP1_RESP_MAX_TRAILER_BYTES,
};

/* The parser whose llhttp_t this is (the shared callbacks get the msg through ll->data). */
static struct http1_resp *resp_of(llhttp_t *ll)
{
    return (struct http1_resp *)((char *)ll - offsetof(struct http1_resp, ll));
}

static int resp_fail(struct http1_resp *p, const char *msg)
{
    if (!p->err_msg)
        p->err_msg = msg;
    return -1;
}

/* A new message (the final head after interim ones starts afresh). */
static int resp_on_message_begin(llhttp_t *ll)
{
    http1_msg_begin(&resp_of(ll)->msg);
    return 0;
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
    bool bodiless = p->head_request || status == 204 || status == 304;
    if (bodiless)
        p->framing = HTTP1_RESP_NO_BODY;
    else if (ll->flags & F_CHUNKED)
        p->framing = HTTP1_RESP_CHUNKED;
    else if (ll->flags & F_CONTENT_LENGTH)
        p->framing = p->content_length == 0 ? HTTP1_RESP_NO_BODY : HTTP1_RESP_LENGTH;
    else
        p->framing = HTTP1_RESP_CLOSE;
    if (p->framing == HTTP1_RESP_CLOSE)
        p->keep_alive = false;
    p->phase = HTTP1_RESP_PHASE_BODY;
    p->msg.in_body = true;
    if (bodiless)
        return 1; /* llhttp skips any body; on_message_complete pauses */
    if (p->framing == HTTP1_RESP_NO_BODY)
        return 0; /* llhttp completes the message at once; on_message_complete pauses */
    return HPE_PAUSED;
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
        HTTP1_MSG_CALLBACKS,
        .on_message_begin = resp_on_message_begin,
        .on_headers_complete = resp_on_headers_complete,
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
    /* The headers array is large: only the fields in use are cleared. */
    memset(&p->ll, 0, sizeof(p->ll));
    p->phase = HTTP1_RESP_PHASE_HEAD;
    p->head_request = head_request;
    http1_msg_reset(&p->msg, &response_limits, p->headers, &p->nheaders);
    p->interim = 0;
    p->pending_cr = false;
    p->status = 0;
    p->http_major = p->http_minor = 0;
    p->framing = HTTP1_RESP_NO_BODY;
    p->content_length = -1;
    p->keep_alive = false;
    p->err_msg = NULL;
    llhttp_init(&p->ll, HTTP_RESPONSE, resp_settings());
    p->ll.data = &p->msg;
}

void http1_resp_clear(struct http1_resp *p)
{
    http1_msg_clear(&p->msg);
}

/* The response is refused: the first reason (its own, the shared rules' or llhttp's) stays. */
static enum http1_resp_status resp_error(struct http1_resp *p, llhttp_errno_t e)
{
    p->phase = HTTP1_RESP_PHASE_ERROR;
    resp_fail(p, http1_msg_refusal(http1_msg_error(&p->msg, e))->response);
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
    size_t used;
    llhttp_errno_t e =
        http1_msg_execute(&p->msg, &p->ll, data, http1_msg_room(&p->msg, len), &used);
    if (e != HPE_OK && e != HPE_PAUSED)
        return resp_error(p, e);
    if (resp_check_crlf(p, data, used) < 0)
        return resp_error(p, HPE_OK);
    *consumed = used;
    if (http1_msg_head_used(&p->msg, used) < 0)
        return resp_error(p, HPE_OK);
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
    http1_msg_body_begin(&p->msg, out, cap);
    llhttp_errno_t e = llhttp_execute(&p->ll, data, n);
    *produced = http1_msg_body_end(&p->msg);
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
    return http1_msg_name(&p->msg, i, len);
}

const char *http1_resp_header_value(const struct http1_resp *p, size_t i, size_t *len)
{
    return http1_msg_value(&p->msg, i, len);
}
