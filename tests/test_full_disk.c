/* Writing on a full disk -- simulated with a file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored:
 * a write past the limit fails with EFBIG as one on a full disk fails with ENOSPC) -- gives a
 * clear error naming the file and keeps the previous file intact, byte for byte, with no
 * temporary file left:
 *   - a model (models_save, what ferc train's best.safetensors and ferc convert write);
 *   - a training checkpoint, in a run resumed under the limit, which then resumes normally
 *     once there is room again;
 *   - ferc convert and ferc train --resume from the command line, under `ulimit -f` (of
 *     /bin/sh, in 512-byte blocks). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "core/core.h"
#include "ferc.h"
#include "models/models.h"
#include "testutil.h"
#include "train/trainer.h"

static char root[256];

static bool same_file(const char *a, const uint8_t *data, size_t size)
{
    uint8_t *d = NULL;
    size_t n = 0;
    if (file_read_all(a, &d, &n)) return false;
    bool same = n == size && !memcmp(d, data, n);
    free(d);
    return same;
}

static struct rlimit saved;

static void limit_files(rlim_t bytes)
{
    struct rlimit l = saved;
    l.rlim_cur = bytes;
    CHECK(setrlimit(RLIMIT_FSIZE, &l) == 0, "setrlimit: %s", strerror(errno));
}

static void unlimit_files(void) { CHECK(setrlimit(RLIMIT_FSIZE, &saved) == 0, "setrlimit: %s", strerror(errno)); }

static void config(trainer_config *c, const char *name)
{
    char data[300], out[300];
    snprintf(data, sizeof data, "%s/data", root);
    snprintf(out, sizeof out, "%s/%s", root, name);
    test_train_config(c, data, out, 16, 2);
    c->epochs = 3;
}

int main(void)
{
    signal(SIGXFSZ, SIG_IGN);
    CHECK(getrlimit(RLIMIT_FSIZE, &saved) == 0);
    snprintf(root, sizeof root, "/tmp/ferc_test_full_disk_XXXXXX");
    if (!mkdtemp(root)) return test_skip("no temporary folder");
    char path[512], other[512];

    /* 1. A model over an existing one. */
    snprintf(path, sizeof path, "%s/model.safetensors", root);
    snprintf(other, sizeof other, "%s/other.safetensors", root);
    test_make_model(path, "resnet18", 48, 1);
    uint8_t *before = NULL;
    size_t before_n = 0;
    CHECK_OK(file_read_all(path, &before, &before_n));
    nn_graph *g = NULL;
    models_meta m;
    CHECK_OK(models_build(&g, "resnet18", 6, 2));
    models_meta_init(&m, "resnet18", 6);
    CHECK_OK(models_meta_set_classes(&m, test_fer_classes, 6));
    limit_files(1 << 20); /* 1 MiB: a 45 MB model cannot fit */
    int rc = models_save(path, g, &m, ST_F32);
    unlimit_files();
    const char *msg = ferc_last_error();
    printf("model on a full disk: rc %d, \"%s\"\n", rc, msg);
    CHECK(rc == FERC_ERR_IO, "models_save returned %d", rc);
    CHECK(strstr(msg, path) && strstr(msg, strerror(EFBIG)), "the message names the file and the cause: %s", msg);
    CHECK(same_file(path, before, before_n), "the previous model changed");
    CHECK(test_count_tmp(root, NULL, 0) == 0, "a temporary file was left behind");
    CHECK_OK(models_save(other, g, &m, ST_F32)); /* with room again it works */
    models_meta_free(&m);
    nn_graph_destroy(g);
    free(before);

    /* 2. A training checkpoint: a run stopped after 3 steps, resumed under the limit. */
    snprintf(path, sizeof path, "%s/data", root);
    test_make_image_folder(path, 16, 16, 3);
    trainer_config c, ov;
    config(&c, "run");
    c.max_steps = 3;
    CHECK(trainer_run(&c, NULL, NULL) == FERC_ERR_INTERRUPTED, "%s", ferc_last_error());
    char run_dir[512], ckpt[600];
    snprintf(run_dir, sizeof run_dir, "%s/run", root);
    snprintf(ckpt, sizeof ckpt, "%s/last.safetensors", run_dir);
    CHECK_OK(file_read_all(ckpt, &before, &before_n));
    memset(&ov, 0, sizeof ov);
    limit_files(64 << 20); /* room for best.safetensors (45 MB), not for the checkpoint (135 MB) */
    rc = trainer_resume(run_dir, &ov, NULL, NULL);
    unlimit_files();
    msg = ferc_last_error();
    printf("checkpoint on a full disk: rc %d, \"%s\"\n", rc, msg);
    CHECK(rc == FERC_ERR_IO, "trainer_resume returned %d", rc);
    CHECK(strstr(msg, ckpt) && strstr(msg, strerror(EFBIG)), "the message names the file and the cause: %s", msg);
    CHECK(same_file(ckpt, before, before_n), "the previous checkpoint changed");
    CHECK(test_count_tmp(run_dir, NULL, 0) == 0, "a temporary file was left behind");
    free(before);
    CHECK_OK(trainer_resume(run_dir, &ov, NULL, NULL)); /* room again: the run finishes */

    /* 3. The CLI under ulimit -f: 1 MiB, then 64 MiB (as above). */
    const char *bin = getenv("FERC_BIN");
    if (bin) {
        snprintf(path, sizeof path, "%s/model.safetensors", root);
        CHECK_OK(file_read_all(other, &before, &before_n));
        char cmd[2048], *out = NULL;
        snprintf(cmd, sizeof cmd, "ulimit -f 2048; '%s' convert --model %s --out %s --storage f16 2>&1", bin, path, other);
        int st = test_capture(cmd, &out);
        printf("ferc convert on a full disk: exit %d: %s", st, out ? out : "(no output)\n");
        CHECK(st != 0 && st != -1, "ferc convert exited with %d", st);
        CHECK(out && strstr(out, other) && strstr(out, strerror(EFBIG)), "message: %s", out ? out : "");
        CHECK(same_file(other, before, before_n), "ferc convert changed the previous file");
        CHECK(test_count_tmp(root, NULL, 0) == 0, "a temporary file was left behind");
        free(out);
        free(before);

        config(&c, "cli");
        c.max_steps = 2;
        CHECK(trainer_run(&c, NULL, NULL) == FERC_ERR_INTERRUPTED, "%s", ferc_last_error());
        snprintf(run_dir, sizeof run_dir, "%s/cli", root);
        snprintf(ckpt, sizeof ckpt, "%s/last.safetensors", run_dir);
        CHECK_OK(file_read_all(ckpt, &before, &before_n));
        snprintf(cmd, sizeof cmd, "ulimit -f 131072; '%s' train --resume %s --quiet 2>&1", bin, run_dir);
        st = test_capture(cmd, &out);
        printf("ferc train --resume on a full disk: exit %d: %s", st, out ? out : "(no output)\n");
        CHECK(st != 0 && st != -1, "ferc train exited with %d", st);
        CHECK(out && strstr(out, ckpt) && strstr(out, strerror(EFBIG)), "message: %s", out ? out : "");
        CHECK(same_file(ckpt, before, before_n), "ferc train changed the previous checkpoint");
        CHECK(test_count_tmp(run_dir, NULL, 0) == 0, "a temporary file was left behind");
        free(out);
        free(before);
    } else {
        printf("FERC_BIN is not set: the command-line half is skipped\n");
    }
    if (test_failures == 0) test_sh("rm -rf %s", root);
    return test_finish("test_full_disk");
}
