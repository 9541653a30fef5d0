/* face/track: ids stay stable on a synthetic sequence (two moving faces, a detector miss, a
 * newcomer, a face that leaves for longer than the memory), IoU and the moving average. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ferc.h"
#include "face/track.h"
#include "testutil.h"

static void test_iou(void)
{
    face_box a = {0, 0, 10, 10}, b = {5, 0, 10, 10}, c = {20, 20, 5, 5}, e = {0, 0, 0, 10};
    CHECK(fabsf(face_box_iou(&a, &a) - 1) < 1e-6f);
    CHECK(fabsf(face_box_iou(&a, &b) - 50.0f / 150.0f) < 1e-6f, "%g", (double)face_box_iou(&a, &b));
    CHECK(face_box_iou(&a, &c) == 0);
    CHECK(face_box_iou(&a, &e) == 0);
}

static void test_sequence(void)
{
    enum { K = 3 };
    face_track_params p;
    face_track_params_default(&p);
    p.max_missed = 5;
    face_tracker *t;
    CHECK_OK(face_tracker_create(&t, K, &p));
    int id_a = -1, id_b = -1, id_c = -1;
    const float pa[K] = {0.8f, 0.1f, 0.1f}, pb[K] = {0.1f, 0.1f, 0.8f};
    for (int f = 0; f < 60; f++) {
        face_box boxes[3];
        float probs[3 * K];
        int who[3], n = 0;
        /* A walks right 3 px/frame with +-2 px jitter; B walks left and down */
        int jit = (f * 7) % 5 - 2;
        if (!(f >= 10 && f < 13)) { /* the detector misses A for 3 frames (memory 5) */
            boxes[n] = (face_box){20 + 3 * f + jit, 50, 80 + jit, 80 + jit};
            memcpy(probs + n * K, pa, sizeof pa);
            who[n++] = 0;
        }
        if (f < 30 || f >= 40) { /* B leaves for 10 frames, longer than the memory */
            boxes[n] = (face_box){500 - 2 * f, 40 + f, 90, 90};
            memcpy(probs + n * K, pb, sizeof pb);
            who[n++] = 1;
        }
        if (f >= 20) { /* C arrives */
            boxes[n] = (face_box){300, 300 - jit, 60, 60};
            float pc[K] = {0.2f, 0.6f, 0.2f};
            memcpy(probs + n * K, pc, sizeof pc);
            who[n++] = 2;
        }
        /* present the detections in a frame-dependent order: ids must not depend on it */
        if (f % 2 && n > 1) {
            face_box tb = boxes[0];
            boxes[0] = boxes[n - 1], boxes[n - 1] = tb;
            float tp[K];
            memcpy(tp, probs, sizeof tp);
            memcpy(probs, probs + (n - 1) * K, sizeof tp);
            memcpy(probs + (n - 1) * K, tp, sizeof tp);
            int tw = who[0];
            who[0] = who[n - 1], who[n - 1] = tw;
        }
        int ids[3];
        CHECK_OK(face_tracker_update(t, boxes, probs, n, ids));
        for (int i = 0; i < n; i++) {
            int *slot = who[i] == 0 ? &id_a : who[i] == 1 ? &id_b : &id_c;
            if (who[i] == 1 && f == 40) {
                CHECK(ids[i] != id_b, "B came back after 10 frames (> memory 5): it needs a new id, got %d again", ids[i]);
                CHECK(ids[i] == 4, "new ids are never reused: expected 4, got %d", ids[i]);
                *slot = ids[i];
            }
            if (*slot < 0) *slot = ids[i];
            CHECK(ids[i] == *slot, "frame %d: face %d has id %d, expected %d", f, who[i], ids[i], *slot);
        }
        if (f >= 10 && f < 13) {
            const face_track *ta = face_tracker_get(t, id_a);
            CHECK(ta && ta->missed == f - 9, "frame %d: A is remembered while missed", f);
        }
        if (f == 36) CHECK(face_tracker_get(t, id_b) == NULL, "B is forgotten after the memory");
    }
    CHECK(id_a == 1 && id_c == 3, "ids in order of appearance: A %d C %d", id_a, id_c);
    CHECK(face_tracker_count(t) == 3, "3 live tracks at the end, got %d", face_tracker_count(t));
    const face_track *ta = face_tracker_get(t, id_a);
    CHECK(ta && fabsf(ta->smoothed[0] - 0.8f) < 1e-5f, "constant input keeps its value");
    CHECK(ta && ta->hits == 57, "A matched on 57 frames, got %d", ta ? ta->hits : -1);
    face_tracker_destroy(t);
}

static void test_smoothing(void)
{
    face_track_params p;
    face_track_params_default(&p);
    p.alpha = 0.25f;
    face_tracker *t;
    CHECK_OK(face_tracker_create(&t, 2, &p));
    face_box b = {10, 10, 50, 50};
    float p0[2] = {1, 0}, p1[2] = {0, 1};
    int id;
    CHECK_OK(face_tracker_update(t, &b, p0, 1, &id));
    float want = 1;
    for (int i = 0; i < 4; i++) {
        CHECK_OK(face_tracker_update(t, &b, p1, 1, &id));
        want = 0.75f * want;
    }
    const face_track *tr = face_tracker_get(t, id);
    CHECK(tr && fabsf(tr->smoothed[0] - want) < 1e-6f && fabsf(tr->smoothed[1] - (1 - want)) < 1e-6f,
          "EMA: %g, want %g", tr ? (double)tr->smoothed[0] : -1.0, (double)want);
    /* an empty frame ages tracks; alpha 1 would copy the raw values */
    CHECK_OK(face_tracker_update(t, NULL, NULL, 0, NULL));
    CHECK(face_tracker_get(t, id) && face_tracker_get(t, id)->missed == 1);
    face_tracker_destroy(t);
    p.alpha = 0;
    CHECK(face_tracker_create(&t, 2, &p) == FERC_ERR_INVALID, "alpha 0 is refused");
}

int main(void)
{
    test_iou();
    test_sequence();
    test_smoothing();
    return test_finish("test_track");
}
