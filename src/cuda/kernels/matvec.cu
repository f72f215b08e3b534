/* Quantized matrix-vector products for 1 to 8 tokens (decode, speculative
 * decoding): y[n, t] = sum_k W[n, k] x[k, t].
 *
 * Layout: W rows of K weights in one block type (blocks.cuh), row_bytes
 * apart; for the expert-routed form, experts expert_bytes apart. x rows of
 * K f32, f16 or bf16 values, x_nb1 bytes apart, 16-byte aligned. y f32, y_nb1
 * floats apart (row of token t starts at y + t * y_nb1).
 *
 * Grid: a block of MV_WARPS warps per MV_ROWS output rows (blockIdx.x), and
 * for the routed form one blockIdx.y per (slot, token) pair. The block's
 * threads take the rows' (block, part) pairs in turn, so each warp reads a
 * contiguous stretch of every row and the block reads the rows front to
 * back, each byte once. A thread loads its part's x once and uses it for
 * all MV_ROWS rows, whose weight loads are independent and so in flight
 * together: the kernel is bound by the weight bytes, not by latency or by
 * re-reading x. A block-wide sum ends each row.
 *
 * Each part's quants are summed against x before its scales are applied:
 * acc += d * sum(q * x) + m * sum(x), one multiply per weight; sum(x) is
 * shared by the rows.
 *
 * The module is compiled per block type (the define QN_BLOCK). */
#include "blocks.cuh"
#include "ops_math.cuh"

#define MV_WARPS 4 /* warps a block at most: they split each row's parts (short
                      rows launch fewer, so no thread idles) */
#define MV_ROWS 4  /* rows a block: every thread works on all of them */

/* Eight consecutive x values of token row `xr` from element i (a multiple of
 * 8: the parts' positions come in runs of 8). */
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

/* Dot products of NR weight rows with token row xr (the block's sums, in
 * thread 0). */
template <typename B, int NR>
__device__ __forceinline__ void qn_rows_dot(const qn_u8 *const *rows, long long K, const char *xr, int xt,
                                            float out[NR]) {
    __shared__ float partial[MV_WARPS][NR];
    const long long parts = K / B::QK * B::PARTS;
    float acc[NR];
#pragma unroll
    for (int r = 0; r < NR; r++) acc[r] = 0.0f;
    for (long long j = threadIdx.x; j < parts; j += blockDim.x) {
        const long long b = j / B::PARTS;
        const int p = (int)(j % B::PARTS);
        float xv[B::PE], sx[B::NS];
#pragma unroll
        for (int r = 0; r < B::PE / 8; r++) qn_load_x8(xr, xt, b * B::QK + B::pos(p, 8 * r), xv + 8 * r);
        if (B::HAS_M) {
#pragma unroll
            for (int s = 0; s < B::NS; s++) {
                sx[s] = 0.0f;
#pragma unroll
                for (int e = 0; e < B::PE / B::NS; e++) sx[s] += xv[s * (B::PE / B::NS) + e];
            }
        }
#pragma unroll
        for (int r = 0; r < NR; r++) {
            float q[B::PE], d[B::NS], m[B::NS];
            B::unpack(rows[r] + b * B::BYTES, p, q, d, m);
#pragma unroll
            for (int s = 0; s < B::NS; s++) {
                float sq = 0.0f;
#pragma unroll
                for (int e = 0; e < B::PE / B::NS; e++) sq = fmaf(q[s * (B::PE / B::NS) + e], xv[s * (B::PE / B::NS) + e], sq);
                acc[r] += B::HAS_M ? d[s] * sq + m[s] * sx[s] : d[s] * sq;
            }
        }
    }
#pragma unroll
    for (int r = 0; r < NR; r++) {
        for (int o = 16; o > 0; o /= 2) acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], o);
        if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32][r] = acc[r];
    }
    __syncthreads();
    if (threadIdx.x == 0) {
#pragma unroll
        for (int r = 0; r < NR; r++) {
            out[r] = 0.0f;
            for (int w = 0; w < (int)blockDim.x / 32; w++) out[r] += partial[w][r];
        }
    }
    __syncthreads(); /* partial is reused by the next token */
}

/* y = W x, or with `up` (GLU) y = act(W x) * (up x), for nx tokens: rows
 * n0 .. n0 + MV_ROWS - 1 (rows past N repeat the last, unwritten). Tokens
 * after the first read the block's weight rows again, from cache. */
template <typename B>
__device__ void qn_matvec(const qn_u8 *w, const qn_u8 *up, long long row_bytes, long long N, long long K,
                          const char *x, long long x_nb1, int xt, int nx, float *y, long long y_nb1, int act) {
    const long long n0 = (long long)blockIdx.x * MV_ROWS;
    const qn_u8 *rows[2 * MV_ROWS];
#pragma unroll
    for (int r = 0; r < MV_ROWS; r++) {
        long long n = n0 + r < N ? n0 + r : N - 1;
        rows[r] = w + n * row_bytes;
        rows[MV_ROWS + r] = up ? up + n * row_bytes : rows[r];
    }
    for (int t = 0; t < nx; t++) {
        float out[2 * MV_ROWS];
        if (up) qn_rows_dot<B, 2 * MV_ROWS>(rows, K, x + t * x_nb1, xt, out);
        else qn_rows_dot<B, MV_ROWS>(rows, K, x + t * x_nb1, xt, out);
        if (threadIdx.x != 0) continue;
#pragma unroll
        for (int r = 0; r < MV_ROWS; r++)
            if (n0 + r < N) y[t * y_nb1 + n0 + r] = up ? qn_act_apply(act, out[r], 0.0f) * out[MV_ROWS + r] : out[r];
    }
}

/* Expert-routed: pair j = blockIdx.y is (slot j % top_k, token j / top_k);
 * its expert is ids[slot + token * ids_nb1]; x is the token's row (x_slot_nb
 * 0) or the pair's own row (x [K, top_k, M]); y [N, top_k, M]. An id out of
 * range writes nothing and raises QN_FLAG_BAD_EXPERT. */
template <typename B>
__device__ void qn_matvec_id(const qn_u8 *w, const qn_u8 *up, long long row_bytes, long long expert_bytes,
                             int n_experts, long long N, long long K, const int *ids, long long ids_nb1, int top_k,
                             const char *x, long long x_slot_nb, long long x_nb1, int xt, float *y, int act,
                             int *flags) {
    const int j = blockIdx.y, slot = j % top_k, tok = j / top_k;
    const int e = ids[slot + tok * ids_nb1];
    if (e < 0 || e >= n_experts) {
        if (threadIdx.x == 0 && blockIdx.x == 0) atomicOr(flags, QN_FLAG_BAD_EXPERT);
        return;
    }
    const long long off = (long long)e * expert_bytes;
    qn_matvec<B>(w + off, up ? up + off : 0, row_bytes, N, K, x + slot * x_slot_nb + tok * x_nb1, 0, xt, 1,
                    y + (long long)j * N, 0, act);
}

#define MATVEC(name)                                                                                            \
    extern "C" __global__ void __launch_bounds__(32 * MV_WARPS)                                                 \
        matvec_##name(const qn_u8 *w, const qn_u8 *up, long long row_bytes, long long N, long long K,           \
                      const char *x, long long x_nb1, int xt, int nx, float *y, long long y_nb1, int act) {      \
        qn_matvec<QN_CAT(qn_, name)>(w, up, row_bytes, N, K, x, x_nb1, xt, nx, y, y_nb1, act);                 \
    }                                                                                                           \
    extern "C" __global__ void __launch_bounds__(32 * MV_WARPS)                                                 \
        matvec_id_##name(const qn_u8 *w, const qn_u8 *up, long long row_bytes, long long expert_bytes,          \
                         int n_experts, long long N, long long K, const int *ids, long long ids_nb1, int top_k,  \
                         const char *x, long long x_slot_nb, long long x_nb1, int xt, float *y, int act,         \
                         int *flags) {                                                                           \
        qn_matvec_id<QN_CAT(qn_, name)>(w, up, row_bytes, expert_bytes, n_experts, N, K, ids, ids_nb1, top_k, x,  \
                                        x_slot_nb, x_nb1, xt, y, act, flags);                                   \
    }
#define MATVEC_EXPAND(name) MATVEC(name)
MATVEC_EXPAND(QN_BLOCK)
