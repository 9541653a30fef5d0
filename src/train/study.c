/* study: see study.h. */
#include "train/study.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "data/data.h"
#include "models/importer.h"
#include "models/models.h"
#include "report/compare.h"

void study_config_default(study_config *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->archs[0], sizeof c->archs[0], "resnet152");
    snprintf(c->archs[1], sizeof c->archs[1], "densenet161");
    c->narchs = 2;
    snprintf(c->recipe, sizeof c->recipe, "fer");
    c->img_size = 48;
    c->epochs = 20;
    c->freeze_epochs = 3;
    c->batch = 64;
    c->ema = 0.999;
    c->seed = 1;
    c->bench = c->gradcam = true;
}

static void path_in(const study_config *c, char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", c->out_dir, name);
}

/* The ImageNet file of `arch` in weights_dir: <arch>-*.pth or <arch>*.safetensors. */
static int find_weights(const char *dir, const char *arch, char *out, size_t n)
{
    DIR *d = opendir(dir);
    if (!d) return ferc_set_error(FERC_ERR_IO, "cannot open the weights folder %s", dir);
    struct dirent *e;
    size_t al = strlen(arch);
    out[0] = 0;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        bool pth = l > al + 5 && !strncmp(e->d_name, arch, al) && e->d_name[al] == '-' && !strcmp(e->d_name + l - 4, ".pth");
        bool st = l > al + 12 && !strncmp(e->d_name, arch, al) && !strcmp(e->d_name + l - 12, ".safetensors") &&
                  (e->d_name[al] == '-' || e->d_name[al] == '.' || e->d_name[al] == '_');
        if (pth || st) {
            snprintf(out, n, "%s/%s", dir, e->d_name);
            break;
        }
    }
    closedir(d);
    return out[0] ? FERC_OK : ferc_set_error(FERC_ERR_NOT_FOUND, "%s holds no %s-*.pth or %s*.safetensors", dir, arch, arch);
}

int study_run_config(const study_config *c, int i, trainer_config *t)
{
    trainer_config_default(t);
    if (!strcmp(c->recipe, "fer")) trainer_recipe_fer(t);
    else if (strcmp(c->recipe, "default")) return ferc_set_error(FERC_ERR_INVALID, "study: recipe fer or default, not '%s'", c->recipe);
    snprintf(t->data_dir, sizeof t->data_dir, "%s", c->data_dir);
    snprintf(t->arch, sizeof t->arch, "%s", c->archs[i]);
    snprintf(t->out_dir, sizeof t->out_dir, "%s/%s", c->out_dir, c->archs[i]);
    snprintf(t->split_manifest, sizeof t->split_manifest, "%s/split.csv", c->out_dir);
    t->img_size = c->img_size;
    t->batch = c->batch;
    t->seed = c->seed;
    t->threads = c->threads;
    t->bf16 = c->bf16;
    t->ema = c->ema;
    t->mixup = c->mixup;
    t->stop = c->stop;
    /* the fer recipe's augmentation at this input size: the same pads and jitter, scaled */
    int S = c->img_size, pad = (S * 5 + 32) / 64 > 0 ? (S * 5 + 32) / 64 : 1;
    if (!strcmp(c->recipe, "fer"))
        snprintf(t->augment, sizeof t->augment,
                 "resize(%d,%d) | randomcrop(%d,pad=%d,mode=reflect) | affine(degrees=10,translate=0/0,scale=0.9/1.1,fill=128) | "
                 "hflip | normalize(mean=0.5072/0.5072/0.5072,std=0.2553/0.2553/0.2553) | "
                 "erase(p=0.5,scale=0.02/0.2,ratio=0.3/3.3,value=0)", S, S, S, pad);
    else
        trainer_default_augment(t, t->augment, sizeof t->augment);
    if (c->weights_dir[0]) {
        snprintf(t->weights, sizeof t->weights, "%s/%s-imagenet.safetensors", c->out_dir, c->archs[i]);
        t->freeze_epochs = c->freeze_epochs;
        t->epochs = c->epochs > c->freeze_epochs ? c->epochs - c->freeze_epochs : 1;
        t->cache_features = true;
    } else {
        t->freeze_epochs = 0;
        t->epochs = c->epochs;
    }
    return FERC_OK;
}

static int write_study_json(const study_config *c)
{
    cJSON *o = cJSON_CreateObject(), *a = cJSON_CreateArray();
    cJSON_AddStringToObject(o, "data", c->data_dir);
    cJSON_AddStringToObject(o, "weights_dir", c->weights_dir);
    for (int i = 0; i < c->narchs; i++) cJSON_AddItemToArray(a, cJSON_CreateString(c->archs[i]));
    cJSON_AddItemToObject(o, "archs", a);
    cJSON_AddStringToObject(o, "recipe", c->recipe);
    cJSON_AddNumberToObject(o, "img_size", c->img_size);
    cJSON_AddNumberToObject(o, "epochs", c->epochs);
    cJSON_AddNumberToObject(o, "freeze_epochs", c->freeze_epochs);
    cJSON_AddNumberToObject(o, "batch", c->batch);
    cJSON_AddNumberToObject(o, "threads", c->threads);
    cJSON_AddNumberToObject(o, "ema", c->ema);
    cJSON_AddNumberToObject(o, "mixup", c->mixup);
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)c->seed);
    cJSON_AddStringToObject(o, "seed", seed);
    cJSON_AddStringToObject(o, "precision", c->bf16 ? "bf16" : "fp32");
    cJSON_AddBoolToObject(o, "bench", c->bench);
    cJSON_AddBoolToObject(o, "gradcam", c->gradcam);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    if (!text) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    char path[TRAINER_PATH_MAX + 32];
    path_in(c, path, sizeof path, "study.json");
    int rc = file_write_atomic(path, text, strlen(text));
    free(text);
    return rc;
}

int study_config_read(const char *dir, study_config *c)
{
    char path[TRAINER_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/study.json", dir);
    uint8_t *d = NULL;
    size_t n;
    int rc = file_read_all(path, &d, &n);
    if (rc) return ferc_wrap_error(rc, "cannot resume the study %s", dir);
    cJSON *o = cJSON_ParseWithLength((const char *)d, n);
    free(d);
    if (!o) return ferc_set_error(FERC_ERR_FORMAT, "%s: not JSON", path);
    study_config_default(c);
    snprintf(c->out_dir, sizeof c->out_dir, "%s", dir);
    const char *s;
    if ((s = cJSON_GetStringValue(cJSON_GetObjectItem(o, "data")))) snprintf(c->data_dir, sizeof c->data_dir, "%s", s);
    if ((s = cJSON_GetStringValue(cJSON_GetObjectItem(o, "weights_dir")))) snprintf(c->weights_dir, sizeof c->weights_dir, "%s", s);
    if ((s = cJSON_GetStringValue(cJSON_GetObjectItem(o, "recipe")))) snprintf(c->recipe, sizeof c->recipe, "%s", s);
    if ((s = cJSON_GetStringValue(cJSON_GetObjectItem(o, "seed")))) c->seed = strtoull(s, NULL, 10);
    s = cJSON_GetStringValue(cJSON_GetObjectItem(o, "precision"));
    c->bf16 = s && !strcmp(s, "bf16");
    cJSON *a = cJSON_GetObjectItem(o, "archs"), *e;
    c->narchs = 0;
    cJSON_ArrayForEach(e, a) if (cJSON_IsString(e) && c->narchs < STUDY_MAX_ARCHS)
        snprintf(c->archs[c->narchs++], sizeof c->archs[0], "%s", e->valuestring);
#define INT(k, dst) do { cJSON *v_ = cJSON_GetObjectItem(o, k); \
        if (cJSON_IsNumber(v_) && v_->valuedouble >= 0 && v_->valuedouble <= 1e6) dst = (int)v_->valuedouble; } while (0)
    INT("img_size", c->img_size);
    INT("epochs", c->epochs);
    INT("freeze_epochs", c->freeze_epochs);
    INT("batch", c->batch);
    INT("threads", c->threads);
#undef INT
    /* absent in a study.json written before these options: those studies ran without them */
    cJSON *v = cJSON_GetObjectItem(o, "ema");
    c->ema = cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 1 ? v->valuedouble : 0;
    v = cJSON_GetObjectItem(o, "mixup");
    c->mixup = cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= 100 ? v->valuedouble : 0;
    c->bench = !cJSON_IsFalse(cJSON_GetObjectItem(o, "bench"));
    c->gradcam = !cJSON_IsFalse(cJSON_GetObjectItem(o, "gradcam"));
    cJSON_Delete(o);
    if (!c->data_dir[0] || c->narchs < 1) return ferc_set_error(FERC_ERR_FORMAT, "%s: no data folder or no architectures", path);
    return FERC_OK;
}

static bool run_finished(const study_config *c, int i)
{
    char path[TRAINER_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s/summary.json", c->out_dir, c->archs[i]);
    return file_exists(path);
}

static int do_study(const study_config *c, const study_callbacks *cb)
{
    char path[TRAINER_PATH_MAX + 64];
    int rc = FERC_OK;
    /* the one split, made once */
    path_in(c, path, sizeof path, "split.csv");
    if (!file_exists(path)) {
        data_index ix;
        if ((rc = data_index_open(&ix, c->data_dir, NULL))) return rc;
        uint8_t *split = malloc(ix.n ? ix.n : 1);
        if (!split) rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory");
        if (!rc) rc = data_split_stratified(&ix, 0.1, c->seed, split);
        if (!rc) rc = data_manifest_write(path, &ix, split);
        free(split);
        data_index_free(&ix);
        if (rc) return rc;
    }
    for (int i = 0; i < c->narchs && !rc; i++) {
        if (run_finished(c, i)) {
            if (cb && cb->on_run) cb->on_run(cb->ud, i + 1, c->narchs, c->archs[i], "done");
            continue;
        }
        trainer_config t;
        if ((rc = study_run_config(c, i, &t))) break;
        if (c->weights_dir[0] && !file_exists(t.weights)) {
            char src[TRAINER_PATH_MAX + 64];
            if ((rc = find_weights(c->weights_dir, c->archs[i], src, sizeof src))) break;
            importer_options io = {.arch = c->archs[i], .keep_head = true};
            nn_graph *g = NULL;
            models_meta meta;
            if ((rc = importer_import(src, &io, &g, &meta, NULL))) break;
            rc = models_save(t.weights, g, &meta, ST_F32);
            nn_graph_destroy(g);
            models_meta_free(&meta);
            if (rc) break;
        }
        snprintf(path, sizeof path, "%s/config.json", t.out_dir);
        bool started = file_exists(path);
        if (cb && cb->on_run) cb->on_run(cb->ud, i + 1, c->narchs, c->archs[i], started ? "resuming" : "training");
        trainer_result res;
        const trainer_callbacks *tcb = cb ? &cb->trainer : NULL;
        if (started) {
            trainer_config ov = {0};
            ov.stop = c->stop;
            ov.threads = c->threads;
            rc = trainer_resume(t.out_dir, &ov, tcb, &res);
        } else {
            rc = trainer_run(&t, tcb, &res);
        }
    }
    if (rc) return rc;
    /* the report */
    const char *dirs[STUDY_MAX_ARCHS];
    char run_dirs[STUDY_MAX_ARCHS][TRAINER_PATH_MAX + 40];
    for (int i = 0; i < c->narchs; i++) {
        snprintf(run_dirs[i], sizeof run_dirs[i], "%s/%s", c->out_dir, c->archs[i]);
        dirs[i] = run_dirs[i];
    }
    compare_opts o;
    compare_opts_default(&o);
    o.bench = c->bench;
    o.gradcam = c->gradcam;
    o.threads = c->threads > 0 ? c->threads : 2;
    o.title = "ferc study";
    char intro[4096], recipe[2048] = "";
    trainer_config t0;
    char ema[48] = "none", mix[48] = "none";
    if (c->ema > 0) snprintf(ema, sizeof ema, "decay %g", c->ema);
    if (c->mixup > 0) snprintf(mix, sizeof mix, "alpha %g", c->mixup);
    if (!strcmp(c->recipe, "fer") && !study_run_config(c, 0, &t0))
        snprintf(recipe, sizeof recipe,
                 " The recipe is that of ferc's default model (<code>ferc train --recipe fer</code>: AdamW at a peak "
                 "learning rate of %g with weight decay %g, OneCycle per batch, label smoothing %g, the training rows' "
                 "normalization), adapted in two ways: the input is %dx%d, with the crop padding scaled to it (the "
                 "default model trains larger: its model card says how), and the budget is %d epochs. Augmentation: <code>%s</code>. "
                 "Weight average (validated and saved): %s; mixup: %s.",
                 t0.lr, t0.weight_decay, t0.label_smoothing, c->img_size, c->img_size, c->epochs, t0.augment,
                 ema, mix);
    snprintf(intro, sizeof intro,
             "<p><b>%s.</b> %d architectures trained by one protocol: the same split (split.csv, seed %llu, 10%% of "
             "every class for validation), the same augmentation, optimizer, schedule (recipe <code>%s</code>), %d "
             "epochs, %dx%d input, batch %d, %s arithmetic.%s%s</p>",
             c->weights_dir[0] ? "Transfer learning from ImageNet weights" : "Trained from scratch (no ImageNet weights were given)",
             c->narchs, (unsigned long long)c->seed, c->recipe, c->epochs, c->img_size, c->img_size, c->batch,
             c->bf16 ? "bf16 mixed-precision" : "float32",
             c->weights_dir[0] ? " Each run first trains the new head on the frozen backbone with cached features, then "
                                 "fine-tunes everything." : "", recipe);
    o.intro = intro;
    path_in(c, path, sizeof path, "report");
    if (cb && cb->on_run) cb->on_run(cb->ud, c->narchs, c->narchs, "report", "writing");
    return compare_runs(dirs, c->narchs, path, &o);
}

int study_run(const study_config *c, const study_callbacks *cb)
{
    if (!c->data_dir[0] || !c->out_dir[0]) return ferc_set_error(FERC_ERR_INVALID, "study: a data folder and an output folder are needed");
    if (c->narchs < 1 || c->narchs > STUDY_MAX_ARCHS) return ferc_set_error(FERC_ERR_INVALID, "study: 1 to %d architectures", STUDY_MAX_ARCHS);
    for (int i = 0; i < c->narchs; i++) {
        if (!models_arch_known(c->archs[i])) return models_arch_family(c->archs[i], &(models_family){0});
        for (int j = 0; j < i; j++)
            if (!strcmp(c->archs[i], c->archs[j])) return ferc_set_error(FERC_ERR_INVALID, "study: %s twice", c->archs[i]);
    }
    int rc = file_mkdirs(c->out_dir);
    char path[TRAINER_PATH_MAX + 32];
    path_in(c, path, sizeof path, "study.json");
    if (!rc && file_exists(path))
        return ferc_set_error(FERC_ERR_INVALID, "%s already holds a study: continue it with --resume %s", c->out_dir, c->out_dir);
    if (!rc) rc = write_study_json(c);
    return rc ? rc : do_study(c, cb);
}

int study_resume(const char *dir, const study_config *ov, const study_callbacks *cb)
{
    study_config c;
    int rc = study_config_read(dir, &c);
    if (rc) return rc;
    if (ov) {
        c.stop = ov->stop;
        if (ov->threads > 0) c.threads = ov->threads;
    }
    return do_study(&c, cb);
}
