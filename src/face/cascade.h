/* face/cascade: a Viola-Jones cascade detector that reads OpenCV's cascade XML files and
 * reproduces cv::CascadeClassifier::detectMultiScale (OpenCV 4.x, CPU path) so that its boxes
 * can be compared one for one with OpenCV's.
 *
 * Supported files: the "new" stage format (<cascade><stageType>BOOST ... featureType HAAR or
 * LBP, stumps or trees, categorical LBP splits) and the old haarcascade format
 * (type_id="opencv-haar-classifier", converted on load the way OpenCV converts it). Every file
 * of Debian's opencv-data (haarcascades/ and lbpcascades/) loads.
 *
 * What "the same as OpenCV" covers: the scale list (window rounding, min/max size), the image
 * pyramid (each level resized from the original with OpenCV's bit-exact bilinear resize), the
 * 2-pixel window step below scale 2, the skip after a first-stage rejection, variance
 * normalization with its rejection of flat windows, float/double arithmetic of the stage sums,
 * groupRectangles(minNeighbors, eps 0.2) and clipping to the image.
 *
 * Usage:
 *     face_cascade *fc;
 *     if (face_cascade_load(&fc, NULL) != FERC_OK) ... ferc_last_error() ...
 *     face_detect_params p;
 *     face_detect_params_default(&p);
 *     face_box *boxes; int n;
 *     face_detect(fc, gray, width, height, stride, &p, &boxes, &n);
 *     ... free(boxes);
 *     face_cascade_destroy(fc);
 *
 * A loaded cascade is read-only: several threads may call face_detect on it at once.
 */
#ifndef FERC_FACE_CASCADE_H
#define FERC_FACE_CASCADE_H

#include <stddef.h>
#include <stdint.h>

#define FACE_CASCADE_DEFAULT_PATH "/usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml"

typedef struct face_cascade face_cascade;

typedef struct face_box {
    int x, y, w, h; /* pixels of the image given to face_detect */
} face_box;

typedef enum face_feature_kind { FACE_FEATURE_HAAR = 0, FACE_FEATURE_LBP = 1 } face_feature_kind;

/* detectMultiScale's parameters, same names and meaning. */
typedef struct face_detect_params {
    double scale_factor; /* > 1; OpenCV's default 1.1 */
    int min_neighbors;   /* groupRectangles threshold; 0 returns the raw hits; default 3 */
    int min_w, min_h;    /* smallest window; 0 = no limit */
    int max_w, max_h;    /* largest window; 0 = the image size */
} face_detect_params;

typedef struct face_cascade_info {
    face_feature_kind kind;
    int window_w, window_h;
    int stages, trees, nodes, features;
    int max_nodes_per_tree; /* 1 for stump cascades */
    int has_tilted;         /* Haar features rotated by 45 degrees */
    int old_format;         /* read from the old haarcascade layout */
} face_cascade_info;

/* OpenCV's defaults: scale 1.1, min neighbours 3, no size limits. */
void face_detect_params_default(face_detect_params *p);

/* Loads a cascade; path NULL means FACE_CASCADE_DEFAULT_PATH. A missing file returns
 * FERC_ERR_IO, a file that is not a cascade (bad XML, wrong structure, out-of-range indices or
 * rectangles) FERC_ERR_FORMAT, a HOG cascade FERC_ERR_UNSUPPORTED, each with a message naming
 * the file. */
int  face_cascade_load(face_cascade **out, const char *path);
void face_cascade_destroy(face_cascade *fc);
void face_cascade_get_info(const face_cascade *fc, face_cascade_info *info);

/* Detects objects in an 8-bit gray image (rows `stride` bytes apart). On success *boxes is a
 * malloc'ed array of *count boxes (NULL when none) that the caller frees with free(). */
int face_detect(const face_cascade *fc, const uint8_t *gray, int width, int height, size_t stride,
                const face_detect_params *p, face_box **boxes, int *count);

/* ---- building blocks, public for tests and for other front ends ------------------------- */

/* OpenCV's cvtColor(COLOR_RGB2GRAY) for 8-bit data (14-bit fixed point), which is what
 * detectMultiScale applies to colour input. Differs from PIL's "L" by one level at times.
 * src has `channels` (3 or 4, RGB order) interleaved. */
void face_rgb_to_gray(const uint8_t *src, size_t src_stride, int channels, int width, int height,
                      uint8_t *dst, size_t dst_stride);

/* cv::resize(..., INTER_LINEAR_EXACT) for 8-bit gray: bit-exact 8.8 fixed-point bilinear with
 * OpenCV's pixel-centre mapping and edge clamping (no antialiasing), or the 2x2 box filter
 * OpenCV switches to for an exact factor-2 shrink. */
int face_resize_gray(const uint8_t *src, int sw, int sh, size_t sstride, uint8_t *dst, int dw,
                     int dh, size_t dstride);

/* cv::groupRectangles(rects, group_threshold, eps) in place; *n is updated. With
 * group_threshold <= 0 the list is left as it is. */
int face_group_rectangles(face_box *rects, int *n, int group_threshold, double eps);

#endif
