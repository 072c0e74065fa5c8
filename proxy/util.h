/*
 * util: allocation that aborts on out-of-memory, bounded number parsing,
 * durations and rates, monotonic time, secure zeroing, small strings.
 *
 * Layer 0: depends on nothing of ours. Never logs, never touches secrets
 * beyond zeroing the bytes it is handed.
 */
#ifndef CREDPROXY_UTIL_H
#define CREDPROXY_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h> /* free() for what x*alloc returns */

#define UTIL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Allocation: never return NULL; print "credproxy: out of memory" and abort. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* printf into a new string. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Zero memory in a way the compiler may not elide (OPENSSL_cleanse). */
void util_secure_zero(void *p, size_t n);
/* Zero a NUL-terminated string in place, then free it. NULL is a no-op. */
void util_free_secret(char *s);

/* Time. Monotonic milliseconds for intervals; wall clock seconds for expiry. */
int64_t util_now_ms(void);
int64_t util_wall_time(void);

/*
 * Parsing: each returns 0 and writes *out, or -1 when the text is not
 * exactly of the form (no trailing junk, no overflow, no negative).
 */
int util_parse_u64(const char *s, uint64_t max, uint64_t *out);
/* "500ms", "10s", "5m", "1h" (a bare "0" is 0) -> milliseconds. */
int util_parse_duration_ms(const char *s, int64_t *out_ms);
/* "N/s", "N/min", "N/h" -> tokens per second; "off" -> *off = true. */
int util_parse_rate(const char *s, double *per_second, bool *off);
/* "YYYY-MM-DD" -> seconds since the epoch at 00:00:00 UTC of that day. */
int util_parse_date(const char *s, int64_t *out_epoch);

/* ASCII helpers (locale-independent). */
bool util_strcaseeq(const char *a, const char *b);
bool util_memcaseeq(const char *a, const char *b, size_t n);

/* Standard base64 with padding; returns a new NUL-terminated string. */
char *util_base64_encode(const unsigned char *in, size_t len);
/* Decode; returns a new buffer (NUL-terminated for convenience) and its length, NULL when invalid.
 */
unsigned char *util_base64_decode(const char *in, size_t len, size_t *out_len);

/* Constant-time comparison for keys: true when equal (length leaks, content does not). */
bool util_consttime_eq(const void *a, size_t alen, const void *b, size_t blen);

#endif
