/* main: commands, signals, reload. (skeleton; filled in by the integrator) */
#include <stdio.h>

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("credproxy %s\n", CREDPROXY_VERSION);
    return 0;
}
