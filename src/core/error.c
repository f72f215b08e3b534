#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>

/* Long enough for an NVRTC log excerpt. */
static _Thread_local char last_error[8192];

qn_status qn_error(qn_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return s;
}

const char *qn_last_error(void) { return last_error; }

const char *qn_status_name(qn_status s) {
    switch (s) {
    case QN_OK: return "QN_OK";
    case QN_ERR_INVALID_ARGUMENT: return "QN_ERR_INVALID_ARGUMENT";
    case QN_ERR_OUT_OF_MEMORY: return "QN_ERR_OUT_OF_MEMORY";
    case QN_ERR_DEVICE: return "QN_ERR_DEVICE";
    case QN_ERR_COMPILE: return "QN_ERR_COMPILE";
    case QN_ERR_UNSUPPORTED: return "QN_ERR_UNSUPPORTED";
    case QN_ERR_IO: return "QN_ERR_IO";
    case QN_ERR_FORMAT: return "QN_ERR_FORMAT";
    }
    return "QN_ERR_UNKNOWN";
}

const char *qn_version(void) { return "0.1.0"; }
