/* Fuzzes image decoding (image/image_codec: JPEG, PNG, PGM/PPM, BMP; EXIF orientation) and the
 * header probe the server uses, in every output mode. */
#include "fuzz_common.h"
#include "image/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int w, h;
    if (!image_probe(data, size, &w, &h, "fuzz") && (w <= 0 || h <= 0)) abort();
    /* the decoder itself has no pixel limit: keep the fuzzer's memory bounded */
    if (!image_probe(data, size, &w, &h, "fuzz") && (long long)w * h > (1 << 24)) return 0;
    static const image_mode modes[] = {IMAGE_MODE_RGB, IMAGE_MODE_GRAY, IMAGE_MODE_ANY};
    for (int m = 0; m < 3; m++) {
        image img;
        if (image_decode(&img, data, size, modes[m], m == 0, "fuzz")) continue;
        if (!img.data || img.width <= 0 || img.height <= 0) abort();
        volatile uint8_t sink = img.data[(size_t)(img.height - 1) * img.stride + (size_t)(img.width - 1) * img.channels];
        (void)sink;
        image_free(&img);
    }
    return 0;
}
