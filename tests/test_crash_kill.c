/* ferc train killed with SIGKILL at 20 moments -- half of them at random times, half of them
 * while a checkpoint, model or metrics file is being written (a *.tmp.<pid> file is in the
 * run folder) -- and resumed with --resume after each kill, ends with the same weights and
 * metrics, bit for bit, as an uninterrupted run of the same command, and leaves no temporary
 * file behind. Every resume must get under way (not fail) before it is killed in turn.
 * FERC_TEST_SEED chooses the kill moments (default 1). */
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

#define KILLS 20
#define EPOCHS 16

static char root[256];
static const char *bin;

static void sleep_ms(double ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)((ms - 1000 * (double)(time_t)(ms / 1000)) * 1e6)};
    nanosleep(&ts, NULL);
}

/* fork + exec of "ferc ARGS", its output appended to ROOT/log */
static pid_t spawn(const char *args)
{
    pid_t pid = fork();
    if (pid == 0) {
        char cmd[2048];
        snprintf(cmd, sizeof cmd, "exec '%s' %s --quiet >>%s/log 2>&1", bin, args, root);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void train_args(char *buf, size_t n, const char *out)
{
    snprintf(buf, n,
             "train --data %s/data --arch resnet18 --img-size 16 --batch 8 --epochs %d --lr 0.01 --optimizer adam "
             "--augment 'randomcrop(16,pad=2,mode=reflect) | hflip | normalize(cifar10)' --seed 3 --threads 1 --out %s/%s",
             root, EPOCHS, root, out);
}

/* Polls DIR every millisecond until a temporary file has appeared there for the nth time
 * while pid runs (an appearance is a poll that finds one after a poll that found none, or
 * finds another name); true when it did. */
static bool wait_for_write(pid_t pid, const char *dir, int nth, double timeout_ms)
{
    char last[256] = "";
    int seen = 0;
    for (double t = 0; t < timeout_ms; t += 1) {
        siginfo_t info = {0};
        if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid)
            return false; /* it ended (left unreaped for the caller) */
        char name[256] = "";
        test_count_tmp(dir, name, sizeof name);
        if (name[0] && strcmp(name, last) && ++seen >= nth) return true;
        snprintf(last, sizeof last, "%s", name);
        sleep_ms(1);
    }
    return false;
}

static int compare_tensors(const char *pa, const char *pb)
{
    st_file a, b;
    int ra = st_read(&a, pa), rb = st_read(&b, pb);
    CHECK(ra == 0 && rb == 0, "%s", ferc_last_error());
    if (ra || rb) {
        if (!ra) st_close(&a);
        if (!rb) st_close(&b);
        return -1;
    }
    int differ = a.count == b.count ? 0 : 1;
    for (int i = 0; i < a.count; i++) {
        const st_tensor *t = st_find(&b, a.tensors[i].name);
        if (!t || t->nbytes != a.tensors[i].nbytes || memcmp(t->data, a.tensors[i].data, t->nbytes)) {
            if (differ++ < 5) fprintf(stderr, "differs: %s in %s\n", a.tensors[i].name, pb);
        }
    }
    printf("%s: %d tensors, %d differ from the uninterrupted run\n", pb + strlen(root) + 1, a.count, differ);
    st_close(&a);
    st_close(&b);
    return differ;
}

/* metrics.jsonl without the timing fields, for comparison */
static char *metrics_values(const char *path)
{
    uint8_t *d = NULL;
    size_t n;
    if (file_read_all(path, &d, &n)) return NULL;
    char *s = (char *)d;
    for (char *p = s; (p = strstr(p, "\"seconds\":"));) { /* cut "seconds":..,"images_per_s":.. out */
        char *end = strchr(p, '}');
        if (!end) break;
        memmove(p, end, strlen(end) + 1);
        p++;
    }
    return s;
}

int main(void)
{
    bin = getenv("FERC_BIN");
    if (!bin) return test_skip("FERC_BIN is not set (run through ctest)");
    const char *seed_env = getenv("FERC_TEST_SEED");
    unsigned long long seed = seed_env ? strtoull(seed_env, NULL, 10) : 1;
    snprintf(root, sizeof root, "/tmp/ferc_test_crash_kill_XXXXXX");
    if (!mkdtemp(root)) return test_skip("no temporary folder");
    char path[512], args[1024], dir[512];
    snprintf(path, sizeof path, "%s/data", root);
    test_make_image_folder(path, 40, 16, 11);

    /* The uninterrupted reference, timed. */
    train_args(args, sizeof args, "full");
    double t0 = time_now();
    pid_t pid = spawn(args);
    int status = 0;
    waitpid(pid, &status, 0);
    double t_ref = time_now() - t0;
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "uninterrupted run failed (see %s/log)", root);
    printf("uninterrupted run: %d epochs in %.1f s; kill seed %llu\n", EPOCHS, t_ref, seed);

    rng r;
    rng_seed(&r, seed);
    snprintf(dir, sizeof dir, "%s/cut", root);
    int kills = 0, in_write = 0, finished_early = 0, failed = 0;
    for (int k = 0; k < KILLS; k++) {
        if (k == 0) train_args(args, sizeof args, "cut");
        else snprintf(args, sizeof args, "train --resume %s", dir);
        pid = spawn(args);
        bool at_write = k % 2 == 1;
        int nth = 1 + (int)rng_below(&r, 4);
        double delay = 1000 * t_ref / (2 * EPOCHS) * (0.1 + 1.9 * rng_uniform(&r)); /* 0.05 to 1 epoch */
        if (at_write) wait_for_write(pid, dir, nth, 1000 * t_ref);
        else sleep_ms(delay);
        if (waitpid(pid, &status, WNOHANG) == pid) { /* it ended before the kill */
            if (WIFEXITED(status) && WEXITSTATUS(status) == 0) finished_early++;
            else failed++;
            CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "kill %d: ferc %s ended with status %d before the kill (see %s/log)",
                  k + 1, args, status, root);
            break;
        }
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        kills++;
        char name[256] = "";
        int left = test_count_tmp(dir, name, sizeof name);
        in_write += left > 0;
        printf("kill %2d: %s, %s\n", k + 1, at_write ? "at a write" : "at random", left ? name : "between writes");
    }
    printf("%d kills (%d inside a write, %d runs ended before their kill, %d failed)\n", kills, in_write, finished_early, failed);
    CHECK(kills == KILLS, "only %d of %d kills happened (the run ended too soon)", kills, KILLS);
    CHECK(in_write >= KILLS / 4, "only %d kills landed inside a file write", in_write);

    /* The last resume runs to the end. */
    snprintf(args, sizeof args, "train --resume %s", dir);
    pid = spawn(args);
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "final resume failed with status %d (see %s/log)", status, root);
    char name[256] = "";
    int left = test_count_tmp(dir, name, sizeof name);
    CHECK(left == 0, "%d temporary files left after the resume (%s)", left, name);

    char pa[600], pb[600];
    const char *files[2] = {"last.safetensors", "best.safetensors"};
    for (int i = 0; i < 2; i++) {
        snprintf(pa, sizeof pa, "%s/full/%s", root, files[i]);
        snprintf(pb, sizeof pb, "%s/cut/%s", root, files[i]);
        CHECK(compare_tensors(pa, pb) == 0, "%s differs from the uninterrupted run's", files[i]);
    }
    snprintf(pa, sizeof pa, "%s/full/metrics.jsonl", root);
    snprintf(pb, sizeof pb, "%s/cut/metrics.jsonl", root);
    char *ma = metrics_values(pa), *mb = metrics_values(pb);
    CHECK(ma && mb, "no metrics.jsonl");
    if (ma && mb) {
        int line = 1;
        const char *a = ma, *b = mb;
        while (*a && *a == *b) line += *a == '\n', a++, b++;
        CHECK(*a == *b, "metrics.jsonl differs from line %d:\n  %.200s\n  %.200s", line, a, b);
    }
    free(ma);
    free(mb);
    if (test_failures == 0) test_sh("rm -rf %s", root);
    return test_finish("test_crash_kill");
}
