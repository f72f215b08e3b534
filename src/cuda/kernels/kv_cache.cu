/* Appending new tokens' K or V rows to a cache.
 *
 * Layout: src [D, n_kv_heads, n_tokens] (f32, f16 or bf16, any strides);
 * cache [D, capacity, n_kv_heads] in f16, bf16 or q8_0 (34-byte blocks: f16
 * d, then 32 int8). Token t goes to cache row (pos[0] + t) % capacity,
 * pos read when the kernel runs so a replayed graph writes the current row.
 * Grid (n_kv_heads, n_tokens) striding where the grid is smaller, 128
 * threads; a row through qn_kv_append_row (attention_common.cuh).
 * Bytes: each src element read once, each cache row written once. */
#include "attention_common.cuh"

template <int DT>
__device__ void kv_append(const qn_kt &cache, const qn_kt &src, const qn_kt &pos) {
    const int p0 = qn_attn_p0(&pos);
    for (long long t = blockIdx.y; t < src.ne[2]; t += gridDim.y)
        for (long long h = blockIdx.x; h < src.ne[1]; h += gridDim.x)
            qn_kv_append_row(qn_kv_row(&cache, p0, t, h), DT, cache.nb[0], qn_kt_at(&src, 0, h, t, 0), src.nb[0],
                             src.dtype, cache.ne[0]);
}

extern "C" __global__ void kv_append_f16(qn_kt cache, qn_kt src, qn_kt pos) { QN_GRID_WAIT(); kv_append<QN_KT_F16>(cache, src, pos); }
extern "C" __global__ void kv_append_bf16(qn_kt cache, qn_kt src, qn_kt pos) { QN_GRID_WAIT(); kv_append<QN_KT_BF16>(cache, src, pos); }
extern "C" __global__ void kv_append_q8_0(qn_kt cache, qn_kt src, qn_kt pos) { QN_GRID_WAIT(); kv_append<QN_KT_Q8_0>(cache, src, pos); }
