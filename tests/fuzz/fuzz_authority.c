/*
 * fuzz_authority: hostmap_parse_authority and hostmap_parse_absolute. A
 * parsed authority is normalized (NUL-terminated, at most HOSTMAP_MAX_HOST,
 * lowercase, no '@', port 1..65535) and re-parsing its own rendering gives
 * the same authority; an absolute target's path offset stays in bounds.
 */
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "hostmap.h"

static void check_normal(const struct hostmap_authority *a)
{
    size_t n = strnlen(a->host, sizeof(a->host));
    FUZZ_CHECK(n > 0 && n <= HOSTMAP_MAX_HOST);
    FUZZ_CHECK(a->port >= 1 && a->port <= 65535);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)a->host[i];
        FUZZ_CHECK(c > 0x20 && c < 0x7f && c != '@' && c != '/' && !(c >= 'A' && c <= 'Z'));
    }
    (void)hostmap_is_loopback_name(a->host);
}

/* "host:port" (brackets for IPv6) re-parses to the same authority. */
static void check_roundtrip(const struct hostmap_authority *a)
{
    char text[HOSTMAP_HOST_BUF + 16];
    struct hostmap_authority b;
    int n = snprintf(text, sizeof(text), a->is_ipv6 ? "[%s]:%d" : "%s:%d", a->host, a->port);
    FUZZ_CHECK(n > 0 && (size_t)n < sizeof(text));
    FUZZ_CHECK(hostmap_parse_authority(text, (size_t)n, 1, &b) == 0);
    FUZZ_CHECK(strcmp(a->host, b.host) == 0 && a->port == b.port && a->is_ipv6 == b.is_ipv6);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct hostmap_authority a;
    const char *text = (const char *)data;
    bool https = false;
    size_t path_off = 0;

    memset(&a, 0, sizeof(a));
    if (hostmap_parse_authority(text, size, 443, &a) == 0) {
        check_normal(&a);
        check_roundtrip(&a);
        FUZZ_CHECK(memchr(text, '@', size) == NULL);
    }
    memset(&a, 0, sizeof(a));
    if (hostmap_parse_absolute(text, size, &a, &https, &path_off) == 0) {
        check_normal(&a);
        check_roundtrip(&a);
        FUZZ_CHECK(path_off <= size);
        FUZZ_CHECK(a.port_given || a.port == (https ? 443 : 80));
    }
    return 0;
}
