/* world: see world.h. */
#include "world.h"

#include <stdlib.h>

#include "cred.h"
#include "hostmap.h"
#include "mitm.h"
#include "util.h"

struct world *world_new(struct config *cfg, char **err, char **warning)
{
    struct world *w;
    char *merr = NULL;

    *err = NULL;
    *warning = NULL;
    w = xcalloc(1, sizeof(*w));
    atomic_init(&w->refs, 1);
    w->cfg = cfg;
    w->mitm = mitm_load(cfg, &merr, warning);
    if (!w->mitm && merr) {
        *err = merr;
        world_unref(w);
        return NULL;
    }
    w->map = hostmap_new(cfg);
    w->creds = xcalloc(cfg->ncredentials ? cfg->ncredentials : 1, sizeof(*w->creds));
    for (size_t i = 0; i < cfg->ncredentials; i++)
        w->creds[i] = cred_new(&cfg->credentials[i]);
    w->sites = xcalloc(cfg->nsites ? cfg->nsites : 1, sizeof(*w->sites));
    for (size_t i = 0; i < cfg->nsites; i++) {
        const struct config_site *s = &cfg->sites[i];
        if (s->port == 443) {
            w->sites[i].host_header = xstrdup(s->host);
            w->sites[i].origin = xasprintf("https://%s", s->host);
        } else {
            w->sites[i].host_header = xasprintf("%s:%d", s->host, s->port);
            w->sites[i].origin = xasprintf("https://%s:%d", s->host, s->port);
        }
    }
    return w;
}

struct world *world_ref(struct world *w)
{
    atomic_fetch_add(&w->refs, 1);
    return w;
}

void world_unref(struct world *w)
{
    if (!w || atomic_fetch_sub(&w->refs, 1) != 1)
        return;
    if (w->creds) {
        for (size_t i = 0; i < w->cfg->ncredentials; i++)
            cred_free(w->creds[i]);
        free(w->creds);
    }
    if (w->sites) {
        for (size_t i = 0; i < w->cfg->nsites; i++) {
            free(w->sites[i].host_header);
            free(w->sites[i].origin);
        }
        free(w->sites);
    }
    hostmap_free(w->map);
    mitm_free(w->mitm);
    config_free(w->cfg);
    free(w);
}

size_t world_site_index(const struct world *w, const struct config_site *site)
{
    return (size_t)(site - w->cfg->sites);
}

const struct cred *world_site_cred(const struct world *w, const struct config_site *site)
{
    return w->creds[site->credential];
}
