/* The attention family's CPU kernels and their argument records (the ops in
 * src/ops/attention.c and src/ops/kv_cache.c fill them; the CUDA kernels of
 * the same names take the same fields). */
#ifndef QN_CPU_ATTENTION_H
#define QN_CPU_ATTENTION_H

#include "core/internal.h"
#include "cuda/kernels/attention_common.cuh"

typedef struct {
    qn_kt cache, src, pos;
} qn_kv_append_args;
void qn_cpu_kv_append(qn_device *dev, const void *args);

typedef struct {
    qn_kt out, q, k, v, pos, sinks; /* sinks.addr 0: none */
    qn_attn_params p;
} qn_flash_attn_args;
/* Decode and prefill alike: each query row on its own, in double. */
void qn_cpu_flash_attn(qn_device *dev, const void *args);

/* Argument checks the family's ops share (src/ops/kv_cache.c): a cache
 * [head_dim, capacity, n_kv_heads] of f16, bf16 or q8_0 with contiguous
 * rows, and pos an i32 tensor. */
qn_status qn_kv_cache_check(const char *op, qn_encoder *enc, const char *name, const qn_tensor *c);
qn_status qn_kv_pos_check(const char *op, qn_encoder *enc, const qn_tensor *pos);

#endif
