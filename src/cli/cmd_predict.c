/* ferc predict: classifies the expression in images.
 *
 * Structure: each input image yields a list of regions to classify (today, with --no-detect,
 * the whole image; the faces issue adds a detector that yields one crop per face); all regions
 * of a chunk of images go through the network in one batch; then each image's results are
 * printed, as JSON or as text. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/core.h"
#include "image/image.h"
#include "models/classify.h"

enum { DEFAULT_BATCH = 32 };

static void usage(void)
{
    printf("usage: ferc predict --model MODEL --no-detect [--json] [--batch B] IMAGE...\n\n"
           "Classifies whole images as given (--no-detect: no face detection). Each image is\n"
           "preprocessed as in training: gray replicated to 3 channels, resized to the model's\n"
           "input size unless it already has it, normalized with the model's mean/std. Images go\n"
           "through the network B at a time in one batch.\n\n"
           "options:\n"
           "  --model FILE    a ferc model (.safetensors)\n"
           "  --no-detect     classify each whole image (no face detection)\n"
           "  --json          print a JSON list, one object per image:\n"
           "                  {\"image\": PATH, \"label\": NAME, \"probabilities\": {NAME: p, ...},\n"
           "                   \"logits\": [...]} (numbers with 9 significant digits)\n"
           "  --batch B       images per forward pass (default %d)\n"
           "  -h, --help      this help\n",
           DEFAULT_BATCH);
}

static void json_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(out, "\\%c", *p);
        else if (*p == '\n') fputs("\\n", out);
        else if (*p == '\t') fputs("\\t", out);
        else if (*p < 0x20) fprintf(out, "\\u%04x", *p);
        else fputc(*p, out);
    }
    fputc('"', out);
}

static void json_number(FILE *out, float v)
{
    if (isfinite(v)) fprintf(out, "%.9g", (double)v);
    else fputs("null", out);
}

static int argmax(const float *v, int k)
{
    int best = 0;
    for (int j = 1; j < k; j++)
        if (v[j] > v[best]) best = j;
    return best;
}

static void print_json(FILE *out, const classifier *c, const char *path, const float *logits, const float *probs,
                       bool first)
{
    const int k = classifier_meta(c)->num_classes;
    fprintf(out, "%s\n  {\"image\": ", first ? "" : ",");
    json_string(out, path);
    fputs(", \"label\": ", out);
    json_string(out, classifier_class_name(c, argmax(logits, k)));
    fputs(", \"probabilities\": {", out);
    for (int j = 0; j < k; j++) {
        fputs(j ? ", " : "", out);
        json_string(out, classifier_class_name(c, j));
        fputs(": ", out);
        json_number(out, probs[j]);
    }
    fputs("}, \"logits\": [", out);
    for (int j = 0; j < k; j++) {
        fputs(j ? ", " : "", out);
        json_number(out, logits[j]);
    }
    fputs("]}", out);
}

static void print_text(FILE *out, const classifier *c, const char *path, const float *logits, const float *probs)
{
    const int k = classifier_meta(c)->num_classes;
    int best = argmax(logits, k);
    fprintf(out, "%s: %s (%.1f%%)", path, classifier_class_name(c, best), 100.0 * probs[best]);
    /* The runners-up, most likely first, at most five. */
    bool *shown = calloc((size_t)k, sizeof *shown);
    if (shown) {
        shown[best] = true;
        for (int r = 0; r < 5 && r < k - 1; r++) {
            int m = -1;
            for (int j = 0; j < k; j++)
                if (!shown[j] && (m < 0 || probs[j] > probs[m])) m = j;
            shown[m] = true;
            fprintf(out, "%s%s %.1f%%", r ? ", " : "   [", classifier_class_name(c, m), 100.0 * probs[m]);
            if (r == 4 || r == k - 2) fputs("]", out);
        }
        free(shown);
    }
    fputs("\n", out);
}

int cmd_predict(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        usage();
        return CLI_OK;
    }
    const char *model = NULL;
    bool json = false, no_detect = false;
    int batch = DEFAULT_BATCH;
    const char **paths = calloc((size_t)argc, sizeof *paths);
    int npaths = 0;
    if (!paths) {
        ferc_set_error(FERC_ERR_NOMEM, "out of memory");
        return cli_fail("predict");
    }
    int rc = CLI_OK;
    for (int i = 1; i < argc && rc == CLI_OK; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json")) json = true;
        else if (!strcmp(a, "--no-detect")) no_detect = true;
        else if (!strcmp(a, "--model") || !strcmp(a, "--batch")) {
            if (i + 1 >= argc) {
                rc = cli_usage_error("predict", "%s needs a value", a);
                break;
            }
            const char *v = argv[++i];
            if (!strcmp(a, "--model")) {
                model = v;
            } else {
                char *end;
                long b = strtol(v, &end, 10);
                if (end == v || *end || b <= 0 || b > 4096) rc = cli_usage_error("predict", "--batch needs a positive integer, not '%s'", v);
                batch = (int)b;
            }
        } else if (a[0] == '-' && a[1]) {
            rc = cli_usage_error("predict", "unknown option '%s'", a);
        } else {
            paths[npaths++] = a;
        }
    }
    if (rc == CLI_OK && !model) rc = cli_usage_error("predict", "--model is required");
    if (rc == CLI_OK && !npaths) rc = cli_usage_error("predict", "no images given");
    if (rc == CLI_OK && !no_detect)
        rc = cli_usage_error("predict", "face detection is not available yet; use --no-detect to classify whole images");
    if (rc != CLI_OK) {
        free(paths);
        return rc;
    }

    classifier *c = NULL;
    if (classifier_load(&c, model)) {
        free(paths);
        return cli_fail(NULL);
    }
    const int k = classifier_meta(c)->num_classes;
    if (batch > npaths) batch = npaths;
    image *imgs = calloc((size_t)batch, sizeof *imgs);
    float *logits = malloc((size_t)batch * k * sizeof(float)), *probs = malloc((size_t)batch * k * sizeof(float));
    if (!imgs || !logits || !probs) {
        ferc_set_error(FERC_ERR_NOMEM, "out of memory");
        rc = cli_fail("predict");
    }
    if (json && rc == CLI_OK) fputs("[", stdout);
    for (int start = 0; start < npaths && rc == CLI_OK; start += batch) {
        int n = npaths - start < batch ? npaths - start : batch;
        int loaded = 0;
        for (; loaded < n; loaded++)
            if (image_load(&imgs[loaded], paths[start + loaded], IMAGE_MODE_ANY, 1)) break;
        if (loaded < n) rc = cli_fail(NULL);
        else if (classifier_run_images(c, imgs, n, logits, probs)) rc = cli_fail(model);
        for (int i = 0; i < n && rc == CLI_OK; i++) {
            if (json) print_json(stdout, c, paths[start + i], logits + (size_t)i * k, probs + (size_t)i * k, start + i == 0);
            else print_text(stdout, c, paths[start + i], logits + (size_t)i * k, probs + (size_t)i * k);
        }
        for (int i = 0; i < loaded; i++) image_free(&imgs[i]);
        fflush(stdout);
    }
    if (json && rc == CLI_OK) fputs("\n]\n", stdout);
    free(imgs);
    free(logits);
    free(probs);
    free(paths);
    classifier_destroy(c);
    return rc;
}
