/* Model files: save and load round trips (bitwise for F32, rounding for BF16/F16), the
 * metadata, and errors that name missing / unexpected keys and shape mismatches. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#include "io/safetensors.h"
#include "models/models.h"
#include "testutil.h"

static char dir[64];

static const char *tmp_path(const char *name)
{
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return path;
}

static void randomize_buffers(nn_graph *g)
{
    rng r;
    rng_seed(&r, 3);
    for (size_t i = 0; i < g->n_buffers; i++) g->buffers[i] = (float)rng_normal(&r);
    for (size_t i = 0; i < g->n_batches; i++) g->batches_tracked[i] = (int64_t)i * 1000 + 17;
}

static void check_round_trip(const char *arch)
{
    static const char *const names[] = {"Angry", "Fear", "Happy", "Neutral", "Sad", "Surprise"};
    nn_graph *g = NULL, *h = NULL;
    CHECK_OK(models_build(&g, arch, 6, 11));
    if (!g) return;
    randomize_buffers(g);
    models_meta m, m2;
    models_meta_init(&m, arch, 6);
    CHECK_OK(models_meta_set_classes(&m, names, 6));
    m.img_size = 48;
    m.mean[0] = 0.5f;
    m.std[2] = 0.25f;
    m.training_json = strdup("{\"epochs\": 30, \"dataset\": \"fer\\\"2013\"}");
    const char *path = tmp_path("model.safetensors");
    CHECK_OK(models_save(path, g, &m, ST_F32));
    CHECK_OK(models_load(path, &h, &m2));
    if (h) {
        CHECK(h->n_params == g->n_params && h->n_buffers == g->n_buffers && h->n_batches == g->n_batches);
        CHECK(!memcmp(h->params, g->params, g->n_params * sizeof(float)), "%s: parameters differ", arch);
        CHECK(!memcmp(h->buffers, g->buffers, g->n_buffers * sizeof(float)), "%s: buffers differ", arch);
        CHECK(!memcmp(h->batches_tracked, g->batches_tracked, g->n_batches * sizeof(int64_t)));
        CHECK(!strcmp(m2.arch, arch) && m2.num_classes == 6 && m2.img_size == 48 && m2.channels == 3);
        CHECK(m2.mean[0] == 0.5f && m2.mean[1] == 0.456f && m2.std[2] == 0.25f && m2.std[0] == 0.229f,
              "mean/std read back exactly");
        for (int i = 0; i < 6 && m2.class_names; i++) CHECK(!strcmp(m2.class_names[i], names[i]));
        CHECK(m2.training_json && strstr(m2.training_json, "fer\\\"2013"), "training: %s", m2.training_json);
        models_meta_free(&m2);
        nn_graph_destroy(h);
        h = NULL;
    }
    /* BF16 storage: every float is the bf16 rounding of the original. */
    CHECK_OK(models_save(path, g, &m, ST_BF16));
    CHECK_OK(models_load(path, &h, &m2));
    if (h) {
        size_t bad = 0;
        for (size_t i = 0; i < g->n_params; i++) bad += h->params[i] != bf16_to_f32(f32_to_bf16(g->params[i]));
        for (size_t i = 0; i < g->n_buffers; i++) bad += h->buffers[i] != bf16_to_f32(f32_to_bf16(g->buffers[i]));
        CHECK(bad == 0, "%zu values are not the bf16 rounding", bad);
        CHECK(!memcmp(h->batches_tracked, g->batches_tracked, g->n_batches * sizeof(int64_t)));
        models_meta_free(&m2);
        nn_graph_destroy(h);
        h = NULL;
    }
    CHECK_OK(models_save(path, g, &m, ST_F16));
    CHECK_OK(models_load(path, &h, &m2));
    if (h) {
        double e = max_abs_err(h->params, g->params, g->n_params);
        CHECK(e < 2e-3, "f16 storage error %g", e);
        models_meta_free(&m2);
        nn_graph_destroy(h);
    }
    /* The metadata must agree with the head. */
    m.num_classes = 5;
    CHECK(models_save(path, g, &m, ST_F32) == FERC_ERR_INVALID);
    m.num_classes = 6;
    models_meta_free(&m);
    nn_graph_destroy(g);
}

/* A file written by hand from a graph, with tensors left out, added, or reshaped. */
static void check_errors(void)
{
    nn_graph *g = NULL, *h = NULL;
    CHECK_OK(models_create(&g, "resnet18", 6));
    if (!g) return;
    st_writer *w = st_writer_create();
    for (int i = 0; i < g->nparams; i++) {
        const nn_param *p = &g->param_table[i];
        if (!strcmp(p->name, "layer2.1.bn2.running_var") || !strcmp(p->name, "conv1.weight")) continue;
        if (p->kind == NN_BUFFER_NUM_BATCHES) {
            st_writer_add(w, p->name, ST_I64, 0, NULL, &g->batches_tracked[p->offset]);
        } else if (!strcmp(p->name, "fc.weight")) {
            int64_t shape[2] = {7, 512};
            static float big[7 * 512];
            st_writer_add(w, p->name, ST_F32, 2, shape, big);
        } else {
            st_writer_add_f32_as(w, p->name, ST_F32, p->ndim, p->shape, nn_param_data(g, p));
        }
    }
    float extra[4] = {0};
    int64_t four[1] = {4};
    st_writer_add(w, "layer5.0.conv1.weight", ST_F32, 1, four, extra);
    st_writer_meta(w, "ferc.arch", "resnet18");
    st_writer_meta(w, "ferc.classes", "[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\"]");
    const char *path = tmp_path("bad.safetensors");
    CHECK_OK(st_writer_save(w, path));
    st_writer_destroy(w);
    models_meta m;
    int rc = models_load(path, &h, &m);
    const char *msg = ferc_last_error();
    CHECK(rc == FERC_ERR_FORMAT && h == NULL, "rc %d", rc);
    CHECK(strstr(msg, "2 missing keys") && strstr(msg, "conv1.weight") && strstr(msg, "layer2.1.bn2.running_var"), "%s", msg);
    CHECK(strstr(msg, "1 unexpected key") && strstr(msg, "layer5.0.conv1.weight"), "%s", msg);
    CHECK(strstr(msg, "fc.weight (file [7, 512], model [6, 512])"), "%s", msg);

    /* Not a model file; an unknown architecture; bad metadata. */
    w = st_writer_create();
    st_writer_add(w, "x", ST_F32, 1, four, extra);
    CHECK_OK(st_writer_save(w, path));
    CHECK(models_load(path, &h, &m) == FERC_ERR_FORMAT && strstr(ferc_last_error(), "ferc.arch"), "%s", ferc_last_error());
    st_writer_meta(w, "ferc.arch", "vgg16");
    CHECK_OK(st_writer_save(w, path));
    CHECK(models_load(path, &h, &m) == FERC_ERR_FORMAT && strstr(ferc_last_error(), "vgg16"), "%s", ferc_last_error());
    st_writer_meta(w, "ferc.arch", "resnet18");
    st_writer_meta(w, "ferc.mean", "[0.5, 0.5]");
    CHECK_OK(st_writer_save(w, path));
    CHECK(models_load(path, &h, &m) == FERC_ERR_FORMAT && strstr(ferc_last_error(), "ferc.mean"), "%s", ferc_last_error());
    st_writer_meta(w, "ferc.mean", "[0.5, 0.5, 0.5]");
    st_writer_meta(w, "ferc.classes", "[]");
    CHECK_OK(st_writer_save(w, path));
    CHECK(models_load(path, &h, &m) == FERC_ERR_FORMAT && strstr(ferc_last_error(), "ferc.classes"), "%s", ferc_last_error());
    st_writer_destroy(w);
    CHECK(models_load(tmp_path("absent.safetensors"), &h, &m) != FERC_OK);
    nn_graph_destroy(g);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/ferc_models_XXXXXX");
    if (!mkdtemp(dir)) return test_skip("cannot create a temporary directory");
    check_round_trip("resnet18");
    check_round_trip("densenet121");
    check_errors();
    unlink(tmp_path("model.safetensors"));
    unlink(tmp_path("bad.safetensors"));
    rmdir(dir);
    return test_finish("test_models_file");
}
