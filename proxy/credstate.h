/*
 * credstate: the words around a credential's health. What the 503
 * credential_rejected says (which credential, what Atlassian answered, what
 * to do), the one log line per breaker transition, the /readyz reason and
 * the credproxy_credential_state metric lines.
 *
 * Layer 3 (logs; writes into caller buffers and evbuffers). Built from
 * breaker_info and oauth status only: names, an email, status codes and
 * Atlassian's login-reason header; never a token, secret or header value
 * of the request.
 */
#ifndef CREDPROXY_CREDSTATE_H
#define CREDPROXY_CREDSTATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "breaker.h"

struct evbuffer;

#define CREDSTATE_MAX_MESSAGE 900
#define CREDSTATE_MAX_FIELDS 1200
#define CREDSTATE_MAX_HEADERS 64
#define CREDSTATE_MAX_REASON 512
#define CREDSTATE_MAX_VALUE 96 /* a login-reason header longer than this is cut */
/* Credential states rendered at most (every configured credential fits). */
#define CREDSTATE_MAX_CREDENTIALS BREAKER_MAX_ENTRIES

/*
 * "401 Unauthorized, X-Seraph-LoginReason: AUTHENTICATED_FAILED" into out.
 * seraph/denied (each NULL when absent) are cut at CREDSTATE_MAX_VALUE and
 * reduced to printable ASCII.
 */
void credstate_said(int status, const char *seraph, size_t seraph_len, const char *denied,
                    size_t denied_len, char *out, size_t cap);

/*
 * The 503 credential_rejected for info: message (a sentence), fields (a
 * JSON fragment ", \"credential\": ..." for errors_write_json) and
 * extra_headers ("Retry-After: N\r\n"). Buffers of the CREDSTATE_MAX_* sizes.
 */
void credstate_rejected_reply(const struct breaker_info *info, char *message, size_t mcap,
                              char *fields, size_t fcap, char *headers, size_t hcap);

/* One line per transition: error when it opens, info when it probes or closes. */
void credstate_log_change(const struct breaker_info *info, const struct breaker_change *chg,
                          const char *why);

/* /readyz: 0 when no configured credential is held back; else -1 and a reason in buf. */
int credstate_ready_reason(struct breaker *b, int64_t now_ms, char *buf, size_t cap);

/*
 * credproxy_credential_state{credential,state} (1 for the state it is in, 0
 * for the others) and credproxy_credential_transitions_total{credential}.
 * unavailable(name) (may be NULL) says whether a credential has no usable
 * token now (oauth minting failing, cloudId unknown): state="unavailable".
 */
void credstate_render_metrics(struct breaker *b, int64_t now_ms,
                              bool (*unavailable)(void *arg, const char *name), void *arg,
                              struct evbuffer *out);

#endif
