/* image: 8-bit images in memory, decoding/encoding (libjpeg-turbo, libpng), and the pixel
 * operations that data augmentation, face detection and annotation need.
 *
 * An image is interleaved (HWC) 8-bit: channels 1 (gray), 3 (RGB) or 4 (RGBA), rows
 * `stride` bytes apart (stride >= width * channels). The struct owns `data` unless noted.
 */
#ifndef FERC_IMAGE_H
#define FERC_IMAGE_H

#include <stddef.h>
#include <stdint.h>

typedef struct image {
    int width, height, channels;
    size_t stride;      /* bytes per row */
    uint8_t *data;      /* owned; free with image_free */
} image;

/* Decoder options. */
typedef enum image_mode {
    IMAGE_MODE_ANY = 0, /* keep the file's own kind: gray stays gray, RGB(A) stays RGB(A) */
    IMAGE_MODE_GRAY = 1,
    IMAGE_MODE_RGB = 3,
} image_mode;

/* Allocates a zeroed image. */
int  image_alloc(image *img, int width, int height, int channels);
void image_free(image *img);
int  image_clone(image *dst, const image *src);

/* Decodes JPEG (incl. CMYK), PNG (gray, RGB, RGBA, palette, 16-bit) from a file or memory,
 * converting to `mode`. With `apply_exif` the JPEG EXIF orientation is applied (photos; the
 * 48x48 FER crops have none). Corrupt or unknown data returns FERC_ERR_FORMAT with a message
 * naming the file; nothing is printed and nothing aborts. */
int image_load(image *img, const char *path, image_mode mode, int apply_exif);
int image_decode(image *img, const uint8_t *data, size_t size, image_mode mode, int apply_exif,
                 const char *name_for_errors);
/* The size of a JPEG or PNG from its header alone, without decoding the pixels (to refuse
 * an image too large before allocating it). FERC_ERR_FORMAT for anything else. */
int image_probe(const uint8_t *data, size_t size, int *width, int *height, const char *name_for_errors);
/* Encodes by extension (.png or .jpg/.jpeg), written atomically. quality: JPEG 1..100. */
int image_save(const image *img, const char *path, int quality);

/* Conversions and geometry. dst is allocated by the call (and must be unallocated). */
int image_to_gray(image *dst, const image *src);   /* ITU-R 601-2 luma, as PIL's "L" */
int image_to_rgb(image *dst, const image *src);
int image_crop(image *dst, const image *src, int x, int y, int w, int h); /* zero-fills outside */
/* The w x h window centred at (cx, cy) of src, turned by `angle` radians (its x axis runs along
 * (cos, sin) in src: an angle of the eye line levels the eyes), sampled bilinearly; zero
 * outside src. */
int image_crop_rotated(image *dst, const image *src, double cx, double cy, int w, int h, double angle);
/* Bilinear resize with PIL/torchvision semantics (antialias when shrinking). */
int image_resize(image *dst, const image *src, int width, int height);

/* Drawing for annotated output (in place). color is RGB; gray images take its luma. */
void image_draw_rect(image *img, int x, int y, int w, int h, int thickness, const uint8_t color[3]);
/* Draws text with a built-in bitmap font, `scale` pixels per font pixel; returns text width. */
int  image_draw_text(image *img, int x, int y, const char *text, int scale,
                     const uint8_t fg[3], const uint8_t *bg /* NULL: no background */);

/* ---- additions (data pipeline) ----------------------------------------------------------- */
/* Mirror left-right; dst allocated by the call. */
int image_flip_h(image *dst, const image *src);
/* Applies an EXIF orientation (1..8; other values copy); dst allocated by the call. */
int image_orient(image *dst, const image *src, int orientation);
/* Encodes to memory; the caller frees *out. RGBA loses its alpha in JPEG. */
int image_encode_png(const image *img, uint8_t **out, size_t *out_size);
int image_encode_jpeg(const image *img, int quality, uint8_t **out, size_t *out_size);
/* Filled rectangle, clipped. */
void image_fill_rect(image *img, int x, int y, int w, int h, const uint8_t color[3]);
/* Width in pixels that image_draw_text would use (glyph cells are 6x9 font pixels). */
int  image_text_width(const char *text, int scale);

#endif
