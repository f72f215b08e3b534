/* Norms over rows: RMS (optionally after a residual add, itself optionally
 * of an RMS-normed row: Gemma's sandwich norm), L2, LayerNorm.
 *
 * Layout: any strides (qn_kt); w and bias are [ne0] vectors shared by the
 * rows. Grid: one block per row (i1, i2, i3) as blockIdx (x, y, z), striding
 * where the grid is smaller; the block's threads split the row and reduce
 * with warp shuffles. Bytes: x read once from memory and once more from
 * cache (L1/L2: a row is at most a few tens of KB), dst written once; the
 * fused add also writes sum and reads b (twice with its own norm).
 * LayerNorm reads x a third time
 * (mean, then squared deviations). One kernel per (dst, x) dtype pair,
 * norm_<dst>_<x>; the norm kind and the dtypes of w, bias, b and sum are
 * runtime values, uniform over the block. */
#include "ops_math.cuh"

/* The block's sum of (x[i] - mean)^2 over a row of n (every thread gets it). */
__device__ float row_sumsq(const char *x, long long nb, int xt, float mean, long long n, float *red) {
    const long long step = blockDim.x;
    float acc = 0.0f;
    for (long long i = threadIdx.x; i < n; i += 4 * step) {
        float v[4];
        qn_load4(v, x, nb, xt, i, step, n);
        for (int k = 0; k < 4; k++) {
            float c = i + k * step < n ? v[k] - mean : 0.0f;
            acc += c * c;
        }
    }
    return qn_block_sum(acc, red);
}

template <int DT, int XT>
__device__ void norm_rows(const qn_norm_args &a) {
    __shared__ float red[32];
    const long long n = a.x.ne[0], step = blockDim.x;
    QN_FOR_EACH_ROW(a.x) {
        const char *x = qn_kt_at(&a.x, 0, i1, i2, i3);
        char *d = qn_kt_at(&a.dst, 0, i1, i2, i3);
        long long xnb = a.x.nb[0];
        int xt = XT;
        if (a.has_b) {
            /* sum = a + b, or a + rms_norm(b) * bw with the normed b in f32;
             * each thread later rereads only what it wrote */
            const char *b = qn_kt_at(&a.b, 0, i1, i2, i3);
            char *s = qn_kt_at(&a.sum, 0, i1, i2, i3);
            const float bscale =
                a.has_bw ? qn_norm_scale(QN_NORM_RMS, row_sumsq(b, a.b.nb[0], a.b.dtype, 0.0f, n, red), n, a.eps) : 1.0f;
            for (long long i = threadIdx.x; i < n; i += 4 * step) {
                float u[4], v[4];
                qn_load4(u, x, a.x.nb[0], XT, i, step, n);
                qn_load4(v, b, a.b.nb[0], a.b.dtype, i, step, n);
                for (int k = 0; k < 4; k++) {
                    const long long j = i + k * step;
                    if (j >= n) continue;
                    float o = v[k];
                    if (a.has_bw) {
                        o *= bscale; /* as qn_rms_norm computes it */
                        o *= qn_load_f32(qn_kt_at(&a.bw, j, 0, 0, 0), a.bw.dtype) + a.w_off;
                    }
                    qn_store_f32(s + j * a.sum.nb[0], a.sum.dtype, u[k] + o);
                }
            }
            x = s;
            xnb = a.sum.nb[0];
            xt = a.sum.dtype;
        }
        float mean = 0.0f;
        if (a.kind == QN_NORM_LAYER) {
            float acc = 0.0f;
            for (long long i = threadIdx.x; i < n; i += 4 * step) {
                float v[4];
                qn_load4(v, x, xnb, xt, i, step, n);
                acc += (v[0] + v[1]) + (v[2] + v[3]);
            }
            mean = qn_block_sum(acc, red) / (float)n;
        }
        const float scale = qn_norm_scale(a.kind, row_sumsq(x, xnb, xt, mean, n, red), n, a.eps);
        for (long long i = threadIdx.x; i < n; i += 4 * step) {
            float v[4];
            qn_load4(v, x, xnb, xt, i, step, n);
            for (int k = 0; k < 4; k++) {
                long long j = i + k * step;
                if (j >= n) continue;
                float o = (v[k] - mean) * scale;
                if (a.has_w) o *= qn_load_f32(qn_kt_at(&a.w, j, 0, 0, 0), a.w.dtype) + a.w_off;
                if (a.has_bias) o += qn_load_f32(qn_kt_at(&a.bias, j, 0, 0, 0), a.bias.dtype);
                qn_store_f32(d + j * a.dst.nb[0], DT, o);
            }
        }
    }
}

#define NORM(dn, xn, DT, XT) \
    extern "C" __global__ void norm_##dn##_##xn(qn_norm_args a) { QN_GRID_WAIT(); norm_rows<DT, XT>(a); }
#define NORM_X(dn, DT)                  \
    NORM(dn, f32, DT, QN_KT_F32)        \
    NORM(dn, f16, DT, QN_KT_F16)        \
    NORM(dn, bf16, DT, QN_KT_BF16)

NORM_X(f32, QN_KT_F32)
NORM_X(f16, QN_KT_F16)
NORM_X(bf16, QN_KT_BF16)
