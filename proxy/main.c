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
          "  lint [-c FILE] [--no-secrets] validate the configuration; print warnings\n"
          "  ca init [-c FILE] [--dir DIR] [--force]\n"
          "                                create the local interception CA\n"
          "  env [-c FILE] [--client ID] [--format sh|fish|json]\n"
          "                                print what an agent needs to use the proxy\n"
          "  exec [-c FILE] [--client ID] [--] CMD [ARG...]\n"
          "                                run CMD with those variables set\n"
          "  healthcheck [-c FILE]         is the running proxy ready? (container health checks)\n"
          "  policy explain [-c FILE] CLIENT METHOD URL [--body FILE]\n"
          "                                the class, scope and verdict of a request\n"
          "\n"
          "Options:\n"
          "  -c, --config FILE             configuration file (else $CREDPROXY_CONFIG, else the\n"
          "                                ATLASSIAN_SITE/ATLASSIAN_EMAIL/ATLASSIAN_API_TOKEN "
          "default)\n"
          "  --version                     print versions and exit\n"
          "  -h, --help                    this text; `credproxy COMMAND --help` for one command\n",
          out);
}

/* `credproxy COMMAND --help`: usage, what it does, options and exit codes. */
struct command_help {
    const char *name;
    const char *text;
};

#define HELP_CONFIG                                                                                \
    "  -c, --config FILE   configuration file; else $CREDPROXY_CONFIG; else the embedded\n"        \
    "                      default from ATLASSIAN_SITE, ATLASSIAN_EMAIL, ATLASSIAN_API_TOKEN\n"

static const struct command_help command_helps[] = {
    {"run", "usage: credproxy [run] [-c FILE]\n"
            "\n"
            "Start the proxy in the foreground; logs go to stderr. SIGHUP reloads the\n"
            "configuration and re-reads token files; SIGTERM or SIGINT drain and exit.\n"
            "\n"
            "Options:\n" HELP_CONFIG "\n"
            "Exit status:\n"
            "  0  clean shutdown\n"
            "  1  could not start (e.g. the address is in use)\n"
            "  2  configuration error (printed before anything listens)\n"},
    {"check", "usage: credproxy check [-c FILE] [--json]\n"
              "\n"
              "For each credential and each of its sites: resolve, connect, TLS, then ask\n"
              "Jira (/rest/api/3/myself) and Confluence (/wiki/rest/api/user/current) who\n"
              "the credential is. One line per site and product, with the likely cause of a\n"
              "failure.\n"
              "\n"
              "Options:\n" HELP_CONFIG "  --json              one JSON object per line\n"
              "\n"
              "Exit status:\n"
              "  0  every credential works on every site\n"
              "  1  a credential or site failed\n"
              "  2  configuration error\n"},
    {"lint", "usage: credproxy lint [-c FILE] [--no-secrets]\n"
             "\n"
             "Validate the configuration and print its warnings; prints nothing when clean.\n"
             "\n"
             "Options:\n" HELP_CONFIG
             "  --no-secrets        do not read tokens or client keys (token_env, token_file,\n"
             "                      key_env, key_file): lint a configuration on a machine\n"
             "                      that does not hold its secrets\n"
             "\n"
             "Exit status:\n"
             "  0  valid (warnings allowed)\n"
             "  2  invalid\n"},
    {"ca init", "usage: credproxy ca init [-c FILE] [--dir DIR] [--force]\n"
                "\n"
                "Create the local interception CA, DIR/ca.pem (0644) and DIR/ca.key (0600),\n"
                "name-constrained to the configured sites' domains. DIR defaults to the\n"
                "directory of interception.ca_cert (certs/ next to the configuration file;\n"
                "./certs for the ATLASSIAN_* default). Reads no token.\n"
                "\n"
                "Options:\n" HELP_CONFIG "  --dir DIR           where to write ca.pem and ca.key\n"
                "  --force             replace an existing CA (a running proxy needs SIGHUP)\n"
                "\n"
                "Exit status:\n"
                "  0  created\n"
                "  1  a CA exists already (use --force)\n"
                "  2  error\n"},
    {"env",
     "usage: credproxy env [-c FILE] [--client ID] [--format sh|fish|json]\n"
     "\n"
     "Print what an agent needs to use the proxy: HTTP_PROXY, HTTPS_PROXY, NO_PROXY\n"
     "and CA trust (SSL_CERT_FILE, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, GIT_SSL_CAINFO,\n"
     "NODE_EXTRA_CA_CERTS). Needs no token: works in the agent's own shell.\n"
     "  eval \"$(credproxy env)\"\n"
     "\n"
     "Options:\n" HELP_CONFIG "  --client ID         put that client's key into the proxy URLs\n"
     "                      (http://ID:KEY@HOST:PORT)\n"
     "  --format F          sh (default), fish or json\n"
     "\n"
     "Exit status:\n"
     "  0  printed\n"
     "  2  configuration error, unknown client or format\n"},
    {"exec", "usage: credproxy exec [-c FILE] [--client ID] [--] CMD [ARG...]\n"
             "\n"
             "Run CMD with the variables `credproxy env` prints, and without any variable\n"
             "that holds a credential (token_env, client_secret_env, ATLASSIAN_API_TOKEN)\n"
             "or another client's key. Warns when nothing listens on the proxy address.\n"
             "Options end at the first word that is not one (or at --).\n"
             "\n"
             "Options:\n" HELP_CONFIG
             "  --client ID         CMD identifies itself as that client (key in the URLs)\n"
             "\n"
             "Exit status:\n"
             "  CMD's own status\n"
             "  2    configuration error or unknown client\n"
             "  127  CMD could not be run\n"},
    {"healthcheck", "usage: credproxy healthcheck [-c FILE]\n"
                    "\n"
                    "Is the running proxy ready? With admin: set, GET its /readyz; without, the\n"
                    "credentials' expiry and a connect to the first listener. Prints `ready` or\n"
                    "the reason. For container health checks: no curl needed in the image.\n"
                    "\n"
                    "Options:\n" HELP_CONFIG "\n"
                    "Exit status:\n"
                    "  0  ready\n"
                    "  1  not ready or not reachable\n"
                    "  2  configuration error\n"},
};

/* Prints COMMAND's help; false when there is no such command. */
static bool command_usage(const char *command, FILE *out)
{
    for (size_t i = 0; i < UTIL_ARRAY_LEN(command_helps); i++) {
        if (strcmp(command_helps[i].name, command) == 0) {
            fputs(command_helps[i].text, out);
            return true;
        }
    }
    return false;
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
    bool no_secrets;
    bool help;
    const char *dir; /* NULL: the directory of interception.ca_cert */
    const char *format;
    const char *client;
    char **exec_argv;
};

static bool is_command(const struct cli *cli, const char *name)
{
    return strcmp(cli->command, name) == 0;
}

/* Returns 0, or EXIT_CONFIG after printing what is wrong with the command line. */
static int parse_cli(int argc, char **argv, struct cli *cli)
{
    int i = 1;
    memset(cli, 0, sizeof(*cli));
    cli->command = "run";
    cli->format = "sh";
    /* `credproxy -c FILE COMMAND` works too: a leading -c is everyone's option. */
    while (i + 1 < argc && (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0)) {
        cli->config_path = argv[i + 1];
        i += 2;
    }
    if (i < argc && argv[i][0] != '-') {
        cli->command = argv[i++];
        if (strcmp(cli->command, "ca") == 0) {
            if (i < argc && (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)) {
                cli->command = "ca init";
                cli->help = true;
                return 0;
            }
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
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            cli->help = true;
            return 0;
        } else if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) && has_next) {
            cli->config_path = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            cli->config_path = a + 9;
        } else if (strcmp(a, "--json") == 0 && is_command(cli, "check")) {
            cli->json = true;
        } else if (strcmp(a, "--no-secrets") == 0 && is_command(cli, "lint")) {
            cli->no_secrets = true;
        } else if (strcmp(a, "--force") == 0 && is_command(cli, "ca init")) {
            cli->force = true;
        } else if (strcmp(a, "--dir") == 0 && has_next && is_command(cli, "ca init")) {
            cli->dir = argv[++i];
        } else if (strcmp(a, "--format") == 0 && has_next && is_command(cli, "env")) {
            cli->format = argv[++i];
        } else if (strncmp(a, "--format=", 9) == 0 && is_command(cli, "env")) {
            cli->format = a + 9;
        } else if (strcmp(a, "--client") == 0 && has_next &&
                   (is_command(cli, "env") || is_command(cli, "exec"))) {
            cli->client = argv[++i];
        } else if (strncmp(a, "--client=", 9) == 0 &&
                   (is_command(cli, "env") || is_command(cli, "exec"))) {
            cli->client = a + 9;
        } else if (is_command(cli, "exec") && (strcmp(a, "--") == 0 || a[0] != '-')) {
            /* CMD starts here: after --, or at the first word that is not an option. */
            cli->exec_argv = &argv[strcmp(a, "--") == 0 ? i + 1 : i];
            if (!cli->exec_argv[0]) {
                fprintf(stderr, "credproxy: exec: give a command after --\n");
                return EXIT_CONFIG;
            }
            return 0;
        } else {
            fprintf(stderr,
                    "credproxy: %s: unknown or incomplete option '%s' (see credproxy %s "
                    "--help)\n",
                    cli->command, a, cli->command);
            return EXIT_CONFIG;
        }
    }
    if (is_command(cli, "exec")) {
        fprintf(stderr, "credproxy: exec: usage: credproxy exec [-c FILE] [--client ID] [--] CMD "
                        "[ARG...]\n");
        return EXIT_CONFIG;
    }
    return 0;
}

/*
 * Loads the configuration for a command; prints the error and returns NULL on
 * failure. Only run and check need the secrets: env, exec, ca init and
 * healthcheck never read one (exec must not even be able to pass one on).
 */
static struct config *load_config(const struct cli *cli)
{
    struct config_load_opts opts = {0, NULL};
    struct config *cfg = NULL;
    char *err = NULL;
    int rc;

    if (is_command(cli, "env") || is_command(cli, "exec")) {
        opts.flags = CONFIG_LOAD_NO_SECRETS | CONFIG_LOAD_DEFAULT_ANY;
        opts.client_id = cli->client;
    } else if (is_command(cli, "ca init") || is_command(cli, "healthcheck") ||
               (is_command(cli, "lint") && cli->no_secrets)) {
        opts.flags = CONFIG_LOAD_NO_SECRETS;
    }
    rc = config_load_with(cli->config_path, &opts, &cfg, &err);
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

/* `ca init`: the CA goes where the configuration looks for it unless --dir says otherwise. */
static int ca_init(const struct config *cfg, const struct cli *cli)
{
    char *dir = cli->dir ? xstrdup(cli->dir) : util_dirname(cfg->interception.ca_cert);
    char *err = NULL;
    int rc;

    rc = mitm_ca_init(cfg, dir, cli->force, &err);
    if (rc == 0) {
        printf("created %s/ca.pem and %s/ca.key; trust %s/ca.pem in your agents "
               "(credproxy env prints how)\n",
               dir, dir, dir);
        if (cli->force)
            printf("a proxy that is already running keeps the old CA until it reloads: send it "
                   "SIGHUP (systemctl reload credproxy, or kill -HUP PID)\n");
    } else {
        fprintf(stderr, "credproxy: ca init: %s\n", err ? err : "failed");
        rc = rc == 1 ? 1 : 2;
    }
    free(err);
    free(dir);
    return rc;
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
        if (strcmp(argv[i], "--version") == 0) {
            print_version();
            return 0;
        }
        if (argv[i][0] != '-' || strcmp(argv[i], "--") == 0)
            break; /* a command (its own --help is parsed below) or exec's CMD */
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc)
            i++;
    }
    if (argc > 1 && strcmp(argv[1], "help") == 0) {
        if (argc > 2 && command_usage(strcmp(argv[2], "ca") == 0 ? "ca init" : argv[2], stdout))
            return 0;
        usage(stdout);
        return 0;
    }
    rc = parse_cli(argc, argv, &cli);
    if (rc != 0)
        return rc;

    if (cli.help) {
        if (!command_usage(cli.command, stdout)) {
            fprintf(stderr, "credproxy: unknown command '%s' (see credproxy --help)\n",
                    cli.command);
            return EXIT_CONFIG;
        }
        return 0;
    }
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

    if (is_command(&cli, "lint")) {
        for (size_t i = 0; i < cfg->nwarnings; i++)
            printf("%s\n", cfg->warnings[i].text);
        rc = 0;
    } else if (is_command(&cli, "run")) {
        rc = server_run(cfg, cli.config_path ? cli.config_path : getenv("CREDPROXY_CONFIG"));
        cfg = NULL; /* consumed */
    } else if (is_command(&cli, "check")) {
        rc = check_run(cfg, cli.json, stdout);
    } else if (is_command(&cli, "ca init")) {
        rc = ca_init(cfg, &cli);
    } else if (is_command(&cli, "env")) {
        rc = envcmd_print(cfg, cli.format, cli.client, stdout);
    } else if (is_command(&cli, "exec")) {
        fflush(stdout);
        rc = envcmd_exec(cfg, cli.client, cli.exec_argv);
    } else if (is_command(&cli, "healthcheck")) {
        rc = admin_healthcheck(cfg);
    }
out:
    config_free(cfg);
    curl_global_cleanup();
    return rc;
}
