/*
 * errors: the proxy's own error responses. JSON body
 * {"error": CODE, "message": "..."} plus X-Credproxy-Error: CODE, so an
 * agent can tell them from Atlassian's.
 *
 * Layer 3 (writes into an evbuffer). Messages are fixed sentences or name
 * hosts and addresses; never a header value, token or key.
 */
#ifndef CREDPROXY_ERRORS_H
#define CREDPROXY_ERRORS_H

#include <stdbool.h>
#include <stddef.h>

struct evbuffer;

#define ERRORS_MAX_MESSAGE 1024 /* longer messages are cut */

/*
 * Append a complete HTTP/1.1 response to out. extra_headers is NULL or
 * complete "Name: value\r\n" lines (Retry-After, Proxy-Authenticate).
 * close adds "Connection: close". Returns the body length written.
 */
size_t errors_write(struct evbuffer *out, int status, const char *code, const char *message,
                    const char *extra_headers, bool close);

/*
 * errors_write with more members after "message": fields is NULL or a JSON
 * fragment that starts with ", " ("\"credential\": \"svc\"" pairs), built
 * with log_json_escape by the caller. Longer than ERRORS_MAX_FIELDS: dropped.
 */
size_t errors_write_json(struct evbuffer *out, int status, const char *code, const char *message,
                         const char *fields, const char *extra_headers, bool close);

/* Issue 10: the breaker holds the credential back; no usable token (oauth, cloudId). */
#define ERRORS_CREDENTIAL_REJECTED "credential_rejected"
#define ERRORS_CREDENTIAL_UNAVAILABLE "credential_unavailable"
#define ERRORS_MAX_FIELDS 2048

/*
 * The fields fragment errors_write_json takes, from string members: fields
 * holds nfields (name, value) pairs; a NULL value is written as null. Names
 * are trusted literals; values are escaped and cut like the message. buf
 * gets ", \"name\": value..." or, when that does not fit in cap, "" (never a
 * cut fragment).
 */
void errors_json_fields(char *buf, size_t cap, const char *const *fields, size_t nfields);

/* 502 for a response the proxy could not frame (never relayed half-framed). */
#define ERRORS_UPSTREAM_BAD_RESPONSE "upstream_bad_response"

/* The code for a status the proxy answers itself (400 -> "bad_request", ...). */
const char *errors_code_for(int status);

#endif
