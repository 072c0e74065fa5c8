/*
 * test_config: every fixture under tests/fixtures/config. Good fixtures load
 * and their parsed fields are asserted; each bad fixture fails with exactly
 * the expected FILE:LINE:COL message (table below; every file in bad/ must
 * have an entry and every entry a file). Secrets all contain "SECRET" and no
 * error or warning may contain that word. Also: the ATLASSIAN_* environment
 * default, domain normalization, listen parsing, the lookup order.
 *
 * Fixtures that name token files or dates use @TMP@ and @SOON@; the test
 * copies them into a mkdtemp directory with those filled in.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "testlib.h"
#include "util.h"

#define SECRET_MARK "SECRET"

static char tmpdir[256];
static char soon_date[16];

static void write_file(const char *name, const char *data, size_t len, mode_t mode)
{
    char *p = xasprintf("%s/%s", tmpdir, name);
    FILE *f = fopen(p, "wb");
    CHECK(f != NULL);
    if (f) {
        fwrite(data, 1, len, f);
        fclose(f);
    }
    chmod(p, mode);
    free(p);
}

/* Replaces every @TMP@, @SOON@ and @DIR@ in s; returns a new string. */
static char *substitute(const char *s)
{
    char fixdir[4096];
    size_t cap = strlen(s) * 2 + 4096, len = 0;
    char *out = xmalloc(cap);
    while (*s) {
        const char *rep = NULL;
        size_t skip = 0;
        if (strncmp(s, "@TMP@", 5) == 0) {
            rep = tmpdir;
            skip = 5;
        } else if (strncmp(s, "@SOON@", 6) == 0) {
            rep = soon_date;
            skip = 6;
        } else if (strncmp(s, "@DIR@", 5) == 0) {
            /* the fixtures' directory, as the second and later error lines name it */
            const char *src = getenv("CREDPROXY_SOURCE_DIR");
            snprintf(fixdir, sizeof(fixdir), "%s/tests/fixtures/config", src ? src : ".");
            rep = fixdir;
            skip = 5;
        }
        if (rep) {
            size_t n = strlen(rep);
            if (len + n + 1 >= cap)
                break;
            memcpy(out + len, rep, n);
            len += n;
            s += skip;
        } else {
            if (len + 2 >= cap)
                break;
            out[len++] = *s++;
        }
    }
    out[len] = '\0';
    return out;
}

/* The path to load for fixture "bad/x.yaml": the source file, or a filled-in copy. */
static char *fixture_path(const char *rel)
{
    const char *src = getenv("CREDPROXY_SOURCE_DIR");
    char *path = xasprintf("%s/tests/fixtures/config/%s", src ? src : ".", rel);
    char *text = test_read_file(path);
    if (!text || (!strstr(text, "@TMP@") && !strstr(text, "@SOON@"))) {
        free(text);
        return path;
    }
    char *filled = substitute(text);
    char *copy = xasprintf("%s/%s", tmpdir, rel);
    write_file(rel, filled, strlen(filled), 0600);
    free(filled);
    free(text);
    free(path);
    return copy;
}

static void check_no_secret(const struct config *cfg, const char *err, const char *name)
{
    if (err) {
        CHECK_MSG(strstr(err, SECRET_MARK) == NULL, "%s: secret in error: %s", name, err);
        CHECK_MSG(strstr(err, "hunter2") == NULL, "%s: password in error: %s", name, err);
    }
    for (size_t i = 0; cfg && i < cfg->nwarnings; i++)
        CHECK_MSG(strstr(cfg->warnings[i].text, SECRET_MARK) == NULL, "%s: secret in warning: %s",
                  name, cfg->warnings[i].text);
}

static void setup(void)
{
    char big[CONFIG_MAX_SECRET_LEN + 100];

    snprintf(tmpdir, sizeof(tmpdir), "/tmp/credproxy-test-config-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        exit(1);
    }
    char *d = xasprintf("%s/good", tmpdir);
    mkdir(d, 0700);
    free(d);
    d = xasprintf("%s/bad", tmpdir);
    mkdir(d, 0700);
    free(d);

    /* five calendar days from today (UTC), so "5 days left" whatever the hour */
    time_t soon = time(NULL) / 86400 * 86400 + 5 * 86400;
    struct tm tm;
    gmtime_r(&soon, &tm);
    strftime(soon_date, sizeof(soon_date), "%Y-%m-%d", &tm);

    write_file("token.txt", "file-SECRET-tok\n", 16, 0600);
    write_file("token_crlf.txt", "crlf-SECRET-tok\r\n", 17, 0600);
    write_file("token_loose.txt", "loose-SECRET-tok\n", 17, 0644);
    write_file("token_space.txt", " file-SECRET-tok\n", 17, 0600);
    write_file("token_two_newlines.txt", "file-SECRET-tok\n\n", 17, 0600);
    write_file("token_empty.txt", "", 0, 0600);
    memset(big, 'A', sizeof(big));
    memcpy(big, SECRET_MARK, strlen(SECRET_MARK));
    write_file("token_big.txt", big, sizeof(big), 0600);
    write_file("key.txt", "key-SECRET-file\n", 16, 0600);
    write_file("ca.pem", "not really a CA\n", 16, 0644);

    setenv("CP_TOKEN", "env-SECRET-tok", 1);
    setenv("CP_EMPTY", "", 1);
    setenv("CP_SPACE", "env-SECRET-tok ", 1);
    setenv("CP_NEWLINE", "env-SECRET\ntok", 1);
    setenv("CP_KEY1", "key-SECRET-one", 1);
    setenv("CP_KEY2", "key-SECRET-two", 1);
    unsetenv("CP_UNSET");
}

static void teardown(void)
{
    char *cmd = xasprintf("rm -rf '%s'", tmpdir);
    if (strncmp(tmpdir, "/tmp/credproxy-test-config-", 27) == 0 && system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    free(cmd);
}

/* ------------------------------------------------------------------ bad */

static const struct {
    const char *name;
    const char *want; /* exact message, or its prefix where it lists allowed keys */
} bad_cases[] = {
    {"admin_bad", "bad/admin_bad.yaml:1:8: admin 'localhost' is not a listen address: the port is "
                  "missing; write HOST:PORT, e.g. 127.0.0.1:8080"},
    {"admin_is_listen", "bad/admin_is_listen.yaml:2:8: admin 127.0.0.1:8080 is also a main listen "
                        "address; give the admin endpoints their own address, e.g. 127.0.0.1:9090"},
    {"alias_bad", "bad/alias_bad.yaml:8:12: sites[0].alias 'corp.example' must be one DNS label "
                  "(letters, digits, '-'), e.g. alias: corp for corp.localhost"},
    {"alias_duplicate", "bad/alias_duplicate.yaml:9:5: sites[1].alias 'corp' is already used by "
                        "sites[0]; aliases must be unique"},
    {"alias_is_domain",
     "bad/alias_is_domain.yaml:8:5: sites[1].alias 'acme' is the domain of sites[0]; "
     "acme.localhost would be ambiguous, choose another alias"},
    {"basic_without_email",
     "bad/basic_without_email.yaml:3:5: credential 'svc' has no email: type basic "
     "needs the Atlassian account's email (email: you@example.com)"},
    {"bearer_inner_space",
     "bad/bearer_inner_space.yaml:4:12: credential 'dc': a bearer token cannot "
     "contain spaces (the token itself is not shown)"},
    {"bearer_with_email",
     "bad/bearer_with_email.yaml:4:5: credentials.dc.email is only for type: basic; "
     "remove it (bearer sends the token alone)"},
    {"bool_bad", "bad/bool_bad.yaml:9:10: upstream.http2 must be true or false (yes/no also "
                 "work), got 'maybe'"},
    {"burst_zero", "bad/burst_zero.yaml:5:12: credentials.svc.burst must be a whole number from 1 "
                   "to 1000000, got '0'"},
    {"ca_file_missing",
     "bad/ca_file_missing.yaml:9:12: upstream.ca_file @TMP@/no-such-ca.pem cannot be "
     "read: No such file or directory"},
    {"client_bad_id", "bad/client_bad_id.yaml:9:9: clients[0].id 'bot:one' may only use letters, "
                      "digits, '.', '_' and '-' (at most 64)"},
    {"client_duplicate_id",
     "bad/client_duplicate_id.yaml:11:9: clients[1].id 'bot' is already used by "
     "clients[0]; ids must be unique"},
    {"client_key_space",
     "bad/client_key_space.yaml:10:14: client 'bot': the key from environment "
     "variable CP_SPACE has leading or trailing white space; remove it (the key "
     "itself is not shown)"},
    {"client_no_id",
     "bad/client_no_id.yaml:9:5: clients[0] has no id; add id: NAME (the user name in "
     "Proxy-Authorization)"},
    {"client_no_key", "bad/client_no_key.yaml:9:5: client 'bot' has no key: add key_env: VARIABLE "
                      "(recommended), key_file: PATH or key: ..."},
    {"connect_timeout_zero",
     "bad/connect_timeout_zero.yaml:9:20: upstream.connect_timeout must be longer "
     "than 0"},
    {"connect_to_bad",
     "bad/connect_to_bad.yaml:10:7: upstream.connect_to[0] "
     "'acme.atlassian.net:443:127.0.0.1' is not valid: write "
     "HOST:PORT:CONNECT-HOST:CONNECT-PORT, e.g. acme.atlassian.net:443:127.0.0.1:8443"},
    {"connect_to_scalar", "bad/connect_to_scalar.yaml:9:15: upstream.connect_to must be a list (- "
                          "HOST:PORT:TO-HOST:TO-PORT), not a single value"},
    {"credential_name_bad",
     "bad/credential_name_bad.yaml:2:3: credential name 'svc bot' may only use "
     "letters, digits, '.', '_' and '-' (at most 64)"},
    {"duplicate_key", "bad/duplicate_key.yaml:5:5: duplicate key 'email' in credentials.svc (first "
                      "given at line 3); keep only one"},
    {"duplicate_key_top",
     "bad/duplicate_key_top.yaml:8:1: duplicate key 'sites' in the top level (first "
     "given at line 5); keep only one"},
    {"duration_negative",
     "bad/duration_negative.yaml:8:19: shutdown_timeout must be a duration like "
     "500ms, 10s, 5m or 1h, got '-1s'"},
    {"duration_no_unit",
     "bad/duration_no_unit.yaml:9:13: rate_limit.max_wait needs a unit: write 30s (or "
     "ms, m, h)"},
    {"email_inner_space",
     "bad/email_inner_space.yaml:3:12: credential 'svc': the email contains white "
     "space or a control character; remove it"},
    {"email_no_at",
     "bad/email_no_at.yaml:3:12: credential 'svc': email 'svc.example.com' is not an "
     "email address (no '@'); give the Atlassian account's email"},
    {"email_trailing_space",
     "bad/email_trailing_space.yaml:3:12: credential 'svc': the email has leading or "
     "trailing white space; remove it"},
    {"empty_file", "bad/empty_file.yaml:1:1: the configuration file is empty; see "
                   "conf/credproxy.example.yaml"},
    {"empty_sites", "bad/empty_sites.yaml:5:8: sites is empty: add at least one site"},
    {"empty_value", "bad/empty_value.yaml:1:7: admin has no value; give one or remove the key"},
    {"env_empty", "bad/env_empty.yaml:4:16: credential 'svc': environment variable CP_EMPTY is "
                  "empty; export the token in it"},
    {"env_newline_inside",
     "bad/env_newline_inside.yaml:4:16: credential 'svc': the token from environment "
     "variable CP_NEWLINE contains a control character (such as a line break); it "
     "must be a single line (the token itself is not shown)"},
    {"env_space", "bad/env_space.yaml:4:16: credential 'svc': the token from environment variable "
                  "CP_SPACE has leading or trailing white space; remove it (the token itself is "
                  "not shown)"},
    {"env_unset", "bad/env_unset.yaml:4:16: credential 'svc': environment variable CP_UNSET is not "
                  "set; export it before starting credproxy"},
    {"expires_bad", "bad/expires_bad.yaml:5:14: credentials.svc.expires must be a date YYYY-MM-DD, "
                    "e.g. 2027-11-28, got '2027-13-01'"},
    {"listen_bad_port",
     "bad/listen_bad_port.yaml:1:9: listen '127.0.0.1:http' is not a listen address: "
     "the port must be a number from 0 to 65535"},
    {"listen_duplicate",
     "bad/listen_duplicate.yaml:3:5: listen 127.0.0.1:8080 is given twice (also "
     "listen[0]); remove one"},
    {"listen_empty_list",
     "bad/listen_empty_list.yaml:1:9: listen is an empty list; give at least one "
     "address, e.g. 127.0.0.1:8080"},
    {"listen_v6_brackets",
     "bad/listen_v6_brackets.yaml:1:9: listen '::1:8080' is not a listen address: "
     "write an IPv6 address in brackets, e.g. [::1]:8080"},
    {"log_format_bad", "bad/log_format_bad.yaml:9:11: log.format must be text or json, got 'xml'"},
    {"log_level_bad",
     "bad/log_level_bad.yaml:9:10: log.level must be debug, info, warn or error, got "
     "'verbose'"},
    {"max_queue_negative",
     "bad/max_queue_negative.yaml:9:14: rate_limit.max_queue must be a whole number "
     "from 0 to 1000000, got '-1'"},
    {"missing_credentials",
     "bad/missing_credentials.yaml:1:1: credentials is missing: add at least one, "
     "e.g. credentials: {svc: {email: you@example.com, token_env: "
     "ATLASSIAN_API_TOKEN}}"},
    {"missing_sites", "bad/missing_sites.yaml:1:1: sites is missing: add at least one, e.g. sites: "
                      "[{domain: acme, credential: svc}]"},
    {"policy_allow_scalar", "bad/policy_allow_scalar.yaml:10:12: policies.triage.allow must be a "
                            "list ([A, B]), not a single value"},
    {"policy_bad_project", "bad/policy_bad_project.yaml:11:21: policies.triage.projects: '1SEC' is "
                           "not a Jira project key (a letter, then letters, digits or _)"},
    {"policy_builtin_redefined", "bad/policy_builtin_redefined.yaml:9:3: policy 'read-only' is "
                                 "built in and cannot be redefined; give yours another name"},
    {"policy_client_unknown", "bad/policy_client_unknown.yaml:14:13: clients[0].policy: unknown "
                              "policy 'traige'; defined: full, read-only, triage"},
    {"policy_default_unknown", "bad/policy_default_unknown.yaml:8:17: default_policy: unknown "
                               "policy 'readonly'; defined: full, read-only"},
    {"policy_empty_allow",
     "bad/policy_empty_allow.yaml:10:12: policies.triage.allow is an empty list; name at least one "
     "class (read, comment, transition, write, delete, admin)"},
    {"policy_empty_map",
     "bad/policy_empty_map.yaml:8:11: policies is empty; define one or remove the key"},
    {"policy_empty_projects",
     "bad/policy_empty_projects.yaml:11:15: policies.triage.projects is an empty list; it would "
     "allow nothing (remove the key to allow every one, or name at least one)"},
    {"policy_empty_spaces",
     "bad/policy_empty_spaces.yaml:11:13: policies.docs.spaces is an empty list; it would allow "
     "nothing (remove the key to allow every one, or name at least one)"},
    {"policy_no_allow",
     "bad/policy_no_allow.yaml:10:5: policies.triage has no allow list; add allow: [read, ...] "
     "(classes: read, comment, transition, write, delete, admin)"},
    {"policy_unknown_class",
     "bad/policy_unknown_class.yaml:10:19: policies.triage.allow: unknown class 'comments'; "
     "classes are read, comment, transition, write, delete, admin"},
    {"policy_unknown_key", "bad/policy_unknown_key.yaml:11:5: unknown key 'project' in "
                           "policies.triage; allowed keys: allow, projects, spaces"},
    {"port_range",
     "bad/port_range.yaml:8:11: sites[0].port must be a whole number from 1 to 65535, "
     "got '70000'"},
    {"proxy_bad", "bad/proxy_bad.yaml:9:10: upstream.proxy must be a URL starting with http://, "
                  "https://, socks5:// or socks5h://, e.g. http://proxy.example:3128"},
    {"rate_bad", "bad/rate_bad.yaml:5:17: credentials.svc.rate_limit must be a rate like 100/min, "
                 "10/s or 1000/h (or off), got '100'"},
    {"remote_no_clients",
     "bad/remote_no_clients.yaml:1:9: listen 0.0.0.0:8080 is not loopback and no "
     "clients are configured: anyone who can reach it could use the Atlassian "
     "credential. Add clients (and require_client_auth: true), listen on 127.0.0.1 or "
     "a unix: socket, or set allow_unauthenticated_remote: true"},
    {"remote_site_listen_no_clients",
     "bad/remote_site_listen_no_clients.yaml:8:13: listen 0.0.0.0:8082 is not "
     "loopback and no clients are configured: anyone who can reach it could use the "
     "Atlassian credential. Add clients (and require_client_auth: true), listen on "
     "127.0.0.1 or a unix: socket, or set allow_unauthenticated_remote: true"},
    {"require_auth_no_clients",
     "bad/require_auth_no_clients.yaml:8:22: require_client_auth is true but no "
     "clients are configured; add clients (- id: NAME, key_env: VAR) or set it to "
     "false"},
    {"second_document", "bad/second_document.yaml:9:1: a second YAML document starts here; the "
                        "configuration must be one document"},
    /* Every section is checked: all three errors are reported, one per line. */
    {"several_errors",
     "bad/several_errors.yaml:1:9: listen '8080' is not a listen address: the host is missing; "
     "write 127.0.0.1:PORT for local use or 0.0.0.0:PORT for every interface\n"
     "@DIR@/bad/several_errors.yaml:2:10: workers must be a whole number from 0 to 64, got "
     "'999'\n"
     "@DIR@/bad/several_errors.yaml:11:10: log.level must be debug, info, warn or error, got "
     "'loud'"},
    {"site_host_ip",
     "bad/site_host_ip.yaml:6:11: sites[0].host '10.0.0.1' is an IP address; a site must be a "
     "host name (the interception CA certifies names): name it and map the name to the address "
     "with upstream.connect_to"},
    {"server_names_port",
     "bad/server_names_port.yaml:9:18: gateway.server_names[0] 'credproxy:8082' is not a "
     "lowercase host name (no port, no scheme), e.g. credproxy"},
    {"site_bad_domain",
     "bad/site_bad_domain.yaml:6:13: sites[0].domain 'acme corp' is not an Atlassian "
     "Cloud site name; write the part before .atlassian.net (domain: acme), or use "
     "host: for other hosts"},
    {"site_domain_and_host",
     "bad/site_domain_and_host.yaml:8:5: sites[0] has both domain and host; give "
     "domain: NAME for NAME.atlassian.net or host: FULL.HOST.NAME, not both"},
    {"site_duplicate", "bad/site_duplicate.yaml:8:5: sites[1] repeats sites[0] "
                       "(acme.atlassian.net:443); remove one"},
    {"site_host_port",
     "bad/site_host_port.yaml:6:11: sites[0].host 'jira.example.org:8443' must be a "
     "bare host name (no scheme, path, port or user); write host: jira.example.org "
     "and put the port in port:"},
    {"site_host_url",
     "bad/site_host_url.yaml:6:11: sites[0].host 'https://jira.example.org/jira' must "
     "be a bare host name (no scheme, path, port or user); write host: "
     "jira.example.org"},
    {"site_listen_duplicate",
     "bad/site_listen_duplicate.yaml:11:13: sites[1].listen 127.0.0.1:8082 is also "
     "the listen address of sites[0]; each site needs its own"},
    {"site_listen_is_admin",
     "bad/site_listen_is_admin.yaml:9:13: sites[0].listen 127.0.0.1:9090 is also the "
     "admin address; give each its own"},
    {"site_listen_is_main",
     "bad/site_listen_is_main.yaml:9:13: sites[0].listen 127.0.0.1:8080 is also a "
     "main listen address; a site listener needs its own address"},
    {"site_neither", "bad/site_neither.yaml:6:5: sites[0] has neither domain nor host; add domain: "
                     "acme (for acme.atlassian.net) or host: jira.example.org"},
    {"site_no_credential",
     "bad/site_no_credential.yaml:6:5: sites[0] has no credential; add credential: "
     "NAME naming one of credentials"},
    {"site_unknown_credential",
     "bad/site_unknown_credential.yaml:10:17: sites[0].credential 'nope' is not "
     "defined; defined credentials: svc, other"},
    {"store_bad", "bad/store_bad.yaml:9:10: rate_limit.store must be local or "
                  "redis://HOST:PORT[/DB]: the scheme must be redis://"},
    {"store_password",
     "bad/store_password.yaml:9:10: rate_limit.store must be local or "
     "redis://HOST:PORT[/DB]: a password in the URL is not supported (it would be a "
     "secret in the file)"},
    {"token_env_is_token",
     "bad/token_env_is_token.yaml:4:16: credentials.svc.token_env must be the NAME of "
     "an environment variable (letters, digits, _), not the token itself (the value "
     "is not shown)"},
    {"token_file_empty", "bad/token_file_empty.yaml:4:17: credential 'svc': the token from "
                         "@TMP@/token_empty.txt is empty"},
    {"token_file_is_token",
     "bad/token_file_is_token.yaml:4:17: credential 'svc': cannot read "
     "credentials.svc.token_file: No such file or directory (the value is not shown "
     "in case it is the token itself; token_file takes a file path)"},
    {"token_file_missing",
     "bad/token_file_missing.yaml:4:17: credential 'svc': cannot read token_file "
     "@TMP@/nope.txt: No such file or directory"},
    {"token_file_space",
     "bad/token_file_space.yaml:4:17: credential 'svc': the token from "
     "@TMP@/token_space.txt has leading or trailing white space; remove it (the token "
     "itself is not shown)"},
    {"token_file_too_long",
     "bad/token_file_too_long.yaml:4:17: credential 'svc': the token from "
     "@TMP@/token_big.txt is longer than 8192 bytes; check that it is the token"},
    {"token_file_two_newlines",
     "bad/token_file_two_newlines.yaml:4:17: credential 'svc': the token from "
     "@TMP@/token_two_newlines.txt has leading or trailing white space; remove it "
     "(the token itself is not shown)"},
    {"token_inline_space",
     "bad/token_inline_space.yaml:4:12: credential 'svc': the token from the "
     "configuration file (token:) has leading or trailing white space; remove it (the "
     "token itself is not shown)"},
    {"token_missing", "bad/token_missing.yaml:3:5: credential 'svc' has no token: add token_env: "
                      "VARIABLE (recommended), token_file: PATH or token: ..."},
    {"token_two_sources",
     "bad/token_two_sources.yaml:5:5: credential 'svc' has both token_env and token; "
     "give exactly one of token_env, token_file or token"},
    {"type_bad", "bad/type_bad.yaml:3:11: credentials.svc.type must be basic, bearer or "
                 "oauth_client, got 'oauth'"},
    {"unknown_hosts_bad",
     "bad/unknown_hosts_bad.yaml:8:16: unknown_hosts must be deny or tunnel, got "
     "'allow'"},
    {"unknown_key_credential",
     "bad/unknown_key_credential.yaml:3:5: unknown key 'emial' in credentials.svc; "
     "allowed keys: "},
    {"unknown_key_log",
     "bad/unknown_key_log.yaml:9:3: unknown key 'fromat' in log; allowed keys: "},
    {"unknown_key_site",
     "bad/unknown_key_site.yaml:7:5: unknown key 'credentails' in sites[0]; allowed "
     "keys: "},
    {"unknown_key_top",
     "bad/unknown_key_top.yaml:8:1: unknown key 'lisen' in the top level; allowed "
     "keys: "},
    {"unknown_key_upstream",
     "bad/unknown_key_upstream.yaml:10:3: unknown key 'ca_bundle' in upstream; "
     "allowed keys: "},
    {"when_exhausted_bad",
     "bad/when_exhausted_bad.yaml:9:19: rate_limit.when_exhausted must be queue or "
     "reject, got 'drop'"},
    {"workers_range",
     "bad/workers_range.yaml:1:10: workers must be a whole number from 0 to 64, got "
     "'65'"},
    {"wrong_type_credentials",
     "bad/wrong_type_credentials.yaml:1:14: credentials must be a map of name: "
     "{email, token_env, ...}, not a single value"},
    {"wrong_type_email",
     "bad/wrong_type_email.yaml:3:12: credentials.svc.email must be a single value, "
     "not a list"},
    {"wrong_type_listen", "bad/wrong_type_listen.yaml:2:3: listen must be an address or a list of "
                          "addresses, not a map"},
    {"wrong_type_sites",
     "bad/wrong_type_sites.yaml:6:3: sites must be a list (- domain: acme ...), not a "
     "map"},
    {"yaml_indent",
     "bad/yaml_indent.yaml:4:4: YAML syntax error: did not find expected key while "
     "parsing a block mapping (which started at line 2, column 3); check indentation "
     "and quoting"},
    {"yaml_syntax", "bad/yaml_syntax.yaml:7:1: YAML syntax error: found unexpected end of stream "
                    "while scanning a quoted scalar (which started at line 3, column 12); check "
                    "indentation and quoting"},
};

static void test_bad(void)
{
    for (size_t i = 0; i < UTIL_ARRAY_LEN(bad_cases); i++) {
        char *rel = xasprintf("bad/%s.yaml", bad_cases[i].name);
        char *path = fixture_path(rel);
        char *want = substitute(bad_cases[i].want);
        struct config *cfg = (struct config *)1;
        char *err = NULL;
        int rc = config_load_file(path, &cfg, &err);
        CHECK_MSG(rc == -1, "%s: loaded but should fail", rel);
        CHECK_MSG(cfg == NULL, "%s: config returned on failure", rel);
        if (rc == 0)
            config_free(cfg);
        if (err) {
            /* the path as given, then the message exactly */
            const char *at = strstr(err, rel);
            CHECK_MSG(at != NULL && strncmp(err, path, strlen(path)) == 0, "%s: got '%s'", rel,
                      err);
            if (at)
                CHECK_MSG(strncmp(at, want, strlen(want)) == 0 &&
                              (strstr(want, "allowed keys: ") || strlen(at) == strlen(want)),
                          "%s:\n  got  '%s'\n  want '%s'", rel, at, want);
            check_no_secret(NULL, err, rel);
        } else {
            CHECK_MSG(0, "%s: no error message", rel);
        }
        free(err);
        free(want);
        free(path);
        free(rel);
    }

    /* every file in bad/ has a case */
    const char *src = getenv("CREDPROXY_SOURCE_DIR");
    char *dir = xasprintf("%s/tests/fixtures/config/bad", src ? src : ".");
    DIR *d = opendir(dir);
    CHECK_MSG(d != NULL, "cannot open %s (is CREDPROXY_SOURCE_DIR set?)", dir);
    size_t nfiles = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n < 6 || strcmp(e->d_name + n - 5, ".yaml") != 0)
            continue;
        nfiles++;
        bool found = false;
        for (size_t i = 0; i < UTIL_ARRAY_LEN(bad_cases); i++) {
            if (strlen(bad_cases[i].name) == n - 5 &&
                strncmp(bad_cases[i].name, e->d_name, n - 5) == 0)
                found = true;
        }
        CHECK_MSG(found, "bad/%s has no expected message in the table", e->d_name);
    }
    if (d)
        closedir(d);
    CHECK(nfiles == UTIL_ARRAY_LEN(bad_cases));
    CHECK(nfiles >= 30);
    free(dir);

    /* a file that does not exist */
    struct config *cfg = NULL;
    char *err = NULL;
    char *missing = xasprintf("%s/no-such.yaml", tmpdir);
    CHECK(config_load_file(missing, &cfg, &err) == -1);
    /* No made-up FILE:1:1 position: there is no file to point into. */
    char *want = xasprintf("credproxy: cannot read %s: No such file or directory", missing);
    CHECK_STR(err, want);
    free(want);
    free(err);
    free(missing);
}

/* ----------------------------------------------------------------- good */

static struct config *load_good(const char *name)
{
    char *rel = xasprintf("good/%s.yaml", name);
    char *path = fixture_path(rel);
    struct config *cfg = NULL;
    char *err = NULL;
    int rc = config_load_file(path, &cfg, &err);
    CHECK_MSG(rc == 0, "%s: %s", rel, err ? err : "(no message)");
    check_no_secret(cfg, err, rel);
    free(err);
    free(path);
    free(rel);
    return cfg;
}

static bool has_warning(const struct config *cfg, const char *part)
{
    for (size_t i = 0; i < cfg->nwarnings; i++) {
        if (strstr(cfg->warnings[i].text, part))
            return true;
    }
    return false;
}

static void dump_warnings(const struct config *cfg)
{
    for (size_t i = 0; i < cfg->nwarnings; i++)
        fprintf(stderr, "  warning: %s\n", cfg->warnings[i].text);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static void test_good_minimal(void)
{
    struct config *cfg = load_good("minimal");
    if (!cfg)
        return;
    CHECK(cfg->nwarnings == 0);
    CHECK(cfg->nlisten == 1);
    CHECK_STR(cfg->listen[0].text, "127.0.0.1:8080");
    CHECK_STR(cfg->listen[0].host, "127.0.0.1");
    CHECK(cfg->listen[0].port == 8080 && cfg->listen[0].loopback);
    CHECK(cfg->admin == NULL);
    CHECK(cfg->workers >= 1 && cfg->workers <= CONFIG_MAX_WORKERS);
    CHECK(cfg->ncredentials == 1 && cfg->nsites == 1 && cfg->nclients == 0);
    const struct config_credential *cr = &cfg->credentials[0];
    CHECK_STR(cr->name, "svc");
    CHECK(cr->type == CONFIG_CRED_BASIC);
    CHECK_STR(cr->email, "svc@example.com");
    CHECK(cr->source == CONFIG_SECRET_ENV);
    CHECK_STR(cr->source_ref, "CP_TOKEN");
    CHECK_STR(cr->secret, "env-SECRET-tok");
    CHECK(cr->expires == 0 && !cr->rate_off);
    CHECK(fabs(cr->rate_per_sec - CONFIG_DEFAULT_RATE_PER_SEC) < 1e-9);
    CHECK(cr->burst == CONFIG_DEFAULT_BURST);
    CHECK(cr->pos.line == 2 && cr->pos.col == 3);
    const struct config_site *s = &cfg->sites[0];
    CHECK_STR(s->host, "acme.atlassian.net");
    CHECK_STR(s->domain, "acme");
    CHECK(s->alias == NULL && s->listen == NULL && s->port == 443 && s->credential == 0);
    CHECK(s->pos.line == 6 && s->pos.col == 5);
    CHECK(cfg->unknown_hosts == CONFIG_UNKNOWN_DENY);
    CHECK(cfg->rate_limit.when_exhausted == CONFIG_RL_QUEUE);
    CHECK(cfg->rate_limit.max_wait_ms == CONFIG_DEFAULT_MAX_WAIT_MS);
    CHECK(cfg->rate_limit.max_queue == CONFIG_DEFAULT_MAX_QUEUE);
    CHECK(cfg->rate_limit.store == NULL && cfg->rate_limit.redis_host == NULL);
    CHECK(!cfg->require_client_auth && !cfg->allow_unauthenticated_remote);
    CHECK(cfg->upstream.ca_file == NULL && cfg->upstream.proxy == NULL);
    CHECK(cfg->upstream.nconnect_to == 0);
    CHECK(cfg->upstream.connect_timeout_ms == CONFIG_DEFAULT_CONNECT_TIMEOUT_MS);
    CHECK(cfg->upstream.timeout_ms == CONFIG_DEFAULT_TIMEOUT_MS);
    CHECK(!cfg->upstream.http2);
    /* The default, relative, is taken next to the configuration file, made absolute. */
    CHECK(cfg->interception.ca_cert[0] == '/' &&
          ends_with(cfg->interception.ca_cert,
                    "/tests/fixtures/config/good/" CONFIG_DEFAULT_CA_CERT));
    CHECK(
        cfg->interception.ca_key[0] == '/' &&
        ends_with(cfg->interception.ca_key, "/tests/fixtures/config/good/" CONFIG_DEFAULT_CA_KEY));
    CHECK(cfg->gateway.rewrite_links);
    CHECK(cfg->shutdown_timeout_ms == CONFIG_DEFAULT_SHUTDOWN_TIMEOUT_MS);
    CHECK(cfg->body_timeout_ms == CONFIG_DEFAULT_BODY_TIMEOUT_MS);
    CHECK(cfg->log.format == LOG_FORMAT_TEXT && cfg->log.level == LOG_INFO && cfg->log.audit);
    CHECK(config_credential_index(cfg, "svc") == 0);
    CHECK(config_credential_index(cfg, "nope") == -1);
    CHECK(strstr(cfg->file, "good/minimal.yaml") != NULL);
    config_free(cfg);
}

static void test_good_full(void)
{
    struct config *cfg = load_good("full");
    if (!cfg)
        return;
    if (cfg->nwarnings)
        dump_warnings(cfg);
    CHECK(cfg->nwarnings == 0);
    CHECK(cfg->nlisten == 3);
    CHECK(cfg->listen[1].kind == CONFIG_LISTEN_TCP);
    CHECK_STR(cfg->listen[1].host, "::1");
    CHECK(cfg->listen[1].port == 18081 && cfg->listen[1].loopback);
    CHECK(cfg->listen[2].kind == CONFIG_LISTEN_UNIX && cfg->listen[2].loopback);
    CHECK_STR(cfg->listen[2].path, "/tmp/credproxy-test.sock");
    CHECK(cfg->listen[0].pos.line == 3 && cfg->listen[0].pos.col == 5);
    CHECK(cfg->admin && cfg->admin->port == 19090);
    CHECK(cfg->workers == 3);
    CHECK(cfg->ncredentials == 2);
    const struct config_credential *svc = &cfg->credentials[0], *dc = &cfg->credentials[1];
    CHECK(svc->expires == 4099507200LL);
    CHECK(fabs(svc->rate_per_sec - 200.0 / 60) < 1e-9 && svc->burst == 5);
    CHECK(dc->type == CONFIG_CRED_BEARER && dc->email == NULL);
    CHECK(dc->source == CONFIG_SECRET_FILE);
    CHECK(dc->source_ref && strstr(dc->source_ref, "/token.txt"));
    CHECK_STR(dc->secret, "file-SECRET-tok");
    CHECK(dc->rate_off);
    CHECK(cfg->nsites == 3);
    CHECK_STR(cfg->sites[1].host, "jira.example.org");
    CHECK(cfg->sites[1].domain == NULL);
    CHECK_STR(cfg->sites[1].alias, "corp");
    CHECK(cfg->sites[1].port == 8443 && cfg->sites[1].credential == 1);
    CHECK_STR(cfg->sites[2].host, "acme-sandbox.atlassian.net");
    CHECK(cfg->sites[2].listen && cfg->sites[2].listen->port == 18082);
    CHECK(cfg->rate_limit.when_exhausted == CONFIG_RL_REJECT);
    CHECK(cfg->rate_limit.max_wait_ms == 1500);
    CHECK(cfg->rate_limit.max_queue == 50);
    CHECK_STR(cfg->rate_limit.store, "redis://127.0.0.1:6380/2");
    CHECK_STR(cfg->rate_limit.redis_host, "127.0.0.1");
    CHECK(cfg->rate_limit.redis_port == 6380 && cfg->rate_limit.redis_db == 2);
    CHECK(cfg->nclients == 2);
    CHECK_STR(cfg->clients[0].id, "triage-bot");
    CHECK_STR(cfg->clients[0].key, "key-SECRET-one");
    CHECK(cfg->clients[0].has_rate && fabs(cfg->clients[0].rate_per_sec - 20.0 / 60) < 1e-9);
    CHECK(cfg->clients[0].burst == 3);
    CHECK_STR(cfg->clients[1].key, "key-SECRET-file");
    CHECK(cfg->clients[1].source == CONFIG_SECRET_FILE && !cfg->clients[1].has_rate);
    CHECK(cfg->clients[1].burst == CONFIG_DEFAULT_BURST);
    CHECK(cfg->require_client_auth && !cfg->allow_unauthenticated_remote);
    CHECK(cfg->upstream.ca_file && strstr(cfg->upstream.ca_file, "/ca.pem"));
    CHECK(cfg->upstream.nconnect_to == 2);
    const struct config_connect_to *ct = &cfg->upstream.connect_to[0];
    CHECK_STR(ct->text, "acme.atlassian.net:443:127.0.0.1:8443");
    CHECK_STR(ct->host, "acme.atlassian.net");
    CHECK(ct->port == 443 && ct->to_port == 8443);
    CHECK_STR(ct->to_host, "127.0.0.1");
    ct = &cfg->upstream.connect_to[1];
    CHECK_STR(ct->host, "");
    CHECK_STR(ct->to_host, "::1");
    CHECK(ct->port == 0 && ct->to_port == 0);
    CHECK_STR(cfg->upstream.proxy, "socks5h://127.0.0.1:1080");
    CHECK(cfg->upstream.connect_timeout_ms == 2000 && cfg->upstream.timeout_ms == 0);
    CHECK(!cfg->upstream.http2);
    CHECK_STR(cfg->interception.ca_cert, "/tmp/x/ca.pem");
    CHECK_STR(cfg->interception.ca_key, "/tmp/x/ca.key");
    CHECK(!cfg->gateway.rewrite_links);
    CHECK(cfg->shutdown_timeout_ms == 60000);
    CHECK(cfg->body_timeout_ms == 30000);
    CHECK(cfg->log.format == LOG_FORMAT_JSON && cfg->log.level == LOG_DEBUG && !cfg->log.audit);
    config_free(cfg);
}

static void test_good_normalize(void)
{
    struct config *cfg = load_good("normalize");
    if (!cfg)
        return;
    CHECK(cfg->nsites == 3);
    CHECK_STR(cfg->sites[0].domain, "acme");
    CHECK_STR(cfg->sites[0].host, "acme.atlassian.net");
    CHECK_STR(cfg->sites[1].domain, "beta");
    CHECK_STR(cfg->sites[2].host, "gamma.atlassian.net");
    CHECK(cfg->nwarnings == 3);
    if (cfg->nwarnings == 3) {
        CHECK(strstr(cfg->warnings[0].text,
                     "good/normalize.yaml:6:13: warning: sites[0].domain "
                     "'https://ACME.atlassian.net/wiki' normalized to 'acme'") != NULL);
        CHECK(strstr(cfg->warnings[1].text,
                     ":8:13: warning: sites[1].domain ' beta ' normalized to 'beta'") != NULL);
        CHECK(strstr(cfg->warnings[2].text, ":10:13: warning: sites[2].domain "
                                            "'gamma.atlassian.net' normalized to 'gamma'") != NULL);
    }
    config_free(cfg);
}

static void test_good_token_files(void)
{
    struct config *cfg = load_good("token_files");
    if (!cfg)
        return;
    CHECK_STR(cfg->credentials[0].secret, "file-SECRET-tok");
    CHECK_STR(cfg->credentials[1].secret, "crlf-SECRET-tok");
    CHECK_STR(cfg->credentials[2].secret, "loose-SECRET-tok");
    CHECK(cfg->nwarnings == 1);
    char *want = xasprintf(":11:17: warning: credential 'c': token_file %s/token_loose.txt is "
                           "readable by group or others (mode 0644); run chmod 600 %s/"
                           "token_loose.txt",
                           tmpdir, tmpdir);
    CHECK_MSG(has_warning(cfg, want), "missing: %s", want);
    free(want);
    config_free(cfg);
}

static void test_good_inline_tunnel(void)
{
    struct config *cfg = load_good("inline_and_tunnel");
    if (!cfg)
        return;
    CHECK(cfg->credentials[0].source == CONFIG_SECRET_INLINE);
    CHECK(cfg->credentials[0].source_ref == NULL);
    CHECK_STR(cfg->credentials[0].secret, "inline-SECRET-tok");
    CHECK_STR(cfg->clients[0].key, "inline-SECRET-key");
    CHECK(cfg->unknown_hosts == CONFIG_UNKNOWN_TUNNEL);
    CHECK(cfg->nwarnings == 3);
    CHECK(has_warning(cfg, ":4:5: warning: credential 'svc': the token is written in the "
                           "configuration file (token:)"));
    CHECK(has_warning(cfg, ":8:5: warning: client 'bot': the key is written in the "
                           "configuration file (key:)"));
    CHECK(has_warning(cfg, ":5:16: warning: unknown_hosts: tunnel: traffic to hosts not in "
                           "sites passes through uninspected"));
    /* clients exist but everything is loopback: not forced */
    CHECK(!cfg->require_client_auth);
    config_free(cfg);
}

static void test_good_remote(void)
{
    struct config *cfg = load_good("remote_clients");
    if (cfg) {
        CHECK(cfg->require_client_auth);
        CHECK(!cfg->listen[0].loopback);
        CHECK(has_warning(cfg, "remote_clients.yaml:2:9: warning: listen 0.0.0.0:18080 is not "
                               "loopback: require_client_auth is forced to true"));
        CHECK(has_warning(cfg, "remote_clients.yaml:3:8: warning: admin 0.0.0.0:19090 is not "
                               "loopback"));
        CHECK(cfg->nwarnings == 2);
        config_free(cfg);
    }
    cfg = load_good("remote_allowed");
    if (cfg) {
        CHECK(!cfg->require_client_auth && cfg->allow_unauthenticated_remote);
        CHECK(has_warning(cfg, ":1:9: warning: listen 0.0.0.0:18080 is not loopback and "
                               "allow_unauthenticated_remote is true"));
        CHECK(has_warning(cfg, ":10:13: warning: listen [::]:18082 is not loopback and "
                               "allow_unauthenticated_remote is true"));
        CHECK(cfg->nwarnings == 2);
        config_free(cfg);
    }
}

static void test_good_expiry(void)
{
    struct config *cfg = load_good("expiry");
    if (!cfg)
        return;
    CHECK(cfg->credentials[0].expires == 1580428800LL);
    CHECK(cfg->nwarnings == 2);
    CHECK(has_warning(cfg, ":6:14: warning: credential 'old': token expired on 2020-01-31: "
                           "create a new API token at Atlassian and replace it; /readyz reports "
                           "not ready"));
    char *want = xasprintf(":10:14: warning: credential 'soon': token expires on %s (5 days "
                           "left)",
                           soon_date);
    CHECK_MSG(has_warning(cfg, want), "missing: %s", want);
    if (!has_warning(cfg, want))
        dump_warnings(cfg);
    free(want);
    config_free(cfg);
}

/* ------------------------------------------------------------------ env */

static void env_set(const char *site, const char *email, const char *token)
{
    if (site)
        setenv("ATLASSIAN_SITE", site, 1);
    else
        unsetenv("ATLASSIAN_SITE");
    if (email)
        setenv("ATLASSIAN_EMAIL", email, 1);
    else
        unsetenv("ATLASSIAN_EMAIL");
    if (token)
        setenv("ATLASSIAN_API_TOKEN", token, 1);
    else
        unsetenv("ATLASSIAN_API_TOKEN");
}

/* policies:, default_policy: and clients[i].policy: */
static void test_good_policies(void)
{
    struct config *cfg = load_good("policies");
    if (!cfg)
        return;
    CHECK(cfg->npolicies == 4);
    CHECK_STR(cfg->policies[CONFIG_POLICY_FULL].name, "full");
    CHECK(cfg->policies[CONFIG_POLICY_FULL].allow == POLICY_ALL_CLASSES);
    CHECK(cfg->policies[CONFIG_POLICY_FULL].builtin);
    CHECK_STR(cfg->policies[CONFIG_POLICY_READ_ONLY].name, "read-only");
    CHECK(cfg->policies[CONFIG_POLICY_READ_ONLY].allow == POLICY_CLASS_BIT(POLICY_READ));
    int t = config_policy_index(cfg, "triage"), d = config_policy_index(cfg, "docs-writer");
    CHECK(t == 2 && d == 3);
    if (t == 2 && d == 3) {
        const struct config_policy *tp = &cfg->policies[t], *dp = &cfg->policies[d];
        CHECK(tp->allow == (POLICY_CLASS_BIT(POLICY_READ) | POLICY_CLASS_BIT(POLICY_COMMENT) |
                            POLICY_CLASS_BIT(POLICY_TRANSITION)));
        CHECK(tp->has_projects && tp->nprojects == 2);
        CHECK_STR(tp->projects[0], "OPS");
        CHECK_STR(tp->projects[1], "SUP"); /* upper-cased */
        CHECK(tp->has_spaces && tp->nspaces == 1);
        CHECK_STR(tp->spaces[0], "ENG");
        CHECK(!dp->has_projects && dp->has_spaces && dp->nspaces == 2);
        CHECK_STR(dp->spaces[1], "~abc123");
        CHECK(!(dp->allow & POLICY_CLASS_BIT(POLICY_DELETE)));
    }
    CHECK(cfg->default_policy == CONFIG_POLICY_READ_ONLY);
    CHECK(cfg->nclients == 3 && cfg->clients[0].policy == t && cfg->clients[1].policy == d &&
          cfg->clients[2].policy == -1);
    CHECK_STR(config_policy_for(cfg, "triage-bot")->name, "triage");
    CHECK_STR(config_policy_for(cfg, "docs-bot")->name, "docs-writer");
    CHECK_STR(config_policy_for(cfg, "plain-bot")->name, "read-only"); /* the default */
    CHECK_STR(config_policy_for(cfg, NULL)->name, "read-only");
    CHECK_STR(config_policy_for(cfg, "nobody")->name, "read-only");
    CHECK(config_policy_index(cfg, "nope") == -1);
    CHECK(config_class_parse("transition") == POLICY_TRANSITION);
    CHECK(config_class_parse("Transition") == -1);
    CHECK_STR(config_class_name(POLICY_ADMIN), "admin");
    config_free(cfg);

    /* without policies: everything is `full`, as before */
    cfg = load_good("minimal");
    if (cfg) {
        CHECK(cfg->npolicies == 2 && cfg->default_policy == CONFIG_POLICY_FULL);
        CHECK_STR(config_policy_for(cfg, NULL)->name, "full");
        config_free(cfg);
    }

    /* policy explain loads without the secrets: nothing read, nothing required */
    const struct config_load_opts nosec = {CONFIG_LOAD_NO_SECRETS, NULL};
    char *path = fixture_path("good/policies.yaml");
    char *saved = getenv("CP_TOKEN") ? xstrdup(getenv("CP_TOKEN")) : NULL;
    unsetenv("CP_TOKEN");
    char *err = NULL;
    CHECK(config_load_file(path, &cfg, &err) == -1);
    free(err);
    err = NULL;
    CHECK(config_load_with(path, &nosec, &cfg, &err) == 0);
    if (cfg) {
        CHECK(cfg->credentials[0].secret == NULL);
        CHECK(cfg->clients[0].key == NULL);
        CHECK_STR(config_policy_for(cfg, "triage-bot")->name, "triage");
        config_free(cfg);
    }
    free(err);
    free(path);
    /* every key of the interface, a bearer token file among them, without the secrets */
    path = fixture_path("good/full.yaml");
    unsetenv("CP_KEY1");
    err = NULL;
    cfg = NULL;
    CHECK(config_load_with(path, &nosec, &cfg, &err) == 0);
    CHECK_MSG(err == NULL, "full.yaml without secrets: %s", err ? err : "");
    if (cfg) {
        for (size_t i = 0; i < cfg->ncredentials; i++)
            CHECK(cfg->credentials[i].secret == NULL);
        config_free(cfg);
    }
    free(err);
    free(path);
    setenv("CP_KEY1", "key-SECRET-one", 1);
    if (saved) {
        setenv("CP_TOKEN", saved, 1);
        free(saved);
    }
}

static void test_env(void)
{
    struct config *cfg = NULL;
    char *err = NULL;

    env_set(NULL, NULL, NULL);
    CHECK(config_load_env(&cfg, &err) == 1);
    CHECK(cfg == NULL && err == NULL);
    unsetenv("CREDPROXY_CONFIG");
    CHECK(config_load(NULL, &cfg, &err) == 1);
    CHECK_STR(config_missing_message(),
              "no configuration: set ATLASSIAN_SITE, ATLASSIAN_EMAIL and ATLASSIAN_API_TOKEN, or "
              "pass -c FILE / set CREDPROXY_CONFIG");

    env_set("acme", "svc@example.com", "env-SECRET-default");
    CHECK(config_load_env(&cfg, &err) == 0);
    if (cfg) {
        CHECK_STR(cfg->file, "<environment>");
        CHECK(cfg->nwarnings == 0);
        CHECK(cfg->nlisten == 1 && cfg->listen[0].port == 8080 && cfg->listen[0].loopback);
        CHECK_STR(cfg->listen[0].host, "127.0.0.1");
        CHECK(cfg->ncredentials == 1);
        CHECK_STR(cfg->credentials[0].name, "default");
        CHECK(cfg->credentials[0].type == CONFIG_CRED_BASIC);
        CHECK(cfg->credentials[0].source == CONFIG_SECRET_ENV);
        CHECK_STR(cfg->credentials[0].source_ref, "ATLASSIAN_API_TOKEN");
        CHECK_STR(cfg->credentials[0].email, "svc@example.com");
        CHECK_STR(cfg->credentials[0].secret, "env-SECRET-default");
        CHECK(fabs(cfg->credentials[0].rate_per_sec - 100.0 / 60) < 1e-9);
        CHECK(cfg->credentials[0].burst == 10);
        CHECK(cfg->nsites == 1);
        CHECK_STR(cfg->sites[0].host, "acme.atlassian.net");
        CHECK_STR(cfg->sites[0].domain, "acme");
        CHECK(cfg->sites[0].port == 443 && cfg->sites[0].credential == 0);
        CHECK(!cfg->upstream.http2 && cfg->log.audit && cfg->workers >= 1);
        config_free(cfg);
        cfg = NULL;
    }

    env_set("https://Acme.atlassian.net/", "svc@example.com", "env-SECRET-default");
    CHECK(config_load(NULL, &cfg, &err) == 0);
    if (cfg) {
        CHECK_STR(cfg->sites[0].host, "acme.atlassian.net");
        CHECK(cfg->nwarnings == 1);
        if (cfg->nwarnings == 1)
            CHECK_STR(cfg->warnings[0].text, "<environment>: warning: ATLASSIAN_SITE "
                                             "'https://Acme.atlassian.net/' normalized to 'acme'");
        config_free(cfg);
        cfg = NULL;
    }

    static const struct {
        const char *site, *email, *token, *want;
    } bad[] = {
        {"acme", NULL, "env-SECRET-x",
         "<environment>: ATLASSIAN_EMAIL is not set; set ATLASSIAN_SITE, ATLASSIAN_EMAIL and "
         "ATLASSIAN_API_TOKEN, or give a config file with -c FILE"},
        {NULL, "svc@example.com", NULL,
         "<environment>: ATLASSIAN_SITE is not set and ATLASSIAN_API_TOKEN is not set; set "
         "ATLASSIAN_SITE, ATLASSIAN_EMAIL and ATLASSIAN_API_TOKEN, or give a config file with -c "
         "FILE"},
        {"acme", "svc@example.com", "",
         "<environment>: ATLASSIAN_API_TOKEN is empty; set ATLASSIAN_SITE, ATLASSIAN_EMAIL and "
         "ATLASSIAN_API_TOKEN, or give a config file with -c FILE"},
        {"acme", "svc@example.com", "env-SECRET-x ",
         "<environment>: credential 'default': the token from environment variable "
         "ATLASSIAN_API_TOKEN has leading or trailing white space; remove it (the token itself "
         "is not shown)"},
        {"acme", "svc@example.com", "\tenv-SECRET-x",
         "<environment>: credential 'default': the token from environment variable "
         "ATLASSIAN_API_TOKEN has leading or trailing white space; remove it (the token itself "
         "is not shown)"},
        {"acme", " svc@example.com", "env-SECRET-x",
         "<environment>: ATLASSIAN_EMAIL: the email has leading or trailing white space; remove "
         "it"},
        {"acme", "svc.example.com", "env-SECRET-x",
         "<environment>: ATLASSIAN_EMAIL: email 'svc.example.com' is not an email address (no "
         "'@'); give the Atlassian account's email"},
        {"jira.example.org", "svc@example.com", "env-SECRET-x",
         "<environment>: ATLASSIAN_SITE 'jira.example.org' is not an Atlassian Cloud site; give "
         "the site name (acme or acme.atlassian.net), or use a config file with sites: - host: "
         "for other hosts"},
    };
    for (size_t i = 0; i < UTIL_ARRAY_LEN(bad); i++) {
        env_set(bad[i].site, bad[i].email, bad[i].token);
        cfg = NULL;
        err = NULL;
        CHECK_MSG(config_load_env(&cfg, &err) == -1, "env case %zu", i);
        CHECK(cfg == NULL);
        CHECK_STR(err, bad[i].want);
        check_no_secret(NULL, err, "env");
        free(err);
        err = NULL;
    }

    /* lookup order: -c path wins over CREDPROXY_CONFIG wins over the environment */
    env_set("acme", "svc@example.com", "env-SECRET-default");
    char *minimal = fixture_path("good/minimal.yaml");
    char *normalize = fixture_path("good/normalize.yaml");
    setenv("CREDPROXY_CONFIG", normalize, 1);
    CHECK(config_load(minimal, &cfg, &err) == 0);
    if (cfg) {
        CHECK_STR(cfg->file, minimal);
        config_free(cfg);
        cfg = NULL;
    }
    CHECK(config_load(NULL, &cfg, &err) == 0);
    if (cfg) {
        CHECK_STR(cfg->file, normalize);
        config_free(cfg);
        cfg = NULL;
    }
    unsetenv("CREDPROXY_CONFIG");
    CHECK(config_load(NULL, &cfg, &err) == 0);
    if (cfg) {
        CHECK_STR(cfg->file, "<environment>");
        config_free(cfg);
        cfg = NULL;
    }
    free(minimal);
    free(normalize);
    env_set(NULL, NULL, NULL);
}

/* ----------------------------------------------------------- pure helpers */

static void test_normalize_domain(void)
{
    static const struct {
        const char *in;
        const char *want; /* NULL = invalid */
        bool changed;
    } cases[] = {
        {"acme", "acme", false},
        {"acme-sandbox", "acme-sandbox", false},
        {" acme ", "acme", true},
        {"ACME", "acme", true},
        {"acme.atlassian.net", "acme", true},
        {"acme.atlassian.net.", "acme", true},
        {"https://acme.atlassian.net/", "acme", true},
        {"http://acme.atlassian.net", "acme", true},
        {"acme.atlassian.net/wiki", "acme", true},
        {"https://ACME.atlassian.net/jira/software?x=1", "acme", true},
        {"", NULL, false},
        {"   ", NULL, false},
        {"acme corp", NULL, false},
        {"jira.example.org", NULL, false},
        {"-acme", NULL, false},
        {"acme-", NULL, false},
        {"acme_corp", NULL, false},
        {".atlassian.net", NULL, false},
        {"a.b.atlassian.net", NULL, false},
        {"https://", NULL, false},
        {"0123456789012345678901234567890123456789012345678901234567890123", NULL, false},
    };
    for (size_t i = 0; i < UTIL_ARRAY_LEN(cases); i++) {
        bool changed = !cases[i].changed;
        char *got = config_normalize_domain(cases[i].in, &changed);
        if (cases[i].want) {
            CHECK_STR(got, cases[i].want);
            CHECK_MSG(changed == cases[i].changed, "changed for '%s'", cases[i].in);
        } else {
            CHECK_MSG(got == NULL, "'%s' should be invalid, got '%s'", cases[i].in, got);
        }
        free(got);
    }
    CHECK(config_normalize_domain(NULL, NULL) == NULL);
}

static void test_parse_listen(void)
{
    static const struct {
        const char *in;
        int rc;
        enum config_listen_kind kind;
        const char *host_or_path;
        int port;
        bool loopback;
    } cases[] = {
        {"127.0.0.1:8080", 0, CONFIG_LISTEN_TCP, "127.0.0.1", 8080, true},
        {"127.1.2.3:1", 0, CONFIG_LISTEN_TCP, "127.1.2.3", 1, true},
        {"0.0.0.0:8080", 0, CONFIG_LISTEN_TCP, "0.0.0.0", 8080, false},
        {"10.0.0.5:0", 0, CONFIG_LISTEN_TCP, "10.0.0.5", 0, false},
        {"localhost:8080", 0, CONFIG_LISTEN_TCP, "localhost", 8080, true},
        {"LocalHost:8080", 0, CONFIG_LISTEN_TCP, "localhost", 8080, true},
        {"proxy.internal:3128", 0, CONFIG_LISTEN_TCP, "proxy.internal", 3128, false},
        {"[::1]:8080", 0, CONFIG_LISTEN_TCP, "::1", 8080, true},
        {"[::]:8080", 0, CONFIG_LISTEN_TCP, "::", 8080, false},
        {"[::ffff:127.0.0.1]:80", 0, CONFIG_LISTEN_TCP, "::ffff:127.0.0.1", 80, true},
        {"[fe80::1]:8080", 0, CONFIG_LISTEN_TCP, "fe80::1", 8080, false},
        {"unix:/run/credproxy.sock", 0, CONFIG_LISTEN_UNIX, "/run/credproxy.sock", 0, true},
        {"unix:", -1, 0, NULL, 0, false},
        {"::1:8080", -1, 0, NULL, 0, false},
        {"[::1]8080", -1, 0, NULL, 0, false},
        {"[nope]:8080", -1, 0, NULL, 0, false},
        {"127.0.0.1", -1, 0, NULL, 0, false},
        {"127.0.0.1:", -1, 0, NULL, 0, false},
        {":8080", -1, 0, NULL, 0, false},
        {"127.0.0.1:65536", -1, 0, NULL, 0, false},
        {"127.0.0.1:-1", -1, 0, NULL, 0, false},
        {"127.0.0.1:80x", -1, 0, NULL, 0, false},
        {"bad host:80", -1, 0, NULL, 0, false},
        {"http://127.0.0.1:8080", -1, 0, NULL, 0, false},
    };
    for (size_t i = 0; i < UTIL_ARRAY_LEN(cases); i++) {
        struct config_listen l;
        memset(&l, 0x5a, sizeof(l));
        int rc = config_parse_listen(cases[i].in, &l);
        CHECK_MSG(rc == cases[i].rc, "listen '%s' rc=%d", cases[i].in, rc);
        if (rc != 0)
            continue;
        CHECK_STR(l.text, cases[i].in);
        CHECK(l.kind == cases[i].kind);
        CHECK_MSG(l.loopback == cases[i].loopback, "loopback for '%s'", cases[i].in);
        if (l.kind == CONFIG_LISTEN_TCP) {
            CHECK_STR(l.host, cases[i].host_or_path);
            CHECK(l.port == cases[i].port);
        } else {
            CHECK_STR(l.path, cases[i].host_or_path);
        }
        config_listen_clear(&l);
    }
    char longpath[200];
    memset(longpath, 'a', sizeof(longpath));
    memcpy(longpath, "unix:/", 6);
    longpath[sizeof(longpath) - 1] = '\0';
    struct config_listen l;
    CHECK(config_parse_listen(longpath, &l) == -1);
    config_listen_clear(NULL);
    config_free(NULL);
}

/* ------------------------------------------------------------ load options */

/* Two credentials whose secrets are absent here, two clients with keys in the environment. */
static const char opts_yaml[] = "credentials:\n"
                                "  a:\n"
                                "    email: a@example.com\n"
                                "    token_env: CP_UNSET\n"
                                "  b:\n"
                                "    type: bearer\n"
                                "    token_file: /nonexistent/token\n"
                                "sites:\n"
                                "  - domain: acme\n"
                                "    credential: a\n"
                                "clients:\n"
                                "  - id: one\n"
                                "    key_env: CP_KEY1\n"
                                "  - id: two\n"
                                "    key_env: CP_KEY2\n";

static const struct {
    const char *name;
    unsigned flags;
    const char *client;
    int rc;
    bool key1, key2; /* which client keys were read */
} opts_rows[] = {
    {"default reads every secret (and fails)", 0, NULL, -1, false, false},
    {"no secrets", CONFIG_LOAD_NO_SECRETS, NULL, 0, false, false},
    {"no secrets, client one", CONFIG_LOAD_NO_SECRETS, "one", 0, true, false},
    {"no secrets, client two", CONFIG_LOAD_NO_SECRETS | CONFIG_LOAD_DEFAULT_ANY, "two", 0, false,
     true},
    {"no secrets, unknown client", CONFIG_LOAD_NO_SECRETS, "nobody", 0, false, false},
};

static bool has_secret_env(const struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->nsecret_envs; i++) {
        if (strcmp(cfg->secret_envs[i], name) == 0)
            return true;
    }
    return false;
}

static void test_load_opts(void)
{
    write_file("opts.yaml", opts_yaml, strlen(opts_yaml), 0600);
    char *path = xasprintf("%s/opts.yaml", tmpdir);
    for (size_t i = 0; i < UTIL_ARRAY_LEN(opts_rows); i++) {
        struct config_load_opts o = {opts_rows[i].flags, opts_rows[i].client};
        struct config *cfg = NULL;
        char *err = NULL;
        int rc = config_load_with(path, &o, &cfg, &err);
        CHECK_MSG(rc == opts_rows[i].rc, "%s: rc %d (%s)", opts_rows[i].name, rc, err ? err : "");
        if (rc == 0 && cfg) {
            CHECK_MSG(cfg->no_secrets, "%s: marked no_secrets", opts_rows[i].name);
            CHECK_MSG(!cfg->credentials[0].secret && !cfg->credentials[1].secret,
                      "%s: no credential secret read", opts_rows[i].name);
            CHECK_STR(cfg->credentials[0].source_ref, "CP_UNSET");
            CHECK_STR(cfg->credentials[1].source_ref, "/nonexistent/token");
            CHECK_MSG((cfg->clients[0].key != NULL) == opts_rows[i].key1 &&
                          (cfg->clients[1].key != NULL) == opts_rows[i].key2,
                      "%s: client keys read as asked", opts_rows[i].name);
            if (opts_rows[i].key1)
                CHECK_STR(cfg->clients[0].key, "key-SECRET-one");
            /* What exec removes: every credential variable and the default's, not client keys. */
            CHECK(has_secret_env(cfg, "CP_UNSET") && has_secret_env(cfg, "ATLASSIAN_API_TOKEN"));
            CHECK(!has_secret_env(cfg, "CP_KEY1") && !has_secret_env(cfg, "CP_KEY2"));
            CHECK(config_client_index(cfg, "two") == 1 && config_client_index(cfg, "x") == -1);
        }
        config_free(cfg);
        free(err);
    }
    free(path);
}

/* Token warnings: what lint says about the token itself (never its bytes). */
static const struct {
    const char *name;
    const char *type;
    const char *token;
    const char *site; /* domain: or host: line */
    const char *want; /* warning part, or NULL for none */
} tokwarn_rows[] = {
    {"ellipsis", "basic", "\xe2\x80\xa6", "domain: acme", "looks like a placeholder"},
    {"changeme", "basic", "ChangeMe", "domain: acme", "looks like a placeholder"},
    {"angle brackets", "basic", "<your-api-token-here>", "domain: acme",
     "looks like a placeholder"},
    {"short", "basic", "abc123", "domain: acme", "looks like a placeholder"},
    {"plausible", "basic", "ATATT3xFfGF0abcdefghijklmnopqrstuvwxyz", "domain: acme", NULL},
    {"bearer ATATT on cloud", "bearer", "ATATT3xFfGF0abcdefghijklmnopqrstuvwxyz", "domain: acme",
     "Cloud API tokens need type: basic"},
    {"bearer ATATT on DC", "bearer", "ATATT3xFfGF0abcdefghijklmnopqrstuvwxyz",
     "host: jira.example.org", NULL},
    {"bearer PAT on cloud", "bearer", "NjM1ODk2OTM4NTk2OlX9c2VjcmV0LXBhdA", "domain: acme", NULL},
};

static void test_token_warnings(void)
{
    for (size_t i = 0; i < UTIL_ARRAY_LEN(tokwarn_rows); i++) {
        bool basic = strcmp(tokwarn_rows[i].type, "basic") == 0;
        char *yaml = xasprintf("credentials:\n  svc:\n    type: %s\n%s    token_env: CP_TOKWARN\n"
                               "sites:\n  - %s\n    credential: svc\n",
                               tokwarn_rows[i].type, basic ? "    email: a@example.com\n" : "",
                               tokwarn_rows[i].site);
        write_file("tokwarn.yaml", yaml, strlen(yaml), 0600);
        setenv("CP_TOKWARN", tokwarn_rows[i].token, 1);
        char *path = xasprintf("%s/tokwarn.yaml", tmpdir);
        struct config *cfg = NULL;
        char *err = NULL;
        CHECK_MSG(config_load_file(path, &cfg, &err) == 0, "%s: loads (%s)", tokwarn_rows[i].name,
                  err ? err : "");
        if (cfg) {
            if (tokwarn_rows[i].want)
                CHECK_MSG(has_warning(cfg, tokwarn_rows[i].want), "%s: warns",
                          tokwarn_rows[i].name);
            else
                CHECK_MSG(cfg->nwarnings == 0, "%s: no warning", tokwarn_rows[i].name);
            for (size_t k = 0; k < cfg->nwarnings; k++)
                CHECK_MSG(strlen(tokwarn_rows[i].token) < 4 ||
                              !strstr(cfg->warnings[k].text, tokwarn_rows[i].token),
                          "%s: the token is not in the warning", tokwarn_rows[i].name);
        }
        config_free(cfg);
        free(err);
        free(path);
        free(yaml);
    }
    unsetenv("CP_TOKWARN");
}

int main(void)
{
    setup();
    test_bad();
    test_load_opts();
    test_token_warnings();
    test_good_minimal();
    test_good_full();
    test_good_normalize();
    test_good_token_files();
    test_good_inline_tunnel();
    test_good_remote();
    test_good_expiry();
    test_good_policies();
    test_env();
    test_normalize_domain();
    test_parse_listen();
    teardown();
    TEST_DONE();
}
