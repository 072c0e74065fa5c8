/* bodybuf: see bodybuf.h. */
#include "bodybuf.h"

#include <string.h>

void bodybuf_init(struct bodybuf *b, char *buf, size_t cap)
{
    b->buf = buf;
    b->cap = cap;
    b->len = 0;
    buf[0] = '\0';
}

size_t bodybuf_write(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct bodybuf *b = arg;
    size_t n = size * nmemb, take = n;

    if (take > b->cap - b->len)
        take = b->cap - b->len;
    memcpy(b->buf + b->len, ptr, take);
    b->len += take;
    b->buf[b->len] = '\0';
    return n;
}
