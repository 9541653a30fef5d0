#include <math.h>
#include <stdlib.h>

#include "ferc.h"
#include "testutil.h"

int test_failures;
int test_checks;

double max_abs_err(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > m || isnan(d)) m = isnan(d) ? INFINITY : d;
    }
    return m;
}

double max_rel_err(const float *a, const float *b, size_t n, double floor)
{
    double scale = floor;
    for (size_t i = 0; i < n; i++)
        if (fabs((double)b[i]) > scale) scale = fabs((double)b[i]);
    return max_abs_err(a, b, n) / scale;
}

bool check_close(const char *name, const float *got, const float *want, size_t n, double tol)
{
    double e = max_rel_err(got, want, n, 1e-6);
    bool ok = e <= tol;
    printf("  %-48s max rel err %.3e (tol %.0e) %s\n", name, e, tol, ok ? "ok" : "FAIL");
    test_checks++;
    if (!ok) test_failures++;
    return ok;
}

const char *test_data_dir(void)
{
    const char *d = getenv("FERC_DATA");
    return d && *d ? d : NULL;
}

int test_skip(const char *why)
{
    printf("SKIP: %s\n", why);
    return 77;
}

int test_finish(const char *name)
{
    printf("%s: %d checks, %d failed\n", name, test_checks, test_failures);
    return test_failures ? 1 : 0;
}

#include <string.h>

const float *fx_f32(const st_file *f, const char *name, size_t expect)
{
    const st_tensor *t = st_find(f, name);
    test_checks++;
    if (!t || t->dtype != ST_F32 || (expect && st_numel(t) != expect)) {
        test_failures++;
        fprintf(stderr, "FAIL fixture tensor %s: %s\n", name,
                !t ? "missing" : t->dtype != ST_F32 ? "not F32" : "wrong size");
        return NULL;
    }
    return (const float *)t->data;
}

void fx_load_params(nn_graph *g, const st_file *f, const char *prefix)
{
    char key[256];
    for (int i = 0; i < g->nparams; i++) {
        const nn_param *p = &g->param_table[i];
        snprintf(key, sizeof key, "%s%s", prefix, p->name);
        const st_tensor *t = st_find(f, key);
        test_checks++;
        if (!t) {
            test_failures++;
            fprintf(stderr, "FAIL fixture lacks %s\n", key);
            continue;
        }
        if (p->kind == NN_BUFFER_NUM_BATCHES) {
            int64_t v;
            memcpy(&v, t->data, 8);
            g->batches_tracked[p->offset] = v;
        } else if (st_to_f32(t, nn_param_data(g, p), p->count) != 0) {
            test_failures++;
            fprintf(stderr, "FAIL %s: %s\n", key, ferc_last_error());
        }
    }
}
