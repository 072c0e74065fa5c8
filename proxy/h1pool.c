/* h1pool: see h1pool.h. */
#include "h1pool.h"

#include <string.h>

static void h1pool_drop_at(struct h1pool *p, size_t i)
{
    memmove(&p->item[i], &p->item[i + 1], (p->n - i - 1) * sizeof(p->item[0]));
    memmove(&p->since[i], &p->since[i + 1], (p->n - i - 1) * sizeof(p->since[0]));
    p->n--;
}

void *h1pool_put(struct h1pool *p, void *item, int64_t now_ms)
{
    void *evicted = NULL;

    if (p->n == H1POOL_MAX_IDLE) {
        evicted = p->item[0];
        h1pool_drop_at(p, 0);
    }
    p->item[p->n] = item;
    p->since[p->n] = now_ms;
    p->n++;
    return evicted;
}

static bool h1pool_expired(int64_t since, int64_t now_ms)
{
    return now_ms - since >= H1POOL_IDLE_TIMEOUT_MS;
}

size_t h1pool_expire(struct h1pool *p, int64_t now_ms, void **expired, size_t cap)
{
    size_t k = 0;

    /* Oldest first: expired items form a prefix. */
    while (p->n > 0 && k < cap && h1pool_expired(p->since[0], now_ms)) {
        expired[k++] = p->item[0];
        h1pool_drop_at(p, 0);
    }
    return k;
}

void *h1pool_take(struct h1pool *p, int64_t now_ms, void **expired, size_t cap, size_t *nexpired)
{
    void *item;

    *nexpired = h1pool_expire(p, now_ms, expired, cap);
    if (p->n == 0 || h1pool_expired(p->since[0], now_ms))
        return NULL; /* the expired list was full: hand out nothing old */
    item = p->item[p->n - 1];
    p->n--;
    return item;
}

bool h1pool_remove(struct h1pool *p, void *item)
{
    for (size_t i = 0; i < p->n; i++) {
        if (p->item[i] == item) {
            h1pool_drop_at(p, i);
            return true;
        }
    }
    return false;
}

int64_t h1pool_next_expiry(const struct h1pool *p, int64_t now_ms)
{
    int64_t left;

    if (p->n == 0)
        return -1;
    left = p->since[0] + H1POOL_IDLE_TIMEOUT_MS - now_ms;
    return left > 0 ? left : 0;
}

enum h1pool_grant h1pool_acquire(struct h1pool *p, struct h1pool_waiter *w)
{
    if (p->nwaiting == 0 && p->active < H1POOL_MAX_ACTIVE) {
        p->active++;
        return H1POOL_GRANTED;
    }
    if (p->nwaiting >= H1POOL_MAX_WAITING)
        return H1POOL_REFUSED;
    w->next = NULL;
    w->prev = p->tail;
    if (p->tail)
        p->tail->next = w;
    else
        p->head = w;
    p->tail = w;
    w->queued = true;
    p->nwaiting++;
    return H1POOL_QUEUED;
}

bool h1pool_unwait(struct h1pool *p, struct h1pool_waiter *w)
{
    if (!w->queued)
        return false;
    if (w->prev)
        w->prev->next = w->next;
    else
        p->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        p->tail = w->prev;
    w->prev = w->next = NULL;
    w->queued = false;
    p->nwaiting--;
    return true;
}

struct h1pool_waiter *h1pool_release(struct h1pool *p)
{
    struct h1pool_waiter *w = p->head;

    if (w) {
        h1pool_unwait(p, w); /* the slot passes on: active stays */
        return w;
    }
    if (p->active > 0)
        p->active--;
    return NULL;
}

bool h1pool_method_idempotent(const char *method)
{
    static const char *const idem[] = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE"};

    for (size_t i = 0; i < sizeof(idem) / sizeof(idem[0]); i++) {
        if (method && strcmp(method, idem[i]) == 0)
            return true;
    }
    return false;
}

bool h1pool_may_retry(const struct h1pool_attempt *a)
{
    if (!a->reused_connection || a->response_started || a->retried)
        return false;
    /*
     * RFC 9110 9.2.2: a proxy must not retry a non-idempotent request on its
     * own. A POST whose connection died before any answer may still have
     * been processed (the fault tests show the server saw it), so only
     * idempotent methods are retried, with their body replayable.
     */
    if (!h1pool_method_idempotent(a->method))
        return false;
    return a->body_sent == 0 || a->body_replayable;
}
