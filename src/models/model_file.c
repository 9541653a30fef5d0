/* ferc's native model file: a safetensors file with every parameter and buffer under its
 * torchvision state_dict name plus ferc's metadata (see models.h for the keys). Loading
 * validates the whole key set and every shape before copying anything, and names each
 * problem, so a wrong file never half-loads. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "models/models.h"

static const float imagenet_mean[3] = {0.485f, 0.456f, 0.406f};
static const float imagenet_std[3] = {0.229f, 0.224f, 0.225f};

void models_meta_init(models_meta *m, const char *arch, int num_classes)
{
    memset(m, 0, sizeof *m);
    snprintf(m->arch, sizeof m->arch, "%s", arch ? arch : "");
    m->num_classes = num_classes;
    m->img_size = 224;
    m->channels = 3;
    memcpy(m->mean, imagenet_mean, sizeof imagenet_mean);
    memcpy(m->std, imagenet_std, sizeof imagenet_std);
}

static void free_names(char **names, int n)
{
    if (!names) return;
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

int models_meta_set_classes(models_meta *m, const char *const *names, int n)
{
    if (n <= 0) return ferc_set_error(FERC_ERR_INVALID, "a model needs at least one class");
    char **copy = calloc((size_t)n, sizeof *copy);
    if (!copy) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        if (!names[i] || !*names[i]) {
            free_names(copy, n);
            return ferc_set_error(FERC_ERR_INVALID, "class %d has an empty name", i);
        }
        if (!(copy[i] = strdup(names[i]))) {
            free_names(copy, n);
            return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
        }
    }
    free_names(m->class_names, m->num_classes);
    m->class_names = copy;
    m->num_classes = n;
    return FERC_OK;
}

void models_meta_free(models_meta *m)
{
    if (!m) return;
    free_names(m->class_names, m->num_classes);
    free(m->training_json);
    m->class_names = NULL;
    m->training_json = NULL;
}

/* ---- saving -------------------------------------------------------------------------------- */

/* Shortest %g form that reads back as the same float: "0.485", not "0.48500001430511475". */
static void format_float(char *buf, size_t size, float v)
{
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, size, "%.*g", prec, (double)v);
        if (strtof(buf, NULL) == v) return;
    }
}

static void format_float_list(char *buf, size_t size, const float *v, int n)
{
    size_t len = 0;
    buf[len++] = '[';
    for (int i = 0; i < n && len + 24 < size; i++) {
        char num[32];
        format_float(num, sizeof num, v[i]);
        len += (size_t)snprintf(buf + len, size - len, "%s%s", i ? ", " : "", num);
    }
    snprintf(buf + len, size - len, "]");
}

static int head_outputs(const nn_graph *g, const char *arch)
{
    char name[64];
    snprintf(name, sizeof name, "%s.weight", models_head_name(arch));
    int i = nn_find_param(g, name);
    return i < 0 ? -1 : (int)g->param_table[i].shape[0];
}

int models_save(const char *path, const nn_graph *g, const models_meta *meta, st_dtype storage)
{
    if (!g || !g->finalized || !meta) return ferc_set_error(FERC_ERR_INVALID, "models_save: no finalized graph or metadata");
    if (!models_arch_known(meta->arch)) return ferc_set_error(FERC_ERR_INVALID, "models_save: unknown architecture '%s'", meta->arch);
    if (storage != ST_F32 && storage != ST_F16 && storage != ST_BF16)
        return ferc_set_error(FERC_ERR_INVALID, "models_save: storage must be F32, F16 or BF16, not %s", st_dtype_name(storage));
    int k = head_outputs(g, meta->arch);
    if (k != meta->num_classes)
        return ferc_set_error(FERC_ERR_INVALID, "models_save: the metadata names %d classes but the %s head has %d outputs",
                              meta->num_classes, meta->arch, k);
    if (meta->channels <= 0 || meta->channels > MODELS_MAX_CHANNELS || meta->img_size <= 0)
        return ferc_set_error(FERC_ERR_INVALID, "models_save: bad channels (%d) or img_size (%d)", meta->channels, meta->img_size);

    st_writer *w = st_writer_create();
    if (!w) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    int rc = FERC_OK;
    for (int i = 0; i < g->nparams && !rc; i++) {
        const nn_param *p = &g->param_table[i];
        if (p->kind == NN_BUFFER_NUM_BATCHES)
            rc = st_writer_add(w, p->name, ST_I64, 0, NULL, &g->batches_tracked[p->offset]);
        else
            rc = st_writer_add_f32_as(w, p->name, storage, p->ndim, p->shape, nn_param_data(g, p));
    }

    cJSON *classes = rc ? NULL : cJSON_CreateArray();
    char *classes_text = NULL;
    if (!rc && !classes) rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    for (int i = 0; i < meta->num_classes && !rc; i++) {
        char num[16];
        snprintf(num, sizeof num, "%d", i);
        if (!cJSON_AddItemToArray(classes, cJSON_CreateString(meta->class_names ? meta->class_names[i] : num)))
            rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    }
    if (!rc && !(classes_text = cJSON_PrintUnformatted(classes))) rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    cJSON_Delete(classes);

    char num[32], mean[256], std[256];
    format_float_list(mean, sizeof mean, meta->mean, meta->channels);
    format_float_list(std, sizeof std, meta->std, meta->channels);
    if (!rc) rc = st_writer_meta(w, "ferc.arch", meta->arch);
    if (!rc) rc = st_writer_meta(w, "ferc.classes", classes_text);
    snprintf(num, sizeof num, "%d", meta->img_size);
    if (!rc) rc = st_writer_meta(w, "ferc.img_size", num);
    snprintf(num, sizeof num, "%d", meta->channels);
    if (!rc) rc = st_writer_meta(w, "ferc.channels", num);
    if (!rc) rc = st_writer_meta(w, "ferc.mean", mean);
    if (!rc) rc = st_writer_meta(w, "ferc.std", std);
    if (!rc) rc = st_writer_meta(w, "ferc.training", meta->training_json ? meta->training_json : "{}");
    if (!rc) rc = st_writer_save(w, path);
    free(classes_text);
    st_writer_destroy(w);
    return rc;
}

/* ---- loading ------------------------------------------------------------------------------- */

static int parse_int(const char *s, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v <= 0 || v > 1000000) return -1;
    *out = (int)v;
    return 0;
}

static int parse_float_list(const char *s, float *out, int n)
{
    cJSON *a = cJSON_Parse(s);
    int rc = 0;
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != n) rc = -1;
    for (int i = 0; i < n && !rc; i++) {
        const cJSON *v = cJSON_GetArrayItem(a, i);
        if (!cJSON_IsNumber(v) || !(fabs(v->valuedouble) <= FLT_MAX)) rc = -1; /* finite as a float */
        else out[i] = (float)v->valuedouble;
    }
    cJSON_Delete(a);
    return rc;
}

static int read_meta(const st_file *f, models_meta *meta, const char *name)
{
    const char *arch = st_meta(f, "ferc.arch");
    if (!arch) return ferc_set_error(FERC_ERR_FORMAT, "%s: not a ferc model file (no ferc.arch in its metadata)", name);
    if (!models_arch_known(arch)) return ferc_set_error(FERC_ERR_FORMAT, "%s: unknown architecture '%s' in ferc.arch", name, arch);
    models_meta_init(meta, arch, 0);
    const char *s;
    if ((s = st_meta(f, "ferc.img_size")) && parse_int(s, &meta->img_size))
        return ferc_set_error(FERC_ERR_FORMAT, "%s: ferc.img_size '%s' is not a positive integer", name, s);
    if ((s = st_meta(f, "ferc.channels")) && (parse_int(s, &meta->channels) || meta->channels > MODELS_MAX_CHANNELS))
        return ferc_set_error(FERC_ERR_FORMAT, "%s: ferc.channels '%s' is not an integer in 1..%d", name, s, MODELS_MAX_CHANNELS);
    if ((s = st_meta(f, "ferc.mean")) && parse_float_list(s, meta->mean, meta->channels))
        return ferc_set_error(FERC_ERR_FORMAT, "%s: ferc.mean '%s' is not a list of %d numbers", name, s, meta->channels);
    if ((s = st_meta(f, "ferc.std")) && parse_float_list(s, meta->std, meta->channels))
        return ferc_set_error(FERC_ERR_FORMAT, "%s: ferc.std '%s' is not a list of %d numbers", name, s, meta->channels);
    for (int i = 0; i < meta->channels; i++)
        if (!(meta->std[i] > 0)) return ferc_set_error(FERC_ERR_FORMAT, "%s: ferc.std has a non-positive entry", name);
    if ((s = st_meta(f, "ferc.training"))) {
        cJSON *t = cJSON_Parse(s);
        bool ok = cJSON_IsObject(t);
        cJSON_Delete(t);
        if (!ok) return ferc_set_error(FERC_ERR_FORMAT, "%s: ferc.training is not a JSON object", name);
        if (!(meta->training_json = strdup(s))) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    }
    if ((s = st_meta(f, "ferc.classes"))) {
        cJSON *a = cJSON_Parse(s);
        int n = cJSON_IsArray(a) ? cJSON_GetArraySize(a) : 0;
        const char **names = n > 0 ? calloc((size_t)n, sizeof *names) : NULL;
        int rc = names ? FERC_OK : FERC_ERR_FORMAT;
        for (int i = 0; i < n && !rc; i++) {
            const cJSON *v = cJSON_GetArrayItem(a, i);
            if (!cJSON_IsString(v) || !*v->valuestring) rc = FERC_ERR_FORMAT;
            else names[i] = v->valuestring;
        }
        if (!rc) rc = models_meta_set_classes(meta, names, n);
        free(names);
        cJSON_Delete(a);
        if (rc) {
            return ferc_set_error(FERC_ERR_FORMAT, "%s: ferc.classes is not a non-empty JSON list of names", name);
        }
    } else {
        /* No names: the head's shape still says how many classes there are. */
        char head[64];
        snprintf(head, sizeof head, "%s.weight", models_head_name(arch));
        const st_tensor *t = st_find(f, head);
        if (!t || t->ndim != 2 || t->shape[0] <= 0 || t->shape[0] > 1000000) {
            return ferc_set_error(FERC_ERR_FORMAT, "%s: no ferc.classes and no usable '%s' tensor", name, head);
        }
        meta->num_classes = (int)t->shape[0];
    }
    return FERC_OK;
}

int models_read_meta(const st_file *f, models_meta *meta, const char *name)
{
    memset(meta, 0, sizeof *meta);
    int rc = read_meta(f, meta, name);
    if (rc) models_meta_free(meta);
    return rc;
}

/* Collects problem names into a bounded, readable list: "a, b, c and 12 more". */
typedef struct name_list { char text[1024]; int count; } name_list;

static void list_add(name_list *l, const char *item)
{
    enum { SHOWN = 8 };
    if (l->count++ >= SHOWN) return;
    size_t len = strlen(l->text);
    if (len) len += (size_t)snprintf(l->text + len, sizeof l->text - len, ", ");
    if (len < sizeof l->text) snprintf(l->text + len, sizeof l->text - len, "%s", item);
}

static void list_finish(name_list *l)
{
    if (l->count > 8) {
        size_t len = strlen(l->text);
        snprintf(l->text + len, sizeof l->text - len, " and %d more", l->count - 8);
    }
}

static void shape_str(char *buf, size_t size, int ndim, const int64_t *shape)
{
    size_t len = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (len < size) snprintf(buf + len, size - len, "]");
}

static bool same_shape(const nn_param *p, const st_tensor *t)
{
    if (p->kind == NN_BUFFER_NUM_BATCHES) /* a torch scalar; tolerate a [1] vector */
        return t->ndim == 0 || (t->ndim == 1 && t->shape[0] == 1);
    if (t->ndim != p->ndim) return false;
    for (int i = 0; i < p->ndim; i++)
        if (t->shape[i] != p->shape[i]) return false;
    return true;
}

static bool is_float_dtype(st_dtype d) { return d == ST_F32 || d == ST_F16 || d == ST_BF16 || d == ST_F64; }

int models_fill(nn_graph *g, const st_file *f, const char *prefix, const char *name)
{
    if (!prefix) prefix = "";
    size_t plen = strlen(prefix);
    name_list missing = {{0}, 0}, unexpected = {{0}, 0}, mismatch = {{0}, 0};
    const st_tensor **found = calloc((size_t)g->nparams + 1, sizeof *found);
    if (!found) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    char key[NN_NAME_MAX + 128];
    for (int i = 0; i < g->nparams; i++) {
        const nn_param *p = &g->param_table[i];
        snprintf(key, sizeof key, "%s%s", prefix, p->name);
        const st_tensor *t = st_find(f, key);
        if (!t) {
            list_add(&missing, p->name);
            continue;
        }
        bool dtype_ok = p->kind == NN_BUFFER_NUM_BATCHES ? t->dtype != ST_BOOL : is_float_dtype(t->dtype);
        if (!same_shape(p, t) || !dtype_ok) {
            char want[96], got[96];
            shape_str(want, sizeof want, p->ndim, p->shape);
            shape_str(got, sizeof got, t->ndim, t->shape);
            if (!dtype_ok) snprintf(got + strlen(got), sizeof got - strlen(got), " %s", st_dtype_name(t->dtype));
            char item[NN_NAME_MAX + 200];
            snprintf(item, sizeof item, "%s (file %s, model %s)", p->name, got, want);
            list_add(&mismatch, item);
            continue;
        }
        found[i] = t;
    }
    for (int i = 0; i < f->count; i++) {
        const char *tn = f->tensors[i].name;
        if (strncmp(tn, prefix, plen) || nn_find_param(g, tn + plen) < 0) list_add(&unexpected, tn);
    }
    if (missing.count || unexpected.count || mismatch.count) {
        list_finish(&missing);
        list_finish(&unexpected);
        list_finish(&mismatch);
        char msg[3600];
        size_t len = 0;
        if (missing.count)
            len += (size_t)snprintf(msg + len, sizeof msg - len, "; %d missing key%s: %s", missing.count,
                                    missing.count > 1 ? "s" : "", missing.text);
        if (unexpected.count && len < sizeof msg)
            len += (size_t)snprintf(msg + len, sizeof msg - len, "; %d unexpected key%s: %s", unexpected.count,
                                    unexpected.count > 1 ? "s" : "", unexpected.text);
        if (mismatch.count && len < sizeof msg)
            snprintf(msg + len, sizeof msg - len, "; %d shape mismatch%s: %s", mismatch.count,
                     mismatch.count > 1 ? "es" : "", mismatch.text);
        free(found);
        return ferc_set_error(FERC_ERR_FORMAT, "%s does not fit the model%s", name, msg);
    }
    int rc = FERC_OK;
    for (int i = 0; i < g->nparams && !rc; i++) {
        const nn_param *p = &g->param_table[i];
        const st_tensor *t = found[i];
        if (p->kind != NN_BUFFER_NUM_BATCHES) {
            rc = st_to_f32(t, nn_param_data(g, p), p->count);
        } else if (t->dtype == ST_I64) {
            int64_t v;
            memcpy(&v, t->data, sizeof v);   /* little-endian file on a little-endian host */
            g->batches_tracked[p->offset] = v;
        } else {
            float v;
            rc = st_to_f32(t, &v, 1);
            g->batches_tracked[p->offset] = (int64_t)v;
        }
    }
    free(found);
    if (rc) return ferc_wrap_error(rc, "%s", name);
    return FERC_OK;
}

int models_load(const char *path, nn_graph **g, models_meta *meta)
{
    *g = NULL;
    memset(meta, 0, sizeof *meta);
    st_file f;
    int rc = st_read(&f, path);
    if (rc) return rc;
    rc = models_read_meta(&f, meta, path);
    if (!rc) {
        rc = models_create(g, meta->arch, meta->num_classes);
        if (!rc) rc = models_fill(*g, &f, NULL, path);
        if (rc) {
            nn_graph_destroy(*g);
            *g = NULL;
            models_meta_free(meta);
        }
    }
    st_close(&f);
    return rc;
}
