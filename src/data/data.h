/* data: image-folder datasets, stratified split manifests, torchvision-style transforms
 * described by a text spec, an in-memory decoded cache and a deterministic batch loader.
 *
 * Typical use (the trainer):
 *
 *     data_index ix;        data_index_open(&ix, "fer/Training", NULL);
 *     data_cache *cache;    data_cache_load(&cache, &ix, &copts, &report);  // drops bad files
 *     uint8_t *split = malloc(ix.n);
 *     data_split_stratified(&ix, 0.1, seed, split);          // or data_manifest_read(...)
 *     data_manifest_write("run/split.csv", &ix, split);
 *     uint32_t *train_idx; size_t n_train; data_split_indices(split, ix.n, DATA_SPLIT_TRAIN, ...);
 *     data_transform *tf;   data_transform_parse(&tf, "randomcrop(48,pad=4,mode=reflect) | hflip | normalize(cifar10)");
 *     data_loader *L;       data_loader_create(&L, cache, train_idx, n_train, tf, &lopts);
 *     for (epoch...) { data_loader_start_epoch(L, epoch);
 *         data_batch b; while (data_loader_next(L, &b) > 0) train_step(b.x, b.y, b.n); }
 *
 * Labels follow torchvision's ImageFolder: class folders sorted by name (byte order), ids
 * 0..n-1. Everything random (split, shuffle, augmentation) derives from the seed through
 * rng_derive, so results never depend on the thread count or timing.
 */
#ifndef FERC_DATA_H
#define FERC_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "image/image.h"

/* ---- index ------------------------------------------------------------------------------ */
typedef struct data_index {
    char *root;            /* the folder holding the class folders (after nested detection) */
    int nested;            /* 1 when ROOT/<basename(ROOT)>/<Class> (Kaggle) was detected */
    int n_classes;
    char **class_names;    /* folder names, sorted: label id = position */
    char **display_names;  /* for humans: "Suprise" -> "Surprise"; same order */
    size_t n;              /* samples */
    char **paths;          /* relative to root: "<Class>/<file>" */
    int32_t *labels;
    size_t n_ignored;      /* hidden files and files without an image extension */
} data_index;

/* Scans ROOT/<Class>/<image>. Extensions jpg/jpeg/png/bmp/pgm/ppm, case-insensitive; hidden
 * entries and other files are ignored (counted in n_ignored). A missing root, a root without
 * class folders or an empty class folder is an error. `display_names` may be NULL (built-in
 * fixes apply) or "Folder=Display,..." to override. */
int  data_index_open(data_index *ix, const char *root, const char *display_names);
void data_index_free(data_index *ix);
/* The display name for a folder name (built-in table: Suprise -> Surprise); never NULL. */
const char *data_display_name(const char *folder_name);
/* Full path of sample i into buf (returns buf). */
const char *data_index_path(const data_index *ix, size_t i, char *buf, size_t bufsize);
/* Removes the samples whose keep[i] is 0 (order of the rest kept). */
int  data_index_filter(data_index *ix, const uint8_t *keep);
/* Per-class counts into counts[n_classes]. */
void data_index_counts(const data_index *ix, size_t *counts);

/* ---- splits and manifests ---------------------------------------------------------------- */
enum { DATA_SPLIT_TRAIN = 0, DATA_SPLIT_VAL = 1, DATA_SPLIT_TEST = 2 };
/* Per class, round(count * val_fraction) samples go to validation, chosen by a shuffle seeded
 * by (seed, class); split[i] gets DATA_SPLIT_TRAIN or DATA_SPLIT_VAL. */
int data_split_stratified(const data_index *ix, double val_fraction, uint64_t seed, uint8_t *split);
/* The indices i with split[i] == which; the caller frees *out. */
int data_split_indices(const uint8_t *split, size_t n, int which, uint32_t **out, size_t *n_out);
/* CSV "path,label,split" with a header row; path relative to the index root, label the class
 * folder name, split train|val|test. Written atomically. */
int data_manifest_write(const char *path, const data_index *ix, const uint8_t *split);
/* Reads a manifest written for the same dataset: every row must name a sample of `ix` with
 * the same class; samples not in the manifest get 255. */
int data_manifest_read(const char *path, const data_index *ix, uint8_t *split);

/* ---- byte-identical duplicates ---------------------------------------------------------- */
/* One sample's file: 64-bit FNV-1a of its bytes, its size, a caller's set tag and its index. */
typedef struct data_file_key {
    uint64_t hash;
    uint64_t size;
    int32_t set;
    uint32_t idx;
} data_file_key;
/* keys[i] for every sample i of ix (reads each file once); fails on an unreadable file. */
int data_file_keys(const data_index *ix, int set, data_file_key *keys);
/* qsort order: hash, size, set, index. Equal (hash, size) runs are candidate duplicates. */
int data_file_key_cmp(const void *a, const void *b);
/* 1 when the two samples' files hold the same bytes; 0 when not, or when either is unreadable. */
int data_same_bytes(const data_index *a, uint32_t i, const data_index *b, uint32_t j);
/* For every sample with split[i] == which, dup[i] = 1 when some sample with split[j] ==
 * DATA_SPLIT_TRAIN (j != i) has a byte-identical file, else 0; dup[ix->n]. *n_dup (may be NULL)
 * counts the marked samples. This is the leakage a split manifest carries: a model that
 * memorised its training rows gets those evaluated images for free. */
int data_mark_train_copies(const data_index *ix, const uint8_t *split, int which, uint8_t *dup, size_t *n_dup);

/* Class weights for the loss, n / (n_classes * count_c) over the given samples (sklearn's
 * "balanced"); weights[n_classes]. */
int data_class_weights(const data_index *ix, const uint32_t *indices, size_t n, float *weights);

/* ---- decoded cache ----------------------------------------------------------------------- */
typedef struct data_cache_opts {
    size_t budget_bytes;   /* 0: 1 GiB */
    int threads;           /* decode threads; <= 0: 1 */
    int apply_exif;        /* photos yes, 48x48 crops need not */
} data_cache_opts;

typedef struct data_bad_files {
    size_t count;
    char *first[8];        /* the first few paths (relative) with their error messages */
    char *why[8];
} data_bad_files;
void data_bad_files_free(data_bad_files *b);

typedef struct data_cache data_cache;
/* Decodes every sample of `ix` once (RGBA -> RGB, gray stays gray). Files that fail to decode
 * are reported in *bad and removed from `ix` (so indices stay dense). Fails with
 * FERC_ERR_NOMEM when the decoded set exceeds the budget. */
int  data_cache_load(data_cache **cache, data_index *ix, const data_cache_opts *opts, data_bad_files *bad);
void data_cache_destroy(data_cache *cache);
/* A read-only view of sample i (do not free). */
void data_cache_get(const data_cache *cache, size_t i, image *view);
int32_t data_cache_label(const data_cache *cache, size_t i);
size_t data_cache_count(const data_cache *cache);
size_t data_cache_bytes(const data_cache *cache);

/* ---- transforms -------------------------------------------------------------------------- */
/* Spec: steps separated by '|' (or ';'), each name(args) with positional and key=value args;
 * lists use '/'. Steps (torchvision names in brackets):
 *   resize(S) | resize(H,W)                 [Resize, bilinear with PIL antialias]
 *   centercrop(S) | centercrop(H,W)         [CenterCrop, pads with 0 when larger]
 *   randomcrop(S, pad=P, mode=constant|reflect|edge|symmetric, fill=V)   [RandomCrop]
 *   randomresizedcrop(S, scale=0.08/1, ratio=0.75/1.3333)                 [RandomResizedCrop]
 *   hflip(p=0.5)                            [RandomHorizontalFlip]
 *   rotate(D, fill=V)                       [RandomRotation((-D, D)), nearest]
 *   affine(degrees=D, translate=TX/TY, scale=LO/HI, fill=V)              [RandomAffine, nearest]
 *   jitter(brightness=B, contrast=C)        [ColorJitter: factors in [max(0,1-B),1+B], random order]
 *   normalize(imagenet|cifar10|none) | normalize(mean=M/M/M, std=S/S/S)   [ToTensor + Normalize]
 *   erase(p=0.5, scale=0.02/0.33, ratio=0.3/3.3, value=0)                 [RandomErasing, after normalize]
 * Steps before normalize work on 8-bit images exactly like PIL; without a normalize step the
 * output is ToTensor's x/255. Example: "randomcrop(48,pad=4,mode=reflect) | hflip | normalize(cifar10)". */
typedef struct data_transform data_transform;
int  data_transform_parse(data_transform **tf, const char *spec);
void data_transform_destroy(data_transform *tf);
/* The canonical spec (all defaults spelled out), for the run's config. */
const char *data_transform_spec(const data_transform *tf);
/* Output size for an input of w x h (all outputs of a loader must agree). */
void data_transform_out_size(const data_transform *tf, int w, int h, int *out_w, int *out_h);
/* Applies the pipeline to `src` with randomness from `r`, writing 3 x out_h x out_w floats
 * (CHW; gray replicated to 3 channels). */
int  data_transform_apply(const data_transform *tf, const image *src, rng *r, float *out, int out_w, int out_h);
/* As above but stops before normalize and returns the augmented 8-bit image (for grids). */
int  data_transform_apply_u8(const data_transform *tf, const image *src, rng *r, image *dst);
/* Normalization constants in effect (3 each; identity when none). */
void data_transform_norm(const data_transform *tf, float mean[3], float std[3]);

/* Deterministic transform primitives (exposed for tests and TTA); dst allocated by the call. */
typedef enum data_pad_mode { DATA_PAD_CONSTANT, DATA_PAD_REFLECT, DATA_PAD_EDGE, DATA_PAD_SYMMETRIC } data_pad_mode;
int  data_pad(image *dst, const image *src, int left, int top, int right, int bottom, data_pad_mode mode, int fill);
int  data_center_crop(image *dst, const image *src, int w, int h);
int  data_resize_short(image *dst, const image *src, int size);
/* torchvision F.affine (PIL path): angle clockwise degrees, translate in pixels, nearest. */
int  data_affine(image *dst, const image *src, double angle, double tx, double ty, double scale, int fill);
void data_adjust_brightness(image *img, double factor);
void data_adjust_contrast(image *img, double factor);
/* Ten-crop TTA (torchvision TenCrop): 4 corners + center, then the same of the flipped image. */
int  data_ten_crop(image out[10], const image *src, int w, int h);

/* ---- loader ------------------------------------------------------------------------------ */
typedef enum data_sampling { DATA_SAMPLE_PLAIN = 0, DATA_SAMPLE_BALANCED = 1 } data_sampling;

typedef struct data_loader_opts {
    int batch_size;
    uint64_t seed;
    int shuffle;
    int drop_last;
    int threads;       /* threads that build a batch (the caller counts as one unless async) */
    int async;         /* 1: background threads build the next batch while the caller computes
                          (double buffering); 0: batches are built inside data_loader_next, so
                          loading never competes with the compute threads */
    data_sampling sampling; /* BALANCED: draw with replacement, probability 1/count(class) */
} data_loader_opts;

typedef struct data_batch {
    int n, c, h, w;     /* n may be < batch_size at the end of an epoch (without drop_last) */
    float *x;           /* (n, 3, h, w), owned by the loader, valid until the next call */
    int32_t *y;         /* (n) */
    const uint32_t *index; /* (n) dataset indices of the samples */
} data_batch;

typedef struct data_loader data_loader;
int  data_loader_create(data_loader **L, const data_cache *cache, const uint32_t *indices, size_t n,
                        const data_transform *tf, const data_loader_opts *opts);
void data_loader_destroy(data_loader *L);
/* Restarts at the beginning of `epoch`: order = shuffle seeded by (seed, epoch). */
int  data_loader_start_epoch(data_loader *L, int epoch);
/* Fills *b with the next batch: returns 1, 0 at the end of the epoch, or a negative status.
 * Sample k of the epoch (its position, so a sample drawn twice by balanced sampling gets two
 * augmentations) uses rng_derive(seed, epoch, k), so batches are bit-identical for any thread
 * count and either mode. */
int  data_loader_next(data_loader *L, data_batch *b);
size_t data_loader_batches_per_epoch(const data_loader *L);

#endif
