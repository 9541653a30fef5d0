/* File helpers: whole-file reads, atomic writes (temp file + fsync + rename), mkdir -p,
 * timers and float conversions. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"

double time_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

const char *ferc_version(void) { return FERC_VERSION; }

size_t process_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    unsigned long long size = 0, resident = 0;
    int n = fscanf(f, "%llu %llu", &size, &resident);
    fclose(f);
    long page = sysconf(_SC_PAGESIZE);
    return n == 2 && page > 0 ? (size_t)resident * (size_t)page : 0;
}

int file_read_all(const char *path, uint8_t **data, size_t *size)
{
    *data = NULL;
    *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return ferc_set_error(FERC_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return ferc_set_error(FERC_ERR_IO, "cannot seek in %s: %s", path, strerror(errno));
    }
    long len = ftell(f);
    if (len < 0) {
        fclose(f);
        return ferc_set_error(FERC_ERR_IO, "cannot size %s (is it a regular file?)", path);
    }
    rewind(f);
    uint8_t *buf = malloc((size_t)len + 1);
    if (!buf) {
        fclose(f);
        return ferc_set_error(FERC_ERR_NOMEM, "out of memory reading %s (%ld bytes)", path, len);
    }
    size_t got = fread(buf, 1, (size_t)len, f);
    int err = ferror(f);
    fclose(f);
    if (err || got != (size_t)len) {
        free(buf);
        return ferc_set_error(FERC_ERR_IO, "short read on %s", path);
    }
    buf[len] = 0; /* convenient for text files */
    *data = buf;
    *size = (size_t)len;
    return FERC_OK;
}

struct atomic_file {
    FILE *f;
    char *path;
    char *tmp;
};

int atomic_file_open(atomic_file **out, const char *path)
{
    *out = NULL;
    atomic_file *af = calloc(1, sizeof *af);
    size_t n = strlen(path) + 32;
    if (!af || !(af->path = strdup(path)) || !(af->tmp = malloc(n))) {
        if (af) free(af->path);
        free(af);
        return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    }
    snprintf(af->tmp, n, "%s.tmp.%ld", path, (long)getpid());
    af->f = fopen(af->tmp, "wb");
    if (!af->f) {
        int e = errno;
        free(af->tmp);
        free(af->path);
        free(af);
        return ferc_set_error(FERC_ERR_IO, "cannot create %s: %s", path, strerror(e));
    }
    *out = af;
    return FERC_OK;
}

int atomic_file_write(atomic_file *af, const void *data, size_t size)
{
    if (size && fwrite(data, 1, size, af->f) != size)
        return ferc_set_error(FERC_ERR_IO, "cannot write %s: %s", af->path, strerror(errno));
    return FERC_OK;
}

void atomic_file_abort(atomic_file *af)
{
    if (!af) return;
    if (af->f) fclose(af->f);
    unlink(af->tmp);
    free(af->tmp);
    free(af->path);
    free(af);
}

/* fsync of the folder holding `path`, so that a rename in it is durable. Best effort: some
 * file systems refuse fsync on a directory, and the file's data is already on disk. */
static void fsync_parent(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) {
        strcpy(dir, ".");
    } else if (slash == path) {
        strcpy(dir, "/");
    } else {
        size_t n = (size_t)(slash - path);
        if (n >= sizeof dir) return;
        memcpy(dir, path, n);
        dir[n] = 0;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return;
    (void)fsync(fd);
    close(fd);
}

int atomic_file_commit(atomic_file *af)
{
    int rc = FERC_OK;
    if (fflush(af->f) != 0 || fsync(fileno(af->f)) != 0)
        rc = ferc_set_error(FERC_ERR_IO, "cannot write %s: %s", af->path, strerror(errno));
    if (fclose(af->f) != 0 && rc == FERC_OK)
        rc = ferc_set_error(FERC_ERR_IO, "cannot close %s: %s", af->path, strerror(errno));
    af->f = NULL;
    if (rc == FERC_OK && rename(af->tmp, af->path) != 0)
        rc = ferc_set_error(FERC_ERR_IO, "cannot rename %s into place: %s", af->path, strerror(errno));
    if (rc != FERC_OK) unlink(af->tmp);
    else fsync_parent(af->path); /* the rename itself survives a power cut */
    free(af->tmp);
    free(af->path);
    free(af);
    return rc;
}

int file_write_atomic(const char *path, const void *data, size_t size)
{
    atomic_file *af;
    int rc = atomic_file_open(&af, path);
    if (rc) return rc;
    rc = atomic_file_write(af, data, size);
    if (rc) {
        atomic_file_abort(af);
        return rc;
    }
    return atomic_file_commit(af);
}

int file_mkdirs(const char *path)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) return ferc_set_error(FERC_ERR_INVALID, "bad directory path '%s'", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == 0) {
            char c = buf[i];
            buf[i] = 0;
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return ferc_set_error(FERC_ERR_IO, "cannot create directory %s: %s", buf, strerror(errno));
            buf[i] = c;
        }
    }
    if (!file_is_dir(path)) return ferc_set_error(FERC_ERR_IO, "%s exists and is not a directory", path);
    return FERC_OK;
}

int file_dir_lock(const char *dir, int *fd)
{
    *fd = -1;
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/.lock", dir) >= sizeof path)
        return ferc_set_error(FERC_ERR_INVALID, "path too long: %s", dir);
    int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (f < 0) return ferc_set_error(FERC_ERR_IO, "cannot create %s: %s", path, strerror(errno));
    if (flock(f, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(f);
        if (e == EWOULDBLOCK)
            return ferc_set_error(FERC_ERR_INVALID, "%s is in use by another process (%s is locked)", dir, path);
        return ferc_set_error(FERC_ERR_IO, "cannot lock %s: %s", path, strerror(e));
    }
    *fd = f;
    return FERC_OK;
}

void file_dir_unlock(int fd)
{
    if (fd >= 0) close(fd); /* closing drops the flock */
}

/* NAME.tmp.<digits>, as atomic_file_open names its temporary files */
static bool is_tmp_name(const char *name)
{
    const char *t = strstr(name, ".tmp.");
    if (!t || t == name) return false;
    t += 5;
    if (!*t) return false;
    for (; *t; t++)
        if (*t < '0' || *t > '9') return false;
    return true;
}

int file_remove_stale_tmp(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return ferc_set_error(FERC_ERR_IO, "cannot open folder %s: %s", dir, strerror(errno));
    int removed = 0;
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d))) {
        if (!is_tmp_name(e->d_name)) continue;
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= sizeof path) continue;
        if (unlink(path) == 0) removed++;
    }
    closedir(d);
    return removed;
}

bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

bool file_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

uint16_t f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* IEEE binary16 by hand, rounding to nearest even, as a cast to _Float16 does (which clang 14
 * refuses on x86 without AVX512-FP16; tests/test_core checks the two agree where the compiler
 * has the type). */
uint16_t f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000u, ex = (x >> 23) & 0xffu;
    uint32_t mant = x & 0x7fffffu;
    if (ex == 0xff) return (uint16_t)(sign | 0x7c00u | (mant ? 0x200u | (mant >> 13) : 0)); /* inf, quiet NaN */
    const int e = (int)ex - 127 + 15;
    if (e >= 31) return (uint16_t)(sign | 0x7c00u); /* overflow: infinity */
    if (e <= 0) {                                    /* a subnormal half, or zero */
        if (e < -10) return (uint16_t)sign;
        mant |= 0x800000u;
        const int shift = 14 - e;
        uint32_t h = mant >> shift;
        const uint32_t rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((uint32_t)e << 10) | (mant >> 13);
    const uint32_t rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++; /* a carry may reach the exponent: right */
    return (uint16_t)(sign | h);
}

float f16_to_f32(uint16_t u)
{
    const uint32_t sign = (uint32_t)(u & 0x8000u) << 16, ex = (u >> 10) & 0x1fu;
    uint32_t mant = u & 0x3ffu, bits;
    if (ex == 0) {
        if (!mant) {
            bits = sign;
        } else { /* subnormal: normalize */
            int e = -1;
            do {
                e++;
                mant <<= 1;
            } while (!(mant & 0x400u));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((mant & 0x3ffu) << 13);
        }
    } else if (ex == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((ex - 15 + 127) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}
