/* data cache: every sample decoded once into memory (8-bit, gray or RGB), so each epoch
 * augments from RAM instead of decoding JPEGs again.
 *
 * Contract: data_cache_load owns the decoded pixels until data_cache_destroy; it removes the
 * undecodable samples from the index it is given (reporting them) so that cache slot i and
 * index sample i always agree. Decoding uses `threads` threads, each on a fixed slice, so the
 * result is the same for any thread count. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"

struct data_cache {
    size_t n;
    image *img;
    int32_t *labels;
    size_t bytes;
};

typedef struct cache_job {
    data_index *ix;
    image *img;
    char **err;          /* per sample: NULL or the decode error */
    int apply_exif;
    size_t begin, end;
    size_t budget;
    atomic_size_t *bytes;
    atomic_int *over_budget;
    int oom;
} cache_job;

static void *cache_worker(void *arg)
{
    cache_job *j = arg;
    char path[4096];
    for (size_t i = j->begin; i < j->end; i++) {
        if (atomic_load(j->over_budget)) return NULL;
        image im;
        int rc = image_load(&im, data_index_path(j->ix, i, path, sizeof path), IMAGE_MODE_ANY, j->apply_exif);
        if (rc == FERC_OK && im.channels == 4) {
            image rgb;
            rc = image_to_rgb(&rgb, &im);
            image_free(&im);
            im = rgb;
        }
        if (rc == FERC_ERR_NOMEM) {
            j->oom = 1;
            return NULL;
        }
        if (rc) {
            j->err[i] = strdup(ferc_last_error());
            if (!j->err[i]) { j->oom = 1; return NULL; }
            continue;
        }
        j->img[i] = im;
        size_t total = atomic_fetch_add(j->bytes, (size_t)im.height * im.stride) + (size_t)im.height * im.stride;
        if (total > j->budget) atomic_store(j->over_budget, 1);
    }
    return NULL;
}

void data_bad_files_free(data_bad_files *b)
{
    if (!b) return;
    for (int i = 0; i < 8; i++) {
        free(b->first[i]);
        free(b->why[i]);
    }
    memset(b, 0, sizeof *b);
}

void data_cache_destroy(data_cache *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->n; i++) image_free(&c->img[i]);
    free(c->img);
    free(c->labels);
    free(c);
}

int data_cache_load(data_cache **out, data_index *ix, const data_cache_opts *opts, data_bad_files *bad)
{
    *out = NULL;
    if (bad) memset(bad, 0, sizeof *bad);
    data_cache_opts o = opts ? *opts : (data_cache_opts){0};
    if (!o.budget_bytes) o.budget_bytes = (size_t)1 << 30;
    if (o.threads < 1) o.threads = 1;
    if (o.threads > 64) o.threads = 64;
    data_cache *c = calloc(1, sizeof *c);
    image *img = calloc(ix->n ? ix->n : 1, sizeof *img);
    char **err = calloc(ix->n ? ix->n : 1, sizeof *err);
    if (!c || !img || !err) {
        free(c), free(img), free(err);
        return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    }
    atomic_size_t bytes = 0;
    atomic_int over = 0;
    cache_job jobs[64];
    pthread_t thr[64];
    int started[64] = {0};
    for (int t = 0; t < o.threads; t++) {
        jobs[t] = (cache_job){ix, img, err, o.apply_exif, ix->n * (size_t)t / (size_t)o.threads,
                              ix->n * (size_t)(t + 1) / (size_t)o.threads, o.budget_bytes, &bytes, &over, 0};
        if (t > 0) started[t] = pthread_create(&thr[t], NULL, cache_worker, &jobs[t]) == 0;
    }
    cache_worker(&jobs[0]);
    int oom = jobs[0].oom;
    for (int t = 1; t < o.threads; t++) {
        if (started[t]) pthread_join(thr[t], NULL);
        else cache_worker(&jobs[t]); /* could not start a thread: do its slice here */
        oom |= jobs[t].oom;
    }
    int rc = FERC_OK;
    if (oom) rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory decoding %s", ix->root);
    else if (atomic_load(&over))
        rc = ferc_set_error(FERC_ERR_NOMEM, "the decoded dataset %s exceeds the cache budget of %zu MB", ix->root,
                            o.budget_bytes >> 20);
    uint8_t *keep = malloc(ix->n ? ix->n : 1);
    if (!rc && !keep) rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    if (rc) {
        for (size_t i = 0; i < ix->n; i++) {
            image_free(&img[i]);
            free(err[i]);
        }
        free(img), free(err), free(c), free(keep);
        return rc;
    }
    size_t j = 0;
    for (size_t i = 0; i < ix->n; i++) {
        keep[i] = err[i] == NULL;
        if (err[i]) {
            if (bad) {
                if (bad->count < 8) {
                    bad->first[bad->count] = strdup(ix->paths[i]);
                    bad->why[bad->count] = err[i];
                    err[i] = NULL;
                }
                bad->count++;
            }
            free(err[i]);
            continue;
        }
        img[j++] = img[i];
    }
    free(err);
    data_index_filter(ix, keep);
    free(keep);
    c->n = j;
    c->img = img;
    c->bytes = atomic_load(&bytes);
    c->labels = malloc(sizeof *c->labels * (j ? j : 1));
    if (!c->labels) {
        data_cache_destroy(c);
        return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    }
    memcpy(c->labels, ix->labels, sizeof *c->labels * j);
    *out = c;
    return FERC_OK;
}

void data_cache_get(const data_cache *c, size_t i, image *view) { *view = c->img[i]; }
int32_t data_cache_label(const data_cache *c, size_t i) { return c->labels[i]; }
size_t data_cache_count(const data_cache *c) { return c->n; }
size_t data_cache_bytes(const data_cache *c) { return c->bytes; }
