/*
 * route: where a request goes, or why it may not go anywhere.
 *
 * One function answers it for every mode and listener kind: the
 * absolute-form forward proxy, CONNECT (interception or blind tunnel),
 * requests inside an intercepted tunnel, gateway requests on the main
 * listener and requests on a site's own listener. The refusals that depend
 * only on where a request goes (unknown host, wrong tunnel host, a Host
 * that names neither the proxy nor the site, browser requests, loops,
 * interception off) are decided here and nowhere else.
 *
 * Layer 2, pure: no I/O, no logging, no event loop; the caller passes the
 * world and the request's facts in. Never reads or copies a header value
 * that may carry a secret (Authorization, Proxy-Authorization, Cookie).
 * Only ROUTE_SITE ever means "inject the site's credential".
 */
#ifndef CREDPROXY_ROUTE_H
#define CREDPROXY_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

#include "hostmap.h"

struct world;
struct config_site;

#define ROUTE_MSG_MAX 400              /* refusal sentences are cut here */
#define ROUTE_MAX_PORTS 64             /* the proxy's own TCP ports considered for loop refusal */
#define ROUTE_TOKEN_MAX 32             /* the per-process loop marker (hex) */
#define ROUTE_VIA_PRODUCT "credproxy-" /* Via: 1.1 credproxy-<token> */

enum route_action {
    ROUTE_REFUSE = 0,        /* answer status/code/message; nothing goes upstream */
    ROUTE_SITE,              /* a mapped site: inject its credential, forward to url */
    ROUTE_PASS,              /* an unmapped host allowed through untouched (no credential) */
    ROUTE_CONNECT_INTERCEPT, /* CONNECT to a mapped site: answer 200, intercept TLS */
    ROUTE_CONNECT_TUNNEL,    /* CONNECT to an allowed unmapped host: blind TCP tunnel */
};

/* The listener a request arrived on. */
struct route_listener {
    bool is_site;          /* a site's own `listen:` address */
    const char *site_host; /* is_site: the site it serves (looked up in the world) */
    int site_port;
};

/* The proxy itself, for loop refusal. */
struct route_self {
    int ports[ROUTE_MAX_PORTS]; /* TCP ports of every listener (main, site, admin) */
    size_t nports;
    char token[ROUTE_TOKEN_MAX + 1]; /* this process's Via marker; "" = none */
};

/*
 * Issue 10: the host and port of the configured site whose (discovered)
 * cloudId is cloud_id; false when none. Called only for
 * api.atlassian.com/ex/{jira|confluence}/{cloudId}/ requests.
 */
typedef bool (*route_cloud_lookup_fn)(void *arg, const char *cloud_id, char *host, size_t cap,
                                      int *port);

struct route_input {
    const struct world *world;
    route_cloud_lookup_fn cloud_lookup; /* may be NULL: only sites' cloud_id: values */
    void *cloud_arg;
    const struct route_listener *listener;
    const struct route_self *self; /* may be NULL: no loop refusal by address */
    /* Inside an intercepted tunnel: the CONNECT authority (else NULL). */
    const struct hostmap_authority *tunnel;
    bool is_connect;
    bool upgrade; /* the request carried Upgrade */
    bool looped;  /* a Via header carries this process's marker */
    const char *target;
    size_t target_len;
    const char *host; /* Host header value, or NULL */
    size_t host_len;
    const char *origin; /* Origin header value, or NULL */
    size_t origin_len;
    const char *fetch_site; /* Sec-Fetch-Site header value, or NULL */
    size_t fetch_site_len;
};

struct route {
    enum route_action action;
    const char *mode;               /* "forward", "gateway", "intercept", "tunnel" */
    const struct config_site *site; /* ROUTE_SITE, ROUTE_CONNECT_INTERCEPT */
    struct hostmap_authority auth;  /* the authority dialled (CONNECT target, URL authority) */
    char host[HOSTMAP_HOST_BUF];    /* host for logs and metrics; "" when unknown */
    const char *path;               /* origin-form path with query, borrowed from target */
    size_t path_len;
    char *url;            /* owned: the upstream URL (ROUTE_SITE, ROUTE_PASS) */
    char *gateway_origin; /* owned: "http://<Host>" when gateway links are rewritten */
    /*
     * Issue 10, ROUTE_SITE: via_gateway: the site's credential works only
     * through api.atlassian.com (the pipeline puts /ex/{product}/{cloudId}
     * before the path once the cloudId is known); gateway_agent_url: the
     * agent itself named api.atlassian.com/ex/{product}/{cloudId}/ of this
     * site, and url is that gateway URL unchanged.
     */
    bool via_gateway;
    bool gateway_agent_url;
    /* ROUTE_REFUSE */
    int status;
    const char *code;
    char message[ROUTE_MSG_MAX];
    bool close; /* the connection must close after the refusal */
};

/*
 * Decide where the request described by in goes. Borrows in (and the
 * strings it points at: out->path points into in->target). Fills *out,
 * which the caller releases with route_clear. Never fails: every outcome,
 * including malformed input, is an action.
 */
void route_request(const struct route_input *in, struct route *out);

/* Free what route_request allocated in r. NULL is a no-op. */
void route_clear(struct route *r);

/*
 * True when a Via header value (a comma-separated list) carries the marker
 * of the process whose token is given: the request came back to us.
 */
bool route_via_is_ours(const char *value, size_t len, const char *token);

/*
 * The upstream URL for path on site (world->sites' origin + path, "/"
 * inserted when path is empty). Returns an allocated string.
 */
char *route_site_url(const struct world *w, const struct config_site *site, const char *path,
                     size_t path_len);

/*
 * True for the hosts Atlassian serves attachments and media from
 * (api.media.atlassian.com): a site's 303 for an attachment points there.
 * They never get a credential, but are let through untouched (blind
 * tunnel or plain forward) even with unknown_hosts: deny, so attachment
 * downloads work in every mode.
 */
bool route_is_media_host(const char *host);

#endif
