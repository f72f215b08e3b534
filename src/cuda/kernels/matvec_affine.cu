/* MLX affine matrix-vector products for 1 to 8 tokens (decode, speculative
 * decoding): y[n, t] = sum_k W[n, k] x[k, t], W in MLX's affine format.
 * Arguments: qn_affine_args (affine.h).
 *
 * Layout: W row n is a little-endian bit stream of K QN_AFFINE_BITS-bit
 * integers q (2, 3, 4, 6 or 8 bits; the module is compiled per width) in
 * q_row bytes, with K / group scales s and biases b (f16, bf16 or f32) s_row
 * and b_row bytes apart; weight k is s[k / group] * q[k] + b[k / group].
 * Experts of the routed form lie q_expert / s_expert / b_expert bytes apart.
 * x rows of K f32, f16 or bf16 values, 16-byte aligned; y f32.
 *
 * Grid: a block of up to QN_AFFINE_WARPS warps per NR weight rows
 * (blockIdx.x; with GLU NR / 2 gate rows and the same NR / 2 up rows), and
 * for the routed form one blockIdx.y per (slot, token) pair. A unit is 32
 * weights of a row: BITS words, one scale, one bias (groups hold at least
 * 32). Thread i takes units i, i + blockDim.x, ... of all NR rows, so a
 * warp's load instruction reads 128 * BITS contiguous bytes of a row, the
 * NR rows' loads are independent and in flight together, and the thread's
 * x values serve all NR rows. A block-wide sum ends each row.
 *
 * Bytes it must move: the NR rows' q, scales and biases once, x from cache;
 * with more than one token the rows are read again, from L2.
 *
 * Arithmetic: a unit adds s * sum(q x) + b * sum(x), and sum(x) is shared by
 * the rows. The q never become floats by conversion: a field masked in place
 * in its 32-bit word (or after one shift of the word, when it reaches past
 * bit 22) is the bit pattern of a float with a zero exponent, the denormal
 * q * 2^(p - 149) for a field at bit p. x is scaled by 2^(85 - p) beforehand
 * (exact), so fma(field, x', acc) adds q * x * 2^-64, rounded once: one AND
 * and one FMA a weight. The 2^-64 keeps products normal for |x| >= 2^-62 and
 * x' finite for |x| < 2^43. The module must keep denormals (NVRTC does
 * unless told -ftz=true). */
#include "affine.h"
#include "ops_math.cuh"

#define BITS QN_AFFINE_BITS
#define NR QN_AFFINE_ROWS(BITS)

/* Element e of a unit: its word, its bit offset there, the right shift that
 * brings it under bit 23 (16 when it spans two words: a funnel shift of the
 * pair), and so its bit position in the float it becomes. */
constexpr int af_word(int e) { return e * BITS / 32; }
constexpr int af_off(int e) { return e * BITS % 32; }
constexpr int af_shift(int e) { return af_off(e) + BITS <= 23 ? 0 : af_off(e) + BITS <= 32 ? 12 : 16; }
constexpr int af_pos(int e) { return af_off(e) - af_shift(e); }

/* A unit's BITS words: 4 * BITS bytes at p, aligned to the largest of 16, 8
 * and 4 that divides that. Read past L1, whose room x needs. */
__device__ __forceinline__ void af_load_q(const char *p, unsigned (&w)[BITS]) {
    if constexpr (BITS % 4 == 0) {
#pragma unroll
        for (int i = 0; i < BITS / 4; i++)
            asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                : "=r"(w[4 * i]), "=r"(w[4 * i + 1]), "=r"(w[4 * i + 2]), "=r"(w[4 * i + 3])
                : "l"(p + 16 * i));
    } else if constexpr (BITS % 2 == 0) {
#pragma unroll
        for (int i = 0; i < BITS / 2; i++)
            asm("ld.global.nc.L1::no_allocate.v2.u32 {%0, %1}, [%2];" : "=r"(w[2 * i]), "=r"(w[2 * i + 1]) : "l"(p + 8 * i));
    } else {
#pragma unroll
        for (int i = 0; i < BITS; i++) asm("ld.global.nc.L1::no_allocate.u32 %0, [%1];" : "=r"(w[i]) : "l"(p + 4 * i));
    }
}

/* Unit u's 32 values of token row xr, each scaled for its element's field
 * position; returns their plain sum (pairwise, a fixed order). */
__device__ __forceinline__ float af_load_x(const char *xr, int xt, long long u, float (&xs)[32]) {
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
        unsigned h[16];
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const uint4 r = __ldg(p + i);
            h[4 * i] = r.x, h[4 * i + 1] = r.y, h[4 * i + 2] = r.z, h[4 * i + 3] = r.w;
        }
        if (xt == QN_KT_F16) {
#pragma unroll
            for (int i = 0; i < 16; i++)
                v[2 * i] = qn_f16_bits_to_f32((qn_u16)h[i]), v[2 * i + 1] = qn_f16_bits_to_f32((qn_u16)(h[i] >> 16));
        } else {
#pragma unroll
            for (int i = 0; i < 16; i++) v[2 * i] = __uint_as_float(h[i] << 16), v[2 * i + 1] = __uint_as_float(h[i] & 0xFFFF0000u);
        }
    }
    float s[16];
#pragma unroll
    for (int i = 0; i < 16; i++) s[i] = v[2 * i] + v[2 * i + 1];
#pragma unroll
    for (int i = 0; i < 8; i++) s[i] = s[2 * i] + s[2 * i + 1];
#pragma unroll
    for (int i = 0; i < 4; i++) s[i] = s[2 * i] + s[2 * i + 1];
    s[0] = (s[0] + s[1]) + (s[2] + s[3]);
#pragma unroll
    for (int e = 0; e < 32; e++) xs[e] = v[e] * __uint_as_float((unsigned)(212 - af_pos(e)) << 23);
    return s[0];
}

/* sum(q x) * 2^-64 over a unit, from its words and its scaled x. */
__device__ __forceinline__ float af_unit_dot(const unsigned (&w)[BITS], const float (&xs)[32]) {
    float acc = 0.0f;
#pragma unroll
    for (int e = 0; e < 32; e++) {
        const int i = af_word(e), sh = af_shift(e);
        const unsigned word = sh == 0 ? w[i] : sh == 12 ? w[i] >> 12 : __funnelshift_r(w[i], w[i + 1 < BITS ? i + 1 : i], 16);
        acc = fmaf(__uint_as_float(word & (((1u << BITS) - 1) << af_pos(e))), xs[e], acc);
    }
    return acc;
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

/* The block's NR rows (q, s, b) dotted with token row xr: per-warp sums in
 * red[warp][row], the block synchronised after. */
__device__ __forceinline__ void af_block_dot(const qn_affine_args &a, const char *const (&q)[NR],
                                             const char *const (&s)[NR], const char *const (&b)[NR], const char *xr,
                                             float (*red)[NR]) {
    const long long units = a.K >> 5;
    const int ssz = a.stype == QN_KT_F32 ? 4 : 2;
    float accs[NR], accb[NR];
#pragma unroll
    for (int r = 0; r < NR; r++) accs[r] = accb[r] = 0.0f;
    for (long long u = threadIdx.x; u < units; u += blockDim.x) {
        unsigned w[NR][BITS];
#pragma unroll
        for (int r = 0; r < NR; r++) af_load_q(q[r] + u * (4 * BITS), w[r]);
        const long long g = (u << 5) >> a.group_shift;
        float sc[NR], bi[NR];
#pragma unroll
        for (int r = 0; r < NR; r++) sc[r] = qn_load_f32(s[r] + g * ssz, a.stype), bi[r] = qn_load_f32(b[r] + g * ssz, a.stype);
        float xs[32];
        const float sx = af_load_x(xr, a.xt, u, xs);
#pragma unroll
        for (int r = 0; r < NR; r++) {
            accs[r] = fmaf(sc[r], af_unit_dot(w[r], xs), accs[r]);
            accb[r] = fmaf(bi[r], sx, accb[r]);
        }
    }
    float v[NR];
#pragma unroll
    for (int r = 0; r < NR; r++) v[r] = fmaf(accs[r], 0x1p64f, accb[r]);
    const int lane = threadIdx.x & 31;
    const float total = af_warp_sums(v, lane);
    if ((lane & (32 / NR - 1)) == 0) red[threadIdx.x >> 5][(lane >> (5 - af_log2(NR))) & (NR - 1)] = total;
    __syncthreads();
}

/* y = W x for a.nx tokens (dense) or one (slot, token) pair (routed); with
 * GLU y = act(G x) * (U x). Rows past N repeat the last and are not written. */
template <bool GLU, bool ROUTED>
__device__ __forceinline__ void af_matvec(const qn_affine_args &a) {
    constexpr int NO = GLU ? NR / 2 : NR; /* output rows a block */
    __shared__ float red[2][QN_AFFINE_WARPS][NR]; /* by token parity: one barrier a token */
    const long long n0 = (long long)blockIdx.x * NO;
    const char *x = (const char *)a.x;
    float *y = (float *)a.y;
    long long qe = 0, se = 0, be = 0;
    int nx = a.nx;
    if (ROUTED) {
        const int j = blockIdx.y, slot = j % a.top_k, tok = j / a.top_k;
        const int e = ((const int *)a.ids)[slot + tok * a.ids_tok];
        if (e < 0 || e >= a.n_experts) {
            if (threadIdx.x == 0 && blockIdx.x == 0) atomicOr((int *)a.flags, QN_FLAG_BAD_EXPERT);
            return;
        }
        qe = e * a.q_expert, se = e * a.s_expert, be = e * a.b_expert;
        x += slot * a.x_slot + tok * a.x_tok;
        y += (long long)j * a.N;
        nx = 1;
    }
    const char *q[NR], *s[NR], *b[NR];
#pragma unroll
    for (int r = 0; r < NR; r++) {
        const int m = GLU && r >= NO ? 1 : 0;
        const long long n = n0 + r % NO < a.N ? n0 + r % NO : a.N - 1;
        q[r] = (const char *)a.q[m] + qe + n * a.q_row;
        s[r] = (const char *)a.s[m] + se + n * a.s_row;
        b[r] = (const char *)a.b[m] + be + n * a.b_row;
    }
    for (int t = 0; t < nx; t++) {
        af_block_dot(a, q, s, b, x + t * a.x_tok, red[t & 1]);
        const int r = threadIdx.x;
        if (r < NO && n0 + r < a.N) {
            float g = 0.0f, u = 0.0f;
            for (int w = 0; w < (int)(blockDim.x >> 5); w++) {
                g += red[t & 1][w][r];
                if (GLU) u += red[t & 1][w][NO + r];
            }
            y[t * a.y_tok + n0 + r] = GLU ? qn_act_apply(a.act, g, 0.0f) * u : g;
        }
    }
}

extern "C" __global__ void __launch_bounds__(32 * QN_AFFINE_WARPS, 4) affine_matvec(const __grid_constant__ qn_affine_args a) {
    af_matvec<false, false>(a);
}
extern "C" __global__ void __launch_bounds__(32 * QN_AFFINE_WARPS, 4)
    affine_matvec_glu(const __grid_constant__ qn_affine_args a) {
    af_matvec<true, false>(a);
}
extern "C" __global__ void __launch_bounds__(32 * QN_AFFINE_WARPS, 4)
    affine_matvec_id(const __grid_constant__ qn_affine_args a) {
    af_matvec<false, true>(a);
}
extern "C" __global__ void __launch_bounds__(32 * QN_AFFINE_WARPS, 4)
    affine_matvec_glu_id(const __grid_constant__ qn_affine_args a) {
    af_matvec<true, true>(a);
}
