/*
 * cred: the secrets that get injected. Renders each credential's
 * Authorization header once, at load time, so the hot path only copies a
 * pointer; wipes every rendered byte on free.
 *
 * Layer 2, pure. Never logs, never returns a secret except through
 * cred_header(), whose result goes only into the upstream request toward
 * the credential's own mapped site.
 */
#ifndef CREDPROXY_CRED_H
#define CREDPROXY_CRED_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

struct cred;

/*
 * Render from c (borrowed; the cred keeps its own copies). Basic:
 * base64(email ":" secret); bearer: the secret. Returns NULL when c cannot
 * be rendered safely: no secret, an empty secret, a basic credential
 * without an email, or a bearer secret holding control bytes (CR/LF would
 * split the header).
 */
struct cred *cred_new(const struct config_credential *c);
/* Zeroes the rendered header, then frees. NULL is a no-op. */
void cred_free(struct cred *cr);
/*
 * Zero every secret byte the cred holds (rendered header, raw secret, base64
 * form) now, keeping the object valid: afterwards cred_header() and
 * cred_header_value() return "" and cred_appears_in() finds nothing.
 * cred_free() calls it; tests call it to observe the wipe without reading
 * freed memory. NULL is a no-op.
 */
void cred_wipe(struct cred *cr);

/* "Authorization: Basic dXNlcjp0b2tlbg==" — a complete header line for curl_slist. */
const char *cred_header(const struct cred *cr);
/* Just the value: "Basic dXNlcjp0b2tlbg==". */
const char *cred_header_value(const struct cred *cr);
const char *cred_name(const struct cred *cr);

/*
 * Scrub: returns true when buf[0..len) contains the rendered header value
 * or the raw secret of c. Used by tests and by the log self-check.
 */
int cred_appears_in(const struct cred *cr, const char *buf, size_t len);

/*
 * True for an oauth_client: cred_header() is "" and the Authorization line
 * comes from the token store (oauth.h) for each request.
 */
bool cred_is_minted(const struct cred *cr);
/*
 * True when a and b hold the same secret (and email, for basic): a reload
 * that changes it closes the breaker. Compares without an early exit.
 */
bool cred_same_secret(const struct cred *a, const struct cred *b);

#endif
