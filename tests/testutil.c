#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "core/core.h"
#include "ferc.h"
#include "image/image.h"
#include "models/models.h"
#include "testutil.h"
#include "train/trainer.h"

int test_failures;
int test_checks;

double max_abs_err(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > m || isnan(d)) m = isnan(d) ? INFINITY : d;
    }
    return m;
}

double max_rel_err(const float *a, const float *b, size_t n, double floor)
{
    double scale = floor;
    for (size_t i = 0; i < n; i++)
        if (fabs((double)b[i]) > scale) scale = fabs((double)b[i]);
    return max_abs_err(a, b, n) / scale;
}

bool check_close(const char *name, const float *got, const float *want, size_t n, double tol)
{
    double e = max_rel_err(got, want, n, 1e-6);
    bool ok = e <= tol;
    printf("  %-48s max rel err %.3e (tol %.0e) %s\n", name, e, tol, ok ? "ok" : "FAIL");
    test_checks++;
    if (!ok) test_failures++;
    return ok;
}

bool check_close_l2(const char *name, const float *got, const float *want, size_t n, double tol)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - (double)want[i];
        num += d * d;
        den += (double)want[i] * want[i];
    }
    double e = den > 0 ? sqrt(num / den) : sqrt(num);
    bool ok = e <= tol;
    printf("  %-48s rel L2 err  %.3e (tol %.0e) %s\n", name, e, tol, ok ? "ok" : "FAIL");
    test_checks++;
    if (!ok) test_failures++;
    return ok;
}

const char *test_data_dir(void)
{
    const char *d = getenv("FERC_DATA");
    return d && *d ? d : NULL;
}

int test_skip(const char *why)
{
    printf("SKIP: %s\n", why);
    return 77;
}

int test_finish(const char *name)
{
    printf("%s: %d checks, %d failed\n", name, test_checks, test_failures);
    return test_failures ? 1 : 0;
}

#include <string.h>

const float *fx_f32(const st_file *f, const char *name, size_t expect)
{
    const st_tensor *t = st_find(f, name);
    test_checks++;
    if (!t || t->dtype != ST_F32 || (expect && st_numel(t) != expect)) {
        test_failures++;
        fprintf(stderr, "FAIL fixture tensor %s: %s\n", name,
                !t ? "missing" : t->dtype != ST_F32 ? "not F32" : "wrong size");
        return NULL;
    }
    return (const float *)t->data;
}

void fx_load_params(nn_graph *g, const st_file *f, const char *prefix)
{
    char key[256];
    for (int i = 0; i < g->nparams; i++) {
        const nn_param *p = &g->param_table[i];
        snprintf(key, sizeof key, "%s%s", prefix, p->name);
        const st_tensor *t = st_find(f, key);
        test_checks++;
        if (!t) {
            test_failures++;
            fprintf(stderr, "FAIL fixture lacks %s\n", key);
            continue;
        }
        if (p->kind == NN_BUFFER_NUM_BATCHES) {
            int64_t v;
            memcpy(&v, t->data, 8);
            g->batches_tracked[p->offset] = v;
        } else if (st_to_f32(t, nn_param_data(g, p), p->count) != 0) {
            test_failures++;
            fprintf(stderr, "FAIL %s: %s\n", key, ferc_last_error());
        }
    }
}

/* ---- running commands ---- */

int test_sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return system(cmd);
}

int test_capture(const char *cmd, char **out)
{
    FILE *p = popen(cmd, "r");
    size_t cap = 1 << 16, n = 0, k;
    char *buf = malloc(cap);
    if (!p || !buf) {
        free(buf);
        if (p) pclose(p);
        *out = NULL;
        return -1;
    }
    while ((k = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += k;
        if (n + 1 == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) break;
            buf = nb;
        }
    }
    buf[n] = 0;
    *out = buf;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

void test_expect_ferc(const char *bin, const char *args, int want_rc, const char *const *needles)
{
    char cmd[4096], *out;
    snprintf(cmd, sizeof cmd, "'%s' %s 2>&1", bin, args);
    int rc = test_capture(cmd, &out);
    CHECK(rc == want_rc, "ferc %s: exit %d, want %d\n%s", args, rc, want_rc, out ? out : "");
    for (int i = 0; needles[i] && out; i++)
        CHECK(strstr(out, needles[i]) != NULL, "ferc %s: output lacks '%s':\n%s", args, needles[i], out);
    free(out);
}

const char *const test_fer_classes[6] = {"Angry", "Fear", "Happy", "Neutral", "Sad", "Surprise"};

void test_make_model(const char *path, const char *arch, int img_size, unsigned long long seed)
{
    nn_graph *g = NULL;
    models_meta m;
    CHECK_OK(models_build(&g, arch, 6, seed));
    models_meta_init(&m, arch, 6);
    CHECK_OK(models_meta_set_classes(&m, test_fer_classes, 6));
    m.img_size = img_size;
    for (int c = 0; c < 3; c++) m.mean[c] = 0.5f, m.std[c] = 0.25f;
    if (g) CHECK_OK(models_save(path, g, &m, ST_F32));
    models_meta_free(&m);
    nn_graph_destroy(g);
}

void test_make_image_folder(const char *dir, int per_class, int side, unsigned long long seed)
{
    static const char *const classes[3] = {"Dark", "Bright", "Top"};
    rng r;
    rng_seed(&r, seed);
    char path[1024];
    for (int c = 0; c < 3; c++) {
        snprintf(path, sizeof path, "%s/%s", dir, classes[c]);
        CHECK_OK(file_mkdirs(path));
        for (int i = 0; i < per_class; i++) {
            image img;
            CHECK_OK(image_alloc(&img, side, side, 1));
            for (int y = 0; y < side; y++)
                for (int x = 0; x < side; x++) {
                    int base = c == 0 ? 50 : c == 1 ? 200 : (y < side / 2 ? 220 : 30);
                    img.data[y * img.stride + x] = (uint8_t)(base + (int)rng_below(&r, 40) - 20);
                }
            snprintf(path, sizeof path, "%s/%s/%02d.png", dir, classes[c], i);
            CHECK_OK(image_save(&img, path, 90));
            image_free(&img);
        }
    }
}

void test_train_config(trainer_config *c, const char *data_dir, const char *out_dir, int side, int pad)
{
    trainer_config_default(c);
    snprintf(c->data_dir, sizeof c->data_dir, "%s", data_dir);
    snprintf(c->out_dir, sizeof c->out_dir, "%s", out_dir);
    snprintf(c->arch, sizeof c->arch, "resnet18");
    snprintf(c->augment, sizeof c->augment, "randomcrop(%d,pad=%d,mode=reflect) | hflip | normalize(cifar10)", side,
             pad);
    c->img_size = side;
    c->batch = 8;
    c->lr = 1e-2;
    c->optimizer = OPTIM_ADAM;
    c->seed = 5;
    c->threads = 2;
}

int test_count_tmp(const char *dir, char *first, size_t n)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp.") && count++ == 0 && first) snprintf(first, n, "%s", e->d_name);
    closedir(d);
    return count;
}
