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
#include <sys/types.h>
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

/* Copy src into dst[cap], cut to fit and always terminated (cap > 0); src NULL copies "". */
void util_copy(char *dst, size_t cap, const char *src);

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

/* ---- files ---- */

enum util_read_status {
    UTIL_READ_OK = 0,
    UTIL_READ_MISSING,     /* no such file */
    UTIL_READ_FAILED,      /* open or read failed: *errnum says why */
    UTIL_READ_NOT_REGULAR, /* a directory, device, fifo... */
    UTIL_READ_TOO_LARGE,   /* more than max bytes */
};

/*
 * Read all of path, at most max bytes, into *data (NUL-terminated; caller
 * frees, with util_secure_zero first for secrets) and its length. *mode
 * gets the permission bits of the opened file (checked on the descriptor,
 * so no chmod can race it). The buffer of a failed read is wiped before it
 * is freed, as it may hold part of a secret. The one bounded file reader.
 */
enum util_read_status util_read_file(const char *path, size_t max, char **data, size_t *len,
                                     unsigned *mode, int *errnum);

/*
 * The permission policy for secret files, decided here for every kind:
 * - a key credproxy wrote itself (the interception CA key, created 0600)
 *   is refused when group or others may read it: someone loosened it;
 * - a secret the platform mounts (token_file, key_file and the like) is
 *   only warned about: container secret mounts are often 0444 and owned by
 *   root, and refusing them would break every such deployment.
 */
enum util_secret_kind { UTIL_SECRET_MOUNTED = 0, UTIL_SECRET_OWN };
enum util_mode_verdict { UTIL_MODE_OK = 0, UTIL_MODE_WARN, UTIL_MODE_REFUSE };
enum util_mode_verdict util_secret_mode_check(unsigned mode, enum util_secret_kind kind);

/*
 * Replace path with len bytes of data atomically (a temporary file in the
 * same directory, fsync, rename, fsync of the directory) with the given
 * mode. 0, or -1 with *err (caller frees).
 */
/* The directory part of path, as a new string: "a/b" -> "a", "/a" -> "/", "a" -> ".". */
char *util_dirname(const char *path);

int util_write_atomic(const char *path, const void *data, size_t len, mode_t mode, char **err);

#endif
