/* gradcam: see gradcam.h. */
#include "models/gradcam.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

struct gradcam {
    nn_graph *g;
    nn_exec *ex;
    int S, K, target, C, h, w;
    float *logits, *dout, *act, *grad, *cam;
};

void gradcam_destroy(gradcam *gc)
{
    if (!gc) return;
    nn_exec_destroy(gc->ex);
    free(gc->logits);
    free(gc->dout);
    free(gc->act);
    free(gc->grad);
    free(gc->cam);
    free(gc);
}

int gradcam_create(gradcam **out, nn_graph *g, int img_size)
{
    *out = NULL;
    int target = -1;
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i].op == NN_OP_GLOBAL_AVGPOOL) target = g->nodes[i].inputs[0];
    if (target < 0) return ferc_set_error(FERC_ERR_UNSUPPORTED, "gradcam: the network has no global pooling");
    gradcam *gc = calloc(1, sizeof *gc);
    if (!gc) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    gc->g = g;
    gc->S = img_size;
    gc->target = target;
    nn_freeze_prefix(g, "", true);
    int rc = nn_exec_create(&gc->ex, g, NULL, 1, 3, img_size, img_size,
                            NN_EXEC_TRAINING | NN_EXEC_INPUT_GRAD | NN_EXEC_NO_SHARING);
    if (!rc) {
        const nn_node *t = &g->nodes[target];
        gc->C = t->channels, gc->h = t->h, gc->w = t->w;
        gc->K = g->nodes[g->output].channels;
        size_t na = (size_t)gc->C * gc->h * gc->w;
        gc->logits = malloc((size_t)gc->K * sizeof(float));
        gc->dout = malloc((size_t)gc->K * sizeof(float));
        gc->act = malloc(na * sizeof(float));
        gc->grad = malloc(na * sizeof(float));
        gc->cam = malloc((size_t)gc->h * gc->w * sizeof(float));
        if (!gc->logits || !gc->dout || !gc->act || !gc->grad || !gc->cam) rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    }
    if (rc) {
        gradcam_destroy(gc);
        return rc;
    }
    *out = gc;
    return FERC_OK;
}

void gradcam_grid(const gradcam *gc, int *h, int *w)
{
    *h = gc->h;
    *w = gc->w;
}

int gradcam_run(gradcam *gc, const float *x, int cls, float *map, int *pred, float *probs)
{
    int rc = nn_exec_forward(gc->ex, x, true, gc->logits); /* all frozen: evaluation-mode arithmetic */
    if (rc) return rc;
    int best = 0;
    for (int k = 1; k < gc->K; k++)
        if (gc->logits[k] > gc->logits[best]) best = k;
    if (pred) *pred = best;
    if (probs) {
        double m = gc->logits[best], s = 0;
        for (int k = 0; k < gc->K; k++) s += exp((double)gc->logits[k] - m);
        for (int k = 0; k < gc->K; k++) probs[k] = (float)(exp((double)gc->logits[k] - m) / s);
    }
    if (cls < 0) cls = best;
    if (cls >= gc->K) return ferc_set_error(FERC_ERR_INVALID, "gradcam: class %d of %d", cls, gc->K);
    memset(gc->dout, 0, (size_t)gc->K * sizeof(float));
    gc->dout[cls] = 1;
    size_t hw = (size_t)gc->h * gc->w, na = (size_t)gc->C * hw;
    if ((rc = nn_exec_backward(gc->ex, gc->dout))) return rc;
    if ((rc = nn_exec_node_output(gc->ex, gc->target, gc->act, na))) return rc;
    if ((rc = nn_exec_node_grad(gc->ex, gc->target, gc->grad, na))) return rc;
    for (size_t p = 0; p < hw; p++) gc->cam[p] = 0;
    for (int c = 0; c < gc->C; c++) {
        double alpha = 0;
        for (size_t p = 0; p < hw; p++) alpha += gc->grad[(size_t)c * hw + p];
        alpha /= (double)hw;
        for (size_t p = 0; p < hw; p++) gc->cam[p] += (float)(alpha * gc->act[(size_t)c * hw + p]);
    }
    for (size_t p = 0; p < hw; p++) gc->cam[p] = gc->cam[p] > 0 ? gc->cam[p] : 0;
    /* bilinear, half-pixel centres, clamped at the border */
    const int S = gc->S;
    float hi = 0;
    for (int y = 0; y < S; y++) {
        double fy = ((y + 0.5) * gc->h) / S - 0.5;
        int y0 = (int)floor(fy);
        double ty = fy - y0;
        int ya = y0 < 0 ? 0 : y0 >= gc->h ? gc->h - 1 : y0, yb = y0 + 1 >= gc->h ? gc->h - 1 : y0 + 1 < 0 ? 0 : y0 + 1;
        for (int xx = 0; xx < S; xx++) {
            double fx = ((xx + 0.5) * gc->w) / S - 0.5;
            int x0 = (int)floor(fx);
            double tx = fx - x0;
            int xa = x0 < 0 ? 0 : x0 >= gc->w ? gc->w - 1 : x0, xb = x0 + 1 >= gc->w ? gc->w - 1 : x0 + 1 < 0 ? 0 : x0 + 1;
            double v = (1 - ty) * ((1 - tx) * gc->cam[ya * gc->w + xa] + tx * gc->cam[ya * gc->w + xb]) +
                       ty * ((1 - tx) * gc->cam[yb * gc->w + xa] + tx * gc->cam[yb * gc->w + xb]);
            map[(size_t)y * S + xx] = (float)v;
            if (v > hi) hi = (float)v;
        }
    }
    if (hi > 0)
        for (size_t p = 0; p < (size_t)S * S; p++) map[p] /= hi;
    return FERC_OK;
}
