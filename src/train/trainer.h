/* trainer: transfer learning in two phases, with checkpoints, exact resume and a run folder.
 *
 * Phases (epochs are numbered globally, 1-based, across both):
 *   1 "frozen"   freeze_epochs epochs: everything but the head is frozen (models_freeze_before
 *                with the head's stage), so backbone batch norms use their running statistics
 *                and no backward pass runs through the backbone. Skipped when freeze_epochs = 0.
 *   2 "finetune" epochs epochs: trainable from `unfreeze_from` onward ("" = everything), with
 *                the backbone's lr scaled by backbone_lr_mult (optimizer group 1; the head is
 *                group 0 at lr_mult 1). Skipped when epochs = 0.
 * Each phase has a fresh optimizer and its own schedule over phase_epochs * steps_per_epoch
 * optimizer steps (stepped per batch). Early stopping (patience > 0) ends the current phase
 * when the validation accuracy has not improved for `patience` epochs of that phase.
 *
 * Run folder (all written atomically):
 *   config.json       every setting, the seed, the ferc version (read back by trainer_resume)
 *   split.csv         the train/val manifest
 *   metrics.jsonl     one line per epoch: phase, epoch, train_loss, train_acc, val_loss,
 *                     val_acc, lr, seconds, images_per_s
 *   best.safetensors  the standalone model of the best validation accuracy
 *   last.safetensors  params, buffers, optimizer state and the trainer position (phase, epoch,
 *                     step within the epoch, running sums): resuming from it gives the same
 *                     weights and metrics as an uninterrupted run. Written at every epoch end
 *                     and when a stop is requested (mid-epoch).
 *   curves.png        loss, accuracy and lr against epoch; confusion.png and summary.json at the
 *                     end (the best model on the validation split)
 *
 * Determinism: the split, the shuffling, the augmentation (data loader: (seed, epoch,
 * position)), dropout and mixup ((seed, step)) and the initialization derive from the seed; schedules
 * are pure functions of the step. The last partial batch of an epoch is dropped.
 *
 * Interruption: when *cfg->stop becomes non-zero (a SIGINT handler in the CLI sets it) the
 * trainer finishes the current step, writes last.safetensors and returns FERC_ERR_INTERRUPTED.
 */
#ifndef FERC_TRAINER_H
#define FERC_TRAINER_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "optim/optim.h"

typedef enum trainer_balance { TRAINER_BALANCE_NONE, TRAINER_BALANCE_WEIGHTS, TRAINER_BALANCE_SAMPLER } trainer_balance;

#define TRAINER_PATH_MAX 1024
#define TRAINER_MAX_TEACHERS 4

typedef struct trainer_config {
    char data_dir[TRAINER_PATH_MAX];
    char arch[32];
    char weights[TRAINER_PATH_MAX];     /* "" = from scratch */
    char out_dir[TRAINER_PATH_MAX];
    char augment[512];                  /* "" = default for img_size (see trainer_config_default) */
    char split_manifest[TRAINER_PATH_MAX]; /* "" = stratified split with val_split */
    char unfreeze_from[64];             /* "" = all */
    char recipe[16];                    /* informative: "", "seed" or "default" */
    int img_size;                       /* network input side */
    int batch;
    int freeze_epochs, epochs;
    double lr;                          /* peak lr (onecycle: max_lr) */
    optim_kind optimizer;
    double weight_decay;
    double momentum;                    /* SGD only */
    sched_kind schedule;
    double warmup_epochs;               /* cosine */
    double clip_value, clip_norm;       /* 0 = none */
    double label_smoothing;
    double mixup;                       /* mixup alpha: lambda ~ Beta(alpha, alpha); 0 = off */
    double ema;                         /* decay of an exponential moving average of the weights and
                                           batch-norm statistics, validated and saved as the model;
                                           0 = off (e.g. 0.999) */
    char teacher[TRAINER_PATH_MAX];     /* knowledge distillation: ferc model files, comma-separated
                                           ("" = none); their averaged softmax on each augmented
                                           (and mixed) batch is a soft target */
    double kd_weight;                   /* the soft target's share of the loss (default 0.5):
                                           (1 - w) * hard loss + w * CE(teachers' softmax) */
    double val_split;
    double backbone_lr_mult;            /* phase 2 */
    uint64_t seed;
    int threads;                        /* OpenMP threads; <= 0: leave as is */
    trainer_balance balance;
    int patience;                       /* 0 = no early stopping */
    int max_steps;                      /* tests: request a stop after this many steps in total (0 = none) */
    bool cache_features;                /* phase 1: no augmentation, backbone features computed once */
    bool keep_head;                     /* with weights: keep their head too (same classes, in the
                                           same order) instead of a new one: a continuation */
    bool bf16;                          /* mixed precision (NN_EXEC_BF16): bf16 activations and conv
                                           weights in the kernels; weights, optimizer, checkpoints,
                                           batch-norm statistics and the loss stay float32 */
    volatile sig_atomic_t *stop;        /* may be NULL */
} trainer_config;

/* Defaults: img_size 48, batch 64, freeze_epochs 0, epochs 30, lr 1e-3, adamw, weight decay
 * 1e-4, onecycle, no clipping, label smoothing 0, val_split 0.1, backbone_lr_mult 0.1, seed 1,
 * threads 0, balance none, patience 0. */
void trainer_config_default(trainer_config *c);
/* The original notebook's settings (see the issue): adam, wd 0.01, onecycle 1e-3, clip value
 * 0.01, batch 128, 20 epochs, no freezing, its augmentation for the arch's family. */
int  trainer_recipe_seed(trainer_config *c);
/* The recipe of ferc's shipped default model (its card in models/): the FER crops enlarged to 64x64,
 * AdamW (lr 2e-3, weight decay 0.05) with OneCycle, batch 64, 50 epochs, label smoothing 0.1,
 * random crop (pad 5, reflect) + rotation up to 10 degrees and scale 0.9-1.1 + horizontal flip +
 * random erasing (p 0.5), normalized with the training rows' statistics (mean 0.5072, std
 * 0.2553, seed-1 split). The arch is left as given (resnet18 for the shipped model). */
int  trainer_recipe_fer(trainer_config *c);
/* The augmentation used when c->augment is "". */
void trainer_default_augment(const trainer_config *c, char *buf, size_t size);

/* What the trainer reports while it runs (for progress bars). */
typedef struct trainer_progress {
    int phase;                /* 1 or 2 */
    int epoch, total_epochs;  /* global, 1-based */
    int step, steps;          /* within the epoch, 1-based after the step */
    double loss, acc;         /* running means over the epoch so far */
    double images_per_s, eta_s, lr;
} trainer_progress;

typedef struct trainer_epoch {
    int phase, epoch;
    double train_loss, train_acc, val_loss, val_acc, lr, seconds, images_per_s;
    bool best;
} trainer_epoch;

typedef struct trainer_callbacks {
    void (*on_step)(void *ud, const trainer_progress *p);
    void (*on_epoch)(void *ud, const trainer_epoch *e);
    void (*on_message)(void *ud, const char *msg);
    void *ud;
} trainer_callbacks;

typedef struct trainer_result {
    int epochs_done;
    int best_epoch;
    double best_val_acc;
    double seconds;
    bool early_stopped;
} trainer_result;

/* Trains from scratch (or from cfg->weights) into cfg->out_dir. cb may be NULL. */
int trainer_run(const trainer_config *cfg, const trainer_callbacks *cb, trainer_result *res);
/* Continues the run in run_dir from its last.safetensors (config from its config.json).
 * stop, threads and max_steps are taken from `overrides` when non-NULL. */
int trainer_resume(const char *run_dir, const trainer_config *overrides, const trainer_callbacks *cb,
                   trainer_result *res);
/* Reads run_dir/config.json into *cfg. */
int trainer_config_read(const char *run_dir, trainer_config *cfg);
/* Reads run_dir/metrics.jsonl: its first `keep` epochs (keep < 0: all) into a new array *hist of
 * *n entries with room for `spare` more (free() it; unparsable lines are skipped). A missing or
 * unreadable file is an error (FERC_ERR_IO) and leaves *hist NULL. */
int trainer_history_read(const char *run_dir, int keep, int spare, trainer_epoch **hist, int *n);

/* ---- checkpoints (checkpoint.c) -------------------------------------------------------- */
typedef struct nn_graph nn_graph;

/* The trainer's position, stored in last.safetensors' metadata as "ferc.trainer" JSON. */
typedef struct trainer_state {
    int phase;                /* 1 or 2 */
    int epoch;                /* 0-based global epoch in progress (or next to start) */
    int step_in_epoch;        /* batches of `epoch` already done */
    int64_t phase_step;       /* optimizer steps done in this phase */
    int epochs_done;          /* lines of metrics.jsonl that belong to the run */
    double loss_sum, correct, seen;  /* running sums of the epoch in progress */
    double epoch_seconds;     /* compute time of the epoch in progress so far */
    double best_val_acc;
    int best_epoch;
    int bad_epochs;           /* epochs since the phase's best (patience) */
    double elapsed;           /* seconds of training before this point */
    uint64_t seed;
} trainer_state;

/* Writes params, buffers, batch counts, the optimizer's state tensors and *st atomically. */
/* ema_params (n_params) and ema_buffers (n_buffers) may be NULL (no --ema): saved as the tensors
 * "ema.params" and "ema.buffers". */
int checkpoint_save(const char *path, const nn_graph *g, optim *opt, const trainer_state *st, const float *ema_params,
                    const float *ema_buffers);
/* Reads the trainer state only. */
int checkpoint_read_state(const char *path, trainer_state *st);
/* Restores params, buffers and batch counts into g and the optimizer's state (opt may be NULL). */
int checkpoint_load(const char *path, nn_graph *g, optim *opt, trainer_state *st, float *ema_params, float *ema_buffers);

#endif
