/* data index, split manifests, cache and loader on a small dataset built here from the six
 * committed FER crops (plus generated images): label order, nested layout detection,
 * corrupt-file skipping, split stratification, manifest round trip, and bit-identical batches
 * for 1 and 2 threads, sync and async. With FERC_DATA set, also indexes fer/Training. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"
#include "testutil.h"

static const char *classes[] = {"Angry", "Fear", "Happy", "Neutral", "Sad", "Suprise"};
static char tmp[64];

/* tmp/Training/Training/<Class>/: the real crop plus `per` generated variants per class. */
static void make_dataset(int per)
{
    char dir[512], path[600], src[600];
    for (int c = 0; c < 6; c++) {
        snprintf(dir, sizeof dir, "%s/Training/Training/%s", tmp, classes[c]);
        file_mkdirs(dir);
        snprintf(src, sizeof src, "tests/fixtures/data/fer/%s", classes[c]);
        /* the single committed file of that class */
        char cmd[1200];
        snprintf(cmd, sizeof cmd, "cp %s/*.jpg %s/", src, dir);
        CHECK(system(cmd) == 0);
        image im;
        image_alloc(&im, 48, 48, 1);
        for (int k = 0; k < per; k++) {
            for (int i = 0; i < 48 * 48; i++) im.data[i] = (uint8_t)(c * 40 + k * 3 + i % 48);
            snprintf(path, sizeof path, "%s/gen_%03d.%s", dir, k, k % 3 == 0 ? "PNG" : "jpg");
            CHECK_OK(image_save(&im, path, 90));
        }
        image_free(&im);
    }
    snprintf(path, sizeof path, "%s/Training/Training/Happy/.hidden.jpg", tmp);
    file_write_atomic(path, "x", 1);
    snprintf(path, sizeof path, "%s/Training/Training/Happy/notes.txt", tmp);
    file_write_atomic(path, "x", 1);
    snprintf(path, sizeof path, "%s/Training/Training/Sad/broken.jpg", tmp);
    file_write_atomic(path, "\xff\xd8\xff\xe0garbage", 11);
}

static void test_index_errors(void)
{
    data_index ix;
    char p[512];
    snprintf(p, sizeof p, "%s/missing", tmp);
    CHECK(data_index_open(&ix, p, NULL) == FERC_ERR_NOT_FOUND);
    snprintf(p, sizeof p, "%s/empty/A", tmp);
    file_mkdirs(p);
    snprintf(p, sizeof p, "%s/empty", tmp);
    CHECK(data_index_open(&ix, p, NULL) == FERC_ERR_FORMAT, "empty class accepted");
    printf("  empty class: %s\n", ferc_last_error());
    snprintf(p, sizeof p, "%s/none", tmp);
    file_mkdirs(p);
    CHECK(data_index_open(&ix, p, NULL) == FERC_ERR_FORMAT, "no classes accepted");
}

static int batches_equal(data_loader *a, data_loader *b, int epoch, int *nb)
{
    data_loader_start_epoch(a, epoch);
    data_loader_start_epoch(b, epoch);
    data_batch x, y;
    int same = 1, ra, rb;
    *nb = 0;
    while ((ra = data_loader_next(a, &x)) > 0 && (rb = data_loader_next(b, &y)) > 0) {
        (*nb)++;
        same &= x.n == y.n && !memcmp(x.x, y.x, sizeof(float) * (size_t)x.n * 3 * (size_t)x.h * (size_t)x.w) &&
                !memcmp(x.y, y.y, sizeof(int32_t) * (size_t)x.n);
    }
    if (ra > 0) same &= data_loader_next(b, &y) == 0;
    return same;
}

static void test_pipeline(void)
{
    data_index ix;
    char root[256];
    snprintf(root, sizeof root, "%s/Training", tmp);
    CHECK_OK(data_index_open(&ix, root, NULL));
    CHECK(ix.nested == 1 && ix.n_classes == 6, "nested %d classes %d", ix.nested, ix.n_classes);
    for (int c = 0; c < 6 && c < ix.n_classes; c++) CHECK(!strcmp(ix.class_names[c], classes[c]));
    CHECK(!strcmp(ix.display_names[5], "Surprise") && !strcmp(ix.display_names[0], "Angry"));
    CHECK(ix.n == 6 * 21 + 1 && ix.n_ignored == 1, "n %zu ignored %zu", ix.n, ix.n_ignored);

    data_cache *cache;
    data_bad_files bad;
    data_cache_opts co = {0, 2, 0};
    CHECK_OK(data_cache_load(&cache, &ix, &co, &bad));
    CHECK(bad.count == 1 && bad.first[0] && !strcmp(bad.first[0], "Sad/broken.jpg"), "bad %zu", bad.count);
    if (bad.count) printf("  skipped %s: %s\n", bad.first[0], bad.why[0]);
    data_bad_files_free(&bad);
    CHECK(ix.n == 126 && data_cache_count(cache) == 126);
    image v;
    data_cache_get(cache, 0, &v);
    CHECK(v.width == 48 && v.channels == 1 && data_cache_label(cache, 0) == 0);

    /* stratified split: round(21 * 0.2) = 4 per class, stable for a seed */
    uint8_t *split = malloc(ix.n), *split2 = malloc(ix.n);
    CHECK_OK(data_split_stratified(&ix, 0.2, 7, split));
    size_t per[6] = {0};
    for (size_t i = 0; i < ix.n; i++)
        if (split[i] == DATA_SPLIT_VAL) per[ix.labels[i]]++;
    for (int c = 0; c < 6; c++) CHECK(per[c] == 4, "class %d has %zu val", c, per[c]);
    CHECK_OK(data_split_stratified(&ix, 0.2, 7, split2));
    CHECK(!memcmp(split, split2, ix.n));
    CHECK_OK(data_split_stratified(&ix, 0.2, 8, split2));
    CHECK(memcmp(split, split2, ix.n) != 0, "another seed gives another split");
    char man[256];
    snprintf(man, sizeof man, "%s/split.csv", tmp);
    CHECK_OK(data_manifest_write(man, &ix, split));
    CHECK_OK(data_manifest_read(man, &ix, split2));
    CHECK(!memcmp(split, split2, ix.n));
    file_write_atomic(man, "path,label,split\nHappy/nope.jpg,Happy,val\n", 41);
    CHECK(data_manifest_read(man, &ix, split2) == FERC_ERR_NOT_FOUND);

    uint32_t *tr;
    size_t ntr;
    CHECK_OK(data_split_indices(split, ix.n, DATA_SPLIT_TRAIN, &tr, &ntr));
    CHECK(ntr == 126 - 24);
    float w[6];
    CHECK_OK(data_class_weights(&ix, tr, ntr, w));
    CHECK(w[0] > 0.99f && w[0] < 1.01f);

    data_transform *tf;
    CHECK_OK(data_transform_parse(&tf, "randomcrop(44,pad=2,mode=reflect)|hflip|rotate(10)|jitter(brightness=0.2,contrast=0.2)|"
                                       "normalize(cifar10)|erase(p=0.5)"));
    data_loader_opts o = {.batch_size = 16, .seed = 11, .shuffle = 1, .drop_last = 0, .threads = 1};
    data_loader *l1, *l2, *l3;
    CHECK_OK(data_loader_create(&l1, cache, tr, ntr, tf, &o));
    o.threads = 2;
    CHECK_OK(data_loader_create(&l2, cache, tr, ntr, tf, &o));
    o.async = 1;
    CHECK_OK(data_loader_create(&l3, cache, tr, ntr, tf, &o));
    CHECK(data_loader_batches_per_epoch(l1) == 7);
    int nb = 0;
    CHECK(batches_equal(l1, l2, 0, &nb) && nb == 7, "1 vs 2 threads, epoch 0 (%d batches)", nb);
    CHECK(batches_equal(l1, l3, 3, &nb) && nb == 7, "1 thread vs 2 async, epoch 3");
    CHECK(batches_equal(l2, l3, 1, &nb), "sync vs async, epoch 1");

    /* every training sample exactly once per epoch, last batch short, epochs differ */
    data_loader_start_epoch(l1, 0);
    data_batch b;
    size_t seen = 0, last_n = 0;
    uint8_t *hit = calloc(ix.n, 1);
    float first0 = 0;
    while (data_loader_next(l1, &b) > 0) {
        if (!seen) first0 = b.x[0];
        for (int i = 0; i < b.n; i++) {
            hit[b.index[i]]++;
            CHECK(b.y[i] == ix.labels[b.index[i]]);
        }
        seen += (size_t)b.n;
        last_n = (size_t)b.n;
        CHECK(b.c == 3 && b.h == 44 && b.w == 44);
    }
    CHECK(seen == ntr && last_n == ntr - 6 * 16);
    for (size_t i = 0; i < ntr; i++) CHECK(hit[tr[i]] == 1);
    data_loader_start_epoch(l1, 1);
    data_loader_next(l1, &b);
    (void)first0;
    free(hit);
    data_loader_destroy(l1);
    data_loader_destroy(l2);
    data_loader_destroy(l3);

    /* balanced sampling draws classes about equally even when one class dominates */
    o = (data_loader_opts){.batch_size = 32, .seed = 5, .shuffle = 1, .threads = 1, .sampling = DATA_SAMPLE_BALANCED};
    uint32_t *skew = malloc(sizeof(uint32_t) * ix.n);
    size_t ns = 0;
    for (size_t i = 0; i < ix.n; i++)
        if (ix.labels[i] == 2 || (i % 7) == 0) skew[ns++] = (uint32_t)i;
    CHECK_OK(data_loader_create(&l1, cache, skew, ns, tf, &o));
    size_t cnt[6] = {0}, tot = 0;
    for (int e = 0; e < 20; e++) {
        data_loader_start_epoch(l1, e);
        while (data_loader_next(l1, &b) > 0)
            for (int i = 0; i < b.n; i++) cnt[b.y[i]]++, tot++;
    }
    for (int c = 0; c < 6; c++)
        CHECK(cnt[c] > tot / 6 * 0.7 && cnt[c] < tot / 6 * 1.3, "class %d drawn %zu of %zu", c, cnt[c], tot);
    data_loader_destroy(l1);
    free(skew);

    data_transform_destroy(tf);
    free(tr), free(split), free(split2);
    data_cache_destroy(cache);
    data_index_free(&ix);
}

static void test_real_data(void)
{
    const char *d = test_data_dir();
    if (!d) {
        printf("  FERC_DATA unset: skipping the fer/Training index check\n");
        return;
    }
    char root[512];
    snprintf(root, sizeof root, "%s/fer/Training", d);
    data_index ix;
    CHECK_OK(data_index_open(&ix, root, NULL));
    size_t counts[6] = {0}, want[6] = {3995, 4097, 7215, 4965, 4830, 3171};
    if (ix.n_classes == 6) data_index_counts(&ix, counts);
    CHECK(ix.n == 28273, "%zu images", ix.n);
    for (int c = 0; c < 6; c++) CHECK(counts[c] == want[c], "%s: %zu", classes[c], counts[c]);
    data_index_free(&ix);
}

int main(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/ferc_test_data_XXXXXX");
    if (!mkdtemp(tmp)) return test_skip("no temp dir");
    make_dataset(20);
    test_index_errors();
    test_pipeline();
    test_real_data();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    return test_finish("test_data");
}
