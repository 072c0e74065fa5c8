/*
 * check: `credproxy check`. For every site, with its credential: resolve,
 * connect, TLS, then GET /rest/api/3/myself and /wiki/rest/api/user/current,
 * and explain each failure in the setup guide's words.
 *
 * Layer 3 (libcurl easy/multi, blocking is fine: it is a command, not the
 * daemon). Never prints a secret.
 */
#ifndef CREDPROXY_CHECK_H
#define CREDPROXY_CHECK_H

#include <stdbool.h>
#include <stdio.h>

#include "config.h"

/* Prints one line (or one JSON object with json) per site and product to out. 0 all ok, 1 any failed. */
int check_run(const struct config *cfg, bool json, FILE *out);

#endif
