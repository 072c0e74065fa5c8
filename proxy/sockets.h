/*
 * sockets: bind listening sockets for the proxy's listeners and the admin
 * server, so both follow the same rules: a stale unix socket file is
 * replaced only when nothing answers on it, anything that is not a socket is
 * never replaced, IPv6 listeners are v6-only, and every error names the
 * address and the reason.
 *
 * Layer 0 (plain POSIX). Never logs; the caller reports *err.
 */
#ifndef CREDPROXY_SOCKETS_H
#define CREDPROXY_SOCKETS_H

#include <stddef.h>

/*
 * A non-blocking, close-on-exec listening unix socket at path with the given
 * file mode. Returns the fd, or -1 with *err (caller frees).
 */
int sockets_listen_unix(const char *path, int mode, int backlog, char **err);

/*
 * A non-blocking, close-on-exec listening TCP socket on host:port (port 0:
 * any free port). Writes the bound address, with the real port, into actual
 * ("127.0.0.1:8080", "[::1]:8080"). Returns the fd, or -1 with *err.
 */
int sockets_listen_tcp(const char *host, int port, int backlog, char *actual, size_t cap,
                       char **err);

#endif
