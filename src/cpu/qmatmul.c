/* CPU kernels of the quantized matrix product: each weight row is
 * dequantized (the formats module's reference dequantizer, block types or
 * MLX affine) and dotted with every token in double (eight partial sums);
 * rows are split across the device's threads. The same code serves dense,
 * GLU and expert-routed requests. */
#include "cpu/cpu_ops.h"
#include "cuda/kernels/ops_math.cuh"
#include "formats/quants.h"

#include <stdlib.h>
#include <string.h>

#define CHUNK 256 /* a whole number of blocks of every type */

/* Weights a row. */
static int64_t row_len(const qn_qmatmul_args *a) { return a->bits ? a->w.ne[0] * 32 / a->bits : a->w.ne[0]; }

/* Row n of expert e (0 when dense) of the gate (or only) weight or of up,
 * into f32, chunk by chunk. */
static void row_to_f32(const qn_qmatmul_args *a, bool up, int64_t n, int64_t e, float *out) {
    const char *row = qn_kt_at(up ? &a->up : &a->w, 0, n, e, 0);
    int64_t K = row_len(a);
    if (a->bits) {
        const qn_kt *s = up ? &a->up_scales : &a->w_scales, *b = up ? &a->up_biases : &a->w_biases;
        qn_mlx_dequantize_row((qn_mlx_quant){a->bits, a->group}, (qn_dtype)s->dtype, row, qn_kt_at(s, 0, n, e, 0),
                              qn_kt_at(b, 0, n, e, 0), out, K); /* checked at encode */
        return;
    }
    int type = a->w.dtype;
    int64_t blk = qn_dtype_block_elems((qn_dtype)type), bb = qn_dtype_block_bytes((qn_dtype)type);
    if (blk == 1) {
        for (int64_t i = 0; i < K; i++) out[i] = qn_load_f32(row + i * bb, type);
        return;
    }
    for (int64_t i0 = 0; i0 < K; i0 += CHUNK) {
        int64_t m = K - i0 < CHUNK ? K - i0 : CHUNK;
        qn_dequantize_row((qn_dtype)type, row + i0 / blk * bb, out + i0, m); /* checked at encode */
    }
}

/* w . x in double, as DOT_SUMS partial sums (element i into sum i mod
 * DOT_SUMS) added pairwise at the end: one running sum would be a chain of
 * dependent adds, which bounded the CPU's decode; independent sums also
 * let the compiler use vector registers. f32 x, the usual case, is read
 * directly. */
#define DOT_SUMS 8
static float dot(const float *w, const char *x, int xt, int64_t K) {
    double acc[DOT_SUMS] = {0};
    int64_t i = 0;
    if (xt == QN_KT_F32) {
        for (; i + DOT_SUMS <= K; i += DOT_SUMS) {
            float xv[DOT_SUMS];
            memcpy(xv, x + i * 4, sizeof xv);
            for (int k = 0; k < DOT_SUMS; k++) acc[k] += (double)w[i + k] * (double)xv[k];
        }
    }
    const int64_t es = xt == QN_KT_F32 ? 4 : 2;
    for (; i < K; i++) acc[i % DOT_SUMS] += (double)w[i] * (double)qn_load_f32(x + i * es, xt);
    for (int span = DOT_SUMS / 2; span > 0; span /= 2)
        for (int k = 0; k < span; k++) acc[k] += acc[k + span];
    return (float)acc[0];
}

/* Output row n of expert e for one token: W row n (and up row n) against x
 * row xr. */
static float one(const qn_qmatmul_args *a, int64_t n, int64_t e, const char *xr, float *wtmp, float *utmp,
                 bool have_rows) {
    int64_t K = row_len(a);
    if (!have_rows) {
        row_to_f32(a, false, n, e, wtmp);
        if (a->glu) row_to_f32(a, true, n, e, utmp);
    }
    float g = dot(wtmp, xr, a->x.dtype, K);
    return a->glu ? qn_act_apply(a->act, g, 0.0f) * dot(utmp, xr, a->x.dtype, K) : g;
}

/* The rows' scratch (two dequantized rows) could not be had: the encoder's
 * commit reports it. */
static void no_memory(const qn_qmatmul_args *a) {
    __atomic_fetch_or((int *)(uintptr_t)a->flags, QN_FLAG_HOST_MEMORY, __ATOMIC_RELAXED);
}

static void dense_rows(void *ctx, int64_t begin, int64_t end) {
    const qn_qmatmul_args *a = ctx;
    int64_t K = row_len(a);
    float *tmp = malloc(2 * (size_t)K * sizeof *tmp);
    if (!tmp) {
        no_memory(a);
        return;
    }
    for (int64_t n = begin; n < end; n++) {
        for (int64_t t = 0; t < a->x.ne[1]; t++) {
            float v = one(a, n, 0, qn_kt_at(&a->x, 0, t, 0, 0), tmp, tmp + K, t > 0);
            *(float *)qn_kt_at(&a->y, n, t, 0, 0) = v;
        }
    }
    free(tmp);
}

void qn_cpu_qmatmul(qn_device *dev, const void *args) {
    const qn_qmatmul_args *a = args;
    qn_cpu_parallel_for(dev, a->w.ne[1], dense_rows, (void *)a);
}

/* Routed: for each (slot, token) pair, the expert's rows. Work is split by
 * output row; each thread walks every pair for its rows. */
static void routed_rows(void *ctx, int64_t begin, int64_t end) {
    const qn_qmatmul_args *a = ctx;
    int64_t K = row_len(a), M = a->ids.ne[1];
    float *tmp = malloc(2 * (size_t)K * sizeof *tmp);
    if (!tmp) {
        no_memory(a);
        return;
    }
    for (int64_t tok = 0; tok < M; tok++)
        for (int64_t slot = 0; slot < a->top_k; slot++) {
            int e;
            memcpy(&e, qn_kt_at(&a->ids, slot, tok, 0, 0), 4);
            if (e < 0 || e >= a->n_experts) {
                __atomic_fetch_or((int *)(uintptr_t)a->flags, QN_FLAG_BAD_EXPERT, __ATOMIC_RELAXED);
                continue;
            }
            const char *xr = qn_kt_at(&a->x, 0, a->x.ne[1] == 1 ? 0 : slot, tok, 0);
            for (int64_t n = begin; n < end; n++) {
                float v = one(a, n, e, xr, tmp, tmp + K, false);
                *(float *)qn_kt_at(&a->y, n, slot, tok, 0) = v;
            }
        }
    free(tmp);
}

void qn_cpu_qmatmul_id(qn_device *dev, const void *args) {
    const qn_qmatmul_args *a = args;
    qn_cpu_parallel_for(dev, a->w.ne[1], routed_rows, (void *)a);
}
