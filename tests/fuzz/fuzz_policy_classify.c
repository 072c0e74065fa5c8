/*
 * fuzz_policy_classify: method + path (+ query) -> policy_classify, and the
 * first verdict of a scoped policy on it. The first byte chooses the
 * method; the rest is the request target's path and query.
 * Invariants (what policy.h promises):
 *   - a path an upstream could read differently (empty or dot segments,
 *     ';', '\', control bytes, an encoded '/', '\', ';', '%') is `admin`
 *     with undeterminable scope, whatever the method;
 *   - an endpoint no rule knows is `read`/undeterminable for GET and HEAD,
 *     `read`/site-wide for OPTIONS and `admin`/undeterminable otherwise, so
 *     an unknown non-GET/HEAD/OPTIONS request is never `read`;
 *   - a path scope holds a key: a numeric id when a lookup is needed, else a
 *     plain key with no separator or control byte;
 *   - the query string never changes the classification, nor does one
 *     trailing '/';
 *   - a scoped policy allows outright only site-wide operations and listed
 *     keys; undeterminable scope is always denied.
 */
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "fuzz.h"
#include "policy.h"

#define FUZZ_MAX_PATH 4096

static const char *const fuzz_methods[] = {"GET",   "HEAD",    "OPTIONS",  "POST",
                                           "PUT",   "DELETE",  "PATCH",    "get",
                                           "TRACE", "CONNECT", "PROPFIND", "POSTX"};

static int hexv(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Independent reading of "could mean something else upstream" on the path part. */
static bool path_ambiguous(const char *p, size_t n)
{
    if (n == 0 || p[0] != '/')
        return true;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == ';' || c == '\\' || c < 0x20 || c == 0x7f)
            return true;
        if (c == '/' && i + 1 < n && p[i + 1] == '/')
            return true;
        if (c == '%' && i + 2 < n && hexv(p[i + 1]) >= 0 && hexv(p[i + 2]) >= 0) {
            int v = hexv(p[i + 1]) * 16 + hexv(p[i + 2]);
            if (v == '/' || v == '\\' || v == ';' || v == '%' || v < 0x20 || v == 0x7f)
                return true;
        }
    }
    /* "." or ".." segments, also percent-encoded ("%2e", ".%2E") */
    size_t i = 1;
    while (i <= n) {
        size_t j = i, dots = 0, other = 0;
        while (j < n && p[j] != '/') {
            if (p[j] == '.') {
                dots++;
                j++;
            } else if (p[j] == '%' && j + 2 < n && (p[j + 1] == '2') &&
                       (p[j + 2] == 'e' || p[j + 2] == 'E')) {
                dots++;
                j += 3;
            } else {
                other++;
                j++;
            }
        }
        if (other == 0 && (dots == 1 || dots == 2))
            return true;
        i = j + 1;
    }
    return false;
}

static bool key_char_ok(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '~' || c == '-' || c == ':';
}

static bool same_op(const struct policy_op *a, const struct policy_op *b)
{
    return a->cls == b->cls && a->product == b->product && a->src == b->src &&
           a->lookup == b->lookup && a->body == b->body && strcmp(a->key, b->key) == 0 &&
           strcmp(a->rule, b->rule) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > FUZZ_MAX_PATH)
        return 0;
    const char *method = fuzz_methods[data[0] % (sizeof(fuzz_methods) / sizeof(fuzz_methods[0]))];
    const char *path = (const char *)data + 1;
    size_t len = size - 1;
    bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    bool options = strcmp(method, "OPTIONS") == 0;

    struct policy_op op;
    policy_classify(method, path, len, &op);
    FUZZ_CHECK(op.cls < POLICY_NCLASSES);
    FUZZ_CHECK(op.src <= POLICY_SCOPE_UNDETERMINABLE);
    FUZZ_CHECK(op.rule != NULL);
    FUZZ_CHECK(memchr(op.key, '\0', sizeof(op.key)) != NULL);

    size_t plen = 0; /* the path part: up to '?' or '#' */
    while (plen < len && path[plen] != '?' && path[plen] != '#')
        plen++;
    bool ambiguous = path_ambiguous(path, plen);
    /* "/x/" is "/x": one trailing slash is ignored, so judge without it */
    if (!ambiguous && plen > 1 && path[plen - 1] == '/')
        ambiguous = path_ambiguous(path, plen - 1) || path[plen - 2] == '/';
    if (ambiguous) {
        FUZZ_CHECK(op.cls == POLICY_ADMIN);
        FUZZ_CHECK(op.src == POLICY_SCOPE_UNDETERMINABLE);
    }
    if (strcmp(op.rule, "(unknown)") == 0) {
        if (get) {
            FUZZ_CHECK(op.cls == POLICY_READ && op.src == POLICY_SCOPE_UNDETERMINABLE);
        } else if (options) {
            FUZZ_CHECK(op.cls == POLICY_READ && op.src == POLICY_SCOPE_NONE);
        } else {
            FUZZ_CHECK(op.cls == POLICY_ADMIN && op.src == POLICY_SCOPE_UNDETERMINABLE);
        }
    }
    if (!get && !options && op.cls == POLICY_READ)
        FUZZ_CHECK(strcmp(op.rule, "(unknown)") != 0 && op.rule[0] != '(');
    if (op.src == POLICY_SCOPE_PATH) {
        FUZZ_CHECK(op.key[0] != '\0');
        for (const char *k = op.key; *k; k++) {
            if (op.lookup != POLICY_LOOKUP_NONE)
                FUZZ_CHECK(*k >= '0' && *k <= '9');
            else
                FUZZ_CHECK(key_char_ok(*k));
        }
    } else {
        FUZZ_CHECK(op.key[0] == '\0' && op.lookup == POLICY_LOOKUP_NONE);
    }
    if (op.src == POLICY_SCOPE_BODY || op.src == POLICY_SCOPE_BODY_JQL)
        FUZZ_CHECK(op.body != POLICY_BODY_NONE);

    /* The query never changes the class; one trailing slash neither. */
    if (plen == len && len < FUZZ_MAX_PATH) {
        char *alt = malloc(len + 16);
        FUZZ_CHECK(alt != NULL);
        struct policy_op op2;
        memcpy(alt, path, len);
        memcpy(alt + len, "?jql=x&a=b", 10);
        policy_classify(method, alt, len + 10, &op2);
        FUZZ_CHECK(same_op(&op, &op2));
        FUZZ_CHECK(op2.query_names_query);
        if (len > 1 && path[len - 1] != '/' && path[0] == '/') {
            alt[len] = '/';
            policy_classify(method, alt, len + 1, &op2);
            FUZZ_CHECK(same_op(&op, &op2));
        }
        free(alt);
    }

    /* A scoped policy: only site-wide operations and listed keys pass without more checks. */
    char *projects[] = {"OPS", "SUP"}, *spaces[] = {"DOC", "~jdoe"};
    struct config_policy pol = {.name = "fuzz",
                                .allow = POLICY_ALL_CLASSES,
                                .projects = projects,
                                .nprojects = 2,
                                .has_projects = true,
                                .spaces = spaces,
                                .nspaces = 2,
                                .has_spaces = true};
    struct policy_decision d;
    policy_decide(&pol, &op, &d);
    if (op.src == POLICY_SCOPE_UNDETERMINABLE)
        FUZZ_CHECK(d.verdict == POLICY_DENY);
    if (d.verdict == POLICY_ALLOW) {
        FUZZ_CHECK(op.src == POLICY_SCOPE_NONE || op.src == POLICY_SCOPE_PATH);
        if (op.src == POLICY_SCOPE_PATH) {
            FUZZ_CHECK(op.lookup == POLICY_LOOKUP_NONE);
            bool listed = false;
            char **list = op.product == POLICY_PRODUCT_CONFLUENCE ? spaces : projects;
            for (size_t i = 0; i < 2; i++)
                listed |= strcasecmp(list[i], op.key) == 0;
            FUZZ_CHECK(listed);
        }
    }
    if (d.verdict == POLICY_NEEDS_LOOKUP) {
        char lp[256];
        FUZZ_CHECK(policy_lookup_path(d.lookup, d.id, lp, sizeof(lp)) == 0);
        FUZZ_CHECK(lp[0] == '/' && strstr(lp, "..") == NULL);
    }
    /* read-only: nothing but reads is ever allowed */
    pol.allow = POLICY_CLASS_BIT(POLICY_READ);
    policy_decide(&pol, &op, &d);
    if (d.verdict != POLICY_DENY)
        FUZZ_CHECK(op.cls == POLICY_READ);
    return 0;
}
