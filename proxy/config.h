/*
 * config: the only code that sees libyaml. Turns a YAML file (or the
 * ATLASSIAN_* environment) into an immutable struct config, reading every
 * secret it names, and reports every problem as FILE:LINE:COL: message.
 *
 * Layer 1. Never prints or returns a secret's bytes in any message; secrets
 * are zeroed when the config is freed.
 */
#ifndef CREDPROXY_CONFIG_H
#define CREDPROXY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"

#define CONFIG_DEFAULT_LISTEN "127.0.0.1:8080"
#define CONFIG_DEFAULT_RATE_PER_SEC (100.0 / 60.0)
#define CONFIG_DEFAULT_BURST 10
#define CONFIG_DEFAULT_MAX_WAIT_MS 30000
#define CONFIG_DEFAULT_MAX_QUEUE 1000
#define CONFIG_DEFAULT_CONNECT_TIMEOUT_MS 10000
#define CONFIG_DEFAULT_TIMEOUT_MS 300000
#define CONFIG_DEFAULT_SHUTDOWN_TIMEOUT_MS 10000
/* body_timeout: a promised request body idle this long is cut (like the head timeout). */
#define CONFIG_DEFAULT_BODY_TIMEOUT_MS 10000
#define CONFIG_DEFAULT_CA_CERT "certs/ca.pem"
#define CONFIG_DEFAULT_CA_KEY "certs/ca.key"
#define CONFIG_EXPIRY_WARN_DAYS 14
#define CONFIG_MAX_LISTEN 16
#define CONFIG_MAX_SITES 256
#define CONFIG_MAX_CREDENTIALS 64
#define CONFIG_MAX_CLIENTS 256
#define CONFIG_MAX_SECRET_LEN 8192
#define CONFIG_MAX_WORKERS 64
#define CONFIG_MAX_CONNECT_TO 64    /* upstream.connect_to entries */
#define CONFIG_MAX_SERVER_NAMES 32  /* gateway.server_names entries */
#define CONFIG_MAX_POLICIES 64      /* policies, the two built-in ones included */
#define CONFIG_MAX_POLICY_SCOPE 256 /* projects or spaces listed in one policy */
#define CONFIG_MAX_SCOPE_KEY 64     /* longest project or space key */
/* Credentials (issue 10): the breaker's threshold, OAuth and the API gateway. */
#define CONFIG_DEFAULT_REJECT_AFTER 3
#define CONFIG_MAX_REJECT_AFTER 1000
#define CONFIG_DEFAULT_TOKEN_URL "https://auth.atlassian.com/oauth/token"
#define CONFIG_GATEWAY_HOST "api.atlassian.com"
#define CONFIG_MAX_CLOUD_ID 64 /* a UUID is 36 */
#define CONFIG_MAX_SCOPES 2048

/* Where a value came from, for messages ("conf.yaml:12:5"). line/col are 1-based. */
struct config_pos {
    int line;
    int col;
};

enum config_listen_kind { CONFIG_LISTEN_TCP = 0, CONFIG_LISTEN_UNIX };

struct config_listen {
    char *text; /* as written: "127.0.0.1:8080", "[::1]:8080", "unix:/x.sock" */
    enum config_listen_kind kind;
    char *host;    /* TCP: "127.0.0.1", "::1", "0.0.0.0", "localhost" (no brackets) */
    int port;      /* TCP: 1..65535 (0 is allowed: pick a free port) */
    char *path;    /* unix: the socket path */
    bool loopback; /* TCP on 127.0.0.0/8, ::1 or "localhost"; unix sockets count as local */
    struct config_pos pos;
};

enum config_cred_type {
    CONFIG_CRED_BASIC = 0,
    CONFIG_CRED_BEARER,
    CONFIG_CRED_OAUTH_CLIENT, /* service account: client credentials minted into Bearer tokens */
};
enum config_secret_source { CONFIG_SECRET_ENV = 0, CONFIG_SECRET_FILE, CONFIG_SECRET_INLINE };

struct config_credential {
    char *name;
    enum config_cred_type type;
    char *email; /* basic only; trimmed-checked, never NULL for basic */
    enum config_secret_source source;
    char *source_ref;    /* the env var name or the file path; NULL for inline */
    char *secret;        /* the token bytes (secret!); zeroed on free */
    int64_t expires;     /* epoch seconds (00:00 UTC of the date), 0 = none */
    bool rate_off;       /* rate_limit: off */
    double rate_per_sec; /* tokens per second */
    unsigned burst;
    struct config_pos pos;
    /* v2 (issue 10). For oauth_client, secret is the client secret. */
    unsigned reject_after; /* breaker: consecutive auth failures before holding it back */
    bool via_gateway;      /* via: api_gateway, or implied by oauth_client */
    char *client_id;       /* oauth_client only */
    char *token_url;       /* oauth_client only; CONFIG_DEFAULT_TOKEN_URL unless given */
    char *scopes;          /* oauth_client only; space-separated, NULL = none asked */
};

struct config_site {
    char *host;        /* upstream host, lowercase, no trailing dot: "acme.atlassian.net" */
    char *domain;      /* for domain: sites the short name "acme"; NULL for host: sites */
    char *alias;       /* optional gateway alias; NULL when none */
    int port;          /* upstream port, default 443 */
    size_t credential; /* index into config.credentials */
    struct config_listen *listen; /* optional dedicated gateway listener; NULL when none */
    struct config_pos pos;
    char *cloud_id; /* v2: cloud_id: (lowercase); NULL = discover from /_edge/tenant_info */
};

enum config_unknown_hosts { CONFIG_UNKNOWN_DENY = 0, CONFIG_UNKNOWN_TUNNEL };
enum config_when_exhausted { CONFIG_RL_QUEUE = 0, CONFIG_RL_REJECT };

/*
 * Atlassian operation classes (see policy.h, which classifies requests).
 * Defined here because the configuration names them in `allow:` lists.
 */
enum policy_class {
    POLICY_READ = 0,
    POLICY_COMMENT,
    POLICY_TRANSITION,
    POLICY_WRITE,
    POLICY_DELETE,
    POLICY_ADMIN,
    POLICY_NCLASSES
};
#define POLICY_CLASS_BIT(c) (1u << (unsigned)(c))
#define POLICY_ALL_CLASSES ((1u << POLICY_NCLASSES) - 1u)

/* One named policy: which classes, and optionally which projects and spaces. */
struct config_policy {
    char *name;
    unsigned allow;  /* POLICY_CLASS_BIT of each allowed class */
    char **projects; /* upper-case Jira project keys; only when has_projects */
    size_t nprojects;
    bool has_projects; /* false: every project */
    char **spaces;     /* Confluence space keys; only when has_spaces */
    size_t nspaces;
    bool has_spaces; /* false: every space */
    bool builtin;    /* `full` and `read-only` */
    struct config_pos pos;
};

#define CONFIG_POLICY_FULL 0      /* index of the built-in `full` in config.policies */
#define CONFIG_POLICY_READ_ONLY 1 /* index of the built-in `read-only` */

struct config_client {
    char *id;
    enum config_secret_source source;
    char *source_ref;
    char *key;     /* secret; zeroed on free */
    bool has_rate; /* a per-client rate_limit was given */
    bool rate_off;
    double rate_per_sec;
    unsigned burst; /* defaults to the credential default */
    int policy;     /* index into config.policies; -1 = default_policy */
    struct config_pos pos;
};

struct config_connect_to {
    char *text;    /* "HOST:PORT:CONNECT-HOST:CONNECT-PORT", as libcurl takes it */
    char *host;    /* may be "" (any host), lowercase */
    int port;      /* 0 = any port */
    char *to_host; /* "" = unchanged */
    int to_port;   /* 0 = unchanged */
};

/* A warning found while loading: "FILE:LINE:COL: warning: text". */
struct config_warning {
    char *text;
};

struct config {
    char *file; /* the path loaded, or "<environment>" for the embedded default */

    struct config_listen *listen; /* main listeners */
    size_t nlisten;
    struct config_listen *admin; /* NULL when no admin listener */
    unsigned workers;            /* 0 in the file means "number of CPUs", resolved here */

    struct config_credential *credentials;
    size_t ncredentials;
    struct config_site *sites;
    size_t nsites;
    enum config_unknown_hosts unknown_hosts;

    struct {
        enum config_when_exhausted when_exhausted;
        int64_t max_wait_ms;
        size_t max_queue; /* rate_limit.max_queue: waiting requests at most */
        char *store;      /* NULL = local; else "redis://host:port[/db]" */
        char *redis_host;
        int redis_port;
        int redis_db;
    } rate_limit;

    struct config_client *clients;
    size_t nclients;
    struct config_policy *policies; /* the built-in ones first (CONFIG_POLICY_*) */
    size_t npolicies;
    size_t default_policy;    /* index into policies; CONFIG_POLICY_FULL unless set */
    bool require_client_auth; /* as written, or forced on (see below) */
    bool allow_unauthenticated_remote;
    struct config_pos require_client_auth_pos, allow_unauthenticated_remote_pos; /* for messages */

    struct {
        char *ca_file; /* NULL = libcurl's default trust store */
        struct config_connect_to *connect_to;
        size_t nconnect_to;
        char *proxy; /* NULL = no proxy, never the environment's */
        int64_t connect_timeout_ms;
        int64_t timeout_ms; /* 0 = none */
        bool http2;
    } upstream;

    struct {
        char *ca_cert;
        char *ca_key;
    } interception;

    struct {
        bool rewrite_links;
        /*
         * Extra names that reach this proxy (a compose service or pod DNS
         * name): a Host naming one is accepted on site listeners and, with a
         * single site, selects it on the main listener, like "localhost".
         */
        char **server_names;
        size_t nserver_names;
    } gateway;

    int64_t shutdown_timeout_ms;
    int64_t body_timeout_ms; /* request body idle limit (framing) */

    struct {
        enum log_format format;
        enum log_level level;
        bool audit;
    } log;

    struct config_warning *warnings; /* for `run` (logged) and `lint` (printed) */
    size_t nwarnings;

    /*
     * Onboarding (env/exec/lint --no-secrets): the environment variables that
     * hold a credential's secret (token_env, client_secret_env, any *_env of a
     * credential, ATLASSIAN_API_TOKEN for the embedded default), so exec can
     * remove them from an agent's environment. Names only, never values.
     */
    char **secret_envs;
    size_t nsecret_envs;
    bool no_secrets; /* loaded with CONFIG_LOAD_NO_SECRETS: every secret is NULL */
};

/* How config_load_with reads a configuration. */
enum config_load_flag {
    /* Read no credential or client secret: token_env/key_env variables are not looked up,
     * token_file/key_file are not opened, inline values are checked but not kept. For
     * `env`, `exec`, `healthcheck` and `lint --no-secrets`. */
    CONFIG_LOAD_NO_SECRETS = 1u << 0,
    /* The embedded default needs none of the ATLASSIAN_* variables (env/exec run in an agent's
     * shell, where they are not set); a set ATLASSIAN_SITE is still validated. */
    CONFIG_LOAD_DEFAULT_ANY = 1u << 1,
};

struct config_load_opts {
    unsigned flags;        /* enum config_load_flag bits */
    const char *client_id; /* with NO_SECRETS: still read this client's key (env/exec --client) */
};

/* Maximum variables config.secret_envs records (credentials times their *_env keys). */
#define CONFIG_MAX_SECRET_ENVS (CONFIG_MAX_CREDENTIALS * 4 + 1)

/*
 * Load and fully validate FILE, reading every token_env/token_file/key_*
 * secret. On success returns 0 and *out owns a config. On failure returns -1
 * and *err owns one message "FILE:LINE:COL: message" (free with free()); no
 * config is returned. Unknown keys, duplicate keys, wrong types and keys of
 * features not built yet are errors.
 */
int config_load_file(const char *path, struct config **out, char **err);

/*
 * The embedded default from ATLASSIAN_SITE, ATLASSIAN_EMAIL and
 * ATLASSIAN_API_TOKEN. Returns 0 with *out set; 1 when none of the variables
 * is set (the caller then prints config_missing_message()); -1 with *err when
 * some are set but the set is incomplete or invalid.
 */
int config_load_env(struct config **out, char **err);

/*
 * The lookup order of the interface: path (from -c) if not NULL, else
 * $CREDPROXY_CONFIG, else the environment default. Same return values as
 * config_load_env (1 = nothing configured).
 */
int config_load(const char *path, struct config **out, char **err);

/* config_load with options (NULL = none). Same return values. */
int config_load_with(const char *path, const struct config_load_opts *opts, struct config **out,
                     char **err);

/* Index of the client with that id, or -1. */
int config_client_index(const struct config *cfg, const char *id);

/* The exit-2 text for "nothing configured": names the variables and -c/CREDPROXY_CONFIG. */
const char *config_missing_message(void);

/* Frees everything; zeroes secrets first. NULL is a no-op. */
void config_free(struct config *cfg);

/* "read" ... "admin", or NULL; config_class_parse gives -1 for an unknown name. */
const char *config_class_name(enum policy_class c);
int config_class_parse(const char *name);

/* Index of the policy with that name, or -1. */
int config_policy_index(const struct config *cfg, const char *name);

/* The policy for a client id (NULL = no identity): its own, else default_policy. Borrowed. */
const struct config_policy *config_policy_for(const struct config *cfg, const char *client_id);

/* Index of the credential with that name, or -1. */
int config_credential_index(const struct config *cfg, const char *name);

/*
 * Normalize what people type for an Atlassian domain: "acme",
 * " acme ", "acme.atlassian.net", "https://acme.atlassian.net/",
 * "ACME.atlassian.net/wiki" all give "acme". Returns a new string, or NULL
 * when the result is not a valid DNS label. *changed tells whether the
 * input differed from the result.
 */
char *config_normalize_domain(const char *in, bool *changed);

/* Parse "HOST:PORT", "[v6]:PORT", "unix:/path" into *out (fields owned by out). 0 or -1. */
int config_parse_listen(const char *text, struct config_listen *out);
void config_listen_clear(struct config_listen *l);

#endif
