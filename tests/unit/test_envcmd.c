/*
 * test_envcmd: `credproxy env` output in sh, fish and json for a config built
 * by hand, with awkward paths (quotes, spaces, $, backslashes) that must come
 * back byte-exact when the output is evaluated by a real shell; the trust
 * bundle (system roots + local root, rewritten when stale); the no-CA note;
 * configuration errors; and `exec` (the child sees the variables; its exit
 * status is passed through; a missing command gives 127).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "envcmd.h"
#include "mitm.h"
#include "testlib.h"
#include "util.h"

#define AWKWARD "it's a \"dir\" $HOME `x` \\ end"

struct fixture {
    struct config cfg;
    struct config_listen listen[2];
    struct config_site site;
};

static void fixture_init(struct fixture *f, const char *ca_dir)
{
    memset(f, 0, sizeof(*f));
    f->listen[0] = (struct config_listen){
        .text = "unix:/tmp/x.sock", .kind = CONFIG_LISTEN_UNIX, .path = "/tmp/x.sock"};
    f->listen[1] = (struct config_listen){
        .text = "127.0.0.1:18080", .kind = CONFIG_LISTEN_TCP, .host = "127.0.0.1", .port = 18080};
    f->cfg.listen = f->listen;
    f->cfg.nlisten = 2;
    f->site.host = "acme.atlassian.net";
    f->site.domain = "acme";
    f->site.port = 443;
    f->cfg.sites = &f->site;
    f->cfg.nsites = 1;
    f->cfg.interception.ca_cert = xasprintf("%s/ca.pem", ca_dir);
    f->cfg.interception.ca_key = xasprintf("%s/ca.key", ca_dir);
}

static void fixture_clear(struct fixture *f)
{
    free(f->cfg.interception.ca_cert);
    free(f->cfg.interception.ca_key);
}

/* envcmd_print into a string; *rc gets its return value. */
static char *print_env(const struct config *cfg, const char *format, int *rc)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    *rc = envcmd_print(cfg, format, NULL, out);
    fclose(out);
    return buf;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* Run argv with stdout captured; returns the output, *status the wait status. */
static char *run_capture(char *const argv[], int *status)
{
    int fds[2];
    char *out = xcalloc(1, 65536);
    size_t len = 0;
    pid_t pid;

    if (pipe(fds) != 0)
        return out;
    pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execv(argv[0], argv);
        _exit(126);
    }
    close(fds[1]);
    for (;;) {
        ssize_t n = read(fds[0], out + len, 65535 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fds[0]);
    waitpid(pid, status, 0);
    return out;
}

static void rm_rf(const char *dir)
{
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/rm", "rm", "-rf", dir, (char *)NULL);
        _exit(1);
    }
    waitpid(pid, NULL, 0);
}

static void test_no_ca(const char *dir)
{
    struct fixture f;
    int rc;
    char *out;

    fixture_init(&f, dir);
    out = print_env(&f.cfg, "sh", &rc);
    CHECK(rc == 0);
    CHECK(strstr(out, "export HTTP_PROXY='http://127.0.0.1:18080'\n") != NULL);
    CHECK(strstr(out, "export HTTPS_PROXY='http://127.0.0.1:18080'\n") != NULL);
    CHECK(strstr(out, "export http_proxy='http://127.0.0.1:18080'\n") != NULL);
    CHECK(strstr(out, "export https_proxy='http://127.0.0.1:18080'\n") != NULL);
    CHECK(strstr(out, "export NO_PROXY='localhost,127.0.0.1,::1'\n") != NULL);
    CHECK(strstr(out, "export no_proxy='localhost,127.0.0.1,::1'\n") != NULL);
    /* The note names the absolute path looked at. */
    CHECK(strstr(out, "\n# no CA at /") && strstr(out, "/ca.pem (interception.ca_cert): run "
                                                       "`credproxy ca init` for https:// "
                                                       "interception\n"));
    CHECK(strstr(out, "SSL_CERT_FILE") == NULL);
    CHECK(strstr(out, "NODE_EXTRA_CA_CERTS") == NULL);
    free(out);

    out = print_env(&f.cfg, "json", &rc);
    CHECK(rc == 0);
    CHECK(strstr(out, "\"ca_cert\":null") != NULL);
    CHECK(strstr(out, "\"note\":\"no CA at /") &&
          strstr(out, "/ca.pem (interception.ca_cert): run `credproxy ca init` for https:// "
                      "interception\""));
    CHECK(strstr(out, "\"HTTPS_PROXY\":\"http://127.0.0.1:18080\"") != NULL);
    free(out);
    fixture_clear(&f);
}

static void test_listen_forms(const char *dir)
{
    struct fixture f;
    int rc;
    char *out;

    fixture_init(&f, dir);
    f.listen[1].host = "::1";
    out = print_env(&f.cfg, "sh", &rc);
    CHECK(rc == 0 && strstr(out, "export HTTPS_PROXY='http://[::1]:18080'\n"));
    free(out);
    f.listen[1].host = "0.0.0.0";
    out = print_env(&f.cfg, "sh", &rc);
    CHECK(rc == 0 && strstr(out, "export HTTPS_PROXY='http://127.0.0.1:18080'\n"));
    free(out);
    f.listen[1].host = "::";
    out = print_env(&f.cfg, "sh", &rc);
    CHECK(rc == 0 && strstr(out, "export HTTPS_PROXY='http://[::1]:18080'\n"));
    free(out);
    f.listen[1].port = 0;
    out = print_env(&f.cfg, "sh", &rc);
    CHECK(rc == 2 && *out == '\0');
    free(out);

    /* Unix sockets only: env needs a TCP listener. */
    f.cfg.nlisten = 1;
    out = print_env(&f.cfg, "sh", &rc);
    CHECK(rc == 2 && *out == '\0');
    free(out);
    f.cfg.nlisten = 2;
    f.listen[1].port = 18080;
    f.listen[1].host = "127.0.0.1";

    out = print_env(&f.cfg, "powershell", &rc);
    CHECK(rc == 2 && *out == '\0');
    free(out);
    fixture_clear(&f);
}

static void test_with_ca(const char *base)
{
    struct fixture f;
    char *dir = xasprintf("%s/" AWKWARD, base), *err = NULL, *out, *path, *bundle_path;
    char *ca_abs = NULL, *want;
    int rc, status;
    struct stat st;

    CHECK(mkdir(dir, 0755) == 0);
    fixture_init(&f, dir);
    CHECK(mitm_ca_init(&f.cfg, dir, false, &err) == 0);
    free(err);
    ca_abs = realpath(f.cfg.interception.ca_cert, NULL);
    CHECK(ca_abs != NULL);
    bundle_path = xasprintf("%s/ca-bundle.pem", dir);

    /* sh: evaluated by a real shell, every value comes back byte-exact. */
    out = print_env(&f.cfg, "sh", &rc);
    CHECK(rc == 0);
    CHECK(strstr(out, "no CA yet") == NULL);
    path = xasprintf("%s/env.sh", base);
    write_file(path, out);
    {
        char *script = xasprintf(". '%s/env.sh' && printf '%%s|%%s|%%s|%%s|%%s|%%s|%%s\\n' "
                                 "\"$SSL_CERT_FILE\" \"$REQUESTS_CA_BUNDLE\" \"$CURL_CA_BUNDLE\" "
                                 "\"$GIT_SSL_CAINFO\" \"$NODE_EXTRA_CA_CERTS\" \"$https_proxy\" "
                                 "\"$NO_PROXY\"",
                                 base);
        char *argv[] = {"/bin/sh", "-c", script, NULL};
        char *got = run_capture(argv, &status);
        char *babs = realpath(bundle_path, NULL);
        want = xasprintf("%s|%s|%s|%s|%s|http://127.0.0.1:18080|localhost,127.0.0.1,::1\n", babs,
                         babs, babs, babs, ca_abs);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        CHECK_STR(got, want);
        free(want);
        free(got);
        free(babs);
        free(script);
        /* bash too (it treats some escapes differently from dash). */
        script = xasprintf("source '%s/env.sh' && printf '%%s\\n' \"$NODE_EXTRA_CA_CERTS\"", base);
        char *argv2[] = {"/bin/bash", "-c", script, NULL};
        got = run_capture(argv2, &status);
        want = xasprintf("%s\n", ca_abs);
        CHECK_STR(got, want);
        free(want);
        free(got);
        free(script);
    }
    free(path);
    free(out);

    /* The bundle: 0644, system roots first, then the local root (not the intermediate). */
    CHECK(stat(bundle_path, &st) == 0 && (st.st_mode & 07777) == 0644);
    {
        char *bundle = test_read_file(bundle_path),
             *sys = test_read_file("/etc/ssl/certs/ca-certificates.crt");
        char *ca = test_read_file(ca_abs);
        char *second = strstr(ca + 1, "-----BEGIN CERTIFICATE");
        CHECK(*sys && strncmp(bundle, sys, strlen(sys)) == 0);
        CHECK(second != NULL);
        if (second) {
            size_t root_len = (size_t)(second - ca);
            char *root = xstrndup(ca, root_len);
            CHECK(strstr(bundle, root) != NULL);
            CHECK(strstr(bundle, second) == NULL);
            free(root);
        }
        free(bundle);
        free(sys);
        free(ca);
    }
    /* Stale (edited, or made for an older CA): rewritten on the next env. */
    write_file(bundle_path, "stale\n");
    out = print_env(&f.cfg, "sh", &rc);
    free(out);
    {
        char *bundle = test_read_file(bundle_path);
        CHECK(strncmp(bundle, "stale", 5) != 0 && strstr(bundle, "BEGIN CERTIFICATE"));
        free(bundle);
    }
    {
        char *before = test_read_file(bundle_path), *after;
        err = NULL;
        CHECK(mitm_ca_init(&f.cfg, dir, true, &err) == 0);
        free(err);
        out = print_env(&f.cfg, "sh", &rc);
        free(out);
        after = test_read_file(bundle_path);
        CHECK(strcmp(before, after) != 0); /* follows a new CA */
        free(before);
        free(after);
    }

    /* fish: set -gx NAME 'value' with \ and ' escaped. */
    out = print_env(&f.cfg, "fish", &rc);
    CHECK(rc == 0);
    {
        char *want_line = NULL;
        /* AWKWARD with fish escaping: ' -> \'  and \ -> \\ */
        const char *fish_dir = "it\\'s a \"dir\" $HOME `x` \\\\ end";
        char *real_base = realpath(base, NULL);
        want_line = xasprintf("set -gx NODE_EXTRA_CA_CERTS '%s/%s/ca.pem'\n", real_base, fish_dir);
        CHECK_MSG(strstr(out, want_line) != NULL, "fish output:\n%s", out);
        CHECK(strstr(out, "set -gx HTTPS_PROXY 'http://127.0.0.1:18080'\n") != NULL);
        CHECK(strstr(out, "set -gx https_proxy 'http://127.0.0.1:18080'\n") != NULL);
        CHECK(strstr(out, "export") == NULL);
        free(want_line);
        free(real_base);
    }
    free(out);

    /* json: one object; parsed by Python's json when it is there. */
    out = print_env(&f.cfg, "json", &rc);
    CHECK(rc == 0);
    CHECK(out[0] == '{' && strchr(out, '\n') == out + strlen(out) - 1);
    CHECK(strstr(out, "\\\"dir\\\"") != NULL && strstr(out, "\\\\ end") != NULL);
    CHECK(strstr(out, "\"note\":null") != NULL);
    if (access("/usr/bin/python3", X_OK) == 0) {
        char *jpath = xasprintf("%s/env.json", base);
        write_file(jpath, out);
        char *code = xasprintf("import json; d = json.load(open(%s)); "
                               "print(d['env']['NODE_EXTRA_CA_CERTS'] == d['ca_cert'], "
                               "d['env']['SSL_CERT_FILE'] == d['ca_bundle'], d['note'], "
                               "sorted(d['env']))",
                               "__import__('sys').argv[1]");
        char *argv[] = {"/usr/bin/python3", "-c", code, jpath, NULL};
        char *got = run_capture(argv, &status);
        CHECK_STR(got, "True True None ['CURL_CA_BUNDLE', 'GIT_SSL_CAINFO', 'HTTPS_PROXY', "
                       "'HTTP_PROXY', 'NODE_EXTRA_CA_CERTS', 'NO_PROXY', 'REQUESTS_CA_BUNDLE', "
                       "'SSL_CERT_FILE', 'http_proxy', 'https_proxy', 'no_proxy']\n");
        free(got);
        free(code);
        free(jpath);
    }
    free(out);

    /* exec: the child sees exactly the variables; its status is ours. */
    {
        int fds[2];
        char buf[4096] = "";
        size_t len = 0;
        CHECK(pipe(fds) == 0);
        pid_t pid = fork();
        if (pid == 0) {
            char *argv[] = {"/bin/sh", "-c",
                            "echo \"$HTTPS_PROXY\"; echo \"$NODE_EXTRA_CA_CERTS\"; exit 7", NULL};
            dup2(fds[1], 1);
            close(fds[0]);
            close(fds[1]);
            setenv("HTTPS_PROXY", "http://wrong:1", 1);
            _exit(envcmd_exec(&f.cfg, NULL, argv));
        }
        close(fds[1]);
        for (;;) {
            ssize_t n = read(fds[0], buf + len, sizeof(buf) - 1 - len);
            if (n <= 0)
                break;
            len += (size_t)n;
        }
        close(fds[0]);
        waitpid(pid, &status, 0);
        want = xasprintf("http://127.0.0.1:18080\n%s\n", ca_abs);
        CHECK_STR(buf, want);
        free(want);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 7);
    }
    /* exec of something that does not exist: 127 with a message. */
    {
        pid_t pid = fork();
        if (pid == 0) {
            char *argv[] = {"/no/such/command-credproxy", NULL};
            int devnull = open("/dev/null", O_WRONLY);
            dup2(devnull, 2);
            _exit(envcmd_exec(&f.cfg, NULL, argv));
        }
        waitpid(pid, &status, 0);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 127);
    }
    /* exec with a unix-only config: configuration error, nothing run. */
    {
        f.cfg.nlisten = 1;
        pid_t pid = fork();
        if (pid == 0) {
            char *argv[] = {"/bin/sh", "-c", "exit 0", NULL};
            int devnull = open("/dev/null", O_WRONLY);
            dup2(devnull, 2);
            _exit(envcmd_exec(&f.cfg, NULL, argv));
        }
        waitpid(pid, &status, 0);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 2);
        f.cfg.nlisten = 2;
    }

    free(bundle_path);
    free(ca_abs);
    fixture_clear(&f);
    free(dir);
}

int main(void)
{
    char tmpl[] = "/tmp/test_envcmd.XXXXXX";
    char *base = mkdtemp(tmpl);
    CHECK(base != NULL);
    if (!base)
        TEST_DONE();
    test_no_ca(base);
    test_listen_forms(base);
    test_with_ca(base);
    rm_rf(base);
    TEST_DONE();
}
