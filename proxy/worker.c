/* worker: one event-loop thread. See worker.h. */
#include "worker.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "accept_backoff.h"
#include "conn.h"
#include "log.h"
#include "policy.h"
#include "h1up.h"
#include "upstream.h"
#include "util.h"
#include "world.h"

struct world *shared_world_acquire(struct server_shared *sh)
{
    pthread_mutex_lock(&sh->lock);
    struct world *w = world_ref(sh->world);
    pthread_mutex_unlock(&sh->lock);
    return w;
}

void shared_world_swap(struct server_shared *sh, struct world *w)
{
    pthread_mutex_lock(&sh->lock);
    struct world *old = sh->world;
    sh->world = w;
    pthread_mutex_unlock(&sh->lock);
    world_unref(old);
}

static void worker_accept_cb(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa,
                             int socklen, void *arg)
{
    struct worker_listener *wl = arg;
    if (wl->w->draining) {
        evutil_closesocket(fd);
        return;
    }
    conn_accept(&wl->w->owner, wl->ls, fd, sa, socklen);
}

static void worker_accept_error_cb(struct evconnlistener *evl, void *arg)
{
    struct worker_listener *wl = arg;
    /*
     * EMFILE/ENFILE: libevent would call accept again at once and spin at
     * 100% CPU while the connections that could free a descriptor starve;
     * pause this listener instead (logged once per episode process-wide).
     */
    if (wl->ab) {
        accept_backoff_on_error(wl->ab);
        return;
    }
    int err = EVUTIL_SOCKET_ERROR();
    log_warn("accept on %s failed: %s", wl->ls->text, evutil_socket_error_to_string(err));
}

static void worker_free_listeners(struct worker *w)
{
    for (size_t i = 0; i < w->nevl; i++) {
        accept_backoff_free(w->wl[i].ab);
        w->wl[i].ab = NULL;
        if (w->evl[i])
            evconnlistener_free(w->evl[i]);
        w->evl[i] = NULL;
    }
    w->nevl = 0;
}

static void worker_check_done(struct worker *w)
{
    if (w->draining && w->nconns == 0)
        event_base_loopexit(w->base, NULL);
}

static void worker_drain_cb(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    struct conn *c, *next;
    if (w->draining)
        return;
    w->draining = true;
    worker_free_listeners(w);
    for (c = w->conns; c; c = next) {
        next = c->next;
        conn_drain(c);
    }
    worker_check_done(w);
}

static void worker_conn_added(void *arg, struct conn *c);
static void worker_conn_removed(void *arg, struct conn *c);

static struct world *worker_world_acquire(void *arg)
{
    return shared_world_acquire(arg);
}

int worker_init(struct worker *w, struct server_shared *sh, unsigned index, struct event *done_ev,
                char **err)
{
    memset(w, 0, sizeof(*w));
    w->sh = sh;
    w->index = index;
    w->done_ev = done_ev;
    atomic_init(&w->finished, false);
    w->base = event_base_new();
    if (!w->base) {
        *err = xstrdup("cannot create an event loop");
        return -1;
    }
    w->up = upstream_new(w->base);
    w->policy_cache = policy_cache_new();
    if (!w->up) {
        *err = xstrdup("cannot set up libcurl for a worker");
        return -1;
    }
    w->dns = evdns_base_new(w->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
    if (!w->dns)
        log_warn("worker %u: no DNS resolver configuration; blind tunnels will fail", index);
    w->h1 = h1up_new(w->base, w->dns); /* NULL without a resolver: libcurl serves everything */
    w->svc = (struct proxy_services){
        .base = w->base,
        .up = w->up,
        .policy_cache = w->policy_cache,
        .h1 = w->h1,
        .dns = w->dns,
        .rl = sh->rl,
        .breaker = sh->breaker,
        .tokens = sh->tokens,
        .metrics = sh->metrics,
        .self = &sh->self,
        .world_acquire = worker_world_acquire,
        .world_arg = sh,
    };
    w->owner = (struct conn_owner){
        .base = w->base,
        .metrics = sh->metrics,
        .pipeline = &proxy_pipeline,
        .pipeline_arg = &w->svc,
        .draining = &w->draining,
        .destroying = &w->destroying,
        .arg = w,
        .added = worker_conn_added,
        .removed = worker_conn_removed,
    };
    w->ev_drain = event_new(w->base, -1, 0, worker_drain_cb, w);
    if (!w->ev_drain) {
        *err = xstrdup("cannot create a worker event");
        return -1;
    }
    for (size_t i = 0; i < sh->nlisteners && i < WORKER_MAX_LISTENERS; i++) {
        int fd = dup(sh->listeners[i].fd);
        if (fd < 0) {
            *err = xasprintf("cannot share the socket of %s: %s", sh->listeners[i].text,
                             strerror(errno));
            return -1;
        }
        evutil_make_socket_nonblocking(fd);
        w->wl[i].w = w;
        w->wl[i].ls = &sh->listeners[i];
        /* Backlog 0: the server already called listen(); every worker accepts on the same queue. */
        w->evl[i] = evconnlistener_new(w->base, worker_accept_cb, &w->wl[i],
                                       LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
        if (!w->evl[i]) {
            close(fd);
            *err = xasprintf("cannot accept on %s", sh->listeners[i].text);
            return -1;
        }
        evconnlistener_set_error_cb(w->evl[i], worker_accept_error_cb);
        w->wl[i].ab = accept_backoff_new(w->evl[i], sh->listeners[i].text, &sh->accept_paused);
        w->nevl = i + 1;
    }
    return 0;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    event_base_loop(w->base, EVLOOP_NO_EXIT_ON_EMPTY);
    atomic_store(&w->finished, true);
    if (w->done_ev)
        event_active(w->done_ev, 0, 0);
    return NULL;
}

int worker_start(struct worker *w)
{
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
        return -1;
    w->started = true;
    return 0;
}

void worker_drain(struct worker *w)
{
    if (w->ev_drain)
        event_active(w->ev_drain, 0, 0);
}

void worker_stop(struct worker *w)
{
    if (w->base)
        event_base_loopbreak(w->base);
}

void worker_destroy(struct worker *w)
{
    if (w->started) {
        pthread_join(w->thread, NULL);
        w->started = false;
    }
    w->destroying = true;
    while (w->conns)
        conn_free_now(w->conns);
    worker_free_listeners(w);
    h1up_free(w->h1);
    if (w->dns)
        evdns_base_free(w->dns, 0);
    upstream_free(w->up);
    policy_cache_free(w->policy_cache);
    if (w->ev_drain)
        event_free(w->ev_drain);
    if (w->base)
        event_base_free(w->base);
    memset(w, 0, sizeof(*w));
}

/* conn_owner.added: book-keeping of live connections. */
static void worker_conn_added(void *arg, struct conn *c)
{
    struct worker *w = arg;
    c->prev = NULL;
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->nconns++;
}

static void worker_conn_removed(void *arg, struct conn *c)
{
    struct worker *w = arg;
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->next = c->prev = NULL;
    w->nconns--;
    worker_check_done(w);
}
