/* face/stream: detect (every Nth frame), classify, track (see stream.h). */
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "face/stream.h"

struct face_stream {
    face_tracker *t;
    int k, detect_every;
    long long frames;
    face_box *boxes;
    int n, cap;
    int *ids;
    float *logits, *probs, *smoothed;
};

int face_stream_create(face_stream **out, int num_classes, const face_track_params *tp, int detect_every)
{
    *out = NULL;
    if (num_classes < 1) return ferc_set_error(FERC_ERR_INVALID, "stream: %d classes", num_classes);
    if (detect_every < 1) return ferc_set_error(FERC_ERR_INVALID, "stream: detect every %d frames", detect_every);
    face_stream *s = calloc(1, sizeof *s);
    if (!s) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    s->k = num_classes;
    s->detect_every = detect_every;
    int rc = face_tracker_create(&s->t, num_classes, tp);
    if (rc) {
        free(s);
        return rc;
    }
    *out = s;
    return FERC_OK;
}

void face_stream_destroy(face_stream *s)
{
    if (!s) return;
    face_tracker_destroy(s->t);
    free(s->boxes);
    free(s->ids);
    free(s->logits);
    free(s->probs);
    free(s->smoothed);
    free(s);
}

long long face_stream_frames(const face_stream *s) { return s->frames; }

static int reserve(face_stream *s, int n)
{
    if (n <= s->cap) return FERC_OK;
    int c = n < 16 ? 16 : n;
    const size_t kb = (size_t)c * s->k * sizeof(float);
    face_box *b = realloc(s->boxes, (size_t)c * sizeof *b);
    if (b) s->boxes = b;
    int *ids = realloc(s->ids, (size_t)c * sizeof *ids);
    if (ids) s->ids = ids;
    float *l = realloc(s->logits, kb), *p = l ? realloc(s->probs, kb) : NULL, *m = p ? realloc(s->smoothed, kb) : NULL;
    if (l) s->logits = l;
    if (p) s->probs = p;
    if (m) s->smoothed = m;
    if (!b || !ids || !l || !p || !m) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    s->cap = c;
    return FERC_OK;
}

int face_stream_process(face_stream *s, face_recognizer *r, const image *frame, face_stream_result *res)
{
    memset(res, 0, sizeof *res);
    if (face_recognizer_num_classes(r) != s->k)
        return ferc_set_error(FERC_ERR_INVALID, "stream: made for %d classes, the model has %d", s->k,
                              face_recognizer_num_classes(r));
    const int detect = s->frames % s->detect_every == 0;
    double t = time_now(), t2;
    int rc;
    if (detect) {
        face_box *b;
        int n;
        if ((rc = face_recognizer_detect(r, frame, &b, &n))) return rc;
        if ((rc = reserve(s, n))) {
            free(b);
            return rc;
        }
        if (n) memcpy(s->boxes, b, (size_t)n * sizeof *b);
        free(b);
        s->n = n;
    } else {
        /* the faces of the last frame, at their tracks' current boxes */
        int n = 0;
        for (int i = 0; i < face_tracker_count(s->t); i++) {
            const face_track *tr = face_tracker_at(s->t, i);
            if (tr->missed == 0) s->boxes[n++] = tr->box;
        }
        s->n = n;
    }
    t2 = time_now();
    res->detect_s = t2 - t;
    t = t2;
    /* a detected frame's boxes are the detector's own (turned to level the eyes with p.align) */
    rc = detect ? face_recognizer_classify_detected(r, frame, s->boxes, s->n, s->logits, s->probs)
                : face_recognizer_classify(r, frame, s->boxes, s->n, s->logits, s->probs);
    if (rc) return rc;
    t2 = time_now();
    res->classify_s = t2 - t;
    t = t2;
    if ((rc = face_tracker_update(s->t, s->boxes, s->probs, s->n, s->ids))) return rc;
    for (int i = 0; i < s->n; i++) {
        const face_track *tr = face_tracker_get(s->t, s->ids[i]);
        const float *src = tr ? tr->smoothed : s->probs + (size_t)i * s->k;
        memcpy(s->smoothed + (size_t)i * s->k, src, (size_t)s->k * sizeof(float));
    }
    res->track_s = time_now() - t;
    s->frames++;
    res->n = s->n;
    res->detected = detect;
    res->boxes = s->boxes;
    res->ids = s->ids;
    res->logits = s->logits;
    res->probs = s->probs;
    res->smoothed = s->smoothed;
    if (detect) {
        int nd;
        const blazeface_det *d = face_recognizer_last_detections(r, &nd);
        res->dets = d && nd == s->n ? d : NULL;
    }
    return FERC_OK;
}
