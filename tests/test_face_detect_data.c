/* Face detection parity with OpenCV on every photo of $FERC_DATA/faces (skipped without
 * FERC_DATA), and precision/recall of ferc and of OpenCV against dlib's hand-labelled boxes
 * (faces/dlib/training.xml + testing.xml, IoU >= 0.5), printed side by side.
 *
 * By default the cheaper configurations run (the default frontal cascade at 1.1/3 and
 * 1.3/5/30); FERC_FACE_FULL=1 runs every configuration of the fixture (LBP, trees, tilted,
 * old format, raw hits; about 30 s on this machine). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "face_parity.h"
#include "face/blazeface.h"

static int config_selected(const char *name)
{
    const char *full = getenv("FERC_FACE_FULL");
    if (full && *full && strcmp(full, "0")) return 1;
    return !strcmp(name, "default") || !strcmp(name, "default_1.3_5_30");
}

typedef struct pr_tally {
    int tp, fp, fn;
} pr_tally;

static void pr_add(pr_tally *t, const int *dets, int nd, const cJSON *labels)
{
    int nl;
    int *l = parity_boxes(labels, &nl);
    int tp = parity_match(dets, nd, l, nl, 0.5, NULL);
    t->tp += tp;
    t->fp += nd - tp;
    t->fn += nl - tp;
    free(l);
}

int main(void)
{
    const char *data = test_data_dir();
    if (!data) return test_skip("FERC_DATA is not set (shared photos needed)");
    if (!file_exists(FACE_CASCADE_DEFAULT_PATH)) return test_skip("opencv-data is not installed");
    cJSON *fix = parity_load_fixture();
    CHECK(fix != NULL, "cannot read %s", PARITY_FIXTURE);
    if (!fix) return test_finish("test_face_detect_data");
    const cJSON *images = cJSON_GetObjectItem(fix, "images");
    const cJSON *labels = cJSON_GetObjectItem(fix, "labels");

    int nimg = cJSON_GetArraySize(images);
    image *grays = calloc((size_t)nimg, sizeof *grays);
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, images) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", data, cJSON_GetObjectItem(e, "path")->valuestring);
        CHECK_OK(parity_load_gray(path, &grays[i]));
        i++;
    }

    pr_tally ours_pr = {0}, cv_pr = {0};
    const cJSON *cfg;
    cJSON_ArrayForEach(cfg, cJSON_GetObjectItem(fix, "configs")) {
        const char *name = cJSON_GetObjectItem(cfg, "name")->valuestring;
        if (!config_selected(name)) continue;
        face_cascade *fc;
        CHECK_OK(face_cascade_load(&fc, cJSON_GetObjectItem(cfg, "cascade")->valuestring));
        if (!fc) continue;
        parity_tally all = {0};
        double t0 = time_now();
        i = 0;
        cJSON_ArrayForEach(e, images) {
            image *g = &grays[i++];
            if (!g->data) continue;
            const cJSON *want = cJSON_GetObjectItem(cJSON_GetObjectItem(e, "boxes"), name);
            parity_tally t = {0};
            int *ours = NULL, n = 0;
            CHECK_OK(parity_run(fc, cfg, g, want, &t, &ours, &n));
            if (t.found != t.opencv || t.extra)
                printf("  %s %s: opencv %d ferc %d found %d extra %d\n", name,
                       cJSON_GetObjectItem(e, "path")->valuestring, t.opencv, t.ours, t.found, t.extra);
            all.opencv += t.opencv;
            all.ours += t.ours;
            all.found += t.found;
            all.extra += t.extra;
            all.exact += t.exact;
            const cJSON *lab = cJSON_GetObjectItem(labels, cJSON_GetObjectItem(e, "path")->valuestring);
            if (lab && !strcmp(name, "default")) {
                pr_add(&ours_pr, ours, n, lab);
                int nw;
                int *w = parity_boxes(want, &nw);
                pr_add(&cv_pr, w, nw, lab);
                free(w);
            }
            free(ours);
        }
        char label[96];
        snprintf(label, sizeof label, "%s (%.1f s)", name, time_now() - t0);
        parity_report(label, &all);
        face_cascade_destroy(fc);
    }

    /* the CNN detector (face/blazeface, its default score >= 0.55) on the same photos, in colour */
    pr_tally bf_pr = {0};
    int dogs_false = -1;
    blazeface *bf = NULL;
    CHECK_OK(blazeface_load(&bf, NULL));
    double t_bf = time_now();
    cJSON_ArrayForEach(e, images) {
        if (!bf) break;
        const char *rel = cJSON_GetObjectItem(e, "path")->valuestring;
        const cJSON *lab = cJSON_GetObjectItem(labels, rel);
        const int is_dogs = strstr(rel, "dogs.jpg") != NULL;
        if (!lab && !is_dogs) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", data, rel);
        image rgb;
        if (image_load(&rgb, path, IMAGE_MODE_RGB, 1)) {
            CHECK(0, "%s: %s", path, ferc_last_error());
            continue;
        }
        blazeface_det *d = NULL;
        int nd = 0;
        CHECK_OK(blazeface_detect(bf, &rgb, NULL, &d, &nd));
        int *boxes = malloc(sizeof(int) * 4 * (size_t)(nd ? nd : 1));
        for (int k = 0; boxes && k < nd; k++) {
            boxes[4 * k] = (int)lroundf(d[k].x0), boxes[4 * k + 1] = (int)lroundf(d[k].y0);
            boxes[4 * k + 2] = (int)lroundf(d[k].x1 - d[k].x0), boxes[4 * k + 3] = (int)lroundf(d[k].y1 - d[k].y0);
        }
        if (lab && boxes) pr_add(&bf_pr, boxes, nd, lab);
        if (is_dogs) dogs_false = nd; /* no person in it: every detection is false */
        free(boxes);
        free(d);
        image_free(&rgb);
    }
    t_bf = time_now() - t_bf;
    blazeface_destroy(bf);

    printf("\nprecision/recall vs hand labels (faces/dlib training+testing, IoU >= 0.5; Haar: frontalface_default 1.1/3):\n");
    printf("  %-9s %4s %4s %4s  %9s %7s\n", "", "tp", "fp", "fn", "precision", "recall");
    const pr_tally *rows[3] = {&ours_pr, &cv_pr, &bf_pr};
    const char *names[3] = {"ferc Haar", "OpenCV", "BlazeFace"};
    for (int r = 0; r < 3; r++) {
        const pr_tally *t = rows[r];
        double prec = t->tp + t->fp ? (double)t->tp / (t->tp + t->fp) : 0.0;
        double rec = t->tp + t->fn ? (double)t->tp / (t->tp + t->fn) : 0.0;
        printf("  %-9s %4d %4d %4d  %9.3f %7.3f\n", names[r], t->tp, t->fp, t->fn, prec, rec);
    }
    printf("  BlazeFace (score >= 0.55): %d false detections on dogs.jpg; %.2f s for the photos\n", dogs_false, t_bf);
    {
        const pr_tally *t = &bf_pr;
        double prec = t->tp + t->fp ? (double)t->tp / (t->tp + t->fp) : 0.0;
        double rec = t->tp + t->fn ? (double)t->tp / (t->tp + t->fn) : 0.0;
        CHECK(t->tp + t->fn == 43, "BlazeFace: 43 labelled faces, got %d", t->tp + t->fn);
        CHECK(rec >= 0.95 && prec >= 0.95, "BlazeFace targets: recall %.3f, precision %.3f (both >= 0.95)", rec, prec);
        CHECK(dogs_false >= 0 && dogs_false <= 1, "BlazeFace: %d false detections on dogs.jpg (at most 1)", dogs_false);
    }
    CHECK(ours_pr.tp + ours_pr.fn == 43, "expected 43 labelled faces, got %d", ours_pr.tp + ours_pr.fn);
    CHECK(ours_pr.tp >= cv_pr.tp - 1, "ferc finds fewer labelled faces than OpenCV (%d vs %d)", ours_pr.tp, cv_pr.tp);

    for (i = 0; i < nimg; i++) image_free(&grays[i]);
    free(grays);
    cJSON_Delete(fix);
    return test_finish("test_face_detect_data");
}
