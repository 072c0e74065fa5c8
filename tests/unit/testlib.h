/*
 * testlib: the few macros every unit test uses. Each failed check prints
 * FILE:LINE and the expression; main() ends with TEST_DONE(), which prints
 * "N passed, M failed" (the closing line CI reads) and sets the exit code.
 */
#ifndef CREDPROXY_TESTLIB_H
#define CREDPROXY_TESTLIB_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_passed, test_failed;

#define CHECK(expr)                                                                                \
    do {                                                                                           \
        if (expr) {                                                                                \
            test_passed++;                                                                         \
        } else {                                                                                   \
            test_failed++;                                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #expr);               \
        }                                                                                          \
    } while (0)

#define CHECK_MSG(expr, ...)                                                                       \
    do {                                                                                           \
        if (expr) {                                                                                \
            test_passed++;                                                                         \
        } else {                                                                                   \
            test_failed++;                                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #expr);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *check_a_ = (a), *check_b_ = (b);                                               \
        if (check_a_ && check_b_ && strcmp(check_a_, check_b_) == 0) {                             \
            test_passed++;                                                                         \
        } else {                                                                                   \
            test_failed++;                                                                         \
            fprintf(stderr, "%s:%d: CHECK_STR failed: %s: got \"%s\", want \"%s\"\n", __FILE__,    \
                    __LINE__, #a, check_a_ ? check_a_ : "(null)", check_b_ ? check_b_ : "(null)"); \
        }                                                                                          \
    } while (0)

#define TEST_MAX_FILE (4 << 20)

/*
 * The file at path (its first TEST_MAX_FILE - 1 bytes) as a NUL-terminated
 * string; an empty string when it cannot be read. The caller frees.
 */
static inline char *test_read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = calloc(1, TEST_MAX_FILE);
    if (!buf)
        abort();
    if (f) {
        size_t n = fread(buf, 1, TEST_MAX_FILE - 1, f);
        buf[n] = '\0';
        fclose(f);
    }
    return buf;
}

#define TEST_DONE()                                                                                \
    do {                                                                                           \
        printf("%d passed, %d failed\n", test_passed, test_failed);                                \
        return test_failed ? 1 : 0;                                                                \
    } while (0)

#endif
