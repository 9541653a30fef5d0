/* The generic executor: works out which nodes need gradients, then hands the graph to a
 * backend. Also the softmax cross-entropy loss, which is small and backend-independent. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "nn/backend.h"

void nn_exec_destroy(nn_exec *ex)
{
    if (!ex) return;
    if (ex->state && ex->backend) ex->backend->release(ex);
    free(ex->trainable);
    free(ex->needs_grad);
    free(ex->bn_eval);
    free(ex->nconsumers);
    free(ex->last_consumer);
    free(ex);
}

int nn_exec_create(nn_exec **out, nn_graph *g, const nn_backend *backend, int n, int c, int h, int w,
                   unsigned flags)
{
    *out = NULL;
    if (!g || !g->finalized)
        return ferc_set_error(FERC_ERR_INVALID, "nn: the graph must be finalized before it is planned");
    if (!backend) backend = nn_backend_onednn();
    for (int i = 0; i < g->nnodes; i++)
        if (!backend->supports(g->nodes[i].op))
            return ferc_set_error(FERC_ERR_UNSUPPORTED, "nn: backend %s cannot run node '%s' (%s)", backend->name,
                                  g->nodes[i].name, nn_op_name(g->nodes[i].op));
    int rc = nn_graph_infer_shapes(g, n, c, h, w);
    if (rc) return rc;
    nn_exec *ex = calloc(1, sizeof *ex);
    if (!ex) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    size_t nn = (size_t)g->nnodes;
    ex->g = g;
    ex->backend = backend;
    ex->n = n;
    ex->c = c;
    ex->h = h;
    ex->w = w;
    ex->flags = flags;
    ex->trainable = calloc(nn, sizeof(bool));
    ex->needs_grad = calloc(nn, sizeof(bool));
    ex->bn_eval = calloc(nn, sizeof(bool));
    ex->nconsumers = calloc(nn, sizeof(int));
    ex->last_consumer = malloc(nn * sizeof(int));
    if (!ex->trainable || !ex->needs_grad || !ex->bn_eval || !ex->nconsumers || !ex->last_consumer) {
        nn_exec_destroy(ex);
        return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < g->nnodes; i++) {
        nn_node *nd = &g->nodes[i];
        ex->last_consumer[i] = -1;
        bool any_param = false;
        for (int p = nd->param_first; p < nd->param_first + nd->param_count; p++) {
            const nn_param *pp = &g->param_table[p];
            if (!nn_param_trainable_kind(pp->kind)) continue;
            any_param = true;
            if (!pp->frozen) ex->trainable[i] = true;
        }
        /* A batch-norm layer with frozen parameters is part of a frozen backbone: it uses
         * its running statistics and does not update them. */
        ex->bn_eval[i] = nd->op == NN_OP_BATCHNORM2D && any_param && !ex->trainable[i];
        bool ng = ex->trainable[i];
        for (int j = 0; j < nd->ninputs; j++) {
            int in = nd->inputs[j];
            ng = ng || ex->needs_grad[in];
            ex->nconsumers[in]++;
            if (i > ex->last_consumer[in]) ex->last_consumer[in] = i;
        }
        if (i == 0 && (flags & NN_EXEC_INPUT_GRAD)) ng = true;
        ex->needs_grad[i] = (flags & NN_EXEC_TRAINING) ? ng : false;
    }
    rc = backend->plan(ex);
    if (rc) {
        nn_exec_destroy(ex);
        return rc;
    }
    *out = ex;
    return FERC_OK;
}

int nn_exec_forward(nn_exec *ex, const float *x, bool train, float *out)
{
    if (ex->flags & NN_EXEC_DRY_RUN) return ferc_set_error(FERC_ERR_INVALID, "nn: a dry-run plan cannot run");
    if (train && !(ex->flags & NN_EXEC_TRAINING))
        return ferc_set_error(FERC_ERR_INVALID, "nn: a training forward pass needs an executor planned for training");
    int rc = ex->backend->forward(ex, x, train, out);
    ex->did_train_forward = rc == FERC_OK && train;
    return rc;
}

int nn_exec_backward(nn_exec *ex, const float *dout)
{
    if (!(ex->flags & NN_EXEC_TRAINING))
        return ferc_set_error(FERC_ERR_INVALID, "nn: backward needs an executor planned for training");
    if (!ex->did_train_forward)
        return ferc_set_error(FERC_ERR_INVALID, "nn: backward needs a preceding training forward pass");
    /* Gradients of frozen parameters stay zero; the others are overwritten by the backend. */
    return ex->backend->backward(ex, dout);
}

void nn_exec_params_changed(nn_exec *ex) { ex->params_changed = true; }

void nn_exec_set_seed(nn_exec *ex, uint64_t seed, uint64_t step)
{
    ex->seed = seed;
    ex->step = step;
}

static int node_read(nn_exec *ex, int node, bool grad, float *out, size_t count)
{
    if (node < 0 || node >= ex->g->nnodes) return ferc_set_error(FERC_ERR_INVALID, "nn: no node %d", node);
    const nn_node *nd = &ex->g->nodes[node];
    size_t need = (size_t)nd->n * (size_t)nd->channels * (size_t)nd->h * (size_t)nd->w;
    if (count != need)
        return ferc_set_error(FERC_ERR_SHAPE, "nn: node '%s' has %zu output values, not %zu", nd->name, need, count);
    if (grad && !ex->needs_grad[node])
        return ferc_set_error(FERC_ERR_INVALID, "nn: node '%s' has no gradient (frozen, or not planned for training)",
                              nd->name);
    if (ex->backend->readable && !ex->backend->readable(ex, node, grad))
        return ferc_set_error(FERC_ERR_INVALID,
                              "nn: the %s of node '%s' shares memory with later ones in this plan (nn_keep_output "
                              "keeps an output; of gradients only the input's is kept)", grad ? "gradient" : "output",
                              nd->name);
    return ex->backend->node_output(ex, node, grad, out, count);
}

size_t nn_exec_planned_bytes(const nn_exec *ex)
{
    return ex && ex->backend->planned_bytes ? ex->backend->planned_bytes(ex) : 0;
}

int nn_exec_node_output(nn_exec *ex, int node, float *out, size_t count)
{
    return node_read(ex, node, false, out, count);
}

int nn_exec_node_grad(nn_exec *ex, int node, float *out, size_t count)
{
    return node_read(ex, node, true, out, count);
}

int nn_softmax_cross_entropy(const float *logits, const int *labels, int n, int k, float label_smoothing,
                             const float *w, float *loss, float *dlogits, float *probs)
{
    if (n <= 0 || k <= 1) return ferc_set_error(FERC_ERR_INVALID, "loss: need n > 0 and k > 1");
    if (!(label_smoothing >= 0.0f && label_smoothing <= 1.0f))
        return ferc_set_error(FERC_ERR_INVALID, "loss: label smoothing must be in [0, 1]");
    for (int i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= k)
            return ferc_set_error(FERC_ERR_INVALID, "loss: label %d of sample %d is outside [0, %d)", labels[i], i, k);
    /* torch: loss_i = (1-eps) * w[y] * nll_i + (eps/K) * sum_c w[c] * (-logp_ic);
     * mean reduction divides by sum_i w[y_i] (n when unweighted). */
    double wsum = 0;
    for (int i = 0; i < n; i++) wsum += w ? w[labels[i]] : 1.0;
    if (wsum <= 0) return ferc_set_error(FERC_ERR_INVALID, "loss: class weights of this batch sum to zero");
    double total = 0, eps = label_smoothing;
    for (int i = 0; i < n; i++) {
        const float *z = logits + (size_t)i * k;
        double m = z[0];
        for (int c = 1; c < k; c++) m = z[c] > m ? z[c] : m;
        double s = 0;
        for (int c = 0; c < k; c++) s += exp((double)z[c] - m);
        double lse = m + log(s);
        int y = labels[i];
        double wy = w ? w[y] : 1.0;
        double smooth = 0, wall = 0;
        for (int c = 0; c < k; c++) {
            double wc = w ? w[c] : 1.0;
            smooth += wc * (lse - z[c]);
            wall += wc;
        }
        total += (1 - eps) * wy * (lse - z[y]) + eps / k * smooth;
        for (int c = 0; c < k; c++) {
            double p = exp((double)z[c] - lse);
            if (probs) probs[(size_t)i * k + c] = (float)p;
            if (dlogits) {
                double wc = w ? w[c] : 1.0;
                /* d/dz_c of the per-sample loss above */
                double d = (1 - eps) * wy * (p - (c == y)) + eps / k * (wall * p - wc);
                dlogits[(size_t)i * k + c] = (float)(d / wsum);
            }
        }
    }
    *loss = (float)(total / wsum);
    return FERC_OK;
}

int nn_soft_cross_entropy(const float *logits, const float *q, int n, int k, float *loss, float *dlogits)
{
    if (n <= 0 || k <= 1) return ferc_set_error(FERC_ERR_INVALID, "loss: need n > 0 and k > 1");
    for (size_t i = 0; i < (size_t)n * k; i++)
        if (!(q[i] >= 0.0f && q[i] <= FLT_MAX))
            return ferc_set_error(FERC_ERR_INVALID, "loss: target %g of sample %zu is not a probability", (double)q[i], i / k);
    double total = 0;
    for (int i = 0; i < n; i++) {
        const float *z = logits + (size_t)i * k, *t = q + (size_t)i * k;
        double m = z[0];
        for (int c = 1; c < k; c++) m = z[c] > m ? z[c] : m;
        double s = 0, qs = 0;
        for (int c = 0; c < k; c++) s += exp((double)z[c] - m), qs += t[c];
        double lse = m + log(s);
        for (int c = 0; c < k; c++) {
            total += t[c] * (lse - z[c]);
            if (dlogits) dlogits[(size_t)i * k + c] = (float)((exp((double)z[c] - lse) * qs - t[c]) / n);
        }
    }
    *loss = (float)(total / n);
    return FERC_OK;
}
