/* check: placeholder; replaced by the real implementation. */
#include "check.h"

int check_run(const struct config *cfg, bool json, FILE *out)
{
    (void)cfg;
    (void)json;
    fprintf(out, "check: not built yet\n");
    return 1;
}
