/*
 * h1pool: the idle-connection bookkeeping of the lean HTTP/1.1 upstream
 * engine (h1up), and its retry rule. Pure: the items are opaque pointers,
 * the time is passed in, nothing is closed here (the caller closes what it
 * gets back), so both are table-tested without sockets.
 *
 * Layer 2. Bounded: at most H1POOL_MAX_IDLE idle items per pool; an item
 * idle for H1POOL_IDLE_TIMEOUT_MS or longer is never handed out again; at
 * most H1POOL_MAX_ACTIVE slots (connections in use or being set up) held at
 * once, further requests queue FIFO for a slot, at most H1POOL_MAX_WAITING
 * of them.
 */
#ifndef CREDPROXY_H1POOL_H
#define CREDPROXY_H1POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Idle connections kept per pool key (host, port, SNI, CA file, connect_to target). */
#define H1POOL_MAX_IDLE 64
/* An idle connection older than this is closed rather than reused (servers drop them). */
#define H1POOL_IDLE_TIMEOUT_MS 30000
/*
 * Connections per pool key in use or being set up (one worker). Equal to
 * H1POOL_MAX_IDLE so every connection can go back to the pool: an idle
 * connection is only taken by a slot holder, and a new one is only opened
 * when none is idle, so open connections (in use + idle) stay within this
 * too. Past it, requests wait for a slot in arrival order.
 */
#define H1POOL_MAX_ACTIVE 64
/* Requests waiting for a slot per pool key; one more is refused at once. */
#define H1POOL_MAX_WAITING 4096

/* Embedded in whatever waits for a slot (the engine's exchange); the pool only links it. */
struct h1pool_waiter {
    struct h1pool_waiter *prev, *next;
    bool queued;
};

struct h1pool {
    void *item[H1POOL_MAX_IDLE]; /* oldest first */
    int64_t since[H1POOL_MAX_IDLE];
    size_t n;
    unsigned active;                   /* slots held */
    struct h1pool_waiter *head, *tail; /* waiting for a slot, oldest first */
    size_t nwaiting;
};

enum h1pool_grant {
    H1POOL_GRANTED, /* the caller holds a slot: take an idle item or open a new one */
    H1POOL_QUEUED,  /* w waits; h1pool_release hands it a slot later */
    H1POOL_REFUSED, /* H1POOL_MAX_WAITING are already waiting */
};

/*
 * Ask for a slot for w. Strictly first come, first served: while anyone
 * waits, a newcomer queues behind them even if a slot looks free.
 */
enum h1pool_grant h1pool_acquire(struct h1pool *p, struct h1pool_waiter *w);

/*
 * Give a slot back. When someone waits, the slot passes to the oldest
 * waiter, which leaves the queue and is returned for the caller to wake;
 * otherwise NULL.
 */
struct h1pool_waiter *h1pool_release(struct h1pool *p);

/* Leave the queue (cancelled or timed out while waiting). True when w was queued. */
bool h1pool_unwait(struct h1pool *p, struct h1pool_waiter *w);

/*
 * Put item back as idle at time now. Returns the item the caller must
 * close because the pool was full (the oldest one), or NULL.
 */
void *h1pool_put(struct h1pool *p, void *item, int64_t now_ms);

/*
 * The most recently idled item still fresh at now (LIFO keeps the warmest
 * connection), or NULL. Items found expired are moved to expired (at most
 * cap of them; the caller closes them) and *nexpired says how many.
 */
void *h1pool_take(struct h1pool *p, int64_t now_ms, void **expired, size_t cap, size_t *nexpired);

/* Forget item (it closed while idle). True when it was in the pool. */
bool h1pool_remove(struct h1pool *p, void *item);

/*
 * Move every item idle for H1POOL_IDLE_TIMEOUT_MS at now into expired (at
 * most cap) for the caller to close. Returns how many.
 */
size_t h1pool_expire(struct h1pool *p, int64_t now_ms, void **expired, size_t cap);

/* Milliseconds until the oldest idle item expires (0 when already due), or -1 when empty. */
int64_t h1pool_next_expiry(const struct h1pool *p, int64_t now_ms);

/* Methods whose repetition has the same effect as one request (RFC 9110 §9.2.2). */
bool h1pool_method_idempotent(const char *method);

/* What is known about an exchange that failed before it completed. */
struct h1pool_attempt {
    bool reused_connection; /* it ran on a pooled connection, not a fresh one */
    bool response_started;  /* at least one response byte arrived */
    bool retried;           /* this was already the retry */
    uint64_t body_sent;     /* request body bytes written toward the upstream */
    bool body_replayable;   /* every body byte sent is still held for a replay */
    const char *method;
};

/*
 * The retry rule: a request that failed on a reused connection before any
 * response byte (the server closed it while idle) is retried once on a
 * fresh connection when its method is idempotent and the body sent so far
 * (if any) can be replayed. Never a non-idempotent method (RFC 9110 9.2.2),
 * never after response bytes, never twice, never on a fresh connection.
 */
bool h1pool_may_retry(const struct h1pool_attempt *a);

#endif
