/*
 * envcmd: see envcmd.h.
 *
 * The variables, and why each is there:
 *   HTTP_PROXY/HTTPS_PROXY and lowercase http_proxy/https_proxy: curl honours
 *   only the lowercase http_proxy (a CGI safety rule), others read either.
 *   NO_PROXY/no_proxy: loopback never goes through the proxy (gateway mode
 *   talks to the proxy directly; "localhost" also covers *.localhost in curl).
 *   SSL_CERT_FILE, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, GIT_SSL_CAINFO: these
 *   *replace* a runtime's roots, so they point at a bundle of the system roots
 *   plus the local CA root, or every other https:// site would break.
 *   NODE_EXTRA_CA_CERTS: Node *adds* these to its built-in roots, so ca.pem.
 */
#define _GNU_SOURCE
#include "envcmd.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "mitm.h"
#include "util.h"

#define ENVCMD_MAX_VARS 16
#define ENVCMD_MAX_BUNDLE_BYTES (8 * 1024 * 1024) /* system roots are ~200 KiB */
#define ENVCMD_BUNDLE_NAME "ca-bundle.pem"
#define ENVCMD_NO_PROXY "localhost,127.0.0.1,::1"
#define ENVCMD_NO_CA_NOTE "no CA yet: run `credproxy ca init` for https:// interception"

/* The system trust store, first that exists (Debian/Ubuntu, Fedora/RHEL, Alpine/BSD). */
static const char *const envcmd_system_roots[] = {
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
};

struct envcmd_var {
    const char *name;
    char *value;
};

struct envcmd_env {
    struct envcmd_var vars[ENVCMD_MAX_VARS];
    size_t nvars;
    char *ca_cert;   /* absolute path, NULL when there is no CA */
    char *ca_bundle; /* absolute path, NULL when not written */
    char *note;      /* for the user (no CA, bundle not writable), NULL when none */
};

static void envcmd_env_clear(struct envcmd_env *env)
{
    for (size_t i = 0; i < env->nvars; i++)
        free(env->vars[i].value);
    free(env->ca_cert);
    free(env->ca_bundle);
    free(env->note);
    memset(env, 0, sizeof(*env));
}

static void envcmd_add(struct envcmd_env *env, const char *name, const char *value)
{
    if (env->nvars < ENVCMD_MAX_VARS) {
        env->vars[env->nvars].name = name;
        env->vars[env->nvars].value = xstrdup(value);
        env->nvars++;
    }
}

/* http://HOST:PORT of the first TCP listener. Returns a new string, or NULL with *err. */
static char *envcmd_proxy_url(const struct config *cfg, char **err)
{
    for (size_t i = 0; i < cfg->nlisten; i++) {
        const struct config_listen *l = &cfg->listen[i];
        const char *host;
        if (l->kind != CONFIG_LISTEN_TCP)
            continue;
        if (l->port == 0) {
            *err = xasprintf("listen address %s picks its port at start; env needs a fixed port",
                             l->text ? l->text : "?");
            return NULL;
        }
        host = l->host && *l->host ? l->host : "127.0.0.1";
        /* A wildcard bind is reached on loopback from this machine. */
        if (strcmp(host, "0.0.0.0") == 0)
            host = "127.0.0.1";
        else if (strcmp(host, "::") == 0)
            host = "::1";
        if (strchr(host, ':'))
            return xasprintf("http://[%s]:%d", host, l->port);
        return xasprintf("http://%s:%d", host, l->port);
    }
    *err = xstrdup("env needs a TCP listen address: HTTP_PROXY cannot name a unix socket "
                   "(add e.g. `listen: 127.0.0.1:8080`)");
    return NULL;
}

/* Whole file into a new buffer, at most max bytes. NULL when unreadable or too big. */
static char *envcmd_slurp(const char *path, size_t max, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    size_t n;

    if (!f)
        return NULL;
    buf = xmalloc(max + 1);
    n = fread(buf, 1, max + 1, f);
    fclose(f);
    if (n > max) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* The self-signed certificate(s) of ca.pem as PEM (what agents should trust). */
static char *envcmd_root_pem(const char *ca_path)
{
    size_t len = 0;
    char *pem = envcmd_slurp(ca_path, MITM_MAX_FILE_BYTES, &len), *out = NULL;
    BIO *in, *mem;
    X509 *x;

    if (!pem)
        return NULL;
    in = BIO_new_mem_buf(pem, (int)len);
    mem = BIO_new(BIO_s_mem());
    for (int i = 0; in && mem && i < MITM_MAX_CHAIN_CERTS; i++) {
        x = PEM_read_bio_X509(in, NULL, NULL, NULL);
        if (!x)
            break;
        if (X509_check_issued(x, x) == X509_V_OK)
            PEM_write_bio_X509(mem, x);
        X509_free(x);
    }
    ERR_clear_error();
    if (mem) {
        char *data;
        long n = BIO_get_mem_data(mem, &data);
        if (n > 0)
            out = xstrndup(data, (size_t)n);
    }
    BIO_free(in);
    BIO_free(mem);
    free(pem);
    return out;
}

/*
 * Write DIR/ca-bundle.pem = system roots + the local root, when missing or
 * different (so it follows both a new CA and a system store update). Returns
 * the bundle's path, or NULL with *note saying why.
 */
static char *envcmd_write_bundle(const char *ca_abs, char **note)
{
    const char *sys = NULL;
    char *root = envcmd_root_pem(ca_abs), *sys_pem = NULL, *want = NULL, *have = NULL;
    char *dir = xstrdup(ca_abs), *path = NULL, *err = NULL, *slash;
    size_t sys_len = 0, have_len = 0;

    slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    path = xasprintf("%s/%s", dir, ENVCMD_BUNDLE_NAME);
    if (!root) {
        *note = xasprintf("%s holds no root certificate; run `credproxy ca init --force`", ca_abs);
        goto fail;
    }
    for (size_t i = 0; i < UTIL_ARRAY_LEN(envcmd_system_roots) && !sys_pem; i++) {
        sys = envcmd_system_roots[i];
        sys_pem = envcmd_slurp(sys, ENVCMD_MAX_BUNDLE_BYTES, &sys_len);
    }
    if (!sys_pem) {
        sys = X509_get_default_cert_file();
        sys_pem = envcmd_slurp(sys, ENVCMD_MAX_BUNDLE_BYTES, &sys_len);
    }
    want = xasprintf("%s%s# credproxy local CA (%s), added by `credproxy env`; system roots "
                     "from %s\n%s",
                     sys_pem ? sys_pem : "",
                     sys_pem && sys_len && sys_pem[sys_len - 1] != '\n' ? "\n" : "", ca_abs,
                     sys_pem ? sys : "(none found)", root);
    have = envcmd_slurp(path, ENVCMD_MAX_BUNDLE_BYTES, &have_len);
    if (!have || strcmp(have, want) != 0) {
        if (util_write_atomic(path, want, strlen(want), 0644, &err) != 0) {
            *note = xasprintf("cannot write the trust bundle (%s); SSL_CERT_FILE and friends "
                              "are not set",
                              err);
            free(err);
            goto fail;
        }
    }
    free(root);
    free(sys_pem);
    free(want);
    free(have);
    free(dir);
    return path;
fail:
    free(root);
    free(sys_pem);
    free(want);
    free(have);
    free(dir);
    free(path);
    return NULL;
}

/* Everything env prints and exec sets. 0, or 2 with a message on stderr. */
static int envcmd_build(const struct config *cfg, struct envcmd_env *env)
{
    const char *ca = cfg->interception.ca_cert ? cfg->interception.ca_cert : CONFIG_DEFAULT_CA_CERT;
    char *err = NULL, *url = envcmd_proxy_url(cfg, &err);
    char abs[PATH_MAX];

    memset(env, 0, sizeof(*env));
    if (!url) {
        fprintf(stderr, "credproxy: %s\n", err);
        free(err);
        return 2;
    }
    envcmd_add(env, "HTTP_PROXY", url);
    envcmd_add(env, "HTTPS_PROXY", url);
    envcmd_add(env, "http_proxy", url);
    envcmd_add(env, "https_proxy", url);
    envcmd_add(env, "NO_PROXY", ENVCMD_NO_PROXY);
    envcmd_add(env, "no_proxy", ENVCMD_NO_PROXY);
    free(url);

    /* Absolute paths: the agent runs in its own working directory. */
    if (!realpath(ca, abs)) {
        env->note = xstrdup(ENVCMD_NO_CA_NOTE);
        return 0;
    }
    env->ca_cert = xstrdup(abs);
    env->ca_bundle = envcmd_write_bundle(abs, &env->note);
    if (env->ca_bundle) {
        envcmd_add(env, "SSL_CERT_FILE", env->ca_bundle);
        envcmd_add(env, "REQUESTS_CA_BUNDLE", env->ca_bundle);
        envcmd_add(env, "CURL_CA_BUNDLE", env->ca_bundle);
        envcmd_add(env, "GIT_SSL_CAINFO", env->ca_bundle);
    }
    envcmd_add(env, "NODE_EXTRA_CA_CERTS", env->ca_cert);
    return 0;
}

/* 'value' for sh: everything literal; an embedded ' becomes '\''. */
static void envcmd_put_sh(FILE *out, const char *v)
{
    fputc('\'', out);
    for (; *v; v++) {
        if (*v == '\'')
            fputs("'\\''", out);
        else
            fputc(*v, out);
    }
    fputc('\'', out);
}

/* 'value' for fish: inside single quotes only \ and ' are special. */
static void envcmd_put_fish(FILE *out, const char *v)
{
    fputc('\'', out);
    for (; *v; v++) {
        if (*v == '\'' || *v == '\\')
            fputc('\\', out);
        fputc(*v, out);
    }
    fputc('\'', out);
}

/* A JSON string (bytes >= 0x80 pass through: paths are taken to be UTF-8), or null. */
static void envcmd_put_json(FILE *out, const char *v)
{
    if (!v) {
        fputs("null", out);
        return;
    }
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", out);
        else if (*p == '\t')
            fputs("\\t", out);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(out, "\\u%04x", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

int envcmd_print(const struct config *cfg, const char *format, FILE *out)
{
    struct envcmd_env env;
    bool sh = format && strcmp(format, "sh") == 0;
    bool fish = format && strcmp(format, "fish") == 0;
    bool json = format && strcmp(format, "json") == 0;
    int rc;

    if (!sh && !fish && !json) {
        fprintf(stderr, "credproxy: env: unknown --format '%s' (sh, fish or json)\n",
                format ? format : "");
        return 2;
    }
    rc = envcmd_build(cfg, &env);
    if (rc != 0)
        return rc;
    if (json) {
        fputs("{\"env\":{", out);
        for (size_t i = 0; i < env.nvars; i++) {
            if (i)
                fputc(',', out);
            envcmd_put_json(out, env.vars[i].name);
            fputc(':', out);
            envcmd_put_json(out, env.vars[i].value);
        }
        fputs("},\"ca_cert\":", out);
        envcmd_put_json(out, env.ca_cert);
        fputs(",\"ca_bundle\":", out);
        envcmd_put_json(out, env.ca_bundle);
        fputs(",\"note\":", out);
        envcmd_put_json(out, env.note);
        fputs("}\n", out);
    } else {
        fprintf(out, "# credproxy: use with %s\n",
                sh ? "eval \"$(credproxy env)\"" : "credproxy env --format fish | source");
        for (size_t i = 0; i < env.nvars; i++) {
            fprintf(out, sh ? "export %s=" : "set -gx %s ", env.vars[i].name);
            if (sh)
                envcmd_put_sh(out, env.vars[i].value);
            else
                envcmd_put_fish(out, env.vars[i].value);
            fputc('\n', out);
        }
        if (env.note) {
            /* A note is one line of our own text; keep it a comment whatever it holds. */
            fputs("# ", out);
            for (const char *p = env.note; *p; p++)
                fputc(*p == '\n' ? ' ' : *p, out);
            fputc('\n', out);
            fprintf(stderr, "credproxy: env: %s\n", env.note);
        }
    }
    fflush(out);
    envcmd_env_clear(&env);
    return 0;
}

int envcmd_exec(const struct config *cfg, char **argv)
{
    struct envcmd_env env;
    int rc;

    if (!argv || !argv[0]) {
        fprintf(stderr, "credproxy: exec: give a command after --\n");
        return 2;
    }
    rc = envcmd_build(cfg, &env);
    if (rc != 0)
        return rc;
    if (env.note)
        fprintf(stderr, "credproxy: exec: %s\n", env.note);
    for (size_t i = 0; i < env.nvars; i++) {
        if (setenv(env.vars[i].name, env.vars[i].value, 1) != 0) {
            fprintf(stderr, "credproxy: exec: cannot set %s: %s\n", env.vars[i].name,
                    strerror(errno));
            envcmd_env_clear(&env);
            return 127;
        }
    }
    envcmd_env_clear(&env);
    fflush(NULL);
    execvp(argv[0], argv);
    fprintf(stderr, "credproxy: exec: cannot run %s: %s\n", argv[0], strerror(errno));
    return 127;
}
