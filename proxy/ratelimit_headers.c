/*
 * ratelimit_headers: see ratelimit_headers.h. Pure; every date is converted
 * with the civil-from-days arithmetic below (no timegm, no locale, no TZ).
 */
#include "ratelimit_headers.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

static int64_t rl_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int rl_month(const char *s)
{
    static const char *const names[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    for (int i = 0; i < 12; i++) {
        if (util_memcaseeq(s, names[i], 3))
            return i + 1;
    }
    return 0;
}

static int rl_check_fields(int64_t y, int mon, int d, int h, int mi, int sec)
{
    static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

    if (y < 1970 || y > 9999 || mon < 1 || mon > 12 || d < 1 || h < 0 || h > 23 || mi < 0 ||
        mi > 59 || sec < 0 || sec > 60)
        return -1;
    /* A day the month does not have ("31 Feb") is no date. */
    if (d > mdays[mon - 1] || (mon == 2 && d == 29 && !leap))
        return -1;
    return 0;
}

static int64_t rl_epoch_ms(int64_t y, int mon, int d, int h, int mi, int sec)
{
    return ((rl_days_from_civil(y, (unsigned)mon, (unsigned)d) * 86400) + h * 3600 + mi * 60 +
            sec) *
           1000;
}

static int rl_delay_from(int64_t at_ms, int64_t wall_ms, int64_t *delay_ms)
{
    int64_t d = at_ms - wall_ms;
    if (d < 0)
        d = 0;
    if (d > RL_MAX_PAUSE_MS)
        d = RL_MAX_PAUSE_MS;
    *delay_ms = d;
    return 0;
}

/* All digits, exactly n of them. */
static bool rl_digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* A tiny bounded scanner for HTTP-dates (no sscanf on what an upstream sent). */
static bool rl_take_alpha(const char **p, char *out, size_t min, size_t max)
{
    size_t n = 0;
    while (isalpha((unsigned char)(*p)[n]) && n < max)
        n++;
    if (n < min || isalpha((unsigned char)(*p)[n]))
        return false;
    memcpy(out, *p, n);
    out[n] = '\0';
    *p += n;
    return true;
}

static bool rl_take_num(const char **p, int min_digits, int max_digits, int *out)
{
    int n = 0, v = 0;
    while (isdigit((unsigned char)(*p)[n]) && n < max_digits) {
        v = v * 10 + ((*p)[n] - '0');
        n++;
    }
    if (n < min_digits || isdigit((unsigned char)(*p)[n]))
        return false;
    *p += n;
    *out = v;
    return true;
}

static bool rl_take_lit(const char **p, const char *lit)
{
    size_t n = strlen(lit);
    if (strncmp(*p, lit, n) != 0)
        return false;
    *p += n;
    return true;
}

/* "HH:MM:SS" */
static bool rl_take_clock(const char **p, int *h, int *mi, int *sec)
{
    return rl_take_num(p, 2, 2, h) && rl_take_lit(p, ":") && rl_take_num(p, 2, 2, mi) &&
           rl_take_lit(p, ":") && rl_take_num(p, 2, 2, sec);
}

/*
 * The three forms RFC 9110 5.6.7 asks recipients to accept:
 * IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT", RFC 850
 * "Sunday, 06-Nov-94 08:49:37 GMT" and asctime "Sun Nov  6 08:49:37 1994".
 */
static int rl_parse_http_date(const char *s, int64_t *at_ms)
{
    char wd[16], mon[4];
    int d = 0, y = 0, h = 0, mi = 0, sec = 0;
    const char *p = s;

    if (!rl_take_alpha(&p, wd, 3, 9))
        return -1;
    if (rl_take_lit(&p, ", ")) {
        if (strlen(wd) == 3) {
            if (!(rl_take_num(&p, 2, 2, &d) && rl_take_lit(&p, " ") &&
                  rl_take_alpha(&p, mon, 3, 3) && rl_take_lit(&p, " ") &&
                  rl_take_num(&p, 4, 4, &y) && rl_take_lit(&p, " ")))
                return -1;
        } else {
            if (!(rl_take_num(&p, 2, 2, &d) && rl_take_lit(&p, "-") &&
                  rl_take_alpha(&p, mon, 3, 3) && rl_take_lit(&p, "-") &&
                  rl_take_num(&p, 2, 2, &y) && rl_take_lit(&p, " ")))
                return -1;
            y += y < 70 ? 2000 : 1900;
        }
        if (!(rl_take_clock(&p, &h, &mi, &sec) && rl_take_lit(&p, " GMT") && *p == '\0'))
            return -1;
    } else {
        if (strlen(wd) != 3 || !rl_take_lit(&p, " ") || !rl_take_alpha(&p, mon, 3, 3) ||
            !rl_take_lit(&p, " "))
            return -1;
        if (*p == ' ')
            p++; /* a one-digit day is padded with a space */
        if (!(rl_take_num(&p, 1, 2, &d) && rl_take_lit(&p, " ") &&
              rl_take_clock(&p, &h, &mi, &sec) && rl_take_lit(&p, " ") &&
              rl_take_num(&p, 4, 4, &y) && *p == '\0'))
            return -1;
    }
    int m = rl_month(mon);
    if (!m || rl_check_fields(y, m, d, h, mi, sec) < 0)
        return -1;
    *at_ms = rl_epoch_ms(y, m, d, h, mi, sec);
    return 0;
}

int rl_parse_retry_after(const char *v, int64_t wall_ms, int64_t *delay_ms)
{
    if (!v)
        return -1;
    while (*v == ' ' || *v == '\t')
        v++;
    size_t len = strlen(v);
    while (len && (v[len - 1] == ' ' || v[len - 1] == '\t'))
        len--;
    if (len == 0 || len > 64)
        return -1;
    char buf[65];
    memcpy(buf, v, len);
    buf[len] = '\0';
    if (isdigit((unsigned char)buf[0])) {
        uint64_t secs;
        if (util_parse_u64(buf, UINT64_MAX, &secs) < 0)
            return -1;
        if (secs > RL_MAX_PAUSE_MS / 1000)
            secs = RL_MAX_PAUSE_MS / 1000;
        *delay_ms = (int64_t)secs * 1000;
        return 0;
    }
    int64_t at;
    if (rl_parse_http_date(buf, &at) < 0)
        return -1;
    return rl_delay_from(at, wall_ms, delay_ms);
}

/*
 * X-RateLimit-Reset as a bare number (third parties report epoch seconds).
 * 0 when v is all digits (surrounding blanks allowed), -1 otherwise.
 */
static int rl_parse_number_reset(const char *v, int64_t wall_ms, int64_t *delay_ms)
{
    char buf[RL_MAX_HEADER_VALUE + 1];
    size_t len = strlen(v);
    uint64_t n;

    while (len && (v[len - 1] == ' ' || v[len - 1] == '\t'))
        len--;
    if (len == 0 || len > 20)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)v[i]))
            return -1;
    }
    memcpy(buf, v, len);
    buf[len] = '\0';
    if (util_parse_u64(buf, (uint64_t)INT64_MAX / 1000, &n) < 0) {
        /* Too large even for epoch ms: a date past the cap. */
        *delay_ms = RL_MAX_PAUSE_MS;
        return 0;
    }
    if ((int64_t)n >= RL_EPOCH_MS_MIN)
        return rl_delay_from((int64_t)n, wall_ms, delay_ms);
    if ((int64_t)n >= RL_EPOCH_SECONDS_MIN)
        return rl_delay_from((int64_t)n * 1000, wall_ms, delay_ms);
    return rl_delay_from(wall_ms + (int64_t)n * 1000, wall_ms, delay_ms);
}

int rl_parse_reset(const char *v, int64_t wall_ms, int64_t *delay_ms)
{
    int y, mon, d, h, mi, sec = 0, ms = 0;
    if (!v)
        return -1;
    while (*v == ' ' || *v == '\t')
        v++;
    if (rl_parse_number_reset(v, wall_ms, delay_ms) == 0)
        return 0;
    const char *p = v;
    if (!rl_digits(p, 4, &y) || p[4] != '-' || !rl_digits(p + 5, 2, &mon) || p[7] != '-' ||
        !rl_digits(p + 8, 2, &d) || (p[10] != 'T' && p[10] != 't' && p[10] != ' ') ||
        !rl_digits(p + 11, 2, &h) || p[13] != ':' || !rl_digits(p + 14, 2, &mi))
        return -1;
    p += 16;
    if (*p == ':') {
        if (!rl_digits(p + 1, 2, &sec))
            return -1;
        p += 3;
        if (*p == '.' || *p == ',') {
            p++;
            int digits = 0, frac = 0;
            while (isdigit((unsigned char)*p)) {
                if (digits < 3) {
                    frac = frac * 10 + (*p - '0');
                    digits++;
                }
                p++;
            }
            if (digits == 0)
                return -1;
            while (digits < 3) {
                frac *= 10;
                digits++;
            }
            ms = frac;
        }
    }
    int64_t offset_s = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om;
        int sign = *p == '-' ? -1 : 1;
        if (!rl_digits(p + 1, 2, &oh))
            return -1;
        p += 3;
        if (*p == ':')
            p++;
        if (!rl_digits(p, 2, &om))
            return -1;
        p += 2;
        if (oh > 23 || om > 59)
            return -1;
        offset_s = sign * (oh * 3600 + om * 60);
    }
    /* No zone: UTC, as every Atlassian sample is. */
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p != '\0' || rl_check_fields(y, mon, d, h, mi, sec) < 0)
        return -1;
    int64_t at = rl_epoch_ms(y, mon, d, h, mi, sec) + ms - offset_s * 1000;
    return rl_delay_from(at, wall_ms, delay_ms);
}

int64_t rl_signals_pause_ms(const struct rl_signals *s, int status, int64_t wall_ms)
{
    int64_t delay = -1;

    if (status != 429 && status != 503)
        return 0;
    /* Retry-After is the specific answer; the beta one and the window's end are fallbacks. */
    if (rl_parse_retry_after(s->retry_after, wall_ms, &delay) == 0 ||
        rl_parse_retry_after(s->beta_retry_after, wall_ms, &delay) == 0 ||
        rl_parse_reset(s->reset, wall_ms, &delay) == 0)
        return delay;
    return status == 429 ? RL_DEFAULT_UPSTREAM_PAUSE_MS : 0;
}

bool rl_parse_reason(const char *v, char *out, size_t cap)
{
    size_t n = 0;

    if (cap == 0)
        return false;
    out[0] = '\0';
    if (!v)
        return false;
    while (*v == ' ' || *v == '\t')
        v++;
    for (; *v && *v != ' ' && *v != '\t'; v++) {
        unsigned char ch = (unsigned char)tolower((unsigned char)*v);
        if (!(isalnum(ch) || ch == '-' || ch == '_' || ch == '.')) {
            out[0] = '\0';
            return false;
        }
        if (n < RL_MAX_REASON && n + 1 < cap)
            out[n++] = (char)ch;
    }
    while (*v == ' ' || *v == '\t')
        v++;
    if (*v != '\0' || n == 0) {
        out[0] = '\0';
        return false;
    }
    out[n] = '\0';
    return true;
}
