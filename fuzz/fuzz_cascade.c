/* Fuzzes the OpenCV cascade XML reader (face/cascade.c: both formats), then runs an accepted
 * cascade on a small image. */
#include "fuzz_common.h"
#include "face/cascade.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write_file("cascade.xml", data, size);
    face_cascade *fc = NULL;
    if (face_cascade_load(&fc, path)) return 0;
    uint8_t gray[64 * 48];
    for (size_t i = 0; i < sizeof gray; i++) gray[i] = (uint8_t)(i * 31 + (size ? data[i % size] : 0));
    face_detect_params p;
    face_detect_params_default(&p);
    face_box *b = NULL;
    int n = 0;
    face_detect(fc, gray, 64, 48, 64, &p, &b, &n);
    free(b);
    face_cascade_destroy(fc);
    return 0;
}
