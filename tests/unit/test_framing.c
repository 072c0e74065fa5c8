/*
 * test_framing: the framing of relayed responses as a table over status,
 * HEAD, client version, upstream length and rewriting.
 */
#include <stdbool.h>

#include "framing.h"
#include "testlib.h"

struct row {
    int status;
    bool head, http11, length, rewritten;
    enum framing_mode mode;
    bool send_length, must_close;
};

static const struct row rows[] = {
    /* bodies with a known length pass unchanged */
    {200, false, true, true, false, FRAMING_LENGTH, true, false},
    {200, false, false, true, false, FRAMING_LENGTH, true, false},
    {404, false, true, true, false, FRAMING_LENGTH, true, false},
    {500, false, false, true, false, FRAMING_LENGTH, true, false},
    /* rewritten or unknown length: chunked for 1.1, close for 1.0 */
    {200, false, true, true, true, FRAMING_CHUNKED, false, false},
    {200, false, true, false, false, FRAMING_CHUNKED, false, false},
    {200, false, true, false, true, FRAMING_CHUNKED, false, false},
    {200, false, false, true, true, FRAMING_CLOSE, false, true},
    {200, false, false, false, false, FRAMING_CLOSE, false, true},
    {201, false, false, false, true, FRAMING_CLOSE, false, true},
    /* no body: HEAD, 1xx, 204, 304 */
    {200, true, true, true, false, FRAMING_NONE, true, false},
    {200, true, false, true, false, FRAMING_NONE, true, false},
    {200, true, true, false, false, FRAMING_NONE, false, false},
    {200, true, true, true, true, FRAMING_NONE, true, false},
    {404, true, true, true, false, FRAMING_NONE, true, false},
    {204, false, true, true, false, FRAMING_NONE, false, false},
    {204, true, true, true, false, FRAMING_NONE, false, false},
    {204, false, false, false, false, FRAMING_NONE, false, false},
    {304, false, true, true, false, FRAMING_NONE, true, false},
    {304, false, true, false, false, FRAMING_NONE, false, false},
    {304, false, false, true, true, FRAMING_NONE, true, false},
    {100, false, true, true, false, FRAMING_NONE, false, false},
    {103, false, true, false, false, FRAMING_NONE, false, false},
    {199, false, false, true, false, FRAMING_NONE, false, false},
    /* 205 and others with bodies follow the general rule */
    {205, false, true, false, false, FRAMING_CHUNKED, false, false},
    {206, false, true, true, false, FRAMING_LENGTH, true, false},
};

int main(void)
{
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct row *t = &rows[i];
        struct framing_input in = {t->status, t->head, t->http11, t->length, t->rewritten};
        struct framing f = framing_decide(&in);
        CHECK_MSG(f.mode == t->mode, "row %zu (status %d): mode %d, want %d", i, t->status, f.mode,
                  t->mode);
        CHECK_MSG(f.send_length == t->send_length, "row %zu (status %d): send_length %d", i,
                  t->status, f.send_length);
        CHECK_MSG(f.must_close == t->must_close, "row %zu (status %d): must_close %d", i, t->status,
                  f.must_close);
    }
    CHECK(framing_status_has_no_body(100) && framing_status_has_no_body(204) &&
          framing_status_has_no_body(304) && !framing_status_has_no_body(200) &&
          !framing_status_has_no_body(205));
    TEST_DONE();
}
