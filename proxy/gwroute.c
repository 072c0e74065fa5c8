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
    if (gwroute_prefix(gwroute_product_for(path, len), cloud_id, prefix, sizeof(prefix)) < 0)
        return NULL;
    if (len == 0)
        return xasprintf("%s%s/", GWROUTE_ORIGIN, prefix);
    return xasprintf("%s%s%.*s", GWROUTE_ORIGIN, prefix, (int)len, path);
}

bool gwroute_parse(const char *path, size_t len, enum gwroute_product *product, char *cloud_id,
                   size_t cap)
{
    size_t off;
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
