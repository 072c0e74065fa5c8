/*
 * test_util: the layer-0 parsers (tables of good and bad inputs), base64,
 * constant-time comparison, secure zeroing, and log output (captured from
 * stderr through a pipe) including hostile strings that try to forge lines.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "testlib.h"
#include "util.h"

static void test_parse_u64(void)
{
    static const struct {
        const char *in;
        uint64_t max;
        int rc;
        uint64_t want;
    } cases[] = {
        {"0", 10, 0, 0},
        {"10", 10, 0, 10},
        {"11", 10, -1, 0},
        {"65535", 65535, 0, 65535},
        {"18446744073709551615", UINT64_MAX, 0, UINT64_MAX},
        {"18446744073709551616", UINT64_MAX, -1, 0},
        {"99999999999999999999999", UINT64_MAX, -1, 0},
        {"", 10, -1, 0},
        {"-1", 10, -1, 0},
        {"+1", 10, -1, 0},
        {" 1", 10, -1, 0},
        {"1 ", 10, -1, 0},
        {"1x", 10, -1, 0},
        {"0x1", 10, -1, 0},
        {"1.0", 10, -1, 0},
    };
    for (size_t i = 0; i < UTIL_ARRAY_LEN(cases); i++) {
        uint64_t v = 12345;
        int rc = util_parse_u64(cases[i].in, cases[i].max, &v);
        CHECK_MSG(rc == cases[i].rc, "u64 '%s' rc=%d", cases[i].in, rc);
        if (rc == 0)
            CHECK_MSG(v == cases[i].want, "u64 '%s' v=%llu", cases[i].in, (unsigned long long)v);
    }
    CHECK(util_parse_u64(NULL, 10, &(uint64_t){0}) == -1);
}

static void test_parse_duration(void)
{
    static const struct {
        const char *in;
        int rc;
        int64_t want;
    } cases[] = {
        {"0", 0, 0},         {"500ms", 0, 500},   {"10s", 0, 10000},
        {"5m", 0, 300000},   {"5min", 0, 300000}, {"1h", 0, 3600000},
        {"0s", 0, 0},        {"1.5s", 0, 1500},   {"0.25s", 0, 250},
        {"300s", 0, 300000}, {"10", -1, 0},       {"", -1, 0},
        {"-1s", -1, 0},      {"s", -1, 0},        {"1.s", -1, 0},
        {".5s", -1, 0},      {"1.5ms", -1, 0},    {"10 s", -1, 0},
        {" 10s", -1, 0},     {"10s ", -1, 0},     {"10S", -1, 0},
        {"10d", -1, 0},      {"1hh", -1, 0},      {"99999999999999999999h", -1, 0},
        {"9999999h", -1, 0}, {"00", -1, 0},
    };
    for (size_t i = 0; i < UTIL_ARRAY_LEN(cases); i++) {
        int64_t v = -7;
        int rc = util_parse_duration_ms(cases[i].in, &v);
        CHECK_MSG(rc == cases[i].rc, "duration '%s' rc=%d", cases[i].in, rc);
        if (rc == 0)
            CHECK_MSG(v == cases[i].want, "duration '%s' v=%lld", cases[i].in, (long long)v);
    }
}

static void test_parse_rate(void)
{
    static const struct {
        const char *in;
        int rc;
        bool off;
        double want;
    } cases[] = {
        {"100/min", 0, false, 100.0 / 60},
        {"100/m", 0, false, 100.0 / 60},
        {"10/s", 0, false, 10},
        {"10/sec", 0, false, 10},
        {"3600/h", 0, false, 1},
        {"7200/hour", 0, false, 2},
        {"off", 0, true, 0},
        {"0/s", -1, false, 0},
        {"-1/s", -1, false, 0},
        {"10", -1, false, 0},
        {"10/", -1, false, 0},
        {"/s", -1, false, 0},
        {"10/d", -1, false, 0},
        {"10 /s", -1, false, 0},
        {"10/s ", -1, false, 0},
        {"1.5/s", -1, false, 0},
        {"OFF", -1, false, 0},
        {"", -1, false, 0},
        {"99999999999999999999/s", -1, false, 0},
    };
    for (size_t i = 0; i < UTIL_ARRAY_LEN(cases); i++) {
        double v = -1;
        bool off = !cases[i].off;
        int rc = util_parse_rate(cases[i].in, &v, &off);
        CHECK_MSG(rc == cases[i].rc, "rate '%s' rc=%d", cases[i].in, rc);
        if (rc == 0) {
            CHECK_MSG(off == cases[i].off, "rate '%s' off", cases[i].in);
            CHECK_MSG(fabs(v - cases[i].want) < 1e-9, "rate '%s' v=%f", cases[i].in, v);
        }
    }
}

static void test_parse_date(void)
{
    static const struct {
        const char *in;
        int rc;
        int64_t want;
    } cases[] = {
        {"1970-01-01", 0, 0},
        {"2000-03-01", 0, 951868800},
        {"2024-02-29", 0, 1709164800},
        {"2027-11-28", 0, 1827360000},
        {"2023-02-29", -1, 0},
        {"2100-02-29", -1, 0},
        {"2027-13-01", -1, 0},
        {"2027-00-01", -1, 0},
        {"2027-04-31", -1, 0},
        {"2027-4-01", -1, 0},
        {"2027/04/01", -1, 0},
        {"2027-04-01x", -1, 0},
        {"", -1, 0},
        {"1969-12-31", -1, 0},
    };
    for (size_t i = 0; i < UTIL_ARRAY_LEN(cases); i++) {
        int64_t v = -1;
        int rc = util_parse_date(cases[i].in, &v);
        CHECK_MSG(rc == cases[i].rc, "date '%s' rc=%d", cases[i].in, rc);
        if (rc == 0)
            CHECK_MSG(v == cases[i].want, "date '%s' v=%lld", cases[i].in, (long long)v);
    }
}

static void test_strings(void)
{
    CHECK(util_strcaseeq("Host", "hOST"));
    CHECK(!util_strcaseeq("Host", "Hosts"));
    CHECK(util_memcaseeq("ABC", "abd", 2));
    CHECK(!util_memcaseeq("ABC", "abd", 3));
    char *s = xasprintf("%s-%d", "a", 42);
    CHECK_STR(s, "a-42");
    free(s);
    s = xstrndup("abcdef", 3);
    CHECK_STR(s, "abc");
    free(s);
    /* util_copy: cut to fit, always terminated, NULL is "" */
    static const struct {
        const char *src;
        size_t cap;
        const char *want;
    } copies[] = {
        {"abc", 8, "abc"},
        {"abcdefgh", 8, "abcdefg"},
        {"abcdefg", 8, "abcdefg"},
        {"", 8, ""},
        {NULL, 8, ""},
        {"abc", 1, ""},
    };
    for (size_t i = 0; i < sizeof(copies) / sizeof(copies[0]); i++) {
        char buf[8];
        memset(buf, 'X', sizeof(buf));
        util_copy(buf, copies[i].cap, copies[i].src);
        CHECK_STR(buf, copies[i].want);
    }
}

static void test_base64(void)
{
    static const struct {
        const char *plain;
        const char *enc;
    } cases[] = {
        {"", ""},
        {"f", "Zg=="},
        {"fo", "Zm8="},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="},
        {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
        {"svc@example.com:tok", "c3ZjQGV4YW1wbGUuY29tOnRvaw=="},
    };
    for (size_t i = 0; i < UTIL_ARRAY_LEN(cases); i++) {
        char *e = util_base64_encode((const unsigned char *)cases[i].plain, strlen(cases[i].plain));
        CHECK_STR(e, cases[i].enc);
        size_t n = 99;
        unsigned char *d = util_base64_decode(cases[i].enc, strlen(cases[i].enc), &n);
        CHECK(d != NULL);
        if (d) {
            CHECK(n == strlen(cases[i].plain));
            CHECK(memcmp(d, cases[i].plain, n) == 0);
            CHECK(d[n] == '\0');
        }
        free(d);
        free(e);
    }
    /* binary round trip */
    unsigned char bin[256];
    for (int i = 0; i < 256; i++)
        bin[i] = (unsigned char)i;
    char *e = util_base64_encode(bin, sizeof(bin));
    size_t n = 0;
    unsigned char *d = util_base64_decode(e, strlen(e), &n);
    CHECK(d && n == sizeof(bin) && memcmp(d, bin, n) == 0);
    free(d);
    free(e);

    static const char *const bad[] = {"Zg=",  "Zg",   "Z===",     "====", "Zm9v!", "Zm 9",
                                      "Zh==", "Zm9=", "Zg==Zg==", "=Zm9", "Zm=v",  "\n"};
    for (size_t i = 0; i < UTIL_ARRAY_LEN(bad); i++) {
        size_t m = 0;
        unsigned char *x = util_base64_decode(bad[i], strlen(bad[i]), &m);
        CHECK_MSG(x == NULL, "base64 decode of '%s' should fail", bad[i]);
        free(x);
    }
}

static void test_consttime_and_zero(void)
{
    CHECK(util_consttime_eq("abc", 3, "abc", 3));
    CHECK(!util_consttime_eq("abc", 3, "abd", 3));
    CHECK(!util_consttime_eq("abc", 3, "abcd", 4));
    CHECK(util_consttime_eq("", 0, "", 0));
    CHECK(!util_consttime_eq("a", 1, "", 0));

    char buf[16];
    memcpy(buf, "secret-secret!!", 16);
    util_secure_zero(buf, sizeof(buf));
    int nonzero = 0;
    for (size_t i = 0; i < sizeof(buf); i++)
        nonzero |= buf[i];
    CHECK(nonzero == 0);
    util_secure_zero(NULL, 5); /* no crash */
    util_free_secret(NULL);
    util_free_secret(xstrdup("s3cret"));

    int64_t a = util_now_ms();
    int64_t b = util_now_ms();
    CHECK(a > 0 && b >= a);
    CHECK(util_wall_time() > 1700000000);
}

/* Captures what log functions write to stderr while fn runs. */
static char *capture_stderr(void (*fn)(void *), void *arg)
{
    int fds[2];
    if (pipe(fds) < 0)
        return xstrdup("");
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    dup2(fds[1], STDERR_FILENO);
    close(fds[1]);
    fn(arg);
    dup2(saved, STDERR_FILENO);
    close(saved);
    size_t cap = 65536, len = 0;
    char *out = xmalloc(cap + 1);
    ssize_t n;
    while ((n = read(fds[0], out + len, cap - len)) > 0)
        len += (size_t)n;
    close(fds[0]);
    out[len] = '\0';
    return out;
}

static int count_char(const char *s, char c)
{
    int n = 0;
    for (; *s; s++)
        n += *s == c;
    return n;
}

static void do_log_msg(void *arg)
{
    log_warn("path %s", (const char *)arg);
}

static void do_log_debug(void *arg)
{
    log_debug("hidden %s", (const char *)arg);
}

static void do_log_audit(void *arg)
{
    log_audit((const struct log_audit *)arg);
}

/* Minimal JSON well-formedness for one line: balanced quotes/escapes, no raw control bytes. */
static bool json_line_ok(const char *s)
{
    bool in_str = false;
    int depth = 0;
    size_t len = strlen(s);
    if (len < 2 || s[0] != '{' || s[len - 1] != '\n')
        return false;
    for (size_t i = 0; i < len - 1; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20)
            return false;
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '{') {
            depth++;
        } else if (c == '}') {
            depth--;
        }
    }
    return !in_str && depth == 0;
}

static void test_log(void)
{
    const char *hostile = "/x\n2026-01-01T00:00:00.000Z error forged\r\x1b[31m\"q\" \\ \xff end";

    log_configure(LOG_FORMAT_TEXT, LOG_INFO);
    char *out = capture_stderr(do_log_msg, (void *)hostile);
    CHECK(count_char(out, '\n') == 1);
    CHECK(strchr(out, '\r') == NULL);
    CHECK(strchr(out, '\x1b') == NULL);
    CHECK(strstr(out, "\\n2026-01-01") != NULL);
    CHECK(strstr(out, "\\x1b[31m") != NULL);
    CHECK(strstr(out, "\\xff") != NULL);
    CHECK(strlen(out) > 25 && out[4] == '-' && out[10] == 'T' && out[23] == 'Z');
    CHECK(strncmp(out + 24, " warn  path /x", 14) == 0);
    free(out);

    out = capture_stderr(do_log_debug, "x");
    CHECK_STR(out, "");
    free(out);
    CHECK(!log_enabled(LOG_DEBUG));
    CHECK(log_enabled(LOG_ERROR));

    log_configure(LOG_FORMAT_JSON, LOG_DEBUG);
    out = capture_stderr(do_log_msg, (void *)hostile);
    CHECK(count_char(out, '\n') == 1);
    CHECK(json_line_ok(out));
    CHECK(strstr(out, "\"level\":\"warn\",\"msg\":\"path /x\\n2026") != NULL);
    CHECK(strstr(out, "\\u001b[31m\\\"q\\\" \\\\ \\u00ff end\"}") != NULL);
    free(out);

    /* a very long message is cut but the JSON line still parses */
    char *big = xmalloc(20000);
    memset(big, '"', 19999);
    big[19999] = '\0';
    out = capture_stderr(do_log_msg, big);
    CHECK(count_char(out, '\n') == 1);
    CHECK(json_line_ok(out));
    CHECK(strstr(out, "\"truncated\":true}") != NULL);
    CHECK(strlen(out) <= 8192);
    free(out);
    log_configure(LOG_FORMAT_TEXT, LOG_INFO);
    out = capture_stderr(do_log_msg, big);
    CHECK(count_char(out, '\n') == 1);
    CHECK(strstr(out, "...(truncated)\n") != NULL);
    free(out);
    free(big);

    /* audit, text */
    struct log_audit a = {
        .client = "triage-bot",
        .method = "GET",
        .host = "acme.atlassian.net",
        .path = "/rest/api/3/myself",
        .status = 200,
        .bytes_in = 0,
        .bytes_out = 512,
        .total_ms = 12,
        .upstream_ms = 10,
        .ratelimit_wait_ms = 0,
        .credential = "svc",
        .error = NULL,
        .mode = "forward",
        .op_class = "read",
    };
    log_configure(LOG_FORMAT_TEXT, LOG_ERROR); /* audit ignores the level */
    out = capture_stderr(do_log_audit, &a);
    CHECK(strstr(out, " info  audit client=triage-bot method=GET host=acme.atlassian.net "
                      "path=/rest/api/3/myself status=200 in=0 out=512 ms=12 upstream_ms=10 "
                      "wait_ms=0 credential=svc error=- mode=forward class=read\n") != NULL);
    free(out);

    log_audit_enable(false);
    out = capture_stderr(do_log_audit, &a);
    CHECK_STR(out, "");
    free(out);
    log_audit_enable(true);

    /* hostile path cannot add fields or lines */
    a.path = "/a status=500 credential=evil\nfake audit line";
    a.upstream_ms = -1;
    a.credential = NULL;
    a.error = "rate_limited";
    a.op_class = NULL; /* unclassified (CONNECT, parse errors) */
    out = capture_stderr(do_log_audit, &a);
    CHECK(count_char(out, '\n') == 1);
    CHECK(strstr(out, "path=\"/a status=500 credential=evil\\nfake audit line\" status=200") !=
          NULL);
    CHECK(strstr(out, " upstream_ms=- ") != NULL);
    CHECK(strstr(out, " credential=- error=rate_limited ") != NULL);
    CHECK(strstr(out, " mode=forward class=-\n") != NULL);
    free(out);

    /* audit, json */
    log_configure(LOG_FORMAT_JSON, LOG_INFO);
    a.path = "/p\"q\n";
    out = capture_stderr(do_log_audit, &a);
    CHECK(count_char(out, '\n') == 1);
    CHECK(json_line_ok(out));
    CHECK(strstr(out, "\"level\":\"info\",\"msg\":\"audit\",\"client\":\"triage-bot\","
                      "\"method\":\"GET\",\"host\":\"acme.atlassian.net\",\"path\":\"/p\\\"q\\n\","
                      "\"status\":200,\"in\":0,\"out\":512,\"ms\":12,\"upstream_ms\":null,"
                      "\"wait_ms\":0,\"credential\":null,\"error\":\"rate_limited\","
                      "\"mode\":\"forward\",\"class\":null}\n") != NULL);
    free(out);
    log_configure(LOG_FORMAT_TEXT, LOG_INFO);

    /* parse helpers */
    enum log_level lv;
    enum log_format fm;
    CHECK(log_level_parse("warn", &lv) == 0 && lv == LOG_WARN);
    CHECK(log_level_parse("debug", &lv) == 0 && lv == LOG_DEBUG);
    CHECK(log_level_parse("WARN", &lv) == -1);
    CHECK(log_level_parse("warning", &lv) == -1);
    CHECK(log_format_parse("json", &fm) == 0 && fm == LOG_FORMAT_JSON);
    CHECK(log_format_parse("xml", &fm) == -1);

    /* log_json_escape */
    char buf[64];
    size_t need = log_json_escape(buf, sizeof(buf), "a\"b\\c\nd\x01");
    CHECK_STR(buf, "\"a\\\"b\\\\c\\nd\\u0001\"");
    CHECK(need == strlen(buf));
    need = log_json_escape(buf, 5, "a\nbcdef");
    CHECK(need == strlen("\"a\\nbcdef\""));
    CHECK_STR(buf, "\"a\\n"); /* whole escapes only */
    need = log_json_escape(buf, 4, "a\nb");
    CHECK_STR(buf, "\"a");
    CHECK(log_json_escape(NULL, 0, "abc") == 5);
    log_json_escape(buf, sizeof(buf), NULL);
    CHECK_STR(buf, "null");
    log_json_escape(buf, sizeof(buf), "h\xc3\xa9\xe2\x80\xa8");
    CHECK_STR(buf, "\"h\xc3\xa9\\u2028\"");
}

/* util_read_file: each outcome; the permission policy per kind; atomic writes. */
static void test_files(void)
{
    char dir[] = "/tmp/test_util_files_XXXXXX", path[128], *data = NULL, *err = NULL;
    size_t len = 0;
    unsigned mode = 0;
    int errnum = 0;

    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/f", dir);
    CHECK(util_read_file(path, 16, &data, &len, &mode, &errnum) == UTIL_READ_MISSING);
    CHECK(data == NULL && len == 0);
    CHECK(util_write_atomic(path, "hello", 5, 0640, &err) == 0);
    CHECK(util_read_file(path, 16, &data, &len, &mode, &errnum) == UTIL_READ_OK);
    CHECK(len == 5 && data && strcmp(data, "hello") == 0 && mode == 0640);
    free(data);
    CHECK(util_read_file(path, 5, &data, &len, &mode, &errnum) == UTIL_READ_OK);
    free(data);
    CHECK(util_read_file(path, 4, &data, &len, &mode, &errnum) == UTIL_READ_TOO_LARGE);
    CHECK(data == NULL);
    CHECK(util_read_file(dir, 16, &data, &len, &mode, &errnum) == UTIL_READ_NOT_REGULAR);
    CHECK(util_write_atomic(path, "", 0, 0600, &err) == 0);
    CHECK(util_read_file(path, 16, &data, &len, &mode, &errnum) == UTIL_READ_OK);
    CHECK(len == 0 && data && data[0] == '\0' && mode == 0600);
    free(data);
    snprintf(path, sizeof(path), "%s/nodir/f", dir);
    CHECK(util_write_atomic(path, "x", 1, 0600, &err) == -1 && err != NULL);
    free(err);
    {
        static const char *const dn[][2] = {{"a/b", "a"}, {"/a", "/"},        {"a", "."},
                                            {"./x", "."}, {"/a/b/c", "/a/b"}, {"a/", "a"}};
        for (size_t i = 0; i < sizeof(dn) / sizeof(dn[0]); i++) {
            char *d = util_dirname(dn[i][0]);
            CHECK_STR(d, dn[i][1]);
            free(d);
        }
    }
    CHECK(util_secret_mode_check(0600, UTIL_SECRET_OWN) == UTIL_MODE_OK);
    CHECK(util_secret_mode_check(0400, UTIL_SECRET_MOUNTED) == UTIL_MODE_OK);
    CHECK(util_secret_mode_check(0640, UTIL_SECRET_OWN) == UTIL_MODE_REFUSE);
    CHECK(util_secret_mode_check(0604, UTIL_SECRET_OWN) == UTIL_MODE_REFUSE);
    CHECK(util_secret_mode_check(0444, UTIL_SECRET_MOUNTED) == UTIL_MODE_WARN);
    CHECK(util_secret_mode_check(0640, UTIL_SECRET_MOUNTED) == UTIL_MODE_WARN);
    snprintf(path, sizeof(path), "%s/f", dir);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    test_files();
    test_parse_u64();
    test_parse_duration();
    test_parse_rate();
    test_parse_date();
    test_strings();
    test_base64();
    test_consttime_and_zero();
    test_log();
    TEST_DONE();
}
