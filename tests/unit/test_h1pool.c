/*
 * test_h1pool: the lean engine's idle pool with an injected clock, and the
 * retry rule as a table.
 */
#include <stdint.h>
#include <string.h>

#include "h1pool.h"
#include "testlib.h"

static int items[H1POOL_MAX_IDLE + 4];

static void test_lifo_and_bound(void)
{
    struct h1pool p;
    void *exp[4];
    size_t nexp = 9;

    memset(&p, 0, sizeof(p));
    CHECK(h1pool_take(&p, 0, exp, 4, &nexp) == NULL && nexp == 0);
    CHECK(h1pool_next_expiry(&p, 0) == -1);
    for (int i = 0; i < H1POOL_MAX_IDLE; i++)
        CHECK(h1pool_put(&p, &items[i], 1000 + i) == NULL);
    CHECK(p.n == H1POOL_MAX_IDLE);
    /* full: the oldest goes back to the caller to close, never kept */
    CHECK(h1pool_put(&p, &items[H1POOL_MAX_IDLE], 2000) == &items[0]);
    CHECK(p.n == H1POOL_MAX_IDLE);
    CHECK(!h1pool_remove(&p, &items[0]));
    /* LIFO: the warmest connection first */
    CHECK(h1pool_take(&p, 2001, exp, 4, &nexp) == &items[H1POOL_MAX_IDLE] && nexp == 0);
    CHECK(h1pool_take(&p, 2001, exp, 4, &nexp) == &items[H1POOL_MAX_IDLE - 1]);
    /* closed while idle: removed, never handed out */
    CHECK(h1pool_remove(&p, &items[H1POOL_MAX_IDLE - 2]));
    CHECK(h1pool_take(&p, 2001, exp, 4, &nexp) == &items[H1POOL_MAX_IDLE - 3]);
}

static void test_idle_timeout(void)
{
    struct h1pool p;
    void *exp[2];
    size_t nexp = 0;
    int64_t t0 = 50000;

    memset(&p, 0, sizeof(p));
    h1pool_put(&p, &items[0], t0);
    h1pool_put(&p, &items[1], t0 + 10);
    h1pool_put(&p, &items[2], t0 + 20);
    CHECK(h1pool_next_expiry(&p, t0) == H1POOL_IDLE_TIMEOUT_MS);
    CHECK(h1pool_next_expiry(&p, t0 + H1POOL_IDLE_TIMEOUT_MS + 5) == 0);
    /* one ms before the limit: still fresh */
    CHECK(h1pool_expire(&p, t0 + H1POOL_IDLE_TIMEOUT_MS - 1, exp, 2) == 0);
    /* at the limit the oldest expires; the next is still fresh */
    CHECK(h1pool_expire(&p, t0 + H1POOL_IDLE_TIMEOUT_MS, exp, 2) == 1 && exp[0] == &items[0]);
    /* take past every limit: expired ones come back for closing (bounded by cap), none is handed
     * out */
    CHECK(h1pool_take(&p, t0 + 10 * H1POOL_IDLE_TIMEOUT_MS, exp, 1, &nexp) == NULL);
    CHECK(nexp == 1 && exp[0] == &items[1]);
    CHECK(h1pool_take(&p, t0 + 10 * H1POOL_IDLE_TIMEOUT_MS, exp, 2, &nexp) == NULL);
    CHECK(nexp == 1 && exp[0] == &items[2] && p.n == 0);
}

/* Slots: at most H1POOL_MAX_ACTIVE held, waiters served strictly in arrival order. */
static void test_slots_fifo(void)
{
    static struct h1pool p;
    static struct h1pool_waiter w[H1POOL_MAX_ACTIVE + 5];

    memset(&p, 0, sizeof(p));
    for (int i = 0; i < H1POOL_MAX_ACTIVE; i++)
        CHECK(h1pool_acquire(&p, &w[i]) == H1POOL_GRANTED);
    CHECK(p.active == H1POOL_MAX_ACTIVE && p.nwaiting == 0);
    /* full: the next three wait, in order */
    for (int i = 0; i < 3; i++)
        CHECK(h1pool_acquire(&p, &w[H1POOL_MAX_ACTIVE + i]) == H1POOL_QUEUED);
    CHECK(p.nwaiting == 3 && p.active == H1POOL_MAX_ACTIVE);
    /* a release hands the slot to the oldest waiter; the count of held slots stays */
    CHECK(h1pool_release(&p) == &w[H1POOL_MAX_ACTIVE]);
    CHECK(!w[H1POOL_MAX_ACTIVE].queued && p.active == H1POOL_MAX_ACTIVE && p.nwaiting == 2);
    /* a waiter that gives up leaves the queue; the one behind it moves up */
    CHECK(h1pool_unwait(&p, &w[H1POOL_MAX_ACTIVE + 1]));
    CHECK(!h1pool_unwait(&p, &w[H1POOL_MAX_ACTIVE + 1]));
    CHECK(p.nwaiting == 1);
    /* a newcomer never overtakes a waiter */
    CHECK(h1pool_acquire(&p, &w[H1POOL_MAX_ACTIVE + 3]) == H1POOL_QUEUED);
    CHECK(h1pool_release(&p) == &w[H1POOL_MAX_ACTIVE + 2]);
    CHECK(h1pool_release(&p) == &w[H1POOL_MAX_ACTIVE + 3]);
    CHECK(p.nwaiting == 0 && p.head == NULL && p.tail == NULL);
    /* nobody waits: releases free slots, and a free slot is granted at once */
    CHECK(h1pool_release(&p) == NULL && p.active == H1POOL_MAX_ACTIVE - 1);
    CHECK(h1pool_acquire(&p, &w[H1POOL_MAX_ACTIVE + 4]) == H1POOL_GRANTED);
    for (int i = 0; i < H1POOL_MAX_ACTIVE; i++)
        CHECK(h1pool_release(&p) == NULL);
    CHECK(p.active == 0);
    /* never below zero */
    CHECK(h1pool_release(&p) == NULL && p.active == 0);
}

/* The queue is bounded: one more waiter than H1POOL_MAX_WAITING is refused, not queued. */
static void test_waiting_bound(void)
{
    static struct h1pool p;
    static struct h1pool_waiter w[H1POOL_MAX_ACTIVE + H1POOL_MAX_WAITING + 1];
    size_t n = 0;

    memset(&p, 0, sizeof(p));
    for (int i = 0; i < H1POOL_MAX_ACTIVE; i++)
        CHECK(h1pool_acquire(&p, &w[n++]) == H1POOL_GRANTED);
    for (int i = 0; i < H1POOL_MAX_WAITING; i++)
        CHECK(h1pool_acquire(&p, &w[n++]) == H1POOL_QUEUED);
    CHECK(h1pool_acquire(&p, &w[n]) == H1POOL_REFUSED);
    CHECK(!w[n].queued && p.nwaiting == H1POOL_MAX_WAITING);
    /* unwaiting from the middle and both ends keeps the order of the rest */
    CHECK(h1pool_unwait(&p, &w[H1POOL_MAX_ACTIVE]));
    CHECK(h1pool_unwait(&p, &w[n - 1]));
    CHECK(h1pool_unwait(&p, &w[H1POOL_MAX_ACTIVE + 10]));
    CHECK(h1pool_release(&p) == &w[H1POOL_MAX_ACTIVE + 1]);
    for (int i = 2; i < 10; i++)
        CHECK(h1pool_release(&p) == &w[H1POOL_MAX_ACTIVE + i]);
    CHECK(h1pool_release(&p) == &w[H1POOL_MAX_ACTIVE + 11]);
    /* room again: the refused one may queue now */
    CHECK(h1pool_acquire(&p, &w[n]) == H1POOL_QUEUED);
}

struct retry_case {
    const char *name;
    struct h1pool_attempt a;
    bool retry;
};

static const struct retry_case retry_cases[] = {
    {"stale pooled GET", {true, false, false, 0, false, "GET"}, true},
    {"stale pooled POST, no body: not idempotent", {true, false, false, 0, false, "POST"}, false},
    {"stale pooled PATCH, no body: not idempotent", {true, false, false, 0, false, "PATCH"}, false},
    {"stale pooled POST after body bytes", {true, false, false, 10, true, "POST"}, false},
    {"stale pooled PUT, body replayable", {true, false, false, 10, true, "PUT"}, true},
    {"stale pooled PUT, body not replayable", {true, false, false, 10, false, "PUT"}, false},
    {"stale pooled DELETE no body", {true, false, false, 0, false, "DELETE"}, true},
    {"PATCH with body is not idempotent", {true, false, false, 5, true, "PATCH"}, false},
    {"fresh connection never", {false, false, false, 0, false, "GET"}, false},
    {"after response bytes never", {true, true, false, 0, false, "GET"}, false},
    {"never twice", {true, false, true, 0, false, "GET"}, false},
    {"HEAD", {true, false, false, 0, false, "HEAD"}, true},
};

int main(void)
{
    test_lifo_and_bound();
    test_idle_timeout();
    test_slots_fifo();
    test_waiting_bound();
    for (size_t i = 0; i < sizeof(retry_cases) / sizeof(retry_cases[0]); i++)
        CHECK_MSG(h1pool_may_retry(&retry_cases[i].a) == retry_cases[i].retry, "%s",
                  retry_cases[i].name);
    CHECK(h1pool_method_idempotent("GET") && !h1pool_method_idempotent("POST"));
    CHECK(!h1pool_method_idempotent("get") && !h1pool_method_idempotent(NULL));
    TEST_DONE();
}
