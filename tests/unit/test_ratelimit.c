/*
 * Unit tests for the rate limiter: the pure bucket and fair-queue logic
 * driven by an injected clock, header parsing, and one test with real
 * event loops (a control loop plus two worker loops on their own threads)
 * proving that callbacks arrive on the loop that asked.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "ratelimit.h"
#include "ratelimit_queue.h"
#include "testlib.h"
#include "util.h"

/* ---- config by hand ---- */

static struct config_credential t_creds[2];
static struct config_client t_clients[2];
static struct config t_cfg;

static void cfg_reset(double rate, unsigned burst, enum config_when_exhausted mode)
{
    memset(&t_cfg, 0, sizeof(t_cfg));
    memset(t_creds, 0, sizeof(t_creds));
    memset(t_clients, 0, sizeof(t_clients));
    t_creds[0].name = "svc";
    t_creds[0].rate_per_sec = rate;
    t_creds[0].burst = burst;
    t_creds[1].name = "other";
    t_creds[1].rate_per_sec = 1;
    t_creds[1].burst = 1;
    t_cfg.credentials = t_creds;
    t_cfg.ncredentials = 2;
    t_clients[0].id = "bot-a";
    t_clients[0].key = "ka";
    t_clients[1].id = "bot-b";
    t_clients[1].key = "kb";
    t_cfg.clients = t_clients;
    t_cfg.nclients = 2;
    t_cfg.rate_limit.when_exhausted = mode;
    t_cfg.rate_limit.max_wait_ms = 30000;
    t_cfg.rate_limit.max_queue = 1000;
}

/* ---- the pure part ---- */

static void test_exact_sequence(void)
{
    cfg_reset(100.0 / 60.0, 10, CONFIG_RL_REJECT); /* the default: 100/min, burst 10 */
    struct rlq *q = rlq_new();
    int64_t retry;
    rlq_configure(q, &t_cfg, 0);

    for (int i = 0; i < 10; i++)
        CHECK_MSG(rlq_acquire(q, "svc", NULL, 0, false, NULL, &retry) == RATELIMIT_ADMIT,
                  "burst token %d", i);
    CHECK(rlq_acquire(q, "svc", NULL, 0, false, NULL, &retry) == RATELIMIT_REJECT);
    CHECK_MSG(retry == 600, "retry %lld", (long long)retry);
    CHECK(ratelimit_retry_after_seconds(retry) == 1);
    CHECK(rlq_acquire(q, "svc", NULL, 300, false, NULL, &retry) == RATELIMIT_REJECT);
    CHECK_MSG(retry == 300, "retry %lld", (long long)retry);
    CHECK(rlq_acquire(q, "svc", NULL, 599, false, NULL, &retry) == RATELIMIT_REJECT);
    CHECK_MSG(retry == 1, "retry %lld", (long long)retry);
    CHECK(ratelimit_retry_after_seconds(retry) == 1);
    /* Then exactly one per 600 ms. */
    for (int k = 1; k <= 20; k++) {
        int64_t t = 600 * k;
        CHECK_MSG(rlq_acquire(q, "svc", NULL, t, false, NULL, &retry) == RATELIMIT_ADMIT, "t=%lld",
                  (long long)t);
        CHECK_MSG(rlq_acquire(q, "svc", NULL, t, false, NULL, &retry) == RATELIMIT_REJECT, "t=%lld",
                  (long long)t);
        CHECK_MSG(retry == 600, "t=%lld retry %lld", (long long)t, (long long)retry);
        CHECK(rlq_acquire(q, "svc", NULL, t + 599, false, NULL, &retry) == RATELIMIT_REJECT);
    }
    /* Idle for a long time refills to the burst and no further. */
    int admitted = 0;
    while (rlq_acquire(q, "svc", NULL, 1000000, false, NULL, &retry) == RATELIMIT_ADMIT)
        admitted++;
    CHECK_MSG(admitted == 10, "admitted %d", admitted);
    /* An unknown credential is not limited here. */
    CHECK(rlq_acquire(q, "nope", NULL, 0, false, NULL, &retry) == RATELIMIT_ADMIT);
    rlq_free(q);
}

static void test_retry_after_seconds(void)
{
    CHECK(ratelimit_retry_after_seconds(0) == 1);
    CHECK(ratelimit_retry_after_seconds(1) == 1);
    CHECK(ratelimit_retry_after_seconds(1000) == 1);
    CHECK(ratelimit_retry_after_seconds(1001) == 2);
    CHECK(ratelimit_retry_after_seconds(2000) == 2);
    CHECK(ratelimit_retry_after_seconds(29999) == 30);
}

static void test_rate_off_and_reconfigure(void)
{
    cfg_reset(1, 10, CONFIG_RL_REJECT);
    t_creds[0].rate_off = true;
    struct rlq *q = rlq_new();
    int64_t retry;
    rlq_configure(q, &t_cfg, 0);
    for (int i = 0; i < 5000; i++) {
        if (rlq_acquire(q, "svc", NULL, 0, false, NULL, &retry) != RATELIMIT_ADMIT) {
            CHECK_MSG(0, "rate off rejected at %d", i);
            break;
        }
    }
    /* Back on, burst 10: starts from a full bucket; a reload keeps the level. */
    cfg_reset(1, 10, CONFIG_RL_REJECT);
    rlq_configure(q, &t_cfg, 1);
    for (int i = 0; i < 4; i++)
        CHECK(rlq_acquire(q, "svc", NULL, 1, false, NULL, &retry) == RATELIMIT_ADMIT);
    cfg_reset(1, 20, CONFIG_RL_REJECT);
    rlq_configure(q, &t_cfg, 1);
    int n = 0;
    while (rlq_acquire(q, "svc", NULL, 1, false, NULL, &retry) == RATELIMIT_ADMIT)
        n++;
    CHECK_MSG(n == 6, "level kept across reload: %d", n);
    /* A smaller burst clamps. */
    cfg_reset(1, 2, CONFIG_RL_REJECT);
    rlq_configure(q, &t_cfg, 100000);
    n = 0;
    while (rlq_acquire(q, "svc", NULL, 100000, false, NULL, &retry) == RATELIMIT_ADMIT)
        n++;
    CHECK_MSG(n == 2, "clamped to the new burst: %d", n);
    rlq_free(q);
}

/* 2026-03-26T15:59:30Z in ms */
#define T_WALL (INT64_C(1774540770) * 1000)

static void test_parse_headers(void)
{
    int64_t d = -5;
    CHECK(rl_parse_retry_after("2", T_WALL, &d) == 0 && d == 2000);
    CHECK(rl_parse_retry_after(" 0 ", T_WALL, &d) == 0 && d == 0);
    CHECK(rl_parse_retry_after("1847", T_WALL, &d) == 0 && d == 1847000);
    CHECK(rl_parse_retry_after("99999999", T_WALL, &d) == 0 && d == RL_MAX_PAUSE_MS);
    CHECK(rl_parse_retry_after("Thu, 26 Mar 2026 16:00:00 GMT", T_WALL, &d) == 0 && d == 30000);
    CHECK(rl_parse_retry_after("Thursday, 26-Mar-26 16:00:05 GMT", T_WALL, &d) == 0 && d == 35000);
    CHECK(rl_parse_retry_after("Thu Mar 26 16:00:10 2026", T_WALL, &d) == 0 && d == 40000);
    CHECK(rl_parse_retry_after("Thu, 26 Mar 2026 15:00:00 GMT", T_WALL, &d) == 0 && d == 0);
    const char *bad_ra[] = {"",
                            "soon",
                            "-1",
                            "1.5",
                            "12abc",
                            "0x10",
                            "Thu, 26 Mar 2026 16:00:00 PST",
                            "Thu, 32 Mar 2026 16:00:00 GMT",
                            "Thu, 26 Foo 2026 16:00:00 GMT",
                            "Thu, 26 Mar 2026 16:00:00 GMT x"};
    for (size_t i = 0; i < UTIL_ARRAY_LEN(bad_ra); i++)
        CHECK_MSG(rl_parse_retry_after(bad_ra[i], T_WALL, &d) < 0, "bad %s", bad_ra[i]);
    CHECK(rl_parse_retry_after(NULL, T_WALL, &d) < 0);

    CHECK(rl_parse_reset("2026-03-26T16:00Z", T_WALL, &d) == 0 && d == 30000);
    CHECK(rl_parse_reset("2026-03-26T16:00:10Z", T_WALL, &d) == 0 && d == 40000);
    CHECK(rl_parse_reset("2026-03-26T16:00:10.500Z", T_WALL, &d) == 0 && d == 40500);
    CHECK(rl_parse_reset("2026-03-26T17:00+01:00", T_WALL, &d) == 0 && d == 30000);
    CHECK(rl_parse_reset("2026-03-26T15:00-0100", T_WALL, &d) == 0 && d == 30000);
    CHECK(rl_parse_reset("2026-01-01T01:01:01Z", T_WALL, &d) == 0 && d == 0); /* past */
    CHECK(rl_parse_reset("2030-01-01T00:00Z", T_WALL, &d) == 0 && d == RL_MAX_PAUSE_MS);
    /* Without a zone is UTC (test_ratelimit_headers has the full table). */
    CHECK(rl_parse_reset("2026-03-26T16:00", T_WALL, &d) == 0 && d == 30000);
    const char *bad_reset[] = {"",
                               "2026-03-26",
                               "2026-03-26T16Z",
                               "2026-13-26T16:00Z",
                               "2026-03-26T25:00Z",
                               "26/03/2026 16:00",
                               "2026-03-26T16:00Zjunk",
                               "garbage"};
    for (size_t i = 0; i < UTIL_ARRAY_LEN(bad_reset); i++)
        CHECK_MSG(rl_parse_reset(bad_reset[i], T_WALL, &d) < 0, "bad %s", bad_reset[i]);
}

static void test_upstream_pause(void)
{
    struct rlq_upstream_effect eff;
    int64_t retry;
    cfg_reset(100.0 / 60.0, 10, CONFIG_RL_REJECT);
    struct rlq *q = rlq_new();
    rlq_configure(q, &t_cfg, 0);

    /* 429 with Retry-After: 2 -> nothing for 2 s, then one token, then the steady rate. */
    CHECK(rlq_upstream(q, "svc", 429, "2", NULL, "0", NULL, 0, T_WALL, &eff));
    CHECK(eff.pause_ms == 2000);
    CHECK(rlq_acquire(q, "svc", NULL, 0, false, NULL, &retry) == RATELIMIT_REJECT);
    CHECK_MSG(retry == 2000, "retry %lld", (long long)retry);
    CHECK(ratelimit_retry_after_seconds(retry) == 2);
    CHECK(rlq_acquire(q, "svc", NULL, 1999, false, NULL, &retry) == RATELIMIT_REJECT);
    CHECK(retry == 1);
    CHECK(rlq_acquire(q, "svc", NULL, 2000, false, NULL, &retry) == RATELIMIT_ADMIT);
    CHECK(rlq_acquire(q, "svc", NULL, 2000, false, NULL, &retry) == RATELIMIT_REJECT);
    CHECK(retry == 600);
    /* Other credentials are not paused. */
    CHECK(rlq_acquire(q, "other", NULL, 0, false, NULL, &retry) == RATELIMIT_ADMIT);

    /* HTTP-date Retry-After, then X-RateLimit-Reset without and with seconds. */
    CHECK(rlq_upstream(q, "svc", 429, "Thu, 26 Mar 2026 16:00:00 GMT", NULL, NULL, NULL, 10000,
                       T_WALL, &eff));
    CHECK(eff.pause_ms == 30000);
    CHECK(rlq_acquire(q, "svc", NULL, 10000, false, NULL, &retry) == RATELIMIT_REJECT);
    CHECK_MSG(retry == 30000, "retry %lld", (long long)retry);
    CHECK(rlq_acquire(q, "svc", NULL, 40000, false, NULL, &retry) == RATELIMIT_ADMIT);

    CHECK(rlq_upstream(q, "svc", 429, NULL, "2026-03-26T16:00Z", NULL, NULL, 50000, T_WALL, &eff));
    CHECK(eff.pause_ms == 30000);
    CHECK(rlq_acquire(q, "svc", NULL, 79999, false, NULL, &retry) == RATELIMIT_REJECT);
    CHECK(rlq_acquire(q, "svc", NULL, 80000, false, NULL, &retry) == RATELIMIT_ADMIT);

    CHECK(
        rlq_upstream(q, "svc", 503, NULL, "2026-03-26T16:00:10Z", NULL, NULL, 90000, T_WALL, &eff));
    CHECK(eff.pause_ms == 40000);
    CHECK(rlq_acquire(q, "svc", NULL, 90000, false, NULL, &retry) == RATELIMIT_REJECT);
    CHECK(retry == 40000);

    /* A shorter pause never shortens a longer one. */
    CHECK(rlq_upstream(q, "svc", 429, "1", NULL, NULL, NULL, 90000, T_WALL, &eff));
    CHECK(rlq_acquire(q, "svc", NULL, 91000, false, NULL, &retry) == RATELIMIT_REJECT);
    CHECK(retry == 39000);

    /* Garbage is ignored: a 503 with garbage does nothing; a 429 falls back to the default. */
    rlq_configure(q, &t_cfg, 1000000);
    int64_t t = 1000000;
    CHECK(!rlq_upstream(q, "svc", 503, "soon", "tomorrow", NULL, NULL, t, T_WALL, &eff));
    CHECK(eff.pause_ms == 0);
    CHECK(!rlq_upstream(q, "svc", 503, NULL, NULL, NULL, NULL, t, T_WALL, &eff));
    CHECK(rlq_acquire(q, "svc", NULL, t, false, NULL, &retry) == RATELIMIT_ADMIT);
    CHECK(rlq_upstream(q, "svc", 429, "soon", "garbage", NULL, NULL, t, T_WALL, &eff));
    CHECK(eff.pause_ms == RL_DEFAULT_UPSTREAM_PAUSE_MS);
    CHECK(rlq_acquire(q, "svc", NULL, t, false, NULL, &retry) == RATELIMIT_REJECT);
    CHECK(retry == RL_DEFAULT_UPSTREAM_PAUSE_MS);
    /* A 200 never pauses; statuses other than 429/503 ignore Retry-After. */
    t += 100000;
    CHECK(!rlq_upstream(q, "svc", 200, "30", NULL, NULL, NULL, t, T_WALL, &eff));
    CHECK(!rlq_upstream(q, "svc", 500, "30", NULL, NULL, NULL, t, T_WALL, &eff));
    CHECK(rlq_acquire(q, "svc", NULL, t, false, NULL, &retry) == RATELIMIT_ADMIT);
    /* Unknown credential: nothing. */
    CHECK(!rlq_upstream(q, "nope", 429, "5", NULL, NULL, NULL, t, T_WALL, &eff));
    rlq_free(q);
}

static void test_soft_signals(void)
{
    struct rlq_upstream_effect eff;
    int64_t retry;
    cfg_reset(100.0 / 60.0, 10, CONFIG_RL_REJECT);
    struct rlq *q = rlq_new();
    rlq_configure(q, &t_cfg, 0);

    /* NearLimit: true -> at most one saved token, the rate goes on. */
    CHECK(rlq_upstream(q, "svc", 200, NULL, NULL, "15", "true", 0, T_WALL, &eff));
    CHECK(eff.cap_tokens == 1 && eff.pause_ms == 0);
    CHECK(rlq_acquire(q, "svc", NULL, 0, false, NULL, &retry) == RATELIMIT_ADMIT);
    CHECK(rlq_acquire(q, "svc", NULL, 0, false, NULL, &retry) == RATELIMIT_REJECT);
    CHECK(retry == 600);
    CHECK(rlq_acquire(q, "svc", NULL, 600, false, NULL, &retry) == RATELIMIT_ADMIT);

    /* Remaining: 0 -> nothing saved; the next token comes at the steady rate. */
    rlq_configure(q, &t_cfg, 100000);
    CHECK(rlq_upstream(q, "svc", 200, NULL, NULL, "0", NULL, 100000, T_WALL, &eff));
    CHECK(eff.cap_tokens == 0);
    CHECK(rlq_acquire(q, "svc", NULL, 100000, false, NULL, &retry) == RATELIMIT_REJECT);
    CHECK(retry == 600);
    CHECK(rlq_acquire(q, "svc", NULL, 100600, false, NULL, &retry) == RATELIMIT_ADMIT);

    /* Remaining > 0 and NearLimit false change nothing; nor does garbage. */
    CHECK(!rlq_upstream(q, "svc", 200, NULL, NULL, "42", "false", 200000, T_WALL, &eff));
    CHECK(!rlq_upstream(q, "svc", 200, NULL, NULL, "zero", "maybe", 200000, T_WALL, &eff));
    int n = 0;
    while (rlq_acquire(q, "svc", NULL, 200000, false, NULL, &retry) == RATELIMIT_ADMIT)
        n++;
    CHECK_MSG(n == 10, "full burst kept: %d", n);
    rlq_free(q);
}

static void test_client_inside_credential(void)
{
    int64_t retry;
    cfg_reset(100.0 / 60.0, 10, CONFIG_RL_REJECT);
    t_clients[0].has_rate = true;
    t_clients[0].rate_per_sec = 1;
    t_clients[0].burst = 2;
    struct rlq *q = rlq_new();
    rlq_configure(q, &t_cfg, 0);

    CHECK(rlq_acquire(q, "svc", "bot-a", 0, false, NULL, &retry) == RATELIMIT_ADMIT);
    CHECK(rlq_acquire(q, "svc", "bot-a", 0, false, NULL, &retry) == RATELIMIT_ADMIT);
    for (int i = 0; i < 5; i++) {
        CHECK(rlq_acquire(q, "svc", "bot-a", 0, false, NULL, &retry) == RATELIMIT_REJECT);
        CHECK_MSG(retry == 1000, "client retry %lld", (long long)retry);
    }
    /* bot-a's refusals burned no credential tokens: 8 remain for the others. */
    int n = 0;
    while (rlq_acquire(q, "svc", n % 2 ? "bot-b" : NULL, 0, false, NULL, &retry) == RATELIMIT_ADMIT)
        n++;
    CHECK_MSG(n == 8, "credential tokens left: %d", n);
    CHECK(retry == 600);
    /* Credential empty, client refilled: the credential decides and its wait is reported. */
    CHECK(rlq_acquire(q, "svc", "bot-a", 1000, false, NULL, &retry) == RATELIMIT_ADMIT);
    CHECK(rlq_acquire(q, "svc", "bot-b", 1000, false, NULL, &retry) == RATELIMIT_REJECT);
    CHECK_MSG(retry == 200, "retry %lld", (long long)retry);
    /* A client with a rate cannot exceed it even when the credential has plenty. */
    cfg_reset(1000, 1000, CONFIG_RL_REJECT);
    t_clients[0].has_rate = true;
    t_clients[0].rate_per_sec = 1;
    t_clients[0].burst = 2;
    rlq_configure(q, &t_cfg, 5000);
    n = 0;
    for (int i = 0; i < 10; i++)
        n += rlq_acquire(q, "svc", "bot-a", 5000, false, NULL, &retry) == RATELIMIT_ADMIT;
    CHECK_MSG(n == 2, "client burst: %d", n);
    rlq_free(q);
}

struct t_waiter {
    struct rlq_waiter node;
    char who;
    int idx;
};

static void test_fairness(void)
{
    static struct t_waiter wa[50], wb[2];
    int64_t retry;
    cfg_reset(10, 1, CONFIG_RL_QUEUE); /* one token per 100 ms */
    struct rlq *q = rlq_new();
    rlq_configure(q, &t_cfg, 0);
    CHECK(rlq_acquire(q, "svc", "bot-a", 0, false, NULL, &retry) == RATELIMIT_ADMIT);
    for (int i = 0; i < 50; i++) {
        wa[i].who = 'A';
        wa[i].idx = i;
        CHECK(rlq_acquire(q, "svc", "bot-a", 1, false, &wa[i].node, &retry) == RATELIMIT_QUEUED);
    }
    for (int i = 0; i < 2; i++) {
        wb[i].who = 'B';
        wb[i].idx = i;
        CHECK(rlq_acquire(q, "svc", "bot-b", 2, false, &wb[i].node, &retry) == RATELIMIT_QUEUED);
    }
    CHECK(rlq_queued(q) == 52);
    struct rlq_cred *cr = rlq_cred_find(q, "svc");
    CHECK(rlq_grant(q, cr, 50) == NULL);
    CHECK_MSG(rlq_next_due_ms(q, cr, 50) == 50, "due %lld", (long long)rlq_next_due_ms(q, cr, 50));

    char order[64] = {0};
    int a_next = 0, b_seen = 0, pos_last_b = -1;
    for (int g = 0; g < 52; g++) {
        int64_t t = 100 * (g + 1);
        struct rlq_waiter *n = rlq_grant(q, cr, t);
        CHECK_MSG(n != NULL, "grant %d", g);
        if (!n)
            break;
        CHECK(rlq_grant(q, cr, t) == NULL); /* one per token */
        struct t_waiter *tw = (struct t_waiter *)n;
        order[g] = tw->who;
        if (tw->who == 'A') {
            CHECK(tw->idx == a_next); /* FIFO within a client */
            a_next++;
        } else {
            CHECK(tw->idx == b_seen);
            b_seen++;
            pos_last_b = g;
        }
    }
    CHECK_MSG(pos_last_b >= 0 && pos_last_b < 4, "B served late: %s", order);
    CHECK(rlq_queued(q) == 0);
    CHECK(rlq_next_due_ms(q, cr, 10000) == -1);
    rlq_free(q);
}

static void test_fairness_with_client_rates(void)
{
    /* A's own bucket is empty: A's waiters must not block B behind them. */
    static struct t_waiter wa[3], wb[1];
    int64_t retry;
    cfg_reset(10, 5, CONFIG_RL_QUEUE);
    t_clients[0].has_rate = true;
    t_clients[0].rate_per_sec = 1;
    t_clients[0].burst = 1;
    struct rlq *q = rlq_new();
    rlq_configure(q, &t_cfg, 0);
    struct rlq_cred *cr = rlq_cred_find(q, "svc");
    CHECK(rlq_acquire(q, "svc", "bot-a", 0, false, NULL, &retry) == RATELIMIT_ADMIT);
    for (int i = 0; i < 3; i++)
        CHECK(rlq_acquire(q, "svc", "bot-a", 0, false, &wa[i].node, &retry) == RATELIMIT_QUEUED);
    /* B arrives with credential tokens free: admitted at once, not queued behind A. */
    CHECK(rlq_acquire(q, "svc", "bot-b", 0, false, &wb[0].node, &retry) == RATELIMIT_ADMIT);
    CHECK(rlq_grant(q, cr, 500) == NULL);
    CHECK(rlq_next_due_ms(q, cr, 500) == 500);
    CHECK(rlq_grant(q, cr, 1000) == &wa[0].node);
    CHECK(rlq_grant(q, cr, 1000) == NULL);
    rlq_free(q);
}

static void test_queue_bounds_expiry_cancel(void)
{
    static struct t_waiter w[5];
    int64_t retry;
    cfg_reset(1, 1, CONFIG_RL_QUEUE);
    t_cfg.rate_limit.max_queue = 3;
    t_cfg.rate_limit.max_wait_ms = 1000;
    struct rlq *q = rlq_new();
    rlq_configure(q, &t_cfg, 0);
    struct rlq_cred *cr = rlq_cred_find(q, "svc");

    CHECK(rlq_acquire(q, "svc", NULL, 0, false, NULL, &retry) == RATELIMIT_ADMIT);
    CHECK(rlq_acquire(q, "svc", NULL, 0, false, &w[0].node, &retry) == RATELIMIT_QUEUED);
    CHECK(rlq_acquire(q, "svc", "x", 100, false, &w[1].node, &retry) == RATELIMIT_QUEUED);
    CHECK(rlq_acquire(q, "svc", NULL, 200, false, &w[2].node, &retry) == RATELIMIT_QUEUED);
    /* Full: 429 at once, with an honest wait (three ahead of it at 1/s). */
    CHECK(rlq_acquire(q, "svc", NULL, 200, false, &w[3].node, &retry) == RATELIMIT_REJECT);
    CHECK_MSG(retry == 3800, "full-queue retry %lld", (long long)retry);
    CHECK(ratelimit_retry_after_seconds(retry) == 4);
    CHECK(rlq_queued(q) == 3);
    /* max_queue is across credentials. */
    CHECK(rlq_acquire(q, "other", NULL, 200, false, NULL, &retry) == RATELIMIT_ADMIT);
    CHECK(rlq_acquire(q, "other", NULL, 200, false, &w[4].node, &retry) == RATELIMIT_REJECT);

    /* Cancel the middle one: the queue shrinks and it is never granted. */
    rlq_remove(q, &w[1].node);
    rlq_remove(q, &w[1].node); /* idempotent */
    CHECK(rlq_queued(q) == 2);

    /* max_wait: nothing expires before the deadline, then the oldest first. */
    CHECK(rlq_pop_expired(q, 999) == NULL);
    CHECK(rlq_pop_expired(q, 1000) == &w[0].node);
    CHECK(rlq_pop_expired(q, 1000) == NULL);
    CHECK(rlq_queued(q) == 1);
    CHECK(rlq_grant(q, cr, 1000) == &w[2].node);
    CHECK(rlq_queued(q) == 0);

    /* Reject mode never queues. */
    cfg_reset(1, 1, CONFIG_RL_REJECT);
    rlq_configure(q, &t_cfg, 5000);
    CHECK(rlq_acquire(q, "svc", NULL, 5000, false, NULL, &retry) == RATELIMIT_ADMIT);
    CHECK(rlq_acquire(q, "svc", NULL, 5000, false, &w[0].node, &retry) == RATELIMIT_REJECT);
    CHECK(retry == 1000);
    CHECK(rlq_queued(q) == 0);
    rlq_free(q);
}

/* ---- real event loops ---- */

#define T_PER_WORKER 5

struct t_worker {
    struct ratelimit *rl;
    struct event_base *base;
    pthread_t thread;
    int fired;
    int admitted;
    int wrong_thread;
    int64_t last_ms;
    struct ratelimit_wait *cancel_me;
    int cancelled_fired;
};

struct t_req {
    struct t_worker *w;
    bool cancelled;
};

static void t_cb(void *arg, bool admitted, int64_t retry_after_ms, int64_t waited_ms)
{
    struct t_req *r = arg;
    struct t_worker *w = r->w;
    (void)retry_after_ms;
    (void)waited_ms;
    if (r->cancelled)
        w->cancelled_fired++;
    if (!pthread_equal(pthread_self(), w->thread))
        w->wrong_thread++;
    w->fired++;
    w->admitted += admitted;
    w->last_ms = util_now_ms();
    if (w->fired == T_PER_WORKER)
        event_base_loopexit(w->base, NULL);
}

static void *t_worker_main(void *arg)
{
    struct t_worker *w = arg;
    static struct t_req reqs[2][T_PER_WORKER + 1];
    int me = w->base == NULL ? 0 : 0;
    (void)me;
    struct t_req *mine = reqs[w->cancelled_fired]; /* index passed in cancelled_fired */
    w->cancelled_fired = 0;
    w->thread = pthread_self();
    int64_t retry;
    struct ratelimit_wait *wait;
    for (int i = 0; i < T_PER_WORKER + 1; i++) {
        mine[i].w = w;
        mine[i].cancelled = i == T_PER_WORKER;
        enum ratelimit_result r = ratelimit_acquire(w->rl, w->base, "svc", NULL, util_now_ms(),
                                                    &retry, t_cb, &mine[i], &wait);
        if (r == RATELIMIT_ADMIT) {
            t_cb(&mine[i], true, 0, 0);
        } else if (r == RATELIMIT_QUEUED) {
            if (mine[i].cancelled)
                w->cancel_me = wait;
        } else {
            w->fired = -1000; /* must not happen in queue mode */
        }
    }
    if (w->cancel_me)
        ratelimit_cancel(w->cancel_me);
    struct timeval limit = {.tv_sec = 10};
    event_base_loopexit(w->base, &limit);
    event_base_dispatch(w->base);
    return NULL;
}

static volatile int t_control_stop;

static void t_control_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    if (t_control_stop)
        event_base_loopbreak(arg);
}

static void *t_control_main(void *arg)
{
    struct event_base *base = arg;
    struct event *tick = event_new(base, -1, EV_PERSIST, t_control_tick, base);
    struct timeval tv = {.tv_usec = 20000};
    event_add(tick, &tv);
    event_base_dispatch(base);
    event_free(tick);
    return NULL;
}

static void test_real_loops(void)
{
    cfg_reset(20, 1, CONFIG_RL_QUEUE); /* one per 50 ms */
    struct event_base *control = event_base_new();
    char *err = NULL;
    struct ratelimit *rl = ratelimit_new(&t_cfg, control, &err);
    CHECK(rl != NULL);
    pthread_t ct;
    pthread_create(&ct, NULL, t_control_main, control);

    struct t_worker w[2];
    memset(w, 0, sizeof(w));
    int64_t start = util_now_ms();
    for (int i = 0; i < 2; i++) {
        w[i].rl = rl;
        w[i].base = event_base_new();
        w[i].cancelled_fired = i;
        pthread_create(&w[i].thread, NULL, t_worker_main, &w[i]);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(w[i].thread, NULL);
    int64_t end = w[0].last_ms > w[1].last_ms ? w[0].last_ms : w[1].last_ms;
    for (int i = 0; i < 2; i++) {
        CHECK_MSG(w[i].fired == T_PER_WORKER, "worker %d fired %d", i, w[i].fired);
        CHECK(w[i].admitted == T_PER_WORKER);
        CHECK_MSG(w[i].wrong_thread == 0, "worker %d: %d callbacks on another thread", i,
                  w[i].wrong_thread);
        CHECK(w[i].cancelled_fired == 0);
    }
    /* 10 requests, burst 1, 20/s: the last one ~450 ms later; not a free-for-all. */
    CHECK_MSG(end - start >= 400 && end - start < 3000, "took %lld ms", (long long)(end - start));
    struct ratelimit_stats st;
    ratelimit_get_stats(rl, &st);
    CHECK(st.admitted == 10);
    CHECK(st.queued_total >= 8);
    CHECK(st.queued_now == 0);
    CHECK(st.rejected == 0);

    t_control_stop = 1;
    pthread_join(ct, NULL);
    ratelimit_free(rl);
    for (int i = 0; i < 2; i++)
        event_base_free(w[i].base);
    event_base_free(control);
}

/* max_wait expiry and a full queue through the public API with a real loop. */
struct t_single {
    struct event_base *base;
    int fired;
    bool admitted;
    int64_t retry;
};

static void t_single_cb(void *arg, bool admitted, int64_t retry_after_ms, int64_t waited_ms)
{
    struct t_single *s = arg;
    (void)waited_ms;
    s->fired++;
    s->admitted = admitted;
    s->retry = retry_after_ms;
    event_base_loopexit(s->base, NULL);
}

static void test_real_max_wait(void)
{
    cfg_reset(0.5, 1, CONFIG_RL_QUEUE); /* one per 2 s */
    t_cfg.rate_limit.max_wait_ms = 200;
    t_cfg.rate_limit.max_queue = 1;
    struct event_base *base = event_base_new();
    struct ratelimit *rl = ratelimit_new(&t_cfg, base, NULL);
    struct t_single s = {.base = base};
    struct ratelimit_wait *wait = NULL;
    int64_t retry;
    int64_t now = util_now_ms();
    CHECK(ratelimit_acquire(rl, base, "svc", NULL, now, &retry, t_single_cb, &s, &wait) ==
          RATELIMIT_ADMIT);
    CHECK(ratelimit_acquire(rl, base, "svc", NULL, now, &retry, t_single_cb, &s, &wait) ==
          RATELIMIT_QUEUED);
    CHECK(wait != NULL);
    struct ratelimit_wait *w2 = NULL;
    CHECK(ratelimit_acquire(rl, base, "svc", NULL, now, &retry, t_single_cb, &s, &w2) ==
          RATELIMIT_REJECT);
    CHECK(w2 == NULL);
    CHECK_MSG(retry >= 3900 && retry <= 4000, "full-queue retry %lld", (long long)retry);
    struct timeval limit = {.tv_sec = 5};
    event_base_loopexit(base, &limit);
    event_base_dispatch(base);
    int64_t took = util_now_ms() - now;
    CHECK(s.fired == 1);
    CHECK(!s.admitted);
    CHECK_MSG(took >= 190 && took < 1500, "max_wait took %lld", (long long)took);
    CHECK_MSG(s.retry >= 1700 && s.retry <= 2000, "retry %lld", (long long)s.retry);
    struct ratelimit_stats st;
    ratelimit_get_stats(rl, &st);
    CHECK(st.rejected == 2 && st.admitted == 1 && st.queued_now == 0);
    CHECK(st.waited_ms_total >= 190);

    /* Upstream pause through the public API. */
    ratelimit_upstream_response(rl, "other", 429, "3", NULL, NULL, NULL, util_now_ms());
    CHECK(ratelimit_acquire(rl, base, "other", NULL, util_now_ms(), &retry, NULL, NULL, NULL) ==
          RATELIMIT_REJECT);
    CHECK(ratelimit_retry_after_seconds(retry) == 3);
    ratelimit_get_stats(rl, &st);
    CHECK(st.upstream_429 == 1);

    /* Shutdown with a waiter: its callback says no. */
    s.fired = 0;
    CHECK(ratelimit_acquire(rl, base, "svc", NULL, util_now_ms(), &retry, t_single_cb, &s, &wait) ==
          RATELIMIT_QUEUED);
    ratelimit_free(rl);
    event_base_loopexit(base, &limit);
    event_base_dispatch(base);
    CHECK(s.fired == 1 && !s.admitted);
    event_base_free(base);
}

int main(void)
{
    evthread_use_pthreads();
    test_exact_sequence();
    test_retry_after_seconds();
    test_rate_off_and_reconfigure();
    test_parse_headers();
    test_upstream_pause();
    test_soft_signals();
    test_client_inside_credential();
    test_fairness();
    test_fairness_with_client_rates();
    test_queue_bounds_expiry_cancel();
    test_real_loops();
    test_real_max_wait();
    TEST_DONE();
}
