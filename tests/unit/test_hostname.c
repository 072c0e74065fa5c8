/*
 * test_hostname: the one host-name grammar. Request names (with '_',
 * addresses, numeric spellings refused) and configured names (LDH, never an
 * address) as tables; every configured name must also be a request name.
 */
#include <stdbool.h>
#include <string.h>

#include "hostname.h"
#include "testlib.h"

struct norm_row {
    const char *in;
    bool v6;
    enum hostname_kind kind;
    const char *out; /* normal form for NAME/IPV4/IPV6 */
};

static const struct norm_row norm_rows[] = {
    {"acme.atlassian.net", false, HOSTNAME_NAME, "acme.atlassian.net"},
    {"ACME.Atlassian.NET", false, HOSTNAME_NAME, "acme.atlassian.net"},
    {"acme.atlassian.net.", false, HOSTNAME_NAME, "acme.atlassian.net"},
    {"under_score.example", false, HOSTNAME_NAME, "under_score.example"},
    {"-lead.example", false, HOSTNAME_NAME, "-lead.example"}, /* request names are permissive */
    {"localhost", false, HOSTNAME_NAME, "localhost"},
    {"a", false, HOSTNAME_NAME, "a"},
    {"1a.example", false, HOSTNAME_NAME, "1a.example"},
    {"example.1a", false, HOSTNAME_NAME, "example.1a"},
    {"127.0.0.1", false, HOSTNAME_IPV4, "127.0.0.1"},
    {"10.0.0.255", false, HOSTNAME_IPV4, "10.0.0.255"},
    {"0.0.0.0", false, HOSTNAME_IPV4, "0.0.0.0"},
    {"127.0.0.1.", false, HOSTNAME_IPV4, "127.0.0.1"},
    {"2130706433", false, HOSTNAME_NUMERIC, NULL},
    {"0x7f.1", false, HOSTNAME_NUMERIC, NULL},
    {"0X7F.1", false, HOSTNAME_NUMERIC, NULL},
    {"127.1", false, HOSTNAME_NUMERIC, NULL},
    {"0177.0.0.1", false, HOSTNAME_NUMERIC, NULL},
    {"127.0.0.01", false, HOSTNAME_NUMERIC, NULL},
    {"256.0.0.1", false, HOSTNAME_NUMERIC, NULL},
    {"1.2.3.4.5", false, HOSTNAME_NUMERIC, NULL},
    {"example.0x10", false, HOSTNAME_NUMERIC, NULL},
    {"", false, HOSTNAME_INVALID, NULL},
    {".", false, HOSTNAME_INVALID, NULL},
    {"a..b", false, HOSTNAME_INVALID, NULL},
    {".a", false, HOSTNAME_INVALID, NULL},
    {"a.b..", false, HOSTNAME_INVALID, NULL},
    {"a b", false, HOSTNAME_INVALID, NULL},
    {"a%2eb", false, HOSTNAME_INVALID, NULL},
    {"a@b", false, HOSTNAME_INVALID, NULL},
    {"a\\b", false, HOSTNAME_INVALID, NULL},
    {"a\xa0", false, HOSTNAME_INVALID, NULL},
    {"a\x85", false, HOSTNAME_INVALID, NULL},
    {"caf\xc3\xa9.example", false, HOSTNAME_INVALID, NULL},
    {"::1", true, HOSTNAME_IPV6, "::1"},
    {"0:0::1", true, HOSTNAME_IPV6, "::1"},
    {"FD00::5", true, HOSTNAME_IPV6, "fd00::5"},
    {"::ffff:127.0.0.1", true, HOSTNAME_IPV6, "::ffff:127.0.0.1"},
    {"fe80::1%25eth0", true, HOSTNAME_INVALID, NULL},
    {"1::2::3", true, HOSTNAME_INVALID, NULL},
    {"", true, HOSTNAME_INVALID, NULL},
    {"::1", false, HOSTNAME_INVALID, NULL}, /* unbracketed v6 is no name */
};

struct cfg_row {
    const char *in;
    bool ok;
};

static const struct cfg_row cfg_rows[] = {
    {"acme.atlassian.net", true},
    {"jira.example.org", true},
    {"credproxy", true},
    {"a-b.example", true},
    {"1a.example", true},
    {"x.y1", true},
    {"under_score.example", false},
    {"Upper.example", false},
    {"-lead.example", false},
    {"trail-.example", false},
    {"acme.atlassian.net.", false},
    {"10.0.0.1", false},
    {"127.0.0.1", false},
    {"2130706433", false},
    {"example.0x10", false},
    {"::1", false},
    {"", false},
    {"a..b", false},
    {"*.atlassian.net", false},
    {"acme.atlassian.net:443", false},
    {"https://acme.atlassian.net", false},
};

int main(void)
{
    char out[HOSTNAME_BUF], longname[300];

    for (size_t i = 0; i < sizeof(norm_rows) / sizeof(norm_rows[0]); i++) {
        const struct norm_row *t = &norm_rows[i];
        memset(out, 0, sizeof(out));
        enum hostname_kind k = hostname_normalize(t->in, strlen(t->in), t->v6, out);
        CHECK_MSG(k == t->kind, "'%s': kind %d, want %d", t->in, k, t->kind);
        if (t->out)
            CHECK_MSG(strcmp(out, t->out) == 0, "'%s': normal form '%s', want '%s'", t->in, out,
                      t->out);
    }
    for (size_t i = 0; i < sizeof(cfg_rows) / sizeof(cfg_rows[0]); i++) {
        const struct cfg_row *t = &cfg_rows[i];
        CHECK_MSG(hostname_is_config_name(t->in) == t->ok, "config name '%s' want %d", t->in,
                  t->ok);
        /* Every configured name is also a request name that normalizes to itself. */
        if (t->ok) {
            CHECK(hostname_normalize(t->in, strlen(t->in), false, out) == HOSTNAME_NAME);
            CHECK_STR(out, t->in);
        }
    }
    /* Lengths: a 63-byte label is fine, 64 is not; 253 bytes in all, not 254. */
    memset(longname, 'a', 63);
    longname[63] = '\0';
    CHECK(hostname_is_config_name(longname));
    CHECK(hostname_normalize(longname, 63, false, out) == HOSTNAME_NAME);
    memset(longname, 'a', 64);
    longname[64] = '\0';
    CHECK(!hostname_is_config_name(longname));
    CHECK(hostname_normalize(longname, 64, false, out) == HOSTNAME_INVALID);
    for (size_t i = 0; i < 253; i++)
        longname[i] = (i % 2) ? '.' : 'a';
    longname[253] = '\0'; /* "a.a.….a": 253 bytes */
    CHECK(hostname_is_config_name(longname));
    CHECK(hostname_normalize(longname, 253, false, out) == HOSTNAME_NAME);
    longname[253] = '.';
    longname[254] = 'a';
    longname[255] = '\0';
    CHECK(!hostname_is_config_name(longname));
    CHECK(hostname_normalize(longname, 255, false, out) == HOSTNAME_INVALID);
    /* Dotted quads. */
    CHECK(hostname_is_dotted_quad("1.2.3.4", 7));
    CHECK(!hostname_is_dotted_quad("1.2.3", 5));
    CHECK(!hostname_is_dotted_quad("1.2.3.4 ", 8));
    TEST_DONE();
}
