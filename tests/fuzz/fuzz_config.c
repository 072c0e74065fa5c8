/*
 * fuzz_config: the whole configuration loader on a YAML document. The
 * loader takes a path, so the input is written to a memfd and loaded as
 * /proc/self/fd/N. A load either fails with one "FILE:LINE:COL: message"
 * or yields a config that a hostmap can be built from; nothing leaks.
 * Secrets named by the document (token_env) are set to fixed values.
 */
#define _GNU_SOURCE /* memfd_create */
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "fuzz.h"
#include "hostmap.h"

#define FUZZ_MAX_CONFIG (64 * 1024)

static char path[64];
static int fd = -1;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fd = memfd_create("fuzz-config.yaml", 0);
    FUZZ_CHECK(fd >= 0);
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    setenv("CP_TOKEN", "fuzz-token-not-a-secret", 1);
    setenv("TOKEN", "fuzz-token-not-a-secret", 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config *cfg = NULL;
    char *err = NULL;

    if (size > FUZZ_MAX_CONFIG)
        return 0;
    FUZZ_CHECK(ftruncate(fd, 0) == 0);
    FUZZ_CHECK(pwrite(fd, data, size, 0) == (ssize_t)size);
    if (config_load_file(path, &cfg, &err) == 0) {
        FUZZ_CHECK(cfg != NULL && err == NULL);
        struct hostmap *map = hostmap_new(cfg);
        FUZZ_CHECK(map != NULL);
        hostmap_free(map);
        config_free(cfg);
    } else {
        FUZZ_CHECK(cfg == NULL && err != NULL);
        FUZZ_CHECK(strncmp(err, path, strlen(path)) == 0); /* FILE:LINE:COL: first */
        free(err);
    }
    return 0;
}
