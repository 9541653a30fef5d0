/* report plots: training curves and confusion heatmaps as PNG (cairo), written atomically. */
#ifndef FERC_REPORT_PLOTS_H
#define FERC_REPORT_PLOTS_H

#include <stdbool.h>
#include <stdint.h>

#include "train/trainer.h"

/* Three panels against the global epoch: loss (train, val), accuracy (train, val) and lr;
 * a dashed vertical line where phase 2 starts. n >= 1. */
int report_curves_png(const char *path, const trainer_epoch *epochs, int n);
/* A k x k heatmap of confusion[true * k + pred], rows normalized to recall, with counts;
 * names may be NULL. */
int report_confusion_png(const char *path, const int64_t *confusion, int k, const char *const *names);

/* One line chart: any number of series (x, y) over shared axes, with a legend. */
typedef struct report_series {
    const char *name;
    const double *x, *y;
    int n;
    int color;   /* palette index */
    bool dashed;
} report_series;
int report_lines_png(const char *path, const char *title, const char *xlabel, const report_series *s, int ns);
/* Reliability diagram: per run r and bin b, acc[r * nbins + b] against conf[...] (mean top
 * probability in the bin), bins with count 0 skipped; the diagonal is perfect calibration. */
int report_reliability_png(const char *path, const char *const *names, const double *acc, const double *conf,
                           const int64_t *count, int nruns, int nbins);
/* A grid of faces (nfaces gray side x side images, row-major, faces[f * side * side]) with
 * each model's heat map (maps[(m * nfaces + f) * side * side], values in [0, 1]) blended
 * over it; row_labels per face, cell_labels[m * nfaces + f] under each cell. */
int report_gradcam_png(const char *path, int nfaces, int side, const uint8_t *faces, const char *const *row_labels,
                       int nmodels, const char *const *model_names, const float *maps, const char *const *cell_labels);

#endif
