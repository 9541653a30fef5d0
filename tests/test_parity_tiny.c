/* Import parity in CI: two small networks assembled in PyTorch from torchvision's own
 * BasicBlock / Bottleneck / _DenseBlock / _Transition (so their keys are torchvision's), saved
 * with torch.save in both formats (tools/gen_parity_fixtures.py). Each file goes through
 * io's td_load and the importer into the same network built here with the nn builders and
 * torchvision's module names; the eval-mode logits must match torch's at 32x32 and 48x48
 * within 1e-4 of the largest logit (the bound for full networks is 1e-3). Also:
 * timm-style safetensors without num_batches_tracked, a legacy DenseNet file under 'network.'
 * with the old 'norm.1' keys, key-mismatch messages naming keys, and predict's preprocessing
 * against torchvision's Resize((S, S)) + ToTensor + Normalize. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "image/image.h"
#include "io/tensor_dict.h"
#include "models/classify.h"
#include "models/importer.h"
#include "nn/nn.h"
#include "testutil.h"

#define DIR "tests/fixtures/parity/"

static int conv_bn_relu(nn_graph *g, int x, const char *conv, const char *bn, int out, int k, int s, int p, bool relu)
{
    x = nn_batchnorm2d(g, bn, nn_conv2d(g, conv, x, out, k, s, p, false));
    return relu ? nn_relu(g, x) : x;
}

static nn_graph *tiny_resnet(int classes)
{
    nn_graph *g = nn_graph_create();
    int x = nn_input(g, 3);
    x = conv_bn_relu(g, x, "conv1", "bn1", 16, 7, 2, 3, true);
    x = nn_maxpool2d(g, x, 3, 2, 1);
    int o = conv_bn_relu(g, x, "layer1.0.conv1", "layer1.0.bn1", 16, 3, 1, 1, true);
    o = conv_bn_relu(g, o, "layer1.0.conv2", "layer1.0.bn2", 16, 3, 1, 1, false);
    x = nn_relu(g, nn_add(g, o, x));
    o = conv_bn_relu(g, x, "layer2.0.conv1", "layer2.0.bn1", 8, 1, 1, 0, true);
    o = conv_bn_relu(g, o, "layer2.0.conv2", "layer2.0.bn2", 8, 3, 2, 1, true);
    o = conv_bn_relu(g, o, "layer2.0.conv3", "layer2.0.bn3", 32, 1, 1, 0, false);
    int d = conv_bn_relu(g, x, "layer2.0.downsample.0", "layer2.0.downsample.1", 32, 1, 2, 0, false);
    x = nn_relu(g, nn_add(g, o, d));
    x = nn_flatten(g, nn_global_avgpool(g, x));
    nn_linear(g, "fc", x, classes);
    if (nn_graph_finalize(g)) {
        nn_graph_destroy(g);
        return NULL;
    }
    return g;
}

static int dense_block(nn_graph *g, int x, int block, int nlayers, int growth)
{
    int feats[8] = {x}, nf = 1;
    char a[96], b[96];
    for (int j = 1; j <= nlayers; j++) {
        int in = nf == 1 ? feats[0] : nn_concat(g, feats, nf);
        snprintf(a, sizeof a, "features.denseblock%d.denselayer%d.norm1", block, j);
        snprintf(b, sizeof b, "features.denseblock%d.denselayer%d.conv1", block, j);
        int o = nn_conv2d(g, b, nn_relu(g, nn_batchnorm2d(g, a, in)), 4 * growth, 1, 1, 0, false);
        snprintf(a, sizeof a, "features.denseblock%d.denselayer%d.norm2", block, j);
        snprintf(b, sizeof b, "features.denseblock%d.denselayer%d.conv2", block, j);
        feats[nf++] = nn_conv2d(g, b, nn_relu(g, nn_batchnorm2d(g, a, o)), growth, 3, 1, 1, false);
    }
    return nn_concat(g, feats, nf);
}

static nn_graph *tiny_densenet(int classes)
{
    nn_graph *g = nn_graph_create();
    int x = nn_input(g, 3);
    x = conv_bn_relu(g, x, "features.conv0", "features.norm0", 16, 7, 2, 3, true);
    x = nn_maxpool2d(g, x, 3, 2, 1);
    x = dense_block(g, x, 1, 2, 8);
    x = nn_relu(g, nn_batchnorm2d(g, "features.transition1.norm", x));
    x = nn_avgpool2d(g, nn_conv2d(g, "features.transition1.conv", x, 16, 1, 1, 0, false), 2, 2, 0);
    x = dense_block(g, x, 2, 2, 8);
    x = nn_relu(g, nn_batchnorm2d(g, "features.norm5", x));
    x = nn_flatten(g, nn_global_avgpool(g, x));
    nn_linear(g, "classifier", x, classes);
    if (nn_graph_finalize(g)) {
        nn_graph_destroy(g);
        return NULL;
    }
    return g;
}

/* Eval forward of x (n, 3, s, s) compared with torch's logits (n, 6). */
static void check_logits(nn_graph *g, const char *what, const float *x, const float *want, int n, int s)
{
    nn_exec *ex = NULL;
    float out[8 * 6];
    char name[160];
    snprintf(name, sizeof name, "%s at %dx%d", what, s, s);
    CHECK_OK(nn_exec_create(&ex, g, NULL, n, 3, s, s, 0));
    if (!ex) return;
    CHECK_OK(nn_exec_forward(ex, x, false, out));
    check_close(name, out, want, (size_t)n * 6, 1e-4);
    nn_exec_destroy(ex);
}

static void check_file(const char *file, bool resnet, const st_file *ref, int want_defaulted)
{
    char path[256];
    snprintf(path, sizeof path, DIR "%s", file);
    tensor_dict d;
    int rc = td_load(&d, path, NULL);
    CHECK_OK(rc);
    if (rc) return;
    nn_graph *g = resnet ? tiny_resnet(6) : tiny_densenet(6);
    int defaulted = -1;
    CHECK_OK(importer_fill(g, &d, NULL, &defaulted, path));
    CHECK(defaulted == want_defaulted, "%s: %d counters defaulted, want %d", file, defaulted, want_defaulted);
    const char *net = resnet ? "resnet" : "densenet";
    char key[64];
    snprintf(key, sizeof key, "%s_logits", net);
    const float *want = fx_f32(ref, key, 4 * 6), *x = fx_f32(ref, "input", 4 * 3 * 32 * 32);
    if (want && x) check_logits(g, file, x, want, 4, 32);
    snprintf(key, sizeof key, "%s_logits_48", net);
    want = fx_f32(ref, key, 2 * 6);
    x = fx_f32(ref, "input_48", 2 * 3 * 48 * 48);
    if (want && x) check_logits(g, file, x, want, 2, 48);
    /* Counters come through (torch's fixtures ran no training steps: randomise_bn set 100). */
    if (!want_defaulted) CHECK(g->batches_tracked[0] == 100, "%s: num_batches_tracked %lld", file, (long long)g->batches_tracked[0]);
    nn_graph_destroy(g);
    td_free(&d);
}

/* Mixed precision on the imported networks: eval logits in bf16 against torch's float32
 * ones, then ten training steps (cross-entropy, backward, plain SGD with lr 0.05 on one batch)
 * in float32 and in bf16 from the same weights, against PyTorch doing the same in float32 and
 * under its bf16 autocast (tools/gen_bf16_fixtures.py). bf16 rounding moves gradients by
 * itself -- ReLU and max-pool decisions flip, batch norm's backward cancels -- so ferc's bf16
 * is held to PyTorch's own bf16 distance from float32: its first-step gradients may be at
 * most 1.25 x as far (+0.01), and its losses must track float32's as closely as torch's do
 * (twice torch's worst step, at least 0.5%). The float32 steps match torch's (1e-3, 1e-4). */
static double rel_l2(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), den += (double)b[i] * b[i];
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* torch's first-step gradients (prec "fp32" or "bf16") laid out like g->grads */
static bool torch_grads(const st_file *f, const nn_graph *g, const char *net, const char *prec, float *out)
{
    char key[200];
    for (int i = 0; i < g->nparams; i++) {
        const nn_param *q = &g->param_table[i];
        if (!nn_param_trainable_kind(q->kind)) continue;
        snprintf(key, sizeof key, "%s.%s.%s", net, prec, q->name);
        const float *v = fx_f32(f, key, q->count);
        if (!v) return false;
        memcpy(out + q->offset, v, q->count * sizeof(float));
    }
    return true;
}

static void check_bf16(const char *file, bool resnet, const st_file *ref, const st_file *bref)
{
    char path[256];
    snprintf(path, sizeof path, DIR "%s", file);
    tensor_dict d;
    if (td_load(&d, path, NULL)) {
        CHECK(0, "%s", ferc_last_error());
        return;
    }
    nn_graph *g = resnet ? tiny_resnet(6) : tiny_densenet(6);
    CHECK_OK(importer_fill(g, &d, NULL, NULL, path));
    td_free(&d);
    const char *net = resnet ? "resnet" : "densenet";
    char key[64], name[160];
    snprintf(key, sizeof key, "%s_logits", net);
    const float *want = fx_f32(ref, key, 4 * 6), *x = fx_f32(ref, "input", 4 * 3 * 32 * 32);
    enum { STEPS = 10 };
    snprintf(key, sizeof key, "%s.loss_fp32", net);
    const float *tl32 = fx_f32(bref, key, STEPS);
    snprintf(key, sizeof key, "%s.loss_bf16", net);
    const float *tl16 = fx_f32(bref, key, STEPS);
    float *tg[2] = {malloc(g->n_params * sizeof(float)), malloc(g->n_params * sizeof(float))};
    if (!want || !x || !tl32 || !tl16 || !torch_grads(bref, g, net, "fp32", tg[0]) || !torch_grads(bref, g, net, "bf16", tg[1]))
        goto out;
    nn_exec *ex = NULL;
    float out[4 * 6];
    CHECK_OK(nn_exec_create(&ex, g, NULL, 4, 3, 32, 32, NN_EXEC_BF16));
    if (ex) {
        CHECK_OK(nn_exec_forward(ex, x, false, out));
        snprintf(name, sizeof name, "%s bf16 eval logits", net);
        check_close(name, out, want, 24, 2e-2); /* a dozen bf16 ops: a few u = 2^-8 */
        CHECK(max_rel_err(out, want, 24, 1e-6) > 1e-5, "%s: bf16 logits equal float32's", net);
    }
    nn_exec_destroy(ex);

    const int labels[4] = {0, 3, 5, 1};
    float *p0 = malloc(g->n_params * sizeof *p0), *b0 = malloc((g->n_buffers + 1) * sizeof *b0);
    float *grad[2] = {malloc(g->n_params * sizeof(float)), malloc(g->n_params * sizeof(float))};
    int64_t *t0 = malloc((g->n_batches + 1) * sizeof *t0);
    double loss[2][STEPS];
    memcpy(p0, g->params, g->n_params * sizeof *p0);
    memcpy(b0, g->buffers, g->n_buffers * sizeof *b0);
    memcpy(t0, g->batches_tracked, g->n_batches * sizeof *t0);
    for (int prec = 0; prec < 2; prec++) {
        memcpy(g->params, p0, g->n_params * sizeof *p0);
        memcpy(g->buffers, b0, g->n_buffers * sizeof *b0);
        memcpy(g->batches_tracked, t0, g->n_batches * sizeof *t0);
        ex = NULL;
        CHECK_OK(nn_exec_create(&ex, g, NULL, 4, 3, 32, 32, NN_EXEC_TRAINING | (prec ? NN_EXEC_BF16 : 0)));
        if (!ex) continue;
        for (int k = 0; k < STEPS; k++) {
            float logits[24], dl[24], l = 0;
            CHECK_OK(nn_exec_forward(ex, x, true, logits));
            CHECK_OK(nn_softmax_cross_entropy(logits, labels, 4, 6, 0, NULL, &l, dl, NULL));
            CHECK_OK(nn_exec_backward(ex, dl));
            loss[prec][k] = l;
            if (k == 0) memcpy(grad[prec], g->grads, g->n_params * sizeof(float));
            for (size_t i = 0; i < g->n_params; i++) g->params[i] -= 0.05f * g->grads[i];
        }
        nn_exec_destroy(ex);
    }
    snprintf(name, sizeof name, "%s fp32 first-step gradients vs torch", net);
    check_close(name, grad[0], tg[0], g->n_params, 1e-3);
    double ours = rel_l2(grad[1], tg[0], g->n_params), theirs = rel_l2(tg[1], tg[0], g->n_params);
    double worst32 = 0, worst16 = 0, torch_worst = 0;
    for (int k = 0; k < STEPS; k++) {
        worst32 = fmax(worst32, fabs(loss[0][k] - tl32[k]) / tl32[k]);
        worst16 = fmax(worst16, fabs(loss[1][k] - tl32[k]) / tl32[k]);
        torch_worst = fmax(torch_worst, fabs((double)tl16[k] - tl32[k]) / tl32[k]);
    }
    printf("  %s bf16 training: first-step gradients rel L2 %.4f from float32 (torch's bf16: %.4f); losses %.4f -> "
           "%.4f (float32 %.4f -> %.4f), worst step %.2e from float32 (torch's bf16: %.2e)\n", net, ours, theirs,
           loss[1][0], loss[1][STEPS - 1], tl32[0], tl32[STEPS - 1], worst16, torch_worst);
    CHECK(worst32 < 1e-4, "%s: float32 losses %.3e from torch's", net, worst32);
    CHECK(ours <= 1.25 * theirs + 0.01, "%s: bf16 gradients %.4f from float32, torch's bf16 %.4f", net, ours, theirs);
    CHECK(ours > 1e-4, "%s: bf16 gradients equal float32's (is bf16 in effect?)", net);
    CHECK(worst16 <= fmax(2 * torch_worst, 5e-3), "%s: a bf16 step's loss %.3e from float32's (torch: %.3e)", net,
          worst16, torch_worst);
    free(p0), free(b0), free(t0), free(grad[0]), free(grad[1]);
out:
    free(tg[0]), free(tg[1]);
    nn_graph_destroy(g);
}

static void expect_error(nn_graph *g, const char *file, const char *skip, const char *const *needles)
{
    char path[256];
    snprintf(path, sizeof path, DIR "%s", file);
    tensor_dict d;
    CHECK_OK(td_load(&d, path, NULL));
    float before = g->params[0];
    int rc = importer_fill(g, &d, skip, NULL, path);
    CHECK(rc == FERC_ERR_SHAPE, "%s: importer_fill returned %d", file, rc);
    for (int i = 0; needles[i]; i++)
        CHECK(strstr(ferc_last_error(), needles[i]), "message lacks '%s': %s", needles[i], ferc_last_error());
    CHECK(g->params[0] == before, "a failed import wrote into the graph");
    printf("  error as expected: %.160s...\n", ferc_last_error());
    td_free(&d);
}

static void check_preprocess(void)
{
    st_file ref;
    CHECK_OK(st_read(&ref, DIR "preprocess_ref.safetensors"));
    models_meta m;
    models_meta_init(&m, "resnet18", 6);
    m.img_size = 32;
    const char *names[] = {"rgb_40x30", "gray_50x50", "gray_32x32"};
    float out[3 * 32 * 32];
    for (int i = 0; i < 3; i++) {
        char path[128];
        snprintf(path, sizeof path, DIR "%s.png", names[i]);
        image img = {0};
        CHECK_OK(image_load(&img, path, IMAGE_MODE_ANY, 0));
        CHECK_OK(classify_preprocess(&m, &img, out));
        const float *want = fx_f32(&ref, names[i], 3 * 32 * 32);
        char what[96];
        snprintf(what, sizeof what, "preprocess %s (%d ch)", names[i], img.channels);
        /* image_resize reproduces PIL's 8-bit antialiased bilinear exactly, so even the resized
         * images match to float rounding (one 8-bit level would be an error of 7e-3). */
        if (want) check_close(what, out, want, 3 * 32 * 32, 1e-5);
        image_free(&img);
    }
    models_meta_free(&m);
    st_close(&ref);
}

int main(void)
{
    st_file ref;
    if (st_read(&ref, DIR "tiny_ref.safetensors")) {
        CHECK(0, "%s", ferc_last_error());
        return test_finish("test_parity_tiny");
    }
    check_file("tiny_resnet.pth", true, &ref, 0);
    check_file("tiny_resnet_legacy.pth", true, &ref, 0);
    check_file("tiny_resnet_timm.safetensors", true, &ref, 7);    /* timm drops the 7 counters */
    check_file("tiny_densenet.pth", false, &ref, 0);
    check_file("tiny_densenet_legacy.pth", false, &ref, 0);      /* 'network.' + 'norm.1' keys */

    /* Mismatches are listed by name and nothing is written. */
    nn_graph *dn = tiny_densenet(6), *r5 = tiny_resnet(5);
    expect_error(dn, "tiny_resnet.pth", NULL,
                 (const char *[]){"missing", "features.conv0.weight", "unexpected", "conv1.weight", NULL});
    expect_error(r5, "tiny_resnet.pth", NULL, (const char *[]){"shape mismatch", "fc.weight", "[6, 32]", "[5, 32]", NULL});
    /* With the head skipped the same file fits, except that it still holds fc.*. */
    expect_error(r5, "tiny_resnet.pth", "fc", (const char *[]){"unexpected", "fc.weight", "fc.bias", NULL});
    nn_graph_destroy(dn);
    nn_graph_destroy(r5);
    st_file bref;
    CHECK_OK(st_read(&bref, DIR "bf16_ref.safetensors"));
    check_bf16("tiny_resnet.pth", true, &ref, &bref);
    check_bf16("tiny_densenet.pth", false, &ref, &bref);
    st_close(&bref);
    st_close(&ref);

    check_preprocess();
    return test_finish("test_parity_tiny");
}
