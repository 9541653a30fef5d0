/* torch .pth import (zip and legacy formats). See pth.h for the contract. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>

#include "core/core.h"
#include "io/pickle.h"
#include "io/pth.h"

static int nomem(void) { return ferc_set_error(FERC_ERR_NOMEM, "out of memory"); }

static const uint8_t legacy_magic[10] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

bool pth_is_torch(const uint8_t *buf, size_t size)
{
    if (size >= 4 && buf[0] == 'P' && buf[1] == 'K' && buf[2] == 3 && buf[3] == 4) return true;
    return size >= 2 && buf[0] == 0x80 && buf[1] >= 2 && buf[1] <= 5;   /* pickle_protocol=2..5 */
}

/* One storage as found in the file: its bytes are either inside the legacy file buffer or an
 * owned copy read from a zip entry (read on first use, shared by all its tensors). */
typedef struct storage {
    const char *key;
    st_dtype dtype;
    const uint8_t *data;
    size_t nbytes;
    uint8_t *owned;
    bool loaded;
} storage;

typedef struct loader {
    const char *name;
    storage *st;
    int nst, capst;
    zip_t *zip;
    size_t size;        /* bytes of the whole file: no entry can be stored in more */
    char prefix[256];   /* the zip's top folder, with its slash */
} loader;

static storage *find_storage(loader *L, const char *key)
{
    for (int i = 0; i < L->nst; i++)
        if (!strcmp(L->st[i].key, key)) return &L->st[i];
    return NULL;
}

/* Registers every storage reachable from root: the legacy format stores every storage the
 * pickle references (a checkpoint's optimizer state too), and skipping one needs its element
 * size. Iterative with a seen flag, so deep nesting, sharing and cycles are all safe. Two
 * persistent ids naming one key with different element types are refused. */
static int collect_storages(loader *L, pk_value *root)
{
    size_t cap = 64, n = 0;
    pk_value **todo = malloc(cap * sizeof *todo);
    if (!todo) return nomem();
    todo[n++] = root;
    root->seen = true;
    int rc = FERC_OK;
    while (n && !rc) {
        pk_value *v = todo[--n];
        const pk_value *s = NULL;
        size_t kids = 0;
        pk_value **a = NULL, **b = NULL;
        if (v->kind == PK_TENSOR) s = v->u.tensor.storage;
        else if (v->kind == PK_STORAGE) s = v;
        else if (v->kind == PK_TUPLE || v->kind == PK_LIST) kids = v->u.seq.n, a = v->u.seq.items;
        else if (v->kind == PK_DICT) kids = v->u.dict.n, a = v->u.dict.vals, b = v->u.dict.keys;
        if (s) {
            storage *e = find_storage(L, s->u.storage.key);
            if (e && e->dtype != s->u.storage.dtype) {
                rc = ferc_set_error(FERC_ERR_FORMAT, "%s: storage '%s' is declared with two element types", L->name,
                                    s->u.storage.key);
            } else if (!e) {
                if (L->nst == L->capst) {
                    int c = L->capst ? 2 * L->capst : 64;
                    storage *ns = realloc(L->st, (size_t)c * sizeof *ns);
                    if (!ns) {
                        rc = nomem();
                        break;
                    }
                    L->st = ns;
                    L->capst = c;
                }
                L->st[L->nst++] = (storage){.key = s->u.storage.key, .dtype = s->u.storage.dtype};
            }
            continue;
        }
        if (n + 2 * kids > cap) {
            size_t c = 2 * (n + 2 * kids);
            pk_value **t = realloc(todo, c * sizeof *t);
            if (!t) {
                rc = nomem();
                break;
            }
            todo = t;
            cap = c;
        }
        for (size_t i = 0; i < kids; i++) {
            if (!a[i]->seen) a[i]->seen = true, todo[n++] = a[i];
            if (b && !b[i]->seen) b[i]->seen = true, todo[n++] = b[i];
        }
    }
    free(todo);
    return rc;
}

static int zip_read_entry(loader *L, zip_int64_t idx, const char *entry, uint8_t **out, size_t *size)
{
    zip_stat_t zs;
    *out = NULL;
    *size = 0;
    if (zip_stat_index(L->zip, (zip_uint64_t)idx, 0, &zs) || !(zs.valid & ZIP_STAT_SIZE) ||
        !(zs.valid & ZIP_STAT_COMP_SIZE) || !(zs.valid & ZIP_STAT_COMP_METHOD))
        return ferc_set_error(FERC_ERR_FORMAT, "%s: cannot stat zip entry %s", L->name, entry);
    /* a size the entry cannot hold is refused before anything is allocated: stored entries hold
     * their compressed size, deflate expands at most 1032:1 */
    const zip_uint64_t bound = zs.comp_method == ZIP_CM_STORE ? zs.comp_size : zs.comp_size * 1032 + 1024;
    if (zs.comp_size > L->size || zs.size > bound)
        return ferc_set_error(FERC_ERR_FORMAT, "%s: zip entry %s claims %llu bytes from %llu stored: corrupt", L->name,
                              entry, (unsigned long long)zs.size, (unsigned long long)zs.comp_size);
    zip_file_t *zf = zip_fopen_index(L->zip, (zip_uint64_t)idx, 0);
    if (!zf)
        return ferc_set_error(FERC_ERR_FORMAT, "%s: cannot open zip entry %s: %s", L->name, entry,
                              zip_error_strerror(zip_get_error(L->zip)));
    uint8_t *buf = malloc(zs.size ? (size_t)zs.size : 1);
    if (!buf) {
        zip_fclose(zf);
        return nomem();
    }
    zip_int64_t got = zs.size ? zip_fread(zf, buf, zs.size) : 0;
    int crc_bad = zip_fclose(zf);
    if (got < 0 || (zip_uint64_t)got != zs.size || crc_bad) {
        free(buf);
        return ferc_set_error(FERC_ERR_FORMAT, "%s: zip entry %s is truncated or corrupt", L->name, entry);
    }
    *out = buf;
    *size = (size_t)zs.size;
    return FERC_OK;
}

static int load_storage(loader *L, storage *s)
{
    if (s->loaded) return FERC_OK;
    if (!L->zip)
        return ferc_set_error(FERC_ERR_FORMAT, "%s: storage '%s' is used but not stored in the file", L->name, s->key);
    char entry[512];
    snprintf(entry, sizeof entry, "%sdata/%s", L->prefix, s->key);
    zip_int64_t idx = zip_name_locate(L->zip, entry, 0);
    if (idx < 0) return ferc_set_error(FERC_ERR_FORMAT, "%s: zip entry %s (a tensor storage) is missing", L->name, entry);
    size_t n;
    int rc = zip_read_entry(L, idx, entry, &s->owned, &n);
    if (rc) return rc;
    s->data = s->owned;
    s->nbytes = n;
    s->loaded = true;
    return FERC_OK;
}

static bool is_float(st_dtype t) { return t == ST_F32 || t == ST_F16 || t == ST_BF16 || t == ST_F64; }

static void convert(const storage *s, size_t idx, td_dtype to, void *out, size_t k)
{
    const uint8_t *p = s->data + idx * st_dtype_size(s->dtype);
    double v = 0;
    int64_t iv = 0;
    switch (s->dtype) {
    case ST_F32: { float f; memcpy(&f, p, 4); v = f; } break;
    case ST_F16: { uint16_t h; memcpy(&h, p, 2); v = f16_to_f32(h); } break;
    case ST_BF16: { uint16_t h; memcpy(&h, p, 2); v = bf16_to_f32(h); } break;
    case ST_F64: memcpy(&v, p, 8); break;
    case ST_I64: memcpy(&iv, p, 8); break;
    case ST_I32: { int32_t x; memcpy(&x, p, 4); iv = x; } break;
    case ST_I16: { int16_t x; memcpy(&x, p, 2); iv = x; } break;
    case ST_I8: iv = (int8_t)p[0]; break;
    default: iv = p[0]; break;   /* U8, BOOL */
    }
    if (to == TD_F32) ((float *)out)[k] = (float)v;
    else ((int64_t *)out)[k] = iv;
}

/* Copies a (storage, offset, shape, stride) view into a new contiguous tensor named `key`. */
static int materialise(loader *L, tensor_dict *d, const char *key, const pk_value *t)
{
    const pk_value *sv = t->u.tensor.storage;
    storage *s = find_storage(L, sv->u.storage.key);
    if (!s) return ferc_set_error(FERC_ERR_FORMAT, "%s: tensor '%s' has an unknown storage", L->name, key);
    int rc = load_storage(L, s);
    if (rc) return rc;
    size_t el = st_dtype_size(s->dtype);
    int64_t have = (int64_t)(s->nbytes / el);
    int64_t declared = sv->u.storage.numel;
    if (have < declared)
        return ferc_set_error(FERC_ERR_FORMAT,
                              "%s: storage '%s' holds %lld bytes but is declared as %lld %s elements (%lld bytes): "
                              "truncated or corrupt file",
                              L->name, s->key, (long long)s->nbytes, (long long)declared, st_dtype_name(s->dtype),
                              (long long)declared * (long long)el);
    int64_t lo = sv->u.storage.view_offset, hi = declared;
    if (sv->u.storage.view_numel >= 0) hi = lo + sv->u.storage.view_numel;

    int nd = t->u.tensor.ndim;
    const int64_t *shape = t->u.tensor.shape, *stride = t->u.tensor.stride;
    int64_t numel = 1, last = 0;
    bool overflow = false;
    for (int i = 0; i < nd; i++) {
        overflow |= __builtin_mul_overflow(numel, shape[i], &numel);
        if (shape[i] > 0) {
            int64_t span;
            overflow |= __builtin_mul_overflow(shape[i] - 1, stride[i], &span);
            overflow |= __builtin_add_overflow(last, span, &last);
        }
    }
    int64_t first = 0;
    overflow |= __builtin_add_overflow(lo, t->u.tensor.offset, &first);
    if (!overflow && numel > 0) overflow |= __builtin_add_overflow(first, last, &last);
    if (overflow || numel > (int64_t)(SIZE_MAX / 8))
        return ferc_set_error(FERC_ERR_FORMAT, "%s: tensor '%s' has an impossible size", L->name, key);
    if (numel > 0 && last >= hi)
        return ferc_set_error(FERC_ERR_FORMAT,
                              "%s: tensor '%s' needs element %lld of storage '%s', which has only %lld: "
                              "the storage is shorter than the tensor needs",
                              L->name, key, (long long)last, s->key, (long long)(hi - lo));

    td_dtype to = is_float(s->dtype) ? TD_F32 : TD_I64;
    void *out = malloc((size_t)(numel ? numel : 1) * (to == TD_F32 ? sizeof(float) : sizeof(int64_t)));
    if (!out) return nomem();
    int64_t idx[TD_MAX_DIMS] = {0};
    int64_t pos = first;
    for (int64_t k = 0; k < numel; k++) {
        convert(s, (size_t)pos, to, out, (size_t)k);
        /* Odometer over the multi-index, moving `pos` by the strides. */
        for (int i = nd - 1; i >= 0; i--) {
            if (++idx[i] < shape[i]) {
                pos += stride[i];
                break;
            }
            pos -= (shape[i] - 1) * stride[i];
            idx[i] = 0;
        }
    }
    return td_add(d, key, to, s->dtype, nd, shape, out);
}

static bool has_tensor_values(const pk_value *dict)
{
    for (size_t i = 0; i < dict->u.dict.n; i++)
        if (dict->u.dict.vals[i]->kind == PK_TENSOR) return true;
    return false;
}

static int select_state_dict(loader *L, const pk_value *root, const char *nested_key, const pk_value **out)
{
    if (root->kind != PK_DICT)
        return ferc_set_error(FERC_ERR_FORMAT, "%s holds a pickled %s, not a state_dict", L->name,
                              pk_kind_name(root->kind));
    const pk_value *sd = root;
    if (nested_key) {
        sd = pk_dict_get(root, nested_key);
        if (!sd) return ferc_set_error(FERC_ERR_NOT_FOUND, "%s has no entry '%s'", L->name, nested_key);
    } else if (!has_tensor_values(root)) {
        static const char *const keys[] = {"state_dict", "model"};
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
            const pk_value *v = pk_dict_get(root, keys[i]);
            if (v && v->kind == PK_DICT) {
                sd = v;
                break;
            }
        }
    }
    if (sd->kind != PK_DICT || !has_tensor_values(sd)) {
        char keys[400] = "";
        size_t k = 0;
        for (size_t i = 0; root->kind == PK_DICT && i < root->u.dict.n && k < sizeof keys - 64; i++) {
            const pk_value *kv = root->u.dict.keys[i];
            k += (size_t)snprintf(keys + k, sizeof keys - k, "%s'%.40s'", i ? ", " : "",
                                  kv->kind == PK_STR ? kv->u.str.s : pk_kind_name(kv->kind));
        }
        return ferc_set_error(FERC_ERR_FORMAT,
                              "%s: no state_dict found (top-level keys: %s); name the entry that holds it", L->name,
                              keys[0] ? keys : "none");
    }
    *out = sd;
    return FERC_OK;
}

static int build_dict(loader *L, tensor_dict *d, const pk_value *root, const char *nested_key)
{
    const pk_value *sd = NULL;
    int rc = select_state_dict(L, root, nested_key, &sd);
    if (rc) return rc;
    for (size_t i = 0; i < sd->u.dict.n && !rc; i++) {
        const pk_value *k = sd->u.dict.keys[i], *v = sd->u.dict.vals[i];
        /* Checkpoint dicts may mix in ints or strings (epoch, arch): only tensors are weights. */
        if (v->kind != PK_TENSOR) continue;
        if (k->kind != PK_STR) return ferc_set_error(FERC_ERR_FORMAT, "%s: a state_dict key is not a string", L->name);
        rc = materialise(L, d, k->u.str.s, v);
    }
    return rc;
}

/* ---- zip format ---------------------------------------------------------------------------- */

static int parse_zip(loader *L, tensor_dict *d, pk_arena *A, const uint8_t *buf, size_t size, const char *nested)
{
    zip_error_t ze;
    zip_error_init(&ze);
    zip_source_t *src = zip_source_buffer_create(buf, size, 0, &ze);
    if (!src) {
        zip_error_fini(&ze);
        return nomem();
    }
    L->zip = zip_open_from_source(src, ZIP_RDONLY, &ze);
    if (!L->zip) {
        zip_source_free(src);
        int rc = ferc_set_error(FERC_ERR_FORMAT, "%s: not a readable zip archive (truncated file?): %s", L->name,
                                zip_error_strerror(&ze));
        zip_error_fini(&ze);
        return rc;
    }
    zip_error_fini(&ze);
    zip_int64_t n = zip_get_num_entries(L->zip, 0), pkl = -1;
    for (zip_int64_t i = 0; i < n && pkl < 0; i++) {
        const char *nm = zip_get_name(L->zip, (zip_uint64_t)i, 0);
        if (!nm) continue;
        const char *slash = strchr(nm, '/');
        if (slash && !strcmp(slash + 1, "data.pkl") && (size_t)(slash + 1 - nm) < sizeof L->prefix) {
            memcpy(L->prefix, nm, (size_t)(slash + 1 - nm));
            L->prefix[slash + 1 - nm] = 0;
            pkl = i;
        } else if (!strcmp(nm, "data.pkl")) {
            L->prefix[0] = 0;
            pkl = i;
        }
    }
    if (pkl < 0)
        return ferc_set_error(FERC_ERR_FORMAT, "%s: zip archive has no data.pkl: not a torch.save file", L->name);

    char entry[512];
    snprintf(entry, sizeof entry, "%sbyteorder", L->prefix);
    zip_int64_t bo = zip_name_locate(L->zip, entry, 0);
    if (bo >= 0) {
        uint8_t *b;
        size_t bn;
        int rc = zip_read_entry(L, bo, entry, &b, &bn);
        if (rc) return rc;
        bool big = bn >= 3 && !memcmp(b, "big", 3);
        free(b);
        if (big) return ferc_set_error(FERC_ERR_UNSUPPORTED, "%s: big-endian torch files are not supported", L->name);
    }

    snprintf(entry, sizeof entry, "%sdata.pkl", L->prefix);
    uint8_t *pk;
    size_t pn;
    int rc = zip_read_entry(L, pkl, entry, &pk, &pn);
    if (rc) return rc;
    pk_value *root;
    char what[600];
    snprintf(what, sizeof what, "%s: %s", L->name, entry);
    rc = pk_load(A, pk, pn, what, NULL, &root);
    free(pk);
    if (!rc) rc = collect_storages(L, root);
    if (!rc) rc = build_dict(L, d, root, nested);
    return rc;
}

/* ---- legacy format ------------------------------------------------------------------------- */

static int parse_legacy(loader *L, tensor_dict *d, pk_arena *A, const uint8_t *buf, size_t size, const char *nested)
{
    size_t pos = 0, used;
    pk_value *magic, *proto, *info, *root, *keys;
    char what[600];
    snprintf(what, sizeof what, "%s (legacy torch format)", L->name);
    int rc = pk_load(A, buf, size, what, &used, &magic);
    if (rc) return rc;
    pos += used;
    if (magic->kind != PK_BIGINT || magic->u.str.len != sizeof legacy_magic ||
        memcmp(magic->u.str.s, legacy_magic, sizeof legacy_magic))
        return ferc_set_error(FERC_ERR_FORMAT,
                              "%s: wrong magic number: a pickle, but not a torch.save file (expected the legacy magic "
                              "0x1950a86a20f9469cfc6c)",
                              L->name);
    if ((rc = pk_load(A, buf + pos, size - pos, what, &used, &proto))) return rc;
    pos += used;
    if (proto->kind != PK_INT || proto->u.i != 1001)
        return ferc_set_error(FERC_ERR_UNSUPPORTED, "%s: unsupported legacy torch protocol version", L->name);
    if ((rc = pk_load(A, buf + pos, size - pos, what, &used, &info))) return rc;
    pos += used;
    const pk_value *le = pk_dict_get(info, "little_endian");
    if (le && le->kind == PK_BOOL && !le->u.b)
        return ferc_set_error(FERC_ERR_UNSUPPORTED, "%s: big-endian torch files are not supported", L->name);
    if ((rc = pk_load(A, buf + pos, size - pos, what, &used, &root))) return rc;
    pos += used;
    if ((rc = pk_load(A, buf + pos, size - pos, what, &used, &keys))) return rc;
    pos += used;
    if (keys->kind != PK_LIST)
        return ferc_set_error(FERC_ERR_FORMAT, "%s: the storage key list is a %s", L->name, pk_kind_name(keys->kind));
    if ((rc = collect_storages(L, root))) return rc;
    for (size_t i = 0; i < keys->u.seq.n; i++) {
        const pk_value *k = keys->u.seq.items[i];
        if (k->kind != PK_STR) return ferc_set_error(FERC_ERR_FORMAT, "%s: a storage key is not a string", L->name);
        storage *s = find_storage(L, k->u.str.s);
        if (!s)
            return ferc_set_error(FERC_ERR_FORMAT, "%s: storage '%s' is stored but no tensor declares its type",
                                  L->name, k->u.str.s);
        if (size - pos < 8)
            return ferc_set_error(FERC_ERR_FORMAT, "%s: file ends before storage '%s' (truncated file)", L->name,
                                  s->key);
        uint64_t count = 0;
        for (int b = 7; b >= 0; b--) count = (count << 8) | buf[pos + (size_t)b];
        pos += 8;
        size_t el = st_dtype_size(s->dtype);
        if (count > (size - pos) / el)
            return ferc_set_error(FERC_ERR_FORMAT,
                                  "%s: storage '%s' needs %llu bytes but only %zu remain (truncated file)", L->name,
                                  s->key, (unsigned long long)count * el, size - pos);
        s->data = buf + pos;
        s->nbytes = (size_t)count * el;
        s->loaded = true;
        pos += s->nbytes;
    }
    return build_dict(L, d, root, nested);
}

int pth_parse(tensor_dict *d, const uint8_t *buf, size_t size, const char *name, const char *nested_key)
{
    loader L = {.name = name, .size = size};
    pk_arena *A = pk_arena_create();
    if (!A) return FERC_ERR_NOMEM;
    int rc;
    if (size >= 4 && !memcmp(buf, "PK\3\4", 4)) rc = parse_zip(&L, d, A, buf, size, nested_key);
    else if (pth_is_torch(buf, size)) rc = parse_legacy(&L, d, A, buf, size, nested_key);
    else
        rc = ferc_set_error(FERC_ERR_FORMAT,
                            "%s: wrong magic: not a torch .pth file (neither a zip archive nor a legacy pickle)", name);
    for (int i = 0; i < L.nst; i++) free(L.st[i].owned);
    free(L.st);
    if (L.zip) zip_discard(L.zip);   /* read-only: nothing to write back; also frees the source */
    pk_arena_destroy(A);
    if (rc) td_free(d);
    return rc;
}

int pth_read(tensor_dict *d, const char *path, const char *nested_key)
{
    uint8_t *buf;
    size_t size;
    td_init(d);
    int rc = file_read_all(path, &buf, &size);
    if (rc) return rc;
    rc = pth_parse(d, buf, size, path, nested_key);
    free(buf);
    return rc;
}
