/*
 * tokensched: when to mint an OAuth access token for one oauth_client
 * credential. A token is renewed once TOKENSCHED_REFRESH_PERCENT of its
 * lifetime has passed (a 60-minute token after 48 minutes, a 4 s test token
 * after 3.2 s), one fetch at a time, with doubling backoff after failures.
 * Also reads the token endpoint's JSON answer.
 *
 * Layer 2, pure: time is passed in, no I/O, no locks (the caller, tokens.c,
 * serializes). The parse function handles the access token (a secret): it
 * copies it into the caller's buffer only, and never into a message.
 */
#ifndef CREDPROXY_TOKENSCHED_H
#define CREDPROXY_TOKENSCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TOKENSCHED_REFRESH_PERCENT 80
#define TOKENSCHED_BACKOFF_MIN_MS 1000
#define TOKENSCHED_BACKOFF_MAX_MS 60000
/* A token is not handed out in its last moments (clock skew, time in flight): 1 s, or a tenth. */
#define TOKENSCHED_EXPIRY_MARGIN_MS 1000
/* expires_in outside this range is refused (seconds). */
#define TOKENSCHED_MIN_LIFETIME_S 1
#define TOKENSCHED_MAX_LIFETIME_S (7 * 24 * 3600)
/* Longest access token accepted (Atlassian's are JWTs of a few KB). */
#define TOKENSCHED_MAX_TOKEN 8192

struct tokensched {
    bool have;           /* a token was minted */
    bool inflight;       /* a fetch is running: no second one */
    int64_t obtained_ms; /* when the current token arrived */
    int64_t refresh_ms;  /* start the next fetch at this time */
    int64_t expires_ms;  /* the current token is useless from this time */
    int64_t next_try_ms; /* after a failure: not before this time */
    int64_t backoff_ms;  /* the wait after the next failure */
    unsigned failures;   /* consecutive failed fetches */
};

void tokensched_init(struct tokensched *t);

/*
 * True when a fetch should start now (no token, or refresh time reached, or
 * invalidated; not while one runs; not before the backoff ends). A true
 * answer marks the fetch as running: the caller must report success or
 * failure exactly once.
 */
bool tokensched_begin(struct tokensched *t, int64_t now_ms);
/* The fetch gave a token valid for expires_in_s seconds. */
void tokensched_success(struct tokensched *t, int64_t now_ms, int64_t expires_in_s);
/* The fetch failed: retry after the backoff (doubling, TOKENSCHED_BACKOFF_MIN_MS..MAX_MS). */
void tokensched_failure(struct tokensched *t, int64_t now_ms);
/* Atlassian refused the current token: fetch a new one as soon as allowed. */
void tokensched_invalidate(struct tokensched *t, int64_t now_ms);

/* True while the current token may be sent. */
bool tokensched_usable(const struct tokensched *t, int64_t now_ms);
/* Ms until tokensched_begin would say yes (0: now); -1 while a fetch runs. */
int64_t tokensched_due_in(const struct tokensched *t, int64_t now_ms);

/*
 * Read {"access_token": "...", "expires_in": N, ...}. Returns 0 with the
 * token in tok (NUL-terminated; only visible ASCII, no spaces, at most
 * TOKENSCHED_MAX_TOKEN bytes) and *expires_in_s; -1 with a reason in why
 * (never containing the token) otherwise. expires_in missing: 3600.
 */
int tokensched_parse(const char *body, char *tok, size_t tcap, int64_t *expires_in_s, char *why,
                     size_t wcap);

#endif
