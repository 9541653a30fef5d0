/* report plots: training curves and confusion heatmaps as PNG (cairo), written atomically. */
#ifndef FERC_REPORT_PLOTS_H
#define FERC_REPORT_PLOTS_H

#include <stdint.h>

#include "train/trainer.h"

/* Three panels against the global epoch: loss (train, val), accuracy (train, val) and lr;
 * a dashed vertical line where phase 2 starts. n >= 1. */
int report_curves_png(const char *path, const trainer_epoch *epochs, int n);
/* A k x k heatmap of confusion[true * k + pred], rows normalized to recall, with counts;
 * names may be NULL. */
int report_confusion_png(const char *path, const int64_t *confusion, int k, const char *const *names);

#endif
