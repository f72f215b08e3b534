/* Norms over rows: RMS (optionally after a residual add, itself optionally
 * of an RMS-normed row: Gemma's sandwich norm), L2, LayerNorm.
 *
 * Layout: any strides (qn_kt); w and bias are [ne0] vectors shared by the
 * rows. Grid: one block per row (i1, i2, i3) as blockIdx (x, y, z), striding
 * where the grid is smaller; the block's threads (up to 1024, 4 elements
 * each a trip) split the row and reduce with warp shuffles. Bytes: x, w and
 * bias read once from memory (a row up to 4096 wide stays in registers;
 * longer rows reread later trips from cache), dst written once; the fused
 * add also writes sum and reads b (and bw). One kernel per (dst, x) dtype pair,
 * norm_<dst>_<x>; the norm kind and the dtypes of w, bias, b and sum are
 * runtime values, uniform over the block. */
#include "ops_math.cuh"

/* f32 v rounded to dtype dt and back: what a store and a reload give. */
__device__ __forceinline__ float round_to(float v, int dt) {
    if (dt == QN_KT_F16) return qn_f16_bits_to_f32(qn_f32_to_f16_bits(v));
    if (dt == QN_KT_BF16) return qn_bf16_bits_to_f32(qn_f32_to_bf16_bits(v));
    return v;
}

template <int DT, int XT>
__device__ void norm_rows(const qn_norm_args &a) {
    __shared__ float red[32];
    const long long n = a.x.ne[0], step = blockDim.x, i0 = threadIdx.x;
    const char *w = qn_kt_at(&a.w, 0, 0, 0, 0), *bias = qn_kt_at(&a.bias, 0, 0, 0, 0);
    QN_FOR_EACH_ROW(a.x) {
        const char *x = qn_kt_at(&a.x, 0, i1, i2, i3);
        char *d = qn_kt_at(&a.dst, 0, i1, i2, i3);
        long long xnb = a.x.nb[0];
        int xt = XT;
        /* A thread's first trip of 4 elements (a whole row up to 4096 wide:
         * a decode token), with their w and bias, is loaded up front and
         * kept in registers: each reload, or a load behind a reduction or a
         * store, would cost one more memory latency. Later trips of longer
         * rows reload from cache. */
        float x0[4], w0[4] = {1.0f, 1.0f, 1.0f, 1.0f}, b0[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        qn_load4(x0, x, a.x.nb[0], XT, i0, step, n);
        if (a.has_w) qn_load4(w0, w, a.w.nb[0], a.w.dtype, i0, step, n);
        if (a.has_bias) qn_load4(b0, bias, a.bias.nb[0], a.bias.dtype, i0, step, n);
        if (a.has_b) {
            /* sum = a + b, or a + rms_norm(b) * bw (the sandwich norm) with
             * the normed b in f32; b's first trip (and bw's) come up front
             * too. Each thread later rereads only what it wrote. */
            const char *b = qn_kt_at(&a.b, 0, i1, i2, i3), *bw = qn_kt_at(&a.bw, 0, 0, 0, 0);
            char *s = qn_kt_at(&a.sum, 0, i1, i2, i3);
            float bv0[4], bw0[4] = {1.0f, 1.0f, 1.0f, 1.0f};
            qn_load4(bv0, b, a.b.nb[0], a.b.dtype, i0, step, n);
            if (a.has_bw) qn_load4(bw0, bw, a.bw.nb[0], a.bw.dtype, i0, step, n);
            float bscale = 1.0f;
            if (a.has_bw) {
                float acc = 0.0f;
                for (long long i = i0; i < n; i += 4 * step) {
                    float v[4];
                    if (i == i0)
                        for (int k = 0; k < 4; k++) v[k] = bv0[k];
                    else qn_load4(v, b, a.b.nb[0], a.b.dtype, i, step, n);
                    for (int k = 0; k < 4; k++) acc += i + k * step < n ? v[k] * v[k] : 0.0f;
                }
                bscale = qn_norm_scale(QN_NORM_RMS, qn_block_sum(acc, red), n, a.eps);
            }
            for (long long i = i0; i < n; i += 4 * step) {
                float u[4], v[4], g[4] = {1.0f, 1.0f, 1.0f, 1.0f};
                if (i == i0) {
                    for (int k = 0; k < 4; k++) u[k] = x0[k], v[k] = bv0[k], g[k] = bw0[k];
                } else {
                    qn_load4(u, x, a.x.nb[0], XT, i, step, n);
                    qn_load4(v, b, a.b.nb[0], a.b.dtype, i, step, n);
                    if (a.has_bw) qn_load4(g, bw, a.bw.nb[0], a.bw.dtype, i, step, n);
                }
                for (int k = 0; k < 4; k++) {
                    if (i + k * step >= n) continue;
                    float o = v[k];
                    if (a.has_bw) {
                        o *= bscale; /* as qn_rms_norm computes it */
                        o *= g[k] + a.w_off;
                    }
                    qn_store_f32(s + (i + k * step) * a.sum.nb[0], a.sum.dtype, u[k] + o);
                    if (i == i0) x0[k] = round_to(u[k] + o, a.sum.dtype);
                }
            }
            x = s;
            xnb = a.sum.nb[0];
            xt = a.sum.dtype;
        }
        /* the elements of the trip at i */
        const auto trip = [&](long long i, float v[4]) {
            if (i == i0)
                for (int k = 0; k < 4; k++) v[k] = x0[k];
            else qn_load4(v, x, xnb, xt, i, step, n);
        };
        float mean = 0.0f;
        if (a.kind == QN_NORM_LAYER) {
            float acc = 0.0f;
            for (long long i = i0; i < n; i += 4 * step) {
                float v[4];
                trip(i, v);
                for (int k = 0; k < 4; k++) acc += i + k * step < n ? v[k] : 0.0f;
            }
            mean = qn_block_sum(acc, red) / (float)n;
        }
        float acc = 0.0f;
        for (long long i = i0; i < n; i += 4 * step) {
            float v[4];
            trip(i, v);
            for (int k = 0; k < 4; k++) {
                float c = i + k * step < n ? v[k] - mean : 0.0f;
                acc += c * c;
            }
        }
        const float scale = qn_norm_scale(a.kind, qn_block_sum(acc, red), n, a.eps);
        for (long long i = i0; i < n; i += 4 * step) {
            /* every load of the trip before any store: dst may alias w or
             * bias as far as the compiler knows, so a load after a store
             * would wait for it */
            float v[4], wv[4] = {1.0f, 1.0f, 1.0f, 1.0f}, bv[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            trip(i, v);
            if (i == i0) {
                for (int k = 0; k < 4; k++) wv[k] = w0[k], bv[k] = b0[k];
            } else {
                if (a.has_w) qn_load4(wv, w, a.w.nb[0], a.w.dtype, i, step, n);
                if (a.has_bias) qn_load4(bv, bias, a.bias.nb[0], a.bias.dtype, i, step, n);
            }
            for (int k = 0; k < 4; k++) {
                long long j = i + k * step;
                if (j >= n) continue;
                float o = (v[k] - mean) * scale;
                if (a.has_w) o *= wv[k] + a.w_off;
                if (a.has_bias) o += bv[k];
                qn_store_f32(d + j * a.dst.nb[0], DT, o);
            }
        }
    }
}

#define NORM(dn, xn, DT, XT) \
    extern "C" __global__ void __launch_bounds__(1024) norm_##dn##_##xn(qn_norm_args a) {     \
        QN_GRID_WAIT();                                                                                 \
        norm_rows<DT, XT>(a);                                                                           \
    }
#define NORM_X(dn, DT)                  \
    NORM(dn, f32, DT, QN_KT_F32)        \
    NORM(dn, f16, DT, QN_KT_F16)        \
    NORM(dn, bf16, DT, QN_KT_BF16)

NORM_X(f32, QN_KT_F32)
NORM_X(f16, QN_KT_F16)
NORM_X(bf16, QN_KT_BF16)
