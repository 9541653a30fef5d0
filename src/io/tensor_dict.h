/* tensor_dict: the name -> tensor container every weight importer produces.
 *
 * Whatever the source (torch .pth zip or legacy pickle, safetensors from ferc or timm), an
 * importer hands back the same thing: named, contiguous, row-major tensors. Floating tensors
 * (f32, f16, bf16, f64 in the file) are converted to float32; integer and bool tensors
 * (num_batches_tracked) become int64. `source` remembers what the file stored.
 *
 * The dict owns its names and data; td_free releases everything. Order is the file's order
 * (for .pth: the state_dict's insertion order).
 *
 * Typical use by a model loader:
 *     tensor_dict d;
 *     td_load_options o = {0};                 // defaults: auto prefix strip, DenseNet fix, hash check
 *     if (td_load(&d, "densenet161-8d451a50.pth", &o)) return ferc_wrap_error(...);
 *     const td_tensor *w = td_find(&d, "features.conv0.weight");
 *     ... or td_check(&d, spec, n) to list missing / unexpected / mis-shaped keys by name ...
 *     td_free(&d);
 */
#ifndef FERC_TENSOR_DICT_H
#define FERC_TENSOR_DICT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/safetensors.h"

#define TD_MAX_DIMS ST_MAX_DIMS

typedef enum td_dtype { TD_F32, TD_I64 } td_dtype;

typedef struct td_tensor {
    char *name;
    td_dtype dtype;
    st_dtype source;              /* element type in the file (ST_F16 for a HalfStorage, ...) */
    int ndim;                     /* 0 for a scalar */
    int64_t shape[TD_MAX_DIMS];
    size_t numel;
    float *f32;                   /* numel values when dtype == TD_F32, else NULL */
    int64_t *i64;                 /* numel values when dtype == TD_I64, else NULL */
} td_tensor;

typedef struct tensor_dict {
    td_tensor *items;
    int count, cap;
} tensor_dict;

void td_init(tensor_dict *d);
void td_free(tensor_dict *d);   /* leaves *d empty and reusable */

/* Adds a tensor; takes ownership of `data` (malloc'd, numel floats or int64 per dtype) even on
 * failure. Names must be unique. */
int td_add(tensor_dict *d, const char *name, td_dtype dtype, st_dtype source, int ndim,
           const int64_t *shape, void *data);
const td_tensor *td_find(const tensor_dict *d, const char *name);
int  td_index(const tensor_dict *d, const char *name);   /* -1 if absent */
/* Removes one tensor; FERC_ERR_NOT_FOUND if absent. */
int  td_remove(tensor_dict *d, const char *name);
/* Renames; fails if `to` already exists. */
int  td_rename(tensor_dict *d, const char *from, const char *to);

/* ---- key handling ------------------------------------------------------------------------ */

/* Strips `prefix` from every key; fails (listing one key) unless all keys start with it. */
int  td_strip_prefix(tensor_dict *d, const char *prefix);
/* Strips the wrapper prefixes 'module.' (DataParallel) and 'network.' (the original study's
 * wrapper) while every key shares one of them, repeatedly ('module.network.x' -> 'x').
 * *stripped (may be NULL) receives the removed text ("" if none; static storage up to
 * 63 characters). */
int  td_strip_auto(tensor_dict *d, char *stripped, size_t stripped_size);
/* torchvision's DenseNet key fix: 'denselayerN.norm.1.weight' -> 'denselayerN.norm1.weight'
 * (the regex of torchvision/models/densenet.py _load_state_dict). *renamed may be NULL. */
int  td_fix_densenet_keys(tensor_dict *d, int *renamed);

/* ---- checking against a model ------------------------------------------------------------ */

typedef struct td_spec {
    const char *name;
    int ndim;
    int64_t shape[TD_MAX_DIMS];
} td_spec;

/* Compares the dict with what a model expects. On any difference returns FERC_ERR_SHAPE with a
 * message listing missing keys, unexpected keys and shape mismatches by name (the first few
 * of each, with counts). */
int td_check(const tensor_dict *d, const td_spec *spec, int n);

/* ---- files ------------------------------------------------------------------------------- */

/* Converts every tensor of an open safetensors file (any dtype; bool and integers -> int64). */
int td_from_safetensors(tensor_dict *d, const st_file *f);
int td_read_safetensors(tensor_dict *d, const char *path);
/* Adds every tensor to a writer as F32 (or I64); the writer references d's data, so keep d
 * alive until st_writer_save returns. */
int td_add_to_writer(const tensor_dict *d, st_writer *w);
int td_write_safetensors(const tensor_dict *d, const char *path);

typedef struct td_load_options {
    const char *strip_prefix;   /* strip exactly this prefix (error if a key lacks it); NULL: auto */
    bool no_auto_strip;         /* keep 'module.' / 'network.' prefixes */
    bool no_densenet_fix;
    bool no_hash_check;         /* skip the SHA-256 check of torchvision-style names */
    const char *nested_key;     /* .pth: take this entry of a checkpoint dict; NULL: the whole
                                 * object if it is a state_dict, else 'state_dict' or 'model' */
} td_load_options;

/* Loads weights from a torch .pth (zip or legacy), or a safetensors file, chosen by the file's
 * first bytes; then checks the SHA-256 of torchvision-style names (see td_verify_name_hash),
 * strips prefixes and fixes DenseNet keys as the options say. opt may be NULL (defaults).
 * On failure *d is empty and the message names the file. */
int td_load(tensor_dict *d, const char *path, const td_load_options *opt);

/* If the file's base name looks like torchvision's '<name>-<hex>.<ext>' with at least 8 hex
 * digits, checks that the SHA-256 of buf begins with them (FERC_ERR_FORMAT otherwise).
 * Other names pass unchecked. */
int td_verify_name_hash(const char *path, const uint8_t *buf, size_t size);

#endif
