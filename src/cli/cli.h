/* cli: the `ferc` command-line tool. Only this layer prints and picks exit codes.
 * Each subcommand lives in its own cmd_<name>.c and is listed in the table in main.c. */
#ifndef FERC_CLI_H
#define FERC_CLI_H

#include <stdbool.h>
#include <stdio.h>

/* Exit codes shared by all subcommands. */
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

typedef int (*cli_handler)(int argc, char **argv); /* argv[0] is the subcommand name */

typedef struct cli_command {
    const char *name;
    cli_handler handler;
    const char *summary;
} cli_command;

/* Prints "ferc: <context>: <ferc_last_error()>" to stderr and returns CLI_FAIL. */
int cli_fail(const char *context);
/* Prints "ferc <cmd>: <message>" plus a hint to run --help, returns CLI_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* True when argv contains -h or --help. */
bool cli_wants_help(int argc, char **argv);

int cmd_info(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_detect(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_camera(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);

#endif
