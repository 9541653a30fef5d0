/* ferc compare: several run folders, validated on the same images, compared point by point
 * in DIR/index.html and DIR/compare.json (see report/compare.h for what is in them). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/core.h"
#include "report/compare.h"

static void usage(void)
{
    printf("usage: ferc compare RUN_DIR... --out DIR [options]\n\n"
           "Compares training runs (ferc train's folders, with val_predictions.csv) that were validated\n"
           "on the same images: accuracy, balanced accuracy and macro F1 with 95%% bootstrap intervals,\n"
           "McNemar's test for every pair, per-class results, confusion matrices, the most confused\n"
           "classes, calibration (reliability diagram, expected calibration error), learning curves\n"
           "against epochs and time, cost (training time, memory, parameters, FLOPs, file size,\n"
           "latency and throughput measured now) and Grad-CAM heat maps of the same 12 faces.\n"
           "Writes DIR/index.html (self-contained, PNG pictures beside it) and DIR/compare.json.\n\n"
           "options:\n"
           "  --out DIR          the report folder (required)\n"
           "  --title TEXT       the report's heading (default \"Model comparison\")\n"
           "  --bootstrap N      resamples for the intervals (default 1000)\n"
           "  --seed N           for the resamples and the choice of faces (default 1)\n"
           "  --data-root DIR    where the validation images are (default: each run's data folder)\n"
           "  --threads N        threads for the timing (default 2)\n"
           "  --no-bench         do not time the models\n"
           "  --no-gradcam       no heat maps\n"
           "  -h, --help         this help\n");
}

int cmd_compare(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        usage();
        return CLI_OK;
    }
    compare_opts o;
    compare_opts_default(&o);
    const char *out = NULL;
    const char **runs = calloc((size_t)argc, sizeof *runs);
    if (!runs) return cli_fail("compare");
    int nr = 0, rc = CLI_OK;
    for (int i = 1; i < argc && rc == CLI_OK; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--no-bench")) o.bench = false;
        else if (!strcmp(a, "--no-gradcam")) o.gradcam = false;
        else if (!strcmp(a, "--list-discordant")) o.list_discordant = true; /* tests */
        else if (a[0] == '-' && a[1] == '-') {
            if (!v) { rc = cli_usage_error("compare", "%s needs a value", a); break; }
            i++;
            int n;
            if (!strcmp(a, "--out")) out = v;
            else if (!strcmp(a, "--title")) o.title = v;
            else if (!strcmp(a, "--data-root")) o.data_root = v;
            else if (!strcmp(a, "--bootstrap")) {
                if (cli_parse_int(v, 10, 1000000, &o.bootstrap)) rc = cli_usage_error("compare", "--bootstrap needs an integer in [10, 1000000]");
            } else if (!strcmp(a, "--seed")) {
                if (cli_parse_int(v, 0, 2000000000, &n)) rc = cli_usage_error("compare", "--seed needs a non-negative integer");
                else o.seed = (uint64_t)n;
            } else if (!strcmp(a, "--threads")) {
                if (cli_parse_int(v, 1, 1024, &o.threads)) rc = cli_usage_error("compare", "--threads needs a positive integer");
            } else rc = cli_usage_error("compare", "unknown option %s", a);
        } else {
            runs[nr++] = a;
        }
    }
    if (rc == CLI_OK && !out) rc = cli_usage_error("compare", "--out DIR is required");
    if (rc == CLI_OK && nr < 1) rc = cli_usage_error("compare", "give at least one run folder");
    if (rc == CLI_OK) {
        if (compare_runs(runs, nr, out, &o)) rc = cli_fail("compare");
        else printf("wrote %s/index.html and %s/compare.json (%d runs)\n", out, out, nr);
    }
    free(runs);
    return rc;
}
