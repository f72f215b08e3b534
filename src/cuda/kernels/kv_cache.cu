/* Appending new tokens' K or V rows to a cache.
 *
 * Layout: src [D, n_kv_heads, n_tokens] (f32, f16 or bf16, any strides);
 * cache [D, capacity, n_kv_heads] in f16, bf16 or q8_0 (34-byte blocks: f16
 * d, then 32 int8). Token t goes to cache row (pos[0] + t) % capacity,
 * pos read when the kernel runs so a replayed graph writes the current row.
 * Grid (n_kv_heads, n_tokens) striding where the grid is smaller, 128
 * threads; f16/bf16 rows through the shared row body, q8_0 a warp per block
 * of 32 (its amax by shuffles).
 * Bytes: each src element read once, each cache row written once. */
#include "attention_common.cuh"

template <int DT>
__device__ void kv_append(const qn_kt &cache, const qn_kt &src, const qn_kt &pos) {
    const long long p0 = qn_attn_p0(&pos), cap = cache.ne[1], d = cache.ne[0];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
    for (long long t = blockIdx.y; t < src.ne[2]; t += gridDim.y)
        for (long long h = blockIdx.x; h < src.ne[1]; h += gridDim.x) {
            char *dst = qn_kt_at(&cache, 0, (p0 + t) % cap, h, 0);
            const char *s = qn_kt_at(&src, 0, h, t, 0);
            if (DT == QN_KT_Q8_0) {
                for (long long b = warp; b < d / 32; b += nwarps) {
                    const float x = qn_load_f32(s + (b * 32 + lane) * src.nb[0], src.dtype);
                    float amax = fabsf(x);
                    for (int o = 16; o > 0; o /= 2) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
                    qn_u16 d_bits;
                    const float inv = qn_q8_0_inverse(amax, &d_bits);
                    char *blk = dst + b * cache.nb[0];
                    blk[2 + lane] = qn_q8_0_round(x, inv);
                    if (lane == 0) *(qn_u16 *)blk = d_bits;
                }
            } else {
                qn_row_convert(dst, cache.nb[0], DT, s, src.nb[0], src.dtype, threadIdx.x, d, blockDim.x);
            }
        }
}

extern "C" __global__ void kv_append_f16(qn_kt cache, qn_kt src, qn_kt pos) { QN_GRID_WAIT(); kv_append<QN_KT_F16>(cache, src, pos); }
extern "C" __global__ void kv_append_bf16(qn_kt cache, qn_kt src, qn_kt pos) { QN_GRID_WAIT(); kv_append<QN_KT_BF16>(cache, src, pos); }
extern "C" __global__ void kv_append_q8_0(qn_kt cache, qn_kt src, qn_kt pos) { QN_GRID_WAIT(); kv_append<QN_KT_Q8_0>(cache, src, pos); }
