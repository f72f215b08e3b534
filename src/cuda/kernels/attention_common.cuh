/* What the attention kernels share with the CPU code (this file is compiled
 * by both, like tensor.h): the per-model parameters a kernel receives, which
 * keys a query sees, the q8_0 block rounding of the KV cache, and the launch
 * shapes the host plans with.
 *
 * Positions: query token t of a step is at position p0 + t, p0 read from
 * device memory when the kernel runs. Key position j lives in cache row
 * j % capacity (a ring; a cache longer than the context never wraps). */
#ifndef QN_KERNELS_ATTENTION_COMMON_CUH
#define QN_KERNELS_ATTENTION_COMMON_CUH

#include "tensor.h"

#if !defined(__CUDACC_RTC__) && !defined(__CUDACC__)
#include <math.h>
#endif

#ifndef QN_KT_Q8_0
#define QN_KT_Q8_0 8
#endif

#define QN_ATTN_MASK_NONE_ 0
#define QN_ATTN_MASK_CAUSAL_ 1
#define QN_ATTN_MASK_WINDOW_ 2

/* log2(e): kernels keep logits in base 2 (exp2 is one instruction). */
#define QN_ATTN_LOG2E 1.4426950408889634f


/* Partial softmaxes of prefill's split blocks: an op launches at most this
 * many splits (the reduce kernel keeps one weight per split in shared
 * memory). */
#define QN_ATTN_MAX_SPLITS 1024

/* Passed to the kernels by value; the same fields in C and CUDA C++. */
typedef struct {
    float scale;    /* logit = scale * q.k                          */
    float softcap;  /* 0: off                                       */
    int mask;       /* QN_ATTN_MASK_*_                              */
    int window;     /* window mask: keys p - window + 1 .. p         */
    int head_dim;
    int n_tokens;   /* query tokens of the step                     */
    int n_q_heads;
    int n_kv_heads;
    int group;      /* n_q_heads / n_kv_heads                        */
    int capacity;   /* cache rows                                   */
    int n_splits;   /* key range split across this many blocks      */
    int stages;     /* decode: shared-memory buffers a warp streams through */
} qn_attn_params;

/* The keys query token t sees: positions [*lo, *hi). The newest position in
 * the cache is p0 + n_tokens - 1; the ring holds the last `capacity`. lo is
 * nondecreasing and hi nondecreasing in t, so the first and last token of a
 * group of rows bound the whole group's keys. */
QN_HD void qn_attn_keys(const qn_attn_params *p, int p0, int t, int *lo, int *hi) {
    int end = p0 + p->n_tokens;
    int l = end - p->capacity;
    if (l < 0) l = 0;
    int h = p->mask == QN_ATTN_MASK_NONE_ ? end : p0 + t + 1;
    if (p->mask == QN_ATTN_MASK_WINDOW_ && p0 + t + 1 - p->window > l) l = p0 + t + 1 - p->window;
    *lo = l;
    *hi = h;
}

/* The step's first position, from device memory; a negative value (an
 * unset pos) reads as 0 so every index stays inside the cache. */
QN_HD int qn_attn_p0(const qn_kt *pos) {
    int p0 = *(const int *)pos->addr;
    return p0 < 0 ? 0 : p0;
}

/* q8_0 as ggml rounds it: a block of 32 values shares d = amax / 127 (kept
 * as f16), each value stored as round(x / d) with x / d computed as x times
 * 1 / d in f32, halves rounded away from zero. */
QN_HD float qn_q8_0_inverse(float amax, qn_u16 *d_bits) {
    float d = amax / 127.0f;
    *d_bits = qn_f32_to_f16_bits(d);
    return d != 0.0f ? 1.0f / d : 0.0f;
}

QN_HD signed char qn_q8_0_round(float x, float inv) { return (signed char)roundf(x * inv); }

/* The cache row of new token t, head h: position p0 + t in the ring. */
QN_HD char *qn_kv_row(const qn_kt *cache, int p0, long long t, long long h) {
    return qn_kt_at(cache, 0, (p0 + t) % cache->ne[1], h, 0);
}

#if defined(__CUDACC_RTC__) || defined(__CUDACC__)
/* One new row of d values (s: stride snb0, dtype st) converted into a cache
 * row dst of dtype ct (stride cnb0) by the whole block: f16 and bf16
 * through the shared row body, q8_0 a warp per block of 32 (its amax by
 * shuffles). blockDim.x is a multiple of 32. The CPU's counterpart is
 * qn_cpu_kv_append_row, with the same rounding. */
__device__ __forceinline__ void qn_kv_append_row(char *dst, int ct, long long cnb0, const char *s, long long snb0,
                                                 int st, long long d) {
    if (ct != QN_KT_Q8_0) {
        qn_row_convert(dst, cnb0, ct, s, snb0, st, threadIdx.x, d, blockDim.x);
        return;
    }
    const int lane = threadIdx.x % 32;
    for (long long b = threadIdx.x / 32; b < d / 32; b += blockDim.x / 32) {
        const float x = qn_load_f32(s + (b * 32 + lane) * snb0, st);
        float amax = fabsf(x);
        for (int o = 16; o > 0; o /= 2) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
        qn_u16 d_bits;
        const float inv = qn_q8_0_inverse(amax, &d_bits);
        char *blk = dst + b * cnb0;
        blk[2 + lane] = qn_q8_0_round(x, inv);
        if (lane == 0) *(qn_u16 *)blk = d_bits;
    }
}
#endif

/* ---- launch shapes (the host plans grids with them; the kernels are
 * compiled for them) */

/* Decode: tensor cores take a tile of 16 keys (the mma's M) against 8
 * query rows (its N) at a time. A block is QN_ATTN_DEC_WARPS(d) warps, each
 * streaming its own tiles of K and V through `stages` shared-memory buffers
 * (the host picks as many, up to 3, as the device's shared memory holds). */
#define QN_ATTN_DEC_ROWS 8
#define QN_ATTN_DEC_KEYS 16
#define QN_ATTN_DEC_WARPS(d) ((d) >= 512 ? 2 : 4)
#define QN_ATTN_DEC_MAX_STAGES 3
/* Decode blocks a multiprocessor holds at most (the kernel's launch bound;
 * shared memory sets what it really holds). */
#define QN_ATTN_DEC_MINB(d) ((d) <= 80 ? 3 : (d) <= 128 ? 2 : 1)
/* Clusters a row group's keys may be cut into (the merge keeps a weight
 * per cluster and row in shared memory). */
#define QN_ATTN_DEC_MAX_SPLITS 256
/* Decode blocks a cluster (sm_90 on; one before): they merge through each
 * other's shared memory. The head dims divide by it. */
#define QN_ATTN_DEC_CL 8
/* Tiles a warp takes before the keys are spread over another cluster: a
 * second tile costs less than a merge through global memory. */
#define QN_ATTN_DEC_TPW 2

/* Shared memory of a decode block, in bytes: q as f16/bf16 high and low
 * parts [2][8][d + 8]; per warp and stage a K and a V tile [2][16][d + 8]
 * halves, or for q8_0 the raw rows [2][16][row bytes rounded to 16] plus,
 * once per warp, the tile converted to f16 [2][16][d + 8] and its block
 * scales [2][16][d / 32] floats. The same memory then holds the merge: per
 * warp partial sums [8][d + 4] floats, (m, l) per warp and row, the
 * block's (m, l) per row, the warps' weights per row, per row a sink and
 * an output address, weights and maxima [2][QN_ATTN_DEC_MAX_SPLITS][8] and
 * per-row factors. Rows of d + 8 halves (d + 4 floats) keep ldmatrix and
 * the partial stores off shared banks. */
QN_HD int qn_attn_dec_q8_row(int d) { return (d / 32 * 34 + 15) / 16 * 16; }
QN_HD int qn_attn_dec_q_bytes(int d) { return 2 * QN_ATTN_DEC_ROWS * (d + 8) * 2; }
QN_HD int qn_attn_dec_stage_bytes(int d, int q8) {
    return q8 ? 2 * QN_ATTN_DEC_KEYS * qn_attn_dec_q8_row(d) : 2 * QN_ATTN_DEC_KEYS * (d + 8) * 2;
}
QN_HD int qn_attn_dec_conv_bytes(int d, int q8) {
    return q8 ? 2 * QN_ATTN_DEC_KEYS * (d + 8) * 2 + 2 * QN_ATTN_DEC_KEYS * (d / 32) * 4 : 0;
}
QN_HD int qn_attn_dec_merge_bytes(int d) {
    const int w = QN_ATTN_DEC_WARPS(d);
    return (w * QN_ATTN_DEC_ROWS * (d + 4) + 3 * w * QN_ATTN_DEC_ROWS + 5 * QN_ATTN_DEC_ROWS +
            2 * QN_ATTN_DEC_MAX_SPLITS * QN_ATTN_DEC_ROWS + 2 * QN_ATTN_DEC_ROWS) * 4;
}
QN_HD int qn_attn_dec_smem(int d, int q8, int stages) {
    const int pipe = qn_attn_dec_q_bytes(d) +
                     QN_ATTN_DEC_WARPS(d) * (stages * qn_attn_dec_stage_bytes(d, q8) + qn_attn_dec_conv_bytes(d, q8));
    const int merge = qn_attn_dec_merge_bytes(d);
    return pipe > merge ? pipe : merge;
}

/* Prefill: 64 query rows a block (4 warps of 16), key tiles of 64 (32 at
 * head 512, where a block also covers half the value columns). */
#define QN_ATTN_PF_WARPS 4
#define QN_ATTN_PF_ROWS 64
#define QN_ATTN_PF_KEYS(d) ((d) <= 256 ? 64 : 32)
#define QN_ATTN_PF_DV(d) ((d) <= 256 ? (d) : 256)
/* Shared memory: Q [64][d + 8], K [keys][d + 8], V [keys][dv + 8] halves
 * (8 halves of padding keep ldmatrix rows on distinct banks). */
#define QN_ATTN_PF_SMEM(d)                                                                              \
    ((QN_ATTN_PF_ROWS * ((d) + 8) + QN_ATTN_PF_KEYS(d) * ((d) + 8) + QN_ATTN_PF_KEYS(d) * (QN_ATTN_PF_DV(d) + 8)) * 2)
/* Prefill blocks resident per multiprocessor (the kernel's launch bound). */
#define QN_ATTN_PF_MINB(d) ((d) <= 128 ? 3 : (d) <= 256 ? 2 : 1)

#endif
