/* upstream_block: the request header block both upstream engines take. See upstream.h. */
#include <stdlib.h>
#include <string.h>

#include "upstream.h"
#include "http1.h"
#include "util.h"

#define UPSTREAM_BLOCK_INITIAL 1024

bool upstream_hblock_add(struct upstream_hblock *b, const char *name, size_t nlen,
                         const char *value, size_t vlen)
{
    size_t need = nlen + vlen + 4;

    if (b->len + need > UPSTREAM_MAX_HEADER_BLOCK)
        return false;
    if (b->len + need > b->cap) {
        size_t cap = b->cap ? b->cap : UPSTREAM_BLOCK_INITIAL;
        char *nb;
        while (cap < b->len + need)
            cap *= 2;
        /* never realloc: the old bytes may hold the credential and must be wiped */
        nb = xmalloc(cap);
        if (b->len)
            memcpy(nb, b->buf, b->len);
        if (b->buf) {
            util_secure_zero(b->buf, b->cap);
            free(b->buf);
        }
        b->buf = nb;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, name, nlen);
    memcpy(b->buf + b->len + nlen, ": ", 2);
    memcpy(b->buf + b->len + nlen + 2, value, vlen);
    memcpy(b->buf + b->len + nlen + 2 + vlen, "\r\n", 2);
    b->len += need;
    return true;
}

bool upstream_hblock_add_line(struct upstream_hblock *b, const char *line)
{
    const char *colon = strchr(line, ':');
    const char *v;

    if (!colon || strpbrk(line, "\r\n"))
        return false;
    v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    return upstream_hblock_add(b, line, (size_t)(colon - line), v, strlen(v));
}

void upstream_hblock_wipe(struct upstream_hblock *b)
{
    if (b->buf) {
        util_secure_zero(b->buf, b->cap);
        free(b->buf);
    }
    memset(b, 0, sizeof(*b));
}

bool upstream_header_owned(const char *name, size_t len)
{
    return http1_header_engine_owned(name, len); /* the one header table, http1.c */
}
