/* video/source_file: video files through libavformat (demux), libavcodec (decode) and
 * libswscale (to RGB).
 *
 * A damaged file must end in an error that says where, never in a crash or a silent short
 * read: demuxer errors, packets the demuxer marks corrupt, decoder errors, and a stream that
 * ends before the frame count its container announced are all reported with the position
 * (frames decoded so far and the time reached). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libswscale/swscale.h>

#include "core/core.h"
#include "video/video_impl.h"

typedef struct file_src {
    char *path;
    AVFormatContext *fmt;
    AVCodecContext *dec;
    struct SwsContext *sws;
    AVPacket *pkt;
    AVFrame *frm;
    int stream;
    int draining;   /* the demuxer is done; the decoder is being flushed */
    int done;
    int64_t decoded;
    int64_t packets; /* video packets read */
    double t0;      /* time of the first frame */
    int have_t0;
    double last_time;
} file_src;

static void av_msg(int err, char *buf, size_t n)
{
    if (av_strerror(err, buf, n) < 0) snprintf(buf, n, "FFmpeg error %d", err);
}

/* "after frame N (t=..s)" or "before the first frame" */
static void where(const file_src *f, char *buf, size_t n)
{
    if (!f->decoded) snprintf(buf, n, "before the first frame was decoded");
    else snprintf(buf, n, "after frame %lld (t=%.3f s) was decoded", (long long)f->decoded - 1, f->last_time);
}

static void file_close(video_source *s)
{
    file_src *f = s->impl;
    if (!f) return;
    sws_freeContext(f->sws);
    av_frame_free(&f->frm);
    av_packet_free(&f->pkt);
    avcodec_free_context(&f->dec);
    avformat_close_input(&f->fmt);
    free(f->path);
    free(f);
    s->impl = NULL;
}

static int convert(video_source *s, file_src *f)
{
    AVFrame *fr = f->frm;
    if (fr->width <= 0 || fr->height <= 0 || fr->format < 0)
        return ferc_set_error(FERC_ERR_FORMAT, "%s: frame %lld has no picture", f->path, (long long)f->decoded);
    int rc = video_frame_ensure(s, fr->width, fr->height);
    if (rc) return rc;
    f->sws = sws_getCachedContext(f->sws, fr->width, fr->height, fr->format, fr->width, fr->height, AV_PIX_FMT_RGB24,
                                  SWS_BILINEAR, NULL, NULL, NULL);
    if (!f->sws) return ferc_set_error(FERC_ERR_UNSUPPORTED, "%s: cannot convert %s frames to RGB", f->path,
                                       av_get_pix_fmt_name(fr->format) ? av_get_pix_fmt_name(fr->format) : "?");
    uint8_t *dst[4] = {s->frame.img.data, NULL, NULL, NULL};
    int dst_stride[4] = {(int)s->frame.img.stride, 0, 0, 0};
    sws_scale(f->sws, (const uint8_t *const *)fr->data, fr->linesize, 0, fr->height, dst, dst_stride);
    AVStream *st = f->fmt->streams[f->stream];
    int64_t pts = fr->best_effort_timestamp;
    double t;
    if (pts != AV_NOPTS_VALUE) {
        t = pts * av_q2d(st->time_base);
        if (!f->have_t0) f->t0 = t, f->have_t0 = 1;
        t -= f->t0;
    } else {
        t = s->fps > 0 ? (double)f->decoded / s->fps : (double)f->decoded;
    }
    s->frame.index = f->decoded;
    s->frame.time = t;
    s->width = fr->width;
    s->height = fr->height;
    f->last_time = t;
    f->decoded++;
    return 1;
}

static int file_read(video_source *s)
{
    file_src *f = s->impl;
    char msg[128], pos[96];
    if (f->done) return 0;
    for (;;) {
        int r = avcodec_receive_frame(f->dec, f->frm);
        if (r == 0) return convert(s, f);
        if (r == AVERROR_EOF) {
            f->done = 1;
            /* A stream that stops well short of what the container announced was cut off. Some
             * muxers count a frame or two the decoder drops, hence the small tolerance. */
            if (s->frames > 0 && f->decoded + 2 < s->frames) {
                where(f, pos, sizeof pos);
                return ferc_set_error(FERC_ERR_FORMAT, "%s: truncated: the stream ended %s, %lld of %lld frames",
                                      f->path, pos, (long long)f->decoded, (long long)s->frames);
            }
            return 0;
        }
        if (r != AVERROR(EAGAIN)) {
            av_msg(r, msg, sizeof msg);
            where(f, pos, sizeof pos);
            return ferc_set_error(FERC_ERR_FORMAT, "%s: cannot decode frame %lld (%s): %s", f->path,
                                  (long long)f->decoded, pos, msg);
        }
        if (f->draining) {
            /* send_packet(NULL) was done; EAGAIN here would loop forever */
            f->done = 1;
            return 0;
        }
        r = av_read_frame(f->fmt, f->pkt);
        if (r == AVERROR_EOF) {
            f->draining = 1;
            avcodec_send_packet(f->dec, NULL);
            continue;
        }
        if (r < 0) {
            av_msg(r, msg, sizeof msg);
            where(f, pos, sizeof pos);
            return ferc_set_error(FERC_ERR_FORMAT, "%s: cannot read the stream at frame %lld (%s): %s", f->path,
                                  (long long)f->decoded, pos, msg);
        }
        if (f->pkt->stream_index != f->stream) {
            av_packet_unref(f->pkt);
            continue;
        }
        f->packets++;
        if (f->pkt->flags & AV_PKT_FLAG_CORRUPT) {
            where(f, pos, sizeof pos);
            AVStream *st = f->fmt->streams[f->stream];
            double t = f->pkt->pts != AV_NOPTS_VALUE ? f->pkt->pts * av_q2d(st->time_base) - f->t0 : -1;
            av_packet_unref(f->pkt);
            return ferc_set_error(FERC_ERR_FORMAT, "%s: corrupt or truncated data in packet %lld (t=%.3f s), %s", f->path,
                                  (long long)f->packets - 1, t, pos);
        }
        r = avcodec_send_packet(f->dec, f->pkt);
        av_packet_unref(f->pkt);
        if (r < 0 && r != AVERROR(EAGAIN)) {
            av_msg(r, msg, sizeof msg);
            where(f, pos, sizeof pos);
            return ferc_set_error(FERC_ERR_FORMAT, "%s: cannot decode frame %lld (%s): %s", f->path,
                                  (long long)f->decoded, pos, msg);
        }
    }
}

static const video_source_ops file_ops = {file_read, file_close};

int video_source_open_file(video_source **out, const char *path, int threads)
{
    *out = NULL;
    av_log_set_level(AV_LOG_QUIET); /* library code does not print; errors come back as statuses */
    file_src *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    }
    video_source *s = NULL;
    video_source tmp = {.impl = f};
    char msg[128];
    int rc = FERC_OK, r;
    if ((r = avformat_open_input(&f->fmt, path, NULL, NULL)) < 0) {
        av_msg(r, msg, sizeof msg);
        rc = ferc_set_error(r == AVERROR(ENOENT) ? FERC_ERR_IO : FERC_ERR_FORMAT, "%s: cannot open the video (no frame could be read): %s", path, msg);
        goto fail;
    }
    if ((r = avformat_find_stream_info(f->fmt, NULL)) < 0) {
        av_msg(r, msg, sizeof msg);
        rc = ferc_set_error(FERC_ERR_FORMAT, "%s: cannot read the stream information: %s", path, msg);
        goto fail;
    }
    const AVCodec *codec = NULL;
    f->stream = av_find_best_stream(f->fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    if (f->stream < 0 || !codec) {
        rc = ferc_set_error(FERC_ERR_FORMAT, "%s: %s", path,
                            f->stream == AVERROR_DECODER_NOT_FOUND ? "no decoder for its video stream" : "no video stream");
        goto fail;
    }
    AVStream *st = f->fmt->streams[f->stream];
    if (!(f->dec = avcodec_alloc_context3(codec)) || !(f->pkt = av_packet_alloc()) || !(f->frm = av_frame_alloc())) {
        rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if ((r = avcodec_parameters_to_context(f->dec, st->codecpar)) < 0) {
        av_msg(r, msg, sizeof msg);
        rc = ferc_set_error(FERC_ERR_FORMAT, "%s: bad codec parameters: %s", path, msg);
        goto fail;
    }
    f->dec->thread_count = threads > 0 ? threads : 0;
    if ((r = avcodec_open2(f->dec, codec, NULL)) < 0) {
        av_msg(r, msg, sizeof msg);
        rc = ferc_set_error(FERC_ERR_FORMAT, "%s: cannot open the %s decoder: %s", path, codec->name, msg);
        goto fail;
    }
    if ((rc = video_source_new(&s, &file_ops, f))) goto fail;
    AVRational fr = st->avg_frame_rate.num ? st->avg_frame_rate : st->r_frame_rate;
    s->fps = fr.num && fr.den ? av_q2d(fr) : 0;
    s->frames = st->nb_frames > 0 ? st->nb_frames : -1;
    s->width = st->codecpar->width;
    s->height = st->codecpar->height;
    snprintf(s->desc, sizeof s->desc, "%s %dx%d %.2f fps%s", codec->name, s->width, s->height, s->fps,
             s->frames > 0 ? "" : " (frame count unknown)");
    if (s->frames > 0) {
        size_t l = strlen(s->desc);
        snprintf(s->desc + l, sizeof s->desc - l, ", %lld frames", (long long)s->frames);
    }
    *out = s;
    return FERC_OK;
fail:
    file_close(&tmp);
    return rc;
}
