/* tokensched: see tokensched.h. */
#include "tokensched.h"

#include <stdio.h>
#include <string.h>

#include "util.h"

void tokensched_init(struct tokensched *t)
{
    memset(t, 0, sizeof(*t));
    t->backoff_ms = TOKENSCHED_BACKOFF_MIN_MS;
}

static int64_t ts_margin(const struct tokensched *t)
{
    int64_t tenth = (t->expires_ms - t->obtained_ms) / 10;
    return tenth < TOKENSCHED_EXPIRY_MARGIN_MS ? tenth : TOKENSCHED_EXPIRY_MARGIN_MS;
}

bool tokensched_usable(const struct tokensched *t, int64_t now_ms)
{
    return t->have && now_ms < t->expires_ms - ts_margin(t);
}

int64_t tokensched_due_in(const struct tokensched *t, int64_t now_ms)
{
    if (t->inflight)
        return -1;
    int64_t at = t->have ? t->refresh_ms : 0;
    if (t->next_try_ms > at)
        at = t->next_try_ms;
    return at > now_ms ? at - now_ms : 0;
}

bool tokensched_begin(struct tokensched *t, int64_t now_ms)
{
    if (tokensched_due_in(t, now_ms) != 0)
        return false;
    t->inflight = true;
    return true;
}

void tokensched_success(struct tokensched *t, int64_t now_ms, int64_t expires_in_s)
{
    if (expires_in_s < TOKENSCHED_MIN_LIFETIME_S)
        expires_in_s = TOKENSCHED_MIN_LIFETIME_S;
    if (expires_in_s > TOKENSCHED_MAX_LIFETIME_S)
        expires_in_s = TOKENSCHED_MAX_LIFETIME_S;
    int64_t life = expires_in_s * 1000;
    t->inflight = false;
    t->have = true;
    t->obtained_ms = now_ms;
    t->expires_ms = now_ms + life;
    t->refresh_ms = now_ms + life * TOKENSCHED_REFRESH_PERCENT / 100;
    t->next_try_ms = 0;
    t->failures = 0;
    t->backoff_ms = TOKENSCHED_BACKOFF_MIN_MS;
}

void tokensched_failure(struct tokensched *t, int64_t now_ms)
{
    t->inflight = false;
    t->failures++;
    t->next_try_ms = now_ms + t->backoff_ms;
    t->backoff_ms *= 2;
    if (t->backoff_ms > TOKENSCHED_BACKOFF_MAX_MS)
        t->backoff_ms = TOKENSCHED_BACKOFF_MAX_MS;
}

void tokensched_invalidate(struct tokensched *t, int64_t now_ms)
{
    if (t->have && t->refresh_ms > now_ms)
        t->refresh_ms = now_ms;
    if (t->have)
        t->expires_ms = now_ms; /* not usable any more: requests wait for the new one */
}

/* The value after "key": (skipping blanks), or NULL. Not a JSON parser: flat objects only. */
static const char *ts_member(const char *body, const char *key)
{
    size_t klen = strlen(key);
    for (const char *p = body; (p = strchr(p, '"')) != NULL; p++) {
        if (strncmp(p + 1, key, klen) != 0 || p[1 + klen] != '"')
            continue;
        const char *q = p + 2 + klen;
        while (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n')
            q++;
        if (*q != ':')
            continue;
        q++;
        while (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n')
            q++;
        return q;
    }
    return NULL;
}

int tokensched_parse(const char *body, char *tok, size_t tcap, int64_t *expires_in_s, char *why,
                     size_t wcap)
{
    const char *v = body ? ts_member(body, "access_token") : NULL;
    size_t n = 0;

    if (tcap)
        tok[0] = '\0';
    if (!v || *v != '"') {
        snprintf(why, wcap, "the answer has no access_token");
        return -1;
    }
    for (v++; *v && *v != '"'; v++) {
        unsigned char ch = (unsigned char)*v;
        if (ch <= 0x20 || ch >= 0x7f || ch == '\\') {
            snprintf(why, wcap, "the access_token holds characters a header cannot carry");
            goto fail;
        }
        if (n + 1 >= tcap || n >= TOKENSCHED_MAX_TOKEN) {
            snprintf(why, wcap, "the access_token is longer than %d bytes", TOKENSCHED_MAX_TOKEN);
            goto fail;
        }
        tok[n++] = (char)ch;
    }
    if (*v != '"' || n == 0) {
        snprintf(why, wcap, "the access_token is empty or cut off");
        goto fail;
    }
    tok[n] = '\0';
    *expires_in_s = 3600;
    const char *e = ts_member(body, "expires_in");
    if (e) {
        int64_t x = 0;
        int digits = 0;
        if (*e == '"')
            e++;
        for (; *e >= '0' && *e <= '9' && digits < 10; e++, digits++)
            x = x * 10 + (*e - '0');
        if (digits == 0 || digits == 10 || x < TOKENSCHED_MIN_LIFETIME_S ||
            x > TOKENSCHED_MAX_LIFETIME_S) {
            snprintf(why, wcap, "expires_in is not a lifetime in seconds");
            goto fail;
        }
        *expires_in_s = x;
    }
    return 0;
fail:
    util_secure_zero(tok, tcap);
    return -1;
}
