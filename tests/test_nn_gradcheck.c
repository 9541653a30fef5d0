/* Finite-difference gradient checks, independent of PyTorch: for each op, a small graph
 * (usually a convolution in front so that the op runs in the blocked layout it sees in real
 * networks), a scalar loss L = sum(y * r) for a fixed random r, and central differences
 * (L(p + e) - L(p - e)) / 2e on sampled coordinates of the input and of every parameter,
 * compared with the backward pass. float32 differences are noisy, so the tolerance is
 * relative to the gradient's scale, and one sampled coordinate per tensor may sit on a kink
 * (ReLU, max pooling) and is forgiven. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "nn/nn.h"
#include "testutil.h"

typedef int (*build_fn)(nn_graph *g);

static int front(nn_graph *g, int cin, int cout)
{
    int x = nn_input(g, cin);
    return nn_conv2d(g, "c0", x, cout, 3, 1, 1, true);
}

static int g_conv(nn_graph *g) { nn_conv2d(g, "c", front(g, 3, 16), 32, 3, 2, 1, true); return nn_graph_finalize(g); }
static int g_conv_odd(nn_graph *g) { nn_conv2d(g, "c", front(g, 3, 5), 7, 3, 1, 1, false); return nn_graph_finalize(g); }
static int g_bn(nn_graph *g) { nn_batchnorm2d(g, "bn", front(g, 3, 16)); return nn_graph_finalize(g); }
static int g_relu(nn_graph *g) { nn_relu(g, front(g, 3, 16)); return nn_graph_finalize(g); }
static int g_maxpool(nn_graph *g) { nn_maxpool2d(g, front(g, 3, 16), 3, 2, 1); return nn_graph_finalize(g); }
static int g_avgpool(nn_graph *g) { nn_avgpool2d(g, front(g, 3, 16), 2, 2, 0); return nn_graph_finalize(g); }
static int g_gap_linear(nn_graph *g)
{
    int x = nn_flatten(g, nn_global_avgpool(g, front(g, 3, 16)));
    nn_linear(g, "fc", x, 5);
    return nn_graph_finalize(g);
}
static int g_concat(nn_graph *g)
{
    int a = front(g, 3, 16);
    int b = nn_conv2d(g, "c1", a, 32, 1, 1, 0, false);
    int xs[3] = {b, a, b};
    nn_concat(g, xs, 3);
    return nn_graph_finalize(g);
}
static int g_add(nn_graph *g)
{
    int a = front(g, 3, 16);
    int b = nn_conv2d(g, "c1", a, 16, 3, 1, 1, false);
    nn_add(g, nn_add(g, a, b), a);
    return nn_graph_finalize(g);
}
static int g_dropout(nn_graph *g)
{
    int x = nn_flatten(g, nn_global_avgpool(g, front(g, 3, 16)));
    x = nn_dropout(g, x, 0.3f);
    nn_linear(g, "fc", x, 4);
    return nn_graph_finalize(g);
}

static int g_dwconv_same(nn_graph *g)
{
    nn_conv2d_grouped(g, "dw", front(g, 3, 8), 8, 3, 2, NN_PAD_SAME, 8, false);
    return nn_graph_finalize(g);
}
static int g_conv_same5(nn_graph *g)
{
    nn_conv2d_grouped(g, "c", front(g, 3, 4), 6, 5, 2, NN_PAD_SAME, 2, true);
    return nn_graph_finalize(g);
}
static int g_chpad(nn_graph *g)
{
    int a = front(g, 3, 8);
    nn_add(g, nn_conv2d(g, "c1", a, 12, 1, 1, 0, true), nn_channel_pad(g, a, 4)); /* a has two consumers */
    return nn_graph_finalize(g);
}

typedef struct gc_case { const char *name; build_fn build; } gc_case;

static const gc_case cases[] = {
    {"conv2d", g_conv},          {"conv2d (odd channels)", g_conv_odd}, {"batchnorm2d (train)", g_bn},
    {"relu", g_relu},            {"maxpool2d", g_maxpool},              {"avgpool2d", g_avgpool},
    {"global_avgpool+linear", g_gap_linear}, {"concat", g_concat},     {"add", g_add},
    {"dropout", g_dropout},      {"depthwise conv, SAME, stride 2", g_dwconv_same},
    {"grouped 5x5 conv, SAME, stride 2", g_conv_same5}, {"channel pad", g_chpad},
};

static double loss_at(nn_exec *ex, nn_graph *g, const float *x, const float *r, float *y, size_t ny)
{
    nn_exec_set_seed(ex, 11, 0); /* the same dropout mask at every evaluation */
    if (nn_exec_forward(ex, x, true, NULL) || nn_exec_node_output(ex, g->output, y, ny)) return NAN;
    double s = 0;
    for (size_t i = 0; i < ny; i++) s += (double)y[i] * r[i];
    return s;
}

/* Checks `samples` coordinates of v (length n) whose analytic gradient is `an`. */
static double check_tensor(const char *what, nn_exec *ex, nn_graph *g, float *v, const float *an, size_t n,
                           const float *x, const float *r, float *y, size_t ny, rng *rg)
{
    double scale = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(an[i]));
    int samples = n < 12 ? (int)n : 12, bad = 0;
    double worst = 0;
    for (int s = 0; s < samples; s++) {
        size_t i = n < 12 ? (size_t)s : rng_below(rg, (uint32_t)n);
        float keep = v[i];
        const float eps = 1e-2f;
        v[i] = keep + eps;
        double lp = loss_at(ex, g, x, r, y, ny);
        v[i] = keep - eps;
        double lm = loss_at(ex, g, x, r, y, ny);
        v[i] = keep;
        double fd = (lp - lm) / (2.0 * eps);
        double err = fabs(fd - an[i]) / fmax(scale, 1e-3);
        if (err > 2e-2) bad++;
        else worst = fmax(worst, err);
    }
    test_checks++;
    bool ok = bad <= 1;
    if (!ok) test_failures++;
    printf("    %-36s max err %.2e over %d samples, %d off %s\n", what, worst, samples, bad, ok ? "ok" : "FAIL");
    return worst;
}

static void run(const gc_case *c)
{
    printf("%s\n", c->name);
    nn_graph *g = nn_graph_create();
    CHECK_OK(c->build(g));
    rng rg;
    rng_seed(&rg, 42);
    for (size_t i = 0; i < g->n_params; i++) g->params[i] = (float)(0.3 * rng_normal(&rg));
    const int n = 3, ch = 3, h = 7, w = 7;
    size_t nx = (size_t)n * ch * h * w;
    nn_exec *ex = NULL;
    CHECK_OK(nn_exec_create(&ex, g, NULL, n, ch, h, w, NN_EXEC_TRAINING | NN_EXEC_INPUT_GRAD));
    if (!ex) {
        nn_graph_destroy(g);
        return;
    }
    const nn_node *o = &g->nodes[g->output];
    size_t ny = (size_t)o->n * o->channels * o->h * o->w;
    float *x = malloc(nx * sizeof *x), *dx = malloc(nx * sizeof *dx), *r = malloc(ny * sizeof *r),
          *y = malloc(ny * sizeof *y), *grads = malloc(g->n_params * sizeof *grads);
    for (size_t i = 0; i < nx; i++) x[i] = (float)rng_normal(&rg);
    for (size_t i = 0; i < ny; i++) r[i] = (float)rng_normal(&rg);
    /* Analytic gradients. */
    loss_at(ex, g, x, r, y, ny);
    CHECK_OK(nn_exec_backward(ex, r));
    CHECK_OK(nn_exec_node_grad(ex, 0, dx, nx));
    memcpy(grads, g->grads, g->n_params * sizeof *grads);
    check_tensor("input", ex, g, x, dx, nx, x, r, y, ny, &rg);
    for (int i = 0; i < g->nparams; i++) {
        const nn_param *p = &g->param_table[i];
        if (!nn_param_trainable_kind(p->kind)) continue;
        check_tensor(p->name, ex, g, g->params + p->offset, grads + p->offset, p->count, x, r, y, ny, &rg);
    }
    free(x);
    free(dx);
    free(r);
    free(y);
    free(grads);
    nn_exec_destroy(ex);
    nn_graph_destroy(g);
}

/* The loss itself: d/dz of softmax cross-entropy with smoothing and weights. */
static void loss_gradcheck(void)
{
    printf("softmax_cross_entropy\n");
    rng rg;
    rng_seed(&rg, 5);
    float z[4 * 5], d[4 * 5], w[5] = {1.0f, 0.5f, 2.0f, 1.5f, 0.7f};
    int labels[4] = {0, 3, 4, 1};
    for (int i = 0; i < 20; i++) z[i] = (float)rng_normal(&rg);
    float loss;
    CHECK_OK(nn_softmax_cross_entropy(z, labels, 4, 5, 0.1f, w, &loss, d, NULL));
    double worst = 0;
    for (int i = 0; i < 20; i++) {
        double keep = z[i], lp, lm;
        float l;
        z[i] = (float)(keep + 1e-2);
        nn_softmax_cross_entropy(z, labels, 4, 5, 0.1f, w, &l, NULL, NULL);
        lp = l;
        z[i] = (float)(keep - 1e-2);
        nn_softmax_cross_entropy(z, labels, 4, 5, 0.1f, w, &l, NULL, NULL);
        lm = l;
        z[i] = (float)keep;
        worst = fmax(worst, fabs((lp - lm) / 2e-2 - d[i]));
    }
    CHECK(worst < 1e-3, "loss gradient off by %.2e", worst);
    printf("    %-36s max abs err %.2e\n", "dlogits", worst);
}

/* Soft-target cross-entropy (knowledge distillation): d/dz by central differences. */
static void soft_loss_gradcheck(void)
{
    printf("soft_cross_entropy\n");
    rng rg;
    rng_seed(&rg, 6);
    float z[4 * 5], q[4 * 5], d[4 * 5];
    for (int i = 0; i < 20; i++) z[i] = (float)rng_normal(&rg), q[i] = (float)rng_uniform(&rg);
    for (int i = 0; i < 3; i++) { /* three rows are distributions, the last one is not */
        float s = 0;
        for (int c = 0; c < 5; c++) s += q[i * 5 + c];
        for (int c = 0; c < 5; c++) q[i * 5 + c] /= s;
    }
    float loss;
    CHECK_OK(nn_soft_cross_entropy(z, q, 4, 5, &loss, d));
    double worst = 0;
    for (int i = 0; i < 20; i++) {
        double keep = z[i], lp, lm;
        float l;
        z[i] = (float)(keep + 1e-2);
        nn_soft_cross_entropy(z, q, 4, 5, &l, NULL);
        lp = l;
        z[i] = (float)(keep - 1e-2);
        nn_soft_cross_entropy(z, q, 4, 5, &l, NULL);
        lm = l;
        z[i] = (float)keep;
        worst = fmax(worst, fabs((lp - lm) / 2e-2 - d[i]));
    }
    CHECK(worst < 1e-3, "soft loss gradient off by %.2e", worst);
    printf("    %-36s max abs err %.2e\n", "dlogits", worst);
}

int main(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run(&cases[i]);
    loss_gradcheck();
    soft_loss_gradcheck();
    return test_finish("test_nn_gradcheck");
}
