/* ferc predict with face detection: JSON schema on the committed public-domain photo with a
 * resnet18 model made here (fixed random weights, 6 classes, 48x48): the detector's box, six
 * probabilities summing to 1, the label at their argmax; a blank image (no face: an empty list,
 * exit 0); a missing image (named on stderr, exit 1, the other image still printed); the text
 * output with --top; --annotate as a file and as a folder; usage errors; --no-detect unchanged. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "ferc.h"
#include "core/core.h"
#include "image/image.h"
#include "models/models.h"
#include "testutil.h"

#define PHOTO "tests/fixtures/faces/Tom_Cruise_avp_2014_4.jpg"
static char dir[256], model[300], blank[300], errfile[300];
static const char *bin;

/* Runs "<bin> predict <args> 2>errfile", capturing stdout into *out (caller frees); returns the
 * exit status. */
__attribute__((format(printf, 2, 3))) static int predict(char **out, const char *fmt, ...)
{
    char args[1536], cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "%s predict %s 2>%s", bin, args, errfile);
    return test_capture(cmd, out);
}

/* The stderr of the last run (caller frees). */
static char *last_stderr(void)
{
    uint8_t *d = NULL;
    size_t n = 0;
    if (file_read_all(errfile, &d, &n)) return strdup("");
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, d, n);
        s[n] = 0;
    }
    free(d);
    return s;
}

static void make_blank(void)
{
    image img;
    snprintf(blank, sizeof blank, "%s/blank.png", dir);
    CHECK_OK(image_alloc(&img, 64, 48, 3));
    if (img.data) {
        memset(img.data, 128, img.stride * (size_t)img.height);
        CHECK_OK(image_save(&img, blank, 90));
    }
    image_free(&img);
}

/* The face's box on the photo: BlazeFace's (the default detector), turned into Haar's framing
 * (face/recognize.h), or, with --detector haar, OpenCV's detectMultiScale defaults. */
static const int cnn_box[4] = {39, 152, 525, 525}, haar_box[4] = {49, 206, 457, 457};
static int haar_run; /* the JSON being checked comes from --detector haar */

/* Checks one face object of the JSON output. */
static void check_face(const cJSON *f)
{
    const cJSON *box = cJSON_GetObjectItemCaseSensitive(f, "box"), *lab = cJSON_GetObjectItemCaseSensitive(f, "label"),
                *conf = cJSON_GetObjectItemCaseSensitive(f, "confidence"),
                *pr = cJSON_GetObjectItemCaseSensitive(f, "probabilities"), *lg = cJSON_GetObjectItemCaseSensitive(f, "logits");
    const int *want_box = haar_run ? haar_box : cnn_box;
    CHECK(cJSON_IsArray(box) && cJSON_GetArraySize(box) == 4, "box");
    for (int q = 0; q < 4 && cJSON_IsArray(box); q++) {
        const cJSON *v = cJSON_GetArrayItem(box, q);
        /* Haar's boxes are exact (OpenCV parity); the CNN's within 2 pixels (float, and libm) */
        const int tol = haar_run ? 0 : 2, got = cJSON_IsNumber(v) ? v->valueint : -1000;
        CHECK(abs(got - want_box[q]) <= tol, "box[%d] = %d, want %d", q, got, want_box[q]);
    }
    const cJSON *ds = cJSON_GetObjectItemCaseSensitive(f, "detection_score"), *eyes = cJSON_GetObjectItemCaseSensitive(f, "eyes");
    if (haar_run) {
        CHECK(!ds && !eyes, "Haar gives no detection score and no eyes");
    } else {
        CHECK(cJSON_IsNumber(ds) && ds->valuedouble >= 0.55 && ds->valuedouble <= 1, "detection_score");
        const cJSON *re = cJSON_GetObjectItemCaseSensitive(eyes, "right"), *le = cJSON_GetObjectItemCaseSensitive(eyes, "left");
        CHECK(cJSON_GetArraySize(re) == 2 && cJSON_GetArraySize(le) == 2 &&
                  cJSON_GetArrayItem(re, 0)->valuedouble < cJSON_GetArrayItem(le, 0)->valuedouble,
              "eyes: the subject's right eye left of the left one");
    }
    CHECK(cJSON_IsObject(pr) && cJSON_GetArraySize(pr) == 6, "6 probabilities");
    CHECK(cJSON_IsArray(lg) && cJSON_GetArraySize(lg) == 6, "6 logits");
    double p[6] = {0}, l[6] = {0}, sum = 0;
    int best = 0;
    for (int i = 0; i < 6; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(pr, test_fer_classes[i]), *w = cJSON_GetArrayItem(lg, i);
        CHECK(cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= 1, "probabilities[%s]", test_fer_classes[i]);
        CHECK(cJSON_IsNumber(w), "logits[%d]", i);
        if (cJSON_IsNumber(v)) p[i] = v->valuedouble;
        if (cJSON_IsNumber(w)) l[i] = w->valuedouble;
        sum += p[i];
        if (p[i] > p[best]) best = i;
    }
    CHECK(fabs(sum - 1) < 1e-5, "probabilities sum to %.9g", sum);
    CHECK(cJSON_IsString(lab) && !strcmp(lab->valuestring, test_fer_classes[best]), "label %s is the argmax %s",
          cJSON_IsString(lab) ? lab->valuestring : "?", test_fer_classes[best]);
    CHECK(cJSON_IsNumber(conf) && fabs(conf->valuedouble - p[best]) < 1e-9, "confidence is the label's probability");
    /* the probabilities are the softmax of the logits */
    double mx = l[0], z = 0;
    for (int i = 1; i < 6; i++) mx = l[i] > mx ? l[i] : mx;
    for (int i = 0; i < 6; i++) z += exp(l[i] - mx);
    for (int i = 0; i < 6; i++) CHECK(fabs(exp(l[i] - mx) / z - p[i]) < 1e-5, "softmax of the logits [%d]", i);
}

/* Checks one image object; returns its number of faces (-1 when malformed). */
static int check_image(const cJSON *o, const char *path, int w, int h)
{
    const cJSON *img = cJSON_GetObjectItemCaseSensitive(o, "image"), *jw = cJSON_GetObjectItemCaseSensitive(o, "width"),
                *jh = cJSON_GetObjectItemCaseSensitive(o, "height"), *fs = cJSON_GetObjectItemCaseSensitive(o, "faces");
    CHECK(cJSON_IsString(img) && !strcmp(img->valuestring, path), "image is %s", path);
    CHECK(cJSON_IsNumber(jw) && jw->valueint == w && cJSON_IsNumber(jh) && jh->valueint == h, "%s: size %dx%d", path, w, h);
    CHECK(cJSON_IsArray(fs), "%s: faces is a list", path);
    if (!cJSON_IsArray(fs)) return -1;
    const cJSON *f;
    cJSON_ArrayForEach(f, fs) check_face(f);
    return cJSON_GetArraySize(fs);
}

static void check_decodes(const char *path, int w, int h)
{
    image img = {0};
    CHECK_OK(image_load(&img, path, IMAGE_MODE_ANY, 0));
    CHECK(img.width == w && img.height == h, "%s is %dx%d, want %dx%d", path, img.width, img.height, w, h);
    image_free(&img);
}

int main(void)
{
    bin = getenv("FERC_BIN");
    if (!bin) return test_skip("FERC_BIN is not set (run through ctest)");
    snprintf(dir, sizeof dir, "/tmp/ferc_test_predict_%d", (int)getpid());
    snprintf(errfile, sizeof errfile, "%s/stderr.txt", dir);
    CHECK_OK(file_mkdirs(dir));
    snprintf(model, sizeof model, "%s/r18_48.safetensors", dir);
    test_make_model(model, "resnet18", 48, 7);
    make_blank();
    char *out = NULL, *err = NULL, path[400];
    int rc;

    /* JSON: the photo (one face) and the blank image (none), annotated into a folder */
    rc = predict(&out, "--model %s --json " PHOTO " %s --annotate %s/ann", model, blank, dir);
    CHECK(rc == 0, "exit status %d", rc);
    cJSON *j = out ? cJSON_Parse(out) : NULL;
    CHECK(cJSON_IsArray(j) && cJSON_GetArraySize(j) == 2, "a JSON list of 2 images:\n%.500s", out ? out : "");
    if (cJSON_IsArray(j) && cJSON_GetArraySize(j) == 2) {
        CHECK(check_image(cJSON_GetArrayItem(j, 0), PHOTO, 565, 800) == 1, "one face on the photo");
        CHECK(check_image(cJSON_GetArrayItem(j, 1), blank, 64, 48) == 0, "no face on the blank image");
    }
    cJSON_Delete(j);
    free(out);
    snprintf(path, sizeof path, "%s/ann/Tom_Cruise_avp_2014_4.jpg", dir);
    check_decodes(path, 565, 800);
    snprintf(path, sizeof path, "%s/ann/blank.png", dir);
    check_decodes(path, 64, 48);

    /* a missing image: named on stderr, exit 1, the photo still printed */
    rc = predict(&out, "--model %s --json %s/missing.jpg " PHOTO, model, dir);
    err = last_stderr();
    printf("missing image -> %d: %s", rc, err ? err : "");
    CHECK(rc == 1, "exit status %d", rc);
    CHECK(err && strstr(err, "missing.jpg"), "the error names the missing image");
    j = out ? cJSON_Parse(out) : NULL;
    CHECK(cJSON_IsArray(j) && cJSON_GetArraySize(j) == 1, "the photo is still printed:\n%.300s", out ? out : "");
    if (cJSON_IsArray(j) && cJSON_GetArraySize(j) == 1) CHECK(check_image(cJSON_GetArrayItem(j, 0), PHOTO, 565, 800) == 1);
    cJSON_Delete(j);
    free(out);
    free(err);

    /* text: size, box, label with confidence, top K; annotated into one file */
    rc = predict(&out, "--model %s --detector haar --top 2 " PHOTO " --annotate %s/one.png", model, dir);
    printf("text:\n%s", out ? out : "");
    CHECK(rc == 0, "exit status %d", rc);
    CHECK(out && strstr(out, "565x800, 1 face\n") && strstr(out, "x 49 y 206 w 457 h 457") && strstr(out, "top 2: "),
          "text output");
    free(out);
    snprintf(path, sizeof path, "%s/one.png", dir);
    check_decodes(path, 565, 800);
    /* --detector haar in JSON: OpenCV's box, no detection score */
    rc = predict(&out, "--model %s --detector haar --json " PHOTO, model);
    CHECK(rc == 0, "exit status %d", rc);
    j = out ? cJSON_Parse(out) : NULL;
    haar_run = 1;
    CHECK(cJSON_IsArray(j) && cJSON_GetArraySize(j) == 1 && check_image(cJSON_GetArrayItem(j, 0), PHOTO, 565, 800) == 1,
          "--detector haar --json");
    haar_run = 0;
    cJSON_Delete(j);
    free(out);
    rc = predict(&out, "--model %s --detector fancy " PHOTO, model);
    CHECK(rc == 2, "an unknown detector is a usage error (%d)", rc);
    free(out);

    rc = predict(&out, "--model %s %s", model, blank);
    CHECK(rc == 0 && out && strstr(out, "no face found"), "blank image in text: %d %s", rc, out ? out : "");
    free(out);

    /* without --model: the default model, which FERC_MODEL names */
    setenv("FERC_MODEL", model, 1);
    rc = predict(&out, "--json " PHOTO);
    CHECK(rc == 0 && out && strstr(out, "\"label\""), "FERC_MODEL is the default: %d %s", rc, out ? out : "");
    free(out);
    setenv("FERC_MODEL", "/nonexistent/default.safetensors", 1);
    rc = predict(&out, PHOTO);
    err = last_stderr();
    CHECK(rc == 1 && err && strstr(err, "/nonexistent/default.safetensors"), "a missing default model is named: %d %s", rc,
          err ? err : "");
    free(out);
    free(err);
    unsetenv("FERC_MODEL");

    /* --tta: none gives other probabilities than the default flip; an unknown mode is refused */
    char *o_flip = NULL, *o_none = NULL, *o_ten = NULL;
    rc = predict(&o_flip, "--model %s --json " PHOTO, model);
    CHECK(rc == 0, "default tta: %d", rc);
    rc = predict(&o_none, "--model %s --tta none --json " PHOTO, model);
    CHECK(rc == 0, "--tta none: %d", rc);
    rc = predict(&o_ten, "--model %s --tta tencrop --json " PHOTO, model);
    CHECK(rc == 0, "--tta tencrop: %d", rc);
    cJSON *jf = o_flip ? cJSON_Parse(o_flip) : NULL, *jn = o_none ? cJSON_Parse(o_none) : NULL,
          *jt = o_ten ? cJSON_Parse(o_ten) : NULL;
    const cJSON *fsf = cJSON_GetObjectItem(cJSON_GetArrayItem(jf, 0), "faces"),
                *fsn = cJSON_GetObjectItem(cJSON_GetArrayItem(jn, 0), "faces"),
                *fst = cJSON_GetObjectItem(cJSON_GetArrayItem(jt, 0), "faces");
    CHECK(cJSON_GetArraySize(fsf) == 1 && cJSON_GetArraySize(fsn) == 1 && cJSON_GetArraySize(fst) == 1, "one face each");
    if (cJSON_GetArraySize(fsf) == 1 && cJSON_GetArraySize(fsn) == 1 && cJSON_GetArraySize(fst) == 1) {
        check_face(cJSON_GetArrayItem(fsn, 0));
        check_face(cJSON_GetArrayItem(fst, 0));
        double a = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetArrayItem(fsf, 0), "probabilities"), "Angry")->valuedouble,
               b = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetArrayItem(fsn, 0), "probabilities"), "Angry")->valuedouble,
               c = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetArrayItem(fst, 0), "probabilities"), "Angry")->valuedouble;
        CHECK(fabs(a - b) > 1e-6 && fabs(a - c) > 1e-6, "tta changes the probabilities: flip %.9g none %.9g tencrop %.9g", a, b, c);
    }
    cJSON_Delete(jf), cJSON_Delete(jn), cJSON_Delete(jt);
    free(o_flip), free(o_none), free(o_ten);
    rc = predict(&out, "--model %s --tta sideways " PHOTO, model);
    err = last_stderr();
    CHECK(rc == 2 && err && strstr(err, "sideways"), "--tta sideways is refused: %d %s", rc, err ? err : "");
    free(out);
    free(err);

    /* usage errors */
    rc = predict(&out, "--model %s --no-detect --annotate %s/x.png %s", model, dir, blank);
    CHECK(rc == 2, "--annotate with --no-detect is refused: %d", rc);
    free(out);
    rc = predict(&out, "--model %s --top 0 %s", model, blank);
    CHECK(rc == 2, "--top 0 is refused: %d", rc);
    free(out);
    rc = predict(&out, "--model %s/none.safetensors %s", dir, blank);
    err = last_stderr();
    CHECK(rc == 1 && err && strstr(err, "none.safetensors"), "a missing model is named: %d %s", rc, err ? err : "");
    free(out);
    free(err);

    /* --no-detect: the whole image, the old schema */
    rc = predict(&out, "--model %s --no-detect --json %s", model, blank);
    CHECK(rc == 0, "--no-detect exit status %d", rc);
    j = out ? cJSON_Parse(out) : NULL;
    CHECK(cJSON_IsArray(j) && cJSON_GetArraySize(j) == 1, "--no-detect JSON");
    if (cJSON_IsArray(j) && cJSON_GetArraySize(j) == 1) {
        const cJSON *o = cJSON_GetArrayItem(j, 0);
        CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(o, "label")) && !cJSON_GetObjectItemCaseSensitive(o, "faces"),
              "--no-detect: a label per image, no faces");
    }
    cJSON_Delete(j);
    free(out);

    if (!test_failures && !getenv("FERC_TEST_KEEP")) { /* FERC_TEST_KEEP: keep the model and images */
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
    }
    return test_finish("test_predict_cli");
}
