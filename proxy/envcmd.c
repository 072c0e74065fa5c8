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
 *
 * Neither command needs or reads a credential's secret (main loads the
 * configuration with CONFIG_LOAD_NO_SECRETS); with --client ID the one secret
 * read is that client's own key, which goes into the proxy URLs' userinfo so
 * every proxy-aware tool sends Proxy-Authorization. exec removes every
 * variable that holds a credential secret or another client's key from the
 * child's environment.
 */
#define _GNU_SOURCE
#include "envcmd.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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
/* exec's "is the proxy up" probe: a local connect answers at once or not at all. */
#define ENVCMD_PROBE_TIMEOUT_MS 500
#define ENVCMD_MAX_KEY_URL (CONFIG_MAX_SECRET_LEN * 3 + 1) /* percent-encoded client key */

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
        util_free_secret(env->vars[i].value); /* proxy URLs may carry a client key */
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

/* RFC 3986 userinfo: everything but the unreserved characters percent-encoded. */
static char *envcmd_userinfo_encode(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *out, *o;

    if (n > CONFIG_MAX_SECRET_LEN)
        n = CONFIG_MAX_SECRET_LEN; /* config refuses longer keys; never overrun */
    out = xmalloc(n * 3 + 1);
    o = out;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '.' || ch == '_' || ch == '~') {
            *o++ = (char)ch;
        } else {
            *o++ = '%';
            *o++ = hex[ch >> 4];
            *o++ = hex[ch & 15];
        }
    }
    *o = '\0';
    return out;
}

/* The first TCP listener, or NULL with *err. host_out: where this machine reaches it. */
static const struct config_listen *envcmd_listener(const struct config *cfg, const char **host_out,
                                                   char **err)
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
        *host_out = host;
        return l;
    }
    *err = xstrdup("env needs a TCP listen address: HTTP_PROXY cannot name a unix socket "
                   "(add e.g. `listen: 127.0.0.1:8080`)");
    return NULL;
}

/*
 * http://[ID:KEY@]HOST:PORT of the first TCP listener. Returns a new string
 * (holding the client's key when client is given: wipe it), or NULL with *err.
 */
static char *envcmd_proxy_url(const struct config *cfg, const struct config_client *client,
                              char **err)
{
    const char *host = NULL;
    const struct config_listen *l = envcmd_listener(cfg, &host, err);
    char *user = NULL, *url;
    bool v6;

    if (!l)
        return NULL;
    v6 = strchr(host, ':') != NULL;
    if (client) {
        char *id = envcmd_userinfo_encode(client->id), *key = envcmd_userinfo_encode(client->key);
        user = xasprintf("%s:%s@", id, key);
        free(id);
        util_free_secret(key);
    }
    url = xasprintf("http://%s%s%s%s:%d", user ? user : "", v6 ? "[" : "", host, v6 ? "]" : "",
                    l->port);
    util_free_secret(user);
    return url;
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

/* The client named by --client (its key loaded), NULL when none; 2 with a message when bad. */
static int envcmd_client(const struct config *cfg, const char *client_id,
                         const struct config_client **out)
{
    int i;

    *out = NULL;
    if (!client_id)
        return 0;
    i = config_client_index(cfg, client_id);
    if (i < 0) {
        fprintf(stderr, "credproxy: no client '%s' in %s; the configured clients are:", client_id,
                cfg->file);
        for (size_t k = 0; k < cfg->nclients; k++)
            fprintf(stderr, " %s", cfg->clients[k].id);
        fprintf(stderr, "%s\n", cfg->nclients ? "" : " (none)");
        return 2;
    }
    if (!cfg->clients[i].key) {
        fprintf(stderr, "credproxy: client '%s' has no key loaded\n", client_id);
        return 2;
    }
    *out = &cfg->clients[i];
    return 0;
}

/* The path as this process sees it: absolute, not resolved through symlinks. New string. */
static char *envcmd_abs_path(const char *p)
{
    char *cwd, *out;
    if (p[0] == '/')
        return xstrdup(p);
    cwd = getcwd(NULL, 0);
    out = cwd ? xasprintf("%s/%s", cwd, p) : xstrdup(p);
    free(cwd);
    return out;
}

/* Everything env prints and exec sets. 0, or 2 with a message on stderr. */
static int envcmd_build(const struct config *cfg, const char *client_id, struct envcmd_env *env)
{
    const char *ca = cfg->interception.ca_cert ? cfg->interception.ca_cert : CONFIG_DEFAULT_CA_CERT;
    const struct config_client *client = NULL;
    char *err = NULL, *url;
    char abs[PATH_MAX];

    memset(env, 0, sizeof(*env));
    if (envcmd_client(cfg, client_id, &client) != 0)
        return 2;
    url = envcmd_proxy_url(cfg, client, &err);
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
    util_free_secret(url);

    /* Absolute paths: the agent runs in its own working directory. */
    if (!realpath(ca, abs)) {
        char *looked = envcmd_abs_path(ca);
        env->note = xasprintf("no CA at %s (interception.ca_cert): run `credproxy ca init` for "
                              "https:// interception",
                              looked);
        free(looked);
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

int envcmd_print(const struct config *cfg, const char *format, const char *client_id, FILE *out)
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
    rc = envcmd_build(cfg, client_id, &env);
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

/*
 * Removes from this process's environment (which CMD inherits) every
 * variable that holds a credential secret, and every client's key variable
 * except the chosen client's own.
 */
static void envcmd_scrub(const struct config *cfg, const char *client_id)
{
    for (size_t i = 0; i < cfg->nsecret_envs; i++)
        unsetenv(cfg->secret_envs[i]);
    for (size_t i = 0; i < cfg->nclients; i++) {
        const struct config_client *cl = &cfg->clients[i];
        if (cl->source != CONFIG_SECRET_ENV || !cl->source_ref)
            continue;
        if (client_id && strcmp(cl->id, client_id) == 0)
            continue;
        unsetenv(cl->source_ref);
    }
}

/* 0 when something accepts on HOST:PORT within ENVCMD_PROBE_TIMEOUT_MS, else an errno. */
static int envcmd_probe(const char *host, int port)
{
    struct addrinfo hints, *res = NULL;
    char portstr[16];
    int fd, err = ECONNREFUSED;

    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    snprintf(portstr, sizeof(portstr), "%d", port);
    if (getaddrinfo(host, portstr, &hints, &res) != 0 || !res)
        return EHOSTUNREACH;
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
        if (connect(fd, res->ai_addr, res->ai_addrlen) == 0) {
            err = 0;
        } else if (errno == EINPROGRESS) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            socklen_t len = sizeof(err);
            if (poll(&pfd, 1, ENVCMD_PROBE_TIMEOUT_MS) == 1) {
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
                    err = errno;
            } else {
                err = ETIMEDOUT;
            }
        } else {
            err = errno;
        }
        close(fd);
    }
    freeaddrinfo(res);
    return err;
}

/* Warns (never fails) when nothing listens where the variables send CMD. */
static void envcmd_warn_if_down(const struct config *cfg)
{
    const char *host = NULL;
    char *err = NULL;
    const struct config_listen *l = envcmd_listener(cfg, &host, &err);
    int e;

    if (!l) {
        free(err);
        return;
    }
    e = envcmd_probe(host, l->port);
    if (e == 0)
        return;
    if (!cfg->file || strcmp(cfg->file, "<environment>") == 0)
        fprintf(stderr,
                "credproxy: exec: warning: nothing listens on %s:%d (%s); start the proxy "
                "first: `credproxy run` with ATLASSIAN_SITE, ATLASSIAN_EMAIL and "
                "ATLASSIAN_API_TOKEN set (or `systemctl start credproxy`)\n",
                host, l->port, strerror(e));
    else
        fprintf(stderr,
                "credproxy: exec: warning: nothing listens on %s:%d (%s); start the proxy "
                "first: `credproxy run -c %s` (or `systemctl start credproxy`)\n",
                host, l->port, strerror(e), cfg->file);
}

int envcmd_exec(const struct config *cfg, const char *client_id, char **argv)
{
    struct envcmd_env env;
    int rc;

    if (!argv || !argv[0]) {
        fprintf(stderr, "credproxy: exec: give a command after --\n");
        return 2;
    }
    rc = envcmd_build(cfg, client_id, &env);
    if (rc != 0)
        return rc;
    if (env.note)
        fprintf(stderr, "credproxy: exec: %s\n", env.note);
    envcmd_warn_if_down(cfg);
    envcmd_scrub(cfg, client_id);
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
