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

bool cfg_is_space(char ch)
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
        if (!colon && *text && strspn(text, "0123456789") == strlen(text)) {
            /* "listen: 8080": a port alone; the host decides who can reach it. */
            *why = "the host is missing; write 127.0.0.1:PORT for local use or 0.0.0.0:PORT for "
                   "every interface";
            return -1;
        }
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

/* ------------------------------------------------------------- onboarding */
/*
 * What `env`/`exec`/`lint` need beyond the plain keys: the names of the
 * variables that hold credential secrets (exec removes them from an agent's
 * environment), CA paths relative to the configuration file, and warnings
 * about tokens that are evidently placeholders or of the wrong type.
 */

/* Shorter than any Atlassian token (about 190 characters today, 24 for old ones, 44 for DC PATs).
 */
#define CFG_MIN_PLAUSIBLE_TOKEN 12
/* What people paste from documentation instead of a token (compared case-insensitively). */
static const char *const cfg_placeholder_tokens[] = {
    "\xe2\x80\xa6", "...",       "changeme", "change-me", "<token>", "token",      "your-token",
    "your_token",   "yourtoken", "secret",   "xxx",       "todo",    "replace-me", "api-token",
};

/* Records one variable name (deduplicated, bounded by CONFIG_MAX_SECRET_ENVS). */
static void cfg_secret_env_add(struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->nsecret_envs; i++) {
        if (strcmp(cfg->secret_envs[i], name) == 0)
            return;
    }
    if (cfg->nsecret_envs >= CONFIG_MAX_SECRET_ENVS)
        return;
    if (!cfg->secret_envs)
        cfg->secret_envs = xcalloc(CONFIG_MAX_SECRET_ENVS, sizeof(*cfg->secret_envs));
    cfg->secret_envs[cfg->nsecret_envs++] = xstrdup(name);
}

/*
 * Every "*_env" key of one credential's map names a variable holding a secret
 * of that credential (token_env today, client_secret_env for oauth_client):
 * taken generically, so a new credential kind is covered without a change here.
 */
static void cfg_note_secret_envs(struct cfg_ctx *c, const yaml_node_t *m)
{
    if (!m || m->type != YAML_MAPPING_NODE)
        return;
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        const yaml_node_t *k = cfg_node(c, p->key), *v = cfg_node(c, p->value);
        const char *ks, *vs;
        size_t kl;
        if (!k || !v || k->type != YAML_SCALAR_NODE || v->type != YAML_SCALAR_NODE)
            continue;
        ks = (const char *)k->data.scalar.value;
        vs = (const char *)v->data.scalar.value;
        kl = strlen(ks);
        if (kl > 4 && strcmp(ks + kl - 4, "_env") == 0 && cfg_env_name_ok(vs))
            cfg_secret_env_add(c->cfg, vs);
    }
}

/* A relative path made absolute against dir; a new string (or a copy when already absolute). */
static char *cfg_path_join(const char *dir, const char *p)
{
    if (p[0] == '/' || !dir)
        return xstrdup(p);
    return xasprintf("%s/%s", dir, p);
}

/*
 * interception.ca_cert/ca_key written relative (or left at the default
 * certs/ca.pem) mean "next to the configuration file" (file NULL: the
 * embedded default, the current directory), whatever directory
 * the proxy, `env` or an MCP host starts in. The directory itself is made
 * absolute so every command agrees on one path.
 */
static void cfg_resolve_ca_paths(struct config *cfg, const char *file)
{
    char *dir = util_dirname(file ? file : "./"), *abs = NULL, *tmp;

    if (dir[0] != '/') {
        char *cwd = getcwd(NULL, 0);
        if (cwd) {
            abs = strcmp(dir, ".") == 0 ? xstrdup(cwd) : xasprintf("%s/%s", cwd, dir);
            free(cwd);
        }
    }
    tmp = abs ? abs : dir;
    if (cfg->interception.ca_cert && cfg->interception.ca_cert[0] != '/') {
        char *p = cfg_path_join(tmp, cfg->interception.ca_cert);
        free(cfg->interception.ca_cert);
        cfg->interception.ca_cert = p;
    }
    if (cfg->interception.ca_key && cfg->interception.ca_key[0] != '/') {
        char *p = cfg_path_join(tmp, cfg->interception.ca_key);
        free(cfg->interception.ca_key);
        cfg->interception.ca_key = p;
    }
    free(abs);
    free(dir);
}

/* The token is one of the documentation's placeholders, or too short to be an API token. */
static bool cfg_token_is_placeholder(const char *t)
{
    for (size_t i = 0; i < UTIL_ARRAY_LEN(cfg_placeholder_tokens); i++) {
        if (strcasecmp(t, cfg_placeholder_tokens[i]) == 0)
            return true;
    }
    if (strstr(t, "\xe2\x80\xa6") || (t[0] == '<' && t[strlen(t) - 1] == '>'))
        return true;
    return strlen(t) < CFG_MIN_PLAUSIBLE_TOKEN;
}

/* The credential is used by at least one *.atlassian.net site. */
static bool cfg_cred_on_cloud(const struct config *cfg, size_t idx)
{
    size_t sl = strlen(CFG_ATLASSIAN_SUFFIX);
    for (size_t i = 0; i < cfg->nsites; i++) {
        const char *h = cfg->sites[i].host;
        size_t hl = h ? strlen(h) : 0;
        if (cfg->sites[i].credential == idx && hl > sl &&
            strcmp(h + hl - sl, CFG_ATLASSIAN_SUFFIX) == 0)
            return true;
    }
    return false;
}

/*
 * Lint warnings about the secret itself (only when it was read): a
 * placeholder, and a Cloud API token sent as Bearer. The token's bytes never
 * reach a message; "ATATT" is Atlassian's public prefix, not part of a secret.
 */
static void cfg_token_warnings(struct cfg_ctx *c)
{
    const struct config *cfg = c->cfg;
    for (size_t i = 0; i < cfg->ncredentials; i++) {
        const struct config_credential *cr = &cfg->credentials[i];
        const char *from = cr->source == CONFIG_SECRET_ENV    ? "environment variable"
                           : cr->source == CONFIG_SECRET_FILE ? "file"
                                                              : "configuration";
        if (!cr->secret)
            continue;
        if (cfg_token_is_placeholder(cr->secret))
            cfg_warn_at(c, cr->pos,
                        "credential '%s': the token from %s %s looks like a placeholder (%zu "
                        "characters; Atlassian API tokens are much longer): paste the real token "
                        "from id.atlassian.com -> Security -> API tokens",
                        cr->name, from, cr->source_ref ? cr->source_ref : "(inline)",
                        strlen(cr->secret));
        if (cr->type == CONFIG_CRED_BEARER && strncmp(cr->secret, "ATATT", 5) == 0 &&
            cfg_cred_on_cloud(cfg, i))
            cfg_warn_at(c, cr->pos,
                        "credential '%s': type bearer with an Atlassian Cloud API token (ATATT...) "
                        "on an *.atlassian.net site: Cloud API tokens need type: basic and the "
                        "account's email; Atlassian answers 401 to them as Bearer",
                        cr->name);
    }
}

/* After a successful load: relative CA paths, token warnings, the no-secrets marker. */
static void cfg_onboard_finish(struct cfg_ctx *c, const char *file)
{
    cfg_resolve_ca_paths(c->cfg, file); /* NULL: the embedded default, the current directory */
    cfg_token_warnings(c);
    c->cfg->no_secrets = (c->opts->flags & CONFIG_LOAD_NO_SECRETS) != 0;
    /* The embedded default's variable, under whichever configuration: an agent never needs it. */
    cfg_secret_env_add(c->cfg, "ATLASSIAN_API_TOKEN");
}

int config_client_index(const struct config *cfg, const char *id)
{
    if (!cfg || !id)
        return -1;
    for (size_t i = 0; i < cfg->nclients; i++) {
        if (cfg->clients[i].id && strcmp(cfg->clients[i].id, id) == 0)
            return (int)i;
    }
    return -1;
}

/* ------------------------------------------------------------ credentials */

static const char *const cfg_cred_keys[] = {
    "type", "email", "token_env", "token_file", "token", "expires", "rate_limit", "burst",
    /* v2: cfg_credential_v2 */
    "reject_after", "via", "client_id", "client_secret_env", "client_secret_file", "client_secret",
    "token_url", "scopes", NULL};

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

/* scopes: a list of names or one space-separated string -> one space-separated string. */
static int cfg_scopes(struct cfg_ctx *c, const yaml_node_t *n, const char *prefix, char **out)
{
    char buf[CONFIG_MAX_SCOPES + 1];
    size_t off = 0;
    const yaml_node_item_t *it = NULL, *end = NULL;

    buf[0] = '\0';
    if (n->type == YAML_SCALAR_NODE) {
        if (n->data.scalar.length > CONFIG_MAX_SCOPES)
            return cfg_fail(c, n, "%s.scopes is longer than %d bytes", prefix, CONFIG_MAX_SCOPES);
        memcpy(buf, n->data.scalar.value, n->data.scalar.length);
        off = n->data.scalar.length;
        buf[off] = '\0';
    } else if (n->type == YAML_SEQUENCE_NODE) {
        it = n->data.sequence.items.start;
        end = n->data.sequence.items.top;
        for (; it < end; it++) {
            yaml_node_t *e = cfg_node(c, *it);
            if (e->type != YAML_SCALAR_NODE)
                return cfg_fail(c, e, "%s.scopes entries must be scope names", prefix);
            size_t len = e->data.scalar.length;
            if (off + len + 2 > sizeof(buf))
                return cfg_fail(c, e, "%s.scopes is longer than %d bytes", prefix,
                                CONFIG_MAX_SCOPES);
            if (off)
                buf[off++] = ' ';
            memcpy(buf + off, e->data.scalar.value, len);
            off += len;
            buf[off] = '\0';
        }
    } else {
        return cfg_fail(c, n, "%s.scopes must be a list of scope names, not %s", prefix,
                        cfg_type_name(n));
    }
    for (size_t i = 0; i < off; i++) {
        unsigned char ch = (unsigned char)buf[i];
        if (ch < 0x20 || ch == 0x7f || ch == '&' || ch == '=' || ch == '+' || ch == '%')
            return cfg_fail(c, n, "%s.scopes holds a character no scope name has", prefix);
    }
    *out = off ? xstrdup(buf) : NULL;
    return 0;
}

/*
 * The v2 keys of one credential (issue 10): reject_after, via, and the
 * oauth_client keys. Runs after type is known; refuses keys of the other
 * kind (a token_env on an oauth_client would otherwise be ignored).
 */
static int cfg_credential_v2(struct cfg_ctx *c, const yaml_node_t *m, const char *prefix,
                             const char *owner, struct config_credential *cr)
{
    static const char *const oauth_only[] = {"client_id",
                                             "client_secret_env",
                                             "client_secret_file",
                                             "client_secret",
                                             "token_url",
                                             "scopes",
                                             NULL};
    static const char *const token_only[] = {"token_env", "token_file", "token", NULL};
    bool oauth = cr->type == CONFIG_CRED_OAUTH_CLIENT;
    uint64_t reject_after = CONFIG_DEFAULT_REJECT_AFTER;
    yaml_node_t *n;

    for (size_t i = 0; (oauth ? token_only : oauth_only)[i]; i++) {
        const char *k = (oauth ? token_only : oauth_only)[i];
        if (cfg_map_get(c, m, k))
            return cfg_fail(c, cfg_map_key(c, m, k),
                            oauth ? "%s.%s is for basic and bearer credentials; an oauth_client "
                                    "takes client_secret_env, client_secret_file or client_secret"
                                  : "%s.%s is only for type: oauth_client",
                            prefix, k);
    }
    if (cfg_get_uint(c, m, prefix, "reject_after", 1, CONFIG_MAX_REJECT_AFTER, &reject_after) < 0)
        return -1;
    cr->reject_after = (unsigned)reject_after;

    char *via = NULL;
    if (cfg_get_str(c, m, prefix, "via", &via, &n) < 0)
        return -1;
    if (via) {
        bool ok = strcmp(via, "api_gateway") == 0 || strcmp(via, "site") == 0;
        cr->via_gateway = strcmp(via, "api_gateway") == 0;
        if (!ok) {
            cfg_fail(c, n,
                     "%s.via must be api_gateway (scoped API tokens, which work only through "
                     "https://api.atlassian.com/ex/...) or site, got '%.64s'",
                     prefix, via);
            free(via);
            return -1;
        }
        if (oauth && !cr->via_gateway) {
            free(via);
            return cfg_fail(c, n, "%s: an oauth_client always goes through api_gateway", owner);
        }
        free(via);
    }
    if (!oauth)
        return 0;
    cr->via_gateway = true;
    if (!cfg_map_get(c, m, "client_id"))
        return cfg_fail(c, m,
                        "%s has no client_id: type oauth_client needs the service account's "
                        "OAuth client_id and a client_secret_env",
                        owner);
    if (cfg_get_str(c, m, prefix, "client_id", &cr->client_id, &n) < 0)
        return -1;
    for (const char *p = cr->client_id; *p; p++) {
        if ((unsigned char)*p <= 0x20 || *p == 0x7f || *p == '&' || *p == '=')
            return cfg_fail(c, n,
                            "%s.client_id contains white space or a character it cannot "
                            "hold; copy it again from Atlassian Administration",
                            prefix);
    }
    if (!*cr->client_id)
        return cfg_fail(c, n, "%s.client_id is empty", prefix);
    if (cfg_get_str(c, m, prefix, "token_url", &cr->token_url, &n) < 0)
        return -1;
    if (!cr->token_url)
        cr->token_url = xstrdup(CONFIG_DEFAULT_TOKEN_URL);
    else if (strncmp(cr->token_url, "https://", 8) != 0 || strpbrk(cr->token_url, " \t\r\n"))
        return cfg_fail(c, n, "%s.token_url must be an https:// URL, got '%.200s'", prefix,
                        cr->token_url);
    n = cfg_map_get(c, m, "scopes");
    if (n && cfg_scopes(c, n, prefix, &cr->scopes) < 0)
        return -1;
    return 0;
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
        else if (strcmp(t, "oauth_client") == 0)
            cr->type = CONFIG_CRED_OAUTH_CLIENT;
        else
            return cfg_fail(c, n, "%s.type must be basic, bearer or oauth_client, got '%.64s'",
                            prefix, t);
    }
    if (cfg_credential_v2(c, m, prefix, owner, cr) < 0)
        return -1;

    n = cfg_map_get(c, m, "email");
    if (cr->type != CONFIG_CRED_BASIC && n)
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
    if (cr->type == CONFIG_CRED_OAUTH_CLIENT)
        w = (struct cfg_secret_what){
            owner,          "client secret", prefix, "client_secret_env", "client_secret_file",
            "client_secret"};
    if (cfg_secret_load(c, m, &w, &cr->secret, &cr->source, &cr->source_ref) < 0)
        return -1;
    if (cr->type == CONFIG_CRED_BEARER && cr->secret && strchr(cr->secret, ' '))
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
        cfg_note_secret_envs(c, val);
    }
    return 0;
}

/* ------------------------------------------------------------------ sites */

static const char *const cfg_site_keys[] = {"domain", "host",   "credential", "port",
                                            "alias",  "listen", "cloud_id",   NULL};

/* v2: sites[i].cloud_id, a UUID as Atlassian shows it (checked loosely: hex and '-'). */
static int cfg_site_cloud_id(struct cfg_ctx *c, const yaml_node_t *m, const char *prefix,
                             struct config_site *st)
{
    yaml_node_t *n;
    if (cfg_get_str(c, m, prefix, "cloud_id", &st->cloud_id, &n) < 0)
        return -1;
    if (!st->cloud_id)
        return 0;
    cfg_lower(st->cloud_id);
    size_t len = strlen(st->cloud_id);
    bool ok = len > 0 && len <= CONFIG_MAX_CLOUD_ID;
    for (size_t i = 0; ok && i < len; i++)
        ok = isxdigit((unsigned char)st->cloud_id[i]) || st->cloud_id[i] == '-';
    if (!ok)
        return cfg_fail(c, n,
                        "%s.cloud_id '%.80s' is not a cloud id (a UUID such as "
                        "1a11d016-8984-4c3e-b9ab-142dd06acb1b); remove it to have it looked up "
                        "from https://SITE/_edge/tenant_info",
                        prefix, st->cloud_id);
    return 0;
}

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
    return cfg_site_cloud_id(c, m, prefix, st);
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

static const char *const cfg_client_keys[] = {"policy", "id",         "key_env", "key_file",
                                              "key",    "rate_limit", "burst",   NULL};

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
        c->keep_secret = c->opts->client_id && strcmp(c->opts->client_id, cl->id) == 0;
        if (cfg_secret_load(c, m, &w, &cl->key, &cl->source, &cl->source_ref) < 0)
            return -1;
        c->keep_secret = false;
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

/* -------------------------------------------------------------- policies */

static const char *const cfg_class_names[POLICY_NCLASSES] = {
    [POLICY_READ] = "read",   [POLICY_COMMENT] = "comment", [POLICY_TRANSITION] = "transition",
    [POLICY_WRITE] = "write", [POLICY_DELETE] = "delete",   [POLICY_ADMIN] = "admin",
};

const char *config_class_name(enum policy_class c)
{
    return (unsigned)c < POLICY_NCLASSES ? cfg_class_names[c] : NULL;
}

int config_class_parse(const char *name)
{
    for (int i = 0; i < POLICY_NCLASSES; i++) {
        if (strcmp(name, cfg_class_names[i]) == 0)
            return i;
    }
    return -1;
}

static const char *const cfg_policy_keys[] = {"allow", "projects", "spaces", NULL};

/* `full` and `read-only` always exist, first, at CONFIG_POLICY_FULL and CONFIG_POLICY_READ_ONLY. */
static void cfg_policy_builtins(struct config *cfg)
{
    cfg->policies = xcalloc(2, sizeof(*cfg->policies));
    cfg->npolicies = 2;
    cfg->policies[CONFIG_POLICY_FULL].name = xstrdup("full");
    cfg->policies[CONFIG_POLICY_FULL].allow = POLICY_ALL_CLASSES;
    cfg->policies[CONFIG_POLICY_FULL].builtin = true;
    cfg->policies[CONFIG_POLICY_READ_ONLY].name = xstrdup("read-only");
    cfg->policies[CONFIG_POLICY_READ_ONLY].allow = POLICY_CLASS_BIT(POLICY_READ);
    cfg->policies[CONFIG_POLICY_READ_ONLY].builtin = true;
    cfg->default_policy = CONFIG_POLICY_FULL;
}

static void cfg_policies_free(struct config *cfg)
{
    for (size_t i = 0; i < cfg->npolicies; i++) {
        struct config_policy *p = &cfg->policies[i];
        free(p->name);
        for (size_t j = 0; j < p->nprojects; j++)
            free(p->projects[j]);
        free(p->projects);
        for (size_t j = 0; j < p->nspaces; j++)
            free(p->spaces[j]);
        free(p->spaces);
    }
    free(cfg->policies);
}

int config_policy_index(const struct config *cfg, const char *name)
{
    if (!cfg || !name)
        return -1;
    for (size_t i = 0; i < cfg->npolicies; i++) {
        if (strcmp(cfg->policies[i].name, name) == 0)
            return (int)i;
    }
    return -1;
}

const struct config_policy *config_policy_for(const struct config *cfg, const char *client_id)
{
    static const struct config_policy full = {.name = "full", .allow = POLICY_ALL_CLASSES};
    size_t idx = cfg->default_policy;

    if (client_id) {
        for (size_t i = 0; i < cfg->nclients; i++) {
            if (strcmp(cfg->clients[i].id, client_id) == 0 && cfg->clients[i].policy >= 0)
                idx = (size_t)cfg->clients[i].policy;
        }
    }
    return idx < cfg->npolicies ? &cfg->policies[idx] : &full;
}

/*
 * Jira project keys: a letter, then letters, digits or '_' (Atlassian's
 * default key pattern); kept upper-case. Confluence space keys: letters and
 * digits, or a personal space "~" followed by an account id.
 */
static bool cfg_project_key_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > CONFIG_MAX_SCOPE_KEY ||
        !((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z')))
        return false;
    for (size_t i = 1; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '_'))
            return false;
    }
    return true;
}

static bool cfg_space_key_ok(const char *s)
{
    size_t n = strlen(s);
    size_t i = 0;
    bool personal = n > 0 && s[0] == '~';
    if (n == 0 || n > CONFIG_MAX_SCOPE_KEY || (personal && n == 1))
        return false;
    if (personal)
        i = 1;
    for (; i < n; i++) {
        char ch = s[i];
        bool ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
        if (personal)
            ok = ok || ch == '-' || ch == ':' || ch == '_';
        if (!ok)
            return false;
    }
    return true;
}

/* A non-empty list of scalars under key; *items (caller owns) gets copies. */
static int cfg_policy_list(struct cfg_ctx *c, const yaml_node_t *m, const char *prefix,
                           const char *key, char ***items, size_t *nitems, bool *present)
{
    char what[CFG_MAX_WHAT];
    yaml_node_t *l = cfg_map_get(c, m, key);

    *present = false;
    if (!l)
        return 0;
    cfg_what(what, prefix, key);
    if (l->type != YAML_SEQUENCE_NODE)
        return cfg_fail(c, l, "%s must be a list ([A, B]), not %s", what, cfg_type_name(l));
    size_t count = (size_t)(l->data.sequence.items.top - l->data.sequence.items.start);
    if (count == 0 && strcmp(key, "allow") == 0)
        return cfg_fail(c, l,
                        "%s is an empty list; name at least one class (read, comment, "
                        "transition, write, delete, admin)",
                        what);
    if (count == 0)
        return cfg_fail(c, l,
                        "%s is an empty list; it would allow nothing (remove the key to allow "
                        "every one, or name at least one)",
                        what);
    if (count > CONFIG_MAX_POLICY_SCOPE)
        return cfg_fail(c, l, "%s has %zu entries; at most %d", what, count,
                        CONFIG_MAX_POLICY_SCOPE);
    *items = xcalloc(count, sizeof(**items));
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *n = cfg_node(c, l->data.sequence.items.start[i]);
        const char *v = cfg_scalar(c, n, what);
        if (!v)
            return -1;
        (*items)[i] = xstrdup(v);
        *nitems = i + 1;
    }
    *present = true;
    return 0;
}

static int cfg_policy(struct cfg_ctx *c, const yaml_node_t *key, const yaml_node_t *m,
                      struct config_policy *p)
{
    char prefix[CFG_MAX_WHAT], what[CFG_MAX_WHAT];
    const char *name = cfg_scalar(c, key, "a policy name");
    char **classes = NULL;
    size_t nclasses = 0;
    bool present;
    int rc = -1;

    if (!name)
        return -1;
    p->name = xstrdup(name);
    p->pos = cfg_pos(key);
    if (!cfg_ident_ok(name))
        return cfg_fail(c, key,
                        "policy name '%.64s' may only use letters, digits, '.', '_' and '-' (at "
                        "most %d)",
                        name, CFG_MAX_NAME_LEN);
    if (strcmp(name, "full") == 0 || strcmp(name, "read-only") == 0)
        return cfg_fail(c, key,
                        "policy '%s' is built in and cannot be redefined; give yours another name",
                        name);
    cfg_bprintf(prefix, sizeof(prefix), "policies.%s", name);
    if (cfg_map_check(c, m, prefix, cfg_policy_keys) < 0)
        return -1;
    if (!cfg_map_get(c, m, "allow"))
        return cfg_fail(c, m,
                        "%s has no allow list; add allow: [read, ...] (classes: read, comment, "
                        "transition, write, delete, admin)",
                        prefix);
    if (cfg_policy_list(c, m, prefix, "allow", &classes, &nclasses, &present) < 0)
        goto out;
    yaml_node_t *al = cfg_map_get(c, m, "allow");
    cfg_what(what, prefix, "allow");
    for (size_t i = 0; i < nclasses; i++) {
        int cl = config_class_parse(classes[i]);
        if (cl < 0) {
            cfg_fail(c, cfg_node(c, al->data.sequence.items.start[i]),
                     "%s: unknown class '%.64s'; classes are read, comment, transition, write, "
                     "delete, admin",
                     what, classes[i]);
            goto out;
        }
        p->allow |= POLICY_CLASS_BIT(cl);
    }
    if (cfg_policy_list(c, m, prefix, "projects", &p->projects, &p->nprojects, &p->has_projects) <
        0)
        goto out;
    yaml_node_t *pl = cfg_map_get(c, m, "projects");
    for (size_t i = 0; i < p->nprojects; i++) {
        if (!cfg_project_key_ok(p->projects[i])) {
            cfg_fail(c, cfg_node(c, pl->data.sequence.items.start[i]),
                     "%s.projects: '%.64s' is not a Jira project key (a letter, then letters, "
                     "digits or _)",
                     prefix, p->projects[i]);
            goto out;
        }
        for (char *q = p->projects[i]; *q; q++) {
            if (*q >= 'a' && *q <= 'z')
                *q = (char)(*q - 'a' + 'A');
        }
    }
    if (cfg_policy_list(c, m, prefix, "spaces", &p->spaces, &p->nspaces, &p->has_spaces) < 0)
        goto out;
    yaml_node_t *sl = cfg_map_get(c, m, "spaces");
    for (size_t i = 0; i < p->nspaces; i++) {
        if (!cfg_space_key_ok(p->spaces[i])) {
            cfg_fail(c, cfg_node(c, sl->data.sequence.items.start[i]),
                     "%s.spaces: '%.64s' is not a Confluence space key (letters and digits, or "
                     "~ACCOUNT for a personal space)",
                     prefix, p->spaces[i]);
            goto out;
        }
    }
    rc = 0;
out:
    for (size_t i = 0; i < nclasses; i++)
        free(classes[i]);
    free(classes);
    return rc;
}

/* A policy name given in default_policy: or clients[i].policy:, resolved to its index. */
static int cfg_policy_ref(struct cfg_ctx *c, const yaml_node_t *map, const char *prefix,
                          const char *key, int *out)
{
    char what[CFG_MAX_WHAT];
    yaml_node_t *n = cfg_map_get(c, map, key);
    const char *v;

    if (!n)
        return 0;
    cfg_what(what, prefix, key);
    v = cfg_scalar(c, n, what);
    if (!v)
        return -1;
    *out = config_policy_index(c->cfg, v);
    if (*out < 0) {
        char names[512];
        size_t off = 0;
        names[0] = '\0';
        for (size_t i = 0; i < c->cfg->npolicies; i++) {
            int w = cfg_bprintf(names + off, sizeof(names) - off, "%s%s", i ? ", " : "",
                                c->cfg->policies[i].name);
            if (w > 0 && (size_t)w < sizeof(names) - off)
                off += (size_t)w;
        }
        return cfg_fail(c, n, "%s: unknown policy '%.64s'; defined: %s", what, v, names);
    }
    return 0;
}

/* policies:, default_policy: and clients[i].policy: (after cfg_clients). */
static int cfg_policies(struct cfg_ctx *c, const yaml_node_t *root)
{
    struct config *cfg = c->cfg;
    yaml_node_t *m = cfg_map_get(c, root, "policies");
    int idx;

    for (size_t i = 0; i < cfg->nclients; i++)
        cfg->clients[i].policy = -1;
    if (m) {
        if (m->type != YAML_MAPPING_NODE)
            return cfg_fail(c, m, "policies must be a map (NAME: {allow: [...]}), not %s",
                            cfg_type_name(m));
        size_t count = (size_t)(m->data.mapping.pairs.top - m->data.mapping.pairs.start);
        if (count == 0)
            return cfg_fail(c, m, "policies is empty; define one or remove the key");
        if (count + 2 > CONFIG_MAX_POLICIES)
            return cfg_fail(c, m, "too many policies (%zu); at most %d", count,
                            CONFIG_MAX_POLICIES - 2);
        cfg->policies = xrealloc(cfg->policies, (count + 2) * sizeof(*cfg->policies));
        memset(cfg->policies + 2, 0, count * sizeof(*cfg->policies));
        for (size_t i = 0; i < count; i++) {
            yaml_node_pair_t *p = &m->data.mapping.pairs.start[i];
            yaml_node_t *k = cfg_node(c, p->key), *v = cfg_node(c, p->value);
            cfg->npolicies = 2 + i + 1;
            if (k->type == YAML_SCALAR_NODE) {
                for (size_t j = 2; j < 2 + i; j++) {
                    if (strcmp(cfg->policies[j].name, (const char *)k->data.scalar.value) == 0)
                        return cfg_fail(c, k,
                                        "duplicate policy '%.64s' (first given at line %d); keep "
                                        "only one",
                                        cfg->policies[j].name, cfg->policies[j].pos.line);
                }
            }
            if (cfg_policy(c, k, v, &cfg->policies[2 + i]) < 0)
                return -1;
        }
    }
    idx = CONFIG_POLICY_FULL;
    if (cfg_policy_ref(c, root, "", "default_policy", &idx) < 0)
        return -1;
    cfg->default_policy = (size_t)idx;
    yaml_node_t *l = cfg_map_get(c, root, "clients");
    for (size_t i = 0; l && l->type == YAML_SEQUENCE_NODE && i < cfg->nclients; i++) {
        yaml_node_t *cm = cfg_node(c, l->data.sequence.items.start[i]);
        char prefix[CFG_MAX_WHAT];
        cfg_bprintf(prefix, sizeof(prefix), "clients[%zu]", i);
        if (cfg_policy_ref(c, cm, prefix, "policy", &cfg->clients[i].policy) < 0)
            return -1;
    }
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
                                           "body_timeout",
                                           "log",
                                           "policies",
                                           "default_policy",
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
/*
 * Rules across sections, on the parsed struct config (positions come from
 * the struct), so a file and the ATLASSIAN_* default go through the same
 * checks.
 */
static int cfg_cross_checks(struct cfg_ctx *c)
{
    struct config *cfg = c->cfg;
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
                return cfg_fail_at(c, cfg->admin->pos,
                                   "admin %s is also a main listen address; give the admin "
                                   "endpoints their own address, e.g. 127.0.0.1:9090",
                                   cfg->admin->text);
        }
        if (!cfg->admin->loopback)
            cfg_warn_at(c, cfg->admin->pos,
                        "admin %s is not loopback: /metrics and /readyz are reachable from other "
                        "machines",
                        cfg->admin->text);
    }

    if (cfg->require_client_auth && cfg->nclients == 0)
        return cfg_fail_at(c, cfg->require_client_auth_pos,
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
        cfg_warn_at(c, cfg->allow_unauthenticated_remote_pos,
                    "allow_unauthenticated_remote is true but every listener is loopback or a unix "
                    "socket; it has no effect");
    return 0;
}

/* body_timeout (top level): how long a promised request body may stall. */
static int cfg_framing(struct cfg_ctx *c, const yaml_node_t *root)
{
    return cfg_get_duration(c, root, "", "body_timeout", false, &c->cfg->body_timeout_ms);
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
    cfg->body_timeout_ms = CONFIG_DEFAULT_BODY_TIMEOUT_MS;
    cfg->log.format = LOG_FORMAT_TEXT;
    cfg->log.level = LOG_INFO;
    cfg->log.audit = true;
    cfg_policy_builtins(cfg);
}

static int cfg_document(struct cfg_ctx *c, const yaml_node_t *root)
{
    struct config *cfg = c->cfg;
    yaml_node_t *n;

    bool bad = false, creds_bad, clients_bad = true;

    /*
     * Every section is checked, so one run reports every error it can:
     * a section stops at its own first error, and a section that refers to
     * another (sites and clients name credentials, policies name clients)
     * is checked only when what it refers to was valid, so no error is
     * reported that only follows from an earlier one. The cross-checks need
     * the whole configuration and run last, on a valid one.
     */
    if (cfg_map_check(c, root, "the top level", cfg_top_keys) < 0)
        return -1;
    bad |= cfg_listen_top(c, root) < 0;
    n = cfg_map_get(c, root, "admin");
    if (n) {
        cfg->admin = xcalloc(1, sizeof(*cfg->admin));
        bad |= cfg_listen_node(c, n, "admin", cfg->admin) < 0;
    }
    bad |= cfg_workers(c, root) < 0;
    creds_bad = cfg_credentials(c, root) < 0;
    bad |= creds_bad;
    if (!creds_bad) {
        bad |= cfg_sites(c, root) < 0;
        clients_bad = cfg_clients(c, root) < 0;
        bad |= clients_bad;
    }
    bad |= cfg_rate_limit(c, root) < 0;
    bad |= cfg_get_bool(c, root, "", "require_client_auth", &cfg->require_client_auth) < 0;
    bad |= cfg_get_bool(c, root, "", "allow_unauthenticated_remote",
                        &cfg->allow_unauthenticated_remote) < 0;
    cfg->require_client_auth_pos = cfg_pos(cfg_map_get(c, root, "require_client_auth"));
    cfg->allow_unauthenticated_remote_pos =
        cfg_pos(cfg_map_get(c, root, "allow_unauthenticated_remote"));
    bad |= cfg_upstream(c, root) < 0;
    bad |= cfg_sections(c, root) < 0;
    if (!clients_bad)
        bad |= cfg_policies(c, root) < 0;
    bad |= cfg_framing(c, root) < 0;
    if (bad)
        return -1;
    return cfg_cross_checks(c);
}

/* ------------------------------------------------------------ entry points */

static int cfg_read_file(const char *path, unsigned char **out, size_t *len, char **err)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    size_t n;

    if (!f) {
        /* No position: there is no file to point into. */
        *err = xasprintf("credproxy: cannot read %s: %s", path, strerror(errno));
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

static const struct config_load_opts cfg_no_opts = {0, NULL};

static int cfg_load_file(const char *path, const struct config_load_opts *opts, struct config **out,
                         char **err)
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
    c.opts = opts;

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
        if (!c.err && cfg_document(&c, root) == 0)
            cfg_onboard_finish(&c, path);
    }
    cfg_wipe_doc(&doc);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
done_noparse:
    cfg_wipe_buf(buf, len);
    if (c.err) {
        cfg_errors_finish(&c);
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

int config_load_file(const char *path, struct config **out, char **err)
{
    return cfg_load_file(path, &cfg_no_opts, out, err);
}

static int cfg_load_env(const struct config_load_opts *opts, struct config **out, char **err)
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
    if (nset == 0 && !(opts->flags & CONFIG_LOAD_DEFAULT_ANY))
        return 1;
    if (opts->flags & CONFIG_LOAD_DEFAULT_ANY) {
        /* env/exec: only the site matters (and not even that); the rest is the proxy's. */
        if (!vals[1] || !*vals[1])
            vals[1] = "unknown@localhost";
    }
    /* Which variables this command needs: all three; only the site without secrets; none
     * for env/exec. */
    bool need[3] = {!(opts->flags & CONFIG_LOAD_DEFAULT_ANY),
                    !(opts->flags & CONFIG_LOAD_NO_SECRETS),
                    !(opts->flags & CONFIG_LOAD_NO_SECRETS)};
    int nmiss = 0;
    for (int i = 0; i < 3; i++)
        nmiss += need[i] && !(vals[i] && *vals[i]);
    if (nmiss > 0) {
        int k = 0;
        for (int i = 0; i < 3; i++) {
            if (!need[i] || (vals[i] && *vals[i]))
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
    c.opts = opts;

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
    cr->reject_after = CONFIG_DEFAULT_REJECT_AFTER;

    struct config_site *st;
    cfg->sites = xcalloc(1, sizeof(*cfg->sites));
    cfg->nsites = 1;
    st = &cfg->sites[0];
    st->port = 443;
    st->credential = 0;

    bool changed;
    if (!vals[0] || !*vals[0]) {
        /* DEFAULT_ANY without ATLASSIAN_SITE: no site (env/exec need none). */
        cfg->nsites = 0;
        cr->email = xstrdup(vals[1]);
        goto done;
    }
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

    if (!vals[1] || !*vals[1]) {
        /* NO_SECRETS (lint --no-secrets, ca init): the email belongs with the token. */
        cr->email = xstrdup("unknown@localhost");
        goto done;
    }
    if (cfg_email_check(&c, NULL, "ATLASSIAN_EMAIL", vals[1]) < 0)
        goto fail;
    cr->email = xstrdup(vals[1]);
    if (cfg_secrets_skipped(&c))
        goto done;
    {
        struct cfg_secret_what w = {"credential 'default'", "token", "", "token_env",
                                    "token_file",           "token"};
        if (cfg_secret_check(&c, NULL, &w, "environment variable ATLASSIAN_API_TOKEN", vals[2],
                             strlen(vals[2])) < 0)
            goto fail;
    }
    cr->secret = xstrdup(vals[2]);
done:
    if (cfg_cross_checks(&c) < 0)
        goto fail;
    cfg_onboard_finish(&c, NULL);
    *out = cfg;
    return 0;
fail:
    *err = c.err;
    config_free(cfg);
    return -1;
}

int config_load_env(struct config **out, char **err)
{
    return cfg_load_env(&cfg_no_opts, out, err);
}

int config_load_with(const char *path, const struct config_load_opts *opts, struct config **out,
                     char **err)
{
    const char *env;

    if (!opts)
        opts = &cfg_no_opts;
    if (path)
        return cfg_load_file(path, opts, out, err);
    env = getenv("CREDPROXY_CONFIG");
    if (env && *env)
        return cfg_load_file(env, opts, out, err);
    return cfg_load_env(opts, out, err);
}

int config_load(const char *path, struct config **out, char **err)
{
    return config_load_with(path, NULL, out, err);
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
        free(cr->client_id);
        free(cr->token_url);
        free(cr->scopes);
        free(cr->source_ref);
        util_free_secret(cr->secret);
    }
    free(cfg->credentials);
    for (size_t i = 0; i < cfg->nsites; i++) {
        struct config_site *s = &cfg->sites[i];
        free(s->host);
        free(s->domain);
        free(s->alias);
        free(s->cloud_id);
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
    cfg_policies_free(cfg);
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
    for (size_t i = 0; i < cfg->nsecret_envs; i++)
        free(cfg->secret_envs[i]);
    free(cfg->secret_envs);
    util_secure_zero(cfg, sizeof(*cfg));
    free(cfg);
}
