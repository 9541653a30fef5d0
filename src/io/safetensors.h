/* safetensors: ferc's native tensor file format (and the fixture format of the tests).
 *
 * Layout: 8-byte little-endian header length N, N bytes of JSON
 *   {"__metadata__": {"k": "v", ...}, "name": {"dtype": "F32", "shape": [..],
 *    "data_offsets": [begin, end]}, ...}
 * then the raw little-endian data; offsets are relative to the end of the header.
 *
 * Reading validates everything before handing out pointers: header length within the file,
 * JSON well-formed, known dtypes, offsets inside the data area, sizes equal to
 * prod(shape) * itemsize, and no two tensors overlapping.
 */
#ifndef FERC_SAFETENSORS_H
#define FERC_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

typedef enum st_dtype {
    ST_F32, ST_F16, ST_BF16, ST_F64, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_BOOL, ST_DTYPE_COUNT
} st_dtype;

const char *st_dtype_name(st_dtype t);   /* "F32" ... */
size_t st_dtype_size(st_dtype t);

#define ST_MAX_DIMS 8

typedef struct st_tensor {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t nbytes;
    const uint8_t *data;     /* points into the file buffer (st_file) or caller memory (writer) */
} st_tensor;

typedef struct st_file {
    uint8_t *buf;            /* the whole file */
    size_t size;
    st_tensor *tensors;      /* in file order of data offsets */
    int count;
    char **meta_keys, **meta_values;
    int meta_count;
} st_file;

/* Reads and validates a file. On failure *f is left empty and the message names the file. */
int  st_read(st_file *f, const char *path);
int  st_parse(st_file *f, uint8_t *buf, size_t size, const char *name_for_errors); /* takes buf */
void st_close(st_file *f);

const st_tensor *st_find(const st_file *f, const char *name);
const char *st_meta(const st_file *f, const char *key);          /* NULL if absent */
size_t st_numel(const st_tensor *t);
/* Copies a tensor into float32 (from F32, F16, BF16, F64, or integer types). */
int  st_to_f32(const st_tensor *t, float *out, size_t count);

/* Writer: collect tensors (data is referenced, not copied, until st_writer_save returns). */
typedef struct st_writer st_writer;
st_writer *st_writer_create(void);
void st_writer_destroy(st_writer *w);
int  st_writer_add(st_writer *w, const char *name, st_dtype dtype, int ndim, const int64_t *shape,
                   const void *data);
/* F32 data stored as F16 or BF16 (converted at save time). */
int  st_writer_add_f32_as(st_writer *w, const char *name, st_dtype stored, int ndim,
                          const int64_t *shape, const float *data);
int  st_writer_meta(st_writer *w, const char *key, const char *value);
/* Writes atomically (temp file + rename). */
int  st_writer_save(st_writer *w, const char *path);

#endif
