/*
 * test_metrics: exact exposition lines after known calls, concurrent
 * updates from two threads, label escaping, the series bound and its
 * "other" fold, expiry gauges from the config, rate-limit counters.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "metrics.h"
#include "ratelimit.h"
#include "testlib.h"
#include "util.h"

/* Renders m into a new NUL-terminated string (caller frees). */
static char *render(struct metrics *m, const struct config *cfg, const struct ratelimit_stats *rl)
{
    struct evbuffer *b = evbuffer_new();
    size_t n;
    char *s;
    metrics_render(m, cfg, rl, b);
    n = evbuffer_get_length(b);
    s = xmalloc(n + 1);
    evbuffer_remove(b, s, n);
    s[n] = '\0';
    evbuffer_free(b);
    return s;
}

/* True when text holds exactly this line (whole line match). */
static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    const char *p = text;
    while ((p = strstr(p, line)) != NULL) {
        if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
            return true;
        p += 1;
    }
    return false;
}

static size_t count_prefix(const char *text, const char *prefix)
{
    size_t n = 0, len = strlen(prefix);
    const char *p = text;
    while (*p) {
        if (strncmp(p, prefix, len) == 0)
            n++;
        p = strchr(p, '\n');
        if (!p)
            break;
        p++;
    }
    return n;
}

#define CHECK_LINE(text, line) CHECK_MSG(has_line((text), (line)), "missing line: %s", (line))

static void test_basic(void)
{
    struct metrics *m = metrics_new();
    char *t;

    metrics_request(m, "acme.atlassian.net", "svc", "triage-bot", 200, 0.003);
    metrics_request(m, "acme.atlassian.net", "svc", "triage-bot", 200, 0.2);
    metrics_request(m, "acme.atlassian.net", "svc", "triage-bot", 200, 1.5);
    metrics_request(m, "acme.atlassian.net", "svc", NULL, 429, 0.01);
    metrics_request(m, NULL, NULL, NULL, 403, 0.0);
    metrics_upstream_connections(m, 2);
    metrics_upstream_connections(m, 1);
    metrics_config_reload(m, true);
    metrics_config_reload(m, false);
    metrics_config_reload(m, false);
    metrics_client_connections(m, 3);
    metrics_client_connections(m, -1);

    t = render(m, NULL, NULL);
    CHECK_LINE(t, "# HELP credproxy_requests_total Proxied requests by site, credential, client "
                  "and HTTP status.");
    CHECK_LINE(t, "# TYPE credproxy_requests_total counter");
    CHECK_LINE(t, "credproxy_requests_total{site=\"acme.atlassian.net\",credential=\"svc\","
                  "client=\"triage-bot\",code=\"200\"} 3");
    CHECK_LINE(t, "credproxy_requests_total{site=\"acme.atlassian.net\",credential=\"svc\","
                  "client=\"\",code=\"429\"} 1");
    /* No mapped site: one bounded label, never the host the client asked for. */
    CHECK_LINE(t, "credproxy_requests_total{site=\"(unmapped)\",credential=\"\",client=\"\","
                  "code=\"403\"} 1");
    CHECK(count_prefix(t, "credproxy_requests_total{") == 3);
    CHECK(metrics_series_count(m) == 3);

    CHECK_LINE(t, "# TYPE credproxy_request_duration_seconds histogram");
    CHECK_LINE(t, "credproxy_request_duration_seconds_bucket{site=\"acme.atlassian.net\","
                  "le=\"0.005\"} 1");
    CHECK_LINE(t, "credproxy_request_duration_seconds_bucket{site=\"acme.atlassian.net\","
                  "le=\"0.01\"} 2"); /* 0.01 lands in le="0.01": bounds are inclusive */
    CHECK_LINE(t, "credproxy_request_duration_seconds_bucket{site=\"acme.atlassian.net\","
                  "le=\"0.1\"} 2");
    CHECK_LINE(t, "credproxy_request_duration_seconds_bucket{site=\"acme.atlassian.net\","
                  "le=\"0.25\"} 3");
    CHECK_LINE(t, "credproxy_request_duration_seconds_bucket{site=\"acme.atlassian.net\","
                  "le=\"1\"} 3");
    CHECK_LINE(t, "credproxy_request_duration_seconds_bucket{site=\"acme.atlassian.net\","
                  "le=\"2.5\"} 4");
    CHECK_LINE(t, "credproxy_request_duration_seconds_bucket{site=\"acme.atlassian.net\","
                  "le=\"10\"} 4");
    CHECK_LINE(t, "credproxy_request_duration_seconds_bucket{site=\"acme.atlassian.net\","
                  "le=\"+Inf\"} 4");
    CHECK_LINE(t, "credproxy_request_duration_seconds_sum{site=\"acme.atlassian.net\"} 1.713");
    CHECK_LINE(t, "credproxy_request_duration_seconds_count{site=\"acme.atlassian.net\"} 4");
    CHECK_LINE(t, "credproxy_request_duration_seconds_bucket{site=\"(unmapped)\",le=\"0.005\"} 1");
    CHECK_LINE(t, "credproxy_request_duration_seconds_sum{site=\"(unmapped)\"} 0");
    CHECK(count_prefix(t, "credproxy_request_duration_seconds_bucket{") == 24);

    CHECK_LINE(t, "# TYPE credproxy_upstream_connections_total counter");
    CHECK_LINE(t, "credproxy_upstream_connections_total 3");
    CHECK_LINE(t, "credproxy_config_reloads_total{result=\"ok\"} 1");
    CHECK_LINE(t, "credproxy_config_reloads_total{result=\"error\"} 2");
    CHECK_LINE(t, "# TYPE credproxy_client_connections gauge");
    CHECK_LINE(t, "credproxy_client_connections 2");
    /* Without a limiter the rate-limit families are still present, at zero. */
    CHECK_LINE(t, "# TYPE credproxy_ratelimit_queued gauge");
    CHECK_LINE(t, "credproxy_ratelimit_queued 0");
    CHECK_LINE(t, "credproxy_ratelimit_rejected_total 0");
    CHECK_LINE(t, "# TYPE credproxy_credential_expiry_timestamp_seconds gauge");
    CHECK(count_prefix(t, "credproxy_credential_expiry_timestamp_seconds{") == 0);
    /* Every sample line belongs to a family that has HELP and TYPE. */
    CHECK(count_prefix(t, "# HELP ") == count_prefix(t, "# TYPE "));
    CHECK(count_prefix(t, "# TYPE ") == 13);
    CHECK_LINE(t, "# TYPE credproxy_policy_denied_total counter");
    CHECK(count_prefix(t, "credproxy_policy_denied_total{") == 0);
    free(t);
    metrics_free(m);
}

static void test_config_and_ratelimit(void)
{
    struct metrics *m = metrics_new();
    struct config cfg;
    struct config_credential creds[3];
    struct ratelimit_stats rl = {
        .admitted = 10,
        .queued_total = 4,
        .rejected = 2,
        .waited_ms_total = 1500,
        .upstream_429 = 1,
        .redis_fallbacks = 5,
        .queued_now = 3,
    };
    char *t;

    memset(&cfg, 0, sizeof(cfg));
    memset(creds, 0, sizeof(creds));
    creds[0].name = "svc";
    creds[0].expires = 1827446400; /* 2027-11-28 */
    creds[1].name = "no-expiry";
    creds[2].name = "we\"ird\\name\n";
    creds[2].expires = 1767225600;
    cfg.credentials = creds;
    cfg.ncredentials = 3;

    t = render(m, &cfg, &rl);
    CHECK_LINE(t, "credproxy_credential_expiry_timestamp_seconds{credential=\"svc\"} 1827446400");
    CHECK_LINE(t,
               "credproxy_credential_expiry_timestamp_seconds{credential=\"we\\\"ird\\\\name\\n\"}"
               " 1767225600");
    CHECK(strstr(t, "no-expiry") == NULL);
    CHECK_LINE(t, "credproxy_ratelimit_queued 3");
    CHECK_LINE(t, "credproxy_ratelimit_queued_total 4");
    CHECK_LINE(t, "credproxy_ratelimit_rejected_total 2");
    CHECK_LINE(t, "credproxy_ratelimit_wait_seconds_total 1.5");
    CHECK_LINE(t, "credproxy_upstream_ratelimited_total{reason=\"none\"} 1");
    CHECK_LINE(t, "credproxy_ratelimit_store_fallbacks_total 5");
    /* No request yet: the families exist with no samples. */
    CHECK(count_prefix(t, "credproxy_requests_total{") == 0);
    CHECK_LINE(t, "# TYPE credproxy_requests_total counter");
    free(t);
    metrics_free(m);
}

static void test_escaping(void)
{
    struct metrics *m = metrics_new();
    char *t;
    metrics_request(m, "a\"b", "c\\d", "e\nf", 502, 0.0);
    t = render(m, NULL, NULL);
    CHECK_LINE(t, "credproxy_requests_total{site=\"a\\\"b\",credential=\"c\\\\d\","
                  "client=\"e\\nf\",code=\"502\"} 1");
    CHECK_LINE(t, "credproxy_request_duration_seconds_count{site=\"a\\\"b\"} 1");
    /* No raw newline inside a sample line: every line starts with a known prefix. */
    for (const char *p = t; *p;) {
        CHECK(strncmp(p, "credproxy_", 10) == 0 || strncmp(p, "# ", 2) == 0);
        p = strchr(p, '\n');
        if (!p)
            break;
        p++;
    }
    free(t);
    metrics_free(m);
}

#define THREAD_CALLS 10000

struct worker_arg {
    struct metrics *m;
    const char *client;
    pthread_barrier_t *start; /* both threads begin together, so their updates overlap */
};

static void *worker(void *p)
{
    struct worker_arg *a = p;
    pthread_barrier_wait(a->start);
    for (int i = 0; i < THREAD_CALLS; i++) {
        metrics_request(a->m, "acme.atlassian.net", "svc", a->client, 200, 0.02);
        metrics_request(a->m, "acme.atlassian.net", "svc", "shared", i % 2 ? 200 : 404, 0.02);
        metrics_upstream_connections(a->m, 1);
        metrics_client_connections(a->m, 1);
        metrics_client_connections(a->m, -1);
    }
    return NULL;
}

static void test_threads(void)
{
    struct metrics *m = metrics_new();
    pthread_t th[2];
    pthread_barrier_t start;
    struct worker_arg args[2] = {{m, "bot-a", &start}, {m, "bot-b", &start}};
    char *t;

    pthread_barrier_init(&start, NULL, 2);

    for (int i = 0; i < 2; i++)
        CHECK(pthread_create(&th[i], NULL, worker, &args[i]) == 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start);
    t = render(m, NULL, NULL);
    CHECK_LINE(t, "credproxy_requests_total{site=\"acme.atlassian.net\",credential=\"svc\","
                  "client=\"bot-a\",code=\"200\"} 10000");
    CHECK_LINE(t, "credproxy_requests_total{site=\"acme.atlassian.net\",credential=\"svc\","
                  "client=\"bot-b\",code=\"200\"} 10000");
    CHECK_LINE(t, "credproxy_requests_total{site=\"acme.atlassian.net\",credential=\"svc\","
                  "client=\"shared\",code=\"200\"} 10000");
    CHECK_LINE(t, "credproxy_requests_total{site=\"acme.atlassian.net\",credential=\"svc\","
                  "client=\"shared\",code=\"404\"} 10000");
    CHECK(count_prefix(t, "credproxy_requests_total{") == 4);
    CHECK_LINE(t, "credproxy_request_duration_seconds_count{site=\"acme.atlassian.net\"} 40000");
    CHECK_LINE(t, "credproxy_request_duration_seconds_bucket{site=\"acme.atlassian.net\","
                  "le=\"0.025\"} 40000");
    CHECK_LINE(t, "credproxy_request_duration_seconds_bucket{site=\"acme.atlassian.net\","
                  "le=\"0.01\"} 0");
    CHECK_LINE(t, "credproxy_request_duration_seconds_sum{site=\"acme.atlassian.net\"} 800");
    CHECK_LINE(t, "credproxy_upstream_connections_total 20000");
    CHECK_LINE(t, "credproxy_client_connections 0");
    free(t);
    metrics_free(m);
}

/* Both threads on one series, many times: a non-atomic increment would lose updates here. */
#define CONTENTION_CALLS 1000000

static void *hammer(void *p)
{
    struct worker_arg *a = p;
    pthread_barrier_wait(a->start);
    for (int i = 0; i < CONTENTION_CALLS; i++)
        metrics_request(a->m, "s", "c", "same", 200, 0.0);
    return NULL;
}

static void test_contention(void)
{
    struct metrics *m = metrics_new();
    pthread_t th[2];
    pthread_barrier_t start;
    struct worker_arg arg = {m, "same", &start};
    char *t;

    pthread_barrier_init(&start, NULL, 2);
    for (int i = 0; i < 2; i++)
        CHECK(pthread_create(&th[i], NULL, hammer, &arg) == 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start);
    t = render(m, NULL, NULL);
    CHECK_LINE(t,
               "credproxy_requests_total{site=\"s\",credential=\"c\",client=\"same\",code=\"200\"} "
               "2000000");
    CHECK_LINE(t, "credproxy_request_duration_seconds_count{site=\"s\"} 2000000");
    free(t);
    metrics_free(m);
}

static void test_bound(void)
{
    struct metrics *m = metrics_new();
    char name[64];
    char *t;

    for (int i = 0; i < METRICS_MAX_SERIES; i++) {
        snprintf(name, sizeof(name), "client-%05d", i);
        metrics_request(m, "acme.atlassian.net", "svc", name, 200, 0.001);
    }
    CHECK(metrics_series_count(m) == METRICS_MAX_SERIES);
    /* Full: new clients fold into client="other", existing series still count. */
    metrics_request(m, "acme.atlassian.net", "svc", "late-1", 200, 0.001);
    metrics_request(m, "acme.atlassian.net", "svc", "late-2", 200, 0.001);
    metrics_request(m, "acme.atlassian.net", "svc", "client-00007", 200, 0.001);
    CHECK(metrics_series_count(m) == METRICS_MAX_SERIES + 1);
    /* "other" series are bounded too; past the bound one catch-all takes the rest. */
    for (int i = 0; i < METRICS_MAX_OTHER_SERIES + 50; i++) {
        snprintf(name, sizeof(name), "site-%05d", i);
        metrics_request(m, name, "svc", "late-3", 200, 0.001);
    }
    CHECK(metrics_series_count(m) == METRICS_MAX_SERIES + METRICS_MAX_OTHER_SERIES);

    t = render(m, NULL, NULL);
    CHECK_LINE(t, "credproxy_requests_total{site=\"acme.atlassian.net\",credential=\"svc\","
                  "client=\"other\",code=\"200\"} 2");
    CHECK_LINE(t, "credproxy_requests_total{site=\"acme.atlassian.net\",credential=\"svc\","
                  "client=\"client-00007\",code=\"200\"} 2");
    CHECK(strstr(t, "late-1") == NULL && strstr(t, "late-2") == NULL &&
          strstr(t, "late-3") == NULL);
    CHECK_LINE(t, "credproxy_requests_total{site=\"other\",credential=\"other\",client=\"other\","
                  "code=\"other\"} 51");
    CHECK(count_prefix(t, "credproxy_requests_total{") ==
          METRICS_MAX_SERIES + METRICS_MAX_OTHER_SERIES + 1);
    /* Histogram sites are bounded: 1 + 512 distinct site labels -> the rest are "other". */
    CHECK(count_prefix(t, "credproxy_request_duration_seconds_count{") ==
          METRICS_MAX_HIST_SITES + 1);
    CHECK_LINE(t, "credproxy_request_duration_seconds_count{site=\"other\"} 51");
    free(t);

    /* Over-long labels are cut consistently: two calls land in one series. */
    {
        char longname[METRICS_MAX_LABEL_LEN * 2];
        struct metrics *m2 = metrics_new();
        memset(longname, 'x', sizeof(longname) - 1);
        longname[sizeof(longname) - 1] = '\0';
        metrics_request(m2, "s", "c", longname, 200, 0.0);
        metrics_request(m2, "s", "c", longname, 200, 0.0);
        CHECK(metrics_series_count(m2) == 1);
        metrics_free(m2);
    }
    metrics_free(m);
}

static void test_null(void)
{
    metrics_free(NULL);
    metrics_request(NULL, "a", "b", "c", 200, 1.0);
    metrics_upstream_connections(NULL, 1);
    metrics_config_reload(NULL, true);
    metrics_client_connections(NULL, 1);
    CHECK(metrics_series_count(NULL) == 0);
    {
        struct metrics *m = metrics_new();
        char *t;
        metrics_request(m, "s", "c", "x", 200, -5.0);
        metrics_request(m, "s", "c", "x", 200, NAN);
        t = render(m, NULL, NULL);
        CHECK_LINE(t, "credproxy_request_duration_seconds_sum{site=\"s\"} 0");
        CHECK_LINE(t, "credproxy_request_duration_seconds_bucket{site=\"s\",le=\"0.005\"} 2");
        free(t);
        metrics_free(m);
    }
}

/* credproxy_policy_denied_total{client,class}: counted, escaped, bounded. */
static void test_policy_denied(void)
{
    struct metrics *m = metrics_new();
    char *t;
    metrics_policy_denied(NULL, "a", "read");
    metrics_policy_denied(m, "triage-bot", "delete");
    metrics_policy_denied(m, "triage-bot", "delete");
    metrics_policy_denied(m, "triage-bot", "write");
    metrics_policy_denied(m, "anonymous", "admin");
    metrics_policy_denied(m, "we\"ird", "read");
    t = render(m, NULL, NULL);
    CHECK_LINE(t, "credproxy_policy_denied_total{client=\"triage-bot\",class=\"delete\"} 2");
    CHECK_LINE(t, "credproxy_policy_denied_total{client=\"triage-bot\",class=\"write\"} 1");
    CHECK_LINE(t, "credproxy_policy_denied_total{client=\"anonymous\",class=\"admin\"} 1");
    CHECK_LINE(t, "credproxy_policy_denied_total{client=\"we\\\"ird\",class=\"read\"} 1");
    CHECK(count_prefix(t, "credproxy_policy_denied_total{") == 4);
    free(t);
    for (int i = 0; i < METRICS_MAX_POLICY_SERIES + 5; i++) {
        char id[32];
        snprintf(id, sizeof(id), "c%d", i);
        metrics_policy_denied(m, id, "read");
    }
    t = render(m, NULL, NULL);
    CHECK(count_prefix(t, "credproxy_policy_denied_total{") == METRICS_MAX_POLICY_SERIES + 1);
    CHECK_LINE(t, "credproxy_policy_denied_total{client=\"other\",class=\"other\"} 9");
    free(t);
    metrics_free(m);
}

int main(void)
{
    test_basic();
    test_policy_denied();
    test_config_and_ratelimit();
    test_escaping();
    test_threads();
    test_contention();
    test_bound();
    test_null();
    TEST_DONE();
}
