/* data transforms against torchvision 0.14 (tests/fixtures/data/transforms.safetensors, made by
 * tools/gen_transform_fixtures.py), plus spec parsing and the random steps' invariants.
 * Tolerances: exact where ferc and torchvision compute the same integers; 1 gray level for
 * resize (PIL rounds between passes, torchvision's tensor path does not) and contrast (PIL
 * rounds the mean); a few pixels for nearest-neighbour affine (ties at exact .5). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"
#include "io/safetensors.h"
#include "testutil.h"

static st_file fx;

static image fixture_u8(const char *name)
{
    image im = {0};
    const st_tensor *t = st_find(&fx, name);
    CHECK(t != NULL && t->dtype == ST_U8 && t->ndim == 2, "fixture %s", name);
    if (!t) return im;
    image_alloc(&im, (int)t->shape[1], (int)t->shape[0], 1);
    memcpy(im.data, t->data, t->nbytes);
    return im;
}

/* Compares image `got` with fixture `name`: returns the number of pixels off by more than tol. */
static void compare(const char *name, const image *got, int tol, int max_bad)
{
    image want = fixture_u8(name);
    if (!want.data) return;
    CHECK(got->width == want.width && got->height == want.height, "%s: %dx%d vs %dx%d", name, got->width, got->height,
          want.width, want.height);
    if (got->width != want.width || got->height != want.height) {
        image_free(&want);
        return;
    }
    int bad = 0, maxd = 0;
    for (int i = 0; i < want.width * want.height; i++) {
        int d = abs(got->data[i] - want.data[i]);
        if (d > maxd) maxd = d;
        bad += d > tol;
    }
    printf("  %-28s max diff %3d, %d px beyond %d (allowed %d)\n", name, maxd, bad, tol, max_bad);
    CHECK(bad <= max_bad, "%s", name);
    image_free(&want);
}

static void test_against_torchvision(void)
{
    image in = fixture_u8("input"), out = {0};
    if (!in.data) return;

    /* the committed JPEG decodes to the same pixels as OpenCV's decoder */
    image dec;
    CHECK_OK(image_load(&dec, "tests/fixtures/data/fer/Happy/Training_68359382.jpg", IMAGE_MODE_GRAY, 0));
    int diff = 0;
    for (int i = 0; dec.data && i < 48 * 48; i++) diff += dec.data[i] != in.data[i];
    CHECK(diff == 0, "%d pixels differ from cv2's decode", diff);
    image_free(&dec);

    CHECK_OK(image_resize(&out, &in, 37, 37)); compare("resize_37", &out, 1, 0); image_free(&out);
    CHECK_OK(image_resize(&out, &in, 30, 20)); compare("resize_20x30", &out, 1, 0); image_free(&out);
    CHECK_OK(image_resize(&out, &in, 96, 96)); compare("resize_96", &out, 1, 0); image_free(&out);
    CHECK_OK(data_center_crop(&out, &in, 40, 40)); compare("centercrop_40", &out, 0, 0); image_free(&out);
    CHECK_OK(data_center_crop(&out, &in, 55, 55)); compare("centercrop_55", &out, 0, 0); image_free(&out);
    const char *modes[] = {"pad5_constant", "pad5_reflect", "pad5_edge", "pad5_symmetric"};
    for (int m = 0; m < 4; m++) {
        CHECK_OK(data_pad(&out, &in, 5, 3, 2, 6, (data_pad_mode)m, 0));
        compare(modes[m], &out, 0, 0);
        image_free(&out);
    }
    CHECK_OK(image_flip_h(&out, &in)); compare("hflip", &out, 0, 0); image_free(&out);
    CHECK_OK(data_affine(&out, &in, 15.0, 3, -2, 1.1, 0)); compare("affine_a15_t3m2_s11", &out, 0, 48); image_free(&out);
    CHECK_OK(data_affine(&out, &in, -20.0, 0, 0, 1.0, 0)); compare("rotate_20", &out, 0, 48); image_free(&out);
    const struct { const char *name; double f; int contrast; } adj[] = {
        {"brightness_13", 1.3, 0}, {"brightness_06", 0.6, 0}, {"contrast_06", 0.6, 1}, {"contrast_15", 1.5, 1}};
    for (int k = 0; k < 4; k++) {
        CHECK_OK(image_clone(&out, &in));
        if (adj[k].contrast) data_adjust_contrast(&out, adj[k].f);
        else data_adjust_brightness(&out, adj[k].f);
        compare(adj[k].name, &out, 1, 0);
        image_free(&out);
    }

    data_transform *tf;
    CHECK_OK(data_transform_parse(&tf, "normalize(cifar10)"));
    float *x = malloc(sizeof(float) * 3 * 48 * 48), *want = malloc(sizeof(float) * 3 * 48 * 48);
    rng r;
    rng_seed(&r, 1);
    CHECK_OK(data_transform_apply(tf, &in, &r, x, 48, 48));
    const st_tensor *t = st_find(&fx, "normalize_cifar10");
    CHECK(t && st_to_f32(t, want, 3 * 48 * 48) == 0);
    if (t) check_close("normalize_cifar10", x, want, 3 * 48 * 48, 1e-6);
    free(x), free(want);
    data_transform_destroy(tf);
    image_free(&in);
}

static void test_spec(void)
{
    data_transform *tf = NULL;
    CHECK_OK(data_transform_parse(&tf, " randomcrop(48, pad=4, mode=reflect) | hflip ; rotate(10) | "
                                       "affine(translate=0.1/0.1,scale=0.9/1.1) | jitter(brightness=0.2,contrast=0.2) |"
                                       " normalize(imagenet) | erase(p=0.25)"));
    if (tf) {
        const char *s = data_transform_spec(tf);
        printf("  canonical: %s\n", s);
        CHECK(strstr(s, "randomcrop(48,48,pad=4,mode=reflect,fill=0)") && strstr(s, "hflip(p=0.5)") &&
              strstr(s, "normalize(mean=0.485/0.456/0.406,std=0.229/0.224/0.225)") && strstr(s, "erase(p=0.25"), "%s", s);
        /* the canonical form parses to itself */
        data_transform *tf2 = NULL;
        CHECK_OK(data_transform_parse(&tf2, s));
        if (tf2) CHECK(!strcmp(data_transform_spec(tf2), s));
        data_transform_destroy(tf2);
        int w, h;
        data_transform_out_size(tf, 48, 48, &w, &h);
        CHECK(w == 48 && h == 48);
        data_transform_destroy(tf);
    }
    CHECK_OK(data_transform_parse(&tf, "resize(64)|centercrop(56)"));
    int w, h;
    if (tf) data_transform_out_size(tf, 100, 50, &w, &h);
    CHECK(w == 56 && h == 56);
    data_transform_destroy(tf);
    CHECK_OK(data_transform_parse(&tf, "resize(24)"));
    if (tf) data_transform_out_size(tf, 100, 50, &w, &h);
    CHECK(w == 48 && h == 24);
    data_transform_destroy(tf);
    CHECK_OK(data_transform_parse(&tf, ""));
    data_transform_destroy(tf);
    const char *bad[] = {"blur(3)", "resize", "hflip(p=2)", "normalize(foo)", "normalize | hflip", "erase | normalize",
                         "randomcrop(48, mode=wrap)", "resize(48", "jitter(brightness=x)", "normalize(mean=0.5)"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tf = NULL;
        int rc = data_transform_parse(&tf, bad[i]);
        CHECK(rc == FERC_ERR_INVALID && tf == NULL, "'%s' accepted", bad[i]);
        if (rc) printf("  rejects %-28s %s\n", bad[i], ferc_last_error());
        data_transform_destroy(tf);
    }
}

static void test_random_steps(void)
{
    image in = fixture_u8("input");
    if (!in.data) return;
    data_transform *tf;
    /* Same rng stream -> same output; hflip p=1 is a flip; randomcrop stays inside the pad. */
    CHECK_OK(data_transform_parse(&tf, "randomcrop(48,pad=4,mode=edge)|hflip(p=1)|rotate(10)|jitter(brightness=0.3,contrast=0.3)|"
                                       "randomresizedcrop(40)|normalize(cifar10)|erase(p=1)"));
    float *a = malloc(sizeof(float) * 3 * 40 * 40), *b = malloc(sizeof(float) * 3 * 40 * 40);
    rng r1, r2;
    rng_derive(&r1, 42, 1, 2);
    rng_derive(&r2, 42, 1, 2);
    CHECK_OK(data_transform_apply(tf, &in, &r1, a, 40, 40));
    CHECK_OK(data_transform_apply(tf, &in, &r2, b, 40, 40));
    CHECK(!memcmp(a, b, sizeof(float) * 3 * 40 * 40));
    int zeros = 0; /* erase(p=1) writes value 0 into a rectangle on all channels */
    for (int i = 0; i < 40 * 40; i++) zeros += a[i] == 0.0f && a[1600 + i] == 0.0f && a[3200 + i] == 0.0f;
    CHECK(zeros >= 1, "no erased pixels");
    CHECK(data_transform_apply(tf, &in, &r1, a, 48, 48) == FERC_ERR_SHAPE);
    data_transform_destroy(tf);
    free(a), free(b);

    CHECK_OK(data_transform_parse(&tf, "hflip(p=1)"));
    image o, f;
    rng_seed(&r1, 3);
    CHECK_OK(data_transform_apply_u8(tf, &in, &r1, &o));
    CHECK_OK(image_flip_h(&f, &in));
    CHECK(!memcmp(o.data, f.data, 48 * 48));
    image_free(&o), image_free(&f);
    data_transform_destroy(tf);

    image crops[10];
    CHECK_OK(data_ten_crop(crops, &in, 40, 40));
    CHECK(crops[0].data[0] == in.data[0] && crops[3].data[39 * 40 + 39] == in.data[47 * 48 + 47] &&
          crops[5].data[0] == in.data[47]);
    for (int i = 0; i < 10; i++) image_free(&crops[i]);
    image_free(&in);
}

int main(void)
{
    if (st_read(&fx, "tests/fixtures/data/transforms.safetensors")) {
        fprintf(stderr, "cannot read the fixture: %s\n", ferc_last_error());
        return 1;
    }
    test_against_torchvision();
    test_spec();
    test_random_steps();
    st_close(&fx);
    return test_finish("test_data_transform");
}
