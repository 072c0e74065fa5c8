/*
 * test_conf_examples: every conf/NAME.yaml must load with zero errors and zero
 * warnings (none of the examples intends one), with ATLASSIAN_API_TOKEN set.
 * The sidecar example names /run/secrets/atlassian-token: the test loads a
 * copy in which that path points at a 0600 temporary file instead.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "testlib.h"
#include "util.h"

#define SECRET_PATH "/run/secrets/atlassian-token"
#define TOKEN "example-SECRET-token"

static char tmpdir[256];

/* The path to load: the example itself, or a copy with the secret path replaced. */
static char *example_path(const char *dir, const char *name, const char *token_file)
{
    char *path = xasprintf("%s/%s", dir, name);
    char *text = test_read_file(path);
    char *at = text ? strstr(text, SECRET_PATH) : NULL;
    if (!at) {
        free(text);
        return path;
    }
    char *copy = xasprintf("%s/%s", tmpdir, name);
    FILE *f = fopen(copy, "w");
    CHECK(f != NULL);
    if (f) {
        const char *s = text;
        while ((at = strstr(s, SECRET_PATH)) != NULL) {
            fwrite(s, 1, (size_t)(at - s), f);
            fputs(token_file, f);
            s = at + strlen(SECRET_PATH);
        }
        fputs(s, f);
        fclose(f);
    }
    free(text);
    free(path);
    return copy;
}

int main(void)
{
    const char *src = getenv("CREDPROXY_SOURCE_DIR");
    char *dir = xasprintf("%s/conf", src ? src : ".");
    static const char *const required[] = {"credproxy.example.yaml", "minimal.yaml",
                                           "multi-site.yaml", "sidecar.yaml"};
    bool seen[UTIL_ARRAY_LEN(required)] = {false};
    size_t loaded = 0;

    snprintf(tmpdir, sizeof(tmpdir), "/tmp/credproxy-test-conf-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    char *token_file = xasprintf("%s/atlassian-token", tmpdir);
    FILE *tf = fopen(token_file, "w");
    CHECK(tf != NULL);
    if (tf) {
        fputs(TOKEN "\n", tf);
        fclose(tf);
    }
    chmod(token_file, 0600);
    setenv("ATLASSIAN_API_TOKEN", TOKEN, 1);

    DIR *d = opendir(dir);
    CHECK_MSG(d != NULL, "cannot open %s (is CREDPROXY_SOURCE_DIR set?)", dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n < 6 || strcmp(e->d_name + n - 5, ".yaml") != 0)
            continue;
        for (size_t i = 0; i < UTIL_ARRAY_LEN(required); i++) {
            if (strcmp(e->d_name, required[i]) == 0)
                seen[i] = true;
        }
        char *path = example_path(dir, e->d_name, token_file);
        struct config *cfg = NULL;
        char *err = NULL;
        int rc = config_load_file(path, &cfg, &err);
        CHECK_MSG(rc == 0, "conf/%s: %s", e->d_name, err ? err : "?");
        if (err)
            CHECK(strstr(err, "SECRET") == NULL);
        if (cfg) {
            loaded++;
            CHECK_MSG(cfg->nwarnings == 0, "conf/%s: %zu warning(s), first: %s", e->d_name,
                      cfg->nwarnings, cfg->nwarnings ? cfg->warnings[0].text : "");
            CHECK(cfg->ncredentials >= 1 && cfg->nsites >= 1);
            for (size_t i = 0; i < cfg->ncredentials; i++)
                CHECK_STR(cfg->credentials[i].secret, TOKEN);
            if (strcmp(e->d_name, "sidecar.yaml") == 0) {
                CHECK(cfg->credentials[0].source == CONFIG_SECRET_FILE);
                CHECK(cfg->admin && cfg->admin->port == 9090);
                CHECK(cfg->log.format == LOG_FORMAT_JSON);
            }
            if (strcmp(e->d_name, "multi-site.yaml") == 0) {
                CHECK(cfg->nsites == 3);
                CHECK(cfg->nsites == 3 && cfg->sites[1].listen && cfg->sites[2].alias);
            }
            config_free(cfg);
        }
        free(err);
        free(path);
    }
    if (d)
        closedir(d);
    for (size_t i = 0; i < UTIL_ARRAY_LEN(required); i++)
        CHECK_MSG(seen[i], "conf/%s is missing", required[i]);
    CHECK(loaded >= UTIL_ARRAY_LEN(required));

    /* the token file and every copied example */
    DIR *t = opendir(tmpdir);
    while (t && (e = readdir(t)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char *p = xasprintf("%s/%s", tmpdir, e->d_name);
        unlink(p);
        free(p);
    }
    if (t)
        closedir(t);
    CHECK(rmdir(tmpdir) == 0);
    free(token_file);
    free(dir);
    TEST_DONE();
}
