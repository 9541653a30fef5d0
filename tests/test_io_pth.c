/* Weight import: torch .pth (zip and legacy), the restricted pickle reader, key handling, the
 * SHA-256 name check, and the round trip .pth -> safetensors -> tensor_dict. Fixtures come from
 * tools/gen_pth_fixtures.py (tests/fixtures/io); corrupt inputs are mostly made here in /tmp. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "core/core.h"
#include "io/pickle.h"
#include "io/pth.h"
#include "io/tensor_dict.h"
#include "testutil.h"

#define FIX "tests/fixtures/io/"

static char tmpdir[64];

static const char *tmp_path(const char *name)
{
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static bool error_mentions(const char *what)
{
    bool ok = strstr(ferc_last_error(), what) != NULL;
    if (!ok) fprintf(stderr, "  message was: %s\n", ferc_last_error());
    return ok;
}

/* Every tensor of got equals want bitwise (same names, order-independent, shapes, dtypes). */
static void check_same_dict(const char *what, const tensor_dict *got, const tensor_dict *want)
{
    CHECK(got->count == want->count, "%s: %d tensors, want %d", what, got->count, want->count);
    for (int i = 0; i < want->count; i++) {
        const td_tensor *w = &want->items[i], *g = td_find(got, w->name);
        CHECK(g != NULL, "%s: missing '%s'", what, w->name);
        if (!g) continue;
        bool shape = g->ndim == w->ndim;
        for (int k = 0; shape && k < g->ndim; k++) shape = g->shape[k] == w->shape[k];
        CHECK(shape, "%s: '%s' shape differs", what, w->name);
        CHECK(g->dtype == w->dtype, "%s: '%s' dtype differs", what, w->name);
        if (!shape || g->dtype != w->dtype) continue;
        size_t bytes = w->numel * (w->dtype == TD_F32 ? sizeof(float) : sizeof(int64_t));
        const void *a = g->dtype == TD_F32 ? (const void *)g->f32 : (const void *)g->i64;
        const void *b = w->dtype == TD_F32 ? (const void *)w->f32 : (const void *)w->i64;
        CHECK(memcmp(a, b, bytes) == 0, "%s: '%s' values differ", what, w->name);
    }
}

static void test_formats(const tensor_dict *ref)
{
    const char *files[] = {FIX "tiny_zip.pth", FIX "tiny_legacy.pth", FIX "tiny_nested_module.pth",
                           FIX "tiny_network_legacy.pth", FIX "tiny_model_key.pth",
                           FIX "tiny_proto4_zip.pth", FIX "tiny_proto4_legacy.pth"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        tensor_dict d;
        CHECK_OK(td_load(&d, files[i], NULL));
        check_same_dict(files[i], &d, ref);
        td_free(&d);
    }
    /* Source dtypes are remembered; views sharing a storage come out as their own contiguous copies. */
    tensor_dict d;
    CHECK_OK(pth_read(&d, FIX "tiny_legacy.pth", NULL));
    const td_tensor *t = td_find(&d, "fc.weight");
    CHECK(t && t->source == ST_F16, "fc.weight came from a HalfStorage");
    t = td_find(&d, "bn1.weight");
    CHECK(t && t->source == ST_BF16, "bn1.weight came from a BFloat16Storage");
    t = td_find(&d, "bn1.num_batches_tracked");
    CHECK(t && t->dtype == TD_I64 && t->ndim == 0 && t->numel == 1 && t->i64[0] == 7, "num_batches_tracked = 7");
    t = td_find(&d, "shared.transposed");
    /* base = arange(24).reshape(4, 6) / 8 - 1; transposed[i][j] = base[j][i] */
    CHECK(t && t->ndim == 2 && t->shape[0] == 6 && t->shape[1] == 4 && t->f32[1] == 6.0f / 8 - 1 &&
              t->f32[4] == 1.0f / 8 - 1,
          "transposed view materialised");
    t = td_find(&d, "shared.column");
    CHECK(t && t->ndim == 1 && t->shape[0] == 4 && t->f32[3] == 20.0f / 8 - 1, "strided column materialised");
    td_free(&d);

    /* An explicit prefix, and the auto-strip turned off. */
    td_load_options o = {.no_auto_strip = true};
    CHECK_OK(td_load(&d, FIX "tiny_network_legacy.pth", &o));
    CHECK(td_find(&d, "network.fc.bias") != NULL, "prefix kept when auto-strip is off");
    td_free(&d);
    o = (td_load_options){.strip_prefix = "network."};
    CHECK_OK(td_load(&d, FIX "tiny_network_legacy.pth", &o));
    check_same_dict("explicit strip", &d, ref);
    td_free(&d);
    o = (td_load_options){.strip_prefix = "module."};
    CHECK(td_load(&d, FIX "tiny_network_legacy.pth", &o) == FERC_ERR_FORMAT && error_mentions("module."),
          "a prefix that some key lacks is refused");
    o = (td_load_options){.nested_key = "nothere"};
    CHECK(td_load(&d, FIX "tiny_model_key.pth", &o) == FERC_ERR_NOT_FOUND && error_mentions("nothere"),
          "a missing nested key is named");
    o = (td_load_options){.nested_key = "model"};
    CHECK_OK(td_load(&d, FIX "tiny_model_key.pth", &o));
    check_same_dict("nested_key=model", &d, ref);
    td_free(&d);
}

static void test_round_trip(const tensor_dict *ref)
{
    tensor_dict d, back;
    CHECK_OK(td_load(&d, FIX "tiny_zip.pth", NULL));
    const char *out = tmp_path("tiny.safetensors");
    CHECK_OK(td_write_safetensors(&d, out));
    CHECK_OK(td_read_safetensors(&back, out));
    check_same_dict("round trip", &back, &d);
    check_same_dict("round trip vs python", &back, ref);
    td_free(&d);
    td_free(&back);

    /* timm-style safetensors with the same keys, through the same loader. */
    CHECK_OK(td_load(&d, FIX "tiny_timm.safetensors", NULL));
    CHECK(d.count == ref->count, "timm file has all tensors");
    const td_tensor *a = td_find(&d, "conv1.weight"), *b = td_find(ref, "conv1.weight");
    CHECK(a && b && a->source == ST_F16 && a->numel == b->numel, "timm F16 tensor");
    if (a && b && a->numel == b->numel) check_close("timm conv1.weight (F16)", a->f32, b->f32, a->numel, 1e-3);
    a = td_find(&d, "fc.weight");
    b = td_find(ref, "fc.weight");
    CHECK(a && b && a->source == ST_BF16, "timm BF16 tensor");
    if (a && b && a->numel == b->numel) check_close("timm fc.weight (BF16)", a->f32, b->f32, a->numel, 1e-2);
    a = td_find(&d, "bn1.num_batches_tracked");
    CHECK(a && a->dtype == TD_I64 && a->i64[0] == 7, "timm int64 tensor");
    td_free(&d);
}

static void test_densenet_keys(void)
{
    tensor_dict d;
    CHECK_OK(td_load(&d, FIX "densenet_oldkeys.pth", NULL));
    const char *want[] = {"features.conv0.weight", "features.denseblock1.denselayer1.norm1.weight",
                          "features.denseblock1.denselayer1.norm1.running_var",
                          "features.denseblock1.denselayer1.conv1.weight",
                          "features.denseblock1.denselayer12.conv2.weight",
                          "features.denseblock1.denselayer12.relu2.bias"};
    CHECK(d.count == 6, "6 tensors");
    for (size_t i = 0; i < 6; i++) CHECK(td_find(&d, want[i]) != NULL, "renamed key %s", want[i]);
    td_free(&d);
    td_load_options o = {.no_densenet_fix = true};
    CHECK_OK(td_load(&d, FIX "densenet_oldkeys.pth", &o));
    CHECK(td_find(&d, "features.denseblock1.denselayer1.norm.1.weight") != NULL, "fix can be turned off");
    /* Keys the regex must leave alone. */
    int64_t one = 1;
    float *v = malloc(sizeof *v);
    CHECK_OK(td_add(&d, "features.denseblock1.denselayer3.norm.3.weight", TD_F32, ST_F32, 1, &one, v));
    v = malloc(sizeof *v);
    CHECK_OK(td_add(&d, "features.norm5.weight", TD_F32, ST_F32, 1, &one, v));
    int renamed = -1;
    CHECK_OK(td_fix_densenet_keys(&d, &renamed));
    CHECK(renamed == 5, "5 keys renamed, got %d", renamed);
    CHECK(td_find(&d, "features.denseblock1.denselayer3.norm.3.weight") != NULL, "norm.3 untouched");
    CHECK(td_find(&d, "features.norm5.weight") != NULL, "norm5 untouched");
    td_free(&d);
}

static int sha256_hex(const char *path, char *hex)
{
    uint8_t *buf;
    size_t n;
    int rc = file_read_all(path, &buf, &n);
    if (rc) return rc;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_Digest(buf, n, md, &len, EVP_sha256(), NULL);
    for (unsigned i = 0; i < len; i++) sprintf(hex + 2 * i, "%02x", md[i]);
    free(buf);
    return FERC_OK;
}

static int copy_file(const char *from, const char *to)
{
    uint8_t *buf;
    size_t n;
    int rc = file_read_all(from, &buf, &n);
    if (rc) return rc;
    rc = file_write_atomic(to, buf, n);
    free(buf);
    return rc;
}

static void test_hash_names(void)
{
    char hex[2 * EVP_MAX_MD_SIZE + 1] = "";
    CHECK_OK(sha256_hex(FIX "tiny_zip.pth", hex));
    char name[128];
    snprintf(name, sizeof name, "tiny-%.8s.pth", hex);
    const char *good = tmp_path(name);
    CHECK_OK(copy_file(FIX "tiny_zip.pth", good));
    tensor_dict d;
    CHECK_OK(td_load(&d, good, NULL));
    td_free(&d);
    snprintf(name, sizeof name, "resnet152-%.12s.pth", hex);   /* longer prefixes are checked too */
    good = tmp_path(name);
    CHECK_OK(copy_file(FIX "tiny_zip.pth", good));
    CHECK_OK(td_load(&d, good, NULL));
    td_free(&d);

    const char *bad = tmp_path(hex[0] == '0' ? "resnet152-1f4f9c45.pth" : "resnet152-0f4f9c45.pth");
    CHECK_OK(copy_file(FIX "tiny_zip.pth", bad));
    CHECK(td_load(&d, bad, NULL) == FERC_ERR_FORMAT && error_mentions("SHA-256") && error_mentions(hex),
          "a hash mismatch is refused, naming both hashes");
    td_load_options o = {.no_hash_check = true};
    CHECK_OK(td_load(&d, bad, &o));
    td_free(&d);
    /* Names that only look a little like hashed ones are not checked. */
    const char *plain = tmp_path("resnet-v2.pth");
    CHECK_OK(copy_file(FIX "tiny_zip.pth", plain));
    CHECK_OK(td_load(&d, plain, NULL));
    td_free(&d);
}

static int write_prefix(const char *from, size_t keep_less, const char *to, size_t *orig)
{
    uint8_t *buf;
    size_t n;
    int rc = file_read_all(from, &buf, &n);
    if (rc) return rc;
    *orig = n;
    rc = file_write_atomic(to, buf, n > keep_less ? n - keep_less : 0);
    free(buf);
    return rc;
}

/* Loads a corrupt file: must fail (with `code` unless 0) and mention `what`. */
static void expect_fail(const char *path, int code, const char *what)
{
    tensor_dict d;
    td_load_options o = {.no_hash_check = true};
    int rc = td_load(&d, path, &o);
    CHECK(rc != FERC_OK && (code == 0 || rc == code) && d.count == 0, "%s: rc %d", path, rc);
    CHECK(error_mentions(what), "%s: message mentions '%s'", path, what);
    CHECK(rc == FERC_OK || error_mentions(path), "%s: message names the file", path);
    printf("  refused as expected: %s\n", ferc_last_error());
    td_free(&d);
}

static void test_corrupt_files(void)
{
    size_t n;
    /* Truncations at many points of both formats: never a crash, always an error. */
    const char *srcs[] = {FIX "tiny_zip.pth", FIX "tiny_legacy.pth"};
    for (int s = 0; s < 2; s++) {
        CHECK_OK(write_prefix(srcs[s], 0, tmp_path("probe"), &n));
        int failures = 0, cases = 0;
        for (size_t cut = 1; cut < n; cut += (cut < 64 ? 1 : 37)) {
            const char *p = tmp_path("truncated.pth");
            size_t dummy;
            CHECK_OK(write_prefix(srcs[s], cut, p, &dummy));
            tensor_dict d;
            int rc = td_load(&d, p, NULL);
            cases++;
            if (rc != FERC_OK && d.count == 0 && strlen(ferc_last_error()) > 10) failures++;
            else fprintf(stderr, "  %s cut by %zu: rc %d, %s\n", srcs[s], cut, rc, ferc_last_error());
            td_free(&d);
        }
        CHECK(failures == cases, "%s: %d of %d truncations refused", srcs[s], failures, cases);
    }
    CHECK_OK(write_prefix(FIX "tiny_legacy.pth", 5, tmp_path("trunc_legacy.pth"), &n));
    expect_fail(tmp_path("trunc_legacy.pth"), FERC_ERR_FORMAT, "truncated");
    CHECK_OK(write_prefix(FIX "tiny_zip.pth", 30, tmp_path("trunc_zip.pth"), &n));
    expect_fail(tmp_path("trunc_zip.pth"), FERC_ERR_FORMAT, "zip");

    /* Wrong magic: a legacy file whose first pickle is another long. */
    uint8_t *buf;
    CHECK_OK(file_read_all(FIX "tiny_legacy.pth", &buf, &n));
    buf[5] ^= 0x01;
    CHECK_OK(file_write_atomic(tmp_path("badmagic.pth"), buf, n));
    free(buf);
    expect_fail(tmp_path("badmagic.pth"), FERC_ERR_FORMAT, "magic");
    const char junk[] = "GIF89a this is not a weight file at all";
    CHECK_OK(file_write_atomic(tmp_path("junk.pth"), junk, sizeof junk));
    expect_fail(tmp_path("junk.pth"), FERC_ERR_FORMAT, "neither");

    expect_fail(FIX "no_datapkl.pth", FERC_ERR_FORMAT, "data.pkl");
    expect_fail(FIX "evil_zip.pth", FERC_ERR_UNSUPPORTED, "os.system");
    expect_fail(FIX "short_storage.pth", FERC_ERR_FORMAT, "storage '0'");

    /* A legacy file whose data pickle calls os.system: the header pickles, then the bad one. */
    static const uint8_t evil_legacy[] = {
        0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, '.',
        0x80, 0x02, 'M', 0xe9, 0x03, '.',
        0x80, 0x02, '}', '.',
        0x80, 0x02, 'c', 'o', 's', '\n', 's', 'y', 's', 't', 'e', 'm', '\n',
        'X', 2, 0, 0, 0, 'l', 's', 0x85, 'R', '.'};
    CHECK_OK(file_write_atomic(tmp_path("evil_legacy.pth"), evil_legacy, sizeof evil_legacy));
    expect_fail(tmp_path("evil_legacy.pth"), FERC_ERR_UNSUPPORTED, "os.system");
}

/* A legacy file assembled byte by byte: one (3, 2) float tensor with strides (1, 3) -- a
 * transpose -- on a storage whose declared and stored element count is `numel`, next to a
 * list that contains itself (the storage walk must not loop). */
static size_t hand_legacy(uint8_t *out, uint8_t numel)
{
    static const uint8_t head[] = {
        0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, '.',
        0x80, 0x02, 'M', 0xe9, 0x03, '.', 0x80, 0x02, '}', '.'};
    /* Hex escapes are closed with "" so that a following hex digit is not swallowed. */
    static const char data1[] = "\x80\x02}("
                                "X\x01\x00\x00\x00" "c" "]q\x00h\x00" "a"   /* c = a list holding itself */
                                "X\x01\x00\x00\x00" "w"
                                "ctorch._utils\n_rebuild_tensor_v2\n(("
                                "X\x07\x00\x00\x00" "storage" "ctorch\nFloatStorage\n"
                                "X\x01\x00\x00\x00" "0" "X\x03\x00\x00\x00" "cpu" "K";
    static const char data2[] = "NtQK\x00" "K\x03" "K\x02\x86" "K\x01" "K\x03\x86\x89)tRu."
                                "\x80\x02](X\x01\x00\x00\x00" "0" "e.";
    size_t n = 0;
    memcpy(out + n, head, sizeof head);
    n += sizeof head;
    memcpy(out + n, data1, sizeof data1 - 1);
    n += sizeof data1 - 1;
    out[n++] = numel;
    memcpy(out + n, data2, sizeof data2 - 1);
    n += sizeof data2 - 1;
    uint64_t count = numel;
    memcpy(out + n, &count, 8);   /* the test machines are little-endian, like the format */
    n += 8;
    for (int i = 0; i < numel; i++) {
        float v = (float)i;
        memcpy(out + n, &v, 4);
        n += 4;
    }
    return n;
}

static void test_hand_legacy(void)
{
    uint8_t buf[512];
    size_t n = hand_legacy(buf, 6);
    CHECK_OK(file_write_atomic(tmp_path("hand6.pth"), buf, n));
    tensor_dict d;
    CHECK_OK(td_load(&d, tmp_path("hand6.pth"), NULL));
    const td_tensor *t = td_find(&d, "w");
    static const float want[6] = {0, 3, 1, 4, 2, 5};
    CHECK(t && t->ndim == 2 && t->shape[0] == 3 && t->shape[1] == 2 && !memcmp(t->f32, want, sizeof want),
          "hand-made transposed tensor");
    td_free(&d);
    n = hand_legacy(buf, 5);
    CHECK_OK(file_write_atomic(tmp_path("hand5.pth"), buf, n));
    expect_fail(tmp_path("hand5.pth"), FERC_ERR_FORMAT, "shorter than the tensor needs");
}

/* Random byte flips in both formats: any outcome but a crash (run under ASan in CI's sanitizer
 * build); a failure leaves the dict empty with a message. */
static void test_mutations(void)
{
    const char *srcs[] = {FIX "tiny_zip.pth", FIX "tiny_legacy.pth", FIX "tiny_proto4_legacy.pth"};
    rng r;
    rng_seed(&r, 20240607);
    for (int s = 0; s < 3; s++) {
        uint8_t *orig;
        size_t n;
        CHECK_OK(file_read_all(srcs[s], &orig, &n));
        uint8_t *buf = malloc(n);
        int bad = 0;
        for (int it = 0; it < 150; it++) {
            memcpy(buf, orig, n);
            int flips = 1 + (int)rng_below(&r, 3);
            for (int k = 0; k < flips; k++) buf[rng_below(&r, (uint32_t)n)] ^= (uint8_t)(1 + rng_below(&r, 255));
            tensor_dict d;
            td_init(&d);
            int rc = pth_parse(&d, buf, n, "mutant", NULL);
            if (rc != FERC_OK && (d.count != 0 || strlen(ferc_last_error()) < 10)) bad++;
            td_free(&d);
        }
        CHECK(bad == 0, "%s: %d mutants failed without a clean error", srcs[s], bad);
        free(buf);
        free(orig);
    }
}

/* The pickle reader on hand-made byte strings. */
static void test_pickle(void)
{
    pk_arena *a = pk_arena_create();
    pk_value *v;
    size_t used;
    static const uint8_t ok[] = {0x80, 2, '}', 'q', 0, '(', 'X', 1, 0, 0, 0, 'a', 'K', 5,
                                 'X', 1, 0, 0, 0, 'b', ']', '(', 'J', 0xff, 0xff, 0xff, 0xff,
                                 0x8a, 1, 0x80, 'N', 0x88, 'e', 'u', '.', 'x'};
    CHECK_OK(pk_load(a, ok, sizeof ok, "ok", &used, &v));
    CHECK(used == sizeof ok - 1, "consumed up to STOP");
    const pk_value *x = pk_dict_get(v, "a");
    CHECK(x && x->kind == PK_INT && x->u.i == 5, "a = 5");
    x = pk_dict_get(v, "b");
    CHECK(x && x->kind == PK_LIST && x->u.seq.n == 4 && x->u.seq.items[0]->u.i == -1 &&
              x->u.seq.items[1]->u.i == -128 && x->u.seq.items[2]->kind == PK_NONE &&
              x->u.seq.items[3]->kind == PK_BOOL,
          "b = [-1, -128, None, True]");

    struct { const char *name; const char *bytes; size_t n; int code; const char *msg; } bad[] = {
        {"eval", "\x80\x02" "cbuiltins\neval\nX\x01\x00\x00\x001\x85R.", 24, FERC_ERR_UNSUPPORTED, "builtins.eval"},
        {"os.system via STACK_GLOBAL", "\x80\x04\x8c\x02os\x8c\x06system\x93.", 16, FERC_ERR_UNSUPPORTED, "os.system"},
        {"a model class", "\x80\x02" "ctorchvision.models.resnet\nResNet\n.", 37, FERC_ERR_UNSUPPORTED, "state_dict"},
        {"INST", "\x80\x02(ios\nsystem\n.", 15, FERC_ERR_UNSUPPORTED, "INST"},
        {"NEWOBJ", "\x80\x02)\x81.", 5, FERC_ERR_UNSUPPORTED, "NEWOBJ"},
        {"EXT1", "\x80\x02\x82\x01.", 5, FERC_ERR_UNSUPPORTED, "EXT1"},
        {"unknown opcode", "\x80\x02\xff.", 4, FERC_ERR_UNSUPPORTED, "0xff"},
        {"text PERSID", "\x80\x02P0\n.", 6, FERC_ERR_UNSUPPORTED, "PERSID"},
        {"storage type called", "\x80\x02" "ctorch\nFloatStorage\n)R.", 25, FERC_ERR_FORMAT, "persistent id"},
        {"memo miss", "\x80\x02h\x05.", 5, FERC_ERR_FORMAT, "memo"},
        {"underflow", "\x80\x02s.", 4, FERC_ERR_FORMAT, "underflow"},
        {"no STOP", "\x80\x02K\x01", 4, FERC_ERR_FORMAT, "STOP"},
        {"string past end", "\x80\x02X\xff\xff\xff\x7f" "abc", 10, FERC_ERR_FORMAT, "truncated"},
        {"protocol 0", "\x80\x00N.", 4, FERC_ERR_FORMAT, "protocol"},
        {"bad persid", "\x80\x02X\x01\x00\x00\x00xQ.", 10, FERC_ERR_FORMAT, "persistent id"},
        {"huge memo index", "\x80\x02Nr\xff\xff\xff\x7f.", 9, FERC_ERR_FORMAT, "memo"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = pk_load(a, (const uint8_t *)bad[i].bytes, bad[i].n, bad[i].name, NULL, &v);
        CHECK(rc == bad[i].code, "%s: rc %d, want %d (%s)", bad[i].name, rc, bad[i].code, ferc_last_error());
        CHECK(error_mentions(bad[i].msg), "%s mentions %s", bad[i].name, bad[i].msg);
    }
    pk_arena_destroy(a);
}

static void test_check(void)
{
    tensor_dict d;
    CHECK_OK(td_load(&d, FIX "tiny_zip.pth", NULL));
    td_spec spec[64];
    int n = 0;
    for (int i = 0; i < d.count; i++) {
        spec[n].name = d.items[i].name;
        spec[n].ndim = d.items[i].ndim;
        memcpy(spec[n].shape, d.items[i].shape, sizeof spec[n].shape);
        n++;
    }
    CHECK_OK(td_check(&d, spec, n));
    spec[0].shape[0] += 1;
    spec[1].name = "layer9.weight";
    CHECK(td_check(&d, spec, n) == FERC_ERR_SHAPE, "differences found");
    CHECK(error_mentions("missing: layer9.weight") && error_mentions(d.items[1].name) &&
              error_mentions(d.items[0].name) && error_mentions("1 missing, 1 unexpected, 1 mis-shaped"),
          "differences listed by name");
    CHECK_OK(td_remove(&d, "fc.bias"));
    CHECK(td_find(&d, "fc.bias") == NULL && td_remove(&d, "fc.bias") == FERC_ERR_NOT_FOUND, "removed");
    td_free(&d);
}

/* Files crafted with Python's pickle module (tools/gen_hostile_pickles.py): os.system,
 * builtins.eval/exec, subprocess, getattr, importlib, INST/OBJ/NEWOBJ and REDUCE on what is
 * not a tensor rebuild function, each in torch's zip and legacy layouts. Every one is refused
 * with a format error whose message names the file and the global or construct. (The reader
 * has no way to call a function: it only resolves the allow-list.) */
static void test_hostile(void)
{
    uint8_t *list = NULL;
    size_t n = 0;
    CHECK_OK(file_read_all(FIX "hostile/expect.tsv", &list, &n));
    int files = 0;
    for (char *save = NULL, *line = list ? strtok_r((char *)list, "\n", &save) : NULL; line;
         line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#') continue;
        char *tab = strchr(line, '\t');
        CHECK(tab != NULL, "expect.tsv: %s", line);
        if (!tab) continue;
        *tab = 0;
        char path[512];
        snprintf(path, sizeof path, FIX "hostile/%s", line);
        tensor_dict d;
        td_load_options o = {.no_hash_check = true};
        int rc = td_load(&d, path, &o);
        CHECK(rc == FERC_ERR_UNSUPPORTED || rc == FERC_ERR_FORMAT, "%s: rc %d", path, rc);
        CHECK(d.count == 0 && error_mentions(tab + 1) && error_mentions(path), "%s: message '%s' names '%s' and the file",
              path, ferc_last_error(), tab + 1);
        if (files < 4 || strstr(line, "reduce")) printf("  refused: %s\n", ferc_last_error());
        td_free(&d);
        files++;
    }
    free(list);
    printf("hostile pickles: %d files refused\n", files);
    CHECK(files >= 34, "only %d hostile files", files);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ferc_test_io_XXXXXX");
    if (!mkdtemp(tmpdir)) return test_skip("cannot create a temporary folder");
    tensor_dict ref;
    CHECK_OK(td_read_safetensors(&ref, FIX "tiny_ref.safetensors"));
    test_pickle();
    test_formats(&ref);
    test_round_trip(&ref);
    test_densenet_keys();
    test_hash_names();
    test_corrupt_files();
    test_hand_legacy();
    test_mutations();
    test_check();
    test_hostile();
    td_free(&ref);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return test_finish("test_io_pth");
}
