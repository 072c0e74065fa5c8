/*
 * fuzz_http1_resp: the response framing (http1_resp) on arbitrary bytes.
 * The first input byte chooses the split point (scaled over the rest) and
 * whether the request was HEAD; the rest is the upstream's byte stream,
 * followed by EOF. Parsing it whole and in two pieces must give the same
 * verdict, status, framing, body bytes and leftover count; nothing may
 * read or write out of bounds (ASan) or loop.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http1_resp.h"

#define FUZZ_BODY_MAX (1 << 16) /* body bytes compared; the rest is counted only */
#define FUZZ_DECODE 61          /* an odd decode buffer size: exercises partial chunks */

struct fuzz_outcome {
    int verdict; /* 0 ok, 1 error, 2 incomplete */
    int status;
    int framing;
    bool keep_alive;
    size_t body_len;
    size_t rest;
    unsigned char body[FUZZ_BODY_MAX];
};

static void fuzz_run(const uint8_t *data, size_t len, size_t split, bool head_req,
                     struct fuzz_outcome *o)
{
    struct http1_resp p;
    char out[FUZZ_DECODE];
    size_t avail = split < len ? split : len, pos = 0;
    bool head_done = false;

    memset(o, 0, sizeof(*o));
    http1_resp_init(&p, head_req);
    for (;;) {
        size_t consumed = 0, produced = 0;
        enum http1_resp_status st;
        if (!head_done) {
            st = http1_resp_head(&p, (const char *)data + pos, avail - pos, &consumed);
            if (st == HTTP1_RESP_HEAD_DONE) {
                head_done = true;
                o->status = p.status;
                o->framing = (int)p.framing;
            }
        } else {
            st = http1_resp_body(&p, (const char *)data + pos, avail - pos, &consumed, out,
                                 sizeof(out), &produced);
            if (produced > sizeof(out))
                abort();
            if (o->body_len + produced <= FUZZ_BODY_MAX)
                memcpy(o->body + o->body_len, out, produced);
            o->body_len += produced;
        }
        if (consumed > avail - pos)
            abort();
        pos += consumed;
        if (st == HTTP1_RESP_BODY_DONE) {
            o->keep_alive = p.keep_alive;
            o->rest = len - pos;
            break;
        }
        if (st == HTTP1_RESP_ERROR) {
            o->verdict = 1;
            break;
        }
        if (st == HTTP1_RESP_HEAD_DONE)
            continue;
        if (consumed == 0 && pos < avail && !(head_done && produced > 0))
            abort(); /* no progress on available bytes: would loop */
        if (pos == avail) {
            if (avail < len) {
                avail = len;
                continue;
            }
            st = http1_resp_eof(&p);
            o->verdict = st == HTTP1_RESP_BODY_DONE ? 0 : 1;
            o->keep_alive = p.keep_alive;
            break;
        }
    }
    http1_resp_clear(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct fuzz_outcome whole, split;
    size_t len, at;
    bool head_req;

    if (size < 1)
        return 0;
    head_req = (data[0] & 0x80) != 0;
    data++;
    len = size - 1;
    at = len ? ((size_t)(data[-1] & 0x7f) * len) / 127 : 0;
    fuzz_run(data, len, len, head_req, &whole);
    fuzz_run(data, len, at, head_req, &split);
    if (whole.verdict != split.verdict)
        abort();
    if (whole.verdict == 0 &&
        (whole.status != split.status || whole.framing != split.framing ||
         whole.keep_alive != split.keep_alive || whole.rest != split.rest ||
         whole.body_len != split.body_len ||
         memcmp(whole.body, split.body,
                whole.body_len < FUZZ_BODY_MAX ? whole.body_len : FUZZ_BODY_MAX) != 0))
        abort();
    return 0;
}
