/* safetensors reader on corrupt headers (each made here from bytes), writer round trip with
 * F16/BF16 storage and metadata, and td_load on safetensors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "io/safetensors.h"
#include "io/tensor_dict.h"
#include "testutil.h"

/* Builds a file in memory: 8-byte length, the JSON header, then `data_bytes` bytes of data. */
static uint8_t *make_file(const char *json, size_t data_bytes, int64_t header_len_delta, size_t *size)
{
    size_t h = strlen(json);
    *size = 8 + h + data_bytes;
    uint8_t *buf = calloc(1, *size);
    uint64_t claimed = (uint64_t)((int64_t)h + header_len_delta);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(claimed >> (8 * i));
    memcpy(buf + 8, json, h);
    for (size_t i = 0; i < data_bytes; i++) buf[8 + h + i] = (uint8_t)i;
    return buf;
}

static void expect_bad(const char *name, const char *json, size_t data_bytes, int64_t delta, const char *msg)
{
    size_t size;
    uint8_t *buf = make_file(json, data_bytes, delta, &size);
    st_file f;
    int rc = st_parse(&f, buf, size, name);   /* takes buf */
    CHECK(rc == FERC_ERR_FORMAT, "%s: rc %d", name, rc);
    bool ok = strstr(ferc_last_error(), msg) && strstr(ferc_last_error(), name);
    CHECK(ok, "%s: message mentions '%s': %s", name, msg, ferc_last_error());
    printf("  refused as expected: %s\n", ferc_last_error());
    CHECK(f.count == 0 && f.buf == NULL, "%s: file left empty", name);
}

static void test_corrupt(void)
{
    const char *good = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                       "\"b\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[8,16]}}";
    size_t size;
    uint8_t *buf = make_file(good, 16, 0, &size);
    st_file f;
    CHECK_OK(st_parse(&f, buf, size, "good"));
    CHECK(f.count == 2 && st_find(&f, "b") && st_find(&f, "b")->dtype == ST_F16, "good file parsed");
    st_close(&f);

    expect_bad("header-longer-than-file", good, 16, 1000, "header claims");
    expect_bad("header-length-huge", good, 16, (int64_t)1 << 62, "header claims");
    expect_bad("negative-header-length", "", 0, -8, "header claims");
    uint8_t *tiny = calloc(1, 5);
    CHECK(st_parse(&f, tiny, 5, "tiny") == FERC_ERR_FORMAT && strstr(ferc_last_error(), "not a safetensors"),
          "5-byte file refused");
    expect_bad("overlap",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
               16, 0, "overlap");
    expect_bad("same-offsets",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
               16, 0, "overlap");
    expect_bad("wrong-dtype", "{\"a\":{\"dtype\":\"float32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 0,
               "unsupported dtype float32");
    expect_bad("lowercase-dtype", "{\"a\":{\"dtype\":\"f16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 8, 0,
               "unsupported dtype f16");
    expect_bad("past-end", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, 0,
               "outside");
    expect_bad("size-mismatch", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, 0,
               "shape needs");
    expect_bad("bad-json", "{\"a\":{\"dtype\":", 8, 0, "not a JSON object");
    expect_bad("no-offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, 0, "lacks");
    expect_bad("string-offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[\"x\",\"y\"]}}", 8, 0,
               "data_offsets");
    expect_bad("fractional-shape", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,6]}}", 8, 0,
               "bad shape");
    expect_bad("negative-shape", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, 0,
               "bad shape");
    expect_bad("bad-metadata", "{\"__metadata__\":{\"k\":3}}", 0, 0, "metadata");

    /* Truncated real files, through st_read and td_load. */
    uint8_t *file;
    size_t n;
    CHECK_OK(file_read_all("tests/fixtures/io/tiny_ref.safetensors", &file, &n));
    const char *p = "/tmp/ferc_test_io_st_trunc.safetensors";
    for (size_t cut = 1; cut < n; cut += 97) {
        CHECK_OK(file_write_atomic(p, file, n - cut));
        tensor_dict d;
        int rc = td_load(&d, p, NULL);
        CHECK(rc != FERC_OK && d.count == 0, "cut %zu refused", cut);
    }
    free(file);
    remove(p);
}

static void test_writer(void)
{
    float a[6] = {1.0f, -2.5f, 3.25f, 65504.0f, 1e-8f, -0.0f};
    int64_t shape[2] = {2, 3}, one = 1, count = 42;
    st_writer *w = st_writer_create();
    CHECK_OK(st_writer_add(w, "a", ST_F32, 2, shape, a));
    CHECK_OK(st_writer_add_f32_as(w, "a16", ST_F16, 2, shape, a));
    CHECK_OK(st_writer_add_f32_as(w, "abf", ST_BF16, 2, shape, a));
    CHECK_OK(st_writer_add(w, "n", ST_I64, 0, &one, &count));
    CHECK(st_writer_add(w, "a", ST_F32, 2, shape, a) == FERC_ERR_INVALID, "duplicate name refused");
    CHECK_OK(st_writer_meta(w, "arch", "resnet18"));
    const char *p = "/tmp/ferc_test_io_st_writer.safetensors";
    CHECK_OK(st_writer_save(w, p));
    st_writer_destroy(w);

    st_file f;
    CHECK_OK(st_read(&f, p));
    CHECK(f.count == 4 && st_meta(&f, "arch") && !strcmp(st_meta(&f, "arch"), "resnet18"), "read back");
    float got[6];
    CHECK_OK(st_to_f32(st_find(&f, "a"), got, 6));
    CHECK(!memcmp(got, a, sizeof a), "F32 bitwise");
    CHECK_OK(st_to_f32(st_find(&f, "a16"), got, 6));
    CHECK(got[0] == 1.0f && got[1] == -2.5f && got[3] == 65504.0f, "F16 values");
    CHECK_OK(st_to_f32(st_find(&f, "abf"), got, 6));
    CHECK(got[0] == 1.0f && got[2] == 3.25f, "BF16 values");
    /* The data area starts 8-byte aligned (tensors follow each other without holes, as
     * Hugging Face's reader requires, so only the first is guaranteed to be aligned). */
    CHECK(((uintptr_t)(f.tensors[0].data - f.buf) % 8) == 0, "data area 8-byte aligned");
    st_close(&f);

    tensor_dict d;
    CHECK_OK(td_load(&d, p, NULL));
    const td_tensor *t = td_find(&d, "n");
    CHECK(t && t->dtype == TD_I64 && t->ndim == 0 && t->i64[0] == 42, "int64 scalar");
    t = td_find(&d, "a16");
    CHECK(t && t->dtype == TD_F32 && t->source == ST_F16 && t->numel == 6, "F16 -> f32");
    td_free(&d);
    remove(p);
}

int main(void)
{
    test_corrupt();
    test_writer();
    return test_finish("test_io_safetensors");
}
