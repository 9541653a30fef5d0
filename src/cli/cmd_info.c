/* ferc info: describes an architecture (--arch) or a model file: a layer table, the parameter
 * count, forward FLOPs and the activation memory of a training step; for a model file also its
 * metadata (classes, input size, normalization, training summary). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/core.h"
#include "io/safetensors.h"
#include "models/models.h"

enum { DEFAULT_IMG = 224, DEFAULT_CLASSES = 1000, DEFAULT_BATCH = 64 };

static void usage(void)
{
    int n;
    const char *const *archs = models_arch_names(&n);
    printf("usage: ferc info --arch NAME [--img-size N] [--classes N|A,B,...] [--batch B] [--summary]\n"
           "       ferc info MODEL_FILE [--img-size N] [--batch B] [--summary]\n\n"
           "Describes a network: a layer table (node, op, output shape per image, parameters), the\n"
           "parameter count, forward FLOPs (2 x multiply-adds of conv and linear layers) and the\n"
           "float32 activation memory of one training step (outputs and their gradients).\n"
           "For a model file (.safetensors written by ferc) it also prints the metadata.\n\n"
           "options:\n"
           "  --arch NAME       architecture: ");
    for (int i = 0; i < n; i++) printf("%s%s", archs[i], i + 1 < n ? ", " : "\n");
    printf("  --img-size N      square input side (default %d; a model file: its own size)\n"
           "  --classes N       number of classes, or a comma-separated list of names (default %d)\n"
           "  --batch B         batch size for the training-step memory (default %d)\n"
           "  --summary         totals only, no layer table\n"
           "  -h, --help        this help\n",
           DEFAULT_IMG, DEFAULT_CLASSES, DEFAULT_BATCH);
}

/* "58156102" -> "58,156,102" */
static const char *grouped(char *buf, size_t size, unsigned long long v)
{
    char digits[32];
    int n = snprintf(digits, sizeof digits, "%llu", v), j = 0;
    for (int i = 0; i < n && j + 2 < (int)size; i++) {
        if (i && (n - i) % 3 == 0) buf[j++] = ',';
        buf[j++] = digits[i];
    }
    buf[j] = '\0';
    return buf;
}

static const char *human_bytes(char *buf, size_t size, double b)
{
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024 && u < 4) {
        b /= 1024;
        u++;
    }
    snprintf(buf, size, u ? "%.1f %s" : "%.0f %s", b, units[u]);
    return buf;
}

static size_t node_params(const nn_graph *g, const nn_node *nd)
{
    size_t n = 0;
    for (int i = nd->param_first; i < nd->param_first + nd->param_count; i++)
        if (nn_param_trainable_kind(g->param_table[i].kind)) n += g->param_table[i].count;
    return n;
}

static void print_layers(const nn_graph *g)
{
    printf("%-5s %-44s %-15s %-16s %12s\n", "node", "name", "op", "output", "params");
    char buf[32], shape[48], op[32];
    for (int i = 0; i < g->nnodes; i++) {
        const nn_node *nd = &g->nodes[i];
        if (nd->op == NN_OP_FLATTEN || nd->op == NN_OP_LINEAR)
            snprintf(shape, sizeof shape, "%d", nd->channels);
        else
            snprintf(shape, sizeof shape, "%dx%dx%d", nd->channels, nd->h, nd->w);
        if (nd->op == NN_OP_CONCAT)
            snprintf(op, sizeof op, "concat(%d)", nd->ninputs);
        else if (nd->op == NN_OP_CONV2D)
            snprintf(op, sizeof op, "%sconv%dx%d/%d%s", nd->attr.conv.groups > 1 ? "g" : "", nd->attr.conv.kernel,
                     nd->attr.conv.kernel, nd->attr.conv.stride, nd->attr.conv.pad == NN_PAD_SAME ? "same" : "");
        else if (nd->op == NN_OP_MAXPOOL2D || nd->op == NN_OP_AVGPOOL2D)
            snprintf(op, sizeof op, "%spool%dx%d/%d", nd->op == NN_OP_MAXPOOL2D ? "max" : "avg", nd->attr.pool.kernel,
                     nd->attr.pool.kernel, nd->attr.pool.stride);
        else
            snprintf(op, sizeof op, "%s", nn_op_name(nd->op));
        size_t np = node_params(g, nd);
        printf("%-5d %-44s %-15s %-16s %12s\n", i, nd->name, op, shape, np ? grouped(buf, sizeof buf, np) : "-");
    }
    printf("\n");
}

/* Prints the totals for input img x img; the graph's shapes are left at batch `batch`. */
static int print_totals(nn_graph *g, const char *arch, int img, int batch)
{
    char a[32], b[32], c[32];
    if (nn_graph_infer_shapes(g, 1, 3, img, img)) return cli_fail(arch);
    double flops = nn_graph_flops(g);
    size_t nparam = nn_param_count(g);
    size_t nbuf = g->n_buffers;
    if (nn_graph_infer_shapes(g, batch, 3, img, img)) return cli_fail(arch);
    size_t act = nn_graph_activation_bytes(g);
    printf("architecture:     %s\n", arch);
    printf("input:            3x%dx%d (a grayscale image is replicated to 3 channels)\n", img, img);
    printf("classes:          %d\n", g->nodes[g->output].channels);
    printf("parameters:       %s (%s float32; buffers %s)\n", grouped(a, sizeof a, nparam),
           human_bytes(b, sizeof b, (double)nparam * 4), grouped(c, sizeof c, nbuf));
    printf("forward FLOPs:    %.4g GFLOP per image (%s)\n", flops / 1e9, grouped(a, sizeof a, (unsigned long long)flops));
    printf("training memory:  %s of activations and their gradients for batch %d\n",
           human_bytes(a, sizeof a, (double)act), batch);
    return CLI_OK;
}

static int parse_pos(const char *cmd, const char *opt, const char *s, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v <= 0 || v > 100000) return cli_usage_error(cmd, "%s needs a positive integer, not '%s'", opt, s);
    *out = (int)v;
    return 0;
}

static int count_classes(const char *s, int *out)
{
    if (strchr(s, ',') || (*s && (*s < '0' || *s > '9'))) {
        int n = 1;
        for (const char *p = s; *p; p++) n += *p == ',';
        *out = n;
        return 0;
    }
    return parse_pos("info", "--classes", s, out);
}

static int info_file(const char *path, int img, int batch, bool summary)
{
    st_file f;
    models_meta meta;
    nn_graph *g = NULL;
    if (st_read(&f, path)) return cli_fail(NULL);
    int rc = models_read_meta(&f, &meta, path);
    if (!rc) {
        rc = models_create(&g, meta.arch, meta.num_classes);
        if (!rc) rc = models_fill(g, &f, NULL, path);
        if (rc) models_meta_free(&meta);
    }
    if (rc) {
        st_close(&f);
        nn_graph_destroy(g);
        return cli_fail(NULL);
    }
    const char *storage = "?";
    for (int i = 0; i < f.count; i++)
        if (f.tensors[i].dtype != ST_I64) storage = st_dtype_name(f.tensors[i].dtype);
    if (!img) img = meta.img_size;
    int ret = CLI_OK;
    if (!summary) {
        if (nn_graph_infer_shapes(g, 1, 3, img, img)) ret = cli_fail(path);
        else print_layers(g);
    }
    if (ret == CLI_OK) {
        printf("model file:       %s (%d tensors, %s storage)\n", path, f.count, storage);
        ret = print_totals(g, meta.arch, img, batch);
    }
    if (ret == CLI_OK) {
        printf("trained at:       %dx%d, %d channel%s\n", meta.img_size, meta.img_size, meta.channels,
               meta.channels > 1 ? "s" : "");
        printf("normalization:    mean");
        for (int i = 0; i < meta.channels; i++) printf(" %g", (double)meta.mean[i]);
        printf(", std");
        for (int i = 0; i < meta.channels; i++) printf(" %g", (double)meta.std[i]);
        printf("\nclass names:      ");
        for (int i = 0; i < meta.num_classes; i++)
            if (meta.class_names) printf("%s%s", i ? ", " : "", meta.class_names[i]);
            else printf("%s%d", i ? ", " : "", i);
        printf("\ntraining:         %s\n", meta.training_json ? meta.training_json : "(none recorded)");
    }
    models_meta_free(&meta);
    nn_graph_destroy(g);
    st_close(&f);
    return ret;
}

int cmd_info(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        usage();
        return CLI_OK;
    }
    const char *arch = NULL, *file = NULL;
    int img = 0, classes = DEFAULT_CLASSES, batch = DEFAULT_BATCH, rc;
    bool summary = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        if (!strcmp(a, "--summary")) {
            summary = true;
        } else if (!strcmp(a, "--arch") || !strcmp(a, "--img-size") || !strcmp(a, "--classes") || !strcmp(a, "--batch")) {
            if (!has_value) return cli_usage_error("info", "%s needs a value", a);
            const char *v = argv[++i];
            if (!strcmp(a, "--arch")) arch = v;
            else if (!strcmp(a, "--img-size") && (rc = parse_pos("info", a, v, &img))) return rc;
            else if (!strcmp(a, "--classes") && (rc = count_classes(v, &classes))) return rc;
            else if (!strcmp(a, "--batch") && (rc = parse_pos("info", a, v, &batch))) return rc;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error("info", "unknown option '%s'", a);
        } else if (file) {
            return cli_usage_error("info", "one model file at a time ('%s' and '%s')", file, a);
        } else {
            file = a;
        }
    }
    if (!!arch == !!file) return cli_usage_error("info", "give either --arch NAME or a MODEL_FILE");
    if (file) return info_file(file, img, batch, summary);

    models_family family;
    if (models_arch_family(arch, &family)) return cli_usage_error("info", "%s", ferc_last_error());
    if (!img) img = DEFAULT_IMG;
    nn_graph *g = NULL;
    if (models_create(&g, arch, classes)) return cli_fail(arch);
    int ret = CLI_OK;
    if (!summary) {
        if (nn_graph_infer_shapes(g, 1, 3, img, img)) ret = cli_fail(arch);
        else print_layers(g);
    }
    if (ret == CLI_OK) ret = print_totals(g, arch, img, batch);
    nn_graph_destroy(g);
    return ret;
}
