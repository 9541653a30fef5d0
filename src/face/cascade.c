/* face/cascade: reads OpenCV cascade XML files (new stage format and the old haarcascade
 * format) into the layout of cascade_impl.h.
 *
 * Contract: never prints (libxml2's own error output is switched off per parse), never
 * aborts; a missing file is FERC_ERR_IO, anything structurally wrong is FERC_ERR_FORMAT with
 * the file name and what was wrong. Numbers are read as double and narrowed to float where
 * OpenCV narrows them, so thresholds compare bit for bit as in OpenCV. Indices and rectangles
 * are checked so that the detector can evaluate any loaded cascade without bounds checks. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "core/core.h"
#include "face/cascade_impl.h"

/* A growable array of T, enough for the few lists built while parsing. */
#define VEC_PUSH(arr, n, cap, val)                                                     \
    do {                                                                               \
        if ((n) == (cap)) {                                                            \
            size_t nc_ = (cap) ? (size_t)(cap) * 2 : 64;                               \
            void *p_ = realloc((arr), nc_ * sizeof(*(arr)));                           \
            if (!p_) return ferc_set_error(FERC_ERR_NOMEM, "out of memory reading cascade"); \
            (arr) = p_;                                                                \
            (cap) = (int)nc_;                                                          \
        }                                                                              \
        (arr)[(n)++] = (val);                                                          \
    } while (0)

typedef struct parse_ctx {
    const char *path;
    face_cascade *fc;
    int cap_stages, cap_trees, cap_nodes, cap_leaves, cap_subsets, cap_features;
    int nsubsets;
    double *nums; /* scratch for number lists */
    int nums_cap;
} parse_ctx;

static int bad(const parse_ctx *c, const char *what)
{
    return ferc_set_error(FERC_ERR_FORMAT, "%s: not a valid OpenCV cascade: %s", c->path, what);
}

static xmlNode *first_elem(xmlNode *n)
{
    for (; n; n = n->next)
        if (n->type == XML_ELEMENT_NODE) return n;
    return NULL;
}

static xmlNode *next_elem(xmlNode *n) { return n ? first_elem(n->next) : NULL; }

static xmlNode *child(xmlNode *parent, const char *name)
{
    if (!parent) return NULL;
    for (xmlNode *n = first_elem(parent->children); n; n = next_elem(n))
        if (!strcmp((const char *)n->name, name)) return n;
    return NULL;
}

/* Parses all whitespace-separated numbers of an element's text into c->nums. */
static int numbers(parse_ctx *c, xmlNode *n, int *count, const char *what)
{
    *count = 0;
    if (!n) return ferc_set_error(FERC_ERR_FORMAT, "%s: not a valid OpenCV cascade: %s is missing", c->path, what);
    xmlChar *txt = xmlNodeGetContent(n);
    if (!txt) return bad(c, what);
    const char *s = (const char *)txt;
    int k = 0;
    for (;;) {
        while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') s++;
        if (!*s) break;
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (end == s || errno == ERANGE || !isfinite(v)) {
            xmlFree(txt);
            return ferc_set_error(FERC_ERR_FORMAT, "%s: not a valid OpenCV cascade: a malformed number in %s", c->path,
                                  what);
        }
        if (k == c->nums_cap) {
            int nc = c->nums_cap ? c->nums_cap * 2 : 64;
            double *p = realloc(c->nums, (size_t)nc * sizeof *p);
            if (!p) {
                xmlFree(txt);
                return ferc_set_error(FERC_ERR_NOMEM, "out of memory reading cascade");
            }
            c->nums = p;
            c->nums_cap = nc;
        }
        c->nums[k++] = v;
        s = end;
    }
    xmlFree(txt);
    *count = k;
    return FERC_OK;
}

static int int_value(parse_ctx *c, xmlNode *n, int *out, const char *what)
{
    int k, rc = numbers(c, n, &k, what);
    if (rc) return rc;
    if (k != 1 || c->nums[0] != floor(c->nums[0]) || fabs(c->nums[0]) > 1e9) return bad(c, what);
    *out = (int)c->nums[0];
    return FERC_OK;
}

static int is_int(double v) { return v == floor(v) && fabs(v) <= 2147483647.0; }

static int text_equals(xmlNode *n, const char *want)
{
    if (!n) return 0;
    xmlChar *t = xmlNodeGetContent(n);
    if (!t) return 0;
    const char *s = (const char *)t;
    while (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r') s++;
    size_t len = strlen(want);
    int ok = !strncmp(s, want, len);
    if (ok) {
        s += len;
        while (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r') s++;
        ok = *s == 0;
    }
    xmlFree(t);
    return ok;
}

/* ---- new format ------------------------------------------------------------------------ */

static int read_haar_feature(parse_ctx *c, xmlNode *fnode, cascade_feature *f)
{
    memset(f, 0, sizeof *f);
    xmlNode *rects = child(fnode, "rects");
    if (!rects) return bad(c, "a Haar feature without <rects>");
    for (xmlNode *r = first_elem(rects->children); r; r = next_elem(r)) {
        if (f->nrects == 3) return bad(c, "a Haar feature with more than 3 rectangles");
        int k, rc = numbers(c, r, &k, "a Haar rectangle");
        if (rc) return rc;
        if (k != 5) return bad(c, "a Haar rectangle without 5 numbers (x y w h weight)");
        for (int i = 0; i < 4; i++)
            if (!is_int(c->nums[i])) return bad(c, "a Haar rectangle with non-integer coordinates");
        cascade_rect *cr = &f->r[f->nrects++];
        cr->x = (int)c->nums[0];
        cr->y = (int)c->nums[1];
        cr->w = (int)c->nums[2];
        cr->h = (int)c->nums[3];
        cr->weight = (float)c->nums[4];
    }
    if (f->nrects < 1) return bad(c, "a Haar feature without rectangles");
    xmlNode *t = child(fnode, "tilted");
    if (t) {
        int tv, rc = int_value(c, t, &tv, "<tilted>");
        if (rc) return rc;
        f->tilted = tv != 0;
    }
    return FERC_OK;
}

static int read_lbp_feature(parse_ctx *c, xmlNode *fnode, cascade_feature *f)
{
    memset(f, 0, sizeof *f);
    int k, rc = numbers(c, child(fnode, "rect"), &k, "an LBP feature <rect>");
    if (rc) return rc;
    if (k != 4) return bad(c, "an LBP <rect> without 4 numbers");
    for (int i = 0; i < 4; i++)
        if (!is_int(c->nums[i])) return bad(c, "an LBP rectangle with non-integer coordinates");
    f->nrects = 1;
    f->r[0] = (cascade_rect){(int)c->nums[0], (int)c->nums[1], (int)c->nums[2], (int)c->nums[3], 0.f};
    return FERC_OK;
}

static int read_new_format(parse_ctx *c, xmlNode *root)
{
    face_cascade *fc = c->fc;
    if (!text_equals(child(root, "stageType"), "BOOST")) return bad(c, "<stageType> is not BOOST");
    xmlNode *ft = child(root, "featureType");
    if (text_equals(ft, "HAAR")) fc->kind = FACE_FEATURE_HAAR;
    else if (text_equals(ft, "LBP")) fc->kind = FACE_FEATURE_LBP;
    else if (text_equals(ft, "HOG"))
        return ferc_set_error(FERC_ERR_UNSUPPORTED, "%s: HOG cascades are not supported (nor by OpenCV 3+)",
                              c->path);
    else return bad(c, "<featureType> is not HAAR or LBP");

    int rc;
    if ((rc = int_value(c, child(root, "width"), &fc->win_w, "<width>"))) return rc;
    if ((rc = int_value(c, child(root, "height"), &fc->win_h, "<height>"))) return rc;
    if (fc->win_w < 3 || fc->win_h < 3 || fc->win_w > 4096 || fc->win_h > 4096)
        return bad(c, "window size out of range");

    xmlNode *fp = child(root, "featureParams");
    if (!fp) return bad(c, "no <featureParams>");
    fc->ncategories = 0;
    xmlNode *mc = child(fp, "maxCatCount");
    if (mc && (rc = int_value(c, mc, &fc->ncategories, "<maxCatCount>"))) return rc;
    if (fc->ncategories < 0 || fc->ncategories > 1 << 16) return bad(c, "<maxCatCount> out of range");
    if (fc->kind == FACE_FEATURE_LBP && fc->ncategories != 256)
        return bad(c, "an LBP cascade needs maxCatCount 256");
    fc->subset_size = (fc->ncategories + 31) / 32;
    int node_step = 3 + (fc->ncategories > 0 ? fc->subset_size : 1);

    xmlNode *stages = child(root, "stages");
    if (!stages || !first_elem(stages->children)) return bad(c, "no <stages>");
    /* The declared counts, where present, must match what follows: a file that says 25
     * stages and holds 3 is damaged. */
    int declared_stages = -1;
    xmlNode *sn_count = child(root, "stageNum");
    if (sn_count && (rc = int_value(c, sn_count, &declared_stages, "<stageNum>"))) return rc;
    for (xmlNode *sn = first_elem(stages->children); sn; sn = next_elem(sn)) {
        cascade_stage st = {0};
        int k, declared_weak = -1;
        xmlNode *wc = child(sn, "maxWeakCount");
        if (wc && (rc = int_value(c, wc, &declared_weak, "<maxWeakCount>"))) return rc;
        if ((rc = numbers(c, child(sn, "stageThreshold"), &k, "<stageThreshold>"))) return rc;
        if (k != 1) return bad(c, "<stageThreshold> is not one number");
        /* OpenCV lowers every stage threshold by 1e-5 in float, to absorb rounding. */
        st.threshold = (float)c->nums[0] - 1e-5f;
        xmlNode *weaks = child(sn, "weakClassifiers");
        if (!weaks || !first_elem(weaks->children)) return bad(c, "a stage without <weakClassifiers>");
        st.first_tree = fc->ntrees;
        for (xmlNode *wn = first_elem(weaks->children); wn; wn = next_elem(wn)) {
            cascade_tree tr = {fc->nnodes, 0, fc->nleaves};
            if ((rc = numbers(c, child(wn, "internalNodes"), &k, "<internalNodes>"))) return rc;
            if (k == 0 || k % node_step) return bad(c, "<internalNodes> length does not fit the node size");
            tr.node_count = k / node_step;
            for (int i = 0; i < k; i++)
                if (!is_int(c->nums[i]) && (fc->ncategories > 0 || i % node_step != 3))
                    return bad(c, "a non-integer index in <internalNodes>");
            for (int ni = 0; ni < tr.node_count; ni++) {
                const double *v = c->nums + (size_t)ni * node_step;
                cascade_node nd = {(int)v[0], (int)v[1], (int)v[2], 0.f};
                if (fc->ncategories > 0) {
                    for (int j = 0; j < fc->subset_size; j++) {
                        /* subsets are 32-bit masks written as signed ints */
                        double w = v[3 + j];
                        if (w < -2147483648.0 || w > 4294967295.0) return bad(c, "an LBP subset out of range");
                        int32_t word = (int32_t)(uint32_t)(int64_t)w;
                        VEC_PUSH(fc->subsets, c->nsubsets, c->cap_subsets, word);
                    }
                } else {
                    nd.threshold = (float)v[3];
                }
                VEC_PUSH(fc->nodes, fc->nnodes, c->cap_nodes, nd);
            }
            if ((rc = numbers(c, child(wn, "leafValues"), &k, "<leafValues>"))) return rc;
            if (k != tr.node_count + 1) return bad(c, "<leafValues> count is not nodes + 1");
            for (int i = 0; i < k; i++) VEC_PUSH(fc->leaves, fc->nleaves, c->cap_leaves, (float)c->nums[i]);
            VEC_PUSH(fc->trees, fc->ntrees, c->cap_trees, tr);
            st.ntrees++;
        }
        if (declared_weak >= 0 && declared_weak != st.ntrees)
            return ferc_set_error(FERC_ERR_FORMAT, "%s: stage %d declares %d weak classifiers (<maxWeakCount>) but holds %d",
                                  c->path, fc->nstages, declared_weak, st.ntrees);
        VEC_PUSH(fc->stages, fc->nstages, c->cap_stages, st);
    }
    if (declared_stages >= 0 && declared_stages != fc->nstages)
        return ferc_set_error(FERC_ERR_FORMAT, "%s: <stageNum> declares %d stages but the file holds %d", c->path,
                              declared_stages, fc->nstages);

    xmlNode *features = child(root, "features");
    if (!features || !first_elem(features->children)) return bad(c, "no <features>");
    for (xmlNode *fn = first_elem(features->children); fn; fn = next_elem(fn)) {
        cascade_feature f;
        rc = fc->kind == FACE_FEATURE_HAAR ? read_haar_feature(c, fn, &f) : read_lbp_feature(c, fn, &f);
        if (rc) return rc;
        VEC_PUSH(fc->features, fc->nfeatures, c->cap_features, f);
    }
    return FERC_OK;
}

/* ---- old format ------------------------------------------------------------------------
 * <size>W H</size><stages><_><trees><_ tree><_ node><feature>..</feature><threshold/>
 * <left_val|left_node/><right_val|right_node/></_>..</_>..</trees><stage_threshold/>..
 * Converted as OpenCV's haar_cvt::convert does: one feature per node, in order; a *_val
 * becomes the next leaf of the tree, a *_node keeps its node index. */
static int read_old_format(parse_ctx *c, xmlNode *root)
{
    face_cascade *fc = c->fc;
    int k, rc;
    fc->kind = FACE_FEATURE_HAAR;
    fc->old_format = 1;
    if ((rc = numbers(c, child(root, "size"), &k, "<size>"))) return rc;
    if (k != 2 || !is_int(c->nums[0]) || !is_int(c->nums[1])) return bad(c, "<size> is not two integers");
    fc->win_w = (int)c->nums[0];
    fc->win_h = (int)c->nums[1];
    if (fc->win_w < 3 || fc->win_h < 3 || fc->win_w > 4096 || fc->win_h > 4096)
        return bad(c, "window size out of range");
    xmlNode *stages = child(root, "stages");
    if (!stages || !first_elem(stages->children)) return bad(c, "no <stages>");
    for (xmlNode *sn = first_elem(stages->children); sn; sn = next_elem(sn)) {
        cascade_stage st = {0};
        if ((rc = numbers(c, child(sn, "stage_threshold"), &k, "<stage_threshold>"))) return rc;
        if (k != 1) return bad(c, "<stage_threshold> is not one number");
        st.threshold = (float)c->nums[0] - 1e-5f;
        xmlNode *trees = child(sn, "trees");
        if (!trees || !first_elem(trees->children)) return bad(c, "a stage without <trees>");
        st.first_tree = fc->ntrees;
        for (xmlNode *tn = first_elem(trees->children); tn; tn = next_elem(tn)) {
            cascade_tree tr = {fc->nnodes, 0, fc->nleaves};
            int tree_leaves = 0;
            for (xmlNode *nn = first_elem(tn->children); nn; nn = next_elem(nn)) {
                cascade_feature f;
                xmlNode *fnode = child(nn, "feature");
                if (!fnode) return bad(c, "a tree node without <feature>");
                if ((rc = read_haar_feature(c, fnode, &f))) return rc;
                cascade_node nd = {0, 0, fc->nfeatures, 0.f};
                VEC_PUSH(fc->features, fc->nfeatures, c->cap_features, f);
                if ((rc = numbers(c, child(nn, "threshold"), &k, "<threshold>"))) return rc;
                if (k != 1) return bad(c, "<threshold> is not one number");
                nd.threshold = (float)c->nums[0];
                static const char *const names[2][2] = {{"left_val", "left_node"}, {"right_val", "right_node"}};
                for (int side = 0; side < 2; side++) {
                    int idx;
                    xmlNode *vn = child(nn, names[side][0]);
                    if (vn) {
                        if ((rc = numbers(c, vn, &k, names[side][0]))) return rc;
                        if (k != 1) return bad(c, "a leaf value is not one number");
                        idx = -tree_leaves++;
                        VEC_PUSH(fc->leaves, fc->nleaves, c->cap_leaves, (float)c->nums[0]);
                    } else if ((rc = int_value(c, child(nn, names[side][1]), &idx, names[side][1]))) {
                        return rc;
                    }
                    if (side == 0) nd.left = idx;
                    else nd.right = idx;
                }
                VEC_PUSH(fc->nodes, fc->nnodes, c->cap_nodes, nd);
                tr.node_count++;
            }
            if (tr.node_count == 0) return bad(c, "an empty tree");
            if (tree_leaves != tr.node_count + 1) return bad(c, "a tree whose leaves are not nodes + 1");
            VEC_PUSH(fc->trees, fc->ntrees, c->cap_trees, tr);
            st.ntrees++;
        }
        VEC_PUSH(fc->stages, fc->nstages, c->cap_stages, st);
    }
    return FERC_OK;
}

/* ---- validation ----------------------------------------------------------------------- */

static int rect_inside(const face_cascade *fc, const cascade_feature *f, const cascade_rect *r)
{
    if (r->w < 0 || r->h < 0) return 0;
    if (fc->kind == FACE_FEATURE_LBP)
        return r->x >= 0 && r->y >= 0 && r->w > 0 && r->h > 0 && (long)r->x + 3L * r->w <= fc->win_w &&
               (long)r->y + 3L * r->h <= fc->win_h;
    if (f->tilted) /* corners (x,y) (x-h,y+h) (x+w,y+w) (x+w-h,y+w+h) of the tilted integral */
        return r->x - r->h >= 0 && r->y >= 0 && (long)r->x + r->w <= fc->win_w &&
               (long)r->y + r->w + r->h <= fc->win_h;
    return r->x >= 0 && r->y >= 0 && (long)r->x + r->w <= fc->win_w && (long)r->y + r->h <= fc->win_h;
}

static int validate(parse_ctx *c)
{
    face_cascade *fc = c->fc;
    fc->max_nodes_per_tree = 0;
    for (int t = 0; t < fc->ntrees; t++) {
        const cascade_tree *tr = &fc->trees[t];
        if (tr->node_count > fc->max_nodes_per_tree) fc->max_nodes_per_tree = tr->node_count;
        for (int i = 0; i < tr->node_count; i++) {
            const cascade_node *nd = &fc->nodes[tr->first_node + i];
            if (nd->feature < 0 || nd->feature >= fc->nfeatures) return bad(c, "a node refers to a missing feature");
            int kids[2] = {nd->left, nd->right};
            for (int s = 0; s < 2; s++) {
                /* children must lie further down so that evaluation always ends */
                if (kids[s] > 0 ? (kids[s] <= i || kids[s] >= tr->node_count) : -kids[s] > tr->node_count)
                    return bad(c, "a tree node with an out-of-range child");
            }
        }
    }
    if (fc->max_nodes_per_tree == 1)
        for (int t = 0; t < fc->ntrees; t++) {
            const cascade_node *nd = &fc->nodes[fc->trees[t].first_node];
            if (nd->left != 0 || nd->right != -1) return bad(c, "a stump whose leaves are not (0, -1)");
        }
    for (int i = 0; i < fc->nfeatures; i++) {
        const cascade_feature *f = &fc->features[i];
        if (f->tilted) fc->has_tilted = 1;
        for (int r = 0; r < f->nrects; r++)
            if (!rect_inside(fc, f, &f->r[r])) return bad(c, "a feature rectangle outside the window");
    }
    return FERC_OK;
}

/* ---- public --------------------------------------------------------------------------- */

void face_cascade_destroy(face_cascade *fc)
{
    if (!fc) return;
    free(fc->stages);
    free(fc->trees);
    free(fc->nodes);
    free(fc->leaves);
    free(fc->subsets);
    free(fc->features);
    free(fc);
}

int face_cascade_load(face_cascade **out, const char *path)
{
    *out = NULL;
    if (!path) path = FACE_CASCADE_DEFAULT_PATH;
    uint8_t *data;
    size_t size;
    if (!file_exists(path)) return ferc_set_error(FERC_ERR_IO, "cascade file %s does not exist", path);
    if (file_read_all(path, &data, &size)) return ferc_wrap_error(FERC_ERR_IO, "reading cascade %s", path);
    if (size > (size_t)1 << 30) {
        free(data);
        return ferc_set_error(FERC_ERR_FORMAT, "%s: too large for a cascade", path);
    }
    xmlDoc *doc = xmlReadMemory((const char *)data, (int)size, path, NULL,
                                XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_HUGE);
    free(data);
    if (!doc) {
        const xmlError *e = xmlGetLastError();
        char msg[256];
        snprintf(msg, sizeof msg, "%s", e && e->message ? e->message : "empty or unreadable XML");
        size_t len = strlen(msg);
        while (len && (msg[len - 1] == '\n' || msg[len - 1] == ' ')) msg[--len] = 0;
        ferc_set_error(FERC_ERR_FORMAT, "%s: not a valid OpenCV cascade: XML error at line %d: %s", path,
                       e ? e->line : 0, msg);
        xmlResetLastError();
        return FERC_ERR_FORMAT;
    }

    parse_ctx c = {.path = path};
    c.fc = calloc(1, sizeof *c.fc);
    int rc;
    if (!c.fc) {
        rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory reading cascade");
    } else {
        xmlNode *top = xmlDocGetRootElement(doc);
        xmlNode *root = top ? first_elem(top->children) : NULL;
        if (!top || strcmp((const char *)top->name, "opencv_storage") || !root)
            rc = bad(&c, "no <opencv_storage> with a cascade inside");
        else if (child(root, "stageType"))
            rc = read_new_format(&c, root);
        else if (child(root, "size") && child(root, "stages"))
            rc = read_old_format(&c, root);
        else
            rc = bad(&c, "neither the stage format (<stageType>) nor the old haarcascade format (<size>, <stages>)");
        if (!rc) rc = validate(&c);
    }
    free(c.nums);
    xmlFreeDoc(doc);
    if (rc) {
        face_cascade_destroy(c.fc);
        return rc;
    }
    *out = c.fc;
    return FERC_OK;
}

void face_cascade_get_info(const face_cascade *fc, face_cascade_info *info)
{
    info->kind = fc->kind;
    info->window_w = fc->win_w;
    info->window_h = fc->win_h;
    info->stages = fc->nstages;
    info->trees = fc->ntrees;
    info->nodes = fc->nnodes;
    info->features = fc->nfeatures;
    info->max_nodes_per_tree = fc->max_nodes_per_tree;
    info->has_tilted = fc->has_tilted;
    info->old_format = fc->old_format;
}

void face_detect_params_default(face_detect_params *p)
{
    p->scale_factor = 1.1;
    p->min_neighbors = 3;
    p->min_w = p->min_h = 0;
    p->max_w = p->max_h = 0;
}
