/* `ferc import`, `ferc predict --no-detect` and `ferc bench` through the binary ($FERC_BIN,
 * set by CTest; skips without it): a resnet18 weight file is imported with a new 6-class head
 * at 32x32; predict's JSON (parsed with cJSON) must carry per image the label, probabilities
 * summing to 1 and logits equal to the library's own classification of the same files (both
 * with the default test-time augmentation, flip);
 * usage errors exit 2 and failures exit 1 with a message. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/core.h"
#include "models/classify.h"
#include "testutil.h"

static const char *bin;

/* Runs `ferc ARGS` (stderr into the output when `merge`); returns the exit code, *out the text. */
static int run(const char *args, bool merge, char **out)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' %s %s", bin, args, merge ? "2>&1" : "2>/dev/null");
    return test_capture(cmd, out);
}

static void expect(const char *args, int want_rc, const char *const *needles)
{
    test_expect_ferc(bin, args, want_rc, needles);
}

#define IMG "tests/fixtures/parity/"

static void check_predict_json(const char *model)
{
    const char *imgs[] = {IMG "rgb_40x30.png", IMG "gray_50x50.png", IMG "gray_32x32.png"};
    char args[1024], *out;
    snprintf(args, sizeof args, "predict --model %s --no-detect --json --batch 2 %s %s %s", model, imgs[0], imgs[1], imgs[2]);
    int rc = run(args, false, &out);
    CHECK(rc == 0, "ferc %s: exit %d", args, rc);
    cJSON *j = out ? cJSON_Parse(out) : NULL;
    CHECK(cJSON_IsArray(j) && cJSON_GetArraySize(j) == 3, "predict JSON is not a list of 3:\n%s", out ? out : "");

    classifier *c = NULL;
    CHECK_OK(classifier_load(&c, model));
    if (c) classifier_set_tta(c, CLASSIFY_TTA_FLIP); /* predict's default */
    image im[3] = {{0}};
    float logits[3 * 6], probs[3 * 6];
    for (int i = 0; i < 3; i++) CHECK_OK(image_load(&im[i], imgs[i], IMAGE_MODE_ANY, 1));
    if (c) CHECK_OK(classifier_run_images(c, im, 3, logits, probs));
    for (int i = 0; i < 3 && c && cJSON_IsArray(j); i++) {
        const cJSON *e = cJSON_GetArrayItem(j, i);
        const cJSON *path = cJSON_GetObjectItem(e, "image"), *label = cJSON_GetObjectItem(e, "label");
        const cJSON *pr = cJSON_GetObjectItem(e, "probabilities"), *lg = cJSON_GetObjectItem(e, "logits");
        CHECK(cJSON_IsString(path) && !strcmp(path->valuestring, imgs[i]), "entry %d: image", i);
        CHECK(cJSON_IsArray(lg) && cJSON_GetArraySize(lg) == 6 && cJSON_IsObject(pr), "entry %d: fields", i);
        if (!cJSON_IsArray(lg) || cJSON_GetArraySize(lg) != 6 || !cJSON_IsObject(pr)) continue;
        int best = 0;
        double sum = 0, maxdiff = 0;
        for (int k = 0; k < 6; k++) {
            float l = (float)cJSON_GetArrayItem(lg, k)->valuedouble;
            maxdiff = fmax(maxdiff, fabs((double)l - logits[i * 6 + k]));
            if (logits[i * 6 + k] > logits[i * 6 + best]) best = k;
            const cJSON *p = cJSON_GetObjectItem(pr, classifier_class_name(c, k));
            CHECK(cJSON_IsNumber(p) && fabs(p->valuedouble - probs[i * 6 + k]) < 1e-7, "entry %d: p(%s)", i,
                  classifier_class_name(c, k));
            if (cJSON_IsNumber(p)) sum += p->valuedouble;
        }
        /* %.9g round-trips a float exactly; what remains is oneDNN's summation order, which
         * depends on the batch size (--batch 2 here, 3 in the library call). */
        CHECK(maxdiff <= 1e-5, "entry %d: logits differ from the library's by %g", i, maxdiff);
        CHECK(fabs(sum - 1) < 1e-5, "entry %d: probabilities sum to %.9g", i, sum);
        CHECK(cJSON_IsString(label) && !strcmp(label->valuestring, classifier_class_name(c, best)), "entry %d: label", i);
    }
    for (int i = 0; i < 3; i++) image_free(&im[i]);
    classifier_destroy(c);
    cJSON_Delete(j);
    free(out);
}

int main(void)
{
    bin = getenv("FERC_BIN");
    if (!bin || access(bin, X_OK)) return test_skip("FERC_BIN is not set (run through ctest)");
    char dir[] = "/tmp/ferc_importcli_XXXXXX";
    if (!mkdtemp(dir)) return test_skip("no temporary directory");
    char src[128], model[128], args[1024];
    snprintf(src, sizeof src, "%s/resnet18-src.safetensors", dir);
    snprintf(model, sizeof model, "%s/fer.safetensors", dir);
    nn_graph *g = NULL;
    CHECK_OK(models_build(&g, "resnet18", 1000, 11));
    models_meta m;
    models_meta_init(&m, "resnet18", 1000);
    CHECK_OK(models_save(src, g, &m, ST_F32));
    models_meta_free(&m);
    nn_graph_destroy(g);

    expect("import --help", 0, (const char *[]){"--keep-head", "--classes", "--strip-prefix", "densenet161", NULL});
    snprintf(args, sizeof args, "import --arch resnet18 --weights %s --out %s", src, model);
    expect(args, 2, (const char *[]){"--keep-head or --classes", NULL});
    snprintf(args, sizeof args, "import --arch resnet19 --weights %s --keep-head --out %s", src, model);
    expect(args, 2, (const char *[]){"resnet19", NULL});
    snprintf(args, sizeof args, "import --arch resnet34 --weights %s --keep-head --out %s", src, model);
    expect(args, 1, (const char *[]){"missing", "layer1.2.conv1.weight", NULL});
    CHECK(access(model, F_OK) != 0, "a failed import left %s", model);
    snprintf(args, sizeof args,
             "import --arch resnet18 --weights %s --classes Angry,Fear,Happy,Neutral,Sad,Surprise --img-size 32 --out %s",
             src, model);
    expect(args, 0, (const char *[]){"new fc for 6 classes", "1000-output head was dropped", "3x32x32", NULL});

    check_predict_json(model);
    snprintf(args, sizeof args, "predict --model %s --no-detect %s", model, IMG "gray_50x50.png");
    expect(args, 0, (const char *[]){IMG "gray_50x50.png: ", "%", NULL});
    snprintf(args, sizeof args, "predict --model %s %s", model, IMG "gray_50x50.png");
    expect(args, 0, (const char *[]){"no face found", NULL}); /* a flat gray square has no face */
    snprintf(args, sizeof args, "predict --model %s --no-detect /nonexistent.png", model);
    expect(args, 1, (const char *[]){"nonexistent.png", NULL});

    expect("bench --arch resnet18 --img-size 32 --batch 2 --steps 1 --warmup 0 --json", 0,
           (const char *[]){"\"images_per_s\"", "\"peak_rss_mib\"", "\"mode\": \"train\"", NULL});
    expect("bench --arch resnet18 --mode fly", 2, (const char *[]){"--mode", NULL});

    unlink(src);
    unlink(model);
    rmdir(dir);
    return test_finish("test_import_cli");
}
