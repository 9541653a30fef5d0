/* face/recognize: the recognition pipeline for one image or video frame:
 *
 *     RGB frame -> gray (OpenCV's conversion) -> optional downscale -> cascade detection
 *       -> boxes in frame pixels -> crop with a margin (zero outside the frame) -> gray (PIL's
 *       "L", as the FER training images) -> resize to the model's img_size and normalize with
 *       the model file's mean/std (models/classify's preprocessing) -> ONE forward pass for all
 *       faces of the frame and their test-time views (default: the face and its mirror) ->
 *       softmax probabilities averaged over the views (logits: the network's without tta,
 *       the log of the mean probabilities with it).
 *
 * Batching: execution plans are built lazily for batch sizes 1, 2, 4, 8 ... max_batch and kept,
 * so a frame with n faces runs on the smallest plan >= n, padded with zeros (more than
 * max_batch faces go through in several passes). Planning is paid once per size class, and a
 * frame with one face does not pay for sixteen.
 *
 * Usage:
 *     face_recognizer *r;
 *     face_recog_params p;
 *     face_recog_params_default(&p);
 *     if (face_recognizer_create(&r, "model.safetensors", NULL, &p)) fail(ferc_last_error());
 *     face_box *boxes; float *logits, *probs; int n;
 *     face_recognize(r, &rgb, &boxes, &n, &logits, &probs);   // (n, K) each; caller frees all three
 *     face_recognizer_destroy(r);
 *
 * A recognizer is used by one thread at a time; face_recognizer_share gives each thread its own
 * on one loaded model.
 */
#ifndef FERC_FACE_RECOGNIZE_H
#define FERC_FACE_RECOGNIZE_H

#include "face/blazeface.h"
#include "face/cascade.h"
#include "image/image.h"
#include "models/classify.h"
#include "models/models.h"

/* Which detector finds the faces: Viola-Jones (OpenCV's Haar cascade, as OpenCV) or the CNN
 * (face/blazeface).
 *
 * Framing: the classifier was trained on FER's crops, so a face must be cropped as FER cropped
 * it. bench/bench_framing measures where FER's crop lies relative to each detector's box (FER
 * faces upscaled onto a black canvas and found again; medians over training rows): it is
 * Haar's box x 1.043 (hence the default margin of 0.02 per side), and BlazeFace's box x 1.122
 * with its centre 0.072 sides higher. A BlazeFace box is therefore turned into the box Haar
 * would give: a square of FACE_BLAZEFACE_SIDE x its longer side, centred FACE_BLAZEFACE_SHIFT_Y
 * x that side below (negative: above) its centre; the margin then gives FER's framing for
 * both. On the validation faces that Haar finds, this framing gets 68.1% right where the
 * former 0.1 margin got 64.3% (default model; bench_framing's table in the README). */
typedef enum face_detector_kind { FACE_DETECTOR_HAAR = 0, FACE_DETECTOR_BLAZEFACE = 1 } face_detector_kind;
/* "haar", "blazeface"; FERC_ERR_INVALID with a message otherwise. */
int face_detector_parse(const char *s, face_detector_kind *k);
const char *face_detector_name(face_detector_kind k);
#define FACE_BLAZEFACE_SIDE 1.076f     /* 1.122 / 1.043 */
#define FACE_BLAZEFACE_SHIFT_Y (-0.081f) /* -0.072 - 0.008 * 1.076 */
#define FACE_DEFAULT_MARGIN 0.02f        /* (1.043 - 1) / 2, rounded */

typedef struct face_recog_params {
    face_detector_kind detector;   /* default FACE_DETECTOR_BLAZEFACE */
    blazeface_params blazeface;    /* the CNN's score threshold and NMS */
    face_detect_params detect; /* detectMultiScale parameters, in pixels of the frame (min/max
                                  sizes are scaled with detect_scale internally) */
    double detect_scale;       /* (0, 1]: detection runs on the frame resized by this factor and
                                  boxes are scaled back; 1 = full resolution (OpenCV parity) */
    float margin;              /* added to each side of a box, as a fraction of its side */
    int max_batch;             /* most faces per forward pass (rounded up to a power of two) */
    classify_tta tta;          /* test-time augmentation: every face's views go through the
                                  network in the same batch, results averaged */
    int align;                 /* with the CNN: crop each face turned so that its eyes are level
                                  (off by default; bench_framing --rotate measures it) */
    int bf16;                  /* the classifier in mixed precision (NN_EXEC_BF16); default 0 */
} face_recog_params;

/* The CNN detector (BlazeFace); for Haar, OpenCV's detection defaults at full resolution;
 * margin FACE_DEFAULT_MARGIN, max_batch 16, tta flip (the face and its mirror image). */
void face_recog_params_default(face_recog_params *p);

typedef struct face_recognizer face_recognizer;

/* Loads the model file and the detector: the cascade (NULL: FACE_CASCADE_DEFAULT_PATH), or
 * with FACE_DETECTOR_BLAZEFACE the CNN's file (cascade_path then names it; NULL: the shipped
 * models/detectors/blazeface-back.safetensors). */
int face_recognizer_create(face_recognizer **out, const char *model_path, const char *cascade_path,
                           const face_recog_params *p);
/* A second recognizer on base's loaded network and cascade (nothing is copied but the
 * parameters of recognition): it has its own plans and buffers, so that the two can run on
 * different threads at the same time (planning, which writes the shared graph, is
 * serialized). base must outlive it; destroying it leaves base untouched. */
int face_recognizer_share(face_recognizer **out, face_recognizer *base);
/* Changes the test-time augmentation (buffers are reallocated; plans are kept). */
int face_recognizer_set_tta(face_recognizer *r, classify_tta tta);
/* The classifier's precision from the next face on: bf16 (mixed) or float32. */
int face_recognizer_set_bf16(face_recognizer *r, bool bf16);
void face_recognizer_destroy(face_recognizer *r);
const models_meta *face_recognizer_meta(const face_recognizer *r);
/* Class name of label i ("0", "1", ... when the file names none); NULL when out of range. */
const char *face_recognizer_class_name(const face_recognizer *r, int i);
int face_recognizer_num_classes(const face_recognizer *r);
/* All K class names (see face_recognizer_class_name). */
const char *const *face_recognizer_class_names(const face_recognizer *r);

/* Detects faces in an RGB (or gray) image; boxes in its pixels, malloc'ed (NULL when none).
 * With the CNN, the boxes are in the Haar framing (above); the detector's own boxes, scores
 * and keypoints of this call stay available through face_recognizer_last_detections. */
int face_recognizer_detect(face_recognizer *r, const image *img, face_box **boxes, int *n);
/* The CNN's detections of the last face_recognizer_detect (NULL and 0 with Haar), valid until
 * the next call; detection i gave box i. */
const blazeface_det *face_recognizer_last_detections(const face_recognizer *r, int *n);
/* Classifies the n boxes of img (any box, also partly outside the image) in one batch.
 * logits and probs are (n, K); either may be NULL. n = 0 does nothing. */
int face_recognizer_classify(face_recognizer *r, const image *img, const face_box *boxes, int n, float *logits,
                             float *probs);
/* The same, each crop turned by angles[i] radians about its box's centre (NULL: none). */
int face_recognizer_classify_turned(face_recognizer *r, const image *img, const face_box *boxes, const float *angles,
                                    int n, float *logits, float *probs);
/* Classifies the n boxes the last face_recognizer_detect gave (in its order), each turned to
 * level its eyes when p.align is set and the CNN found them; otherwise as
 * face_recognizer_classify. */
int face_recognizer_classify_detected(face_recognizer *r, const image *img, const face_box *boxes, int n,
                                      float *logits, float *probs);
/* The angle of the eye line of a CNN detection (0 for level eyes; positive when the subject's
 * left eye, on the image's right, is lower). */
float face_eye_angle(const blazeface_det *d);
/* p.align of the recognizer */
int face_recognizer_aligns(const face_recognizer *r);
/* Classifies one image that is already a face crop (a FER image): made gray, resized to
 * img_size, normalized. logits and probs are (1, K); either may be NULL. */
int face_recognizer_classify_crop(face_recognizer *r, const image *face, float *logits, float *probs);
/* The crop that face_recognizer_classify feeds the network for a box: the box grown by the
 * margin, gray, at the crop's own size (before the resize to img_size). dst is allocated. */
int face_recognizer_crop(const face_recognizer *r, const image *img, const face_box *box, image *dst);
/* The same crop turned by angle radians about the box's centre (0: face_recognizer_crop). */
int face_recognizer_crop_turned(const face_recognizer *r, const image *img, const face_box *box, float angle, image *dst);
/* Detect, then classify (with p.align and the CNN, each face turned to level its eyes):
 * *boxes, *logits, *probs malloc'ed ((n, K); NULL when n is 0). */
int face_recognize(face_recognizer *r, const image *img, face_box **boxes, int *n, float **logits, float **probs);

/* Index of the largest of k values. */
int face_argmax(const float *v, int k);

#endif
