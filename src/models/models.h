/* models: torchvision-exact ResNet and DenseNet graphs, their initialization, and ferc's
 * native model files.
 *
 * The builders reproduce torchvision 0.14: resnet18/34/50/101/152 (BasicBlock / Bottleneck,
 * stride on the 3x3 conv, "v1.5") and densenet121/161/169/201 (bn_size 4, drop_rate 0). Node
 * names are torchvision's module names, so every parameter and buffer is named by its
 * state_dict key ("layer3.5.bn2.running_var", "features.denseblock2.denselayer4.conv1.weight")
 * and g->param_table lists them in state_dict order.
 *
 * The classifier head ("fc" for ResNet, "classifier" for DenseNet) is the only linear layer
 * and the graph's output node, so the head the forward pass uses is the head that gets
 * replaced: a model for N classes is simply built with num_classes = N (1000 gives the
 * ImageNet head).
 *
 * Initialization (distributionally like torch; torch's RNG is not reproduced):
 *   models_build       torchvision's constructor. ResNet: conv kaiming_normal_(fan_out, relu),
 *                      BN 1/0, fc as nn.Linear. DenseNet: conv kaiming_normal_(fan_in), BN 1/0,
 *                      classifier weight as nn.Linear, classifier bias 0.
 *   models_reinit_head what `model.fc = nn.Linear(...)` gives: weight and bias both
 *                      U(-1/sqrt(fan_in), 1/sqrt(fan_in)). Use it whenever a head is NEW on top
 *                      of loaded weights (importing ImageNet weights for a 6-class model).
 * Every parameter draws from its own stream rng_derive(seed, index, ...), so the values do
 * not depend on anything but the seed and the architecture.
 *
 * Usage:
 *     nn_graph *g;
 *     if (models_build(&g, "resnet152", 6, 42)) fail(ferc_last_error());
 *     nn_graph_infer_shapes(g, 1, 3, 48, 48);   // FERC_ERR_SHAPE when too small
 *     double flops = nn_graph_flops(g);
 *     nn_graph_destroy(g);
 */
#ifndef FERC_MODELS_H
#define FERC_MODELS_H

#include <stdbool.h>
#include <stdint.h>

#include "io/safetensors.h"
#include "nn/nn.h"

typedef enum models_family { MODELS_RESNET, MODELS_DENSENET } models_family;

/* The architecture names ferc builds, in a stable order; *count receives their number. */
const char *const *models_arch_names(int *count);
/* True when `arch` is one of them. */
bool models_arch_known(const char *arch);
/* FERC_OK and *family, or FERC_ERR_INVALID naming the known architectures. */
int models_arch_family(const char *arch, models_family *family);
/* The head's module name: "fc" or "classifier" (NULL for an unknown arch). */
const char *models_head_name(const char *arch);

/* Builds and finalizes the graph with every parameter zero except batch-norm weights (1) and
 * running variances (1): the starting point for loading weights. The caller destroys *out. */
int models_create(nn_graph **out, const char *arch, int num_classes);
/* Initializes every parameter as torchvision's constructor does (see above). */
int models_init(nn_graph *g, const char *arch, uint64_t seed);
/* models_create + models_init. */
int models_build(nn_graph **out, const char *arch, int num_classes, uint64_t seed);
/* Re-initializes the head as a fresh torch nn.Linear (weight and bias U(+-1/sqrt(fan_in))). */
int models_reinit_head(nn_graph *g, const char *arch, uint64_t seed);

/* Stages in forward order, for freezing: parameter-name prefixes
 * (ResNet: "conv1", "bn1", "layer1".."layer4", "fc";
 *  DenseNet: "features.conv0", "features.norm0", "features.denseblock1", "features.transition1",
 *  ..., "features.denseblock4", "features.norm5", "classifier"). NULL for an unknown arch. */
const char *const *models_stage_names(const char *arch, int *count);
/* Freezes every trainable parameter of the stages before `stage` and unfreezes `stage` and
 * everything after it. `stage` is a name from models_stage_names, or its short form without
 * "features." ("denseblock3"); "" unfreezes everything; the head's name freezes the backbone. */
int models_freeze_before(nn_graph *g, const char *arch, const char *stage);

/* ---- model files (src/models/model_file.c) ------------------------------------------------
 * A model file is a safetensors file holding every parameter and buffer under its state_dict
 * name (floats as F32, or F16/BF16 storage; num_batches_tracked as I64 scalars) and, in
 * __metadata__, everything needed to use it with no other file:
 *   "ferc.arch"      "resnet152"
 *   "ferc.classes"   JSON list of class names in label order: ["Angry", "Fear", ...]
 *   "ferc.img_size"  "48"
 *   "ferc.channels"  "3" (the length of mean/std)
 *   "ferc.mean"      JSON list, e.g. [0.485, 0.456, 0.406]
 *   "ferc.std"       JSON list
 *   "ferc.training"  a JSON object describing how the model was trained (free form; "{}" if none)
 */
#define MODELS_MAX_CHANNELS 4

typedef struct models_meta {
    char arch[32];
    int num_classes;
    char **class_names;          /* num_classes strings, or NULL (labels are then "0", "1"...) */
    int img_size;                /* square input side the model was trained at */
    int channels;                /* entries of mean/std (3 for RGB) */
    float mean[MODELS_MAX_CHANNELS], std[MODELS_MAX_CHANNELS];
    char *training_json;         /* a JSON object's text, or NULL */
} models_meta;

/* Fills defaults: ImageNet normalization, img_size 224, 3 channels, no names, no training. */
void models_meta_init(models_meta *m, const char *arch, int num_classes);
/* Sets class_names to copies of names[0..n-1] (and num_classes = n). */
int models_meta_set_classes(models_meta *m, const char *const *names, int n);
void models_meta_free(models_meta *m);

/* Writes every parameter and buffer of g, by name, with meta's metadata, atomically.
 * storage: ST_F32, ST_F16 or ST_BF16 for the float tensors. */
int models_save(const char *path, const nn_graph *g, const models_meta *meta, st_dtype storage);
/* Reads a model file: rebuilds the architecture named in its metadata (no initialization) and
 * fills every tensor by name. Missing keys, unexpected keys and shape mismatches are listed by
 * name in the error. On success the caller owns *g and *meta (models_meta_free). */
int models_load(const char *path, nn_graph **g, models_meta *meta);
/* Reads only the metadata of a model file's header into *meta. */
int models_read_meta(const st_file *f, models_meta *meta, const char *name_for_errors);
/* Copies every tensor of f into g by name (converting F16/BF16/F64 to float32), checking
 * that the key sets and the shapes agree; `prefix` (may be NULL) is stripped from f's names
 * first. Used by models_load and by importers. */
int models_fill(nn_graph *g, const st_file *f, const char *prefix, const char *name_for_errors);

#endif
