/* face/face_json: the one JSON form of a face result, shared by `ferc predict --json`,
 * `ferc camera --jsonl` and `ferc serve`.
 *
 * A face is written as one object, keys in this order (optional ones only when given):
 *     {["id": ID,] "box": [x, y, w, h], "label": NAME, "confidence": P,
 *      "probabilities": {NAME: p, ...},
 *      ["raw_label": NAME, "raw_probabilities": {NAME: p, ...},]
 *      ["logits": [...]]}
 * `probabilities` are the ones the label is taken from: the smoothed ones of a tracked face,
 * the network's (averaged over the test-time views) otherwise; `raw_*` are the frame's own
 * when they differ from them (tracking). Numbers are printed with 9 significant digits, so
 * that a float reads back exactly; NaN and infinities become null.
 *
 * Usage:
 *     face_json_face f = {.box = &b, .id = -1, .probs = p, .logits = l};
 *     face_json_write(stdout, names, K, &f);
 */
#ifndef FERC_FACE_JSON_H
#define FERC_FACE_JSON_H

#include <stdio.h>

#include "face/blazeface.h"
#include "face/cascade.h"

typedef struct face_json_face {
    const face_box *box;
    int id;                 /* track id, < 0: not tracked (no "id" key) */
    const float *probs;     /* K probabilities the label comes from */
    const float *raw_probs; /* K, or NULL: no raw_label / raw_probabilities */
    const float *logits;    /* K, or NULL: no logits */
    const blazeface_det *det; /* the CNN detector's detection of this face, or NULL */
} face_json_face;

/* A JSON string literal of s (quotes and escapes). */
void face_json_string(FILE *out, const char *s);
/* A number with 9 significant digits, or null when not finite. */
void face_json_number(FILE *out, double v);
/* {NAME: p, ...} over k classes. */
void face_json_probs(FILE *out, const char *const *names, int k, const float *p);
/* One face object (see above). */
void face_json_write(FILE *out, const char *const *names, int k, const face_json_face *f);

#endif
