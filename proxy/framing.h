/*
 * framing: how the proxy frames a response it relays to the client. The
 * upstream's framing is never passed through blindly: the body the client
 * gets may be rewritten (gateway links), so its length is the proxy's to
 * state.
 *
 * Layer 2, pure: a decision from facts, no I/O.
 */
#ifndef CREDPROXY_FRAMING_H
#define CREDPROXY_FRAMING_H

#include <stdbool.h>

enum framing_mode {
    FRAMING_NONE = 0, /* no body: 1xx, 204, 304, or the answer to HEAD */
    FRAMING_LENGTH,   /* the upstream's Content-Length, bytes passed unchanged */
    FRAMING_CHUNKED,  /* Transfer-Encoding: chunked (HTTP/1.1 clients) */
    FRAMING_CLOSE,    /* body ends when the connection closes (HTTP/1.0 clients) */
};

struct framing_input {
    int status;          /* the upstream's status */
    bool head;           /* the client's request was HEAD */
    bool client_http11;  /* the client spoke HTTP/1.1 (else 1.0) */
    bool length_known;   /* the upstream sent a Content-Length */
    bool body_rewritten; /* the proxy changes the body bytes (gateway link rewriting) */
};

struct framing {
    enum framing_mode mode;
    /* Send the upstream's Content-Length header (its length stays true: unchanged body, or HEAD).
     */
    bool send_length;
    bool must_close; /* the client connection must close after this response */
};

/* The framing of the response described by in. */
struct framing framing_decide(const struct framing_input *in);

/* The upstream's status allows no body (1xx, 204, 304). */
bool framing_status_has_no_body(int status);

#endif
