/* The network graph: builders with sticky errors, the parameter table and its flat storage,
 * shape inference and cost estimates. Nothing here touches a compute backend. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "nn/nn.h"

static const char *const op_names[NN_OP_COUNT] = {
    [NN_OP_INPUT] = "input",
    [NN_OP_CONV2D] = "conv2d",
    [NN_OP_BATCHNORM2D] = "batchnorm2d",
    [NN_OP_RELU] = "relu",
    [NN_OP_MAXPOOL2D] = "maxpool2d",
    [NN_OP_AVGPOOL2D] = "avgpool2d",
    [NN_OP_GLOBAL_AVGPOOL] = "global_avgpool",
    [NN_OP_FLATTEN] = "flatten",
    [NN_OP_LINEAR] = "linear",
    [NN_OP_CONCAT] = "concat",
    [NN_OP_ADD] = "add",
    [NN_OP_DROPOUT] = "dropout",
    [NN_OP_CHANNEL_PAD] = "channel_pad",
};
_Static_assert(sizeof op_names / sizeof op_names[0] == NN_OP_COUNT, "op_names must cover nn_op");

const char *nn_op_name(nn_op op) { return (unsigned)op < NN_OP_COUNT ? op_names[op] : "?"; }

nn_graph *nn_graph_create(void)
{
    nn_graph *g = calloc(1, sizeof *g);
    if (!g) {
        ferc_set_error(FERC_ERR_NOMEM, "out of memory");
        return NULL;
    }
    g->output = -1;
    return g;
}

void nn_graph_destroy(nn_graph *g)
{
    if (!g) return;
    for (int i = 0; i < g->nnodes; i++) free(g->nodes[i].inputs);
    free(g->nodes);
    free(g->param_table);
    free(g->params);
    free(g->grads);
    free(g->buffers);
    free(g->batches_tracked);
    free(g);
}

static int fail(nn_graph *g, int code, const char *fmt, ...) FERC_PRINTF(3, 4);
static int fail(nn_graph *g, int code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ferc_set_error(code, "%s", msg);
    g->error = code;
    return code;
}

/* Appends a node; checks that inputs exist. Returns the id or a negative status. */
static int add_node(nn_graph *g, nn_op op, const char *name, const int *inputs, int ninputs)
{
    if (!g) return ferc_set_error(FERC_ERR_INVALID, "nn: NULL graph");
    if (g->error) return g->error;
    if (g->finalized) return fail(g, FERC_ERR_INVALID, "nn: cannot add node '%s' to a finalized graph", name ? name : nn_op_name(op));
    for (int i = 0; i < ninputs; i++) {
        if (inputs[i] < 0 || inputs[i] >= g->nnodes) {
            char where[160];
            snprintf(where, sizeof where, "%s", name ? name : nn_op_name(op));
            return fail(g, FERC_ERR_INVALID, "nn: node '%s' has an input that is not an existing node", where);
        }
    }
    if (g->nnodes == g->cap_nodes) {
        int cap = g->cap_nodes ? 2 * g->cap_nodes : 256;
        nn_node *nodes = realloc(g->nodes, (size_t)cap * sizeof *nodes);
        if (!nodes) return fail(g, FERC_ERR_NOMEM, "out of memory");
        g->nodes = nodes;
        g->cap_nodes = cap;
    }
    int id = g->nnodes;
    nn_node *n = &g->nodes[id];
    memset(n, 0, sizeof *n);
    n->op = op;
    if (name && *name) {
        if (strlen(name) >= NN_NAME_MAX - 24)
            return fail(g, FERC_ERR_INVALID, "nn: node name '%s' is too long", name);
        snprintf(n->name, sizeof n->name, "%s", name);
    } else if (ninputs > 0) {
        /* "relu<-layer1.0.bn1": readable in error messages and layer tables. */
        char tmp[NN_NAME_MAX];
        snprintf(tmp, sizeof tmp, "%s#%d", nn_op_name(op), id);
        snprintf(n->name, sizeof n->name, "%s", tmp);
    } else {
        snprintf(n->name, sizeof n->name, "%s", nn_op_name(op));
    }
    if (ninputs) {
        n->inputs = malloc((size_t)ninputs * sizeof(int));
        if (!n->inputs) return fail(g, FERC_ERR_NOMEM, "out of memory");
        memcpy(n->inputs, inputs, (size_t)ninputs * sizeof(int));
    }
    n->ninputs = ninputs;
    n->param_first = g->nparams;
    n->channels = ninputs ? g->nodes[inputs[0]].channels : 0;
    g->nnodes++;
    return id;
}

static int add_param(nn_graph *g, int node, const char *suffix, nn_param_kind kind, int ndim,
                     const int64_t *shape)
{
    if (g->nparams == g->cap_params) {
        int cap = g->cap_params ? 2 * g->cap_params : 512;
        nn_param *t = realloc(g->param_table, (size_t)cap * sizeof *t);
        if (!t) return fail(g, FERC_ERR_NOMEM, "out of memory");
        g->param_table = t;
        g->cap_params = cap;
    }
    nn_param *p = &g->param_table[g->nparams];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s.%s", g->nodes[node].name, suffix);
    for (int i = 0; i < g->nparams; i++)
        if (!strcmp(g->param_table[i].name, p->name))
            return fail(g, FERC_ERR_INVALID, "nn: duplicate parameter name '%s'", p->name);
    p->kind = kind;
    p->ndim = ndim;
    p->count = 1;
    for (int i = 0; i < ndim; i++) {
        p->shape[i] = shape[i];
        p->count *= (size_t)shape[i];
    }
    p->node = node;
    if (nn_param_trainable_kind(kind)) {
        p->offset = g->n_params;
        g->n_params += p->count;
    } else if (kind == NN_BUFFER_NUM_BATCHES) {
        p->offset = g->n_batches;
        g->n_batches += 1;
    } else {
        p->offset = g->n_buffers;
        g->n_buffers += p->count;
    }
    g->nparams++;
    g->nodes[node].param_count++;
    return FERC_OK;
}

static int check_named(nn_graph *g, const char *name, nn_op op)
{
    if (g && !g->error && (!name || !*name))
        return fail(g, FERC_ERR_INVALID, "nn: a %s node needs a name (its parameters are named after it)%s",
                    nn_op_name(op), "");
    return g ? g->error : FERC_ERR_INVALID;
}

int nn_input(nn_graph *g, int channels)
{
    int id = add_node(g, NN_OP_INPUT, "input", NULL, 0);
    if (id < 0) return id;
    if (id != 0) return fail(g, FERC_ERR_INVALID, "nn: the input must be the first node");
    if (channels <= 0) return fail(g, FERC_ERR_INVALID, "nn: input channels must be positive");
    g->nodes[id].channels = channels;
    return id;
}

int nn_conv2d(nn_graph *g, const char *name, int x, int out_channels, int kernel, int stride, int pad, bool bias)
{
    return nn_conv2d_grouped(g, name, x, out_channels, kernel, stride, pad, 1, bias);
}

int nn_conv2d_grouped(nn_graph *g, const char *name, int x, int out_channels, int kernel, int stride, int pad,
                      int groups, bool bias)
{
    int rc = check_named(g, name, NN_OP_CONV2D);
    if (rc) return rc;
    int id = add_node(g, NN_OP_CONV2D, name, &x, 1);
    if (id < 0) return id;
    nn_node *n = &g->nodes[id];
    if (out_channels <= 0 || kernel <= 0 || stride <= 0 || (pad != NN_PAD_SAME && (pad < 0 || pad >= kernel)) ||
        groups < 1 || n->channels % groups || out_channels % groups)
        return fail(g, FERC_ERR_INVALID, "nn: conv2d '%s' has invalid hyper-parameters", name);
    n->attr.conv = (nn_conv_attr){out_channels, kernel, stride, pad, bias, groups};
    int64_t wshape[4] = {out_channels, n->channels / groups, kernel, kernel};
    n->channels = out_channels;
    if ((rc = add_param(g, id, "weight", NN_PARAM_WEIGHT, 4, wshape))) return rc;
    if (bias) {
        int64_t bshape[1] = {out_channels};
        if ((rc = add_param(g, id, "bias", NN_PARAM_BIAS, 1, bshape))) return rc;
    }
    return id;
}

int nn_channel_pad(nn_graph *g, int x, int extra)
{
    int id = add_node(g, NN_OP_CHANNEL_PAD, NULL, &x, 1);
    if (id < 0) return id;
    if (extra < 1) return fail(g, FERC_ERR_INVALID, "nn: channel pad of %d channels", extra);
    g->nodes[id].attr.chpad.extra = extra;
    g->nodes[id].channels += extra;
    return id;
}

int nn_batchnorm2d(nn_graph *g, const char *name, int x)
{
    int rc = check_named(g, name, NN_OP_BATCHNORM2D);
    if (rc) return rc;
    int id = add_node(g, NN_OP_BATCHNORM2D, name, &x, 1);
    if (id < 0) return id;
    nn_node *n = &g->nodes[id];
    n->attr.bn.eps = 1e-5f;
    n->attr.bn.momentum = 0.1f;
    int64_t c[1] = {n->channels};
    if ((rc = add_param(g, id, "weight", NN_PARAM_WEIGHT, 1, c))) return rc;
    if ((rc = add_param(g, id, "bias", NN_PARAM_BIAS, 1, c))) return rc;
    if ((rc = add_param(g, id, "running_mean", NN_BUFFER_RUNNING_MEAN, 1, c))) return rc;
    if ((rc = add_param(g, id, "running_var", NN_BUFFER_RUNNING_VAR, 1, c))) return rc;
    if ((rc = add_param(g, id, "num_batches_tracked", NN_BUFFER_NUM_BATCHES, 0, NULL))) return rc;
    return id;
}

int nn_relu(nn_graph *g, int x) { return add_node(g, NN_OP_RELU, NULL, &x, 1); }

static int pool(nn_graph *g, nn_op op, int x, int kernel, int stride, int pad)
{
    int id = add_node(g, op, NULL, &x, 1);
    if (id < 0) return id;
    if (kernel <= 0 || stride <= 0 || pad < 0 || 2 * pad > kernel)
        return fail(g, FERC_ERR_INVALID, "nn: %s '%s' has invalid hyper-parameters", nn_op_name(op), g->nodes[id].name);
    g->nodes[id].attr.pool = (nn_pool_attr){kernel, stride, pad, false, true};
    return id;
}

int nn_maxpool2d(nn_graph *g, int x, int kernel, int stride, int pad) { return pool(g, NN_OP_MAXPOOL2D, x, kernel, stride, pad); }
int nn_avgpool2d(nn_graph *g, int x, int kernel, int stride, int pad) { return pool(g, NN_OP_AVGPOOL2D, x, kernel, stride, pad); }
int nn_global_avgpool(nn_graph *g, int x) { return add_node(g, NN_OP_GLOBAL_AVGPOOL, NULL, &x, 1); }
int nn_flatten(nn_graph *g, int x) { return add_node(g, NN_OP_FLATTEN, NULL, &x, 1); }

int nn_linear(nn_graph *g, const char *name, int x, int out_features)
{
    int rc = check_named(g, name, NN_OP_LINEAR);
    if (rc) return rc;
    int id = add_node(g, NN_OP_LINEAR, name, &x, 1);
    if (id < 0) return id;
    if (out_features <= 0) return fail(g, FERC_ERR_INVALID, "nn: linear '%s' needs out_features > 0", name);
    nn_node *n = &g->nodes[id];
    n->attr.linear.out_features = out_features;
    int64_t w[2] = {out_features, n->channels}, b[1] = {out_features};
    n->channels = out_features;
    if ((rc = add_param(g, id, "weight", NN_PARAM_WEIGHT, 2, w))) return rc;
    if ((rc = add_param(g, id, "bias", NN_PARAM_BIAS, 1, b))) return rc;
    return id;
}

int nn_concat(nn_graph *g, const int *xs, int n)
{
    if (g && !g->error && n < 1) return fail(g, FERC_ERR_INVALID, "nn: concat needs at least one input");
    int id = add_node(g, NN_OP_CONCAT, NULL, xs, n);
    if (id < 0) return id;
    int c = 0;
    for (int i = 0; i < n; i++) c += g->nodes[xs[i]].channels;
    g->nodes[id].channels = c;
    return id;
}

int nn_add(nn_graph *g, int a, int b)
{
    int in[2] = {a, b};
    int id = add_node(g, NN_OP_ADD, NULL, in, 2);
    if (id < 0) return id;
    if (g->nodes[a].channels != g->nodes[b].channels) {
        char ca[160], cb[160];
        snprintf(ca, sizeof ca, "%s' (%d channels", g->nodes[a].name, g->nodes[a].channels);
        snprintf(cb, sizeof cb, "%s' (%d channels)", g->nodes[b].name, g->nodes[b].channels);
        return fail(g, FERC_ERR_SHAPE, "nn: add of '%s) and '%s", ca, cb);
    }
    return id;
}

int nn_dropout(nn_graph *g, int x, float p)
{
    int id = add_node(g, NN_OP_DROPOUT, NULL, &x, 1);
    if (id < 0) return id;
    if (!(p >= 0.0f && p < 1.0f)) return fail(g, FERC_ERR_INVALID, "nn: dropout probability must be in [0, 1)");
    g->nodes[id].attr.dropout.p = p;
    return id;
}

int nn_set_output(nn_graph *g, int x)
{
    if (g->error) return g->error;
    if (x < 0 || x >= g->nnodes) return fail(g, FERC_ERR_INVALID, "nn: output is not a node");
    g->output = x;
    return FERC_OK;
}

int nn_keep_output(nn_graph *g, int x)
{
    if (g->error) return g->error;
    if (x < 0 || x >= g->nnodes) return fail(g, FERC_ERR_INVALID, "nn: keep_output of a node that does not exist");
    g->nodes[x].keep = true;
    return FERC_OK;
}

int nn_graph_finalize(nn_graph *g)
{
    if (!g) return ferc_set_error(FERC_ERR_INVALID, "nn: NULL graph");
    if (g->error) return g->error;
    if (g->finalized) return FERC_OK;
    if (g->nnodes < 2 || g->nodes[0].op != NN_OP_INPUT)
        return fail(g, FERC_ERR_INVALID, "nn: a graph needs an input node and at least one op");
    if (g->output < 0) g->output = g->nnodes - 1;
    g->params = calloc(g->n_params ? g->n_params : 1, sizeof(float));
    g->grads = calloc(g->n_params ? g->n_params : 1, sizeof(float));
    g->buffers = calloc(g->n_buffers ? g->n_buffers : 1, sizeof(float));
    g->batches_tracked = calloc(g->n_batches ? g->n_batches : 1, sizeof(int64_t));
    if (!g->params || !g->grads || !g->buffers || !g->batches_tracked)
        return fail(g, FERC_ERR_NOMEM, "nn: out of memory for %zu parameters", g->n_params);
    for (int i = 0; i < g->nparams; i++) {
        nn_param *p = &g->param_table[i];
        if (p->kind == NN_BUFFER_RUNNING_VAR)
            for (size_t j = 0; j < p->count; j++) g->buffers[p->offset + j] = 1.0f;
        /* torch's BatchNorm2d starts with weight 1, bias 0. */
        if (g->nodes[p->node].op == NN_OP_BATCHNORM2D && p->kind == NN_PARAM_WEIGHT)
            for (size_t j = 0; j < p->count; j++) g->params[p->offset + j] = 1.0f;
    }
    g->finalized = true;
    return FERC_OK;
}

int nn_find_param(const nn_graph *g, const char *name)
{
    for (int i = 0; i < g->nparams; i++)
        if (!strcmp(g->param_table[i].name, name)) return i;
    return -1;
}

float *nn_param_data(const nn_graph *g, const nn_param *p)
{
    if (nn_param_trainable_kind(p->kind)) return g->params + p->offset;
    if (p->kind == NN_BUFFER_NUM_BATCHES) return NULL;
    return g->buffers + p->offset;
}

size_t nn_param_count(const nn_graph *g) { return g->n_params; }

void nn_freeze_prefix(nn_graph *g, const char *prefix, bool frozen)
{
    size_t len = strlen(prefix);
    for (int i = 0; i < g->nparams; i++) {
        nn_param *p = &g->param_table[i];
        if (nn_param_trainable_kind(p->kind) && !strncmp(p->name, prefix, len)) p->frozen = frozen;
    }
}

static int out_size(int in, int k, int s, int p) { return (in + 2 * p - k) / s + 1; }

int nn_graph_infer_shapes(nn_graph *g, int n, int c, int h, int w)
{
    if (g->error) return g->error;
    if (n <= 0 || h <= 0 || w <= 0) return ferc_set_error(FERC_ERR_SHAPE, "nn: bad input shape %dx%dx%dx%d", n, c, h, w);
    if (c != g->nodes[0].channels)
        return ferc_set_error(FERC_ERR_SHAPE, "nn: the network takes %d input channels, not %d", g->nodes[0].channels, c);
    for (int i = 0; i < g->nnodes; i++) {
        nn_node *nd = &g->nodes[i];
        const nn_node *in = nd->ninputs ? &g->nodes[nd->inputs[0]] : NULL;
        nd->n = n;
        switch (nd->op) {
        case NN_OP_INPUT: nd->h = h; nd->w = w; break;
        case NN_OP_CONV2D: {
            const nn_conv_attr *a = &nd->attr.conv;
            if (a->pad == NN_PAD_SAME) {
                nd->h = (in->h + a->stride - 1) / a->stride;
                nd->w = (in->w + a->stride - 1) / a->stride;
                break;
            }
            nd->h = in->h + 2 * a->pad < a->kernel ? 0 : out_size(in->h, a->kernel, a->stride, a->pad);
            nd->w = in->w + 2 * a->pad < a->kernel ? 0 : out_size(in->w, a->kernel, a->stride, a->pad);
            break;
        }
        case NN_OP_MAXPOOL2D:
        case NN_OP_AVGPOOL2D: {
            const nn_pool_attr *a = &nd->attr.pool;
            nd->h = in->h + 2 * a->pad < a->kernel ? 0 : out_size(in->h, a->kernel, a->stride, a->pad);
            nd->w = in->w + 2 * a->pad < a->kernel ? 0 : out_size(in->w, a->kernel, a->stride, a->pad);
            break;
        }
        case NN_OP_GLOBAL_AVGPOOL: nd->h = nd->w = 1; break;
        case NN_OP_FLATTEN:
            if (in->h != 1 || in->w != 1)
                return ferc_set_error(FERC_ERR_SHAPE, "nn: flatten '%s' needs a 1x1 input, got %dx%d", nd->name, in->h, in->w);
            nd->h = nd->w = 1;
            break;
        case NN_OP_LINEAR:
            if (in->h != 1 || in->w != 1)
                return ferc_set_error(FERC_ERR_SHAPE, "nn: linear '%s' needs a flattened (Nx%dx1x1) input, got %dx%d",
                                      nd->name, in->channels, in->h, in->w);
            nd->h = nd->w = 1;
            break;
        case NN_OP_CONCAT:
        case NN_OP_ADD:
            nd->h = in->h;
            nd->w = in->w;
            for (int j = 1; j < nd->ninputs; j++) {
                const nn_node *o = &g->nodes[nd->inputs[j]];
                if (o->h != in->h || o->w != in->w)
                    return ferc_set_error(FERC_ERR_SHAPE, "nn: %s '%s': input '%s' is %dx%d but '%s' is %dx%d",
                                          nn_op_name(nd->op), nd->name, in->name, in->h, in->w, o->name, o->h, o->w);
            }
            break;
        default: nd->h = in->h; nd->w = in->w; break;
        }
        if (nd->h <= 0 || nd->w <= 0)
            return ferc_set_error(FERC_ERR_SHAPE,
                                  "nn: input %dx%d is too small for the network: '%s' (%s) would get an empty output",
                                  h, w, nd->name, nn_op_name(nd->op));
    }
    return FERC_OK;
}

double nn_graph_flops(const nn_graph *g)
{
    double f = 0;
    for (int i = 0; i < g->nnodes; i++) {
        const nn_node *nd = &g->nodes[i];
        if (nd->op == NN_OP_CONV2D) {
            const nn_node *in = &g->nodes[nd->inputs[0]];
            f += 2.0 * nd->n * nd->h * nd->w * (double)nd->channels * (in->channels / nd->attr.conv.groups) *
                 nd->attr.conv.kernel * nd->attr.conv.kernel;
        } else if (nd->op == NN_OP_LINEAR) {
            const nn_node *in = &g->nodes[nd->inputs[0]];
            f += 2.0 * nd->n * (double)nd->channels * in->channels;
        }
    }
    return f;
}

size_t nn_graph_activation_bytes(const nn_graph *g)
{
    size_t b = 0;
    for (int i = 0; i < g->nnodes; i++) {
        const nn_node *nd = &g->nodes[i];
        if (nd->op == NN_OP_FLATTEN) continue; /* a view */
        b += 2 * (size_t)nd->n * (size_t)nd->channels * (size_t)nd->h * (size_t)nd->w * sizeof(float);
    }
    return b;
}
