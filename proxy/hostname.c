/* hostname: see hostname.h. */
#include "hostname.h"

#include <arpa/inet.h>
#include <string.h>

#define HOSTNAME_MAX_V6_TEXT 45 /* longest IPv6 text ("ffff:...:255.255.255.255") */

static char hostname_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool hostname_is_digit(char c)
{
    return c >= '0' && c <= '9';
}

bool hostname_is_dotted_quad(const char *s, size_t len)
{
    size_t i = 0;

    for (int part = 0; part < 4; part++) {
        size_t start = i;
        int v = 0;

        while (i < len && hostname_is_digit(s[i]) && i - start < 3) {
            v = v * 10 + (s[i] - '0');
            i++;
        }
        if (i == start || v > 255 || (i - start > 1 && s[start] == '0'))
            return false;
        if (part < 3) {
            if (i >= len || s[i] != '.')
                return false;
            i++;
        }
    }
    return i == len;
}

/* The label s[0..len) is all decimal digits, or "0x" + hex digits: an address part. */
static bool hostname_label_is_numeric(const char *s, size_t len)
{
    size_t i = 0;

    if (len >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        for (i = 2; i < len; i++) {
            char c = hostname_lower(s[i]);
            if (!hostname_is_digit(c) && !(c >= 'a' && c <= 'f'))
                return false;
        }
        return true;
    }
    for (; i < len; i++) {
        if (!hostname_is_digit(s[i]))
            return false;
    }
    return len > 0;
}

static enum hostname_kind hostname_normalize_v6(const char *text, size_t len, char *out)
{
    char tmp[HOSTNAME_MAX_V6_TEXT + 1];
    unsigned char addr[16];

    if (len == 0 || len > HOSTNAME_MAX_V6_TEXT)
        return HOSTNAME_INVALID;
    for (size_t i = 0; i < len; i++) {
        char c = hostname_lower(text[i]);
        if (!hostname_is_digit(c) && !(c >= 'a' && c <= 'f') && c != ':' && c != '.')
            return HOSTNAME_INVALID; /* zone ids ("%25eth0") included */
    }
    memcpy(tmp, text, len);
    tmp[len] = '\0';
    if (inet_pton(AF_INET6, tmp, addr) != 1 || !inet_ntop(AF_INET6, addr, out, HOSTNAME_BUF))
        return HOSTNAME_INVALID;
    return HOSTNAME_IPV6;
}

enum hostname_kind hostname_normalize(const char *text, size_t len, bool v6, char *out)
{
    char buf[HOSTNAME_BUF];
    size_t label = 0, last_label_start = 0;

    if (!text)
        return HOSTNAME_INVALID;
    if (v6)
        return hostname_normalize_v6(text, len, out);
    if (len > 0 && text[len - 1] == '.')
        len--;
    if (len == 0 || len > HOSTNAME_MAX)
        return HOSTNAME_INVALID;
    for (size_t i = 0; i < len; i++) {
        char c = hostname_lower(text[i]);

        if (c == '.') {
            if (label == 0)
                return HOSTNAME_INVALID;
            label = 0;
            last_label_start = i + 1;
        } else if ((c >= 'a' && c <= 'z') || hostname_is_digit(c) || c == '-' || c == '_') {
            if (++label > HOSTNAME_MAX_LABEL)
                return HOSTNAME_INVALID;
        } else {
            return HOSTNAME_INVALID;
        }
        buf[i] = c;
    }
    if (label == 0)
        return HOSTNAME_INVALID;
    buf[len] = '\0';
    if (hostname_label_is_numeric(buf + last_label_start, len - last_label_start)) {
        if (!hostname_is_dotted_quad(buf, len))
            return HOSTNAME_NUMERIC;
        memcpy(out, buf, len + 1);
        return HOSTNAME_IPV4;
    }
    memcpy(out, buf, len + 1);
    return HOSTNAME_NAME;
}

bool hostname_label_ok(const char *s, size_t n)
{
    if (n == 0 || n > HOSTNAME_MAX_LABEL || s[0] == '-' || s[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || hostname_is_digit(c) || c == '-'))
            return false;
    }
    return true;
}

bool hostname_is_config_name(const char *s)
{
    size_t len = s ? strlen(s) : 0;
    const char *p = s, *last = s;

    if (len == 0 || len > HOSTNAME_MAX)
        return false;
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (!hostname_label_ok(p, n))
            return false;
        last = p;
        if (!dot)
            break;
        p = dot + 1;
    }
    return !hostname_label_is_numeric(last, strlen(last));
}
