/* admin: placeholder; replaced by the real implementation. */
#include "admin.h"

#include <stdio.h>

#include "util.h"

struct admin *admin_start(struct event_base *base, const struct config_listen *addr,
                          const struct admin_source *src, char **err)
{
    (void)base;
    (void)addr;
    (void)src;
    *err = xstrdup("admin: not built yet");
    return NULL;
}

void admin_free(struct admin *a)
{
    (void)a;
}

int admin_ready_reason(const struct config *cfg, int64_t now, char *buf, size_t cap)
{
    (void)cfg;
    (void)now;
    snprintf(buf, cap, "ok");
    return 0;
}

int admin_healthcheck(const struct config *cfg)
{
    (void)cfg;
    return 1;
}
