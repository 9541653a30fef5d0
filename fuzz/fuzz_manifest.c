/* Fuzzes the split manifest reader (data/index.c: data_manifest_read) against a small image
 * tree made once. */
#include <sys/stat.h>

#include "fuzz_common.h"
#include "data/data.h"

static data_index ix;
static int ready;

static void make_tree(void)
{
    char dir[256], path[300];
    snprintf(dir, sizeof dir, "/tmp/ferc_fuzz_tree_%d", (int)getpid());
    mkdir(dir, 0755);
    static const char *const classes[] = {"Angry", "Happy", "Suprise"};
    static const uint8_t pgm[] = "P5\n2 2\n255\n\x01\x02\x03\x04";
    for (int c = 0; c < 3; c++) {
        snprintf(path, sizeof path, "%s/%s", dir, classes[c]);
        mkdir(path, 0755);
        for (int i = 0; i < 3; i++) {
            snprintf(path, sizeof path, "%s/%s/img%d.pgm", dir, classes[c], i);
            FILE *f = fopen(path, "wb");
            if (!f) abort();
            fwrite(pgm, 1, sizeof pgm - 1, f);
            fclose(f);
        }
    }
    if (data_index_open(&ix, dir, NULL)) abort();
    ready = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ready) make_tree();
    const char *path = fuzz_write_file("split.csv", data, size);
    uint8_t split[9];
    if (!data_manifest_read(path, &ix, split))
        for (size_t i = 0; i < ix.n; i++)
            if (split[i] != 255 && split[i] > 2) abort();
    return 0;
}
