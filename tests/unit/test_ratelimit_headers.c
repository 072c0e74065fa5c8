/*
 * Unit tests for ratelimit_headers: every format of Atlassian's rate-limit
 * signals (X-RateLimit-Reset as ISO 8601 with and without seconds and zone,
 * as epoch seconds and ms; Retry-After; Beta-Retry-After; RateLimit-Reason),
 * garbage and overflow, all against one fixed wall clock.
 */
#include <stdint.h>
#include <string.h>

#include "ratelimit_headers.h"
#include "testlib.h"

/* 2026-03-26T15:59:30Z in ms */
#define T_WALL (INT64_C(1774540770) * 1000)

struct reset_case {
    const char *v;
    int rc;           /* 0 parsed, -1 refused */
    int64_t delay_ms; /* when parsed */
};

static const struct reset_case reset_cases[] = {
    /* ISO 8601, the documented form and its variants */
    {"2026-03-26T16:00:00Z", 0, 30000},
    {"2026-03-26T16:00Z", 0, 30000},   /* without seconds (Atlassian's beta sample) */
    {"2026-03-26T16:00:00", 0, 30000}, /* without zone: UTC */
    {"2026-03-26T16:00", 0, 30000},    /* neither */
    {"2026-03-26T16:00:00.500Z", 0, 30500},
    {"2026-03-26T16:00:00,25Z", 0, 30250},
    {"2026-03-26T17:00:00+01:00", 0, 30000},
    {"2026-03-26T15:00:00-0100", 0, 30000},
    {"2026-03-26t16:00:00z", 0, 30000},
    {"2026-03-26 16:00:00Z", 0, 30000},
    {"  2026-03-26T16:00:10Z  ", 0, 40000},
    {"2026-03-26T15:00:00Z", 0, 0},               /* in the past: no wait */
    {"2099-01-01T00:00:00Z", 0, RL_MAX_PAUSE_MS}, /* far future: capped */
    /* epoch seconds and ms, seconds from now */
    {"1774540800", 0, 30000},
    {" 1774540800 ", 0, 30000},
    {"1774540800000", 0, 30000},
    {"1774540770", 0, 0},
    {"1700000000", 0, 0},               /* past */
    {"4102444800", 0, RL_MAX_PAUSE_MS}, /* 2100: capped */
    {"30", 0, 30000},                   /* small number: seconds from now */
    {"0", 0, 0},
    {"99999999999999999999", 0, RL_MAX_PAUSE_MS}, /* overflow: as far as the cap */
    /* garbage */
    {"", -1, 0},
    {"   ", -1, 0},
    {"tomorrow", -1, 0},
    {"-5", -1, 0},
    {"1.5", -1, 0},
    {"12abc", -1, 0},
    {"123456789012345678901", -1, 0}, /* 21 digits: not a number we read */
    {"2026-13-26T16:00Z", -1, 0},
    {"2026-03-32T16:00Z", -1, 0},
    {"2026-03-26T24:00Z", -1, 0},
    {"2026-03-26T16:60Z", -1, 0},
    {"2026-03-26T16:00:61Z", -1, 0},
    {"2026-03-26T16:00+25:00", -1, 0},
    {"2026-03-26T16:00Q", -1, 0},
    {"2026-03-26T16:00Z junk", -1, 0},
    {"2026-03-26", -1, 0},
    {"2026-3-26T16:00Z", -1, 0},
    {"1969-12-31T23:59Z", -1, 0},
    {"2026-03-26T16:00:00.Z", -1, 0},
    {"Thu, 26 Mar 2026 16:00:00 GMT", -1, 0}, /* an HTTP-date is Retry-After's form */
};

static void test_reset_table(void)
{
    for (size_t i = 0; i < sizeof(reset_cases) / sizeof(reset_cases[0]); i++) {
        const struct reset_case *c = &reset_cases[i];
        int64_t d = -7;
        int rc = rl_parse_reset(c->v, T_WALL, &d);
        CHECK_MSG(rc == c->rc, "reset \"%s\": rc %d, want %d", c->v, rc, c->rc);
        if (c->rc == 0)
            CHECK_MSG(d == c->delay_ms, "reset \"%s\": %lld ms, want %lld", c->v, (long long)d,
                      (long long)c->delay_ms);
        else
            CHECK_MSG(d == -7, "reset \"%s\": refused but wrote %lld", c->v, (long long)d);
    }
    int64_t d = 0;
    CHECK(rl_parse_reset(NULL, T_WALL, &d) == -1);
}

static const struct reset_case retry_cases[] = {
    {"2", 0, 2000},
    {" 0 ", 0, 0},
    {"50", 0, 50000}, /* Beta-Retry-After: 50, Atlassian's sample */
    {"1847", 0, 1847000},
    {"99999999", 0, RL_MAX_PAUSE_MS},
    {"Thu, 26 Mar 2026 16:00:00 GMT", 0, 30000},
    {"Thursday, 26-Mar-26 16:00:05 GMT", 0, 35000},
    {"Thu Mar 26 16:00:10 2026", 0, 40000},
    {"", -1, 0},
    {"-1", -1, 0},
    {"1.5", -1, 0},
    {"soon", -1, 0},
    {"999999999999999999999999", -1, 0}, /* overflows u64 */
    {"Thu, 26 Mar 2026 16:00:00 PST", -1, 0},
    /* the HTTP-date scanner: exact forms only */
    {"Thu Mar  6 16:00:10 2026", 0, 0}, /* one-digit day, space-padded; in the past */
    {"Thu, 26 Mar 2026 16:00:00 GMT x", -1, 0},
    {"Thu, 26 Mar 2026 16:00:00  GMT", -1, 0},
    {"Thu, 6 Mar 2026 16:00:00 GMT", -1, 0},
    {"Thu, 26 Mar 26 16:00:00 GMT", -1, 0},
    {"Thursday, 26-Mar-2026 16:00:05 GMT", -1, 0},
    {"Thu, 26 March 2026 16:00:00 GMT", -1, 0},
    {"Thu, 26 Mar 2026 16:0:00 GMT", -1, 0},
    {"Thu, 26 Mar 2026 16:00:00 gmt", -1, 0},
    {"Thu,26 Mar 2026 16:00:00 GMT", -1, 0},
    {"Thu Mar 26 16:00:10 2026 ", 0, 40000}, /* trailing space is trimmed first */
    {"Thu Mar 26 16:00:10", -1, 0},
    {"Thu, 31 Feb 2026 16:00:00 GMT", -1, 0},
};

static void test_retry_after_table(void)
{
    for (size_t i = 0; i < sizeof(retry_cases) / sizeof(retry_cases[0]); i++) {
        const struct reset_case *c = &retry_cases[i];
        int64_t d = -7;
        int rc = rl_parse_retry_after(c->v, T_WALL, &d);
        CHECK_MSG(rc == c->rc, "retry-after \"%s\": rc %d", c->v, rc);
        if (c->rc == 0)
            CHECK_MSG(d == c->delay_ms, "retry-after \"%s\": %lld ms", c->v, (long long)d);
    }
}

struct pause_case {
    int status;
    struct rl_signals s;
    int64_t pause_ms;
};

static const struct pause_case pause_cases[] = {
    /* Retry-After wins over everything */
    {429, {.retry_after = "2", .beta_retry_after = "50", .reset = "1774540800"}, 2000},
    /* Beta-Retry-After next */
    {429, {.beta_retry_after = "50", .reset = "2026-03-26T16:00Z"}, 50000},
    /* then X-RateLimit-Reset, ISO and epoch */
    {429, {.reset = "2026-03-26T16:00Z"}, 30000},
    {429, {.reset = "1774540800"}, 30000},
    {503, {.reset = "1774540800"}, 30000},
    /* garbage falls through to the next signal */
    {429, {.retry_after = "soon", .beta_retry_after = "later", .reset = "1774540800"}, 30000},
    /* a 429 naming nothing usable: the default pause */
    {429, {.retry_after = "soon", .reset = "garbage"}, RL_DEFAULT_UPSTREAM_PAUSE_MS},
    {429, {.reason = "jira-burst-based"}, RL_DEFAULT_UPSTREAM_PAUSE_MS},
    /* a 503 naming nothing: no pause */
    {503, {.reason = "x"}, 0},
    /* other statuses never pause, whatever they carry */
    {200, {.retry_after = "30", .reset = "1774540800"}, 0},
    {500, {.retry_after = "30"}, 0},
    {401, {.beta_retry_after = "30"}, 0},
};

static void test_pause_table(void)
{
    for (size_t i = 0; i < sizeof(pause_cases) / sizeof(pause_cases[0]); i++) {
        const struct pause_case *c = &pause_cases[i];
        int64_t p = rl_signals_pause_ms(&c->s, c->status, T_WALL);
        CHECK_MSG(p == c->pause_ms, "case %zu: pause %lld, want %lld", i, (long long)p,
                  (long long)c->pause_ms);
    }
}

struct reason_case {
    const char *v;
    bool ok;
    const char *want;
};

static void test_reason_table(void)
{
    static const struct reason_case cases[] = {
        {"jira-burst-based", true, "jira-burst-based"},
        {"jira-quota-tenant-based", true, "jira-quota-tenant-based"},
        {"confluence-quota-global-based", true, "confluence-quota-global-based"},
        {"  JIRA-Per-Issue-On-Write ", true, "jira-per-issue-on-write"},
        {"jira_cost.based", true, "jira_cost.based"},
        {"jira-max-concurrent-threads-across-all-instances-per-tenant-per-user", true,
         "jira-max-concurrent-threads-across-all-instances"}, /* cut at RL_MAX_REASON */
        {NULL, false, ""},
        {"", false, ""},
        {"   ", false, ""},
        {"two words", false, ""},
        {"quote\"d", false, ""},
        {"new\nline", false, ""},
        {"brace}", false, ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[RL_MAX_REASON + 1];
        memset(out, 'x', sizeof(out));
        bool ok = rl_parse_reason(cases[i].v, out, sizeof(out));
        CHECK_MSG(ok == cases[i].ok, "reason \"%s\"", cases[i].v ? cases[i].v : "(null)");
        CHECK_STR(out, cases[i].want);
        CHECK(strlen(out) <= RL_MAX_REASON);
    }
    /* A small buffer is never overrun. */
    char small[4];
    CHECK(rl_parse_reason("jira-burst-based", small, sizeof(small)));
    CHECK_STR(small, "jir");
}

int main(void)
{
    test_reset_table();
    test_retry_after_table();
    test_pause_table();
    test_reason_table();
    TEST_DONE();
}
