/*
 * bodybuf: the first bytes of a response body, for the commands' one-shot
 * libcurl transfers (`credproxy check`, `credproxy healthcheck`): a buffer
 * with a maximum, always NUL-terminated, filled by a function of libcurl's
 * CURLOPT_WRITEFUNCTION shape. Bytes past the maximum are dropped, not an
 * error: these callers read a reason line or a small JSON document, and
 * the transfer must still finish so its status can be read.
 *
 * Layer 0: no libcurl types, no allocation, no logging. Never treats the
 * bytes as anything but bytes.
 */
#ifndef CREDPROXY_BODYBUF_H
#define CREDPROXY_BODYBUF_H

#include <stddef.h>

struct bodybuf {
    char *buf;  /* the caller's, cap + 1 bytes (the NUL) */
    size_t cap; /* body bytes kept at most */
    size_t len; /* body bytes kept so far */
};

/* Empty b over buf (cap + 1 bytes, borrowed for b's life): len 0, buf "". */
void bodybuf_init(struct bodybuf *b, char *buf, size_t cap);

/*
 * CURLOPT_WRITEFUNCTION with CURLOPT_WRITEDATA pointing at a bodybuf:
 * appends what fits of size * nmemb bytes and always answers that all
 * were taken.
 */
size_t bodybuf_write(char *ptr, size_t size, size_t nmemb, void *arg);

#endif
