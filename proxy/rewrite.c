/*
 * rewrite: streaming origin replacement for gateway mode. See rewrite.h.
 *
 * The matcher decides, at each position that starts with the scheme's first
 * letter, between "no match", "match pattern k" and "need more bytes". The
 * decision only ever depends on the bytes from that position up to one past
 * the longest pattern (or the end of the body), so holding back undecided
 * tails and rescanning them with the next feed gives exactly the one-shot
 * result whatever the split.
 */
#include "rewrite.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Unescaped and escaped-slash forms, each with and without the default port. */
#define REWRITE_MAX_PATTERNS 8 /* 4 per source; at most two sources */
/* Work buffer: held bytes (< one pattern) plus room for a pattern and its boundary. */
#define REWRITE_BUF_CAP (2 * (REWRITE_MAX_PATTERN + 1))
/* TO with every '/' escaped: at most twice as long. */
#define REWRITE_MAX_REPL (2 * REWRITE_MAX_ORIGIN)

struct rewrite_pattern {
    char text[REWRITE_MAX_PATTERN + 1]; /* lowercase */
    size_t len;
    bool escaped; /* the JSON "\/" form */
};

struct rewrite {
    struct rewrite_pattern pat[REWRITE_MAX_PATTERNS];
    size_t npat;
    size_t max_pat;
    char first; /* lowercase first byte of every pattern */
    char to[REWRITE_MAX_ORIGIN + 1];
    size_t to_len;
    char to_esc[REWRITE_MAX_REPL + 1];
    size_t to_esc_len;
    char buf[REWRITE_BUF_CAP]; /* held bytes live at buf[0..held) */
    size_t held;
};

enum rewrite_verdict { REWRITE_NO = 0, REWRITE_MATCH, REWRITE_MORE };

static char rewrite_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool rewrite_is_body_boundary(char c)
{
    return c == '/' || c == '"' || c == '?' || c == '#' || c == '\\';
}

static bool rewrite_is_location_boundary(char c)
{
    return c == '/' || c == '?' || c == '#';
}

/* Printable ASCII that is safe inside a JSON string and a header. */
static bool rewrite_origin_char_ok(char c)
{
    unsigned char u = (unsigned char)c;
    return u > 0x20 && u < 0x7f && c != '"' && c != '\\';
}

/* Append s to p->text at *n, cut at the pattern's capacity (a gateway response builds these). */
static void rewrite_put(struct rewrite_pattern *p, size_t *n, const char *s)
{
    size_t len = strlen(s);
    if (len > sizeof(p->text) - 1 - *n)
        len = sizeof(p->text) - 1 - *n;
    memcpy(p->text + *n, s, len);
    *n += len;
}

static void rewrite_add_pattern(struct rewrite *rw, const char *scheme, const char *hostpart,
                                const char *port, bool escaped, const char *path)
{
    struct rewrite_pattern *p = &rw->pat[rw->npat++];
    size_t n = 0;

    rewrite_put(p, &n, scheme);
    rewrite_put(p, &n, escaped ? ":\\/\\/" : "://");
    rewrite_put(p, &n, hostpart);
    if (port) {
        rewrite_put(p, &n, ":");
        rewrite_put(p, &n, port);
    }
    /* A path prefix (checked by the caller to fit): its slashes escaped in the JSON form. */
    for (const char *c = path ? path : ""; *c && n + 2 < sizeof(p->text); c++) {
        if (*c == '/' && escaped)
            p->text[n++] = '\\';
        p->text[n++] = rewrite_lower(*c);
    }
    p->text[n] = '\0';
    p->len = n;
    p->escaped = escaped;
    if (p->len > rw->max_pat)
        rw->max_pat = p->len;
}

/*
 * Parse from_origin into the patterns. Borrowed input; fills rw. 0 or -1.
 */
static int rewrite_parse_from(struct rewrite *rw, const char *from, const char *path)
{
    char lower[REWRITE_MAX_ORIGIN + 1];
    char hostpart[REWRITE_MAX_ORIGIN + 1];
    char portbuf[8];
    const char *scheme, *auth, *colon = NULL, *defport;
    size_t n = strlen(from), alen;
    long port = 0;

    if (n > 0 && from[n - 1] == '/')
        n--;
    if (n == 0 || n > REWRITE_MAX_ORIGIN)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (!rewrite_origin_char_ok(from[i]))
            return -1;
        lower[i] = rewrite_lower(from[i]);
    }
    lower[n] = '\0';
    if (strncmp(lower, "https://", 8) == 0) {
        scheme = "https";
        defport = "443";
        auth = lower + 8;
    } else if (strncmp(lower, "http://", 7) == 0) {
        scheme = "http";
        defport = "80";
        auth = lower + 7;
    } else {
        return -1;
    }
    alen = strlen(auth);
    if (alen == 0 || strpbrk(auth, "/?#@"))
        return -1;
    if (auth[0] == '[') {
        const char *close = strchr(auth, ']');
        if (!close || close == auth + 1)
            return -1;
        if (close[1] == ':')
            colon = close + 1;
        else if (close[1] != '\0')
            return -1;
    } else {
        colon = strchr(auth, ':');
        if (colon && strchr(colon + 1, ':'))
            return -1;
    }
    if (colon) {
        const char *d = colon + 1;
        if (!*d || *d == '0' || strlen(d) > 5)
            return -1;
        for (; *d; d++) {
            if (*d < '0' || *d > '9')
                return -1;
            port = port * 10 + (*d - '0');
        }
        if (port < 1 || port > 65535)
            return -1;
    }
    alen = colon ? (size_t)(colon - auth) : alen;
    if (alen == 0)
        return -1;
    memcpy(hostpart, auth, alen);
    hostpart[alen] = '\0';

    if (colon && strcmp(colon + 1, defport) != 0) {
        snprintf(portbuf, sizeof(portbuf), "%ld", port);
        rewrite_add_pattern(rw, scheme, hostpart, portbuf, false, path);
        rewrite_add_pattern(rw, scheme, hostpart, portbuf, true, path);
    } else {
        rewrite_add_pattern(rw, scheme, hostpart, NULL, false, path);
        rewrite_add_pattern(rw, scheme, hostpart, defport, false, path);
        rewrite_add_pattern(rw, scheme, hostpart, NULL, true, path);
        rewrite_add_pattern(rw, scheme, hostpart, defport, true, path);
    }
    rw->first = rw->pat[0].text[0];
    return 0;
}

/* Length of to without one trailing '/', or 0 when it is not a usable origin. */
static size_t rewrite_to_len(const char *to)
{
    size_t n = strlen(to);

    if (n > 0 && to[n - 1] == '/')
        n--;
    if (n == 0 || n > REWRITE_MAX_ORIGIN)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (!rewrite_origin_char_ok(to[i]))
            return 0;
    }
    return n;
}

bool rewrite_to_origin_ok(const char *to_origin)
{
    return to_origin && rewrite_to_len(to_origin) > 0;
}

static int rewrite_parse_to(struct rewrite *rw, const char *to)
{
    size_t n = rewrite_to_len(to), o = 0;

    if (n == 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        rw->to[i] = to[i];
        if (to[i] == '/')
            rw->to_esc[o++] = '\\';
        rw->to_esc[o++] = to[i];
    }
    rw->to[n] = '\0';
    rw->to_len = n;
    rw->to_esc[o] = '\0';
    rw->to_esc_len = o;
    return 0;
}

struct rewrite *rewrite_new(const char *from_origin, const char *to_origin)
{
    struct rewrite *rw;

    if (!from_origin || !to_origin)
        return NULL;
    /* Not zeroed (about 4 KiB, one per rewritten response): every field is set before use. */
    rw = xmalloc(sizeof(*rw));
    rw->npat = 0;
    rw->max_pat = 0;
    rw->held = 0;
    if (rewrite_parse_from(rw, from_origin, NULL) < 0 || rewrite_parse_to(rw, to_origin) < 0) {
        free(rw);
        return NULL;
    }
    return rw;
}

int rewrite_add_source(struct rewrite *rw, const char *from_origin, const char *path)
{
    size_t plen = path ? strlen(path) : 0;
    if (!rw || !from_origin || rw->npat + 4 > REWRITE_MAX_PATTERNS || plen == 0 || path[0] != '/' ||
        path[plen - 1] == '/' || strlen(from_origin) + 2 * plen + 8 > REWRITE_MAX_PATTERN)
        return -1;
    for (size_t i = 0; i < plen; i++) {
        if (!rewrite_origin_char_ok(path[i]) || path[i] == '?' || path[i] == '#')
            return -1;
    }
    size_t before = rw->npat;
    if (rewrite_parse_from(rw, from_origin, path) < 0) {
        rw->npat = before;
        return -1;
    }
    return 0;
}

void rewrite_free(struct rewrite *rw)
{
    free(rw);
}

size_t rewrite_held(const struct rewrite *rw)
{
    return rw ? rw->held : 0;
}

size_t rewrite_max_held(const struct rewrite *rw)
{
    return rw ? rw->max_pat : 0;
}

/*
 * Decide at p (avail bytes known; final: nothing follows them). On a match,
 * *which is the pattern (the longest matching one; the patterns are
 * mutually exclusive in practice since ':' and '\\' are no boundaries of the
 * shorter ones).
 */
static enum rewrite_verdict rewrite_try(const struct rewrite *rw, const char *p, size_t avail,
                                        bool final, bool body, size_t *which)
{
    bool more = false, matched = false;

    for (size_t k = 0; k < rw->npat; k++) {
        const struct rewrite_pattern *pt = &rw->pat[k];
        size_t m = avail < pt->len ? avail : pt->len;
        size_t i = 0;

        if (!body && pt->escaped)
            continue;
        while (i < m && rewrite_lower(p[i]) == pt->text[i])
            i++;
        if (i < m)
            continue;
        if (avail <= pt->len) {
            /* The pattern (or its boundary) runs past the data. */
            if (!final)
                more = true;
            else if (avail == pt->len && (!matched || pt->len > rw->pat[*which].len)) {
                matched = true;
                *which = k;
            }
            continue;
        }
        if (body ? rewrite_is_body_boundary(p[pt->len])
                 : rewrite_is_location_boundary(p[pt->len])) {
            if (!matched || pt->len > rw->pat[*which].len) {
                matched = true;
                *which = k;
            }
        }
    }
    if (more)
        return REWRITE_MORE;
    return matched ? REWRITE_MATCH : REWRITE_NO;
}

static int rewrite_emit(rewrite_emit_fn *emit, void *arg, const char *p, size_t n)
{
    return n == 0 ? 0 : emit(arg, p, n);
}

/* The next position at or after i whose byte is the patterns' first letter, either case. */
static size_t rewrite_next_start(const struct rewrite *rw, const char *buf, size_t i, size_t len)
{
    const char *lo = memchr(buf + i, rw->first, len - i);
    size_t end = lo ? (size_t)(lo - buf) : len;
    char upper = rw->first >= 'a' && rw->first <= 'z' ? (char)(rw->first - 'a' + 'A') : 0;
    const char *up = upper && end > i ? memchr(buf + i, upper, end - i) : NULL;
    return up ? (size_t)(up - buf) : end;
}

/*
 * Scan buf[0..len), emitting decided bytes. Stops at the first undecided
 * position (never when final); *used is how many input bytes were decided.
 * 0, or -1 when emit failed.
 */
static int rewrite_scan(struct rewrite *rw, const char *buf, size_t len, bool final,
                        rewrite_emit_fn *emit, void *arg, size_t *used)
{
    size_t i = 0, run = 0;

    while (i < len) {
        enum rewrite_verdict v;
        size_t k = 0;

        i = rewrite_next_start(rw, buf, i, len);
        if (i == len)
            break;
        v = rewrite_try(rw, buf + i, len - i, final, true, &k);
        if (v == REWRITE_NO) {
            i++;
            continue;
        }
        if (rewrite_emit(emit, arg, buf + run, i - run) < 0)
            return -1;
        if (v == REWRITE_MORE) {
            *used = i;
            return 0;
        }
        if (rw->pat[k].escaped) {
            if (rewrite_emit(emit, arg, rw->to_esc, rw->to_esc_len) < 0)
                return -1;
        } else if (rewrite_emit(emit, arg, rw->to, rw->to_len) < 0) {
            return -1;
        }
        i += rw->pat[k].len;
        run = i;
    }
    if (rewrite_emit(emit, arg, buf + run, len - run) < 0)
        return -1;
    *used = len;
    return 0;
}

int rewrite_feed(struct rewrite *rw, const char *in, size_t len, rewrite_emit_fn *emit, void *arg)
{
    size_t off = 0, used = 0, tail;

    if (!rw || !emit || (!in && len > 0))
        return -1;
    if (len == 0)
        return 0;
    /*
     * First settle the held bytes: scan them together with enough new bytes
     * to decide each held position. The held part is always shorter than
     * the longest pattern, so this settles in one or two rounds.
     */
    while (rw->held > 0 && off < len) {
        size_t old = rw->held;
        size_t n = len - off;
        size_t total;

        if (n > REWRITE_BUF_CAP - old)
            n = REWRITE_BUF_CAP - old;
        memcpy(rw->buf + old, in + off, n);
        total = old + n;
        if (rewrite_scan(rw, rw->buf, total, false, emit, arg, &used) < 0)
            return -1;
        if (used >= old) {
            /* Every held byte is decided; resume in the input proper. */
            off += used - old;
            rw->held = 0;
        } else {
            memmove(rw->buf, rw->buf + used, total - used);
            rw->held = total - used;
            off += n;
        }
    }
    if (rw->held > 0)
        return 0; /* all input went into the held bytes */

    if (rewrite_scan(rw, in + off, len - off, false, emit, arg, &used) < 0)
        return -1;
    tail = len - off - used;
    /* An undecided tail is shorter than the longest pattern plus boundary. */
    memcpy(rw->buf, in + off + used, tail);
    rw->held = tail;
    return 0;
}

int rewrite_finish(struct rewrite *rw, rewrite_emit_fn *emit, void *arg)
{
    size_t used = 0;
    size_t held;

    if (!rw || !emit)
        return -1;
    held = rw->held;
    rw->held = 0;
    return rewrite_scan(rw, rw->buf, held, true, emit, arg, &used);
}

char *rewrite_location(const char *value, const char *from_origin, const char *to_origin)
{
    struct rewrite *rw;
    enum rewrite_verdict v;
    size_t k = 0, len;
    char *out = NULL;

    if (!value)
        return NULL;
    rw = rewrite_new(from_origin, to_origin);
    if (!rw)
        return NULL;
    len = strlen(value);
    /* The whole value is known: final = true, so the end is a boundary. */
    v = rewrite_try(rw, value, len, true, false, &k);
    if (v == REWRITE_MATCH)
        out = xasprintf("%s%s", rw->to, value + rw->pat[k].len);
    rewrite_free(rw);
    return out;
}

char *rewrite_location_rw(const struct rewrite *rw, const char *value)
{
    size_t k = 0;
    if (!rw || !value)
        return NULL;
    if (rewrite_try(rw, value, strlen(value), true, false, &k) != REWRITE_MATCH)
        return NULL;
    return xasprintf("%s%s", rw->to, value + rw->pat[k].len);
}
