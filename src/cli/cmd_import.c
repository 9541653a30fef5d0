/* ferc import: not implemented yet (placeholder until its issue lands). */
#include <stdio.h>

#include "cli/cli.h"

int cmd_import(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "ferc import: not implemented yet\n");
    return CLI_FAIL;
}
