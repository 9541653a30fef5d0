/* importer: turns a foreign weight file (torch .pth in either format, timm-style or ferc
 * safetensors) into a ferc model: a graph of one of the models_* architectures filled by
 * state_dict name, plus the metadata a model file carries.
 *
 * Reading and key clean-up (prefix stripping, the DenseNet key fix, the SHA-256 check of
 * torchvision-style file names) are io's td_load; this file matches the keys against the
 * graph, handles the classifier head and fills in metadata defaults.
 *
 * Key matching: every parameter and buffer of the graph must be in the file with the same
 * shape, and the file must hold nothing else; otherwise the error lists the missing keys, the
 * unexpected keys and the shape mismatches by name. One exception, as torch's BatchNorm
 * loader makes: a file without any `num_batches_tracked` (old torchvision files, timm's hub
 * files) is accepted and those counters are 0.
 *
 * Head:
 *   keep_head      the file's head is used as it is; the class count is its row count.
 *                  Class names may be given (their number must match), else "0", "1", ...
 *   otherwise      a new head for the given class names, initialized as a fresh nn.Linear
 *                  (models_reinit_head); the file's head, whatever its shape, is dropped and
 *                  a file without a head (a headless backbone) is accepted.
 * Metadata defaults: ImageNet mean/std, 3 channels, input size 224 unless img_size is given;
 * ferc.training records where the weights came from.
 *
 * Usage:
 *     importer_options o = {.arch = "resnet152", .class_names = names, .num_classes = 6};
 *     nn_graph *g; models_meta meta; importer_report rep;
 *     if (importer_import("resnet152-394f9c45.pth", &o, &g, &meta, &rep)) fail(ferc_last_error());
 *     models_save("r152.safetensors", g, &meta, ST_F32);
 */
#ifndef FERC_IMPORTER_H
#define FERC_IMPORTER_H

#include <stdbool.h>
#include <stdint.h>

#include "io/tensor_dict.h"
#include "models/models.h"

typedef struct importer_options {
    const char *arch;                /* required: a models_arch_names() entry */
    bool keep_head;
    const char *const *class_names;  /* num_classes names; NULL allowed only with keep_head */
    int num_classes;                 /* 0 with keep_head and no names */
    int img_size;                    /* 0: 224 */
    const char *strip_prefix;        /* strip exactly this prefix; NULL: 'module.'/'network.' auto */
    const char *nested_key;          /* .pth checkpoint entry to use; NULL: automatic */
    bool no_hash_check;
    uint64_t seed;                   /* for a new head */
} importer_options;

typedef struct importer_report {
    int tensors;                     /* tensors copied from the file */
    int batches_defaulted;           /* num_batches_tracked absent from the file, set to 0 */
    int file_head_outputs;           /* rows of the file's head weight, 0 if it had none */
    bool head_replaced;
} importer_report;

/* Copies the tensors of d into g by name (see the matching rules above). The parameters of
 * module `skip` (e.g. "fc"; NULL: none) are neither required nor filled, and d must not hold
 * them. *batches_defaulted (may be NULL) counts the counters left at 0. Works for any
 * finalized graph, not only the models_* architectures; nothing is written into g on error. */
int importer_fill(nn_graph *g, const tensor_dict *d, const char *skip, int *batches_defaulted,
                  const char *name_for_errors);

/* Reads `path`, builds o->arch and fills it as described above. On success the caller owns
 * *g (nn_graph_destroy) and *meta (models_meta_free); rep may be NULL. */
int importer_import(const char *path, const importer_options *o, nn_graph **g, models_meta *meta,
                    importer_report *rep);

#endif
