/* image: allocation, colour conversion, crop and PIL-exact resize.
 *
 * Contract: every function that produces an image allocates `dst` itself (dst must be
 * unallocated, i.e. zeroed or freed) and leaves it zeroed on failure. Pixel arithmetic follows
 * PIL, because the models were trained on PIL-decoded images through torchvision. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "image/image.h"

int image_alloc(image *img, int width, int height, int channels)
{
    memset(img, 0, sizeof *img);
    if (width <= 0 || height <= 0 || (channels != 1 && channels != 3 && channels != 4))
        return ferc_set_error(FERC_ERR_INVALID, "bad image shape %dx%dx%d", width, height, channels);
    if ((size_t)width * (size_t)height > ((size_t)1 << 31) / 4)
        return ferc_set_error(FERC_ERR_INVALID, "image too large: %dx%d", width, height);
    size_t stride = (size_t)width * (size_t)channels;
    uint8_t *d = calloc((size_t)height, stride);
    if (!d) return ferc_set_error(FERC_ERR_NOMEM, "out of memory for a %dx%d image", width, height);
    img->width = width;
    img->height = height;
    img->channels = channels;
    img->stride = stride;
    img->data = d;
    return FERC_OK;
}

void image_free(image *img)
{
    if (!img) return;
    free(img->data);
    memset(img, 0, sizeof *img);
}

int image_clone(image *dst, const image *src)
{
    int rc = image_alloc(dst, src->width, src->height, src->channels);
    if (rc) return rc;
    for (int y = 0; y < src->height; y++)
        memcpy(dst->data + (size_t)y * dst->stride, src->data + (size_t)y * src->stride, dst->stride);
    return FERC_OK;
}

/* PIL's L24 luma: (19595 R + 38470 G + 7471 B + 0x8000) >> 16, so R=G=B=v maps back to v. */
static inline uint8_t luma(const uint8_t *p)
{
    return (uint8_t)((19595u * p[0] + 38470u * p[1] + 7471u * p[2] + 0x8000u) >> 16);
}

int image_to_gray(image *dst, const image *src)
{
    int rc = image_alloc(dst, src->width, src->height, 1);
    if (rc) return rc;
    for (int y = 0; y < src->height; y++) {
        const uint8_t *s = src->data + (size_t)y * src->stride;
        uint8_t *d = dst->data + (size_t)y * dst->stride;
        if (src->channels == 1) {
            memcpy(d, s, (size_t)src->width);
            continue;
        }
        for (int x = 0; x < src->width; x++) d[x] = luma(s + (size_t)x * (size_t)src->channels);
    }
    return FERC_OK;
}

int image_to_rgb(image *dst, const image *src)
{
    int rc = image_alloc(dst, src->width, src->height, 3);
    if (rc) return rc;
    int c = src->channels;
    for (int y = 0; y < src->height; y++) {
        const uint8_t *s = src->data + (size_t)y * src->stride;
        uint8_t *d = dst->data + (size_t)y * dst->stride;
        for (int x = 0; x < src->width; x++) {
            if (c == 1) {
                d[3 * x] = d[3 * x + 1] = d[3 * x + 2] = s[x];
            } else {
                d[3 * x] = s[c * x];
                d[3 * x + 1] = s[c * x + 1];
                d[3 * x + 2] = s[c * x + 2];
            }
        }
    }
    return FERC_OK;
}

int image_crop(image *dst, const image *src, int x, int y, int w, int h)
{
    int rc = image_alloc(dst, w, h, src->channels);
    if (rc) return rc;
    int c = src->channels;
    int x0 = x < 0 ? 0 : x, x1 = x + w > src->width ? src->width : x + w;
    if (x1 <= x0) return FERC_OK;
    for (int yy = 0; yy < h; yy++) {
        int sy = y + yy;
        if (sy < 0 || sy >= src->height) continue;
        memcpy(dst->data + (size_t)yy * dst->stride + (size_t)(x0 - x) * (size_t)c,
               src->data + (size_t)sy * src->stride + (size_t)x0 * (size_t)c, (size_t)(x1 - x0) * (size_t)c);
    }
    return FERC_OK;
}

int image_crop_rotated(image *dst, const image *src, double cx, double cy, int w, int h, double angle)
{
    int rc = image_alloc(dst, w, h, src->channels);
    if (rc) return rc;
    const int c = src->channels;
    const double ca = cos(angle), sa = sin(angle);
    for (int y = 0; y < h; y++) {
        uint8_t *row = dst->data + (size_t)y * dst->stride;
        const double v = y + 0.5 - 0.5 * h;
        for (int x = 0; x < w; x++) {
            const double u = x + 0.5 - 0.5 * w;
            const double sx = cx + u * ca - v * sa - 0.5, sy = cy + u * sa + v * ca - 0.5;
            const int x0 = (int)floor(sx), y0 = (int)floor(sy);
            const double fx = sx - x0, fy = sy - y0;
            for (int k = 0; k < c; k++) {
                double acc = 0;
                for (int dy = 0; dy < 2; dy++)
                    for (int dx = 0; dx < 2; dx++) {
                        const int px = x0 + dx, py = y0 + dy;
                        if (px < 0 || py < 0 || px >= src->width || py >= src->height) continue;
                        acc += (dx ? fx : 1 - fx) * (dy ? fy : 1 - fy) * src->data[(size_t)py * src->stride + (size_t)px * c + k];
                    }
                row[(size_t)x * c + k] = (uint8_t)lround(acc < 0 ? 0 : acc > 255 ? 255 : acc);
            }
        }
    }
    return FERC_OK;
}

/* ---- resize: PIL's ImagingResample with the bilinear (triangle) filter --------------------
 * Separable, horizontal pass then vertical, each rounding to 8 bits with 22-bit fixed-point
 * weights; the filter support widens by the scale factor when shrinking (antialias). */
#define RS_PRECISION 22

typedef struct rs_coeffs {
    int ksize;
    int *bounds; /* (out, 2): first source index, count */
    int *k;      /* (out, ksize) fixed-point weights */
} rs_coeffs;

static int rs_precompute(rs_coeffs *c, int in_size, int out_size)
{
    double scale = (double)in_size / out_size, filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 1.0 * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    c->ksize = ksize;
    c->bounds = malloc(sizeof(int) * 2 * (size_t)out_size);
    c->k = malloc(sizeof(int) * (size_t)ksize * (size_t)out_size);
    double *kk = malloc(sizeof(double) * (size_t)ksize);
    if (!c->bounds || !c->k || !kk) {
        free(c->bounds);
        free(c->k);
        free(kk);
        return ferc_set_error(FERC_ERR_NOMEM, "out of memory in resize");
    }
    for (int xx = 0; xx < out_size; xx++) {
        double center = (xx + 0.5) * scale, ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        for (int x = 0; x < xmax; x++) {
            double t = fabs((x + xmin - center + 0.5) * ss);
            double w = t < 1.0 ? 1.0 - t : 0.0;
            kk[x] = w;
            ww += w;
        }
        int *k = c->k + (size_t)xx * (size_t)ksize;
        for (int x = 0; x < ksize; x++) {
            double v = x < xmax && ww != 0.0 ? kk[x] / ww : 0.0;
            k[x] = v < 0 ? (int)(-0.5 + v * (1 << RS_PRECISION)) : (int)(0.5 + v * (1 << RS_PRECISION));
        }
        c->bounds[2 * xx] = xmin;
        c->bounds[2 * xx + 1] = xmax;
    }
    free(kk);
    return FERC_OK;
}

static inline uint8_t rs_clip8(int64_t v)
{
    v >>= RS_PRECISION;
    return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v;
}

int image_resize(image *dst, const image *src, int width, int height)
{
    if (width <= 0 || height <= 0)
        return ferc_set_error(FERC_ERR_INVALID, "resize to %dx%d", width, height);
    if (width == src->width && height == src->height) return image_clone(dst, src);
    int c = src->channels, rc;
    image tmp = {0};
    const image *in = src;
    if (width != src->width) {
        rs_coeffs h;
        if ((rc = rs_precompute(&h, src->width, width))) return rc;
        if ((rc = image_alloc(&tmp, width, src->height, c))) {
            free(h.bounds);
            free(h.k);
            return rc;
        }
        for (int y = 0; y < src->height; y++) {
            const uint8_t *s = src->data + (size_t)y * src->stride;
            uint8_t *d = tmp.data + (size_t)y * tmp.stride;
            for (int xx = 0; xx < width; xx++) {
                int xmin = h.bounds[2 * xx], xmax = h.bounds[2 * xx + 1];
                const int *k = h.k + (size_t)xx * (size_t)h.ksize;
                for (int ch = 0; ch < c; ch++) {
                    int64_t ss = 1 << (RS_PRECISION - 1);
                    for (int x = 0; x < xmax; x++) ss += (int64_t)s[(x + xmin) * c + ch] * k[x];
                    d[xx * c + ch] = rs_clip8(ss);
                }
            }
        }
        free(h.bounds);
        free(h.k);
        in = &tmp;
    }
    if (height == in->height) {
        *dst = tmp; /* only the horizontal pass was needed */
        return FERC_OK;
    }
    rs_coeffs v;
    if ((rc = rs_precompute(&v, in->height, height))) {
        image_free(&tmp);
        return rc;
    }
    if ((rc = image_alloc(dst, width, height, c))) {
        free(v.bounds);
        free(v.k);
        image_free(&tmp);
        return rc;
    }
    for (int yy = 0; yy < height; yy++) {
        int ymin = v.bounds[2 * yy], ymax = v.bounds[2 * yy + 1];
        const int *k = v.k + (size_t)yy * (size_t)v.ksize;
        uint8_t *d = dst->data + (size_t)yy * dst->stride;
        for (int x = 0; x < width * c; x++) {
            int64_t ss = 1 << (RS_PRECISION - 1);
            for (int y = 0; y < ymax; y++) ss += (int64_t)in->data[(size_t)(y + ymin) * in->stride + (size_t)x] * k[y];
            d[x] = rs_clip8(ss);
        }
    }
    free(v.bounds);
    free(v.k);
    image_free(&tmp);
    return FERC_OK;
}

int image_flip_h(image *dst, const image *src)
{
    int rc = image_alloc(dst, src->width, src->height, src->channels);
    if (rc) return rc;
    int c = src->channels, w = src->width;
    for (int y = 0; y < src->height; y++) {
        const uint8_t *s = src->data + (size_t)y * src->stride;
        uint8_t *d = dst->data + (size_t)y * dst->stride;
        for (int x = 0; x < w; x++) memcpy(d + (size_t)x * (size_t)c, s + (size_t)(w - 1 - x) * (size_t)c, (size_t)c);
    }
    return FERC_OK;
}

int image_orient(image *dst, const image *src, int orientation)
{
    if (orientation < 1 || orientation > 8) orientation = 1;
    bool swap = orientation >= 5;
    int w = swap ? src->height : src->width, h = swap ? src->width : src->height, c = src->channels;
    int rc = image_alloc(dst, w, h, c);
    if (rc) return rc;
    int sw = src->width, sh = src->height;
    for (int y = 0; y < h; y++) {
        uint8_t *d = dst->data + (size_t)y * dst->stride;
        for (int x = 0; x < w; x++) {
            int sx, sy; /* source pixel shown at (x, y) for EXIF orientation 1..8 */
            switch (orientation) {
            case 2: sx = sw - 1 - x; sy = y; break;
            case 3: sx = sw - 1 - x; sy = sh - 1 - y; break;
            case 4: sx = x; sy = sh - 1 - y; break;
            case 5: sx = y; sy = x; break;
            case 6: sx = y; sy = sh - 1 - x; break;
            case 7: sx = sw - 1 - y; sy = sh - 1 - x; break;
            case 8: sx = sw - 1 - y; sy = x; break;
            default: sx = x; sy = y; break;
            }
            memcpy(d + (size_t)x * (size_t)c, src->data + (size_t)sy * src->stride + (size_t)sx * (size_t)c, (size_t)c);
        }
    }
    return FERC_OK;
}
