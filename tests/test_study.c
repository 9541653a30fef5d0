/* ferc study and ferc compare on tiny runs.
 *
 * Grad-CAM (no data needed): a resnet18 trained to tell synthetic 128x128 noise images with a
 * bright square somewhere from ones with a dark square must put most of its map for "Bright"
 * in the bright square's quadrant, for squares in every quadrant.
 *
 * With FERC_DATA: `ferc study` for two epochs on 40 real FER faces per class with two small
 * architectures (resnet18, densenet121 at 32x32), then `ferc compare` on its runs. Checks:
 * every key of compare.json; each bootstrap interval contains its point estimate; McNemar's
 * counts equal a hand count of the discordant pairs from the runs' val_predictions.csv, and
 * its statistic follows from them; the report's pictures and page exist; an interrupted
 * study resumes to the same end. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "ferc.h"
#include "image/image.h"
#include "models/classify.h"
#include "models/gradcam.h"
#include "models/models.h"
#include "report/compare.h"
#include "testutil.h"
#include "train/study.h"
#include "train/trainer.h"

static char root[256];

/* ---- Grad-CAM on known evidence ------------------------------------------------------------- */

/* B x B noise with a square in one quadrant: bright for class 0 ("Bright"), dark for class 1
 * ("Dark"). A network with global pooling tells them apart by the square wherever it is; its
 * evidence for "Bright" is where the bright square is (a dark square is told by the absence of
 * a bright one, evidence everywhere, so only "Bright" is checked). At 128x128 resnet18's last
 * stage is 4x4, fine enough to see a quadrant. */
#define B 128
static void blob_image(image *img, int cls, int quadrant, rng *r)
{
    image_alloc(img, B, B, 1);
    for (int y = 0; y < B; y++)
        for (int x = 0; x < B; x++) img->data[y * img->stride + x] = (uint8_t)(100 + rng_below(r, 40));
    int ox = quadrant & 1 ? B / 2 : 0, oy = quadrant & 2 ? B / 2 : 0;
    int bx = ox + B / 16 + (int)rng_below(r, B / 4), by = oy + B / 16 + (int)rng_below(r, B / 4);
    for (int y = by; y < by + B / 8; y++)
        for (int x = bx; x < bx + B / 8; x++) img->data[y * img->stride + x] = cls ? 10 : 250;
}

static void test_gradcam(void)
{
    char path[512];
    const char *cls[2] = {"Bright", "Dark"}; /* label order: the folders sorted */
    rng r;
    rng_seed(&r, 5);
    for (int c = 0; c < 2; c++) {
        snprintf(path, sizeof path, "%s/blobs/%s", root, cls[c]);
        CHECK_OK(file_mkdirs(path));
        for (int i = 0; i < 60; i++) {
            image img;
            blob_image(&img, c, i % 4, &r);
            snprintf(path, sizeof path, "%s/blobs/%s/%02d.png", root, cls[c], i);
            CHECK_OK(image_save(&img, path, 90));
            image_free(&img);
        }
    }
    trainer_config t;
    trainer_config_default(&t);
    snprintf(t.data_dir, sizeof t.data_dir, "%s/blobs", root);
    snprintf(t.out_dir, sizeof t.out_dir, "%s/blobrun", root);
    snprintf(t.arch, sizeof t.arch, "resnet18");
    snprintf(t.augment, sizeof t.augment, "normalize(mean=0.5/0.5/0.5,std=0.25/0.25/0.25)");
    t.img_size = B;
    t.batch = 16;
    t.epochs = 6;
    t.lr = 1e-3;
    t.optimizer = OPTIM_ADAM;
    t.schedule = SCHED_CONSTANT;
    t.val_split = 0.2;
    t.threads = 2;
    trainer_result res;
    CHECK_OK(trainer_run(&t, NULL, &res));
    printf("blob classifier: validation accuracy %.3f after %d epochs\n", res.best_val_acc, res.epochs_done);
    CHECK(res.best_val_acc >= 0.9, "the blob classifier did not learn (%.3f)", res.best_val_acc);
    snprintf(path, sizeof path, "%s/blobrun/best.safetensors", root);
    nn_graph *g = NULL;
    models_meta meta;
    CHECK_OK(models_load(path, &g, &meta));
    gradcam *gc = NULL;
    if (g) CHECK_OK(gradcam_create(&gc, g, B));
    static float x[3 * B * B], map[B * B];
    int hits = 0, trials = 0;
    for (int c = 0; gc && c < 1; c++)
        for (int q = 0; q < 8; q++) {
            image img;
            blob_image(&img, c, q % 4, &r);
            CHECK_OK(classify_preprocess(&meta, &img, x));
            image_free(&img);
            int pred;
            CHECK_OK(gradcam_run(gc, x, c, map, &pred, NULL));
            double mass[4] = {0, 0, 0, 0}; /* the map's mass per quadrant */
            float hi = 0;
            for (int y = 0; y < B; y++)
                for (int xx = 0; xx < B; xx++) {
                    float v = map[y * B + xx];
                    hi = v > hi ? v : hi;
                    mass[(xx >= B / 2) + 2 * (y >= B / 2)] += v;
                }
            int top = 0;
            for (int k = 1; k < 4; k++) top = mass[k] > mass[top] ? k : top;
            trials++;
            hits += top == q % 4;
            printf("  %s in quadrant %d: predicted %s, the map's mass %.0f %.0f / %.0f %.0f\n", cls[c], q % 4, cls[pred],
                   mass[0], mass[1], mass[2], mass[3]);
            CHECK(hi > 0.99f && hi <= 1.0f, "the map is not scaled to a maximum of 1 (%.3f)", hi);
        }
    CHECK(trials == 8 && hits == trials, "Grad-CAM peaked in the bright square's quadrant for %d of %d images", hits, trials);
    gradcam_destroy(gc);
    nn_graph_destroy(g);
    if (g) models_meta_free(&meta);
}
#undef B

/* ---- study + compare on real faces ---------------------------------------------------------- */

typedef struct preds { int n; char **path; int *label, *pred; } preds;

static void read_preds(const char *csv_path, preds *p)
{
    memset(p, 0, sizeof *p);
    uint8_t *d = NULL;
    size_t n;
    CHECK_OK(file_read_all(csv_path, &d, &n));
    if (!d) return;
    char *save = NULL, *line = strtok_r((char *)d, "\n", &save);
    char *hdr = strdup(line ? line : "");
    int K = -1; /* path,label,p_1..p_K: K + 1 commas */
    for (char *q = hdr; *q; q++) K += *q == ',';
    if (K < 1) K = 1;
    char **names = calloc((size_t)K, sizeof *names);
    char *h = strchr(hdr, ',');
    h = h ? strchr(h + 1, ',') : NULL;
    for (int c = 0; c < K && h; c++) {
        char *e = strchr(h + 1, ',');
        names[c] = strndup(h + 3, e ? (size_t)(e - h - 3) : strlen(h + 3));
        h = e;
    }
    p->path = calloc(4096, sizeof *p->path);
    p->label = calloc(4096, sizeof *p->label);
    p->pred = calloc(4096, sizeof *p->pred);
    while ((line = strtok_r(NULL, "\n", &save)) && p->n < 4096) {
        char *c1 = strchr(line, ','), *c2 = c1 ? strchr(c1 + 1, ',') : NULL;
        if (!c2) continue;
        *c1 = *c2 = 0;
        p->path[p->n] = strdup(line);
        for (int c = 0; c < K; c++)
            if (!strcmp(names[c], c1 + 1)) p->label[p->n] = c;
        double best = -1;
        char *q = c2 + 1;
        for (int c = 0; c < K; c++) {
            double v = strtod(q, &q);
            if (*q == ',') q++;
            if (v > best) best = v, p->pred[p->n] = c;
        }
        p->n++;
    }
    for (int c = 0; c < K; c++) free(names[c]);
    free(names);
    free(hdr);
    free(d);
}

static void free_preds(preds *p)
{
    for (int i = 0; i < p->n; i++) free(p->path[i]);
    free(p->path);
    free(p->label);
    free(p->pred);
}

static bool correct_of(const preds *p, const char *path, bool *found)
{
    for (int i = 0; i < p->n; i++)
        if (!strcmp(p->path[i], path)) {
            *found = true;
            return p->pred[i] == p->label[i];
        }
    *found = false;
    return false;
}

static const char *const run_keys[] = {"name", "dir", "arch", "img_size", "precision", "epochs", "best_epoch", "accuracy",
                                       "accuracy_ci95", "balanced_accuracy", "balanced_accuracy_ci95", "macro_f1",
                                       "macro_f1_ci95", "top2_accuracy", "ece", "reliability", "per_class", "confusion",
                                       "confused_pairs", "cost", NULL};
static const char *const cost_keys[] = {"train_seconds", "images_per_s", "peak_rss_mib", "parameters", "gflops", "file_mib",
                                        "latency_b1_ms", "throughput_b64", NULL};
static const char *const top_keys[] = {"title", "n_images", "classes", "bootstrap", "runs", "mcnemar", "gradcam",
                                       "seed_notebook", NULL};
static const char *const pair_keys[] = {"a", "b", "only_a_right", "only_b_right", "statistic", "p_value", "p_exact", NULL};

static void has_keys(const cJSON *o, const char *const *keys, const char *what)
{
    for (int i = 0; keys[i]; i++) CHECK(cJSON_GetObjectItem(o, keys[i]) != NULL, "%s: no key '%s'", what, keys[i]);
}

static void test_study(const char *bin, const char *data)
{
    /* 40 real faces of every class folder (the dataset spells one "Suprise"), by symlink */
    CHECK(test_sh("cd %s/fer/Training && for c in */; do c=${c%%/}; mkdir -p %s/sub/$c; ls $c | sort | head -40 | "
                  "while read f; do ln -s %s/fer/Training/$c/$f %s/sub/$c/$f; done; done", data, root, data, root) == 0,
          "the subset of the real data");
    CHECK(test_sh("'%s' study --data %s/sub --out %s/st --archs resnet18,densenet121 --epochs 2 --img-size 32 --batch 16 "
                  "--ema 0.99 --mixup 0.1 --threads 2 --no-bench --quiet", bin, root, root) == 0, "ferc study failed");
    char path[600];
    /* the study's weight average and mixup reach every run's own config.json */
    for (int r = 0; r < 2; r++) {
        snprintf(path, sizeof path, "%s/st/%s/config.json", root, r ? "densenet121" : "resnet18");
        uint8_t *cd = NULL;
        size_t cn;
        CHECK_OK(file_read_all(path, &cd, &cn));
        cJSON *cfg = cd ? cJSON_ParseWithLength((char *)cd, cn) : NULL;
        free(cd);
        const cJSON *ema = cJSON_GetObjectItem(cfg, "ema"), *mix = cJSON_GetObjectItem(cfg, "mixup");
        CHECK(cJSON_IsNumber(ema) && fabs(ema->valuedouble - 0.99) < 1e-12 && cJSON_IsNumber(mix) &&
                  fabs(mix->valuedouble - 0.1) < 1e-12,
              "%s: ema %g mixup %g, want the study's 0.99 and 0.1", path, cJSON_IsNumber(ema) ? ema->valuedouble : -1,
              cJSON_IsNumber(mix) ? mix->valuedouble : -1);
        cJSON_Delete(cfg);
    }
    study_config sc;
    snprintf(path, sizeof path, "%s/st", root);
    CHECK_OK(study_config_read(path, &sc));
    CHECK(fabs(sc.ema - 0.99) < 1e-12 && fabs(sc.mixup - 0.1) < 1e-12, "study.json: ema %g mixup %g", sc.ema, sc.mixup);
    snprintf(path, sizeof path, "%s/st/report/index.html", root);
    CHECK(file_exists(path), "no report");
    snprintf(path, sizeof path, "%s/st/report/compare.json", root);
    uint8_t *d = NULL;
    size_t n;
    CHECK_OK(file_read_all(path, &d, &n));
    cJSON *j = d ? cJSON_Parse((char *)d) : NULL;
    free(d);
    CHECK(j != NULL, "compare.json is not JSON");
    /* resume: a study whose report and second run's summary are gone finishes them again */
    CHECK(test_sh("rm -rf %s/st/report %s/st/densenet121/summary.json", root, root) == 0);
    CHECK(test_sh("'%s' study --resume %s/st --quiet", bin, root) == 0, "ferc study --resume failed");
    snprintf(path, sizeof path, "%s/st/report/compare.json", root);
    CHECK(file_exists(path), "the resumed study wrote no report");
    cJSON_Delete(j);

    /* ferc compare on the two runs, with the discordant lists */
    CHECK(test_sh("'%s' compare %s/st/resnet18 %s/st/densenet121 --out %s/cmp --no-bench --list-discordant "
                  "--bootstrap 500 >/dev/null", bin, root, root, root) == 0, "ferc compare failed");
    snprintf(path, sizeof path, "%s/cmp/compare.json", root);
    d = NULL;
    CHECK_OK(file_read_all(path, &d, &n));
    j = d ? cJSON_Parse((char *)d) : NULL;
    free(d);
    CHECK(j != NULL, "compare.json");
    if (!j) return;
    has_keys(j, top_keys, "compare.json");
    const cJSON *runs = cJSON_GetObjectItem(j, "runs"), *r;
    CHECK(cJSON_GetArraySize(runs) == 2, "two runs");
    cJSON_ArrayForEach(r, runs)
    {
        has_keys(r, run_keys, "a run");
        has_keys(cJSON_GetObjectItem(r, "cost"), cost_keys, "a run's cost");
        /* the confused pairs are off the diagonal, counted as in the confusion matrix, largest first */
        const cJSON *cp, *conf = cJSON_GetObjectItem(r, "confusion"), *cls = cJSON_GetObjectItem(j, "classes");
        double last = 1e30;
        cJSON_ArrayForEach(cp, cJSON_GetObjectItem(r, "confused_pairs"))
        {
            const char *tn = cJSON_GetObjectItem(cp, "true")->valuestring, *pn = cJSON_GetObjectItem(cp, "predicted")->valuestring;
            int ti = -1, pi = -1;
            for (int c = 0; c < cJSON_GetArraySize(cls); c++) {
                if (!strcmp(cJSON_GetArrayItem(cls, c)->valuestring, tn)) ti = c;
                if (!strcmp(cJSON_GetArrayItem(cls, c)->valuestring, pn)) pi = c;
            }
            double cnt = cJSON_GetObjectItem(cp, "count")->valuedouble;
            CHECK(ti >= 0 && pi >= 0 && ti != pi, "a confused pair %s -> %s", tn, pn);
            if (ti >= 0 && pi >= 0)
                CHECK(cnt == cJSON_GetArrayItem(cJSON_GetArrayItem(conf, ti), pi)->valuedouble && cnt <= last,
                      "confused pair %s -> %s: %g", tn, pn, cnt);
            last = cnt;
        }
        static const char *const m[3] = {"accuracy", "balanced_accuracy", "macro_f1"};
        for (int k = 0; k < 3; k++) {
            char ck[64];
            snprintf(ck, sizeof ck, "%s_ci95", m[k]);
            double v = cJSON_GetObjectItem(r, m[k])->valuedouble;
            const cJSON *ci = cJSON_GetObjectItem(r, ck);
            double lo = cJSON_GetArrayItem(ci, 0)->valuedouble, hi = cJSON_GetArrayItem(ci, 1)->valuedouble;
            printf("  %s %s %.3f [%.3f, %.3f]\n", cJSON_GetObjectItem(r, "name")->valuestring, m[k], v, lo, hi);
            CHECK(lo <= v && v <= hi && lo < hi, "%s: %.4f outside its interval [%.4f, %.4f]", m[k], v, lo, hi);
        }
    }
    const cJSON *pair = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "mcnemar"), 0);
    CHECK(pair != NULL, "a McNemar pair");
    if (pair) {
        has_keys(pair, pair_keys, "a McNemar pair");
        preds a, b;
        snprintf(path, sizeof path, "%s/st/resnet18/val_predictions.csv", root);
        read_preds(path, &a);
        snprintf(path, sizeof path, "%s/st/densenet121/val_predictions.csv", root);
        read_preds(path, &b);
        int only_a = 0, only_b = 0, missing = 0;
        for (int i = 0; i < a.n; i++) {
            bool found;
            bool ca = a.pred[i] == a.label[i], cb = correct_of(&b, a.path[i], &found);
            missing += !found;
            only_a += ca && !cb;
            only_b += !ca && cb;
        }
        double ja = cJSON_GetObjectItem(pair, "only_a_right")->valuedouble, jb = cJSON_GetObjectItem(pair, "only_b_right")->valuedouble;
        double st = cJSON_GetObjectItem(pair, "statistic")->valuedouble;
        double want = only_a + only_b ? pow(fmax(fabs((double)(only_a - only_b)) - 1, 0), 2) / (only_a + only_b) : 0;
        printf("  McNemar: hand count b %d, c %d over %d images (compare.json %.0f, %.0f; statistic %.4f)\n", only_a, only_b,
               a.n, ja, jb, st);
        CHECK(a.n > 0 && a.n == b.n && missing == 0, "the two runs scored different images");
        CHECK(ja == only_a && jb == only_b, "McNemar counts %.0f/%.0f, hand count %d/%d", ja, jb, only_a, only_b);
        CHECK(fabs(st - want) < 1e-9, "McNemar statistic %.6f, want %.6f", st, want);
        CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(pair, "only_a_right_paths")) == only_a, "discordant list length");
        free_preds(&a);
        free_preds(&b);
    }
    static const char *const pics[] = {"index.html", "confusion_1.png", "confusion_2.png", "reliability.png", "loss_epoch.png",
                                       "accuracy_epoch.png", "loss_time.png", "accuracy_time.png", "gradcam.png", NULL};
    for (int i = 0; pics[i]; i++) {
        snprintf(path, sizeof path, "%s/cmp/%s", root, pics[i]);
        CHECK(file_exists(path), "the report has no %s", pics[i]);
    }
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(j, "gradcam")) == 12, "12 Grad-CAM faces");
    cJSON_Delete(j);
    /* runs on different images are refused */
    CHECK(test_sh("'%s' compare %s/st/resnet18 %s/blobrun --out %s/bad --no-bench >/dev/null 2>&1", bin, root, root, root) != 0,
          "compare accepted runs validated on different images");
}

int main(void)
{
    snprintf(root, sizeof root, "/tmp/ferc_test_study_XXXXXX");
    if (!mkdtemp(root)) return test_skip("no temporary folder");
    /* the statistics on hand-made numbers */
    double st, pc, pe;
    compare_mcnemar(10, 2, &st, &pc, &pe);
    CHECK(fabs(st - 49.0 / 12) < 1e-12, "McNemar(10, 2) statistic %.6f", st);
    CHECK(fabs(pe - 2 * (1 + 12 + 66) / 4096.0) < 1e-12, "McNemar(10, 2) exact p %.6f", pe); /* 2 P(X <= 2), n = 12 */
    compare_mcnemar(0, 0, &st, &pc, &pe);
    CHECK(st == 0 && pc == 1 && pe == 1, "McNemar(0, 0)");
    float conf[4] = {0.95f, 0.95f, 0.55f, 0.55f};
    uint8_t ok[4] = {1, 0, 1, 1};
    double ece = compare_ece(conf, ok, 4, 10, NULL, NULL, NULL); /* bins 9: acc .5 conf .95; 5: acc 1 conf .55 */
    CHECK(fabs(ece - (0.5 * 0.45 + 0.5 * 0.45)) < 1e-6, "ECE %.6f", ece);

    test_gradcam();
    const char *bin = getenv("FERC_BIN"), *data = test_data_dir();
    if (bin && data) test_study(bin, data);
    else printf("FERC_DATA or FERC_BIN unset: the study half is skipped\n");
    if (test_failures == 0) test_sh("rm -rf %s", root);
    return test_finish("test_study");
}
