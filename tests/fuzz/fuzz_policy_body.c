/*
 * fuzz_policy_body: held JSON bodies of creates, edits and searches through
 * policy_apply_body, and lookup answers through policy_lookup_parse. The
 * first byte chooses the body rule (and the lookup kind); the rest is the
 * body.
 * Invariants: never a crash or leak; a body over POLICY_MAX_BODY or nesting
 * deeper than POLICY_MAX_JSON_DEPTH is denied;
 * a rewritten body is a JSON object per jansson whose "jql" begins with the
 * scope clause and whose other members are the agent's, unchanged; only
 * JQL searches are rewritten; a create is allowed only for a listed key
 * that the body really names (checked here with jansson, independently);
 * a lookup request names a numeric id; a parsed lookup key is a plain key.
 */
#include <jansson.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "fuzz.h"
#include "policy.h"

static const enum policy_body fuzz_bodies[] = {POLICY_BODY_JIRA_ISSUE,     POLICY_BODY_JIRA_BULK,
                                               POLICY_BODY_CONF_SPACEKEY,  POLICY_BODY_CONF_SPACEID,
                                               POLICY_BODY_CONF_CONTAINER, POLICY_BODY_JQL,
                                               POLICY_BODY_CONF_EDIT,      POLICY_BODY_NONE};
#define FUZZ_K64 "KKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKK"
#define FUZZ_NBODIES (sizeof(fuzz_bodies) / sizeof(fuzz_bodies[0]))

static bool listed(char *const *list, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++) {
        if (strcasecmp(list[i], key) == 0)
            return true;
    }
    return false;
}

static bool all_digits(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
    }
    return true;
}

/* The key a create body names (fields.project.key), read independently; NULL if none. */
static const char *body_project_key(json_t *root)
{
    json_t *k = json_object_get(json_object_get(json_object_get(root, "fields"), "project"), "key");
    return json_is_string(k) ? json_string_value(k) : NULL;
}

/* Nesting depth of a parsed value (an object or array counts one level). */
static int tree_depth(json_t *v)
{
    int deepest = 0;
    if (json_is_object(v)) {
        const char *k;
        json_t *m;
        json_object_foreach(v, k, m)
        {
            int dm = tree_depth(m);
            deepest = dm > deepest ? dm : deepest;
        }
        return deepest + 1;
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *m;
        json_array_foreach(v, i, m)
        {
            int dm = tree_depth(m);
            deepest = dm > deepest ? dm : deepest;
        }
        return deepest + 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > POLICY_MAX_BODY + 2)
        return 0;
    enum policy_body body = fuzz_bodies[data[0] % FUZZ_NBODIES];
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    /* bit 6: a listed key of the longest length kept (a longer one must not be cut to it) */
    char *projects[] = {"OPS", data[0] & 64 ? FUZZ_K64 : "SUP"}, *spaces[] = {"DOC", "~jdoe"};
    struct config_policy pol = {.name = "fuzz",
                                .allow = POLICY_ALL_CLASSES,
                                .projects = projects,
                                .nprojects = 2,
                                .has_projects = true,
                                .spaces = spaces,
                                .nspaces = 2,
                                .has_spaces = true};
    bool conf = body == POLICY_BODY_CONF_SPACEKEY || body == POLICY_BODY_CONF_SPACEID ||
                body == POLICY_BODY_CONF_CONTAINER || body == POLICY_BODY_CONF_EDIT;
    struct policy_op op = {
        .cls = body == POLICY_BODY_JQL ? POLICY_READ : POLICY_WRITE,
        .product = conf ? POLICY_PRODUCT_CONFLUENCE : POLICY_PRODUCT_JIRA,
        .src = body == POLICY_BODY_JQL ? POLICY_SCOPE_BODY_JQL : POLICY_SCOPE_BODY,
        .rule = "fuzz",
        .body = body,
    };
    struct policy_decision d;
    char *out = (char *)"sentinel";
    size_t out_len = 1;

    policy_apply_body(&pol, &op, in, len, &out, &out_len, &d);
    FUZZ_CHECK(d.verdict == POLICY_ALLOW || d.verdict == POLICY_DENY ||
               d.verdict == POLICY_NEEDS_LOOKUP);
    FUZZ_CHECK(memchr(d.reason, '\0', sizeof(d.reason)) != NULL);
    if (len > POLICY_MAX_BODY)
        FUZZ_CHECK(d.verdict == POLICY_DENY);
    if (d.verdict != POLICY_ALLOW || body != POLICY_BODY_JQL)
        FUZZ_CHECK(out == NULL && out_len == 0);
    if (d.verdict == POLICY_NEEDS_LOOKUP) {
        char lp[256];
        FUZZ_CHECK(all_digits(d.id));
        FUZZ_CHECK(policy_lookup_path(d.lookup, d.id, lp, sizeof(lp)) == 0);
    }

    json_error_t jerr;
    json_t *orig = d.verdict == POLICY_DENY ? NULL : json_loadb(in, len, 0, &jerr);
    if (d.verdict != POLICY_DENY) {
        FUZZ_CHECK(json_is_object(orig));
        FUZZ_CHECK(tree_depth(orig) <= POLICY_MAX_JSON_DEPTH);
    }
    if (d.verdict == POLICY_ALLOW && body == POLICY_BODY_JIRA_ISSUE) {
        const char *k = body_project_key(orig);
        FUZZ_CHECK(k != NULL && listed(projects, 2, k));
    }
    if (d.verdict == POLICY_ALLOW && body == POLICY_BODY_JIRA_BULK) {
        json_t *arr = json_object_get(orig, "issueUpdates"), *it;
        size_t i;
        FUZZ_CHECK(json_array_size(arr) > 0);
        json_array_foreach(arr, i, it)
        {
            const char *k = body_project_key(it);
            FUZZ_CHECK(k != NULL && listed(projects, 2, k));
        }
    }
    if (d.verdict == POLICY_ALLOW && body == POLICY_BODY_CONF_SPACEKEY) {
        json_t *k = json_object_get(json_object_get(orig, "space"), "key");
        FUZZ_CHECK(json_is_string(k) && listed(spaces, 2, json_string_value(k)));
    }
    if (d.verdict == POLICY_ALLOW && body == POLICY_BODY_CONF_EDIT) {
        json_t *k = json_object_get(json_object_get(orig, "space"), "key");
        FUZZ_CHECK(json_object_get(orig, "spaceId") == NULL);
        FUZZ_CHECK(k == NULL || (json_is_string(k) && listed(spaces, 2, json_string_value(k))));
    }
    if (d.verdict == POLICY_ALLOW && body == POLICY_BODY_JQL) {
        FUZZ_CHECK(out != NULL && out_len == strlen(out));
        json_t *nb = json_loadb(out, out_len, JSON_REJECT_DUPLICATES, &jerr);
        FUZZ_CHECK(json_is_object(nb));
        json_t *jql = json_object_get(nb, "jql");
        FUZZ_CHECK(json_is_string(jql));
        char scope[128];
        snprintf(scope, sizeof(scope), "project in (%s, %s)", projects[0], projects[1]);
        FUZZ_CHECK(strncmp(json_string_value(jql), scope, strlen(scope)) == 0);
        /* every other member is the agent's, unchanged */
        FUZZ_CHECK(json_object_size(nb) == json_object_size(orig) + !json_object_get(orig, "jql"));
        const char *k;
        json_t *v;
        json_object_foreach(nb, k, v)
        {
            if (strcmp(k, "jql") != 0)
                FUZZ_CHECK(json_equal(v, json_object_get(orig, k)));
        }
        json_decref(nb);
        free(out);
    }
    json_decref(orig);

    /* The same bytes as a lookup answer. */
    char key[POLICY_MAX_KEY + 1];
    enum policy_lookup lk = (enum policy_lookup)(1 + (data[0] >> 4) % 4);
    if (policy_lookup_parse(lk, in, len, key, sizeof(key)) == 0) {
        FUZZ_CHECK(key[0] != '\0');
        for (const char *p = key; *p; p++)
            FUZZ_CHECK((*p >= '0' && *p <= '9') || (*p >= 'A' && *p <= 'Z') ||
                       (*p >= 'a' && *p <= 'z') || *p == '_' || *p == '~' || *p == '-' ||
                       *p == ':');
    }
    return 0;
}
