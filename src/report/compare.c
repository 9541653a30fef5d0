/* compare: see compare.h. */
#include "report/compare.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/core.h"
#include "image/image.h"
#include "models/classify.h"
#include "models/gradcam.h"
#include "models/models.h"
#include "nn/nn.h"
#include "report/plots.h"
#include "train/metrics.h"
#include "train/trainer.h"

#define NBINS 10
#define NFACES 12
#define FACE_SIDE 96
#define MAX_RUNS 8

void compare_opts_default(compare_opts *o)
{
    memset(o, 0, sizeof *o);
    o->bootstrap = 1000;
    o->seed = 1;
    o->bench = true;
    o->gradcam = true;
    o->title = "Model comparison";
    o->threads = 2;
}

/* ---- statistics ---------------------------------------------------------------------------- */

void compare_mcnemar(int64_t b, int64_t c, double *statistic, double *p_chi2, double *p_exact)
{
    int64_t n = b + c;
    double d = fabs((double)(b - c)) - 1;
    double st = n > 0 ? (d > 0 ? d * d : 0) / (double)n : 0;
    *statistic = st;
    *p_chi2 = n > 0 ? erfc(sqrt(st / 2)) : 1; /* chi-square with 1 degree of freedom */
    /* exact: 2 P(X <= min(b, c)), X ~ Binomial(n, 1/2), in logs */
    double p = 0;
    int64_t k = b < c ? b : c;
    for (int64_t i = 0; i <= k && n > 0; i++)
        p += exp(lgamma((double)n + 1) - lgamma((double)i + 1) - lgamma((double)(n - i) + 1) - (double)n * log(2.0));
    *p_exact = n > 0 ? fmin(1, 2 * p) : 1;
}

double compare_ece(const float *conf, const uint8_t *correct, int64_t n, int nbins, double *bin_acc, double *bin_conf,
                   int64_t *bin_count)
{
    double *sa = calloc((size_t)nbins, sizeof *sa), *sc = calloc((size_t)nbins, sizeof *sc);
    int64_t *cnt = calloc((size_t)nbins, sizeof *cnt);
    double ece = 0;
    if (sa && sc && cnt) {
        for (int64_t i = 0; i < n; i++) {
            int b = (int)(conf[i] * nbins);
            b = b < 0 ? 0 : b >= nbins ? nbins - 1 : b;
            sa[b] += correct[i];
            sc[b] += conf[i];
            cnt[b]++;
        }
        for (int b = 0; b < nbins; b++) {
            double a = cnt[b] ? sa[b] / (double)cnt[b] : 0, c = cnt[b] ? sc[b] / (double)cnt[b] : 0;
            if (n > 0) ece += (double)cnt[b] / (double)n * fabs(a - c);
            if (bin_acc) bin_acc[b] = a;
            if (bin_conf) bin_conf[b] = c;
            if (bin_count) bin_count[b] = cnt[b];
        }
    }
    free(sa);
    free(sc);
    free(cnt);
    return ece;
}

/* ---- runs ---------------------------------------------------------------------------------- */

typedef struct crun {
    char dir[1024], name[160], arch[32], precision[8], data_abs[1024], model[1100];
    int img_size, K, epochs;
    char **classes;
    int64_t n;
    char **paths;       /* sorted */
    int *labels, *pred;
    float *probs, *conf;
    uint8_t *correct;
    trainer_epoch *hist;
    int nhist;
    double seconds, best_val_acc, peak_mib, ips;
    int best_epoch;
    metrics m;
    double ci[3][2];    /* accuracy, balanced accuracy, macro F1 */
    double ece, bin_acc[NBINS], bin_conf[NBINS];
    int64_t bin_n[NBINS];
    double params, gflops, file_mib, lat_ms, thr_ips;
    bool has_model;
} crun;

static void crun_free(crun *r)
{
    for (int i = 0; r->classes && i < r->K; i++) free(r->classes[i]);
    free(r->classes);
    for (int64_t i = 0; r->paths && i < r->n; i++) free(r->paths[i]);
    free(r->paths);
    free(r->labels);
    free(r->pred);
    free(r->probs);
    free(r->conf);
    free(r->correct);
    free(r->hist);
    metrics_free(&r->m);
}

static char *read_text(const char *path)
{
    uint8_t *d = NULL;
    size_t n;
    return file_read_all(path, &d, &n) ? NULL : (char *)d;
}

typedef struct row { char *path; int label; float *p; } row;

static int cmp_row(const void *a, const void *b) { return strcmp(((const row *)a)->path, ((const row *)b)->path); }

static int load_predictions(crun *r)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/val_predictions.csv", r->dir);
    char *text = read_text(path);
    if (!text)
        return ferc_wrap_error(FERC_ERR_IO, "%s: no val_predictions.csv (runs finished by an older ferc train lack it: "
                                            "resume or retrain them)", r->dir);
    int rc = FERC_OK;
    char *save = NULL, *line = strtok_r(text, "\n", &save);
    if (!line || strncmp(line, "path,label,p_", 13)) {
        free(text);
        return ferc_set_error(FERC_ERR_FORMAT, "%s: not a val_predictions.csv header", path);
    }
    int K = 0;
    for (char *p = line; *p; p++) K += *p == ',';
    K -= 1;
    if (K < 2 || K > 1000) {
        free(text);
        return ferc_set_error(FERC_ERR_FORMAT, "%s: %d classes in the header", path, K);
    }
    r->K = K;
    r->classes = calloc((size_t)K, sizeof *r->classes);
    char *h = strchr(strchr(line, ',') + 1, ',');
    for (int c = 0; c < K && h; c++) {
        char *e = strchr(h + 1, ',');
        size_t len = e ? (size_t)(e - h - 1) : strlen(h + 1);
        r->classes[c] = strndup(h + 3, len >= 2 ? len - 2 : 0);
        h = e;
    }
    size_t cap = 1024, n = 0;
    row *rows = malloc(cap * sizeof *rows);
    float *pbuf = NULL;
    size_t pcap = 0;
    while (!rc && (line = strtok_r(NULL, "\n", &save))) {
        if (n == cap) {
            row *nr = realloc(rows, (cap *= 2) * sizeof *rows);
            if (!nr) { rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory"); break; }
            rows = nr;
        }
        char *c1 = strchr(line, ','), *c2 = c1 ? strchr(c1 + 1, ',') : NULL;
        if (!c2) { rc = ferc_set_error(FERC_ERR_FORMAT, "%s:%zu: a short row", path, n + 2); break; }
        *c1 = *c2 = 0;
        int label = -1;
        for (int c = 0; c < K; c++)
            if (!strcmp(c1 + 1, r->classes[c])) label = c;
        if (label < 0) { rc = ferc_set_error(FERC_ERR_FORMAT, "%s:%zu: unknown label '%s'", path, n + 2, c1 + 1); break; }
        if ((n + 1) * K > pcap) {
            pcap = pcap ? pcap * 2 : (size_t)K * 4096;
            while (pcap < (n + 1) * K) pcap *= 2;
            float *np = realloc(pbuf, pcap * sizeof *np);
            if (!np) { rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory"); break; }
            pbuf = np;
        }
        char *q = c2 + 1;
        for (int c = 0; c < K; c++) {
            char *end;
            double v = strtod(q, &end);
            if (end == q || !(v >= 0 && v <= 1)) { rc = ferc_set_error(FERC_ERR_FORMAT, "%s:%zu: bad probability", path, n + 2); break; }
            pbuf[n * K + c] = (float)v;
            q = *end == ',' ? end + 1 : end;
        }
        rows[n].path = strdup(line);
        rows[n].label = label;
        rows[n].p = NULL;
        n++;
    }
    if (!rc && n == 0) rc = ferc_set_error(FERC_ERR_FORMAT, "%s: no rows", path);
    if (!rc) {
        for (size_t i = 0; i < n; i++) rows[i].p = pbuf + i * K;
        qsort(rows, n, sizeof *rows, cmp_row);
        r->n = (int64_t)n;
        r->paths = malloc(n * sizeof *r->paths);
        r->labels = malloc(n * sizeof *r->labels);
        r->pred = malloc(n * sizeof *r->pred);
        r->probs = malloc(n * K * sizeof *r->probs);
        r->conf = malloc(n * sizeof *r->conf);
        r->correct = malloc(n);
        if (!r->paths || !r->labels || !r->pred || !r->probs || !r->conf || !r->correct)
            rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory");
        for (size_t i = 0; !rc && i < n; i++) {
            r->paths[i] = rows[i].path;
            rows[i].path = NULL;
            r->labels[i] = rows[i].label;
            memcpy(r->probs + i * K, rows[i].p, (size_t)K * sizeof(float));
            r->pred[i] = metrics_argmax(r->probs + i * K, K);
            r->conf[i] = r->probs[i * K + r->pred[i]];
            r->correct[i] = r->pred[i] == r->labels[i];
        }
        if (rc) r->n = 0;
    }
    for (size_t i = 0; i < n; i++) free(rows[i].path);
    free(rows);
    free(pbuf);
    free(text);
    return rc;
}

static int load_run(crun *r, const char *dir)
{
    memset(r, 0, sizeof *r);
    snprintf(r->dir, sizeof r->dir, "%s", dir);
    trainer_config c;
    int rc = trainer_config_read(dir, &c);
    if (rc) return ferc_wrap_error(rc, "%s is not a ferc run folder", dir);
    snprintf(r->arch, sizeof r->arch, "%s", c.arch);
    snprintf(r->precision, sizeof r->precision, "%s", c.bf16 ? "bf16" : "fp32");
    r->img_size = c.img_size;
    r->epochs = c.freeze_epochs + c.epochs;
    const char *base = strrchr(dir, '/');
    base = base && base[1] ? base + 1 : dir;
    snprintf(r->name, sizeof r->name, "%s", base);
    char path[1200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *cfg = read_text(path);
    cJSON *o = cfg ? cJSON_Parse(cfg) : NULL;
    const char *abs = cJSON_GetStringValue(cJSON_GetObjectItem(o, "data_abs"));
    snprintf(r->data_abs, sizeof r->data_abs, "%s", abs ? abs : c.data_dir);
    cJSON_Delete(o);
    free(cfg);
    snprintf(path, sizeof path, "%s/summary.json", dir);
    char *sum = read_text(path);
    if (!sum) return ferc_set_error(FERC_ERR_IO, "%s: no summary.json (the run has not finished)", dir);
    o = cJSON_Parse(sum);
    free(sum);
#define NUM(k) (cJSON_IsNumber(cJSON_GetObjectItem(o, k)) ? cJSON_GetObjectItem(o, k)->valuedouble : NAN)
    r->seconds = NUM("seconds");
    r->best_val_acc = NUM("best_val_acc");
    double be = NUM("best_epoch");
    r->best_epoch = be >= 0 && be <= 1e9 ? (int)be : 0;
    r->peak_mib = NUM("peak_rss_mib");
#undef NUM
    cJSON_Delete(o);
    if ((rc = load_predictions(r))) return rc;
    if (trainer_history_read(dir, -1, 0, &r->hist, &r->nhist)) ferc_clear_error(); /* no metrics.jsonl: no curves */
    double s = 0;
    int k = 0;
    for (int i = 0; i < r->nhist; i++)
        if (isfinite(r->hist[i].images_per_s)) s += r->hist[i].images_per_s, k++;
    r->ips = k ? s / k : NAN;
    snprintf(r->model, sizeof r->model, "%s/best.safetensors", dir);
    r->has_model = file_exists(r->model);
    return FERC_OK;
}

/* ---- quality ------------------------------------------------------------------------------- */

static void quality(crun *r, const compare_opts *o)
{
    metrics_init(&r->m, r->K);
    for (int64_t i = 0; i < r->n; i++) {
        const float *p = r->probs + i * r->K;
        int second = -1;
        for (int c = 0; c < r->K; c++)
            if (c != r->pred[i] && (second < 0 || p[c] > p[second])) second = c;
        metrics_add(&r->m, r->labels[i], r->pred[i], r->labels[i] == r->pred[i] || r->labels[i] == second);
    }
    metrics_finalize(&r->m);
    /* bootstrap over images: the same resamples for every run (same seed) */
    int B = o->bootstrap > 0 ? o->bootstrap : 1;
    double *v[3] = {malloc(B * sizeof(double)), malloc(B * sizeof(double)), malloc(B * sizeof(double))};
    metrics bm;
    metrics_init(&bm, r->K);
    rng g;
    rng_seed(&g, o->seed);
    for (int b = 0; b < B && v[0] && v[1] && v[2]; b++) {
        metrics_reset(&bm);
        for (int64_t i = 0; i < r->n; i++) {
            int64_t j = (int64_t)rng_below(&g, (uint32_t)r->n);
            metrics_add(&bm, r->labels[j], r->pred[j], false);
        }
        metrics_finalize(&bm);
        v[0][b] = bm.accuracy, v[1][b] = bm.balanced_accuracy, v[2][b] = bm.macro_f1;
    }
    metrics_free(&bm);
    for (int k = 0; k < 3; k++) {
        if (!v[k]) continue;
        for (int a = 1; a < B; a++) /* insertion sort: B is small */
            for (int q = a; q > 0 && v[k][q] < v[k][q - 1]; q--) {
                double t = v[k][q];
                v[k][q] = v[k][q - 1];
                v[k][q - 1] = t;
            }
        r->ci[k][0] = v[k][(int)floor(0.025 * (B - 1))];
        r->ci[k][1] = v[k][(int)ceil(0.975 * (B - 1))];
        free(v[k]);
    }
    r->ece = compare_ece(r->conf, r->correct, r->n, NBINS, r->bin_acc, r->bin_conf, r->bin_n);
}

/* ---- cost ---------------------------------------------------------------------------------- */

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double time_forward(nn_graph *g, int batch, int S, int reps)
{
    nn_exec *ex = NULL;
    if (nn_exec_create(&ex, g, NULL, batch, 3, S, S, 0)) return NAN;
    float *x = calloc((size_t)batch * 3 * S * S, sizeof *x);
    double t[64];
    reps = reps > 64 ? 64 : reps;
    for (int i = 0; x && i < reps + 2; i++) {
        double t0 = time_now();
        nn_exec_forward(ex, x, false, NULL);
        if (i >= 2) t[i - 2] = time_now() - t0;
    }
    free(x);
    nn_exec_destroy(ex);
    qsort(t, (size_t)reps, sizeof *t, cmp_d);
    return t[reps / 2];
}

static void cost(crun *r, const compare_opts *o)
{
    r->params = r->gflops = r->file_mib = r->lat_ms = r->thr_ips = NAN;
    nn_graph *g = NULL;
    if (!models_create(&g, r->arch, r->K) && !nn_graph_infer_shapes(g, 1, 3, r->img_size, r->img_size)) {
        r->params = (double)nn_param_count(g);
        r->gflops = nn_graph_flops(g) / 1e9;
    }
    nn_graph_destroy(g);
    struct stat st;
    if (r->has_model && stat(r->model, &st) == 0) r->file_mib = (double)st.st_size / 1048576.0;
    if (!o->bench || !r->has_model) return;
    models_meta meta;
    g = NULL;
    if (models_load(r->model, &g, &meta)) {
        ferc_clear_error();
        return;
    }
    omp_set_num_threads(o->threads > 0 ? o->threads : 2);
    r->lat_ms = 1000 * time_forward(g, 1, r->img_size, 20);
    r->thr_ips = 64 / time_forward(g, 64, r->img_size, 5);
    nn_graph_destroy(g);
    models_meta_free(&meta);
}

/* ---- Grad-CAM ------------------------------------------------------------------------------ */

typedef struct face_pick { int64_t idx; const char *category; } face_pick;

/* The image of category c with the highest key, taken out of the running (-1: none left). */
static int64_t take_best(int8_t *cat, const double *key, int64_t n, int c)
{
    int64_t best = -1;
    for (int64_t i = 0; i < n; i++)
        if (cat[i] == c && (best < 0 || key[i] > key[best])) best = i;
    if (best >= 0) cat[best] = -1;
    return best;
}

/* 4 that every model gets right (most confident first), 4 they disagree on, 4 all get wrong
 * (most confident first); with one model, the middle row goes to the other two, and a
 * category with too few faces leaves its places to the others. */
static int pick_faces(crun *runs, int nr, face_pick *out, uint64_t seed)
{
    int64_t n = runs[0].n;
    double *key = malloc((size_t)n * sizeof *key);
    int8_t *cat = malloc((size_t)n);
    if (!key || !cat) {
        free(key);
        free(cat);
        return 0;
    }
    rng g;
    rng_seed(&g, seed);
    for (int64_t i = 0; i < n; i++) {
        int right = 0;
        double lo = 1, mean = 0;
        for (int k = 0; k < nr; k++) {
            right += runs[k].correct[i];
            lo = fmin(lo, runs[k].conf[i]);
            mean += runs[k].conf[i] / nr;
        }
        cat[i] = right == nr ? 0 : right == 0 ? 2 : 1;
        key[i] = cat[i] == 0 ? lo : cat[i] == 2 ? mean : rng_uniform(&g);
    }
    int want[3] = {4, nr > 1 ? 4 : 0, nr > 1 ? 4 : 8}, got = 0;
    static const char *names[3] = {"all right", "disagree", "all wrong"};
    for (int c = 0; c < 3; c++)
        for (int k = 0; k < want[c]; k++) {
            int64_t best = take_best(cat, key, n, c);
            if (best < 0) break;
            out[got++] = (face_pick){best, names[c]};
        }
    /* a category short of faces (tiny validation sets): the others fill the grid */
    for (int c = 0; c < 3 && got < NFACES; c++)
        for (int64_t best; got < NFACES && (best = take_best(cat, key, n, c)) >= 0;) out[got++] = (face_pick){best, names[c]};
    free(key);
    free(cat);
    return got;
}

static int gradcams(crun *runs, int nr, const compare_opts *o, const char *out_dir, face_pick *faces, int nf,
                    int **preds)
{
    uint8_t *pix = calloc((size_t)nf * FACE_SIDE * FACE_SIDE, 1);
    float *maps = calloc((size_t)nr * nf * FACE_SIDE * FACE_SIDE, sizeof *maps);
    char **rowl = calloc((size_t)nf, sizeof *rowl), **celll = calloc((size_t)nr * nf, sizeof *celll);
    const char **mnames = calloc((size_t)nr, sizeof *mnames);
    char (*mlabel)[200] = calloc((size_t)nr, sizeof *mlabel);
    *preds = calloc((size_t)nr * nf, sizeof **preds);
    int rc = pix && maps && rowl && celll && mnames && mlabel && *preds ? FERC_OK : ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    image *imgs = calloc((size_t)nf, sizeof *imgs);
    if (!imgs) rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    for (int f = 0; !rc && f < nf; f++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", o->data_root ? o->data_root : runs[0].data_abs, runs[0].paths[faces[f].idx]);
        image gray, small;
        if ((rc = image_load(&gray, path, IMAGE_MODE_GRAY, 0))) break;
        rc = image_resize(&small, &gray, FACE_SIDE, FACE_SIDE);
        image_free(&gray);
        if (rc) break;
        for (int y = 0; y < FACE_SIDE; y++) memcpy(pix + ((size_t)f * FACE_SIDE + y) * FACE_SIDE, small.data + (size_t)y * small.stride, FACE_SIDE);
        image_free(&small);
        if ((rc = image_load(&imgs[f], path, IMAGE_MODE_ANY, 0))) break;
        char buf[256];
        snprintf(buf, sizeof buf, "%s (%s)", runs[0].classes[runs[0].labels[faces[f].idx]], faces[f].category);
        rowl[f] = strdup(buf);
    }
    for (int m = 0; !rc && m < nr; m++) {
        snprintf(mlabel[m], sizeof mlabel[m], "%s", runs[m].name);
        mnames[m] = mlabel[m];
        nn_graph *g = NULL;
        models_meta meta;
        if ((rc = models_load(runs[m].model, &g, &meta))) break;
        gradcam *gc = NULL;
        int S = meta.img_size;
        float *x = malloc((size_t)3 * S * S * sizeof *x), *map = malloc((size_t)S * S * sizeof *map);
        if (!x || !map) rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory");
        if (!rc) rc = gradcam_create(&gc, g, S);
        if (!rc) { /* the map's own resolution, in the column heading */
            int gh, gw;
            gradcam_grid(gc, &gh, &gw);
            snprintf(mlabel[m], sizeof mlabel[m], "%s (%dx%d)", runs[m].name, gh, gw);
        }
        for (int f = 0; !rc && f < nf; f++) {
            int pred;
            if ((rc = classify_preprocess(&meta, &imgs[f], x))) break;
            if ((rc = gradcam_run(gc, x, -1, map, &pred, NULL))) break;
            (*preds)[m * nf + f] = pred;
            for (int y = 0; y < FACE_SIDE; y++)
                for (int xx = 0; xx < FACE_SIDE; xx++)
                    maps[(((size_t)m * nf + f) * FACE_SIDE + y) * FACE_SIDE + xx] = map[(size_t)(y * S / FACE_SIDE) * S + xx * S / FACE_SIDE];
            char buf[128];
            snprintf(buf, sizeof buf, "%s %s", pred == runs[m].labels[faces[f].idx] ? "right:" : "wrong:",
                     pred >= 0 && pred < runs[m].K ? runs[m].classes[pred] : "?");
            celll[m * nf + f] = strdup(buf);
        }
        gradcam_destroy(gc);
        free(x);
        free(map);
        nn_graph_destroy(g);
        models_meta_free(&meta);
    }
    if (!rc) {
        char path[1200];
        snprintf(path, sizeof path, "%s/gradcam.png", out_dir);
        for (int i = 0; i < nr * nf; i++)
            if (!celll[i]) celll[i] = strdup("");
        rc = report_gradcam_png(path, nf, FACE_SIDE, pix, (const char *const *)rowl, nr, mnames, maps,
                                (const char *const *)celll);
    }
    for (int f = 0; imgs && f < nf; f++) image_free(&imgs[f]);
    free(imgs);
    for (int f = 0; rowl && f < nf; f++) free(rowl[f]);
    for (int i = 0; celll && i < nr * nf; i++) free(celll[i]);
    free(rowl);
    free(celll);
    free(mnames);
    free(mlabel);
    free(pix);
    free(maps);
    return rc;
}

/* ---- output -------------------------------------------------------------------------------- */

static void add_ci(cJSON *o, const char *key, double v, const double ci[2])
{
    cJSON_AddNumberToObject(o, key, v);
    char k[64];
    snprintf(k, sizeof k, "%s_ci95", key);
    cJSON *a = cJSON_CreateArray();
    cJSON_AddItemToArray(a, cJSON_CreateNumber(ci[0]));
    cJSON_AddItemToArray(a, cJSON_CreateNumber(ci[1]));
    cJSON_AddItemToObject(o, k, a);
}

static void add_num_or_null(cJSON *o, const char *key, double v)
{
    if (isfinite(v)) cJSON_AddNumberToObject(o, key, v);
    else cJSON_AddNullToObject(o, key);
}

/* The top confused pairs of run r: (true, predicted, count), largest first, ties in class
 * order. */
static int confused_pairs(const crun *r, int *t, int *p, int64_t *cnt, int max)
{
    int n = 0;
    for (int a = 0; a < r->K; a++)
        for (int b = 0; b < r->K; b++) {
            int64_t c = a == b ? 0 : r->m.confusion[(size_t)a * r->K + b];
            if (c == 0) continue;
            int q = n < max ? n++ : max; /* insertion position in the sorted top list */
            while (q > 0 && cnt[q - 1] < c) {
                if (q < max) t[q] = t[q - 1], p[q] = p[q - 1], cnt[q] = cnt[q - 1];
                q--;
            }
            if (q < max) t[q] = a, p[q] = b, cnt[q] = c;
        }
    return n;
}

static void html_escape(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else fputc(*s, f);
    }
}

static int write_curves(crun *runs, int nr, const char *out_dir)
{
    report_series s[2 * MAX_RUNS];
    double *xs[MAX_RUNS][2], *ys[MAX_RUNS][4];
    int rc = FERC_OK;
    for (int k = 0; k < nr; k++) {
        int n = runs[k].nhist;
        xs[k][0] = malloc((n + 1) * sizeof(double)), xs[k][1] = malloc((n + 1) * sizeof(double));
        for (int q = 0; q < 4; q++) ys[k][q] = malloc((n + 1) * sizeof(double));
        double t = 0;
        for (int i = 0; i < n; i++) {
            const trainer_epoch *e = &runs[k].hist[i];
            t += isfinite(e->seconds) ? e->seconds : 0;
            xs[k][0][i] = i + 1, xs[k][1][i] = t / 60;
            ys[k][0][i] = e->train_loss, ys[k][1][i] = e->val_loss, ys[k][2][i] = e->train_acc, ys[k][3][i] = e->val_acc;
        }
    }
    static const char *file[4] = {"loss_epoch.png", "accuracy_epoch.png", "loss_time.png", "accuracy_time.png"};
    static const char *title[4] = {"loss (dashed: training, solid: validation)", "accuracy (dashed: training, solid: validation)",
                                   "loss against training time", "accuracy against training time"};
    char names[2 * MAX_RUNS][200];
    for (int plot = 0; plot < 4 && !rc; plot++) {
        int ns = 0;
        for (int k = 0; k < nr; k++)
            for (int v = 0; v < 2; v++) {
                snprintf(names[ns], sizeof names[ns], "%s %s", runs[k].name, v ? "val" : "train");
                s[ns] = (report_series){names[ns], xs[k][plot >= 2], ys[k][(plot % 2) * 2 + v], runs[k].nhist, k, v == 0};
                ns++;
            }
        char path[1200];
        snprintf(path, sizeof path, "%s/%s", out_dir, file[plot]);
        rc = report_lines_png(path, title[plot], plot >= 2 ? "minutes of training" : "epoch", s, ns);
    }
    for (int k = 0; k < nr; k++) {
        free(xs[k][0]), free(xs[k][1]);
        for (int q = 0; q < 4; q++) free(ys[k][q]);
    }
    return rc;
}

/* McNemar of one pair of runs on the same images. */
typedef struct pair_stat {
    int a, b;
    int64_t only_a, only_b;  /* images only run a / only run b gets right */
    double statistic, p_chi2, p_exact;
} pair_stat;

static pair_stat pair_of(const crun *runs, int a, int b)
{
    pair_stat p = {a, b, 0, 0, 0, 0, 0};
    for (int64_t i = 0; i < runs[a].n; i++) {
        p.only_a += runs[a].correct[i] && !runs[b].correct[i];
        p.only_b += !runs[a].correct[i] && runs[b].correct[i];
    }
    compare_mcnemar(p.only_a, p.only_b, &p.statistic, &p.p_chi2, &p.p_exact);
    return p;
}

int compare_runs(const char *const *run_dirs, int nr, const char *out_dir, const compare_opts *o)
{
    compare_opts def;
    if (!o) compare_opts_default(&def), o = &def;
    if (nr < 1 || nr > MAX_RUNS) return ferc_set_error(FERC_ERR_INVALID, "compare: 1 to %d runs, not %d", MAX_RUNS, nr);
    crun *runs = calloc((size_t)nr, sizeof *runs);
    if (!runs) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    int rc = FERC_OK;
    for (int k = 0; k < nr && !rc; k++) rc = load_run(&runs[k], run_dirs[k]);
    /* the same images, the same labels, the same classes */
    for (int k = 1; k < nr && !rc; k++) {
        bool same = runs[k].n == runs[0].n && runs[k].K == runs[0].K;
        for (int c = 0; same && c < runs[0].K; c++) same = !strcmp(runs[k].classes[c], runs[0].classes[c]);
        for (int64_t i = 0; same && i < runs[0].n; i++)
            same = !strcmp(runs[k].paths[i], runs[0].paths[i]) && runs[k].labels[i] == runs[0].labels[i];
        if (!same)
            rc = ferc_set_error(FERC_ERR_INVALID, "%s and %s were validated on different images or classes (train them "
                                                  "with the same --split-manifest)", run_dirs[0], run_dirs[k]);
    }
    /* distinct names: the folder's, or arch + index when folders share a name */
    for (int k = 0; k < nr && !rc; k++)
        for (int j = 0; j < k; j++)
            if (!strcmp(runs[k].name, runs[j].name)) snprintf(runs[k].name, sizeof runs[k].name, "%s-%d", runs[k].arch, k + 1);
    if (!rc) rc = file_mkdirs(out_dir);
    for (int k = 0; k < nr && !rc; k++) {
        quality(&runs[k], o);
        cost(&runs[k], o);
        char path[1200];
        snprintf(path, sizeof path, "%s/confusion_%d.png", out_dir, k + 1);
        rc = report_confusion_png(path, runs[k].m.confusion, runs[k].K, (const char *const *)runs[k].classes);
    }
    if (!rc) rc = write_curves(runs, nr, out_dir);
    if (!rc) {
        const char *names[MAX_RUNS];
        double acc[MAX_RUNS * NBINS], conf[MAX_RUNS * NBINS];
        int64_t cnt[MAX_RUNS * NBINS];
        for (int k = 0; k < nr; k++) {
            names[k] = runs[k].name;
            memcpy(acc + k * NBINS, runs[k].bin_acc, sizeof runs[k].bin_acc);
            memcpy(conf + k * NBINS, runs[k].bin_conf, sizeof runs[k].bin_conf);
            memcpy(cnt + k * NBINS, runs[k].bin_n, sizeof runs[k].bin_n);
        }
        char path[1200];
        snprintf(path, sizeof path, "%s/reliability.png", out_dir);
        rc = report_reliability_png(path, names, acc, conf, cnt, nr, NBINS);
    }
    face_pick faces[NFACES];
    int nf = 0, *face_preds = NULL;
    bool models_all = true;
    for (int k = 0; k < nr; k++) models_all = models_all && runs[k].has_model;
    bool did_cam = false;
    if (!rc && o->gradcam && models_all) {
        nf = pick_faces(runs, nr, faces, o->seed);
        int grc = nf ? gradcams(runs, nr, o, out_dir, faces, nf, &face_preds) : FERC_OK;
        if (grc) {
            fprintf(stderr, "compare: no Grad-CAM pictures: %s\n", ferc_last_error());
            ferc_clear_error();
            nf = 0;
        } else {
            did_cam = nf > 0;
        }
    }

    /* compare.json */
    cJSON *j = cJSON_CreateObject(), *jr = cJSON_CreateArray(), *jp = cJSON_CreateArray();
    if (!rc) {
        cJSON_AddStringToObject(j, "title", o->title);
        cJSON_AddNumberToObject(j, "n_images", (double)runs[0].n);
        cJSON *cl = cJSON_CreateArray();
        for (int c = 0; c < runs[0].K; c++) cJSON_AddItemToArray(cl, cJSON_CreateString(runs[0].classes[c]));
        cJSON_AddItemToObject(j, "classes", cl);
        cJSON_AddNumberToObject(j, "bootstrap", o->bootstrap);
        for (int k = 0; k < nr; k++) {
            crun *r = &runs[k];
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "name", r->name);
            cJSON_AddStringToObject(e, "dir", r->dir);
            cJSON_AddStringToObject(e, "arch", r->arch);
            cJSON_AddNumberToObject(e, "img_size", r->img_size);
            cJSON_AddStringToObject(e, "precision", r->precision);
            cJSON_AddNumberToObject(e, "epochs", r->nhist);
            cJSON_AddNumberToObject(e, "best_epoch", r->best_epoch);
            add_ci(e, "accuracy", r->m.accuracy, r->ci[0]);
            add_ci(e, "balanced_accuracy", r->m.balanced_accuracy, r->ci[1]);
            add_ci(e, "macro_f1", r->m.macro_f1, r->ci[2]);
            cJSON_AddNumberToObject(e, "top2_accuracy", r->m.top2_accuracy);
            cJSON_AddNumberToObject(e, "ece", r->ece);
            cJSON *rel = cJSON_CreateArray();
            for (int b = 0; b < NBINS; b++) {
                cJSON *bb = cJSON_CreateObject();
                cJSON_AddNumberToObject(bb, "confidence", r->bin_conf[b]);
                cJSON_AddNumberToObject(bb, "accuracy", r->bin_acc[b]);
                cJSON_AddNumberToObject(bb, "count", (double)r->bin_n[b]);
                cJSON_AddItemToArray(rel, bb);
            }
            cJSON_AddItemToObject(e, "reliability", rel);
            cJSON *pc = cJSON_CreateArray();
            for (int c = 0; c < r->K; c++) {
                cJSON *q = cJSON_CreateObject();
                cJSON_AddStringToObject(q, "class", r->classes[c]);
                cJSON_AddNumberToObject(q, "precision", r->m.precision[c]);
                cJSON_AddNumberToObject(q, "recall", r->m.recall[c]);
                cJSON_AddNumberToObject(q, "f1", r->m.f1[c]);
                cJSON_AddNumberToObject(q, "support", (double)r->m.support[c]);
                cJSON_AddItemToArray(pc, q);
            }
            cJSON_AddItemToObject(e, "per_class", pc);
            cJSON *cm = cJSON_CreateArray();
            for (int a = 0; a < r->K; a++) {
                cJSON *rowj = cJSON_CreateArray();
                for (int b = 0; b < r->K; b++) cJSON_AddItemToArray(rowj, cJSON_CreateNumber((double)r->m.confusion[(size_t)a * r->K + b]));
                cJSON_AddItemToArray(cm, rowj);
            }
            cJSON_AddItemToObject(e, "confusion", cm);
            int t[5], p[5];
            int64_t cnt[5];
            int np = confused_pairs(r, t, p, cnt, 5);
            cJSON *cp = cJSON_CreateArray();
            for (int q = 0; q < np; q++) {
                cJSON *x = cJSON_CreateObject();
                cJSON_AddStringToObject(x, "true", r->classes[t[q]]);
                cJSON_AddStringToObject(x, "predicted", r->classes[p[q]]);
                cJSON_AddNumberToObject(x, "count", (double)cnt[q]);
                cJSON_AddItemToArray(cp, x);
            }
            cJSON_AddItemToObject(e, "confused_pairs", cp);
            cJSON *co = cJSON_CreateObject();
            add_num_or_null(co, "train_seconds", r->seconds);
            add_num_or_null(co, "images_per_s", r->ips);
            add_num_or_null(co, "peak_rss_mib", r->peak_mib);
            add_num_or_null(co, "parameters", r->params);
            add_num_or_null(co, "gflops", r->gflops);
            add_num_or_null(co, "file_mib", r->file_mib);
            add_num_or_null(co, "latency_b1_ms", r->lat_ms);
            add_num_or_null(co, "throughput_b64", r->thr_ips);
            cJSON_AddItemToObject(e, "cost", co);
            cJSON_AddItemToArray(jr, e);
        }
        for (int a = 0; a < nr; a++)
            for (int b = a + 1; b < nr; b++) {
                pair_stat ps = pair_of(runs, a, b);
                cJSON *la = o->list_discordant ? cJSON_CreateArray() : NULL, *lb = o->list_discordant ? cJSON_CreateArray() : NULL;
                for (int64_t i = 0; la && i < runs[a].n; i++) {
                    if (runs[a].correct[i] && !runs[b].correct[i]) cJSON_AddItemToArray(la, cJSON_CreateString(runs[a].paths[i]));
                    if (!runs[a].correct[i] && runs[b].correct[i]) cJSON_AddItemToArray(lb, cJSON_CreateString(runs[a].paths[i]));
                }
                cJSON *e = cJSON_CreateObject();
                cJSON_AddStringToObject(e, "a", runs[a].name);
                cJSON_AddStringToObject(e, "b", runs[b].name);
                cJSON_AddNumberToObject(e, "only_a_right", (double)ps.only_a);
                cJSON_AddNumberToObject(e, "only_b_right", (double)ps.only_b);
                cJSON_AddNumberToObject(e, "statistic", ps.statistic);
                cJSON_AddNumberToObject(e, "p_value", ps.p_chi2);
                cJSON_AddNumberToObject(e, "p_exact", ps.p_exact);
                if (la) cJSON_AddItemToObject(e, "only_a_right_paths", la);
                if (lb) cJSON_AddItemToObject(e, "only_b_right_paths", lb);
                cJSON_AddItemToArray(jp, e);
            }
        cJSON_AddItemToObject(j, "runs", jr);
        cJSON_AddItemToObject(j, "mcnemar", jp);
        cJSON *gf = cJSON_CreateArray();
        for (int f = 0; f < nf && did_cam; f++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "path", runs[0].paths[faces[f].idx]);
            cJSON_AddStringToObject(e, "label", runs[0].classes[runs[0].labels[faces[f].idx]]);
            cJSON_AddStringToObject(e, "category", faces[f].category);
            cJSON *pr = cJSON_CreateArray();
            for (int m = 0; m < nr; m++) cJSON_AddItemToArray(pr, cJSON_CreateString(runs[m].classes[face_preds[m * nf + f]]));
            cJSON_AddItemToObject(e, "predicted", pr);
            cJSON_AddItemToArray(gf, e);
        }
        cJSON_AddItemToObject(j, "gradcam", gf);
        cJSON *sn = cJSON_CreateObject();
        cJSON_AddNumberToObject(sn, "resnet152_accuracy", 0.534);
        cJSON_AddNumberToObject(sn, "densenet161_accuracy", 0.325);
        cJSON_AddItemToObject(j, "seed_notebook", sn);
    } else {
        cJSON_Delete(jr);
        cJSON_Delete(jp);
    }
    char *text = !rc ? cJSON_Print(j) : NULL;
    cJSON_Delete(j);
    if (!rc && !text) rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    char path[1200];
    if (!rc) {
        snprintf(path, sizeof path, "%s/compare.json", out_dir);
        rc = file_write_atomic(path, text, strlen(text));
    }
    free(text);

    /* index.html */
    char *html = NULL;
    size_t hlen = 0;
    FILE *f = !rc ? open_memstream(&html, &hlen) : NULL;
    if (!rc && !f) rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    if (f) {
        fprintf(f, "<!doctype html><html><head><meta charset=\"utf-8\"><title>");
        html_escape(f, o->title);
        fprintf(f, "</title><style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
                   "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
                   "th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%%}"
                   ".pair{display:flex;flex-wrap:wrap;gap:1em}figure{margin:0}figcaption{font-weight:bold;margin:.4em 0}"
                   "</style></head><body>\n<h1>");
        html_escape(f, o->title);
        fprintf(f, "</h1>\n");
        if (o->intro) fprintf(f, "%s\n", o->intro);
        fprintf(f, "<p>%lld validation images, the same for every model (%d classes); one pass of each run's best "
                   "model, as its training validated it. Intervals: 95%% bootstrap over the images (%d resamples).</p>\n",
                (long long)runs[0].n, runs[0].K, o->bootstrap);
        fprintf(f, "<h2>Quality</h2><table><tr><th>model</th><th>arch</th><th>input</th><th>precision</th><th>epochs</th>"
                   "<th>accuracy</th><th>balanced accuracy</th><th>macro F1</th><th>top-2</th><th>ECE</th></tr>\n");
        for (int k = 0; k < nr; k++) {
            crun *r = &runs[k];
            fprintf(f, "<tr><td>");
            html_escape(f, r->name);
            fprintf(f, "</td><td>%s</td><td>%dx%d</td><td>%s</td><td>%d (best %d)</td>"
                       "<td>%.2f%% [%.2f, %.2f]</td><td>%.2f%% [%.2f, %.2f]</td><td>%.3f [%.3f, %.3f]</td><td>%.2f%%</td>"
                       "<td>%.3f</td></tr>\n",
                    r->arch, r->img_size, r->img_size, r->precision, r->nhist, r->best_epoch, 100 * r->m.accuracy,
                    100 * r->ci[0][0], 100 * r->ci[0][1], 100 * r->m.balanced_accuracy, 100 * r->ci[1][0],
                    100 * r->ci[1][1], r->m.macro_f1, r->ci[2][0], r->ci[2][1], 100 * r->m.top2_accuracy, r->ece);
        }
        fprintf(f, "</table>\n");
        if (nr > 1) {
            fprintf(f, "<h3>McNemar's test, pair by pair</h3><p>On the same images: b = images only the first model "
                       "gets right, c = only the second. Statistic (|b - c| - 1)<sup>2</sup> / (b + c); a small p-value "
                       "says the two error rates differ.</p><table><tr><th>pair</th><th>b</th><th>c</th><th>statistic</th>"
                       "<th>p (chi-square)</th><th>p (exact)</th></tr>\n");
            for (int a = 0; a < nr; a++)
                for (int b = a + 1; b < nr; b++) {
                    pair_stat ps = pair_of(runs, a, b);
                    fprintf(f, "<tr><td>");
                    html_escape(f, runs[a].name);
                    fprintf(f, " vs ");
                    html_escape(f, runs[b].name);
                    fprintf(f, "</td><td>%lld</td><td>%lld</td><td>%.2f</td><td>%.3g</td><td>%.3g</td></tr>\n",
                            (long long)ps.only_a, (long long)ps.only_b, ps.statistic, ps.p_chi2, ps.p_exact);
                }
            fprintf(f, "</table>\n");
        }
        fprintf(f, "<h3>Per class</h3><table><tr><th>class</th>");
        for (int k = 0; k < nr; k++) {
            fprintf(f, "<th colspan=3>");
            html_escape(f, runs[k].name);
            fprintf(f, " (P / R / F1)</th>");
        }
        fprintf(f, "<th>support</th></tr>\n");
        for (int c = 0; c < runs[0].K; c++) {
            fprintf(f, "<tr><td>");
            html_escape(f, runs[0].classes[c]);
            fprintf(f, "</td>");
            for (int k = 0; k < nr; k++)
                fprintf(f, "<td>%.3f</td><td>%.3f</td><td>%.3f</td>", runs[k].m.precision[c], runs[k].m.recall[c], runs[k].m.f1[c]);
            fprintf(f, "<td>%lld</td></tr>\n", (long long)runs[0].m.support[c]);
        }
        fprintf(f, "</table>\n<h3>Confusion matrices</h3><div class=pair>");
        for (int k = 0; k < nr; k++) {
            fprintf(f, "<figure><figcaption>");
            html_escape(f, runs[k].name);
            fprintf(f, "</figcaption><img src=\"confusion_%d.png\"></figure>", k + 1);
        }
        fprintf(f, "</div>\n<h3>Most confused pairs (true &rarr; predicted)</h3><table><tr><th>model</th><th>pairs</th></tr>\n");
        for (int k = 0; k < nr; k++) {
            int t[5], p[5];
            int64_t cnt[5];
            int np = confused_pairs(&runs[k], t, p, cnt, 5);
            fprintf(f, "<tr><td>");
            html_escape(f, runs[k].name);
            fprintf(f, "</td><td style=\"text-align:left\">");
            for (int q = 0; q < np; q++) {
                html_escape(f, runs[k].classes[t[q]]);
                fprintf(f, " &rarr; ");
                html_escape(f, runs[k].classes[p[q]]);
                fprintf(f, " %lld%s", (long long)cnt[q], q + 1 < np ? "; " : "");
            }
            fprintf(f, "</td></tr>\n");
        }
        fprintf(f, "</table>\n<h3>Calibration</h3><p>Expected calibration error over 10 confidence bins: the gap between "
                   "how sure a model is and how often it is right, weighted by the images in each bin.</p>"
                   "<img src=\"reliability.png\">\n");
        fprintf(f, "<h2>Learning curves</h2><div class=pair><img src=\"loss_epoch.png\"><img src=\"accuracy_epoch.png\">"
                   "<img src=\"loss_time.png\"><img src=\"accuracy_time.png\"></div>\n");
        fprintf(f, "<h2>Cost</h2><table><tr><th>model</th><th>training time</th><th>images/s (training)</th>"
                   "<th>peak memory (training)</th><th>parameters</th><th>GFLOP / image</th><th>model file</th>"
                   "<th>latency, batch 1</th><th>throughput, batch 64</th></tr>\n");
        for (int k = 0; k < nr; k++) {
            crun *r = &runs[k];
            fprintf(f, "<tr><td>");
            html_escape(f, r->name);
            fprintf(f, "</td><td>%.1f min</td><td>%.1f</td><td>%.0f MiB</td><td>%.2f M</td><td>%.3f</td><td>%.1f MiB</td>",
                    r->seconds / 60, r->ips, r->peak_mib, r->params / 1e6, r->gflops, r->file_mib);
            if (isfinite(r->lat_ms)) fprintf(f, "<td>%.2f ms</td><td>%.0f images/s</td></tr>\n", r->lat_ms, r->thr_ips);
            else fprintf(f, "<td>-</td><td>-</td></tr>\n");
        }
        fprintf(f, "</table><p>Latency and throughput: float32 inference measured when this report was written, %d "
                   "threads.</p>\n", o->threads);
        if (did_cam)
            fprintf(f, "<h2>Grad-CAM</h2><p>The same %d validation faces for every model: some all models get right, "
                       "some they disagree on, some all get wrong. The heat map is the evidence of the last "
                       "convolutional stage for the predicted class, from ferc's own backward pass; that stage's "
                       "size (in brackets) is the map's true resolution: torchvision's networks divide the input "
                       "by 32, so small faces give coarse maps.</p>"
                       "<img src=\"gradcam.png\">\n", nf);
        fprintf(f, "<h2>The seed notebook</h2><table><tr><th>model</th><th>seed notebook</th><th>here</th></tr>\n");
        for (int k = 0; k < nr; k++) {
            const char *seed = !strcmp(runs[k].arch, "resnet152") ? "53.4%" : !strcmp(runs[k].arch, "densenet161") ? "32.5%" : "-";
            fprintf(f, "<tr><td>");
            html_escape(f, runs[k].name);
            fprintf(f, "</td><td>%s</td><td>%.1f%%</td></tr>\n", seed, 100 * runs[k].m.accuracy);
        }
        fprintf(f, "</table><ul>"
                   "<li>The notebook chose its epoch on the test set; here a seeded, stratified validation split of the "
                   "training data does that, and the test set is never used.</li>"
                   "<li>It normalized with CIFAR-10's statistics; here the training rows' own.</li>"
                   "<li>Its DenseNet161 kept the 1,000-way ImageNet head: the new head was assigned to an attribute "
                   "DenseNet's forward pass never calls. Here every model's head has one output per class.</li>"
                   "<li>It froze nothing although it spoke of transfer learning; here a frozen-backbone phase with "
                   "cached features comes first when ImageNet weights are given.</li>"
                   "<li>It compared the two models by prose and two loss plots; here by the figures above, on the "
                   "same images, with intervals and a paired test.</li></ul>\n</body></html>\n");
        fclose(f);
        snprintf(path, sizeof path, "%s/index.html", out_dir);
        rc = file_write_atomic(path, html, hlen);
        free(html);
    }
    free(face_preds);
    for (int k = 0; k < nr; k++) crun_free(&runs[k]);
    free(runs);
    return rc;
}
