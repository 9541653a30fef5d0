/* bench_data: decode + augment + batch throughput at 48x48, with 1 and 2 threads.
 * usage: bench_data [DATASET_DIR] [MAX_IMAGES] [SPEC]
 *   DATASET_DIR defaults to $FERC_DATA/fer/Training; MAX_IMAGES (default 4000) limits the run.
 * Prints images/s for decoding into the cache and for building batches of 64 (sync mode: the
 * time a trainer would spend between steps; async: background throughput). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"

int main(int argc, char **argv)
{
    char root[1024];
    const char *env = getenv("FERC_DATA");
    if (argc > 1) snprintf(root, sizeof root, "%s", argv[1]);
    else if (env) snprintf(root, sizeof root, "%s/fer/Training", env);
    else {
        fprintf(stderr, "usage: bench_data DATASET_DIR [MAX_IMAGES] [SPEC] (or set FERC_DATA)\n");
        return 2;
    }
    size_t max = argc > 2 ? (size_t)atol(argv[2]) : 4000;
    const char *spec = argc > 3 ? argv[3]
                                : "randomcrop(48,pad=4,mode=reflect)|hflip|rotate(10)|jitter(brightness=0.2,contrast=0.2)|"
                                  "normalize(cifar10)|erase(p=0.25)";
    data_index ix;
    if (data_index_open(&ix, root, NULL)) {
        fprintf(stderr, "bench_data: %s\n", ferc_last_error());
        return 1;
    }
    if (ix.n > max) { /* keep every (n/max)-th image so all classes stay in */
        uint8_t *keep = calloc(ix.n, 1);
        for (size_t i = 0; i < max; i++) keep[i * ix.n / max] = 1;
        data_index_filter(&ix, keep);
        free(keep);
    }
    data_transform *tf;
    if (data_transform_parse(&tf, spec)) {
        fprintf(stderr, "bench_data: %s\n", ferc_last_error());
        return 1;
    }
    printf("bench_data: %zu images from %s\ntransform: %s\n", ix.n, root, data_transform_spec(tf));
    data_cache *cache = NULL;
    for (int threads = 1; threads <= 2; threads++) {
        data_index copy = ix; /* data_cache_load may filter; the set has no bad files here */
        data_bad_files bad;
        data_cache_opts co = {0, threads, 0};
        data_cache_destroy(cache);
        double t0 = time_now();
        if (data_cache_load(&cache, &copy, &co, &bad)) {
            fprintf(stderr, "bench_data: %s\n", ferc_last_error());
            return 1;
        }
        double dt = time_now() - t0;
        printf("decode into cache, %d thread%s: %8.0f images/s (%.1f MB decoded)\n", threads, threads > 1 ? "s" : " ",
               (double)copy.n / dt, (double)data_cache_bytes(cache) / 1e6);
        data_bad_files_free(&bad);
        ix = copy;
    }
    uint32_t *idx = malloc(sizeof *idx * ix.n);
    for (size_t i = 0; i < ix.n; i++) idx[i] = (uint32_t)i;
    for (int async = 0; async <= 1; async++)
        for (int threads = 1; threads <= 2; threads++) {
            data_loader_opts o = {.batch_size = 64, .seed = 1, .shuffle = 1, .drop_last = 1, .threads = threads, .async = async};
            data_loader *L;
            if (data_loader_create(&L, cache, idx, ix.n, tf, &o)) {
                fprintf(stderr, "bench_data: %s\n", ferc_last_error());
                return 1;
            }
            size_t n = 0;
            double t0 = time_now();
            data_loader_start_epoch(L, 0);
            data_batch b;
            while (data_loader_next(L, &b) > 0) n += (size_t)b.n;
            double dt = time_now() - t0;
            printf("augment + batch (64), %s, %d thread%s: %8.0f images/s, %.2f ms per batch\n", async ? "async" : "sync ",
                   threads, threads > 1 ? "s" : " ", (double)n / dt, 1e3 * dt / ((double)n / 64));
            data_loader_destroy(L);
        }
    free(idx);
    data_cache_destroy(cache);
    data_transform_destroy(tf);
    data_index_free(&ix);
    return 0;
}
