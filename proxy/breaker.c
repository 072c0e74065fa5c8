/*
 * breaker: see breaker.h. One mutex guards the whole table; every call does
 * a linear lookup over at most BREAKER_MAX_ENTRIES names and a few integer
 * updates under it, never a callback or an allocation of the caller's.
 */
#include "breaker.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

struct breaker_entry {
    char name[BREAKER_MAX_NAME + 1];
    char email[BREAKER_MAX_EMAIL + 1];
    char said[BREAKER_MAX_SAID + 1];
    enum breaker_state state;
    bool captcha;
    bool configured;
    unsigned failures;
    unsigned reject_after;
    int64_t cooldown_ms;
    int64_t open_until_ms;    /* OPEN: the next probe may go at this time */
    int64_t probe_started_ms; /* PROBING: when the probe went */
    uint64_t transitions;
    size_t order; /* position in the config, for snapshots */
};

struct breaker {
    pthread_mutex_t mu;
    struct breaker_entry e[BREAKER_MAX_ENTRIES];
    size_t n;
};

struct breaker *breaker_new(void)
{
    struct breaker *b = xcalloc(1, sizeof(*b));
    pthread_mutex_init(&b->mu, NULL);
    return b;
}

void breaker_free(struct breaker *b)
{
    if (!b)
        return;
    pthread_mutex_destroy(&b->mu);
    free(b);
}

static struct breaker_entry *brk_find(struct breaker *b, const char *name)
{
    for (size_t i = 0; i < b->n; i++) {
        if (strcmp(b->e[i].name, name) == 0)
            return &b->e[i];
    }
    return NULL;
}

static void brk_info(const struct breaker_entry *e, int64_t now_ms, struct breaker_info *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof(*out));
    util_copy(out->credential, sizeof(out->credential), e->name);
    util_copy(out->email, sizeof(out->email), e->email);
    util_copy(out->said, sizeof(out->said), e->said);
    out->state = e->state;
    out->captcha = e->captcha;
    out->failures = e->failures;
    out->reject_after = e->reject_after;
    out->cooldown_ms = e->cooldown_ms;
    out->retry_in_ms =
        e->state == BREAKER_OPEN && e->open_until_ms > now_ms ? e->open_until_ms - now_ms : 0;
    out->transitions = e->transitions;
    out->configured = e->configured;
}

static void brk_move(struct breaker_entry *e, enum breaker_state to, struct breaker_change *chg)
{
    if (chg) {
        chg->from = e->state;
        chg->to = to;
    }
    if (e->state != to)
        e->transitions++;
    e->state = to;
}

void breaker_configure(struct breaker *b, const struct config *cfg)
{
    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; i < b->n; i++)
        b->e[i].configured = false;
    for (size_t i = 0; cfg && i < cfg->ncredentials; i++) {
        const struct config_credential *c = &cfg->credentials[i];
        if (!c->name || strlen(c->name) > BREAKER_MAX_NAME)
            continue;
        struct breaker_entry *e = brk_find(b, c->name);
        if (!e) {
            /* Make room by forgetting a removed credential that is closed. */
            if (b->n == BREAKER_MAX_ENTRIES) {
                for (size_t j = 0; j < b->n; j++) {
                    if (!b->e[j].configured && b->e[j].state == BREAKER_CLOSED) {
                        b->e[j] = b->e[--b->n];
                        break;
                    }
                }
            }
            if (b->n == BREAKER_MAX_ENTRIES)
                continue;
            e = &b->e[b->n++];
            memset(e, 0, sizeof(*e));
            util_copy(e->name, sizeof(e->name), c->name);
            e->cooldown_ms = BREAKER_COOLDOWN_MS;
        }
        e->configured = true;
        e->order = i;
        e->reject_after = c->reject_after ? c->reject_after : CONFIG_DEFAULT_REJECT_AFTER;
        util_copy(e->email, sizeof(e->email), c->email);
    }
    pthread_mutex_unlock(&b->mu);
}

enum breaker_verdict breaker_admit(struct breaker *b, const char *cred, int64_t now_ms,
                                   struct breaker_info *info, struct breaker_change *chg)
{
    enum breaker_verdict v = BREAKER_PASS;

    if (chg)
        chg->from = chg->to = BREAKER_CLOSED;
    pthread_mutex_lock(&b->mu);
    struct breaker_entry *e = cred ? brk_find(b, cred) : NULL;
    if (!e || e->state == BREAKER_CLOSED) {
        v = BREAKER_PASS;
    } else if (e->state == BREAKER_OPEN && now_ms >= e->open_until_ms) {
        brk_move(e, BREAKER_PROBING, chg);
        e->probe_started_ms = now_ms;
        v = BREAKER_PROBE;
    } else if (e->state == BREAKER_PROBING &&
               now_ms - e->probe_started_ms >= BREAKER_PROBE_TIMEOUT_MS) {
        /* The last probe never reported back: let another one go. */
        e->probe_started_ms = now_ms;
        if (chg)
            chg->from = chg->to = BREAKER_PROBING;
        v = BREAKER_PROBE;
    } else {
        if (chg)
            chg->from = chg->to = e->state;
        v = BREAKER_HOLD;
    }
    if (e)
        brk_info(e, now_ms, info);
    pthread_mutex_unlock(&b->mu);
    return v;
}

static void brk_open(struct breaker_entry *e, int64_t now_ms, struct breaker_change *chg)
{
    brk_move(e, BREAKER_OPEN, chg);
    e->open_until_ms = now_ms + e->cooldown_ms;
}

bool breaker_report(struct breaker *b, const char *cred, bool probe, enum breaker_outcome outcome,
                    const char *said, int64_t now_ms, struct breaker_info *info,
                    struct breaker_change *chg)
{
    bool changed = false;
    struct breaker_change local;

    if (!chg)
        chg = &local;
    chg->from = chg->to = BREAKER_CLOSED;
    if (!cred)
        return false;
    pthread_mutex_lock(&b->mu);
    struct breaker_entry *e = brk_find(b, cred);
    if (!e) {
        pthread_mutex_unlock(&b->mu);
        return false;
    }
    enum breaker_state before = e->state;
    chg->from = chg->to = before;
    bool failed = outcome == BREAKER_OUTCOME_AUTH_FAILED || outcome == BREAKER_OUTCOME_CAPTCHA;
    if (failed && said)
        util_copy(e->said, sizeof(e->said), said);

    switch (outcome) {
    case BREAKER_OUTCOME_OK:
        /* Any accepted request proves the credential works, probe or not. */
        e->failures = 0;
        e->captcha = false;
        if (before != BREAKER_CLOSED) {
            brk_move(e, BREAKER_CLOSED, chg);
            e->cooldown_ms = BREAKER_COOLDOWN_MS;
            e->said[0] = '\0';
        }
        break;
    case BREAKER_OUTCOME_AUTH_FAILED:
    case BREAKER_OUTCOME_CAPTCHA:
        e->captcha = outcome == BREAKER_OUTCOME_CAPTCHA;
        if (before == BREAKER_CLOSED) {
            e->failures++;
            if (e->captcha || e->failures >= e->reject_after) {
                e->cooldown_ms = BREAKER_COOLDOWN_MS;
                brk_open(e, now_ms, chg);
            }
        } else if (before == BREAKER_PROBING && probe) {
            e->failures++;
            e->cooldown_ms *= 2;
            if (e->cooldown_ms > BREAKER_MAX_COOLDOWN_MS)
                e->cooldown_ms = BREAKER_MAX_COOLDOWN_MS;
            brk_open(e, now_ms, chg);
        } else if (e->captcha && before == BREAKER_OPEN) {
            /* A straggler that met a CAPTCHA: keep holding, and say so. */
            e->failures++;
        }
        /* Stragglers sent before it opened do not extend the cooldown. */
        break;
    case BREAKER_OUTCOME_NEUTRAL:
        if (before == BREAKER_PROBING && probe)
            brk_open(e, now_ms, chg); /* no verdict: try again after the same cooldown */
        break;
    }
    changed = e->state != before;
    brk_info(e, now_ms, info);
    pthread_mutex_unlock(&b->mu);
    return changed;
}

bool breaker_reset(struct breaker *b, const char *cred, int64_t now_ms)
{
    bool was_open = false;
    (void)now_ms;
    pthread_mutex_lock(&b->mu);
    struct breaker_entry *e = cred ? brk_find(b, cred) : NULL;
    if (e) {
        was_open = e->state != BREAKER_CLOSED;
        brk_move(e, BREAKER_CLOSED, NULL);
        e->failures = 0;
        e->captcha = false;
        e->cooldown_ms = BREAKER_COOLDOWN_MS;
        e->said[0] = '\0';
    }
    pthread_mutex_unlock(&b->mu);
    return was_open;
}

size_t breaker_snapshot(struct breaker *b, int64_t now_ms, struct breaker_info *out, size_t cap)
{
    size_t k = 0;
    pthread_mutex_lock(&b->mu);
    /* Configured credentials in config order, then the rest. */
    for (size_t want = 0; want < CONFIG_MAX_CREDENTIALS && k < cap; want++) {
        for (size_t i = 0; i < b->n; i++) {
            if (b->e[i].configured && b->e[i].order == want && k < cap)
                brk_info(&b->e[i], now_ms, &out[k++]);
        }
    }
    for (size_t i = 0; i < b->n && k < cap; i++) {
        if (!b->e[i].configured)
            brk_info(&b->e[i], now_ms, &out[k++]);
    }
    pthread_mutex_unlock(&b->mu);
    return k;
}

static bool brk_has(const char *v, const char *word)
{
    size_t n = strlen(word);
    size_t len = v ? strlen(v) : 0;
    for (size_t i = 0; i + n <= len; i++) {
        if (util_memcaseeq(v + i, word, n))
            return true;
    }
    return false;
}

enum breaker_outcome breaker_classify(int status, const char *seraph, const char *denied)
{
    if (brk_has(seraph, "AUTHENTICATION_DENIED") || brk_has(denied, "CAPTCHA"))
        return BREAKER_OUTCOME_CAPTCHA;
    if (status == 401 || brk_has(seraph, "AUTHENTICATED_FAILED"))
        return BREAKER_OUTCOME_AUTH_FAILED;
    if (status == 429 || status >= 500 || status < 100)
        return BREAKER_OUTCOME_NEUTRAL;
    return BREAKER_OUTCOME_OK;
}

const char *breaker_state_name(enum breaker_state s)
{
    switch (s) {
    case BREAKER_OPEN:
        return "rejected";
    case BREAKER_PROBING:
        return "probing";
    case BREAKER_CLOSED:
    default:
        return "ok";
    }
}
