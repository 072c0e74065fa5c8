/* clientauth: placeholder; replaced by the real implementation. */
#include "clientauth.h"

#include <stdio.h>

enum clientauth_result clientauth_check(const struct config *cfg, const char *value, size_t len,
                                        const struct config_client **client)
{
    (void)cfg;
    (void)value;
    (void)len;
    *client = NULL;
    return value && len ? CLIENTAUTH_BAD : CLIENTAUTH_NONE;
}

void clientauth_peer_uid_id(unsigned uid, char *buf, size_t cap)
{
    snprintf(buf, cap, "uid:%u", uid);
}
