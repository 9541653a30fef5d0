/* ferc eval: a model on labelled images: a class-folder tree, or the rows of one split of a
 * split manifest (a run's split.csv). Prints accuracy, balanced accuracy, macro F1, top-2, the
 * per-class table, the confusion matrix (table; PNG with --out), the slowest images and the most
 * confidently wrong ones. Classes are matched by name; test-time augmentation by flip or ten
 * crops. */
#include <cjson/cJSON.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/core.h"
#include "data/data.h"
#include "ferc.h"
#include "image/image.h"
#include "models/classify.h"
#include "models/models.h"
#include "nn/nn.h"
#include "report/plots.h"
#include "train/metrics.h"

#define LIST_N 10

static void usage(FILE *f)
{
    fprintf(f, "usage: ferc eval [--model MODEL] --data DIR|MANIFEST [--split val|train|test] [--root DIR]\n"
               "                 [--tta none|flip|tencrop] [--precision fp32|bf16] [--batch N] [--threads N]\n"
               "                 [--json] [--out DIR]\n\n"
               "  --model FILE     a ferc model (a run's best.safetensors); default: the shipped model\n"
               "  --data PATH      a class-folder tree, or a split manifest (split.csv: path,label,split)\n"
               "                   whose --split rows are evaluated; class names must match the model's\n"
               "  --split NAME     rows of a manifest to evaluate (default val)\n"
               "  --root DIR       the image tree a manifest's paths are relative to (default: the \"data\"\n"
               "                   of the config.json next to the manifest, else $FERC_DATA/fer/Training;\n"
               "                   FERC_DATA defaults to ../shared/data when that folder exists)\n"
               "  --manifest FILE  with --data DIR: evaluate only the --split rows of this manifest\n"
               "  --tta flip       average the probabilities of the image and its mirror (the default:\n"
               "                   what ferc predict, ferc camera and the library do)\n"
               "  --tta none       one view per image (what ferc train's validation measures)\n"
               "  --tta tencrop    average ten views: the 4 corner and the centre crops of the image padded\n"
               "                   by S/12 (reflect), and their mirrors (the training crops, deterministic)\n"
               "  --batch N        images per forward pass (default 64)\n"
               "  --threads N      compute threads (default: OpenMP's)\n"
               "  --precision P    fp32 (default) or bf16 (mixed: bf16 activations and conv weights)\n"
               "  --json           one JSON object: accuracy, balanced_accuracy, macro_f1, top2_accuracy,\n"
               "                   per_class, confusion (fractions in [0, 1]), slowest, most_confident_wrong;\n"
               "                   with a manifest also duplicates_in_train, n_unique, accuracy_unique and\n"
               "                   balanced_accuracy_unique: the images that have a byte-identical copy among\n"
               "                   the manifest's train rows, and the figures without them\n"
               "  --out DIR        also write DIR/confusion.png, DIR/eval.json and DIR/predictions.csv\n"
               "                   (path,label,predicted,confidence, then the probability of every class,\n"
               "                   one column per class name: one row per image)\n\n"
               "Per-image time is its own decode from the file plus the mean forward time per image (all\n"
               "images of a model cost the same forward pass; decoding is what differs between files).\n");
}

typedef struct ranked { float key; int pred; uint32_t index; } ranked;

/* Keeps the LIST_N largest keys, sorted descending. */
static void rank_push(ranked *list, int *n, ranked r)
{
    if (*n == LIST_N && list[LIST_N - 1].key >= r.key) return;
    int pos = *n < LIST_N ? (*n)++ : LIST_N - 1;
    list[pos] = r;
    for (int k = pos; k > 0 && list[k].key > list[k - 1].key; k--) {
        ranked t = list[k];
        list[k] = list[k - 1];
        list[k - 1] = t;
    }
}

/* A folder, made absolute and without ".." when it exists (for readable paths). */
static int is_dir_canon(char *p, size_t cap)
{
    if (!file_is_dir(p)) return 0;
    char *abs = realpath(p, NULL);
    if (abs && strlen(abs) < cap) strcpy(p, abs);
    free(abs);
    return 1;
}

static int cmp_path(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The image root of a manifest: config.json next to it ("data_abs", then "data" as given, then
 * "data" relative to the run folder's parent), else $FERC_DATA/fer/Training, else (FERC_DATA unset)
 * ../shared/data/fer/Training when it exists. */
static int manifest_root(const char *manifest, char *root, size_t cap)
{
    char dir[2048], cfg[2100];
    snprintf(dir, sizeof dir, "%s", manifest);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else snprintf(dir, sizeof dir, ".");
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    uint8_t *txt;
    size_t size;
    if (file_read_all(cfg, &txt, &size) == FERC_OK) {
        cJSON *o = cJSON_ParseWithLength((const char *)txt, size);
        free(txt);
        const char *keys[] = {"data_abs", "data"};
        for (int k = 0; o && k < 2; k++) {
            const char *v = cJSON_GetStringValue(cJSON_GetObjectItem(o, keys[k]));
            if (!v || !*v) continue;
            snprintf(root, cap, "%s", v);
            if (is_dir_canon(root, cap)) return cJSON_Delete(o), 1;
            if (v[0] != '/') {
                snprintf(root, cap, "%s/../%s", dir, v);
                if (is_dir_canon(root, cap)) return cJSON_Delete(o), 1;
            }
        }
        cJSON_Delete(o);
    }
    const char *env = getenv("FERC_DATA");
    if (env && *env) {
        snprintf(root, cap, "%s/fer/Training", env);
        if (is_dir_canon(root, cap)) return 1;
    } else { /* the project's convention (README): FERC_DATA defaults to ../shared/data */
        snprintf(root, cap, "../shared/data/fer/Training");
        if (is_dir_canon(root, cap)) return 1;
    }
    ferc_clear_error();
    return 0;
}

int cmd_eval(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return CLI_OK;
    }
    const char *model = NULL, *data = NULL, *manifest = NULL, *split_name = "val", *tta = NULL, *out = NULL,
               *root_opt = NULL;
    int json = 0, B = 64;
    bool bf16 = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--json")) { json = 1; continue; }
        if (a[0] != '-') return cli_usage_error("eval", "unexpected argument '%s'", a);
        if (!v) return cli_usage_error("eval", "%s needs a value", a);
        i++;
        if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--data")) data = v;
        else if (!strcmp(a, "--manifest")) manifest = v;
        else if (!strcmp(a, "--split")) split_name = v;
        else if (!strcmp(a, "--root")) root_opt = v;
        else if (!strcmp(a, "--tta")) tta = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--precision")) {
            if (cli_parse_precision(v, &bf16)) return cli_usage_error("eval", "--precision fp32|bf16, not '%s'", v);
        }
        else if (!strcmp(a, "--threads")) {
            int t;
            if (cli_parse_int(v, 1, 1024, &t)) return cli_usage_error("eval", "--threads needs a positive integer, not '%s'", v);
            omp_set_num_threads(t);
        } else if (!strcmp(a, "--batch")) {
            if (cli_parse_int(v, 1, 4096, &B)) return cli_usage_error("eval", "--batch needs an integer in [1, 4096], not '%s'", v);
        } else return cli_usage_error("eval", "unknown option %s", a);
    }
    if (!data) return cli_usage_error("eval", "--data is required: a class-folder tree or a split manifest");
    if (!model && !(model = ferc_default_model_path()))
        return cli_usage_error("eval", "no --model given and the default model is not installed (set FERC_MODEL)");
    classify_tta mode = CLASSIFY_TTA_FLIP; /* the prediction path's default */
    if (tta && classify_tta_parse(tta, &mode)) return cli_usage_error("eval", "--tta must be none, flip or tencrop (got '%s')", tta);
    int which;
    if (!strcmp(split_name, "train")) which = DATA_SPLIT_TRAIN;
    else if (!strcmp(split_name, "val")) which = DATA_SPLIT_VAL;
    else if (!strcmp(split_name, "test")) which = DATA_SPLIT_TEST;
    else return cli_usage_error("eval", "--split must be train, val or test (got '%s')", split_name);
    char rootbuf[4096];
    const char *dir = data;
    if (!file_is_dir(data)) {
        FILE *f = fopen(data, "r");
        if (!f) {
            ferc_set_error(FERC_ERR_IO, "not a folder or a readable manifest");
            return cli_fail(data);
        }
        fclose(f);
        if (manifest) return cli_usage_error("eval", "--data is already a manifest; --manifest goes with a folder");
        manifest = data;
        if (root_opt) dir = root_opt;
        else if (manifest_root(manifest, rootbuf, sizeof rootbuf)) dir = rootbuf;
        else return cli_usage_error("eval", "cannot tell which image folder %s lists: give --root DIR (or set FERC_DATA)", manifest);
    } else if (root_opt) {
        return cli_usage_error("eval", "--root goes with a manifest given as --data");
    }

    classifier *net = NULL;
    if (classifier_load(&net, model)) return cli_fail(model);
    classifier_set_tta(net, mode);
    classifier_set_bf16(net, bf16);
    const models_meta *m = classifier_meta(net);
    int rc = CLI_FAIL, K = m->num_classes, S = m->img_size;
    data_index ix;
    if (data_index_open(&ix, dir, NULL)) { classifier_destroy(net); return cli_fail(dir); }
    data_cache *cache = NULL;
    data_transform *tf = NULL;
    data_loader *L = NULL;
    uint8_t *split = NULL, *dup = NULL;
    char **dup_paths = NULL;
    size_t n_dup = 0, n_dup_paths = 0;
    uint32_t *idx = NULL;
    size_t n = 0;
    double *load_s = NULL;
    char *js = NULL;
    int *pred = NULL;    /* per image: the predicted label and the K probabilities (predictions.csv) */
    float *prob = NULL;
    const size_t per = (size_t)3 * S * S;
    int *map = calloc((size_t)ix.n_classes, sizeof *map);
    float *x = calloc((size_t)B * per, sizeof(float)), *acc = malloc(sizeof(float) * B * K);
    int32_t *y = malloc(sizeof(int32_t) * B);
    ranked worst[LIST_N], slow[LIST_N];
    int nworst = 0, nslow = 0;
    metrics mt = {0}, mu = {0}; /* mu: the images without a byte-identical training copy */
    if (!map || !x || !acc || !y) { ferc_set_error(FERC_ERR_NOMEM, "out of memory"); cli_fail("eval"); goto done; }
    if (!m->class_names) { fprintf(stderr, "ferc eval: %s names no classes; cannot match them to %s\n", model, dir); goto done; }
    /* Data class -> model label, by display or folder name. */
    for (int c = 0; c < ix.n_classes; c++) {
        map[c] = -1;
        for (int j = 0; j < K; j++)
            if (!strcmp(m->class_names[j], ix.display_names[c]) || !strcmp(m->class_names[j], ix.class_names[c])) map[c] = j;
        if (map[c] < 0) {
            fprintf(stderr, "ferc eval: class '%s' of %s is not one of the model's classes:", ix.class_names[c], dir);
            for (int j = 0; j < K; j++) fprintf(stderr, " %s", m->class_names[j]);
            fprintf(stderr, "\n");
            goto done;
        }
    }
    split = malloc(ix.n);
    if (!split) { ferc_set_error(FERC_ERR_NOMEM, "out of memory"); cli_fail("eval"); goto done; }
    if (manifest) {
        if (data_manifest_read(manifest, &ix, split)) { cli_fail(manifest); goto done; }
    } else {
        memset(split, which, ix.n);
    }
    if (data_split_indices(split, ix.n, which, &idx, &n)) { cli_fail("eval"); goto done; }
    if (n == 0) { fprintf(stderr, "ferc eval: no %s samples to evaluate in %s\n", split_name, manifest ? manifest : dir); goto done; }
    if (manifest) {
        /* leakage: evaluated images whose bytes also appear among the manifest's training rows */
        dup = malloc(ix.n);
        if (!dup) { ferc_set_error(FERC_ERR_NOMEM, "out of memory"); cli_fail("eval"); goto done; }
        if (data_mark_train_copies(&ix, split, which, dup, &n_dup)) { cli_fail("eval: looking for duplicates"); goto done; }
        /* remembered by path: the filters below renumber the samples */
        dup_paths = malloc(sizeof *dup_paths * (n_dup ? n_dup : 1));
        if (!dup_paths) { ferc_set_error(FERC_ERR_NOMEM, "out of memory"); cli_fail("eval"); goto done; }
        size_t nd = 0;
        for (size_t i = 0; i < ix.n; i++)
            if (dup[i]) dup_paths[nd++] = ix.paths[i]; /* only rows of the evaluated split are marked */
        qsort(dup_paths, nd, sizeof *dup_paths, cmp_path);
        for (; n_dup_paths < nd; n_dup_paths++) /* only the first n_dup_paths are copies we own */
            if (!(dup_paths[n_dup_paths] = strdup(dup_paths[n_dup_paths]))) { ferc_set_error(FERC_ERR_NOMEM, "out of memory"); cli_fail("eval"); goto done; }
    }
    /* Only the evaluated samples are decoded (into the cache); then each one's decode from its
     * file is timed on its own for the slowest list. */
    uint8_t *keep = calloc(ix.n, 1);
    if (!keep) { ferc_set_error(FERC_ERR_NOMEM, "out of memory"); cli_fail("eval"); goto done; }
    for (size_t i = 0; i < n; i++) keep[idx[i]] = 1;
    int frc = data_index_filter(&ix, keep);
    free(keep);
    if (frc) { cli_fail("eval"); goto done; }
    data_bad_files bad;
    data_cache_opts co = {(size_t)16 << 30, 2, 0};
    if (data_cache_load(&cache, &ix, &co, &bad)) { cli_fail(dir); goto done; }
    if (bad.count) fprintf(stderr, "ferc eval: %zu unreadable images skipped\n", bad.count);
    data_bad_files_free(&bad);
    if (dup) { /* the evaluated images that decoded, flagged when a training row has their bytes */
        n_dup = 0;
        for (size_t i = 0; i < ix.n; i++) {
            dup[i] = bsearch(&ix.paths[i], dup_paths, n_dup_paths, sizeof *dup_paths, cmp_path) != NULL;
            n_dup += dup[i];
        }
    }
    free(idx);
    idx = NULL;
    n = ix.n;
    load_s = calloc(n ? n : 1, sizeof *load_s);
    idx = malloc((n ? n : 1) * sizeof *idx);
    pred = malloc((n ? n : 1) * sizeof *pred);
    prob = malloc((n ? n : 1) * (size_t)K * sizeof *prob);
    if (!load_s || !idx || !pred || !prob) { ferc_set_error(FERC_ERR_NOMEM, "out of memory"); cli_fail("eval"); goto done; }
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        image im;
        idx[i] = (uint32_t)i;
        pred[i] = -1;
        double t0 = time_now();
        if (image_load(&im, data_index_path(&ix, i, path, sizeof path), IMAGE_MODE_ANY, 0) == FERC_OK) image_free(&im);
        load_s[i] = time_now() - t0;
    }
    ferc_clear_error();
    char spec[256];
    snprintf(spec, sizeof spec, "resize(%d,%d) | normalize(mean=%.9g/%.9g/%.9g,std=%.9g/%.9g/%.9g)", S, S, m->mean[0],
             m->mean[1], m->mean[2], m->std[0], m->std[1], m->std[2]);
    data_loader_opts lo = {B, 1, 0, 0, 1, 0, DATA_SAMPLE_PLAIN};
    if (data_transform_parse(&tf, spec) || data_loader_create(&L, cache, idx, n, tf, &lo) ||
        metrics_init(&mt, K) || metrics_init(&mu, K) || data_loader_start_epoch(L, 0)) {
        cli_fail("eval");
        goto done;
    }
    data_batch b;
    int r;
    double forward_s = 0;
    while ((r = data_loader_next(L, &b)) > 0) {
        memset(x, 0, per * B * sizeof(float));
        memcpy(x, b.x, per * b.n * sizeof(float));
        double t0 = time_now(); /* every view of a full (zero-padded) batch: one plan */
        if (classifier_run(net, x, B, NULL, acc)) { cli_fail("eval"); goto done; }
        forward_s += time_now() - t0;
        for (int i = 0; i < b.n; i++) {
            y[i] = map[b.y[i]];
            rank_push(slow, &nslow, (ranked){(float)load_s[b.index[i]], -1, b.index[i]});
            int p = metrics_argmax(acc + (size_t)i * K, K);
            pred[b.index[i]] = p;
            memcpy(prob + (size_t)b.index[i] * K, acc + (size_t)i * K, (size_t)K * sizeof *prob);
            if (p != y[i]) rank_push(worst, &nworst, (ranked){acc[(size_t)i * K + p], p, b.index[i]});
            if (dup && !dup[b.index[i]]) metrics_add_scores(&mu, acc + (size_t)i * K, &y[i], 1);
        }
        metrics_add_scores(&mt, acc, y, b.n);
    }
    if (r < 0) { cli_fail("eval"); goto done; }
    metrics_finalize(&mt);
    metrics_finalize(&mu);
    if (metrics_to_json(&mt, (const char *const *)m->class_names, &js)) { cli_fail("eval"); goto done; }
    const double fwd_each = forward_s / (double)(mt.n > 0 ? mt.n : 1); /* the forward pass is the same for every image */
    for (int i = 0; i < nslow; i++) slow[i].key += (float)fwd_each;
    {
        /* add the two image lists to the metrics object */
        cJSON *o = cJSON_Parse(js), *ws = cJSON_CreateArray(), *ss = cJSON_CreateArray();
        char path[4096];
        for (int i = 0; i < nslow; i++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "path", data_index_path(&ix, slow[i].index, path, sizeof path));
            cJSON_AddNumberToObject(e, "ms", 1e3 * slow[i].key);
            cJSON_AddItemToArray(ss, e);
        }
        for (int i = 0; i < nworst; i++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "path", data_index_path(&ix, worst[i].index, path, sizeof path));
            cJSON_AddStringToObject(e, "label", m->class_names[map[ix.labels[worst[i].index]]]);
            cJSON_AddStringToObject(e, "predicted", m->class_names[worst[i].pred]);
            cJSON_AddNumberToObject(e, "confidence", worst[i].key);
            cJSON_AddItemToArray(ws, e);
        }
        cJSON_AddStringToObject(o, "model", model);
        cJSON_AddStringToObject(o, "data", manifest ? manifest : dir);
        cJSON_AddStringToObject(o, "tta", classify_tta_name(mode));
        cJSON_AddStringToObject(o, "precision", bf16 ? "bf16" : "fp32");
        if (dup) {
            cJSON_AddNumberToObject(o, "duplicates_in_train", (double)n_dup);
            cJSON_AddNumberToObject(o, "n_unique", (double)mu.n);
            cJSON_AddNumberToObject(o, "accuracy_unique", mu.accuracy);
            cJSON_AddNumberToObject(o, "balanced_accuracy_unique", mu.balanced_accuracy);
        }
        cJSON_AddItemToObject(o, "slowest", ss);
        cJSON_AddItemToObject(o, "most_confident_wrong", ws);
        char *full = o ? cJSON_PrintUnformatted(o) : NULL;
        cJSON_Delete(o);
        if (!full) { ferc_set_error(FERC_ERR_NOMEM, "out of memory"); cli_fail("eval"); goto done; }
        free(js);
        js = full;
    }
    if (json) printf("%s\n", js);
    else {
        printf("model %s (%s, %d classes, %dx%d) on %s: %lld images, tta %s%s\n", model, m->arch, K, S, S,
               manifest ? manifest : dir, (long long)mt.n, classify_tta_name(mode), bf16 ? ", bf16" : "");
        printf("accuracy %.4f  balanced accuracy %.4f  macro F1 %.4f  top-2 %.4f\n", mt.accuracy, mt.balanced_accuracy, mt.macro_f1, mt.top2_accuracy);
        if (dup)
            printf("duplicates: %zu of the %lld images have a byte-identical copy among the manifest's train rows;\n"
                   "without them (%lld images): accuracy_unique %.4f  balanced accuracy %.4f\n",
                   n_dup, (long long)mt.n, (long long)mu.n, mu.accuracy, mu.balanced_accuracy);
        printf("\n");
        printf("%-12s %9s %9s %9s %8s\n", "class", "precision", "recall", "f1", "support");
        for (int c = 0; c < K; c++)
            printf("%-12s %9.4f %9.4f %9.4f %8lld\n", m->class_names[c], mt.precision[c], mt.recall[c], mt.f1[c], (long long)mt.support[c]);
        printf("\nconfusion (rows true, columns predicted)\n%-12s", "");
        for (int c = 0; c < K; c++) printf(" %8.8s", m->class_names[c]);
        printf("\n");
        for (int t = 0; t < K; t++) {
            printf("%-12s", m->class_names[t]);
            for (int p = 0; p < K; p++) printf(" %8lld", (long long)mt.confusion[(size_t)t * K + p]);
            printf("\n");
        }
        char path[4096];
        printf("\nforward passes %.2f s (%.0f images/s)\nslowest (decode + mean forward time per image):\n",
               forward_s, (double)mt.n / (forward_s > 0 ? forward_s : 1));
        for (int i = 0; i < nslow; i++) printf("  %7.3f ms  %s\n", 1e3 * slow[i].key, data_index_path(&ix, slow[i].index, path, sizeof path));
        printf("most confidently wrong (confidence, predicted, true, path):\n");
        for (int i = 0; i < nworst; i++)
            printf("  %.3f %-9s %-9s %s\n", worst[i].key, m->class_names[worst[i].pred], m->class_names[map[ix.labels[worst[i].index]]],
                   data_index_path(&ix, worst[i].index, path, sizeof path));
    }
    if (out) {
        char path[4096];
        snprintf(path, sizeof path, "%s/confusion.png", out);
        if (file_mkdirs(out) || report_confusion_png(path, mt.confusion, K, (const char *const *)m->class_names)) { cli_fail(out); goto done; }
        snprintf(path, sizeof path, "%s/eval.json", out);
        if (file_write_atomic(path, js, strlen(js))) { cli_fail(out); goto done; }
        size_t longest = 0, len = 0;
        for (int c = 0; c < K; c++) longest = strlen(m->class_names[c]) > longest ? strlen(m->class_names[c]) : longest;
        size_t cap = 64 + (size_t)K * (longest + 2) + n * (2 * longest + 24 + 10 * (size_t)K); /* names, numbers, commas */
        for (size_t i = 0; i < n; i++) cap += strlen(ix.paths[i]);
        char *csv = malloc(cap);
        if (!csv) { ferc_set_error(FERC_ERR_NOMEM, "out of memory"); cli_fail("eval"); goto done; }
        len += (size_t)snprintf(csv + len, cap - len, "path,label,predicted,confidence");
        for (int c = 0; c < K; c++) len += (size_t)snprintf(csv + len, cap - len, ",%s", m->class_names[c]);
        len += (size_t)snprintf(csv + len, cap - len, "\n");
        for (size_t i = 0; i < n; i++)
            if (pred[i] >= 0) {
                const float *pi = prob + i * K;
                len += (size_t)snprintf(csv + len, cap - len, "%s,%s,%s,%.6f", ix.paths[i], m->class_names[map[ix.labels[i]]],
                                        m->class_names[pred[i]], (double)pi[pred[i]]);
                for (int c = 0; c < K; c++) len += (size_t)snprintf(csv + len, cap - len, ",%.6f", (double)pi[c]);
                len += (size_t)snprintf(csv + len, cap - len, "\n");
            }
        snprintf(path, sizeof path, "%s/predictions.csv", out);
        int wrc = file_write_atomic(path, csv, len);
        free(csv);
        if (wrc) { cli_fail(out); goto done; }
    }
    rc = CLI_OK;
done:
    free(js);
    metrics_free(&mt);
    metrics_free(&mu);
    data_loader_destroy(L);
    data_transform_destroy(tf);
    data_cache_destroy(cache);
    data_index_free(&ix);
    classifier_destroy(net);
    free(map); free(x); free(acc); free(y); free(split); free(dup); free(idx);
    for (size_t i = 0; i < n_dup_paths; i++) free(dup_paths[i]);
    free(dup_paths); free(load_s); free(pred); free(prob);
    return rc;
}
