/* ferc camera: JSON-lines schema on a tiny video made with the ffmpeg CLI from the committed
 * public-domain photo and on an image folder, with a resnet18 model (fixed random weights,
 * 6 classes, 48x48) made here; the annotated video; the no-camera, no-display and usage
 * errors. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "ferc.h"
#include "core/core.h"
#include "models/models.h"
#include "video/video.h"
#include "testutil.h"

#define PHOTO "tests/fixtures/faces/Tom_Cruise_avp_2014_4.jpg"
static char dir[256], model[300];

static int is_class(const char *s)
{
    for (int i = 0; i < 6; i++)
        if (s && !strcmp(s, test_fer_classes[i])) return 1;
    return 0;
}

static void check_probs(const cJSON *p, const char *what, int line)
{
    CHECK(cJSON_IsObject(p) && cJSON_GetArraySize(p) == 6, "line %d: %s has 6 entries", line, what);
    double sum = 0;
    for (int i = 0; i < 6; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(p, test_fer_classes[i]);
        CHECK(cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= 1, "line %d: %s[%s]", line, what, test_fer_classes[i]);
        if (cJSON_IsNumber(v)) sum += v->valuedouble;
    }
    CHECK(fabs(sum - 1) < 1e-4, "line %d: %s sums to %g", line, what, sum);
}

/* Checks every line; returns the number of lines and the face count and first id seen. */
static int check_jsonl(const char *text, int w, int h, int *faces, int *ids_distinct, int want_image)
{
    int lines = 0, seen_ids[64] = {0}, distinct = 0;
    *faces = 0;
    double last_t = -1;
    for (const char *s = text; *s;) {
        const char *e = strchr(s, '\n');
        if (!e) {
            CHECK(0, "the last line ends with a newline");
            break;
        }
        char *line = strndup(s, (size_t)(e - s));
        cJSON *j = cJSON_Parse(line);
        CHECK(j != NULL, "line %d is JSON: %.200s", lines, line);
        if (j) {
            const cJSON *fr = cJSON_GetObjectItemCaseSensitive(j, "frame"), *t = cJSON_GetObjectItemCaseSensitive(j, "time"),
                        *jw = cJSON_GetObjectItemCaseSensitive(j, "width"), *jh = cJSON_GetObjectItemCaseSensitive(j, "height"),
                        *det = cJSON_GetObjectItemCaseSensitive(j, "detected"), *fs = cJSON_GetObjectItemCaseSensitive(j, "faces"),
                        *img = cJSON_GetObjectItemCaseSensitive(j, "image");
            CHECK(cJSON_IsNumber(fr) && fr->valueint == lines, "line %d: frame", lines);
            CHECK(cJSON_IsNumber(t) && t->valuedouble > last_t, "line %d: time increases", lines);
            if (cJSON_IsNumber(t)) last_t = t->valuedouble;
            CHECK(cJSON_IsNumber(jw) && cJSON_IsNumber(jh) && (!w || (jw->valueint == w && jh->valueint == h)), "line %d: size", lines);
            CHECK(cJSON_IsBool(det), "line %d: detected", lines);
            CHECK(want_image ? cJSON_IsString(img) : img == NULL, "line %d: image key", lines);
            CHECK(cJSON_IsArray(fs), "line %d: faces", lines);
            const cJSON *f;
            cJSON_ArrayForEach(f, fs)
            {
                (*faces)++;
                const cJSON *id = cJSON_GetObjectItemCaseSensitive(f, "id"), *box = cJSON_GetObjectItemCaseSensitive(f, "box"),
                            *lab = cJSON_GetObjectItemCaseSensitive(f, "label"), *conf = cJSON_GetObjectItemCaseSensitive(f, "confidence"),
                            *rl = cJSON_GetObjectItemCaseSensitive(f, "raw_label"), *lg = cJSON_GetObjectItemCaseSensitive(f, "logits");
                CHECK(cJSON_IsNumber(id) && id->valueint >= 1, "line %d: id", lines);
                if (cJSON_IsNumber(id)) {
                    int known = 0;
                    for (int q = 0; q < distinct; q++) known |= seen_ids[q] == id->valueint;
                    if (!known && distinct < 64) seen_ids[distinct++] = id->valueint;
                }
                CHECK(cJSON_IsArray(box) && cJSON_GetArraySize(box) == 4, "line %d: box", lines);
                for (int q = 0; q < 4 && cJSON_IsArray(box); q++) CHECK(cJSON_IsNumber(cJSON_GetArrayItem(box, q)));
                CHECK(cJSON_IsString(lab) && is_class(lab->valuestring), "line %d: label", lines);
                CHECK(cJSON_IsString(rl) && is_class(rl->valuestring), "line %d: raw_label", lines);
                CHECK(cJSON_IsNumber(conf) && conf->valuedouble > 0 && conf->valuedouble <= 1, "line %d: confidence", lines);
                check_probs(cJSON_GetObjectItemCaseSensitive(f, "probabilities"), "probabilities", lines);
                check_probs(cJSON_GetObjectItemCaseSensitive(f, "raw_probabilities"), "raw_probabilities", lines);
                CHECK(cJSON_IsArray(lg) && cJSON_GetArraySize(lg) == 6, "line %d: logits", lines);
            }
            cJSON_Delete(j);
        }
        free(line);
        lines++;
        s = e + 1;
    }
    *ids_distinct = distinct;
    return lines;
}

int main(void)
{
    const char *bin = getenv("FERC_BIN");
    if (!bin) return test_skip("FERC_BIN is not set (run through ctest)");
    if (system("ffmpeg -version >/dev/null 2>&1") != 0) return test_skip("the ffmpeg command is not installed");
    snprintf(dir, sizeof dir, "/tmp/ferc_test_camera_%d", (int)getpid());
    CHECK_OK(file_mkdirs(dir));
    snprintf(model, sizeof model, "%s/r18_48.safetensors", dir);
    test_make_model(model, "resnet18", 48, 7);
    char cmd[2048], *out = NULL;
    int rc;

    /* a 12-frame clip: the photo scaled to 280x400, panning a little */
    CHECK(test_sh("ffmpeg -v error -y -loop 1 -i " PHOTO " -vf \"scale=280:400,crop=240:360:x='20+10*sin(t*3)':y=20\" "
             "-r 10 -frames:v 12 -pix_fmt yuv420p %s/clip.mp4",
             dir) == 0);
    snprintf(cmd, sizeof cmd, "%s camera --model %s --video %s/clip.mp4 --jsonl --max-frames 10 --output %s/annotated.mp4 --stats 2>%s/err.txt",
             bin, model, dir, dir, dir);
    rc = test_capture(cmd, &out);
    CHECK(rc == 0, "exit status %d", rc);
    if (rc) test_sh("cat %s/err.txt >&2", dir);
    int faces = 0, ids = 0;
    int lines = out ? check_jsonl(out, 240, 360, &faces, &ids, 0) : 0;
    printf("video: %d lines, %d faces, %d distinct ids\n", lines, faces, ids);
    CHECK(lines == 10, "--max-frames 10: %d lines", lines);
    CHECK(faces >= 8, "the face is found on most frames: %d", faces);
    CHECK(ids == 1, "one face, one id: %d ids", ids);
    free(out);
    char path[400];
    snprintf(path, sizeof path, "%s/annotated.mp4", dir);
    video_source *s;
    CHECK_OK(video_source_open_file(&s, path, 1));
    if (s) {
        const video_frame *f;
        int n = 0;
        while (video_source_read(s, &f) == 1) n++;
        CHECK(n == 10, "annotated video has 10 frames: %d", n);
        video_source_close(s);
    }
    snprintf(cmd, sizeof cmd, "grep -q 'frames/s end to end' %s/err.txt", dir);
    CHECK(system(cmd) == 0, "--stats prints the timings");

    /* image folder: the photo and a blank picture (no face) */
    CHECK(test_sh("mkdir -p %s/imgs && cp " PHOTO " %s/imgs/1.jpg && ffmpeg -v error -y -f lavfi -i color=gray:size=64x48 -frames:v 1 %s/imgs/2.png",
             dir, dir, dir) == 0);
    snprintf(cmd, sizeof cmd, "%s camera --model %s --images %s/imgs --jsonl --detector haar --full 2>/dev/null", bin, model, dir);
    rc = test_capture(cmd, &out);
    CHECK(rc == 0, "exit status %d", rc);
    lines = out ? check_jsonl(out, 0, 0, &faces, &ids, 1) : 0;
    CHECK(lines == 2 && faces == 1, "images: %d lines, %d faces", lines, faces);
    if (out && lines == 2) CHECK(strstr(out, "[49, 206, 457, 457]") != NULL, "--full gives OpenCV's box on the photo:\n%.300s", out);
    free(out);

    /* errors */
    char devs[256];
    int ndev = video_list_devices(devs, sizeof devs);
    snprintf(cmd, sizeof cmd, "%s camera --model %s --device /dev/video-ferc-none 2>&1 >/dev/null", bin, model);
    rc = test_capture(cmd, &out);
    printf("no camera -> %d: %s", rc, out ? out : "");
    CHECK(rc == 1 && out && strstr(out, "video devices found: "), "no-camera error");
    if (!ndev) CHECK(out && strstr(out, "video devices found: none"));
    free(out);
    snprintf(cmd, sizeof cmd, "env -u DISPLAY -u WAYLAND_DISPLAY %s camera --model %s --video %s/clip.mp4 --window 2>&1 >/dev/null", bin, model, dir);
    rc = test_capture(cmd, &out);
    printf("no display -> %d: %s", rc, out ? out : "");
    CHECK(rc == 1 && out && strstr(out, "window"), "no-display error");
    free(out);
    /* without --model: the default model (FERC_MODEL); a missing one is named */
    snprintf(cmd, sizeof cmd, "FERC_MODEL=%s %s camera --video %s/clip.mp4 --max-frames 2 --jsonl 2>&1", model, bin, dir);
    rc = test_capture(cmd, &out);
    CHECK(rc == 0 && out && strstr(out, "\"faces\""), "FERC_MODEL is the default model: %d %s", rc, out ? out : "");
    free(out);
    snprintf(cmd, sizeof cmd, "FERC_MODEL=/nonexistent/m.safetensors %s camera --video %s/clip.mp4 2>&1", bin, dir);
    rc = test_capture(cmd, &out);
    CHECK(rc == 1 && out && strstr(out, "/nonexistent/m.safetensors"), "a missing default model is named: %d %s", rc,
          out ? out : "");
    free(out);
    snprintf(cmd, sizeof cmd, "%s camera --model %s --video %s/clip.mp4 --smooth 0 2>&1", bin, model, dir);
    rc = test_capture(cmd, &out);
    CHECK(rc == 2, "--smooth 0 is refused");
    free(out);
    if (!test_failures && !getenv("FERC_TEST_KEEP")) test_sh("rm -rf %s", dir); /* FERC_TEST_KEEP: keep the model and videos */
    return test_finish("test_camera_cli");
}
