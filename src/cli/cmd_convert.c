/* ferc convert: rewrite a ferc model file with another float storage (f32, f16, bf16),
 * keeping every tensor name, the architecture, classes, input size, normalization and the
 * training record. Used to ship the default model at half the size. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/core.h"
#include "models/models.h"
#include "nn/nn.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: ferc convert --model IN.safetensors --out OUT.safetensors [--storage f32|f16|bf16]\n\n"
               "  --model FILE   a ferc model (a run's best.safetensors)\n"
               "  --out FILE     the model file to write (atomically); may not be the input\n"
               "  --storage T    float storage of the output (default f16: half the size; the\n"
               "                 network still computes in float32)\n");
}

int cmd_convert(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return CLI_OK;
    }
    const char *in = NULL, *out = NULL, *storage = "f16";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) return cli_usage_error("convert", "%s needs a value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--model")) in = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--storage")) storage = v;
        else return cli_usage_error("convert", "unknown option '%s'", a);
    }
    if (!in || !out) return cli_usage_error("convert", "--model and --out are required");
    if (!strcmp(in, out)) return cli_usage_error("convert", "--out must differ from --model");
    st_dtype dt;
    if (!strcmp(storage, "f32")) dt = ST_F32;
    else if (!strcmp(storage, "f16")) dt = ST_F16;
    else if (!strcmp(storage, "bf16")) dt = ST_BF16;
    else return cli_usage_error("convert", "--storage must be f32, f16 or bf16 (got '%s')", storage);
    nn_graph *g = NULL;
    models_meta m;
    if (models_load(in, &g, &m)) return cli_fail(in);
    int rc = models_save(out, g, &m, dt);
    models_meta_free(&m);
    nn_graph_destroy(g);
    if (rc) return cli_fail(out);
    printf("wrote %s (%s storage)\n", out, storage);
    return CLI_OK;
}
