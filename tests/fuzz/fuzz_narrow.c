/*
 * fuzz_narrow: JQL/CQL narrowing (policy_narrow_jql, policy_narrow_cql) and
 * the query-string rewrite around it (policy_narrow_query). The first byte
 * chooses JQL or CQL, the key list and whether the rest is a raw query or a
 * form-encoded query string.
 * Invariants, checked by an independent reader written here:
 *   - a success begins with exactly `project in (KEYS)` / `space in (KEYS)`;
 *   - what follows is nothing, ` ORDER BY ...` (no parentheses), or
 *     ` AND (` + the agent's part + `)`, where the quote-aware parenthesis
 *     depth never drops to 0 inside the agent's part (it cannot close the
 *     group early) and every quote is closed, then optionally ` ORDER BY ...`;
 *   - no control byte passes (tab, CR and LF are JQL white space);
 *   - a refusal returns NULL with a reason (and, for query strings, DENY);
 *   - a rewritten query string carries the parameter exactly once.
 */
#define _GNU_SOURCE /* memmem */
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "policy.h"

#define FUZZ_MAX_INPUT 8192

static const char *const keyset0[] = {"OPS"};
static const char *const keyset1[] = {"OPS", "SUP_2"};
static const char *const keyset2[] = {"~jdoe", "DOC", "~5b10:ac8d-82f"};
static const char *const *const keysets[] = {keyset0, keyset1, keyset2};
static const size_t keyset_n[] = {1, 2, 3};

static bool plain(const char *k)
{
    for (; *k; k++) {
        char c = *k;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return false;
    }
    return true;
}

static bool has_control(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t' && c != '\r' && c != '\n') || c == 0x7f)
            return true;
    }
    return false;
}

/* Check one narrowed query against the shape promised above; aborts on a violation. */
static void check_narrowed(const char *field, const char *const *keys, size_t n, const char *out,
                           const char *in, size_t in_len)
{
    char prefix[512];
    size_t pl = (size_t)snprintf(prefix, sizeof(prefix), "%s in (", field);
    for (size_t i = 0; i < n; i++) {
        bool p = plain(keys[i]);
        pl += (size_t)snprintf(prefix + pl, sizeof(prefix) - pl, "%s%s%s%s", i ? ", " : "",
                               p ? "" : "\"", keys[i], p ? "" : "\"");
    }
    pl += (size_t)snprintf(prefix + pl, sizeof(prefix) - pl, ")");
    size_t olen = strlen(out);
    FUZZ_CHECK(!has_control(out, olen));
    FUZZ_CHECK(olen >= pl && memcmp(out, prefix, pl) == 0);
    const char *r = out + pl;
    if (strncmp(r, " AND (", 6) == 0) {
        const char *a = r + 5; /* the '(' */
        int depth = 0;
        char quote = 0;
        const char *close = NULL;
        for (const char *p = a; *p; p++) {
            if (quote) {
                if (*p == '\\') {
                    FUZZ_CHECK(p[1] != '\0');
                    p++;
                } else if (*p == quote) {
                    quote = 0;
                }
                continue;
            }
            if (*p == '"' || *p == '\'') {
                quote = *p;
            } else if (*p == '(') {
                depth++;
            } else if (*p == ')') {
                depth--;
                if (depth == 0) {
                    close = p;
                    break;
                }
            } else {
                FUZZ_CHECK(*p != '\\'); /* no escapes outside a string */
            }
        }
        FUZZ_CHECK(close != NULL && quote == 0);
        /* the agent's part is their own text */
        size_t al = (size_t)(close - (a + 1));
        FUZZ_CHECK(al > 0 && al <= in_len && memmem(in, in_len, a + 1, al) != NULL);
        r = close + 1;
    }
    if (*r) {
        FUZZ_CHECK(strncmp(r, " ORDER BY ", 10) == 0);
        FUZZ_CHECK(strpbrk(r, "()") == NULL);
    }
}

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

/* Form-decode [s, s+n) into a new string (NULs kept; *out_n its length); NULL when malformed. */
static char *fdecode(const char *s, size_t n, size_t *out_n)
{
    char *o = malloc(n + 1);
    size_t k = 0;
    FUZZ_CHECK(o != NULL);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+') {
            o[k++] = ' ';
        } else if (s[i] == '%') {
            if (i + 2 >= n || hexv(s[i + 1]) < 0 || hexv(s[i + 2]) < 0) {
                free(o);
                return NULL;
            }
            o[k++] = (char)(hexv(s[i + 1]) * 16 + hexv(s[i + 2]));
            i += 2;
        } else {
            o[k++] = s[i];
        }
    }
    o[k] = '\0';
    *out_n = k;
    return o;
}

static void fuzz_query_string(bool cql, const char *const *keys, size_t n, const char *in,
                              size_t len)
{
    char *list[3];
    for (size_t i = 0; i < n; i++)
        list[i] = (char *)keys[i];
    struct config_policy pol = {.name = "fuzz",
                                .allow = POLICY_ALL_CLASSES,
                                .projects = list,
                                .nprojects = n,
                                .has_projects = true,
                                .spaces = list,
                                .nspaces = n,
                                .has_spaces = true};
    struct policy_op op = {.cls = POLICY_READ,
                           .product = cql ? POLICY_PRODUCT_CONFLUENCE : POLICY_PRODUCT_JIRA,
                           .src = cql ? POLICY_SCOPE_QUERY_CQL : POLICY_SCOPE_QUERY_JQL,
                           .rule = "search"};
    struct policy_decision d;
    const char *pname = cql ? "cql" : "jql";
    char *q = policy_narrow_query(&pol, &op, in, len, &d);
    if (!q) {
        FUZZ_CHECK(d.verdict == POLICY_DENY && d.reason[0] != '\0');
        return;
    }
    FUZZ_CHECK(d.verdict == POLICY_ALLOW);
    size_t qlen = strlen(q), found = 0;
    FUZZ_CHECK(memchr(q, ';', qlen) == NULL);
    for (size_t i = 0; i <= qlen;) {
        size_t j = i;
        while (j < qlen && q[j] != '&')
            j++;
        const char *eq = memchr(q + i, '=', j - i);
        size_t nl = eq ? (size_t)(eq - (q + i)) : j - i, dn = 0;
        char *name = fdecode(q + i, nl, &dn);
        if (name && dn == 3 && memcmp(name, pname, 3) == 0) {
            found++;
            FUZZ_CHECK(eq != NULL);
            size_t vn = 0;
            char *v = fdecode(eq + 1, (size_t)(q + j - (eq + 1)), &vn);
            FUZZ_CHECK(v != NULL && strlen(v) == vn);
            char *raw = NULL;
            size_t rn = 0;
            /* the agent's value, as given (or empty) */
            for (size_t a = 0; a <= len;) {
                size_t b = a;
                while (b < len && in[b] != '&')
                    b++;
                const char *e2 = memchr(in + a, '=', b - a);
                size_t n2 = e2 ? (size_t)(e2 - (in + a)) : b - a, d2 = 0;
                char *nm = fdecode(in + a, n2, &d2);
                if (nm && d2 == 3 && memcmp(nm, pname, 3) == 0 && e2)
                    raw = fdecode(e2 + 1, (size_t)(in + b - (e2 + 1)), &rn);
                free(nm);
                if (raw)
                    break;
                a = b + 1;
            }
            check_narrowed(cql ? "space" : "project", keys, n, v, raw ? raw : "", raw ? rn : 0);
            free(raw);
            free(v);
        }
        free(name);
        i = j + 1;
    }
    FUZZ_CHECK(found == 1);
    free(q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > FUZZ_MAX_INPUT)
        return 0;
    unsigned sel = data[0];
    bool cql = sel & 1;
    size_t ks = (sel >> 1) % 3;
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    const char *const *keys = keysets[ks];
    size_t n = keyset_n[ks];

    if (sel & 8) {
        fuzz_query_string(cql, keys, n, in, len);
        return 0;
    }
    const char *why = NULL;
    char *out =
        cql ? policy_narrow_cql(keys, n, in, len, &why) : policy_narrow_jql(keys, n, in, len, &why);
    if (!out) {
        FUZZ_CHECK(why != NULL && why[0] != '\0');
    } else {
        check_narrowed(cql ? "space" : "project", keys, n, out, in, len);
        free(out);
    }
    /* no keys: always refused */
    why = NULL;
    out = policy_narrow_jql(keys, 0, in, len, &why);
    FUZZ_CHECK(out == NULL && why != NULL);
    return 0;
}
