/*
 * breaker: holds back a credential Atlassian keeps rejecting, so a wrong
 * or revoked token cannot lock the shared account behind a CAPTCHA.
 *
 * Per credential: CLOSED (in use) -> OPEN after reject_after consecutive
 * authentication failures, or at once on a CAPTCHA signal -> after a
 * cooldown (BREAKER_COOLDOWN_MS, doubling up to BREAKER_MAX_COOLDOWN_MS)
 * one request goes through as a probe (PROBING) -> CLOSED on its success,
 * OPEN again on its failure. A reload with a changed secret or a newly
 * minted OAuth token closes it (breaker_reset).
 *
 * Layer 2: no I/O, no event loop, no logging; time is passed in. One mutex
 * makes it safe to share between every worker and the control loop; state
 * is kept by credential name, so it survives reloads the way the rate
 * limiter's buckets do. Holds names, an email (for the CAPTCHA advice) and
 * what Atlassian answered (status and X-Seraph-LoginReason), never a secret.
 */
#ifndef CREDPROXY_BREAKER_H
#define CREDPROXY_BREAKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define BREAKER_COOLDOWN_MS 60000
#define BREAKER_MAX_COOLDOWN_MS (15 * 60 * 1000)
/* A probe that never reports back (its client left, the exchange hung) frees the slot after this.
 */
#define BREAKER_PROBE_TIMEOUT_MS 120000
/* Credentials tracked at most: every configured one plus some that a reload removed. */
#define BREAKER_MAX_ENTRIES (2 * CONFIG_MAX_CREDENTIALS)
#define BREAKER_MAX_NAME 80
#define BREAKER_MAX_EMAIL 320
#define BREAKER_MAX_SAID 160 /* "401, X-Seraph-LoginReason: AUTHENTICATED_FAILED" */

enum breaker_state { BREAKER_CLOSED = 0, BREAKER_OPEN, BREAKER_PROBING };

/* What one upstream answer says about the credential. */
enum breaker_outcome {
    BREAKER_OUTCOME_OK = 0,      /* Atlassian accepted it */
    BREAKER_OUTCOME_AUTH_FAILED, /* 401, or a 403/200 carrying a login-failure signal */
    BREAKER_OUTCOME_CAPTCHA,     /* AUTHENTICATION_DENIED / CAPTCHA_CHALLENGE: opens at once */
    BREAKER_OUTCOME_NEUTRAL,     /* says nothing either way: 429, 5xx, no answer */
};

enum breaker_verdict {
    BREAKER_PASS = 0, /* closed: go ahead */
    BREAKER_PROBE,    /* open, cooldown over: this request is the probe; report its outcome */
    BREAKER_HOLD,     /* answer 503 credential_rejected */
};

struct breaker;

/* A copy of one credential's state, for the 503 body, /readyz and /metrics. */
struct breaker_info {
    char credential[BREAKER_MAX_NAME + 1];
    char email[BREAKER_MAX_EMAIL + 1]; /* "" when the credential has none */
    char said[BREAKER_MAX_SAID + 1];   /* what Atlassian answered last, "" when closed */
    enum breaker_state state;
    bool captcha;      /* the last failure was a CAPTCHA signal */
    unsigned failures; /* consecutive authentication failures */
    unsigned reject_after;
    int64_t cooldown_ms;  /* the current cooldown (doubles per failed probe) */
    int64_t retry_in_ms;  /* OPEN: until the next probe may go; else 0 */
    uint64_t transitions; /* state changes so far */
    bool configured;      /* named in the current configuration */
};

/* What a call changed: from != to when it made a transition (log it once). */
struct breaker_change {
    enum breaker_state from, to;
};

struct breaker *breaker_new(void);
/* NULL is a no-op. */
void breaker_free(struct breaker *b);

/*
 * Apply cfg (borrowed; names, emails and reject_after are copied): keep the
 * state of credentials by name, add new ones closed, forget removed ones
 * that are closed. Past BREAKER_MAX_ENTRIES a new credential is not tracked
 * (it always passes).
 */
void breaker_configure(struct breaker *b, const struct config *cfg);

/*
 * Before sending credential `cred`. PASS and PROBE go ahead (PROBE: report
 * with probe = true); HOLD fills *info for the 503. *chg (may be NULL)
 * tells whether this call moved OPEN -> PROBING. Unknown names pass.
 */
enum breaker_verdict breaker_admit(struct breaker *b, const char *cred, int64_t now_ms,
                                   struct breaker_info *info, struct breaker_change *chg);

/*
 * After an answer for `cred`: `said` (borrowed, may be NULL) is a short
 * description of Atlassian's answer. probe: this request was let through
 * by BREAKER_PROBE. Returns true when the state changed (*chg and *info,
 * either may be NULL, then describe it).
 */
bool breaker_report(struct breaker *b, const char *cred, bool probe, enum breaker_outcome outcome,
                    const char *said, int64_t now_ms, struct breaker_info *info,
                    struct breaker_change *chg);

/* Close `cred` (reload with a changed secret, a newly minted token). True when it was not closed.
 */
bool breaker_reset(struct breaker *b, const char *cred, int64_t now_ms);

/* Copy up to cap entries (configured ones first, in config order); returns how many. */
size_t breaker_snapshot(struct breaker *b, int64_t now_ms, struct breaker_info *out, size_t cap);

/*
 * Classify an upstream answer. seraph: X-Seraph-LoginReason (NULL when
 * absent); denied: X-Authentication-Denied-Reason (NULL when absent).
 * 401 -> AUTH_FAILED; AUTHENTICATION_DENIED or CAPTCHA_CHALLENGE -> CAPTCHA;
 * AUTHENTICATED_FAILED on any status (Atlassian answers anonymous-capable
 * endpoints 200 with it) -> AUTH_FAILED; 429 and 5xx -> NEUTRAL; anything
 * else -> OK.
 */
enum breaker_outcome breaker_classify(int status, const char *seraph, const char *denied);

/* "ok", "rejected", "probing": the state label of credproxy_credential_state. */
const char *breaker_state_name(enum breaker_state s);

#endif
