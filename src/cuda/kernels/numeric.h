/* Number formats shared by the CPU code and the CUDA kernels.
 *
 * This header is compiled twice: by the C compiler into the library, and by
 * NVRTC into every kernel (it is embedded with the .cu sources in this folder). Because
 * both sides run this same code, a conversion on the GPU gives the same bits
 * as on the CPU by construction; the tests check it against independent
 * references.
 *
 * Rounding is to nearest, ties to even. NaN stays NaN (quiet, sign and the
 * top payload bits kept); infinity stays infinity; f32 values beyond the
 * f16 range round to infinity as IEEE requires. */
#ifndef QN_NUMERIC_H
#define QN_NUMERIC_H

#if defined(__CUDACC_RTC__) || defined(__CUDACC__)
#define QN_HD __device__ __forceinline__
typedef unsigned int qn_u32;
typedef unsigned short qn_u16;
QN_HD qn_u32 qn_f32_bits(float f) { return __float_as_uint(f); }
QN_HD float qn_bits_f32(qn_u32 u) { return __uint_as_float(u); }
#else
#include <stdint.h>
#include <string.h>
#define QN_HD static inline
typedef uint32_t qn_u32;
typedef uint16_t qn_u16;
QN_HD qn_u32 qn_f32_bits(float f) {
    qn_u32 u;
    memcpy(&u, &f, 4);
    return u;
}
QN_HD float qn_bits_f32(qn_u32 u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
#endif

/* float -> int32 truncation as x86's cvttss2si does it: NaN and values
 * outside int32 give INT32_MIN. ggml's quantizers convert floats straight to
 * small integer types; this gives those bits on every machine, GPU included
 * (whose own conversion saturates instead). */
QN_HD int qn_trunc_i32(float x) {
    if (!(x > -2147483648.0f && x < 2147483648.0f)) return (int)0x80000000u;
    return (int)x;
}

/* Shift right by `shift` bits (1..31), rounding to nearest even. */
QN_HD qn_u32 qn_shift_rne(qn_u32 m, int shift) {
    qn_u32 q = m >> shift;
    qn_u32 rem = m & ((1u << shift) - 1u);
    qn_u32 half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return q;
}

/* The portable conversions below define the results. On the GPU the
 * hardware's conversions (IEEE round to nearest even as well) give the same
 * bits for every non-NaN value in one instruction instead of a dozen, so the
 * kernels use them and keep the portable code for NaN, whose payload
 * handling the hardware does not promise. */
QN_HD qn_u16 qn_f32_to_f16_soft(float f) {
    qn_u32 x = qn_f32_bits(f);
    qn_u32 sign = (x >> 16) & 0x8000u;
    qn_u32 ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) /* NaN: quiet it, keep the top 9 payload bits */
        return (qn_u16)(sign | 0x7e00u | ((ax >> 13) & 0x1ffu));
    if (ax >= 0x477ff000u) /* >= 65520 rounds to infinity (and inf stays) */
        return (qn_u16)(sign | 0x7c00u);
    if (ax >= 0x38800000u) /* normal in f16: rebias the exponent 127 -> 15 */
        return (qn_u16)(sign | qn_shift_rne(ax - 0x38000000u, 13));
    if (ax < 0x33000000u) /* below half the smallest subnormal: zero */
        return (qn_u16)sign;
    /* f16 subnormal: the value is m * 2^(e-150) in units of 2^-24 */
    qn_u32 e = ax >> 23;
    qn_u32 m = (ax & 0x7fffffu) | 0x800000u;
    return (qn_u16)(sign | qn_shift_rne(m, (int)(126u - e)));
}

QN_HD float qn_f16_to_f32_soft(qn_u16 h) {
    qn_u32 sign = ((qn_u32)h & 0x8000u) << 16;
    qn_u32 e = ((qn_u32)h >> 10) & 0x1fu;
    qn_u32 m = (qn_u32)h & 0x3ffu;
    if (e == 0x1fu) /* inf or NaN, payload kept */
        return qn_bits_f32(sign | 0x7f800000u | (m << 13));
    if (e != 0) return qn_bits_f32(sign | ((e + 112u) << 23) | (m << 13));
    if (m == 0) return qn_bits_f32(sign);
    /* subnormal: normalise */
    e = 113u;
    while ((m & 0x400u) == 0) {
        m <<= 1;
        e--;
    }
    return qn_bits_f32(sign | (e << 23) | ((m & 0x3ffu) << 13));
}

QN_HD qn_u16 qn_f32_to_bf16_soft(float f) {
    qn_u32 x = qn_f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) /* NaN: quiet it, keep sign/payload top */
        return (qn_u16)((x >> 16) | 0x40u);
    return (qn_u16)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

QN_HD float qn_bf16_bits_to_f32(qn_u16 h) { return qn_bits_f32((qn_u32)h << 16); }

#if defined(__CUDACC_RTC__) || defined(__CUDACC__)
QN_HD qn_u16 qn_f32_to_f16_bits(float f) {
    if (f != f) return qn_f32_to_f16_soft(f);
    qn_u16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}
QN_HD float qn_f16_bits_to_f32(qn_u16 h) {
    if ((h & 0x7c00u) == 0x7c00u && (h & 0x3ffu)) return qn_f16_to_f32_soft(h);
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}
QN_HD qn_u16 qn_f32_to_bf16_bits(float f) {
#if __CUDA_ARCH__ >= 800
    if (f != f) return qn_f32_to_bf16_soft(f);
    qn_u16 h;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
#else
    return qn_f32_to_bf16_soft(f);
#endif
}
#else
QN_HD qn_u16 qn_f32_to_f16_bits(float f) { return qn_f32_to_f16_soft(f); }
QN_HD float qn_f16_bits_to_f32(qn_u16 h) { return qn_f16_to_f32_soft(h); }
QN_HD qn_u16 qn_f32_to_bf16_bits(float f) { return qn_f32_to_bf16_soft(f); }
#endif

#endif
