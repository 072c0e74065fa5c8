/*
 * test_http1_resp: response framing as a table. Every case is parsed whole
 * and split in two at every byte, through a small decode buffer, and must
 * give the same answer each time.
 */
#include <stdlib.h>
#include <string.h>

#include "http1_resp.h"
#include "testlib.h"

#define OUT_BODY_MAX 4096

enum verdict { V_OK = 0, V_ERROR, V_INCOMPLETE };

struct outcome {
    enum verdict v;
    int status;
    enum http1_resp_framing framing;
    bool keep_alive;
    size_t nheaders;
    char body[OUT_BODY_MAX];
    size_t body_len;
    size_t rest; /* bytes after the response */
    const char *err;
};

/*
 * Parse raw delivered in two pieces split at `split`; eof: the server
 * closes after the last byte. cap: the decode buffer size.
 */
static void run(const char *raw, size_t len, size_t split, size_t cap, bool head_req, bool eof,
                struct outcome *o)
{
    struct http1_resp p;
    char buf[64];
    size_t avail = split < len ? split : len, pos = 0;
    bool head_done = false;

    memset(o, 0, sizeof(*o));
    if (cap > sizeof(buf))
        cap = sizeof(buf);
    http1_resp_init(&p, head_req);
    for (int guard = 0; guard < 100000; guard++) {
        size_t consumed = 0, produced = 0;
        enum http1_resp_status st;
        if (!head_done) {
            st = http1_resp_head(&p, raw + pos, avail - pos, &consumed);
            pos += consumed;
            if (st == HTTP1_RESP_HEAD_DONE) {
                head_done = true;
                o->status = p.status;
                o->framing = p.framing;
                o->nheaders = p.nheaders;
                continue;
            }
        } else {
            st = http1_resp_body(&p, raw + pos, avail - pos, &consumed, buf, cap, &produced);
            pos += consumed;
            if (o->body_len + produced <= sizeof(o->body)) {
                memcpy(o->body + o->body_len, buf, produced);
                o->body_len += produced;
            }
        }
        if (st == HTTP1_RESP_BODY_DONE) {
            o->v = V_OK;
            o->keep_alive = p.keep_alive;
            o->rest = len - pos;
            break;
        }
        if (st == HTTP1_RESP_ERROR) {
            o->v = V_ERROR;
            o->err = p.err_msg;
            break;
        }
        if (pos == avail) {
            if (avail < len) {
                avail = len;
                continue;
            }
            if (!eof) {
                o->v = V_INCOMPLETE;
                break;
            }
            st = http1_resp_eof(&p);
            o->v = st == HTTP1_RESP_BODY_DONE ? V_OK : V_ERROR;
            o->err = p.err_msg;
            o->keep_alive = p.keep_alive;
            break;
        }
    }
    http1_resp_clear(&p);
}

struct resp_case {
    const char *name;
    const char *raw;
    bool head_req;
    bool eof;
    enum verdict v;
    int status;
    enum http1_resp_framing framing;
    const char *body;
    bool keep_alive;
    size_t rest;
};

#define OK_HEAD "HTTP/1.1 200 OK\r\n"

static const struct resp_case cases[] = {
    {"content-length", OK_HEAD "Content-Length: 5\r\nX-A: b\r\n\r\nhello", false, false, V_OK, 200,
     HTTP1_RESP_LENGTH, "hello", true, 0},
    {"content-length then next response", OK_HEAD "Content-Length: 2\r\n\r\nhiHTTP/1.1 200 OK\r\n",
     false, false, V_OK, 200, HTTP1_RESP_LENGTH, "hi", true, 17},
    {"content-length zero", OK_HEAD "Content-Length: 0\r\n\r\n", false, false, V_OK, 200,
     HTTP1_RESP_NO_BODY, "", true, 0},
    {"chunked", OK_HEAD "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
     false, false, V_OK, 200, HTTP1_RESP_CHUNKED, "hello world", true, 0},
    {"chunked with extension and trailers",
     OK_HEAD "Transfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n", false,
     false, V_OK, 200, HTTP1_RESP_CHUNKED, "abc", true, 0},
    {"chunked uppercase hex",
     OK_HEAD "Transfer-Encoding: chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n", false, false, V_OK,
     200, HTTP1_RESP_CHUNKED, "0123456789", true, 0},
    {"close-delimited", OK_HEAD "Content-Type: text/plain\r\n\r\nuntil the end", false, true, V_OK,
     200, HTTP1_RESP_CLOSE, "until the end", false, 0},
    {"close-delimited empty", OK_HEAD "\r\n", false, true, V_OK, 200, HTTP1_RESP_CLOSE, "", false,
     0},
    {"http/1.0 content-length closes", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", false,
     false, V_OK, 200, HTTP1_RESP_LENGTH, "ok", false, 0},
    {"connection close honoured", OK_HEAD "Connection: close\r\nContent-Length: 2\r\n\r\nok", false,
     false, V_OK, 200, HTTP1_RESP_LENGTH, "ok", false, 0},
    {"204 no body", "HTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n", false, false, V_OK, 204,
     HTTP1_RESP_NO_BODY, "", true, 0},
    {"204 with a length has no body", "HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n", false,
     false, V_OK, 204, HTTP1_RESP_NO_BODY, "", true, 0},
    {"304 no body", "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\nETag: \"x\"\r\n\r\n", false,
     false, V_OK, 304, HTTP1_RESP_NO_BODY, "", true, 0},
    {"HEAD answer has no body", OK_HEAD "Content-Length: 100\r\n\r\n", true, false, V_OK, 200,
     HTTP1_RESP_NO_BODY, "", true, 0},
    {"HEAD answer chunked has no body", OK_HEAD "Transfer-Encoding: chunked\r\n\r\n", true, false,
     V_OK, 200, HTTP1_RESP_NO_BODY, "", true, 0},
    {"100 continue consumed",
     "HTTP/1.1 100 Continue\r\n\r\n" OK_HEAD "Content-Length: 3\r\n\r\nabc", false, false, V_OK,
     200, HTTP1_RESP_LENGTH, "abc", true, 0},
    {"103 early hints consumed",
     "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" OK_HEAD "Content-Length: 1\r\n\r\nz", false,
     false, V_OK, 200, HTTP1_RESP_LENGTH, "z", true, 0},
    {"two interims",
     "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n" OK_HEAD
     "Content-Length: 1\r\n\r\nz",
     false, false, V_OK, 200, HTTP1_RESP_LENGTH, "z", true, 0},
    {"404 with body", "HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nnop", false, false, V_OK,
     404, HTTP1_RESP_LENGTH, "nop", true, 0},
    {"empty reason phrase", "HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", false, false, V_OK, 200,
     HTTP1_RESP_NO_BODY, "", true, 0},
    {"trailing value white space", OK_HEAD "X-A: b  \t\r\nContent-Length: 0\r\n\r\n", false, false,
     V_OK, 200, HTTP1_RESP_NO_BODY, "", true, 0},

    /* Errors: never relayed. */
    {"101 refused",
     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n", false,
     false, V_ERROR, 0, 0, NULL, false, 0},
    {"CL and TE", OK_HEAD "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", false,
     false, V_ERROR, 0, 0, NULL, false, 0},
    {"TE and CL", OK_HEAD "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", false,
     false, V_ERROR, 0, 0, NULL, false, 0},
    {"duplicate differing CL", OK_HEAD "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
     false, false, V_ERROR, 0, 0, NULL, false, 0},
    {"duplicate equal CL", OK_HEAD "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", false,
     false, V_ERROR, 0, 0, NULL, false, 0},
    {"CL not a number", OK_HEAD "Content-Length: 5x\r\n\r\nhello", false, false, V_ERROR, 0, 0,
     NULL, false, 0},
    {"CL negative", OK_HEAD "Content-Length: -1\r\n\r\n", false, false, V_ERROR, 0, 0, NULL, false,
     0},
    {"CL list", OK_HEAD "Content-Length: 5, 5\r\n\r\nhello", false, false, V_ERROR, 0, 0, NULL,
     false, 0},
    {"TE gzip only", OK_HEAD "Transfer-Encoding: gzip\r\n\r\nxx", false, true, V_ERROR, 0, 0, NULL,
     false, 0},
    {"TE chunked not last", OK_HEAD "Transfer-Encoding: chunked, gzip\r\n\r\nxx", false, true,
     V_ERROR, 0, 0, NULL, false, 0},
    {"bad chunk size", OK_HEAD "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", false,
     false, V_ERROR, 0, 0, NULL, false, 0},
    {"chunk size overflow",
     OK_HEAD "Transfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\nhello\r\n0\r\n\r\n", false,
     false, V_ERROR, 0, 0, NULL, false, 0},
    {"chunk data longer than size",
     OK_HEAD "Transfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n", false, false, V_ERROR, 0,
     0, NULL, false, 0},
    {"obs-fold", OK_HEAD "X-A: b\r\n c\r\nContent-Length: 0\r\n\r\n", false, false, V_ERROR, 0, 0,
     NULL, false, 0},
    {"bare LF in head", "HTTP/1.1 200 OK\nContent-Length: 0\n\n", false, false, V_ERROR, 0, 0, NULL,
     false, 0},
    {"bare LF after header", OK_HEAD "X-A: b\nContent-Length: 0\r\n\r\n", false, false, V_ERROR, 0,
     0, NULL, false, 0},
    {"bare CR in value", OK_HEAD "X-A: b\rc\r\nContent-Length: 0\r\n\r\n", false, false, V_ERROR, 0,
     0, NULL, false, 0},
    {"control byte in value", OK_HEAD "X-A: b\001c\r\nContent-Length: 0\r\n\r\n", false, false,
     V_ERROR, 0, 0, NULL, false, 0},
    {"space before colon", OK_HEAD "X-A : b\r\nContent-Length: 0\r\n\r\n", false, false, V_ERROR, 0,
     0, NULL, false, 0},
    {"no colon", OK_HEAD "X-A b\r\nContent-Length: 0\r\n\r\n", false, false, V_ERROR, 0, 0, NULL,
     false, 0},
    {"status 2 digits", "HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n", false, false, V_ERROR, 0, 0,
     NULL, false, 0},
    {"status 600", "HTTP/1.1 600 Odd\r\nContent-Length: 0\r\n\r\n", false, false, V_ERROR, 0, 0,
     NULL, false, 0},
    {"HTTP/2 version", "HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", false, false, V_ERROR, 0, 0,
     NULL, false, 0},
    {"not HTTP", "SSH-2.0-OpenSSH_9.0\r\n\r\n", false, false, V_ERROR, 0, 0, NULL, false, 0},
    {"too many interims",
     "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n"
     "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n"
     "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 "
     "Continue\r\n\r\n" OK_HEAD "Content-Length: 0\r\n\r\n",
     false, false, V_ERROR, 0, 0, NULL, false, 0},
    {"truncated length body", OK_HEAD "Content-Length: 10\r\n\r\nabc", false, true, V_ERROR, 0, 0,
     NULL, false, 0},
    {"truncated chunked body", OK_HEAD "Transfer-Encoding: chunked\r\n\r\n5\r\nhel", false, true,
     V_ERROR, 0, 0, NULL, false, 0},
    {"truncated head", OK_HEAD "Content-Len", false, true, V_ERROR, 0, 0, NULL, false, 0},
    {"empty then eof", "", false, true, V_ERROR, 0, 0, NULL, false, 0},
    {"incomplete without eof", OK_HEAD "Content-Length: 10\r\n\r\nabc", false, false, V_INCOMPLETE,
     0, 0, NULL, false, 0},
};

static void check_case(const struct resp_case *c)
{
    size_t len = strlen(c->raw);
    static const size_t caps[] = {1, 7, 64};

    for (size_t k = 0; k < sizeof(caps) / sizeof(caps[0]); k++) {
        for (size_t split = 0; split <= len; split++) {
            struct outcome o;
            run(c->raw, len, split, caps[k], c->head_req, c->eof, &o);
            CHECK_MSG(o.v == c->v, "%s (split %zu cap %zu): verdict %d want %d (%s)", c->name,
                      split, caps[k], (int)o.v, (int)c->v, o.err ? o.err : "");
            if (o.v != c->v)
                return;
            if (c->v == V_ERROR) {
                CHECK_MSG(o.err != NULL, "%s: error without a message", c->name);
                continue;
            }
            if (c->v != V_OK)
                continue;
            CHECK_MSG(o.status == c->status, "%s: status %d", c->name, o.status);
            CHECK_MSG(o.framing == c->framing, "%s: framing %d", c->name, (int)o.framing);
            CHECK_MSG(o.body_len == strlen(c->body) && memcmp(o.body, c->body, o.body_len) == 0,
                      "%s (split %zu cap %zu): body %.*s", c->name, split, caps[k], (int)o.body_len,
                      o.body);
            CHECK_MSG(o.keep_alive == c->keep_alive, "%s: keep_alive %d", c->name, o.keep_alive);
            CHECK_MSG(o.rest == c->rest, "%s: rest %zu want %zu", c->name, o.rest, c->rest);
        }
    }
}

/*
 * Every refusal's sentence pinned, whole and split at every byte: the
 * header-block rules and llhttp's refusals are shared with the request
 * framing (http1_msg), each direction with its own words.
 */
struct answer_case {
    const char *name;
    const char *raw;
    bool eof;
    const char *msg;
};

#define RESP_CHUNKED OK_HEAD "Transfer-Encoding: chunked\r\n\r\n"

static const struct answer_case answer_cases[] = {
    {"empty header name", OK_HEAD ": 1\r\n\r\n", false, "the upstream sent an empty header name"},
    {"invalid header token", OK_HEAD "X(A): 1\r\n\r\n", false,
     "the upstream sent a malformed response"},
    {"obs-fold", OK_HEAD "X-A: b\r\n c\r\n\r\n", false,
     "the upstream used obsolete header line folding"},
    {"control byte", OK_HEAD "X-A: b\001c\r\n\r\n", false,
     "the upstream sent a malformed response"},
    {"CL and TE", OK_HEAD "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", false,
     "the upstream's Content-Length is ambiguous"},
    {"CL twice", OK_HEAD "Content-Length: 5\r\nContent-Length: 6\r\n\r\n", false,
     "the upstream's Content-Length is ambiguous"},
    {"CL not a number", OK_HEAD "Content-Length: 5x\r\n\r\n", false,
     "the upstream sent an invalid Content-Length"},
    {"bad chunk size", RESP_CHUNKED "zz\r\n", false, "the upstream sent an invalid chunk size"},
    {"TE chunked not last", OK_HEAD "Transfer-Encoding: chunked, gzip\r\n\r\n", true,
     "the upstream sent a Transfer-Encoding other than chunked"},
    {"status 2 digits", "HTTP/1.1 20 OK\r\n\r\n", false,
     "the upstream sent a status code outside 100..599"},
    {"HTTP/2", "HTTP/2.0 200 OK\r\n\r\n", false,
     "the upstream answered with an HTTP version other than 1.x"},
    {"not HTTP", "SSH-2.0\r\n\r\n", false, "the upstream sent a malformed response"},
    {"truncated body", OK_HEAD "Content-Length: 10\r\n\r\nabc", true,
     "the upstream closed the connection in the middle of the response body"},
    {"truncated head", OK_HEAD "Content-Len", true,
     "the upstream closed the connection before a complete response head"},
};

static void check_answer(const char *name, const char *raw, size_t len, bool eof, const char *msg,
                         size_t step)
{
    for (size_t split = 0; split <= len; split += step) {
        struct outcome *o = malloc(sizeof(*o));
        run(raw, len, split, 64, false, eof, o);
        CHECK_MSG(o->v == V_ERROR && o->err && strcmp(o->err, msg) == 0,
                  "%s split %zu: \"%s\", want \"%s\"", name, split, o->err ? o->err : "-", msg);
        free(o);
    }
}

static void test_answers(void)
{
    for (size_t i = 0; i < sizeof(answer_cases) / sizeof(answer_cases[0]); i++) {
        const struct answer_case *c = &answer_cases[i];
        check_answer(c->name, c->raw, strlen(c->raw), c->eof, c->msg, 1);
    }

    /* The limits: too many lines, too many bytes, too many trailer bytes. */
    char *raw = malloc(2 * HTTP1_RESP_MAX_HEAD_BYTES);
    size_t n = (size_t)sprintf(raw, OK_HEAD);
    for (int i = 0; i <= HTTP1_RESP_MAX_HEADERS; i++)
        n += (size_t)sprintf(raw + n, "X-%d: v\r\n", i);
    n += (size_t)sprintf(raw + n, "\r\n");
    check_answer("too many headers", raw, n, false,
                 "the upstream response has too many header fields", 97);

    /*
     * The line after the last allowed one with an invalid byte in its name:
     * the invalid byte wins at every split, as for requests (the count is
     * checked when the name is complete, not when it starts).
     */
    n = (size_t)sprintf(raw, OK_HEAD);
    for (int i = 0; i < HTTP1_RESP_MAX_HEADERS; i++)
        n += (size_t)sprintf(raw + n, "X-%d: v\r\n", i);
    n += (size_t)sprintf(raw + n, "X(A: v\r\n\r\n");
    check_answer("too many headers, the last one invalid", raw, n, false,
                 "the upstream sent a malformed response", 1);

    n = (size_t)sprintf(raw, OK_HEAD "X: ");
    memset(raw + n, 'a', HTTP1_RESP_MAX_HEAD_BYTES);
    n += HTTP1_RESP_MAX_HEAD_BYTES;
    n += (size_t)sprintf(raw + n, "\r\n\r\n");
    check_answer("head too large", raw, n, false, "the upstream response head is too large", 4099);

    n = (size_t)sprintf(raw, RESP_CHUNKED "0\r\n");
    while (n < 2 * HTTP1_RESP_MAX_TRAILER_BYTES)
        n += (size_t)sprintf(raw + n, "X-T: 0123456789\r\n");
    n += (size_t)sprintf(raw + n, "\r\n");
    check_answer("trailers too large", raw, n, false,
                 "the upstream's chunked trailers are too large", 1031);
    free(raw);
}

/* The head of the final response is what the accessors give; interim headers never show. */
static void test_headers(void)
{
    static const char raw[] = "HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" OK_HEAD
                              "Content-Type: application/json\r\nX-Empty:\r\nContent-Length: 2\r\n"
                              "\r\n{}";
    struct http1_resp p;
    size_t used = 0, n;
    http1_resp_init(&p, false);
    CHECK(http1_resp_head(&p, raw, sizeof(raw) - 1, &used) == HTTP1_RESP_HEAD_DONE);
    CHECK(used == sizeof(raw) - 3);
    CHECK(p.nheaders == 3);
    const char *v = http1_resp_header_name(&p, 0, &n);
    CHECK(n == 12 && memcmp(v, "Content-Type", 12) == 0);
    v = http1_resp_header_value(&p, 0, &n);
    CHECK(n == 16 && memcmp(v, "application/json", 16) == 0);
    v = http1_resp_header_value(&p, 1, &n);
    CHECK(n == 0);
    CHECK(p.interim == 1);
    /* reset: a second response on the same connection parses afresh */
    http1_resp_reset(&p, true);
    static const char again[] = OK_HEAD "Content-Length: 9\r\n\r\n";
    CHECK(http1_resp_head(&p, again, sizeof(again) - 1, &used) == HTTP1_RESP_HEAD_DONE);
    CHECK(p.framing == HTTP1_RESP_NO_BODY && p.nheaders == 1 && p.interim == 0);
    http1_resp_clear(&p);
}

/* Bounds: a head over the limit, too many headers, trailers over the limit. */
static void test_limits(void)
{
    struct http1_resp p;
    size_t used = 0;
    char *big = malloc(HTTP1_RESP_MAX_HEAD_BYTES + 4096);
    char pad[1001];
    size_t n = 0;

    memset(pad, 'p', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    n += (size_t)sprintf(big, OK_HEAD);
    while (n < HTTP1_RESP_MAX_HEAD_BYTES + 100)
        n += (size_t)sprintf(big + n, "X-Pad: %s\r\n", pad);
    http1_resp_init(&p, false);
    CHECK(http1_resp_head(&p, big, n, &used) == HTTP1_RESP_ERROR);
    CHECK_MSG(p.err_msg && strstr(p.err_msg, "too large"), "%s", p.err_msg ? p.err_msg : "");
    http1_resp_clear(&p);

    n = (size_t)sprintf(big, OK_HEAD);
    for (int i = 0; i <= HTTP1_RESP_MAX_HEADERS; i++)
        n += (size_t)sprintf(big + n, "X-%d: v\r\n", i);
    n += (size_t)sprintf(big + n, "\r\n");
    http1_resp_init(&p, false);
    CHECK(http1_resp_head(&p, big, n, &used) == HTTP1_RESP_ERROR);
    CHECK(p.err_msg && strstr(p.err_msg, "too many"));
    http1_resp_clear(&p);

    n = (size_t)sprintf(big, OK_HEAD "Transfer-Encoding: chunked\r\n\r\n0\r\n");
    while (n < 2 * HTTP1_RESP_MAX_TRAILER_BYTES)
        n += (size_t)sprintf(big + n, "X-T: 0123456789012345678901234567890123456789\r\n");
    n += (size_t)sprintf(big + n, "\r\n");
    http1_resp_init(&p, false);
    CHECK(http1_resp_head(&p, big, n, &used) == HTTP1_RESP_HEAD_DONE);
    char out[64];
    size_t pos = used, produced = 0;
    enum http1_resp_status st = HTTP1_RESP_NEED_MORE;
    while (st == HTTP1_RESP_NEED_MORE && pos < n) {
        st = http1_resp_body(&p, big + pos, n - pos, &used, out, sizeof(out), &produced);
        pos += used;
    }
    CHECK_MSG(st == HTTP1_RESP_ERROR, "st %d pos %zu n %zu", (int)st, pos, n);
    CHECK(p.err_msg && strstr(p.err_msg, "trailers"));
    http1_resp_clear(&p);
    free(big);
}

int main(void)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        check_case(&cases[i]);
    test_answers();
    test_headers();
    test_limits();
    TEST_DONE();
}
