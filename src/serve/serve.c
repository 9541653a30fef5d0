/* serve: the HTTP server on libmicrohttpd (see serve.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <omp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include "ferc.h"

#include "core/core.h"
#include "face/face_json.h"
#include "face/recognize.h"
#include "face/stream.h"
#include "image/image.h"
#include "serve/serve.h"

#define SESSION_ID_MAX 64
#define SESSION_IDLE_S 300.0

enum { R_PAGE, R_HEALTH, R_METRICS, R_MODEL, R_RECOGNIZE, R_CLASSIFY, R_OTHER, R_COUNT };
static const char *const route_names[R_COUNT] = {"/", "/healthz", "/metrics", "/api/v1/model",
                                                 "/api/v1/recognize", "/api/v1/classify", "other"};
static const double latency_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
#define NBUCKETS (sizeof latency_buckets / sizeof *latency_buckets)

typedef struct session {
    char id[SESSION_ID_MAX + 1]; /* "" = free */
    face_stream *fs;
    pthread_mutex_t lock;        /* held while a frame of this session is processed */
    double last_used;
    int users;                   /* requests holding or waiting for the lock */
} session;

struct serve {
    serve_params p;
    char host[256];
    char *token;
    struct MHD_Daemon *d;
    int port;
    face_recognizer *base;
    face_recognizer **pool;      /* workers recognizers: base and its shares */
    int *free_stack, nfree;
    pthread_mutex_t pool_lock;
    pthread_cond_t pool_cond;
    char *model_json;            /* the answer of /api/v1/model */
    session *sessions;
    pthread_mutex_t sessions_lock;
    /* metrics */
    pthread_mutex_t metrics_lock;
    unsigned long long requests[R_COUNT][600];
    unsigned long long buckets[NBUCKETS + 1];
    double latency_sum;
    unsigned long long latency_count;
    atomic_ullong faces;
    atomic_int in_flight;
    pthread_mutex_t log_lock;
};

/* One request's state, from its first call of the access handler to its completion. */
typedef struct request {
    int route;
    double t0;
    uint8_t *body;
    size_t len, cap;
    int refused;       /* a response was queued before the body was complete */
    int status;        /* the status answered (0: none yet) */
    size_t bytes_out;
    char method[8];
    char path[96];
    /* the request's inputs, copied from the connection on its first call */
    char *session, *content_type, *content_length, *authorization;
    /* the answer, until it is handed to libmicrohttpd (or to serve_handle's caller) */
    const char *type;
    void *answer;
    int answer_owned;
} request;

void serve_params_default(serve_params *p)
{
    memset(p, 0, sizeof *p);
    p->host = "127.0.0.1";
    p->port = 8080;
    p->workers = 2;
    p->threads = 1;
    p->max_body = (size_t)8 << 20;
    p->max_pixels = 40000000;
    p->timeout_s = 10;
    p->max_sessions = 64;
    p->tta = CLASSIFY_TTA_FLIP;
    p->bf16 = false;
    p->detector = FACE_DETECTOR_BLAZEFACE;
}

static void logf_(serve *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(serve *s, const char *fmt, ...)
{
    if (!s->p.log) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&s->log_lock);
    s->p.log(s->p.log_cls, line);
    pthread_mutex_unlock(&s->log_lock);
}

/* ---- responses ---------------------------------------------------------------------------- */

/* Records the answer (body taken over when must_free); queue_answer sends it. */
static int reply(request *rq, int status, const char *type, void *body, size_t len, int must_free)
{
    if (rq->answer_owned) free(rq->answer);
    rq->status = status;
    rq->type = type;
    rq->answer = body;
    rq->bytes_out = len;
    rq->answer_owned = must_free;
    return 0;
}

static int reply_json(request *rq, int status, char *json)
{
    if (!json) {
        static const char oom[] = "{\"error\": \"out of memory\"}";
        return reply(rq, MHD_HTTP_SERVICE_UNAVAILABLE, "application/json", (void *)oom, sizeof oom - 1, 0);
    }
    return reply(rq, status, "application/json", json, strlen(json), 1);
}

static int reply_error(request *rq, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int reply_error(request *rq, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON *o = cJSON_CreateObject();
    char *text = NULL;
    if (o && cJSON_AddStringToObject(o, "error", msg)) text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return reply_json(rq, status, text);
}

/* Hands the recorded answer to libmicrohttpd. */
static enum MHD_Result queue_answer(struct MHD_Connection *c, request *rq)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(rq->bytes_out, rq->answer,
                                                             rq->answer_owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO; /* the answer stays with rq and is freed with it */
    rq->answer_owned = 0;  /* libmicrohttpd frees it now */
    rq->answer = NULL;
    MHD_add_response_header(r, "Content-Type", rq->type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    if (rq->status == MHD_HTTP_UNAUTHORIZED) MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    if (rq->status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(r, "Allow", rq->route == R_RECOGNIZE || rq->route == R_CLASSIFY ? "POST" : "GET, HEAD");
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)rq->status, r);
    MHD_destroy_response(r);
    return ok;
}

static void request_free(request *rq)
{
    if (!rq) return;
    if (rq->answer_owned) free(rq->answer);
    free(rq->body);
    free(rq->session), free(rq->content_type), free(rq->content_length), free(rq->authorization);
    free(rq);
}

/* ---- the worker pool ---------------------------------------------------------------------- */

static face_recognizer *acquire(serve *s, int *slot)
{
    pthread_mutex_lock(&s->pool_lock);
    while (!s->nfree) pthread_cond_wait(&s->pool_cond, &s->pool_lock);
    *slot = s->free_stack[--s->nfree];
    pthread_mutex_unlock(&s->pool_lock);
    omp_set_num_threads(s->p.threads);
    return s->pool[*slot];
}

static void release(serve *s, int slot)
{
    pthread_mutex_lock(&s->pool_lock);
    s->free_stack[s->nfree++] = slot;
    pthread_cond_signal(&s->pool_cond);
    pthread_mutex_unlock(&s->pool_lock);
}

/* ---- sessions ----------------------------------------------------------------------------- */

static int valid_session_id(const char *id)
{
    size_t n = strlen(id);
    if (n < 1 || n > SESSION_ID_MAX) return 0;
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
            return 0;
    return 1;
}

/* The session with this id, made (or recycled from the least recently used idle one) if
 * needed, with its users count raised; NULL when every entry is in use or out of memory. */
static session *session_get(serve *s, const char *id)
{
    pthread_mutex_lock(&s->sessions_lock);
    session *hit = NULL, *victim = NULL;
    for (int i = 0; i < s->p.max_sessions; i++) {
        session *e = &s->sessions[i];
        if (e->id[0] && !strcmp(e->id, id)) {
            hit = e;
            break;
        }
        if (e->users) continue;
        if (!victim || !e->id[0] || (victim->id[0] && e->last_used < victim->last_used)) victim = e;
    }
    if (!hit && victim) {
        face_stream_destroy(victim->fs);
        victim->fs = NULL;
        victim->id[0] = 0;
        face_track_params tp;
        face_track_params_default(&tp);
        if (!face_stream_create(&victim->fs, face_recognizer_num_classes(s->base), &tp, 1)) {
            snprintf(victim->id, sizeof victim->id, "%s", id);
            hit = victim;
        }
    }
    if (hit) {
        hit->users++;
        hit->last_used = time_now();
    }
    pthread_mutex_unlock(&s->sessions_lock);
    return hit;
}

static void session_put(serve *s, session *e)
{
    pthread_mutex_lock(&s->sessions_lock);
    e->users--;
    e->last_used = time_now();
    pthread_mutex_unlock(&s->sessions_lock);
}

static int sessions_active(serve *s)
{
    int n = 0;
    const double now = time_now();
    pthread_mutex_lock(&s->sessions_lock);
    for (int i = 0; i < s->p.max_sessions; i++)
        if (s->sessions[i].id[0] && now - s->sessions[i].last_used < SESSION_IDLE_S) n++;
    pthread_mutex_unlock(&s->sessions_lock);
    return n;
}

/* ---- the API ------------------------------------------------------------------------------ */

static int decode_body(serve *s, request *rq, image *img, int *res)
{
    if (!rq->len) {
        *res = reply_error(rq, MHD_HTTP_BAD_REQUEST, "empty body: send a JPEG or PNG image");
        return -1;
    }
    int w, h;
    if (image_probe(rq->body, rq->len, &w, &h, "body")) {
        *res = reply_error(rq, MHD_HTTP_BAD_REQUEST, "%s", ferc_last_error());
        return -1;
    }
    if ((long long)w * h > s->p.max_pixels) {
        *res = reply_error(rq, MHD_HTTP_CONTENT_TOO_LARGE, "image of %dx%d pixels: more than the limit of %lld", w, h,
                           s->p.max_pixels);
        return -1;
    }
    int rc = image_decode(img, rq->body, rq->len, IMAGE_MODE_RGB, 1, "body");
    if (rc) {
        *res = reply_error(rq, rc == FERC_ERR_NOMEM ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_BAD_REQUEST, "%s",
                           ferc_last_error());
        return -1;
    }
    return 0;
}

static double ms(double s) { return 1e3 * s; }

/* An answer written with stdio into memory: mem_end gives the text (NULL when out of memory). */
typedef struct mem_out {
    FILE *f;
    char *text;
    size_t len;
} mem_out;

static FILE *mem_begin(mem_out *j)
{
    j->text = NULL;
    j->len = 0;
    return j->f = open_memstream(&j->text, &j->len);
}

static char *mem_end(mem_out *j)
{
    if (fclose(j->f)) {
        free(j->text);
        return NULL;
    }
    return j->text;
}

static int api_recognize(serve *s, request *rq)
{
    const char *sid = rq->session;
    if (sid && !valid_session_id(sid))
        return reply_error(rq, MHD_HTTP_BAD_REQUEST, "session must be 1 to %d of A-Z a-z 0-9 - _", SESSION_ID_MAX);
    const double t0 = time_now();
    image img;
    int res;
    if (decode_body(s, rq, &img, &res)) return res;
    const double t_dec = time_now() - t0;
    session *e = NULL;
    if (sid && !(e = session_get(s, sid))) {
        image_free(&img);
        return reply_error(rq, MHD_HTTP_SERVICE_UNAVAILABLE, "every one of the %d sessions is busy", s->p.max_sessions);
    }
    int slot;
    face_recognizer *r = acquire(s, &slot);
    const int k = face_recognizer_num_classes(r);
    face_box *boxes = NULL;
    float *logits = NULL, *probs = NULL;
    face_stream_result sr;
    int n = 0, rc;
    double t_det = 0, t_cls = 0;
    long long frame = 0;
    if (e) {
        pthread_mutex_lock(&e->lock);
        rc = face_stream_process(e->fs, r, &img, &sr);
        frame = face_stream_frames(e->fs);
        if (!rc) {
            n = sr.n;
            t_det = sr.detect_s;
            t_cls = sr.classify_s + sr.track_s;
        }
    } else {
        double t = time_now();
        rc = face_recognizer_detect(r, &img, &boxes, &n);
        t_det = time_now() - t;
        t = time_now();
        const size_t sz = (size_t)n * k * sizeof(float);
        if (!rc && n) {
            logits = malloc(sz), probs = malloc(sz);
            if (!logits || !probs) rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory");
            else rc = face_recognizer_classify_detected(r, &img, boxes, n, logits, probs);
        }
        t_cls = time_now() - t;
    }
    /* the CNN's detections live in the recognizer: copied before another request takes it */
    blazeface_det *dets = NULL;
    if (!rc && n) {
        int nd = n; /* a stream's dets (NULL on a tracked frame) match its boxes */
        const blazeface_det *d = e ? sr.dets : face_recognizer_last_detections(r, &nd);
        if (d && nd == n && (dets = malloc((size_t)n * sizeof *dets))) memcpy(dets, d, (size_t)n * sizeof *dets);
    }
    release(s, slot);
    char *json = NULL;
    mem_out jo;
    FILE *out = rc ? NULL : mem_begin(&jo);
    if (out) {
        const char *const *names = face_recognizer_class_names(r);
        fprintf(out, "{\"width\": %d, \"height\": %d, ", img.width, img.height);
        if (e) {
            fputs("\"session\": ", out);
            face_json_string(out, e->id);
            fprintf(out, ", \"frame\": %lld, ", frame);
        }
        fputs("\"faces\": [", out);
        for (int i = 0; i < n; i++) {
            const size_t o = (size_t)i * k;
            face_json_face f = e ? (face_json_face){.box = &sr.boxes[i], .id = sr.ids[i], .probs = sr.smoothed + o,
                                                    .raw_probs = sr.probs + o, .logits = sr.logits + o}
                                 : (face_json_face){.box = &boxes[i], .id = -1, .probs = probs + o, .logits = logits + o};
            f.det = dets ? &dets[i] : NULL;
            if (i) fputs(", ", out);
            face_json_write(out, names, k, &f);
        }
        fprintf(out, "], \"timing\": {\"decode_ms\": %.3f, \"detect_ms\": %.3f, \"classify_ms\": %.3f, \"total_ms\": %.3f}}",
                ms(t_dec), ms(t_det), ms(t_cls), ms(time_now() - t0));
        json = mem_end(&jo);
    }
    if (e) {
        pthread_mutex_unlock(&e->lock);
        session_put(s, e);
    }
    free(boxes), free(logits), free(probs), free(dets);
    image_free(&img);
    if (rc) return reply_error(rq, rc == FERC_ERR_NOMEM ? 503 : 500, "%s", ferc_last_error());
    atomic_fetch_add(&s->faces, (unsigned long long)n);
    return reply_json(rq, MHD_HTTP_OK, json);
}

static int api_classify(serve *s, request *rq)
{
    const double t0 = time_now();
    image img;
    int res;
    if (decode_body(s, rq, &img, &res)) return res;
    int slot;
    face_recognizer *r = acquire(s, &slot);
    const int k = face_recognizer_num_classes(r);
    float *lp = malloc(2 * (size_t)k * sizeof(float));
    int rc = lp ? face_recognizer_classify_crop(r, &img, lp, lp + k) : ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    release(s, slot);
    char *json = NULL;
    mem_out jo;
    FILE *out = rc ? NULL : mem_begin(&jo);
    if (out) {
        const char *const *names = face_recognizer_class_names(r);
        const int lab = face_argmax(lp + k, k);
        fputs("{\"label\": ", out);
        face_json_string(out, names[lab]);
        fputs(", \"confidence\": ", out);
        face_json_number(out, lp[k + lab]);
        fputs(", \"probabilities\": ", out);
        face_json_probs(out, names, k, lp + k);
        fputs(", \"logits\": [", out);
        for (int j = 0; j < k; j++) {
            if (j) fputs(", ", out);
            face_json_number(out, lp[j]);
        }
        fprintf(out, "], \"timing\": {\"total_ms\": %.3f}}", ms(time_now() - t0));
        json = mem_end(&jo);
    }
    free(lp);
    image_free(&img);
    if (rc) return reply_error(rq, rc == FERC_ERR_NOMEM ? 503 : 500, "%s", ferc_last_error());
    return reply_json(rq, MHD_HTTP_OK, json);
}

/* {"arch", "classes", "input_size", "tta", "model", "training", "metrics"}: metrics are the
 * model card's validation figures, from <model>.eval.json next to the model file (the
 * output of `ferc eval --json`), null when there is none. */
static char *model_info(serve *s, const char *model_path)
{
    const models_meta *m = face_recognizer_meta(s->base);
    cJSON *o = cJSON_CreateObject(), *cls = cJSON_AddArrayToObject(o, "classes");
    cJSON_AddStringToObject(o, "arch", m->arch);
    for (int i = 0; i < m->num_classes; i++)
        cJSON_AddItemToArray(cls, cJSON_CreateString(face_recognizer_class_name(s->base, i)));
    cJSON_AddNumberToObject(o, "input_size", m->img_size);
    cJSON_AddStringToObject(o, "tta", classify_tta_name(s->p.tta));
    cJSON_AddStringToObject(o, "precision", s->p.bf16 ? "bf16" : "fp32");
    cJSON_AddStringToObject(o, "detector", face_detector_name(s->p.detector));
    const char *slash = strrchr(model_path, '/');
    cJSON_AddStringToObject(o, "model", slash ? slash + 1 : model_path);
    cJSON *tr = m->training_json ? cJSON_Parse(m->training_json) : NULL;
    cJSON_AddItemToObject(o, "training", tr ? tr : cJSON_CreateNull());
    char path[4096];
    snprintf(path, sizeof path, "%s", model_path);
    char *dot = strrchr(path, '.');
    if (dot && !strchr(dot, '/')) *dot = 0;
    strncat(path, ".eval.json", sizeof path - strlen(path) - 1);
    cJSON *metrics = NULL;
    uint8_t *text;
    size_t n;
    if (!file_read_all(path, &text, &n)) {
        metrics = cJSON_ParseWithLength((const char *)text, n);
        free(text);
    }
    ferc_clear_error();
    cJSON_AddItemToObject(o, "metrics", metrics ? metrics : cJSON_CreateNull());
    char *json = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return json;
}

static char *metrics_text(serve *s)
{
    mem_out jo;
    FILE *out = mem_begin(&jo);
    if (!out) return NULL;
    fputs("# HELP ferc_http_requests_total HTTP requests answered, by route and status.\n"
          "# TYPE ferc_http_requests_total counter\n", out);
    pthread_mutex_lock(&s->metrics_lock);
    for (int r = 0; r < R_COUNT; r++)
        for (int st = 100; st < 600; st++)
            if (s->requests[r][st])
                fprintf(out, "ferc_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n", route_names[r], st,
                        s->requests[r][st]);
    fputs("# HELP ferc_http_request_duration_seconds Time from a request's first byte to its answer.\n"
          "# TYPE ferc_http_request_duration_seconds histogram\n", out);
    unsigned long long cum = 0;
    for (size_t b = 0; b < NBUCKETS; b++) {
        cum += s->buckets[b];
        fprintf(out, "ferc_http_request_duration_seconds_bucket{le=\"%g\"} %llu\n", latency_buckets[b], cum);
    }
    cum += s->buckets[NBUCKETS];
    fprintf(out, "ferc_http_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n", cum);
    fprintf(out, "ferc_http_request_duration_seconds_sum %.6f\nferc_http_request_duration_seconds_count %llu\n",
            s->latency_sum, s->latency_count);
    pthread_mutex_unlock(&s->metrics_lock);
    fprintf(out, "# HELP ferc_faces_processed_total Faces detected and classified.\n"
                 "# TYPE ferc_faces_processed_total counter\nferc_faces_processed_total %llu\n",
            (unsigned long long)atomic_load(&s->faces));
    fprintf(out, "# HELP ferc_http_requests_in_flight Requests being processed.\n"
                 "# TYPE ferc_http_requests_in_flight gauge\nferc_http_requests_in_flight %d\n",
            atomic_load(&s->in_flight));
    fprintf(out, "# HELP ferc_sessions_active Tracking sessions used in the last %g s.\n"
                 "# TYPE ferc_sessions_active gauge\nferc_sessions_active %d\n",
            SESSION_IDLE_S, sessions_active(s));
    return mem_end(&jo);
}

/* ---- libmicrohttpd callbacks -------------------------------------------------------------- */

static int route_of(const char *url)
{
    for (int r = 0; r < R_OTHER; r++)
        if (!strcmp(url, route_names[r])) return r;
    return R_OTHER;
}

static int authorized(serve *s, const request *rq)
{
    if (!s->token) return 1;
    const char *h = rq->authorization;
    if (!h || strncasecmp(h, "Bearer ", 7)) return 0;
    h += 7;
    const size_t n = strlen(s->token);
    if (strlen(h) != n) return 0;
    unsigned char diff = 0; /* constant time in the token's length */
    for (size_t i = 0; i < n; i++) diff |= (unsigned char)(h[i] ^ s->token[i]);
    return diff == 0;
}

static int image_content_type(const char *t)
{
    if (!t) return 1; /* none given: the body is sniffed */
    static const char *const ok[] = {"image/jpeg", "image/png", "application/octet-stream"};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        size_t n = strlen(ok[i]);
        if (!strncasecmp(t, ok[i], n) && (t[n] == 0 || t[n] == ';' || t[n] == ' ')) return 1;
    }
    return 0;
}

/* The first call of a request: checks that need no body. Returns 1 when the request is
 * refused (its answer recorded, to be sent before the body is read). */
static int precheck(serve *s, request *rq, const char *method, int *res)
{
    const int post = rq->route == R_RECOGNIZE || rq->route == R_CLASSIFY;
    const int is_get = !strcmp(method, MHD_HTTP_METHOD_GET) || !strcmp(method, MHD_HTTP_METHOD_HEAD);
    if (rq->route == R_OTHER) {
        *res = reply_error(rq, MHD_HTTP_NOT_FOUND, "no route %s %s", method, rq->path);
        return 1;
    }
    if (!strncmp(rq->path, "/api/", 5) && !authorized(s, rq)) {
        *res = reply_error(rq, MHD_HTTP_UNAUTHORIZED, "this server needs \"Authorization: Bearer TOKEN\"");
        return 1;
    }
    if (post ? strcmp(method, MHD_HTTP_METHOD_POST) : !is_get) {
        *res = reply_error(rq, MHD_HTTP_METHOD_NOT_ALLOWED, "%s %s: use %s", method, rq->path, post ? "POST" : "GET");
        return 1;
    }
    if (!post) return 0;
    const char *type = rq->content_type;
    if (!image_content_type(type)) {
        *res = reply_error(rq, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
                           "content type %s: send image/jpeg or image/png (or application/octet-stream)", type);
        return 1;
    }
    const char *cl = rq->content_length;
    if (cl) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        if (errno || end == cl || n > s->p.max_body) {
            *res = reply_error(rq, MHD_HTTP_CONTENT_TOO_LARGE, "body of %s bytes: more than the limit of %zu", cl,
                               s->p.max_body);
            return 1;
        }
        if (n && !(rq->body = malloc((size_t)n))) {
            *res = reply_error(rq, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory for a body of %llu bytes", n);
            return 1;
        }
        rq->cap = (size_t)n;
    }
    return 0;
}

static int append(serve *s, request *rq, const char *data, size_t n)
{
    if (n > s->p.max_body - rq->len) return MHD_HTTP_CONTENT_TOO_LARGE;
    if (rq->len + n > rq->cap) {
        size_t cap = rq->cap ? rq->cap : 65536;
        while (cap < rq->len + n) cap *= 2;
        if (cap > s->p.max_body) cap = s->p.max_body;
        uint8_t *b = realloc(rq->body, cap);
        if (!b) return MHD_HTTP_SERVICE_UNAVAILABLE;
        rq->body = b;
        rq->cap = cap;
    }
    memcpy(rq->body + rq->len, data, n);
    rq->len += n;
    return 0;
}

/* The answer of a request whose body is complete. */
static void dispatch(serve *s, request *rq)
{
    switch (rq->route) {
    case R_PAGE:
        reply(rq, MHD_HTTP_OK, "text/html; charset=utf-8", (void *)serve_page_html, serve_page_html_len, 0);
        break;
    case R_HEALTH: {
        static const char ok[] = "{\"status\": \"ok\"}";
        reply(rq, MHD_HTTP_OK, "application/json", (void *)ok, sizeof ok - 1, 0);
        break;
    }
    case R_METRICS: {
        char *t = metrics_text(s);
        if (!t) reply_error(rq, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory");
        else reply(rq, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", t, strlen(t), 1);
        break;
    }
    case R_MODEL:
        reply(rq, MHD_HTTP_OK, "application/json", s->model_json, strlen(s->model_json), 0);
        break;
    case R_RECOGNIZE:
        api_recognize(s, rq);
        break;
    case R_CLASSIFY:
        api_classify(s, rq);
        break;
    default:
        reply_error(rq, MHD_HTTP_NOT_FOUND, "no route %s", rq->path);
    }
}

static int dup_value(char **dst, const char *v)
{
    *dst = NULL;
    return v && !(*dst = strdup(v)) ? -1 : 0;
}

/* A new request: its inputs copied, the checks that need no body run. 1 when refused (an
 * answer is recorded), -1 when out of memory. */
static int request_begin(serve *s, request *rq, const char *method, const char *url, const char *session_id,
                         const char *content_type, const char *content_length, const char *authorization)
{
    rq->t0 = time_now();
    rq->route = route_of(url);
    snprintf(rq->method, sizeof rq->method, "%s", method);
    snprintf(rq->path, sizeof rq->path, "%s", url);
    if (dup_value(&rq->session, session_id) || dup_value(&rq->content_type, content_type) ||
        dup_value(&rq->content_length, content_length) || dup_value(&rq->authorization, authorization))
        return -1;
    int res;
    return (rq->refused = precheck(s, rq, method, &res));
}

/* More body: 0, or refused (an answer recorded; the rest of the body is to be discarded). */
static int request_body(serve *s, request *rq, const char *data, size_t n)
{
    if (rq->refused) return 0;
    int st = append(s, rq, data, n);
    if (!st) return 0;
    rq->refused = 1;
    free(rq->body);
    rq->body = NULL;
    rq->len = rq->cap = 0;
    if (st == MHD_HTTP_CONTENT_TOO_LARGE) reply_error(rq, st, "body over the limit of %zu bytes", s->p.max_body);
    else reply_error(rq, st, "out of memory for the body");
    return 1;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size, void **req_cls)
{
    serve *s = cls;
    request *rq = *req_cls;
    if (!rq) {
        if (!(rq = calloc(1, sizeof *rq))) return MHD_NO;
        *req_cls = rq;
        atomic_fetch_add(&s->in_flight, 1);
        int r = request_begin(s, rq, method, url, MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "session"),
                              MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE),
                              MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH),
                              MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION));
        if (r < 0) return MHD_NO; /* out of memory: the connection is closed, on_completed frees rq */
        /* refused from its headers: answered before the body is read */
        return r ? queue_answer(c, rq) : MHD_YES;
    }
    if (*upload_data_size) {
        const int refused_now = request_body(s, rq, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return refused_now ? queue_answer(c, rq) : MHD_YES;
    }
    if (rq->refused) return MHD_YES;
    dispatch(s, rq);
    return queue_answer(c, rq);
}

int serve_handle(serve *s, serve_exchange *x)
{
    x->status = 0;
    x->type = NULL;
    x->answer = NULL;
    x->answer_len = 0;
    request *rq = calloc(1, sizeof *rq);
    if (!rq) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    atomic_fetch_add(&s->in_flight, 1);
    int r = request_begin(s, rq, x->method ? x->method : "GET", x->url ? x->url : "/", x->session, x->content_type,
                          x->content_length, x->authorization);
    if (!r) {
        /* the body in pieces of at most 64 KiB, as a socket would deliver it */
        for (size_t off = 0; off < x->len && !rq->refused; off += 65536)
            request_body(s, rq, (const char *)x->body + off, x->len - off < 65536 ? x->len - off : 65536);
        if (!rq->refused) dispatch(s, rq);
    }
    int rc = r < 0 ? ferc_set_error(FERC_ERR_NOMEM, "out of memory") : FERC_OK;
    if (!rc && rq->answer && !(x->answer = malloc(rq->bytes_out + 1))) rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    if (!rc) {
        if (rq->answer) memcpy(x->answer, rq->answer, rq->bytes_out), x->answer[rq->bytes_out] = 0;
        x->status = rq->status;
        x->type = rq->type;
        x->answer_len = rq->bytes_out;
    }
    request_free(rq);
    atomic_fetch_sub(&s->in_flight, 1);
    return rc;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls, enum MHD_RequestTerminationCode toe)
{
    serve *s = cls;
    request *rq = *req_cls;
    if (!rq) return;
    *req_cls = NULL;
    const double dt = time_now() - rq->t0;
    pthread_mutex_lock(&s->metrics_lock);
    if (rq->status >= 100 && rq->status < 600) s->requests[rq->route][rq->status]++;
    size_t b = 0;
    while (b < NBUCKETS && dt > latency_buckets[b]) b++;
    s->buckets[b]++;
    s->latency_sum += dt;
    s->latency_count++;
    pthread_mutex_unlock(&s->metrics_lock);
    char addr[INET6_ADDRSTRLEN] = "?";
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci && ci->client_addr) {
        const struct sockaddr *sa = ci->client_addr;
        if (sa->sa_family == AF_INET) inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, addr, sizeof addr);
        else if (sa->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, addr, sizeof addr);
    }
    static const char *const ends[] = {"", " (error)", " (timed out)", " (daemon stopped)", " (read error)",
                                       " (client aborted)"};
    logf_(s, "%s %s %s %d %zu B %.1f ms%s", addr, rq->method, rq->path, rq->status, rq->bytes_out, 1e3 * dt,
          (unsigned)toe < sizeof ends / sizeof *ends ? ends[toe] : " (?)");
    request_free(rq);
    atomic_fetch_sub(&s->in_flight, 1);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    serve *s = cls;
    if (!s->p.log) return;
    char line[512];
    /* The format is libmicrohttpd's own (MHD_OPTION_EXTERNAL_LOGGER), never a client's. */
#if defined(__clang__)
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wformat-nonliteral"
#endif
    vsnprintf(line, sizeof line, fmt, ap);
#if defined(__clang__)
#pragma clang diagnostic pop
#endif
    size_t n = strlen(line);
    while (n && line[n - 1] == '\n') line[--n] = 0;
    logf_(s, "libmicrohttpd: %s", line);
}

/* ---- start and stop ----------------------------------------------------------------------- */

static void destroy(serve *s)
{
    if (!s) return;
    if (s->pool)
        for (int i = s->p.workers - 1; i >= 0; i--) face_recognizer_destroy(s->pool[i]); /* shares before base */
    free(s->pool);
    free(s->free_stack);
    if (s->sessions)
        for (int i = 0; i < s->p.max_sessions; i++) {
            face_stream_destroy(s->sessions[i].fs);
            pthread_mutex_destroy(&s->sessions[i].lock);
        }
    free(s->sessions);
    free(s->model_json);
    free(s->token);
    pthread_mutex_destroy(&s->pool_lock);
    pthread_cond_destroy(&s->pool_cond);
    pthread_mutex_destroy(&s->sessions_lock);
    pthread_mutex_destroy(&s->metrics_lock);
    pthread_mutex_destroy(&s->log_lock);
    free(s);
}

static int bind_address(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV | AI_PASSIVE};
    struct addrinfo *ai = NULL;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    int e = getaddrinfo(host, portstr, &hints, &ai);
    if (e || !ai) return ferc_set_error(FERC_ERR_INVALID, "serve: cannot resolve host '%s': %s", host, gai_strerror(e));
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return FERC_OK;
}

static int create(serve **out, const serve_params *p, int listen);

int serve_start(serve **out, const serve_params *p) { return create(out, p, 1); }
int serve_create(serve **out, const serve_params *p) { return create(out, p, 0); }

static int create(serve **out, const serve_params *p, int listen)
{
    *out = NULL;
    if (p->workers < 1 || p->workers > 256) return ferc_set_error(FERC_ERR_INVALID, "serve: workers must be in [1, 256]");
    if (p->threads < 1 || p->threads > 256) return ferc_set_error(FERC_ERR_INVALID, "serve: threads must be in [1, 256]");
    if (p->port < 0 || p->port > 65535) return ferc_set_error(FERC_ERR_INVALID, "serve: port must be in [0, 65535]");
    if (p->max_body < 1 || p->max_pixels < 1 || p->timeout_s < 1 || p->max_sessions < 1)
        return ferc_set_error(FERC_ERR_INVALID, "serve: max body, max pixels, timeout and sessions must be positive");
    if (p->token && !*p->token) return ferc_set_error(FERC_ERR_INVALID, "serve: the token is empty");
    const char *model = p->model ? p->model : ferc_default_model_path();
    if (!model) return ferc_set_error(FERC_ERR_NOT_FOUND, "serve: no model given and the default model is not installed");
    serve *s = calloc(1, sizeof *s);
    if (!s) return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    s->p = *p;
    pthread_mutex_init(&s->pool_lock, NULL);
    pthread_cond_init(&s->pool_cond, NULL);
    pthread_mutex_init(&s->sessions_lock, NULL);
    pthread_mutex_init(&s->metrics_lock, NULL);
    pthread_mutex_init(&s->log_lock, NULL);
    snprintf(s->host, sizeof s->host, "%s", p->host ? p->host : "127.0.0.1");
    s->p.host = s->host;
    s->p.model = NULL;
    s->p.cascade = NULL;
    int rc = FERC_OK;
    if (p->token && !(s->token = strdup(p->token))) rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    s->p.token = NULL;
    face_recog_params rp;
    face_recog_params_default(&rp);
    rp.tta = p->tta;
    rp.bf16 = p->bf16;
    rp.detector = p->detector;
    rp.align = p->align;
    s->pool = calloc((size_t)p->workers, sizeof *s->pool);
    s->free_stack = calloc((size_t)p->workers, sizeof *s->free_stack);
    s->sessions = calloc((size_t)p->max_sessions, sizeof *s->sessions);
    if (!rc && (!s->pool || !s->free_stack || !s->sessions)) rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    if (!rc) {
        for (int i = 0; i < p->max_sessions; i++) pthread_mutex_init(&s->sessions[i].lock, NULL);
    } else if (s->sessions) {
        free(s->sessions);
        s->sessions = NULL;
    }
    if (!rc && !(rc = face_recognizer_create(&s->base, model, p->cascade, &rp))) {
        s->pool[0] = s->base;
        for (int i = 1; !rc && i < p->workers; i++) rc = face_recognizer_share(&s->pool[i], s->base);
        for (int i = 0; i < p->workers; i++) s->free_stack[i] = i;
        s->nfree = p->workers;
    }
    if (!rc && face_recognizer_num_classes(s->base) > FERC_MAX_CLASSES)
        rc = ferc_set_error(FERC_ERR_UNSUPPORTED, "%s: more than %d classes", model, FERC_MAX_CLASSES);
    if (!rc && !(s->model_json = model_info(s, model))) rc = ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    struct sockaddr_storage ss;
    socklen_t sslen = 0;
    if (!rc && listen) rc = bind_address(s->host, p->port, &ss, &sslen);
    if (rc) {
        destroy(s);
        return rc;
    }
    if (!listen) {
        *out = s;
        return FERC_OK;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG | MHD_USE_AUTO;
    if (ss.ss_family == AF_INET6) flags |= MHD_USE_IPv6;
    s->d = MHD_start_daemon(flags, (uint16_t)p->port, NULL, NULL, on_request, s,
                            MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s, /* first, so that it gets every message */
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                            MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)p->workers,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)p->timeout_s,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)128 * 1024,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                            MHD_OPTION_END);
    if (!s->d) {
        rc = ferc_set_error(FERC_ERR_IO, "serve: cannot listen on %s port %d (in use, or not an address of this machine?)",
                            s->host, p->port);
        destroy(s);
        return rc;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : p->port;
    *out = s;
    return FERC_OK;
}

int serve_port(const serve *s) { return s->port; }
int serve_in_flight(const serve *s) { return atomic_load(&((serve *)s)->in_flight); }

void serve_stop(serve *s)
{
    if (!s) return;
    if (s->d) {
        MHD_socket fd = MHD_quiesce_daemon(s->d); /* no new connections from here on */
        const double until = time_now() + 30;
        while (atomic_load(&s->in_flight) > 0 && time_now() < until) {
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        MHD_stop_daemon(s->d);
        if (fd != MHD_INVALID_SOCKET) close(fd);
    }
    destroy(s);
}
