/* Test helpers: the device under test, random data, poisoning. */
#ifndef QN_TESTS_UTIL_H
#define QN_TESTS_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "quanta.h"

/* Fail the test with qn_last_error() unless `expr` is QN_OK. */
#define QT_OK(expr)                                                                                 \
    do {                                                                                            \
        qn_status qt_s_ = (expr);                                                                   \
        if (qt_s_ != QN_OK) fail_msg("%s -> %s: %s", #expr, qn_status_name(qt_s_), qn_last_error()); \
    } while (0)

/* Expect status `want` and a message containing `needle`. */
#define QT_FAILS(expr, want, needle) qt_expect_fail((expr), (want), (needle), #expr)
void qt_expect_fail(qn_status got, qn_status want, const char *needle, const char *text);

/* The device under test: QUANTA_BACKEND, else a GPU if usable, else the CPU.
 * Opened once per program. */
qn_device *qt_device(void);
/* The CPU backend, the reference for every GPU result. */
qn_device *qt_cpu(void);
bool qt_on_gpu(void);
void qt_close_devices(void);

/* A random generator seeded from QUANTA_TEST_SEED or the clock; the seed is
 * printed so a failure can be replayed. */
uint64_t qt_rand(void);
float qt_randf(float lo, float hi); /* uniform */
void qt_fill_random_f32(float *x, size_t n, float lo, float hi);

/* Allocate a buffer of dtype/shape on `dev` filled with 0xFF bytes (NaN in
 * f32, f16 and bf16; -1 in integers), so an element an op forgets stands out. */
qn_buffer *qt_poisoned(qn_device *dev, qn_dtype dtype, int ndim, const int64_t *ne);

/* Read a whole buffer into newly allocated host memory. */
void *qt_read_all(qn_buffer *b);

#endif
