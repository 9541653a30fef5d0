/* bench_detect: time of face_detect on one 640x360 gray frame, one thread.
 *
 * usage: bench_detect [IMAGE] [REPEATS]
 * The frame is IMAGE (default: the committed public-domain photo) converted to gray as OpenCV
 * does, scaled to 360 rows and tiled to 640x360. Several parameter sets are timed (median of REPEATS runs, default 15): OpenCV's
 * defaults (1.1, 3, no min size) and the faster settings a live camera would use. To compare
 * with OpenCV on the same machine in the same minute, run
 *   /usr/bin/python3 -c "import cv2,time; ..." (see the report in the face issue). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "face/cascade.h"
#include "image/image.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : FERC_SOURCE_DIR "/tests/fixtures/faces/Tom_Cruise_avp_2014_4.jpg";
    int reps = argc > 2 ? atoi(argv[2]) : 15;
    if (reps < 1 || reps > 1000) reps = 15;
    image rgb;
    if (image_load(&rgb, path, IMAGE_MODE_RGB, 1)) {
        fprintf(stderr, "bench_detect: %s\n", ferc_last_error());
        return 1;
    }
    uint8_t *gray = malloc((size_t)rgb.width * rgb.height);
    face_rgb_to_gray(rgb.data, rgb.stride, 3, rgb.width, rgb.height, gray, (size_t)rgb.width);
    /* The photo scaled to 360 rows and tiled across 640 columns: real texture everywhere (a
     * flat border would be rejected for free and flatter the figure) and a few faces. */
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
    struct {
        double sf;
        int mn, min;
    } sets[] = {{1.1, 3, 0}, {1.1, 5, 30}, {1.2, 5, 30}, {1.3, 5, 30}, {1.1, 3, 48}};
    printf("bench_detect: 640x360 frame from %s, haarcascade_frontalface_default, 1 thread, median of %d\n", path,
           reps);
    double *t = malloc(sizeof(double) * (size_t)reps);
    for (size_t s = 0; s < sizeof sets / sizeof sets[0]; s++) {
        face_detect_params p;
        face_detect_params_default(&p);
        p.scale_factor = sets[s].sf;
        p.min_neighbors = sets[s].mn;
        p.min_w = p.min_h = sets[s].min;
        int n = 0;
        for (int r = 0; r < reps; r++) {
            face_box *b;
            double t0 = time_now();
            if (face_detect(fc, frame, 640, 360, 640, &p, &b, &n)) {
                fprintf(stderr, "bench_detect: %s\n", ferc_last_error());
                return 1;
            }
            t[r] = time_now() - t0;
            free(b);
        }
        qsort(t, (size_t)reps, sizeof *t, cmp_double);
        printf("  scale %.1f  neighbours %d  min size %2d: %7.2f ms  (%d faces)\n", sets[s].sf, sets[s].mn,
               sets[s].min, 1e3 * t[reps / 2], n);
    }
    free(t);
    face_cascade_destroy(fc);
    free(frame);
    free(gray);
    image_free(&rgb);
    return 0;
}
