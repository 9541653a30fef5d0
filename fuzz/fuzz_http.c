/* Fuzzes ferc serve's request handling through serve_handle (no socket): the method, the
 * path, the session argument, the Content-Type, Content-Length and Authorization headers and
 * the body all come from the input. The server runs a resnet18 with random weights at 32x32
 * (made once) and a bearer token, with small limits so that every refusal path is reachable.
 *
 * Input layout: byte 0 picks the method; then five NUL-terminated strings (path, session,
 * content type, content length, authorization; an empty string means absent); the rest is
 * the body. */
#include "fuzz_common.h"
#include "core/core.h"
#include "models/models.h"
#include "serve/serve.h"

static serve *srv;

static void start(void)
{
    char model[256];
    snprintf(model, sizeof model, "/tmp/ferc_fuzz_model_%d.safetensors", (int)getpid());
    nn_graph *g = NULL;
    models_meta m;
    static const char *const classes[6] = {"Angry", "Fear", "Happy", "Neutral", "Sad", "Surprise"};
    if (models_build(&g, "resnet18", 6, 1)) abort();
    models_meta_init(&m, "resnet18", 6);
    if (models_meta_set_classes(&m, classes, 6)) abort();
    m.img_size = 32;
    if (models_save(model, g, &m, ST_F16)) abort();
    models_meta_free(&m);
    nn_graph_destroy(g);
    serve_params p;
    serve_params_default(&p);
    p.model = model;
    p.token = "fuzz-token";
    p.max_body = 1 << 16;
    p.max_pixels = 1 << 16;
    p.max_sessions = 4;
    p.workers = 1;
    if (serve_create(&srv, &p)) abort();
}

/* The next NUL-terminated string of the input, or NULL (absent) when empty or missing. */
static const char *next(const uint8_t **d, size_t *n, char *buf, size_t cap)
{
    size_t i = 0;
    while (i < *n && (*d)[i]) i++;
    if (i >= *n) { /* no terminator: the rest is this string, no body */
        size_t m = *n < cap - 1 ? *n : cap - 1;
        memcpy(buf, *d, m);
        buf[m] = 0;
        *d += *n, *n = 0;
        return m ? buf : NULL;
    }
    size_t m = i < cap - 1 ? i : cap - 1;
    memcpy(buf, *d, m);
    buf[m] = 0;
    *d += i + 1, *n -= i + 1;
    return m ? buf : NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!srv) start();
    if (!size) return 0;
    static const char *const methods[] = {"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "get", ""};
    char url[512], session[128], type[128], length[64], auth[128];
    serve_exchange x = {.method = methods[data[0] % 8]};
    const uint8_t *d = data + 1;
    size_t n = size - 1;
    x.url = next(&d, &n, url, sizeof url);
    x.session = next(&d, &n, session, sizeof session);
    x.content_type = next(&d, &n, type, sizeof type);
    x.content_length = next(&d, &n, length, sizeof length);
    x.authorization = next(&d, &n, auth, sizeof auth);
    x.body = d;
    x.len = n;
    if (serve_handle(srv, &x)) return 0;
    if (x.status < 100 || x.status > 599 || !x.type || (x.answer_len && !x.answer)) abort();
    free(x.answer);
    return 0;
}
