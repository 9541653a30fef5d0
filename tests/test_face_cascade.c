/* Cascade files: every cascade shipped by opencv-data (haarcascades/ and lbpcascades/, old and
 * new formats, stumps and trees, tilted features, LBP) loads with the expected shape, and
 * broken files fail with clear errors instead of crashing. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#include "face/cascade.h"
#include "testutil.h"

static int load_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".xml")) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        face_cascade *fc;
        CHECK_OK(face_cascade_load(&fc, path));
        if (!fc) continue;
        face_cascade_info in;
        face_cascade_get_info(fc, &in);
        printf("  %-45s %s %2dx%-2d stages %2d trees %4d nodes %4d features %4d%s%s\n", e->d_name,
               in.kind == FACE_FEATURE_LBP ? "LBP " : "Haar", in.window_w, in.window_h, in.stages, in.trees, in.nodes,
               in.features, in.has_tilted ? " tilted" : "", in.old_format ? " (old format)" : "");
        CHECK(in.stages > 0 && in.trees >= in.stages && in.nodes >= in.trees && in.features > 0, "%s", e->d_name);
        face_cascade_destroy(fc);
        n++;
    }
    closedir(d);
    return n;
}

/* Writes `text` to a temporary file and expects face_cascade_load to fail with `want`. */
static void expect_fail(const char *what, const char *text, int want)
{
    char path[] = "/tmp/ferc_cascade_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    if (fd < 0) return;
    size_t len = strlen(text);
    CHECK(write(fd, text, len) == (ssize_t)len, "write");
    close(fd);
    face_cascade *fc = (face_cascade *)1;
    int rc = face_cascade_load(&fc, path);
    CHECK(rc == want, "%s: got %d (%s), want %d", what, rc, ferc_last_error(), want);
    CHECK(fc == NULL, "%s: handle set on failure", what);
    CHECK(strstr(ferc_last_error(), path) != NULL, "%s: message does not name the file: %s", what, ferc_last_error());
    printf("  %-34s -> %s\n", what, ferc_last_error());
    unlink(path);
}

#define NEW_HEAD                                                                                   \
    "<?xml version=\"1.0\"?>\n<opencv_storage><cascade><stageType>BOOST</stageType>"              \
    "<featureType>HAAR</featureType><height>4</height><width>4</width>"                            \
    "<featureParams><maxCatCount>0</maxCatCount></featureParams>"

static void test_errors(void)
{
    face_cascade *fc = (face_cascade *)1;
    int rc = face_cascade_load(&fc, "/nonexistent/cascade.xml");
    CHECK(rc == FERC_ERR_IO && fc == NULL, "missing file: %d", rc);
    CHECK(strstr(ferc_last_error(), "/nonexistent/cascade.xml") != NULL, "message: %s", ferc_last_error());
    printf("  %-34s -> %s\n", "missing file", ferc_last_error());

    expect_fail("truncated XML", "<?xml version=\"1.0\"?>\n<opencv_storage><cascade><stageType>BOO", FERC_ERR_FORMAT);
    expect_fail("empty file", "", FERC_ERR_FORMAT);
    expect_fail("XML but not a cascade", "<?xml version=\"1.0\"?><opencv_storage><x>1</x></opencv_storage>",
                FERC_ERR_FORMAT);
    expect_fail("HOG cascade",
                "<?xml version=\"1.0\"?><opencv_storage><cascade><stageType>BOOST</stageType>"
                "<featureType>HOG</featureType></cascade></opencv_storage>",
                FERC_ERR_UNSUPPORTED);
    /* a stump that points at feature 5 of 1 */
    expect_fail("feature index out of range",
                NEW_HEAD "<stages><_><stageThreshold>0</stageThreshold><weakClassifiers><_>"
                         "<internalNodes>0 -1 5 0.5</internalNodes><leafValues>1 -1</leafValues></_>"
                         "</weakClassifiers></_></stages><features><_><rects><_>0 0 2 2 -1.</_>"
                         "<_>0 0 1 1 4.</_></rects></_></features></cascade></opencv_storage>",
                FERC_ERR_FORMAT);
    expect_fail("rectangle outside the window",
                NEW_HEAD "<stages><_><stageThreshold>0</stageThreshold><weakClassifiers><_>"
                         "<internalNodes>0 -1 0 0.5</internalNodes><leafValues>1 -1</leafValues></_>"
                         "</weakClassifiers></_></stages><features><_><rects><_>3 3 2 2 -1.</_>"
                         "<_>0 0 1 1 4.</_></rects></_></features></cascade></opencv_storage>",
                FERC_ERR_FORMAT);
    expect_fail("garbage number",
                NEW_HEAD "<stages><_><stageThreshold>abc</stageThreshold></_></stages></cascade></opencv_storage>",
                FERC_ERR_FORMAT);
    expect_fail("leaf count mismatch",
                NEW_HEAD "<stages><_><stageThreshold>0</stageThreshold><weakClassifiers><_>"
                         "<internalNodes>0 -1 0 0.5</internalNodes><leafValues>1</leafValues></_>"
                         "</weakClassifiers></_></stages><features><_><rects><_>0 0 2 2 -1.</_>"
                         "<_>0 0 1 1 4.</_></rects></_></features></cascade></opencv_storage>",
                FERC_ERR_FORMAT);

    /* the minimal valid cascade of the same shape loads */
    char path[] = "/tmp/ferc_cascade_ok_XXXXXX";
    int fd = mkstemp(path);
    const char *ok = NEW_HEAD "<stages><_><stageThreshold>0</stageThreshold><weakClassifiers><_>"
                              "<internalNodes>0 -1 0 0.5</internalNodes><leafValues>1 -1</leafValues></_>"
                              "</weakClassifiers></_></stages><features><_><rects><_>0 0 2 2 -1.</_>"
                              "<_>0 0 1 1 4.</_></rects></_></features></cascade></opencv_storage>";
    CHECK(write(fd, ok, strlen(ok)) == (ssize_t)strlen(ok), "write");
    close(fd);
    CHECK_OK(face_cascade_load(&fc, path));
    face_cascade_destroy(fc);
    unlink(path);
}

int main(void)
{
    if (!file_exists(FACE_CASCADE_DEFAULT_PATH)) return test_skip("opencv-data is not installed");
    face_cascade *fc;
    CHECK_OK(face_cascade_load(&fc, NULL));
    if (fc) {
        face_cascade_info in;
        face_cascade_get_info(fc, &in);
        /* haarcascade_frontalface_default: 24x24, 25 stages of stumps, 2913 weak classifiers */
        CHECK(in.window_w == 24 && in.window_h == 24 && in.stages == 25 && in.trees == 2913 &&
                  in.max_nodes_per_tree == 1 && !in.has_tilted && in.kind == FACE_FEATURE_HAAR,
              "default cascade: %dx%d %d stages %d trees", in.window_w, in.window_h, in.stages, in.trees);
        face_cascade_destroy(fc);
    }
    int n = load_dir("/usr/share/opencv4/haarcascades");
    n += load_dir("/usr/share/opencv4/lbpcascades");
    printf("%d cascades loaded\n", n);
    CHECK(n >= 22, "only %d cascades found in opencv-data", n);
    test_errors();
    return test_finish("test_face_cascade");
}
