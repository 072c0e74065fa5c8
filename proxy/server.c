/*
 * server: the daemon. The main thread runs the control loop (signals,
 * reload, admin, shutdown timer); cfg->workers threads each run a worker
 * loop accepting on every listening socket (bound once here, so bind errors
 * are reported before anything serves and port 0 means one port for all).
 */
#include "server.h"

#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <netinet/in.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <openssl/rand.h>

#include "admin.h"
#include "log.h"
#include "metrics.h"
#include "breaker.h"
#include "cred.h"
#include "credstate.h"
#include "ratelimit.h"
#include "tokens.h"
#include "util.h"
#include "worker.h"
#include "sockets.h"
#include "world.h"

enum { SERVER_EXIT_OK = 0, SERVER_EXIT_STARTUP = 2 };
#define SERVER_LISTEN_BACKLOG 511
#define SERVER_UNIX_MODE 0660 /* owner and group may connect; others may not */

struct server {
    struct server_shared sh;
    struct event_base *control;
    struct worker *workers;
    unsigned nworkers;
    struct admin *admin;
    const char *config_path;
    struct event *ev_hup, *ev_term, *ev_int, *ev_done, *ev_shutdown;
    char *bound_signature; /* listen_signature() of the config the sockets were bound for */
    bool listening;
    bool draining;
};

/* ------------------------------------------------------------- binding */

static int bind_one(const struct config_listen *l, struct listener_spec *spec, char **err)
{
    char actual[300];
    spec->fd = -1;
    if (l->kind == CONFIG_LISTEN_UNIX) {
        spec->fd = sockets_listen_unix(l->path, SERVER_UNIX_MODE, SERVER_LISTEN_BACKLOG, err);
        if (spec->fd < 0)
            return -1;
        spec->is_unix = true;
        spec->unix_path = xstrdup(l->path);
        spec->text = xasprintf("unix:%s", l->path);
        return 0;
    }
    spec->fd =
        sockets_listen_tcp(l->host, l->port, SERVER_LISTEN_BACKLOG, actual, sizeof(actual), err);
    if (spec->fd < 0)
        return -1;
    spec->text = xstrdup(actual);
    return 0;
}

static void close_listeners(struct server *s)
{
    for (size_t i = 0; i < s->sh.nlisteners; i++) {
        struct listener_spec *l = &s->sh.listeners[i];
        if (l->fd >= 0)
            close(l->fd);
        l->fd = -1;
        if (l->unix_path)
            unlink(l->unix_path);
        free(l->unix_path);
        free(l->text);
        free(l->site_host);
    }
    free(s->sh.listeners);
    s->sh.listeners = NULL;
    s->sh.nlisteners = 0;
}

/*
 * What the route stage needs to recognise the proxy itself: the TCP port of
 * every listener (bound ones read back, so port 0 resolves) plus the admin
 * port, and a random per-process Via marker. Reloads keep both: listeners
 * only change on restart, and the marker must stay the same while old
 * requests are in flight.
 */
static void self_init(struct route_self *self, const struct listener_spec *ls, size_t n,
                      const struct config *cfg)
{
    unsigned char rnd[8];

    memset(self, 0, sizeof(*self));
    for (size_t i = 0; i < n && self->nports < ROUTE_MAX_PORTS; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        if (ls[i].is_unix || ls[i].fd < 0 ||
            getsockname(ls[i].fd, (struct sockaddr *)&ss, &len) < 0)
            continue;
        if (ss.ss_family == AF_INET)
            self->ports[self->nports++] = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            self->ports[self->nports++] = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    if (cfg->admin && cfg->admin->kind == CONFIG_LISTEN_TCP && cfg->admin->port > 0 &&
        self->nports < ROUTE_MAX_PORTS)
        self->ports[self->nports++] = cfg->admin->port;
    if (RAND_bytes(rnd, sizeof(rnd)) == 1) {
        for (size_t i = 0; i < sizeof(rnd); i++)
            snprintf(self->token + 2 * i, 3, "%02x", rnd[i]);
    }
}

static int bind_all(struct server *s, const struct config *cfg)
{
    char *err = NULL;
    size_t n = cfg->nlisten;
    for (size_t i = 0; i < cfg->nsites; i++)
        n += cfg->sites[i].listen != NULL;
    if (n > WORKER_MAX_LISTENERS) {
        log_error("too many listen addresses (%zu, at most %d)", n, WORKER_MAX_LISTENERS);
        return -1;
    }
    s->sh.listeners = xcalloc(n ? n : 1, sizeof(*s->sh.listeners));
    for (size_t i = 0; i < cfg->nlisten; i++) {
        struct listener_spec *l = &s->sh.listeners[s->sh.nlisteners];
        if (bind_one(&cfg->listen[i], l, &err) < 0)
            goto fail;
        l->kind = LISTENER_PROXY;
        s->sh.nlisteners++;
    }
    for (size_t i = 0; i < cfg->nsites; i++) {
        if (!cfg->sites[i].listen)
            continue;
        struct listener_spec *l = &s->sh.listeners[s->sh.nlisteners];
        if (bind_one(cfg->sites[i].listen, l, &err) < 0)
            goto fail;
        l->kind = LISTENER_SITE;
        l->site_host = xstrdup(cfg->sites[i].host);
        l->site_port = cfg->sites[i].port;
        s->sh.nlisteners++;
    }
    return 0;
fail:
    log_error("%s", err ? err : "cannot listen");
    free(err);
    return -1;
}

/*
 * Every address a config asks to be bound (main listeners, site listeners and
 * the site each serves, admin), as one string: a reload compares it with the
 * one taken when the sockets were bound.
 */
static char *listen_signature(const struct config *cfg)
{
    char *sig = xstrdup("");
    for (size_t i = 0; i < cfg->nlisten; i++) {
        char *n = xasprintf("%slisten %s\n", sig, cfg->listen[i].text);
        free(sig);
        sig = n;
    }
    for (size_t i = 0; i < cfg->nsites; i++) {
        if (!cfg->sites[i].listen)
            continue;
        char *n = xasprintf("%ssite %s:%d %s\n", sig, cfg->sites[i].host, cfg->sites[i].port,
                            cfg->sites[i].listen->text);
        free(sig);
        sig = n;
    }
    if (cfg->admin) {
        char *n = xasprintf("%sadmin %s\n", sig, cfg->admin->text);
        free(sig);
        sig = n;
    }
    return sig;
}

static void log_how_to_connect(const struct server *s, const struct config *cfg)
{
    for (size_t i = 0; i < s->sh.nlisteners; i++) {
        const struct listener_spec *l = &s->sh.listeners[i];
        if (l->kind == LISTENER_SITE) {
            log_info("listening on %s: gateway for %s (agent base URL: http://%s)", l->text,
                     l->site_host, l->is_unix ? "localhost" : l->text);
        } else if (l->is_unix) {
            log_info("listening on %s: forward proxy and gateway (e.g. curl --unix-socket %s "
                     "http://SITE.localhost/rest/api/3/myself)",
                     l->text, l->unix_path);
        } else {
            /* The gateway form that needs nothing: with one site, the proxy's own address. */
            const char *port = strrchr(l->text, ':') + 1;
            char *gw =
                cfg->nsites == 1
                    ? xasprintf("http://%s (or http://%s.localhost:%s)", l->text,
                                cfg->sites[0].domain ? cfg->sites[0].domain : cfg->sites[0].host,
                                port)
                    : xasprintf("http://SITE.localhost:%s", port);
            log_info("listening on %s: forward proxy and gateway (agents: HTTP_PROXY=http://%s "
                     "HTTPS_PROXY=http://%s, or base URL %s; `credproxy env` prints the full "
                     "setup)",
                     l->text, l->text, l->text, gw);
            free(gw);
        }
    }
    log_info("%u worker thread%s, %zu site%s, unknown hosts: %s", s->nworkers,
             s->nworkers == 1 ? "" : "s", cfg->nsites, cfg->nsites == 1 ? "" : "s",
             cfg->unknown_hosts == CONFIG_UNKNOWN_TUNNEL ? "tunnel" : "deny");
}

/*
 * libevent (evdns above all: "Nameserver 10.0.0.53:53 has failed") writes
 * to stderr by itself, which would put unformatted lines among JSON logs.
 */
static void server_libevent_log(int severity, const char *msg)
{
    switch (severity) {
    case EVENT_LOG_DEBUG:
        log_debug("libevent: %s", msg);
        break;
    case EVENT_LOG_MSG:
        log_info("libevent: %s", msg);
        break;
    case EVENT_LOG_WARN:
        log_warn("libevent: %s", msg);
        break;
    default:
        log_error("libevent: %s", msg);
        break;
    }
}

/* ------------------------------------------------------------- signals */

/*
 * The breaker learns the new credentials; one whose secret changed is
 * closed (the operator rotated it), the others keep their state.
 */
static void server_reload_breaker(struct server *s, const struct world *nw)
{
    const struct world *old = s->sh.world;
    breaker_configure(s->sh.breaker, nw->cfg);
    for (size_t i = 0; i < nw->cfg->ncredentials; i++) {
        const char *name = nw->cfg->credentials[i].name;
        int oi = config_credential_index(old->cfg, name);
        if (oi >= 0 && cred_same_secret(old->creds[oi], nw->creds[i]))
            continue;
        if (breaker_reset(s->sh.breaker, name, util_now_ms())) {
            struct breaker_info info;
            struct breaker_change chg = {BREAKER_OPEN, BREAKER_CLOSED};
            memset(&info, 0, sizeof(info));
            snprintf(info.credential, sizeof(info.credential), "%s", name);
            credstate_log_change(&info, &chg, "its secret changed on reload");
        }
    }
}

static void server_reload(struct server *s)
{
    struct config *ncfg = NULL;
    char *err = NULL, *warning = NULL;
    int rc = config_load(s->config_path, &ncfg, &err);
    if (rc != 0) {
        log_error("reload rejected, the previous configuration keeps serving: %s",
                  rc == 1 ? config_missing_message() : (err ? err : "configuration error"));
        free(err);
        metrics_config_reload(s->sh.metrics, false);
        return;
    }
    for (size_t i = 0; i < ncfg->nwarnings; i++)
        log_warn("%s", ncfg->warnings[i].text);
    struct world *nw = world_new(ncfg, &err, &warning);
    if (!nw) {
        log_error("reload rejected, the previous configuration keeps serving: interception CA: %s",
                  err ? err : "cannot be loaded");
        free(err);
        free(warning);
        metrics_config_reload(s->sh.metrics, false);
        return;
    }
    if (warning)
        log_warn("interception CA: %s", warning);
    free(warning);
    /* Listeners are bound once: changed addresses need a restart. */
    char *sig = listen_signature(nw->cfg);
    if (strcmp(sig, s->bound_signature) != 0)
        log_warn("reload: changed listen, site listen or admin addresses take effect after a "
                 "restart; the addresses bound at start keep serving");
    free(sig);
    /* The limiter learns the new credentials before any request can use the new world. */
    ratelimit_configure(s->sh.rl, nw->cfg);
    server_reload_breaker(s, nw);
    tokens_configure(s->sh.tokens, nw);
    log_configure(nw->cfg->log.format, nw->cfg->log.level);
    log_audit_enable(nw->cfg->log.audit);
    shared_world_swap(&s->sh, nw);
    metrics_config_reload(s->sh.metrics, true);
    log_info("configuration reloaded from %s", s->sh.world->cfg->file);
}

static void on_hup(evutil_socket_t sig, short what, void *arg)
{
    struct server *s = arg;
    if (s->draining)
        return;
    server_reload(s);
}

static void on_shutdown_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct server *s = arg;
    log_warn("shutdown_timeout passed with requests still in flight; closing them");
    for (unsigned i = 0; i < s->nworkers; i++)
        worker_stop(&s->workers[i]);
}

static void on_term(evutil_socket_t sig, short what, void *arg)
{
    struct server *s = arg;
    if (s->draining) {
        log_warn("second signal: stopping now");
        on_shutdown_timeout(-1, 0, s);
        return;
    }
    s->draining = true;
    s->listening = false;
    atomic_store(&s->sh.draining, true);
    int64_t ms = s->sh.world->cfg->shutdown_timeout_ms;
    log_info("%s: no longer accepting; letting in-flight requests finish (up to %lld ms)",
             (int)sig == SIGINT ? "SIGINT" : "SIGTERM", (long long)ms);
    /* Close our copy of every listening socket; each worker closes its own in worker_drain. */
    for (size_t i = 0; i < s->sh.nlisteners; i++) {
        if (s->sh.listeners[i].fd >= 0)
            close(s->sh.listeners[i].fd);
        s->sh.listeners[i].fd = -1;
    }
    for (unsigned i = 0; i < s->nworkers; i++)
        worker_drain(&s->workers[i]);
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(s->ev_shutdown, &tv);
}

static void on_worker_done(evutil_socket_t fd, short what, void *arg)
{
    struct server *s = arg;
    for (unsigned i = 0; i < s->nworkers; i++) {
        if (!atomic_load(&s->workers[i].finished))
            return;
    }
    event_base_loopexit(s->control, NULL);
}

/* ------------------------------------------------------------- admin */

static const struct config *admin_current_config(void *arg)
{
    struct server *s = arg;
    return s->sh.world->cfg;
}

static bool admin_listening(void *arg)
{
    struct server *s = arg;
    return s->listening && !s->draining;
}

static int admin_tokens_reason(void *arg, char *buf, size_t cap)
{
    struct server *s = arg;
    return tokens_ready_reason(s->sh.tokens, buf, cap);
}

static bool admin_tokens_unavailable(void *arg, const char *credential)
{
    struct server *s = arg;
    return tokens_unavailable(s->sh.tokens, credential);
}

/* ------------------------------------------------------------- run */

int server_run(struct config *cfg, const char *config_path)
{
    struct server srv, *s = &srv;
    char *err = NULL, *warning = NULL;
    int rc = SERVER_EXIT_STARTUP;

    memset(s, 0, sizeof(*s));
    s->config_path = config_path;
    pthread_mutex_init(&s->sh.lock, NULL);
    atomic_init(&s->sh.draining, false);
    atomic_init(&s->sh.accept_paused, 0);
    evthread_use_pthreads();
    signal(SIGPIPE, SIG_IGN);
    event_set_log_callback(server_libevent_log);

    log_configure(cfg->log.format, cfg->log.level);
    log_audit_enable(cfg->log.audit);
    for (size_t i = 0; i < cfg->nwarnings; i++)
        log_warn("%s", cfg->warnings[i].text);

    s->control = event_base_new();
    if (!s->control) {
        log_error("cannot create the control event loop");
        config_free(cfg);
        goto out;
    }
    s->sh.metrics = metrics_new();
    s->sh.rl = ratelimit_new(cfg, s->control, &err);
    if (!s->sh.rl) {
        log_error("rate_limit: %s", err ? err : "cannot set up the rate limiter");
        free(err);
        config_free(cfg);
        goto out;
    }
    s->sh.breaker = breaker_new();
    breaker_configure(s->sh.breaker, cfg);
    s->sh.world = world_new(cfg, &err, &warning); /* consumes cfg */
    cfg = NULL;
    if (!s->sh.world) {
        log_error("interception CA: %s", err ? err : "cannot be loaded");
        free(err);
        free(warning);
        goto out;
    }
    const struct config *wcfg = s->sh.world->cfg;
    if (warning)
        log_warn("interception CA: %s", warning);
    free(warning);
    if (!s->sh.world->mitm)
        log_info("HTTPS interception is off (no CA at %s): CONNECT to a mapped site answers 403; "
                 "run `credproxy ca init` to turn it on",
                 wcfg->interception.ca_cert ? wcfg->interception.ca_cert : CONFIG_DEFAULT_CA_CERT);

    s->sh.tokens = tokens_new(s->control, s->sh.breaker);
    if (!s->sh.tokens) {
        log_error("cannot set up OAuth token minting");
        goto out;
    }
    tokens_configure(s->sh.tokens, s->sh.world);

    /*
     * Signal handlers before the listeners: once a port accepts, a supervisor (or a
     * test) may send SIGHUP at once, and its default action would end the process.
     * The handlers run from the control loop, after everything below is set up.
     */
    s->ev_done = event_new(s->control, -1, 0, on_worker_done, s);
    s->ev_shutdown = evtimer_new(s->control, on_shutdown_timeout, s);
    s->ev_hup = evsignal_new(s->control, SIGHUP, on_hup, s);
    s->ev_term = evsignal_new(s->control, SIGTERM, on_term, s);
    s->ev_int = evsignal_new(s->control, SIGINT, on_term, s);
    if (!s->ev_done || !s->ev_shutdown || !s->ev_hup || !s->ev_term || !s->ev_int ||
        event_add(s->ev_hup, NULL) < 0 || event_add(s->ev_term, NULL) < 0 ||
        event_add(s->ev_int, NULL) < 0) {
        log_error("cannot set up signal handling");
        goto out;
    }

    if (bind_all(s, wcfg) < 0)
        goto out;
    self_init(&s->sh.self, s->sh.listeners, s->sh.nlisteners, wcfg);
    s->bound_signature = listen_signature(wcfg);

    if (wcfg->admin) {
        struct admin_source src = {
            .arg = s,
            .current_config = admin_current_config,
            .listening = admin_listening,
            .metrics = s->sh.metrics,
            .ratelimit = s->sh.rl,
            .breaker = s->sh.breaker,
            .unavailable_reason = admin_tokens_reason,
            .unavailable = admin_tokens_unavailable,
        };
        s->admin = admin_start(s->control, wcfg->admin, &src, &err);
        if (!s->admin) {
            log_error("%s",
                      err ? err : "admin: cannot start the admin listener"); /* err says admin: */
            free(err);
            goto out;
        }
        log_info("admin on %s: /healthz /readyz /metrics", wcfg->admin->text);
    }

    s->nworkers = wcfg->workers;
    if (s->nworkers < 1)
        s->nworkers = 1;
    if (s->nworkers > CONFIG_MAX_WORKERS)
        s->nworkers = CONFIG_MAX_WORKERS;
    s->workers = xcalloc(s->nworkers, sizeof(*s->workers));
    for (unsigned i = 0; i < s->nworkers; i++) {
        if (worker_init(&s->workers[i], &s->sh, i, s->ev_done, &err) < 0) {
            log_error("worker %u: %s", i, err ? err : "cannot start");
            free(err);
            goto out;
        }
    }
    for (unsigned i = 0; i < s->nworkers; i++) {
        if (worker_start(&s->workers[i]) < 0) {
            log_error("cannot start worker thread %u", i);
            for (unsigned j = 0; j < i; j++)
                worker_stop(&s->workers[j]);
            goto out;
        }
    }
    s->listening = true;
    log_how_to_connect(s, wcfg);

    event_base_dispatch(s->control);
    rc = SERVER_EXIT_OK;
    log_info("stopped");

out:
    if (s->workers) {
        for (unsigned i = 0; i < s->nworkers; i++)
            worker_stop(&s->workers[i]);
        for (unsigned i = 0; i < s->nworkers; i++)
            worker_destroy(&s->workers[i]);
        free(s->workers);
    }
    admin_free(s->admin);
    close_listeners(s);
    free(s->bound_signature);
    if (s->ev_hup)
        event_free(s->ev_hup);
    if (s->ev_term)
        event_free(s->ev_term);
    if (s->ev_int)
        event_free(s->ev_int);
    if (s->ev_done)
        event_free(s->ev_done);
    if (s->ev_shutdown)
        event_free(s->ev_shutdown);
    tokens_free(s->sh.tokens); /* before the world and the loop it runs on */
    world_unref(s->sh.world);
    ratelimit_free(s->sh.rl);
    breaker_free(s->sh.breaker);
    metrics_free(s->sh.metrics);
    if (s->control)
        event_base_free(s->control);
    pthread_mutex_destroy(&s->sh.lock);
    return rc;
}
