/* What every op family shares: argument checks and launch geometry. */
#ifndef QN_OPS_OPS_H
#define QN_OPS_OPS_H

#include "core/internal.h"
#include "cuda/cuda.h"
#include "cuda/kernels/tensor.h"

/* The encoder is usable, and the tensor `name` of op `op` lies inside its
 * buffer on the encoder's device, with a known dtype, ne >= 1 and strides
 * >= 0 (nb[0] at least the element or block size). */
qn_status qn_op_check(const char *op, qn_encoder *enc, const char *name, const qn_tensor *t);
/* As qn_op_check, and the dtype is f32, f16 or bf16. */
qn_status qn_op_check_float(const char *op, qn_encoder *enc, const char *name, const qn_tensor *t);
/* The tensors have equal ne[0..3]. */
qn_status qn_op_same_shape(const char *op, const char *na, const qn_tensor *a, const char *nb,
                           const qn_tensor *b);

bool qn_dtype_is_float(qn_dtype t);

/* The views can touch a common byte (strides >= 0, as qn_op_check
 * ensures). */
bool qn_op_overlap(const qn_tensor *a, const qn_tensor *b);

/* An MLX affine weight's tensors agree with each other (src/ops/quant.c);
 * *cols gets its row length in weights. */
qn_status qn_mlx_weight_check(const char *op, qn_encoder *enc, const qn_mlx_weight *w, int64_t *cols);

/* The kernel's view of a tensor. */
qn_kt qn_op_kt(const qn_tensor *t);

/* Grid and block for the row kernels: a block per row (i1, i2, i3) as
 * (x, y, z), up to the grid's limits (the kernels stride), and threads over
 * ne0 (`units` per row). */
qn_dim3 qn_rows_grid(const qn_kt *t);
qn_dim3 qn_rows_block(long long units);

#endif
