/* Face detection on the committed public-domain photo (tests/fixtures/faces/
 * Tom_Cruise_avp_2014_4.jpg) against OpenCV's own detectMultiScale for every configuration of
 * the fixture (Haar stumps, Haar trees, tilted features, LBP, the old file format, grouped and
 * raw hits), plus unit checks of grouping, resize and argument errors. Needs no data set. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "face_parity.h"

#define PHOTO "tests/fixtures/faces/Tom_Cruise_avp_2014_4.jpg"
#define PHOTO_KEY "faces/dlib/Tom_Cruise_avp_2014_4.jpg"

static void test_photo(const cJSON *fix)
{
    image gray;
    CHECK_OK(parity_load_gray(PHOTO, &gray));
    if (!gray.data) return;
    const cJSON *entry = NULL, *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(fix, "images"))
        if (!strcmp(cJSON_GetObjectItem(e, "path")->valuestring, PHOTO_KEY)) entry = e;
    CHECK(entry != NULL, "fixture has no entry for %s", PHOTO_KEY);
    if (!entry) {
        image_free(&gray);
        return;
    }
    CHECK(cJSON_GetObjectItem(entry, "width")->valueint == gray.width, "width differs from OpenCV's");
    CHECK(cJSON_GetObjectItem(entry, "height")->valueint == gray.height, "height differs from OpenCV's");
    const cJSON *cfg;
    cJSON_ArrayForEach(cfg, cJSON_GetObjectItem(fix, "configs")) {
        const char *name = cJSON_GetObjectItem(cfg, "name")->valuestring;
        face_cascade *fc;
        CHECK_OK(face_cascade_load(&fc, cJSON_GetObjectItem(cfg, "cascade")->valuestring));
        if (!fc) continue;
        parity_tally t = {0};
        double t0 = time_now();
        CHECK_OK(parity_run(fc, cfg, &gray, cJSON_GetObjectItem(cJSON_GetObjectItem(entry, "boxes"), name), &t,
                            NULL, NULL));
        char label[96];
        snprintf(label, sizeof label, "%s (%.0f ms)", name, 1e3 * (time_now() - t0));
        parity_report(label, &t);
        face_cascade_destroy(fc);
    }
    image_free(&gray);
}

static void test_grouping(void)
{
    /* three similar boxes and one far away: with threshold 1 the far one (1 hit) is dropped */
    face_box r[] = {{10, 10, 40, 40}, {12, 11, 40, 40}, {11, 9, 42, 42}, {200, 200, 30, 30}};
    int n = 4;
    CHECK_OK(face_group_rectangles(r, &n, 1, 0.2));
    CHECK(n == 1, "got %d groups", n);
    /* averages rounded as float: x (10+12+11)/3 = 11, y 10, w 40.67 -> 41 */
    CHECK(r[0].x == 11 && r[0].y == 10 && r[0].w == 41 && r[0].h == 41, "got %d %d %d %d", r[0].x, r[0].y,
          r[0].w, r[0].h);
    face_box q[] = {{0, 0, 10, 10}, {50, 50, 10, 10}};
    n = 2;
    CHECK_OK(face_group_rectangles(q, &n, 0, 0.2));
    CHECK(n == 2, "threshold 0 must keep raw boxes");
}

static void test_resize(void)
{
    /* exact halving takes OpenCV's rounded 2x2 mean */
    uint8_t src[4 * 4], dst[2 * 2];
    for (int i = 0; i < 16; i++) src[i] = (uint8_t)(i * 16);
    CHECK_OK(face_resize_gray(src, 4, 4, 4, dst, 2, 2, 2));
    CHECK(dst[0] == (0 + 16 + 64 + 80 + 2) / 4, "2x2 mean %d", dst[0]);
    /* identity copies */
    uint8_t same[16];
    CHECK_OK(face_resize_gray(src, 4, 4, 4, same, 4, 4, 4));
    CHECK(!memcmp(src, same, 16), "same-size resize must copy");
    /* a constant image stays constant at any scale */
    uint8_t flat[37 * 23], out[20 * 11];
    memset(flat, 77, sizeof flat);
    CHECK_OK(face_resize_gray(flat, 37, 23, 37, out, 20, 11, 20));
    int ok = 1;
    for (int i = 0; i < 20 * 11; i++) ok &= out[i] == 77;
    CHECK(ok, "constant image changed by resize");
}

static void test_errors(void)
{
    face_cascade *fc;
    CHECK_OK(face_cascade_load(&fc, NULL));
    if (!fc) return;
    uint8_t px[64 * 64] = {0};
    face_detect_params p;
    face_detect_params_default(&p);
    face_box *b;
    int n;
    p.scale_factor = 1.0;
    CHECK(face_detect(fc, px, 64, 64, 64, &p, &b, &n) == FERC_ERR_INVALID, "scale factor 1 accepted");
    face_detect_params_default(&p);
    CHECK(face_detect(fc, px, 0, 64, 64, &p, &b, &n) == FERC_ERR_INVALID, "empty image accepted");
    /* a flat image has no variance: nothing found, no error */
    CHECK_OK(face_detect(fc, px, 64, 64, 64, &p, &b, &n));
    CHECK(n == 0 && b == NULL, "faces in a black image");
    /* an image smaller than the window: no scales, no boxes */
    CHECK_OK(face_detect(fc, px, 20, 20, 20, &p, &b, &n));
    CHECK(n == 0, "faces in a 20x20 image");
    face_cascade_destroy(fc);
}

int main(void)
{
    if (!file_exists(FACE_CASCADE_DEFAULT_PATH)) return test_skip("opencv-data is not installed");
    cJSON *fix = parity_load_fixture();
    CHECK(fix != NULL, "cannot read %s", PARITY_FIXTURE);
    if (fix) test_photo(fix);
    cJSON_Delete(fix);
    test_grouping();
    test_resize();
    test_errors();
    return test_finish("test_face_detect");
}
