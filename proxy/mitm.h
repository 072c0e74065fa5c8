/*
 * mitm: the local interception CA. Creates it (`ca init`: a name-constrained
 * root and intermediate), loads it once at start (the key stays in memory
 * only), and mints short-lived leaf certificates for exact mapped host names,
 * cached as ready SSL_CTXs in a bounded LRU.
 *
 * Layer 3. Shared by all workers (the LRU is behind a mutex; minting happens
 * outside it). Never mints for a name that is not a mapped site, never a
 * wildcard, never writes a key anywhere but `ca init`'s own files.
 */
#ifndef CREDPROXY_MITM_H
#define CREDPROXY_MITM_H

#include <stdbool.h>

#include <openssl/ssl.h>

#include "config.h"

#define MITM_LRU_MAX 256
#define MITM_LEAF_DAYS 7

struct mitm;

/*
 * Load cfg->interception.ca_cert/ca_key. Returns NULL with *err == NULL when
 * neither file exists (interception off); NULL with *err set on a real error
 * (unreadable, mismatched key, key file readable by others). A CA whose
 * name constraints do not cover every configured site is loaded, and
 * *warning says which sites it cannot serve (free with free()).
 */
struct mitm *mitm_load(const struct config *cfg, char **err, char **warning);
void mitm_free(struct mitm *m);

/*
 * A server SSL_CTX presenting a leaf for `host` (already normalized, a
 * mapped site's host) with the chain, ALPN http/1.1. The caller owns one
 * reference (SSL_CTX_free when done). NULL on failure.
 */
SSL_CTX *mitm_ctx_for_host(struct mitm *m, const char *host);

/*
 * `credproxy ca init`: write DIR/ca.pem (0644: root then intermediate) and
 * DIR/ca.key (0600: the intermediate's key, which signs leaves) atomically,
 * constrained to cfg's sites. Returns 0 created, 1 exists (without force),
 * -1 error with *err.
 */
int mitm_ca_init(const struct config *cfg, const char *dir, bool force, char **err);

#endif
