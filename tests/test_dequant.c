/* Dequantization through qn_copy, MLX affine dequantization and the qn_qdq
 * round trip, on the device
 * under test, against the host reference (qn_dequantize_row / the reference
 * quantizer, themselves checked against ggml and the gguf package): the same
 * bits for every block type, odd shapes, strided outputs. */
#include "util.h"

#include "formats/quants.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const qn_dtype TYPES[] = {QN_Q4_0, QN_Q4_1, QN_Q5_0, QN_Q5_1, QN_Q8_0, QN_Q8_1, QN_Q2_K, QN_Q3_K,
                                 QN_Q4_K, QN_Q5_K, QN_Q6_K, QN_Q8_K, QN_IQ4_NL, QN_IQ4_XS, QN_MXFP4};
#define NTYPES (int)(sizeof TYPES / sizeof TYPES[0])

/* Rows of random values: mostly normal, some blocks zero, some with a lone
 * outlier, some all negative. */
static void fill_rows(float *x, int64_t n, int64_t blk) {
    for (int64_t b = 0; b < n / blk; b++) {
        int kind = (int)(qt_rand() % 8);
        for (int64_t i = 0; i < blk; i++) {
            float v = qt_randf(-2, 2);
            if (kind == 0) v = 0;
            if (kind == 1) v = i == 3 ? 40.0f : qt_randf(-0.1f, 0.1f);
            if (kind == 2) v = -fabsf(v);
            x[b * blk + i] = v;
        }
    }
}

static void test_dequantize_every_type(void **state) {
    (void)state;
    qn_device *dev = qt_device();
    qn_encoder *enc;
    QT_OK(qn_encoder_create(dev, &enc));
    for (int k = 0; k < NTYPES; k++) {
        qn_dtype t = TYPES[k];
        int64_t blk = qn_dtype_block_elems(t);
        int64_t ne0 = blk * (blk == 32 ? 7 : 3), ne1 = 5, ne2 = 2, n = ne0 * ne1 * ne2;
        float *x = malloc((size_t)n * 4), *want = malloc((size_t)n * 4);
        size_t qbytes = (size_t)(qn_dtype_row_bytes(t, ne0) * ne1 * ne2);
        void *q = malloc(qbytes);
        fill_rows(x, n, blk);
        QT_OK(qn_quantize_row(t, x, q, n));
        QT_OK(qn_dequantize_row(t, q, want, n));

        qn_buffer *src;
        QT_OK(qn_buffer_alloc(dev, t, 3, (int64_t[]){ne0, ne1, ne2}, &src));
        QT_OK(qn_buffer_write(src, 0, q, qbytes));
        for (int d = 0; d < 3; d++) {
            qn_dtype dt = d == 0 ? QN_F32 : d == 1 ? QN_F16 : QN_BF16;
            size_t es = (size_t)qn_dtype_block_bytes(dt);
            /* dst rows every other row of a taller buffer: a strided view */
            qn_buffer *dst = qt_poisoned(dev, dt, 3, (int64_t[]){ne0, 2 * ne1, ne2});
            qn_tensor tv = qn_tensor_make(dst, 0, dt, ne0, ne1, ne2, 1);
            tv.nb[1] *= 2;
            tv.nb[2] = tv.nb[1] * ne1;
            QT_OK(qn_copy(enc, tv, qn_tensor_of(src)));
            QT_OK(qn_encoder_commit_wait(enc));
            unsigned char *got = qt_read_all(dst);
            for (int64_t r = 0; r < ne1 * ne2; r++) {
                for (int64_t i = 0; i < ne0; i++) {
                    float w = want[r * ne0 + i];
                    unsigned char expect[4];
                    if (dt == QN_F32) memcpy(expect, &w, 4);
                    else {
                        uint16_t h = dt == QN_F16 ? qn_f32_to_f16(w) : qn_f32_to_bf16(w);
                        memcpy(expect, &h, 2);
                    }
                    const unsigned char *g = got + ((size_t)(2 * r) * (size_t)ne0 + (size_t)i) * es;
                    if (memcmp(g, expect, es) != 0)
                        fail_msg("%s -> %s: row %lld element %lld differs (expected %g)", qn_dtype_name(t),
                                 qn_dtype_name(dt), (long long)r, (long long)i, (double)w);
                }
                /* the rows between were not written */
                const unsigned char *gap = got + (size_t)(2 * r + 1) * (size_t)ne0 * es;
                for (size_t b = 0; b < (size_t)ne0 * es; b++) assert_int_equal(gap[b], 0xFF);
            }
            free(got);
            qn_buffer_free(dst);
        }
        qn_buffer_free(src);
        free(x);
        free(want);
        free(q);
    }
    qn_encoder_destroy(enc);
}

/* Random bytes as blocks (not what a quantizer writes): exercises every bit
 * pattern of the quants, with the 16-bit scales forced finite so NaN
 * payloads do not enter. */
static void test_dequantize_random_bytes(void **state) {
    (void)state;
    qn_device *dev = qt_device();
    qn_encoder *enc;
    QT_OK(qn_encoder_create(dev, &enc));
    for (int k = 0; k < NTYPES; k++) {
        qn_dtype t = TYPES[k];
        int64_t blk = qn_dtype_block_elems(t), bb = qn_dtype_block_bytes(t), nblocks = 64;
        unsigned char *q = malloc((size_t)(bb * nblocks));
        for (int64_t i = 0; i < bb * nblocks; i++) q[i] = (unsigned char)qt_rand();
        for (int64_t b = 0; b < nblocks; b++) {
            unsigned char *p = q + b * bb;
            uint16_t one = qn_f32_to_f16(qt_randf(-0.5f, 0.5f)), two = qn_f32_to_f16(qt_randf(0, 0.5f));
            switch (t) {
            case QN_Q2_K: memcpy(p + 80, &one, 2); memcpy(p + 82, &two, 2); break;
            case QN_Q3_K: memcpy(p + 108, &one, 2); break;
            case QN_Q4_K: case QN_Q5_K: memcpy(p, &one, 2); memcpy(p + 2, &two, 2); break;
            case QN_Q6_K: memcpy(p + 208, &one, 2); break;
            case QN_Q8_K: { float f = qt_randf(-0.1f, 0.1f); memcpy(p, &f, 4); break; }
            case QN_MXFP4: p[0] = (unsigned char)(qt_rand() % 254); break; /* 255 is NaN */
            case QN_Q4_1: case QN_Q5_1: case QN_Q8_1: memcpy(p, &one, 2); memcpy(p + 2, &two, 2); break;
            default: memcpy(p, &one, 2); /* q4_0 q5_0 q8_0 iq4_nl iq4_xs: d first */
            }
        }
        int64_t n = blk * nblocks;
        float *want = malloc((size_t)n * 4), *got = malloc((size_t)n * 4);
        QT_OK(qn_dequantize_row(t, q, want, n));
        qn_buffer *src, *dst = qt_poisoned(dev, QN_F32, 1, (int64_t[]){n});
        QT_OK(qn_buffer_alloc(dev, t, 1, (int64_t[]){n}, &src));
        QT_OK(qn_buffer_write(src, 0, q, (size_t)(bb * nblocks)));
        QT_OK(qn_copy(enc, qn_tensor_of(dst), qn_tensor_of(src)));
        QT_OK(qn_encoder_commit_wait(enc));
        QT_OK(qn_buffer_read(dst, 0, got, (size_t)n * 4));
        for (int64_t i = 0; i < n; i++)
            if (memcmp(&got[i], &want[i], 4) != 0)
                fail_msg("%s random bytes: element %lld is %g, expected %g", qn_dtype_name(t), (long long)i,
                         (double)got[i], (double)want[i]);
        qn_buffer_free(src);
        qn_buffer_free(dst);
        free(q);
        free(want);
        free(got);
    }
    qn_encoder_destroy(enc);
}

static void test_qdq(void **state) {
    (void)state;
    qn_device *dev = qt_device();
    qn_encoder *enc;
    QT_OK(qn_encoder_create(dev, &enc));
    const qn_dtype types[2] = {QN_Q4_0, QN_Q8_0};
    const int64_t sizes[3] = {32, 32 * 37, 32 * 4099};
    for (int k = 0; k < 2; k++)
        for (int s = 0; s < 3; s++) {
            int64_t n = sizes[s];
            float *x = malloc((size_t)n * 4), *want = malloc((size_t)n * 4), *got = malloc((size_t)n * 4);
            fill_rows(x, n, 32);
            QT_OK(qn_qdq_row(types[k], x, want, n));
            qn_buffer *src, *dst = qt_poisoned(dev, QN_F32, 1, (int64_t[]){n});
            QT_OK(qn_buffer_alloc(dev, QN_F32, 1, (int64_t[]){n}, &src));
            QT_OK(qn_buffer_write(src, 0, x, (size_t)n * 4));
            QT_OK(qn_qdq(enc, qn_tensor_of(dst), qn_tensor_of(src), types[k]));
            QT_OK(qn_qdq(enc, qn_tensor_of(src), qn_tensor_of(src), types[k])); /* in place */
            QT_OK(qn_encoder_commit_wait(enc));
            QT_OK(qn_buffer_read(dst, 0, got, (size_t)n * 4));
            if (memcmp(got, want, (size_t)n * 4) != 0) fail_msg("qdq %s n=%lld differs", qn_dtype_name(types[k]), (long long)n);
            QT_OK(qn_buffer_read(src, 0, got, (size_t)n * 4));
            if (memcmp(got, want, (size_t)n * 4) != 0) fail_msg("qdq %s in place differs", qn_dtype_name(types[k]));
            qn_buffer_free(src);
            qn_buffer_free(dst);
            free(x);
            free(want);
            free(got);
        }
    qn_encoder_destroy(enc);
}

/* MLX affine weights of every bit width, group size and scale type: the
 * device's dequantization equals the host's bit for bit. */
static void test_mlx_dequantize(void **state) {
    (void)state;
    qn_device *dev = qt_device();
    qn_encoder *enc;
    QT_OK(qn_encoder_create(dev, &enc));
    const int bits[5] = {2, 3, 4, 6, 8}, groups[3] = {32, 64, 128};
    const qn_dtype stypes[3] = {QN_F16, QN_BF16, QN_F32};
    const int64_t cols = 384, rows = 3;
    float x[384 * 3], want[384 * 3], got[384 * 3];
    for (int bi = 0; bi < 5; bi++)
        for (int gi = 0; gi < 3; gi++)
            for (int si = 0; si < 3; si++) {
                qn_mlx_quant p = {bits[bi], groups[gi]};
                int64_t words = cols * p.bits / 32, ngroups = cols / p.group_size;
                size_t sb = (size_t)qn_dtype_block_bytes(stypes[si]);
                uint32_t q[384 * 3 * 8 / 32];
                unsigned char sc[3 * 12 * 4], bs[3 * 12 * 4];
                qt_fill_random_f32(x, (size_t)(cols * rows), -1.5f, 1.5f);
                for (int64_t r = 0; r < rows; r++) {
                    QT_OK(qn_mlx_quantize_row(p, stypes[si], x + r * cols, cols, q + r * words, sc + r * ngroups * sb,
                                              bs + r * ngroups * sb));
                    QT_OK(qn_mlx_dequantize_row(p, stypes[si], q + r * words, sc + r * ngroups * sb,
                                                bs + r * ngroups * sb, want + r * cols, cols));
                }
                qn_buffer *bq, *bsc, *bbs, *out = qt_poisoned(dev, QN_F32, 2, (int64_t[]){cols, rows});
                QT_OK(qn_buffer_alloc(dev, QN_U32, 2, (int64_t[]){words, rows}, &bq));
                QT_OK(qn_buffer_alloc(dev, stypes[si], 2, (int64_t[]){ngroups, rows}, &bsc));
                QT_OK(qn_buffer_alloc(dev, stypes[si], 2, (int64_t[]){ngroups, rows}, &bbs));
                QT_OK(qn_buffer_write(bq, 0, q, (size_t)(words * rows * 4)));
                QT_OK(qn_buffer_write(bsc, 0, sc, (size_t)ngroups * rows * sb));
                QT_OK(qn_buffer_write(bbs, 0, bs, (size_t)ngroups * rows * sb));
                qn_mlx_weight w = {qn_tensor_of(bq), qn_tensor_of(bsc), qn_tensor_of(bbs), p.bits, p.group_size};
                QT_OK(qn_mlx_dequantize(enc, qn_tensor_of(out), &w));
                QT_OK(qn_encoder_commit_wait(enc));
                QT_OK(qn_buffer_read(out, 0, got, sizeof got));
                if (memcmp(got, want, sizeof got) != 0)
                    fail_msg("mlx bits %d group %d scales %s differ", p.bits, p.group_size, qn_dtype_name(stypes[si]));
                if (bi == 2 && gi == 1 && si == 0) {
                    w.bits = 5;
                    QT_FAILS(qn_mlx_dequantize(enc, qn_tensor_of(out), &w), QN_ERR_INVALID_ARGUMENT, "bits 5");
                    w.bits = 4;
                    w.group_size = 128; /* 384 columns need 3 scales per row, not 6 */
                    QT_FAILS(qn_mlx_dequantize(enc, qn_tensor_of(out), &w), QN_ERR_INVALID_ARGUMENT, "need 3 scales");
                    w.group_size = 64;
                    w.biases = qn_tensor_of(bq);
                    QT_FAILS(qn_mlx_dequantize(enc, qn_tensor_of(out), &w), QN_ERR_INVALID_ARGUMENT, "biases is u32");
                }
                qn_buffer_free(bq);
                qn_buffer_free(bsc);
                qn_buffer_free(bbs);
                qn_buffer_free(out);
            }
    qn_encoder_destroy(enc);
}

static void test_errors(void **state) {
    (void)state;
    qn_device *dev = qt_device();
    qn_encoder *enc;
    QT_OK(qn_encoder_create(dev, &enc));
    qn_buffer *a = qt_poisoned(dev, QN_F32, 1, (int64_t[]){96}), *b = qt_poisoned(dev, QN_F32, 1, (int64_t[]){64});
    qn_buffer *h = qt_poisoned(dev, QN_F16, 1, (int64_t[]){96}), *q = qt_poisoned(dev, QN_Q8_0, 1, (int64_t[]){96});
    QT_FAILS(qn_qdq(enc, qn_tensor_of(b), qn_tensor_of(a), QN_Q4_0), QN_ERR_INVALID_ARGUMENT, "dst has 64 elements, src 96");
    QT_FAILS(qn_qdq(enc, qn_tensor_of(h), qn_tensor_of(h), QN_Q8_0), QN_ERR_INVALID_ARGUMENT, "must be f32");
    QT_FAILS(qn_qdq(enc, qn_tensor_of(a), qn_tensor_of(a), QN_Q4_K), QN_ERR_INVALID_ARGUMENT, "q4_K");
    qn_tensor odd = qn_tensor_make(a, 0, QN_F32, 40, 1, 1, 1);
    QT_FAILS(qn_qdq(enc, odd, odd, QN_Q8_0), QN_ERR_INVALID_ARGUMENT, "not a multiple of the block of 32");
    QT_FAILS(qn_copy(enc, qn_tensor_of(q), qn_tensor_of(a)), QN_ERR_INVALID_ARGUMENT, "cannot convert f32 to q8_0");
    qn_tensor gapped = qn_tensor_make(q, 0, QN_Q8_0, 32, 2, 1, 1);
    gapped.nb[0] = 68; /* blocks not back to back */
    gapped.ne[1] = 1;
    QT_FAILS(qn_copy(enc, qn_tensor_make(a, 0, QN_F32, 32, 1, 1, 1), gapped), QN_ERR_INVALID_ARGUMENT, "not contiguous");
    qn_buffer_free(a);
    qn_buffer_free(b);
    qn_buffer_free(h);
    qn_buffer_free(q);
    qn_encoder_destroy(enc);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dequantize_every_type),
        cmocka_unit_test(test_dequantize_random_bytes),
        cmocka_unit_test(test_qdq),
        cmocka_unit_test(test_mlx_dequantize),
        cmocka_unit_test(test_errors),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    qt_close_devices();
    return rc;
}
