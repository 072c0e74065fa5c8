/*
 * tokens: what a gateway-routed credential needs besides its configured
 * secret. For each oauth_client credential, an access token minted from
 * token_url and renewed before it expires (tokensched.h decides when); for
 * each site whose credential goes through the API gateway, its cloudId
 * (from cloud_id:, else looked up once from https://SITE/_edge/tenant_info
 * and again on every reload).
 *
 * Layer 3. Fetches run on the control loop through its own struct upstream
 * (libcurl multi_socket, the same connect_to, ca_file and proxy settings as
 * every upstream request); workers only read, under one mutex, by copying.
 * One fetch in flight per credential and per site, whatever the number of
 * workers. The access token and the client secret are secrets: they are
 * copied only into the Authorization line handed to a worker and into the
 * token request's body, wiped when replaced or freed, and never logged.
 */
#ifndef CREDPROXY_TOKENS_H
#define CREDPROXY_TOKENS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct event_base;
struct breaker;
struct world;
struct tokens;

/* Bytes of a token endpoint or tenant_info answer kept; longer answers fail. */
#define TOKENS_MAX_RESPONSE (64 * 1024)
/* "Authorization: Bearer " + the longest token. */
#define TOKENS_MAX_HEADER (32 + 8192)
#define TOKENS_MAX_WHY 300
/* A request with no token (or cloudId) yet waits at most this long, re-checking every poll. */
#define TOKENS_MAX_WAIT_MS 10000
#define TOKENS_POLL_MS 50
/*
 * A 401 for a minted token re-mints at once, but at most this often: a
 * token refused for another reason (a missing scope) must not turn every
 * request into a token request.
 */
#define TOKENS_REFUSED_REMINT_MS 30000

enum tokens_state {
    TOKENS_READY = 0, /* copied out */
    TOKENS_PENDING,   /* a fetch is running or about to: wait and ask again */
    TOKENS_UNAVAILABLE,
};

/*
 * Created by main on the control loop; breaker (borrowed, may be NULL) is
 * reset when a new token is minted. Survives reloads.
 */
struct tokens *tokens_new(struct event_base *control, struct breaker *breaker);
/* Cancels fetches, wipes tokens, frees. Control loop only. NULL is a no-op. */
void tokens_free(struct tokens *t);

/*
 * Apply a world (a reference is taken; the previous one dropped): start
 * minting for new or changed oauth_client credentials (unchanged ones keep
 * their token), look up the cloudId of every gateway site without
 * cloud_id:. Control loop only.
 */
void tokens_configure(struct tokens *t, struct world *w);

/*
 * Worker side (any thread). The Authorization line for oauth_client
 * credential `cred` into buf ("Authorization: Bearer ..."); the caller
 * wipes buf after use. On UNAVAILABLE, why (may be NULL) says why.
 */
enum tokens_state tokens_auth_line(struct tokens *t, const char *cred, char *buf, size_t cap,
                                   char *why, size_t wcap);
/* The cloudId of site host:port into buf (at least CONFIG_MAX_CLOUD_ID + 1). */
enum tokens_state tokens_cloud_id(struct tokens *t, const char *host, int port, char *buf,
                                  size_t cap, char *why, size_t wcap);
/*
 * The gateway site whose known cloudId is cloud_id: its host into host and
 * its port into *port; false when none. Any thread (route_cloud_lookup_fn).
 */
bool tokens_site_for_cloud_id(void *tokens, const char *cloud_id, char *host, size_t cap,
                              int *port);
/*
 * Atlassian refused the token minted for cred (401): mint a new one now,
 * unless that was done less than TOKENS_REFUSED_REMINT_MS ago. Any thread.
 */
void tokens_refused(struct tokens *t, const char *cred);

/* /readyz: 0 when every gateway credential and site has what it needs; else -1 and why. */
int tokens_ready_reason(struct tokens *t, char *buf, size_t cap);
/* For credproxy_credential_state: cred has no usable token or a site of it no cloudId. */
bool tokens_unavailable(struct tokens *t, const char *cred);

#endif
