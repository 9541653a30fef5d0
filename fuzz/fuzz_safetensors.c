/* Fuzzes the safetensors reader (io/safetensors: st_parse), then reads every tensor it accepted. */
#include "fuzz_common.h"
#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    st_file f;
    if (st_parse(&f, buf, size, "fuzz.safetensors")) return 0; /* buf is taken either way */
    for (int i = 0; i < f.count; i++) {
        const st_tensor *t = &f.tensors[i];
        size_t n = st_numel(t);
        if (n > (1u << 22)) continue;
        float *out = malloc((n ? n : 1) * sizeof(float));
        if (out) st_to_f32(t, out, n);
        free(out);
    }
    st_close(&f);
    return 0;
}
