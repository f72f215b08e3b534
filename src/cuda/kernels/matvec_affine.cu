/* MLX affine matrix-vector products for 1 to 8 tokens (decode, speculative
 * decoding): y[n, t] = sum_k W[n, k] x[k, t], W in MLX's affine format.
 * Arguments: qn_affine_args (affine.h); fields: affine.cuh.
 *
 * Layout: W row n is a little-endian bit stream of K QN_AFFINE_BITS-bit
 * integers q (2, 3, 4, 6 or 8 bits; the module is compiled per width) in
 * q_row bytes, with K / group scales s and biases b (f16, bf16 or f32) s_row
 * and b_row bytes apart; weight k is s[k / group] * q[k] + b[k / group].
 * Experts of the routed form lie q_expert / s_expert / b_expert bytes apart.
 * x rows of K f32, f16 or bf16 values, 16-byte aligned; y f32.
 *
 * Grid: blockIdx.x takes `groups` consecutive row groups of NR weight rows
 * (with GLU NR / 2 gate rows and the same NR / 2 up rows); for the routed
 * form blockIdx.y is the (slot, token) pair. The grid is sized to be
 * resident at once, every block with the same number of groups, so they all
 * stream until the end. Up to QN_AFFINE_WARPS warps a block; thread i takes
 * units i, i + blockDim.x, ... (a unit: 32 weights, one scale, one bias) of
 * every row of a group, and a block-wide sum ends each group.
 *
 * Pipeline: an item is one group (and one token, one stretch of K). Each
 * thread copies its own units of item i + stages - 1 into shared memory with
 * cp.async while it computes item i, so stages - 1 items of every thread are
 * in flight without costing registers, and no barrier guards the copies (a
 * thread reads only what it copied). The item's scales and biases are
 * loaded into registers one item ahead. x is staged in shared memory once
 * per token per block, already scaled (below) with its unit sums.
 *
 * Bytes it must move: every row's q, scales and biases once per token (for
 * tokens after the first, from L2), x once per block per token.
 *
 * Arithmetic: a unit adds s * sum(q x) + b * sum(x), sum(x) shared by the
 * rows. A field masked in place is the denormal q * 2^(pos - 149) (see
 * affine.cuh); x is scaled by 2^(85 - pos) (exact), so fma(field, x', acc)
 * adds q * x * 2^-64, rounded once: one AND and one FMA a weight. The 2^-64
 * keeps products normal for |x| >= 2^-62 and x' finite for |x| < 2^43. The
 * module must keep denormals (NVRTC does unless told -ftz=true). */
#include "affine.cuh"
#include "mma.cuh"
#include "ops_math.cuh"

#define BITS QN_AFFINE_BITS
#define NR QN_AFFINE_ROWS(BITS)
typedef qn_af<BITS> AF;

constexpr int UB = 4 * BITS;                                /* bytes of a row's unit */
constexpr int CB = UB % 16 == 0 ? 16 : UB % 8 == 0 ? 8 : 4; /* copied in chunks of CB bytes */
constexpr int NCH = UB / CB;

extern __shared__ __align__(16) unsigned char af_smem[];

/* One token's x in shared memory for every unit u: xq[j * units + u] holds
 * elements 4j .. 4j + 3 of u, each scaled by 2^(85 - pos) for its field
 * (consecutive threads read consecutive float4s), xsum[u] their plain sum
 * (pairwise, a fixed order). */
__device__ void af_stage_x(const char *xr, int xt, long long units, float4 *xq, float *xsum) {
    for (long long u = threadIdx.x; u < units; u += blockDim.x) {
        float v[32];
        if (xt == QN_KT_F32) {
            const float4 *p = (const float4 *)(xr + 128 * u);
#pragma unroll
            for (int i = 0; i < 8; i++) {
                const float4 f = __ldg(p + i);
                v[4 * i] = f.x, v[4 * i + 1] = f.y, v[4 * i + 2] = f.z, v[4 * i + 3] = f.w;
            }
        } else {
            const uint4 *p = (const uint4 *)(xr + 64 * u);
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const uint4 r = __ldg(p + i);
                const unsigned h[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
                for (int k = 0; k < 4; k++)
                    v[8 * i + 2 * k] = qn_af_float(h[k] & 0xFFFFu, xt), v[8 * i + 2 * k + 1] = qn_af_float(h[k] >> 16, xt);
            }
        }
        float s[16];
#pragma unroll
        for (int i = 0; i < 16; i++) s[i] = v[2 * i] + v[2 * i + 1];
#pragma unroll
        for (int i = 0; i < 8; i++) s[i] = s[2 * i] + s[2 * i + 1];
#pragma unroll
        for (int i = 0; i < 4; i++) s[i] = s[2 * i] + s[2 * i + 1];
        xsum[u] = (s[0] + s[1]) + (s[2] + s[3]);
#pragma unroll
        for (int e = 0; e < 32; e++) v[e] *= __uint_as_float((unsigned)(212 - AF::pos(e)) << 23);
#pragma unroll
        for (int j = 0; j < 8; j++) xq[j * units + u] = make_float4(v[4 * j], v[4 * j + 1], v[4 * j + 2], v[4 * j + 3]);
    }
}

/* sum(q x) * 2^-64 over a unit, from its words and its scaled x. */
__device__ __forceinline__ float af_unit_dot(const unsigned (&w)[BITS], const float (&xs)[32]) {
    float acc = 0.0f;
#pragma unroll
    for (int e = 0; e < 32; e++) acc = fmaf(__uint_as_float(AF::field(w, e)), xs[e], acc);
    return acc;
}

/* A unit's words of one row from shared memory (its NCH chunks). */
__device__ __forceinline__ void af_lds(const unsigned char *p, int stride, unsigned (&w)[BITS]) {
#pragma unroll
    for (int j = 0; j < NCH; j++) {
        if constexpr (CB == 16) {
            const uint4 v = *(const uint4 *)(p + j * stride);
            w[4 * j] = v.x, w[4 * j + 1] = v.y, w[4 * j + 2] = v.z, w[4 * j + 3] = v.w;
        } else if constexpr (CB == 8) {
            const uint2 v = *(const uint2 *)(p + j * stride);
            w[2 * j] = v.x, w[2 * j + 1] = v.y;
        } else {
            w[j] = *(const unsigned *)(p + j * stride);
        }
    }
}

/* Sums of NR values over a warp, transposed: at each of the first log2(NR)
 * steps a lane keeps the half of its values its lane bit selects and adds
 * the partner's copy of that half, so NR sums cost about 2 NR shuffles, not
 * 5 NR. Returns value (lane >> (5 - log2 NR)) % NR's total. */
__device__ __forceinline__ float af_warp_sums(float (&v)[NR], int lane) {
#pragma unroll
    for (int k = 4; k >= 0; k--) {
        const int o = 1 << k, n = NR >> (4 - k); /* values still held */
        if (n > 1) {
            const bool hi = lane & o;
#pragma unroll
            for (int i = 0; i < n / 2; i++) {
                const float send = hi ? v[i] : v[i + n / 2], keep = hi ? v[i + n / 2] : v[i];
                v[i] = keep + __shfl_xor_sync(0xffffffffu, send, o);
            }
        } else {
            v[0] += __shfl_xor_sync(0xffffffffu, v[0], o);
        }
    }
    return v[0];
}

constexpr int af_log2(int n) { return n <= 1 ? 0 : 1 + af_log2(n / 2); }

__device__ __forceinline__ void af_wait(int pending) {
    if (pending >= 3) cp_wait<3>();
    else if (pending == 2) cp_wait<2>();
    else cp_wait<1>();
}

/* y = W x for a.nx tokens (dense) or one (slot, token) pair (routed); with
 * GLU y = act(G x) * (U x). Rows past N repeat the last and are not written. */
template <bool GLU, bool ROUTED>
__device__ __forceinline__ void af_matvec(const qn_affine_args &a) {
    constexpr int NO = GLU ? NR / 2 : NR; /* output rows a group */
    __shared__ float red[2][QN_AFFINE_WARPS][NR]; /* by group parity: one barrier a group */
    const int T = blockDim.x, tid = threadIdx.x, lane = tid & 31, S = a.stages;
    const long long units = a.K >> 5, C = (units + T - 1) / T, G = (a.N + NO - 1) / NO;
    const long long g0 = (long long)blockIdx.x * a.groups, ng = G - g0 < a.groups ? G - g0 : a.groups;
    if (ng <= 0) return;
    const char *x = (const char *)a.x;
    float *y = (float *)a.y;
    long long qe = 0, se = 0, be = 0;
    int nx = a.nx;
    if (ROUTED) {
        const int j = blockIdx.y, slot = j % a.top_k, tok = j / a.top_k;
        const int e = ((const int *)a.ids)[slot + tok * a.ids_tok];
        if (e < 0 || e >= a.n_experts) {
            if (tid == 0 && blockIdx.x == 0) atomicOr((int *)a.flags, QN_FLAG_BAD_EXPERT);
            return;
        }
        qe = e * a.w.q_expert, se = e * a.w.s_expert, be = e * a.w.b_expert;
        x += slot * a.x_slot + tok * a.x_tok;
        y += (long long)j * a.N;
        nx = 1;
    }
    float4 *xq = (float4 *)(af_smem + (long long)S * NR * T * UB);
    float *xsum = (float *)(xq + 8 * units);
    const unsigned stage0 = smem_addr(af_smem);
    const long long items = nx * ng * C;

    /* row r of group g: gate (or the only) weight row g * NO + r % NO, up rows for r >= NO */
    auto row = [&](long long g, int r) -> long long {
        const long long n = g * NO + r % NO;
        return n < a.N ? n : a.N - 1;
    };
    auto issue = [&](long long i) {
        const long long u = i % C * T + tid;
        if (i < items && u < units) {
            const long long g = g0 + i / C % ng;
            const unsigned dst = stage0 + (unsigned)(i % S) * (NR * NCH * T * CB) + tid * CB;
#pragma unroll
            for (int r = 0; r < NR; r++) {
                const char *src = (const char *)a.w.q[GLU && r >= NO] + qe + row(g, r) * a.w.q_row + u * UB;
#pragma unroll
                for (int j = 0; j < NCH; j++) {
                    const unsigned d = dst + (r * NCH + j) * T * CB;
                    if constexpr (CB == 16) cp_async16(d, src + 16 * j, 16);
                    else cp_async_small<CB>(d, src + CB * j);
                }
            }
        }
        cp_commit();
    };
    auto scales = [&](long long i, unsigned (&s)[NR], unsigned (&b)[NR]) {
        const long long u = i % C * T + tid;
        if (i >= items || u >= units) return;
        const long long g = g0 + i / C % ng, gi = (u << 5) >> a.w.group_shift;
#pragma unroll
        for (int r = 0; r < NR; r++) {
            const int m = GLU && r >= NO;
            s[r] = qn_af_scale_bits((const char *)a.w.s[m] + se + row(g, r) * a.w.s_row, gi, a.w.stype);
            b[r] = qn_af_scale_bits((const char *)a.w.b[m] + be + row(g, r) * a.w.b_row, gi, a.w.stype);
        }
    };

    for (int i = 0; i < S - 1; i++) issue(i);
    unsigned sc[NR], bi[NR], sc_next[NR], bi_next[NR];
    scales(0, sc, bi);
    float acc[NR], accb[NR];
#pragma unroll
    for (int r = 0; r < NR; r++) acc[r] = accb[r] = 0.0f;
    long long t_staged = -1;
    int parity = 0;
    for (long long i = 0; i < items; i++) {
        const long long c = i % C, gl = i / C % ng, t = i / (C * ng);
        if (t != t_staged) {
            __syncthreads(); /* the previous token's x is no longer read */
            af_stage_x(x + t * a.x_tok, a.xt, units, xq, xsum);
            __syncthreads();
            t_staged = t;
        }
        issue(i + S - 1);
        scales(i + 1, sc_next, bi_next);
        af_wait(S - 1); /* item i's copies landed (this thread's: the only ones it reads) */
        const long long u = c * T + tid;
        if (u < units) {
            float xs[32];
#pragma unroll
            for (int j = 0; j < 8; j++) {
                const float4 f = xq[j * units + u];
                xs[4 * j] = f.x, xs[4 * j + 1] = f.y, xs[4 * j + 2] = f.z, xs[4 * j + 3] = f.w;
            }
            const float sx = xsum[u];
            const unsigned char *st = af_smem + (i % S) * (NR * NCH * T * CB) + tid * CB;
#pragma unroll
            for (int r = 0; r < NR; r++) {
                unsigned w[BITS];
                af_lds(st + r * NCH * T * CB, T * CB, w);
                acc[r] = fmaf(qn_af_float(sc[r], a.w.stype), af_unit_dot(w, xs), acc[r]);
                accb[r] = fmaf(qn_af_float(bi[r], a.w.stype), sx, accb[r]);
            }
        }
#pragma unroll
        for (int r = 0; r < NR; r++) sc[r] = sc_next[r], bi[r] = bi_next[r];
        if (c == C - 1) { /* the group's sums */
            float v[NR];
#pragma unroll
            for (int r = 0; r < NR; r++) v[r] = fmaf(acc[r], 0x1p64f, accb[r]), acc[r] = accb[r] = 0.0f;
            const float total = af_warp_sums(v, lane);
            if ((lane & (32 / NR - 1)) == 0) red[parity][tid >> 5][(lane >> (5 - af_log2(NR))) & (NR - 1)] = total;
            __syncthreads();
            const long long n = (g0 + gl) * NO + tid;
            if (tid < NO && n < a.N) {
                float g = 0.0f, up = 0.0f;
                for (int w = 0; w < (T >> 5); w++) {
                    g += red[parity][w][tid];
                    if (GLU) up += red[parity][w][NO + tid];
                }
                y[t * a.y_tok + n] = GLU ? qn_act_apply(a.act, g, 0.0f) * up : g;
            }
            parity ^= 1;
        }
    }
    cp_wait<0>();
}

extern "C" __global__ void __launch_bounds__(32 * QN_AFFINE_WARPS) affine_matvec(const __grid_constant__ qn_affine_args a) {
    af_matvec<false, false>(a);
}
extern "C" __global__ void __launch_bounds__(32 * QN_AFFINE_WARPS)
    affine_matvec_glu(const __grid_constant__ qn_affine_args a) {
    af_matvec<true, false>(a);
}
extern "C" __global__ void __launch_bounds__(32 * QN_AFFINE_WARPS)
    affine_matvec_id(const __grid_constant__ qn_affine_args a) {
    af_matvec<false, true>(a);
}
extern "C" __global__ void __launch_bounds__(32 * QN_AFFINE_WARPS)
    affine_matvec_glu_id(const __grid_constant__ qn_affine_args a) {
    af_matvec<true, true>(a);
}
