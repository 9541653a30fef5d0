/* Planned memory against the measured peak: `ferc info --json` plans a network for training and
 * inference without allocating anything and predicts the peak resident memory of a process
 * running the plans (its own code and libraries + weights + gradients + optimizer state + the
 * plan's buffers); `ferc bench` runs them and reports the peak it reached (getrusage). The two
 * must agree within 15%, for a ResNet and a DenseNet (concatenations: the most buffers), in
 * float32 and bf16. Also: liveness sharing really shrinks the plans (against the same plans
 * with every buffer their own, NN_EXEC_NO_SHARING). Under AddressSanitizer, whose shadow
 * memory is no plan's, only the sharing half runs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "models/models.h"
#include "nn/nn.h"
#include "testutil.h"

#if !defined(__SANITIZE_ADDRESS__)
static double json_num(const char *text, const char *key)
{
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *p = text ? strstr(text, k) : NULL;
    return p ? atof(p + strlen(k)) : -1;
}

static void compare(const char *bin, const char *arch, int img, int batch, const char *precision)
{
    char cmd[512], *info = NULL, *train = NULL, *infer = NULL;
    snprintf(cmd, sizeof cmd, "'%s' info --arch %s --classes 6 --img-size %d --batch %d --optimizer sgd --precision %s --json",
             bin, arch, img, batch, precision);
    CHECK(test_capture(cmd, &info) == 0, "%s", cmd);
    snprintf(cmd, sizeof cmd, "'%s' bench --arch %s --img-size %d --batch %d --mode train --steps 2 --warmup 1 --threads 2 "
             "--precision %s --json", bin, arch, img, batch, precision);
    CHECK(test_capture(cmd, &train) == 0, "%s", cmd);
    snprintf(cmd, sizeof cmd, "'%s' bench --arch %s --img-size %d --batch %d --mode infer --steps 2 --warmup 1 --threads 2 "
             "--precision %s --json", bin, arch, img, batch, precision);
    CHECK(test_capture(cmd, &infer) == 0, "%s", cmd);
    double pt = json_num(info, "train_peak_mib"), pi = json_num(info, "infer_peak_mib");
    double mt = json_num(train, "peak_rss_mib"), mi = json_num(infer, "peak_rss_mib");
    printf("%s %dx%d batch %d %s: training planned %.0f MiB, measured %.0f (%+.1f%%); inference planned %.0f, "
           "measured %.0f (%+.1f%%)\n", arch, img, img, batch, precision, pt, mt, 100 * (pt - mt) / mt, pi, mi,
           100 * (pi - mi) / mi);
    CHECK(pt > 0 && mt > 0 && pt > 0.85 * mt && pt < 1.15 * mt, "%s training: planned %.0f MiB, measured %.0f", arch, pt, mt);
    CHECK(pi > 0 && mi > 0 && pi > 0.85 * mi && pi < 1.15 * mi, "%s inference: planned %.0f MiB, measured %.0f", arch, pi, mi);
    free(info);
    free(train);
    free(infer);
}

#endif

/* The plans share: each needs much less than the same plan with every buffer its own. */
static void sharing(const char *arch, int img, int batch)
{
    nn_graph *g = NULL;
    CHECK_OK(models_create(&g, arch, 6));
    if (!g) return;
    double bytes[2][2]; /* [training][sharing] */
    for (int t = 0; t < 2; t++)
        for (int sh = 0; sh < 2; sh++) {
            nn_exec *ex = NULL;
            unsigned flags = NN_EXEC_DRY_RUN | (t ? NN_EXEC_TRAINING : 0) | (sh ? 0 : NN_EXEC_NO_SHARING);
            CHECK_OK(nn_exec_create(&ex, g, NULL, batch, 3, img, img, flags));
            bytes[t][sh] = ex ? (double)nn_exec_planned_bytes(ex) / 1048576 : 0;
            if (ex && t) CHECK(nn_exec_forward(ex, NULL, false, NULL) == FERC_ERR_INVALID, "a dry-run plan ran");
            nn_exec_destroy(ex);
        }
    printf("%s %dx%d batch %d: inference plan %.0f MiB (%.0f without sharing), training plan %.0f MiB (%.0f)\n", arch,
           img, img, batch, bytes[0][1], bytes[0][0], bytes[1][1], bytes[1][0]);
    CHECK(bytes[0][1] < 0.7 * bytes[0][0], "%s: sharing saves too little in inference", arch);
    CHECK(bytes[1][1] < 0.8 * bytes[1][0], "%s: sharing saves too little in training", arch);
    nn_graph_destroy(g);
}

int main(void)
{
    sharing("resnet18", 48, 64);
    sharing("densenet121", 48, 32);
#if defined(__SANITIZE_ADDRESS__)
    printf("AddressSanitizer's shadow memory makes resident memory no plan's: the measured half is skipped\n");
#else
    const char *bin = getenv("FERC_BIN");
    if (!bin) return test_skip("FERC_BIN is not set (run through ctest): the measured half is skipped");
    compare(bin, "resnet18", 48, 64, "fp32");
    compare(bin, "densenet121", 48, 32, "fp32");
    compare(bin, "resnet18", 48, 64, "bf16");
#endif
    return test_finish("test_memory");
}
