/* image codecs: JPEG (libjpeg-turbo) and PNG (libpng) decode/encode, plus small decoders for
 * binary PGM/PPM and uncompressed BMP.
 *
 * Contract: decoding never prints (libjpeg/libpng warnings are swallowed, their errors become
 * FERC_ERR_FORMAT with the file name) and never aborts; `img` is zeroed on failure. The
 * decoder returns the file's own channel count first and converts to the requested mode at
 * the end, the way PIL's Image.open(...).convert(mode) does. */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jpeglib.h>
#include <jerror.h> /* needs stdio.h first */
#include <png.h>

#include "core/core.h"
#include "image/image.h"

/* ---- JPEG ---------------------------------------------------------------------------------- */
typedef struct jpg_err {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
    int truncated; /* libjpeg warned that the data ended early (it fills the rest with gray) */
} jpg_err;

static void jpg_error_exit(j_common_ptr cinfo)
{
    jpg_err *e = (jpg_err *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, e->msg);
    longjmp(e->jump, 1);
}

static void jpg_output_message(j_common_ptr cinfo) { (void)cinfo; }

static void jpg_emit_message(j_common_ptr cinfo, int level)
{
    jpg_err *e = (jpg_err *)cinfo->err;
    if (level < 0) {
        cinfo->err->num_warnings++;
        if (cinfo->err->msg_code == JWRN_JPEG_EOF) e->truncated = 1;
    }
}

static uint16_t rd16(const uint8_t *p, int le) { return le ? (uint16_t)(p[0] | p[1] << 8) : (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t rd32(const uint8_t *p, int le)
{
    return le ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24
              : (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* The Orientation tag (0x0112) of IFD0 in an APP1 "Exif\0\0" payload, or 1. */
static int exif_orientation(const uint8_t *p, size_t n)
{
    if (n < 14 || memcmp(p, "Exif\0\0", 6) != 0) return 1;
    p += 6;
    n -= 6;
    int le;
    if (p[0] == 'I' && p[1] == 'I') le = 1;
    else if (p[0] == 'M' && p[1] == 'M') le = 0;
    else return 1;
    uint32_t ifd = rd32(p + 4, le);
    if ((size_t)ifd + 2 > n) return 1; /* in size_t: 0xffffffff + 2 wraps in 32 bits (a fuzzed file had it) */
    unsigned count = rd16(p + ifd, le);
    for (unsigned i = 0; i < count; i++) {
        size_t e = ifd + 2 + 12 * (size_t)i;
        if (e + 12 > n) return 1;
        if (rd16(p + e, le) == 0x0112) {
            int v = rd16(p + e + 8, le);
            return v >= 1 && v <= 8 ? v : 1;
        }
    }
    return 1;
}

/* libjpeg's error manager with our exit (longjmp back with the message) and no printing. */
static struct jpeg_error_mgr *jpg_err_setup(jpg_err *e)
{
    struct jpeg_error_mgr *m = jpeg_std_error(&e->mgr);
    e->mgr.error_exit = jpg_error_exit;
    e->mgr.output_message = jpg_output_message;
    e->mgr.emit_message = jpg_emit_message;
    e->truncated = 0;
    return m;
}

static int decode_jpeg(image *img, const uint8_t *data, size_t size, int apply_exif, const char *name)
{
    struct jpeg_decompress_struct cinfo;
    jpg_err jerr;
    image raw = {0};
    uint8_t *volatile row = NULL; /* assigned after setjmp */
    memset(&cinfo, 0, sizeof cinfo);
    cinfo.err = jpg_err_setup(&jerr);
    if (setjmp(jerr.jump)) {
        jpeg_destroy_decompress(&cinfo);
        image_free(&raw);
        free(row);
        return ferc_set_error(FERC_ERR_FORMAT, "%s: bad JPEG: %s", name, jerr.msg);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    if (apply_exif) jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xFFFF);
    jpeg_read_header(&cinfo, TRUE);
    int cmyk = 0;
    if (cinfo.jpeg_color_space == JCS_GRAYSCALE) {
        cinfo.out_color_space = JCS_GRAYSCALE;
    } else if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
        cinfo.out_color_space = JCS_CMYK;
        cmyk = 1;
    } else {
        cinfo.out_color_space = JCS_RGB;
    }
    jpeg_start_decompress(&cinfo);
    int w = (int)cinfo.output_width, h = (int)cinfo.output_height, nc = cinfo.output_components;
    if (image_alloc(&raw, w, h, cmyk ? 3 : nc)) {
        jpeg_destroy_decompress(&cinfo);
        return ferc_wrap_error(FERC_ERR_NOMEM, "%s", name);
    }
    row = malloc((size_t)w * (size_t)nc);
    if (!row) {
        jpeg_destroy_decompress(&cinfo);
        image_free(&raw);
        return ferc_set_error(FERC_ERR_NOMEM, "%s: out of memory", name);
    }
    /* Photoshop writes Adobe CMYK inverted; PIL reads it as "CMYK;I". */
    int inverted = cmyk && cinfo.saw_Adobe_marker;
    while (cinfo.output_scanline < cinfo.output_height) {
        int y = (int)cinfo.output_scanline;
        JSAMPROW rp = cmyk ? row : raw.data + (size_t)y * raw.stride;
        jpeg_read_scanlines(&cinfo, &rp, 1);
        if (cmyk) {
            uint8_t *d = raw.data + (size_t)y * raw.stride;
            for (int x = 0; x < w; x++) {
                unsigned c[4];
                for (int k = 0; k < 4; k++) c[k] = inverted ? row[4 * x + k] : 255u - row[4 * x + k];
                for (int k = 0; k < 3; k++) d[3 * x + k] = (uint8_t)((c[k] * c[3] + 127) / 255);
            }
        }
    }
    int orientation = 1;
    if (apply_exif)
        for (jpeg_saved_marker_ptr m = cinfo.marker_list; m; m = m->next)
            if (m->marker == JPEG_APP0 + 1) {
                orientation = exif_orientation(m->data, m->data_length);
                break;
            }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    free(row);
    if (jerr.truncated) { /* as PIL, which refuses a truncated image */
        image_free(&raw);
        return ferc_set_error(FERC_ERR_FORMAT, "%s: bad JPEG: the data ends before the image does (truncated)", name);
    }
    if (orientation != 1) {
        int rc = image_orient(img, &raw, orientation);
        image_free(&raw);
        return rc;
    }
    *img = raw;
    return FERC_OK;
}

/* ---- PNG ----------------------------------------------------------------------------------- */
typedef struct png_src {
    const uint8_t *data;
    size_t size, pos;
    char msg[200];
} png_src;

static void png_read_mem(png_structp png, png_bytep out, png_size_t n)
{
    png_src *s = png_get_io_ptr(png);
    if (s->pos + n > s->size) png_error(png, "truncated file");
    memcpy(out, s->data + s->pos, n);
    s->pos += n;
}

static void png_err_fn(png_structp png, png_const_charp msg)
{
    png_src *s = png_get_error_ptr(png);
    snprintf(s->msg, sizeof s->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void png_warn_fn(png_structp png, png_const_charp msg) { (void)png; (void)msg; }

static int decode_png(image *img, const uint8_t *data, size_t size, const char *name)
{
    png_src src = {data, size, 0, "unknown error"};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_err_fn, png_warn_fn);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return ferc_set_error(FERC_ERR_NOMEM, "%s: out of memory", name);
    }
    image raw = {0};
    png_bytep *volatile rows = NULL; /* assigned after setjmp */
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        image_free(&raw);
        free(rows);
        return ferc_set_error(FERC_ERR_FORMAT, "%s: bad PNG: %s", name, src.msg);
    }
    png_set_read_fn(png, &src, png_read_mem);
    png_read_info(png, info);
    int ct = png_get_color_type(png, info);
    if (png_get_bit_depth(png, info) == 16) png_set_scale_16(png); /* rounds v*255/65535; PIL would truncate RGB and clip gray */
    if (ct == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (ct == PNG_COLOR_TYPE_GRAY && png_get_bit_depth(png, info) < 8) png_set_expand_gray_1_2_4_to_8(png);
    int trns = png_get_valid(png, info, PNG_INFO_tRNS) != 0;
    if (trns) png_set_tRNS_to_alpha(png);
    /* Gray+alpha becomes RGBA so no information is dropped before the mode conversion. */
    if (!(ct & PNG_COLOR_MASK_COLOR) && ((ct & PNG_COLOR_MASK_ALPHA) || trns)) png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int nc = png_get_channels(png, info);
    int w = (int)png_get_image_width(png, info), h = (int)png_get_image_height(png, info);
    if (image_alloc(&raw, w, h, nc)) {
        png_destroy_read_struct(&png, &info, NULL);
        return ferc_wrap_error(FERC_ERR_NOMEM, "%s", name);
    }
    rows = malloc(sizeof *rows * (size_t)h);
    if (!rows) png_error(png, "out of memory");
    for (int y = 0; y < h; y++) rows[y] = raw.data + (size_t)y * raw.stride;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    *img = raw;
    return FERC_OK;
}

/* ---- PGM/PPM (binary P5/P6, 8-bit) --------------------------------------------------------- */
static int pnm_int(const uint8_t *d, size_t n, size_t *pos, int *out)
{
    size_t p = *pos;
    for (;;) {
        while (p < n && (d[p] == ' ' || d[p] == '\t' || d[p] == '\n' || d[p] == '\r')) p++;
        if (p < n && d[p] == '#') {
            while (p < n && d[p] != '\n') p++;
            continue;
        }
        break;
    }
    if (p >= n || d[p] < '0' || d[p] > '9') return -1;
    long v = 0;
    while (p < n && d[p] >= '0' && d[p] <= '9' && v < 1000000) v = v * 10 + (d[p++] - '0');
    *out = (int)v;
    *pos = p;
    return 0;
}

static int decode_pnm(image *img, const uint8_t *d, size_t n, const char *name)
{
    int c = d[1] == '5' ? 1 : 3, w, h, maxv;
    size_t p = 2;
    if (pnm_int(d, n, &p, &w) || pnm_int(d, n, &p, &h) || pnm_int(d, n, &p, &maxv) || maxv < 1 || maxv > 255)
        return ferc_set_error(FERC_ERR_FORMAT, "%s: bad or unsupported PNM header (8-bit P5/P6 only)", name);
    p++; /* the single whitespace after maxval */
    if (w <= 0 || h <= 0 || n < p || (n - p) / (size_t)c / (size_t)w < (size_t)h)
        return ferc_set_error(FERC_ERR_FORMAT, "%s: truncated PNM", name);
    int rc = image_alloc(img, w, h, c);
    if (rc) return rc;
    memcpy(img->data, d + p, (size_t)w * (size_t)h * (size_t)c);
    if (maxv != 255)
        for (size_t i = 0; i < (size_t)w * (size_t)h * (size_t)c; i++)
            img->data[i] = (uint8_t)(img->data[i] > maxv ? 255 : (img->data[i] * 255 + maxv / 2) / maxv);
    return FERC_OK;
}

/* ---- BMP (uncompressed 8-bit palette, 24 and 32-bit) --------------------------------------- */
static int decode_bmp(image *img, const uint8_t *d, size_t n, const char *name)
{
    if (n < 54) return ferc_set_error(FERC_ERR_FORMAT, "%s: truncated BMP", name);
    uint32_t off = rd32(d + 10, 1), hsz = rd32(d + 14, 1);
    int32_t w = (int32_t)rd32(d + 18, 1), h32 = (int32_t)rd32(d + 22, 1);
    int bpp = rd16(d + 28, 1);
    uint32_t comp = rd32(d + 30, 1), ncol = rd32(d + 46, 1);
    int top_down = h32 < 0;
    /* negated in 64 bits: -INT32_MIN does not fit an int32 (a fuzzed header had it) */
    int64_t h64 = top_down ? -(int64_t)h32 : (int64_t)h32;
    int32_t h = h64 > 65535 ? 65536 : (int32_t)h64;
    if (w <= 0 || h <= 0 || w > 65535 || h > 65535 || !(comp == 0 || (comp == 3 && bpp == 32)) ||
        (bpp != 8 && bpp != 24 && bpp != 32))
        return ferc_set_error(FERC_ERR_UNSUPPORTED, "%s: unsupported BMP (%d bpp, compression %u)", name, bpp, comp);
    size_t rowsz = (((size_t)w * (size_t)bpp + 31) / 32) * 4;
    if (off > n || (n - off) / rowsz < (size_t)h) return ferc_set_error(FERC_ERR_FORMAT, "%s: truncated BMP", name);
    const uint8_t *pal = d + 14 + hsz;
    if (bpp == 8) {
        if (ncol == 0 || ncol > 256) ncol = 256;
        if (14 + hsz + 4 * (size_t)ncol > off) return ferc_set_error(FERC_ERR_FORMAT, "%s: bad BMP palette", name);
    }
    int rc = image_alloc(img, w, h, 3);
    if (rc) return rc;
    for (int y = 0; y < h; y++) {
        const uint8_t *s = d + off + (size_t)(top_down ? y : h - 1 - y) * rowsz;
        uint8_t *o = img->data + (size_t)y * img->stride;
        for (int x = 0; x < w; x++) {
            const uint8_t *px = bpp == 8 ? pal + 4 * (s[x] < ncol ? s[x] : 0) : s + (size_t)x * (size_t)(bpp / 8);
            o[3 * x] = px[2];
            o[3 * x + 1] = px[1];
            o[3 * x + 2] = px[0];
        }
    }
    return FERC_OK;
}

static int convert_mode(image *img, image_mode mode)
{
    image out = {0};
    int rc;
    if (mode == IMAGE_MODE_GRAY && img->channels != 1) rc = image_to_gray(&out, img);
    else if (mode == IMAGE_MODE_RGB && img->channels != 3) rc = image_to_rgb(&out, img);
    else return FERC_OK;
    image_free(img);
    if (rc) return rc;
    *img = out;
    return FERC_OK;
}

int image_probe(const uint8_t *data, size_t size, int *width, int *height, const char *name_for_errors)
{
    const char *volatile name = name_for_errors ? name_for_errors : "image"; /* read after longjmp */
    *width = *height = 0;
    if (!data || size < 24) return ferc_set_error(FERC_ERR_FORMAT, "%s: too short to be an image", name);
    if (!memcmp(data, "\x89PNG\r\n\x1a\n", 8)) {
        if (memcmp(data + 12, "IHDR", 4)) return ferc_set_error(FERC_ERR_FORMAT, "%s: bad PNG: no IHDR chunk first", name);
        const uint8_t *d = data + 16;
        uint32_t w = (uint32_t)d[0] << 24 | (uint32_t)d[1] << 16 | (uint32_t)d[2] << 8 | d[3];
        uint32_t h = (uint32_t)d[4] << 24 | (uint32_t)d[5] << 16 | (uint32_t)d[6] << 8 | d[7];
        if (!w || !h || w > 0x7fffffff || h > 0x7fffffff)
            return ferc_set_error(FERC_ERR_FORMAT, "%s: bad PNG: size %ux%u", name, w, h);
        *width = (int)w, *height = (int)h;
        return FERC_OK;
    }
    if (data[0] != 0xFF || data[1] != 0xD8) return ferc_set_error(FERC_ERR_FORMAT, "%s: not a JPEG or PNG image", name);
    struct jpeg_decompress_struct cinfo;
    jpg_err jerr;
    memset(&cinfo, 0, sizeof cinfo);
    cinfo.err = jpg_err_setup(&jerr);
    if (setjmp(jerr.jump)) {
        jpeg_destroy_decompress(&cinfo);
        return ferc_set_error(FERC_ERR_FORMAT, "%s: bad JPEG: %s", name, jerr.msg);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    *width = (int)cinfo.image_width, *height = (int)cinfo.image_height;
    jpeg_destroy_decompress(&cinfo);
    return FERC_OK;
}

int image_decode(image *img, const uint8_t *data, size_t size, image_mode mode, int apply_exif,
                 const char *name_for_errors)
{
    const char *name = name_for_errors ? name_for_errors : "image";
    memset(img, 0, sizeof *img);
    int rc;
    if (!data || size < 8) return ferc_set_error(FERC_ERR_FORMAT, "%s: too short to be an image", name);
    if (data[0] == 0xFF && data[1] == 0xD8) rc = decode_jpeg(img, data, size, apply_exif, name);
    else if (!memcmp(data, "\x89PNG\r\n\x1a\n", 8)) rc = decode_png(img, data, size, name);
    else if (data[0] == 'P' && (data[1] == '5' || data[1] == '6')) rc = decode_pnm(img, data, size, name);
    else if (data[0] == 'B' && data[1] == 'M') rc = decode_bmp(img, data, size, name);
    else return ferc_set_error(FERC_ERR_FORMAT, "%s: not a JPEG, PNG, PGM/PPM or BMP file", name);
    if (rc) return rc;
    rc = convert_mode(img, mode);
    if (rc) image_free(img);
    return rc;
}

int image_load(image *img, const char *path, image_mode mode, int apply_exif)
{
    uint8_t *data;
    size_t size;
    memset(img, 0, sizeof *img);
    int rc = file_read_all(path, &data, &size);
    if (rc) return rc;
    rc = image_decode(img, data, size, mode, apply_exif, path);
    free(data);
    return rc;
}

/* ---- encoding ------------------------------------------------------------------------------ */
typedef struct mem_buf {
    uint8_t *data;
    size_t size, cap;
    int oom;
} mem_buf;

static void png_write_mem(png_structp png, png_bytep p, png_size_t n)
{
    mem_buf *b = png_get_io_ptr(png);
    if (b->size + n > b->cap) {
        size_t cap = (b->cap ? b->cap * 2 : 65536);
        while (cap < b->size + n) cap *= 2;
        uint8_t *nd = realloc(b->data, cap);
        if (!nd) png_error(png, "out of memory");
        b->data = nd;
        b->cap = cap;
    }
    memcpy(b->data + b->size, p, n);
    b->size += n;
}

static void png_flush_mem(png_structp png) { (void)png; }

int image_encode_png(const image *img, uint8_t **out, size_t *out_size)
{
    *out = NULL;
    *out_size = 0;
    png_src errs = {0};
    mem_buf buf = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &errs, png_err_fn, png_warn_fn);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_write_struct(&png, NULL);
        return ferc_set_error(FERC_ERR_NOMEM, "out of memory encoding PNG");
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(buf.data);
        return ferc_set_error(FERC_ERR_FORMAT, "PNG encoding failed: %s", errs.msg);
    }
    png_set_write_fn(png, &buf, png_write_mem, png_flush_mem);
    int ct = img->channels == 1 ? PNG_COLOR_TYPE_GRAY : img->channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_RGBA;
    png_set_IHDR(png, info, (png_uint_32)img->width, (png_uint_32)img->height, 8, ct, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < img->height; y++) png_write_row(png, img->data + (size_t)y * img->stride);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    *out = buf.data;
    *out_size = buf.size;
    return FERC_OK;
}

int image_encode_jpeg(const image *img, int quality, uint8_t **out, size_t *out_size)
{
    *out = NULL;
    *out_size = 0;
    struct jpeg_compress_struct cinfo;
    jpg_err jerr;
    unsigned char *mem = NULL;
    unsigned long memsize = 0;
    uint8_t *volatile row = NULL; /* assigned after setjmp */
    memset(&cinfo, 0, sizeof cinfo);
    cinfo.err = jpg_err_setup(&jerr);
    if (setjmp(jerr.jump)) {
        jpeg_destroy_compress(&cinfo);
        free(mem);
        free(row);
        return ferc_set_error(FERC_ERR_FORMAT, "JPEG encoding failed: %s", jerr.msg);
    }
    jpeg_create_compress(&cinfo);
    jpeg_mem_dest(&cinfo, &mem, &memsize);
    cinfo.image_width = (JDIMENSION)img->width;
    cinfo.image_height = (JDIMENSION)img->height;
    cinfo.input_components = img->channels == 1 ? 1 : 3;
    cinfo.in_color_space = img->channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality < 1 ? 1 : quality > 100 ? 100 : quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    if (img->channels == 4 && !(row = malloc((size_t)img->width * 3))) {
        jpeg_destroy_compress(&cinfo);
        free(mem);
        return ferc_set_error(FERC_ERR_NOMEM, "out of memory encoding JPEG");
    }
    while (cinfo.next_scanline < cinfo.image_height) {
        const uint8_t *s = img->data + (size_t)cinfo.next_scanline * img->stride;
        JSAMPROW rp = (JSAMPROW)(uintptr_t)s;
        if (row) { /* JPEG has no alpha: drop it */
            for (int x = 0; x < img->width; x++) memcpy(row + 3 * x, s + 4 * x, 3);
            rp = row;
        }
        jpeg_write_scanlines(&cinfo, &rp, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    free(row);
    *out = mem;
    *out_size = memsize;
    return FERC_OK;
}

int image_save(const image *img, const char *path, int quality)
{
    const char *dot = strrchr(path, '.');
    uint8_t *buf;
    size_t n;
    int rc;
    if (dot && !strcasecmp(dot, ".png")) rc = image_encode_png(img, &buf, &n);
    else if (dot && (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"))) rc = image_encode_jpeg(img, quality, &buf, &n);
    else return ferc_set_error(FERC_ERR_INVALID, "%s: cannot tell the format (use .png, .jpg or .jpeg)", path);
    if (rc) return ferc_wrap_error(rc, "%s", path);
    rc = file_write_atomic(path, buf, n);
    free(buf);
    return rc;
}
