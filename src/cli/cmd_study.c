/* ferc study: several architectures trained by one protocol, then compared (train/study.h). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/core.h"
#include "models/models.h"
#include "nn/nn.h"
#include "train/study.h"

static void usage(void)
{
    printf("usage: ferc study --data DIR --out STUDY_DIR [options]\n"
           "       ferc study --resume STUDY_DIR [--threads N] [--quiet]\n\n"
           "Trains every architecture with one identical protocol -- the same split (made once,\n"
           "STUDY_DIR/split.csv), seed, augmentation, optimizer, schedule, epochs and input size -- then\n"
           "compares them in STUDY_DIR/report (index.html and compare.json; see ferc compare). With\n"
           "--weights-dir each run is transfer learning from torchvision's ImageNet file of its\n"
           "architecture: the new head on the frozen backbone with cached features first, then\n"
           "fine-tuning; without it, training from scratch. An interrupted study (Ctrl-C, a crash)\n"
           "continues with --resume where it stopped.\n\n"
           "options:\n"
           "  --archs A,B,...     architectures (default resnet152,densenet161)\n"
           "  --epochs N          epochs of every run, frozen ones included (default 20: the seed\n"
           "                      notebook's budget)\n"
           "  --img-size S        input side (default 48)\n"
           "  --recipe R          fer (default: the default model's recipe, its augmentation scaled\n"
           "                      to the input size) or default\n"
           "  --batch B           (default 64)\n"
           "  --ema DECAY         weight average of every run, validated and saved (default 0.999;\n"
           "                      0 = off)\n"
           "  --mixup ALPHA       mixup of every run (default 0 = off: it pays over long schedules)\n"
           "  --weights-dir DIR   <arch>-<hash>.pth (or <arch>*.safetensors) ImageNet files\n"
           "  --freeze-epochs N   frozen-backbone epochs with --weights-dir (default 3)\n"
           "  --precision P       fp32 (default) or bf16\n"
           "  --seed N            the split and the training (default 1)\n"
           "  --threads N         compute threads\n"
           "  --no-bench          the report does not time the models\n"
           "  --no-gradcam        the report has no heat maps\n"
           "  --quiet             no progress output\n");
}

static volatile sig_atomic_t stop_flag;
static void on_sigint(int sig)
{
    (void)sig;
    if (stop_flag) _exit(130);
    stop_flag = 1;
}

typedef struct ui {
    int quiet, tty, run, nruns, batch;
    char arch[32];
    double flops[STUDY_MAX_ARCHS];
} ui;

static void on_run(void *ud, int run, int nruns, const char *arch, const char *what)
{
    ui *u = ud;
    u->run = run, u->nruns = nruns;
    snprintf(u->arch, sizeof u->arch, "%s", arch);
    if (!u->quiet) printf("study: run %d of %d, %s: %s\n", run, nruns, arch, what);
    fflush(stdout);
}

static void on_step(void *ud, const trainer_progress *p)
{
    ui *u = ud;
    if (u->quiet || !u->tty) return;
    double per_step = p->images_per_s > 0 ? u->batch / p->images_per_s : 0;
    double epoch_s = per_step * p->steps;
    double run_left = p->eta_s + (p->total_epochs - p->epoch) * epoch_s, left = run_left;
    /* later runs: this run's epoch time scaled by their FLOPs */
    for (int r = u->run; r < u->nruns && u->flops[u->run - 1] > 0; r++)
        left += epoch_s * p->total_epochs * u->flops[r] / u->flops[u->run - 1];
    fprintf(stderr, "\r[%d/%d %s] epoch %d/%d step %d/%d %.0f img/s loss %.3f acc %.3f | run %.0f min, study ~%.0f min left ",
            u->run, u->nruns, u->arch, p->epoch, p->total_epochs, p->step, p->steps, p->images_per_s, p->loss, p->acc,
            run_left / 60, left / 60);
    fflush(stderr);
}

static void on_epoch(void *ud, const trainer_epoch *e)
{
    ui *u = ud;
    if (u->quiet) return;
    if (u->tty) fprintf(stderr, "\r%*s\r", 110, "");
    printf("[%d/%d %s] epoch %3d train loss %.4f acc %.4f  val loss %.4f acc %.4f  %.1fs  %.0f img/s%s\n", u->run, u->nruns,
           u->arch, e->epoch, e->train_loss, e->train_acc, e->val_loss, e->val_acc, e->seconds, e->images_per_s,
           e->best ? "  *" : "");
    fflush(stdout);
}

static void on_message(void *ud, const char *msg)
{
    ui *u = ud;
    if (!u->quiet) fprintf(stderr, "%s\n", msg);
}

int cmd_study(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        usage();
        return CLI_OK;
    }
    study_config c;
    study_config_default(&c);
    const char *resume = NULL;
    ui u = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--quiet")) { u.quiet = 1; continue; }
        if (!strcmp(a, "--no-bench")) { c.bench = false; continue; }
        if (!strcmp(a, "--no-gradcam")) { c.gradcam = false; continue; }
        if (a[0] != '-' || a[1] != '-') return cli_usage_error("study", "unexpected argument %s", a);
        if (!v) return cli_usage_error("study", "%s needs a value", a);
        i++;
        int n;
        if (!strcmp(a, "--data")) snprintf(c.data_dir, sizeof c.data_dir, "%s", v);
        else if (!strcmp(a, "--out")) snprintf(c.out_dir, sizeof c.out_dir, "%s", v);
        else if (!strcmp(a, "--resume")) resume = v;
        else if (!strcmp(a, "--weights-dir")) snprintf(c.weights_dir, sizeof c.weights_dir, "%s", v);
        else if (!strcmp(a, "--recipe")) snprintf(c.recipe, sizeof c.recipe, "%s", v);
        else if (!strcmp(a, "--archs")) {
            c.narchs = 0;
            char buf[512];
            snprintf(buf, sizeof buf, "%s", v);
            for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                if (c.narchs == STUDY_MAX_ARCHS) return cli_usage_error("study", "at most %d architectures", STUDY_MAX_ARCHS);
                snprintf(c.archs[c.narchs++], sizeof c.archs[0], "%s", t);
            }
        } else if (!strcmp(a, "--epochs")) {
            if (cli_parse_int(v, 1, 100000, &c.epochs)) return cli_usage_error("study", "--epochs needs a positive integer");
        } else if (!strcmp(a, "--img-size")) {
            if (cli_parse_int(v, 8, 4096, &c.img_size)) return cli_usage_error("study", "--img-size needs an integer in [8, 4096]");
        } else if (!strcmp(a, "--batch")) {
            if (cli_parse_int(v, 1, 65536, &c.batch)) return cli_usage_error("study", "--batch needs a positive integer");
        } else if (!strcmp(a, "--freeze-epochs")) {
            if (cli_parse_int(v, 0, 100000, &c.freeze_epochs)) return cli_usage_error("study", "--freeze-epochs needs an integer >= 0");
        } else if (!strcmp(a, "--ema")) {
            if (cli_parse_double(v, 0, 0.999999, &c.ema)) return cli_usage_error("study", "--ema needs a decay in [0, 1)");
        } else if (!strcmp(a, "--mixup")) {
            if (cli_parse_double(v, 0, 100, &c.mixup)) return cli_usage_error("study", "--mixup needs an alpha in [0, 100]");
        } else if (!strcmp(a, "--threads")) {
            if (cli_parse_int(v, 1, 1024, &c.threads)) return cli_usage_error("study", "--threads needs a positive integer");
        } else if (!strcmp(a, "--seed")) {
            if (cli_parse_int(v, 0, 2000000000, &n)) return cli_usage_error("study", "--seed needs a non-negative integer");
            c.seed = (uint64_t)n;
        } else if (!strcmp(a, "--precision")) {
            if (cli_parse_precision(v, &c.bf16)) return cli_usage_error("study", "--precision fp32|bf16");
        } else return cli_usage_error("study", "unknown option %s", a);
    }
    if (!resume && (!c.data_dir[0] || !c.out_dir[0])) return cli_usage_error("study", "--data and --out are required (or --resume)");
    u.tty = isatty(2);
    /* the time-left estimate weighs the runs by FLOPs: those of the study being resumed */
    study_config sc = c;
    if (resume && study_config_read(resume, &sc)) sc = c;
    u.batch = sc.batch;
    for (int i = 0; i < sc.narchs; i++) {
        nn_graph *g = NULL;
        if (!models_create(&g, sc.archs[i], 6) && !nn_graph_infer_shapes(g, 1, 3, sc.img_size, sc.img_size))
            u.flops[i] = nn_graph_flops(g);
        nn_graph_destroy(g);
    }
    ferc_clear_error();
    c.stop = &stop_flag;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);
    study_callbacks cb = {on_run, {on_step, on_epoch, on_message, &u}, &u};
    int rc = resume ? study_resume(resume, &c, &cb) : study_run(&c, &cb);
    if (u.tty && !u.quiet) fprintf(stderr, "\r%*s\r", 110, "");
    if (rc == FERC_ERR_INTERRUPTED) {
        fprintf(stderr, "ferc study: %s\nferc study: continue with --resume %s\n", ferc_last_error(), resume ? resume : c.out_dir);
        return 130;
    }
    if (rc) return cli_fail("study");
    if (!u.quiet) printf("study done: %s/report/index.html\n", resume ? resume : c.out_dir);
    return CLI_OK;
}
