/*
 * tokens: see tokens.h.
 *
 * Threads: everything below runs on the control loop except the four
 * worker-side readers (tokens_auth_line, tokens_cloud_id, tokens_refused,
 * tokens_unavailable) and tokens_ready_reason. t->mu guards every entry;
 * it is held only to copy strings and update tokensched arithmetic, never
 * across an upstream call or a log line. Entries live in fixed arrays and
 * keep their index across reloads (matched by name / host), so a running
 * fetch finds its entry again by index; a reload that replaces or drops an
 * entry cancels its fetch first (no callback follows a cancel).
 */
#include "tokens.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "breaker.h"
#include "credstate.h"
#include "log.h"
#include "tokensched.h"
#include "upstream.h"
#include "util.h"
#include "world.h"

#define TK_MAX_CREDS CONFIG_MAX_CREDENTIALS
#define TK_MAX_SITES CONFIG_MAX_SITES
#define TK_MAX_NAME 64
#define TK_MAX_HOST 256
#define TK_BEARER "Authorization: Bearer "
/* tenant_info answers are cached this long between reloads (refetched on reload anyway). */
#define TK_CLOUD_ID_LIFETIME_S TOKENSCHED_MAX_LIFETIME_S

enum tk_kind { TK_TOKEN = 0, TK_TENANT };

struct tk_fetch {
    struct tokens *t;
    enum tk_kind kind;
    size_t idx;
    struct world *world; /* a reference: the exchange borrows its cfg */
    struct upstream_exchange *ex;
    char *body; /* request body (the token request holds the client secret) */
    size_t body_len, body_off;
    char *resp; /* answer, at most TOKENS_MAX_RESPONSE bytes */
    size_t resp_len;
    int status;
};

struct tk_cred {
    bool used, configured;
    char name[TK_MAX_NAME + 1];
    char *client_id, *secret, *token_url, *scopes; /* secret: wiped */
    struct tokensched sched;
    char *line; /* "Authorization: Bearer <token>" (secret), NULL when none */
    char why[TOKENS_MAX_WHY];
    struct tk_fetch *fetch;
    int64_t refused_remint_ms; /* last re-mint after a 401 (0: none yet) */
};

struct tk_site {
    bool used, configured, fixed;
    char host[TK_MAX_HOST + 1];
    int port;
    char cred[TK_MAX_NAME + 1];
    char cloud_id[CONFIG_MAX_CLOUD_ID + 1]; /* "" while unknown */
    struct tokensched sched;                /* when to (re)discover; backoff */
    char why[TOKENS_MAX_WHY];
    struct tk_fetch *fetch;
};

struct tokens {
    pthread_mutex_t mu;
    struct event_base *base;
    struct upstream *up;
    struct event *tick;
    struct breaker *breaker;
    struct world *world;
    struct tk_cred creds[TK_MAX_CREDS];
    struct tk_site sites[TK_MAX_SITES];
};

/*
 * A sentence for a log line or /readyz into buf, cut short when a long host
 * name does not fit (which is fine). One vsnprintf instead of many
 * snprintf calls whose possible truncation gcc flags in debug builds.
 */
__attribute__((format(printf, 3, 4))) static void tk_say(char *buf, size_t cap, const char *fmt,
                                                         ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (vsnprintf(buf, cap, fmt, ap) < 0 && cap)
        buf[0] = '\0';
    va_end(ap);
}

static void tk_schedule(struct tokens *t);

/* ------------------------------------------------------------ helpers */

static void tk_free_str(char **s)
{
    util_free_secret(*s);
    *s = NULL;
}

static bool tk_streq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void tk_fetch_free(struct tk_fetch *f)
{
    if (!f)
        return;
    if (f->body) {
        util_secure_zero(f->body, f->body_len);
        free(f->body);
    }
    if (f->resp) {
        util_secure_zero(f->resp, f->resp_len);
        free(f->resp);
    }
    world_unref(f->world);
    free(f);
}

static void tk_cancel(struct tk_fetch **fp)
{
    struct tk_fetch *f = *fp;
    if (!f)
        return;
    if (f->ex)
        upstream_cancel(f->ex);
    tk_fetch_free(f);
    *fp = NULL;
}

static void tk_cred_clear(struct tk_cred *c)
{
    tk_cancel(&c->fetch);
    tk_free_str(&c->client_id);
    tk_free_str(&c->secret);
    tk_free_str(&c->token_url);
    tk_free_str(&c->scopes);
    tk_free_str(&c->line);
    memset(c, 0, sizeof(*c));
}

/* Wipe a JSON-escaped copy of a secret out of a stack buffer too. */
static size_t tk_json(char *buf, size_t cap, const char *s)
{
    return log_json_escape(buf, cap, s);
}

/* ------------------------------------------------------------ the exchange */

static int tk_on_head(void *arg, int status, const struct upstream_header *h, size_t n)
{
    struct tk_fetch *f = arg;
    (void)h;
    (void)n;
    f->status = status;
    return 0;
}

static int tk_on_body(void *arg, const char *data, size_t len)
{
    struct tk_fetch *f = arg;
    if (f->resp_len + len > TOKENS_MAX_RESPONSE)
        return UPSTREAM_ABORT;
    f->resp = xrealloc(f->resp, f->resp_len + len + 1);
    memcpy(f->resp + f->resp_len, data, len);
    f->resp_len += len;
    f->resp[f->resp_len] = '\0';
    return 0;
}

static ssize_t tk_read_body(void *arg, char *buf, size_t cap)
{
    struct tk_fetch *f = arg;
    size_t n = f->body_len - f->body_off;
    if (n > cap)
        n = cap;
    memcpy(buf, f->body + f->body_off, n);
    f->body_off += n;
    return (ssize_t)n;
}

/* The cloudId in {"cloudId":"..."}: hex digits and '-', at most CONFIG_MAX_CLOUD_ID. */
static bool tk_parse_cloud_id(const char *body, char *out, size_t cap)
{
    const char *p = body ? strstr(body, "\"cloudId\"") : NULL;
    size_t n = 0;
    if (!p)
        return false;
    p += 9;
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
        p++;
    if (*p++ != ':')
        return false;
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
        p++;
    if (*p++ != '"')
        return false;
    for (; *p && *p != '"'; p++) {
        char ch = *p;
        if (ch >= 'A' && ch <= 'F')
            ch = (char)(ch - 'A' + 'a');
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || ch == '-') ||
            n >= CONFIG_MAX_CLOUD_ID || n + 1 >= cap)
            return false;
        out[n++] = ch;
    }
    out[n] = '\0';
    return *p == '"' && n > 0;
}

static void tk_token_done(struct tokens *t, struct tk_fetch *f, enum upstream_result res,
                          const char *detail)
{
    char tok[TOKENSCHED_MAX_TOKEN + 1], why[TOKENS_MAX_WHY], name[TK_MAX_NAME + 1];
    int64_t life = 0;
    bool ok = false;
    int64_t now = util_now_ms();

    why[0] = '\0';
    if (res != UPSTREAM_OK) {
        tk_say(why, sizeof(why), "the token endpoint could not be reached: %s",
               detail && *detail ? detail : "error");
    } else if (f->status == 400 || f->status == 401 || f->status == 403) {
        tk_say(why, sizeof(why),
               "the token endpoint refused the client credentials (HTTP %d): check client_id "
               "and the client secret in Atlassian Administration > Directory > Service "
               "accounts",
               f->status);
    } else if (f->status != 200) {
        tk_say(why, sizeof(why), "the token endpoint answered HTTP %d", f->status);
    } else {
        char pwhy[128];
        if (tokensched_parse(f->resp, tok, sizeof(tok), &life, pwhy, sizeof(pwhy)) == 0)
            ok = true;
        else
            tk_say(why, sizeof(why), "the token endpoint's answer is unusable: %s", pwhy);
    }

    pthread_mutex_lock(&t->mu);
    struct tk_cred *c = &t->creds[f->idx];
    c->fetch = NULL;
    snprintf(name, sizeof(name), "%s", c->name);
    if (ok) {
        tk_free_str(&c->line);
        c->line = xasprintf(TK_BEARER "%s", tok);
        tokensched_success(&c->sched, now, life);
        c->why[0] = '\0';
    } else {
        tokensched_failure(&c->sched, now);
        snprintf(c->why, sizeof(c->why), "%s", why);
    }
    int64_t retry = tokensched_due_in(&c->sched, now);
    pthread_mutex_unlock(&t->mu);
    util_secure_zero(tok, sizeof(tok));

    if (ok) {
        log_info("credential %s: minted an OAuth access token valid for %lld s (renewed after "
                 "%d%%)",
                 name, (long long)life, TOKENSCHED_REFRESH_PERCENT);
        if (t->breaker && breaker_reset(t->breaker, name, now)) {
            struct breaker_info info;
            struct breaker_change chg = {BREAKER_OPEN, BREAKER_CLOSED};
            memset(&info, 0, sizeof(info));
            snprintf(info.credential, sizeof(info.credential), "%s", name);
            credstate_log_change(&info, &chg, "a new access token was minted");
        }
    } else {
        log_warn("credential %s: no access token: %s; retrying in %lld ms", name, why,
                 (long long)retry);
    }
}

static void tk_tenant_done(struct tokens *t, struct tk_fetch *f, enum upstream_result res,
                           const char *detail)
{
    char id[CONFIG_MAX_CLOUD_ID + 1], why[TOKENS_MAX_WHY], host[TK_MAX_HOST + 1];
    bool ok = false;
    int64_t now = util_now_ms();

    if (res != UPSTREAM_OK)
        tk_say(why, sizeof(why), "https://%s/_edge/tenant_info could not be reached: %s",
               t->sites[f->idx].host, detail && *detail ? detail : "error");
    else if (f->status != 200)
        tk_say(why, sizeof(why),
               "https://%s/_edge/tenant_info answered HTTP %d (is the site name right?); set "
               "cloud_id: on the site",
               t->sites[f->idx].host, f->status);
    else if (!tk_parse_cloud_id(f->resp, id, sizeof(id)))
        tk_say(why, sizeof(why),
               "https://%s/_edge/tenant_info has no cloudId; set cloud_id: "
               "on the site",
               t->sites[f->idx].host);
    else
        ok = true;

    pthread_mutex_lock(&t->mu);
    struct tk_site *s = &t->sites[f->idx];
    s->fetch = NULL;
    snprintf(host, sizeof(host), "%s", s->host);
    if (ok) {
        snprintf(s->cloud_id, sizeof(s->cloud_id), "%s", id);
        tokensched_success(&s->sched, now, TK_CLOUD_ID_LIFETIME_S);
        s->why[0] = '\0';
    } else {
        tokensched_failure(&s->sched, now);
        snprintf(s->why, sizeof(s->why), "%s", why);
    }
    pthread_mutex_unlock(&t->mu);
    if (ok)
        log_info("site %s: cloudId %s (from /_edge/tenant_info)", host, id);
    else
        log_warn("site %s: cloudId unknown: %s", host, why);
}

static void tk_on_done(void *arg, enum upstream_result res, const char *detail)
{
    struct tk_fetch *f = arg;
    struct tokens *t = f->t;
    f->ex = NULL;
    /* A reload that replaced the entry cancelled its fetch, and then no callback comes. */
    if (f->kind == TK_TOKEN)
        tk_token_done(t, f, res, detail);
    else
        tk_tenant_done(t, f, res, detail);
    tk_fetch_free(f);
    tk_schedule(t);
}

static const struct upstream_callbacks tk_callbacks = {
    .on_head = tk_on_head,
    .on_body = tk_on_body,
    .read_body = tk_read_body,
    .on_done = tk_on_done,
};

/* Control loop, t->mu NOT held. Starts one exchange; false when it could not start. */
static bool tk_start(struct tokens *t, struct tk_fetch *f, const char *method, const char *url,
                     bool json_body)
{
    struct curl_slist *hl = NULL, *tmp;
    tmp = curl_slist_append(hl, "Accept: application/json");
    hl = tmp ? tmp : hl;
    if (json_body) {
        tmp = curl_slist_append(hl, "Content-Type: application/json");
        hl = tmp ? tmp : hl;
    }
    tmp = curl_slist_append(hl, "User-Agent: credproxy");
    hl = tmp ? tmp : hl;
    struct upstream_request req = {
        .cfg = f->world->cfg,
        .method = method,
        .url = url,
        .headers = hl,
        .body_len = (int64_t)f->body_len,
        .allow_plain_http = false,
    };
    f->ex = upstream_start(t->up, &req, &tk_callbacks, f);
    return f->ex != NULL;
}

/* Build the token request body: {"grant_type":"client_credentials",...}. The caller wipes. */
static char *tk_token_body(const struct tk_cred *c, size_t *len)
{
    size_t cap =
        128 + 6 * (strlen(c->client_id) + strlen(c->secret) + (c->scopes ? strlen(c->scopes) : 0));
    char *b = xmalloc(cap), *id = xmalloc(cap), *sec = xmalloc(cap), *sc = xmalloc(cap);
    tk_json(id, cap, c->client_id);
    tk_json(sec, cap, c->secret);
    if (c->scopes)
        tk_json(sc, cap, c->scopes);
    int n = snprintf(b, cap,
                     "{\"grant_type\": \"client_credentials\", \"client_id\": %s, "
                     "\"client_secret\": %s%s%s}",
                     id, sec, c->scopes ? ", \"scope\": " : "", c->scopes ? sc : "");
    util_secure_zero(sec, cap);
    free(id);
    free(sec);
    free(sc);
    *len = n > 0 && (size_t)n < cap ? (size_t)n : 0;
    return b;
}

static void tk_run(struct tokens *t)
{
    int64_t now = util_now_ms();

    for (size_t i = 0; i < TK_MAX_CREDS; i++) {
        struct tk_cred *c = &t->creds[i];
        pthread_mutex_lock(&t->mu);
        bool go = c->configured && !c->fetch && tokensched_begin(&c->sched, now);
        struct tk_fetch *f = NULL;
        char *url = NULL;
        if (go) {
            f = xcalloc(1, sizeof(*f));
            f->t = t;
            f->kind = TK_TOKEN;
            f->idx = i;
            f->world = world_ref(t->world);
            f->body = tk_token_body(c, &f->body_len);
            url = xstrdup(c->token_url);
            c->fetch = f;
        }
        pthread_mutex_unlock(&t->mu);
        if (!go)
            continue;
        if (!tk_start(t, f, "POST", url, true)) {
            pthread_mutex_lock(&t->mu);
            c->fetch = NULL;
            tokensched_failure(&c->sched, now);
            snprintf(c->why, sizeof(c->why), "could not start a request to token_url");
            pthread_mutex_unlock(&t->mu);
            tk_fetch_free(f);
        }
        free(url);
    }
    for (size_t i = 0; i < TK_MAX_SITES; i++) {
        struct tk_site *s = &t->sites[i];
        pthread_mutex_lock(&t->mu);
        bool go = s->configured && !s->fixed && !s->fetch && tokensched_begin(&s->sched, now);
        struct tk_fetch *f = NULL;
        char *url = NULL;
        if (go) {
            f = xcalloc(1, sizeof(*f));
            f->t = t;
            f->kind = TK_TENANT;
            f->idx = i;
            f->world = world_ref(t->world);
            url = s->port == 443 ? xasprintf("https://%s/_edge/tenant_info", s->host)
                                 : xasprintf("https://%s:%d/_edge/tenant_info", s->host, s->port);
            s->fetch = f;
        }
        pthread_mutex_unlock(&t->mu);
        if (!go)
            continue;
        if (!tk_start(t, f, "GET", url, false)) {
            pthread_mutex_lock(&t->mu);
            s->fetch = NULL;
            tokensched_failure(&s->sched, now);
            snprintf(s->why, sizeof(s->why), "could not start the tenant_info request");
            pthread_mutex_unlock(&t->mu);
            tk_fetch_free(f);
        }
        free(url);
    }
}

/* Arm the tick for the earliest next fetch (control loop). */
static void tk_schedule(struct tokens *t)
{
    int64_t now = util_now_ms(), next = -1;
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < TK_MAX_CREDS; i++) {
        if (!t->creds[i].configured || t->creds[i].fetch)
            continue;
        int64_t d = tokensched_due_in(&t->creds[i].sched, now);
        if (d >= 0 && (next < 0 || d < next))
            next = d;
    }
    for (size_t i = 0; i < TK_MAX_SITES; i++) {
        if (!t->sites[i].configured || t->sites[i].fixed || t->sites[i].fetch)
            continue;
        int64_t d = tokensched_due_in(&t->sites[i].sched, now);
        if (d >= 0 && (next < 0 || d < next))
            next = d;
    }
    pthread_mutex_unlock(&t->mu);
    if (next < 0)
        return;
    struct timeval tv = {.tv_sec = (time_t)(next / 1000),
                         .tv_usec = (suseconds_t)((next % 1000) * 1000)};
    evtimer_add(t->tick, &tv);
}

static void tk_tick(evutil_socket_t fd, short what, void *arg)
{
    struct tokens *t = arg;
    (void)fd;
    (void)what;
    tk_run(t);
    tk_schedule(t);
}

/* ------------------------------------------------------------ lifecycle */

struct tokens *tokens_new(struct event_base *control, struct breaker *breaker)
{
    struct tokens *t = xcalloc(1, sizeof(*t));
    pthread_mutex_init(&t->mu, NULL);
    t->base = control;
    t->breaker = breaker;
    t->up = upstream_new(control);
    t->tick = evtimer_new(control, tk_tick, t);
    if (!t->up || !t->tick) {
        tokens_free(t);
        return NULL;
    }
    return t;
}

void tokens_free(struct tokens *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < TK_MAX_CREDS; i++)
        tk_cred_clear(&t->creds[i]);
    for (size_t i = 0; i < TK_MAX_SITES; i++)
        tk_cancel(&t->sites[i].fetch);
    if (t->tick)
        event_free(t->tick);
    upstream_free(t->up);
    world_unref(t->world);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

static bool tk_cred_same(const struct tk_cred *c, const struct config_credential *cc)
{
    return tk_streq(c->client_id, cc->client_id) && tk_streq(c->secret, cc->secret) &&
           tk_streq(c->token_url, cc->token_url) && tk_streq(c->scopes, cc->scopes);
}

static void tk_configure_creds(struct tokens *t, const struct config *cfg)
{
    for (size_t i = 0; i < TK_MAX_CREDS; i++)
        t->creds[i].configured = false;
    for (size_t k = 0; k < cfg->ncredentials; k++) {
        const struct config_credential *cc = &cfg->credentials[k];
        if (cc->type != CONFIG_CRED_OAUTH_CLIENT || strlen(cc->name) > TK_MAX_NAME)
            continue;
        struct tk_cred *c = NULL, *free_slot = NULL;
        for (size_t i = 0; i < TK_MAX_CREDS; i++) {
            if (t->creds[i].used && strcmp(t->creds[i].name, cc->name) == 0)
                c = &t->creds[i];
            else if (!t->creds[i].used && !free_slot)
                free_slot = &t->creds[i];
        }
        if (c && !tk_cred_same(c, cc)) {
            tk_cred_clear(c); /* changed: mint anew with the new secret */
            free_slot = c;
            c = NULL;
        }
        if (!c) {
            if (!free_slot)
                continue;
            c = free_slot;
            memset(c, 0, sizeof(*c));
            c->used = true;
            snprintf(c->name, sizeof(c->name), "%s", cc->name);
            c->client_id = xstrdup(cc->client_id);
            c->secret = xstrdup(cc->secret);
            c->token_url = xstrdup(cc->token_url ? cc->token_url : CONFIG_DEFAULT_TOKEN_URL);
            c->scopes = cc->scopes ? xstrdup(cc->scopes) : NULL;
            tokensched_init(&c->sched);
        }
        c->configured = true;
    }
    for (size_t i = 0; i < TK_MAX_CREDS; i++) {
        if (t->creds[i].used && !t->creds[i].configured)
            tk_cred_clear(&t->creds[i]);
    }
}

static void tk_configure_sites(struct tokens *t, const struct config *cfg)
{
    int64_t now = util_now_ms();
    for (size_t i = 0; i < TK_MAX_SITES; i++)
        t->sites[i].configured = false;
    for (size_t k = 0; k < cfg->nsites; k++) {
        const struct config_site *cs = &cfg->sites[k];
        const struct config_credential *cc = &cfg->credentials[cs->credential];
        if (!cc->via_gateway || strlen(cs->host) > TK_MAX_HOST)
            continue;
        struct tk_site *s = NULL, *free_slot = NULL;
        for (size_t i = 0; i < TK_MAX_SITES; i++) {
            if (t->sites[i].used && t->sites[i].port == cs->port &&
                strcmp(t->sites[i].host, cs->host) == 0)
                s = &t->sites[i];
            else if (!t->sites[i].used && !free_slot)
                free_slot = &t->sites[i];
        }
        if (!s) {
            if (!free_slot)
                continue;
            s = free_slot;
            memset(s, 0, sizeof(*s));
            s->used = true;
            snprintf(s->host, sizeof(s->host), "%s", cs->host);
            s->port = cs->port;
            tokensched_init(&s->sched);
        } else if (!s->fixed && !s->fetch) {
            /* Looked up again on every reload; a cached value serves until the answer comes. */
            s->sched.refresh_ms = now;
            s->sched.next_try_ms = 0;
            s->sched.backoff_ms = TOKENSCHED_BACKOFF_MIN_MS;
        }
        s->configured = true;
        snprintf(s->cred, sizeof(s->cred), "%s", cc->name);
        s->fixed = cs->cloud_id != NULL;
        if (s->fixed) {
            tk_cancel(&s->fetch);
            snprintf(s->cloud_id, sizeof(s->cloud_id), "%s", cs->cloud_id);
            s->why[0] = '\0';
        }
    }
    for (size_t i = 0; i < TK_MAX_SITES; i++) {
        if (t->sites[i].used && !t->sites[i].configured) {
            tk_cancel(&t->sites[i].fetch);
            memset(&t->sites[i], 0, sizeof(t->sites[i]));
        }
    }
}

void tokens_configure(struct tokens *t, struct world *w)
{
    struct world *old = t->world;
    pthread_mutex_lock(&t->mu);
    t->world = world_ref(w);
    tk_configure_creds(t, w->cfg);
    tk_configure_sites(t, w->cfg);
    pthread_mutex_unlock(&t->mu);
    world_unref(old);
    tk_run(t);
    tk_schedule(t);
}

/* ------------------------------------------------------------ worker side */

static enum tokens_state tk_state(const struct tokensched *s, int64_t now, const char *why_in,
                                  char *why, size_t wcap)
{
    if (tokensched_usable(s, now))
        return TOKENS_READY;
    if (s->inflight || tokensched_due_in(s, now) == 0)
        return TOKENS_PENDING;
    if (why && wcap)
        snprintf(why, wcap, "%s", *why_in ? why_in : "not fetched yet");
    return TOKENS_UNAVAILABLE;
}

enum tokens_state tokens_auth_line(struct tokens *t, const char *cred, char *buf, size_t cap,
                                   char *why, size_t wcap)
{
    enum tokens_state st = TOKENS_UNAVAILABLE;
    int64_t now = util_now_ms();
    if (why && wcap)
        snprintf(why, wcap, "credential %s is not an oauth_client", cred);
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < TK_MAX_CREDS; i++) {
        struct tk_cred *c = &t->creds[i];
        if (!c->configured || strcmp(c->name, cred) != 0)
            continue;
        st = tk_state(&c->sched, now, c->why, why, wcap);
        if (st == TOKENS_READY) {
            size_t n = strlen(c->line);
            if (n + 1 > cap) {
                st = TOKENS_UNAVAILABLE;
                if (why && wcap)
                    snprintf(why, wcap, "the access token is too long");
            } else {
                memcpy(buf, c->line, n + 1);
            }
        }
        break;
    }
    pthread_mutex_unlock(&t->mu);
    return st;
}

enum tokens_state tokens_cloud_id(struct tokens *t, const char *host, int port, char *buf,
                                  size_t cap, char *why, size_t wcap)
{
    enum tokens_state st = TOKENS_UNAVAILABLE;
    int64_t now = util_now_ms();
    if (why && wcap)
        snprintf(why, wcap, "site %s is not routed through the API gateway", host);
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < TK_MAX_SITES; i++) {
        struct tk_site *s = &t->sites[i];
        if (!s->configured || s->port != port || strcmp(s->host, host) != 0)
            continue;
        if (s->cloud_id[0]) {
            st = TOKENS_READY; /* a cached value keeps serving while it is refreshed */
            snprintf(buf, cap, "%s", s->cloud_id);
        } else {
            st = tk_state(&s->sched, now, s->why, why, wcap);
            if (st == TOKENS_READY)
                st = TOKENS_PENDING;
        }
        break;
    }
    pthread_mutex_unlock(&t->mu);
    return st;
}

bool tokens_site_for_cloud_id(void *tokens, const char *cloud_id, char *host, size_t cap, int *port)
{
    struct tokens *t = tokens;
    bool found = false;
    if (!t || !cloud_id || !*cloud_id)
        return false;
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < TK_MAX_SITES && !found; i++) {
        struct tk_site *s = &t->sites[i];
        if (s->configured && s->cloud_id[0] && strcmp(s->cloud_id, cloud_id) == 0) {
            snprintf(host, cap, "%s", s->host);
            *port = s->port;
            found = true;
        }
    }
    pthread_mutex_unlock(&t->mu);
    return found;
}

void tokens_refused(struct tokens *t, const char *cred)
{
    bool kick = false;
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < TK_MAX_CREDS; i++) {
        struct tk_cred *c = &t->creds[i];
        int64_t now = util_now_ms();
        if (c->configured && strcmp(c->name, cred) == 0 && !c->fetch && c->sched.have &&
            (!c->refused_remint_ms || now - c->refused_remint_ms >= TOKENS_REFUSED_REMINT_MS)) {
            c->refused_remint_ms = now;
            tokensched_invalidate(&c->sched, now);
            kick = true;
        }
    }
    pthread_mutex_unlock(&t->mu);
    if (kick)
        event_active(t->tick, EV_TIMEOUT, 1);
}

int tokens_ready_reason(struct tokens *t, char *buf, size_t cap)
{
    int rc = 0;
    int64_t now = util_now_ms();
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < TK_MAX_CREDS && rc == 0; i++) {
        struct tk_cred *c = &t->creds[i];
        if (c->configured && !tokensched_usable(&c->sched, now)) {
            snprintf(buf, cap, "credential %s has no access token: %s", c->name,
                     c->why[0] ? c->why : "minting one now");
            rc = -1;
        }
    }
    for (size_t i = 0; i < TK_MAX_SITES && rc == 0; i++) {
        struct tk_site *s = &t->sites[i];
        if (s->configured && !s->cloud_id[0]) {
            snprintf(buf, cap, "site %s: cloudId unknown: %s", s->host,
                     s->why[0] ? s->why : "looking it up now");
            rc = -1;
        }
    }
    pthread_mutex_unlock(&t->mu);
    return rc;
}

bool tokens_unavailable(struct tokens *t, const char *cred)
{
    bool out = false;
    int64_t now = util_now_ms();
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < TK_MAX_CREDS; i++) {
        struct tk_cred *c = &t->creds[i];
        if (c->configured && strcmp(c->name, cred) == 0 && !tokensched_usable(&c->sched, now))
            out = true;
    }
    for (size_t i = 0; i < TK_MAX_SITES; i++) {
        struct tk_site *s = &t->sites[i];
        if (s->configured && strcmp(s->cred, cred) == 0 && !s->cloud_id[0])
            out = true;
    }
    pthread_mutex_unlock(&t->mu);
    return out;
}
