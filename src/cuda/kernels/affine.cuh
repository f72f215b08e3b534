/* MLX affine weights as the GPU kernels read them (matvec_affine.cu,
 * matmul.cu): a unit is 32 consecutive weights of a row, BITS words of the
 * row's little-endian bit stream (element e at bit e * BITS), under one
 * scale and one bias (a group holds 1, 2 or 4 units).
 *
 * A field is read without extracting it to the bottom of a register: it is
 * masked where it lies, in its word when it ends below bit 23, else in the
 * word shifted right by 12, or, when it spans two words, in the pair
 * funnel-shifted right by 16. So a field becomes q << pos with pos + BITS
 * <= 23: the bit pattern of a float with a zero exponent, the denormal
 * q * 2^(pos - 149), and one AND reads it (the shifts are shared by the
 * word's fields). */
#ifndef QN_KERNELS_AFFINE_CUH
#define QN_KERNELS_AFFINE_CUH

#include "affine.h"
#include "tensor.h"

template <int BITS>
struct qn_af {
    static constexpr int word(int e) { return e * BITS / 32; }
    static constexpr int off(int e) { return e * BITS % 32; }
    static constexpr int shift(int e) { return off(e) + BITS <= 23 ? 0 : off(e) + BITS <= 32 ? 12 : 16; }
    /* where field e lies in the value field() returns */
    static constexpr int pos(int e) { return off(e) - shift(e); }

    /* Field e of a unit's words: q << pos(e). */
    static __device__ __forceinline__ unsigned field(const unsigned (&w)[BITS], int e) {
        const int i = word(e), sh = shift(e);
        const unsigned v = sh == 0 ? w[i] : sh == 12 ? w[i] >> 12 : __funnelshift_r(w[i], w[i + 1 < BITS ? i + 1 : i], 16);
        return v & (((1u << BITS) - 1) << pos(e));
    }
};

/* A float from its raw bits (f16, bf16 or f32: a scale, a bias, x), by the hardware's
 * conversion: NaN payloads are of no concern to a product. */
__device__ __forceinline__ float qn_af_float(unsigned bits, int dtype) {
    float h;
    asm("cvt.f32.f16 %0, %1;" : "=f"(h) : "h"((unsigned short)bits));
    return dtype == QN_KT_F32 ? __uint_as_float(bits) : dtype == QN_KT_BF16 ? __uint_as_float(bits << 16) : h;
}

/* The raw bits of scale (or bias) i of a row: 2 or 4 bytes. */
__device__ __forceinline__ unsigned qn_af_scale_bits(const char *row, long long i, int dtype) {
    return dtype == QN_KT_F32 ? *(const unsigned *)(row + 4 * i) : *(const unsigned short *)(row + 2 * i);
}

#endif
