/* face/track: IoU tracker with exponential smoothing (see track.h). Frames hold a handful of
 * faces, so the O(n*m log) greedy matching over all pairs costs nothing. */
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "face/track.h"

struct face_tracker {
    face_track_params p;
    int k;
    face_track *tracks;
    int count, cap;
    int next_id;
    long long frame;
};

void face_track_params_default(face_track_params *p)
{
    p->iou_threshold = 0.3f;
    p->max_missed = 10;
    p->alpha = 0.3f;
}

float face_box_iou(const face_box *a, const face_box *b)
{
    if (a->w <= 0 || a->h <= 0 || b->w <= 0 || b->h <= 0) return 0;
    int x0 = a->x > b->x ? a->x : b->x, y0 = a->y > b->y ? a->y : b->y;
    int x1 = a->x + a->w < b->x + b->w ? a->x + a->w : b->x + b->w;
    int y1 = a->y + a->h < b->y + b->h ? a->y + a->h : b->y + b->h;
    if (x1 <= x0 || y1 <= y0) return 0;
    double inter = (double)(x1 - x0) * (y1 - y0);
    double uni = (double)a->w * a->h + (double)b->w * b->h - inter;
    return (float)(inter / uni);
}

int face_tracker_create(face_tracker **out, int num_classes, const face_track_params *p)
{
    *out = NULL;
    face_track_params def;
    if (!p) face_track_params_default(&def), p = &def;
    if (num_classes < 1) return ferc_set_error(FERC_ERR_INVALID, "tracker: %d classes", num_classes);
    if (!(p->alpha > 0 && p->alpha <= 1)) return ferc_set_error(FERC_ERR_INVALID, "smoothing alpha must be in (0, 1] (got %g)", (double)p->alpha);
    if (!(p->iou_threshold >= 0 && p->iou_threshold <= 1) || p->max_missed < 0)
        return ferc_set_error(FERC_ERR_INVALID, "tracker: IoU threshold in [0, 1] and max_missed >= 0 required");
    face_tracker *t = calloc(1, sizeof *t);
    if (!t) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    t->p = *p;
    t->k = num_classes;
    t->next_id = 1;
    *out = t;
    return FERC_OK;
}

void face_tracker_destroy(face_tracker *t)
{
    if (!t) return;
    for (int i = 0; i < t->count; i++) free(t->tracks[i].smoothed);
    free(t->tracks);
    free(t);
}

typedef struct pair {
    float iou;
    int track, det;
} pair;

static int cmp_pair(const void *a, const void *b)
{
    const pair *x = a, *y = b;
    if (x->iou != y->iou) return x->iou > y->iou ? -1 : 1;
    if (x->track != y->track) return x->track - y->track; /* deterministic ties */
    return x->det - y->det;
}

int face_tracker_update(face_tracker *t, const face_box *boxes, const float *probs, int n, int *ids)
{
    const int m = t->count, k = t->k;
    int rc = FERC_OK;
    pair *pairs = NULL;
    int *det_track = NULL, *track_det = NULL, np = 0;
    if (n > 0) {
        pairs = malloc((size_t)(m > 0 ? m : 1) * n * sizeof *pairs);
        det_track = malloc((size_t)n * sizeof *det_track);
        track_det = malloc((size_t)(m > 0 ? m : 1) * sizeof *track_det);
        if (!pairs || !det_track || !track_det) {
            rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory");
            goto done;
        }
    }
    for (int i = 0; i < n; i++) det_track[i] = -1;
    for (int j = 0; j < m; j++) {
        if (track_det) track_det[j] = -1;
        for (int i = 0; i < n; i++) {
            float iou = face_box_iou(&t->tracks[j].box, &boxes[i]);
            if (iou > 0 && iou >= t->p.iou_threshold) pairs[np++] = (pair){iou, j, i};
        }
    }
    if (np > 1) qsort(pairs, (size_t)np, sizeof *pairs, cmp_pair); /* pairs may be NULL when empty */
    for (int q = 0; q < np; q++)
        if (track_det[pairs[q].track] < 0 && det_track[pairs[q].det] < 0) {
            track_det[pairs[q].track] = pairs[q].det;
            det_track[pairs[q].det] = pairs[q].track;
        }
    /* update matched, age unmatched */
    for (int j = 0; j < m; j++) {
        face_track *tr = &t->tracks[j];
        int i = n > 0 ? track_det[j] : -1;
        if (i < 0) {
            tr->missed++;
            continue;
        }
        tr->box = boxes[i];
        tr->missed = 0;
        tr->hits++;
        tr->last_frame = t->frame;
        if (probs)
            for (int c = 0; c < k; c++)
                tr->smoothed[c] = t->p.alpha * probs[(size_t)i * k + c] + (1 - t->p.alpha) * tr->smoothed[c];
        if (ids) ids[i] = tr->id;
    }
    /* drop tracks past their memory (keeping order) */
    int w = 0;
    for (int j = 0; j < m; j++) {
        if (t->tracks[j].missed > t->p.max_missed) {
            free(t->tracks[j].smoothed);
            continue;
        }
        t->tracks[w++] = t->tracks[j];
    }
    t->count = w;
    /* new tracks */
    for (int i = 0; i < n; i++) {
        if (det_track[i] >= 0) continue;
        if (t->count == t->cap) {
            int nc = t->cap ? 2 * t->cap : 8;
            face_track *nt = realloc(t->tracks, (size_t)nc * sizeof *nt);
            if (!nt) {
                rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory");
                goto done;
            }
            t->tracks = nt;
            t->cap = nc;
        }
        face_track *tr = &t->tracks[t->count];
        memset(tr, 0, sizeof *tr);
        if (!(tr->smoothed = malloc((size_t)k * sizeof(float)))) {
            rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory");
            goto done;
        }
        for (int c = 0; c < k; c++) tr->smoothed[c] = probs ? probs[(size_t)i * k + c] : 1.0f / k;
        tr->id = t->next_id++;
        tr->box = boxes[i];
        tr->hits = 1;
        tr->first_frame = tr->last_frame = t->frame;
        t->count++;
        if (ids) ids[i] = tr->id;
    }
done:
    t->frame++;
    free(pairs);
    free(det_track);
    free(track_det);
    return rc;
}

const face_track *face_tracker_get(const face_tracker *t, int id)
{
    for (int i = 0; i < t->count; i++)
        if (t->tracks[i].id == id) return &t->tracks[i];
    return NULL;
}

int face_tracker_count(const face_tracker *t) { return t->count; }

const face_track *face_tracker_at(const face_tracker *t, int i) { return i >= 0 && i < t->count ? &t->tracks[i] : NULL; }
