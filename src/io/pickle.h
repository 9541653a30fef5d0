/* pickle: a restricted reader for the pickles torch.save writes for state_dicts.
 *
 * This is not a Python unpickler. It understands the opcodes of protocols 2-4 that carry
 * plain data (ints, floats, strings, bytes, tuples, lists, dicts, memo access) plus REDUCE,
 * BUILD and BINPERSID for exactly these callables and storage tags:
 *   collections.OrderedDict, torch._utils._rebuild_tensor, torch._utils._rebuild_tensor_v2,
 *   torch._utils._rebuild_parameter, torch.<Type>Storage (as persistent-id tags only).
 * Any other global (os.system, builtins.eval, a pickled nn.Module class...) or opcode is
 * refused with an error naming it; nothing from the file is ever executed or looked up.
 *
 * Values live in a pk_arena and are freed together with it. Persistent ids of the form
 * ('storage', StorageType, key, location, numel[, view_metadata]) (zip and legacy formats)
 * become PK_STORAGE values; _rebuild_tensor* calls become PK_TENSOR values that reference
 * them. Nothing here touches storage bytes: the caller (pth.c) resolves keys to data.
 */
#ifndef FERC_PICKLE_H
#define FERC_PICKLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/safetensors.h"   /* st_dtype names storage element types */

typedef enum pk_kind {
    PK_NONE, PK_BOOL, PK_INT, PK_BIGINT, PK_FLOAT, PK_STR, PK_BYTES, PK_TUPLE, PK_LIST, PK_DICT,
    PK_GLOBAL, PK_STORAGE, PK_TENSOR, PK_KIND_COUNT
} pk_kind;

const char *pk_kind_name(pk_kind k);

/* The callables and tags a pickle may name. */
typedef enum pk_global {
    PKG_ORDERED_DICT, PKG_REBUILD_TENSOR, PKG_REBUILD_TENSOR_V2, PKG_REBUILD_PARAMETER,
    PKG_STORAGE_TYPE,   /* torch.FloatStorage & co; the element type is in g.dtype */
} pk_global;

#define PK_MAX_DIMS ST_MAX_DIMS

typedef struct pk_value pk_value;
struct pk_value {
    pk_kind kind;
    bool seen;              /* scratch flag for graph walks by the caller (pickles can share
                             * and even nest values in cycles); false when created */
    pk_value *next_alloc;   /* arena chain */
    union {
        bool b;
        int64_t i;
        double f;
        /* PK_STR, PK_BYTES (NUL-terminated); PK_BIGINT: an integer too wide for int64, as its
         * little-endian two's-complement bytes (LONG1/LONG4), e.g. the legacy magic number */
        struct { char *s; size_t len; } str;
        struct { pk_value **items; size_t n, cap; } seq;     /* PK_TUPLE, PK_LIST */
        struct { pk_value **keys, **vals; size_t n, cap; } dict;
        struct { pk_global which; st_dtype dtype; } g;
        struct {
            const char *key;      /* "0" (zip: archive/data/0) or the legacy numeric key */
            st_dtype dtype;
            int64_t numel;        /* elements the pickle claims the storage has */
            int64_t view_offset;  /* legacy storage views: elements into the root storage */
            int64_t view_numel;   /* the view's length, or -1 when the storage is not a view */
        } storage;
        struct {
            const pk_value *storage;
            int64_t offset;       /* in elements */
            int ndim;
            int64_t shape[PK_MAX_DIMS], stride[PK_MAX_DIMS];
        } tensor;
    } u;
};

typedef struct pk_arena pk_arena;
pk_arena *pk_arena_create(void);
void pk_arena_destroy(pk_arena *a);

/* Runs one pickle from buf[0..size) up to its STOP opcode. *out is owned by the arena;
 * *consumed (may be NULL) receives the number of bytes read, so several pickles written back
 * to back (the legacy format) can be read in turn. `what` names the input in messages. */
int pk_load(pk_arena *a, const uint8_t *buf, size_t size, const char *what, size_t *consumed,
            pk_value **out);

/* Looks up a string key in a PK_DICT; NULL if absent or not a dict. */
const pk_value *pk_dict_get(const pk_value *dict, const char *key);

#endif
