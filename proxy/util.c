/*
 * util: see util.h. Layer 0: no logging, no knowledge of secrets beyond
 * zeroing what it is handed.
 */
#define _GNU_SOURCE /* vasprintf, strndup */
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

static void util_oom(void)
{
    static const char msg[] = "credproxy: out of memory\n";
    fputs(msg, stderr);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        util_oom();
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        util_oom();
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        util_oom();
    return q;
}

char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        util_oom();
    return p;
}

char *xstrndup(const char *s, size_t n)
{
    char *p = strndup(s, n);
    if (!p)
        util_oom();
    return p;
}

char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0 || !s)
        util_oom();
    return s;
}

void util_secure_zero(void *p, size_t n)
{
    if (p && n)
        OPENSSL_cleanse(p, n);
}

void util_free_secret(char *s)
{
    if (!s)
        return;
    util_secure_zero(s, strlen(s));
    free(s);
}

int64_t util_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t util_wall_time(void)
{
    return (int64_t)time(NULL);
}

/* Digits only: no sign, no space, no "0x"; stops at the first non-digit. */
static int util_scan_u64(const char *s, uint64_t max, uint64_t *out, const char **end)
{
    uint64_t v = 0;
    const char *p = s;

    if (!s || *p < '0' || *p > '9')
        return -1;
    while (*p >= '0' && *p <= '9') {
        unsigned d = (unsigned)(*p - '0');
        if (v > (max - d) / 10)
            return -1;
        v = v * 10 + d;
        p++;
    }
    *out = v;
    *end = p;
    return 0;
}

int util_parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    const char *end;
    uint64_t v;

    if (util_scan_u64(s, max, &v, &end) < 0 || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

/*
 * Durations accept an optional fraction ("1.5s" = 1500 ms) as long as the
 * result is a whole number of milliseconds. The limit (about 292 million
 * years in ms) is far above anything meaningful; we cap at 10 years.
 */
#define UTIL_MAX_DURATION_MS ((uint64_t)10 * 366 * 24 * 3600 * 1000)

int util_parse_duration_ms(const char *s, int64_t *out_ms)
{
    static const struct {
        const char *unit;
        uint64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"min", 60000}, {"h", 3600000}};
    const char *end;
    uint64_t whole, frac = 0, frac_div = 1;

    if (!s)
        return -1;
    if (strcmp(s, "0") == 0) {
        *out_ms = 0;
        return 0;
    }
    if (util_scan_u64(s, UTIL_MAX_DURATION_MS, &whole, &end) < 0)
        return -1;
    if (*end == '.') {
        end++;
        if (*end < '0' || *end > '9')
            return -1;
        while (*end >= '0' && *end <= '9') {
            if (frac_div >= 1000000)
                return -1; /* more than 6 decimals is noise */
            frac = frac * 10 + (uint64_t)(*end - '0');
            frac_div *= 10;
            end++;
        }
    }
    for (size_t i = 0; i < UTIL_ARRAY_LEN(units); i++) {
        if (strcmp(end, units[i].unit) != 0)
            continue;
        if (whole > UTIL_MAX_DURATION_MS / units[i].ms)
            return -1;
        uint64_t ms = whole * units[i].ms;
        if (frac) {
            uint64_t f = frac * units[i].ms;
            if (f % frac_div)
                return -1; /* not a whole number of milliseconds */
            ms += f / frac_div;
        }
        if (ms > UTIL_MAX_DURATION_MS)
            return -1;
        *out_ms = (int64_t)ms;
        return 0;
    }
    return -1;
}

/* A rate of up to a million per second is plenty for one Atlassian account. */
#define UTIL_MAX_RATE_COUNT 1000000000ULL

int util_parse_rate(const char *s, double *per_second, bool *off)
{
    static const struct {
        const char *unit;
        double seconds;
    } units[] = {{"s", 1},    {"sec", 1},     {"second", 1}, {"m", 60},
                 {"min", 60}, {"minute", 60}, {"h", 3600},   {"hour", 3600}};
    const char *end;
    uint64_t n;

    if (!s)
        return -1;
    if (strcmp(s, "off") == 0) {
        *off = true;
        *per_second = 0;
        return 0;
    }
    if (util_scan_u64(s, UTIL_MAX_RATE_COUNT, &n, &end) < 0 || n == 0 || *end != '/')
        return -1;
    end++;
    for (size_t i = 0; i < UTIL_ARRAY_LEN(units); i++) {
        if (strcmp(end, units[i].unit) == 0) {
            *off = false;
            *per_second = (double)n / units[i].seconds;
            return 0;
        }
    }
    return -1;
}

static bool util_is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's formula). */
static int64_t util_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

int util_parse_date(const char *s, int64_t *out_epoch)
{
    static const unsigned mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    unsigned y = 0, m = 0, d = 0;

    if (!s || strlen(s) != 10 || s[4] != '-' || s[7] != '-')
        return -1;
    for (int i = 0; i < 10; i++) {
        if (i == 4 || i == 7)
            continue;
        if (s[i] < '0' || s[i] > '9')
            return -1;
    }
    y = (unsigned)((s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0'));
    m = (unsigned)((s[5] - '0') * 10 + (s[6] - '0'));
    d = (unsigned)((s[8] - '0') * 10 + (s[9] - '0'));
    if (y < 1970 || m < 1 || m > 12 || d < 1)
        return -1;
    unsigned maxd = mdays[m - 1] + (m == 2 && util_is_leap(y) ? 1 : 0);
    if (d > maxd)
        return -1;
    *out_epoch = util_days_from_civil(y, m, d) * 86400;
    return 0;
}

static char util_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

bool util_memcaseeq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (util_lower(a[i]) != util_lower(b[i]))
            return false;
    }
    return true;
}

void util_copy(char *dst, size_t cap, const char *src)
{
    size_t n = src ? strnlen(src, cap - 1) : 0;
    memcpy(dst, src ? src : "", n);
    dst[n] = '\0';
}

bool util_strcaseeq(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    return la == lb && util_memcaseeq(a, b, la);
}

static const char util_b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *util_base64_encode(const unsigned char *in, size_t len)
{
    size_t outlen = (len + 2) / 3 * 4;
    char *out = xmalloc(outlen + 1);
    size_t o = 0, i = 0;

    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = util_b64[v >> 18 & 63];
        out[o++] = util_b64[v >> 12 & 63];
        out[o++] = util_b64[v >> 6 & 63];
        out[o++] = util_b64[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        out[o++] = util_b64[v >> 18 & 63];
        out[o++] = util_b64[v >> 12 & 63];
        out[o++] = i + 1 < len ? util_b64[v >> 6 & 63] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
    return out;
}

static int util_b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/*
 * Strict: length a multiple of 4, padding only at the end, no white space,
 * and the unused bits of the last symbol zero (so each value has one
 * spelling). Decoded bytes may be secret (client keys); on failure the
 * partial output is zeroed before it is freed.
 */
unsigned char *util_base64_decode(const char *in, size_t len, size_t *out_len)
{
    unsigned char *out;
    size_t o = 0, pad = 0;

    if (len % 4)
        return NULL;
    if (len >= 1 && in[len - 1] == '=')
        pad++;
    if (len >= 2 && in[len - 2] == '=')
        pad++;
    out = xmalloc(len / 4 * 3 + 1);
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        bool last = i + 4 == len;
        for (int k = 0; k < 4; k++) {
            if (last && in[i + k] == '=' && k >= 4 - (int)pad) {
                v[k] = 0;
                continue;
            }
            v[k] = util_b64_value(in[i + k]);
            if (v[k] < 0)
                goto fail;
        }
        uint32_t w =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        out[o++] = (unsigned char)(w >> 16);
        if (!last || pad < 2)
            out[o++] = (unsigned char)(w >> 8);
        else if (w & 0xffff)
            goto fail;
        if (!last || pad < 1)
            out[o++] = (unsigned char)w;
        else if (w & 0xff)
            goto fail;
    }
    out[o] = '\0';
    *out_len = o;
    return out;
fail:
    util_secure_zero(out, len / 4 * 3 + 1);
    free(out);
    return NULL;
}

bool util_consttime_eq(const void *a, size_t alen, const void *b, size_t blen)
{
    if (alen != blen)
        return false;
    if (alen == 0)
        return true;
    return CRYPTO_memcmp(a, b, alen) == 0;
}

/* ---- files ---- */

char *util_dirname(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return xstrdup(".");
    if (slash == path)
        return xstrdup("/");
    return xstrndup(path, (size_t)(slash - path));
}

enum util_read_status util_read_file(const char *path, size_t max, char **data, size_t *len,
                                     unsigned *mode, int *errnum)
{
    struct stat st;
    char *buf;
    size_t n = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    enum util_read_status rc = UTIL_READ_FAILED;

    *data = NULL;
    *len = 0;
    *errnum = 0;
    if (fd < 0) {
        *errnum = errno;
        return errno == ENOENT ? UTIL_READ_MISSING : UTIL_READ_FAILED;
    }
    if (fstat(fd, &st) != 0) {
        *errnum = errno;
        close(fd);
        return UTIL_READ_FAILED;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return UTIL_READ_NOT_REGULAR;
    }
    if (mode)
        *mode = (unsigned)(st.st_mode & 07777);
    if ((uint64_t)st.st_size > max) {
        close(fd);
        return UTIL_READ_TOO_LARGE;
    }
    /* One byte more than max: a file that grew since fstat is still caught. */
    buf = xmalloc(max + 2);
    for (;;) {
        ssize_t r = read(fd, buf + n, max + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            *errnum = errno;
            goto fail;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n > max) {
            rc = UTIL_READ_TOO_LARGE;
            goto fail;
        }
    }
    close(fd);
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return UTIL_READ_OK;
fail:
    util_secure_zero(buf, max + 2);
    free(buf);
    close(fd);
    return rc;
}

enum util_mode_verdict util_secret_mode_check(unsigned mode, enum util_secret_kind kind)
{
    if (!(mode & 077))
        return UTIL_MODE_OK;
    return kind == UTIL_SECRET_OWN ? UTIL_MODE_REFUSE : UTIL_MODE_WARN;
}

int util_write_atomic(const char *path, const void *data, size_t len, mode_t mode, char **err)
{
    char *tmp = NULL, *dir = NULL;
    const char *p = data;
    size_t left = len;
    int fd = -1, dfd, rc = -1;

    dir = util_dirname(path);
    {
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        tmp = xasprintf("%s/.%s.tmp.XXXXXX", dir, base);
    }
    fd = mkostemp(tmp, O_CLOEXEC); /* O_CREAT|O_EXCL, mode 0600 from the start */
    if (fd < 0) {
        *err = xasprintf("cannot create a file in %s: %s", dir, strerror(errno));
        goto out;
    }
    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            *err = xasprintf("cannot write %s: %s", tmp, strerror(errno));
            goto out_unlink;
        }
        p += n;
        left -= (size_t)n;
    }
    if (fchmod(fd, mode) != 0 || fsync(fd) != 0) {
        *err = xasprintf("cannot write %s: %s", tmp, strerror(errno));
        goto out_unlink;
    }
    if (close(fd) != 0) {
        fd = -1;
        *err = xasprintf("cannot write %s: %s", tmp, strerror(errno));
        goto out_unlink;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        *err = xasprintf("cannot replace %s: %s", path, strerror(errno));
        goto out_unlink;
    }
    /* Make the rename itself durable; a failure here is not worth failing for. */
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    rc = 0;
    goto out;
out_unlink:
    unlink(tmp);
out:
    if (fd >= 0)
        close(fd);
    free(tmp);
    free(dir);
    return rc;
}
