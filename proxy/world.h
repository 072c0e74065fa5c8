/*
 * world: everything derived from one configuration (the host map, one
 * rendered credential per config credential, the interception CA, per-site
 * strings), refcounted so a SIGHUP reload can swap in a new world while
 * in-flight requests finish with the one they started with.
 *
 * Layer 4. Immutable after world_new, so any thread may read it while it
 * holds a reference. Never logs a secret (it holds them: see cred.h).
 */
#ifndef CREDPROXY_WORLD_H
#define CREDPROXY_WORLD_H

#include <stdatomic.h>
#include <stddef.h>

#include "config.h"

struct hostmap;
struct cred;
struct mitm;

struct world_site {
    char *host_header; /* "acme.atlassian.net" or "host:8443" (port when not 443) */
    char *origin;      /* "https://acme.atlassian.net[:port]": upstream URL prefix, rewrite FROM */
};

struct world {
    atomic_int refs;
    struct config *cfg;       /* owned */
    struct hostmap *map;      /* borrows cfg */
    struct cred **creds;      /* cfg->ncredentials entries, same order */
    struct world_site *sites; /* cfg->nsites entries, same order */
    struct mitm *mitm;        /* NULL = interception off */
};

/*
 * Build from cfg, which is consumed (even on failure). Returns a world with
 * one reference, or NULL with *err (free()) when the interception CA exists
 * but cannot be loaded. *warning (free()) names sites the CA cannot serve.
 */
struct world *world_new(struct config *cfg, char **err, char **warning);
/* Take another reference. Thread-safe. */
struct world *world_ref(struct world *w);
/* Drop a reference; the last one frees everything (secrets wiped). NULL is a no-op. */
void world_unref(struct world *w);

/* Index helpers: site/credential pointers always point into w->cfg. */
size_t world_site_index(const struct world *w, const struct config_site *site);
const struct cred *world_site_cred(const struct world *w, const struct config_site *site);

#endif
