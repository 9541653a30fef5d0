/* Fuzzes the run folder's readers, what `ferc train --resume` reads, with the same bytes as
 * config.json (trainer_config_read), as metrics.jsonl (trainer_history_read, also read by
 * `ferc compare`) and as the trainer state in last.safetensors' "ferc.trainer" metadata
 * (checkpoint_read_state), and the metadata of a model file (best.safetensors, what every
 * command that takes --model reads first: models_read_meta) from the input's fields split at
 * 0x1e: ferc.img_size, ferc.channels, ferc.mean, ferc.std, ferc.training, ferc.classes. The
 * metadata values are the bytes JSON-escaped into a safetensors file without tensors. */
#include <sys/stat.h>

#include "fuzz_common.h"
#include "io/safetensors.h"
#include "models/models.h"
#include "train/trainer.h"

/* Appends ,"key":"<bytes, JSON-escaped>" to buf (room for 6 bytes per input byte + 64). */
static size_t put_string(char *buf, size_t len, size_t cap, const char *key, const uint8_t *d, size_t n)
{
    len += (size_t)snprintf(buf + len, cap - len, ",\"%s\":\"", key);
    for (size_t i = 0; i < n; i++) {
        uint8_t ch = d[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\') buf[len++] = (char)ch;
        else len += (size_t)snprintf(buf + len, cap - len, "\\u%04x", ch);
    }
    buf[len++] = '"';
    return len;
}

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
    size_t need = 512 + 12 * size;
    if (need > cap) {
        free(json);
        json = malloc(need);
        cap = json ? need : 0;
        if (!json) return 0;
    }
    size_t len = (size_t)snprintf(json, cap, "{\"__metadata__\":{\"ferc.arch\":\"resnet18\"");
    len = put_string(json, len, cap, "ferc.trainer", data, size);
    static const char *const keys[] = {"ferc.img_size", "ferc.channels", "ferc.mean", "ferc.std", "ferc.training",
                                       "ferc.classes"};
    size_t at = 0;
    for (int k = 0; k < 6 && at < size; k++) {
        const uint8_t *sep = memchr(data + at, 0x1e, size - at);
        size_t flen = sep ? (size_t)(sep - (data + at)) : size - at;
        len = put_string(json, len, cap, keys[k], data + at, flen);
        at += flen + 1;
    }
    len += (size_t)snprintf(json + len, cap - len, "}}");
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    uint8_t hlen[8];
    for (int k = 0; k < 8; k++) hlen[k] = (uint8_t)((uint64_t)len >> (8 * k));
    fwrite(hlen, 1, 8, f);
    fwrite(json, 1, len, f);
    fclose(f);
    trainer_state st;
    checkpoint_read_state(path, &st);
    st_file sf;
    if (!st_read(&sf, path)) {
        models_meta meta;
        if (!models_read_meta(&sf, &meta, path)) models_meta_free(&meta);
        st_close(&sf);
    }
    return 0;
}
