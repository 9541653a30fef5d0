/* core: status codes and error messages, seeded RNG, timers, file helpers.
 *
 * Library code never prints and never exits: a failing function records a message with
 * ferc_set_error() and returns a negative ferc_status, which the caller passes up. The
 * message is thread-local and describes the most recent failure on this thread.
 */
#ifndef FERC_CORE_H
#define FERC_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#include "ferc.h"   /* ferc_status and the public error API */

#if defined(__GNUC__)
#define FERC_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define FERC_PRINTF(a, b)
#endif

/* Records a message for the current thread and returns `code` (so `return ferc_set_error(...)`). */
int ferc_set_error(int code, const char *fmt, ...) FERC_PRINTF(2, 3);
/* Prepends context to the current message ("loading x: <old message>") and returns `code`. */
int ferc_wrap_error(int code, const char *fmt, ...) FERC_PRINTF(2, 3);

/* ---- RNG --------------------------------------------------------------------------------
 * xoshiro256** seeded through splitmix64. Streams are derived from (seed, key...) so that
 * any consumer (a sample's augmentation, a dropout mask, a shuffle) gets numbers that depend
 * only on the seed and its own key, never on thread count or timing. */
typedef struct rng { uint64_t s[4]; } rng;

void     rng_seed(rng *r, uint64_t seed);
/* A stream for (seed, a, b): independent of other (a, b) pairs. */
void     rng_derive(rng *r, uint64_t seed, uint64_t a, uint64_t b);
uint64_t rng_u64(rng *r);
uint32_t rng_below(rng *r, uint32_t n);      /* uniform in [0, n), unbiased; n > 0 */
double   rng_uniform(rng *r);                /* [0, 1) with 53 random bits */
float    rng_uniformf(rng *r);               /* [0, 1) with 24 random bits */
double   rng_normal(rng *r);                 /* standard normal (Box-Muller) */
void     rng_shuffle_u32(rng *r, uint32_t *v, size_t n);   /* Fisher-Yates */

/* ---- time -------------------------------------------------------------------------------- */
double   time_now(void);                     /* monotonic seconds */
/* The process's resident memory now (/proc/self/statm), in bytes; 0 when unknown. */
size_t   process_rss_bytes(void);

/* ---- files ------------------------------------------------------------------------------- */
/* Reads a whole file; the caller frees *data. */
int file_read_all(const char *path, uint8_t **data, size_t *size);
/* Writes to PATH.tmp.<pid>, fsyncs and renames over `path`, so readers see the old or the
 * new file, never a partial one. */
int file_write_atomic(const char *path, const void *data, size_t size);
/* Streamed form of the above: open, write pieces, then commit (rename) or abort (unlink). */
typedef struct atomic_file atomic_file;
int  atomic_file_open(atomic_file **af, const char *path);
int  atomic_file_write(atomic_file *af, const void *data, size_t size);
int  atomic_file_commit(atomic_file *af);    /* frees af */
void atomic_file_abort(atomic_file *af);     /* frees af */
/* mkdir -p */
int  file_mkdirs(const char *path);
bool file_exists(const char *path);
bool file_is_dir(const char *path);
/* Takes an exclusive lock on DIR/.lock (flock), held until file_dir_unlock or the process
 * ends, however it ends (the kernel drops it on kill -9). Fails when another process holds
 * it. *fd is -1 when nothing is held. */
int  file_dir_lock(const char *dir, int *fd);
void file_dir_unlock(int fd);
/* Removes the temporary files an interrupted atomic write leaves in DIR (NAME.tmp.<pid>,
 * from a process that was killed before its rename). Call it with DIR locked. Returns the
 * number removed (>= 0) or an error. */
int  file_remove_stale_tmp(const char *dir);

/* ---- numbers ----------------------------------------------------------------------------- */
uint16_t f32_to_bf16(float f);      /* round to nearest even, NaN kept */
float    bf16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
float    f16_to_f32(uint16_t h);

#endif
