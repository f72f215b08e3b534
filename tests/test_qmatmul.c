/* Quantized matrix products on the device under test against a reference
 * written here: weights dequantized on the host (the reference dequantizer,
 * itself checked against ggml), dot products in double.
 *
 * Error bound: f32 accumulation of K products, summed per part and scaled
 * per block, so |y - ref| <= 1e-4 (sum|w x| + max|w| sum|x|) + 1e-6; the
 * second term covers the affine types, which add min * sum(x) per block. */
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
    double acc = 0, sabs = 0, sx = 0, wmax = 0;
    for (int64_t k = 0; k < w->K; k++) {
        double a = w->deq[r * w->K + k];
        acc += a * x[k];
        sabs += fabs(a * x[k]);
        sx += fabs(x[k]);
        wmax = fabs(a) > wmax ? fabs(a) : wmax;
    }
    *scale = 1e-4 * (sabs + wmax * sx) + 1e-6;
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
            int64_t K = blk * (kb == 0 ? 1 : 3), N = 37, M = Ms[(ti + kb) % 4];
            qn_dtype xt = XTYPES[(ti + kb) % 3];
            qn_act act = (qn_act)((ti + kb) % 3);
            weights g = make_weights(t, K, N), u = make_weights(t, K, N);
            float *xv;
            void *xb = make_x(xt, K * M, &xv);
            qn_buffer *bw = upload(t, 2, (int64_t[]){K, N}, g.bytes, g.nbytes);
            qn_buffer *bu = upload(t, 2, (int64_t[]){K, N}, u.bytes, u.nbytes);
            qn_buffer *bx = upload(xt, 2, (int64_t[]){K, M}, xb, (size_t)(K * M * qn_dtype_block_bytes(xt)));
            qn_buffer *by = qt_poisoned(qt_device(), QN_F32, 2, (int64_t[]){N, M});
            qn_buffer *bg = qt_poisoned(qt_device(), QN_F32, 2, (int64_t[]){N, M});
            QT_OK(qn_qmatmul(enc, qn_tensor_of(by), qn_tensor_of(bw), qn_tensor_of(bx)));
            QT_OK(qn_qmatmul_glu(enc, qn_tensor_of(bg), qn_tensor_of(bw), qn_tensor_of(bu), qn_tensor_of(bx), act));
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

/* ---- MLX affine weights */

/* Host MLX weights: `rows` rows of K random floats quantized by the host's
 * MLX quantizer; w.deq holds what they dequantize to (the reference). */
typedef struct {
    weights w;
    qn_mlx_quant p;
    qn_dtype st;
    uint32_t *q;
    void *scales, *biases;
    int64_t words, groups; /* a row's */
} mlx_weights;

static mlx_weights make_mlx(qn_mlx_quant p, qn_dtype st, int64_t K, int64_t rows) {
    mlx_weights m = {{QN_U32, K, rows, NULL, 0, malloc((size_t)(K * rows) * 4)}, p, st, NULL, NULL, NULL,
                     K * p.bits / 32, K / p.group_size};
    size_t sb = (size_t)qn_dtype_block_bytes(st);
    float *x = malloc((size_t)(K * rows) * 4);
    qt_fill_random_f32(x, (size_t)(K * rows), -1, 1);
    m.q = malloc((size_t)(m.words * rows) * 4);
    m.scales = malloc((size_t)(m.groups * rows) * sb);
    m.biases = malloc((size_t)(m.groups * rows) * sb);
    for (int64_t r = 0; r < rows; r++) {
        char *s = (char *)m.scales + r * m.groups * sb, *b = (char *)m.biases + r * m.groups * sb;
        QT_OK(qn_mlx_quantize_row(p, st, x + r * K, K, m.q + r * m.words, s, b));
        QT_OK(qn_mlx_dequantize_row(p, st, m.q + r * m.words, s, b, m.w.deq + r * K, K));
    }
    free(x);
    return m;
}

static void free_mlx(mlx_weights *m) {
    free(m->w.deq);
    free(m->q);
    free(m->scales);
    free(m->biases);
}

/* On `dev`, shaped [.., N, E] (E 1: 2-D). */
static qn_mlx_weight upload_mlx(qn_device *dev, const mlx_weights *m, int64_t N, int64_t E) {
    size_t sb = (size_t)qn_dtype_block_bytes(m->st);
    qn_buffer *q, *s, *b;
    int nd = E > 1 ? 3 : 2;
    QT_OK(qn_buffer_alloc(dev, QN_U32, nd, (int64_t[]){m->words, N, E}, &q));
    QT_OK(qn_buffer_alloc(dev, m->st, nd, (int64_t[]){m->groups, N, E}, &s));
    QT_OK(qn_buffer_alloc(dev, m->st, nd, (int64_t[]){m->groups, N, E}, &b));
    QT_OK(qn_buffer_write(q, 0, m->q, (size_t)(m->words * N * E) * 4));
    QT_OK(qn_buffer_write(s, 0, m->scales, (size_t)(m->groups * N * E) * sb));
    QT_OK(qn_buffer_write(b, 0, m->biases, (size_t)(m->groups * N * E) * sb));
    return (qn_mlx_weight){qn_tensor_of(q), qn_tensor_of(s), qn_tensor_of(b), m->p.bits, m->p.group_size};
}

static void free_mlx_weight(qn_mlx_weight *w) {
    qn_buffer_free(w->q.buf);
    qn_buffer_free(w->scales.buf);
    qn_buffer_free(w->biases.buf);
}

/* The devices an MLX request runs on: the device under test and, on a GPU,
 * the CPU backend too (both against the reference). */
static int mlx_devices(qn_device *devs[2]) {
    devs[0] = qt_device();
    devs[1] = qt_cpu();
    return qt_on_gpu() ? 2 : 1;
}

/* Dense and GLU for every bit width, group size and scale type: K at one
 * group, three groups and 132 units (more than a GPU block's threads), odd
 * N, tokens 1, 3, 8 (one launch), 9 and 33 (several), every x dtype. */
static void test_mlx_dense_and_glu(void **state) {
    (void)state;
    const int bits[5] = {2, 3, 4, 6, 8}, groups[3] = {32, 64, 128};
    const qn_dtype stypes[3] = {QN_F16, QN_BF16, QN_F32};
    const int64_t Ms[5] = {1, 3, 8, 9, 33};
    qn_device *devs[2];
    int ndev = mlx_devices(devs);
    int c = 0;
    for (int bi = 0; bi < 5; bi++)
        for (int gi = 0; gi < 3; gi++)
            for (int si = 0; si < 3; si++, c++) {
                qn_mlx_quant p = {bits[bi], groups[gi]};
                int64_t K = c % 3 == 0 ? p.group_size : c % 3 == 1 ? 3 * p.group_size : 4224, N = 37, M = Ms[c % 5];
                qn_dtype xt = XTYPES[c % 3];
                qn_act act = (qn_act)(c % 3);
                mlx_weights g = make_mlx(p, stypes[si], K, N), u = make_mlx(p, stypes[si], K, N);
                float *xv;
                void *xb = make_x(xt, K * M, &xv);
                for (int d = 0; d < ndev; d++) {
                    qn_encoder *enc;
                    QT_OK(qn_encoder_create(devs[d], &enc));
                    qn_mlx_weight wg = upload_mlx(devs[d], &g, N, 1), wu = upload_mlx(devs[d], &u, N, 1);
                    qn_buffer *bx;
                    QT_OK(qn_buffer_alloc(devs[d], xt, 2, (int64_t[]){K, M}, &bx));
                    QT_OK(qn_buffer_write(bx, 0, xb, (size_t)(K * M * qn_dtype_block_bytes(xt))));
                    qn_buffer *by = qt_poisoned(devs[d], QN_F32, 2, (int64_t[]){N, M});
                    qn_buffer *bg = qt_poisoned(devs[d], QN_F32, 2, (int64_t[]){N, M});
                    QT_OK(qn_qmatmul_mlx(enc, qn_tensor_of(by), &wg, qn_tensor_of(bx)));
                    QT_OK(qn_qmatmul_mlx_glu(enc, qn_tensor_of(bg), &wg, &wu, qn_tensor_of(bx), act));
                    QT_OK(qn_encoder_commit_wait(enc));
                    float *y = qt_read_all(by), *yg = qt_read_all(bg);
                    char what[64];
                    snprintf(what, sizeof what, "mlx %d-bit group %d %s scales, x %s, K %lld, %s", p.bits,
                             p.group_size, qn_dtype_name(stypes[si]), qn_dtype_name(xt), (long long)K,
                             d ? "cpu" : "device");
                    for (int64_t m = 0; m < M; m++)
                        for (int64_t n = 0; n < N; n++) {
                            double sg, su;
                            double rg = ref_dot(&g.w, n, xv + m * K, &sg), ru = ref_dot(&u.w, n, xv + m * K, &su);
                            check(what, QN_U32, y[m * N + n], rg, sg, n, m);
                            check(what, QN_U32, yg[m * N + n], act_ref(act, rg) * ru,
                                  1.2 * sg * fabs(ru) + su * fabs(act_ref(act, rg)) + 1e-6, n, m);
                        }
                    free(y);
                    free(yg);
                    free_mlx_weight(&wg);
                    free_mlx_weight(&wu);
                    qn_buffer_free(bx);
                    qn_buffer_free(by);
                    qn_buffer_free(bg);
                    qn_encoder_destroy(enc);
                }
                free(xb);
                free(xv);
                free_mlx(&g);
                free_mlx(&u);
            }
}

/* Routed, experts stacked [.., N, E] as SwitchGLU stores them: top_k 1 to 8
 * with repeated ids, shared and per-slot x, plain and GLU, across bit widths;
 * an id out of range is reported at the wait. */
static void test_mlx_routed(void **state) {
    (void)state;
    const int bits[5] = {4, 8, 2, 3, 6}, groups[3] = {64, 32, 128};
    const qn_dtype stypes[3] = {QN_BF16, QN_F16, QN_F32};
    qn_device *devs[2];
    int ndev = mlx_devices(devs);
    for (int c = 0; c < 8; c++) {
        qn_mlx_quant p = {bits[c % 5], groups[c % 3]};
        int64_t K = p.group_size * (c % 2 + 1), N = 19, E = 9, top_k = c + 1, M = 3;
        bool per_slot = c % 2 == 1, glu = c % 3 != 1;
        qn_dtype xt = XTYPES[c % 3];
        mlx_weights g = make_mlx(p, stypes[c % 3], K, N * E), u = make_mlx(p, stypes[c % 3], K, N * E);
        int32_t *ids = malloc((size_t)(top_k * M) * 4);
        for (int64_t i = 0; i < top_k * M; i++) ids[i] = i % 4 == 1 ? ids[i - 1] : (int32_t)(qt_rand() % E); /* repeats */
        int64_t xslots = per_slot ? top_k : 1;
        float *xv;
        void *xb = make_x(xt, K * xslots * M, &xv);
        for (int d = 0; d < ndev; d++) {
            qn_encoder *enc;
            QT_OK(qn_encoder_create(devs[d], &enc));
            qn_mlx_weight wg = upload_mlx(devs[d], &g, N, E), wu = upload_mlx(devs[d], &u, N, E);
            qn_buffer *bx, *bi;
            QT_OK(qn_buffer_alloc(devs[d], xt, 3, (int64_t[]){K, xslots, M}, &bx));
            QT_OK(qn_buffer_write(bx, 0, xb, (size_t)(K * xslots * M * qn_dtype_block_bytes(xt))));
            QT_OK(qn_buffer_alloc(devs[d], QN_I32, 2, (int64_t[]){top_k, M}, &bi));
            QT_OK(qn_buffer_write(bi, 0, ids, (size_t)(top_k * M * 4)));
            qn_buffer *by = qt_poisoned(devs[d], QN_F32, 3, (int64_t[]){N, top_k, M});
            if (glu)
                QT_OK(qn_qmatmul_mlx_glu_id(enc, qn_tensor_of(by), &wg, &wu, qn_tensor_of(bx), qn_tensor_of(bi),
                                            QN_ACT_GELU_TANH));
            else
                QT_OK(qn_qmatmul_mlx_id(enc, qn_tensor_of(by), &wg, qn_tensor_of(bx), qn_tensor_of(bi)));
            QT_OK(qn_encoder_commit_wait(enc));
            float *y = qt_read_all(by);
            char what[64];
            snprintf(what, sizeof what, "mlx %s %d-bit group %d top_k %lld, %s", glu ? "glu_id" : "id", p.bits,
                     p.group_size, (long long)top_k, d ? "cpu" : "device");
            for (int64_t m = 0; m < M; m++)
                for (int64_t s = 0; s < top_k; s++) {
                    int64_t e = ids[m * top_k + s];
                    const float *xr = xv + (m * xslots + (per_slot ? s : 0)) * K;
                    for (int64_t n = 0; n < N; n++) {
                        double sg, su, rg = ref_dot(&g.w, e * N + n, xr, &sg);
                        double want = rg, tol = sg;
                        if (glu) {
                            double ru = ref_dot(&u.w, e * N + n, xr, &su);
                            want = act_ref(QN_ACT_GELU_TANH, rg) * ru;
                            tol = 1.2 * sg * fabs(ru) + su * fabs(act_ref(QN_ACT_GELU_TANH, rg)) + 1e-6;
                        }
                        check(what, QN_U32, y[(m * top_k + s) * N + n], want, tol, n, m * top_k + s);
                    }
                }
            ids[top_k * M - 1] = c % 2 ? -1 : (int32_t)E;
            QT_OK(qn_buffer_write(bi, 0, ids, (size_t)(top_k * M * 4)));
            QT_OK(qn_qmatmul_mlx_id(enc, qn_tensor_of(by), &wg, qn_tensor_of(bx), qn_tensor_of(bi)));
            QT_FAILS(qn_encoder_commit_wait(enc), QN_ERR_INVALID_ARGUMENT, "expert id");
            QT_OK(qn_encoder_commit_wait(enc)); /* reported once */
            ids[top_k * M - 1] = 0;
            free(y);
            free_mlx_weight(&wg);
            free_mlx_weight(&wu);
            qn_buffer_free(bx);
            qn_buffer_free(bi);
            qn_buffer_free(by);
            qn_encoder_destroy(enc);
        }
        free(ids);
        free(xb);
        free(xv);
        free_mlx(&g);
        free_mlx(&u);
    }
}

static void test_mlx_errors_and_plan(void **state) {
    (void)state;
    qn_device *dev = qt_device();
    qn_encoder *enc;
    QT_OK(qn_encoder_create(dev, &enc));
    /* 4 bits, groups of 64: 8 rows of 128 weights (16 words, 2 groups) */
    qn_buffer *q = qt_poisoned(dev, QN_U32, 2, (int64_t[]){16, 8}), *q12 = qt_poisoned(dev, QN_U32, 2, (int64_t[]){12, 8});
    qn_buffer *s = qt_poisoned(dev, QN_F16, 2, (int64_t[]){2, 8}), *b = qt_poisoned(dev, QN_F16, 2, (int64_t[]){2, 8});
    qn_buffer *bb = qt_poisoned(dev, QN_BF16, 2, (int64_t[]){2, 8});
    qn_buffer *x = qt_poisoned(dev, QN_F32, 2, (int64_t[]){128, 2}), *x2 = qt_poisoned(dev, QN_F32, 2, (int64_t[]){256, 2});
    qn_buffer *y = qt_poisoned(dev, QN_F32, 2, (int64_t[]){8, 2}), *y9 = qt_poisoned(dev, QN_F32, 2, (int64_t[]){9, 2});
    qn_buffer *ids = qt_poisoned(dev, QN_F32, 2, (int64_t[]){2, 2});
    qn_mlx_weight w = {qn_tensor_of(q), qn_tensor_of(s), qn_tensor_of(b), 4, 64};
    qn_tensor ty = qn_tensor_of(y), tx = qn_tensor_of(x);
    QT_FAILS(qn_qmatmul_mlx(enc, ty, NULL, tx), QN_ERR_INVALID_ARGUMENT, "weight is NULL");
    QT_FAILS(qn_qmatmul_mlx(enc, ty, &w, qn_tensor_of(x2)), QN_ERR_INVALID_ARGUMENT,
             "x rows have 256 values, the weight rows 128");
    QT_FAILS(qn_qmatmul_mlx(enc, qn_tensor_of(y9), &w, tx), QN_ERR_INVALID_ARGUMENT, "y rows have 9 values, W has 8");
    qn_mlx_weight bad = w;
    bad.q = qn_tensor_of(q12); /* 96 weights a row: not whole groups of 64 */
    QT_FAILS(qn_qmatmul_mlx(enc, ty, &bad, tx), QN_ERR_INVALID_ARGUMENT, "not whole groups of 64");
    bad = w, bad.bits = 5;
    QT_FAILS(qn_qmatmul_mlx(enc, ty, &bad, tx), QN_ERR_INVALID_ARGUMENT, "bits 5");
    bad = w, bad.group_size = 48;
    QT_FAILS(qn_qmatmul_mlx(enc, ty, &bad, tx), QN_ERR_INVALID_ARGUMENT, "group size 48");
    bad = w, bad.biases = qn_tensor_of(bb);
    QT_FAILS(qn_qmatmul_mlx(enc, ty, &bad, tx), QN_ERR_INVALID_ARGUMENT, "scales are f16 but biases bf16");
    bad = w, bad.bits = 8, bad.group_size = 32; /* 16 words of 8 bits: 64 weights in 2 groups of 32 */
    QT_FAILS(qn_qmatmul_mlx_glu(enc, ty, &w, &bad, tx, QN_ACT_SILU), QN_ERR_INVALID_ARGUMENT, "differ");
    QT_FAILS(qn_qmatmul_mlx_glu(enc, ty, &w, &w, tx, QN_ACT_SIGMOID), QN_ERR_INVALID_ARGUMENT, "activation 3");
    QT_FAILS(qn_qmatmul_mlx_id(enc, ty, &w, tx, qn_tensor_of(ids)), QN_ERR_INVALID_ARGUMENT, "ids must be i32");
    bad = w, bad.scales = qn_tensor_make(s, 0, QN_F16, 2, 8, 1, 1), bad.scales.nb[0] = 4, bad.scales.nb[1] = 2;
    QT_FAILS(qn_qmatmul_mlx(enc, ty, &bad, tx), QN_ERR_INVALID_ARGUMENT, "contiguous");
    if (qt_on_gpu()) {
        bad = w, bad.q = qn_tensor_make(q, 4, QN_U32, 16, 7, 1, 1); /* 4 bytes in: not 16-byte aligned */
        bad.scales = qn_tensor_make(s, 0, QN_F16, 2, 7, 1, 1), bad.biases = qn_tensor_make(b, 0, QN_F16, 2, 7, 1, 1);
        QT_FAILS(qn_qmatmul_mlx(enc, qn_tensor_make(y, 0, QN_F32, 7, 2, 1, 1), &bad, tx), QN_ERR_UNSUPPORTED,
                 "multiples of 16 bytes");
    }
    char plan[256];
    QT_OK(qn_qmatmul_mlx_plan(dev, (qn_mlx_quant){4, 64}, 14336, 4096, 1, plan, sizeof plan));
    assert_non_null(strstr(plan, qt_on_gpu() ? "affine_matvec (4-bit, groups of 64)" : "cpu"));
    QT_FAILS(qn_qmatmul_mlx_plan(dev, (qn_mlx_quant){5, 64}, 1, 64, 1, plan, sizeof plan), QN_ERR_INVALID_ARGUMENT,
             "bits 5");
    QT_FAILS(qn_qmatmul_mlx_plan(dev, (qn_mlx_quant){4, 64}, 1, 96, 1, plan, sizeof plan), QN_ERR_INVALID_ARGUMENT,
             "k = 96");
    float *yv = qt_read_all(y); /* nothing ran */
    for (int i = 0; i < 16; i++) assert_true(isnan(yv[i]));
    free(yv);
    qn_buffer *all[] = {q, q12, s, b, bb, x, x2, y, y9, ids};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) qn_buffer_free(all[i]);
    qn_encoder_destroy(enc);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dense_and_glu),
        cmocka_unit_test(test_routed),
        cmocka_unit_test(test_errors_and_plan),
        cmocka_unit_test(test_mlx_dense_and_glu),
        cmocka_unit_test(test_mlx_routed),
        cmocka_unit_test(test_mlx_errors_and_plan),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    qt_close_devices();
    return rc;
}
