/* tensor_dict: container, key handling, safetensors conversion and the format-dispatching
 * loader. See tensor_dict.h for the contract. */
#include <openssl/evp.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "io/pth.h"
#include "io/tensor_dict.h"

static int nomem(void) { return ferc_set_error(FERC_ERR_NOMEM, "out of memory"); }

void td_init(tensor_dict *d) { memset(d, 0, sizeof *d); }

static void free_tensor(td_tensor *t)
{
    free(t->name);
    free(t->f32);
    free(t->i64);
}

void td_free(tensor_dict *d)
{
    if (!d) return;
    for (int i = 0; i < d->count; i++) free_tensor(&d->items[i]);
    free(d->items);
    td_init(d);
}

int td_index(const tensor_dict *d, const char *name)
{
    for (int i = 0; i < d->count; i++)
        if (!strcmp(d->items[i].name, name)) return i;
    return -1;
}

const td_tensor *td_find(const tensor_dict *d, const char *name)
{
    int i = td_index(d, name);
    return i < 0 ? NULL : &d->items[i];
}

int td_add(tensor_dict *d, const char *name, td_dtype dtype, st_dtype source, int ndim, const int64_t *shape,
           void *data)
{
    if (ndim < 0 || ndim > TD_MAX_DIMS) {
        free(data);
        return ferc_set_error(FERC_ERR_INVALID, "tensor '%s' has %d dimensions (max %d)", name, ndim, TD_MAX_DIMS);
    }
    if (td_index(d, name) >= 0) {
        free(data);
        return ferc_set_error(FERC_ERR_FORMAT, "duplicate tensor name '%s'", name);
    }
    if (d->count == d->cap) {
        int cap = d->cap ? 2 * d->cap : 64;
        td_tensor *it = realloc(d->items, (size_t)cap * sizeof *it);
        if (!it) {
            free(data);
            return nomem();
        }
        d->items = it;
        d->cap = cap;
    }
    td_tensor *t = &d->items[d->count];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    if (!t->name) {
        free(data);
        return nomem();
    }
    t->dtype = dtype;
    t->source = source;
    t->ndim = ndim;
    t->numel = 1;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        t->numel *= (size_t)shape[i];
    }
    if (dtype == TD_F32) t->f32 = data;
    else t->i64 = data;
    d->count++;
    return FERC_OK;
}

int td_remove(tensor_dict *d, const char *name)
{
    int i = td_index(d, name);
    if (i < 0) return ferc_set_error(FERC_ERR_NOT_FOUND, "no tensor named '%s'", name);
    free_tensor(&d->items[i]);
    memmove(&d->items[i], &d->items[i + 1], (size_t)(d->count - i - 1) * sizeof *d->items);
    d->count--;
    return FERC_OK;
}

int td_rename(tensor_dict *d, const char *from, const char *to)
{
    int i = td_index(d, from);
    if (i < 0) return ferc_set_error(FERC_ERR_NOT_FOUND, "no tensor named '%s'", from);
    if (strcmp(from, to) && td_index(d, to) >= 0)
        return ferc_set_error(FERC_ERR_FORMAT, "cannot rename '%s' to '%s': that name is taken", from, to);
    char *n = strdup(to);
    if (!n) return nomem();
    free(d->items[i].name);
    d->items[i].name = n;
    return FERC_OK;
}

/* ---- key handling ------------------------------------------------------------------------ */

static bool all_start_with(const tensor_dict *d, const char *prefix)
{
    size_t n = strlen(prefix);
    for (int i = 0; i < d->count; i++)
        if (strncmp(d->items[i].name, prefix, n)) return false;
    return d->count > 0;
}

int td_strip_prefix(tensor_dict *d, const char *prefix)
{
    size_t n = strlen(prefix);
    for (int i = 0; i < d->count; i++) {
        if (strncmp(d->items[i].name, prefix, n))
            return ferc_set_error(FERC_ERR_FORMAT, "cannot strip prefix '%s': key '%s' does not start with it",
                                  prefix, d->items[i].name);
        if (!d->items[i].name[n])
            return ferc_set_error(FERC_ERR_FORMAT, "cannot strip prefix '%s': it is all of key '%s'", prefix,
                                  d->items[i].name);
    }
    /* Stripping a common prefix keeps names unique, so renaming in place is safe. */
    for (int i = 0; i < d->count; i++) {
        char *name = d->items[i].name;
        memmove(name, name + n, strlen(name + n) + 1);
    }
    return FERC_OK;
}

int td_strip_auto(tensor_dict *d, char *stripped, size_t stripped_size)
{
    static const char *const wrappers[] = {"module.", "network."};
    if (stripped && stripped_size) stripped[0] = 0;
    for (;;) {
        const char *hit = NULL;
        for (size_t w = 0; w < sizeof wrappers / sizeof wrappers[0]; w++)
            if (all_start_with(d, wrappers[w])) hit = wrappers[w];
        if (!hit) return FERC_OK;
        int rc = td_strip_prefix(d, hit);
        if (rc) return rc;
        if (stripped && stripped_size) strncat(stripped, hit, stripped_size - strlen(stripped) - 1);
    }
}

int td_fix_densenet_keys(tensor_dict *d, int *renamed)
{
    /* torchvision/models/densenet.py, _load_state_dict, in POSIX ERE ((?:..) becomes (..)). */
    static const char *pattern =
        "^(.*denselayer[0-9]+\\.(norm|relu|conv))\\.([12]\\.(weight|bias|running_mean|running_var))$";
    regex_t re;
    if (renamed) *renamed = 0;
    if (regcomp(&re, pattern, REG_EXTENDED)) return ferc_set_error(FERC_ERR_INVALID, "DenseNet key regex failed");
    int rc = FERC_OK;
    for (int i = 0; i < d->count && !rc; i++) {
        regmatch_t g[4];
        const char *name = d->items[i].name;
        if (regexec(&re, name, 4, g, 0)) continue;
        size_t len = strlen(name);
        char *fixed = malloc(len);
        if (!fixed) {
            rc = nomem();
            break;
        }
        size_t a = (size_t)(g[1].rm_eo - g[1].rm_so), b = (size_t)(g[3].rm_eo - g[3].rm_so);
        memcpy(fixed, name + g[1].rm_so, a);
        memcpy(fixed + a, name + g[3].rm_so, b);
        fixed[a + b] = 0;
        rc = td_rename(d, name, fixed);
        free(fixed);
        if (!rc && renamed) (*renamed)++;
    }
    regfree(&re);
    return rc;
}

/* ---- checking ---------------------------------------------------------------------------- */

static void shape_str(char *buf, size_t size, int ndim, const int64_t *shape)
{
    size_t k = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && k < size; i++)
        k += (size_t)snprintf(buf + k, size - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < size) snprintf(buf + k, size - k, "]");
}

typedef struct msgbuf {
    char s[1900];
    size_t len;
} msgbuf;

static void msg_add(msgbuf *m, const char *fmt, ...) FERC_PRINTF(2, 3);
static void msg_add(msgbuf *m, const char *fmt, ...)
{
    if (m->len >= sizeof m->s - 1) return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(m->s + m->len, sizeof m->s - m->len, fmt, ap);
    va_end(ap);
    if (k > 0) m->len += (size_t)k;
    if (m->len > sizeof m->s - 1) m->len = sizeof m->s - 1;
}

int td_check(const tensor_dict *d, const td_spec *spec, int n)
{
    enum { SHOW = 8 };
    msgbuf m = {.len = 0};
    int missing = 0, mismatched = 0, unexpected = 0;
    char s1[128], s2[128];
    for (int i = 0; i < n; i++)
        if (!td_find(d, spec[i].name) && missing++ < SHOW)
            msg_add(&m, "%s %s", missing == 1 ? " missing:" : ",", spec[i].name);
    if (missing > SHOW) msg_add(&m, " (and %d more)", missing - SHOW);
    for (int i = 0; i < n; i++) {
        const td_tensor *t = td_find(d, spec[i].name);
        if (!t) continue;
        bool same = t->ndim == spec[i].ndim;
        for (int k = 0; same && k < t->ndim; k++) same = t->shape[k] == spec[i].shape[k];
        if (same || mismatched++ >= SHOW) continue;
        shape_str(s1, sizeof s1, t->ndim, t->shape);
        shape_str(s2, sizeof s2, spec[i].ndim, spec[i].shape);
        msg_add(&m, "%s %s is %s in the file, the model needs %s", mismatched == 1 ? " shape mismatch:" : ",",
                spec[i].name, s1, s2);
    }
    if (mismatched > SHOW) msg_add(&m, " (and %d more)", mismatched - SHOW);
    for (int i = 0; i < d->count; i++) {
        bool known = false;
        for (int k = 0; k < n && !known; k++) known = !strcmp(spec[k].name, d->items[i].name);
        if (!known && unexpected++ < SHOW) msg_add(&m, "%s %s", unexpected == 1 ? " unexpected:" : ",", d->items[i].name);
    }
    if (unexpected > SHOW) msg_add(&m, " (and %d more)", unexpected - SHOW);
    if (!missing && !mismatched && !unexpected) return FERC_OK;
    return ferc_set_error(FERC_ERR_SHAPE, "weights do not fit the model (%d missing, %d unexpected, %d mis-shaped):%s",
                          missing, unexpected, mismatched, m.s);
}

/* ---- safetensors ------------------------------------------------------------------------- */

int td_from_safetensors(tensor_dict *d, const st_file *f)
{
    for (int i = 0; i < f->count; i++) {
        const st_tensor *t = &f->tensors[i];
        size_t n = st_numel(t);
        bool fl = t->dtype == ST_F32 || t->dtype == ST_F16 || t->dtype == ST_BF16 || t->dtype == ST_F64;
        void *data = malloc((n ? n : 1) * (fl ? sizeof(float) : sizeof(int64_t)));
        if (!data) return nomem();
        if (fl) {
            int rc = st_to_f32(t, data, n);
            if (rc) {
                free(data);
                return rc;
            }
        } else {
            int64_t *o = data;
            const uint8_t *p = t->data;
            for (size_t k = 0; k < n; k++) {
                switch (t->dtype) {
                case ST_I64: memcpy(&o[k], p + 8 * k, 8); break;
                case ST_I32: { int32_t v; memcpy(&v, p + 4 * k, 4); o[k] = v; } break;
                case ST_I16: { int16_t v; memcpy(&v, p + 2 * k, 2); o[k] = v; } break;
                case ST_I8: o[k] = (int8_t)p[k]; break;
                default: o[k] = p[k]; break;   /* U8, BOOL */
                }
            }
        }
        int rc = td_add(d, t->name, fl ? TD_F32 : TD_I64, t->dtype, t->ndim, t->shape, data);
        if (rc) return rc;
    }
    return FERC_OK;
}

int td_read_safetensors(tensor_dict *d, const char *path)
{
    st_file f;
    td_init(d);
    int rc = st_read(&f, path);
    if (rc) return rc;
    rc = td_from_safetensors(d, &f);
    st_close(&f);
    if (rc) {
        td_free(d);
        return ferc_wrap_error(rc, "%s", path);
    }
    return FERC_OK;
}

int td_add_to_writer(const tensor_dict *d, st_writer *w)
{
    for (int i = 0; i < d->count; i++) {
        const td_tensor *t = &d->items[i];
        int rc = t->dtype == TD_F32 ? st_writer_add(w, t->name, ST_F32, t->ndim, t->shape, t->f32)
                                    : st_writer_add(w, t->name, ST_I64, t->ndim, t->shape, t->i64);
        if (rc) return rc;
    }
    return FERC_OK;
}

int td_write_safetensors(const tensor_dict *d, const char *path)
{
    st_writer *w = st_writer_create();
    if (!w) return FERC_ERR_NOMEM;
    int rc = td_add_to_writer(d, w);
    if (!rc) rc = st_writer_save(w, path);
    st_writer_destroy(w);
    return rc;
}

/* ---- loading ----------------------------------------------------------------------------- */

static bool is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

int td_verify_name_hash(const char *path, const uint8_t *buf, size_t size)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    /* torchvision's HASH_REGEX is r"-([a-f0-9]*)\."; requiring 8+ digits before the final
     * extension keeps names such as 'resnet-v2.pth' from being mistaken for hashed ones. */
    const char *dash = strrchr(base, '-'), *dot = strrchr(base, '.');
    if (!dash || !dot || dot < dash) return FERC_OK;
    size_t n = (size_t)(dot - dash - 1);
    if (n < 8 || n > 64) return FERC_OK;
    for (size_t i = 0; i < n; i++)
        if (!is_hex(dash[1 + i])) return FERC_OK;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(buf, size, md, &mdlen, EVP_sha256(), NULL))
        return ferc_set_error(FERC_ERR_BACKEND, "%s: SHA-256 computation failed", path);
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    for (unsigned int i = 0; i < mdlen; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
    if (strncmp(hex, dash + 1, n))
        return ferc_set_error(FERC_ERR_FORMAT,
                              "%s: the file name promises a SHA-256 starting with %.*s but the file's is %s: "
                              "the download is corrupt or the file was replaced (rename it to skip the check)",
                              path, (int)n, dash + 1, hex);
    return FERC_OK;
}

int td_load(tensor_dict *d, const char *path, const td_load_options *opt)
{
    static const td_load_options defaults = {0};
    if (!opt) opt = &defaults;
    td_init(d);
    uint8_t *buf;
    size_t size;
    int rc = file_read_all(path, &buf, &size);
    if (rc) return rc;
    if (!opt->no_hash_check) rc = td_verify_name_hash(path, buf, size);
    if (!rc) {
        if (pth_is_torch(buf, size)) {
            rc = pth_parse(d, buf, size, path, opt->nested_key);
            free(buf);
        } else if (size < 9 || buf[8] != '{') {
            free(buf);
            rc = ferc_set_error(FERC_ERR_FORMAT,
                                "%s is neither a torch .pth (zip or legacy pickle) nor a safetensors file", path);
        } else {
            st_file f;
            rc = st_parse(&f, buf, size, path);   /* takes buf */
            if (!rc) {
                rc = td_from_safetensors(d, &f);
                st_close(&f);
            }
        }
    } else {
        free(buf);
    }
    if (!rc && opt->strip_prefix && opt->strip_prefix[0]) rc = td_strip_prefix(d, opt->strip_prefix);
    else if (!rc && !opt->no_auto_strip) rc = td_strip_auto(d, NULL, 0);
    if (!rc && !opt->no_densenet_fix) rc = td_fix_densenet_keys(d, NULL);
    if (rc) {
        td_free(d);
        if (!strstr(ferc_last_error(), path)) ferc_wrap_error(rc, "%s", path);
    }
    return rc;
}
