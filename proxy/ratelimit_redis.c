/*
 * ratelimit_redis: see ratelimit_redis.h.
 *
 * Everything here runs on one event base (the control loop). hiredis owns
 * the connection object: after a connect failure or a disconnect it frees
 * the context itself once our callback returns, so we only forget the
 * pointer there and never free it from inside one of its callbacks.
 */
#include "ratelimit_redis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/sha.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wshadow"
#include <hiredis/adapters/libevent.h>
#pragma GCC diagnostic pop

#include "log.h"
#include "util.h"

/*
 * KEYS[1] credential bucket, KEYS[2] client bucket, KEYS[3] credential pause.
 * ARGV[1] op, ARGV[2] rate/s (0 = off), ARGV[3] burst,
 *   acquire: ARGV[4] client rate/s (0 = no client bucket), ARGV[5] client burst
 *   pause:   ARGV[4] ms;  cap: ARGV[4] max saved tokens
 * Bucket hash: t = tokens, ts = ms the tokens are valid at (later than now
 * while paused: nothing accrues during a pause).
 * Returns {admitted 0|1, wait_ms, reason}.
 */
static const char rl_redis_script[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local op = ARGV[1]\n"
    "local rate, burst = tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "local function level(key, r, b)\n"
    "  local v = redis.call('HMGET', key, 't', 'ts')\n"
    "  local tok, ts = tonumber(v[1]), tonumber(v[2])\n"
    "  if tok == nil or ts == nil then return b, now end\n"
    "  if now > ts then\n"
    "    tok = math.min(b, tok + (now - ts) * r / 1000)\n"
    "    ts = now\n"
    "  end\n"
    "  return tok, ts\n"
    "end\n"
    "local function store(key, tok, ts, r, b)\n"
    "  redis.call('HSET', key, 't', tok, 'ts', ts)\n"
    "  redis.call('PEXPIRE', key, math.ceil(b * 1000 / r) + (ts - now) + 1000)\n"
    "end\n"
    "if op == 'pause' then\n"
    "  local ms = tonumber(ARGV[4])\n"
    "  if redis.call('PTTL', KEYS[3]) < ms then\n"
    "    redis.call('SET', KEYS[3], '1', 'PX', ms)\n"
    "  end\n"
    "  if rate > 0 then\n"
    "    local tok, ts = level(KEYS[1], rate, burst)\n"
    "    if tok > 1 then tok = 1 end\n"
    "    if ts < now + ms then ts = now + ms end\n"
    "    store(KEYS[1], tok, ts, rate, burst)\n"
    "  end\n"
    "  return {1, 0, 0}\n"
    "end\n"
    "if op == 'cap' then\n"
    "  if rate > 0 then\n"
    "    local tok, ts = level(KEYS[1], rate, burst)\n"
    "    local cap = tonumber(ARGV[4])\n"
    "    if tok > cap then tok = cap end\n"
    "    store(KEYS[1], tok, ts, rate, burst)\n"
    "  end\n"
    "  return {1, 0, 0}\n"
    "end\n"
    "local pttl = redis.call('PTTL', KEYS[3])\n"
    "if pttl > 0 then return {0, pttl, 3} end\n"
    "local crate, cburst = tonumber(ARGV[4]), tonumber(ARGV[5])\n"
    "local ctok, cts\n"
    "if crate > 0 then\n"
    "  ctok, cts = level(KEYS[2], crate, cburst)\n"
    "  if ctok < 1 - 1e-9 then\n"
    "    return {0, math.ceil(math.max(cts, now) - now + (1 - ctok) * 1000 / crate - 1e-6), 2}\n"
    "  end\n"
    "end\n"
    "if rate > 0 then\n"
    "  local tok, ts = level(KEYS[1], rate, burst)\n"
    "  if tok < 1 - 1e-9 then\n"
    "    return {0, math.ceil(math.max(ts, now) - now + (1 - tok) * 1000 / rate - 1e-6), 1}\n"
    "  end\n"
    "  store(KEYS[1], tok - 1, ts, rate, burst)\n"
    "end\n"
    "if crate > 0 then store(KEYS[2], ctok - 1, cts, crate, cburst) end\n"
    "return {1, 0, 0}\n";

#define RL_REDIS_ARGC 11

struct rl_redis_req {
    struct rl_redis *r;
    rl_redis_reply_cb cb; /* NULL: fire and forget */
    void *arg;
    bool retried; /* already resent as EVAL after NOSCRIPT */
    char *argv[RL_REDIS_ARGC];
};

struct rl_redis {
    struct event_base *base;
    char *host;
    int port;
    int db;
    redisAsyncContext *ac; /* NULL while disconnected */
    bool connected;
    bool up;       /* as last reported */
    bool reported; /* a state was reported at least once */
    bool closing;
    int64_t backoff_ms;
    struct event *retry_ev; /* reconnect timer */
    struct event *watch_ev; /* reply watchdog */
    unsigned pending;
    int64_t pending_since_ms;
    int64_t connect_started_ms;
    char sha[SHA_DIGEST_LENGTH * 2 + 1];
    rl_redis_state_cb state_cb;
    void *state_arg;
};

static void rl_redis_connect(struct rl_redis *r);

static void rl_redis_report(struct rl_redis *r, bool up, const char *why)
{
    if (r->closing || (r->reported && r->up == up))
        return;
    if (up) {
        log_info("ratelimit: redis %s:%d reachable%s; using the shared budget", r->host, r->port,
                 r->reported ? " again" : "");
    } else {
        log_warn("ratelimit: redis %s:%d unreachable (%s); using local buckets until it is "
                 "back",
                 r->host, r->port, why ? why : "error");
    }
    r->reported = true;
    r->up = up;
    if (r->state_cb)
        r->state_cb(r->state_arg, up);
}

static void rl_redis_schedule_retry(struct rl_redis *r)
{
    if (r->closing)
        return;
    struct timeval tv = {.tv_sec = r->backoff_ms / 1000, .tv_usec = (r->backoff_ms % 1000) * 1000};
    event_add(r->retry_ev, &tv);
    r->backoff_ms *= 2;
    if (r->backoff_ms > RL_REDIS_BACKOFF_MAX_MS)
        r->backoff_ms = RL_REDIS_BACKOFF_MAX_MS;
}

/* The first answer on a new connection: only now is the store usable. */
static void rl_redis_on_ping(redisAsyncContext *ac, void *replyp, void *privdata)
{
    struct rl_redis *r = ac->data;
    redisReply *reply = replyp;

    (void)privdata;
    /* NULL while the context is being freed (watchdog, disconnect): they report. */
    if (!reply || r->closing || r->ac != ac || reply->type == REDIS_REPLY_ERROR)
        return;
    r->connected = true;
    r->backoff_ms = RL_REDIS_BACKOFF_MIN_MS;
    rl_redis_report(r, true, NULL);
}

static void rl_redis_on_connect(const redisAsyncContext *ac, int status)
{
    struct rl_redis *r = ac->data;
    if (status != REDIS_OK) {
        /* hiredis frees ac after this returns. */
        r->ac = NULL;
        r->connected = false;
        rl_redis_report(r, false, ac->errstr[0] ? ac->errstr : "connect failed");
        rl_redis_schedule_retry(r);
        return;
    }
    /*
     * A frozen Redis (stopped, swapping, stuck in a slow script) still
     * completes the TCP handshake from the kernel's backlog: counting that
     * as "up" made the store flap between up and down once per reply
     * timeout, with a warning each time and requests queued on it every
     * round. It is up once it answers.
     */
    redisAsyncCommand(r->ac, rl_redis_on_ping, NULL, "PING");
}

static void rl_redis_on_disconnect(const redisAsyncContext *ac, int status)
{
    struct rl_redis *r = ac->data;
    r->ac = NULL;
    r->connected = false;
    r->pending = 0;
    rl_redis_report(r, false,
                    status == REDIS_OK ? "connection closed"
                                       : (ac->errstr[0] ? ac->errstr : "connection lost"));
    rl_redis_schedule_retry(r);
}

static void rl_redis_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    rl_redis_connect(arg);
}

static void rl_redis_watch_cb(evutil_socket_t fd, short what, void *arg)
{
    struct rl_redis *r = arg;
    (void)fd;
    (void)what;
    int64_t now = util_now_ms();
    if (r->ac && ((r->pending > 0 && now - r->pending_since_ms > RL_REDIS_REPLY_TIMEOUT_MS) ||
                  (!r->connected && now - r->connect_started_ms > RL_REDIS_REPLY_TIMEOUT_MS))) {
        /* Not inside a hiredis callback here, so freeing is allowed; pending callbacks get NULL. */
        redisAsyncContext *ac = r->ac;
        log_debug("ratelimit: redis reply timeout; dropping the connection");
        redisAsyncFree(ac);
        if (r->ac == ac) {
            /* Not connected yet: no disconnect callback ran. */
            r->ac = NULL;
            r->connected = false;
            rl_redis_report(r, false, "reply timeout");
            rl_redis_schedule_retry(r);
        }
    }
}

static void rl_redis_connect(struct rl_redis *r)
{
    if (r->closing || r->ac)
        return;
    redisAsyncContext *ac = redisAsyncConnect(r->host, r->port);
    if (!ac || ac->err) {
        rl_redis_report(r, false, ac && ac->errstr[0] ? ac->errstr : "connect failed");
        if (ac)
            redisAsyncFree(ac);
        rl_redis_schedule_retry(r);
        return;
    }
    ac->data = r;
    r->pending = 0;
    r->connect_started_ms = util_now_ms();
    if (redisLibeventAttach(ac, r->base) != REDIS_OK) {
        redisAsyncFree(ac);
        rl_redis_report(r, false, "event attach failed");
        rl_redis_schedule_retry(r);
        return;
    }
    redisAsyncSetConnectCallback(ac, rl_redis_on_connect);
    redisAsyncSetDisconnectCallback(ac, rl_redis_on_disconnect);
    r->ac = ac;
    if (r->db > 0)
        redisAsyncCommand(ac, NULL, NULL, "SELECT %d", r->db);
}

struct rl_redis *rl_redis_new(struct event_base *base, const char *host, int port, int db,
                              rl_redis_state_cb state_cb, void *arg)
{
    struct rl_redis *r = xcalloc(1, sizeof(*r));
    unsigned char md[SHA_DIGEST_LENGTH];

    r->base = base;
    r->host = xstrdup(host);
    r->port = port;
    r->db = db;
    r->state_cb = state_cb;
    r->state_arg = arg;
    r->backoff_ms = RL_REDIS_BACKOFF_MIN_MS;
    SHA1((const unsigned char *)rl_redis_script, strlen(rl_redis_script), md);
    for (size_t i = 0; i < sizeof(md); i++)
        snprintf(r->sha + 2 * i, 3, "%02x", md[i]);
    r->retry_ev = event_new(base, -1, 0, rl_redis_retry_cb, r);
    r->watch_ev = event_new(base, -1, EV_PERSIST, rl_redis_watch_cb, r);
    struct timeval tv = {.tv_sec = 0, .tv_usec = 250 * 1000};
    event_add(r->watch_ev, &tv);
    rl_redis_connect(r);
    return r;
}

void rl_redis_free(struct rl_redis *r)
{
    if (!r)
        return;
    r->closing = true;
    if (r->ac) {
        redisAsyncContext *ac = r->ac;
        r->ac = NULL;
        redisAsyncFree(ac);
    }
    event_free(r->retry_ev);
    event_free(r->watch_ev);
    free(r->host);
    free(r);
}

bool rl_redis_up(const struct rl_redis *r)
{
    return r && r->connected;
}

static void rl_redis_req_free(struct rl_redis_req *q)
{
    for (int i = 0; i < RL_REDIS_ARGC; i++)
        free(q->argv[i]);
    free(q);
}

static int rl_redis_send(struct rl_redis *r, struct rl_redis_req *q);

static void rl_redis_on_reply(redisAsyncContext *ac, void *replyp, void *privdata)
{
    struct rl_redis_req *q = privdata;
    struct rl_redis *r = q->r;
    redisReply *reply = replyp;
    bool ok = false, admitted = false;
    int64_t wait_ms = 0;
    enum rl_redis_reason reason = RL_REDIS_OK;

    (void)ac;
    if (r->pending > 0)
        r->pending--;
    r->pending_since_ms = util_now_ms();
    if (reply && reply->type == REDIS_REPLY_ERROR && !q->retried && !r->closing &&
        strncmp(reply->str, "NOSCRIPT", 8) == 0) {
        q->retried = true;
        free(q->argv[0]);
        free(q->argv[1]);
        q->argv[0] = xstrdup("EVAL");
        q->argv[1] = xstrdup(rl_redis_script);
        if (rl_redis_send(r, q) == 0)
            return;
        reply = NULL;
    }
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 3 &&
        reply->element[0]->type == REDIS_REPLY_INTEGER &&
        reply->element[1]->type == REDIS_REPLY_INTEGER &&
        reply->element[2]->type == REDIS_REPLY_INTEGER) {
        ok = true;
        admitted = reply->element[0]->integer == 1;
        wait_ms = reply->element[1]->integer;
        reason = (enum rl_redis_reason)reply->element[2]->integer;
    } else if (reply && reply->type == REDIS_REPLY_ERROR) {
        log_debug("ratelimit: redis script error: %.200s", reply->str);
    }
    if (q->cb)
        q->cb(q->arg, ok, admitted, wait_ms, reason);
    rl_redis_req_free(q);
}

/* Sends q; on success the reply callback owns it, on -1 the caller still does. */
static int rl_redis_send(struct rl_redis *r, struct rl_redis_req *q)
{
    const char *argv[RL_REDIS_ARGC];
    size_t lens[RL_REDIS_ARGC];
    if (!r->ac || !r->connected || r->pending >= RL_REDIS_MAX_PENDING)
        return -1;
    for (int i = 0; i < RL_REDIS_ARGC; i++) {
        argv[i] = q->argv[i];
        lens[i] = strlen(q->argv[i]);
    }
    if (redisAsyncCommandArgv(r->ac, rl_redis_on_reply, q, RL_REDIS_ARGC, argv, lens) != REDIS_OK)
        return -1;
    if (r->pending++ == 0)
        r->pending_since_ms = util_now_ms();
    return 0;
}

static struct rl_redis_req *rl_redis_req_new(struct rl_redis *r, const char *op, const char *cred,
                                             const char *client, double rate, unsigned burst,
                                             const char *a4, const char *a5)
{
    struct rl_redis_req *q = xcalloc(1, sizeof(*q));
    q->r = r;
    q->argv[0] = xstrdup("EVALSHA");
    q->argv[1] = xstrdup(r->sha);
    q->argv[2] = xstrdup("3");
    q->argv[3] = xasprintf(RL_REDIS_KEY_PREFIX "cred:%s:bucket", cred);
    q->argv[4] = client ? xasprintf(RL_REDIS_KEY_PREFIX "client:%s:bucket", client)
                        : xstrdup(RL_REDIS_KEY_PREFIX "noclient");
    q->argv[5] = xasprintf(RL_REDIS_KEY_PREFIX "cred:%s:pause", cred);
    q->argv[6] = xstrdup(op);
    q->argv[7] = xasprintf("%.17g", rate > 0 ? rate : 0.0);
    q->argv[8] = xasprintf("%u", burst ? burst : 1);
    q->argv[9] = xstrdup(a4);
    q->argv[10] = xstrdup(a5);
    return q;
}

int rl_redis_acquire(struct rl_redis *r, const char *cred, double rate_per_sec, unsigned burst,
                     const char *client, double client_rate_per_sec, unsigned client_burst,
                     rl_redis_reply_cb cb, void *arg)
{
    char a4[64], a5[32];
    if (!r->connected)
        return -1;
    snprintf(a4, sizeof(a4), "%.17g", client && client_rate_per_sec > 0 ? client_rate_per_sec : 0);
    snprintf(a5, sizeof(a5), "%u", client_burst ? client_burst : 1);
    struct rl_redis_req *q =
        rl_redis_req_new(r, "acquire", cred, client, rate_per_sec, burst, a4, a5);
    q->cb = cb;
    q->arg = arg;
    if (rl_redis_send(r, q) < 0) {
        rl_redis_req_free(q);
        return -1;
    }
    return 0;
}

void rl_redis_upstream(struct rl_redis *r, const char *cred, double rate_per_sec, unsigned burst,
                       int64_t pause_ms, double cap)
{
    char a4[64];
    struct rl_redis_req *q;
    if (!r->connected)
        return;
    if (pause_ms > 0) {
        snprintf(a4, sizeof(a4), "%lld", (long long)pause_ms);
        q = rl_redis_req_new(r, "pause", cred, NULL, rate_per_sec, burst, a4, "0");
    } else if (cap >= 0) {
        snprintf(a4, sizeof(a4), "%.17g", cap);
        q = rl_redis_req_new(r, "cap", cred, NULL, rate_per_sec, burst, a4, "0");
    } else {
        return;
    }
    if (rl_redis_send(r, q) < 0)
        rl_redis_req_free(q);
}
