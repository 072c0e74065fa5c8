/*
 * test_bodybuf: the commands' bounded body buffer as a table: pieces of a
 * body written in turn, with what is kept (always NUL-terminated, never
 * past the cap) and that every write answers "all taken" (a cut is not an
 * error). The bytes after the kept ones must not be touched.
 */
#include <stdbool.h>
#include <string.h>

#include "bodybuf.h"
#include "testlib.h"
#include "util.h"

#define MAX_PIECES 4

struct bodybuf_case {
    const char *name;
    size_t cap;
    const char *pieces[MAX_PIECES]; /* NULL-terminated */
    const char *kept;
};

static const struct bodybuf_case cases[] = {
    {"nothing written", 8, {NULL}, ""},
    {"empty piece", 8, {"", NULL}, ""},
    {"fits", 8, {"ready", NULL}, "ready"},
    {"exactly the cap", 5, {"ready", NULL}, "ready"},
    {"one past the cap", 4, {"ready", NULL}, "read"},
    {"pieces that fit", 16, {"not ", "ready: ", "x", NULL}, "not ready: x"},
    {"cut inside the second piece", 6, {"abcd", "efgh", NULL}, "abcdef"},
    {"full, then more", 3, {"abc", "def", "g", NULL}, "abc"},
    {"cap zero", 0, {"abc", NULL}, ""},
};

static void run_case(const struct bodybuf_case *c)
{
    char buf[32];
    struct bodybuf b;

    memset(buf, 'Z', sizeof(buf));
    bodybuf_init(&b, buf, c->cap);
    CHECK_MSG(buf[0] == '\0' && b.len == 0, "%s: starts empty", c->name);
    for (size_t i = 0; i < MAX_PIECES && c->pieces[i]; i++) {
        size_t n = strlen(c->pieces[i]);
        /* libcurl's shape: size 1, nmemb n; and the same bytes as nmemb 1, size n. */
        size_t taken = i % 2 ? bodybuf_write((char *)c->pieces[i], n, 1, &b)
                             : bodybuf_write((char *)c->pieces[i], 1, n, &b);
        CHECK_MSG(taken == n, "%s: piece %zu taken %zu of %zu", c->name, i, taken, n);
    }
    size_t want = strlen(c->kept);
    CHECK_MSG(b.len == want && memcmp(buf, c->kept, want) == 0, "%s: kept %zu bytes", c->name,
              b.len);
    CHECK_MSG(buf[b.len] == '\0', "%s: NUL-terminated", c->name);
    CHECK_MSG(b.len <= c->cap, "%s: within the cap", c->name);
    for (size_t i = c->cap + 1; i < sizeof(buf); i++)
        CHECK_MSG(buf[i] == 'Z', "%s: byte %zu past the buffer untouched", c->name, i);
}

/* A body is bytes: a NUL in it is kept and counted like any other. */
static void test_binary(void)
{
    char buf[8], body[] = {'a', '\0', 'b'};
    struct bodybuf b;

    bodybuf_init(&b, buf, sizeof(buf) - 1);
    CHECK(bodybuf_write(body, 1, sizeof(body), &b) == sizeof(body));
    CHECK(b.len == 3 && memcmp(buf, body, 3) == 0 && buf[3] == '\0');
}

int main(void)
{
    for (size_t i = 0; i < UTIL_ARRAY_LEN(cases); i++)
        run_case(&cases[i]);
    test_binary();
    TEST_DONE();
}
