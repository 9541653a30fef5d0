/* data index: ImageFolder-style scanning, display names, stratified splits, manifests.
 *
 * Contract: data_index_open fills a data_index that owns all its strings (freed by
 * data_index_free). Class order is strcmp order of folder names, which is what Python's
 * sorted() gives for ASCII names and so matches torchvision's ImageFolder label ids. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "data/data.h"

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int has_image_ext(const char *name)
{
    static const char *exts[] = {".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm"};
    const char *dot = strrchr(name, '.');
    if (!dot) return 0;
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++)
        if (!strcasecmp(dot, exts[i])) return 1;
    return 0;
}

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s/%s", a, b);
    return s;
}

/* Sorted names of the entries of `dir` that are (want_dirs ? folders : files), hidden skipped. */
static int list_dir(const char *dir, int want_dirs, char ***out, size_t *n_out, size_t *n_other)
{
    *out = NULL;
    *n_out = 0;
    DIR *d = opendir(dir);
    if (!d) return ferc_set_error(FERC_ERR_IO, "cannot open folder %s: %s", dir, strerror(errno));
    char **v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    int rc = FERC_OK;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char *full = join(dir, e->d_name);
        if (!full) { rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory"); break; }
        int isdir = file_is_dir(full);
        free(full);
        if (isdir != want_dirs || (!want_dirs && !has_image_ext(e->d_name))) {
            if (n_other && !isdir) (*n_other)++;
            continue;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 256;
            char **nv = realloc(v, cap * sizeof *v);
            if (!nv) { rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory"); break; }
            v = nv;
        }
        if (!(v[n] = strdup(e->d_name))) { rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory"); break; }
        n++;
    }
    closedir(d);
    if (rc) {
        for (size_t i = 0; i < n; i++) free(v[i]);
        free(v);
        return rc;
    }
    if (n) qsort(v, n, sizeof *v, cmp_str);
    *out = v;
    *n_out = n;
    return FERC_OK;
}

static void free_strs(char **v, size_t n)
{
    if (!v) return;
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

const char *data_display_name(const char *folder)
{
    /* The Kaggle FER folders misspell Surprise; labels keep the folder name, humans see this. */
    static const char *fixes[][2] = {{"Suprise", "Surprise"}, {"suprise", "surprise"}};
    for (size_t i = 0; i < sizeof fixes / sizeof fixes[0]; i++)
        if (!strcmp(folder, fixes[i][0])) return fixes[i][1];
    return folder;
}

void data_index_free(data_index *ix)
{
    if (!ix) return;
    free(ix->root);
    free_strs(ix->class_names, (size_t)ix->n_classes);
    free_strs(ix->display_names, (size_t)ix->n_classes);
    free_strs(ix->paths, ix->n);
    free(ix->labels);
    memset(ix, 0, sizeof *ix);
}

static int apply_display_overrides(data_index *ix, const char *spec)
{
    /* "Folder=Display,Folder2=Display2" */
    const char *p = spec;
    while (p && *p) {
        const char *comma = strchr(p, ','), *end = comma ? comma : p + strlen(p);
        const char *eq = memchr(p, '=', (size_t)(end - p));
        if (!eq) return ferc_set_error(FERC_ERR_INVALID, "display names: expected Folder=Name, got '%.*s'", (int)(end - p), p);
        int found = 0;
        for (int c = 0; c < ix->n_classes; c++)
            if (strlen(ix->class_names[c]) == (size_t)(eq - p) && !strncmp(ix->class_names[c], p, (size_t)(eq - p))) {
                char *s = strndup(eq + 1, (size_t)(end - eq - 1));
                if (!s) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
                free(ix->display_names[c]);
                ix->display_names[c] = s;
                found = 1;
            }
        if (!found) return ferc_set_error(FERC_ERR_INVALID, "display names: no class folder '%.*s'", (int)(eq - p), p);
        p = comma ? comma + 1 : NULL;
    }
    return FERC_OK;
}

int data_index_open(data_index *ix, const char *root, const char *display_names)
{
    memset(ix, 0, sizeof *ix);
    if (!file_is_dir(root)) return ferc_set_error(FERC_ERR_NOT_FOUND, "dataset folder %s does not exist", root);
    char **classes = NULL;
    size_t nc = 0, other = 0;
    int rc = list_dir(root, 1, &classes, &nc, &other);
    if (rc) return rc;
    char *base = strdup(root);
    if (!base) { free_strs(classes, nc); return ferc_set_error(FERC_ERR_NOMEM, "out of memory"); }
    /* Kaggle nests ROOT/Training/Training/<Class>: one subfolder, named like ROOT itself (or
     * just the only folder while ROOT holds no images), which holds the class folders. */
    while (strlen(base) > 1 && base[strlen(base) - 1] == '/') base[strlen(base) - 1] = 0;
    const char *bn = strrchr(base, '/') ? strrchr(base, '/') + 1 : base;
    char *resolved = NULL;
    if (nc == 1) {
        char *sub = join(base, classes[0]);
        char **inner = NULL;
        size_t ni = 0, io = 0;
        if (sub && !list_dir(sub, 1, &inner, &ni, &io) && ni > 0) {
            char **files = NULL;
            size_t nf = 0;
            list_dir(sub, 0, &files, &nf, NULL);
            if (!strcmp(classes[0], bn) || nf == 0) {
                resolved = sub;
                sub = NULL;
                free_strs(classes, nc);
                classes = inner;
                nc = ni;
                inner = NULL;
                ix->nested = 1;
            }
            free_strs(files, nf);
        }
        free_strs(inner, ni);
        free(sub);
    }
    ix->root = resolved ? resolved : base;
    if (resolved) free(base);
    if (nc == 0) {
        free_strs(classes, nc);
        rc = ferc_set_error(FERC_ERR_FORMAT, "%s has no class folders (expected ROOT/<Class>/<image>)", root);
        data_index_free(ix);
        return rc;
    }
    ix->n_classes = (int)nc;
    ix->class_names = classes;
    ix->display_names = calloc(nc, sizeof(char *));
    if (!ix->display_names) goto oom;
    for (size_t c = 0; c < nc; c++)
        if (!(ix->display_names[c] = strdup(data_display_name(classes[c])))) goto oom;
    size_t cap = 0;
    for (size_t c = 0; c < nc; c++) {
        char *cdir = join(ix->root, classes[c]);
        char **files = NULL;
        size_t nf = 0, ignored = 0;
        if (!cdir) goto oom;
        rc = list_dir(cdir, 0, &files, &nf, &ignored);
        free(cdir);
        if (rc) { data_index_free(ix); return rc; }
        ix->n_ignored += ignored;
        if (nf == 0) {
            free_strs(files, nf);
            rc = ferc_set_error(FERC_ERR_FORMAT, "class folder %s/%s has no images", ix->root, classes[c]);
            data_index_free(ix);
            return rc;
        }
        if (ix->n + nf > cap) {
            cap = (ix->n + nf) * 2;
            char **np = realloc(ix->paths, cap * sizeof *np);
            if (np) ix->paths = np;
            int32_t *nl = realloc(ix->labels, cap * sizeof *nl);
            if (nl) ix->labels = nl;
            if (!np || !nl) { free_strs(files, nf); goto oom; }
        }
        for (size_t i = 0; i < nf; i++) {
            ix->paths[ix->n] = join(classes[c], files[i]);
            ix->labels[ix->n] = (int32_t)c;
            if (!ix->paths[ix->n]) { free_strs(files, nf); goto oom; }
            ix->n++;
        }
        free_strs(files, nf);
    }
    if (display_names && (rc = apply_display_overrides(ix, display_names))) {
        data_index_free(ix);
        return rc;
    }
    return FERC_OK;
oom:
    data_index_free(ix);
    return ferc_set_error(FERC_ERR_NOMEM, "out of memory indexing %s", root);
}

const char *data_index_path(const data_index *ix, size_t i, char *buf, size_t bufsize)
{
    snprintf(buf, bufsize, "%s/%s", ix->root, ix->paths[i]);
    return buf;
}

int data_index_filter(data_index *ix, const uint8_t *keep)
{
    size_t j = 0;
    for (size_t i = 0; i < ix->n; i++) {
        if (keep[i]) {
            ix->paths[j] = ix->paths[i];
            ix->labels[j] = ix->labels[i];
            j++;
        } else {
            free(ix->paths[i]);
        }
    }
    ix->n = j;
    return FERC_OK;
}

void data_index_counts(const data_index *ix, size_t *counts)
{
    memset(counts, 0, sizeof *counts * (size_t)ix->n_classes);
    for (size_t i = 0; i < ix->n; i++) counts[ix->labels[i]]++;
}

/* ---- splits ------------------------------------------------------------------------------ */
int data_split_stratified(const data_index *ix, double val_fraction, uint64_t seed, uint8_t *split)
{
    if (!(val_fraction >= 0.0 && val_fraction < 1.0))
        return ferc_set_error(FERC_ERR_INVALID, "validation fraction %g is not in [0, 1)", val_fraction);
    uint32_t *members = malloc(sizeof *members * (ix->n ? ix->n : 1));
    if (!members) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < ix->n; i++) split[i] = DATA_SPLIT_TRAIN;
    for (int c = 0; c < ix->n_classes; c++) {
        size_t m = 0;
        for (size_t i = 0; i < ix->n; i++)
            if (ix->labels[i] == c) members[m++] = (uint32_t)i;
        rng r;
        rng_derive(&r, seed, 0x73706c6974ull /* "split" */, (uint64_t)c);
        rng_shuffle_u32(&r, members, m);
        size_t nval = (size_t)llround((double)m * val_fraction);
        for (size_t k = 0; k < nval; k++) split[members[k]] = DATA_SPLIT_VAL;
    }
    free(members);
    return FERC_OK;
}

int data_split_indices(const uint8_t *split, size_t n, int which, uint32_t **out, size_t *n_out)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++) m += split[i] == which;
    *out = malloc(sizeof **out * (m ? m : 1));
    if (!*out) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    m = 0;
    for (size_t i = 0; i < n; i++)
        if (split[i] == which) (*out)[m++] = (uint32_t)i;
    *n_out = m;
    return FERC_OK;
}

static const char *split_names[] = {"train", "val", "test"};

int data_manifest_write(const char *path, const data_index *ix, const uint8_t *split)
{
    atomic_file *af;
    int rc = atomic_file_open(&af, path);
    if (rc) return rc;
    const char *hdr = "path,label,split\n";
    rc = atomic_file_write(af, hdr, strlen(hdr));
    char line[4096];
    for (size_t i = 0; !rc && i < ix->n; i++) {
        if (split[i] > DATA_SPLIT_TEST) continue;
        if (strpbrk(ix->paths[i], ",\"\n")) {
            rc = ferc_set_error(FERC_ERR_UNSUPPORTED, "manifest: path %s contains a comma, quote or newline", ix->paths[i]);
            break;
        }
        int k = snprintf(line, sizeof line, "%s,%s,%s\n", ix->paths[i], ix->class_names[ix->labels[i]], split_names[split[i]]);
        rc = atomic_file_write(af, line, (size_t)k);
    }
    if (rc) {
        atomic_file_abort(af);
        return rc;
    }
    return atomic_file_commit(af);
}

static int find_path(const data_index *ix, const uint32_t *sorted, const char *p)
{
    size_t lo = 0, hi = ix->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(ix->paths[sorted[mid]], p);
        if (c == 0) return (int)sorted[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

int data_manifest_read(const char *path, const data_index *ix, uint8_t *split)
{
    uint8_t *text;
    size_t size;
    int rc = file_read_all(path, &text, &size);
    if (rc) return rc;
    /* Paths are sorted within a class and classes are sorted, so ix->paths is sorted by strcmp
     * already when built by data_index_open; check, and fall back to a linear scan if not. */
    uint32_t *order = malloc(sizeof *order * (ix->n ? ix->n : 1));
    if (!order) { free(text); return ferc_set_error(FERC_ERR_NOMEM, "out of memory"); }
    int sorted = 1;
    for (size_t i = 0; i < ix->n; i++) {
        order[i] = (uint32_t)i;
        if (i && strcmp(ix->paths[i - 1], ix->paths[i]) >= 0) sorted = 0;
    }
    memset(split, 255, ix->n);
    char *line = (char *)text, *next;
    int lineno = 0;
    for (; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        lineno++;
        size_t L = strlen(line);
        if (L && line[L - 1] == '\r') line[--L] = 0;
        if (!L || (lineno == 1 && !strcmp(line, "path,label,split"))) continue;
        char *c1 = strchr(line, ','), *c2 = c1 ? strchr(c1 + 1, ',') : NULL;
        if (!c2) { rc = ferc_set_error(FERC_ERR_FORMAT, "%s:%d: expected path,label,split", path, lineno); break; }
        *c1 = *c2 = 0;
        int s = -1;
        for (int k = 0; k < 3; k++)
            if (!strcmp(c2 + 1, split_names[k])) s = k;
        if (s < 0) { rc = ferc_set_error(FERC_ERR_FORMAT, "%s:%d: unknown split '%s'", path, lineno, c2 + 1); break; }
        int idx = -1;
        if (sorted) idx = find_path(ix, order, line);
        else
            for (size_t i = 0; i < ix->n && idx < 0; i++)
                if (!strcmp(ix->paths[i], line)) idx = (int)i;
        if (idx < 0) { rc = ferc_set_error(FERC_ERR_NOT_FOUND, "%s:%d: %s is not in the dataset at %s", path, lineno, line, ix->root); break; }
        if (strcmp(ix->class_names[ix->labels[idx]], c1 + 1)) {
            rc = ferc_set_error(FERC_ERR_FORMAT, "%s:%d: %s has class %s in the dataset but %s in the manifest", path, lineno,
                                line, ix->class_names[ix->labels[idx]], c1 + 1);
            break;
        }
        split[idx] = (uint8_t)s;
    }
    free(order);
    free(text);
    return rc;
}

int data_class_weights(const data_index *ix, const uint32_t *indices, size_t n, float *weights)
{
    size_t *cnt = calloc((size_t)ix->n_classes, sizeof *cnt);
    if (!cnt) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) cnt[ix->labels[indices ? indices[i] : i]]++;
    for (int c = 0; c < ix->n_classes; c++)
        weights[c] = cnt[c] ? (float)((double)n / ((double)ix->n_classes * (double)cnt[c])) : 0.0f;
    free(cnt);
    return FERC_OK;
}
