/* optim: SGD / Adam / AdamW updates, clipping and lr schedules against torch 1.13.
 *
 * The fixtures come from tools/gen_optim_fixtures.py (tests/fixtures/optim/optim.safetensors);
 * the configurations below must stay equal to the ones in that script. Also checked without
 * torch: frozen ranges untouched bit for bit, state export/import through a safetensors file
 * continuing bit for bit, threaded and serial paths giving identical results, and bad
 * arguments returning errors. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#include "io/safetensors.h"
#include "optim/optim.h"
#include "testutil.h"

#define FIXTURE "tests/fixtures/optim/optim.safetensors"
#define STEPS 8
#define PARAM_TOL 1e-5
#define LR_TOL 1e-6

/* The flat layout of the script's SHAPES: conv.weight, conv.bias, bn.weight, bn.bias,
 * fc.weight, fc.bias. */
static const char *const layout_names[] = {"conv.weight", "conv.bias", "bn.weight", "bn.bias",
                                           "fc.weight", "fc.bias"};
static const size_t layout_counts[] = {288, 8, 8, 8, 192, 6};
#define NRANGES 6
#define TOTAL 510

static st_file fx;

static float *load_f32(const char *name, size_t want)
{
    const st_tensor *t = st_find(&fx, name);
    CHECK(t != NULL, "fixture tensor %s missing", name);
    if (!t || st_numel(t) != want) {
        CHECK(t == NULL, "fixture tensor %s: %zu values, expected %zu", name, st_numel(t), want);
        return NULL;
    }
    float *v = malloc(want * sizeof *v);
    if (st_to_f32(t, v, want)) {
        free(v);
        return NULL;
    }
    return v;
}

/* F64 fixture (lrs, norms); returns the count in *n. */
static double *load_f64(const char *name, size_t *n)
{
    const st_tensor *t = st_find(&fx, name);
    CHECK(t && t->dtype == ST_F64, "fixture tensor %s missing or not F64", name);
    if (!t || t->dtype != ST_F64) return NULL;
    *n = st_numel(t);
    double *v = malloc(*n * sizeof *v + 1);
    memcpy(v, t->data, *n * sizeof *v);
    return v;
}

static double rel_err_d(double got, double want)
{
    double s = fabs(want) > 1e-12 ? fabs(want) : 1e-12;
    return fabs(got - want) / s;
}

static void make_ranges(optim_range *r, const int *group, const bool *frozen)
{
    size_t off = 0;
    for (int i = 0; i < NRANGES; i++) {
        r[i] = (optim_range){layout_names[i], off, layout_counts[i], group ? group[i] : 0,
                             frozen ? frozen[i] : false};
        off += layout_counts[i];
    }
}

typedef enum { CLIP_NONE, CLIP_VALUE, CLIP_NORM } clip_mode;

typedef struct update_case {
    const char *name;
    optim_config cfg;
    const optim_group *groups;
    int ngroups;
    const int *group;
    const bool *frozen;
    sched s;
    clip_mode clip;
    float clip_arg;
} update_case;

/* Runs a case step by step against torch; returns the final parameters (caller frees). */
static float *run_update_case(const update_case *c)
{
    char key[128];
    optim_range ranges[NRANGES];
    make_ranges(ranges, c->group, c->frozen);
    optim *o = NULL;
    CHECK_OK(optim_create(&o, &c->cfg, c->groups, c->ngroups, ranges, NRANGES, TOTAL));
    snprintf(key, sizeof key, "%s.params0", c->name);
    float *p = load_f32(key, TOTAL);
    size_t nlr = 0, nnorm = 0;
    snprintf(key, sizeof key, "%s.lr", c->name);
    double *lrs = load_f64(key, &nlr);
    double *norms = NULL;
    if (c->clip == CLIP_NORM) {
        snprintf(key, sizeof key, "%s.norm", c->name);
        norms = load_f64(key, &nnorm);
    }
    if (!o || !p || !lrs || nlr != STEPS || (c->clip == CLIP_NORM && (!norms || nnorm != STEPS))) {
        CHECK(0, "case %s: setup failed", c->name);
        optim_destroy(o);
        free(p);
        free(lrs);
        free(norms);
        return NULL;
    }
    double perr = 0, lerr = 0, nerr = 0;
    for (int k = 0; k < STEPS; k++) {
        snprintf(key, sizeof key, "%s.grads.%d", c->name, k);
        float *g = load_f32(key, TOTAL);
        snprintf(key, sizeof key, "%s.params.%d", c->name, k);
        float *want = load_f32(key, TOTAL);
        if (!g || !want) {
            free(g);
            free(want);
            break;
        }
        if (c->clip == CLIP_VALUE) CHECK_OK(optim_clip_grad_value(o, g, c->clip_arg));
        if (c->clip == CLIP_NORM) {
            float norm = 0;
            CHECK_OK(optim_clip_grad_norm(o, g, c->clip_arg, &norm));
            double e = rel_err_d(norm, norms[k]);
            if (e > nerr) nerr = e;
        }
        double e = rel_err_d(sched_lr(&c->s, k), lrs[k]);
        if (e > lerr) lerr = e;
        CHECK_OK(optim_step_sched(o, p, g, &c->s, k));
        e = max_rel_err(p, want, TOTAL, 1e-6);
        if (e > perr || isnan(e)) perr = isnan(e) ? INFINITY : e;
        free(g);
        free(want);
    }
    printf("  %-22s params after %d steps: max rel err %.3e (tol %.0e)  lr: %.3e (tol %.0e)",
           c->name, STEPS, perr, PARAM_TOL, lerr, LR_TOL);
    if (norms) printf("  grad norm: %.3e", nerr);
    printf("\n");
    CHECK(perr <= PARAM_TOL, "%s: params max rel err %g", c->name, perr);
    CHECK(lerr <= LR_TOL, "%s: lr max rel err %g", c->name, lerr);
    CHECK(nerr <= PARAM_TOL, "%s: grad norm rel err %g", c->name, nerr);
    optim_destroy(o);
    free(lrs);
    free(norms);
    return p;
}

static void test_updates(void)
{
    printf("updates against torch:\n");
    update_case c;

    memset(&c, 0, sizeof c);
    c.name = "sgd_nesterov";
    c.cfg = optim_config_default(OPTIM_SGD);
    c.cfg.momentum = 0.9;
    c.cfg.nesterov = true;
    c.cfg.weight_decay = 1e-3;
    c.s = sched_constant(0.05);
    free(run_update_case(&c));

    memset(&c, 0, sizeof c);
    c.name = "adam_onecycle";
    c.cfg = optim_config_default(OPTIM_ADAM);
    c.cfg.weight_decay = 1e-4;
    c.s = sched_onecycle(1e-2, STEPS);
    c.clip = CLIP_VALUE;
    c.clip_arg = 0.05f;
    free(run_update_case(&c));

    memset(&c, 0, sizeof c);
    c.name = "adamw_cosine";
    c.cfg = optim_config_default(OPTIM_ADAMW);
    c.cfg.weight_decay = 0.05;
    c.s = sched_cosine(3e-3, 2, STEPS, 1e-4);
    c.clip = CLIP_NORM;
    c.clip_arg = 1.0f;
    free(run_update_case(&c));

    memset(&c, 0, sizeof c);
    static const optim_group groups[2] = {{1.0, false, 0}, {0.1, true, 0.0}};
    static const int group[NRANGES] = {0, 1, 1, 1, 0, 1};
    static const bool frozen[NRANGES] = {false, false, true, false, false, false};
    c.name = "sgd_groups";
    c.cfg = optim_config_default(OPTIM_SGD);
    c.cfg.momentum = 0.9;
    c.cfg.weight_decay = 5e-4;
    c.groups = groups;
    c.ngroups = 2;
    c.group = group;
    c.frozen = frozen;
    c.s = sched_step(0.1, 3, 0.5);
    float *p = run_update_case(&c);
    float *p0 = load_f32("sgd_groups.params0", TOTAL);
    if (p && p0) {
        /* bn.weight is [296, 304) */
        CHECK(!memcmp(p + 296, p0 + 296, 8 * sizeof(float)), "frozen range changed");
        printf("  %-22s frozen range bit-for-bit unchanged: %s\n", "sgd_groups",
               memcmp(p + 296, p0 + 296, 8 * sizeof(float)) ? "NO" : "yes");
    }
    free(p);
    free(p0);

    memset(&c, 0, sizeof c);
    c.name = "adam_amsgrad";
    c.cfg = optim_config_default(OPTIM_ADAM);
    c.cfg.beta1 = 0.8;
    c.cfg.beta2 = 0.99;
    c.cfg.eps = 1e-6;
    c.cfg.weight_decay = 1e-3;
    c.cfg.amsgrad = true;
    c.s = sched_constant(5e-3);
    free(run_update_case(&c));
}

static void check_sched(const char *name, const sched *s, bool momentum)
{
    char key[128];
    size_t n = 0, nm = 0;
    CHECK_OK(sched_validate(s));
    snprintf(key, sizeof key, "sched.%s.lr", name);
    double *lr = load_f64(key, &n);
    snprintf(key, sizeof key, "sched.%s.momentum", name);
    double *mom = load_f64(key, &nm);
    if (!lr || !mom) {
        free(lr);
        free(mom);
        return;
    }
    double le = 0, me = 0;
    for (size_t k = 0; k < n; k++) {
        double e = rel_err_d(sched_lr(s, (int64_t)k), lr[k]);
        if (e > le || isnan(e)) le = isnan(e) ? INFINITY : e;
        if (momentum) {
            e = rel_err_d(sched_momentum(s, (int64_t)k), mom[k]);
            if (e > me || isnan(e)) me = isnan(e) ? INFINITY : e;
        }
    }
    printf("  %-26s %3zu steps: lr max rel err %.3e", name, n, le);
    if (momentum) printf(", momentum %.3e", me);
    printf(" (tol %.0e)\n", LR_TOL);
    CHECK(le <= LR_TOL, "%s lr err %g", name, le);
    CHECK(me <= LR_TOL, "%s momentum err %g", name, me);
    CHECK(sched_cycles_momentum(s) == momentum);
    free(lr);
    free(mom);
}

static void test_schedules(void)
{
    printf("schedules against torch:\n");
    sched s = sched_onecycle(0.1, 100);
    check_sched("onecycle_100", &s, true);
    s = sched_onecycle(3e-3, 1 * 37);
    check_sched("onecycle_37_adam", &s, true);
    s = sched_onecycle(0.2, 50);
    s.pct_start = 0.25;
    s.anneal_linear = true;
    s.three_phase = true;
    s.div_factor = 10;
    s.final_div_factor = 100;
    s.base_momentum = 0.8;
    s.max_momentum = 0.9;
    check_sched("onecycle_50_three_linear", &s, true);
    s = sched_cosine(0.1, 10, 100, 1e-5);
    check_sched("cosine_warmup", &s, false);
    s = sched_step(0.1, 7, 0.3);
    check_sched("steplr", &s, false);

    s = sched_constant(0.25);
    CHECK(sched_lr(&s, 0) == 0.25 && sched_lr(&s, 123456) == 0.25);
    /* invalid schedules are refused, not evaluated into nan */
    s = sched_onecycle(0.1, 3);   /* 0.3 * 3 - 1 < 0: an empty warmup phase */
    CHECK(sched_validate(&s) == FERC_ERR_INVALID);
    s = sched_cosine(0.1, 10, 10, 0);
    CHECK(sched_validate(&s) == FERC_ERR_INVALID);
    s = sched_step(0.1, 0, 0.5);
    CHECK(sched_validate(&s) == FERC_ERR_INVALID);
    sched_kind k;
    CHECK(sched_kind_parse("onecycle", &k) == FERC_OK && k == SCHED_ONECYCLE);
    CHECK(sched_kind_parse("bogus", &k) == FERC_ERR_INVALID);
}

/* Fills params and a sequence of grads with seeded noise. */
static void fill(float *v, size_t n, uint64_t seed, double scale)
{
    rng r;
    rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) v[i] = (float)(rng_normal(&r) * scale);
}

/* 3 steps, save state to a safetensors file, load into a fresh optimizer, 2 more steps ==
 * 5 uninterrupted steps, bit for bit. */
static void test_resume(optim_config cfg, const char *label)
{
    optim_range ranges[NRANGES];
    static const bool frozen[NRANGES] = {false, false, true, false, false, false};
    make_ranges(ranges, NULL, frozen);
    float *pa = malloc(TOTAL * sizeof(float)), *pb = malloc(TOTAL * sizeof(float));
    float *g = malloc(TOTAL * sizeof(float));
    fill(pa, TOTAL, 1, 0.5);
    memcpy(pb, pa, TOTAL * sizeof(float));
    sched s = sched_onecycle(1e-2, 5 * 2);
    optim *a = NULL, *b = NULL;
    CHECK_OK(optim_create(&a, &cfg, NULL, 0, ranges, NRANGES, TOTAL));
    CHECK_OK(optim_create(&b, &cfg, NULL, 0, ranges, NRANGES, TOTAL));
    if (!a || !b) goto done;
    for (int k = 0; k < 5; k++) {
        fill(g, TOTAL, 100 + (uint64_t)k, 0.1);
        CHECK_OK(optim_step_sched(a, pa, g, &s, k));
    }
    for (int k = 0; k < 3; k++) {
        fill(g, TOTAL, 100 + (uint64_t)k, 0.1);
        CHECK_OK(optim_step_sched(b, pb, g, &s, k));
    }
    char path[] = "/tmp/ferc_test_optim_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) goto done;
    close(fd);
    optim_state_tensor t[OPTIM_MAX_STATE_TENSORS];
    int n = optim_state_tensors(b, t);
    st_writer *w = st_writer_create();
    for (int i = 0; i < n; i++) {
        int64_t shape[1] = {(int64_t)t[i].count};
        CHECK_OK(st_writer_add(w, t[i].name, ST_F32, 1, shape, t[i].data));
    }
    /* the frozen range (bn.weight, range 2 at [296, 304)) has no state at all */
    bool untouched = true;
    for (int i = 0; i < n; i++) {
        if (!strcmp(t[i].name, "optim.step")) untouched &= t[i].data[2] == 0 && t[i].data[0] == 3;
        else
            for (size_t j = 296; j < 304; j++) untouched &= t[i].data[j] == 0;
    }
    CHECK(untouched, "%s: frozen range got optimizer state", label);
    CHECK_OK(st_writer_save(w, path));
    st_writer_destroy(w);
    optim_destroy(b);
    b = NULL;
    CHECK_OK(optim_create(&b, &cfg, NULL, 0, ranges, NRANGES, TOTAL));
    st_file f;
    CHECK_OK(st_read(&f, path));
    unlink(path);
    n = optim_state_tensors(b, t);
    for (int i = 0; i < n; i++) {
        const st_tensor *st = st_find(&f, t[i].name);
        CHECK(st != NULL, "%s missing from checkpoint", t[i].name);
        if (!st) continue;
        float *tmp = malloc(st_numel(st) * sizeof(float) + 1);
        CHECK_OK(st_to_f32(st, tmp, st_numel(st)));
        CHECK_OK(optim_state_set(b, t[i].name, tmp, st_numel(st)));
        free(tmp);
    }
    st_close(&f);
    for (int k = 3; k < 5; k++) {
        fill(g, TOTAL, 100 + (uint64_t)k, 0.1);
        CHECK_OK(optim_step_sched(b, pb, g, &s, k));
    }
    bool same = !memcmp(pa, pb, TOTAL * sizeof(float));
    printf("  %-22s 3 + resume + 2 steps == 5 steps bit for bit: %s (%d state tensors)\n", label,
           same ? "yes" : "NO", n);
    CHECK(same, "%s: resumed run differs", label);
    /* wrong name or size is refused */
    CHECK(optim_state_set(b, "optim.nope", g, TOTAL) == FERC_ERR_NOT_FOUND);
    CHECK(optim_state_set(b, "optim.step", g, TOTAL) == FERC_ERR_SHAPE);
done:
    optim_destroy(a);
    optim_destroy(b);
    free(pa);
    free(pb);
    free(g);
}

/* A range large enough for the OpenMP path must give exactly what the same elements give in
 * small serial ranges (same group, so the same math). */
static void test_threaded_equals_serial(optim_kind kind)
{
    enum { N = 200000, PIECES = 16 };
    optim_config cfg = optim_config_default(kind);
    cfg.momentum = 0.9;
    cfg.weight_decay = 1e-3;
    optim_range big = {"big", 0, N, 0, false}, small[PIECES];
    for (int i = 0; i < PIECES; i++)
        small[i] = (optim_range){NULL, (size_t)i * (N / PIECES), N / PIECES, 0, false};
    float *pa = malloc(N * sizeof(float)), *pb = malloc(N * sizeof(float));
    float *ga = malloc(N * sizeof(float)), *gb = malloc(N * sizeof(float));
    optim *a = NULL, *b = NULL;
    CHECK_OK(optim_create(&a, &cfg, NULL, 0, &big, 1, N));
    CHECK_OK(optim_create(&b, &cfg, NULL, 0, small, PIECES, N));
    fill(pa, N, 7, 1.0);
    memcpy(pb, pa, N * sizeof(float));
    double na = 0, nb = 0;
    for (int k = 0; a && b && k < 3; k++) {
        fill(ga, N, 50 + (uint64_t)k, 0.01);
        memcpy(gb, ga, N * sizeof(float));
        float fa, fb;
        CHECK_OK(optim_clip_grad_norm(a, ga, 1.0f, &fa));
        CHECK_OK(optim_clip_grad_norm(b, gb, 1.0f, &fb));
        na = fa;
        nb = fb;
        CHECK_OK(optim_clip_grad_value(a, ga, 0.002f));
        CHECK_OK(optim_clip_grad_value(b, gb, 0.002f));
        CHECK_OK(optim_step(a, pa, ga, 1e-3));
        CHECK_OK(optim_step(b, pb, gb, 1e-3));
    }
    bool same = !memcmp(pa, pb, N * sizeof(float));
    printf("  %-22s threaded range == serial pieces: %s (norm %.6g vs %.6g, rel %.1e)\n",
           optim_kind_name(kind), same ? "yes" : "NO", na, nb, rel_err_d(na, nb));
    CHECK(same);
    /* the block sums differ in order only by the piece boundaries: within float rounding */
    CHECK(rel_err_d(na, nb) < 1e-6);
    optim_destroy(a);
    optim_destroy(b);
    free(pa);
    free(pb);
    free(ga);
    free(gb);
}

static void test_errors(void)
{
    optim_config cfg = optim_config_default(OPTIM_SGD);
    optim *o = (optim *)1;
    optim_range r[2] = {{"a", 0, 10, 0, false}, {"b", 5, 10, 0, false}};
    CHECK(optim_create(&o, &cfg, NULL, 0, r, 2, 100) == FERC_ERR_INVALID && o == NULL);
    CHECK(strstr(ferc_last_error(), "overlap") != NULL, "%s", ferc_last_error());
    r[1].offset = 95;
    CHECK(optim_create(&o, &cfg, NULL, 0, r, 2, 100) == FERC_ERR_INVALID);
    CHECK(strstr(ferc_last_error(), "'b'") != NULL, "%s", ferc_last_error());
    r[1].offset = 10;
    r[1].group = 3;
    CHECK(optim_create(&o, &cfg, NULL, 0, r, 2, 100) == FERC_ERR_INVALID);
    r[1].group = 0;
    cfg.nesterov = true;   /* without momentum */
    CHECK(optim_create(&o, &cfg, NULL, 0, r, 2, 100) == FERC_ERR_INVALID);
    cfg.nesterov = false;
    CHECK_OK(optim_create(&o, &cfg, NULL, 0, r, 2, 100));
    float p[100] = {0}, g[100] = {0};
    CHECK(optim_step(o, p, g, NAN) == FERC_ERR_INVALID);
    optim_set_momentum(o, 0.9);   /* created without a momentum buffer */
    CHECK(optim_step(o, p, g, 0.1) == FERC_ERR_INVALID);
    CHECK(optim_set_frozen(o, 2, true) == FERC_ERR_INVALID);
    CHECK(optim_find_range(o, "b") == 1 && optim_find_range(o, "zz") == -1);
    optim_destroy(o);
    cfg = optim_config_default(OPTIM_ADAM);
    cfg.beta1 = 1.0;
    CHECK(optim_create(&o, &cfg, NULL, 0, r, 2, 100) == FERC_ERR_INVALID);
    optim_kind k;
    CHECK(optim_kind_parse("adamw", &k) == FERC_OK && k == OPTIM_ADAMW);
    CHECK(optim_kind_parse("rmsprop", &k) == FERC_ERR_INVALID);
}

int main(void)
{
    if (st_read(&fx, FIXTURE)) {
        fprintf(stderr, "FAIL: %s\n", ferc_last_error());
        return 1;
    }
    test_updates();
    test_schedules();
    printf("state and threads:\n");
    optim_config cfg = optim_config_default(OPTIM_ADAM);
    cfg.amsgrad = true;
    cfg.weight_decay = 1e-4;
    test_resume(cfg, "adam+amsgrad");
    cfg = optim_config_default(OPTIM_SGD);
    cfg.momentum = 0.9;
    cfg.nesterov = true;
    test_resume(cfg, "sgd+nesterov");
    test_threaded_equals_serial(OPTIM_ADAM);
    test_threaded_equals_serial(OPTIM_SGD);
    test_errors();
    st_close(&fx);
    return test_finish("test_optim");
}
