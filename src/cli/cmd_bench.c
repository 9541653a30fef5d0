/* ferc bench: images/s of training steps (forward + cross-entropy + backward + SGD step) or of
 * eval forward passes on random data, for one architecture, input size and batch size, plus
 * the process's peak resident memory. bench/bench_models.py runs the same configurations
 * with PyTorch and prints the ratios. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli/cli.h"
#include "core/core.h"
#include "models/models.h"
#include "nn/nn.h"
#include "optim/optim.h"

enum { DEFAULT_IMG = 48, DEFAULT_BATCH = 64, DEFAULT_STEPS = 10, DEFAULT_WARMUP = 2, DEFAULT_CLASSES = 6 };

static void usage(void)
{
    int n;
    const char *const *archs = models_arch_names(&n);
    printf("usage: ferc bench --arch NAME [--img-size N] [--batch B] [--mode train|infer] [--threads T]\n"
           "                  [--precision fp32|bf16] [--steps S] [--warmup W] [--classes K] [--json]\n\n"
           "Times S steps after W warm-up steps on random data and reports the median images/s and\n"
           "the peak resident memory (getrusage); with --batch 1, the latency of one image. train:\n"
           "forward, cross-entropy loss, backward and an SGD step (momentum 0.9) with batch-norm in\n"
           "training mode; infer: eval forward passes.\n\n"
           "options:\n"
           "  --arch NAME     architecture: ");
    for (int i = 0; i < n; i++) printf("%s%s", archs[i], i + 1 < n ? ", " : "\n");
    printf("  --img-size N    square input side (default %d)\n"
           "  --batch B       batch size (default %d)\n"
           "  --mode M        train (default) or infer\n"
           "  --threads T     OpenMP threads (default: OpenMP's, i.e. OMP_NUM_THREADS or all cores)\n"
           "  --precision P   fp32 (default) or bf16 (mixed: bf16 activations and conv weights)\n"
           "  --steps S       timed steps (default %d)\n"
           "  --warmup W      untimed steps first (default %d)\n"
           "  --classes K     head size (default %d)\n"
           "  --json          one JSON object instead of text\n"
           "  -h, --help      this help\n",
           DEFAULT_IMG, DEFAULT_BATCH, DEFAULT_STEPS, DEFAULT_WARMUP, DEFAULT_CLASSES);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int parse_int(const char *opt, const char *s, int lo, int hi, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > hi)
        return cli_usage_error("bench", "%s needs an integer in %d..%d, not '%s'", opt, lo, hi, s);
    *out = (int)v;
    return 0;
}

/* One optimizer range per trainable parameter. */
static int make_sgd(optim **opt, const nn_graph *g)
{
    optim_range *r = calloc((size_t)g->nparams + 1, sizeof *r);
    if (!r) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    int n = 0;
    for (int i = 0; i < g->nparams; i++) {
        const nn_param *p = &g->param_table[i];
        if (!nn_param_trainable_kind(p->kind)) continue;
        r[n++] = (optim_range){.name = p->name, .offset = p->offset, .count = p->count};
    }
    optim_config oc = optim_config_default(OPTIM_SGD);
    oc.momentum = 0.9;
    int rc = optim_create(opt, &oc, NULL, 0, r, n, g->n_params);
    free(r);
    return rc;
}

int cmd_bench(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        usage();
        return CLI_OK;
    }
    const char *arch = NULL, *mode = "train";
    int img = DEFAULT_IMG, batch = DEFAULT_BATCH, steps = DEFAULT_STEPS, warmup = DEFAULT_WARMUP;
    int classes = DEFAULT_CLASSES, threads = 0;
    bool json = false, bf16 = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json")) {
            json = true;
            continue;
        }
        if (i + 1 >= argc) return cli_usage_error("bench", "%s needs a value", a);
        const char *v = argv[++i];
        int bad = 0;
        if (!strcmp(a, "--arch")) arch = v;
        else if (!strcmp(a, "--mode")) mode = v;
        else if (!strcmp(a, "--img-size")) bad = parse_int(a, v, 1, 4096, &img);
        else if (!strcmp(a, "--batch")) bad = parse_int(a, v, 1, 65536, &batch);
        else if (!strcmp(a, "--steps")) bad = parse_int(a, v, 1, 1000000, &steps);
        else if (!strcmp(a, "--warmup")) bad = parse_int(a, v, 0, 1000000, &warmup);
        else if (!strcmp(a, "--classes")) bad = parse_int(a, v, 1, 100000, &classes);
        else if (!strcmp(a, "--threads")) bad = parse_int(a, v, 1, 1024, &threads);
        else if (!strcmp(a, "--precision")) {
            if (cli_parse_precision(v, &bf16)) return cli_usage_error("bench", "--precision fp32|bf16, not '%s'", v);
        } else return cli_usage_error("bench", "unknown option '%s'", a);
        if (bad) return bad;
    }
    if (!arch) return cli_usage_error("bench", "--arch is required");
    if (!models_arch_known(arch)) {
        models_family f;
        models_arch_family(arch, &f);
        return cli_usage_error("bench", "%s", ferc_last_error());
    }
    bool train = !strcmp(mode, "train");
    if (!train && strcmp(mode, "infer")) return cli_usage_error("bench", "--mode must be train or infer, not '%s'", mode);
    if (threads) omp_set_num_threads(threads);

    nn_graph *g = NULL;
    nn_exec *ex = NULL;
    optim *opt = NULL;
    float *x = NULL, *logits = NULL, *dlogits = NULL;
    int *labels = NULL;
    double *times = calloc((size_t)steps, sizeof *times);
    int rc = times ? FERC_OK : ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    if (!rc) rc = models_build(&g, arch, classes, 42);
    if (!rc) rc = nn_exec_create(&ex, g, NULL, batch, 3, img, img, (train ? NN_EXEC_TRAINING : 0) | (bf16 ? NN_EXEC_BF16 : 0));
    if (!rc && train) rc = make_sgd(&opt, g);
    const size_t nx = (size_t)batch * 3 * img * img, nk = (size_t)batch * classes;
    if (!rc && (!(x = malloc(nx * sizeof *x)) || !(logits = malloc(nk * sizeof *logits)) ||
                !(dlogits = malloc(nk * sizeof *dlogits)) || !(labels = malloc((size_t)batch * sizeof *labels))))
        rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    if (!rc) {
        rng r;
        rng_seed(&r, 1);
        for (size_t i = 0; i < nx; i++) x[i] = (float)rng_normal(&r);
        for (int i = 0; i < batch; i++) labels[i] = (int)rng_below(&r, (uint32_t)classes);
    }
    float loss = 0;
    for (int s = 0; s < warmup + steps && !rc; s++) {
        double t0 = time_now();
        rc = nn_exec_forward(ex, x, train, logits);
        if (!rc && train) rc = nn_softmax_cross_entropy(logits, labels, batch, classes, 0, NULL, &loss, dlogits, NULL);
        if (!rc && train) rc = nn_exec_backward(ex, dlogits);
        if (!rc && train) rc = optim_step(opt, g->params, g->grads, 0.01);
        if (s >= warmup) times[s - warmup] = time_now() - t0;
    }
    if (rc) {
        rc = cli_fail("bench");
    } else {
        qsort(times, (size_t)steps, sizeof *times, cmp_double);
        double med = steps % 2 ? times[steps / 2] : 0.5 * (times[steps / 2 - 1] + times[steps / 2]);
        double ips = batch / med;
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        double peak_mib = (double)ru.ru_maxrss / 1024.0;   /* Linux reports KiB */
        int nthreads = omp_get_max_threads();
        if (json)
            printf("{\"arch\": \"%s\", \"img_size\": %d, \"batch\": %d, \"mode\": \"%s\", \"precision\": \"%s\", "
                   "\"threads\": %d, \"steps\": %d, \"warmup\": %d, \"images_per_s\": %.6g, \"median_step_s\": %.6g, "
                   "\"min_step_s\": %.6g, \"max_step_s\": %.6g, \"peak_rss_mib\": %.1f}\n",
                   arch, img, batch, mode, bf16 ? "bf16" : "fp32", nthreads, steps, warmup, ips, med, times[0],
                   times[steps - 1], peak_mib);
        else if (batch == 1)
            printf("%s %dx%d batch 1 %s %s, %d threads: latency %.2f ms (median over %d, min %.2f, max %.2f), "
                   "%.1f images/s, peak memory %.0f MiB\n",
                   arch, img, img, mode, bf16 ? "bf16" : "fp32", nthreads, 1000 * med, steps, 1000 * times[0],
                   1000 * times[steps - 1], ips, peak_mib);
        else
            printf("%s %dx%d batch %d %s %s, %d threads: %.2f images/s (median step %.3f s over %d, min %.3f, max %.3f), "
                   "peak memory %.0f MiB\n",
                   arch, img, img, batch, mode, bf16 ? "bf16" : "fp32", nthreads, ips, med, steps, times[0],
                   times[steps - 1], peak_mib);
        rc = CLI_OK;
    }
    free(times);
    free(x);
    free(logits);
    free(dlogits);
    free(labels);
    optim_destroy(opt);
    nn_exec_destroy(ex);
    nn_graph_destroy(g);
    return rc;
}
