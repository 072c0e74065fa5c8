/*
 * log: leveled logging to stderr, text for people or JSON for collectors,
 * plus the per-request audit line.
 *
 * Layer 0. Never receives secret bytes: callers pass names, never tokens,
 * header values or keys. Each line is written with a single write(2) so
 * lines from several worker threads never interleave.
 */
#ifndef CREDPROXY_LOG_H
#define CREDPROXY_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };
enum log_format { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON };

/* Process-wide settings; set at start and on reload (atomic stores). */
void log_configure(enum log_format format, enum log_level level);
int log_level_parse(const char *s, enum log_level *out);
int log_format_parse(const char *s, enum log_format *out);

/*
 * Text: "2026-11-28T16:19:13.123Z warn  message"; JSON:
 * {"time":"…","level":"warn","msg":"message"}.
 */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
bool log_enabled(enum log_level level);

/* One audit record per proxied request (fields from the interface). */
struct log_audit {
    const char *client; /* client id, or the peer address when anonymous */
    const char *method;
    const char *host; /* the upstream host name the request targeted */
    const char *path; /* path only: the caller must have cut the query */
    int status;
    uint64_t bytes_in;  /* request body bytes from the client */
    uint64_t bytes_out; /* response body bytes to the client */
    int64_t total_ms;
    int64_t upstream_ms; /* -1 when no upstream exchange happened */
    int64_t ratelimit_wait_ms;
    const char *credential; /* credential name, or NULL when none was injected */
    const char *error;      /* proxy error code, or NULL */
    const char *mode;       /* "forward", "gateway", "intercept", "tunnel" */
    const char *op_class;   /* policy class ("read", "write", ...), or NULL when unclassified */
    const char *reason;     /* why an upstream failed ("DNS failure: ..."), or NULL; no secret */
};
/* Longest audit reason kept (the detail is cut there: one short field, not a message). */
#define LOG_MAX_AUDIT_REASON 160
/* Emits the audit line when audit is enabled. Strings are JSON-escaped in JSON mode. */
void log_audit_enable(bool on);
void log_audit(const struct log_audit *a);

/* Write s as a JSON string literal (with quotes) into buf; returns bytes needed. */
size_t log_json_escape(char *buf, size_t cap, const char *s);

#endif
