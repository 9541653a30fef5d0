/* face/recognize: detection + batched classification of the faces of a frame (see recognize.h). */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "face/recognize.h"
#include "models/classify.h"

#define RECOG_MAX_PLANS 12 /* batch sizes 1 .. 2^11 */

struct face_recognizer {
    face_recognizer *base;     /* NULL: owns g, fc, meta, names; else borrows them from base */
    pthread_mutex_t plan_lock; /* the base's: planning writes the graph's shapes */
    face_cascade *fc;
    blazeface *bf;             /* the CNN detector: every recognizer has its own (plans, buffers) */
    char *bf_path;             /* its file, for face_recognizer_share */
    blazeface_det *dets;       /* the CNN's detections of the last call */
    int ndets;
    face_recog_params p;
    nn_graph *g;
    models_meta meta;
    char **names;              /* class names (the file's, or "0", "1", ...) */
    nn_exec *plans[RECOG_MAX_PLANS]; /* plans[i] for batch 1 << i, built on first use */
    int views;                 /* test-time augmentation views per face */
    float *in;                 /* (max_batch, 3, S, S) preprocessed faces (= x without tta) */
    float *x;                  /* (views * max_batch rounded up to a power of two, 3, S, S) network input */
    float *out, *pv;           /* (as many rows, K) logits and their softmax */
    uint8_t *gray, *small;     /* detection buffers, reused between frames */
    size_t gray_cap, small_cap;
};

int face_detector_parse(const char *s, face_detector_kind *k)
{
    if (s && !strcmp(s, "haar")) *k = FACE_DETECTOR_HAAR;
    else if (s && !strcmp(s, "blazeface")) *k = FACE_DETECTOR_BLAZEFACE;
    else return ferc_set_error(FERC_ERR_INVALID, "unknown face detector '%s' (haar or blazeface)", s ? s : "");
    return FERC_OK;
}

const char *face_detector_name(face_detector_kind k) { return k == FACE_DETECTOR_BLAZEFACE ? "blazeface" : "haar"; }

void face_recog_params_default(face_recog_params *p)
{
    p->detector = FACE_DETECTOR_BLAZEFACE;
    blazeface_params_default(&p->blazeface);
    face_detect_params_default(&p->detect);
    p->detect_scale = 1.0;
    p->margin = FACE_DEFAULT_MARGIN;
    p->max_batch = 16;
    p->tta = CLASSIFY_TTA_FLIP;
    p->align = 0;
    p->bf16 = 0;
}

static void free_buffers(face_recognizer *r);

void face_recognizer_destroy(face_recognizer *r)
{
    if (!r) return;
    for (int i = 0; i < RECOG_MAX_PLANS; i++) nn_exec_destroy(r->plans[i]);
    free_buffers(r);
    free(r->gray);
    free(r->small);
    blazeface_destroy(r->bf);
    free(r->dets);
    free(r->bf_path);
    if (r->base) {
        free(r);
        return;
    }
    pthread_mutex_destroy(&r->plan_lock);
    if (r->names)
        for (int i = 0; i < r->meta.num_classes; i++) free(r->names[i]);
    free(r->names);
    nn_graph_destroy(r->g);
    models_meta_free(&r->meta);
    face_cascade_destroy(r->fc);
    free(r);
}

static void free_buffers(face_recognizer *r)
{
    if (r->in != r->x) free(r->in);
    free(r->x);
    free(r->out);
    free(r->pv);
    r->in = r->x = r->out = r->pv = NULL;
}

/* (Re)allocates the input and output buffers for tta's views of max_batch faces. Plans stay:
 * they depend on the batch size only. */
static int set_buffers(face_recognizer *r, classify_tta tta)
{
    const int views = classify_tta_views(tta), nb = r->p.max_batch, k = r->meta.num_classes;
    const size_t per = (size_t)3 * r->meta.img_size * r->meta.img_size;
    if (nb * views > 1 << (RECOG_MAX_PLANS - 1))
        return ferc_set_error(FERC_ERR_INVALID, "%d faces per pass with tta %s: more than %d inputs", nb,
                              classify_tta_name(tta), 1 << (RECOG_MAX_PLANS - 1));
    size_t cap = 1; /* a pass runs the plan of the next power of two >= its inputs */
    while (cap < (size_t)nb * views) cap *= 2;
    free_buffers(r);
    r->x = calloc(cap * per, sizeof(float));
    r->in = views > 1 ? calloc((size_t)nb * per, sizeof(float)) : r->x;
    r->out = malloc(cap * k * sizeof(float));
    r->pv = malloc(cap * k * sizeof(float));
    if (!r->x || !r->in || !r->out || !r->pv) {
        free_buffers(r);
        return ferc_set_error(FERC_ERR_NOMEM, "out of memory for %d faces with tta %s", nb, classify_tta_name(tta));
    }
    r->p.tta = tta;
    r->views = views;
    return FERC_OK;
}

int face_recognizer_set_bf16(face_recognizer *r, bool bf16)
{
    if (!r) return ferc_set_error(FERC_ERR_INVALID, "set_bf16: no recognizer");
    if (!!r->p.bf16 == bf16) return FERC_OK;
    r->p.bf16 = bf16;
    for (int i = 0; i < RECOG_MAX_PLANS; i++) { /* planned again on first use */
        nn_exec_destroy(r->plans[i]);
        r->plans[i] = NULL;
    }
    return FERC_OK;
}

int face_recognizer_set_tta(face_recognizer *r, classify_tta tta)
{
    int rc = classify_tta_check(tta);
    if (rc || (tta == r->p.tta && r->x)) return rc;
    classify_tta old = r->p.tta;
    rc = set_buffers(r, tta);
    if (rc && set_buffers(r, old)) return rc; /* out of memory twice: the recognizer has no buffers */
    return rc;
}

int face_recognizer_create(face_recognizer **out, const char *model_path, const char *cascade_path,
                           const face_recog_params *p)
{
    *out = NULL;
    face_recog_params def;
    if (!p) face_recog_params_default(&def), p = &def;
    if (!(p->detect_scale > 0 && p->detect_scale <= 1))
        return ferc_set_error(FERC_ERR_INVALID, "detection scale must be in (0, 1] (got %g)", p->detect_scale);
    if (!(p->margin >= 0 && p->margin <= 2))
        return ferc_set_error(FERC_ERR_INVALID, "face margin must be in [0, 2] (got %g)", (double)p->margin);
    if (classify_tta_check(p->tta)) return FERC_ERR_INVALID;
    const int most = (1 << (RECOG_MAX_PLANS - 1)) / classify_tta_views(p->tta);
    if (p->max_batch < 1 || p->max_batch > most)
        return ferc_set_error(FERC_ERR_INVALID, "max batch must be in [1, %d] with tta %s (got %d)", most,
                              classify_tta_name(p->tta), p->max_batch);
    face_recognizer *r = calloc(1, sizeof *r);
    if (!r) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    r->p = *p;
    pthread_mutex_init(&r->plan_lock, NULL);
    int nb = 1;
    while (nb < p->max_batch) nb *= 2;
    r->p.max_batch = nb;
    int rc = models_load(model_path, &r->g, &r->meta);
    if (!rc && r->meta.channels != 3)
        rc = ferc_set_error(FERC_ERR_UNSUPPORTED, "%s: %d input channels; ferc's networks take 3", model_path, r->meta.channels);
    if (!rc && (rc = nn_graph_infer_shapes(r->g, 1, 3, r->meta.img_size, r->meta.img_size)))
        ferc_wrap_error(rc, "%s (input size %d)", model_path, r->meta.img_size);
    const int k = r->meta.num_classes;
    if (!rc) {
        r->names = calloc((size_t)k, sizeof *r->names);
        if (!r->names) rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory");
        else rc = set_buffers(r, p->tta);
    }
    for (int i = 0; !rc && i < k; i++) {
        char num[16];
        snprintf(num, sizeof num, "%d", i);
        r->names[i] = strdup(r->meta.class_names ? r->meta.class_names[i] : num);
        if (!r->names[i]) rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    }
    if (!rc && p->detector == FACE_DETECTOR_BLAZEFACE) {
        if (!(rc = blazeface_load(&r->bf, cascade_path)) && cascade_path && !(r->bf_path = strdup(cascade_path)))
            rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    } else if (!rc) {
        rc = face_cascade_load(&r->fc, cascade_path);
    }
    if (rc) {
        face_recognizer_destroy(r);
        return rc;
    }
    *out = r;
    return FERC_OK;
}

int face_recognizer_share(face_recognizer **out, face_recognizer *base)
{
    *out = NULL;
    face_recognizer *r = calloc(1, sizeof *r);
    if (!r) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    face_recognizer *owner = base->base ? base->base : base;
    r->base = owner;
    r->fc = owner->fc;
    r->g = owner->g;
    r->meta = owner->meta;
    r->names = owner->names;
    r->p = base->p;
    int rc = set_buffers(r, base->p.tta);
    if (!rc && owner->bf) rc = blazeface_load(&r->bf, owner->bf_path);
    if (rc) {
        face_recognizer_destroy(r);
        return rc;
    }
    *out = r;
    return FERC_OK;
}

const models_meta *face_recognizer_meta(const face_recognizer *r) { return &r->meta; }
const char *const *face_recognizer_class_names(const face_recognizer *r) { return (const char *const *)r->names; }
int face_recognizer_num_classes(const face_recognizer *r) { return r->meta.num_classes; }

const char *face_recognizer_class_name(const face_recognizer *r, int i)
{
    return i >= 0 && i < r->meta.num_classes ? r->names[i] : NULL;
}

int face_argmax(const float *v, int k)
{
    int best = 0;
    for (int j = 1; j < k; j++)
        if (v[j] > v[best]) best = j;
    return best;
}

static int grow(uint8_t **buf, size_t *cap, size_t need)
{
    if (need <= *cap) return FERC_OK;
    uint8_t *nb = realloc(*buf, need);
    if (!nb) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    *buf = nb;
    *cap = need;
    return FERC_OK;
}

const blazeface_det *face_recognizer_last_detections(const face_recognizer *r, int *n)
{
    *n = r->ndets;
    return r->dets;
}

/* The CNN: its boxes, turned into Haar's framing. */
static int detect_cnn(face_recognizer *r, const image *img, face_box **boxes, int *n)
{
    free(r->dets);
    r->dets = NULL;
    r->ndets = 0;
    int rc = blazeface_detect(r->bf, img, &r->p.blazeface, &r->dets, &r->ndets);
    if (rc || !r->ndets) return rc;
    face_box *b = malloc((size_t)r->ndets * sizeof *b);
    if (!b) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    for (int i = 0; i < r->ndets; i++) {
        const blazeface_det *d = &r->dets[i];
        const float side = fmaxf(d->x1 - d->x0, d->y1 - d->y0), s = FACE_BLAZEFACE_SIDE * side;
        const float cx = 0.5f * (d->x0 + d->x1), cy = 0.5f * (d->y0 + d->y1) + FACE_BLAZEFACE_SHIFT_Y * side;
        const int w = (int)lroundf(s) > 1 ? (int)lroundf(s) : 1;
        b[i] = (face_box){(int)lroundf(cx - 0.5f * s), (int)lroundf(cy - 0.5f * s), w, w};
    }
    *boxes = b;
    *n = r->ndets;
    return FERC_OK;
}

int face_recognizer_detect(face_recognizer *r, const image *img, face_box **boxes, int *n)
{
    *boxes = NULL;
    *n = 0;
    if (!img || !img->data || img->width <= 0 || img->height <= 0)
        return ferc_set_error(FERC_ERR_INVALID, "detect: empty image");
    if (r->bf) return detect_cnn(r, img, boxes, n);
    const int w = img->width, h = img->height;
    int rc;
    const uint8_t *gray;
    size_t gstride;
    if (img->channels == 1) {
        gray = img->data;
        gstride = img->stride;
    } else if (img->channels == 3 || img->channels == 4) {
        if ((rc = grow(&r->gray, &r->gray_cap, (size_t)w * h))) return rc;
        face_rgb_to_gray(img->data, img->stride, img->channels, w, h, r->gray, (size_t)w);
        gray = r->gray;
        gstride = (size_t)w;
    } else {
        return ferc_set_error(FERC_ERR_UNSUPPORTED, "detect: %d-channel images are not supported", img->channels);
    }
    face_detect_params dp = r->p.detect;
    const double sc = r->p.detect_scale;
    int dw = w, dh = h;
    if (sc < 1) {
        dw = (int)lround(w * sc);
        dh = (int)lround(h * sc);
        if (dw < 1) dw = 1;
        if (dh < 1) dh = 1;
        if ((rc = grow(&r->small, &r->small_cap, (size_t)dw * dh))) return rc;
        if ((rc = face_resize_gray(gray, w, h, gstride, r->small, dw, dh, (size_t)dw))) return rc;
        gray = r->small;
        gstride = (size_t)dw;
        dp.min_w = (int)lround(dp.min_w * sc);
        dp.min_h = (int)lround(dp.min_h * sc);
        dp.max_w = (int)lround(dp.max_w * sc);
        dp.max_h = (int)lround(dp.max_h * sc);
    }
    if ((rc = face_detect(r->fc, gray, dw, dh, gstride, &dp, boxes, n))) return rc;
    if (sc < 1) {
        const double fx = (double)w / dw, fy = (double)h / dh;
        for (int i = 0; i < *n; i++) {
            face_box *b = &(*boxes)[i];
            int x0 = (int)lround(b->x * fx), y0 = (int)lround(b->y * fy);
            int x1 = (int)lround((b->x + b->w) * fx), y1 = (int)lround((b->y + b->h) * fy);
            if (x1 > w) x1 = w;
            if (y1 > h) y1 = h;
            *b = (face_box){x0, y0, x1 - x0, y1 - y0};
        }
    }
    return FERC_OK;
}

int face_recognizer_crop_turned(const face_recognizer *r, const image *img, const face_box *box, float angle, image *dst)
{
    memset(dst, 0, sizeof *dst);
    if (box->w <= 0 || box->h <= 0) return ferc_set_error(FERC_ERR_INVALID, "crop: empty box %dx%d", box->w, box->h);
    const int mx = (int)lround(box->w * (double)r->p.margin), my = (int)lround(box->h * (double)r->p.margin);
    image crop;
    int rc = angle == 0 ? image_crop(&crop, img, box->x - mx, box->y - my, box->w + 2 * mx, box->h + 2 * my)
                        : image_crop_rotated(&crop, img, box->x + 0.5 * box->w, box->y + 0.5 * box->h, box->w + 2 * mx,
                                             box->h + 2 * my, angle);
    if (rc) return rc;
    if (crop.channels == 1) {
        *dst = crop;
        return FERC_OK;
    }
    rc = image_to_gray(dst, &crop);
    image_free(&crop);
    return rc;
}

int face_recognizer_crop(const face_recognizer *r, const image *img, const face_box *box, image *dst)
{
    return face_recognizer_crop_turned(r, img, box, 0, dst);
}

int face_recognizer_aligns(const face_recognizer *r) { return r->p.align && r->bf; }

float face_eye_angle(const blazeface_det *d) { return atan2f(d->kp[1][1] - d->kp[0][1], d->kp[1][0] - d->kp[0][0]); }

/* The plan for batch 1 << i, built on first use. */
static int plan(face_recognizer *r, int i, nn_exec **ex)
{
    if (!r->plans[i]) {
        const int s = r->meta.img_size;
        pthread_mutex_t *lock = r->base ? &r->base->plan_lock : &r->plan_lock;
        pthread_mutex_lock(lock);
        int rc = nn_exec_create(&r->plans[i], r->g, NULL, 1 << i, 3, s, s, r->p.bf16 ? NN_EXEC_BF16 : 0);
        pthread_mutex_unlock(lock);
        if (rc) return ferc_wrap_error(rc, "planning a batch of %d faces", 1 << i);
    }
    *ex = r->plans[i];
    return FERC_OK;
}

/* Runs the network on the first m preprocessed faces of r->in (m <= max_batch): all their
 * test-time views in one batch, padded with zeros to the plan's batch, and writes rows [0, m)
 * of logits/probs (either may be NULL): with tta, the mean of the views' probabilities and
 * its log as logits (see classify.h). */
static int run_filled(face_recognizer *r, int m, float *logits, float *probs)
{
    const int k = r->meta.num_classes, s = r->meta.img_size, V = r->views, M = V * m;
    const size_t per = (size_t)3 * s * s;
    if (!r->x) return ferc_set_error(FERC_ERR_NOMEM, "the recognizer lost its buffers (out of memory)");
    if (V > 1)
        for (int v = 0; v < V; v++) classify_tta_view(r->in, r->x + (size_t)v * m * per, m, s, r->p.tta, v);
    int pi = 0;
    while ((1 << pi) < M) pi++;
    memset(r->x + (size_t)M * per, 0, (size_t)((1 << pi) - M) * per * sizeof(float));
    nn_exec *ex = NULL;
    int rc;
    if ((rc = plan(r, pi, &ex))) return rc;
    if ((rc = nn_exec_forward(ex, r->x, false, r->out))) return rc;
    if (V == 1) {
        if (logits) memcpy(logits, r->out, (size_t)m * k * sizeof(float));
        if (probs) classifier_softmax(r->out, m, k, probs);
        return FERC_OK;
    }
    classifier_softmax(r->out, M, k, r->pv);
    classify_tta_average(r->pv, V, (size_t)m * k, logits, probs);
    return FERC_OK;
}

int face_recognizer_classify(face_recognizer *r, const image *img, const face_box *boxes, int n, float *logits,
                             float *probs)
{
    return face_recognizer_classify_turned(r, img, boxes, NULL, n, logits, probs);
}

int face_recognizer_classify_turned(face_recognizer *r, const image *img, const face_box *boxes, const float *angles,
                                    int n, float *logits, float *probs)
{
    const int k = r->meta.num_classes, s = r->meta.img_size;
    const size_t per = (size_t)3 * s * s;
    for (int start = 0; start < n; start += r->p.max_batch) {
        const int m = n - start < r->p.max_batch ? n - start : r->p.max_batch;
        int rc;
        for (int i = 0; i < m; i++) {
            image crop;
            if ((rc = face_recognizer_crop_turned(r, img, &boxes[start + i], angles ? angles[start + i] : 0, &crop)))
                return rc;
            rc = classify_preprocess(&r->meta, &crop, r->in + (size_t)i * per);
            image_free(&crop);
            if (rc) return rc;
        }
        if ((rc = run_filled(r, m, logits ? logits + (size_t)start * k : NULL, probs ? probs + (size_t)start * k : NULL)))
            return rc;
    }
    return FERC_OK;
}

int face_recognizer_classify_crop(face_recognizer *r, const image *face, float *logits, float *probs)
{
    if (!face || !face->data || face->width <= 0 || face->height <= 0)
        return ferc_set_error(FERC_ERR_INVALID, "classify: empty image");
    image gray = {0};
    int rc = FERC_OK;
    if (face->channels != 1 && (rc = image_to_gray(&gray, face))) return rc;
    rc = classify_preprocess(&r->meta, face->channels == 1 ? face : &gray, r->in);
    image_free(&gray);
    return rc ? rc : run_filled(r, 1, logits, probs);
}

int face_recognizer_classify_detected(face_recognizer *r, const image *img, const face_box *boxes, int n,
                                      float *logits, float *probs)
{
    float *angles = NULL;
    if (n && face_recognizer_aligns(r) && r->dets && r->ndets == n) {
        if (!(angles = malloc((size_t)n * sizeof *angles))) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
        for (int i = 0; i < n; i++) angles[i] = face_eye_angle(&r->dets[i]);
    }
    int rc = face_recognizer_classify_turned(r, img, boxes, angles, n, logits, probs);
    free(angles);
    return rc;
}

int face_recognize(face_recognizer *r, const image *img, face_box **boxes, int *n, float **logits, float **probs)
{
    *logits = *probs = NULL;
    int rc = face_recognizer_detect(r, img, boxes, n);
    if (rc || !*n) return rc;
    const size_t sz = (size_t)*n * r->meta.num_classes * sizeof(float);
    *logits = malloc(sz);
    *probs = malloc(sz);
    if (!*logits || !*probs) rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    if (!rc) rc = face_recognizer_classify_detected(r, img, *boxes, *n, *logits, *probs);
    if (rc) {
        free(*boxes), free(*logits), free(*probs);
        *boxes = NULL, *logits = *probs = NULL;
        *n = 0;
    }
    return rc;
}
