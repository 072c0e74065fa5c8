/*
 * tunnel: see tunnel.h. One struct tunnel per CONNECT; a single teardown
 * path (tunnel_destroy) frees everything exactly once, and never while a
 * caller callback for this tunnel is on the stack (in_cb/free_requested).
 */
#include "tunnel.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include "util.h"

enum tunnel_state { TUNNEL_RESOLVING = 0, TUNNEL_CONNECTING, TUNNEL_SPLICING, TUNNEL_DONE };

struct tunnel {
    struct event_base *base;
    struct evdns_base *dns;
    struct bufferevent *client, *server;
    enum tunnel_state state;
    char host[TUNNEL_MAX_HOST_LEN + 1]; /* as asked, for messages */
    int port;
    char to_host[TUNNEL_MAX_HOST_LEN + 1]; /* after connect_to */
    int to_port;
    bool mapped;
    bool reply_established;
    int64_t connect_timeout_ms;

    struct event *start_ev; /* deferred start: no callback from inside tunnel_start */
    struct event *timer;    /* connect_timeout over resolve + connect */
    struct evdns_getaddrinfo_request *dnsreq;
    bool resolving_sync, sync_done;
    int sync_err;
    struct evutil_addrinfo *sync_ai;
    struct evutil_addrinfo *ai, *ai_next;
    unsigned tried;
    int last_errno;

    bool client_eof, server_eof;   /* that side sent FIN */
    bool client_shut, server_shut; /* we sent FIN to that side */
    uint64_t bytes_up, bytes_down;
    int64_t start_ms, connected_ms;

    struct tunnel_callbacks cb;
    void *arg;
    int in_cb;
    bool free_requested;
};

static void tunnel_connect_next(struct tunnel *t);

int tunnel_map_connect_to(const struct config *cfg, const char *host, int port, char *out_host,
                          size_t cap, int *out_port)
{
    const char *h = host;
    size_t hlen = strlen(host), i;
    int matched = 0;

    if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    *out_port = port;
    for (i = 0; cfg && i < cfg->upstream.nconnect_to; i++) {
        const struct config_connect_to *c = &cfg->upstream.connect_to[i];
        const char *eh = c->host ? c->host : "";
        size_t elen = strlen(eh);
        if (elen >= 2 && eh[0] == '[' && eh[elen - 1] == ']') {
            eh++;
            elen -= 2;
        }
        if (elen && (elen != hlen || !util_memcaseeq(eh, h, hlen)))
            continue;
        if (c->port && c->port != port)
            continue;
        if (c->to_host && c->to_host[0]) {
            h = c->to_host;
            hlen = strlen(h);
            if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
                h++;
                hlen -= 2;
            }
        }
        if (c->to_port)
            *out_port = c->to_port;
        matched = 1;
        break;
    }
    if (hlen + 1 > cap)
        return -1;
    memcpy(out_host, h, hlen);
    out_host[hlen] = '\0';
    return matched;
}

/* ---- teardown ---- */

static void tunnel_destroy(struct tunnel *t)
{
    if (t->dnsreq) {
        /* our callback ignores EVUTIL_EAI_CANCEL, so it never touches t again */
        evdns_getaddrinfo_cancel(t->dnsreq);
        t->dnsreq = NULL;
    }
    if (t->ai)
        evutil_freeaddrinfo(t->ai);
    if (t->start_ev)
        event_free(t->start_ev);
    if (t->timer)
        event_free(t->timer);
    if (t->server)
        bufferevent_free(t->server);
    if (t->client)
        bufferevent_free(t->client);
    free(t);
}

void tunnel_get_stats(const struct tunnel *t, struct tunnel_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (!t)
        return;
    out->bytes_up = t->bytes_up;
    out->bytes_down = t->bytes_down;
    out->connect_ms = t->connected_ms ? t->connected_ms - t->start_ms : -1;
    out->total_ms = util_now_ms() - t->start_ms;
    out->reason = t->state == TUNNEL_SPLICING ? "open" : "closed";
}

void tunnel_free(struct tunnel *t)
{
    if (!t)
        return;
    if (t->in_cb) {
        t->free_requested = true;
        return;
    }
    tunnel_destroy(t);
}

/* The splice ended: report once, then free. */
static void tunnel_close(struct tunnel *t, const char *reason)
{
    struct tunnel_stats st;

    if (t->state == TUNNEL_DONE)
        return;
    t->state = TUNNEL_DONE;
    tunnel_get_stats(t, &st);
    st.reason = reason;
    /* close the sockets before reporting: the audit line follows the close */
    if (t->server) {
        bufferevent_free(t->server);
        t->server = NULL;
    }
    if (t->client) {
        bufferevent_free(t->client);
        t->client = NULL;
    }
    if (t->cb.on_closed) {
        t->in_cb++;
        t->cb.on_closed(t->arg, &st);
        t->in_cb--;
    }
    tunnel_destroy(t);
}

/* Resolve/connect failed: hand the client back, then free. */
static void tunnel_fail(struct tunnel *t, enum tunnel_result r, const char *detail)
{
    struct bufferevent *client = t->client;

    t->state = TUNNEL_DONE;
    t->client = NULL;
    if (t->server) {
        bufferevent_free(t->server);
        t->server = NULL;
    }
    bufferevent_setcb(client, NULL, NULL, NULL, NULL);
    bufferevent_disable(client, EV_READ);
    t->in_cb++;
    if (t->cb.on_failed)
        t->cb.on_failed(t->arg, client, r, detail);
    else
        bufferevent_free(client);
    t->in_cb--;
    tunnel_destroy(t);
}

/* ---- splicing ---- */

static struct bufferevent *tunnel_peer(struct tunnel *t, struct bufferevent *bev)
{
    return bev == t->client ? t->server : t->client;
}

/* Move what bev has read into its peer's output; stop reading while the peer is full. */
static void tunnel_pump(struct tunnel *t, struct bufferevent *bev)
{
    struct bufferevent *peer = tunnel_peer(t, bev);
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer *out = bufferevent_get_output(peer);
    size_t n = evbuffer_get_length(in);

    if (n == 0)
        return;
    if (bev == t->client)
        t->bytes_up += n;
    else
        t->bytes_down += n;
    evbuffer_add_buffer(out, in);
    if (evbuffer_get_length(out) >= TUNNEL_MAX_BUFFERED)
        bufferevent_disable(bev, EV_READ);
}

static void tunnel_read_cb(struct bufferevent *bev, void *arg)
{
    tunnel_pump(arg, bev);
}

/* Send FIN to bev's socket (its peer ended and everything was flushed). */
static void tunnel_shut(struct tunnel *t, struct bufferevent *bev)
{
    evutil_socket_t fd = bufferevent_getfd(bev);

    if (bev == t->client) {
        if (t->client_shut)
            return;
        t->client_shut = true;
    } else {
        if (t->server_shut)
            return;
        t->server_shut = true;
    }
    if (fd >= 0)
        shutdown(fd, SHUT_WR);
}

/* Returns true when the tunnel was closed (t is gone). */
static bool tunnel_check_finished(struct tunnel *t)
{
    if (t->client_eof && t->server_eof && t->client_shut && t->server_shut) {
        tunnel_close(t, "closed");
        return true;
    }
    return false;
}

static void tunnel_write_cb(struct bufferevent *bev, void *arg)
{
    struct tunnel *t = arg;
    struct bufferevent *peer = tunnel_peer(t, bev);
    bool peer_eof = peer == t->client ? t->client_eof : t->server_eof;

    if (!peer_eof) {
        /* drained below TUNNEL_RESUME_BUFFERED: the peer may read again */
        if (!(bufferevent_get_enabled(peer) & EV_READ))
            bufferevent_enable(peer, EV_READ);
        return;
    }
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
        tunnel_shut(t, bev);
        tunnel_check_finished(t);
    }
}

static void tunnel_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct tunnel *t = arg;
    struct bufferevent *peer = tunnel_peer(t, bev);

    if (what & BEV_EVENT_EOF) {
        if (bev == t->client)
            t->client_eof = true;
        else
            t->server_eof = true;
        tunnel_pump(t, bev); /* anything still buffered goes out before the FIN */
        if (evbuffer_get_length(bufferevent_get_output(peer)) == 0)
            tunnel_shut(t, peer);
        /* else tunnel_write_cb sends the FIN once flushed */
        tunnel_check_finished(t);
        return;
    }
    if (what & (BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
        tunnel_close(t, bev == t->client ? "client error" : "upstream error");
}

/* ---- connecting ---- */

static void tunnel_established(struct tunnel *t)
{
    static const char reply[] = "HTTP/1.1 200 Connection Established\r\n\r\n";

    event_del(t->timer);
    if (t->ai) {
        evutil_freeaddrinfo(t->ai);
        t->ai = t->ai_next = NULL;
    }
    t->state = TUNNEL_SPLICING;
    t->connected_ms = util_now_ms();
    bufferevent_setcb(t->client, tunnel_read_cb, tunnel_write_cb, tunnel_event_cb, t);
    bufferevent_setcb(t->server, tunnel_read_cb, tunnel_write_cb, tunnel_event_cb, t);
    bufferevent_setwatermark(t->client, EV_WRITE, TUNNEL_RESUME_BUFFERED, 0);
    bufferevent_setwatermark(t->server, EV_WRITE, TUNNEL_RESUME_BUFFERED, 0);
    if (t->reply_established)
        bufferevent_write(t->client, reply, sizeof(reply) - 1);
    bufferevent_enable(t->client, EV_READ | EV_WRITE);
    bufferevent_enable(t->server, EV_READ | EV_WRITE);
    /* bytes that arrived with the CONNECT head */
    tunnel_pump(t, t->client);
    if (t->cb.on_established) {
        t->in_cb++;
        t->cb.on_established(t->arg);
        t->in_cb--;
        if (t->free_requested) {
            t->state = TUNNEL_DONE;
            tunnel_destroy(t);
        }
    }
}

static void tunnel_server_connect_cb(struct bufferevent *bev, short what, void *arg)
{
    struct tunnel *t = arg;

    (void)bev;
    if (what & BEV_EVENT_CONNECTED) {
        tunnel_established(t);
        return;
    }
    t->last_errno = EVUTIL_SOCKET_ERROR();
    bufferevent_free(t->server);
    t->server = NULL;
    tunnel_connect_next(t);
}

static void tunnel_connect_next(struct tunnel *t)
{
    while (t->ai_next && t->tried < TUNNEL_MAX_ADDRESSES) {
        struct evutil_addrinfo *ai = t->ai_next;

        t->ai_next = ai->ai_next;
        t->tried++;
        t->server = bufferevent_socket_new(t->base, -1, BEV_OPT_CLOSE_ON_FREE);
        if (!t->server) {
            t->last_errno = ENOMEM;
            continue;
        }
        bufferevent_setcb(t->server, NULL, NULL, tunnel_server_connect_cb, t);
        if (bufferevent_socket_connect(t->server, ai->ai_addr, (int)ai->ai_addrlen) == 0)
            return; /* tunnel_server_connect_cb follows */
        t->last_errno = EVUTIL_SOCKET_ERROR();
        bufferevent_free(t->server);
        t->server = NULL;
    }
    {
        char detail[TUNNEL_MAX_HOST_LEN * 2 + 128];
        const char *why = t->last_errno == ECONNREFUSED ? "connection refused"
                          : t->last_errno               ? strerror(t->last_errno)
                                                        : "no usable address";
        if (t->mapped)
            snprintf(detail, sizeof(detail), "could not connect to %s:%d (mapped to %s:%d): %s",
                     t->host, t->port, t->to_host, t->to_port, why);
        else
            snprintf(detail, sizeof(detail), "could not connect to %s:%d: %s", t->host, t->port,
                     why);
        tunnel_fail(t, TUNNEL_ERR_CONNECT, detail);
    }
}

static void tunnel_dns_result(struct tunnel *t, int err, struct evutil_addrinfo *ai)
{
    char detail[TUNNEL_MAX_HOST_LEN + 64];

    if (err != 0 || !ai) {
        if (ai)
            evutil_freeaddrinfo(ai);
        snprintf(detail, sizeof(detail), "could not resolve host %s", t->to_host);
        tunnel_fail(t, TUNNEL_ERR_DNS, detail);
        return;
    }
    t->ai = t->ai_next = ai;
    t->state = TUNNEL_CONNECTING;
    tunnel_connect_next(t);
}

static void tunnel_dns_cb(int err, struct evutil_addrinfo *ai, void *arg)
{
    struct tunnel *t = arg;

    if (err == EVUTIL_EAI_CANCEL) {
        if (ai)
            evutil_freeaddrinfo(ai);
        return; /* t may already be gone */
    }
    if (t->resolving_sync) {
        t->sync_done = true;
        t->sync_err = err;
        t->sync_ai = ai;
        return;
    }
    t->dnsreq = NULL;
    tunnel_dns_result(t, err, ai);
}

static void tunnel_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct tunnel *t = arg;
    char detail[TUNNEL_MAX_HOST_LEN + 96];

    (void)fd;
    (void)what;
    if (t->dnsreq) {
        /*
         * Still resolving: evdns holds a query while no name server answers
         * (or all of them failed) instead of failing it; the message must
         * say it was DNS, not the upstream, that did not answer.
         */
        snprintf(detail, sizeof(detail),
                 "resolving %s timed out after %lld ms (no DNS answer; is a name server "
                 "reachable?)",
                 t->to_host, (long long)t->connect_timeout_ms);
        tunnel_fail(t, TUNNEL_ERR_TIMEOUT, detail);
        return;
    }
    snprintf(detail, sizeof(detail), "connecting to %s:%d timed out after %lld ms", t->host,
             t->port, (long long)t->connect_timeout_ms);
    tunnel_fail(t, TUNNEL_ERR_TIMEOUT, detail);
}

static void tunnel_start_cb(evutil_socket_t fd, short what, void *arg)
{
    struct tunnel *t = arg;
    struct evutil_addrinfo hints;
    struct evdns_getaddrinfo_request *req;
    char portstr[16];

    (void)fd;
    (void)what;
    if (t->connect_timeout_ms > 0) {
        struct timeval tv = {.tv_sec = t->connect_timeout_ms / 1000,
                             .tv_usec = (t->connect_timeout_ms % 1000) * 1000};
        evtimer_add(t->timer, &tv);
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    snprintf(portstr, sizeof(portstr), "%d", t->to_port);
    /* numeric hosts and /etc/hosts answer synchronously: collect, then act */
    t->resolving_sync = true;
    req = evdns_getaddrinfo(t->dns, t->to_host, portstr, &hints, tunnel_dns_cb, t);
    t->resolving_sync = false;
    if (t->sync_done) {
        tunnel_dns_result(t, t->sync_err, t->sync_ai);
        return;
    }
    if (!req) {
        tunnel_dns_result(t, EVUTIL_EAI_FAIL, NULL);
        return;
    }
    t->dnsreq = req;
}

struct tunnel *tunnel_start(struct event_base *base, struct evdns_base *dns,
                            struct bufferevent *client, const char *host, int port,
                            const struct config *cfg, bool reply_established,
                            const struct tunnel_callbacks *cb, void *arg)
{
    struct tunnel *t;
    const char *h = host;
    size_t hlen;

    if (!base || !dns || !client || !host || port <= 0 || port > 65535)
        return NULL;
    hlen = strlen(host);
    if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    if (hlen == 0 || hlen > TUNNEL_MAX_HOST_LEN)
        return NULL;
    t = xcalloc(1, sizeof(*t));
    memcpy(t->host, h, hlen);
    t->port = port;
    if (tunnel_map_connect_to(cfg, t->host, port, t->to_host, sizeof(t->to_host), &t->to_port) <
        0) {
        free(t);
        return NULL;
    }
    t->mapped = strcmp(t->to_host, t->host) != 0 || t->to_port != t->port;
    t->base = base;
    t->dns = dns;
    t->reply_established = reply_established;
    t->connect_timeout_ms = cfg ? cfg->upstream.connect_timeout_ms : 0;
    t->cb = *cb;
    t->arg = arg;
    t->start_ms = util_now_ms();
    t->start_ev = event_new(base, -1, 0, tunnel_start_cb, t);
    t->timer = evtimer_new(base, tunnel_timeout_cb, t);
    if (!t->start_ev || !t->timer) {
        if (t->start_ev)
            event_free(t->start_ev);
        if (t->timer)
            event_free(t->timer);
        free(t);
        return NULL;
    }
    /* from here on the client is ours */
    t->client = client;
    bufferevent_setcb(client, NULL, NULL, NULL, NULL);
    bufferevent_disable(client, EV_READ);
    event_active(t->start_ev, EV_TIMEOUT, 1);
    return t;
}
