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
#include "nn/nn.h"

enum { DEFAULT_IMG = 224, DEFAULT_CLASSES = 1000, DEFAULT_BATCH = 64 };

static void usage(void)
{
    int n;
    const char *const *archs = models_arch_names(&n);
    printf("usage: ferc info --arch NAME [--img-size N] [--classes N|A,B,...] [--batch B] [--summary]\n"
           "                 [--precision fp32|bf16] [--optimizer sgd|adam|adamw] [--json]\n"
           "       ferc info MODEL_FILE [--img-size N] [--batch B] [--summary] [...]\n\n"
           "Describes a network: a layer table (node, op, output shape per image, parameters), the\n"
           "parameter count, forward FLOPs (2 x multiply-adds of conv and linear layers), the\n"
           "float32 activation memory of one training step (outputs and their gradients), and the\n"
           "memory that ferc's training and inference plans for batch B allocate (buffers shared by\n"
           "liveness; nothing is allocated to find out) with the peak a process running them reaches.\n"
           "For a model file (.safetensors written by ferc) it also prints the metadata.\n\n"
           "options:\n"
           "  --arch NAME       architecture: ");
    for (int i = 0; i < n; i++) printf("%s%s", archs[i], i + 1 < n ? ", " : "\n");
    printf("  --img-size N      square input side (default %d; a model file: its own size)\n"
           "  --classes N       number of classes, or a comma-separated list of names (default %d)\n"
           "  --batch B         batch size for the training-step memory (default %d)\n"
           "  --summary         totals only, no layer table\n"
           "  --precision P     fp32 (default) or bf16 plans\n"
           "  --optimizer O     optimizer state counted for training: sgd (momentum: 1 copy of the\n"
           "                    weights, what ferc bench runs), adam or adamw (2; default adamw)\n"
           "  --json            only the planned memory, as one JSON object\n"
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
typedef struct plan_opts {
    bool bf16, json;
    int optim_states;    /* float32 copies of the weights the optimizer keeps: sgd 1, adam(w) 2 */
    const char *optim;
    size_t baseline;     /* this process's resident memory before anything was built */
} plan_opts;

/* Plans the network for training and for inference at `batch` and prints what the plans
 * allocate, and the peak a process running them would reach: this process's baseline (code,
 * libraries) + weights (+ gradients + optimizer state) + the plan. */
static int print_plans(nn_graph *g, const char *arch, int img, int batch, const plan_opts *po)
{
    const double MiB = 1024.0 * 1024.0;
    double w = (double)(g->n_params + g->n_buffers) * 4, grads = (double)g->n_params * 4;
    double opt = (double)po->optim_states * g->n_params * 4, planned[2] = {0, 0}, code[2] = {0, 0};
    /* Dry runs: nothing is allocated, but oneDNN generates its kernels, and what that adds to
     * this process is what a run of the plan adds beyond its buffers. Inference first, so the
     * kernels both plans use count there. */
    for (int mode = 1; mode >= 0; mode--) {
        nn_exec *ex = NULL;
        unsigned flags = (mode == 0 ? NN_EXEC_TRAINING : 0) | (po->bf16 ? NN_EXEC_BF16 : 0) | NN_EXEC_DRY_RUN;
        double before = (double)process_rss_bytes();
        if (nn_exec_create(&ex, g, NULL, batch, 3, img, img, flags)) return cli_fail(arch);
        planned[mode] = (double)nn_exec_planned_bytes(ex);
        code[mode] = (double)process_rss_bytes() - before;
        nn_exec_destroy(ex);
        if (code[mode] < 0) code[mode] = 0;
    }
    double base = (double)po->baseline;
    double train_peak = base + code[0] + code[1] + w + grads + opt + planned[0], infer_peak = base + code[1] + w + planned[1];
    base += code[1];
    if (po->json) {
        printf("{\"arch\": \"%s\", \"img_size\": %d, \"batch\": %d, \"precision\": \"%s\", \"optimizer\": \"%s\", "
               "\"weights_mib\": %.1f, \"baseline_mib\": %.1f, \"train_plan_mib\": %.1f, \"train_peak_mib\": %.1f, "
               "\"infer_plan_mib\": %.1f, \"infer_peak_mib\": %.1f}\n",
               arch, img, batch, po->bf16 ? "bf16" : "fp32", po->optim, w / MiB, base / MiB, planned[0] / MiB,
               train_peak / MiB, planned[1] / MiB, infer_peak / MiB);
        return CLI_OK;
    }
    printf("planned memory:   batch %d, %s\n", batch, po->bf16 ? "bf16" : "fp32");
    printf("  training:       %.0f MiB = weights %.0f + gradients %.0f + %s state %.0f + plan %.0f (activations, their\n"
           "                  gradients, workspaces), + %.0f MiB of code and libraries: peak %.0f MiB\n",
           (w + grads + opt + planned[0]) / MiB, w / MiB, grads / MiB, po->optim, opt / MiB, planned[0] / MiB, base / MiB,
           train_peak / MiB);
    printf("  inference:      %.0f MiB = weights %.0f + plan %.0f, + %.0f MiB of code and libraries: peak %.0f MiB\n",
           (w + planned[1]) / MiB, w / MiB, planned[1] / MiB, base / MiB, infer_peak / MiB);
    return CLI_OK;
}

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

static int info_file(const char *path, int img, int batch, bool summary, const plan_opts *po)
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
    if (po->json) {
        ret = print_plans(g, meta.arch, img, batch, po);
        summary = true;
    } else if (!summary) {
        if (nn_graph_infer_shapes(g, 1, 3, img, img)) ret = cli_fail(path);
        else print_layers(g);
    }
    if (ret == CLI_OK && !po->json) {
        printf("model file:       %s (%d tensors, %s storage)\n", path, f.count, storage);
        ret = print_totals(g, meta.arch, img, batch);
        if (ret == CLI_OK) ret = print_plans(g, meta.arch, img, batch, po);
    }
    if (ret == CLI_OK && !po->json) {
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
    plan_opts po = {.optim_states = 2, .optim = "adamw", .baseline = process_rss_bytes()};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        if (!strcmp(a, "--summary")) {
            summary = true;
        } else if (!strcmp(a, "--json")) {
            po.json = true;
        } else if (!strcmp(a, "--arch") || !strcmp(a, "--img-size") || !strcmp(a, "--classes") || !strcmp(a, "--batch") ||
                   !strcmp(a, "--precision") || !strcmp(a, "--optimizer")) {
            if (!has_value) return cli_usage_error("info", "%s needs a value", a);
            const char *v = argv[++i];
            if (!strcmp(a, "--precision")) {
                if (cli_parse_precision(v, &po.bf16)) return cli_usage_error("info", "--precision fp32|bf16, not '%s'", v);
            } else if (!strcmp(a, "--optimizer")) {
                if (!strcmp(v, "sgd")) po.optim_states = 1;
                else if (!strcmp(v, "adam") || !strcmp(v, "adamw")) po.optim_states = 2;
                else return cli_usage_error("info", "--optimizer sgd|adam|adamw, not '%s'", v);
                po.optim = v;
            } else if (!strcmp(a, "--arch")) arch = v;
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
    if (file) return info_file(file, img, batch, summary, &po);

    models_family family;
    if (models_arch_family(arch, &family)) return cli_usage_error("info", "%s", ferc_last_error());
    if (!img) img = DEFAULT_IMG;
    nn_graph *g = NULL;
    if (models_create(&g, arch, classes)) return cli_fail(arch);
    int ret = CLI_OK;
    if (po.json) {
        ret = print_plans(g, arch, img, batch, &po);
        nn_graph_destroy(g);
        return ret;
    }
    if (!summary) {
        if (nn_graph_infer_shapes(g, 1, 3, img, img)) ret = cli_fail(arch);
        else print_layers(g);
    }
    if (ret == CLI_OK) ret = print_totals(g, arch, img, batch);
    if (ret == CLI_OK) ret = print_plans(g, arch, img, batch, &po);
    nn_graph_destroy(g);
    return ret;
}
