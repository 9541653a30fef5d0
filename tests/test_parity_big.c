/* Full-size import parity (the acceptance check; not in CI: the files are ~700 MB).
 * Needs FERC_BIG_FIXTURES=DIR written by `tools/gen_parity_fixtures.py --big DIR` (random
 * torchvision resnet152 and densenet161 with randomized batch-norm statistics, in the zip
 * format under a torchvision-style hashed name and in the legacy format, the DenseNet one with
 * the old 'norm.1' keys, plus torch's eval-mode logits at 224x224 and 48x48); skips without it.
 * Each file is imported with its ImageNet head kept; ferc's logits must be within 1e-3 of the
 * largest logit magnitude. Round trip: the imported model is written as a ferc safetensors
 * model and read back, and every tensor must be bit-identical. */
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#include "models/importer.h"
#include "nn/nn.h"
#include "testutil.h"

static void check_forward(nn_graph *g, const char *what, const st_file *ref, int size)
{
    char key[32];
    snprintf(key, sizeof key, "input_%d", size);
    const st_tensor *t = st_find(ref, key);
    CHECK(t && t->ndim == 4, "%s: no %s", what, key);
    if (!t || t->ndim != 4) return;
    int n = (int)t->shape[0];
    const float *x = fx_f32(ref, key, 0);
    snprintf(key, sizeof key, "logits_%d", size);
    const float *want = fx_f32(ref, key, (size_t)n * 1000);
    float *out = malloc((size_t)n * 1000 * sizeof *out);
    nn_exec *ex = NULL;
    CHECK_OK(nn_exec_create(&ex, g, NULL, n, 3, size, size, 0));
    if (ex && x && want && out) {
        double t0 = time_now();
        CHECK_OK(nn_exec_forward(ex, x, false, out));
        char name[160];
        snprintf(name, sizeof name, "%s %d images at %dx%d", what, n, size, size);
        check_close(name, out, want, (size_t)n * 1000, 1e-3);
        double mx = 0;
        for (size_t i = 0; i < (size_t)n * 1000; i++) mx = fabs(want[i]) > mx ? fabs(want[i]) : mx;
        printf("    max |logit| %.4g, max |diff| %.3g, forward %.2f s\n", mx, max_abs_err(out, want, (size_t)n * 1000),
               time_now() - t0);
    }
    nn_exec_destroy(ex);
    free(out);
}

static bool graphs_identical(const nn_graph *a, const nn_graph *b)
{
    return a->n_params == b->n_params && a->n_buffers == b->n_buffers && a->n_batches == b->n_batches &&
           !memcmp(a->params, b->params, a->n_params * sizeof(float)) &&
           !memcmp(a->buffers, b->buffers, a->n_buffers * sizeof(float)) &&
           !memcmp(a->batches_tracked, b->batches_tracked, a->n_batches * sizeof(int64_t));
}

static void check_file(const char *dir, const char *arch, const char *file, const st_file *ref, bool round_trip)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    importer_options o = {.arch = arch, .keep_head = true};
    nn_graph *g = NULL;
    models_meta meta;
    importer_report rep;
    double t0 = time_now();
    int rc = importer_import(path, &o, &g, &meta, &rep);
    CHECK_OK(rc);
    if (rc) return;
    printf("  %s: %d tensors imported in %.1f s\n", file, rep.tensors, time_now() - t0);
    CHECK(meta.num_classes == 1000 && meta.img_size == 224, "%s: %d classes, size %d", file, meta.num_classes, meta.img_size);
    check_forward(g, file, ref, 224);
    check_forward(g, file, ref, 48);
    if (round_trip) {
        char tmp[] = "/tmp/ferc_big_rt_XXXXXX";
        int fd = mkstemp(tmp);
        if (fd >= 0) close(fd);
        nn_graph *back = NULL;
        models_meta mb;
        CHECK_OK(models_save(tmp, g, &meta, ST_F32));
        CHECK_OK(models_load(tmp, &back, &mb));
        if (back) {
            bool same = graphs_identical(g, back);
            CHECK(same, "%s: tensors differ after the safetensors round trip", file);
            printf("  round trip .pth -> %s -> read back: %s\n", tmp, same ? "identical" : "DIFFERENT");
            models_meta_free(&mb);
        }
        nn_graph_destroy(back);
        unlink(tmp);
    }
    nn_graph_destroy(g);
    models_meta_free(&meta);
}

/* The zip-format file is "<arch>-<hash>.pth". */
static bool find_hashed(const char *dir, const char *arch, char *name, size_t size)
{
    DIR *d = opendir(dir);
    if (!d) return false;
    size_t n = strlen(arch);
    bool found = false;
    for (struct dirent *e; !found && (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (!strncmp(e->d_name, arch, n) && e->d_name[n] == '-' && len > 4 && !strcmp(e->d_name + len - 4, ".pth")) {
            snprintf(name, size, "%s", e->d_name);
            found = true;
        }
    }
    closedir(d);
    return found;
}

int main(void)
{
    const char *dir = getenv("FERC_BIG_FIXTURES");
    if (!dir || !*dir) return test_skip("FERC_BIG_FIXTURES is not set (see tools/gen_parity_fixtures.py --big)");
    const char *archs[] = {"resnet152", "densenet161"};
    for (int a = 0; a < 2; a++) {
        char path[1024], zip[256], legacy[64];
        snprintf(path, sizeof path, "%s/%s_ref.safetensors", dir, archs[a]);
        st_file ref;
        if (st_read(&ref, path)) return test_skip(ferc_last_error());
        printf("%s\n", archs[a]);
        if (find_hashed(dir, archs[a], zip, sizeof zip)) check_file(dir, archs[a], zip, &ref, true);
        else CHECK(0, "no %s-<hash>.pth in %s", archs[a], dir);
        snprintf(legacy, sizeof legacy, "%s_legacy.pth", archs[a]);
        check_file(dir, archs[a], legacy, &ref, false);
        st_close(&ref);
    }
    return test_finish("test_parity_big");
}
