/*
 * hostmap: parse and normalize authorities, and match them exactly against
 * the configured sites. See hostmap.h for the contract.
 *
 * Choices made here (the header leaves them open); the host-name grammar
 * itself ('_', numeric spellings, IPv6 canonical form) is hostname.c's:
 * - "host:" (colon with an empty port) is rejected although RFC 3986 allows
 *   it: no client we serve sends it and it is a classic parser differential.
 * - Ports: 1..65535, decimal digits only, no sign, no leading zero.
 * - hostmap_parse_absolute rejects fragments (an absolute-form request
 *   target never has one, RFC 9112 3.2.2) and a query without a path
 *   ("http://h?x"): no client sends it, and refusing keeps *path_off always
 *   pointing at a '/' (or at len).
 * - Origins: exactly the RFC 6454 serialization "https://host[:port]" with
 *   no trailing slash, path or trailing dot. Browsers never send anything
 *   else, and a non-browser client has no reason to send Origin at all.
 */
#include "hostmap.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>

#include "hostname.h"
#include "util.h"

/* Longest bracketed IPv6 literal we look at ("ffff:…:255.255.255.255"). */
#define HOSTMAP_MAX_V6_TEXT 45
#define HOSTMAP_LOCALHOST_SUFFIX ".localhost"

/* One configured site, with its host normalized once at build time. */
struct hostmap_entry {
    const struct config_site *site;
    char host[HOSTMAP_HOST_BUF];
    size_t host_len;
};

struct hostmap {
    /*
     * A linear array: CONFIG_MAX_SITES bounds it at 256 and real configs have
     * a handful, so a length-checked scan beats a hash on both clarity and
     * speed at that size.
     */
    struct hostmap_entry *entries;
    size_t nentries;
};

static char hostmap_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool hostmap_is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Decimal port: 1..65535, digits only, no leading zero. */
static int hostmap_parse_port(const char *p, size_t len, int *out)
{
    long v = 0;

    if (len == 0 || len > 5 || p[0] == '0')
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (!hostmap_is_digit(p[i]))
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    if (v < 1 || v > 65535)
        return -1;
    *out = (int)v;
    return 0;
}

int hostmap_parse_authority(const char *text, size_t len, int default_port,
                            struct hostmap_authority *out)
{
    struct hostmap_authority a;
    size_t host_end, port_start = len;

    memset(&a, 0, sizeof(a));
    if (!text || len == 0)
        return -1;
    /* Control bytes, space, DEL, non-ASCII and the characters that carry
     * meaning in some other parser (userinfo, percent-encoding, backslash
     * that browsers read as '/', path/query/fragment starts). */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c <= 0x20 || c >= 0x7f || c == '@' || c == '%' || c == '\\' || c == '/' || c == '?' ||
            c == '#')
            return -1;
    }

    if (text[0] == '[') {
        const char *close = memchr(text, ']', len);

        if (!close)
            return -1;
        host_end = (size_t)(close - text);
        if (hostname_normalize(text + 1, host_end - 1, true, a.host) != HOSTNAME_IPV6)
            return -1;
        a.is_ipv6 = true;
        host_end++; /* past ']' */
        if (host_end < len) {
            if (text[host_end] != ':')
                return -1;
            port_start = host_end + 1;
        }
    } else {
        const char *colon = memchr(text, ':', len);

        enum hostname_kind kind;

        host_end = colon ? (size_t)(colon - text) : len;
        if (colon) {
            /* A second colon: an unbracketed IPv6 literal or junk. */
            if (memchr(colon + 1, ':', len - host_end - 1))
                return -1;
            port_start = host_end + 1;
        }
        kind = hostname_normalize(text, host_end, false, a.host);
        if (kind == HOSTNAME_NUMERIC)
            return HOSTMAP_ERR_NUMERIC;
        if (kind == HOSTNAME_INVALID)
            return -1;
    }

    if (port_start < len || (port_start == len && text[len - 1] == ':')) {
        /* Explicit port; "host:" (empty port) fails in hostmap_parse_port. */
        if (hostmap_parse_port(text + port_start, len - port_start, &a.port) < 0)
            return -1;
        a.port_given = true;
    } else {
        if (default_port < 1 || default_port > 65535)
            return -1;
        a.port = default_port;
    }
    *out = a;
    return 0;
}

static bool hostmap_prefix_case(const char *text, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && util_memcaseeq(text, prefix, n);
}

int hostmap_parse_absolute(const char *text, size_t len, struct hostmap_authority *auth,
                           bool *scheme_https, size_t *path_off)
{
    size_t start, end;
    bool https;

    if (!text)
        return -1;
    if (hostmap_prefix_case(text, len, "https://")) {
        https = true;
        start = 8;
    } else if (hostmap_prefix_case(text, len, "http://")) {
        https = false;
        start = 7;
    } else {
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c <= 0x20 || c == 0x7f || c == '#')
            return -1;
    }
    end = start;
    while (end < len && text[end] != '/' && text[end] != '?')
        end++;
    if (end < len && text[end] == '?')
        return -1; /* query without a path */
    int rc = hostmap_parse_authority(text + start, end - start, https ? 443 : 80, auth);
    if (rc < 0)
        return rc;
    *scheme_https = https;
    *path_off = end;
    return 0;
}

/* Normalize a configured host (lowercase, maybe an IPv6 literal) into e->host. */
static void hostmap_entry_init(struct hostmap_entry *e, const struct config_site *site)
{
    struct hostmap_authority a;
    const char *h = site->host ? site->host : "";
    size_t n = strlen(h);
    int rc;

    e->site = site;
    if (memchr(h, ':', n) && n <= HOSTMAP_MAX_V6_TEXT) {
        char br[HOSTMAP_MAX_V6_TEXT + 3];
        br[0] = '[';
        memcpy(br + 1, h, n);
        br[n + 1] = ']';
        rc = hostmap_parse_authority(br, n + 2, 443, &a);
    } else {
        rc = hostmap_parse_authority(h, n, 443, &a);
    }
    if (rc == 0) {
        memcpy(e->host, a.host, sizeof(e->host));
    } else {
        /* config.c validated it; keep a lowercased, truncated copy that
         * simply never matches anything a client can send. */
        size_t i;
        for (i = 0; i < n && i < HOSTMAP_MAX_HOST; i++)
            e->host[i] = hostmap_lower(h[i]);
        e->host[i] = '\0';
    }
    e->host_len = strlen(e->host);
}

struct hostmap *hostmap_new(const struct config *cfg)
{
    struct hostmap *map = xcalloc(1, sizeof(*map));

    if (cfg && cfg->nsites > 0) {
        map->entries = xcalloc(cfg->nsites, sizeof(*map->entries));
        for (size_t i = 0; i < cfg->nsites; i++)
            hostmap_entry_init(&map->entries[i], &cfg->sites[i]);
        map->nentries = cfg->nsites;
    }
    return map;
}

void hostmap_free(struct hostmap *map)
{
    if (!map)
        return;
    free(map->entries);
    free(map);
}

static bool hostmap_entry_host_is(const struct hostmap_entry *e, const char *host, size_t len)
{
    return e->host_len == len && memcmp(e->host, host, len) == 0;
}

const struct config_site *hostmap_lookup(const struct hostmap *map,
                                         const struct hostmap_authority *auth)
{
    size_t len;

    if (!map || !auth)
        return NULL;
    len = strnlen(auth->host, sizeof(auth->host));
    for (size_t i = 0; i < map->nentries; i++) {
        const struct hostmap_entry *e = &map->entries[i];
        if (e->site->port == auth->port && hostmap_entry_host_is(e, auth->host, len))
            return e->site;
    }
    return NULL;
}

const struct config_site *hostmap_lookup_forward(const struct hostmap *map,
                                                 const struct hostmap_authority *auth,
                                                 bool https_scheme)
{
    const struct config_site *only = NULL, *on443 = NULL;
    size_t len, nfound = 0;

    if (!map || !auth)
        return NULL;
    if (https_scheme || (auth->port_given && auth->port != 80))
        return hostmap_lookup(map, auth);

    /*
     * Plain http with no port or ":80": the agent means "the site", which
     * the proxy reaches over https on the site's own port. When the same
     * host is configured on several ports, prefer 443; otherwise ambiguous.
     */
    len = strnlen(auth->host, sizeof(auth->host));
    for (size_t i = 0; i < map->nentries; i++) {
        const struct hostmap_entry *e = &map->entries[i];
        if (!hostmap_entry_host_is(e, auth->host, len))
            continue;
        nfound++;
        if (!only)
            only = e->site;
        if (e->site->port == 443 && !on443)
            on443 = e->site;
    }
    if (nfound == 1)
        return only;
    return on443;
}

static bool hostmap_name_is(const char *name, const char *s, size_t len)
{
    return name && strlen(name) == len && util_memcaseeq(name, s, len);
}

const struct config_site *hostmap_lookup_gateway(const struct hostmap *map,
                                                 const struct hostmap_authority *host_header)
{
    const char *h;
    size_t len, slen = strlen(HOSTMAP_LOCALHOST_SUFFIX);

    if (!map || !host_header)
        return NULL;
    h = host_header->host;
    len = strnlen(h, sizeof(host_header->host));

    if (!host_header->is_ipv6 && len > slen &&
        memcmp(h + len - slen, HOSTMAP_LOCALHOST_SUFFIX, slen) == 0) {
        size_t plen = len - slen;

        /* Aliases first: an alias is the name the operator chose for gateway use. */
        for (size_t i = 0; i < map->nentries; i++) {
            if (hostmap_name_is(map->entries[i].site->alias, h, plen))
                return map->entries[i].site;
        }
        for (size_t i = 0; i < map->nentries; i++) {
            const struct hostmap_entry *e = &map->entries[i];
            /* A domain: site by its short name; any site by its full host. */
            if (hostmap_name_is(e->site->domain, h, plen) || hostmap_entry_host_is(e, h, plen))
                return e->site;
        }
        return NULL;
    }
    if (map->nentries == 1 && hostmap_is_loopback_name(h) &&
        !(len > slen && memcmp(h + len - slen, HOSTMAP_LOCALHOST_SUFFIX, slen) == 0))
        return map->entries[0].site;
    return NULL;
}

bool hostmap_is_loopback_name(const char *host)
{
    size_t len, slen = strlen(HOSTMAP_LOCALHOST_SUFFIX);

    if (!host)
        return false;
    len = strlen(host);
    if (len > 0 && host[len - 1] == '.')
        len--;
    if (len == 0)
        return false;
    if (len == 9 && util_memcaseeq(host, "localhost", 9))
        return true;
    if (len > slen && util_memcaseeq(host + len - slen, HOSTMAP_LOCALHOST_SUFFIX, slen))
        return host[0] != '.';
    if (len > 4 && memcmp(host, "127.", 4) == 0 && hostname_is_dotted_quad(host, len))
        return true;
    return (len == 3 && memcmp(host, "::1", 3) == 0) || (len == 5 && memcmp(host, "[::1]", 5) == 0);
}

bool hostmap_origin_allowed(const struct config_site *site, const char *origin, size_t len)
{
    struct hostmap_authority a;
    struct hostmap_entry e;
    const size_t pre = 8; /* "https://" */

    if (!site || !origin || !hostmap_prefix_case(origin, len, "https://"))
        return false;
    if (len == pre || origin[len - 1] == '.')
        return false;
    /* A trailing dot before a port ("https://h.:443") is a distinct origin too. */
    {
        const char *colon = memchr(origin + pre, ':', len - pre);
        if (origin[pre] != '[' && colon && colon[-1] == '.')
            return false;
    }
    if (hostmap_parse_authority(origin + pre, len - pre, 443, &a) < 0)
        return false;
    hostmap_entry_init(&e, site);
    return a.port == site->port && hostmap_entry_host_is(&e, a.host, strlen(a.host));
}
