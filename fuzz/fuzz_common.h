/* fuzz_common: helpers the libFuzzer harnesses share (the fuzz_ files of this folder, built with -DFERC_FUZZ=ON by
 * scripts/fuzz). Every harness checks one parser of data from elsewhere: whatever the input,
 * the parser must return a status (no crash, no leak, no undefined behaviour: the harnesses run
 * under ASan + UBSan), and a success must leave a usable result. */
#ifndef FERC_FUZZ_COMMON_H
#define FERC_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Writes data to a per-process file (for parsers that read paths) and returns its path. */
static inline const char *fuzz_write_file(const char *name, const uint8_t *data, size_t size)
{
    static char path[256];
    snprintf(path, sizeof path, "/tmp/ferc_fuzz_%d_%s", (int)getpid(), name);
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    fclose(f);
    return path;
}

#endif
