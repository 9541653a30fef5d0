/* nn: the network graph, its parameters, and its execution on a compute backend.
 *
 * A network is a DAG of nodes built in topological order by the nn_* builder functions
 * below. Residual adds and channel concatenations are ordinary nodes. Every trainable
 * parameter lives in ONE flat float buffer (g->params) and its gradient at the same offset
 * in g->grads; batch-norm running statistics live in g->buffers, and num_batches_tracked in
 * g->batches_tracked. Each parameter and buffer has its torchvision state_dict name
 * ("layer3.5.bn2.running_var"), so weights load and save by name.
 *
 * Building: builder functions return the new node's id (>= 0) or a negative status. Errors
 * are sticky: after the first failure every later builder call returns the same status, so
 * a model builder may check only the final nn_graph_finalize(). Messages name the node.
 *
 * Execution: nn_exec_create plans the graph for one input shape (N, C, H, W) on a backend
 * (oneDNN today): it chooses memory layouts, creates primitives and allocates every buffer
 * once, so that a training step allocates nothing. Tensors at the interface are float32 NCHW
 * (input) and (N, K) row-major (output).
 *
 * Memory: buffers are planned by liveness. In an inference plan two activations that are
 * never alive at the same time share memory (only the output and nodes marked with
 * nn_keep_output stay readable afterwards); in a training plan the forward activations
 * stay (backward reads them) and the gradients of activations share memory the same way
 * (only the input's, with NN_EXEC_INPUT_GRAD, stays readable). nn_exec_planned_bytes gives
 * the total a plan allocates.
 *
 * Freezing: a frozen parameter gets no gradient and no update; a node none of whose inputs
 * needs a gradient and whose own parameters are frozen is skipped in the backward pass, so a
 * frozen prefix of the network costs no backward work. A batch-norm node whose parameters are
 * frozen runs in evaluation mode (running statistics, no update), as in transfer learning.
 */
#ifndef FERC_NN_H
#define FERC_NN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum nn_op {
    NN_OP_INPUT,
    NN_OP_CONV2D,
    NN_OP_BATCHNORM2D,
    NN_OP_RELU,
    NN_OP_MAXPOOL2D,
    NN_OP_AVGPOOL2D,
    NN_OP_GLOBAL_AVGPOOL,   /* (N,C,H,W) -> (N,C,1,1), torch's AdaptiveAvgPool2d((1,1)) */
    NN_OP_FLATTEN,          /* (N,C,1,1) -> (N,C) */
    NN_OP_LINEAR,           /* (N,C) -> (N,K) */
    NN_OP_CONCAT,           /* along channels */
    NN_OP_ADD,              /* elementwise, same shapes */
    NN_OP_DROPOUT,          /* inverted dropout, seeded */
    NN_OP_CHANNEL_PAD,      /* (N,C,H,W) -> (N,C+extra,H,W), the new channels zero (tf.pad on C) */
    NN_OP_COUNT
} nn_op;

const char *nn_op_name(nn_op op);

typedef enum nn_param_kind {
    NN_PARAM_WEIGHT,        /* trainable, in g->params */
    NN_PARAM_BIAS,          /* trainable, in g->params */
    NN_BUFFER_RUNNING_MEAN, /* in g->buffers */
    NN_BUFFER_RUNNING_VAR,  /* in g->buffers */
    NN_BUFFER_NUM_BATCHES,  /* int64, in g->batches_tracked (count 1) */
} nn_param_kind;

#define NN_NAME_MAX 96
#define NN_MAX_DIMS 4

typedef struct nn_param {
    char name[NN_NAME_MAX];     /* torchvision state_dict key */
    nn_param_kind kind;
    int ndim;
    int64_t shape[NN_MAX_DIMS]; /* torch's shape: conv weight (O, I, kh, kw), linear (O, I) */
    size_t offset;              /* element offset into params / buffers / batches_tracked */
    size_t count;
    int node;                   /* the node that owns it */
    bool frozen;                /* trainable kinds only */
    int group;                  /* optimizer parameter group (0 by default) */
} nn_param;

static inline bool nn_param_trainable_kind(nn_param_kind k)
{
    return k == NN_PARAM_WEIGHT || k == NN_PARAM_BIAS;
}

/* pad NN_PAD_SAME: TensorFlow's "SAME" (output ceil(in / stride), the padding split with the
 * odd pixel at the bottom/right). groups > 1: grouped convolution (groups = in_channels =
 * out_channels: depthwise), weight (O, I / groups, k, k) as torch's. */
#define NN_PAD_SAME (-1)
typedef struct nn_conv_attr { int out_channels, kernel, stride, pad; bool bias; int groups; } nn_conv_attr;
typedef struct nn_pool_attr { int kernel, stride, pad; bool ceil_mode; bool count_include_pad; } nn_pool_attr;

typedef struct nn_node {
    nn_op op;
    char name[NN_NAME_MAX];     /* module name ("layer1.0.conv1"); generated for unnamed ops */
    int *inputs;                /* node ids, all smaller than this node's id */
    int ninputs;
    union {
        nn_conv_attr conv;
        nn_pool_attr pool;
        struct { int out_features; } linear;
        struct { float p; } dropout;
        struct { float eps, momentum; } bn;
        struct { int extra; } chpad;
    } attr;
    int param_first, param_count; /* range in g->param_table */
    int channels;               /* output channels (known at build time) */
    int n, h, w;                /* output shape, from the last nn_graph_infer_shapes */
    bool keep;                  /* its output stays readable after a forward pass (nn_keep_output) */
} nn_node;

typedef struct nn_graph {
    nn_node *nodes;
    int nnodes, cap_nodes;
    nn_param *param_table;
    int nparams, cap_params;
    int output;                 /* node id of the network output (default: last node) */
    int error;                  /* sticky builder status */
    /* Flat storage, allocated by nn_graph_finalize. */
    size_t n_params, n_buffers, n_batches;
    float *params;              /* all trainable parameters */
    float *grads;               /* gradients, same layout as params */
    float *buffers;             /* running means and variances */
    int64_t *batches_tracked;   /* one per batch-norm layer */
    bool finalized;
} nn_graph;

/* ---- building ---------------------------------------------------------------------------- */
nn_graph *nn_graph_create(void);
void nn_graph_destroy(nn_graph *g);

int nn_input(nn_graph *g, int channels);
int nn_conv2d(nn_graph *g, const char *name, int x, int out_channels, int kernel, int stride, int pad,
              bool bias);
/* nn_conv2d with groups and TensorFlow's SAME padding (pad = NN_PAD_SAME) */
int nn_conv2d_grouped(nn_graph *g, const char *name, int x, int out_channels, int kernel, int stride, int pad,
                      int groups, bool bias);
/* Appends `extra` zero channels (TensorFlow's Pad on the channel axis, as BlazeFace uses it to
 * widen a residual shortcut). */
int nn_channel_pad(nn_graph *g, int x, int extra);
int nn_batchnorm2d(nn_graph *g, const char *name, int x);          /* eps 1e-5, momentum 0.1 */
int nn_relu(nn_graph *g, int x);
int nn_maxpool2d(nn_graph *g, int x, int kernel, int stride, int pad);
int nn_avgpool2d(nn_graph *g, int x, int kernel, int stride, int pad); /* count_include_pad=True */
int nn_global_avgpool(nn_graph *g, int x);
int nn_flatten(nn_graph *g, int x);
int nn_linear(nn_graph *g, const char *name, int x, int out_features);
int nn_concat(nn_graph *g, const int *xs, int n);
int nn_add(nn_graph *g, int a, int b);
int nn_dropout(nn_graph *g, int x, float p);
/* Marks the output node (default: the last node added). */
int nn_set_output(nn_graph *g, int x);
/* Keeps node x's output readable with nn_exec_node_output after an inference pass. Plans
 * otherwise let activations that are no longer needed share memory (see nn_exec_create);
 * the network's output is always kept. */
int nn_keep_output(nn_graph *g, int x);
/* Allocates the flat buffers (zeroed; running_var set to 1) once the graph is complete.
 * Returns the sticky builder error, if any. */
int nn_graph_finalize(nn_graph *g);

/* ---- parameters -------------------------------------------------------------------------- */
int nn_find_param(const nn_graph *g, const char *name);     /* index or -1 */
/* Pointer to a parameter's or buffer's float data (NULL for num_batches_tracked). */
float *nn_param_data(const nn_graph *g, const nn_param *p);
/* Number of trainable parameter elements (torch's sum(p.numel() for p in parameters())). */
size_t nn_param_count(const nn_graph *g);
/* Freezes/unfreezes every trainable parameter whose name starts with `prefix` ("" = all). */
void nn_freeze_prefix(nn_graph *g, const char *prefix, bool frozen);

/* ---- shapes and cost --------------------------------------------------------------------- */
/* Computes every node's output shape for an input of (n, c, h, w). An input too small for
 * the network (a pooling window larger than its input, say) is FERC_ERR_SHAPE naming the node. */
int nn_graph_infer_shapes(nn_graph *g, int n, int c, int h, int w);
/* Forward FLOPs (2 x multiply-adds of conv and linear layers) for the inferred shapes. */
double nn_graph_flops(const nn_graph *g);
/* Bytes of float32 activations a training step keeps for the inferred shapes (outputs of
 * every node plus their gradients). */
size_t nn_graph_activation_bytes(const nn_graph *g);

/* ---- execution --------------------------------------------------------------------------- */
typedef struct nn_backend nn_backend;   /* see nn_backend.h */
typedef struct nn_exec nn_exec;

enum {
    NN_EXEC_TRAINING = 1,   /* plan for backward (keep activations, allocate gradients) */
    NN_EXEC_INPUT_GRAD = 2, /* also compute the gradient with respect to the input */
    /* Mixed precision: activations, their gradients and convolution weights go to the
     * kernels in bfloat16; parameters, gradients, optimizer state, batch-norm statistics,
     * the linear head, the input and the output stay float32 (so does everything a plan
     * shows through this API). No loss scaling is needed: bf16 has float32's exponent range.
     * Needs a CPU with AVX-512 (AVX512_BF16 for speed); elsewhere planning fails with
     * FERC_ERR_BACKEND. */
    NN_EXEC_BF16 = 4,
    /* Plan only, to learn nn_exec_planned_bytes: nothing is allocated and the plan cannot run. */
    NN_EXEC_DRY_RUN = 8,
    /* Every buffer its own (no liveness sharing): for tests and for reading every node. */
    NN_EXEC_NO_SHARING = 16,
};

/* Plans g for input (n, c, h, w) on `backend` (NULL: the default, oneDNN). */
int nn_exec_create(nn_exec **ex, nn_graph *g, const nn_backend *backend, int n, int c, int h, int w,
                   unsigned flags);
void nn_exec_destroy(nn_exec *ex);
/* x: (N, C, H, W) float32. train: batch norm uses batch statistics and updates running
 * statistics (except where frozen), dropout is active. out: (N, K), may be NULL. */
int nn_exec_forward(nn_exec *ex, const float *x, bool train, float *out);
/* dout: (N, K) gradient of the loss with respect to the output. Writes g->grads for every
 * non-frozen parameter (overwriting). Requires NN_EXEC_TRAINING and a preceding training
 * forward pass. */
int nn_exec_backward(nn_exec *ex, const float *dout);
/* A plan caches the backend layout of weights that cannot change between passes (frozen
 * parameters, or every parameter of an inference plan). Call this after writing such
 * parameters (loading weights into g->params) while the plan exists. The optimizer changes
 * only trainable parameters, which are never cached. */
void nn_exec_params_changed(nn_exec *ex);
/* Seeds dropout masks: they depend on (seed, step, node) only. */
void nn_exec_set_seed(nn_exec *ex, uint64_t seed, uint64_t step);
/* Reads back any node's output as float32 NCHW (for tests and feature caching). A batch norm
 * or add whose only consumer is a ReLU is fused with it and reports the ReLU's output. */
int nn_exec_node_output(nn_exec *ex, int node, float *out, size_t count);
/* Reads back the gradient of a node's output after nn_exec_backward (node 0 = the input,
 * with NN_EXEC_INPUT_GRAD), as float32 NCHW. */
int nn_exec_node_grad(nn_exec *ex, int node, float *out, size_t count);
/* Bytes the plan allocated: activations, their gradients, layout copies of weights,
 * workspaces and scratch (not the graph's own parameters, gradients and buffers). */
size_t nn_exec_planned_bytes(const nn_exec *ex);

/* ---- loss -------------------------------------------------------------------------------- */
/* Softmax cross-entropy with torch.nn.functional.cross_entropy semantics (mean reduction,
 * optional label_smoothing, optional per-class weights; NULL for none). logits (N, K);
 * labels in [0, K). Writes the mean loss, and, when non-NULL, dlogits (N, K) = dloss/dlogits
 * and probs (N, K) softmax probabilities. */
int nn_softmax_cross_entropy(const float *logits, const int *labels, int n, int k,
                             float label_smoothing, const float *class_weights, float *loss,
                             float *dlogits, float *probs);
/* Cross-entropy against target distributions (torch.nn.functional.cross_entropy with class
 * probabilities as the target, mean reduction): loss = mean_i -sum_c q_ic log softmax(z_i)_c.
 * targets (N, K), each entry finite and >= 0 (rows normally sum to 1: a teacher's softmax in
 * knowledge distillation). dlogits (N, K), when non-NULL: (softmax(z_i) * sum_c q_ic - q_i) / N. */
int nn_soft_cross_entropy(const float *logits, const float *targets, int n, int k, float *loss, float *dlogits);

#endif
