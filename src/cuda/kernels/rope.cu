/* RoPE over rows, optionally after a per-head RMS norm (qn_rms_norm_rope).
 *
 * Layout: x and dst [head_dim, heads, tokens, 1], any strides; pos i32,
 * [tokens] or [4 * tokens] (one per section), read here so a replayed
 * graph follows its current value; freq_factors f32 [pairs]. Grid: one
 * block per row (head i1 of token i2) as blockIdx (x, y), striding where the
 * grid is smaller; a thread takes whole pairs, so it reads both elements of
 * a pair before writing them and dst may be x. Bytes: x read once (twice
 * from cache with the norm: once for the sum of squares), dst written once.
 * With dst_cache, dst is a KV cache and a row lands in the cache row of its
 * token (qn_rms_norm_rope_append). The angle math (qn_rope_cs) is shared
 * with the CPU. Kernels rope_<dst>_<x>. */
#include "attention_common.cuh"
#include "ops_math.cuh"

template <int DT, int XT>
__device__ void rope_rows(const qn_rope_args &a) {
    __shared__ float red[32];
    const long long n = a.x.ne[0], step = blockDim.x;
    const int np = qn_rope_npairs(&a.r);
    const int nsec = a.r.mode == QN_ROPE_K_NORMAL || a.r.mode == QN_ROPE_K_NEOX ? 1 : 4;
    QN_FOR_EACH_ROW(a.x) {
        const char *x = qn_kt_at(&a.x, 0, i1, i2, i3);
        char *d = a.dst_cache ? qn_kt_at(&a.dst, 0, (qn_attn_p0(&a.pos) + i2) % a.dst.ne[1], i1, 0)
                              : qn_kt_at(&a.dst, 0, i1, i2, i3);
        float scale = 1.0f;
        if (a.norm) {
            float acc = 0.0f;
            for (long long i = threadIdx.x; i < n; i += 4 * step) {
                float v[4];
                qn_load4(v, x, a.x.nb[0], XT, i, step, n);
                acc += (v[0] * v[0] + v[1] * v[1]) + (v[2] * v[2] + v[3] * v[3]);
            }
            scale = qn_norm_scale(QN_NORM_RMS, qn_block_sum(acc, red), n, a.eps);
        }
        int p[4] = {0, 0, 0, 0};
#pragma unroll
        for (int s = 0; s < 4; s++)
            if (s < nsec) p[s] = *(const int *)qn_kt_at(&a.pos, i2 + s * a.x.ne[2], 0, 0, 0);
        for (int i = threadIdx.x; i < np; i += blockDim.x) {
            int ia, ib;
            qn_rope_pair(&a.r, i, &ia, &ib);
            float x0 = qn_load_f32(x + ia * a.x.nb[0], XT), x1 = qn_load_f32(x + ib * a.x.nb[0], XT);
            float ff = a.has_ff ? *(const float *)qn_kt_at(&a.ff, i, 0, 0, 0) : 1.0f;
            x0 *= scale;
            x1 *= scale;
            if (a.has_w) {
                x0 *= qn_load_f32(qn_kt_at(&a.w, ia, 0, 0, 0), a.w.dtype) + a.w_off;
                x1 *= qn_load_f32(qn_kt_at(&a.w, ib, 0, 0, 0), a.w.dtype) + a.w_off;
            }
            float c, s;
            qn_rope_cs(&a.r, i, p, ff, &c, &s);
            qn_store_f32(d + ia * a.dst.nb[0], DT, x0 * c - x1 * s);
            qn_store_f32(d + ib * a.dst.nb[0], DT, x0 * s + x1 * c);
        }
        for (long long i = 2 * np + threadIdx.x; i < n; i += step) {
            float v = qn_load_f32(x + i * a.x.nb[0], XT) * scale;
            if (a.has_w) v *= qn_load_f32(qn_kt_at(&a.w, i, 0, 0, 0), a.w.dtype) + a.w_off;
            qn_store_f32(d + i * a.dst.nb[0], DT, v);
        }
    }
}

#define ROPE(dn, xn, DT, XT) \
    extern "C" __global__ void rope_##dn##_##xn(qn_rope_args a) { QN_GRID_WAIT(); rope_rows<DT, XT>(a); }
#define ROPE_X(dn, DT)           \
    ROPE(dn, f32, DT, QN_KT_F32) \
    ROPE(dn, f16, DT, QN_KT_F16) \
    ROPE(dn, bf16, DT, QN_KT_BF16)

ROPE_X(f32, QN_KT_F32)
ROPE_X(f16, QN_KT_F16)
ROPE_X(bf16, QN_KT_BF16)
