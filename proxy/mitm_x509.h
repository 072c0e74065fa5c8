/*
 * mitm_x509: certificate helpers shared by the CA's creation (mitm_ca.c)
 * and its use (mitm.c). Internal to those two files.
 *
 * Layer 3. Never logs; errors come back as text for the caller's message.
 */
#ifndef CREDPROXY_MITM_X509_H
#define CREDPROXY_MITM_X509_H

#include <stdbool.h>
#include <time.h>

#include <openssl/x509.h>

#define MITM_SERIAL_BYTES 16

/* "what: <OpenSSL's last error>" as a new string (caller frees); clears the error queue. */
char *mitm_ssl_error_text(const char *what);
/* A name a certificate may carry: hostname.h's configured-name grammar. */
bool mitm_host_valid(const char *host);
/* A random positive serial of MITM_SERIAL_BYTES. 0 or -1. */
int mitm_set_random_serial(X509 *x);
/* Add extension nid=value to subject, issued by issuer. 0 or -1. */
int mitm_add_ext(X509 *issuer, X509 *subject, int nid, const char *value);
/* Subject CN=cn. 0 or -1. */
int mitm_set_subject(X509 *x, const char *cn);
/* notBefore = now - clock skew, notAfter = min(now + days, cap) (cap 0 = none). 0 or -1. */
int mitm_set_validity(X509 *x, long days, time_t cap);

#endif
