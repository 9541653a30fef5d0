/* face/cascade_impl: the in-memory layout of a loaded cascade, shared by the XML reader
 * (cascade.c) and the detector (detect.c). Not part of the public API.
 *
 * The layout mirrors OpenCV's CascadeClassifierImpl::Data: stages index contiguous runs of
 * trees, trees index contiguous runs of nodes and leaves, a node's left/right child is a node
 * index (> 0) or minus a leaf index (<= 0) within its tree. Everything is validated on load, so
 * the detector indexes without checks. */
#ifndef FERC_FACE_CASCADE_IMPL_H
#define FERC_FACE_CASCADE_IMPL_H

#include <stdint.h>

#include "face/cascade.h"

typedef struct cascade_rect {
    int x, y, w, h;
    float weight;
} cascade_rect;

typedef struct cascade_feature {
    int nrects;      /* Haar: 2 or 3; LBP: 1 (the 3x3 grid's cell) */
    int tilted;
    cascade_rect r[3];
} cascade_feature;

typedef struct cascade_node {
    int left, right; /* > 0: node in the same tree; <= 0: -leaf index in the same tree */
    int feature;
    float threshold; /* Haar only */
} cascade_node;

typedef struct cascade_tree {
    int first_node, node_count, first_leaf;
} cascade_tree;

typedef struct cascade_stage {
    float threshold; /* already lowered by OpenCV's 1e-5 */
    int first_tree, ntrees;
} cascade_stage;

struct face_cascade {
    face_feature_kind kind;
    int win_w, win_h;
    int ncategories, subset_size; /* LBP: 256 and 8 */
    int nstages, ntrees, nnodes, nleaves, nfeatures;
    cascade_stage *stages;
    cascade_tree *trees;
    cascade_node *nodes;
    float *leaves;
    int32_t *subsets; /* subset_size words per node (LBP) */
    cascade_feature *features;
    int max_nodes_per_tree;
    int has_tilted;
    int old_format;
};

#endif
