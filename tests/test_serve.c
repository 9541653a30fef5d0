/* ferc serve's HTTP API (src/serve), started in-process on a free loopback port and driven
 * with libcurl: every route and its status codes; the answer for the committed photo equals
 * `ferc predict --json` on the same file; sessions give stable ids; bad input (empty,
 * undecodable, wrong content type, over --max-pixels, over --max-body by Content-Length and
 * chunked) gets its 4xx with a JSON error and the server keeps serving; the bearer token;
 * Prometheus metrics; a slow client is dropped after the timeout; concurrent clients on two
 * workers get identical answers; stopping with a request in flight lets it finish. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "ferc.h"
#include "core/core.h"
#include "serve/serve.h"
#include "testutil.h"

#define PHOTO "tests/fixtures/faces/Tom_Cruise_avp_2014_4.jpg"

static char model[320];

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}
static uint8_t *photo;
static size_t photo_len;

typedef struct buf {
    char *d;
    size_t n;
} buf;

static size_t on_data(char *p, size_t sz, size_t nm, void *u)
{
    buf *b = u;
    size_t n = sz * nm;
    char *d = realloc(b->d, b->n + n + 1);
    if (!d) return 0;
    memcpy(d + b->n, p, n);
    b->d = d;
    b->n += n;
    b->d[b->n] = 0;
    return n;
}

typedef struct answer {
    long status;
    char *body;        /* NUL-terminated ("" when none) */
    char type[128];    /* Content-Type */
    int curl_rc;
} answer;

static void answer_free(answer *a) { free(a->body); }

typedef struct slow_body {
    const uint8_t *d;
    size_t n, pos;
    int paused_once;
} slow_body;

/* Sends the first half, waits 400 ms, then the rest: the request is in flight meanwhile. */
static size_t slow_read(char *dst, size_t sz, size_t nm, void *u)
{
    slow_body *b = u;
    if (b->pos >= b->n / 2 && !b->paused_once) {
        b->paused_once = 1;
        sleep_ms(400);
    }
    size_t want = sz * nm, left = b->n - b->pos;
    size_t lim = b->paused_once ? left : b->n / 2 - b->pos;
    if (want > lim) want = lim;
    memcpy(dst, b->d + b->pos, want);
    b->pos += want;
    return want;
}

/* method GET or POST; body may be NULL; type the Content-Type (NULL: none); extra a header
 * line or NULL; chunked: Transfer-Encoding chunked; slow: the body arrives in two halves. */
static answer http(int port, const char *method, const char *path, const void *body, size_t len, const char *type,
                   const char *extra, int chunked, int slow)
{
    answer a = {0};
    buf b = {0};
    CURL *c = curl_easy_init();
    char url[512], th[160];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    struct curl_slist *h = NULL;
    h = curl_slist_append(h, "Expect:");
    if (type) {
        snprintf(th, sizeof th, "Content-Type: %s", type);
        h = curl_slist_append(h, th);
    }
    if (extra) h = curl_slist_append(h, extra);
    slow_body sb = {body, len, 0, 0};
    if (!strcmp(method, "POST")) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        if (chunked || slow) {
            if (chunked) h = curl_slist_append(h, "Transfer-Encoding: chunked");
            else curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
            curl_easy_setopt(c, CURLOPT_READFUNCTION, slow_read);
            curl_easy_setopt(c, CURLOPT_READDATA, &sb);
            if (chunked) sb.paused_once = 1; /* no pause, just chunks */
        } else {
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        }
    } else if (strcmp(method, "GET")) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    a.curl_rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a.status);
    char *ct = NULL;
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
    snprintf(a.type, sizeof a.type, "%s", ct ? ct : "");
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    a.body = b.d ? b.d : strdup("");
    return a;
}

static answer get(int port, const char *path) { return http(port, "GET", path, NULL, 0, NULL, NULL, 0, 0); }
static answer post(int port, const char *path, const void *body, size_t len, const char *type)
{
    return http(port, "POST", path, body, len, type, NULL, 0, 0);
}

/* The answer is a JSON object with an "error" string and this status. */
static void check_error(const char *what, answer a, long status)
{
    CHECK(a.status == status, "%s: status %ld, want %ld (body %s)", what, a.status, status, a.body);
    cJSON *j = cJSON_Parse(a.body);
    CHECK(j && cJSON_IsString(cJSON_GetObjectItem(j, "error")), "%s: no JSON error in '%s'", what, a.body);
    CHECK(strstr(a.type, "application/json") != NULL, "%s: content type '%s'", what, a.type);
    cJSON_Delete(j);
    answer_free(&a);
}

static int start(serve **s, void (*log)(void *, const char *), void *cls, void (*tweak)(serve_params *))
{
    serve_params p;
    serve_params_default(&p);
    p.model = model;
    p.port = 0;
    p.log = log;
    p.log_cls = cls;
    if (tweak) tweak(&p);
    int rc = serve_start(s, &p);
    CHECK(rc == FERC_OK, "serve_start: %s", ferc_last_error());
    return rc == FERC_OK ? serve_port(*s) : -1;
}

typedef struct log_book {
    pthread_mutex_t lock;
    int lines, recognize_200;
} log_book;

static void log_count(void *cls, const char *line)
{
    log_book *lb = cls;
    pthread_mutex_lock(&lb->lock);
    lb->lines++;
    if (strstr(line, "POST /api/v1/recognize 200")) lb->recognize_200++;
    pthread_mutex_unlock(&lb->lock);
}

/* The "faces" array of `ferc predict --json PHOTO` with the same model. */
static cJSON *predict_faces(void)
{
    const char *bin = getenv("FERC_BIN");
    if (!bin) return NULL;
    char cmd[1024], *out = NULL;
    snprintf(cmd, sizeof cmd, "'%s' predict --model '%s' --json %s 2>/dev/null", bin, model, PHOTO);
    int rc = test_capture(cmd, &out);
    CHECK(rc == 0, "ferc predict --json failed (%d)", rc);
    cJSON *j = out ? cJSON_Parse(out) : NULL;
    free(out);
    cJSON *faces = j ? cJSON_DetachItemFromObject(cJSON_GetArrayItem(j, 0), "faces") : NULL;
    cJSON_Delete(j);
    return faces;
}

static void test_routes(int port, log_book *lb)
{
    answer a = get(port, "/");
    CHECK(a.status == 200 && strstr(a.type, "text/html") && strstr(a.body, "getUserMedia") &&
              strstr(a.body, "/api/v1/recognize"),
          "GET /: %ld %s", a.status, a.type);
    CHECK(!strstr(a.body, "http://") && !strstr(a.body, "https://"), "the page must not load anything from the network");
    answer_free(&a);

    a = get(port, "/healthz");
    CHECK(a.status == 200 && strstr(a.body, "\"ok\""), "GET /healthz: %ld %s", a.status, a.body);
    answer_free(&a);

    a = get(port, "/api/v1/model");
    cJSON *m = cJSON_Parse(a.body);
    CHECK(a.status == 200 && m, "GET /api/v1/model: %ld %s", a.status, a.body);
    CHECK(m && !strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(m, "arch")), "resnet18"), "model arch");
    CHECK(m && cJSON_GetArraySize(cJSON_GetObjectItem(m, "classes")) == 6, "model classes");
    CHECK(m && cJSON_GetNumberValue(cJSON_GetObjectItem(m, "input_size")) == 48, "model input size");
    CHECK(m && cJSON_HasObjectItem(m, "metrics") && cJSON_HasObjectItem(m, "training"), "model metrics/training keys");
    cJSON_Delete(m);
    answer_free(&a);

    /* the photo: the same faces as ferc predict --json */
    a = post(port, "/api/v1/recognize", photo, photo_len, "image/jpeg");
    cJSON *r = cJSON_Parse(a.body);
    CHECK(a.status == 200 && r, "POST /api/v1/recognize: %ld %s", a.status, a.body);
    cJSON *faces = cJSON_GetObjectItem(r, "faces"), *want = predict_faces();
    CHECK(cJSON_GetArraySize(faces) == 1, "one face in the photo, got %d", cJSON_GetArraySize(faces));
    CHECK(want && cJSON_Compare(faces, want, 1), "recognize's faces differ from ferc predict --json:\n%s", a.body);
    cJSON *timing = cJSON_GetObjectItem(r, "timing");
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(timing, "total_ms")) > 0, "timing.total_ms");
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(r, "width")) == 565 &&
              cJSON_GetNumberValue(cJSON_GetObjectItem(r, "height")) == 800,
          "image size");
    cJSON_Delete(want);
    cJSON_Delete(r);
    answer_free(&a);

    /* sessions: ids stable across frames, one tracker per session */
    for (int frame = 1; frame <= 3; frame++) {
        a = post(port, "/api/v1/recognize?session=test-1", photo, photo_len, "image/jpeg");
        r = cJSON_Parse(a.body);
        cJSON *f0 = cJSON_GetArrayItem(cJSON_GetObjectItem(r, "faces"), 0);
        CHECK(a.status == 200 && f0 && cJSON_GetNumberValue(cJSON_GetObjectItem(f0, "id")) == 1,
              "session frame %d: id 1 expected: %s", frame, a.body);
        CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(r, "frame")) == frame, "session frame count %d", frame);
        CHECK(cJSON_HasObjectItem(f0, "raw_probabilities"), "a tracked face has raw_probabilities");
        cJSON_Delete(r);
        answer_free(&a);
    }
    a = post(port, "/api/v1/recognize?session=other_2", photo, photo_len, "image/png; x=1");
    CHECK(a.status == 200 && strstr(a.body, "\"frame\": 1,"), "a second session starts at frame 1: %s", a.body);
    answer_free(&a);
    check_error("bad session id", post(port, "/api/v1/recognize?session=../x", photo, photo_len, "image/jpeg"), 400);

    /* classify: a face crop */
    a = post(port, "/api/v1/classify", photo, photo_len, "application/octet-stream");
    r = cJSON_Parse(a.body);
    cJSON *pr = cJSON_GetObjectItem(r, "probabilities");
    double sum = 0, best = -1;
    const char *best_name = NULL;
    for (cJSON *e = pr ? pr->child : NULL; e; e = e->next) {
        sum += e->valuedouble;
        if (e->valuedouble > best) best = e->valuedouble, best_name = e->string;
    }
    CHECK(a.status == 200 && cJSON_GetArraySize(pr) == 6 && fabs(sum - 1) < 1e-4, "classify: %ld %s", a.status, a.body);
    CHECK(best_name && !strcmp(best_name, cJSON_GetStringValue(cJSON_GetObjectItem(r, "label"))), "classify label = argmax");
    cJSON_Delete(r);
    answer_free(&a);

    /* bad input */
    check_error("empty body", post(port, "/api/v1/recognize", "", 0, "image/jpeg"), 400);
    check_error("undecodable body", post(port, "/api/v1/recognize", "not an image, not at all ......", 31, "image/png"), 400);
    check_error("truncated JPEG", post(port, "/api/v1/recognize", photo, photo_len / 3, "image/jpeg"), 400);
    check_error("wrong content type", post(port, "/api/v1/recognize", photo, photo_len, "text/plain"), 415);
    check_error("classify, empty", post(port, "/api/v1/classify", "", 0, "image/jpeg"), 400);
    check_error("unknown route", get(port, "/nope"), 404);
    check_error("GET on a POST route", get(port, "/api/v1/recognize"), 405);
    check_error("POST on a GET route", post(port, "/healthz", "x", 1, "image/jpeg"), 405);
    check_error("DELETE", http(port, "DELETE", "/api/v1/model", NULL, 0, NULL, NULL, 0, 0), 405);

    /* metrics */
    a = get(port, "/metrics");
    CHECK(a.status == 200 && strstr(a.type, "text/plain"), "GET /metrics: %ld", a.status);
    CHECK(strstr(a.body, "ferc_http_requests_total{route=\"/api/v1/recognize\",status=\"200\"} 5\n") != NULL,
          "metrics: 5 answered recognize requests:\n%s", a.body);
    CHECK(strstr(a.body, "ferc_http_requests_total{route=\"/api/v1/recognize\",status=\"415\"} 1\n") != NULL, "metrics 415");
    CHECK(strstr(a.body, "ferc_http_request_duration_seconds_bucket{le=\"+Inf\"}") &&
              strstr(a.body, "ferc_http_request_duration_seconds_count"),
          "metrics histogram");
    CHECK(strstr(a.body, "ferc_faces_processed_total 5\n") != NULL, "metrics: 5 faces");
    CHECK(strstr(a.body, "ferc_sessions_active 2\n") != NULL, "metrics: 2 sessions");
    answer_free(&a);
    pthread_mutex_lock(&lb->lock);
    CHECK(lb->recognize_200 == 5, "one log line per request: %d recognize 200 lines", lb->recognize_200);
    pthread_mutex_unlock(&lb->lock);
}

static void small_limits(serve_params *p)
{
    p->max_body = 50000; /* the photo is 105,800 bytes */
    p->max_pixels = 1000;
}

static void test_limits(void)
{
    serve *s;
    int port = start(&s, NULL, NULL, small_limits);
    if (port < 0) return;
    check_error("over --max-body (Content-Length)", post(port, "/api/v1/recognize", photo, photo_len, "image/jpeg"), 413);
    /* chunked: no length to refuse up front; refused when the limit is passed (curl may see
     * the connection close while it still sends: then there is no status) */
    answer a = http(port, "POST", "/api/v1/recognize", photo, photo_len, "image/jpeg", NULL, 1, 0);
    CHECK(a.status == 413 || (a.status == 0 && a.curl_rc != 0), "chunked over --max-body: %ld (curl %d)", a.status, a.curl_rc);
    answer_free(&a);
    /* a small PNG within the body limit but over the pixel limit: 64x64 = 4096 pixels */
    image img;
    CHECK_OK(image_alloc(&img, 64, 64, 3));
    memset(img.data, 90, img.stride * 64);
    uint8_t *png = NULL;
    size_t png_len = 0;
    CHECK_OK(image_encode_png(&img, &png, &png_len));
    image_free(&img);
    check_error("over --max-pixels", post(port, "/api/v1/recognize", png, png_len, "image/png"), 413);
    free(png);
    a = get(port, "/healthz");
    CHECK(a.status == 200, "still serving after refusals");
    answer_free(&a);
    serve_stop(s);
}

static void with_token(serve_params *p) { p->token = "s3cret-token"; }

static void test_token(void)
{
    serve *s;
    int port = start(&s, NULL, NULL, with_token);
    if (port < 0) return;
    check_error("no token", get(port, "/api/v1/model"), 401);
    check_error("wrong token", http(port, "GET", "/api/v1/model", NULL, 0, NULL, "Authorization: Bearer s3cret-tokem", 0, 0), 401);
    check_error("no token, POST", post(port, "/api/v1/recognize", photo, photo_len, "image/jpeg"), 401);
    answer a = http(port, "GET", "/api/v1/model", NULL, 0, NULL, "Authorization: Bearer s3cret-token", 0, 0);
    CHECK(a.status == 200, "right token: %ld", a.status);
    answer_free(&a);
    a = http(port, "POST", "/api/v1/recognize", photo, photo_len, "image/jpeg", "Authorization: Bearer s3cret-token", 0, 0);
    CHECK(a.status == 200, "right token, POST: %ld", a.status);
    answer_free(&a);
    a = get(port, "/");
    CHECK(a.status == 200, "the page itself needs no token");
    answer_free(&a);
    serve_stop(s);
}

static void short_timeout(serve_params *p) { p->timeout_s = 1; }

static void test_slow_client(void)
{
    serve *s;
    int port = start(&s, NULL, NULL, short_timeout);
    if (port < 0) return;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    CHECK(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0, "connect");
    const char part[] = "POST /api/v1/recognize HTTP/1.1\r\nHost: x\r\n"; /* and then nothing */
    CHECK(write(fd, part, sizeof part - 1) == (ssize_t)(sizeof part - 1), "write");
    const double t0 = time_now();
    char tmp[256];
    ssize_t n;
    while ((n = read(fd, tmp, sizeof tmp)) > 0) {
    }
    const double dt = time_now() - t0;
    CHECK(dt > 0.5 && dt < 10, "the slow client was dropped after %.2f s (timeout 1 s)", dt);
    close(fd);
    answer a = get(port, "/healthz");
    CHECK(a.status == 200, "still serving after a slow client");
    answer_free(&a);
    serve_stop(s);
}

typedef struct client_job {
    int port, n, ok, same;
    const char *want;
} client_job;

static void *client(void *u)
{
    client_job *j = u;
    for (int i = 0; i < j->n; i++) {
        answer a = post(j->port, "/api/v1/recognize", photo, photo_len, "image/jpeg");
        cJSON *r = cJSON_Parse(a.body);
        char *faces = r ? cJSON_PrintUnformatted(cJSON_GetObjectItem(r, "faces")) : NULL;
        j->ok += a.status == 200;
        j->same += faces && !strcmp(faces, j->want);
        free(faces);
        cJSON_Delete(r);
        answer_free(&a);
    }
    return NULL;
}

static void test_concurrency(int port)
{
    answer a = post(port, "/api/v1/recognize", photo, photo_len, "image/jpeg");
    cJSON *r = cJSON_Parse(a.body);
    char *want = r ? cJSON_PrintUnformatted(cJSON_GetObjectItem(r, "faces")) : NULL;
    cJSON_Delete(r);
    answer_free(&a);
    enum { T = 6, N = 4 };
    pthread_t th[T];
    client_job jobs[T];
    for (int i = 0; i < T; i++) {
        jobs[i] = (client_job){.port = port, .n = N, .want = want ? want : ""};
        pthread_create(&th[i], NULL, client, &jobs[i]);
    }
    int ok = 0, same = 0;
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        ok += jobs[i].ok;
        same += jobs[i].same;
    }
    CHECK(ok == T * N && same == T * N, "concurrent clients: %d of %d answered 200, %d identical", ok, T * N, same);
    free(want);
}

typedef struct inflight_job {
    int port;
    answer a;
} inflight_job;

static void *inflight_client(void *u)
{
    inflight_job *j = u;
    j->a = http(j->port, "POST", "/api/v1/recognize", photo, photo_len, "image/jpeg", NULL, 0, 1);
    return NULL;
}

static void test_stop_in_flight(void)
{
    serve *s;
    int port = start(&s, NULL, NULL, NULL);
    if (port < 0) return;
    inflight_job j = {.port = port};
    pthread_t th;
    pthread_create(&th, NULL, inflight_client, &j);
    const double until = time_now() + 10;
    while (serve_in_flight(s) == 0 && time_now() < until) sleep_ms(2);
    CHECK(serve_in_flight(s) == 1, "a request is in flight (%d)", serve_in_flight(s));
    serve_stop(s); /* returns once the request is answered */
    pthread_join(th, NULL);
    CHECK(j.a.status == 200 && strstr(j.a.body, "\"faces\""), "the request in flight finished: %ld %s", j.a.status, j.a.body);
    answer_free(&j.a);
}

/* serve_handle: the same handling without a socket (what the fuzz harness drives) */
static void test_handle(void)
{
    serve_params p;
    serve_params_default(&p);
    p.model = model;
    p.max_body = 200000;
    serve *s = NULL;
    CHECK_OK(serve_create(&s, &p));
    if (!s) return;
    serve_exchange x = {.method = "POST", .url = "/api/v1/recognize", .content_type = "image/jpeg", .body = photo,
                        .len = photo_len};
    CHECK_OK(serve_handle(s, &x));
    CHECK(x.status == 200 && x.answer && strstr(x.answer, "\"faces\": [{"), "serve_handle recognize: %d", x.status);
    free(x.answer);
    x = (serve_exchange){.method = "POST", .url = "/api/v1/recognize", .content_type = "image/jpeg",
                         .content_length = "99999999999999999999", .body = photo, .len = 10};
    CHECK_OK(serve_handle(s, &x));
    CHECK(x.status == 413, "absurd Content-Length: %d", x.status);
    free(x.answer);
    x = (serve_exchange){.method = "GET", .url = "/healthz"};
    CHECK_OK(serve_handle(s, &x));
    CHECK(x.status == 200 && x.answer_len == strlen(x.answer), "healthz through serve_handle");
    free(x.answer);
    x = (serve_exchange){.method = "BREW", .url = "/api/v1/model", .session = "x"};
    CHECK_OK(serve_handle(s, &x));
    CHECK(x.status == 405, "unknown method: %d", x.status);
    free(x.answer);
    serve_stop(s);
}

static void test_bad_params(void)
{
    serve_params p;
    serve_params_default(&p);
    p.model = model;
    serve *s;
    p.workers = 0;
    CHECK(serve_start(&s, &p) == FERC_ERR_INVALID && !s, "0 workers refused");
    serve_params_default(&p);
    p.model = "/nonexistent/model.safetensors";
    p.port = 0;
    CHECK(serve_start(&s, &p) != FERC_OK && !s, "missing model refused: %s", ferc_last_error());
    serve_params_default(&p);
    p.model = model;
    p.host = "not-a-host.invalid";
    p.port = 0;
    CHECK(serve_start(&s, &p) != FERC_OK && !s, "bad host refused");
}

int main(void)
{
    char dir[256];
    snprintf(dir, sizeof dir, "/tmp/ferc_serve_XXXXXX");
    if (!mkdtemp(dir)) return test_skip("mkdtemp failed");
    snprintf(model, sizeof model, "%s/model.safetensors", dir);
    test_make_model(model, "resnet18", 48, 7);
    CHECK_OK(file_read_all(PHOTO, &photo, &photo_len));
    curl_global_init(CURL_GLOBAL_DEFAULT);

    log_book lb = {PTHREAD_MUTEX_INITIALIZER, 0, 0};
    serve *s;
    int port = start(&s, log_count, &lb, NULL);
    if (port > 0 && photo) {
        test_routes(port, &lb);
        test_concurrency(port);
        serve_stop(s);
        CHECK(lb.lines >= 20, "log lines: %d", lb.lines);
        test_limits();
        test_token();
        test_slow_client();
        test_stop_in_flight();
        test_handle();
        test_bad_params();
    }
    curl_global_cleanup();
    free(photo);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
    return test_finish("test_serve");
}
