/* Dequantization of every block type to f32, f16 or bf16, and the q4_0 /
 * q8_0 quantize-dequantize round trip.
 *
 * dequant_<type>_<dst>: src rows of whole blocks [ne0/QK blocks, ne1, ne2,
 * ne3]; dst [ne0, ne1, ne2, ne3], any strides. Grid: one block per row
 * (i1, i2, i3) as blockIdx (x, y, z); threads take (block, part) pairs of the
 * row (blocks.cuh), so a warp reads consecutive bytes. Bytes: the quantized
 * row once, each output element once. The values are ggml's, bit for bit:
 * the scale multiply and offset add are done as the reference does them,
 * without contraction.
 *
 * qdq_<type>: f32 [n] -> f32 [n], n a multiple of 32. One thread per 32-value
 * block: quantize as ggml's reference quantizer (same operations, same
 * order, IEEE division), then dequantize. Bytes: 4 n in, 4 n out. */
#include "blocks.cuh"

template <typename B, int DT>
__device__ void dequant_rows(const qn_kt &dst, const qn_kt &src) {
    const long long parts = dst.ne[0] / B::QK * B::PARTS;
    QN_FOR_EACH_ROW(dst) {
        const qn_u8 *row = (const qn_u8 *)qn_kt_at(&src, 0, i1, i2, i3);
        char *out = qn_kt_at(&dst, 0, i1, i2, i3);
        for (long long t = threadIdx.x; t < parts; t += blockDim.x) {
            const long long blk = t / B::PARTS;
            const int p = (int)(t % B::PARTS);
            float q[B::PE], d[B::NS], m[B::NS];
            B::unpack(row + blk * B::BYTES, p, q, d, m);
#pragma unroll
            for (int e = 0; e < B::PE; e++)
                qn_store_f32(out + (blk * B::QK + B::pos(p, e)) * dst.nb[0], DT, qn_block_value<B>(q, d, m, e));
        }
    }
}

/* A module per block type (the define QN_BLOCK names it); the module
 * without QN_BLOCK holds qdq and the MLX kernels. */
#ifdef QN_BLOCK
#define DEQUANT(B, name)                                                                                \
    extern "C" __global__ void dequant_##name##_f32(qn_kt dst, qn_kt src) { QN_GRID_WAIT(); dequant_rows<B, QN_KT_F32>(dst, src); } \
    extern "C" __global__ void dequant_##name##_f16(qn_kt dst, qn_kt src) { QN_GRID_WAIT(); dequant_rows<B, QN_KT_F16>(dst, src); } \
    extern "C" __global__ void dequant_##name##_bf16(qn_kt dst, qn_kt src) { QN_GRID_WAIT(); dequant_rows<B, QN_KT_BF16>(dst, src); }
#define DEQUANT_EXPAND(name) DEQUANT(QN_CAT(qn_, name), name)
DEQUANT_EXPAND(QN_BLOCK)
#else

/* q4_0: d = max / -8 (max: the value of largest magnitude), level
 * trunc(x / d + 8.5) capped at 15 and kept as a nibble; back: (level - 8) * d
 * with d rounded to f16. */
extern "C" __global__ void qdq_q4_0(float *dst, const float *src, long long nblocks) { QN_GRID_WAIT();
    for (long long b = blockIdx.x * (long long)blockDim.x + threadIdx.x; b < nblocks; b += (long long)gridDim.x * blockDim.x) {
        const float *x = src + 32 * b;
        float v[32], amax = 0.0f, max = 0.0f;
#pragma unroll
        for (int j = 0; j < 32; j++) {
            v[j] = x[j];
            if (amax < fabsf(v[j])) {
                amax = fabsf(v[j]);
                max = v[j];
            }
        }
        const float d = __fdiv_rn(max, -8.0f);
        const float id = d != 0.0f ? __fdiv_rn(1.0f, d) : 0.0f;
        const float dh = qn_f16_bits_to_f32(qn_f32_to_f16_bits(d));
#pragma unroll
        for (int j = 0; j < 32; j++) {
            int q = (signed char)qn_trunc_i32(__fadd_rn(__fmul_rn(v[j], id), 8.5f));
            q = (q < 15 ? q : 15) & 0xF;
            dst[32 * b + j] = __fmul_rn((float)(q - 8), dh);
        }
    }
}

/* q8_0: d = amax / 127, level round(x / d) (half away from zero) as int8;
 * back: level * d with d rounded to f16. */
extern "C" __global__ void qdq_q8_0(float *dst, const float *src, long long nblocks) { QN_GRID_WAIT();
    for (long long b = blockIdx.x * (long long)blockDim.x + threadIdx.x; b < nblocks; b += (long long)gridDim.x * blockDim.x) {
        const float *x = src + 32 * b;
        float v[32], amax = 0.0f;
#pragma unroll
        for (int j = 0; j < 32; j++) {
            v[j] = x[j];
            amax = amax > fabsf(v[j]) ? amax : fabsf(v[j]);
        }
        const float d = __fdiv_rn(amax, 127.0f);
        const float id = d != 0.0f ? __fdiv_rn(1.0f, d) : 0.0f;
        const float dh = qn_f16_bits_to_f32(qn_f32_to_f16_bits(d));
#pragma unroll
        for (int j = 0; j < 32; j++) {
            int q = (signed char)qn_trunc_i32(roundf(__fmul_rn(v[j], id)));
            dst[32 * b + j] = __fmul_rn((float)q, dh);
        }
    }
}

/* MLX affine: w = scale * q + bias per group, q a little-endian bit stream of
 * `bits`-bit integers (2, 3, 4, 6, 8). q rows [cols * bits / 8 bytes, rows],
 * scales and biases [cols / group, rows] (f32, f16 or bf16), dst [cols,
 * rows]. Grid: a block per row (x, y, z); threads over the row's elements.
 * Bytes: the packed row, its scales and biases, and the output once each. */
template <int DT>
__device__ void mlx_rows(const qn_kt &dst, const qn_kt &q, const qn_kt &scales, const qn_kt &biases, int bits,
                         int group) {
    QN_FOR_EACH_ROW(dst) {
        const qn_u8 *row = (const qn_u8 *)qn_kt_at(&q, 0, i1, i2, i3);
        const char *srow = qn_kt_at(&scales, 0, i1, i2, i3), *brow = qn_kt_at(&biases, 0, i1, i2, i3);
        char *out = qn_kt_at(&dst, 0, i1, i2, i3);
        for (long long i = threadIdx.x; i < dst.ne[0]; i += blockDim.x) {
            long long bit = i * bits;
            unsigned v = row[bit / 8];
            if (bit % 8 + bits > 8) v |= (unsigned)row[bit / 8 + 1] << 8;
            float qv = (float)((v >> (bit % 8)) & ((1u << bits) - 1));
            float s = qn_load_f32(srow + (i / group) * scales.nb[0], scales.dtype);
            float b = qn_load_f32(brow + (i / group) * biases.nb[0], biases.dtype);
            qn_store_f32(out + i * dst.nb[0], DT, __fadd_rn(__fmul_rn(s, qv), b));
        }
    }
}

extern "C" __global__ void mlx_dequant_f32(qn_kt dst, qn_kt q, qn_kt s, qn_kt b, int bits, int group) { QN_GRID_WAIT();
    mlx_rows<QN_KT_F32>(dst, q, s, b, bits, group);
}
extern "C" __global__ void mlx_dequant_f16(qn_kt dst, qn_kt q, qn_kt s, qn_kt b, int bits, int group) { QN_GRID_WAIT();
    mlx_rows<QN_KT_F16>(dst, q, s, b, bits, group);
}
extern "C" __global__ void mlx_dequant_bf16(qn_kt dst, qn_kt q, qn_kt s, qn_kt b, int bits, int group) { QN_GRID_WAIT();
    mlx_rows<QN_KT_BF16>(dst, q, s, b, bits, group);
}
#endif
