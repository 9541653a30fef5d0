/* face/face_json: JSON of face results (see face_json.h). */
#include <math.h>

#include "face/face_json.h"
#include "face/recognize.h"

void face_json_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(out, "\\%c", *p);
        else if (*p == '\n') fputs("\\n", out);
        else if (*p == '\t') fputs("\\t", out);
        else if (*p < 0x20) fprintf(out, "\\u%04x", *p);
        else fputc(*p, out);
    }
    fputc('"', out);
}

void face_json_number(FILE *out, double v)
{
    if (isfinite(v)) fprintf(out, "%.9g", v);
    else fputs("null", out);
}

void face_json_probs(FILE *out, const char *const *names, int k, const float *p)
{
    fputc('{', out);
    for (int j = 0; j < k; j++) {
        if (j) fputs(", ", out);
        face_json_string(out, names[j]);
        fputs(": ", out);
        face_json_number(out, p[j]);
    }
    fputc('}', out);
}

void face_json_write(FILE *out, const char *const *names, int k, const face_json_face *f)
{
    const int lab = face_argmax(f->probs, k);
    fputc('{', out);
    if (f->id >= 0) fprintf(out, "\"id\": %d, ", f->id);
    fprintf(out, "\"box\": [%d, %d, %d, %d], \"label\": ", f->box->x, f->box->y, f->box->w, f->box->h);
    face_json_string(out, names[lab]);
    fputs(", \"confidence\": ", out);
    face_json_number(out, f->probs[lab]);
    fputs(", \"probabilities\": ", out);
    face_json_probs(out, names, k, f->probs);
    if (f->raw_probs) {
        fputs(", \"raw_label\": ", out);
        face_json_string(out, names[face_argmax(f->raw_probs, k)]);
        fputs(", \"raw_probabilities\": ", out);
        face_json_probs(out, names, k, f->raw_probs);
    }
    if (f->logits) {
        fputs(", \"logits\": [", out);
        for (int j = 0; j < k; j++) {
            if (j) fputs(", ", out);
            face_json_number(out, f->logits[j]);
        }
        fputc(']', out);
    }
    if (f->det) { /* keypoints 0 and 1: the subject's right and left eye */
        fputs(", \"detection_score\": ", out);
        face_json_number(out, f->det->score);
        fputs(", \"eyes\": {\"right\": [", out);
        face_json_number(out, f->det->kp[0][0]);
        fputs(", ", out);
        face_json_number(out, f->det->kp[0][1]);
        fputs("], \"left\": [", out);
        face_json_number(out, f->det->kp[1][0]);
        fputs(", ", out);
        face_json_number(out, f->det->kp[1][1]);
        fputs("]}", out);
    }
    fputc('}', out);
}
