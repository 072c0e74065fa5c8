/*
 * fuzz_check: `credproxy check`'s diagnosis of what an Atlassian site
 * answered. The input gives the exchange: status, curl code, then
 * NUL-separated X-Seraph-LoginReason, X-Authentication-Denied-Reason,
 * Retry-After, Location, the host name and the body. Every verdict has a
 * cause and a NUL-terminated message within its buffer, and prints as text
 * and JSON; the domain hint and JSON field reader stay within their buffers.
 */
#include <stdbool.h>
#include <string.h>

#include "check.h"
#include "fuzz.h"

#define FUZZ_FIELDS 6

static FILE *devnull;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    devnull = fopen("/dev/null", "w");
    FUZZ_CHECK(devnull != NULL);
    return 0;
}

static void check_verdict(const struct check_verdict *v)
{
    FUZZ_CHECK(v->cause != NULL);
    FUZZ_CHECK(memchr(v->message, '\0', sizeof(v->message)) != NULL);
    FUZZ_CHECK(memchr(v->display_name, '\0', sizeof(v->display_name)) != NULL);
    FUZZ_CHECK(memchr(v->account_id, '\0', sizeof(v->account_id)) != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *field[FUZZ_FIELDS] = {NULL};
    if (size < 4 || size > CHECK_MAX_BODY)
        return 0;
    long status = (long)(data[0] | data[1] << 8) % 1000;
    int curl_code = data[2] % 100;
    unsigned flags = data[3];
    data += 4;
    size -= 4;

    /* A NUL-terminated copy split at NULs into the fields (missing ones stay NULL). */
    char *copy = malloc(size + 1);
    FUZZ_CHECK(copy != NULL);
    memcpy(copy, data, size);
    copy[size] = '\0';
    size_t nf = 0;
    for (char *p = copy; nf < FUZZ_FIELDS && p <= copy + size; p += strlen(p) + 1)
        field[nf++] = p;

    struct check_exchange x = {
        .curl_code = flags & 1 ? curl_code : 0,
        .curl_error = flags & 2 ? "fuzz curl error" : NULL,
        .status = status,
        .seraph = flags & 4 ? field[0] : NULL,
        .denied_reason = flags & 8 ? field[1] : NULL,
        .retry_after = flags & 16 ? field[2] : NULL,
        .location = flags & 32 ? field[3] : NULL,
        .body = field[5],
    };
    struct check_target t = {
        .host = field[4] ? field[4] : "acme.atlassian.net",
        .credential = "svc",
        .email = flags & 64 ? NULL : "bot@example.com",
        .bearer = (flags & 64) != 0,
        .expires = flags & 128 ? 1764460800 : 0,
        .now = 1764460800,
    };
    struct check_verdict v;
    char cloud_id[CHECK_MAX_FIELD];

    memset(&v, 0, sizeof(v));
    cloud_id[0] = '\0';
    if (!check_diagnose_site(&t, &x, &v, cloud_id, sizeof(cloud_id)))
        check_verdict(&v);
    FUZZ_CHECK(memchr(cloud_id, '\0', sizeof(cloud_id)) != NULL);
    for (int p = CHECK_PRODUCT_JIRA; p <= CHECK_PRODUCT_CONFLUENCE; p++) {
        memset(&v, 0, sizeof(v));
        check_diagnose_product(&t, (enum check_product)p, &x, &v);
        check_verdict(&v);
        check_print_verdict(devnull, false, &t, (enum check_product)p, &v, cloud_id);
        check_print_verdict(devnull, true, &t, (enum check_product)p, &v, cloud_id);
    }
    char hint[CHECK_MAX_MESSAGE], out[16];
    for (int env_default = 0; env_default <= 1; env_default++) {
        check_domain_hint(t.host, env_default, hint, sizeof(hint));
        FUZZ_CHECK(memchr(hint, '\0', sizeof(hint)) != NULL);
    }
    if (x.body && check_json_string(x.body, "displayName", out, sizeof(out)))
        FUZZ_CHECK(memchr(out, '\0', sizeof(out)) != NULL);
    free(copy);
    return 0;
}
