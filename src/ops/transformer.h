/* Checks and launch helpers shared by the transformer op families (norm.c,
 * rope.c, activation.c, softmax.c, embed.c, moe_route.c, sample.c). */
#ifndef QN_OPS_TRANSFORMER_H
#define QN_OPS_TRANSFORMER_H

#include "cpu/transformer_ops.h"
#include "ops/ops.h"

#include <stdio.h>

static inline bool qn_op_has(const qn_tensor *t) { return t->buf != NULL; }

/* The kernel's view of an optional tensor: zeros when absent. */
static inline qn_kt qn_op_kt_opt(const qn_tensor *t) {
    qn_kt none = {0, {1, 1, 1, 1}, {0, 0, 0, 0}, 0, 0};
    return qn_op_has(t) ? qn_op_kt(t) : none;
}

/* An optional vector of n values (a weight, a bias, frequency factors):
 * absent, or ne = [n, 1, 1, 1] of a float dtype (f32 only if f32_only). */
static inline qn_status qn_op_check_vector(const char *op, qn_encoder *enc, const char *name, const qn_tensor *t,
                                           int64_t n, bool f32_only) {
    if (!qn_op_has(t)) return QN_OK;
    QN_TRY(qn_op_check_float(op, enc, name, t));
    if (f32_only && t->dtype != QN_F32)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %s is %s (expected f32)", op, name, qn_dtype_name(t->dtype));
    if (t->ne[0] != n || t->ne[1] != 1 || t->ne[2] != 1 || t->ne[3] != 1)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %s is [%lld,%lld,%lld,%lld], expected [%lld]", op, name,
                        (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3],
                        (long long)n);
    return QN_OK;
}

/* An i32 tensor of exactly [n0, n1, 1, 1]. */
static inline qn_status qn_op_check_i32(const char *op, qn_encoder *enc, const char *name, const qn_tensor *t,
                                        int64_t n0, int64_t n1) {
    QN_TRY(qn_op_check(op, enc, name, t));
    if (t->dtype != QN_I32)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %s is %s (expected i32)", op, name, qn_dtype_name(t->dtype));
    if (t->ne[0] != n0 || t->ne[1] != n1 || t->ne[2] != 1 || t->ne[3] != 1)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %s is [%lld,%lld,%lld,%lld], expected [%lld,%lld]", op, name,
                        (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3],
                        (long long)n0, (long long)n1);
    return QN_OK;
}

/* Launch `prefix`_<dst dtype>_<src dtype> of `source` with the argument
 * record as its one parameter. */
static inline qn_status qn_op_launch_typed(qn_encoder *enc, const char *op, const char *source, const char *prefix,
                                           qn_dtype dt, qn_dtype st, qn_dim3 grid, qn_dim3 block, void *record) {
    char fn[64];
    snprintf(fn, sizeof fn, "%s_%s_%s", prefix, qn_dtype_name(dt), qn_dtype_name(st));
    void *args[] = {record};
    return qn_cuda_launch(enc, op, source, "", fn, grid, block, 0, args);
}

#endif
