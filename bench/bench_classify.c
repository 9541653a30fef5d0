/* bench_classify: the cost of classifying one face on the default prediction path, through the
 * public API (ferc_classify: resize to the model's input, normalize, the network on every TTA
 * view, probabilities averaged), one face at a time, as the camera and `ferc predict` do.
 *
 * usage: bench_classify [--model M] [--face IMAGE] [--threads T] [--runs N] [--json]
 *   --model   default: the shipped default model (ferc_default_model_path)
 *   --face    a face crop (default: a generated 96x96 gray face-sized patch, about the size of a
 *             face in a 640x480 camera frame; it is resized to the model's input like any crop)
 *   --threads OpenMP threads (default 2)
 *   --runs    timed calls per TTA mode after 5 warm-up calls (default 200)
 * Prints, for each TTA (none, flip = the default, tencrop), the median, 10th and 90th percentile
 * milliseconds per face. bench/bench_classify.py runs it beside PyTorch doing the same work. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "ferc.h"

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    const char *model = NULL, *face = NULL;
    int threads = 2, runs = 200, json = 0;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--model") && v) model = v, i++;
        else if (!strcmp(argv[i], "--face") && v) face = v, i++;
        else if (!strcmp(argv[i], "--threads") && v) threads = atoi(v), i++;
        else if (!strcmp(argv[i], "--runs") && v) runs = atoi(v), i++;
        else {
            fprintf(stderr, "usage: bench_classify [--model M] [--face IMAGE] [--threads T] [--runs N] [--json]\n");
            return 2;
        }
    }
    if (threads < 1 || runs < 1) {
        fprintf(stderr, "bench_classify: --threads and --runs must be positive\n");
        return 2;
    }
    omp_set_num_threads(threads);
    ferc_recognizer *r = NULL;
    if (ferc_recognizer_create(&r, model, NULL)) {
        fprintf(stderr, "bench_classify: %s\n", ferc_last_error());
        return 1;
    }
    ferc_image img = {0};
    uint8_t ramp[96 * 96];
    if (face) {
        if (ferc_image_load(&img, face)) {
            fprintf(stderr, "bench_classify: %s\n", ferc_last_error());
            ferc_recognizer_destroy(r);
            return 1;
        }
    } else {
        for (int i = 0; i < 96 * 96; i++) ramp[i] = (uint8_t)((i % 96) * 2 + (i / 96));
        img = (ferc_image){96, 96, 1, 96, ramp};
    }
    static const char *names[3] = {"none", "flip", "tencrop"};
    double med[3], p10[3], p90[3];
    double *t = malloc(sizeof *t * (size_t)runs);
    int rc = t ? 0 : 1;
    for (int m = 0; m < 3 && !rc; m++) {
        ferc_face f;
        if (ferc_recognizer_set_tta(r, (ferc_tta)m)) rc = 1;
        for (int i = 0; i < 5 + runs && !rc; i++) {
            double t0 = time_now();
            if (ferc_classify(r, &img, &f)) rc = 1;
            if (i >= 5) t[i - 5] = 1e3 * (time_now() - t0);
        }
        if (rc) break;
        qsort(t, (size_t)runs, sizeof *t, cmp_d);
        med[m] = t[runs / 2], p10[m] = t[runs / 10], p90[m] = t[runs * 9 / 10];
    }
    if (rc) fprintf(stderr, "bench_classify: %s\n", t ? ferc_last_error() : "out of memory");
    else if (json) {
        printf("{\"model\":\"%s\",\"face\":\"%s\",\"threads\":%d,\"runs\":%d", model ? model : ferc_default_model_path(),
               face ? face : "(generated)", threads, runs);
        for (int m = 0; m < 3; m++) printf(",\"%s_ms\":%.4f,\"%s_p10_ms\":%.4f,\"%s_p90_ms\":%.4f", names[m], med[m], names[m], p10[m], names[m], p90[m]);
        printf("}\n");
    } else {
        printf("one face (%dx%d %s) through ferc_classify, %d threads, %d calls each:\n", img.width, img.height,
               face ? face : "generated", threads, runs);
        for (int m = 0; m < 3; m++)
            printf("  tta %-8s median %7.3f ms  (p10 %.3f, p90 %.3f)%s\n", names[m], med[m], p10[m], p90[m],
                   m == 1 ? "   <- the default path" : "");
    }
    free(t);
    if (face) ferc_image_free(&img);
    ferc_recognizer_destroy(r);
    return rc;
}
