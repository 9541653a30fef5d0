/* Graph building and execution contracts: bad shapes and inconsistent graphs return an
 * error status with a message naming the node; parameter naming and flat storage;
 * dropout semantics; determinism; freezing skips backward work. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "nn/nn.h"
#include "testutil.h"

static void test_builder_errors(void)
{
    nn_graph *g = nn_graph_create();
    int x = nn_input(g, 3);
    int a = nn_conv2d(g, "a", x, 16, 3, 1, 1, false);
    int b = nn_conv2d(g, "b", x, 8, 3, 1, 1, false);
    int s = nn_add(g, a, b);
    CHECK(s == FERC_ERR_SHAPE);
    CHECK(strstr(ferc_last_error(), "'a'") && strstr(ferc_last_error(), "'b'"), "%s", ferc_last_error());
    /* Sticky: later calls and finalize report the same failure. */
    CHECK(nn_relu(g, a) == FERC_ERR_SHAPE);
    CHECK(nn_graph_finalize(g) == FERC_ERR_SHAPE);
    nn_graph_destroy(g);

    g = nn_graph_create();
    x = nn_input(g, 3);
    CHECK(nn_conv2d(g, NULL, x, 16, 3, 1, 1, false) == FERC_ERR_INVALID, "an unnamed conv must be refused");
    nn_graph_destroy(g);

    g = nn_graph_create();
    x = nn_input(g, 3);
    CHECK(nn_relu(g, 5) == FERC_ERR_INVALID, "input id 5 does not exist");
    nn_graph_destroy(g);

    g = nn_graph_create();
    x = nn_input(g, 3);
    CHECK(nn_conv2d(g, "c", x, 16, 3, 0, 1, false) == FERC_ERR_INVALID, "stride 0");
    nn_graph_destroy(g);

    g = nn_graph_create();
    x = nn_input(g, 3);
    a = nn_conv2d(g, "dup", x, 4, 3, 1, 1, false);
    CHECK(nn_conv2d(g, "dup", a, 4, 3, 1, 1, false) == FERC_ERR_INVALID);
    CHECK(strstr(ferc_last_error(), "dup.weight") != NULL, "%s", ferc_last_error());
    nn_graph_destroy(g);

    /* Linear on a 4D activation, and an input too small for the network. */
    g = nn_graph_create();
    x = nn_input(g, 3);
    a = nn_conv2d(g, "c", x, 4, 3, 1, 0, false);
    nn_linear(g, "fc", a, 2);
    CHECK_OK(nn_graph_finalize(g));
    CHECK(nn_graph_infer_shapes(g, 1, 3, 8, 8) == FERC_ERR_SHAPE);
    CHECK(strstr(ferc_last_error(), "'fc'") != NULL, "%s", ferc_last_error());
    nn_exec *ex = NULL;
    CHECK(nn_exec_create(&ex, g, NULL, 1, 3, 8, 8, 0) == FERC_ERR_SHAPE && ex == NULL);
    CHECK(nn_graph_infer_shapes(g, 1, 3, 2, 2) == FERC_ERR_SHAPE);
    CHECK(strstr(ferc_last_error(), "too small") && strstr(ferc_last_error(), "'c'"), "%s", ferc_last_error());
    CHECK(nn_graph_infer_shapes(g, 1, 1, 8, 8) == FERC_ERR_SHAPE, "wrong channel count");
    nn_graph_destroy(g);
}

static int small_net(nn_graph *g, float p_drop)
{
    int x = nn_input(g, 3);
    x = nn_conv2d(g, "conv", x, 16, 3, 1, 1, false);
    x = nn_relu(g, nn_batchnorm2d(g, "bn", x));
    x = nn_flatten(g, nn_global_avgpool(g, x));
    if (p_drop > 0) x = nn_dropout(g, x, p_drop);
    nn_linear(g, "fc", x, 3);
    return nn_graph_finalize(g);
}

static void test_params(void)
{
    nn_graph *g = nn_graph_create();
    CHECK_OK(small_net(g, 0));
    const char *names[] = {"conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var",
                           "bn.num_batches_tracked", "fc.weight", "fc.bias"};
    CHECK(g->nparams == 8);
    for (int i = 0; i < 8 && i < g->nparams; i++)
        CHECK(!strcmp(g->param_table[i].name, names[i]), "param %d is %s", i, g->param_table[i].name);
    CHECK(nn_param_count(g) == 16 * 3 * 9 + 16 + 16 + 3 * 16 + 3);
    int bi = nn_find_param(g, "bn.running_var");
    CHECK(bi >= 0 && nn_param_data(g, &g->param_table[bi])[0] == 1.0f, "running_var starts at 1");
    CHECK(nn_find_param(g, "nope") == -1);
    nn_freeze_prefix(g, "bn.", true);
    CHECK(g->param_table[1].frozen && g->param_table[2].frozen && !g->param_table[0].frozen);
    nn_graph_destroy(g);
}

static void fill(nn_graph *g, float *x, size_t nx, uint64_t seed)
{
    rng r;
    rng_seed(&r, seed);
    for (size_t i = 0; i < g->n_params; i++) g->params[i] = (float)(0.2 * rng_normal(&r));
    for (size_t i = 0; i < nx; i++) x[i] = (float)rng_normal(&r);
}

static void test_exec_errors_and_determinism(void)
{
    nn_graph *g = nn_graph_create();
    CHECK_OK(small_net(g, 0));
    float x[4 * 3 * 6 * 6], out[12], out2[12], dout[12] = {0.1f, -0.2f, 0.3f, 0.0f, 0.5f, -0.1f,
                                                           0.2f, 0.2f, -0.4f, 0.1f, 0.0f, 0.3f};
    fill(g, x, sizeof x / sizeof x[0], 1);
    nn_exec *inf = NULL, *ex = NULL;
    CHECK_OK(nn_exec_create(&inf, g, NULL, 4, 3, 6, 6, 0));
    CHECK(nn_exec_forward(inf, x, true, out) == FERC_ERR_INVALID, "training pass on an inference plan");
    CHECK(nn_exec_backward(inf, dout) == FERC_ERR_INVALID);
    CHECK_OK(nn_exec_create(&ex, g, NULL, 4, 3, 6, 6, NN_EXEC_TRAINING));
    CHECK(nn_exec_backward(ex, dout) == FERC_ERR_INVALID, "backward before any forward");
    /* Eval passes of the two plans agree exactly. */
    CHECK_OK(nn_exec_forward(inf, x, false, out));
    CHECK_OK(nn_exec_forward(ex, x, false, out2));
    CHECK(!memcmp(out, out2, sizeof out), "inference and training plans differ in eval mode");
    /* Two identical training steps give bit-identical gradients. */
    float *g1 = malloc(g->n_params * sizeof(float));
    CHECK_OK(nn_exec_forward(ex, x, true, out));
    CHECK_OK(nn_exec_backward(ex, dout));
    memcpy(g1, g->grads, g->n_params * sizeof(float));
    CHECK_OK(nn_exec_forward(ex, x, true, out2));
    CHECK_OK(nn_exec_backward(ex, dout));
    CHECK(!memcmp(g1, g->grads, g->n_params * sizeof(float)), "gradients are not deterministic");
    CHECK(g->batches_tracked[0] == 2, "num_batches_tracked %lld", (long long)g->batches_tracked[0]);
    free(g1);
    nn_exec_destroy(inf);
    nn_exec_destroy(ex);
    /* Batch norm in training mode with one value per channel is refused, as torch does. */
    CHECK_OK(nn_exec_create(&ex, g, NULL, 1, 3, 1, 1, NN_EXEC_TRAINING));
    CHECK(nn_exec_forward(ex, x, true, out) == FERC_ERR_SHAPE);
    CHECK(strstr(ferc_last_error(), "'bn'") != NULL, "%s", ferc_last_error());
    nn_exec_destroy(ex);
    nn_graph_destroy(g);
}

static void test_freezing(void)
{
    nn_graph *g = nn_graph_create();
    CHECK_OK(small_net(g, 0));
    float x[4 * 3 * 6 * 6], out[12], dout[12];
    fill(g, x, sizeof x / sizeof x[0], 2);
    for (int i = 0; i < 12; i++) dout[i] = 0.1f * (float)(i % 5) - 0.2f;
    nn_freeze_prefix(g, "", true);
    nn_freeze_prefix(g, "fc.", false);
    float rm_before[16];
    int rmi = nn_find_param(g, "bn.running_mean");
    memcpy(rm_before, nn_param_data(g, &g->param_table[rmi]), sizeof rm_before);
    nn_exec *ex = NULL;
    CHECK_OK(nn_exec_create(&ex, g, NULL, 4, 3, 6, 6, NN_EXEC_TRAINING));
    CHECK_OK(nn_exec_forward(ex, x, true, out));
    CHECK_OK(nn_exec_backward(ex, dout));
    bool frozen_zero = true, head_nonzero = false;
    for (int i = 0; i < g->nparams; i++) {
        const nn_param *p = &g->param_table[i];
        if (!nn_param_trainable_kind(p->kind)) continue;
        for (size_t j = 0; j < p->count; j++) {
            if (p->frozen && g->grads[p->offset + j] != 0) frozen_zero = false;
            if (!p->frozen && g->grads[p->offset + j] != 0) head_nonzero = true;
        }
    }
    CHECK(frozen_zero, "frozen parameters got gradients");
    CHECK(head_nonzero, "the head got no gradient");
    CHECK(!memcmp(rm_before, nn_param_data(g, &g->param_table[rmi]), sizeof rm_before),
          "a frozen batch norm updated its running statistics");
    /* No gradient flows into the frozen prefix: the conv's output has none. */
    float tmp[4 * 16 * 6 * 6];
    CHECK(nn_exec_node_grad(ex, 1, tmp, sizeof tmp / sizeof tmp[0]) == FERC_ERR_INVALID,
          "a frozen prefix must not run backward");
    nn_exec_destroy(ex);
    nn_graph_destroy(g);
}

static void test_dropout(void)
{
    nn_graph *g = nn_graph_create();
    int x = nn_input(g, 64);
    x = nn_flatten(g, x);
    nn_dropout(g, x, 0.5f);
    CHECK_OK(nn_graph_finalize(g));
    float in[4 * 64], a[4 * 64], b[4 * 64], c[4 * 64];
    for (int i = 0; i < 256; i++) in[i] = 1.0f + (float)i / 256.0f;
    nn_exec *ex = NULL;
    CHECK_OK(nn_exec_create(&ex, g, NULL, 4, 64, 1, 1, NN_EXEC_TRAINING | NN_EXEC_INPUT_GRAD));
    CHECK_OK(nn_exec_forward(ex, in, false, a));
    CHECK(!memcmp(a, in, sizeof in), "dropout must be the identity in eval mode");
    nn_exec_set_seed(ex, 9, 1);
    CHECK_OK(nn_exec_forward(ex, in, true, a));
    nn_exec_set_seed(ex, 9, 1);
    CHECK_OK(nn_exec_forward(ex, in, true, b));
    nn_exec_set_seed(ex, 9, 2);
    CHECK_OK(nn_exec_forward(ex, in, true, c));
    CHECK(!memcmp(a, b, sizeof a), "same seed and step must give the same mask");
    CHECK(memcmp(a, c, sizeof a) != 0, "another step must give another mask");
    int zeros = 0, scaled = 0;
    for (int i = 0; i < 256; i++) {
        if (a[i] == 0) zeros++;
        else if (fabsf(a[i] - 2.0f * in[i]) < 1e-6f) scaled++;
    }
    CHECK(zeros + scaled == 256 && zeros > 96 && zeros < 160, "zeros %d scaled %d", zeros, scaled);
    /* Backward passes the gradient through the last training pass's mask, scaled. */
    float d[256], dx[256];
    for (int i = 0; i < 256; i++) d[i] = 1.0f;
    CHECK_OK(nn_exec_backward(ex, d));
    CHECK_OK(nn_exec_node_grad(ex, 0, dx, 256));
    bool same_mask = true;
    for (int i = 0; i < 256; i++) same_mask = same_mask && dx[i] == (c[i] != 0 ? 2.0f : 0.0f);
    CHECK(same_mask, "dropout backward must use the forward mask scaled by 1/(1-p)");
    nn_exec_destroy(ex);
    nn_graph_destroy(g);
}

/* Inference plans cache constant weights; nn_exec_params_changed refreshes the cache. */
static void test_params_changed(void)
{
    nn_graph *g = nn_graph_create();
    CHECK_OK(small_net(g, 0));
    float x[2 * 3 * 6 * 6], a[6], b[6], c[6];
    fill(g, x, sizeof x / sizeof x[0], 3);
    nn_exec *ex = NULL, *fresh = NULL;
    CHECK_OK(nn_exec_create(&ex, g, NULL, 2, 3, 6, 6, 0));
    CHECK_OK(nn_exec_forward(ex, x, false, a));
    for (size_t i = 0; i < g->n_params; i++) g->params[i] *= 0.5f;
    nn_exec_params_changed(ex);
    CHECK_OK(nn_exec_forward(ex, x, false, b));
    CHECK_OK(nn_exec_create(&fresh, g, NULL, 2, 3, 6, 6, 0));
    CHECK_OK(nn_exec_forward(fresh, x, false, c));
    CHECK(!memcmp(b, c, sizeof b), "a refreshed plan must equal a new plan");
    CHECK(memcmp(a, b, sizeof a) != 0, "new weights must change the output");
    nn_exec_destroy(ex);
    nn_exec_destroy(fresh);
    nn_graph_destroy(g);
}

int main(void)
{
    test_params_changed();
    test_builder_errors();
    test_params();
    test_exec_errors_and_determinism();
    test_freezing();
    test_dropout();
    return test_finish("test_nn_graph");
}
