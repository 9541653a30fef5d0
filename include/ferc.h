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

#ifdef __cplusplus
}
#endif
#endif
