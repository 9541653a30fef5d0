/* checkpoint: last.safetensors, the resumable state of a training run.
 *
 * Tensors: every parameter and buffer of the graph by its state_dict name (F32; batch counts
 * I64), then the optimizer's state tensors ("optim.exp_avg", ...). Metadata "ferc.trainer":
 * the trainer_state as JSON with doubles printed with 17 significant digits, so they read back
 * bit-exact. The file is written atomically by st_writer_save. */
#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "io/safetensors.h"
#include "nn/nn.h"
#include "train/trainer.h"

static void state_to_json(const trainer_state *s, char *buf, size_t size)
{
    snprintf(buf, size,
             "{\"phase\":%d,\"epoch\":%d,\"step_in_epoch\":%d,\"phase_step\":%lld,\"epochs_done\":%d,"
             "\"loss_sum\":%.17g,\"correct\":%.17g,\"seen\":%.17g,\"epoch_seconds\":%.17g,"
             "\"best_val_acc\":%.17g,\"best_epoch\":%d,\"bad_epochs\":%d,\"elapsed\":%.17g,\"seed\":\"%llu\"}",
             s->phase, s->epoch, s->step_in_epoch, (long long)s->phase_step, s->epochs_done, s->loss_sum,
             s->correct, s->seen, s->epoch_seconds, s->best_val_acc, s->best_epoch, s->bad_epochs, s->elapsed,
             (unsigned long long)s->seed);
}

/* An integer field: absent is 0; present, it must be a whole number in [0, hi]. */
static bool int_field(const cJSON *o, const char *key, double hi, double *out)
{
    const cJSON *v = cJSON_GetObjectItem(o, key);
    *out = 0;
    if (!v) return true;
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble <= hi) || v->valuedouble != floor(v->valuedouble))
        return false;
    *out = v->valuedouble;
    return true;
}

static int state_from_json(const char *text, trainer_state *s, const char *path)
{
    cJSON *o = cJSON_Parse(text);
    if (!o) return ferc_set_error(FERC_ERR_FORMAT, "%s: ferc.trainer is not JSON", path);
    memset(s, 0, sizeof *s);
    /* counts are read as whole numbers in range before any cast (a double beyond INT_MAX
     * converted to int is undefined behaviour: found by fuzz_config) */
    static const char *const ints[] = {"phase", "epoch", "step_in_epoch", "phase_step", "epochs_done", "best_epoch",
                                       "bad_epochs"};
    double iv[7];
    for (int k = 0; k < 7; k++)
        if (!int_field(o, ints[k], k == 3 ? 9007199254740992.0 : (double)INT_MAX, &iv[k])) {
            cJSON_Delete(o);
            return ferc_set_error(FERC_ERR_FORMAT, "%s: bad trainer state (%s is not a whole number in range)", path,
                                  ints[k]);
        }
    s->phase = (int)iv[0];
    s->epoch = (int)iv[1];
    s->step_in_epoch = (int)iv[2];
    s->phase_step = (int64_t)iv[3];
    s->epochs_done = (int)iv[4];
    s->best_epoch = (int)iv[5];
    s->bad_epochs = (int)iv[6];
#define NUM(key) (cJSON_IsNumber(cJSON_GetObjectItem(o, key)) ? cJSON_GetObjectItem(o, key)->valuedouble : 0.0)
    s->loss_sum = NUM("loss_sum");
    s->correct = NUM("correct");
    s->seen = NUM("seen");
    s->epoch_seconds = NUM("epoch_seconds");
    s->best_val_acc = NUM("best_val_acc");
    s->elapsed = NUM("elapsed");
#undef NUM
    const char *seed = cJSON_GetStringValue(cJSON_GetObjectItem(o, "seed"));
    s->seed = seed ? strtoull(seed, NULL, 10) : 0;
    cJSON_Delete(o);
    if (s->phase < 1 || s->phase > 2)
        return ferc_set_error(FERC_ERR_FORMAT, "%s: bad trainer state (phase %d)", path, s->phase);
    return FERC_OK;
}

int checkpoint_save(const char *path, const nn_graph *g, optim *opt, const trainer_state *st, const float *ema_params,
                    const float *ema_buffers)
{
    st_writer *w = st_writer_create();
    if (!w) return ferc_set_error(FERC_ERR_NOMEM, "checkpoint: out of memory");
    int rc = FERC_OK;
    for (int i = 0; i < g->nparams && !rc; i++) {
        const nn_param *p = &g->param_table[i];
        int64_t shape[NN_MAX_DIMS];
        for (int d = 0; d < p->ndim; d++) shape[d] = p->shape[d];
        if (p->kind == NN_BUFFER_NUM_BATCHES)
            rc = st_writer_add(w, p->name, ST_I64, 0, shape, g->batches_tracked + p->offset);
        else
            rc = st_writer_add(w, p->name, ST_F32, p->ndim, shape, nn_param_data(g, p));
    }
    optim_state_tensor ts[OPTIM_MAX_STATE_TENSORS];
    int nt = opt ? optim_state_tensors(opt, ts) : 0;
    for (int i = 0; i < nt && !rc; i++) {
        int64_t n = (int64_t)ts[i].count;
        rc = st_writer_add(w, ts[i].name, ST_F32, 1, &n, ts[i].data);
    }
    if (ema_params && !rc) {
        int64_t n = (int64_t)g->n_params, m = (int64_t)g->n_buffers;
        rc = st_writer_add(w, "ema.params", ST_F32, 1, &n, ema_params);
        if (!rc && m) rc = st_writer_add(w, "ema.buffers", ST_F32, 1, &m, ema_buffers);
    }
    char meta[1024];
    state_to_json(st, meta, sizeof meta);
    if (!rc) rc = st_writer_meta(w, "ferc.trainer", meta);
    if (!rc) rc = st_writer_save(w, path);
    st_writer_destroy(w);
    return rc;
}

static int read_state(const st_file *f, trainer_state *st, const char *path)
{
    const char *meta = st_meta(f, "ferc.trainer");
    return meta ? state_from_json(meta, st, path)
                : ferc_set_error(FERC_ERR_FORMAT, "%s: not a ferc training checkpoint (no ferc.trainer)", path);
}

int checkpoint_read_state(const char *path, trainer_state *st)
{
    st_file f;
    int rc = st_read(&f, path);
    if (rc) return rc;
    rc = read_state(&f, st, path);
    st_close(&f);
    return rc;
}

static int load_ema(const st_file *f, const char *name, float *dst, size_t count, const char *path)
{
    const st_tensor *t = st_find(f, name);
    if (!t) return ferc_set_error(FERC_ERR_FORMAT, "%s: %s missing (the run averages weights: --ema)", path, name);
    if (st_numel(t) != count) return ferc_set_error(FERC_ERR_SHAPE, "%s: %s has %zu elements, the model %zu", path, name, st_numel(t), count);
    return st_to_f32(t, dst, count);
}

int checkpoint_load(const char *path, nn_graph *g, optim *opt, trainer_state *st, float *ema_params, float *ema_buffers)
{
    st_file f;
    int rc = st_read(&f, path);
    if (rc) return rc;
    rc = read_state(&f, st, path);
    for (int i = 0; i < g->nparams && !rc; i++) {
        const nn_param *p = &g->param_table[i];
        const st_tensor *t = st_find(&f, p->name);
        if (!t) {
            rc = ferc_set_error(FERC_ERR_FORMAT, "%s: tensor %s missing", path, p->name);
        } else if (p->kind == NN_BUFFER_NUM_BATCHES) {
            if (t->dtype != ST_I64 || t->nbytes != sizeof(int64_t))
                rc = ferc_set_error(FERC_ERR_FORMAT, "%s: %s is not an I64 scalar", path, p->name);
            else
                memcpy(g->batches_tracked + p->offset, t->data, sizeof(int64_t));
        } else if (st_numel(t) != p->count) {
            rc = ferc_set_error(FERC_ERR_SHAPE, "%s: %s has %zu elements, the model %zu", path, p->name,
                                st_numel(t), p->count);
        } else {
            rc = st_to_f32(t, nn_param_data(g, p), p->count);
        }
    }
    if (opt && !rc) {
        optim_state_tensor ts[OPTIM_MAX_STATE_TENSORS];
        int nt = optim_state_tensors(opt, ts);
        for (int i = 0; i < nt && !rc; i++) {
            const st_tensor *t = st_find(&f, ts[i].name);
            if (!t) {
                rc = ferc_set_error(FERC_ERR_FORMAT, "%s: optimizer state %s missing", path, ts[i].name);
                break;
            }
            float *tmp = malloc(st_numel(t) * sizeof(float) + 1);
            if (!tmp) rc = ferc_set_error(FERC_ERR_NOMEM, "checkpoint: out of memory");
            if (!rc) rc = st_to_f32(t, tmp, st_numel(t));
            if (!rc) rc = optim_state_set(opt, ts[i].name, tmp, st_numel(t));
            free(tmp);
        }
    }
    if (ema_params && !rc) rc = load_ema(&f, "ema.params", ema_params, g->n_params, path);
    if (ema_buffers && g->n_buffers && !rc) rc = load_ema(&f, "ema.buffers", ema_buffers, g->n_buffers, path);
    st_close(&f);
    if (rc) ferc_wrap_error(rc, "loading checkpoint");
    return rc;
}
