/*
 * test_errors: the JSON fields fragment of a proxy error as a table: string
 * members escaped, a NULL value written as null, and a fragment that does
 * not fit its buffer dropped whole (never cut into invalid JSON).
 */
#include <string.h>

#include "errors.h"
#include "testlib.h"
#include "util.h"

struct fields_case {
    const char *name;
    size_t cap;
    const char *fields[6];
    size_t nfields;
    const char *want;
};

static const struct fields_case cases[] = {
    {"none", 64, {NULL}, 0, ""},
    {"one", 64, {"client", "triage-bot"}, 1, ", \"client\": \"triage-bot\""},
    {"null value", 64, {"project", NULL}, 1, ", \"project\": null"},
    {"escaped", 64, {"policy", "a\"b\\c"}, 1, ", \"policy\": \"a\\\"b\\\\c\""},
    {"two",
     64,
     {"class", "read", "space", "DOCS"},
     2,
     ", \"class\": \"read\", \"space\": \"DOCS\""},
    {"exactly fits", 25, {"client", "triage-bot"}, 1, ", \"client\": \"triage-bot\""},
    {"one byte short: dropped", 24, {"client", "triage-bot"}, 1, ""},
    {"second does not fit: dropped", 30, {"class", "read", "space", "DOCS"}, 2, ""},
};

int main(void)
{
    for (size_t i = 0; i < UTIL_ARRAY_LEN(cases); i++) {
        const struct fields_case *c = &cases[i];
        char buf[128];
        memset(buf, 'Z', sizeof(buf));
        errors_json_fields(buf, c->cap, c->fields, c->nfields);
        CHECK_MSG(strcmp(buf, c->want) == 0, "%s: got [%s] want [%s]", c->name, buf, c->want);
    }
    TEST_DONE();
}
