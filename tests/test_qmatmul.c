/* Quantized matrix products on the device under test against a reference
 * written here: weights dequantized on the host (the reference dequantizer,
 * itself checked against ggml), dot products in double.
 *
 * Error bound: f32 accumulation of K products, summed per part and scaled
 * per block, so |y - ref| <= 1e-4 (sum|w x| + max|w| sum|x|) + 1e-6; the
 * second term covers the affine types, which add min * sum(x) per block.
 * On the GPU, quantized weights are dotted with x rounded to int8 in blocks
 * of 32 (scale max|x| / 127, as llama.cpp does): each x value moves by at
 * most half a step, which adds sum |w_i| max|x of i's block| / 254. */
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const qn_dtype TYPES[] = {QN_F32,  QN_F16,  QN_BF16, QN_Q4_0, QN_Q4_1, QN_Q5_0,   QN_Q5_1,   QN_Q8_0, QN_Q8_1,
                                 QN_Q2_K, QN_Q3_K, QN_Q4_K, QN_Q5_K, QN_Q6_K, QN_Q8_K,   QN_IQ4_NL, QN_IQ4_XS, QN_MXFP4};
#define NTYPES (int)(sizeof TYPES / sizeof TYPES[0])
static const qn_dtype XTYPES[3] = {QN_F32, QN_F16, QN_BF16};

/* Host weights: random floats stored as `t`, and what they dequantize to. */
typedef struct {
    qn_dtype t;
    int64_t K, rows;
    void *bytes;
    size_t nbytes;
    float *deq; /* [rows][K] */
} weights;

static void store_plain(qn_dtype t, const float *x, void *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        if (t == QN_F32) memcpy((char *)dst + 4 * i, &x[i], 4);
        else {
            uint16_t h = t == QN_F16 ? qn_f32_to_f16(x[i]) : qn_f32_to_bf16(x[i]);
            memcpy((char *)dst + 2 * i, &h, 2);
        }
    }
}

static weights make_weights(qn_dtype t, int64_t K, int64_t rows) {
    weights w = {t, K, rows, NULL, (size_t)(qn_dtype_row_bytes(t, K) * rows), malloc((size_t)(K * rows) * 4)};
    float *x = malloc((size_t)(K * rows) * 4);
    qt_fill_random_f32(x, (size_t)(K * rows), -1, 1);
    w.bytes = malloc(w.nbytes);
    if (qn_dtype_block_elems(t) == 1) {
        store_plain(t, x, w.bytes, K * rows);
        for (int64_t i = 0; i < K * rows; i++)
            w.deq[i] = t == QN_F32 ? x[i] : t == QN_F16 ? qn_f16_to_f32(qn_f32_to_f16(x[i])) : qn_bf16_to_f32(qn_f32_to_bf16(x[i]));
    } else {
        QT_OK(qn_quantize_row(t, x, w.bytes, K * rows));
        QT_OK(qn_dequantize_row(t, w.bytes, w.deq, K * rows));
    }
    free(x);
    return w;
}

static void free_weights(weights *w) {
    free(w->bytes);
    free(w->deq);
}

/* x as stored in `xt`, and its values. */
static void *make_x(qn_dtype xt, int64_t n, float **vals) {
    float *v = malloc((size_t)n * 4);
    qt_fill_random_f32(v, (size_t)n, -2, 2);
    void *b = malloc((size_t)n * 4);
    store_plain(xt, v, b, n);
    for (int64_t i = 0; i < n; i++)
        v[i] = xt == QN_F32 ? v[i] : xt == QN_F16 ? qn_f16_to_f32(qn_f32_to_f16(v[i])) : qn_bf16_to_f32(qn_f32_to_bf16(v[i]));
    *vals = v;
    return b;
}

static double act_ref(qn_act act, double g) {
    if (act == QN_ACT_SILU) return g / (1 + exp(-g));
    if (act == QN_ACT_GELU_TANH) return 0.5 * g * (1 + tanh(0.7978845608028654 * (g + 0.044715 * g * g * g)));
    return 0.5 * g * (1 + erf(g / sqrt(2.0)));
}

/* Reference dot of weight row `r` with x values, and its error scale. */
static double ref_dot(const weights *w, int64_t r, const float *x, double *scale) {
    const bool x_int8 = qt_on_gpu() && qn_dtype_block_elems(w->t) > 1;
    double acc = 0, sabs = 0, sx = 0, wmax = 0, xround = 0, amax = 0;
    for (int64_t k = 0; k < w->K; k++) {
        double a = w->deq[r * w->K + k];
        acc += a * x[k];
        sabs += fabs(a * x[k]);
        sx += fabs(x[k]);
        wmax = fabs(a) > wmax ? fabs(a) : wmax;
        if (k % 32 == 0) {
            amax = 0;
            for (int64_t j = k; j < k + 32; j++) amax = fabs(x[j]) > amax ? fabs(x[j]) : amax;
        }
        xround += fabs(a) * amax / 254;
    }
    *scale = 1e-4 * (sabs + wmax * sx) + 1e-6 + (x_int8 ? xround : 0);
    return acc;
}

static qn_buffer *upload(qn_dtype t, int ndim, const int64_t *ne, const void *data, size_t bytes) {
    qn_buffer *b;
    QT_OK(qn_buffer_alloc(qt_device(), t, ndim, ne, &b));
    QT_OK(qn_buffer_write(b, 0, data, bytes));
    return b;
}

static void check(const char *what, qn_dtype t, float got, double want, double tol, int64_t n, int64_t m) {
    if (!(fabs((double)got - want) <= tol))
        fail_msg("%s %s: y[%lld, %lld] = %.8g, reference %.8g (bound %.3g)", what, qn_dtype_name(t), (long long)n,
                 (long long)m, (double)got, want, tol);
}

/* Weight rows `pad` bytes apart beyond their size (a strided view). */
static qn_buffer *upload_rows(const weights *w, int64_t pad, qn_tensor *view) {
    int64_t row = qn_dtype_row_bytes(w->t, w->K), stride = row + pad;
    uint8_t *b = calloc((size_t)(stride * w->rows), 1);
    for (int64_t r = 0; r < w->rows; r++) memcpy(b + r * stride, (uint8_t *)w->bytes + r * row, (size_t)row);
    qn_buffer *buf = upload(QN_U8, 1, (int64_t[]){stride * w->rows}, b, (size_t)(stride * w->rows));
    free(b);
    *view = qn_tensor_make(buf, 0, w->t, w->K, w->rows, 1, 1);
    view->nb[1] = stride;
    view->nb[2] = view->nb[3] = stride * w->rows;
    return buf;
}

/* y = W x and y = act(G x) (U x) for M tokens, against the reference. */
static void dense_case(qn_encoder *enc, qn_dtype t, int64_t K, int64_t N, int64_t M, qn_dtype xt, qn_act act,
                       int64_t pad) {
    weights g = make_weights(t, K, N), u = make_weights(t, K, N);
    float *xv;
    void *xb = make_x(xt, K * M, &xv);
    qn_tensor tw, tu;
    qn_buffer *bw = upload_rows(&g, pad, &tw), *bu = upload_rows(&u, pad, &tu);
    qn_buffer *bx = upload(xt, 2, (int64_t[]){K, M}, xb, (size_t)(K * M * qn_dtype_block_bytes(xt)));
    qn_buffer *by = qt_poisoned(qt_device(), QN_F32, 2, (int64_t[]){N, M});
    qn_buffer *bg = qt_poisoned(qt_device(), QN_F32, 2, (int64_t[]){N, M});
    QT_OK(qn_qmatmul(enc, qn_tensor_of(by), tw, qn_tensor_of(bx)));
    QT_OK(qn_qmatmul_glu(enc, qn_tensor_of(bg), tw, tu, qn_tensor_of(bx), act));
    QT_OK(qn_encoder_commit_wait(enc));
    float *y = qt_read_all(by), *yg = qt_read_all(bg);
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double sg, su;
            double rg = ref_dot(&g, n, xv + m * K, &sg), ru = ref_dot(&u, n, xv + m * K, &su);
            check("matmul", t, y[m * N + n], rg, sg, n, m);
            /* act is smooth with slope under 1.2: the gate's error scales by |u| */
            double want = act_ref(act, rg) * ru;
            check("glu", t, yg[m * N + n], want, 1.2 * sg * fabs(ru) + su * fabs(act_ref(act, rg)) + 1e-6, n, m);
        }
    free(y);
    free(yg);
    qn_buffer_free(bw);
    qn_buffer_free(bu);
    qn_buffer_free(bx);
    qn_buffer_free(by);
    qn_buffer_free(bg);
    free(xb);
    free(xv);
    free_weights(&g);
    free_weights(&u);
}

/* Dense and GLU, every weight type, K at the smallest block count and at
 * three blocks, odd N, tokens 1, 3, 8 (one launch) and 11 (two). */
static void test_dense_and_glu(void **state) {
    (void)state;
    qn_encoder *enc;
    QT_OK(qn_encoder_create(qt_device(), &enc));
    const int64_t Ms[4] = {1, 3, 8, 11};
    for (int ti = 0; ti < NTYPES; ti++)
        for (int kb = 0; kb < 2; kb++) {
            qn_dtype t = TYPES[ti];
            int64_t blk = qn_dtype_block_elems(t) == 1 ? 8 : qn_dtype_block_elems(t);
            dense_case(enc, t, blk * (kb == 0 ? 1 : 3), 37, Ms[(ti + kb) % 4], XTYPES[(ti + kb) % 3],
                       (qn_act)((ti + kb) % 3), 0);
        }
    qn_encoder_destroy(enc);
}

/* The shapes the GPU streams in several stages: rows longer than a stage
 * (16 KB; taken in pieces, the last one shorter), more rows than one round
 * of stages covers, and strided rows at each type's smallest alignment (the
 * lowest set bit of its block size). */
static void test_long_and_many_rows(void **state) {
    (void)state;
    qn_encoder *enc;
    QT_OK(qn_encoder_create(qt_device(), &enc));
    const qn_dtype types[6] = {QN_Q4_0, QN_Q8_0, QN_Q6_K, QN_MXFP4, QN_Q4_K, QN_F16};
    for (int ti = 0; ti < 6; ti++) {
        qn_dtype t = types[ti];
        int64_t blk = qn_dtype_block_elems(t) == 1 ? 8 : qn_dtype_block_elems(t);
        int64_t bb = qn_dtype_row_bytes(t, blk);
        dense_case(enc, t, (16384 / bb + 2) * blk, 300, 3, QN_F32, (qn_act)(ti % 3), qn_dtype_block_bytes(t) & -qn_dtype_block_bytes(t));
        dense_case(enc, t, 2048, 5000, 1, QN_BF16, QN_ACT_SILU, 0);
    }
    qn_encoder_destroy(enc);
}

/* Routed: E experts, top_k 1 to 8 with repeated ids, shared and per-slot x. */
static void test_routed(void **state) {
    (void)state;
    qn_encoder *enc;
    QT_OK(qn_encoder_create(qt_device(), &enc));
    const qn_dtype types[4] = {QN_Q4_K, QN_Q6_K, QN_Q8_0, QN_MXFP4};
    for (int c = 0; c < 8; c++) {
        qn_dtype t = types[c % 4];
        int64_t K = qn_dtype_block_elems(t) * (c % 2 + 1), N = 19, E = 9, top_k = c + 1, M = 3;
        bool per_slot = c % 2 == 1, glu = c % 3 == 0;
        weights g = make_weights(t, K, N * E), u = make_weights(t, K, N * E);
        int32_t *ids = malloc((size_t)(top_k * M) * 4);
        for (int64_t i = 0; i < top_k * M; i++) ids[i] = i % 4 == 1 ? ids[i - 1] : (int32_t)(qt_rand() % E); /* repeats */
        int64_t xslots = per_slot ? top_k : 1;
        float *xv;
        void *xb = make_x(QN_F32, K * xslots * M, &xv);
        qn_buffer *bw = upload(t, 3, (int64_t[]){K, N, E}, g.bytes, g.nbytes);
        qn_buffer *bu = upload(t, 3, (int64_t[]){K, N, E}, u.bytes, u.nbytes);
        qn_buffer *bx = upload(QN_F32, 3, (int64_t[]){K, xslots, M}, xb, (size_t)(K * xslots * M * 4));
        qn_buffer *bi = upload(QN_I32, 2, (int64_t[]){top_k, M}, ids, (size_t)(top_k * M * 4));
        qn_buffer *by = qt_poisoned(qt_device(), QN_F32, 3, (int64_t[]){N, top_k, M});
        if (glu)
            QT_OK(qn_qmatmul_glu_id(enc, qn_tensor_of(by), qn_tensor_of(bw), qn_tensor_of(bu), qn_tensor_of(bx),
                                    qn_tensor_of(bi), QN_ACT_SILU));
        else
            QT_OK(qn_qmatmul_id(enc, qn_tensor_of(by), qn_tensor_of(bw), qn_tensor_of(bx), qn_tensor_of(bi)));
        QT_OK(qn_encoder_commit_wait(enc));
        float *y = qt_read_all(by);
        for (int64_t m = 0; m < M; m++)
            for (int64_t s = 0; s < top_k; s++) {
                int64_t e = ids[m * top_k + s];
                const float *xr = xv + (m * xslots + (per_slot ? s : 0)) * K;
                for (int64_t n = 0; n < N; n++) {
                    double sg, su, rg = ref_dot(&g, e * N + n, xr, &sg);
                    double want = rg, tol = sg;
                    if (glu) {
                        double ru = ref_dot(&u, e * N + n, xr, &su);
                        want = act_ref(QN_ACT_SILU, rg) * ru;
                        tol = 1.2 * sg * fabs(ru) + su * fabs(act_ref(QN_ACT_SILU, rg)) + 1e-6;
                    }
                    check(glu ? "glu_id" : "id", t, y[(m * top_k + s) * N + n], want, tol, n, m * top_k + s);
                }
            }
        /* an id out of range is refused when the work is waited for */
        ids[1 % (top_k * M)] = (int32_t)E;
        QT_OK(qn_buffer_write(bi, 0, ids, (size_t)(top_k * M * 4)));
        QT_OK(qn_qmatmul_id(enc, qn_tensor_of(by), qn_tensor_of(bw), qn_tensor_of(bx), qn_tensor_of(bi)));
        QT_FAILS(qn_encoder_commit_wait(enc), QN_ERR_INVALID_ARGUMENT, "expert id");
        QT_OK(qn_encoder_commit_wait(enc)); /* reported once */
        free(y);
        free(ids);
        free(xb);
        free(xv);
        qn_buffer_free(bw);
        qn_buffer_free(bu);
        qn_buffer_free(bx);
        qn_buffer_free(bi);
        qn_buffer_free(by);
        free_weights(&g);
        free_weights(&u);
    }
    qn_encoder_destroy(enc);
}

/* A matvec whose weights are the output of the matvec just before it: on
 * the GPU the second may start while the first finishes, and must not read
 * its weights early then. */
static void test_weights_from_previous(void **state) {
    (void)state;
    qn_encoder *enc;
    QT_OK(qn_encoder_create(qt_device(), &enc));
    const int64_t K = 4096, N = 4096;
    weights g = make_weights(QN_Q4_0, K, N);
    float *xv, *x2v;
    void *xb = make_x(QN_F32, K, &xv), *x2b = make_x(QN_F32, 64, &x2v);
    qn_buffer *bw = upload(QN_Q4_0, 2, (int64_t[]){K, N}, g.bytes, g.nbytes);
    qn_buffer *bx = upload(QN_F32, 2, (int64_t[]){K, 1}, xb, (size_t)K * 4);
    qn_buffer *bx2 = upload(QN_F32, 2, (int64_t[]){64, 1}, x2b, 64 * 4);
    qn_buffer *by = qt_poisoned(qt_device(), QN_F32, 2, (int64_t[]){N, 1});
    qn_buffer *by2 = qt_poisoned(qt_device(), QN_F32, 2, (int64_t[]){64, 1});
    QT_OK(qn_qmatmul(enc, qn_tensor_of(by), qn_tensor_of(bw), qn_tensor_of(bx)));
    /* y [4096] read as f32 weights [64 x 64] */
    QT_OK(qn_qmatmul(enc, qn_tensor_of(by2), qn_tensor_make(by, 0, QN_F32, 64, 64, 1, 1), qn_tensor_of(bx2)));
    QT_OK(qn_encoder_commit_wait(enc));
    float *y = qt_read_all(by), *y2 = qt_read_all(by2);
    weights w2 = {QN_F32, 64, 64, NULL, 0, y};
    for (int64_t n = 0; n < 64; n++) {
        double tol, want = ref_dot(&w2, n, x2v, &tol);
        check("chained", QN_F32, y2[n], want, tol, n, 0);
    }
    free(y);
    free(y2);
    qn_buffer_free(bw);
    qn_buffer_free(bx);
    qn_buffer_free(bx2);
    qn_buffer_free(by);
    qn_buffer_free(by2);
    free(xb);
    free(xv);
    free(x2b);
    free(x2v);
    free_weights(&g);
    qn_encoder_destroy(enc);
}

static void test_errors_and_plan(void **state) {
    (void)state;
    qn_device *dev = qt_device();
    qn_encoder *enc;
    QT_OK(qn_encoder_create(dev, &enc));
    qn_buffer *w = qt_poisoned(dev, QN_Q4_K, 2, (int64_t[]){256, 8});
    qn_buffer *x = qt_poisoned(dev, QN_F32, 2, (int64_t[]){256, 2});
    qn_buffer *x2 = qt_poisoned(dev, QN_F32, 2, (int64_t[]){512, 2});
    qn_buffer *y = qt_poisoned(dev, QN_F32, 2, (int64_t[]){8, 2});
    qn_buffer *yh = qt_poisoned(dev, QN_F16, 2, (int64_t[]){8, 2});
    qn_buffer *wi = qt_poisoned(dev, QN_I32, 2, (int64_t[]){256, 8});
    qn_buffer *ids = qt_poisoned(dev, QN_F32, 2, (int64_t[]){2, 2});
    QT_FAILS(qn_qmatmul(enc, qn_tensor_of(y), qn_tensor_of(w), qn_tensor_of(x2)), QN_ERR_INVALID_ARGUMENT,
             "x rows have 512 values, the weight rows 256");
    QT_FAILS(qn_qmatmul(enc, qn_tensor_of(yh), qn_tensor_of(w), qn_tensor_of(x)), QN_ERR_INVALID_ARGUMENT, "y must be f32");
    QT_FAILS(qn_qmatmul(enc, qn_tensor_of(y), qn_tensor_of(wi), qn_tensor_of(x)), QN_ERR_INVALID_ARGUMENT,
             "i32 is not a weight type");
    QT_FAILS(qn_qmatmul_glu(enc, qn_tensor_of(y), qn_tensor_of(w), qn_tensor_of(w), qn_tensor_of(x), QN_ACT_SIGMOID),
             QN_ERR_INVALID_ARGUMENT, "activation 3");
    QT_FAILS(qn_qmatmul_id(enc, qn_tensor_of(y), qn_tensor_of(w), qn_tensor_of(x), qn_tensor_of(ids)),
             QN_ERR_INVALID_ARGUMENT, "ids must be i32");
    if (qt_on_gpu()) {
        qn_tensor odd = qn_tensor_make(x, 4, QN_F32, 256, 1, 1, 1); /* 4 bytes in: not 16-byte aligned */
        QT_FAILS(qn_qmatmul(enc, qn_tensor_make(y, 0, QN_F32, 8, 1, 1, 1), qn_tensor_of(w), odd), QN_ERR_INVALID_ARGUMENT,
                 "16-byte aligned");
    }
    char plan[256];
    QT_OK(qn_qmatmul_plan(dev, QN_Q6_K, 14336, 4096, 1, plan, sizeof plan));
    assert_non_null(strstr(plan, qt_on_gpu() ? "matvec_q6_K" : "cpu"));
    QT_FAILS(qn_qmatmul_plan(dev, QN_I8, 1, 1, 1, plan, sizeof plan), QN_ERR_INVALID_ARGUMENT, "i8");
    float *yv = qt_read_all(y); /* nothing ran */
    for (int i = 0; i < 16; i++) assert_true(isnan(yv[i]));
    free(yv);
    qn_buffer_free(w);
    qn_buffer_free(x);
    qn_buffer_free(x2);
    qn_buffer_free(y);
    qn_buffer_free(yh);
    qn_buffer_free(wi);
    qn_buffer_free(ids);
    qn_encoder_destroy(enc);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dense_and_glu),
        cmocka_unit_test(test_long_and_many_rows),
        cmocka_unit_test(test_routed),
        cmocka_unit_test(test_weights_from_previous),
        cmocka_unit_test(test_errors_and_plan),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    qt_close_devices();
    return rc;
}
