/*
 * test_rewrite: the gateway link rewriter. Hand-written expectations for the
 * one-shot result; then the same inputs split at every byte boundary (two
 * and three pieces) and fed one byte at a time must give exactly the same
 * bytes; a 1 MiB body with links at random places against an independent
 * reference replace; held bytes stay bounded; Location values.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rewrite.h"
#include "testlib.h"
#include "util.h"

#define FROM "https://acme.atlassian.net"
#define TO "http://127.0.0.1:8082"
/* Any single run's output is far below this; exceeding it is a failure. */
#define SINK_MAX (8u << 20)

struct sink {
    char *data;
    size_t len, cap;
    bool overflow;
    int fail_after; /* emit fails after this many calls; -1 = never */
    int calls;
};

static int sink_emit(void *arg, const char *p, size_t n)
{
    struct sink *s = arg;

    if (n == 0)
        s->overflow = true; /* the contract says n > 0; flag a violation */
    if (s->fail_after >= 0 && s->calls >= s->fail_after)
        return -1;
    s->calls++;
    if (s->len + n > SINK_MAX) {
        s->overflow = true;
        return -1;
    }
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 256;
        while (cap < s->len + n + 1)
            cap *= 2;
        s->data = xrealloc(s->data, cap);
        s->cap = cap;
    }
    memcpy(s->data + s->len, p, n);
    s->len += n;
    s->data[s->len] = '\0';
    return 0;
}

static void sink_init(struct sink *s)
{
    memset(s, 0, sizeof(*s));
    s->fail_after = -1;
    s->data = xmalloc(1);
    s->data[0] = '\0';
    s->cap = 1;
}

static bool sink_is(const struct sink *s, const char *want, size_t wlen)
{
    return !s->overflow && s->len == wlen && memcmp(s->data, want, wlen) == 0;
}

/* Feed in the given pieces (cuts are offsets, ascending), then finish. */
static void run_cuts(struct rewrite *rw, const char *in, size_t len, const size_t *cuts,
                     size_t ncuts, struct sink *out, bool *bounded)
{
    size_t prev = 0;

    for (size_t i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        if (rewrite_feed(rw, in + prev, end - prev, sink_emit, out) < 0)
            out->overflow = true;
        if (rewrite_held(rw) > rewrite_max_held(rw))
            *bounded = false;
        prev = end;
    }
    if (rewrite_finish(rw, sink_emit, out) < 0)
        out->overflow = true;
    if (rewrite_held(rw) != 0)
        *bounded = false;
}

/*
 * Check one input: the one-shot output equals want, and every split into
 * two pieces, every split into three (for short inputs), and 1-byte feeds
 * give the same bytes. The same rewrite is reused across runs (finish
 * resets it), which also tests reuse.
 */
static void check_all_splits(const char *from, const char *to, const char *in, size_t len,
                             const char *want, size_t wlen, const char *label)
{
    struct rewrite *rw = rewrite_new(from, to);
    struct sink out;
    bool bounded = true;
    int bad_splits = 0;

    CHECK_MSG(rw != NULL, "%s: rewrite_new", label);
    if (!rw)
        return;

    sink_init(&out);
    run_cuts(rw, in, len, NULL, 0, &out, &bounded);
    CHECK_MSG(sink_is(&out, want, wlen), "%s: one-shot got \"%s\"", label, out.data);
    free(out.data);

    for (size_t s = 0; s <= len; s++) {
        size_t cuts[1] = {s};
        sink_init(&out);
        run_cuts(rw, in, len, cuts, 1, &out, &bounded);
        if (!sink_is(&out, want, wlen))
            bad_splits++;
        free(out.data);
    }
    if (len <= 160) {
        for (size_t a = 0; a <= len; a++) {
            for (size_t b = a; b <= len; b++) {
                size_t cuts[2] = {a, b};
                sink_init(&out);
                run_cuts(rw, in, len, cuts, 2, &out, &bounded);
                if (!sink_is(&out, want, wlen))
                    bad_splits++;
                free(out.data);
            }
        }
    }
    {
        size_t *cuts = xcalloc(len + 1, sizeof(*cuts));
        for (size_t i = 0; i < len; i++)
            cuts[i] = i + 1;
        sink_init(&out);
        run_cuts(rw, in, len, cuts, len ? len - 1 : 0, &out, &bounded);
        CHECK_MSG(sink_is(&out, want, wlen), "%s: 1-byte feeds got \"%s\"", label, out.data);
        free(out.data);
        free(cuts);
    }
    CHECK_MSG(bad_splits == 0, "%s: %d splits differ from the expected output", label, bad_splits);
    CHECK_MSG(bounded, "%s: held more than rewrite_max_held()", label);
    rewrite_free(rw);
}

#define CHECK_REWRITE(in, want) check_all_splits(FROM, TO, in, strlen(in), want, strlen(want), in)
#define CHECK_SAME(in) check_all_splits(FROM, TO, in, strlen(in), in, strlen(in), in)

static void test_body_table(void)
{
    /* JSON links, every boundary */
    CHECK_REWRITE("{\"self\":\"https://acme.atlassian.net/rest/api/3/issue/10000\"}",
                  "{\"self\":\"http://127.0.0.1:8082/rest/api/3/issue/10000\"}");
    CHECK_REWRITE("\"https://acme.atlassian.net\"", "\"http://127.0.0.1:8082\"");
    CHECK_REWRITE("https://acme.atlassian.net?x=1", "http://127.0.0.1:8082?x=1");
    CHECK_REWRITE("https://acme.atlassian.net#frag", "http://127.0.0.1:8082#frag");
    CHECK_REWRITE("\"https://acme.atlassian.net\\\"", "\"http://127.0.0.1:8082\\\"");
    /* end of body is a boundary */
    CHECK_REWRITE("see https://acme.atlassian.net", "see http://127.0.0.1:8082");
    CHECK_REWRITE("https://acme.atlassian.net", "http://127.0.0.1:8082");
    CHECK_REWRITE("https://acme.atlassian.net:443", "http://127.0.0.1:8082");
    /* explicit default port */
    CHECK_REWRITE("https://acme.atlassian.net:443/x", "http://127.0.0.1:8082/x");
    CHECK_REWRITE("\"https://acme.atlassian.net:443\"", "\"http://127.0.0.1:8082\"");
    /* JSON escaped slashes: replaced by the escaped form of TO */
    CHECK_REWRITE("{\"self\":\"https:\\/\\/acme.atlassian.net\\/rest\\/api\\/3\\/myself\"}",
                  "{\"self\":\"http:\\/\\/127.0.0.1:8082\\/rest\\/api\\/3\\/myself\"}");
    CHECK_REWRITE("https:\\/\\/acme.atlassian.net:443\\/x", "http:\\/\\/127.0.0.1:8082\\/x");
    CHECK_REWRITE("\"https:\\/\\/acme.atlassian.net\"", "\"http:\\/\\/127.0.0.1:8082\"");
    CHECK_REWRITE("https:\\/\\/acme.atlassian.net", "http:\\/\\/127.0.0.1:8082");
    /* case-insensitive scheme and host */
    CHECK_REWRITE("HTTPS://ACME.Atlassian.NET/x", "http://127.0.0.1:8082/x");
    CHECK_REWRITE("Https:\\/\\/Acme.Atlassian.Net\\/x", "http:\\/\\/127.0.0.1:8082\\/x");
    /* near misses of either case before a match (the scan jumps from one 'h'/'H' to the next) */
    CHECK_REWRITE("hHhttP Http:/ hTTPS:// HTTPS://ACME.atlassian.net/x hh",
                  "hHhttP Http:/ hTTPS:// http://127.0.0.1:8082/x hh");
    CHECK_REWRITE("Hhttps://acme.atlassian.net/", "Hhttp://127.0.0.1:8082/");
    CHECK_SAME("no scheme letter at all: just text, digits 0123 and JSON {\"a\": [1, 2]}");
    /* several, adjacent, nested */
    CHECK_REWRITE("https://acme.atlassian.net/a https://acme.atlassian.net/b",
                  "http://127.0.0.1:8082/a http://127.0.0.1:8082/b");
    CHECK_REWRITE("https://acme.atlassian.net/https://acme.atlassian.net/",
                  "http://127.0.0.1:8082/http://127.0.0.1:8082/");
    CHECK_REWRITE("https://acme.atlassian.nethttps://acme.atlassian.net/",
                  "https://acme.atlassian.nethttp://127.0.0.1:8082/");
    CHECK_REWRITE("https://acme.atlassian.net/?next=https://acme.atlassian.net/x",
                  "http://127.0.0.1:8082/?next=http://127.0.0.1:8082/x");
    CHECK_REWRITE("hhttps://acme.atlassian.net/", "hhttp://127.0.0.1:8082/");
    CHECK_REWRITE("httpshttps://acme.atlassian.net/", "httpshttp://127.0.0.1:8082/");
    CHECK_REWRITE("https://https://acme.atlassian.net/", "https://http://127.0.0.1:8082/");
    /* Jira-like paging response */
    CHECK_REWRITE("{\"self\":\"https://acme.atlassian.net/rest/api/3/search/jql\","
                  "\"nextPage\":\"https://acme.atlassian.net/rest/api/3/search/jql?"
                  "nextPageToken=abc\",\"issues\":[{\"self\":\"https://ACME.atlassian.net/"
                  "rest/api/3/issue/1\",\"fields\":{\"attachment\":[{\"content\":"
                  "\"https://acme.atlassian.net/rest/api/3/attachment/content/7\"}]}}]}",
                  "{\"self\":\"http://127.0.0.1:8082/rest/api/3/search/jql\","
                  "\"nextPage\":\"http://127.0.0.1:8082/rest/api/3/search/jql?"
                  "nextPageToken=abc\",\"issues\":[{\"self\":\"http://127.0.0.1:8082/"
                  "rest/api/3/issue/1\",\"fields\":{\"attachment\":[{\"content\":"
                  "\"http://127.0.0.1:8082/rest/api/3/attachment/content/7\"}]}}]}");

    /* look-alikes and other hosts: untouched */
    CHECK_SAME("https://acme.atlassian.net.evil.com/x");
    CHECK_SAME("\"https://acme.atlassian.net.evil.com\"");
    CHECK_SAME("https://acme.atlassian.network/");
    CHECK_SAME("https://acme.atlassian.network");
    CHECK_SAME("https://acme.atlassian.net-x/");
    CHECK_SAME("https://acme.atlassian.net_x/");
    CHECK_SAME("https://acme.atlassian.net@evil.com/");
    CHECK_SAME("https://acme.atlassian.net:8443/");
    CHECK_SAME("https://acme.atlassian.net:4430/");
    CHECK_SAME("https://acme.atlassian.net:44/");
    CHECK_SAME("https://acme.atlassian.net:4");
    CHECK_SAME("https://acme.atlassian.net:");
    CHECK_SAME("https://acme.atlassian.net:443x");
    CHECK_SAME("https://acme.atlassian.net:443.evil.com/");
    CHECK_SAME("https://evil-acme.atlassian.net/");
    CHECK_SAME("https://xacme.atlassian.net/");
    CHECK_SAME("https://acme-sandbox.atlassian.net/");
    CHECK_SAME("https://api.media.atlassian.com/file/1/binary?token=x");
    CHECK_SAME("http://acme.atlassian.net/");
    CHECK_SAME("https:/acme.atlassian.net/");
    CHECK_SAME("https:\\/acme.atlassian.net/");
    CHECK_SAME("https:\\/\\/acme.atlassian.net.evil.com\\/");
    CHECK_SAME("https:\\/\\/acme.atlassian.network");
    CHECK_SAME("https:\\\\acme.atlassian.net/");
    CHECK_SAME("https%3A%2F%2Facme.atlassian.net%2F");
    CHECK_SAME("acme.atlassian.net/rest");
    CHECK_SAME("");
    CHECK_SAME("h");
    CHECK_SAME("no links here at all, just text");
    /* partial prefixes at the end of the body */
    CHECK_SAME("x https://acme.atlassian.ne");
    CHECK_SAME("x https://acme.atl");
    CHECK_SAME("x https:\\/\\/acme");
    CHECK_SAME("x https:\\/");
    CHECK_SAME("https");
    CHECK_SAME("hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh");
    CHECK_SAME("https://https://https://acme.atlassian.ne");
}

static void test_body_binary(void)
{
    /* NULs, 0xff, and partial prefixes around a real link and at the end */
    static const char in[] = "\0\xff\x01https://acme.atlassian.net/a\0https://acme.atl\xff"
                             "https://acme.atlassian.net\0https://acme.atlassian.n";
    static const char want[] = "\0\xff\x01http://127.0.0.1:8082/a\0https://acme.atl\xff"
                               "https://acme.atlassian.net\0https://acme.atlassian.n";
    check_all_splits(FROM, TO, in, sizeof(in) - 1, want, sizeof(want) - 1, "binary");
}

/* FROM with a non-default port: only that spelling matches. */
static void test_body_other_port(void)
{
    const char *from = "https://dc.example.com:8443", *to = "http://dc.localhost:8080";
    const char *in = "\"https://dc.example.com:8443/x\" https://dc.example.com/y "
                     "https://dc.example.com:443/z https://dc.example.com:84430/ "
                     "https:\\/\\/DC.example.com:8443\\/w";
    const char *want = "\"http://dc.localhost:8080/x\" https://dc.example.com/y "
                       "https://dc.example.com:443/z https://dc.example.com:84430/ "
                       "http:\\/\\/dc.localhost:8080\\/w";

    check_all_splits(from, to, in, strlen(in), want, strlen(want), "port 8443");
    /* ":443" in FROM is the same as none; a trailing slash is ignored */
    check_all_splits("https://acme.atlassian.net:443/", "http://acme.localhost:8080/",
                     "https://acme.atlassian.net/x https://acme.atlassian.net:443/y",
                     strlen("https://acme.atlassian.net/x https://acme.atlassian.net:443/y"),
                     "http://acme.localhost:8080/x http://acme.localhost:8080/y",
                     strlen("http://acme.localhost:8080/x http://acme.localhost:8080/y"),
                     "from :443");
    /* TO longer and shorter than FROM */
    check_all_splits(FROM, "http://a", "[\"https://acme.atlassian.net/1\"]", 32, "[\"http://a/1\"]",
                     14, "short to");
}

static void test_new_rejects(void)
{
    static const char *bad_from[] = {
        "acme.atlassian.net",
        "ftp://acme.atlassian.net",
        "https://",
        "https:///",
        "https://a/b",
        "https://a?x",
        "https://a#x",
        "https://u@a",
        "https://a:0",
        "https://a:0443",
        "https://a:99999",
        "https://a:",
        "https://a:x",
        "https://a:1:2",
        "https://a b",
        "https://a\"",
        "https://a\\",
        "https://[::1",
        "https://[]",
        "https://[::1]x",
        "",
    };
    static const char *bad_to[] = {
        "", "/", "http://a b", "http://a\"b", "http://a\\b", "http://a\r\n", "http://a\tb",
    };
    char longo[REWRITE_MAX_ORIGIN + 16];

    for (size_t i = 0; i < UTIL_ARRAY_LEN(bad_from); i++) {
        struct rewrite *rw = rewrite_new(bad_from[i], TO);
        CHECK_MSG(rw == NULL, "from \"%s\"", bad_from[i]);
        rewrite_free(rw);
    }
    for (size_t i = 0; i < UTIL_ARRAY_LEN(bad_to); i++) {
        struct rewrite *rw = rewrite_new(FROM, bad_to[i]);
        CHECK_MSG(rw == NULL, "to \"%s\"", bad_to[i]);
        rewrite_free(rw);
    }
    CHECK(rewrite_new(NULL, TO) == NULL);
    CHECK(rewrite_new(FROM, NULL) == NULL);

    memset(longo, 'a', sizeof(longo) - 1);
    longo[sizeof(longo) - 1] = '\0';
    memcpy(longo, "https://", 8);
    CHECK(rewrite_new(longo, TO) == NULL);
    CHECK(rewrite_new(FROM, longo) == NULL);
    longo[REWRITE_MAX_ORIGIN] = '\0'; /* exactly the maximum */
    {
        struct rewrite *rw = rewrite_new(longo, longo);
        CHECK(rw != NULL);
        CHECK(rewrite_max_held(rw) <= REWRITE_MAX_PATTERN);
        rewrite_free(rw);
    }
    {
        struct rewrite *rw = rewrite_new("https://[::1]:8443", TO);
        CHECK(rw != NULL);
        rewrite_free(rw);
    }
    rewrite_free(NULL);
    CHECK(rewrite_held(NULL) == 0);
}

static void test_emit_failure_and_args(void)
{
    struct rewrite *rw = rewrite_new(FROM, TO);
    struct sink out;
    const char *in = "abc https://acme.atlassian.net/x def";

    sink_init(&out);
    out.fail_after = 0;
    CHECK(rewrite_feed(rw, in, strlen(in), sink_emit, &out) < 0);
    free(out.data);

    rewrite_free(rw);
    rw = rewrite_new(FROM, TO);
    sink_init(&out);
    out.fail_after = 1; /* "abc " goes out, the replacement fails */
    CHECK(rewrite_feed(rw, in, strlen(in), sink_emit, &out) < 0);
    free(out.data);
    rewrite_free(rw);

    /* a failure while finishing */
    rw = rewrite_new(FROM, TO);
    sink_init(&out);
    CHECK(rewrite_feed(rw, "x https://acme.atlassian.net", 28, sink_emit, &out) == 0);
    CHECK(rewrite_held(rw) > 0);
    out.fail_after = out.calls;
    CHECK(rewrite_finish(rw, sink_emit, &out) < 0);
    free(out.data);

    /* bad arguments */
    CHECK(rewrite_feed(NULL, "x", 1, sink_emit, &out) < 0);
    CHECK(rewrite_feed(rw, NULL, 1, sink_emit, &out) < 0);
    CHECK(rewrite_feed(rw, "x", 1, NULL, &out) < 0);
    CHECK(rewrite_finish(NULL, sink_emit, &out) < 0);
    sink_init(&out);
    CHECK(rewrite_feed(rw, NULL, 0, sink_emit, &out) == 0);
    CHECK(rewrite_finish(rw, sink_emit, &out) == 0);
    free(out.data);
    rewrite_free(rw);
}

/* ---- 1 MiB against an independent reference ---------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng_next(void)
{
    /* xorshift64*: deterministic, so a failure reproduces */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

static char ref_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
}

/*
 * Reference: the plain whole-buffer replace the rewriter must equal, written
 * independently of rewrite.c (explicit pattern list, longest first).
 */
static char *reference_replace(const char *in, size_t len, size_t *out_len)
{
    static const struct {
        const char *pat, *repl;
    } pats[] = {
        {"https:\\/\\/acme.atlassian.net:443", "http:\\/\\/127.0.0.1:8082"},
        {"https:\\/\\/acme.atlassian.net", "http:\\/\\/127.0.0.1:8082"},
        {"https://acme.atlassian.net:443", "http://127.0.0.1:8082"},
        {"https://acme.atlassian.net", "http://127.0.0.1:8082"},
    };
    char *out = xmalloc(len * 2 + 1);
    size_t o = 0, i = 0;

    while (i < len) {
        bool done = false;
        for (size_t k = 0; k < UTIL_ARRAY_LEN(pats) && !done; k++) {
            size_t pl = strlen(pats[k].pat), j;
            if (i + pl > len)
                continue;
            for (j = 0; j < pl && ref_lower(in[i + j]) == pats[k].pat[j]; j++)
                ;
            if (j < pl)
                continue;
            if (i + pl < len && !strchr("/\"?#\\", in[i + pl]))
                continue;
            if (i + pl < len && in[i + pl] == '\0')
                continue; /* strchr finds the terminator: NUL is no boundary */
            memcpy(out + o, pats[k].repl, strlen(pats[k].repl));
            o += strlen(pats[k].repl);
            i += pl;
            done = true;
        }
        if (!done)
            out[o++] = in[i++];
    }
    *out_len = o;
    return out;
}

static void test_one_mib(void)
{
    static const char *frags[] = {
        "https://acme.atlassian.net/rest/api/3/issue/1",
        "\"https://acme.atlassian.net\"",
        "https://acme.atlassian.net:443/x",
        "https:\\/\\/acme.atlassian.net\\/y",
        "https:\\/\\/acme.atlassian.net:443\\/z",
        "HTTPS://ACME.ATLASSIAN.NET?q",
        "https://acme.atlassian.net#f",
        "https://acme.atlassian.net\\\"",
        "https://acme.atlassian.net.evil.com/",
        "https://acme.atlassian.network",
        "https://acme.atlassian.net:8443/",
        "https://acme.atlassian.net:44",
        "https://evil-acme.atlassian.net/",
        "https://acme.atlassian.ne",
        "https://acme.",
        "https:\\/\\/acme.atlassian.ne",
        "https:",
        "h",
        "hh",
        "ht",
        "https://",
        "https://acme.atlassian.net",
        "https://acme.atlassian.net:443",
        "{\"key\":\"PROJ-1\",\"fields\":{}}",
        " ",
        "\n",
        ",",
    };
    size_t cap = (1u << 20) + 4096, len = 0, ref_len = 0, nlinks = 0;
    char *in = xmalloc(cap);
    char *ref;
    struct rewrite *rw = rewrite_new(FROM, TO);
    struct sink out;
    bool bounded = true;

    while (len < (1u << 20)) {
        uint64_t r = rng_next();
        if (r % 4 == 0) {
            /* random bytes, including NUL, 0xff and 'h' */
            size_t n = 1 + (size_t)(r >> 8) % 16;
            for (size_t i = 0; i < n; i++)
                in[len++] = (char)(rng_next() >> 56);
        } else {
            const char *f = frags[(r >> 8) % UTIL_ARRAY_LEN(frags)];
            memcpy(in + len, f, strlen(f));
            len += strlen(f);
            nlinks++;
        }
    }
    ref = reference_replace(in, len, &ref_len);
    CHECK(ref_len != len); /* the input really has links in it */
    CHECK(nlinks > 10000);

    /* random feed sizes, including empty feeds */
    sink_init(&out);
    for (size_t off = 0; off < len;) {
        uint64_t r = rng_next();
        size_t n = r % 8 == 0 ? 0 : (r % 3 == 0 ? 1 + (r >> 8) % 8 : 1 + (r >> 8) % 4096);
        if (n > len - off)
            n = len - off;
        if (rewrite_feed(rw, in + off, n, sink_emit, &out) < 0)
            out.overflow = true;
        if (rewrite_held(rw) > rewrite_max_held(rw))
            bounded = false;
        off += n;
    }
    CHECK(rewrite_finish(rw, sink_emit, &out) == 0);
    CHECK(out.len == ref_len && memcmp(out.data, ref, ref_len) == 0);
    CHECK(!out.overflow);
    CHECK(bounded);
    free(out.data);

    /* one feed of everything, and 1-byte feeds, on the same input */
    sink_init(&out);
    CHECK(rewrite_feed(rw, in, len, sink_emit, &out) == 0);
    CHECK(rewrite_finish(rw, sink_emit, &out) == 0);
    CHECK(out.len == ref_len && memcmp(out.data, ref, ref_len) == 0);
    free(out.data);

    sink_init(&out);
    for (size_t i = 0; i < len; i++) {
        if (rewrite_feed(rw, in + i, 1, sink_emit, &out) < 0)
            out.overflow = true;
        if (rewrite_held(rw) > rewrite_max_held(rw))
            bounded = false;
    }
    CHECK(rewrite_finish(rw, sink_emit, &out) == 0);
    CHECK(out.len == ref_len && memcmp(out.data, ref, ref_len) == 0);
    CHECK(bounded);
    free(out.data);

    free(ref);
    free(in);
    rewrite_free(rw);
}

/* A body that is one long near-miss never makes the rewrite hold more. */
static void test_bounded_on_near_misses(void)
{
    struct rewrite *rw = rewrite_new(FROM, TO);
    struct sink out;
    const char *nm = "https://acme.atlassian.ne";
    size_t total = 0, maxheld = 0;

    sink_init(&out);
    for (int i = 0; i < 40000; i++) {
        CHECK_MSG(rewrite_feed(rw, nm, strlen(nm), sink_emit, &out) == 0, "feed %d", i);
        if (rewrite_held(rw) > maxheld)
            maxheld = rewrite_held(rw);
        total += strlen(nm);
        if (out.len > 0 && i % 1000 == 999) {
            /* output keeps up with input: nothing accumulates */
            CHECK(total - out.len <= rewrite_max_held(rw));
        }
    }
    CHECK(maxheld <= rewrite_max_held(rw));
    CHECK(maxheld > 0);
    CHECK(rewrite_max_held(rw) == strlen("https:\\/\\/acme.atlassian.net:443"));
    CHECK(rewrite_finish(rw, sink_emit, &out) == 0);
    CHECK(out.len == total);
    free(out.data);
    rewrite_free(rw);
}

/* ---- Location ---------------------------------------------------------- */

struct loc_row {
    const char *value;
    const char *want; /* NULL: left untouched */
};

static const struct loc_row loc_rows[] = {
    {"https://acme.atlassian.net/rest/api/3/task/1", "http://127.0.0.1:8082/rest/api/3/task/1"},
    {"https://acme.atlassian.net", "http://127.0.0.1:8082"},
    {"https://acme.atlassian.net/", "http://127.0.0.1:8082/"},
    {"https://acme.atlassian.net?x=1", "http://127.0.0.1:8082?x=1"},
    {"https://acme.atlassian.net#f", "http://127.0.0.1:8082#f"},
    {"https://ACME.atlassian.NET:443/x", "http://127.0.0.1:8082/x"},
    {"HTTPS://acme.atlassian.net:443", "http://127.0.0.1:8082"},
    {"https://acme.atlassian.net/?next=https://evil.com/",
     "http://127.0.0.1:8082/?next=https://evil.com/"},
    {"https://acme.atlassian.net.evil.com/", NULL},
    {"https://acme.atlassian.net.", NULL},
    {"https://acme.atlassian.network", NULL},
    {"https://acme.atlassian.net:8443/", NULL},
    {"https://acme.atlassian.net:4430/", NULL},
    {"https://acme.atlassian.net:", NULL},
    {"https://acme.atlassian.net@evil.com/", NULL},
    {"https://acme.atlassian.net\\evil.com", NULL},
    {"https://acme.atlassian.net\"", NULL},
    {"https://evil-acme.atlassian.net/", NULL},
    {"https://api.media.atlassian.com/file/1/binary?token=x", NULL},
    {"https:\\/\\/acme.atlassian.net\\/x", NULL},
    {"http://acme.atlassian.net/", NULL},
    {" https://acme.atlassian.net/", NULL},
    {"/rest/api/3/task/1", NULL},
    {"//acme.atlassian.net/x", NULL},
    {"https://acme.atlassian.ne", NULL},
    {"", NULL},
};

static void test_location(void)
{
    for (size_t i = 0; i < UTIL_ARRAY_LEN(loc_rows); i++) {
        const struct loc_row *r = &loc_rows[i];
        char *got = rewrite_location(r->value, FROM, TO);
        if (r->want)
            CHECK_MSG(got && strcmp(got, r->want) == 0, "row %zu \"%s\": got \"%s\"", i, r->value,
                      got ? got : "(null)");
        else
            CHECK_MSG(got == NULL, "row %zu \"%s\": got \"%s\"", i, r->value, got);
        free(got);
    }
    {
        char *got = rewrite_location("https://dc.example.com:8443/x", "https://dc.example.com:8443",
                                     "http://dc.localhost:8080");
        CHECK(got && strcmp(got, "http://dc.localhost:8080/x") == 0);
        free(got);
        got = rewrite_location("https://dc.example.com/x", "https://dc.example.com:8443",
                               "http://dc.localhost:8080");
        CHECK(got == NULL);
        free(got);
    }
    CHECK(rewrite_location(NULL, FROM, TO) == NULL);
    CHECK(rewrite_location("https://acme.atlassian.net/", "bogus", TO) == NULL);
    CHECK(rewrite_location("https://acme.atlassian.net/", FROM, "") == NULL);
}

/* rewrite_to_origin_ok agrees with what rewrite_new accepts as a target. */
static void test_to_origin_ok(void)
{
    static const char *const good[] = {"http://127.0.0.1:8082", "http://acme.localhost:8080/",
                                       "http://[::1]:8080"};
    static const char *const bad[] = {"",           "/",           "http://a\"b",
                                      "http://a b", "http://a\\b", "http://a\nb"};
    char longer[REWRITE_MAX_ORIGIN + 16];

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct rewrite *rw = rewrite_new("https://acme.atlassian.net", good[i]);
        CHECK_MSG(rewrite_to_origin_ok(good[i]) && rw, "good target %s", good[i]);
        rewrite_free(rw);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct rewrite *rw = rewrite_new("https://acme.atlassian.net", bad[i]);
        CHECK_MSG(!rewrite_to_origin_ok(bad[i]) && !rw, "bad target %s", bad[i]);
        rewrite_free(rw);
    }
    memset(longer, 'a', sizeof(longer) - 1);
    memcpy(longer, "http://", 7);
    longer[sizeof(longer) - 1] = '\0';
    CHECK(!rewrite_to_origin_ok(longer));
    CHECK(!rewrite_to_origin_ok(NULL));
}

int main(void)
{
    test_to_origin_ok();
    test_body_table();
    test_body_binary();
    test_body_other_port();
    test_new_rejects();
    test_emit_failure_and_args();
    test_one_mib();
    test_bounded_on_near_misses();
    test_location();
    TEST_DONE();
}
