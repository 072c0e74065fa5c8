/* errors: see errors.h. */
#include "errors.h"

#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

#include "http1.h"
#include "log.h"

const char *errors_code_for(int status)
{
    switch (status) {
    case 400:
        return "bad_request";
    case 403:
        return "host_not_allowed";
    case 405:
        return "method_not_allowed";
    case 408:
        return "request_timeout";
    case 413:
        return "body_too_large";
    case 407:
        return "client_auth_required";
    case 421:
        return "site_unknown";
    case 429:
        return "rate_limited";
    case 431:
        return "headers_too_large";
    case 502:
        return "upstream_unreachable";
    case 503:
        return ERRORS_CREDENTIAL_UNAVAILABLE;
    case 504:
        return "upstream_timeout";
    default:
        return "bad_request";
    }
}

size_t errors_write(struct evbuffer *out, int status, const char *code, const char *message,
                    const char *extra_headers, bool close)
{
    return errors_write_json(out, status, code, message, NULL, extra_headers, close);
}

size_t errors_write_json(struct evbuffer *out, int status, const char *code, const char *message,
                         const char *fields, const char *extra_headers, bool close)
{
    char msg[ERRORS_MAX_MESSAGE * 6 + 3];
    char body[sizeof(msg) + ERRORS_MAX_FIELDS + 128];
    char cut[ERRORS_MAX_MESSAGE + 1];

    snprintf(cut, sizeof(cut), "%s", message ? message : "");
    size_t need = log_json_escape(msg, sizeof(msg), cut);
    if (need >= sizeof(msg))
        snprintf(msg, sizeof(msg), "\"\"");
    if (!fields || strlen(fields) > ERRORS_MAX_FIELDS)
        fields = "";
    int n =
        snprintf(body, sizeof(body), "{\"error\": \"%s\", \"message\": %s%s}\n", code, msg, fields);
    if (n < 0 || (size_t)n >= sizeof(body))
        n = 0;
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\n"
                        "Content-Type: application/json\r\n"
                        "Content-Length: %d\r\n"
                        "X-Credproxy-Error: %s\r\n"
                        "Cache-Control: no-store\r\n"
                        "%s%s\r\n",
                        status, http1_reason(status), n, code, extra_headers ? extra_headers : "",
                        close ? "Connection: close\r\n" : "");
    evbuffer_add(out, body, (size_t)n);
    return (size_t)n;
}

void errors_json_fields(char *buf, size_t cap, const char *const *fields, size_t nfields)
{
    char esc[ERRORS_MAX_MESSAGE * 6 + 3];
    char cut[ERRORS_MAX_MESSAGE + 1];
    size_t len = 0;

    if (cap == 0)
        return;
    buf[0] = '\0';
    for (size_t i = 0; i < nfields; i++) {
        const char *v = fields[2 * i + 1];
        snprintf(cut, sizeof(cut), "%s", v ? v : "");
        if (log_json_escape(esc, sizeof(esc), cut) >= sizeof(esc))
            snprintf(esc, sizeof(esc), "\"\"");
        int n = snprintf(buf + len, cap - len, ", \"%s\": %s", fields[2 * i], v ? esc : "null");
        if (n < 0 || (size_t)n >= cap - len) {
            buf[0] = '\0'; /* never a cut fragment: invalid JSON; no fields at all instead */
            return;
        }
        len += (size_t)n;
    }
}
