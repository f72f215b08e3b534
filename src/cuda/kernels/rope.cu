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
 * with the CPU. Kernels rope_<dst>_<x>, and rope_qkv below. */
#include "attention_common.cuh"
#include "ops_math.cuh"

/* Pair i of a row: its elements' indices and values as loaded, their
 * weights (w + w_off; 1 without w) and the rotation. None of it depends on
 * the norm, so a thread fetches its first pair before the block sums the
 * squares: the loads and the angle's math overlap the reduction. */
typedef struct {
    int ia, ib;
    float x0, x1, w0, w1, c, s;
} rope_pair_in;

__device__ __forceinline__ rope_pair_in rope_pair_fetch(const qn_rope_args &a, int xt, const char *x, const int *p,
                                                        int i) {
    rope_pair_in r;
    qn_rope_pair(&a.r, i, &r.ia, &r.ib);
    r.x0 = qn_load_f32(x + r.ia * a.x.nb[0], xt);
    r.x1 = qn_load_f32(x + r.ib * a.x.nb[0], xt);
    r.w0 = a.has_w ? qn_load_f32(qn_kt_at(&a.w, r.ia, 0, 0, 0), a.w.dtype) + a.w_off : 1.0f;
    r.w1 = a.has_w ? qn_load_f32(qn_kt_at(&a.w, r.ib, 0, 0, 0), a.w.dtype) + a.w_off : 1.0f;
    const float ff = a.has_ff ? *(const float *)qn_kt_at(&a.ff, i, 0, 0, 0) : 1.0f;
    qn_rope_cs(&a.r, i, p, ff, &r.c, &r.s);
    return r;
}

/* Head i1 of token i2 of a.x (dtype xt), normed (with a.norm) and rotated
 * into the row d (dtype dt, element stride dnb0) by the whole block. Inlined
 * with constant dtypes into rope_<dst>_<x>, with run-time ones into
 * rope_qkv. Every element of a pair is read before either is written, and
 * the writes follow the norm's barrier, so d may be the row itself. */
__device__ __forceinline__ void rope_row(const qn_rope_args &a, int xt, long long i1, long long i2, long long i3,
                                         char *d, long long dnb0, int dt) {
    __shared__ float red[32];
    const long long n = a.x.ne[0], step = blockDim.x;
    const int np = qn_rope_npairs(&a.r);
    const int nsec = a.r.mode == QN_ROPE_K_NORMAL || a.r.mode == QN_ROPE_K_NEOX ? 1 : 4;
    const char *x = qn_kt_at(&a.x, 0, i1, i2, i3);
    int p[4] = {0, 0, 0, 0};
#pragma unroll
    for (int s = 0; s < 4; s++)
        if (s < nsec) p[s] = *(const int *)qn_kt_at(&a.pos, i2 + s * a.x.ne[2], 0, 0, 0);
    /* The first trip fetches the thread's first pair, then the block sums
     * the squares (every thread takes that trip, and its barrier, once);
     * later trips fetch a pair and store it. One call site keeps one copy
     * of the angle's math. */
    rope_pair_in pr;
    float scale = 1.0f;
    for (int i = threadIdx.x, first = 1;; i += blockDim.x, first = 0) {
        if (i < np) pr = rope_pair_fetch(a, xt, x, p, i);
        if (first && a.norm) {
            float acc = 0.0f;
            for (long long j = threadIdx.x; j < n; j += 4 * step) {
                float v[4];
                qn_load4(v, x, a.x.nb[0], xt, j, step, n);
                acc += (v[0] * v[0] + v[1] * v[1]) + (v[2] * v[2] + v[3] * v[3]);
            }
            scale = qn_norm_scale(QN_NORM_RMS, qn_block_sum(acc, red), n, a.eps);
        }
        if (i >= np) break;
        const float x0 = pr.x0 * scale * pr.w0, x1 = pr.x1 * scale * pr.w1;
        qn_store_f32(d + pr.ia * dnb0, dt, x0 * pr.c - x1 * pr.s);
        qn_store_f32(d + pr.ib * dnb0, dt, x0 * pr.s + x1 * pr.c);
    }
    for (long long i = 2 * np + threadIdx.x; i < n; i += step) {
        float v = qn_load_f32(x + i * a.x.nb[0], xt) * scale;
        if (a.has_w) v *= qn_load_f32(qn_kt_at(&a.w, i, 0, 0, 0), a.w.dtype) + a.w_off;
        qn_store_f32(d + i * dnb0, dt, v);
    }
}

template <int DT, int XT>
__device__ void rope_rows(const qn_rope_args &a) {
    QN_FOR_EACH_ROW(a.x) {
        char *d = a.dst_cache ? qn_kv_row(&a.dst, qn_attn_p0(&a.pos), i2, i1) : qn_kt_at(&a.dst, 0, i1, i2, i3);
        rope_row(a, XT, i1, i2, i3, d, a.dst.nb[0], DT);
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

/* qn_rms_norm_rope_qkv: what follows an attention layer's q, k and v
 * projections, in one launch.
 *
 * Layout: q, q.dst [D, H, n]; k, v [D, Hkv, n] (f32, f16 or bf16 each, any
 * strides); K and V caches [D, capacity, Hkv] (f16, bf16 or q8_0 each),
 * token t's rows going to cache row (pos[0] + t) % capacity. Grid (H +
 * 2 Hkv, n), striding where the grid is smaller: block x < H takes q head
 * x (rope_row into q.dst, which may be q), the next Hkv the key heads
 * (rope_row straight into the cache row; for q8_0 into shared memory
 * first, then rounded by blocks of 32), the last Hkv the value heads
 * (qn_kv_append_row). Blocks of the row ops' size for D. Dtypes are read at
 * run time: the kernel moves a few KB, and its time is latency, not
 * instructions. Bytes: q, k and v read once (q and k twice from cache, for
 * their sums of squares), q.dst and the new cache rows written once, the
 * two norm weights and pos read. */
extern "C" __global__ void rope_qkv(qn_rope_qkv_args a) {
    QN_GRID_WAIT();
    __shared__ float krow[QN_ROPE_QKV_Q8_MAX_D];
    const long long H = a.q.x.ne[1], Hkv = a.k.x.ne[1], d = a.k.x.ne[0];
    const int p0 = qn_attn_p0(&a.k.pos);
    const qn_kt &kc = a.k.dst;
    for (long long t = blockIdx.y; t < a.q.x.ne[2]; t += gridDim.y)
        for (long long b = blockIdx.x; b < H + 2 * Hkv; b += gridDim.x) {
            if (b < H) {
                rope_row(a.q, a.q.x.dtype, b, t, 0, qn_kt_at(&a.q.dst, 0, b, t, 0), a.q.dst.nb[0], a.q.dst.dtype);
            } else if (b < H + Hkv && kc.dtype != QN_KT_Q8_0) {
                rope_row(a.k, a.k.x.dtype, b - H, t, 0, qn_kv_row(&kc, p0, t, b - H), kc.nb[0], kc.dtype);
            } else if (b < H + Hkv) {
                /* q8_0 rounds a block of 32 at once: the whole row first;
                 * the barriers order its writes and reads, and the reads
                 * before the next row's writes */
                rope_row(a.k, a.k.x.dtype, b - H, t, 0, (char *)krow, sizeof(float), QN_KT_F32);
                __syncthreads();
                qn_kv_append_row(qn_kv_row(&kc, p0, t, b - H), QN_KT_Q8_0, kc.nb[0], (const char *)krow,
                                 sizeof(float), QN_KT_F32, d);
                __syncthreads();
            } else {
                const long long h = b - H - Hkv;
                qn_kv_append_row(qn_kv_row(&a.v_cache, p0, t, h), a.v_cache.dtype, a.v_cache.nb[0],
                                 qn_kt_at(&a.v, 0, h, t, 0), a.v.nb[0], a.v.dtype, d);
            }
        }
}
