/* metrics: classification metrics from a confusion matrix (sklearn's definitions).
 *
 * Rows of the confusion matrix are true labels, columns predicted labels:
 * confusion[true * k + pred]. Definitions, for k classes:
 *   accuracy           trace / n
 *   precision_c        C[c][c] / column sum (0 when nothing was predicted as c)
 *   recall_c           C[c][c] / row sum    (0 when c has no samples)
 *   f1_c               2 P R / (P + R)      (0 when P + R == 0)
 *   balanced_accuracy  mean recall over the classes that have samples
 *                      (sklearn balanced_accuracy_score)
 *   macro_f1           mean f1 over the classes present in the true OR the predicted labels
 *                      (sklearn f1_score(average="macro") with its default labels)
 *   top2_accuracy      fraction of samples whose true class is among the 2 highest scores
 *
 * Usage:
 *     metrics m;  metrics_init(&m, k);
 *     metrics_add_scores(&m, probs, labels, n);   // per batch
 *     metrics_finalize(&m);  ... m.accuracy, m.f1[c] ...
 *     metrics_free(&m);
 */
#ifndef FERC_TRAIN_METRICS_H
#define FERC_TRAIN_METRICS_H

#include <stdbool.h>
#include <stdint.h>

typedef struct metrics {
    int k;
    int64_t *confusion;          /* (k, k): [true][pred] */
    int64_t n, top2_hits;
    /* Filled by metrics_finalize. */
    double *precision, *recall, *f1; /* (k) each */
    int64_t *support;            /* (k) samples per true class */
    double accuracy, balanced_accuracy, macro_f1, top2_accuracy;
} metrics;

int  metrics_init(metrics *m, int k);
void metrics_free(metrics *m);
void metrics_reset(metrics *m);
/* One sample with its prediction; top2_hit says whether the label is among the top two. */
void metrics_add(metrics *m, int label, int pred, bool top2_hit);
/* A batch of scores (n, k) (logits or probabilities): argmax is the prediction (the lowest
 * index wins ties), top-2 from the two highest scores. */
void metrics_add_scores(metrics *m, const float *scores, const int32_t *labels, int n);
/* Computes every derived figure from the counts. */
void metrics_finalize(metrics *m);
/* Index of the largest of k scores (lowest index on ties). */
int  metrics_argmax(const float *scores, int k);

/* A cJSON-built JSON object text {"accuracy", "balanced_accuracy", "macro_f1",
 * "top2_accuracy", "n", "per_class": [{"class", "precision", "recall", "f1", "support"}...],
 * "confusion": [[...]...], "classes": [...]}; names may be NULL ("0", "1", ...).
 * The caller frees *json with free(). */
int  metrics_to_json(const metrics *m, const char *const *names, char **json);

#endif
