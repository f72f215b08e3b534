/* ggml's quantized blocks, as the GPU reads them.
 *
 * Each block type is a struct of traits: a block of QK elements and BYTES
 * bytes is read in PARTS parts; part p yields PE quants q[e] (exact small
 * integers, as floats) with NS scales d[] and, for affine types (HAS_M),
 * NS offsets m[], so that element e of the part is
 *     w = d[s] * q[e] (+ m[s]),   s = e / (PE / NS),
 * stored at position pos(p, e) of the block. The multiply and the add are
 * the operations ggml's reference dequantizers do, in the same order, so a
 * dequantizing kernel that evaluates them without contraction gives ggml's
 * bits; a dot product instead factors the scales out of its sums.
 *
 * Parts are cut along the bytes, not the positions: a lane reading part p
 * reads each byte it needs once (nibble types keep element j and j+16 in one
 * byte; the K-quants interleave 32-element rows). Quants become floats
 * without integer-to-float instructions (a quarter-rate unit): a byte placed
 * under the exponent of 2^23 is that integer plus 2^23 (bytef).
 *
 * Alignment: a block starts at a multiple of its BYTES from an address the op
 * checked to be aligned to BYTES' lowest set bit, so 18-byte blocks are only
 * 2-byte aligned and read with 16-bit loads (ld4_a2), mxfp4's 17-byte blocks
 * with byte loads. */
#ifndef QN_KERNELS_BLOCKS_CUH
#define QN_KERNELS_BLOCKS_CUH

#include "tensor.h"

typedef unsigned char qn_u8;

/* ---- loads */
__device__ __forceinline__ unsigned qn_ld2(const qn_u8 *p) { return *(const unsigned short *)p; }
__device__ __forceinline__ unsigned qn_ld4(const qn_u8 *p) { return *(const unsigned *)p; }
__device__ __forceinline__ unsigned qn_ld4_a2(const qn_u8 *p) { return qn_ld2(p) | (qn_ld2(p + 2) << 16); }
__device__ __forceinline__ unsigned qn_ld4_a1(const qn_u8 *p) {
    return (unsigned)p[0] | ((unsigned)p[1] << 8) | ((unsigned)p[2] << 16) | ((unsigned)p[3] << 24);
}
__device__ __forceinline__ float qn_h2f_dev(unsigned h) { return qn_f16_bits_to_f32((qn_u16)h); }

/* Byte k of w as a float, minus `bias`: exact for every byte. */
__device__ __forceinline__ float qn_bytef(unsigned w, int k, float bias) {
    return __uint_as_float(__byte_perm(w, 0x4B000000u, 0x7440u | (unsigned)k)) - (8388608.0f + bias);
}

/* Four bits b0..b3 of x spread to bit 0 of bytes 0..3. */
__device__ __forceinline__ unsigned qn_spread4(unsigned x) { return ((x & 0xFu) * 0x00204081u) & 0x01010101u; }

/* Four table lookups at once: each byte of idx (0..15) picks a byte of the
 * 16-byte table tab[4]; two byte permutes and a select, no memory. */
__device__ __forceinline__ unsigned qn_lut16(unsigned idx, const unsigned tab[4]) {
    unsigned y = (idx & 0x07070707u) | ((idx & 0x07070707u) >> 4);
    unsigned sel = (y & 0xFFu) | ((y >> 8) & 0xFF00u);
    unsigned lo = __byte_perm(tab[0], tab[1], sel), hi = __byte_perm(tab[2], tab[3], sel);
    unsigned high = ((idx >> 3) & 0x01010101u) * 0xFFu;
    return (lo & ~high) | (hi & high);
}

#define QN_PACK4(a, b, c, d) \
    ((unsigned)(qn_u8)(a) | ((unsigned)(qn_u8)(b) << 8) | ((unsigned)(qn_u8)(c) << 16) | ((unsigned)(qn_u8)(d) << 24))

/* The 16 levels of iq4_nl / iq4_xs, and of mxfp4 (E2M1 values times two; the
 * block scale carries the half). */
__device__ __forceinline__ void qn_iq4_table(unsigned t[4]) {
    t[0] = QN_PACK4(-127, -104, -83, -65);
    t[1] = QN_PACK4(-49, -35, -22, -10);
    t[2] = QN_PACK4(1, 13, 25, 38);
    t[3] = QN_PACK4(53, 69, 89, 113);
}
__device__ __forceinline__ void qn_mxfp4_table(unsigned t[4]) {
    t[0] = QN_PACK4(0, 1, 2, 3);
    t[1] = QN_PACK4(4, 6, 8, 12);
    t[2] = QN_PACK4(0, -1, -2, -3);
    t[3] = QN_PACK4(-4, -6, -8, -12);
}

/* Four signed bytes to q[0..3]. */
__device__ __forceinline__ void qn_s8x4(unsigned w, float *q) {
    for (int k = 0; k < 4; k++) q[k] = qn_bytef(w ^ 0x80808080u, k, 128.0f);
}
/* Four unsigned bytes minus bias to q[0..3]. */
__device__ __forceinline__ void qn_u8x4(unsigned w, float bias, float *q) {
    for (int k = 0; k < 4; k++) q[k] = qn_bytef(w, k, bias);
}

/* ---- 32-element blocks: two parts of 16 */

/* Nibble layout (q4_0, q4_1, q5_0, q5_1, iq4_nl, mxfp4): byte j holds element
 * j (low nibble) and j + 16 (high). Part p takes bytes 8p..8p+7: elements
 * 8p..8p+7 and 16+8p..16+8p+7. */
__device__ __forceinline__ int qn_pos_nibble32(int p, int e) { return 8 * p + e + (e >= 8 ? 8 : 0); }

/* Eight nibble bytes as (low nibbles, high nibbles) words, plus optional
 * fifth bits (h_lo, h_hi: bit 4 per byte), to q[16] minus bias. */
__device__ __forceinline__ void qn_nibbles16(unsigned w0, unsigned w1, unsigned h_lo0, unsigned h_lo1, unsigned h_hi0,
                                             unsigned h_hi1, float bias, float q[16]) {
    qn_u8x4((w0 & 0x0F0F0F0Fu) | h_lo0, bias, q);
    qn_u8x4((w1 & 0x0F0F0F0Fu) | h_lo1, bias, q + 4);
    qn_u8x4(((w0 >> 4) & 0x0F0F0F0Fu) | h_hi0, bias, q + 8);
    qn_u8x4(((w1 >> 4) & 0x0F0F0F0Fu) | h_hi1, bias, q + 12);
}

struct qn_q4_0 {
    enum { QK = 32, BYTES = 18, PARTS = 2, PE = 16, NS = 1, HAS_M = 0 };
    static __device__ int pos(int p, int e) { return qn_pos_nibble32(p, e); }
    static __device__ void unpack(const qn_u8 *b, int p, float q[16], float d[1], float m[1]) {
        qn_nibbles16(qn_ld4_a2(b + 2 + 8 * p), qn_ld4_a2(b + 6 + 8 * p), 0, 0, 0, 0, 8.0f, q);
        d[0] = qn_h2f_dev(qn_ld2(b));
        (void)m;
    }
};

struct qn_q4_1 {
    enum { QK = 32, BYTES = 20, PARTS = 2, PE = 16, NS = 1, HAS_M = 1 };
    static __device__ int pos(int p, int e) { return qn_pos_nibble32(p, e); }
    static __device__ void unpack(const qn_u8 *b, int p, float q[16], float d[1], float m[1]) {
        qn_nibbles16(qn_ld4(b + 4 + 8 * p), qn_ld4(b + 8 + 8 * p), 0, 0, 0, 0, 0.0f, q);
        unsigned dm = qn_ld4(b);
        d[0] = qn_h2f_dev(dm & 0xFFFF);
        m[0] = qn_h2f_dev(dm >> 16);
    }
};

/* Fifth bits of q5_0/q5_1: bit j of qh belongs to element j. */
__device__ __forceinline__ void qn_q5_nibbles(unsigned qh, unsigned w0, unsigned w1, int p, float bias, float q[16]) {
    unsigned lo = qh >> (8 * p), hi = qh >> (16 + 8 * p);
    qn_nibbles16(w0, w1, qn_spread4(lo) << 4, qn_spread4(lo >> 4) << 4, qn_spread4(hi) << 4,
                 qn_spread4(hi >> 4) << 4, bias, q);
}

struct qn_q5_0 {
    enum { QK = 32, BYTES = 22, PARTS = 2, PE = 16, NS = 1, HAS_M = 0 };
    static __device__ int pos(int p, int e) { return qn_pos_nibble32(p, e); }
    static __device__ void unpack(const qn_u8 *b, int p, float q[16], float d[1], float m[1]) {
        qn_q5_nibbles(qn_ld4_a2(b + 2), qn_ld4_a2(b + 6 + 8 * p), qn_ld4_a2(b + 10 + 8 * p), p, 16.0f, q);
        d[0] = qn_h2f_dev(qn_ld2(b));
        (void)m;
    }
};

struct qn_q5_1 {
    enum { QK = 32, BYTES = 24, PARTS = 2, PE = 16, NS = 1, HAS_M = 1 };
    static __device__ int pos(int p, int e) { return qn_pos_nibble32(p, e); }
    static __device__ void unpack(const qn_u8 *b, int p, float q[16], float d[1], float m[1]) {
        qn_q5_nibbles(qn_ld4(b + 4), qn_ld4(b + 8 + 8 * p), qn_ld4(b + 12 + 8 * p), p, 0.0f, q);
        unsigned dm = qn_ld4(b);
        d[0] = qn_h2f_dev(dm & 0xFFFF);
        m[0] = qn_h2f_dev(dm >> 16);
    }
};

/* q8_0 / q8_1: 32 signed bytes after the scale; part p is elements 16p.. */
template <int OFF, int BYTES_, bool A4>
struct qn_q8_32 {
    enum { QK = 32, BYTES = BYTES_, PARTS = 2, PE = 16, NS = 1, HAS_M = 0 };
    static __device__ int pos(int p, int e) { return 16 * p + e; }
    static __device__ void unpack(const qn_u8 *b, int p, float q[16], float d[1], float m[1]) {
        for (int k = 0; k < 4; k++) {
            const qn_u8 *w = b + OFF + 16 * p + 4 * k;
            qn_s8x4(A4 ? qn_ld4(w) : qn_ld4_a2(w), q + 4 * k);
        }
        d[0] = qn_h2f_dev(qn_ld2(b));
        (void)m;
    }
};
typedef qn_q8_32<2, 34, false> qn_q8_0;
typedef qn_q8_32<4, 36, true> qn_q8_1;

/* Sixteen nibbles (low nibbles of w0, w1, then high) through a level table,
 * to q[16]: iq4_nl's and mxfp4's quants. */
__device__ __forceinline__ void qn_lut_nibbles16(unsigned w0, unsigned w1, const unsigned t[4], float q[16]) {
    qn_s8x4(qn_lut16(w0 & 0x0F0F0F0Fu, t), q);
    qn_s8x4(qn_lut16(w1 & 0x0F0F0F0Fu, t), q + 4);
    qn_s8x4(qn_lut16((w0 >> 4) & 0x0F0F0F0Fu, t), q + 8);
    qn_s8x4(qn_lut16((w1 >> 4) & 0x0F0F0F0Fu, t), q + 12);
}

struct qn_iq4_nl {
    enum { QK = 32, BYTES = 18, PARTS = 2, PE = 16, NS = 1, HAS_M = 0 };
    static __device__ int pos(int p, int e) { return qn_pos_nibble32(p, e); }
    static __device__ void unpack(const qn_u8 *b, int p, float q[16], float d[1], float m[1]) {
        unsigned t[4];
        qn_iq4_table(t);
        qn_lut_nibbles16(qn_ld4_a2(b + 2 + 8 * p), qn_ld4_a2(b + 6 + 8 * p), t, q);
        d[0] = qn_h2f_dev(qn_ld2(b));
        (void)m;
    }
};

struct qn_mxfp4 {
    enum { QK = 32, BYTES = 17, PARTS = 2, PE = 16, NS = 1, HAS_M = 0 };
    static __device__ int pos(int p, int e) { return qn_pos_nibble32(p, e); }
    static __device__ void unpack(const qn_u8 *b, int p, float q[16], float d[1], float m[1]) {
        unsigned t[4];
        qn_mxfp4_table(t);
        qn_lut_nibbles16(qn_ld4_a1(b + 1 + 8 * p), qn_ld4_a1(b + 5 + 8 * p), t, q);
        /* E8M0 scale, halved: 2^(e - 128), subnormal for e < 2 */
        unsigned e = b[0];
        d[0] = __uint_as_float(e < 2 ? 0x00200000u << e : (e - 1) << 23);
        (void)m;
    }
};

/* ---- 256-element super-blocks: eight parts of 32 */

/* The 6-bit scale and min of sub-block j of q4_K / q5_K. */
__device__ __forceinline__ void qn_scale_min_k4(const qn_u8 *s, int j, int *sc, int *mn) {
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* q4_K / q5_K: 64-element chunk j holds sub-blocks 2j (low nibbles of its 32
 * bytes) and 2j+1 (high nibbles). Part p = (j, half h): bytes 16h..16h+15 of
 * the chunk: elements 64j+16h+e (e < 16) and 64j+32+16h+(e-16). */
template <bool Q5>
struct qn_qk_affine {
    enum { QK = 256, BYTES = Q5 ? 176 : 144, PARTS = 8, PE = 32, NS = 2, HAS_M = 1 };
    static __device__ int pos(int p, int e) { return 64 * (p / 2) + 16 * (p % 2) + e + (e >= 16 ? 16 : 0); }
    static __device__ void unpack(const qn_u8 *b, int p, float q[32], float d[2], float m[2]) {
        const int j = p / 2, h = p % 2;
        const qn_u8 *qs = b + (Q5 ? 48 : 16) + 32 * j + 16 * h;
        for (int k = 0; k < 4; k++) {
            unsigned w = qn_ld4(qs + 4 * k), hl = 0, hh = 0;
            if (Q5) {
                unsigned qh = qn_ld4(b + 16 + 16 * h + 4 * k); /* bit s of byte l: sub-block s, element l */
                hl = ((qh >> (2 * j)) & 0x01010101u) << 4;
                hh = ((qh >> (2 * j + 1)) & 0x01010101u) << 4;
            }
            qn_u8x4((w & 0x0F0F0F0Fu) | hl, 0.0f, q + 4 * k);
            qn_u8x4(((w >> 4) & 0x0F0F0F0Fu) | hh, 0.0f, q + 16 + 4 * k);
        }
        unsigned dd = qn_ld4(b);
        float dall = qn_h2f_dev(dd & 0xFFFF), dmin = qn_h2f_dev(dd >> 16);
        for (int s = 0; s < 2; s++) {
            int sc, mn;
            qn_scale_min_k4(b + 4, 2 * j + s, &sc, &mn);
            d[s] = __fmul_rn(dall, (float)sc);
            m[s] = -__fmul_rn(dmin, (float)mn);
        }
    }
};
typedef qn_qk_affine<false> qn_q4_K;
typedef qn_qk_affine<true> qn_q5_K;

/* q2_K, q3_K, q6_K: each 128-element half n holds four 32-element rows jj
 * whose element l shares bytes with the same l of the other rows (2-bit
 * fields, or nibbles plus 2-bit fields). Part p = (n, l0 = 8 (p % 4)): rows
 * jj = 0..3, elements l0..l0+7 of each, so e = 8 jj + i sits at
 * 128 n + 32 jj + l0 + i, with the 16-element scale 8 n + 2 jj + l0 / 16. */
__device__ __forceinline__ int qn_pos_k128(int p, int e) { return 128 * (p / 4) + 32 * (e / 8) + 8 * (p % 4) + e % 8; }

struct qn_q2_K {
    enum { QK = 256, BYTES = 84, PARTS = 8, PE = 32, NS = 4, HAS_M = 1 };
    static __device__ int pos(int p, int e) { return qn_pos_k128(p, e); }
    static __device__ void unpack(const qn_u8 *b, int p, float q[32], float d[4], float m[4]) {
        const int n = p / 4, l0 = 8 * (p % 4);
        unsigned w0 = qn_ld4(b + 16 + 32 * n + l0), w1 = qn_ld4(b + 20 + 32 * n + l0);
        for (int jj = 0; jj < 4; jj++) {
            qn_u8x4((w0 >> (2 * jj)) & 0x03030303u, 0.0f, q + 8 * jj);
            qn_u8x4((w1 >> (2 * jj)) & 0x03030303u, 0.0f, q + 8 * jj + 4);
        }
        unsigned dd = qn_ld4(b + 80);
        float dall = qn_h2f_dev(dd & 0xFFFF), dmin = qn_h2f_dev(dd >> 16);
        for (int jj = 0; jj < 4; jj++) {
            int sc = b[8 * n + 2 * jj + l0 / 16];
            d[jj] = __fmul_rn(dall, (float)(sc & 0xF));
            m[jj] = -__fmul_rn(dmin, (float)(sc >> 4));
        }
    }
};

struct qn_q3_K {
    enum { QK = 256, BYTES = 110, PARTS = 8, PE = 32, NS = 4, HAS_M = 0 };
    static __device__ int pos(int p, int e) { return qn_pos_k128(p, e); }
    static __device__ void unpack(const qn_u8 *b, int p, float q[32], float d[4], float m[4]) {
        const int n = p / 4, l0 = 8 * (p % 4);
        unsigned w0 = qn_ld4_a2(b + 32 + 32 * n + l0), w1 = qn_ld4_a2(b + 36 + 32 * n + l0);
        unsigned h0 = qn_ld4_a2(b + l0), h1 = qn_ld4_a2(b + l0 + 4);
        for (int jj = 0; jj < 4; jj++) {
            /* value = 2-bit field + 4 * (high bit) - 4 */
            int hb = 4 * n + jj;
            qn_u8x4(((w0 >> (2 * jj)) & 0x03030303u) | (((h0 >> hb) & 0x01010101u) << 2), 4.0f, q + 8 * jj);
            qn_u8x4(((w1 >> (2 * jj)) & 0x03030303u) | (((h1 >> hb) & 0x01010101u) << 2), 4.0f, q + 8 * jj + 4);
        }
        const qn_u8 *s = b + 96;
        float dall = qn_h2f_dev(qn_ld2(b + 108));
        for (int jj = 0; jj < 4; jj++) {
            int j = 8 * n + 2 * jj + l0 / 16;
            int low = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
            int sc = (low | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
            d[jj] = __fmul_rn(dall, (float)sc);
        }
        (void)m;
    }
};

struct qn_q6_K {
    enum { QK = 256, BYTES = 210, PARTS = 8, PE = 32, NS = 4, HAS_M = 0 };
    static __device__ int pos(int p, int e) { return qn_pos_k128(p, e); }
    static __device__ void unpack(const qn_u8 *b, int p, float q[32], float d[4], float m[4]) {
        const int n = p / 4, l0 = 8 * (p % 4);
        const qn_u8 *ql = b + 64 * n + l0, *qh = b + 128 + 32 * n + l0;
        unsigned a[2] = {qn_ld4_a2(ql), qn_ld4_a2(ql + 4)};      /* rows 0 (low), 2 (high) */
        unsigned c[2] = {qn_ld4_a2(ql + 32), qn_ld4_a2(ql + 36)}; /* rows 1 (low), 3 (high) */
        unsigned h[2] = {qn_ld4_a2(qh), qn_ld4_a2(qh + 4)};
        for (int k = 0; k < 2; k++) {
            qn_u8x4((a[k] & 0x0F0F0F0Fu) | ((h[k] & 0x03030303u) << 4), 32.0f, q + 4 * k);
            qn_u8x4((c[k] & 0x0F0F0F0Fu) | (((h[k] >> 2) & 0x03030303u) << 4), 32.0f, q + 8 + 4 * k);
            qn_u8x4(((a[k] >> 4) & 0x0F0F0F0Fu) | (((h[k] >> 4) & 0x03030303u) << 4), 32.0f, q + 16 + 4 * k);
            qn_u8x4(((c[k] >> 4) & 0x0F0F0F0Fu) | (((h[k] >> 6) & 0x03030303u) << 4), 32.0f, q + 24 + 4 * k);
        }
        float dall = qn_h2f_dev(qn_ld2(b + 208));
        for (int jj = 0; jj < 4; jj++) d[jj] = __fmul_rn(dall, (float)(signed char)b[192 + 8 * n + 2 * jj + l0 / 16]);
        (void)m;
    }
};

struct qn_q8_K {
    enum { QK = 256, BYTES = 292, PARTS = 8, PE = 32, NS = 1, HAS_M = 0 };
    static __device__ int pos(int p, int e) { return 32 * p + e; }
    static __device__ void unpack(const qn_u8 *b, int p, float q[32], float d[1], float m[1]) {
        for (int k = 0; k < 8; k++) qn_s8x4(qn_ld4(b + 4 + 32 * p + 4 * k), q + 4 * k);
        d[0] = __uint_as_float(qn_ld4(b));
        (void)m;
    }
};

/* iq4_xs: eight 32-element sub-blocks, each 16 nibble bytes (element j low,
 * j + 16 high) and a 6-bit scale; part p is sub-block p. */
struct qn_iq4_xs {
    enum { QK = 256, BYTES = 136, PARTS = 8, PE = 32, NS = 1, HAS_M = 0 };
    static __device__ int pos(int p, int e) { return 32 * p + e; }
    static __device__ void unpack(const qn_u8 *b, int p, float q[32], float d[1], float m[1]) {
        unsigned t[4];
        qn_iq4_table(t);
        for (int k = 0; k < 4; k++) {
            unsigned w = qn_ld4(b + 8 + 16 * p + 4 * k);
            qn_s8x4(qn_lut16(w & 0x0F0F0F0Fu, t), q + 4 * k);
            qn_s8x4(qn_lut16((w >> 4) & 0x0F0F0F0Fu, t), q + 16 + 4 * k);
        }
        unsigned hdr = qn_ld4(b);
        int ls = ((b[4 + p / 2] >> (4 * (p % 2))) & 0xF) | ((((hdr >> 16) >> (2 * p)) & 3) << 4);
        d[0] = __fmul_rn(qn_h2f_dev(hdr & 0xFFFF), (float)(ls - 32));
        (void)m;
    }
};

/* Plain weights as 8-element "blocks" (16- or 32-byte loads), so the
 * matrix kernels take every weight type through one path: q is the value
 * and the scale is 1. Rows must hold a multiple of 8 weights. */
struct qn_f32 {
    enum { QK = 8, BYTES = 32, PARTS = 1, PE = 8, NS = 1, HAS_M = 0 };
    static __device__ int pos(int p, int e) { return e + 0 * p; }
    static __device__ void unpack(const qn_u8 *b, int p, float q[8], float d[1], float m[1]) {
        float4 a = *(const float4 *)b, c = *(const float4 *)(b + 16);
        q[0] = a.x, q[1] = a.y, q[2] = a.z, q[3] = a.w, q[4] = c.x, q[5] = c.y, q[6] = c.z, q[7] = c.w;
        d[0] = 1.0f;
        (void)p, (void)m;
    }
};
template <int DT>
struct qn_half8 {
    enum { QK = 8, BYTES = 16, PARTS = 1, PE = 8, NS = 1, HAS_M = 0 };
    static __device__ int pos(int p, int e) { return e + 0 * p; }
    static __device__ void unpack(const qn_u8 *b, int p, float q[8], float d[1], float m[1]) {
        uint4 u = *(const uint4 *)b;
        unsigned w[4] = {u.x, u.y, u.z, u.w};
        for (int k = 0; k < 4; k++) {
            q[2 * k] = qn_bits_to_f32(w[k] & 0xFFFF, DT);
            q[2 * k + 1] = qn_bits_to_f32(w[k] >> 16, DT);
        }
        d[0] = 1.0f;
        (void)p, (void)m;
    }
};
typedef qn_half8<QN_KT_F16> qn_f16;
typedef qn_half8<QN_KT_BF16> qn_bf16;

/* Element w of a part, as the reference dequantizers compute it. */
template <typename B>
__device__ __forceinline__ float qn_block_value(const float *q, const float *d, const float *m, int e) {
    const int s = e / (B::PE / B::NS);
    float w = __fmul_rn(d[s], q[e]);
    return B::HAS_M ? __fadd_rn(w, m[s]) : w;
}

/* Expand X(type, name) for every block type, with its qn_dtype value. */
#define QN_FOR_EACH_BLOCK_TYPE(X) \
    X(qn_q4_0, q4_0, 2)           \
    X(qn_q4_1, q4_1, 3)           \
    X(qn_q5_0, q5_0, 6)           \
    X(qn_q5_1, q5_1, 7)           \
    X(qn_q8_0, q8_0, 8)           \
    X(qn_q8_1, q8_1, 9)           \
    X(qn_q2_K, q2_K, 10)          \
    X(qn_q3_K, q3_K, 11)          \
    X(qn_q4_K, q4_K, 12)          \
    X(qn_q5_K, q5_K, 13)          \
    X(qn_q6_K, q6_K, 14)          \
    X(qn_q8_K, q8_K, 15)          \
    X(qn_iq4_nl, iq4_nl, 20)      \
    X(qn_iq4_xs, iq4_xs, 23)      \
    X(qn_mxfp4, mxfp4, 39)

#endif
