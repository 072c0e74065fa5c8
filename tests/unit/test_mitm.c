/*
 * test_mitm: the interception CA. `ca init` files and modes, the name
 * constraints (present, critical, and honoured by OpenSSL's verifier: a leaf
 * for any other name signed with the real intermediate key fails), minted
 * leaves (exact SAN, validity, issuer), refusals, the LRU bound and order,
 * load errors, real in-memory TLS handshakes (SNI, ALPN), and the cost of
 * minting.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "mitm.h"
#include "testlib.h"
#include "util.h"

#define NSITES_MAX (MITM_LRU_MAX + 10)

struct fixture {
    struct config cfg;
    struct config_site sites[NSITES_MAX];
    char *names[NSITES_MAX];
};

/* A config with the given hosts ("d:acme" = domain site acme.atlassian.net, else host:). */
static void fixture_init(struct fixture *f, const char *dir, const char *const *hosts, size_t n)
{
    memset(f, 0, sizeof(*f));
    for (size_t i = 0; i < n; i++) {
        if (strncmp(hosts[i], "d:", 2) == 0) {
            f->sites[i].domain = xstrdup(hosts[i] + 2);
            f->sites[i].host = xasprintf("%s.atlassian.net", hosts[i] + 2);
        } else {
            f->sites[i].host = xstrdup(hosts[i]);
        }
        f->sites[i].port = 443;
    }
    f->cfg.sites = f->sites;
    f->cfg.nsites = n;
    f->cfg.interception.ca_cert = xasprintf("%s/ca.pem", dir);
    f->cfg.interception.ca_key = xasprintf("%s/ca.key", dir);
}

static void fixture_clear(struct fixture *f)
{
    for (size_t i = 0; i < f->cfg.nsites; i++) {
        free(f->sites[i].host);
        free(f->sites[i].domain);
    }
    free(f->cfg.interception.ca_cert);
    free(f->cfg.interception.ca_key);
}

static char *make_tmpdir(void)
{
    char tmpl[] = "/tmp/test_mitm.XXXXXX";
    char *d = mkdtemp(tmpl);
    return d ? xstrdup(d) : NULL;
}

static void rm_rf(const char *dir)
{
    char *cmd = xasprintf("rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
    free(cmd);
}

/* Reads ca.pem: certs[0] = root, certs[1] = intermediate. Returns how many were read. */
static int read_chain(const char *dir, X509 **root, X509 **inter)
{
    char *path = xasprintf("%s/ca.pem", dir);
    FILE *f = fopen(path, "r");
    int n = 0;
    *root = *inter = NULL;
    free(path);
    if (!f)
        return 0;
    *root = PEM_read_X509(f, NULL, NULL, NULL);
    if (*root)
        n++;
    *inter = PEM_read_X509(f, NULL, NULL, NULL);
    if (*inter)
        n++;
    X509 *extra = PEM_read_X509(f, NULL, NULL, NULL);
    if (extra) {
        n++;
        X509_free(extra);
    }
    ERR_clear_error();
    fclose(f);
    return n;
}

static EVP_PKEY *read_key(const char *dir)
{
    char *path = xasprintf("%s/ca.key", dir);
    FILE *f = fopen(path, "r");
    EVP_PKEY *k = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    free(path);
    return k;
}

/* X509_verify_cert of leaf against root with inter as the untrusted chain. Returns the error. */
static int verify_leaf(X509 *root, X509 *inter, X509 *leaf, const char *host)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *sctx = X509_STORE_CTX_new();
    STACK_OF(X509) *chain = sk_X509_new_null();
    int err = -1;

    X509_STORE_add_cert(store, root);
    sk_X509_push(chain, inter);
    if (X509_STORE_CTX_init(sctx, store, leaf, chain) == 1) {
        X509_VERIFY_PARAM *p = X509_STORE_CTX_get0_param(sctx);
        X509_STORE_CTX_set_purpose(sctx, X509_PURPOSE_SSL_SERVER);
        X509_VERIFY_PARAM_set_flags(p, X509_V_FLAG_X509_STRICT);
        if (host)
            X509_VERIFY_PARAM_set1_host(p, host, 0);
        if (X509_verify_cert(sctx) == 1)
            err = X509_V_OK;
        else
            err = X509_STORE_CTX_get_error(sctx);
    }
    sk_X509_free(chain);
    X509_STORE_CTX_free(sctx);
    X509_STORE_free(store);
    ERR_clear_error();
    return err;
}

/* A leaf made by the test with the real intermediate key: DNS name or IP literal as SAN. */
static X509 *hand_leaf(X509 *inter, EVP_PKEY *inter_key, const char *dns, const char *ip)
{
    X509 *x = X509_new();
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509V3_CTX v3;
    char *san = dns ? xasprintf("DNS:%s", dns) : xasprintf("IP:%s", ip);
    X509_EXTENSION *ext;

    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 4242);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_UTF8,
                               (const unsigned char *)(dns ? dns : ip), -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(inter));
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, k);
    X509V3_set_ctx(&v3, inter, x, NULL, NULL, 0);
    const char *exts[][2] = {
        {"basicConstraints", "critical,CA:FALSE"},  {"keyUsage", "critical,digitalSignature"},
        {"extendedKeyUsage", "serverAuth"},         {"subjectKeyIdentifier", "hash"},
        {"authorityKeyIdentifier", "keyid:always"}, {"subjectAltName", san}};
    for (size_t i = 0; i < UTIL_ARRAY_LEN(exts); i++) {
        ext = X509V3_EXT_conf(NULL, &v3, exts[i][0], exts[i][1]);
        X509_add_ext(x, ext, -1);
        X509_EXTENSION_free(ext);
    }
    X509_sign(x, inter_key, EVP_sha256());
    EVP_PKEY_free(k);
    free(san);
    return x;
}

/* x's authority key id is issuer's subject key id. */
static bool akid_matches(X509 *issuer, X509 *x)
{
    const ASN1_OCTET_STRING *akid = X509_get0_authority_key_id(x);
    const ASN1_OCTET_STRING *skid = X509_get0_subject_key_id(issuer);
    return akid && skid && ASN1_OCTET_STRING_cmp(akid, skid) == 0;
}

/* Name constraints of x: whether critical, and the permitted DNS names joined by ','. */
static char *constraints_of(X509 *x, bool *critical, int *nexcluded_ip)
{
    int idx = X509_get_ext_by_NID(x, NID_name_constraints, -1);
    NAME_CONSTRAINTS *nc;
    char *out = xstrdup("");
    *critical = false;
    *nexcluded_ip = 0;
    if (idx < 0)
        return out;
    *critical = X509_EXTENSION_get_critical(X509_get_ext(x, idx)) == 1;
    nc = X509_get_ext_d2i(x, NID_name_constraints, NULL, NULL);
    for (int i = 0; nc && i < sk_GENERAL_SUBTREE_num(nc->permittedSubtrees); i++) {
        GENERAL_NAME *g = sk_GENERAL_SUBTREE_value(nc->permittedSubtrees, i)->base;
        if (g->type == GEN_DNS) {
            char *next = xasprintf("%s%s%s", out, *out ? "," : "",
                                   (const char *)ASN1_STRING_get0_data(g->d.dNSName));
            free(out);
            out = next;
        }
    }
    for (int i = 0; nc && i < sk_GENERAL_SUBTREE_num(nc->excludedSubtrees); i++) {
        GENERAL_NAME *g = sk_GENERAL_SUBTREE_value(nc->excludedSubtrees, i)->base;
        const unsigned char *d = ASN1_STRING_get0_data(g->d.iPAddress);
        int len = ASN1_STRING_length(g->d.iPAddress);
        bool all_zero = true;
        for (int j = 0; g->type == GEN_IPADD && j < len; j++)
            all_zero = all_zero && d[j] == 0;
        if (g->type == GEN_IPADD && all_zero && (len == 8 || len == 32))
            (*nexcluded_ip)++;
    }
    NAME_CONSTRAINTS_free(nc);
    return out;
}

static void test_ca_init_files(const char *dir)
{
    static const char *const hosts[] = {"d:acme", "d:acme-sandbox", "jira.example.org"};
    struct fixture f;
    struct stat st;
    char *err = NULL, *pem_path = xasprintf("%s/ca.pem", dir), *key_path;
    char *before, *after;

    key_path = xasprintf("%s/ca.key", dir);
    fixture_init(&f, dir, hosts, 3);
    CHECK(mitm_ca_init(&f.cfg, dir, false, &err) == 0);
    CHECK(err == NULL);
    free(err);
    err = NULL;
    CHECK(stat(pem_path, &st) == 0 && (st.st_mode & 07777) == 0644);
    CHECK(stat(key_path, &st) == 0 && (st.st_mode & 07777) == 0600);

    /* No temp files left behind. */
    {
        char *cmd = xasprintf("ls -A '%s' | grep -c tmp", dir);
        FILE *p = popen(cmd, "r");
        char line[32] = "";
        CHECK(p && fgets(line, sizeof(line), p) && atoi(line) == 0);
        if (p)
            pclose(p);
        free(cmd);
    }

    before = test_read_file(pem_path);
    CHECK(strstr(before, "BEGIN CERTIFICATE") != NULL);
    CHECK(strstr(before, "PRIVATE") == NULL);
    CHECK(mitm_ca_init(&f.cfg, dir, false, &err) == 1);
    CHECK(err && strstr(err, "--force"));
    CHECK(err && strstr(err, "BEGIN") == NULL);
    free(err);
    err = NULL;
    after = test_read_file(pem_path);
    CHECK(strcmp(before, after) == 0); /* untouched without --force */
    free(after);
    CHECK(mitm_ca_init(&f.cfg, dir, true, &err) == 0);
    free(err);
    err = NULL;
    after = test_read_file(pem_path);
    CHECK(strcmp(before, after) != 0); /* replaced with --force */
    CHECK(stat(key_path, &st) == 0 && (st.st_mode & 07777) == 0600);
    {
        char *key = test_read_file(key_path);
        /* ca.key holds exactly one key: the intermediate's (the root key was discarded). */
        char *first = strstr(key, "BEGIN PRIVATE KEY");
        CHECK(first && strstr(first + 1, "BEGIN") == NULL);
        free(key);
    }
    free(before);
    free(after);

    /* The structure: root then intermediate, constraints on both, critical. */
    X509 *root, *inter;
    CHECK(read_chain(dir, &root, &inter) == 2);
    if (root && inter) {
        bool crit;
        int nip;
        char *perm;
        CHECK(X509_check_issued(root, root) == X509_V_OK);
        CHECK(X509_check_issued(root, inter) == X509_V_OK);
        CHECK(X509_check_issued(inter, inter) != X509_V_OK);
        CHECK(X509_get_pathlen(root) == 1);
        CHECK(X509_get_pathlen(inter) == 0);
        CHECK(X509_check_ca(root) >= 1 && X509_check_ca(inter) >= 1);
        CHECK(X509_get_key_usage(root) == (KU_KEY_CERT_SIGN | KU_CRL_SIGN));
        CHECK(X509_get0_subject_key_id(root) && X509_get0_subject_key_id(inter));
        CHECK(akid_matches(root, inter));
        {
            char cn[256] = "";
            X509_NAME_get_text_by_NID(X509_get_subject_name(root), NID_commonName, cn, sizeof(cn));
            CHECK_MSG(strncmp(cn, "credproxy local CA (", 20) == 0, "root CN %s", cn);
        }
        CHECK(X509_cmp_time(X509_get0_notAfter(root), &(time_t){time(NULL) + 9L * 365 * 86400}) >
              0);
        CHECK(ASN1_TIME_compare(X509_get0_notAfter(inter), X509_get0_notAfter(root)) < 0);
        for (int i = 0; i < 2; i++) {
            perm = constraints_of(i ? inter : root, &crit, &nip);
            CHECK(crit);
            CHECK_STR(perm, "atlassian.net,jira.example.org");
            CHECK(nip == 2); /* 0.0.0.0/0 and ::/0 excluded */
            free(perm);
        }
        {
            const BIGNUM *bn = NULL;
            ASN1_INTEGER *s = X509_get_serialNumber(root);
            BIGNUM *b = ASN1_INTEGER_to_BN(s, NULL);
            bn = b;
            CHECK(BN_num_bits(bn) >= 120);
            BN_free(b);
        }
    }
    X509_free(root);
    X509_free(inter);
    fixture_clear(&f);
    free(pem_path);
    free(key_path);
}

static void test_ca_init_errors(void)
{
    static const char *const bad[] = {"*.atlassian.net"};
    char *dir = make_tmpdir(), *sub, *err = NULL;
    struct fixture f;

    fixture_init(&f, dir, bad, 1);
    CHECK(mitm_ca_init(&f.cfg, dir, false, &err) == -1);
    CHECK(err != NULL);
    free(err);
    err = NULL;
    fixture_clear(&f);

    /* No sites: an unconstrained CA is never made. */
    fixture_init(&f, dir, bad, 0);
    CHECK(mitm_ca_init(&f.cfg, dir, false, &err) == -1);
    free(err);
    err = NULL;
    fixture_clear(&f);

    /* A missing DIR is created; an impossible one is an error. */
    static const char *const ok[] = {"d:acme"};
    sub = xasprintf("%s/new", dir);
    fixture_init(&f, sub, ok, 1);
    CHECK(mitm_ca_init(&f.cfg, sub, false, &err) == 0);
    free(err);
    err = NULL;
    CHECK(mitm_ca_init(&f.cfg, "/proc/no/such/dir", false, &err) == -1);
    CHECK(err && strstr(err, "/proc/no/such/dir"));
    free(err);
    fixture_clear(&f);
    free(sub);
    rm_rf(dir);
    free(dir);
}

static long leaf_serial_bits(X509 *x)
{
    BIGNUM *b = ASN1_INTEGER_to_BN(X509_get_serialNumber(x), NULL);
    long n = BN_num_bits(b);
    BN_free(b);
    return n;
}

static void test_leaves(const char *dir)
{
    static const char *const hosts[] = {"d:acme", "d:acme-sandbox", "jira.example.org"};
    struct fixture f;
    char *err = NULL, *warn = NULL;
    struct mitm *m;
    X509 *root, *inter;
    EVP_PKEY *inter_key;

    fixture_init(&f, dir, hosts, 3);
    m = mitm_load(&f.cfg, &err, &warn);
    CHECK_MSG(m != NULL, "%s", err ? err : "");
    CHECK(err == NULL && warn == NULL);
    read_chain(dir, &root, &inter);
    inter_key = read_key(dir);
    CHECK(root && inter && inter_key);
    if (!m || !root || !inter || !inter_key)
        goto out;

    SSL_CTX *ctx = mitm_ctx_for_host(m, "acme.atlassian.net");
    CHECK(ctx != NULL);
    X509 *leaf = ctx ? SSL_CTX_get0_certificate(ctx) : NULL;
    CHECK(leaf != NULL);
    if (leaf) {
        CHECK_MSG(
            verify_leaf(root, inter, leaf, "acme.atlassian.net") == X509_V_OK, "%s",
            X509_verify_cert_error_string(verify_leaf(root, inter, leaf, "acme.atlassian.net")));
        CHECK(verify_leaf(root, inter, leaf, "acme-sandbox.atlassian.net") ==
              X509_V_ERR_HOSTNAME_MISMATCH);
        CHECK(verify_leaf(root, inter, leaf, "x.acme.atlassian.net") ==
              X509_V_ERR_HOSTNAME_MISMATCH);

        /* SAN is exactly the host: one DNS name, no wildcard. */
        GENERAL_NAMES *san = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
        CHECK(san && sk_GENERAL_NAME_num(san) == 1);
        if (san && sk_GENERAL_NAME_num(san) == 1) {
            GENERAL_NAME *g = sk_GENERAL_NAME_value(san, 0);
            CHECK(g->type == GEN_DNS);
            CHECK_STR((const char *)ASN1_STRING_get0_data(g->d.dNSName), "acme.atlassian.net");
        }
        GENERAL_NAMES_free(san);
        char cn[256] = "";
        X509_NAME_get_text_by_NID(X509_get_subject_name(leaf), NID_commonName, cn, sizeof(cn));
        CHECK_STR(cn, "acme.atlassian.net");
        CHECK(X509_get_extended_key_usage(leaf) == XKU_SSL_SERVER);
        CHECK(X509_get_key_usage(leaf) == KU_DIGITAL_SIGNATURE);
        CHECK(X509_check_ca(leaf) == 0);

        /* Issuer = the intermediate (name and key id), validity: 1 h back, MITM_LEAF_DAYS on. */
        CHECK(X509_NAME_cmp(X509_get_issuer_name(leaf), X509_get_subject_name(inter)) == 0);
        CHECK(akid_matches(inter, leaf));
        CHECK(X509_check_issued(inter, leaf) == X509_V_OK);
        time_t now = time(NULL);
        int days = 0, secs = 0;
        ASN1_TIME *t_now = ASN1_TIME_set(NULL, now);
        ASN1_TIME_diff(&days, &secs, t_now, X509_get0_notBefore(leaf));
        CHECK_MSG(days == 0 && secs <= -MITM_CLOCK_SKEW_SECS + 5 &&
                      secs >= -MITM_CLOCK_SKEW_SECS - 5,
                  "notBefore offset %d d %d s", days, secs);
        ASN1_TIME_diff(&days, &secs, t_now, X509_get0_notAfter(leaf));
        CHECK_MSG(days == MITM_LEAF_DAYS || (days == MITM_LEAF_DAYS - 1 && secs > 86390),
                  "notAfter offset %d d %d s", days, secs);
        ASN1_TIME_free(t_now);
        CHECK(leaf_serial_bits(leaf) >= 120);
        /* The leaf key is not the CA key. */
        CHECK(X509_check_private_key(leaf, inter_key) != 1);
        ERR_clear_error();
    }

    /* One leaf key for every host; a different serial for each. */
    SSL_CTX *ctx2 = mitm_ctx_for_host(m, "jira.example.org");
    CHECK(ctx2 != NULL);
    if (ctx && ctx2) {
        X509 *l2 = SSL_CTX_get0_certificate(ctx2);
        CHECK(EVP_PKEY_eq(X509_get0_pubkey(leaf), X509_get0_pubkey(l2)) == 1);
        CHECK(ASN1_INTEGER_cmp(X509_get_serialNumber(leaf), X509_get_serialNumber(l2)) != 0);
        CHECK(verify_leaf(root, inter, l2, "jira.example.org") == X509_V_OK);
        /* The chain the server sends: the intermediate after the leaf, not the root. */
        STACK_OF(X509) *chain = NULL;
        SSL_CTX_get0_chain_certs(ctx2, &chain);
        CHECK(chain && sk_X509_num(chain) == 1 && X509_cmp(sk_X509_value(chain, 0), inter) == 0);
    }
    /* A hit hands out the same context; case is folded. */
    SSL_CTX *again = mitm_ctx_for_host(m, "ACME.Atlassian.NET");
    CHECK(again == ctx);
    SSL_CTX_free(again);

    /* The constraints are honoured: a leaf signed with the real intermediate key for any
     * other name, or for an IP, fails verification on the name constraints. */
    {
        X509 *evil = hand_leaf(inter, inter_key, "evil.example.com", NULL);
        int e = verify_leaf(root, inter, evil, "evil.example.com");
        CHECK_MSG(e == X509_V_ERR_PERMITTED_VIOLATION, "got %s", X509_verify_cert_error_string(e));
        X509_free(evil);
        X509 *ip = hand_leaf(inter, inter_key, NULL, "127.0.0.1");
        e = verify_leaf(root, inter, ip, NULL);
        CHECK_MSG(e == X509_V_ERR_EXCLUDED_VIOLATION, "got %s", X509_verify_cert_error_string(e));
        X509_free(ip);
        X509 *ip6 = hand_leaf(inter, inter_key, NULL, "::1");
        e = verify_leaf(root, inter, ip6, NULL);
        CHECK_MSG(e == X509_V_ERR_EXCLUDED_VIOLATION, "got %s", X509_verify_cert_error_string(e));
        X509_free(ip6);
        /* Control: the same hand-made path verifies for a permitted name, so the failures
         * above are the constraints and not a broken test leaf. */
        X509 *good = hand_leaf(inter, inter_key, "other.atlassian.net", NULL);
        e = verify_leaf(root, inter, good, "other.atlassian.net");
        CHECK_MSG(e == X509_V_OK, "got %s", X509_verify_cert_error_string(e));
        X509_free(good);
    }

    /* Refusals: never a wildcard, an IP, a bad name, or an unmapped host. */
    static const char *const refused[] = {"*.atlassian.net",
                                          "127.0.0.1",
                                          "::1",
                                          "[::1]",
                                          "",
                                          "acme.atlassian.net.",
                                          "acme..atlassian.net",
                                          "-acme.atlassian.net",
                                          "acme .atlassian.net",
                                          "acme.atlassian.net:443",
                                          "evil.example.com",
                                          "x.acme.atlassian.net",
                                          "other.atlassian.net",
                                          "acme.atlassian.net\nx",
                                          "10.0.0.1",
                                          "1.2.3.4.5"};
    for (size_t i = 0; i < UTIL_ARRAY_LEN(refused); i++) {
        SSL_CTX *r = mitm_ctx_for_host(m, refused[i]);
        CHECK_MSG(r == NULL, "minted for '%s'", refused[i]);
        SSL_CTX_free(r);
    }
    CHECK(mitm_ctx_for_host(NULL, "acme.atlassian.net") == NULL);
    CHECK(mitm_ctx_for_host(m, NULL) == NULL);
    {
        char longname[400];
        memset(longname, 'a', sizeof(longname) - 1);
        longname[sizeof(longname) - 1] = '\0';
        CHECK(mitm_ctx_for_host(m, longname) == NULL);
    }
    SSL_CTX_free(ctx);
    SSL_CTX_free(ctx2);
out:
    X509_free(root);
    X509_free(inter);
    EVP_PKEY_free(inter_key);
    mitm_free(m);
    free(err);
    free(warn);
    fixture_clear(&f);
}

/* Drive a client and a server SSL over a BIO pair until both finish or one fails. */
static bool handshake(SSL_CTX *server_ctx, X509 *root, const char *sni, const char *alpn_wire,
                      size_t alpn_len, char *alpn_out, size_t alpn_out_len)
{
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    X509_STORE *store = SSL_CTX_get_cert_store(cctx);
    SSL *c, *s;
    BIO *bc, *bs;
    bool cdone = false, sdone = false, failed = false;

    X509_STORE_add_cert(store, root);
    SSL_CTX_set_verify(cctx, SSL_VERIFY_PEER, NULL);
    c = SSL_new(cctx);
    s = SSL_new(server_ctx);
    BIO_new_bio_pair(&bc, 0, &bs, 0);
    SSL_set_bio(c, bc, bc);
    SSL_set_bio(s, bs, bs);
    SSL_set_connect_state(c);
    SSL_set_accept_state(s);
    if (sni)
        SSL_set_tlsext_host_name(c, sni);
    /* The client checks the leaf names the CONNECT host; the SNI it sends may differ, so
     * that only the server's SNI check can fail a mismatched handshake. */
    SSL_set1_host(c, "acme.atlassian.net");
    if (alpn_wire)
        SSL_set_alpn_protos(c, (const unsigned char *)alpn_wire, (unsigned)alpn_len);
    for (int i = 0; i < 100 && !(cdone && sdone) && !failed; i++) {
        if (!cdone) {
            int r = SSL_do_handshake(c);
            int e = SSL_get_error(c, r);
            if (r == 1)
                cdone = true;
            else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                failed = true;
        }
        if (!sdone) {
            int r = SSL_do_handshake(s);
            int e = SSL_get_error(s, r);
            if (r == 1)
                sdone = true;
            else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                failed = true;
        }
    }
    if (alpn_out && alpn_out_len) {
        const unsigned char *p = NULL;
        unsigned int plen = 0;
        SSL_get0_alpn_selected(c, &p, &plen);
        snprintf(alpn_out, alpn_out_len, "%.*s", (int)plen, p ? (const char *)p : "");
    }
    SSL_free(c);
    SSL_free(s);
    SSL_CTX_free(cctx);
    ERR_clear_error();
    return cdone && sdone && !failed;
}

static void test_handshakes(const char *dir)
{
    static const char *const hosts[] = {"d:acme", "jira.example.org"};
    struct fixture f;
    char *err = NULL, *warn = NULL, alpn[32];
    X509 *root, *inter;
    struct mitm *m;
    SSL_CTX *ctx;

    fixture_init(&f, dir, hosts, 2);
    m = mitm_load(&f.cfg, &err, &warn);
    read_chain(dir, &root, &inter);
    ctx = mitm_ctx_for_host(m, "acme.atlassian.net");
    CHECK(ctx && root);
    if (ctx && root) {
        CHECK(handshake(ctx, root, "acme.atlassian.net", "\x02h2\x08http/1.1", 12, alpn,
                        sizeof(alpn)));
        CHECK_STR(alpn, "http/1.1"); /* never h2 inside a tunnel */
        CHECK(handshake(ctx, root, "acme.atlassian.net", NULL, 0, alpn, sizeof(alpn)));
        CHECK_STR(alpn, "");
        CHECK(handshake(ctx, root, "acme.atlassian.net", "\x02h2", 3, alpn, sizeof(alpn)));
        CHECK_STR(alpn, ""); /* no ALPN agreed: the client falls back to HTTP/1.1 */
        /* SNI naming another host, or none at all, ends the handshake. */
        CHECK(!handshake(ctx, root, "jira.example.org", NULL, 0, NULL, 0));
        CHECK(!handshake(ctx, root, "evil.example.com", NULL, 0, NULL, 0));
        CHECK(!handshake(ctx, root, NULL, NULL, 0, NULL, 0));
        /* TLS 1.1 is refused. */
        {
            SSL_CTX *old = SSL_CTX_new(TLS_client_method());
            SSL *c = SSL_new(old), *s = SSL_new(ctx);
            BIO *bc, *bs;
            int ok = 0;
            SSL_set_max_proto_version(c, TLS1_1_VERSION);
            SSL_set_security_level(c, 0);
            BIO_new_bio_pair(&bc, 0, &bs, 0);
            SSL_set_bio(c, bc, bc);
            SSL_set_bio(s, bs, bs);
            SSL_set_connect_state(c);
            SSL_set_accept_state(s);
            SSL_set_tlsext_host_name(c, "acme.atlassian.net");
            for (int i = 0; i < 20; i++) {
                ok |= SSL_do_handshake(c) == 1;
                ok |= SSL_do_handshake(s) == 1;
            }
            CHECK(!ok);
            SSL_free(c);
            SSL_free(s);
            SSL_CTX_free(old);
            ERR_clear_error();
        }
    }
    SSL_CTX_free(ctx);
    X509_free(root);
    X509_free(inter);
    mitm_free(m);
    free(err);
    free(warn);
    fixture_clear(&f);
}

static void test_lru(void)
{
    static char *hosts_buf[NSITES_MAX];
    const char *hosts[NSITES_MAX];
    struct fixture f;
    char *dir = make_tmpdir(), *err = NULL, *warn = NULL;
    struct mitm *m;
    SSL_CTX *first, *c;
    bool bounded = true;

    for (size_t i = 0; i < NSITES_MAX; i++) {
        hosts_buf[i] = xasprintf("d:site%zu", i);
        hosts[i] = hosts_buf[i];
    }
    fixture_init(&f, dir, hosts, NSITES_MAX);
    CHECK(mitm_ca_init(&f.cfg, dir, false, &err) == 0);
    free(err);
    err = NULL;
    m = mitm_load(&f.cfg, &err, &warn);
    CHECK(m && !err && !warn);
    if (!m)
        goto out;

    /* Fill the cache exactly, then touch site0 so site1 is the least recently used. */
    first = mitm_ctx_for_host(m, "site0.atlassian.net");
    for (size_t i = 1; i < MITM_LRU_MAX; i++) {
        c = mitm_ctx_for_host(m, f.sites[i].host);
        CHECK(c != NULL);
        SSL_CTX_free(c);
    }
    CHECK(mitm_cache_size(m) == MITM_LRU_MAX);
    c = mitm_ctx_for_host(m, "site0.atlassian.net");
    CHECK(c == first); /* hit: same context */
    SSL_CTX_free(c);
    SSL_CTX *site2 = mitm_ctx_for_host(m, "site2.atlassian.net"); /* hold a reference */
    SSL_CTX_free(mitm_ctx_for_host(m, "site0.atlassian.net"));
    /* site1 is now the least recently used; one new host evicts it and nothing else. */
    c = mitm_ctx_for_host(m, f.sites[MITM_LRU_MAX].host);
    CHECK(c != NULL);
    SSL_CTX_free(c);
    CHECK(mitm_cache_size(m) == MITM_LRU_MAX);
    c = mitm_ctx_for_host(m, "site0.atlassian.net");
    CHECK(c == first); /* recently used: survived */
    SSL_CTX_free(c);
    c = mitm_ctx_for_host(m, "site2.atlassian.net");
    CHECK(c == site2); /* used after site1: survived */
    SSL_CTX_free(c);
    /* Now mint the rest; the bound holds all along. */
    for (size_t i = MITM_LRU_MAX + 1; i < NSITES_MAX; i++) {
        c = mitm_ctx_for_host(m, f.sites[i].host);
        CHECK(c != NULL);
        SSL_CTX_free(c);
        bounded = bounded && mitm_cache_size(m) <= MITM_LRU_MAX;
    }
    CHECK(bounded);
    CHECK(mitm_cache_size(m) == MITM_LRU_MAX);
    /* site1 was evicted: asking again mints a new leaf with a new serial. site2's
     * reference outlived its eviction (it is still ours and still usable). */
    {
        int n_new = 0;
        for (size_t i = 3; i < 3 + 9; i++) {
            /* sites 3.. were least recently used and have been evicted by the 9 others */
            c = mitm_ctx_for_host(m, f.sites[i].host);
            n_new += c != NULL;
            SSL_CTX_free(c);
        }
        CHECK(n_new == 9);
    }
    CHECK(SSL_CTX_get0_certificate(site2) != NULL);
    c = mitm_ctx_for_host(m, "site0.atlassian.net");
    CHECK(c != NULL);
    SSL_CTX_free(c);
    SSL_CTX_free(site2);
    SSL_CTX_free(first);
    mitm_free(m);
out:
    free(err);
    free(warn);
    fixture_clear(&f);
    for (size_t i = 0; i < NSITES_MAX; i++)
        free(hosts_buf[i]);
    rm_rf(dir);
    free(dir);
}

/* The eviction order test above relies on pointers; this one checks it with serials. */
static void test_lru_evicts_lru(void)
{
    static char *hosts_buf[MITM_LRU_MAX + 1];
    const char *hosts[MITM_LRU_MAX + 1];
    struct fixture f;
    char *dir = make_tmpdir(), *err = NULL, *warn = NULL;
    struct mitm *m;

    for (size_t i = 0; i <= MITM_LRU_MAX; i++) {
        hosts_buf[i] = xasprintf("d:s%zu", i);
        hosts[i] = hosts_buf[i];
    }
    fixture_init(&f, dir, hosts, MITM_LRU_MAX + 1);
    mitm_ca_init(&f.cfg, dir, false, &err);
    free(err);
    err = NULL;
    m = mitm_load(&f.cfg, &err, &warn);
    CHECK(m != NULL);
    if (m) {
        ASN1_INTEGER *serial0 = NULL, *serial1 = NULL;
        for (size_t i = 0; i < MITM_LRU_MAX; i++) {
            SSL_CTX *c = mitm_ctx_for_host(m, f.sites[i].host);
            if (i == 0)
                serial0 = ASN1_INTEGER_dup(X509_get_serialNumber(SSL_CTX_get0_certificate(c)));
            if (i == 1)
                serial1 = ASN1_INTEGER_dup(X509_get_serialNumber(SSL_CTX_get0_certificate(c)));
            SSL_CTX_free(c);
        }
        SSL_CTX_free(mitm_ctx_for_host(m, "s0.atlassian.net")); /* s1 becomes the LRU */
        SSL_CTX_free(mitm_ctx_for_host(m, f.sites[MITM_LRU_MAX].host));
        SSL_CTX *c0 = mitm_ctx_for_host(m, "s0.atlassian.net");
        CHECK(ASN1_INTEGER_cmp(X509_get_serialNumber(SSL_CTX_get0_certificate(c0)), serial0) == 0);
        SSL_CTX_free(c0);
        SSL_CTX *c1 = mitm_ctx_for_host(m, "s1.atlassian.net");
        CHECK(ASN1_INTEGER_cmp(X509_get_serialNumber(SSL_CTX_get0_certificate(c1)), serial1) != 0);
        SSL_CTX_free(c1);
        ASN1_INTEGER_free(serial0);
        ASN1_INTEGER_free(serial1);
    }
    mitm_free(m);
    free(err);
    free(warn);
    fixture_clear(&f);
    for (size_t i = 0; i <= MITM_LRU_MAX; i++)
        free(hosts_buf[i]);
    rm_rf(dir);
    free(dir);
}

struct thread_arg {
    struct mitm *m;
    struct fixture *f;
    int seed;
    int failures;
};

static void *hammer(void *p)
{
    struct thread_arg *a = p;
    unsigned s = (unsigned)a->seed;
    for (int i = 0; i < 400; i++) {
        s = s * 1103515245u + 12345u;
        size_t k = (s >> 8) % a->f->cfg.nsites;
        SSL_CTX *c = mitm_ctx_for_host(a->m, a->f->sites[k].host);
        if (!c || !SSL_CTX_get0_certificate(c))
            a->failures++;
        SSL_CTX_free(c);
    }
    return NULL;
}

static void test_threads(void)
{
    static char *hosts_buf[NSITES_MAX];
    const char *hosts[NSITES_MAX];
    struct fixture f;
    char *dir = make_tmpdir(), *err = NULL, *warn = NULL;
    struct mitm *m;
    pthread_t th[4];
    struct thread_arg args[4];

    for (size_t i = 0; i < NSITES_MAX; i++) {
        hosts_buf[i] = xasprintf("d:t%zu", i);
        hosts[i] = hosts_buf[i];
    }
    fixture_init(&f, dir, hosts, NSITES_MAX);
    mitm_ca_init(&f.cfg, dir, false, &err);
    free(err);
    err = NULL;
    m = mitm_load(&f.cfg, &err, &warn);
    CHECK(m != NULL);
    for (int i = 0; m && i < 4; i++) {
        args[i] = (struct thread_arg){.m = m, .f = &f, .seed = i + 1};
        pthread_create(&th[i], NULL, hammer, &args[i]);
    }
    for (int i = 0; m && i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK(args[i].failures == 0);
    }
    CHECK(mitm_cache_size(m) <= MITM_LRU_MAX);
    mitm_free(m);
    free(err);
    free(warn);
    fixture_clear(&f);
    for (size_t i = 0; i < NSITES_MAX; i++)
        free(hosts_buf[i]);
    rm_rf(dir);
    free(dir);
}

static void test_load_errors(const char *dir)
{
    static const char *const hosts[] = {"d:acme", "jira.example.org"};
    static const char *const only_jira[] = {"jira.example.org"};
    struct fixture f, g;
    char *empty = make_tmpdir(), *other = make_tmpdir(), *err = NULL, *warn = NULL;
    struct mitm *m;
    char *cmd;

    /* Neither file: interception off, no error, no warning. */
    fixture_init(&f, empty, hosts, 2);
    m = mitm_load(&f.cfg, &err, &warn);
    CHECK(m == NULL && err == NULL && warn == NULL);
    fixture_clear(&f);

    /* Only one of the two files. */
    cmd = xasprintf("cp '%s/ca.pem' '%s/ca.pem'", dir, empty);
    CHECK(system(cmd) == 0);
    free(cmd);
    fixture_init(&f, empty, hosts, 2);
    m = mitm_load(&f.cfg, &err, &warn);
    CHECK(m == NULL && err && strstr(err, "ca init"));
    free(err);
    err = NULL;

    /* Key from another CA: mismatch. */
    fixture_init(&g, other, hosts, 2);
    CHECK(mitm_ca_init(&g.cfg, other, false, &err) == 0);
    free(err);
    err = NULL;
    cmd = xasprintf("cp -p '%s/ca.key' '%s/ca.key'", other, empty);
    CHECK(system(cmd) == 0);
    free(cmd);
    m = mitm_load(&f.cfg, &err, &warn);
    CHECK(m == NULL);
    CHECK_MSG(err && strstr(err, "does not match") && strstr(err, "ca init --force"), "%s",
              err ? err : "(null)");
    CHECK(err && strstr(err, "BEGIN") == NULL);
    free(err);
    err = NULL;

    /* Loose key permissions are refused with the fix in the message. */
    CHECK(chmod(g.cfg.interception.ca_key, 0640) == 0);
    m = mitm_load(&g.cfg, &err, &warn);
    CHECK(m == NULL);
    CHECK_MSG(err && strstr(err, "chmod 600"), "%s", err ? err : "(null)");
    free(err);
    err = NULL;
    CHECK(chmod(g.cfg.interception.ca_key, 0604) == 0);
    m = mitm_load(&g.cfg, &err, &warn);
    CHECK(m == NULL && err && strstr(err, "chmod 600"));
    free(err);
    err = NULL;
    CHECK(chmod(g.cfg.interception.ca_key, 0400) == 0); /* read-only for the owner is fine */
    m = mitm_load(&g.cfg, &err, &warn);
    CHECK(m != NULL && err == NULL);
    mitm_free(m);
    free(err);
    err = NULL;
    fixture_clear(&g);

    /* Garbage in ca.key. */
    {
        FILE *k = fopen(f.cfg.interception.ca_key, "w");
        fputs("not a key\n", k);
        fclose(k);
        m = mitm_load(&f.cfg, &err, &warn);
        CHECK(m == NULL && err && strstr(err, "not a PEM private key"));
        free(err);
        err = NULL;
    }
    fixture_clear(&f);

    /* A CA made for other sites: loaded, with a warning naming what it cannot serve. */
    fixture_init(&g, other, only_jira, 1);
    CHECK(mitm_ca_init(&g.cfg, other, true, &err) == 0);
    free(err);
    err = NULL;
    fixture_clear(&g);
    fixture_init(&g, other, hosts, 2);
    m = mitm_load(&g.cfg, &err, &warn);
    CHECK(m != NULL && err == NULL);
    CHECK_MSG(warn && strstr(warn, "acme.atlassian.net") && strstr(warn, "ca init --force"), "%s",
              warn ? warn : "(null)");
    CHECK(warn && strstr(warn, "jira.example.org") == NULL);
    {
        SSL_CTX *c = mitm_ctx_for_host(m, "acme.atlassian.net");
        CHECK(c == NULL); /* no leaf a client would reject anyway */
        SSL_CTX_free(c);
        c = mitm_ctx_for_host(m, "jira.example.org");
        CHECK(c != NULL);
        SSL_CTX_free(c);
    }
    mitm_free(m);
    free(warn);
    warn = NULL;
    fixture_clear(&g);

    mitm_free(NULL); /* no-op */
    rm_rf(empty);
    rm_rf(other);
    free(empty);
    free(other);
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static void test_cost(void)
{
    enum { N = 200, HITS = 20000 };
    static char *hosts_buf[N];
    const char *hosts[N];
    struct fixture f;
    char *dir = make_tmpdir(), *err = NULL, *warn = NULL;
    struct mitm *m;
    double t0, mint_us, hit_us;

    for (size_t i = 0; i < N; i++) {
        hosts_buf[i] = xasprintf("d:c%zu", i);
        hosts[i] = hosts_buf[i];
    }
    fixture_init(&f, dir, hosts, N);
    mitm_ca_init(&f.cfg, dir, false, &err);
    free(err);
    err = NULL;
    m = mitm_load(&f.cfg, &err, &warn);
    CHECK(m != NULL);
    if (m) {
        t0 = now_us();
        for (size_t i = 0; i < N; i++)
            SSL_CTX_free(mitm_ctx_for_host(m, f.sites[i].host));
        mint_us = (now_us() - t0) / N;
        t0 = now_us();
        for (size_t i = 0; i < HITS; i++)
            SSL_CTX_free(mitm_ctx_for_host(m, f.sites[i % N].host));
        hit_us = (now_us() - t0) / HITS;
        printf("cost: uncached leaf + SSL_CTX %.1f us, cached %.2f us (%d sites cached)\n", mint_us,
               hit_us, N);
        CHECK(hit_us < mint_us);
    }
    mitm_free(m);
    free(err);
    free(warn);
    fixture_clear(&f);
    for (size_t i = 0; i < N; i++)
        free(hosts_buf[i]);
    rm_rf(dir);
    free(dir);
}

int main(void)
{
    char *dir = make_tmpdir();
    CHECK(dir != NULL);
    if (!dir)
        TEST_DONE();
    test_ca_init_files(dir);
    test_ca_init_errors();
    test_leaves(dir);
    test_handshakes(dir);
    test_load_errors(dir);
    test_lru();
    test_lru_evicts_lru();
    test_threads();
    test_cost();
    rm_rf(dir);
    free(dir);
    TEST_DONE();
}
