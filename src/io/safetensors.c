/* safetensors reader and writer, validated with cJSON. */
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "io/safetensors.h"

static const char *const dtype_names[ST_DTYPE_COUNT] = {"F32", "F16", "BF16", "F64", "I64",
                                                         "I32", "I16", "I8",  "U8",  "BOOL"};
static const size_t dtype_sizes[ST_DTYPE_COUNT] = {4, 2, 2, 8, 8, 4, 2, 1, 1, 1};
_Static_assert(sizeof dtype_names / sizeof dtype_names[0] == ST_DTYPE_COUNT, "dtype table");

const char *st_dtype_name(st_dtype t) { return (unsigned)t < ST_DTYPE_COUNT ? dtype_names[t] : "?"; }
size_t st_dtype_size(st_dtype t) { return (unsigned)t < ST_DTYPE_COUNT ? dtype_sizes[t] : 0; }

size_t st_numel(const st_tensor *t)
{
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= (size_t)t->shape[i];
    return n;
}

void st_close(st_file *f)
{
    if (!f) return;
    for (int i = 0; i < f->count; i++) free(f->tensors[i].name);
    for (int i = 0; i < f->meta_count; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->tensors);
    free(f->meta_keys);
    free(f->meta_values);
    free(f->buf);
    memset(f, 0, sizeof *f);
}

static int cmp_offset(const void *a, const void *b)
{
    const st_tensor *x = a, *y = b;
    return x->data < y->data ? -1 : x->data > y->data;
}

/* A JSON number usable as a size or offset: a non-negative integer exactly representable. */
static bool is_index(const cJSON *v)
{
    return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= 9.0e15 &&
           v->valuedouble == (double)(int64_t)v->valuedouble;
}

int st_parse(st_file *f, uint8_t *buf, size_t size, const char *name)
{
    memset(f, 0, sizeof *f);
    f->buf = buf;
    f->size = size;
    int rc = FERC_OK;
    cJSON *root = NULL;
    if (size < 8) {
        rc = ferc_set_error(FERC_ERR_FORMAT, "%s: not a safetensors file (only %zu bytes)", name, size);
        goto fail;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | buf[i];
    if (hlen > size - 8) {
        rc = ferc_set_error(FERC_ERR_FORMAT,
                            "%s: safetensors header claims %llu bytes but the file has only %zu after it",
                            name, (unsigned long long)hlen, size - 8);
        goto fail;
    }
    root = cJSON_ParseWithLength((const char *)buf + 8, (size_t)hlen);
    if (!root || !cJSON_IsObject(root)) {
        rc = ferc_set_error(FERC_ERR_FORMAT, "%s: safetensors header is not a JSON object", name);
        goto fail;
    }
    const uint8_t *base = buf + 8 + hlen;
    size_t data_size = size - 8 - (size_t)hlen;
    int n = cJSON_GetArraySize(root);
    f->tensors = calloc((size_t)n + 1, sizeof *f->tensors);
    f->meta_keys = calloc((size_t)n + 1, sizeof(char *));
    f->meta_values = calloc((size_t)n + 1, sizeof(char *));
    if (!f->tensors || !f->meta_keys || !f->meta_values) {
        rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory");
        goto fail;
    }
    cJSON *item;
    cJSON_ArrayForEach(item, root)
    {
        if (!strcmp(item->string, "__metadata__")) {
            if (!cJSON_IsObject(item)) {
                rc = ferc_set_error(FERC_ERR_FORMAT, "%s: __metadata__ is not an object", name);
                goto fail;
            }
            if (f->meta_count) { /* a second one (duplicate JSON keys) */
                rc = ferc_set_error(FERC_ERR_FORMAT, "%s: the header has __metadata__ twice", name);
                goto fail;
            }
            int m = cJSON_GetArraySize(item);
            char **k = realloc(f->meta_keys, (size_t)(m + 1) * sizeof(char *));
            if (k) f->meta_keys = k;
            char **v = realloc(f->meta_values, (size_t)(m + 1) * sizeof(char *));
            if (v) f->meta_values = v;
            if (!k || !v) {
                rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory");
                goto fail;
            }
            cJSON *kv;
            cJSON_ArrayForEach(kv, item)
            {
                if (!cJSON_IsString(kv)) {
                    rc = ferc_set_error(FERC_ERR_FORMAT, "%s: metadata value '%s' is not a string", name,
                                        kv->string);
                    goto fail;
                }
                f->meta_keys[f->meta_count] = strdup(kv->string);
                f->meta_values[f->meta_count] = strdup(kv->valuestring);
                f->meta_count++;
            }
            continue;
        }
        st_tensor *t = &f->tensors[f->count];
        cJSON *dt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
        cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
        cJSON *offs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
        if (!cJSON_IsString(dt) || !cJSON_IsArray(shape) || !cJSON_IsArray(offs) ||
            cJSON_GetArraySize(offs) != 2) {
            rc = ferc_set_error(FERC_ERR_FORMAT, "%s: tensor '%s' lacks dtype, shape or data_offsets", name,
                                item->string);
            goto fail;
        }
        int d;
        for (d = 0; d < ST_DTYPE_COUNT; d++)
            if (!strcmp(dt->valuestring, dtype_names[d])) break;
        if (d == ST_DTYPE_COUNT) {
            rc = ferc_set_error(FERC_ERR_FORMAT, "%s: tensor '%s' has unsupported dtype %s", name,
                                item->string, dt->valuestring);
            goto fail;
        }
        t->dtype = (st_dtype)d;
        t->ndim = cJSON_GetArraySize(shape);
        if (t->ndim > ST_MAX_DIMS) {
            rc = ferc_set_error(FERC_ERR_FORMAT, "%s: tensor '%s' has %d dimensions (max %d)", name,
                                item->string, t->ndim, ST_MAX_DIMS);
            goto fail;
        }
        double numel = 1;
        for (int i = 0; i < t->ndim; i++) {
            cJSON *s = cJSON_GetArrayItem(shape, i);
            if (!is_index(s)) {
                rc = ferc_set_error(FERC_ERR_FORMAT, "%s: tensor '%s' has a bad shape", name, item->string);
                goto fail;
            }
            t->shape[i] = (int64_t)s->valuedouble;
            numel *= s->valuedouble;
        }
        cJSON *ob = cJSON_GetArrayItem(offs, 0), *oe = cJSON_GetArrayItem(offs, 1);
        if (!is_index(ob) || !is_index(oe)) {
            rc = ferc_set_error(FERC_ERR_FORMAT, "%s: tensor '%s' has bad data_offsets", name, item->string);
            goto fail;
        }
        double b = ob->valuedouble, e = oe->valuedouble;
        if (!(b >= 0 && e >= b && e <= (double)data_size)) {
            rc = ferc_set_error(FERC_ERR_FORMAT,
                                "%s: tensor '%s' data [%.0f, %.0f) lies outside the %zu-byte data area (truncated file?)",
                                name, item->string, b, e, data_size);
            goto fail;
        }
        t->nbytes = (size_t)(e - b);
        if ((double)t->nbytes != numel * (double)dtype_sizes[d]) {
            rc = ferc_set_error(FERC_ERR_FORMAT, "%s: tensor '%s' has %zu bytes but its shape needs %.0f", name,
                                item->string, t->nbytes, numel * (double)dtype_sizes[d]);
            goto fail;
        }
        t->data = base + (size_t)b;
        t->name = strdup(item->string);
        if (!t->name) {
            rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory");
            goto fail;
        }
        f->count++;
    }
    qsort(f->tensors, (size_t)f->count, sizeof *f->tensors, cmp_offset);
    for (int i = 1; i < f->count; i++) {
        if (f->tensors[i].data < f->tensors[i - 1].data + f->tensors[i - 1].nbytes) {
            rc = ferc_set_error(FERC_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap", name,
                                f->tensors[i - 1].name, f->tensors[i].name);
            goto fail;
        }
    }
    cJSON_Delete(root);
    return FERC_OK;
fail:
    cJSON_Delete(root);
    st_close(f);
    return rc;
}

int st_read(st_file *f, const char *path)
{
    uint8_t *buf;
    size_t size;
    memset(f, 0, sizeof *f);
    int rc = file_read_all(path, &buf, &size);
    if (rc) return rc;
    return st_parse(f, buf, size, path);
}

const st_tensor *st_find(const st_file *f, const char *name)
{
    for (int i = 0; i < f->count; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

const char *st_meta(const st_file *f, const char *key)
{
    for (int i = 0; i < f->meta_count; i++)
        if (!strcmp(f->meta_keys[i], key)) return f->meta_values[i];
    return NULL;
}

int st_to_f32(const st_tensor *t, float *out, size_t count)
{
    size_t n = st_numel(t);
    if (n != count)
        return ferc_set_error(FERC_ERR_SHAPE, "tensor '%s' has %zu elements, expected %zu", t->name, n, count);
    const uint8_t *p = t->data;
    for (size_t i = 0; i < n; i++) {
        switch (t->dtype) {
        case ST_F32: memcpy(&out[i], p + 4 * i, 4); break;
        case ST_F16: { uint16_t h; memcpy(&h, p + 2 * i, 2); out[i] = f16_to_f32(h); } break;
        case ST_BF16: { uint16_t h; memcpy(&h, p + 2 * i, 2); out[i] = bf16_to_f32(h); } break;
        case ST_F64: { double v; memcpy(&v, p + 8 * i, 8); out[i] = (float)v; } break;
        case ST_I64: { int64_t v; memcpy(&v, p + 8 * i, 8); out[i] = (float)v; } break;
        case ST_I32: { int32_t v; memcpy(&v, p + 4 * i, 4); out[i] = (float)v; } break;
        case ST_I16: { int16_t v; memcpy(&v, p + 2 * i, 2); out[i] = (float)v; } break;
        case ST_I8: out[i] = (float)(int8_t)p[i]; break;
        case ST_U8: case ST_BOOL: out[i] = (float)p[i]; break;
        default: return ferc_set_error(FERC_ERR_FORMAT, "tensor '%s': bad dtype", t->name);
        }
    }
    return FERC_OK;
}

/* ---- writer ------------------------------------------------------------------------------ */

typedef struct st_entry {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data;
    int convert_from_f32;  /* data is float32, store converted to dtype */
} st_entry;

struct st_writer {
    st_entry *e;
    int n, cap;
    cJSON *meta;
};

st_writer *st_writer_create(void)
{
    st_writer *w = calloc(1, sizeof *w);
    if (w) w->meta = cJSON_CreateObject();
    if (w && !w->meta) {
        free(w);
        w = NULL;
    }
    if (!w) ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    return w;
}

void st_writer_destroy(st_writer *w)
{
    if (!w) return;
    for (int i = 0; i < w->n; i++) free(w->e[i].name);
    free(w->e);
    cJSON_Delete(w->meta);
    free(w);
}

static int add_entry(st_writer *w, const char *name, st_dtype dtype, int ndim, const int64_t *shape,
                     const void *data, int convert)
{
    if (ndim < 0 || ndim > ST_MAX_DIMS || (unsigned)dtype >= ST_DTYPE_COUNT)
        return ferc_set_error(FERC_ERR_INVALID, "safetensors: bad tensor '%s'", name);
    for (int i = 0; i < w->n; i++)
        if (!strcmp(w->e[i].name, name))
            return ferc_set_error(FERC_ERR_INVALID, "safetensors: duplicate tensor name '%s'", name);
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 64;
        st_entry *e = realloc(w->e, (size_t)cap * sizeof *e);
        if (!e) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
        w->e = e;
        w->cap = cap;
    }
    st_entry *e = &w->e[w->n];
    memset(e, 0, sizeof *e);
    e->name = strdup(name);
    if (!e->name) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    e->dtype = dtype;
    e->ndim = ndim;
    for (int i = 0; i < ndim; i++) e->shape[i] = shape[i];
    e->data = data;
    e->convert_from_f32 = convert;
    w->n++;
    return FERC_OK;
}

int st_writer_add(st_writer *w, const char *name, st_dtype dtype, int ndim, const int64_t *shape,
                  const void *data)
{
    return add_entry(w, name, dtype, ndim, shape, data, 0);
}

int st_writer_add_f32_as(st_writer *w, const char *name, st_dtype stored, int ndim, const int64_t *shape,
                         const float *data)
{
    if (stored != ST_F32 && stored != ST_F16 && stored != ST_BF16)
        return ferc_set_error(FERC_ERR_INVALID, "safetensors: float32 can be stored as F32, F16 or BF16 only");
    return add_entry(w, name, stored, ndim, shape, data, stored != ST_F32);
}

int st_writer_meta(st_writer *w, const char *key, const char *value)
{
    cJSON_DeleteItemFromObjectCaseSensitive(w->meta, key);
    if (!cJSON_AddStringToObject(w->meta, key, value)) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    return FERC_OK;
}

static size_t entry_bytes(const st_entry *e)
{
    size_t n = 1;
    for (int i = 0; i < e->ndim; i++) n *= (size_t)e->shape[i];
    return n * dtype_sizes[e->dtype];
}

int st_writer_save(st_writer *w, const char *path)
{
    cJSON *root = cJSON_CreateObject();
    if (!root) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    if (cJSON_GetArraySize(w->meta) > 0) cJSON_AddItemToObject(root, "__metadata__", cJSON_Duplicate(w->meta, 1));
    size_t off = 0;
    for (int i = 0; i < w->n; i++) {
        const st_entry *e = &w->e[i];
        cJSON *t = cJSON_AddObjectToObject(root, e->name);
        cJSON_AddStringToObject(t, "dtype", dtype_names[e->dtype]);
        cJSON *shape = cJSON_AddArrayToObject(t, "shape");
        for (int d = 0; d < e->ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)e->shape[d]));
        cJSON *offs = cJSON_AddArrayToObject(t, "data_offsets");
        size_t nb = entry_bytes(e);
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + nb)));
        off += nb;
    }
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!json) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    size_t jlen = strlen(json);
    size_t padded = (jlen + 7) & ~(size_t)7; /* keep the data 8-byte aligned */
    uint8_t hdr[8];
    for (int i = 0; i < 8; i++) hdr[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    atomic_file *af;
    int rc = atomic_file_open(&af, path);
    if (rc) {
        free(json);
        return rc;
    }
    rc = atomic_file_write(af, hdr, 8);
    if (!rc) rc = atomic_file_write(af, json, jlen);
    if (!rc) rc = atomic_file_write(af, "        ", padded - jlen);
    free(json);
    for (int i = 0; i < w->n && !rc; i++) {
        const st_entry *e = &w->e[i];
        if (!e->convert_from_f32) {
            rc = atomic_file_write(af, e->data, entry_bytes(e));
            continue;
        }
        size_t n = entry_bytes(e) / 2;
        const float *src = e->data;
        uint16_t tmp[4096];
        for (size_t j = 0; j < n && !rc; j += 4096) {
            size_t k = n - j < 4096 ? n - j : 4096;
            for (size_t q = 0; q < k; q++)
                tmp[q] = e->dtype == ST_F16 ? f32_to_f16(src[j + q]) : f32_to_bf16(src[j + q]);
            rc = atomic_file_write(af, tmp, k * 2);
        }
    }
    if (rc) {
        atomic_file_abort(af); /* the message names the file already */
        return rc;
    }
    return atomic_file_commit(af);
}
