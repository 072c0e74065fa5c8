/* mitm: placeholder; replaced by the real implementation. */
#include "mitm.h"

#include "util.h"

struct mitm *mitm_load(const struct config *cfg, char **err, char **warning)
{
    (void)cfg;
    *err = NULL;
    *warning = NULL;
    return NULL;
}

void mitm_free(struct mitm *m)
{
    (void)m;
}

SSL_CTX *mitm_ctx_for_host(struct mitm *m, const char *host)
{
    (void)m;
    (void)host;
    return NULL;
}

int mitm_ca_init(const struct config *cfg, const char *dir, bool force, char **err)
{
    (void)cfg;
    (void)dir;
    (void)force;
    *err = xstrdup("ca init: not built yet");
    return -1;
}
