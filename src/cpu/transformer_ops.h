/* The CPU references of the transformer ops (norm.c, rope.c, activation.c,
 * softmax.c, embed.c, moe_route.c, sample.c in this folder); their argument
 * records are in cuda/kernels/ops_math.cuh, shared with the CUDA kernels. */
#ifndef QN_CPU_TRANSFORMER_OPS_H
#define QN_CPU_TRANSFORMER_OPS_H

#include "core/internal.h"
#include "cuda/kernels/ops_math.cuh"

void qn_cpu_norm(qn_device *dev, const void *args);
void qn_cpu_rope(qn_device *dev, const void *args);
void qn_cpu_rope_qkv(qn_device *dev, const void *args);
void qn_cpu_act(qn_device *dev, const void *args);
void qn_cpu_softmax(qn_device *dev, const void *args);
void qn_cpu_embed(qn_device *dev, const void *args);
void qn_cpu_moe_route(qn_device *dev, const void *args);
void qn_cpu_moe_combine(qn_device *dev, const void *args);
void qn_cpu_sample(qn_device *dev, const void *args);

/* Sum of (x[i] - mean)^2 over a row of n, in order (the CPU norms' sums). */
static inline float qn_cpu_row_sumsq(const char *x, long long nb, int dt, float mean, long long n) {
    float sq = 0.0f;
    for (long long i = 0; i < n; i++) {
        float v = qn_load_f32(x + i * nb, dt) - mean;
        sq += v * v;
    }
    return sq;
}

#endif
