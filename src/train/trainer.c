/* trainer: the two-phase training loop, its run folder, and exact resume (see trainer.h). */
#include "train/trainer.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "core/core.h"
#include "data/data.h"
#include "models/models.h"
#include "nn/nn.h"
#include "report/plots.h"
#include "train/metrics.h"

void trainer_config_default(trainer_config *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->arch, sizeof c->arch, "resnet18");
    c->img_size = 48;
    c->batch = 64;
    c->freeze_epochs = 0;
    /* a plain start: AdamW with OneCycle (a resnet18 at 48x48 reaches 63% on the FER data in
     * 12 epochs); --recipe fer is the shipped model's stronger recipe */
    c->epochs = 50;
    c->lr = 2e-3;
    c->optimizer = OPTIM_ADAMW;
    c->weight_decay = 0.05;
    c->momentum = 0.9;
    c->schedule = SCHED_ONECYCLE;
    c->warmup_epochs = 1;
    c->val_split = 0.1;
    c->backbone_lr_mult = 0.1;
    c->kd_weight = 0.5;
    c->seed = 1;
}

int trainer_recipe_seed(trainer_config *c)
{
    models_family fam;
    int rc = models_arch_family(c->arch, &fam);
    if (rc) return rc;
    c->optimizer = OPTIM_ADAM;
    c->weight_decay = 0.01;
    c->schedule = SCHED_ONECYCLE;
    c->lr = 1e-3;
    c->clip_value = 0.01;
    c->clip_norm = 0;
    c->batch = 128;
    c->epochs = 20;
    c->freeze_epochs = 0;
    c->backbone_lr_mult = 1.0; /* the notebook trained every layer at one lr */
    int crop = fam == MODELS_DENSENET ? 64 : 50;
    c->img_size = crop;
    snprintf(c->augment, sizeof c->augment,
             "resize(64) | randomcrop(%d,pad=4,mode=reflect) | hflip | normalize(cifar10)", crop);
    snprintf(c->recipe, sizeof c->recipe, "seed");
    return FERC_OK;
}

void trainer_default_augment(const trainer_config *c, char *buf, size_t size)
{
    int pad = c->img_size / 12 > 0 ? c->img_size / 12 : 1;
    snprintf(buf, size, "resize(%d,%d) | randomcrop(%d,pad=%d,mode=reflect) | hflip | normalize(%s)", c->img_size,
             c->img_size, c->img_size, pad, c->weights[0] ? "imagenet" : "cifar10");
}

int trainer_recipe_fer(trainer_config *c)
{
    c->optimizer = OPTIM_ADAMW;
    c->lr = 2e-3;
    c->weight_decay = 0.05;
    c->momentum = 0.9;
    c->schedule = SCHED_ONECYCLE;
    c->batch = 64;
    c->epochs = 50;
    c->freeze_epochs = 0;
    c->label_smoothing = 0.1;
    c->img_size = 64;
    snprintf(c->augment, sizeof c->augment,
             "resize(64,64) | randomcrop(64,pad=5,mode=reflect) | affine(degrees=10,translate=0/0,scale=0.9/1.1,fill=128) | "
             "hflip | normalize(mean=0.5072/0.5072/0.5072,std=0.2553/0.2553/0.2553) | "
             "erase(p=0.5,scale=0.02/0.2,ratio=0.3/3.3,value=0)");
    snprintf(c->recipe, sizeof c->recipe, "fer");
    return FERC_OK;
}

/* ---- config.json ----------------------------------------------------------------------- */
static const char *balance_name(trainer_balance b)
{
    return b == TRAINER_BALANCE_WEIGHTS ? "weights" : b == TRAINER_BALANCE_SAMPLER ? "sampler" : "none";
}

static int write_config(const trainer_config *c, const char *path)
{
    cJSON *o = cJSON_CreateObject();
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)c->seed);
    cJSON_AddStringToObject(o, "ferc_version", ferc_version());
    cJSON_AddStringToObject(o, "data", c->data_dir);
    char *abs = realpath(c->data_dir, NULL); /* lets `ferc eval --data RUN/split.csv` find the images */
    cJSON_AddStringToObject(o, "data_abs", abs ? abs : c->data_dir);
    free(abs);
    cJSON_AddStringToObject(o, "arch", c->arch);
    cJSON_AddStringToObject(o, "weights", c->weights);
    cJSON_AddStringToObject(o, "out", c->out_dir);
    cJSON_AddStringToObject(o, "augment", c->augment);
    cJSON_AddStringToObject(o, "split_manifest", c->split_manifest);
    cJSON_AddStringToObject(o, "unfreeze_from", c->unfreeze_from);
    cJSON_AddStringToObject(o, "recipe", c->recipe);
    cJSON_AddNumberToObject(o, "img_size", c->img_size);
    cJSON_AddNumberToObject(o, "batch", c->batch);
    cJSON_AddNumberToObject(o, "freeze_epochs", c->freeze_epochs);
    cJSON_AddNumberToObject(o, "epochs", c->epochs);
    cJSON_AddNumberToObject(o, "lr", c->lr);
    cJSON_AddStringToObject(o, "optimizer", optim_kind_name(c->optimizer));
    cJSON_AddNumberToObject(o, "weight_decay", c->weight_decay);
    cJSON_AddNumberToObject(o, "momentum", c->momentum);
    cJSON_AddStringToObject(o, "schedule", sched_kind_name(c->schedule));
    cJSON_AddNumberToObject(o, "warmup_epochs", c->warmup_epochs);
    cJSON_AddNumberToObject(o, "clip_value", c->clip_value);
    cJSON_AddNumberToObject(o, "clip_norm", c->clip_norm);
    cJSON_AddNumberToObject(o, "label_smoothing", c->label_smoothing);
    cJSON_AddNumberToObject(o, "mixup", c->mixup);
    cJSON_AddNumberToObject(o, "ema", c->ema);
    cJSON_AddStringToObject(o, "teacher", c->teacher);
    cJSON_AddNumberToObject(o, "kd_weight", c->kd_weight);
    cJSON_AddNumberToObject(o, "val_split", c->val_split);
    cJSON_AddNumberToObject(o, "backbone_lr_mult", c->backbone_lr_mult);
    cJSON_AddBoolToObject(o, "cache_features", c->cache_features);
    cJSON_AddBoolToObject(o, "keep_head", c->keep_head);
    cJSON_AddStringToObject(o, "seed", seed);
    cJSON_AddNumberToObject(o, "threads", c->threads);
    cJSON_AddStringToObject(o, "balance", balance_name(c->balance));
    cJSON_AddStringToObject(o, "precision", c->bf16 ? "bf16" : "fp32");
    cJSON_AddNumberToObject(o, "patience", c->patience);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    if (!text) return ferc_set_error(FERC_ERR_NOMEM, "config.json: out of memory");
    int rc = file_write_atomic(path, text, strlen(text));
    free(text);
    return rc;
}

int trainer_config_read(const char *run_dir, trainer_config *c)
{
    char path[TRAINER_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/config.json", run_dir);
    uint8_t *data;
    size_t size;
    int rc = file_read_all(path, &data, &size);
    if (rc) return rc;
    cJSON *o = cJSON_ParseWithLength((const char *)data, size);
    free(data);
    if (!o) return ferc_set_error(FERC_ERR_FORMAT, "%s: not JSON", path);
    trainer_config_default(c);
#define STR(key, dst) do { const char *s_ = cJSON_GetStringValue(cJSON_GetObjectItem(o, key)); \
        if (s_) snprintf(dst, sizeof dst, "%s", s_); } while (0)
#define NUM(key, dst) do { cJSON *n_ = cJSON_GetObjectItem(o, key); \
        if (cJSON_IsNumber(n_)) dst = n_->valuedouble; } while (0)
    STR("data", c->data_dir);
    STR("arch", c->arch);
    STR("weights", c->weights);
    STR("out", c->out_dir);
    STR("augment", c->augment);
    STR("split_manifest", c->split_manifest);
    STR("unfreeze_from", c->unfreeze_from);
    STR("recipe", c->recipe);
    STR("teacher", c->teacher);
    /* integers: within +-1e9 (a cast of anything larger to int is undefined) */
#define INT(key, dst) do { cJSON *n_ = cJSON_GetObjectItem(o, key); \
        if (cJSON_IsNumber(n_)) { \
            if (!(n_->valuedouble >= -1e9 && n_->valuedouble <= 1e9)) { \
                rc = ferc_set_error(FERC_ERR_FORMAT, "%s: \"%s\" is out of range (%g)", path, key, n_->valuedouble); \
                goto bad; \
            } \
            dst = (int)n_->valuedouble; \
        } } while (0)
    INT("img_size", c->img_size);
    INT("batch", c->batch);
    INT("freeze_epochs", c->freeze_epochs);
    INT("epochs", c->epochs);
    INT("threads", c->threads);
    INT("patience", c->patience);
    NUM("lr", c->lr);
    NUM("weight_decay", c->weight_decay);
    NUM("momentum", c->momentum);
    NUM("warmup_epochs", c->warmup_epochs);
    NUM("clip_value", c->clip_value);
    NUM("clip_norm", c->clip_norm);
    NUM("label_smoothing", c->label_smoothing);
    NUM("mixup", c->mixup);
    NUM("ema", c->ema);
    NUM("kd_weight", c->kd_weight);
    NUM("val_split", c->val_split);
    NUM("backbone_lr_mult", c->backbone_lr_mult);
    c->cache_features = cJSON_IsTrue(cJSON_GetObjectItem(o, "cache_features"));
    c->keep_head = cJSON_IsTrue(cJSON_GetObjectItem(o, "keep_head"));
#undef STR
#undef NUM
#undef INT
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItem(o, "optimizer"));
    if (s) rc = optim_kind_parse(s, &c->optimizer);
    s = cJSON_GetStringValue(cJSON_GetObjectItem(o, "schedule"));
    if (s && !rc) rc = sched_kind_parse(s, &c->schedule);
    s = cJSON_GetStringValue(cJSON_GetObjectItem(o, "seed"));
    if (s) c->seed = strtoull(s, NULL, 10);
    s = cJSON_GetStringValue(cJSON_GetObjectItem(o, "precision"));
    if (s && strcmp(s, "fp32") && strcmp(s, "bf16")) {
        rc = ferc_set_error(FERC_ERR_FORMAT, "%s: unknown precision '%s' (fp32 or bf16)", path, s);
        goto bad;
    }
    c->bf16 = s && !strcmp(s, "bf16");
    s = cJSON_GetStringValue(cJSON_GetObjectItem(o, "balance"));
    c->balance = s && !strcmp(s, "weights") ? TRAINER_BALANCE_WEIGHTS
               : s && !strcmp(s, "sampler") ? TRAINER_BALANCE_SAMPLER : TRAINER_BALANCE_NONE;
bad:
    cJSON_Delete(o);
    return rc;
}

/* ---- the run --------------------------------------------------------------------------- */
typedef struct run {
    trainer_config cfg;
    const trainer_callbacks *cb;
    data_index ix;
    bool ix_open;
    data_cache *cache;
    uint8_t *split;
    uint32_t *train_idx, *val_idx;
    size_t n_train, n_val;
    data_transform *tf_train, *tf_val;
    data_loader *Ltrain, *Lval;
    float *class_w;
    nn_graph *g;
    nn_exec *ex;
    optim *opt;
    sched sch;
    int K, S, B, steps_per_epoch;
    float *logits, *dlogits, *xpad;
    float *dlogits2;             /* mixup: gradient for the partner labels */
    int32_t *ymix;               /* mixup: partner labels */
    trainer_epoch *hist;
    int nhist;
    models_meta meta;
    int steps_this_call;
    /* --cache-features (phase 1): the backbone's output for every sample, computed once, and a
     * graph of the head alone that trains on it. */
    float *feat;                 /* (ix.n, D) */
    int feat_dim, feat_node, head_node;
    nn_graph *hg;
    nn_exec *hex;
    data_loader *Lplain;         /* the training split without augmentation, same order */
    float *fx;                   /* (B, D) gathered batch */
    int lock_fd;                 /* RUN_DIR/.lock, held while the run works in the folder */
    float *ema_p, *ema_b;        /* --ema: the averaged weights and batch-norm statistics */
    /* --teacher: the teachers' inference plans and their averaged softmax on a batch */
    int nteach;
    nn_graph *tg[TRAINER_MAX_TEACHERS];
    nn_exec *tex[TRAINER_MAX_TEACHERS];
    float *tlogits, *tprob, *dkd;
} run;

static void run_free(run *r)
{
    nn_exec_destroy(r->hex);
    nn_graph_destroy(r->hg);
    data_loader_destroy(r->Lplain);
    free(r->feat);
    free(r->fx);
    nn_exec_destroy(r->ex);
    optim_destroy(r->opt);
    nn_graph_destroy(r->g);
    data_loader_destroy(r->Ltrain);
    data_loader_destroy(r->Lval);
    data_transform_destroy(r->tf_train);
    data_transform_destroy(r->tf_val);
    data_cache_destroy(r->cache);
    if (r->ix_open) data_index_free(&r->ix);
    free(r->split);
    free(r->train_idx);
    free(r->val_idx);
    free(r->class_w);
    free(r->logits);
    free(r->dlogits);
    free(r->dlogits2);
    free(r->ymix);
    free(r->xpad);
    free(r->hist);
    free(r->ema_p);
    free(r->ema_b);
    for (int i = 0; i < r->nteach; i++) {
        nn_exec_destroy(r->tex[i]);
        nn_graph_destroy(r->tg[i]);
    }
    r->nteach = 0;
    free(r->tlogits);
    free(r->tprob);
    free(r->dkd);
    file_dir_unlock(r->lock_fd);
    r->lock_fd = -1;
    models_meta_free(&r->meta);
}

static void out_path(const run *r, char *buf, size_t size, const char *name)
{
    snprintf(buf, size, "%s/%s", r->cfg.out_dir, name);
}

static void message(const run *r, const char *fmt, ...) FERC_PRINTF(2, 3);
static void message(const run *r, const char *fmt, ...)
{
    if (!r->cb || !r->cb->on_message) return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    r->cb->on_message(r->cb->ud, buf);
}

/* Index, cache, split (new, from a manifest, or the run's own split.csv), transforms, loaders. */
static int setup_data(run *r, const char *split_csv_to_read)
{
    trainer_config *c = &r->cfg;
    int rc = data_index_open(&r->ix, c->data_dir, NULL);
    if (rc) return rc;
    r->ix_open = true;
    data_bad_files bad;
    data_cache_opts co = {(size_t)16 << 30, c->threads > 0 ? c->threads : 2, 0};
    rc = data_cache_load(&r->cache, &r->ix, &co, &bad);
    if (rc) return rc;
    if (bad.count) message(r, "skipped %zu undecodable files (first: %s)", bad.count, bad.first[0]);
    data_bad_files_free(&bad);
    r->K = r->ix.n_classes;
    r->split = malloc(r->ix.n ? r->ix.n : 1);
    if (!r->split) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    if (split_csv_to_read && split_csv_to_read[0])
        rc = data_manifest_read(split_csv_to_read, &r->ix, r->split);
    else
        rc = data_split_stratified(&r->ix, c->val_split, c->seed, r->split);
    if (rc) return rc;
    if ((rc = data_split_indices(r->split, r->ix.n, DATA_SPLIT_TRAIN, &r->train_idx, &r->n_train))) return rc;
    if ((rc = data_split_indices(r->split, r->ix.n, DATA_SPLIT_VAL, &r->val_idx, &r->n_val))) return rc;
    const bool manifest = split_csv_to_read && split_csv_to_read[0];
    if (r->n_val == 0)
        return manifest ? ferc_set_error(FERC_ERR_FORMAT, "%s: the split has no validation rows", split_csv_to_read)
                        : ferc_set_error(FERC_ERR_INVALID, "the split has no validation samples (use --val-split > 0)");
    if (r->n_train < (size_t)c->batch)
        return ferc_set_error(FERC_ERR_INVALID, "%s%s%zu training samples, fewer than one batch of %d",
                              manifest ? split_csv_to_read : "", manifest ? ": " : "", r->n_train, c->batch);

    if (!c->augment[0]) trainer_default_augment(c, c->augment, sizeof c->augment);
    if ((rc = data_transform_parse(&r->tf_train, c->augment))) return ferc_wrap_error(rc, "--augment");
    image first;
    data_cache_get(r->cache, r->train_idx[0], &first);
    int ow, oh;
    data_transform_out_size(r->tf_train, first.width, first.height, &ow, &oh);
    if (ow != oh) return ferc_set_error(FERC_ERR_INVALID, "the augmentation gives %dx%d images; ferc trains on squares", ow, oh);
    r->S = c->img_size = ow;
    float mean[3], std[3];
    data_transform_norm(r->tf_train, mean, std);
    char spec[256];
    snprintf(spec, sizeof spec, "resize(%d,%d) | normalize(mean=%.9g/%.9g/%.9g,std=%.9g/%.9g/%.9g)", r->S, r->S,
             mean[0], mean[1], mean[2], std[0], std[1], std[2]);
    if ((rc = data_transform_parse(&r->tf_val, spec))) return rc;

    r->B = c->batch;
    data_loader_opts lo = {r->B, c->seed, 1, 1, 1, 0, DATA_SAMPLE_PLAIN};
    if (c->balance == TRAINER_BALANCE_SAMPLER) lo.sampling = DATA_SAMPLE_BALANCED;
    if ((rc = data_loader_create(&r->Ltrain, r->cache, r->train_idx, r->n_train, r->tf_train, &lo))) return rc;
    data_loader_opts vo = {r->B, c->seed, 0, 0, 1, 0, DATA_SAMPLE_PLAIN};
    if ((rc = data_loader_create(&r->Lval, r->cache, r->val_idx, r->n_val, r->tf_val, &vo))) return rc;
    r->steps_per_epoch = (int)data_loader_batches_per_epoch(r->Ltrain);
    if (c->balance == TRAINER_BALANCE_WEIGHTS) {
        r->class_w = malloc(sizeof(float) * r->K);
        if (!r->class_w) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
        if ((rc = data_class_weights(&r->ix, r->train_idx, r->n_train, r->class_w))) return rc;
    }
    size_t xin = (size_t)r->B * 3 * r->S * r->S;
    r->logits = malloc(sizeof(float) * r->B * r->K);
    r->dlogits = malloc(sizeof(float) * r->B * r->K);
    r->xpad = calloc(xin, sizeof(float));
    r->dlogits2 = malloc(sizeof(float) * r->B * r->K);
    r->ymix = malloc(sizeof(int32_t) * r->B);
    if (!r->logits || !r->dlogits || !r->xpad || !r->dlogits2 || !r->ymix) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");

    models_meta_init(&r->meta, c->arch, r->K);
    rc = models_meta_set_classes(&r->meta, (const char *const *)r->ix.display_names, r->K);
    r->meta.img_size = r->S;
    r->meta.channels = 3;
    for (int i = 0; i < 3; i++) r->meta.mean[i] = mean[i], r->meta.std[i] = std[i];
    return rc;
}

/* Copies every tensor of src into dst whose name and size agree, except the head's (head "":
 * every tensor). */
static void copy_backbone(nn_graph *dst, const nn_graph *src, const char *head)
{
    size_t hl = strlen(head);
    for (int i = 0; i < dst->nparams; i++) {
        const nn_param *p = &dst->param_table[i];
        if (!strncmp(p->name, head, hl) && p->name[hl] == '.') continue;
        int j = nn_find_param(src, p->name);
        if (j < 0 || src->param_table[j].count != p->count) continue;
        const nn_param *q = &src->param_table[j];
        if (p->kind == NN_BUFFER_NUM_BATCHES)
            dst->batches_tracked[p->offset] = src->batches_tracked[q->offset];
        else
            memcpy(nn_param_data(dst, p), nn_param_data(src, q), p->count * sizeof(float));
    }
}

/* A model file (--keep-head, --teacher) must know the data's classes in the same order. */
static int same_classes(const run *r, const models_meta *m, const char *option, const char *path)
{
    if (m->num_classes != r->K)
        return ferc_set_error(FERC_ERR_INVALID, "%s: %s has %d classes, the data %d", option, path, m->num_classes, r->K);
    for (int k = 0; k < r->K && m->class_names; k++)
        if (strcmp(m->class_names[k], r->meta.class_names[k]))
            return ferc_set_error(FERC_ERR_INVALID, "%s: class %d of %s is %s, the data's is %s", option, k, path,
                                  m->class_names[k], r->meta.class_names[k]);
    return FERC_OK;
}

static int build_model(run *r)
{
    trainer_config *c = &r->cfg;
    int rc = models_build(&r->g, c->arch, r->K, c->seed);
    if (rc || !c->weights[0]) return rc;
    nn_graph *src;
    models_meta sm;
    if ((rc = models_load(c->weights, &src, &sm))) return ferc_wrap_error(rc, "--weights");
    if (strcmp(sm.arch, c->arch))
        rc = ferc_set_error(FERC_ERR_INVALID, "--weights %s holds a %s, not a %s", c->weights, sm.arch, c->arch);
    if (!rc && c->keep_head) rc = same_classes(r, &sm, "--keep-head", c->weights); /* the head fits only those */
    if (!rc) copy_backbone(r->g, src, c->keep_head ? "" : models_head_name(c->arch));
    nn_graph_destroy(src);
    models_meta_free(&sm);
    if (!rc && !c->keep_head) rc = models_reinit_head(r->g, c->arch, c->seed);
    return rc;
}

/* Freezing, a new execution plan, a fresh optimizer and the phase's schedule. */
static int begin_phase(run *r, int phase)
{
    trainer_config *c = &r->cfg;
    const char *head = models_head_name(c->arch);
    int rc = models_freeze_before(r->g, c->arch, phase == 1 ? head : c->unfreeze_from);
    if (rc) return rc;
    nn_exec_destroy(r->ex);
    r->ex = NULL;
    optim_destroy(r->opt);
    r->opt = NULL;
    if ((rc = nn_exec_create(&r->ex, r->g, NULL, r->B, 3, r->S, r->S, NN_EXEC_TRAINING | (c->bf16 ? NN_EXEC_BF16 : 0))))
        return rc;
    optim_range *ranges = calloc((size_t)r->g->nparams, sizeof *ranges);
    if (!ranges) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    int nr = 0;
    size_t hl = strlen(head);
    for (int i = 0; i < r->g->nparams; i++) {
        const nn_param *p = &r->g->param_table[i];
        if (!nn_param_trainable_kind(p->kind)) continue;
        bool is_head = !strncmp(p->name, head, hl) && p->name[hl] == '.';
        ranges[nr++] = (optim_range){p->name, p->offset, p->count, is_head ? 0 : 1, p->frozen};
    }
    /* A lower lr for the backbone protects what it learned before phase 2 (pretrained weights
     * or a frozen phase); a network trained from scratch in one phase uses one lr. */
    double backbone = phase == 2 && (c->weights[0] || c->freeze_epochs > 0) ? c->backbone_lr_mult : 1.0;
    optim_group groups[2] = {{1.0, false, 0}, {backbone, false, 0}};
    optim_config oc = optim_config_default(c->optimizer);
    oc.weight_decay = c->weight_decay;
    if (c->optimizer == OPTIM_SGD) oc.momentum = c->momentum;
    rc = optim_create(&r->opt, &oc, groups, 2, ranges, nr, r->g->n_params);
    free(ranges);
    if (rc) return rc;
    int64_t total = (int64_t)(phase == 1 ? c->freeze_epochs : c->epochs) * r->steps_per_epoch;
    if (total < 1) total = 1;
    switch (c->schedule) {
    case SCHED_CONSTANT: r->sch = sched_constant(c->lr); break;
    case SCHED_STEP: r->sch = sched_step(c->lr, total / 3 > 0 ? total / 3 : 1, 0.1); break;
    case SCHED_COSINE: {
        int64_t w = (int64_t)(c->warmup_epochs * r->steps_per_epoch);
        if (w >= total) w = total - 1;
        r->sch = sched_cosine(c->lr, w, total, 0);
        break;
    }
    default: r->sch = sched_onecycle(c->lr, total); break;
    }
    return sched_validate(&r->sch);
}

/* Eval-mode pass over the validation split; m may be NULL. */
/* probs (ix.n, K), may be NULL: each validation sample's softmax, at its dataset index. */
static int validate(run *r, double *loss, double *acc, metrics *m, float *probs)
{
    int rc = data_loader_start_epoch(r->Lval, 0);
    double lsum = 0, correct = 0, seen = 0;
    data_batch b;
    size_t per = (size_t)3 * r->S * r->S;
    while (!rc && (rc = data_loader_next(r->Lval, &b)) > 0) {
        rc = 0;
        memcpy(r->xpad, b.x, per * b.n * sizeof(float));
        if (b.n < r->B) memset(r->xpad + per * b.n, 0, per * (r->B - b.n) * sizeof(float));
        if ((rc = nn_exec_forward(r->ex, r->xpad, false, r->logits))) break;
        float l;
        float *pv = probs ? r->dlogits : NULL; /* scratch (N, K): no backward runs here */
        if ((rc = nn_softmax_cross_entropy(r->logits, b.y, b.n, r->K, 0, NULL, &l, NULL, pv))) break;
        for (int i = 0; pv && i < b.n; i++)
            memcpy(probs + (size_t)b.index[i] * r->K, pv + (size_t)i * r->K, (size_t)r->K * sizeof(float));
        lsum += (double)l * b.n;
        for (int i = 0; i < b.n; i++) correct += metrics_argmax(r->logits + (size_t)i * r->K, r->K) == b.y[i];
        seen += b.n;
        if (m) metrics_add_scores(m, r->logits, b.y, b.n);
    }
    if (rc < 0) return rc;
    *loss = seen ? lsum / seen : NAN;
    *acc = seen ? correct / seen : NAN;
    return FERC_OK;
}

static int write_metrics(run *r)
{
    size_t cap = (size_t)r->nhist * 320 + 1, len = 0;
    char *buf = malloc(cap);
    if (!buf) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    for (int i = 0; i < r->nhist; i++) {
        const trainer_epoch *e = &r->hist[i];
        len += (size_t)snprintf(buf + len, cap - len,
                                "{\"phase\":\"%s\",\"epoch\":%d,\"train_loss\":%.9g,\"train_acc\":%.9g,\"val_loss\":%.9g,"
                                "\"val_acc\":%.9g,\"lr\":%.9g,\"seconds\":%.4f,\"images_per_s\":%.2f}\n",
                                e->phase == 1 ? "frozen" : "finetune", e->epoch, e->train_loss, e->train_acc, e->val_loss,
                                e->val_acc, e->lr, e->seconds, e->images_per_s);
    }
    char path[TRAINER_PATH_MAX + 32];
    out_path(r, path, sizeof path, "metrics.jsonl");
    int rc = file_write_atomic(path, buf, len);
    free(buf);
    if (!rc && r->nhist) {
        out_path(r, path, sizeof path, "curves.png");
        rc = report_curves_png(path, r->hist, r->nhist);
    }
    return rc;
}

int trainer_history_read(const char *run_dir, int keep, int spare, trainer_epoch **hist, int *n)
{
    *hist = NULL;
    *n = 0;
    char path[TRAINER_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
    uint8_t *data;
    size_t size;
    int rc = file_read_all(path, &data, &size);
    if (rc) return rc;
    size_t lines = 1; /* at most: one per newline, and a last one without */
    for (size_t i = 0; i < size; i++) lines += data[i] == '\n';
    if (keep >= 0 && (size_t)keep < lines) lines = (size_t)keep;
    trainer_epoch *h = calloc(lines + (size_t)(spare > 0 ? spare : 0) + 1, sizeof *h);
    if (!h) {
        free(data);
        return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    }
    int count = 0;
    char *line = (char *)data, *end = (char *)data + size;
    while (line < end && (size_t)count < lines) {
        char *nl = memchr(line, '\n', (size_t)(end - line));
        if (!nl) nl = end;
        cJSON *o = cJSON_ParseWithLength(line, (size_t)(nl - line));
        if (o) {
            trainer_epoch *e = &h[count++];
            const char *ph = cJSON_GetStringValue(cJSON_GetObjectItem(o, "phase"));
            e->phase = ph && !strcmp(ph, "frozen") ? 1 : 2;
#define GET(k) (cJSON_IsNumber(cJSON_GetObjectItem(o, k)) ? cJSON_GetObjectItem(o, k)->valuedouble : NAN)
            double ep = GET("epoch");
            e->epoch = isfinite(ep) && fabs(ep) < 1e9 ? (int)ep : 0;
            e->train_loss = GET("train_loss");
            e->train_acc = GET("train_acc");
            e->val_loss = GET("val_loss");
            e->val_acc = GET("val_acc");
            e->lr = GET("lr");
            e->seconds = GET("seconds");
            e->images_per_s = GET("images_per_s");
#undef GET
            cJSON_Delete(o);
        }
        line = nl + 1;
    }
    free(data);
    *hist = h;
    *n = count;
    return FERC_OK;
}

/* Reads the first `keep` epochs of metrics.jsonl back (resume), with room for the rest. */
static int read_metrics(run *r, int keep)
{
    int room = r->cfg.freeze_epochs + r->cfg.epochs + 1;
    r->nhist = 0;
    if (keep == 0) {
        r->hist = calloc((size_t)room, sizeof *r->hist);
        return r->hist ? FERC_OK : ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    }
    int rc = trainer_history_read(r->cfg.out_dir, keep, room, &r->hist, &r->nhist);
    if (rc) return rc;
    if (r->nhist != keep)
        return ferc_set_error(FERC_ERR_FORMAT, "%s/metrics.jsonl: %d epochs, the checkpoint says %d", r->cfg.out_dir,
                              r->nhist, keep);
    return FERC_OK;
}

/* ---- --ema: an exponential moving average of the weights ------------------------------------
 * After every optimizer step ema = d * ema + (1 - d) * w for every parameter and batch-norm
 * running statistic, with d warmed up as min(decay, (1 + t) / (10 + t)) over the phase's steps
 * t (as timm's ModelEma). Validation, best.safetensors and the final model use the average;
 * training continues on the raw weights. The average is part of the checkpoint. */
static int ema_alloc(run *r, bool init)
{
    if (!(r->cfg.ema > 0)) return FERC_OK;
    const nn_graph *g = r->g;
    r->ema_p = malloc((g->n_params ? g->n_params : 1) * sizeof(float));
    r->ema_b = malloc((g->n_buffers ? g->n_buffers : 1) * sizeof(float));
    if (!r->ema_p || !r->ema_b) return ferc_set_error(FERC_ERR_NOMEM, "out of memory for --ema");
    if (init) {
        memcpy(r->ema_p, g->params, g->n_params * sizeof(float));
        memcpy(r->ema_b, g->buffers, g->n_buffers * sizeof(float));
    }
    return FERC_OK;
}

static void ema_update(run *r, int64_t t)
{
    if (!r->ema_p) return;
    double d = r->cfg.ema, warm = (1.0 + (double)t) / (10.0 + (double)t);
    float a = (float)(d < warm ? d : warm), b = 1 - a;
    const nn_graph *g = r->g;
    for (size_t i = 0; i < g->n_params; i++) r->ema_p[i] = a * r->ema_p[i] + b * g->params[i];
    for (size_t i = 0; i < g->n_buffers; i++) r->ema_b[i] = a * r->ema_b[i] + b * g->buffers[i];
}

/* Exchanges the raw and the averaged weights (twice: back as they were). */
static void ema_swap(run *r)
{
    if (!r->ema_p) return;
    nn_graph *g = r->g;
    for (size_t i = 0; i < g->n_params; i++) {
        float t = g->params[i];
        g->params[i] = r->ema_p[i];
        r->ema_p[i] = t;
    }
    for (size_t i = 0; i < g->n_buffers; i++) {
        float t = g->buffers[i];
        g->buffers[i] = r->ema_b[i];
        r->ema_b[i] = t;
    }
    nn_exec_params_changed(r->ex); /* frozen layers' cached weight layouts */
}

static int save_best(run *r, const trainer_state *st, int epoch, double val_acc)
{
    char training[1024], path[TRAINER_PATH_MAX + 32];
    snprintf(training, sizeof training,
             "{\"epoch\":%d,\"val_acc\":%.6f,\"seed\":%llu,\"batch\":%d,\"lr\":%g,\"optimizer\":\"%s\",\"schedule\":\"%s\","
             "\"freeze_epochs\":%d,\"epochs\":%d,\"weights\":\"%s\",\"ema\":%g,\"ferc_version\":\"%s\"}",
             epoch, val_acc, (unsigned long long)r->cfg.seed, r->cfg.batch, r->cfg.lr,
             optim_kind_name(r->cfg.optimizer), sched_kind_name(r->cfg.schedule), r->cfg.freeze_epochs, r->cfg.epochs,
             r->cfg.weights[0] ? "yes" : "no", r->cfg.ema, ferc_version());
    (void)st;
    free(r->meta.training_json);
    r->meta.training_json = strdup(training);
    out_path(r, path, sizeof path, "best.safetensors");
    return models_save(path, r->g, &r->meta, ST_F32);
}

static int save_last(run *r, const trainer_state *st)
{
    char path[TRAINER_PATH_MAX + 32];
    out_path(r, path, sizeof path, "last.safetensors");
    return checkpoint_save(path, r->g, r->opt, st, r->ema_p, r->ema_b);
}

/* val_predictions.csv: path,label,<p of each class> for every validation image (one pass of
 * the best model, as its validation accuracy was measured), for ferc compare. */
static int write_predictions(run *r, const float *probs)
{
    size_t cap = 64 + (size_t)r->K * 24, len = 0;
    for (int c = 0; c < r->K; c++) cap += strlen(r->ix.display_names[c]) + 4;
    for (size_t i = 0; i < r->n_val; i++) /* path, label, K numbers of at most 12 characters with their commas */
        cap += strlen(r->ix.paths[r->val_idx[i]]) + strlen(r->ix.display_names[r->ix.labels[r->val_idx[i]]]) + 4 +
               (size_t)r->K * 16;
    char *csv = malloc(cap);
    if (!csv) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    len += (size_t)snprintf(csv + len, cap - len, "path,label");
    for (int c = 0; c < r->K; c++) len += (size_t)snprintf(csv + len, cap - len, ",p_%s", r->ix.display_names[c]);
    len += (size_t)snprintf(csv + len, cap - len, "\n");
    for (size_t i = 0; i < r->n_val; i++) {
        uint32_t k = r->val_idx[i];
        len += (size_t)snprintf(csv + len, cap - len, "%s,%s", r->ix.paths[k], r->ix.display_names[r->ix.labels[k]]);
        for (int c = 0; c < r->K; c++) len += (size_t)snprintf(csv + len, cap - len, ",%.6g", (double)probs[(size_t)k * r->K + c]);
        len += (size_t)snprintf(csv + len, cap - len, "\n");
    }
    char path[TRAINER_PATH_MAX + 32];
    out_path(r, path, sizeof path, "val_predictions.csv");
    int rc = file_write_atomic(path, csv, len);
    free(csv);
    return rc;
}

/* The best model on the validation split: confusion.png, val_predictions.csv and summary.json. */
static int finish(run *r, const trainer_state *st, trainer_result *res)
{
    char path[TRAINER_PATH_MAX + 32];
    out_path(r, path, sizeof path, "best.safetensors");
    nn_graph *best;
    models_meta bm;
    int rc = models_load(path, &best, &bm);
    if (rc) return rc;
    copy_backbone(r->g, best, "");
    const char *head = models_head_name(r->cfg.arch);
    for (int i = 0; i < r->g->nparams; i++) { /* the head too */
        const nn_param *p = &r->g->param_table[i];
        if (strncmp(p->name, head, strlen(head))) continue;
        int j = nn_find_param(best, p->name);
        if (j >= 0) memcpy(nn_param_data(r->g, p), nn_param_data(best, &best->param_table[j]), p->count * sizeof(float));
    }
    nn_graph_destroy(best);
    models_meta_free(&bm);
    metrics m;
    if ((rc = metrics_init(&m, r->K))) return rc;
    double loss, acc;
    float *probs = calloc(r->ix.n * (size_t)r->K + 1, sizeof *probs);
    if (!probs) rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    if (!rc) rc = validate(r, &loss, &acc, &m, probs);
    if (!rc) rc = write_predictions(r, probs);
    free(probs);
    metrics_finalize(&m);
    out_path(r, path, sizeof path, "confusion.png");
    if (!rc) rc = report_confusion_png(path, m.confusion, r->K, (const char *const *)r->ix.display_names);
    char *json = NULL;
    if (!rc) rc = metrics_to_json(&m, (const char *const *)r->ix.display_names, &json);
    if (!rc) {
        size_t n = strlen(json) + 512;
        char *text = malloc(n);
        if (!text) rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory");
        else {
            struct rusage ru;
            getrusage(RUSAGE_SELF, &ru); /* this process's peak: the last (resumed) part of the run */
            int len = snprintf(text, n, "{\"best_epoch\":%d,\"best_val_acc\":%.6f,\"epochs_done\":%d,\"seconds\":%.1f,"
                                        "\"early_stopped\":%s,\"peak_rss_mib\":%.1f,\"precision\":\"%s\",\"val\":%s}\n",
                               st->best_epoch, st->best_val_acc, st->epochs_done, st->elapsed,
                               res->early_stopped ? "true" : "false", (double)ru.ru_maxrss / 1024.0,
                               r->cfg.bf16 ? "bf16" : "fp32", json);
            out_path(r, path, sizeof path, "summary.json");
            rc = file_write_atomic(path, text, (size_t)len);
            free(text);
        }
    }
    free(json);
    metrics_free(&m);
    return rc;
}

static bool stop_requested(const run *r)
{
    if (r->cfg.stop && *r->cfg.stop) return true;
    return r->cfg.max_steps > 0 && r->steps_this_call >= r->cfg.max_steps;
}

#define CHECK_TRY(expr)        \
    do {                       \
        int rc_ = (expr);      \
        if (rc_) return rc_;   \
    } while (0)

/* ---- --cache-features ----------------------------------------------------------------------
 * In phase 1 the backbone is frozen and runs in evaluation mode, so without augmentation its
 * output for a sample never changes: compute it once for every training sample, then train
 * the head alone on it. The head graph has the same parameter names as the model's head; its
 * parameters are copied in before and its gradients out after each step, so the optimizer,
 * checkpoints and resume work on the model's flat buffers exactly as without the cache. */

static int head_param_pair(const run *r, int hp, int *mp)
{
    *mp = nn_find_param(r->g, r->hg->param_table[hp].name);
    if (*mp < 0) return ferc_set_error(FERC_ERR_INVALID, "feature cache: the model has no '%s'", r->hg->param_table[hp].name);
    return FERC_OK;
}

static int features_prepare(run *r)
{
    if (r->feat) return FERC_OK;
    const char *head = models_head_name(r->cfg.arch);
    r->head_node = -1;
    for (int i = 0; i < r->g->nnodes; i++)
        if (r->g->nodes[i].op == NN_OP_LINEAR && !strcmp(r->g->nodes[i].name, head)) r->head_node = i;
    if (r->head_node < 0) return ferc_set_error(FERC_ERR_INVALID, "feature cache: no head '%s' in %s", head, r->cfg.arch);
    r->feat_node = r->g->nodes[r->head_node].inputs[0];
    nn_keep_output(r->g, r->feat_node); /* read after each pass below */
    r->feat_dim = r->g->nodes[r->feat_node].channels;
    size_t D = (size_t)r->feat_dim;
    r->feat = calloc(r->ix.n * D, sizeof(float));
    r->fx = malloc((size_t)r->B * D * sizeof(float));
    if (!r->feat || !r->fx) return ferc_set_error(FERC_ERR_NOMEM, "out of memory for the feature cache");

    /* One evaluation pass over the training split, without augmentation. */
    data_loader_opts po = {r->B, r->cfg.seed, 0, 0, 1, 0, DATA_SAMPLE_PLAIN};
    data_loader *L = NULL;
    nn_exec *ex = NULL;
    int rc = data_loader_create(&L, r->cache, r->train_idx, r->n_train, r->tf_val, &po);
    if (!rc) rc = nn_exec_create(&ex, r->g, NULL, r->B, 3, r->S, r->S, r->cfg.bf16 ? NN_EXEC_BF16 : 0);
    float *f = rc ? NULL : malloc((size_t)r->B * D * sizeof(float));
    if (!rc && !f) rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    if (!rc) rc = data_loader_start_epoch(L, 0);
    data_batch b;
    size_t per = (size_t)3 * r->S * r->S;
    while (!rc && (rc = data_loader_next(L, &b)) > 0) {
        const float *x = b.x;
        if (b.n < r->B) { /* pad the last batch; eval mode makes samples independent */
            memset(r->xpad, 0, (size_t)r->B * per * sizeof(float));
            memcpy(r->xpad, b.x, (size_t)b.n * per * sizeof(float));
            x = r->xpad;
        }
        if ((rc = nn_exec_forward(ex, x, false, NULL))) break;
        if ((rc = nn_exec_node_output(ex, r->feat_node, f, (size_t)r->B * D))) break;
        for (int i = 0; i < b.n; i++) memcpy(r->feat + (size_t)b.index[i] * D, f + (size_t)i * D, D * sizeof(float));
        rc = 0;
    }
    free(f);
    nn_exec_destroy(ex);
    data_loader_destroy(L);
    if (rc < 0) return rc;

    /* The head alone: (D, 1, 1) -> flatten -> linear, named like the model's head. */
    r->hg = nn_graph_create();
    if (!r->hg) return FERC_ERR_NOMEM;
    int x = nn_input(r->hg, r->feat_dim);
    nn_linear(r->hg, head, nn_flatten(r->hg, x), r->K);
    if ((rc = nn_graph_finalize(r->hg))) return rc;
    if ((rc = nn_exec_create(&r->hex, r->hg, NULL, r->B, r->feat_dim, 1, 1, NN_EXEC_TRAINING))) return rc;
    data_loader_opts lo = {r->B, r->cfg.seed, 1, 1, 1, 0, DATA_SAMPLE_PLAIN};
    if (r->cfg.balance == TRAINER_BALANCE_SAMPLER) lo.sampling = DATA_SAMPLE_BALANCED;
    return data_loader_create(&r->Lplain, r->cache, r->train_idx, r->n_train, r->tf_val, &lo);
}

/* One phase-1 step on cached features: logits into r->logits, gradients of the head into
 * r->g->grads (the frozen backbone's stay zero). */
static int cached_step(run *r, const data_batch *b, float *loss)
{
    size_t D = (size_t)r->feat_dim;
    for (int i = 0; i < b->n; i++) memcpy(r->fx + (size_t)i * D, r->feat + (size_t)b->index[i] * D, D * sizeof(float));
    for (int hp = 0; hp < r->hg->nparams; hp++) {
        int mp;
        CHECK_TRY(head_param_pair(r, hp, &mp));
        memcpy(nn_param_data(r->hg, &r->hg->param_table[hp]), nn_param_data(r->g, &r->g->param_table[mp]),
               r->hg->param_table[hp].count * sizeof(float));
    }
    CHECK_TRY(nn_exec_forward(r->hex, r->fx, true, r->logits));
    CHECK_TRY(nn_softmax_cross_entropy(r->logits, b->y, b->n, r->K, (float)r->cfg.label_smoothing, r->class_w, loss,
                                       r->dlogits, NULL));
    CHECK_TRY(nn_exec_backward(r->hex, r->dlogits));
    for (int hp = 0; hp < r->hg->nparams; hp++) {
        int mp;
        CHECK_TRY(head_param_pair(r, hp, &mp));
        memcpy(r->g->grads + r->g->param_table[mp].offset, r->hg->grads + r->hg->param_table[hp].offset,
               r->hg->param_table[hp].count * sizeof(float));
    }
    return FERC_OK;
}

/* Gamma(a, 1) by Marsaglia and Tsang; for a < 1, Gamma(a + 1) * U^(1/a). */
static double gamma_sample(rng *g, double a)
{
    if (a < 1) {
        double u = rng_uniform(g);
        return gamma_sample(g, a + 1) * pow(u > 0 ? u : 1e-300, 1 / a);
    }
    double d = a - 1.0 / 3, c = 1 / sqrt(9 * d);
    for (;;) {
        double x = rng_normal(g), v = 1 + c * x;
        if (v <= 0) continue;
        v = v * v * v;
        double u = rng_uniform(g);
        if (u < 1 - 0.0331 * x * x * x * x) return d * v;
        if (u > 0 && log(u) < 0.5 * x * x + d * (1 - v + log(v))) return d * v;
    }
}

/* mixup (Zhang et al. 2018) on a training batch, in place: sample i is mixed with sample
 * n-1-i (the batch is already shuffled), lambda ~ Beta(alpha, alpha) from (seed, phase,
 * step). lambda is folded to max(lambda, 1 - lambda), which gives the same distribution of
 * mixed pairs, so that b->y stays the dominant label. Returns lambda; partner labels in
 * r->ymix. */
static double mixup_batch(run *r, const trainer_state *st, data_batch *b)
{
    rng g;
    rng_derive(&g, r->cfg.seed ^ 0x6d69787570ull /* "mixup" */, (uint64_t)st->phase, (uint64_t)st->phase_step);
    double x1 = gamma_sample(&g, r->cfg.mixup), x2 = gamma_sample(&g, r->cfg.mixup);
    double lam = x1 + x2 > 0 ? x1 / (x1 + x2) : 1;
    if (lam < 0.5) lam = 1 - lam;
    float l = (float)lam, m = 1 - l;
    size_t per = (size_t)b->c * b->h * b->w;
    for (int i = 0; i < b->n; i++) r->ymix[i] = b->y[b->n - 1 - i];
    for (int i = 0; i < b->n / 2; i++) {
        float *p = b->x + (size_t)i * per, *q = b->x + (size_t)(b->n - 1 - i) * per;
        for (size_t k = 0; k < per; k++) {
            float a = p[k], c = q[k];
            p[k] = l * a + m * c;
            q[k] = l * c + m * a;
        }
    }
    return lam;
}

/* --teacher: loads every teacher and plans its inference at the run's batch and input size. A
 * teacher must know the run's classes, in the same order, and normalize its input the same way
 * (it sees the student's batches as they are). */
static int setup_teachers(run *r)
{
    const trainer_config *c = &r->cfg;
    if (!c->teacher[0]) return FERC_OK;
    char list[TRAINER_PATH_MAX];
    snprintf(list, sizeof list, "%s", c->teacher);
    int rc = FERC_OK;
    for (char *save = NULL, *p = strtok_r(list, ",", &save); p && !rc; p = strtok_r(NULL, ",", &save)) {
        if (r->nteach == TRAINER_MAX_TEACHERS)
            return ferc_set_error(FERC_ERR_INVALID, "--teacher: at most %d models", TRAINER_MAX_TEACHERS);
        models_meta tm;
        nn_graph *g = NULL;
        if ((rc = models_load(p, &g, &tm))) return ferc_wrap_error(rc, "--teacher");
        r->tg[r->nteach++] = g;
        rc = same_classes(r, &tm, "--teacher", p);
        for (int k = 0; !rc && k < 3; k++)
            if (tm.channels != 3 || fabsf(tm.mean[k] - r->meta.mean[k]) > 1e-4f || fabsf(tm.std[k] - r->meta.std[k]) > 1e-4f)
                rc = ferc_set_error(FERC_ERR_INVALID,
                                    "--teacher %s normalizes with mean %.4f std %.4f, this run with mean %.4f std %.4f: "
                                    "a teacher must see the student's input as it was trained on it",
                                    p, (double)tm.mean[k], (double)tm.std[k], (double)r->meta.mean[k], (double)r->meta.std[k]);
        models_meta_free(&tm);
        if (!rc) rc = nn_exec_create(&r->tex[r->nteach - 1], g, NULL, r->B, 3, r->S, r->S, c->bf16 ? NN_EXEC_BF16 : 0);
    }
    if (rc) return rc;
    size_t nk = (size_t)r->B * r->K;
    r->tlogits = malloc(nk * sizeof(float));
    r->tprob = malloc(nk * sizeof(float));
    r->dkd = malloc(nk * sizeof(float));
    return r->tlogits && r->tprob && r->dkd ? FERC_OK : ferc_set_error(FERC_ERR_NOMEM, "out of memory for --teacher");
}

/* The teachers' averaged softmax on the batch x (inference: running batch-norm statistics). */
static int teacher_targets(run *r, const float *x, int n)
{
    size_t nk = (size_t)n * r->K;
    memset(r->tprob, 0, nk * sizeof(float));
    for (int t = 0; t < r->nteach; t++) {
        CHECK_TRY(nn_exec_forward(r->tex[t], x, false, r->tlogits));
        for (int i = 0; i < n; i++) {
            const float *z = r->tlogits + (size_t)i * r->K;
            double m = z[0], s = 0;
            for (int k = 1; k < r->K; k++) m = z[k] > m ? z[k] : m;
            for (int k = 0; k < r->K; k++) s += exp((double)z[k] - m);
            for (int k = 0; k < r->K; k++) r->tprob[(size_t)i * r->K + k] += (float)(exp((double)z[k] - m) / s / r->nteach);
        }
    }
    return FERC_OK;
}

/* The loss of a (possibly mixed) batch: lam * CE(y) + (1 - lam) * CE(ymix), and its gradient
 * into r->dlogits. With teachers: (1 - w) times that plus w * CE(teachers' softmax). */
static int batch_loss(run *r, const data_batch *b, double lam, float *loss)
{
    float ls = (float)r->cfg.label_smoothing;
    size_t nk = (size_t)b->n * r->K;
    CHECK_TRY(nn_softmax_cross_entropy(r->logits, b->y, b->n, r->K, ls, r->class_w, loss, r->dlogits, NULL));
    if (lam < 1) {
        float l2;
        CHECK_TRY(nn_softmax_cross_entropy(r->logits, r->ymix, b->n, r->K, ls, r->class_w, &l2, r->dlogits2, NULL));
        float a = (float)lam, m = 1 - a;
        for (size_t i = 0; i < nk; i++) r->dlogits[i] = a * r->dlogits[i] + m * r->dlogits2[i];
        *loss = a * *loss + m * l2;
    }
    if (r->nteach) {
        float lkd, w = (float)r->cfg.kd_weight;
        CHECK_TRY(nn_soft_cross_entropy(r->logits, r->tprob, b->n, r->K, &lkd, r->dkd));
        for (size_t i = 0; i < nk; i++) r->dlogits[i] = (1 - w) * r->dlogits[i] + w * r->dkd[i];
        *loss = (1 - w) * *loss + w * lkd;
    }
    return FERC_OK;
}

static int train_loop(run *r, trainer_state *st, trainer_result *res)
{
    trainer_config *c = &r->cfg;
    int F = c->freeze_epochs, E = c->epochs, total_epochs = F + E;
    data_batch b;
    int rc = FERC_OK;
    for (;;) {
        if (st->phase == 1 && st->epoch >= F) {
            st->phase = 2;
            st->phase_step = 0;
            st->bad_epochs = 0;
            if (E > 0 && (rc = begin_phase(r, 2))) return rc;
        }
        if (st->epoch >= total_epochs) break;
        int epoch = st->epoch;
        bool cached = st->phase == 1 && c->cache_features;
        if (cached && (rc = features_prepare(r))) return rc;
        data_loader *L = cached ? r->Lplain : r->Ltrain;
        if ((rc = data_loader_start_epoch(L, epoch))) return rc;
        for (int i = 0; i < st->step_in_epoch; i++) /* mid-epoch resume: same batches, skipped */
            if ((rc = data_loader_next(L, &b)) <= 0) return rc < 0 ? rc : ferc_set_error(FERC_ERR_FORMAT, "resume: epoch shorter than the checkpoint");
        double lr = sched_lr(&r->sch, st->phase_step > 0 ? st->phase_step - 1 : 0);
        for (;;) {
            if ((rc = data_loader_next(L, &b)) < 0) return rc;
            if (rc == 0) break;
            double t0 = time_now();
            float loss;
            if (cached) {
                if ((rc = cached_step(r, &b, &loss))) return rc;
            } else {
                nn_exec_set_seed(r->ex, c->seed + (uint64_t)st->phase, (uint64_t)st->phase_step);
                double lam = c->mixup > 0 ? mixup_batch(r, st, &b) : 1;
                if (r->nteach && (rc = teacher_targets(r, b.x, b.n))) return rc;
                if ((rc = nn_exec_forward(r->ex, b.x, true, r->logits))) return rc;
                if ((rc = batch_loss(r, &b, lam, &loss))) return rc;
                if ((rc = nn_exec_backward(r->ex, r->dlogits))) return rc;
            }
            if (c->clip_value > 0) optim_clip_grad_value(r->opt, r->g->grads, (float)c->clip_value);
            if (c->clip_norm > 0) optim_clip_grad_norm(r->opt, r->g->grads, (float)c->clip_norm, NULL);
            lr = sched_lr(&r->sch, st->phase_step);
            if ((rc = optim_step_sched(r->opt, r->g->params, r->g->grads, &r->sch, st->phase_step))) return rc;
            ema_update(r, st->phase_step);
            if (!isfinite(loss)) return ferc_set_error(FERC_ERR_INVALID, "the loss became %g at epoch %d step %d (lower --lr?)", loss, epoch + 1, st->step_in_epoch + 1);
            st->phase_step++;
            st->step_in_epoch++;
            r->steps_this_call++;
            st->loss_sum += (double)loss * b.n;
            for (int i = 0; i < b.n; i++) st->correct += metrics_argmax(r->logits + (size_t)i * r->K, r->K) == b.y[i];
            st->seen += b.n;
            st->epoch_seconds += time_now() - t0;
            if (r->cb && r->cb->on_step) {
                double per_step = st->epoch_seconds / st->step_in_epoch;
                trainer_progress p = {st->phase, epoch + 1, total_epochs, st->step_in_epoch, r->steps_per_epoch,
                                      st->loss_sum / st->seen, st->correct / st->seen,
                                      st->seen / (st->epoch_seconds > 0 ? st->epoch_seconds : 1e-9),
                                      per_step * (r->steps_per_epoch - st->step_in_epoch), lr};
                r->cb->on_step(r->cb->ud, &p);
            }
            if (stop_requested(r)) {
                if ((rc = save_last(r, st))) return rc;
                return ferc_set_error(FERC_ERR_INTERRUPTED, "interrupted at epoch %d step %d; continue with --resume %s",
                                      epoch + 1, st->step_in_epoch, c->out_dir);
            }
        }
        double train_seconds = st->epoch_seconds, t0 = time_now();
        trainer_epoch e = {st->phase, epoch + 1, st->loss_sum / st->seen, st->correct / st->seen, 0, 0, lr, 0, 0, false};
        ema_swap(r); /* with --ema the averaged weights are validated and saved */
        rc = validate(r, &e.val_loss, &e.val_acc, NULL, NULL);
        if (!rc && e.val_acc > st->best_val_acc) rc = save_best(r, st, epoch + 1, e.val_acc);
        ema_swap(r);
        if (rc) return rc;
        e.seconds = train_seconds + (time_now() - t0);
        e.images_per_s = st->seen / (train_seconds > 0 ? train_seconds : 1e-9);
        st->elapsed += e.seconds;
        if (e.val_acc > st->best_val_acc) {
            st->best_val_acc = e.val_acc;
            st->best_epoch = epoch + 1;
            st->bad_epochs = 0;
            e.best = true;
        } else {
            st->bad_epochs++;
        }
        r->hist[r->nhist++] = e;
        st->epochs_done = r->nhist;
        if ((rc = write_metrics(r))) return rc;
        if (r->cb && r->cb->on_epoch) r->cb->on_epoch(r->cb->ud, &e);
        st->epoch++;
        st->step_in_epoch = 0;
        st->loss_sum = st->correct = st->seen = st->epoch_seconds = 0;
        if (c->patience > 0 && st->bad_epochs >= c->patience) {
            int phase_end = st->phase == 1 ? F : total_epochs;
            if (st->epoch < phase_end) {
                message(r, "early stop: no better validation accuracy for %d epochs (phase %d)", c->patience, st->phase);
                res->early_stopped = true;
                st->epoch = phase_end;
            }
        }
        if ((rc = save_last(r, st))) return rc;
        if (stop_requested(r))
            return ferc_set_error(FERC_ERR_INTERRUPTED, "interrupted after epoch %d; continue with --resume %s", epoch + 1,
                                  c->out_dir);
    }
    res->epochs_done = st->epochs_done;
    res->best_epoch = st->best_epoch;
    res->best_val_acc = st->best_val_acc;
    res->seconds = st->elapsed;
    return finish(r, st, res);
}

static int validate_config(const trainer_config *c)
{
    if (!c->data_dir[0]) return ferc_set_error(FERC_ERR_INVALID, "no data folder");
    if (!c->out_dir[0]) return ferc_set_error(FERC_ERR_INVALID, "no output folder");
    if (!models_arch_known(c->arch)) return models_arch_family(c->arch, &(models_family){0});
    if (c->batch < 1 || c->batch > 65536 || c->img_size < 8 || c->img_size > 4096 || c->freeze_epochs < 0 ||
        c->epochs < 0 || c->freeze_epochs + c->epochs < 1)
        return ferc_set_error(FERC_ERR_INVALID, "need 1 <= batch <= 65536, 8 <= img_size <= 4096 and at least one epoch");
    if (!(c->lr > 0) || c->weight_decay < 0 || c->clip_value < 0 || c->clip_norm < 0 || c->label_smoothing < 0 ||
        c->label_smoothing >= 1 || !(c->mixup >= 0 && c->mixup <= 100) || c->val_split < 0 || c->val_split >= 1 ||
        c->backbone_lr_mult < 0 || !(c->ema >= 0 && c->ema < 1) || !(c->kd_weight >= 0 && c->kd_weight <= 1))
        return ferc_set_error(FERC_ERR_INVALID, "bad numeric option (lr > 0, 0 <= label smoothing < 1, 0 <= val split < 1, ...)");
    return FERC_OK;
}

/* Locks the run folder for this process and removes what a killed one left half-written. */
static int take_folder(run *r)
{
    int rc = file_dir_lock(r->cfg.out_dir, &r->lock_fd);
    if (rc) return rc;
    int removed = file_remove_stale_tmp(r->cfg.out_dir);
    if (removed < 0) return removed;
    if (removed) message(r, "removed %d unfinished temporary file%s (from an interrupted write)", removed, removed > 1 ? "s" : "");
    return FERC_OK;
}

static void result_init(trainer_result *res)
{
    memset(res, 0, sizeof *res);
}

int trainer_run(const trainer_config *cfg, const trainer_callbacks *cb, trainer_result *res)
{
    trainer_result dummy;
    if (!res) res = &dummy;
    result_init(res);
    int rc = validate_config(cfg);
    if (rc) return rc;
    run r;
    memset(&r, 0, sizeof r);
    r.cfg = *cfg;
    r.cb = cb;
    r.lock_fd = -1;
    if (r.cfg.threads > 0) omp_set_num_threads(r.cfg.threads);
    char path[TRAINER_PATH_MAX + 32];
    if ((rc = file_mkdirs(r.cfg.out_dir))) goto out;
    if ((rc = take_folder(&r))) goto out;
    if ((rc = setup_data(&r, r.cfg.split_manifest))) goto out;
    out_path(&r, path, sizeof path, "config.json");
    if ((rc = write_config(&r.cfg, path))) goto out;
    out_path(&r, path, sizeof path, "split.csv");
    if ((rc = data_manifest_write(path, &r.ix, r.split))) goto out;
    if ((rc = build_model(&r))) goto out;
    if ((rc = setup_teachers(&r))) goto out;
    if ((rc = read_metrics(&r, 0))) goto out;
    trainer_state st = {0};
    st.phase = r.cfg.freeze_epochs > 0 ? 1 : 2;
    st.best_val_acc = -1;
    st.seed = r.cfg.seed;
    if ((rc = begin_phase(&r, st.phase))) goto out;
    if ((rc = ema_alloc(&r, true))) goto out;
    /* A checkpoint before the first step, so that a run killed at any moment after this can
     * be resumed (before it, --resume starts the run again from config.json). */
    if ((rc = save_last(&r, &st))) goto out;
    rc = train_loop(&r, &st, res);
out:
    run_free(&r);
    return rc;
}

int trainer_resume(const char *run_dir, const trainer_config *ov, const trainer_callbacks *cb, trainer_result *res)
{
    trainer_result dummy;
    if (!res) res = &dummy;
    result_init(res);
    run r;
    memset(&r, 0, sizeof r);
    r.cb = cb;
    r.lock_fd = -1;
    if (!file_is_dir(run_dir)) return ferc_set_error(FERC_ERR_IO, "cannot resume %s: no such folder", run_dir);
    char path[TRAINER_PATH_MAX + 32], ckpt[TRAINER_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/config.json", run_dir);
    if (!file_exists(path))
        return ferc_set_error(FERC_ERR_IO, "cannot resume %s: it has no config.json (not a ferc run folder, or the "
                                           "run was stopped before it began: start it again with ferc train)", run_dir);
    int rc = trainer_config_read(run_dir, &r.cfg);
    if (rc) return ferc_wrap_error(rc, "cannot resume %s", run_dir);
    snprintf(r.cfg.out_dir, sizeof r.cfg.out_dir, "%s", run_dir);
    if (ov) {
        r.cfg.stop = ov->stop;
        r.cfg.max_steps = ov->max_steps;
        if (ov->threads > 0) r.cfg.threads = ov->threads;
    }
    if ((rc = validate_config(&r.cfg))) return ferc_wrap_error(rc, "%s", path);
    if (r.cfg.threads > 0) omp_set_num_threads(r.cfg.threads);
    if ((rc = take_folder(&r))) goto out;
    trainer_state st;
    out_path(&r, ckpt, sizeof ckpt, "last.safetensors");
    if (!file_exists(ckpt)) {
        /* Stopped before its first checkpoint: the run begins again, from its config.json. */
        message(&r, "%s has no checkpoint yet: starting the run from the beginning", run_dir);
        trainer_config c = r.cfg;
        run_free(&r);
        return trainer_run(&c, cb, res);
    }
    if ((rc = checkpoint_read_state(ckpt, &st))) goto out;
    out_path(&r, path, sizeof path, "split.csv");
    if ((rc = setup_data(&r, path))) goto out;
    if ((rc = models_create(&r.g, r.cfg.arch, r.K))) goto out;
    if ((rc = setup_teachers(&r))) goto out;
    if ((rc = read_metrics(&r, st.epochs_done))) goto out;
    if (st.phase == 2 && r.cfg.epochs == 0) {
        rc = ferc_set_error(FERC_ERR_FORMAT, "%s: phase 2 checkpoint for a run without phase 2", ckpt);
        goto out;
    }
    if ((rc = begin_phase(&r, st.phase))) goto out;
    if ((rc = ema_alloc(&r, false))) goto out;
    if ((rc = checkpoint_load(ckpt, r.g, r.opt, &st, r.ema_p, r.ema_b))) goto out;
    rc = train_loop(&r, &st, res);
out:
    run_free(&r);
    return rc;
}
