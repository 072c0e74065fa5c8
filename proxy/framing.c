/* framing: see framing.h. RFC 9112 6.3 and RFC 9110 8.6 for the rules. */
#include "framing.h"

bool framing_status_has_no_body(int status)
{
    return status < 200 || status == 204 || status == 304;
}

struct framing framing_decide(const struct framing_input *in)
{
    struct framing f = {.mode = FRAMING_NONE};

    if (in->head || framing_status_has_no_body(in->status)) {
        /*
         * No body bytes follow. The upstream's length still describes the
         * representation for HEAD and 304 (RFC 9110 8.6) and is relayed;
         * 1xx and 204 never carry one.
         */
        f.send_length = in->length_known && in->status >= 200 && in->status != 204;
        return f;
    }
    if (in->length_known && !in->body_rewritten) {
        f.mode = FRAMING_LENGTH;
        f.send_length = true;
        return f;
    }
    if (in->client_http11) {
        f.mode = FRAMING_CHUNKED;
        return f;
    }
    /* An HTTP/1.0 client knows no chunked encoding: the close ends the body. */
    f.mode = FRAMING_CLOSE;
    f.must_close = true;
    return f;
}
