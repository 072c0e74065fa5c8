/* sockets: listening sockets for the proxy and admin listeners (see sockets.h). */
#include "sockets.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "util.h"

int sockets_listen_unix(const char *path, int mode, int backlog, char **err)
{
    struct sockaddr_un sun;
    struct stat st;
    int fd;

    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sun.sun_path)) {
        *err = xasprintf("cannot listen on unix:%s: the path is too long", path);
        return -1;
    }
    memcpy(sun.sun_path, path, strlen(path));
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            *err = xasprintf("cannot listen on unix:%s: the file exists and is not a socket", path);
            return -1;
        }
        /* Stale (nobody accepts on it) -> remove; alive -> someone else is serving there. */
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0 && connect(probe, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
            close(probe);
            *err = xasprintf("cannot listen on unix:%s: another process is listening there", path);
            return -1;
        }
        if (probe >= 0)
            close(probe);
        unlink(path);
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
        chmod(path, (mode_t)mode) < 0 || listen(fd, backlog) < 0) {
        *err = xasprintf("cannot listen on unix:%s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

int sockets_listen_tcp(const char *host, int port, int backlog, char *actual, size_t cap,
                       char **err)
{
    struct addrinfo hints, *res = NULL;
    char portstr[16];
    int fd = -1, rc, one = 1;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(portstr, sizeof(portstr), "%d", port);
    rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc != 0 || !res) {
        *err = xasprintf("cannot listen on %s:%d: %s", host, port, gai_strerror(rc));
        return -1;
    }
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (res->ai_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    }
    if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, backlog) < 0) {
        *err = xasprintf("cannot listen on %s%s%s:%d: %s", res->ai_family == AF_INET6 ? "[" : "",
                         host, res->ai_family == AF_INET6 ? "]" : "", port, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int real = port;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            real = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            real = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    snprintf(actual, cap, "%s%s%s:%d", res->ai_family == AF_INET6 ? "[" : "", host,
             res->ai_family == AF_INET6 ? "]" : "", real);
    freeaddrinfo(res);
    return fd;
}
