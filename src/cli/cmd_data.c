/* ferc data: inspect an image-folder dataset.
 *   ferc data check DIR [--against OTHER] [--threads N] [--all]
 *   ferc data stats DIR [--threads N]
 *   ferc data grid DIR --out grid.png [--per-class N] [--augmented] [--transform SPEC] [--seed S] [--scale K]
 * check exits 1 when the data are unusable (no classes, an empty class, nothing decodable). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "data/data.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ferc data check DIR [--against OTHER_DIR] [--threads N] [--all]\n"
            "       ferc data stats DIR [--threads N]\n"
            "       ferc data grid DIR --out grid.png [--per-class N] [--augmented]\n"
            "                      [--transform SPEC] [--seed S] [--scale K]\n\n"
            "check   layout, classes, counts, image sizes and modes, undecodable files and\n"
            "        byte-identical duplicates (also across DIR and OTHER_DIR with --against)\n"
            "stats   per-channel mean and std of the decoded pixels (in [0,1]), as a normalize spec\n"
            "grid    a picture of sample images per class, optionally after augmentation\n"
            "        (default transform: randomcrop(48,pad=4,mode=reflect)|hflip|rotate(10))\n");
}

typedef struct opts {
    const char *dir, *against, *out, *transform;
    int threads, all, per_class, augmented, scale;
    unsigned long long seed;
} opts;

static int parse(int argc, char **argv, opts *o)
{
    memset(o, 0, sizeof *o);
    o->threads = 2;
    o->per_class = 8;
    o->scale = 2;
    o->seed = 1;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--all")) o->all = 1;
        else if (!strcmp(a, "--augmented")) o->augmented = 1;
        else if (a[0] == '-' && a[1] == '-' && !v) return cli_usage_error("data", "%s needs a value", a);
        else if (!strcmp(a, "--against")) o->against = v, i++;
        else if (!strcmp(a, "--out")) o->out = v, i++;
        else if (!strcmp(a, "--transform")) o->transform = v, i++;
        else if (!strcmp(a, "--threads")) o->threads = atoi(v), i++;
        else if (!strcmp(a, "--per-class")) o->per_class = atoi(v), i++;
        else if (!strcmp(a, "--scale")) o->scale = atoi(v), i++;
        else if (!strcmp(a, "--seed")) o->seed = strtoull(v, NULL, 10), i++;
        else if (a[0] == '-') return cli_usage_error("data", "unknown option %s", a);
        else if (!o->dir) o->dir = a;
        else return cli_usage_error("data", "unexpected argument %s", a);
    }
    if (!o->dir) return cli_usage_error("data", "missing DIR");
    if (o->threads < 1 || o->per_class < 1 || o->per_class > 64 || o->scale < 1 || o->scale > 8)
        return cli_usage_error("data", "--threads >= 1, --per-class 1..64, --scale 1..8");
    return CLI_OK;
}

/* Opens and decodes a dataset, printing what was skipped. */
static int load(const opts *o, const char *dir, data_index *ix, data_cache **cache, int quiet)
{
    if (data_index_open(ix, dir, NULL)) return cli_fail(dir);
    data_bad_files bad;
    data_cache_opts co = {(size_t)8 << 30, o->threads, 0};
    if (data_cache_load(cache, ix, &co, &bad)) {
        data_index_free(ix);
        return cli_fail(dir);
    }
    if (bad.count || !quiet) printf("undecodable files: %zu\n", bad.count);
    for (size_t i = 0; i < bad.count && i < 8; i++) printf("  %s: %s\n", bad.first[i], bad.why[i]);
    if (bad.count > 8) printf("  ... and %zu more\n", bad.count - 8);
    data_bad_files_free(&bad);
    return CLI_OK;
}

/* ---- check ------------------------------------------------------------------------------- */
static int check(const opts *o)
{
    data_index ix[2];
    data_cache *cache[2] = {NULL, NULL};
    int nsets = o->against ? 2 : 1;
    for (int s = 0; s < nsets; s++) {
        const char *dir = s ? o->against : o->dir;
        if (s) printf("\n");
        printf("dataset: %s\n", dir);
        if (load(o, dir, &ix[s], &cache[s], 0)) {
            if (s) data_cache_destroy(cache[0]), data_index_free(&ix[0]);
            return CLI_FAIL;
        }
        printf("layout: %s%s\n", ix[s].root, ix[s].nested ? " (nested ROOT/<name>/<Class>, detected)" : "");
        printf("classes: %d, images: %zu (ignored non-image files: %zu)\n", ix[s].n_classes, ix[s].n, ix[s].n_ignored);
        size_t *counts = calloc((size_t)ix[s].n_classes, sizeof *counts);
        data_index_counts(&ix[s], counts);
        for (int c = 0; c < ix[s].n_classes; c++)
            if (strcmp(ix[s].class_names[c], ix[s].display_names[c]))
                printf("  %d %-12s %7zu  (shown as %s)\n", c, ix[s].class_names[c], counts[c], ix[s].display_names[c]);
            else
                printf("  %d %-12s %7zu\n", c, ix[s].class_names[c], counts[c]);
        free(counts);
        /* sizes and modes: a few distinct kinds are expected, so a small linear table does */
        struct kind { int w, h, c; size_t n; } kinds[16];
        int nk = 0;
        size_t other = 0, black = 0;
        for (size_t i = 0; i < ix[s].n; i++) {
            image v;
            data_cache_get(cache[s], i, &v);
            int k;
            for (k = 0; k < nk; k++)
                if (kinds[k].w == v.width && kinds[k].h == v.height && kinds[k].c == v.channels) break;
            if (k == nk && nk < 16) kinds[nk++] = (struct kind){v.width, v.height, v.channels, 0};
            if (k < nk) kinds[k].n++;
            else other++;
            int all0 = 1;
            for (int y = 0; y < v.height && all0; y++)
                for (int x = 0; x < v.width * v.channels; x++)
                    if (v.data[(size_t)y * v.stride + (size_t)x] > 8) { all0 = 0; break; }
            black += all0;
        }
        printf("sizes and modes:\n");
        for (int k = 0; k < nk; k++)
            printf("  %dx%d %s: %zu\n", kinds[k].w, kinds[k].h, kinds[k].c == 1 ? "gray" : "RGB", kinds[k].n);
        if (other) printf("  other: %zu\n", other);
        printf("all-black images: %zu\n", black);
    }
    /* duplicates: hash every file, sort, confirm equal hashes byte by byte */
    size_t total = ix[0].n + (nsets == 2 ? ix[1].n : 0);
    data_file_key *keys = malloc(sizeof *keys * (total ? total : 1));
    int rc = keys ? CLI_OK : cli_fail("out of memory");
    if (!rc && data_file_keys(&ix[0], 0, keys)) rc = cli_fail("reading");
    if (!rc && nsets == 2 && data_file_keys(&ix[1], 1, keys + ix[0].n)) rc = cli_fail("reading");
    if (!rc) {
        qsort(keys, total, sizeof *keys, data_file_key_cmp);
        size_t groups = 0, dup_files = 0, mixed = 0, cross = 0, printed = 0;
        printf("\nbyte-identical duplicate groups:\n");
        for (size_t i = 0; i < total;) {
            size_t j = i + 1;
            while (j < total && keys[j].hash == keys[i].hash && keys[j].size == keys[i].size) j++;
            if (j - i > 1) {
                const data_index *a = &ix[keys[i].set];
                int confirmed = 1, labels_differ = 0, spans = 0;
                for (size_t k = i + 1; k < j; k++) {
                    const data_index *b = &ix[keys[k].set];
                    confirmed &= data_same_bytes(a, keys[i].idx, b, keys[k].idx);
                    labels_differ |= strcmp(a->class_names[a->labels[keys[i].idx]], b->class_names[b->labels[keys[k].idx]]) != 0;
                    spans |= keys[k].set != keys[i].set;
                }
                if (confirmed) {
                    groups++;
                    dup_files += j - i - 1;
                    mixed += (size_t)labels_differ;
                    cross += (size_t)spans;
                    if (o->all || printed < 20) {
                        printed++;
                        printf("  group %zu%s%s:", groups, labels_differ ? " [different labels]" : "",
                               spans ? " [in both folders]" : "");
                        for (size_t k = i; k < j; k++)
                            printf(" %s%s", nsets == 2 ? (keys[k].set ? "OTHER:" : "DIR:") : "", ix[keys[k].set].paths[keys[k].idx]);
                        printf("\n");
                    }
                }
            }
            i = j;
        }
        if (printed < groups) printf("  ... %zu more groups (--all lists them)\n", groups - printed);
        printf("duplicates: %zu groups, %zu redundant files, %zu groups with different labels", groups, dup_files, mixed);
        if (nsets == 2) printf(", %zu groups across the two folders (leakage)", cross);
        printf("\n");
    }
    free(keys);
    int usable = ix[0].n > 0;
    for (int s = 0; s < nsets; s++) data_cache_destroy(cache[s]), data_index_free(&ix[s]);
    if (rc) return rc;
    if (!usable) {
        fprintf(stderr, "ferc data check: no decodable images\n");
        return CLI_FAIL;
    }
    return CLI_OK;
}

/* ---- stats ------------------------------------------------------------------------------- */
static int stats(const opts *o)
{
    data_index ix;
    data_cache *cache;
    if (load(o, o->dir, &ix, &cache, 1)) return CLI_FAIL;
    double sum[3] = {0}, sq[3] = {0};
    size_t npx = 0;
    for (size_t i = 0; i < ix.n; i++) {
        image v;
        data_cache_get(cache, i, &v);
        for (int y = 0; y < v.height; y++)
            for (int x = 0; x < v.width; x++)
                for (int c = 0; c < 3; c++) {
                    double p = v.data[(size_t)y * v.stride + (size_t)x * (size_t)v.channels + (size_t)(v.channels == 1 ? 0 : c)] / 255.0;
                    sum[c] += p;
                    sq[c] += p * p;
                }
        npx += (size_t)v.width * (size_t)v.height;
    }
    double mean[3], sd[3];
    for (int c = 0; c < 3; c++) {
        mean[c] = sum[c] / (double)npx;
        double var = sq[c] / (double)npx - mean[c] * mean[c];
        sd[c] = var > 0 ? sqrt(var) : 0.0;
    }
    printf("images: %zu, pixels: %zu\n", ix.n, npx);
    printf("mean (R, G, B): %.4f %.4f %.4f\n", mean[0], mean[1], mean[2]);
    printf("std  (R, G, B): %.4f %.4f %.4f\n", sd[0], sd[1], sd[2]);
    printf("spec: normalize(mean=%.4f/%.4f/%.4f,std=%.4f/%.4f/%.4f)\n", mean[0], mean[1], mean[2], sd[0], sd[1], sd[2]);
    printf("presets for comparison: cifar10 mean 0.4914/0.4822/0.4465 std 0.2470/0.2435/0.2616; "
           "imagenet mean 0.485/0.456/0.406 std 0.229/0.224/0.225\n");
    data_cache_destroy(cache);
    data_index_free(&ix);
    return CLI_OK;
}

/* ---- grid -------------------------------------------------------------------------------- */
static int grid(const opts *o)
{
    if (!o->out) return cli_usage_error("data", "grid needs --out FILE.png");
    data_transform *tf = NULL;
    const char *spec = o->transform ? o->transform : "randomcrop(48,pad=4,mode=reflect)|hflip|rotate(10)";
    if (o->augmented && data_transform_parse(&tf, spec)) return cli_fail("--transform");
    data_index ix;
    data_cache *cache;
    if (load(o, o->dir, &ix, &cache, 1)) {
        data_transform_destroy(tf);
        return CLI_FAIL;
    }
    int cell = 48 * o->scale, pad = 4, label_w = 0, n = o->per_class, rc = CLI_OK;
    for (int c = 0; c < ix.n_classes; c++) {
        int w = image_text_width(ix.display_names[c], 2);
        if (w > label_w) label_w = w;
    }
    label_w += 2 * pad;
    image g;
    if (image_alloc(&g, label_w + n * (cell + pad) + pad, pad + ix.n_classes * (cell + pad), 3)) {
        rc = cli_fail("grid");
        goto done;
    }
    memset(g.data, 255, g.stride * (size_t)g.height);
    const uint8_t black[3] = {0, 0, 0};
    for (int c = 0; c < ix.n_classes; c++) {
        int y0 = pad + c * (cell + pad);
        image_draw_text(&g, pad, y0 + cell / 2 - 9, ix.display_names[c], 2, black, NULL);
        uint32_t *members = malloc(sizeof *members * ix.n);
        size_t m = 0;
        for (size_t i = 0; i < ix.n; i++)
            if (ix.labels[i] == c) members[m++] = (uint32_t)i;
        rng r;
        rng_derive(&r, o->seed, 0x67726964ull /* "grid" */, (uint64_t)c);
        rng_shuffle_u32(&r, members, m);
        for (int k = 0; k < n && (size_t)k < m; k++) {
            image v, aug = {0}, sized = {0}, rgb = {0};
            data_cache_get(cache, members[k], &v);
            const image *src = &v;
            if (tf) {
                rng ar;
                rng_derive(&ar, o->seed, 1, members[k]);
                if (data_transform_apply_u8(tf, &v, &ar, &aug)) {
                    rc = cli_fail("augmenting");
                    free(members);
                    image_free(&g);
                    goto done;
                }
                src = &aug;
            }
            if (image_resize(&sized, src, cell, cell) || image_to_rgb(&rgb, &sized)) {
                rc = cli_fail("grid");
                free(members);
                image_free(&aug), image_free(&sized), image_free(&g);
                goto done;
            }
            int x0 = label_w + k * (cell + pad);
            for (int y = 0; y < cell; y++)
                memcpy(g.data + (size_t)(y0 + y) * g.stride + (size_t)x0 * 3, rgb.data + (size_t)y * rgb.stride, (size_t)cell * 3);
            image_free(&aug), image_free(&sized), image_free(&rgb);
        }
        free(members);
    }
    if (image_save(&g, o->out, 95)) rc = cli_fail(o->out);
    else printf("wrote %s (%dx%d): %d classes x %d samples%s\n", o->out, g.width, g.height, ix.n_classes, n,
                tf ? ", augmented" : "");
    if (tf) printf("transform: %s\n", data_transform_spec(tf));
    image_free(&g);
done:
    data_cache_destroy(cache);
    data_index_free(&ix);
    data_transform_destroy(tf);
    return rc;
}

int cmd_data(int argc, char **argv)
{
    if (argc < 2 || cli_wants_help(argc, argv)) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    opts o;
    int rc = parse(argc, argv, &o);
    if (rc) return rc;
    if (!strcmp(argv[1], "check")) return check(&o);
    if (!strcmp(argv[1], "stats")) return stats(&o);
    if (!strcmp(argv[1], "grid")) return grid(&o);
    return cli_usage_error("data", "unknown action '%s' (check, stats, grid)", argv[1]);
}
