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

enum clientauth_result {
    CLIENTAUTH_NONE = 0,    /* no Proxy-Authorization presented */
    CLIENTAUTH_OK,          /* *client set */
    CLIENTAUTH_BAD,         /* presented but malformed, unknown id or wrong key */
};

/*
 * Check a Proxy-Authorization header value of LEN bytes (NULL/0 = absent)
 * against cfg->clients (borrowed). On CLIENTAUTH_OK *client points into cfg.
 */
enum clientauth_result clientauth_check(const struct config *cfg, const char *value, size_t len,
                                        const struct config_client **client);

/* "uid:1000" style identity for an anonymous unix-socket peer; writes into buf. */
void clientauth_peer_uid_id(unsigned uid, char *buf, size_t cap);

#endif
