/* serve: ferc's HTTP server (libmicrohttpd): a web page that watches the user's camera, and a
 * versioned JSON API, on one loaded model shared by a fixed pool of workers.
 *
 * Routes
 *   GET  /                    the page (HTML, JS and CSS embedded in the binary; no network)
 *   POST /api/v1/recognize    body: a JPEG or PNG image; every face's box, label, confidence,
 *                             probabilities and logits, plus timings. ?session=ID (1-64 of
 *                             [A-Za-z0-9_-]) tracks faces across the frames of that session
 *                             (stable ids, smoothed probabilities: face/stream, as ferc camera)
 *   POST /api/v1/classify     body: a face crop; its probabilities
 *   GET  /api/v1/model        arch, classes, input size, training summary, validation metrics
 *   GET  /healthz             {"status": "ok"}
 *   GET  /metrics             Prometheus text: requests by route and status, a latency
 *                             histogram, faces processed, requests in flight, sessions
 * Errors are JSON {"error": MESSAGE} with a 4xx/5xx status: 400 empty or undecodable body or
 * bad session id, 401 missing or wrong bearer token (when a token is set, on /api routes),
 * 404, 405, 413 body over max_body (refused from its Content-Length before it is read, or
 * as soon as a chunked body passes the limit) or image over max_pixels (from its header,
 * before decoding), 415 a content type other than image/jpeg, image/png or
 * application/octet-stream, 503 out of memory.
 *
 * Concurrency: `workers` libmicrohttpd threads, each with its own face_recognizer made by
 * face_recognizer_share from one loaded model (the weights exist once). Sessions are kept in
 * a table of max_sessions entries; the least recently used one is dropped when it is full.
 * Idle connections time out after timeout_s seconds.
 *
 * Usage:
 *     serve_params p;
 *     serve_params_default(&p);
 *     p.port = 0;                       // any free port
 *     serve *s;
 *     if (serve_start(&s, &p)) fail(ferc_last_error());
 *     printf("http://127.0.0.1:%d/\n", serve_port(s));
 *     ... until a signal ...
 *     serve_stop(s);                    // finishes the requests in flight
 */
#ifndef FERC_SERVE_H
#define FERC_SERVE_H

#include <stddef.h>

#include "face/recognize.h"
#include "models/classify.h"

typedef struct serve_params {
    const char *model;     /* NULL: ferc_default_model_path() */
    const char *cascade;   /* NULL: the default frontal-face cascade */
    const char *host;      /* address to bind (default "127.0.0.1") */
    int port;              /* 0: a free port (see serve_port); default 8080 */
    int workers;           /* threads serving requests, each with its own plans (default 2) */
    int threads;           /* compute (OpenMP) threads per worker (default 1) */
    const char *token;     /* non-NULL: /api routes need "Authorization: Bearer TOKEN" */
    size_t max_body;       /* bytes (default 8 MiB) */
    long long max_pixels;  /* width * height of an uploaded image (default 40 million) */
    int timeout_s;         /* idle connection timeout (default 10) */
    int max_sessions;      /* tracked sessions kept (default 64) */
    classify_tta tta;      /* default flip */
    bool bf16;             /* the classifier in mixed precision (default false: float32) */
    face_detector_kind detector; /* FACE_DETECTOR_BLAZEFACE (default) or FACE_DETECTOR_HAAR */
    int align;             /* turn faces to level their eyes (CNN only; default off) */
    /* One line per request, and the server's own messages; NULL: silent. Called from the
     * workers, one line at a time. */
    void (*log)(void *cls, const char *line);
    void *log_cls;
} serve_params;

void serve_params_default(serve_params *p);

typedef struct serve serve;

int serve_start(serve **out, const serve_params *p);
/* The same server without a socket (nothing listens): requests go through serve_handle. */
int serve_create(serve **out, const serve_params *p);

/* One request through the server's handling, as libmicrohttpd would hand it over (the fuzz
 * harness and the tests drive it this way). Inputs: method, url (path only), the session
 * query argument and three headers (NULL: absent), the body. Outputs: status, type (static),
 * answer (malloc'ed, NUL-terminated; free it), answer_len. */
typedef struct serve_exchange {
    const char *method, *url, *session, *content_type, *content_length, *authorization;
    const uint8_t *body;
    size_t len;
    int status;
    const char *type;
    char *answer;
    size_t answer_len;
} serve_exchange;
int serve_handle(serve *s, serve_exchange *x);

/* The port the server listens on. */
int serve_port(const serve *s);
/* Requests being processed now. */
int serve_in_flight(const serve *s);
/* Stops accepting connections, lets the requests in flight finish (up to 30 s), then stops
 * and frees everything. */
void serve_stop(serve *s);

/* The embedded page (generated at build time from src/serve/page.html). */
extern const unsigned char serve_page_html[];
extern const size_t serve_page_html_len;

#endif
