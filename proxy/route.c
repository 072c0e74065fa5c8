/*
 * route: see route.h.
 *
 * Decisions, in the order they are taken:
 * 1. A request carrying our own Via marker came back to us: 508.
 * 2. CONNECT: never on a site listener (405) nor inside a tunnel (400);
 *    a mapped site is intercepted (or 403 interception_off without a CA);
 *    a media host or, with unknown_hosts: tunnel, any other host is a blind
 *    tunnel unless it names the proxy itself (508); else 403.
 * 3. Absolute form: inside a tunnel it must name the tunnel's host; on a
 *    site listener it must name that site (421); a mapped site gets the
 *    credential; a media host or (tunnel mode) any host passes untouched
 *    unless it names the proxy itself; else 403.
 * 4. Origin form: inside a tunnel the Host must name the tunnel's host; on
 *    a site listener the Host must name the proxy or the site (DNS
 *    rebinding defence, 421 misdirected); on the main listener the Host
 *    selects the site (421 site_unknown).
 * 5. For a mapped site: browser requests (a foreign Origin, Sec-Fetch-Site
 *    cross-site/same-site) and Upgrade are refused.
 *
 * Status choices where the contract leaves room: a malformed authority is
 * 400 (the request is broken, not forbidden); a numeric host spelled in a
 * form resolvers read as an address ("2130706433") is 403 (well-formed, but
 * never dialled); an absolute URL on a site listener naming another host
 * is 421 misdirected.
 */
#include "route.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "gwroute.h"
#include "rewrite.h"
#include "util.h"
#include "world.h"

#define ROUTE_MEDIA_HOST "api.media.atlassian.com"

static const char *const ROUTE_MSG_NO_CA =
    "HTTPS interception is not set up: run `credproxy ca init`, then trust certs/ca.pem in the "
    "agent (credproxy env prints how), and reload the proxy";

static void route_refuse(struct route *out, int status, const char *code, bool close,
                         const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void route_refuse(struct route *out, int status, const char *code, bool close,
                         const char *fmt, ...)
{
    va_list ap;

    out->action = ROUTE_REFUSE;
    out->status = status;
    out->code = code;
    out->close = out->close || close;
    va_start(ap, fmt);
    vsnprintf(out->message, sizeof(out->message), fmt, ap);
    va_end(ap);
}

static void route_set_host(struct route *out, const char *host)
{
    snprintf(out->host, sizeof(out->host), "%s", host);
}

static bool route_same_authority(const struct hostmap_authority *a,
                                 const struct hostmap_authority *b)
{
    return a->port == b->port && util_strcaseeq(a->host, b->host);
}

bool route_is_media_host(const char *host)
{
    return host && util_strcaseeq(host, ROUTE_MEDIA_HOST);
}

/* One of the names the operator listed for the proxy (gateway.server_names). */
static bool route_is_server_name(const struct config *cfg, const char *host)
{
    for (size_t i = 0; i < cfg->gateway.nserver_names; i++) {
        if (util_strcaseeq(cfg->gateway.server_names[i], host))
            return true;
    }
    return false;
}

/*
 * The authority names the proxy itself: a loopback name or address, the
 * unspecified address, or an operator-listed name, on one of our ports.
 */
static bool route_is_self(const struct route_input *in, const struct hostmap_authority *a)
{
    const struct route_self *self = in->self;
    bool port_ours = false;

    if (!self)
        return false;
    for (size_t i = 0; i < self->nports && !port_ours; i++)
        port_ours = self->ports[i] == a->port;
    if (!port_ours)
        return false;
    return hostmap_is_loopback_name(a->host) || strcmp(a->host, "0.0.0.0") == 0 ||
           strcmp(a->host, "::") == 0 || route_is_server_name(in->world->cfg, a->host);
}

bool route_via_is_ours(const char *value, size_t len, const char *token)
{
    size_t plen = strlen(ROUTE_VIA_PRODUCT), tlen;

    if (!value || !token || !*token)
        return false;
    tlen = strlen(token);
    /* "1.1 credproxy-<token>" anywhere in the list, token followed by a delimiter. */
    for (size_t i = 0; i + plen + tlen <= len; i++) {
        if (memcmp(value + i, ROUTE_VIA_PRODUCT, plen) != 0 ||
            memcmp(value + i + plen, token, tlen) != 0)
            continue;
        size_t end = i + plen + tlen;
        if (end == len || value[end] == ',' || value[end] == ' ' || value[end] == '\t')
            return true;
    }
    return false;
}

char *route_site_url(const struct world *w, const struct config_site *site, const char *path,
                     size_t path_len)
{
    const char *slash = (path_len == 0 || path[0] != '/') ? "/" : "";
    return xasprintf("%s%s%.*s", w->sites[world_site_index(w, site)].origin, slash, (int)path_len,
                     path);
}

/* A URL for an unmapped host passed through untouched. */
static char *route_pass_url(const struct hostmap_authority *a, bool https, const char *path,
                            size_t path_len)
{
    const char *slash = (path_len == 0 || path[0] != '/') ? "/" : "";
    const char *scheme = https ? "https" : "http";
    if (a->is_ipv6)
        return xasprintf("%s://[%s]:%d%s%.*s", scheme, a->host, a->port, slash, (int)path_len,
                         path);
    return xasprintf("%s://%s:%d%s%.*s", scheme, a->host, a->port, slash, (int)path_len, path);
}

/*
 * Issue 10: an absolute request to https://api.atlassian.com/ex/{jira|
 * confluence}/{cloudId}/... whose cloudId is a configured site's (from
 * cloud_id: or looked up) and whose credential goes through the gateway:
 * that site, with the URL kept. Host AND prefix must match; any other
 * api.atlassian.com path, or a site whose credential is not for the
 * gateway, stays unmapped (no credential). True when it set out->site.
 */
static bool route_gateway_agent(const struct route_input *in, struct route *out, bool https)
{
    const struct world *w = in->world;
    const struct config *cfg = w->cfg;
    enum gwroute_product product;
    char id[CONFIG_MAX_CLOUD_ID + 1];

    if (!util_strcaseeq(out->auth.host, CONFIG_GATEWAY_HOST) ||
        out->auth.port != (https ? 443 : 80) ||
        !gwroute_parse(out->path, out->path_len, &product, id, sizeof(id)))
        return false;
    const struct config_site *site = NULL;
    for (size_t i = 0; i < cfg->nsites && !site; i++) {
        if (cfg->sites[i].cloud_id && strcmp(cfg->sites[i].cloud_id, id) == 0)
            site = &cfg->sites[i];
    }
    if (!site && in->cloud_lookup) {
        struct hostmap_authority a;
        memset(&a, 0, sizeof(a));
        if (in->cloud_lookup(in->cloud_arg, id, a.host, sizeof(a.host), &a.port)) {
            a.port_given = true;
            site = hostmap_lookup(w->map, &a);
        }
    }
    if (!site || !cfg->credentials[site->credential].via_gateway)
        return false;
    out->site = site;
    out->gateway_agent_url = true;
    return true;
}

/* Issue 10: does any credential go through the gateway (then api.atlassian.com is intercepted)? */
static bool route_gateway_configured(const struct config *cfg)
{
    for (size_t i = 0; i < cfg->ncredentials; i++) {
        if (cfg->credentials[i].via_gateway)
            return true;
    }
    return false;
}

/*
 * Issue 10: a request inside an intercepted tunnel to api.atlassian.com:
 * only /ex/{product}/{a gateway site's cloudId}/ gets a site (and its
 * credential); anything else there is refused. True when the tunnel is
 * the gateway's (out is then decided).
 */
static bool route_gateway_tunnel(const struct route_input *in, struct route *out)
{
    if (!util_strcaseeq(in->tunnel->host, CONFIG_GATEWAY_HOST))
        return false;
    out->auth = *in->tunnel;
    if (!route_gateway_agent(in, out, true))
        route_refuse(out, 403, "host_not_allowed", false,
                     "on %s only /ex/jira/{cloudId}/ and /ex/confluence/{cloudId}/ of a "
                     "configured site whose credential has via: api_gateway are served",
                     CONFIG_GATEWAY_HOST);
    return true;
}

/*
 * A request inside an intercepted tunnel, once it is known to name the
 * tunnel's own host (origin or absolute form): the gateway's rules on the
 * gateway's tunnel, else the tunnel host's site, which a reload may have
 * taken out of the map since the CONNECT.
 */
static void route_in_tunnel(const struct route_input *in, struct route *out)
{
    if (route_gateway_tunnel(in, out))
        return;
    out->site = hostmap_lookup_forward(in->world->map, in->tunnel, true);
    if (!out->site)
        route_refuse(out, 421, "site_unknown", false,
                     "the tunnel's host is no longer in the site map");
}

/* Issue 10: mark a site request whose credential works only through the API gateway. */
static void route_gateway_site(const struct route_input *in, struct route *out)
{
    const struct config *cfg = in->world->cfg;
    out->via_gateway = cfg->credentials[out->site->credential].via_gateway;
}

/*
 * An unmapped host: let it through (a media host, or unknown_hosts: tunnel)
 * unless it is the proxy itself, else refuse. Sets out->action.
 */
static void route_unmapped(const struct route_input *in, struct route *out,
                           enum route_action pass_action)
{
    const struct config *cfg = in->world->cfg;
    const struct hostmap_authority *a = &out->auth;
    bool media = route_is_media_host(a->host);

    if (!media && cfg->unknown_hosts != CONFIG_UNKNOWN_TUNNEL) {
        route_refuse(out, 403, "host_not_allowed", false,
                     "%s:%d is not in the site map (unknown_hosts: deny); only configured "
                     "Atlassian sites are reachable through this proxy",
                     a->host, a->port);
        return;
    }
    if (route_is_self(in, a)) {
        route_refuse(out, 508, "loop_detected", true,
                     "%s:%d is this proxy itself: the request would come back in", a->host,
                     a->port);
        return;
    }
    out->action = pass_action;
    out->mode = "tunnel";
}

/* After hostmap's parse returned rc: refuse (400/403) and return -1 when unusable. */
static int route_authority_usable(struct route *out, int rc)
{
    if (rc == HOSTMAP_ERR_NUMERIC) {
        route_refuse(out, 403, "host_not_allowed", false,
                     "a numeric host name that resolvers read as an address is never dialled; "
                     "use the dotted form or a host name");
        return -1;
    }
    if (rc < 0) {
        route_refuse(out, 400, "bad_request", true,
                     "the authority is not a plain host[:port] (user info, percent-encoding, an "
                     "empty host or invalid characters)");
        return -1;
    }
    return 0;
}

static void route_connect(const struct route_input *in, struct route *out)
{
    const struct world *w = in->world;
    int rc;

    out->mode = "intercept";
    /* A refused CONNECT ends the connection: the client may already be sending TLS. */
    out->close = true;
    if (in->tunnel) {
        route_refuse(out, 400, "bad_request", true,
                     "CONNECT inside an intercepted tunnel is not supported");
        return;
    }
    if (in->listener && in->listener->is_site) {
        route_refuse(out, 405, "method_not_allowed", true,
                     "CONNECT is not served on a site's own listener (it serves only %s); use the "
                     "main listener as HTTPS_PROXY",
                     in->listener->site_host);
        return;
    }
    rc = hostmap_parse_authority(in->target, in->target_len, 443, &out->auth);
    if (route_authority_usable(out, rc) < 0)
        return;
    if (!out->auth.port_given) {
        route_refuse(out, 400, "bad_request", true, "CONNECT needs a host:port authority");
        return;
    }
    route_set_host(out, out->auth.host);
    out->site = hostmap_lookup_forward(w->map, &out->auth, true);
    if (!out->site && out->auth.port == 443 &&
        util_strcaseeq(out->auth.host, CONFIG_GATEWAY_HOST) && route_gateway_configured(w->cfg)) {
        /* Issue 10: intercepted so its /ex/{product}/{cloudId}/ requests can be served. */
        if (!w->mitm) {
            route_refuse(out, 403, "interception_off", true, "%s", ROUTE_MSG_NO_CA);
            return;
        }
        out->action = ROUTE_CONNECT_INTERCEPT;
        return;
    }
    if (out->site) {
        if (!w->mitm) {
            route_refuse(out, 403, "interception_off", true, "%s", ROUTE_MSG_NO_CA);
            return;
        }
        out->action = ROUTE_CONNECT_INTERCEPT;
        return;
    }
    route_unmapped(in, out, ROUTE_CONNECT_TUNNEL);
}

static void route_absolute(const struct route_input *in, struct route *out)
{
    const struct world *w = in->world;
    bool https = false;
    size_t off = 0;
    int rc;

    out->mode = in->tunnel ? "intercept" : "forward";
    rc = hostmap_parse_absolute(in->target, in->target_len, &out->auth, &https, &off);
    if (route_authority_usable(out, rc) < 0)
        return;
    out->path = in->target + off;
    out->path_len = in->target_len - off;
    route_set_host(out, out->auth.host);

    if (in->tunnel) {
        struct hostmap_authority want = out->auth;
        if (!https && !out->auth.port_given)
            want.port = 443;
        if (!route_same_authority(&want, in->tunnel)) {
            route_refuse(out, 403, "host_not_allowed", false,
                         "the request names %s, not the tunnel's host %s", out->auth.host,
                         in->tunnel->host);
            return;
        }
        route_in_tunnel(in, out);
        return;
    }
    out->site = hostmap_lookup_forward(w->map, &out->auth, https);
    if (!out->site && !(in->listener && in->listener->is_site))
        route_gateway_agent(in, out, https);
    if (in->listener && in->listener->is_site) {
        /* A site listener serves its site only: it is no forward proxy. */
        if (!out->site || !util_strcaseeq(out->site->host, in->listener->site_host) ||
            out->site->port != in->listener->site_port) {
            out->site = NULL;
            route_refuse(out, 421, "misdirected", false,
                         "this listener serves only %s; %s is not it", in->listener->site_host,
                         out->auth.host);
            return;
        }
        out->mode = "gateway";
    }
    if (!out->site) {
        route_unmapped(in, out, ROUTE_PASS);
        if (out->action == ROUTE_PASS)
            out->url = route_pass_url(&out->auth, https, out->path, out->path_len);
    }
}

/*
 * A site listener's Host must name the proxy (a loopback name or address
 * — every *.localhost name, so the gateway names SITE.localhost and
 * ALIAS.localhost too —, any IP literal, an operator-listed name) or the
 * site's own host. A DNS-rebinding page
 * has its own name in Host, which matches none of these. The port is not
 * compared: a rebinding page is necessarily on the listener's own port.
 */
static bool route_site_host_ok(const struct route_input *in, const struct config_site *site,
                               const struct hostmap_authority *h)
{
    const struct config *cfg = in->world->cfg;
    const struct hostmap_authority *a = h;

    if (a->is_ipv6 || hostmap_is_loopback_name(a->host) || route_is_server_name(cfg, a->host))
        return true;
    if (util_strcaseeq(a->host, site->host))
        return true;
    /*
     * Any IPv4 literal: a rebinding page always has a name, never an
     * address. hostmap accepts a numeric last label only as a canonical
     * dotted quad, so digits and dots alone mean an address here.
     */
    return strspn(a->host, "0123456789.") == strlen(a->host);
}

static void route_origin_form(const struct route_input *in, struct route *out)
{
    const struct world *w = in->world;
    struct hostmap_authority hauth;
    bool host_ok;

    if (in->target_len == 0 || in->target[0] != '/' ||
        (in->target_len >= 2 && in->target[1] == '/')) {
        route_refuse(out, 400, "bad_request", true,
                     "the request target must be a path (not starting with //) or an absolute "
                     "URL");
        return;
    }
    out->path = in->target;
    out->path_len = in->target_len;
    host_ok = in->host &&
              hostmap_parse_authority(in->host, in->host_len, in->tunnel ? 443 : 80, &hauth) == 0;

    if (in->tunnel) {
        out->mode = "intercept";
        route_set_host(out, in->tunnel->host);
        if (!host_ok || !route_same_authority(&hauth, in->tunnel)) {
            route_refuse(out, 421, "site_unknown", false,
                         "the Host header does not name the tunnel's host %s; refused",
                         in->tunnel->host);
            return;
        }
        route_in_tunnel(in, out);
        return;
    }

    out->mode = "gateway";
    if (in->listener && in->listener->is_site) {
        struct hostmap_authority sa;
        memset(&sa, 0, sizeof(sa));
        snprintf(sa.host, sizeof(sa.host), "%s", in->listener->site_host);
        sa.port = in->listener->site_port;
        sa.port_given = true;
        route_set_host(out, in->listener->site_host);
        out->site = hostmap_lookup(w->map, &sa);
        if (!out->site) {
            route_refuse(out, 421, "site_unknown", false,
                         "this listener's site is no longer configured (reloaded?)");
            return;
        }
        if (!host_ok || !route_site_host_ok(in, out->site, &hauth)) {
            out->site = NULL;
            route_refuse(out, 421, "misdirected", false,
                         "the Host header names neither this proxy nor %s (add the name to "
                         "gateway.server_names if agents reach the proxy by it)",
                         in->listener->site_host);
            return;
        }
    } else {
        if (host_ok) {
            route_set_host(out, hauth.host);
            out->site = hostmap_lookup_gateway(w->map, &hauth);
            if (!out->site && w->cfg->nsites == 1 && route_is_server_name(w->cfg, hauth.host))
                out->site = &w->cfg->sites[0];
        }
        if (!out->site) {
            route_refuse(out, 421, "site_unknown", false,
                         "no site for Host %s: use SITE.localhost (or ALIAS.localhost) as the "
                         "host, an absolute http://SITE.atlassian.net URL through the proxy, or a "
                         "site's own listen address",
                         host_ok ? hauth.host : "(invalid)");
            return;
        }
    }
    if (w->cfg->gateway.rewrite_links && host_ok) {
        /* Links go back to the base the agent used: http://<its Host>. */
        char *origin = xasprintf("http://%.*s", (int)in->host_len, in->host);
        if (rewrite_to_origin_ok(origin))
            out->gateway_origin = origin;
        else
            free(origin);
    }
}

/* Sec-Fetch-Site: only a browser sends it; cross-site and same-site are pages elsewhere. */
static bool route_fetch_site_foreign(const char *v, size_t len)
{
    return (len == 10 && util_memcaseeq(v, "cross-site", 10)) ||
           (len == 9 && util_memcaseeq(v, "same-site", 9));
}

/* Refusals that apply to every request for a mapped site. */
static void route_site_checks(const struct route_input *in, struct route *out)
{
    if (in->origin && !hostmap_origin_allowed(out->site, in->origin, in->origin_len)) {
        route_refuse(out, 403, "origin_not_allowed", false,
                     "refused Origin: browser pages may not drive this proxy");
        return;
    }
    if (in->fetch_site && route_fetch_site_foreign(in->fetch_site, in->fetch_site_len)) {
        route_refuse(out, 403, "origin_not_allowed", false,
                     "refused a %.*s browser request (Sec-Fetch-Site): browser pages may not "
                     "drive this proxy",
                     (int)in->fetch_site_len, in->fetch_site);
        return;
    }
    if (in->upgrade) {
        route_refuse(out, 403, "host_not_allowed", false,
                     "Upgrade (WebSocket) requests are not forwarded to Atlassian sites");
        return;
    }
    route_set_host(out, out->site->host);
    if (out->gateway_agent_url)
        out->url = xasprintf("https://%s%.*s", CONFIG_GATEWAY_HOST, (int)out->path_len, out->path);
    else
        out->url = route_site_url(in->world, out->site, out->path, out->path_len);
    route_gateway_site(in, out);
    out->action = ROUTE_SITE;
}

void route_request(const struct route_input *in, struct route *out)
{
    const char *t = in->target;
    size_t tlen = in->target_len;

    memset(out, 0, sizeof(*out));
    out->mode = "forward";
    if (in->looped) {
        route_refuse(out, 508, "loop_detected", true,
                     "this request already passed through this proxy (its Via marker came back)");
        return;
    }
    if (in->is_connect) {
        route_connect(in, out);
        return;
    }
    if ((tlen >= 7 && util_memcaseeq(t, "http://", 7)) ||
        (tlen >= 8 && util_memcaseeq(t, "https://", 8)))
        route_absolute(in, out);
    else
        route_origin_form(in, out);
    /* A refusal always has a status; ROUTE_REFUSE alone is also "not decided yet". */
    if (out->status || out->action == ROUTE_PASS)
        return;
    route_site_checks(in, out);
    if (out->status) {
        free(out->gateway_origin);
        out->gateway_origin = NULL;
    }
}

void route_clear(struct route *r)
{
    if (!r)
        return;
    free(r->url);
    free(r->gateway_origin);
    r->url = NULL;
    r->gateway_origin = NULL;
}
