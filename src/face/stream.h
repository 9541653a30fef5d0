/* face/stream: recognition over a stream of frames, the one implementation behind
 * `ferc camera`, the server's sessions and the public ferc_stream.
 *
 * Per frame: detect the faces (on every detect_every-th frame; on the frames in between the
 * faces are classified again at their tracked boxes), classify them in one batch, and give
 * them to the tracker (face/track), which keeps their ids stable and smooths their
 * probabilities. The stream holds the state only (the tracker, the boxes); the recognizer
 * that does the work is passed to every call, so that many streams (server sessions) can
 * share a few recognizers.
 *
 * Usage:
 *     face_stream *s;
 *     face_stream_create(&s, face_recognizer_num_classes(r), &tp, 2);
 *     per frame: face_stream_process(s, r, &frame, &res);
 *                for i < res.n: res.boxes[i], res.ids[i], res.smoothed + i * K, res.probs + i * K
 *     face_stream_destroy(s);
 * A stream is used by one thread at a time.
 */
#ifndef FERC_FACE_STREAM_H
#define FERC_FACE_STREAM_H

#include "face/recognize.h"
#include "face/track.h"

typedef struct face_stream face_stream;

/* The faces of the last frame; the arrays belong to the stream and stay valid until the next
 * face_stream_process. */
typedef struct face_stream_result {
    int n;                 /* faces in this frame */
    int detected;          /* 1: the detector ran on this frame; 0: tracked boxes were reused */
    const face_box *boxes; /* n */
    const int *ids;        /* n track ids */
    const float *logits;   /* (n, K) the frame's own */
    const float *probs;    /* (n, K) the frame's own */
    const float *smoothed; /* (n, K) the tracks' smoothed probabilities (label from these) */
    const blazeface_det *dets; /* n: the CNN detector's detections on a detected frame, else NULL */
    double detect_s, classify_s, track_s; /* time spent in each stage for this frame */
} face_stream_result;

/* detect_every >= 1: run the detector on frames 0, N, 2N, ... of the stream. */
int face_stream_create(face_stream **out, int num_classes, const face_track_params *tp, int detect_every);
void face_stream_destroy(face_stream *s);
int face_stream_process(face_stream *s, face_recognizer *r, const image *frame, face_stream_result *res);
/* Frames processed so far. */
long long face_stream_frames(const face_stream *s);

#endif
