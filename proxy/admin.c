/*
 * admin: /healthz, /readyz and /metrics over evhttp on the control loop,
 * and `credproxy healthcheck`, which asks /readyz with a blocking libcurl
 * GET.
 *
 * Every handler runs on the control loop, the same thread that swaps the
 * config on reload, so the config borrowed from src->current_config() stays
 * valid for the whole handler. Never serves a secret: readiness reasons name
 * credentials, never their tokens.
 */
#include "admin.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "accept_backoff.h"
#include "bodybuf.h"
#include "credstate.h"
#include "log.h"
#include "metrics.h"
#include "ratelimit.h"
#include "sockets.h"
#include "util.h"

/* Limits of the admin listener: requests are tiny GETs. */
#define ADMIN_MAX_HEADERS_SIZE 8192
#define ADMIN_MAX_BODY_SIZE 0
#define ADMIN_TIMEOUT_SECS 10
#define ADMIN_UNIX_BACKLOG 64
#define ADMIN_UNIX_MODE 0660 /* like the proxy's own unix listeners */
#define ADMIN_MAX_REASON 512
/* healthcheck: the whole exchange is bounded, and so is the body we keep. */
#define ADMIN_HEALTHCHECK_TIMEOUT_MS 2000
#define ADMIN_HEALTHCHECK_MAX_BODY 4096

struct admin {
    struct evhttp *http;
    struct admin_source src;
    char *unix_path; /* unlinked on free; NULL for TCP */
};

static void admin_reply(struct evhttp_request *req, int code, const char *reason, const char *ctype,
                        struct evbuffer *body)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", ctype);
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_send_reply(req, code, reason, body);
}

static void admin_reply_text(struct evhttp_request *req, int code, const char *reason,
                             const char *text)
{
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        evhttp_send_error(req, HTTP_INTERNAL, NULL);
        return;
    }
    evbuffer_add_printf(b, "%s\n", text);
    admin_reply(req, code, reason, "text/plain; charset=utf-8", b);
    evbuffer_free(b);
}

/* Issue 10: a credential the breaker holds back, or one with no usable token. */
static int admin_creds_ready_reason(struct admin *a, char *buf, size_t cap)
{
    if (a->src.breaker && credstate_ready_reason(a->src.breaker, util_now_ms(), buf, cap) != 0)
        return -1;
    if (a->src.unavailable_reason && a->src.unavailable_reason(a->src.arg, buf, cap) != 0)
        return -1;
    return 0;
}

static void admin_handle_readyz(struct admin *a, struct evhttp_request *req)
{
    char reason[ADMIN_MAX_REASON];
    const struct config *cfg = a->src.current_config ? a->src.current_config(a->src.arg) : NULL;

    if (!cfg) {
        admin_reply_text(req, 503, "Service Unavailable", "no configuration loaded");
        return;
    }
    if (a->src.listening && !a->src.listening(a->src.arg)) {
        admin_reply_text(req, 503, "Service Unavailable", "not listening");
        return;
    }
    if (admin_ready_reason(cfg, util_wall_time(), reason, sizeof(reason)) != 0) {
        admin_reply_text(req, 503, "Service Unavailable", reason);
        return;
    }
    if (admin_creds_ready_reason(a, reason, sizeof(reason)) != 0) {
        admin_reply_text(req, 503, "Service Unavailable", reason);
        return;
    }
    admin_reply_text(req, HTTP_OK, "OK", "ready");
}

static void admin_handle_metrics(struct admin *a, struct evhttp_request *req)
{
    struct ratelimit_stats st;
    struct evbuffer *b = evbuffer_new();
    const struct config *cfg = a->src.current_config ? a->src.current_config(a->src.arg) : NULL;

    if (!b) {
        evhttp_send_error(req, HTTP_INTERNAL, NULL);
        return;
    }
    if (a->src.ratelimit)
        ratelimit_get_stats(a->src.ratelimit, &st);
    metrics_render(a->src.metrics, cfg, a->src.ratelimit ? &st : NULL, b);
    if (a->src.breaker)
        credstate_render_metrics(a->src.breaker, util_now_ms(), a->src.unavailable, a->src.arg, b);
    admin_reply(req, HTTP_OK, "OK", "text/plain; version=0.0.4; charset=utf-8", b);
    evbuffer_free(b);
}

static void admin_handle(struct evhttp_request *req, void *arg)
{
    struct admin *a = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;

    if (!path || !*path)
        path = "/";
    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET");
        admin_reply_text(req, 405, "Method Not Allowed", "method not allowed: use GET");
        return;
    }
    if (strcmp(path, "/healthz") == 0)
        admin_reply_text(req, HTTP_OK, "OK", "ok");
    else if (strcmp(path, "/readyz") == 0)
        admin_handle_readyz(a, req);
    else if (strcmp(path, "/metrics") == 0)
        admin_handle_metrics(a, req);
    else
        admin_reply_text(req, HTTP_NOTFOUND, "Not Found",
                         "not found: the admin listener serves /healthz, /readyz and /metrics");
}

/* evhttp's listener would spin on EMFILE like any evconnlistener: pause it instead. */
static void admin_accept_error_cb(struct evconnlistener *evl, void *arg)
{
    (void)arg;
    accept_backoff_pause(evl);
}

static void admin_guard_accept(struct evhttp_bound_socket *bs)
{
    struct evconnlistener *evl = evhttp_bound_socket_get_listener(bs);
    if (evl)
        evconnlistener_set_error_cb(evl, admin_accept_error_cb);
}

struct admin *admin_start(struct event_base *base, const struct config_listen *addr,
                          const struct admin_source *src, char **err)
{
    struct admin *a = xcalloc(1, sizeof(*a));

    *err = NULL;
    a->src = *src;
    a->http = evhttp_new(base);
    if (!a->http) {
        *err = xstrdup("admin: evhttp_new failed");
        goto fail;
    }
    evhttp_set_max_headers_size(a->http, ADMIN_MAX_HEADERS_SIZE);
    evhttp_set_max_body_size(a->http, ADMIN_MAX_BODY_SIZE);
    evhttp_set_timeout(a->http, ADMIN_TIMEOUT_SECS);
    /* Accept every method so that the handler, not evhttp, answers 405 with Allow. */
    evhttp_set_allowed_methods(
        a->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
                     EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(a->http, admin_handle, a);

    if (addr->kind == CONFIG_LISTEN_UNIX) {
        char *why = NULL;
        evutil_socket_t fd =
            sockets_listen_unix(addr->path, ADMIN_UNIX_MODE, ADMIN_UNIX_BACKLOG, &why);
        if (fd < 0) {
            *err = xasprintf("admin: %s", why);
            free(why);
            goto fail;
        }
        struct evhttp_bound_socket *ubs = evhttp_accept_socket_with_handle(a->http, fd);
        if (!ubs) {
            evutil_closesocket(fd);
            *err = xasprintf("admin: cannot serve unix:%s", addr->path);
            goto fail;
        }
        admin_guard_accept(ubs);
        a->unix_path = xstrdup(addr->path);
    } else {
        struct evhttp_bound_socket *bs =
            evhttp_bind_socket_with_handle(a->http, addr->host, (ev_uint16_t)addr->port);
        if (!bs) {
            *err = xasprintf("admin: cannot listen on %s: %s", addr->text ? addr->text : addr->host,
                             strerror(errno));
            goto fail;
        }
        admin_guard_accept(bs);
    }
    return a;
fail:
    admin_free(a);
    return NULL;
}

void admin_free(struct admin *a)
{
    if (!a)
        return;
    if (a->http)
        evhttp_free(a->http);
    if (a->unix_path) {
        unlink(a->unix_path);
        free(a->unix_path);
    }
    free(a);
}

static void admin_format_date(int64_t t, char *buf, size_t cap)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || strftime(buf, cap, "%Y-%m-%d", &tm) == 0)
        snprintf(buf, cap, "@%lld", (long long)t);
}

int admin_ready_reason(const struct config *cfg, int64_t now, char *buf, size_t cap)
{
    char date[32];
    if (!cfg) {
        snprintf(buf, cap, "no configuration loaded");
        return -1;
    }
    if (cfg->ncredentials == 0) {
        snprintf(buf, cap, "no credentials configured");
        return -1;
    }
    for (size_t i = 0; i < cfg->ncredentials; i++) {
        const struct config_credential *c = &cfg->credentials[i];
        const char *name = c->name ? c->name : "?";
        /* healthcheck loads without secrets: the running proxy holds them, not this process. */
        if (!cfg->no_secrets && (!c->secret || !*c->secret)) {
            snprintf(buf, cap, "credential '%s' has no secret loaded", name);
            return -1;
        }
        if (c->expires && now >= c->expires) {
            admin_format_date(c->expires, date, sizeof(date));
            snprintf(buf, cap, "credential '%s' expired on %s", name, date);
            return -1;
        }
    }
    snprintf(buf, cap, "ready");
    return 0;
}

/* The URL that reaches the admin listener from this host (wildcards become loopback). */
/* An http:// URL for PATH on listener l; a wildcard bind is reached on loopback. */
static char *listen_url(const struct config_listen *l, const char *path)
{
    const char *host = l->host ? l->host : "127.0.0.1";
    if (l->kind == CONFIG_LISTEN_UNIX)
        return xasprintf("http://localhost%s", path);
    if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "") == 0)
        host = "127.0.0.1";
    else if (strcmp(host, "::") == 0)
        host = "::1";
    if (strchr(host, ':'))
        return xasprintf("http://[%s]:%d%s", host, l->port, path);
    return xasprintf("http://%s:%d%s", host, l->port, path);
}

/* A local curl handle: never a proxy from the environment, bounded in time. */
static void healthcheck_setup(CURL *h, const struct config_listen *l, const char *url, char *errbuf)
{
    curl_easy_setopt(h, CURLOPT_URL, url);
    if (l->kind == CONFIG_LISTEN_UNIX)
        curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, l->path);
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)ADMIN_HEALTHCHECK_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)ADMIN_HEALTHCHECK_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
}

/*
 * Without an admin listener (the ATLASSIAN_* default, say) readiness is
 * judged from the configuration itself plus a connect to the first proxy
 * listener, so the container HEALTHCHECK works in every mode.
 */
static int healthcheck_without_admin(const struct config *cfg)
{
    char reason[256], errbuf[CURL_ERROR_SIZE];
    const struct config_listen *l;
    CURL *h;
    CURLcode rc;
    char *url;

    if (admin_ready_reason(cfg, util_wall_time(), reason, sizeof(reason)) != 0) {
        fprintf(stderr, "credproxy: healthcheck: not ready: %s\n", reason);
        return 1;
    }
    if (cfg->nlisten == 0) {
        fprintf(stderr, "credproxy: healthcheck: no listener configured\n");
        return 1;
    }
    l = &cfg->listen[0];
    h = curl_easy_init();
    if (!h) {
        fprintf(stderr, "credproxy: healthcheck: libcurl failed to initialise\n");
        return 1;
    }
    url = listen_url(l, "/");
    errbuf[0] = '\0';
    healthcheck_setup(h, l, url, errbuf);
    curl_easy_setopt(h, CURLOPT_CONNECT_ONLY, 1L);
    rc = curl_easy_perform(h);
    if (rc != CURLE_OK)
        fprintf(stderr, "credproxy: healthcheck: proxy not accepting on %s: %s\n", l->text,
                errbuf[0] ? errbuf : curl_easy_strerror(rc));
    else
        printf("ready\n"); /* as /readyz says it, so both paths print the same */
    curl_easy_cleanup(h);
    free(url);
    return rc == CURLE_OK ? 0 : 1;
}

int admin_healthcheck(const struct config *cfg)
{
    char body[ADMIN_HEALTHCHECK_MAX_BODY + 1];
    struct bodybuf sink; /* fills body; the rest is dropped, not an error */
    char errbuf[CURL_ERROR_SIZE];
    long status = 0;
    CURLcode rc;
    CURL *h;
    char *url;
    int ret = 1;

    if (!cfg)
        return 1;
    if (!cfg->admin)
        return healthcheck_without_admin(cfg);
    h = curl_easy_init();
    if (!h) {
        fprintf(stderr, "credproxy: healthcheck: libcurl failed to initialise\n");
        return 1;
    }
    url = listen_url(cfg->admin, "/readyz");
    bodybuf_init(&sink, body, ADMIN_HEALTHCHECK_MAX_BODY);
    errbuf[0] = '\0';
    healthcheck_setup(h, cfg->admin, url, errbuf);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, bodybuf_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "credproxy-healthcheck/" CREDPROXY_VERSION);

    rc = curl_easy_perform(h);
    if (rc != CURLE_OK) {
        fprintf(stderr, "credproxy: healthcheck: cannot reach %s: %s\n", url,
                errbuf[0] ? errbuf : curl_easy_strerror(rc));
        goto out;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    /* One line of the body is enough: it is the reason; strip the newline. */
    body[strcspn(body, "\r\n")] = '\0';
    if (status == 200) {
        printf("%s\n", body[0] ? body : "ready");
        ret = 0;
    } else {
        fprintf(stderr, "credproxy: healthcheck: not ready: %s answered %ld: %s\n", url, status,
                body[0] ? body : "(no reason given)");
    }
out:
    curl_easy_cleanup(h);
    free(url);
    return ret;
}
