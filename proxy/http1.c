/*
 * http1: strict request framing on llhttp plus the header policy table.
 * See http1.h for the contract. The header-block rules, the body sink and
 * the wording of llhttp's refusals are shared with the response framing
 * (http1_msg); what is here is the request's own.
 */
#include "http1.h"

#include <stddef.h>
#include <string.h>

#include "util.h"

struct policy_entry {
    const char *name;
    enum http1_req_policy req;
    bool resp_pass;
    bool engine_owned; /* the upstream engines write it themselves, never from a header block */
    bool connection_refused; /* a Connection header may not list it (check_connection) */
};

/*
 * The header policy table. Request: client credentials and cookies never
 * travel; hop-by-hop headers (RFC 9110 §7.6.1) end at the proxy; Host and
 * Expect are the proxy's to set. Response: cookies never reach the agent
 * (no reusable session), framing is re-done by the proxy. Engine-owned:
 * the names both upstream engines derive from the request themselves (Host
 * from the URL, framing, connection management) and drop from a header
 * block. Connection-refused: a Connection header lists hop-by-hop headers a
 * proxy removes; naming an end-to-end framing header or a credential asks
 * the proxy to drop what defines the message or who sends it. No client
 * needs that, and proxies that honour it disagree with those that do not,
 * so such a request is refused. The one table for every header rule.
 */
static const struct policy_entry policy_table[] = {
    /* name, request, response passes, engine-owned, Connection may not list it */
    {"authorization", HTTP1_REQ_DROP, true, false, true},
    {"proxy-authorization", HTTP1_REQ_DROP, false, false, true},
    {"proxy-authenticate", HTTP1_REQ_DROP, false, false, false},
    {"proxy-authentication-info", HTTP1_REQ_DROP, false, false, false},
    {"cookie", HTTP1_REQ_DROP, true, false, true},
    {"cookie2", HTTP1_REQ_DROP, true, false, false},
    {"set-cookie", HTTP1_REQ_DROP, false, false, false},
    {"set-cookie2", HTTP1_REQ_DROP, false, false, false},
    {"connection", HTTP1_REQ_DROP, false, true, false},
    {"keep-alive", HTTP1_REQ_DROP, false, true, false},
    {"proxy-connection", HTTP1_REQ_DROP, false, true, false},
    {"te", HTTP1_REQ_DROP, false, true, false},
    {"trailer", HTTP1_REQ_DROP, false, false, false},
    {"transfer-encoding", HTTP1_REQ_DROP, false, true, true},
    {"upgrade", HTTP1_REQ_DROP, false, true, false},
    {"host", HTTP1_REQ_DROP, true, true, true},
    {"expect", HTTP1_REQ_DROP, true, true, false},
    {"content-length", HTTP1_REQ_CONTENT_LENGTH, false, true, true},
};

static const struct policy_entry *policy_find(const char *name, size_t len)
{
    for (size_t i = 0; i < UTIL_ARRAY_LEN(policy_table); i++) {
        if (strlen(policy_table[i].name) == len && util_memcaseeq(policy_table[i].name, name, len))
            return &policy_table[i];
    }
    return NULL;
}

static const struct http1_msg_limits request_limits = {
    .max_head_bytes = HTTP1_MAX_HEAD_BYTES,
    .max_headers = HTTP1_MAX_HEADERS,
    .max_trailer_bytes = HTTP1_MAX_TRAILER_BYTES,
};

/* The parser whose llhttp_t this is (the shared callbacks get the msg through ll->data). */
static struct http1_parser *parser_of(llhttp_t *ll)
{
    return (struct http1_parser *)((char *)ll - offsetof(struct http1_parser, ll));
}

static int fail(struct http1_parser *p, int status, const char *code, const char *msg)
{
    if (!p->err_status) {
        p->err_status = status;
        p->err_code = code;
        p->err_msg = msg;
    }
    return -1;
}

static int on_url(llhttp_t *ll, const char *at, size_t len)
{
    struct http1_parser *p = parser_of(ll);
    return http1_msg_span_add(&p->msg, HTTP1_MSG_SPAN_URL, &p->target_off, &p->target_len, at, len);
}

static int on_url_complete(llhttp_t *ll)
{
    struct http1_parser *p = parser_of(ll);
    if (p->msg.span != HTTP1_MSG_SPAN_URL)
        return fail(p, 400, "bad_request", "empty request target");
    p->msg.span = HTTP1_MSG_SPAN_NONE;
    for (uint32_t i = 0; i < p->target_len; i++) {
        unsigned char c = (unsigned char)p->msg.arena[p->target_off + i];
        if (c <= 0x20 || c == 0x7f)
            return fail(p, 400, "bad_request", "control byte in the request target");
    }
    return http1_msg_terminate(&p->msg);
}

static bool name_is(const struct http1_parser *p, const struct http1_header *h, const char *name)
{
    size_t n = strlen(name);
    return h->name_len == n && util_memcaseeq(p->msg.arena + h->name_off, name, n);
}

/*
 * Transfer-Encoding: one header whose value is exactly "chunked" (any case;
 * OWS is already trimmed). A list, a second header, a parameter or another
 * coding is ambiguous between implementations, so it is refused. RFC 9112
 * §6.1: a Transfer-Encoding in an HTTP/1.0 request means faulty framing.
 */
static int check_transfer_encoding(struct http1_parser *p)
{
    int te = 0;
    for (size_t i = 0; i < p->nheaders; i++) {
        const struct http1_header *h = &p->headers[i];
        if (!name_is(p, h, "transfer-encoding"))
            continue;
        if (++te > 1)
            return fail(p, 400, "bad_request", "more than one Transfer-Encoding header");
        if (h->value_len != 7 || !util_memcaseeq(p->msg.arena + h->value_off, "chunked", 7))
            return fail(p, 400, "bad_request", "Transfer-Encoding other than a single chunked");
    }
    if (te && p->http_minor == 0)
        return fail(p, 400, "bad_request", "Transfer-Encoding in an HTTP/1.0 request");
    return 0;
}

/* The Connection header must not list a name the header table marks connection_refused. */
static int check_connection(struct http1_parser *p)
{
    for (size_t i = 0; i < UTIL_ARRAY_LEN(policy_table); i++) {
        const char *name = policy_table[i].name;
        if (policy_table[i].connection_refused &&
            http1_request_connection_lists(p, name, strlen(name)))
            return fail(p, 400, "bad_request",
                        "the Connection header names a framing or credential header");
    }
    return 0;
}

static int on_headers_complete(llhttp_t *ll)
{
    struct http1_parser *p = parser_of(ll);
    int hosts = 0;

    p->http_major = llhttp_get_http_major(ll);
    p->http_minor = llhttp_get_http_minor(ll);
    if (p->http_major != 1 || p->http_minor > 1)
        return fail(p, 400, "bad_request", "only HTTP/1.0 and HTTP/1.1 are served");
    p->method = llhttp_method_name((llhttp_method_t)llhttp_get_method(ll));
    p->is_connect = llhttp_get_method(ll) == HTTP_CONNECT;
    p->is_head = llhttp_get_method(ll) == HTTP_HEAD;
    if (llhttp_get_method(ll) == HTTP_TRACE)
        return fail(p, 405, "method_not_allowed", "TRACE is not allowed through this proxy");

    p->host_index = -1;
    for (size_t i = 0; i < p->nheaders; i++) {
        const struct http1_header *h = &p->headers[i];
        if (name_is(p, h, "host")) {
            hosts++;
            p->host_index = (int)i;
        } else if (name_is(p, h, "expect")) {
            if (h->value_len == 12 &&
                util_memcaseeq(p->msg.arena + h->value_off, "100-continue", 12))
                p->expect_continue = true;
        } else if (name_is(p, h, "upgrade")) {
            p->upgrade = true;
        }
    }
    if (hosts > 1)
        return fail(p, 400, "bad_request", "duplicate Host header");
    if (check_transfer_encoding(p) < 0 || check_connection(p) < 0)
        return -1;
    /* CONNECT from some clients carries no Host; every other request must name one. */
    if (hosts == 0 && !p->is_connect)
        return fail(p, 400, "bad_request", "missing Host header");
    if (hosts == 1 && p->headers[p->host_index].value_len == 0 && !p->is_connect)
        return fail(p, 400, "bad_request", "empty Host header");

    p->chunked = (ll->flags & F_CHUNKED) != 0;
    if ((ll->flags & F_CONTENT_LENGTH) && (ll->flags & F_TRANSFER_ENCODING))
        return fail(p, 400, "bad_request", "both Content-Length and Transfer-Encoding");
    if ((ll->flags & F_TRANSFER_ENCODING) && !p->chunked)
        return fail(p, 400, "bad_request", "unsupported Transfer-Encoding");
    p->content_length = (ll->flags & F_CONTENT_LENGTH) ? (int64_t)ll->content_length : -1;
    if (p->content_length < -1)
        return fail(p, 400, "bad_request", "Content-Length is too large");
    p->has_body = p->chunked || p->content_length > 0;
    if (p->is_connect && p->has_body)
        return fail(p, 400, "bad_request", "CONNECT with a body");
    p->keep_alive = llhttp_should_keep_alive(ll) != 0;
    p->cstate = p->chunked ? HTTP1_CHUNK_SIZE_LINE : HTTP1_CHUNK_NONE;
    p->phase = HTTP1_PHASE_BODY;
    p->msg.in_body = true;
    return HPE_PAUSED;
}

static int on_chunk_header(llhttp_t *ll)
{
    struct http1_parser *p = parser_of(ll);
    p->last_chunk = ll->content_length == 0;
    return 0;
}

/*
 * After a chunk's closing CRLF: pause, so http1_parse_body knows where the
 * next chunk-size line starts. Not after the last chunk, whose completion
 * comes with the message's.
 */
static int on_chunk_complete(llhttp_t *ll)
{
    struct http1_parser *p = parser_of(ll);
    return p->last_chunk ? 0 : HPE_PAUSED;
}

static int on_message_complete(llhttp_t *ll)
{
    struct http1_parser *p = parser_of(ll);
    p->phase = HTTP1_PHASE_DONE;
    return HPE_PAUSED;
}

static const llhttp_settings_t *settings(void)
{
    static const llhttp_settings_t s = {
        HTTP1_MSG_CALLBACKS,
        .on_url = on_url,
        .on_url_complete = on_url_complete,
        .on_headers_complete = on_headers_complete,
        .on_chunk_header = on_chunk_header,
        .on_chunk_complete = on_chunk_complete,
        .on_message_complete = on_message_complete,
    };
    return &s;
}

void http1_parser_init(struct http1_parser *p)
{
    memset(p, 0, sizeof(*p));
    http1_parser_reset(p);
}

void http1_parser_reset(struct http1_parser *p)
{
    struct http1_msg msg = p->msg; /* its arena allocation is kept */
    memset(p, 0, sizeof(*p));
    p->msg = msg;
    http1_msg_reset(&p->msg, &request_limits, p->headers, &p->nheaders);
    p->content_length = -1;
    p->host_index = -1;
    llhttp_init(&p->ll, HTTP_REQUEST, settings());
    p->ll.data = &p->msg;
}

void http1_parser_clear(struct http1_parser *p)
{
    http1_msg_clear(&p->msg);
}

/* llhttp stopped: the answer for the first refusal (ours, the shared rules' or llhttp's). */
static enum http1_status parse_error(struct http1_parser *p, llhttp_errno_t e)
{
    enum http1_msg_err k = http1_msg_error(&p->msg, e);
    const struct http1_msg_refusal *r = http1_msg_refusal(k);

    p->phase = HTTP1_PHASE_ERROR;
    /* TRACK is IIS's TRACE: refused with the same answer (llhttp does not know it). */
    if (k == HTTP1_MSG_METHOD && p->peek_len >= 5 && memcmp(p->peek, "TRACK", 5) == 0)
        fail(p, 405, "method_not_allowed", "TRACK is not allowed through this proxy");
    fail(p, r->status, r->code, r->request);
    return HTTP1_ERROR;
}

/*
 * Checks llhttp's strict mode leaves to us, run over head bytes *before*
 * llhttp sees them: every LF ends a CRLF, and the request line has no two
 * spaces in a row. Also keeps the first bytes of the request line (leading
 * empty lines skipped) to name a refused method. Stops after the empty line
 * that ends the head (the bytes after it are the body's or the next
 * request's). Returns how many bytes are clean; *why names the violation
 * at that index, or stays NULL. Scanning first and feeding llhttp only the
 * clean bytes keeps the verdict the same however the bytes arrive.
 */
static size_t scan_head(struct http1_parser *p, const char *data, size_t len, const char **why)
{
    *why = NULL;
    for (size_t i = 0; i < len; i++) {
        char c = data[i];
        if (c == '\n') {
            if (!p->prev_cr) {
                *why = "bare LF in the request head";
                return i;
            }
            p->prev_cr = false;
            if (p->scan_line_len == 0 && p->scan_lines > 0) {
                p->scan_done = true;
                return i + 1;
            }
            if (p->scan_line_len > 0)
                p->scan_lines++;
            p->scan_line_len = 0;
            continue;
        }
        p->prev_cr = c == '\r';
        if (c == '\r') {
            /* A CR inside the request line ends the method as llhttp sees it. */
            if (p->scan_lines == 0 && p->scan_line_len > 0)
                p->peek_closed = true;
            continue;
        }
        p->scan_line_len++;
        if (p->scan_lines > 0)
            continue;
        if (c == ' ' && p->prev_sp) {
            *why = "more than one space in the request line";
            return i;
        }
        p->prev_sp = c == ' ';
        /*
         * The method: its bytes up to the first that is not a token byte.
         * Whatever llhttp has seen when it refuses, the peek is then the
         * same (fuzz_http1 found "TRA\rCK" named TRACK whole, "TRA" split).
         */
        if (!p->peek_closed && http1_is_tchar((unsigned char)c) && p->peek_len < HTTP1_METHOD_PEEK)
            p->peek[p->peek_len++] = c;
        else
            p->peek_closed = true;
    }
    return len;
}

enum http1_status http1_parse_head(struct http1_parser *p, const char *data, size_t len,
                                   size_t *consumed)
{
    *consumed = 0;
    if (p->phase == HTTP1_PHASE_ERROR)
        return HTTP1_ERROR;
    if (p->phase != HTTP1_PHASE_HEAD)
        return HTTP1_HEAD_DONE;
    size_t n = http1_msg_room(&p->msg, len), used;
    const char *why = NULL;
    if (!p->scan_done) {
        size_t clean = scan_head(p, data, n, &why);
        if (why)
            n = clean; /* llhttp gets the bytes before the violation: an earlier error wins */
    }
    llhttp_errno_t e = http1_msg_execute(&p->msg, &p->ll, data, n, &used);
    if (e != HPE_OK && e != HPE_PAUSED)
        return parse_error(p, e);
    if (why) {
        fail(p, 400, "bad_request", why);
        p->phase = HTTP1_PHASE_ERROR;
        return HTTP1_ERROR;
    }
    *consumed = used;
    if (http1_msg_head_used(&p->msg, used) < 0)
        return parse_error(p, HPE_OK);
    return e == HPE_PAUSED ? HTTP1_HEAD_DONE : HTTP1_NEED_MORE;
}

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/*
 * Checks over chunked-body bytes llhttp has accepted (at most one chunk per
 * call: llhttp pauses after each chunk). A chunk-size line is bounded in
 * digits and length; a trailer line, like a head, never ends in a bare LF.
 * Chunk data is not looked at. Returns -1 (with the error set) on a violation.
 */
static int scan_body(struct http1_parser *p, const char *data, size_t len)
{
    size_t i = 0;
    while (i < len && p->cstate == HTTP1_CHUNK_SIZE_LINE) {
        char c = data[i++];
        if (c == '\n') {
            if (!p->prev_cr)
                return fail(p, 400, "bad_request", "bare LF in a chunk-size line");
            p->cstate = p->last_chunk ? HTTP1_CHUNK_TRAILERS : HTTP1_CHUNK_DATA;
            p->prev_cr = false;
            p->prev_lf = true; /* a trailer line starts here */
            p->chunk_line_len = 0;
            p->chunk_digits = 0;
            p->chunk_digits_ended = false;
            break;
        }
        p->prev_cr = c == '\r';
        if (c == '\r')
            continue;
        if (++p->chunk_line_len > HTTP1_MAX_CHUNK_LINE)
            return fail(p, 400, "bad_request", "chunk extension is too long");
        if (!p->chunk_digits_ended && is_hex(c)) {
            if (++p->chunk_digits > HTTP1_MAX_CHUNK_SIZE_DIGITS)
                return fail(p, 400, "bad_request", "chunk size has too many digits");
        } else {
            p->chunk_digits_ended = true;
        }
    }
    if (p->cstate != HTTP1_CHUNK_TRAILERS)
        return 0;
    for (; i < len; i++) {
        if (data[i] == '\n' && !p->prev_cr)
            return fail(p, 400, "bad_request", "bare LF in a chunked trailer");
        if (p->prev_lf && (data[i] == ' ' || data[i] == '\t'))
            return fail(p, 400, "bad_request", "obsolete line folding in a chunked trailer");
        p->prev_cr = data[i] == '\r';
        p->prev_lf = data[i] == '\n';
    }
    return 0;
}

enum http1_status http1_parse_body(struct http1_parser *p, const char *data, size_t len,
                                   size_t *consumed, char *out, size_t cap, size_t *produced)
{
    *consumed = 0;
    *produced = 0;
    if (p->phase == HTTP1_PHASE_ERROR)
        return HTTP1_ERROR;
    if (p->phase == HTTP1_PHASE_DONE || (p->phase == HTTP1_PHASE_BODY && !p->has_body)) {
        p->phase = HTTP1_PHASE_DONE;
        return HTTP1_BODY_DONE;
    }
    if (p->phase != HTTP1_PHASE_BODY)
        return HTTP1_ERROR;
    /* Decoded bytes never outnumber raw bytes, so feeding at most cap keeps out from overflowing.
     */
    size_t n = len < cap ? len : cap;
    if (n == 0)
        return HTTP1_NEED_MORE;
    http1_msg_body_begin(&p->msg, out, cap);
    size_t pos = 0;
    enum http1_status st = HTTP1_NEED_MORE;
    while (pos < n) {
        llhttp_errno_t e = llhttp_execute(&p->ll, data + pos, n - pos);
        /* The message of an Upgrade request ended: llhttp answers PAUSED_UPGRADE. */
        if (e == HPE_PAUSED_UPGRADE)
            e = HPE_PAUSED;
        if (e != HPE_OK && e != HPE_PAUSED) {
            st = parse_error(p, e);
            break;
        }
        size_t used =
            e == HPE_PAUSED ? (size_t)(llhttp_get_error_pos(&p->ll) - (data + pos)) : n - pos;
        if (p->chunked && scan_body(p, data + pos, used) < 0) {
            p->phase = HTTP1_PHASE_ERROR;
            st = HTTP1_ERROR;
            break;
        }
        pos += used;
        if (e == HPE_OK)
            break;
        llhttp_resume(&p->ll);
        if (p->phase == HTTP1_PHASE_DONE) {
            st = HTTP1_BODY_DONE;
            break;
        }
        p->cstate = HTTP1_CHUNK_SIZE_LINE; /* paused after a chunk: a size line comes next */
    }
    /* On an error nothing decoded is valid: the caller forwards none of it. */
    size_t decoded = http1_msg_body_end(&p->msg);
    *produced = st == HTTP1_ERROR ? 0 : decoded;
    *consumed = pos;
    return st;
}

const char *http1_method(const struct http1_parser *p)
{
    return p->method ? p->method : "";
}

const char *http1_target(const struct http1_parser *p, size_t *len)
{
    *len = p->target_len;
    return p->msg.arena ? p->msg.arena + p->target_off : "";
}

const char *http1_header_name(const struct http1_parser *p, size_t i, size_t *len)
{
    return http1_msg_name(&p->msg, i, len);
}

const char *http1_header_value(const struct http1_parser *p, size_t i, size_t *len)
{
    return http1_msg_value(&p->msg, i, len);
}

int http1_find_header(const struct http1_parser *p, const char *name)
{
    for (size_t i = 0; i < p->nheaders; i++) {
        if (name_is(p, &p->headers[i], name))
            return (int)i;
    }
    return -1;
}

enum http1_req_policy http1_request_header_policy(const char *name, size_t len)
{
    const struct policy_entry *e = policy_find(name, len);
    return e ? e->req : HTTP1_REQ_PASS;
}

bool http1_header_engine_owned(const char *name, size_t len)
{
    const struct policy_entry *e = policy_find(name, len);
    return e && e->engine_owned;
}

bool http1_response_header_pass(const char *name, size_t len)
{
    const struct policy_entry *e = policy_find(name, len);
    return e ? e->resp_pass : true;
}

bool http1_token_listed(const char *list, size_t list_len, const char *name, size_t name_len)
{
    size_t i = 0;
    while (i < list_len) {
        while (i < list_len && (list[i] == ' ' || list[i] == '\t' || list[i] == ','))
            i++;
        size_t start = i;
        while (i < list_len && list[i] != ',')
            i++;
        size_t end = i;
        while (end > start && (list[end - 1] == ' ' || list[end - 1] == '\t'))
            end--;
        if (end - start == name_len && name_len > 0 && util_memcaseeq(list + start, name, name_len))
            return true;
    }
    return false;
}

bool http1_request_connection_lists(const struct http1_parser *p, const char *name, size_t len)
{
    for (size_t i = 0; i < p->nheaders; i++) {
        if (!name_is(p, &p->headers[i], "connection"))
            continue;
        size_t vlen;
        const char *v = http1_msg_value(&p->msg, i, &vlen);
        if (http1_token_listed(v, vlen, name, len))
            return true;
    }
    return false;
}

const char *http1_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 203:
        return "Non-Authoritative Information";
    case 204:
        return "No Content";
    case 205:
        return "Reset Content";
    case 206:
        return "Partial Content";
    case 207:
        return "Multi-Status";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 407:
        return "Proxy Authentication Required";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 416:
        return "Range Not Satisfiable";
    case 421:
        return "Misdirected Request";
    case 422:
        return "Unprocessable Content";
    case 423:
        return "Locked";
    case 428:
        return "Precondition Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Unknown";
    }
}
