/*
 * fuzz_gwroute: the API-gateway URL forms. The first byte chooses whether
 * the cloudId is a fixed valid one or the input's first NUL-terminated
 * field; the rest is a request path.
 * Invariants:
 *   - gwroute_product_for is Confluence exactly for "/wiki" followed by the
 *     end, '/', '?' or '#';
 *   - a site path becomes ORIGIN/ex/{product}/{cloudId} + the path, kept
 *     exactly ("/" for an empty path), and gwroute_parse of that URL's path
 *     gives back the product and the (lower-cased) cloudId;
 *   - whatever gwroute_parse accepts (and every URL gwroute_url builds)
 *     stays under /ex/{product}/{cloudId}/ when an upstream removes dot
 *     segments (RFC 3986 5.2.4, "%2e" read as '.'), as libcurl does before
 *     sending: a path cannot climb out of its cloudId into another one;
 *   - gwroute_parse accepts no percent-encoded '/' or '\' and gives a
 *     lower-case hex-and-dash cloudId of at most CONFIG_MAX_CLOUD_ID.
 */
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "fuzz.h"
#include "gwroute.h"

#define FUZZ_MAX_PATH 4096
#define FUZZ_ID "1a11d016-8984-4c3e-b9ab-142dd06acb1b"

static bool id_valid(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > CONFIG_MAX_CLOUD_ID)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
              c == '-'))
            return false;
    }
    return true;
}

/* The path part (up to '?' or '#') with "%2e" read as '.', dot segments removed (RFC 3986). */
static char *normalized(const char *p, size_t len)
{
    size_t n = 0;
    while (n < len && p[n] != '?' && p[n] != '#')
        n++;
    char *in = malloc(n + 1), *out = malloc(n + 1);
    size_t il = 0, ol = 0;
    FUZZ_CHECK(in && out);
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '%' && i + 2 < n + 1 && i + 2 < n && p[i + 1] == '2' &&
            (p[i + 2] == 'e' || p[i + 2] == 'E')) {
            in[il++] = '.';
            i += 2;
        } else {
            in[il++] = p[i];
        }
    }
    in[il] = '\0';
    char *s = in;
    while (*s) {
        if (strncmp(s, "../", 3) == 0) {
            s += 3;
        } else if (strncmp(s, "./", 2) == 0) {
            s += 2;
        } else if (strncmp(s, "/./", 3) == 0) {
            s += 2;
        } else if (strcmp(s, "/.") == 0) {
            s[1] = '\0';
        } else if (strncmp(s, "/../", 4) == 0 || strcmp(s, "/..") == 0) {
            if (s[3] == '/')
                s += 3;
            else
                s[1] = '\0', s[2] = '\0';
            while (ol > 0 && out[ol - 1] != '/')
                ol--;
            if (ol > 0)
                ol--;
        } else if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0) {
            *s = '\0';
        } else {
            do
                out[ol++] = *s++;
            while (*s && *s != '/');
        }
    }
    out[ol] = '\0';
    free(in);
    return out;
}

/* Does the path stay under prefix ("/ex/jira/ID") once normalized? */
static bool stays_under(const char *path, size_t len, const char *prefix)
{
    char *n = normalized(path, len);
    size_t pl = strlen(prefix);
    bool ok = strncasecmp(n, prefix, pl) == 0 && (n[pl] == '/' || n[pl] == '\0');
    free(n);
    return ok;
}

static bool has_encoded_slash(const char *p, size_t len)
{
    for (size_t i = 0; i + 2 < len && p[i] != '?' && p[i] != '#'; i++) {
        if (p[i] == '%' && ((p[i + 1] == '2' && (p[i + 2] == 'f' || p[i + 2] == 'F')) ||
                            (p[i + 1] == '5' && (p[i + 2] == 'c' || p[i + 2] == 'C'))))
            return true;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > FUZZ_MAX_PATH)
        return 0;
    char *copy = malloc(size);
    FUZZ_CHECK(copy != NULL);
    memcpy(copy, data + 1, size - 1);
    copy[size - 1] = '\0';
    const char *id = FUZZ_ID, *path = copy;
    if (data[0] & 1) {
        id = copy;
        path = copy + strlen(copy) + (strlen(copy) < size - 1 ? 1 : 0);
    }
    size_t len = strlen(path);

    /* product */
    enum gwroute_product prod = gwroute_product_for(path, len);
    bool wiki =
        len >= 5 && memcmp(path, "/wiki", 5) == 0 && (len == 5 || strchr("/?#", path[5]) != NULL);
    FUZZ_CHECK((prod == GWROUTE_CONFLUENCE) == wiki);

    /* site path -> gateway URL -> parse */
    char prefix[GWROUTE_MAX_PREFIX + 1];
    char *url = gwroute_url(path, len, id);
    if (url && id_valid(id) && (len == 0 || path[0] == '/')) {
        FUZZ_CHECK(gwroute_prefix(prod, id, prefix, sizeof(prefix)) == 0);
        size_t ol = strlen(GWROUTE_ORIGIN), pl = strlen(prefix);
        FUZZ_CHECK(strncmp(url, GWROUTE_ORIGIN, ol) == 0);
        FUZZ_CHECK(strncmp(url + ol, prefix, pl) == 0);
        FUZZ_CHECK(strcmp(url + ol + pl, len ? path : "/") == 0);
        enum gwroute_product p2 = 99;
        char back[CONFIG_MAX_CLOUD_ID + 1];
        const char *up = url + ol;
        FUZZ_CHECK(gwroute_parse(up, strlen(up), &p2, back, sizeof(back)));
        FUZZ_CHECK(p2 == prod && strcasecmp(back, id) == 0);
        FUZZ_CHECK(stays_under(up, strlen(up), prefix));
    }
    free(url);

    /* an agent's path on api.atlassian.com */
    enum gwroute_product p3 = 99;
    char got[CONFIG_MAX_CLOUD_ID + 1];
    size_t caps[] = {sizeof(got), 8};
    for (size_t c = 0; c < 2; c++) {
        if (!gwroute_parse(path, len, &p3, got, caps[c]))
            continue;
        FUZZ_CHECK(p3 == GWROUTE_JIRA || p3 == GWROUTE_CONFLUENCE);
        FUZZ_CHECK(strlen(got) < caps[c] && id_valid(got));
        for (const char *g = got; *g; g++)
            FUZZ_CHECK(!(*g >= 'A' && *g <= 'F'));
        FUZZ_CHECK(gwroute_prefix(p3, got, prefix, sizeof(prefix)) == 0);
        size_t pl = strlen(prefix);
        FUZZ_CHECK(len >= pl && strncasecmp(path, prefix, pl) == 0);
        FUZZ_CHECK(len == pl || strchr("/?#", path[pl]) != NULL);
        FUZZ_CHECK(stays_under(path, len, prefix));
        FUZZ_CHECK(!has_encoded_slash(path, len));
    }
    free(copy);
    return 0;
}
