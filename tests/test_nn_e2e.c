/* End-to-end parity with PyTorch on two tiny networks built from the same blocks as
 * torchvision's ResNet (a BasicBlock, and a Bottleneck with a downsample path) and DenseNet
 * (two dense layers and a transition): logits, loss, every parameter gradient and the
 * running statistics after one training step; then the parameters after 5 steps of
 * SGD+momentum+nesterov, Adam (L2) + OneCycle + clipping by value, AdamW + cosine + clipping
 * by norm, and a run with a frozen prefix (frozen parameters must not move at all). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "nn/nn.h"
#include "optim/optim.h"
#include "testutil.h"

static int basic_block(nn_graph *g, const char *p, int x, int planes)
{
    char n[96];
    snprintf(n, sizeof n, "%s.conv1", p);
    int o = nn_conv2d(g, n, x, planes, 3, 1, 1, false);
    snprintf(n, sizeof n, "%s.bn1", p);
    o = nn_relu(g, nn_batchnorm2d(g, n, o));
    snprintf(n, sizeof n, "%s.conv2", p);
    o = nn_conv2d(g, n, o, planes, 3, 1, 1, false);
    snprintf(n, sizeof n, "%s.bn2", p);
    o = nn_batchnorm2d(g, n, o);
    return nn_relu(g, nn_add(g, o, x));
}

static int bottleneck_ds(nn_graph *g, const char *p, int x, int planes, int stride)
{
    char n[96];
    snprintf(n, sizeof n, "%s.conv1", p);
    int o = nn_conv2d(g, n, x, planes, 1, 1, 0, false);
    snprintf(n, sizeof n, "%s.bn1", p);
    o = nn_relu(g, nn_batchnorm2d(g, n, o));
    snprintf(n, sizeof n, "%s.conv2", p);
    o = nn_conv2d(g, n, o, planes, 3, stride, 1, false);
    snprintf(n, sizeof n, "%s.bn2", p);
    o = nn_relu(g, nn_batchnorm2d(g, n, o));
    snprintf(n, sizeof n, "%s.conv3", p);
    o = nn_conv2d(g, n, o, planes * 4, 1, 1, 0, false);
    snprintf(n, sizeof n, "%s.bn3", p);
    o = nn_batchnorm2d(g, n, o);
    snprintf(n, sizeof n, "%s.downsample.0", p);
    int d = nn_conv2d(g, n, x, planes * 4, 1, stride, 0, false);
    snprintf(n, sizeof n, "%s.downsample.1", p);
    d = nn_batchnorm2d(g, n, d);
    return nn_relu(g, nn_add(g, o, d));
}

static int tiny_resnet(nn_graph *g)
{
    int x = nn_input(g, 3);
    x = nn_conv2d(g, "conv1", x, 16, 3, 1, 1, false);
    x = nn_relu(g, nn_batchnorm2d(g, "bn1", x));
    x = nn_maxpool2d(g, x, 3, 2, 1);
    x = basic_block(g, "layer1.0", x, 16);
    x = bottleneck_ds(g, "layer2.0", x, 8, 2);
    x = nn_flatten(g, nn_global_avgpool(g, x));
    nn_linear(g, "fc", x, 6);
    return nn_graph_finalize(g);
}

static int dense_layer(nn_graph *g, const char *p, int x, int growth, int bn_size)
{
    char n[128];
    snprintf(n, sizeof n, "%s.norm1", p);
    int o = nn_relu(g, nn_batchnorm2d(g, n, x));
    snprintf(n, sizeof n, "%s.conv1", p);
    o = nn_conv2d(g, n, o, bn_size * growth, 1, 1, 0, false);
    snprintf(n, sizeof n, "%s.norm2", p);
    o = nn_relu(g, nn_batchnorm2d(g, n, o));
    snprintf(n, sizeof n, "%s.conv2", p);
    return nn_conv2d(g, n, o, growth, 3, 1, 1, false);
}

static int tiny_densenet(nn_graph *g)
{
    int x = nn_input(g, 3);
    x = nn_conv2d(g, "features.conv0", x, 32, 3, 1, 1, false);
    x = nn_relu(g, nn_batchnorm2d(g, "features.norm0", x));
    x = nn_maxpool2d(g, x, 3, 2, 1);
    int feats[3] = {x};
    feats[1] = dense_layer(g, "features.denseblock1.denselayer1", x, 16, 2);
    int cat = nn_concat(g, feats, 2);
    feats[2] = dense_layer(g, "features.denseblock1.denselayer2", cat, 16, 2);
    x = nn_concat(g, feats, 3);
    x = nn_relu(g, nn_batchnorm2d(g, "features.transition1.norm", x));
    x = nn_conv2d(g, "features.transition1.conv", x, 32, 1, 1, 0, false);
    x = nn_avgpool2d(g, x, 2, 2, 0);
    x = nn_relu(g, nn_batchnorm2d(g, "features.norm5", x));
    x = nn_flatten(g, nn_global_avgpool(g, x));
    nn_linear(g, "classifier", x, 6);
    return nn_graph_finalize(g);
}

typedef struct run_ctx {
    const st_file *f;
    int n, c, h, w, k;
    const float *x;
    int labels[16];
} run_ctx;

/* One training step's forward + loss + backward. Returns the loss. */
static float step_fb(nn_exec *ex, const run_ctx *r, float *logits, float *dlogits)
{
    float loss = NAN;
    CHECK_OK(nn_exec_forward(ex, r->x, true, logits));
    CHECK_OK(nn_softmax_cross_entropy(logits, r->labels, r->n, r->k, 0.0f, NULL, &loss, dlogits, NULL));
    CHECK_OK(nn_exec_backward(ex, dlogits));
    return loss;
}

typedef enum { RUN_SGD, RUN_ADAM, RUN_ADAMW, RUN_FROZEN } run_kind;

static void optimizer_run(int (*build)(nn_graph *), const run_ctx *r, run_kind kind, const char *tag,
                          const char *frozen_csv)
{
    nn_graph *g = nn_graph_create();
    CHECK_OK(build(g));
    fx_load_params(g, r->f, "p.");
    if (kind == RUN_FROZEN) {
        char buf[256];
        snprintf(buf, sizeof buf, "%s", frozen_csv);
        for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
            char pre[128];
            snprintf(pre, sizeof pre, "%s.", tok);
            nn_freeze_prefix(g, pre, true);
        }
    }
    float *before = malloc(g->n_params * sizeof(float));
    memcpy(before, g->params, g->n_params * sizeof(float));
    optim_range *ranges = calloc((size_t)g->nparams, sizeof *ranges);
    int nr = 0;
    for (int i = 0; i < g->nparams; i++) {
        const nn_param *p = &g->param_table[i];
        if (!nn_param_trainable_kind(p->kind)) continue;
        ranges[nr++] = (optim_range){p->name, p->offset, p->count, 0, p->frozen};
    }
    optim_config oc;
    sched s;
    float clip_value = 0, clip_norm = 0;
    switch (kind) {
    case RUN_SGD:
        oc = optim_config_default(OPTIM_SGD);
        oc.momentum = 0.9;
        oc.nesterov = true;
        oc.weight_decay = 1e-3;
        s = sched_constant(0.05);
        break;
    case RUN_ADAM:
        oc = optim_config_default(OPTIM_ADAM);
        oc.weight_decay = 0.01;
        s = sched_onecycle(1e-2, 5);
        clip_value = 0.01f;
        break;
    case RUN_ADAMW:
        oc = optim_config_default(OPTIM_ADAMW);
        oc.weight_decay = 0.05;
        oc.eps = 1e-4; /* see tools/gen_nn_fixtures.py */
        s = sched_cosine(2e-3, 0, 5, 0.0);
        clip_norm = 1.0f;
        break;
    default:
        oc = optim_config_default(OPTIM_SGD);
        oc.momentum = 0.9;
        s = sched_constant(0.05);
        break;
    }
    optim *opt = NULL;
    CHECK_OK(optim_create(&opt, &oc, NULL, 0, ranges, nr, g->n_params));
    nn_exec *ex = NULL;
    CHECK_OK(nn_exec_create(&ex, g, NULL, r->n, r->c, r->h, r->w, NN_EXEC_TRAINING));
    float logits[64], dlogits[64], losses[5];
    char key[200], label[200];
    for (int k = 0; k < 5 && ex && opt; k++) {
        losses[k] = step_fb(ex, r, logits, dlogits);
        if (clip_value > 0) CHECK_OK(optim_clip_grad_value(opt, g->grads, clip_value));
        if (clip_norm > 0) CHECK_OK(optim_clip_grad_norm(opt, g->grads, clip_norm, NULL));
        CHECK_OK(optim_step_sched(opt, g->params, g->grads, &s, k));
    }
    snprintf(key, sizeof key, "s.%s.losses", tag);
    snprintf(label, sizeof label, "%s: losses of 5 steps", tag);
    check_close(label, losses, fx_f32(r->f, key, 5), 5, 1e-4);
    float worst = 0;
    const char *worst_name = "";
    bool frozen_ok = true;
    for (int i = 0; i < g->nparams; i++) {
        const nn_param *p = &g->param_table[i];
        if (p->kind == NN_BUFFER_NUM_BATCHES) continue;
        snprintf(key, sizeof key, "s.%s.%s", tag, p->name);
        const float *want = fx_f32(r->f, key, p->count);
        if (!want) continue;
        double e = max_rel_err(nn_param_data(g, p), want, p->count, 1e-3);
        if (e > worst) {
            worst = (float)e;
            worst_name = p->name;
        }
        if (p->frozen && memcmp(g->params + p->offset, before + p->offset, p->count * sizeof(float)) != 0)
            frozen_ok = false;
    }
    printf("  %-48s max rel err %.3e (tol 1e-04) %s [%s]\n", tag, worst, worst <= 1e-4 ? "ok" : "FAIL", worst_name);
    CHECK(worst <= 1e-4, "%s: parameters after 5 steps differ from torch (%s)", tag, worst_name);
    CHECK(frozen_ok, "%s: a frozen parameter changed", tag);
    nn_exec_destroy(ex);
    optim_destroy(opt);
    free(ranges);
    free(before);
    nn_graph_destroy(g);
}

static void e2e(const char *name, int (*build)(nn_graph *))
{
    char path[256], key[200], label[200];
    snprintf(path, sizeof path, "tests/fixtures/nn/%s.safetensors", name);
    printf("%s\n", name);
    st_file f;
    int rc = st_read(&f, path);
    CHECK_OK(rc);
    if (rc) return;
    nn_graph *g = nn_graph_create();
    CHECK_OK(build(g));
    fx_load_params(g, &f, "p.");
    const st_tensor *xt = st_find(&f, "x"), *lt = st_find(&f, "labels");
    run_ctx r = {.f = &f, .n = (int)xt->shape[0], .c = (int)xt->shape[1], .h = (int)xt->shape[2],
                 .w = (int)xt->shape[3], .k = 6};
    r.x = fx_f32(&f, "x", 0);
    for (int i = 0; i < r.n; i++) memcpy(&r.labels[i], lt->data + 4 * i, 4);
    nn_exec *ex = NULL;
    CHECK_OK(nn_exec_create(&ex, g, NULL, r.n, r.c, r.h, r.w, NN_EXEC_TRAINING));
    if (ex) {
        float logits[64], dlogits[64];
        float loss = step_fb(ex, &r, logits, dlogits);
        snprintf(label, sizeof label, "%s logits", name);
        check_close(label, logits, fx_f32(&f, "logits", (size_t)r.n * r.k), (size_t)r.n * r.k, 1e-4);
        snprintf(label, sizeof label, "%s loss", name);
        check_close(label, &loss, fx_f32(&f, "loss", 1), 1, 1e-5);
        double worst_g = 0, worst_b = 0;
        for (int i = 0; i < g->nparams; i++) {
            const nn_param *p = &g->param_table[i];
            if (p->kind == NN_BUFFER_NUM_BATCHES) {
                CHECK(g->batches_tracked[p->offset] == 1, "%s: num_batches_tracked %lld", p->name,
                      (long long)g->batches_tracked[p->offset]);
                continue;
            }
            bool tr = nn_param_trainable_kind(p->kind);
            snprintf(key, sizeof key, "%s%s", tr ? "g." : "b.", p->name);
            const float *want = fx_f32(&f, key, p->count);
            if (!want) continue;
            double e = max_rel_err(tr ? g->grads + p->offset : nn_param_data(g, p), want, p->count, 1e-6);
            CHECK(e <= (tr ? 1e-3 : 1e-4), "%s: %s rel err %.3e", name, key, e);
            if (getenv("FERC_VERBOSE") && e > 1e-5) printf("    %s %.3e\n", key, e);
            if (tr && e > worst_g) worst_g = e;
            if (!tr && e > worst_b) worst_b = e;
        }
        printf("  %-48s max rel err %.3e (tol 1e-03)\n", "every parameter gradient", worst_g);
        printf("  %-48s max rel err %.3e (tol 1e-04)\n", "running statistics after the step", worst_b);
    }
    nn_exec_destroy(ex);
    nn_graph_destroy(g);
    const char *frozen = st_meta(&f, "frozen");
    optimizer_run(build, &r, RUN_SGD, "sgd", NULL);
    optimizer_run(build, &r, RUN_ADAM, "adam", NULL);
    optimizer_run(build, &r, RUN_ADAMW, "adamw", NULL);
    optimizer_run(build, &r, RUN_FROZEN, "frozen", frozen ? frozen : "");
    st_close(&f);
}

static void cross_entropy(void)
{
    st_file f;
    int rc = st_read(&f, "tests/fixtures/nn/cross_entropy.safetensors");
    CHECK_OK(rc);
    if (rc) return;
    printf("cross_entropy\n");
    const float *z = fx_f32(&f, "logits", 48), *w = fx_f32(&f, "weights", 6);
    const st_tensor *lt = st_find(&f, "labels");
    int labels[8];
    memcpy(labels, lt->data, sizeof labels);
    const char *tags[4] = {"plain", "smooth", "weighted", "both"};
    float ls[4] = {0, 0.1f, 0, 0.2f};
    for (int t = 0; t < 4; t++) {
        float loss, d[48];
        char key[64], label[64];
        CHECK_OK(nn_softmax_cross_entropy(z, labels, 8, 6, ls[t], t >= 2 ? w : NULL, &loss, d, NULL));
        snprintf(key, sizeof key, "loss.%s", tags[t]);
        snprintf(label, sizeof label, "loss (%s)", tags[t]);
        check_close(label, &loss, fx_f32(&f, key, 1), 1, 1e-5);
        snprintf(key, sizeof key, "grad.%s", tags[t]);
        snprintf(label, sizeof label, "dlogits (%s)", tags[t]);
        check_close(label, d, fx_f32(&f, key, 48), 48, 1e-5);
    }
    float loss;
    int bad[8] = {0, 1, 2, 3, 4, 5, 6, 0};
    CHECK(nn_softmax_cross_entropy(z, bad, 8, 6, 0, NULL, &loss, NULL, NULL) == FERC_ERR_INVALID);
    CHECK(strstr(ferc_last_error(), "label 6") != NULL, "%s", ferc_last_error());
    st_close(&f);
}

/* Soft targets (knowledge distillation): torch's F.cross_entropy(logits, probabilities). */
static void soft_cross_entropy(void)
{
    st_file f;
    int rc = st_read(&f, "tests/fixtures/nn/soft_cross_entropy.safetensors");
    CHECK_OK(rc);
    if (rc) return;
    printf("soft_cross_entropy\n");
    const float *z = fx_f32(&f, "logits", 48);
    const char *tags[2] = {"soft", "unnormalized"}, *keys[2] = {"targets", "targets_unnormalized"};
    for (int t = 0; t < 2; t++) {
        float loss, d[48];
        char key[64], label[64];
        CHECK_OK(nn_soft_cross_entropy(z, fx_f32(&f, keys[t], 48), 8, 6, &loss, d));
        snprintf(key, sizeof key, "loss.%s", tags[t]);
        snprintf(label, sizeof label, "loss (%s)", tags[t]);
        check_close(label, &loss, fx_f32(&f, key, 1), 1, 1e-5);
        snprintf(key, sizeof key, "grad.%s", tags[t]);
        snprintf(label, sizeof label, "dlogits (%s)", tags[t]);
        check_close(label, d, fx_f32(&f, key, 48), 48, 1e-5);
    }
    /* one-hot targets are the hard loss */
    int labels[8];
    float q[48] = {0}, ls, lh, ds[48], dh[48];
    for (int i = 0; i < 8; i++) labels[i] = (i * 5) % 6, q[i * 6 + labels[i]] = 1;
    CHECK_OK(nn_soft_cross_entropy(z, q, 8, 6, &ls, ds));
    CHECK_OK(nn_softmax_cross_entropy(z, labels, 8, 6, 0, NULL, &lh, dh, NULL));
    check_close("one-hot soft loss = hard loss", &ls, &lh, 1, 1e-6);
    check_close("one-hot soft dlogits = hard dlogits", ds, dh, 48, 1e-6);
    float loss;
    q[7] = -0.1f;
    CHECK(nn_soft_cross_entropy(z, q, 8, 6, &loss, NULL) == FERC_ERR_INVALID, "a negative target was accepted");
    CHECK(strstr(ferc_last_error(), "sample 1") != NULL, "%s", ferc_last_error());
    q[7] = NAN;
    CHECK(nn_soft_cross_entropy(z, q, 8, 6, &loss, NULL) == FERC_ERR_INVALID, "a NaN target was accepted");
    st_close(&f);
}

int main(void)
{
    cross_entropy();
    soft_cross_entropy();
    e2e("tiny_resnet", tiny_resnet);
    e2e("tiny_densenet", tiny_densenet);
    return test_finish("test_nn_e2e");
}
