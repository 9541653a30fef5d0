/* face/cascade_impl: the in-memory layout of a loaded cascade, shared by the XML reader
 * (cascade.c) and the detector (detect.c). Not part of the public API.
 *
 * The layout mirrors OpenCV's CascadeClassifierImpl::Data: stages index contiguous runs of
 * trees, trees index contiguous runs of nodes and leaves, a node's left/right child is a node
 * index (> 0) or minus a leaf index (<= 0) within its tree. Everything is validated on load, so
 * the detector indexes without checks. */
#ifndef FERC_FACE_CASCADE_IMPL_H
#define FERC_FACE_CASCADE_IMPL_H

#include <stddef.h>
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

/* ---- the detector's per-call view of a cascade (detect.c, detect_avx512.c) ---------------- */


typedef struct haar_opt {
    int ofs[3][4];
    float weight[3];
    int tilted;
    const uint32_t *base; /* the sum or the tilted integral */
    int dofs[3][4];       /* ofs in the column-deinterleaved layout (see detector.deint) */
} haar_opt;

typedef struct stump {
    int feature;
    float threshold;
    float leaf[2];         /* [0] when the feature is below the threshold (or in the subset) */
    const int32_t *subset; /* LBP */
    haar_opt haar;         /* a copy of the feature, so that the hot loop reads one array */
} stump;

typedef struct detector {
    const face_cascade *fc;
    size_t st;             /* integral row stride, the same for every scale */
    haar_opt *haar;        /* per feature */
    int (*lbp)[16];        /* per feature */
    stump *stumps;         /* per tree, when every tree is a stump */
    int nofs[4];           /* variance-normalization rectangle */
    double norm_area;
    const uint32_t *sum, *sq, *tilt;
    /* For the 2-pixel step the vector scan rewrites each integral row as its even columns
     * followed by its odd ones (the first (st + 1) / 2 elements, then the rest): the windows
     * x0, x0 + 2, ... then read consecutive elements. A corner (cx, cy) of a window at even x on
     * row y is then at y * st + x / 2 + dofs, dofs = cy * st + (cx & 1) * ((st + 1) / 2) + cx / 2.
     * deint_ok: every corner has 0 <= cx < st, so the layout applies. */
    int dnofs[4];
    int deint_ok;
} detector;

/* AVX-512 scan of one row of windows of a Haar stump cascade (detect_avx512.c): the windows at
 * x = 0, step, 2 step, ... < ww whose top-left integral index is row_pos + x, with OpenCV's
 * skip after a first-stage rejection. Writes the x of every window that passes all stages to
 * hit_x in increasing order and returns their number. With step 2 the integrals must be in
 * the deinterleaved layout (d->deint_ok required) and row_pos is still y * st. Same decisions as the scalar run_window
 * (same float / double operations in the same order per window). Only call it when
 * face_detect_avx512_usable(d) says so; the integral buffers need FACE_DETECT_PAD readable
 * (initialized) elements past their end. */
enum { FACE_DETECT_PAD = 64 };
/* The CPU has AVX-512F/VL (and FERC_DETECT_NOSIMD is not set). */
int face_cpu_avx512(void);
/* detect.c's integral_sum_sq (sum and, when sq is not NULL, squared sum), same words. */
void face_integral_avx512(const uint8_t *img, int w, int h, size_t istride, uint32_t *sum, uint32_t *sq, size_t st);
/* Resize helpers, exact equivalents of detect.c's scalar loops: face_lin_row_avx512 computes
 * out[d] = coef[2d] * s[ofs[d]] + coef[2d + 1] * s[ofs[d] + 1] from d on in groups of 16 while
 * they fit (source span under 31, no read past the row of sw bytes) and returns where it
 * stopped; face_lin_vpass_avx512 is the vertical blend of two such rows into 8-bit pixels. */
int face_lin_row_avx512(const uint8_t *s, int sw, const int *ofs, const uint16_t *coef, int d, int end,
                        uint16_t *out);
void face_lin_vpass_avx512(const uint16_t *r0, const uint16_t *r1, uint32_t c0, uint32_t c1, uint8_t *dst, int dw);
int face_detect_avx512_usable(const detector *d);
int face_scan_row_avx512(const detector *d, size_t row_pos, int ww, int step, int *hit_x, void *scratch);
/* Bytes of the scratch face_scan_row_avx512 needs for rows of up to w windows. */
size_t face_scan_scratch_bytes(int w);
/* Rewrites rows [0, rows) of an integral (row stride st) in the deinterleaved layout;
 * tmp holds st elements. */
void face_deinterleave_avx512(uint32_t *integral, size_t st, int rows, uint32_t *tmp);

#endif
