/*
 * Unit tests for tokensched: refresh scheduling with an injected clock
 * (fetch at start, renew at 80% of the lifetime, before expiry; single
 * flight; doubling backoff to the cap; invalidation), and the parsing of
 * the token endpoint's answer (good, garbage, oversize; the token never in
 * a reason).
 */
#include <string.h>

#include "testlib.h"
#include "tokensched.h"
#include "util.h"

enum op { BEGIN, OK, FAIL, INVALIDATE };

struct step {
    int64_t t;
    enum op op;
    bool want;      /* BEGIN: the answer */
    int64_t life_s; /* OK: expires_in */
    bool usable;    /* after the step */
    int64_t due_in; /* after the step: tokensched_due_in */
};

struct script {
    const char *name;
    struct step s[16];
    size_t n;
};

static const struct script scripts[] = {
    {"60-minute token: fetched at start, renewed after 48 minutes, single flight",
     {{0, BEGIN, true, 0, false, -1},
      {0, BEGIN, false, 0, false, -1}, /* one in flight */
      {10, OK, 0, 3600, true, 2880000},
      {2879999, BEGIN, false, 0, true, 11},
      {2880010, BEGIN, true, 0, true, -1},  /* renew while the old one still works */
      {2880020, BEGIN, false, 0, true, -1}, /* still one in flight */
      {2880100, OK, 0, 3600, true, 2880000}},
     7},
    {"4 s test token: renewed after 3.2 s, usable until its last 0.4 s",
     {{0, BEGIN, true, 0, false, -1},
      {0, OK, 0, 4, true, 3200},
      {3199, BEGIN, false, 0, true, 1},
      {3200, BEGIN, true, 0, true, -1},
      {3599, BEGIN, false, 0, true, -1},
      {3600, BEGIN, false, 0, false, -1}, /* the old one is not handed out any more */
      {3700, OK, 0, 4, true, 3200}},
     7},
    {"failures back off 1, 2, 4 s ... capped at 60 s; success resets",
     {{0, BEGIN, true, 0, false, -1},
      {0, FAIL, 0, 0, false, 1000},
      {999, BEGIN, false, 0, false, 1},
      {1000, BEGIN, true, 0, false, -1},
      {1000, FAIL, 0, 0, false, 2000},
      {3000, BEGIN, true, 0, false, -1},
      {3000, FAIL, 0, 0, false, 4000},
      {7000, BEGIN, true, 0, false, -1},
      {7000, FAIL, 0, 0, false, 8000},
      {15000, BEGIN, true, 0, false, -1},
      {15000, OK, 0, 100, true, 80000},
      {95000, BEGIN, true, 0, true, -1},
      {95000, FAIL, 0, 0, true, 1000}}, /* backoff starts over; the old token still serves */
     13},
    {"a refused token is renewed at once and not handed out meanwhile",
     {{0, BEGIN, true, 0, false, -1},
      {0, OK, 0, 3600, true, 2880000},
      {5000, INVALIDATE, 0, 0, false, 0},
      {5000, BEGIN, true, 0, false, -1},
      {5100, OK, 0, 3600, true, 2880000}},
     5},
};

static void test_scripts(void)
{
    for (size_t i = 0; i < UTIL_ARRAY_LEN(scripts); i++) {
        const struct script *sc = &scripts[i];
        struct tokensched t;
        tokensched_init(&t);
        for (size_t k = 0; k < sc->n; k++) {
            const struct step *st = &sc->s[k];
            switch (st->op) {
            case BEGIN: {
                bool got = tokensched_begin(&t, st->t);
                CHECK_MSG(got == st->want, "%s: step %zu: begin %d", sc->name, k, got);
                break;
            }
            case OK:
                tokensched_success(&t, st->t, st->life_s);
                break;
            case FAIL:
                tokensched_failure(&t, st->t);
                break;
            case INVALIDATE:
                tokensched_invalidate(&t, st->t);
                break;
            }
            CHECK_MSG(tokensched_usable(&t, st->t) == st->usable, "%s: step %zu: usable", sc->name,
                      k);
            int64_t due = tokensched_due_in(&t, st->t);
            CHECK_MSG(due == st->due_in, "%s: step %zu: due_in %lld, want %lld", sc->name, k,
                      (long long)due, (long long)st->due_in);
        }
    }
    /* The backoff cap. */
    struct tokensched t;
    tokensched_init(&t);
    int64_t now = 0;
    for (int i = 0; i < 20; i++) {
        CHECK(tokensched_begin(&t, now));
        tokensched_failure(&t, now);
        now += tokensched_due_in(&t, now);
    }
    CHECK(tokensched_due_in(&t, now) == 0);
    CHECK(tokensched_begin(&t, now));
    tokensched_failure(&t, now);
    CHECK(tokensched_due_in(&t, now) == TOKENSCHED_BACKOFF_MAX_MS);
    CHECK(t.failures == 21);
}

struct pcase {
    const char *body;
    int rc;
    const char *tok;
    int64_t exp;
};

static void test_parse(void)
{
    static const struct pcase cases[] = {
        {"{\"access_token\":\"eyJ.abc-_~+/=\",\"expires_in\":3600,\"token_type\":\"Bearer\"}", 0,
         "eyJ.abc-_~+/=", 3600},
        {"{ \"token_type\" : \"Bearer\", \"expires_in\" : 4 ,\n \"access_token\" : \"t1\" }", 0,
         "t1", 4},
        {"{\"access_token\":\"t2\"}", 0, "t2", 3600},
        {"{\"access_token\":\"t3\",\"expires_in\":\"60\"}", 0, "t3", 60},
        {"{\"error\":\"access_denied\",\"error_description\":\"Unauthorized\"}", -1, "", 0},
        {"", -1, "", 0},
        {"{\"access_token\":\"\"}", -1, "", 0},
        {"{\"access_token\":\"has space\"}", -1, "", 0},
        {"{\"access_token\":\"esc\\\"aped\"}", -1, "", 0},
        {"{\"access_token\":\"cr\r\nlf\"}", -1, "", 0},
        {"{\"access_token\":\"cut", -1, "", 0},
        {"{\"access_token\":42}", -1, "", 0},
        {"{\"access_token\":\"ok\",\"expires_in\":0}", -1, "", 0},
        {"{\"access_token\":\"ok\",\"expires_in\":-5}", -1, "", 0},
        {"{\"access_token\":\"ok\",\"expires_in\":99999999999}", -1, "", 0},
        {"{\"access_token\":\"ok\",\"expires_in\":\"soon\"}", -1, "", 0},
    };
    for (size_t i = 0; i < UTIL_ARRAY_LEN(cases); i++) {
        char tok[64], why[128];
        int64_t exp = -1;
        int rc = tokensched_parse(cases[i].body, tok, sizeof(tok), &exp, why, sizeof(why));
        CHECK_MSG(rc == cases[i].rc, "parse %zu: rc %d", i, rc);
        CHECK_STR(tok, cases[i].tok);
        if (rc == 0)
            CHECK(exp == cases[i].exp);
        else
            CHECK_MSG(*why && !strstr(why, "space") && !strstr(why, "aped"), "why: %s", why);
    }
    /* Oversize: refused, nothing left in the buffer. */
    static char big[TOKENSCHED_MAX_TOKEN + 64];
    static char tok[TOKENSCHED_MAX_TOKEN + 64];
    char why[128];
    int64_t exp;
    strcpy(big, "{\"access_token\":\"");
    size_t off = strlen(big);
    memset(big + off, 'a', TOKENSCHED_MAX_TOKEN + 1);
    strcpy(big + off + TOKENSCHED_MAX_TOKEN + 1, "\"}");
    CHECK(tokensched_parse(big, tok, sizeof(tok), &exp, why, sizeof(why)) == -1);
    CHECK(tok[0] == '\0' && tok[10] == '\0');
    /* A small buffer is never overrun. */
    char small[4];
    CHECK(tokensched_parse("{\"access_token\":\"abcdef\"}", small, sizeof(small), &exp, why,
                           sizeof(why)) == -1);
    CHECK(small[0] == '\0');
}

int main(void)
{
    test_scripts();
    test_parse();
    TEST_DONE();
}
