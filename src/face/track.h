/* face/track: gives faces stable ids across frames and smooths their class probabilities.
 *
 * Each frame's detections are matched to the live tracks greedily by IoU (the best
 * overlapping pair first, pairs under iou_threshold never). A matched track takes the new
 * box and blends the new probabilities into its smoothed ones,
 *     smoothed = alpha * new + (1 - alpha) * smoothed        (alpha = 1: no smoothing),
 * a detection nobody claims starts a track with a fresh id (1, 2, 3, ... never reused), and a
 * track that goes unmatched for more than max_missed frames in a row is dropped. The memory
 * lets a face survive a frame or two the detector misses without changing its id.
 *
 * Usage:
 *     face_tracker *t;
 *     face_tracker_create(&t, K, NULL);
 *     per frame: face_tracker_update(t, boxes, probs, n, ids);   // ids[i]: track of detection i
 *                face_tracker_get(t, ids[i]) -> smoothed probabilities, age, ...
 *     face_tracker_destroy(t);
 */
#ifndef FERC_FACE_TRACK_H
#define FERC_FACE_TRACK_H

#include "face/cascade.h"

typedef struct face_track_params {
    float iou_threshold; /* least IoU for a match (default 0.3) */
    int max_missed;      /* frames a track survives without a detection (default 10) */
    float alpha;         /* weight of the new frame in the moving average, (0, 1] (default 0.3) */
} face_track_params;

void face_track_params_default(face_track_params *p);

typedef struct face_track {
    int id;
    face_box box;     /* last matched box */
    float *smoothed;  /* K probabilities (owned by the tracker) */
    int hits;         /* frames matched so far */
    int missed;       /* consecutive frames without a match (0 when matched this frame) */
    long long first_frame, last_frame;
} face_track;

typedef struct face_tracker face_tracker;

int face_tracker_create(face_tracker **out, int num_classes, const face_track_params *p);
void face_tracker_destroy(face_tracker *t);

/* One frame: n boxes with their probabilities (n, K) (probs may be NULL: the smoothed values
 * then stay as they are, new tracks start uniform). ids (n entries, may be NULL) receives the
 * track id of each detection. */
int face_tracker_update(face_tracker *t, const face_box *boxes, const float *probs, int n, int *ids);
/* The live track with this id, or NULL. Valid until the next update. */
const face_track *face_tracker_get(const face_tracker *t, int id);
/* Live tracks (matched this frame or within the memory), in creation order. */
int face_tracker_count(const face_tracker *t);
const face_track *face_tracker_at(const face_tracker *t, int i);

/* Intersection over union of two boxes (0 when either is empty). */
float face_box_iou(const face_box *a, const face_box *b);

#endif
