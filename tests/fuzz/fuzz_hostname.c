/*
 * fuzz_hostname: the one host-name grammar. A name, IPv4 or IPv6 result is
 * NUL-terminated within HOSTNAME_MAX, lowercase, without a trailing dot,
 * and normalizing it again gives the same kind and the same text; the
 * dotted-quad test agrees with the IPV4 kind.
 */
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "hostname.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char out[HOSTNAME_BUF], again[HOSTNAME_BUF];
    if (size < 1)
        return 0;
    bool v6 = data[0] & 1;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;

    memset(out, 0x55, sizeof(out));
    enum hostname_kind k = hostname_normalize(text, len, v6, out);
    if (k == HOSTNAME_NAME || k == HOSTNAME_IPV4 || k == HOSTNAME_IPV6) {
        size_t n = strnlen(out, sizeof(out));
        FUZZ_CHECK(n > 0 && n <= HOSTNAME_MAX);
        FUZZ_CHECK(out[n - 1] != '.');
        for (size_t i = 0; i < n; i++)
            FUZZ_CHECK(!(out[i] >= 'A' && out[i] <= 'Z') && (unsigned char)out[i] > 0x20);
        enum hostname_kind k2 = hostname_normalize(out, n, k == HOSTNAME_IPV6, again);
        FUZZ_CHECK(k2 == k && strcmp(out, again) == 0);
        FUZZ_CHECK((k == HOSTNAME_IPV4) == hostname_is_dotted_quad(out, n));
        if (hostname_is_config_name(out))
            FUZZ_CHECK(k == HOSTNAME_NAME);
    }
    (void)hostname_is_dotted_quad(text, len);
    (void)hostname_label_ok(text, len);
    return 0;
}
