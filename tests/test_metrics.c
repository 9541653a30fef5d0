/* metrics: exact values on a hand-made confusion matrix (checked by hand and against
 * sklearn's definitions), top-2 from scores, and the JSON form. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ferc.h"
#include "testutil.h"
#include "train/metrics.h"

static void add_counts(metrics *m, const int *conf, int k)
{
    for (int t = 0; t < k; t++)
        for (int p = 0; p < k; p++)
            for (int c = 0; c < conf[t * k + p]; c++) metrics_add(m, t, p, t == p);
}

#define NEAR(a, b) (fabs((a) - (b)) < 1e-12)

int main(void)
{
    /* true \ pred:  5 1 0 / 2 3 1 / 0 0 4, plus an unused 4th class. */
    const int conf[16] = {5, 1, 0, 0, 2, 3, 1, 0, 0, 0, 4, 0, 0, 0, 0, 0};
    metrics m;
    CHECK_OK(metrics_init(&m, 4));
    add_counts(&m, conf, 4);
    metrics_finalize(&m);
    CHECK(m.n == 16);
    CHECK(NEAR(m.accuracy, 12.0 / 16), "%g", m.accuracy);
    CHECK(NEAR(m.precision[0], 5.0 / 7) && NEAR(m.precision[1], 0.75) && NEAR(m.precision[2], 0.8));
    CHECK(NEAR(m.recall[0], 5.0 / 6) && NEAR(m.recall[1], 0.5) && NEAR(m.recall[2], 1.0));
    CHECK(NEAR(m.f1[0], 10.0 / 13) && NEAR(m.f1[1], 0.6) && NEAR(m.f1[2], 8.0 / 9), "%g %g %g", m.f1[0], m.f1[1], m.f1[2]);
    CHECK(m.support[0] == 6 && m.support[1] == 6 && m.support[2] == 4 && m.support[3] == 0);
    CHECK(m.precision[3] == 0 && m.recall[3] == 0 && m.f1[3] == 0);
    /* Class 3 has neither samples nor predictions: left out of both means (sklearn). */
    CHECK(NEAR(m.balanced_accuracy, 7.0 / 9), "%g", m.balanced_accuracy);
    CHECK(NEAR(m.macro_f1, (10.0 / 13 + 0.6 + 8.0 / 9) / 3), "%g", m.macro_f1);
    CHECK(NEAR(m.top2_accuracy, 12.0 / 16));

    /* A wrong prediction of class 3 (no samples): counts in macro F1 (f1 0), not in balanced. */
    metrics_add(&m, 2, 3, true);
    metrics_finalize(&m);
    CHECK(NEAR(m.balanced_accuracy, (5.0 / 6 + 0.5 + 0.8) / 3), "%g", m.balanced_accuracy);
    CHECK(NEAR(m.macro_f1, (10.0 / 13 + 0.6 + 0.8 + 0) / 4), "%g", m.macro_f1);
    CHECK(NEAR(m.top2_accuracy, 13.0 / 17));

    char *json = NULL;
    const char *names[4] = {"Angry", "Fear", "Happy", "Sad"};
    CHECK_OK(metrics_to_json(&m, names, &json));
    CHECK(json && strstr(json, "\"balanced_accuracy\":") && strstr(json, "\"per_class\":[{\"class\":\"Angry\"") &&
              strstr(json, "\"confusion\":[[5,1,0,0],[2,3,1,0],[0,0,4,1],[0,0,0,0]]"),
          "%s", json ? json : "(null)");
    free(json);

    /* Scores: argmax with ties to the lowest index, top-2 from the runner-up. */
    metrics_reset(&m);
    const float s[12] = {0.1f, 0.5f, 0.3f, 0.1f,   /* label 2: pred 1, 2nd is 2 -> top2 hit */
                         0.4f, 0.4f, 0.1f, 0.1f,   /* label 0: tie -> pred 0 */
                         0.1f, 0.2f, 0.3f, 0.4f};  /* label 0: pred 3, 2nd 2 -> miss */
    const int32_t y[3] = {2, 0, 0};
    metrics_add_scores(&m, s, y, 3);
    metrics_finalize(&m);
    CHECK(m.confusion[2 * 4 + 1] == 1 && m.confusion[0] == 1 && m.confusion[3] == 1);
    CHECK(NEAR(m.accuracy, 1.0 / 3) && NEAR(m.top2_accuracy, 2.0 / 3), "%g %g", m.accuracy, m.top2_accuracy);
    metrics_free(&m);
    return test_finish("metrics");
}
