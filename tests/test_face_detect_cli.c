/* `ferc detect` end to end: the JSON shape and boxes on the committed photo (the box is
 * OpenCV's, from tests/fixtures/faces/opencv_boxes.json), --annotate writing a file, and the
 * exit codes of the error paths (unreadable image 1, bad option 2, missing cascade 1). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "core/core.h"
#include "face/cascade.h"
#include "testutil.h"

#define PHOTO "tests/fixtures/faces/Tom_Cruise_avp_2014_4.jpg"

/* Runs a shell command, returns its exit status and (if out) its stdout, malloc'ed. */
static int run(const char *cmd, char **out)
{
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t k;
    while (buf && (k = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += k;
        if (n + 1 == cap) buf = realloc(buf, cap *= 2);
    }
    if (buf) buf[n] = 0;
    int st = pclose(f);
    if (out) *out = buf;
    else free(buf);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int main(void)
{
    const char *bin = getenv("FERC_BIN");
    if (!bin) return test_skip("FERC_BIN is not set (run through ctest)");
    if (!file_exists(FACE_CASCADE_DEFAULT_PATH)) return test_skip("opencv-data is not installed");
    char cmd[8192];
    char *out = NULL;

    snprintf(cmd, sizeof cmd, "'%s' detect --json %s %s", bin, PHOTO, PHOTO);
    CHECK(run(cmd, &out) == 0, "detect --json failed");
    cJSON *j = out ? cJSON_Parse(out) : NULL;
    CHECK(cJSON_IsArray(j) && cJSON_GetArraySize(j) == 2, "not a list of 2: %s", out ? out : "");
    const cJSON *o;
    cJSON_ArrayForEach(o, j) {
        CHECK(cJSON_GetArraySize(o) == 4, "object has %d keys", cJSON_GetArraySize(o));
        CHECK(!strcmp(cJSON_GetObjectItem(o, "image")->valuestring, PHOTO), "image");
        CHECK(cJSON_GetObjectItem(o, "width")->valueint == 565, "width");
        CHECK(cJSON_GetObjectItem(o, "height")->valueint == 800, "height");
        const cJSON *faces = cJSON_GetObjectItem(o, "faces");
        CHECK(cJSON_GetArraySize(faces) == 1, "faces: %d", cJSON_GetArraySize(faces));
        const cJSON *box = cJSON_GetObjectItem(cJSON_GetArrayItem(faces, 0), "box");
        int want[4] = {49, 206, 457, 457}, ok = cJSON_GetArraySize(box) == 4;
        for (int k = 0; ok && k < 4; k++) ok = cJSON_GetArrayItem(box, k)->valueint == want[k];
        CHECK(ok, "box differs from OpenCV's [49, 206, 457, 457]");
    }
    cJSON_Delete(j);
    free(out);

    char dir[] = "/tmp/ferc_detect_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(cmd, sizeof cmd, "'%s' detect %s --annotate %s/ann.png --min-size 100 >/dev/null", bin, PHOTO, dir);
    CHECK(run(cmd, NULL) == 0, "detect --annotate failed");
    char ann[512];
    snprintf(ann, sizeof ann, "%s/ann.png", dir);
    CHECK(file_exists(ann), "no annotated image at %s", ann);
    unlink(ann);
    rmdir(dir);

    snprintf(cmd, sizeof cmd, "'%s' detect /nonexistent.jpg 2>/dev/null", bin);
    CHECK(run(cmd, NULL) == 1, "unreadable image must exit 1");
    snprintf(cmd, sizeof cmd, "'%s' detect --min-size -3 %s 2>/dev/null", bin, PHOTO);
    CHECK(run(cmd, NULL) == 2, "bad option value must exit 2");
    snprintf(cmd, sizeof cmd, "'%s' detect --cascade /nonexistent.xml %s 2>/dev/null", bin, PHOTO);
    CHECK(run(cmd, NULL) == 1, "missing cascade must exit 1");
    snprintf(cmd, sizeof cmd, "'%s' detect 2>/dev/null", bin);
    CHECK(run(cmd, NULL) == 2, "no image must exit 2");
    return test_finish("test_face_detect_cli");
}
