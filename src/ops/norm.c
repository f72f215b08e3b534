/* The norm family: qn_rms_norm, qn_add_rms_norm, qn_norm_add_rms_norm,
 * qn_l2_norm, qn_layer_norm.
 * One CPU reference and one kernel (norm_<dst>_<x>) serve all four; the
 * record says which. */
#include "ops/transformer.h"

#include <math.h>

static qn_status launch(qn_encoder *enc, const char *name, qn_norm_args *a) {
    if (enc->dev->backend == QN_BACKEND_CPU) return qn_cpu_enqueue(enc, name, qn_cpu_norm, a, sizeof *a);
    /* Threads enough to take the row in one trip of 4 elements each (up to
     * 1024): each trip of a pass waits a memory latency, so one row of a
     * decode token costs latencies, not bandwidth. */
    long long threads = ((a->x.ne[0] + 3) / 4 + 31) / 32 * 32;
    qn_dim3 block = {(unsigned)(threads < 1024 ? threads : 1024), 1, 1};
    return qn_op_launch_typed(enc, name, "norm.cu", "norm", (qn_dtype)a->dst.dtype, (qn_dtype)a->x.dtype,
                              qn_rows_grid(&a->x), block, a);
}

static qn_status check_common(const char *op, qn_encoder *enc, const qn_tensor *dst, const qn_tensor *x, float eps) {
    QN_TRY(qn_op_check_float(op, enc, "dst", dst));
    QN_TRY(qn_op_check_float(op, enc, "x", x));
    QN_TRY(qn_op_same_shape(op, "dst", dst, "x", x));
    if (!(eps >= 0.0f) || isinf(eps))
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: eps %g is not a finite value >= 0", op, (double)eps);
    return QN_OK;
}

static qn_status check_offset(const char *op, float off) {
    if (!isfinite(off)) return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: weight_offset %g is not finite", op, (double)off);
    return QN_OK;
}

qn_status qn_rms_norm(qn_encoder *enc, qn_tensor dst, qn_tensor x, qn_tensor w, float eps, float weight_offset) {
    const char *op = "qn_rms_norm";
    QN_TRY(check_common(op, enc, &dst, &x, eps));
    QN_TRY(qn_op_check_vector(op, enc, "w", &w, x.ne[0], false));
    QN_TRY(check_offset(op, weight_offset));
    qn_norm_args a = {.dst = qn_op_kt(&dst), .x = qn_op_kt(&x), .w = qn_op_kt_opt(&w), .kind = QN_NORM_RMS,
                      .has_w = qn_op_has(&w), .eps = eps, .w_off = weight_offset};
    return launch(enc, "rms_norm", &a);
}

/* qn_add_rms_norm, and with bw the sandwich form qn_norm_add_rms_norm. */
static qn_status add_norm(const char *op, const char *name, qn_encoder *enc, qn_tensor dst, qn_tensor sum,
                          qn_tensor a, qn_tensor b, const qn_tensor *bw, qn_tensor w, float eps, float weight_offset) {
    QN_TRY(check_common(op, enc, &dst, &a, eps));
    QN_TRY(qn_op_check_float(op, enc, "sum", &sum));
    QN_TRY(qn_op_check_float(op, enc, "b", &b));
    QN_TRY(qn_op_same_shape(op, "sum", &sum, "a", &a));
    QN_TRY(qn_op_same_shape(op, "b", &b, "a", &a));
    if (bw && !qn_op_has(bw)) return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: b_w is missing (b's norm weight)", op);
    if (bw) QN_TRY(qn_op_check_vector(op, enc, "b_w", bw, a.ne[0], false));
    QN_TRY(qn_op_check_vector(op, enc, "w", &w, a.ne[0], false));
    QN_TRY(check_offset(op, weight_offset));
    if (dst.buf == sum.buf && dst.offset == sum.offset)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: dst and sum are the same memory (dst must not overlap sum)", op);
    qn_norm_args r = {.dst = qn_op_kt(&dst), .x = qn_op_kt(&a), .w = qn_op_kt_opt(&w), .b = qn_op_kt(&b),
                      .sum = qn_op_kt(&sum), .bw = bw ? qn_op_kt(bw) : (qn_kt){0}, .kind = QN_NORM_RMS,
                      .has_w = qn_op_has(&w), .has_b = 1, .has_bw = bw != NULL, .eps = eps, .w_off = weight_offset};
    return launch(enc, name, &r);
}

qn_status qn_add_rms_norm(qn_encoder *enc, qn_tensor dst, qn_tensor sum, qn_tensor a, qn_tensor b, qn_tensor w,
                          float eps, float weight_offset) {
    return add_norm("qn_add_rms_norm", "add_rms_norm", enc, dst, sum, a, b, NULL, w, eps, weight_offset);
}

qn_status qn_norm_add_rms_norm(qn_encoder *enc, qn_tensor dst, qn_tensor sum, qn_tensor a, qn_tensor b,
                               qn_tensor b_w, qn_tensor w, float eps, float weight_offset) {
    return add_norm("qn_norm_add_rms_norm", "norm_add_rms_norm", enc, dst, sum, a, b, &b_w, w, eps, weight_offset);
}

qn_status qn_l2_norm(qn_encoder *enc, qn_tensor dst, qn_tensor x, float eps) {
    QN_TRY(check_common("qn_l2_norm", enc, &dst, &x, eps));
    qn_norm_args a = {.dst = qn_op_kt(&dst), .x = qn_op_kt(&x), .kind = QN_NORM_L2, .eps = eps};
    return launch(enc, "l2_norm", &a);
}

qn_status qn_layer_norm(qn_encoder *enc, qn_tensor dst, qn_tensor x, qn_tensor w, qn_tensor b, float eps) {
    const char *op = "qn_layer_norm";
    QN_TRY(check_common(op, enc, &dst, &x, eps));
    QN_TRY(qn_op_check_vector(op, enc, "w", &w, x.ne[0], false));
    QN_TRY(qn_op_check_vector(op, enc, "b", &b, x.ne[0], false));
    qn_norm_args a = {.dst = qn_op_kt(&dst), .x = qn_op_kt(&x), .w = qn_op_kt_opt(&w), .bias = qn_op_kt_opt(&b),
                      .kind = QN_NORM_LAYER, .has_w = qn_op_has(&w), .has_bias = qn_op_has(&b), .eps = eps,
                      .w_off = 0.0f};
    return launch(enc, "layer_norm", &a);
}
