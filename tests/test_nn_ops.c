/* Per-op parity with PyTorch: each case builds the same small graph as
 * tools/gen_nn_fixtures.py, loads torch's parameters, runs one training forward and backward
 * pass, and compares the output (rel 1e-4), the input gradient and every parameter gradient
 * (rel 1e-3) and the running statistics after the pass (rel 1e-4).
 *
 * Then the same in bf16 (NN_EXEC_BF16) against the same float32 PyTorch results, with
 * tolerances from the reduction lengths. A sum of K products of bf16-rounded factors (unit
 * roundoff u = 2^-8) carries an error of about u sqrt(2/3) sqrt(sum (x_i w_i)^2) per output:
 * the size of the output itself when the terms have random signs, so about u relative, and
 * its largest over the outputs grows with log K. The tolerance is u (2 + log2 K) per bf16 op
 * on the longest path (max relative error for outputs, relative L2 error for gradients),
 * with K the op's reduction length: Cin k^2 / groups for a convolution's output, Cout k^2 /
 * groups for its input gradient, N Ho Wo for its weight gradient and for batch norm's
 * statistics. Where a ReLU or max pooling routes gradients, a value within rounding of its
 * threshold can switch sides between bf16 and float32: a fraction of about 2u of the
 * elements then carries a different gradient, which adds sqrt(2u) to the L2 tolerance. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "nn/nn.h"
#include "testutil.h"

typedef int (*build_fn)(nn_graph *g);

static int b_conv_first(nn_graph *g)
{
    int x = nn_input(g, 3);
    nn_conv2d(g, "c", x, 16, 3, 1, 1, true);
    return nn_graph_finalize(g);
}

static int b_conv_s2(nn_graph *g)
{
    int x = nn_input(g, 3);
    x = nn_conv2d(g, "c0", x, 16, 3, 1, 1, true);
    nn_conv2d(g, "c", x, 32, 3, 2, 1, false);
    return nn_graph_finalize(g);
}

static int b_conv_1x1_s2(nn_graph *g)
{
    int x = nn_input(g, 3);
    x = nn_conv2d(g, "c0", x, 16, 3, 1, 1, true);
    nn_conv2d(g, "c", x, 32, 1, 2, 0, false);
    return nn_graph_finalize(g);
}

static int b_stem(nn_graph *g)
{
    int x = nn_input(g, 3);
    x = nn_conv2d(g, "c", x, 16, 7, 2, 3, false);
    x = nn_batchnorm2d(g, "bn", x);
    x = nn_relu(g, x);
    nn_maxpool2d(g, x, 3, 2, 1);
    return nn_graph_finalize(g);
}

static int b_bn_relu(nn_graph *g)
{
    int x = nn_input(g, 3);
    x = nn_conv2d(g, "c0", x, 16, 3, 1, 1, true);
    x = nn_batchnorm2d(g, "bn", x);
    nn_relu(g, x);
    return nn_graph_finalize(g);
}

static int b_bn(nn_graph *g)
{
    int x = nn_input(g, 3);
    x = nn_conv2d(g, "c0", x, 16, 3, 1, 1, true);
    nn_batchnorm2d(g, "bn", x);
    return nn_graph_finalize(g);
}

static int b_pools(nn_graph *g)
{
    int x = nn_input(g, 3);
    x = nn_conv2d(g, "c0", x, 16, 3, 1, 1, true);
    x = nn_maxpool2d(g, x, 3, 2, 1);
    x = nn_avgpool2d(g, x, 2, 2, 0);
    x = nn_global_avgpool(g, x);
    x = nn_flatten(g, x);
    nn_linear(g, "fc", x, 6);
    return nn_graph_finalize(g);
}

static int b_concat_add(nn_graph *g)
{
    int x = nn_input(g, 3);
    int a = nn_conv2d(g, "c0", x, 16, 3, 1, 1, true);
    int b = nn_conv2d(g, "c1", a, 16, 3, 1, 1, false);
    int c = nn_conv2d(g, "c2", a, 32, 1, 1, 0, false);
    int cat[3] = {a, b, c};
    int d = nn_concat(g, cat, 3);
    d = nn_conv2d(g, "c3", d, 16, 1, 1, 0, false);
    nn_relu(g, nn_add(g, d, b));
    return nn_graph_finalize(g);
}

static int b_linear(nn_graph *g)
{
    int x = nn_input(g, 20);
    x = nn_flatten(g, x);
    nn_linear(g, "fc", x, 6);
    return nn_graph_finalize(g);
}

/* BlazeFace's ops: SAME 5x5/2 conv, depthwise SAME 3x3/2, 1x1, a zero-channel-padded
 * max-pool shortcut (tools/gen_nn_fixtures.py BlazeBlock) */
static int b_blaze_block(nn_graph *g)
{
    int x = nn_input(g, 3);
    int y1 = nn_relu(g, nn_conv2d_grouped(g, "c0", x, 8, 5, 2, NN_PAD_SAME, 1, true));
    int y2 = nn_conv2d_grouped(g, "dw", y1, 8, 3, 2, NN_PAD_SAME, 8, false);
    int y3 = nn_conv2d(g, "pw", y2, 16, 1, 1, 0, true);
    int sc = nn_channel_pad(g, nn_maxpool2d(g, y1, 2, 2, 0), 8);
    nn_relu(g, nn_add(g, y3, sc));
    return nn_graph_finalize(g);
}

static int b_conv_groups(nn_graph *g)
{
    int x = nn_input(g, 8);
    nn_conv2d_grouped(g, "c", x, 12, 3, 1, 1, 4, true);
    return nn_graph_finalize(g);
}

typedef struct op_case {
    const char *name;
    build_fn build;
    bool train;
    const char *freeze;   /* parameter-name prefix frozen for this case, or NULL */
} op_case;

static const op_case cases[] = {
    {"conv_first", b_conv_first, true, NULL},  {"conv_s2", b_conv_s2, true, NULL},
    {"conv_1x1_s2", b_conv_1x1_s2, true, NULL}, {"stem", b_stem, true, NULL},
    {"bn_frozen", b_bn_relu, true, "bn."},     {"bn_eval", b_bn, false, NULL},
    {"pools", b_pools, true, NULL},            {"concat_add", b_concat_add, true, NULL},
    {"linear", b_linear, true, NULL},          {"blaze_block", b_blaze_block, true, NULL},
    {"conv_groups", b_conv_groups, true, NULL},
};

static size_t numel_of(const st_file *f, const char *name)
{
    const st_tensor *t = st_find(f, name);
    return t ? st_numel(t) : 0;
}

/* Reduction lengths of the graph's bf16 ops (see the top) and the count of such ops on the
 * longest path; weight gradients use the largest N Ho Wo. */
typedef struct reductions {
    double fwd, dx, dw;
    int depth;
    bool switches; /* a ReLU or max pooling routes gradients */
} reductions;

static reductions reductions_of(const nn_graph *g)
{
    reductions r = {1, 1, 1, 0, false};
    int *depth = calloc((size_t)g->nnodes, sizeof *depth);
    for (int i = 0; i < g->nnodes; i++) {
        const nn_node *nd = &g->nodes[i];
        int d = 0;
        for (int j = 0; j < nd->ninputs; j++) d = depth[nd->inputs[j]] > d ? depth[nd->inputs[j]] : d;
        bool counts = nd->op == NN_OP_CONV2D || nd->op == NN_OP_BATCHNORM2D || nd->op == NN_OP_ADD ||
                      nd->op == NN_OP_AVGPOOL2D || nd->op == NN_OP_GLOBAL_AVGPOOL;
        depth[i] = d + counts;
        if (depth[i] > r.depth) r.depth = depth[i];
        if (nd->op == NN_OP_CONV2D) {
            const nn_node *in = &g->nodes[nd->inputs[0]];
            int G = nd->attr.conv.groups > 1 ? nd->attr.conv.groups : 1;
            double k2 = (double)nd->attr.conv.kernel * nd->attr.conv.kernel;
            r.fwd = fmax(r.fwd, in->channels / G * k2);
            r.dx = fmax(r.dx, nd->channels / G * k2);
        }
        if (nd->op == NN_OP_CONV2D || nd->op == NN_OP_BATCHNORM2D) r.dw = fmax(r.dw, (double)nd->n * nd->h * nd->w);
        r.switches |= nd->op == NN_OP_RELU || nd->op == NN_OP_MAXPOOL2D;
    }
    free(depth);
    return r;
}

static double bf16_tol(double k, int depth) { return ldexp(1.0, -8) * (2 + log2(k)) * (depth > 0 ? depth : 1); }

static void run_case(const op_case *c, bool bf16)
{
    char path[256], label[160], key[200];
    snprintf(path, sizeof path, "tests/fixtures/nn/%s.safetensors", c->name);
    printf("%s%s\n", c->name, bf16 ? " (bf16)" : "");
    st_file f;
    int rc = st_read(&f, path);
    CHECK_OK(rc);
    if (rc) return;
    nn_graph *g = nn_graph_create();
    CHECK_OK(c->build(g));
    fx_load_params(g, &f, "p.");
    if (c->freeze) nn_freeze_prefix(g, c->freeze, true);

    const st_tensor *xt = st_find(&f, "x");
    int n = (int)xt->shape[0], ch = (int)xt->shape[1];
    int h = xt->ndim == 4 ? (int)xt->shape[2] : 1, w = xt->ndim == 4 ? (int)xt->shape[3] : 1;
    size_t ny = numel_of(&f, "y"), nx = st_numel(xt);
    nn_exec *ex = NULL;
    unsigned flags = (c->train ? NN_EXEC_TRAINING | NN_EXEC_INPUT_GRAD : 0) | (bf16 ? NN_EXEC_BF16 : 0);
    CHECK_OK(nn_exec_create(&ex, g, NULL, n, ch, h, w, flags));
    if (!ex) goto done;
    reductions red = reductions_of(g);
    double tol_y = bf16 ? bf16_tol(red.fwd, red.depth) : 1e-4, tol_dx = bf16 ? bf16_tol(red.dx, red.depth) : 1e-3;
    double tol_dw = bf16 ? bf16_tol(red.dw, red.depth) : 1e-3, tol_run = bf16 ? bf16_tol(red.dw, red.depth) : 1e-4;
    double tol_switch = bf16 && red.switches ? sqrt(ldexp(2.0, -8)) : 0;
    float *y = calloc(ny, sizeof *y), *dx = calloc(nx, sizeof *dx);
    CHECK_OK(nn_exec_forward(ex, fx_f32(&f, "x", nx), c->train, NULL));
    /* The output node's own layout, read back as NCHW: works for 4D and (N, K) outputs. */
    CHECK_OK(nn_exec_node_output(ex, g->output, y, ny));
    snprintf(label, sizeof label, "%s forward", c->name);
    check_close(label, y, fx_f32(&f, "y", ny), ny, tol_y);
    if (bf16 && red.depth > 0) /* the plan really rounds to bf16 (float32 would be ~1e-7 off) */
        CHECK(max_rel_err(y, fx_f32(&f, "y", ny), ny, 1e-6) > 1e-4, "%s: bf16 output equals float32's", c->name);
    if (c->train) {
        CHECK_OK(nn_exec_backward(ex, fx_f32(&f, "dy", ny)));
        CHECK_OK(nn_exec_node_grad(ex, 0, dx, nx));
        snprintf(label, sizeof label, "%s input gradient", c->name);
        if (bf16) check_close_l2(label, dx, fx_f32(&f, "dx", nx), nx, tol_dx + tol_switch);
        else check_close(label, dx, fx_f32(&f, "dx", nx), nx, tol_dx);
        for (int i = 0; i < g->nparams; i++) {
            const nn_param *p = &g->param_table[i];
            if (!nn_param_trainable_kind(p->kind)) {
                if (p->kind == NN_BUFFER_NUM_BATCHES) continue;
                snprintf(key, sizeof key, "b.%s", p->name);
                snprintf(label, sizeof label, "%s %s after", c->name, p->name);
                check_close(label, nn_param_data(g, p), fx_f32(&f, key, p->count), p->count, tol_run);
                continue;
            }
            snprintf(key, sizeof key, "g.%s", p->name);
            if (p->frozen) {
                CHECK(st_find(&f, key) == NULL, "torch computed a gradient for frozen %s", p->name);
                bool zero = true;
                for (size_t j = 0; j < p->count; j++) zero = zero && g->grads[p->offset + j] == 0.0f;
                CHECK(zero, "frozen %s got a gradient", p->name);
                continue;
            }
            snprintf(label, sizeof label, "%s grad %s", c->name, p->name);
            if (bf16) check_close_l2(label, g->grads + p->offset, fx_f32(&f, key, p->count), p->count, tol_dw + tol_switch);
            else check_close(label, g->grads + p->offset, fx_f32(&f, key, p->count), p->count, tol_dw);
        }
    }
    free(y);
    free(dx);
done:
    nn_exec_destroy(ex);
    nn_graph_destroy(g);
    st_close(&f);
}

int main(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i], false);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i], true);
    return test_finish("test_nn_ops");
}
