/*
 * config_yaml: the strict YAML walker every section of the configuration
 * uses: messages with FILE:LINE:COL, node helpers, a mapping check against
 * a list of keys (unknown, duplicate, mistyped, missing), and bounded typed
 * getters. See config.c for the loader as a whole.
 */
#define _GNU_SOURCE
#include "config_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <yaml.h>
#include "hostname.h"
#include "util.h"

/* ---------------------------------------------------------------- messages */

/*
 * Bounded formatting into a fixed buffer; cutting a long name in a message is
 * fine (and keeps -Wformat-truncation from flagging every call). Returns the
 * bytes written, never more than cap - 1.
 */
int cfg_bprintf(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    if (n < 0)
        return 0;
    return (size_t)n < cap ? n : (int)cap - 1;
}

struct config_pos cfg_pos(const yaml_node_t *n)
{
    struct config_pos p = {0, 0};
    if (n) {
        p.line = (int)n->start_mark.line + 1;
        p.col = (int)n->start_mark.column + 1;
    }
    return p;
}

/* "FILE:LINE:COL: " or, without a position (the environment), "FILE: ". */
char *cfg_vformat(const char *file, struct config_pos pos, const char *tag, const char *fmt,
                  va_list ap)
{
    char msg[1024];

    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (pos.line > 0)
        return xasprintf("%s:%d:%d: %s%s", file, pos.line, pos.col, tag, msg);
    return xasprintf("%s: %s%s", file, tag, msg);
}

/*
 * Add one error to c->err (one per line, in the order found). The first
 * CFG_MAX_ERRORS are kept; past that a last line says how many more there
 * were. Takes ownership of msg.
 */
static void cfg_error_add(struct cfg_ctx *c, char *msg)
{
    c->nerr++;
    if (c->nerr > CFG_MAX_ERRORS) {
        free(msg);
        return;
    }
    if (!c->err) {
        c->err = msg;
        return;
    }
    char *joined = xasprintf("%s\n%s", c->err, msg);
    free(c->err);
    free(msg);
    c->err = joined;
}

int cfg_fail_at(struct cfg_ctx *c, struct config_pos pos, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    cfg_error_add(c, cfg_vformat(c->file, pos, "", fmt, ap));
    va_end(ap);
    return -1;
}

int cfg_fail(struct cfg_ctx *c, const yaml_node_t *n, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    cfg_error_add(c, cfg_vformat(c->file, cfg_pos(n), "", fmt, ap));
    va_end(ap);
    return -1;
}

void cfg_errors_finish(struct cfg_ctx *c)
{
    if (c->nerr > CFG_MAX_ERRORS && c->err) {
        char *joined = xasprintf("%s\n%s: %zu more errors not shown", c->err, c->file,
                                 c->nerr - CFG_MAX_ERRORS);
        free(c->err);
        c->err = joined;
    }
}

void cfg_warn_add(struct cfg_ctx *c, char *text)
{
    struct config *cfg = c->cfg;
    if (cfg->nwarnings == c->warn_cap) {
        c->warn_cap = c->warn_cap ? c->warn_cap * 2 : 8;
        cfg->warnings = xrealloc(cfg->warnings, c->warn_cap * sizeof(*cfg->warnings));
    }
    cfg->warnings[cfg->nwarnings++].text = text;
}

void cfg_warn_at(struct cfg_ctx *c, struct config_pos pos, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    cfg_warn_add(c, cfg_vformat(c->file, pos, "warning: ", fmt, ap));
    va_end(ap);
}

void cfg_warn(struct cfg_ctx *c, const yaml_node_t *n, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    cfg_warn_add(c, cfg_vformat(c->file, cfg_pos(n), "warning: ", fmt, ap));
    va_end(ap);
}

const char *cfg_type_name(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_SCALAR_NODE:
        return "a single value";
    case YAML_SEQUENCE_NODE:
        return "a list";
    case YAML_MAPPING_NODE:
        return "a map";
    default:
        return "nothing";
    }
}

/* ------------------------------------------------------------ node helpers */

yaml_node_t *cfg_node(struct cfg_ctx *c, int id)
{
    return yaml_document_get_node(c->doc, id);
}

/*
 * The text of a scalar node, or NULL after an error when the node is a list
 * or map, empty, or holds a NUL byte. what names the key in messages.
 */
const char *cfg_scalar(struct cfg_ctx *c, const yaml_node_t *n, const char *what)
{
    if (n->type != YAML_SCALAR_NODE) {
        cfg_fail(c, n, "%s must be a single value, not %s", what, cfg_type_name(n));
        return NULL;
    }
    if (n->data.scalar.length == 0) {
        cfg_fail(c, n, "%s has no value; give one or remove the key", what);
        return NULL;
    }
    if (strlen((const char *)n->data.scalar.value) != n->data.scalar.length) {
        cfg_fail(c, n, "%s contains a NUL character; remove it", what);
        return NULL;
    }
    return (const char *)n->data.scalar.value;
}

/*
 * Checks that n is a map whose keys are plain scalars, each in keys[] and
 * none repeated. keys is NULL-terminated; what names the map in messages.
 */
int cfg_map_check(struct cfg_ctx *c, const yaml_node_t *n, const char *what,
                  const char *const *keys)
{
    char allowed[512];
    size_t off = 0;

    if (n->type != YAML_MAPPING_NODE)
        return cfg_fail(c, n, "%s must be a map (key: value lines), not %s", what,
                        cfg_type_name(n));
    allowed[0] = '\0';
    for (size_t k = 0; keys[k]; k++) {
        int w = cfg_bprintf(allowed + off, sizeof(allowed) - off, "%s%s", k ? ", " : "", keys[k]);
        if (w > 0 && (size_t)w < sizeof(allowed) - off)
            off += (size_t)w;
    }
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *key = cfg_node(c, p->key);
        const char *name;
        size_t k;

        if (key->type != YAML_SCALAR_NODE ||
            strlen((const char *)key->data.scalar.value) != key->data.scalar.length)
            return cfg_fail(c, key, "keys in %s must be plain names; allowed keys: %s", what,
                            allowed);
        name = (const char *)key->data.scalar.value;
        for (k = 0; keys[k]; k++) {
            if (strcmp(name, keys[k]) == 0)
                break;
        }
        if (!keys[k])
            return cfg_fail(c, key, "unknown key '%.64s' in %s; allowed keys: %s", name, what,
                            allowed);
        for (yaml_node_pair_t *q = n->data.mapping.pairs.start; q < p; q++) {
            yaml_node_t *prev = cfg_node(c, q->key);
            if (strcmp((const char *)prev->data.scalar.value, name) == 0)
                return cfg_fail(c, key,
                                "duplicate key '%s' in %s (first given at line %d); keep only "
                                "one",
                                name, what, (int)prev->start_mark.line + 1);
        }
    }
    return 0;
}

/* The value node of key in the (checked) map n, or NULL when absent. */
yaml_node_t *cfg_map_get(struct cfg_ctx *c, const yaml_node_t *n, const char *key)
{
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = cfg_node(c, p->key);
        if (strcmp((const char *)k->data.scalar.value, key) == 0)
            return cfg_node(c, p->value);
    }
    return NULL;
}

/* The key node of key in the map n (for messages about the key itself). */
yaml_node_t *cfg_map_key(struct cfg_ctx *c, const yaml_node_t *n, const char *key)
{
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = cfg_node(c, p->key);
        if (strcmp((const char *)k->data.scalar.value, key) == 0)
            return k;
    }
    return NULL;
}

void cfg_what(char *buf, const char *prefix, const char *key)
{
    cfg_bprintf(buf, CFG_MAX_WHAT, "%s%s%s", prefix, *prefix ? "." : "", key);
}

/* ------------------------------------------------------------ typed values */

/* A typed getter's key: its node, its scalar text and its name for messages. */
struct cfg_scalar {
    yaml_node_t *n;          /* NULL when the key is absent */
    const char *s;           /* the scalar's text */
    char what[CFG_MAX_WHAT]; /* "prefix.key" */
};

/*
 * The step every typed getter shares: find key in map, name it in v->what
 * and read its scalar into v->s. Returns 1 with v filled, 0 when the key is
 * absent (v->n NULL), -1 after an error (not a scalar).
 */
static int cfg_get_scalar(struct cfg_ctx *c, const yaml_node_t *map, const char *prefix,
                          const char *key, struct cfg_scalar *v)
{
    v->n = cfg_map_get(c, map, key);
    if (!v->n)
        return 0;
    cfg_what(v->what, prefix, key);
    v->s = cfg_scalar(c, v->n, v->what);
    return v->s ? 1 : -1;
}

int cfg_get_bool(struct cfg_ctx *c, const yaml_node_t *map, const char *prefix, const char *key,
                 bool *out)
{
    struct cfg_scalar k;
    int rc = cfg_get_scalar(c, map, prefix, key, &k);

    if (rc <= 0)
        return rc;
    if (util_strcaseeq(k.s, "true") || util_strcaseeq(k.s, "yes")) {
        *out = true;
        return 0;
    }
    if (util_strcaseeq(k.s, "false") || util_strcaseeq(k.s, "no")) {
        *out = false;
        return 0;
    }
    return cfg_fail(c, k.n, "%s must be true or false (yes/no also work), got '%.64s'", k.what,
                    k.s);
}

int cfg_get_uint(struct cfg_ctx *c, const yaml_node_t *map, const char *prefix, const char *key,
                 uint64_t min, uint64_t max, uint64_t *out)
{
    struct cfg_scalar k;
    uint64_t v;
    int rc = cfg_get_scalar(c, map, prefix, key, &k);

    if (rc <= 0)
        return rc;
    if (util_parse_u64(k.s, max, &v) < 0 || v < min)
        return cfg_fail(c, k.n, "%s must be a whole number from %llu to %llu, got '%.64s'", k.what,
                        (unsigned long long)min, (unsigned long long)max, k.s);
    *out = v;
    return 0;
}

int cfg_get_duration(struct cfg_ctx *c, const yaml_node_t *map, const char *prefix, const char *key,
                     bool allow_zero, int64_t *out)
{
    struct cfg_scalar k;
    uint64_t bare;
    int64_t v;
    int rc = cfg_get_scalar(c, map, prefix, key, &k);

    if (rc <= 0)
        return rc;
    if (util_parse_duration_ms(k.s, &v) < 0) {
        if (util_parse_u64(k.s, UINT64_MAX, &bare) == 0)
            return cfg_fail(c, k.n, "%s needs a unit: write %.32ss (or ms, m, h)", k.what, k.s);
        return cfg_fail(c, k.n, "%s must be a duration like 500ms, 10s, 5m or 1h, got '%.64s'",
                        k.what, k.s);
    }
    if (v == 0 && !allow_zero)
        return cfg_fail(c, k.n, "%s must be longer than 0", k.what);
    *out = v;
    return 0;
}

int cfg_get_rate(struct cfg_ctx *c, const yaml_node_t *map, const char *prefix, const char *key,
                 bool *given, bool *off, double *per_sec)
{
    struct cfg_scalar k;
    int rc = cfg_get_scalar(c, map, prefix, key, &k);

    if (rc <= 0)
        return rc;
    if (util_parse_rate(k.s, per_sec, off) < 0)
        return cfg_fail(c, k.n,
                        "%s must be a rate like 100/min, 10/s or 1000/h (or off), got '%.64s'",
                        k.what, k.s);
    if (given)
        *given = true;
    return 0;
}

/* A copy of a string value; *out untouched when the key is absent. */
int cfg_get_str(struct cfg_ctx *c, const yaml_node_t *map, const char *prefix, const char *key,
                char **out, yaml_node_t **node)
{
    struct cfg_scalar k;
    int rc = cfg_get_scalar(c, map, prefix, key, &k);

    if (node)
        *node = k.n;
    if (rc <= 0)
        return rc;
    free(*out);
    *out = xstrdup(k.s);
    return 0;
}
