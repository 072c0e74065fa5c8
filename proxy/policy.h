/*
 * policy: least privilege per client on one shared Atlassian account.
 *
 * Three pure pieces, no I/O, no event loop:
 *   - the classifier: method + path of Jira Cloud (REST v2/v3, Agile,
 *     Service Management) and Confluence Cloud (REST v1, v2) -> one
 *     operation class and where the request's project or space comes from;
 *   - the verdict: a config_policy against that classification (allow,
 *     deny, or what the pipeline must fetch first: an id lookup or the body);
 *   - JQL/CQL narrowing: `project in (OPS, SUP) AND (<jql>) ORDER BY <order>`
 *     in query strings and JSON bodies, refusing what cannot be narrowed
 *     safely;
 * plus a small bounded cache for id -> project/space lookups (time passed in).
 *
 * Layer 2. Never forwards anything: the pipeline does. Fails closed: a
 * scoped policy never allows a request whose scope it could not determine.
 * Never logs; messages name classes, keys and ids, never header values.
 */
#ifndef CREDPROXY_POLICY_H
#define CREDPROXY_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* Longest project/space key or numeric id kept from a path or body. */
#define POLICY_MAX_KEY 64
/* A held request body (create bodies, JSON searches) larger than this is refused with 413. */
#define POLICY_MAX_BODY (1024 * 1024)
/* Longest JQL/CQL accepted for narrowing (after percent-decoding). */
#define POLICY_MAX_QUERY (64 * 1024)
/* Longest lookup response body read (an issue's project, a page's space). */
#define POLICY_MAX_LOOKUP_BODY (256 * 1024)
/* JSON nesting accepted in held bodies (jansson has its own hard limit too). */
#define POLICY_MAX_JSON_DEPTH 64
/* Id lookup cache: entries per worker and how long an answer is trusted. */
#define POLICY_CACHE_MAX 1024
#define POLICY_CACHE_TTL_MS (5 * 60 * 1000)
/* Reason texts (for the refusal body and `policy explain`). */
#define POLICY_REASON_MAX 256

enum policy_product { POLICY_PRODUCT_JIRA = 0, POLICY_PRODUCT_CONFLUENCE };

/* Where a request's project or space comes from. */
enum policy_scope_src {
    POLICY_SCOPE_NONE = 0,  /* site-wide: fields, issue types, myself, server info */
    POLICY_SCOPE_PATH,      /* a key or id in the path (issue key, project, space, page id) */
    POLICY_SCOPE_BODY,      /* create: fields.project / space.key / spaceId / pageId in the body */
    POLICY_SCOPE_QUERY_JQL, /* narrowed: jql= in the query string */
    POLICY_SCOPE_BODY_JQL,  /* narrowed: "jql" in the JSON body */
    POLICY_SCOPE_QUERY_CQL, /* narrowed: cql= in the query string */
    POLICY_SCOPE_QUERY_SPACE /* spaceKey= in the query string (v1 content listing) */,
    POLICY_SCOPE_UNDETERMINABLE, /* returns or changes scoped content; scope unknown: fail closed */
};

/* What a path segment or body id names, when it needs a lookup. */
enum policy_lookup {
    POLICY_LOOKUP_NONE = 0,
    POLICY_LOOKUP_ISSUE,   /* numeric issue id -> project key */
    POLICY_LOOKUP_PROJECT, /* numeric project id -> project key */
    POLICY_LOOKUP_CONTENT, /* Confluence page/blog/comment/attachment id -> space key */
    POLICY_LOOKUP_SPACE,   /* Confluence v2 space id -> space key */
};

/* Which field of a held body names the scope (POLICY_SCOPE_BODY / BODY_JQL). */
enum policy_body {
    POLICY_BODY_NONE = 0,
    POLICY_BODY_JIRA_ISSUE,     /* fields.project.key | fields.project.id */
    POLICY_BODY_JIRA_BULK,      /* issueUpdates[].fields.project.key */
    POLICY_BODY_CONF_SPACEKEY,  /* v1: space.key */
    POLICY_BODY_CONF_SPACEID,   /* v2: spaceId */
    POLICY_BODY_CONF_CONTAINER, /* v2 comments: pageId | blogPostId | attachmentId | ... */
    POLICY_BODY_JQL,            /* "jql": narrowed in place */
    POLICY_BODY_CONF_EDIT,      /* page edit: space.key / spaceId, when given, must be in scope */
};

/* One classified request. Filled by policy_classify; plain data. */
struct policy_op {
    enum policy_class cls;
    enum policy_product product;
    enum policy_scope_src src;
    const char *rule; /* the table row's pattern ("issue/{issue}/comment"), or "(unknown)" */
    /* For POLICY_SCOPE_PATH: the key found, or the id to look up. */
    char key[POLICY_MAX_KEY + 1]; /* project or space key (upper-cased project keys) */
    enum policy_lookup lookup;    /* != NONE: key[] holds a numeric id to resolve */
    enum policy_body body;        /* for SCOPE_BODY and SCOPE_BODY_JQL */
    bool query_names_query;       /* the query string has a jql= or cql= parameter */
};

enum policy_verdict {
    POLICY_ALLOW = 0,
    POLICY_DENY,
    POLICY_NEEDS_LOOKUP, /* resolve d->lookup/d->id, then policy_check_key */
    POLICY_NEEDS_BODY,   /* hold the body (<= POLICY_MAX_BODY), then policy_apply_body */
    POLICY_NARROW_QUERY, /* rewrite the query with policy_narrow_query, then forward */
};

struct policy_decision {
    enum policy_verdict verdict;
    char reason[POLICY_REASON_MAX]; /* for DENY: a sentence; otherwise what was found */
    char scope[POLICY_MAX_KEY + 1]; /* the project or space the verdict is about, or "" */
    enum policy_lookup lookup;      /* NEEDS_LOOKUP: what to resolve */
    char id[POLICY_MAX_KEY + 1];    /* NEEDS_LOOKUP: the numeric id */
};

/* "read", "comment", ... ; "?" for an out-of-range value. */
const char *policy_class_name(enum policy_class c);
const char *policy_scope_src_name(enum policy_scope_src s);
const char *policy_product_name(enum policy_product p);
const char *policy_lookup_name(enum policy_lookup l);

/*
 * Classify METHOD and PATH (the request target's path and query; a query
 * after '?' is ignored here). Always fills *op: an unknown endpoint is
 * `read` with undeterminable scope for GET/HEAD, `read` with no scope for
 * OPTIONS, and `admin` for every other method. A path that could mean
 * something else upstream (percent-encoded '/', '.', ';' matrix parameters,
 * "." or ".." segments, backslashes) is `admin` with undeterminable scope.
 */
void policy_classify(const char *method, const char *path, size_t path_len, struct policy_op *op);

/*
 * The policy's first verdict for op. pol is borrowed (NULL = full). DENY
 * when the class is not allowed, or the policy is scoped for op's product
 * and the scope is undeterminable or outside the list. NEEDS_LOOKUP for a
 * numeric id; NEEDS_BODY for create bodies and JSON searches; NARROW_QUERY
 * for query-string JQL/CQL; ALLOW otherwise.
 */
void policy_decide(const struct config_policy *pol, const struct policy_op *op,
                   struct policy_decision *d);

/* Does pol limit product p by project/space lists? (NULL = full: no.) */
bool policy_scoped(const struct config_policy *pol, enum policy_product p);

/* A scope key was found (lookup answer or body field): ALLOW or DENY into *d. */
void policy_check_key(const struct config_policy *pol, const struct policy_op *op, const char *key,
                      struct policy_decision *d);

/*
 * NEEDS_BODY: inspect (and for JSON searches rewrite) the held body. Returns
 * the verdict in *d: ALLOW (with *out and *out_len set when the body was
 * rewritten: caller frees; NULL when unchanged), DENY (unparseable,
 * ambiguous, out of scope), or NEEDS_LOOKUP (a project or space id in a
 * create body; then policy_check_key).
 */
void policy_apply_body(const struct config_policy *pol, const struct policy_op *op,
                       const char *body, size_t len, char **out, size_t *out_len,
                       struct policy_decision *d);

/*
 * NARROW_QUERY: the query string (without '?', may be empty) rewritten with
 * the narrowed jql=/cql= (added when absent). Returns a new string (caller
 * frees) or NULL with *d set to DENY.
 */
char *policy_narrow_query(const struct config_policy *pol, const struct policy_op *op,
                          const char *query, size_t len, struct policy_decision *d);

/*
 * Narrow one JQL (projects) or CQL (spaces) string. Returns a new string or
 * NULL with *why (static text) when the query cannot be narrowed safely:
 * unbalanced quotes or parentheses, comments, control bytes, an ORDER BY
 * that is not at the top level, more than one ORDER BY, too long.
 */
char *policy_narrow_jql(const char *const *projects, size_t n, const char *jql, size_t len,
                        const char **why);
char *policy_narrow_cql(const char *const *spaces, size_t n, const char *cql, size_t len,
                        const char **why);

/*
 * The upstream path (with query) that resolves lookup/id with the same
 * credential, written into buf; -1 when it does not fit or id is not numeric.
 */
int policy_lookup_path(enum policy_lookup lookup, const char *id, char *buf, size_t cap);

/* Extract the project/space key from a lookup's JSON answer into key (cap bytes). 0 or -1. */
int policy_lookup_parse(enum policy_lookup lookup, const char *body, size_t len, char *key,
                        size_t cap);

/* A bounded id -> key cache with a TTL; one per worker (not thread-safe). */
struct policy_cache;
struct policy_cache *policy_cache_new(void);
void policy_cache_free(struct policy_cache *pc);
/* key is copied into out (cap bytes) and true returned when a fresh entry exists. */
bool policy_cache_get(struct policy_cache *pc, const char *site, enum policy_lookup lookup,
                      const char *id, int64_t now_ms, char *out, size_t cap);
/* Insert or refresh; evicts the oldest entry when full. */
void policy_cache_put(struct policy_cache *pc, const char *site, enum policy_lookup lookup,
                      const char *id, const char *key, int64_t now_ms);
size_t policy_cache_size(const struct policy_cache *pc);

#endif
