/*
 * fuzz_http1: request framing. The input (after two control bytes) is fed
 * to the parser three ways: whole, split in two at a fuzzer-chosen point,
 * and byte by byte, each with a fuzzer-chosen body buffer size. Up to
 * FUZZ_MAX_REQUESTS pipelined requests are parsed. All three must agree on
 * every request's verdict (status), head facts, decoded body and the bytes
 * it used; an error is always 400, 405 or 431 with a code and produces no
 * body bytes in the call that reports it.
 */
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "http1.h"

#define FUZZ_MAX_REQUESTS 4
#define FUZZ_MAX_BODY 8192
#define FUZZ_BUF 256

struct verdict {
    int status; /* 0 parsed, -1 incomplete, else the error status */
    size_t nreq;
    size_t used[FUZZ_MAX_REQUESTS];
    size_t nheaders[FUZZ_MAX_REQUESTS];
    int64_t content_length[FUZZ_MAX_REQUESTS];
    bool chunked[FUZZ_MAX_REQUESTS];
    size_t body_len;  /* decoded so far */
    size_t body_done; /* decoded by the requests that completed */
    unsigned char body[FUZZ_MAX_BODY];
};

/* Feed data[0..len) delivering `avail` bytes at first, then `step` more at a time (0: all). */
static void parse(const uint8_t *data, size_t len, size_t first, size_t step, size_t cap,
                  struct verdict *v)
{
    struct http1_parser p;
    char buf[FUZZ_BUF];
    size_t pos = 0, avail = first < len ? first : len;
    bool head_done = false;

    memset(v, 0, sizeof(*v));
    http1_parser_init(&p);
    for (;;) {
        size_t consumed = 0;
        enum http1_status st;
        if (!head_done) {
            st = http1_parse_head(&p, (const char *)data + pos, avail - pos, &consumed);
            FUZZ_CHECK(consumed <= avail - pos);
            pos += consumed;
            if (st == HTTP1_HEAD_DONE) {
                head_done = true;
                v->nheaders[v->nreq] = p.nheaders;
                v->content_length[v->nreq] = p.content_length;
                v->chunked[v->nreq] = p.chunked;
                continue;
            }
        } else {
            size_t produced = 0;
            st = http1_parse_body(&p, (const char *)data + pos, avail - pos, &consumed, buf, cap,
                                  &produced);
            FUZZ_CHECK(consumed <= avail - pos && produced <= cap && produced <= consumed);
            FUZZ_CHECK(st != HTTP1_ERROR || produced == 0);
            pos += consumed;
            if (v->body_len + produced <= sizeof(v->body)) {
                memcpy(v->body + v->body_len, buf, produced);
                v->body_len += produced;
            }
            if (st == HTTP1_BODY_DONE) {
                v->body_done = v->body_len;
                v->used[v->nreq++] = pos;
                if (v->nreq == FUZZ_MAX_REQUESTS || p.is_connect || p.upgrade) {
                    v->status = 0;
                    break;
                }
                http1_parser_reset(&p);
                head_done = false;
                continue;
            }
        }
        if (st == HTTP1_ERROR) {
            v->status = p.err_status;
            FUZZ_CHECK(p.err_status == 400 || p.err_status == 405 || p.err_status == 431);
            FUZZ_CHECK(p.err_code != NULL && p.err_msg != NULL);
            break;
        }
        if (consumed == 0 && pos < avail)
            FUZZ_CHECK(!"the parser made no progress with bytes available");
        if (pos == avail) {
            if (avail == len) {
                v->status = -1;
                break;
            }
            avail = step == 0 || len - avail < step ? len : avail + step;
        }
    }
    http1_parser_clear(&p);
}

static void same(const struct verdict *a, const struct verdict *b)
{
    FUZZ_CHECK(a->status == b->status);
    FUZZ_CHECK(a->nreq == b->nreq);
    /*
     * Bodies of completed requests agree; a request that fails mid-body may
     * have streamed a different prefix before its error (the proxy cancels
     * the upstream exchange then, so no complete request is forwarded).
     */
    FUZZ_CHECK(a->body_done == b->body_done && memcmp(a->body, b->body, a->body_done) == 0);
    for (size_t i = 0; i < a->nreq; i++) {
        FUZZ_CHECK(a->used[i] == b->used[i]);
        FUZZ_CHECK(a->nheaders[i] == b->nheaders[i]);
        FUZZ_CHECK(a->content_length[i] == b->content_length[i]);
        FUZZ_CHECK(a->chunked[i] == b->chunked[i]);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct verdict whole, split, bytes;
    if (size < 2)
        return 0;
    size_t cap = 1 + data[0] % FUZZ_BUF; /* 1..FUZZ_BUF */
    size_t at = data[1];
    data += 2;
    size -= 2;
    at = size ? at % (size + 1) : 0;

    parse(data, size, size, 0, FUZZ_BUF, &whole);
    parse(data, size, at, 0, cap, &split);
    same(&whole, &split);
    parse(data, size, 1, 1, cap, &bytes);
    same(&whole, &bytes);
    return 0;
}
