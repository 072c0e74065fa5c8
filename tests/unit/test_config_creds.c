/*
 * Unit tests for the credential keys of issue 10: type: oauth_client
 * (client_id, client_secret_*, token_url, scopes), via: api_gateway,
 * reject_after, and sites[].cloud_id. A table of small YAML documents, each
 * loaded from a temp file: what loads, what it becomes, and the exact
 * FILE:LINE:COL message of what does not (never a secret in it).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "testlib.h"
#include "util.h"

#define SECRET "cs-SECRET-0123456789"

struct ccase {
    const char *name;
    const char *yaml;
    const char *err; /* NULL: loads; else the message after "FILE:" */
};

static const struct ccase cases[] = {
    {"oauth_minimal",
     "credentials:\n  sa:\n    type: oauth_client\n    client_id: abcDEF123\n"
     "    client_secret_env: CPT_CLIENT_SECRET\n"
     "sites:\n  - domain: acme\n    credential: sa\n",
     NULL},
    {"oauth_full",
     "credentials:\n  sa:\n    type: oauth_client\n    client_id: abc\n"
     "    client_secret_env: CPT_CLIENT_SECRET\n    token_url: https://127.0.0.1:9/oauth/token\n"
     "    scopes: [read:jira-work, write:jira-work]\n    reject_after: 5\n"
     "sites:\n  - domain: acme\n    credential: sa\n"
     "    cloud_id: 1A11D016-8984-4c3e-b9ab-142dd06acb1b\n",
     NULL},
    {"scoped_basic",
     "credentials:\n  sc:\n    email: bot@serviceaccount.atlassian.com\n"
     "    token_env: CPT_CLIENT_SECRET\n    via: api_gateway\n"
     "sites:\n  - domain: acme\n    credential: sc\n",
     NULL},
    {"old_config_still_valid",
     "credentials:\n  svc:\n    email: a@example.com\n    token_env: CPT_CLIENT_SECRET\n"
     "sites:\n  - domain: acme\n    credential: svc\n",
     NULL},
    {"oauth_no_client_id",
     "credentials:\n  sa:\n    type: oauth_client\n    client_secret_env: CPT_CLIENT_SECRET\n"
     "sites:\n  - domain: acme\n    credential: sa\n",
     "3:5: credential 'sa' has no client_id: type oauth_client needs the service account's "
     "OAuth client_id and a client_secret_env"},
    {"oauth_no_secret",
     "credentials:\n  sa:\n    type: oauth_client\n    client_id: abc\n"
     "sites:\n  - domain: acme\n    credential: sa\n",
     "3:5: credential 'sa' has no client secret: add client_secret_env: VARIABLE "
     "(recommended), client_secret_file: PATH or client_secret: ..."},
    {"oauth_with_token",
     "credentials:\n  sa:\n    type: oauth_client\n    client_id: abc\n"
     "    token_env: CPT_CLIENT_SECRET\n"
     "sites:\n  - domain: acme\n    credential: sa\n",
     "5:5: credentials.sa.token_env is for basic and bearer credentials; an oauth_client takes "
     "client_secret_env, client_secret_file or client_secret"},
    {"oauth_with_email",
     "credentials:\n  sa:\n    type: oauth_client\n    client_id: abc\n    email: a@b.c\n"
     "    client_secret_env: CPT_CLIENT_SECRET\n"
     "sites:\n  - domain: acme\n    credential: sa\n",
     "5:5: credentials.sa.email is only for type: basic; remove it (bearer sends the token "
     "alone)"},
    {"basic_with_client_id",
     "credentials:\n  svc:\n    email: a@example.com\n    token_env: CPT_CLIENT_SECRET\n"
     "    client_id: abc\n"
     "sites:\n  - domain: acme\n    credential: svc\n",
     "5:5: credentials.svc.client_id is only for type: oauth_client"},
    {"oauth_via_site",
     "credentials:\n  sa:\n    type: oauth_client\n    client_id: abc\n    via: site\n"
     "    client_secret_env: CPT_CLIENT_SECRET\n"
     "sites:\n  - domain: acme\n    credential: sa\n",
     "5:10: credential 'sa': an oauth_client always goes through api_gateway"},
    {"via_bad",
     "credentials:\n  svc:\n    email: a@example.com\n    token_env: CPT_CLIENT_SECRET\n"
     "    via: gateway\n"
     "sites:\n  - domain: acme\n    credential: svc\n",
     "5:10: credentials.svc.via must be api_gateway (scoped API tokens, which work only through "
     "https://api.atlassian.com/ex/...) or site, got 'gateway'"},
    {"token_url_http",
     "credentials:\n  sa:\n    type: oauth_client\n    client_id: abc\n"
     "    client_secret_env: CPT_CLIENT_SECRET\n    token_url: http://auth.example/token\n"
     "sites:\n  - domain: acme\n    credential: sa\n",
     "6:16: credentials.sa.token_url must be an https:// URL, got 'http://auth.example/token'"},
    {"reject_after_zero",
     "credentials:\n  svc:\n    email: a@example.com\n    token_env: CPT_CLIENT_SECRET\n"
     "    reject_after: 0\n"
     "sites:\n  - domain: acme\n    credential: svc\n",
     "5:19: credentials.svc.reject_after must be a whole number from 1 to 1000, got '0'"},
    {"cloud_id_bad",
     "credentials:\n  svc:\n    email: a@example.com\n    token_env: CPT_CLIENT_SECRET\n"
     "sites:\n  - domain: acme\n    credential: svc\n    cloud_id: not/a-uuid\n",
     "8:15: sites[0].cloud_id 'not/a-uuid' is not a cloud id (a UUID such as "
     "1a11d016-8984-4c3e-b9ab-142dd06acb1b); remove it to have it looked up from "
     "https://SITE/_edge/tenant_info"},
    {"client_secret_space",
     "credentials:\n  sa:\n    type: oauth_client\n    client_id: abc\n"
     "    client_secret_env: CPT_SPACE_SECRET\n"
     "sites:\n  - domain: acme\n    credential: sa\n",
     "5:24: credential 'sa': the client secret from environment variable CPT_SPACE_SECRET has "
     "leading or trailing white space; remove it (the client secret itself is not shown)"},
};

static struct config *load(const struct ccase *c, char **err, char *path, size_t cap)
{
    snprintf(path, cap, "/tmp/cp-config-creds-%d-%s.yaml", (int)getpid(), c->name);
    FILE *f = fopen(path, "w");
    struct config *cfg = NULL;
    if (!f)
        return NULL;
    fputs(c->yaml, f);
    fclose(f);
    if (config_load_file(path, &cfg, err) < 0)
        cfg = NULL;
    unlink(path);
    return cfg;
}

static void test_table(void)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct ccase *c = &cases[i];
        char path[256], *err = NULL;
        struct config *cfg = load(c, &err, path, sizeof(path));
        if (!c->err) {
            CHECK_MSG(cfg != NULL, "%s: %s", c->name, err ? err : "?");
        } else {
            CHECK_MSG(cfg == NULL, "%s: loaded but should fail", c->name);
            char *want = xasprintf("%s:%s", path, c->err);
            CHECK_MSG(err && strcmp(err, want) == 0, "%s:\n  got  %s\n  want %s", c->name,
                      err ? err : "(none)", want);
            CHECK_MSG(!err || !strstr(err, SECRET), "%s: the secret is in the message", c->name);
            free(want);
        }
        free(err);
        config_free(cfg);
    }
}

static void test_values(void)
{
    char path[256], *err = NULL;
    struct config *cfg = load(&cases[1], &err, path, sizeof(path));
    CHECK(cfg != NULL);
    if (!cfg)
        return;
    const struct config_credential *sa = &cfg->credentials[0];
    CHECK(sa->type == CONFIG_CRED_OAUTH_CLIENT);
    CHECK(sa->via_gateway);
    CHECK_STR(sa->client_id, "abc");
    CHECK_STR(sa->secret, SECRET);
    CHECK_STR(sa->token_url, "https://127.0.0.1:9/oauth/token");
    CHECK_STR(sa->scopes, "read:jira-work write:jira-work");
    CHECK(sa->reject_after == 5);
    CHECK(sa->email == NULL);
    CHECK_STR(cfg->sites[0].cloud_id, "1a11d016-8984-4c3e-b9ab-142dd06acb1b");
    config_free(cfg);

    cfg = load(&cases[0], &err, path, sizeof(path));
    CHECK(cfg != NULL);
    if (cfg) {
        CHECK_STR(cfg->credentials[0].token_url, CONFIG_DEFAULT_TOKEN_URL);
        CHECK(cfg->credentials[0].scopes == NULL);
        CHECK(cfg->credentials[0].reject_after == CONFIG_DEFAULT_REJECT_AFTER);
        CHECK(cfg->sites[0].cloud_id == NULL);
        config_free(cfg);
    }
    cfg = load(&cases[2], &err, path, sizeof(path));
    CHECK(cfg != NULL);
    if (cfg) {
        CHECK(cfg->credentials[0].type == CONFIG_CRED_BASIC && cfg->credentials[0].via_gateway);
        config_free(cfg);
    }
    cfg = load(&cases[3], &err, path, sizeof(path));
    CHECK(cfg != NULL);
    if (cfg) {
        CHECK(!cfg->credentials[0].via_gateway);
        CHECK(cfg->credentials[0].reject_after == CONFIG_DEFAULT_REJECT_AFTER);
        config_free(cfg);
    }
}

int main(void)
{
    setenv("CPT_CLIENT_SECRET", SECRET, 1);
    setenv("CPT_SPACE_SECRET", SECRET " ", 1);
    test_table();
    test_values();
    TEST_DONE();
}
