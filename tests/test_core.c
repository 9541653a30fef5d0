/* core: error messages, RNG streams, atomic files, float conversions. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#include "testutil.h"

static void test_errors(void)
{
    int rc = ferc_set_error(FERC_ERR_IO, "cannot open %s", "x.bin");
    CHECK(rc == FERC_ERR_IO);
    CHECK(!strcmp(ferc_last_error(), "cannot open x.bin"), "%s", ferc_last_error());
    ferc_wrap_error(FERC_ERR_IO, "loading model");
    CHECK(!strcmp(ferc_last_error(), "loading model: cannot open x.bin"), "%s", ferc_last_error());
    CHECK(!strcmp(ferc_status_name(FERC_ERR_NOMEM), "out of memory"));
    CHECK(!strcmp(ferc_status_name(-1000), "unknown error"));
}

static void test_rng(void)
{
    rng a, b, c;
    rng_derive(&a, 42, 1, 2);
    rng_derive(&b, 42, 1, 2);
    rng_derive(&c, 42, 2, 1);
    int same_ab = 1, same_ac = 1;
    for (int i = 0; i < 100; i++) {
        uint64_t x = rng_u64(&a), y = rng_u64(&b), z = rng_u64(&c);
        same_ab &= x == y;
        same_ac &= x == z;
    }
    CHECK(same_ab, "same key must give the same stream");
    CHECK(!same_ac, "different keys must give different streams");
    /* rng_below is uniform enough: chi-square on 6 bins. */
    int bins[6] = {0};
    rng_seed(&a, 7);
    for (int i = 0; i < 60000; i++) bins[rng_below(&a, 6)]++;
    double chi = 0;
    for (int i = 0; i < 6; i++) chi += (bins[i] - 10000.0) * (bins[i] - 10000.0) / 10000.0;
    CHECK(chi < 20.5, "chi-square %.2f too large for 5 dof", chi);
    double s = 0, s2 = 0;
    for (int i = 0; i < 100000; i++) {
        double v = rng_normal(&a);
        s += v;
        s2 += v * v;
    }
    CHECK(fabs(s / 1e5) < 0.02 && fabs(s2 / 1e5 - 1) < 0.03, "normal mean %.3f var %.3f", s / 1e5, s2 / 1e5);
    uint32_t v[10];
    for (uint32_t i = 0; i < 10; i++) v[i] = i;
    rng_shuffle_u32(&a, v, 10);
    uint32_t seen = 0;
    for (int i = 0; i < 10; i++) seen |= 1u << v[i];
    CHECK(seen == 0x3ff, "shuffle must be a permutation");
}

static void test_files(void)
{
    char dir[] = "/tmp/ferc_test_core_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256], sub[256];
    snprintf(sub, sizeof sub, "%s/a/b/c", dir);
    CHECK_OK(file_mkdirs(sub));
    CHECK(file_is_dir(sub));
    snprintf(path, sizeof path, "%s/a/f.bin", dir);
    CHECK_OK(file_write_atomic(path, "hello", 5));
    uint8_t *data;
    size_t n;
    CHECK_OK(file_read_all(path, &data, &n));
    CHECK(n == 5 && !memcmp(data, "hello", 5));
    free(data);
    /* An aborted write leaves the old file untouched and no temp file behind. */
    atomic_file *af;
    CHECK_OK(atomic_file_open(&af, path));
    CHECK_OK(atomic_file_write(af, "garbage!", 8));
    atomic_file_abort(af);
    CHECK_OK(file_read_all(path, &data, &n));
    CHECK(n == 5 && !memcmp(data, "hello", 5));
    free(data);
    CHECK(file_read_all("/nonexistent/file", &data, &n) == FERC_ERR_IO);
    CHECK(strstr(ferc_last_error(), "/nonexistent/file") != NULL);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

static void test_halfs(void)
{
    CHECK(bf16_to_f32(f32_to_bf16(1.0f)) == 1.0f);
    CHECK(f32_to_bf16(1.00390625f) == 0x3f80); /* tie rounds to even */
    CHECK(f16_to_f32(f32_to_f16(0.5f)) == 0.5f);
    CHECK(f32_to_f16(65504.0f) == 0x7bff);
#if defined(__GNUC__) && !defined(__clang__) && defined(__FLT16_MAX__)
    /* the hand-written conversions against the compiler's _Float16: every half, and floats
     * around every half boundary (ties, subnormals, overflow) */
    int bad16 = 0;
    for (uint32_t u = 0; u < 65536; u++) {
        _Float16 h;
        uint16_t v = (uint16_t)u;
        memcpy(&h, &v, 2);
        const float want = (float)h, got = f16_to_f32(v);
        if (want == want ? memcmp(&want, &got, 4) != 0 : got == got) bad16++;
        if (want == want && f32_to_f16(want) != v) bad16++;
        for (int d = -2; d <= 2; d++) { /* neighbours of the value, and of the midpoint above it */
            uint32_t bits;
            memcpy(&bits, &want, 4);
            if (want != want || (bits & 0x7f800000u) == 0x7f800000u) continue;
            float probe[2];
            uint32_t b1 = bits + (uint32_t)d, mid;
            memcpy(&probe[0], &b1, 4);
            const float next = f16_to_f32((uint16_t)(v + 1));
            const float m = 0.5f * (want + next);
            memcpy(&mid, &m, 4);
            mid += (uint32_t)d;
            memcpy(&probe[1], &mid, 4);
            for (int q = 0; q < 2; q++) {
                _Float16 r = (_Float16)probe[q];
                uint16_t rv;
                memcpy(&rv, &r, 2);
                if (probe[q] == probe[q] && f32_to_f16(probe[q]) != rv) bad16++;
            }
        }
    }
    CHECK(bad16 == 0, "%d f16 conversions differ from _Float16's", bad16);
#endif
}

int main(void)
{
    test_errors();
    test_rng();
    test_files();
    test_halfs();
    return test_finish("test_core");
}
