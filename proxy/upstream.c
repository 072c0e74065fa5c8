/*
 * upstream: libcurl's multi_socket API driven by one libevent loop (the
 * hiperfifo pattern). See upstream.h for the contract.
 *
 * Three rules keep this safe:
 *  - libcurl is never re-entered from one of its own callbacks: cancel,
 *    resume and (when needed) add_handle are recorded on the exchange and
 *    carried out by a per-exchange deferred event on the next loop turn;
 *  - an exchange is freed only from the loop (completion processing, the
 *    deferred event or upstream_free), never while a curl callback for it is
 *    on the stack;
 *  - after cancel (or once on_done ran) no caller callback is invoked again.
 */
#define _GNU_SOURCE /* memmem */
#include "upstream.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "http1.h"
#include "util.h"

/*
 * A socket libcurl asked us to watch. One persistent event per direction, so
 * a change of libcurl's wish (IN -> INOUT -> IN) costs one epoll_ctl, and a
 * repeated wish costs none.
 */
struct upstream_sock {
    struct upstream *up;
    curl_socket_t fd;
    struct event *rev, *wev;
    int want; /* CURL_POLL_IN / CURL_POLL_OUT bits now registered */
    struct upstream_sock *prev, *next;
};

/*
 * CURLOPT_CONNECT_TO list shared by the exchanges started under the same
 * connect_to texts. libcurl does not copy slist options, so each exchange
 * holds a reference until its easy handle is cleaned up.
 */
struct upstream_connect_map {
    unsigned refs;
    size_t n;
    struct curl_slist *list;
};

struct upstream {
    struct event_base *base;
    CURLM *multi;
    struct event *timer;
    unsigned new_connections;
    struct upstream_exchange *exchanges;     /* every live exchange, for upstream_free */
    struct upstream_sock *socks;             /* every watched socket, for upstream_free */
    struct upstream_connect_map *map;        /* the last built connect_to list (cache) */
    CURL *idle_easy[UPSTREAM_MAX_IDLE_EASY]; /* reset handles ready for reuse */
    size_t nidle_easy;
};

/* One collected response header: offsets into exchange.head. */
struct upstream_hdr_off {
    size_t name_off, name_len;
    size_t value_off, value_len;
};

struct upstream_exchange {
    struct upstream *up;
    struct upstream_exchange *prev, *next;
    CURL *easy;
    struct upstream_callbacks cb;
    void *arg;
    struct curl_slist *headers; /* what libcurl sends; zeroed on free (holds Authorization) */
    struct upstream_connect_map *map;
    char *host; /* from the URL, for messages */
    long port;
    bool via_proxy;
    int64_t connect_timeout_ms, timeout_ms;
    int64_t start_ms, end_ms;
    struct event *defer;

    /* Response head being collected (reset on every status line). */
    char *head;
    size_t head_len, head_cap;
    size_t head_total; /* every head byte seen, interim heads included */
    struct upstream_hdr_off hdr[UPSTREAM_MAX_RESPONSE_HEADERS];
    size_t nhdr;
    int head_status; /* from the status line being collected */
    bool in_head, head_complete, head_delivered;

    bool in_multi, pending_add;
    bool cancelled, finished;
    bool pause_recv, pause_send;
    bool want_resume_recv, want_resume_send;

    bool once_only;    /* not idempotent: never sent a second time (see upstream_prereq_cb) */
    unsigned attempts; /* times libcurl was about to send the request */

    bool clean_end;  /* libcurl reported CURLE_OK: the easy handle may be reused */
    bool big_upload; /* the handle got UPSTREAM_UPLOAD_BUFFER: not kept for reuse */
    bool failed;     /* our own verdict overrides libcurl's code */
    enum upstream_result fail_result;
    const char *fail_detail; /* static text */

    char errbuf[CURL_ERROR_SIZE];
};

static void upstream_check_done(struct upstream *up);

/* ---- socket and timer glue (hiperfifo) ---- */

static void upstream_sock_event_cb(evutil_socket_t fd, short what, void *arg)
{
    struct upstream *up = arg;
    int running = 0;
    int action =
        ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);

    curl_multi_socket_action(up->multi, fd, action, &running);
    upstream_check_done(up);
}

static void upstream_sock_free(struct upstream *up, struct upstream_sock *us)
{
    if (us->prev)
        us->prev->next = us->next;
    else
        up->socks = us->next;
    if (us->next)
        us->next->prev = us->prev;
    if (us->rev)
        event_free(us->rev);
    if (us->wev)
        event_free(us->wev);
    free(us);
}

/* Register or drop one direction when libcurl's wish for it changed. */
static int upstream_sock_want(struct event *ev, bool was, bool now)
{
    if (was == now)
        return 0;
    return now ? event_add(ev, NULL) : event_del(ev);
}

static int upstream_socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct upstream *up = userp;
    struct upstream_sock *us = socketp;
    int want;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (us)
            upstream_sock_free(up, us);
        return 0;
    }
    want = what & (CURL_POLL_IN | CURL_POLL_OUT);
    if (!us) {
        us = xcalloc(1, sizeof(*us));
        us->up = up;
        us->fd = s;
        us->rev = event_new(up->base, s, EV_READ | EV_PERSIST, upstream_sock_event_cb, up);
        us->wev = event_new(up->base, s, EV_WRITE | EV_PERSIST, upstream_sock_event_cb, up);
        us->next = up->socks;
        if (up->socks)
            up->socks->prev = us;
        up->socks = us;
        if (!us->rev || !us->wev) {
            upstream_sock_free(up, us);
            return -1;
        }
        curl_multi_assign(up->multi, s, us);
    }
    if (upstream_sock_want(us->rev, us->want & CURL_POLL_IN, want & CURL_POLL_IN) != 0 ||
        upstream_sock_want(us->wev, us->want & CURL_POLL_OUT, want & CURL_POLL_OUT) != 0)
        return -1;
    us->want = want;
    return 0;
}

static void upstream_timer_event_cb(evutil_socket_t fd, short what, void *arg)
{
    struct upstream *up = arg;
    int running = 0;

    (void)fd;
    (void)what;
    curl_multi_socket_action(up->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    upstream_check_done(up);
}

static int upstream_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct upstream *up = userp;
    struct timeval tv;

    (void)multi;
    if (timeout_ms < 0) {
        evtimer_del(up->timer);
        return 0;
    }
    /* 0 means "now", but socket_action must not be called from here: next loop turn. */
    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;
    evtimer_add(up->timer, &tv);
    return 0;
}

/* ---- connect_to cache ---- */

static void upstream_map_unref(struct upstream_connect_map *m)
{
    if (!m || --m->refs > 0)
        return;
    curl_slist_free_all(m->list);
    free(m);
}

static bool upstream_map_matches(const struct upstream_connect_map *m, const struct config *cfg)
{
    const struct curl_slist *l = m->list;
    size_t i;

    if (m->n != cfg->upstream.nconnect_to)
        return false;
    for (i = 0; i < m->n; i++, l = l->next) {
        if (!l || strcmp(l->data, cfg->upstream.connect_to[i].text) != 0)
            return false;
    }
    return true;
}

/*
 * The CONNECT_TO list for cfg with one reference for the caller (NULL when
 * there are no mappings). Cached by content rather than by the cfg pointer,
 * so a reloaded config that happens to reuse a freed address cannot pick up
 * stale mappings.
 */
static struct upstream_connect_map *upstream_map_get(struct upstream *up, const struct config *cfg)
{
    struct upstream_connect_map *m;
    size_t i;

    if (!cfg || cfg->upstream.nconnect_to == 0)
        return NULL;
    if (up->map && upstream_map_matches(up->map, cfg)) {
        up->map->refs++;
        return up->map;
    }
    m = xcalloc(1, sizeof(*m));
    for (i = 0; i < cfg->upstream.nconnect_to; i++) {
        struct curl_slist *l = curl_slist_append(m->list, cfg->upstream.connect_to[i].text);
        if (!l) {
            curl_slist_free_all(m->list);
            free(m);
            return NULL;
        }
        m->list = l;
    }
    m->n = cfg->upstream.nconnect_to;
    m->refs = 2; /* the cache and the caller */
    upstream_map_unref(up->map);
    up->map = m;
    return m;
}

/* ---- exchange lifetime ---- */

static void upstream_slist_free_secret(struct curl_slist *l)
{
    struct curl_slist *p;

    for (p = l; p; p = p->next)
        util_secure_zero(p->data, strlen(p->data));
    curl_slist_free_all(l);
}

/* A reset easy handle from the idle list, or a new one (NULL on OOM). */
static CURL *upstream_easy_acquire(struct upstream *up)
{
    if (up->nidle_easy > 0)
        return up->idle_easy[--up->nidle_easy];
    return curl_easy_init();
}

/*
 * Consumes e (already out of the multi). Only a handle whose transfer ran to
 * a clean end is kept: curl_easy_reset puts every option back to its default
 * (no header list, private pointer, callbacks, CUSTOMREQUEST, UPLOAD, proxy
 * or CONNECT_TO survive), while the connection pool stays in the multi.
 */
static void upstream_easy_release(struct upstream *up, CURL *e, bool reusable)
{
    if (reusable && up->nidle_easy < UPSTREAM_MAX_IDLE_EASY) {
        curl_easy_reset(e);
        up->idle_easy[up->nidle_easy++] = e;
        return;
    }
    curl_easy_cleanup(e);
}

static void upstream_exchange_destroy(struct upstream_exchange *ex)
{
    struct upstream *up = ex->up;
    long n = 0;

    if (ex->easy) {
        if (ex->in_multi)
            curl_multi_remove_handle(up->multi, ex->easy);
        if (curl_easy_getinfo(ex->easy, CURLINFO_NUM_CONNECTS, &n) == CURLE_OK && n > 0)
            up->new_connections += (unsigned)n;
        /* a cancelled, failed or still paused transfer may leave state behind: never reused */
        upstream_easy_release(up, ex->easy,
                              ex->finished && ex->clean_end && !ex->big_upload && !ex->cancelled &&
                                  !ex->failed && !ex->pause_recv && !ex->pause_send);
    }
    upstream_slist_free_secret(ex->headers);
    upstream_map_unref(ex->map);
    if (ex->defer)
        event_free(ex->defer);
    if (ex->prev)
        ex->prev->next = ex->next;
    else if (up->exchanges == ex)
        up->exchanges = ex->next;
    if (ex->next)
        ex->next->prev = ex->prev;
    free(ex->host);
    free(ex->head);
    free(ex);
}

static void upstream_fail(struct upstream_exchange *ex, enum upstream_result r, const char *detail)
{
    if (ex->failed)
        return;
    ex->failed = true;
    ex->fail_result = r;
    ex->fail_detail = detail;
}

/* ---- response head collection ---- */

static int upstream_head_append(struct upstream_exchange *ex, const char *p, size_t n, size_t *off)
{
    size_t at = ex->head_len;
    if (http1_arena_append(&ex->head, &ex->head_len, &ex->head_cap, 1024,
                           UPSTREAM_MAX_RESPONSE_HEAD_BYTES, p, n) < 0)
        return -1;
    *off = at;
    return 0;
}

static bool upstream_is_ws(char c)
{
    return c == ' ' || c == '\t';
}

/* One header line (CRLF already cut). Returns 0, or -1 after upstream_fail. */
static int upstream_head_line(struct upstream_exchange *ex, const char *line, size_t len)
{
    struct upstream_hdr_off *h;
    const char *colon, *v, *end;
    size_t off;

    if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        const char *sp = memchr(line, ' ', len);
        ex->head_len = 0;
        ex->nhdr = 0;
        ex->in_head = true;
        ex->head_complete = false;
        ex->head_status = 0;
        if (sp && (size_t)(line + len - sp) >= 4)
            ex->head_status = (sp[1] - '0') * 100 + (sp[2] - '0') * 10 + (sp[3] - '0');
        return 0;
    }
    if (!ex->in_head)
        return 0;
    if (len == 0) {
        /* End of a head. 1xx (100 Continue, 103 Early Hints) are interim: drop them. */
        if (ex->head_status >= 100 && ex->head_status < 200 && ex->head_status != 101) {
            ex->in_head = false;
            ex->head_len = 0;
            ex->nhdr = 0;
        } else {
            ex->head_complete = true;
        }
        return 0;
    }
    if (upstream_is_ws(line[0])) {
        /* obs-fold: join onto the previous value with one space. */
        size_t a = 0, b = len;
        if (ex->nhdr == 0)
            goto malformed;
        while (a < b && upstream_is_ws(line[a]))
            a++;
        while (b > a && upstream_is_ws(line[b - 1]))
            b--;
        h = &ex->hdr[ex->nhdr - 1];
        /* the previous value is the last thing in head, so the join stays contiguous */
        if (upstream_head_append(ex, " ", 1, &off) != 0 ||
            upstream_head_append(ex, line + a, b - a, &off) != 0)
            goto too_big;
        h->value_len = ex->head_len - h->value_off;
        return 0;
    }
    colon = memchr(line, ':', len);
    if (!colon || colon == line)
        goto malformed;
    for (v = line; v < colon; v++) {
        if (!http1_is_tchar((unsigned char)*v))
            goto malformed;
    }
    if (ex->nhdr >= UPSTREAM_MAX_RESPONSE_HEADERS) {
        upstream_fail(ex, UPSTREAM_ERR_PROTOCOL, "upstream response has too many header fields");
        return -1;
    }
    h = &ex->hdr[ex->nhdr];
    if (upstream_head_append(ex, line, (size_t)(colon - line), &h->name_off) != 0)
        goto too_big;
    h->name_len = (size_t)(colon - line);
    v = colon + 1;
    end = line + len;
    while (v < end && upstream_is_ws(*v))
        v++;
    while (end > v && upstream_is_ws(end[-1]))
        end--;
    if (upstream_head_append(ex, v, (size_t)(end - v), &h->value_off) != 0)
        goto too_big;
    h->value_len = (size_t)(end - v);
    ex->nhdr++;
    return 0;

malformed:
    upstream_fail(ex, UPSTREAM_ERR_PROTOCOL, "upstream sent a malformed response header");
    return -1;
too_big:
    upstream_fail(ex, UPSTREAM_ERR_PROTOCOL, "upstream response head is too large");
    return -1;
}

static size_t upstream_header_cb(char *data, size_t size, size_t nitems, void *userp)
{
    struct upstream_exchange *ex = userp;
    size_t len = size * nitems, n = len;

    if (ex->cancelled || ex->failed)
        return 0;
    if (ex->head_delivered)
        return len; /* trailers: not passed on */
    ex->head_total += len;
    if (ex->head_total > UPSTREAM_MAX_RESPONSE_HEAD_BYTES) {
        upstream_fail(ex, UPSTREAM_ERR_PROTOCOL, "upstream response head is too large");
        return 0;
    }
    while (n > 0 && (data[n - 1] == '\n' || data[n - 1] == '\r'))
        n--;
    if (upstream_head_line(ex, data, n) != 0)
        return 0;
    return len;
}

/* Calls on_head once. Returns 0 to go on, -1 when the exchange must stop. */
static int upstream_deliver_head(struct upstream_exchange *ex)
{
    struct upstream_header hs[UPSTREAM_MAX_RESPONSE_HEADERS];
    long status = 0;
    size_t i;
    int rc;

    ex->head_delivered = true;
    if (!ex->head_complete) {
        upstream_fail(ex, UPSTREAM_ERR_PROTOCOL, "upstream sent no complete response head");
        return -1;
    }
    curl_easy_getinfo(ex->easy, CURLINFO_RESPONSE_CODE, &status);
    if (status <= 0)
        status = ex->head_status;
    for (i = 0; i < ex->nhdr; i++) {
        hs[i].name = ex->head + ex->hdr[i].name_off;
        hs[i].name_len = ex->hdr[i].name_len;
        hs[i].value = ex->head + ex->hdr[i].value_off;
        hs[i].value_len = ex->hdr[i].value_len;
    }
    if (!ex->cb.on_head)
        return 0;
    rc = ex->cb.on_head(ex->arg, (int)status, hs, ex->nhdr);
    if (ex->cancelled)
        return -1;
    if (rc != 0) {
        upstream_fail(ex, UPSTREAM_ERR_ABORTED, "the exchange was aborted by the proxy");
        return -1;
    }
    return 0;
}

/* ---- body callbacks ---- */

static size_t upstream_write_cb(char *data, size_t size, size_t nmemb, void *userp)
{
    struct upstream_exchange *ex = userp;
    size_t len = size * nmemb;
    int rc;

    if (ex->cancelled || ex->failed)
        return CURL_WRITEFUNC_ERROR;
    if (!ex->head_delivered && upstream_deliver_head(ex) != 0)
        return CURL_WRITEFUNC_ERROR;
    if (!ex->cb.on_body || len == 0)
        return len;
    rc = ex->cb.on_body(ex->arg, data, len);
    if (ex->cancelled)
        return CURL_WRITEFUNC_ERROR;
    if (rc == UPSTREAM_PAUSE) {
        ex->pause_recv = true;
        return CURL_WRITEFUNC_PAUSE;
    }
    if (rc != 0) {
        upstream_fail(ex, UPSTREAM_ERR_ABORTED, "the exchange was aborted by the proxy");
        return CURL_WRITEFUNC_ERROR;
    }
    return len;
}

static size_t upstream_read_cb(char *buf, size_t size, size_t nitems, void *userp)
{
    struct upstream_exchange *ex = userp;
    size_t cap = size * nitems;
    ssize_t n;

    if (ex->cancelled || ex->failed)
        return CURL_READFUNC_ABORT;
    if (!ex->cb.read_body)
        return 0;
    n = ex->cb.read_body(ex->arg, buf, cap);
    if (ex->cancelled)
        return CURL_READFUNC_ABORT;
    if (n == UPSTREAM_WOULD_BLOCK) {
        ex->pause_send = true;
        return CURL_READFUNC_PAUSE;
    }
    if (n < 0 || (size_t)n > cap) {
        upstream_fail(ex, UPSTREAM_ERR_ABORTED, "reading the request body failed");
        return CURL_READFUNC_ABORT;
    }
    return (size_t)n;
}

/*
 * libcurl resends a request by itself when a reused connection dies before
 * any response byte ("Connection died, retrying a fresh connect"), and
 * without rewinding anything when the body is empty. The upstream may well
 * have acted on the first copy (the connection died after it was read), and
 * RFC 9110 9.2.2: a proxy MUST NOT automatically retry non-idempotent
 * requests. This runs before every send; a second one of those fails the
 * exchange instead (502 to the client, who decides).
 */
static int upstream_prereq_cb(void *userp, char *conn_primary_ip, char *conn_local_ip,
                              int conn_primary_port, int conn_local_port)
{
    struct upstream_exchange *ex = userp;

    (void)conn_primary_ip;
    (void)conn_local_ip;
    (void)conn_primary_port;
    (void)conn_local_port;
    if (++ex->attempts > 1 && ex->once_only) {
        upstream_fail(ex, UPSTREAM_ERR_PROTOCOL,
                      "the upstream closed the connection before answering; the request is not "
                      "idempotent, so it was not sent again");
        return CURL_PREREQFUNC_ABORT;
    }
    return CURL_PREREQFUNC_OK;
}

/* GET, HEAD, OPTIONS, TRACE, PUT and DELETE may be repeated (RFC 9110 9.2.2). */
static bool upstream_method_idempotent(const char *m)
{
    static const char *const idem[] = {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"};
    for (size_t i = 0; i < UTIL_ARRAY_LEN(idem); i++) {
        if (strcmp(m, idem[i]) == 0)
            return true;
    }
    return false;
}

/* ---- completion ---- */

static bool upstream_is_tls_error(CURLcode rc)
{
    switch (rc) {
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_USE_SSL_FAILED:
        return true;
    default:
        return false;
    }
}

/*
 * libcurl's error text may be quoted only when no request header value
 * appears in it (it never should; this makes sure a credential cannot).
 */
static bool upstream_errbuf_safe(const struct upstream_exchange *ex)
{
    const struct curl_slist *l;

    if (!ex->errbuf[0])
        return false;
    for (l = ex->headers; l; l = l->next) {
        const char *v = strchr(l->data, ':');
        size_t n;
        if (!v)
            continue;
        v++;
        while (upstream_is_ws(*v))
            v++;
        n = strlen(v);
        if (n >= 4 && memmem(ex->errbuf, strlen(ex->errbuf), v, n))
            return false;
    }
    return true;
}

static const char *upstream_errbuf_or(const struct upstream_exchange *ex, CURLcode rc)
{
    return upstream_errbuf_safe(ex) ? ex->errbuf : curl_easy_strerror(rc);
}

/* Map a finished transfer to a result; *detail is a new string. */
static enum upstream_result upstream_map_result(struct upstream_exchange *ex, CURLcode rc,
                                                char **detail)
{
    long oserr = 0;
    double t_connect = 0;

    if (ex->failed) {
        *detail = xstrdup(ex->fail_detail);
        return ex->fail_result;
    }
    switch (rc) {
    case CURLE_OK:
        *detail = xstrdup("ok");
        return UPSTREAM_OK;
    case CURLE_COULDNT_RESOLVE_HOST:
        *detail = xasprintf("could not resolve host %s", ex->host);
        return UPSTREAM_ERR_DNS;
    case CURLE_COULDNT_RESOLVE_PROXY:
        *detail = xstrdup("could not resolve the egress proxy host");
        return UPSTREAM_ERR_DNS;
    case CURLE_COULDNT_CONNECT:
        curl_easy_getinfo(ex->easy, CURLINFO_OS_ERRNO, &oserr);
        *detail = xasprintf("could not connect to %s:%ld%s: %s", ex->host, ex->port,
                            ex->via_proxy ? " through the egress proxy" : "",
                            oserr == ECONNREFUSED ? "connection refused"
                            : oserr               ? strerror((int)oserr)
                                                  : "connection failed");
        return UPSTREAM_ERR_CONNECT;
    case CURLE_OPERATION_TIMEDOUT:
        curl_easy_getinfo(ex->easy, CURLINFO_APPCONNECT_TIME, &t_connect);
        if (t_connect <= 0)
            *detail = xasprintf("connecting to %s:%ld timed out", ex->host, ex->port);
        else
            *detail = xasprintf("%s:%ld did not answer within %lld ms", ex->host, ex->port,
                                (long long)ex->timeout_ms);
        return UPSTREAM_ERR_TIMEOUT;
    case CURLE_UNSUPPORTED_PROTOCOL:
        /*
         * libcurl also uses this code after sending, for an answer that is
         * not HTTP at all ("Received HTTP/0.9 when not allowed"): only
         * before the request went out (upstream_prereq_cb counts that, on a
         * new or a reused connection) is it about the scheme.
         */
        if (ex->attempts > 0)
            break;
        *detail = xasprintf("scheme not allowed toward %s", ex->host);
        return UPSTREAM_ERR_PROTOCOL;
    default:
        break;
    }
    if (upstream_is_tls_error(rc)) {
        *detail =
            xasprintf("TLS handshake with %s failed: %s", ex->host, upstream_errbuf_or(ex, rc));
        return UPSTREAM_ERR_TLS;
    }
    *detail = xasprintf("exchange with %s failed: %s", ex->host, upstream_errbuf_or(ex, rc));
    return UPSTREAM_ERR_PROTOCOL;
}

static void upstream_finish(struct upstream_exchange *ex, CURLcode rc)
{
    enum upstream_result r;
    char *detail = NULL;

    ex->end_ms = util_now_ms();
    if (rc == CURLE_OK && !ex->failed && !ex->head_delivered) {
        upstream_deliver_head(ex);
        if (ex->cancelled) {
            upstream_exchange_destroy(ex);
            return;
        }
    }
    r = upstream_map_result(ex, rc, &detail);
    ex->finished = true;
    ex->clean_end = rc == CURLE_OK;
    if (ex->cb.on_done)
        ex->cb.on_done(ex->arg, r, detail);
    free(detail);
    upstream_exchange_destroy(ex);
}

static void upstream_check_done(struct upstream *up)
{
    CURLMsg *msg;
    int left = 0;

    while ((msg = curl_multi_info_read(up->multi, &left)) != NULL) {
        struct upstream_exchange *ex;
        CURL *easy = msg->easy_handle;
        CURLcode rc = msg->data.result;
        char *priv = NULL;

        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
        ex = (struct upstream_exchange *)(void *)priv;
        if (!ex)
            continue;
        /* msg is invalid after remove_handle: everything needed was copied above */
        curl_multi_remove_handle(up->multi, easy);
        ex->in_multi = false;
        if (ex->cancelled)
            upstream_exchange_destroy(ex);
        else
            upstream_finish(ex, rc);
    }
}

static void upstream_deferred_cb(evutil_socket_t fd, short what, void *arg)
{
    struct upstream_exchange *ex = arg;
    struct upstream *up = ex->up;
    int mask;

    (void)fd;
    (void)what;
    if (ex->cancelled) {
        upstream_exchange_destroy(ex);
        return;
    }
    if (ex->pending_add) {
        ex->pending_add = false;
        if (curl_multi_add_handle(up->multi, ex->easy) != CURLM_OK) {
            upstream_fail(ex, UPSTREAM_ERR_PROTOCOL, "could not start the upstream exchange");
            upstream_finish(ex, CURLE_FAILED_INIT);
            return;
        }
        ex->in_multi = true;
    }
    if (!ex->want_resume_recv && !ex->want_resume_send)
        return;
    if (ex->want_resume_recv)
        ex->pause_recv = false;
    if (ex->want_resume_send)
        ex->pause_send = false;
    ex->want_resume_recv = ex->want_resume_send = false;
    mask = (ex->pause_recv ? CURLPAUSE_RECV : 0) | (ex->pause_send ? CURLPAUSE_SEND : 0);
    /*
     * Unpausing may replay buffered response bytes through upstream_write_cb
     * right here (which may pause again or cancel: both only set flags).
     * libcurl then schedules a 1 ms timeout that keeps the transfer going.
     */
    curl_easy_pause(ex->easy, mask);
    if (ex->cancelled)
        upstream_exchange_destroy(ex);
    else
        upstream_check_done(up);
}

/* ---- public API ---- */

struct upstream *upstream_new(struct event_base *base)
{
    struct upstream *up = xcalloc(1, sizeof(*up));

    up->base = base;
    up->multi = curl_multi_init();
    up->timer = evtimer_new(base, upstream_timer_event_cb, up);
    if (!up->multi || !up->timer)
        goto fail;
    curl_multi_setopt(up->multi, CURLMOPT_SOCKETFUNCTION, upstream_socket_cb);
    curl_multi_setopt(up->multi, CURLMOPT_SOCKETDATA, up);
    curl_multi_setopt(up->multi, CURLMOPT_TIMERFUNCTION, upstream_timer_cb);
    curl_multi_setopt(up->multi, CURLMOPT_TIMERDATA, up);
    curl_multi_setopt(up->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    curl_multi_setopt(up->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                      (long)UPSTREAM_MAX_HOST_CONNECTIONS);
    curl_multi_setopt(up->multi, CURLMOPT_MAXCONNECTS, (long)UPSTREAM_MAX_CACHED_CONNECTIONS);
    return up;
fail:
    if (up->timer)
        event_free(up->timer);
    if (up->multi)
        curl_multi_cleanup(up->multi);
    free(up);
    return NULL;
}

void upstream_free(struct upstream *up)
{
    if (!up)
        return;
    while (up->exchanges) {
        up->exchanges->finished = true;
        upstream_exchange_destroy(up->exchanges);
    }
    /* closing pooled connections calls upstream_socket_cb(REMOVE) for their sockets */
    curl_multi_cleanup(up->multi);
    while (up->nidle_easy > 0)
        curl_easy_cleanup(up->idle_easy[--up->nidle_easy]);
    while (up->socks)
        upstream_sock_free(up, up->socks);
    upstream_map_unref(up->map);
    event_free(up->timer);
    free(up);
}

static bool upstream_method_ok(const char *m)
{
    size_t i;

    if (!m || !m[0] || strlen(m) > 32)
        return false;
    for (i = 0; m[i]; i++) {
        if (!http1_is_tchar((unsigned char)m[i]))
            return false;
    }
    return true;
}

/* The block's lines as a list (NULL when empty or on OOM); the block stays the caller's. */
static struct curl_slist *upstream_block_to_slist(const struct upstream_hblock *b)
{
    struct curl_slist *l = NULL, *t;
    size_t i = 0;

    while (i < b->len) {
        const char *eol = memchr(b->buf + i, '\r', b->len - i);
        size_t n = eol ? (size_t)(eol - (b->buf + i)) : b->len - i;
        char *line = xstrndup(b->buf + i, n);
        t = curl_slist_append(l, line);
        util_secure_zero(line, n);
        free(line);
        if (!t) {
            upstream_slist_free_secret(l);
            return NULL;
        }
        l = t;
        i += n + 2;
    }
    return l;
}

/*
 * The list libcurl sends: the caller's lines minus those upstream owns,
 * "Name;" for an empty value (libcurl's spelling: "Name:" would delete the
 * header), plus "Expect:" and, unless the caller sent one, "Accept:" to
 * suppress libcurl's defaults. Consumes in (zeroed). NULL on OOM.
 */
static struct curl_slist *upstream_build_headers(struct curl_slist *in)
{
    struct curl_slist *out = NULL, *l, *t;
    bool accept = false;

    for (l = in; l; l = l->next) {
        const char *line = l->data, *colon = strchr(line, ':'), *v;
        size_t nlen;
        char *tmp = NULL;

        if (!colon || colon == line || strpbrk(line, "\r\n"))
            continue;
        nlen = (size_t)(colon - line);
        if (upstream_header_owned(line, nlen))
            continue;
        if (nlen == 6 && util_memcaseeq(line, "accept", 6))
            accept = true;
        v = colon + 1;
        while (upstream_is_ws(*v))
            v++;
        if (!*v)
            tmp = xasprintf("%.*s;", (int)nlen, line);
        t = curl_slist_append(out, tmp ? tmp : line);
        free(tmp);
        if (!t)
            goto oom;
        out = t;
    }
    t = curl_slist_append(out, "Expect:");
    if (!t)
        goto oom;
    out = t;
    if (!accept) {
        t = curl_slist_append(out, "Accept:");
        if (!t)
            goto oom;
        out = t;
    }
    upstream_slist_free_secret(in);
    return out;
oom:
    upstream_slist_free_secret(in);
    upstream_slist_free_secret(out);
    return NULL;
}

static bool upstream_url_parts(const char *url, char **host, long *port)
{
    CURLU *u = curl_url();
    char *h = NULL, *p = NULL;
    bool ok = false;

    if (!u)
        return false;
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
        goto out;
    if (curl_url_get(u, CURLUPART_HOST, &h, 0) != CURLUE_OK)
        goto out;
    if (curl_url_get(u, CURLUPART_PORT, &p, CURLU_DEFAULT_PORT) != CURLUE_OK)
        goto out;
    *host = xstrdup(h);
    *port = strtol(p, NULL, 10);
    ok = true;
out:
    curl_free(h);
    curl_free(p);
    curl_url_cleanup(u);
    return ok;
}

static bool upstream_method_is(const char *m, const char *want)
{
    return strcmp(m, want) == 0;
}

/*
 * Borrows up, req (except req->headers, consumed even on failure), cb
 * (copied) and arg (kept for the callbacks). The caller owns the returned
 * exchange until on_done returns or upstream_cancel.
 */
struct upstream_exchange *upstream_start(struct upstream *up, const struct upstream_request *req,
                                         const struct upstream_callbacks *cb, void *arg)
{
    const struct config *cfg = req->cfg;
    struct upstream_exchange *ex;
    struct curl_slist *headers = req->headers;
    struct upstream_hblock block = req->block;
    CURL *e;
    CURLMcode mrc;
    bool head, upload;
    CURLcode rc = CURLE_OK;

    if (block.buf) {
        headers = upstream_block_to_slist(&block);
        upstream_hblock_wipe(&block);
    }
    if (!upstream_method_ok(req->method) || !req->url || (req->block.buf && !headers)) {
        upstream_slist_free_secret(headers);
        return NULL;
    }
    ex = xcalloc(1, sizeof(*ex));
    ex->up = up;
    ex->cb = *cb;
    ex->arg = arg;
    ex->start_ms = util_now_ms();
    ex->connect_timeout_ms = cfg ? cfg->upstream.connect_timeout_ms : 0;
    ex->timeout_ms = cfg ? cfg->upstream.timeout_ms : 0;
    ex->via_proxy = cfg && cfg->upstream.proxy && cfg->upstream.proxy[0];
    ex->headers = upstream_build_headers(headers);
    if (!ex->headers)
        goto fail;
    if (!upstream_url_parts(req->url, &ex->host, &ex->port))
        goto fail;
    ex->defer = event_new(up->base, -1, 0, upstream_deferred_cb, ex);
    ex->easy = e = upstream_easy_acquire(up);
    if (!ex->defer || !e)
        goto fail;

    head = upstream_method_is(req->method, "HEAD");
    upload = !head &&
             (req->body_len != 0 || upstream_method_is(req->method, "POST") ||
              upstream_method_is(req->method, "PUT") || upstream_method_is(req->method, "PATCH"));

    /* Security settings first: a failure to apply any of them fails the start. */
    rc |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    rc |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    rc |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    rc |=
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, req->allow_plain_http ? "https,http" : "https");
    rc |= curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR,
                           req->allow_plain_http ? "https,http" : "https");
    /* "" also disables http_proxy/HTTPS_PROXY/ALL_PROXY from the environment */
    rc |= curl_easy_setopt(e, CURLOPT_PROXY, ex->via_proxy ? cfg->upstream.proxy : "");
    if (cfg && cfg->upstream.ca_file)
        rc |= curl_easy_setopt(e, CURLOPT_CAINFO, cfg->upstream.ca_file);
    rc |= curl_easy_setopt(e, CURLOPT_URL, req->url);
    if (rc != CURLE_OK)
        goto fail;

    ex->map = upstream_map_get(up, cfg);
    if (ex->map)
        curl_easy_setopt(e, CURLOPT_CONNECT_TO, ex->map->list);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)ex->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)ex->timeout_ms);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
                     (cfg && cfg->upstream.http2) ? (long)CURL_HTTP_VERSION_2TLS
                                                  : (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (void *)ex);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, ex->errbuf);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, ex->headers);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, upstream_header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, ex);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, upstream_write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, ex);
    ex->once_only = !upstream_method_idempotent(req->method);
    curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, upstream_prereq_cb);
    curl_easy_setopt(e, CURLOPT_PREREQDATA, ex);
    if (head) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (upload) {
        curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, upstream_read_cb);
        curl_easy_setopt(e, CURLOPT_READDATA, ex);
        curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE,
                         (curl_off_t)(req->body_len < 0 ? -1 : req->body_len));
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
        if (req->body_len < 0 || req->body_len > UPSTREAM_SMALL_BODY) {
            ex->big_upload = true;
            curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, (long)UPSTREAM_UPLOAD_BUFFER);
        }
    } else {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
        if (!upstream_method_is(req->method, "GET"))
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
    }

    ex->next = up->exchanges;
    if (up->exchanges)
        up->exchanges->prev = ex;
    up->exchanges = ex;

    mrc = curl_multi_add_handle(up->multi, e);
    if (mrc == CURLM_RECURSIVE_API_CALL) {
        /* started from inside another exchange's callback: add on the next loop turn */
        ex->pending_add = true;
        event_active(ex->defer, EV_TIMEOUT, 1);
    } else if (mrc != CURLM_OK) {
        upstream_exchange_destroy(ex);
        return NULL;
    } else {
        ex->in_multi = true;
    }
    return ex;
fail:
    upstream_exchange_destroy(ex);
    return NULL;
}

void upstream_resume_request(struct upstream_exchange *ex)
{
    if (!ex || ex->cancelled || ex->finished)
        return;
    ex->want_resume_send = true;
    event_active(ex->defer, EV_TIMEOUT, 1);
}

void upstream_resume_response(struct upstream_exchange *ex)
{
    if (!ex || ex->cancelled || ex->finished)
        return;
    ex->want_resume_recv = true;
    event_active(ex->defer, EV_TIMEOUT, 1);
}

void upstream_cancel(struct upstream_exchange *ex)
{
    if (!ex || ex->cancelled || ex->finished)
        return;
    ex->cancelled = true;
    event_active(ex->defer, EV_TIMEOUT, 1);
}

int64_t upstream_elapsed_ms(const struct upstream_exchange *ex)
{
    if (!ex)
        return -1;
    return (ex->end_ms ? ex->end_ms : util_now_ms()) - ex->start_ms;
}

unsigned upstream_take_new_connections(struct upstream *up)
{
    unsigned n = up->new_connections;

    up->new_connections = 0;
    return n;
}
