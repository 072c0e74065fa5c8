/* envcmd: placeholder; replaced by the real implementation. */
#include "envcmd.h"

int envcmd_print(const struct config *cfg, const char *format, FILE *out)
{
    (void)cfg;
    (void)format;
    (void)out;
    return 2;
}

int envcmd_exec(const struct config *cfg, char **argv)
{
    (void)cfg;
    (void)argv;
    return 127;
}
