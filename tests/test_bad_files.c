/* Bad files through the command line: ferc import, predict, eval, detect, camera and
 * train --resume, given truncated, bit-flipped, oversized and hostile files of every format
 * they read -- PyTorch .pth (zip and legacy pickle), safetensors models, JPEG, PNG, BMP and
 * PGM images, OpenCV cascade XML, the BlazeFace model, CSV split manifests, a run folder's
 * config.json, checkpoint and split.csv, and video -- must exit non-zero with a message that
 * names the file, and never by a signal, a sanitizer report or a hang. A file whose damage
 * leaves it valid (a bit flip in pixel data or in a weight) may also be accepted: those cases
 * are marked and counted.
 *
 * The files are generated here from good ones (fixtures, files the test writes, the system's
 * cascade); FERC_TEST_SEED varies the bit flips (default 1). */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"
#include "ferc.h"
#include "image/image.h"
#include "testutil.h"

#define CASCADE "/usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml"
#define TIMEOUT_S 120

static char root[256];
static const char *bin;
static rng flips;
static int n_cases, n_refused, n_accepted;
/* Run folder cases: shell commands run before ferc ({} stands for the bad file's path), and
 * the file name the message must give instead of the bad file's own. */
static const char *prep_fmt;
static const char *expect_name;

/* ---- buffers ------------------------------------------------------------------------------ */

typedef struct buf {
    uint8_t *d;
    size_t n;
} buf;

static buf load(const char *path)
{
    buf b = {0};
    CHECK_OK(file_read_all(path, &b.d, &b.n));
    return b;
}

static buf copy_of(const buf *src, size_t n)
{
    buf b = {malloc(n + 1), n};
    if (b.d && n) memcpy(b.d, src->d, n < src->n ? n : src->n);
    return b;
}

static void write_buf(const char *path, const buf *b)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL, "cannot write %s", path);
    if (!f) return;
    CHECK(fwrite(b->d, 1, b->n, f) == b->n);
    fclose(f);
}

/* The first occurrence of `find` replaced by `repl`; a failed check when it is missing. */
static buf subst(const buf *src, const char *find, const char *repl)
{
    const uint8_t *at = memmem(src->d, src->n, find, strlen(find));
    CHECK(at != NULL, "'%s' not found in the source file", find);
    if (!at) return copy_of(src, src->n);
    size_t pre = (size_t)(at - src->d), fl = strlen(find), rl = strlen(repl);
    buf b = {malloc(src->n - fl + rl + 1), src->n - fl + rl};
    memcpy(b.d, src->d, pre);
    memcpy(b.d + pre, repl, rl);
    memcpy(b.d + pre + rl, at + fl, src->n - pre - fl);
    return b;
}

static void flip_bits(buf *b, size_t from, size_t to, int count)
{
    if (to > b->n) to = b->n;
    for (int i = 0; i < count && to > from; i++) {
        size_t at = from + rng_below(&flips, (uint32_t)(to - from));
        b->d[at] ^= (uint8_t)(1u << rng_below(&flips, 8));
    }
}

/* ---- running ferc ------------------------------------------------------------------------- */

/* tmpl with every {} replaced by path */
static void fill(char *out, size_t n, const char *tmpl, const char *path)
{
    size_t k = 0;
    for (const char *t = tmpl; *t && k + 1 < n; t++) {
        if (t[0] == '{' && t[1] == '}') {
            k += (size_t)snprintf(out + k, n - k, "%s", path);
            if (k >= n) k = n - 1;
            t++;
        } else {
            out[k++] = *t;
        }
    }
    out[k] = 0;
}

/* Runs "ferc ARGS" (through sh for the quoting), stderr and stdout into ROOT/out; returns the
 * wait status, killing it after TIMEOUT_S. */
static int run_ferc(const char *prep, const char *args, bool *hung)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s%sexec '%s' %s >%s/out 2>&1 </dev/null", prep ? prep : "", prep ? " && " : "", bin,
             args, root);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    *hung = false;
    int status = 0;
    for (int ms = 0;; ms += 5) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) break;
        if (ms > TIMEOUT_S * 1000) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            *hung = true;
            break;
        }
        nanosleep(&(struct timespec){0, 5000000}, NULL);
    }
    return status;
}

/* One case: ferc ARGS (printf-formatted) reading the bad file `file`. may_succeed: the damage
 * can leave the file valid. */
static void expect(const char *label, const char *file, bool may_succeed, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void expect(const char *label, const char *file, bool may_succeed, const char *fmt, ...)
{
    char args[3072];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    bool hung;
    char prep[2048];
    if (prep_fmt) fill(prep, sizeof prep, prep_fmt, file);
    int st = run_ferc(prep_fmt ? prep : NULL, args, &hung);
    char path[300];
    snprintf(path, sizeof path, "%s/out", root);
    uint8_t *out = NULL;
    size_t n = 0;
    file_read_all(path, &out, &n);
    const char *text = out ? (const char *)out : "";
    const char *base = expect_name ? expect_name : strrchr(file, '/') ? strrchr(file, '/') + 1 : file;
    n_cases++;
    CHECK(!hung, "%s: ferc %s hung (killed after %d s)", label, args, TIMEOUT_S);
    CHECK(!WIFSIGNALED(st), "%s: ferc %s died of signal %d:\n%s", label, args, WIFSIGNALED(st) ? WTERMSIG(st) : 0, text);
    CHECK(!strstr(text, "Sanitizer") && !strstr(text, "runtime error:"), "%s: ferc %s:\n%s", label, args, text);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
        n_accepted++;
        CHECK(may_succeed, "%s: ferc %s accepted a bad file", label, args);
    } else if (WIFEXITED(st)) {
        n_refused++;
        CHECK(strstr(text, base) != NULL, "%s: ferc %s: the message does not name %s:\n%s", label, args, base, text);
        CHECK(WEXITSTATUS(st) < 126, "%s: ferc %s: exit %d", label, args, WEXITSTATUS(st));
        if (getenv("FERC_TEST_VERBOSE")) printf("  %-34s exit %d: %.*s", label, WEXITSTATUS(st), 160, text);
    }
    free(out);
}

enum {
    FLIPS_VALID = 1, /* bit flips can leave the file valid (pixels, weights, text) */
    TAIL_VALID = 2,  /* so can losing the last byte (a text file's final newline, an image's end marker) */
};

/* The usual damage to `good`, each written to ROOT/NAME-<kind>.EXT and run through the
 * arguments `tmpl` ({} stands for the bad file's path). */
static void damage(const buf *good, const char *name, const char *ext, int valid, size_t header, const char *tmpl)
{
    char path[512], label[128], args[3072];
    struct {
        const char *kind;
        size_t keep;
    } cuts[] = {{"empty", 0}, {"8-bytes", 8}, {"head", header}, {"half", good->n / 2}, {"all-but-1", good->n - 1}};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        if (cuts[i].keep >= good->n) continue;
        buf b = copy_of(good, cuts[i].keep);
        snprintf(path, sizeof path, "%s/%s-%s.%s", root, name, cuts[i].kind, ext);
        write_buf(path, &b);
        snprintf(label, sizeof label, "%s truncated (%s)", name, cuts[i].kind);
        fill(args, sizeof args, tmpl, path);
        expect(label, path, (valid & TAIL_VALID) && i == 4, "%s", args);
        free(b.d);
        unlink(path);
    }
    for (int k = 0; k < 3; k++) {
        buf b = copy_of(good, good->n);
        if (k == 0) flip_bits(&b, 0, header, 4);       /* in the header */
        else flip_bits(&b, 0, good->n, 8 * k);         /* anywhere */
        snprintf(path, sizeof path, "%s/%s-flip%d.%s", root, name, k, ext);
        write_buf(path, &b);
        snprintf(label, sizeof label, "%s bit-flipped (%s)", name, k == 0 ? "header" : "anywhere");
        fill(args, sizeof args, tmpl, path);
        expect(label, path, (valid & FLIPS_VALID) || k > 0, "%s", args);
        free(b.d);
        unlink(path);
    }
}

static void crafted(const buf *b, const char *name, const char *label, const char *tmpl)
{
    char path[512], args[3072];
    snprintf(path, sizeof path, "%s/%s", root, name);
    write_buf(path, b);
    fill(args, sizeof args, tmpl, path);
    expect(label, path, false, "%s", args);
    unlink(path);
}

/* ---- good files ---------------------------------------------------------------------------- */

static uint32_t crc32_of(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
    }
    return c ^ 0xffffffffu;
}

static void be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

static buf pgm_of(const image *g)
{
    char head[64];
    int hn = snprintf(head, sizeof head, "P5\n%d %d\n255\n", g->width, g->height);
    buf b = {malloc((size_t)hn + (size_t)g->width * g->height), (size_t)hn + (size_t)g->width * g->height};
    memcpy(b.d, head, (size_t)hn);
    for (int y = 0; y < g->height; y++) memcpy(b.d + hn + (size_t)y * g->width, g->data + (size_t)y * g->stride, (size_t)g->width);
    return b;
}

static buf bmp_of(const image *g) /* 24-bit, bottom-up */
{
    size_t row = ((size_t)g->width * 3 + 3) & ~(size_t)3, n = 54 + row * g->height;
    buf b = {calloc(1, n), n};
    uint8_t *h = b.d;
    h[0] = 'B', h[1] = 'M';
    uint32_t v[] = {(uint32_t)n, 0, 54, 40, (uint32_t)g->width, (uint32_t)g->height};
    memcpy(h + 2, &v[0], 4), memcpy(h + 10, &v[2], 4), memcpy(h + 14, &v[3], 4);
    memcpy(h + 18, &v[4], 4), memcpy(h + 22, &v[5], 4);
    h[26] = 1, h[28] = 24;
    for (int y = 0; y < g->height; y++)
        for (int x = 0; x < g->width; x++)
            memset(h + 54 + (size_t)(g->height - 1 - y) * row + 3 * (size_t)x, g->data[(size_t)y * g->stride + x], 3);
    return b;
}

/* ---- the cases ----------------------------------------------------------------------------- */

static void images(const char *face_jpg)
{
    image src, gray;
    CHECK_OK(image_load(&src, face_jpg, IMAGE_MODE_GRAY, 1));
    CHECK_OK(image_resize(&gray, &src, 96, 96));
    char png[300], jpg[300];
    snprintf(png, sizeof png, "%s/face.png", root);
    snprintf(jpg, sizeof jpg, "%s/face.jpg", root);
    CHECK_OK(image_save(&gray, png, 90));
    CHECK_OK(image_save(&gray, jpg, 90));
    buf fmt[4] = {load(jpg), load(png), bmp_of(&gray), pgm_of(&gray)};
    const char *ext[4] = {"jpg", "png", "bmp", "pgm"};
    size_t header[4] = {200, 40, 54, 12};
    for (int f = 0; f < 4; f++) {
        char name[32];
        snprintf(name, sizeof name, "image-%s", ext[f]);
        damage(&fmt[f], name, ext[f], FLIPS_VALID | TAIL_VALID, header[f], "predict {}");
        damage(&fmt[f], name, ext[f], FLIPS_VALID | TAIL_VALID, header[f], "detect {}");
    }
    /* Oversized: headers that claim 100,000 x 100,000 pixels (JPEG: 65,000, its largest). */
    buf big = copy_of(&fmt[1], fmt[1].n); /* PNG: IHDR at byte 8, its CRC recomputed */
    be32(big.d + 16, 100000), be32(big.d + 20, 100000);
    be32(big.d + 29, crc32_of(big.d + 12, 17));
    crafted(&big, "huge.png", "PNG of 100000x100000", "predict {}");
    free(big.d);
    big = copy_of(&fmt[0], fmt[0].n); /* JPEG: the SOF0 marker's height and width */
    uint8_t *sof = memmem(big.d, big.n, "\xff\xc0", 2);
    CHECK(sof != NULL);
    if (sof) sof[5] = 0xfd, sof[6] = 0xe8, sof[7] = 0xfd, sof[8] = 0xe8;
    crafted(&big, "huge.jpg", "JPEG of 65000x65000", "predict {}");
    free(big.d);
    big = copy_of(&fmt[2], fmt[2].n);
    uint32_t side = 100000;
    memcpy(big.d + 18, &side, 4), memcpy(big.d + 22, &side, 4);
    crafted(&big, "huge.bmp", "BMP of 100000x100000", "detect {}");
    free(big.d);
    const char *hp = "P5\n100000 100000\n255\n\x01\x02\x03";
    big = (buf){(uint8_t *)strdup(hp), strlen(hp)};
    crafted(&big, "huge.pgm", "PGM of 100000x100000", "predict {}");
    free(big.d);
    for (int f = 0; f < 4; f++) free(fmt[f].d);
    image_free(&src);
    image_free(&gray);
}

/* A safetensors header of our own: one tensor entry `entry` (JSON) over `data_bytes` bytes. */
static buf st_crafted(const char *entry, size_t data_bytes)
{
    char json[1024];
    int jn = snprintf(json, sizeof json, "{%s}", entry);
    buf b = {calloc(1, 8 + (size_t)jn + data_bytes + 1), 8 + (size_t)jn + data_bytes};
    uint64_t len = (uint64_t)jn;
    memcpy(b.d, &len, 8);
    memcpy(b.d + 8, json, (size_t)jn);
    return b;
}

static void models(const char *img)
{
    char model[300], fmt[600];
    snprintf(model, sizeof model, "%s/model.safetensors", root);
    test_make_model(model, "resnet18", 48, 7);
    buf good = load(model);
    uint64_t hlen = 0;
    memcpy(&hlen, good.d, 8);
    snprintf(fmt, sizeof fmt, "predict --model {} --no-detect %s", img);
    damage(&good, "model", "safetensors", FLIPS_VALID, 8 + hlen, fmt);
    snprintf(fmt, sizeof fmt, "import --arch resnet18 --weights {} --keep-head --out %s/imported.safetensors", root);
    damage(&good, "weights", "safetensors", FLIPS_VALID, 8 + hlen, fmt);

    snprintf(fmt, sizeof fmt, "predict --model {} --no-detect %s", img);
    buf b = copy_of(&good, good.n);
    uint64_t huge = (uint64_t)1 << 62;
    memcpy(b.d, &huge, 8);
    crafted(&b, "hdrlen.safetensors", "safetensors header length 2^62", fmt);
    free(b.d);
    const char *entries[] = {
        "\"conv1.weight\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,64]}",
        "\"conv1.weight\":{\"dtype\":\"F32\",\"shape\":[16],\"data_offsets\":[0,1099511627776]}",
        "\"conv1.weight\":{\"dtype\":\"F32\",\"shape\":[16],\"data_offsets\":[32,0]}",
        "\"conv1.weight\":{\"dtype\":\"F64\",\"shape\":[16],\"data_offsets\":[0,64]}",
        "\"conv1.weight\":{\"dtype\":\"F32\",\"shape\":[-16],\"data_offsets\":[0,64]}",
        "\"conv1.weight\":{\"dtype\":\"Q4\",\"shape\":[16],\"data_offsets\":[0,64]}",
        "\"conv1.weight\":[1,2,3]",
        "\"__metadata__\":{\"ferc.arch\":\"resnet18\",\"ferc.classes\":\"" /* unterminated */,
    };
    for (size_t i = 0; i < sizeof entries / sizeof entries[0]; i++) {
        b = st_crafted(entries[i], 64);
        char name[64], label[64];
        snprintf(name, sizeof name, "hostile%zu.safetensors", i);
        snprintf(label, sizeof label, "hostile safetensors %zu", i);
        crafted(&b, name, label, fmt);
        free(b.d);
    }
    /* A model whose metadata names an architecture ferc does not have, or 10^9 classes. */
    b = subst(&good, "\"resnet18\"", "\"resnet1e9\"");
    crafted(&b, "badarch.safetensors", "model of an unknown architecture", fmt);
    free(b.d);
    free(good.d);

    /* .pth: the fixtures in both layouts, and the zip that claims a 4 GB entry. */
    const char *pths[] = {"tests/fixtures/io/tiny_zip.pth", "tests/fixtures/io/tiny_legacy.pth"};
    snprintf(fmt, sizeof fmt, "import --arch resnet18 --weights {} --classes a,b --out %s/imported.safetensors", root);
    for (int i = 0; i < 2; i++) {
        buf p = load(pths[i]);
        damage(&p, i ? "legacy" : "zip", "pth", 0, 64, fmt);
        free(p.d);
    }
    b = load("tests/fixtures/fuzz/pth_zip_entry_claims_4gb.bin");
    crafted(&b, "claims4gb.pth", "zip entry claiming 4 GB", fmt);
    free(b.d);
    b = load("tests/fixtures/io/hostile/os_system_zip.pth");
    crafted(&b, "os_system.pth", "pickle calling os.system", fmt);
    free(b.d);
}

static void detectors(const char *img)
{
    char fmt[600];
    if (file_exists(CASCADE)) {
        buf x = load(CASCADE);
        snprintf(fmt, sizeof fmt, "detect --detector haar --cascade {} %s", img);
        damage(&x, "cascade", "xml", FLIPS_VALID | TAIL_VALID, 4000, fmt);
        struct {
            const char *find, *repl, *label;
        } h[] = {
            {"<height>24</height>", "<height>-24</height>", "negative window"},
            {"<height>24</height>", "<height>100000</height>", "window of 100000"},
            {"<stageNum>25</stageNum>", "<stageNum>2000000000</stageNum>", "2e9 stages"},
            {"<maxWeakCount>9</maxWeakCount>", "<maxWeakCount>1000000000</maxWeakCount>", "1e9 weak classifiers"},
            {"0 -1 0 -3.1511999666690826e-02", "0 -1 99999999 -3.1511999666690826e-02", "feature index out of range"},
            {"6 4 12 9 -1.</_>", "6 4 12000 9 -1.</_>", "rectangle outside the window"},
            {"<stages>", "<stages><_><_><_><_><_><_><_><_><_><_>", "nested garbage"},
        };
        for (size_t i = 0; i < sizeof h / sizeof h[0]; i++) {
            buf b = subst(&x, h[i].find, h[i].repl);
            char name[64], label[96];
            snprintf(name, sizeof name, "hostile%zu.xml", i);
            snprintf(label, sizeof label, "cascade: %s", h[i].label);
            crafted(&b, name, label, fmt);
            free(b.d);
        }
        free(x.d);
    } else {
        printf("no %s: the cascade cases are skipped\n", CASCADE);
    }
    buf bf = load("models/detectors/blazeface-back.safetensors");
    uint64_t hlen = 0;
    memcpy(&hlen, bf.d, 8);
    snprintf(fmt, sizeof fmt, "detect --detector blazeface --cascade {} %s", img);
    damage(&bf, "blazeface", "safetensors", FLIPS_VALID, 8 + hlen, fmt);
    free(bf.d);
}

/* A manifest of the image folder ROOT/imgs (made here), in ferc's split.csv form. */
static void manifests(void)
{
    char dir[300], path[400];
    snprintf(dir, sizeof dir, "%s/imgs", root);
    test_make_image_folder(dir, 4, 48, 5);
    /* the default model's classes */
    const char *names[3] = {"Dark", "Bright", "Top"};
    for (int c = 0; c < 3; c++) {
        char from[400], to[400];
        snprintf(from, sizeof from, "%s/%s", dir, names[c]);
        snprintf(to, sizeof to, "%s/%s", dir, test_fer_classes[c]);
        CHECK(rename(from, to) == 0);
    }
    char csv[4096];
    int n = snprintf(csv, sizeof csv, "path,label,split\n");
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 4; i++)
            n += snprintf(csv + n, sizeof csv - (size_t)n, "%s/%02d.png,%s,%s\n", test_fer_classes[c], i,
                          test_fer_classes[c], i < 2 ? "train" : "val");
    buf good = {(uint8_t *)strdup(csv), (size_t)n};
    snprintf(path, sizeof path, "%s/good.csv", root);
    write_buf(path, &good);
    char fmt[600];
    snprintf(fmt, sizeof fmt, "eval --data {} --root %s", dir);
    char args[1024];
    fill(args, sizeof args, fmt, path);
    expect("a good manifest (must pass)", path, true, "%s", args);
    CHECK(n_accepted == 1, "the good manifest was refused");
    damage(&good, "manifest", "csv", FLIPS_VALID | TAIL_VALID, 17, fmt);
    struct {
        const char *find, *repl, *label;
    } h[] = {
        {"Angry/00.png,Angry", "Angry/00.png,Contempt", "an unknown class"},
        {"Angry/02.png", "../../../../../etc/passwd", "a path out of the tree to a non-image"},
        {"Angry/02.png", "Angry/missing.png", "a missing image"},
        {"path,label,split", "path;label;split", "another separator"},
        {"Fear/02.png,Fear,val", "Fear/02.png", "a row without its columns"},
        {",val\n", ",validation-and-then-some\n", "an unknown split"},
    };
    for (size_t i = 0; i < sizeof h / sizeof h[0]; i++) {
        buf b = subst(&good, h[i].find, h[i].repl);
        char name[64], label[96];
        snprintf(name, sizeof name, "hostile%zu.csv", i);
        snprintf(label, sizeof label, "manifest: %s", h[i].label);
        crafted(&b, name, label, fmt);
        free(b.d);
    }
    buf nul = copy_of(&good, good.n); /* NUL bytes in a row */
    memset(nul.d + 30, 0, 3);
    crafted(&nul, "nul.csv", "manifest: NUL bytes", fmt);
    free(nul.d);
    /* one line of 4 MB */
    buf longl = {malloc(4 << 20), 4 << 20};
    memset(longl.d, 'a', longl.n);
    memcpy(longl.d, "path,label,split\n", 17);
    crafted(&longl, "longline.csv", "manifest: a 4 MB line", fmt);
    free(longl.d);
    free(good.d);
}

/* A finished tiny run, then its files damaged one at a time in copies of the folder. */
static void run_folder(void)
{
    char data[300], run[300];
    snprintf(data, sizeof data, "%s/rundata", root);
    snprintf(run, sizeof run, "%s/run", root);
    test_make_image_folder(data, 10, 16, 9);
    CHECK(test_sh("'%s' train --data %s --arch resnet18 --img-size 16 --batch 8 --epochs 1 --schedule constant "
                  "--threads 1 --quiet --out %s",
                  bin, data, run) == 0, "the tiny training run failed");
    const char *files[3] = {"config.json", "last.safetensors", "split.csv"};
    for (int f = 0; f < 3; f++) {
        char src[400];
        snprintf(src, sizeof src, "%s/%s", run, files[f]);
        buf good = load(src);
        if (!good.d) continue;
        size_t header = 64;
        if (f == 1) {
            uint64_t h = 0;
            memcpy(&h, good.d, 8);
            header = 8 + h;
        }
        /* a copy of the folder (hard links: resuming a finished run writes only by rename)
         * with the damaged file in place under its real name */
        char fmt[600], name[64], prep[1200];
        snprintf(name, sizeof name, "run-%s", files[f]);
        snprintf(prep, sizeof prep, "rm -rf %s/r && cp -al %s %s/r && rm %s/r/%s && cp {} %s/r/%s", root, run, root, root,
                 files[f], root, files[f]);
        snprintf(fmt, sizeof fmt, "train --resume %s/r --quiet", root);
        prep_fmt = prep;
        expect_name = files[f];
        damage(&good, name, "bad", f == 1 ? FLIPS_VALID : FLIPS_VALID | TAIL_VALID, header, fmt);
        prep_fmt = expect_name = NULL;
        free(good.d);
    }
    /* Hostile values in config.json. */
    char src[400];
    snprintf(src, sizeof src, "%s/config.json", run);
    buf cfg = load(src);
    if (!cfg.d) return;
    struct {
        const char *find, *repl, *label;
    } h[] = {
        {"\"batch\":\t8", "\"batch\":\t1e18", "batch 1e18"},
        {"\"batch\":\t8", "\"batch\":\t-8", "negative batch"},
        {"\"img_size\":\t16", "\"img_size\":\t1e9", "image side 1e9"},
        {"\"epochs\":\t1,", "\"epochs\":\tNaN,", "epochs NaN"},
        {"\"arch\":\t\"resnet18\"", "\"arch\":\t\"../../../../etc/passwd\"", "a path as the architecture"},
        {"\"lr\":\t", "\"lr\":\t-", "negative learning rate"},
    };
    for (size_t i = 0; i < sizeof h / sizeof h[0]; i++) {
        buf b = subst(&cfg, h[i].find, h[i].repl);
        char bad[400], label[96], prep[1200];
        snprintf(bad, sizeof bad, "%s/hostile%zu.json", root, i);
        write_buf(bad, &b);
        snprintf(label, sizeof label, "config.json: %s", h[i].label);
        snprintf(prep, sizeof prep, "rm -rf %s/r && cp -al %s %s/r && rm %s/r/config.json && cp {} %s/r/config.json", root,
                 run, root, root, root);
        prep_fmt = prep;
        expect_name = "config.json";
        expect(label, bad, false, "train --resume %s/r --quiet", root);
        prep_fmt = expect_name = NULL;
        free(b.d);
    }
    free(cfg.d);
}

static void videos(void)
{
    char frames[300], video[300];
    snprintf(frames, sizeof frames, "%s/frames", root);
    snprintf(video, sizeof video, "%s/clip.mp4", root);
    CHECK_OK(file_mkdirs(frames));
    image g;
    CHECK_OK(image_alloc(&g, 160, 120, 3));
    for (int i = 0; i < 12; i++) {
        for (size_t k = 0; k < (size_t)g.height * g.stride; k++) g.data[k] = (uint8_t)(k * 7 + (size_t)i * 13);
        char p[400];
        snprintf(p, sizeof p, "%s/%02d.png", frames, i);
        CHECK_OK(image_save(&g, p, 90));
    }
    image_free(&g);
    if (test_sh("'%s' camera --images %s --output %s --quiet --detector haar >/dev/null 2>&1", bin, frames, video) != 0 ||
        !file_exists(video)) {
        printf("could not write a video with ferc camera: the video cases are skipped\n");
        return;
    }
    buf v = load(video);
    damage(&v, "video", "mp4", FLIPS_VALID | TAIL_VALID, 48, "camera --video {} --quiet --detector haar");
    free(v.d);
}

int main(void)
{
    bin = getenv("FERC_BIN");
    if (!bin) return test_skip("FERC_BIN is not set (run through ctest)");
    const char *seed = getenv("FERC_TEST_SEED");
    rng_seed(&flips, seed ? strtoull(seed, NULL, 10) : 1);
    snprintf(root, sizeof root, "/tmp/ferc_test_bad_files_XXXXXX");
    if (!mkdtemp(root)) return test_skip("no temporary folder");
    double t0 = time_now();
    manifests();
    char img[400];
    snprintf(img, sizeof img, "%s/face.png", root);
    images("tests/fixtures/faces/Tom_Cruise_avp_2014_4.jpg");
    models(img);
    detectors(img);
    run_folder();
    videos();
    printf("%d bad files through the CLI in %.0f s: %d refused with a message naming the file, %d accepted "
           "(damage that left the file valid)\n", n_cases, time_now() - t0, n_refused, n_accepted);
    if (test_failures == 0) test_sh("rm -rf %s", root);
    return test_finish("test_bad_files");
}
