/* api: the public recognition API of include/ferc.h, a thin layer over face/recognize and
 * image/. Types cross the boundary by copy (ferc_image has image's layout by construction). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ferc.h"

#include "core/core.h"
#include "face/recognize.h"
#include "face/stream.h"
#include "image/image.h"

#ifndef FERC_DEFAULT_MODEL
#define FERC_DEFAULT_MODEL "ferc-resnet18-fer96.safetensors"
#endif
#ifndef FERC_DATA_DIR
#define FERC_DATA_DIR "/usr/local/share/ferc"
#endif

struct ferc_recognizer {
    face_recognizer *r;
};

static image as_image(const ferc_image *img)
{
    return (image){.width = img->width, .height = img->height, .channels = img->channels, .stride = img->stride,
                   .data = img->data};
}

int ferc_image_load(ferc_image *img, const char *path)
{
    memset(img, 0, sizeof *img);
    image im;
    int rc = image_load(&im, path, IMAGE_MODE_RGB, 1);
    if (rc) return rc;
    *img = (ferc_image){.width = im.width, .height = im.height, .channels = im.channels, .stride = im.stride,
                        .data = im.data};
    return FERC_OK;
}

void ferc_image_free(ferc_image *img)
{
    if (!img) return;
    free(img->data);
    memset(img, 0, sizeof *img);
}

static int readable(const char *path) { return access(path, R_OK) == 0; }

const char *ferc_default_model_path(void)
{
    static _Thread_local char buf[4096];
    const char *env = getenv("FERC_MODEL");
    if (env && *env) return env;
    /* the source tree ferc was built from (a build folder next to models/) */
    snprintf(buf, sizeof buf, "%s/models/%s", FERC_SOURCE_DIR, FERC_DEFAULT_MODEL);
    if (readable(buf)) return buf;
    /* next to the executable: <prefix>/bin/ferc -> <prefix>/share/ferc/models, or build/ -> models/ */
    char exe[3072];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            snprintf(buf, sizeof buf, "%s/../share/ferc/models/%s", exe, FERC_DEFAULT_MODEL);
            if (readable(buf)) return buf;
            snprintf(buf, sizeof buf, "%s/../models/%s", exe, FERC_DEFAULT_MODEL);
            if (readable(buf)) return buf;
        }
    }
    snprintf(buf, sizeof buf, "%s/models/%s", FERC_DATA_DIR, FERC_DEFAULT_MODEL);
    if (readable(buf)) return buf;
    return NULL;
}

void ferc_recognizer_options_default(ferc_recognizer_options *o)
{
    blazeface_params bp;
    blazeface_params_default(&bp);
    *o = (ferc_recognizer_options){.detector = FERC_DETECTOR_BLAZEFACE, .tta = FERC_TTA_FLIP, .min_score = bp.min_score};
}

int ferc_recognizer_create_with(ferc_recognizer **out, const ferc_recognizer_options *o)
{
    *out = NULL;
    ferc_recognizer_options def;
    if (!o) ferc_recognizer_options_default(&def), o = &def;
    const char *model_path = o->model;
    if (!model_path && !(model_path = ferc_default_model_path()))
        return ferc_set_error(FERC_ERR_NOT_FOUND,
                              "no model given and the default model (%s) was not found; set FERC_MODEL or pass a path",
                              FERC_DEFAULT_MODEL);
    if (o->detector != FERC_DETECTOR_BLAZEFACE && o->detector != FERC_DETECTOR_HAAR)
        return ferc_set_error(FERC_ERR_INVALID, "unknown detector %d", (int)o->detector);
    if (!(o->min_score > 0 && o->min_score < 1))
        return ferc_set_error(FERC_ERR_INVALID, "min_score must be in (0, 1) (got %g)", (double)o->min_score);
    face_recog_params p;
    face_recog_params_default(&p);
    p.detector = o->detector == FERC_DETECTOR_HAAR ? FACE_DETECTOR_HAAR : FACE_DETECTOR_BLAZEFACE;
    p.blazeface.min_score = o->min_score;
    p.tta = (classify_tta)o->tta;
    if (o->precision != FERC_PRECISION_FP32 && o->precision != FERC_PRECISION_BF16)
        return ferc_set_error(FERC_ERR_INVALID, "unknown precision %d", (int)o->precision);
    p.bf16 = o->precision == FERC_PRECISION_BF16;
    ferc_recognizer *r = calloc(1, sizeof *r);
    if (!r) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    int rc = face_recognizer_create(&r->r, model_path, o->detector_file, &p);
    if (!rc && face_recognizer_num_classes(r->r) > FERC_MAX_CLASSES)
        rc = ferc_set_error(FERC_ERR_UNSUPPORTED, "%s: %d classes; the public API carries at most %d", model_path,
                            face_recognizer_num_classes(r->r), FERC_MAX_CLASSES);
    if (rc) {
        ferc_recognizer_destroy(r);
        return rc;
    }
    *out = r;
    return FERC_OK;
}

int ferc_recognizer_create(ferc_recognizer **out, const char *model_path, const char *cascade_path)
{
    ferc_recognizer_options o;
    ferc_recognizer_options_default(&o);
    o.model = model_path;
    if (cascade_path) {
        o.detector = FERC_DETECTOR_HAAR;
        o.detector_file = cascade_path;
    }
    return ferc_recognizer_create_with(out, &o);
}

void ferc_recognizer_destroy(ferc_recognizer *r)
{
    if (!r) return;
    face_recognizer_destroy(r->r);
    free(r);
}

int ferc_recognizer_num_classes(const ferc_recognizer *r) { return face_recognizer_num_classes(r->r); }

int ferc_recognizer_set_tta(ferc_recognizer *r, ferc_tta tta)
{
    if (!r) return ferc_set_error(FERC_ERR_INVALID, "set_tta: no recognizer");
    _Static_assert((int)FERC_TTA_NONE == (int)CLASSIFY_TTA_NONE && (int)FERC_TTA_FLIP == (int)CLASSIFY_TTA_FLIP &&
                       (int)FERC_TTA_TENCROP == (int)CLASSIFY_TTA_TENCROP,
                   "ferc_tta mirrors classify_tta");
    return face_recognizer_set_tta(r->r, (classify_tta)tta);
}

int ferc_recognizer_set_precision(ferc_recognizer *r, ferc_precision precision)
{
    if (!r) return ferc_set_error(FERC_ERR_INVALID, "set_precision: no recognizer");
    if (precision != FERC_PRECISION_FP32 && precision != FERC_PRECISION_BF16)
        return ferc_set_error(FERC_ERR_INVALID, "unknown precision %d", (int)precision);
    return face_recognizer_set_bf16(r->r, precision == FERC_PRECISION_BF16);
}

const char *ferc_recognizer_class_name(const ferc_recognizer *r, int i)
{
    return face_recognizer_class_name(r->r, i);
}

static void fill_face(ferc_face *f, const float *probs, int k)
{
    memset(f->probs, 0, sizeof f->probs);
    memcpy(f->probs, probs, (size_t)k * sizeof *probs);
    f->label = face_argmax(probs, k);
    f->confidence = probs[f->label];
}

int ferc_recognize(ferc_recognizer *r, const ferc_image *img, ferc_face **faces, int *count)
{
    *faces = NULL;
    *count = 0;
    if (!r || !img || !img->data) return ferc_set_error(FERC_ERR_INVALID, "recognize: no recognizer or no image");
    const image im = as_image(img);
    face_box *boxes;
    float *logits, *probs;
    int n, rc = face_recognize(r->r, &im, &boxes, &n, &logits, &probs);
    if (rc) return rc;
    const int k = face_recognizer_num_classes(r->r);
    ferc_face *out = n ? calloc((size_t)n, sizeof *out) : NULL;
    if (n && !out) rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    for (int i = 0; !rc && i < n; i++) {
        out[i].x = boxes[i].x, out[i].y = boxes[i].y, out[i].w = boxes[i].w, out[i].h = boxes[i].h;
        fill_face(&out[i], probs + (size_t)i * k, k);
    }
    free(boxes), free(logits), free(probs);
    if (rc) return rc;
    *faces = out;
    *count = n;
    return FERC_OK;
}

int ferc_classify(ferc_recognizer *r, const ferc_image *img, ferc_face *face)
{
    memset(face, 0, sizeof *face);
    if (!r || !img || !img->data) return ferc_set_error(FERC_ERR_INVALID, "classify: no recognizer or no image");
    const image im = as_image(img);
    float probs[FERC_MAX_CLASSES];
    int rc = face_recognizer_classify_crop(r->r, &im, NULL, probs);
    if (rc) return rc;
    face->w = img->width, face->h = img->height;
    fill_face(face, probs, face_recognizer_num_classes(r->r));
    return FERC_OK;
}

/* ---- streams ------------------------------------------------------------------------------ */

struct ferc_stream {
    ferc_recognizer *r;
    face_stream *s;
};

void ferc_stream_params_default(ferc_stream_params *p)
{
    face_track_params tp;
    face_track_params_default(&tp);
    *p = (ferc_stream_params){.smooth = tp.alpha, .memory = tp.max_missed, .detect_every = 1,
                              .iou_threshold = tp.iou_threshold};
}

int ferc_stream_create(ferc_stream **out, ferc_recognizer *r, const ferc_stream_params *p)
{
    *out = NULL;
    if (!r) return ferc_set_error(FERC_ERR_INVALID, "stream: no recognizer");
    ferc_stream_params def;
    if (!p) ferc_stream_params_default(&def), p = &def;
    if (!(p->smooth > 0 && p->smooth <= 1))
        return ferc_set_error(FERC_ERR_INVALID, "stream: smooth must be in (0, 1] (got %g)", (double)p->smooth);
    if (p->memory < 0) return ferc_set_error(FERC_ERR_INVALID, "stream: memory must be >= 0 (got %d)", p->memory);
    if (!(p->iou_threshold >= 0 && p->iou_threshold <= 1))
        return ferc_set_error(FERC_ERR_INVALID, "stream: iou_threshold must be in [0, 1] (got %g)", (double)p->iou_threshold);
    face_track_params tp = {.iou_threshold = p->iou_threshold, .max_missed = p->memory, .alpha = p->smooth};
    ferc_stream *s = calloc(1, sizeof *s);
    if (!s) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    s->r = r;
    int rc = face_stream_create(&s->s, face_recognizer_num_classes(r->r), &tp, p->detect_every);
    if (rc) {
        free(s);
        return rc;
    }
    *out = s;
    return FERC_OK;
}

int ferc_stream_process(ferc_stream *s, const ferc_image *frame, ferc_tracked_face **faces, int *count)
{
    *faces = NULL;
    *count = 0;
    if (!s || !frame || !frame->data) return ferc_set_error(FERC_ERR_INVALID, "stream: no stream or no frame");
    const image im = as_image(frame);
    face_stream_result res;
    int rc = face_stream_process(s->s, s->r->r, &im, &res);
    if (rc || !res.n) return rc;
    const int k = face_recognizer_num_classes(s->r->r);
    ferc_tracked_face *out = calloc((size_t)res.n, sizeof *out);
    if (!out) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    for (int i = 0; i < res.n; i++) {
        ferc_face *f = &out[i].face;
        f->x = res.boxes[i].x, f->y = res.boxes[i].y, f->w = res.boxes[i].w, f->h = res.boxes[i].h;
        fill_face(f, res.smoothed + (size_t)i * k, k);
        out[i].id = res.ids[i];
        memcpy(out[i].raw_probs, res.probs + (size_t)i * k, (size_t)k * sizeof(float));
    }
    *faces = out;
    *count = res.n;
    return FERC_OK;
}

void ferc_stream_destroy(ferc_stream *s)
{
    if (!s) return;
    face_stream_destroy(s->s);
    free(s);
}
