/*
 * cload: a small HTTPS load generator for the benchmark's interception (CONNECT) rows.
 *
 * wrk and h2load cannot speak through a CONNECT proxy, so this drives the
 * intercepting proxies (credproxy, Squid ssl-bump, mitmproxy) and, without
 * -x, the TLS upstream directly (the ceiling). Threads with blocking sockets,
 * one connection each; every request is a GET whose response is read in full
 * (Content-Length or chunked). Latencies go into a fixed histogram.
 *
 *   cload -t HOST:PORT [-x PROXYHOST:PORT] [-a ADDR:PORT] [-H HOSTHDR] [-C CAFILE]
 *         [-u PATH] [-A AUTHVALUE] [-c THREADS] [-d SECONDS] [-k]
 *
 *   -t  the CONNECT target (also the TLS SNI and verified name)
 *   -x  the proxy; absent: connect to -a (or -t) directly
 *   -k  keep-alive inside one tunnel per thread; default: a new tunnel
 *       (TCP + CONNECT + TLS handshake) for every request
 *
 * Prints one JSON line: requests, errors, seconds, rps, p50_ms, p99_ms.
 * It never prints a header value it sends. Not part of the product; benchmark only.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define CLOAD_MAX_THREADS 256
#define CLOAD_BUF_SIZE 65536
#define CLOAD_FINE_BUCKETS 100000 /* 1 us each, up to 100 ms */
#define CLOAD_COARSE_BUCKETS 10000 /* 1 ms each, up to 10 s */

struct cload_opts {
    char proxy_host[256];
    char proxy_port[16];
    char target_host[256];
    char target_port[16];
    char addr_host[256];
    char addr_port[16];
    char host_header[300];
    const char *cafile;
    const char *path;
    const char *auth;
    int threads;
    double seconds;
    int keepalive;
    int use_proxy;
};

struct cload_hist {
    uint64_t fine[CLOAD_FINE_BUCKETS];
    uint64_t coarse[CLOAD_COARSE_BUCKETS];
    uint64_t over;
};

struct cload_thread {
    pthread_t tid;
    const struct cload_opts *opts;
    SSL_CTX *ctx;
    double deadline;
    uint64_t requests;
    uint64_t errors;
    struct cload_hist *hist;
    char last_error[160];
};

static atomic_int cload_stop;

static double cload_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void cload_hist_add(struct cload_hist *h, double secs)
{
    uint64_t us = (uint64_t)(secs * 1e6);
    if (us < CLOAD_FINE_BUCKETS)
        h->fine[us]++;
    else if (us / 1000 < CLOAD_COARSE_BUCKETS)
        h->coarse[us / 1000]++;
    else
        h->over++;
}

static double cload_hist_pct(const struct cload_hist *h, uint64_t total, double pct)
{
    uint64_t want = (uint64_t)((double)total * pct / 100.0);
    uint64_t seen = 0;
    if (want == 0)
        want = 1;
    for (int i = 0; i < CLOAD_FINE_BUCKETS; i++) {
        seen += h->fine[i];
        if (seen >= want)
            return (double)i / 1000.0;
    }
    for (int i = 0; i < CLOAD_COARSE_BUCKETS; i++) {
        seen += h->coarse[i];
        if (seen >= want)
            return (double)i;
    }
    return 10000.0;
}

static int cload_split(const char *in, char *host, size_t hostlen, char *port, size_t portlen)
{
    const char *colon = strrchr(in, ':');
    if (colon == NULL || (size_t)(colon - in) >= hostlen || strlen(colon + 1) >= portlen)
        return -1;
    memcpy(host, in, (size_t)(colon - in));
    host[colon - in] = '\0';
    strcpy(port, colon + 1);
    return 0;
}

static int cload_tcp_connect(const char *host, const char *port)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, port, &hints, &res) != 0)
        return -1;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd >= 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct timeval tv = {.tv_sec = 10};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    }
    return fd;
}

/* Sends CONNECT and reads the proxy's answer head byte-exactly (nothing follows it
 * until the client speaks TLS). Returns 0 on a 2xx. */
static int cload_connect_tunnel(int fd, const struct cload_opts *o, char *err, size_t errlen)
{
    char req[1024];
    int n = snprintf(req, sizeof(req), "CONNECT %s:%s HTTP/1.1\r\nHost: %s:%s\r\n\r\n",
                     o->target_host, o->target_port, o->target_host, o->target_port);
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        snprintf(err, errlen, "CONNECT send failed");
        return -1;
    }
    char head[4096];
    size_t used = 0;
    while (used < sizeof(head) - 1) {
        ssize_t r = recv(fd, head + used, sizeof(head) - 1 - used, 0);
        if (r <= 0) {
            snprintf(err, errlen, "CONNECT: proxy closed");
            return -1;
        }
        used += (size_t)r;
        head[used] = '\0';
        if (strstr(head, "\r\n\r\n") != NULL)
            break;
    }
    if (strncmp(head, "HTTP/1.", 7) != 0 || head[9] != '2') {
        char *eol = strchr(head, '\r');
        if (eol != NULL)
            *eol = '\0';
        snprintf(err, errlen, "CONNECT refused: %.100s", head);
        return -1;
    }
    return 0;
}

struct cload_conn {
    int fd;
    SSL *ssl;
    char buf[CLOAD_BUF_SIZE];
    size_t have;
};

static void cload_conn_close(struct cload_conn *c)
{
    if (c->ssl != NULL) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    c->have = 0;
}

static int cload_conn_open(struct cload_conn *c, struct cload_thread *t)
{
    const struct cload_opts *o = t->opts;
    c->have = 0;
    if (o->use_proxy)
        c->fd = cload_tcp_connect(o->proxy_host, o->proxy_port);
    else
        c->fd = cload_tcp_connect(o->addr_host, o->addr_port);
    if (c->fd < 0) {
        snprintf(t->last_error, sizeof(t->last_error), "TCP connect failed");
        return -1;
    }
    if (o->use_proxy && cload_connect_tunnel(c->fd, o, t->last_error, sizeof(t->last_error)))
        goto fail;
    c->ssl = SSL_new(t->ctx);
    SSL_set_fd(c->ssl, c->fd);
    SSL_set_tlsext_host_name(c->ssl, o->target_host);
    SSL_set1_host(c->ssl, o->target_host);
    if (SSL_connect(c->ssl) != 1) {
        unsigned long e = ERR_get_error();
        snprintf(t->last_error, sizeof(t->last_error), "TLS handshake failed: %s",
                 e ? ERR_reason_error_string(e) : "closed");
        ERR_clear_error();
        goto fail;
    }
    return 0;
fail:
    cload_conn_close(c);
    return -1;
}

static int cload_fill(struct cload_conn *c)
{
    if (c->have >= sizeof(c->buf))
        return -1;
    int r = SSL_read(c->ssl, c->buf + c->have, (int)(sizeof(c->buf) - c->have));
    if (r <= 0)
        return -1;
    c->have += (size_t)r;
    return 0;
}

static void cload_consume(struct cload_conn *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->have - n);
    c->have -= n;
}

/* Reads exactly n body bytes (discarding them). */
static int cload_skip(struct cload_conn *c, size_t n)
{
    while (n > 0) {
        if (c->have == 0 && cload_fill(c))
            return -1;
        size_t take = c->have < n ? c->have : n;
        cload_consume(c, take);
        n -= take;
    }
    return 0;
}

/* Reads one line (CRLF-terminated) into out; returns its length or -1. */
static int cload_line(struct cload_conn *c, char *out, size_t outlen)
{
    for (;;) {
        char *nl = memchr(c->buf, '\n', c->have);
        if (nl != NULL) {
            size_t len = (size_t)(nl - c->buf) + 1;
            size_t copy = len < outlen ? len : outlen - 1;
            memcpy(out, c->buf, copy);
            out[copy] = '\0';
            cload_consume(c, len);
            return (int)copy;
        }
        if (cload_fill(c))
            return -1;
    }
}

/* One GET on an open connection; returns the status, or -1; *closes when the server
 * will not keep the connection. */
static int cload_request(struct cload_conn *c, struct cload_thread *t, int *closes)
{
    const struct cload_opts *o = t->opts;
    char req[2048];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: cload\r\nAccept: */*\r\n%s%s%s"
                     "%s\r\n",
                     o->path, o->host_header, o->auth ? "Authorization: " : "",
                     o->auth ? o->auth : "", o->auth ? "\r\n" : "",
                     o->keepalive ? "" : "Connection: close\r\n");
    if (SSL_write(c->ssl, req, n) != n) {
        snprintf(t->last_error, sizeof(t->last_error), "request write failed");
        return -1;
    }
    char line[4096];
    if (cload_line(c, line, sizeof(line)) < 12 || strncmp(line, "HTTP/1.", 7) != 0) {
        snprintf(t->last_error, sizeof(t->last_error), "no response");
        return -1;
    }
    int status = atoi(line + 9);
    long long clen = -1;
    int chunked = 0;
    *closes = 0;
    for (;;) {
        int len = cload_line(c, line, sizeof(line));
        if (len < 0) {
            snprintf(t->last_error, sizeof(t->last_error), "truncated head");
            return -1;
        }
        if (len <= 2)
            break;
        if (strncasecmp(line, "content-length:", 15) == 0)
            clen = atoll(line + 15);
        else if (strncasecmp(line, "transfer-encoding:", 18) == 0 && strcasestr(line, "chunked"))
            chunked = 1;
        else if (strncasecmp(line, "connection:", 11) == 0 && strcasestr(line, "close"))
            *closes = 1;
    }
    if (chunked) {
        for (;;) {
            if (cload_line(c, line, sizeof(line)) < 0)
                return -1;
            long long sz = strtoll(line, NULL, 16);
            if (sz == 0) {
                /* trailers until the empty line */
                while (cload_line(c, line, sizeof(line)) > 2)
                    ;
                break;
            }
            if (cload_skip(c, (size_t)sz) || cload_line(c, line, sizeof(line)) < 0)
                return -1;
        }
    } else if (clen >= 0) {
        if (cload_skip(c, (size_t)clen))
            return -1;
    } else {
        *closes = 1; /* read to close: not expected from any server here */
        while (cload_fill(c) == 0)
            c->have = 0;
    }
    return status;
}

static void *cload_run(void *arg)
{
    struct cload_thread *t = arg;
    struct cload_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->fd = -1;
    while (!atomic_load(&cload_stop)) {
        double start = cload_now();
        if (start >= t->deadline)
            break;
        if (c->ssl == NULL && cload_conn_open(c, t)) {
            t->errors++;
            usleep(1000);
            continue;
        }
        int closes = 0;
        int status = cload_request(c, t, &closes);
        double end = cload_now();
        if (status == 200) {
            t->requests++;
            cload_hist_add(t->hist, end - start);
        } else {
            t->errors++;
            if (status > 0)
                snprintf(t->last_error, sizeof(t->last_error), "HTTP status %d", status);
            closes = 1;
        }
        if (!t->opts->keepalive || closes)
            cload_conn_close(c);
    }
    cload_conn_close(c);
    free(c);
    return NULL;
}

static void cload_usage(void)
{
    fprintf(stderr, "usage: cload -t HOST:PORT [-x PROXY:PORT] [-a ADDR:PORT] [-H HOSTHDR] "
                    "[-C CAFILE] [-u PATH] [-A AUTH] [-c THREADS] [-d SECONDS] [-k]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    struct cload_opts o = {.path = "/", .threads = 8, .seconds = 5.0};
    const char *addr = NULL, *host_header = NULL, *target = NULL, *proxy = NULL;
    int opt;
    while ((opt = getopt(argc, argv, "t:x:a:H:C:u:A:c:d:k")) != -1) {
        switch (opt) {
        case 't': target = optarg; break;
        case 'x': proxy = optarg; break;
        case 'a': addr = optarg; break;
        case 'H': host_header = optarg; break;
        case 'C': o.cafile = optarg; break;
        case 'u': o.path = optarg; break;
        case 'A': o.auth = optarg; break;
        case 'c': o.threads = atoi(optarg); break;
        case 'd': o.seconds = atof(optarg); break;
        case 'k': o.keepalive = 1; break;
        default: cload_usage();
        }
    }
    if (target == NULL || o.threads < 1 || o.threads > CLOAD_MAX_THREADS || o.seconds <= 0)
        cload_usage();
    if (cload_split(target, o.target_host, sizeof(o.target_host), o.target_port,
                    sizeof(o.target_port)))
        cload_usage();
    if (proxy != NULL) {
        o.use_proxy = 1;
        if (cload_split(proxy, o.proxy_host, sizeof(o.proxy_host), o.proxy_port,
                        sizeof(o.proxy_port)))
            cload_usage();
    }
    if (cload_split(addr ? addr : target, o.addr_host, sizeof(o.addr_host), o.addr_port,
                    sizeof(o.addr_port)))
        cload_usage();
    snprintf(o.host_header, sizeof(o.host_header), "%s", host_header ? host_header : o.target_host);

    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF); /* a full handshake per tunnel */
    if (o.cafile != NULL && SSL_CTX_load_verify_locations(ctx, o.cafile, NULL) != 1) {
        fprintf(stderr, "cload: cannot load %s\n", o.cafile);
        return 2;
    }

    struct cload_thread *th = calloc((size_t)o.threads, sizeof(*th));
    double t0 = cload_now();
    for (int i = 0; i < o.threads; i++) {
        th[i].opts = &o;
        th[i].ctx = ctx;
        th[i].deadline = t0 + o.seconds;
        th[i].hist = calloc(1, sizeof(struct cload_hist));
        pthread_create(&th[i].tid, NULL, cload_run, &th[i]);
    }
    struct cload_hist *all = calloc(1, sizeof(*all));
    uint64_t reqs = 0, errs = 0;
    const char *last_error = "";
    for (int i = 0; i < o.threads; i++) {
        pthread_join(th[i].tid, NULL);
        reqs += th[i].requests;
        errs += th[i].errors;
        if (th[i].last_error[0])
            last_error = th[i].last_error;
        for (int b = 0; b < CLOAD_FINE_BUCKETS; b++)
            all->fine[b] += th[i].hist->fine[b];
        for (int b = 0; b < CLOAD_COARSE_BUCKETS; b++)
            all->coarse[b] += th[i].hist->coarse[b];
        all->over += th[i].hist->over;
    }
    double secs = cload_now() - t0;
    printf("{\"requests\": %llu, \"errors\": %llu, \"seconds\": %.3f, \"rps\": %.1f, "
           "\"p50_ms\": %.3f, \"p99_ms\": %.3f, \"last_error\": \"%s\"}\n",
           (unsigned long long)reqs, (unsigned long long)errs, secs, (double)reqs / secs,
           reqs ? cload_hist_pct(all, reqs, 50) : 0.0, reqs ? cload_hist_pct(all, reqs, 99) : 0.0,
           last_error);
    return reqs > 0 ? 0 : 1;
}
