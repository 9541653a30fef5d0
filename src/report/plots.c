/* report plots: cairo drawings rendered to memory and written with file_write_atomic, so an
 * interrupted run never leaves a half-written picture. */
#include "report/plots.h"

#include <cairo.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

typedef struct membuf { unsigned char *data; size_t size, cap; } membuf;

static cairo_status_t mem_write(void *closure, const unsigned char *data, unsigned int length)
{
    membuf *b = closure;
    if (b->size + length > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 65536;
        while (cap < b->size + length) cap *= 2;
        unsigned char *p = realloc(b->data, cap);
        if (!p) return CAIRO_STATUS_NO_MEMORY;
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->size, data, length);
    b->size += length;
    return CAIRO_STATUS_SUCCESS;
}

static int save_surface(cairo_surface_t *s, const char *path)
{
    membuf b = {0};
    cairo_surface_flush(s);
    if (cairo_surface_write_to_png_stream(s, mem_write, &b) != CAIRO_STATUS_SUCCESS) {
        free(b.data);
        return ferc_set_error(FERC_ERR_IO, "%s: cairo could not encode the PNG", path);
    }
    int rc = file_write_atomic(path, b.data, b.size);
    free(b.data);
    return rc;
}

typedef struct panel { double x, y, w, h; } panel;

static void draw_text(cairo_t *cr, double x, double y, const char *s, double size)
{
    cairo_set_font_size(cr, size);
    cairo_move_to(cr, x, y);
    cairo_show_text(cr, s);
}

static const double series_col[8][3] = {{0.12, 0.47, 0.71}, {1.0, 0.5, 0.05}, {0.17, 0.63, 0.17}, {0.84, 0.15, 0.16},
                                        {0.58, 0.40, 0.74}, {0.55, 0.34, 0.29}, {0.89, 0.47, 0.76}, {0.5, 0.5, 0.5}};

static cairo_surface_t *new_canvas(int W, int H, cairo_t **cr)
{
    cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, W, H);
    *cr = cairo_create(s);
    cairo_set_source_rgb(*cr, 1, 1, 1);
    cairo_paint(*cr);
    cairo_select_font_face(*cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    return s;
}

static int finish_canvas(cairo_surface_t *s, cairo_t *cr, const char *path, const char *what)
{
    int rc = cairo_status(cr) ? ferc_set_error(FERC_ERR_IO, "%s: cairo failed", what) : FERC_OK;
    cairo_destroy(cr);
    if (!rc) rc = save_surface(s, path);
    cairo_surface_destroy(s);
    return rc;
}

/* The panel's light background and dark border. */
static void panel_frame(cairo_t *cr, panel p)
{
    cairo_set_source_rgb(cr, 0.97, 0.97, 0.97);
    cairo_rectangle(cr, p.x, p.y, p.w, p.h);
    cairo_fill(cr);
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    cairo_set_line_width(cr, 1);
    cairo_rectangle(cr, p.x, p.y, p.w, p.h);
    cairo_stroke(cr);
}

/* nt + 1 evenly spaced tick labels on both axes of [x0, x1] x [y0, y1], and the x label. */
static void panel_ticks(cairo_t *cr, panel p, double x0, double x1, double y0, double y1, int nt, const char *xlabel)
{
    char buf[64];
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    for (int t = 0; t <= nt; t++) {
        double f = (double)t / nt;
        snprintf(buf, sizeof buf, "%.3g", y0 + f * (y1 - y0));
        draw_text(cr, p.x - 48, p.y + p.h - f * p.h + 4, buf, 10);
        snprintf(buf, sizeof buf, "%.3g", x0 + f * (x1 - x0));
        draw_text(cr, p.x + f * p.w - 8, p.y + p.h + 16, buf, 10);
    }
    draw_text(cr, p.x + p.w / 2 - 40, p.y + p.h + 34, xlabel, 11);
}

/* A line through the finite points (px[i], py[i]), broken at the others, in the current colour. */
static void polyline(cairo_t *cr, const double *px, const double *py, int n)
{
    bool pen = false;
    for (int i = 0; i < n; i++) {
        if (!isfinite(px[i]) || !isfinite(py[i])) { pen = false; continue; }
        if (pen) cairo_line_to(cr, px[i], py[i]);
        else cairo_move_to(cr, px[i], py[i]);
        pen = true;
    }
    cairo_stroke(cr);
}

/* Legend entry `row` right of the panel: a stroke in the current colour and dash, then the name. */
static void legend_entry(cairo_t *cr, panel p, int row, const char *name)
{
    cairo_move_to(cr, p.x + p.w + 14, p.y + 14 + 18 * row);
    cairo_line_to(cr, p.x + p.w + 40, p.y + 14 + 18 * row);
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0);
    cairo_set_source_rgb(cr, 0, 0, 0);
    draw_text(cr, p.x + p.w + 46, p.y + 18 + 18 * row, name, 11);
}

/* One panel: up to two series (solid blue train, orange val) over epochs 1..n. */
static void draw_panel(cairo_t *cr, panel p, const char *title, const trainer_epoch *e, int n, int which)
{
    double vals[2][4096];
    int ns = which == 2 ? 1 : 2;
    n = n > 4096 ? 4096 : n;
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < n; i++) {
        vals[0][i] = which == 0 ? e[i].train_loss : which == 1 ? e[i].train_acc : e[i].lr;
        vals[1][i] = which == 0 ? e[i].val_loss : which == 1 ? e[i].val_acc : 0;
        for (int s = 0; s < ns; s++)
            if (isfinite(vals[s][i])) lo = fmin(lo, vals[s][i]), hi = fmax(hi, vals[s][i]);
    }
    if (!isfinite(lo)) lo = 0, hi = 1;
    if (which == 1) lo = fmin(lo, 0), hi = fmax(hi, 1) > 1 ? hi : 1;
    if (hi - lo < 1e-12) hi = lo + (lo == 0 ? 1 : fabs(lo) * 0.1);
    panel_frame(cr, p);
    char buf[64];
    draw_text(cr, p.x, p.y - 6, title, 13);
    snprintf(buf, sizeof buf, "%.3g", hi);
    draw_text(cr, p.x - 55, p.y + 10, buf, 10);
    snprintf(buf, sizeof buf, "%.3g", lo);
    draw_text(cr, p.x - 55, p.y + p.h, buf, 10);
    snprintf(buf, sizeof buf, "epoch 1..%d", n);
    draw_text(cr, p.x + p.w / 2 - 30, p.y + p.h + 14, buf, 10);
#define PX(i) (p.x + (n > 1 ? (double)(i) / (n - 1) : 0.5) * p.w)
#define PY(v) (p.y + p.h - ((v) - lo) / (hi - lo) * p.h)
    for (int i = 1; i < n; i++)
        if (e[i].phase != e[i - 1].phase) {
            double dash = 4;
            cairo_set_dash(cr, &dash, 1, 0);
            cairo_set_source_rgb(cr, 0.5, 0.5, 0.5);
            double x = (PX(i - 1) + PX(i)) / 2;
            cairo_move_to(cr, x, p.y);
            cairo_line_to(cr, x, p.y + p.h);
            cairo_stroke(cr);
            cairo_set_dash(cr, NULL, 0, 0);
        }
    double px[4096], py[4096];
    for (int s = 0; s < ns; s++) {
        cairo_set_source_rgb(cr, series_col[s][0], series_col[s][1], series_col[s][2]);
        cairo_set_line_width(cr, 2);
        for (int i = 0; i < n; i++) px[i] = PX(i), py[i] = PY(vals[s][i]);
        polyline(cr, px, py, n);
        for (int i = 0; i < n; i++)
            if (isfinite(vals[s][i])) {
                cairo_arc(cr, px[i], py[i], 2.5, 0, 2 * M_PI);
                cairo_fill(cr);
            }
        draw_text(cr, p.x + p.w - 80, p.y + 16 + 14 * s, which == 2 ? "lr" : s ? "val" : "train", 11);
    }
#undef PX
#undef PY
}

int report_curves_png(const char *path, const trainer_epoch *epochs, int n)
{
    if (n < 1) return ferc_set_error(FERC_ERR_INVALID, "curves: no epochs");
    cairo_t *cr;
    cairo_surface_t *s = new_canvas(1200, 420, &cr);
    const char *titles[3] = {"loss", "accuracy", "learning rate (last step of epoch)"};
    for (int i = 0; i < 3; i++) {
        panel p = {70 + i * 400.0, 40, 310, 330};
        draw_panel(cr, p, titles[i], epochs, n, i);
    }
    return finish_canvas(s, cr, path, "curves");
}

int report_confusion_png(const char *path, const int64_t *conf, int k, const char *const *names)
{
    if (k < 1 || k > 256) return ferc_set_error(FERC_ERR_INVALID, "confusion: %d classes", k);
    int cell = k <= 10 ? 64 : 24, left = 110, top = 60;
    cairo_t *cr;
    cairo_surface_t *s = new_canvas(left + k * cell + 30, top + k * cell + 60, &cr);
    cairo_set_source_rgb(cr, 0, 0, 0);
    draw_text(cr, left, 20, "confusion (rows: true, columns: predicted; shade = row fraction)", 12);
    char buf[64];
    for (int t = 0; t < k; t++) {
        int64_t row = 0;
        for (int p = 0; p < k; p++) row += conf[(size_t)t * k + p];
        const char *name = names ? names[t] : (snprintf(buf, sizeof buf, "%d", t), buf);
        cairo_set_source_rgb(cr, 0, 0, 0);
        draw_text(cr, 8, top + t * cell + cell / 2.0 + 4, name, 11);
        cairo_save(cr);
        cairo_move_to(cr, left + t * cell + cell / 2.0 - 4, top - 6);
        cairo_rotate(cr, -M_PI / 4);
        cairo_set_font_size(cr, 11);
        cairo_show_text(cr, name);
        cairo_restore(cr);
        for (int p = 0; p < k; p++) {
            int64_t c = conf[(size_t)t * k + p];
            double f = row ? (double)c / row : 0;
            cairo_set_source_rgb(cr, 1 - 0.85 * f, 1 - 0.6 * f, 1 - 0.25 * f);
            cairo_rectangle(cr, left + p * cell, top + t * cell, cell, cell);
            cairo_fill(cr);
            cairo_set_source_rgb(cr, f > 0.5 ? 1 : 0, f > 0.5 ? 1 : 0, f > 0.5 ? 1 : 0);
            snprintf(buf, sizeof buf, "%lld", (long long)c);
            draw_text(cr, left + p * cell + 6, top + t * cell + cell / 2.0 + 4, buf, cell >= 64 ? 12 : 8);
        }
    }
    return finish_canvas(s, cr, path, "confusion");
}

/* ---- comparison plots ---------------------------------------------------------------------- */

int report_lines_png(const char *path, const char *title, const char *xlabel, const report_series *ser, int ns)
{
    if (ns < 1) return ferc_set_error(FERC_ERR_INVALID, "%s: no series", path);
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int s = 0; s < ns; s++)
        for (int i = 0; i < ser[s].n; i++)
            if (isfinite(ser[s].x[i]) && isfinite(ser[s].y[i])) {
                x0 = fmin(x0, ser[s].x[i]), x1 = fmax(x1, ser[s].x[i]);
                y0 = fmin(y0, ser[s].y[i]), y1 = fmax(y1, ser[s].y[i]);
            }
    if (!isfinite(x0)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
    if (x1 - x0 < 1e-12) x1 = x0 + 1;
    if (y1 - y0 < 1e-12) y1 = y0 + 1;
    double pad = 0.05 * (y1 - y0);
    y0 -= pad, y1 += pad;
    cairo_t *cr;
    cairo_surface_t *sf = new_canvas(760, 440, &cr);
    panel p = {80, 40, 480, 340};
    panel_frame(cr, p);
    draw_text(cr, p.x, 24, title, 14);
    panel_ticks(cr, p, x0, x1, y0, y1, 4, xlabel);
    int rc = FERC_OK;
    for (int s = 0; s < ns; s++) {
        size_t m = (size_t)(ser[s].n > 0 ? ser[s].n : 1);
        double *px = malloc(2 * m * sizeof *px);
        if (!px) {
            rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory");
            break;
        }
        double *py = px + m;
        for (int i = 0; i < ser[s].n; i++) {
            px[i] = p.x + (ser[s].x[i] - x0) / (x1 - x0) * p.w;
            py[i] = p.y + p.h - (ser[s].y[i] - y0) / (y1 - y0) * p.h;
        }
        const double *c = series_col[ser[s].color % 8];
        cairo_set_source_rgb(cr, c[0], c[1], c[2]);
        cairo_set_line_width(cr, 2);
        double dash = 5;
        cairo_set_dash(cr, &dash, ser[s].dashed ? 1 : 0, 0);
        polyline(cr, px, py, ser[s].n);
        free(px);
        legend_entry(cr, p, s, ser[s].name);
    }
    if (rc) {
        cairo_destroy(cr);
        cairo_surface_destroy(sf);
        return rc;
    }
    return finish_canvas(sf, cr, path, "lines");
}

int report_reliability_png(const char *path, const char *const *names, const double *acc, const double *conf,
                           const int64_t *count, int nruns, int nbins)
{
    cairo_t *cr;
    cairo_surface_t *sf = new_canvas(760, 460, &cr);
    panel p = {70, 40, 380, 380};
    panel_frame(cr, p);
    draw_text(cr, p.x, 24, "reliability: accuracy against confidence (10 bins; diagonal = calibrated)", 13);
    double dash = 4;
    cairo_set_dash(cr, &dash, 1, 0);
    cairo_move_to(cr, p.x, p.y + p.h);
    cairo_line_to(cr, p.x + p.w, p.y);
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0);
    panel_ticks(cr, p, 0, 1, 0, 1, 5, "confidence (top probability)");
    double px[64], py[64];
    int nb = nbins < 64 ? nbins : 64;
    for (int r = 0; r < nruns; r++) {
        for (int b = 0; b < nb; b++) {
            size_t k = (size_t)r * nbins + b;
            px[b] = count[k] ? p.x + conf[k] * p.w : NAN;
            py[b] = count[k] ? p.y + p.h - acc[k] * p.h : NAN;
        }
        const double *c = series_col[r % 8];
        cairo_set_source_rgb(cr, c[0], c[1], c[2]);
        cairo_set_line_width(cr, 2);
        polyline(cr, px, py, nb);
        for (int b = 0; b < nb; b++)
            if (isfinite(px[b])) {
                cairo_arc(cr, px[b], py[b], 3, 0, 2 * M_PI);
                cairo_fill(cr);
            }
        legend_entry(cr, p, r, names[r]);
    }
    return finish_canvas(sf, cr, path, "reliability");
}

/* jet-like colour for t in [0, 1] */
static void heat(double t, double *r, double *g, double *b)
{
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    *r = fmin(1, fmax(0, 1.5 - fabs(4 * t - 3)));
    *g = fmin(1, fmax(0, 1.5 - fabs(4 * t - 2)));
    *b = fmin(1, fmax(0, 1.5 - fabs(4 * t - 1)));
}

int report_gradcam_png(const char *path, int nfaces, int side, const uint8_t *faces, const char *const *row_labels,
                       int nmodels, const char *const *model_names, const float *maps, const char *const *cell_labels)
{
    const int cell = 120, left = 150, top = 40, gap = 8;
    int W = left + (nmodels + 1) * (cell + gap) + 10, H = top + nfaces * (cell + 36) + 10;
    if (W < 620) W = 620;
    cairo_t *cr;
    cairo_surface_t *sf = new_canvas(W, H, &cr);
    cairo_set_source_rgb(cr, 0, 0, 0);
    draw_text(cr, 6, 16, "Grad-CAM: the last convolutional stage's evidence for the predicted class", 12);
    draw_text(cr, left, top - 6, "face", 11);
    for (int m = 0; m < nmodels; m++) draw_text(cr, left + (m + 1) * (cell + gap), top - 6, model_names[m], 11);
    unsigned char *px = malloc((size_t)cell * cell * 4);
    if (!px) {
        cairo_destroy(cr);
        cairo_surface_destroy(sf);
        return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    }
    int stride = cairo_format_stride_for_width(CAIRO_FORMAT_RGB24, cell);
    for (int f = 0; f < nfaces; f++) {
        double y = top + f * (cell + 36);
        cairo_set_source_rgb(cr, 0, 0, 0);
        draw_text(cr, 6, y + cell / 2.0, row_labels[f], 11);
        for (int col = 0; col <= nmodels; col++) {
            for (int yy = 0; yy < cell; yy++)
                for (int xx = 0; xx < cell; xx++) {
                    int sx = xx * side / cell, sy = yy * side / cell;
                    double g = faces[((size_t)f * side + sy) * side + sx] / 255.0, r = g, gg = g, b = g;
                    if (col > 0) {
                        double t = maps[(((size_t)(col - 1) * nfaces + f) * side + sy) * side + sx], hr, hg, hb;
                        heat(t, &hr, &hg, &hb);
                        r = 0.55 * g + 0.45 * hr, gg = 0.55 * g + 0.45 * hg, b = 0.55 * g + 0.45 * hb;
                    }
                    uint32_t v = ((uint32_t)(r * 255) << 16) | ((uint32_t)(gg * 255) << 8) | (uint32_t)(b * 255);
                    memcpy(px + (size_t)yy * stride + (size_t)xx * 4, &v, 4);
                }
            cairo_surface_t *img = cairo_image_surface_create_for_data(px, CAIRO_FORMAT_RGB24, cell, cell, stride);
            double x = left + col * (cell + gap);
            cairo_set_source_surface(cr, img, x, y);
            cairo_paint(cr);
            cairo_surface_destroy(img);
            if (col > 0) { /* the model's answer under its map: green when right, red when wrong */
                const char *lab = cell_labels[(size_t)(col - 1) * nfaces + f];
                bool right = !strncmp(lab, "right", 5), wrong = !strncmp(lab, "wrong", 5);
                cairo_set_source_rgb(cr, wrong ? 0.75 : 0, right ? 0.45 : 0, 0);
                draw_text(cr, x, y + cell + 15, lab, 11);
            }
        }
    }
    free(px);
    return finish_canvas(sf, cr, path, "gradcam");
}
