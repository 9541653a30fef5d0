/* The CNN face detector (face/blazeface): ferc's network against TensorFlow.js's raw outputs
 * (tests/fixtures/detectors/blazeface_parity.safetensors, tools/gen_blazeface_fixture.py) on a
 * letterboxed photo and on a pseudo-random input; the anchors and the weighted NMS against
 * hand-computed cases; the detection of the committed photo; bad files. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ferc.h"
#include "core/core.h"
#include "face/blazeface.h"
#include "io/safetensors.h"
#include "testutil.h"

#define FIXTURE "tests/fixtures/detectors/blazeface_parity.safetensors"
#define PHOTO "tests/fixtures/faces/Tom_Cruise_avp_2014_4.jpg"
#define S BLAZEFACE_SIZE

/* Relative to the largest reference value, and absolute where |ref| <= 10 (where scores are
 * decided). On the letterboxed photo the black border drives activations and some logits to
 * thousands (-6550), where float32's own spacing is 5e-4 and two libraries summing in another
 * order differ by ~1e-4 even near zero; the pseudo-random input stays within 1e-4. */
static void compare(const char *what, const float *got, const float *want, size_t n, double abs_tol, double rel_tol)
{
    double mabs = 0, mref = 0, mabs_small = 0;
    for (size_t i = 0; i < n; i++) {
        const double e = fabs((double)got[i] - want[i]);
        mabs = fmax(mabs, e);
        mref = fmax(mref, fabs((double)want[i]));
        if (fabs((double)want[i]) <= 10) mabs_small = fmax(mabs_small, e);
    }
    const double rel = mabs / fmax(mref, 1e-12);
    printf("  %-28s max abs err %.3g where |ref| <= 10, %.3g overall; relative to max |ref| %.3g: %.3g\n", what,
           mabs_small, mabs, mref, rel);
    CHECK(mabs_small <= abs_tol && rel <= rel_tol, "%s: max abs err %g (tol %g), rel %g (tol %g)", what, mabs_small,
          abs_tol, rel, rel_tol);
}

static void test_parity(blazeface *bf)
{
    st_file f;
    if (st_read(&f, FIXTURE)) {
        CHECK(0, "%s: %s", FIXTURE, ferc_last_error());
        return;
    }
    float *x = malloc(sizeof(float) * 3 * S * S), *logits = malloc(sizeof(float) * BLAZEFACE_ANCHORS),
          *regs = malloc(sizeof(float) * BLAZEFACE_ANCHORS * BLAZEFACE_REGS);
    const st_tensor *rgb = st_find(&f, "photo.rgb");
    CHECK(rgb && rgb->dtype == ST_U8 && st_numel(rgb) == (size_t)S * S * 3, "photo.rgb");
    for (int pass = 0; rgb && pass < 2; pass++) {
        const char *tag = pass ? "noise" : "photo";
        if (!pass) {
            for (int c = 0; c < 3; c++)
                for (int i = 0; i < S * S; i++) x[c * S * S + i] = (float)((double)rgb->data[3 * i + c] / 127.5 - 1.0);
        } else {
            unsigned long long v = 12345; /* the fixture script's LCG, NHWC order */
            for (int i = 0; i < S * S; i++)
                for (int c = 0; c < 3; c++) {
                    v = (1103515245ull * v + 12345ull) & 0x7FFFFFFFull;
                    x[c * S * S + i] = (float)((double)v / 0x7FFFFFFF * 2 - 1);
                }
        }
        CHECK_OK(blazeface_run(bf, x, logits, regs));
        char key[64], what[64];
        snprintf(key, sizeof key, "%s.logits", tag);
        snprintf(what, sizeof what, "%s: score logits", tag);
        const double abs_tol = pass ? 1e-4 : 1e-3;
        compare(what, logits, fx_f32(&f, key, BLAZEFACE_ANCHORS), BLAZEFACE_ANCHORS, abs_tol, 1e-5);
        snprintf(key, sizeof key, "%s.regs", tag);
        snprintf(what, sizeof what, "%s: box regressions", tag);
        compare(what, regs, fx_f32(&f, key, BLAZEFACE_ANCHORS * BLAZEFACE_REGS), (size_t)BLAZEFACE_ANCHORS * BLAZEFACE_REGS,
                abs_tol, 1e-5);
    }
    free(x), free(logits), free(regs);
    st_close(&f);
}

static void test_anchors(void)
{
    float a[BLAZEFACE_ANCHORS * 2];
    blazeface_anchors(a);
    /* 16x16 grid of stride 16, 2 per cell, then 8x8 of stride 32, 6 per cell; (y, x, anchor) */
    static const struct { int i; float x, y; } want[] = {
        {0, 8, 8}, {1, 8, 8}, {2, 24, 8}, {31, 248, 8}, {32, 8, 24}, {511, 248, 248},
        {512, 16, 16}, {517, 16, 16}, {518, 48, 16}, {895, 240, 240},
    };
    for (size_t k = 0; k < sizeof want / sizeof *want; k++)
        CHECK(a[2 * want[k].i] == want[k].x && a[2 * want[k].i + 1] == want[k].y, "anchor %d: (%g, %g), want (%g, %g)",
              want[k].i, a[2 * want[k].i], a[2 * want[k].i + 1], want[k].x, want[k].y);
}

/* logit of probability p */
static float logit(double p) { return (float)log(p / (1 - p)); }

static void test_decode_nms(void)
{
    enum { N = 5 };
    const float anchors[2 * N] = {100, 100, 100, 100, 200, 50, 30, 30, 100, 104};
    float logits[N], regs[N * BLAZEFACE_REGS] = {0};
    /* 0: box centre (100, 100) 40x40, score 0.9; 1: centre (104, 100) 40x40, 0.6 (IoU with 0:
     * 36*40 / (2*1600 - 1440) = 0.818 -> merged); 2: (200, 50) 20x20, 0.8 (apart: kept);
     * 3: 0.3 (under min_score 0.5: dropped); 4: centre (100, 104) 40x40 but 0.55, merged too */
    const double p[N] = {0.9, 0.6, 0.8, 0.3, 0.55};
    const float dxy[N][2] = {{0, 0}, {4, 0}, {0, 0}, {0, 0}, {0, 0}}, wh[N] = {40, 40, 20, 10, 40};
    for (int i = 0; i < N; i++) {
        logits[i] = logit(p[i]);
        float *r = regs + i * BLAZEFACE_REGS;
        r[0] = dxy[i][0], r[1] = dxy[i][1], r[2] = r[3] = wh[i];
        r[4] = -10, r[5] = -5; /* right eye 10 px left of and 5 above the anchor */
    }
    blazeface_params bp;
    blazeface_params_default(&bp);
    blazeface_det *d = NULL;
    int n = 0;
    CHECK_OK(blazeface_decode(logits, regs, anchors, N, &bp, &d, &n));
    CHECK(n == 2, "2 faces after NMS, got %d", n);
    if (n == 2) {
        /* merged: weights 0.9, 0.6, 0.55 of x0 80, 84, 80 -> (72 + 50.4 + 44) / 2.05 */
        const double w = 0.9 + 0.6 + 0.55;
        const double x0 = (0.9 * 80 + 0.6 * 84 + 0.55 * 80) / w, y0 = (0.9 * 80 + 0.6 * 80 + 0.55 * 84) / w;
        const double kx = (0.9 * 90 + 0.6 * 90 + 0.55 * 90) / w, ky = (0.9 * 95 + 0.6 * 95 + 0.55 * 99) / w;
        CHECK(fabs(d[0].score - 0.9) < 1e-6, "best first, its own score: %g", d[0].score);
        CHECK(fabs(d[0].x0 - x0) < 1e-4 && fabs(d[0].y0 - y0) < 1e-4 && fabs(d[0].x1 - (x0 + 40)) < 1e-4 &&
                  fabs(d[0].y1 - (y0 + 40)) < 1e-4,
              "weighted box: (%g %g %g %g), want (%g %g %g %g)", d[0].x0, d[0].y0, d[0].x1, d[0].y1, x0, y0, x0 + 40, y0 + 40);
        CHECK(fabs(d[0].kp[0][0] - kx) < 1e-4 && fabs(d[0].kp[0][1] - ky) < 1e-4, "weighted keypoint (%g, %g), want (%g, %g)",
              d[0].kp[0][0], d[0].kp[0][1], kx, ky);
        CHECK(fabs(d[1].score - 0.8) < 1e-6 && d[1].x0 == 190 && d[1].y0 == 40 && d[1].x1 == 210 && d[1].y1 == 60,
              "the separate face: %g (%g %g %g %g)", d[1].score, d[1].x0, d[1].y0, d[1].x1, d[1].y1);
    }
    free(d);
    /* a threshold that merges nothing; max_faces cuts */
    bp.iou_threshold = 0.9f;
    bp.max_faces = 2;
    CHECK_OK(blazeface_decode(logits, regs, anchors, N, &bp, &d, &n));
    CHECK(n == 2 && d && fabs(d[0].score - 0.9) < 1e-6 && fabs(d[1].score - 0.8) < 1e-6, "max_faces 2 of 4: %d", n);
    free(d);
    bp.min_score = 0.95f;
    CHECK_OK(blazeface_decode(logits, regs, anchors, N, &bp, &d, &n));
    CHECK(n == 0 && !d, "nothing over 0.95");
    /* extreme logits do not overflow */
    float big[2] = {1e30f, -1e30f};
    bp.min_score = 0.5f;
    CHECK_OK(blazeface_decode(big, regs, anchors, 2, &bp, &d, &n));
    CHECK(n == 1 && d && d[0].score == 1.0f, "clamped logit: %d", n);
    free(d);
}

static void test_photo(blazeface *bf)
{
    image img;
    CHECK_OK(image_load(&img, PHOTO, IMAGE_MODE_RGB, 1));
    blazeface_det *d = NULL;
    int n = 0;
    CHECK_OK(blazeface_detect(bf, &img, NULL, &d, &n));
    CHECK(n == 1, "one face in the photo, got %d", n);
    if (n >= 1) {
        printf("  photo: score %.3f box %.0f %.0f %.0f %.0f, eyes (%.0f, %.0f) (%.0f, %.0f)\n", d[0].score, d[0].x0, d[0].y0,
               d[0].x1, d[0].y1, d[0].kp[0][0], d[0].kp[0][1], d[0].kp[1][0], d[0].kp[1][1]);
        /* Haar's box for this face is (49, 206) 457x457; the eyes are in its upper half */
        const float ix = fminf(d[0].x1, 506) - fmaxf(d[0].x0, 49), iy = fminf(d[0].y1, 663) - fmaxf(d[0].y0, 206);
        const float inter = ix > 0 && iy > 0 ? ix * iy : 0;
        const float u = (d[0].x1 - d[0].x0) * (d[0].y1 - d[0].y0) + 457.0f * 457 - inter;
        CHECK(inter / u > 0.4f, "the box overlaps the face (IoU %.2f with Haar's)", inter / u);
        CHECK(d[0].kp[0][0] < d[0].kp[1][0], "the subject's right eye is left in the image");
        for (int k = 0; k < 2; k++)
            CHECK(d[0].kp[k][0] > d[0].x0 && d[0].kp[k][0] < d[0].x1 && d[0].kp[k][1] > d[0].y0 &&
                      d[0].kp[k][1] < d[0].y0 + 0.6f * (d[0].y1 - d[0].y0),
                  "eye %d inside the upper box", k);
    }
    free(d);
    /* a gray image and a tiny one work too */
    image gray;
    CHECK_OK(image_to_gray(&gray, &img));
    CHECK_OK(blazeface_detect(bf, &gray, NULL, &d, &n));
    CHECK(n == 1, "gray photo: %d faces", n);
    free(d);
    image_free(&gray);
    image tiny;
    CHECK_OK(image_alloc(&tiny, 1, 1, 3));
    tiny.data[0] = tiny.data[1] = tiny.data[2] = 9;
    CHECK_OK(blazeface_detect(bf, &tiny, NULL, &d, &n));
    CHECK(n == 0, "a 1x1 image: no face");
    free(d);
    image_free(&tiny);
    image_free(&img);
}

static void test_bad_files(void)
{
    blazeface *bf = NULL;
    CHECK(blazeface_load(&bf, "/nonexistent/blazeface.safetensors") != FERC_OK && !bf, "missing file");
    char dir[] = "/tmp/ferc_bf_XXXXXX", path[128];
    if (!mkdtemp(dir)) return;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    test_make_model(path, "resnet18", 48, 3);
    int rc = blazeface_load(&bf, path);
    CHECK(rc == FERC_ERR_FORMAT && !bf && strstr(ferc_last_error(), "BlazeFace"), "a classifier is refused: %s",
          ferc_last_error());
    CHECK(blazeface_load(&bf, FIXTURE) == FERC_ERR_FORMAT && !bf, "the parity fixture is not a detector");
    remove(path);
    rmdir(dir);
}

int main(void)
{
    test_anchors();
    test_decode_nms();
    blazeface *bf = NULL;
    int rc = blazeface_load(&bf, NULL);
    CHECK(rc == FERC_OK, "loading models/detectors/blazeface-back.safetensors: %s", ferc_last_error());
    if (bf) {
        test_parity(bf);
        test_photo(bf);
        blazeface_destroy(bf);
    }
    test_bad_files();
    return test_finish("test_blazeface");
}
