/*
 * The shared Redis store, against a real redis-server started on a free
 * loopback port (skipped when redis-server is not installed):
 * - two limiter instances (two "replicas", each with its own loop and
 *   thread) admit exactly the shared budget between them;
 * - killing Redis: decisions fall back to the local buckets without failing
 *   requests, one log line, the fallback counter grows; restarting it:
 *   recovery is seen and logged once;
 * - a 429 pause set through one replica holds the other one too;
 * - the cost of a decision through Redis versus the local buckets.
 * Everything is bounded in time; the server is killed at the end.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "ratelimit.h"
#include "testlib.h"
#include "util.h"

static const char *redis_bin = "/usr/bin/redis-server";
static int redis_port;
static pid_t redis_pid = -1;
static char log_path[] = "/tmp/test_ratelimit_redis_XXXXXX";

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    getsockname(fd, (struct sockaddr *)&sa, &len);
    close(fd);
    return ntohs(sa.sin_port);
}

static bool port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return ok;
}

static bool redis_start(void)
{
    char port[16];
    snprintf(port, sizeof(port), "%d", redis_port);
    redis_pid = fork();
    if (redis_pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 1);
        dup2(devnull, 2);
        execl(redis_bin, redis_bin, "--port", port, "--save", "", "--appendonly", "no", "--bind",
              "127.0.0.1", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 300; i++) {
        if (port_open(redis_port))
            return true;
        usleep(10000);
    }
    return false;
}

static void redis_kill(void)
{
    if (redis_pid > 0) {
        kill(redis_pid, SIGKILL);
        waitpid(redis_pid, NULL, 0);
        redis_pid = -1;
    }
}

static int count_in_log(const char *needle)
{
    FILE *f = fopen(log_path, "r");
    char line[1024];
    int n = 0;
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f)) {
        if (strstr(line, needle))
            n++;
    }
    fclose(f);
    return n;
}

/* ---- a replica: one loop on its own thread ---- */

struct replica {
    struct event_base *base;
    struct ratelimit *rl;
    pthread_t thread;
    const char *cred;
    _Atomic int admitted, denied, fired;
    int chain_left; /* benchmark: acquisitions still to chain */
};

static void replica_keepalive(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

static void *replica_main(void *arg)
{
    struct replica *r = arg;
    /* Keeps the loop running when nothing else is pending (local mode). */
    struct event *keep = event_new(r->base, -1, EV_PERSIST, replica_keepalive, NULL);
    struct timeval tv = {.tv_sec = 1};
    event_add(keep, &tv);
    event_base_dispatch(r->base);
    event_free(keep);
    return NULL;
}

static void replica_cb(void *arg, bool admitted, int64_t retry_after_ms, int64_t waited_ms);

static void replica_do_acquire(struct replica *r)
{
    int64_t retry;
    struct ratelimit_wait *w;
    enum ratelimit_result res =
        ratelimit_acquire(r->rl, r->base, r->cred, NULL, util_now_ms(), &retry, replica_cb, r, &w);
    if (res != RATELIMIT_QUEUED)
        replica_cb(r, res == RATELIMIT_ADMIT, retry, 0);
}

static void replica_cb(void *arg, bool admitted, int64_t retry_after_ms, int64_t waited_ms)
{
    struct replica *r = arg;
    (void)retry_after_ms;
    (void)waited_ms;
    if (admitted)
        atomic_fetch_add(&r->admitted, 1);
    else
        atomic_fetch_add(&r->denied, 1);
    atomic_fetch_add(&r->fired, 1);
    if (r->chain_left > 0) {
        r->chain_left--;
        replica_do_acquire(r);
    }
}

static void replica_acquire_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    replica_do_acquire(arg);
}

/* Ask n times from the replica's own loop thread. */
static void replica_ask(struct replica *r, int n)
{
    struct timeval zero = {0, 0};
    for (int i = 0; i < n; i++)
        event_base_once(r->base, -1, EV_TIMEOUT, replica_acquire_cb, r, &zero);
}

static bool replica_wait_fired(struct replica *r, int n, int timeout_ms)
{
    for (int i = 0; i < timeout_ms / 10; i++) {
        if (atomic_load(&r->fired) >= n)
            return true;
        usleep(10000);
    }
    return atomic_load(&r->fired) >= n;
}

static void replica_reset(struct replica *r)
{
    atomic_store(&r->admitted, 0);
    atomic_store(&r->denied, 0);
    atomic_store(&r->fired, 0);
}

static void replica_start(struct replica *r, const struct config *cfg, const char *cred)
{
    memset(r, 0, sizeof(*r));
    r->base = event_base_new();
    r->cred = cred;
    char *err = NULL;
    r->rl = ratelimit_new(cfg, r->base, &err);
    CHECK_MSG(r->rl != NULL, "ratelimit_new: %s", err ? err : "?");
    pthread_create(&r->thread, NULL, replica_main, r);
}

static void replica_stop(struct replica *r)
{
    event_base_loopbreak(r->base);
    pthread_join(r->thread, NULL);
    ratelimit_free(r->rl); /* on the (now idle) control loop's thread */
    event_base_free(r->base);
}

static struct config_credential t_cred;
static struct config t_cfg;
static char t_store[64];

static void cfg_setup(const char *name, double rate, unsigned burst, bool redis)
{
    memset(&t_cfg, 0, sizeof(t_cfg));
    memset(&t_cred, 0, sizeof(t_cred));
    t_cred.name = (char *)name;
    t_cred.rate_per_sec = rate;
    t_cred.burst = burst;
    t_cfg.credentials = &t_cred;
    t_cfg.ncredentials = 1;
    t_cfg.rate_limit.when_exhausted = CONFIG_RL_REJECT;
    t_cfg.rate_limit.max_wait_ms = 5000;
    t_cfg.rate_limit.max_queue = 100000;
    if (redis) {
        snprintf(t_store, sizeof(t_store), "redis://127.0.0.1:%d", redis_port);
        t_cfg.rate_limit.store = t_store; /* the raw URL: ratelimit parses it itself */
    }
}

static void test_shared_budget(void)
{
    struct replica a, b;
    cfg_setup("svc-shared", 1.0 / 3600.0, 10, true);
    replica_start(&a, &t_cfg, "svc-shared");
    replica_start(&b, &t_cfg, "svc-shared");
    /* Both ask at once, even before their connections are up. */
    replica_ask(&a, 15);
    replica_ask(&b, 15);
    CHECK(replica_wait_fired(&a, 15, 5000));
    CHECK(replica_wait_fired(&b, 15, 5000));
    int admitted = atomic_load(&a.admitted) + atomic_load(&b.admitted);
    CHECK_MSG(admitted == 10, "admitted %d (a %d, b %d)", admitted, atomic_load(&a.admitted),
              atomic_load(&b.admitted));
    CHECK(atomic_load(&a.denied) + atomic_load(&b.denied) == 20);

    struct ratelimit_stats st;
    ratelimit_get_stats(a.rl, &st);
    CHECK(st.redis_fallbacks == 0);

    /* An upstream 429 seen by replica a pauses replica b too (a fresh credential). */
    replica_stop(&a);
    replica_stop(&b);
    cfg_setup("svc-pause", 100, 100, true);
    replica_start(&a, &t_cfg, "svc-pause");
    replica_start(&b, &t_cfg, "svc-pause");
    replica_ask(&b, 1);
    CHECK(replica_wait_fired(&b, 1, 3000));
    CHECK(atomic_load(&b.admitted) == 1);
    ratelimit_upstream_response(a.rl, "svc-pause", 429, "2", NULL, NULL, NULL, util_now_ms());
    replica_ask(&a, 1); /* the pump runs and posts the pause */
    CHECK(replica_wait_fired(&a, 1, 3000));
    usleep(100000);
    replica_reset(&b);
    replica_ask(&b, 3);
    CHECK(replica_wait_fired(&b, 3, 3000));
    CHECK_MSG(atomic_load(&b.denied) == 3, "b admitted %d during a's pause",
              atomic_load(&b.admitted));
    replica_stop(&a);
    replica_stop(&b);
}

static void test_redis_down_and_back(void)
{
    struct replica a;
    cfg_setup("svc-down", 1.0 / 3600.0, 5, true);
    replica_start(&a, &t_cfg, "svc-down");
    replica_ask(&a, 3);
    CHECK(replica_wait_fired(&a, 3, 3000));
    CHECK(atomic_load(&a.admitted) == 3);

    int unreachable_before = count_in_log("unreachable");
    redis_kill();
    usleep(200000);
    /* Down: decisions are local (the local bucket is full: 5), never a failed request. */
    replica_reset(&a);
    for (int i = 0; i < 4; i++) {
        replica_ask(&a, 2);
        usleep(300000); /* spans several reconnect attempts */
    }
    CHECK(replica_wait_fired(&a, 8, 3000));
    CHECK_MSG(atomic_load(&a.admitted) == 5, "local fallback admitted %d",
              atomic_load(&a.admitted));
    CHECK(atomic_load(&a.denied) == 3);
    struct ratelimit_stats st;
    ratelimit_get_stats(a.rl, &st);
    CHECK_MSG(st.redis_fallbacks >= 8, "fallbacks %llu", (unsigned long long)st.redis_fallbacks);
    CHECK_MSG(count_in_log("unreachable") - unreachable_before == 1, "unreachable lines: %d",
              count_in_log("unreachable") - unreachable_before);

    /* Back: recovery logged once; decisions go to Redis again (fresh server: full burst). */
    CHECK(redis_start());
    bool back = false;
    for (int i = 0; i < 800 && !back; i++) {
        back = count_in_log("reachable again") >= 1;
        usleep(10000);
    }
    CHECK_MSG(back, "recovery not logged");
    CHECK(count_in_log("reachable again") == 1);
    ratelimit_get_stats(a.rl, &st);
    uint64_t fb = st.redis_fallbacks;
    replica_reset(&a);
    replica_ask(&a, 7);
    CHECK(replica_wait_fired(&a, 7, 3000));
    CHECK_MSG(atomic_load(&a.admitted) == 5, "after recovery admitted %d",
              atomic_load(&a.admitted));
    ratelimit_get_stats(a.rl, &st);
    CHECK(st.redis_fallbacks == fb);
    replica_stop(&a);
}

static double bench_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static double bench(bool redis, int n)
{
    struct replica a;
    cfg_setup(redis ? "svc-bench-r" : "svc-bench-l", 1e9, 1000000000u, redis);
    replica_start(&a, &t_cfg, redis ? "svc-bench-r" : "svc-bench-l");
    /* Warm up (connection, script load). */
    replica_ask(&a, 1);
    replica_wait_fired(&a, 1, 3000);
    replica_reset(&a);
    double t0 = bench_now_us();
    a.chain_left = n - 1; /* each decision starts the next: latency per decision */
    replica_ask(&a, 1);
    bool done = replica_wait_fired(&a, n, 60000);
    double t1 = bench_now_us();
    CHECK(done);
    CHECK(atomic_load(&a.admitted) == n);
    replica_stop(&a);
    return (t1 - t0) / n;
}

int main(void)
{
    evthread_use_pthreads();
    signal(SIGPIPE, SIG_IGN);
    if (access(redis_bin, X_OK) != 0) {
        printf("skipped: %s not installed\n", redis_bin);
        TEST_DONE();
    }
    /* Our log lines go to stderr: capture them to count them. */
    int lfd = mkstemp(log_path);
    int saved_err = dup(2);
    dup2(lfd, 2);
    close(lfd);

    redis_port = free_port();
    bool up = redis_start();
    CHECK(up);
    if (up) {
        test_shared_budget();
        test_redis_down_and_back();
        double us_local = bench(false, getenv("T_N") ? atoi(getenv("T_N")) : 10000);
        double us_redis = bench(true, 10000);
        dprintf(saved_err, "bench: local %.2f us/decision, redis %.2f us/decision\n", us_local,
                us_redis);
        printf("bench: local %.2f us/decision, redis %.2f us/decision (10000 sequential)\n",
               us_local, us_redis);
    }
    redis_kill();
    fflush(stderr);
    dup2(saved_err, 2);
    /* Show what was logged (it must never contain a secret; there is none here). */
    FILE *f = fopen(log_path, "r");
    char line[1024];
    while (f && fgets(line, sizeof(line), f))
        fputs(line, stderr);
    if (f)
        fclose(f);
    unlink(log_path);
    TEST_DONE();
}
