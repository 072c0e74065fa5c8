/*
 * test_upstream_block: the request header block both upstream engines take
 * (bounded, wiped) and the table of names the engines own.
 */
#include <string.h>

#include "testlib.h"
#include "upstream.h"

struct owned_case {
    const char *name;
    bool owned;
};

static const struct owned_case owned_cases[] = {
    {"Host", true},       {"content-length", true}, {"Transfer-Encoding", true}, {"EXPECT", true},
    {"Connection", true}, {"keep-alive", true},     {"Proxy-Connection", true},  {"TE", true},
    {"Upgrade", true},    {"Authorization", false}, {"Accept", false},           {"X-Host", false},
    {"Hos", false},       {"Content-Type", false},  {"Trailer", false},
};

int main(void)
{
    struct upstream_hblock b = {0};
    static char big[UPSTREAM_MAX_HEADER_BLOCK];

    for (size_t i = 0; i < sizeof(owned_cases) / sizeof(owned_cases[0]); i++)
        CHECK_MSG(upstream_header_owned(owned_cases[i].name, strlen(owned_cases[i].name)) ==
                      owned_cases[i].owned,
                  "%s", owned_cases[i].name);

    CHECK(upstream_hblock_add(&b, "X-A", 3, "1", 1));
    CHECK(upstream_hblock_add_line(&b, "Authorization:   Basic abc"));
    CHECK(upstream_hblock_add_line(&b, "X-Empty:"));
    CHECK(!upstream_hblock_add_line(&b, "no colon"));
    CHECK(!upstream_hblock_add_line(&b, "X-Bad: a\r\nInjected: 1"));
    CHECK(b.len == strlen("X-A: 1\r\nAuthorization: Basic abc\r\nX-Empty: \r\n"));
    CHECK(memcmp(b.buf, "X-A: 1\r\nAuthorization: Basic abc\r\nX-Empty: \r\n", b.len) == 0);

    /* bounded: a value that would pass the limit is refused, the block unchanged */
    memset(big, 'v', sizeof(big));
    size_t before = b.len;
    CHECK(!upstream_hblock_add(&b, "X-Big", 5, big, sizeof(big)));
    CHECK(b.len == before);
    /* growth keeps every earlier line */
    for (int i = 0; i < 200; i++)
        CHECK(upstream_hblock_add(&b, "X-Fill", 6, big, 100));
    CHECK(memcmp(b.buf, "X-A: 1\r\n", 8) == 0 && b.len == before + 200 * 110);

    upstream_hblock_wipe(&b);
    CHECK(b.buf == NULL && b.len == 0 && b.cap == 0);
    upstream_hblock_wipe(&b); /* twice is harmless */
    TEST_DONE();
}
