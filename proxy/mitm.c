/*
 * mitm: see mitm.h.
 *
 * Key type: ECDSA P-256 everywhere (root, intermediate, leaf). Ed25519 would be
 * smaller and faster, but Ed25519 server certificates are still rejected by
 * many TLS clients, browsers and language runtimes; P-256 is accepted by all.
 *
 * Layout: ca.pem = root (what agents trust) + intermediate (what signs leaves);
 * ca.key = the intermediate's key only. The root key signs the intermediate
 * during `ca init` and is then discarded, so a stolen ca.key can never mint a
 * new intermediate, and re-issuing for new sites needs `ca init --force`.
 * Both CA certificates carry the same critical name constraints: Java's TLS
 * stack ignores constraints on a trust anchor but enforces them on an
 * intermediate, so the intermediate is where they must be, and the root
 * carries them for every stack that honours them there.
 */
#define _GNU_SOURCE
#include "mitm.h"
#include "mitm_x509.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "hostmap.h"
#include "hostname.h"
#include "util.h"

/* One cached context. The list runs from head (most recent) to tail (least). */
struct mitm_entry {
    char host[HOSTMAP_HOST_BUF];
    SSL_CTX *ctx;    /* one reference owned by the cache */
    time_t renew_at; /* re-mint from this time on */
    struct mitm_entry *prev, *next;
};

struct mitm {
    X509 *root;          /* trust anchor (not sent: agents already have it) */
    X509 *inter;         /* signs leaves; sent after the leaf */
    EVP_PKEY *inter_key; /* ca.key, in memory only */
    EVP_PKEY *leaf_key;  /* one P-256 key for every leaf, generated at load */
    time_t inter_not_after;
    char **hosts; /* mapped hosts the CA covers: the only names ever minted */
    size_t nhosts;

    pthread_mutex_t lock; /* guards everything below */
    struct mitm_entry entries[MITM_LRU_MAX];
    size_t nentries;
    struct mitm_entry *head, *tail;
};

/* ---- small helpers ---------------------------------------------------------------- */

/* The first OpenSSL error as text (no key material ever appears in these). */
char *mitm_ssl_error_text(const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[256];
    ERR_clear_error();
    if (!e)
        return xstrdup(what);
    ERR_error_string_n(e, buf, sizeof(buf));
    return xasprintf("%s (%s)", what, buf);
}

/* A name we are willing to put in a certificate: the configured-name grammar (hostname.h). */
bool mitm_host_valid(const char *host)
{
    return hostname_is_config_name(host);
}

/* A random positive serial of MITM_SERIAL_BYTES bytes. 0 or -1. */
int mitm_set_random_serial(X509 *x)
{
    unsigned char buf[MITM_SERIAL_BYTES];
    BIGNUM *bn = NULL;
    int rc = -1;

    if (RAND_bytes(buf, sizeof(buf)) != 1)
        return -1;
    buf[0] &= 0x7f; /* positive */
    buf[0] |= 0x40; /* never shorter than the full width, never zero */
    bn = BN_bin2bn(buf, sizeof(buf), NULL);
    if (bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)))
        rc = 0;
    BN_free(bn);
    return rc;
}

/* Add an extension given in OpenSSL's config syntax (issuer/subject for SKI/AKI). 0 or -1. */
int mitm_add_ext(X509 *issuer, X509 *subject, int nid, const char *value)
{
    X509V3_CTX v3;
    X509_EXTENSION *ext;
    int ok;

    X509V3_set_ctx(&v3, issuer, subject, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (!ext)
        return -1;
    ok = X509_add_ext(subject, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

/* Subject "O=credproxy, CN=cn". 0 or -1. */
int mitm_set_subject(X509 *x, const char *cn)
{
    X509_NAME *name = X509_get_subject_name(x);
    if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)"credproxy",
                                    -1, -1, 0))
        return -1;
    if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
                                    0))
        return -1;
    return 0;
}

/* notBefore = now - skew, notAfter = min(now + days, cap) (cap 0 = none). 0 or -1. */
int mitm_set_validity(X509 *x, long days, time_t cap)
{
    time_t now = time(NULL);
    time_t end = now + (time_t)days * 86400;
    if (cap && end > cap)
        end = cap;
    if (!X509_time_adj_ex(X509_getm_notBefore(x), 0, -MITM_CLOCK_SKEW_SECS, &now))
        return -1;
    if (!ASN1_TIME_set(X509_getm_notAfter(x), end))
        return -1;
    return 0;
}

/* RFC 5280 DNS subtree match: base "a.b" matches "a.b" and "x.a.b"; ".a.b" only "x.a.b". */
static bool mitm_dns_in_subtree(const char *host, const ASN1_IA5STRING *base)
{
    size_t hl = strlen(host), bl = (size_t)ASN1_STRING_length(base);
    const char *b = (const char *)ASN1_STRING_get0_data(base);

    if (bl == 0)
        return true;
    if (b[0] == '.')
        return hl > bl && util_memcaseeq(host + hl - bl, b, bl);
    if (hl == bl)
        return util_memcaseeq(host, b, bl);
    return hl > bl && host[hl - bl - 1] == '.' && util_memcaseeq(host + hl - bl, b, bl);
}

/* Whether the name constraints of x (if any) allow the DNS name host. */
static bool mitm_cert_permits(X509 *x, const char *host)
{
    int crit = 0;
    NAME_CONSTRAINTS *nc = X509_get_ext_d2i(x, NID_name_constraints, &crit, NULL);
    bool ok = true, any_dns = false, matched = false;

    if (!nc)
        return true;
    for (int i = 0; nc->excludedSubtrees && i < sk_GENERAL_SUBTREE_num(nc->excludedSubtrees); i++) {
        GENERAL_SUBTREE *st = sk_GENERAL_SUBTREE_value(nc->excludedSubtrees, i);
        if (st->base->type == GEN_DNS && mitm_dns_in_subtree(host, st->base->d.dNSName))
            ok = false;
    }
    for (int i = 0; nc->permittedSubtrees && i < sk_GENERAL_SUBTREE_num(nc->permittedSubtrees);
         i++) {
        GENERAL_SUBTREE *st = sk_GENERAL_SUBTREE_value(nc->permittedSubtrees, i);
        if (st->base->type != GEN_DNS)
            continue;
        any_dns = true;
        if (mitm_dns_in_subtree(host, st->base->d.dNSName))
            matched = true;
    }
    NAME_CONSTRAINTS_free(nc);
    return ok && (!any_dns || matched);
}

/*
 * Read a CA file (at most MITM_MAX_FILE_BYTES). Returns 0; 1 when it does not
 * exist; -1 with *err. The key is credproxy's own: util's permission policy
 * refuses it when group or others may read it. The caller owns *out (wipe
 * it for keys).
 */
static int mitm_read_file(const char *path, bool key_file, char **out, size_t *out_len, char **err)
{
    unsigned mode = 0;
    int errnum = 0;

    switch (util_read_file(path, MITM_MAX_FILE_BYTES, out, out_len, &mode, &errnum)) {
    case UTIL_READ_OK:
        break;
    case UTIL_READ_MISSING:
        return 1;
    case UTIL_READ_NOT_REGULAR:
        *err = xasprintf("%s is not a regular file", path);
        return -1;
    case UTIL_READ_TOO_LARGE:
        *err = xasprintf("%s is larger than %d bytes", path, MITM_MAX_FILE_BYTES);
        return -1;
    default:
        *err = xasprintf("cannot read %s: %s", path, strerror(errnum));
        return -1;
    }
    if (key_file && util_secret_mode_check(mode, UTIL_SECRET_OWN) == UTIL_MODE_REFUSE) {
        *err = xasprintf("%s is readable by group or others (mode %04o); run: chmod 600 %s", path,
                         mode, path);
        util_secure_zero(*out, *out_len);
        free(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}

/* ---- load ------------------------------------------------------------------------- */

static bool mitm_self_signed(X509 *x)
{
    return X509_check_issued(x, x) == X509_V_OK;
}

struct mitm *mitm_load(const struct config *cfg, char **err, char **warning)
{
    const char *cert_path =
        cfg->interception.ca_cert ? cfg->interception.ca_cert : CONFIG_DEFAULT_CA_CERT;
    const char *key_path =
        cfg->interception.ca_key ? cfg->interception.ca_key : CONFIG_DEFAULT_CA_KEY;
    char *pem = NULL, *key = NULL, *uncovered = NULL;
    size_t pem_len = 0, key_len = 0;
    X509 *certs[MITM_MAX_CHAIN_CERTS];
    int ncerts = 0, rc_pem, rc_key;
    struct mitm *m = NULL;
    BIO *bio = NULL;

    *err = NULL;
    *warning = NULL;
    rc_pem = mitm_read_file(cert_path, false, &pem, &pem_len, err);
    if (rc_pem < 0)
        return NULL;
    rc_key = mitm_read_file(key_path, true, &key, &key_len, err);
    if (rc_key < 0)
        goto fail;
    if (rc_pem == 1 && rc_key == 1)
        return NULL; /* interception off */
    if (rc_pem == 1 || rc_key == 1) {
        *err = xasprintf("%s exists but %s does not; run `credproxy ca init --force`",
                         rc_pem == 1 ? key_path : cert_path, rc_pem == 1 ? cert_path : key_path);
        goto fail;
    }

    m = xcalloc(1, sizeof(*m));
    pthread_mutex_init(&m->lock, NULL);

    bio = BIO_new_mem_buf(key, (int)key_len);
    m->inter_key = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    bio = NULL;
    if (!m->inter_key) {
        ERR_clear_error();
        *err = xasprintf("%s: not a PEM private key (without a passphrase)", key_path);
        goto fail;
    }

    bio = BIO_new_mem_buf(pem, (int)pem_len);
    while (bio && ncerts < MITM_MAX_CHAIN_CERTS) {
        X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        if (!x)
            break;
        certs[ncerts++] = x;
    }
    ERR_clear_error();
    BIO_free(bio);
    bio = NULL;
    for (int i = 0; i < ncerts; i++) {
        if (!m->inter && X509_check_private_key(certs[i], m->inter_key) == 1) {
            m->inter = certs[i];
            certs[i] = NULL;
        }
    }
    ERR_clear_error();
    if (!m->inter) {
        *err = xasprintf("%s does not match any certificate in %s (mixed files from two "
                         "`ca init` runs?); run `credproxy ca init --force`",
                         key_path, cert_path);
        goto fail;
    }
    for (int i = 0; i < ncerts; i++) {
        if (certs[i] && !m->root && mitm_self_signed(certs[i]) &&
            X509_check_issued(certs[i], m->inter) == X509_V_OK) {
            m->root = certs[i];
            certs[i] = NULL;
        }
    }
    if (!m->root) {
        /* A CA made elsewhere may be a single self-signed signer: it is its own root. */
        if (!mitm_self_signed(m->inter)) {
            *err = xasprintf("%s holds no root certificate that issued the signing certificate; "
                             "run `credproxy ca init --force`",
                             cert_path);
            goto fail;
        }
        m->root = m->inter;
        X509_up_ref(m->root);
    }
    if (X509_check_ca(m->inter) < 1) {
        *err = xasprintf("the certificate for %s in %s is not a CA", key_path, cert_path);
        goto fail;
    }
    {
        const ASN1_TIME *na = X509_get0_notAfter(m->inter);
        struct tm tm;
        time_t now = time(NULL);
        if (!ASN1_TIME_to_tm(na, &tm)) {
            *err = xasprintf("%s: unreadable validity", cert_path);
            goto fail;
        }
        m->inter_not_after = timegm(&tm);
        if (m->inter_not_after <= now + MITM_LEAF_RENEW_SECS ||
            X509_cmp_current_time(X509_get0_notAfter(m->root)) <= 0) {
            *err = xasprintf("the CA in %s has expired (or expires within a day); run "
                             "`credproxy ca init --force` and give agents the new ca.pem",
                             cert_path);
            goto fail;
        }
    }

    m->leaf_key = EVP_EC_gen("P-256");
    if (!m->leaf_key) {
        *err = mitm_ssl_error_text("cannot generate the leaf key");
        goto fail;
    }

    /* The mintable names: mapped hosts both CA certificates' constraints allow. */
    m->hosts = xcalloc(cfg->nsites + 1, sizeof(*m->hosts));
    bool gateway = false; /* issue 10: api.atlassian.com is mintable for a gateway credential */
    for (size_t i = 0; i < cfg->ncredentials; i++)
        gateway = gateway || cfg->credentials[i].via_gateway;
    for (size_t i = 0; i < cfg->nsites + (gateway ? 1 : 0); i++) {
        const char *h = i < cfg->nsites ? cfg->sites[i].host : CONFIG_GATEWAY_HOST;
        bool dup = false;
        for (size_t j = 0; j < m->nhosts; j++)
            dup = dup || strcmp(m->hosts[j], h) == 0;
        if (dup || !mitm_host_valid(h))
            continue;
        if (mitm_cert_permits(m->inter, h) && mitm_cert_permits(m->root, h)) {
            m->hosts[m->nhosts++] = xstrdup(h);
        } else {
            char *next = uncovered ? xasprintf("%s, %s", uncovered, h) : xstrdup(h);
            free(uncovered);
            uncovered = next;
        }
    }
    if (uncovered) {
        *warning = xasprintf("the CA in %s was made for other sites and cannot serve %s: "
                             "CONNECT to them is refused; run `credproxy ca init --force` "
                             "and give agents the new ca.pem",
                             cert_path, uncovered);
        free(uncovered);
    }

    for (int i = 0; i < ncerts; i++)
        X509_free(certs[i]);
    util_secure_zero(key, key_len);
    free(key);
    free(pem);
    return m;

fail:
    for (int i = 0; i < ncerts; i++)
        X509_free(certs[i]);
    if (key) {
        util_secure_zero(key, key_len);
        free(key);
    }
    free(pem);
    free(uncovered);
    mitm_free(m);
    return NULL;
}

void mitm_free(struct mitm *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->nentries; i++)
        SSL_CTX_free(m->entries[i].ctx);
    for (size_t i = 0; i < m->nhosts; i++)
        free(m->hosts[i]);
    free(m->hosts);
    X509_free(m->root);
    X509_free(m->inter);
    EVP_PKEY_free(m->inter_key); /* EC keys are cleared by OpenSSL on free */
    EVP_PKEY_free(m->leaf_key);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

/* ---- leaves ----------------------------------------------------------------------- */

/* ALPN: http/1.1 is the only protocol spoken inside a tunnel; otherwise no ALPN at all. */
static int mitm_alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                            const unsigned char *in, unsigned int inlen, void *arg)
{
    static const char want[] = "http/1.1";
    unsigned int i = 0;

    while (i < inlen) {
        unsigned int len = in[i];
        if (i + 1 + len > inlen)
            break;
        if (len == sizeof(want) - 1 && memcmp(in + i + 1, want, len) == 0) {
            *out = in + i + 1;
            *outlen = (unsigned char)len;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + len;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

/* SNI must name the leaf's host (its only SAN); an absent or other name ends the handshake. */
static int mitm_servername_check(SSL *ssl, int *alert, void *arg)
{
    const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    X509 *leaf = SSL_get_certificate(ssl);

    if (!sni || !leaf || X509_check_host(leaf, sni, 0, X509_CHECK_FLAG_NO_WILDCARDS, NULL) != 1) {
        *alert = SSL_AD_UNRECOGNIZED_NAME;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    return SSL_TLSEXT_ERR_OK;
}

/* A fresh leaf for host, built from scratch (nothing copied from any upstream). */
static X509 *mitm_make_leaf(struct mitm *m, const char *host)
{
    X509 *x = X509_new();
    GENERAL_NAMES *san = NULL;
    GENERAL_NAME *gn = NULL;
    ASN1_IA5STRING *ia5 = NULL;

    if (!x || !X509_set_version(x, 2) || mitm_set_random_serial(x) != 0 ||
        !X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_UTF8,
                                    (const unsigned char *)host, -1, -1, 0) ||
        !X509_set_issuer_name(x, X509_get_subject_name(m->inter)) ||
        mitm_set_validity(x, MITM_LEAF_DAYS, m->inter_not_after) != 0 ||
        !X509_set_pubkey(x, m->leaf_key))
        goto fail;
    if (mitm_add_ext(m->inter, x, NID_basic_constraints, "critical,CA:FALSE") != 0 ||
        mitm_add_ext(m->inter, x, NID_key_usage, "critical,digitalSignature") != 0 ||
        mitm_add_ext(m->inter, x, NID_ext_key_usage, "serverAuth") != 0 ||
        mitm_add_ext(m->inter, x, NID_subject_key_identifier, "hash") != 0 ||
        mitm_add_ext(m->inter, x, NID_authority_key_identifier, "keyid:always") != 0)
        goto fail;
    san = GENERAL_NAMES_new();
    gn = GENERAL_NAME_new();
    ia5 = ASN1_IA5STRING_new();
    if (!san || !gn || !ia5 || !ASN1_STRING_set(ia5, host, (int)strlen(host)))
        goto fail;
    GENERAL_NAME_set0_value(gn, GEN_DNS, ia5);
    ia5 = NULL;
    if (!sk_GENERAL_NAME_push(san, gn))
        goto fail;
    gn = NULL;
    if (!X509_add1_ext_i2d(x, NID_subject_alt_name, san, 0, X509V3_ADD_DEFAULT))
        goto fail;
    GENERAL_NAMES_free(san);
    if (!X509_sign(x, m->inter_key, EVP_sha256())) {
        san = NULL;
        goto fail;
    }
    return x;
fail:
    ASN1_IA5STRING_free(ia5);
    GENERAL_NAME_free(gn);
    GENERAL_NAMES_free(san);
    X509_free(x);
    return NULL;
}

/* A ready server context for host. Returns a new context (one reference) or NULL. */
static SSL_CTX *mitm_mint_ctx(struct mitm *m, const char *host)
{
    X509 *leaf = mitm_make_leaf(m, host);
    SSL_CTX *ctx = leaf ? SSL_CTX_new(TLS_server_method()) : NULL;

    if (!ctx)
        goto fail;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_use_certificate(ctx, leaf) != 1 || SSL_CTX_use_PrivateKey(ctx, m->leaf_key) != 1 ||
        SSL_CTX_add1_chain_cert(ctx, m->inter) != 1 || SSL_CTX_check_private_key(ctx) != 1)
        goto fail;
    SSL_CTX_set_alpn_select_cb(ctx, mitm_alpn_select, NULL);
    SSL_CTX_set_tlsext_servername_callback(ctx, mitm_servername_check);
    X509_free(leaf);
    return ctx;
fail:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    X509_free(leaf);
    return NULL;
}

static void lru_unlink(struct mitm *m, struct mitm_entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        m->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        m->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push_front(struct mitm *m, struct mitm_entry *e)
{
    e->prev = NULL;
    e->next = m->head;
    if (m->head)
        m->head->prev = e;
    m->head = e;
    if (!m->tail)
        m->tail = e;
}

/*
 * Linear search: at most MITM_LRU_MAX short strcmp's under the lock, well
 * under a microsecond at the sizes a config allows; a hash table would buy
 * nothing measurable. Caller holds m->lock.
 */
static struct mitm_entry *lru_find(struct mitm *m, const char *host)
{
    for (struct mitm_entry *e = m->head; e; e = e->next)
        if (strcmp(e->host, host) == 0)
            return e;
    return NULL;
}

SSL_CTX *mitm_ctx_for_host(struct mitm *m, const char *host)
{
    char name[HOSTMAP_HOST_BUF];
    size_t len;
    bool mapped = false;
    struct mitm_entry *e;
    SSL_CTX *ctx, *minted;
    time_t now;

    if (!m || !host)
        return NULL;
    len = strlen(host);
    if (len == 0 || len > HOSTMAP_MAX_HOST)
        return NULL;
    for (size_t i = 0; i <= len; i++)
        name[i] = (host[i] >= 'A' && host[i] <= 'Z') ? (char)(host[i] - 'A' + 'a') : host[i];
    if (!mitm_host_valid(name))
        return NULL;
    for (size_t i = 0; i < m->nhosts && !mapped; i++)
        mapped = strcmp(m->hosts[i], name) == 0;
    if (!mapped)
        return NULL;

    now = time(NULL);
    pthread_mutex_lock(&m->lock);
    e = lru_find(m, name);
    if (e && now < e->renew_at) {
        lru_unlink(m, e);
        lru_push_front(m, e);
        ctx = e->ctx;
        SSL_CTX_up_ref(ctx);
        pthread_mutex_unlock(&m->lock);
        return ctx;
    }
    pthread_mutex_unlock(&m->lock);

    /* Mint outside the lock: other hosts keep being served meanwhile. */
    minted = mitm_mint_ctx(m, name);
    if (!minted)
        return NULL;

    pthread_mutex_lock(&m->lock);
    e = lru_find(m, name);
    if (e && now < e->renew_at) {
        /* Another thread minted it first: use theirs, so everyone shares one context. */
        ctx = e->ctx;
        SSL_CTX_up_ref(ctx);
        pthread_mutex_unlock(&m->lock);
        SSL_CTX_free(minted);
        return ctx;
    }
    if (e) {
        lru_unlink(m, e); /* stale: replaced in place */
        SSL_CTX_free(e->ctx);
    } else if (m->nentries < MITM_LRU_MAX) {
        e = &m->entries[m->nentries++];
    } else {
        e = m->tail; /* least recently used */
        lru_unlink(m, e);
        SSL_CTX_free(e->ctx); /* holders of references keep theirs alive */
    }
    memcpy(e->host, name, len + 1);
    e->ctx = minted;
    {
        time_t end = now + (time_t)MITM_LEAF_DAYS * 86400;
        if (end > m->inter_not_after)
            end = m->inter_not_after;
        e->renew_at = end - MITM_LEAF_RENEW_SECS;
    }
    lru_push_front(m, e);
    SSL_CTX_up_ref(minted);
    pthread_mutex_unlock(&m->lock);
    return minted;
}

size_t mitm_cache_size(struct mitm *m)
{
    size_t n;
    if (!m)
        return 0;
    pthread_mutex_lock(&m->lock);
    n = m->nentries;
    pthread_mutex_unlock(&m->lock);
    return n;
}
