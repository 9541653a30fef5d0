/* Fuzzes the run folder's readers, what `ferc train --resume` reads, with the same bytes as
 * config.json (trainer_config_read), as metrics.jsonl (trainer_history_read, also read by
 * `ferc compare`) and as the trainer state in last.safetensors' "ferc.trainer" metadata
 * (checkpoint_read_state; the bytes JSON-escaped into a checkpoint without tensors). */
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
        char name[300];
        snprintf(name, sizeof name, "%s/%s", dir, names[k]);
        FILE *f = fopen(name, "wb");
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

    char path[300];
    snprintf(path, sizeof path, "%s/last.safetensors", dir);
    static char *json;
    static size_t cap;
    size_t need = 64 + 6 * size;
    if (need > cap) {
        free(json);
        json = malloc(need);
        cap = json ? need : 0;
        if (!json) return 0;
    }
    size_t len = (size_t)snprintf(json, cap, "{\"__metadata__\":{\"ferc.trainer\":\"");
    for (size_t i = 0; i < size; i++) {
        uint8_t ch = data[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\') json[len++] = (char)ch;
        else len += (size_t)snprintf(json + len, cap - len, "\\u%04x", ch);
    }
    len += (size_t)snprintf(json + len, cap - len, "\"}}");
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    uint8_t hlen[8];
    for (int k = 0; k < 8; k++) hlen[k] = (uint8_t)((uint64_t)len >> (8 * k));
    fwrite(hlen, 1, 8, f);
    fwrite(json, 1, len, f);
    fclose(f);
    trainer_state st;
    checkpoint_read_state(path, &st);
    return 0;
}
