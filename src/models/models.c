/* The model zoo: torchvision 0.14's ResNet and DenseNet as nn graphs, built in module
 * registration order so that the parameter table is in state_dict order, and torchvision's
 * initialization. See models.h for the contract. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "models/models.h"

typedef struct arch_spec {
    const char *name;
    models_family family;
    bool bottleneck;        /* ResNet: Bottleneck (expansion 4) or BasicBlock */
    int blocks[4];          /* ResNet: blocks per layer; DenseNet: layers per dense block */
    int growth, init_features; /* DenseNet only */
} arch_spec;

static const arch_spec specs[] = {
    {"resnet18", MODELS_RESNET, false, {2, 2, 2, 2}, 0, 0},
    {"resnet34", MODELS_RESNET, false, {3, 4, 6, 3}, 0, 0},
    {"resnet50", MODELS_RESNET, true, {3, 4, 6, 3}, 0, 0},
    {"resnet101", MODELS_RESNET, true, {3, 4, 23, 3}, 0, 0},
    {"resnet152", MODELS_RESNET, true, {3, 8, 36, 3}, 0, 0},
    {"densenet121", MODELS_DENSENET, false, {6, 12, 24, 16}, 32, 64},
    {"densenet161", MODELS_DENSENET, false, {6, 12, 36, 24}, 48, 96},
    {"densenet169", MODELS_DENSENET, false, {6, 12, 32, 32}, 32, 64},
    {"densenet201", MODELS_DENSENET, false, {6, 12, 48, 32}, 32, 64},
};
#define NSPECS ((int)(sizeof specs / sizeof specs[0]))

static const char *const arch_names[] = {
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "densenet121", "densenet161", "densenet169", "densenet201",
};
_Static_assert(sizeof arch_names / sizeof arch_names[0] == sizeof specs / sizeof specs[0],
               "arch_names must list every spec");

static const char *const resnet_stages[] = {"conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"};
static const char *const densenet_stages[] = {
    "features.conv0", "features.norm0",
    "features.denseblock1", "features.transition1", "features.denseblock2", "features.transition2",
    "features.denseblock3", "features.transition3", "features.denseblock4",
    "features.norm5", "classifier",
};

enum { DENSENET_BN_SIZE = 4 };

const char *const *models_arch_names(int *count)
{
    if (count) *count = NSPECS;
    return arch_names;
}

static const arch_spec *find_spec(const char *arch)
{
    if (!arch) return NULL;
    for (int i = 0; i < NSPECS; i++)
        if (!strcmp(specs[i].name, arch)) return &specs[i];
    return NULL;
}

static int unknown_arch(const char *arch)
{
    char list[256] = "";
    for (int i = 0; i < NSPECS; i++) {
        strncat(list, specs[i].name, sizeof list - strlen(list) - 1);
        if (i + 1 < NSPECS) strncat(list, ", ", sizeof list - strlen(list) - 1);
    }
    return ferc_set_error(FERC_ERR_INVALID, "unknown architecture '%s' (known: %s)", arch ? arch : "(null)", list);
}

bool models_arch_known(const char *arch) { return find_spec(arch) != NULL; }

int models_arch_family(const char *arch, models_family *family)
{
    const arch_spec *s = find_spec(arch);
    if (!s) return unknown_arch(arch);
    *family = s->family;
    return FERC_OK;
}

const char *models_head_name(const char *arch)
{
    const arch_spec *s = find_spec(arch);
    if (!s) return NULL;
    return s->family == MODELS_RESNET ? "fc" : "classifier";
}

const char *const *models_stage_names(const char *arch, int *count)
{
    const arch_spec *s = find_spec(arch);
    if (!s) return NULL;
    if (s->family == MODELS_RESNET) {
        if (count) *count = (int)(sizeof resnet_stages / sizeof resnet_stages[0]);
        return resnet_stages;
    }
    if (count) *count = (int)(sizeof densenet_stages / sizeof densenet_stages[0]);
    return densenet_stages;
}

/* Gives a parameterless node (relu, pool) torchvision's module name where that name is unique,
 * so layer tables and shape errors say "features.transition3.pool", not "avgpool2d#310". */
static int named(nn_graph *g, int id, const char *name)
{
    if (id >= 0) snprintf(g->nodes[id].name, sizeof g->nodes[id].name, "%s", name);
    return id;
}

/* ---- ResNet -------------------------------------------------------------------------------- */

/* One BasicBlock or Bottleneck named "layerL.B"; modules in torchvision's registration order
 * (conv1, bn1, conv2, bn2[, conv3, bn3], downsample), which is also the forward order. */
static int resnet_block(nn_graph *g, int x, int layer, int block, int inplanes, int planes, int stride,
                        bool bottleneck)
{
    char p[64], n[96];
    snprintf(p, sizeof p, "layer%d.%d", layer, block);
    int expansion = bottleneck ? 4 : 1;
    int out;
    if (bottleneck) {
        snprintf(n, sizeof n, "%s.conv1", p);
        out = nn_conv2d(g, n, x, planes, 1, 1, 0, false);
        snprintf(n, sizeof n, "%s.bn1", p);
        out = nn_relu(g, nn_batchnorm2d(g, n, out));
        snprintf(n, sizeof n, "%s.conv2", p);
        out = nn_conv2d(g, n, out, planes, 3, stride, 1, false);
        snprintf(n, sizeof n, "%s.bn2", p);
        out = nn_relu(g, nn_batchnorm2d(g, n, out));
        snprintf(n, sizeof n, "%s.conv3", p);
        out = nn_conv2d(g, n, out, planes * 4, 1, 1, 0, false);
        snprintf(n, sizeof n, "%s.bn3", p);
        out = nn_batchnorm2d(g, n, out);
    } else {
        snprintf(n, sizeof n, "%s.conv1", p);
        out = nn_conv2d(g, n, x, planes, 3, stride, 1, false);
        snprintf(n, sizeof n, "%s.bn1", p);
        out = nn_relu(g, nn_batchnorm2d(g, n, out));
        snprintf(n, sizeof n, "%s.conv2", p);
        out = nn_conv2d(g, n, out, planes, 3, 1, 1, false);
        snprintf(n, sizeof n, "%s.bn2", p);
        out = nn_batchnorm2d(g, n, out);
    }
    int identity = x;
    if (stride != 1 || inplanes != planes * expansion) {
        snprintf(n, sizeof n, "%s.downsample.0", p);
        identity = nn_conv2d(g, n, x, planes * expansion, 1, stride, 0, false);
        snprintf(n, sizeof n, "%s.downsample.1", p);
        identity = nn_batchnorm2d(g, n, identity);
    }
    return nn_relu(g, nn_add(g, out, identity));
}

static void build_resnet(nn_graph *g, const arch_spec *s, int num_classes)
{
    int x = nn_input(g, 3);
    x = nn_conv2d(g, "conv1", x, 64, 7, 2, 3, false);
    x = named(g, nn_relu(g, nn_batchnorm2d(g, "bn1", x)), "relu");
    x = named(g, nn_maxpool2d(g, x, 3, 2, 1), "maxpool");
    int inplanes = 64, expansion = s->bottleneck ? 4 : 1;
    for (int l = 0; l < 4; l++) {
        int planes = 64 << l;
        for (int b = 0; b < s->blocks[l]; b++) {
            int stride = (l > 0 && b == 0) ? 2 : 1;
            x = resnet_block(g, x, l + 1, b, inplanes, planes, stride, s->bottleneck);
            inplanes = planes * expansion;
        }
    }
    x = nn_flatten(g, named(g, nn_global_avgpool(g, x), "avgpool"));
    nn_linear(g, "fc", x, num_classes);
}

/* ---- DenseNet ------------------------------------------------------------------------------ */

/* A dense block: layer j reads the concatenation [block input, out_1, ..., out_{j-1}] in that
 * order (torch.cat(prev_features, 1)); the block's output is the concatenation of all. */
static int dense_block(nn_graph *g, int x, int block, int nlayers, int growth)
{
    int feats[64 + 1];
    if (nlayers > 64) return ferc_set_error(FERC_ERR_INVALID, "densenet: at most 64 layers per dense block");
    int nfeats = 0;
    feats[nfeats++] = x;
    char n[96];
    for (int j = 1; j <= nlayers; j++) {
        /* A single tensor needs no concat node: torch.cat([x]) is x. */
        int in = nfeats == 1 ? feats[0] : nn_concat(g, feats, nfeats);
        snprintf(n, sizeof n, "features.denseblock%d.denselayer%d.norm1", block, j);
        int out = nn_batchnorm2d(g, n, in);
        snprintf(n, sizeof n, "features.denseblock%d.denselayer%d.relu1", block, j);
        out = named(g, nn_relu(g, out), n);
        snprintf(n, sizeof n, "features.denseblock%d.denselayer%d.conv1", block, j);
        out = nn_conv2d(g, n, out, DENSENET_BN_SIZE * growth, 1, 1, 0, false);
        snprintf(n, sizeof n, "features.denseblock%d.denselayer%d.norm2", block, j);
        out = nn_batchnorm2d(g, n, out);
        snprintf(n, sizeof n, "features.denseblock%d.denselayer%d.relu2", block, j);
        out = named(g, nn_relu(g, out), n);
        snprintf(n, sizeof n, "features.denseblock%d.denselayer%d.conv2", block, j);
        out = nn_conv2d(g, n, out, growth, 3, 1, 1, false);
        feats[nfeats++] = out;
    }
    return nn_concat(g, feats, nfeats);
}

static void build_densenet(nn_graph *g, const arch_spec *s, int num_classes)
{
    int x = nn_input(g, 3);
    x = nn_conv2d(g, "features.conv0", x, s->init_features, 7, 2, 3, false);
    x = named(g, nn_relu(g, nn_batchnorm2d(g, "features.norm0", x)), "features.relu0");
    x = named(g, nn_maxpool2d(g, x, 3, 2, 1), "features.pool0");
    int features = s->init_features;
    char n[96];
    for (int b = 0; b < 4; b++) {
        x = dense_block(g, x, b + 1, s->blocks[b], s->growth);
        features += s->blocks[b] * s->growth;
        if (b < 3) {
            snprintf(n, sizeof n, "features.transition%d.norm", b + 1);
            x = nn_batchnorm2d(g, n, x);
            snprintf(n, sizeof n, "features.transition%d.relu", b + 1);
            x = named(g, nn_relu(g, x), n);
            snprintf(n, sizeof n, "features.transition%d.conv", b + 1);
            x = nn_conv2d(g, n, x, features / 2, 1, 1, 0, false);
            snprintf(n, sizeof n, "features.transition%d.pool", b + 1);
            x = named(g, nn_avgpool2d(g, x, 2, 2, 0), n);
            features /= 2;
        }
    }
    /* features.norm5 is the last module of `features`; DenseNet.forward applies relu, the
     * adaptive average pool and flatten functionally. */
    x = nn_relu(g, nn_batchnorm2d(g, "features.norm5", x));
    x = nn_flatten(g, nn_global_avgpool(g, x));
    nn_linear(g, "classifier", x, num_classes);
}

int models_create(nn_graph **out, const char *arch, int num_classes)
{
    *out = NULL;
    const arch_spec *s = find_spec(arch);
    if (!s) return unknown_arch(arch);
    if (num_classes <= 0) return ferc_set_error(FERC_ERR_INVALID, "%s: the number of classes must be positive, not %d", arch, num_classes);
    nn_graph *g = nn_graph_create();
    if (!g) return FERC_ERR_NOMEM;
    if (s->family == MODELS_RESNET)
        build_resnet(g, s, num_classes);
    else
        build_densenet(g, s, num_classes);
    int rc = nn_graph_finalize(g);   /* also reports any builder error (they are sticky) */
    if (rc) {
        nn_graph_destroy(g);
        return ferc_wrap_error(rc, "building %s", arch);
    }
    *out = g;
    return FERC_OK;
}

/* ---- initialization ------------------------------------------------------------------------ */

static void fill_normal(float *w, size_t n, double std, rng *r)
{
    for (size_t i = 0; i < n; i++) w[i] = (float)(std * rng_normal(r));
}

static void fill_uniform(float *w, size_t n, double bound, rng *r)
{
    for (size_t i = 0; i < n; i++) w[i] = (float)((2.0 * rng_uniform(r) - 1.0) * bound);
}

/* Stream keys: (seed, parameter index, purpose), so a parameter's values do not depend on
 * which other parameters are initialized. */
enum { INIT_STREAM_CTOR = 1, INIT_STREAM_NEW_HEAD = 2 };

int models_init(nn_graph *g, const char *arch, uint64_t seed)
{
    const arch_spec *s = find_spec(arch);
    if (!s) return unknown_arch(arch);
    if (!g || !g->finalized) return ferc_set_error(FERC_ERR_INVALID, "models_init: the graph is not finalized");
    for (int i = 0; i < g->nparams; i++) {
        nn_param *p = &g->param_table[i];
        const nn_node *nd = &g->nodes[p->node];
        float *d = nn_param_data(g, p);
        rng r;
        rng_derive(&r, seed, (uint64_t)i, INIT_STREAM_CTOR);
        if (nd->op == NN_OP_CONV2D && p->kind == NN_PARAM_WEIGHT) {
            /* kaiming_normal_(nonlinearity='relu'): std = sqrt(2 / fan); fan_out = O*kh*kw for
             * ResNet, fan_in = I*kh*kw (the default mode) for DenseNet. */
            double fan = (double)(s->family == MODELS_RESNET ? p->shape[0] : p->shape[1]) * p->shape[2] * p->shape[3];
            fill_normal(d, p->count, sqrt(2.0 / fan), &r);
        } else if (nd->op == NN_OP_CONV2D) {
            memset(d, 0, p->count * sizeof *d);     /* no conv has a bias in these nets */
        } else if (nd->op == NN_OP_BATCHNORM2D) {
            if (p->kind == NN_BUFFER_NUM_BATCHES) {
                g->batches_tracked[p->offset] = 0;
            } else {
                float v = (p->kind == NN_PARAM_WEIGHT || p->kind == NN_BUFFER_RUNNING_VAR) ? 1.0f : 0.0f;
                for (size_t j = 0; j < p->count; j++) d[j] = v;
            }
        } else if (nd->op == NN_OP_LINEAR) {
            /* nn.Linear.reset_parameters: kaiming_uniform_(a=sqrt(5)) gives U(+-1/sqrt(fan_in))
             * for the weight, and the bias is U(+-1/sqrt(fan_in)) too; DenseNet's constructor
             * then zeroes the bias. */
            const nn_param *w = p->kind == NN_PARAM_BIAS ? &g->param_table[i - 1] : p;
            double bound = 1.0 / sqrt((double)w->shape[1]);
            if (p->kind == NN_PARAM_BIAS && s->family == MODELS_DENSENET)
                memset(d, 0, p->count * sizeof *d);
            else
                fill_uniform(d, p->count, bound, &r);
        }
    }
    return FERC_OK;
}

int models_build(nn_graph **out, const char *arch, int num_classes, uint64_t seed)
{
    int rc = models_create(out, arch, num_classes);
    if (rc) return rc;
    rc = models_init(*out, arch, seed);
    if (rc) {
        nn_graph_destroy(*out);
        *out = NULL;
    }
    return rc;
}

int models_reinit_head(nn_graph *g, const char *arch, uint64_t seed)
{
    const char *head = models_head_name(arch);
    if (!head) return unknown_arch(arch);
    char wname[64], bname[64];
    snprintf(wname, sizeof wname, "%s.weight", head);
    snprintf(bname, sizeof bname, "%s.bias", head);
    int wi = nn_find_param(g, wname), bi = nn_find_param(g, bname);
    if (wi < 0 || bi < 0 || g->param_table[wi].ndim != 2 || !g->finalized)
        return ferc_set_error(FERC_ERR_INVALID, "%s: the graph has no finalized linear head '%s'", arch, head);
    double bound = 1.0 / sqrt((double)g->param_table[wi].shape[1]);
    rng r;
    rng_derive(&r, seed, (uint64_t)wi, INIT_STREAM_NEW_HEAD);
    fill_uniform(nn_param_data(g, &g->param_table[wi]), g->param_table[wi].count, bound, &r);
    rng_derive(&r, seed, (uint64_t)bi, INIT_STREAM_NEW_HEAD);
    fill_uniform(nn_param_data(g, &g->param_table[bi]), g->param_table[bi].count, bound, &r);
    return FERC_OK;
}

/* ---- freezing ------------------------------------------------------------------------------ */

static bool has_prefix(const char *name, const char *prefix)
{
    size_t n = strlen(prefix);
    return !strncmp(name, prefix, n) && (name[n] == '.' || name[n] == '\0');
}

int models_freeze_before(nn_graph *g, const char *arch, const char *stage)
{
    int nstages;
    const char *const *stages = models_stage_names(arch, &nstages);
    if (!stages) return unknown_arch(arch);
    if (!stage || !*stage) {
        nn_freeze_prefix(g, "", false);
        return FERC_OK;
    }
    const char *full = NULL;
    for (int i = 0; i < nstages && !full; i++) {
        const char *st = stages[i];
        if (!strcmp(st, stage) || (!strncmp(st, "features.", 9) && !strcmp(st + 9, stage))) full = st;
    }
    if (!full) {
        char list[512] = "";
        for (int i = 0; i < nstages; i++) {
            strncat(list, stages[i], sizeof list - strlen(list) - 1);
            if (i + 1 < nstages) strncat(list, ", ", sizeof list - strlen(list) - 1);
        }
        return ferc_set_error(FERC_ERR_INVALID, "%s has no stage '%s' (stages: %s)", arch, stage, list);
    }
    /* The parameter table is in forward (module) order, so "before the stage" is a prefix. */
    bool frozen = true;
    for (int i = 0; i < g->nparams; i++) {
        nn_param *p = &g->param_table[i];
        if (frozen && has_prefix(p->name, full)) frozen = false;
        if (nn_param_trainable_kind(p->kind)) p->frozen = frozen;
    }
    return FERC_OK;
}
