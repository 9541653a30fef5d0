/* ferc detect: finds faces (or whatever the cascade detects) in images and prints the boxes,
 * as text or as JSON, optionally writing annotated copies.
 *
 * JSON (--json) is a list with one object per image that could be read:
 *   [{"image": PATH, "width": W, "height": H, "faces": [{"box": [x, y, w, h]}, ...]}, ...]
 * With --detector blazeface each face also has "score" and "keypoints" (the six of BlazeFace,
 * {"right_eye": [x, y], ...}), and the box is the CNN's own (not the Haar framing that the
 * classifier's crops use).
 * in pixels of the original image (after its EXIF orientation). An image that cannot be read
 * is reported on stderr and makes the exit status 1; the others are still processed. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli/cli.h"
#include "core/core.h"
#include "face/blazeface.h"
#include "face/cascade.h"
#include "face/recognize.h"
#include "image/image.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: ferc detect IMAGE... [options]\n\n"
            "Finds faces with a Viola-Jones cascade (OpenCV's XML format) and prints their boxes.\n"
            "Boxes match OpenCV's CascadeClassifier.detectMultiScale with the same parameters.\n\n"
            "options:\n"
            "  --json               print a JSON list: {\"image\", \"width\", \"height\", \"faces\": [{\"box\": [x, y, w, h]}]}\n"
            "  --annotate OUT       write images with the boxes drawn: OUT is a file for one image,\n"
            "                       a folder (created) for several; .png or .jpg by name\n"
            "  --detector D         haar (the cascade; default) or blazeface (the CNN face detector)\n"
            "  --min-score S        blazeface: least detection score in (0, 1) (default 0.55)\n"
            "  --cascade FILE       cascade XML (default %s); with --detector blazeface its model file\n"
            "  --scale-factor F     pyramid step, > 1 (default 1.1)\n"
            "  --min-neighbors N    hits needed to keep a box (default 3; 0 = raw hits)\n"
            "  --min-size N         smallest box side in pixels (default 0)\n"
            "  --max-size N         largest box side in pixels (default 0 = image size)\n"
            "  -h, --help           this help\n",
            FACE_CASCADE_DEFAULT_PATH);
}

static const char *const kp_names[BLAZEFACE_KEYPOINTS] = {"right_eye", "left_eye", "nose", "mouth", "right_ear", "left_ear"};

static int annotate(const image *rgb, const face_box *b, int n, const blazeface_det *dets, const char *path)
{
    image copy;
    int rc = image_clone(&copy, rgb);
    if (rc) return rc;
    static const uint8_t green[3] = {0, 230, 0}, yellow[3] = {250, 220, 0};
    for (int i = 0; i < n; i++) {
        int t = b[i].w / 60 + 2;
        image_draw_rect(&copy, b[i].x, b[i].y, b[i].w, b[i].h, t, green);
        for (int k = 0; dets && k < BLAZEFACE_KEYPOINTS; k++)
            image_fill_rect(&copy, (int)lroundf(dets[i].kp[k][0]) - t, (int)lroundf(dets[i].kp[k][1]) - t, 2 * t + 1, 2 * t + 1,
                            yellow);
    }
    rc = image_save(&copy, path, 92);
    image_free(&copy);
    return rc;
}

int cmd_detect(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return CLI_OK;
    }
    face_detect_params p;
    face_detect_params_default(&p);
    int json = 0;
    const char *annotate_out = NULL, *cascade_path = NULL;
    face_detector_kind kind = FACE_DETECTOR_HAAR;
    blazeface_params bp;
    blazeface_params_default(&bp);
    const char **images = calloc((size_t)argc, sizeof *images);
    int nimages = 0;
    if (!images) return cli_usage_error("detect", "out of memory");
    int status = CLI_OK;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = !strcmp(a, "--annotate") || !strcmp(a, "--cascade") || !strcmp(a, "--scale-factor") ||
                    !strcmp(a, "--min-neighbors") || !strcmp(a, "--min-size") || !strcmp(a, "--max-size") ||
                    !strcmp(a, "--detector") || !strcmp(a, "--min-score");
        if (takes && !val) {
            status = cli_usage_error("detect", "%s needs a value", a);
            goto done;
        }
        if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--annotate")) {
            annotate_out = val;
            i++;
        } else if (!strcmp(a, "--cascade")) {
            cascade_path = val;
            i++;
        } else if (!strcmp(a, "--detector")) {
            if (face_detector_parse(val, &kind)) {
                status = cli_usage_error("detect", "--detector must be haar or blazeface (got '%s')", val);
                goto done;
            }
            i++;
        } else if (!strcmp(a, "--min-score")) {
            double v;
            if (cli_parse_double(val, 0, 1, &v) || v <= 0 || v >= 1) {
                status = cli_usage_error("detect", "--min-score must be in (0, 1) (got '%s')", val);
                goto done;
            }
            bp.min_score = (float)v;
            i++;
        } else if (!strcmp(a, "--scale-factor")) {
            char *end;
            errno = 0;
            p.scale_factor = strtod(val, &end);
            if (!*val || *end || errno || !(p.scale_factor > 1.0) || p.scale_factor > 100) {
                status = cli_usage_error("detect", "--scale-factor must be a number > 1 (got '%s')", val);
                goto done;
            }
            i++;
        } else if (!strcmp(a, "--min-neighbors") || !strcmp(a, "--min-size") || !strcmp(a, "--max-size")) {
            int v;
            if (cli_parse_int(val, 0, 1 << 20, &v)) {
                status = cli_usage_error("detect", "%s must be a whole number >= 0 (got '%s')", a, val);
                goto done;
            }
            if (!strcmp(a, "--min-neighbors")) p.min_neighbors = v;
            else if (!strcmp(a, "--min-size")) p.min_w = p.min_h = v;
            else p.max_w = p.max_h = v;
            i++;
        } else if (a[0] == '-' && a[1]) {
            status = cli_usage_error("detect", "unknown option '%s'", a);
            goto done;
        } else {
            images[nimages++] = a;
        }
    }
    if (nimages == 0) {
        status = cli_usage_error("detect", "no image given");
        goto done;
    }
    if (annotate_out && (nimages > 1 || file_is_dir(annotate_out)) && file_mkdirs(annotate_out)) {
        status = cli_fail("--annotate");
        goto done;
    }

    face_cascade *fc = NULL;
    blazeface *bf = NULL;
    if (kind == FACE_DETECTOR_BLAZEFACE ? blazeface_load(&bf, cascade_path) : face_cascade_load(&fc, cascade_path)) {
        status = cli_fail(kind == FACE_DETECTOR_BLAZEFACE ? "loading the BlazeFace detector" : "loading the cascade");
        goto done;
    }
    cJSON *list = json ? cJSON_CreateArray() : NULL;
    for (int k = 0; k < nimages; k++) {
        image rgb, gray;
        if (image_load(&rgb, images[k], IMAGE_MODE_RGB, 1)) {
            cli_fail(images[k]);
            status = CLI_FAIL;
            continue;
        }
        if (image_alloc(&gray, rgb.width, rgb.height, 1)) {
            image_free(&rgb);
            cli_fail(images[k]);
            status = CLI_FAIL;
            continue;
        }
        face_rgb_to_gray(rgb.data, rgb.stride, 3, rgb.width, rgb.height, gray.data, gray.stride);
        face_box *boxes = NULL;
        blazeface_det *dets = NULL;
        int n = 0, rc;
        if (bf) {
            rc = blazeface_detect(bf, &rgb, &bp, &dets, &n);
            if (!rc && n && !(boxes = malloc((size_t)n * sizeof *boxes))) rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory");
            for (int i = 0; !rc && i < n; i++) {
                const int x0 = (int)lroundf(dets[i].x0), y0 = (int)lroundf(dets[i].y0);
                boxes[i] = (face_box){x0, y0, (int)lroundf(dets[i].x1) - x0, (int)lroundf(dets[i].y1) - y0};
            }
        } else {
            rc = face_detect(fc, gray.data, gray.width, gray.height, gray.stride, &p, &boxes, &n);
        }
        image_free(&gray);
        if (rc) {
            cli_fail(images[k]);
            status = CLI_FAIL;
            image_free(&rgb);
            free(boxes);
            free(dets);
            continue;
        }
        if (json) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "image", images[k]);
            cJSON_AddNumberToObject(o, "width", rgb.width);
            cJSON_AddNumberToObject(o, "height", rgb.height);
            cJSON *faces = cJSON_AddArrayToObject(o, "faces");
            for (int i = 0; i < n; i++) {
                int v[4] = {boxes[i].x, boxes[i].y, boxes[i].w, boxes[i].h};
                cJSON *f = cJSON_CreateObject();
                cJSON_AddItemToObject(f, "box", cJSON_CreateIntArray(v, 4));
                if (dets) {
                    cJSON_AddNumberToObject(f, "score", dets[i].score);
                    cJSON *kp = cJSON_AddObjectToObject(f, "keypoints");
                    for (int q = 0; q < BLAZEFACE_KEYPOINTS; q++) {
                        float xy[2] = {dets[i].kp[q][0], dets[i].kp[q][1]};
                        cJSON_AddItemToObject(kp, kp_names[q], cJSON_CreateFloatArray(xy, 2));
                    }
                }
                cJSON_AddItemToArray(faces, f);
            }
            cJSON_AddItemToArray(list, o);
        } else {
            printf("%s: %dx%d, %d face%s\n", images[k], rgb.width, rgb.height, n, n == 1 ? "" : "s");
            for (int i = 0; i < n; i++) {
                printf("  x %d y %d w %d h %d", boxes[i].x, boxes[i].y, boxes[i].w, boxes[i].h);
                if (dets)
                    printf("  score %.3f  eyes (%.0f, %.0f) (%.0f, %.0f)", dets[i].score, dets[i].kp[0][0], dets[i].kp[0][1],
                           dets[i].kp[1][0], dets[i].kp[1][1]);
                printf("\n");
            }
        }
        if (annotate_out) {
            char dst[PATH_MAX];
            cli_annotate_path(annotate_out, nimages == 1, images[k], dst, sizeof dst);
            if (annotate(&rgb, boxes, n, dets, dst)) {
                cli_fail(dst);
                status = CLI_FAIL;
            }
        }
        free(boxes);
        free(dets);
        image_free(&rgb);
    }
    if (json) {
        char *s = cJSON_Print(list);
        if (s) {
            printf("%s\n", s);
            cJSON_free(s);
        }
        cJSON_Delete(list);
    }
    face_cascade_destroy(fc);
    blazeface_destroy(bf);
done:
    free(images);
    return status;
}
