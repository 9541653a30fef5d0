/* importer: foreign weights -> a models_* graph + metadata (contract in importer.h). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "models/importer.h"

static bool skipped(const nn_graph *g, const nn_param *p, const char *skip)
{
    return skip && !strcmp(g->nodes[p->node].name, skip);
}

int importer_fill(nn_graph *g, const tensor_dict *d, const char *skip, int *batches_defaulted,
                  const char *name)
{
    if (batches_defaulted) *batches_defaulted = 0;
    if (!g || !g->finalized || !d) return ferc_set_error(FERC_ERR_INVALID, "importer_fill: no finalized graph or tensors");
    if (!name) name = "weights";
    /* torch's BatchNorm loader: a file with no counter at all gets 0 for each. */
    bool any_counter = false;
    for (int i = 0; i < d->count && !any_counter; i++) {
        const char *dot = strrchr(d->items[i].name, '.');
        any_counter = dot && !strcmp(dot + 1, "num_batches_tracked");
    }
    td_spec *spec = calloc((size_t)g->nparams + 1, sizeof *spec);
    if (!spec) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    int n = 0, defaulted = 0;
    for (int i = 0; i < g->nparams; i++) {
        const nn_param *p = &g->param_table[i];
        if (skipped(g, p, skip)) continue;
        if (p->kind == NN_BUFFER_NUM_BATCHES && !any_counter) {
            defaulted++;
            continue;
        }
        spec[n].name = p->name;
        spec[n].ndim = p->ndim;
        for (int k = 0; k < p->ndim; k++) spec[n].shape[k] = p->shape[k];
        n++;
    }
    int rc = td_check(d, spec, n);
    free(spec);
    if (rc) return ferc_wrap_error(rc, "%s", name);
    /* Types are checked for every tensor before anything is copied. */
    for (int i = 0; i < g->nparams; i++) {
        const nn_param *p = &g->param_table[i];
        if (skipped(g, p, skip)) continue;
        const td_tensor *t = td_find(d, p->name);
        if (t && p->kind != NN_BUFFER_NUM_BATCHES && t->dtype != TD_F32)
            return ferc_set_error(FERC_ERR_FORMAT, "%s: '%s' holds integers (%s), the model needs floats", name, p->name,
                                  st_dtype_name(t->source));
    }
    for (int i = 0; i < g->nparams; i++) {
        const nn_param *p = &g->param_table[i];
        if (skipped(g, p, skip)) continue;
        const td_tensor *t = td_find(d, p->name);
        if (p->kind == NN_BUFFER_NUM_BATCHES)
            g->batches_tracked[p->offset] = !t ? 0 : t->dtype == TD_I64 ? t->i64[0] : (int64_t)t->f32[0];
        else
            memcpy(nn_param_data(g, p), t->f32, p->count * sizeof(float));
    }
    if (batches_defaulted) *batches_defaulted = defaulted;
    return FERC_OK;
}

/* ferc.training of an imported model: where its weights came from. */
static char *provenance_json(const char *path, const importer_options *o, const importer_report *rep)
{
    cJSON *j = cJSON_CreateObject();
    const char *base = strrchr(path, '/');
    cJSON_AddStringToObject(j, "imported_from", base ? base + 1 : path);
    cJSON_AddStringToObject(j, "head", rep->head_replaced ? "new" : "kept");
    if (rep->head_replaced) cJSON_AddNumberToObject(j, "head_seed", (double)o->seed);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

static int import_into(const char *path, const importer_options *o, tensor_dict *d, nn_graph **g,
                       models_meta *meta, importer_report *rep)
{
    const char *head = models_head_name(o->arch);
    char wname[64], bname[64];
    snprintf(wname, sizeof wname, "%s.weight", head);
    snprintf(bname, sizeof bname, "%s.bias", head);
    const td_tensor *hw = td_find(d, wname);
    rep->file_head_outputs = hw && hw->ndim == 2 ? (int)hw->shape[0] : 0;

    int classes = o->num_classes;
    if (o->keep_head) {
        if (!hw || hw->ndim != 2)
            return ferc_set_error(FERC_ERR_FORMAT, "%s has no usable '%s' to keep; give class names for a new head instead",
                                  path, wname);
        if (classes && classes != rep->file_head_outputs)
            return ferc_set_error(FERC_ERR_INVALID, "%d class names given but the head in %s has %d outputs", classes,
                                  path, rep->file_head_outputs);
        classes = rep->file_head_outputs;
    } else {
        if (classes <= 0 || !o->class_names)
            return ferc_set_error(FERC_ERR_INVALID, "a new head needs class names (or keep the file's head)");
        if (td_find(d, wname)) td_remove(d, wname);
        if (td_find(d, bname)) td_remove(d, bname);
        rep->head_replaced = true;
    }
    int rc = models_create(g, o->arch, classes);
    if (!rc) rc = importer_fill(*g, d, rep->head_replaced ? head : NULL, &rep->batches_defaulted, path);
    if (!rc && rep->head_replaced) rc = models_reinit_head(*g, o->arch, o->seed);
    if (rc) return rc;
    rep->tensors = d->count;

    models_meta_init(meta, o->arch, classes);
    if (o->img_size) meta->img_size = o->img_size;
    if (o->class_names && (rc = models_meta_set_classes(meta, o->class_names, classes))) return rc;
    if (!(meta->training_json = provenance_json(path, o, rep))) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    /* A size the network cannot take is better refused now than at the first prediction. */
    if ((rc = nn_graph_infer_shapes(*g, 1, meta->channels, meta->img_size, meta->img_size)))
        return ferc_wrap_error(rc, "input size %d", meta->img_size);
    return FERC_OK;
}

int importer_import(const char *path, const importer_options *o, nn_graph **g, models_meta *meta,
                    importer_report *rep)
{
    importer_report local;
    if (!rep) rep = &local;
    memset(rep, 0, sizeof *rep);
    *g = NULL;
    memset(meta, 0, sizeof *meta);
    if (!o || !o->arch) return ferc_set_error(FERC_ERR_INVALID, "importer: no architecture given");
    models_family fam;
    int rc = models_arch_family(o->arch, &fam);
    if (rc) return rc;
    if (o->img_size < 0) return ferc_set_error(FERC_ERR_INVALID, "importer: bad input size %d", o->img_size);

    td_load_options lo = {.strip_prefix = o->strip_prefix, .nested_key = o->nested_key, .no_hash_check = o->no_hash_check};
    tensor_dict d;
    if ((rc = td_load(&d, path, &lo))) return rc;
    rc = import_into(path, o, &d, g, meta, rep);
    td_free(&d);
    if (rc) {
        nn_graph_destroy(*g);
        *g = NULL;
        models_meta_free(meta);
    }
    return rc;
}
