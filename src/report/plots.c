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
    cairo_set_source_rgb(cr, 0.97, 0.97, 0.97);
    cairo_rectangle(cr, p.x, p.y, p.w, p.h);
    cairo_fill(cr);
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    cairo_set_line_width(cr, 1);
    cairo_rectangle(cr, p.x, p.y, p.w, p.h);
    cairo_stroke(cr);
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
    static const double col[2][3] = {{0.12, 0.47, 0.71}, {1.0, 0.5, 0.05}};
    for (int s = 0; s < ns; s++) {
        cairo_set_source_rgb(cr, col[s][0], col[s][1], col[s][2]);
        cairo_set_line_width(cr, 2);
        bool pen = false;
        for (int i = 0; i < n; i++) {
            if (!isfinite(vals[s][i])) { pen = false; continue; }
            if (pen) cairo_line_to(cr, PX(i), PY(vals[s][i]));
            else cairo_move_to(cr, PX(i), PY(vals[s][i]));
            pen = true;
        }
        cairo_stroke(cr);
        for (int i = 0; i < n; i++)
            if (isfinite(vals[s][i])) {
                cairo_arc(cr, PX(i), PY(vals[s][i]), 2.5, 0, 2 * M_PI);
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
    int W = 1200, H = 420;
    cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, W, H);
    cairo_t *cr = cairo_create(s);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    const char *titles[3] = {"loss", "accuracy", "learning rate (last step of epoch)"};
    for (int i = 0; i < 3; i++) {
        panel p = {70 + i * 400.0, 40, 310, 330};
        draw_panel(cr, p, titles[i], epochs, n, i);
    }
    int rc = cairo_status(cr) ? ferc_set_error(FERC_ERR_IO, "curves: cairo failed") : FERC_OK;
    cairo_destroy(cr);
    if (!rc) rc = save_surface(s, path);
    cairo_surface_destroy(s);
    return rc;
}

int report_confusion_png(const char *path, const int64_t *conf, int k, const char *const *names)
{
    if (k < 1 || k > 256) return ferc_set_error(FERC_ERR_INVALID, "confusion: %d classes", k);
    int cell = k <= 10 ? 64 : 24, left = 110, top = 60;
    int W = left + k * cell + 30, H = top + k * cell + 60;
    cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, W, H);
    cairo_t *cr = cairo_create(s);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
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
    int rc = cairo_status(cr) ? ferc_set_error(FERC_ERR_IO, "confusion: cairo failed") : FERC_OK;
    cairo_destroy(cr);
    if (!rc) rc = save_surface(s, path);
    cairo_surface_destroy(s);
    return rc;
}
