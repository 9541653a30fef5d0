/* ferc train interrupted by a real SIGINT mid-run, then resumed with --resume, ends with the
 * same weights, optimizer state and metrics as an uninterrupted run of the same command. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"
#include "ferc.h"
#include "io/safetensors.h"
#include "testutil.h"

static char root[256];
static const char *bin;

static void make_data(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/data", root);
    test_make_image_folder(path, 40, 16, 11);
}

static void train_args(char *buf, size_t n, const char *out)
{
    snprintf(buf, n,
             "train --data %s/data --arch resnet18 --img-size 16 --batch 8 --epochs 6 --lr 0.01 --optimizer adam "
             "--augment 'randomcrop(16,pad=2,mode=reflect) | hflip | normalize(cifar10)' --seed 3 --threads 1 --out %s/%s",
             root, root, out);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static char *slurp(const char *path)
{
    uint8_t *d = NULL;
    size_t n;
    if (file_read_all(path, &d, &n)) return NULL;
    return (char *)d;
}

int main(void)
{
    bin = getenv("FERC_BIN");
    if (!bin) return test_skip("FERC_BIN is not set (run through ctest)");
    snprintf(root, sizeof root, "/tmp/ferc_test_train_cli_XXXXXX");
    if (!mkdtemp(root)) return test_skip("no temporary folder");
    make_data();
    char args[1024], cmd[2048];

    /* Uninterrupted reference. */
    train_args(args, sizeof args, "full");
    snprintf(cmd, sizeof cmd, "%s %s --quiet", bin, args);
    CHECK(system(cmd) == 0, "uninterrupted run failed: %s", cmd);

    /* The same command, interrupted by SIGINT once it is under way. */
    train_args(args, sizeof args, "cut");
    pid_t pid = fork();
    if (pid == 0) {
        char full[2048];
        snprintf(full, sizeof full, "exec %s %s --quiet", bin, args);
        execl("/bin/sh", "sh", "-c", full, (char *)NULL);
        _exit(127);
    }
    char metrics[512];
    snprintf(metrics, sizeof metrics, "%s/cut/metrics.jsonl", root);
    /* Wait until the first epoch is written, then about half an epoch (its training time is
     * in the metrics line) so that the signal lands inside epoch 2. */
    for (int i = 0; i < 1200 && !file_exists(metrics); i++) sleep_ms(50);
    char *first = slurp(metrics);
    const char *sec = first ? strstr(first, "\"seconds\":") : NULL;
    double epoch_s = sec ? atof(sec + 10) : 0.2;
    free(first);
    sleep_ms((long)(500 * epoch_s));
    kill(pid, SIGINT);
    int status = 0;
    waitpid(pid, &status, 0);
    bool interrupted = WIFEXITED(status) && WEXITSTATUS(status) == 130;
    bool finished = WIFEXITED(status) && WEXITSTATUS(status) == 0; /* the signal came too late */
    CHECK(interrupted || finished, "ferc train after SIGINT: status %d", status);
    printf("SIGINT: %s\n", interrupted ? "interrupted, exit 130" : "arrived after the end");
    char lastp[512];
    snprintf(lastp, sizeof lastp, "%s/cut/last.safetensors", root);
    st_file mid;
    if (interrupted && st_read(&mid, lastp) == 0) {
        const char *ts = st_meta(&mid, "ferc.trainer");
        const char *sie = ts ? strstr(ts, "\"step_in_epoch\":") : NULL;
        printf("checkpoint at the interruption: %s\n", sie ? sie : "(no trainer state)");
        st_close(&mid);
    }
    char *partial = slurp(metrics);
    int lines = 0;
    for (char *p = partial; p && *p; p++) lines += *p == '\n';
    printf("epochs written before the interruption: %d of 6\n", lines);
    free(partial);

    snprintf(cmd, sizeof cmd, "%s train --resume %s/cut --quiet", bin, root);
    if (interrupted) CHECK(system(cmd) == 0, "resume failed: %s", cmd);

    /* Same final checkpoint, tensor for tensor, and the same metrics. */
    char pa[512], pb[512];
    snprintf(pa, sizeof pa, "%s/full/last.safetensors", root);
    snprintf(pb, sizeof pb, "%s/cut/last.safetensors", root);
    st_file a, b;
    int ra = st_read(&a, pa), rb = st_read(&b, pb);
    CHECK(ra == 0 && rb == 0, "%s", ferc_last_error());
    if (!ra && !rb) {
        CHECK(a.count == b.count && a.count > 100, "%d vs %d tensors", a.count, b.count);
        int differ = 0;
        for (int i = 0; i < a.count; i++) {
            const st_tensor *t = st_find(&b, a.tensors[i].name);
            if (!t || t->nbytes != a.tensors[i].nbytes || memcmp(t->data, a.tensors[i].data, t->nbytes)) {
                if (differ++ < 5) fprintf(stderr, "differs: %s\n", a.tensors[i].name);
            }
        }
        CHECK(differ == 0, "%d tensors differ between the resumed and the uninterrupted run", differ);
        st_close(&a);
        st_close(&b);
    }
    /* metrics.jsonl: the same losses and accuracies (seconds differ). */
    snprintf(pa, sizeof pa, "%s/full/metrics.jsonl", root);
    char *ma = slurp(pa), *mb = slurp(metrics);
    CHECK(ma && mb);
    if (ma && mb) {
        int na = 0, nb = 0;
        for (char *p = ma; *p; p++) na += *p == '\n';
        for (char *p = mb; *p; p++) nb += *p == '\n';
        CHECK(na == 6 && nb == 6, "metrics lines %d and %d", na, nb);
        char *sa, *sb;
        char *la = strtok_r(ma, "\n", &sa), *lb = strtok_r(mb, "\n", &sb);
        while (la && lb) {
            const char *keys[] = {"\"train_loss\"", "\"train_acc\"", "\"val_loss\"", "\"val_acc\""};
            for (int k = 0; k < 4; k++) {
                const char *x = strstr(la, keys[k]), *y = strstr(lb, keys[k]);
                CHECK(x && y && atof(strchr(x, ':') + 1) == atof(strchr(y, ':') + 1), "%s differs: %s | %s", keys[k], la, lb);
            }
            la = strtok_r(NULL, "\n", &sa);
            lb = strtok_r(NULL, "\n", &sb);
        }
    }
    free(ma);
    free(mb);
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    CHECK(system(cmd) == 0);
    return test_finish("test_train_cli");
}
