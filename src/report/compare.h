/* compare: several training runs, evaluated on the same validation images, compared point by
 * point (what `ferc compare` and `ferc study` write).
 *
 * A run folder is what `ferc train` writes: config.json, metrics.jsonl, summary.json,
 * val_predictions.csv (every validation image with the best model's probabilities, one pass)
 * and, when present, best.safetensors. compare_runs reads them, checks that every run scored
 * the same images with the same labels, and writes OUT/compare.json and a self-contained
 * OUT/index.html with its PNG pictures beside it:
 *
 *   - quality: accuracy, balanced accuracy and macro F1 with 95% bootstrap intervals (1,000
 *     resamples of the images, percentile method, seeded); McNemar's test for every pair (b =
 *     images only the first gets right, c = only the second; statistic (|b - c| - 1)^2 / (b + c),
 *     chi-square p-value, and the exact binomial one); per-class precision, recall, F1; the
 *     confusion matrices; the most confused class pairs; calibration (reliability diagram over
 *     10 confidence bins and the expected calibration error);
 *   - learning curves overlaid, against epoch and against wall-clock time;
 *   - cost: training wall time, images/s, peak memory, parameters, FLOPs, model file size, and
 *     (with bench) inference latency at batch 1 and throughput at batch 64, measured now;
 *   - Grad-CAM heat maps of the same 12 validation faces for every model (4 that all get right,
 *     4 they disagree on, 4 all get wrong), when the models are present;
 *   - the seed notebook's figures beside these, and what the notebook did wrong.
 *
 *     compare_opts o;
 *     compare_opts_default(&o);
 *     const char *runs[2] = {"study/resnet152", "study/densenet161"};
 *     if (compare_runs(runs, 2, "study/report", &o)) fail(ferc_last_error());
 */
#ifndef FERC_REPORT_COMPARE_H
#define FERC_REPORT_COMPARE_H

#include <stdbool.h>
#include <stdint.h>

typedef struct compare_opts {
    int bootstrap;          /* resamples (default 1000) */
    uint64_t seed;          /* bootstrap and face choice (default 1) */
    bool bench;             /* time the models now (default true) */
    bool gradcam;           /* heat maps (default true; needs the models and the images) */
    const char *data_root;  /* where the images are; NULL: each run's config.json "data_abs" */
    const char *title;      /* the report's heading (default "Model comparison") */
    const char *intro;      /* HTML placed first (ferc study says how the runs were trained) */
    int threads;            /* for the timing (default 2) */
    /* test hook: also write each pair's discordant image lists into compare.json */
    bool list_discordant;
} compare_opts;

void compare_opts_default(compare_opts *o);
int compare_runs(const char *const *run_dirs, int nruns, const char *out_dir, const compare_opts *o);

/* The statistics, exposed for tests. */
/* McNemar on b and c discordant counts: chi-square statistic with continuity correction (0
 * when b + c == 0), its p-value, and the exact two-sided binomial p-value. */
void compare_mcnemar(int64_t b, int64_t c, double *statistic, double *p_chi2, double *p_exact);
/* Expected calibration error over nbins equal-width confidence bins; per bin (may be NULL)
 * accuracy, mean confidence and count. correct[i] is 0/1, conf[i] in [0, 1]. */
double compare_ece(const float *conf, const uint8_t *correct, int64_t n, int nbins, double *bin_acc, double *bin_conf,
                   int64_t *bin_count);

#endif
