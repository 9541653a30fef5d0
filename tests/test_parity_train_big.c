/* Training parity on a full torchvision network: logits, loss, every gradient and the
 * running statistics of one training step, and the parameters after 3 SGD steps, against a
 * float64 PyTorch reference (tools/gen_train_parity.py). Some gradients of a deep stack of
 * training-mode batch norms are ill-conditioned: PyTorch's own float32 result is off by up to
 * 1e-2 there, so each tensor must be within max(1e-3, 4 x PyTorch's float32 error) of the
 * reference.
 *
 * ReLU flips: among the ~10^6 pre-activations of a forward pass a few lie within float32
 * rounding of zero, and a float32 forward pass (ferc's or PyTorch's) puts some of them on the
 * other side of the kink than float64 does. The gradient upstream of such a ReLU then differs
 * by far more than rounding (densenet121 at 48x48: one flipped element of denselayer5.relu2
 * moves the gradients of block 1 by up to 5e-2; PyTorch's float32 run flips one in
 * denselayer3.relu2 instead, with errors up to 5e-2 upstream of it). The test finds ferc's
 * flips from the reference's ReLU outputs ("y.*"), requires each to be a true ambiguity (both
 * values within 1e-4 of the tensor's scale from zero) and excuses a gradient beyond tolerance
 * only when its layer lies before a flipped ReLU.
 *
 * The fixture is large, so the test runs only when FERC_BIG_FIXTURES names the folder holding
 * <arch>_train.safetensors. */

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "models/models.h"
#include "nn/nn.h"
#include "optim/optim.h"
#include "testutil.h"

/* PyTorch's float32 relative error for this tensor, from the fixture (0 when absent). */
static double torch32_err(const st_file *f, const char *key)
{
    char k[300];
    snprintf(k, sizeof k, "e32.%s", key);
    const st_tensor *t = st_find(f, k);
    float v = 0;
    if (t && t->dtype == ST_F32) memcpy(&v, t->data, 4);
    return v;
}

/* The node a parameter belongs to. */
static int node_of_param(const nn_graph *g, int param)
{
    for (int i = 0; i < g->nnodes; i++)
        if (param >= g->nodes[i].param_first && param < g->nodes[i].param_first + g->nodes[i].param_count) return i;
    return -1;
}

/* ReLU outputs of ferc's training forward pass on the other side of zero than the float64
 * reference's. Returns the highest node id with a flip (-1: none); *nflips counts them. */
static int relu_flips(nn_exec *ex, const nn_graph *g, const st_file *f, int *nflips)
{
    int last = -1, checked = 0;
    *nflips = 0;
    for (int i = 0; i < g->nnodes; i++) {
        char key[300];
        snprintf(key, sizeof key, "y.%s", g->nodes[i].name);
        const st_tensor *t = g->nodes[i].op == NN_OP_RELU ? st_find(f, key) : NULL;
        if (!t) continue;
        size_t n = t->nbytes / 4;
        float *mine = malloc(n * sizeof(float));
        CHECK_OK(nn_exec_node_output(ex, i, mine, n));
        const float *want = (const float *)t->data;
        float scale = 0;
        for (size_t j = 0; j < n; j++) scale = fmaxf(scale, want[j]);
        for (size_t j = 0; j < n; j++)
            if ((want[j] > 0) != (mine[j] > 0)) {
                (*nflips)++;
                last = i;
                printf("  relu flip: %s element %zu: float64 %.3g, ferc %.3g (scale %.3g)\n", g->nodes[i].name, j,
                       (double)want[j], (double)mine[j], (double)scale);
                CHECK(fmaxf(want[j], mine[j]) <= 1e-4f * scale, "flip of %s[%zu] is not near zero", g->nodes[i].name, j);
            }
        checked++;
        free(mine);
    }
    printf("  %d ReLU outputs compared with float64's, %d flipped elements\n", checked, *nflips);
    return last;
}

static void run_arch(const char *dir, const char *arch)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s_train.safetensors", dir, arch);
    if (!file_exists(path)) {
        printf("%s: no fixture (%s)\n", arch, path);
        return;
    }
    st_file f;
    CHECK_OK(st_read(&f, path));
    nn_graph *g = NULL;
    CHECK_OK(models_create(&g, arch, 6));
    if (!g) return;
    fx_load_params(g, &f, "p.");
    const st_tensor *xt = st_find(&f, "x");
    int n = (int)xt->shape[0], s = (int)xt->shape[2];
    int labels[64];
    memcpy(labels, st_find(&f, "labels")->data, sizeof(int) * (size_t)n);
    const float *x = fx_f32(&f, "x", 0);
    nn_exec *ex = NULL;
    CHECK_OK(nn_exec_create(&ex, g, NULL, n, 3, s, s, NN_EXEC_TRAINING | NN_EXEC_NO_SHARING)); /* reads any node back */
    float logits[64 * 6], d[64 * 6], loss;
    CHECK_OK(nn_exec_forward(ex, x, true, logits));
    CHECK_OK(nn_softmax_cross_entropy(logits, labels, n, 6, 0, NULL, &loss, d, NULL));
    CHECK_OK(nn_exec_backward(ex, d));
    printf("%s at %dx%d, batch %d\n", arch, s, s, n);
    check_close("logits", logits, fx_f32(&f, "logits", (size_t)n * 6), (size_t)n * 6, 1e-4);
    check_close("loss", &loss, fx_f32(&f, "loss", 1), 1, 1e-5);
    double wg = 0, wb = 0, wg_ratio = 0;
    const char *wgn = "";
    int over = 0, excused = 0, nflips = 0;
    const int last_flip = relu_flips(ex, g, &f, &nflips);
    CHECK(nflips <= 10, "%d ReLU flips: more than rounding explains", nflips);
    char key[256];
    for (int i = 0; i < g->nparams; i++) {
        const nn_param *p = &g->param_table[i];
        if (p->kind == NN_BUFFER_NUM_BATCHES) continue;
        bool tr = nn_param_trainable_kind(p->kind);
        snprintf(key, sizeof key, "%s%s", tr ? "g." : "b.", p->name);
        const float *want = fx_f32(&f, key, p->count);
        if (!want) continue;
        double e = max_rel_err(tr ? g->grads + p->offset : nn_param_data(g, p), want, p->count, 1e-6);
        double t32 = tr ? torch32_err(&f, key) : 0;
        if (tr && e > fmax(1e-3, 4 * t32)) {
            if (node_of_param(g, i) < last_flip)
                excused++, printf("  %s: %.3e (torch float32 %.3e): upstream of a ReLU flip\n", key, e, t32);
            else
                over++, fprintf(stderr, "  %s: %.3e (torch float32 %.3e)\n", key, e, t32);
        }
        if (tr && e > wg) wg = e, wgn = p->name;
        if (tr && t32 > 0 && e / t32 > wg_ratio) wg_ratio = e / t32;
        if (getenv("FERC_VERBOSE") && e > 1e-4) printf("    %s %.3e (torch float32 %.3e)\n", key, e, t32);
        if (!tr && e > wb) wb = e;
    }
    printf("  %-48s max rel err %.3e [%s]; worst ratio to torch float32's own error %.2f; %d beyond it "
           "upstream of a ReLU flip\n",
           "every parameter gradient vs float64", wg, wgn, wg_ratio, excused);
    printf("  %-48s max rel err %.3e (tol 1e-04)\n", "running statistics", wb);
    CHECK(over == 0, "%d gradients beyond max(1e-3, 4 x torch float32 error)", over);
    CHECK(wb <= 1e-4);
    /* 3 SGD steps on the same batch; the first uses the gradients above. */
    optim_range *r = calloc((size_t)g->nparams, sizeof *r);
    int nr = 0;
    for (int i = 0; i < g->nparams; i++)
        if (nn_param_trainable_kind(g->param_table[i].kind))
            r[nr++] = (optim_range){g->param_table[i].name, g->param_table[i].offset, g->param_table[i].count, 0, false};
    optim_config oc = optim_config_default(OPTIM_SGD);
    oc.momentum = 0.9;
    oc.weight_decay = 5e-4;
    optim *o = NULL;
    CHECK_OK(optim_create(&o, &oc, NULL, 0, r, nr, g->n_params));
    for (int k = 0; k < 3 && o; k++) {
        if (k > 0) {
            CHECK_OK(nn_exec_forward(ex, x, true, logits));
            CHECK_OK(nn_softmax_cross_entropy(logits, labels, n, 6, 0, NULL, &loss, d, NULL));
            CHECK_OK(nn_exec_backward(ex, d));
            if (k >= 1 && getenv("FERC_VERBOSE"))
                for (int i = 0; i < g->nparams; i++) {
                    const nn_param *p = &g->param_table[i];
                    snprintf(key, sizeof key, "s1.grad%d.%s", k + 1, p->name);
                    const st_tensor *t = st_find(&f, key);
                    if (!t) continue;
                    double e = max_rel_err(g->grads + p->offset, (const float *)t->data, p->count, 1e-6);
                    if (e > 1e-4) printf("    step %d gradient %s %.3e\n", k + 1, p->name, e);
                    if (e > 1e-4 && getenv("FERC_DUMP")) {
                        FILE *df = fopen(getenv("FERC_DUMP"), "wb");
                        if (df) {
                            fwrite(g->grads + p->offset, 4, p->count, df);
                            fwrite(t->data, 4, p->count, df);
                            fclose(df);
                        }
                    }
                }
        }
        CHECK_OK(optim_step(o, g->params, g->grads, 0.01));
        if (k == 1 && getenv("FERC_VERBOSE")) {
            int pi = nn_find_param(g, "conv1.weight");
            const st_tensor *t = st_find(&f, "s1.after2.conv1.weight");
            if (pi >= 0 && t)
                printf("  after step 2: conv1.weight rel err %.3e\n",
                       max_rel_err(g->params + g->param_table[pi].offset, (const float *)t->data, g->param_table[pi].count, 1e-3));
        }
        if (k == 0 && getenv("FERC_VERBOSE")) {
            double w1 = 0;
            const char *wn = "";
            for (int i = 0; i < g->nparams; i++) {
                const nn_param *p = &g->param_table[i];
                if (p->kind == NN_BUFFER_NUM_BATCHES) continue;
                snprintf(key, sizeof key, "s1.%s", p->name);
                const st_tensor *t = st_find(&f, key);
                if (!t) continue;
                double e = max_rel_err(nn_param_data(g, p), (const float *)t->data, p->count, 1e-3);
                if (e > w1) w1 = e, wn = p->name;
            }
            printf("  after step 1: max rel err %.3e [%s]\n", w1, wn);
        }
    }
    double ws = 0, ws32 = 0;
    over = 0;
    for (int i = 0; i < g->nparams; i++) {
        const nn_param *p = &g->param_table[i];
        if (p->kind == NN_BUFFER_NUM_BATCHES) continue;
        snprintf(key, sizeof key, "s.%s", p->name);
        const float *want = fx_f32(&f, key, p->count);
        if (want) {
            double e = max_rel_err(nn_param_data(g, p), want, p->count, 1e-3), t32 = torch32_err(&f, key);
            if (e > fmax(1e-3, 4 * t32)) over++, fprintf(stderr, "  %s: %.3e (torch float32 %.3e)\n", key, e, t32);
            if (e > ws) ws = e;
            if (t32 > ws32) ws32 = t32;
            if (getenv("FERC_VERBOSE") && e > 1e-4) printf("    %s %.3e (torch float32 %.3e)\n", key, e, t32);
        }
    }
    printf("  %-48s max rel err %.3e (torch float32: %.3e)\n", "parameters after 3 SGD steps vs float64", ws, ws32);
    CHECK(over == 0, "%d tensors beyond max(1e-3, 4 x torch float32 error) after 3 steps", over);
    optim_destroy(o);
    free(r);
    nn_exec_destroy(ex);
    nn_graph_destroy(g);
    st_close(&f);
}

int main(void)
{
    const char *dir = getenv("FERC_BIG_FIXTURES");
    if (!dir || !*dir) return test_skip("FERC_BIG_FIXTURES is not set (see tools/gen_train_parity.py)");
    run_arch(dir, "resnet18");
    run_arch(dir, "densenet121");
    return test_finish("test_parity_train_big");
}
