/* ferc data: not implemented yet (placeholder until its issue lands). */
#include <stdio.h>

#include "cli/cli.h"

int cmd_data(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "ferc data: not implemented yet\n");
    return CLI_FAIL;
}
