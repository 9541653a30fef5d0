/* ferc serve: the web page and the JSON API (src/serve) on one loaded model. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "core/core.h"
#include "serve/serve.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: ferc serve [--model M] [--host 127.0.0.1] [--port 8080] [--threads N] [--token T] [options]\n\n"
            "Serves a web page that watches your camera (http://HOST:PORT/) and a JSON API:\n"
            "  POST /api/v1/recognize[?session=ID]  a JPEG/PNG image -> every face's box, label, probabilities\n"
            "  POST /api/v1/classify                a face crop -> its probabilities\n"
            "  GET  /api/v1/model   GET /healthz   GET /metrics (Prometheus)\n\n"
            "  --model FILE        a ferc model (default: the shipped model)\n"
            "  --host ADDR         address to listen on (default 127.0.0.1: this machine only)\n"
            "  --port N            port (default 8080; 0: any free port, printed at start)\n"
            "  --threads N         workers: requests processed at the same time, one core each (default 2)\n"
            "  --token T           /api routes need \"Authorization: Bearer T\" (or set FERC_TOKEN)\n"
            "  --max-body BYTES    largest request body, e.g. 8M (default 8M); larger ones get 413 unread\n"
            "  --max-pixels N      largest image, width * height (default 40000000)\n"
            "  --timeout S         close connections idle for S seconds (default 10)\n"
            "  --sessions N        tracking sessions kept, least recently used dropped (default 64)\n"
            "  --tta MODE          flip (default), none or tencrop\n"
            "  --precision P       fp32 (default) or bf16 (mixed: bf16 activations and conv weights)\n"
            "  --detector D        blazeface (the CNN face detector, default) or haar (OpenCV's cascade)\n"
            "  --align             turn each face so that its eyes are level before classifying it\n"
            "  --cascade FILE      face detector cascade XML (with --detector blazeface: its model file)\n"
            "  --quiet             no line per request on stderr\n"
            "Ctrl-C (SIGINT) or SIGTERM finishes the requests in flight and exits 0.\n");
}

static volatile sig_atomic_t stop_requested;
static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void log_line(void *cls, const char *line)
{
    (void)cls;
    char ts[32];
    time_t t = time(NULL);
    struct tm tm;
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", localtime_r(&t, &tm));
    fprintf(stderr, "%s %s\n", ts, line);
}

static int parse_bytes(const char *s, size_t *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || !(v >= 1)) return -1;
    double mult = 1;
    if (*end == 'k' || *end == 'K') mult = 1024, end++;
    else if (*end == 'm' || *end == 'M') mult = 1024 * 1024, end++;
    else if (*end == 'g' || *end == 'G') mult = 1024.0 * 1024 * 1024, end++;
    if (*end == 'B' || *end == 'b') end++;
    if (*end || v * mult > 1e12) return -1;
    *out = (size_t)(v * mult);
    return 0;
}

int cmd_serve(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return CLI_OK;
    }
    serve_params p;
    serve_params_default(&p);
    p.log = log_line;
    p.token = getenv("FERC_TOKEN");
    if (p.token && !*p.token) p.token = NULL;
    static const char *const with_value[] = {"--model", "--host", "--port", "--threads", "--token", "--max-body",
                                             "--max-pixels", "--timeout", "--sessions", "--tta", "--cascade", "--detector",
                                             "--precision"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        for (size_t j = 0; j < sizeof with_value / sizeof *with_value; j++)
            if (!strcmp(a, with_value[j])) {
                if (i + 1 >= argc) return cli_usage_error("serve", "%s needs a value", a);
                v = argv[++i];
            }
        double d;
        if (!strcmp(a, "--quiet")) p.log = NULL;
        else if (!strcmp(a, "--align")) p.align = 1;
        else if (!strcmp(a, "--model")) p.model = v;
        else if (!strcmp(a, "--host")) p.host = v;
        else if (!strcmp(a, "--cascade")) p.cascade = v;
        else if (!strcmp(a, "--token")) {
            if (!*v) return cli_usage_error("serve", "--token must not be empty");
            p.token = v;
        } else if (!strcmp(a, "--port")) {
            if (cli_parse_int(v, 0, 65535, &p.port)) return cli_usage_error("serve", "--port must be in [0, 65535] (got '%s')", v);
        } else if (!strcmp(a, "--threads")) {
            if (cli_parse_int(v, 1, 256, &p.workers)) return cli_usage_error("serve", "--threads must be in [1, 256] (got '%s')", v);
        } else if (!strcmp(a, "--max-body")) {
            if (parse_bytes(v, &p.max_body)) return cli_usage_error("serve", "--max-body must be a size such as 8M or 65536 (got '%s')", v);
        } else if (!strcmp(a, "--max-pixels")) {
            if (cli_parse_double(v, 1, 1e12, &d)) return cli_usage_error("serve", "--max-pixels must be a positive number (got '%s')", v);
            p.max_pixels = (long long)d;
        } else if (!strcmp(a, "--timeout")) {
            if (cli_parse_int(v, 1, 3600, &p.timeout_s)) return cli_usage_error("serve", "--timeout must be in [1, 3600] seconds (got '%s')", v);
        } else if (!strcmp(a, "--sessions")) {
            if (cli_parse_int(v, 1, 100000, &p.max_sessions)) return cli_usage_error("serve", "--sessions must be in [1, 100000] (got '%s')", v);
        } else if (!strcmp(a, "--tta")) {
            if (classify_tta_parse(v, &p.tta)) return cli_usage_error("serve", "--tta must be none, flip or tencrop (got '%s')", v);
        } else if (!strcmp(a, "--precision")) {
            if (cli_parse_precision(v, &p.bf16)) return cli_usage_error("serve", "--precision fp32|bf16 (got '%s')", v);
        } else if (!strcmp(a, "--detector")) {
            if (face_detector_parse(v, &p.detector)) return cli_usage_error("serve", "--detector must be haar or blazeface (got '%s')", v);
        } else if (!v) return cli_usage_error("serve", "unknown option '%s'", a);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    serve *s;
    if (serve_start(&s, &p)) return cli_fail("serve");
    const int v6 = strchr(p.host, ':') != NULL;
    printf("ferc serve: listening on http://%s%s%s:%d/ (%d worker%s%s)\n", v6 ? "[" : "", p.host, v6 ? "]" : "",
           serve_port(s), p.workers, p.workers == 1 ? "" : "s", p.token ? ", token required on /api" : "");
    fflush(stdout);
    while (!stop_requested) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (p.log) fprintf(stderr, "ferc serve: stopping after %d request%s in flight\n", serve_in_flight(s),
                       serve_in_flight(s) == 1 ? "" : "s");
    serve_stop(s);
    if (p.log) fprintf(stderr, "ferc serve: stopped\n");
    return CLI_OK;
}
