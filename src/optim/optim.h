/* optim: SGD, Adam and AdamW with torch.optim's exact semantics, gradient clipping, and
 * learning-rate schedules, all working on the engine's flat float32 buffers.
 *
 * Model
 *   The engine keeps every parameter in one flat float32 buffer and every gradient in another
 *   of the same size. Each named parameter occupies a contiguous range [offset, offset+count).
 *   An optimizer is created over a list of such ranges; each range belongs to a parameter
 *   group (its own lr multiplier and, optionally, its own weight decay, e.g. a "no weight
 *   decay" group for biases and batch-norm parameters) and may be frozen. A frozen range is
 *   exactly a torch parameter with requires_grad=False: its gradient is never read, its
 *   parameters are never written, and its optimizer state does not change (not even the step
 *   count). Parts of the flat buffers not covered by any range are never touched either.
 *
 *   Optimizer state (SGD momentum buffer; Adam exp_avg, exp_avg_sq, max_exp_avg_sq) lives in
 *   flat buffers the size of the parameter buffer, at the same offsets, plus one step count
 *   per range (as torch keeps `state['step']` per parameter). optim_state_tensors() lists
 *   these buffers by name so a trainer can write them into a checkpoint and read them back
 *   into a fresh optimizer created with the same ranges: the continuation is then bit-for-bit
 *   the same as an uninterrupted run.
 *
 *   Schedules are pure functions of the step index (sched_lr, sched_momentum), so a resumed
 *   run only needs the index. Step index k (0-based) is the k-th optimizer step, and its lr is
 *   the one torch's scheduler holds after k calls of scheduler.step().
 *
 * Usage (one training step, torch's order: clip, step, schedule)
 *     optim_config oc = optim_config_default(OPTIM_ADAM);
 *     oc.weight_decay = 1e-4;
 *     optim *opt;
 *     if (optim_create(&opt, &oc, NULL, 0, ranges, nranges, total)) return err;
 *     sched s = sched_onecycle(1e-3, epochs * steps_per_epoch);
 *     for (int64_t k = 0; k < steps; k++) {
 *         ... forward, backward into grads ...
 *         optim_clip_grad_value(opt, grads, 0.1f);
 *         optim_step_sched(opt, params, grads, &s, k);
 *     }
 *     optim_destroy(opt);
 *
 * Threads: an optimizer is used by one thread at a time. Large elementwise loops use OpenMP;
 * the results do not depend on the thread count (reductions are summed in a fixed order).
 */
#ifndef FERC_OPTIM_H
#define FERC_OPTIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- optimizers -------------------------------------------------------------------------- */

typedef enum optim_kind {
    OPTIM_SGD,      /* torch.optim.SGD: coupled L2 decay, momentum, dampening, nesterov */
    OPTIM_ADAM,     /* torch.optim.Adam: coupled L2 decay (grad += wd * param) */
    OPTIM_ADAMW,    /* torch.optim.AdamW: decoupled decay (param *= 1 - lr * wd) */
    OPTIM_KIND_COUNT
} optim_kind;

const char *optim_kind_name(optim_kind k);          /* "sgd", "adam", "adamw" */
int optim_kind_parse(const char *name, optim_kind *k);

typedef struct optim_config {
    optim_kind kind;
    double weight_decay;    /* default for groups without their own */
    /* SGD */
    double momentum;        /* 0 = plain SGD (no state) */
    double dampening;
    bool nesterov;          /* needs momentum > 0 and dampening 0, as torch requires */
    /* Adam, AdamW */
    double beta1, beta2, eps;
    bool amsgrad;
} optim_config;

/* torch's defaults: SGD momentum 0, dampening 0; Adam betas (0.9, 0.999), eps 1e-8, wd 0;
 * AdamW the same but wd 1e-2. */
optim_config optim_config_default(optim_kind kind);

/* A parameter group. Its lr is the schedule's lr times lr_mult, which equals torch with that
 * group's lr (or OneCycle max_lr) scaled by the same factor, up to rounding of the product. */
typedef struct optim_group {
    double lr_mult;             /* the group's lr = base lr * lr_mult */
    bool has_weight_decay;      /* use weight_decay below instead of the config's */
    double weight_decay;
} optim_group;

typedef struct optim_range {
    const char *name;           /* for error messages; copied. May be NULL. */
    size_t offset, count;       /* [offset, offset + count) in the flat buffers */
    int group;                  /* index into the groups given to optim_create */
    bool frozen;
} optim_range;

typedef struct optim optim;

/* Creates an optimizer over `nranges` ranges of flat buffers of `total` floats. Ranges must
 * lie inside [0, total) and must not overlap (they need not be sorted or cover everything).
 * With ngroups == 0 (groups NULL) there is one implicit group {lr_mult 1, config's decay}
 * and every range must name group 0. State starts at zero, as a fresh torch optimizer. */
int  optim_create(optim **out, const optim_config *cfg, const optim_group *groups, int ngroups,
                  const optim_range *ranges, int nranges, size_t total);
void optim_destroy(optim *o);

const optim_config *optim_get_config(const optim *o);
int  optim_range_count(const optim *o);
/* Index of the range with this name, or -1. */
int  optim_find_range(const optim *o, const char *name);
/* Freezes or unfreezes a range (e.g. phase 2 of transfer learning). Its state is kept as it
 * is; a range unfrozen for the first time starts from zero state, as in torch. */
int  optim_set_frozen(optim *o, int range, bool frozen);
int  optim_set_group_lr_mult(optim *o, int group, double lr_mult);

/* Sets SGD's momentum or Adam's beta1 for the following steps (momentum cycling). */
void optim_set_momentum(optim *o, double momentum);
double optim_get_momentum(const optim *o);

/* One update of every non-frozen range with base lr `lr` (each group uses lr * lr_mult).
 * Reads grads, never writes them. Returns FERC_OK, or FERC_ERR_INVALID for a bad lr. */
int  optim_step(optim *o, float *params, const float *grads, double lr);

/* ---- gradient clipping (over non-frozen ranges only; grads are changed in place) ---------
 * The norm functions take a non-const optimizer only for its scratch of partial sums. */

/* torch.nn.utils.clip_grad_value_: clamps every gradient to [-clip, clip]. */
int  optim_clip_grad_value(const optim *o, float *grads, float clip);
/* torch.nn.utils.clip_grad_norm_ (L2): total = sqrt(sum of squares of all gradients);
 * coef = max_norm / (total + 1e-6), clamped to at most 1, and every gradient is multiplied
 * by coef (also when coef is 1, as torch does). *total_norm (may be NULL) gets the norm
 * before clipping; it may be inf or nan, and then the grads become nan as in torch. */
int  optim_clip_grad_norm(optim *o, float *grads, float max_norm, float *total_norm);
/* The global L2 norm of the non-frozen gradients, without clipping. */
double optim_grad_norm(optim *o, const float *grads);

/* ---- state for checkpoints --------------------------------------------------------------- */

typedef struct optim_state_tensor {
    const char *name;       /* "optim.exp_avg", "optim.exp_avg_sq", "optim.max_exp_avg_sq",
                               "optim.momentum_buffer", "optim.step" */
    float *data;            /* owned by the optimizer; writable, so loading is a copy in */
    size_t count;           /* total floats (step: one per range, in creation order) */
} optim_state_tensor;

#define OPTIM_MAX_STATE_TENSORS 4

/* Fills out[] with this optimizer's state buffers and returns how many (at most
 * OPTIM_MAX_STATE_TENSORS). Pointers stay valid until optim_destroy. To resume, create an
 * optimizer with the same config and ranges and copy each saved tensor into its buffer. */
int  optim_state_tensors(optim *o, optim_state_tensor *out);
/* Copies `count` floats into the state tensor named `name`; fails with a message when the
 * name is unknown for this optimizer or the size differs. */
int  optim_state_set(optim *o, const char *name, const float *data, size_t count);

/* ---- learning-rate schedules ------------------------------------------------------------- */

typedef enum sched_kind {
    SCHED_CONSTANT,     /* lr = base_lr */
    SCHED_STEP,         /* torch StepLR: lr = base_lr * gamma^floor(k / step_size) */
    SCHED_COSINE,       /* linear warmup, then cosine to min_lr (see sched_cosine) */
    SCHED_ONECYCLE,     /* torch OneCycleLR */
    SCHED_KIND_COUNT
} sched_kind;

const char *sched_kind_name(sched_kind k);          /* "constant", "step", "cosine", "onecycle" */
int sched_kind_parse(const char *name, sched_kind *k);

/* A plain value: copy it freely; all fields are read-only inputs of sched_lr. */
typedef struct sched {
    sched_kind kind;
    double base_lr;             /* constant, step, cosine: the peak lr; onecycle: max_lr */
    int64_t total_steps;        /* cosine, onecycle */
    /* step */
    int64_t step_size;
    double gamma;
    /* cosine */
    int64_t warmup_steps;
    double min_lr;
    /* onecycle */
    double pct_start, div_factor, final_div_factor;
    bool anneal_linear;         /* torch anneal_strategy='linear'; default cos */
    bool three_phase;
    bool cycle_momentum;
    double base_momentum, max_momentum;
} sched;

sched sched_constant(double lr);
sched sched_step(double lr, int64_t step_size, double gamma);
/* Cosine with linear warmup, W = warmup_steps, T = total_steps:
 *   k <  W:  lr = base_lr * (k + 1) / (W + 1)
 *   k >= W:  t = min(k - W, T - W);  lr = min_lr + (base_lr - min_lr) * (1 + cos(pi t / (T - W))) / 2
 * The second part is torch's CosineAnnealingLR closed form with T_max = T - W, eta_min =
 * min_lr; it holds min_lr after T. The warmup never uses lr 0 and reaches base_lr at k = W. */
sched sched_cosine(double lr, int64_t warmup_steps, int64_t total_steps, double min_lr);
/* torch OneCycleLR defaults: pct_start 0.3, cos, div_factor 25, final_div_factor 1e4,
 * three_phase false, cycle_momentum true with base 0.85 and max 0.95.
 * total_steps = epochs * steps_per_epoch. */
sched sched_onecycle(double max_lr, int64_t total_steps);

/* Checks the fields (positive sizes, factors, pct_start in [0, 1], ...). */
int  sched_validate(const sched *s);
/* The lr of step index k >= 0. Onecycle beyond total_steps (where torch raises) and cosine
 * beyond total_steps hold their value at total_steps. */
double sched_lr(const sched *s, int64_t step);
bool   sched_cycles_momentum(const sched *s);
/* The momentum (SGD) or beta1 (Adam) of step k; only meaningful when sched_cycles_momentum. */
double sched_momentum(const sched *s, int64_t step);

/* Sets lr and (when the schedule cycles it) momentum of step index k, then steps. */
int  optim_step_sched(optim *o, float *params, const float *grads, const sched *s, int64_t step);

#endif
