/* Minimal test harness: CHECK records a failure and continues; test_finish() prints a summary
 * and returns the process exit code (1 when any check failed, 77 when skipped). */
#ifndef FERC_TESTUTIL_H
#define FERC_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

extern int test_failures;
extern int test_checks;

#define CHECK(cond, ...)                                                             \
    do {                                                                             \
        test_checks++;                                                               \
        if (!(cond)) {                                                               \
            test_failures++;                                                         \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);          \
            fprintf(stderr, " " __VA_ARGS__);                                        \
            fprintf(stderr, "\n");                                                   \
        }                                                                            \
    } while (0)

/* CHECK that a ferc call returned FERC_OK, printing ferc_last_error() otherwise. */
#define CHECK_OK(expr)                                                               \
    do {                                                                             \
        int rc_ = (expr);                                                            \
        test_checks++;                                                               \
        if (rc_ != 0) {                                                              \
            test_failures++;                                                         \
            fprintf(stderr, "FAIL %s:%d: %s returned %d: %s\n", __FILE__, __LINE__,  \
                    #expr, rc_, ferc_last_error());                                  \
        }                                                                            \
    } while (0)

/* Maximum relative error max|a-b| / max(max|b|, floor): the measure used by parity tests. */
double max_rel_err(const float *a, const float *b, size_t n, double floor);
double max_abs_err(const float *a, const float *b, size_t n);
/* Prints "<name>: max rel err <e> (tol <tol>)" and records a check. */
bool check_close(const char *name, const float *got, const float *want, size_t n, double tol);
/* The same with the relative L2 error ||got - want|| / ||want||. */
bool check_close_l2(const char *name, const float *got, const float *want, size_t n, double tol);

/* Returns $FERC_DATA or NULL. */
const char *test_data_dir(void);
/* Prints the reason and returns 77 (CTest's skip code). */
int test_skip(const char *why);
int test_finish(const char *name);

/* ---- running commands (CLI tests) ---- */
/* system() of a printf-formatted command line; returns system()'s status. */
int test_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Runs cmd through the shell, capturing its stdout into *out (a string the caller frees; NULL
 * when the command could not be started); returns the exit status, -1 when not exited. */
int test_capture(const char *cmd, char **out);
/* test_capture of "'$FERC_BIN' ARGS 2>&1", then CHECKs the exit status and that the output
 * contains every string of the NULL-terminated `needles`. */
void test_expect_ferc(const char *bin, const char *args, int want_rc, const char *const *needles);
/* The six FER classes in label order: Angry, Fear, Happy, Neutral, Sad, Surprise. */
extern const char *const test_fer_classes[6];
/* Writes a model file of `arch` with fixed random weights (seed), the six FER classes,
 * input size img_size and normalization mean 0.5 / std 0.25; a failure is a failed check. */
void test_make_model(const char *path, const char *arch, int img_size, unsigned long long seed);
/* Writes an image folder DIR/{Dark,Bright,Top}/NN.png of per_class gray side x side images
 * each that a network learns in a few epochs (dark, bright, bright top half), from `seed`. */
void test_make_image_folder(const char *dir, int per_class, int side, unsigned long long seed);

/* ---- training tests ---- */
typedef struct trainer_config trainer_config;
/* The small training run the trainer tests share: defaults, then resnet18 at side x side on
 * data_dir into out_dir, augmentation randomcrop(side, pad, reflect) | hflip | normalize(cifar10),
 * batch 8, Adam at lr 1e-2, seed 5, 2 threads; the caller sets the epochs and the rest. */
void test_train_config(trainer_config *c, const char *data_dir, const char *out_dir, int side, int pad);
/* Temporary files of interrupted atomic writes ("*.tmp.<pid>") in dir; the first one's name
 * goes to `first` when not NULL. 0 when dir cannot be opened. */
int test_count_tmp(const char *dir, char *first, size_t n);

#endif

/* ---- fixtures (safetensors files written by the scripts in tools/) ---- */
#include "io/safetensors.h"
#include "nn/nn.h"
/* A float32 tensor of the fixture, or NULL (recording a failed check) when it is missing or
 * has another element count (expect 0 = any). */
const float *fx_f32(const st_file *f, const char *name, size_t expect);
/* Copies every "<prefix><param name>" tensor of the fixture into the graph's parameters and
 * buffers; a missing tensor is a failed check. */
void fx_load_params(nn_graph *g, const st_file *f, const char *prefix);
