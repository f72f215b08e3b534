/* Embedding gather: dst[:, i] = dequantize(table[:, ids[i]]) * scale.
 *
 * Layout: table [n, vocab] (quantized rows: whole blocks, contiguous), ids
 * i32 [n_ids] read here (a replayed graph follows their current values),
 * dst [n, n_ids] of any strides. Grid: one block per id as blockIdx.x,
 * striding where the grid is smaller. Float tables: a thread per element;
 * quantized tables: a thread per part of a block (blocks.cuh's traits),
 * which it unpacks and writes out. Bytes: one table row read and one dst
 * row written per id. The dequantization is blocks.cuh's, which performs
 * ggml's float operations, so the GPU gives the CPU's bits.
 * Kernels embed_<dst>_<table>. */
#include "blocks.cuh"
#include "ops_math.cuh"

template <int DT, int TT>
__device__ void embed_float(const qn_embed_args &a) {
    const long long n = a.dst.ne[0];
    for (long long r = blockIdx.x; r < a.dst.ne[1]; r += gridDim.x) {
        const int id = *(const int *)qn_kt_at(&a.ids, r, 0, 0, 0);
        const bool ok = id >= 0 && id < a.table.ne[1];
        const char *row = qn_kt_at(&a.table, 0, ok ? id : 0, 0, 0);
        char *d = qn_kt_at(&a.dst, 0, r, 0, 0);
        for (long long i = threadIdx.x; i < n; i += blockDim.x)
            qn_store_f32(d + i * a.dst.nb[0], DT, ok ? qn_load_f32(row + i * a.table.nb[0], TT) * a.scale : 0.0f);
    }
}

template <int DT, typename B>
__device__ void embed_blocks(const qn_embed_args &a) {
    const long long items = a.dst.ne[0] / B::QK * B::PARTS;
    for (long long r = blockIdx.x; r < a.dst.ne[1]; r += gridDim.x) {
        const int id = *(const int *)qn_kt_at(&a.ids, r, 0, 0, 0);
        const bool ok = id >= 0 && id < a.table.ne[1];
        const qn_u8 *row = (const qn_u8 *)qn_kt_at(&a.table, 0, ok ? id : 0, 0, 0);
        char *d = qn_kt_at(&a.dst, 0, r, 0, 0);
        for (long long it = threadIdx.x; it < items; it += blockDim.x) {
            const long long blk = it / B::PARTS;
            const int p = (int)(it % B::PARTS);
            char *out = d + blk * B::QK * a.dst.nb[0];
            float q[B::PE], s[B::NS], m[B::NS];
            if (ok) B::unpack(row + blk * B::BYTES, p, q, s, m);
#pragma unroll
            for (int e = 0; e < B::PE; e++)
                qn_store_f32(out + B::pos(p, e) * a.dst.nb[0], DT,
                             ok ? qn_block_value<B>(q, s, m, e) * a.scale : 0.0f);
        }
    }
}

#define EMBED_FLOAT(dn, tn, DT, TT) \
    extern "C" __global__ void embed_##dn##_##tn(qn_embed_args a) { QN_GRID_WAIT(); embed_float<DT, TT>(a); }
#define EMBED_BLOCKS_F32(B, tn, id) \
    extern "C" __global__ void embed_f32_##tn(qn_embed_args a) { QN_GRID_WAIT(); embed_blocks<QN_KT_F32, B>(a); }
#define EMBED_BLOCKS_F16(B, tn, id) \
    extern "C" __global__ void embed_f16_##tn(qn_embed_args a) { QN_GRID_WAIT(); embed_blocks<QN_KT_F16, B>(a); }
#define EMBED_BLOCKS_BF16(B, tn, id) \
    extern "C" __global__ void embed_bf16_##tn(qn_embed_args a) { QN_GRID_WAIT(); embed_blocks<QN_KT_BF16, B>(a); }
#define EMBED_FLOATS(dn, DT)              \
    EMBED_FLOAT(dn, f32, DT, QN_KT_F32)   \
    EMBED_FLOAT(dn, f16, DT, QN_KT_F16)   \
    EMBED_FLOAT(dn, bf16, DT, QN_KT_BF16)

EMBED_FLOATS(f32, QN_KT_F32)
EMBED_FLOATS(f16, QN_KT_F16)
EMBED_FLOATS(bf16, QN_KT_BF16)
QN_FOR_EACH_BLOCK_TYPE(EMBED_BLOCKS_F32)
QN_FOR_EACH_BLOCK_TYPE(EMBED_BLOCKS_F16)
QN_FOR_EACH_BLOCK_TYPE(EMBED_BLOCKS_BF16)
