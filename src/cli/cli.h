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
/* Whole-string number parsing within [lo, hi]; 0 on success, -1 otherwise (*out untouched). */
int cli_parse_int(const char *s, int lo, int hi, int *out);
int cli_parse_double(const char *s, double lo, double hi, double *out);
/* --precision fp32|bf16: 0 on success (*bf16 set), -1 otherwise. */
int cli_parse_precision(const char *s, bool *bf16);
#define CLI_PRECISION_HELP \
    "  --precision P        fp32 (default) or bf16: mixed precision, bf16 activations and\n" \
    "                       convolution weights in the kernels, float32 weights and results\n"
/* The file name part of a path. */
const char *cli_base_name(const char *path);
/* Where the annotated copy of img_path goes: `out` itself for a single image when `out` is not
 * a folder, else out/<file name>. */
void cli_annotate_path(const char *out, bool single, const char *img_path, char *dst, size_t n);

int cmd_info(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_detect(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_camera(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_study(int argc, char **argv);

#endif
