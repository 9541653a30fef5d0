/* Fuzzes the run folder's config.json reader (train/: trainer_config_read, what
 * `ferc train --resume` reads first). */
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
    char path[300];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (size) fwrite(data, 1, size, f);
    fclose(f);
    trainer_config c;
    trainer_config_default(&c);
    trainer_config_read(dir, &c);
    return 0;
}
