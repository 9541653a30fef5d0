/* The importer on a real architecture (resnet18, random weights written as a safetensors file
 * the way timm's hub files are): keeping the head, a new head for named classes (backbone
 * copied bit for bit, head re-initialized like nn.Linear), metadata defaults, clear errors,
 * and the round trip import -> ferc model file -> read back with identical tensors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#include "models/importer.h"
#include "testutil.h"

static bool params_equal(const nn_graph *a, const nn_graph *b, const char *skip_prefix)
{
    for (int i = 0; i < a->nparams; i++) {
        const nn_param *p = &a->param_table[i];
        if (skip_prefix && !strncmp(p->name, skip_prefix, strlen(skip_prefix))) continue;
        int j = nn_find_param(b, p->name);
        if (j < 0 || b->param_table[j].count != p->count) return false;
        if (p->kind == NN_BUFFER_NUM_BATCHES) {
            if (a->batches_tracked[p->offset] != b->batches_tracked[b->param_table[j].offset]) return false;
        } else if (memcmp(nn_param_data(a, p), nn_param_data(b, &b->param_table[j]), p->count * sizeof(float))) {
            return false;
        }
    }
    return true;
}

int main(void)
{
    char dir[] = "/tmp/ferc_import_XXXXXX";
    if (!mkdtemp(dir)) return test_skip("no temporary directory");
    char src[128], out[128];
    snprintf(src, sizeof src, "%s/resnet18_src.safetensors", dir);
    snprintf(out, sizeof out, "%s/model.safetensors", dir);

    nn_graph *orig = NULL;
    CHECK_OK(models_build(&orig, "resnet18", 1000, 7));
    for (size_t i = 0; orig && i < orig->n_buffers; i++) orig->buffers[i] += 0.01f * (float)(i % 7);
    for (size_t i = 0; orig && i < orig->n_batches; i++) orig->batches_tracked[i] = 1000 + (int64_t)i;
    models_meta m0;
    models_meta_init(&m0, "resnet18", 1000);
    CHECK_OK(models_save(src, orig, &m0, ST_F32));
    models_meta_free(&m0);

    /* Keep the ImageNet head: everything identical, ImageNet defaults. */
    importer_options o = {.arch = "resnet18", .keep_head = true};
    nn_graph *g = NULL;
    models_meta meta;
    importer_report rep;
    CHECK_OK(importer_import(src, &o, &g, &meta, &rep));
    if (g) {
        CHECK(params_equal(orig, g, NULL), "kept-head import differs from the source");
        CHECK(meta.num_classes == 1000 && !meta.class_names && meta.img_size == 224 && meta.channels == 3, "meta");
        CHECK(meta.mean[0] == 0.485f && meta.mean[2] == 0.406f && meta.std[1] == 0.224f, "ImageNet normalization");
        CHECK(!rep.head_replaced && rep.file_head_outputs == 1000 && rep.batches_defaulted == 0, "report");
        CHECK(meta.training_json && strstr(meta.training_json, "resnet18_src.safetensors") &&
              strstr(meta.training_json, "\"kept\""), "provenance: %s", meta.training_json);
        nn_graph_destroy(g);
        models_meta_free(&meta);
    }

    /* A new 6-class head: the backbone is copied exactly, the head drawn as nn.Linear. */
    const char *names[] = {"Angry", "Fear", "Happy", "Neutral", "Sad", "Surprise"};
    importer_options o6 = {.arch = "resnet18", .class_names = names, .num_classes = 6, .img_size = 48, .seed = 3};
    CHECK_OK(importer_import(src, &o6, &g, &meta, &rep));
    if (g) {
        CHECK(params_equal(orig, g, "fc."), "new-head import changed the backbone");
        CHECK(rep.head_replaced && rep.file_head_outputs == 1000, "report");
        CHECK(meta.num_classes == 6 && meta.img_size == 48 && !strcmp(meta.class_names[5], "Surprise"), "meta");
        const nn_param *w = &g->param_table[nn_find_param(g, "fc.weight")];
        const float *fw = nn_param_data(g, w);
        float bound = 1.0f / sqrtf(512.0f), mx = 0;
        for (size_t i = 0; i < w->count; i++) mx = fabsf(fw[i]) > mx ? fabsf(fw[i]) : mx;
        CHECK(w->shape[0] == 6 && mx <= bound && mx > 0.9f * bound, "fc weight max %g, bound %g", (double)mx, (double)bound);

        /* Round trip through a ferc model file: identical tensors and metadata. */
        nn_graph *back = NULL;
        models_meta mb;
        CHECK_OK(models_save(out, g, &meta, ST_F32));
        CHECK_OK(models_load(out, &back, &mb));
        if (back) {
            CHECK(params_equal(g, back, NULL) && params_equal(back, g, NULL), "round trip changed tensors");
            CHECK(mb.num_classes == 6 && mb.img_size == 48 && !strcmp(mb.class_names[0], "Angry") &&
                  mb.mean[1] == meta.mean[1] && mb.std[2] == meta.std[2], "round trip metadata");
            models_meta_free(&mb);
        }
        nn_graph_destroy(back);
        /* Importing a ferc model file again (safetensors input) keeps everything too. */
        importer_options ok = {.arch = "resnet18", .keep_head = true, .class_names = names, .num_classes = 6};
        CHECK_OK(importer_import(out, &ok, &back, &mb, &rep));
        if (back) {
            CHECK(params_equal(g, back, NULL), "re-import changed tensors");
            models_meta_free(&mb);
        }
        nn_graph_destroy(back);
        nn_graph_destroy(g);
        models_meta_free(&meta);
    }

    /* Errors, each naming the problem. */
    importer_options bad = {.arch = "resnet18", .keep_head = true, .class_names = names, .num_classes = 6};
    CHECK(importer_import(src, &bad, &g, &meta, NULL) == FERC_ERR_INVALID && !g, "6 names for a 1000-output head");
    CHECK(strstr(ferc_last_error(), "1000 outputs"), "%s", ferc_last_error());
    importer_options nohead = {.arch = "resnet18"};
    CHECK(importer_import(src, &nohead, &g, &meta, NULL) == FERC_ERR_INVALID, "no head option");
    importer_options r34 = {.arch = "resnet34", .keep_head = true};
    CHECK(importer_import(src, &r34, &g, &meta, NULL) == FERC_ERR_SHAPE && !g, "resnet18 weights as resnet34");
    CHECK(strstr(ferc_last_error(), "missing") && strstr(ferc_last_error(), "layer1.2.conv1.weight"), "%s", ferc_last_error());
    importer_options r50 = {.arch = "resnet50", .class_names = names, .num_classes = 6};
    CHECK(importer_import(src, &r50, &g, &meta, NULL) == FERC_ERR_SHAPE, "resnet18 weights as resnet50");
    CHECK(strstr(ferc_last_error(), "shape mismatch") && strstr(ferc_last_error(), "layer1.0.conv1.weight"), "%s",
          ferc_last_error());
    importer_options unk = {.arch = "resnet19", .keep_head = true};
    CHECK(importer_import(src, &unk, &g, &meta, NULL) == FERC_ERR_INVALID, "unknown arch");
    CHECK(importer_import("/nonexistent/x.pth", &o, &g, &meta, NULL) < 0, "missing file");

    nn_graph_destroy(orig);
    unlink(src);
    unlink(out);
    rmdir(dir);
    return test_finish("test_import");
}
