/* The element-wise family: qn_add, qn_mul, qn_scale. */
#include "cpu/cpu_ops.h"
#include "ops/ops.h"

#include <stdio.h>

static const char *const SRC = "elementwise.cu";

/* The CUDA kernels are specialised by dtype: binary_<dst>_<a>_<b>,
 * scale_<dst>_<a>, in a module per dst dtype. */
static qn_status launch(qn_encoder *enc, const char *name, qn_binary_args *r) {
    if (enc->dev->backend == QN_BACKEND_CPU) return qn_cpu_enqueue(enc, name, qn_cpu_binary, r, sizeof *r);
    char fn[48], defines[32];
    const char *d = qn_dtype_name(r->dst.dtype), *a = qn_dtype_name(r->a.dtype), *b = qn_dtype_name(r->b.dtype);
    qn_dim3 grid = qn_rows_grid(&r->dst), block = qn_rows_block(r->dst.ne[0]);
    snprintf(defines, sizeof defines, "-DQN_DST=%s", d);
    if (!r->has_b) {
        snprintf(fn, sizeof fn, "scale_%s_%s", d, a);
        void *args[] = {&r->dst, &r->a, &r->s};
        return qn_cuda_launch(enc, name, SRC, defines, fn, grid, block, 0, args);
    }
    snprintf(fn, sizeof fn, "binary_%s_%s_%s", d, a, b);
    void *args[] = {&r->dst, &r->a, &r->b, &r->op};
    return qn_cuda_launch(enc, name, SRC, defines, fn, grid, block, 0, args);
}

static qn_status binary(const char *op, int kind, qn_encoder *enc, qn_tensor dst, qn_tensor a, qn_tensor b) {
    QN_TRY(qn_op_check_float(op, enc, "dst", &dst));
    QN_TRY(qn_op_check_float(op, enc, "a", &a));
    QN_TRY(qn_op_check_float(op, enc, "b", &b));
    QN_TRY(qn_op_same_shape(op, "dst", &dst, "a", &a));
    for (int i = 0; i < 4; i++)
        if (b.ne[i] != 1 && b.ne[i] != a.ne[i])
            return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: b ne[%d] = %lld cannot broadcast to a's %lld", op, i,
                            (long long)b.ne[i], (long long)a.ne[i]);
    qn_binary_args r = {qn_op_kt(&dst), qn_op_kt(&a), qn_op_kt(&b), 1, kind, 0.0f};
    return launch(enc, kind == QN_BIN_ADD ? "add" : "mul", &r);
}

qn_status qn_add(qn_encoder *enc, qn_tensor dst, qn_tensor a, qn_tensor b) {
    return binary("qn_add", QN_BIN_ADD, enc, dst, a, b);
}

qn_status qn_mul(qn_encoder *enc, qn_tensor dst, qn_tensor a, qn_tensor b) {
    return binary("qn_mul", QN_BIN_MUL, enc, dst, a, b);
}

qn_status qn_scale(qn_encoder *enc, qn_tensor dst, qn_tensor a, float s) {
    QN_TRY(qn_op_check_float("qn_scale", enc, "dst", &dst));
    QN_TRY(qn_op_check_float("qn_scale", enc, "a", &a));
    QN_TRY(qn_op_same_shape("qn_scale", "dst", &dst, "a", &a));
    qn_binary_args r = {qn_op_kt(&dst), qn_op_kt(&a), qn_op_kt(&a), 0, QN_BIN_MUL, s};
    return launch(enc, "scale", &r);
}
