/*
 * clientauth: which local agent is asking. Clients present
 * Proxy-Authorization: Basic base64(id:key); keys are compared in constant
 * time. Never logs or returns a key.
 *
 * Layer 2, pure.
 */
#ifndef CREDPROXY_CLIENTAUTH_H
#define CREDPROXY_CLIENTAUTH_H

#include <stddef.h>

#include "config.h"

/* Longest Proxy-Authorization value looked at; longer ones are CLIENTAUTH_BAD. */
#define CLIENTAUTH_MAX_VALUE_LEN 4096

enum clientauth_result {
    CLIENTAUTH_NONE = 0, /* no Proxy-Authorization presented */
    CLIENTAUTH_OK,       /* *client set */
    CLIENTAUTH_BAD,      /* presented but malformed, unknown id or wrong key */
};

/*
 * Check a Proxy-Authorization header value of LEN bytes (NULL/0 = absent)
 * against cfg->clients (borrowed). On CLIENTAUTH_OK *client points into cfg;
 * otherwise *client is NULL. The scheme is matched case-insensitively
 * ("Basic", "basic"); the id is everything before the first ':' of the
 * decoded credentials, the key everything after it. An empty id or key, a
 * value without a colon, bad base64, another scheme or a value over
 * CLIENTAUTH_MAX_VALUE_LEN bytes is CLIENTAUTH_BAD. The decoded key is wiped
 * before return; no copy of it survives the call.
 */
enum clientauth_result clientauth_check(const struct config *cfg, const char *value, size_t len,
                                        const struct config_client **client);

/* "uid:1000" style identity for an anonymous unix-socket peer; writes into buf. */
void clientauth_peer_uid_id(unsigned uid, char *buf, size_t cap);

#endif
