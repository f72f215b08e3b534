/* Element math of the transformer ops (norms, RoPE, activations, sampling),
 * shared by their CPU references (src/cpu) and their CUDA kernels, so both
 * backends evaluate the same formulas in the same order. This file is
 * embedded for NVRTC like tensor.h; in the library it is plain C.
 *
 * Transcendentals (expf, tanhf, sinf, ...) are the C library's on the CPU
 * and CUDA's on the GPU: they may differ in the last bit, so GPU results
 * match the CPU within a few ulps, not bit for bit. */
#ifndef QN_KERNELS_OPS_MATH_CUH
#define QN_KERNELS_OPS_MATH_CUH

#include "tensor.h"

#if !defined(__CUDACC_RTC__) && !defined(__CUDACC__)
#include <math.h>
#endif

/* ---- activations (qn_act values, and soft-capping) */

#define QN_ACT_K_SILU 0
#define QN_ACT_K_GELU_TANH 1
#define QN_ACT_K_GELU_ERF 2
#define QN_ACT_K_SIGMOID 3
#define QN_ACT_K_SOFTCAP 4 /* cap * tanh(x / cap) */

QN_HD float qn_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

QN_HD float qn_act_apply(int act, float x, float cap) {
    switch (act) {
    case QN_ACT_K_SILU: return x / (1.0f + expf(-x));
    case QN_ACT_K_GELU_TANH: return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * x * (1.0f + 0.044715f * x * x)));
    case QN_ACT_K_GELU_ERF: return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
    case QN_ACT_K_SIGMOID: return qn_sigmoid(x);
    default: return cap * tanhf(x / cap);
    }
}

/* ---- norms */

#define QN_NORM_RMS 0
#define QN_NORM_L2 1
#define QN_NORM_LAYER 2

/* The factor a row of n elements is multiplied by, from its sum of squares
 * (LAYER: of the differences from the mean, which the kernels sum in a
 * second pass rather than as E[x^2] - E[x]^2, which cancels badly). */
QN_HD float qn_norm_scale(int kind, float sumsq, long long n, float eps) {
    if (kind == QN_NORM_L2) return 1.0f / fmaxf(sqrtf(sumsq), eps);
    return 1.0f / sqrtf(sumsq / (float)n + eps);
}

/* ---- RoPE (see qn_rope_params in quanta.h) */

#define QN_ROPE_K_NORMAL 0
#define QN_ROPE_K_NEOX 1
#define QN_ROPE_K_MULTI 2
#define QN_ROPE_K_IMULTI 3
#define QN_ROPE_K_VISION 4

/* What a RoPE kernel needs, derived on the host from qn_rope_params;
 * passed to kernels by value. */
typedef struct {
    int mode;
    int n_dims;
    float theta_scale; /* freq_base^(-2 / n_dims) */
    float freq_scale;
    float ext_factor;
    float attn_factor;
    float corr0, corr1; /* YaRN correction dimensions */
    int sections[4];
} qn_rope_k;

/* Rotated pairs of a row: pair i moves elements *a and *b. */
QN_HD int qn_rope_npairs(const qn_rope_k *r) { return r->mode == QN_ROPE_K_VISION ? r->n_dims : r->n_dims / 2; }

QN_HD void qn_rope_pair(const qn_rope_k *r, int i, int *a, int *b) {
    if (r->mode == QN_ROPE_K_NORMAL) {
        *a = 2 * i;
        *b = 2 * i + 1;
    } else if (r->mode == QN_ROPE_K_VISION) {
        *a = i;
        *b = i + r->n_dims;
    } else {
        *a = i;
        *b = i + r->n_dims / 2;
    }
}

/* cos and sin (times the magnitude) of pair i's angle for a token whose
 * positions are p[0..3] (p[0] only, for NORMAL and NEOX); ff is the pair's
 * frequency factor (1 without). */
QN_HD void qn_rope_cs(const qn_rope_k *r, int i, const int *p, float ff, float *c, float *s) {
    const int *sec = r->sections;
    float pos, expo = (float)i;
    if (r->mode == QN_ROPE_K_NORMAL || r->mode == QN_ROPE_K_NEOX) {
        pos = (float)p[0];
    } else if (r->mode == QN_ROPE_K_VISION) {
        /* two sections, each with its own exponent from zero */
        int sector = i % (sec[0] + sec[1]);
        pos = (float)(sector < sec[0] ? p[0] : p[1]);
        expo = (float)(sector < sec[0] ? sector : sector - sec[0]);
    } else {
        int sector = i % (sec[0] + sec[1] + sec[2] + sec[3]), ch;
        if (r->mode == QN_ROPE_K_IMULTI) {
            if (sector % 3 == 1 && sector < 3 * sec[1]) ch = 1;
            else if (sector % 3 == 2 && sector < 3 * sec[2]) ch = 2;
            else if (sector % 3 == 0 && sector < 3 * sec[0]) ch = 0;
            else ch = 3;
        } else {
            ch = sector < sec[0] ? 0 : sector < sec[0] + sec[1] ? 1 : sector < sec[0] + sec[1] + sec[2] ? 2 : 3;
        }
        /* a select, not p[ch]: a dynamic index would put p in local memory */
        pos = (float)(ch == 0 ? p[0] : ch == 1 ? p[1] : ch == 2 ? p[2] : p[3]);
    }
    float theta_extrap = pos * powf(r->theta_scale, expo) / ff;
    float theta_interp = r->freq_scale * theta_extrap, theta = theta_interp, mag = r->attn_factor;
    if (r->ext_factor != 0.0f) {
        /* YaRN: pairs below corr0 keep the unscaled angle, above corr1 the
         * scaled one, linear in between; the magnitude grows with the
         * scaling. */
        float y = ((float)i - r->corr0) / fmaxf(0.001f, r->corr1 - r->corr0);
        float mix = (1.0f - fminf(1.0f, fmaxf(0.0f, y))) * r->ext_factor;
        theta = theta_interp * (1.0f - mix) + theta_extrap * mix;
        mag *= 1.0f + 0.1f * logf(1.0f / r->freq_scale);
    }
    *c = cosf(theta) * mag;
    *s = sinf(theta) * mag;
}

/* ---- sampling */

/* The sampling kernels' block size. */
#define QN_SAMPLE_THREADS 1024
/* Ids a sampling block takes: the vocabulary is cut into slices of this
 * many (more for a large top_k, see QN_SAMPLE_MERGE), one block each. The
 * full-vocabulary draw walks the slices in order, then the ids of the one
 * holding the draw; the CPU walks the same way, so both backends pick the
 * same token from the same number. */
#define QN_SAMPLE_SLICE 4096
/* Most top-k candidates (slices x top_k) the merging block takes: slices
 * double in size until their candidates fit. */
#define QN_SAMPLE_MERGE 8192
/* Keys of a slice the top-k kernel stages in shared memory for its radix
 * passes (128 KB: the slices of a top_k up to 1024 over a 262144
 * vocabulary fit; larger ones are reread from memory); the merging block
 * stages the slices' candidates (up to QN_SAMPLE_MERGE, 64 KB) in the same
 * dynamic shared memory. */
#define QN_SAMPLE_STAGE_KEYS 32768

/* A float as an unsigned key with the same order; -0 takes the key of +0,
 * as the two compare equal (ties between them go to the lower id). */
QN_HD qn_u32 qn_float_key(float f) {
    qn_u32 u = qn_f32_bits(f);
    if (u == 0x80000000u) u = 0;
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/* A uniform number in [0, 1) from (seed, counter, row): SplitMix64's
 * finalizer over the three mixed together, top 24 bits. */
QN_HD float qn_sample_uniform(unsigned long long seed, int counter, long long row) {
    unsigned long long z = seed + 0x9E3779B97F4A7C15ull * ((unsigned long long)(unsigned)counter + 1ull) +
                           0xD1B54A32D192ED03ull * ((unsigned long long)row + 1ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)(z >> 40) * (1.0f / 16777216.0f);
}

/* ---- device helpers of the row kernels */
#if defined(__CUDACC_RTC__) || defined(__CUDACC__)

__device__ __forceinline__ float qn_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float qn_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* The sum (max) over the block; every thread gets it. blockDim.x is a
 * multiple of 32; red is 32 floats of shared memory. The leading barrier
 * lets a loop call this again while slower warps still read red. */
__device__ __forceinline__ float qn_block_sum(float v, float *red) {
    v = qn_warp_sum(v);
    __syncthreads();
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    v = (threadIdx.x & 31) < (blockDim.x >> 5) ? red[threadIdx.x & 31] : 0.0f;
    return qn_warp_sum(v);
}

__device__ __forceinline__ float qn_block_max(float v, float *red) {
    v = qn_warp_max(v);
    __syncthreads();
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    v = (threadIdx.x & 31) < (blockDim.x >> 5) ? red[threadIdx.x & 31] : __int_as_float(0xff800000);
    return qn_warp_max(v);
}

/* Elements i, i + step, i + 2 step, i + 3 step of a row as f32 (0 past n):
 * all four loads issue before any conversion, as in tensor.h's row bodies. */
__device__ __forceinline__ void qn_load4(float f[4], const char *p, long long nb, int dt, long long i, long long step,
                                         long long n) {
    qn_u32 v[4];
    for (int k = 0; k < 4; k++) v[k] = i + k * step < n ? qn_load_bits(p + (i + k * step) * nb, dt) : 0u;
    for (int k = 0; k < 4; k++) f[k] = qn_bits_to_f32(v[k], dt);
}
#endif

/* ---- argument records
 * An op fills one of these; the CPU reference gets a copy through
 * qn_cpu_enqueue and the CUDA kernel takes the same record by value (the
 * fields have the same layout in C and CUDA C++). Absent optional tensors
 * have has_* 0 and are never touched. */

typedef struct {
    qn_kt dst, x, w, bias;
    qn_kt b, sum; /* qn_add_rms_norm: x is a, sum = a + b stored first */
    qn_kt bw;     /* qn_norm_add_rms_norm: b is RMS-normed with weight bw first */
    int kind;     /* QN_NORM_* */
    int has_w, has_bias, has_b, has_bw;
    float eps, w_off;
} qn_norm_args;

typedef struct {
    qn_kt dst, x, pos, ff, w;
    qn_rope_k r;
    int has_ff;
    int norm; /* qn_rms_norm_rope: RMS-normalize each row first */
    int has_w;
    int dst_cache; /* qn_rms_norm_rope_append: dst is a KV cache [head_dim, capacity,
                      heads]; head h of token t goes to row (pos[0] + t) % capacity */
    float eps, w_off;
} qn_rope_args;

/* qn_rms_norm_rope_qkv: q's rows normed and rotated into q.dst, k's into
 * the K cache k.dst (k.dst_cache 1), v's appended to v_cache; q and k
 * share pos, ff, r, eps and w_off. */
typedef struct {
    qn_rope_args q, k;
    qn_kt v, v_cache;
} qn_rope_qkv_args;
/* The longest key row a q8_0 K cache takes there: the row is rotated into
 * this many floats (stack or shared memory) before it is quantized. The
 * attention ops take heads up to 512. */
#define QN_ROPE_QKV_Q8_MAX_D 512

typedef struct {
    qn_kt dst, x, up; /* glu: x is the gate */
    int act, has_up;
    float cap;
} qn_act_args;

typedef struct {
    qn_kt dst, x, mask;
    int has_mask;
    float scale;
} qn_softmax_args;

typedef struct {
    qn_kt dst, table, ids;
    float scale;
} qn_embed_args;

typedef struct {
    qn_kt ids, weights, logits, bias, escale;
    int top_k, gating, normalize, has_bias, has_escale;
    float scale;
} qn_moe_route_args;

typedef struct {
    qn_kt dst, experts, weights, shared, gate;
    int has_shared, has_gate;
} qn_moe_combine_args;

typedef struct {
    qn_kt token, logprob, logits, recent, counter;
    int has_logprob, has_recent, has_counter;
    int top_k;
    float temperature, top_p, min_p, penalty;
    unsigned long long seed;
    /* CUDA only: ids a block takes, the first row of this launch, the
     * scratch the blocks of a row merge through (scratch_row bytes a row)
     * and the rows' tickets (u32 counters, zero between launches) */
    long long slice, row0, scratch_row;
    unsigned long long scratch, tickets;
} qn_sample_args;

#define QN_MOE_K_SOFTMAX 0
#define QN_MOE_K_SIGMOID 1
#define QN_MOE_K_SOFTMAX_TOPK 2
#define QN_MOE_MAX_EXPERTS 1024
#define QN_MOE_MAX_TOP_K 64

#endif
