/* data loader: epoch order, batch assembly and the threads that build batches.
 *
 * Contract: what a batch contains depends only on (seed, epoch, position): the order is a
 * shuffle seeded by (seed, epoch) and sample k of the epoch is augmented with
 * rng_derive(seed, epoch, k). Threads only decide who computes a sample, never what, so the
 * same seed gives bit-identical batches for any thread count, sync or async.
 *
 * Scheduling: by default (async = 0) a batch is built inside data_loader_next by the caller
 * plus threads-1 helpers, which then sleep; the trainer calls it between steps, so loading
 * never takes a core from the compute threads during a step (see DESIGN.md). async = 1 builds
 * batch b+1 in the background while the caller works on batch b (double buffering), for
 * machines with spare cores. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"

#define SHUFFLE_KEY 0x73687566666c65ull /* "shuffle" */

typedef struct batch_buf {
    float *x;
    int32_t *y;
    uint32_t *index;
    int n;
} batch_buf;

struct data_loader {
    const data_cache *cache;
    const data_transform *tf;
    data_loader_opts o;
    uint32_t *indices;
    size_t n;
    int w, h;
    size_t sample_floats;
    float *weights_cdf;         /* balanced sampling: cumulative probabilities over indices */

    int epoch;
    uint32_t *order;            /* the epoch's sequence of positions into indices[] */
    size_t n_epoch;             /* samples per epoch */
    size_t next_batch;          /* next batch number data_loader_next returns */
    batch_buf buf[2];

    /* the job: build batch `job_batch` into buf[job_batch & 1] */
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    pthread_t *thr;
    int nthr;
    int stop;
    long job_batch;             /* -1: none */
    int job_n, job_next, job_done, job_err;
    char job_msg[256];
};

static void build_sample(data_loader *L, long batch, int slot, int *err, char *msg)
{
    size_t k = (size_t)batch * (size_t)L->o.batch_size + (size_t)slot;
    uint32_t di = L->indices[L->order[k]];
    batch_buf *b = &L->buf[batch & 1];
    image view;
    data_cache_get(L->cache, di, &view);
    rng r;
    rng_derive(&r, L->o.seed, (uint64_t)L->epoch, (uint64_t)k);
    int rc = data_transform_apply(L->tf, &view, &r, b->x + (size_t)slot * L->sample_floats, L->w, L->h);
    b->y[slot] = data_cache_label(L->cache, di);
    b->index[slot] = di;
    if (rc && !*err) {
        *err = rc;
        snprintf(msg, 256, "%s", ferc_last_error());
    }
}

/* Takes samples of the current job until none is left; called with mu held, returns with it. */
static void work_on_job(data_loader *L)
{
    while (L->job_batch >= 0 && L->job_next < L->job_n) {
        int slot = L->job_next++;
        long batch = L->job_batch;
        int err = 0;
        char msg[256];
        pthread_mutex_unlock(&L->mu);
        build_sample(L, batch, slot, &err, msg);
        pthread_mutex_lock(&L->mu);
        if (err && !L->job_err) {
            L->job_err = err;
            memcpy(L->job_msg, msg, sizeof msg);
        }
        if (++L->job_done == L->job_n) pthread_cond_broadcast(&L->cv_done);
    }
}

static void *loader_thread(void *arg)
{
    data_loader *L = arg;
    pthread_mutex_lock(&L->mu);
    while (!L->stop) {
        if (L->job_batch >= 0 && L->job_next < L->job_n) work_on_job(L);
        else pthread_cond_wait(&L->cv_work, &L->mu);
    }
    pthread_mutex_unlock(&L->mu);
    return NULL;
}

static int batch_size_of(const data_loader *L, size_t batch)
{
    size_t start = batch * (size_t)L->o.batch_size;
    if (start >= L->n_epoch) return 0;
    size_t left = L->n_epoch - start;
    if (left < (size_t)L->o.batch_size && L->o.drop_last) return 0;
    return (int)(left < (size_t)L->o.batch_size ? left : (size_t)L->o.batch_size);
}

/* Starts building `batch` (mu held). */
static void post_job(data_loader *L, long batch)
{
    L->job_batch = batch;
    L->job_n = batch_size_of(L, (size_t)batch);
    L->job_next = L->job_done = L->job_err = 0;
    L->buf[batch & 1].n = L->job_n;
    pthread_cond_broadcast(&L->cv_work);
}

/* Waits for the current job (mu held), helping when the caller is one of the builders. */
static int finish_job(data_loader *L)
{
    if (!L->o.async || L->nthr == 0) work_on_job(L);
    while (L->job_done < L->job_n) pthread_cond_wait(&L->cv_done, &L->mu);
    L->job_batch = -1;
    if (L->job_err) return ferc_set_error(L->job_err, "%s", L->job_msg);
    return FERC_OK;
}

size_t data_loader_batches_per_epoch(const data_loader *L)
{
    size_t bs = (size_t)L->o.batch_size;
    return L->o.drop_last ? L->n_epoch / bs : (L->n_epoch + bs - 1) / bs;
}

void data_loader_destroy(data_loader *L)
{
    if (!L) return;
    if (L->thr) {
        pthread_mutex_lock(&L->mu);
        if (L->job_batch >= 0) finish_job(L);
        L->stop = 1;
        pthread_cond_broadcast(&L->cv_work);
        pthread_mutex_unlock(&L->mu);
        for (int t = 0; t < L->nthr; t++) pthread_join(L->thr[t], NULL);
        free(L->thr);
    }
    pthread_mutex_destroy(&L->mu);
    pthread_cond_destroy(&L->cv_work);
    pthread_cond_destroy(&L->cv_done);
    for (int k = 0; k < 2; k++) free(L->buf[k].x), free(L->buf[k].y), free(L->buf[k].index);
    free(L->indices);
    free(L->order);
    free(L->weights_cdf);
    free(L);
}

int data_loader_create(data_loader **out, const data_cache *cache, const uint32_t *indices, size_t n,
                       const data_transform *tf, const data_loader_opts *opts)
{
    *out = NULL;
    if (!opts || opts->batch_size < 1) return ferc_set_error(FERC_ERR_INVALID, "batch size must be >= 1");
    if (n == 0) return ferc_set_error(FERC_ERR_INVALID, "the loader has no samples");
    if (n > UINT32_MAX) return ferc_set_error(FERC_ERR_INVALID, "too many samples");
    for (size_t i = 0; i < n; i++)
        if (indices[i] >= data_cache_count(cache))
            return ferc_set_error(FERC_ERR_INVALID, "sample index %u out of range", indices[i]);
    data_loader *L = calloc(1, sizeof *L);
    if (!L) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&L->mu, NULL);
    pthread_cond_init(&L->cv_work, NULL);
    pthread_cond_init(&L->cv_done, NULL);
    L->cache = cache;
    L->tf = tf;
    L->o = *opts;
    if (L->o.threads < 1) L->o.threads = 1;
    L->n = n;
    L->job_batch = -1;
    L->epoch = -1;
    /* Every output must have one size: take it from the first sample and check on the way. */
    image first;
    data_cache_get(cache, indices[0], &first);
    data_transform_out_size(tf, first.width, first.height, &L->w, &L->h);
    L->sample_floats = (size_t)3 * (size_t)L->w * (size_t)L->h;
    L->n_epoch = n;
    size_t bs = (size_t)L->o.batch_size;
    L->indices = malloc(sizeof *L->indices * n);
    L->order = malloc(sizeof *L->order * n);
    for (int k = 0; k < 2; k++) {
        L->buf[k].x = malloc(sizeof(float) * bs * L->sample_floats);
        L->buf[k].y = malloc(sizeof(int32_t) * bs);
        L->buf[k].index = malloc(sizeof(uint32_t) * bs);
        if (!L->buf[k].x || !L->buf[k].y || !L->buf[k].index) goto oom;
    }
    if (!L->indices || !L->order) goto oom;
    memcpy(L->indices, indices, sizeof *indices * n);
    if (L->o.sampling == DATA_SAMPLE_BALANCED) {
        size_t counts[256] = {0};
        for (size_t i = 0; i < n; i++) {
            int32_t y = data_cache_label(cache, indices[i]);
            if (y < 0 || y >= 256) {
                data_loader_destroy(L);
                return ferc_set_error(FERC_ERR_UNSUPPORTED, "balanced sampling supports up to 256 classes");
            }
            counts[y]++;
        }
        if (!(L->weights_cdf = malloc(sizeof(float) * n))) goto oom;
        double acc = 0;
        for (size_t i = 0; i < n; i++) {
            acc += 1.0 / (double)counts[data_cache_label(cache, indices[i])];
            L->weights_cdf[i] = (float)acc;
        }
        for (size_t i = 0; i < n; i++) L->weights_cdf[i] /= (float)acc;
    }
    L->nthr = L->o.async ? L->o.threads : L->o.threads - 1;
    if (L->nthr > 0) {
        if (!(L->thr = calloc((size_t)L->nthr, sizeof *L->thr))) goto oom;
        for (int t = 0; t < L->nthr; t++)
            if (pthread_create(&L->thr[t], NULL, loader_thread, L) != 0) {
                L->nthr = t; /* run with the threads we got; results do not depend on it */
                break;
            }
    }
    *out = L;
    return FERC_OK;
oom:
    data_loader_destroy(L);
    return ferc_set_error(FERC_ERR_NOMEM, "out of memory for the loader's batch buffers");
}

int data_loader_start_epoch(data_loader *L, int epoch)
{
    pthread_mutex_lock(&L->mu);
    if (L->job_batch >= 0) finish_job(L); /* drop a prefetch of the previous epoch */
    L->epoch = epoch;
    L->next_batch = 0;
    rng r;
    rng_derive(&r, L->o.seed ^ SHUFFLE_KEY, (uint64_t)epoch, 0);
    if (L->weights_cdf) {
        for (size_t k = 0; k < L->n; k++) {
            float u = rng_uniformf(&r);
            size_t lo = 0, hi = L->n - 1;
            while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                if (L->weights_cdf[mid] > u) hi = mid;
                else lo = mid + 1;
            }
            L->order[k] = (uint32_t)lo;
        }
    } else {
        for (size_t k = 0; k < L->n; k++) L->order[k] = (uint32_t)k;
        if (L->o.shuffle) rng_shuffle_u32(&r, L->order, L->n);
    }
    if (L->o.async && L->nthr > 0 && batch_size_of(L, 0) > 0) post_job(L, 0);
    pthread_mutex_unlock(&L->mu);
    return FERC_OK;
}

int data_loader_next(data_loader *L, data_batch *b)
{
    memset(b, 0, sizeof *b);
    if (L->epoch < 0) return ferc_set_error(FERC_ERR_INVALID, "data_loader_next before data_loader_start_epoch");
    pthread_mutex_lock(&L->mu);
    long want = (long)L->next_batch;
    if (batch_size_of(L, L->next_batch) == 0) {
        pthread_mutex_unlock(&L->mu);
        return 0;
    }
    if (L->job_batch != want) post_job(L, want); /* sync mode, or nothing was prefetched */
    int rc = finish_job(L);
    if (rc) {
        pthread_mutex_unlock(&L->mu);
        return rc;
    }
    L->next_batch++;
    /* Async: build the next batch into the other buffer while the caller uses this one. */
    if (L->o.async && L->nthr > 0 && batch_size_of(L, L->next_batch) > 0) post_job(L, (long)L->next_batch);
    pthread_mutex_unlock(&L->mu);
    batch_buf *bb = &L->buf[want & 1];
    b->n = bb->n;
    b->c = 3;
    b->h = L->h;
    b->w = L->w;
    b->x = bb->x;
    b->y = bb->y;
    b->index = bb->index;
    return 1;
}
