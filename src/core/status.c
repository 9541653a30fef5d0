/* Thread-local error messages. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/core.h"

static _Thread_local char err_msg[2048];
static _Thread_local int err_code;

int ferc_set_error(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_msg, sizeof err_msg, fmt, ap);
    va_end(ap);
    err_code = code;
    return code;
}

int ferc_wrap_error(int code, const char *fmt, ...)
{
    char prefix[1024], old[sizeof err_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err_msg, sizeof old);
    snprintf(err_msg, sizeof err_msg, "%s: %s", prefix, old[0] ? old : ferc_status_name(code));
    err_code = code;
    return code;
}

const char *ferc_last_error(void)
{
    return err_msg[0] ? err_msg : ferc_status_name(err_code);
}

void ferc_clear_error(void)
{
    err_msg[0] = 0;
    err_code = 0;
}

static const char *const status_names[] = {
    [0] = "ok",
    [-FERC_ERR_INVALID] = "invalid argument",
    [-FERC_ERR_NOMEM] = "out of memory",
    [-FERC_ERR_IO] = "input/output error",
    [-FERC_ERR_FORMAT] = "malformed or unsupported file",
    [-FERC_ERR_UNSUPPORTED] = "unsupported",
    [-FERC_ERR_BACKEND] = "compute backend error",
    [-FERC_ERR_INTERRUPTED] = "interrupted",
    [-FERC_ERR_NOT_FOUND] = "not found",
    [-FERC_ERR_SHAPE] = "shape mismatch",
};
_Static_assert(sizeof status_names / sizeof status_names[0] == FERC_STATUS_COUNT,
               "status_names must cover every ferc_status");

const char *ferc_status_name(int code)
{
    if (code > 0 || -code >= FERC_STATUS_COUNT) return "unknown error";
    return status_names[-code];
}
