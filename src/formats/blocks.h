/* Byte layouts of ggml's quantized blocks, as GGUF files store them.
 *
 * Every struct below is exactly one block on disk (the static asserts pin the
 * sizes to the dtype table). Multi-byte fields are little-endian; the library
 * only builds for little-endian hosts. Rows are read and written one block at
 * a time through memcpy into these structs, so a row may sit at any address
 * (an mmap'd file gives no alignment promise for odd-sized blocks).
 *
 * Scales named `d`, `m`, `dmin`, `s` are IEEE f16 bit patterns. */
#ifndef QN_FORMATS_BLOCKS_H
#define QN_FORMATS_BLOCKS_H

#include "cuda/kernels/numeric.h"

#include <stdint.h>
#include <string.h>

#define QN_QK 32   /* elements of a legacy block (q4_0 ... q8_1, iq4_nl, mxfp4) */
#define QN_QK_K 256 /* elements of a K-quant super-block (q2_K ... q8_K, iq4_xs) */

typedef struct { uint16_t d; uint8_t qs[16]; } qn_block_q4_0;
typedef struct { uint16_t d, m; uint8_t qs[16]; } qn_block_q4_1;
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[16]; } qn_block_q5_0;
typedef struct { uint16_t d, m; uint8_t qh[4]; uint8_t qs[16]; } qn_block_q5_1;
typedef struct { uint16_t d; int8_t qs[32]; } qn_block_q8_0;
typedef struct { uint16_t d, s; int8_t qs[32]; } qn_block_q8_1; /* s = d * sum(qs) */
typedef struct { uint8_t e; uint8_t qs[16]; } qn_block_mxfp4;   /* e: E8M0 exponent */
typedef struct { uint16_t d; uint8_t qs[16]; } qn_block_iq4_nl;

typedef struct {
    uint8_t scales[16]; /* low nibble: scale, high nibble: min, of each 16 */
    uint8_t qs[64];     /* 2-bit quants */
    uint16_t d, dmin;
} qn_block_q2_K;
typedef struct {
    uint8_t hmask[32];  /* third bit of each quant */
    uint8_t qs[64];     /* low 2 bits */
    uint8_t scales[12]; /* 16 6-bit scales, offset by 32 */
    uint16_t d;
} qn_block_q3_K;
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12]; /* 8 6-bit scales and 8 6-bit mins */
    uint8_t qs[128];
} qn_block_q4_K;
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[32]; /* fifth bit */
    uint8_t qs[128];
} qn_block_q5_K;
typedef struct {
    uint8_t ql[128]; /* low 4 bits */
    uint8_t qh[64];  /* high 2 bits */
    int8_t scales[16];
    uint16_t d;
} qn_block_q6_K;
typedef struct {
    float d;
    int8_t qs[256];
    int16_t bsums[16]; /* sum of each 16 quants */
} qn_block_q8_K;
typedef struct {
    uint16_t d;
    uint16_t scales_h;  /* high 2 bits of 8 6-bit scales */
    uint8_t scales_l[4]; /* low 4 bits */
    uint8_t qs[128];
} qn_block_iq4_xs;

_Static_assert(sizeof(qn_block_q4_0) == 18, "q4_0 block");
_Static_assert(sizeof(qn_block_q4_1) == 20, "q4_1 block");
_Static_assert(sizeof(qn_block_q5_0) == 22, "q5_0 block");
_Static_assert(sizeof(qn_block_q5_1) == 24, "q5_1 block");
_Static_assert(sizeof(qn_block_q8_0) == 34, "q8_0 block");
_Static_assert(sizeof(qn_block_q8_1) == 36, "q8_1 block");
_Static_assert(sizeof(qn_block_mxfp4) == 17, "mxfp4 block");
_Static_assert(sizeof(qn_block_iq4_nl) == 18, "iq4_nl block");
_Static_assert(sizeof(qn_block_q2_K) == 84, "q2_K block");
_Static_assert(sizeof(qn_block_q3_K) == 110, "q3_K block");
_Static_assert(sizeof(qn_block_q4_K) == 144, "q4_K block");
_Static_assert(sizeof(qn_block_q5_K) == 176, "q5_K block");
_Static_assert(sizeof(qn_block_q6_K) == 210, "q6_K block");
_Static_assert(sizeof(qn_block_q8_K) == 292, "q8_K block");
_Static_assert(sizeof(qn_block_iq4_xs) == 136, "iq4_xs block");

/* The 16 levels of iq4_nl / iq4_xs, and of mxfp4 (E2M1 values times two;
 * the block scale carries the factor of one half). */
extern const int8_t qn_iq4_levels[16];
extern const int8_t qn_mxfp4_levels[16];

static inline float qn_h2f(uint16_t h) { return qn_f16_bits_to_f32(h); }
static inline uint16_t qn_f2h(float f) { return qn_f32_to_f16_bits(f); }

/* Round to the nearest integer, ties to even, by adding 1.5 * 2^23 so the
 * FPU's own rounding lands the integer in the low mantissa bits. This is the
 * rounding ggml's reference quantizers use; unlike lrintf it is defined for
 * every input (out-of-range values and NaN give some integer, never UB). */
static inline int qn_round_nearest(float x) {
    float biased = x + 12582912.0f;
    int32_t bits;
    memcpy(&bits, &biased, sizeof bits);
    return (bits & 0x007fffff) - 0x00400000;
}

/* float -> integer truncation as x86 does it (cvttss2si): values outside
 * int32 and NaN give INT32_MIN. ggml's quantizers convert floats straight to
 * small integer types; this reproduces those bits without undefined
 * behaviour. */
static inline int32_t qn_trunc_int(float x) {
    if (!(x > -2147483648.0f && x < 2147483648.0f)) return INT32_MIN;
    return (int32_t)x;
}

#endif
