/* Core runtime: errors, dtypes, devices, buffers, views, pools, encoders. */
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_version_and_status(void **state) {
    (void)state;
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", QN_VERSION_MAJOR, QN_VERSION_MINOR, QN_VERSION_PATCH);
    assert_string_equal(qn_version(), want);
    assert_string_equal(qn_status_name(QN_ERR_OUT_OF_MEMORY), "QN_ERR_OUT_OF_MEMORY");
    assert_string_equal(qn_status_name(QN_ERR_DEVICE), "QN_ERR_DEVICE");
}

static void test_dtypes(void **state) {
    (void)state;
    /* GGUF's block geometry for a few types, and a row's bytes. */
    assert_int_equal(qn_dtype_block_elems(QN_Q4_K), 256);
    assert_int_equal(qn_dtype_block_bytes(QN_Q6_K), 210);
    assert_int_equal(qn_dtype_block_bytes(QN_Q8_0), 34);
    assert_int_equal(qn_dtype_row_bytes(QN_Q4_0, 4096), 4096 / 32 * 18);
    assert_int_equal(qn_dtype_row_bytes(QN_BF16, 7), 14);
    assert_int_equal(qn_dtype_row_bytes(QN_Q4_K, 640), -1); /* not a multiple of 256 */
    qn_dtype t;
    QT_OK(qn_dtype_from_name("iq4_nl", &t));
    assert_int_equal(t, QN_IQ4_NL);
    assert_string_equal(qn_dtype_name(QN_MXFP4), "mxfp4");
    assert_null(qn_dtype_name((qn_dtype)77));
    QT_FAILS(qn_dtype_from_name("q9_9", &t), QN_ERR_INVALID_ARGUMENT, "q9_9");
}

static void test_device_open(void **state) {
    (void)state;
    qn_device *d;
    QT_FAILS(qn_device_open(QN_BACKEND_CPU, 1, &d), QN_ERR_INVALID_ARGUMENT, "index 1");
    QT_FAILS(qn_device_open((qn_backend)9, 0, &d), QN_ERR_INVALID_ARGUMENT, "backend 9");
    QT_FAILS(qn_device_open(QN_BACKEND_CPU, 0, NULL), QN_ERR_INVALID_ARGUMENT, "NULL");

    /* The environment overrides AUTO, and a bad value is named. */
    const char *saved = getenv("QUANTA_BACKEND");
    char *keep = saved ? strdup(saved) : NULL;
    setenv("QUANTA_BACKEND", "tpu", 1);
    QT_FAILS(qn_device_open(QN_BACKEND_AUTO, 0, &d), QN_ERR_INVALID_ARGUMENT, "QUANTA_BACKEND='tpu'");
    setenv("QUANTA_BACKEND", "cpu", 1);
    QT_OK(qn_device_open(QN_BACKEND_AUTO, 0, &d));
    assert_int_equal(qn_device_backend(d), QN_BACKEND_CPU);
    qn_device_info info;
    QT_OK(qn_device_info_get(d, &info));
    assert_true(info.sm_count >= 1);
    assert_true(info.total_memory > 0);
    assert_string_equal(info.arch, "cpu");
    qn_device_close(d);
    if (keep) setenv("QUANTA_BACKEND", keep, 1);
    else unsetenv("QUANTA_BACKEND");
    free(keep);

    int n = -1;
    QT_OK(qn_device_count(QN_BACKEND_CPU, &n));
    assert_int_equal(n, 1);
    QT_OK(qn_device_count(QN_BACKEND_CUDA, &n));
    assert_true(n >= 0);
    if (qt_on_gpu()) {
        assert_true(n >= 1);
        QT_OK(qn_device_info_get(qt_device(), &info));
        assert_true(info.cc_major >= 5 && info.sm_count > 0 && info.total_memory > info.free_memory / 2);
        assert_true(strncmp(info.arch, "sm_", 3) == 0);
        QT_FAILS(qn_device_open(QN_BACKEND_CUDA, n, &d), QN_ERR_INVALID_ARGUMENT, "out of range");
    }
}

/* Write random bytes at odd sizes (and one past the pinned-staging threshold,
 * several chunks long, on the GPU), read them back. */
static void test_buffer_roundtrip(void **state) {
    (void)state;
    const int64_t sizes[] = {1, 3, 31, 4097, 1 << 20, (1 << 20) + 13, 40 * 1000 * 1000 + 7};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        int64_t n = sizes[k];
        qn_buffer *b;
        QT_OK(qn_buffer_alloc(qt_device(), QN_U8, 1, &n, &b));
        assert_int_equal(qn_buffer_bytes(b), (size_t)n);
        unsigned char *src = malloc((size_t)n), *dst = malloc((size_t)n);
        for (int64_t i = 0; i < n; i++) src[i] = (unsigned char)qt_rand();
        memset(dst, 0, (size_t)n);
        QT_OK(qn_buffer_write(b, 0, src, (size_t)n));
        QT_OK(qn_buffer_read(b, 0, dst, (size_t)n));
        assert_memory_equal(src, dst, (size_t)n);
        /* a write at an offset changes only its range */
        if (n > 8) {
            unsigned char patch[5] = {1, 2, 3, 4, 5};
            QT_OK(qn_buffer_write(b, 3, patch, 5));
            memcpy(src + 3, patch, 5);
            QT_OK(qn_buffer_read(b, 0, dst, (size_t)n));
            assert_memory_equal(src, dst, (size_t)n);
        }
        free(src);
        free(dst);
        qn_buffer_free(b);
    }
}

static void test_buffer_errors(void **state) {
    (void)state;
    qn_device *dev = qt_device();
    qn_buffer *b;
    int64_t ne[4] = {100, 3, 1, 1};
    QT_FAILS(qn_buffer_alloc(dev, QN_F32, 0, ne, &b), QN_ERR_INVALID_ARGUMENT, "ndim 0");
    QT_FAILS(qn_buffer_alloc(dev, QN_F32, 5, ne, &b), QN_ERR_INVALID_ARGUMENT, "ndim 5");
    QT_FAILS(qn_buffer_alloc(dev, QN_Q4_0, 2, ne, &b), QN_ERR_INVALID_ARGUMENT, "multiple of q4_0's block of 32");
    QT_FAILS(qn_buffer_alloc(dev, (qn_dtype)55, 2, ne, &b), QN_ERR_INVALID_ARGUMENT, "unknown dtype 55");
    int64_t neg[1] = {-4};
    QT_FAILS(qn_buffer_alloc(dev, QN_F32, 1, neg, &b), QN_ERR_INVALID_ARGUMENT, "ne[0] = -4");
    int64_t huge[4] = {1 << 24, 1 << 24, 1 << 24, 1 << 24};
    QT_FAILS(qn_buffer_alloc(dev, QN_F32, 4, huge, &b), QN_ERR_INVALID_ARGUMENT, "overflows");
    /* An allocation that cannot fit: a petabyte. */
    int64_t pb[2] = {1 << 20, 1 << 28};
    QT_FAILS(qn_buffer_alloc(dev, QN_F32, 2, pb, &b), QN_ERR_OUT_OF_MEMORY, NULL);

    QT_OK(qn_buffer_alloc(dev, QN_F32, 2, ne, &b));
    float x[4] = {0};
    QT_FAILS(qn_buffer_write(b, 1199, x, 2), QN_ERR_INVALID_ARGUMENT, "offset 1199");
    QT_FAILS(qn_buffer_read(b, 0, x, 1201), QN_ERR_INVALID_ARGUMENT, "1201 bytes");
    QT_FAILS(qn_buffer_write(b, 0, NULL, 4), QN_ERR_INVALID_ARGUMENT, "NULL");
    QT_FAILS(qn_buffer_read(b, (size_t)-1, x, 4), QN_ERR_INVALID_ARGUMENT, "exceed");
    qn_buffer_free(b);
    qn_buffer_free(NULL);
}

static void test_views(void **state) {
    (void)state;
    qn_device *dev = qt_device();
    int64_t n = 1000;
    qn_buffer *base, *v, *vv;
    QT_OK(qn_buffer_alloc(dev, QN_F32, 1, &n, &base));
    float x[1000];
    qt_fill_random_f32(x, 1000, -1, 1);
    QT_OK(qn_buffer_write(base, 0, x, sizeof x));
    int64_t ne[2] = {10, 20};
    QT_OK(qn_buffer_view(base, 400, QN_F32, 2, ne, &v));
    assert_int_equal(qn_buffer_bytes(v), 800);
    assert_int_equal(qn_buffer_ne(v, 1), 20);
    int64_t ne1 = 50;
    QT_OK(qn_buffer_view(v, 200, QN_F32, 1, &ne1, &vv)); /* a view of a view */
    qn_buffer_free(base); /* the views keep the memory alive */
    float got[50];
    QT_OK(qn_buffer_read(vv, 0, got, sizeof got));
    assert_memory_equal(got, x + 150, sizeof got);
    int64_t too_many = 51;
    qn_buffer *bad;
    QT_FAILS(qn_buffer_view(vv, 0, QN_F32, 1, &too_many, &bad), QN_ERR_INVALID_ARGUMENT, "do not fit");
    QT_FAILS(qn_buffer_view(v, 801, QN_U8, 1, (int64_t[]){1}, &bad), QN_ERR_INVALID_ARGUMENT, "offset 801");
    qn_buffer_free(v);
    qn_buffer_free(vv);
}

static void test_pool(void **state) {
    (void)state;
    qn_pool *pool;
    QT_OK(qn_pool_create(qt_device(), &pool));
    qn_buffer *a, *b, *c;
    for (int step = 0; step < 3; step++) {
        QT_OK(qn_pool_alloc(pool, QN_F32, 1, (int64_t[]){1000}, &a)); /* 4000 B -> 4096 bucket */
        QT_OK(qn_pool_alloc(pool, QN_F16, 2, (int64_t[]){7, 9}, &b));
        QT_OK(qn_pool_alloc(pool, QN_F32, 1, (int64_t[]){1024}, &c)); /* also the 4096 bucket */
        assert_int_equal(qn_buffer_bytes(a), 4000);
        assert_int_equal(qn_buffer_ne(b, 1), 9);
        float x[1000], y[1000];
        qt_fill_random_f32(x, 1000, -1, 1);
        QT_OK(qn_buffer_write(a, 0, x, sizeof x));
        QT_OK(qn_buffer_read(a, 0, y, sizeof y));
        assert_memory_equal(x, y, sizeof x);
        qn_pool_stats st;
        qn_pool_stats_get(pool, &st);
        assert_int_equal(st.allocations, 3); /* later steps reuse the buckets */
        assert_int_equal(st.hits, (size_t)step * 3);
        assert_int_equal(st.bytes_in_use, 4096 + 256 + 4096);
        qn_pool_reset(pool);
    }
    /* Freeing a pooled buffer returns it early. */
    QT_OK(qn_pool_alloc(pool, QN_F32, 1, (int64_t[]){1000}, &a));
    qn_buffer_free(a);
    qn_pool_stats st;
    qn_pool_stats_get(pool, &st);
    assert_int_equal(st.bytes_in_use, 0);
    assert_int_equal(st.bytes_reserved, 4096 + 256 + 4096);
    QT_FAILS(qn_pool_alloc(pool, QN_F32, 1, (int64_t[]){0}, &a), QN_ERR_INVALID_ARGUMENT, "ne[0] = 0");
    qn_pool_destroy(pool);
}

static void test_encoder_profile(void **state) {
    (void)state;
    qn_encoder *enc;
    QT_OK(qn_encoder_create(qt_device(), &enc));
    qn_buffer *b = qt_poisoned(qt_device(), QN_F32, 1, (int64_t[]){4096});
    qn_tensor t = qn_tensor_of(b);
    QT_OK(qn_encoder_set_profiling(enc, true));
    QT_OK(qn_fill(enc, t, 1.5f));
    QT_OK(qn_scale(enc, t, t, 2.0f));
    QT_OK(qn_encoder_commit_wait(enc));
    const qn_op_time *times;
    size_t n;
    QT_OK(qn_encoder_profile(enc, &times, &n));
    assert_int_equal(n, 2);
    assert_string_equal(times[0].op, "fill");
    assert_string_equal(times[1].op, "scale");
    assert_true(times[0].ms >= 0 && times[1].ms >= 0);
    qn_encoder_profile_clear(enc);
    QT_OK(qn_encoder_profile(enc, &times, &n));
    assert_int_equal(n, 0);
    float x[4096];
    QT_OK(qn_buffer_read(b, 0, x, sizeof x));
    for (int i = 0; i < 4096; i++) assert_true(x[i] == 3.0f);
    qn_buffer_free(b);
    qn_encoder_destroy(enc);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version_and_status), cmocka_unit_test(test_dtypes),
        cmocka_unit_test(test_device_open),        cmocka_unit_test(test_buffer_roundtrip),
        cmocka_unit_test(test_buffer_errors),      cmocka_unit_test(test_views),
        cmocka_unit_test(test_pool),               cmocka_unit_test(test_encoder_profile),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    qt_close_devices();
    return rc;
}
