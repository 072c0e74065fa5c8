/*
 * mitm: the local interception CA. Creates it (`ca init`: a name-constrained
 * root and intermediate), loads it once at start (the key stays in memory
 * only), and mints short-lived leaf certificates for exact mapped host names,
 * cached as ready SSL_CTXs in a bounded LRU.
 *
 * Layer 3. Shared by all workers (the LRU is behind a mutex; minting happens
 * outside it). Never mints for a name that is not a mapped site, never a
 * wildcard, never writes a key anywhere but `ca init`'s own files, never puts
 * key bytes in a message.
 */
#ifndef CREDPROXY_MITM_H
#define CREDPROXY_MITM_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <openssl/ssl.h>

#include "config.h"

#define MITM_LRU_MAX 256
#define MITM_LEAF_DAYS 7
#define MITM_ROOT_DAYS 3650              /* the root agents trust: ~10 years */
#define MITM_INTERMEDIATE_DAYS 730       /* the signer whose key sits on disk: 2 years */
#define MITM_CLOCK_SKEW_SECS 3600        /* every notBefore is this far in the past */
#define MITM_LEAF_RENEW_SECS 86400       /* a cached leaf this close to expiry is re-minted */
#define MITM_MAX_FILE_BYTES (256 * 1024) /* ca.pem / ca.key larger than this are refused */
#define MITM_MAX_CHAIN_CERTS 8           /* certificates read from ca.pem at most */

struct mitm;

/*
 * Load cfg->interception.ca_cert/ca_key. Returns NULL with *err == NULL when
 * neither file exists (interception off); NULL with *err set on a real error
 * (unreadable, mismatched key, key file readable by others, expired CA). A CA
 * whose name constraints do not cover every configured site is loaded, and
 * *warning says which sites it cannot serve (free with free()); those sites
 * get no leaf (mitm_ctx_for_host returns NULL). cfg is only borrowed: the
 * mapped host names are copied.
 */
struct mitm *mitm_load(const struct config *cfg, char **err, char **warning);
void mitm_free(struct mitm *m);

/*
 * A server SSL_CTX presenting a leaf for `host` (already normalized, a
 * mapped site's host) with the chain, ALPN http/1.1. The caller owns one
 * reference (SSL_CTX_free when done). NULL on failure, or when host is not
 * a mapped site covered by the CA, or is a wildcard, an IP or not a DNS name.
 *
 * The context is shared with other connections and threads: create SSLs
 * from it, never change it. Its handshake refuses (fatal alert
 * unrecognized_name) a ClientHello whose SNI is absent or is not `host`.
 */
SSL_CTX *mitm_ctx_for_host(struct mitm *m, const char *host);

/* Contexts currently cached (never more than MITM_LRU_MAX); for tests and metrics. */
size_t mitm_cache_size(struct mitm *m);

/*
 * `credproxy ca init`: write DIR/ca.pem (0644: root then intermediate) and
 * DIR/ca.key (0600: the intermediate's key, which signs leaves) atomically,
 * constrained to cfg's sites. Returns 0 created, 1 exists (without force),
 * -1 error with *err. *err is also set (the reason) when 1 is returned.
 */
int mitm_ca_init(const struct config *cfg, const char *dir, bool force, char **err);

#endif
