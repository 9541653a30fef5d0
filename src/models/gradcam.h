/* gradcam: class-activation maps from the network's own backward pass (Grad-CAM, Selvaraju et
 * al. 2017).
 *
 * For one preprocessed input x (3, S, S): a forward pass in evaluation mode (every parameter
 * frozen, so batch norm uses its running statistics), then backward from the logit of class
 * `cls` to the input of the global pooling -- the last convolutional stage, A of shape
 * (C, h, w). The channel weights are alpha_c = the mean over h, w of dlogit/dA_c, the map is
 * ReLU(sum_c alpha_c A_c), upsampled bilinearly (half-pixel centres) to S x S and divided by
 * its maximum (all zero when nothing supports the class).
 *
 * The graph is the caller's; gradcam_create freezes all its parameters.
 *
 *     gradcam *gc;
 *     if (gradcam_create(&gc, g, 48)) fail(ferc_last_error());
 *     float map[48 * 48], probs[6];
 *     int pred;
 *     gradcam_run(gc, x, -1, map, &pred, probs);   // -1: the predicted class
 *     gradcam_destroy(gc);
 */
#ifndef FERC_MODELS_GRADCAM_H
#define FERC_MODELS_GRADCAM_H

#include "nn/nn.h"

typedef struct gradcam gradcam;

int gradcam_create(gradcam **out, nn_graph *g, int img_size);
/* cls < 0: the predicted class. map: S * S values in [0, 1]; pred and probs (K) may be NULL. */
int gradcam_run(gradcam *gc, const float *x, int cls, float *map, int *pred, float *probs);
void gradcam_destroy(gradcam *gc);
/* The last stage's spatial size: the map's true resolution before upsampling. */
void gradcam_grid(const gradcam *gc, int *h, int *w);

#endif
