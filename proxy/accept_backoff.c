/* accept_backoff: see accept_backoff.h. */
#include "accept_backoff.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "log.h"
#include "util.h"

struct accept_backoff {
    struct evconnlistener *evl;
    struct event *timer;
    char *name;
    atomic_uint *shared; /* listeners paused process-wide, or NULL */
    bool paused;         /* disabled now; the timer re-enables */
    bool in_episode;     /* paused at least once since accepts last worked for an interval */
    int err;             /* errno of the accept failure that started the episode */
};

static void ab_arm(struct accept_backoff *ab)
{
    struct timeval tv = {.tv_sec = ACCEPT_BACKOFF_MS / 1000,
                         .tv_usec = (ACCEPT_BACKOFF_MS % 1000) * 1000};
    evtimer_add(ab->timer, &tv);
}

static void ab_episode_start(struct accept_backoff *ab, int err)
{
    ab->in_episode = true;
    ab->err = err;
    if (ab->shared && atomic_fetch_add(ab->shared, 1) > 0)
        return; /* another listener already reported this episode */
    log_warn("accept on %s failed: %s; not accepting for %d ms at a time until it succeeds "
             "(clients wait in the backlog)",
             ab->name, evutil_socket_error_to_string(err), ACCEPT_BACKOFF_MS);
}

static void ab_episode_end(struct accept_backoff *ab)
{
    ab->in_episode = false;
    if (ab->shared && atomic_fetch_sub(ab->shared, 1) > 1)
        return; /* others are still paused */
    log_info("accepting connections on %s again", ab->name);
}

void accept_backoff_on_error(struct accept_backoff *ab)
{
    int err = EVUTIL_SOCKET_ERROR();

    /*
     * Every error that reaches here would repeat at once (libevent already
     * retries EAGAIN, EINTR and ECONNABORTED itself), so each one pauses.
     */
    evconnlistener_disable(ab->evl);
    ab->paused = true;
    if (!ab->in_episode)
        ab_episode_start(ab, err);
    ab_arm(ab);
}

static void ab_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct accept_backoff *ab = arg;
    (void)fd;
    (void)what;
    if (ab->paused) {
        ab->paused = false;
        evconnlistener_enable(ab->evl);
        ab_arm(ab); /* a whole interval without an error ends the episode */
        return;
    }
    if (ab->in_episode)
        ab_episode_end(ab);
}

struct accept_backoff *accept_backoff_new(struct evconnlistener *evl, const char *name,
                                          atomic_uint *shared_paused)
{
    struct accept_backoff *ab = xcalloc(1, sizeof(*ab));
    ab->evl = evl;
    ab->shared = shared_paused;
    ab->name = xstrdup(name ? name : "a listener");
    ab->timer = evtimer_new(evconnlistener_get_base(evl), ab_timer_cb, ab);
    if (!ab->timer) {
        free(ab->name);
        free(ab);
        return NULL;
    }
    return ab;
}

void accept_backoff_free(struct accept_backoff *ab)
{
    if (!ab)
        return;
    /* Leave the shared count as if the episode ended, without a log line (shutting down). */
    if (ab->in_episode && ab->shared)
        atomic_fetch_sub(ab->shared, 1);
    event_free(ab->timer);
    free(ab->name);
    free(ab);
}

static void ab_once_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    evconnlistener_enable(arg);
}

void accept_backoff_pause(struct evconnlistener *evl)
{
    int err = EVUTIL_SOCKET_ERROR();
    struct timeval tv = {.tv_sec = ACCEPT_BACKOFF_MS / 1000,
                         .tv_usec = (ACCEPT_BACKOFF_MS % 1000) * 1000};
    log_debug("accept failed: %s; pausing that listener for %d ms",
              evutil_socket_error_to_string(err), ACCEPT_BACKOFF_MS);
    evconnlistener_disable(evl);
    if (event_base_once(evconnlistener_get_base(evl), -1, EV_TIMEOUT, ab_once_cb, evl, &tv) < 0)
        evconnlistener_enable(evl); /* no timer: better libevent's spin than a dead listener */
}
