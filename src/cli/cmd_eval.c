/* ferc eval: a model on a labelled class-folder tree (optionally one split of a manifest):
 * accuracy, balanced accuracy, macro F1, top-2, per-class table, confusion (table, PNG with
 * --out) and the most confidently wrong images. Classes are matched by name. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/core.h"
#include "data/data.h"
#include "ferc.h"
#include "models/models.h"
#include "nn/nn.h"
#include "report/plots.h"
#include "train/metrics.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: ferc eval --model MODEL --data DIR [--manifest split.csv [--split val|train|test]]\n"
               "                 [--tta flip] [--batch N] [--json] [--out DIR]\n\n"
               "  --model FILE     a ferc model (best.safetensors of a run)\n"
               "  --data DIR       class-folder tree; class names must match the model's\n"
               "  --manifest FILE  evaluate only the --split rows (default val) of this split.csv\n"
               "  --tta flip       average the probabilities of the image and its mirror\n"
               "  --batch N        images per forward pass (default 64)\n"
               "  --json           one JSON object: accuracy, balanced_accuracy, macro_f1, top2_accuracy,\n"
               "                   per_class, confusion (fractions in [0, 1])\n"
               "  --out DIR        also write DIR/confusion.png and DIR/eval.json\n");
}

typedef struct wrong { float conf; int pred; uint32_t index; } wrong;

int cmd_eval(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return CLI_OK;
    }
    const char *model = NULL, *dir = NULL, *manifest = NULL, *split_name = "val", *tta = NULL, *out = NULL;
    int json = 0, B = 64;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--json")) { json = 1; continue; }
        if (!v) return cli_usage_error("eval", "%s needs a value", a);
        i++;
        if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--data")) dir = v;
        else if (!strcmp(a, "--manifest")) manifest = v;
        else if (!strcmp(a, "--split")) split_name = v;
        else if (!strcmp(a, "--tta")) tta = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--batch")) B = atoi(v);
        else return cli_usage_error("eval", "unknown option %s", a);
    }
    if (!model || !dir) return cli_usage_error("eval", "--model and --data are required");
    if (tta && strcmp(tta, "flip")) return cli_usage_error("eval", "--tta flip (tencrop is not implemented)");
    int which = !strcmp(split_name, "train") ? DATA_SPLIT_TRAIN : !strcmp(split_name, "test") ? DATA_SPLIT_TEST : DATA_SPLIT_VAL;
    if (B < 1) return cli_usage_error("eval", "--batch >= 1");

    nn_graph *g = NULL;
    models_meta m;
    if (models_load(model, &g, &m)) return cli_fail(model);
    int rc = CLI_FAIL, K = m.num_classes, S = m.img_size;
    data_index ix;
    if (data_index_open(&ix, dir, NULL)) { models_meta_free(&m); nn_graph_destroy(g); return cli_fail(dir); }
    data_cache *cache = NULL;
    data_transform *tf = NULL;
    data_loader *L = NULL;
    nn_exec *ex = NULL;
    uint8_t *split = NULL;
    uint32_t *idx = NULL;
    size_t n = 0;
    int *map = calloc((size_t)ix.n_classes, sizeof *map);
    float *x = calloc((size_t)B * 3 * S * S, sizeof(float)), *logits = malloc(sizeof(float) * B * K),
          *probs = malloc(sizeof(float) * B * K), *probs2 = malloc(sizeof(float) * B * K);
    wrong worst[10];
    int nworst = 0;
    metrics mt = {0};
    /* Data class -> model label, by display or folder name. */
    for (int c = 0; c < ix.n_classes; c++) {
        map[c] = -1;
        for (int j = 0; j < K && m.class_names; j++)
            if (!strcmp(m.class_names[j], ix.display_names[c]) || !strcmp(m.class_names[j], ix.class_names[c])) map[c] = j;
        if (map[c] < 0) {
            fprintf(stderr, "ferc eval: class '%s' of %s is not one of the model's classes:", ix.class_names[c], dir);
            for (int j = 0; j < K; j++) fprintf(stderr, " %s", m.class_names ? m.class_names[j] : "?");
            fprintf(stderr, "\n");
            goto done;
        }
    }
    data_bad_files bad;
    data_cache_opts co = {(size_t)16 << 30, 2, 0};
    if (data_cache_load(&cache, &ix, &co, &bad)) { cli_fail(dir); goto done; }
    data_bad_files_free(&bad);
    split = malloc(ix.n);
    if (manifest) {
        if (data_manifest_read(manifest, &ix, split)) { cli_fail(manifest); goto done; }
    } else {
        memset(split, which, ix.n);
    }
    if (data_split_indices(split, ix.n, which, &idx, &n) || n == 0) { fprintf(stderr, "ferc eval: no samples to evaluate\n"); goto done; }
    char spec[256];
    snprintf(spec, sizeof spec, "resize(%d,%d) | normalize(mean=%.9g/%.9g/%.9g,std=%.9g/%.9g/%.9g)", S, S, m.mean[0],
             m.mean[1], m.mean[2], m.std[0], m.std[1], m.std[2]);
    data_loader_opts lo = {B, 1, 0, 0, 1, 0, DATA_SAMPLE_PLAIN};
    if (data_transform_parse(&tf, spec) || data_loader_create(&L, cache, idx, n, tf, &lo) ||
        nn_exec_create(&ex, g, NULL, B, 3, S, S, 0) || metrics_init(&mt, K) || data_loader_start_epoch(L, 0)) {
        cli_fail("eval");
        goto done;
    }
    data_batch b;
    int r;
    size_t per = (size_t)3 * S * S;
    while ((r = data_loader_next(L, &b)) > 0) {
        memset(x, 0, per * B * sizeof(float));
        memcpy(x, b.x, per * b.n * sizeof(float));
        if (nn_exec_forward(ex, x, false, logits)) { cli_fail("eval"); goto done; }
        for (int i = 0; i < b.n; i++) {
            float mx = logits[i * K], s = 0;
            for (int j = 1; j < K; j++) if (logits[i * K + j] > mx) mx = logits[i * K + j];
            for (int j = 0; j < K; j++) s += probs[i * K + j] = expf(logits[i * K + j] - mx);
            for (int j = 0; j < K; j++) probs[i * K + j] /= s;
        }
        if (tta) { /* mirror every image along the width and average the probabilities */
            for (int i = 0; i < b.n; i++)
                for (int c = 0; c < 3; c++)
                    for (int yy = 0; yy < S; yy++) {
                        float *row = x + ((size_t)i * 3 + c) * S * S + (size_t)yy * S;
                        for (int xx = 0; xx < S / 2; xx++) { float t = row[xx]; row[xx] = row[S - 1 - xx]; row[S - 1 - xx] = t; }
                    }
            if (nn_exec_forward(ex, x, false, logits)) { cli_fail("eval"); goto done; }
            for (int i = 0; i < b.n; i++) {
                float mx = logits[i * K], s = 0;
                for (int j = 1; j < K; j++) if (logits[i * K + j] > mx) mx = logits[i * K + j];
                for (int j = 0; j < K; j++) s += probs2[i * K + j] = expf(logits[i * K + j] - mx);
                for (int j = 0; j < K; j++) probs[i * K + j] = 0.5f * (probs[i * K + j] + probs2[i * K + j] / s);
            }
        }
        int32_t y[4096];
        for (int i = 0; i < b.n && i < 4096; i++) {
            y[i] = map[b.y[i]];
            int p = metrics_argmax(probs + (size_t)i * K, K);
            if (p == y[i]) continue;
            wrong w = {probs[(size_t)i * K + p], p, b.index[i]};
            int pos = nworst < 10 ? nworst++ : 9;
            if (pos == 9 && nworst == 10 && worst[9].conf >= w.conf) continue;
            worst[pos] = w;
            for (int k = pos; k > 0 && worst[k].conf > worst[k - 1].conf; k--) { wrong t = worst[k]; worst[k] = worst[k - 1]; worst[k - 1] = t; }
        }
        metrics_add_scores(&mt, probs, y, b.n);
    }
    if (r < 0) { cli_fail("eval"); goto done; }
    metrics_finalize(&mt);
    char *js = NULL;
    if (metrics_to_json(&mt, (const char *const *)m.class_names, &js)) { cli_fail("eval"); goto done; }
    if (json) printf("%s\n", js);
    else {
        printf("model %s (%s, %d classes, %dx%d) on %s: %lld images%s\n", model, m.arch, K, S, S, dir, (long long)mt.n, tta ? ", tta flip" : "");
        printf("accuracy %.4f  balanced accuracy %.4f  macro F1 %.4f  top-2 %.4f\n\n", mt.accuracy, mt.balanced_accuracy, mt.macro_f1, mt.top2_accuracy);
        printf("%-12s %9s %9s %9s %8s\n", "class", "precision", "recall", "f1", "support");
        for (int c = 0; c < K; c++)
            printf("%-12s %9.4f %9.4f %9.4f %8lld\n", m.class_names[c], mt.precision[c], mt.recall[c], mt.f1[c], (long long)mt.support[c]);
        printf("\nconfusion (rows true, columns predicted)\n%-12s", "");
        for (int c = 0; c < K; c++) printf(" %8.8s", m.class_names[c]);
        printf("\n");
        for (int t = 0; t < K; t++) {
            printf("%-12s", m.class_names[t]);
            for (int p = 0; p < K; p++) printf(" %8lld", (long long)mt.confusion[(size_t)t * K + p]);
            printf("\n");
        }
        printf("\nmost confidently wrong:\n");
        char path[2048];
        for (int i = 0; i < nworst; i++)
            printf("  %.3f %-10s %s\n", worst[i].conf, m.class_names[worst[i].pred], data_index_path(&ix, worst[i].index, path, sizeof path));
    }
    if (out) {
        char path[2048];
        snprintf(path, sizeof path, "%s/confusion.png", out);
        if (file_mkdirs(out) || report_confusion_png(path, mt.confusion, K, (const char *const *)m.class_names)) { free(js); cli_fail(out); goto done; }
        snprintf(path, sizeof path, "%s/eval.json", out);
        if (file_write_atomic(path, js, strlen(js))) { free(js); cli_fail(out); goto done; }
    }
    free(js);
    rc = CLI_OK;
done:
    metrics_free(&mt);
    nn_exec_destroy(ex);
    data_loader_destroy(L);
    data_transform_destroy(tf);
    data_cache_destroy(cache);
    data_index_free(&ix);
    nn_graph_destroy(g);
    models_meta_free(&m);
    free(map); free(x); free(logits); free(probs); free(probs2); free(split); free(idx);
    return rc;
}
