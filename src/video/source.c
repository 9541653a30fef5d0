/* video/source: the generic part of frame sources, and the image-folder source. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/core.h"
#include "video/video_impl.h"

int video_source_new(video_source **out, const video_source_ops *ops, void *impl)
{
    video_source *s = calloc(1, sizeof *s);
    if (!s) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    s->ops = ops;
    s->impl = impl;
    s->frames = -1;
    s->frame.index = -1;
    *out = s;
    return FERC_OK;
}

int video_frame_ensure(video_source *s, int w, int h)
{
    image *img = &s->frame.img;
    if (img->data && img->width == w && img->height == h && img->channels == 3) return FERC_OK;
    image_free(img);
    return image_alloc(img, w, h, 3);
}

int video_source_read(video_source *s, const video_frame **frame)
{
    *frame = NULL;
    int rc = s->ops->read(s);
    if (rc == 1) *frame = &s->frame;
    return rc;
}

void video_source_info(const video_source *s, int *width, int *height, double *fps, int64_t *frames)
{
    if (width) *width = s->width;
    if (height) *height = s->height;
    if (fps) *fps = s->fps;
    if (frames) *frames = s->frames;
}

const char *video_source_describe(const video_source *s) { return s->desc; }

void video_source_close(video_source *s)
{
    if (!s) return;
    if (s->ops->close) s->ops->close(s);
    image_free(&s->frame.img);
    free(s);
}

int video_list_devices(char *buf, size_t size)
{
    int n = 0;
    size_t used = 0;
    if (size) buf[0] = 0;
    DIR *d = opendir("/dev");
    char **names = NULL;
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (strncmp(e->d_name, "video", 5)) continue;
            char **nn = realloc(names, (size_t)(n + 1) * sizeof *names);
            if (!nn) break;
            names = nn;
            if (!(names[n] = strdup(e->d_name))) break;
            n++;
        }
        closedir(d);
    }
    /* numeric order: video2 before video10 */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0; j--) {
            const char *a = names[j - 1], *b = names[j];
            if (strlen(a) < strlen(b) || (strlen(a) == strlen(b) && strcmp(a, b) <= 0)) break;
            char *t = names[j];
            names[j] = names[j - 1];
            names[j - 1] = t;
        }
    for (int i = 0; i < n; i++) {
        int k = snprintf(buf + used, used < size ? size - used : 0, "%s/dev/%s", i ? ", " : "", names[i]);
        if (k > 0) used += (size_t)k;
        free(names[i]);
    }
    free(names);
    if (!n && size) snprintf(buf, size, "none");
    return n;
}

/* ---- image folder ------------------------------------------------------------------------ */
typedef struct folder_src {
    char **paths;
    int count, next;
    double fps;
} folder_src;

static int has_image_ext(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot) return 0;
    static const char *const exts[] = {".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm"};
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++)
        if (!strcasecmp(dot, exts[i])) return 1;
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void folder_close(video_source *s)
{
    folder_src *f = s->impl;
    if (!f) return;
    for (int i = 0; i < f->count; i++) free(f->paths[i]);
    free(f->paths);
    free(f);
}

static int folder_read(video_source *s)
{
    folder_src *f = s->impl;
    if (f->next >= f->count) return 0;
    const char *path = f->paths[f->next];
    image img;
    int rc = image_load(&img, path, IMAGE_MODE_RGB, 1);
    if (rc) return ferc_wrap_error(rc, "image %d of the folder", f->next);
    image_free(&s->frame.img);
    s->frame.img = img;
    s->frame.index = f->next;
    s->frame.time = f->next / f->fps;
    s->frame.name = path;
    s->width = img.width;
    s->height = img.height;
    f->next++;
    return 1;
}

static const video_source_ops folder_ops = {folder_read, folder_close};

int video_source_open_images(video_source **out, const char *dir, double fps)
{
    *out = NULL;
    if (!(fps > 0)) fps = 1;
    DIR *d = opendir(dir);
    if (!d) return ferc_set_error(FERC_ERR_IO, "%s: cannot open the folder", dir);
    folder_src *f = calloc(1, sizeof *f);
    int rc = f ? FERC_OK : FERC_ERR_NOMEM;
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        if (e->d_name[0] == '.' || !has_image_ext(e->d_name)) continue;
        char **np = realloc(f->paths, (size_t)(f->count + 1) * sizeof *np);
        if (!np) {
            rc = FERC_ERR_NOMEM;
            break;
        }
        f->paths = np;
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        if (!(f->paths[f->count] = malloc(len))) {
            rc = FERC_ERR_NOMEM;
            break;
        }
        snprintf(f->paths[f->count], len, "%s/%s", dir, e->d_name);
        f->count++;
    }
    closedir(d);
    if (rc) {
        if (f) {
            for (int i = 0; i < f->count; i++) free(f->paths[i]);
            free(f->paths);
            free(f);
        }
        return ferc_set_error(rc, "out of memory");
    }
    if (!f->count) {
        free(f->paths);
        free(f);
        return ferc_set_error(FERC_ERR_NOT_FOUND, "%s: no images (.jpg .jpeg .png .bmp .pgm .ppm) in the folder", dir);
    }
    qsort(f->paths, (size_t)f->count, sizeof *f->paths, cmp_str);
    f->fps = fps;
    video_source *s = NULL;
    if ((rc = video_source_new(&s, &folder_ops, f))) {
        video_source tmp = {.impl = f};
        folder_close(&tmp);
        return rc;
    }
    s->fps = fps;
    s->frames = f->count;
    snprintf(s->desc, sizeof s->desc, "%d images in %s", f->count, dir);
    *out = s;
    return FERC_OK;
}
