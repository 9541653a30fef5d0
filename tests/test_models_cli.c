/* `ferc info`: the figures of the issue, help with defaults, clear errors, and a model file's
 * metadata. Runs the binary named by $FERC_BIN (set by CTest); skips without it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/core.h"
#include "models/models.h"
#include "testutil.h"

static const char *bin;

static void expect(const char *args, int want_rc, const char *const *needles)
{
    test_expect_ferc(bin, args, want_rc, needles);
}

int main(void)
{
    bin = getenv("FERC_BIN");
    if (!bin || access(bin, X_OK)) return test_skip("FERC_BIN is not set (run through ctest)");

    expect("--help", 0, (const char *[]){"info", "describe an architecture", NULL});
    expect("info --help", 0, (const char *[]){"--arch NAME", "--img-size N", "default 224", "--classes N",
                                              "default 1000", "--batch B", "default 64", "densenet201", NULL});
    expect("info --arch resnet152 --classes 6 --img-size 48 --summary", 0,
           (const char *[]){"58,156,102", "1.108 GFLOP", "batch 64", NULL});
    expect("info --arch densenet161 --classes Angry,Fear,Happy,Neutral,Sad,Surprise --img-size 48 --batch 8", 0,
           (const char *[]){"26,485,254", "0.686 GFLOP", "batch 8", "features.denseblock4.denselayer24.conv2",
                            "classifier", "2208", NULL});
    expect("info --arch densenet121 --img-size 28", 1, (const char *[]){"too small", "features.transition3.pool", NULL});
    expect("info --arch resnet19", 2, (const char *[]){"unknown architecture 'resnet19'", NULL});
    expect("info --arch resnet18 --batch 0", 2, (const char *[]){"--batch", NULL});
    expect("info", 2, (const char *[]){"--arch", NULL});

    /* A model file: the metadata is printed along with the totals. */
    char dir[] = "/tmp/ferc_info_XXXXXX";
    if (!mkdtemp(dir)) return test_skip("no temporary directory");
    char path[128], args[256];
    snprintf(path, sizeof path, "%s/m.safetensors", dir);
    nn_graph *g = NULL;
    CHECK_OK(models_create(&g, "resnet18", 3));
    models_meta m;
    models_meta_init(&m, "resnet18", 3);
    CHECK_OK(models_meta_set_classes(&m, (const char *[]){"Happy", "Sad", "Surprise"}, 3));
    m.img_size = 48;
    m.training_json = strdup("{\"epochs\":2}");
    if (g) CHECK_OK(models_save(path, g, &m, ST_BF16));
    snprintf(args, sizeof args, "info %s --summary", path);
    expect(args, 0, (const char *[]){"resnet18", "Happy, Sad, Surprise", "3x48x48", "BF16", "{\"epochs\":2}",
                                     "0.485", "0.229", NULL});
    snprintf(args, sizeof args, "info %s/absent.safetensors", dir);
    expect(args, 1, (const char *[]){"absent.safetensors", NULL});

    /* ferc convert: same names, metadata and (rounded) values in f16 */
    char half[160];
    snprintf(half, sizeof half, "%s/h.safetensors", dir);
    snprintf(args, sizeof args, "convert --model %s --out %s --storage f16", path, half);
    expect(args, 0, (const char *[]){"f16", NULL});
    snprintf(args, sizeof args, "info %s --summary", half);
    expect(args, 0, (const char *[]){"resnet18", "Happy, Sad, Surprise", "3x48x48", "F16", "{\"epochs\":2}", NULL});
    nn_graph *g2 = NULL;
    models_meta m2;
    if (models_load(half, &g2, &m2) == FERC_OK) {
        const int n = g->nparams;
        CHECK(n == g2->nparams, "same parameters");
        double worst = 0;
        for (int i = 0; i < n && i < g2->nparams; i++) {
            const nn_param *a = &g->param_table[i], *b = &g2->param_table[i];
            const float *pa = nn_param_data(g, a), *pb = nn_param_data(g2, b);
            CHECK(!strcmp(a->name, b->name) && a->count == b->count, "parameter %d: %s", i, a->name);
            for (size_t k = 0; pa && pb && k < a->count && a->count == b->count; k++) {
                double x = pa[k], y = pb[k];
                double e = fabs(x - y) / (fabs(x) > 1e-3 ? fabs(x) : 1e-3);
                if (e > worst) worst = e;
            }
        }
        CHECK(worst < 1e-3, "f16 round trip: worst relative error %g", worst);
        models_meta_free(&m2);
        nn_graph_destroy(g2);
    } else {
        CHECK(0, "%s does not load: %s", half, ferc_last_error());
    }
    snprintf(args, sizeof args, "convert --model %s --out %s --storage f8", path, half);
    expect(args, 2, (const char *[]){"--storage", NULL});
    snprintf(args, sizeof args, "convert --model %s --out %s", path, path);
    expect(args, 2, (const char *[]){"must differ", NULL});
    snprintf(args, sizeof args, "convert --model %s/absent.safetensors --out %s", dir, half);
    expect(args, 1, (const char *[]){"absent.safetensors", NULL});
    unlink(half);
    models_meta_free(&m);
    nn_graph_destroy(g);
    unlink(path);
    rmdir(dir);
    return test_finish("test_models_cli");
}
