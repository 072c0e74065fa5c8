/*
 * envcmd: `credproxy env` and `credproxy exec`: everything an agent needs to
 * use the proxy (HTTP_PROXY, HTTPS_PROXY, NO_PROXY and CA trust for each
 * runtime), printed or applied to a child process.
 *
 * Layer 3. Writes the trust bundle (system roots + local CA) next to the CA.
 */
#ifndef CREDPROXY_ENVCMD_H
#define CREDPROXY_ENVCMD_H

#include <stdio.h>

#include "config.h"

/*
 * format: "sh", "fish" or "json". client_id (NULL = none): that client's key
 * goes into the proxy URLs; cfg must hold it (CONFIG_LOAD_NO_SECRETS with
 * opts.client_id). 0, or 2 on a bad format / unusable config / unknown
 * client (message on stderr).
 */
int envcmd_print(const struct config *cfg, const char *format, const char *client_id, FILE *out);
/*
 * Exec argv[0] with the variables set, every credential variable and every
 * other client's key variable removed; warns when nothing listens on the
 * proxy address. Returns only on failure (127, or 2 for the config; message).
 */
int envcmd_exec(const struct config *cfg, const char *client_id, char **argv);

#endif
