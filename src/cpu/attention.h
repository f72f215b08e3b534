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
/* One new row of d values (s: stride snb0, dtype st) converted into a cache
 * row dst of dtype ct (f16, bf16 or q8_0; stride cnb0), rounded as the CUDA
 * kernels' qn_kv_append_row rounds. */
void qn_cpu_kv_append_row(char *dst, int ct, long long cnb0, const char *s, long long snb0, int st, long long d);

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
