/* Errors: every fallible call returns a qn_status and leaves a message in a
 * thread-local buffer that qn_last_error() returns. */
#ifndef QN_CORE_ERROR_H
#define QN_CORE_ERROR_H

#include "quanta.h"

#if defined(__GNUC__)
#define QN_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define QN_PRINTF(a, b)
#endif

/* Set the thread's message and return `s`, so a failure is one statement:
 *   return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_add: ne[0] %lld", ...); */
qn_status qn_error(qn_status s, const char *fmt, ...) QN_PRINTF(2, 3);

/* Evaluate a qn_status expression and return it from the caller on failure. */
#define QN_TRY(expr)                     \
    do {                                 \
        qn_status qn_try_s_ = (expr);    \
        if (qn_try_s_ != QN_OK)          \
            return qn_try_s_;            \
    } while (0)

#endif
