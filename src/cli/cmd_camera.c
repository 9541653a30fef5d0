/* ferc camera: live recognition. For every frame of a camera, a video file or an image folder:
 * detect the faces, classify them (one batch per frame), track them (stable ids, smoothed
 * probabilities) and print JSON lines, write an annotated video and/or show a window.
 *
 * Detection: the CNN (BlazeFace, the default) runs on every frame: 6.4 ms per 640x360 frame,
 * and on the shared Hamilton clip it finds a face on 233 of 275 frames at about 100 frames/s
 * end to end. With --detector haar the speed defaults are: detection on the frame resized by
 * 0.75 (--detect-scale; the frontal cascade's 24-pixel window then finds faces from 32 pixels
 * of the full frame) on every 2nd frame (--detect-every); on the frames in between the faces
 * of the last frame are classified again at their tracked boxes. On the clip this finds a face
 * on 185 of 275 frames (full-resolution Haar on every frame: 204). --full --detect-every 1
 * gives OpenCV's detection on every full frame.
 *
 * JSON lines (--jsonl), one object per frame:
 *   {"frame": I, "time": SECONDS, "width": W, "height": H, "detected": BOOL, ["image": PATH,]
 *    "faces": [{"id": ID, "box": [x, y, w, h], "label": NAME, "confidence": P,
 *               "probabilities": {NAME: p, ...},          (smoothed over the track)
 *               "raw_label": NAME, "raw_probabilities": {NAME: p, ...}, "logits": [...]}]}
 */
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/core.h"
#include "face/face_json.h"
#include "face/recognize.h"
#include "face/stream.h"
#include "video/video.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: ferc camera [--model MODEL] [--device DEV | --video FILE | --images DIR] [options]\n\n"
            "Detects, classifies and tracks faces in every frame.\n\n"
            "  --model FILE         a ferc model (.safetensors); default: the shipped model\n"
            "source (default --device /dev/video0):\n"
            "  --device DEV         V4L2 camera; --size WxH (e.g. 640x480), --pixfmt mjpeg|yuyv, --fps N\n"
            "  --video FILE         a video file (anything FFmpeg decodes)\n"
            "  --images DIR         the images of a folder in name order; --fps N sets their times (default 5)\n"
            "output:\n"
            "  --jsonl              one JSON object per frame on stdout (without it: one text line per frame)\n"
            "  --output OUT.mp4     annotated video (H.264 via libx264, else MPEG-4)\n"
            "  --window             show the annotated frames in a window (SDL2) with an FPS counter\n"
            "  --quiet              no per-frame text lines\n"
            "  --stats              per-stage timings at the end (stderr)\n"
            "processing:\n"
            "  --max-frames N       stop after N frames\n"
            "  --smooth A           weight of the new frame in the probabilities' moving average,\n"
            "                       (0, 1]; 1 = no smoothing (default 0.3)\n"
            "  --detect-scale S     detect on the frame resized by S in (0, 1] (default 0.75)\n"
            "  --detect-every N     run the detector on every Nth frame, track in between\n"
            "                       (default 1; 2 with --detector haar on video)\n"
            "  --full               full-resolution detection, as OpenCV on the frame (--detect-scale 1)\n"
            "  --detector D         blazeface (the CNN, default: finds tilted and turned faces) or haar\n"
            "                       (OpenCV's cascade; --detect-scale and the cascade options are its)\n"
            "  --align              turn each detected face so that its eyes are level (CNN detector)\n"
            "  --cascade FILE       cascade XML (default %s); with --detector blazeface its model file\n"
            "  --scale-factor F     pyramid step (default 1.1)\n"
            "  --min-neighbors N    default 3\n"
            "  --min-size N         smallest face side in frame pixels (default 0)\n"
            "  --margin M           crop margin per side as a fraction of the box (default 0.02: FER's framing)\n"
            "  --tta MODE           flip (default: each face as given and mirrored, probabilities\n"
            "                       averaged), none, or tencrop (10 views per face)\n"
            CLI_PRECISION_HELP
            "  --memory N           frames a track survives without a detection (default 10)\n"
            "  --threads N          threads for the network (default 1: a frame's few faces gain nothing\n"
            "                       from more, and spinning OpenMP threads collapse on a busy machine)\n"
            "  -h, --help           this help\n",
            FACE_CASCADE_DEFAULT_PATH);
}

static volatile sig_atomic_t stop_requested;
static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

typedef struct opts {
    const char *model, *device, *video, *images, *output, *cascade;
    int jsonl, window, stats, quiet, max_frames, detect_every, threads;
    double fps;
    video_camera_params cam;
    face_recog_params rp;
    face_track_params tp;
} opts;

enum { ST_DECODE, ST_DETECT, ST_CLASSIFY, ST_TRACK, ST_JSON, ST_DRAW, ST_ENCODE, ST_WINDOW, ST_COUNT };
static const char *const stage_names[ST_COUNT] = {"decode", "detect", "classify", "track", "print", "draw", "encode", "window"};

static int parse_args(int argc, char **argv, opts *o)
{
    memset(o, 0, sizeof *o);
    face_recog_params_default(&o->rp);
    face_track_params_default(&o->tp);
    o->rp.detect_scale = 0.75;
    o->threads = 1;
    static const char *const with_value[] = {"--model", "--device", "--video", "--images", "--output", "--cascade",
                                             "--max-frames", "--smooth", "--detect-scale", "--detect-every",
                                             "--scale-factor", "--min-neighbors", "--min-size", "--margin",
                                             "--memory", "--size", "--pixfmt", "--fps", "--threads", "--tta",
                                             "--detector", "--precision"};
    int full = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        for (size_t j = 0; j < sizeof with_value / sizeof *with_value; j++)
            if (!strcmp(a, with_value[j])) {
                if (i + 1 >= argc) return cli_usage_error("camera", "%s needs a value", a);
                v = argv[++i];
            }
        double d;
        int n;
        if (!strcmp(a, "--jsonl")) o->jsonl = 1;
        else if (!strcmp(a, "--window")) o->window = 1;
        else if (!strcmp(a, "--stats")) o->stats = 1;
        else if (!strcmp(a, "--quiet")) o->quiet = 1;
        else if (!strcmp(a, "--full")) full = 1;
        else if (!strcmp(a, "--align")) o->rp.align = 1;
        else if (!strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "--device")) o->device = v;
        else if (!strcmp(a, "--video")) o->video = v;
        else if (!strcmp(a, "--images")) o->images = v;
        else if (!strcmp(a, "--output")) o->output = v;
        else if (!strcmp(a, "--cascade")) o->cascade = v;
        else if (!strcmp(a, "--max-frames")) {
            if (cli_parse_int(v, 1, 1 << 30, &o->max_frames)) return cli_usage_error("camera", "--max-frames must be a positive integer (got '%s')", v);
        } else if (!strcmp(a, "--smooth")) {
            if (cli_parse_double(v, 0, 1, &d) || d <= 0) return cli_usage_error("camera", "--smooth must be in (0, 1] (got '%s')", v);
            o->tp.alpha = (float)d;
        } else if (!strcmp(a, "--detect-scale")) {
            if (cli_parse_double(v, 0, 1, &d) || d < 0.05) return cli_usage_error("camera", "--detect-scale must be in [0.05, 1] (got '%s')", v);
            o->rp.detect_scale = d;
        } else if (!strcmp(a, "--detect-every")) {
            if (cli_parse_int(v, 1, 1000, &o->detect_every)) return cli_usage_error("camera", "--detect-every must be in [1, 1000] (got '%s')", v);
        } else if (!strcmp(a, "--scale-factor")) {
            if (cli_parse_double(v, 1, 100, &d) || d <= 1) return cli_usage_error("camera", "--scale-factor must be > 1 (got '%s')", v);
            o->rp.detect.scale_factor = d;
        } else if (!strcmp(a, "--min-neighbors")) {
            if (cli_parse_int(v, 0, 1000, &o->rp.detect.min_neighbors)) return cli_usage_error("camera", "--min-neighbors must be in [0, 1000] (got '%s')", v);
        } else if (!strcmp(a, "--min-size")) {
            if (cli_parse_int(v, 0, 1 << 20, &n)) return cli_usage_error("camera", "--min-size must be >= 0 (got '%s')", v);
            o->rp.detect.min_w = o->rp.detect.min_h = n;
        } else if (!strcmp(a, "--tta")) {
            if (classify_tta_parse(v, &o->rp.tta)) return cli_usage_error("camera", "--tta must be none, flip or tencrop (got '%s')", v);
        } else if (!strcmp(a, "--precision")) {
            bool bf16;
            if (cli_parse_precision(v, &bf16)) return cli_usage_error("camera", "--precision fp32|bf16 (got '%s')", v);
            o->rp.bf16 = bf16;
        } else if (!strcmp(a, "--detector")) {
            if (face_detector_parse(v, &o->rp.detector)) return cli_usage_error("camera", "--detector must be haar or blazeface (got '%s')", v);
        } else if (!strcmp(a, "--margin")) {
            if (cli_parse_double(v, 0, 2, &d)) return cli_usage_error("camera", "--margin must be in [0, 2] (got '%s')", v);
            o->rp.margin = (float)d;
        } else if (!strcmp(a, "--memory")) {
            if (cli_parse_int(v, 0, 100000, &o->tp.max_missed)) return cli_usage_error("camera", "--memory must be >= 0 (got '%s')", v);
        } else if (!strcmp(a, "--threads")) {
            if (cli_parse_int(v, 1, 1024, &o->threads)) return cli_usage_error("camera", "--threads must be in [1, 1024] (got '%s')", v);
        } else if (!strcmp(a, "--size")) {
            if (sscanf(v, "%dx%d", &o->cam.width, &o->cam.height) != 2 || o->cam.width <= 0 || o->cam.height <= 0)
                return cli_usage_error("camera", "--size must be WxH, e.g. 640x480 (got '%s')", v);
        } else if (!strcmp(a, "--pixfmt")) {
            if (!strcmp(v, "mjpeg")) o->cam.pixfmt = VIDEO_PIXFMT_MJPEG;
            else if (!strcmp(v, "yuyv")) o->cam.pixfmt = VIDEO_PIXFMT_YUYV;
            else return cli_usage_error("camera", "--pixfmt must be mjpeg or yuyv (got '%s')", v);
        } else if (!strcmp(a, "--fps")) {
            if (cli_parse_double(v, 0.01, 1000, &o->fps)) return cli_usage_error("camera", "--fps must be in [0.01, 1000] (got '%s')", v);
            o->cam.fps = (int)lround(o->fps);
        } else if (!v) return cli_usage_error("camera", "unknown option '%s'", a);
    }
    if (full) o->rp.detect_scale = 1;
    if (!o->model && !(o->model = ferc_default_model_path()))
        return cli_usage_error("camera", "no --model given and the default model is not installed (set FERC_MODEL)");
    if (!!o->device + !!o->video + !!o->images > 1) return cli_usage_error("camera", "choose one source: --device, --video or --images");
    if (!o->video && !o->images && !o->device) o->device = "/dev/video0";
    /* the images of a folder are unrelated pictures: detect on each unless told otherwise */
    if (!o->detect_every) o->detect_every = o->images || o->rp.detector == FACE_DETECTOR_BLAZEFACE ? 1 : 2;
    return CLI_OK;
}

typedef struct run_state {
    opts *o;
    face_recognizer *r;
    face_stream *fs;
    face_stream_result res; /* the current frame's faces */
    video_source *src;
    video_writer *vw;
    video_window *win;
    image canvas;
    double stage[ST_COUNT];
    long long frames, faces, detections;
    double fps_smooth, last_shown;
} run_state;

static const uint8_t palette[6][3] = {{230, 60, 60}, {160, 60, 220}, {40, 210, 60}, {220, 220, 220}, {60, 120, 240}, {250, 170, 30}};

static void draw_faces(run_state *s, const video_frame *f)
{
    image *c = &s->canvas;
    const int k = face_recognizer_num_classes(s->r);
    const int text_scale = f->img.width >= 960 ? 3 : 2;
    const face_stream_result *res = &s->res;
    for (int i = 0; i < res->n; i++) {
        const face_box *b = &res->boxes[i];
        const float *p = res->smoothed + (size_t)i * k;
        const int lab = face_argmax(p, k);
        const uint8_t *col = palette[lab % 6];
        image_draw_rect(c, b->x, b->y, b->w, b->h, b->w / 80 + 2, col);
        char text[96];
        snprintf(text, sizeof text, "#%d %s %d%%", res->ids[i], face_recognizer_class_name(s->r, lab), (int)lround(p[lab] * 100));
        int th = 9 * text_scale + 4, ty = b->y - th;
        if (ty < 0) ty = b->y + b->h;
        static const uint8_t black[3] = {0, 0, 0};
        image_fill_rect(c, b->x, ty, image_text_width(text, text_scale) + 4, th, col);
        image_draw_text(c, b->x + 2, ty + 2, text, text_scale, black, NULL);
    }
}

static void print_text_line(run_state *s, const video_frame *f)
{
    const int k = face_recognizer_num_classes(s->r);
    const face_stream_result *res = &s->res;
    printf("frame %lld t=%.3f:", (long long)f->index, f->time);
    if (!res->n) printf(" no face");
    for (int i = 0; i < res->n; i++) {
        const float *p = res->smoothed + (size_t)i * k;
        int lab = face_argmax(p, k);
        const face_box *b = &res->boxes[i];
        printf("%s #%d %s %.2f [%d %d %d %d]", i ? ";" : "", res->ids[i], face_recognizer_class_name(s->r, lab), (double)p[lab],
               b->x, b->y, b->w, b->h);
    }
    putchar('\n');
}

static void print_json_line(run_state *s, const video_frame *f)
{
    FILE *out = stdout;
    const int k = face_recognizer_num_classes(s->r);
    const face_stream_result *res = &s->res;
    fprintf(out, "{\"frame\": %lld, \"time\": %.6f, \"width\": %d, \"height\": %d, \"detected\": %s, ", (long long)f->index,
            f->time, f->img.width, f->img.height, res->detected ? "true" : "false");
    if (f->name) {
        fputs("\"image\": ", out);
        face_json_string(out, f->name);
        fputs(", ", out);
    }
    fputs("\"faces\": [", out);
    for (int i = 0; i < res->n; i++) {
        const size_t o = (size_t)i * k;
        face_json_face face = {.box = &res->boxes[i], .id = res->ids[i], .probs = res->smoothed + o,
                               .raw_probs = res->probs + o, .logits = res->logits + o,
                               .det = res->dets ? &res->dets[i] : NULL};
        if (i) fputs(", ", out);
        face_json_write(out, face_recognizer_class_names(s->r), k, &face);
    }
    fputs("]}\n", out);
}

/* One frame through every stage. */
static int process(run_state *s, const video_frame *f)
{
    opts *o = s->o;
    int rc = face_stream_process(s->fs, s->r, &f->img, &s->res);
    if (rc) return rc;
    s->stage[ST_DETECT] += s->res.detect_s;
    s->stage[ST_CLASSIFY] += s->res.classify_s;
    s->stage[ST_TRACK] += s->res.track_s;
    s->detections += s->res.detected;
    s->faces += s->res.n;
    double t = time_now(), t2;
    if (o->jsonl) print_json_line(s, f);
    else if (!o->quiet) print_text_line(s, f);
    t2 = time_now();
    s->stage[ST_JSON] += t2 - t;
    t = t2;
    if (s->vw || s->win) {
        image *c = &s->canvas;
        if (!c->data || c->width != f->img.width || c->height != f->img.height) {
            image_free(c);
            if ((rc = image_alloc(c, f->img.width, f->img.height, 3))) return rc;
        }
        for (int y = 0; y < c->height; y++)
            memcpy(c->data + (size_t)y * c->stride, f->img.data + (size_t)y * f->img.stride, (size_t)c->width * 3);
        draw_faces(s, f);
        t2 = time_now();
        s->stage[ST_DRAW] += t2 - t;
        t = t2;
        if (s->vw) {
            if ((rc = video_writer_write(s->vw, c))) return rc;
            t2 = time_now();
            s->stage[ST_ENCODE] += t2 - t;
            t = t2;
        }
        if (s->win) {
            double now = time_now();
            if (s->last_shown > 0) {
                double inst = 1.0 / fmax(now - s->last_shown, 1e-6);
                s->fps_smooth = s->fps_smooth > 0 ? 0.9 * s->fps_smooth + 0.1 * inst : inst;
            }
            s->last_shown = now;
            char fps[32];
            snprintf(fps, sizeof fps, "%.1f FPS", s->fps_smooth);
            static const uint8_t white[3] = {255, 255, 255}, black[3] = {0, 0, 0};
            image_draw_text(c, 6, 6, fps, 2, white, black);
            rc = video_window_show(s->win, c);
            if (rc < 0) return rc;
            if (rc == 1) stop_requested = 1;
            t2 = time_now();
            s->stage[ST_WINDOW] += t2 - t;
        }
    }
    return FERC_OK;
}

static void print_stats(const run_state *s, double wall)
{
    const double n = s->frames > 0 ? (double)s->frames : 1;
    fprintf(stderr, "stats: %lld frames in %.2f s = %.1f frames/s end to end; %lld faces, detector run on %lld frames\n",
            s->frames, wall, s->frames / fmax(wall, 1e-9), s->faces, s->detections);
    if (s->o->rp.detector == FACE_DETECTOR_BLAZEFACE)
        fprintf(stderr, "stats: detection by blazeface every %d frame(s); ms per frame:", s->o->detect_every);
    else
        fprintf(stderr, "stats: detection at scale %g every %d frame(s); ms per frame:", s->o->rp.detect_scale, s->o->detect_every);
    double sum = 0;
    for (int i = 0; i < ST_COUNT; i++) {
        if (s->stage[i] == 0) continue;
        fprintf(stderr, " %s %.2f", stage_names[i], 1e3 * s->stage[i] / n);
        sum += s->stage[i];
    }
    fprintf(stderr, " (sum %.2f, other %.2f)\n", 1e3 * sum / n, 1e3 * (wall - sum) / n);
}

int cmd_camera(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return CLI_OK;
    }
    opts o;
    int status = parse_args(argc, argv, &o);
    if (status != CLI_OK) return status;
    omp_set_num_threads(o.threads);
    run_state s;
    memset(&s, 0, sizeof s);
    s.o = &o;
    int rc;
    if (o.video) rc = video_source_open_file(&s.src, o.video, 1);
    else if (o.images) rc = video_source_open_images(&s.src, o.images, o.fps > 0 ? o.fps : 5);
    else rc = video_source_open_camera(&s.src, o.device, &o.cam);
    if (rc) return cli_fail(NULL);
    if ((rc = face_recognizer_create(&s.r, o.model, o.cascade, &o.rp)) ||
        (rc = face_stream_create(&s.fs, face_recognizer_num_classes(s.r), &o.tp, o.detect_every))) {
        status = cli_fail("camera");
        goto done;
    }
    stop_requested = 0;
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    if (!o.quiet || o.stats) fprintf(stderr, "ferc camera: %s\n", video_source_describe(s.src));
    double fps_in;
    video_source_info(s.src, NULL, NULL, &fps_in, NULL);
    const double t_start = time_now();
    double t = t_start;
    while (!stop_requested && (!o.max_frames || s.frames < o.max_frames)) {
        const video_frame *f;
        rc = video_source_read(s.src, &f);
        double t2 = time_now();
        s.stage[ST_DECODE] += t2 - t;
        if (rc <= 0) break;
        if (!s.vw && o.output) {
            if ((rc = video_writer_open(&s.vw, o.output, f->img.width, f->img.height, fps_in > 0 ? fps_in : 25))) break;
            if (!o.quiet || o.stats) fprintf(stderr, "ferc camera: writing %s (%s)\n", o.output, video_writer_codec(s.vw));
        }
        if (!s.win && o.window && !s.frames) {
            if ((rc = video_window_open(&s.win, "ferc camera", f->img.width, f->img.height))) break;
        }
        if ((rc = process(&s, f))) break;
        s.frames++;
        t = time_now();
    }
    const double wall = time_now() - t_start;
    fflush(stdout);
    if (rc < 0) status = cli_fail("camera");
    if (s.vw) {
        if (video_writer_close(s.vw) && status == CLI_OK) status = cli_fail("camera");
        s.vw = NULL;
    }
    if (o.stats) print_stats(&s, wall);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
done:
    video_window_close(s.win);
    video_writer_close(s.vw);
    image_free(&s.canvas);
    face_stream_destroy(s.fs);
    face_recognizer_destroy(s.r);
    video_source_close(s.src);
    return status;
}
