/*
 * fuzz_hostmap: lookups in a hostmap built from a fixed configuration
 * (three sites, aliases, a non-default port). Any authority the fuzzer
 * makes either matches nothing or a site whose host is exactly the
 * authority's (never a suffix, prefix or look-alike); gateway lookups only
 * ever answer a configured site; Origin checks never crash.
 */
#define _GNU_SOURCE /* memfd_create */
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "fuzz.h"
#include "hostmap.h"

static const char fuzz_config[] = "listen: 127.0.0.1:8080\n"
                                  "credentials:\n"
                                  "  svc:\n"
                                  "    type: basic\n"
                                  "    email: bot@example.com\n"
                                  "    token_env: FUZZ_HOSTMAP_TOKEN\n"
                                  "sites:\n"
                                  "  - domain: acme\n"
                                  "    credential: svc\n"
                                  "    alias: corp\n"
                                  "  - domain: acme-sandbox\n"
                                  "    credential: svc\n"
                                  "  - host: jira.example.org\n"
                                  "    port: 8443\n"
                                  "    credential: svc\n";

static struct config *cfg;
static struct hostmap *map;

/* The config is loaded from a memfd: the loader wants a path. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char path[64], *err = NULL;
    int fd = memfd_create("fuzz-hostmap.yaml", 0);
    FUZZ_CHECK(fd >= 0);
    FUZZ_CHECK(write(fd, fuzz_config, sizeof(fuzz_config) - 1) == (ssize_t)sizeof(fuzz_config) - 1);
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    setenv("FUZZ_HOSTMAP_TOKEN", "fuzz-token-not-a-secret", 1);
    if (config_load_file(path, &cfg, &err) < 0) {
        fprintf(stderr, "fuzz_hostmap: config: %s\n", err ? err : "?");
        abort();
    }
    close(fd);
    map = hostmap_new(cfg);
    FUZZ_CHECK(map != NULL);
    return 0;
}

static void check_site(const struct config_site *s, const struct hostmap_authority *a, bool exact)
{
    if (!s)
        return;
    bool known = false;
    for (size_t i = 0; i < cfg->nsites; i++)
        known |= s == &cfg->sites[i];
    FUZZ_CHECK(known);
    if (exact)
        FUZZ_CHECK(strcmp(s->host, a->host) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct hostmap_authority a;
    const char *text = (const char *)data;
    bool https = false;
    size_t off;

    if (hostmap_parse_authority(text, size, 443, &a) == 0) {
        check_site(hostmap_lookup(map, &a), &a, true);
        check_site(hostmap_lookup_forward(map, &a, true), &a, true);
        check_site(hostmap_lookup_forward(map, &a, false), &a, true);
        check_site(hostmap_lookup_gateway(map, &a), &a, false);
    }
    if (hostmap_parse_absolute(text, size, &a, &https, &off) == 0)
        check_site(hostmap_lookup_forward(map, &a, https), &a, true);
    for (size_t i = 0; i < cfg->nsites; i++)
        (void)hostmap_origin_allowed(&cfg->sites[i], text, size);
    return 0;
}
