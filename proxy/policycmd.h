/*
 * policycmd: `credproxy policy explain [-c FILE] CLIENT METHOD URL [--body FILE]`.
 * Prints the class, the scope found and the verdict a request would get,
 * without contacting Atlassian and without needing any secret (the
 * configuration is loaded with CONFIG_LOAD_NO_SECRETS).
 *
 * Layer 5 (a command). Never prints a secret: none is loaded.
 */
#ifndef CREDPROXY_POLICYCMD_H
#define CREDPROXY_POLICYCMD_H

#include <stdio.h>

/*
 * argv[0] is the word after "policy" ("explain"). Exit status: 0 allow,
 * 1 deny (or undecidable offline: an id that only a lookup resolves),
 * 2 usage or configuration error.
 */
int policycmd_main(int argc, char **argv, FILE *out);

#endif
