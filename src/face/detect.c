/* face/detect: multi-scale cascade detection that follows OpenCV 4.x's
 * CascadeClassifier::detectMultiScale (CPU path) step for step, so that ferc and OpenCV find
 * the same boxes on the same gray pixels.
 *
 * The pipeline: a list of scales (1, f, f^2, ... while the rounded window fits the image and
 * max size, skipping those under min size); for each scale the original image is shrunk to
 * round(size / scale) with OpenCV's bit-exact bilinear resize, its integral images (sum,
 * squared sum, and the 45-degree "tilted" sum when the cascade needs it) are built, and the
 * fixed-size window slides over it in steps of 2 pixels (1 from scale 2 on), skipping one more
 * step after a window that fails the first stage. A window's Haar features are divided by
 * sqrt(area * sum(x^2) - sum(x)^2) of its inner rectangle; flat windows are rejected. Hits are
 * mapped back (x * scale rounded), grouped as groupRectangles does, and clipped to the image.
 *
 * Arithmetic is kept in the same types as OpenCV's (feature values in float, stage sums in
 * double, integrals in wrapping 32-bit integers) because the cascade thresholds are so tight
 * that a different rounding flips windows. Nothing here allocates per window; memory is a few
 * buffers the size of the image, allocated per call, so calls may run in parallel.
 *
 * Speed: on CPUs with AVX-512 (F and VL) the stump Haar cascades, the integral images and the
 * resize rows run in detect_avx512.c with the same arithmetic (identical boxes; the scalar
 * code below stays the reference and the path for other CPUs, tree and LBP cascades, and
 * FERC_DETECT_NOSIMD=1). bench/bench_detect prints the time per 640x360 frame. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "face/cascade_impl.h"

/* ---- colour --------------------------------------------------------------------------- */

void face_rgb_to_gray(const uint8_t *src, size_t src_stride, int channels, int width, int height,
                      uint8_t *dst, size_t dst_stride)
{
    /* OpenCV's 14-bit coefficients for R, G, B (0.299, 0.587, 0.114). */
    for (int y = 0; y < height; y++) {
        const uint8_t *s = src + (size_t)y * src_stride;
        uint8_t *d = dst + (size_t)y * dst_stride;
        for (int x = 0; x < width; x++, s += channels)
            d[x] = (uint8_t)((s[0] * 4899 + s[1] * 9617 + s[2] * 1868 + (1 << 13)) >> 14);
    }
}

/* ---- resize --------------------------------------------------------------------------- */

typedef struct lin_axis {
    int *ofs;          /* left/top source index per destination index */
    uint16_t *coef;    /* two 8.8 fixed-point weights per destination index */
    int lo, hi;        /* [0, lo): clamp to the first source sample; [hi, n): to the last */
} lin_axis;

/* OpenCV's interpolationLinear::getCoeffs, computed in double (IEEE-exact like softdouble). */
static void lin_axis_init(lin_axis *a, int ssize, int dsize)
{
    double scale = 1.0 / ((double)dsize / ssize);
    a->lo = 0;
    a->hi = dsize;
    for (int d = 0; d < dsize; d++) {
        double f = scale * ((double)d + 0.5) - 0.5;
        int i = (int)floor(f);
        a->ofs[d] = 0;
        a->coef[2 * d] = 256;
        a->coef[2 * d + 1] = 0;
        if (i >= 0 && ssize > 1) {
            if (i < ssize - 1) {
                long c1 = lrint((f - i) * 256.0);
                a->ofs[d] = i;
                a->coef[2 * d + 1] = (uint16_t)c1;
                a->coef[2 * d] = (uint16_t)(c1 > 256 ? 0 : 256 - c1);
            } else {
                a->ofs[d] = ssize - 1;
                if (d < a->hi) a->hi = d;
            }
        } else if (d + 1 > a->lo) {
            a->lo = d + 1;
        }
    }
}

/* One source row (sw bytes) to 8.8 fixed point along x. */
static void lin_row(const uint8_t *s, int sw, const lin_axis *ax, int dw, uint16_t *out, int simd)
{
    int d = 0;
    uint16_t first = (uint16_t)(s[0] << 8);
    for (; d < ax->lo && d < dw; d++) out[d] = first;
    if (simd) d = face_lin_row_avx512(s, sw, ax->ofs, ax->coef, d, ax->hi, out);
    for (; d < ax->hi; d++) {
        const uint8_t *p = s + ax->ofs[d];
        out[d] = (uint16_t)(ax->coef[2 * d] * p[0] + ax->coef[2 * d + 1] * p[1]);
    }
    uint16_t last = (uint16_t)(s[ax->ofs[dw - 1]] << 8);
    for (; d < dw; d++) out[d] = last;
}

int face_resize_gray(const uint8_t *src, int sw, int sh, size_t sstride, uint8_t *dst, int dw, int dh,
                     size_t dstride)
{
    if (sw <= 0 || sh <= 0 || dw <= 0 || dh <= 0)
        return ferc_set_error(FERC_ERR_INVALID, "resize: empty image (%dx%d -> %dx%d)", sw, sh, dw, dh);
    if (sw == dw && sh == dh) {
        for (int y = 0; y < sh; y++) memcpy(dst + (size_t)y * dstride, src + (size_t)y * sstride, (size_t)sw);
        return FERC_OK;
    }
    /* OpenCV answers an exact halving with its area filter (the same result in theory, but
     * computed as a rounded 2x2 mean). */
    double scx = 1.0 / ((double)dw / sw), scy = 1.0 / ((double)dh / sh);
    if (fabs(scx - 2.0) < 2.220446049250313e-16 && fabs(scy - 2.0) < 2.220446049250313e-16) {
        for (int y = 0; y < dh; y++) {
            const uint8_t *a = src + (size_t)(2 * y) * sstride, *b = a + sstride;
            uint8_t *d = dst + (size_t)y * dstride;
            for (int x = 0; x < dw; x++)
                d[x] = (uint8_t)((a[2 * x] + a[2 * x + 1] + b[2 * x] + b[2 * x + 1] + 2) >> 2);
        }
        return FERC_OK;
    }

    lin_axis ax, ay;
    void *mem = malloc((size_t)(dw + dh) * (sizeof(int) + 2 * sizeof(uint16_t)) + 2 * (size_t)dw * sizeof(uint16_t));
    if (!mem) return ferc_set_error(FERC_ERR_NOMEM, "resize: out of memory");
    ax.ofs = mem;
    ay.ofs = ax.ofs + dw;
    ax.coef = (uint16_t *)(ay.ofs + dh);
    ay.coef = ax.coef + 2 * (size_t)dw;
    uint16_t *row0 = ay.coef + 2 * (size_t)dh, *row1 = row0 + dw;
    lin_axis_init(&ax, sw, dw);
    lin_axis_init(&ay, sh, dh);
    int simd = face_cpu_avx512();

    int have0 = -1, have1 = -1; /* source rows now in row0 / row1 */
    for (int y = 0; y < dh; y++) {
        uint8_t *d = dst + (size_t)y * dstride;
        if (y < ay.lo || y >= ay.hi) {
            int sy = y < ay.lo ? 0 : sh - 1;
            if (have0 != sy) {
                lin_row(src + (size_t)sy * sstride, sw, &ax, dw, row0, simd);
                have0 = sy;
            }
            for (int x = 0; x < dw; x++) d[x] = (uint8_t)((row0[x] + 128u) >> 8);
            continue;
        }
        int sy = ay.ofs[y];
        if (have0 != sy) {
            if (have1 == sy) { /* slide the pair down instead of recomputing */
                uint16_t *t = row0;
                row0 = row1;
                row1 = t;
                have0 = sy;
                have1 = -1;
            } else {
                lin_row(src + (size_t)sy * sstride, sw, &ax, dw, row0, simd);
                have0 = sy;
            }
        }
        if (have1 != sy + 1) {
            lin_row(src + (size_t)(sy + 1) * sstride, sw, &ax, dw, row1, simd);
            have1 = sy + 1;
        }
        uint32_t c0 = ay.coef[2 * y], c1 = ay.coef[2 * y + 1];
        if (simd) {
            face_lin_vpass_avx512(row0, row1, c0, c1, d, dw);
            continue;
        }
        for (int x = 0; x < dw; x++) {
            uint32_t v = (row0[x] * c0 + row1[x] * c1 + (1u << 15)) >> 16;
            d[x] = (uint8_t)(v > 255 ? 255 : v);
        }
    }
    /* row0/row1 may have been swapped; free the block through the original pointer. */
    free(mem);
    return FERC_OK;
}

/* ---- integral images ------------------------------------------------------------------- */

/* sum, sq: (h+1) x (w+1) with row stride `st`, wrapping uint32 like OpenCV's CV_32S buffers
 * (only differences over a window are ever used, and those fit). */
static void integral_sum_sq(const uint8_t *img, int w, int h, size_t istride, uint32_t *sum, uint32_t *sq,
                            size_t st)
{
    memset(sum, 0, (w + 1) * sizeof *sum);
    if (sq) memset(sq, 0, (w + 1) * sizeof *sq);
    for (int y = 0; y < h; y++) {
        const uint8_t *p = img + (size_t)y * istride;
        uint32_t *s0 = sum + (size_t)y * st, *s1 = s0 + st;
        uint32_t rs = 0;
        s1[0] = 0;
        if (sq) {
            uint32_t *q0 = sq + (size_t)y * st, *q1 = q0 + st;
            uint32_t rq = 0;
            q1[0] = 0;
            for (int x = 0; x < w; x++) {
                uint32_t v = p[x];
                rs += v;
                rq += v * v;
                s1[x + 1] = s0[x + 1] + rs;
                q1[x + 1] = q0[x + 1] + rq;
            }
        } else {
            for (int x = 0; x < w; x++) {
                rs += p[x];
                s1[x + 1] = s0[x + 1] + rs;
            }
        }
    }
}

/* The rotated integral T(X, Y) = sum of I(x, y) over y < Y, |x - X + 1| <= Y - y - 1 (what
 * cv::integral returns as `tilted`), by T(X,Y) = T(X-1,Y-1) + T(X+1,Y-1) - T(X,Y-2)
 * + I(X-1,Y-1) + I(X-1,Y-2); beyond the left and right edges T(-1,Y-1) = T(0,Y-2) and
 * T(W+1,Y-1) = T(W,Y-2), since the clipped triangles coincide. */
static void integral_tilted(const uint8_t *img, int w, int h, size_t istride, uint32_t *t, size_t st)
{
    memset(t, 0, (w + 1) * sizeof *t);
    for (int Y = 1; Y <= h; Y++) {
        uint32_t *r = t + (size_t)Y * st;
        const uint32_t *r1 = r - st;                 /* row Y-1 */
        const uint32_t *r2 = Y >= 2 ? r1 - st : NULL; /* row Y-2 */
        const uint8_t *i1 = img + (size_t)(Y - 1) * istride;
        const uint8_t *i2 = Y >= 2 ? i1 - istride : NULL;
        for (int X = 0; X <= w; X++) {
            uint32_t t22 = r2 ? r2[X] : 0;
            uint32_t left = X >= 1 ? r1[X - 1] : (r2 ? r2[0] : 0);
            uint32_t right = X + 1 <= w ? r1[X + 1] : (r2 ? r2[w] : 0);
            uint32_t v = left + right - t22;
            if (X >= 1) {
                v += i1[X - 1];
                if (i2) v += i2[X - 1];
            }
            r[X] = v;
        }
    }
}

/* ---- evaluation ------------------------------------------------------------------------ */

static inline int32_t rect_sum(const uint32_t *p, const int *o)
{
    return (int32_t)(p[o[0]] - p[o[1]] - p[o[2]] + p[o[3]]);
}

static inline float haar_value(const haar_opt *f, size_t pos, float vnf)
{
    const uint32_t *p = f->base + pos;
    float ret = f->weight[0] * (float)rect_sum(p, f->ofs[0]) + f->weight[1] * (float)rect_sum(p, f->ofs[1]);
    if (f->weight[2] != 0.0f) ret += f->weight[2] * (float)rect_sum(p, f->ofs[2]);
    return ret * vnf;
}

static inline int lbp_code(const uint32_t *p, const int *o)
{
#define LBP_S(a, b, c, e) ((int32_t)(p[o[a]] - p[o[b]] - p[o[c]] + p[o[e]]))
    int32_t cv = LBP_S(5, 6, 9, 10);
    return (LBP_S(0, 1, 4, 5) >= cv ? 128 : 0) | (LBP_S(1, 2, 5, 6) >= cv ? 64 : 0) |
           (LBP_S(2, 3, 6, 7) >= cv ? 32 : 0) | (LBP_S(6, 7, 10, 11) >= cv ? 16 : 0) |
           (LBP_S(10, 11, 14, 15) >= cv ? 8 : 0) | (LBP_S(9, 10, 13, 14) >= cv ? 4 : 0) |
           (LBP_S(8, 9, 12, 13) >= cv ? 2 : 0) | (LBP_S(4, 5, 8, 9) >= cv ? 1 : 0);
#undef LBP_S
}

static inline int subset_has(const int32_t *subset, int c)
{
    return ((uint32_t)subset[c >> 5] >> (c & 31)) & 1u;
}

/* Returns 1 when the window passes every stage, -k when stage k rejects it (so 0 for the first
 * stage), -1 for a window too flat to normalize (as OpenCV's runAt does). */
static int run_window(const detector *d, size_t pos)
{
    const face_cascade *fc = d->fc;
    float vnf = 1.f;
    if (fc->kind == FACE_FEATURE_HAAR) {
        int32_t valsum = rect_sum(d->sum + pos, d->nofs);
        uint32_t valsq = (uint32_t)rect_sum(d->sq + pos, d->nofs);
        double nf = d->norm_area * valsq - (double)valsum * valsum;
        if (!(nf > 0.)) return -1;
        vnf = (float)(1. / sqrt(nf));
        if (!(d->norm_area * vnf < 1e-1)) return -1;
    }
    const uint32_t *lbp_base = d->sum + pos;

    if (d->stumps) {
        const stump *sp = d->stumps;
        for (int si = 0; si < fc->nstages; si++) {
            const cascade_stage *stg = &fc->stages[si];
            double acc = 0;
            if (fc->kind == FACE_FEATURE_HAAR) {
                for (int i = 0; i < stg->ntrees; i++, sp++) {
                    double v = haar_value(&sp->haar, pos, vnf);
                    /* an index, not a branch: the outcome is unpredictable */
                    acc += sp->leaf[!(v < sp->threshold)];
                }
            } else {
                for (int i = 0; i < stg->ntrees; i++, sp++) {
                    int c = lbp_code(lbp_base, d->lbp[sp->feature]);
                    acc += sp->leaf[!subset_has(sp->subset, c)];
                }
            }
            if (acc < stg->threshold) return -si;
        }
        return 1;
    }

    for (int si = 0; si < fc->nstages; si++) {
        const cascade_stage *stg = &fc->stages[si];
        double acc = 0;
        for (int ti = 0; ti < stg->ntrees; ti++) {
            const cascade_tree *tr = &fc->trees[stg->first_tree + ti];
            int idx = 0;
            do {
                int gi = tr->first_node + idx;
                const cascade_node *nd = &fc->nodes[gi];
                if (fc->kind == FACE_FEATURE_HAAR) {
                    double v = haar_value(&d->haar[nd->feature], pos, vnf);
                    idx = v < nd->threshold ? nd->left : nd->right;
                } else {
                    int c = lbp_code(lbp_base, d->lbp[nd->feature]);
                    idx = subset_has(fc->subsets + (size_t)gi * fc->subset_size, c) ? nd->left : nd->right;
                }
            } while (idx > 0);
            acc += fc->leaves[tr->first_leaf - idx];
        }
        if (acc < stg->threshold) return -si;
    }
    return 1;
}

static void set_sum_ofs(int *o, int x, int y, int w, int h, int st)
{
    o[0] = x + st * y;
    o[1] = x + w + st * y;
    o[2] = x + st * (y + h);
    o[3] = x + w + st * (y + h);
}

/* A window corner (cx, cy) in the deinterleaved layout of cascade_impl.h; clears deint_ok for
 * a corner outside the window, where the layout does not apply. */
static int deint_ofs(detector *d, int cx, int cy, int st)
{
    if (cx < 0 || cy < 0 || cx > d->fc->win_w || cy > d->fc->win_h) d->deint_ok = 0;
    return cy * st + (cx & 1) * ((st + 1) / 2) + (cx >> 1);
}

static int detector_init(detector *d, const face_cascade *fc, size_t st)
{
    memset(d, 0, sizeof *d);
    d->fc = fc;
    d->st = st;
    d->deint_ok = 1;
    int ist = (int)st;
    if (fc->kind == FACE_FEATURE_HAAR) {
        d->haar = calloc((size_t)fc->nfeatures, sizeof *d->haar);
        if (!d->haar) return ferc_set_error(FERC_ERR_NOMEM, "detect: out of memory");
        for (int i = 0; i < fc->nfeatures; i++) {
            const cascade_feature *f = &fc->features[i];
            haar_opt *o = &d->haar[i];
            o->tilted = f->tilted;
            for (int r = 0; r < f->nrects; r++) {
                const cascade_rect *cr = &f->r[r];
                int cx[4], cy[4]; /* the corners, relative to the window */
                o->weight[r] = cr->weight;
                if (f->tilted) {
                    cx[0] = cr->x, cy[0] = cr->y;
                    cx[1] = cr->x - cr->h, cy[1] = cr->y + cr->h;
                    cx[2] = cr->x + cr->w, cy[2] = cr->y + cr->w;
                    cx[3] = cr->x + cr->w - cr->h, cy[3] = cr->y + cr->w + cr->h;
                } else {
                    cx[0] = cx[2] = cr->x, cx[1] = cx[3] = cr->x + cr->w;
                    cy[0] = cy[1] = cr->y, cy[2] = cy[3] = cr->y + cr->h;
                }
                for (int k = 0; k < 4; k++) {
                    o->ofs[r][k] = cx[k] + ist * cy[k];
                    o->dofs[r][k] = deint_ofs(d, cx[k], cy[k], ist);
                }
            }
        }
        set_sum_ofs(d->nofs, 1, 1, fc->win_w - 2, fc->win_h - 2, ist);
        for (int k = 0; k < 4; k++)
            d->dnofs[k] = deint_ofs(d, k & 1 ? fc->win_w - 1 : 1, k & 2 ? fc->win_h - 1 : 1, ist);
        d->norm_area = (double)(fc->win_w - 2) * (fc->win_h - 2);
    } else {
        d->lbp = calloc((size_t)fc->nfeatures, sizeof *d->lbp);
        if (!d->lbp) return ferc_set_error(FERC_ERR_NOMEM, "detect: out of memory");
        for (int i = 0; i < fc->nfeatures; i++) {
            const cascade_rect *cr = &fc->features[i].r[0];
            for (int j = 0; j < 4; j++)
                for (int k = 0; k < 4; k++) d->lbp[i][j * 4 + k] = cr->x + k * cr->w + ist * (cr->y + j * cr->h);
        }
    }
    if (fc->max_nodes_per_tree == 1) {
        d->stumps = calloc((size_t)fc->ntrees, sizeof *d->stumps);
        if (!d->stumps) return ferc_set_error(FERC_ERR_NOMEM, "detect: out of memory");
        for (int t = 0; t < fc->ntrees; t++) {
            const cascade_tree *tr = &fc->trees[t];
            const cascade_node *nd = &fc->nodes[tr->first_node];
            stump *s = &d->stumps[t];
            s->feature = nd->feature;
            s->threshold = nd->threshold;
            s->leaf[0] = fc->leaves[tr->first_leaf];
            s->leaf[1] = fc->leaves[tr->first_leaf + 1];
            if (fc->subsets) s->subset = fc->subsets + (size_t)tr->first_node * fc->subset_size;
            if (d->haar) s->haar = d->haar[nd->feature];
        }
    }
    return FERC_OK;
}

/* Points every Haar feature at the integral it reads, once the buffers exist. */
static void detector_bind(detector *d)
{
    if (!d->haar) return;
    for (int i = 0; i < d->fc->nfeatures; i++) d->haar[i].base = d->haar[i].tilted ? d->tilt : d->sum;
    if (d->stumps)
        for (int t = 0; t < d->fc->ntrees; t++) d->stumps[t].haar.base = d->stumps[t].haar.tilted ? d->tilt : d->sum;
}

static void detector_free(detector *d)
{
    free(d->haar);
    free(d->lbp);
    free(d->stumps);
}

/* ---- grouping -------------------------------------------------------------------------- */

static int find_root(int *parent, int i)
{
    while (parent[i] >= 0) i = parent[i];
    return i;
}

static int rects_similar(const face_box *a, const face_box *b, double eps)
{
    int mw = a->w < b->w ? a->w : b->w, mh = a->h < b->h ? a->h : b->h;
    double delta = eps * (mw + mh) * 0.5;
    return abs(a->x - b->x) <= delta && abs(a->y - b->y) <= delta &&
           abs(a->x + a->w - b->x - b->w) <= delta && abs(a->y + a->h - b->y - b->h) <= delta;
}

int face_group_rectangles(face_box *rects, int *n, int group_threshold, double eps)
{
    int N = *n;
    if (group_threshold <= 0 || N == 0) return FERC_OK;
    int *parent = malloc((size_t)N * 3 * sizeof(int));
    long long *acc = calloc((size_t)N * 4, sizeof *acc);
    if (!parent || !acc) {
        free(parent);
        free(acc);
        return ferc_set_error(FERC_ERR_NOMEM, "group rectangles: out of memory");
    }
    int *label = parent + N, *count = label + N;
    for (int i = 0; i < N; i++) parent[i] = -1;
    /* Equivalence classes of the "similar" relation (its transitive closure). */
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++) {
            if (!rects_similar(&rects[i], &rects[j], eps)) continue;
            int ri = find_root(parent, i), rj = find_root(parent, j);
            if (ri != rj) parent[rj > ri ? rj : ri] = rj > ri ? ri : rj;
        }
    /* Classes are numbered in order of first appearance, as cv::partition numbers them. */
    int nclasses = 0;
    for (int i = 0; i < N; i++) label[i] = -1;
    int *root_label = count; /* reuse as root -> label map before counting */
    for (int i = 0; i < N; i++) root_label[i] = -1;
    for (int i = 0; i < N; i++) {
        int r = find_root(parent, i);
        if (root_label[r] < 0) root_label[r] = nclasses++;
        label[i] = root_label[r];
    }
    for (int i = 0; i < N; i++) count[i] = 0;
    for (int i = 0; i < N; i++) {
        long long *a = acc + 4 * (size_t)label[i];
        a[0] += rects[i].x;
        a[1] += rects[i].y;
        a[2] += rects[i].w;
        a[3] += rects[i].h;
        count[label[i]]++;
    }
    face_box *avg = malloc((size_t)nclasses * sizeof *avg);
    if (!avg) {
        free(parent);
        free(acc);
        return ferc_set_error(FERC_ERR_NOMEM, "group rectangles: out of memory");
    }
    for (int c = 0; c < nclasses; c++) {
        float s = 1.f / (float)count[c];
        long long *a = acc + 4 * (size_t)c;
        avg[c].x = (int)lrintf((float)a[0] * s);
        avg[c].y = (int)lrintf((float)a[1] * s);
        avg[c].w = (int)lrintf((float)a[2] * s);
        avg[c].h = (int)lrintf((float)a[3] * s);
    }
    int out = 0;
    for (int i = 0; i < nclasses; i++) {
        face_box r1 = avg[i];
        int n1 = count[i];
        if (n1 <= group_threshold) continue;
        /* drop a small box inside a larger, better supported one */
        int j;
        for (j = 0; j < nclasses; j++) {
            int n2 = count[j];
            if (j == i || n2 <= group_threshold) continue;
            face_box r2 = avg[j];
            int dx = (int)lrint(r2.w * eps), dy = (int)lrint(r2.h * eps);
            if (r1.x >= r2.x - dx && r1.y >= r2.y - dy && r1.x + r1.w <= r2.x + r2.w + dx &&
                r1.y + r1.h <= r2.y + r2.h + dy && (n2 > (n1 > 3 ? n1 : 3) || n1 < 3))
                break;
        }
        if (j == nclasses) rects[out++] = r1;
    }
    free(avg);
    free(parent);
    free(acc);
    *n = out;
    return FERC_OK;
}

/* ---- detectMultiScale ------------------------------------------------------------------ */

typedef struct box_list {
    face_box *v;
    int n, cap;
} box_list;

static int box_push(box_list *l, face_box b)
{
    if (l->n == l->cap) {
        int nc = l->cap ? l->cap * 2 : 64;
        face_box *p = realloc(l->v, (size_t)nc * sizeof *p);
        if (!p) return ferc_set_error(FERC_ERR_NOMEM, "detect: out of memory");
        l->v = p;
        l->cap = nc;
    }
    l->v[l->n++] = b;
    return FERC_OK;
}

enum { MAX_SCALES = 4096 };

int face_detect(const face_cascade *fc, const uint8_t *gray, int width, int height, size_t stride,
                const face_detect_params *p, face_box **boxes, int *count)
{
    *boxes = NULL;
    *count = 0;
    if (!fc || !gray || !p) return ferc_set_error(FERC_ERR_INVALID, "detect: NULL argument");
    if (width <= 0 || height <= 0 || stride < (size_t)width)
        return ferc_set_error(FERC_ERR_INVALID, "detect: bad image geometry %dx%d (stride %zu)", width, height, stride);
    if (!(p->scale_factor > 1.0) || !isfinite(p->scale_factor))
        return ferc_set_error(FERC_ERR_INVALID, "detect: scale factor must be > 1 (got %g)", p->scale_factor);
    if (p->min_neighbors < 0 || p->min_w < 0 || p->min_h < 0 || p->max_w < 0 || p->max_h < 0)
        return ferc_set_error(FERC_ERR_INVALID, "detect: negative min neighbours or size");

    int max_w = p->max_w, max_h = p->max_h;
    if (max_w == 0 || max_h == 0) {
        max_w = width;
        max_h = height;
    }
    float scales[MAX_SCALES];
    int nscales = 0;
    for (double factor = 1;; factor *= p->scale_factor) {
        long ww = lrint(fc->win_w * factor), wh = lrint(fc->win_h * factor);
        if (ww > max_w || wh > max_h || ww > width || wh > height) break;
        if (ww < p->min_w || wh < p->min_h) continue;
        if (nscales == MAX_SCALES)
            return ferc_set_error(FERC_ERR_INVALID, "detect: scale factor %g gives more than %d scales",
                                  p->scale_factor, MAX_SCALES);
        scales[nscales++] = (float)factor;
    }
    if (nscales == 0) return FERC_OK;

    /* Level 0 is the largest; every level reuses its buffers and integral row stride. */
    int w0 = (int)lrintf((float)width / scales[0]), h0 = (int)lrintf((float)height / scales[0]);
    size_t st = (size_t)w0 + 1, area = st * ((size_t)h0 + 1);
    int need_tilt = fc->kind == FACE_FEATURE_HAAR && fc->has_tilted;
    int need_sq = fc->kind == FACE_FEATURE_HAAR;
    /* The integrals carry FACE_DETECT_PAD zeroed elements past their end: the vector scan
     * reads (and then ignores) a few lanes beyond the last window of a row. */
    size_t abytes = (area + FACE_DETECT_PAD) * sizeof(uint32_t);
    uint8_t *level = malloc((size_t)w0 * h0);
    uint32_t *sum = calloc(1, abytes);
    uint32_t *sq = need_sq ? calloc(1, abytes) : NULL;
    uint32_t *tilt = need_tilt ? calloc(1, abytes) : NULL;
    int *hit_x = malloc(((size_t)w0 + 1) * sizeof *hit_x);
    void *scan_scratch = malloc(face_scan_scratch_bytes(w0 + 1));
    box_list hits = {0};
    detector d;
    int rc = detector_init(&d, fc, st);
    if (!rc && (!level || !sum || (need_sq && !sq) || (need_tilt && !tilt) || !hit_x || !scan_scratch))
        rc = ferc_set_error(FERC_ERR_NOMEM, "detect: out of memory for a %dx%d image", width, height);
    d.sum = sum;
    d.sq = sq;
    d.tilt = tilt;
    detector_bind(&d);
    int simd = !rc && face_detect_avx512_usable(&d), simd_cpu = face_cpu_avx512();

    for (int si = 0; si < nscales && !rc; si++) {
        float sc = scales[si];
        int sw = (int)lrintf((float)width / sc), sh = (int)lrintf((float)height / sc);
        if (sw > w0 || sh > h0 || sw <= 0 || sh <= 0) continue; /* cannot happen for sc >= scales[0] */
        if ((rc = face_resize_gray(gray, width, height, stride, level, sw, sh, (size_t)sw))) break;
        if (simd_cpu)
            face_integral_avx512(level, sw, sh, (size_t)sw, sum, sq, st);
        else
            integral_sum_sq(level, sw, sh, (size_t)sw, sum, sq, st);
        if (tilt) integral_tilted(level, sw, sh, (size_t)sw, tilt, st);
        int step = sc >= 2 ? 1 : 2;
        int ww = sw + 1 - fc->win_w, wh = sh + 1 - fc->win_h; /* windows with x + win_w < sw + 1 */
        int bw = (int)lrintf((float)fc->win_w * sc), bh = (int)lrintf((float)fc->win_h * sc);
        if (simd && (step == 1 || d.deint_ok)) {
            if (step == 2) { /* hit_x (w0 + 1 elements) doubles as the row buffer */
                face_deinterleave_avx512(sum, st, sh + 1, (uint32_t *)hit_x);
                if (sq) face_deinterleave_avx512(sq, st, sh + 1, (uint32_t *)hit_x);
                if (tilt) face_deinterleave_avx512(tilt, st, sh + 1, (uint32_t *)hit_x);
            }
            for (int y = 0; y < wh && !rc; y += step) {
                int nh = face_scan_row_avx512(&d, (size_t)y * st, ww, step, hit_x, scan_scratch);
                for (int i = 0; i < nh && !rc; i++) {
                    face_box b = {(int)lrintf((float)hit_x[i] * sc), (int)lrintf((float)y * sc), bw, bh};
                    rc = box_push(&hits, b);
                }
            }
            continue;
        }
        for (int y = 0; y < wh && !rc; y += step) {
            for (int x = 0; x < ww; x += step) {
                int r = run_window(&d, (size_t)y * st + (size_t)x);
                if (r > 0) {
                    face_box b = {(int)lrintf((float)x * sc), (int)lrintf((float)y * sc), bw, bh};
                    if ((rc = box_push(&hits, b))) break;
                }
                if (r == 0) x += step;
            }
        }
    }
    detector_free(&d);
    free(level);
    free(sum);
    free(sq);
    free(tilt);
    free(hit_x);
    free(scan_scratch);
    if (!rc) rc = face_group_rectangles(hits.v, &hits.n, p->min_neighbors, 0.2);
    if (rc) {
        free(hits.v);
        return rc;
    }
    /* Clip to the image, dropping what falls outside, as CascadeClassifier::detectMultiScale does. */
    int n = 0;
    for (int i = 0; i < hits.n; i++) {
        face_box b = hits.v[i];
        int x1 = b.x > 0 ? b.x : 0, y1 = b.y > 0 ? b.y : 0;
        int x2 = b.x + b.w < width ? b.x + b.w : width, y2 = b.y + b.h < height ? b.y + b.h : height;
        if (x2 - x1 > 0 && y2 - y1 > 0) hits.v[n++] = (face_box){x1, y1, x2 - x1, y2 - y1};
    }
    if (n == 0) {
        free(hits.v);
        hits.v = NULL;
    }
    *boxes = hits.v;
    *count = n;
    return FERC_OK;
}
