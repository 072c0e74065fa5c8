/*
 * config_secret: reading secrets for the configuration (token_env,
 * token_file, inline token, client keys, client secrets): one source each,
 * bounded, white space refused, the permission policy of util.h applied to
 * files, and never a secret byte in a message.
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

/* ---------------------------------------------------------------- secrets */

/* Conventional environment variable names are safe to echo; anything else might be a pasted token.
 */
bool cfg_env_name_showable(const char *s)
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

bool cfg_env_name_ok(const char *s)
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
bool cfg_path_showable(const char *s)
{
    return strlen(s) <= 512 && (strchr(s, '/') || strchr(s, '.'));
}

/* CONFIG_LOAD_NO_SECRETS is in force for the secret being loaded now. */
bool cfg_secrets_skipped(const struct cfg_ctx *c)
{
    return (c->opts->flags & CONFIG_LOAD_NO_SECRETS) && !c->keep_secret;
}

/*
 * Checks secret bytes (after the one trailing newline of a file was cut):
 * not empty, not too long, no leading/trailing white space, no control
 * characters. from describes the source ("environment variable X").
 * Never puts a byte of the secret into the message.
 */
int cfg_secret_check(struct cfg_ctx *c, const yaml_node_t *n, const struct cfg_secret_what *w,
                     const char *from, const char *s, size_t len)
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
char *cfg_secret_read_file(struct cfg_ctx *c, const yaml_node_t *n, const struct cfg_secret_what *w,
                           const char *path)
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
int cfg_secret_load(struct cfg_ctx *c, const yaml_node_t *m, const struct cfg_secret_what *w,
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
        if (cfg_secrets_skipped(c)) {
            *secret = NULL;
            *source = CONFIG_SECRET_ENV;
            *ref = xstrdup(v);
            return 0;
        }
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
        if (cfg_secrets_skipped(c)) {
            *secret = NULL;
            *source = CONFIG_SECRET_FILE;
            *ref = xstrdup(v);
            return 0;
        }
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
    *secret = cfg_secrets_skipped(c) ? NULL : xstrdup(v);
    *source = CONFIG_SECRET_INLINE;
    *ref = NULL;
    return 0;
}
