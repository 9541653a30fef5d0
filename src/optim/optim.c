/* optim: SGD / Adam / AdamW updates, gradient clipping and state export over flat buffers.
 *
 * Contract: see optim.h. Every update reproduces torch 1.13's single-tensor ("for-loop")
 * implementation operation by operation in float32, with the scalar factors computed in
 * double and rounded to float where torch turns a Python float into a tensor scalar, so the
 * results agree with torch to a few ulps (torch's vectorized kernels use FMA, we may not).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "optim/optim.h"

/* Below this many elements a range is updated by one thread: the cost of waking OpenMP's
 * team is larger than the work. */
#define OPTIM_PAR_MIN 32768
/* Norms are summed in fixed blocks of this size and then in block order, so that the result
 * does not depend on the thread count. */
#define OPTIM_NORM_BLOCK 16384

typedef struct optim_rng {
    char *name;
    size_t offset, count;
    int group;
    bool frozen;
} optim_rng;

struct optim {
    optim_config cfg;
    optim_group *groups;
    int ngroups;
    optim_rng *ranges;
    int nranges;
    size_t total;
    float *step;        /* (nranges) steps taken by each range, as torch's state['step'] */
    float *buf_a;       /* (total) SGD momentum_buffer or Adam exp_avg; NULL if unused */
    float *buf_b;       /* (total) Adam exp_avg_sq */
    float *buf_c;       /* (total) Adam max_exp_avg_sq (amsgrad) */
    double *partial;    /* (max blocks of one range) scratch for norms */
    size_t npartial;
};

static const char *const optim_kind_names[] = {"sgd", "adam", "adamw"};
_Static_assert(sizeof optim_kind_names / sizeof optim_kind_names[0] == OPTIM_KIND_COUNT,
               "optim_kind_names must name every optim_kind");

const char *optim_kind_name(optim_kind k)
{
    return (unsigned)k < OPTIM_KIND_COUNT ? optim_kind_names[k] : "unknown";
}

int optim_kind_parse(const char *name, optim_kind *k)
{
    for (int i = 0; i < OPTIM_KIND_COUNT; i++)
        if (name && !strcmp(name, optim_kind_names[i])) {
            *k = (optim_kind)i;
            return FERC_OK;
        }
    return ferc_set_error(FERC_ERR_INVALID, "unknown optimizer '%s' (sgd, adam, adamw)",
                          name ? name : "(null)");
}

optim_config optim_config_default(optim_kind kind)
{
    optim_config c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    c.beta1 = 0.9;
    c.beta2 = 0.999;
    c.eps = 1e-8;
    c.weight_decay = kind == OPTIM_ADAMW ? 1e-2 : 0.0;
    return c;
}

static int optim_check_config(const optim_config *c)
{
    if ((unsigned)c->kind >= OPTIM_KIND_COUNT)
        return ferc_set_error(FERC_ERR_INVALID, "optimizer: unknown kind %d", (int)c->kind);
    if (!(c->weight_decay >= 0) || !isfinite(c->weight_decay))
        return ferc_set_error(FERC_ERR_INVALID, "optimizer: weight decay %g must be >= 0",
                              c->weight_decay);
    if (c->kind == OPTIM_SGD) {
        if (!(c->momentum >= 0) || !isfinite(c->momentum))
            return ferc_set_error(FERC_ERR_INVALID, "sgd: momentum %g must be >= 0", c->momentum);
        if (!isfinite(c->dampening))
            return ferc_set_error(FERC_ERR_INVALID, "sgd: dampening %g is not finite", c->dampening);
        if (c->nesterov && (c->momentum <= 0 || c->dampening != 0))
            return ferc_set_error(FERC_ERR_INVALID,
                                  "sgd: nesterov needs momentum > 0 and dampening 0");
    } else {
        if (!(c->beta1 >= 0 && c->beta1 < 1) || !(c->beta2 >= 0 && c->beta2 < 1))
            return ferc_set_error(FERC_ERR_INVALID, "%s: betas (%g, %g) must be in [0, 1)",
                                  optim_kind_name(c->kind), c->beta1, c->beta2);
        if (!(c->eps >= 0) || !isfinite(c->eps))
            return ferc_set_error(FERC_ERR_INVALID, "%s: eps %g must be >= 0",
                                  optim_kind_name(c->kind), c->eps);
    }
    return FERC_OK;
}

static int optim_cmp_offset(const void *a, const void *b)
{
    const optim_rng *x = *(const optim_rng *const *)a, *y = *(const optim_rng *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static const char *optim_rname(const optim_rng *r)
{
    return r->name ? r->name : "(unnamed)";
}

void optim_destroy(optim *o)
{
    if (!o) return;
    for (int i = 0; i < o->nranges; i++) free(o->ranges[i].name);
    free(o->ranges);
    free(o->groups);
    free(o->step);
    free(o->buf_a);
    free(o->buf_b);
    free(o->buf_c);
    free(o->partial);
    free(o);
}

int optim_create(optim **out, const optim_config *cfg, const optim_group *groups, int ngroups,
                 const optim_range *ranges, int nranges, size_t total)
{
    *out = NULL;
    int rc = optim_check_config(cfg);
    if (rc) return rc;
    if (nranges < 0 || (nranges > 0 && !ranges) || ngroups < 0 || (ngroups > 0 && !groups))
        return ferc_set_error(FERC_ERR_INVALID, "optimizer: bad range or group list");
    optim *o = calloc(1, sizeof *o);
    if (!o) return ferc_set_error(FERC_ERR_NOMEM, "optimizer: out of memory");
    o->cfg = *cfg;
    o->total = total;
    o->ngroups = ngroups > 0 ? ngroups : 1;
    o->groups = calloc((size_t)o->ngroups, sizeof *o->groups);
    o->ranges = calloc(nranges > 0 ? (size_t)nranges : 1, sizeof *o->ranges);
    o->step = calloc(nranges > 0 ? (size_t)nranges : 1, sizeof *o->step);
    if (!o->groups || !o->ranges || !o->step) goto nomem;
    if (ngroups > 0) {
        memcpy(o->groups, groups, (size_t)ngroups * sizeof *groups);
    } else {
        o->groups[0].lr_mult = 1.0;
    }
    for (int g = 0; g < o->ngroups; g++) {
        const optim_group *gr = &o->groups[g];
        if (!(gr->lr_mult >= 0) || !isfinite(gr->lr_mult) ||
            (gr->has_weight_decay && (!(gr->weight_decay >= 0) || !isfinite(gr->weight_decay)))) {
            rc = ferc_set_error(FERC_ERR_INVALID,
                                "optimizer: group %d has a bad lr multiplier or weight decay", g);
            goto fail;
        }
    }
    o->nranges = nranges;
    size_t maxcount = 0;
    for (int i = 0; i < nranges; i++) {
        const optim_range *r = &ranges[i];
        optim_rng *d = &o->ranges[i];
        if (r->name && !(d->name = strdup(r->name))) goto nomem;
        d->offset = r->offset;
        d->count = r->count;
        d->group = r->group;
        d->frozen = r->frozen;
        if (r->offset > total || r->count > total - r->offset) {
            rc = ferc_set_error(FERC_ERR_INVALID,
                                "optimizer: range '%s' [%zu, +%zu) lies outside the %zu parameters",
                                optim_rname(d), r->offset, r->count, total);
            goto fail;
        }
        if (r->group < 0 || r->group >= o->ngroups) {
            rc = ferc_set_error(FERC_ERR_INVALID, "optimizer: range '%s' names group %d of %d",
                                optim_rname(d), r->group, o->ngroups);
            goto fail;
        }
        if (r->count > maxcount) maxcount = r->count;
    }
    /* Overlapping ranges would be updated twice per step. */
    if (nranges > 1) {
        const optim_rng **sorted = malloc((size_t)nranges * sizeof *sorted);
        if (!sorted) goto nomem;
        for (int i = 0; i < nranges; i++) sorted[i] = &o->ranges[i];
        qsort(sorted, (size_t)nranges, sizeof *sorted, optim_cmp_offset);
        for (int i = 1; i < nranges; i++) {
            const optim_rng *a = sorted[i - 1], *b = sorted[i];
            if (a->count && b->count && a->offset + a->count > b->offset) {
                rc = ferc_set_error(FERC_ERR_INVALID, "optimizer: ranges '%s' and '%s' overlap",
                                    optim_rname(a), optim_rname(b));
                free(sorted);
                goto fail;
            }
        }
        free(sorted);
    }
    o->npartial = (maxcount + OPTIM_NORM_BLOCK - 1) / OPTIM_NORM_BLOCK;
    o->partial = calloc(o->npartial ? o->npartial : 1, sizeof *o->partial);
    if (!o->partial) goto nomem;
    size_t nt = total ? total : 1;
    bool need_a = cfg->kind != OPTIM_SGD || cfg->momentum != 0;
    if (need_a && !(o->buf_a = calloc(nt, sizeof(float)))) goto nomem;
    if (cfg->kind != OPTIM_SGD) {
        if (!(o->buf_b = calloc(nt, sizeof(float)))) goto nomem;
        if (cfg->amsgrad && !(o->buf_c = calloc(nt, sizeof(float)))) goto nomem;
    }
    *out = o;
    return FERC_OK;
nomem:
    rc = ferc_set_error(FERC_ERR_NOMEM, "optimizer: out of memory for %zu parameters", total);
fail:
    optim_destroy(o);
    return rc;
}

const optim_config *optim_get_config(const optim *o) { return &o->cfg; }
int optim_range_count(const optim *o) { return o->nranges; }

int optim_find_range(const optim *o, const char *name)
{
    for (int i = 0; i < o->nranges; i++)
        if (name && o->ranges[i].name && !strcmp(o->ranges[i].name, name)) return i;
    return -1;
}

int optim_set_frozen(optim *o, int range, bool frozen)
{
    if (range < 0 || range >= o->nranges)
        return ferc_set_error(FERC_ERR_INVALID, "optimizer: no range %d (of %d)", range, o->nranges);
    o->ranges[range].frozen = frozen;
    return FERC_OK;
}

int optim_set_group_lr_mult(optim *o, int group, double lr_mult)
{
    if (group < 0 || group >= o->ngroups)
        return ferc_set_error(FERC_ERR_INVALID, "optimizer: no group %d (of %d)", group, o->ngroups);
    if (!(lr_mult >= 0) || !isfinite(lr_mult))
        return ferc_set_error(FERC_ERR_INVALID, "optimizer: bad lr multiplier %g", lr_mult);
    o->groups[group].lr_mult = lr_mult;
    return FERC_OK;
}

void optim_set_momentum(optim *o, double momentum)
{
    if (o->cfg.kind == OPTIM_SGD) o->cfg.momentum = momentum;
    else o->cfg.beta1 = momentum;
}

double optim_get_momentum(const optim *o)
{
    return o->cfg.kind == OPTIM_SGD ? o->cfg.momentum : o->cfg.beta1;
}

/* ---- updates ------------------------------------------------------------------------------ */

/* torch: d = g + wd*p; buf = first ? d : buf*mom + (1-damp)*d; d = nesterov ? d + mom*buf : buf;
 * p += -lr * d. */
static void optim_sgd_range(float *p, const float *g, float *buf, size_t n, bool first,
                            double lr, double wd, double momentum, double dampening, bool nesterov)
{
    const float fwd = (float)wd, fmom = (float)momentum, fdamp = (float)(1.0 - dampening);
    const float neglr = (float)(-lr);
    const bool use_wd = wd != 0, use_mom = momentum != 0;
#pragma omp parallel for schedule(static) if (n >= OPTIM_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float d = g[i];
        if (use_wd) d = d + fwd * p[i];
        if (use_mom) {
            float b = first ? d : buf[i] * fmom + fdamp * d;
            buf[i] = b;
            d = nesterov ? d + fmom * b : b;
        }
        p[i] = p[i] + neglr * d;
    }
}

/* torch Adam/AdamW (non-capturable path): optional decoupled decay, optional L2 into the
 * gradient, moment updates, then p += -step_size * m / (sqrt(v) / sqrt(bc2) + eps). */
static void optim_adam_range(float *p, const float *g, float *m, float *v, float *vmax, size_t n,
                             double step, double lr, double wd, bool decoupled,
                             const optim_config *c)
{
    const double bc1 = 1.0 - pow(c->beta1, step);
    const double bc2 = 1.0 - pow(c->beta2, step);
    const float neg_step_size = (float)(-(lr / bc1));
    const float bc2_sqrt = (float)sqrt(bc2);
    const float b1 = (float)c->beta1, omb1 = (float)(1.0 - c->beta1);
    const float b2 = (float)c->beta2, omb2 = (float)(1.0 - c->beta2);
    const float eps = (float)c->eps;
    const float l2 = (float)wd, decay = (float)(1.0 - lr * wd);
    const bool use_l2 = !decoupled && wd != 0, use_decay = decoupled;
#pragma omp parallel for schedule(static) if (n >= OPTIM_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float pi = p[i];
        if (use_decay) pi = pi * decay;
        float gi = g[i];
        if (use_l2) gi = gi + l2 * pi;
        float mi = m[i] * b1 + omb1 * gi;
        float vi = v[i] * b2 + omb2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        if (vmax) {
            /* torch.maximum propagates nan */
            float vm = vmax[i];
            vm = (isnan(vi) || vi > vm) ? vi : vm;
            vmax[i] = vm;
            vi = vm;
        }
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        p[i] = pi + neg_step_size * mi / denom;
    }
}

int optim_step(optim *o, float *params, const float *grads, double lr)
{
    if (!isfinite(lr) || lr < 0)
        return ferc_set_error(FERC_ERR_INVALID, "optimizer: bad learning rate %g", lr);
    const optim_config *c = &o->cfg;
    if (c->kind == OPTIM_SGD && c->momentum != 0 && !o->buf_a)
        return ferc_set_error(FERC_ERR_INVALID,
                              "sgd: momentum %g set on an optimizer created without momentum "
                              "(create it with momentum > 0 to cycle momentum)", c->momentum);
    for (int i = 0; i < o->nranges; i++) {
        optim_rng *r = &o->ranges[i];
        if (r->frozen || !r->count) continue;
        const optim_group *gr = &o->groups[r->group];
        double glr = lr * gr->lr_mult;
        double wd = gr->has_weight_decay ? gr->weight_decay : c->weight_decay;
        size_t off = r->offset;
        bool first = o->step[i] == 0.0f;
        o->step[i] += 1.0f;
        switch (c->kind) {
        case OPTIM_SGD:
            optim_sgd_range(params + off, grads + off, o->buf_a ? o->buf_a + off : NULL, r->count,
                            first, glr, wd, c->momentum, c->dampening, c->nesterov);
            break;
        case OPTIM_ADAM:
        case OPTIM_ADAMW:
            optim_adam_range(params + off, grads + off, o->buf_a + off, o->buf_b + off,
                             o->buf_c ? o->buf_c + off : NULL, r->count, (double)o->step[i], glr,
                             wd, c->kind == OPTIM_ADAMW, c);
            break;
        default:
            return ferc_set_error(FERC_ERR_INVALID, "optimizer: unknown kind");
        }
    }
    return FERC_OK;
}

int optim_step_sched(optim *o, float *params, const float *grads, const sched *s, int64_t step)
{
    if (step < 0) return ferc_set_error(FERC_ERR_INVALID, "optimizer: negative step %lld",
                                        (long long)step);
    if (sched_cycles_momentum(s)) optim_set_momentum(o, sched_momentum(s, step));
    return optim_step(o, params, grads, sched_lr(s, step));
}

/* ---- clipping ----------------------------------------------------------------------------- */

int optim_clip_grad_value(const optim *o, float *grads, float clip)
{
    if (!(clip >= 0))
        return ferc_set_error(FERC_ERR_INVALID, "clip_grad_value: bad clip value %g", (double)clip);
    const float lo = -clip, hi = clip;
    for (int i = 0; i < o->nranges; i++) {
        const optim_rng *r = &o->ranges[i];
        if (r->frozen) continue;
        float *g = grads + r->offset;
        size_t n = r->count;
        /* comparisons keep nan, as torch.clamp does */
#pragma omp parallel for schedule(static) if (n >= OPTIM_PAR_MIN)
        for (size_t k = 0; k < n; k++) {
            float x = g[k];
            g[k] = x < lo ? lo : (x > hi ? hi : x);
        }
    }
    return FERC_OK;
}

static double optim_sumsq(optim *o, const float *g, size_t n)
{
    size_t nb = (n + OPTIM_NORM_BLOCK - 1) / OPTIM_NORM_BLOCK;
    double *part = o->partial;
#pragma omp parallel for schedule(static) if (n >= OPTIM_PAR_MIN)
    for (size_t b = 0; b < nb; b++) {
        size_t lo = b * OPTIM_NORM_BLOCK, hi = lo + OPTIM_NORM_BLOCK < n ? lo + OPTIM_NORM_BLOCK : n;
        double s = 0;
        for (size_t k = lo; k < hi; k++) s += (double)g[k] * (double)g[k];
        part[b] = s;
    }
    double s = 0;
    for (size_t b = 0; b < nb; b++) s += part[b];
    return s;
}

double optim_grad_norm(optim *o, const float *grads)
{
    double s = 0;
    for (int i = 0; i < o->nranges; i++) {
        const optim_rng *r = &o->ranges[i];
        if (!r->frozen) s += optim_sumsq(o, grads + r->offset, r->count);
    }
    return sqrt(s);
}

int optim_clip_grad_norm(optim *o, float *grads, float max_norm, float *total_norm)
{
    if (!(max_norm >= 0))
        return ferc_set_error(FERC_ERR_INVALID, "clip_grad_norm: bad max norm %g", (double)max_norm);
    /* torch keeps the norm and the coefficient as float32 tensors */
    float norm = (float)optim_grad_norm(o, grads);
    float coef = max_norm / (norm + 1e-6f);
    if (coef > 1.0f) coef = 1.0f;
    if (total_norm) *total_norm = norm;
    for (int i = 0; i < o->nranges; i++) {
        const optim_rng *r = &o->ranges[i];
        if (r->frozen) continue;
        float *g = grads + r->offset;
        size_t n = r->count;
#pragma omp parallel for schedule(static) if (n >= OPTIM_PAR_MIN)
        for (size_t k = 0; k < n; k++) g[k] *= coef;
    }
    return FERC_OK;
}

/* ---- state -------------------------------------------------------------------------------- */

int optim_state_tensors(optim *o, optim_state_tensor *out)
{
    int n = 0;
    if (o->buf_a)
        out[n++] = (optim_state_tensor){
            o->cfg.kind == OPTIM_SGD ? "optim.momentum_buffer" : "optim.exp_avg", o->buf_a,
            o->total};
    if (o->buf_b) out[n++] = (optim_state_tensor){"optim.exp_avg_sq", o->buf_b, o->total};
    if (o->buf_c) out[n++] = (optim_state_tensor){"optim.max_exp_avg_sq", o->buf_c, o->total};
    out[n++] = (optim_state_tensor){"optim.step", o->step, (size_t)o->nranges};
    return n;
}

int optim_state_set(optim *o, const char *name, const float *data, size_t count)
{
    optim_state_tensor t[OPTIM_MAX_STATE_TENSORS];
    int n = optim_state_tensors(o, t);
    for (int i = 0; i < n; i++) {
        if (!name || strcmp(t[i].name, name)) continue;
        if (count != t[i].count)
            return ferc_set_error(FERC_ERR_SHAPE, "optimizer state '%s': %zu values, expected %zu",
                                  name, count, t[i].count);
        if (count) memcpy(t[i].data, data, count * sizeof(float));
        return FERC_OK;
    }
    return ferc_set_error(FERC_ERR_NOT_FOUND, "optimizer state '%s' does not belong to %s%s",
                          name ? name : "(null)", optim_kind_name(o->cfg.kind),
                          o->cfg.kind == OPTIM_SGD && o->cfg.momentum == 0 ? " without momentum"
                                                                           : "");
}
