/* ferc predict: classifies the expression of the faces in photos.
 *
 * Two modes:
 *   - with detection (the default): each image goes through face/recognize: cascade detection,
 *     a crop with a margin per face, gray, resized and normalized as the model file says, and
 *     all faces of the image in one forward pass. Output per image: its size and per face the
 *     box, the label with its confidence, all class probabilities and the logits; --annotate
 *     writes a copy with each box and a filled label box drawn on it.
 *   - --no-detect: each whole image is one region (pre-cropped faces such as FER images); all
 *     regions of a chunk of images go through the network in one batch.
 * With detection, an image that cannot be read is reported on stderr naming it, the others are
 * still processed, and the exit status is 1 at the end (--no-detect stops at the first one). */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/core.h"
#include "face/face_json.h"
#include "face/recognize.h"
#include "image/image.h"
#include "models/classify.h"

enum { DEFAULT_BATCH = 32, DEFAULT_TOP = 3 };

static void usage(void)
{
    printf("usage: ferc predict [--model MODEL] [options] IMAGE...\n"
           "       ferc predict [--model MODEL] --no-detect [--json] [--batch B] IMAGE...\n\n"
           "Finds the faces in each image (BlazeFace, or --detector haar) and classifies the\n"
           "expression of each: the face is cropped with a margin, made gray, resized to the model's\n"
           "input size and normalized with the model's mean/std; all faces of an image go through\n"
           "the network in one batch. An image without a face says so (exit status 0).\n\n"
           "With --no-detect each whole image is classified as given (pre-cropped faces such as\n"
           "FER images): gray replicated to 3 channels, resized to the model's input size unless it\n"
           "already has it, normalized with the model's mean/std, B images per batch.\n\n"
           "options:\n"
           "  --model FILE    a ferc model (.safetensors); default: the shipped model\n"
           "  --json          print a JSON list, one object per image that could be read:\n"
           "                  {\"image\": PATH, \"width\": W, \"height\": H, \"faces\": [{\"box\": [x, y, w, h],\n"
           "                   \"label\": NAME, \"confidence\": p, \"probabilities\": {NAME: p, ...},\n"
           "                   \"logits\": [...]}, ...]} (numbers with 9 significant digits);\n"
           "                  with --no-detect: {\"image\": PATH, \"label\": NAME,\n"
           "                   \"probabilities\": {NAME: p, ...}, \"logits\": [...]}\n"
           "                  (with --tta flip or tencrop the logits are the log of the averaged\n"
           "                  probabilities: their softmax gives the probabilities)\n"
           "  --top K         classes listed per face in the text output (default %d)\n"
           "  --annotate OUT  write the images with each face's box, label and confidence drawn:\n"
           "                  OUT is a file for one image, a folder (created) for several;\n"
           "                  .png or .jpg by name\n"
           "  --detector D    blazeface (the CNN, default: finds tilted and turned faces; its\n"
           "                  detection score and eye keypoints are added to the JSON) or haar\n"
           "                  (Viola-Jones, as OpenCV's detectMultiScale)\n"
           "  --align         turn each face so that its eyes are level before classifying it\n"
           "                  (the CNN detector's eye keypoints; see bench/bench_framing --rotate)\n"
           "  --cascade FILE  cascade XML (default %s); with --detector blazeface its model file\n"
           "  --margin F      crop margin per side as a fraction of the box, in [0, 2] (default 0.02:\n"
           "                  FER's framing, see bench/bench_framing)\n"
           "  --tta MODE      test-time augmentation: the network sees each face as given and\n"
           "                  mirrored and the probabilities are averaged (flip, the default),\n"
           "                  ten crops and their mirrors (tencrop, 10x the work), or once (none)\n"
           "  --precision P   fp32 (default) or bf16 (mixed: bf16 activations and conv weights)\n"
           "  --no-detect     classify each whole image (no face detection)\n"
           "  --batch B       images per forward pass with --no-detect (default %d)\n"
           "  -h, --help      this help\n",
           DEFAULT_TOP, FACE_CASCADE_DEFAULT_PATH, DEFAULT_BATCH);
}

/* `, "probabilities": {NAME: p, ...}, "logits": [...]}`: the end of a whole-image result. */
static void print_scores(FILE *out, const classifier *c, int k, const float *logits, const float *probs)
{
    fputs(", \"probabilities\": {", out);
    for (int j = 0; j < k; j++) {
        fputs(j ? ", " : "", out);
        face_json_string(out, classifier_class_name(c, j));
        fputs(": ", out);
        face_json_number(out, probs[j]);
    }
    fputs("}, \"logits\": [", out);
    for (int j = 0; j < k; j++) {
        fputs(j ? ", " : "", out);
        face_json_number(out, logits[j]);
    }
    fputs("]}", out);
}

static void print_json(FILE *out, const classifier *c, const char *path, const float *logits, const float *probs,
                       bool first)
{
    const int k = classifier_meta(c)->num_classes;
    fprintf(out, "%s\n  {\"image\": ", first ? "" : ",");
    face_json_string(out, path);
    fputs(", \"label\": ", out);
    face_json_string(out, classifier_class_name(c, face_argmax(probs, k)));
    print_scores(out, c, k, logits, probs);
}

static void print_text(FILE *out, const classifier *c, const char *path, const float *probs)
{
    const int k = classifier_meta(c)->num_classes;
    int best = face_argmax(probs, k);
    fprintf(out, "%s: %s (%.1f%%)", path, classifier_class_name(c, best), 100.0 * probs[best]);
    /* The runners-up, most likely first, at most five. */
    bool *shown = calloc((size_t)k, sizeof *shown);
    if (shown) {
        shown[best] = true;
        for (int r = 0; r < 5 && r < k - 1; r++) {
            int m = -1;
            for (int j = 0; j < k; j++)
                if (!shown[j] && (m < 0 || probs[j] > probs[m])) m = j;
            shown[m] = true;
            fprintf(out, "%s%s %.1f%%", r ? ", " : "   [", classifier_class_name(c, m), 100.0 * probs[m]);
            if (r == 4 || r == k - 2) fputs("]", out);
        }
        free(shown);
    }
    fputs("\n", out);
}

/* ---- --no-detect: whole images ------------------------------------------------------------ */

static int predict_whole_images(const char *model, const char **paths, int npaths, bool json, int batch,
                                classify_tta tta, bool bf16)
{
    classifier *c = NULL;
    if (classifier_load(&c, model)) return cli_fail(NULL);
    classifier_set_tta(c, tta);
    classifier_set_bf16(c, bf16);
    int rc = CLI_OK;
    const int k = classifier_meta(c)->num_classes;
    if (batch > npaths) batch = npaths;
    image *imgs = calloc((size_t)batch, sizeof *imgs);
    float *logits = malloc((size_t)batch * k * sizeof(float)), *probs = malloc((size_t)batch * k * sizeof(float));
    if (!imgs || !logits || !probs) {
        ferc_set_error(FERC_ERR_NOMEM, "out of memory");
        rc = cli_fail("predict");
    }
    if (json && rc == CLI_OK) fputs("[", stdout);
    for (int start = 0; start < npaths && rc == CLI_OK; start += batch) {
        int n = npaths - start < batch ? npaths - start : batch;
        int loaded = 0;
        for (; loaded < n; loaded++)
            if (image_load(&imgs[loaded], paths[start + loaded], IMAGE_MODE_ANY, 1)) break;
        if (loaded < n) rc = cli_fail(NULL);
        else if (classifier_run_images(c, imgs, n, logits, probs)) rc = cli_fail(model);
        for (int i = 0; i < n && rc == CLI_OK; i++) {
            if (json) print_json(stdout, c, paths[start + i], logits + (size_t)i * k, probs + (size_t)i * k, start + i == 0);
            else print_text(stdout, c, paths[start + i], probs + (size_t)i * k);
        }
        for (int i = 0; i < loaded; i++) image_free(&imgs[i]);
        fflush(stdout);
    }
    if (json && rc == CLI_OK) fputs("\n]\n", stdout);
    free(imgs);
    free(logits);
    free(probs);
    classifier_destroy(c);
    return rc;
}

/* ---- with detection: faces ------------------------------------------------------------------ */

typedef struct face_opts {
    const char *model, *cascade, *annotate;
    bool json;
    int top;
    float margin; /* < 0: the recognizer's default */
    classify_tta tta;
    face_detector_kind detector;
    bool align;
    bool bf16;
} face_opts;

/* Reports a failure on an image, naming it once. */
static void fail_on(const char *path)
{
    cli_fail(strstr(ferc_last_error(), path) ? NULL : path);
}

static void print_face_json(FILE *out, const face_recognizer *r, const face_box *b, const float *logits,
                            const float *probs, const blazeface_det *det, bool first)
{
    face_json_face f = {.box = b, .id = -1, .probs = probs, .logits = logits, .det = det};
    fputs(first ? "\n    " : ",\n    ", out);
    face_json_write(out, face_recognizer_class_names(r), face_recognizer_num_classes(r), &f);
}

/* "face 1 at x 49 y 206 w 457 h 457: Happy 41.2%   top 3: Happy 41.2%, Sad 20.3%, Fear 11.0%" */
static void print_face_text(FILE *out, const face_recognizer *r, int index, const face_box *b, const float *probs,
                            int top, int *order)
{
    const int k = face_recognizer_num_classes(r), best = face_argmax(probs, k);
    fprintf(out, "  face %d at x %d y %d w %d h %d: %s %.1f%%", index + 1, b->x, b->y, b->w, b->h,
            face_recognizer_class_name(r, best), 100.0 * probs[best]);
    /* Most likely first; ties keep label order. */
    for (int j = 0; j < k; j++) order[j] = j;
    for (int j = 1; j < k; j++) {
        int v = order[j], q = j;
        for (; q > 0 && probs[order[q - 1]] < probs[v]; q--) order[q] = order[q - 1];
        order[q] = v;
    }
    if (top > k) top = k;
    fprintf(out, "   top %d: ", top);
    for (int j = 0; j < top; j++)
        fprintf(out, "%s%s %.1f%%", j ? ", " : "", face_recognizer_class_name(r, order[j]), 100.0 * probs[order[j]]);
    fputs("\n", out);
}

/* One colour per label (label i % 6), the six FER classes in their usual order: Angry red,
 * Fear purple, Happy green, Neutral light gray, Sad blue, Surprise orange. */
static const uint8_t palette[6][3] = {{230, 60, 60}, {160, 60, 220}, {40, 210, 60}, {220, 220, 220}, {60, 120, 240}, {250, 170, 30}};

static int clampi(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

typedef struct rect {
    int x, y, w, h;
} rect;

static bool overlaps(const rect *a, const rect *b)
{
    return a->x < b->x + b->w && b->x < a->x + a->w && a->y < b->y + b->h && b->y < a->y + a->h;
}

/* A box `t` pixels thick with a dark edge on both sides, so that light colours (Neutral's gray)
 * stay visible on light backgrounds. */
static void draw_box(image *c, int x, int y, int w, int h, int t, const uint8_t col[3])
{
    static const uint8_t dark[3] = {20, 20, 20};
    const int e = t / 4 > 0 ? t / 4 : 1;
    image_draw_rect(c, x - e, y - e, w + 2 * e, h + 2 * e, t + 2 * e, dark);
    image_draw_rect(c, x, y, w, h, t, col);
}

/* Draws each box with a filled label box ("Happy 87%") on its top edge. Line thickness and text
 * scale follow the face's size, with a floor from the image's size so that labels on small faces
 * of a large photo stay readable. Labels are drawn after all boxes so that no box crosses one,
 * and a label that would cover an earlier one moves inside its box, then below it. */
static int annotate_faces(const face_recognizer *r, const image *img, const face_box *boxes, int n,
                          const float *probs, const char *path)
{
    image c;
    int rc = image_clone(&c, img);
    if (rc) return rc;
    rect *placed = malloc((size_t)(n > 0 ? n : 1) * sizeof *placed);
    if (!placed) {
        image_free(&c);
        return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    }
    const int k = face_recognizer_num_classes(r);
    const int side = img->width < img->height ? img->width : img->height;
    for (int i = 0; i < n; i++) {
        const face_box *b = &boxes[i];
        const int lab = face_argmax(probs + (size_t)i * k, k);
        draw_box(&c, b->x, b->y, b->w, b->h, clampi(b->w / 60 + 1, side / 500 + 2, 64), palette[lab % 6]);
    }
    for (int i = 0; i < n; i++) {
        const face_box *b = &boxes[i];
        const float *p = probs + (size_t)i * k;
        const int lab = face_argmax(p, k);
        const uint8_t *col = palette[lab % 6];
        char text[128];
        snprintf(text, sizeof text, "%s %d%%", face_recognizer_class_name(r, lab), (int)lround(100.0 * p[lab]));
        int s = clampi(b->w / 90, side / 600 + 1, 12);
        while (s > 1 && image_text_width(text, s) + 2 * s > c.width) s--;
        const int pad = s, lw = image_text_width(text, s) + 2 * pad, lh = 9 * s + 2 * pad;
        const int lx = clampi(b->x, 0, c.width > lw ? c.width - lw : 0);
        /* above the box, inside its top, below it */
        const int ys[3] = {b->y - lh, b->y, b->y + b->h};
        rect at = {lx, -1, lw, lh};
        for (int q = 0; q < 3 && at.y < 0; q++) {
            rect cand = {lx, ys[q], lw, lh};
            if (cand.y < 0 || cand.y + lh > c.height) continue;
            bool clash = false;
            for (int j = 0; j < i && !clash; j++) clash = overlaps(&cand, &placed[j]);
            if (!clash) at = cand;
        }
        if (at.y < 0) at.y = clampi(ys[0], 0, c.height > lh ? c.height - lh : 0); /* no free place: above */
        placed[i] = at;
        /* Black text on light colours, white on dark ones (ITU-R 601 luma). */
        const int luma = (299 * col[0] + 587 * col[1] + 114 * col[2]) / 1000;
        static const uint8_t black[3] = {0, 0, 0}, white[3] = {255, 255, 255};
        image_fill_rect(&c, at.x, at.y, at.w, at.h, col);
        image_draw_text(&c, at.x + pad, at.y + pad, text, s, luma >= 128 ? black : white, NULL);
    }
    free(placed);
    rc = image_save(&c, path, 92);
    image_free(&c);
    return rc;
}

static int predict_faces(const face_opts *o, const char **paths, int npaths)
{
    if (o->annotate && (npaths > 1 || file_is_dir(o->annotate)) && file_mkdirs(o->annotate))
        return cli_fail("--annotate");
    face_recog_params p;
    face_recog_params_default(&p);
    if (o->margin >= 0) p.margin = o->margin;
    p.tta = o->tta;
    p.detector = o->detector;
    p.align = o->align;
    p.bf16 = o->bf16;
    face_recognizer *r = NULL;
    if (face_recognizer_create(&r, o->model, o->cascade, &p)) return cli_fail(NULL);
    const int k = face_recognizer_num_classes(r);
    int *order = malloc((size_t)k * sizeof *order);
    if (!order) {
        face_recognizer_destroy(r);
        ferc_set_error(FERC_ERR_NOMEM, "out of memory");
        return cli_fail("predict");
    }
    int status = CLI_OK;
    bool first = true;
    if (o->json) fputs("[", stdout);
    for (int i = 0; i < npaths; i++) {
        image img;
        if (image_load(&img, paths[i], IMAGE_MODE_RGB, 1)) {
            fail_on(paths[i]);
            status = CLI_FAIL;
            continue;
        }
        face_box *boxes = NULL;
        float *logits = NULL, *probs = NULL;
        int n = 0;
        if (face_recognize(r, &img, &boxes, &n, &logits, &probs)) {
            fail_on(paths[i]);
            status = CLI_FAIL;
            image_free(&img);
            continue;
        }
        if (o->json) {
            fprintf(stdout, "%s\n  {\"image\": ", first ? "" : ",");
            face_json_string(stdout, paths[i]);
            fprintf(stdout, ", \"width\": %d, \"height\": %d, \"faces\": [", img.width, img.height);
            int nd;
            const blazeface_det *dets = face_recognizer_last_detections(r, &nd);
            for (int f = 0; f < n; f++)
                print_face_json(stdout, r, &boxes[f], logits + (size_t)f * k, probs + (size_t)f * k,
                                dets && nd == n ? &dets[f] : NULL, f == 0);
            fputs(n ? "\n  ]}" : "]}", stdout);
        } else {
            printf("%s: %dx%d, ", paths[i], img.width, img.height);
            if (n) printf("%d face%s\n", n, n == 1 ? "" : "s");
            else printf("no face found\n");
            for (int f = 0; f < n; f++) print_face_text(stdout, r, f, &boxes[f], probs + (size_t)f * k, o->top, order);
        }
        first = false;
        fflush(stdout);
        if (o->annotate) {
            char dst[PATH_MAX];
            cli_annotate_path(o->annotate, npaths == 1, paths[i], dst, sizeof dst);
            if (annotate_faces(r, &img, boxes, n, probs, dst)) {
                fail_on(dst);
                status = CLI_FAIL;
            }
        }
        free(boxes);
        free(logits);
        free(probs);
        image_free(&img);
    }
    if (o->json) fputs("\n]\n", stdout);
    free(order);
    face_recognizer_destroy(r);
    return status;
}

int cmd_predict(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        usage();
        return CLI_OK;
    }
    face_opts o = {.top = DEFAULT_TOP, .margin = -1, .tta = CLASSIFY_TTA_FLIP, .detector = FACE_DETECTOR_BLAZEFACE};
    bool no_detect = false, top_given = false, detector_given = false;
    int batch = DEFAULT_BATCH;
    const char **paths = calloc((size_t)argc, sizeof *paths);
    int npaths = 0;
    if (!paths) {
        ferc_set_error(FERC_ERR_NOMEM, "out of memory");
        return cli_fail("predict");
    }
    int rc = CLI_OK;
    for (int i = 1; i < argc && rc == CLI_OK; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json")) o.json = true;
        else if (!strcmp(a, "--no-detect")) no_detect = true;
        else if (!strcmp(a, "--align")) o.align = true;
        else if (!strcmp(a, "--model") || !strcmp(a, "--batch") || !strcmp(a, "--top") || !strcmp(a, "--annotate") ||
                 !strcmp(a, "--cascade") || !strcmp(a, "--margin") || !strcmp(a, "--tta") || !strcmp(a, "--detector") ||
                 !strcmp(a, "--precision")) {
            if (i + 1 >= argc) {
                rc = cli_usage_error("predict", "%s needs a value", a);
                break;
            }
            const char *v = argv[++i];
            if (!strcmp(a, "--model")) {
                o.model = v;
            } else if (!strcmp(a, "--annotate")) {
                o.annotate = v;
            } else if (!strcmp(a, "--cascade")) {
                o.cascade = v;
            } else if (!strcmp(a, "--tta")) {
                if (classify_tta_parse(v, &o.tta)) rc = cli_usage_error("predict", "--tta must be none, flip or tencrop, not '%s'", v);
            } else if (!strcmp(a, "--precision")) {
                if (cli_parse_precision(v, &o.bf16)) rc = cli_usage_error("predict", "--precision fp32|bf16, not '%s'", v);
            } else if (!strcmp(a, "--detector")) {
                if (face_detector_parse(v, &o.detector)) rc = cli_usage_error("predict", "--detector must be haar or blazeface, not '%s'", v);
                detector_given = true;
            } else if (!strcmp(a, "--margin")) {
                double m;
                if (cli_parse_double(v, 0, 2, &m)) rc = cli_usage_error("predict", "--margin must be a number in [0, 2], not '%s'", v);
                else o.margin = (float)m;
            } else if (!strcmp(a, "--top")) {
                if (cli_parse_int(v, 1, 100000, &o.top)) rc = cli_usage_error("predict", "--top needs a positive integer, not '%s'", v);
                top_given = true;
            } else if (cli_parse_int(v, 1, 4096, &batch)) {
                rc = cli_usage_error("predict", "--batch needs a positive integer, not '%s'", v);
            }
        } else if (a[0] == '-' && a[1]) {
            rc = cli_usage_error("predict", "unknown option '%s'", a);
        } else {
            paths[npaths++] = a;
        }
    }
    if (rc == CLI_OK && !o.model && !(o.model = ferc_default_model_path()))
        rc = cli_usage_error("predict", "no --model given and the default model is not installed (set FERC_MODEL)");
    if (rc == CLI_OK && !npaths) rc = cli_usage_error("predict", "no images given");
    if (rc == CLI_OK && no_detect && (o.annotate || o.cascade || o.margin >= 0 || top_given || detector_given || o.align))
        rc = cli_usage_error("predict", "--annotate, --cascade, --detector, --margin and --top need face detection (not with --no-detect)");
    if (rc == CLI_OK) rc = no_detect ? predict_whole_images(o.model, paths, npaths, o.json, batch, o.tta, o.bf16) : predict_faces(&o, paths, npaths);
    free(paths);
    return rc;
}
