/* The CPU reference kernels and their argument records. An op in src/ops
 * fills a record and either enqueues the CPU function with it or launches
 * the CUDA kernel of the same name with the same fields. */
#ifndef QN_CPU_CPU_OPS_H
#define QN_CPU_CPU_OPS_H

#include "core/internal.h"
#include "cuda/kernels/tensor.h"

typedef struct {
    qn_kt dst;
    float value;
} qn_fill_args;
void qn_cpu_fill(qn_device *dev, const void *args);

typedef struct {
    qn_kt dst, src;
    long long units; /* copy_bytes: elements (blocks) per row */
    int unit_bytes;
} qn_copy_args;
void qn_cpu_copy_convert(qn_device *dev, const void *args);
void qn_cpu_copy_bytes(qn_device *dev, const void *args);
void qn_cpu_copy_dequant(qn_device *dev, const void *args);

typedef struct {
    qn_kt dst, src, idx;
} qn_set_rows_args;
void qn_cpu_set_rows(qn_device *dev, const void *args);

typedef struct {
    qn_kt dst, a, b;
    int has_b; /* 0: dst = a * s */
    int op;    /* QN_BIN_ADD, QN_BIN_MUL */
    float s;
} qn_binary_args;
void qn_cpu_binary(qn_device *dev, const void *args);

typedef struct {
    float *dst;
    const float *src;
    long long nblocks; /* of 32 values */
    int type;          /* QN_Q4_0 or QN_Q8_0 */
} qn_qdq_args;
void qn_cpu_qdq(qn_device *dev, const void *args);

typedef struct {
    qn_kt dst, q, scales, biases;
    int bits, group;
} qn_mlx_args;
void qn_cpu_mlx_dequant(qn_device *dev, const void *args);

typedef struct {
    qn_kt y, w, up, x, ids; /* up: the GLU's second weight (== w without) */
    int glu, act;           /* act: a qn_act */
    int n_experts, top_k;   /* routed form */
    uint64_t flags;         /* the encoder's flag word (routed form; CPU) */
    /* MLX affine weights (bits > 0): w and up are the packed q, these their
     * scales and biases. */
    qn_kt w_scales, w_biases, up_scales, up_biases;
    int bits, group;
} qn_qmatmul_args;
void qn_cpu_qmatmul(qn_device *dev, const void *args);
void qn_cpu_qmatmul_id(qn_device *dev, const void *args);

#endif
