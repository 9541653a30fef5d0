/* sched: learning-rate (and momentum) schedules as pure functions of the step index.
 *
 * Contract: see optim.h. The arithmetic follows torch 1.13's lr_scheduler.py in double,
 * expression by expression, so values agree with torch's to the last bit or two. */
#include <math.h>
#include <string.h>

#include "core/core.h"
#include "optim/optim.h"

static const char *const sched_kind_names[] = {"constant", "step", "cosine", "onecycle"};
_Static_assert(sizeof sched_kind_names / sizeof sched_kind_names[0] == SCHED_KIND_COUNT,
               "sched_kind_names must name every sched_kind");

const char *sched_kind_name(sched_kind k)
{
    return (unsigned)k < SCHED_KIND_COUNT ? sched_kind_names[k] : "unknown";
}

int sched_kind_parse(const char *name, sched_kind *k)
{
    for (int i = 0; i < SCHED_KIND_COUNT; i++)
        if (name && !strcmp(name, sched_kind_names[i])) {
            *k = (sched_kind)i;
            return FERC_OK;
        }
    return ferc_set_error(FERC_ERR_INVALID,
                          "unknown lr schedule '%s' (constant, step, cosine, onecycle)",
                          name ? name : "(null)");
}

static sched sched_zero(sched_kind kind, double lr)
{
    sched s;
    memset(&s, 0, sizeof s);
    s.kind = kind;
    s.base_lr = lr;
    return s;
}

sched sched_constant(double lr) { return sched_zero(SCHED_CONSTANT, lr); }

sched sched_step(double lr, int64_t step_size, double gamma)
{
    sched s = sched_zero(SCHED_STEP, lr);
    s.step_size = step_size;
    s.gamma = gamma;
    return s;
}

sched sched_cosine(double lr, int64_t warmup_steps, int64_t total_steps, double min_lr)
{
    sched s = sched_zero(SCHED_COSINE, lr);
    s.warmup_steps = warmup_steps;
    s.total_steps = total_steps;
    s.min_lr = min_lr;
    return s;
}

sched sched_onecycle(double max_lr, int64_t total_steps)
{
    sched s = sched_zero(SCHED_ONECYCLE, max_lr);
    s.total_steps = total_steps;
    s.pct_start = 0.3;
    s.div_factor = 25.0;
    s.final_div_factor = 1e4;
    s.cycle_momentum = true;
    s.base_momentum = 0.85;
    s.max_momentum = 0.95;
    return s;
}

int sched_validate(const sched *s)
{
    if (!isfinite(s->base_lr) || s->base_lr < 0)
        return ferc_set_error(FERC_ERR_INVALID, "lr schedule: bad lr %g", s->base_lr);
    switch (s->kind) {
    case SCHED_CONSTANT:
        return FERC_OK;
    case SCHED_STEP:
        if (s->step_size <= 0 || !(s->gamma > 0) || !isfinite(s->gamma))
            return ferc_set_error(FERC_ERR_INVALID,
                                  "step schedule: step_size %lld must be > 0 and gamma %g > 0",
                                  (long long)s->step_size, s->gamma);
        return FERC_OK;
    case SCHED_COSINE:
        if (s->warmup_steps < 0 || s->total_steps <= s->warmup_steps)
            return ferc_set_error(FERC_ERR_INVALID,
                                  "cosine schedule: need 0 <= warmup (%lld) < total steps (%lld)",
                                  (long long)s->warmup_steps, (long long)s->total_steps);
        if (!(s->min_lr >= 0) || s->min_lr > s->base_lr)
            return ferc_set_error(FERC_ERR_INVALID, "cosine schedule: min lr %g not in [0, %g]",
                                  s->min_lr, s->base_lr);
        return FERC_OK;
    case SCHED_ONECYCLE: {
        if (s->total_steps <= 0)
            return ferc_set_error(FERC_ERR_INVALID, "onecycle: total steps %lld must be > 0",
                                  (long long)s->total_steps);
        if (!(s->pct_start >= 0 && s->pct_start <= 1))
            return ferc_set_error(FERC_ERR_INVALID, "onecycle: pct_start %g not in [0, 1]",
                                  s->pct_start);
        if (!(s->div_factor > 0) || !(s->final_div_factor > 0))
            return ferc_set_error(FERC_ERR_INVALID, "onecycle: div factors must be > 0");
        /* torch divides by each phase's length and fails on an empty phase */
        double total = (double)s->total_steps;
        double e1 = s->pct_start * total - 1;
        double e2 = s->three_phase ? 2 * s->pct_start * total - 2 : total - 1;
        if (!(e1 > 0) || !(e2 > e1) || (s->three_phase && !(total - 1 > e2)))
            return ferc_set_error(FERC_ERR_INVALID,
                                  "onecycle: %lld steps with pct_start %g leave an empty phase",
                                  (long long)s->total_steps, s->pct_start);
        if (s->cycle_momentum && (!(s->base_momentum >= 0) || !(s->max_momentum < 1)))
            return ferc_set_error(FERC_ERR_INVALID, "onecycle: momenta must lie in [0, 1)");
        return FERC_OK;
    }
    default:
        return ferc_set_error(FERC_ERR_INVALID, "lr schedule: unknown kind %d", (int)s->kind);
    }
}

static double sched_anneal(const sched *s, double start, double end, double pct)
{
    if (s->anneal_linear) return (end - start) * pct + start;
    double cos_out = cos(M_PI * pct) + 1;
    return end + (start - end) / 2.0 * cos_out;
}

/* One phase of OneCycle: it ends at step `end` (a double, as torch computes it) and anneals
 * lr from lr0 to lr1 and momentum from m0 to m1. */
typedef struct sched_phase { double end, lr0, lr1, m0, m1; } sched_phase;

/* torch OneCycleLR.get_lr for one group; what = 0 for the lr, 1 for the momentum. */
static double sched_onecycle_value(const sched *s, int64_t step, int what)
{
    double total = (double)s->total_steps;
    if (step > s->total_steps) step = s->total_steps;
    double initial = s->base_lr / s->div_factor;
    double min_lr = initial / s->final_div_factor;
    double maxm = s->max_momentum, basem = s->base_momentum;
    sched_phase ph[3];
    int nph;
    if (s->three_phase) {
        ph[0] = (sched_phase){s->pct_start * total - 1, initial, s->base_lr, maxm, basem};
        ph[1] = (sched_phase){2 * s->pct_start * total - 2, s->base_lr, initial, basem, maxm};
        ph[2] = (sched_phase){total - 1, initial, min_lr, maxm, maxm};
        nph = 3;
    } else {
        ph[0] = (sched_phase){s->pct_start * total - 1, initial, s->base_lr, maxm, basem};
        ph[1] = (sched_phase){total - 1, s->base_lr, min_lr, basem, maxm};
        nph = 2;
    }
    double k = (double)step, start = 0;
    for (int i = 0; i < nph; i++) {
        if (k <= ph[i].end || i == nph - 1) {
            double len = ph[i].end - start;
            double pct = len > 0 ? (k - start) / len : 1.0;   /* sched_validate rejects len 0 */
            return what == 0 ? sched_anneal(s, ph[i].lr0, ph[i].lr1, pct)
                             : sched_anneal(s, ph[i].m0, ph[i].m1, pct);
        }
        start = ph[i].end;
    }
    return s->base_lr;   /* not reached */
}

double sched_lr(const sched *s, int64_t step)
{
    if (step < 0) step = 0;
    switch (s->kind) {
    case SCHED_CONSTANT:
        return s->base_lr;
    case SCHED_STEP:
        if (s->step_size <= 0) return s->base_lr;
        return s->base_lr * pow(s->gamma, (double)(step / s->step_size));
    case SCHED_COSINE: {
        int64_t w = s->warmup_steps, T = s->total_steps;
        if (step < w) return s->base_lr * (double)(step + 1) / (double)(w + 1);
        int64_t tmax = T - w, t = step - w;
        if (tmax <= 0) return s->min_lr;
        if (t > tmax) t = tmax;
        return s->min_lr +
               (s->base_lr - s->min_lr) * (1 + cos(M_PI * (double)t / (double)tmax)) / 2;
    }
    case SCHED_ONECYCLE:
        return sched_onecycle_value(s, step, 0);
    default:
        return s->base_lr;
    }
}

bool sched_cycles_momentum(const sched *s)
{
    return s->kind == SCHED_ONECYCLE && s->cycle_momentum;
}

double sched_momentum(const sched *s, int64_t step)
{
    if (!sched_cycles_momentum(s)) return s->max_momentum;
    return sched_onecycle_value(s, step < 0 ? 0 : step, 1);
}
