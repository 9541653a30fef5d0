/* The narrow interface between the generic executor (exec.c) and a compute backend.
 *
 * The executor decides WHAT runs (which nodes need a backward pass, which inputs need a
 * gradient, which batch-norm layers run in evaluation mode, where gradients accumulate);
 * a backend decides HOW: memory layouts, kernels, buffers. A backend sees the graph and
 * the per-node flags below and implements five calls. A second backend (CUDA + cuDNN)
 * fills in the same struct; models, optimizers and the trainer do not change.
 */
#ifndef FERC_NN_BACKEND_H
#define FERC_NN_BACKEND_H

#include "nn/nn.h"

struct nn_exec {
    nn_graph *g;
    const nn_backend *backend;
    void *state;                /* the backend's plan */
    int n, c, h, w;             /* planned input shape */
    unsigned flags;
    /* Per node, computed before planning: */
    bool *trainable;            /* owns at least one non-frozen trainable parameter */
    bool *needs_grad;           /* output depends on a trainable parameter: runs backward */
    bool *bn_eval;              /* batch norm in evaluation mode even in a training pass */
    int *nconsumers;            /* nodes that read this node's output */
    int *last_consumer;         /* the consumer whose backward runs first (highest id) */
    uint64_t seed, step;        /* dropout streams */
    bool did_train_forward;
    bool params_changed;        /* set by nn_exec_params_changed: constant-weight caches are stale */
};

struct nn_backend {
    const char *name;
    /* Can this backend run the op? The executor refuses a graph with an unsupported op. */
    bool (*supports)(nn_op op);
    /* Builds everything needed to run ex->g for the planned shape; stores it in ex->state. */
    int (*plan)(nn_exec *ex);
    void (*release)(nn_exec *ex);
    int (*forward)(nn_exec *ex, const float *x, bool train, float *out);
    int (*backward)(nn_exec *ex, const float *dout);
    /* Copies a node's output (grad false) or its gradient (grad true) out as plain NCHW. */
    int (*node_output)(nn_exec *ex, int node, bool grad, float *out, size_t count);
    /* Is that still there after a pass (not shared with a later activation)? */
    bool (*readable)(const nn_exec *ex, int node, bool grad);
    /* Bytes the plan allocated (see nn_exec_planned_bytes). */
    size_t (*planned_bytes)(const nn_exec *ex);
};

/* The oneDNN (CPU) backend. */
const nn_backend *nn_backend_onednn(void);

#endif
