#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void qt_expect_fail(qn_status got, qn_status want, const char *needle, const char *text) {
    if (got != want)
        fail_msg("%s: expected %s, got %s (%s)", text, qn_status_name(want), qn_status_name(got), qn_last_error());
    if (needle && !strstr(qn_last_error(), needle))
        fail_msg("%s: message '%s' does not mention '%s'", text, qn_last_error(), needle);
}

static qn_device *dut, *cpu;

qn_device *qt_device(void) {
    if (!dut) {
        QT_OK(qn_device_open(QN_BACKEND_AUTO, 0, &dut));
        qn_device_info info;
        QT_OK(qn_device_info_get(dut, &info));
        fprintf(stderr, "device under test: %s (%s)\n", info.name, qn_backend_name(info.backend));
    }
    return dut;
}

qn_device *qt_cpu(void) {
    if (!cpu) QT_OK(qn_device_open(QN_BACKEND_CPU, 0, &cpu));
    return cpu;
}

bool qt_on_gpu(void) { return qn_device_backend(qt_device()) == QN_BACKEND_CUDA; }

void qt_close_devices(void) {
    qn_device_close(dut);
    qn_device_close(cpu);
    dut = cpu = NULL;
}

static uint64_t rng_state;

uint64_t qt_rand(void) {
    if (!rng_state) {
        const char *env = getenv("QUANTA_TEST_SEED");
        rng_state = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) * 2654435761u;
        if (!rng_state) rng_state = 1;
        fprintf(stderr, "QUANTA_TEST_SEED=%llu\n", (unsigned long long)rng_state);
    }
    /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

float qt_randf(float lo, float hi) { return lo + (hi - lo) * (float)((qt_rand() >> 40) / 16777216.0); }

void qt_fill_random_f32(float *x, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++) x[i] = qt_randf(lo, hi);
}

qn_buffer *qt_poisoned(qn_device *dev, qn_dtype dtype, int ndim, const int64_t *ne) {
    qn_buffer *b;
    QT_OK(qn_buffer_alloc(dev, dtype, ndim, ne, &b));
    size_t n = qn_buffer_bytes(b);
    unsigned char *p = malloc(n);
    assert_non_null(p);
    memset(p, 0xFF, n);
    QT_OK(qn_buffer_write(b, 0, p, n));
    free(p);
    return b;
}

void *qt_read_all(qn_buffer *b) {
    size_t n = qn_buffer_bytes(b);
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    QT_OK(qn_buffer_read(b, 0, p, n));
    return p;
}
