/* Byte-identical duplicate files: hashing, confirmation, and copies of evaluated samples among a
 * split's training rows (see data.h). */
#include <stdlib.h>
#include <string.h>

#include "data/data.h"

static uint64_t fnv1a(const uint8_t *d, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ d[i]) * 1099511628211ull;
    return h;
}

int data_file_keys(const data_index *ix, int set, data_file_key *keys)
{
    char path[4096];
    for (size_t i = 0; i < ix->n; i++) {
        uint8_t *d;
        size_t n;
        int rc = file_read_all(data_index_path(ix, i, path, sizeof path), &d, &n);
        if (rc) return rc;
        keys[i] = (data_file_key){fnv1a(d, n), (uint64_t)n, set, (uint32_t)i};
        free(d);
    }
    return FERC_OK;
}

int data_file_key_cmp(const void *a, const void *b)
{
    const data_file_key *x = a, *y = b;
    if (x->hash != y->hash) return x->hash < y->hash ? -1 : 1;
    if (x->size != y->size) return x->size < y->size ? -1 : 1;
    if (x->set != y->set) return x->set < y->set ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

int data_same_bytes(const data_index *a, uint32_t i, const data_index *b, uint32_t j)
{
    char p1[4096], p2[4096];
    uint8_t *d1, *d2;
    size_t n1, n2;
    if (file_read_all(data_index_path(a, i, p1, sizeof p1), &d1, &n1)) return 0;
    if (file_read_all(data_index_path(b, j, p2, sizeof p2), &d2, &n2)) {
        free(d1);
        return 0;
    }
    int same = n1 == n2 && !memcmp(d1, d2, n1);
    free(d1);
    free(d2);
    return same;
}

int data_mark_train_copies(const data_index *ix, const uint8_t *split, int which, uint8_t *dup, size_t *n_dup)
{
    if (n_dup) *n_dup = 0;
    memset(dup, 0, ix->n);
    data_file_key *keys = malloc(sizeof *keys * (ix->n ? ix->n : 1));
    if (!keys) return ferc_set_error(FERC_ERR_NOMEM, "out of memory hashing %zu files", ix->n);
    int rc = data_file_keys(ix, 0, keys);
    if (rc) {
        free(keys);
        return rc;
    }
    qsort(keys, ix->n, sizeof *keys, data_file_key_cmp);
    size_t count = 0;
    for (size_t i = 0; i < ix->n;) {
        size_t j = i + 1;
        while (j < ix->n && keys[j].hash == keys[i].hash && keys[j].size == keys[i].size) j++;
        /* a run of equal (hash, size): each evaluated member needs a confirmed training twin */
        for (size_t e = i; j - i > 1 && e < j; e++) {
            uint32_t ie = keys[e].idx;
            if (split[ie] != which) continue;
            for (size_t t = i; t < j; t++) {
                uint32_t it = keys[t].idx;
                if (it == ie || split[it] != DATA_SPLIT_TRAIN) continue;
                if (data_same_bytes(ix, ie, ix, it)) {
                    dup[ie] = 1;
                    count++;
                    break;
                }
            }
        }
        i = j;
    }
    free(keys);
    if (n_dup) *n_dup = count;
    return FERC_OK;
}
