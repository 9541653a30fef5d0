/* video: frame sources (a V4L2 camera, a video file, an image folder) and sinks (an H.264/MP4
 * writer, a live SDL2 window).
 *
 * Every source hands out RGB frames (3 channels, 8 bits) one at a time. The frame belongs to
 * the source and stays valid until the next video_source_read or video_source_close; copy it
 * to keep it.
 *
 * Usage:
 *     video_source *src;
 *     if (video_source_open_file(&src, "clip.mp4")) fail(ferc_last_error());
 *     const video_frame *f;
 *     int rc;
 *     while ((rc = video_source_read(src, &f)) == 1) ... f->img, f->index, f->time ...
 *     if (rc < 0) fail(ferc_last_error());      // e.g. "clip.mp4: truncated after frame 137 ..."
 *     video_source_close(src);
 *
 * Errors are statuses with a message (see core.h): a file that is broken or ends early names
 * the frame position where decoding stopped; a camera that cannot be opened lists the video
 * devices that exist. Nothing here prints.
 */
#ifndef FERC_VIDEO_H
#define FERC_VIDEO_H

#include <stddef.h>
#include <stdint.h>

#include "image/image.h"

typedef struct video_source video_source;

typedef struct video_frame {
    image img;       /* RGB, owned by the source */
    int64_t index;   /* 0, 1, 2, ... in reading order */
    double time;     /* seconds since the first frame (presentation time for files) */
    const char *name;/* the image's path for folder sources, else NULL */
} video_frame;

typedef enum video_pixfmt { VIDEO_PIXFMT_ANY = 0, VIDEO_PIXFMT_MJPEG, VIDEO_PIXFMT_YUYV } video_pixfmt;

typedef struct video_camera_params {
    int width, height;   /* wanted resolution; 0 = the driver's current one (the camera may adjust) */
    video_pixfmt pixfmt; /* ANY tries MJPEG first, then YUYV */
    int fps;             /* wanted frame rate; 0 = leave as is */
} video_camera_params;

/* Decodes a video file with libavformat/libavcodec, converting frames to RGB with libswscale.
 * Decoding uses at most `threads` threads (0: FFmpeg chooses). */
int video_source_open_file(video_source **out, const char *path, int threads);
/* The images (.jpg .jpeg .png .bmp .pgm .ppm) of a folder in name order, EXIF applied. Frame
 * times are index / fps. A file that cannot be read is an error naming it. */
int video_source_open_images(video_source **out, const char *dir, double fps);
/* A V4L2 camera through libv4l2 ("/dev/video0"). When it cannot be opened the message lists
 * the /dev/video* devices found ("none" when there are none). */
int video_source_open_camera(video_source **out, const char *device, const video_camera_params *p);

/* 1: *frame is the next frame; 0: end of the stream; negative: an error. */
int video_source_read(video_source *s, const video_frame **frame);
/* Frame size (0 when not yet known, e.g. a folder before its first image), the nominal frame
 * rate (0 when unknown), and the number of frames announced by the container (-1 unknown). */
void video_source_info(const video_source *s, int *width, int *height, double *fps, int64_t *frames);
/* A short description for humans: "h264 640x360 29.97 fps", "MJPEG 1280x720 camera", ... */
const char *video_source_describe(const video_source *s);
void video_source_close(video_source *s);

/* Fills buf with the /dev/video* device names, comma separated, or "none"; returns how many. */
int video_list_devices(char *buf, size_t size);

/* ---- writer ------------------------------------------------------------------------------
 * An annotated video: H.264 (libx264, when libavcodec has it) in the container the file name
 * says (.mp4, .mkv, ...), else MPEG-4 part 2. Frames of another size than the first are scaled
 * to it; odd sizes are rounded down to even ones (4:2:0). */
typedef struct video_writer video_writer;

int video_writer_open(video_writer **out, const char *path, int width, int height, double fps);
int video_writer_write(video_writer *w, const image *rgb);
/* The encoder's name ("libx264" or "mpeg4"). */
const char *video_writer_codec(const video_writer *w);
/* Flushes the encoder and writes the trailer; frees w in every case. */
int video_writer_close(video_writer *w);

/* ---- window (SDL2; FERC_ERR_UNSUPPORTED when built without it) ---------------------------- */
typedef struct video_window video_window;

/* Fails with a clear message when there is no display. */
int video_window_open(video_window **out, const char *title, int width, int height);
/* Shows an RGB frame. Returns 1 when the user asked to close the window (close button, Esc
 * or q), 0 otherwise, negative on error. */
int video_window_show(video_window *w, const image *rgb);
void video_window_close(video_window *w);

#endif
