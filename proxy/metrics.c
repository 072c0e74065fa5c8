/*
 * metrics: counters, gauges and one latency histogram, rendered as
 * Prometheus text exposition format 0.0.4.
 *
 * Synchronization scheme:
 * - Fixed counters and gauges are C11 atomics (relaxed: they are independent
 *   monotonic numbers; a scrape may see one a moment older than another).
 * - Labelled series live in open-addressing tables of atomic pointers. A
 *   series, once published, is never moved or freed until metrics_free(), and
 *   its label strings never change, so lookups are lock-free: hash, probe,
 *   load each slot with acquire. Only inserting a new label set takes the
 *   table's mutex; the inserter probes again under the lock (another thread
 *   may have inserted the same set), then publishes the fully built series
 *   with a release store. Counters inside a series are atomics.
 * - Bounds: METRICS_MAX_SERIES request series; past that the client label is
 *   folded to "other" (at most METRICS_MAX_OTHER_SERIES more); past that,
 *   one preallocated catch-all series takes everything. The histogram is
 *   labelled by site only (sites are few and fixed by the config, clients are
 *   not), bounded by METRICS_MAX_HIST_SITES with the same "other" fold.
 * - Rendering reads the tables lock-free and sorts a snapshot of pointers, so
 *   the output order is stable (tests compare exact lines).
 *
 * Never sees a secret: labels are site hosts, credential names, client ids.
 */
#include "metrics.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "ratelimit.h"
#include "util.h"

/* Histogram bucket upper bounds in nanoseconds, and how they are printed. */
static const uint64_t metrics_bucket_ns[] = {
    5000000ULL,   10000000ULL,   25000000ULL,   50000000ULL,   100000000ULL,   250000000ULL,
    500000000ULL, 1000000000ULL, 2500000000ULL, 5000000000ULL, 10000000000ULL,
};
static const char *const metrics_bucket_le[] = {
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10",
};
#define METRICS_NBUCKETS (sizeof(metrics_bucket_ns) / sizeof(metrics_bucket_ns[0]))

/* Table sizes: a power of two at least twice the number of entries (load <= 1/2). */
#define METRICS_REQ_SLOTS 16384
#define METRICS_HIST_SLOTS 2048

_Static_assert(METRICS_REQ_SLOTS >= 2 * (METRICS_MAX_SERIES + METRICS_MAX_OTHER_SERIES),
               "request table too small");
_Static_assert(METRICS_HIST_SLOTS >= 2 * (METRICS_MAX_HIST_SITES + 1), "hist table too small");

struct metrics_series {
    uint64_t hash;
    char *site;
    char *cred;
    char *client;
    int code;
    atomic_uint_fast64_t count;
};

struct metrics_hist {
    uint64_t hash;
    char *site;
    atomic_uint_fast64_t buckets[METRICS_NBUCKETS]; /* per bucket, not cumulative */
    atomic_uint_fast64_t count;
    atomic_uint_fast64_t sum_ns;
};

struct metrics {
    atomic_uint_fast64_t upstream_connections;
    atomic_uint_fast64_t reloads_ok;
    atomic_uint_fast64_t reloads_error;
    atomic_int_fast64_t client_connections;

    pthread_mutex_t lock; /* guards inserts into both tables and the counts below */
    _Atomic(struct metrics_series *) req[METRICS_REQ_SLOTS];
    size_t nreq; /* under lock (atomic copy for readers in nreq_seen) */
    atomic_size_t nreq_seen;
    _Atomic(struct metrics_hist *) hist[METRICS_HIST_SLOTS];
    size_t nhist; /* under lock */
    struct metrics_series catch_all;
    /* credproxy_policy_denied_total{client,class}: refusals are rare, so one array under lock. */
    struct metrics_policy_series {
        char client[METRICS_POLICY_LABEL_LEN + 1];
        char cls[16];
        uint64_t count;
    } policy[METRICS_MAX_POLICY_SERIES];
    size_t npolicy;        /* under lock */
    uint64_t policy_other; /* under lock: refusals past METRICS_MAX_POLICY_SERIES label sets */
};

static char *metrics_label_dup(const char *s)
{
    return xstrndup(s, strnlen(s, METRICS_MAX_LABEL_LEN));
}

/* Cut to METRICS_MAX_LABEL_LEN the way stored labels are, so lookups match them. */
static bool metrics_label_eq(const char *stored, const char *s)
{
    size_t n = strnlen(s, METRICS_MAX_LABEL_LEN);
    return strlen(stored) == n && memcmp(stored, s, n) == 0;
}

/* FNV-1a over a label (as cut to METRICS_MAX_LABEL_LEN) plus a separator byte. */
static uint64_t metrics_hash_label(uint64_t h, const char *s)
{
    size_t n = strnlen(s, METRICS_MAX_LABEL_LEN);
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    h ^= 0xff;
    h *= 1099511628211ULL;
    return h;
}

static uint64_t metrics_hash_labels(const char *site, const char *cred, const char *client,
                                    int code)
{
    uint64_t h = 14695981039346656037ULL;
    h = metrics_hash_label(h, site);
    h = metrics_hash_label(h, cred);
    h = metrics_hash_label(h, client);
    h ^= (uint64_t)(unsigned)code;
    h *= 1099511628211ULL;
    return h;
}

static bool metrics_series_match(const struct metrics_series *s, uint64_t h, const char *site,
                                 const char *cred, const char *client, int code)
{
    return s->hash == h && s->code == code && metrics_label_eq(s->site, site) &&
           metrics_label_eq(s->cred, cred) && metrics_label_eq(s->client, client);
}

/* Lock-free probe; NULL when the label set is not in the table. */
static struct metrics_series *metrics_req_find(struct metrics *m, uint64_t h, const char *site,
                                               const char *cred, const char *client, int code)
{
    for (size_t i = 0; i < METRICS_REQ_SLOTS; i++) {
        size_t slot = (size_t)((h + i) & (METRICS_REQ_SLOTS - 1));
        struct metrics_series *s = atomic_load_explicit(&m->req[slot], memory_order_acquire);
        if (!s)
            return NULL;
        if (metrics_series_match(s, h, site, cred, client, code))
            return s;
    }
    return NULL;
}

/* Under m->lock: publish a new series in the first free slot of its probe sequence. */
static struct metrics_series *metrics_req_insert_locked(struct metrics *m, uint64_t h,
                                                        const char *site, const char *cred,
                                                        const char *client, int code)
{
    struct metrics_series *s = xcalloc(1, sizeof(*s));
    s->hash = h;
    s->site = metrics_label_dup(site);
    s->cred = metrics_label_dup(cred);
    s->client = metrics_label_dup(client);
    s->code = code;
    atomic_init(&s->count, 0);
    for (size_t i = 0; i < METRICS_REQ_SLOTS; i++) {
        size_t slot = (size_t)((h + i) & (METRICS_REQ_SLOTS - 1));
        if (!atomic_load_explicit(&m->req[slot], memory_order_relaxed)) {
            atomic_store_explicit(&m->req[slot], s, memory_order_release);
            m->nreq++;
            atomic_store_explicit(&m->nreq_seen, m->nreq, memory_order_relaxed);
            return s;
        }
    }
    abort(); /* unreachable: the static asserts keep the table at most half full */
}

static struct metrics_series *metrics_req_get(struct metrics *m, const char *site, const char *cred,
                                              const char *client, int code)
{
    uint64_t h = metrics_hash_labels(site, cred, client, code);
    struct metrics_series *s = metrics_req_find(m, h, site, cred, client, code);
    if (s)
        return s;

    pthread_mutex_lock(&m->lock);
    s = metrics_req_find(m, h, site, cred, client, code);
    if (!s && m->nreq < METRICS_MAX_SERIES) {
        s = metrics_req_insert_locked(m, h, site, cred, client, code);
    } else if (!s) {
        /* Full: fold the client (the unbounded label) into "other". */
        uint64_t ho = metrics_hash_labels(site, cred, "other", code);
        s = metrics_req_find(m, ho, site, cred, "other", code);
        if (!s && m->nreq < METRICS_MAX_SERIES + METRICS_MAX_OTHER_SERIES)
            s = metrics_req_insert_locked(m, ho, site, cred, "other", code);
        if (!s)
            s = &m->catch_all;
    }
    pthread_mutex_unlock(&m->lock);
    return s;
}

static struct metrics_hist *metrics_hist_find(struct metrics *m, uint64_t h, const char *site)
{
    for (size_t i = 0; i < METRICS_HIST_SLOTS; i++) {
        size_t slot = (size_t)((h + i) & (METRICS_HIST_SLOTS - 1));
        struct metrics_hist *x = atomic_load_explicit(&m->hist[slot], memory_order_acquire);
        if (!x)
            return NULL;
        if (x->hash == h && metrics_label_eq(x->site, site))
            return x;
    }
    return NULL;
}

static struct metrics_hist *metrics_hist_insert_locked(struct metrics *m, uint64_t h,
                                                       const char *site)
{
    struct metrics_hist *x = xcalloc(1, sizeof(*x));
    x->hash = h;
    x->site = metrics_label_dup(site);
    for (size_t i = 0; i < METRICS_HIST_SLOTS; i++) {
        size_t slot = (size_t)((h + i) & (METRICS_HIST_SLOTS - 1));
        if (!atomic_load_explicit(&m->hist[slot], memory_order_relaxed)) {
            atomic_store_explicit(&m->hist[slot], x, memory_order_release);
            m->nhist++;
            return x;
        }
    }
    abort(); /* unreachable: see the static assert */
}

static struct metrics_hist *metrics_hist_get(struct metrics *m, const char *site)
{
    uint64_t h = metrics_hash_label(14695981039346656037ULL, site);
    struct metrics_hist *x = metrics_hist_find(m, h, site);
    if (x)
        return x;
    pthread_mutex_lock(&m->lock);
    x = metrics_hist_find(m, h, site);
    if (!x && m->nhist < METRICS_MAX_HIST_SITES) {
        x = metrics_hist_insert_locked(m, h, site);
    } else if (!x) {
        /* "other" always fits: the table holds METRICS_MAX_HIST_SITES + 1. */
        uint64_t ho = metrics_hash_label(14695981039346656037ULL, "other");
        x = metrics_hist_find(m, ho, "other");
        if (!x)
            x = metrics_hist_insert_locked(m, ho, "other");
    }
    pthread_mutex_unlock(&m->lock);
    return x;
}

struct metrics *metrics_new(void)
{
    struct metrics *m = xcalloc(1, sizeof(*m));
    atomic_init(&m->upstream_connections, 0);
    atomic_init(&m->reloads_ok, 0);
    atomic_init(&m->reloads_error, 0);
    atomic_init(&m->client_connections, 0);
    atomic_init(&m->nreq_seen, 0);
    for (size_t i = 0; i < METRICS_REQ_SLOTS; i++)
        atomic_init(&m->req[i], NULL);
    for (size_t i = 0; i < METRICS_HIST_SLOTS; i++)
        atomic_init(&m->hist[i], NULL);
    pthread_mutex_init(&m->lock, NULL);
    m->catch_all.site = xstrdup("other");
    m->catch_all.cred = xstrdup("other");
    m->catch_all.client = xstrdup("other");
    m->catch_all.code = 0;
    atomic_init(&m->catch_all.count, 0);
    return m;
}

/* Frees every series. The caller guarantees no other thread still uses m. NULL is a no-op. */
void metrics_free(struct metrics *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < METRICS_REQ_SLOTS; i++) {
        struct metrics_series *s = atomic_load_explicit(&m->req[i], memory_order_relaxed);
        if (s) {
            free(s->site);
            free(s->cred);
            free(s->client);
            free(s);
        }
    }
    for (size_t i = 0; i < METRICS_HIST_SLOTS; i++) {
        struct metrics_hist *x = atomic_load_explicit(&m->hist[i], memory_order_relaxed);
        if (x) {
            free(x->site);
            free(x);
        }
    }
    free(m->catch_all.site);
    free(m->catch_all.cred);
    free(m->catch_all.client);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

void metrics_request(struct metrics *m, const char *site, const char *cred, const char *client,
                     int code, double seconds)
{
    uint64_t ns;
    struct metrics_series *s;
    struct metrics_hist *x;
    size_t b;

    if (!m)
        return;
    site = site && *site ? site : METRICS_SITE_UNMAPPED;
    cred = cred ? cred : "";
    client = client ? client : "";
    s = metrics_req_get(m, site, cred, client, code);
    atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);

    /* NaN, negative and absurd values are clamped rather than trusted. */
    if (!(seconds > 0))
        ns = 0;
    else if (seconds > 1e9)
        ns = (uint64_t)1e18;
    else
        ns = (uint64_t)llround(seconds * 1e9);
    x = metrics_hist_get(m, site);
    for (b = 0; b < METRICS_NBUCKETS && ns > metrics_bucket_ns[b]; b++)
        ;
    if (b < METRICS_NBUCKETS)
        atomic_fetch_add_explicit(&x->buckets[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&x->sum_ns, ns, memory_order_relaxed);
    atomic_fetch_add_explicit(&x->count, 1, memory_order_relaxed);
}

void metrics_upstream_connections(struct metrics *m, unsigned n)
{
    if (m && n)
        atomic_fetch_add_explicit(&m->upstream_connections, n, memory_order_relaxed);
}

void metrics_config_reload(struct metrics *m, bool ok)
{
    if (m)
        atomic_fetch_add_explicit(ok ? &m->reloads_ok : &m->reloads_error, 1, memory_order_relaxed);
}

void metrics_client_connections(struct metrics *m, int delta)
{
    if (m)
        atomic_fetch_add_explicit(&m->client_connections, delta, memory_order_relaxed);
}

size_t metrics_series_count(struct metrics *m)
{
    return m ? atomic_load_explicit(&m->nreq_seen, memory_order_relaxed) : 0;
}

/* A label value with backslash, double quote and newline escaped (exposition format 0.0.4). */
static void metrics_put_label(struct evbuffer *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\')
            evbuffer_add(out, "\\\\", 2);
        else if (*s == '"')
            evbuffer_add(out, "\\\"", 2);
        else if (*s == '\n')
            evbuffer_add(out, "\\n", 2);
        else
            evbuffer_add(out, s, 1);
    }
}

/* Seconds from nanoseconds, exact, without trailing zeros: 1500000000 -> "1.5". */
static void metrics_put_seconds(struct evbuffer *out, uint64_t ns)
{
    char frac[16];
    int n;
    uint64_t whole = ns / 1000000000ULL, rest = ns % 1000000000ULL;
    if (rest == 0) {
        evbuffer_add_printf(out, "%" PRIu64, whole);
        return;
    }
    n = snprintf(frac, sizeof(frac), "%09" PRIu64, rest);
    while (n > 0 && frac[n - 1] == '0')
        frac[--n] = '\0';
    evbuffer_add_printf(out, "%" PRIu64 ".%s", whole, frac);
}

static void metrics_head(struct evbuffer *out, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static int metrics_series_cmp(const void *a, const void *b)
{
    const struct metrics_series *x = *(const struct metrics_series *const *)a;
    const struct metrics_series *y = *(const struct metrics_series *const *)b;
    int c = strcmp(x->site, y->site);
    if (c == 0)
        c = strcmp(x->cred, y->cred);
    if (c == 0)
        c = strcmp(x->client, y->client);
    if (c == 0)
        c = (x->code > y->code) - (x->code < y->code);
    return c;
}

static int metrics_hist_cmp(const void *a, const void *b)
{
    const struct metrics_hist *x = *(const struct metrics_hist *const *)a;
    const struct metrics_hist *y = *(const struct metrics_hist *const *)b;
    return strcmp(x->site, y->site);
}

static void metrics_render_requests(struct metrics *m, struct evbuffer *out)
{
    struct metrics_series **v = xcalloc(METRICS_REQ_SLOTS + 1, sizeof(*v));
    size_t n = 0;
    for (size_t i = 0; i < METRICS_REQ_SLOTS; i++) {
        struct metrics_series *s = atomic_load_explicit(&m->req[i], memory_order_acquire);
        if (s)
            v[n++] = s;
    }
    qsort(v, n, sizeof(*v), metrics_series_cmp);
    metrics_head(out, "credproxy_requests_total", "counter",
                 "Proxied requests by site, credential, client and HTTP status.");
    for (size_t i = 0; i < n; i++) {
        evbuffer_add_printf(out, "credproxy_requests_total{site=\"");
        metrics_put_label(out, v[i]->site);
        evbuffer_add_printf(out, "\",credential=\"");
        metrics_put_label(out, v[i]->cred);
        evbuffer_add_printf(out, "\",client=\"");
        metrics_put_label(out, v[i]->client);
        evbuffer_add_printf(out, "\",code=\"%d\"} %" PRIu64 "\n", v[i]->code,
                            (uint64_t)atomic_load_explicit(&v[i]->count, memory_order_relaxed));
    }
    uint64_t spill = atomic_load_explicit(&m->catch_all.count, memory_order_relaxed);
    if (spill)
        evbuffer_add_printf(out,
                            "credproxy_requests_total{site=\"other\",credential=\"other\","
                            "client=\"other\",code=\"other\"} %" PRIu64 "\n",
                            spill);
    free(v);
}

static void metrics_render_hist(struct metrics *m, struct evbuffer *out)
{
    struct metrics_hist **v = xcalloc(METRICS_HIST_SLOTS, sizeof(*v));
    size_t n = 0;
    for (size_t i = 0; i < METRICS_HIST_SLOTS; i++) {
        struct metrics_hist *x = atomic_load_explicit(&m->hist[i], memory_order_acquire);
        if (x)
            v[n++] = x;
    }
    qsort(v, n, sizeof(*v), metrics_hist_cmp);
    metrics_head(out, "credproxy_request_duration_seconds", "histogram",
                 "Time from request head to the end of the response, by site.");
    for (size_t i = 0; i < n; i++) {
        uint64_t cum = 0, count, sum;
        for (size_t b = 0; b < METRICS_NBUCKETS; b++) {
            cum += atomic_load_explicit(&v[i]->buckets[b], memory_order_relaxed);
            evbuffer_add_printf(out, "credproxy_request_duration_seconds_bucket{site=\"");
            metrics_put_label(out, v[i]->site);
            evbuffer_add_printf(out, "\",le=\"%s\"} %" PRIu64 "\n", metrics_bucket_le[b], cum);
        }
        /* Read count after the buckets: +Inf must never be below a finite bucket. */
        count = atomic_load_explicit(&v[i]->count, memory_order_relaxed);
        if (count < cum)
            count = cum;
        sum = atomic_load_explicit(&v[i]->sum_ns, memory_order_relaxed);
        evbuffer_add_printf(out, "credproxy_request_duration_seconds_bucket{site=\"");
        metrics_put_label(out, v[i]->site);
        evbuffer_add_printf(out, "\",le=\"+Inf\"} %" PRIu64 "\n", count);
        evbuffer_add_printf(out, "credproxy_request_duration_seconds_sum{site=\"");
        metrics_put_label(out, v[i]->site);
        evbuffer_add_printf(out, "\"} ");
        metrics_put_seconds(out, sum);
        evbuffer_add_printf(out, "\ncredproxy_request_duration_seconds_count{site=\"");
        metrics_put_label(out, v[i]->site);
        evbuffer_add_printf(out, "\"} %" PRIu64 "\n", count);
    }
    free(v);
}

void metrics_policy_denied(struct metrics *m, const char *client, const char *cls)
{
    if (!m)
        return;
    client = client ? client : "";
    cls = cls ? cls : "";
    pthread_mutex_lock(&m->lock);
    size_t i;
    for (i = 0; i < m->npolicy; i++) {
        if (strncmp(m->policy[i].client, client, METRICS_POLICY_LABEL_LEN) == 0 &&
            strcmp(m->policy[i].cls, cls) == 0)
            break;
    }
    if (i == m->npolicy && m->npolicy < METRICS_MAX_POLICY_SERIES) {
        snprintf(m->policy[i].client, sizeof(m->policy[i].client), "%s", client);
        snprintf(m->policy[i].cls, sizeof(m->policy[i].cls), "%s", cls);
        m->npolicy++;
    }
    if (i < m->npolicy)
        m->policy[i].count++;
    else
        m->policy_other++;
    pthread_mutex_unlock(&m->lock);
}

static void metrics_render_policy(struct metrics *m, struct evbuffer *out)
{
    metrics_head(out, "credproxy_policy_denied_total", "counter",
                 "Requests refused by the client's policy, by client and operation class.");
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < m->npolicy; i++) {
        evbuffer_add_printf(out, "credproxy_policy_denied_total{client=\"");
        metrics_put_label(out, m->policy[i].client);
        evbuffer_add_printf(out, "\",class=\"");
        metrics_put_label(out, m->policy[i].cls);
        evbuffer_add_printf(out, "\"} %" PRIu64 "\n", m->policy[i].count);
    }
    if (m->policy_other)
        evbuffer_add_printf(out,
                            "credproxy_policy_denied_total{client=\"other\",class=\"other\"} "
                            "%" PRIu64 "\n",
                            m->policy_other);
    pthread_mutex_unlock(&m->lock);
}

static void metrics_counter(struct evbuffer *out, const char *name, const char *help, uint64_t v)
{
    metrics_head(out, name, "counter", help);
    evbuffer_add_printf(out, "%s %" PRIu64 "\n", name, v);
}

/* Upstream 429/503 pauses by Atlassian's RateLimit-Reason ("none" when it named none). */
static void metrics_render_upstream_ratelimited(const struct ratelimit_stats *rl,
                                                struct evbuffer *out)
{
    uint64_t counted = 0;
    metrics_head(out, "credproxy_upstream_ratelimited_total", "counter",
                 "Upstream 429/503 answers that paused a credential, by RateLimit-Reason.");
    for (size_t i = 0; i < rl->nreasons && i < RATELIMIT_MAX_REASONS; i++) {
        evbuffer_add_printf(out, "credproxy_upstream_ratelimited_total{reason=\"");
        metrics_put_label(out, rl->by_reason[i].reason);
        evbuffer_add_printf(out, "\"} %" PRIu64 "\n", rl->by_reason[i].n);
        counted += rl->by_reason[i].n;
    }
    if (counted < rl->upstream_429)
        evbuffer_add_printf(out,
                            "credproxy_upstream_ratelimited_total{reason=\"none\"} %" PRIu64 "\n",
                            rl->upstream_429 - counted);
}

void metrics_render(struct metrics *m, const struct config *cfg, const struct ratelimit_stats *rl,
                    struct evbuffer *out)
{
    struct ratelimit_stats zero;
    if (!m || !out)
        return;
    if (!rl) {
        memset(&zero, 0, sizeof(zero));
        rl = &zero;
    }

    metrics_render_requests(m, out);
    metrics_render_hist(m, out);
    metrics_render_policy(m, out);
    metrics_counter(out, "credproxy_upstream_connections_total",
                    "New upstream TCP/TLS connections opened.",
                    atomic_load_explicit(&m->upstream_connections, memory_order_relaxed));
    metrics_head(out, "credproxy_ratelimit_queued", "gauge",
                 "Requests waiting for a rate-limit token now.");
    evbuffer_add_printf(out, "credproxy_ratelimit_queued %" PRId64 "\n", rl->queued_now);
    metrics_counter(out, "credproxy_ratelimit_rejected_total",
                    "Requests answered 429 by the proxy's own rate limit.", rl->rejected);
    metrics_counter(out, "credproxy_ratelimit_queued_total",
                    "Requests that had to wait for a rate-limit token.", rl->queued_total);
    metrics_head(out, "credproxy_ratelimit_wait_seconds_total", "counter",
                 "Total time requests spent waiting for a rate-limit token.");
    evbuffer_add_printf(out, "credproxy_ratelimit_wait_seconds_total ");
    metrics_put_seconds(out, rl->waited_ms_total * 1000000ULL);
    evbuffer_add_printf(out, "\n");
    metrics_render_upstream_ratelimited(rl, out);
    metrics_counter(out, "credproxy_ratelimit_store_fallbacks_total",
                    "Rate-limit decisions taken locally because the shared store was down.",
                    rl->redis_fallbacks);

    metrics_head(out, "credproxy_credential_expiry_timestamp_seconds", "gauge",
                 "When each credential's token expires (from `expires`), as a Unix time.");
    for (size_t i = 0; cfg && i < cfg->ncredentials; i++) {
        const struct config_credential *c = &cfg->credentials[i];
        if (!c->expires)
            continue;
        evbuffer_add_printf(out, "credproxy_credential_expiry_timestamp_seconds{credential=\"");
        metrics_put_label(out, c->name ? c->name : "");
        evbuffer_add_printf(out, "\"} %" PRId64 "\n", c->expires);
    }

    metrics_head(out, "credproxy_config_reloads_total", "counter",
                 "Configuration reloads (SIGHUP) by result.");
    evbuffer_add_printf(out, "credproxy_config_reloads_total{result=\"ok\"} %" PRIu64 "\n",
                        (uint64_t)atomic_load_explicit(&m->reloads_ok, memory_order_relaxed));
    evbuffer_add_printf(out, "credproxy_config_reloads_total{result=\"error\"} %" PRIu64 "\n",
                        (uint64_t)atomic_load_explicit(&m->reloads_error, memory_order_relaxed));
    metrics_head(out, "credproxy_client_connections", "gauge", "Client connections open now.");
    evbuffer_add_printf(
        out, "credproxy_client_connections %" PRId64 "\n",
        (int64_t)atomic_load_explicit(&m->client_connections, memory_order_relaxed));
}
