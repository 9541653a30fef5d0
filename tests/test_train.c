/* trainer: on tiny generated images (3 classes: dark, bright, bright-top), resnet18 at 12x12.
 *   - loss decreases and validation accuracy is clearly above chance; the run folder is complete
 *   - phase 1 (frozen backbone) changes only the head
 *   - a run stopped mid-epoch and resumed ends with the same weights and metrics as an
 *     uninterrupted one
 *   - mixup learns, changes the weights and resumes exactly
 *   - a run killed (SIGKILL) at an arbitrary moment leaves only complete files behind
 *   - --ema and --teacher (knowledge distillation) train as intended and resume exactly */
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"
#include "data/data.h"
#include "ferc.h"
#include "image/image.h"
#include "io/safetensors.h"
#include "models/models.h"
#include "testutil.h"
#include "train/trainer.h"

static char root[256];

static void make_data(void)
{
    const char *classes[3] = {"Dark", "Bright", "Top"};
    rng r;
    rng_seed(&r, 7);
    char path[512];
    for (int c = 0; c < 3; c++) {
        snprintf(path, sizeof path, "%s/data/%s", root, classes[c]);
        file_mkdirs(path);
        for (int i = 0; i < 20; i++) {
            image img;
            image_alloc(&img, 12, 12, 3);
            for (int y = 0; y < 12; y++)
                for (int x = 0; x < 12; x++)
                    for (int ch = 0; ch < 3; ch++) {
                        int base = c == 0 ? 40 : c == 1 ? 210 : (y < 6 ? 220 : 30);
                        int v = base + (int)rng_below(&r, 40) - 20;
                        img.data[y * img.stride + x * 3 + ch] = (uint8_t)v;
                    }
            snprintf(path, sizeof path, "%s/data/%s/%02d.png", root, classes[c], i);
            image_save(&img, path, 90);
            image_free(&img);
        }
    }
}

static void base_config(trainer_config *c, const char *name)
{
    char data[300], out[300];
    snprintf(data, sizeof data, "%s/data", root);
    snprintf(out, sizeof out, "%s/%s", root, name);
    test_train_config(c, data, out, 12, 1);
    c->val_split = 0.25;    /* 45 train (5 steps of 8), 15 val */
    c->freeze_epochs = 4;
    c->epochs = 1;
    c->schedule = SCHED_CONSTANT;
}

static st_file *open_st(const char *dir, const char *name, st_file *f)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int rc = st_read(f, path);
    CHECK(rc == 0, "%s: %s", path, ferc_last_error());
    return rc ? NULL : f;
}

static int count_metrics_lines(const char *dir, double *first_loss, double *last_loss, double *last_val)
{
    char path[512], line[1024];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *fp = fopen(path, "r");
    if (!fp) return 0;
    int n = 0;
    while (fgets(line, sizeof line, fp)) {
        const char *p = strstr(line, "\"train_loss\":"), *q = strstr(line, "\"val_acc\":");
        if (!p || !q) continue;
        double l = atof(p + 13);
        if (n == 0) *first_loss = l;
        *last_loss = l;
        *last_val = atof(q + 10);
        n++;
    }
    fclose(fp);
    return n;
}

/* A child trains; the parent kills it with SIGKILL after `ms`, then every .safetensors left
 * must read back and no temporary file may remain outside the *.tmp.* names. */
/* How many tensors of dir_a/last.safetensors are bitwise equal in dir_b's; *tensors = count. */
static int equal_tensors(const char *dir_a, const char *dir_b, int *tensors)
{
    st_file fa, fb;
    int equal = 0;
    *tensors = 0;
    if (!open_st(dir_a, "last.safetensors", &fa)) return 0;
    if (open_st(dir_b, "last.safetensors", &fb)) {
        for (int i = 0; i < fa.count; i++) {
            const st_tensor *t = st_find(&fb, fa.tensors[i].name);
            (*tensors)++;
            if (t && t->nbytes == fa.tensors[i].nbytes && !memcmp(t->data, fa.tensors[i].data, t->nbytes)) equal++;
            else if (*tensors - equal < 4) fprintf(stderr, "%s vs %s differ: %s\n", dir_a, dir_b, fa.tensors[i].name);
        }
        st_close(&fb);
    }
    st_close(&fa);
    return equal;
}

static void test_kill(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        trainer_config c;
        base_config(&c, "killed");
        c.freeze_epochs = 0;
        c.epochs = 50;
        _exit(trainer_run(&c, NULL, NULL) ? 1 : 0);
    }
    nanosleep(&(struct timespec){2, 500000000}, NULL);
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/killed", root);
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    int complete = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l > 12 && !strcmp(e->d_name + l - 12, ".safetensors")) {
            st_file f;
            if (open_st(dir, e->d_name, &f)) st_close(&f), complete++;
        }
    }
    if (d) closedir(d);
    printf("kill test: %d complete safetensors files after SIGKILL\n", complete);
}

/* The named recipes set what they say, and their augmentation parses to their input size. */
static void test_recipes(void)
{
    trainer_config c;
    trainer_config_default(&c);
    CHECK(c.epochs == 50 && c.optimizer == OPTIM_ADAMW && c.img_size == 48 && c.label_smoothing == 0, "defaults");
    CHECK_OK(trainer_recipe_fer(&c));
    CHECK(c.img_size == 64 && c.epochs == 50 && c.batch == 64 && c.optimizer == OPTIM_ADAMW && c.lr == 2e-3 &&
              c.weight_decay == 0.05 && c.schedule == SCHED_ONECYCLE && c.label_smoothing == 0.1 && !strcmp(c.recipe, "fer"),
          "--recipe fer: 64x64, adamw 2e-3, wd 0.05, onecycle, 50 epochs, label smoothing 0.1");
    const char *specs[2] = {c.augment, NULL};
    trainer_config s;
    trainer_config_default(&s);
    snprintf(s.arch, sizeof s.arch, "resnet18");
    CHECK_OK(trainer_recipe_seed(&s));
    CHECK(s.img_size == 50 && s.batch == 128 && s.epochs == 20 && s.clip_value == 0.01, "--recipe seed for a resnet");
    specs[1] = s.augment;
    const int want[2] = {64, 50};
    for (int i = 0; i < 2; i++) {
        data_transform *tf = NULL;
        CHECK_OK(data_transform_parse(&tf, specs[i]));
        int w = 0, h = 0;
        if (tf) data_transform_out_size(tf, 48, 48, &w, &h);
        CHECK(w == want[i] && h == want[i], "recipe %d: a 48x48 crop becomes %dx%d, want %d", i, w, h, want[i]);
        data_transform_destroy(tf);
    }
}

int main(void)
{
    snprintf(root, sizeof root, "/tmp/ferc_test_train_XXXXXX");
    if (!mkdtemp(root)) return test_skip("no temporary folder");
    make_data();
    test_recipes();
    test_kill(); /* before this process starts OpenMP, so that fork is safe */

    /* 1. Learning, run folder. */
    trainer_config c;
    base_config(&c, "plain");
    trainer_result res;
    double t0 = time_now();
    CHECK_OK(trainer_run(&c, NULL, &res));
    printf("plain run: 5 epochs in %.2f s, best epoch %d val acc %.3f\n", time_now() - t0, res.best_epoch, res.best_val_acc);
    double l0 = 0, l1 = 0, va = 0;
    CHECK(count_metrics_lines(c.out_dir, &l0, &l1, &va) == 5);
    CHECK(l1 < l0, "train loss %g -> %g", l0, l1);
    CHECK(res.best_val_acc >= 0.8, "val acc %g (chance 0.33)", res.best_val_acc);
    const char *files[] = {"config.json", "split.csv", "metrics.jsonl", "best.safetensors", "last.safetensors",
                           "curves.png", "confusion.png", "summary.json"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s", c.out_dir, files[i]);
        CHECK(file_exists(p), "%s missing", p);
    }
    nn_graph *gb;
    models_meta mb;
    char p[512];
    snprintf(p, sizeof p, "%s/best.safetensors", c.out_dir);
    CHECK_OK(models_load(p, &gb, &mb));
    if (gb) {
        CHECK(mb.num_classes == 3 && mb.img_size == 12 && mb.class_names && !strcmp(mb.class_names[0], "Bright"));
        nn_graph_destroy(gb);
        models_meta_free(&mb);
    }

    /* 2. Phase 1 changes only the head. */
    base_config(&c, "frozen");
    c.epochs = 0;
    CHECK_OK(trainer_run(&c, NULL, &res));
    nn_graph *g0;
    CHECK_OK(models_build(&g0, "resnet18", 3, c.seed));
    nn_graph *g1 = NULL;
    snprintf(p, sizeof p, "%s/last.safetensors", c.out_dir);
    CHECK_OK(models_create(&g1, "resnet18", 3));
    trainer_state st, st_unused;
    CHECK_OK(checkpoint_load(p, g1, NULL, &st, NULL, NULL));
    int same_backbone = 1, head_changed = 0;
    for (int i = 0; i < g0->nparams; i++) {
        const nn_param *q = &g0->param_table[i];
        if (q->kind == NN_BUFFER_NUM_BATCHES) {
            same_backbone &= g0->batches_tracked[q->offset] == g1->batches_tracked[q->offset];
            continue;
        }
        int differs = memcmp(nn_param_data(g0, q), nn_param_data(g1, &g1->param_table[i]), q->count * sizeof(float)) != 0;
        if (!strncmp(q->name, "fc.", 3)) head_changed |= differs;
        else if (differs) same_backbone = 0, fprintf(stderr, "frozen %s changed\n", q->name);
    }
    CHECK(same_backbone, "backbone (params, running stats, batch counts) changed in phase 1");
    CHECK(head_changed, "the head did not train");
    nn_graph_destroy(g0);
    nn_graph_destroy(g1);

    /* 2b. --cache-features: with augmentation off, training the head on cached backbone
     * features gives the head weights of a normal phase 1 (same batches, same optimizer). */
    trainer_config cc[2];
    for (int k = 0; k < 2; k++) {
        base_config(&cc[k], k ? "cached" : "uncached");
        snprintf(cc[k].augment, sizeof cc[k].augment, "normalize(cifar10)");
        cc[k].epochs = 0;
        cc[k].freeze_epochs = 3;
        cc[k].cache_features = k == 1;
        CHECK_OK(trainer_run(&cc[k], NULL, &res));
    }
    nn_graph *hc[2] = {NULL, NULL};
    for (int k = 0; k < 2; k++) {
        snprintf(p, sizeof p, "%s/last.safetensors", cc[k].out_dir);
        CHECK_OK(models_create(&hc[k], "resnet18", 3));
        CHECK_OK(checkpoint_load(p, hc[k], NULL, &st_unused, NULL, NULL));
    }
    if (hc[0] && hc[1]) {
        for (int k = 0; k < 2; k++) {
            const char *nm = k ? "fc.bias" : "fc.weight";
            const nn_param *a = &hc[0]->param_table[nn_find_param(hc[0], nm)];
            const nn_param *b = &hc[1]->param_table[nn_find_param(hc[1], nm)];
            char label[64];
            snprintf(label, sizeof label, "cached vs uncached head %s", nm);
            check_close(label, nn_param_data(hc[1], b), nn_param_data(hc[0], a), a->count, 1e-4);
        }
    }
    nn_graph_destroy(hc[0]);
    nn_graph_destroy(hc[1]);

    /* 3. Resume mid-epoch (step 7 = epoch 2, step 2 of 5) equals uninterrupted (run "plain"). */
    base_config(&c, "resumed");
    c.max_steps = 7;
    CHECK(trainer_run(&c, NULL, &res) == FERC_ERR_INTERRUPTED, "%s", ferc_last_error());
    CHECK_OK(checkpoint_read_state((snprintf(p, sizeof p, "%s/last.safetensors", c.out_dir), p), &st));
    CHECK(st.epoch == 1 && st.step_in_epoch == 2, "stopped at epoch %d step %d", st.epoch, st.step_in_epoch);
    trainer_config ov;
    trainer_config_default(&ov);
    ov.max_steps = 14; /* stops again in phase 2 (epoch 5, step 1), then finishes */
    CHECK(trainer_resume(c.out_dir, &ov, NULL, &res) == FERC_ERR_INTERRUPTED, "%s", ferc_last_error());
    CHECK_OK(trainer_resume(c.out_dir, NULL, NULL, &res));
    char plain[512];
    snprintf(plain, sizeof plain, "%s/plain", root);
    int tensors = 0, equal = equal_tensors(plain, c.out_dir, &tensors);
    CHECK(tensors > 100 && equal == tensors, "%d of %d tensors bitwise equal after resume", equal, tensors);
    double r0 = 0, r1 = 0, rv = 0;
    CHECK(count_metrics_lines(c.out_dir, &r0, &r1, &rv) == 5);
    CHECK(r0 == l0 && r1 == l1 && rv == va, "metrics differ: %g %g %g vs %g %g %g", r0, r1, rv, l0, l1, va);

    /* 4. mixup: it learns, it changes the training (same batches, other weights than without
     * it), config.json records it, and a run resumed mid-epoch equals an uninterrupted one. */
    trainer_config mc[3];
    double nomix_best = 0;
    const char *mnames[3] = {"nomix", "mix", "mixresumed"};
    for (int k = 0; k < 3; k++) {
        base_config(&mc[k], mnames[k]);
        mc[k].freeze_epochs = 0;
        mc[k].epochs = 6;
        mc[k].lr = 3e-3;
        mc[k].mixup = k ? 0.4 : 0;
        if (k == 2) mc[k].max_steps = 13;
        int rc = trainer_run(&mc[k], NULL, &res);
        if (k < 2) {
            CHECK_OK(rc);
            printf("%s: best epoch %d val acc %.3f\n", mnames[k], res.best_epoch, res.best_val_acc);
        } else {
            CHECK(rc == FERC_ERR_INTERRUPTED, "%s", ferc_last_error());
        }
        if (k == 0) nomix_best = res.best_val_acc;
        if (k == 1) CHECK(res.best_val_acc >= 0.8, "mixup val acc %g (chance 0.33)", res.best_val_acc);
    }
    CHECK_OK(trainer_resume(mc[2].out_dir, NULL, NULL, &res));
    int mt = 0, me = equal_tensors(mc[1].out_dir, mc[2].out_dir, &mt);
    CHECK(mt > 100 && me == mt, "mixup: %d of %d tensors bitwise equal after resume", me, mt);
    me = equal_tensors(mc[0].out_dir, mc[1].out_dir, &mt);
    CHECK(mt > 100 && me < mt / 2, "mixup changed only %d of %d tensors", mt - me, mt);
    trainer_config back;
    CHECK_OK(trainer_config_read(mc[1].out_dir, &back));
    CHECK(back.mixup == 0.4, "config.json mixup %g", back.mixup);

    /* 5. --ema: the same training as without it (identical batches and raw weights), the
     * averaged weights validated at least as well as the raw ones of the same run without it,
     * best.safetensors holds the average, and a run resumed mid-epoch equals an uninterrupted
     * one, average included. */
    trainer_config ec[2];
    const char *enames[2] = {"ema", "emaresumed"};
    for (int k = 0; k < 2; k++) {
        base_config(&ec[k], enames[k]);
        ec[k].freeze_epochs = 0;
        ec[k].epochs = 6;
        ec[k].lr = 3e-3;
        ec[k].ema = 0.9;
        if (k == 1) ec[k].max_steps = 13;
        int rc = trainer_run(&ec[k], NULL, &res);
        if (k == 0) {
            CHECK_OK(rc);
            printf("ema: best epoch %d val acc %.3f\n", res.best_epoch, res.best_val_acc);
            CHECK(res.best_val_acc >= nomix_best && res.best_val_acc > 0.5, "ema val acc %g, %g without it (chance 0.33)",
                  res.best_val_acc, nomix_best);
        } else {
            CHECK(rc == FERC_ERR_INTERRUPTED, "%s", ferc_last_error());
        }
    }
    CHECK_OK(trainer_resume(ec[1].out_dir, NULL, NULL, &res));
    int rt = 0, re = equal_tensors(mc[0].out_dir, ec[0].out_dir, &rt); /* nomix's tensors: no ema.* */
    CHECK(rt > 100 && re == rt, "ema changed the training: %d of %d raw tensors equal", re, rt);
    int et = 0, ee = equal_tensors(ec[0].out_dir, ec[1].out_dir, &et);
    CHECK(et > 100 && ee == et, "ema: %d of %d tensors bitwise equal after resume", ee, et);
    {
        st_file last, best;
        if (open_st(ec[0].out_dir, "last.safetensors", &last)) {
            const st_tensor *avg = st_find(&last, "ema.params");
            CHECK(avg != NULL, "the checkpoint holds no ema.params");
            if (avg && open_st(ec[0].out_dir, "best.safetensors", &best)) {
                /* the head is the last block of the flat parameters: fc.weight (3, 512), fc.bias (3) */
                const st_tensor *raw = st_find(&last, "fc.weight"), *bw = st_find(&best, "fc.weight");
                const float *a = (const float *)avg->data + st_numel(avg) - 3 - 3 * 512;
                CHECK(raw && bw && raw->nbytes == 3 * 512 * 4 && memcmp(raw->data, a, raw->nbytes) != 0,
                      "the average equals the raw weights");
                if (res.best_epoch == 6 && bw) CHECK(memcmp(bw->data, a, bw->nbytes) == 0, "best.safetensors is not the average");
                printf("ema: best epoch %d; the head's average and raw weights differ\n", res.best_epoch);
                st_close(&best);
            }
            st_close(&last);
        }
    }
    CHECK_OK(trainer_config_read(ec[0].out_dir, &back));
    CHECK(back.ema == 0.9, "config.json ema %g", back.ema);

    /* 6. --teacher: knowledge distillation. The teacher is the plain run's model with its head
     * made to say "Dark" (class 1) for everything. With --kd-weight 1 the student learns only
     * from it and ends up saying Dark for everything (validation accuracy 1/3: 5 of 15); with
     * --kd-weight 0 the training is bitwise that of the same run without a teacher; the
     * teacher is recorded in config.json and loaded again on resume (bitwise the same run);
     * a teacher of other classes is refused with a message. */
    {
        char teacher[512], wrong[512];
        snprintf(p, sizeof p, "%s/plain/best.safetensors", root);
        snprintf(teacher, sizeof teacher, "%s/teacher.safetensors", root);
        snprintf(wrong, sizeof wrong, "%s/wrong.safetensors", root);
        nn_graph *tg = NULL;
        models_meta tm;
        CHECK_OK(models_load(p, &tg, &tm));
        if (tg) {
            const nn_param *w = &tg->param_table[nn_find_param(tg, "fc.weight")];
            const nn_param *b = &tg->param_table[nn_find_param(tg, "fc.bias")];
            memset(nn_param_data(tg, w), 0, w->count * sizeof(float));
            float *bias = nn_param_data(tg, b);
            bias[0] = 0, bias[1] = 8, bias[2] = 0;
            CHECK_OK(models_save(teacher, tg, &tm, ST_F32));
            nn_graph_destroy(tg);
            models_meta_free(&tm);
        }
        nn_graph *g2 = NULL;
        models_meta m2;
        CHECK_OK(models_build(&g2, "resnet18", 2, 1));
        models_meta_init(&m2, "resnet18", 2);
        if (g2) CHECK_OK(models_save(wrong, g2, &m2, ST_F32));
        nn_graph_destroy(g2);
        models_meta_free(&m2);

        trainer_config kc[4];
        const char *knames[4] = {"kd1", "kd0", "kdresumed", "kdwrong"};
        for (int k = 0; k < 4; k++) {
            base_config(&kc[k], knames[k]);
            kc[k].freeze_epochs = 0;
            kc[k].epochs = 6;
            kc[k].lr = 3e-3;
            snprintf(kc[k].teacher, sizeof kc[k].teacher, "%s", k == 3 ? wrong : teacher);
            kc[k].kd_weight = k == 1 ? 0 : 1;
            if (k == 2) kc[k].max_steps = 13;
            int rc = trainer_run(&kc[k], NULL, &res);
            if (k < 2) CHECK(rc == FERC_OK, "%s: %s", knames[k], ferc_last_error());
            if (k == 0) {
                double f0 = 0, f1 = 0, lastv = 0;
                CHECK(count_metrics_lines(kc[0].out_dir, &f0, &f1, &lastv) == 6);
                printf("kd weight 1, a teacher that says Dark: last val acc %.3f (best %.3f)\n", lastv, res.best_val_acc);
                CHECK(fabs(lastv - 5.0 / 15) < 1e-6, "the student did not follow the teacher: last val acc %g, want 1/3", lastv);
            }
            if (k == 2) CHECK(rc == FERC_ERR_INTERRUPTED, "%s", ferc_last_error());
            if (k == 3) {
                CHECK(rc == FERC_ERR_INVALID && strstr(ferc_last_error(), "2 classes"), "a 2-class teacher: %s",
                      ferc_last_error());
            }
        }
        CHECK_OK(trainer_resume(kc[2].out_dir, NULL, NULL, &res));
        int kt = 0, ke = equal_tensors(kc[0].out_dir, kc[2].out_dir, &kt);
        CHECK(kt > 100 && ke == kt, "--teacher: %d of %d tensors bitwise equal after resume", ke, kt);
        ke = equal_tensors(mc[0].out_dir, kc[1].out_dir, &kt);
        CHECK(kt > 100 && ke == kt, "--kd-weight 0 changed the training: %d of %d tensors equal", ke, kt);
        CHECK_OK(trainer_config_read(kc[0].out_dir, &back));
        CHECK(!strcmp(back.teacher, teacher) && back.kd_weight == 1, "config.json teacher '%s' kd_weight %g", back.teacher,
              back.kd_weight);

        /* 7. --keep-head: starting from the plain run's model with its head kept, one epoch at a
         * negligible learning rate leaves that head as it was (a new head would be random);
         * weights of other classes are refused. */
        trainer_config hc2[3];
        const char *hnames[3] = {"keephead", "newhead", "keepwrong"};
        float *heads[2] = {NULL, NULL};
        for (int k = 0; k < 3; k++) {
            base_config(&hc2[k], hnames[k]);
            hc2[k].freeze_epochs = 0;
            hc2[k].epochs = 1;
            hc2[k].lr = 1e-12;
            snprintf(hc2[k].weights, sizeof hc2[k].weights, "%s", k == 2 ? wrong : p);
            hc2[k].keep_head = k != 1;
            int rc = trainer_run(&hc2[k], NULL, &res);
            if (k == 2) {
                CHECK(rc == FERC_ERR_INVALID && strstr(ferc_last_error(), "--keep-head"), "--keep-head, 2 classes: %s",
                      ferc_last_error());
                continue;
            }
            CHECK(rc == FERC_OK, "%s: %s", hnames[k], ferc_last_error());
            char bp[512];
            snprintf(bp, sizeof bp, "%s/best.safetensors", hc2[k].out_dir);
            nn_graph *hg = NULL;
            models_meta hm;
            if (models_load(bp, &hg, &hm) == FERC_OK) {
                const nn_param *w = &hg->param_table[nn_find_param(hg, "fc.weight")];
                heads[k] = malloc(w->count * sizeof(float));
                if (heads[k]) memcpy(heads[k], nn_param_data(hg, w), w->count * sizeof(float));
                nn_graph_destroy(hg);
                models_meta_free(&hm);
            }
        }
        nn_graph *pg = NULL;
        models_meta pm;
        CHECK_OK(models_load(p, &pg, &pm));
        if (pg && heads[0] && heads[1]) {
            const nn_param *w = &pg->param_table[nn_find_param(pg, "fc.weight")];
            check_close("--keep-head: the head after one epoch at lr 1e-12", heads[0], nn_param_data(pg, w), w->count, 1e-5);
            double diff = 0;
            for (size_t i = 0; i < w->count; i++) diff = fmax(diff, fabs(heads[1][i] - nn_param_data(pg, w)[i]));
            CHECK(diff > 1e-3, "without --keep-head the head is the old one (max difference %g)", diff);
        }
        if (pg) {
            nn_graph_destroy(pg);
            models_meta_free(&pm);
        }
        free(heads[0]);
        free(heads[1]);
        CHECK_OK(trainer_config_read(hc2[0].out_dir, &back));
        CHECK(back.keep_head, "config.json keep_head");
    }

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (getenv("KEEP")) return test_finish("train");
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", root);
    return test_finish("train");
}
