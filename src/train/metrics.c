/* metrics: confusion-matrix based classification metrics (see metrics.h for definitions). */
#include "train/metrics.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

int metrics_init(metrics *m, int k)
{
    memset(m, 0, sizeof *m);
    if (k < 1) return ferc_set_error(FERC_ERR_INVALID, "metrics: %d classes", k);
    m->k = k;
    m->confusion = calloc((size_t)k * k, sizeof *m->confusion);
    m->precision = calloc((size_t)k, sizeof(double));
    m->recall = calloc((size_t)k, sizeof(double));
    m->f1 = calloc((size_t)k, sizeof(double));
    m->support = calloc((size_t)k, sizeof(int64_t));
    if (!m->confusion || !m->precision || !m->recall || !m->f1 || !m->support) {
        metrics_free(m);
        return ferc_set_error(FERC_ERR_NOMEM, "metrics: out of memory");
    }
    return FERC_OK;
}

void metrics_free(metrics *m)
{
    free(m->confusion);
    free(m->precision);
    free(m->recall);
    free(m->f1);
    free(m->support);
    memset(m, 0, sizeof *m);
}

void metrics_reset(metrics *m)
{
    int k = m->k;
    memset(m->confusion, 0, (size_t)k * k * sizeof *m->confusion);
    m->n = m->top2_hits = 0;
    m->accuracy = m->balanced_accuracy = m->macro_f1 = m->top2_accuracy = 0;
}

void metrics_add(metrics *m, int label, int pred, bool top2_hit)
{
    if (label < 0 || label >= m->k || pred < 0 || pred >= m->k) return;
    m->confusion[(size_t)label * m->k + pred]++;
    m->n++;
    if (top2_hit) m->top2_hits++;
}

int metrics_argmax(const float *s, int k)
{
    int best = 0;
    for (int j = 1; j < k; j++)
        if (s[j] > s[best]) best = j;
    return best;
}

void metrics_add_scores(metrics *m, const float *scores, const int32_t *labels, int n)
{
    int k = m->k;
    for (int i = 0; i < n; i++) {
        const float *s = scores + (size_t)i * k;
        int pred = metrics_argmax(s, k);
        int second = -1;
        for (int j = 0; j < k; j++)
            if (j != pred && (second < 0 || s[j] > s[second])) second = j;
        bool hit = labels[i] == pred || labels[i] == second;
        metrics_add(m, labels[i], pred, hit);
    }
}

void metrics_finalize(metrics *m)
{
    int k = m->k;
    int64_t trace = 0;
    double sum_recall = 0, sum_f1 = 0;
    int n_recall = 0, n_f1 = 0;
    for (int c = 0; c < k; c++) {
        int64_t tp = m->confusion[(size_t)c * k + c], row = 0, col = 0;
        for (int j = 0; j < k; j++) {
            row += m->confusion[(size_t)c * k + j];
            col += m->confusion[(size_t)j * k + c];
        }
        trace += tp;
        m->support[c] = row;
        m->precision[c] = col ? (double)tp / col : 0.0;
        m->recall[c] = row ? (double)tp / row : 0.0;
        double pr = m->precision[c] + m->recall[c];
        m->f1[c] = pr > 0 ? 2 * m->precision[c] * m->recall[c] / pr : 0.0;
        if (row) sum_recall += m->recall[c], n_recall++;
        if (row || col) sum_f1 += m->f1[c], n_f1++;
    }
    m->accuracy = m->n ? (double)trace / m->n : 0.0;
    m->top2_accuracy = m->n ? (double)m->top2_hits / m->n : 0.0;
    m->balanced_accuracy = n_recall ? sum_recall / n_recall : 0.0;
    m->macro_f1 = n_f1 ? sum_f1 / n_f1 : 0.0;
}

int metrics_to_json(const metrics *m, const char *const *names, char **json)
{
    *json = NULL;
    cJSON *o = cJSON_CreateObject();
    if (!o) return ferc_set_error(FERC_ERR_NOMEM, "metrics: out of memory");
    int k = m->k;
    char buf[32];
    cJSON_AddNumberToObject(o, "n", (double)m->n);
    cJSON_AddNumberToObject(o, "accuracy", m->accuracy);
    cJSON_AddNumberToObject(o, "balanced_accuracy", m->balanced_accuracy);
    cJSON_AddNumberToObject(o, "macro_f1", m->macro_f1);
    cJSON_AddNumberToObject(o, "top2_accuracy", m->top2_accuracy);
    cJSON *cls = cJSON_AddArrayToObject(o, "classes");
    cJSON *pc = cJSON_AddArrayToObject(o, "per_class");
    cJSON *conf = cJSON_AddArrayToObject(o, "confusion");
    for (int c = 0; c < k && cls && pc && conf; c++) {
        const char *name = names ? names[c] : (snprintf(buf, sizeof buf, "%d", c), buf);
        cJSON_AddItemToArray(cls, cJSON_CreateString(name));
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "class", name);
        cJSON_AddNumberToObject(e, "precision", m->precision[c]);
        cJSON_AddNumberToObject(e, "recall", m->recall[c]);
        cJSON_AddNumberToObject(e, "f1", m->f1[c]);
        cJSON_AddNumberToObject(e, "support", (double)m->support[c]);
        cJSON_AddItemToArray(pc, e);
        cJSON *row = cJSON_CreateArray();
        for (int j = 0; j < k; j++)
            cJSON_AddItemToArray(row, cJSON_CreateNumber((double)m->confusion[(size_t)c * k + j]));
        cJSON_AddItemToArray(conf, row);
    }
    *json = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!*json) return ferc_set_error(FERC_ERR_NOMEM, "metrics: out of memory");
    return FERC_OK;
}
