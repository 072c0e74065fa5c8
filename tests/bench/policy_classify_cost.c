/*
 * CPU cost of the policy classifier and of JQL narrowing per call (not a
 * test; see the README section "Least privilege"). Build against the core library:
 *   cc -O2 -Iproxy tests/bench/policy_classify_cost.c build/libcredproxy_core.a \
 *      $(pkg-config --libs jansson libevent yaml-0.1 libcurl openssl hiredis) -lpthread -o /tmp/pcc
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "policy.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(void)
{
    static const char *const paths[][2] = {
        {"GET", "/rest/api/3/myself"},
        {"GET", "/rest/api/3/issue/OPS-12?expand=changelog"},
        {"POST", "/rest/api/3/issue/OPS-12/comment"},
        {"GET", "/wiki/api/v2/pages/65601/footer-comments"},
        {"POST", "/rest/api/3/brand-new-endpoint"}, /* unknown: walks the whole table */
    };
    const int n = 200000;
    struct policy_op op;
    for (size_t p = 0; p < sizeof(paths) / sizeof(paths[0]); p++) {
        double t0 = now_s();
        for (int i = 0; i < n; i++)
            policy_classify(paths[p][0], paths[p][1], strlen(paths[p][1]), &op);
        double dt = now_s() - t0;
        printf("classify %-6s %-45s %6.0f ns/call (%s)\n", paths[p][0], paths[p][1], dt / n * 1e9,
               policy_class_name(op.cls));
    }
    const char *const keys[] = {"OPS", "SUP"};
    const char *jql = "assignee = currentUser() AND status = \"In Progress\" ORDER BY updated DESC";
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        const char *why;
        char *s = policy_narrow_jql(keys, 2, jql, strlen(jql), &why);
        free(s);
    }
    printf("narrow_jql (%zu bytes)                                   %6.0f ns/call\n", strlen(jql),
           (now_s() - t0) / n * 1e9);
    return 0;
}
