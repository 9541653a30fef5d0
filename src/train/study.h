/* study: several architectures trained by one identical protocol and compared (`ferc study`).
 *
 * A study folder holds study.json (its settings), split.csv (one seeded, stratified validation
 * split, made once: every run trains and validates on exactly these rows), one run folder per
 * architecture (ferc train's, under the architecture's name) and report/ (compare_runs on the
 * runs). Every run gets the same split, seed, augmentation, schedule, epochs and input size.
 * With weights_dir (torchvision's ImageNet files, <arch>-<hash>.pth or <arch>*.safetensors)
 * each run is transfer learning: the file imported, freeze_epochs on a frozen backbone with
 * cached features, then the rest fine-tuning everything; without it, training from scratch.
 *
 * Resuming: study_resume(dir) continues where the study stopped: a finished run (summary.json)
 * is kept, a started one resumed (trainer_resume), the others started, then the report.
 *
 *     study_config c;
 *     study_config_default(&c);
 *     snprintf(c.data_dir, sizeof c.data_dir, "%s", "../shared/data/fer/Training");
 *     snprintf(c.out_dir, sizeof c.out_dir, "%s", "runs/study");
 *     if (study_run(&c, &cb)) fail(ferc_last_error());
 */
#ifndef FERC_TRAIN_STUDY_H
#define FERC_TRAIN_STUDY_H

#include <signal.h>
#include <stdbool.h>

#include "train/trainer.h"

#define STUDY_MAX_ARCHS 8

typedef struct study_config {
    char data_dir[TRAINER_PATH_MAX];
    char out_dir[TRAINER_PATH_MAX];
    char weights_dir[TRAINER_PATH_MAX];   /* "" = from scratch */
    char archs[STUDY_MAX_ARCHS][32];
    int narchs;
    char recipe[16];                      /* "fer" (default) or "default" */
    int img_size, epochs, freeze_epochs, batch, threads;
    double ema;                           /* weight-average decay of every run (0 = off) */
    double mixup;                         /* mixup alpha of every run (0 = off) */
    uint64_t seed;
    bool bf16;
    bool bench, gradcam;                  /* for the report */
    volatile sig_atomic_t *stop;
} study_config;

/* resnet152 and densenet161, recipe fer at 48x48, 20 epochs (the seed notebook's budget),
 * 3 frozen epochs when weights are given, batch 64, seed 1, float32, a weight average with
 * decay 0.999, no mixup (it pays only over long schedules). */
void study_config_default(study_config *c);

/* Progress: the trainer's callbacks, plus which run of how many. */
typedef struct study_callbacks {
    void (*on_run)(void *ud, int run, int nruns, const char *arch, const char *what); /* what: "training", "resuming", "done" */
    trainer_callbacks trainer;
    void *ud;
} study_callbacks;

int study_run(const study_config *c, const study_callbacks *cb);
int study_resume(const char *dir, const study_config *overrides, const study_callbacks *cb);
/* The settings of the study in dir (its study.json), e.g. to know its runs before resuming. */
int study_config_read(const char *dir, study_config *c);

/* The trainer_config of one of the study's runs (tests, and what study.json records). */
int study_run_config(const study_config *c, int i, trainer_config *t);

#endif
