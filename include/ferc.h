/* ferc.h: the public API of libferc, facial-expression recognition in C.
 *
 * Overview
 *   libferc trains and runs torchvision-exact ResNet and DenseNet classifiers on a small
 *   C deep-learning engine built on oneDNN, detects faces with Viola-Jones cascades, and
 *   tells which of six expressions (Angry, Fear, Happy, Neutral, Sad, Surprise) each face
 *   shows.
 *
 * Conventions
 *   - Every function that can fail returns an int status: FERC_OK (0) or a negative
 *     ferc_status. ferc_last_error() then gives a readable message for this thread.
 *   - Handles are opaque; each *_create / *_load has a matching *_destroy.
 *   - The library never prints and never exits the process.
 *
 * Example (examples/recognize.c):
 *     ferc_recognizer *r;
 *     ferc_image img;
 *     ferc_face *faces;
 *     int n;
 *     if (ferc_recognizer_create(&r, NULL, NULL) || ferc_image_load(&img, "photo.jpg") ||
 *         ferc_recognize(r, &img, &faces, &n))
 *         fprintf(stderr, "%s\n", ferc_last_error());
 *     for (int i = 0; i < n; i++)
 *         printf("%d,%d %dx%d %s %.2f\n", faces[i].x, faces[i].y, faces[i].w, faces[i].h,
 *                ferc_recognizer_class_name(r, faces[i].label), faces[i].confidence);
 */
#ifndef FERC_H
#define FERC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ferc_status {
    FERC_OK = 0,
    FERC_ERR_INVALID = -1,      /* bad argument or option value */
    FERC_ERR_NOMEM = -2,
    FERC_ERR_IO = -3,           /* a file could not be opened, read or written */
    FERC_ERR_FORMAT = -4,       /* a file is malformed, truncated or of an unknown kind */
    FERC_ERR_UNSUPPORTED = -5,
    FERC_ERR_BACKEND = -6,      /* the compute backend (oneDNN) refused or failed */
    FERC_ERR_INTERRUPTED = -7,  /* stopped by a signal; state was saved where promised */
    FERC_ERR_NOT_FOUND = -8,
    FERC_ERR_SHAPE = -9,        /* tensor shapes do not fit together */
} ferc_status;
#define FERC_STATUS_COUNT 10

/* The message describing the last failure on the calling thread. Never NULL. */
const char *ferc_last_error(void);
void ferc_clear_error(void);
/* A short name for a status code ("out of memory"). */
const char *ferc_status_name(int status);
/* "0.1.0" */
const char *ferc_version(void);


/* ---- recognition: find faces and tell their expressions -------------------------------- */

/* The largest class count a ferc_face carries probabilities for. */
#define FERC_MAX_CLASSES 16

/* An 8-bit image: channels 1 (gray), 3 (RGB) or 4 (RGBA), rows `stride` bytes apart.
 * Images from ferc_image_load own their pixels (free with ferc_image_free); an image that
 * points at the caller's pixels needs no freeing. */
typedef struct ferc_image {
    int width, height, channels;
    size_t stride;
    uint8_t *data;
} ferc_image;

/* Decodes a JPEG or PNG file (EXIF orientation applied) into RGB. */
int ferc_image_load(ferc_image *img, const char *path);
void ferc_image_free(ferc_image *img);

/* One face: its box in image pixels, the predicted class and the probability of every class. */
typedef struct ferc_face {
    int x, y, w, h;
    int label;                      /* index of the most probable class */
    float confidence;               /* its probability */
    float probs[FERC_MAX_CLASSES];  /* softmax over ferc_recognizer_num_classes() classes */
} ferc_face;

typedef struct ferc_recognizer ferc_recognizer;

/* Test-time augmentation: how many views of each face the network sees; the probabilities
 * are averaged. FLIP (the default) is the face and its mirror image (2x the network work);
 * TENCROP the 4 corner and the centre crops of the face padded by 1/12 of its side, and
 * their mirrors (10x). */
typedef enum ferc_tta { FERC_TTA_NONE = 0, FERC_TTA_FLIP = 1, FERC_TTA_TENCROP = 2 } ferc_tta;

/* Arithmetic of the classifier. FP32 (the default) everywhere; BF16 is mixed precision:
 * activations and convolution weights go to the kernels in bfloat16 (AVX512_BF16 on this
 * CPU class), the weights stay float32 and so do the results. Models are the same files. */
typedef enum ferc_precision { FERC_PRECISION_FP32 = 0, FERC_PRECISION_BF16 = 1 } ferc_precision;

/* The default expression model: $FERC_MODEL if set, else the model shipped with ferc (found
 * in the source tree ferc was built from, or installed under share/ferc/models). NULL when
 * none is found. */
const char *ferc_default_model_path(void);

/* Face detectors: BlazeFace, MediaPipe's CNN (the default: finds tilted and turned faces; 0.98
 * recall at 1.00 precision on the shared labelled photos), or OpenCV's Viola-Jones Haar cascade
 * (0.86 / 0.82). */
typedef enum ferc_detector { FERC_DETECTOR_BLAZEFACE = 0, FERC_DETECTOR_HAAR = 1 } ferc_detector;

typedef struct ferc_recognizer_options {
    const char *model;         /* NULL: ferc_default_model_path() */
    ferc_detector detector;    /* FERC_DETECTOR_BLAZEFACE */
    const char *detector_file; /* NULL: the shipped BlazeFace file, or OpenCV's frontal-face cascade */
    ferc_tta tta;              /* FERC_TTA_FLIP */
    float min_score;           /* BlazeFace's least detection score (0.55) */
    ferc_precision precision;  /* FERC_PRECISION_FP32 */
} ferc_recognizer_options;

void ferc_recognizer_options_default(ferc_recognizer_options *o);
/* o NULL: the defaults. */
int ferc_recognizer_create_with(ferc_recognizer **out, const ferc_recognizer_options *o);
/* Loads a ferc model file (NULL: ferc_default_model_path()) with the default detector
 * (BlazeFace), or, when cascade_path is given, with that Haar cascade XML. */
int ferc_recognizer_create(ferc_recognizer **out, const char *model_path, const char *cascade_path);
void ferc_recognizer_destroy(ferc_recognizer *r);
int ferc_recognizer_num_classes(const ferc_recognizer *r);
/* "Angry", "Fear", ...; NULL when i is out of range. */
const char *ferc_recognizer_class_name(const ferc_recognizer *r, int i);

int ferc_recognizer_set_tta(ferc_recognizer *r, ferc_tta tta);
/* Takes effect from the next face on. */
int ferc_recognizer_set_precision(ferc_recognizer *r, ferc_precision precision);

/* Finds every face in img and classifies all of them in one batch. *faces is malloc'ed (NULL
 * when none was found; the caller frees it) and *count set. */
int ferc_recognize(ferc_recognizer *r, const ferc_image *img, ferc_face **faces, int *count);
/* Classifies the whole image as one face crop (a pre-cropped face, such as a FER image). */
int ferc_classify(ferc_recognizer *r, const ferc_image *img, ferc_face *face);


/* ---- streams: faces followed across the frames of a video ----------------------------- */

/* A stream gives the faces of successive frames stable ids and smooths each face's
 * probabilities over its frames, as `ferc camera` and `ferc serve`'s sessions do (one
 * implementation). Frames are matched by box overlap; a face the detector misses for up to
 * `memory` frames keeps its id. */
typedef struct ferc_stream ferc_stream;

typedef struct ferc_stream_params {
    float smooth;        /* weight of the new frame in the moving average, (0, 1]; 1 = none (0.3) */
    int memory;          /* frames a track survives without a detection (10) */
    int detect_every;    /* run the detector on every Nth frame, reuse the tracked boxes between (1) */
    float iou_threshold; /* least box overlap that continues a track (0.3) */
} ferc_stream_params;

void ferc_stream_params_default(ferc_stream_params *p);

typedef struct ferc_tracked_face {
    ferc_face face;                    /* box; label, confidence, probs smoothed over the track */
    int id;                            /* 1, 2, ...: the same while the face is followed */
    float raw_probs[FERC_MAX_CLASSES]; /* this frame's own probabilities */
} ferc_tracked_face;

/* r must outlive the stream; p NULL: the defaults. */
int ferc_stream_create(ferc_stream **out, ferc_recognizer *r, const ferc_stream_params *p);
/* The next frame: *faces malloc'ed (NULL when none; the caller frees it), *count set. */
int ferc_stream_process(ferc_stream *s, const ferc_image *frame, ferc_tracked_face **faces, int *count);
void ferc_stream_destroy(ferc_stream *s);

#ifdef __cplusplus
}
#endif
#endif
