/* bench_framing: where a face detector's box must put the crop so that the classifier sees a
 * face framed as in its training data (FER), and what the framing costs or gains, measured on
 * the labelled crops of a split manifest.
 *
 * Each image (a 48x48 face as FER cropped it) is upscaled 4x and put in the middle of a black
 * canvas twice its size, so that a detector has to find it again; where the FER crop lies on
 * the canvas is known. Pass 1, on TRAINING rows (so that nothing is tuned on validation): the
 * median FER crop relative to each detector's box (side ratio, centre offset in sides). Pass 2,
 * on the VALIDATION rows, the classifier sees:
 *   given      the image itself (the reference: ferc eval's path)
 *   haar-0.1   Haar's box grown by ferc's former default margin (0.1 per side: 1.2x)
 *   haar-fer   Haar's box mapped to the FER crop with pass 1's medians
 *   cnn-fer    BlazeFace's box mapped to the FER crop with pass 1's medians
 *   ferc haar, ferc cnn   the recognition pipeline as shipped (face/recognize's boxes and its
 *              default margin), for each detector
 *   ferc cnn --align      the same, each face turned to level its eyes (the CNN's keypoints)
 * --rotate DEG turns every canvas by +DEG or -DEG (alternately) about the face's centre, as a
 * tilted head: what alignment is for. "given" stays the untouched image.
 * Accuracy counts an image whose face was not found as wrong; "when found" leaves those out.
 *
 * usage: bench_framing [--model M] [--manifest CSV] [--data DIR] [--train N] [--limit N]
 *   defaults: the shipped model, its models/<name>.val.csv, $FERC_DATA/fer/Training, 2000
 *   training rows (every 10th), every validation row, 2 threads (--threads). */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferc.h"
#include "core/core.h"
#include "face/recognize.h"
#include "image/image.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

enum { V_GIVEN, V_HAAR, V_HAAR_FER, V_CNN_FER, V_PIPE_HAAR, V_PIPE_CNN, V_PIPE_ALIGN, V_COUNT };
static const char *const names[V_COUNT] = {"given", "haar-0.1", "haar-fer", "cnn-fer", "ferc haar", "ferc cnn",
                                           "ferc cnn --align"};
static double rotate_deg; /* --rotate: each canvas turned by +-this, alternately */
static int rotate_sign = 1;

typedef struct sample {
    image img, canvas;
    double tx, ty, tside; /* the FER crop on the canvas: centre and side */
    int label;
} sample;

static int load_sample(const char *data, const char *path, int label, sample *s)
{
    char full[8192];
    snprintf(full, sizeof full, "%s/%s", data, path);
    image big;
    memset(s, 0, sizeof *s);
    if (image_load(&s->img, full, IMAGE_MODE_RGB, 0)) return -1;
    const int w = 4 * s->img.width, h = 4 * s->img.height;
    if (image_resize(&big, &s->img, w, h)) return -1;
    if (image_alloc(&s->canvas, 2 * w, 2 * h, 3)) {
        image_free(&big);
        return -1;
    }
    memset(s->canvas.data, 0, s->canvas.stride * (size_t)s->canvas.height);
    for (int y = 0; y < h; y++)
        memcpy(s->canvas.data + (size_t)(y + h / 2) * s->canvas.stride + (size_t)(w / 2) * 3, big.data + (size_t)y * big.stride,
               (size_t)w * 3);
    image_free(&big);
    if (rotate_deg != 0) {
        image turned;
        const double a = rotate_sign * rotate_deg * M_PI / 180;
        rotate_sign = -rotate_sign;
        if (image_crop_rotated(&turned, &s->canvas, w, h, 2 * w, 2 * h, a)) return -1;
        image_free(&s->canvas);
        s->canvas = turned;
    }
    s->tx = w / 2 + w / 2.0, s->ty = h / 2 + h / 2.0, s->tside = w;
    s->label = label;
    return 0;
}

static void free_sample(sample *s)
{
    image_free(&s->img);
    image_free(&s->canvas);
}

/* The detector's first box as (centre x, centre y, side); 0 when none. */
static int detect_one(face_recognizer *r, int cnn, const image *canvas, double *cx, double *cy, double *side)
{
    face_box *b = NULL;
    int n = 0;
    if (face_recognizer_detect(r, canvas, &b, &n) || n < 1) {
        free(b);
        return 0;
    }
    if (cnn) {
        int nd;
        const blazeface_det *d = face_recognizer_last_detections(r, &nd);
        *side = fmax(d[0].x1 - d[0].x0, d[0].y1 - d[0].y0);
        *cx = 0.5 * (d[0].x0 + d[0].x1), *cy = 0.5 * (d[0].y0 + d[0].y1);
    } else {
        *side = b[0].w, *cx = b[0].x + 0.5 * b[0].w, *cy = b[0].y + 0.5 * b[0].h;
    }
    free(b);
    return 1;
}

int main(int argc, char **argv)
{
    const char *model = NULL, *manifest = NULL, *data = NULL;
    int limit = 0, ntrain = 2000, threads = 2;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model")) model = argv[i + 1];
        else if (!strcmp(argv[i], "--manifest")) manifest = argv[i + 1];
        else if (!strcmp(argv[i], "--data")) data = argv[i + 1];
        else if (!strcmp(argv[i], "--limit")) limit = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--train")) ntrain = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--rotate")) rotate_deg = atof(argv[i + 1]);
    }
    if (!model) model = ferc_default_model_path();
    char mbuf[4096], dbuf[4096];
    if (!manifest && model) {
        snprintf(mbuf, sizeof mbuf, "%s", model);
        char *dot = strrchr(mbuf, '.');
        if (dot) strcpy(dot, ".val.csv");
        manifest = mbuf;
    }
    if (!data) {
        const char *fd = getenv("FERC_DATA");
        snprintf(dbuf, sizeof dbuf, "%s/fer/Training", fd ? fd : "../shared/data");
        data = dbuf;
    }
    omp_set_num_threads(threads);
    face_recog_params p;
    face_recog_params_default(&p);
    p.margin = 0; /* the crops below are explicit */
    p.detector = FACE_DETECTOR_HAAR;
    face_recognizer *det[2] = {NULL, NULL}, *pipe[3] = {NULL, NULL, NULL};
    {
        face_recog_params q;
        face_recog_params_default(&q);
        q.detector = FACE_DETECTOR_HAAR;
        if (face_recognizer_create(&pipe[0], model, NULL, &q)) return 1;
        q.detector = FACE_DETECTOR_BLAZEFACE;
        if (face_recognizer_create(&pipe[1], model, NULL, &q)) return 1;
        q.align = 1;
        if (face_recognizer_create(&pipe[2], model, NULL, &q)) return 1;
    }
    if (!model || face_recognizer_create(&det[0], model, NULL, &p)) {
        fprintf(stderr, "bench_framing: %s\n", model ? ferc_last_error() : "no model");
        return 1;
    }
    p.detector = FACE_DETECTOR_BLAZEFACE;
    if (face_recognizer_create(&det[1], model, NULL, &p)) {
        fprintf(stderr, "bench_framing: %s\n", ferc_last_error());
        return 1;
    }
    const int k = face_recognizer_num_classes(det[0]);
    FILE *f = fopen(manifest, "r");
    if (!f) {
        fprintf(stderr, "bench_framing: cannot open %s\n", manifest);
        return 1;
    }
    /* rows; labels are class folders, in the model's order when sorted (as ferc's data index:
     * the Kaggle set's "Suprise" folder is the model's "Surprise") */
    char line[4096], folders[64][128];
    int nfolders = 0;
    char **paths = NULL;
    int *labels = NULL, *is_val = NULL, nrows = 0, cap = 0;
    while (fgets(line, sizeof line, f)) {
        char *path = strtok(line, ","), *label = strtok(NULL, ","), *split = strtok(NULL, ",\r\n");
        if (!path || !label || !split || !strcmp(path, "path")) continue;
        int want = -1;
        for (int j = 0; j < nfolders; j++)
            if (!strcmp(folders[j], label)) want = j;
        if (want < 0 && nfolders < 64) {
            snprintf(folders[nfolders], sizeof folders[0], "%s", label);
            want = nfolders++;
        }
        if (want < 0) continue;
        if (nrows == cap) {
            cap = cap ? 2 * cap : 4096;
            paths = realloc(paths, sizeof *paths * (size_t)cap);
            labels = realloc(labels, sizeof *labels * (size_t)cap);
            is_val = realloc(is_val, sizeof *is_val * (size_t)cap);
        }
        paths[nrows] = strdup(path);
        labels[nrows] = want;
        is_val[nrows++] = !strcmp(split, "val");
    }
    fclose(f);
    /* folder index -> rank among the sorted folder names = the model's label */
    int rank[64];
    for (int j = 0; j < nfolders; j++) {
        rank[j] = 0;
        for (int q = 0; q < nfolders; q++) rank[j] += strcmp(folders[q], folders[j]) < 0;
    }
    for (int i = 0; i < nrows; i++) labels[i] = rank[labels[i]];
    if (nfolders != k) {
        fprintf(stderr, "bench_framing: %d classes in the manifest, %d in the model\n", nfolders, k);
        return 1;
    }
    const double t0 = time_now();
    /* pass 1: training rows, every 10th */
    double *st[2][3];
    int ns[2] = {0, 0};
    for (int d = 0; d < 2; d++)
        for (int q = 0; q < 3; q++) st[d][q] = malloc(sizeof(double) * (size_t)(ntrain + 1));
    int seen = 0;
    for (int i = 0; i < nrows && ns[0] < ntrain && ns[1] < ntrain; i++) {
        if (is_val[i] || seen++ % 10) continue;
        sample s;
        if (load_sample(data, paths[i], labels[i], &s)) continue;
        for (int d = 0; d < 2; d++) {
            double cx, cy, side;
            if (detect_one(det[d], d, &s.canvas, &cx, &cy, &side)) {
                st[d][0][ns[d]] = s.tside / side, st[d][1][ns[d]] = (s.tx - cx) / side;
                st[d][2][ns[d]++] = (s.ty - cy) / side;
            }
        }
        free_sample(&s);
    }
    double med[2][3];
    for (int d = 0; d < 2; d++)
        for (int q = 0; q < 3; q++) {
            qsort(st[d][q], (size_t)ns[d], sizeof(double), cmp_double);
            med[d][q] = ns[d] ? st[d][q][ns[d] / 2] : 0;
        }
    /* pass 2: validation rows */
    int n = 0, found[V_COUNT] = {0}, right[V_COUNT] = {0};
    float *probs = malloc(sizeof(float) * (size_t)k);
    for (int i = 0; i < nrows && (!limit || n < limit); i++) {
        if (!is_val[i]) continue;
        sample s;
        if (load_sample(data, paths[i], labels[i], &s)) continue;
        n++;
        if (!face_recognizer_classify_crop(det[0], &s.img, NULL, probs)) {
            found[V_GIVEN]++;
            right[V_GIVEN] += face_argmax(probs, k) == s.label;
        }
        for (int d = 0; d < 3; d++) {
            face_box *b = NULL;
            float *lg = NULL, *pr = NULL;
            int nb = 0;
            if (!face_recognize(pipe[d], &s.canvas, &b, &nb, &lg, &pr) && nb > 0) {
                found[V_PIPE_HAAR + d]++;
                right[V_PIPE_HAAR + d] += face_argmax(pr, k) == s.label;
            }
            free(b), free(lg), free(pr);
        }
        for (int d = 0; d < 2; d++) {
            double cx, cy, side;
            if (!detect_one(det[d], d, &s.canvas, &cx, &cy, &side)) continue;
            for (int v = V_HAAR; v <= V_CNN_FER; v++) {
                if ((v == V_CNN_FER) != (d == 1)) continue;
                double sc = v == V_HAAR ? 1.2 : med[d][0];
                double ox = v == V_HAAR ? 0 : med[d][1], oy = v == V_HAAR ? 0 : med[d][2];
                const double c2x = cx + ox * side, c2y = cy + oy * side, s2 = sc * side;
                face_box b = {(int)lround(c2x - 0.5 * s2), (int)lround(c2y - 0.5 * s2), (int)lround(s2), (int)lround(s2)};
                if (!face_recognizer_classify(det[d], &s.canvas, &b, 1, NULL, probs)) {
                    found[v]++;
                    right[v] += face_argmax(probs, k) == s.label;
                }
            }
        }
        free_sample(&s);
    }
    printf("bench_framing: %s (%s), canvases turned by +-%g degrees, %.1f s\n", manifest, model, rotate_deg, time_now() - t0);
    for (int d = 0; d < 2; d++)
        printf("  pass 1, %d training images: the FER crop is the %s box x %.3f, its centre offset by %+.3f, %+.3f sides\n",
               ns[d], d ? "BlazeFace" : "Haar", med[d][0], med[d][1], med[d][2]);
    printf("  pass 2, %d validation images:\n  %-17s %7s %10s %11s\n", n, "crop", "found", "accuracy", "when found");
    for (int v = 0; v < V_COUNT; v++)
        printf("  %-17s %6.1f%% %9.2f%% %10.2f%%\n", names[v], 100.0 * found[v] / (n ? n : 1), 100.0 * right[v] / (n ? n : 1),
               100.0 * right[v] / (found[v] ? found[v] : 1));
    free(probs);
    for (int i = 0; i < nrows; i++) free(paths[i]);
    free(paths), free(labels), free(is_val);
    for (int d = 0; d < 2; d++) {
        for (int q = 0; q < 3; q++) free(st[d][q]);
        face_recognizer_destroy(det[d]);
        face_recognizer_destroy(pipe[d]);
    }
    face_recognizer_destroy(pipe[2]);
    return 0;
}
