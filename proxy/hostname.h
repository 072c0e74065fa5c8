/*
 * hostname: the one grammar for host names, used by the config (sites,
 * aliases, listen and connect_to hosts, server names), by hostmap (request
 * authorities) and by the interception CA (certificate names).
 *
 * Two levels, one a subset of the other:
 * - A request name (hostname_normalize): what an authority in a request may
 *   carry. Letters, digits, '-', '_' and dots; labels 1..63 bytes; at most
 *   253 bytes; one trailing dot dropped; lowercased. '_' is accepted because
 *   it is no delimiter in any URL grammar and matching is exact, so it can
 *   only ever reach a host through unknown_hosts: tunnel, never a site. A
 *   name whose last label is numeric is what resolvers read as an IPv4
 *   address: only the canonical dotted quad is accepted (as an address),
 *   every other spelling ("2130706433", "0x7f.1", "127.1") is refused.
 * - A configured name (hostname_is_config_name): what a site, alias or
 *   certificate may name. LDH only (no '_'), no label starting or ending
 *   with '-', lowercase, and never an IP address: Atlassian sites are names,
 *   and the CA's certificates and name constraints are for names. A site
 *   reached at an address uses upstream.connect_to.
 *
 * Layer 0, pure: no allocation, no I/O.
 */
#ifndef CREDPROXY_HOSTNAME_H
#define CREDPROXY_HOSTNAME_H

#include <stdbool.h>
#include <stddef.h>

#define HOSTNAME_MAX 253 /* DNS name length limit, without the trailing dot */
#define HOSTNAME_BUF (HOSTNAME_MAX + 1)
#define HOSTNAME_MAX_LABEL 63

enum hostname_kind {
    HOSTNAME_INVALID = 0, /* not a host at all */
    HOSTNAME_NUMERIC,     /* a non-canonical numeric spelling resolvers read as an address */
    HOSTNAME_NAME,        /* a request name (may hold '_') */
    HOSTNAME_IPV4,        /* a canonical dotted quad */
    HOSTNAME_IPV6,        /* an IPv6 literal (given without brackets), canonicalized */
};

/*
 * Classify text[0..len) (not NUL-terminated; an IPv6 literal without its
 * brackets only when v6 is true) and write its normal form into out
 * (HOSTNAME_BUF bytes): lowercase, no trailing dot, IPv6 in inet_ntop form.
 * out is written only for NAME, IPV4 and IPV6.
 */
enum hostname_kind hostname_normalize(const char *text, size_t len, bool v6, char *out);

/* True for a canonical dotted quad s[0..len): four decimal parts, no leading zeros, each <= 255. */
bool hostname_is_dotted_quad(const char *s, size_t len);

/* One LDH label s[0..n): 1..63 of [a-z0-9-], not starting or ending with '-'. */
bool hostname_label_ok(const char *s, size_t n);

/*
 * A configured name (see above): lowercase LDH labels, at most 253 bytes, no
 * trailing dot, and not an address (its last label is not numeric).
 */
bool hostname_is_config_name(const char *s);

#endif
