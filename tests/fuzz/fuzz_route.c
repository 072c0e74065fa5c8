/*
 * fuzz_route: "where does this request go, or why not" over a fixed world
 * (three sites, one with its own listener). The input chooses the flags
 * (CONNECT, Upgrade, looped, listener kind, inside an intercepted tunnel)
 * and, NUL-separated, the target, Host, Origin and Sec-Fetch-Site values.
 * Invariants: a refusal has a 4xx/5xx status, a code and a message; a site
 * action names a configured site and an https URL on that site's origin; on
 * a site listener nothing but that site is ever reached (no pass-through,
 * no tunnel, no other site's credential); a looped request is never sent.
 */
#define _GNU_SOURCE /* memfd_create */
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "fuzz.h"
#include "route.h"
#include "world.h"

#define FUZZ_FIELDS 4

static const char fuzz_config[] = "listen: 127.0.0.1:8080\n"
                                  "credentials:\n"
                                  "  svc:\n"
                                  "    type: basic\n"
                                  "    email: bot@example.com\n"
                                  "    token_env: FUZZ_ROUTE_TOKEN\n"
                                  "sites:\n"
                                  "  - domain: acme\n"
                                  "    credential: svc\n"
                                  "    alias: corp\n"
                                  "  - domain: acme-sandbox\n"
                                  "    credential: svc\n"
                                  "    listen: 127.0.0.1:8082\n"
                                  "  - host: jira.example.org\n"
                                  "    port: 8443\n"
                                  "    credential: svc\n"
                                  "unknown_hosts: tunnel\n";

static struct world *world;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char path[64], *err = NULL, *warning = NULL;
    struct config *cfg = NULL;
    int fd = memfd_create("fuzz-route.yaml", 0);
    FUZZ_CHECK(fd >= 0);
    FUZZ_CHECK(write(fd, fuzz_config, sizeof(fuzz_config) - 1) == (ssize_t)sizeof(fuzz_config) - 1);
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    setenv("FUZZ_ROUTE_TOKEN", "fuzz-token-not-a-secret", 1);
    if (config_load_file(path, &cfg, &err) < 0) {
        fprintf(stderr, "fuzz_route: config: %s\n", err ? err : "?");
        abort();
    }
    close(fd);
    world = world_new(cfg, &err, &warning);
    FUZZ_CHECK(world != NULL);
    free(warning);
    return 0;
}

static bool known_site(const struct config_site *s)
{
    for (size_t i = 0; i < world->cfg->nsites; i++) {
        if (s == &world->cfg->sites[i])
            return true;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *field[FUZZ_FIELDS] = {NULL};
    size_t flen[FUZZ_FIELDS] = {0};
    if (size < 1 || size > 4096)
        return 0;
    unsigned flags = data[0];
    char *copy = malloc(size);
    FUZZ_CHECK(copy != NULL);
    memcpy(copy, data + 1, size - 1);
    copy[size - 1] = '\0';
    size_t nf = 0;
    for (char *p = copy; nf < FUZZ_FIELDS && p < copy + size; p += strlen(p) + 1) {
        field[nf] = p;
        flen[nf++] = strlen(p);
    }

    struct route_listener site_l = {true, "acme-sandbox.atlassian.net", 443};
    struct route_listener main_l = {false, NULL, 0};
    struct route_self self = {.ports = {8080, 8082, 9090}, .nports = 3, .token = "00ff"};
    struct hostmap_authority tunnel = {.host = "acme.atlassian.net", .port = 443};
    bool on_site = flags & 8;
    struct route_input in = {
        .world = world,
        .listener = on_site ? &site_l : &main_l,
        .self = flags & 32 ? NULL : &self,
        /* a site listener refuses CONNECT, so no tunnel ever runs on one */
        .tunnel = flags & 16 && !on_site ? &tunnel : NULL,
        .is_connect = flags & 1,
        .upgrade = flags & 2,
        .looped = flags & 4,
        .target = field[0] ? field[0] : "",
        .target_len = flen[0],
        .host = flags & 64 ? NULL : field[1],
        .host_len = flen[1],
        .origin = field[2],
        .origin_len = flen[2],
        .fetch_site = flags & 128 ? field[3] : NULL,
        .fetch_site_len = flen[3],
    };
    if (!in.host)
        in.host_len = 0;
    if (!in.origin)
        in.origin_len = 0;
    if (!in.fetch_site)
        in.fetch_site_len = 0;

    struct route r;
    route_request(&in, &r);
    switch (r.action) {
    case ROUTE_REFUSE:
        FUZZ_CHECK(r.status >= 400 && r.status <= 599 && r.code != NULL);
        FUZZ_CHECK(memchr(r.message, '\0', sizeof(r.message)) != NULL);
        break;
    case ROUTE_SITE:
    case ROUTE_CONNECT_INTERCEPT:
        FUZZ_CHECK(r.site != NULL && known_site(r.site));
        FUZZ_CHECK(!in.looped);
        if (on_site)
            FUZZ_CHECK(strcmp(r.site->host, site_l.site_host) == 0);
        if (r.action == ROUTE_SITE) {
            const char *origin = world->sites[r.site - world->cfg->sites].origin;
            FUZZ_CHECK(r.url != NULL && strncmp(r.url, origin, strlen(origin)) == 0);
            char next = r.url[strlen(origin)];
            FUZZ_CHECK(next == '/' || next == '\0');
        }
        break;
    case ROUTE_PASS:
    case ROUTE_CONNECT_TUNNEL:
        FUZZ_CHECK(!on_site);
        FUZZ_CHECK(!in.looped);
        break;
    default:
        FUZZ_CHECK(!"unknown route action");
    }
    route_clear(&r);
    free(copy);
    return 0;
}
