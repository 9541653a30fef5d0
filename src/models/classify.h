/* classify: a loaded model file ready to classify images (evaluation mode).
 *
 * Preprocessing is what the model's metadata says, matching the training pipeline (data's
 * transforms): RGBA loses alpha, RGB stays RGB, a grayscale image is replicated to the 3
 * channels; the image is resized (bilinear with PIL's antialias, both sides to img_size, as
 * torchvision's Resize((S, S))) unless it is already img_size x img_size; then x/255 is
 * normalized with the file's mean/std.
 *
 * Many images go through the network in one batch. The execution plan is built for a batch
 * size on first use and kept while the same size comes back, so a caller classifying the
 * faces of successive frames pays for planning only when the face count changes.
 *
 * Usage:
 *     classifier *c;
 *     if (classifier_load(&c, "fer_r152.safetensors")) fail(ferc_last_error());
 *     const models_meta *m = classifier_meta(c);
 *     float *logits = malloc(n * m->num_classes * 4), *probs = malloc(...);
 *     classifier_run_images(c, imgs, n, logits, probs);   // (n, K) each
 *     classifier_destroy(c);
 *
 * A classifier is used by one thread at a time.
 */
#ifndef FERC_CLASSIFY_H
#define FERC_CLASSIFY_H

#include <stddef.h>

#include "image/image.h"
#include "models/models.h"

typedef struct classifier classifier;

/* Loads a ferc model file. The caller destroys *out. */
int classifier_load(classifier **out, const char *path);
void classifier_destroy(classifier *c);
const models_meta *classifier_meta(const classifier *c);
/* The class name of label i ("0", "1", ... when the file names none); NULL if out of range. */
const char *classifier_class_name(const classifier *c, int i);
/* Floats of one preprocessed input: channels * img_size * img_size. */
size_t classifier_input_size(const classifier *c);

/* Preprocesses one image (see above) into out (C, S, S) = classifier_input_size floats. */
int classifier_preprocess(const classifier *c, const image *img, float *out);
/* The same with explicit metadata (img_size, channels 3, mean, std): out is (3, S, S). */
int classify_preprocess(const models_meta *m, const image *img, float *out);
/* Eval forward pass of n preprocessed inputs x (n, C, S, S) in one batch (one per view with
 * test-time augmentation, see below). logits and probs (softmax) are (n, K); either may be
 * NULL. */
int classifier_run(classifier *c, const float *x, int n, float *logits, float *probs);
/* classifier_preprocess on each image, then classifier_run. */
int classifier_run_images(classifier *c, const image *imgs, int n, float *logits, float *probs);

/* Numerically stable softmax of each of the n rows of k logits. */
void classifier_softmax(const float *logits, int n, int k, float *probs);

/* Test-time augmentation: the network sees several views of each input and the probabilities
 * are the mean of the views' softmax; the logits reported with it are the log of those
 * probabilities, so that their softmax still gives the probabilities.
 *   none     the input itself
 *   flip     the input and its mirror image
 *   tencrop  the 4 corner and the centre crops of the input padded by S/12 (reflect), and
 *            their mirrors: the training crops of randomcrop(S, pad=S/12) | hflip,
 *            deterministic */
typedef enum classify_tta { CLASSIFY_TTA_NONE, CLASSIFY_TTA_FLIP, CLASSIFY_TTA_TENCROP } classify_tta;
/* "none", "flip", "tencrop"; FERC_ERR_INVALID with a message otherwise. */
int classify_tta_parse(const char *s, classify_tta *t);
const char *classify_tta_name(classify_tta t);
/* FERC_OK for a known mode, FERC_ERR_INVALID with a message otherwise. */
int classify_tta_check(classify_tta t);
int classify_tta_views(classify_tta t);            /* 1, 2, 10 */
/* View v of each of n preprocessed (3, S, S) inputs, src to dst (flip: 0 the input, 1 its
 * mirror; tencrop: 0-3 the corners, 4 the centre (the input), 5-9 their mirrors). */
void classify_tta_view(const float *src, float *dst, int n, int S, classify_tta t, int v);
/* The result of `views` views of the same nk = n * K scores: view_probs holds each view's
 * softmax, one block of nk after the other. probs = their mean, logits = log(probs); either
 * may be NULL. */
void classify_tta_average(const float *view_probs, int views, size_t nk, float *logits, float *probs);
/* classifier_run averages over these views from now on (default none). */
void classifier_set_tta(classifier *c, classify_tta t);
/* Mixed precision (bf16 activations and convolution weights, NN_EXEC_BF16) from now on;
 * default false (float32). */
void classifier_set_bf16(classifier *c, bool bf16);

#endif
