/* Every input the fuzz harnesses (fuzz/, scripts/fuzz) ever crashed on, run through the same
 * parser in the normal suite: tests/fixtures/fuzz/<parser>_<what>.bin (checkpoint_: a whole
 * last.safetensors for checkpoint_read_state). Each must come back
 * with a status (an error is expected), and under CI's ASan + UBSan build any memory error or
 * undefined behaviour aborts the test. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "image/image.h"
#include "io/pth.h"
#include "io/safetensors.h"
#include "testutil.h"
#include "train/trainer.h"

#define DIR_ "tests/fixtures/fuzz"

int main(void)
{
    DIR *d = opendir(DIR_);
    CHECK(d != NULL, "cannot open " DIR_);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (!strstr(e->d_name, ".bin")) continue;
        char path[512];
        snprintf(path, sizeof path, DIR_ "/%s", e->d_name);
        uint8_t *data;
        size_t size;
        CHECK_OK(file_read_all(path, &data, &size));
        if (!data) continue;
        int rc = 0;
        if (!strncmp(e->d_name, "pth_", 4)) {
            tensor_dict td;
            td_init(&td);
            rc = pth_parse(&td, data, size, e->d_name, NULL);
            td_free(&td);
        } else if (!strncmp(e->d_name, "safetensors_", 12)) {
            st_file f;
            uint8_t *copy = malloc(size ? size : 1);
            memcpy(copy, data, size);
            rc = st_parse(&f, copy, size, e->d_name);
            if (!rc) st_close(&f);
        } else if (!strncmp(e->d_name, "image_", 6)) {
            image img;
            rc = image_decode(&img, data, size, IMAGE_MODE_RGB, 1, e->d_name);
            if (!rc) image_free(&img);
        } else if (!strncmp(e->d_name, "checkpoint_", 11)) {
            /* a trainer state whose counts do not fit: refused, not cast */
            trainer_state st;
            rc = checkpoint_read_state(path, &st);
            CHECK(rc != 0, "%s: accepted", e->d_name);
        } else {
            CHECK(0, "%s: no parser for this prefix", e->d_name);
        }
        printf("  %-40s status %d: %s\n", e->d_name, rc, rc ? ferc_last_error() : "accepted");
        free(data);
        n++;
    }
    if (d) closedir(d);
    CHECK(n >= 1, "no regression inputs found");
    return test_finish("test_fuzz_regressions");
}
