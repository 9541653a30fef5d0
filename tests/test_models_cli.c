/* `ferc info`: the figures of the issue, help with defaults, clear errors, and a model file's
 * metadata. Runs the binary named by $FERC_BIN (set by CTest); skips without it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/core.h"
#include "models/models.h"
#include "testutil.h"

static const char *bin;

/* Runs `ferc ARGS 2>&1`; returns the exit code and the output (caller frees). */
static int run(const char *args, char **out)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' %s 2>&1", bin, args);
    FILE *p = popen(cmd, "r");
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    if (!p || !buf) {
        free(buf);
        *out = NULL;
        return -1;
    }
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (len + 1 == cap) {
            char *b = realloc(buf, cap *= 2);
            if (!b) break;
            buf = b;
        }
    }
    buf[len] = '\0';
    int st = pclose(p);
    *out = buf;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void expect(const char *args, int want_rc, const char *const *needles)
{
    char *out;
    int rc = run(args, &out);
    CHECK(rc == want_rc, "ferc %s: exit %d, want %d\n%s", args, rc, want_rc, out ? out : "");
    for (int i = 0; needles[i] && out; i++)
        CHECK(strstr(out, needles[i]) != NULL, "ferc %s: output lacks '%s':\n%s", args, needles[i], out);
    free(out);
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
    models_meta_free(&m);
    nn_graph_destroy(g);
    unlink(path);
    rmdir(dir);
    return test_finish("test_models_cli");
}
