/*
 * server: the daemon. Owns the control loop, the worker loops, the listeners,
 * the admin server, signals (SIGHUP reload, SIGTERM/SIGINT drain) and the
 * "world" (config + derived tables) swapped in on reload.
 *
 * Layer 4/5.
 */
#ifndef CREDPROXY_SERVER_H
#define CREDPROXY_SERVER_H

#include "config.h"

/*
 * Run until SIGTERM/SIGINT and drain. cfg is consumed. config_path is the
 * file to re-read on SIGHUP (NULL: the environment default, re-read from
 * the environment/token files). Returns the process exit status
 * (0 after a clean shutdown, 2 when startup fails on configuration or binding).
 */
int server_run(struct config *cfg, const char *config_path);

#endif
