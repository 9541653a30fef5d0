/* face/blazeface: BlazeFace full-range in ferc's engine, anchors, decoding, weighted NMS
 * (see blazeface.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "core/core.h"
#include "face/blazeface.h"
#include "io/safetensors.h"
#include "models/models.h"
#include "nn/nn.h"

#ifndef FERC_DATA_DIR
#define FERC_DATA_DIR "/usr/local/share/ferc"
#endif
#define BLAZEFACE_FILE "detectors/blazeface-back.safetensors"
#define MAX_BLOCKS 64

struct blazeface {
    nn_graph *g;
    nn_exec *ex;
    int out_cls16, out_reg16, out_cls8, out_reg8; /* node ids of the four heads */
    float anchors[BLAZEFACE_ANCHORS * 2];
    float *x, *c16, *r16, *c8, *r8, *logits, *regs;
};

void blazeface_params_default(blazeface_params *p)
{
    p->min_score = 0.55f; /* MediaPipe's 0.5 lets two dog faces of dogs.jpg through (0.51, 0.54) */
    p->iou_threshold = 0.3f;
    p->max_faces = 100;
}

const char *blazeface_default_path(void)
{
    static _Thread_local char buf[4096];
    snprintf(buf, sizeof buf, "%s/models/%s", FERC_SOURCE_DIR, BLAZEFACE_FILE);
    if (access(buf, R_OK) == 0) return buf;
    snprintf(buf, sizeof buf, "%s/models/%s", FERC_DATA_DIR, BLAZEFACE_FILE);
    if (access(buf, R_OK) == 0) return buf;
    return NULL;
}

void blazeface_anchors(float *xy)
{
    static const int strides[2] = {16, 32}, per_cell[2] = {2, 6};
    int k = 0;
    for (int l = 0; l < 2; l++) {
        const int s = strides[l], grid = (BLAZEFACE_SIZE + s - 1) / s;
        for (int y = 0; y < grid; y++)
            for (int x = 0; x < grid; x++)
                for (int a = 0; a < per_cell[l]; a++) {
                    xy[2 * k] = (float)s * ((float)x + 0.5f);
                    xy[2 * k + 1] = (float)s * ((float)y + 0.5f);
                    k++;
                }
    }
}

/* The graph of the blocks the file's metadata lists; returns the last node or a status. */
static int build(nn_graph *g, const int (*blocks)[3], int nblocks, blazeface *b)
{
    int x = nn_input(g, 3);
    x = nn_relu(g, nn_conv2d_grouped(g, "stem", x, 24, 5, 2, NN_PAD_SAME, 1, true));
    char name[64];
    for (int i = 0; i < nblocks; i++) {
        const int cin = blocks[i][0], cout = blocks[i][1], s = blocks[i][2];
        snprintf(name, sizeof name, "blocks.%d.dw", i);
        int y = nn_conv2d_grouped(g, name, x, cin, 3, s, NN_PAD_SAME, cin, false);
        snprintf(name, sizeof name, "blocks.%d.pw", i);
        y = nn_conv2d(g, name, y, cout, 1, 1, 0, true);
        int sc = x;
        if (s == 2) sc = nn_maxpool2d(g, sc, 2, 2, 0);
        if (cout > cin) sc = nn_channel_pad(g, sc, cout - cin);
        x = nn_relu(g, nn_add(g, y, sc));
    }
    const int c = blocks[nblocks - 1][1];
    b->out_cls16 = nn_conv2d(g, "head16.cls", x, 2, 1, 1, 0, true);
    b->out_reg16 = nn_conv2d(g, "head16.reg", x, 2 * BLAZEFACE_REGS, 1, 1, 0, true);
    int d = nn_conv2d_grouped(g, "down.dw", x, c, 3, 2, NN_PAD_SAME, c, false);
    d = nn_relu(g, nn_conv2d(g, "down.pw", d, c, 1, 1, 0, true));
    b->out_cls8 = nn_conv2d(g, "head8.cls", d, 6, 1, 1, 0, true);
    b->out_reg8 = nn_conv2d(g, "head8.reg", d, 6 * BLAZEFACE_REGS, 1, 1, 0, true);
    /* the four heads are read after the pass */
    nn_keep_output(g, b->out_cls16);
    nn_keep_output(g, b->out_reg16);
    nn_keep_output(g, b->out_cls8);
    nn_keep_output(g, b->out_reg8);
    return nn_graph_finalize(g);
}

static int parse_blocks(const char *json, int (*blocks)[3], int *n, const char *path)
{
    cJSON *j = json ? cJSON_Parse(json) : NULL;
    int rc = FERC_OK;
    *n = 0;
    if (!cJSON_IsArray(j) || cJSON_GetArraySize(j) < 1 || cJSON_GetArraySize(j) > MAX_BLOCKS) {
        rc = ferc_set_error(FERC_ERR_FORMAT, "%s: no valid ferc.blocks metadata (not a converted BlazeFace file?)", path);
    } else {
        for (cJSON *e = j->child; e && !rc; e = e->next) {
            int v[3];
            for (int k = 0; k < 3; k++) {
                cJSON *it = cJSON_GetArrayItem(e, k);
                v[k] = cJSON_IsNumber(it) ? it->valueint : -1;
            }
            if (cJSON_GetArraySize(e) != 3 || v[0] < 1 || v[0] > 4096 || v[1] < v[0] || v[1] > 4096 || (v[2] != 1 && v[2] != 2))
                rc = ferc_set_error(FERC_ERR_FORMAT, "%s: block %d of ferc.blocks is not [cin, cout, stride 1|2]", path, *n);
            else memcpy(blocks[(*n)++], v, sizeof v);
        }
    }
    /* the heads expect the 16x16 map: four stride-2 steps in all (stem + 3 blocks) */
    int s2 = 0;
    for (int i = 0; !rc && i < *n; i++) s2 += blocks[i][2] == 2;
    if (!rc && s2 != 3) rc = ferc_set_error(FERC_ERR_FORMAT, "%s: %d strided blocks, BlazeFace full-range has 3", path, s2);
    cJSON_Delete(j);
    return rc;
}

static void free_buffers(blazeface *b)
{
    free(b->x), free(b->c16), free(b->r16), free(b->c8), free(b->r8), free(b->logits), free(b->regs);
}

void blazeface_destroy(blazeface *b)
{
    if (!b) return;
    nn_exec_destroy(b->ex);
    nn_graph_destroy(b->g);
    free_buffers(b);
    free(b);
}

int blazeface_load(blazeface **out, const char *path)
{
    *out = NULL;
    if (!path && !(path = blazeface_default_path()))
        return ferc_set_error(FERC_ERR_NOT_FOUND, "the BlazeFace detector file (models/%s) was not found", BLAZEFACE_FILE);
    st_file f;
    int rc = st_read(&f, path);
    if (rc) return rc;
    blazeface *b = calloc(1, sizeof *b);
    int blocks[MAX_BLOCKS][3], nb = 0;
    if (!b) rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    const char *kind = st_meta(&f, "ferc.detector");
    if (!rc && (!kind || strcmp(kind, "blazeface-back")))
        rc = ferc_set_error(FERC_ERR_FORMAT, "%s: not a BlazeFace full-range detector file (ferc.detector is %s)", path,
                            kind ? kind : "missing");
    if (!rc) rc = parse_blocks(st_meta(&f, "ferc.blocks"), blocks, &nb, path);
    if (!rc && !(b->g = nn_graph_create())) rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    if (!rc) rc = build(b->g, (const int(*)[3])blocks, nb, b);
    if (!rc) rc = models_fill(b->g, &f, NULL, path);
    st_close(&f);
    if (!rc) rc = nn_exec_create(&b->ex, b->g, NULL, 1, 3, BLAZEFACE_SIZE, BLAZEFACE_SIZE, 0);
    if (!rc) {
        const nn_node *n16 = &b->g->nodes[b->out_cls16], *n8 = &b->g->nodes[b->out_cls8];
        if (n16->h * n16->w * 2 + n8->h * n8->w * 6 != BLAZEFACE_ANCHORS)
            rc = ferc_set_error(FERC_ERR_FORMAT, "%s: heads of %dx%d and %dx%d, expected 16x16 and 8x8", path, n16->h,
                                n16->w, n8->h, n8->w);
    }
    if (!rc) {
        b->x = malloc((size_t)3 * BLAZEFACE_SIZE * BLAZEFACE_SIZE * sizeof(float));
        b->c16 = malloc(512 * sizeof(float));
        b->r16 = malloc(512 * BLAZEFACE_REGS * sizeof(float));
        b->c8 = malloc(384 * sizeof(float));
        b->r8 = malloc(384 * BLAZEFACE_REGS * sizeof(float));
        b->logits = malloc(BLAZEFACE_ANCHORS * sizeof(float));
        b->regs = malloc(BLAZEFACE_ANCHORS * BLAZEFACE_REGS * sizeof(float));
        if (!b->x || !b->c16 || !b->r16 || !b->c8 || !b->r8 || !b->logits || !b->regs)
            rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    }
    if (rc) {
        blazeface_destroy(b);
        return rc;
    }
    blazeface_anchors(b->anchors);
    *out = b;
    return FERC_OK;
}

/* (A*R, H, W) NCHW head outputs -> rows of the anchors (y, x, a), R values each. */
static void gather(const float *src, int h, int w, int per_cell, int r, float *dst)
{
    const size_t hw = (size_t)h * w;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int a = 0; a < per_cell; a++) {
                float *row = dst + (((size_t)y * w + x) * per_cell + a) * r;
                for (int k = 0; k < r; k++) row[k] = src[(size_t)(a * r + k) * hw + (size_t)y * w + x];
            }
}

int blazeface_run(blazeface *b, const float *x, float *logits, float *regs)
{
    int rc = nn_exec_forward(b->ex, x, false, NULL);
    if (!rc) rc = nn_exec_node_output(b->ex, b->out_cls16, b->c16, 512);
    if (!rc) rc = nn_exec_node_output(b->ex, b->out_reg16, b->r16, 512 * BLAZEFACE_REGS);
    if (!rc) rc = nn_exec_node_output(b->ex, b->out_cls8, b->c8, 384);
    if (!rc) rc = nn_exec_node_output(b->ex, b->out_reg8, b->r8, 384 * BLAZEFACE_REGS);
    if (rc) return rc;
    gather(b->c16, 16, 16, 2, 1, logits);
    gather(b->c8, 8, 8, 6, 1, logits + 512);
    gather(b->r16, 16, 16, 2, BLAZEFACE_REGS, regs);
    gather(b->r8, 8, 8, 6, BLAZEFACE_REGS, regs + (size_t)512 * BLAZEFACE_REGS);
    return FERC_OK;
}

int blazeface_preprocess(const image *img, float *x, float *scale, float *off_x, float *off_y)
{
    if (!img || !img->data || img->width <= 0 || img->height <= 0)
        return ferc_set_error(FERC_ERR_INVALID, "blazeface: empty image");
    const int S = BLAZEFACE_SIZE, big = img->width > img->height ? img->width : img->height;
    const double sc = (double)S / big;
    int w = (int)lround(img->width * sc), h = (int)lround(img->height * sc);
    if (w < 1) w = 1;
    if (h < 1) h = 1;
    image rs = {0}, rgb = {0};
    const image *src = img;
    int rc = FERC_OK;
    if (img->channels != 3) {
        if ((rc = image_to_rgb(&rgb, img))) return rc;
        src = &rgb;
    }
    rc = image_resize(&rs, src, w, h);
    image_free(&rgb);
    if (rc) return rc;
    const int ox = (S - w) / 2, oy = (S - h) / 2;
    const size_t plane = (size_t)S * S;
    for (size_t i = 0; i < 3 * plane; i++) x[i] = -1.0f; /* black border */
    for (int y = 0; y < h; y++) {
        const uint8_t *row = rs.data + (size_t)y * rs.stride;
        for (int xx = 0; xx < w; xx++)
            for (int c = 0; c < 3; c++)
                x[c * plane + (size_t)(y + oy) * S + (size_t)(xx + ox)] = (float)row[3 * xx + c] / 127.5f - 1.0f;
    }
    image_free(&rs);
    *scale = (float)((double)w / img->width);
    *off_x = (float)ox;
    *off_y = (float)oy;
    return FERC_OK;
}

static float iou(const blazeface_det *a, const blazeface_det *b)
{
    float ix = fminf(a->x1, b->x1) - fmaxf(a->x0, b->x0), iy = fminf(a->y1, b->y1) - fmaxf(a->y0, b->y0);
    if (ix <= 0 || iy <= 0) return 0;
    float inter = ix * iy;
    float u = (a->x1 - a->x0) * (a->y1 - a->y0) + (b->x1 - b->x0) * (b->y1 - b->y0) - inter;
    return u > 0 ? inter / u : 0;
}

static int by_score_desc(const void *pa, const void *pb)
{
    const blazeface_det *a = pa, *b = pb;
    return (a->score < b->score) - (a->score > b->score);
}

int blazeface_decode(const float *logits, const float *regs, const float *anchors, int n, const blazeface_params *p,
                     blazeface_det **dets, int *count)
{
    *dets = NULL;
    *count = 0;
    blazeface_det *cand = malloc((size_t)(n > 0 ? n : 1) * sizeof *cand);
    if (!cand) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    int m = 0;
    for (int i = 0; i < n; i++) {
        float l = logits[i];
        l = l < -100 ? -100 : l > 100 ? 100 : l;
        const float s = 1.0f / (1.0f + expf(-l));
        if (!(s >= p->min_score)) continue;
        const float *r = regs + (size_t)i * BLAZEFACE_REGS, ax = anchors[2 * i], ay = anchors[2 * i + 1];
        blazeface_det *d = &cand[m++];
        const float cx = ax + r[0], cy = ay + r[1], hw = 0.5f * r[2], hh = 0.5f * r[3];
        *d = (blazeface_det){.x0 = cx - hw, .y0 = cy - hh, .x1 = cx + hw, .y1 = cy + hh, .score = s};
        for (int k = 0; k < BLAZEFACE_KEYPOINTS; k++) {
            d->kp[k][0] = ax + r[4 + 2 * k];
            d->kp[k][1] = ay + r[5 + 2 * k];
        }
    }
    qsort(cand, (size_t)m, sizeof *cand, by_score_desc); /* ties: any order, merged alike */
    blazeface_det *out = malloc((size_t)(m > 0 ? m : 1) * sizeof *out);
    char *taken = calloc((size_t)(m > 0 ? m : 1), 1);
    if (!out || !taken) {
        free(cand), free(out), free(taken);
        return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    }
    int k = 0;
    for (int i = 0; i < m && k < p->max_faces; i++) {
        if (taken[i]) continue;
        /* weighted: the score-weighted mean of everything this one suppresses (itself included) */
        double wsum = 0, acc[4 + 2 * BLAZEFACE_KEYPOINTS] = {0};
        for (int j = i; j < m; j++) {
            if (taken[j] || (j != i && !(iou(&cand[i], &cand[j]) > p->iou_threshold))) continue;
            taken[j] = 1;
            const blazeface_det *d = &cand[j];
            const double w = d->score;
            acc[0] += w * d->x0, acc[1] += w * d->y0, acc[2] += w * d->x1, acc[3] += w * d->y1;
            for (int q = 0; q < BLAZEFACE_KEYPOINTS; q++) acc[4 + 2 * q] += w * d->kp[q][0], acc[5 + 2 * q] += w * d->kp[q][1];
            wsum += w;
        }
        blazeface_det *o = &out[k++];
        o->score = cand[i].score;
        o->x0 = (float)(acc[0] / wsum), o->y0 = (float)(acc[1] / wsum);
        o->x1 = (float)(acc[2] / wsum), o->y1 = (float)(acc[3] / wsum);
        for (int q = 0; q < BLAZEFACE_KEYPOINTS; q++)
            o->kp[q][0] = (float)(acc[4 + 2 * q] / wsum), o->kp[q][1] = (float)(acc[5 + 2 * q] / wsum);
    }
    free(cand);
    free(taken);
    if (!k) {
        free(out);
        return FERC_OK;
    }
    *dets = out;
    *count = k;
    return FERC_OK;
}

int blazeface_detect(blazeface *b, const image *img, const blazeface_params *p, blazeface_det **dets, int *count)
{
    *dets = NULL;
    *count = 0;
    blazeface_params def;
    if (!p) blazeface_params_default(&def), p = &def;
    float sc, ox, oy;
    int rc = blazeface_preprocess(img, b->x, &sc, &ox, &oy);
    if (!rc) rc = blazeface_run(b, b->x, b->logits, b->regs);
    if (!rc) rc = blazeface_decode(b->logits, b->regs, b->anchors, BLAZEFACE_ANCHORS, p, dets, count);
    if (rc) return rc;
    for (int i = 0; i < *count; i++) {
        blazeface_det *d = &(*dets)[i];
        d->x0 = (d->x0 - ox) / sc, d->x1 = (d->x1 - ox) / sc;
        d->y0 = (d->y0 - oy) / sc, d->y1 = (d->y1 - oy) / sc;
        for (int q = 0; q < BLAZEFACE_KEYPOINTS; q++) d->kp[q][0] = (d->kp[q][0] - ox) / sc, d->kp[q][1] = (d->kp[q][1] - oy) / sc;
    }
    return FERC_OK;
}
