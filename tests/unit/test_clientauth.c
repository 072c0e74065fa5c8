/* Unit tests for clientauth: Proxy-Authorization parsing and key checks. */
#include <stdlib.h>
#include <string.h>

#include "clientauth.h"
#include "testlib.h"
#include "util.h"

static struct config_client test_clients[3];
static struct config test_cfg;

static void setup(void)
{
    test_clients[0].id = "triage-bot";
    test_clients[0].key = "s3cret-key:with:colons";
    test_clients[1].id = "docs-bot";
    test_clients[1].key = "other-key";
    test_clients[2].id = "nokey-bot";
    test_clients[2].key = ""; /* a client without a usable key never authenticates */
    test_cfg.clients = test_clients;
    test_cfg.nclients = 3;
}

/* "Basic base64(id:key)" with an optional scheme spelling. */
static char *header_for(const char *scheme, const char *idkey)
{
    char *b64 = util_base64_encode((const unsigned char *)idkey, strlen(idkey));
    char *h = xasprintf("%s %s", scheme, b64);
    free(b64);
    return h;
}

static enum clientauth_result check_str(const char *v, const struct config_client **c)
{
    return clientauth_check(&test_cfg, v, v ? strlen(v) : 0, c);
}

static void test_valid(void)
{
    const struct config_client *c = (const void *)1;
    char *h = header_for("Basic", "triage-bot:s3cret-key:with:colons");
    CHECK(check_str(h, &c) == CLIENTAUTH_OK);
    /* The result is the config's own entry, never a copy holding the key. */
    CHECK(c == &test_clients[0]);
    free(h);

    h = header_for("basic", "docs-bot:other-key");
    CHECK(check_str(h, &c) == CLIENTAUTH_OK);
    CHECK(c == &test_clients[1]);
    free(h);

    h = header_for("BASIC", "docs-bot:other-key");
    CHECK(check_str(h, &c) == CLIENTAUTH_OK);
    free(h);

    /* Surrounding and separating white space is tolerated. */
    char *b64 = util_base64_encode((const unsigned char *)"docs-bot:other-key", 18);
    h = xasprintf("  Basic \t %s  ", b64);
    CHECK(check_str(h, &c) == CLIENTAUTH_OK);
    free(h);
    free(b64);
}

static void test_bad(void)
{
    const struct config_client *c = (const void *)1;
    struct {
        const char *scheme;
        const char *idkey;
    } cases[] = {
        {"Basic", "triage-bot:wrong"},                   /* wrong key */
        {"Basic", "triage-bot:s3cret-key:with:colon"},   /* prefix of the key */
        {"Basic", "triage-bot:s3cret-key:with:colonsX"}, /* key plus a byte */
        {"Basic", "Triage-bot:s3cret-key:with:colons"},  /* ids are case-sensitive */
        {"Basic", "unknown:other-key"},                  /* unknown id */
        {"Basic", "docs-botother-key"},                  /* missing colon */
        {"Basic", "docs-bot:"},                          /* empty key */
        {"Basic", ":other-key"},                         /* empty id */
        {"Basic", "nokey-bot:"},                         /* client with empty key */
        {"Bearer", "docs-bot:other-key"},                /* not Basic */
        {"Digest", "docs-bot:other-key"},
        {"Basicx", "docs-bot:other-key"},
    };
    for (size_t i = 0; i < UTIL_ARRAY_LEN(cases); i++) {
        char *h = header_for(cases[i].scheme, cases[i].idkey);
        c = (const void *)1;
        CHECK_MSG(check_str(h, &c) == CLIENTAUTH_BAD, "case %zu", i);
        CHECK_MSG(c == NULL, "case %zu", i);
        free(h);
    }

    const char *raw[] = {
        "Basic",                           /* no credentials */
        "Basic ",                          /* blank credentials */
        "Basic !!!!",                      /* not base64 */
        "Basic ZG9jcy1ib3Q6b3RoZXIta2U",   /* "docs-bot:other-ke" unpadded */
        "Basic ZG9jcy1ib3Q6 b3RoZXIta2V5", /* space inside */
        "BasicZG9jcy1ib3Q6b3RoZXIta2V5",   /* no separator */
        "ZG9jcy1ib3Q6b3RoZXIta2V5",        /* no scheme */
        " ",
    };
    for (size_t i = 0; i < UTIL_ARRAY_LEN(raw); i++) {
        c = (const void *)1;
        CHECK_MSG(check_str(raw[i], &c) == CLIENTAUTH_BAD, "raw %zu: %s", i, raw[i]);
        CHECK(c == NULL);
    }

    /* A NUL byte hidden in the value or in the decoded credentials. */
    const char nul_val[] = "Basic ZG9j\0cy1ib3Q6b3RoZXIta2V5";
    CHECK(clientauth_check(&test_cfg, nul_val, sizeof(nul_val) - 1, &c) == CLIENTAUTH_BAD);
    char *h = header_for("Basic", "docs-bot:other-key");
    free(h);
    char *b64 = util_base64_encode((const unsigned char *)"docs-bot:other-key\0", 19);
    h = xasprintf("Basic %s", b64);
    CHECK(check_str(h, &c) == CLIENTAUTH_BAD);
    free(h);
    free(b64);
}

static void test_absent_and_long(void)
{
    const struct config_client *c = (const void *)1;
    CHECK(clientauth_check(&test_cfg, NULL, 0, &c) == CLIENTAUTH_NONE);
    CHECK(c == NULL);
    c = (const void *)1;
    CHECK(clientauth_check(&test_cfg, "Basic x", 0, &c) == CLIENTAUTH_NONE);
    CHECK(c == NULL);

    /* Very long key: over the limit -> BAD before decoding. */
    size_t n = CLIENTAUTH_MAX_VALUE_LEN * 4;
    char *longkey = xmalloc(n + 32);
    memcpy(longkey, "docs-bot:", 9);
    memset(longkey + 9, 'k', n);
    longkey[9 + n] = '\0';
    char *h = header_for("Basic", longkey);
    CHECK(strlen(h) > CLIENTAUTH_MAX_VALUE_LEN);
    CHECK(check_str(h, &c) == CLIENTAUTH_BAD);
    CHECK(c == NULL);
    free(h);

    /* Long but within the limit, and a client whose key really is long. */
    size_t m = 2000;
    longkey[9 + m] = '\0';
    struct config_client lc = {.id = "docs-bot", .key = longkey + 9};
    struct config cfg2 = {.clients = &lc, .nclients = 1};
    h = header_for("Basic", longkey);
    CHECK(strlen(h) <= CLIENTAUTH_MAX_VALUE_LEN);
    CHECK(clientauth_check(&cfg2, h, strlen(h), &c) == CLIENTAUTH_OK);
    CHECK(c == &lc);
    longkey[9 + m - 1] = 'x';
    CHECK(clientauth_check(&cfg2, h, strlen(h), &c) == CLIENTAUTH_BAD);
    free(h);
    free(longkey);

    /* Long id. */
    char *longid = xmalloc(3000);
    memset(longid, 'i', 2000);
    strcpy(longid + 2000, ":k");
    h = header_for("Basic", longid);
    CHECK(check_str(h, &c) == CLIENTAUTH_BAD);
    free(h);
    free(longid);

    /* No clients configured at all. */
    struct config empty = {0};
    h = header_for("Basic", "docs-bot:other-key");
    CHECK(clientauth_check(&empty, h, strlen(h), &c) == CLIENTAUTH_BAD);
    CHECK(c == NULL);
    free(h);
}

static void test_peer_uid(void)
{
    char buf[32];
    clientauth_peer_uid_id(1000, buf, sizeof(buf));
    CHECK_STR(buf, "uid:1000");
    clientauth_peer_uid_id(0, buf, sizeof(buf));
    CHECK_STR(buf, "uid:0");
    char small[6];
    clientauth_peer_uid_id(123456, small, sizeof(small));
    CHECK(strlen(small) == 5);
}

int main(void)
{
    setup();
    test_valid();
    test_bad();
    test_absent_and_long();
    test_peer_uid();
    TEST_DONE();
}
