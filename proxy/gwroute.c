/* gwroute: see gwroute.h. */
#include "gwroute.h"

#include <stdio.h>
#include <string.h>

#include "util.h"

enum gwroute_product gwroute_product_for(const char *path, size_t len)
{
    if (len >= 5 && memcmp(path, "/wiki", 5) == 0 &&
        (len == 5 || path[5] == '/' || path[5] == '?' || path[5] == '#'))
        return GWROUTE_CONFLUENCE;
    return GWROUTE_JIRA;
}

/*
 * Could the path part (up to '?' or '#') climb out of its /ex/{product}/{cloudId}
 * prefix upstream: a "." or ".." segment (also written with %2e; libcurl
 * removes dot segments before sending), a backslash, or an encoded '/' or '\'?
 */
static bool gw_path_ambiguous(const char *path, size_t len)
{
    size_t end = 0, seg = 0, dots = 0, other = 0;
    while (end < len && path[end] != '?' && path[end] != '#')
        end++;
    for (size_t i = 0; i <= end; i++) {
        if (i == end || path[i] == '/') {
            if (other == 0 && (dots == 1 || dots == 2) && i > seg)
                return true;
            seg = i + 1;
            dots = other = 0;
            continue;
        }
        if (path[i] == '\\')
            return true;
        if (path[i] == '%' && i + 2 < end) {
            char h = path[i + 1], l = (char)(path[i + 2] | 0x20);
            if ((h == '2' && l == 'f') || (h == '5' && l == 'c'))
                return true;
            if (h == '2' && l == 'e') {
                dots++;
                i += 2;
                continue;
            }
        }
        if (path[i] == '.')
            dots++;
        else
            other++;
    }
    return false;
}

int gwroute_prefix(enum gwroute_product p, const char *cloud_id, char *out, size_t cap)
{
    if (!cloud_id || !*cloud_id)
        return -1;
    int n =
        snprintf(out, cap, "/ex/%s/%s", p == GWROUTE_CONFLUENCE ? "confluence" : "jira", cloud_id);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

char *gwroute_url(const char *path, size_t len, const char *cloud_id)
{
    char prefix[GWROUTE_MAX_PREFIX + 1];
    if (gw_path_ambiguous(path, len) ||
        gwroute_prefix(gwroute_product_for(path, len), cloud_id, prefix, sizeof(prefix)) < 0)
        return NULL;
    if (len == 0)
        return xasprintf("%s%s/", GWROUTE_ORIGIN, prefix);
    return xasprintf("%s%s%.*s", GWROUTE_ORIGIN, prefix, (int)len, path);
}

bool gwroute_parse(const char *path, size_t len, enum gwroute_product *product, char *cloud_id,
                   size_t cap)
{
    size_t off;
    if (gw_path_ambiguous(path, len))
        return false;
    if (len >= 9 && memcmp(path, "/ex/jira/", 9) == 0) {
        *product = GWROUTE_JIRA;
        off = 9;
    } else if (len >= 15 && memcmp(path, "/ex/confluence/", 15) == 0) {
        *product = GWROUTE_CONFLUENCE;
        off = 15;
    } else {
        return false;
    }
    size_t n = 0;
    while (off + n < len && path[off + n] != '/' && path[off + n] != '?' && path[off + n] != '#')
        n++;
    if (n == 0 || n > CONFIG_MAX_CLOUD_ID || n + 1 > cap)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = path[off + i];
        if (ch >= 'A' && ch <= 'F')
            ch = (char)(ch - 'A' + 'a');
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || ch == '-'))
            return false;
        cloud_id[i] = ch;
    }
    cloud_id[n] = '\0';
    return true;
}
