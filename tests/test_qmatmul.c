/* Quantized matrix products on the device under test against a reference
 * written here: weights dequantized on the host (the reference dequantizer,
 * itself checked against ggml), dot products in double.
 *
 * The reference uses the operands the request's path computes with, as
 * qn_qmatmul_plan / qn_qmatmul_id_plan name it:
 *   matvec and CPU: the dequantized weights and x as given;
 *   tensor cores (an mm_ kernel): weights rounded to the compute dtype (bf16
 *   for f32 and bf16 weights, else f16) and each x row, unless it is in that
 *   dtype already, multiplied by 2^shift (its largest magnitude brought into
 *   [2^14, 2^15), shift at most 64), rounded, and multiplied back.
 * What is left is f32 accumulation of K exact products, summed per part
 * and scaled per block (matvec) or per mma (tensor cores), so for every
 * type |y - ref| <= 1e-4 (sum|w x| + max|w| sum|x|) + 1e-6; the second term
 * covers the affine types, which add min * sum(x) per block. The matvec
 * dots block-quantized weights with x rounded to int8 in blocks of 32 (scale
 * max|x| / 127, as llama.cpp does): each x value moves by at most half a
 * step, which adds sum |w_i| max|x of i's block| / 254. */
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

static float as_stored(qn_dtype t, float v) {
    return t == QN_F32 ? v : t == QN_F16 ? qn_f16_to_f32(qn_f32_to_f16(v)) : qn_bf16_to_f32(qn_f32_to_bf16(v));
}

static weights make_weights(qn_dtype t, int64_t K, int64_t rows) {
    weights w = {t, K, rows, NULL, (size_t)(qn_dtype_row_bytes(t, K) * rows), malloc((size_t)(K * rows) * 4)};
    float *x = malloc((size_t)(K * rows) * 4);
    qt_fill_random_f32(x, (size_t)(K * rows), -1, 1);
    w.bytes = malloc(w.nbytes);
    if (qn_dtype_block_elems(t) == 1) {
        store_plain(t, x, w.bytes, K * rows);
        for (int64_t i = 0; i < K * rows; i++) w.deq[i] = as_stored(t, x[i]);
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

/* x as stored in `xt`, and its values: rows of K, row r multiplied by
 * row_scale(r) (1 when row_scale is NULL). */
static void *make_x(qn_dtype xt, int64_t K, int64_t rows, float (*row_scale)(int64_t), float **vals) {
    int64_t n = K * rows;
    float *v = malloc((size_t)n * 4);
    qt_fill_random_f32(v, (size_t)n, -2, 2);
    for (int64_t i = 0; row_scale && i < n; i++) v[i] *= row_scale(i / K);
    void *b = malloc((size_t)n * 4);
    store_plain(xt, v, b, n);
    for (int64_t i = 0; i < n; i++) v[i] = as_stored(xt, v[i]);
    *vals = v;
    return b;
}

/* Rows far beyond f16's range and far below it (x in f32 or bf16). */
static float wide_rows(int64_t r) {
    static const float f[5] = {1.0f, 3e5f, 2e-6f, 7e9f, 0.25f};
    return f[r % 5];
}

static double act_ref(qn_act act, double g) {
    if (act == QN_ACT_SILU) return g / (1 + exp(-g));
    if (act == QN_ACT_GELU_TANH) return 0.5 * g * (1 + tanh(0.7978845608028654 * (g + 0.044715 * g * g * g)));
    return 0.5 * g * (1 + erf(g / sqrt(2.0)));
}

/* ---- the operands of a path */

typedef struct {
    bool mm;     /* tensor cores */
    qn_dtype dt; /* their compute dtype */
    bool x8;     /* the GPU matvec of a block type: x rounded to int8 */
} path;

static path path_of(qn_dtype t, const char *plan) {
    bool mm = strncmp(plan, "mm_", 3) == 0;
    path p = {mm, t == QN_F32 || t == QN_BF16 ? QN_BF16 : QN_F16,
              !mm && qt_on_gpu() && qn_dtype_block_elems(t) > 1};
    return p;
}

/* Where the policy must choose the tensor cores for more than 8 tokens: a
 * Hopper GPU (the kernels' shared memory fits). */
static bool mm_expected(int64_t M) {
    qn_device_info info;
    QT_OK(qn_device_info_get(qt_device(), &info));
    return qt_on_gpu() && info.cc_major == 9 && M > 8;
}

static path dense_path(qn_dtype t, int64_t N, int64_t K, int64_t M) {
    char plan[512];
    QT_OK(qn_qmatmul_plan(qt_device(), t, N, K, M, plan, sizeof plan));
    return path_of(t, plan);
}

static double round_to(qn_dtype dt, float v) {
    return dt == QN_F16 ? qn_f16_to_f32(qn_f32_to_f16(v)) : qn_bf16_to_f32(qn_f32_to_bf16(v));
}

/* Weights [rows][K] as the path uses them. */
static double *path_weights(const path *p, const weights *w) {
    double *o = malloc((size_t)(w->K * w->rows) * sizeof *o);
    for (int64_t i = 0; i < w->K * w->rows; i++) o[i] = p->mm ? round_to(p->dt, w->deq[i]) : w->deq[i];
    return o;
}

/* x rows [rows][K] (values of dtype xt) as the path uses them. */
static double *path_x(const path *p, qn_dtype xt, const float *x, int64_t K, int64_t rows) {
    double *o = malloc((size_t)(K * rows) * sizeof *o);
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * K;
        if (!p->mm || xt == p->dt) {
            for (int64_t k = 0; k < K; k++) o[r * K + k] = xr[k];
            continue;
        }
        float mx = 0;
        for (int64_t k = 0; k < K; k++) mx = fmaxf(mx, fabsf(xr[k]));
        int ex = 0;
        frexpf(mx, &ex);
        int shift = mx > 0 && isfinite(mx) ? 14 - (ex - 1) : 0;
        if (shift > 64) shift = 64;
        const float up = ldexpf(1.0f, shift);
        for (int64_t k = 0; k < K; k++) o[r * K + k] = ldexp(round_to(p->dt, xr[k] * up), -shift);
    }
    return o;
}

/* Reference dot of a weight row with an x row, and its error bound (x8:
 * with x's int8 rounding). */
static double ref_dot(const double *w, const double *x, int64_t K, bool x8, double *bound) {
    double acc = 0, sabs = 0, sx = 0, wmax = 0, xround = 0, amax = 0;
    for (int64_t k = 0; k < K; k++) {
        acc += w[k] * x[k];
        sabs += fabs(w[k] * x[k]);
        sx += fabs(x[k]);
        wmax = fabs(w[k]) > wmax ? fabs(w[k]) : wmax;
        if (k % 32 == 0) {
            amax = 0;
            for (int64_t j = k; j < k + 32 && j < K; j++) amax = fabs(x[j]) > amax ? fabs(x[j]) : amax;
        }
        xround += fabs(w[k]) * amax / 254;
    }
    *bound = 1e-4 * (sabs + wmax * sx) + 1e-6 + (x8 ? xround : 0);
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

/* One output of a product or GLU: the reference and its bound. */
static double ref_out(const double *g, const double *u, const double *x, int64_t K, qn_act act, bool x8,
                      double *tol) {
    double sg, su, rg = ref_dot(g, x, K, x8, &sg);
    if (!u) {
        *tol = sg;
        return rg;
    }
    double ru = ref_dot(u, x, K, x8, &su);
    /* act is smooth with slope under 1.2: the gate's error scales by |u| */
    *tol = 1.2 * sg * fabs(ru) + su * fabs(act_ref(act, rg)) + 1e-6;
    return act_ref(act, rg) * ru;
}

/* ---- dense and GLU */

typedef struct {
    qn_dtype t, xt;
    int64_t K, N, M;
    qn_act act;
    bool wide;   /* x rows beyond f16's range */
    int64_t pad; /* bytes between weight rows beyond their size (a strided view) */
} dense_case;

/* Weight rows `pad` bytes apart beyond their size. */
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

static void run_dense(qn_encoder *enc, const dense_case *c) {
    const qn_dtype t = c->t, xt = c->xt;
    const int64_t K = c->K, N = c->N, M = c->M;
    const path p = dense_path(t, N, K, M);
    if (p.mm != mm_expected(M))
        fail_msg("%s with %lld tokens: the plan names %s", qn_dtype_name(t), (long long)M, p.mm ? "mm" : "matvec");
    weights g = make_weights(t, K, N), u = make_weights(t, K, N);
    float *xv;
    void *xb = make_x(xt, K, M, c->wide ? wide_rows : NULL, &xv);
    qn_tensor tw, tu;
    qn_buffer *bw = upload_rows(&g, c->pad, &tw), *bu = upload_rows(&u, c->pad, &tu);
    qn_buffer *bx = upload(xt, 2, (int64_t[]){K, M}, xb, (size_t)(K * M * qn_dtype_block_bytes(xt)));
    qn_buffer *by = qt_poisoned(qt_device(), QN_F32, 2, (int64_t[]){N, M});
    qn_buffer *bg = qt_poisoned(qt_device(), QN_F32, 2, (int64_t[]){N, M});
    QT_OK(qn_qmatmul(enc, qn_tensor_of(by), tw, qn_tensor_of(bx)));
    QT_OK(qn_qmatmul_glu(enc, qn_tensor_of(bg), tw, tu, qn_tensor_of(bx), c->act));
    QT_OK(qn_encoder_commit_wait(enc));
    float *y = qt_read_all(by), *yg = qt_read_all(bg);
    double *pw = path_weights(&p, &g), *pu = path_weights(&p, &u), *px = path_x(&p, xt, xv, K, M);
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double tol, want = ref_out(pw + n * K, NULL, px + m * K, K, c->act, p.x8, &tol);
            check(p.mm ? "matmul (tensor cores)" : "matmul", t, y[m * N + n], want, tol, n, m);
            want = ref_out(pw + n * K, pu + n * K, px + m * K, K, c->act, p.x8, &tol);
            check(p.mm ? "glu (tensor cores)" : "glu", t, yg[m * N + n], want, tol, n, m);
        }
    free(pw);
    free(pu);
    free(px);
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

/* The kernel's block: 8 weights for plain types. */
static int64_t block_of(qn_dtype t) { return qn_dtype_block_elems(t) == 1 ? 8 : qn_dtype_block_elems(t); }

/* Matvec sizes (1 to 8 tokens), every type, K at one block and three, odd N. */
static void test_matvec(void **state) {
    (void)state;
    qn_encoder *enc;
    QT_OK(qn_encoder_create(qt_device(), &enc));
    const int64_t Ms[3] = {1, 3, 8};
    for (int ti = 0; ti < NTYPES; ti++)
        for (int kb = 0; kb < 2; kb++) {
            dense_case c = {TYPES[ti], XTYPES[(ti + kb) % 3], block_of(TYPES[ti]) * (kb == 0 ? 1 : 3), 37,
                            Ms[(ti + kb) % 3], (qn_act)((ti + kb) % 3), false, 0};
            run_dense(enc, &c);
        }
    qn_encoder_destroy(enc);
}

/* Prefill sizes, every type: K at one block and over several steps with a
 * partial last one (the matmul takes 128 weights a step, 64 for f32: 13
 * blocks of 32, 3 of 256, 37 groups of 8), odd N over one and two row
 * tiles, 9 to 200 tokens (partial token tiles), x of every dtype, rows
 * beyond and below f16's range. */
static void test_matmul(void **state) {
    (void)state;
    qn_encoder *enc;
    QT_OK(qn_encoder_create(qt_device(), &enc));
    for (int ti = 0; ti < NTYPES; ti++) {
        const qn_dtype t = TYPES[ti];
        const int64_t blk = block_of(t), many = blk == 32 ? 13 : blk == 256 ? 3 : 37;
        dense_case one = {t, XTYPES[ti % 3], blk, 131, 9 + 8 * (ti % 3), (qn_act)(ti % 3), false, 0};
        run_dense(enc, &one);
        const qn_dtype xt = XTYPES[(ti + 1) % 3];
        dense_case big = {t, xt, blk * many, ti % 2 ? 37 : 131, ti % 3 == 0 ? 200 : 67, (qn_act)((ti + 1) % 3),
                          xt != QN_F16, 0};
        run_dense(enc, &big);
    }
    qn_encoder_destroy(enc);
}

/* The shapes the matvec streams in several stages: rows longer than a stage
 * (16 KB; taken in pieces, the last one shorter), more rows than a block's
 * stages hold at once, strided rows at each type's smallest alignment (the
 * lowest set bit of its block size), and one token over wide rows (8192
 * weights, the width of a large model's projections) with an odd row count,
 * so that the blocks' last stages are partial; and many short rows (two
 * blocks; 640 values, as a small model's output head), which the matvec
 * gives to teams of 1, 2 or 4 lanes a row, many rows a stage. */
static void test_long_and_many_rows(void **state) {
    (void)state;
    qn_encoder *enc;
    QT_OK(qn_encoder_create(qt_device(), &enc));
    const qn_dtype types[6] = {QN_Q4_0, QN_Q8_0, QN_Q6_K, QN_MXFP4, QN_Q4_K, QN_F16};
    for (int ti = 0; ti < 6; ti++) {
        const qn_dtype t = types[ti];
        const int64_t blk = block_of(t), bb = qn_dtype_row_bytes(t, blk);
        dense_case lng = {t, QN_F32, (16384 / bb + 2) * blk, 300, 3, (qn_act)(ti % 3), false,
                          qn_dtype_block_bytes(t) & -qn_dtype_block_bytes(t)};
        run_dense(enc, &lng);
        dense_case many = {t, QN_BF16, 2048, 5000, 1, QN_ACT_SILU, false, 0};
        run_dense(enc, &many);
        dense_case wide = {t, QN_F16, 8192, 777, 1, (qn_act)((ti + 1) % 3), false, 0};
        run_dense(enc, &wide);
        dense_case tall = {t, QN_F32, 2 * blk, 70001, 1 + ti % 2, (qn_act)(ti % 3), false, 0};
        run_dense(enc, &tall);
    }
    dense_case head = {QN_Q4_0, QN_F32, 640, 20001, 1, QN_ACT_GELU_TANH, false, 0};
    run_dense(enc, &head);
    head.M = 3;
    run_dense(enc, &head);
    qn_encoder_destroy(enc);
}

/* ---- expert-routed */

typedef struct {
    qn_dtype t;
    int64_t K, N, E, top_k, M;
    bool per_slot, glu;
    int spread; /* ids drawn from the first `spread` experts */
} routed_case;

typedef struct {
    weights g, u;
    qn_buffer *bw, *bu, *bx, *bi, *by;
    float *xv;
    void *xb;
    int32_t *ids;
    path p;
    double *pw, *pu, *px;
} routed_data;

static void routed_setup(const routed_case *c, routed_data *d) {
    const int64_t xslots = c->per_slot ? c->top_k : 1, P = c->top_k * c->M;
    d->g = make_weights(c->t, c->K, c->N * c->E);
    d->u = make_weights(c->t, c->K, c->N * c->E);
    d->ids = malloc((size_t)P * 4);
    d->xb = make_x(QN_F32, c->K, xslots * c->M, NULL, &d->xv);
    d->bw = upload(c->t, 3, (int64_t[]){c->K, c->N, c->E}, d->g.bytes, d->g.nbytes);
    d->bu = upload(c->t, 3, (int64_t[]){c->K, c->N, c->E}, d->u.bytes, d->u.nbytes);
    d->bx = upload(QN_F32, 3, (int64_t[]){c->K, xslots, c->M}, d->xb, (size_t)(c->K * xslots * c->M * 4));
    QT_OK(qn_buffer_alloc(qt_device(), QN_I32, 2, (int64_t[]){c->top_k, c->M}, &d->bi));
    char plan[512];
    QT_OK(qn_qmatmul_id_plan(qt_device(), c->t, c->N, c->K, c->M, c->E, c->top_k, plan, sizeof plan));
    d->p = path_of(c->t, strncmp(plan, "mm_route", 8) == 0 ? "mm_" : plan);
    if (d->p.mm != mm_expected(c->M)) fail_msg("routed %s: the plan names %s", qn_dtype_name(c->t), plan);
    d->pw = path_weights(&d->p, &d->g);
    d->pu = path_weights(&d->p, &d->u);
    d->px = path_x(&d->p, QN_F32, d->xv, c->K, xslots * c->M);
    d->by = qt_poisoned(qt_device(), QN_F32, 3, (int64_t[]){c->N, c->top_k, c->M});
}

static void routed_free(routed_data *d) {
    free(d->pw);
    free(d->pu);
    free(d->px);
    free(d->ids);
    free(d->xb);
    free(d->xv);
    qn_buffer_free(d->bw);
    qn_buffer_free(d->bu);
    qn_buffer_free(d->bx);
    qn_buffer_free(d->bi);
    qn_buffer_free(d->by);
    free_weights(&d->g);
    free_weights(&d->u);
}

/* Random ids from the first `spread` experts, every fourth repeating the
 * previous one (the same expert twice for a token). */
static void draw_ids(const routed_case *c, int32_t *ids) {
    for (int64_t i = 0; i < c->top_k * c->M; i++) ids[i] = i % 4 == 1 ? ids[i - 1] : (int32_t)(qt_rand() % c->spread);
}

static qn_status routed_encode(qn_encoder *enc, const routed_case *c, routed_data *d) {
    if (c->glu)
        return qn_qmatmul_glu_id(enc, qn_tensor_of(d->by), qn_tensor_of(d->bw), qn_tensor_of(d->bu),
                                 qn_tensor_of(d->bx), qn_tensor_of(d->bi), QN_ACT_SILU);
    return qn_qmatmul_id(enc, qn_tensor_of(d->by), qn_tensor_of(d->bw), qn_tensor_of(d->bx), qn_tensor_of(d->bi));
}

/* Every output against the reference; pairs whose id is out of range must
 * be left as they were (poisoned: NaN). */
static void routed_check(const routed_case *c, const routed_data *d) {
    float *y = qt_read_all(d->by);
    const int64_t xslots = c->per_slot ? c->top_k : 1;
    for (int64_t m = 0; m < c->M; m++)
        for (int64_t s = 0; s < c->top_k; s++) {
            const int64_t e = d->ids[m * c->top_k + s], row = m * c->top_k + s;
            const double *xr = d->px + (m * xslots + (c->per_slot ? s : 0)) * c->K;
            for (int64_t n = 0; n < c->N; n++) {
                const float got = y[row * c->N + n];
                if (e < 0 || e >= c->E) {
                    if (!isnan(got)) fail_msg("pair %lld has a bad id but its output was written", (long long)row);
                    continue;
                }
                double tol, want = ref_out(d->pw + (e * c->N + n) * c->K, c->glu ? d->pu + (e * c->N + n) * c->K : NULL,
                                           xr, c->K, QN_ACT_SILU, d->p.x8, &tol);
                check(c->glu ? "glu_id" : "id", c->t, got, want, tol, n, row);
            }
        }
    free(y);
}

/* top_k 1 to 8 with repeated ids, shared and per-slot x, GLU; 3 tokens
 * (matvec) and 11 to 40 (tensor cores), experts holding more pairs than a
 * tile (ids from 2 of 9 experts); an id out of range is refused at the wait
 * and leaves its outputs unwritten, the others right. */
static void test_routed(void **state) {
    (void)state;
    qn_encoder *enc;
    QT_OK(qn_encoder_create(qt_device(), &enc));
    const qn_dtype types[7] = {QN_Q4_K, QN_Q6_K, QN_Q8_0, QN_MXFP4, QN_F16, QN_IQ4_XS, QN_Q5_0};
    for (int c = 0; c < 16; c++) {
        const qn_dtype t = types[c % 7];
        const int64_t top_k = c % 8 + 1, M = c < 4 ? 3 : c < 12 ? 11 + 2 * c : 40;
        routed_case rc = {t, block_of(t) * (c % 3 == 2 ? 5 : c % 2 + 1), c % 2 ? 19 : 131, 9, top_k, M,
                          c % 2 == 1, c % 3 == 0, c >= 12 ? 2 : 9};
        routed_data d;
        routed_setup(&rc, &d);
        draw_ids(&rc, d.ids);
        QT_OK(qn_buffer_write(d.bi, 0, d.ids, (size_t)(top_k * M * 4)));
        QT_OK(routed_encode(enc, &rc, &d));
        QT_OK(qn_encoder_commit_wait(enc));
        routed_check(&rc, &d);
        /* an id out of range, with the outputs poisoned again */
        d.ids[1 % (top_k * M)] = (int32_t)(c % 2 ? rc.E : -1);
        QT_OK(qn_buffer_write(d.bi, 0, d.ids, (size_t)(top_k * M * 4)));
        qn_buffer_free(d.by);
        d.by = qt_poisoned(qt_device(), QN_F32, 3, (int64_t[]){rc.N, top_k, M});
        QT_OK(routed_encode(enc, &rc, &d));
        QT_FAILS(qn_encoder_commit_wait(enc), QN_ERR_INVALID_ARGUMENT, "expert id");
        QT_OK(qn_encoder_commit_wait(enc)); /* reported once */
        routed_check(&rc, &d);
        routed_free(&d);
    }
    qn_encoder_destroy(enc);
}

/* A routed prefill captured once and replayed with new ids each time (the
 * grouping by expert happens on the device at every replay). */
static void test_routed_graph(void **state) {
    (void)state;
    qn_encoder *enc;
    QT_OK(qn_encoder_create(qt_device(), &enc));
    routed_case rc = {QN_Q4_K, 512, 67, 16, 4, 24, false, true, 16};
    routed_data d;
    routed_setup(&rc, &d);
    draw_ids(&rc, d.ids);
    QT_OK(qn_buffer_write(d.bi, 0, d.ids, (size_t)(rc.top_k * rc.M * 4)));
    qn_graph *g;
    QT_OK(qn_graph_begin(enc));
    QT_OK(routed_encode(enc, &rc, &d));
    QT_OK(qn_graph_end(enc, &g));
    const size_t ybytes = (size_t)(rc.N * rc.top_k * rc.M * 4);
    unsigned char *nan = malloc(ybytes);
    memset(nan, 0xFF, ybytes);
    for (int r = 0; r < 3; r++) {
        rc.spread = r == 1 ? 3 : 16;
        draw_ids(&rc, d.ids);
        QT_OK(qn_buffer_write(d.bi, 0, d.ids, (size_t)(rc.top_k * rc.M * 4)));
        QT_OK(qn_buffer_write(d.by, 0, nan, ybytes));
        QT_OK(qn_graph_launch(g, enc));
        QT_OK(qn_encoder_commit_wait(enc));
        routed_check(&rc, &d);
    }
    free(nan);
    qn_graph_destroy(g);
    routed_free(&d);
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
    void *xb = make_x(QN_F32, K, 1, NULL, &xv), *x2b = make_x(QN_F32, 64, 1, NULL, &x2v);
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
    double w2[64], x2[64];
    for (int64_t k = 0; k < 64; k++) x2[k] = x2v[k];
    for (int64_t n = 0; n < 64; n++) {
        for (int64_t k = 0; k < 64; k++) w2[k] = y[n * 64 + k];
        double tol, want = ref_dot(w2, x2, 64, false, &tol);
        check("chained", QN_F32, y2[n], want, tol, n, 0);
    }
    free(y);
    free(y2);
    qn_buffer *all[] = {bw, bx, bx2, by, by2};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) qn_buffer_free(all[i]);
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
    char plan[512];
    const bool gpu = qt_on_gpu(), mm = mm_expected(9);
    QT_OK(qn_qmatmul_plan(dev, QN_Q6_K, 14336, 4096, 1, plan, sizeof plan));
    assert_non_null(strstr(plan, gpu ? "matvec_q6_K" : "cpu"));
    QT_OK(qn_qmatmul_plan(dev, QN_Q6_K, 14336, 4096, 8, plan, sizeof plan));
    assert_non_null(strstr(plan, gpu ? "matvec_q6_K" : "cpu"));
    QT_OK(qn_qmatmul_plan(dev, QN_Q4_0, 4096, 4096, 512, plan, sizeof plan));
    assert_non_null(strstr(plan, mm ? "mm_q4_0_128" : gpu ? "matvec_q4_0" : "cpu"));
    QT_OK(qn_qmatmul_plan(dev, QN_Q8_0, 262144, 640, 9, plan, sizeof plan));
    assert_non_null(strstr(plan, mm ? "mm_q8_0_" : gpu ? "matvec_q8_0" : "cpu"));
    QT_OK(qn_qmatmul_id_plan(dev, QN_Q4_K, 2816, 8192, 512, 128, 8, plan, sizeof plan));
    assert_non_null(strstr(plan, mm ? "mm_route" : gpu ? "matvec_id_q4_K" : "cpu"));
    QT_OK(qn_qmatmul_id_plan(dev, QN_Q4_K, 2816, 8192, 1, 128, 8, plan, sizeof plan));
    assert_non_null(strstr(plan, gpu ? "matvec_id_q4_K" : "cpu"));
    QT_FAILS(qn_qmatmul_plan(dev, QN_I8, 1, 1, 1, plan, sizeof plan), QN_ERR_INVALID_ARGUMENT, "i8");
    QT_FAILS(qn_qmatmul_id_plan(dev, QN_Q4_K, 1, 256, 1, 0, 1, plan, sizeof plan), QN_ERR_INVALID_ARGUMENT,
             "n_experts=0");
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

/* ---- the norm in front (qn_qmatmul_normed, qn_qmatmul_glu_normed)
 * Reference: the norm in double (sum = a + rms_norm(b) (b_w + off), x =
 * rms_norm(sum) (w + off)), then the product's reference on that x. The
 * device computes the norm in f32, which moves x by a few ulps: inside the
 * products' 1e-4 relative bound. sum: |sum - ref| <= 1e-5 (|a| + |rms_norm(b)
 * (b_w + off)|) + 1e-6; x (stored too): 1e-5 |ref| + 1e-6. */

typedef struct {
    qn_dtype t;
    int64_t K, N, M;
    bool with_b; /* the sandwich form; else the input norm alone */
    bool glu;
} normed_case;

static double rms_scale(const double *v, int64_t K, double eps) {
    double ss = 0;
    for (int64_t k = 0; k < K; k++) ss += v[k] * v[k];
    return 1 / sqrt(ss / (double)K + eps);
}

static void run_normed(qn_encoder *enc, const normed_case *c) {
    const int64_t K = c->K, N = c->N, M = c->M;
    const float eps = 1e-6f, off = c->t == QN_Q8_0 ? 1.0f : 0.0f; /* both weight conventions */
    const path p = dense_path(c->t, N, K, M);
    weights g = make_weights(c->t, K, N), u = make_weights(c->t, K, N);
    float *a = malloc((size_t)(K * M) * 4), *b = malloc((size_t)(K * M) * 4), *bw = malloc((size_t)K * 4),
          *w = malloc((size_t)K * 4);
    qt_fill_random_f32(a, (size_t)(K * M), -3, 3);
    qt_fill_random_f32(b, (size_t)(K * M), -20, 20);
    qt_fill_random_f32(bw, (size_t)K, 0.5f, 1.5f);
    qt_fill_random_f32(w, (size_t)K, -1.5f, 1.5f);
    qn_tensor tg, tu;
    qn_buffer *bg = upload_rows(&g, 0, &tg), *bu = upload_rows(&u, 0, &tu);
    qn_buffer *ba = upload(QN_F32, 2, (int64_t[]){K, M}, a, (size_t)(K * M) * 4);
    qn_buffer *bb = upload(QN_F32, 2, (int64_t[]){K, M}, b, (size_t)(K * M) * 4);
    qn_buffer *bbw = upload(QN_F32, 1, (int64_t[]){K}, bw, (size_t)K * 4);
    qn_buffer *bwn = upload(QN_F32, 1, (int64_t[]){K}, w, (size_t)K * 4);
    qn_buffer *bx = qt_poisoned(qt_device(), QN_F32, 2, (int64_t[]){K, M});
    qn_buffer *bs = qt_poisoned(qt_device(), QN_F32, 2, (int64_t[]){K, M});
    qn_buffer *by = qt_poisoned(qt_device(), QN_F32, 2, (int64_t[]){N, M});
    qn_norm_in in = {.x = qn_tensor_of(bx), .a = qn_tensor_of(ba), .w = qn_tensor_of(bwn), .eps = eps,
                     .weight_offset = off};
    if (c->with_b) in.b = qn_tensor_of(bb), in.b_w = qn_tensor_of(bbw), in.sum = qn_tensor_of(bs);
    if (c->glu) QT_OK(qn_qmatmul_glu_normed(enc, qn_tensor_of(by), tg, tu, &in, QN_ACT_GELU_TANH));
    else QT_OK(qn_qmatmul_normed(enc, qn_tensor_of(by), tg, &in));
    QT_OK(qn_encoder_commit_wait(enc));
    float *y = qt_read_all(by), *sum = qt_read_all(bs), *x = qt_read_all(bx);
    double *pw = path_weights(&p, &g), *pu = path_weights(&p, &u), *xr = malloc((size_t)(K * M) * sizeof *xr),
           *sr = malloc((size_t)K * sizeof *sr), *br = malloc((size_t)K * sizeof *br);
    /* y's reference takes x as the device stored it, as the path uses it
     * (the tensor-core path rounds x to f16 or bf16); x itself is checked
     * against the double reference. */
    double *xp = path_x(&p, QN_F32, x, K, M);
    for (int64_t m = 0; m < M; m++) {
        const float *am = a + m * K, *bm = b + m * K;
        for (int64_t k = 0; k < K; k++) br[k] = bm[k];
        const double sb = rms_scale(br, K, eps);
        for (int64_t k = 0; k < K; k++) {
            const double o = c->with_b ? br[k] * sb * (bw[k] + off) : 0;
            sr[k] = am[k] + o;
            const double tol = 1e-5 * (fabs(am[k]) + fabs(o)) + 1e-6;
            if (c->with_b && !(fabs(sum[m * K + k] - sr[k]) <= tol))
                fail_msg("normed %s: sum[%lld, %lld] = %.8g, reference %.8g", qn_dtype_name(c->t), (long long)k,
                         (long long)m, (double)sum[m * K + k], sr[k]);
        }
        const double ss = rms_scale(sr, K, eps);
        for (int64_t k = 0; k < K; k++) {
            xr[m * K + k] = sr[k] * ss * (w[k] + off);
            if (!(fabs(x[m * K + k] - xr[m * K + k]) <= 1e-5 * fabs(xr[m * K + k]) + 1e-6))
                fail_msg("normed %s: x[%lld, %lld] = %.8g, reference %.8g", qn_dtype_name(c->t), (long long)k,
                         (long long)m, (double)x[m * K + k], xr[m * K + k]);
        }
        for (int64_t n = 0; n < N; n++) {
            double tol, want = ref_out(pw + n * K, c->glu ? pu + n * K : NULL, xp + m * K, K, QN_ACT_GELU_TANH, p.x8,
                                       &tol);
            check(c->glu ? "glu_normed" : "normed", c->t, y[m * N + n], want, tol, n, m);
        }
    }
    if (!c->with_b) /* sum was not given: untouched */
        for (int64_t i = 0; i < K * M; i++) assert_true(isnan(sum[i]));
    free(y), free(sum), free(x), free(pw), free(pu), free(xr), free(xp), free(sr), free(br);
    free(a), free(b), free(bw), free(w);
    qn_buffer *bufs[] = {bg, bu, ba, bb, bbw, bwn, bx, bs, by};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) qn_buffer_free(bufs[i]);
    free_weights(&g);
    free_weights(&u);
}

/* Every type at one and three blocks, 1 to 8 tokens (the matvec makes x
 * itself) and 12 (the norm runs first), the sandwich form and the input
 * norm alone, plain and GLU; and Gemma 3 270M's shapes (K 640 and 2048). */
static void test_normed(void **state) {
    (void)state;
    qn_encoder *enc;
    QT_OK(qn_encoder_create(qt_device(), &enc));
    const int64_t Ms[4] = {1, 3, 8, 12};
    for (int ti = 0; ti < NTYPES; ti++)
        for (int kb = 0; kb < 2; kb++) {
            const int v = ti + kb;
            normed_case c = {TYPES[ti], block_of(TYPES[ti]) * (kb == 0 ? 1 : 3), 37, Ms[v % 4], v % 2 == 0, v % 3 == 0};
            run_normed(enc, &c);
        }
    const normed_case gemma[] = {{QN_Q8_0, 640, 1536, 1, true, false},
                                 {QN_Q5_0, 640, 2048, 1, true, true},
                                 {QN_Q6_K, 2048, 640, 1, false, false},
                                 {QN_Q8_0, 640, 4099, 1, true, false}};
    for (size_t i = 0; i < sizeof gemma / sizeof gemma[0]; i++) run_normed(enc, &gemma[i]);
    qn_encoder_destroy(enc);
}

static void test_normed_errors(void **state) {
    (void)state;
    qn_device *dev = qt_device();
    qn_encoder *enc;
    QT_OK(qn_encoder_create(dev, &enc));
    qn_buffer *w = qt_poisoned(dev, QN_Q8_0, 2, (int64_t[]){64, 8});
    qn_buffer *x = qt_poisoned(dev, QN_F32, 2, (int64_t[]){64, 2});
    qn_buffer *a = qt_poisoned(dev, QN_F32, 2, (int64_t[]){64, 2});
    qn_buffer *b = qt_poisoned(dev, QN_F32, 2, (int64_t[]){64, 2});
    qn_buffer *s = qt_poisoned(dev, QN_F32, 2, (int64_t[]){64, 2});
    qn_buffer *a3 = qt_poisoned(dev, QN_F32, 2, (int64_t[]){64, 3});
    qn_buffer *nw = qt_poisoned(dev, QN_F32, 1, (int64_t[]){64});
    qn_buffer *nh = qt_poisoned(dev, QN_F16, 1, (int64_t[]){64});
    qn_buffer *xh = qt_poisoned(dev, QN_F16, 2, (int64_t[]){64, 2});
    qn_buffer *y = qt_poisoned(dev, QN_F32, 2, (int64_t[]){8, 2});
    const qn_tensor tw = qn_tensor_of(w), ty = qn_tensor_of(y);
    const qn_norm_in ok = {.x = qn_tensor_of(x), .sum = qn_tensor_of(s), .a = qn_tensor_of(a), .b = qn_tensor_of(b),
                           .b_w = qn_tensor_of(nw), .w = qn_tensor_of(nw), .eps = 1e-6f};
    qn_norm_in in = ok;
    QT_FAILS(qn_qmatmul_normed(enc, ty, tw, NULL), QN_ERR_INVALID_ARGUMENT, "the norm (in) is NULL");
    in.sum = QN_TENSOR_NONE;
    QT_FAILS(qn_qmatmul_normed(enc, ty, tw, &in), QN_ERR_INVALID_ARGUMENT, "both or neither");
    in = ok, in.b = QN_TENSOR_NONE;
    QT_FAILS(qn_qmatmul_normed(enc, ty, tw, &in), QN_ERR_INVALID_ARGUMENT, "both or neither");
    in = ok, in.sum = qn_tensor_of(a); /* in place: other blocks still read a */
    QT_FAILS(qn_qmatmul_normed(enc, ty, tw, &in), QN_ERR_INVALID_ARGUMENT, "sum overlaps a");
    in = ok, in.x = qn_tensor_of(b);
    QT_FAILS(qn_qmatmul_normed(enc, ty, tw, &in), QN_ERR_INVALID_ARGUMENT, "x overlaps b");
    in = ok, in.sum = qn_tensor_make(x, 0, QN_F32, 64, 2, 1, 1);
    QT_FAILS(qn_qmatmul_normed(enc, ty, tw, &in), QN_ERR_INVALID_ARGUMENT, "sum overlaps x");
    in = ok, in.x = qn_tensor_of(xh);
    QT_FAILS(qn_qmatmul_normed(enc, ty, tw, &in), QN_ERR_INVALID_ARGUMENT, "x must be f32 (is f16)");
    in = ok, in.a = qn_tensor_of(a3);
    QT_FAILS(qn_qmatmul_normed(enc, ty, tw, &in), QN_ERR_INVALID_ARGUMENT, "a is [64,3,1,1], expected [64,2]");
    in = ok, in.w = QN_TENSOR_NONE;
    QT_FAILS(qn_qmatmul_normed(enc, ty, tw, &in), QN_ERR_INVALID_ARGUMENT, "the norm weight w is missing");
    in = ok, in.b_w = qn_tensor_of(nh);
    QT_FAILS(qn_qmatmul_normed(enc, ty, tw, &in), QN_ERR_INVALID_ARGUMENT, "b_w must be a contiguous f32 [64]");
    in = ok, in.eps = -1;
    QT_FAILS(qn_qmatmul_glu_normed(enc, ty, tw, tw, &in, QN_ACT_SILU), QN_ERR_INVALID_ARGUMENT, "eps -1");
    QT_FAILS(qn_qmatmul_glu_normed(enc, ty, tw, tw, &ok, QN_ACT_SIGMOID), QN_ERR_INVALID_ARGUMENT, "activation 3");
    if (qt_on_gpu()) {
        in = ok, in.b = qn_tensor_make(a3, 4, QN_F32, 64, 2, 1, 1); /* 4 bytes in: not 16-byte aligned */
        QT_FAILS(qn_qmatmul_normed(enc, ty, tw, &in), QN_ERR_INVALID_ARGUMENT, "b rows must start at 16-byte aligned");
    }
    QT_OK(qn_encoder_commit_wait(enc));
    float *yv = qt_read_all(y), *sv = qt_read_all(s), *xv = qt_read_all(x); /* nothing ran */
    for (int i = 0; i < 16; i++) assert_true(isnan(yv[i]));
    for (int i = 0; i < 128; i++) assert_true(isnan(sv[i]) && isnan(xv[i]));
    free(yv), free(sv), free(xv);
    qn_buffer *bufs[] = {w, x, a, b, s, a3, nw, nh, xh, y};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) qn_buffer_free(bufs[i]);
    qn_encoder_destroy(enc);
}

/* ---- MLX affine weights
 * The same checks for weights in MLX's affine format: the reference is
 * the host's MLX dequantizer (itself checked against MLX's own output in
 * test_formats_mlx) and a double dot product over the operands the path
 * uses (qn_qmatmul_mlx_plan names it; the tensor cores take the weights as
 * f16). On a GPU the CPU backend runs every request too, against the same
 * reference. */

typedef struct {
    weights w; /* deq: the reference weights */
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

static qn_buffer *upload_to(qn_device *dev, qn_dtype t, int ndim, const int64_t *ne, const void *data, size_t bytes) {
    qn_buffer *b;
    QT_OK(qn_buffer_alloc(dev, t, ndim, ne, &b));
    QT_OK(qn_buffer_write(b, 0, data, bytes));
    return b;
}

/* The devices an MLX request runs on: the device under test and, on a GPU,
 * the CPU backend too. */
static int mlx_devices(qn_device *devs[2]) {
    devs[0] = qt_device();
    devs[1] = qt_cpu();
    return qt_on_gpu() ? 2 : 1;
}

/* The path a request takes on dev (E 0: dense), checked against the policy
 * on the device under test. */
static path mlx_path(qn_device *dev, qn_mlx_quant p, int64_t N, int64_t K, int64_t M, int64_t E, int64_t top_k) {
    char plan[512];
    if (E) QT_OK(qn_qmatmul_mlx_id_plan(dev, p, N, K, M, E, top_k, plan, sizeof plan));
    else QT_OK(qn_qmatmul_mlx_plan(dev, p, N, K, M, plan, sizeof plan));
    path pa = path_of(QN_F16, plan);
    if (dev == qt_device() && pa.mm != mm_expected(M)) fail_msg("mlx with %lld tokens: the plan is %s", (long long)M, plan);
    return pa;
}

/* Dense and GLU for every bit width, group size and scale type: K at one
 * group, three groups and 4224 (more units than a GPU block's threads, and
 * a partial last tensor-core step), odd N, tokens 1, 3, 8 (matvec), 9 and 33
 * (beyond), every x dtype. */
static void test_mlx_dense_and_glu(void **state) {
    (void)state;
    const int bits[5] = {2, 3, 4, 6, 8}, groups[3] = {32, 64, 128};
    const qn_dtype stypes[3] = {QN_F16, QN_BF16, QN_F32};
    const int64_t Ms[5] = {1, 3, 8, 9, 33};
    qn_device *devs[2];
    int ndev = mlx_devices(devs), c = 0;
    for (int bi = 0; bi < 5; bi++)
        for (int gi = 0; gi < 3; gi++)
            for (int si = 0; si < 3; si++, c++) {
                qn_mlx_quant p = {bits[bi], groups[gi]};
                int64_t K = c % 3 == 0 ? p.group_size : c % 3 == 1 ? 3 * p.group_size : 4224, N = 37, M = Ms[c % 5];
                qn_dtype xt = XTYPES[c % 3];
                qn_act act = (qn_act)(c % 3);
                mlx_weights g = make_mlx(p, stypes[si], K, N), u = make_mlx(p, stypes[si], K, N);
                float *xv;
                void *xb = make_x(xt, K, M, NULL, &xv);
                for (int d = 0; d < ndev; d++) {
                    const path pa = mlx_path(devs[d], p, N, K, M, 0, 0);
                    qn_encoder *enc;
                    QT_OK(qn_encoder_create(devs[d], &enc));
                    qn_mlx_weight wg = upload_mlx(devs[d], &g, N, 1), wu = upload_mlx(devs[d], &u, N, 1);
                    qn_buffer *bx = upload_to(devs[d], xt, 2, (int64_t[]){K, M}, xb,
                                              (size_t)(K * M * qn_dtype_block_bytes(xt)));
                    qn_buffer *by = qt_poisoned(devs[d], QN_F32, 2, (int64_t[]){N, M});
                    qn_buffer *bg = qt_poisoned(devs[d], QN_F32, 2, (int64_t[]){N, M});
                    QT_OK(qn_qmatmul_mlx(enc, qn_tensor_of(by), &wg, qn_tensor_of(bx)));
                    QT_OK(qn_qmatmul_mlx_glu(enc, qn_tensor_of(bg), &wg, &wu, qn_tensor_of(bx), act));
                    QT_OK(qn_encoder_commit_wait(enc));
                    float *y = qt_read_all(by), *yg = qt_read_all(bg);
                    double *pw = path_weights(&pa, &g.w), *pu = path_weights(&pa, &u.w), *px = path_x(&pa, xt, xv, K, M);
                    char what[96];
                    snprintf(what, sizeof what, "mlx %d-bit group %d %s scales, x %s, K %lld, M %lld, %s", p.bits,
                             p.group_size, qn_dtype_name(stypes[si]), qn_dtype_name(xt), (long long)K, (long long)M,
                             d ? "cpu" : pa.mm ? "device, tensor cores" : "device");
                    for (int64_t m = 0; m < M; m++)
                        for (int64_t n = 0; n < N; n++) {
                            double tol, want = ref_out(pw + n * K, NULL, px + m * K, K, act, pa.x8, &tol);
                            check(what, QN_U32, y[m * N + n], want, tol, n, m);
                            want = ref_out(pw + n * K, pu + n * K, px + m * K, K, act, pa.x8, &tol);
                            check(what, QN_U32, yg[m * N + n], want, tol, n, m);
                        }
                    free(pw);
                    free(pu);
                    free(px);
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
 * with repeated ids, shared and per-slot x, plain and GLU, every bit width,
 * 3 tokens and 11 to 40; an id out of range is reported at the wait and its
 * outputs are left unwritten. */
static void test_mlx_routed(void **state) {
    (void)state;
    const int bits[5] = {4, 8, 2, 3, 6}, groups[3] = {64, 32, 128};
    const qn_dtype stypes[3] = {QN_BF16, QN_F16, QN_F32};
    qn_device *devs[2];
    int ndev = mlx_devices(devs);
    for (int c = 0; c < 10; c++) {
        qn_mlx_quant p = {bits[c % 5], groups[c % 3]};
        int64_t K = p.group_size * (c % 3 + 1), N = c % 2 ? 19 : 131, E = 9, top_k = c % 8 + 1, M = c < 5 ? 3 : 11 + 6 * c;
        bool per_slot = c % 2 == 1, glu = c % 3 != 1;
        qn_dtype xt = XTYPES[c % 3];
        mlx_weights g = make_mlx(p, stypes[c % 3], K, N * E), u = make_mlx(p, stypes[c % 3], K, N * E);
        routed_case rc = {QN_U32, K, N, E, top_k, M, per_slot, glu, (int)E};
        int32_t *ids = malloc((size_t)(top_k * M) * 4);
        draw_ids(&rc, ids);
        int64_t xslots = per_slot ? top_k : 1;
        float *xv;
        void *xb = make_x(xt, K, xslots * M, NULL, &xv);
        for (int d = 0; d < ndev; d++) {
            const path pa = mlx_path(devs[d], p, N, K, M, E, top_k);
            routed_data rd = {.g = g.w, .u = u.w, .ids = ids, .p = pa};
            rd.pw = path_weights(&pa, &g.w), rd.pu = path_weights(&pa, &u.w), rd.px = path_x(&pa, xt, xv, K, xslots * M);
            qn_encoder *enc;
            QT_OK(qn_encoder_create(devs[d], &enc));
            qn_mlx_weight wg = upload_mlx(devs[d], &g, N, E), wu = upload_mlx(devs[d], &u, N, E);
            qn_buffer *bx = upload_to(devs[d], xt, 3, (int64_t[]){K, xslots, M}, xb,
                                      (size_t)(K * xslots * M * qn_dtype_block_bytes(xt)));
            for (int bad = 0; bad < 2; bad++) {
                if (bad) ids[top_k * M - 1] = c % 2 ? -1 : (int32_t)E;
                qn_buffer *bi = upload_to(devs[d], QN_I32, 2, (int64_t[]){top_k, M}, ids, (size_t)(top_k * M * 4));
                rd.by = qt_poisoned(devs[d], QN_F32, 3, (int64_t[]){N, top_k, M});
                if (glu)
                    QT_OK(qn_qmatmul_mlx_glu_id(enc, qn_tensor_of(rd.by), &wg, &wu, qn_tensor_of(bx), qn_tensor_of(bi),
                                                QN_ACT_SILU));
                else
                    QT_OK(qn_qmatmul_mlx_id(enc, qn_tensor_of(rd.by), &wg, qn_tensor_of(bx), qn_tensor_of(bi)));
                if (bad) {
                    QT_FAILS(qn_encoder_commit_wait(enc), QN_ERR_INVALID_ARGUMENT, "expert id");
                    QT_OK(qn_encoder_commit_wait(enc)); /* reported once */
                } else {
                    QT_OK(qn_encoder_commit_wait(enc));
                }
                routed_check(&rc, &rd);
                qn_buffer_free(bi);
                qn_buffer_free(rd.by);
            }
            ids[top_k * M - 1] = 0;
            free(rd.pw);
            free(rd.pu);
            free(rd.px);
            free_mlx_weight(&wg);
            free_mlx_weight(&wu);
            qn_buffer_free(bx);
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
        cmocka_unit_test(test_matvec),
        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_long_and_many_rows),
        cmocka_unit_test(test_routed),
        cmocka_unit_test(test_routed_graph),
        cmocka_unit_test(test_weights_from_previous),
        cmocka_unit_test(test_errors_and_plan),
        cmocka_unit_test(test_normed),
        cmocka_unit_test(test_normed_errors),
        cmocka_unit_test(test_mlx_dense_and_glu),
        cmocka_unit_test(test_mlx_routed),
        cmocka_unit_test(test_mlx_errors_and_plan),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    qt_close_devices();
    return rc;
}
