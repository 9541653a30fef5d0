/* video/source_v4l2: a camera through libv4l2 (which also wraps cameras that need vendor
 * conversions). We ask for MJPEG or YUYV at the wanted resolution and convert ourselves:
 * MJPEG through the image module's JPEG decoder, YUYV with BT.601 integer arithmetic. Frames
 * are read with v4l2_read, which libv4l2 emulates with mmap streaming on drivers without
 * read(). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <libv4l2.h>
#include <linux/videodev2.h>

#include "core/core.h"
#include "video/video_impl.h"

typedef struct cam_src {
    int fd;
    char *device;
    uint32_t fourcc;
    int w, h;
    uint8_t *buf;
    size_t buf_size;
    double t0;
} cam_src;

static void cam_close(video_source *s)
{
    cam_src *c = s->impl;
    if (!c) return;
    if (c->fd >= 0) v4l2_close(c->fd);
    free(c->buf);
    free(c->device);
    free(c);
    s->impl = NULL;
}

static inline uint8_t clamp8(int v) { return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v); }

/* YUYV (4:2:2, limited range BT.601) to RGB */
static void yuyv_to_rgb(const uint8_t *src, int w, int h, image *dst)
{
    for (int y = 0; y < h; y++) {
        const uint8_t *p = src + (size_t)y * w * 2;
        uint8_t *o = dst->data + (size_t)y * dst->stride;
        for (int x = 0; x + 1 < w; x += 2, p += 4, o += 6) {
            int u = p[1] - 128, v = p[3] - 128;
            int ys[2] = {(p[0] - 16) * 298, (p[2] - 16) * 298};
            for (int k = 0; k < 2; k++) {
                o[3 * k + 0] = clamp8((ys[k] + 409 * v + 128) >> 8);
                o[3 * k + 1] = clamp8((ys[k] - 100 * u - 208 * v + 128) >> 8);
                o[3 * k + 2] = clamp8((ys[k] + 516 * u + 128) >> 8);
            }
        }
    }
}

static int cam_read(video_source *s)
{
    cam_src *c = s->impl;
    ssize_t n;
    do n = v4l2_read(c->fd, c->buf, c->buf_size);
    while (n < 0 && (errno == EINTR || errno == EAGAIN));
    if (n < 0) return ferc_set_error(FERC_ERR_IO, "%s: reading frame %lld: %s", c->device, (long long)(s->frame.index + 1), strerror(errno));
    if (n == 0) return 0;
    int rc;
    if (c->fourcc == V4L2_PIX_FMT_MJPEG) {
        image img;
        if ((rc = image_decode(&img, c->buf, (size_t)n, IMAGE_MODE_RGB, 0, c->device)))
            return ferc_wrap_error(rc, "camera frame %lld", (long long)(s->frame.index + 1));
        image_free(&s->frame.img);
        s->frame.img = img;
    } else {
        if ((size_t)n < (size_t)c->w * c->h * 2)
            return ferc_set_error(FERC_ERR_FORMAT, "%s: short YUYV frame %lld (%zd bytes)", c->device,
                                  (long long)(s->frame.index + 1), n);
        if ((rc = video_frame_ensure(s, c->w, c->h))) return rc;
        yuyv_to_rgb(c->buf, c->w, c->h, &s->frame.img);
    }
    double now = time_now();
    if (s->frame.index < 0) c->t0 = now;
    s->frame.index++;
    s->frame.time = now - c->t0;
    return 1;
}

static const video_source_ops cam_ops = {cam_read, cam_close};

static int try_format(cam_src *c, uint32_t fourcc, const video_camera_params *p, struct v4l2_format *fmt)
{
    memset(fmt, 0, sizeof *fmt);
    fmt->type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
    if (v4l2_ioctl(c->fd, VIDIOC_G_FMT, fmt) < 0) return -1;
    fmt->fmt.pix.pixelformat = fourcc;
    if (p && p->width > 0) fmt->fmt.pix.width = (uint32_t)p->width;
    if (p && p->height > 0) fmt->fmt.pix.height = (uint32_t)p->height;
    fmt->fmt.pix.field = V4L2_FIELD_ANY;
    if (v4l2_ioctl(c->fd, VIDIOC_S_FMT, fmt) < 0) return -1;
    return fmt->fmt.pix.pixelformat == fourcc ? 0 : -1;
}

int video_source_open_camera(video_source **out, const char *device, const video_camera_params *p)
{
    *out = NULL;
    char devs[512];
    video_list_devices(devs, sizeof devs);
    int fd = v4l2_open(device, O_RDWR);
    if (fd < 0) {
        int e = errno;
        return ferc_set_error(e == ENOENT ? FERC_ERR_NOT_FOUND : FERC_ERR_IO,
                              "cannot open camera %s: %s; video devices found: %s", device, strerror(e), devs);
    }
    cam_src *c = calloc(1, sizeof *c);
    video_source tmp = {.impl = c};
    if (!c || !(c->device = strdup(device))) {
        v4l2_close(fd);
        free(c);
        return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    }
    c->fd = fd;
    int rc = FERC_OK;
    struct v4l2_capability cap;
    memset(&cap, 0, sizeof cap);
    if (v4l2_ioctl(fd, VIDIOC_QUERYCAP, &cap) < 0 || !(cap.capabilities & V4L2_CAP_VIDEO_CAPTURE)) {
        rc = ferc_set_error(FERC_ERR_UNSUPPORTED, "%s is not a video capture device; video devices found: %s", device, devs);
        goto fail;
    }
    struct v4l2_format fmt;
    video_pixfmt want = p ? p->pixfmt : VIDEO_PIXFMT_ANY;
    int ok = -1;
    if (want != VIDEO_PIXFMT_YUYV && !(ok = try_format(c, V4L2_PIX_FMT_MJPEG, p, &fmt))) c->fourcc = V4L2_PIX_FMT_MJPEG;
    if (ok && want != VIDEO_PIXFMT_MJPEG && !(ok = try_format(c, V4L2_PIX_FMT_YUYV, p, &fmt))) c->fourcc = V4L2_PIX_FMT_YUYV;
    if (ok) {
        rc = ferc_set_error(FERC_ERR_UNSUPPORTED, "%s (%s) offers neither %s", device, (const char *)cap.card,
                            want == VIDEO_PIXFMT_MJPEG ? "MJPEG" : want == VIDEO_PIXFMT_YUYV ? "YUYV" : "MJPEG nor YUYV");
        goto fail;
    }
    c->w = (int)fmt.fmt.pix.width;
    c->h = (int)fmt.fmt.pix.height;
    c->buf_size = fmt.fmt.pix.sizeimage ? fmt.fmt.pix.sizeimage : (size_t)c->w * c->h * 2;
    if (!(c->buf = malloc(c->buf_size))) {
        rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (p && p->fps > 0) {
        struct v4l2_streamparm parm;
        memset(&parm, 0, sizeof parm);
        parm.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
        parm.parm.capture.timeperframe.numerator = 1;
        parm.parm.capture.timeperframe.denominator = (uint32_t)p->fps;
        v4l2_ioctl(fd, VIDIOC_S_PARM, &parm); /* a hint: cameras pick the nearest rate */
    }
    video_source *s = NULL;
    if ((rc = video_source_new(&s, &cam_ops, c))) goto fail;
    s->width = c->w;
    s->height = c->h;
    s->fps = p && p->fps > 0 ? p->fps : 0;
    snprintf(s->desc, sizeof s->desc, "%s (%s) %s %dx%d", device, (const char *)cap.card,
             c->fourcc == V4L2_PIX_FMT_MJPEG ? "MJPEG" : "YUYV", c->w, c->h);
    *out = s;
    return FERC_OK;
fail:
    cam_close(&tmp);
    return rc;
}
