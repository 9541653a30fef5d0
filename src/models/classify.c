/* classify: model file -> preprocessing -> one eval forward pass per batch -> softmax. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "models/classify.h"

struct classifier {
    nn_graph *g;
    models_meta meta;
    nn_exec *ex;        /* planned for ex_batch inputs, or NULL */
    int ex_batch;
    classify_tta tta;
    bool bf16;          /* plans in bf16 (NN_EXEC_BF16) */
    char **default_names; /* "0", "1", ... when the file has no class names */
};

void classifier_destroy(classifier *c)
{
    if (!c) return;
    nn_exec_destroy(c->ex);
    nn_graph_destroy(c->g);
    if (c->default_names)
        for (int i = 0; i < c->meta.num_classes; i++) free(c->default_names[i]);
    free(c->default_names);
    models_meta_free(&c->meta);
    free(c);
}

int classifier_load(classifier **out, const char *path)
{
    *out = NULL;
    classifier *c = calloc(1, sizeof *c);
    if (!c) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    int rc = models_load(path, &c->g, &c->meta);
    if (!rc && c->meta.channels != 3)
        rc = ferc_set_error(FERC_ERR_UNSUPPORTED, "%s: %d input channels; ferc's networks take 3", path, c->meta.channels);
    if (!rc && (rc = nn_graph_infer_shapes(c->g, 1, 3, c->meta.img_size, c->meta.img_size)))
        ferc_wrap_error(rc, "%s (input size %d)", path, c->meta.img_size);
    if (!rc && !c->meta.class_names) {
        if (!(c->default_names = calloc((size_t)c->meta.num_classes, sizeof(char *)))) rc = FERC_ERR_NOMEM;
        for (int i = 0; !rc && i < c->meta.num_classes; i++) {
            char num[16];
            snprintf(num, sizeof num, "%d", i);
            if (!(c->default_names[i] = strdup(num))) rc = FERC_ERR_NOMEM;
        }
        if (rc == FERC_ERR_NOMEM) ferc_set_error(rc, "out of memory");
    }
    if (rc) {
        classifier_destroy(c);
        return rc;
    }
    *out = c;
    return FERC_OK;
}

const models_meta *classifier_meta(const classifier *c) { return &c->meta; }

const char *classifier_class_name(const classifier *c, int i)
{
    if (i < 0 || i >= c->meta.num_classes) return NULL;
    return c->meta.class_names ? c->meta.class_names[i] : c->default_names[i];
}

size_t classifier_input_size(const classifier *c)
{
    return (size_t)c->meta.channels * (size_t)c->meta.img_size * (size_t)c->meta.img_size;
}

int classifier_preprocess(const classifier *c, const image *img, float *out)
{
    return classify_preprocess(&c->meta, img, out);
}

int classify_preprocess(const models_meta *m, const image *img, float *out)
{
    const int s = m->img_size;
    if (m->channels != 3 || s <= 0) return ferc_set_error(FERC_ERR_UNSUPPORTED, "classifier: needs 3 channels and a positive size");
    if (!img || !img->data || img->width <= 0 || img->height <= 0)
        return ferc_set_error(FERC_ERR_INVALID, "classifier: empty image");
    image rgb = {0}, sized = {0};
    const image *src = img;
    int rc = FERC_OK;
    if (img->channels == 4 || img->channels == 2) {
        if ((rc = image_to_rgb(&rgb, img))) return rc;
        src = &rgb;
    } else if (img->channels != 1 && img->channels != 3) {
        return ferc_set_error(FERC_ERR_UNSUPPORTED, "classifier: %d-channel images are not supported", img->channels);
    }
    if (src->width != s || src->height != s) {
        rc = image_resize(&sized, src, s, s);
        image_free(&rgb);
        if (rc) return rc;
        src = &sized;
    }
    const size_t plane = (size_t)s * (size_t)s;
    for (int ch = 0; ch < 3; ch++) {
        const int from = src->channels == 1 ? 0 : ch;
        const float scale = 1.0f / (255.0f * m->std[ch]), shift = m->mean[ch] / m->std[ch];
        float *o = out + (size_t)ch * plane;
        for (int y = 0; y < s; y++) {
            const uint8_t *row = src->data + (size_t)y * src->stride;
            for (int x = 0; x < s; x++) o[(size_t)y * s + x] = (float)row[x * src->channels + from] * scale - shift;
        }
    }
    image_free(&rgb);
    image_free(&sized);
    return FERC_OK;
}

void classifier_softmax(const float *logits, int n, int k, float *probs)
{
    for (int i = 0; i < n; i++) {
        const float *l = logits + (size_t)i * k;
        float *p = probs + (size_t)i * k;
        float mx = l[0];
        for (int j = 1; j < k; j++) mx = l[j] > mx ? l[j] : mx;
        double sum = 0;
        for (int j = 0; j < k; j++) sum += exp((double)l[j] - mx);
        for (int j = 0; j < k; j++) p[j] = (float)(exp((double)l[j] - mx) / sum);
    }
}

int classify_tta_parse(const char *s, classify_tta *t)
{
    static const char *names[] = {"none", "flip", "tencrop"};
    for (int i = 0; i < 3; i++)
        if (s && !strcmp(s, names[i])) return *t = (classify_tta)i, FERC_OK;
    return ferc_set_error(FERC_ERR_INVALID, "test-time augmentation must be none, flip or tencrop (got '%s')", s ? s : "");
}

const char *classify_tta_name(classify_tta t)
{
    return t == CLASSIFY_TTA_FLIP ? "flip" : t == CLASSIFY_TTA_TENCROP ? "tencrop" : "none";
}

int classify_tta_check(classify_tta t)
{
    if (t == CLASSIFY_TTA_NONE || t == CLASSIFY_TTA_FLIP || t == CLASSIFY_TTA_TENCROP) return FERC_OK;
    return ferc_set_error(FERC_ERR_INVALID, "unknown test-time augmentation %d", (int)t);
}

int classify_tta_views(classify_tta t) { return t == CLASSIFY_TTA_FLIP ? 2 : t == CLASSIFY_TTA_TENCROP ? 10 : 1; }

void classify_tta_view(const float *src, float *dst, int n, int S, classify_tta t, int v)
{
    const int p = S / 12 > 0 ? S / 12 : 1;
    static const int ox[5] = {0, 2, 0, 2, 1}, oy[5] = {0, 0, 2, 2, 1};
    int dx = 0, dy = 0, flip = 0;
    if (t == CLASSIFY_TTA_FLIP) flip = v == 1;
    if (t == CLASSIFY_TTA_TENCROP) /* views 0-3 the corners, 4 the centre, 5-9 their mirrors */
        dx = (ox[v % 5] - 1) * p, dy = (oy[v % 5] - 1) * p, flip = v >= 5;
    for (size_t pl = 0; pl < (size_t)n * 3; pl++) {
        const float *s = src + pl * S * S;
        float *d = dst + pl * S * S;
        for (int y = 0; y < S; y++) {
            int yy = y + dy;
            yy = yy < 0 ? -yy : yy >= S ? 2 * S - 2 - yy : yy;
            for (int x = 0; x < S; x++) {
                int xx = (flip ? S - 1 - x : x) + dx;
                xx = xx < 0 ? -xx : xx >= S ? 2 * S - 2 - xx : xx;
                d[(size_t)y * S + x] = s[(size_t)yy * S + xx];
            }
        }
    }
}

void classify_tta_average(const float *view_probs, int views, size_t nk, float *logits, float *probs)
{
    for (size_t i = 0; i < nk; i++) {
        double p = 0;
        for (int v = 0; v < views; v++) p += view_probs[(size_t)v * nk + i];
        p /= views;
        if (logits) logits[i] = (float)log(p > 1e-38 ? p : 1e-38);
        if (probs) probs[i] = (float)p;
    }
}

void classifier_set_tta(classifier *c, classify_tta t) { c->tta = t; }

void classifier_set_bf16(classifier *c, bool bf16)
{
    if (c->bf16 == bf16) return;
    c->bf16 = bf16;
    nn_exec_destroy(c->ex); /* planned again on the next run */
    c->ex = NULL;
}

static int run_plain(classifier *c, const float *x, int n, float *out)
{
    const int s = c->meta.img_size;
    int rc;
    if (!c->ex || c->ex_batch != n) {
        nn_exec_destroy(c->ex);
        c->ex = NULL;
        if ((rc = nn_exec_create(&c->ex, c->g, NULL, n, 3, s, s, c->bf16 ? NN_EXEC_BF16 : 0))) return rc;
        c->ex_batch = n;
    }
    return nn_exec_forward(c->ex, x, false, out);
}

int classifier_run(classifier *c, const float *x, int n, float *logits, float *probs)
{
    if (n <= 0) return ferc_set_error(FERC_ERR_INVALID, "classifier: batch of %d inputs", n);
    const int k = c->meta.num_classes, views = classify_tta_views(c->tta);
    const size_t nk = (size_t)n * k;
    if (views == 1) {
        float *out = logits ? logits : malloc(nk * sizeof(float));
        if (!out) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
        int rc = run_plain(c, x, n, out);
        if (!rc && probs) classifier_softmax(out, n, k, probs);
        if (out != logits) free(out);
        return rc;
    }
    const size_t in = (size_t)n * classifier_input_size(c);
    float *xv = malloc(in * sizeof(float)), *out = malloc(nk * sizeof(float)),
          *pv = malloc(nk * (size_t)views * sizeof(float));
    int rc = xv && out && pv ? FERC_OK : ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    for (int v = 0; v < views && !rc; v++) {
        classify_tta_view(x, xv, n, c->meta.img_size, c->tta, v);
        if (!(rc = run_plain(c, xv, n, out))) classifier_softmax(out, n, k, pv + (size_t)v * nk);
    }
    if (!rc) classify_tta_average(pv, views, nk, logits, probs);
    free(xv);
    free(out);
    free(pv);
    return rc;
}

int classifier_run_images(classifier *c, const image *imgs, int n, float *logits, float *probs)
{
    if (n <= 0) return ferc_set_error(FERC_ERR_INVALID, "classifier: batch of %d images", n);
    const size_t per = classifier_input_size(c);
    float *x = malloc((size_t)n * per * sizeof(float));
    if (!x) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    int rc = FERC_OK;
    for (int i = 0; i < n && !rc; i++) rc = classifier_preprocess(c, &imgs[i], x + (size_t)i * per);
    if (!rc) rc = classifier_run(c, x, n, logits, probs);
    free(x);
    return rc;
}
