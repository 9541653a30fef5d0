/* ferc import: converts PyTorch .pth state_dicts (zip or legacy pickle) and timm-style
 * safetensors files into a ferc model file, keeping the file's head or adding a new one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/core.h"
#include "models/importer.h"

static void usage(void)
{
    int n;
    const char *const *archs = models_arch_names(&n);
    printf("usage: ferc import --arch NAME --weights FILE (--keep-head | --classes A,B,...) --out MODEL.safetensors\n"
           "                   [--img-size N] [--strip-prefix P] [--nested-key K] [--storage f32|f16|bf16]\n"
           "                   [--seed S] [--no-hash-check]\n\n"
           "Reads torch .pth weights (zip or legacy format) or a safetensors file with torchvision's\n"
           "key names (timm's *.tv_in1k) and writes a ferc model. Keys must match the architecture\n"
           "exactly; missing, unexpected and mis-shaped keys are listed by name. 'module.' and\n"
           "'network.' prefixes are stripped automatically, old DenseNet keys are fixed, and a\n"
           "torchvision file name's hash prefix (resnet152-394f9c45.pth) is checked.\n\n"
           "options:\n"
           "  --arch NAME          architecture: ");
    for (int i = 0; i < n; i++) printf("%s%s", archs[i], i + 1 < n ? ", " : "\n");
    printf("  --weights FILE       the .pth or .safetensors file\n"
           "  --keep-head          keep the file's classifier (e.g. ImageNet's 1000 classes); with\n"
           "                       --classes, names for its outputs (the counts must agree)\n"
           "  --classes A,B,...    class names of a NEW head (re-initialized like torch's nn.Linear)\n"
           "  --img-size N         input size recorded in the model (default 224)\n"
           "  --strip-prefix P     strip exactly this key prefix (default: 'module.'/'network.' auto)\n"
           "  --nested-key K       take the state_dict from this entry of a checkpoint dict\n"
           "  --storage T          float storage in the model file: f32 (default), f16 or bf16\n"
           "  --seed S             seed of the new head's initialization (default 42)\n"
           "  --no-hash-check      do not check the SHA-256 prefix in torchvision-style file names\n"
           "  --out FILE           the model file to write (atomically)\n"
           "  -h, --help           this help\n\n"
           "The model records ImageNet normalization (mean 0.485,0.456,0.406, std 0.229,0.224,0.225).\n");
}

/* Splits "A,B,C" into names (pointers into the caller's copy). */
static int split_names(char *s, const char ***out, int *n)
{
    int cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    const char **v = calloc((size_t)cap, sizeof *v);
    if (!v) return -1;
    int k = 0;
    for (char *tok = s, *next; tok; tok = next) {
        next = strchr(tok, ',');
        if (next) *next++ = '\0';
        v[k++] = tok;
    }
    *out = v;
    *n = k;
    return 0;
}

int cmd_import(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        usage();
        return CLI_OK;
    }
    importer_options o = {.seed = 42};
    const char *weights = NULL, *out = NULL, *classes = NULL, *storage_name = "f32";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_val = i + 1 < argc;
        if (!strcmp(a, "--keep-head")) { o.keep_head = true; continue; }
        if (!strcmp(a, "--no-hash-check")) { o.no_hash_check = true; continue; }
        if (!has_val) return cli_usage_error("import", "%s needs a value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--arch")) o.arch = v;
        else if (!strcmp(a, "--weights")) weights = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--classes")) classes = v;
        else if (!strcmp(a, "--strip-prefix")) o.strip_prefix = v;
        else if (!strcmp(a, "--nested-key")) o.nested_key = v;
        else if (!strcmp(a, "--storage")) storage_name = v;
        else if (!strcmp(a, "--img-size") || !strcmp(a, "--seed")) {
            char *end;
            unsigned long long x = strtoull(v, &end, 10);
            if (end == v || *end || (!strcmp(a, "--img-size") && (x == 0 || x > 100000)))
                return cli_usage_error("import", "%s needs a positive integer, not '%s'", a, v);
            if (!strcmp(a, "--seed")) o.seed = x;
            else o.img_size = (int)x;
        } else {
            return cli_usage_error("import", "unknown option '%s'", a);
        }
    }
    if (!o.arch) return cli_usage_error("import", "--arch is required");
    if (!models_arch_known(o.arch)) {
        models_family f;
        models_arch_family(o.arch, &f);
        return cli_usage_error("import", "%s", ferc_last_error());
    }
    if (!weights) return cli_usage_error("import", "--weights is required");
    if (!out) return cli_usage_error("import", "--out is required");
    if (!o.keep_head && !classes) return cli_usage_error("import", "give --keep-head or --classes A,B,...");
    st_dtype storage;
    if (!strcmp(storage_name, "f32")) storage = ST_F32;
    else if (!strcmp(storage_name, "f16")) storage = ST_F16;
    else if (!strcmp(storage_name, "bf16")) storage = ST_BF16;
    else return cli_usage_error("import", "--storage must be f32, f16 or bf16, not '%s'", storage_name);

    char *names_buf = classes ? strdup(classes) : NULL;
    const char **names = NULL;
    int nnames = 0;
    if (classes && (!names_buf || split_names(names_buf, &names, &nnames))) {
        free(names_buf);
        ferc_set_error(FERC_ERR_NOMEM, "out of memory");
        return cli_fail("import");
    }
    for (int i = 0; i < nnames; i++)
        if (!*names[i]) {
            free(names);
            free(names_buf);
            return cli_usage_error("import", "--classes has an empty name (class %d)", i);
        }
    o.class_names = names;
    o.num_classes = nnames;

    nn_graph *g = NULL;
    models_meta meta;
    importer_report rep;
    int rc = importer_import(weights, &o, &g, &meta, &rep);
    if (!rc) rc = models_save(out, g, &meta, storage);
    if (!rc) {
        printf("%s: %s, %d tensors imported", out, o.arch, rep.tensors);
        if (rep.batches_defaulted) printf(" (%d num_batches_tracked absent, set to 0)", rep.batches_defaulted);
        printf("\n");
        if (rep.head_replaced) {
            printf("head: new %s for %d classes (seed %llu)", models_head_name(o.arch), meta.num_classes,
                   (unsigned long long)o.seed);
            if (rep.file_head_outputs) printf("; the file's %d-output head was dropped", rep.file_head_outputs);
            printf("\n");
        } else {
            printf("head: kept (%d classes)\n", meta.num_classes);
        }
        printf("input: 3x%dx%d, mean [%.3f, %.3f, %.3f], std [%.3f, %.3f, %.3f], storage %s\n", meta.img_size,
               meta.img_size, (double)meta.mean[0], (double)meta.mean[1], (double)meta.mean[2], (double)meta.std[0],
               (double)meta.std[1], (double)meta.std[2], st_dtype_name(storage));
    }
    nn_graph_destroy(g);
    models_meta_free(&meta);   /* zeroed by a failed import, so always safe */
    free(names);
    free(names_buf);
    return rc ? cli_fail("import") : CLI_OK;
}
