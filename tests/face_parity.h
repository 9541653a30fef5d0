/* Shared by the face-detection parity tests: reading tests/fixtures/faces/opencv_boxes.json
 * (written by tools/gen_detect_fixtures.py from OpenCV's own detectMultiScale), running ferc's
 * detector with the same cascade and parameters on the same gray pixels, and matching boxes.
 *
 * Matching: a one-to-one greedy assignment by IoU; an OpenCV box counts as found when its
 * partner has IoU >= 0.9, and every ferc box without such a partner counts as extra. The
 * acceptance bar is >= 95% found and <= 5% extra over all boxes of a configuration. */
#ifndef FERC_TEST_FACE_PARITY_H
#define FERC_TEST_FACE_PARITY_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/core.h"
#include "face/cascade.h"
#include "image/image.h"
#include "testutil.h"

#define PARITY_FIXTURE "tests/fixtures/faces/opencv_boxes.json"

typedef struct parity_tally {
    int opencv, ours, found, extra, exact;
} parity_tally;

static inline cJSON *parity_load_fixture(void)
{
    uint8_t *data;
    size_t size;
    if (file_read_all(PARITY_FIXTURE, &data, &size)) return NULL;
    cJSON *j = cJSON_ParseWithLength((const char *)data, size);
    free(data);
    return j;
}

static inline double parity_iou(const int *a, const int *b)
{
    int x1 = a[0] > b[0] ? a[0] : b[0], y1 = a[1] > b[1] ? a[1] : b[1];
    int x2 = a[0] + a[2] < b[0] + b[2] ? a[0] + a[2] : b[0] + b[2];
    int y2 = a[1] + a[3] < b[1] + b[3] ? a[1] + a[3] : b[1] + b[3];
    if (x2 <= x1 || y2 <= y1) return 0.0;
    double inter = (double)(x2 - x1) * (y2 - y1);
    return inter / ((double)a[2] * a[3] + (double)b[2] * b[3] - inter);
}

/* Greedy one-to-one matching of `na` boxes a against `nb` boxes b (x, y, w, h ints each);
 * returns the number of pairs with IoU >= thr and, in *exact, how many of them are identical. */
static inline int parity_match(const int *a, int na, const int *b, int nb, double thr, int *exact)
{
    char *ua = calloc((size_t)na + 1, 1), *ub = calloc((size_t)nb + 1, 1);
    int pairs = 0;
    if (exact) *exact = 0;
    for (;;) {
        double best = thr;
        int bi = -1, bj = -1;
        for (int i = 0; i < na; i++) {
            if (ua[i]) continue;
            for (int j = 0; j < nb; j++) {
                if (ub[j]) continue;
                double v = parity_iou(a + 4 * i, b + 4 * j);
                if (v >= best && (bi < 0 || v > best)) {
                    best = v;
                    bi = i;
                    bj = j;
                }
            }
        }
        if (bi < 0) break;
        ua[bi] = ub[bj] = 1;
        pairs++;
        if (exact && !memcmp(a + 4 * bi, b + 4 * bj, 4 * sizeof(int))) (*exact)++;
    }
    free(ua);
    free(ub);
    return pairs;
}

/* Boxes of a JSON list [[x,y,w,h],...] as ints; the caller frees. */
static inline int *parity_boxes(const cJSON *list, int *n)
{
    *n = cJSON_GetArraySize(list);
    int *v = malloc(sizeof(int) * 4 * ((size_t)*n + 1));
    int i = 0;
    const cJSON *b;
    cJSON_ArrayForEach(b, list) {
        for (int k = 0; k < 4; k++) v[4 * i + k] = cJSON_GetArrayItem(b, k)->valueint;
        i++;
    }
    return v;
}

/* Loads an image file and converts it to gray as OpenCV's detectMultiScale would. */
static inline int parity_load_gray(const char *path, image *gray)
{
    image rgb;
    int rc = image_load(&rgb, path, IMAGE_MODE_RGB, 1);
    if (rc) return rc;
    rc = image_alloc(gray, rgb.width, rgb.height, 1);
    if (!rc) face_rgb_to_gray(rgb.data, rgb.stride, 3, rgb.width, rgb.height, gray->data, gray->stride);
    image_free(&rgb);
    return rc;
}

static inline void parity_params(const cJSON *cfg, face_detect_params *p)
{
    face_detect_params_default(p);
    p->scale_factor = cJSON_GetObjectItem(cfg, "scale_factor")->valuedouble;
    p->min_neighbors = cJSON_GetObjectItem(cfg, "min_neighbors")->valueint;
    p->min_w = p->min_h = cJSON_GetObjectItem(cfg, "min_size")->valueint;
}

/* Runs one configuration on one gray image and adds the comparison to *t. Returns ferc's
 * boxes as ints (caller frees) through ours/nours when asked. */
static inline int parity_run(const face_cascade *fc, const cJSON *cfg, const image *gray, const cJSON *want,
                             parity_tally *t, int **ours_out, int *nours_out)
{
    face_detect_params p;
    parity_params(cfg, &p);
    face_box *boxes;
    int n;
    int rc = face_detect(fc, gray->data, gray->width, gray->height, gray->stride, &p, &boxes, &n);
    if (rc) return rc;
    int *ours = malloc(sizeof(int) * 4 * ((size_t)n + 1));
    for (int i = 0; i < n; i++) {
        ours[4 * i] = boxes[i].x;
        ours[4 * i + 1] = boxes[i].y;
        ours[4 * i + 2] = boxes[i].w;
        ours[4 * i + 3] = boxes[i].h;
    }
    free(boxes);
    int nw, exact;
    int *w = parity_boxes(want, &nw);
    int found = parity_match(w, nw, ours, n, 0.9, &exact);
    t->opencv += nw;
    t->ours += n;
    t->found += found;
    t->extra += n - found;
    t->exact += exact;
    free(w);
    if (ours_out) {
        *ours_out = ours;
        *nours_out = n;
    } else {
        free(ours);
    }
    return FERC_OK;
}

static inline void parity_report(const char *what, const parity_tally *t)
{
    double found = t->opencv ? (double)t->found / t->opencv : 1.0;
    double extra = t->opencv ? (double)t->extra / t->opencv : (t->extra ? 1.0 : 0.0);
    printf("%-28s opencv %5d ferc %5d  found(IoU>=0.9) %5d (%.1f%%)  identical %5d  extra %4d (%.1f%%)\n", what,
           t->opencv, t->ours, t->found, 100 * found, t->exact, t->extra, 100 * extra);
    CHECK(found >= 0.95, "%s: only %.1f%% of OpenCV's boxes found", what, 100 * found);
    CHECK(extra <= 0.05, "%s: %.1f%% extra boxes", what, 100 * extra);
}

#endif
