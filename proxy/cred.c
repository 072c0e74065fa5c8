/*
 * cred: render each credential's Authorization header once and keep just
 * enough (raw secret, base64 form) for cred_appears_in(). Every one of those
 * buffers is zeroed with util_secure_zero() before it is freed.
 */
#define _GNU_SOURCE /* memmem */
#include "cred.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define CRED_HEADER_PREFIX "Authorization: "
#define CRED_BASIC_PREFIX "Basic "
#define CRED_BEARER_PREFIX "Bearer "
/* Longest rendered header: prefixes + base64 of a maximal email ":" secret. */
#define CRED_MAX_EMAIL 320

struct cred {
    char *name;
    /* The raw secret, for cred_appears_in(). Secret. */
    char *secret;
    size_t secret_len;
    /* Basic only: base64(email ":" secret), for cred_appears_in(). Secret. */
    char *b64;
    size_t b64_len;
    /* "Authorization: <value>" in one buffer; value points inside it. Secret. */
    char *header;
    size_t header_len;
    const char *value;
    size_t value_len;
    bool minted; /* oauth_client: the header comes from the token store, not from here */
};

static bool cred_has_control(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f)
            return true;
    }
    return false;
}

/* Wipe and free a secret buffer of n bytes (+ its NUL). */
static void cred_free_buf(char *p, size_t n)
{
    if (!p)
        return;
    util_secure_zero(p, n + 1);
    free(p);
}

/*
 * An oauth_client: keeps the client secret (for cred_appears_in) and renders
 * nothing; its Authorization comes from the token store per request.
 */
static struct cred *cred_new_minted(const struct config_credential *c)
{
    struct cred *cr = xcalloc(1, sizeof(*cr));
    cr->name = xstrdup(c->name ? c->name : "");
    cr->secret_len = strlen(c->secret);
    cr->secret = xstrndup(c->secret, cr->secret_len);
    cr->header = xstrdup("");
    cr->value = cr->header;
    cr->minted = true;
    return cr;
}

/*
 * Borrows c. Returns a cred the caller owns (free with cred_free), or NULL
 * when c cannot be rendered safely; nothing is left allocated on failure.
 */
struct cred *cred_new(const struct config_credential *c)
{
    struct cred *cr;
    const char *scheme;
    const char *body; /* what follows the scheme: base64 form or the raw secret */
    size_t body_len, scheme_len, hp_len = strlen(CRED_HEADER_PREFIX);

    if (!c || !c->secret || !c->secret[0] || strlen(c->secret) > CONFIG_MAX_SECRET_LEN)
        return NULL;
    if (c->type == CONFIG_CRED_BASIC) {
        if (!c->email || !c->email[0] || strlen(c->email) > CRED_MAX_EMAIL ||
            cred_has_control(c->email))
            return NULL;
    } else if (c->type == CONFIG_CRED_BEARER) {
        /* The secret goes into the header verbatim. */
        if (cred_has_control(c->secret) || strchr(c->secret, ' '))
            return NULL;
    } else if (c->type == CONFIG_CRED_OAUTH_CLIENT) {
        return cred_new_minted(c);
    } else {
        return NULL;
    }

    cr = xcalloc(1, sizeof(*cr));
    cr->name = xstrdup(c->name ? c->name : "");
    cr->secret_len = strlen(c->secret);
    cr->secret = xstrndup(c->secret, cr->secret_len);

    if (c->type == CONFIG_CRED_BASIC) {
        size_t elen = strlen(c->email);
        size_t plain_len = elen + 1 + cr->secret_len;
        char *plain = xmalloc(plain_len + 1);

        memcpy(plain, c->email, elen);
        plain[elen] = ':';
        memcpy(plain + elen + 1, c->secret, cr->secret_len);
        plain[plain_len] = '\0';
        cr->b64 = util_base64_encode((const unsigned char *)plain, plain_len);
        cred_free_buf(plain, plain_len);
        cr->b64_len = strlen(cr->b64);
        scheme = CRED_BASIC_PREFIX;
        body = cr->b64;
        body_len = cr->b64_len;
    } else {
        scheme = CRED_BEARER_PREFIX;
        body = cr->secret;
        body_len = cr->secret_len;
    }

    scheme_len = strlen(scheme);
    cr->header_len = hp_len + scheme_len + body_len;
    cr->header = xmalloc(cr->header_len + 1);
    memcpy(cr->header, CRED_HEADER_PREFIX, hp_len);
    memcpy(cr->header + hp_len, scheme, scheme_len);
    memcpy(cr->header + hp_len + scheme_len, body, body_len);
    cr->header[cr->header_len] = '\0';
    cr->value = cr->header + hp_len;
    cr->value_len = cr->header_len - hp_len;
    return cr;
}

void cred_wipe(struct cred *cr)
{
    if (!cr)
        return;
    if (cr->header)
        util_secure_zero(cr->header, cr->header_len + 1);
    if (cr->secret)
        util_secure_zero(cr->secret, cr->secret_len + 1);
    if (cr->b64)
        util_secure_zero(cr->b64, cr->b64_len + 1);
    cr->value_len = 0;
    cr->header_len = 0;
    cr->secret_len = 0;
    cr->b64_len = 0;
}

void cred_free(struct cred *cr)
{
    if (!cr)
        return;
    cred_wipe(cr);
    /* Lengths are 0 now: cred_free_buf zeroes the (already zero) NUL too. */
    cred_free_buf(cr->header, 0);
    cred_free_buf(cr->secret, 0);
    cred_free_buf(cr->b64, 0);
    free(cr->name);
    free(cr);
}

const char *cred_header(const struct cred *cr)
{
    return cr && cr->header ? cr->header : "";
}

const char *cred_header_value(const struct cred *cr)
{
    return cr && cr->value ? cr->value : "";
}

const char *cred_name(const struct cred *cr)
{
    return cr && cr->name ? cr->name : "";
}

static bool cred_contains(const char *buf, size_t len, const char *needle, size_t nlen)
{
    /* An empty needle (wiped cred) matches nothing rather than everything. */
    return needle && nlen > 0 && nlen <= len && memmem(buf, len, needle, nlen) != NULL;
}

int cred_appears_in(const struct cred *cr, const char *buf, size_t len)
{
    if (!cr || !buf)
        return 0;
    /* The value contains the base64 form (basic) or the secret (bearer), so
     * those checks subsume it; it stays for clarity and for wiped states. */
    return cred_contains(buf, len, cr->secret, cr->secret_len) ||
           cred_contains(buf, len, cr->b64, cr->b64_len) ||
           cred_contains(buf, len, cr->value, cr->value_len);
}

bool cred_is_minted(const struct cred *cr)
{
    return cr && cr->minted;
}

bool cred_same_secret(const struct cred *a, const struct cred *b)
{
    if (!a || !b || a->minted != b->minted || a->secret_len != b->secret_len ||
        a->header_len != b->header_len)
        return false;
    /* Constant time in the secret bytes: no early exit on the first difference. */
    unsigned char diff = 0;
    for (size_t i = 0; i < a->secret_len; i++)
        diff |= (unsigned char)(a->secret[i] ^ b->secret[i]);
    for (size_t i = 0; i < a->header_len; i++)
        diff |= (unsigned char)(a->header[i] ^ b->header[i]);
    return diff == 0;
}
