/*
 * log: see log.h. Settings are atomics so worker threads read them without a
 * lock; each line is built in a bounded stack buffer and written with one
 * write(2). Everything that came from outside (messages, audit fields) is
 * escaped so that a hostile path or host cannot start a new line, forge a
 * field or drive a terminal.
 */
#include "log.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* One line at most; longer ones are cut and end in LOG_TRUNCATED_MARK. */
#define LOG_MAX_LINE 8192
#define LOG_AUDIT_MAX_PATH 1024 /* bytes of a path kept in the audit line */
#define LOG_AUDIT_MAX_FIELD 160 /* client, host, method */
/* The formatted message before escaping. */
#define LOG_MAX_MSG 4096
#define LOG_TRUNCATED_MARK "...(truncated)"

static atomic_int log_cur_format = LOG_FORMAT_TEXT;
static atomic_int log_cur_level = LOG_INFO;
static atomic_bool log_cur_audit = true;
/*
 * A log reader that stops reading (a pipe nobody drains, a stuck collector)
 * must not stop the proxy: every worker writes its audit lines itself, and
 * a blocking write(2) on a full pipe would freeze the whole loop. Each line
 * waits at most LOG_WRITE_WAIT_MS for room; once one was dropped, lines are
 * dropped without waiting until the log takes one again, and then one line
 * says how many were lost. Process-wide like the settings above.
 */
#define LOG_WRITE_WAIT_MS 100
static atomic_ullong log_dropped;

static const char *const log_level_names[] = {"debug", "info", "warn", "error"};

void log_configure(enum log_format format, enum log_level level)
{
    atomic_store(&log_cur_format, (int)format);
    atomic_store(&log_cur_level, (int)level);
}

int log_level_parse(const char *s, enum log_level *out)
{
    for (int i = LOG_DEBUG; i <= LOG_ERROR; i++) {
        if (s && strcmp(s, log_level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

int log_format_parse(const char *s, enum log_format *out)
{
    if (s && strcmp(s, "text") == 0) {
        *out = LOG_FORMAT_TEXT;
        return 0;
    }
    if (s && strcmp(s, "json") == 0) {
        *out = LOG_FORMAT_JSON;
        return 0;
    }
    return -1;
}

bool log_enabled(enum log_level level)
{
    return (int)level >= atomic_load(&log_cur_level);
}

void log_audit_enable(bool on)
{
    atomic_store(&log_cur_audit, on);
}

/* A bounded line under construction; room is kept for the mark and '\n'. */
/*
 * Pieces (one escape, one UTF-8 character, one field name) are appended
 * whole or not at all, so a cut line never ends inside an escape sequence.
 * JSON lines remember where the last complete field ended (safe_len) and
 * whether the cut fell inside a string, so the closed line still parses.
 */
struct log_line {
    char buf[LOG_MAX_LINE];
    size_t len;
    size_t safe_len;
    bool truncated;
    bool in_string;
    bool cut_in_string;
};

/* Room kept for the longest closing tail and the newline. */
#define LOG_LINE_TAIL_ROOM 32
#define LOG_LINE_ROOM (LOG_MAX_LINE - LOG_LINE_TAIL_ROOM)

static void log_line_putn(struct log_line *l, const char *s, size_t n)
{
    if (l->truncated)
        return;
    if (l->len + n > LOG_LINE_ROOM) {
        l->truncated = true;
        l->cut_in_string = l->in_string;
        return;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void log_line_puts(struct log_line *l, const char *s)
{
    log_line_putn(l, s, strlen(s));
}

static void log_line_printf(struct log_line *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void log_line_printf(struct log_line *l, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0)
        log_line_putn(l, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* Length of a valid UTF-8 sequence at s (1..4) and its code point, or 0 when invalid. */
static size_t log_utf8_len(const unsigned char *s, unsigned *out_cp)
{
    unsigned c = s[0];
    size_t n;
    unsigned cp;

    if (c < 0x80) {
        *out_cp = c;
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    *out_cp = cp;
    return n;
}

/*
 * JSON string body (no quotes). Invalid UTF-8 bytes become \u00XX so the
 * line stays valid JSON; the original byte is still recoverable.
 */
static size_t log_json_piece(const unsigned char **p, char piece[8]);
static void log_line_json_body(struct log_line *l, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    char piece[8];

    while (*p && !l->truncated) {
        size_t n = log_json_piece(&p, piece);
        log_line_putn(l, piece, n);
    }
}

static void log_line_json_str(struct log_line *l, const char *s)
{
    if (!s) {
        log_line_puts(l, "null");
        return;
    }
    log_line_puts(l, "\"");
    if (l->truncated)
        return;
    l->in_string = true;
    log_line_json_body(l, s);
    l->in_string = false;
    log_line_puts(l, "\"");
}

/*
 * Text body: control bytes, DEL and every byte >= 0x80 become \n, \r, \t or
 * \xNN so nothing can end the line or reach a terminal raw. When quoted is
 * set, '"' and '\\' are escaped too (the value sits inside quotes).
 */
static void log_line_text_body(struct log_line *l, const char *s, bool quoted)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned c = *p;
        char esc[8];

        if (c == '\n') {
            log_line_puts(l, "\\n");
        } else if (c == '\r') {
            log_line_puts(l, "\\r");
        } else if (c == '\t') {
            log_line_puts(l, "\\t");
        } else if (c < 0x20 || c >= 0x7f) {
            snprintf(esc, sizeof(esc), "\\x%02x", c);
            log_line_puts(l, esc);
        } else if (quoted && (c == '"' || c == '\\')) {
            esc[0] = '\\';
            esc[1] = (char)c;
            log_line_putn(l, esc, 2);
        } else {
            log_line_putn(l, (const char *)p, 1);
        }
    }
}

/* A key=value field value: bare when harmless, else quoted and escaped; NULL/"" -> "-". */
static void log_line_text_value(struct log_line *l, const char *s)
{
    bool bare = s && *s;

    if (!s || !*s) {
        log_line_puts(l, "-");
        return;
    }
    for (const unsigned char *p = (const unsigned char *)s; *p && bare; p++) {
        if (*p <= 0x20 || *p >= 0x7f || *p == '"' || *p == '\\' || *p == '=')
            bare = false;
    }
    if (strcmp(s, "-") == 0)
        bare = false; /* a literal "-" must not read as "absent" */
    if (bare) {
        log_line_puts(l, s);
        return;
    }
    log_line_puts(l, "\"");
    log_line_text_body(l, s, true);
    log_line_puts(l, "\"");
}

static void log_line_time(struct log_line *l)
{
    struct timespec ts;
    struct tm tm;
    char tmp[96]; /* large enough for any int fields, to keep -Wformat-truncation quiet */

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(tmp, sizeof(tmp), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (int)(ts.tv_nsec / 1000000));
    log_line_puts(l, tmp);
}

/* Opens a line: text "TIME level " or JSON {"time":…,"level":…,"msg": */
static void log_line_begin(struct log_line *l, bool json, enum log_level level)
{
    const char *name = log_level_names[level];

    l->len = 0;
    l->safe_len = 0;
    l->truncated = false;
    l->in_string = false;
    l->cut_in_string = false;
    if (json) {
        log_line_puts(l, "{\"time\":\"");
        log_line_time(l);
        log_line_puts(l, "\",\"level\":\"");
        log_line_puts(l, name);
        log_line_puts(l, "\"");
        l->safe_len = l->len;
        log_line_puts(l, ",\"msg\":");
    } else {
        char lvl[8];
        log_line_time(l);
        snprintf(lvl, sizeof(lvl), " %-5s ", name);
        log_line_puts(l, lvl);
    }
}

/*
 * Closes and writes the line. A cut JSON line still parses: a cut string is
 * closed, otherwise the line falls back to its last complete field, and the
 * object ends with "truncated":true.
 */
static void log_line_emit(struct log_line *l, bool json)
{
    size_t off = 0;

    if (l->truncated) {
        const char *tail;
        if (!json) {
            tail = LOG_TRUNCATED_MARK;
        } else if (l->cut_in_string) {
            tail = "\",\"truncated\":true}";
        } else {
            l->len = l->safe_len;
            tail = ",\"truncated\":true}";
        }
        memcpy(l->buf + l->len, tail, strlen(tail));
        l->len += strlen(tail);
    }
    l->buf[l->len++] = '\n';
    /*
     * Room for the line: a pipe that polls writable has a free page, so a
     * line of up to PIPE_BUF goes in without blocking (longer ones rarely
     * happen and may still wait for the rest).
     */
    struct pollfd pfd = {.fd = STDERR_FILENO, .events = POLLOUT};
    int ready;
    do {
        ready = poll(&pfd, 1, atomic_load(&log_dropped) > 0 ? 0 : LOG_WRITE_WAIT_MS);
    } while (ready < 0 && errno == EINTR);
    if (ready == 0) {
        atomic_fetch_add(&log_dropped, 1);
        return;
    }
    while (off < l->len) {
        ssize_t n = write(STDERR_FILENO, l->buf + off, l->len - off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            atomic_fetch_add(&log_dropped, 1); /* a full disk: nowhere to report it */
            return;
        }
        off += (size_t)n;
    }
    unsigned long long lost = atomic_exchange(&log_dropped, 0);
    if (lost > 0)
        log_msg(LOG_WARN, "%llu log lines were dropped: stderr was not writable", lost);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    struct log_line line;
    char msg[LOG_MAX_MSG];
    bool json;
    va_list ap;

    if ((int)level < LOG_DEBUG || (int)level > LOG_ERROR)
        level = LOG_ERROR;
    if (!log_enabled(level))
        return;
    json = atomic_load(&log_cur_format) == LOG_FORMAT_JSON;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    log_line_begin(&line, json, level);
    if (json) {
        log_line_puts(&line, "\"");
        line.in_string = true;
        log_line_json_body(&line, msg);
    } else {
        log_line_text_body(&line, msg, false);
    }
    if (n >= (int)sizeof(msg) && !line.truncated) {
        /* the message itself was longer than LOG_MAX_MSG: say so */
        line.truncated = true;
        line.cut_in_string = line.in_string;
    }
    if (json) {
        line.in_string = false;
        log_line_puts(&line, "\"}");
    }
    log_line_emit(&line, json);
}

static void log_audit_text_num(struct log_line *l, const char *key, int64_t v)
{
    if (v < 0)
        log_line_printf(l, " %s=-", key);
    else
        log_line_printf(l, " %s=%lld", key, (long long)v);
}

static void log_audit_json_num(struct log_line *l, const char *key, int64_t v)
{
    if (!l->truncated)
        l->safe_len = l->len;
    if (v < 0)
        log_line_printf(l, ",\"%s\":null", key);
    else
        log_line_printf(l, ",\"%s\":%lld", key, (long long)v);
}

static void log_audit_json_field(struct log_line *l, const char *key, const char *v)
{
    if (!l->truncated)
        l->safe_len = l->len;
    log_line_printf(l, ",\"%s\":", key);
    log_line_json_str(l, v);
}

/*
 * The audit line is written whenever audit is on, whatever the level: it is
 * a record of what was sent with whose credential, not a diagnostic.
 */
/*
 * Copy v into buf cut to fit cap, marking a cut with "...": every field of
 * the audit line must fit in one line even when a client sends a 60 KiB path
 * (escaping can grow a byte fourfold, so the caps below keep the worst case
 * well under LOG_MAX_LINE).
 */
static const char *log_audit_clip(const char *v, char *buf, size_t cap)
{
    size_t len;

    if (!v)
        return NULL;
    len = strlen(v);
    if (len < cap)
        return v;
    memcpy(buf, v, cap - 4);
    memcpy(buf + cap - 4, "...", 4);
    return buf;
}

void log_audit(const struct log_audit *a)
{
    struct log_line line;
    struct log_audit c;
    char path[LOG_AUDIT_MAX_PATH], host[LOG_AUDIT_MAX_FIELD], client[LOG_AUDIT_MAX_FIELD],
        method[LOG_AUDIT_MAX_FIELD];
    bool json;

    if (!a || !atomic_load(&log_cur_audit))
        return;
    c = *a;
    c.path = log_audit_clip(a->path, path, sizeof(path));
    c.host = log_audit_clip(a->host, host, sizeof(host));
    c.client = log_audit_clip(a->client, client, sizeof(client));
    c.method = log_audit_clip(a->method, method, sizeof(method));
    a = &c;
    json = atomic_load(&log_cur_format) == LOG_FORMAT_JSON;
    log_line_begin(&line, json, LOG_INFO);
    if (json) {
        log_line_puts(&line, "\"audit\"");
        log_audit_json_field(&line, "client", a->client);
        log_audit_json_field(&line, "method", a->method);
        log_audit_json_field(&line, "host", a->host);
        log_audit_json_field(&line, "path", a->path);
        log_audit_json_num(&line, "status", a->status);
        log_audit_json_num(&line, "in", (int64_t)a->bytes_in);
        log_audit_json_num(&line, "out", (int64_t)a->bytes_out);
        log_audit_json_num(&line, "ms", a->total_ms);
        log_audit_json_num(&line, "upstream_ms", a->upstream_ms);
        log_audit_json_num(&line, "wait_ms", a->ratelimit_wait_ms);
        log_audit_json_field(&line, "credential", a->credential);
        log_audit_json_field(&line, "error", a->error);
        log_audit_json_field(&line, "mode", a->mode);
        log_audit_json_field(&line, "class", a->op_class);
        if (a->reason)
            log_audit_json_field(&line, "reason", a->reason);
        log_line_puts(&line, "}");
    } else {
        log_line_puts(&line, "audit client=");
        log_line_text_value(&line, a->client);
        log_line_puts(&line, " method=");
        log_line_text_value(&line, a->method);
        log_line_puts(&line, " host=");
        log_line_text_value(&line, a->host);
        log_line_puts(&line, " path=");
        log_line_text_value(&line, a->path);
        log_line_printf(&line, " status=%d", a->status);
        log_line_printf(&line, " in=%llu", (unsigned long long)a->bytes_in);
        log_line_printf(&line, " out=%llu", (unsigned long long)a->bytes_out);
        log_audit_text_num(&line, "ms", a->total_ms);
        log_audit_text_num(&line, "upstream_ms", a->upstream_ms);
        log_audit_text_num(&line, "wait_ms", a->ratelimit_wait_ms);
        log_line_puts(&line, " credential=");
        log_line_text_value(&line, a->credential);
        log_line_puts(&line, " error=");
        log_line_text_value(&line, a->error);
        log_line_puts(&line, " mode=");
        log_line_text_value(&line, a->mode);
        log_line_puts(&line, " class=");
        log_line_text_value(&line, a->op_class);
        if (a->reason) {
            log_line_puts(&line, " reason=");
            log_line_text_value(&line, a->reason);
        }
    }
    log_line_emit(&line, json);
}

/* The escaped form of the character at *p: writes it to piece, returns its length, advances *p. */
static size_t log_json_piece(const unsigned char **p, char piece[8])
{
    unsigned c = **p;
    size_t n;

    switch (c) {
    case '"':
    case '\\':
        piece[0] = '\\';
        piece[1] = (char)c;
        (*p)++;
        return 2;
    case '\n':
        memcpy(piece, "\\n", 2);
        (*p)++;
        return 2;
    case '\r':
        memcpy(piece, "\\r", 2);
        (*p)++;
        return 2;
    case '\t':
        memcpy(piece, "\\t", 2);
        (*p)++;
        return 2;
    default:
        break;
    }
    unsigned cp = c;
    n = log_utf8_len(*p, &cp);
    if (n == 0) {
        /* an invalid byte: \u00XX keeps the line valid JSON and the byte recoverable */
        snprintf(piece, 8, "\\u%04x", c);
        (*p)++;
        return 6;
    }
    /* controls, DEL, C1 controls and the Unicode line separators are escaped */
    if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029) {
        snprintf(piece, 8, "\\u%04x", cp);
        *p += n;
        return 6;
    }
    memcpy(piece, *p, n);
    *p += n;
    return n;
}

static void log_json_escape_put(char *buf, size_t cap, size_t *used, bool *full, const char *piece,
                                size_t n)
{
    if (!*full && *used + n < cap) {
        memcpy(buf + *used, piece, n);
        *used += n;
    } else {
        *full = true;
    }
}

size_t log_json_escape(char *buf, size_t cap, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t need = 2, used = 0;
    bool full = cap == 0;
    char piece[8];

    if (!s) {
        if (cap > 0)
            snprintf(buf, cap, "null");
        return 4;
    }
    /* Whole pieces only: a short buffer never ends inside an escape. */
    log_json_escape_put(buf, cap, &used, &full, "\"", 1);
    while (*p) {
        size_t n = log_json_piece(&p, piece);
        log_json_escape_put(buf, cap, &used, &full, piece, n);
        need += n;
    }
    log_json_escape_put(buf, cap, &used, &full, "\"", 1);
    if (cap > 0)
        buf[used] = '\0';
    return need;
}
