/* ferc camera: not implemented yet (placeholder until its issue lands). */
#include <stdio.h>

#include "cli/cli.h"

int cmd_camera(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "ferc camera: not implemented yet\n");
    return CLI_FAIL;
}
