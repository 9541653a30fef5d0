/* The oneDNN backend.
 *
 * Planning turns the graph into three flat lists of steps (a primitive with its arguments,
 * or a small C callback): a training forward pass, an evaluation forward pass and a
 * backward pass. Every primitive, memory object and buffer is created here once; running a
 * list allocates nothing.
 *
 * Layouts: convolutions choose their own formats (dnnl_format_tag_any), which on AVX-512
 * means nChw16c activations and blocked weights; batch norm, ReLU, pooling, add and concat
 * take their input's layout, so activations stay blocked from the first convolution to the
 * global pooling and are reordered only where a primitive insists. Parameters and gradients
 * stay in torch's layout in the graph's flat buffers; convolution weights are reordered into
 * the blocked layout at each forward pass (they change at every step) and weight gradients
 * back after the backward-weights primitive.
 *
 * Gradient accumulation: a node read by several consumers receives its gradient from each.
 * Backward runs in reverse node order, so the consumer with the highest id writes the
 * gradient buffer first (plainly) and the others add to it (a reorder with a sum post-op, or
 * a temporary followed by one). This is decided at plan time.
 *
 * Scratch: primitives use one user-managed scratchpad; short-lived gradient temporaries share
 * one buffer (each is produced and consumed inside one node's backward step).
 *
 * Liveness: node outputs of an inference plan and activation gradients of a training plan are
 * virtual buffers ("vbufs") with a lifetime on one time axis -- forward step of node i at time
 * i, its backward step at 2N - i, the output gradient's copy-in at N -- and memories that are
 * views of one (a 2D view for the linear layer, a channel slice for concat) hang on the same
 * vbuf. After planning, vbufs whose lifetimes do not overlap are packed into one arena (the
 * largest first, each at the lowest offset free for its lifetime) and every memory gets its
 * address. Outputs that must stay readable (the network's, nn_keep_output's) live to the end.
 * A layout with padding (blocked channels not a multiple of the block) keeps its own zeroed
 * buffer, since kernels rely on the padding staying zero.
 */
#include <dnnl.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "nn/backend.h"

typedef struct step step;
typedef struct ond ond;
typedef void (*step_fn)(ond *b, const step *s);

struct step {
    dnnl_primitive_t prim;  /* NULL: call fn */
    int nargs;
    dnnl_exec_arg_t *args;  /* nargs + 1 slots: the scratchpad is appended when planning ends */
    step_fn fn;
    int node;
    dnnl_memory_t m0, m1, m2; /* callback operands */
};

typedef struct step_list {
    step *v;
    int n, cap;
} step_list;

typedef struct ond_node {
    dnnl_memory_desc_t md;  /* output layout */
    dnnl_memory_t mem;      /* output */
    dnnl_memory_t diff;     /* gradient of the output (needs_grad nodes) */
    dnnl_memory_t mean, var;/* batch norm: batch statistics saved for backward */
    uint8_t *mask;          /* dropout */
    /* Fusions with a following ReLU (its only consumer). BN: the ReLU runs inside the batch
     * norm forward and backward (dnnl_fuse_norm_relu); the ReLU node aliases the output and
     * its gradient and runs nothing. Add: the ReLU is a post-op of the forward only; the
     * ReLU node aliases the output and keeps its own backward step. */
    bool relu_fused_full, relu_fused_fwd;
    size_t mask_len;
} ond_node;

typedef struct vbuf {
    size_t size, offset;
    int first, last;        /* lifetime, inclusive (see the top) */
    dnnl_memory_t *mems;    /* the memories that get this buffer's address */
    int nmems, cap;
} vbuf;

struct ond {
    nn_exec *ex;
    nn_graph *g;
    dnnl_engine_t eng;
    dnnl_stream_t stream;
    dnnl_primitive_attr_t attr, attr_sum, attr_relu;  /* user scratchpad; + sum / relu post-op */
    ond_node *nodes;
    step_list fwd_train, fwd_eval, bwd;
    step_list once;            /* weight reorders of constant weights; rerun after nn_exec_params_changed */
    bool once_done;
    /* Everything to destroy. */
    dnnl_primitive_t *prims;
    int nprims, cap_prims;
    dnnl_memory_t *mems;
    int nmems, cap_mems;
    void **allocs;             /* step argument arrays */
    int nallocs, cap_allocs;
    dnnl_memory_t *tmp_mems;   /* memories over the shared temporary buffer */
    int ntmp, cap_tmp;
    size_t tmp_size, scratch_size;
    void *tmp_buf, *scratch_buf;
    dnnl_memory_t scratch_mem;
    /* Interface memories (plain NCHW / NC). */
    dnnl_memory_t in_user, out_user, dout_user;
    dnnl_primitive_t out_reorder, dout_reorder;
    /* Data type of activations and their gradients between primitives: f32, or bf16 with
     * NN_EXEC_BF16 (then convolution weights go to the kernels in bf16 too; parameters,
     * their gradients, batch-norm statistics, the linear head and the output stay f32). */
    dnnl_data_type_t act;
    /* Liveness planning: per node the vbuf of its output and of its gradient (-1: a buffer
     * of its own), and the arena they are packed into. */
    bool share_fwd, share_diff;
    vbuf *vbs;
    int nvb, cap_vb;
    int *out_vb, *diff_vb;
    bool *fwd_needed;   /* training: the backward pass reads this node's output */
    void *arena;
    size_t arena_size, own_bytes; /* own_bytes: buffers allocated one by one */
    int err;
};

/* ---- helpers ------------------------------------------------------------------------------ */

static int dnnl_fail(ond *b, dnnl_status_t s, const char *what, int node)
{
    const char *nm = node >= 0 ? b->g->nodes[node].name : "(network)";
    const char *why = s == dnnl_unimplemented ? "no implementation for these shapes/layouts"
                      : s == dnnl_out_of_memory ? "out of memory"
                      : s == dnnl_invalid_arguments ? "invalid arguments"
                                                    : "runtime error";
    b->err = ferc_set_error(s == dnnl_out_of_memory ? FERC_ERR_NOMEM : FERC_ERR_BACKEND,
                            "oneDNN %s for node '%s' failed: %s (status %d)", what, nm, why, (int)s);
    return b->err;
}

#define TRY(call, what, node)                                                     \
    do {                                                                          \
        dnnl_status_t s_ = (call);                                                \
        if (s_ != dnnl_success) return dnnl_fail(b, s_, what, node);              \
    } while (0)

#define CHECK_RC(expr)             \
    do {                           \
        int rc_ = (expr);          \
        if (rc_) return rc_;       \
    } while (0)

static int grow(void **v, int *cap, int n, size_t elem)
{
    if (n < *cap) return FERC_OK;
    int c = *cap ? 2 * *cap : 64;
    void *p = realloc(*v, (size_t)c * elem);
    if (!p) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    *v = p;
    *cap = c;
    return FERC_OK;
}

static int push_step(step_list *l, const step *s)
{
    CHECK_RC(grow((void **)&l->v, &l->cap, l->n, sizeof(step)));
    l->v[l->n++] = *s;
    return FERC_OK;
}

/* Creates a memory; handle NULL = library-allocated. */
static int mk_mem(ond *b, dnnl_memory_t *m, const dnnl_memory_desc_t *md, void *handle, int node)
{
    bool dry = (b->ex->flags & NN_EXEC_DRY_RUN) && !handle;
    TRY(dnnl_memory_create(m, md, b->eng, handle ? handle : dry ? DNNL_MEMORY_NONE : DNNL_MEMORY_ALLOCATE),
        "memory allocation", node);
    CHECK_RC(grow((void **)&b->mems, &b->cap_mems, b->nmems, sizeof(dnnl_memory_t)));
    b->mems[b->nmems++] = *m;
    if (!handle) {
        /* Zero so that padded blocked channels start (and stay) zero. */
        void *h;
        dnnl_memory_get_data_handle(*m, &h);
        if (h) memset(h, 0, dnnl_memory_desc_get_size(md));
        b->own_bytes += dnnl_memory_desc_get_size(md);
    }
    return FERC_OK;
}

/* ---- liveness planning (see the top) ------------------------------------------------------ */

/* No padding: the buffer holds exactly the tensor's elements. */
static bool md_unpadded(const dnnl_memory_desc_t *md)
{
    size_t n = 1;
    for (int d = 0; d < md->ndims; d++) n *= (size_t)md->dims[d];
    size_t es = md->data_type == dnnl_f32 || md->data_type == dnnl_s32 ? 4 : md->data_type == dnnl_bf16 || md->data_type == dnnl_f16 ? 2 : 1;
    return md->ndims > 0 && dnnl_memory_desc_get_size(md) == n * es;
}

static int vb_attach(ond *b, int id, dnnl_memory_t m)
{
    vbuf *v = &b->vbs[id];
    CHECK_RC(grow((void **)&v->mems, &v->cap, v->nmems, sizeof(dnnl_memory_t)));
    v->mems[v->nmems++] = m;
    return FERC_OK;
}

/* A memory with no buffer yet, registered for destruction and hung on vbuf `id`. */
/* A memory without a buffer yet (owned by the backend like every other). */
static int mk_bare(ond *b, dnnl_memory_t *m, const dnnl_memory_desc_t *md, int node)
{
    TRY(dnnl_memory_create(m, md, b->eng, DNNL_MEMORY_NONE), "memory creation", node);
    CHECK_RC(grow((void **)&b->mems, &b->cap_mems, b->nmems, sizeof(dnnl_memory_t)));
    b->mems[b->nmems++] = *m;
    return FERC_OK;
}

static int mk_vmem(ond *b, dnnl_memory_t *m, const dnnl_memory_desc_t *md, int id, int node)
{
    CHECK_RC(mk_bare(b, m, md, node));
    return vb_attach(b, id, *m);
}

/* A new vbuf of md's size with a memory on it. */
static int mk_shared(ond *b, dnnl_memory_t *m, const dnnl_memory_desc_t *md, int *id, int node)
{
    CHECK_RC(grow((void **)&b->vbs, &b->cap_vb, b->nvb, sizeof(vbuf)));
    *id = b->nvb++;
    b->vbs[*id] = (vbuf){.size = dnnl_memory_desc_get_size(md), .first = 1 << 30, .last = -1};
    return mk_vmem(b, m, md, *id, node);
}

/* A memory with layout md over the buffer of `base` (vbuf `id`, or -1: its own buffer). */
static int mk_view(ond *b, dnnl_memory_t *m, const dnnl_memory_desc_t *md, dnnl_memory_t base, int id, int node)
{
    if (id >= 0) return mk_vmem(b, m, md, id, node);
    void *h = NULL;
    dnnl_memory_get_data_handle(base, &h);
    if (!h) return mk_bare(b, m, md, node); /* a dry run: the base has no buffer, and the view adds none */
    return mk_mem(b, m, md, h, node);
}

static void vb_live(vbuf *v, int t)
{
    if (t < v->first) v->first = t;
    if (t > v->last) v->last = t;
}

/* A memory read and written at time t only: a shared buffer when the plan shares and the
 * layout has no padding, else its own. */
static int mk_temp(ond *b, dnnl_memory_t *m, const dnnl_memory_desc_t *md, int t, int node)
{
    if (!b->share_diff || !md_unpadded(md)) return mk_mem(b, m, md, NULL, node);
    int id;
    CHECK_RC(mk_shared(b, m, md, &id, node));
    vb_live(&b->vbs[id], t);
    return FERC_OK;
}

static int cmp_size_desc(const void *a, const void *b)
{
    const vbuf *x = *(const vbuf *const *)a, *y = *(const vbuf *const *)b;
    return (x->size < y->size) - (x->size > y->size);
}

/* Lifetimes from the graph, then the arena: largest first, lowest free offset. */
static int pack_vbufs(ond *b)
{
    const nn_graph *g = b->g;
    const nn_exec *ex = b->ex;
    const int N = g->nnodes, END = 1 << 29;
    if (!b->nvb) return FERC_OK;
    for (int i = 0; i < N; i++) {
        const nn_node *nd = &g->nodes[i];
        if (b->out_vb[i] >= 0) {
            vbuf *v = &b->vbs[b->out_vb[i]];
            vb_live(v, i);
            if (i == g->output || nd->keep) vb_live(v, END);
        }
        for (int j = 0; j < nd->ninputs; j++) {
            int in = nd->inputs[j];
            if (b->out_vb[in] >= 0) vb_live(&b->vbs[b->out_vb[in]], i);
        }
        if (b->diff_vb[i] >= 0) {
            vbuf *v = &b->vbs[b->diff_vb[i]];
            vb_live(v, i == g->output ? N : 2 * N - ex->last_consumer[i]); /* first written */
            vb_live(v, 2 * N - i);                                          /* read by its own backward */
            if (i == 0 && (ex->flags & NN_EXEC_INPUT_GRAD)) vb_live(v, END);
        }
    }
    vbuf **order = malloc((size_t)b->nvb * sizeof *order);
    vbuf **placed = malloc((size_t)b->nvb * sizeof *placed);
    if (!order || !placed) {
        free(order);
        free(placed);
        return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    }
    for (int k = 0; k < b->nvb; k++) order[k] = &b->vbs[k];
    qsort(order, (size_t)b->nvb, sizeof *order, cmp_size_desc);
    int np = 0;
    size_t total = 0;
    for (int k = 0; k < b->nvb; k++) {
        vbuf *v = order[k];
        size_t size = (v->size + 63) & ~(size_t)63, off = 0;
        /* placed buffers alive at the same time, in offset order: slide past each overlap */
        for (bool moved = true; moved;) {
            moved = false;
            for (int q = 0; q < np; q++) {
                const vbuf *o = placed[q];
                if (o->last < v->first || o->first > v->last) continue;
                size_t osz = (o->size + 63) & ~(size_t)63;
                if (off < o->offset + osz && o->offset < off + size) {
                    off = o->offset + osz;
                    moved = true;
                }
            }
        }
        v->offset = off;
        placed[np++] = v;
        if (off + size > total) total = off + size;
    }
    free(order);
    free(placed);
    b->arena_size = total;
    if (b->ex->flags & NN_EXEC_DRY_RUN) return FERC_OK;
    b->arena = aligned_alloc(64, total ? total : 64);
    if (!b->arena) return ferc_set_error(FERC_ERR_NOMEM, "out of memory for activations (%zu MiB)", total >> 20);
    memset(b->arena, 0, total);
    for (int k = 0; k < b->nvb; k++)
        for (int m = 0; m < b->vbs[k].nmems; m++)
            dnnl_memory_set_data_handle(b->vbs[k].mems[m], (char *)b->arena + b->vbs[k].offset);
    return FERC_OK;
}

/* A memory over the shared temporary buffer (its handle is set when planning ends). */
static int mk_tmp(ond *b, dnnl_memory_t *m, const dnnl_memory_desc_t *md, int node)
{
    TRY(dnnl_memory_create(m, md, b->eng, DNNL_MEMORY_NONE), "memory creation", node);
    CHECK_RC(grow((void **)&b->tmp_mems, &b->cap_tmp, b->ntmp, sizeof(dnnl_memory_t)));
    b->tmp_mems[b->ntmp++] = *m;
    size_t sz = dnnl_memory_desc_get_size(md);
    if (sz > b->tmp_size) b->tmp_size = sz;
    return FERC_OK;
}

static int mk_prim(ond *b, dnnl_primitive_t *p, dnnl_primitive_desc_t pd, int node)
{
    const dnnl_memory_desc_t *sp = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    if (sp) {
        size_t sz = dnnl_memory_desc_get_size(sp);
        if (sz > b->scratch_size) b->scratch_size = sz;
    }
    dnnl_status_t s = dnnl_primitive_create(p, pd);
    if (s != dnnl_success) return dnnl_fail(b, s, "primitive creation", node);
    CHECK_RC(grow((void **)&b->prims, &b->cap_prims, b->nprims, sizeof(dnnl_primitive_t)));
    b->prims[b->nprims++] = *p;
    return FERC_OK;
}

static int pd_create(ond *b, dnnl_primitive_desc_t *pd, const void *op_desc, bool sum, const_dnnl_primitive_desc_t hint,
                     const char *what, int node)
{
    TRY(dnnl_primitive_desc_create(pd, op_desc, sum ? b->attr_sum : b->attr, b->eng, hint), what, node);
    return FERC_OK;
}

static void md_plain(dnnl_memory_desc_t *md, int n, int c, int h, int w)
{
    dnnl_dims_t d = {n, c, h, w};
    dnnl_memory_desc_init_by_tag(md, 4, d, dnnl_f32, dnnl_nchw);
}

static void md_any(dnnl_memory_desc_t *md, int n, int c, int h, int w, dnnl_data_type_t dt)
{
    dnnl_dims_t d = {n, c, h, w};
    dnnl_memory_desc_init_by_tag(md, 4, d, dt, dnnl_format_tag_any);
}

static void md_1d(dnnl_memory_desc_t *md, int64_t c)
{
    dnnl_dims_t d = {c};
    dnnl_memory_desc_init_by_tag(md, 1, d, dnnl_f32, dnnl_x);
}

/* A reorder primitive src_md -> dst_md, optionally accumulating into dst. */
static int mk_reorder(ond *b, dnnl_primitive_t *p, const dnnl_memory_desc_t *src, const dnnl_memory_desc_t *dst,
                      bool accumulate, int node)
{
    dnnl_primitive_desc_t pd;
    TRY(dnnl_reorder_primitive_desc_create(&pd, src, b->eng, dst, b->eng, accumulate ? b->attr_sum : b->attr),
        "reorder", node);
    int rc = mk_prim(b, p, pd, node);
    dnnl_primitive_desc_destroy(pd);
    return rc;
}

/* Fills a step for primitive `prim` with a heap copy of its arguments. */
static int set_args(ond *b, step *s, dnnl_primitive_t prim, const dnnl_exec_arg_t *args, int nargs, int node)
{
    CHECK_RC(grow((void **)&b->allocs, &b->cap_allocs, b->nallocs, sizeof(void *)));
    s->args = malloc((size_t)(nargs + 1) * sizeof *args);
    if (!s->args) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    b->allocs[b->nallocs++] = s->args;
    memcpy(s->args, args, (size_t)nargs * sizeof *args);
    s->nargs = nargs;
    s->prim = prim;
    s->node = node;
    return FERC_OK;
}

/* Builds the primitive for pd and a step running it with `args`. */
static int mk_step(ond *b, step *s, dnnl_primitive_desc_t pd, const dnnl_exec_arg_t *args, int nargs, int node)
{
    memset(s, 0, sizeof *s);
    dnnl_primitive_t prim;
    CHECK_RC(mk_prim(b, &prim, pd, node));
    return set_args(b, s, prim, args, nargs, node);
}

static int push_reorder(ond *b, step_list *l, dnnl_memory_t src, dnnl_memory_t dst, bool accumulate, int node)
{
    const dnnl_memory_desc_t *smd, *dmd;
    dnnl_memory_get_memory_desc(src, &smd);
    dnnl_memory_get_memory_desc(dst, &dmd);
    step s = {0};
    dnnl_primitive_t prim;
    CHECK_RC(mk_reorder(b, &prim, smd, dmd, accumulate, node));
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}};
    CHECK_RC(set_args(b, &s, prim, args, 2, node));
    return push_step(l, &s);
}

static int push_prim(ond *b, step_list *l, dnnl_primitive_desc_t pd, const dnnl_exec_arg_t *args, int nargs, int node)
{
    step s;
    CHECK_RC(mk_step(b, &s, pd, args, nargs, node));
    return push_step(l, &s);
}

static int push_fn(step_list *l, step_fn fn, int node, dnnl_memory_t m0, dnnl_memory_t m1, dnnl_memory_t m2)
{
    step s = {0};
    s.fn = fn;
    s.node = node;
    s.m0 = m0;
    s.m1 = m1;
    s.m2 = m2;
    return push_step(l, &s);
}

static float *mem_ptr(dnnl_memory_t m)
{
    void *h = NULL;
    dnnl_memory_get_data_handle(m, &h);
    return h;
}

/* The gradient of `input` as seen by consumer `node`: does this consumer write it first
 * (plain write) or add to what a later consumer already wrote? */
static bool accumulates(const nn_exec *ex, int node, int input)
{
    return ex->last_consumer[input] != node;
}

/* The ReLU that is node i's only consumer (and not the output of anything else), or -1. */
static int relu_consumer(const ond *b, int i)
{
    const nn_exec *ex = b->ex;
    if (ex->nconsumers[i] != 1 || i == b->g->output) return -1;
    int c = ex->last_consumer[i];
    return c >= 0 && b->g->nodes[c].op == NN_OP_RELU ? c : -1;
}

/* Where a backward primitive of `node` should write the gradient for input `in`, given
 * the layout `prim_md` the primitive produces. Either directly into the input's gradient
 * (*dst = its diff memory, nothing to add), or into a temporary followed by a reorder
 * (with sum when accumulating) that the caller pushes after the primitive via
 * finish_diff(). When the input needs no gradient, a temporary absorbs the output. */
typedef struct diff_target {
    dnnl_memory_t dst;
    bool via_tmp;
    bool accumulate;
    int input;
} diff_target;

static int diff_target_for(ond *b, int node, int in, const dnnl_memory_desc_t *prim_md, diff_target *t)
{
    nn_exec *ex = b->ex;
    memset(t, 0, sizeof *t);
    t->input = in;
    if (!ex->needs_grad[in]) {
        t->via_tmp = false;
        return mk_tmp(b, &t->dst, prim_md, node);
    }
    t->accumulate = accumulates(ex, node, in);
    if (!t->accumulate && dnnl_memory_desc_equal(prim_md, &b->nodes[in].md)) {
        t->dst = b->nodes[in].diff;
        return FERC_OK;
    }
    t->via_tmp = true;
    return mk_tmp(b, &t->dst, prim_md, node);
}

static int finish_diff(ond *b, int node, const diff_target *t)
{
    if (!t->via_tmp) return FERC_OK;
    return push_reorder(b, &b->bwd, t->dst, b->nodes[t->input].diff, t->accumulate, node);
}

/* The output memory of node i (layout on->md already chosen) and, when it takes part in
 * the backward pass, its gradient. */
static int mk_act(ond *b, int i)
{
    ond_node *on = &b->nodes[i];
    bool share = b->share_fwd || (b->share_diff && !b->fwd_needed[i]);
    if (share && !b->g->nodes[i].keep && i != b->g->output && md_unpadded(&on->md))
        return mk_shared(b, &on->mem, &on->md, &b->out_vb[i], i);
    return mk_mem(b, &on->mem, &on->md, NULL, i);
}

/* Which outputs the backward pass of a training plan reads (conservatively): the source of a
 * trainable convolution or linear layer, of a batch norm that runs backward, a ReLU's own
 * output (its backward uses it), and whatever a fused ReLU aliases. The others live for the
 * forward pass only and share memory (batch norm before a residual add, say). */
static void mark_fwd_needed(ond *b)
{
    const nn_graph *g = b->g;
    const nn_exec *ex = b->ex;
    for (int j = 0; j < g->nnodes; j++) {
        const nn_node *nd = &g->nodes[j];
        int in = nd->ninputs ? nd->inputs[0] : -1;
        switch (nd->op) {
        case NN_OP_CONV2D:
        case NN_OP_LINEAR:
            if (ex->needs_grad[j] && ex->trainable[j]) b->fwd_needed[in] = true;
            break;
        case NN_OP_BATCHNORM2D:
            if (ex->needs_grad[j]) b->fwd_needed[in] = true;
            break;
        case NN_OP_RELU: b->fwd_needed[j] = true; break;
        default: break;
        }
        if (nd->keep || j == g->output) b->fwd_needed[j] = true;
    }
    for (int j = 0; j < g->nnodes; j++) {
        int r = (g->nodes[j].op == NN_OP_BATCHNORM2D || g->nodes[j].op == NN_OP_ADD) ? relu_consumer(b, j) : -1;
        if (r >= 0 && b->fwd_needed[r]) b->fwd_needed[j] = true;
    }
}

static int mk_diff(ond *b, int i)
{
    ond_node *on = &b->nodes[i];
    bool readable = i == 0 && (b->ex->flags & NN_EXEC_INPUT_GRAD);
    if (b->share_diff && !readable && md_unpadded(&on->md))
        return mk_shared(b, &on->diff, &on->md, &b->diff_vb[i], i);
    return mk_mem(b, &on->diff, &on->md, NULL, i);
}

static int mk_out(ond *b, int i)
{
    CHECK_RC(mk_act(b, i));
    if (b->ex->needs_grad[i]) CHECK_RC(mk_diff(b, i));
    return FERC_OK;
}

/* ---- callbacks ------------------------------------------------------------------------------ */

/* Batch norm: running-statistic update with torch's semantics (momentum 0.1, unbiased
 * running variance), after a training forward step. m0 = batch mean, m1 = batch var. */
static void bn_update_running(ond *b, const step *s)
{
    const nn_graph *g = b->g;
    const nn_node *nd = &g->nodes[s->node];
    const float *mean = mem_ptr(s->m0), *var = mem_ptr(s->m1);
    float *rm = NULL, *rv = NULL;
    int64_t *nbt = NULL;
    for (int p = nd->param_first; p < nd->param_first + nd->param_count; p++) {
        const nn_param *pp = &g->param_table[p];
        if (pp->kind == NN_BUFFER_RUNNING_MEAN) rm = g->buffers + pp->offset;
        if (pp->kind == NN_BUFFER_RUNNING_VAR) rv = g->buffers + pp->offset;
        if (pp->kind == NN_BUFFER_NUM_BATCHES) nbt = g->batches_tracked + pp->offset;
    }
    double cnt = (double)nd->n * nd->h * nd->w;
    float m = nd->attr.bn.momentum;
    float unbias = (float)(cnt / (cnt - 1.0));
    for (int c = 0; c < nd->channels; c++) {
        rm[c] = (1.0f - m) * rm[c] + m * mean[c];
        rv[c] = (1.0f - m) * rv[c] + m * var[c] * unbias;
    }
    (*nbt)++;
}

/* Dropout forward (training): dst = src * mask / (1 - p), mask from (seed, step, node). */
static void dropout_fwd(ond *b, const step *s)
{
    ond_node *on = &b->nodes[s->node];
    float p = b->g->nodes[s->node].attr.dropout.p;
    float scale = 1.0f / (1.0f - p);
    const float *x = mem_ptr(s->m0);
    float *y = mem_ptr(s->m1);
    rng r;
    rng_derive(&r, b->ex->seed ^ 0xd50c0a7ull, b->ex->step, (uint64_t)s->node);
    for (size_t i = 0; i < on->mask_len; i++) {
        on->mask[i] = rng_uniformf(&r) >= p;
        y[i] = on->mask[i] ? x[i] * scale : 0.0f;
    }
}

static void dropout_eval(ond *b, const step *s)
{
    memcpy(mem_ptr(s->m1), mem_ptr(s->m0), b->nodes[s->node].mask_len * sizeof(float));
}

/* Dropout backward: m0 = diff_dst, m1 = input diff; accumulate when m2 != NULL. */
static void dropout_bwd(ond *b, const step *s)
{
    ond_node *on = &b->nodes[s->node];
    float scale = 1.0f / (1.0f - b->g->nodes[s->node].attr.dropout.p);
    const float *dy = mem_ptr(s->m0);
    float *dx = mem_ptr(s->m1);
    bool acc = s->m2 != NULL;
    for (size_t i = 0; i < on->mask_len; i++) {
        float v = on->mask[i] ? dy[i] * scale : 0.0f;
        dx[i] = acc ? dx[i] + v : v;
    }
}

/* Channel pad: m0 = the input (plain NCHW, C channels), m1 = the output (plain, C + extra). */
static void chpad_fwd(ond *b, const step *s)
{
    const nn_node *nd = &b->g->nodes[s->node];
    const size_t hw = (size_t)nd->h * nd->w, c = (size_t)(nd->channels - nd->attr.chpad.extra), c2 = (size_t)nd->channels;
    const float *x = mem_ptr(s->m0);
    float *y = mem_ptr(s->m1);
    for (int n = 0; n < nd->n; n++) {
        memcpy(y + n * c2 * hw, x + n * c * hw, c * hw * sizeof(float));
        memset(y + n * c2 * hw + c * hw, 0, (c2 - c) * hw * sizeof(float));
    }
}

/* Its backward: m0 = diff_dst (plain, C + extra), m1 = the input's diff (plain, C): the first C
 * channels, written (the caller accumulates when the input has other consumers). */
static void chpad_bwd(ond *b, const step *s)
{
    const nn_node *nd = &b->g->nodes[s->node];
    const size_t hw = (size_t)nd->h * nd->w, c = (size_t)(nd->channels - nd->attr.chpad.extra), c2 = (size_t)nd->channels;
    const float *dy = mem_ptr(s->m0);
    float *dx = mem_ptr(s->m1);
    for (int n = 0; n < nd->n; n++) memcpy(dx + n * c * hw, dy + n * c2 * hw, c * hw * sizeof(float));
}

/* ---- planning, one function per op ---------------------------------------------------------- */

static const nn_param *node_param(const nn_graph *g, const nn_node *nd, nn_param_kind kind)
{
    for (int p = nd->param_first; p < nd->param_first + nd->param_count; p++)
        if (g->param_table[p].kind == kind) return &g->param_table[p];
    return NULL;
}

/* Pads for torch's floor-mode output size; the right pad may come out smaller than the
 * left one (rows that torch never reads). p = NN_PAD_SAME: TensorFlow's split of the total,
 * half on the left/top and the odd pixel on the right/bottom. */
static void pads(int in, int out, int k, int s, int p, dnnl_dim_t *l, dnnl_dim_t *r)
{
    if (p == NN_PAD_SAME) {
        int total = (out - 1) * s + k - in;
        p = total > 0 ? total / 2 : 0;
    }
    *l = p;
    *r = (dnnl_dim_t)(out - 1) * s + k - in - p;
}

static int plan_input(ond *b, int i)
{
    const nn_node *nd = &b->g->nodes[i];
    ond_node *on = &b->nodes[i];
    md_plain(&on->md, nd->n, nd->channels, nd->h, nd->w);
    CHECK_RC(mk_out(b, i));
    b->in_user = on->mem;
    return FERC_OK;
}

static int plan_conv(ond *b, int i)
{
    nn_exec *ex = b->ex;
    const nn_graph *g = b->g;
    const nn_node *nd = &g->nodes[i];
    const nn_node *in = &g->nodes[nd->inputs[0]];
    ond_node *on = &b->nodes[i], *oin = &b->nodes[nd->inputs[0]];
    const nn_conv_attr *a = &nd->attr.conv;
    const nn_param *pw = node_param(g, nd, NN_PARAM_WEIGHT), *pb = node_param(g, nd, NN_PARAM_BIAS);
    bool training = ex->flags & NN_EXEC_TRAINING;

    dnnl_memory_desc_t src_any, wei_any, dst_any, bias_md, wei_user_md;
    md_any(&src_any, nd->n, in->channels, in->h, in->w, b->act);
    md_any(&dst_any, nd->n, nd->channels, nd->h, nd->w, b->act);
    /* groups: oneDNN's (G, O/G, I/G, kh, kw), the same bytes as torch's (O, I/G, kh, kw) */
    const int G = a->groups > 1 ? a->groups : 1;
    dnnl_dims_t wd = {nd->channels, in->channels, a->kernel, a->kernel};
    dnnl_dims_t wdg = {G, nd->channels / G, in->channels / G, a->kernel, a->kernel};
    dnnl_memory_desc_init_by_tag(&wei_any, G > 1 ? 5 : 4, G > 1 ? wdg : wd, b->act, dnnl_format_tag_any);
    dnnl_memory_desc_init_by_tag(&wei_user_md, G > 1 ? 5 : 4, G > 1 ? wdg : wd, dnnl_f32, G > 1 ? dnnl_goihw : dnnl_oihw);
    md_1d(&bias_md, nd->channels);
    dnnl_dims_t strides = {a->stride, a->stride}, pl, pr;
    pads(in->h, nd->h, a->kernel, a->stride, a->pad, &pl[0], &pr[0]);
    pads(in->w, nd->w, a->kernel, a->stride, a->pad, &pl[1], &pr[1]);

    dnnl_convolution_desc_t cd;
    TRY(dnnl_convolution_forward_desc_init(&cd, training ? dnnl_forward_training : dnnl_forward_inference,
                                           dnnl_convolution_direct, &src_any, &wei_any, pb ? &bias_md : NULL,
                                           &dst_any, strides, pl, pr),
        "convolution setup", i);
    dnnl_primitive_desc_t fpd;
    CHECK_RC(pd_create(b, &fpd, &cd, false, NULL, "convolution", i));
    int rc = FERC_OK;
    const dnnl_memory_desc_t *src_md = dnnl_primitive_desc_query_md(fpd, dnnl_query_src_md, 0);
    const dnnl_memory_desc_t *wei_md = dnnl_primitive_desc_query_md(fpd, dnnl_query_weights_md, 0);
    on->md = *dnnl_primitive_desc_query_md(fpd, dnnl_query_dst_md, 0);

    dnnl_memory_t src = oin->mem, wei_user, wei, bias = NULL;
    if ((rc = mk_out(b, i))) goto out;
    if ((rc = mk_mem(b, &wei_user, &wei_user_md, g->params + pw->offset, i))) goto out;
    if (pb && (rc = mk_mem(b, &bias, &bias_md, g->params + pb->offset, i))) goto out;
    if (!dnnl_memory_desc_equal(src_md, &oin->md)) {
        if ((rc = mk_mem(b, &src, src_md, NULL, i))) goto out;
        if ((rc = push_reorder(b, &b->fwd_train, oin->mem, src, false, i))) goto out;
        if ((rc = push_reorder(b, &b->fwd_eval, oin->mem, src, false, i))) goto out;
    }
    wei = wei_user;
    bool wei_shared = false; /* the forward copy lives for the forward step only */
    if (!dnnl_memory_desc_equal(wei_md, &wei_user_md)) {
        /* Weights that cannot change between passes (frozen, or an inference plan) are
         * reordered once, not at every forward pass; a trainable layer's copy is made at each
         * forward step and needed there only (backward makes its own), so it is shared. */
        if (training && ex->trainable[i] && b->share_diff && md_unpadded(wei_md)) {
            int id;
            if ((rc = mk_shared(b, &wei, wei_md, &id, i))) goto out;
            vb_live(&b->vbs[id], i);
            wei_shared = true;
        } else if ((rc = mk_mem(b, &wei, wei_md, NULL, i))) {
            goto out;
        }
        if (!training || !ex->trainable[i]) {
            if ((rc = push_reorder(b, &b->once, wei_user, wei, false, i))) goto out;
        } else {
            if ((rc = push_reorder(b, &b->fwd_train, wei_user, wei, false, i))) goto out;
            if ((rc = push_reorder(b, &b->fwd_eval, wei_user, wei, false, i))) goto out;
        }
    }
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, on->mem}, {DNNL_ARG_BIAS, bias}};
    step s;
    if ((rc = mk_step(b, &s, fpd, args, pb ? 4 : 3, i))) goto out;
    if ((rc = push_step(&b->fwd_train, &s)) || (rc = push_step(&b->fwd_eval, &s))) goto out;

    if (!ex->needs_grad[i]) goto out;
    /* Backward: weights first (it reads diff_dst and src), then data. */
    if (ex->trainable[i]) {
        dnnl_convolution_desc_t bwd;
        dnnl_memory_desc_t dw_any; /* weight gradients in f32 even from bf16 data */
        dnnl_memory_desc_init_by_tag(&dw_any, G > 1 ? 5 : 4, G > 1 ? wdg : wd, dnnl_f32, dnnl_format_tag_any);
        TRY(dnnl_convolution_backward_weights_desc_init(&bwd, dnnl_convolution_direct, src_md, &dw_any,
                                                        pb ? &bias_md : NULL, &on->md, strides, pl, pr),
            "convolution backward-weights setup", i);
        dnnl_primitive_desc_t wpd;
        if ((rc = pd_create(b, &wpd, &bwd, false, fpd, "convolution backward-weights", i))) goto out;
        const dnnl_memory_desc_t *dw_md = dnnl_primitive_desc_query_md(wpd, dnnl_query_diff_weights_md, 0);
        dnnl_memory_t dw_user, dw, db = NULL;
        rc = mk_mem(b, &dw_user, &wei_user_md, g->grads + pw->offset, i);
        if (!rc && pb) rc = mk_mem(b, &db, &bias_md, g->grads + pb->offset, i);
        dw = dw_user;
        bool dw_reorder = !dnnl_memory_desc_equal(dw_md, &wei_user_md);
        /* the blocked gradient is written and reordered out at this node's backward step
         * and read nowhere else: shareable (about one float32 copy of all convolution
         * weights otherwise: 230 MiB for resnet152) */
        if (!rc && dw_reorder) rc = mk_temp(b, &dw, dw_md, 2 * g->nnodes - i, i);
        dnnl_exec_arg_t wargs[4] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, on->diff}, {DNNL_ARG_DIFF_WEIGHTS, dw},
                                    {DNNL_ARG_DIFF_BIAS, db}};
        if (!rc) rc = push_prim(b, &b->bwd, wpd, wargs, pb ? 4 : 3, i);
        dnnl_primitive_desc_destroy(wpd);
        if (!rc && dw_reorder) rc = push_reorder(b, &b->bwd, dw, dw_user, false, i);
        if (rc) goto out;
    }
    if (ex->needs_grad[nd->inputs[0]]) {
        dnnl_convolution_desc_t bwd;
        TRY(dnnl_convolution_backward_data_desc_init(&bwd, dnnl_convolution_direct, &src_any, &wei_any, &on->md,
                                                     strides, pl, pr),
            "convolution backward-data setup", i);
        dnnl_primitive_desc_t dpd;
        if ((rc = pd_create(b, &dpd, &bwd, false, fpd, "convolution backward-data", i))) goto out;
        const dnnl_memory_desc_t *dsrc_md = dnnl_primitive_desc_query_md(dpd, dnnl_query_diff_src_md, 0);
        const dnnl_memory_desc_t *bw_md = dnnl_primitive_desc_query_md(dpd, dnnl_query_weights_md, 0);
        dnnl_memory_t bwei = wei;
        if (dnnl_memory_desc_equal(bw_md, &wei_user_md)) {
            bwei = wei_user; /* the kernel reads torch's layout itself */
        } else if (wei_shared || !dnnl_memory_desc_equal(bw_md, wei_md)) {
            /* reordered at this node's backward step and used there only: shareable */
            rc = mk_temp(b, &bwei, bw_md, 2 * g->nnodes - i, i);
            if (!rc) rc = push_reorder(b, &b->bwd, wei_user, bwei, false, i);
        }
        diff_target t;
        if (!rc) rc = diff_target_for(b, i, nd->inputs[0], dsrc_md, &t);
        dnnl_exec_arg_t dargs[3] = {{DNNL_ARG_DIFF_DST, on->diff}, {DNNL_ARG_WEIGHTS, bwei}, {DNNL_ARG_DIFF_SRC, t.dst}};
        if (!rc) rc = push_prim(b, &b->bwd, dpd, dargs, 3, i);
        dnnl_primitive_desc_destroy(dpd);
        if (!rc) rc = finish_diff(b, i, &t);
    }
out:
    dnnl_primitive_desc_destroy(fpd);
    return rc;
}

static int plan_bn(ond *b, int i)
{
    nn_exec *ex = b->ex;
    const nn_graph *g = b->g;
    const nn_node *nd = &g->nodes[i];
    int in = nd->inputs[0];
    ond_node *on = &b->nodes[i], *oin = &b->nodes[in];
    const nn_param *pw = node_param(g, nd, NN_PARAM_WEIGHT), *pb = node_param(g, nd, NN_PARAM_BIAS);
    const nn_param *prm = node_param(g, nd, NN_BUFFER_RUNNING_MEAN), *prv = node_param(g, nd, NN_BUFFER_RUNNING_VAR);
    bool training = ex->flags & NN_EXEC_TRAINING;
    float eps = nd->attr.bn.eps;
    int rc = FERC_OK;

    on->md = oin->md;
    dnnl_memory_desc_t cmd;
    md_1d(&cmd, nd->channels);
    dnnl_memory_t scale, shift, rmean, rvar;
    CHECK_RC(mk_out(b, i));
    CHECK_RC(mk_mem(b, &scale, &cmd, g->params + pw->offset, i));
    CHECK_RC(mk_mem(b, &shift, &cmd, g->params + pb->offset, i));
    CHECK_RC(mk_mem(b, &rmean, &cmd, g->buffers + prm->offset, i));
    CHECK_RC(mk_mem(b, &rvar, &cmd, g->buffers + prv->offset, i));

    /* Evaluation-mode forward (running statistics). When this layer must pass gradients
     * back in a training executor, oneDNN wants a forward_training descriptor as the hint. */
    bool eval_needs_bwd = training && ex->needs_grad[i] && ex->bn_eval[i];
    bool fuse = !eval_needs_bwd && relu_consumer(b, i) >= 0;
    unsigned fuse_flag = fuse ? dnnl_fuse_norm_relu : 0;
    on->relu_fused_full = fuse;
    unsigned eflags = dnnl_use_global_stats | dnnl_use_scale | dnnl_use_shift | fuse_flag;
    dnnl_batch_normalization_desc_t ed;
    TRY(dnnl_batch_normalization_forward_desc_init(&ed, eval_needs_bwd ? dnnl_forward_training : dnnl_forward_inference,
                                                   &on->md, eps, eflags),
        "batch-norm setup", i);
    dnnl_primitive_desc_t epd;
    CHECK_RC(pd_create(b, &epd, &ed, false, NULL, "batch norm", i));
    dnnl_exec_arg_t eargs[6] = {{DNNL_ARG_SRC, oin->mem}, {DNNL_ARG_MEAN, rmean}, {DNNL_ARG_VARIANCE, rvar},
                                {DNNL_ARG_SCALE, scale},  {DNNL_ARG_SHIFT, shift}, {DNNL_ARG_DST, on->mem}};
    rc = push_prim(b, &b->fwd_eval, epd, eargs, 6, i);
    if (!rc && (!training || ex->bn_eval[i])) rc = push_prim(b, &b->fwd_train, epd, eargs, 6, i);
    if (rc) goto out_e;

    if (training && !ex->bn_eval[i]) {
        unsigned tflags = dnnl_use_scale | dnnl_use_shift | fuse_flag;
        dnnl_batch_normalization_desc_t td;
        TRY(dnnl_batch_normalization_forward_desc_init(&td, dnnl_forward_training, &on->md, eps, tflags),
            "batch-norm setup", i);
        dnnl_primitive_desc_t tpd;
        if ((rc = pd_create(b, &tpd, &td, false, NULL, "batch norm", i))) goto out_e;
        rc = mk_mem(b, &on->mean, &cmd, NULL, i);
        if (!rc) rc = mk_mem(b, &on->var, &cmd, NULL, i);
        /* With the fused ReLU, the workspace keeps its mask for the backward pass. */
        dnnl_memory_t ws = NULL;
        const dnnl_memory_desc_t *ws_md = dnnl_primitive_desc_query_md(tpd, dnnl_query_workspace_md, 0);
        if (!rc && fuse && ws_md && dnnl_memory_desc_get_size(ws_md) > 0) rc = mk_mem(b, &ws, ws_md, NULL, i);
        dnnl_exec_arg_t targs[7] = {{DNNL_ARG_SRC, oin->mem}, {DNNL_ARG_MEAN, on->mean}, {DNNL_ARG_VARIANCE, on->var},
                                    {DNNL_ARG_SCALE, scale},  {DNNL_ARG_SHIFT, shift},   {DNNL_ARG_DST, on->mem},
                                    {DNNL_ARG_WORKSPACE, ws}};
        if (!rc) rc = push_prim(b, &b->fwd_train, tpd, targs, ws ? 7 : 6, i);
        if (!rc) rc = push_fn(&b->fwd_train, bn_update_running, i, on->mean, on->var, NULL);
        if (!rc && ex->needs_grad[i]) {
            dnnl_batch_normalization_desc_t bd;
            dnnl_status_t s = dnnl_batch_normalization_backward_desc_init(&bd, dnnl_backward, &on->md, &on->md, eps, tflags);
            if (s != dnnl_success) rc = dnnl_fail(b, s, "batch-norm backward setup", i);
            dnnl_primitive_desc_t bpd = NULL;
            if (!rc) rc = pd_create(b, &bpd, &bd, false, tpd, "batch-norm backward", i);
            dnnl_memory_t dscale = NULL, dshift = NULL;
            if (!rc) rc = mk_mem(b, &dscale, &cmd, g->grads + pw->offset, i);
            if (!rc) rc = mk_mem(b, &dshift, &cmd, g->grads + pb->offset, i);
            diff_target t;
            if (!rc) rc = diff_target_for(b, i, in, &on->md, &t);
            dnnl_exec_arg_t bargs[10] = {{DNNL_ARG_SRC, oin->mem},      {DNNL_ARG_MEAN, on->mean},
                                         {DNNL_ARG_VARIANCE, on->var},  {DNNL_ARG_SCALE, scale},
                                         {DNNL_ARG_SHIFT, shift},       {DNNL_ARG_DIFF_DST, on->diff},
                                         {DNNL_ARG_DIFF_SRC, t.dst},    {DNNL_ARG_DIFF_SCALE, dscale},
                                         {DNNL_ARG_DIFF_SHIFT, dshift}, {DNNL_ARG_WORKSPACE, ws}};
            if (!rc) rc = push_prim(b, &b->bwd, bpd, bargs, ws ? 10 : 9, i);
            if (!rc) rc = finish_diff(b, i, &t);
            if (bpd) dnnl_primitive_desc_destroy(bpd);
        }
        dnnl_primitive_desc_destroy(tpd);
    } else if (eval_needs_bwd && ex->needs_grad[in]) {
        /* oneDNN 2.6 has no backward_data kernel for global statistics with scale; the full
         * backward gives the same diff_src, and its scale/shift gradients (of frozen
         * parameters) go to a throwaway buffer. */
        dnnl_batch_normalization_desc_t bd;
        dnnl_status_t s = dnnl_batch_normalization_backward_desc_init(&bd, dnnl_backward, &on->md, &on->md, eps, eflags);
        if (s != dnnl_success) rc = dnnl_fail(b, s, "batch-norm backward setup", i);
        dnnl_primitive_desc_t bpd = NULL;
        if (!rc) rc = pd_create(b, &bpd, &bd, false, epd, "batch-norm backward", i);
        dnnl_memory_t junk_scale = NULL, junk_shift = NULL;
        if (!rc) rc = mk_mem(b, &junk_scale, &cmd, NULL, i);
        if (!rc) rc = mk_mem(b, &junk_shift, &cmd, NULL, i);
        diff_target t;
        if (!rc) rc = diff_target_for(b, i, in, &on->md, &t);
        dnnl_exec_arg_t bargs[9] = {{DNNL_ARG_SRC, oin->mem},      {DNNL_ARG_MEAN, rmean},
                                    {DNNL_ARG_VARIANCE, rvar},     {DNNL_ARG_SCALE, scale},
                                    {DNNL_ARG_SHIFT, shift},       {DNNL_ARG_DIFF_DST, on->diff},
                                    {DNNL_ARG_DIFF_SRC, t.dst},    {DNNL_ARG_DIFF_SCALE, junk_scale},
                                    {DNNL_ARG_DIFF_SHIFT, junk_shift}};
        if (!rc) rc = push_prim(b, &b->bwd, bpd, bargs, 9, i);
        if (!rc) rc = finish_diff(b, i, &t);
        if (bpd) dnnl_primitive_desc_destroy(bpd);
    }
out_e:
    dnnl_primitive_desc_destroy(epd);
    return rc;
}

static int plan_relu(ond *b, int i)
{
    nn_exec *ex = b->ex;
    const nn_node *nd = &b->g->nodes[i];
    int in = nd->inputs[0];
    ond_node *on = &b->nodes[i], *oin = &b->nodes[in];
    bool training = ex->flags & NN_EXEC_TRAINING;
    on->md = oin->md;
    if (oin->relu_fused_full) {
        /* Batch norm did the work, forward and backward. */
        on->mem = oin->mem;
        on->diff = oin->diff;
        b->out_vb[i] = b->out_vb[in];
        b->diff_vb[i] = b->diff_vb[in];
        return FERC_OK;
    }
    if (oin->relu_fused_fwd) {
        on->mem = oin->mem;
        b->out_vb[i] = b->out_vb[in];
        if (ex->needs_grad[i]) CHECK_RC(mk_diff(b, i));
    } else {
        CHECK_RC(mk_out(b, i));
    }
    dnnl_eltwise_desc_t ed;
    TRY(dnnl_eltwise_forward_desc_init(&ed, training ? dnnl_forward_training : dnnl_forward_inference,
                                       dnnl_eltwise_relu_use_dst_for_bwd, &on->md, 0.f, 0.f),
        "relu setup", i);
    dnnl_primitive_desc_t fpd;
    CHECK_RC(pd_create(b, &fpd, &ed, false, NULL, "relu", i));
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_SRC, oin->mem}, {DNNL_ARG_DST, on->mem}};
    step s;
    int rc = FERC_OK;
    if (!oin->relu_fused_fwd) {
        rc = mk_step(b, &s, fpd, args, 2, i);
        if (!rc) rc = push_step(&b->fwd_train, &s);
        if (!rc) rc = push_step(&b->fwd_eval, &s);
    }
    if (!rc && ex->needs_grad[in]) {
        dnnl_eltwise_desc_t bd;
        dnnl_status_t st = dnnl_eltwise_backward_desc_init(&bd, dnnl_eltwise_relu_use_dst_for_bwd, &on->md, &on->md, 0.f, 0.f);
        if (st != dnnl_success) rc = dnnl_fail(b, st, "relu backward setup", i);
        dnnl_primitive_desc_t bpd = NULL;
        if (!rc) rc = pd_create(b, &bpd, &bd, false, fpd, "relu backward", i);
        diff_target t;
        if (!rc) rc = diff_target_for(b, i, in, &on->md, &t);
        dnnl_exec_arg_t bargs[3] = {{DNNL_ARG_DST, on->mem}, {DNNL_ARG_DIFF_DST, on->diff}, {DNNL_ARG_DIFF_SRC, t.dst}};
        if (!rc) rc = push_prim(b, &b->bwd, bpd, bargs, 3, i);
        if (!rc) rc = finish_diff(b, i, &t);
        if (bpd) dnnl_primitive_desc_destroy(bpd);
    }
    dnnl_primitive_desc_destroy(fpd);
    return rc;
}

static int plan_pool(ond *b, int i)
{
    nn_exec *ex = b->ex;
    const nn_node *nd = &b->g->nodes[i];
    int in = nd->inputs[0];
    const nn_node *ind = &b->g->nodes[in];
    ond_node *on = &b->nodes[i], *oin = &b->nodes[in];
    bool training = ex->flags & NN_EXEC_TRAINING;
    dnnl_alg_kind_t alg;
    dnnl_dims_t strides, kernel, pl, pr;
    if (nd->op == NN_OP_GLOBAL_AVGPOOL) {
        alg = dnnl_pooling_avg_exclude_padding;
        strides[0] = strides[1] = 1;
        kernel[0] = ind->h;
        kernel[1] = ind->w;
        pl[0] = pl[1] = pr[0] = pr[1] = 0;
    } else {
        const nn_pool_attr *a = &nd->attr.pool;
        alg = nd->op == NN_OP_MAXPOOL2D ? dnnl_pooling_max : dnnl_pooling_avg_include_padding;
        strides[0] = strides[1] = a->stride;
        kernel[0] = kernel[1] = a->kernel;
        pads(ind->h, nd->h, a->kernel, a->stride, a->pad, &pl[0], &pr[0]);
        pads(ind->w, nd->w, a->kernel, a->stride, a->pad, &pl[1], &pr[1]);
    }
    dnnl_memory_desc_t dst_any;
    md_any(&dst_any, nd->n, nd->channels, nd->h, nd->w, oin->md.data_type);
    dnnl_pooling_desc_t pd_;
    TRY(dnnl_pooling_forward_desc_init(&pd_, training ? dnnl_forward_training : dnnl_forward_inference, alg, &oin->md,
                                       &dst_any, strides, kernel, pl, pr),
        "pooling setup", i);
    dnnl_primitive_desc_t fpd;
    CHECK_RC(pd_create(b, &fpd, &pd_, false, NULL, "pooling", i));
    on->md = *dnnl_primitive_desc_query_md(fpd, dnnl_query_dst_md, 0);
    const dnnl_memory_desc_t *ws_md = dnnl_primitive_desc_query_md(fpd, dnnl_query_workspace_md, 0);
    dnnl_memory_t ws = NULL;
    int rc = mk_out(b, i);
    if (!rc && ws_md && dnnl_memory_desc_get_size(ws_md) > 0) rc = mk_mem(b, &ws, ws_md, NULL, i);
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, oin->mem}, {DNNL_ARG_DST, on->mem}, {DNNL_ARG_WORKSPACE, ws}};
    step s;
    if (!rc) rc = mk_step(b, &s, fpd, args, ws ? 3 : 2, i);
    if (!rc) rc = push_step(&b->fwd_train, &s);
    if (!rc) rc = push_step(&b->fwd_eval, &s);
    if (!rc && ex->needs_grad[in]) {
        dnnl_pooling_desc_t bd;
        dnnl_memory_desc_t dsrc_any;
        md_any(&dsrc_any, ind->n, ind->channels, ind->h, ind->w, oin->md.data_type);
        dnnl_status_t st = dnnl_pooling_backward_desc_init(&bd, alg, &oin->md, &on->md, strides, kernel, pl, pr);
        if (st != dnnl_success) rc = dnnl_fail(b, st, "pooling backward setup", i);
        dnnl_primitive_desc_t bpd = NULL;
        if (!rc) rc = pd_create(b, &bpd, &bd, false, fpd, "pooling backward", i);
        diff_target t;
        if (!rc) rc = diff_target_for(b, i, in, dnnl_primitive_desc_query_md(bpd, dnnl_query_diff_src_md, 0), &t);
        dnnl_exec_arg_t bargs[3] = {{DNNL_ARG_DIFF_DST, on->diff}, {DNNL_ARG_DIFF_SRC, t.dst}, {DNNL_ARG_WORKSPACE, ws}};
        if (!rc) rc = push_prim(b, &b->bwd, bpd, bargs, ws ? 3 : 2, i);
        if (!rc) rc = finish_diff(b, i, &t);
        if (bpd) dnnl_primitive_desc_destroy(bpd);
    }
    dnnl_primitive_desc_destroy(fpd);
    return rc;
}

/* Flatten: (N, C, 1, 1) in whatever layout -> plain NCHW (which is the (N, C) matrix). */
static int plan_flatten(ond *b, int i)
{
    nn_exec *ex = b->ex;
    const nn_node *nd = &b->g->nodes[i];
    int in = nd->inputs[0];
    ond_node *on = &b->nodes[i], *oin = &b->nodes[in];
    md_plain(&on->md, nd->n, nd->channels, 1, 1);
    CHECK_RC(mk_out(b, i));
    CHECK_RC(push_reorder(b, &b->fwd_train, oin->mem, on->mem, false, i));
    CHECK_RC(push_reorder(b, &b->fwd_eval, oin->mem, on->mem, false, i));
    if (ex->needs_grad[in]) CHECK_RC(push_reorder(b, &b->bwd, on->diff, oin->diff, accumulates(ex, i, in), i));
    return FERC_OK;
}

static int plan_linear(ond *b, int i)
{
    nn_exec *ex = b->ex;
    const nn_graph *g = b->g;
    const nn_node *nd = &g->nodes[i];
    int in = nd->inputs[0];
    const nn_node *ind = &g->nodes[in];
    ond_node *on = &b->nodes[i], *oin = &b->nodes[in];
    const nn_param *pw = node_param(g, nd, NN_PARAM_WEIGHT), *pb = node_param(g, nd, NN_PARAM_BIAS);
    bool training = ex->flags & NN_EXEC_TRAINING;
    int rc;

    /* The (N, C) views are plain matrices over plain NCHW (N, C, 1, 1) buffers. */
    dnnl_memory_desc_t plain_in, src2, dst2, w2, b1;
    md_plain(&plain_in, nd->n, ind->channels, 1, 1);
    dnnl_dims_t sd = {nd->n, ind->channels}, dd = {nd->n, nd->channels}, wd = {nd->channels, ind->channels};
    dnnl_memory_desc_init_by_tag(&src2, 2, sd, dnnl_f32, dnnl_nc);
    dnnl_memory_desc_init_by_tag(&dst2, 2, dd, dnnl_f32, dnnl_nc);
    dnnl_memory_desc_init_by_tag(&w2, 2, wd, dnnl_f32, dnnl_oi);
    md_1d(&b1, nd->channels);
    md_plain(&on->md, nd->n, nd->channels, 1, 1);
    CHECK_RC(mk_out(b, i));
    dnnl_memory_t src4 = oin->mem;
    int src4_vb = b->out_vb[in];
    if (!dnnl_memory_desc_equal(&oin->md, &plain_in)) {
        CHECK_RC(mk_mem(b, &src4, &plain_in, NULL, i));
        src4_vb = -1;
        CHECK_RC(push_reorder(b, &b->fwd_train, oin->mem, src4, false, i));
        CHECK_RC(push_reorder(b, &b->fwd_eval, oin->mem, src4, false, i));
    }
    dnnl_memory_t src, dst, wei, bias;
    CHECK_RC(mk_view(b, &src, &src2, src4, src4_vb, i));
    CHECK_RC(mk_view(b, &dst, &dst2, on->mem, b->out_vb[i], i));
    CHECK_RC(mk_mem(b, &wei, &w2, g->params + pw->offset, i));
    CHECK_RC(mk_mem(b, &bias, &b1, g->params + pb->offset, i));
    dnnl_inner_product_desc_t fd;
    TRY(dnnl_inner_product_forward_desc_init(&fd, training ? dnnl_forward_training : dnnl_forward_inference, &src2, &w2,
                                             &b1, &dst2),
        "linear setup", i);
    dnnl_primitive_desc_t fpd;
    CHECK_RC(pd_create(b, &fpd, &fd, false, NULL, "linear", i));
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_BIAS, bias}, {DNNL_ARG_DST, dst}};
    step s;
    rc = mk_step(b, &s, fpd, args, 4, i);
    if (!rc) rc = push_step(&b->fwd_train, &s);
    if (!rc) rc = push_step(&b->fwd_eval, &s);
    if (rc || !ex->needs_grad[i]) goto out;
    dnnl_memory_t ddst;
    if ((rc = mk_view(b, &ddst, &dst2, on->diff, b->diff_vb[i], i))) goto out;
    if (ex->trainable[i]) {
        dnnl_inner_product_desc_t wd_;
        dnnl_status_t st = dnnl_inner_product_backward_weights_desc_init(&wd_, &src2, &w2, &b1, &dst2);
        if (st != dnnl_success) {
            rc = dnnl_fail(b, st, "linear backward-weights setup", i);
            goto out;
        }
        dnnl_primitive_desc_t wpd;
        if ((rc = pd_create(b, &wpd, &wd_, false, fpd, "linear backward-weights", i))) goto out;
        dnnl_memory_t dw = NULL, db = NULL;
        rc = mk_mem(b, &dw, &w2, g->grads + pw->offset, i);
        if (!rc) rc = mk_mem(b, &db, &b1, g->grads + pb->offset, i);
        dnnl_exec_arg_t wargs[4] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, ddst}, {DNNL_ARG_DIFF_WEIGHTS, dw},
                                    {DNNL_ARG_DIFF_BIAS, db}};
        if (!rc) rc = push_prim(b, &b->bwd, wpd, wargs, 4, i);
        dnnl_primitive_desc_destroy(wpd);
        if (rc) goto out;
    }
    if (ex->needs_grad[in]) {
        dnnl_inner_product_desc_t dd_;
        dnnl_status_t st = dnnl_inner_product_backward_data_desc_init(&dd_, &src2, &w2, &dst2);
        if (st != dnnl_success) {
            rc = dnnl_fail(b, st, "linear backward-data setup", i);
            goto out;
        }
        dnnl_primitive_desc_t dpd;
        if ((rc = pd_create(b, &dpd, &dd_, false, fpd, "linear backward-data", i))) goto out;
        /* Into a plain (N, C, 1, 1) temporary, then into the input's gradient. */
        dnnl_memory_t t4 = NULL, t2 = NULL;
        rc = mk_tmp(b, &t4, &plain_in, i);
        if (!rc) rc = mk_tmp(b, &t2, &src2, i);
        dnnl_exec_arg_t dargs[3] = {{DNNL_ARG_DIFF_DST, ddst}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DIFF_SRC, t2}};
        if (!rc) rc = push_prim(b, &b->bwd, dpd, dargs, 3, i);
        dnnl_primitive_desc_destroy(dpd);
        if (!rc) rc = push_reorder(b, &b->bwd, t4, oin->diff, accumulates(ex, i, in), i);
    }
out:
    dnnl_primitive_desc_destroy(fpd);
    return rc;
}

/* Concatenation along channels. Backward hands each input its channel slice of the
 * gradient: a reorder from a sub-memory of the gradient (layouts permitting; otherwise via a
 * plain NCHW copy of the gradient). */
static int plan_concat(ond *b, int i)
{
    nn_exec *ex = b->ex;
    const nn_node *nd = &b->g->nodes[i];
    ond_node *on = &b->nodes[i];
    int n = nd->ninputs;
    dnnl_memory_desc_t *srcs = malloc((size_t)n * sizeof *srcs);
    dnnl_exec_arg_t *args = malloc((size_t)(n + 1) * sizeof *args);
    int rc = FERC_OK;
    dnnl_primitive_desc_t pd = NULL;
    if (!srcs || !args) {
        rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (int j = 0; j < n; j++) {
        srcs[j] = b->nodes[nd->inputs[j]].md;
        args[j] = (dnnl_exec_arg_t){DNNL_ARG_MULTIPLE_SRC + j, b->nodes[nd->inputs[j]].mem};
    }
    dnnl_status_t st = dnnl_concat_primitive_desc_create(&pd, NULL, n, 1, srcs, b->attr, b->eng);
    if (st != dnnl_success) {
        pd = NULL;
        rc = dnnl_fail(b, st, "concat setup", i);
        goto out;
    }
    on->md = *dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    if ((rc = mk_out(b, i))) goto out;
    args[n] = (dnnl_exec_arg_t){DNNL_ARG_DST, on->mem};
    step s;
    if ((rc = mk_step(b, &s, pd, args, n + 1, i))) goto out;
    if ((rc = push_step(&b->fwd_train, &s)) || (rc = push_step(&b->fwd_eval, &s))) goto out;
    if (!ex->needs_grad[i]) goto out;
    /* Backward. Try slices of the gradient in its own layout first. */
    dnnl_memory_t src_full = on->diff;
    const dnnl_memory_desc_t *full_md = &on->md;
    dnnl_memory_desc_t plain;
    bool use_plain = false;
    for (int pass = 0; pass < 2; pass++) {
        int off = 0;
        bool ok = true;
        for (int j = 0; j < n && ok; j++) {
            const nn_node *in = &b->g->nodes[nd->inputs[j]];
            if (ex->needs_grad[nd->inputs[j]]) {
                dnnl_memory_desc_t sub;
                dnnl_dims_t dims = {nd->n, in->channels, nd->h, nd->w}, offs = {0, off, 0, 0};
                dnnl_primitive_desc_t rpd;
                ok = dnnl_memory_desc_init_submemory(&sub, full_md, dims, offs) == dnnl_success &&
                     dnnl_reorder_primitive_desc_create(&rpd, &sub, b->eng, &b->nodes[nd->inputs[j]].md, b->eng,
                                                        b->attr_sum) == dnnl_success;
                if (ok) dnnl_primitive_desc_destroy(rpd);
            }
            off += in->channels;
        }
        if (ok) break;
        if (pass == 1) {
            rc = ferc_set_error(FERC_ERR_BACKEND, "oneDNN cannot slice the gradient of concat '%s'", nd->name);
            goto out;
        }
        md_plain(&plain, nd->n, nd->channels, nd->h, nd->w);
        if ((rc = mk_tmp(b, &src_full, &plain, i))) goto out;
        full_md = &plain;
        use_plain = true;
    }
    if (use_plain && (rc = push_reorder(b, &b->bwd, on->diff, src_full, false, i))) goto out;
    int off = 0;
    for (int j = 0; j < n; j++) {
        int inid = nd->inputs[j];
        const nn_node *in = &b->g->nodes[inid];
        if (ex->needs_grad[inid]) {
            dnnl_memory_desc_t sub;
            dnnl_dims_t dims = {nd->n, in->channels, nd->h, nd->w}, offs = {0, off, 0, 0};
            dnnl_memory_desc_init_submemory(&sub, full_md, dims, offs);
            dnnl_memory_t subm;
            if (use_plain) {
                if ((rc = mk_tmp(b, &subm, &sub, i))) goto out;
            } else if ((rc = mk_view(b, &subm, &sub, on->diff, b->diff_vb[i], i))) {
                goto out;
            }
            /* The same input listed twice accumulates its second slice. */
            bool acc = accumulates(ex, i, inid);
            for (int k = 0; k < j; k++) acc = acc || nd->inputs[k] == inid;
            if ((rc = push_reorder(b, &b->bwd, subm, b->nodes[inid].diff, acc, i))) goto out;
        }
        off += in->channels;
    }
out:
    free(srcs);
    free(args);
    if (pd) dnnl_primitive_desc_destroy(pd);
    return rc;
}

/* Elementwise add. When it is the last consumer of its first input, its gradient buffer IS
 * that input's gradient (backward for the first input costs nothing; earlier consumers then
 * add into it). A ReLU that is its only consumer becomes a post-op. */
static int plan_add(ond *b, int i)
{
    nn_exec *ex = b->ex;
    const nn_node *nd = &b->g->nodes[i];
    int a = nd->inputs[0], c = nd->inputs[1];
    ond_node *on = &b->nodes[i];
    on->md = b->nodes[a].md;
    CHECK_RC(mk_act(b, i));
    bool alias = ex->needs_grad[i] && a != c && ex->needs_grad[a] && ex->last_consumer[a] == i;
    if (alias) {
        on->diff = b->nodes[a].diff;
        b->diff_vb[i] = b->diff_vb[a];
    } else if (ex->needs_grad[i]) {
        CHECK_RC(mk_diff(b, i));
    }
    bool fuse = relu_consumer(b, i) >= 0;
    on->relu_fused_fwd = fuse;
    dnnl_binary_desc_t bd;
    TRY(dnnl_binary_desc_init(&bd, dnnl_binary_add, &b->nodes[a].md, &b->nodes[c].md, &on->md), "add setup", i);
    dnnl_primitive_desc_t pd;
    TRY(dnnl_primitive_desc_create(&pd, &bd, fuse ? b->attr_relu : b->attr, b->eng, NULL), "add", i);
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC_0, b->nodes[a].mem}, {DNNL_ARG_SRC_1, b->nodes[c].mem}, {DNNL_ARG_DST, on->mem}};
    step s;
    int rc = mk_step(b, &s, pd, args, 3, i);
    if (!rc) rc = push_step(&b->fwd_train, &s);
    if (!rc) rc = push_step(&b->fwd_eval, &s);
    dnnl_primitive_desc_destroy(pd);
    for (int j = 0; j < 2 && !rc; j++) {
        int in = nd->inputs[j];
        if (!ex->needs_grad[in] || (j == 0 && alias)) continue;
        /* x + x: the second contribution always accumulates. */
        bool acc = (j == 1 && in == a) || accumulates(ex, i, in);
        rc = push_reorder(b, &b->bwd, on->diff, b->nodes[in].diff, acc, i);
    }
    return rc;
}

static int plan_chpad(ond *b, int i)
{
    nn_exec *ex = b->ex;
    const nn_node *nd = &b->g->nodes[i];
    const int in = nd->inputs[0], c = nd->channels - nd->attr.chpad.extra;
    ond_node *on = &b->nodes[i], *oin = &b->nodes[in];
    md_plain(&on->md, nd->n, nd->channels, nd->h, nd->w);
    CHECK_RC(mk_out(b, i));
    dnnl_memory_desc_t xplain;
    md_plain(&xplain, nd->n, c, nd->h, nd->w);
    dnnl_memory_t x = oin->mem;
    if (!dnnl_memory_desc_equal(&oin->md, &xplain)) {
        CHECK_RC(mk_mem(b, &x, &xplain, NULL, i));
        CHECK_RC(push_reorder(b, &b->fwd_train, oin->mem, x, false, i));
        CHECK_RC(push_reorder(b, &b->fwd_eval, oin->mem, x, false, i));
    }
    CHECK_RC(push_fn(&b->fwd_train, chpad_fwd, i, x, on->mem, NULL));
    CHECK_RC(push_fn(&b->fwd_eval, chpad_fwd, i, x, on->mem, NULL));
    if (!ex->needs_grad[in]) return FERC_OK;
    diff_target t;
    CHECK_RC(diff_target_for(b, i, in, &xplain, &t));
    CHECK_RC(push_fn(&b->bwd, chpad_bwd, i, on->diff, t.dst, NULL));
    return finish_diff(b, i, &t);
}

static int plan_dropout(ond *b, int i)
{
    nn_exec *ex = b->ex;
    const nn_node *nd = &b->g->nodes[i];
    int in = nd->inputs[0];
    ond_node *on = &b->nodes[i], *oin = &b->nodes[in];
    /* The mask works on floats: a bf16 input is read through a plain f32 copy, and the
     * output is plain f32 (the next convolution converts it back). */
    dnnl_memory_t x = oin->mem;
    bool convert = oin->md.data_type != dnnl_f32;
    if (convert) {
        md_plain(&on->md, nd->n, nd->channels, nd->h, nd->w);
        CHECK_RC(mk_mem(b, &x, &on->md, NULL, i));
        CHECK_RC(push_reorder(b, &b->fwd_train, oin->mem, x, false, i));
        CHECK_RC(push_reorder(b, &b->fwd_eval, oin->mem, x, false, i));
    } else {
        on->md = oin->md;
    }
    CHECK_RC(mk_out(b, i));
    on->mask_len = dnnl_memory_desc_get_size(&on->md) / sizeof(float);
    on->mask = calloc(on->mask_len, 1);
    if (!on->mask) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    CHECK_RC(push_fn(&b->fwd_train, dropout_fwd, i, x, on->mem, NULL));
    CHECK_RC(push_fn(&b->fwd_eval, dropout_eval, i, x, on->mem, NULL));
    if (!ex->needs_grad[in]) return FERC_OK;
    if (!convert)
        return push_fn(&b->bwd, dropout_bwd, i, on->diff, oin->diff, accumulates(ex, i, in) ? on->diff : NULL);
    diff_target t;
    CHECK_RC(diff_target_for(b, i, in, &on->md, &t));
    CHECK_RC(push_fn(&b->bwd, dropout_bwd, i, on->diff, t.dst, NULL));
    return finish_diff(b, i, &t);
}

/* ---- driver ---------------------------------------------------------------------------------- */

static void release(nn_exec *ex)
{
    ond *b = ex->state;
    if (!b) return;
    for (int i = 0; i < b->nprims; i++) dnnl_primitive_destroy(b->prims[i]);
    for (int i = 0; i < b->nmems; i++) dnnl_memory_destroy(b->mems[i]);
    for (int i = 0; i < b->ntmp; i++) dnnl_memory_destroy(b->tmp_mems[i]);
    for (int i = 0; i < b->nallocs; i++) free(b->allocs[i]);
    if (b->nodes)
        for (int i = 0; i < b->g->nnodes; i++) free(b->nodes[i].mask);
    if (b->scratch_mem) dnnl_memory_destroy(b->scratch_mem);
    if (b->out_user) dnnl_memory_destroy(b->out_user);
    if (b->dout_user) dnnl_memory_destroy(b->dout_user);
    for (int i = 0; i < b->nvb; i++) free(b->vbs[i].mems);
    free(b->vbs);
    free(b->out_vb);
    free(b->diff_vb);
    free(b->fwd_needed);
    free(b->arena);
    free(b->prims);
    free(b->mems);
    free(b->tmp_mems);
    free(b->allocs);
    free(b->nodes);
    free(b->fwd_train.v);
    free(b->fwd_eval.v);
    free(b->bwd.v);
    free(b->once.v);
    free(b->tmp_buf);
    free(b->scratch_buf);
    if (b->attr) dnnl_primitive_attr_destroy(b->attr);
    if (b->attr_sum) dnnl_primitive_attr_destroy(b->attr_sum);
    if (b->attr_relu) dnnl_primitive_attr_destroy(b->attr_relu);
    if (b->stream) dnnl_stream_destroy(b->stream);
    if (b->eng) dnnl_engine_destroy(b->eng);
    free(b);
    ex->state = NULL;
}

static bool supports(nn_op op) { return (unsigned)op < NN_OP_COUNT; }

static int plan_node(ond *b, int i)
{
    switch (b->g->nodes[i].op) {
    case NN_OP_INPUT: return plan_input(b, i);
    case NN_OP_CONV2D: return plan_conv(b, i);
    case NN_OP_BATCHNORM2D: return plan_bn(b, i);
    case NN_OP_RELU: return plan_relu(b, i);
    case NN_OP_MAXPOOL2D:
    case NN_OP_AVGPOOL2D:
    case NN_OP_GLOBAL_AVGPOOL: return plan_pool(b, i);
    case NN_OP_FLATTEN: return plan_flatten(b, i);
    case NN_OP_LINEAR: return plan_linear(b, i);
    case NN_OP_CONCAT: return plan_concat(b, i);
    case NN_OP_ADD: return plan_add(b, i);
    case NN_OP_DROPOUT: return plan_dropout(b, i);
    case NN_OP_CHANNEL_PAD: return plan_chpad(b, i);
    default: return ferc_set_error(FERC_ERR_UNSUPPORTED, "oneDNN backend: op %s", nn_op_name(b->g->nodes[i].op));
    }
}

static int make_relu_attr(ond *b)
{
    dnnl_post_ops_t po;
    if (dnnl_post_ops_create(&po) != dnnl_success) return FERC_ERR_BACKEND;
    bool ok = dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f) == dnnl_success &&
              dnnl_primitive_attr_create(&b->attr_relu) == dnnl_success &&
              dnnl_primitive_attr_set_post_ops(b->attr_relu, po) == dnnl_success &&
              dnnl_primitive_attr_set_scratchpad_mode(b->attr_relu, dnnl_scratchpad_mode_user) == dnnl_success;
    dnnl_post_ops_destroy(po);
    return ok ? FERC_OK : FERC_ERR_BACKEND;
}

static int plan(nn_exec *ex)
{
    ond *b = calloc(1, sizeof *b);
    if (!b) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    ex->state = b;
    b->ex = ex;
    b->g = ex->g;
    b->act = ex->flags & NN_EXEC_BF16 ? dnnl_bf16 : dnnl_f32;
    b->share_fwd = !(ex->flags & (NN_EXEC_TRAINING | NN_EXEC_NO_SHARING));
    b->share_diff = (ex->flags & NN_EXEC_TRAINING) && !(ex->flags & NN_EXEC_NO_SHARING);
    int nn = ex->g->nnodes;
    int rc = FERC_OK;
    step_list *node_bwd = calloc((size_t)nn, sizeof *node_bwd);
    b->nodes = calloc((size_t)nn, sizeof *b->nodes);
    b->out_vb = malloc((size_t)nn * sizeof *b->out_vb);
    b->diff_vb = malloc((size_t)nn * sizeof *b->diff_vb);
    b->fwd_needed = calloc((size_t)nn, sizeof *b->fwd_needed);
    if (!node_bwd || !b->nodes || !b->out_vb || !b->diff_vb || !b->fwd_needed) {
        free(node_bwd);
        return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < nn; i++) b->out_vb[i] = b->diff_vb[i] = -1;
    if (b->share_diff) mark_fwd_needed(b);
    dnnl_post_ops_t po = NULL;
    if (dnnl_engine_create(&b->eng, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&b->stream, b->eng, dnnl_stream_default_flags) != dnnl_success ||
        dnnl_primitive_attr_create(&b->attr) != dnnl_success ||
        dnnl_primitive_attr_create(&b->attr_sum) != dnnl_success || dnnl_post_ops_create(&po) != dnnl_success ||
        dnnl_post_ops_append_sum(po, 1.0f) != dnnl_success ||
        dnnl_primitive_attr_set_post_ops(b->attr_sum, po) != dnnl_success ||
        dnnl_primitive_attr_set_scratchpad_mode(b->attr, dnnl_scratchpad_mode_user) != dnnl_success ||
        dnnl_primitive_attr_set_scratchpad_mode(b->attr_sum, dnnl_scratchpad_mode_user) != dnnl_success ||
        make_relu_attr(b) != FERC_OK) {
        rc = ferc_set_error(FERC_ERR_BACKEND, "oneDNN: cannot create the CPU engine");
    }
    if (po) dnnl_post_ops_destroy(po);
    /* Forward order for planning; each node's backward steps are kept apart and then laid
     * out in reverse node order. */
    for (int i = 0; i < nn && !rc; i++) {
        b->bwd = (step_list){0};
        rc = plan_node(b, i);
        node_bwd[i] = b->bwd;
    }
    b->bwd = (step_list){0};
    for (int i = nn - 1; i >= 0; i--) {
        for (int k = 0; k < node_bwd[i].n && !rc; k++) rc = push_step(&b->bwd, &node_bwd[i].v[k]);
        free(node_bwd[i].v);
    }
    free(node_bwd);
    if (rc) return rc;
    CHECK_RC(pack_vbufs(b));

    /* Interface memories and the shared buffers. */
    const nn_graph *g = ex->g;
    const nn_node *o = &g->nodes[g->output];
    dnnl_memory_desc_t out_md;
    md_plain(&out_md, o->n, o->channels, o->h, o->w);
    if (dnnl_memory_create(&b->out_user, &out_md, b->eng, DNNL_MEMORY_NONE) != dnnl_success ||
        dnnl_memory_create(&b->dout_user, &out_md, b->eng, DNNL_MEMORY_NONE) != dnnl_success)
        return ferc_set_error(FERC_ERR_BACKEND, "oneDNN: cannot create interface memories");
    CHECK_RC(mk_reorder(b, &b->out_reorder, &b->nodes[g->output].md, &out_md, false, g->output));
    if (ex->needs_grad[g->output])
        CHECK_RC(mk_reorder(b, &b->dout_reorder, &out_md, &b->nodes[g->output].md, false, g->output));
    if (ex->flags & NN_EXEC_DRY_RUN) return FERC_OK; /* sizes known: nothing to allocate */
    b->tmp_buf = aligned_alloc(64, (b->tmp_size + 63) / 64 * 64 + 64);
    b->scratch_buf = aligned_alloc(64, (b->scratch_size + 63) / 64 * 64 + 64);
    if (!b->tmp_buf || !b->scratch_buf) return ferc_set_error(FERC_ERR_NOMEM, "out of memory for work buffers");
    for (int i = 0; i < b->ntmp; i++) dnnl_memory_set_data_handle(b->tmp_mems[i], b->tmp_buf);
    dnnl_memory_desc_t smd;
    dnnl_dims_t sd = {(dnnl_dim_t)(b->scratch_size ? b->scratch_size : 1)};
    dnnl_memory_desc_init_by_tag(&smd, 1, sd, dnnl_u8, dnnl_x);
    if (dnnl_memory_create(&b->scratch_mem, &smd, b->eng, b->scratch_buf) != dnnl_success)
        return ferc_set_error(FERC_ERR_BACKEND, "oneDNN: cannot create the scratchpad");
    step_list *lists[4] = {&b->fwd_train, &b->fwd_eval, &b->bwd, &b->once};
    for (int l = 0; l < 4; l++)
        for (int k = 0; k < lists[l]->n; k++) {
            step *s = &lists[l]->v[k];
            if (!s->prim) continue;
            /* A step copied into both forward lists shares its argument array but not its
             * count: each copy appends the same scratchpad argument into the same slot. */
            if (s->nargs > 0 && s->args[s->nargs - 1].arg == DNNL_ARG_SCRATCHPAD) continue;
            s->args[s->nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, b->scratch_mem};
        }
    return FERC_OK;
}

static int run(ond *b, const step_list *l)
{
    for (int k = 0; k < l->n; k++) {
        const step *s = &l->v[k];
        if (s->prim) {
            dnnl_status_t st = dnnl_primitive_execute(s->prim, b->stream, s->nargs, s->args);
            if (st != dnnl_success) return dnnl_fail(b, st, "execution", s->node);
        } else {
            s->fn(b, s);
        }
    }
    if (dnnl_stream_wait(b->stream) != dnnl_success)
        return ferc_set_error(FERC_ERR_BACKEND, "oneDNN: stream wait failed");
    return FERC_OK;
}

static int forward(nn_exec *ex, const float *x, bool train, float *out)
{
    ond *b = ex->state;
    const nn_graph *g = ex->g;
    if (train) {
        for (int i = 0; i < g->nnodes; i++) {
            const nn_node *nd = &g->nodes[i];
            if (nd->op == NN_OP_BATCHNORM2D && !ex->bn_eval[i] && (long)nd->n * nd->h * nd->w < 2)
                return ferc_set_error(FERC_ERR_SHAPE,
                                      "nn: batch norm '%s' in training mode needs more than one value per channel "
                                      "(batch %d, %dx%d)", nd->name, nd->n, nd->h, nd->w);
        }
    }
    memcpy(mem_ptr(b->in_user), x, (size_t)ex->n * ex->c * ex->h * ex->w * sizeof(float));
    if (!b->once_done || ex->params_changed) {
        CHECK_RC(run(b, &b->once));
        b->once_done = true;
        ex->params_changed = false;
    }
    CHECK_RC(run(b, train ? &b->fwd_train : &b->fwd_eval));
    if (out) {
        dnnl_memory_set_data_handle(b->out_user, out);
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, b->nodes[g->output].mem}, {DNNL_ARG_TO, b->out_user}};
        dnnl_status_t st = dnnl_primitive_execute(b->out_reorder, b->stream, 2, args);
        if (st != dnnl_success) return dnnl_fail(b, st, "output copy", g->output);
        dnnl_stream_wait(b->stream);
    }
    return FERC_OK;
}

static int backward(nn_exec *ex, const float *dout)
{
    ond *b = ex->state;
    const nn_graph *g = ex->g;
    if (!ex->needs_grad[g->output]) return FERC_OK; /* everything is frozen */
    dnnl_memory_set_data_handle(b->dout_user, (void *)dout);
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, b->dout_user}, {DNNL_ARG_TO, b->nodes[g->output].diff}};
    dnnl_status_t st = dnnl_primitive_execute(b->dout_reorder, b->stream, 2, args);
    if (st != dnnl_success) return dnnl_fail(b, st, "gradient input copy", g->output);
    return run(b, &b->bwd);
}

static int node_output(nn_exec *ex, int node, bool grad, float *out, size_t count)
{
    ond *b = ex->state;
    const nn_node *nd = &ex->g->nodes[node];
    dnnl_memory_desc_t md;
    md_plain(&md, nd->n, nd->channels, nd->h, nd->w);
    dnnl_memory_t m;
    dnnl_primitive_t r;
    int rc = FERC_OK;
    (void)count;
    if (dnnl_memory_create(&m, &md, b->eng, out) != dnnl_success)
        return ferc_set_error(FERC_ERR_BACKEND, "oneDNN: cannot wrap the output buffer");
    dnnl_primitive_desc_t pd;
    if (dnnl_reorder_primitive_desc_create(&pd, &b->nodes[node].md, b->eng, &md, b->eng, NULL) != dnnl_success) {
        dnnl_memory_destroy(m);
        return ferc_set_error(FERC_ERR_BACKEND, "oneDNN: cannot read back node '%s'", nd->name);
    }
    if (dnnl_primitive_create(&r, pd) == dnnl_success) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, grad ? b->nodes[node].diff : b->nodes[node].mem}, {DNNL_ARG_TO, m}};
        if (dnnl_primitive_execute(r, b->stream, 2, args) != dnnl_success)
            rc = ferc_set_error(FERC_ERR_BACKEND, "oneDNN: cannot read back node '%s'", nd->name);
        dnnl_stream_wait(b->stream);
        dnnl_primitive_destroy(r);
    } else {
        rc = ferc_set_error(FERC_ERR_BACKEND, "oneDNN: cannot read back node '%s'", nd->name);
    }
    dnnl_primitive_desc_destroy(pd);
    dnnl_memory_destroy(m);
    return rc;
}

static bool readable(const nn_exec *ex, int node, bool grad)
{
    const ond *b = ex->state;
    int id = grad ? b->diff_vb[node] : b->out_vb[node];
    return id < 0 || b->vbs[id].last >= (1 << 29);
}

static size_t planned_bytes(const nn_exec *ex)
{
    const ond *b = ex->state;
    return b->own_bytes + b->arena_size + b->tmp_size + b->scratch_size;
}

static const nn_backend onednn_backend = {
    .name = "onednn",
    .supports = supports,
    .plan = plan,
    .release = release,
    .forward = forward,
    .backward = backward,
    .node_output = node_output,
    .readable = readable,
    .planned_bytes = planned_bytes,
};

const nn_backend *nn_backend_onednn(void) { return &onednn_backend; }
