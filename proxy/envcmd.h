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

/* format: "sh", "fish" or "json". 0, or 2 on a bad format / unusable config (message on stderr). */
int envcmd_print(const struct config *cfg, const char *format, FILE *out);
/* Exec argv[0] with the variables set; returns only on failure (127 with a message). */
int envcmd_exec(const struct config *cfg, char **argv);

#endif
