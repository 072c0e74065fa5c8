/*
 * fuzz_token_response: the OAuth token endpoint's answer (from the network)
 * through tokensched_parse, then through the schedule with the parsed
 * lifetime. The first byte chooses the token buffer's size.
 * Invariants: a parsed token is non-empty, NUL-terminated within the
 * buffer, at most TOKENSCHED_MAX_TOKEN bytes, visible ASCII only (no CR,
 * LF, space, control byte or backslash), and is the exact text of the
 * answer's access_token string; expires_in is within
 * TOKENSCHED_MIN_LIFETIME_S..TOKENSCHED_MAX_LIFETIME_S; a refusal leaves no
 * token text in the buffer and a reason that does not contain the token text; the
 * schedule then renews before expiry.
 */
#define _GNU_SOURCE /* memmem */
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "tokensched.h"

#define FUZZ_MAX_ANSWER (4 * TOKENSCHED_MAX_TOKEN)

static const size_t fuzz_caps[] = {TOKENSCHED_MAX_TOKEN + 1, 1, 2, 16, TOKENSCHED_MAX_TOKEN,
                                   TOKENSCHED_MAX_TOKEN + 64};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > FUZZ_MAX_ANSWER)
        return 0;
    size_t tcap = fuzz_caps[data[0] % (sizeof(fuzz_caps) / sizeof(fuzz_caps[0]))];
    char *body = malloc(size);
    char *tok = malloc(tcap);
    char why[256];
    int64_t exp = -1;
    FUZZ_CHECK(body && tok);
    memcpy(body, data + 1, size - 1);
    body[size - 1] = '\0';
    memset(tok, 'Z', tcap);
    why[0] = '\0';

    if (tokensched_parse(body, tok, tcap, &exp, why, sizeof(why)) == 0) {
        size_t n = strnlen(tok, tcap);
        FUZZ_CHECK(n > 0 && n < tcap && n <= TOKENSCHED_MAX_TOKEN);
        for (size_t i = 0; i < n; i++)
            FUZZ_CHECK(tok[i] > 0x20 && tok[i] < 0x7f && tok[i] != '\\' && tok[i] != '"');
        FUZZ_CHECK(exp >= TOKENSCHED_MIN_LIFETIME_S && exp <= TOKENSCHED_MAX_LIFETIME_S);
        /* the token is the answer's own text, between quotes */
        bool quoted = false;
        for (const char *at = body;
             !quoted && (at = memmem(at, size - 1 - (size_t)(at - body), tok, n)) != NULL; at++)
            quoted = at > body && at[-1] == '"' && at[n] == '"';
        FUZZ_CHECK(quoted);

        struct tokensched t;
        int64_t now = 1764460800000;
        tokensched_init(&t);
        FUZZ_CHECK(tokensched_begin(&t, now));
        tokensched_success(&t, now, exp);
        FUZZ_CHECK(tokensched_usable(&t, now));
        FUZZ_CHECK(!tokensched_usable(&t, now + exp * 1000));
        int64_t due = tokensched_due_in(&t, now);
        FUZZ_CHECK(due > 0 && due < exp * 1000);
    } else {
        FUZZ_CHECK(why[0] != '\0');
        /* no usable token, and nothing of one left behind (untouched filler aside) */
        FUZZ_CHECK(tok[0] == '\0');
        for (size_t i = 0; i < tcap; i++)
            FUZZ_CHECK(tok[i] == '\0' || tok[i] == 'Z');
        /* the reason never carries the answer's text beyond fixed words */
        FUZZ_CHECK(strchr(why, '"') == NULL);
    }
    free(tok);
    free(body);
    return 0;
}
