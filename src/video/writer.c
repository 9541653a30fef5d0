/* video/writer: annotated frames to a video file. H.264 through libx264 when Debian's
 * libavcodec has it (it does: libavcodec links libx264), else MPEG-4 part 2, which every
 * libavcodec has. x264 runs with preset "veryfast", CRF 23 and one thread, so that encoding
 * stays a small share of a 2-core budget. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>

#include "core/core.h"
#include "video/video.h"

struct video_writer {
    char *path;
    AVFormatContext *oc;
    AVCodecContext *enc;
    AVStream *st;
    AVFrame *frm;
    AVFrame *rgb;   /* padded copy of the input: swscale's SIMD reads past the end of rows */
    AVPacket *pkt;
    struct SwsContext *sws;
    int64_t next_pts;
    int header_written;
};

static int av_fail(int code, const char *path, const char *what, int err)
{
    char msg[128];
    if (av_strerror(err, msg, sizeof msg) < 0) snprintf(msg, sizeof msg, "FFmpeg error %d", err);
    return ferc_set_error(code, "%s: %s: %s", path, what, msg);
}

static void writer_free(video_writer *w)
{
    if (!w) return;
    sws_freeContext(w->sws);
    av_frame_free(&w->frm);
    av_frame_free(&w->rgb);
    av_packet_free(&w->pkt);
    avcodec_free_context(&w->enc);
    if (w->oc) {
        if (!(w->oc->oformat->flags & AVFMT_NOFILE)) avio_closep(&w->oc->pb);
        avformat_free_context(w->oc);
    }
    free(w->path);
    free(w);
}

int video_writer_open(video_writer **out, const char *path, int width, int height, double fps)
{
    *out = NULL;
    av_log_set_level(AV_LOG_QUIET);
    width &= ~1;
    height &= ~1;
    if (width < 2 || height < 2) return ferc_set_error(FERC_ERR_INVALID, "%s: frame size %dx%d is too small to encode", path, width, height);
    if (!(fps > 0) || fps > 1000) fps = 25;
    video_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->path = strdup(path))) {
        free(w);
        return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    }
    int rc = FERC_OK, r;
    if ((r = avformat_alloc_output_context2(&w->oc, NULL, NULL, path)) < 0 || !w->oc) {
        rc = av_fail(FERC_ERR_INVALID, path, "no container for this file name (use .mp4 or .mkv)", r);
        goto fail;
    }
    const AVCodec *codec = avcodec_find_encoder_by_name("libx264");
    if (!codec) codec = avcodec_find_encoder(AV_CODEC_ID_MPEG4);
    if (!codec) {
        rc = ferc_set_error(FERC_ERR_UNSUPPORTED, "%s: libavcodec has neither libx264 nor mpeg4 encoders", path);
        goto fail;
    }
    if (!(w->st = avformat_new_stream(w->oc, NULL)) || !(w->enc = avcodec_alloc_context3(codec)) ||
        !(w->frm = av_frame_alloc()) || !(w->pkt = av_packet_alloc())) {
        rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory");
        goto fail;
    }
    AVRational tb = av_d2q(1.0 / fps, 100000);
    w->enc->width = width;
    w->enc->height = height;
    w->enc->time_base = tb;
    w->enc->framerate = av_inv_q(tb);
    w->enc->pix_fmt = AV_PIX_FMT_YUV420P;
    w->enc->gop_size = 250;
    w->enc->thread_count = 1;
    if (codec->id == AV_CODEC_ID_MPEG4) {
        w->enc->bit_rate = (int64_t)width * height * 4; /* ~4 bits per pixel per second */
        w->enc->max_b_frames = 0;
    } else {
        av_opt_set(w->enc->priv_data, "preset", "veryfast", 0);
        av_opt_set(w->enc->priv_data, "crf", "23", 0);
    }
    if (w->oc->oformat->flags & AVFMT_GLOBALHEADER) w->enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    if ((r = avcodec_open2(w->enc, codec, NULL)) < 0) {
        rc = av_fail(FERC_ERR_BACKEND, path, "cannot open the encoder", r);
        goto fail;
    }
    if ((r = avcodec_parameters_from_context(w->st->codecpar, w->enc)) < 0) {
        rc = av_fail(FERC_ERR_BACKEND, path, "encoder parameters", r);
        goto fail;
    }
    w->st->time_base = tb;
    w->frm->format = AV_PIX_FMT_YUV420P;
    w->frm->width = width;
    w->frm->height = height;
    if ((r = av_frame_get_buffer(w->frm, 0)) < 0) {
        rc = av_fail(FERC_ERR_NOMEM, path, "frame buffer", r);
        goto fail;
    }
    if (!(w->oc->oformat->flags & AVFMT_NOFILE) && (r = avio_open(&w->oc->pb, path, AVIO_FLAG_WRITE)) < 0) {
        rc = av_fail(FERC_ERR_IO, path, "cannot create the file", r);
        goto fail;
    }
    if ((r = avformat_write_header(w->oc, NULL)) < 0) {
        rc = av_fail(FERC_ERR_IO, path, "cannot write the header", r);
        goto fail;
    }
    w->header_written = 1;
    *out = w;
    return FERC_OK;
fail:
    writer_free(w);
    return rc;
}

const char *video_writer_codec(const video_writer *w) { return w->enc->codec->name; }

/* Sends a frame (NULL flushes) and writes every packet that comes out. */
static int encode(video_writer *w, AVFrame *f)
{
    int r = avcodec_send_frame(w->enc, f);
    if (r < 0) return av_fail(FERC_ERR_BACKEND, w->path, "encoding", r);
    for (;;) {
        r = avcodec_receive_packet(w->enc, w->pkt);
        if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return FERC_OK;
        if (r < 0) return av_fail(FERC_ERR_BACKEND, w->path, "encoding", r);
        /* without a duration the MP4 edit list cuts the last frame off */
        if (w->pkt->duration <= 0) w->pkt->duration = 1;
        av_packet_rescale_ts(w->pkt, w->enc->time_base, w->st->time_base);
        w->pkt->stream_index = w->st->index;
        r = av_interleaved_write_frame(w->oc, w->pkt);
        if (r < 0) return av_fail(FERC_ERR_IO, w->path, "writing", r);
    }
}

int video_writer_write(video_writer *w, const image *rgb)
{
    if (!rgb || !rgb->data || (rgb->channels != 3 && rgb->channels != 4 && rgb->channels != 1))
        return ferc_set_error(FERC_ERR_INVALID, "%s: frames must be gray, RGB or RGBA images", w->path);
    enum AVPixelFormat src_fmt = rgb->channels == 3 ? AV_PIX_FMT_RGB24 : rgb->channels == 4 ? AV_PIX_FMT_RGBA : AV_PIX_FMT_GRAY8;
    if (!w->rgb || w->rgb->width != rgb->width || w->rgb->height != rgb->height || w->rgb->format != (int)src_fmt) {
        av_frame_free(&w->rgb);
        if (!(w->rgb = av_frame_alloc())) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
        w->rgb->format = src_fmt;
        w->rgb->width = rgb->width;
        w->rgb->height = rgb->height;
        int r = av_frame_get_buffer(w->rgb, 64);
        if (r < 0) return av_fail(FERC_ERR_NOMEM, w->path, "frame buffer", r);
    }
    for (int y = 0; y < rgb->height; y++)
        memcpy(w->rgb->data[0] + (size_t)y * w->rgb->linesize[0], rgb->data + (size_t)y * rgb->stride,
               (size_t)rgb->width * rgb->channels);
    w->sws = sws_getCachedContext(w->sws, rgb->width, rgb->height, src_fmt, w->enc->width, w->enc->height,
                                  AV_PIX_FMT_YUV420P, SWS_BILINEAR, NULL, NULL, NULL);
    if (!w->sws) return ferc_set_error(FERC_ERR_BACKEND, "%s: cannot convert %dx%d frames", w->path, rgb->width, rgb->height);
    int r = av_frame_make_writable(w->frm);
    if (r < 0) return av_fail(FERC_ERR_NOMEM, w->path, "frame buffer", r);
    sws_scale(w->sws, (const uint8_t *const *)w->rgb->data, w->rgb->linesize, 0, rgb->height, w->frm->data, w->frm->linesize);
    w->frm->pts = w->next_pts++;
    return encode(w, w->frm);
}

int video_writer_close(video_writer *w)
{
    if (!w) return FERC_OK;
    int rc = encode(w, NULL);
    if (w->header_written) {
        int r = av_write_trailer(w->oc);
        if (!rc && r < 0) rc = av_fail(FERC_ERR_IO, w->path, "writing the trailer", r);
    }
    writer_free(w);
    return rc;
}
