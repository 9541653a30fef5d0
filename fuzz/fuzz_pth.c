/* Fuzzes the PyTorch .pth reader (io/pth: zip archives and legacy pickles, the restricted
 * pickle VM), with and without a nested key. */
#include "fuzz_common.h"
#include "io/pth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tensor_dict d;
    td_init(&d);
    pth_parse(&d, data, size, "fuzz.pth", NULL);
    td_free(&d);
    if (size && data[0] & 1) {
        td_init(&d);
        pth_parse(&d, data, size, "fuzz.pth", "state_dict");
        td_free(&d);
    }
    return 0;
}
