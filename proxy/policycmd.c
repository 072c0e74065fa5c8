/*
 * policycmd: see policycmd.h.
 */
#include "policycmd.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "policy.h"
#include "util.h"

enum { PCMD_ALLOW = 0, PCMD_DENY = 1, PCMD_USAGE = 2 };

static const char *const pcmd_usage =
    "usage: credproxy policy explain [-c FILE] CLIENT METHOD URL [--body FILE]\n"
    "\n"
    "  CLIENT   a configured client id, or - for a request without identity\n"
    "           (it gets default_policy)\n"
    "  METHOD   GET, POST, PUT, DELETE, ...\n"
    "  URL      https://SITE.atlassian.net/rest/... or just the path /rest/...\n"
    "  --body FILE  the JSON body (create requests, POST searches)\n"
    "\n"
    "Prints the operation class, the project or space found, and the verdict.\n"
    "Needs no secret and contacts nothing. Exit status: 0 allow; 1 deny (or only\n"
    "decidable by the id lookup the proxy makes at request time); 2 usage or\n"
    "configuration error.\n";

/* The path and query of URL: after the authority of an absolute URL, else URL itself. */
static const char *pcmd_path(const char *url)
{
    const char *p = strstr(url, "://");
    if (!p)
        return url;
    p = strchr(p + 3, '/');
    return p ? p : "/";
}

static char *pcmd_read_body(const char *path, size_t *len, bool *too_big)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    if (!f)
        return NULL;
    buf = xmalloc(POLICY_MAX_BODY + 2);
    *len = fread(buf, 1, POLICY_MAX_BODY + 1, f);
    fclose(f);
    *too_big = *len > POLICY_MAX_BODY;
    buf[*len] = '\0';
    return buf;
}

static void pcmd_scope_line(FILE *out, const struct policy_op *op)
{
    const char *noun = op->product == POLICY_PRODUCT_CONFLUENCE ? "space" : "project";
    if (op->src == POLICY_SCOPE_PATH && op->lookup == POLICY_LOOKUP_NONE)
        fprintf(out, "scope:   %s %s (from the path)\n", noun, op->key);
    else if (op->src == POLICY_SCOPE_PATH)
        fprintf(out, "scope:   %s %s in the path (resolved to its %s by a lookup)\n",
                policy_lookup_name(op->lookup), op->key, noun);
    else
        fprintf(out, "scope:   %s\n", policy_scope_src_name(op->src));
}

static int pcmd_lookup_verdict(FILE *out, const struct config_policy *pol,
                               const struct policy_op *op, const struct policy_decision *d)
{
    char path[128];
    const char *noun = op->product == POLICY_PRODUCT_CONFLUENCE ? "space" : "project";
    char *const *list = op->product == POLICY_PRODUCT_CONFLUENCE ? pol->spaces : pol->projects;
    size_t n = op->product == POLICY_PRODUCT_CONFLUENCE ? pol->nspaces : pol->nprojects;

    if (policy_lookup_path(d->lookup, d->id, path, sizeof(path)) < 0)
        snprintf(path, sizeof(path), "?");
    fprintf(out, "lookup:  GET %s (made by the proxy with the site's credential, cached)\n", path);
    fprintf(out, "verdict: depends on the lookup: allowed only when the %s is one of", noun);
    for (size_t i = 0; i < n; i++)
        fprintf(out, "%s %s", i ? "," : "", list[i]);
    fprintf(out, "\n");
    return PCMD_DENY;
}

int policycmd_main(int argc, char **argv, FILE *out)
{
    const char *cfg_path = NULL, *body_path = NULL, *pos[3];
    size_t npos = 0;
    struct config *cfg = NULL;
    char *err = NULL;
    int rc = PCMD_USAGE;

    if (argc < 1 || strcmp(argv[0], "explain") != 0) {
        bool help = argc >= 1 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0);
        fputs(pcmd_usage, help ? out : stderr);
        return help ? 0 : PCMD_USAGE;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(pcmd_usage, out);
            return 0;
        }
        if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) && i + 1 < argc) {
            cfg_path = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            cfg_path = a + 9;
        } else if (strcmp(a, "--body") == 0 && i + 1 < argc) {
            body_path = argv[++i];
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "credproxy: policy explain: unknown option '%s'\n%s", a, pcmd_usage);
            return PCMD_USAGE;
        } else if (npos < 3) {
            pos[npos++] = a;
        } else {
            fprintf(stderr, "credproxy: policy explain: too many arguments\n%s", pcmd_usage);
            return PCMD_USAGE;
        }
    }
    if (npos != 3) {
        fprintf(stderr, "credproxy: policy explain: give CLIENT METHOD URL\n%s", pcmd_usage);
        return PCMD_USAGE;
    }
    {
        /* No secret is read: explain works where the tokens and keys are not set. */
        const struct config_load_opts opts = {CONFIG_LOAD_NO_SECRETS, NULL};
        int lr = config_load_with(cfg_path, &opts, &cfg, &err);
        if (lr != 0) {
            fprintf(stderr, "%s%s\n", lr == 1 ? "credproxy: " : "",
                    lr == 1 ? config_missing_message()
                    : err   ? err
                            : "configuration error");
            free(err);
            return PCMD_USAGE;
        }
    }

    const char *client = pos[0], *method = pos[1], *path = pcmd_path(pos[2]);
    bool anonymous = strcmp(client, "-") == 0;
    if (!anonymous) {
        bool known = false;
        for (size_t i = 0; i < cfg->nclients; i++)
            known = known || strcmp(cfg->clients[i].id, client) == 0;
        if (!known) {
            fprintf(stderr,
                    "credproxy: policy explain: no client '%s' in %s (use - for a request "
                    "without identity)\n",
                    client, cfg->file);
            goto out;
        }
    }
    const struct config_policy *pol = config_policy_for(cfg, anonymous ? NULL : client);
    struct policy_op op;
    struct policy_decision d;
    policy_classify(method, path, strlen(path), &op);
    policy_decide(pol, &op, &d);

    fprintf(out, "client:  %s (policy %s)\n", anonymous ? "(none)" : client, pol->name);
    fprintf(out, "request: %s %s\n", method, path);
    fprintf(out, "product: %s\n", policy_product_name(op.product));
    fprintf(out, "class:   %s\n", policy_class_name(op.cls));
    fprintf(out, "rule:    %s\n", op.rule);
    pcmd_scope_line(out, &op);

    if (d.verdict == POLICY_NARROW_QUERY) {
        const char *q = strchr(path, '?');
        size_t plen = q ? (size_t)(q - path) : strlen(path);
        char *nq = policy_narrow_query(pol, &op, q ? q + 1 : "", q ? strlen(q + 1) : 0, &d);
        if (nq) {
            fprintf(out, "forward: %s %.*s%s%s\n", method, (int)plen, path, *nq ? "?" : "", nq);
            free(nq);
        }
    } else if (d.verdict == POLICY_NEEDS_BODY) {
        size_t blen = 0;
        bool too_big = false;
        char *body = body_path ? pcmd_read_body(body_path, &blen, &too_big) : NULL;
        if (!body_path) {
            d.verdict = POLICY_DENY;
            snprintf(d.reason, sizeof(d.reason),
                     "the verdict depends on the request body; give it with --body FILE");
        } else if (!body) {
            fprintf(stderr, "credproxy: policy explain: cannot read %s\n", body_path);
            goto out;
        } else if (too_big) {
            d.verdict = POLICY_DENY;
            snprintf(d.reason, sizeof(d.reason),
                     "the body is larger than %d bytes: the proxy answers 413", POLICY_MAX_BODY);
        } else {
            char *nb = NULL;
            size_t nblen = 0;
            policy_apply_body(pol, &op, body, blen, &nb, &nblen, &d);
            if (nb)
                fprintf(out, "body:    %.*s\n", (int)nblen, nb);
            free(nb);
        }
        free(body);
    }
    if (d.verdict == POLICY_NEEDS_LOOKUP) {
        rc = pcmd_lookup_verdict(out, pol, &op, &d);
        goto out;
    }
    if (d.verdict == POLICY_ALLOW) {
        fprintf(out, "verdict: allow (%s)\n", d.reason);
        rc = PCMD_ALLOW;
    } else {
        fprintf(out, "verdict: deny: %s\n", d.reason);
        rc = PCMD_DENY;
    }
out:
    config_free(cfg);
    return rc;
}
