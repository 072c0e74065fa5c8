/* server: placeholder; replaced by the real implementation. */
#include "server.h"

#include <stdio.h>

int server_run(struct config *cfg, const char *config_path)
{
    (void)cfg;
    (void)config_path;
    fprintf(stderr, "credproxy: run: not built yet\n");
    return 2;
}
