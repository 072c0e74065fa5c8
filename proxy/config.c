/*
 * config: see config.h. libyaml loads the whole file into a document (so
 * every node keeps its line and column); one strict walker then checks each
 * map against its list of keys (unknown, duplicate, mistyped, missing) and
 * fills struct config. The first error wins and is reported as
 * FILE:LINE:COL: message; warnings are collected alongside.
 *
 * Secrets (tokens, client keys) are read here and never appear in any
 * message: a message may name the variable or file a secret came from, never
 * the bytes. Where a value that should be a name or a path might in fact be
 * the secret pasted in the wrong place, the value is not echoed either.
 */
#define _GNU_SOURCE
#include "config.h"

#include <arpa/inet.h>
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

/* The configuration file itself: far larger than any sane config. */
#define CFG_MAX_FILE_SIZE (1024 * 1024)
/* Credential names and client ids appear in logs and metric labels. */
#define CFG_MAX_NAME_LEN 64
#define CFG_MAX_BURST 1000000u
#define CFG_MAX_QUEUE_LIMIT 1000000u
#define CFG_MAX_REDIS_DB 65535
/* Longest key path in messages ("credentials.NAME.rate_limit"). */
#define CFG_MAX_WHAT 160
#define CFG_ENV_FILE "<environment>"

struct cfg_ctx {
    const char *file;
    yaml_document_t *doc;
    struct config *cfg;
    char *err;
    size_t warn_cap;
};

/* ---------------------------------------------------------------- messages */

/*
 * Bounded formatting into a fixed buffer; cutting a long name in a message is
 * fine (and keeps -Wformat-truncation from flagging every call). Returns the
 * bytes written, never more than cap - 1.
 */
static int cfg_bprintf(char *buf, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int cfg_bprintf(char *buf, size_t cap, const char *fmt, ...)
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

static struct config_pos cfg_pos(const yaml_node_t *n)
{
    struct config_pos p = {0, 0};
    if (n) {
        p.line = (int)n->start_mark.line + 1;
        p.col = (int)n->start_mark.column + 1;
    }
    return p;
}

/* "FILE:LINE:COL: " or, without a position (the environment), "FILE: ". */
static char *cfg_vformat(const char *file, struct config_pos pos, const char *tag, const char *fmt,
                         va_list ap)
{
    char msg[1024];

    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (pos.line > 0)
        return xasprintf("%s:%d:%d: %s%s", file, pos.line, pos.col, tag, msg);
    return xasprintf("%s: %s%s", file, tag, msg);
}

static int cfg_fail_at(struct cfg_ctx *c, struct config_pos pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int cfg_fail_at(struct cfg_ctx *c, struct config_pos pos, const char *fmt, ...)
{
    va_list ap;

    if (c->err)
        return -1; /* the first error wins */
    va_start(ap, fmt);
    c->err = cfg_vformat(c->file, pos, "", fmt, ap);
    va_end(ap);
    return -1;
}

static int cfg_fail(struct cfg_ctx *c, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int cfg_fail(struct cfg_ctx *c, const yaml_node_t *n, const char *fmt, ...)
{
    va_list ap;

    if (c->err)
        return -1;
    va_start(ap, fmt);
    c->err = cfg_vformat(c->file, cfg_pos(n), "", fmt, ap);
    va_end(ap);
    return -1;
}

static void cfg_warn_add(struct cfg_ctx *c, char *text)
{
    struct config *cfg = c->cfg;
    if (cfg->nwarnings == c->warn_cap) {
        c->warn_cap = c->warn_cap ? c->warn_cap * 2 : 8;
        cfg->warnings = xrealloc(cfg->warnings, c->warn_cap * sizeof(*cfg->warnings));
    }
    cfg->warnings[cfg->nwarnings++].text = text;
}

static void cfg_warn_at(struct cfg_ctx *c, struct config_pos pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void cfg_warn_at(struct cfg_ctx *c, struct config_pos pos, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    cfg_warn_add(c, cfg_vformat(c->file, pos, "warning: ", fmt, ap));
    va_end(ap);
}

static void cfg_warn(struct cfg_ctx *c, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void cfg_warn(struct cfg_ctx *c, const yaml_node_t *n, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    cfg_warn_add(c, cfg_vformat(c->file, cfg_pos(n), "warning: ", fmt, ap));
    va_end(ap);
}

static const char *cfg_type_name(const yaml_node_t *n)
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

static yaml_node_t *cfg_node(struct cfg_ctx *c, int id)
{
    return yaml_document_get_node(c->doc, id);
}

/*
 * The text of a scalar node, or NULL after an error when the node is a list
 * or map, empty, or holds a NUL byte. what names the key in messages.
 */
static const char *cfg_scalar(struct cfg_ctx *c, const yaml_node_t *n, const char *what)
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
static int cfg_map_check(struct cfg_ctx *c, const yaml_node_t *n, const char *what,
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
static yaml_node_t *cfg_map_get(struct cfg_ctx *c, const yaml_node_t *n, const char *key)
{
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = cfg_node(c, p->key);
        if (strcmp((const char *)k->data.scalar.value, key) == 0)
            return cfg_node(c, p->value);
    }
    return NULL;
}

/* The key node of key in the map n (for messages about the key itself). */
static yaml_node_t *cfg_map_key(struct cfg_ctx *c, const yaml_node_t *n, const char *key)
{
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = cfg_node(c, p->key);
        if (strcmp((const char *)k->data.scalar.value, key) == 0)
            return k;
    }
    return NULL;
}

static void cfg_what(char *buf, const char *prefix, const char *key)
{
    cfg_bprintf(buf, CFG_MAX_WHAT, "%s%s%s", prefix, *prefix ? "." : "", key);
}

/* ------------------------------------------------------------ typed values */

static int cfg_get_bool(struct cfg_ctx *c, const yaml_node_t *map, const char *prefix,
                        const char *key, bool *out)
{
    char what[CFG_MAX_WHAT];
    yaml_node_t *n = cfg_map_get(c, map, key);
    const char *s;

    if (!n)
        return 0;
    cfg_what(what, prefix, key);
    s = cfg_scalar(c, n, what);
    if (!s)
        return -1;
    if (util_strcaseeq(s, "true") || util_strcaseeq(s, "yes")) {
        *out = true;
        return 0;
    }
    if (util_strcaseeq(s, "false") || util_strcaseeq(s, "no")) {
        *out = false;
        return 0;
    }
    return cfg_fail(c, n, "%s must be true or false (yes/no also work), got '%.64s'", what, s);
}

static int cfg_get_uint(struct cfg_ctx *c, const yaml_node_t *map, const char *prefix,
                        const char *key, uint64_t min, uint64_t max, uint64_t *out)
{
    char what[CFG_MAX_WHAT];
    yaml_node_t *n = cfg_map_get(c, map, key);
    const char *s;
    uint64_t v;

    if (!n)
        return 0;
    cfg_what(what, prefix, key);
    s = cfg_scalar(c, n, what);
    if (!s)
        return -1;
    if (util_parse_u64(s, max, &v) < 0 || v < min)
        return cfg_fail(c, n, "%s must be a whole number from %llu to %llu, got '%.64s'", what,
                        (unsigned long long)min, (unsigned long long)max, s);
    *out = v;
    return 0;
}

static int cfg_get_duration(struct cfg_ctx *c, const yaml_node_t *map, const char *prefix,
                            const char *key, bool allow_zero, int64_t *out)
{
    char what[CFG_MAX_WHAT];
    yaml_node_t *n = cfg_map_get(c, map, key);
    const char *s;
    uint64_t bare;
    int64_t v;

    if (!n)
        return 0;
    cfg_what(what, prefix, key);
    s = cfg_scalar(c, n, what);
    if (!s)
        return -1;
    if (util_parse_duration_ms(s, &v) < 0) {
        if (util_parse_u64(s, UINT64_MAX, &bare) == 0)
            return cfg_fail(c, n, "%s needs a unit: write %.32ss (or ms, m, h)", what, s);
        return cfg_fail(c, n, "%s must be a duration like 500ms, 10s, 5m or 1h, got '%.64s'", what,
                        s);
    }
    if (v == 0 && !allow_zero)
        return cfg_fail(c, n, "%s must be longer than 0", what);
    *out = v;
    return 0;
}

static int cfg_get_rate(struct cfg_ctx *c, const yaml_node_t *map, const char *prefix,
                        const char *key, bool *given, bool *off, double *per_sec)
{
    char what[CFG_MAX_WHAT];
    yaml_node_t *n = cfg_map_get(c, map, key);
    const char *s;

    if (!n)
        return 0;
    cfg_what(what, prefix, key);
    s = cfg_scalar(c, n, what);
    if (!s)
        return -1;
    if (util_parse_rate(s, per_sec, off) < 0)
        return cfg_fail(
            c, n, "%s must be a rate like 100/min, 10/s or 1000/h (or off), got '%.64s'", what, s);
    if (given)
        *given = true;
    return 0;
}

/* A copy of a string value; *out untouched when the key is absent. */
static int cfg_get_str(struct cfg_ctx *c, const yaml_node_t *map, const char *prefix,
                       const char *key, char **out, yaml_node_t **node)
{
    char what[CFG_MAX_WHAT];
    yaml_node_t *n = cfg_map_get(c, map, key);
    const char *s;

    if (node)
        *node = n;
    if (!n)
        return 0;
    cfg_what(what, prefix, key);
    s = cfg_scalar(c, n, what);
    if (!s)
        return -1;
    free(*out);
    *out = xstrdup(s);
    return 0;
}

/* ------------------------------------------------------- names and hosts */

/* Label and name rules are hostname.c's, shared with hostmap and the CA. */
static bool cfg_label_ok(const char *s, size_t n)
{
    return hostname_label_ok(s, n);
}

/* A configured name: lowercase LDH labels, no trailing dot, never an IP address. */
static bool cfg_dns_name_ok(const char *s)
{
    return hostname_is_config_name(s);
}

/* Names of credentials and ids of clients: [A-Za-z0-9._-]{1,64}. */
static bool cfg_ident_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > CFG_MAX_NAME_LEN)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

static bool cfg_is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
}

static void cfg_lower(char *s)
{
    for (; *s; s++) {
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
    }
}

#define CFG_ATLASSIAN_SUFFIX ".atlassian.net"

char *config_normalize_domain(const char *in, bool *changed)
{
    const char *p = in, *end;
    char *s;
    size_t n;

    if (changed)
        *changed = false;
    if (!in)
        return NULL;
    while (cfg_is_space(*p))
        p++;
    end = p + strlen(p);
    while (end > p && cfg_is_space(end[-1]))
        end--;
    s = xstrndup(p, (size_t)(end - p));
    cfg_lower(s);
    if (strncmp(s, "https://", 8) == 0)
        memmove(s, s + 8, strlen(s + 8) + 1);
    else if (strncmp(s, "http://", 7) == 0)
        memmove(s, s + 7, strlen(s + 7) + 1);
    s[strcspn(s, "/?#")] = '\0';
    n = strlen(s);
    if (n > 0 && s[n - 1] == '.')
        s[--n] = '\0';
    if (n > strlen(CFG_ATLASSIAN_SUFFIX) &&
        strcmp(s + n - strlen(CFG_ATLASSIAN_SUFFIX), CFG_ATLASSIAN_SUFFIX) == 0)
        s[n - strlen(CFG_ATLASSIAN_SUFFIX)] = '\0';
    if (!cfg_label_ok(s, strlen(s))) {
        free(s);
        return NULL;
    }
    if (changed)
        *changed = strcmp(s, in) != 0;
    return s;
}

/* ---------------------------------------------------------------- listen */

void config_listen_clear(struct config_listen *l)
{
    if (!l)
        return;
    free(l->text);
    free(l->host);
    free(l->path);
    memset(l, 0, sizeof(*l));
}

static bool cfg_ipv4_loopback(const char *host)
{
    struct in_addr a;
    if (inet_pton(AF_INET, host, &a) != 1)
        return false;
    return (ntohl(a.s_addr) >> 24) == 127;
}

/* Parses a listen address; *why explains a failure in words for messages. */
static int cfg_listen_parse(const char *text, struct config_listen *out, const char **why)
{
    struct config_listen l;
    const char *colon, *portstr;
    uint64_t port;

    memset(&l, 0, sizeof(l));
    *why = NULL;
    if (strncmp(text, "unix:", 5) == 0) {
        const char *path = text + 5;
        if (!*path) {
            *why = "a unix socket needs a path, e.g. unix:/run/credproxy/proxy.sock";
            return -1;
        }
        if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
            *why = "the unix socket path is too long (at most 107 bytes)";
            return -1;
        }
        l.kind = CONFIG_LISTEN_UNIX;
        l.path = xstrdup(path);
        l.loopback = true;
        l.text = xstrdup(text);
        *out = l;
        return 0;
    }
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        struct in6_addr a6;
        if (!close || close[1] != ':') {
            *why = "write an IPv6 address as [ADDRESS]:PORT, e.g. [::1]:8080";
            return -1;
        }
        l.host = xstrndup(text + 1, (size_t)(close - text - 1));
        if (inet_pton(AF_INET6, l.host, &a6) != 1) {
            *why = "the address in brackets is not an IPv6 address";
            goto fail;
        }
        l.loopback =
            IN6_IS_ADDR_LOOPBACK(&a6) || (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
        portstr = close + 2;
    } else {
        colon = strrchr(text, ':');
        if (!colon) {
            *why = "the port is missing; write HOST:PORT, e.g. 127.0.0.1:8080";
            return -1;
        }
        if (memchr(text, ':', (size_t)(colon - text))) {
            *why = "write an IPv6 address in brackets, e.g. [::1]:8080";
            return -1;
        }
        if (colon == text) {
            *why = "the host is missing; use 127.0.0.1:PORT for local use or 0.0.0.0:PORT "
                   "for every interface";
            return -1;
        }
        l.host = xstrndup(text, (size_t)(colon - text));
        cfg_lower(l.host);
        if (!cfg_ipv4_loopback(l.host) && !cfg_dns_name_ok(l.host)) {
            struct in_addr a4;
            if (inet_pton(AF_INET, l.host, &a4) != 1) {
                *why = "the host must be an IP address or a host name";
                goto fail;
            }
        }
        l.loopback = cfg_ipv4_loopback(l.host) || strcmp(l.host, "localhost") == 0;
        portstr = colon + 1;
    }
    if (util_parse_u64(portstr, 65535, &port) < 0) {
        *why = "the port must be a number from 0 to 65535";
        goto fail;
    }
    l.kind = CONFIG_LISTEN_TCP;
    l.port = (int)port;
    l.text = xstrdup(text);
    *out = l;
    return 0;
fail:
    config_listen_clear(&l);
    return -1;
}

int config_parse_listen(const char *text, struct config_listen *out)
{
    const char *why;
    if (!text || !out)
        return -1;
    return cfg_listen_parse(text, out, &why);
}

static bool cfg_is_wildcard(const char *host)
{
    return strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0;
}

/* Would binding both addresses collide? Port 0 (any free port) never does. */
static bool cfg_listen_same(const struct config_listen *a, const struct config_listen *b)
{
    if (a->kind != b->kind)
        return false;
    if (a->kind == CONFIG_LISTEN_UNIX)
        return strcmp(a->path, b->path) == 0;
    if (a->port == 0 || a->port != b->port)
        return false;
    return strcmp(a->host, b->host) == 0 || cfg_is_wildcard(a->host) || cfg_is_wildcard(b->host);
}

static int cfg_listen_node(struct cfg_ctx *c, const yaml_node_t *n, const char *what,
                           struct config_listen *out)
{
    const char *s = cfg_scalar(c, n, what);
    const char *why;

    if (!s)
        return -1;
    if (cfg_listen_parse(s, out, &why) < 0)
        return cfg_fail(c, n, "%s '%.200s' is not a listen address: %s", what, s, why);
    out->pos = cfg_pos(n);
    return 0;
}

/* ---------------------------------------------------------------- secrets */

/* What kind of secret, for messages: "credential 'svc'" + "token". */
struct cfg_secret_what {
    const char *owner;  /* "credential 'svc'" or "client 'bot'" */
    const char *noun;   /* "token" or "key" */
    const char *prefix; /* "credentials.svc" or "clients[0]" */
    const char *k_env, *k_file, *k_inline;
};

/* Conventional environment variable names are safe to echo; anything else might be a pasted token.
 */
static bool cfg_env_name_showable(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 48 || (s[0] >= '0' && s[0] <= '9'))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return false;
    }
    return true;
}

static bool cfg_env_name_ok(const char *s)
{
    if (!s[0] || (s[0] >= '0' && s[0] <= '9'))
        return false;
    for (const char *p = s; *p; p++) {
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
              *p == '_'))
            return false;
    }
    return true;
}

/* A path is echoed only when it looks like one, in case the secret was pasted instead. */
static bool cfg_path_showable(const char *s)
{
    return strlen(s) <= 512 && (strchr(s, '/') || strchr(s, '.'));
}

/*
 * Checks secret bytes (after the one trailing newline of a file was cut):
 * not empty, not too long, no leading/trailing white space, no control
 * characters. from describes the source ("environment variable X").
 * Never puts a byte of the secret into the message.
 */
static int cfg_secret_check(struct cfg_ctx *c, const yaml_node_t *n,
                            const struct cfg_secret_what *w, const char *from, const char *s,
                            size_t len)
{
    if (len == 0)
        return cfg_fail(c, n, "%s: the %s from %s is empty", w->owner, w->noun, from);
    if (len > CONFIG_MAX_SECRET_LEN)
        return cfg_fail(c, n,
                        "%s: the %s from %s is longer than %d bytes; check that it is the "
                        "%s",
                        w->owner, w->noun, from, CONFIG_MAX_SECRET_LEN, w->noun);
    if (strlen(s) != len)
        return cfg_fail(c, n,
                        "%s: the %s from %s contains a NUL byte (the %s itself is not "
                        "shown)",
                        w->owner, w->noun, from, w->noun);
    if (cfg_is_space(s[0]) || cfg_is_space(s[len - 1]))
        return cfg_fail(c, n,
                        "%s: the %s from %s has leading or trailing white space; remove it "
                        "(the %s itself is not shown)",
                        w->owner, w->noun, from, w->noun);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7f)
            return cfg_fail(c, n,
                            "%s: the %s from %s contains a control character (such as a line "
                            "break); it must be a single line (the %s itself is not shown)",
                            w->owner, w->noun, from, w->noun);
    }
    return 0;
}

/*
 * Reads a secret file into a new string (caller owns; zero with
 * util_free_secret). Cuts one trailing "\n" or "\r\n". Warns when the mode
 * lets group or others in. Returns NULL after an error.
 */
static char *cfg_secret_read_file(struct cfg_ctx *c, const yaml_node_t *n,
                                  const struct cfg_secret_what *w, const char *path)
{
    char what[CFG_MAX_WHAT], from[600];
    bool show = cfg_path_showable(path);
    char *buf = NULL;
    size_t len = 0;
    unsigned mode = 0;
    int errnum = 0;

    cfg_what(what, w->prefix, w->k_file);
    cfg_bprintf(from, sizeof(from), "%s", path);
    /* Room for the secret plus a trailing "\r\n"; longer is refused below. */
    switch (util_read_file(path, CONFIG_MAX_SECRET_LEN + 2, &buf, &len, &mode, &errnum)) {
    case UTIL_READ_OK:
        break;
    case UTIL_READ_NOT_REGULAR:
        cfg_fail(c, n, "%s: %s %s is not a regular file", w->owner, w->k_file,
                 show ? path : "(value not shown)");
        return NULL;
    case UTIL_READ_TOO_LARGE:
        cfg_fail(c, n, "%s: the %s from %s is longer than %d bytes; check that it is the %s",
                 w->owner, w->noun, from, CONFIG_MAX_SECRET_LEN, w->noun);
        return NULL;
    default:
        if (errnum == 0)
            errnum = ENOENT;
        if (show)
            cfg_fail(c, n, "%s: cannot read %s %s: %s", w->owner, w->k_file, path,
                     strerror(errnum));
        else
            cfg_fail(c, n,
                     "%s: cannot read %s: %s (the value is not shown in case it is the %s "
                     "itself; %s takes a file path)",
                     w->owner, what, strerror(errnum), w->noun, w->k_file);
        return NULL;
    }
    if (len > 0 && buf[len - 1] == '\n') {
        len--;
        if (len > 0 && buf[len - 1] == '\r')
            len--;
        buf[len] = '\0';
    }
    if (cfg_secret_check(c, n, w, from, buf, len) < 0) {
        util_secure_zero(buf, len);
        free(buf);
        return NULL;
    }
    if (util_secret_mode_check(mode, UTIL_SECRET_MOUNTED) != UTIL_MODE_OK)
        cfg_warn(c, n, "%s: %s %s is readable by group or others (mode %04o); run chmod 600 %s",
                 w->owner, w->k_file, path, mode, path);
    return buf;
}

/*
 * Exactly one of the env/file/inline keys in map m; reads the secret.
 * On success *secret, *source and *ref are set (caller owns the strings).
 */
static int cfg_secret_load(struct cfg_ctx *c, const yaml_node_t *m, const struct cfg_secret_what *w,
                           char **secret, enum config_secret_source *source, char **ref)
{
    const char *keys[3] = {w->k_env, w->k_file, w->k_inline};
    yaml_node_t *nodes[3], *n = NULL;
    char what[CFG_MAX_WHAT];
    int which = -1;
    const char *v;

    for (int i = 0; i < 3; i++) {
        nodes[i] = cfg_map_get(c, m, keys[i]);
        if (!nodes[i])
            continue;
        if (which >= 0)
            return cfg_fail(c, cfg_map_key(c, m, keys[i]),
                            "%s has both %s and %s; give exactly one of %s, %s or %s", w->owner,
                            keys[which], keys[i], keys[0], keys[1], keys[2]);
        which = i;
    }
    if (which < 0)
        return cfg_fail(c, m, "%s has no %s: add %s: VARIABLE (recommended), %s: PATH or %s: ...",
                        w->owner, w->noun, keys[0], keys[1], keys[2]);
    n = nodes[which];
    cfg_what(what, w->prefix, keys[which]);
    if (n->type != YAML_SCALAR_NODE)
        return cfg_fail(c, n, "%s must be a single value, not %s", what, cfg_type_name(n));
    if (n->data.scalar.length == 0)
        return cfg_fail(c, n, "%s has no value; give one or remove the key", what);
    v = (const char *)n->data.scalar.value;

    if (which == 0) {
        const char *val;
        char from[128];
        if (!cfg_env_name_ok(v) || strlen(v) != n->data.scalar.length)
            return cfg_fail(c, n,
                            "%s must be the NAME of an environment variable (letters, digits, "
                            "_), not the %s itself (the value is not shown)",
                            what, w->noun);
        if (!cfg_env_name_showable(v))
            cfg_bprintf(from, sizeof(from), "the environment variable named by %s", what);
        else
            cfg_bprintf(from, sizeof(from), "environment variable %s", v);
        val = getenv(v);
        if (!val)
            return cfg_fail(c, n, "%s: %s is not set; export it before starting credproxy",
                            w->owner, from);
        if (!*val)
            return cfg_fail(c, n, "%s: %s is empty; export the %s in it", w->owner, from, w->noun);
        if (cfg_secret_check(c, n, w, from, val, strlen(val)) < 0)
            return -1;
        *secret = xstrdup(val);
        *source = CONFIG_SECRET_ENV;
        *ref = xstrdup(v);
        return 0;
    }
    if (which == 1) {
        if (strlen(v) != n->data.scalar.length)
            return cfg_fail(c, n, "%s contains a NUL character", what);
        *secret = cfg_secret_read_file(c, n, w, v);
        if (!*secret)
            return -1;
        *source = CONFIG_SECRET_FILE;
        *ref = xstrdup(v);
        return 0;
    }
    {
        char from[64];
        cfg_bprintf(from, sizeof(from), "the configuration file (%s:)", w->k_inline);
        if (cfg_secret_check(c, n, w, from, v, n->data.scalar.length) < 0)
            return -1;
    }
    cfg_warn(c, cfg_map_key(c, m, keys[2]),
             "%s: the %s is written in the configuration file (%s:); prefer %s or %s and keep "
             "the file private",
             w->owner, w->noun, keys[2], keys[0], keys[1]);
    *secret = xstrdup(v);
    *source = CONFIG_SECRET_INLINE;
    *ref = NULL;
    return 0;
}

/* ------------------------------------------------------------ credentials */

static const char *const cfg_cred_keys[] = {
    "type", "email", "token_env", "token_file", "token", "expires", "rate_limit", "burst", NULL};

static int cfg_email_check(struct cfg_ctx *c, const yaml_node_t *n, const char *owner,
                           const char *e)
{
    size_t len = strlen(e);
    if (cfg_is_space(e[0]) || cfg_is_space(e[len - 1]))
        return cfg_fail(c, n, "%s: the email has leading or trailing white space; remove it",
                        owner);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)e[i];
        if (ch <= 0x20 || ch == 0x7f)
            return cfg_fail(c, n,
                            "%s: the email contains white space or a control character; "
                            "remove it",
                            owner);
    }
    if (!strchr(e, '@'))
        return cfg_fail(c, n,
                        "%s: email '%.200s' is not an email address (no '@'); give the Atlassian "
                        "account's email",
                        owner, e);
    if (strchr(e, ':'))
        return cfg_fail(c, n, "%s: the email contains ':', which Basic authentication cannot carry",
                        owner);
    return 0;
}

static void cfg_expiry_warn(struct cfg_ctx *c, const yaml_node_t *n, const char *owner,
                            const char *date, int64_t expires)
{
    int64_t now = util_wall_time();

    if (now >= expires) {
        cfg_warn(c, n,
                 "%s: token expired on %s: create a new API token at Atlassian and replace it; "
                 "/readyz reports not ready",
                 owner, date);
        return;
    }
    int64_t days = (expires - now + 86399) / 86400;
    if (days <= CONFIG_EXPIRY_WARN_DAYS)
        cfg_warn(c, n,
                 "%s: token expires on %s (%lld day%s left); create a new API token at "
                 "Atlassian and replace it before then",
                 owner, date, (long long)days, days == 1 ? "" : "s");
}

static int cfg_credential(struct cfg_ctx *c, const yaml_node_t *key, const yaml_node_t *m,
                          struct config_credential *cr)
{
    char prefix[CFG_MAX_WHAT], owner[CFG_MAX_WHAT];
    const char *name = (const char *)key->data.scalar.value;
    yaml_node_t *n;
    uint64_t burst = CONFIG_DEFAULT_BURST;

    if (!cfg_ident_ok(name))
        return cfg_fail(c, key,
                        "credential name '%.64s' may only use letters, digits, '.', '_' and '-' "
                        "(at most %d)",
                        name, CFG_MAX_NAME_LEN);
    cr->name = xstrdup(name);
    cr->pos = cfg_pos(key);
    cr->rate_per_sec = CONFIG_DEFAULT_RATE_PER_SEC;
    cr->burst = CONFIG_DEFAULT_BURST;
    cfg_bprintf(prefix, sizeof(prefix), "credentials.%s", name);
    cfg_bprintf(owner, sizeof(owner), "credential '%s'", name);
    if (cfg_map_check(c, m, prefix, cfg_cred_keys) < 0)
        return -1;

    n = cfg_map_get(c, m, "type");
    cr->type = CONFIG_CRED_BASIC;
    if (n) {
        const char *t = cfg_scalar(c, n, "type");
        if (!t)
            return -1;
        if (strcmp(t, "basic") == 0)
            cr->type = CONFIG_CRED_BASIC;
        else if (strcmp(t, "bearer") == 0)
            cr->type = CONFIG_CRED_BEARER;
        else
            return cfg_fail(c, n, "%s.type must be basic or bearer, got '%.64s'", prefix, t);
    }

    n = cfg_map_get(c, m, "email");
    if (cr->type == CONFIG_CRED_BEARER && n)
        return cfg_fail(c, cfg_map_key(c, m, "email"),
                        "%s.email is only for type: basic; remove it (bearer sends the token "
                        "alone)",
                        prefix);
    if (cr->type == CONFIG_CRED_BASIC) {
        if (!n)
            return cfg_fail(c, m,
                            "%s has no email: type basic needs the Atlassian account's email "
                            "(email: you@example.com)",
                            owner);
        if (cfg_get_str(c, m, prefix, "email", &cr->email, NULL) < 0)
            return -1;
        if (cfg_email_check(c, n, owner, cr->email) < 0)
            return -1;
    }

    struct cfg_secret_what w = {owner, "token", prefix, "token_env", "token_file", "token"};
    if (cfg_secret_load(c, m, &w, &cr->secret, &cr->source, &cr->source_ref) < 0)
        return -1;
    if (cr->type == CONFIG_CRED_BEARER && strchr(cr->secret, ' '))
        return cfg_fail(c, cfg_map_get(c, m, "token_env") ?: cfg_map_get(c, m, "token_file")
                                                               ?: cfg_map_get(c, m, "token"),
                        "%s: a bearer token cannot contain spaces (the token itself is not shown)",
                        owner);

    n = cfg_map_get(c, m, "expires");
    if (n) {
        char what[CFG_MAX_WHAT];
        const char *d;
        cfg_what(what, prefix, "expires");
        d = cfg_scalar(c, n, what);
        if (!d)
            return -1;
        if (util_parse_date(d, &cr->expires) < 0)
            return cfg_fail(c, n, "%s must be a date YYYY-MM-DD, e.g. 2027-11-28, got '%.64s'",
                            what, d);
        cfg_expiry_warn(c, n, owner, d, cr->expires);
    }
    if (cfg_get_rate(c, m, prefix, "rate_limit", NULL, &cr->rate_off, &cr->rate_per_sec) < 0)
        return -1;
    if (cfg_get_uint(c, m, prefix, "burst", 1, CFG_MAX_BURST, &burst) < 0)
        return -1;
    cr->burst = (unsigned)burst;
    return 0;
}

static int cfg_credentials(struct cfg_ctx *c, const yaml_node_t *root)
{
    struct config *cfg = c->cfg;
    yaml_node_t *m = cfg_map_get(c, root, "credentials");
    size_t count;

    if (!m)
        return cfg_fail(c, root,
                        "credentials is missing: add at least one, e.g. credentials: {svc: "
                        "{email: you@example.com, token_env: ATLASSIAN_API_TOKEN}}");
    if (m->type != YAML_MAPPING_NODE)
        return cfg_fail(c, m, "credentials must be a map of name: {email, token_env, ...}, not %s",
                        cfg_type_name(m));
    count = (size_t)(m->data.mapping.pairs.top - m->data.mapping.pairs.start);
    if (count == 0)
        return cfg_fail(c, m, "credentials is empty: add at least one credential");
    if (count > CONFIG_MAX_CREDENTIALS)
        return cfg_fail(c, m, "too many credentials (%zu); at most %d", count,
                        CONFIG_MAX_CREDENTIALS);
    cfg->credentials = xcalloc(count, sizeof(*cfg->credentials));
    for (size_t i = 0; i < count; i++) {
        yaml_node_pair_t *p = &m->data.mapping.pairs.start[i];
        yaml_node_t *key = cfg_node(c, p->key), *val = cfg_node(c, p->value);
        if (key->type != YAML_SCALAR_NODE)
            return cfg_fail(c, key, "credential names must be plain names");
        for (size_t j = 0; j < i; j++) {
            if (strcmp(cfg->credentials[j].name, (const char *)key->data.scalar.value) == 0)
                return cfg_fail(c, key,
                                "duplicate credential '%s' (first given at line %d); rename or "
                                "remove one",
                                cfg->credentials[j].name, cfg->credentials[j].pos.line);
        }
        cfg->ncredentials = i + 1;
        if (cfg_credential(c, key, val, &cfg->credentials[i]) < 0)
            return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ sites */

static const char *const cfg_site_keys[] = {"domain", "host",   "credential", "port",
                                            "alias",  "listen", NULL};

/*
 * For "host: https://user@jira.example.org:8443/x": the bare host to
 * suggest (new string) and whether a port was written, or NULL.
 */
static char *cfg_host_suggest(const char *s, bool *had_port)
{
    const char *p = strstr(s, "://");
    size_t alen;
    char *h;

    p = p ? p + 3 : s;
    alen = strcspn(p, "/?#");
    const char *at = memchr(p, '@', alen);
    if (at) {
        alen -= (size_t)(at + 1 - p);
        p = at + 1;
    }
    h = xstrndup(p, alen);
    *had_port = strchr(h, ':') != NULL;
    h[strcspn(h, ":")] = '\0';
    cfg_lower(h);
    if (*h && h[strlen(h) - 1] == '.')
        h[strlen(h) - 1] = '\0';
    if (!cfg_dns_name_ok(h)) {
        free(h);
        return NULL;
    }
    return h;
}

static int cfg_site(struct cfg_ctx *c, size_t idx, const yaml_node_t *m, struct config_site *st)
{
    struct config *cfg = c->cfg;
    char prefix[CFG_MAX_WHAT], what[CFG_MAX_WHAT];
    yaml_node_t *dn, *hn, *n;
    uint64_t port = 443;

    cfg_bprintf(prefix, sizeof(prefix), "sites[%zu]", idx);
    st->port = 443;
    st->pos = cfg_pos(m);
    if (cfg_map_check(c, m, prefix, cfg_site_keys) < 0)
        return -1;
    dn = cfg_map_get(c, m, "domain");
    hn = cfg_map_get(c, m, "host");
    if (dn && hn)
        return cfg_fail(c, cfg_map_key(c, m, "host"),
                        "%s has both domain and host; give domain: NAME for NAME.atlassian.net "
                        "or host: FULL.HOST.NAME, not both",
                        prefix);
    if (!dn && !hn)
        return cfg_fail(c, m,
                        "%s has neither domain nor host; add domain: acme (for "
                        "acme.atlassian.net) or host: jira.example.org",
                        prefix);
    if (dn) {
        bool changed;
        const char *s;
        cfg_what(what, prefix, "domain");
        s = cfg_scalar(c, dn, what);
        if (!s)
            return -1;
        st->domain = config_normalize_domain(s, &changed);
        if (!st->domain)
            return cfg_fail(c, dn,
                            "%s '%.200s' is not an Atlassian Cloud site name; write the part "
                            "before .atlassian.net (domain: acme), or use host: for other hosts",
                            what, s);
        if (changed)
            cfg_warn(c, dn, "%s '%.200s' normalized to '%s'", what, s, st->domain);
        st->host = xasprintf("%s%s", st->domain, CFG_ATLASSIAN_SUFFIX);
    } else {
        const char *s;
        size_t n2;
        cfg_what(what, prefix, "host");
        s = cfg_scalar(c, hn, what);
        if (!s)
            return -1;
        st->host = xstrdup(s);
        cfg_lower(st->host);
        n2 = strlen(st->host);
        if (n2 > 1 && st->host[n2 - 1] == '.')
            st->host[n2 - 1] = '\0';
        if (strpbrk(st->host, ":/@?# \t")) {
            bool had_port = false;
            char *sug = cfg_host_suggest(st->host, &had_port);
            if (sug) {
                cfg_fail(c, hn,
                         "%s '%.200s' must be a bare host name (no scheme, path, port or user); "
                         "write host: %s%s",
                         what, s, sug, had_port ? " and put the port in port:" : "");
                free(sug);
                return -1;
            }
            return cfg_fail(c, hn,
                            "%s '%.200s' must be a bare host name (no scheme, path, port or user)",
                            what, s);
        }
        if (!cfg_dns_name_ok(st->host)) {
            struct in6_addr a6;
            struct in_addr a4;
            if (inet_pton(AF_INET, st->host, &a4) == 1 || inet_pton(AF_INET6, st->host, &a6) == 1)
                return cfg_fail(c, hn,
                                "%s '%.200s' is an IP address; a site must be a host name (the "
                                "interception CA certifies names): name it and map the name to "
                                "the address with upstream.connect_to",
                                what, s);
            return cfg_fail(c, hn, "%s '%.200s' is not a valid host name", what, s);
        }
    }

    n = cfg_map_get(c, m, "credential");
    if (!n)
        return cfg_fail(c, m,
                        "%s has no credential; add credential: NAME naming one of "
                        "credentials",
                        prefix);
    cfg_what(what, prefix, "credential");
    const char *cname = cfg_scalar(c, n, what);
    if (!cname)
        return -1;
    int ci = config_credential_index(cfg, cname);
    if (ci < 0) {
        char names[512];
        size_t off = 0;
        names[0] = '\0';
        for (size_t i = 0; i < cfg->ncredentials; i++) {
            int w = cfg_bprintf(names + off, sizeof(names) - off, "%s%s", i ? ", " : "",
                                cfg->credentials[i].name);
            if (w > 0 && (size_t)w < sizeof(names) - off)
                off += (size_t)w;
        }
        return cfg_fail(c, n, "%s '%.64s' is not defined; defined credentials: %s", what, cname,
                        names);
    }
    st->credential = (size_t)ci;

    if (cfg_get_uint(c, m, prefix, "port", 1, 65535, &port) < 0)
        return -1;
    st->port = (int)port;

    if (cfg_get_str(c, m, prefix, "alias", &st->alias, &n) < 0)
        return -1;
    if (st->alias) {
        cfg_lower(st->alias);
        if (!cfg_label_ok(st->alias, strlen(st->alias)))
            return cfg_fail(c, n,
                            "%s.alias '%.64s' must be one DNS label (letters, digits, '-'), e.g. "
                            "alias: corp for corp.localhost",
                            prefix, st->alias);
    }

    n = cfg_map_get(c, m, "listen");
    if (n) {
        cfg_what(what, prefix, "listen");
        st->listen = xcalloc(1, sizeof(*st->listen));
        if (cfg_listen_node(c, n, what, st->listen) < 0)
            return -1;
    }
    return 0;
}

/* A site's name in gateway Host headers: its domain, else nothing. */
static const char *cfg_site_name(const struct config_site *s)
{
    return s->domain;
}

static int cfg_sites(struct cfg_ctx *c, const yaml_node_t *root)
{
    struct config *cfg = c->cfg;
    yaml_node_t *l = cfg_map_get(c, root, "sites");
    size_t count;

    if (!l)
        return cfg_fail(c, root,
                        "sites is missing: add at least one, e.g. sites: [{domain: acme, "
                        "credential: svc}]");
    if (l->type != YAML_SEQUENCE_NODE)
        return cfg_fail(c, l, "sites must be a list (- domain: acme ...), not %s",
                        cfg_type_name(l));
    count = (size_t)(l->data.sequence.items.top - l->data.sequence.items.start);
    if (count == 0)
        return cfg_fail(c, l, "sites is empty: add at least one site");
    if (count > CONFIG_MAX_SITES)
        return cfg_fail(c, l, "too many sites (%zu); at most %d", count, CONFIG_MAX_SITES);
    cfg->sites = xcalloc(count, sizeof(*cfg->sites));
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *m = cfg_node(c, l->data.sequence.items.start[i]);
        struct config_site *s = &cfg->sites[i];
        cfg->nsites = i + 1;
        if (cfg_site(c, i, m, s) < 0)
            return -1;
        for (size_t j = 0; j < i; j++) {
            struct config_site *o = &cfg->sites[j];
            if (strcmp(o->host, s->host) == 0 && o->port == s->port)
                return cfg_fail(c, m, "sites[%zu] repeats sites[%zu] (%s:%d); remove one", i, j,
                                s->host, s->port);
            if (s->alias && o->alias && strcmp(s->alias, o->alias) == 0)
                return cfg_fail(c, m,
                                "sites[%zu].alias '%s' is already used by sites[%zu]; "
                                "aliases must be unique",
                                i, s->alias, j);
            if (s->alias && cfg_site_name(o) && strcmp(s->alias, cfg_site_name(o)) == 0)
                return cfg_fail(c, m,
                                "sites[%zu].alias '%s' is the domain of sites[%zu]; "
                                "%s.localhost would be ambiguous, choose another alias",
                                i, s->alias, j, s->alias);
            if (o->alias && cfg_site_name(s) && strcmp(o->alias, cfg_site_name(s)) == 0)
                return cfg_fail(c, m,
                                "sites[%zu].domain '%s' is the alias of sites[%zu]; "
                                "%s.localhost would be ambiguous, change that alias",
                                i, s->domain, j, s->domain);
            if (s->listen && o->listen && cfg_listen_same(s->listen, o->listen))
                return cfg_fail_at(c, s->listen->pos,
                                   "sites[%zu].listen %s is also the listen address of sites[%zu]; "
                                   "each site needs its own",
                                   i, s->listen->text, j);
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- clients */

static const char *const cfg_client_keys[] = {"id",         "key_env", "key_file", "key",
                                              "rate_limit", "burst",   NULL};

static int cfg_clients(struct cfg_ctx *c, const yaml_node_t *root)
{
    struct config *cfg = c->cfg;
    yaml_node_t *l = cfg_map_get(c, root, "clients");
    size_t count;

    if (!l)
        return 0;
    if (l->type == YAML_SCALAR_NODE && l->data.scalar.length == 0)
        return 0; /* "clients:" with nothing under it */
    if (l->type != YAML_SEQUENCE_NODE)
        return cfg_fail(c, l, "clients must be a list (- id: NAME ...), not %s", cfg_type_name(l));
    count = (size_t)(l->data.sequence.items.top - l->data.sequence.items.start);
    if (count > CONFIG_MAX_CLIENTS)
        return cfg_fail(c, l, "too many clients (%zu); at most %d", count, CONFIG_MAX_CLIENTS);
    if (count == 0)
        return 0;
    cfg->clients = xcalloc(count, sizeof(*cfg->clients));
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *m = cfg_node(c, l->data.sequence.items.start[i]), *n;
        struct config_client *cl = &cfg->clients[i];
        char prefix[CFG_MAX_WHAT], owner[CFG_MAX_WHAT], what[CFG_MAX_WHAT];
        uint64_t burst = CONFIG_DEFAULT_BURST;

        cfg->nclients = i + 1;
        cfg_bprintf(prefix, sizeof(prefix), "clients[%zu]", i);
        cl->pos = cfg_pos(m);
        cl->burst = CONFIG_DEFAULT_BURST;
        if (cfg_map_check(c, m, prefix, cfg_client_keys) < 0)
            return -1;
        n = cfg_map_get(c, m, "id");
        if (!n)
            return cfg_fail(c, m,
                            "%s has no id; add id: NAME (the user name in "
                            "Proxy-Authorization)",
                            prefix);
        if (cfg_get_str(c, m, prefix, "id", &cl->id, NULL) < 0)
            return -1;
        cfg_what(what, prefix, "id");
        if (!cfg_ident_ok(cl->id))
            return cfg_fail(c, n,
                            "%s '%.64s' may only use letters, digits, '.', '_' and '-' (at most "
                            "%d)",
                            what, cl->id, CFG_MAX_NAME_LEN);
        for (size_t j = 0; j < i; j++) {
            if (strcmp(cfg->clients[j].id, cl->id) == 0)
                return cfg_fail(c, n, "%s '%s' is already used by clients[%zu]; ids must be unique",
                                what, cl->id, j);
        }
        cfg_bprintf(owner, sizeof(owner), "client '%s'", cl->id);
        struct cfg_secret_what w = {owner, "key", prefix, "key_env", "key_file", "key"};
        if (cfg_secret_load(c, m, &w, &cl->key, &cl->source, &cl->source_ref) < 0)
            return -1;
        if (cfg_get_rate(c, m, prefix, "rate_limit", &cl->has_rate, &cl->rate_off,
                         &cl->rate_per_sec) < 0)
            return -1;
        if (cfg_get_uint(c, m, prefix, "burst", 1, CFG_MAX_BURST, &burst) < 0)
            return -1;
        cl->burst = (unsigned)burst;
    }
    return 0;
}

/* ------------------------------------------------------------ rate_limit */

static const char *const cfg_rl_keys[] = {"when_exhausted", "max_wait", "store", "max_queue", NULL};

/* "redis://HOST[:PORT][/DB]" -> host, port (default 6379), db. */
static int cfg_redis_parse(const char *s, char **host, int *port, int *db, const char **why)
{
    const char *p = s + strlen("redis://"), *hend, *rest;
    uint64_t v;

    *why = NULL;
    if (strncmp(s, "redis://", 8) != 0) {
        *why = "the scheme must be redis://";
        return -1;
    }
    if (strchr(p, '@')) {
        *why = "a password in the URL is not supported (it would be a secret in the file)";
        return -1;
    }
    if (*p == '[') {
        hend = strchr(p, ']');
        if (!hend) {
            *why = "an IPv6 address needs a closing ']'";
            return -1;
        }
        *host = xstrndup(p + 1, (size_t)(hend - p - 1));
        rest = hend + 1;
    } else {
        size_t n = strcspn(p, ":/");
        *host = xstrndup(p, n);
        rest = p + n;
    }
    if (!**host) {
        *why = "the host is missing";
        return -1;
    }
    *port = 6379;
    *db = 0;
    if (*rest == ':') {
        char buf[16];
        size_t n = strcspn(rest + 1, "/");
        if (n >= sizeof(buf)) {
            *why = "the port must be a number from 1 to 65535";
            return -1;
        }
        memcpy(buf, rest + 1, n);
        buf[n] = '\0';
        if (util_parse_u64(buf, 65535, &v) < 0 || v == 0) {
            *why = "the port must be a number from 1 to 65535";
            return -1;
        }
        *port = (int)v;
        rest += 1 + n;
    }
    if (*rest == '/') {
        if (rest[1] == '\0')
            return 0;
        if (util_parse_u64(rest + 1, CFG_MAX_REDIS_DB, &v) < 0) {
            *why = "the database after '/' must be a number, e.g. redis://127.0.0.1:6379/0";
            return -1;
        }
        *db = (int)v;
        return 0;
    }
    if (*rest) {
        *why = "unexpected text after the host and port";
        return -1;
    }
    return 0;
}

static int cfg_rate_limit(struct cfg_ctx *c, const yaml_node_t *root)
{
    struct config *cfg = c->cfg;
    yaml_node_t *m = cfg_map_get(c, root, "rate_limit"), *n;
    uint64_t q = CONFIG_DEFAULT_MAX_QUEUE;

    if (!m)
        return 0;
    if (cfg_map_check(c, m, "rate_limit", cfg_rl_keys) < 0)
        return -1;
    n = cfg_map_get(c, m, "when_exhausted");
    if (n) {
        const char *s = cfg_scalar(c, n, "rate_limit.when_exhausted");
        if (!s)
            return -1;
        if (strcmp(s, "queue") == 0)
            cfg->rate_limit.when_exhausted = CONFIG_RL_QUEUE;
        else if (strcmp(s, "reject") == 0)
            cfg->rate_limit.when_exhausted = CONFIG_RL_REJECT;
        else
            return cfg_fail(c, n, "rate_limit.when_exhausted must be queue or reject, got '%.64s'",
                            s);
    }
    if (cfg_get_duration(c, m, "rate_limit", "max_wait", true, &cfg->rate_limit.max_wait_ms) < 0)
        return -1;
    if (cfg_get_uint(c, m, "rate_limit", "max_queue", 0, CFG_MAX_QUEUE_LIMIT, &q) < 0)
        return -1;
    cfg->rate_limit.max_queue = (size_t)q;
    n = cfg_map_get(c, m, "store");
    if (n) {
        const char *s = cfg_scalar(c, n, "rate_limit.store"), *why;
        if (!s)
            return -1;
        if (strcmp(s, "local") != 0) {
            if (cfg_redis_parse(s, &cfg->rate_limit.redis_host, &cfg->rate_limit.redis_port,
                                &cfg->rate_limit.redis_db, &why) < 0)
                return cfg_fail(c, n,
                                "rate_limit.store must be local or redis://HOST:PORT[/DB]: "
                                "%s",
                                why);
            cfg->rate_limit.store = xstrdup(s);
        }
    }
    return 0;
}

/* --------------------------------------------------------------- upstream */

static const char *const cfg_upstream_keys[] = {"ca_file", "connect_to", "proxy", "connect_timeout",
                                                "timeout", "http2",      NULL};

/* Splits at ':' outside brackets into exactly 4 fields. */
static int cfg_connect_to_parse(const char *s, struct config_connect_to *ct, const char **why)
{
    const char *f[4];
    size_t fl[4];
    int nf = 0;
    const char *p = s, *start = s;
    int depth = 0;

    for (;; p++) {
        if (*p == '[')
            depth++;
        else if (*p == ']')
            depth--;
        if ((*p == ':' && depth == 0) || *p == '\0') {
            if (nf == 4) {
                *why = "it has more than 4 fields; write HOST:PORT:CONNECT-HOST:CONNECT-PORT";
                return -1;
            }
            f[nf] = start;
            fl[nf] = (size_t)(p - start);
            nf++;
            start = p + 1;
            if (!*p)
                break;
        }
    }
    if (nf != 4) {
        *why = "write HOST:PORT:CONNECT-HOST:CONNECT-PORT, e.g. "
               "acme.atlassian.net:443:127.0.0.1:8443";
        return -1;
    }
    for (int i = 1; i < 4; i += 2) {
        char buf[8];
        uint64_t v;
        if (fl[i] == 0)
            continue;
        if (fl[i] >= sizeof(buf)) {
            *why = "a port must be a number from 1 to 65535 (or empty for any)";
            return -1;
        }
        memcpy(buf, f[i], fl[i]);
        buf[fl[i]] = '\0';
        if (util_parse_u64(buf, 65535, &v) < 0 || v == 0) {
            *why = "a port must be a number from 1 to 65535 (or empty for any)";
            return -1;
        }
        if (i == 1)
            ct->port = (int)v;
        else
            ct->to_port = (int)v;
    }
    for (int i = 0; i < 4; i += 2) {
        const char *h = f[i];
        size_t n = fl[i];
        char *out;
        if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
            h++;
            n -= 2;
        }
        out = xstrndup(h, n);
        cfg_lower(out);
        if (*out && !cfg_dns_name_ok(out)) {
            struct in6_addr a6;
            struct in_addr a4;
            if (inet_pton(AF_INET6, out, &a6) != 1 && inet_pton(AF_INET, out, &a4) != 1) {
                free(out);
                *why = "a host must be a host name or an IP address (IPv6 in brackets)";
                return -1;
            }
        }
        if (i == 0)
            ct->host = out;
        else
            ct->to_host = out;
    }
    ct->text = xstrdup(s);
    return 0;
}

static void cfg_connect_to_clear(struct config_connect_to *ct)
{
    free(ct->text);
    free(ct->host);
    free(ct->to_host);
    memset(ct, 0, sizeof(*ct));
}

static int cfg_proxy_url_ok(const char *s)
{
    static const char *const schemes[] = {"http://", "https://", "socks5://", "socks5h://"};
    for (size_t i = 0; i < UTIL_ARRAY_LEN(schemes); i++) {
        size_t n = strlen(schemes[i]);
        if (strncmp(s, schemes[i], n) == 0) {
            const char *h = s + n;
            if (!*h || *h == '/' || *h == ':')
                return -1;
            for (const char *p = s; *p; p++) {
                if ((unsigned char)*p <= 0x20 || *p == 0x7f)
                    return -1;
            }
            return 0;
        }
    }
    return -1;
}

static int cfg_upstream(struct cfg_ctx *c, const yaml_node_t *root)
{
    struct config *cfg = c->cfg;
    yaml_node_t *m = cfg_map_get(c, root, "upstream"), *n;

    if (!m)
        return 0;
    if (cfg_map_check(c, m, "upstream", cfg_upstream_keys) < 0)
        return -1;
    if (cfg_get_str(c, m, "upstream", "ca_file", &cfg->upstream.ca_file, &n) < 0)
        return -1;
    if (cfg->upstream.ca_file && access(cfg->upstream.ca_file, R_OK) < 0)
        return cfg_fail(c, n, "upstream.ca_file %.300s cannot be read: %s", cfg->upstream.ca_file,
                        strerror(errno));
    n = cfg_map_get(c, m, "connect_to");
    if (n) {
        size_t count;
        if (n->type == YAML_SCALAR_NODE)
            return cfg_fail(c, n,
                            "upstream.connect_to must be a list (- HOST:PORT:TO-HOST:TO-PORT)"
                            ", not a single value");
        if (n->type != YAML_SEQUENCE_NODE)
            return cfg_fail(c, n, "upstream.connect_to must be a list, not %s", cfg_type_name(n));
        count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
        if (count > CONFIG_MAX_CONNECT_TO)
            return cfg_fail(c, n, "upstream.connect_to has %zu entries; at most %d", count,
                            CONFIG_MAX_CONNECT_TO);
        cfg->upstream.connect_to = xcalloc(count ? count : 1, sizeof(*cfg->upstream.connect_to));
        for (size_t i = 0; i < count; i++) {
            yaml_node_t *e = cfg_node(c, n->data.sequence.items.start[i]);
            char what[CFG_MAX_WHAT];
            const char *s, *why;
            cfg_bprintf(what, sizeof(what), "upstream.connect_to[%zu]", i);
            s = cfg_scalar(c, e, what);
            if (!s)
                return -1;
            cfg->upstream.nconnect_to = i + 1;
            if (cfg_connect_to_parse(s, &cfg->upstream.connect_to[i], &why) < 0)
                return cfg_fail(c, e, "%s '%.200s' is not valid: %s", what, s, why);
        }
    }
    n = cfg_map_get(c, m, "proxy");
    if (n) {
        const char *s = cfg_scalar(c, n, "upstream.proxy");
        if (!s)
            return -1;
        if (cfg_proxy_url_ok(s) < 0)
            return cfg_fail(c, n,
                            "upstream.proxy must be a URL starting with http://, https://, "
                            "socks5:// or socks5h://, e.g. http://proxy.example:3128");
        cfg->upstream.proxy = xstrdup(s);
    }
    if (cfg_get_duration(c, m, "upstream", "connect_timeout", false,
                         &cfg->upstream.connect_timeout_ms) < 0)
        return -1;
    if (cfg_get_duration(c, m, "upstream", "timeout", true, &cfg->upstream.timeout_ms) < 0)
        return -1;
    if (cfg_get_bool(c, m, "upstream", "http2", &cfg->upstream.http2) < 0)
        return -1;
    return 0;
}

/* -------------------------------------------------------------- the rest */

static const char *const cfg_top_keys[] = {"listen",
                                           "admin",
                                           "workers",
                                           "credentials",
                                           "sites",
                                           "unknown_hosts",
                                           "rate_limit",
                                           "clients",
                                           "require_client_auth",
                                           "allow_unauthenticated_remote",
                                           "upstream",
                                           "interception",
                                           "gateway",
                                           "shutdown_timeout",
                                           "log",
                                           NULL};
/* gateway.server_names: a list of host names (no port) that reach this proxy. */
static int cfg_parse_server_names(struct cfg_ctx *c, yaml_node_t *m, struct config *cfg)
{
    yaml_node_t *n = cfg_map_get(c, m, "server_names");
    size_t count;

    if (!n)
        return 0;
    if (n->type != YAML_SEQUENCE_NODE)
        return cfg_fail(c, n, "gateway.server_names must be a list of host names, not %s",
                        cfg_type_name(n));
    count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (count == 0 || count > CONFIG_MAX_SERVER_NAMES)
        return cfg_fail(c, n, "gateway.server_names needs 1 to %d names, got %zu",
                        CONFIG_MAX_SERVER_NAMES, count);
    cfg->gateway.server_names = xcalloc(count, sizeof(char *));
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *e = cfg_node(c, n->data.sequence.items.start[i]);
        char what[CFG_MAX_WHAT];
        const char *s;
        cfg_bprintf(what, sizeof(what), "gateway.server_names[%zu]", i);
        s = cfg_scalar(c, e, what);
        if (!s)
            return -1;
        if (!cfg_dns_name_ok(s))
            return cfg_fail(c, e,
                            "%s '%.200s' is not a lowercase host name (no port, no scheme), e.g. "
                            "credproxy",
                            what, s);
        cfg->gateway.server_names[i] = xstrdup(s);
        cfg->gateway.nserver_names = i + 1;
    }
    return 0;
}

static const char *const cfg_icpt_keys[] = {"ca_cert", "ca_key", NULL};
static const char *const cfg_gw_keys[] = {"rewrite_links", "server_names", NULL};
static const char *const cfg_log_keys[] = {"format", "level", "audit", NULL};

static int cfg_listen_top(struct cfg_ctx *c, const yaml_node_t *root)
{
    struct config *cfg = c->cfg;
    yaml_node_t *n = cfg_map_get(c, root, "listen");

    if (!n) {
        cfg->listen = xcalloc(1, sizeof(*cfg->listen));
        const char *why;
        if (cfg_listen_parse(CONFIG_DEFAULT_LISTEN, &cfg->listen[0], &why) < 0)
            abort(); /* the built-in default always parses */
        cfg->nlisten = 1;
        return 0;
    }
    if (n->type == YAML_SCALAR_NODE) {
        cfg->listen = xcalloc(1, sizeof(*cfg->listen));
        cfg->nlisten = 1;
        return cfg_listen_node(c, n, "listen", &cfg->listen[0]);
    }
    if (n->type != YAML_SEQUENCE_NODE)
        return cfg_fail(c, n, "listen must be an address or a list of addresses, not %s",
                        cfg_type_name(n));
    size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (count == 0)
        return cfg_fail(c, n,
                        "listen is an empty list; give at least one address, e.g. "
                        "127.0.0.1:8080");
    if (count > CONFIG_MAX_LISTEN)
        return cfg_fail(c, n, "listen has %zu addresses; at most %d", count, CONFIG_MAX_LISTEN);
    cfg->listen = xcalloc(count, sizeof(*cfg->listen));
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *e = cfg_node(c, n->data.sequence.items.start[i]);
        char what[CFG_MAX_WHAT];
        cfg_bprintf(what, sizeof(what), "listen[%zu]", i);
        cfg->nlisten = i + 1;
        if (cfg_listen_node(c, e, what, &cfg->listen[i]) < 0)
            return -1;
        for (size_t j = 0; j < i; j++) {
            if (cfg_listen_same(&cfg->listen[j], &cfg->listen[i]))
                return cfg_fail(c, e, "listen %s is given twice (also listen[%zu]); remove one",
                                cfg->listen[i].text, j);
        }
    }
    return 0;
}

static int cfg_workers(struct cfg_ctx *c, const yaml_node_t *root)
{
    uint64_t w = 0;
    if (cfg_get_uint(c, root, "", "workers", 0, CONFIG_MAX_WORKERS, &w) < 0)
        return -1;
    if (w == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        w = n < 1 ? 1 : (uint64_t)n;
        if (w > CONFIG_MAX_WORKERS)
            w = CONFIG_MAX_WORKERS;
    }
    c->cfg->workers = (unsigned)w;
    return 0;
}

static int cfg_enum_str(struct cfg_ctx *c, const yaml_node_t *map, const char *prefix,
                        const char *key, const char *a, const char *b, int *out)
{
    char what[CFG_MAX_WHAT];
    yaml_node_t *n = cfg_map_get(c, map, key);
    const char *s;

    if (!n)
        return 0;
    cfg_what(what, prefix, key);
    s = cfg_scalar(c, n, what);
    if (!s)
        return -1;
    if (strcmp(s, a) == 0)
        *out = 0;
    else if (strcmp(s, b) == 0)
        *out = 1;
    else
        return cfg_fail(c, n, "%s must be %s or %s, got '%.64s'", what, a, b, s);
    return 0;
}

static int cfg_sections(struct cfg_ctx *c, const yaml_node_t *root)
{
    struct config *cfg = c->cfg;
    yaml_node_t *m, *n;
    int v;

    v = (int)cfg->unknown_hosts;
    if (cfg_enum_str(c, root, "", "unknown_hosts", "deny", "tunnel", &v) < 0)
        return -1;
    cfg->unknown_hosts = (enum config_unknown_hosts)v;
    if (cfg->unknown_hosts == CONFIG_UNKNOWN_TUNNEL)
        cfg_warn(c, cfg_map_get(c, root, "unknown_hosts"),
                 "unknown_hosts: tunnel: traffic to hosts not in sites passes through "
                 "uninspected (no credential is added, nothing is checked)");

    m = cfg_map_get(c, root, "interception");
    if (m) {
        if (cfg_map_check(c, m, "interception", cfg_icpt_keys) < 0)
            return -1;
        if (cfg_get_str(c, m, "interception", "ca_cert", &cfg->interception.ca_cert, NULL) < 0 ||
            cfg_get_str(c, m, "interception", "ca_key", &cfg->interception.ca_key, NULL) < 0)
            return -1;
    }
    m = cfg_map_get(c, root, "gateway");
    if (m) {
        if (cfg_map_check(c, m, "gateway", cfg_gw_keys) < 0)
            return -1;
        if (cfg_get_bool(c, m, "gateway", "rewrite_links", &cfg->gateway.rewrite_links) < 0)
            return -1;
        if (cfg_parse_server_names(c, m, cfg) < 0)
            return -1;
    }
    if (cfg_get_duration(c, root, "", "shutdown_timeout", true, &cfg->shutdown_timeout_ms) < 0)
        return -1;
    m = cfg_map_get(c, root, "log");
    if (m) {
        if (cfg_map_check(c, m, "log", cfg_log_keys) < 0)
            return -1;
        n = cfg_map_get(c, m, "format");
        if (n) {
            const char *s = cfg_scalar(c, n, "log.format");
            if (!s)
                return -1;
            if (log_format_parse(s, &cfg->log.format) < 0)
                return cfg_fail(c, n, "log.format must be text or json, got '%.64s'", s);
        }
        n = cfg_map_get(c, m, "level");
        if (n) {
            const char *s = cfg_scalar(c, n, "log.level");
            if (!s)
                return -1;
            if (log_level_parse(s, &cfg->log.level) < 0)
                return cfg_fail(c, n, "log.level must be debug, info, warn or error, got '%.64s'",
                                s);
        }
        if (cfg_get_bool(c, m, "log", "audit", &cfg->log.audit) < 0)
            return -1;
    }
    return 0;
}

/* Listener collisions across main, site and admin listeners, and exposure rules. */
static int cfg_cross_checks(struct cfg_ctx *c, const yaml_node_t *root)
{
    struct config *cfg = c->cfg;
    yaml_node_t *admin_node = cfg_map_get(c, root, "admin");
    yaml_node_t *rca_node = cfg_map_get(c, root, "require_client_auth");
    yaml_node_t *aur_node = cfg_map_get(c, root, "allow_unauthenticated_remote");
    bool any_remote = false;

    for (size_t i = 0; i < cfg->nsites; i++) {
        const struct config_site *s = &cfg->sites[i];
        if (!s->listen)
            continue;
        for (size_t j = 0; j < cfg->nlisten; j++) {
            if (cfg_listen_same(s->listen, &cfg->listen[j]))
                return cfg_fail_at(c, s->listen->pos,
                                   "sites[%zu].listen %s is also a main listen address; a site "
                                   "listener needs its own address",
                                   i, s->listen->text);
        }
        if (cfg->admin && cfg_listen_same(s->listen, cfg->admin))
            return cfg_fail_at(c, s->listen->pos,
                               "sites[%zu].listen %s is also the admin address; give each its "
                               "own",
                               i, s->listen->text);
    }
    if (cfg->admin) {
        for (size_t j = 0; j < cfg->nlisten; j++) {
            if (cfg_listen_same(cfg->admin, &cfg->listen[j]))
                return cfg_fail(c, admin_node,
                                "admin %s is also a main listen address; give the admin "
                                "endpoints their own address, e.g. 127.0.0.1:9090",
                                cfg->admin->text);
        }
        if (!cfg->admin->loopback)
            cfg_warn(c, admin_node,
                     "admin %s is not loopback: /metrics and /readyz are reachable from other "
                     "machines",
                     cfg->admin->text);
    }

    if (cfg->require_client_auth && cfg->nclients == 0)
        return cfg_fail(c, rca_node,
                        "require_client_auth is true but no clients are configured; add clients "
                        "(- id: NAME, key_env: VAR) or set it to false");

    /* Every listener that carries proxied traffic: main and site listeners. */
    size_t total = cfg->nlisten + cfg->nsites;
    for (size_t k = 0; k < total; k++) {
        const struct config_listen *l =
            k < cfg->nlisten ? &cfg->listen[k] : cfg->sites[k - cfg->nlisten].listen;
        if (!l || l->loopback)
            continue;
        any_remote = true;
        if (cfg->nclients == 0 && !cfg->allow_unauthenticated_remote)
            return cfg_fail_at(c, l->pos,
                               "listen %s is not loopback and no clients are configured: anyone "
                               "who can reach it could use the Atlassian credential. Add clients "
                               "(and require_client_auth: true), listen on 127.0.0.1 or a unix: "
                               "socket, or set allow_unauthenticated_remote: true",
                               l->text);
        if (cfg->allow_unauthenticated_remote)
            cfg_warn_at(c, l->pos,
                        "listen %s is not loopback and allow_unauthenticated_remote is true: "
                        "anyone who can reach it can use the Atlassian credential",
                        l->text);
        else if (!cfg->require_client_auth)
            cfg_warn_at(c, l->pos,
                        "listen %s is not loopback: require_client_auth is forced to true, so "
                        "every request needs a client's Proxy-Authorization",
                        l->text);
        else
            cfg_warn_at(c, l->pos,
                        "listen %s is not loopback: it is reachable from other machines "
                        "(clients must authenticate)",
                        l->text);
    }
    if (any_remote && cfg->nclients > 0 && !cfg->allow_unauthenticated_remote)
        cfg->require_client_auth = true;
    if (cfg->allow_unauthenticated_remote && !any_remote)
        cfg_warn(c, aur_node,
                 "allow_unauthenticated_remote is true but every listener is loopback or a unix "
                 "socket; it has no effect");
    return 0;
}

static void cfg_defaults(struct config *cfg)
{
    cfg->unknown_hosts = CONFIG_UNKNOWN_DENY;
    cfg->rate_limit.when_exhausted = CONFIG_RL_QUEUE;
    cfg->rate_limit.max_wait_ms = CONFIG_DEFAULT_MAX_WAIT_MS;
    cfg->rate_limit.max_queue = CONFIG_DEFAULT_MAX_QUEUE;
    cfg->upstream.connect_timeout_ms = CONFIG_DEFAULT_CONNECT_TIMEOUT_MS;
    cfg->upstream.timeout_ms = CONFIG_DEFAULT_TIMEOUT_MS;
    cfg->upstream.http2 = false; /* HTTP/1.1 on the lean engine; see docs/readme/lean.md */
    cfg->interception.ca_cert = xstrdup(CONFIG_DEFAULT_CA_CERT);
    cfg->interception.ca_key = xstrdup(CONFIG_DEFAULT_CA_KEY);
    cfg->gateway.rewrite_links = true;
    cfg->shutdown_timeout_ms = CONFIG_DEFAULT_SHUTDOWN_TIMEOUT_MS;
    cfg->log.format = LOG_FORMAT_TEXT;
    cfg->log.level = LOG_INFO;
    cfg->log.audit = true;
}

static int cfg_document(struct cfg_ctx *c, const yaml_node_t *root)
{
    struct config *cfg = c->cfg;
    yaml_node_t *n;

    if (cfg_map_check(c, root, "the top level", cfg_top_keys) < 0)
        return -1;
    if (cfg_listen_top(c, root) < 0)
        return -1;
    n = cfg_map_get(c, root, "admin");
    if (n) {
        cfg->admin = xcalloc(1, sizeof(*cfg->admin));
        if (cfg_listen_node(c, n, "admin", cfg->admin) < 0)
            return -1;
    }
    if (cfg_workers(c, root) < 0 || cfg_credentials(c, root) < 0 || cfg_sites(c, root) < 0)
        return -1;
    if (cfg_rate_limit(c, root) < 0 || cfg_clients(c, root) < 0)
        return -1;
    if (cfg_get_bool(c, root, "", "require_client_auth", &cfg->require_client_auth) < 0 ||
        cfg_get_bool(c, root, "", "allow_unauthenticated_remote",
                     &cfg->allow_unauthenticated_remote) < 0)
        return -1;
    if (cfg_upstream(c, root) < 0 || cfg_sections(c, root) < 0)
        return -1;
    return cfg_cross_checks(c, root);
}

/* ------------------------------------------------------------ entry points */

static int cfg_read_file(const char *path, unsigned char **out, size_t *len, char **err)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    size_t n;

    if (!f) {
        *err = xasprintf("%s:1:1: cannot read the configuration file: %s", path, strerror(errno));
        return -1;
    }
    buf = xmalloc(CFG_MAX_FILE_SIZE + 1);
    n = fread(buf, 1, CFG_MAX_FILE_SIZE + 1, f);
    if (ferror(f)) {
        *err = xasprintf("%s:1:1: cannot read the configuration file: %s", path, strerror(errno));
        goto fail;
    }
    if (n > CFG_MAX_FILE_SIZE) {
        *err = xasprintf("%s:1:1: the configuration file is larger than %d bytes", path,
                         CFG_MAX_FILE_SIZE);
        goto fail;
    }
    fclose(f);
    *out = buf;
    *len = n;
    return 0;
fail:
    fclose(f);
    free(buf);
    return -1;
}

/* Wipes and frees the raw text: an inline token may sit in it. */
static void cfg_wipe_buf(unsigned char *buf, size_t len)
{
    if (!buf)
        return;
    util_secure_zero(buf, len);
    free(buf);
}

/*
 * Inline secrets also live in libyaml's scalar nodes; wipe every scalar
 * before the document is freed so no copy outlives the load.
 */
static void cfg_wipe_doc(yaml_document_t *doc)
{
    for (yaml_node_t *n = doc->nodes.start; n < doc->nodes.top; n++) {
        if (n->type == YAML_SCALAR_NODE && n->data.scalar.value)
            util_secure_zero(n->data.scalar.value, n->data.scalar.length);
    }
}

int config_load_file(const char *path, struct config **out, char **err)
{
    yaml_parser_t parser;
    yaml_document_t doc, extra;
    struct cfg_ctx c;
    unsigned char *buf = NULL;
    size_t len = 0;
    yaml_node_t *root;
    struct config *cfg;

    *out = NULL;
    *err = NULL;
    if (cfg_read_file(path, &buf, &len, err) < 0)
        return -1;
    cfg = xcalloc(1, sizeof(*cfg));
    cfg->file = xstrdup(path);
    cfg_defaults(cfg);
    memset(&c, 0, sizeof(c));
    c.file = path;
    c.cfg = cfg;
    c.doc = &doc;

    if (!yaml_parser_initialize(&parser))
        abort();
    yaml_parser_set_input_string(&parser, buf, len);
    if (!yaml_parser_load(&parser, &doc)) {
        char ctx[256] = "";
        if (parser.context)
            cfg_bprintf(ctx, sizeof(ctx), " %s (which started at line %d, column %d)",
                        parser.context, (int)parser.context_mark.line + 1,
                        (int)parser.context_mark.column + 1);
        c.err = xasprintf("%s:%d:%d: YAML syntax error: %s%s; check indentation and quoting", path,
                          (int)parser.problem_mark.line + 1, (int)parser.problem_mark.column + 1,
                          parser.problem ? parser.problem : "unreadable YAML", ctx);
        yaml_parser_delete(&parser);
        goto done_noparse;
    }
    root = yaml_document_get_root_node(&doc);
    if (!root) {
        c.err = xasprintf("%s:1:1: the configuration file is empty; see "
                          "conf/credproxy.example.yaml",
                          path);
    } else {
        /* A second document ("---") would be silently ignored: refuse it. */
        if (!yaml_parser_load(&parser, &extra)) {
            c.err =
                xasprintf("%s:%d:%d: YAML syntax error: %s; check indentation and quoting", path,
                          (int)parser.problem_mark.line + 1, (int)parser.problem_mark.column + 1,
                          parser.problem ? parser.problem : "unreadable YAML");
        } else {
            yaml_node_t *r2 = yaml_document_get_root_node(&extra);
            if (r2)
                c.err =
                    xasprintf("%s:%d:%d: a second YAML document starts here; the "
                              "configuration must be one document",
                              path, (int)r2->start_mark.line + 1, (int)r2->start_mark.column + 1);
            cfg_wipe_doc(&extra);
            yaml_document_delete(&extra);
        }
        if (!c.err)
            cfg_document(&c, root);
    }
    cfg_wipe_doc(&doc);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
done_noparse:
    cfg_wipe_buf(buf, len);
    if (c.err) {
        config_free(cfg);
        *err = c.err;
        return -1;
    }
    *out = cfg;
    return 0;
}

static const char *cfg_missing_text =
    "no configuration: set ATLASSIAN_SITE, ATLASSIAN_EMAIL and ATLASSIAN_API_TOKEN, or pass "
    "-c FILE / set CREDPROXY_CONFIG";

const char *config_missing_message(void)
{
    return cfg_missing_text;
}

int config_load_env(struct config **out, char **err)
{
    static const char *const names[] = {"ATLASSIAN_SITE", "ATLASSIAN_EMAIL", "ATLASSIAN_API_TOKEN"};
    const char *vals[3];
    int nset = 0;
    struct cfg_ctx c;
    struct config *cfg;
    char missing[256];
    size_t off = 0;

    *out = NULL;
    *err = NULL;
    missing[0] = '\0';
    for (int i = 0; i < 3; i++) {
        vals[i] = getenv(names[i]);
        if (vals[i] && *vals[i])
            nset++;
    }
    if (nset == 0)
        return 1;
    if (nset < 3) {
        int nmiss = 3 - nset, k = 0;
        for (int i = 0; i < 3; i++) {
            if (vals[i] && *vals[i])
                continue;
            int w = cfg_bprintf(missing + off, sizeof(missing) - off, "%s%s %s",
                                k == 0 ? "" : (k == nmiss - 1 ? " and " : ", "), names[i],
                                vals[i] ? "is empty" : "is not set");
            if (w > 0 && (size_t)w < sizeof(missing) - off)
                off += (size_t)w;
            k++;
        }
        *err = xasprintf("%s: %s; set ATLASSIAN_SITE, ATLASSIAN_EMAIL and ATLASSIAN_API_TOKEN, "
                         "or give a config file with -c FILE",
                         CFG_ENV_FILE, missing);
        return -1;
    }

    cfg = xcalloc(1, sizeof(*cfg));
    cfg->file = xstrdup(CFG_ENV_FILE);
    cfg_defaults(cfg);
    memset(&c, 0, sizeof(c));
    c.file = CFG_ENV_FILE;
    c.cfg = cfg;

    cfg->listen = xcalloc(1, sizeof(*cfg->listen));
    cfg->nlisten = 1;
    {
        const char *why;
        if (cfg_listen_parse(CONFIG_DEFAULT_LISTEN, &cfg->listen[0], &why) < 0)
            abort();
    }
    {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cfg->workers = n < 1 ? 1 : (n > CONFIG_MAX_WORKERS ? CONFIG_MAX_WORKERS : (unsigned)n);
    }

    struct config_credential *cr;
    cfg->credentials = xcalloc(1, sizeof(*cfg->credentials));
    cfg->ncredentials = 1;
    cr = &cfg->credentials[0];
    cr->name = xstrdup("default");
    cr->type = CONFIG_CRED_BASIC;
    cr->source = CONFIG_SECRET_ENV;
    cr->source_ref = xstrdup("ATLASSIAN_API_TOKEN");
    cr->rate_per_sec = CONFIG_DEFAULT_RATE_PER_SEC;
    cr->burst = CONFIG_DEFAULT_BURST;

    struct config_site *st;
    cfg->sites = xcalloc(1, sizeof(*cfg->sites));
    cfg->nsites = 1;
    st = &cfg->sites[0];
    st->port = 443;
    st->credential = 0;

    bool changed;
    st->domain = config_normalize_domain(vals[0], &changed);
    if (!st->domain) {
        cfg_fail(&c, NULL,
                 "ATLASSIAN_SITE '%.200s' is not an Atlassian Cloud site; give the site name "
                 "(acme or acme.atlassian.net), or use a config file with sites: - host: for "
                 "other hosts",
                 vals[0]);
        goto fail;
    }
    if (changed)
        cfg_warn(&c, NULL, "ATLASSIAN_SITE '%.200s' normalized to '%s'", vals[0], st->domain);
    st->host = xasprintf("%s%s", st->domain, CFG_ATLASSIAN_SUFFIX);

    if (cfg_email_check(&c, NULL, "ATLASSIAN_EMAIL", vals[1]) < 0)
        goto fail;
    cr->email = xstrdup(vals[1]);
    {
        struct cfg_secret_what w = {"credential 'default'", "token", "", "token_env",
                                    "token_file",           "token"};
        if (cfg_secret_check(&c, NULL, &w, "environment variable ATLASSIAN_API_TOKEN", vals[2],
                             strlen(vals[2])) < 0)
            goto fail;
    }
    cr->secret = xstrdup(vals[2]);
    *out = cfg;
    return 0;
fail:
    *err = c.err;
    config_free(cfg);
    return -1;
}

int config_load(const char *path, struct config **out, char **err)
{
    const char *env;

    if (path)
        return config_load_file(path, out, err);
    env = getenv("CREDPROXY_CONFIG");
    if (env && *env)
        return config_load_file(env, out, err);
    return config_load_env(out, err);
}

int config_credential_index(const struct config *cfg, const char *name)
{
    if (!cfg || !name)
        return -1;
    for (size_t i = 0; i < cfg->ncredentials; i++) {
        if (cfg->credentials[i].name && strcmp(cfg->credentials[i].name, name) == 0)
            return (int)i;
    }
    return -1;
}

void config_free(struct config *cfg)
{
    if (!cfg)
        return;
    free(cfg->file);
    for (size_t i = 0; i < cfg->nlisten; i++)
        config_listen_clear(&cfg->listen[i]);
    free(cfg->listen);
    config_listen_clear(cfg->admin);
    free(cfg->admin);
    for (size_t i = 0; i < cfg->ncredentials; i++) {
        struct config_credential *cr = &cfg->credentials[i];
        free(cr->name);
        free(cr->email);
        free(cr->source_ref);
        util_free_secret(cr->secret);
    }
    free(cfg->credentials);
    for (size_t i = 0; i < cfg->nsites; i++) {
        struct config_site *s = &cfg->sites[i];
        free(s->host);
        free(s->domain);
        free(s->alias);
        config_listen_clear(s->listen);
        free(s->listen);
    }
    free(cfg->sites);
    free(cfg->rate_limit.store);
    free(cfg->rate_limit.redis_host);
    for (size_t i = 0; i < cfg->nclients; i++) {
        struct config_client *cl = &cfg->clients[i];
        free(cl->id);
        free(cl->source_ref);
        util_free_secret(cl->key);
    }
    free(cfg->clients);
    free(cfg->upstream.ca_file);
    for (size_t i = 0; i < cfg->upstream.nconnect_to; i++)
        cfg_connect_to_clear(&cfg->upstream.connect_to[i]);
    for (size_t i = 0; i < cfg->gateway.nserver_names; i++)
        free(cfg->gateway.server_names[i]);
    free(cfg->gateway.server_names);
    free(cfg->upstream.connect_to);
    free(cfg->upstream.proxy);
    free(cfg->interception.ca_cert);
    free(cfg->interception.ca_key);
    for (size_t i = 0; i < cfg->nwarnings; i++)
        free(cfg->warnings[i].text);
    free(cfg->warnings);
    util_secure_zero(cfg, sizeof(*cfg));
    free(cfg);
}
