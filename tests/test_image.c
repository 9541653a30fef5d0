/* image module: codecs (JPEG gray/RGB/CMYK/EXIF, PNG gray/RGB/RGBA/palette/16-bit, PGM, BMP),
 * conversions, crop, resize basics, drawing. Inputs are made here with libjpeg/libpng
 * directly so that each decoder path is exercised by a file of exactly that kind. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jpeglib.h>
#include <png.h>

#include "core/core.h"
#include "image/image.h"
#include "testutil.h"

static char tmpdir[64];

static const char *tmp_path(const char *name)
{
    static char buf[4][256];
    static int k;
    k = (k + 1) & 3;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

/* Writes a PNG of any libpng colour type / depth from raw rows. */
static void write_png(const char *path, int w, int h, int color_type, int depth, const uint8_t *rows,
                      size_t stride, const png_color *pal, int npal, const uint8_t *trns, int ntrns)
{
    FILE *f = fopen(path, "wb");
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, color_type, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (pal) png_set_PLTE(png, info, pal, npal);
    if (trns) png_set_tRNS(png, info, trns, ntrns, NULL);
    png_write_info(png, info);
    for (int y = 0; y < h; y++) png_write_row(png, rows + (size_t)y * stride);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    fclose(f);
}

static void write_jpeg(const char *path, int w, int h, int comps, J_COLOR_SPACE cs, const uint8_t *px,
                       const uint8_t *app1, unsigned app1_len)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    FILE *f = fopen(path, "wb");
    jpeg_stdio_dest(&c, f);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = comps;
    c.in_color_space = cs;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 100, TRUE);
    jpeg_start_compress(&c, TRUE);
    if (app1) jpeg_write_marker(&c, JPEG_APP0 + 1, app1, app1_len);
    while (c.next_scanline < c.image_height) {
        JSAMPROW r = (JSAMPROW)(uintptr_t)(px + (size_t)c.next_scanline * (size_t)w * (size_t)comps);
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    fclose(f);
}

static int px(const image *im, int x, int y, int c) { return im->data[(size_t)y * im->stride + (size_t)x * (size_t)im->channels + (size_t)c]; }

static void test_png_kinds(void)
{
    image im = {0};
    uint8_t rgba[4 * 3 * 2];
    for (int i = 0; i < 24; i++) rgba[i] = (uint8_t)(i * 10);
    write_png(tmp_path("rgba.png"), 3, 2, PNG_COLOR_TYPE_RGBA, 8, rgba, 12, NULL, 0, NULL, 0);
    CHECK_OK(image_load(&im, tmp_path("rgba.png"), IMAGE_MODE_ANY, 0));
    CHECK(im.channels == 4 && im.width == 3 && im.height == 2 && px(&im, 2, 1, 3) == 230);
    image_free(&im);
    CHECK_OK(image_load(&im, tmp_path("rgba.png"), IMAGE_MODE_RGB, 0));
    CHECK(im.channels == 3 && px(&im, 1, 0, 0) == 40 && px(&im, 1, 0, 2) == 60);
    image_free(&im);
    CHECK_OK(image_load(&im, tmp_path("rgba.png"), IMAGE_MODE_GRAY, 0));
    /* luma of (40,50,60) = (19595*40 + 38470*50 + 7471*60 + 32768) >> 16 = 48 */
    CHECK(im.channels == 1 && px(&im, 1, 0, 0) == 48, "got %d", px(&im, 1, 0, 0));
    image_free(&im);

    /* 16-bit gray: 0x1234 scales to round(0x1234 * 255 / 65535) = 18 */
    uint8_t g16[2 * 2 * 2] = {0x12, 0x34, 0xff, 0xff, 0x00, 0x00, 0x80, 0x00};
    write_png(tmp_path("g16.png"), 2, 2, PNG_COLOR_TYPE_GRAY, 16, g16, 4, NULL, 0, NULL, 0);
    CHECK_OK(image_load(&im, tmp_path("g16.png"), IMAGE_MODE_ANY, 0));
    CHECK(im.channels == 1 && px(&im, 0, 0, 0) == 18 && px(&im, 1, 0, 0) == 255 && px(&im, 1, 1, 0) == 128,
          "%d %d %d", px(&im, 0, 0, 0), px(&im, 1, 0, 0), px(&im, 1, 1, 0));
    image_free(&im);

    /* 16-bit RGB */
    uint8_t rgb16[6 * 1] = {0xff, 0xff, 0x00, 0x00, 0x7f, 0xff};
    write_png(tmp_path("rgb16.png"), 1, 1, PNG_COLOR_TYPE_RGB, 16, rgb16, 6, NULL, 0, NULL, 0);
    CHECK_OK(image_load(&im, tmp_path("rgb16.png"), IMAGE_MODE_RGB, 0));
    CHECK(px(&im, 0, 0, 0) == 255 && px(&im, 0, 0, 1) == 0 && px(&im, 0, 0, 2) == 127);
    image_free(&im);

    /* palette, 4-bit, with transparency */
    png_color pal[3] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}};
    uint8_t trns[3] = {255, 128, 0};
    uint8_t idx[2] = {0x01, 0x20}; /* pixels 0,1,2,0 (4 bits each) */
    write_png(tmp_path("pal.png"), 4, 1, PNG_COLOR_TYPE_PALETTE, 4, idx, 2, pal, 3, trns, 3);
    CHECK_OK(image_load(&im, tmp_path("pal.png"), IMAGE_MODE_ANY, 0));
    CHECK(im.channels == 4 && px(&im, 1, 0, 1) == 255 && px(&im, 1, 0, 3) == 128 && px(&im, 2, 0, 2) == 255);
    image_free(&im);
    CHECK_OK(image_load(&im, tmp_path("pal.png"), IMAGE_MODE_RGB, 0));
    CHECK(im.channels == 3 && px(&im, 0, 0, 0) == 255 && px(&im, 2, 0, 2) == 255);
    image_free(&im);

    /* gray + alpha, and 1-bit gray */
    uint8_t ga[4] = {100, 7, 200, 9};
    write_png(tmp_path("ga.png"), 2, 1, PNG_COLOR_TYPE_GRAY_ALPHA, 8, ga, 4, NULL, 0, NULL, 0);
    CHECK_OK(image_load(&im, tmp_path("ga.png"), IMAGE_MODE_GRAY, 0));
    CHECK(im.channels == 1 && px(&im, 0, 0, 0) == 100 && px(&im, 1, 0, 0) == 200);
    image_free(&im);
    uint8_t bits[1] = {0xA0};
    write_png(tmp_path("g1.png"), 3, 1, PNG_COLOR_TYPE_GRAY, 1, bits, 1, NULL, 0, NULL, 0);
    CHECK_OK(image_load(&im, tmp_path("g1.png"), IMAGE_MODE_ANY, 0));
    CHECK(im.channels == 1 && px(&im, 0, 0, 0) == 255 && px(&im, 1, 0, 0) == 0 && px(&im, 2, 0, 0) == 255);
    image_free(&im);
}

static void test_jpeg_kinds(void)
{
    image im = {0};
    enum { W = 16, H = 8 };
    uint8_t gray[W * H], rgb[W * H * 3], cmyk[W * H * 4];
    for (int i = 0; i < W * H; i++) {
        gray[i] = 90;
        rgb[3 * i] = 200, rgb[3 * i + 1] = 100, rgb[3 * i + 2] = 50;
        /* Adobe CMYK is stored inverted: (255-C, 255-M, 255-Y, 255-K) = (R, G, B, 255) when K=0 */
        cmyk[4 * i] = 200, cmyk[4 * i + 1] = 100, cmyk[4 * i + 2] = 50, cmyk[4 * i + 3] = 255;
    }
    write_jpeg(tmp_path("g.jpg"), W, H, 1, JCS_GRAYSCALE, gray, NULL, 0);
    CHECK_OK(image_load(&im, tmp_path("g.jpg"), IMAGE_MODE_ANY, 1));
    CHECK(im.channels == 1 && im.width == W && abs(px(&im, 3, 3, 0) - 90) <= 1);
    image_free(&im);
    CHECK_OK(image_load(&im, tmp_path("g.jpg"), IMAGE_MODE_RGB, 1));
    CHECK(im.channels == 3 && abs(px(&im, 3, 3, 2) - 90) <= 1);
    image_free(&im);
    write_jpeg(tmp_path("rgb.jpg"), W, H, 3, JCS_RGB, rgb, NULL, 0);
    CHECK_OK(image_load(&im, tmp_path("rgb.jpg"), IMAGE_MODE_ANY, 1));
    CHECK(im.channels == 3 && abs(px(&im, 5, 5, 0) - 200) <= 3 && abs(px(&im, 5, 5, 2) - 50) <= 3);
    image_free(&im);
    write_jpeg(tmp_path("cmyk.jpg"), W, H, 4, JCS_CMYK, cmyk, NULL, 0);
    CHECK_OK(image_load(&im, tmp_path("cmyk.jpg"), IMAGE_MODE_ANY, 1));
    CHECK(im.channels == 3 && abs(px(&im, 5, 5, 0) - 200) <= 3 && abs(px(&im, 5, 5, 1) - 100) <= 3 &&
          abs(px(&im, 5, 5, 2) - 50) <= 3, "cmyk -> %d %d %d", px(&im, 5, 5, 0), px(&im, 5, 5, 1), px(&im, 5, 5, 2));
    image_free(&im);

    /* EXIF orientation 6 (rotate 90 CW): a 16x8 image with a bright left half displays as
     * 8x16 with the bright half on top. Little-endian TIFF, one IFD entry. */
    uint8_t half[W * H];
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) half[y * W + x] = x < W / 2 ? 250 : 5;
    const uint8_t exif[] = {'E', 'x', 'i', 'f', 0, 0, 'I', 'I', 42, 0, 8, 0, 0, 0, 1, 0,
                            0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0};
    write_jpeg(tmp_path("exif.jpg"), W, H, 1, JCS_GRAYSCALE, half, exif, sizeof exif);
    CHECK_OK(image_load(&im, tmp_path("exif.jpg"), IMAGE_MODE_ANY, 1));
    CHECK(im.width == H && im.height == W && px(&im, 4, 2, 0) > 200 && px(&im, 4, 13, 0) < 50,
          "%dx%d top %d bottom %d", im.width, im.height, px(&im, 4, 2, 0), px(&im, 4, 13, 0));
    image_free(&im);
    CHECK_OK(image_load(&im, tmp_path("exif.jpg"), IMAGE_MODE_ANY, 0));
    CHECK(im.width == W && im.height == H);
    image_free(&im);
}

static void test_other_formats_and_errors(void)
{
    image im = {0};
    const char pgm[] = "P5\n# c\n3 2\n255\n\x01\x02\x03\x04\x05\x06";
    CHECK_OK(image_decode(&im, (const uint8_t *)pgm, sizeof pgm - 1, IMAGE_MODE_ANY, 0, "x.pgm"));
    CHECK(im.channels == 1 && im.width == 3 && im.height == 2 && px(&im, 2, 1, 0) == 6);
    image_free(&im);

    /* 2x1 24-bit BMP, bottom-up, rows padded to 4 bytes */
    uint8_t bmp[54 + 8] = {'B', 'M'};
    bmp[10] = 54, bmp[14] = 40, bmp[18] = 2, bmp[22] = 1, bmp[26] = 1, bmp[28] = 24;
    bmp[54] = 10, bmp[55] = 20, bmp[56] = 30, bmp[57] = 40, bmp[58] = 50, bmp[59] = 60;
    CHECK_OK(image_decode(&im, bmp, sizeof bmp, IMAGE_MODE_ANY, 0, "x.bmp"));
    CHECK(im.channels == 3 && px(&im, 0, 0, 0) == 30 && px(&im, 1, 0, 2) == 40);
    image_free(&im);

    /* truncated JPEG and PNG, garbage, missing file: errors, no crash */
    uint8_t *buf;
    size_t n;
    CHECK_OK(file_read_all(tmp_path("rgb.jpg"), &buf, &n));
    /* libjpeg would fill the missing rows with gray and only warn; PIL refuses, and so do we */
    CHECK(image_decode(&im, buf, n / 3, IMAGE_MODE_ANY, 0, "trunc.jpg") == FERC_ERR_FORMAT && !im.data);
    image_free(&im);
    memset(buf + 2, 0x55, 40);
    CHECK(image_decode(&im, buf, n, IMAGE_MODE_ANY, 0, "bad.jpg") == FERC_ERR_FORMAT && !im.data);
    free(buf);
    CHECK_OK(file_read_all("tests/fixtures/faces/Tom_Cruise_avp_2014_4.jpg", &buf, &n));
    CHECK(image_decode(&im, buf, n / 2, IMAGE_MODE_ANY, 0, "half.jpg") == FERC_ERR_FORMAT && !im.data);
    CHECK(strstr(ferc_last_error(), "truncated") != NULL, "%s", ferc_last_error());
    free(buf);
    CHECK_OK(file_read_all(tmp_path("rgba.png"), &buf, &n));
    CHECK(image_decode(&im, buf, n - 20, IMAGE_MODE_ANY, 0, "trunc.png") == FERC_ERR_FORMAT && !im.data);
    CHECK(strstr(ferc_last_error(), "trunc.png") != NULL, "%s", ferc_last_error());
    free(buf);
    CHECK(image_decode(&im, (const uint8_t *)"hello world!", 12, IMAGE_MODE_ANY, 0, "t.txt") == FERC_ERR_FORMAT);
    CHECK(image_load(&im, tmp_path("nope.png"), IMAGE_MODE_ANY, 0) == FERC_ERR_IO);
}

static void test_geometry_and_save(void)
{
    image a = {0}, b = {0}, c = {0};
    CHECK_OK(image_alloc(&a, 10, 6, 3));
    for (int y = 0; y < 6; y++)
        for (int x = 0; x < 10; x++)
            for (int k = 0; k < 3; k++) a.data[y * a.stride + (size_t)x * 3 + (size_t)k] = (uint8_t)(x * 20 + y + k);
    CHECK_OK(image_crop(&b, &a, -2, 1, 5, 3));
    CHECK(b.width == 5 && px(&b, 0, 0, 0) == 0 && px(&b, 2, 0, 0) == 1 && px(&b, 4, 2, 1) == 2 * 20 + 3 + 1);
    image_free(&b);
    CHECK_OK(image_flip_h(&b, &a));
    CHECK(px(&b, 0, 2, 0) == px(&a, 9, 2, 0));
    image_free(&b);
    /* constant images stay constant under any resize */
    CHECK_OK(image_alloc(&b, 48, 48, 1));
    memset(b.data, 77, 48 * 48);
    CHECK_OK(image_resize(&c, &b, 17, 100));
    int ok = c.width == 17 && c.height == 100;
    for (size_t i = 0; ok && i < 17 * 100; i++) ok = c.data[i] == 77;
    CHECK(ok);
    image_free(&c);
    /* 2x upscale of [0, 100]: PIL bilinear gives 0, 25, 75, 100 */
    image_free(&b);
    CHECK_OK(image_alloc(&b, 2, 1, 1));
    b.data[1] = 100;
    CHECK_OK(image_resize(&c, &b, 4, 1));
    CHECK(c.data[0] == 0 && c.data[1] == 25 && c.data[2] == 75 && c.data[3] == 100,
          "%d %d %d %d", c.data[0], c.data[1], c.data[2], c.data[3]);
    image_free(&c);
    image_free(&b);

    CHECK_OK(image_save(&a, tmp_path("out.png"), 0));
    CHECK_OK(image_load(&b, tmp_path("out.png"), IMAGE_MODE_ANY, 0));
    CHECK(b.width == 10 && b.channels == 3 && !memcmp(a.data, b.data, 10 * 6 * 3));
    image_free(&b);
    CHECK_OK(image_save(&a, tmp_path("out.jpg"), 95));
    CHECK_OK(image_load(&b, tmp_path("out.jpg"), IMAGE_MODE_ANY, 0));
    CHECK(b.width == 10 && b.height == 6 && b.channels == 3);
    image_free(&b);
    CHECK(image_save(&a, tmp_path("out.tga"), 0) == FERC_ERR_INVALID);

    CHECK_OK(image_to_gray(&b, &a));
    CHECK(b.channels == 1 && px(&b, 3, 2, 0) == 60 + 2 + 1);
    image_free(&b);

    uint8_t red[3] = {255, 0, 0}, white[3] = {255, 255, 255}, black[3] = {0, 0, 0};
    CHECK_OK(image_alloc(&b, 60, 20, 3));
    image_draw_rect(&b, 1, 1, 20, 10, 2, red);
    CHECK(px(&b, 1, 1, 0) == 255 && px(&b, 2, 2, 0) == 255 && px(&b, 3, 3, 0) == 0 && px(&b, 20, 10, 0) == 255);
    image_draw_rect(&b, 50, 15, 30, 30, 1, red); /* clipped, no crash */
    int w = image_draw_text(&b, 0, 0, "Hi!", 1, white, black);
    CHECK(w == 18);
    int lit = 0;
    for (int y = 0; y < 9; y++)
        for (int x = 0; x < 18; x++) lit += px(&b, x, y, 1) == 255;
    CHECK(lit > 15 && lit < 60, "lit %d", lit);
    image_free(&b);
    image_free(&a);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ferc_test_image_XXXXXX");
    if (!mkdtemp(tmpdir)) return test_skip("cannot create a temp dir");
    test_png_kinds();
    test_jpeg_kinds();
    test_other_formats_and_errors();
    test_geometry_and_save();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return test_finish("test_image");
}
