/*
 * Unit tests for credstate: what Atlassian said (status, login-reason
 * headers cleaned and cut), the 503 credential_rejected reply (message,
 * JSON members, Retry-After; the CAPTCHA variant names the email), the
 * /readyz reason, and the metric lines. Nothing but names, statuses and
 * fixed words may appear.
 */
#include <string.h>

#include <event2/buffer.h>

#include "credstate.h"
#include "testlib.h"
#include "util.h"

static void test_said(void)
{
    static const struct {
        int status;
        const char *seraph, *denied, *want;
    } rows[] = {
        {401, "AUTHENTICATED_FAILED", NULL,
         "401 Unauthorized, X-Seraph-LoginReason: AUTHENTICATED_FAILED"},
        {403, "AUTHENTICATION_DENIED", "CAPTCHA_CHALLENGE; login-url=https://x/login.jsp",
         "403 Forbidden, X-Seraph-LoginReason: AUTHENTICATION_DENIED, "
         "X-Authentication-Denied-Reason: CAPTCHA_CHALLENGE; login-url=https://x/login.jsp"},
        {401, NULL, NULL, "401 Unauthorized"},
        {200, "AUTH\r\nEvil: \"x\"\\", NULL, "200 OK, X-Seraph-LoginReason: AUTHEvil: x"},
    };
    for (size_t i = 0; i < UTIL_ARRAY_LEN(rows); i++) {
        char out[BREAKER_MAX_SAID + 1];
        credstate_said(rows[i].status, rows[i].seraph, rows[i].seraph ? strlen(rows[i].seraph) : 0,
                       rows[i].denied, rows[i].denied ? strlen(rows[i].denied) : 0, out,
                       sizeof(out));
        CHECK_STR(out, rows[i].want);
    }
    /* A huge header value is cut, never overruns. */
    char big[4000], out[BREAKER_MAX_SAID + 1];
    memset(big, 'A', sizeof(big));
    credstate_said(401, big, sizeof(big), big, sizeof(big), out, sizeof(out));
    CHECK(strlen(out) <= BREAKER_MAX_SAID);
}

static void test_reply(void)
{
    struct breaker_info info;
    char msg[CREDSTATE_MAX_MESSAGE], fields[CREDSTATE_MAX_FIELDS], hdr[CREDSTATE_MAX_HEADERS];

    memset(&info, 0, sizeof(info));
    strcpy(info.credential, "svc");
    strcpy(info.email, "bot@example.com");
    strcpy(info.said, "401 Unauthorized, X-Seraph-LoginReason: AUTHENTICATED_FAILED");
    info.state = BREAKER_OPEN;
    info.retry_in_ms = 59001;
    credstate_rejected_reply(&info, msg, sizeof(msg), fields, sizeof(fields), hdr, sizeof(hdr));
    CHECK(strstr(msg, "credential svc was rejected by Atlassian (401 Unauthorized") != NULL);
    CHECK(strstr(msg, "tries it once more in 60 s") != NULL);
    CHECK(strstr(msg, "run `credproxy check`") != NULL && strstr(msg, "SIGHUP") != NULL);
    CHECK(strstr(fields, ", \"credential\": \"svc\"") == fields);
    CHECK(strstr(fields, "\"captcha\": false") != NULL);
    CHECK(strstr(fields, "\"retry_after_seconds\": 60") != NULL);
    CHECK_STR(hdr, "Retry-After: 60\r\n");
    CHECK(strstr(msg, "browser") == NULL);

    info.captcha = true;
    info.state = BREAKER_PROBING;
    info.retry_in_ms = 0;
    credstate_rejected_reply(&info, msg, sizeof(msg), fields, sizeof(fields), hdr, sizeof(hdr));
    CHECK(strstr(msg, "log in once in a browser as bot@example.com") != NULL);
    CHECK(strstr(fields, "\"captcha\": true") != NULL);
    CHECK_STR(hdr, "Retry-After: 1\r\n");
    /* A name that needs JSON escaping stays valid JSON. */
    strcpy(info.credential, "we\"ird");
    credstate_rejected_reply(&info, msg, sizeof(msg), fields, sizeof(fields), hdr, sizeof(hdr));
    CHECK(strstr(fields, "\"credential\": \"we\\\"ird\"") != NULL);
}

static void test_ready_and_metrics(void)
{
    struct config_credential creds[2];
    struct config cfg;
    memset(&cfg, 0, sizeof(cfg));
    memset(creds, 0, sizeof(creds));
    creds[0].name = "svc";
    creds[0].email = "bot@example.com";
    creds[0].reject_after = 1;
    creds[1].name = "sa";
    cfg.credentials = creds;
    cfg.ncredentials = 2;
    struct breaker *b = breaker_new();
    breaker_configure(b, &cfg);
    char buf[CREDSTATE_MAX_REASON];
    CHECK(credstate_ready_reason(b, 0, buf, sizeof(buf)) == 0);
    CHECK(credstate_ready_reason(NULL, 0, buf, sizeof(buf)) == 0);
    breaker_report(b, "svc", false, BREAKER_OUTCOME_AUTH_FAILED, "401 Unauthorized", 0, NULL, NULL);
    CHECK(credstate_ready_reason(b, 0, buf, sizeof(buf)) == -1);
    CHECK(strstr(buf, "credential svc rejected by Atlassian (401 Unauthorized)") != NULL);

    struct evbuffer *out = evbuffer_new();
    credstate_render_metrics(b, 0, NULL, NULL, out);
    size_t n = evbuffer_get_length(out);
    char *text = xcalloc(1, n + 1);
    evbuffer_remove(out, text, n);
    CHECK(strstr(text, "credproxy_credential_state{credential=\"svc\",state=\"rejected\"} 1\n"));
    CHECK(strstr(text, "credproxy_credential_state{credential=\"svc\",state=\"ok\"} 0\n"));
    CHECK(strstr(text, "credproxy_credential_state{credential=\"sa\",state=\"ok\"} 1\n"));
    CHECK(strstr(text, "credproxy_credential_transitions_total{credential=\"svc\"} 1\n"));
    CHECK(strstr(text, "# TYPE credproxy_credential_state gauge\n"));
    free(text);
    evbuffer_free(out);
    breaker_free(b);
}

int main(void)
{
    test_said();
    test_reply();
    test_ready_and_metrics();
    TEST_DONE();
}
