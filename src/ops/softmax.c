/* qn_softmax: the row softmax with a scale and an optional broadcast mask. */
#include "ops/transformer.h"

#include <math.h>

qn_status qn_softmax(qn_encoder *enc, qn_tensor dst, qn_tensor x, qn_tensor mask, float scale) {
    const char *op = "qn_softmax";
    QN_TRY(qn_op_check_float(op, enc, "dst", &dst));
    QN_TRY(qn_op_check_float(op, enc, "x", &x));
    QN_TRY(qn_op_same_shape(op, "dst", &dst, "x", &x));
    if (!isfinite(scale)) return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: scale %g is not finite", op, (double)scale);
    if (qn_op_has(&mask)) {
        QN_TRY(qn_op_check(op, enc, "mask", &mask));
        if (mask.dtype != QN_F32 && mask.dtype != QN_F16)
            return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: mask is %s (expected f32 or f16)", op,
                            qn_dtype_name(mask.dtype));
        if (mask.ne[0] != x.ne[0])
            return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: mask ne[0] = %lld, x ne[0] = %lld (they must match)", op,
                            (long long)mask.ne[0], (long long)x.ne[0]);
        for (int i = 1; i < 4; i++)
            if (mask.ne[i] != 1 && mask.ne[i] != x.ne[i])
                return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: mask ne[%d] = %lld cannot broadcast to x's %lld", op, i,
                                (long long)mask.ne[i], (long long)x.ne[i]);
    }
    qn_softmax_args a = {.dst = qn_op_kt(&dst), .x = qn_op_kt(&x), .mask = qn_op_kt_opt(&mask),
                         .has_mask = qn_op_has(&mask), .scale = scale};
    if (enc->dev->backend == QN_BACKEND_CPU) return qn_cpu_enqueue(enc, "softmax", qn_cpu_softmax, &a, sizeof a);
    return qn_op_launch_typed(enc, "softmax", "softmax.cu", "softmax", dst.dtype, x.dtype, qn_rows_grid(&a.x),
                              qn_rows_block(x.ne[0]), &a);
}
