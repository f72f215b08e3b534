/* Row quantizers and dequantizers of each block family, behind the public
 * qn_quantize_row / qn_dequantize_row (quants.c).
 *
 * Each function converts `nb` whole blocks: x holds nb * block_elems floats,
 * y (or the source) nb * block_bytes bytes. Callers have checked the type
 * and the sizes. Quantization follows ggml's reference quantizers operation
 * for operation, so for finite inputs the bytes are identical; the library is
 * built with -ffp-contract=off so no multiply-add is fused behind our back. */
#ifndef QN_FORMATS_QUANTS_H
#define QN_FORMATS_QUANTS_H

#include "quanta.h"

/* q4_0 q4_1 q5_0 q5_1 q8_0 q8_1 mxfp4: 32-element blocks (quant_legacy.c) */
void qn_quantize_legacy(qn_dtype type, const float *x, void *y, int64_t nb);
void qn_dequantize_legacy(qn_dtype type, const void *x, float *y, int64_t nb);
/* Whether every block of `from` is a block of `to` with the same values:
 * q4_0 -> q5_0 -> q8_0 (one f16 scale times signed levels each; a wider
 * type holds the narrower's levels exactly). */
bool qn_legacy_widens(qn_dtype from, qn_dtype to);
/* nb blocks of `from` rewritten as `to` (qn_legacy_widens(from, to) holds):
 * dequantizing either gives the same floats, bit for bit. */
void qn_legacy_widen(qn_dtype from, qn_dtype to, const void *x, void *y, int64_t nb);

/* q2_K q3_K q4_K q5_K q6_K q8_K: 256-element super-blocks (quant_k.c) */
void qn_quantize_k(qn_dtype type, const float *x, void *y, int64_t nb);
void qn_dequantize_k(qn_dtype type, const void *x, float *y, int64_t nb);

/* iq4_nl (32) and iq4_xs (256): non-linear 4-bit levels (quant_iq4.c) */
void qn_quantize_iq4(qn_dtype type, const float *x, void *y, int64_t nb);
void qn_dequantize_iq4(qn_dtype type, const void *x, float *y, int64_t nb);

/* Quantize then dequantize n floats (a multiple of 32) through q4_0 or q8_0,
 * the CPU side of the qdq op: dst gets exactly what a q4_0/q8_0 tensor
 * written from src would read back as. src and dst may be the same. */
qn_status qn_qdq_row(qn_dtype type, const float *src, float *dst, int64_t n);

#endif
