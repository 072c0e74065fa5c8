/*
 * clientauth: see clientauth.h.
 *
 * The decoded "id:key" buffer is the only place a presented key lives; it is
 * zeroed before it is freed on every path. Keys are compared as SHA-256
 * digests with CRYPTO_memcmp, so neither their content nor their length
 * shows in the timing, and an unknown id costs the same comparison as a
 * known one (against a dummy digest).
 */
#include "clientauth.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "util.h"

static bool clientauth_is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* SHA-256 of a key; the digest is not secret-equivalent but is wiped anyway. */
static void clientauth_digest(const void *p, size_t n, unsigned char out[SHA256_DIGEST_LENGTH])
{
    SHA256(p, n, out);
}

/*
 * Borrows cfg and value. On CLIENTAUTH_OK *client points into cfg->clients;
 * otherwise *client is NULL. Nothing derived from the key outlives the call.
 */
enum clientauth_result clientauth_check(const struct config *cfg, const char *value, size_t len,
                                        const struct config_client **client)
{
    static const char scheme[] = "basic";
    const size_t scheme_len = sizeof(scheme) - 1;
    enum clientauth_result res = CLIENTAUTH_BAD;
    unsigned char *dec = NULL;
    size_t dec_len = 0, i = 0, end;

    *client = NULL;
    if (!value || len == 0)
        return CLIENTAUTH_NONE;
    if (len > CLIENTAUTH_MAX_VALUE_LEN)
        return CLIENTAUTH_BAD;

    while (i < len && clientauth_is_space(value[i]))
        i++;
    end = len;
    while (end > i && clientauth_is_space(value[end - 1]))
        end--;
    if (end - i < scheme_len + 1 || !util_memcaseeq(value + i, scheme, scheme_len) ||
        !clientauth_is_space(value[i + scheme_len]))
        return CLIENTAUTH_BAD;
    i += scheme_len;
    while (i < end && clientauth_is_space(value[i]))
        i++;
    if (i == end)
        return CLIENTAUTH_BAD;
    for (size_t k = i; k < end; k++) {
        if (clientauth_is_space(value[k]) || value[k] == '\0')
            return CLIENTAUTH_BAD;
    }

    dec = util_base64_decode(value + i, end - i, &dec_len);
    if (!dec)
        return CLIENTAUTH_BAD;
    unsigned char *colon = memchr(dec, ':', dec_len);
    if (!colon || colon == dec || (size_t)(colon - dec) + 1 == dec_len ||
        memchr(dec, '\0', dec_len))
        goto out;

    size_t id_len = (size_t)(colon - dec);
    const unsigned char *key = colon + 1;
    size_t key_len = dec_len - id_len - 1;
    const struct config_client *found = NULL;
    for (size_t c = 0; cfg && c < cfg->nclients; c++) {
        const char *id = cfg->clients[c].id;
        if (id && strlen(id) == id_len && memcmp(id, dec, id_len) == 0)
            found = &cfg->clients[c];
    }

    unsigned char want[SHA256_DIGEST_LENGTH], got[SHA256_DIGEST_LENGTH];
    bool have_key = found && found->key && found->key[0] != '\0';
    if (have_key) {
        clientauth_digest(found->key, strlen(found->key), want);
    } else {
        /* Same work as a real comparison; can never match a real digest by design below. */
        memset(want, 0, sizeof(want));
    }
    clientauth_digest(key, key_len, got);
    bool equal = CRYPTO_memcmp(want, got, sizeof(want)) == 0;
    util_secure_zero(want, sizeof(want));
    util_secure_zero(got, sizeof(got));
    if (have_key && equal) {
        *client = found;
        res = CLIENTAUTH_OK;
    }
out:
    util_secure_zero(dec, dec_len);
    free(dec);
    return res;
}

void clientauth_peer_uid_id(unsigned uid, char *buf, size_t cap)
{
    if (!buf || cap == 0)
        return;
    snprintf(buf, cap, "uid:%u", uid);
}
