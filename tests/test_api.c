/* The public API of include/ferc.h: ferc_recognize on the committed public-domain photo with a
 * resnet18 model made here (fixed random weights) gives the detector's box and exactly the
 * probabilities of the internal pipeline (face_recognize); ferc_classify gives the mean of the
 * classifier's outputs on the gray image and its mirror (tta flip, the default), exactly the
 * classifier's output without tta, and the classifier's tencrop result with tencrop; FERC_MODEL selects the default model; bad inputs
 * (missing model, corrupt model, missing image, NULL arguments) return status codes with
 * messages. The shipped default model, when present, loads and classifies the photo. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ferc.h"
#include "core/core.h"
#include "face/recognize.h"
#include "image/image.h"
#include "models/classify.h"
#include "models/models.h"
#include "testutil.h"

#define PHOTO "tests/fixtures/faces/Tom_Cruise_avp_2014_4.jpg"

static void check_face_probs(const ferc_face *f, int k)
{
    double s = 0;
    int best = 0;
    for (int j = 0; j < k; j++) {
        s += f->probs[j];
        if (f->probs[j] > f->probs[best]) best = j;
    }
    for (int j = k; j < FERC_MAX_CLASSES; j++) CHECK(f->probs[j] == 0, "unused probability %d is %g", j, (double)f->probs[j]);
    CHECK(fabs(s - 1) < 1e-5, "probabilities sum to %g", s);
    CHECK(f->label == best && f->confidence == f->probs[best], "label %d (best %d), confidence %g", f->label, best,
          (double)f->confidence);
}

int main(void)
{
    char dir[] = "/tmp/ferc_test_api_XXXXXX", model[300], corrupt[300];
    if (!mkdtemp(dir)) return test_skip("no temporary folder");
    snprintf(model, sizeof model, "%s/r18.safetensors", dir);
    snprintf(corrupt, sizeof corrupt, "%s/corrupt.safetensors", dir);
    test_make_model(model, "resnet18", 48, 11);

    ferc_recognizer *r = NULL;
    CHECK_OK(ferc_recognizer_create(&r, model, NULL));
    ferc_image img;
    CHECK_OK(ferc_image_load(&img, PHOTO));
    CHECK(img.channels == 3 && img.width > 0 && img.height > 0, "photo %dx%dx%d", img.width, img.height, img.channels);
    if (r && img.data) {
        CHECK(ferc_recognizer_num_classes(r) == 6, "classes");
        for (int j = 0; j < 6; j++)
            CHECK(!strcmp(ferc_recognizer_class_name(r, j), test_fer_classes[j]), "class %d named %s", j, ferc_recognizer_class_name(r, j));
        CHECK(ferc_recognizer_class_name(r, 6) == NULL && ferc_recognizer_class_name(r, -1) == NULL, "out of range names");

        ferc_face *faces = NULL;
        int n = -1;
        CHECK_OK(ferc_recognize(r, &img, &faces, &n));
        CHECK(n == 1 && faces, "one face (got %d)", n);
        /* the same pipeline through the internal API */
        face_recognizer *fr = NULL;
        CHECK_OK(face_recognizer_create(&fr, model, NULL, NULL));
        image im = {img.width, img.height, img.channels, img.stride, img.data};
        face_box *boxes = NULL;
        float *logits = NULL, *probs = NULL;
        int n2 = 0;
        if (fr) CHECK_OK(face_recognize(fr, &im, &boxes, &n2, &logits, &probs));
        CHECK(n2 == n, "internal pipeline found %d faces", n2);
        for (int i = 0; i < n && i < n2; i++) {
            CHECK(faces[i].x == boxes[i].x && faces[i].y == boxes[i].y && faces[i].w == boxes[i].w && faces[i].h == boxes[i].h,
                  "box %d: %d,%d %dx%d vs %d,%d %dx%d", i, faces[i].x, faces[i].y, faces[i].w, faces[i].h, boxes[i].x,
                  boxes[i].y, boxes[i].w, boxes[i].h);
            CHECK(!memcmp(faces[i].probs, probs + (size_t)i * 6, 6 * sizeof(float)), "probabilities of face %d: %.9g %.9g vs %.9g %.9g", i,
                  (double)faces[i].probs[0], (double)faces[i].probs[1], (double)probs[i * 6], (double)probs[i * 6 + 1]);
            check_face_probs(&faces[i], 6);
        }
        /* the default detector (BlazeFace), its box in Haar's framing (face/recognize.h) */
        if (n == 1) CHECK(abs(faces[0].x - 39) <= 2 && abs(faces[0].y - 152) <= 2 && abs(faces[0].w - 525) <= 2 &&
                              faces[0].w == faces[0].h,
                          "BlazeFace's box near (39, 152, 525, 525); got (%d, %d, %d, %d)", faces[0].x, faces[0].y,
                          faces[0].w, faces[0].h);
        free(faces), free(boxes), free(logits), free(probs);
        face_recognizer_destroy(fr);

        /* 16 faces in one call, with each TTA: the same probabilities as one face at a time
         * (a pass holds views x faces inputs, rounded up to a power of two: 256 for tencrop) */
        static const classify_tta ttas[3] = {CLASSIFY_TTA_NONE, CLASSIFY_TTA_FLIP, CLASSIFY_TTA_TENCROP};
        for (int t = 0; t < 3; t++) {
            face_recog_params rp;
            face_recog_params_default(&rp);
            rp.tta = ttas[t];
            face_recognizer *mr = NULL;
            CHECK_OK(face_recognizer_create(&mr, model, NULL, &rp));
            if (!mr) continue;
            face_box many[16];
            for (int i = 0; i < 16; i++) many[i] = (face_box){40 + 9 * i, 200 + 5 * i, 300 + 8 * i, 300 + 8 * i};
            float all[16 * 6], one6[6];
            CHECK_OK(face_recognizer_classify(mr, &im, many, 16, NULL, all));
            double worst = 0;
            for (int i = 0; i < 16; i++) {
                CHECK_OK(face_recognizer_classify(mr, &im, &many[i], 1, NULL, one6));
                for (int j = 0; j < 6; j++) worst = fmax(worst, fabs((double)all[i * 6 + j] - one6[j]));
            }
            CHECK(worst < 1e-5, "tta %s: 16 faces at once vs one by one differ by %g", classify_tta_name(ttas[t]), worst);
            face_recognizer_destroy(mr);
        }

        /* a whole image as one face: the classifier's result on the gray picture; by default
         * (tta flip) the mean of its probabilities on the picture and on its mirror image */
        ferc_face one;
        CHECK_OK(ferc_classify(r, &img, &one));
        check_face_probs(&one, 6);
        CHECK(one.x == 0 && one.y == 0 && one.w == img.width && one.h == img.height, "whole-image box");
        classifier *c = NULL;
        image gray = {0}, mirror = {0};
        float want[6], want_m[6], mean[6];
        CHECK_OK(classifier_load(&c, model));
        CHECK_OK(image_to_gray(&gray, &im));
        CHECK_OK(image_flip_h(&mirror, &gray));
        if (c && gray.data && mirror.data) {
            CHECK_OK(classifier_run_images(c, &gray, 1, NULL, want));
            CHECK_OK(classifier_run_images(c, &mirror, 1, NULL, want_m));
            for (int j = 0; j < 6; j++) mean[j] = 0.5f * (want[j] + want_m[j]);
            check_close("ferc_classify (flip) = mean of picture and mirror", one.probs, mean, 6, 1e-5);
            CHECK(fabsf(want[0] - want_m[0]) > 1e-4f, "the mirror changes the prediction (%g vs %g)", (double)want[0], (double)want_m[0]);
            CHECK_OK(ferc_recognizer_set_tta(r, FERC_TTA_NONE));
            CHECK_OK(ferc_classify(r, &img, &one));
            CHECK(!memcmp(want, one.probs, sizeof want), "ferc_classify (no tta) = classifier on the gray image");
            CHECK_OK(ferc_recognizer_set_tta(r, FERC_TTA_TENCROP));
            CHECK_OK(ferc_classify(r, &img, &one));
            classifier_set_tta(c, CLASSIFY_TTA_TENCROP);
            CHECK_OK(classifier_run_images(c, &gray, 1, NULL, want));
            check_close("ferc_classify (tencrop) = classifier (tencrop)", one.probs, want, 6, 1e-5);
            check_face_probs(&one, 6);
            CHECK(ferc_recognizer_set_tta(r, (ferc_tta)7) == FERC_ERR_INVALID, "unknown tta");
            CHECK_OK(ferc_recognizer_set_tta(r, FERC_TTA_FLIP));
        }
        image_free(&gray);
        image_free(&mirror);
        classifier_destroy(c);

        /* a blank picture has no face: success, no list */
        ferc_image blank = {64, 48, 1, 64, calloc(64 * 48, 1)};
        faces = (ferc_face *)&one;
        n = -1;
        CHECK_OK(ferc_recognize(r, &blank, &faces, &n));
        CHECK(n == 0 && faces == NULL, "blank: %d faces", n);
        free(blank.data);

        /* argument errors */
        CHECK(ferc_recognize(r, NULL, &faces, &n) == FERC_ERR_INVALID, "NULL image");
        CHECK(ferc_classify(r, NULL, &one) == FERC_ERR_INVALID, "NULL image to classify");
    }
    ferc_image_free(&img);
    ferc_recognizer_destroy(r);

    /* options: the Haar cascade gives OpenCV's box; bad options are refused */
    {
        ferc_recognizer_options o;
        ferc_recognizer_options_default(&o);
        CHECK(o.detector == FERC_DETECTOR_BLAZEFACE && o.tta == FERC_TTA_FLIP && o.min_score > 0.5f, "default options");
        o.model = model;
        o.detector = FERC_DETECTOR_HAAR;
        ferc_recognizer *h = NULL;
        CHECK_OK(ferc_recognizer_create_with(&h, &o));
        ferc_image im;
        CHECK_OK(ferc_image_load(&im, PHOTO));
        ferc_face *fs = NULL;
        int nf = 0;
        if (h && im.data) CHECK_OK(ferc_recognize(h, &im, &fs, &nf));
        CHECK(nf == 1 && fs[0].x == 49 && fs[0].y == 206 && fs[0].w == 457 && fs[0].h == 457, "Haar: OpenCV's box (%d faces)", nf);
        free(fs);
        /* a stream of the same frame three times: one track, id 1, smoothing of equal frames
         * changes nothing */
        ferc_stream *st = NULL;
        CHECK_OK(ferc_stream_create(&st, h, NULL));
        for (int t = 0; st && t < 3; t++) {
            ferc_tracked_face *tf = NULL;
            int nt = 0;
            CHECK_OK(ferc_stream_process(st, &im, &tf, &nt));
            CHECK(nt == 1 && tf[0].id == 1, "stream frame %d: %d faces, id %d", t, nt, nt ? tf[0].id : -1);
            if (nt == 1) {
                check_face_probs(&tf[0].face, 6);
                for (int j = 0; j < 6; j++)
                    CHECK(fabsf(tf[0].raw_probs[j] - tf[0].face.probs[j]) < 1e-5f, "equal frames: smoothed = raw");
            }
            free(tf);
        }
        ferc_stream_params sp;
        ferc_stream_params_default(&sp);
        sp.smooth = 0;
        ferc_stream *bad_st = NULL;
        CHECK(ferc_stream_create(&bad_st, h, &sp) == FERC_ERR_INVALID && !bad_st, "smooth 0 refused");
        ferc_stream_destroy(st);
        ferc_image_free(&im);
        ferc_recognizer_destroy(h);
        o.detector = (ferc_detector)7;
        CHECK(ferc_recognizer_create_with(&h, &o) == FERC_ERR_INVALID && !h, "unknown detector");
        o.detector = FERC_DETECTOR_BLAZEFACE;
        o.min_score = 1.5f;
        CHECK(ferc_recognizer_create_with(&h, &o) == FERC_ERR_INVALID && !h, "min_score 1.5");
        o.min_score = 0.55f;
        o.detector_file = "/nonexistent/blazeface.safetensors";
        CHECK(ferc_recognizer_create_with(&h, &o) != FERC_OK && !h, "missing detector file");
    }

    /* missing and corrupt files */
    ferc_recognizer *bad = NULL;
    CHECK(ferc_recognizer_create(&bad, "/nonexistent/model.safetensors", NULL) == FERC_ERR_IO && !bad, "missing model");
    CHECK(strstr(ferc_last_error(), "/nonexistent/model.safetensors") != NULL, "message names the file: %s", ferc_last_error());
    FILE *f = fopen(corrupt, "wb");
    if (f) {
        fputs("\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": truncated", f);
        fclose(f);
    }
    CHECK(ferc_recognizer_create(&bad, corrupt, NULL) == FERC_ERR_FORMAT && !bad, "corrupt model: %s", ferc_last_error());
    CHECK(ferc_recognizer_create(&bad, model, "/nonexistent/cascade.xml") == FERC_ERR_IO && !bad, "missing cascade");
    ferc_image none;
    CHECK(ferc_image_load(&none, "/nonexistent/photo.jpg") == FERC_ERR_IO && none.data == NULL, "missing image");
    CHECK(ferc_image_load(&none, corrupt) == FERC_ERR_FORMAT && none.data == NULL, "not an image: %s", ferc_last_error());

    /* the default model: FERC_MODEL wins */
    setenv("FERC_MODEL", model, 1);
    const char *def = ferc_default_model_path();
    CHECK(def && !strcmp(def, model), "FERC_MODEL selects the default (%s)", def ? def : "NULL");
    CHECK_OK(ferc_recognizer_create(&bad, NULL, NULL));
    ferc_recognizer_destroy(bad);
    bad = NULL;
    unsetenv("FERC_MODEL");

    /* the shipped model, when this tree has one */
    def = ferc_default_model_path();
    if (def) {
        printf("default model: %s\n", def);
        CHECK_OK(ferc_recognizer_create(&r, NULL, NULL));
        CHECK_OK(ferc_image_load(&img, PHOTO));
        ferc_face *faces = NULL;
        int n = 0;
        if (r && img.data) CHECK_OK(ferc_recognize(r, &img, &faces, &n));
        CHECK(n == 1, "the shipped model sees one face (%d)", n);
        if (n == 1) {
            check_face_probs(&faces[0], ferc_recognizer_num_classes(r));
            printf("photo: %s %.2f\n", ferc_recognizer_class_name(r, faces[0].label), (double)faces[0].confidence);
        }
        free(faces);
        ferc_image_free(&img);
        ferc_recognizer_destroy(r);
    } else {
        printf("no shipped default model in this tree (models/)\n");
    }

    unlink(model);
    unlink(corrupt);
    rmdir(dir);
    return test_finish("test_api");
}
