/*
 * accept_backoff: keeps a listener from spinning when accept(2) fails.
 *
 * libevent's evconnlistener leaves its read event armed after an accept
 * error other than EAGAIN/EINTR/ECONNABORTED. With the descriptor table
 * full (EMFILE, ENFILE) or the kernel out of buffers (ENOBUFS, ENOMEM) the
 * pending connection stays in the backlog, the socket stays readable, and
 * the loop calls accept again at once: 100% CPU until a descriptor frees,
 * starving the connections that could free one. This module turns such an
 * error into a pause: the listener is disabled for ACCEPT_BACKOFF_MS, then
 * tried again; the clients wait in the kernel's backlog meanwhile.
 *
 * One warn line when an episode starts and one info line when accepts have
 * worked for a whole interval again; with a shared counter (every worker's
 * listeners on one counter) that is once per episode for the whole process,
 * not once per worker.
 *
 * Layer 3 (libevent). Everything runs on the listener's own loop; the shared
 * counter is the only cross-thread state and is atomic.
 */
#ifndef CREDPROXY_ACCEPT_BACKOFF_H
#define CREDPROXY_ACCEPT_BACKOFF_H

#include <stdatomic.h>

struct evconnlistener;
struct accept_backoff;

/* How long a failing listener stays disabled before it accepts again. */
#define ACCEPT_BACKOFF_MS 250

/*
 * Backoff state for evl. Borrows evl (free this before evl), name (copied:
 * "127.0.0.1:8080") and shared_paused (NULL: this listener logs its own
 * episodes; otherwise a counter of listeners now paused, owned by the caller
 * and outliving this). The owner calls accept_backoff_on_error from evl's
 * error callback (libevent passes that callback the accept callback's
 * argument, so the owner routes it). Returns NULL when no timer could be
 * made (the listener then keeps libevent's own behaviour).
 */
struct accept_backoff *accept_backoff_new(struct evconnlistener *evl, const char *name,
                                          atomic_uint *shared_paused);
/* From evl's error callback: disable evl for ACCEPT_BACKOFF_MS (errno still set). */
void accept_backoff_on_error(struct accept_backoff *ab);
/*
 * For a listener whose owner cannot keep state next to it (evhttp's, whose
 * error callback only gets the struct evhttp): the same pause without
 * episode tracking, logged at debug. The re-enable is a one-shot event on
 * evl's base: evl must live as long as that loop runs.
 */
void accept_backoff_pause(struct evconnlistener *evl);
/* NULL is a no-op. */
void accept_backoff_free(struct accept_backoff *ab);

#endif
