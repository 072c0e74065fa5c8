/*
 * mitm_ca: `credproxy ca init`, apart from loading the CA and minting leaves
 * (mitm.c). See mitm.h for the layout it writes and why.
 */
#define _GNU_SOURCE
#include "mitm.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "mitm_x509.h"
#include "util.h"

/* Name constraints name -> tree: permitted DNS names plus excluded 0.0.0.0/0 and ::/0. */
static NAME_CONSTRAINTS *mitm_build_constraints(char **names, size_t n)
{
    NAME_CONSTRAINTS *nc = NAME_CONSTRAINTS_new();
    static const unsigned char zero[32];

    if (!nc)
        return NULL;
    nc->permittedSubtrees = sk_GENERAL_SUBTREE_new_null();
    nc->excludedSubtrees = sk_GENERAL_SUBTREE_new_null();
    if (!nc->permittedSubtrees || !nc->excludedSubtrees)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        GENERAL_SUBTREE *st = GENERAL_SUBTREE_new();
        ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
        if (!st || !ia5 || !ASN1_STRING_set(ia5, names[i], (int)strlen(names[i]))) {
            GENERAL_SUBTREE_free(st);
            ASN1_IA5STRING_free(ia5);
            goto fail;
        }
        GENERAL_NAME_set0_value(st->base, GEN_DNS, ia5);
        if (!sk_GENERAL_SUBTREE_push(nc->permittedSubtrees, st)) {
            GENERAL_SUBTREE_free(st);
            goto fail;
        }
    }
    /* IPv4 address+mask (8 bytes of zero = 0.0.0.0/0), IPv6 (32 bytes = ::/0). */
    for (int len = 8; len <= 32; len += 24) {
        GENERAL_SUBTREE *st = GENERAL_SUBTREE_new();
        ASN1_OCTET_STRING *ip = ASN1_OCTET_STRING_new();
        if (!st || !ip || !ASN1_OCTET_STRING_set(ip, zero, len)) {
            GENERAL_SUBTREE_free(st);
            ASN1_OCTET_STRING_free(ip);
            goto fail;
        }
        GENERAL_NAME_set0_value(st->base, GEN_IPADD, ip);
        if (!sk_GENERAL_SUBTREE_push(nc->excludedSubtrees, st)) {
            GENERAL_SUBTREE_free(st);
            goto fail;
        }
    }
    return nc;
fail:
    NAME_CONSTRAINTS_free(nc);
    return NULL;
}

/* The permitted DNS subtrees for cfg's sites, deduplicated. Returns count; *out owned by caller. */
static size_t mitm_constraint_names(const struct config *cfg, char ***out)
{
    char **names = xcalloc(cfg->nsites ? cfg->nsites : 1, sizeof(*names));
    size_t n = 0;

    for (size_t i = 0; i < cfg->nsites; i++) {
        const struct config_site *s = &cfg->sites[i];
        /* domain: sites all live under atlassian.net: one subtree serves every one of them,
         * so adding an Atlassian site needs no new CA. host: sites get their exact name. */
        const char *name = s->host;
        if (s->domain) {
            const char *dot = strchr(s->host, '.');
            name = dot ? dot + 1 : s->host;
        }
        bool dup = false;
        for (size_t j = 0; j < n; j++)
            dup = dup || strcmp(names[j], name) == 0;
        if (!dup)
            names[n++] = xstrdup(name);
    }
    /* Issue 10: api.atlassian.com (that exact name) when a credential goes through the gateway. */
    for (size_t i = 0; i < cfg->ncredentials; i++) {
        if (!cfg->credentials[i].via_gateway)
            continue;
        names = xrealloc(names, (n + 1) * sizeof(*names));
        names[n++] = xstrdup(CONFIG_GATEWAY_HOST);
        break;
    }
    *out = names;
    return n;
}

static void mitm_free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/*
 * A CA certificate for key, signed by signer_key (issuer = issuer cert, or
 * itself when NULL). Returns a new X509 or NULL.
 */
static X509 *mitm_make_ca_cert(EVP_PKEY *key, const char *cn, long days, int pathlen,
                               NAME_CONSTRAINTS *nc, X509 *issuer, EVP_PKEY *signer_key)
{
    X509 *x = X509_new();
    char bc[32];

    if (!x || !X509_set_version(x, 2) || mitm_set_random_serial(x) != 0 ||
        mitm_set_subject(x, cn) != 0 || mitm_set_validity(x, days, 0) != 0 ||
        !X509_set_pubkey(x, key))
        goto fail;
    if (!X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : X509_get_subject_name(x)))
        goto fail;
    snprintf(bc, sizeof(bc), "critical,CA:TRUE,pathlen:%d", pathlen);
    if (mitm_add_ext(issuer ? issuer : x, x, NID_basic_constraints, bc) != 0 ||
        mitm_add_ext(issuer ? issuer : x, x, NID_key_usage, "critical,keyCertSign,cRLSign") != 0 ||
        mitm_add_ext(issuer ? issuer : x, x, NID_subject_key_identifier, "hash") != 0 ||
        mitm_add_ext(issuer ? issuer : x, x, NID_authority_key_identifier, "keyid:always") != 0)
        goto fail;
    /* The intermediate can only ever sign TLS server certificates. */
    if (issuer && mitm_add_ext(issuer, x, NID_ext_key_usage, "serverAuth") != 0)
        goto fail;
    if (!X509_add1_ext_i2d(x, NID_name_constraints, nc, 1, X509V3_ADD_DEFAULT))
        goto fail;
    if (!X509_sign(x, signer_key, EVP_sha256()))
        goto fail;
    return x;
fail:
    X509_free(x);
    return NULL;
}

/* PEM of one certificate appended to bio. 0 or -1. */
static int mitm_pem_cert(BIO *bio, X509 *x)
{
    return PEM_write_bio_X509(bio, x) ? 0 : -1;
}

int mitm_ca_init(const struct config *cfg, const char *dir, bool force, char **err)
{
    char *pem_path = NULL, *key_path = NULL, **names = NULL;
    char host[256] = "localhost", *root_cn = NULL, *inter_cn = NULL;
    size_t nnames = 0;
    EVP_PKEY *root_key = NULL, *inter_key = NULL;
    X509 *root = NULL, *inter = NULL;
    NAME_CONSTRAINTS *nc = NULL;
    BIO *pem = NULL, *keybio = NULL;
    struct stat st;
    int rc = -1;

    *err = NULL;
    if (!dir || !*dir)
        dir = "certs";
    if (cfg->nsites == 0) {
        *err = xstrdup("no sites are configured: the CA would not be constrained to any name");
        return -1;
    }
    for (size_t i = 0; i < cfg->nsites; i++) {
        if (!mitm_host_valid(cfg->sites[i].host)) {
            *err = xasprintf("site '%s' is not a DNS host name a certificate can name",
                             cfg->sites[i].host);
            return -1;
        }
    }
    pem_path = xasprintf("%s/ca.pem", dir);
    key_path = xasprintf("%s/ca.key", dir);
    if (!force && (lstat(pem_path, &st) == 0 || lstat(key_path, &st) == 0)) {
        *err = xasprintf("%s already exists; not replacing it without --force (agents that "
                         "trust the old CA must then be given the new ca.pem)",
                         lstat(pem_path, &st) == 0 ? pem_path : key_path);
        rc = 1;
        goto out;
    }
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        *err = xasprintf("cannot create %s: %s", dir, strerror(errno));
        goto out;
    }

    (void)gethostname(host, sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    root_cn = xasprintf("credproxy local CA (%.*s)", 40, host);
    inter_cn = xasprintf("credproxy local intermediate (%.*s)", 40, host);

    nnames = mitm_constraint_names(cfg, &names);
    nc = mitm_build_constraints(names, nnames);
    root_key = EVP_EC_gen("P-256");
    inter_key = EVP_EC_gen("P-256");
    if (!nc || !root_key || !inter_key) {
        *err = mitm_ssl_error_text("cannot generate the CA keys");
        goto out;
    }
    root = mitm_make_ca_cert(root_key, root_cn, MITM_ROOT_DAYS, 1, nc, NULL, root_key);
    inter =
        root ? mitm_make_ca_cert(inter_key, inter_cn, MITM_INTERMEDIATE_DAYS, 0, nc, root, root_key)
             : NULL;
    if (!root || !inter) {
        *err = mitm_ssl_error_text("cannot build the CA certificates");
        goto out;
    }
    /* The root key's only job is done: it is freed below and never written anywhere. */

    pem = BIO_new(BIO_s_mem());
    keybio = BIO_new(BIO_s_mem());
    if (!pem || !keybio || mitm_pem_cert(pem, root) != 0 || mitm_pem_cert(pem, inter) != 0 ||
        !PEM_write_bio_PrivateKey(keybio, inter_key, NULL, NULL, 0, NULL, NULL)) {
        *err = mitm_ssl_error_text("cannot encode the CA");
        goto out;
    }
    {
        char *data;
        long len = BIO_get_mem_data(keybio, &data);
        /* Key first: a reader racing us sees a mismatch (refused with a message), never a
         * new root with an old key silently. */
        if (util_write_atomic(key_path, data, (size_t)len, 0600, err) != 0)
            goto out;
        len = BIO_get_mem_data(pem, &data);
        if (util_write_atomic(pem_path, data, (size_t)len, 0644, err) != 0)
            goto out;
    }
    rc = 0;
out:
    if (keybio) {
        char *data;
        long len = BIO_get_mem_data(keybio, &data);
        if (len > 0)
            util_secure_zero(data, (size_t)len);
    }
    BIO_free(keybio);
    BIO_free(pem);
    X509_free(root);
    X509_free(inter);
    EVP_PKEY_free(root_key);
    EVP_PKEY_free(inter_key);
    NAME_CONSTRAINTS_free(nc);
    mitm_free_names(names, nnames);
    free(root_cn);
    free(inter_cn);
    free(pem_path);
    free(key_path);
    return rc;
}
