/* data transforms: a text spec compiled into a list of steps with torchvision semantics.
 *
 * Contract: data_transform_parse validates the whole spec up front (unknown steps, bad values,
 * steps after normalize other than erase) so that training never fails mid-epoch on a typo.
 * Applying a transform allocates only temporary images and touches nothing shared, so one
 * transform may be applied from several threads at once with different rngs. 8-bit steps
 * reproduce PIL (the backend torchvision uses for ImageFolder); random draws follow
 * torchvision's get_params algorithms but use ferc's rng, so the numbers differ from torch's
 * while their distributions are the same. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"

typedef enum t_kind { T_RESIZE, T_CENTERCROP, T_RANDOMCROP, T_RRC, T_HFLIP, T_ROTATE, T_AFFINE, T_JITTER,
                      T_NORMALIZE, T_ERASE, T_KIND_COUNT } t_kind;
static const char *t_names[] = {"resize", "centercrop", "randomcrop", "randomresizedcrop", "hflip",
                                "rotate", "affine", "jitter", "normalize", "erase"};
_Static_assert(sizeof t_names / sizeof t_names[0] == T_KIND_COUNT, "one name per step kind");
static const char *pad_names[] = {"constant", "reflect", "edge", "symmetric"};

typedef struct t_step {
    t_kind kind;
    int w, h, short_side;      /* sizes; resize(S) sets short_side */
    int pad, fill;
    data_pad_mode mode;
    double p;
    double lo, hi, rlo, rhi;   /* scale and ratio ranges */
    double degrees, tx, ty;
    double brightness, contrast;
    float mean[3], std[3];
    char preset[16];
    float value;
} t_step;

struct data_transform {
    int n;
    t_step s[32];
    int norm_at;               /* index of the normalize step, or n when absent */
    char spec[2048];
};

/* ---- parsing ----------------------------------------------------------------------------- */
static char *trim(char *s)
{
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = 0;
    return s;
}

static int parse_num(const char *v, double *out, const char *step, const char *key)
{
    char *end;
    *out = strtod(v, &end);
    if (end == v || *trim(end) || !isfinite(*out))
        return ferc_set_error(FERC_ERR_INVALID, "transform %s: %s=%s is not a number", step, key, v);
    return FERC_OK;
}

/* "a/b" or "a" (then b = a) */
static int parse_pair(const char *v, double *a, double *b, const char *step, const char *key)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%s", v);
    char *slash = strchr(buf, '/');
    if (slash) *slash = 0;
    int rc = parse_num(buf, a, step, key);
    if (!rc) rc = slash ? parse_num(slash + 1, b, step, key) : (*b = *a, FERC_OK);
    return rc;
}

static int parse_triple(const char *v, float out[3], const char *step, const char *key)
{
    char buf[96];
    snprintf(buf, sizeof buf, "%s", v);
    char *parts[3] = {buf, NULL, NULL};
    int k = 1;
    for (char *p = buf; *p && k < 3; p++)
        if (*p == '/') *p = 0, parts[k++] = p + 1;
    for (int i = 0; i < 3; i++) {
        double d;
        int rc = parse_num(parts[i < k ? i : 0], &d, step, key);
        if (rc) return rc;
        out[i] = (float)d;
    }
    return FERC_OK;
}

static int parse_step(t_step *st, char *text)
{
    char *open = strchr(text, '('), *args = NULL;
    if (open) {
        char *close = strrchr(text, ')');
        if (!close || close < open || *trim(close + 1))
            return ferc_set_error(FERC_ERR_INVALID, "transform '%s': unbalanced parentheses", text);
        *open = 0;
        *close = 0;
        args = open + 1;
    }
    char *name = trim(text);
    for (char *p = name; *p; p++) *p = (char)tolower((unsigned char)*p);
    int kind = -1;
    for (int k = 0; k < T_KIND_COUNT; k++)
        if (!strcmp(name, t_names[k])) kind = k;
    if (!strcmp(name, "flip")) kind = T_HFLIP;
    if (kind < 0) return ferc_set_error(FERC_ERR_INVALID, "unknown transform '%s'", name);
    memset(st, 0, sizeof *st);
    st->kind = (t_kind)kind;
    st->p = 0.5;
    st->lo = kind == T_RRC ? 0.08 : kind == T_ERASE ? 0.02 : 1.0;
    st->hi = kind == T_RRC ? 1.0 : kind == T_ERASE ? 0.33 : 1.0;
    st->rlo = kind == T_RRC ? 3.0 / 4.0 : 0.3;
    st->rhi = kind == T_RRC ? 4.0 / 3.0 : 3.3;
    if (kind == T_NORMALIZE) snprintf(st->preset, sizeof st->preset, "none");
    int npos = 0;
    double pos[2] = {0, 0};
    char *save = NULL;
    for (char *a = args ? strtok_r(args, ",", &save) : NULL; a; a = strtok_r(NULL, ",", &save)) {
        a = trim(a);
        if (!*a) continue;
        char *eq = strchr(a, '=');
        double d = 0, d2 = 0;
        int rc = FERC_OK;
        if (!eq) {
            if (kind == T_NORMALIZE) {
                if (strcmp(a, "imagenet") && strcmp(a, "cifar10") && strcmp(a, "none"))
                    return ferc_set_error(FERC_ERR_INVALID, "normalize: unknown preset '%s' (imagenet, cifar10, none)", a);
                snprintf(st->preset, sizeof st->preset, "%s", a);
                continue;
            }
            if (npos >= 2) return ferc_set_error(FERC_ERR_INVALID, "transform %s: too many values", name);
            if ((rc = parse_num(a, &pos[npos], name, "value"))) return rc;
            npos++;
            continue;
        }
        *eq = 0;
        char *key = trim(a), *val = trim(eq + 1);
        if (!strcmp(key, "p")) rc = parse_num(val, &st->p, name, key);
        else if (!strcmp(key, "pad")) rc = parse_num(val, &d, name, key), st->pad = (int)d;
        else if (!strcmp(key, "fill")) rc = parse_num(val, &d, name, key), st->fill = (int)d;
        else if (!strcmp(key, "value")) rc = parse_num(val, &d, name, key), st->value = (float)d;
        else if (!strcmp(key, "mode")) {
            int m = -1;
            for (int k = 0; k < 4; k++)
                if (!strcmp(val, pad_names[k])) m = k;
            if (m < 0) return ferc_set_error(FERC_ERR_INVALID, "transform %s: unknown padding mode '%s'", name, val);
            st->mode = (data_pad_mode)m;
        } else if (!strcmp(key, "scale")) rc = parse_pair(val, &st->lo, &st->hi, name, key);
        else if (!strcmp(key, "ratio")) rc = parse_pair(val, &st->rlo, &st->rhi, name, key);
        else if (!strcmp(key, "degrees")) rc = parse_num(val, &st->degrees, name, key);
        else if (!strcmp(key, "translate")) rc = parse_pair(val, &st->tx, &st->ty, name, key);
        else if (!strcmp(key, "brightness")) rc = parse_num(val, &st->brightness, name, key);
        else if (!strcmp(key, "contrast")) rc = parse_num(val, &st->contrast, name, key);
        else if (!strcmp(key, "mean")) rc = parse_triple(val, st->mean, name, key), snprintf(st->preset, sizeof st->preset, "custom");
        else if (!strcmp(key, "std")) rc = parse_triple(val, st->std, name, key), snprintf(st->preset, sizeof st->preset, "custom");
        else return ferc_set_error(FERC_ERR_INVALID, "transform %s: unknown option '%s'", name, key);
        (void)d2;
        if (rc) return rc;
    }
    switch (st->kind) {
    case T_RESIZE: case T_CENTERCROP: case T_RANDOMCROP: case T_RRC:
        if (npos < 1 || pos[0] < 1 || (npos == 2 && pos[1] < 1) || pos[0] > 16384 || pos[1] > 16384)
            return ferc_set_error(FERC_ERR_INVALID, "transform %s needs a size: %s(S) or %s(H,W)", name, name, name);
        st->h = (int)pos[0];
        st->w = npos == 2 ? (int)pos[1] : (int)pos[0];
        st->short_side = st->kind == T_RESIZE && npos == 1;
        if (st->pad < 0) return ferc_set_error(FERC_ERR_INVALID, "randomcrop: negative padding");
        break;
    case T_ROTATE:
        if (npos == 1) st->degrees = pos[0];
        break;
    case T_HFLIP: case T_ERASE:
        if (npos == 1) st->p = pos[0];
        break;
    default:
        if (npos) return ferc_set_error(FERC_ERR_INVALID, "transform %s takes only key=value options", name);
    }
    if (st->p < 0 || st->p > 1) return ferc_set_error(FERC_ERR_INVALID, "transform %s: p=%g is not in [0, 1]", name, st->p);
    if (st->kind == T_NORMALIZE) {
        static const float in_m[3] = {0.485f, 0.456f, 0.406f}, in_s[3] = {0.229f, 0.224f, 0.225f};
        /* The CIFAR-10 statistics the original study normalized with. */
        static const float c10_m[3] = {0.4914f, 0.4822f, 0.4465f}, c10_s[3] = {0.2470f, 0.2435f, 0.2616f};
        if (!strcmp(st->preset, "imagenet")) memcpy(st->mean, in_m, sizeof in_m), memcpy(st->std, in_s, sizeof in_s);
        else if (!strcmp(st->preset, "cifar10")) memcpy(st->mean, c10_m, sizeof c10_m), memcpy(st->std, c10_s, sizeof c10_s);
        else if (!strcmp(st->preset, "none"))
            for (int c = 0; c < 3; c++) st->mean[c] = 0.0f, st->std[c] = 1.0f;
        for (int c = 0; c < 3; c++)
            if (!(st->std[c] > 0)) return ferc_set_error(FERC_ERR_INVALID, "normalize: std must be > 0 (give mean=.. and std=..)");
    }
    if ((st->kind == T_RRC || st->kind == T_ERASE) && !(st->lo > 0 && st->lo <= st->hi && st->rlo > 0 && st->rlo <= st->rhi))
        return ferc_set_error(FERC_ERR_INVALID, "transform %s: bad scale or ratio range", name);
    if (st->kind == T_AFFINE && !(st->lo > 0 && st->lo <= st->hi && st->tx >= 0 && st->tx <= 1 && st->ty >= 0 && st->ty <= 1))
        return ferc_set_error(FERC_ERR_INVALID, "affine: translate in [0,1], scale lo/hi > 0");
    if (st->kind == T_JITTER && (st->brightness < 0 || st->contrast < 0))
        return ferc_set_error(FERC_ERR_INVALID, "jitter: brightness and contrast must be >= 0");
    return FERC_OK;
}

static void canonical(const t_step *s, char *buf, size_t n)
{
    switch (s->kind) {
    case T_RESIZE: case T_CENTERCROP:
        if (s->short_side || s->w == s->h) snprintf(buf, n, "%s(%d)", t_names[s->kind], s->h);
        else snprintf(buf, n, "%s(%d,%d)", t_names[s->kind], s->h, s->w);
        break;
    case T_RANDOMCROP:
        snprintf(buf, n, "randomcrop(%d,%d,pad=%d,mode=%s,fill=%d)", s->h, s->w, s->pad, pad_names[s->mode], s->fill);
        break;
    case T_RRC:
        snprintf(buf, n, "randomresizedcrop(%d,%d,scale=%g/%g,ratio=%g/%g)", s->h, s->w, s->lo, s->hi, s->rlo, s->rhi);
        break;
    case T_HFLIP: snprintf(buf, n, "hflip(p=%g)", s->p); break;
    case T_ROTATE: snprintf(buf, n, "rotate(%g,fill=%d)", s->degrees, s->fill); break;
    case T_AFFINE:
        snprintf(buf, n, "affine(degrees=%g,translate=%g/%g,scale=%g/%g,fill=%d)", s->degrees, s->tx, s->ty, s->lo, s->hi, s->fill);
        break;
    case T_JITTER: snprintf(buf, n, "jitter(brightness=%g,contrast=%g)", s->brightness, s->contrast); break;
    case T_NORMALIZE:
        snprintf(buf, n, "normalize(mean=%g/%g/%g,std=%g/%g/%g)", s->mean[0], s->mean[1], s->mean[2], s->std[0], s->std[1], s->std[2]);
        break;
    case T_ERASE:
        snprintf(buf, n, "erase(p=%g,scale=%g/%g,ratio=%g/%g,value=%g)", s->p, s->lo, s->hi, s->rlo, s->rhi, (double)s->value);
        break;
    default: buf[0] = 0;
    }
}

int data_transform_parse(data_transform **out, const char *spec)
{
    *out = NULL;
    data_transform *tf = calloc(1, sizeof *tf);
    char *copy = strdup(spec ? spec : "");
    if (!tf || !copy) {
        free(tf), free(copy);
        return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    }
    tf->norm_at = -1;
    int rc = FERC_OK, depth = 0;
    char *start = copy;
    for (char *p = copy;; p++) {
        if (*p == '(') depth++;
        if (*p == ')') depth--;
        if (*p && !((*p == '|' || *p == ';') && depth == 0)) continue;
        int last = *p == 0;
        *p = 0;
        char *step = trim(start);
        start = p + 1;
        if (*step) {
            if (tf->n == 32) { rc = ferc_set_error(FERC_ERR_INVALID, "transform spec has more than 32 steps"); break; }
            if ((rc = parse_step(&tf->s[tf->n], step))) break;
            t_kind k = tf->s[tf->n].kind;
            if (k == T_NORMALIZE) {
                if (tf->norm_at >= 0) { rc = ferc_set_error(FERC_ERR_INVALID, "transform spec: normalize appears twice"); break; }
                tf->norm_at = tf->n;
            } else if (tf->norm_at >= 0 && k != T_ERASE) {
                rc = ferc_set_error(FERC_ERR_INVALID, "transform spec: %s after normalize (only erase works on tensors)", t_names[k]);
                break;
            } else if (k == T_ERASE && tf->norm_at < 0) {
                rc = ferc_set_error(FERC_ERR_INVALID, "transform spec: erase must come after normalize, as in torchvision");
                break;
            }
            tf->n++;
        }
        if (last) break;
    }
    free(copy);
    if (rc) {
        free(tf);
        return rc;
    }
    if (tf->norm_at < 0) tf->norm_at = tf->n;
    size_t len = 0;
    for (int i = 0; i < tf->n; i++) {
        char b[256];
        canonical(&tf->s[i], b, sizeof b);
        len += (size_t)snprintf(tf->spec + len, sizeof tf->spec - len, "%s%s", i ? " | " : "", b);
        if (len >= sizeof tf->spec) len = sizeof tf->spec - 1;
    }
    *out = tf;
    return FERC_OK;
}

void data_transform_destroy(data_transform *tf) { free(tf); }
const char *data_transform_spec(const data_transform *tf) { return tf->spec; }

void data_transform_norm(const data_transform *tf, float mean[3], float std[3])
{
    for (int c = 0; c < 3; c++) mean[c] = 0.0f, std[c] = 1.0f;
    if (tf->norm_at < tf->n)
        for (int c = 0; c < 3; c++) mean[c] = tf->s[tf->norm_at].mean[c], std[c] = tf->s[tf->norm_at].std[c];
}

/* torchvision's _compute_resized_output_size for an int size */
static void short_side_size(int w, int h, int size, int *ow, int *oh)
{
    if (w <= h) *ow = size, *oh = (int)((long long)size * h / w);
    else *oh = size, *ow = (int)((long long)size * w / h);
}

void data_transform_out_size(const data_transform *tf, int w, int h, int *out_w, int *out_h)
{
    for (int i = 0; i < tf->norm_at; i++) {
        const t_step *s = &tf->s[i];
        if (s->kind == T_RESIZE && s->short_side) short_side_size(w, h, s->h, &w, &h);
        else if (s->kind == T_RESIZE || s->kind == T_CENTERCROP || s->kind == T_RANDOMCROP || s->kind == T_RRC)
            w = s->w, h = s->h;
    }
    *out_w = w;
    *out_h = h;
}

/* ---- primitives -------------------------------------------------------------------------- */
static int pad_index(int i, int n, data_pad_mode mode)
{
    if (n == 1) return 0;
    while (i < 0 || i >= n) {
        if (mode == DATA_PAD_EDGE) return i < 0 ? 0 : n - 1;
        if (mode == DATA_PAD_REFLECT) i = i < 0 ? -i : 2 * n - 2 - i;
        else i = i < 0 ? -i - 1 : 2 * n - 1 - i;
    }
    return i;
}

int data_pad(image *dst, const image *src, int left, int top, int right, int bottom, data_pad_mode mode, int fill)
{
    int c = src->channels, w = src->width + left + right, h = src->height + top + bottom;
    int rc = image_alloc(dst, w, h, c);
    if (rc) return rc;
    uint8_t f = (uint8_t)(fill < 0 ? 0 : fill > 255 ? 255 : fill);
    for (int y = 0; y < h; y++) {
        uint8_t *d = dst->data + (size_t)y * dst->stride;
        int sy = y - top;
        int in_y = sy >= 0 && sy < src->height;
        if (mode != DATA_PAD_CONSTANT) sy = pad_index(sy, src->height, mode);
        for (int x = 0; x < w; x++) {
            int sx = x - left;
            int inside = in_y && sx >= 0 && sx < src->width;
            if (mode == DATA_PAD_CONSTANT && !inside) {
                memset(d + (size_t)x * (size_t)c, f, (size_t)c);
                continue;
            }
            if (mode != DATA_PAD_CONSTANT) sx = pad_index(sx, src->width, mode);
            memcpy(d + (size_t)x * (size_t)c, src->data + (size_t)sy * src->stride + (size_t)sx * (size_t)c, (size_t)c);
        }
    }
    return FERC_OK;
}

int data_center_crop(image *dst, const image *src, int w, int h)
{
    image padded = {0};
    const image *in = src;
    if (w > src->width || h > src->height) {
        int pw = w > src->width ? w - src->width : 0, ph = h > src->height ? h - src->height : 0;
        int rc = data_pad(&padded, src, pw / 2, ph / 2, (pw + 1) / 2, (ph + 1) / 2, DATA_PAD_CONSTANT, 0);
        if (rc) return rc;
        in = &padded;
    }
    /* Python's round() is round-half-even, like nearbyint in the default rounding mode. */
    int top = (int)nearbyint((in->height - h) / 2.0), left = (int)nearbyint((in->width - w) / 2.0);
    int rc = image_crop(dst, in, left, top, w, h);
    image_free(&padded);
    return rc;
}

int data_resize_short(image *dst, const image *src, int size)
{
    int w, h;
    short_side_size(src->width, src->height, size, &w, &h);
    return image_resize(dst, src, w, h);
}

int data_affine(image *dst, const image *src, double angle, double tx, double ty, double scale, int fill)
{
    int rc = image_alloc(dst, src->width, src->height, src->channels);
    if (rc) return rc;
    /* torchvision's _get_inverse_affine_matrix without shear, centre (w/2, h/2) as its PIL
     * path uses; PIL then samples the source at M * (x + 0.5, y + 0.5), nearest by truncation. */
    double rot = angle * M_PI / 180.0, cx = src->width * 0.5, cy = src->height * 0.5;
    double m[6] = {cos(rot) / scale, sin(rot) / scale, 0.0, -sin(rot) / scale, cos(rot) / scale, 0.0};
    m[2] = m[0] * (-cx - tx) + m[1] * (-cy - ty) + cx;
    m[5] = m[3] * (-cx - tx) + m[4] * (-cy - ty) + cy;
    int c = src->channels;
    uint8_t f = (uint8_t)(fill < 0 ? 0 : fill > 255 ? 255 : fill);
    for (int y = 0; y < dst->height; y++) {
        uint8_t *d = dst->data + (size_t)y * dst->stride;
        for (int x = 0; x < dst->width; x++) {
            double xs = m[0] * (x + 0.5) + m[1] * (y + 0.5) + m[2];
            double ys = m[3] * (x + 0.5) + m[4] * (y + 0.5) + m[5];
            int xi = xs < 0 ? -1 : (int)xs, yi = ys < 0 ? -1 : (int)ys;
            if (xi < 0 || yi < 0 || xi >= src->width || yi >= src->height) memset(d + (size_t)x * (size_t)c, f, (size_t)c);
            else memcpy(d + (size_t)x * (size_t)c, src->data + (size_t)yi * src->stride + (size_t)xi * (size_t)c, (size_t)c);
        }
    }
    return FERC_OK;
}

/* PIL's Image.blend(degenerate, img, factor): float math, clipped, truncated. */
static void blend_const(image *img, float base, float factor)
{
    for (int y = 0; y < img->height; y++) {
        uint8_t *p = img->data + (size_t)y * img->stride;
        for (size_t x = 0; x < (size_t)img->width * (size_t)img->channels; x++) {
            float v = base + factor * ((float)p[x] - base);
            p[x] = v <= 0.0f ? 0 : v >= 255.0f ? 255 : (uint8_t)v;
        }
    }
}

void data_adjust_brightness(image *img, double factor) { blend_const(img, 0.0f, (float)factor); }

void data_adjust_contrast(image *img, double factor)
{
    /* PIL's ImageEnhance.Contrast: the degenerate image is the rounded mean of the L image. */
    double sum = 0;
    for (int y = 0; y < img->height; y++) {
        const uint8_t *p = img->data + (size_t)y * img->stride;
        for (int x = 0; x < img->width; x++) {
            const uint8_t *q = p + (size_t)x * (size_t)img->channels;
            sum += img->channels == 1 ? q[0] : (19595u * q[0] + 38470u * q[1] + 7471u * q[2] + 0x8000u) >> 16;
        }
    }
    int mean = (int)(sum / ((double)img->width * img->height) + 0.5);
    blend_const(img, (float)mean, (float)factor);
}

int data_ten_crop(image out[10], const image *src, int w, int h)
{
    memset(out, 0, sizeof(image) * 10);
    if (w > src->width || h > src->height)
        return ferc_set_error(FERC_ERR_INVALID, "ten-crop %dx%d larger than the image %dx%d", w, h, src->width, src->height);
    image flipped;
    int rc = image_flip_h(&flipped, src);
    for (int k = 0; !rc && k < 2; k++) {
        const image *im = k ? &flipped : src;
        int W = im->width, H = im->height;
        image *o = out + 5 * k;
        if (!rc) rc = image_crop(&o[0], im, 0, 0, w, h);
        if (!rc) rc = image_crop(&o[1], im, W - w, 0, w, h);
        if (!rc) rc = image_crop(&o[2], im, 0, H - h, w, h);
        if (!rc) rc = image_crop(&o[3], im, W - w, H - h, w, h);
        if (!rc) rc = data_center_crop(&o[4], im, w, h);
    }
    image_free(&flipped);
    if (rc)
        for (int i = 0; i < 10; i++) image_free(&out[i]);
    return rc;
}

/* ---- random steps ------------------------------------------------------------------------ */
static double uniform(rng *r, double a, double b) { return a + (b - a) * rng_uniform(r); }
static int randint(rng *r, int lo, int hi_exclusive) { return hi_exclusive <= lo ? lo : lo + (int)rng_below(r, (uint32_t)(hi_exclusive - lo)); }

static int apply_step(const t_step *s, const image *in, image *out, rng *r)
{
    switch (s->kind) {
    case T_RESIZE:
        return s->short_side ? data_resize_short(out, in, s->h) : image_resize(out, in, s->w, s->h);
    case T_CENTERCROP:
        return data_center_crop(out, in, s->w, s->h);
    case T_RANDOMCROP: {
        image padded = {0};
        const image *src = in;
        int pw = in->width + 2 * s->pad < s->w ? s->w - in->width - 2 * s->pad : 0;
        int ph = in->height + 2 * s->pad < s->h ? s->h - in->height - 2 * s->pad : 0;
        if (s->pad || pw || ph) {
            /* pad_if_needed is always on: a too-small image is padded to the crop size. */
            int rc = data_pad(&padded, in, s->pad + pw, s->pad + ph, s->pad + pw, s->pad + ph, s->mode, s->fill);
            if (rc) return rc;
            src = &padded;
        }
        int i = randint(r, 0, src->height - s->h + 1), j = randint(r, 0, src->width - s->w + 1);
        int rc = image_crop(out, src, j, i, s->w, s->h);
        image_free(&padded);
        return rc;
    }
    case T_RRC: {
        int W = in->width, H = in->height, i = 0, j = 0, w = 0, h = 0, found = 0;
        double area = (double)W * H, l0 = log(s->rlo), l1 = log(s->rhi);
        for (int t = 0; t < 10 && !found; t++) {
            double target = area * uniform(r, s->lo, s->hi), ar = exp(uniform(r, l0, l1));
            w = (int)nearbyint(sqrt(target * ar));
            h = (int)nearbyint(sqrt(target / ar));
            if (w > 0 && w <= W && h > 0 && h <= H) {
                i = randint(r, 0, H - h + 1);
                j = randint(r, 0, W - w + 1);
                found = 1;
            }
        }
        if (!found) {
            double in_ratio = (double)W / H;
            if (in_ratio < s->rlo) w = W, h = (int)nearbyint(w / s->rlo);
            else if (in_ratio > s->rhi) h = H, w = (int)nearbyint(h * s->rhi);
            else w = W, h = H;
            i = (H - h) / 2;
            j = (W - w) / 2;
        }
        image crop;
        int rc = image_crop(&crop, in, j, i, w, h);
        if (rc) return rc;
        rc = image_resize(out, &crop, s->w, s->h);
        image_free(&crop);
        return rc;
    }
    case T_HFLIP:
        return rng_uniform(r) < s->p ? image_flip_h(out, in) : image_clone(out, in);
    case T_ROTATE: {
        double angle = uniform(r, -s->degrees, s->degrees);
        return data_affine(out, in, -angle, 0, 0, 1.0, s->fill); /* rotate is counter-clockwise */
    }
    case T_AFFINE: {
        double angle = uniform(r, -s->degrees, s->degrees);
        double mdx = s->tx * in->width, mdy = s->ty * in->height;
        double tx = nearbyint(uniform(r, -mdx, mdx)), ty = nearbyint(uniform(r, -mdy, mdy));
        double sc = uniform(r, s->lo, s->hi);
        return data_affine(out, in, angle, tx, ty, sc, s->fill);
    }
    case T_JITTER: {
        int rc = image_clone(out, in);
        if (rc) return rc;
        int contrast_first = rng_below(r, 2) == 1;
        double bf = s->brightness > 0 ? uniform(r, fmax(0, 1 - s->brightness), 1 + s->brightness) : 1.0;
        double cf = s->contrast > 0 ? uniform(r, fmax(0, 1 - s->contrast), 1 + s->contrast) : 1.0;
        for (int k = 0; k < 2; k++) {
            if ((k == 0) == contrast_first) {
                if (s->contrast > 0) data_adjust_contrast(out, cf);
            } else if (s->brightness > 0) {
                data_adjust_brightness(out, bf);
            }
        }
        return FERC_OK;
    }
    default:
        return image_clone(out, in);
    }
}

int data_transform_apply_u8(const data_transform *tf, const image *src, rng *r, image *dst)
{
    image cur;
    int rc = image_clone(&cur, src);
    for (int i = 0; !rc && i < tf->norm_at; i++) {
        image next;
        rc = apply_step(&tf->s[i], &cur, &next, r);
        image_free(&cur);
        if (!rc) cur = next;
    }
    if (rc) return rc;
    *dst = cur;
    return FERC_OK;
}

int data_transform_apply(const data_transform *tf, const image *src, rng *r, float *out, int out_w, int out_h)
{
    image im;
    int rc = data_transform_apply_u8(tf, src, r, &im);
    if (rc) return rc;
    if (im.width != out_w || im.height != out_h) {
        rc = ferc_set_error(FERC_ERR_SHAPE, "transform gives %dx%d, batch expects %dx%d (add a resize or crop)", im.width,
                            im.height, out_w, out_h);
        image_free(&im);
        return rc;
    }
    float mean[3], std[3];
    data_transform_norm(tf, mean, std);
    size_t plane = (size_t)out_w * (size_t)out_h;
    for (int c = 0; c < 3; c++) {
        int sc = im.channels == 1 ? 0 : c;
        float *o = out + (size_t)c * plane;
        for (int y = 0; y < out_h; y++) {
            const uint8_t *p = im.data + (size_t)y * im.stride;
            for (int x = 0; x < out_w; x++) {
                /* ToTensor then Normalize, in float32 and in torchvision's order */
                float v = (float)p[(size_t)x * (size_t)im.channels + (size_t)sc] / 255.0f;
                o[(size_t)y * (size_t)out_w + (size_t)x] = (v - mean[c]) / std[c];
            }
        }
    }
    image_free(&im);
    for (int i = tf->norm_at + 1; i < tf->n; i++) {
        const t_step *s = &tf->s[i];
        if (s->kind != T_ERASE || !(rng_uniform(r) < s->p)) continue;
        double area = (double)out_w * out_h, l0 = log(s->rlo), l1 = log(s->rhi);
        for (int t = 0; t < 10; t++) {
            double ea = area * uniform(r, s->lo, s->hi), ar = exp(uniform(r, l0, l1));
            int h = (int)nearbyint(sqrt(ea * ar)), w = (int)nearbyint(sqrt(ea / ar));
            if (!(h < out_h && w < out_w)) continue;
            int y0 = randint(r, 0, out_h - h + 1), x0 = randint(r, 0, out_w - w + 1);
            for (int c = 0; c < 3; c++)
                for (int y = y0; y < y0 + h; y++)
                    for (int x = x0; x < x0 + w; x++) out[(size_t)c * plane + (size_t)y * (size_t)out_w + (size_t)x] = s->value;
            break;
        }
    }
    return FERC_OK;
}
