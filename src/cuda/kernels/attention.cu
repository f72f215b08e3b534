/* Flash attention over the KV cache: decode (1 to 8 query tokens, K and V
 * in f16, bf16 or q8_0), prefill (tensor cores, f16 or bf16), the merge of
 * the partial softmaxes of split blocks, and a streaming read that measures
 * the read ceiling beside them.
 *
 * Compiled once per head dim: -DQN_ATTN_D=64, 80, 96, 128, 256 or 512.
 *
 * Layouts (quanta.h): q and out [D, n_q_heads, n_tokens] f32 with
 * contiguous rows; K and V [D, capacity, n_kv_heads], position j in row
 * j % capacity; pos[0] = p0, the first query token's position, read here so
 * a replayed graph follows it. Query rows of a kv head are numbered
 * token-major, row = t * group + g, for query head kv_head * group + g.
 * Logits are kept in base 2 (scaled by log2 e) from the dot product on.
 *
 * Partial results (scratch, f32): for split s and query row (t, h),
 * acc[((s * n_tokens + t) * n_q_heads + h) * D + d], the unnormalised sum of
 * p_j v_j; after all S of those, (m, l) pairs in the same order: the largest
 * base-2 logit of the split and sum_j 2^(logit_j - m). */
#include "attention_common.cuh"
#include "mma.cuh"

#ifndef QN_ATTN_D
#error "attention.cu is compiled with -DQN_ATTN_D=<head dim>"
#endif

constexpr int HD = QN_ATTN_D;
#define NEG_INF __int_as_float(0xff800000u)

/* ---- PTX helpers */

__device__ __forceinline__ void ld_v4(unsigned (&w)[4], const void *p) {
    asm("ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(w[0]), "=r"(w[1]), "=r"(w[2]), "=r"(w[3]) : "l"(p));
}

__device__ __forceinline__ float h2f(unsigned h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"((unsigned short)h));
    return f;
}

/* ---- decode
 *
 * Grid (splits, n_kv_heads, row tiles), 4 warps. A block takes RB query
 * rows of one kv head (the heads of its group times the step's tokens), so
 * every K and V row is read once for all of them, and one slice of the
 * visible key range: the range is cut into `n_splits` equal parts, its
 * length read from pos at run time, so the grid (sized on the host from the
 * capacity and the multiprocessor count) serves every step.
 *
 * Within a block, LANES lanes share a key row, each loading 16 bytes (8
 * elements) of K and of V per vector: a warp covers 32 / LANES keys per
 * load, and each lane keeps its own online softmax (m, l, acc over its 8
 * elements) for the keys its lane group saw. At the end lane groups merge
 * by shuffles, warps through shared memory, and the block writes one
 * partial (acc, m, l) per row to scratch for attn_reduce.
 *
 * Bytes: K and V of the visible keys once (2 * keys * D * 2 for f16), per
 * row tile; q read once, partials D + 2 floats per row and split. */

/* Where element d0 of a K or V row lies in it. */
template <int DT>
__device__ __forceinline__ int kv_offset(int d0) {
    return DT == QN_KT_Q8_0 ? (d0 / 32) * 34 : d0 * 2;
}

/* 8 elements of a K or V row starting at d0: 16 bytes of f16/bf16, or for
 * q8_0 8 int8 of a block (2-byte aligned only) and its f16 scale. */
template <int DT>
__device__ __forceinline__ void load_kv(unsigned (&w)[4], const char *row, int d0) {
    if (DT == QN_KT_Q8_0) {
        const char *blk = row + kv_offset<DT>(d0);
        const unsigned short *qs = (const unsigned short *)(blk + 2 + d0 % 32);
        w[0] = qs[0] | ((unsigned)qs[1] << 16);
        w[1] = qs[2] | ((unsigned)qs[3] << 16);
        w[2] = *(const unsigned short *)blk;
        w[3] = 0;
    } else {
        ld_v4(w, row + kv_offset<DT>(d0));
    }
}

__device__ __forceinline__ void prefetch_l2(const void *p) { asm volatile("prefetch.global.L2 [%0];" ::"l"(p)); }

template <int DT>
__device__ __forceinline__ void kv_to_f32(const unsigned (&w)[4], float (&f)[8]) {
    if (DT == QN_KT_F16) {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            f[2 * i] = h2f(w[i] & 0xffffu);
            f[2 * i + 1] = h2f(w[i] >> 16);
        }
    } else if (DT == QN_KT_BF16) {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            f[2 * i] = __uint_as_float(w[i] << 16);
            f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
        }
    } else {
        float d = h2f(w[2]);
#pragma unroll
        for (int i = 0; i < 8; i++) f[i] = d * (float)(signed char)((w[i / 4] >> (8 * (i % 4))) & 0xffu);
    }
}

template <int DT, int RB>
__device__ __forceinline__ void attn_decode(const qn_kt &q, const qn_kt &k, const qn_kt &v, const qn_kt &pos,
                                            float *scratch, const qn_attn_params &p) {
    constexpr int LANES = QN_ATTN_DEC_LANES(HD), NV = QN_ATTN_DEC_VECS(HD), KPW = 32 / LANES;
    constexpr int NW = QN_ATTN_DEC_WARPS;
    constexpr int U = RB * NV <= 2 ? 4 : 2; /* keys per lane group per trip: loads in flight */
    constexpr int AHEAD = 2;                /* trips prefetched ahead */
    __shared__ float s_acc[NW][RB][HD];
    __shared__ float s_ml[NW][RB][2];

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int slot = lane / LANES, ld = lane % LANES;
    const int split = blockIdx.x, kvh = blockIdx.y, tile = blockIdx.z;
    const int G = p.group, R = G * p.n_tokens, C = p.capacity;
    const int p0 = qn_attn_p0(&pos);

    /* This lane's slices of the rows' queries, scaled so the dot product is
     * the base-2 logit (or, with a softcap, the logit before the cap), and
     * each row's visible keys [rlo, rhi). */
    const float qscale = p.softcap > 0.0f ? p.scale : p.scale * QN_ATTN_LOG2E;
    float qv[RB][NV][8];
    int rlo[RB], rhi[RB];
    int lo_all = 0x7fffffff, hi_all = 0;
#pragma unroll
    for (int r = 0; r < RB; r++) {
        const int rg = tile * RB + r;
        rlo[r] = rhi[r] = 0;
        const float *qrow = 0;
        if (rg < R) {
            qn_attn_keys(&p, p0, rg / G, &rlo[r], &rhi[r]);
            lo_all = min(lo_all, rlo[r]);
            hi_all = max(hi_all, rhi[r]);
            qrow = (const float *)qn_kt_at(&q, 0, kvh * G + rg % G, rg / G, 0);
        }
#pragma unroll
        for (int vv = 0; vv < NV; vv++)
#pragma unroll
            for (int e = 0; e < 8; e++) {
                const int d = (vv * LANES + ld) * 8 + e;
                qv[r][vv][e] = qrow && d < HD ? qrow[d] * qscale : 0.0f;
            }
    }
    if (hi_all <= lo_all) lo_all = hi_all = 0;

    /* This split's keys. They span at most `capacity` positions, so their
     * rows are j - off, less the capacity once past the end of the ring. */
    const int chunk = (hi_all - lo_all + p.n_splits - 1) / p.n_splits;
    const int blo = min(lo_all + split * chunk, hi_all), bhi = min(blo + chunk, hi_all);
    const int off = blo - blo % C;

    const char *kb = (const char *)k.addr + kvh * k.nb[2];
    const char *vb = (const char *)v.addr + kvh * v.nb[2];
    const long long knb = k.nb[1], vnb = v.nb[1];
    const float cap_l2 = p.softcap * QN_ATTN_LOG2E, inv_cap = p.softcap > 0.0f ? 1.0f / p.softcap : 0.0f;

    float m[RB], l[RB], acc[RB][NV][8];
#pragma unroll
    for (int r = 0; r < RB; r++) {
        m[r] = NEG_INF;
        l[r] = 0.0f;
#pragma unroll
        for (int vv = 0; vv < NV; vv++)
#pragma unroll
            for (int e = 0; e < 8; e++) acc[r][vv][e] = 0.0f;
    }

    for (int j0 = blo + warp * KPW * U; j0 < bhi; j0 += NW * KPW * U) {
        /* The rows this lane loads AHEAD trips from now, into L2: bytes in
         * flight without registers to hold them, so the loads below mostly
         * wait on L2 rather than on memory. */
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int j = j0 + AHEAD * NW * KPW * U + u * KPW + slot;
            int row = j - off;
            if (row >= C) row -= C;
#pragma unroll
            for (int vv = 0; vv < NV; vv++) {
                const int d0 = (vv * LANES + ld) * 8;
                if (j < bhi && d0 < HD && (DT != QN_KT_Q8_0 || d0 % 32 == 0)) {
                    prefetch_l2(kb + row * knb + kv_offset<DT>(d0));
                    prefetch_l2(vb + row * vnb + kv_offset<DT>(d0));
                }
            }
        }
        /* all loads of the trip first, then the arithmetic */
        unsigned kw[U][NV][4], vw[U][NV][4];
        int jj[U];
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int j = j0 + u * KPW + slot;
            int row = j - off;
            if (row >= C) row -= C;
            jj[u] = j;
#pragma unroll
            for (int vv = 0; vv < NV; vv++) {
                const int d0 = (vv * LANES + ld) * 8;
                if (j < bhi && d0 < HD) {
                    load_kv<DT>(kw[u][vv], kb + row * knb, d0);
                    load_kv<DT>(vw[u][vv], vb + row * vnb, d0);
                } else {
#pragma unroll
                    for (int i = 0; i < 4; i++) kw[u][vv][i] = vw[u][vv][i] = 0;
                }
            }
        }
        float s[U][RB];
#pragma unroll
        for (int u = 0; u < U; u++) {
#pragma unroll
            for (int r = 0; r < RB; r++) s[u][r] = 0.0f;
#pragma unroll
            for (int vv = 0; vv < NV; vv++) {
                float kf[8];
                kv_to_f32<DT>(kw[u][vv], kf);
#pragma unroll
                for (int r = 0; r < RB; r++)
#pragma unroll
                    for (int e = 0; e < 8; e++) s[u][r] += qv[r][vv][e] * kf[e];
            }
#pragma unroll
            for (int r = 0; r < RB; r++)
#pragma unroll
                for (int o = LANES / 2; o > 0; o /= 2) s[u][r] += __shfl_xor_sync(0xffffffffu, s[u][r], o);
        }
#pragma unroll
        for (int r = 0; r < RB; r++) {
            float mx = NEG_INF;
#pragma unroll
            for (int u = 0; u < U; u++) {
                float x = s[u][r];
                if (p.softcap > 0.0f) x = cap_l2 * tanhf(x * inv_cap);
                if (!(jj[u] < bhi && jj[u] >= rlo[r] && jj[u] < rhi[r])) x = NEG_INF;
                s[u][r] = x;
                mx = fmaxf(mx, x);
            }
            const float mn = fmaxf(m[r], mx);
            const float mref = mn == NEG_INF ? 0.0f : mn; /* no key yet: every weight is 0 */
            const float corr = exp2f(m[r] - mref);
            m[r] = mn;
            l[r] *= corr;
#pragma unroll
            for (int vv = 0; vv < NV; vv++)
#pragma unroll
                for (int e = 0; e < 8; e++) acc[r][vv][e] *= corr;
#pragma unroll
            for (int u = 0; u < U; u++) {
                s[u][r] = exp2f(s[u][r] - mref);
                l[r] += s[u][r];
            }
        }
#pragma unroll
        for (int u = 0; u < U; u++)
#pragma unroll
            for (int vv = 0; vv < NV; vv++) {
                float vf[8];
                kv_to_f32<DT>(vw[u][vv], vf);
#pragma unroll
                for (int r = 0; r < RB; r++)
#pragma unroll
                    for (int e = 0; e < 8; e++) acc[r][vv][e] += s[u][r] * vf[e];
            }
    }

    /* merge the lane groups of the warp */
#pragma unroll
    for (int o = LANES; o < 32; o *= 2)
#pragma unroll
        for (int r = 0; r < RB; r++) {
            const float mo = __shfl_xor_sync(0xffffffffu, m[r], o), lo = __shfl_xor_sync(0xffffffffu, l[r], o);
            const float mn = fmaxf(m[r], mo), mref = mn == NEG_INF ? 0.0f : mn;
            const float a = exp2f(m[r] - mref), b = exp2f(mo - mref);
            m[r] = mn;
            l[r] = l[r] * a + lo * b;
#pragma unroll
            for (int vv = 0; vv < NV; vv++)
#pragma unroll
                for (int e = 0; e < 8; e++)
                    acc[r][vv][e] = acc[r][vv][e] * a + __shfl_xor_sync(0xffffffffu, acc[r][vv][e], o) * b;
        }
    /* then the warps, through shared memory */
    if (slot == 0) {
#pragma unroll
        for (int r = 0; r < RB; r++) {
#pragma unroll
            for (int vv = 0; vv < NV; vv++)
#pragma unroll
                for (int e = 0; e < 8; e++) {
                    const int d = (vv * LANES + ld) * 8 + e;
                    if (d < HD) s_acc[warp][r][d] = acc[r][vv][e];
                }
            if (ld == 0) {
                s_ml[warp][r][0] = m[r];
                s_ml[warp][r][1] = l[r];
            }
        }
    }
    __syncthreads();
    const long long rows = (long long)p.n_tokens * p.n_q_heads;
    for (int i = threadIdx.x; i < RB * HD; i += blockDim.x) {
        const int r = i / HD, d = i % HD, rg = tile * RB + r;
        if (rg >= R) continue;
        float mn = NEG_INF;
#pragma unroll
        for (int w = 0; w < NW; w++) mn = fmaxf(mn, s_ml[w][r][0]);
        const float mref = mn == NEG_INF ? 0.0f : mn;
        float a = 0.0f, sum = 0.0f;
#pragma unroll
        for (int w = 0; w < NW; w++) {
            const float wt = exp2f(s_ml[w][r][0] - mref);
            a += wt * s_acc[w][r][d];
            sum += wt * s_ml[w][r][1];
        }
        const long long row = (long long)split * rows + (long long)(rg / G) * p.n_q_heads + kvh * G + rg % G;
        scratch[row * HD + d] = a;
        if (d == 0) {
            float *ml = scratch + (long long)p.n_splits * rows * HD + row * 2;
            ml[0] = mn;
            ml[1] = sum;
        }
    }
}

#define DECODE_KERNEL(dn, DT, RB)                                                                              \
    extern "C" __global__ void __launch_bounds__(32 * QN_ATTN_DEC_WARPS, QN_ATTN_DEC_MINB(RB * QN_ATTN_DEC_VECS(HD))) \
        attn_decode_##dn##_r##RB(qn_kt q, qn_kt k, qn_kt v, qn_kt pos, float *scratch, qn_attn_params p) {       \
        attn_decode<DT, RB>(q, k, v, pos, scratch, p);                                                            \
    }
#if QN_ATTN_DEC_MAX_ROWS(QN_ATTN_D) >= 8
#define DECODE_KERNELS(dn, DT) \
    DECODE_KERNEL(dn, DT, 1) DECODE_KERNEL(dn, DT, 2) DECODE_KERNEL(dn, DT, 4) DECODE_KERNEL(dn, DT, 8)
#else
#define DECODE_KERNELS(dn, DT) DECODE_KERNEL(dn, DT, 1) DECODE_KERNEL(dn, DT, 2) DECODE_KERNEL(dn, DT, 4)
#endif
DECODE_KERNELS(f16, QN_KT_F16)
DECODE_KERNELS(bf16, QN_KT_BF16)
DECODE_KERNELS(q8_0, QN_KT_Q8_0)

/* ---- the merge of split partials
 *
 * Grid (n_q_heads, n_tokens), 128 threads: out = sum_s w_s acc_s / (sum_s
 * w_s l_s + sink), w_s = 2^(m_s - max m). Bytes: S * (D + 2) floats read and
 * D written per row. */
extern "C" __global__ void __launch_bounds__(128) attn_reduce(qn_kt out, qn_kt sinks, const float *scratch,
                                                              qn_attn_params p) {
    __shared__ float w[QN_ATTN_MAX_SPLITS];
    const int h = blockIdx.x, t = blockIdx.y, S = p.n_splits;
    const long long rows = (long long)p.n_tokens * p.n_q_heads, row = (long long)t * p.n_q_heads + h;
    const float *ml = scratch + (long long)S * rows * HD;
    float mn = NEG_INF;
    for (int s = 0; s < S; s++) mn = fmaxf(mn, ml[(s * rows + row) * 2]);
    const float mref = mn == NEG_INF ? 0.0f : mn;
    for (int s = threadIdx.x; s < S; s += blockDim.x) w[s] = exp2f(ml[(s * rows + row) * 2] - mref);
    __syncthreads();
    float sum = 0.0f;
    for (int s = 0; s < S; s++) sum += w[s] * ml[(s * rows + row) * 2 + 1];
    if (sinks.addr) sum += exp2f(*(const float *)qn_kt_at(&sinks, h, 0, 0, 0) * QN_ATTN_LOG2E - mref);
    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    float *orow = (float *)qn_kt_at(&out, 0, h, t, 0);
    for (int d = threadIdx.x; d < HD; d += blockDim.x) {
        float a = 0.0f;
        for (int s = 0; s < S; s++) a += w[s] * scratch[(s * rows + row) * HD + d];
        orow[d] = a * inv;
    }
}

/* ---- prefill
 *
 * Tensor cores: mma.sync m16n8k16, f16 or bf16 inputs, f32 accumulation.
 * Grid (row tiles x value halves, n_kv_heads, splits), 4 warps. A block
 * takes 64 query rows of one kv head (token-major over the group's heads,
 * so grouped heads share every K and V tile), warp w rows 16w .. 16w + 15,
 * and a slice of the keys those rows see, in tiles of BN keys:
 *   S = Q K^T (Q and K from shared memory by ldmatrix), scaled, capped and
 *   masked, online softmax in registers; O += P V with P taken straight
 *   from S's accumulators and V by ldmatrix.trans.
 * K and V tiles have their own buffers so V's copy (cp.async) overlaps
 * Q K^T and the next K's copy overlaps P V. Keys outside the slice are
 * zero-filled (a NaN in an unused cache row must not reach P V) and masked.
 * At head 512 a block covers half of the value columns (the grid's x
 * alternates halves) and computes S for its half.
 *
 * With one split the block writes out (normalised, with the sink); with
 * more it writes partials to scratch for attn_reduce.
 * FLOPs: 4 * rows * keys * D per kv-head group; bytes: K and V once per
 * row tile, q and out once. */

extern __shared__ __align__(16) unsigned short qn_attn_smem[];

__device__ __forceinline__ float tanh_approx(float x) {
    float y;
    asm("tanh.approx.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

template <int DT>
__device__ __forceinline__ void attn_prefill(const qn_kt &out, const qn_kt &q, const qn_kt &k, const qn_kt &v,
                                             const qn_kt &pos, const qn_kt &sinks, float *scratch,
                                             const qn_attn_params &p) {
    constexpr int BM = QN_ATTN_PF_ROWS, BN = QN_ATTN_PF_KEYS(HD), DV = QN_ATTN_PF_DV(HD), NDV = HD / DV;
    constexpr int QS = HD + 8, VS = DV + 8; /* shared row strides, halves */
    constexpr int NT = 32 * QN_ATTN_PF_WARPS;
    unsigned short *sQ = qn_attn_smem, *sK = sQ + BM * QS, *sV = sK + BN * QS;

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, c = lane % 4;
    const int tile = blockIdx.x / NDV, dv0 = (blockIdx.x % NDV) * DV;
    const int kvh = blockIdx.y, split = blockIdx.z;
    const int G = p.group, R = G * p.n_tokens, C = p.capacity;
    const int p0 = qn_attn_p0(&pos);

    /* Q tile to shared memory, rounded to the K dtype; rows past the last
     * are zeros */
    for (int i = tid; i < BM * (HD / 2); i += NT) {
        const int r = i / (HD / 2), d = (i % (HD / 2)) * 2, rg = tile * BM + r;
        float x0 = 0.0f, x1 = 0.0f;
        if (rg < R) {
            const float *qrow = (const float *)qn_kt_at(&q, 0, kvh * G + rg % G, rg / G, 0);
            x0 = qrow[d];
            x1 = qrow[d + 1];
        }
        *(unsigned *)(sQ + r * QS + d) = pack2<DT>(x0, x1);
    }

    /* The visible keys of this thread's two rows (g and g + 8 of its
     * warp's 16), and of the block: its first row's token has the lowest
     * bounds and its last valid row's the highest. */
    int rlo[2], rhi[2];
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        const int rg = tile * BM + warp * 16 + g + rr * 8;
        rlo[rr] = rhi[rr] = 0;
        if (rg < R) qn_attn_keys(&p, p0, rg / G, &rlo[rr], &rhi[rr]);
    }
    int lo_first, hi_first, lo_last, hi_last;
    qn_attn_keys(&p, p0, tile * BM / G, &lo_first, &hi_first);
    qn_attn_keys(&p, p0, (min(tile * BM + BM, R) - 1) / G, &lo_last, &hi_last);
    const int len = max(hi_last - lo_first, 0);
    const int chunk = ((len + p.n_splits - 1) / p.n_splits + BN - 1) / BN * BN;
    const int blo = min(lo_first + split * chunk, lo_first + len), bhi = min(blo + chunk, lo_first + len);
    const int ntiles = (bhi - blo + BN - 1) / BN;
    /* tiles from full_lo to full_hi are visible to every row: no mask */
    const int full_lo = lo_last, full_hi = min(hi_first, bhi);
    const int off = blo - blo % C;

    const char *kb = (const char *)k.addr + kvh * k.nb[2];
    const char *vb = (const char *)v.addr + kvh * v.nb[2] + dv0 * 2;
    const long long knb = k.nb[1], vnb = v.nb[1];
    const unsigned sQa = smem_addr(sQ), sKa = smem_addr(sK), sVa = smem_addr(sV);

    /* Copy tile j0 of K (all D columns) or V (this block's DV columns). */
    auto load_tile = [&](unsigned dst, const char *base, long long nb, int cols, int stride, int j0) {
        const int chunks = cols / 8;
        for (int i = tid; i < BN * chunks; i += NT) {
            const int r = i / chunks, ch = i % chunks, j = j0 + r;
            int row = j - off;
            if (row >= C) row -= C;
            const bool ok = j < bhi;
            cp_async16(dst + (r * stride + ch * 8) * 2, ok ? base + row * nb + ch * 16 : base, ok ? 16 : 0);
        }
    };

    /* ldmatrix addresses of this lane: Q rows of the warp (A), K rows as
     * B's columns (two n-tiles of 8 keys by 16 d), V rows transposed (two
     * n-tiles of 8 columns by 16 keys) */
    const unsigned qoff = ((warp * 16 + lane % 16) * QS + (lane / 16) * 8) * 2;
    const unsigned koff = ((lane % 8 + (lane / 16) * 8) * QS + ((lane / 8) % 2) * 8) * 2;
    const unsigned voff = ((lane % 8 + ((lane / 8) % 2) * 8) * VS + (lane / 16) * 8) * 2;

    const float sl2 = p.scale * QN_ATTN_LOG2E, cap_l2 = p.softcap * QN_ATTN_LOG2E;
    const float scale_cap = p.softcap > 0.0f ? p.scale / p.softcap : 0.0f;
    float o[DV / 8][4];
#pragma unroll
    for (int n = 0; n < DV / 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    float m[2] = {NEG_INF, NEG_INF}, l[2] = {0.0f, 0.0f};

    if (ntiles > 0) {
        load_tile(sKa, kb, knb, HD, QS, blo);
        cp_commit();
    }
    for (int it = 0; it < ntiles; it++) {
        const int j0 = blo + it * BN;
        load_tile(sVa, vb, vnb, DV, VS, j0);
        cp_commit();
        cp_wait<1>(); /* K of this tile has landed (V may still be coming) */
        __syncthreads();

        float s[BN / 8][4];
#pragma unroll
        for (int n = 0; n < BN / 8; n++) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
        for (int ks = 0; ks < HD / 16; ks++) {
            unsigned a[4];
            ldsm_x4(a, sQa + qoff + ks * 32);
#pragma unroll
            for (int np = 0; np < BN / 16; np++) {
                unsigned b[4];
                ldsm_x4(b, sKa + koff + (np * 16 * QS + ks * 16) * 2);
                mma16816<DT>(s[2 * np], a, b[0], b[1]);
                mma16816<DT>(s[2 * np + 1], a, b[2], b[3]);
            }
        }

        /* base-2 logits; element e of n-tile n is row g + 8 * (e / 2), key
         * j0 + 8 n + 2 c + e % 2 */
        const bool full = j0 >= full_lo && j0 + BN <= full_hi;
        float mx[2] = {NEG_INF, NEG_INF};
#pragma unroll
        for (int n = 0; n < BN / 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                float x = p.softcap > 0.0f ? cap_l2 * tanh_approx(s[n][e] * scale_cap) : s[n][e] * sl2;
                if (!full) {
                    const int j = j0 + n * 8 + 2 * c + (e & 1), rr = e >> 1;
                    if (!(j < bhi && j >= rlo[rr] && j < rhi[rr])) x = NEG_INF;
                }
                s[n][e] = x;
                mx[e >> 1] = fmaxf(mx[e >> 1], x);
            }
        float mref[2];
#pragma unroll
        for (int rr = 0; rr < 2; rr++) {
            mx[rr] = fmaxf(mx[rr], __shfl_xor_sync(0xffffffffu, mx[rr], 1));
            mx[rr] = fmaxf(mx[rr], __shfl_xor_sync(0xffffffffu, mx[rr], 2));
            const float mn = fmaxf(m[rr], mx[rr]);
            mref[rr] = mn == NEG_INF ? 0.0f : mn;
            const float corr = exp2f(m[rr] - mref[rr]);
            m[rr] = mn;
            l[rr] *= corr;
#pragma unroll
            for (int n = 0; n < DV / 8; n++) {
                o[n][2 * rr] *= corr;
                o[n][2 * rr + 1] *= corr;
            }
        }
#pragma unroll
        for (int n = 0; n < BN / 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                s[n][e] = exp2f(s[n][e] - mref[e >> 1]);
                l[e >> 1] += s[n][e];
            }

        __syncthreads(); /* every warp is done with this K tile */
        if (it + 1 < ntiles) {
            load_tile(sKa, kb, knb, HD, QS, j0 + BN);
            cp_commit();
            cp_wait<1>(); /* V of this tile has landed */
        } else {
            cp_wait<0>();
        }
        __syncthreads();

#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++) {
            const unsigned a[4] = {pack2<DT>(s[2 * kk][0], s[2 * kk][1]), pack2<DT>(s[2 * kk][2], s[2 * kk][3]),
                                   pack2<DT>(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                   pack2<DT>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
            for (int dp = 0; dp < DV / 16; dp++) {
                unsigned b[4];
                ldsm_x4_trans(b, sVa + voff + (kk * 16 * VS + dp * 16) * 2);
                mma16816<DT>(o[2 * dp], a, b[0], b[1]);
                mma16816<DT>(o[2 * dp + 1], a, b[2], b[3]);
            }
        }
        __syncthreads(); /* every warp is done with this V tile */
    }

    /* the row sums are spread over the 4 lanes of a quad */
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        l[rr] += __shfl_xor_sync(0xffffffffu, l[rr], 1);
        l[rr] += __shfl_xor_sync(0xffffffffu, l[rr], 2);
    }
    const long long rows = (long long)p.n_tokens * p.n_q_heads;
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        const int rg = tile * BM + warp * 16 + g + rr * 8;
        if (rg >= R) continue;
        const int t = rg / G, h = kvh * G + rg % G;
        if (p.n_splits == 1) {
            float sum = l[rr];
            if (sinks.addr)
                sum += exp2f(*(const float *)qn_kt_at(&sinks, h, 0, 0, 0) * QN_ATTN_LOG2E -
                             (m[rr] == NEG_INF ? 0.0f : m[rr]));
            const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
            float *orow = (float *)qn_kt_at(&out, 0, h, t, 0);
#pragma unroll
            for (int n = 0; n < DV / 8; n++) {
                orow[dv0 + n * 8 + 2 * c] = o[n][2 * rr] * inv;
                orow[dv0 + n * 8 + 2 * c + 1] = o[n][2 * rr + 1] * inv;
            }
        } else {
            const long long row = (long long)split * rows + (long long)t * p.n_q_heads + h;
            float *arow = scratch + row * HD;
#pragma unroll
            for (int n = 0; n < DV / 8; n++) {
                arow[dv0 + n * 8 + 2 * c] = o[n][2 * rr];
                arow[dv0 + n * 8 + 2 * c + 1] = o[n][2 * rr + 1];
            }
            if (dv0 == 0 && c == 0) {
                float *ml = scratch + (long long)p.n_splits * rows * HD + row * 2;
                ml[0] = m[rr];
                ml[1] = l[rr];
            }
        }
    }
}

#define PREFILL_KERNEL(dn, DT)                                                                                   \
    extern "C" __global__ void __launch_bounds__(32 * QN_ATTN_PF_WARPS, QN_ATTN_PF_MINB(HD))                     \
        attn_prefill_##dn(qn_kt out, qn_kt q, qn_kt k, qn_kt v, qn_kt pos, qn_kt sinks, float *scratch,           \
                          qn_attn_params p) {                                                                      \
        attn_prefill<DT>(out, q, k, v, pos, sinks, scratch, p);                                                   \
    }
PREFILL_KERNEL(f16, QN_KT_F16)
PREFILL_KERNEL(bf16, QN_KT_BF16)

