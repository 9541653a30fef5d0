/* ferc eval on a model trained here (ferc train, 3 generated classes at 16x16, a tenth of each
 * folder drawn from another class so that the model makes mistakes):
 *   - the confusion matrix equals the one counted from `ferc predict --no-detect` on the same
 *     images (without tta, and with flip, eval's default), and accuracy, balanced accuracy, per-class
 *     support and recall follow from it; top-2 >= accuracy; fractions in [0, 1]
 *   - a split manifest with --root evaluates exactly its --split rows
 *   - --out writes confusion.png and eval.json
 *   - with a manifest, duplicates_in_train counts the evaluated rows with a byte-identical copy
 *     among the train rows (across labels too, not val-val copies) and accuracy_unique equals
 *     predict's accuracy on the others; a folder gets no such figures
 *   - a class the model does not know, a missing folder, a bad --tta: clear errors */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/core.h"
#include "ferc.h"
#include "image/image.h"
#include "testutil.h"

#define NCLS 3
#define PER_CLASS 30
static const char *classes[NCLS] = {"Bright", "Dark", "Top"}; /* the model's (sorted) order */
static char root[256];
static const char *bin;

/* Image i of folder c: drawn from class c, except every tenth from class (c + 1) % 3. */
static void make_data(const char *sub, const char *const *names, int ncls)
{
    rng r;
    rng_seed(&r, 21);
    char path[512];
    for (int c = 0; c < ncls; c++) {
        snprintf(path, sizeof path, "%s/%s/%s", root, sub, names[c]);
        file_mkdirs(path);
        for (int i = 0; i < PER_CLASS; i++) {
            int kind = i % 10 == 9 ? (c + 1) % 3 : c % 3;
            image img;
            image_alloc(&img, 16, 16, 1);
            for (int y = 0; y < 16; y++)
                for (int x = 0; x < 16; x++) {
                    int base = kind == 0 ? 200 : kind == 1 ? 50 : (y < 8 ? 220 : 30);
                    img.data[y * img.stride + x] = (uint8_t)(base + (int)rng_below(&r, 60) - 30);
                }
            snprintf(path, sizeof path, "%s/%s/%s/%02d.png", root, sub, names[c], i);
            image_save(&img, path, 90);
            image_free(&img);
        }
    }
}

static cJSON *run_json(const char *args, int *rc)
{
    char cmd[2048], *out = NULL;
    snprintf(cmd, sizeof cmd, "'%s' %s 2>/dev/null", bin, args);
    *rc = test_capture(cmd, &out);
    cJSON *j = out ? cJSON_Parse(out) : NULL;
    if (!j) fprintf(stderr, "not JSON from %s:\n%.400s\n", cmd, out ? out : "(nothing)");
    free(out);
    return j;
}

static int class_of(const char *name)
{
    for (int c = 0; c < NCLS; c++)
        if (name && !strcmp(name, classes[c])) return c;
    return -1;
}

/* The class whose folder a path names ("/<Class>/"), or -1. */
static int class_of_path(const char *path)
{
    for (int c = 0; c < NCLS && path; c++) {
        char dir[64];
        snprintf(dir, sizeof dir, "/%s/", classes[c]);
        if (strstr(path, dir)) return c;
    }
    return -1;
}

/* The confusion matrix counted from `ferc predict --no-detect --json` on every image. */
static void predicted_confusion(const char *model, const char *tta, long conf[NCLS][NCLS])
{
    memset(conf, 0, sizeof(long) * NCLS * NCLS);
    char args[1024];
    snprintf(args, sizeof args, "predict --model %s --no-detect --tta %s --json %s/data/*/*.png", model, tta, root);
    int rc;
    cJSON *j = run_json(args, &rc);
    CHECK(rc == 0 && cJSON_GetArraySize(j) == NCLS * PER_CLASS, "predict: %d, %d results", rc, cJSON_GetArraySize(j));
    const cJSON *e;
    cJSON_ArrayForEach(e, j)
    {
        const char *path = cJSON_GetStringValue(cJSON_GetObjectItem(e, "image"));
        int p = class_of(cJSON_GetStringValue(cJSON_GetObjectItem(e, "label"))), t = class_of_path(path);
        CHECK(p >= 0 && t >= 0, "predict result for %s", path ? path : "?");
        if (p >= 0 && t >= 0) conf[t][p]++;
    }
    cJSON_Delete(j);
}

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItem(o, key);
    CHECK(cJSON_IsNumber(v), "%s is a number", key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* Checks eval's JSON against a confusion matrix counted independently. */
static void check_eval(const cJSON *j, long want[NCLS][NCLS], long n_want, const char *what)
{
    CHECK(j != NULL, "%s: JSON", what);
    if (!j) return;
    const cJSON *conf = cJSON_GetObjectItem(j, "confusion"), *pc = cJSON_GetObjectItem(j, "per_class");
    CHECK(cJSON_GetArraySize(conf) == NCLS && cJSON_GetArraySize(pc) == NCLS, "%s: 3x3 confusion, 3 classes", what);
    long n = 0, diag = 0, same = 0;
    double recall_sum = 0;
    for (int t = 0; t < NCLS && cJSON_GetArraySize(conf) == NCLS; t++) {
        const cJSON *row = cJSON_GetArrayItem(conf, t), *cls = cJSON_GetArrayItem(pc, t);
        long support = 0;
        for (int p = 0; p < NCLS; p++) {
            long v = (long)cJSON_GetArrayItem(row, p)->valuedouble;
            same += v == want[t][p];
            n += v, support += v;
            if (p == t) diag += v;
        }
        CHECK(!strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(cls, "class")), classes[t]), "%s: class %d name", what, t);
        CHECK(num(cls, "support") == support, "%s: support of %s", what, classes[t]);
        double rec = num(cls, "recall");
        CHECK(fabs(rec - (double)want[t][t] / support) < 1e-9, "%s: recall of %s %g", what, classes[t], rec);
        recall_sum += rec;
    }
    CHECK(same == NCLS * NCLS, "%s: the confusion matrix equals predict's (%ld of 9 cells)", what, same);
    CHECK(n == n_want, "%s: %ld images evaluated, want %ld", what, n, n_want);
    double acc = num(j, "accuracy"), bal = num(j, "balanced_accuracy"), f1 = num(j, "macro_f1"),
           top2 = num(j, "top2_accuracy");
    printf("%s: accuracy %.4f balanced %.4f macro F1 %.4f top-2 %.4f\n", what, acc, bal, f1, top2);
    CHECK(fabs(acc - (double)diag / n) < 1e-9, "%s: accuracy is the trace over n", what);
    CHECK(fabs(bal - recall_sum / NCLS) < 1e-9, "%s: balanced accuracy is the mean recall", what);
    CHECK(f1 >= 0 && f1 <= 1 && top2 >= acc && top2 <= 1, "%s: macro F1 %g, top-2 %g", what, f1, top2);
}

int main(void)
{
    bin = getenv("FERC_BIN");
    if (!bin) return test_skip("FERC_BIN is not set (run through ctest)");
    snprintf(root, sizeof root, "/tmp/ferc_test_eval_XXXXXX");
    if (!mkdtemp(root)) return test_skip("no temporary folder");
    make_data("data", classes, NCLS);
    CHECK(test_sh("'%s' train --data %s/data --arch resnet18 --img-size 16 --batch 8 --epochs 5 --lr 0.01 "
                  "--optimizer adam --augment 'normalize(cifar10)' --seed 3 --threads 1 --quiet --out %s/run >/dev/null",
                  bin, root, root) == 0,
          "ferc train");
    char model[300], args[1024];
    snprintf(model, sizeof model, "%s/run/best.safetensors", root);
    int rc;

    /* whole folder, without and with tta, against predict */
    long want[NCLS][NCLS];
    const char *ttas[2] = {"none", "flip"};
    for (int t = 0; t < 2; t++) {
        predicted_confusion(model, ttas[t], want);
        /* flip is eval's default: that run names no --tta */
        snprintf(args, sizeof args, "eval --model %s --data %s/data %s%s --threads 1 --json", model, root,
                 t == 0 ? "--tta " : "", t == 0 ? ttas[t] : "");
        cJSON *j = run_json(args, &rc);
        CHECK(rc == 0, "eval exit %d", rc);
        char what[32];
        snprintf(what, sizeof what, "eval --tta %s", ttas[t]);
        check_eval(j, want, NCLS * PER_CLASS, what);
        CHECK(!strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(j, "tta")) ? cJSON_GetStringValue(cJSON_GetObjectItem(j, "tta")) : "", ttas[t]),
              "tta recorded");
        if (t == 0) {
            double acc = num(j, "accuracy");
            CHECK(acc >= 0.6 && acc < 1, "a trained model that makes mistakes: accuracy %g", acc);
            const cJSON *w = cJSON_GetObjectItem(j, "most_confident_wrong"), *s = cJSON_GetObjectItem(j, "slowest");
            CHECK(cJSON_GetArraySize(w) >= 1 && cJSON_GetArraySize(s) == 10, "lists: %d wrong, %d slowest",
                  cJSON_GetArraySize(w), cJSON_GetArraySize(s));
        }
        cJSON_Delete(j);
    }

    /* a split manifest: only its val rows (the first 10 images of each class) */
    char path[512];
    snprintf(path, sizeof path, "%s/split.csv", root);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "split.csv");
    if (f) {
        fprintf(f, "path,label,split\n");
        for (int c = 0; c < NCLS; c++)
            for (int i = 0; i < PER_CLASS; i++) fprintf(f, "%s/%02d.png,%s,%s\n", classes[c], i, classes[c], i < 10 ? "val" : "train");
        fclose(f);
    }
    snprintf(args, sizeof args, "eval --model %s --data %s --root %s/data --threads 1 --json --out %s/evalout", model, path,
             root, root);
    cJSON *j = run_json(args, &rc);
    CHECK(rc == 0, "eval on a manifest: exit %d", rc);
    long total = 0;
    const cJSON *pc = cJSON_GetObjectItem(j, "per_class"), *e;
    cJSON_ArrayForEach(e, pc) total += (long)num(e, "support");
    CHECK(total == 10 * NCLS, "manifest: %ld images, want the 30 val rows", total);
    double manifest_acc = num(j, "accuracy");
    cJSON_Delete(j);
    snprintf(path, sizeof path, "%s/evalout/confusion.png", root);
    image png = {0};
    CHECK_OK(image_load(&png, path, IMAGE_MODE_ANY, 0));
    CHECK(png.width > 100 && png.height > 100, "confusion.png %dx%d", png.width, png.height);
    image_free(&png);
    snprintf(path, sizeof path, "%s/evalout/eval.json", root);
    CHECK(file_exists(path), "eval.json written");
    /* predictions.csv: a header and one row per evaluated image, labels that agree with the
     * confusion matrix's diagonal count, and the probabilities of every class: they sum to 1,
     * the predicted class has the largest, and it is the confidence column */
    {
        snprintf(path, sizeof path, "%s/evalout/predictions.csv", root);
        uint8_t *csv = NULL;
        size_t len = 0;
        CHECK_OK(file_read_all(path, &csv, &len));
        int rows = -1, right = 0;
        for (char *save = NULL, *line = csv ? strtok_r((char *)csv, "\n", &save) : NULL; line; line = strtok_r(NULL, "\n", &save)) {
            if (rows++ < 0) {
                CHECK(!strcmp(line, "path,label,predicted,confidence,Bright,Dark,Top"), "predictions.csv header: %s", line);
                continue;
            }
            char *c1 = strchr(line, ','), *c2 = c1 ? strchr(c1 + 1, ',') : NULL, *c3 = c2 ? strchr(c2 + 1, ',') : NULL;
            CHECK(c3 != NULL, "predictions.csv row: %s", line);
            if (!c3) continue;
            if ((size_t)(c2 - c1 - 1) == (size_t)(c3 - c2 - 1) && !strncmp(c1 + 1, c2 + 1, (size_t)(c3 - c2 - 1))) right++;
            char *end;
            double confidence = strtod(c3 + 1, &end), p[NCLS], sum = 0;
            int got = 0, top = 0;
            for (; got < NCLS && *end == ','; got++) {
                p[got] = strtod(end + 1, &end);
                sum += p[got];
                if (p[got] > p[top]) top = got;
            }
            CHECK(got == NCLS && *end == 0 && fabs(sum - 1) < 1e-4, "predictions.csv probabilities: %s", line);
            if (got == NCLS) {
                CHECK(fabs(p[top] - confidence) < 1e-6 && (size_t)(c3 - c2 - 1) == strlen(classes[top]) &&
                          !strncmp(c2 + 1, classes[top], strlen(classes[top])),
                      "predictions.csv: the predicted class is not the most probable: %s", line);
            }
        }
        CHECK(rows == 10 * NCLS, "predictions.csv: %d rows, want 30", rows);
        printf("predictions.csv: %d rows, %d right (accuracy %.4f)\n", rows, right, manifest_acc);
        CHECK(fabs(right - manifest_acc * rows) < 0.5, "predictions.csv: %d right, accuracy says %.1f", right, manifest_acc * rows);
        free(csv);
    }

    /* duplicates: a copy of the data where some val rows also exist, byte for byte, among the
     * train rows: val 00-02 of every class as train 10-12 of the same class, Bright/05 as Dark's
     * train row 25 (a copy under another label still leaks), and Top/07 as val row Top/08 (a
     * val-val copy is no leak). 10 of the 30 val rows have a training twin. */
    CHECK(test_sh("cp -r '%s/data' '%s/dups'", root, root) == 0, "copy the data");
    for (int c = 0; c < NCLS; c++)
        for (int i = 0; i < 3; i++)
            test_sh("cp '%s/dups/%s/%02d.png' '%s/dups/%s/%02d.png'", root, classes[c], i, root, classes[c], 10 + i);
    test_sh("cp '%s/dups/Bright/05.png' '%s/dups/Dark/25.png'", root, root);
    test_sh("cp '%s/dups/Top/07.png' '%s/dups/Top/08.png'", root, root);
    snprintf(path, sizeof path, "%s/split.csv", root);
    snprintf(args, sizeof args, "eval --model %s --data %s --root %s/dups --threads 1 --json", model, path, root);
    j = run_json(args, &rc);
    CHECK(rc == 0, "eval with duplicates: exit %d", rc);
    CHECK(num(j, "duplicates_in_train") == 10, "duplicates_in_train %g, want 10", num(j, "duplicates_in_train"));
    CHECK(num(j, "n_unique") == 20, "n_unique %g, want 20", num(j, "n_unique"));
    /* accuracy_unique from predict on exactly the 20 val rows without a training twin */
    {
        char files[8192] = "";
        size_t len = 0;
        for (int c = 0; c < NCLS; c++)
            for (int i = 0; i < 10; i++) {
                if (i < 3 || (c == 0 && i == 5)) continue;
                len += (size_t)snprintf(files + len, sizeof files - len, " %s/dups/%s/%02d.png", root, classes[c], i);
            }
        char pargs[9000];
        snprintf(pargs, sizeof pargs, "predict --model %s --no-detect --json%s", model, files);
        cJSON *p = run_json(pargs, &rc);
        long right = 0, all = 0;
        const cJSON *r;
        cJSON_ArrayForEach(r, p)
        {
            const char *file = cJSON_GetStringValue(cJSON_GetObjectItem(r, "image"));
            const char *label = cJSON_GetStringValue(cJSON_GetObjectItem(r, "label"));
            int t = class_of_path(file);
            all++;
            right += t >= 0 && class_of(label) == t;
        }
        cJSON_Delete(p);
        double acc_u = num(j, "accuracy_unique");
        printf("duplicates: accuracy_unique %.4f, predict on the 20 rows: %ld/%ld\n", acc_u, right, all);
        CHECK(all == 20 && fabs(acc_u - (double)right / 20) < 1e-9, "accuracy_unique %g equals predict's %ld/%ld", acc_u, right, all);
        CHECK(num(j, "accuracy") != acc_u || right == 20, "accuracy and accuracy_unique are separate figures");
    }
    cJSON_Delete(j);
    snprintf(args, sizeof args, "'%s' eval --model %s --data %s --root %s/dups --threads 1", bin, model, path, root);
    {
        char *out = NULL;
        test_capture(args, &out);
        CHECK(out && strstr(out, "duplicates: 10 of the 30 images") && strstr(out, "accuracy_unique"),
              "the text output names the duplicates: %.300s", out ? out : "(nothing)");
        free(out);
    }
    /* a folder is no split: no duplicate figures */
    snprintf(args, sizeof args, "eval --model %s --data %s/data --threads 1 --json", model, root);
    j = run_json(args, &rc);
    CHECK(rc == 0 && !cJSON_GetObjectItem(j, "accuracy_unique"), "no accuracy_unique without a manifest");
    cJSON_Delete(j);

    /* errors */
    static const char *const other[NCLS] = {"Bright", "Dark", "Sideways"};
    make_data("other", other, NCLS);
    snprintf(args, sizeof args, "eval --model %s --data %s/other --threads 1", model, root);
    static const char *const unknown[] = {"Sideways", NULL};
    test_expect_ferc(bin, args, 1, unknown);
    snprintf(args, sizeof args, "eval --model %s --data %s/nonexistent", model, root);
    static const char *const missing[] = {"nonexistent", NULL};
    test_expect_ferc(bin, args, 1, missing);
    snprintf(args, sizeof args, "eval --model %s --data %s/data --tta sideways", model, root);
    static const char *const badtta[] = {"sideways", NULL};
    test_expect_ferc(bin, args, 2, badtta);

    if (!getenv("KEEP")) test_sh("rm -rf '%s'", root);
    return test_finish("eval_cli");
}
