/* Quantized matrix-vector products for 1 to 8 tokens (decode, speculative
 * decoding): y[n, t] = sum_k W[n, k] x[k, t], dense, with a fused gate/up
 * activation (GLU), or expert-routed.
 *
 * Layout: W rows of K weights in one block type (the traits below), row_bytes
 * apart; routed: experts expert_bytes apart. x rows of K f32, f16 or bf16
 * values, 16-byte aligned. y f32 (qn_mv_args in matvec_args.cuh has the
 * strides).
 *
 * Grid: blockIdx.y is the routed form's (slot, token) pair (0 when dense);
 * a launch has at most as many blocks as fit on the GPU at once (fewer when
 * the rows would leave warps idle), and each warp of a pair's blocks takes
 * a contiguous share of its rows, to within one stage.
 * Bytes moved: the weights once, x once per block (from L2), y once; with
 * the norm in front, its inputs (a, b: 2 K floats a token, and the norm
 * weights) once per block from L2, x and the sum once.
 *
 * How a warp streams (version 7 in docs/PERF.md): every warp is its own
 * pipeline, with no barrier across the block once x is ready. Its rows go
 * through QN_MV_BUFS shared-memory buffers of ~3 KB in stages of rs whole
 * rows (or, for rows longer than a stage, kc blocks of one row), copied
 * with 16-byte cp.async by the warp's lanes whatever the block size, three
 * stages in flight while it decodes a fourth: 16 warps a multiprocessor
 * keep ~150 KB of loads in flight, which the copies hold without registers.
 * The quants are read back from shared memory at any alignment. A row's
 * units (traits::UPB a block) go to a team of lanes, 32 for long rows and
 * as few as leave a lane QN_MV_UPL units for short ones (a warp then takes
 * several rows at once, with less x reloaded and fewer shuffles a row); the
 * team's sums stay in registers until its row is done and are added by
 * shuffles.
 *
 * Quantized weights are dotted with x quantized once per block to int8 in
 * blocks of 32 (scale d = max|x| / 127, and the sum of the 32 int8 values),
 * four products per dp4a; the weight scales are applied once per 16 to 64
 * products. This is llama.cpp's scheme, so the result is exactly the dot of
 * W with the rounded x: |y - W x| <= sum |w| d / 2 beyond the f32 rounding.
 * Float weights (f32, f16, bf16) are dotted with x in f32, read from global
 * memory.
 *
 * A dense matvec of quantized weights may make its x itself from the norm
 * in front of it (qn_qmatmul_normed: the residual add and RMSNorm of a
 * decoder layer, qn_x_normed below): every block computes the norm of the
 * K-wide rows before quantizing them, one block stores the results.
 *
 * Launched as a programmatic dependent launch, a matvec after a matvec
 * starts while that one finishes and fetches its first weights before
 * waiting for it (unless those weights are what it writes).
 *
 * The module is compiled per block type (the define QN_BLOCK). */
#include "blocks.cuh"
#include "matvec_args.cuh"
#include "ops_math.cuh"

/* ---- shared memory and asynchronous copies */

/* N words from p, which is aligned to A bytes at least: unaligned data comes
 * from the aligned words around it with funnel shifts. Reads the word after
 * the data when A < 4 (the stage slots leave room for it). */
template <int N, int A>
__device__ __forceinline__ void qn_lds(const qn_u8 *p, unsigned w[N]) {
    if (A % 4 == 0) {
#pragma unroll
        for (int i = 0; i < N; i++) w[i] = ((const unsigned *)p)[i];
    } else {
        const unsigned off = (unsigned)__cvta_generic_to_shared(p) & 3u;
        const unsigned *q = (const unsigned *)(p - off);
        unsigned lo = q[0];
#pragma unroll
        for (int i = 0; i < N; i++) {
            unsigned hi = q[i + 1];
            w[i] = __funnelshift_r(lo, hi, 8u * off);
            lo = hi;
        }
    }
}
__device__ __forceinline__ unsigned qn_lds16(const qn_u8 *p) { return *(const unsigned short *)p; }

/* An f16 scale as a float in one instruction: a NaN's payload need not
 * survive (a NaN scale makes the row's sum NaN either way). */
__device__ __forceinline__ float qn_scale_f16(unsigned h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"((unsigned short)h));
    return f;
}

/* 16 bytes from global src to shared-window address dst, both 16-byte
 * aligned, without passing through registers. */
__device__ __forceinline__ void qn_cp16(unsigned dst, const qn_u8 *src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(src) : "memory");
}
__device__ __forceinline__ void qn_cp_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N>
__device__ __forceinline__ void qn_cp_wait() {
    asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

/* |i| < 2^22 as a float without I2F (a quarter-rate conversion): placed
 * in the mantissa of 1.5 * 2^23 and the 1.5 * 2^23 taken off again. */
__device__ __forceinline__ float qn_i2f(int i) { return __int_as_float(0x4B400000 + i) - 12582912.0f; }

/* ---- x as the units see it */

/* Where a token's x is: quantized in shared memory (q: K int8 values, then a
 * (d, sum of q) pair per 32) or, for float weights, as given. */
struct qn_xsrc {
    const qn_u8 *q;
    int K;
    const char *g;
    int xt;
};

/* One block of 32: q[i] holds values 4i..4i+3. */
struct qn_xq32 {
    int q[8];
    float d;
    int s;
};
/* Two blocks of 32 (a 64-value unit). */
struct qn_xq64 {
    int q[16];
    float d[2];
    int s[2];
};
/* Half h (16 values) of four consecutive blocks: the 128-value interleaved
 * halves of q2_K, q3_K and q6_K. s[j] sums the 16 values of block j. */
struct qn_xq16x4 {
    int q[16];
    float d[4];
    int s[4];
};
struct qn_xf8 {
    float v[8];
};

__device__ __forceinline__ void qn_x_block(const qn_xsrc &x, int e, int q[8], float *d, int *s) {
    const int4 a = *(const int4 *)(x.q + e), b = *(const int4 *)(x.q + e + 16);
    q[0] = a.x, q[1] = a.y, q[2] = a.z, q[3] = a.w, q[4] = b.x, q[5] = b.y, q[6] = b.z, q[7] = b.w;
    const int2 ds = *(const int2 *)(x.q + x.K + e / 32 * 8);
    *d = __int_as_float(ds.x);
    *s = ds.y;
}
/* e: the element of x the unit starts at; h: the half (16x4 form). */
__device__ __forceinline__ void qn_x_load(qn_xq32 &x, const qn_xsrc &src, int e, int h) {
    qn_x_block(src, e, x.q, &x.d, &x.s);
    (void)h;
}
__device__ __forceinline__ void qn_x_load(qn_xq64 &x, const qn_xsrc &src, int e, int h) {
    qn_x_block(src, e, x.q, &x.d[0], &x.s[0]);
    qn_x_block(src, e + 32, x.q + 8, &x.d[1], &x.s[1]);
    (void)h;
}
__device__ __forceinline__ void qn_x_load(qn_xq16x4 &x, const qn_xsrc &src, int e, int h) {
#pragma unroll
    for (int j = 0; j < 4; j++) {
        const int4 a = *(const int4 *)(src.q + e + 32 * j + 16 * h);
        x.q[4 * j] = a.x, x.q[4 * j + 1] = a.y, x.q[4 * j + 2] = a.z, x.q[4 * j + 3] = a.w;
        x.d[j] = *(const float *)(src.q + src.K + (e / 32 + j) * 8);
        int s = 0;
#pragma unroll
        for (int i = 0; i < 4; i++) s = __dp4a(x.q[4 * j + i], 0x01010101, s);
        x.s[j] = s;
    }
}
/* Eight consecutive x values of a token row from element i (a multiple of 8). */
__device__ __forceinline__ void qn_load_x8(const char *xr, int xt, long long i, float v[8]) {
    if (xt == QN_KT_F32) {
        float4 a = *(const float4 *)(xr + 4 * i), b = *(const float4 *)(xr + 4 * i + 16);
        v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
    } else {
        uint4 u = *(const uint4 *)(xr + 2 * i);
        unsigned w[4] = {u.x, u.y, u.z, u.w};
        for (int k = 0; k < 4; k++) {
            v[2 * k] = qn_bits_to_f32(w[k] & 0xFFFF, xt);
            v[2 * k + 1] = qn_bits_to_f32(w[k] >> 16, xt);
        }
    }
}
__device__ __forceinline__ void qn_x_load(qn_xf8 &x, const qn_xsrc &src, int e, int h) {
    qn_load_x8(src.g, src.xt, e, x.v);
    (void)h;
}

/* ---- the block types' units: traits QK, BYTES, A (alignment a block can
 * rely on), UPB (units a block), UE (values a unit), X (its x), xpos (where
 * unit u's x starts, and its half for the 16x4 form), and dot(block, u, x):
 * the unit's dot product with x, scales applied. */

/* (The dot helpers keep two chains of dp4a, half as long to wait for.) */
__device__ __forceinline__ int qn_dot_nib(const unsigned w[4], const int q[8]) {
    int lo = 0, hi = 0;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        lo = __dp4a((int)(w[i] & 0x0F0F0F0Fu), q[i], lo);
        hi = __dp4a((int)((w[i] >> 4) & 0x0F0F0F0Fu), q[i + 4], hi);
    }
    return lo + hi;
}
/* Sixteen nibbles through a level table (iq4_nl, iq4_xs, mxfp4), dotted with q. */
__device__ __forceinline__ int qn_dot_lut(const unsigned w[4], const unsigned t[4], const int q[8]) {
    int lo = 0, hi = 0;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        lo = __dp4a((int)qn_lut16(w[i] & 0x0F0F0F0Fu, t), q[i], lo);
        hi = __dp4a((int)qn_lut16((w[i] >> 4) & 0x0F0F0F0Fu, t), q[i + 4], hi);
    }
    return lo + hi;
}

/* Blocks of 32 are a unit each. */
#define QN_MV_UNIT32                                  \
    enum { QK = 32, UPB = 1, UE = 32 };               \
    typedef qn_xq32 X;                                \
    static __device__ int xoff(int u) { return 0 * u; } \
    static __device__ int xhalf(int u) { return u; }

struct qn_mv_q4_0 {
    QN_MV_UNIT32
    enum { BYTES = 18, A = 2 };
    static __device__ float dot(const qn_u8 *b, int u, const X &x) {
        unsigned w[4];
        qn_lds<4, A>(b + 2, w);
        return qn_scale_f16(qn_lds16(b)) * (x.d * qn_i2f(qn_dot_nib(w, x.q) - 8 * x.s));
    }
};

struct qn_mv_q4_1 {
    QN_MV_UNIT32
    enum { BYTES = 20, A = 4 };
    static __device__ float dot(const qn_u8 *b, int u, const X &x) {
        unsigned w[5];
        qn_lds<5, A>(b, w);
        return x.d * (qn_scale_f16(w[0] & 0xFFFF) * qn_i2f(qn_dot_nib(w + 1, x.q)) + qn_scale_f16(w[0] >> 16) * qn_i2f(x.s));
    }
};

/* q5_0 / q5_1: qh bit j is the fifth bit of element j. */
__device__ __forceinline__ int qn_dot_q5(unsigned qh, const unsigned w[4], const int q[8]) {
    int lo = 0, hi = 0;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        lo = __dp4a((int)((w[i] & 0x0F0F0F0Fu) | (qn_spread4(qh >> (4 * i)) << 4)), q[i], lo);
        hi = __dp4a((int)(((w[i] >> 4) & 0x0F0F0F0Fu) | (qn_spread4(qh >> (16 + 4 * i)) << 4)), q[i + 4], hi);
    }
    return lo + hi;
}

struct qn_mv_q5_0 {
    QN_MV_UNIT32
    enum { BYTES = 22, A = 2 };
    static __device__ float dot(const qn_u8 *b, int u, const X &x) {
        unsigned w[5];
        qn_lds<5, A>(b + 2, w);
        return qn_scale_f16(qn_lds16(b)) * (x.d * qn_i2f(qn_dot_q5(w[0], w + 1, x.q) - 16 * x.s));
    }
};

struct qn_mv_q5_1 {
    QN_MV_UNIT32
    enum { BYTES = 24, A = 4 };
    static __device__ float dot(const qn_u8 *b, int u, const X &x) {
        unsigned w[6];
        qn_lds<6, A>(b, w);
        return x.d * (qn_scale_f16(w[0] & 0xFFFF) * qn_i2f(qn_dot_q5(w[1], w + 2, x.q)) +
                      qn_scale_f16(w[0] >> 16) * qn_i2f(x.s));
    }
};

__device__ __forceinline__ int qn_dot_s8(const unsigned w[8], const int q[8]) {
    int lo = 0, hi = 0;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        lo = __dp4a((int)w[i], q[i], lo);
        hi = __dp4a((int)w[i + 4], q[i + 4], hi);
    }
    return lo + hi;
}

/* q8_0 / q8_1: 32 signed bytes after the scale (q8_1: and a sum, unused). */
template <int OFF, int BYTES_, int A_>
struct qn_mv_q8_32 {
    QN_MV_UNIT32
    enum { BYTES = BYTES_, A = A_ };
    static __device__ float dot(const qn_u8 *b, int u, const X &x) {
        unsigned w[8];
        qn_lds<8, A>(b + OFF, w);
        return qn_scale_f16(qn_lds16(b)) * (x.d * qn_i2f(qn_dot_s8(w, x.q)));
    }
};
typedef qn_mv_q8_32<2, 34, 2> qn_mv_q8_0;
typedef qn_mv_q8_32<4, 36, 4> qn_mv_q8_1;

/* 4-bit indices into a 16-value table: iq4_nl (f16 scale, then 16 bytes)
 * and mxfp4 (E8M0 scale, then 16 bytes). */
template <bool MXFP4>
struct qn_mv_lut4 {
    QN_MV_UNIT32
    enum { BYTES = MXFP4 ? 17 : 18, A = MXFP4 ? 1 : 2, OFF = MXFP4 ? 1 : 2 };
    static __device__ float dot(const qn_u8 *b, int u, const X &x) {
        unsigned w[4], t[4];
        qn_lds<4, A>(b + OFF, w);
        if (MXFP4) qn_mxfp4_table(t);
        else qn_iq4_table(t);
        /* E8M0 scale, halved: 2^(e - 128), subnormal for e < 2 */
        const unsigned e = b[0];
        const float d = MXFP4 ? __uint_as_float(e < 2 ? 0x00200000u << e : (e - 1) << 23) : qn_scale_f16(qn_lds16(b));
        return d * (x.d * qn_i2f(qn_dot_lut(w, t, x.q)));
    }
};
typedef qn_mv_lut4<false> qn_mv_iq4_nl;
typedef qn_mv_lut4<true> qn_mv_mxfp4;

/* Super-blocks of 256 whose sub-blocks of 32 sit whole in a 64-value unit. */
#define QN_MV_UNIT64                                  \
    enum { QK = 256, UPB = 4, UE = 64 };              \
    typedef qn_xq64 X;                                \
    static __device__ int xoff(int u) { return 64 * u; } \
    static __device__ int xhalf(int u) { return u; }

/* Byte k (a constant after unrolling, or not) of three words. */
__device__ __forceinline__ unsigned qn_byte3(const unsigned s[3], int k) {
    const unsigned w = k < 4 ? s[0] : k < 8 ? s[1] : s[2];
    return (w >> (8 * (k & 3))) & 0xFF;
}

/* q4_K / q5_K: the 6-bit scale and min of sub-block j from the 12 scale
 * bytes, as float factors d * sc and dmin * mn. */
__device__ __forceinline__ void qn_k4_scale(unsigned dd, const unsigned s[3], int j, float *dsc, float *dmn) {
    int sc, mn;
    if (j < 4) {
        sc = qn_byte3(s, j) & 63;
        mn = qn_byte3(s, j + 4) & 63;
    } else {
        sc = (qn_byte3(s, j + 4) & 0xF) | ((qn_byte3(s, j - 4) >> 6) << 4);
        mn = (qn_byte3(s, j + 4) >> 4) | ((qn_byte3(s, j) >> 6) << 4);
    }
    *dsc = qn_scale_f16(dd & 0xFFFF) * qn_i2f(sc);
    *dmn = qn_scale_f16(dd >> 16) * qn_i2f(mn);
}

/* q4_K / q5_K unit u: bytes 32u..32u+31 of the quants, low nibbles sub-block
 * 2u, high nibbles 2u + 1 (q5_K: fifth bits 2u and 2u + 1 of qh's bytes). */
template <bool Q5>
struct qn_mv_qk_affine {
    QN_MV_UNIT64
    enum { BYTES = Q5 ? 176 : 144, A = 4 };
    static __device__ float dot(const qn_u8 *b, int u, const X &x) {
        unsigned hd[4], w[8], hb[8];
        qn_lds<4, A>(b, hd);
        qn_lds<8, A>(b + (Q5 ? 48 : 16) + 32 * u, w);
        if (Q5) qn_lds<8, A>(b + 16, hb);
        int s0 = 0, s1 = 0;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            unsigned lo = w[i] & 0x0F0F0F0Fu, hi = (w[i] >> 4) & 0x0F0F0F0Fu;
            if (Q5) {
                lo |= ((hb[i] >> (2 * u)) & 0x01010101u) << 4;
                hi |= ((hb[i] >> (2 * u + 1)) & 0x01010101u) << 4;
            }
            s0 = __dp4a((int)lo, x.q[i], s0);
            s1 = __dp4a((int)hi, x.q[8 + i], s1);
        }
        float d0, m0, d1, m1;
        qn_k4_scale(hd[0], hd + 1, 2 * u, &d0, &m0);
        qn_k4_scale(hd[0], hd + 1, 2 * u + 1, &d1, &m1);
        return x.d[0] * (d0 * qn_i2f(s0) - m0 * qn_i2f(x.s[0])) + x.d[1] * (d1 * qn_i2f(s1) - m1 * qn_i2f(x.s[1]));
    }
};
typedef qn_mv_qk_affine<false> qn_mv_q4_K;
typedef qn_mv_qk_affine<true> qn_mv_q5_K;

struct qn_mv_q8_K {
    QN_MV_UNIT64
    enum { BYTES = 292, A = 4 };
    static __device__ float dot(const qn_u8 *b, int u, const X &x) {
        unsigned w[16];
        qn_lds<16, A>(b + 4 + 64 * u, w);
        return *(const float *)b * (x.d[0] * qn_i2f(qn_dot_s8(w, x.q)) + x.d[1] * qn_i2f(qn_dot_s8(w + 8, x.q + 8)));
    }
};

/* iq4_xs unit u: sub-blocks 2u and 2u + 1, 16 nibble bytes each (element j
 * low, j + 16 high); 6-bit scales from scales_l (nibbles) and scales_h. */
struct qn_mv_iq4_xs {
    QN_MV_UNIT64
    enum { BYTES = 136, A = 4 };
    static __device__ float dot(const qn_u8 *b, int u, const X &x) {
        unsigned hd[2], w[8], t[4];
        qn_lds<2, A>(b, hd);
        qn_lds<8, A>(b + 8 + 32 * u, w);
        qn_iq4_table(t);
        const unsigned sl = hd[1] >> (8 * u), sh = hd[0] >> (16 + 4 * u);
        const float d = qn_scale_f16(hd[0] & 0xFFFF);
        const int ls0 = (int)((sl & 0xF) | ((sh & 3) << 4)) - 32, ls1 = (int)(((sl >> 4) & 0xF) | (((sh >> 2) & 3) << 4)) - 32;
        return d * (x.d[0] * qn_i2f(ls0) * qn_i2f(qn_dot_lut(w, t, x.q)) + x.d[1] * qn_i2f(ls1) * qn_i2f(qn_dot_lut(w + 4, t, x.q + 8)));
    }
};

/* q2_K, q3_K, q6_K: 128-value halves n whose four 32-value rows jj share
 * bytes (element 128 n + 32 jj + l); unit u = (n = u / 2, h = u % 2) takes
 * l in [16h, 16h + 16) of the four rows, one 16-value scale each (group
 * 8 n + 2 jj + h). */
#define QN_MV_UNIT16X4                                \
    enum { QK = 256, UPB = 4, UE = 64 };              \
    typedef qn_xq16x4 X;                              \
    static __device__ int xoff(int u) { return 128 * (u >> 1); } \
    static __device__ int xhalf(int u) { return u & 1; }

struct qn_mv_q2_K {
    QN_MV_UNIT16X4
    enum { BYTES = 84, A = 4 };
    static __device__ float dot(const qn_u8 *b, int u, const X &x) {
        const int n = u >> 1, h = u & 1;
        unsigned w[4], sc[2], dd;
        qn_lds<4, A>(b + 16 + 32 * n + 16 * h, w);
        qn_lds<2, A>(b + 8 * n, sc);
        qn_lds<1, A>(b + 80, &dd);
        float sd = 0.0f, sm = 0.0f;
#pragma unroll
        for (int jj = 0; jj < 4; jj++) {
            int s = 0;
#pragma unroll
            for (int i = 0; i < 4; i++) s = __dp4a((int)((w[i] >> (2 * jj)) & 0x03030303u), x.q[4 * jj + i], s);
            const unsigned m = (sc[jj / 2] >> (8 * (2 * (jj % 2) + h))) & 0xFF;
            sd += x.d[jj] * qn_i2f((int)(m & 0xF) * s);
            sm += x.d[jj] * qn_i2f((int)(m >> 4) * x.s[jj]);
        }
        return qn_scale_f16(dd & 0xFFFF) * sd - qn_scale_f16(dd >> 16) * sm;
    }
};

struct qn_mv_q3_K {
    QN_MV_UNIT16X4
    enum { BYTES = 110, A = 2 };
    static __device__ float dot(const qn_u8 *b, int u, const X &x) {
        const int n = u >> 1, h = u & 1;
        unsigned w[4], hm[4], s[3];
        qn_lds<4, A>(b + 32 + 32 * n + 16 * h, w);
        qn_lds<4, A>(b + 16 * h, hm);
        qn_lds<3, A>(b + 96, s);
        float acc = 0.0f;
#pragma unroll
        for (int jj = 0; jj < 4; jj++) {
            int v = 0;
#pragma unroll
            for (int i = 0; i < 4; i++) {
                /* value = 2-bit field + 4 * (high bit) - 4 */
                unsigned q = ((w[i] >> (2 * jj)) & 0x03030303u) | (((hm[i] >> (4 * n + jj)) & 0x01010101u) << 2);
                v = __dp4a((int)q, x.q[4 * jj + i], v);
            }
            /* scale j = 8n + 2jj + h: low nibble of byte j % 8 (>> 4 for n = 1),
             * high two bits in byte 8 + j % 4 at 2 (j / 4) */
            const int k = 2 * jj + h;
            const unsigned lo = (qn_byte3(s, k) >> (4 * n)) & 0xF, hi = (qn_byte3(s, 8 + (k & 3)) >> (2 * (2 * n + jj / 2))) & 3;
            acc += x.d[jj] * qn_i2f(((int)(lo | (hi << 4)) - 32) * (v - 4 * x.s[jj]));
        }
        return qn_scale_f16(qn_lds16(b + 108)) * acc;
    }
};

struct qn_mv_q6_K {
    QN_MV_UNIT16X4
    enum { BYTES = 210, A = 2 };
    static __device__ float dot(const qn_u8 *b, int u, const X &x) {
        const int n = u >> 1, h = u & 1;
        unsigned a[4], c[4], hb[4], sc[2];
        qn_lds<4, A>(b + 64 * n + 16 * h, a);      /* rows 0 (low nibbles), 2 (high) */
        qn_lds<4, A>(b + 64 * n + 32 + 16 * h, c); /* rows 1 (low), 3 (high) */
        qn_lds<4, A>(b + 128 + 32 * n + 16 * h, hb);
        qn_lds<2, A>(b + 192 + 8 * n, sc);
        int s[4] = {0, 0, 0, 0};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            s[0] = __dp4a((int)((a[i] & 0x0F0F0F0Fu) | ((hb[i] << 4) & 0x30303030u)), x.q[i], s[0]);
            s[1] = __dp4a((int)((c[i] & 0x0F0F0F0Fu) | ((hb[i] << 2) & 0x30303030u)), x.q[4 + i], s[1]);
            s[2] = __dp4a((int)(((a[i] >> 4) & 0x0F0F0F0Fu) | (hb[i] & 0x30303030u)), x.q[8 + i], s[2]);
            s[3] = __dp4a((int)(((c[i] >> 4) & 0x0F0F0F0Fu) | ((hb[i] >> 2) & 0x30303030u)), x.q[12 + i], s[3]);
        }
        float acc = 0.0f;
#pragma unroll
        for (int jj = 0; jj < 4; jj++) {
            const int scale = (int)(signed char)(sc[jj / 2] >> (8 * (2 * (jj % 2) + h)));
            acc += x.d[jj] * qn_i2f(scale) * qn_i2f(s[jj] - 32 * x.s[jj]);
        }
        return qn_scale_f16(qn_lds16(b + 208)) * acc;
    }
};

/* Plain weights: units of 8 values (rows a multiple of 8), x in f32. */
template <int DT>
struct qn_mv_plain {
    enum { QK = 8, UPB = 1, UE = 8, BYTES = DT == QN_KT_F32 ? 32 : 16, A = DT == QN_KT_F32 ? 4 : 2 };
    typedef qn_xf8 X;
    static __device__ int xoff(int u) { return 0 * u; }
    static __device__ int xhalf(int u) { return u; }
    static __device__ float dot(const qn_u8 *b, int u, const X &x) {
        unsigned w[BYTES / 4];
        qn_lds<BYTES / 4, A>(b, w);
        float s = 0.0f;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const unsigned bits = DT == QN_KT_F32 ? w[i % (BYTES / 4)] : (w[i / 2] >> (16 * (i % 2))) & 0xFFFF;
            s = fmaf(qn_bits_to_f32(bits, DT), x.v[i], s);
        }
        return s;
    }
};
typedef qn_mv_plain<QN_KT_F32> qn_mv_f32;
typedef qn_mv_plain<QN_KT_F16> qn_mv_f16;
typedef qn_mv_plain<QN_KT_BF16> qn_mv_bf16;

/* ---- x quantization: each group of four threads takes 32 values, which
 * load(t, e, ok, v) gives as v[0..7] = x[e .. e + 8) of token t (ok: the
 * thread's values are in the row; when not, e is 0 and v is not used). */
template <typename L>
__device__ __forceinline__ void qn_x_quantize(int nx, int K, qn_u8 *xs, L load) {
    const int per = K / 8, xq = (int)qn_mv_xq_bytes(K);
    for (int t = 0; t < nx; t++)
        for (int base = 0; base < per; base += QN_MV_THREADS) {
            /* every thread of a warp takes part in the shuffles */
            const int i = base + threadIdx.x;
            const bool ok = i < per;
            const int e = ok ? 8 * i : 0;
            float v[8];
            load(t, e, ok, v);
            float amax = 0.0f;
#pragma unroll
            for (int k = 0; k < 8; k++) amax = fmaxf(amax, fabsf(v[k]));
            amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 1));
            amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 2));
            const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
            int q[8], s = 0;
#pragma unroll
            for (int k = 0; k < 8; k++) {
                q[k] = __float2int_rn(v[k] * inv);
                s += q[k];
            }
            s += __shfl_xor_sync(0xffffffffu, s, 1);
            s += __shfl_xor_sync(0xffffffffu, s, 2);
            if (!ok) continue;
            qn_u8 *row = xs + t * xq;
            *(uint2 *)(row + e) = make_uint2(QN_PACK4(q[0], q[1], q[2], q[3]), QN_PACK4(q[4], q[5], q[6], q[7]));
            if (threadIdx.x % 4 == 0) *(int2 *)(row + K + e / 32 * 8) = make_int2(__float_as_int(amax / 127.0f), s);
        }
}

__device__ __forceinline__ void qn_f32x8(const float *p, float v[8]) {
    const float4 a = *(const float4 *)p, b = *(const float4 *)(p + 4);
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}

/* The norm in front of the product (qn_qmatmul_normed), token by token:
 *   sum = a + rms_norm(b) * (b_w + w_off)     (no b: sum = a)
 *   x   = rms_norm(sum) * (w + w_off)
 * with the arithmetic of the norm kernels (norm.cu), then quantized as any
 * x. Every block computes it for itself (two reductions over K a token:
 * cheaper than the launch and the latency chain of a norm kernel of its
 * own); block (0, 0) stores x (at a.x, for later products of the same
 * input) and sum. a, b and the weights are reread from cache by each pass
 * rather than held, so any K fits. */
__device__ void qn_x_normed(const qn_mv_args &m, int nx, int K, qn_u8 *xs) {
    __shared__ float red[32];
    const int per = K / 8, xq = (int)qn_mv_xq_bytes(K);
    const bool store = blockIdx.x == 0 && blockIdx.y == 0;
    const float *bw = (const float *)m.pbw, *w = (const float *)m.pw;
    for (int t = 0; t < nx; t++) {
        const float *pa = (const float *)(m.pa + t * m.pa_nb1);
        const float *pb = m.pb ? (const float *)(m.pb + t * m.pb_nb1) : nullptr;
        float *ps = m.ps ? (float *)(m.ps + t * m.ps_nb1) : nullptr, *px = (float *)(m.x + t * m.x_nb1);
        float sb = 1.0f;
        if (pb) {
            float acc = 0.0f;
            for (int i = threadIdx.x; i < per; i += QN_MV_THREADS) {
                float v[8];
                qn_f32x8(pb + 8 * i, v);
#pragma unroll
                for (int k = 0; k < 8; k++) acc += v[k] * v[k];
            }
            sb = qn_norm_scale(QN_NORM_RMS, qn_block_sum(acc, red), K, m.eps);
        }
        auto sum8 = [&](int e, float h[8]) {
            qn_f32x8(pa + e, h);
            if (pb) {
                float v[8], g[8];
                qn_f32x8(pb + e, v);
                qn_f32x8(bw + e, g);
#pragma unroll
                for (int k = 0; k < 8; k++) {
                    float o = v[k] * sb;
                    o *= g[k] + m.w_off;
                    h[k] += o;
                }
            }
        };
        float acc = 0.0f;
        for (int i = threadIdx.x; i < per; i += QN_MV_THREADS) {
            float h[8];
            sum8(8 * i, h);
#pragma unroll
            for (int k = 0; k < 8; k++) acc += h[k] * h[k];
        }
        const float ss = qn_norm_scale(QN_NORM_RMS, qn_block_sum(acc, red), K, m.eps);
        qn_x_quantize(1, K, xs + t * xq, [&](int, int e, bool ok, float v[8]) {
            float h[8], g[8];
            sum8(e, h);
            qn_f32x8(w + e, g);
#pragma unroll
            for (int k = 0; k < 8; k++) {
                float o = h[k] * ss;
                v[k] = o * (g[k] + m.w_off);
            }
            if (store && ok) {
                if (ps) {
                    *(float4 *)(ps + e) = make_float4(h[0], h[1], h[2], h[3]);
                    *(float4 *)(ps + e + 4) = make_float4(h[4], h[5], h[6], h[7]);
                }
                *(float4 *)(px + e) = make_float4(v[0], v[1], v[2], v[3]);
                *(float4 *)(px + e + 4) = make_float4(v[4], v[5], v[6], v[7]);
            }
        });
    }
}

/* ---- the kernel */

/* NX: the tokens the kernel is built for (1, or QN_MV_TOKENS for any
 * number up to it: a.nx); their sums stay in registers. */
template <typename B, int NX>
__device__ void qn_matvec(const qn_mv_args &a) {
    extern __shared__ __align__(16) qn_u8 qn_mv_smem_[];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const bool quant = B::QK >= 32;
    const int nx = NX == 1 ? 1 : a.nx;

    /* the pair's weights, x and y */
    const qn_u8 *w = (const qn_u8 *)a.w, *up = (const qn_u8 *)a.up;
    const char *x = (const char *)a.x;
    float *y = (float *)a.y;
    long long x_nb1 = a.x_nb1;
    if (a.ids || !a.early) QN_GRID_DEPS_WAIT(); /* the ids, or weights the kernel before may write */
    if (a.ids) {
        const int j = blockIdx.y, slot = j % a.top_k, tok = j / a.top_k;
        const int e = ((const int *)a.ids)[slot + tok * a.ids_nb1];
        if (e < 0 || e >= a.n_experts) {
            if (threadIdx.x == 0 && blockIdx.x == 0) atomicOr((int *)a.flags, QN_FLAG_BAD_EXPERT);
            return;
        }
        w += e * a.expert_bytes;
        if (up) up += e * a.expert_bytes;
        x += slot * a.x_slot_nb + tok * a.x_nb1;
        x_nb1 = 0;
        y += (long long)j * a.N;
    }
    const int K = a.bpr * B::QK, xq = quant ? (int)qn_mv_xq_bytes(K) : 0;

    /* This warp's rows: groups g0 .. g1 - 1 of rs rows (a contiguous share
     * of the pair's groups, even to within one), each in nch chunks of kc
     * blocks; a stage is one chunk of one group. A stage copies a range of
     * bytes per weight tensor when rows are packed (row_bytes is the row's
     * size), else one per row; a range's slot in the stage buffer starts at
     * the 16-byte boundary at or below the range, so row r's block b sits at
     * slot + (start & 15) + r row_bytes (packed) + b BYTES. */
    const bool packed = a.row_bytes == (long long)a.bpr * B::BYTES;
    const int slot_bytes = (int)qn_mv_seg_bytes(qn_mv_range(a.row_bytes, a.bpr, a.kc, a.rs, B::BYTES));
    const int buf_bytes = (int)qn_mv_buf_bytes(&a, B::BYTES);
    qn_u8 *xs = qn_mv_smem_, *bufs = xs + xq * nx + warp * QN_MV_BUFS * buf_bytes;
    const unsigned bufs_at = (unsigned)__cvta_generic_to_shared(bufs); /* for cp.async */
    const long long groups = (a.N + a.rs - 1) / a.rs, nw = (long long)gridDim.x * QN_MV_WARPS;
    const long long gw = (long long)blockIdx.x * QN_MV_WARPS + warp;
    const long long g0 = groups * gw / nw, g1 = groups * (gw + 1) / nw;
    const int nch = (a.bpr + a.kc - 1) / a.kc, nst = (int)(g1 - g0) * nch;
    struct stage {
        long long row0, off; /* the first row; the chunk's first byte from a tensor's start */
        int rows, blocks, c, len;
    };
    /* Stage (group g0 + gi, chunk c). Both loops below go through the
     * stages in order, so their cursors (gi, c) step by one (next) and the
     * loops need no division: this bookkeeping, a copy's address and a
     * stage's, is most of the instructions a small block type costs. */
    auto stage_of = [&](int gi, int c) -> stage {
        const int kleft = a.bpr - c * a.kc;
        stage st;
        st.row0 = (g0 + gi) * a.rs;
        st.rows = a.N - st.row0 < a.rs ? (int)(a.N - st.row0) : a.rs;
        st.blocks = kleft < a.kc ? kleft : a.kc;
        st.c = c;
        st.off = st.row0 * a.row_bytes + (long long)c * a.kc * B::BYTES;
        st.len = (packed ? (st.rows - 1) * (int)a.row_bytes : 0) + st.blocks * B::BYTES;
        return st;
    };
    auto next = [&](int &gi, int &c) {
        if (++c == nch) c = 0, gi++;
    };
    /* range j: gate (j < per) or up, row j % per (per: 1 when packed) */
    auto range_src = [&](const stage &st, int j, int per) -> const qn_u8 * {
        return (j < per ? w : up) + st.off + (long long)(j < per ? j : j - per) * a.row_bytes;
    };
    int is = 0, igi = 0, ic = 0; /* the next stage to issue */
    auto issue = [&]() {
        if (is < nst) {
            const stage st = stage_of(igi, ic);
            const int per = packed ? 1 : st.rows, ranges = (a.glu ? 2 : 1) * per;
            const int buf = (is % QN_MV_BUFS) * buf_bytes;
            for (int j = 0; j < ranges; j++) {
                const qn_u8 *src = range_src(st, j, per), *end = (const qn_u8 *)(j < per ? a.w_end : a.up_end);
                const unsigned mis = (unsigned)(unsigned long long)src & 15u;
                const qn_u8 *base = src - mis;
                const int pieces = (int)(mis + st.len + 15) / 16, to = buf + j * slot_bytes;
                if (end - base >= 16LL * pieces) {
                    for (int p = lane; p < pieces; p += 32) qn_cp16(bufs_at + to + 16 * p, base + 16 * p);
                } else { /* the tensor's last bytes: no read past its end */
                    for (int p = lane; p < pieces; p += 32) {
                        const qn_u8 *from = base + 16 * p;
                        const long long n = end - from;
                        if (n >= 16) qn_cp16(bufs_at + to + 16 * p, from);
                        else
                            for (int b = 0; b < n; b++) bufs[to + 16 * p + b] = from[b];
                    }
                }
            }
            next(igi, ic);
            is++;
        }
        qn_cp_commit();
    };

    /* Before the wait on the kernel before, unless it may write them: the
     * first stages' weights. */
    for (int s = 0; s < QN_MV_BUFS - 1; s++) issue();
    QN_GRID_DEPS_WAIT(); /* x, and y's old readers */
    QN_GRID_DEPS_RELEASE();
    if (quant && a.norm) qn_x_normed(a, nx, K, xs);
    else if (quant)
        qn_x_quantize(nx, K, xs, [&](int t, int e, bool, float v[8]) { qn_load_x8(x + t * x_nb1, a.xt, e, v); });
    __syncthreads();

    /* A team of `team` lanes a row: lane tl of team tm takes units tl, tl +
     * team, ... of rows tm, tm + 32 / team, ... of each stage, and keeps its
     * sums for each token in registers (across the chunks of a row longer
     * than a stage, when rs = 1 and the warp is one team). A row's team
     * adds its sums with shuffles in a fixed order: results do not depend on
     * timing. */
    const int T = a.team, tm = lane / T, tl = lane % T, rows_at_once = 32 / T;
    float sg[NX], su[NX];
#pragma unroll
    for (int t = 0; t < NX; t++) sg[t] = su[t] = 0.0f;
    auto mis = [](const qn_u8 *p) { return (unsigned)(unsigned long long)p & 15u; };
    int cgi = 0, cc = 0; /* the stage in use */
    for (int s = 0; s < nst; s++) {
        qn_cp_wait<QN_MV_BUFS - 2>(); /* this lane's copies of stage s are done */
        __syncwarp();                 /* the warp's are; stage s - 1's buffer is free */
        issue();                      /* stage s + QN_MV_BUFS - 1 */
        const stage st = stage_of(cgi, cc);
        next(cgi, cc);
        const qn_u8 *buf = bufs + (s % QN_MV_BUFS) * buf_bytes;
        const int units = st.blocks * B::UPB, e0 = st.c * a.kc * B::QK, per = packed ? 1 : st.rows;
        /* packed: one range a tensor, row i at i row_bytes from its start */
        const qn_u8 *pg = buf + mis(w + st.off), *pu = a.glu ? buf + slot_bytes + mis(up + st.off) : pg;
        for (int i0 = 0; i0 < st.rows; i0 += rows_at_once) {
            const int i = i0 + tm;
            if (i < st.rows) {
                const int ju = i + per; /* unpacked: the row's up range */
                const unsigned rel = (unsigned)i * (unsigned)a.row_bytes;
                const qn_u8 *rg = packed ? pg + rel : buf + i * slot_bytes + mis(range_src(st, i, per));
                const qn_u8 *ru = !a.glu ? rg : packed ? pu + rel : buf + ju * slot_bytes + mis(range_src(st, ju, per));
                for (int k = tl; k < units; k += T) {
                    const int blk = k / B::UPB, u = k % B::UPB;
#pragma unroll
                    for (int t = 0; t < NX; t++) {
                        if (t < nx) {
                            const qn_xsrc src = {xs + t * xq, K, x + t * x_nb1, a.xt};
                            typename B::X xv;
                            qn_x_load(xv, src, e0 + blk * B::QK + B::xoff(u), B::xhalf(u));
                            sg[t] += B::dot(rg + blk * B::BYTES, u, xv);
                            if (a.glu) su[t] += B::dot(ru + blk * B::BYTES, u, xv);
                        }
                    }
                }
            }
            if (st.c == nch - 1) { /* the rows are whole: the teams' sums */
#pragma unroll
                for (int t = 0; t < NX; t++) {
                    if (t < nx) {
                        float g = sg[t], v = su[t];
                        for (int o = T / 2; o > 0; o /= 2) {
                            g += __shfl_xor_sync(0xffffffffu, g, o);
                            if (a.glu) v += __shfl_xor_sync(0xffffffffu, v, o);
                        }
                        if (i < st.rows && tl == 0) y[t * a.y_nb1 + st.row0 + i] = a.glu ? qn_act_apply(a.act, g, 0.0f) * v : g;
                    }
                    sg[t] = su[t] = 0.0f;
                }
            }
        }
    }
}

/* matvec_<type>: one token; matvec_<type>_tokens: up to QN_MV_TOKENS. */
#define MATVEC(name)                                                                                                 \
    extern "C" __global__ void __launch_bounds__(QN_MV_THREADS, QN_MV_BLOCKS_SM) matvec_##name(const qn_mv_args a) { \
        qn_matvec<QN_CAT(qn_mv_, name), 1>(a);                                                                       \
    }                                                                                                                \
    extern "C" __global__ void __launch_bounds__(QN_MV_THREADS, QN_MV_BLOCKS_SM)                                     \
        matvec_##name##_tokens(const qn_mv_args a) {                                                                 \
        qn_matvec<QN_CAT(qn_mv_, name), QN_MV_TOKENS>(a);                                                            \
    }
#define MATVEC_EXPAND(name) MATVEC(name)
MATVEC_EXPAND(QN_BLOCK)
