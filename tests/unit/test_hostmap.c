/*
 * test_hostmap: exhaustive tables of authorities, absolute URLs, gateway Host
 * headers and Origin values, with the look-alikes that must never match.
 * Configs are built by hand (no config.c).
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "hostmap.h"
#include "testlib.h"
#include "util.h"

/* ---- configs ---------------------------------------------------------- */

enum { S_ACME = 0, S_JIRA, S_SANDBOX, S_DC, S_V6, S_V4, S_NSITES };

static struct config_site multi_sites[S_NSITES] = {
    [S_ACME] = {.host = "acme.atlassian.net", .domain = "acme", .port = 443},
    [S_JIRA] = {.host = "jira.example.org", .alias = "corp", .port = 443},
    [S_SANDBOX] = {.host = "acme-sandbox.atlassian.net", .domain = "acme-sandbox", .port = 443},
    [S_DC] = {.host = "dc.example.com", .alias = "dc", .port = 8443},
    [S_V6] = {.host = "fd00::5", .port = 443},
    [S_V4] = {.host = "10.0.0.5", .port = 443},
};

static struct config_site single_sites[1] = {
    {.host = "acme.atlassian.net", .domain = "acme", .port = 443},
};

/* ---- hostmap_parse_authority ------------------------------------------ */

struct auth_row {
    const char *in;
    size_t len; /* 0: strlen(in) */
    int default_port;
    bool ok;
    const char *host; /* normalized, when ok */
    int port;
    bool port_given;
    bool v6;
};

static const struct auth_row auth_rows[] = {
    /* plain and normalized names */
    {"acme.atlassian.net", 0, 443, true, "acme.atlassian.net", 443, false, false},
    {"acme.atlassian.net:443", 0, 80, true, "acme.atlassian.net", 443, true, false},
    {"ACME.Atlassian.NET", 0, 443, true, "acme.atlassian.net", 443, false, false},
    {"ACME.Atlassian.NET.", 0, 443, true, "acme.atlassian.net", 443, false, false},
    {"acme.atlassian.net.:443", 0, 80, true, "acme.atlassian.net", 443, true, false},
    {"acme.atlassian.net:8443", 0, 443, true, "acme.atlassian.net", 8443, true, false},
    {"acme.atlassian.net:1", 0, 443, true, "acme.atlassian.net", 1, true, false},
    {"acme.atlassian.net:65535", 0, 443, true, "acme.atlassian.net", 65535, true, false},
    {"localhost", 0, 80, true, "localhost", 80, false, false},
    {"localhost:8080", 0, 80, true, "localhost", 8080, true, false},
    {"a", 0, 80, true, "a", 80, false, false},
    {"under_score.example.com", 0, 443, true, "under_score.example.com", 443, false, false},
    {"x-y.example.com", 0, 443, true, "x-y.example.com", 443, false, false},
    {"127.0.0.1", 0, 80, true, "127.0.0.1", 80, false, false},
    {"127.0.0.1:8080", 0, 80, true, "127.0.0.1", 8080, true, false},
    {"255.255.255.255", 0, 80, true, "255.255.255.255", 80, false, false},
    {"0.0.0.0", 0, 80, true, "0.0.0.0", 80, false, false},
    {"1.2.3.4.example.com", 0, 80, true, "1.2.3.4.example.com", 80, false, false},
    {"123.example", 0, 80, true, "123.example", 80, false, false},
    /* IPv6 literals, canonicalized */
    {"[::1]", 0, 80, true, "::1", 80, false, true},
    {"[::1]:8080", 0, 80, true, "::1", 8080, true, true},
    {"[0:0:0:0:0:0:0:1]", 0, 80, true, "::1", 80, false, true},
    {"[FD00::5]:443", 0, 80, true, "fd00::5", 443, true, true},
    {"[::ffff:127.0.0.1]", 0, 80, true, "::ffff:127.0.0.1", 80, false, true},
    /* userinfo and other delimiters */
    {"acme.atlassian.net@evil.com", 0, 443, false, NULL, 0, false, false},
    {"user@acme.atlassian.net", 0, 443, false, NULL, 0, false, false},
    {"acme.atlassian.net:443@evil", 0, 443, false, NULL, 0, false, false},
    {"evil.com#@acme.atlassian.net", 0, 443, false, NULL, 0, false, false},
    {"evil.com?@acme.atlassian.net", 0, 443, false, NULL, 0, false, false},
    {"evil.com/acme.atlassian.net", 0, 443, false, NULL, 0, false, false},
    {"acme.atlassian.net\\@evil.com", 0, 443, false, NULL, 0, false, false},
    {"acme.atlassian.net%2e", 0, 443, false, NULL, 0, false, false},
    {"%61cme.atlassian.net", 0, 443, false, NULL, 0, false, false},
    {"acme.atlassian.net%00.evil.com", 0, 443, false, NULL, 0, false, false},
    /* empty and malformed hosts */
    {"", 0, 443, false, NULL, 0, false, false},
    {":443", 0, 443, false, NULL, 0, false, false},
    {".", 0, 443, false, NULL, 0, false, false},
    {"..", 0, 443, false, NULL, 0, false, false},
    {".acme.atlassian.net", 0, 443, false, NULL, 0, false, false},
    {"acme..atlassian.net", 0, 443, false, NULL, 0, false, false},
    {"acme.atlassian.net..", 0, 443, false, NULL, 0, false, false},
    {"acme.atlassian.net.:", 0, 443, false, NULL, 0, false, false},
    {"acme.atlassian.net:", 0, 443, false, NULL, 0, false, false},
    {"[::1]:", 0, 443, false, NULL, 0, false, false},
    /* ports */
    {"acme.atlassian.net:0", 0, 443, false, NULL, 0, false, false},
    {"acme.atlassian.net:0443", 0, 443, false, NULL, 0, false, false},
    {"acme.atlassian.net:00443", 0, 443, false, NULL, 0, false, false},
    {"acme.atlassian.net:+443", 0, 443, false, NULL, 0, false, false},
    {"acme.atlassian.net:-443", 0, 443, false, NULL, 0, false, false},
    {"acme.atlassian.net:65536", 0, 443, false, NULL, 0, false, false},
    {"acme.atlassian.net:99999", 0, 443, false, NULL, 0, false, false},
    {"acme.atlassian.net:100000", 0, 443, false, NULL, 0, false, false},
    {"acme.atlassian.net:443a", 0, 443, false, NULL, 0, false, false},
    {"acme.atlassian.net:0x1bb", 0, 443, false, NULL, 0, false, false},
    {"acme.atlassian.net:443:443", 0, 443, false, NULL, 0, false, false},
    {"acme.atlassian.net: 443", 0, 443, false, NULL, 0, false, false},
    {"acme.atlassian.net", 0, 0, false, NULL, 0, false, false}, /* no usable default */
    {"acme.atlassian.net", 0, 70000, false, NULL, 0, false, false},
    /* control bytes, spaces, NUL inside len */
    {"acme.atlassian.net ", 0, 443, false, NULL, 0, false, false},
    {" acme.atlassian.net", 0, 443, false, NULL, 0, false, false},
    {"acme .atlassian.net", 0, 443, false, NULL, 0, false, false},
    {"acme.atlassian.net\t", 0, 443, false, NULL, 0, false, false},
    {"acme.atlassian.net\r\n", 0, 443, false, NULL, 0, false, false},
    {"acme.atlassian.net\x7f", 0, 443, false, NULL, 0, false, false},
    {"acme.atlassian.net\0.evil.com", 28, 443, false, NULL, 0, false, false},
    {"acme.atlassian.net\0", 19, 443, false, NULL, 0, false, false},
    {"\0acme.atlassian.net", 19, 443, false, NULL, 0, false, false},
    /* non-ASCII: IDN, homoglyphs, fullwidth dot, zero-width space */
    {"xn--acme-.atlassian.net", 0, 443, true, "xn--acme-.atlassian.net", 443, false, false},
    {"\xd0\xb0"
     "cme.atlassian.net",
     0, 443, false, NULL, 0, false, false},
    {"acme\xef\xbc\x8e"
     "atlassian.net",
     0, 443, false, NULL, 0, false, false},
    {"acme.atlassian.net\xe2\x80\x8b", 0, 443, false, NULL, 0, false, false},
    {"acme.atlassian.net\xc0\xae", 0, 443, false, NULL, 0, false, false},
    {"\xff", 0, 443, false, NULL, 0, false, false},
    /* characters outside [a-z0-9.-_] */
    {"acme!.atlassian.net", 0, 443, false, NULL, 0, false, false},
    {"acme*.atlassian.net", 0, 443, false, NULL, 0, false, false},
    {"*.atlassian.net", 0, 443, false, NULL, 0, false, false},
    {"acme,atlassian.net", 0, 443, false, NULL, 0, false, false},
    {"acme;.atlassian.net", 0, 443, false, NULL, 0, false, false},
    {"acme\".atlassian.net", 0, 443, false, NULL, 0, false, false},
    {"acme'.atlassian.net", 0, 443, false, NULL, 0, false, false},
    {"acme=.atlassian.net", 0, 443, false, NULL, 0, false, false},
    {"acme~.atlassian.net", 0, 443, false, NULL, 0, false, false},
    {"acme$.atlassian.net", 0, 443, false, NULL, 0, false, false},
    {"acme&.atlassian.net", 0, 443, false, NULL, 0, false, false},
    {"acme(.atlassian.net", 0, 443, false, NULL, 0, false, false},
    {"acme<.atlassian.net", 0, 443, false, NULL, 0, false, false},
    {"acme{.atlassian.net", 0, 443, false, NULL, 0, false, false},
    {"acme|.atlassian.net", 0, 443, false, NULL, 0, false, false},
    {"acme^.atlassian.net", 0, 443, false, NULL, 0, false, false},
    {"acme`.atlassian.net", 0, 443, false, NULL, 0, false, false},
    {"acme[.atlassian.net", 0, 443, false, NULL, 0, false, false},
    {"acme].atlassian.net", 0, 443, false, NULL, 0, false, false},
    /* IPv6 without brackets, bracketed non-IPv6, broken brackets */
    {"::1", 0, 80, false, NULL, 0, false, false},
    {"::1:8080", 0, 80, false, NULL, 0, false, false},
    {"fd00::5", 0, 443, false, NULL, 0, false, false},
    {"[127.0.0.1]", 0, 80, false, NULL, 0, false, false},
    {"[acme.atlassian.net]", 0, 443, false, NULL, 0, false, false},
    {"[acme.atlassian.net]:443", 0, 443, false, NULL, 0, false, false},
    {"[]", 0, 80, false, NULL, 0, false, false},
    {"[]:80", 0, 80, false, NULL, 0, false, false},
    {"[::1", 0, 80, false, NULL, 0, false, false},
    {"::1]", 0, 80, false, NULL, 0, false, false},
    {"[::1]x", 0, 80, false, NULL, 0, false, false},
    {"[::1]]", 0, 80, false, NULL, 0, false, false},
    {"[[::1]]", 0, 80, false, NULL, 0, false, false},
    {"[::1]:0", 0, 80, false, NULL, 0, false, false},
    {"[fe80::1%25eth0]", 0, 80, false, NULL, 0, false, false},
    {"[fe80::1%eth0]", 0, 80, false, NULL, 0, false, false},
    {"[v1.fe80::1]", 0, 80, false, NULL, 0, false, false},
    {"[::g]", 0, 80, false, NULL, 0, false, false},
    {"[1:2:3:4:5:6:7:8:9]", 0, 80, false, NULL, 0, false, false},
    {"[::1] ", 0, 80, false, NULL, 0, false, false},
    /* numeric spellings of addresses that are not canonical dotted quads */
    {"0x7f.1", 0, 80, false, NULL, 0, false, false},
    {"0x7f.0.0.1", 0, 80, false, NULL, 0, false, false},
    {"0x7F000001", 0, 80, false, NULL, 0, false, false},
    {"2130706433", 0, 80, false, NULL, 0, false, false},
    {"127.1", 0, 80, false, NULL, 0, false, false},
    {"127.0.1", 0, 80, false, NULL, 0, false, false},
    {"0177.0.0.1", 0, 80, false, NULL, 0, false, false},
    {"127.0.0.01", 0, 80, false, NULL, 0, false, false},
    {"127.0.0.1.", 0, 80, true, "127.0.0.1", 80, false, false},
    {"256.0.0.1", 0, 80, false, NULL, 0, false, false},
    {"1.2.3.4.5", 0, 80, false, NULL, 0, false, false},
    {"1.2.3", 0, 80, false, NULL, 0, false, false},
    {"example.123", 0, 80, false, NULL, 0, false, false},
    {"example.0x10", 0, 80, false, NULL, 0, false, false},
};

static void test_parse_authority_table(void)
{
    for (size_t i = 0; i < UTIL_ARRAY_LEN(auth_rows); i++) {
        const struct auth_row *r = &auth_rows[i];
        struct hostmap_authority a;
        size_t len = r->len ? r->len : strlen(r->in);
        int rc;

        memset(&a, 0x55, sizeof(a));
        rc = hostmap_parse_authority(r->in, len, r->default_port, &a);
        CHECK_MSG((rc == 0) == r->ok, "row %zu \"%s\": rc %d", i, r->in, rc);
        if (rc != 0 || !r->ok)
            continue;
        CHECK_MSG(strcmp(a.host, r->host) == 0, "row %zu \"%s\": host \"%s\"", i, r->in, a.host);
        CHECK_MSG(a.port == r->port, "row %zu \"%s\": port %d", i, r->in, a.port);
        CHECK_MSG(a.port_given == r->port_given, "row %zu \"%s\": port_given", i, r->in);
        CHECK_MSG(a.is_ipv6 == r->v6, "row %zu \"%s\": is_ipv6", i, r->in);
    }
}

/* Label and name length limits, built rather than typed. */
static void test_parse_authority_lengths(void)
{
    char buf[600];
    struct hostmap_authority a;

    /* 63-byte label ok, 64 not */
    memset(buf, 'a', 63);
    strcpy(buf + 63, ".atlassian.net");
    CHECK(hostmap_parse_authority(buf, strlen(buf), 443, &a) == 0);
    memset(buf, 'a', 64);
    strcpy(buf + 64, ".atlassian.net");
    CHECK(hostmap_parse_authority(buf, strlen(buf), 443, &a) < 0);
    /* last label too long as well */
    strcpy(buf, "acme.");
    memset(buf + 5, 'b', 64);
    buf[69] = '\0';
    CHECK(hostmap_parse_authority(buf, strlen(buf), 443, &a) < 0);

    /* 253-byte name ok (with or without a trailing dot), 254 not */
    for (size_t i = 0; i < 253; i++)
        buf[i] = (i % 2) ? '.' : 'a';
    buf[253] = '\0'; /* "a.a.….a": 127 labels, ends on 'a' */
    CHECK(hostmap_parse_authority(buf, 253, 443, &a) == 0);
    CHECK(strlen(a.host) == 253);
    buf[253] = '.';
    CHECK(hostmap_parse_authority(buf, 254, 443, &a) == 0);
    CHECK(strlen(a.host) == 253);
    buf[253] = 'x'; /* "…a" + "x": the last label becomes "ax" and the name 254 */
    CHECK(hostmap_parse_authority(buf, 254, 443, &a) < 0);
    memset(buf, 'a', 500);
    CHECK(hostmap_parse_authority(buf, 500, 443, &a) < 0);

    /* NULL input */
    CHECK(hostmap_parse_authority(NULL, 0, 443, &a) < 0);
}

/* ---- hostmap_parse_absolute ------------------------------------------- */

struct abs_row {
    const char *in;
    bool ok;
    const char *host;
    int port;
    bool https;
    const char *path; /* text at path_off; "" when path_off == len */
};

static const struct abs_row abs_rows[] = {
    {"http://acme.atlassian.net/", true, "acme.atlassian.net", 80, false, "/"},
    {"http://acme.atlassian.net", true, "acme.atlassian.net", 80, false, ""},
    {"https://acme.atlassian.net", true, "acme.atlassian.net", 443, true, ""},
    {"http://acme.atlassian.net/rest/api/3/myself?x=1", true, "acme.atlassian.net", 80, false,
     "/rest/api/3/myself?x=1"},
    {"https://acme.atlassian.net:443/wiki", true, "acme.atlassian.net", 443, true, "/wiki"},
    {"http://acme.atlassian.net:8080/", true, "acme.atlassian.net", 8080, false, "/"},
    {"HTTP://ACME.ATLASSIAN.NET/X", true, "acme.atlassian.net", 80, false, "/X"},
    {"HtTpS://acme.atlassian.net./", true, "acme.atlassian.net", 443, true, "/"},
    {"http://[::1]:8080/x", true, "::1", 8080, false, "/x"},
    {"http://acme.atlassian.net/a@b", true, "acme.atlassian.net", 80, false, "/a@b"},
    {"http://acme.atlassian.net/?x=@evil.com", true, "acme.atlassian.net", 80, false,
     "/?x=@evil.com"},
    {"http://acme.atlassian.net?x", false, NULL, 0, false, NULL},
    {"http://acme.atlassian.net/#frag", false, NULL, 0, false, NULL},
    {"http://acme.atlassian.net#frag", false, NULL, 0, false, NULL},
    {"http://evil.com#@acme.atlassian.net/", false, NULL, 0, false, NULL},
    {"http://acme.atlassian.net@evil.com/", false, NULL, 0, false, NULL},
    {"http://user:pw@acme.atlassian.net/", false, NULL, 0, false, NULL},
    {"http://acme.atlassian.net:443@evil/", false, NULL, 0, false, NULL},
    {"http://acme.atlassian.net\\@evil.com/", false, NULL, 0, false, NULL},
    {"http://acme.atlassian.net%2e/", false, NULL, 0, false, NULL},
    {"http:/acme.atlassian.net/", false, NULL, 0, false, NULL},
    {"http:acme.atlassian.net/", false, NULL, 0, false, NULL},
    {"http//acme.atlassian.net/", false, NULL, 0, false, NULL},
    {"ftp://acme.atlassian.net/", false, NULL, 0, false, NULL},
    {"ws://acme.atlassian.net/", false, NULL, 0, false, NULL},
    {"httpx://acme.atlassian.net/", false, NULL, 0, false, NULL},
    {"//acme.atlassian.net/", false, NULL, 0, false, NULL},
    {"/rest/api/3/myself", false, NULL, 0, false, NULL},
    {"acme.atlassian.net:443", false, NULL, 0, false, NULL},
    {"http://", false, NULL, 0, false, NULL},
    {"http:///x", false, NULL, 0, false, NULL},
    {"https://:443/", false, NULL, 0, false, NULL},
    {"http://acme.atlassian.net:/", false, NULL, 0, false, NULL},
    {"http://acme.atlassian.net:0443/", false, NULL, 0, false, NULL},
    {"http://acme.atlassian.net /", false, NULL, 0, false, NULL},
    {"http://acme.atlassian.net/ x", false, NULL, 0, false, NULL},
    {"http://acme.atlassian.net/\r\nHost: evil", false, NULL, 0, false, NULL},
    {"http://::1/", false, NULL, 0, false, NULL},
    {"", false, NULL, 0, false, NULL},
};

static void test_parse_absolute_table(void)
{
    for (size_t i = 0; i < UTIL_ARRAY_LEN(abs_rows); i++) {
        const struct abs_row *r = &abs_rows[i];
        struct hostmap_authority a;
        bool https = !r->https;
        size_t len = strlen(r->in), off = (size_t)-1;
        int rc = hostmap_parse_absolute(r->in, len, &a, &https, &off);

        CHECK_MSG((rc == 0) == r->ok, "row %zu \"%s\": rc %d", i, r->in, rc);
        if (rc != 0 || !r->ok)
            continue;
        CHECK_MSG(strcmp(a.host, r->host) == 0, "row %zu: host \"%s\"", i, a.host);
        CHECK_MSG(a.port == r->port, "row %zu: port %d", i, a.port);
        CHECK_MSG(https == r->https, "row %zu: https", i);
        CHECK_MSG(off <= len && strcmp(r->in + off, r->path) == 0, "row %zu: path_off %zu", i, off);
        if (off < len)
            CHECK_MSG(r->in[off] == '/', "row %zu: path starts with '/'", i);
    }
    /* NUL inside the length */
    {
        static const char t[] = "http://acme.atlassian.net\0.evil.com/";
        struct hostmap_authority a;
        bool https;
        size_t off;
        CHECK(hostmap_parse_absolute(t, sizeof(t) - 1, &a, &https, &off) < 0);
    }
}

/* ---- forward lookups -------------------------------------------------- */

struct fwd_row {
    const char *in;
    bool connect; /* in is a CONNECT authority, else an absolute URL */
    int site;     /* index into multi_sites, or -1 */
};

static const struct fwd_row fwd_rows[] = {
    {"http://acme.atlassian.net/", false, S_ACME},
    {"http://acme.atlassian.net", false, S_ACME},
    {"http://ACME.Atlassian.NET./x", false, S_ACME},
    {"http://acme.atlassian.net:80/", false, S_ACME},
    {"http://acme.atlassian.net:443/", false, S_ACME},
    {"https://acme.atlassian.net/", false, S_ACME},
    {"https://acme.atlassian.net:443/", false, S_ACME},
    {"HTTPS://ACME.ATLASSIAN.NET/", false, S_ACME},
    {"https://acme.atlassian.net:8443/", false, -1},
    {"https://acme.atlassian.net:80/", false, -1},
    {"http://acme.atlassian.net:8080/", false, -1},
    {"http://acme.atlassian.net:8443/", false, -1},
    {"http://acme.atlassian.net:0443/", false, -1},
    {"http://evil-acme.atlassian.net/", false, -1},
    {"http://acme-evil.atlassian.net/", false, -1},
    {"http://acme.atlassian.net.evil.com/", false, -1},
    {"http://acme.atlassian.net.evil.com:443/", false, -1},
    {"http://acmeatlassian.net/", false, -1},
    {"http://acme.atlassian.ne/", false, -1},
    {"http://cme.atlassian.net/", false, -1},
    {"http://atlassian.net/", false, -1},
    {"http://x.acme.atlassian.net/", false, -1},
    {"http://acme.atlassian.net@evil.com/", false, -1},
    {"http://evil.com#@acme.atlassian.net/", false, -1},
    {"http://acme.atlassian.net%2e/", false, -1},
    {"http://acme.atlassian.net:443@evil/", false, -1},
    {"http://acme.atlassian.net\\@evil.com/", false, -1},
    {"http://acme.atlassian.net../", false, -1},
    {"http://api.media.atlassian.com/file/x", false, -1},
    {"http://id.atlassian.com/", false, -1},
    {"http://acme/", false, -1},
    {"http://jira.example.org/", false, S_JIRA},
    {"https://jira.example.org/", false, S_JIRA},
    {"http://corp/", false, -1},
    {"http://acme-sandbox.atlassian.net/", false, S_SANDBOX},
    {"http://dc.example.com/", false, S_DC},
    {"http://dc.example.com:80/", false, S_DC},
    {"http://dc.example.com:8443/", false, S_DC},
    {"https://dc.example.com/", false, -1},
    {"https://dc.example.com:8443/", false, S_DC},
    {"http://[fd00::5]/", false, S_V6},
    {"http://[FD00:0:0::5]/", false, S_V6},
    {"https://[fd00::5]:443/", false, S_V6},
    {"http://[fd00::6]/", false, -1},
    {"http://10.0.0.5/", false, S_V4},
    {"http://010.0.0.5/", false, -1},
    {"http://10.0.5/", false, -1},
    {"http://0xa.0.0.5/", false, -1},
    {"http://167772165/", false, -1},
    {"ftp://acme.atlassian.net/", false, -1},
    {"http:/acme.atlassian.net/", false, -1},
    {"http://acme.atlassian.net?x", false, -1},
    /* CONNECT targets */
    {"acme.atlassian.net:443", true, S_ACME},
    {"ACME.atlassian.net.:443", true, S_ACME},
    {"acme.atlassian.net:8443", true, -1},
    {"acme.atlassian.net:80", true, -1},
    {"acme.atlassian.net:0443", true, -1},
    {"acme.atlassian.net.evil.com:443", true, -1},
    {"evil-acme.atlassian.net:443", true, -1},
    {"acme.atlassian.net:443@evil.com:443", true, -1},
    {"dc.example.com:8443", true, S_DC},
    {"dc.example.com:443", true, -1},
    {"[fd00::5]:443", true, S_V6},
    {"fd00::5:443", true, -1},
};

static void test_forward_table(void)
{
    struct config cfg = {.sites = multi_sites, .nsites = S_NSITES};
    struct hostmap *map = hostmap_new(&cfg);

    CHECK(map != NULL);
    for (size_t i = 0; i < UTIL_ARRAY_LEN(fwd_rows); i++) {
        const struct fwd_row *r = &fwd_rows[i];
        const struct config_site *got = NULL;
        struct hostmap_authority a;
        size_t len = strlen(r->in);

        if (r->connect) {
            if (hostmap_parse_authority(r->in, len, 443, &a) == 0)
                got = hostmap_lookup_forward(map, &a, true);
        } else {
            bool https;
            size_t off;
            if (hostmap_parse_absolute(r->in, len, &a, &https, &off) == 0)
                got = hostmap_lookup_forward(map, &a, https);
        }
        CHECK_MSG(got == (r->site < 0 ? NULL : &multi_sites[r->site]), "row %zu \"%s\": got %s", i,
                  r->in, got ? got->host : "NULL");
    }

    /* hostmap_lookup is exact on host and port */
    {
        struct hostmap_authority a;
        CHECK(hostmap_parse_authority("acme.atlassian.net", 18, 443, &a) == 0);
        CHECK(hostmap_lookup(map, &a) == &multi_sites[S_ACME]);
        CHECK(hostmap_parse_authority("acme.atlassian.net", 18, 80, &a) == 0);
        CHECK(hostmap_lookup(map, &a) == NULL);
        CHECK(hostmap_parse_authority("dc.example.com:8443", 19, 80, &a) == 0);
        CHECK(hostmap_lookup(map, &a) == &multi_sites[S_DC]);
        CHECK(hostmap_lookup(NULL, &a) == NULL);
        CHECK(hostmap_lookup(map, NULL) == NULL);
        CHECK(hostmap_lookup_forward(NULL, &a, true) == NULL);
        CHECK(hostmap_lookup_gateway(NULL, &a) == NULL);
    }
    hostmap_free(map);
    hostmap_free(NULL);
}

/* The same host configured on two ports: plain http prefers 443, else ambiguous. */
static void test_forward_same_host_two_ports(void)
{
    struct config_site two[2] = {
        {.host = "jira.example.org", .port = 8443},
        {.host = "jira.example.org", .port = 443},
    };
    struct config_site two_odd[2] = {
        {.host = "jira.example.org", .port = 8443},
        {.host = "jira.example.org", .port = 9443},
    };
    struct config cfg = {.sites = two, .nsites = 2};
    struct config cfg_odd = {.sites = two_odd, .nsites = 2};
    struct hostmap *map = hostmap_new(&cfg), *odd = hostmap_new(&cfg_odd);
    struct hostmap_authority a;

    CHECK(hostmap_parse_authority("jira.example.org", 16, 80, &a) == 0);
    CHECK(hostmap_lookup_forward(map, &a, false) == &two[1]);
    CHECK(hostmap_lookup_forward(odd, &a, false) == NULL);
    CHECK(hostmap_parse_authority("jira.example.org:8443", 21, 80, &a) == 0);
    CHECK(hostmap_lookup_forward(map, &a, false) == &two[0]);
    CHECK(hostmap_lookup_forward(odd, &a, true) == &two_odd[0]);
    hostmap_free(map);
    hostmap_free(odd);
}

/* ---- gateway ----------------------------------------------------------- */

struct gw_row {
    const char *host;
    bool single; /* against the one-site config, else the multi-site one */
    int site;    /* index, or -1 */
};

static const struct gw_row gw_rows[] = {
    {"acme.localhost", false, S_ACME},
    {"ACME.localhost.", false, S_ACME},
    {"Acme.LocalHost", false, S_ACME},
    {"acme.localhost:8080", false, S_ACME},
    {"acme.localhost:1", false, S_ACME},
    {"corp.localhost", false, S_JIRA},
    {"CORP.localhost:8080", false, S_JIRA},
    {"jira.example.org.localhost", false, S_JIRA},
    {"acme-sandbox.localhost", false, S_SANDBOX},
    {"acme.atlassian.net.localhost", false, S_ACME},
    {"dc.localhost", false, S_DC},
    {"dc.example.com.localhost:9", false, S_DC},
    {"10.0.0.5.localhost", false, S_V4},
    {"evil.localhost", false, -1},
    {"xacme.localhost", false, -1},
    {"acmex.localhost", false, -1},
    {"a.acme.localhost", false, -1},
    {"acme.localhost.evil.com", false, -1},
    {"acme.localhost.localhost", false, -1},
    {"acme", false, -1},
    {"corp", false, -1},
    {"acme.local", false, -1},
    {"acme.localhos", false, -1},
    {"localhost.acme", false, -1},
    {"acme.atlassian.net", false, -1},
    {"acme.localhost..", false, -1},
    {"acme..localhost", false, -1},
    {".localhost", false, -1},
    {"acme.localhost:0", false, -1},
    {"acme.localhost:", false, -1},
    {"acme.localhost@evil.com", false, -1},
    {"acme%2elocalhost", false, -1},
    /* naming the proxy itself: never with 2+ sites */
    {"localhost", false, -1},
    {"localhost:8080", false, -1},
    {"127.0.0.1", false, -1},
    {"127.0.0.1:8080", false, -1},
    {"[::1]:8080", false, -1},
    /* one site: any name of the proxy itself */
    {"localhost", true, 0},
    {"LOCALHOST.", true, 0},
    {"localhost:8080", true, 0},
    {"127.0.0.1", true, 0},
    {"127.0.0.1:8080", true, 0},
    {"127.1.2.3:8080", true, 0},
    {"[::1]:8080", true, 0},
    {"[::1]", true, 0},
    {"[0::1]", true, 0},
    {"acme.localhost:8080", true, 0},
    {"corp.localhost", true, -1},
    {"evil.localhost", true, -1},
    {"evil.com", true, -1},
    {"evil.com:8080", true, -1},
    {"10.0.0.1", true, -1},
    {"0.0.0.0", true, -1},
    {"128.0.0.1", true, -1},
    {"127.1", true, -1},
    {"0x7f.1", true, -1},
    {"2130706433", true, -1},
    {"127.0.0.1.nip.io", true, -1},
    {"localhost.evil.com", true, -1},
    {"[::2]", true, -1},
    {"[::ffff:127.0.0.1]", true, -1},
    {"::1", true, -1},
    {"", true, -1},
};

static void test_gateway_table(void)
{
    struct config multi = {.sites = multi_sites, .nsites = S_NSITES};
    struct config single = {.sites = single_sites, .nsites = 1};
    struct hostmap *mm = hostmap_new(&multi), *sm = hostmap_new(&single);

    for (size_t i = 0; i < UTIL_ARRAY_LEN(gw_rows); i++) {
        const struct gw_row *r = &gw_rows[i];
        const struct config_site *want = NULL, *got = NULL;
        struct hostmap_authority a;

        if (r->site >= 0)
            want = r->single ? &single_sites[r->site] : &multi_sites[r->site];
        if (hostmap_parse_authority(r->host, strlen(r->host), 80, &a) == 0)
            got = hostmap_lookup_gateway(r->single ? sm : mm, &a);
        CHECK_MSG(got == want, "row %zu \"%s\": got %s", i, r->host, got ? got->host : "NULL");
    }

    /* an empty config never selects anything */
    {
        struct config none = {0};
        struct hostmap *nm = hostmap_new(&none);
        struct hostmap_authority a;
        CHECK(hostmap_parse_authority("localhost", 9, 80, &a) == 0);
        CHECK(hostmap_lookup_gateway(nm, &a) == NULL);
        CHECK(hostmap_lookup_forward(nm, &a, false) == NULL);
        hostmap_free(nm);
    }
    hostmap_free(mm);
    hostmap_free(sm);
}

/* ---- loopback names --------------------------------------------------- */

struct lb_row {
    const char *host;
    bool loopback;
};

static const struct lb_row lb_rows[] = {
    {"localhost", true},
    {"LOCALHOST", true},
    {"localhost.", true},
    {"a.localhost", true},
    {"acme.localhost", true},
    {"A.B.LOCALHOST", true},
    {"127.0.0.1", true},
    {"127.255.255.254", true},
    {"127.0.0.0", true},
    {"::1", true},
    {"[::1]", true},
    {".localhost", false},
    {"localhost.evil.com", false},
    {"evillocalhost", false},
    {"localhostx", false},
    {"127.0.0.01", false},
    {"127.1", false},
    {"0x7f.0.0.1", false},
    {"0177.0.0.1", false},
    {"128.0.0.1", false},
    {"126.0.0.1", false},
    {"1.127.0.0.1", false},
    {"127.0.0.1.evil.com", false},
    {"::2", false},
    {"::ffff:127.0.0.1", false},
    {"0.0.0.0", false},
    {"", false},
    {"localhost..", false},
    {".", false},
};

static void test_loopback_table(void)
{
    for (size_t i = 0; i < UTIL_ARRAY_LEN(lb_rows); i++)
        CHECK_MSG(hostmap_is_loopback_name(lb_rows[i].host) == lb_rows[i].loopback,
                  "row %zu \"%s\"", i, lb_rows[i].host);
    CHECK(!hostmap_is_loopback_name(NULL));
}

/* ---- origins ---------------------------------------------------------- */

struct origin_row {
    int site;
    const char *origin;
    size_t len; /* 0: strlen */
    bool allowed;
};

static const struct origin_row origin_rows[] = {
    {S_ACME, "https://acme.atlassian.net", 0, true},
    {S_ACME, "https://ACME.Atlassian.net", 0, true},
    {S_ACME, "HTTPS://acme.atlassian.net", 0, true},
    {S_ACME, "https://acme.atlassian.net:443", 0, true},
    {S_ACME, "https://acme.atlassian.net/", 0, false},
    {S_ACME, "https://acme.atlassian.net/x", 0, false},
    {S_ACME, "https://acme.atlassian.net?x", 0, false},
    {S_ACME, "https://acme.atlassian.net#x", 0, false},
    {S_ACME, "https://acme.atlassian.net.", 0, false},
    {S_ACME, "https://acme.atlassian.net.:443", 0, false},
    {S_ACME, "https://acme.atlassian.net:", 0, false},
    {S_ACME, "https://acme.atlassian.net:0443", 0, false},
    {S_ACME, "https://acme.atlassian.net:8443", 0, false},
    {S_ACME, "https://acme.atlassian.net:80", 0, false},
    {S_ACME, "http://acme.atlassian.net", 0, false},
    {S_ACME, "http://acme.atlassian.net:443", 0, false},
    {S_ACME, "null", 0, false},
    {S_ACME, "", 0, false},
    {S_ACME, "https://", 0, false},
    {S_ACME, "https:/acme.atlassian.net", 0, false},
    {S_ACME, "acme.atlassian.net", 0, false},
    {S_ACME, "https://evil-acme.atlassian.net", 0, false},
    {S_ACME, "https://acme.atlassian.net.evil.com", 0, false},
    {S_ACME, "https://acmeatlassian.net", 0, false},
    {S_ACME, "https://acme.atlassian.network", 0, false},
    {S_ACME, "https://acme.atlassian.net@evil.com", 0, false},
    {S_ACME, "https://user@acme.atlassian.net", 0, false},
    {S_ACME, "https://acme.atlassian.net ", 0, false},
    {S_ACME, " https://acme.atlassian.net", 0, false},
    {S_ACME, "https://acme.atlassian.net\0", 27, false},
    {S_ACME, "https://acme.atlassian.net\0.evil.com", 36, false},
    {S_ACME, "https://acme.atlassian.net%2e", 0, false},
    {S_ACME, "https://jira.example.org", 0, false},
    {S_ACME, "http://127.0.0.1:8080", 0, false},
    {S_ACME, "http://localhost", 0, false},
    {S_ACME, "https://acme.atlassian.net, https://evil.com", 0, false},
    {S_JIRA, "https://jira.example.org", 0, true},
    {S_JIRA, "https://corp", 0, false},
    {S_DC, "https://dc.example.com:8443", 0, true},
    {S_DC, "https://dc.example.com", 0, false},
    {S_DC, "https://dc.example.com:443", 0, false},
    {S_V6, "https://[fd00::5]", 0, true},
    {S_V6, "https://[FD00:0::5]:443", 0, true},
    {S_V6, "https://fd00::5", 0, false},
    {S_V4, "https://10.0.0.5", 0, true},
    {S_V4, "https://010.0.0.5", 0, false},
};

static void test_origin_table(void)
{
    for (size_t i = 0; i < UTIL_ARRAY_LEN(origin_rows); i++) {
        const struct origin_row *r = &origin_rows[i];
        size_t len = r->len ? r->len : strlen(r->origin);
        CHECK_MSG(hostmap_origin_allowed(&multi_sites[r->site], r->origin, len) == r->allowed,
                  "row %zu \"%s\"", i, r->origin);
    }
    CHECK(!hostmap_origin_allowed(NULL, "https://acme.atlassian.net", 26));
    CHECK(!hostmap_origin_allowed(&multi_sites[S_ACME], NULL, 0));
}

/* A config host written in caps or with an uncanonical IPv6 still matches canonical input. */
static void test_config_host_normalized(void)
{
    struct config_site s[2] = {
        {.host = "Jira.Example.Org", .port = 443},
        {.host = "fd00:0:0:0:0:0:0:5", .port = 443},
    };
    struct config cfg = {.sites = s, .nsites = 2};
    struct hostmap *map = hostmap_new(&cfg);
    struct hostmap_authority a;

    CHECK(hostmap_parse_authority("jira.example.org", 16, 443, &a) == 0);
    CHECK(hostmap_lookup(map, &a) == &s[0]);
    CHECK(hostmap_parse_authority("[fd00::5]", 9, 443, &a) == 0);
    CHECK(hostmap_lookup(map, &a) == &s[1]);
    hostmap_free(map);
}

int main(void)
{
    test_parse_authority_table();
    test_parse_authority_lengths();
    test_parse_absolute_table();
    test_forward_table();
    test_forward_same_host_two_ports();
    test_gateway_table();
    test_loopback_table();
    test_origin_table();
    test_config_host_normalized();
    TEST_DONE();
}
