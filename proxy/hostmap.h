/*
 * hostmap: which upstream host a request is for, and whether it is a mapped
 * Atlassian site (the only hosts that ever receive a credential).
 *
 * Layer 2, pure: no I/O, no allocation on lookups. Matching is exact after
 * normalization (ASCII lowercase, one trailing dot removed, default port
 * filled in): never suffix, prefix or wildcard, so "evil-acme.atlassian.net",
 * "acme.atlassian.net.evil.com" and "acme.atlassian.net:8443" do not match
 * "acme.atlassian.net:443".
 */
#ifndef CREDPROXY_HOSTMAP_H
#define CREDPROXY_HOSTMAP_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

#define HOSTMAP_MAX_HOST 253 /* DNS name length limit */
#define HOSTMAP_HOST_BUF (HOSTMAP_MAX_HOST + 1)

/* hostmap_parse_*: a well-formed name that resolvers would read as an address ("2130706433"). */
#define HOSTMAP_ERR_NUMERIC (-2)

/* A normalized authority. host has no brackets for IPv6 literals. */
struct hostmap_authority {
    char host[HOSTMAP_HOST_BUF];
    int port;        /* 1..65535 */
    bool port_given; /* the text carried an explicit port */
    bool is_ipv6;
};

/*
 * Parse and normalize an authority "host[:port]" / "[v6]:port" of LEN bytes
 * (not NUL-terminated). Rejects userinfo ('@'), empty hosts, bad ports,
 * characters outside [A-Za-z0-9.-_] for names, labels over 63 bytes, and
 * control bytes. default_port is used when no port is given.
 * Returns 0, HOSTMAP_ERR_NUMERIC for a numeric name that is not a canonical
 * dotted quad, or -1 when otherwise invalid.
 */
int hostmap_parse_authority(const char *text, size_t len, int default_port,
                            struct hostmap_authority *out);

/*
 * Parse an absolute-form request target "http://host[:port]/path?q" or
 * "https://…" of LEN bytes. On success fills *auth (default port 80 for
 * http, 443 for https: note the proxy treats both as the site's port when
 * the scheme is http and no port is given, see hostmap_lookup_forward),
 * *scheme_https, and *path_off (offset of the origin-form path within text;
 * a missing path means "/", signalled by *path_off == len). Userinfo is
 * rejected (-1); a non-canonical numeric host is HOSTMAP_ERR_NUMERIC.
 */
int hostmap_parse_absolute(const char *text, size_t len, struct hostmap_authority *auth,
                           bool *scheme_https, size_t *path_off);

struct hostmap;

/* Build from cfg (borrowed: cfg must outlive the map). Never fails on a valid config. */
struct hostmap *hostmap_new(const struct config *cfg);
void hostmap_free(struct hostmap *map);

/*
 * The site whose host and upstream port are exactly auth's, or NULL.
 * For forward-proxy plain-http URLs (http://acme.atlassian.net/…) the proxy
 * forwards over https to the site's port: pass the authority parsed with
 * default port = the site's port semantics via hostmap_lookup_forward.
 */
const struct config_site *hostmap_lookup(const struct hostmap *map,
                                         const struct hostmap_authority *auth);

/*
 * Forward proxy lookup for "http://HOST[:PORT]" (https_scheme false) or
 * "https://HOST[:PORT]" / CONNECT HOST:PORT (true): a plain-http URL
 * without an explicit port maps to the site's upstream port; an explicit
 * port must equal the site's port (http://host:80 is accepted as the
 * default-port spelling of plain http).
 */
const struct config_site *hostmap_lookup_forward(const struct hostmap *map,
                                                 const struct hostmap_authority *auth,
                                                 bool https_scheme);

/*
 * Gateway lookup by Host header: "SITE.localhost[:port]" or
 * "ALIAS.localhost[:port]" (SITE is a domain: site's short name, or a
 * host: site's full host name) -> that site; a Host naming the proxy itself
 * ("localhost", "127.0.0.1", "::1", any 127.x) -> the only site when exactly
 * one is configured. Returns NULL otherwise (421 site_unknown).
 */
const struct config_site *hostmap_lookup_gateway(const struct hostmap *map,
                                                 const struct hostmap_authority *host_header);

/* True for "localhost", "*.localhost", 127.0.0.0/8 and ::1. */
bool hostmap_is_loopback_name(const char *host);

/*
 * Origin check: the value of an Origin header is allowed only when it
 * names the site itself (https://HOST or https://HOST:PORT with the site's
 * port). "null" and everything else is refused.
 */
bool hostmap_origin_allowed(const struct config_site *site, const char *origin, size_t len);

#endif
