/* Fuzzes the run folder's readers with the same bytes as config.json and as metrics.jsonl
 * (train/: trainer_config_read, what `ferc train --resume` reads first, and
 * trainer_history_read, what the resume and `ferc compare` read next). */
#include <sys/stat.h>

#include "fuzz_common.h"
#include "train/trainer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char dir[256];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/ferc_fuzz_run_%d", (int)getpid());
        mkdir(dir, 0755);
    }
    static const char *const names[] = {"config.json", "metrics.jsonl"};
    for (int k = 0; k < 2; k++) {
        char path[300];
        snprintf(path, sizeof path, "%s/%s", dir, names[k]);
        FILE *f = fopen(path, "wb");
        if (!f) abort();
        if (size) fwrite(data, 1, size, f);
        fclose(f);
    }
    trainer_config c;
    trainer_config_default(&c);
    trainer_config_read(dir, &c);
    trainer_epoch *hist = NULL;
    int n = 0;
    trainer_history_read(dir, -1, 0, &hist, &n);
    free(hist);
    trainer_history_read(dir, 3, 2, &hist, &n);
    free(hist);
    return 0;
}
