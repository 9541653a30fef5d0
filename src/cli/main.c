/* ferc: subcommand dispatch driven by one declarative table. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferc.h"
#include "cli/cli.h"
#include "core/core.h"

static const cli_command commands[] = {
    {"info", cmd_info, "describe an architecture or a model file (layers, parameters, FLOPs)"},
    {"import", cmd_import, "convert PyTorch .pth / safetensors weights into a ferc model"},
    {"convert", cmd_convert, "rewrite a ferc model with f16/bf16/f32 storage"},
    {"train", cmd_train, "train a classifier on an image folder (transfer learning)"},
    {"eval", cmd_eval, "evaluate a model on a labelled folder or split manifest"},
    {"study", cmd_study, "train several architectures by one protocol and compare them"},
    {"compare", cmd_compare, "compare training runs: intervals, paired tests, calibration, cost, Grad-CAM"},
    {"predict", cmd_predict, "find faces in images and classify their expressions"},
    {"detect", cmd_detect, "find faces in images (Viola-Jones cascade)"},
    {"camera", cmd_camera, "live recognition from a camera, a video file or an image folder"},
    {"serve", cmd_serve, "web page on your camera and a JSON API (HTTP)"},
    {"data", cmd_data, "inspect a dataset: check, stats, grid"},
    {"bench", cmd_bench, "measure training or inference speed"},
};

static void usage(FILE *out)
{
    fprintf(out,
            "ferc %s: facial-expression recognition\n\n"
            "usage: ferc <command> [options]\n"
            "       ferc <command> --help\n\ncommands:\n",
            ferc_version());
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\noptions:\n  -h, --help     this help\n  -V, --version  print the version\n");
}

int cli_fail(const char *context)
{
    fprintf(stderr, "ferc: %s%s%s\n", context ? context : "", context ? ": " : "", ferc_last_error());
    return CLI_FAIL;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "ferc %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(run 'ferc %s --help' for usage)\n", cmd);
    return CLI_USAGE;
}

int cli_parse_precision(const char *s, bool *bf16)
{
    if (s && !strcmp(s, "fp32")) *bf16 = false;
    else if (s && !strcmp(s, "bf16")) *bf16 = true;
    else return -1;
    return 0;
}

bool cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return true;
    return false;
}

int main(int argc, char **argv)
{
    /* A file-size limit (ulimit -f) makes a write fail with EFBIG and a clear message naming
     * the file, instead of killing the process with SIGXFSZ half-way through it. */
    signal(SIGXFSZ, SIG_IGN);
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    const char *name = argv[1];
    if (!strcmp(name, "-h") || !strcmp(name, "--help") || !strcmp(name, "help")) {
        usage(stdout);
        return CLI_OK;
    }
    if (!strcmp(name, "-V") || !strcmp(name, "--version") || !strcmp(name, "version")) {
        printf("ferc %s\n", ferc_version());
        return CLI_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(name, commands[i].name)) return commands[i].handler(argc - 1, argv + 1);
    fprintf(stderr, "ferc: unknown command '%s'\n\n", name);
    usage(stderr);
    return CLI_USAGE;
}

int cli_parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

int cli_parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !(v >= lo && v <= hi)) return -1;
    *out = v;
    return 0;
}

const char *cli_base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

void cli_annotate_path(const char *out, bool single, const char *img_path, char *dst, size_t n)
{
    if (single && !file_is_dir(out)) snprintf(dst, n, "%s", out);
    else snprintf(dst, n, "%s/%s", out, cli_base_name(img_path));
}
