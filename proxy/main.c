/*
 * main: the command line. Finds the configuration (-c, $CREDPROXY_CONFIG,
 * or the ATLASSIAN_* environment), then hands over to one command module.
 * Exit codes follow the interface: 2 is always "configuration error".
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <openssl/crypto.h>
#include <yaml.h>

#include "admin.h"
#include "check.h"
#include "config.h"
#include "envcmd.h"
#include "log.h"
#include "mitm.h"
#include "policycmd.h"
#include "server.h"
#include "util.h"

enum { EXIT_CONFIG = 2 };

static void usage(FILE *out)
{
    fputs("usage: credproxy [COMMAND] [-c FILE] [options]\n"
          "\n"
          "Commands:\n"
          "  run [-c FILE]                 start the proxy (the default command)\n"
          "  check [-c FILE] [--json]      verify every credential against each of its sites\n"
          "  lint [-c FILE]                validate the configuration; print warnings\n"
          "  ca init [-c FILE] [--dir DIR] [--force]\n"
          "                                create the local interception CA (default dir: certs)\n"
          "  env [-c FILE] [--format sh|fish|json]\n"
          "                                print what an agent needs to use the proxy\n"
          "  exec [-c FILE] -- CMD [ARG...] run CMD with those variables set\n"
          "  healthcheck [-c FILE]         GET the admin /readyz (for container health checks)\n"
          "  policy explain [-c FILE] CLIENT METHOD URL [--body FILE]\n"
          "                                the class, scope and verdict of a request\n"
          "\n"
          "Options:\n"
          "  -c, --config FILE             configuration file (else $CREDPROXY_CONFIG, else the\n"
          "                                ATLASSIAN_SITE/ATLASSIAN_EMAIL/ATLASSIAN_API_TOKEN "
          "default)\n"
          "  --version                     print versions and exit\n"
          "  -h, --help                    this text\n",
          out);
}

static void print_version(void)
{
    curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);
    printf("credproxy %s\n", CREDPROXY_VERSION);
    printf("libevent %s, %s, libcurl %s (%s), libyaml %s\n", event_get_version(),
           OpenSSL_version(OPENSSL_VERSION), cv->version,
           cv->ssl_version ? cv->ssl_version : "no TLS", yaml_get_version_string());
}

/* Options every command shares, plus the few that only some take. */
struct cli {
    const char *command;
    const char *config_path;
    bool json;
    bool force;
    const char *dir;
    const char *format;
    char **exec_argv;
};

/* Returns 0, or EXIT_CONFIG after printing what is wrong with the command line. */
static int parse_cli(int argc, char **argv, struct cli *cli)
{
    int i = 1;
    memset(cli, 0, sizeof(*cli));
    cli->command = "run";
    cli->dir = "certs";
    cli->format = "sh";
    if (i < argc && argv[i][0] != '-') {
        cli->command = argv[i++];
        if (strcmp(cli->command, "ca") == 0) {
            if (i >= argc || strcmp(argv[i], "init") != 0) {
                fprintf(stderr, "credproxy: ca: the only subcommand is 'ca init'\n");
                return EXIT_CONFIG;
            }
            cli->command = "ca init";
            i++;
        }
    }
    for (; i < argc; i++) {
        const char *a = argv[i];
        bool has_next = i + 1 < argc;
        if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) && has_next) {
            cli->config_path = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            cli->config_path = a + 9;
        } else if (strcmp(a, "--json") == 0 && strcmp(cli->command, "check") == 0) {
            cli->json = true;
        } else if (strcmp(a, "--force") == 0 && strcmp(cli->command, "ca init") == 0) {
            cli->force = true;
        } else if (strcmp(a, "--dir") == 0 && has_next && strcmp(cli->command, "ca init") == 0) {
            cli->dir = argv[++i];
        } else if (strcmp(a, "--format") == 0 && has_next && strcmp(cli->command, "env") == 0) {
            cli->format = argv[++i];
        } else if (strncmp(a, "--format=", 9) == 0 && strcmp(cli->command, "env") == 0) {
            cli->format = a + 9;
        } else if (strcmp(a, "--") == 0 && strcmp(cli->command, "exec") == 0) {
            cli->exec_argv = &argv[i + 1];
            if (!cli->exec_argv[0]) {
                fprintf(stderr, "credproxy: exec: give a command after --\n");
                return EXIT_CONFIG;
            }
            return 0;
        } else {
            fprintf(stderr,
                    "credproxy: %s: unknown or incomplete option '%s' (see credproxy --help)\n",
                    cli->command, a);
            return EXIT_CONFIG;
        }
    }
    if (strcmp(cli->command, "exec") == 0) {
        fprintf(stderr, "credproxy: exec: usage: credproxy exec [-c FILE] -- CMD [ARG...]\n");
        return EXIT_CONFIG;
    }
    return 0;
}

/* Loads the configuration for a command; prints the error and returns NULL on failure. */
static struct config *load_config(const struct cli *cli)
{
    struct config *cfg = NULL;
    char *err = NULL;
    int rc = config_load(cli->config_path, &cfg, &err);
    if (rc == 1) {
        fprintf(stderr, "credproxy: %s\n", config_missing_message());
        return NULL;
    }
    if (rc != 0) {
        fprintf(stderr, "%s\n", err ? err : "credproxy: configuration error");
        free(err);
        return NULL;
    }
    return cfg;
}

int main(int argc, char **argv)
{
    struct cli cli;
    struct config *cfg;
    int rc;

    /* `policy explain` parses its own arguments (and its own --help). */
    if (argc >= 2 && strcmp(argv[1], "policy") == 0)
        return policycmd_main(argc - 2, argv + 2, stdout);

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "--version") == 0) {
            print_version();
            return 0;
        }
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0 ||
            strcmp(argv[i], "help") == 0) {
            usage(stdout);
            return 0;
        }
    }
    rc = parse_cli(argc, argv, &cli);
    if (rc != 0)
        return rc;

    static const char *const known[] = {"run", "check", "lint",       "ca init",
                                        "env", "exec",  "healthcheck"};
    bool ok = false;
    for (size_t i = 0; i < UTIL_ARRAY_LEN(known); i++)
        ok = ok || strcmp(cli.command, known[i]) == 0;
    if (!ok) {
        fprintf(stderr, "credproxy: unknown command '%s' (see credproxy --help)\n", cli.command);
        return EXIT_CONFIG;
    }

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "credproxy: libcurl failed to initialise\n");
        return 1;
    }
    cfg = load_config(&cli);
    if (!cfg) {
        rc = EXIT_CONFIG;
        goto out;
    }

    if (strcmp(cli.command, "lint") == 0) {
        for (size_t i = 0; i < cfg->nwarnings; i++)
            printf("%s\n", cfg->warnings[i].text);
        rc = 0;
    } else if (strcmp(cli.command, "run") == 0) {
        rc = server_run(cfg, cli.config_path ? cli.config_path : getenv("CREDPROXY_CONFIG"));
        cfg = NULL; /* consumed */
    } else if (strcmp(cli.command, "check") == 0) {
        rc = check_run(cfg, cli.json, stdout);
    } else if (strcmp(cli.command, "ca init") == 0) {
        char *err = NULL;
        rc = mitm_ca_init(cfg, cli.dir, cli.force, &err);
        if (rc == 0) {
            printf("created %s/ca.pem and %s/ca.key; trust %s/ca.pem in your agents "
                   "(credproxy env prints how)\n",
                   cli.dir, cli.dir, cli.dir);
        } else {
            fprintf(stderr, "credproxy: ca init: %s\n", err ? err : "failed");
            rc = rc == 1 ? 1 : 2;
        }
        free(err);
    } else if (strcmp(cli.command, "env") == 0) {
        rc = envcmd_print(cfg, cli.format, stdout);
    } else if (strcmp(cli.command, "exec") == 0) {
        fflush(stdout);
        rc = envcmd_exec(cfg, cli.exec_argv);
    } else if (strcmp(cli.command, "healthcheck") == 0) {
        rc = admin_healthcheck(cfg);
    }
out:
    config_free(cfg);
    curl_global_cleanup();
    return rc;
}
