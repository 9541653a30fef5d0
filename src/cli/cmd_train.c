/* ferc train: two-phase transfer learning into a run folder (src/train/trainer.h), with a live
 * progress bar on a terminal, one line per epoch otherwise, and clean Ctrl-C handling. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "ferc.h"
#include "train/trainer.h"

static volatile sig_atomic_t stop_flag;

static void on_sigint(int sig)
{
    (void)sig;
    if (stop_flag) _exit(130); /* second Ctrl-C: at once; atomic writes leave no partial file */
    stop_flag = 1;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ferc train --data DIR --arch NAME --out RUN_DIR [options]\n"
            "       ferc train --resume RUN_DIR [--threads N] [--quiet] [--json]\n\n"
            "  --data DIR              class-folder image tree (required)\n"
            "  --arch NAME             resnet18..152, densenet121..201 (default resnet18)\n"
            "  --weights FILE          start from this ferc model (new head); default: from scratch\n"
            "  --keep-head             with --weights: keep its head too (same classes): continue it\n"
            "  --out RUN_DIR           run folder (required)\n"
            "  --img-size N            input side (default 48; set by the augmentation's output)\n"
            "  --batch N               batch size (default 64; the last partial batch is dropped)\n"
            "  --freeze-epochs N       phase 1, frozen backbone, head only (default 0)\n"
            "  --epochs N              phase 2, fine-tuning (default 50)\n"
            "  --lr F                  peak learning rate (default 2e-3)\n"
            "  --optimizer NAME        sgd|adam|adamw (default adamw; sgd uses momentum 0.9)\n"
            "  --weight-decay F        (default 0.05)\n"
            "  --schedule NAME         onecycle|cosine|step|constant, per batch (default onecycle)\n"
            "  --clip-value F          clip gradients by value (default off)\n"
            "  --clip-norm F           clip the gradient L2 norm (default off)\n"
            "  --label-smoothing F     (default 0)\n"
            "  --ema DECAY             validate and keep an exponential moving average of the weights and\n"
            "                          batch-norm statistics (e.g. 0.999; default 0 = off)\n"
            "  --mixup ALPHA           mixup with lambda ~ Beta(ALPHA, ALPHA) (default 0 = off; not on\n"
            "                          cached features)\n"
            "  --teacher FILE[,FILE]   knowledge distillation: the average softmax of these ferc models\n"
            "                          (at most 4; same classes and normalization) on every augmented\n"
            "                          batch is a soft target (not on cached features)\n"
            "  --kd-weight F           its share of the loss: (1-F) * hard + F * soft (default 0.5)\n"
            "  --augment SPEC          training transform (default: resize(S,S) | randomcrop(S,pad=S/12,\n"
            "                          mode=reflect) | hflip | normalize(imagenet with --weights, else cifar10))\n"
            "  --val-split F           stratified validation fraction (default 0.1)\n"
            "  --split-manifest FILE   use this split.csv instead\n"
            "  --seed N                (default 1)\n"
            "  --threads N             compute threads (default: OpenMP's)\n"
            "  --precision P           fp32 (default) or bf16: mixed precision, bf16 activations and\n"
            "                          conv weights in the kernels; weights, optimizer state, batch-norm\n"
            "                          statistics, the loss and checkpoints stay float32 (no loss\n"
            "                          scaling needed: bf16 has float32's range)\n"
            "  --balance MODE          none|weights|sampler (default none)\n"
            "  --patience N            early stopping per phase, in epochs (default 0 = off)\n"
            "  --unfreeze-from STAGE   phase 2 trains from this stage on (default: everything)\n"
            "  --backbone-lr-mult F    phase 2 backbone lr factor, with --weights or\n"
            "                          --freeze-epochs (default 0.1; else 1)\n"
            "  --cache-features        phase 1 without augmentation: compute the frozen backbone's\n"
            "                          features once and train the head on them (default off)\n"
            "  --recipe seed|fer|default  settings in one word; later options override them.\n"
            "                          seed: the original notebook (adam, wd 0.01, onecycle 1e-3, clip\n"
            "                          value 0.01, batch 128, 20 epochs, resize 64 + crop 64/50).\n"
            "                          fer: the shipped default model's recipe (64x64, adamw 2e-3, wd\n"
            "                          0.05, onecycle, 50 epochs, label smoothing 0.1, crop + rotation\n"
            "                          + scale + flip + erasing; see the model card). default: the\n"
            "                          defaults above\n"
            "  --resume RUN_DIR        continue an interrupted run exactly\n"
            "  --quiet                 no progress output\n"
            "  --json                  one JSON line per epoch on stdout\n"
            "Ctrl-C finishes the step, writes last.safetensors and exits; a second Ctrl-C exits at once.\n");
}

typedef struct ui { int quiet, json, tty; } ui;

static void on_step(void *ud, const trainer_progress *p)
{
    ui *u = ud;
    if (u->quiet || u->json || !u->tty) return;
    int width = 30, done = p->steps ? p->step * width / p->steps : 0;
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < done ? '#' : '.';
    bar[width] = 0;
    fprintf(stderr, "\repoch %d/%d [%s] %d/%d %.0f img/s loss %.4f acc %.3f eta %.0fs ", p->epoch, p->total_epochs,
            bar, p->step, p->steps, p->images_per_s, p->loss, p->acc, p->eta_s);
    fflush(stderr);
}

static void on_epoch(void *ud, const trainer_epoch *e)
{
    ui *u = ud;
    if (u->json) {
        printf("{\"phase\":\"%s\",\"epoch\":%d,\"train_loss\":%.6g,\"train_acc\":%.6g,\"val_loss\":%.6g,\"val_acc\":%.6g,"
               "\"lr\":%.6g,\"seconds\":%.2f,\"images_per_s\":%.1f,\"best\":%s}\n",
               e->phase == 1 ? "frozen" : "finetune", e->epoch, e->train_loss, e->train_acc, e->val_loss, e->val_acc,
               e->lr, e->seconds, e->images_per_s, e->best ? "true" : "false");
        fflush(stdout);
        return;
    }
    if (u->quiet) return;
    if (u->tty) fprintf(stderr, "\r%*s\r", 100, "");
    printf("epoch %3d %-8s train loss %.4f acc %.4f  val loss %.4f acc %.4f  lr %.3g  %.1fs  %.0f img/s%s\n", e->epoch,
           e->phase == 1 ? "frozen" : "finetune", e->train_loss, e->train_acc, e->val_loss, e->val_acc, e->lr,
           e->seconds, e->images_per_s, e->best ? "  *" : "");
    fflush(stdout);
}

static void on_message(void *ud, const char *msg)
{
    ui *u = ud;
    if (!u->quiet) fprintf(stderr, "%s\n", msg);
}

#define COPY(dst, v) snprintf(dst, sizeof dst, "%s", v)

int cmd_train(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return CLI_OK;
    }
    trainer_config c;
    trainer_config_default(&c);
    ui u = {0, 0, isatty(2)};
    const char *resume = NULL;
    /* The recipe first, so that explicit options override it. */
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--arch")) COPY(c.arch, argv[i + 1]);
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--recipe")) {
            if (!strcmp(argv[i + 1], "seed")) {
                if (trainer_recipe_seed(&c)) return cli_fail("--recipe seed");
            } else if (!strcmp(argv[i + 1], "fer")) {
                if (trainer_recipe_fer(&c)) return cli_fail("--recipe fer");
            } else if (strcmp(argv[i + 1], "default")) {
                return cli_usage_error("train", "--recipe seed|fer|default");
            }
        }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--quiet")) { u.quiet = 1; continue; }
        if (!strcmp(a, "--json")) { u.json = 1; continue; }
        if (!strcmp(a, "--cache-features")) {
            c.cache_features = true;
            continue;
        }
        if (!strcmp(a, "--keep-head")) {
            c.keep_head = true;
            continue;
        }
        if (a[0] != '-' || a[1] != '-') return cli_usage_error("train", "unexpected argument %s", a);
        if (!v) return cli_usage_error("train", "%s needs a value", a);
        i++;
        if (!strcmp(a, "--data")) COPY(c.data_dir, v);
        else if (!strcmp(a, "--arch")) COPY(c.arch, v);
        else if (!strcmp(a, "--weights")) COPY(c.weights, v);
        else if (!strcmp(a, "--out")) COPY(c.out_dir, v);
        else if (!strcmp(a, "--augment")) COPY(c.augment, v);
        else if (!strcmp(a, "--split-manifest")) COPY(c.split_manifest, v);
        else if (!strcmp(a, "--unfreeze-from")) COPY(c.unfreeze_from, v);
        else if (!strcmp(a, "--recipe")) COPY(c.recipe, v);
        else if (!strcmp(a, "--teacher")) COPY(c.teacher, v);
        else if (!strcmp(a, "--resume")) resume = v;
        else if (!strcmp(a, "--img-size")) c.img_size = atoi(v);
        else if (!strcmp(a, "--batch")) c.batch = atoi(v);
        else if (!strcmp(a, "--freeze-epochs")) c.freeze_epochs = atoi(v);
        else if (!strcmp(a, "--epochs")) c.epochs = atoi(v);
        else if (!strcmp(a, "--threads")) c.threads = atoi(v);
        else if (!strcmp(a, "--precision")) {
            if (cli_parse_precision(v, &c.bf16)) return cli_usage_error("train", "--precision fp32|bf16");
        }
        else if (!strcmp(a, "--patience")) c.patience = atoi(v);
        else if (!strcmp(a, "--lr")) c.lr = atof(v);
        else if (!strcmp(a, "--weight-decay")) c.weight_decay = atof(v);
        else if (!strcmp(a, "--clip-value")) c.clip_value = atof(v);
        else if (!strcmp(a, "--clip-norm")) c.clip_norm = atof(v);
        else if (!strcmp(a, "--label-smoothing")) c.label_smoothing = atof(v);
        else if (!strcmp(a, "--mixup")) c.mixup = atof(v);
        else if (!strcmp(a, "--ema")) c.ema = atof(v);
        else if (!strcmp(a, "--kd-weight")) {
            if (cli_parse_double(v, 0, 1, &c.kd_weight)) return cli_usage_error("train", "--kd-weight needs a number in [0, 1]");
        }
        else if (!strcmp(a, "--val-split")) c.val_split = atof(v);
        else if (!strcmp(a, "--backbone-lr-mult")) c.backbone_lr_mult = atof(v);
        else if (!strcmp(a, "--seed")) c.seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--optimizer")) { if (optim_kind_parse(v, &c.optimizer)) return cli_usage_error("train", "--optimizer sgd|adam|adamw"); }
        else if (!strcmp(a, "--schedule")) { if (sched_kind_parse(v, &c.schedule)) return cli_usage_error("train", "--schedule onecycle|cosine|step|constant"); }
        else if (!strcmp(a, "--balance")) {
            if (!strcmp(v, "none")) c.balance = TRAINER_BALANCE_NONE;
            else if (!strcmp(v, "weights")) c.balance = TRAINER_BALANCE_WEIGHTS;
            else if (!strcmp(v, "sampler")) c.balance = TRAINER_BALANCE_SAMPLER;
            else return cli_usage_error("train", "--balance none|weights|sampler");
        } else return cli_usage_error("train", "unknown option %s", a);
    }
    if (!resume && (!c.data_dir[0] || !c.out_dir[0])) return cli_usage_error("train", "--data and --out are required");
    if (c.clip_value > 0 && c.clip_norm > 0) return cli_usage_error("train", "--clip-value or --clip-norm, not both");
    c.stop = &stop_flag;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);
    trainer_callbacks cb = {on_step, on_epoch, on_message, &u};
    trainer_result res;
    int rc = resume ? trainer_resume(resume, &c, &cb, &res) : trainer_run(&c, &cb, &res);
    if (u.tty && !u.quiet && !u.json) fprintf(stderr, "\r%*s\r", 100, "");
    if (rc == FERC_ERR_INTERRUPTED) {
        fprintf(stderr, "ferc train: %s\n", ferc_last_error());
        return 130;
    }
    if (rc) return cli_fail("train");
    const char *dir = resume ? resume : c.out_dir;
    if (u.json)
        printf("{\"done\":true,\"best_epoch\":%d,\"best_val_acc\":%.6f,\"epochs\":%d,\"seconds\":%.1f,\"early_stopped\":%s,"
               "\"run\":\"%s\"}\n", res.best_epoch, res.best_val_acc, res.epochs_done, res.seconds,
               res.early_stopped ? "true" : "false", dir);
    else if (!u.quiet)
        printf("best epoch %d: val acc %.4f (%d epochs, %.1f s%s); model %s/best.safetensors\n", res.best_epoch,
               res.best_val_acc, res.epochs_done, res.seconds, res.early_stopped ? ", early stop" : "", dir);
    return CLI_OK;
}
