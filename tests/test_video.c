/* video: decoding a small video made here with the ffmpeg CLI (frame count, times, pixels
 * against ffmpeg's own decode), truncated and garbage files (errors naming the position, no
 * crash), the image-folder source, the MP4 writer read back, and the no-camera and no-display
 * errors. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ferc.h"
#include "core/core.h"
#include "image/image.h"
#include "video/video.h"
#include "testutil.h"

static char dir[256];

/* Copies the first `frac` of a file. */
static void truncate_copy(const char *src, const char *dst, double frac)
{
    uint8_t *data;
    size_t size;
    CHECK_OK(file_read_all(src, &data, &size));
    FILE *f = fopen(dst, "wb");
    if (f) {
        fwrite(data, 1, (size_t)(size * frac), f);
        fclose(f);
    }
    free(data);
}

static int count_frames(const char *path, int *n, char *err, size_t errn)
{
    video_source *s;
    *n = 0;
    int rc = video_source_open_file(&s, path, 1);
    if (rc) {
        snprintf(err, errn, "%s", ferc_last_error());
        return rc;
    }
    const video_frame *f;
    while ((rc = video_source_read(s, &f)) == 1) (*n)++;
    if (rc < 0) snprintf(err, errn, "%s", ferc_last_error());
    video_source_close(s);
    return rc;
}

static void test_decode(void)
{
    char clip[300], ref[300];
    snprintf(clip, sizeof clip, "%s/clip.mp4", dir);
    snprintf(ref, sizeof ref, "%s/ref0.png", dir);
    /* 40 frames of ffmpeg's test pattern, 10 frames/s, index at the start (faststart) */
    if (test_sh("ffmpeg -v error -y -f lavfi -i testsrc=size=160x120:rate=10 -frames:v 40 -pix_fmt yuv420p "
           "-movflags +faststart %s",
           clip) != 0 ||
        test_sh("ffmpeg -v error -y -i %s -frames:v 1 %s", clip, ref) != 0) {
        CHECK(0, "ffmpeg could not make the test clip");
        return;
    }
    video_source *s;
    CHECK_OK(video_source_open_file(&s, clip, 1));
    if (!s) return;
    int w, h;
    double fps;
    int64_t frames;
    video_source_info(s, &w, &h, &fps, &frames);
    CHECK(w == 160 && h == 120 && fabs(fps - 10) < 1e-6 && frames == 40, "%dx%d %g fps %lld frames", w, h, fps, (long long)frames);
    printf("source: %s\n", video_source_describe(s));
    const video_frame *f;
    int n = 0, rc;
    image ref_img = {0};
    CHECK_OK(image_load(&ref_img, ref, IMAGE_MODE_RGB, 0));
    while ((rc = video_source_read(s, &f)) == 1) {
        CHECK(f->index == n, "index %lld at frame %d", (long long)f->index, n);
        CHECK(fabs(f->time - n * 0.1) < 1e-3, "frame %d at t=%g", n, f->time);
        CHECK(f->img.width == 160 && f->img.height == 120 && f->img.channels == 3);
        if (n == 0 && ref_img.data) {
            /* same picture as ffmpeg's own decode; swscale's conversion paths differ slightly */
            double sum = 0;
            for (int y = 0; y < 120; y++)
                for (int x = 0; x < 160 * 3; x++)
                    sum += fabs((double)f->img.data[(size_t)y * f->img.stride + x] - ref_img.data[(size_t)y * ref_img.stride + x]);
            double mad = sum / (160 * 120 * 3);
            printf("frame 0 vs ffmpeg's png: mean abs diff %.3f\n", mad);
            CHECK(mad < 3, "mean abs diff %g", mad);
        }
        n++;
    }
    CHECK(rc == 0, "clean end: %s", ferc_last_error());
    CHECK(n == 40, "40 frames, got %d", n);
    CHECK(video_source_read(s, &f) == 0, "stays at the end");
    video_source_close(s);
    image_free(&ref_img);

    /* truncated in the middle of the data: an error naming the frame position */
    char cut[300], err[512] = "";
    snprintf(cut, sizeof cut, "%s/cut.mp4", dir);
    truncate_copy(clip, cut, 0.6);
    rc = count_frames(cut, &n, err, sizeof err);
    printf("truncated (60%%): %d frames, rc %d: %s\n", n, rc, err);
    CHECK(rc < 0, "a truncated file is an error");
    CHECK(strstr(err, "frame") != NULL && strstr(err, "cut.mp4") != NULL, "the message names the file and the frame: %s", err);
    CHECK(n > 0 && n < 40, "some frames before the cut: %d", n);

    /* index at the end, cut off: cannot be opened, clean error */
    char late[300], cut2[300];
    snprintf(late, sizeof late, "%s/late.mp4", dir);
    snprintf(cut2, sizeof cut2, "%s/cut2.mp4", dir);
    if (test_sh("ffmpeg -v error -y -i %s -c copy %s", clip, late) == 0) {
        truncate_copy(late, cut2, 0.5);
        rc = count_frames(cut2, &n, err, sizeof err);
        printf("truncated without index: rc %d: %s\n", rc, err);
        CHECK(rc < 0 && n == 0 && strstr(err, "cut2.mp4"), "%s", err);
    }

    /* garbage and missing files */
    char junk[300];
    snprintf(junk, sizeof junk, "%s/junk.mp4", dir);
    FILE *jf = fopen(junk, "wb");
    for (int i = 0; jf && i < 5000; i++) fputc((i * 7919) & 255, jf);
    if (jf) fclose(jf);
    rc = count_frames(junk, &n, err, sizeof err);
    CHECK(rc < 0 && strstr(err, "junk.mp4"), "garbage: %s", err);
    snprintf(junk, sizeof junk, "%s/missing.mp4", dir);
    CHECK(count_frames(junk, &n, err, sizeof err) == FERC_ERR_IO, "missing file: %s", err);
}

static void test_images(void)
{
    char sub[300], path[400];
    snprintf(sub, sizeof sub, "%s/imgs", dir);
    CHECK_OK(file_mkdirs(sub));
    const char *names[3] = {"b.png", "a.png", "c.jpg"};
    for (int i = 0; i < 3; i++) {
        image img;
        CHECK_OK(image_alloc(&img, 40 + i, 30, 3));
        memset(img.data, 50 * i, img.stride * 30);
        snprintf(path, sizeof path, "%s/%s", sub, names[i]);
        CHECK_OK(image_save(&img, path, 95));
        image_free(&img);
    }
    snprintf(path, sizeof path, "%s/notes.txt", sub);
    FILE *f = fopen(path, "w");
    if (f) fputs("not an image\n", f), fclose(f);
    video_source *s;
    CHECK_OK(video_source_open_images(&s, sub, 2));
    if (s) {
        const video_frame *fr;
        const char *order[3] = {"a.png", "b.png", "c.jpg"};
        int widths[3] = {41, 40, 42}, n = 0, rc;
        while ((rc = video_source_read(s, &fr)) == 1) {
            if (n < 3) {
                CHECK(strstr(fr->name, order[n]) != NULL, "name order: %s", fr->name);
                CHECK(fr->img.width == widths[n] && fr->img.channels == 3);
                CHECK(fabs(fr->time - n * 0.5) < 1e-9);
            }
            n++;
        }
        CHECK(rc == 0 && n == 3, "3 images, got %d (rc %d)", n, rc);
        video_source_close(s);
    }
    /* a broken image is an error naming it */
    snprintf(path, sizeof path, "%s/d.jpg", sub);
    f = fopen(path, "w");
    if (f) fputs("garbage", f), fclose(f);
    CHECK_OK(video_source_open_images(&s, sub, 0));
    if (s) {
        const video_frame *fr;
        int rc;
        while ((rc = video_source_read(s, &fr)) == 1) {}
        CHECK(rc < 0 && strstr(ferc_last_error(), "d.jpg"), "broken image: %s", ferc_last_error());
        video_source_close(s);
    }
    snprintf(path, sizeof path, "%s/empty", dir);
    file_mkdirs(path);
    CHECK(video_source_open_images(&s, path, 0) == FERC_ERR_NOT_FOUND, "empty folder: %s", ferc_last_error());
}

static void test_writer(void)
{
    char out[300];
    snprintf(out, sizeof out, "%s/written.mp4", dir);
    video_writer *w;
    CHECK_OK(video_writer_open(&w, out, 96, 64, 15));
    if (!w) return;
    printf("writer codec: %s\n", video_writer_codec(w));
    CHECK(!strcmp(video_writer_codec(w), "libx264") || !strcmp(video_writer_codec(w), "mpeg4"));
    image img;
    CHECK_OK(image_alloc(&img, 96, 64, 3));
    for (int i = 0; i < 20; i++) {
        for (int y = 0; y < 64; y++)
            for (int x = 0; x < 96; x++) {
                uint8_t *p = img.data + (size_t)y * img.stride + 3 * x;
                p[0] = (uint8_t)(x * 2 + i * 5), p[1] = (uint8_t)(y * 3), p[2] = 128;
            }
        CHECK_OK(video_writer_write(w, &img));
    }
    CHECK_OK(video_writer_close(w));
    video_source *s;
    CHECK_OK(video_source_open_file(&s, out, 1));
    if (s) {
        const video_frame *f;
        int n = 0, rc;
        double err = 0;
        while ((rc = video_source_read(s, &f)) == 1) {
            if (n == 19)
                for (int y = 8; y < 56; y++)
                    for (int x = 8 * 3; x < 88 * 3; x++)
                        err += fabs((double)f->img.data[(size_t)y * f->img.stride + x] - img.data[(size_t)y * img.stride + x]);
            n++;
        }
        err /= 48.0 * 80 * 3;
        printf("written video: %d frames, last frame mean abs diff %.2f\n", n, err);
        CHECK(rc == 0 && n == 20, "20 frames back, got %d (%s)", n, rc ? ferc_last_error() : "");
        CHECK(err < 6, "the picture survives encoding: %g", err);
        video_source_close(s);
    }
    image_free(&img);
    CHECK(video_writer_open(&w, "/nonexistent-dir/x.mp4", 96, 64, 15) < 0, "unwritable path");
}

static void test_camera_and_window(void)
{
    char devs[256];
    int n = video_list_devices(devs, sizeof devs);
    video_source *s;
    int rc = video_source_open_camera(&s, "/dev/video-ferc-missing", NULL);
    printf("no camera: %s\n", ferc_last_error());
    CHECK(rc == FERC_ERR_NOT_FOUND && strstr(ferc_last_error(), "video devices found: "), "%s", ferc_last_error());
    if (!n) CHECK(strstr(ferc_last_error(), "video devices found: none") != NULL);
    char *disp = getenv("DISPLAY") ? strdup(getenv("DISPLAY")) : NULL;
    unsetenv("DISPLAY");
    unsetenv("WAYLAND_DISPLAY");
    video_window *w;
    rc = video_window_open(&w, "t", 64, 64);
    printf("no display: %s\n", ferc_last_error());
    CHECK(rc == FERC_ERR_UNSUPPORTED && w == NULL, "no display: %d", rc);
    if (disp) setenv("DISPLAY", disp, 1);
    free(disp);
}

int main(void)
{
    if (system("ffmpeg -version >/dev/null 2>&1") != 0) return test_skip("the ffmpeg command is not installed");
    snprintf(dir, sizeof dir, "/tmp/ferc_test_video_%d", (int)getpid());
    CHECK_OK(file_mkdirs(dir));
    test_decode();
    test_images();
    test_writer();
    test_camera_and_window();
    if (!test_failures) test_sh("rm -rf %s", dir);
    return test_finish("test_video");
}
