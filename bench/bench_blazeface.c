/* bench_blazeface: time of the CNN face detector (face/blazeface) on 640x360 frames, per
 * stage (letterbox + normalize, network, decode + NMS), median over the frames; the Haar
 * cascade (face/cascade, OpenCV's defaults and ferc camera's settings) on the same frames for
 * comparison, and the peer: TensorFlow.js 4.22 on its wasm backend (one thread, the backend the
 * detector was first measured with) running the same network, through
 * tools/tfjs/blazeface_reference.mjs --time when node and tools/tfjs/node_modules are there.
 *
 * usage: bench_blazeface [--video FILE] [--frames N] [--threads T]
 *   default: the shared clip ($FERC_DATA/video/short_hamilton_clip.mp4, 640x360), 100 frames,
 *   2 threads. Run it from the source tree, on an idle machine. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "face/blazeface.h"
#include "face/cascade.h"
#include "face/recognize.h"
#include "video/video.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n ? v[n / 2] : 0;
}

int main(int argc, char **argv)
{
    const char *video = NULL;
    char def[4096];
    int frames = 100, threads = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--video") && i + 1 < argc) video = argv[++i];
        else if (!strcmp(argv[i], "--frames") && i + 1 < argc) frames = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_blazeface [--video FILE] [--frames N] [--threads T]\n");
            return 2;
        }
    }
    if (!video) {
        const char *data = getenv("FERC_DATA");
        snprintf(def, sizeof def, "%s/video/short_hamilton_clip.mp4", data ? data : "../shared/data");
        video = def;
    }
    omp_set_num_threads(threads);
    blazeface *bf;
    face_cascade *fc;
    video_source *src;
    if (blazeface_load(&bf, NULL) || face_cascade_load(&fc, NULL) || video_source_open_file(&src, video, 0)) {
        fprintf(stderr, "bench_blazeface: %s\n", ferc_last_error());
        return 1;
    }
    double *pre = calloc((size_t)frames, sizeof(double)), *net = calloc((size_t)frames, sizeof(double)),
           *dec = calloc((size_t)frames, sizeof(double)), *all = calloc((size_t)frames, sizeof(double)),
           *haar = calloc((size_t)frames, sizeof(double)), *haar_cam = calloc((size_t)frames, sizeof(double));
    float *x = malloc(sizeof(float) * 3 * BLAZEFACE_SIZE * BLAZEFACE_SIZE);
    float *logits = malloc(sizeof(float) * BLAZEFACE_ANCHORS), *regs = malloc(sizeof(float) * BLAZEFACE_ANCHORS * BLAZEFACE_REGS);
    float anchors[BLAZEFACE_ANCHORS * 2];
    blazeface_anchors(anchors);
    blazeface_params bp;
    blazeface_params_default(&bp);
    int n = 0, w = 0, h = 0, with_face = 0, haar_with_face = 0;
    uint8_t *gray = NULL;
    for (int warm = 0; warm < 3; warm++) blazeface_run(bf, x, logits, regs); /* plans, weight reorders */
    while (n < frames) {
        const video_frame *f;
        if (video_source_read(src, &f) <= 0) break;
        w = f->img.width, h = f->img.height;
        double t0 = time_now(), sc;
        float s, ox, oy;
        blazeface_preprocess(&f->img, x, &s, &ox, &oy);
        double t1 = time_now();
        blazeface_run(bf, x, logits, regs);
        double t2 = time_now();
        blazeface_det *d;
        int nd;
        blazeface_decode(logits, regs, anchors, BLAZEFACE_ANCHORS, &bp, &d, &nd);
        double t3 = time_now();
        free(d);
        with_face += nd > 0;
        pre[n] = t1 - t0, net[n] = t2 - t1, dec[n] = t3 - t2, all[n] = t3 - t0;
        gray = realloc(gray, (size_t)w * h);
        face_rgb_to_gray(f->img.data, f->img.stride, 3, w, h, gray, (size_t)w);
        face_detect_params dp;
        face_detect_params_default(&dp);
        face_box *b;
        int nb;
        t0 = time_now();
        face_detect(fc, gray, w, h, (size_t)w, &dp, &b, &nb);
        haar[n] = time_now() - t0;
        haar_with_face += nb > 0;
        free(b);
        /* ferc camera's Haar setting: the frame at 0.75 */
        const int sw = (int)lround(w * 0.75), sh = (int)lround(h * 0.75);
        uint8_t *small = malloc((size_t)sw * sh);
        t0 = time_now();
        face_resize_gray(gray, w, h, (size_t)w, small, sw, sh, (size_t)sw);
        face_detect(fc, small, sw, sh, (size_t)sw, &dp, &b, &nb);
        haar_cam[n] = time_now() - t0;
        free(b);
        free(small);
        (void)sc;
        n++;
    }
    printf("bench_blazeface: %d frames of %dx%d from %s, %d threads\n", n, w, h, video, threads);
    printf("  blazeface  letterbox %.2f ms + network %.2f ms + decode/NMS %.3f ms = %.2f ms per frame (medians); "
           "a face in %d of %d frames\n",
           1e3 * median(pre, n), 1e3 * median(net, n), 1e3 * median(dec, n), 1e3 * median(all, n), with_face, n);
    printf("  haar       %.2f ms per frame at OpenCV's defaults (full frame; a face in %d of %d), %.2f ms at "
           "ferc camera's 0.75 scale\n",
           1e3 * median(haar, n), haar_with_face, n, 1e3 * median(haar_cam, n));
    /* the peer, in the same run: the network alone in TensorFlow.js (wasm, one thread) */
    FILE *peer = popen("test -d tools/tfjs/node_modules && node tools/tfjs/blazeface_reference.mjs --time 50 2>/dev/null", "r");
    char line[256];
    double tf_ms = 0;
    while (peer && fgets(line, sizeof line, peer)) sscanf(line, "tfjs-wasm median %lf ms", &tf_ms);
    if (peer) pclose(peer);
    if (tf_ms > 0) {
        /* the same network on one thread in ferc, for a like-for-like ratio */
        omp_set_num_threads(1);
        double *one = calloc(50, sizeof(double));
        for (int i = 0; one && i < 53; i++) {
            double t0 = time_now();
            blazeface_run(bf, x, logits, regs);
            if (i >= 3) one[i - 3] = time_now() - t0;
        }
        const double ferc1 = one ? 1e3 * median(one, 50) : 0;
        printf("  network alone, 1 thread: ferc %.2f ms, TensorFlow.js wasm %.2f ms: ferc is %.1fx as fast\n", ferc1, tf_ms,
               tf_ms / ferc1);
        free(one);
    } else {
        printf("  (TensorFlow.js peer not run: needs node and `cd tools/tfjs && npm ci`)\n");
    }
    free(pre), free(net), free(dec), free(all), free(haar), free(haar_cam), free(x), free(logits), free(regs), free(gray);
    blazeface_destroy(bf);
    face_cascade_destroy(fc);
    video_source_close(src);
    return 0;
}
