/* bench_detect: time of face_detect on one 640x360 gray frame, one thread.
 *
 * usage: bench_detect [IMAGE|-] [REPEATS] [--scales] [--once]
 *        bench_detect --video FILE [--every N]
 * The frame is IMAGE (default or "-": the committed public-domain photo) converted to gray as
 * OpenCV does, scaled to 360 rows and tiled to 640x360 (real texture everywhere: a flat border
 * would be rejected for free and flatter the figure). Several parameter sets are timed, median
 * of REPEATS runs (default 21): OpenCV's defaults (1.1, 3, no min size) and the faster settings
 * a live camera would use. --scales also times every scale of the default pyramid on its own
 * (min size = max size = that scale's window), which is the per-scale breakdown. --once runs the
 * default setting REPEATS times and prints nothing else (for callgrind / perf stat).
 * --video times real frames instead: every Nth frame (default 1) of the clip, converted to gray
 * as OpenCV does, detected at OpenCV's defaults and at the camera's settings; prints the median,
 * mean, 90th percentile and maximum per frame (thread CPU time). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "face/cascade.h"
#include "image/image.h"
#include "video/video.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* CPU time of this thread: on a shared machine the wall time also counts the time other
 * processes hold the core; both are printed. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double g_wall_ms; /* wall-clock median of the last median_ms call */

static double median_ms(const face_cascade *fc, const uint8_t *frame, const face_detect_params *p, int reps,
                        double *t, int *n)
{
    double *w = t + reps;
    for (int r = 0; r < reps; r++) {
        face_box *b;
        double t0 = time_now(), c0 = cpu_now();
        if (face_detect(fc, frame, 640, 360, 640, p, &b, n)) {
            fprintf(stderr, "bench_detect: %s\n", ferc_last_error());
            exit(1);
        }
        t[r] = cpu_now() - c0;
        w[r] = time_now() - t0;
        free(b);
    }
    qsort(t, (size_t)reps, sizeof *t, cmp_double);
    qsort(w, (size_t)reps, sizeof *w, cmp_double);
    g_wall_ms = 1e3 * w[reps / 2];
    return 1e3 * t[reps / 2];
}

/* Per-frame detection times over a video clip (see the top comment). */
static int bench_video(const char *path, int every)
{
    face_cascade *fc;
    video_source *src;
    if (face_cascade_load(&fc, NULL) || video_source_open_file(&src, path, 1)) {
        fprintf(stderr, "bench_detect: %s\n", ferc_last_error());
        return 1;
    }
    size_t cap = 1024, n = 0;
    double *t[2] = {malloc(cap * sizeof(double)), malloc(cap * sizeof(double))};
    long faces[2] = {0, 0};
    uint8_t *gray = NULL;
    const video_frame *f;
    int rc, w = 0, h = 0;
    while ((rc = video_source_read(src, &f)) == 1) {
        if (f->index % every) continue;
        w = f->img.width, h = f->img.height;
        uint8_t *g2 = realloc(gray, (size_t)w * h);
        if (!g2) break;
        gray = g2;
        face_rgb_to_gray(f->img.data, f->img.stride, 3, w, h, gray, (size_t)w);
        if (n == cap) {
            cap *= 2;
            t[0] = realloc(t[0], cap * sizeof(double));
            t[1] = realloc(t[1], cap * sizeof(double));
        }
        for (int k = 0; k < 2; k++) {
            face_detect_params p;
            face_detect_params_default(&p);
            if (k == 1) p.min_w = p.min_h = 30; /* min face size 30 px */
            face_box *b;
            int nb;
            double c0 = cpu_now();
            if (face_detect(fc, gray, w, h, (size_t)w, &p, &b, &nb)) {
                fprintf(stderr, "bench_detect: %s\n", ferc_last_error());
                return 1;
            }
            t[k][n] = 1e3 * (cpu_now() - c0);
            faces[k] += nb;
            free(b);
        }
        n++;
    }
    if (rc < 0) fprintf(stderr, "bench_detect: %s\n", ferc_last_error());
    printf("bench_detect: %zu frames (%dx%d) of %s, haarcascade_frontalface_default, 1 thread, thread CPU time per frame\n",
           n, w, h, path);
    static const char *const what[2] = {"OpenCV defaults (1.1, 3, no min size)", "1.1, 3, min size 30         "};
    for (int k = 0; k < 2 && n; k++) {
        double sum = 0;
        for (size_t i = 0; i < n; i++) sum += t[k][i];
        qsort(t[k], n, sizeof(double), cmp_double);
        printf("  %s: median %6.2f ms  mean %6.2f  p90 %6.2f  max %6.2f  (%.2f faces per frame)\n", what[k], t[k][n / 2],
               sum / (double)n, t[k][n * 9 / 10], t[k][n - 1], (double)faces[k] / (double)n);
    }
    free(t[0]);
    free(t[1]);
    free(gray);
    video_source_close(src);
    face_cascade_destroy(fc);
    return rc < 0;
}

int main(int argc, char **argv)
{
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--video")) {
            int every = 1;
            for (int j = 1; j + 1 < argc; j++)
                if (!strcmp(argv[j], "--every")) every = atoi(argv[j + 1]);
            return bench_video(argv[i + 1], every < 1 ? 1 : every);
        }
    const char *path = FERC_SOURCE_DIR "/tests/fixtures/faces/Tom_Cruise_avp_2014_4.jpg";
    int reps = 21, per_scale = 0, once = 0, npos = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--scales")) per_scale = 1;
        else if (!strcmp(argv[i], "--once")) once = 1;
        else if (npos++ == 0) {
            if (strcmp(argv[i], "-")) path = argv[i];
        } else reps = atoi(argv[i]);
    }
    if (reps < 1 || reps > 10000) reps = 21;
    image rgb;
    if (image_load(&rgb, path, IMAGE_MODE_RGB, 1)) {
        fprintf(stderr, "bench_detect: %s\n", ferc_last_error());
        return 1;
    }
    uint8_t *gray = malloc((size_t)rgb.width * rgb.height);
    face_rgb_to_gray(rgb.data, rgb.stride, 3, rgb.width, rgb.height, gray, (size_t)rgb.width);
    int tw = (int)((double)rgb.width * 360 / rgb.height + 0.5);
    if (tw < 1 || tw > 640) tw = 640;
    uint8_t *tile = malloc((size_t)tw * 360), *frame = malloc(640 * 360);
    face_resize_gray(gray, rgb.width, rgb.height, (size_t)rgb.width, tile, tw, 360, (size_t)tw);
    for (int y = 0; y < 360; y++)
        for (int x = 0; x < 640; x++) frame[y * 640 + x] = tile[y * tw + x % tw];
    free(tile);

    face_cascade *fc;
    if (face_cascade_load(&fc, NULL)) {
        fprintf(stderr, "bench_detect: %s\n", ferc_last_error());
        return 1;
    }
    double *t = malloc(2 * sizeof(double) * (size_t)reps);
    face_detect_params p;
    face_detect_params_default(&p);
    int n = 0;
    if (once) {
        median_ms(fc, frame, &p, reps, t, &n);
        printf("%d faces\n", n);
    } else {
        struct {
            double sf;
            int mn, min;
        } sets[] = {{1.1, 3, 0}, {1.2, 3, 30}, {1.1, 5, 30}, {1.2, 5, 30}, {1.3, 5, 30}, {1.1, 3, 48}};
        printf("bench_detect: 640x360 frame from %s, haarcascade_frontalface_default, 1 thread, median of %d (thread CPU time and wall time)\n",
               path, reps);
        for (size_t s = 0; s < sizeof sets / sizeof sets[0]; s++) {
            face_detect_params_default(&p);
            p.scale_factor = sets[s].sf;
            p.min_neighbors = sets[s].mn;
            p.min_w = p.min_h = sets[s].min;
            double ms = median_ms(fc, frame, &p, reps, t, &n);
            printf("  scale %.1f  neighbours %d  min size %2d: %7.2f ms cpu  %7.2f ms wall  (%d faces)\n", sets[s].sf,
                   sets[s].mn, sets[s].min, ms, g_wall_ms, n);
        }
    }
    if (per_scale) {
        face_cascade_info info;
        face_cascade_get_info(fc, &info);
        printf("  per scale (factor 1.1, each scale alone):\n");
        double total = 0;
        int k = 0;
        for (double f = 1;; f *= 1.1, k++) {
            int ww = (int)lrint(info.window_w * f), wh = (int)lrint(info.window_h * f);
            if (ww > 640 || wh > 360) break;
            face_detect_params_default(&p);
            p.min_neighbors = 0;
            p.min_w = p.max_w = ww;
            p.min_h = p.max_h = wh;
            double ms = median_ms(fc, frame, &p, reps, t, &n);
            total += ms;
            printf("    %2d  factor %6.3f  window %3dx%-3d level %3dx%-3d  %6.3f ms cpu  %5d raw hits\n", k, f, ww, wh,
                   (int)lrintf(640.f / (float)f), (int)lrintf(360.f / (float)f), ms, n);
        }
        printf("    sum %.2f ms\n", total);
    }
    free(t);
    face_cascade_destroy(fc);
    free(frame);
    free(gray);
    image_free(&rgb);
    return 0;
}
