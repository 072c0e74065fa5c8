/*
 * test_cred: header rendering against independently computed vectors, the
 * rejection of unsafe inputs, cred_appears_in, and the wipe.
 *
 * The secrets here are fake, and still no check prints a rendered value or a
 * secret when it fails (CHECK, never CHECK_STR, on secret-bearing strings).
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cred.h"
#include "testlib.h"
#include "util.h"

static struct config_credential basic(const char *name, const char *email, char *secret)
{
    struct config_credential c = {0};
    c.name = (char *)name;
    c.type = CONFIG_CRED_BASIC;
    c.email = (char *)email;
    c.secret = secret;
    return c;
}

static struct config_credential bearer(const char *name, char *secret)
{
    struct config_credential c = {0};
    c.name = (char *)name;
    c.type = CONFIG_CRED_BEARER;
    c.secret = secret;
    return c;
}

static bool all_zero(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != 0)
            return false;
    }
    return true;
}

/* Known vectors: the expected base64 was computed outside this code base. */
static void test_basic_vectors(void)
{
    struct {
        const char *email;
        const char *secret;
        const char *value;
    } rows[] = {
        {"svc-bot@example.com", "tok", "Basic c3ZjLWJvdEBleGFtcGxlLmNvbTp0b2s="},
        {"user", "token", "Basic dXNlcjp0b2tlbg=="},
        {"e@x.io", "ATATT3xFfGF0abc", "Basic ZUB4LmlvOkFUQVRUM3hGZkdGMGFiYw=="},
        /* a ':' in the token and non-ASCII bytes: Basic splits at the first ':' only */
        {"a@b.c", "to:ken\xc3\xa9\xff", "Basic YUBiLmM6dG86a2Vuw6n/"},
        {"svc@x.io", "abc", "Basic c3ZjQHguaW86YWJj"},
    };

    for (size_t i = 0; i < UTIL_ARRAY_LEN(rows); i++) {
        char *secret = xstrdup(rows[i].secret);
        struct config_credential c = basic("svc", rows[i].email, secret);
        struct cred *cr = cred_new(&c);
        char *want_header = xasprintf("Authorization: %s", rows[i].value);

        CHECK_MSG(cr != NULL, "row %zu", i);
        if (cr) {
            CHECK_MSG(strcmp(cred_header_value(cr), rows[i].value) == 0, "row %zu value", i);
            CHECK_MSG(strcmp(cred_header(cr), want_header) == 0, "row %zu header", i);
            CHECK_STR(cred_name(cr), "svc");
        }
        /* the cred keeps its own copy: wiping the config's secret changes nothing */
        util_secure_zero(secret, strlen(secret));
        if (cr)
            CHECK_MSG(strcmp(cred_header_value(cr), rows[i].value) == 0, "row %zu copy", i);
        cred_free(cr);
        free(secret);
        free(want_header);
    }
}

static void test_bearer(void)
{
    char secret[] = "pat-NjQ1MjM0OTg3NjU0OkSecret/+=";
    struct config_credential c = bearer("dc", secret);
    struct cred *cr = cred_new(&c);

    CHECK(cr != NULL);
    CHECK(strcmp(cred_header_value(cr), "Bearer pat-NjQ1MjM0OTg3NjU0OkSecret/+=") == 0);
    CHECK(strcmp(cred_header(cr), "Authorization: Bearer pat-NjQ1MjM0OTg3NjU0OkSecret/+=") == 0);
    CHECK_STR(cred_name(cr), "dc");
    cred_free(cr);

    /* non-ASCII bytes are legal header octets (obs-text) */
    {
        char s2[] = "tok\xc3\xa9n";
        struct config_credential c2 = bearer("b", s2);
        struct cred *cr2 = cred_new(&c2);
        CHECK(cr2 != NULL);
        CHECK(cr2 && strcmp(cred_header_value(cr2), "Bearer tok\xc3\xa9n") == 0);
        cred_free(cr2);
    }
}

/* 8 KiB tokens (CONFIG_MAX_SECRET_LEN) for both types; one byte more is refused. */
static void test_long_tokens(void)
{
    size_t n = CONFIG_MAX_SECRET_LEN; /* 8192 */
    char *secret = xmalloc(n + 2);
    char *want;
    struct config_credential c;
    struct cred *cr;
    size_t reps = 2730; /* "abc" x 2730 = 8190 bytes: base64 "YWJj" x 2730 */

    for (size_t i = 0; i < reps; i++)
        memcpy(secret + 3 * i, "abc", 3);
    secret[3 * reps] = '\0';
    /* "svc@x.io:" is 9 bytes, so the secret starts on a base64 block boundary */
    want = xmalloc(strlen("Basic c3ZjQHguaW86") + 4 * reps + 1);
    strcpy(want, "Basic c3ZjQHguaW86");
    for (size_t i = 0; i < reps; i++)
        memcpy(want + 18 + 4 * i, "YWJj", 4);
    want[18 + 4 * reps] = '\0';
    c = basic("svc", "svc@x.io", secret);
    cr = cred_new(&c);
    CHECK(cr != NULL);
    CHECK(cr && strcmp(cred_header_value(cr), want) == 0);
    CHECK(cr && strlen(cred_header(cr)) == strlen("Authorization: ") + strlen(want));
    cred_free(cr);

    /* bearer at exactly the maximum */
    memset(secret, 'x', n);
    secret[n] = '\0';
    c = bearer("b", secret);
    cr = cred_new(&c);
    CHECK(cr != NULL);
    CHECK(cr && strlen(cred_header_value(cr)) == strlen("Bearer ") + n);
    CHECK(cr && cred_appears_in(cr, secret, n));
    cred_free(cr);

    /* one over the maximum */
    secret[n] = 'x';
    secret[n + 1] = '\0';
    c = bearer("b", secret);
    CHECK(cred_new(&c) == NULL);
    c = basic("b", "e@x", secret);
    CHECK(cred_new(&c) == NULL);

    free(secret);
    free(want);
}

static void test_rejects(void)
{
    struct config_credential c;
    char crlf[] = "tok\r\nX-Evil: 1";
    char lf[] = "tok\nX";
    char tab[] = "tok\tx";
    char del[] = "tok\x7f";
    char space[] = "tok x";
    char empty[] = "";
    char ok[] = "tok";

    c = bearer("b", crlf);
    CHECK(cred_new(&c) == NULL);
    c = bearer("b", lf);
    CHECK(cred_new(&c) == NULL);
    c = bearer("b", tab);
    CHECK(cred_new(&c) == NULL);
    c = bearer("b", del);
    CHECK(cred_new(&c) == NULL);
    c = bearer("b", space);
    CHECK(cred_new(&c) == NULL);
    c = bearer("b", empty);
    CHECK(cred_new(&c) == NULL);
    c = bearer("b", NULL);
    CHECK(cred_new(&c) == NULL);
    c = basic("b", NULL, ok);
    CHECK(cred_new(&c) == NULL);
    c = basic("b", "", ok);
    CHECK(cred_new(&c) == NULL);
    c = basic("b", "a@b\r\n", ok);
    CHECK(cred_new(&c) == NULL);
    c = basic("b", "a@b", empty);
    CHECK(cred_new(&c) == NULL);
    c = basic("b", "a@b", ok);
    c.type = (enum config_cred_type)7;
    CHECK(cred_new(&c) == NULL);
    CHECK(cred_new(NULL) == NULL);
    /* basic tolerates control bytes in the secret: they end up base64-encoded */
    c = basic("b", "a@b", crlf);
    {
        struct cred *cr = cred_new(&c);
        CHECK(cr != NULL);
        CHECK(cr && strchr(cred_header(cr), '\r') == NULL && strchr(cred_header(cr), '\n') == NULL);
        cred_free(cr);
    }
    /* NULL accessors */
    cred_free(NULL);
    cred_wipe(NULL);
    CHECK_STR(cred_header(NULL), "");
    CHECK_STR(cred_header_value(NULL), "");
    CHECK_STR(cred_name(NULL), "");
    CHECK(!cred_appears_in(NULL, "x", 1));
}

static void test_appears_in(void)
{
    char secret[] = "ATATT3xFfGF0-secret";
    struct config_credential c = basic("svc", "svc-bot@example.com", secret);
    struct cred *cr = cred_new(&c);
    const char *value;
    char *line;

    CHECK(cr != NULL);
    if (!cr)
        return;
    value = cred_header_value(cr);

    /* positives: raw secret, rendered value, base64 alone, whole header, embedded */
    CHECK(cred_appears_in(cr, secret, strlen(secret)));
    CHECK(cred_appears_in(cr, value, strlen(value)));
    CHECK(cred_appears_in(cr, value + 6, strlen(value) - 6)); /* base64 without "Basic " */
    CHECK(cred_appears_in(cr, cred_header(cr), strlen(cred_header(cr))));
    line = xasprintf("2026-01-01T00:00:00Z info upstream said token=%s; done", secret);
    CHECK(cred_appears_in(cr, line, strlen(line)));
    free(line);
    line = xasprintf("GET / HTTP/1.1\r\nAuthorization: %s\r\n\r\n", value);
    CHECK(cred_appears_in(cr, line, strlen(line)));
    free(line);
    /* binary buffer with NULs before the secret */
    {
        char buf[64] = {0};
        memcpy(buf + 20, secret, strlen(secret));
        CHECK(cred_appears_in(cr, buf, sizeof(buf)));
        /* cut one byte short of the end of the secret */
        CHECK(!cred_appears_in(cr, buf, 20 + strlen(secret) - 1));
    }

    /* negatives */
    CHECK(!cred_appears_in(cr, "", 0));
    CHECK(!cred_appears_in(cr, "svc-bot@example.com", 19));
    CHECK(!cred_appears_in(cr, "Basic ", 6));
    CHECK(!cred_appears_in(cr, "credential svc, site acme.atlassian.net", 39));
    CHECK(!cred_appears_in(cr, "ATATT3xFfGF0-secre", 18));  /* truncated */
    CHECK(!cred_appears_in(cr, "atatt3xffgf0-secret", 19)); /* case differs */
    CHECK(!cred_appears_in(cr, NULL, 0));
    {
        /* the secret beyond len is not looked at */
        char buf[] = "xxATATT3xFfGF0-secret";
        CHECK(!cred_appears_in(cr, buf, 10));
        CHECK(cred_appears_in(cr, buf, sizeof(buf) - 1));
    }
    cred_free(cr);
}

/*
 * The wipe. Reading a buffer after free() is undefined behaviour, so the test
 * observes the wipe through cred_wipe(), which is the exact code cred_free()
 * runs before it frees (cred_free = cred_wipe + free of the zeroed buffers):
 * the saved pointers still point into live memory here. util_secure_zero
 * itself is tested on its own below.
 */
static void test_wipe(void)
{
    char secret[] = "wipe-me-please-123";
    struct config_credential c = basic("svc", "svc-bot@example.com", secret);
    struct cred *cr = cred_new(&c);
    const char *header, *value;
    size_t hlen, vlen;

    CHECK(cr != NULL);
    if (!cr)
        return;
    header = cred_header(cr);
    value = cred_header_value(cr);
    hlen = strlen(header);
    vlen = strlen(value);
    CHECK(hlen > 0 && vlen > 0);
    CHECK(cred_appears_in(cr, secret, strlen(secret)));

    cred_wipe(cr);
    CHECK(all_zero(header, hlen + 1));
    CHECK(all_zero(value, vlen + 1));
    CHECK_STR(cred_header(cr), "");
    CHECK_STR(cred_header_value(cr), "");
    CHECK_STR(cred_name(cr), "svc"); /* the name is not secret */
    /* nothing secret left to find, and an empty needle does not match everything */
    CHECK(!cred_appears_in(cr, secret, strlen(secret)));
    CHECK(!cred_appears_in(cr, "anything", 8));
    cred_wipe(cr); /* idempotent */
    cred_free(cr); /* free after wipe is fine */

    /* bearer too */
    {
        char s2[] = "bearer-wipe-token";
        struct config_credential c2 = bearer("b", s2);
        struct cred *cr2 = cred_new(&c2);
        CHECK(cr2 != NULL);
        if (cr2) {
            const char *h2 = cred_header(cr2);
            size_t n2 = strlen(h2);
            cred_wipe(cr2);
            CHECK(all_zero(h2, n2 + 1));
            CHECK(!cred_appears_in(cr2, s2, strlen(s2)));
            cred_free(cr2);
        }
    }
}

static void test_secure_zero(void)
{
    char buf[64];
    memset(buf, 'A', sizeof(buf));
    util_secure_zero(buf + 8, 32);
    CHECK(buf[7] == 'A');
    CHECK(all_zero(buf + 8, 32));
    CHECK(buf[40] == 'A');
    util_secure_zero(buf, 0); /* n = 0 touches nothing */
    CHECK(buf[0] == 'A');
}

int main(void)
{
    test_basic_vectors();
    test_bearer();
    test_long_tokens();
    test_rejects();
    test_appears_in();
    test_wipe();
    test_secure_zero();
    TEST_DONE();
}
