/* credstate: see credstate.h. */
#include "credstate.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "http1.h"
#include "log.h"
#include "util.h"

/* Bounded formatting: cutting a long name in a message is fine. */
static void cs_bprintf(char *buf, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void cs_bprintf(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (vsnprintf(buf, cap, fmt, ap) < 0 && cap)
        buf[0] = '\0';
    va_end(ap);
}

/* Copy a header value for a message: printable ASCII only, cut at CREDSTATE_MAX_VALUE. */
static void cs_clean(const char *v, size_t len, char *out, size_t cap)
{
    size_t k = 0;
    if (len > CREDSTATE_MAX_VALUE)
        len = CREDSTATE_MAX_VALUE;
    for (size_t i = 0; i < len && k + 1 < cap; i++) {
        unsigned char ch = (unsigned char)v[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\')
            out[k++] = (char)ch;
    }
    out[k] = '\0';
}

void credstate_said(int status, const char *seraph, size_t seraph_len, const char *denied,
                    size_t denied_len, char *out, size_t cap)
{
    char s[CREDSTATE_MAX_VALUE + 1] = "", d[CREDSTATE_MAX_VALUE + 1] = "";
    if (seraph)
        cs_clean(seraph, seraph_len, s, sizeof(s));
    if (denied)
        cs_clean(denied, denied_len, d, sizeof(d));
    cs_bprintf(out, cap, "%d %s%s%s%s%s", status, http1_reason(status),
               *s ? ", X-Seraph-LoginReason: " : "", s,
               *d ? ", X-Authentication-Denied-Reason: " : "", d);
}

static int64_t cs_seconds(int64_t ms)
{
    return ms <= 0 ? 0 : (ms + 999) / 1000;
}

void credstate_rejected_reply(const struct breaker_info *info, char *message, size_t mcap,
                              char *fields, size_t fcap, char *headers, size_t hcap)
{
    char fix[400], jcred[2 * BREAKER_MAX_NAME + 8], jsaid[6 * BREAKER_MAX_SAID + 8],
        jfix[6 * sizeof(fix) + 8];
    int64_t retry = cs_seconds(info->retry_in_ms);

    if (info->captcha)
        cs_bprintf(fix, sizeof(fix),
                   "Atlassian now asks for a CAPTCHA: log in once in a browser as %s, then reload "
                   "credproxy (SIGHUP); `credproxy check` tells when the credential works again",
                   *info->email ? info->email : "the credential's account");
    else
        cs_bprintf(fix, sizeof(fix),
                   "run `credproxy check`; if the token was rotated, expired or revoked, create a "
                   "new API token at Atlassian, put it where credential %s reads it, and reload "
                   "credproxy (SIGHUP)",
                   info->credential);
    cs_bprintf(message, mcap,
               "credential %s was rejected by Atlassian (%s)%s; credproxy holds it back so the "
               "account is not locked, and tries it once more in %" PRId64 " s. Fix: %s",
               info->credential, *info->said ? info->said : "authentication failed",
               info->captcha ? "" : " several times in a row", retry, fix);
    log_json_escape(jcred, sizeof(jcred), info->credential);
    log_json_escape(jsaid, sizeof(jsaid), info->said);
    log_json_escape(jfix, sizeof(jfix), fix);
    cs_bprintf(fields, fcap,
               ", \"credential\": %s, \"atlassian_said\": %s, \"captcha\": %s, \"fix\": %s, "
               "\"retry_after_seconds\": %" PRId64,
               jcred, jsaid, info->captcha ? "true" : "false", jfix, retry);
    cs_bprintf(headers, hcap, "Retry-After: %" PRId64 "\r\n", retry < 1 ? (int64_t)1 : retry);
}

void credstate_log_change(const struct breaker_info *info, const struct breaker_change *chg,
                          const char *why)
{
    if (chg->from == chg->to)
        return;
    if (chg->to == BREAKER_OPEN && info->captcha) {
        log_error("credential %s: Atlassian demands a CAPTCHA (%s); holding the credential back "
                  "(503 credential_rejected) so it is not locked further. Log in once in a "
                  "browser as %s, then reload (SIGHUP); a probe goes through in %" PRId64 " s",
                  info->credential, info->said, *info->email ? info->email : "its account",
                  cs_seconds(info->retry_in_ms));
    } else if (chg->to == BREAKER_OPEN) {
        log_error("credential %s: rejected by Atlassian %u time%s in a row (%s); holding it back "
                  "(503 credential_rejected). Run `credproxy check`, rotate the token, reload "
                  "(SIGHUP); a probe goes through in %" PRId64 " s",
                  info->credential, info->failures, info->failures == 1 ? "" : "s", info->said,
                  cs_seconds(info->retry_in_ms));
    } else if (chg->to == BREAKER_PROBING) {
        log_info("credential %s: cooldown over, letting one probe request through",
                 info->credential);
    } else {
        log_info("credential %s: accepted again (%s); sending it again", info->credential,
                 why ? why : "a request succeeded");
    }
}

int credstate_ready_reason(struct breaker *b, int64_t now_ms, char *buf, size_t cap)
{
    struct breaker_info *info = xcalloc(CREDSTATE_MAX_CREDENTIALS, sizeof(*info));
    size_t n = b ? breaker_snapshot(b, now_ms, info, CREDSTATE_MAX_CREDENTIALS) : 0;
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        if (!info[i].configured || info[i].state == BREAKER_CLOSED)
            continue;
        if (info[i].captcha)
            cs_bprintf(buf, cap,
                       "credential %s rejected: Atlassian demands a CAPTCHA (%s); log in once in a "
                       "browser as %s, then reload",
                       info[i].credential, info[i].said,
                       *info[i].email ? info[i].email : "its account");
        else
            cs_bprintf(buf, cap,
                       "credential %s rejected by Atlassian (%s); run `credproxy check`, rotate "
                       "the token, reload",
                       info[i].credential, info[i].said);
        rc = -1;
        break;
    }
    free(info);
    return rc;
}

void credstate_render_metrics(struct breaker *b, int64_t now_ms,
                              bool (*unavailable)(void *arg, const char *name), void *arg,
                              struct evbuffer *out)
{
    static const char *const states[] = {"ok", "rejected", "probing", "unavailable"};
    struct breaker_info *info = xcalloc(CREDSTATE_MAX_CREDENTIALS, sizeof(*info));
    size_t n = b ? breaker_snapshot(b, now_ms, info, CREDSTATE_MAX_CREDENTIALS) : 0;

    evbuffer_add_printf(out, "# HELP credproxy_credential_state Each credential's state: ok, "
                             "rejected (held back by the breaker), probing, unavailable (no "
                             "token yet).\n# TYPE credproxy_credential_state gauge\n");
    for (size_t i = 0; i < n; i++) {
        if (!info[i].configured)
            continue;
        const char *now = breaker_state_name(info[i].state);
        if (info[i].state == BREAKER_CLOSED && unavailable && unavailable(arg, info[i].credential))
            now = "unavailable";
        for (size_t s = 0; s < sizeof(states) / sizeof(states[0]); s++)
            evbuffer_add_printf(out,
                                "credproxy_credential_state{credential=\"%s\",state=\"%s\"} %d\n",
                                info[i].credential, states[s], strcmp(states[s], now) == 0);
    }
    evbuffer_add_printf(out,
                        "# HELP credproxy_credential_transitions_total Breaker state changes "
                        "per credential.\n# TYPE credproxy_credential_transitions_total counter\n");
    for (size_t i = 0; i < n; i++) {
        if (info[i].configured)
            evbuffer_add_printf(
                out, "credproxy_credential_transitions_total{credential=\"%s\"} %" PRIu64 "\n",
                info[i].credential, info[i].transitions);
    }
    free(info);
}
