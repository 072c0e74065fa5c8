/*
 * config_int: what the three parts of the configuration loader share
 * (config_yaml.c: the YAML walker and messages; config_secret.c: reading
 * secrets; config.c: the sections and cross-checks). Internal to them:
 * nothing outside proxy/config*.c includes it.
 *
 * Layer 1, like config.h. Never formats a secret's bytes into a message.
 */
#ifndef CREDPROXY_CONFIG_INT_H
#define CREDPROXY_CONFIG_INT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <yaml.h>

#include "config.h"

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
/* Errors reported in one message (one per line); the rest are counted. */
#define CFG_MAX_ERRORS 20

struct cfg_ctx {
    const char *file;
    yaml_document_t *doc;
    struct config *cfg;
    char *err;   /* the errors found so far, one per line */
    size_t nerr; /* how many (may exceed CFG_MAX_ERRORS) */
    size_t warn_cap;
    const struct config_load_opts *opts; /* never NULL inside the loader */
    bool keep_secret;                    /* NO_SECRETS, but this is the --client's key */
};

/* What kind of secret, for messages: "credential 'svc'" + "token". */
struct cfg_secret_what {
    const char *owner;  /* "credential 'svc'" or "client 'bot'" */
    const char *noun;   /* "token" or "key" */
    const char *prefix; /* "credentials.svc" or "clients[0]" */
    const char *k_env, *k_file, *k_inline;
};

int cfg_bprintf(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int cfg_fail_at(struct cfg_ctx *c, struct config_pos pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int cfg_fail(struct cfg_ctx *c, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void cfg_warn_at(struct cfg_ctx *c, struct config_pos pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void cfg_warn(struct cfg_ctx *c, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
struct config_pos cfg_pos(const yaml_node_t *n);
char *cfg_vformat(const char *file, struct config_pos pos, const char *tag, const char *fmt,
                  va_list ap);
void cfg_warn_add(struct cfg_ctx *c, char *text);
/* Append "N more errors not shown" when more than CFG_MAX_ERRORS were found. */
void cfg_errors_finish(struct cfg_ctx *c);
const char *cfg_type_name(const yaml_node_t *n);
yaml_node_t *cfg_node(struct cfg_ctx *c, int id);
const char *cfg_scalar(struct cfg_ctx *c, const yaml_node_t *n, const char *what);
int cfg_map_check(struct cfg_ctx *c, const yaml_node_t *n, const char *what,
                  const char *const *keys);
yaml_node_t *cfg_map_get(struct cfg_ctx *c, const yaml_node_t *n, const char *key);
yaml_node_t *cfg_map_key(struct cfg_ctx *c, const yaml_node_t *n, const char *key);
void cfg_what(char *buf, const char *prefix, const char *key);
int cfg_get_bool(struct cfg_ctx *c, const yaml_node_t *map, const char *prefix, const char *key,
                 bool *out);
int cfg_get_uint(struct cfg_ctx *c, const yaml_node_t *map, const char *prefix, const char *key,
                 uint64_t min, uint64_t max, uint64_t *out);
int cfg_get_duration(struct cfg_ctx *c, const yaml_node_t *map, const char *prefix, const char *key,
                     bool allow_zero, int64_t *out);
int cfg_get_rate(struct cfg_ctx *c, const yaml_node_t *map, const char *prefix, const char *key,
                 bool *given, bool *off, double *per_sec);
int cfg_get_str(struct cfg_ctx *c, const yaml_node_t *map, const char *prefix, const char *key,
                char **out, yaml_node_t **node);
bool cfg_env_name_showable(const char *s);
bool cfg_env_name_ok(const char *s);
bool cfg_path_showable(const char *s);
bool cfg_secrets_skipped(const struct cfg_ctx *c);
int cfg_secret_check(struct cfg_ctx *c, const yaml_node_t *n, const struct cfg_secret_what *w,
                     const char *from, const char *s, size_t len);
char *cfg_secret_read_file(struct cfg_ctx *c, const yaml_node_t *n, const struct cfg_secret_what *w,
                           const char *path);
int cfg_secret_load(struct cfg_ctx *c, const yaml_node_t *m, const struct cfg_secret_what *w,
                    char **secret, enum config_secret_source *source, char **ref);
bool cfg_is_space(char ch);

#endif
