/*
 * fuzz_rewrite: the streaming link rewriter (gateway JSON bodies). The body
 * is fed whole and again cut at up to FUZZ_MAX_CUTS fuzzer-chosen points;
 * both must produce the same output (or both abort), and the bytes held
 * back between feeds stay within rewrite_max_held. rewrite_location gets
 * the body as a Location header value.
 */
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "rewrite.h"

#define FUZZ_MAX_CUTS 8
#define FUZZ_MAX_OUT (1 << 20)

struct sink {
    char *buf;
    size_t len;
};

static int emit(void *arg, const char *p, size_t n)
{
    struct sink *s = arg;
    FUZZ_CHECK(n > 0);
    if (s->len + n > FUZZ_MAX_OUT)
        return -1;
    memcpy(s->buf + s->len, p, n);
    s->len += n;
    return 0;
}

static const char *const origins[][2] = {
    {"https://acme.atlassian.net", "http://acme.localhost:8080"},
    {"https://jira.example.org:8443", "http://127.0.0.1:8082"},
};

/* Feed body cut at cuts[0..ncuts) (sorted offsets); -1 when the rewriter aborts. */
static int run(const char *from, const char *to, const char *body, size_t len, const size_t *cuts,
               size_t ncuts, struct sink *out)
{
    struct rewrite *rw = rewrite_new(from, to);
    FUZZ_CHECK(rw != NULL);
    size_t pos = 0;
    int rc = 0;
    for (size_t i = 0; i <= ncuts && rc == 0; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        if (end < pos)
            continue;
        rc = rewrite_feed(rw, body + pos, end - pos, emit, out);
        FUZZ_CHECK(rewrite_held(rw) <= rewrite_max_held(rw));
        pos = end;
    }
    if (rc == 0)
        rc = rewrite_finish(rw, emit, out);
    rewrite_free(rw);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char a[FUZZ_MAX_OUT], b[FUZZ_MAX_OUT];
    size_t cuts[FUZZ_MAX_CUTS], ncuts;

    if (size < 1)
        return 0;
    unsigned which = data[0] & 1;
    ncuts = (data[0] >> 1) % (FUZZ_MAX_CUTS + 1);
    data++;
    size--;
    if (size < ncuts * 2)
        return 0;
    for (size_t i = 0; i < ncuts; i++) {
        size_t v = (size_t)data[2 * i] | (size_t)data[2 * i + 1] << 8;
        cuts[i] = v;
    }
    data += ncuts * 2;
    size -= ncuts * 2;
    for (size_t i = 0; i < ncuts; i++) {
        cuts[i] = size ? cuts[i] % (size + 1) : 0;
        for (size_t j = i; j > 0 && cuts[j] < cuts[j - 1]; j--) {
            size_t t = cuts[j];
            cuts[j] = cuts[j - 1];
            cuts[j - 1] = t;
        }
    }
    const char *body = (const char *)data;
    const char *from = origins[which][0], *to = origins[which][1];

    struct sink whole = {a, 0}, cut = {b, 0};
    int r1 = run(from, to, body, size, NULL, 0, &whole);
    int r2 = run(from, to, body, size, cuts, ncuts, &cut);
    FUZZ_CHECK(r1 == r2);
    if (r1 == 0)
        FUZZ_CHECK(whole.len == cut.len && memcmp(whole.buf, cut.buf, whole.len) == 0);

    /* A Location value: NUL-terminated copy of the body. */
    char *value = malloc(size + 1);
    FUZZ_CHECK(value != NULL);
    memcpy(value, body, size);
    value[size] = '\0';
    free(rewrite_location(value, from, to));
    free(value);
    return 0;
}
