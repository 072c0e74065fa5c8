/*
 * proxy_connect: CONNECT, which leaves the pipeline after identify
 * (proxy_int.h). To a mapped site (or the API gateway for a gateway
 * credential): 200, then TLS with a leaf the local CA mints for that name,
 * and the requests inside the tunnel are requests of their own (the
 * connection comes back to proxy.c with the tunnel's authority bound). To
 * an allowed unmapped host: a blind TCP tunnel (tunnel.c), never
 * intercepted, never given a credential.
 */
#include "proxy_int.h"

#include <stdio.h>
#include <stdlib.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <openssl/ssl.h>

#include "conn.h"
#include "errors.h"
#include "mitm.h"
#include "route.h"
#include "tunnel.h"
#include "util.h"
#include "world.h"

static void tun_failed(void *arg, struct bufferevent *client, enum tunnel_result result,
                       const char *detail)
{
    struct request *r = arg;
    r->tunnel = NULL;
    conn_reattach(r->c, client);
    int status = result == TUNNEL_ERR_TIMEOUT ? 504 : 502;
    proxy_reply_error_x(r, status, errors_code_for(status), detail ? detail : "tunnel failed", NULL,
                        true);
}

static void tun_established(void *arg)
{
    struct request *r = arg;
    r->status = 200;
}

static void tun_closed(void *arg, const struct tunnel_stats *st)
{
    struct request *r = arg;
    struct conn *c = r->c;
    r->tunnel = NULL;
    r->bytes_in = st->bytes_up;
    r->bytes_out = st->bytes_down;
    r->upstream_ms = st->connect_ms;
    r->status = 200;
    r->finished = true;
    proxy_request_log(r);
    c->req = NULL;
    proxy_request_free(r);
    conn_close(c, NULL);
}

static const struct tunnel_callbacks tun_callbacks = {
    .on_failed = tun_failed,
    .on_established = tun_established,
    .on_closed = tun_closed,
};

/*
 * CONNECT to a mapped site: answer 200 and wrap the connection in TLS with
 * a leaf minted for the site. The CONNECT itself is logged and freed here;
 * the requests inside the tunnel are requests of their own.
 */
void proxy_connect_intercept(struct request *r, const struct route *rt)
{
    struct conn *c = r->c;
    /* A mapped site, or api.atlassian.com for a gateway credential (rt->site NULL). */
    const char *host = rt->site ? rt->site->host : rt->auth.host;
    SSL_CTX *ctx = mitm_ctx_for_host(r->world->mitm, host);
    SSL *ssl = ctx ? SSL_new(ctx) : NULL;

    SSL_CTX_free(ctx);
    if (!ssl) {
        char msg[400];
        snprintf(msg, sizeof(msg),
                 "cannot intercept %s: the local CA could not issue a certificate for it "
                 "(see the startup warning; re-run `credproxy ca init --force`)",
                 host);
        proxy_reply_error_x(r, 403, "interception_off", msg, NULL, true);
        return;
    }
    evbuffer_add(conn_output(c), "HTTP/1.1 200 Connection Established\r\n\r\n", 39);
    r->status = 200;
    r->finished = true;
    proxy_request_log(r);
    char *client = r->client_id ? xstrdup(r->client_id) : NULL;
    c->req = NULL;
    proxy_request_free(r);
    if (conn_start_intercept(c, ssl, &rt->auth, client, true) < 0)
        conn_close(c, "could not set up TLS interception");
    free(client);
}

/* CONNECT to an allowed unmapped host: a blind TCP tunnel, never intercepted. */
void proxy_connect_tunnel(struct request *r, const struct route *rt)
{
    struct conn *c = r->c;

    if (!r->svc->dns) {
        proxy_reply_error_x(r, 502, "upstream_unreachable",
                            "blind tunnels are unavailable (no DNS resolver)", NULL, true);
        return;
    }
    struct bufferevent *bev = conn_detach_for_tunnel(c);
    r->tunnel = tunnel_start(r->svc->base, r->svc->dns, bev, rt->auth.host, rt->auth.port,
                             r->world->cfg, true, &tun_callbacks, r);
    if (!r->tunnel) {
        conn_reattach(c, bev);
        proxy_reply_error_x(r, 400, "bad_request", "cannot tunnel to that authority", NULL, true);
    }
}
