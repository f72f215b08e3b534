/* The activation family: qn_unary, qn_softcap, qn_glu, qn_glu_fused. One
 * CPU reference and the kernels unary_<dst>_<x> and glu_<dst>_<x>. */
#include "ops/transformer.h"

#include <math.h>

static qn_status check_act(const char *op, qn_act act) {
    if ((int)act < QN_ACT_SILU || (int)act > QN_ACT_SIGMOID)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: act %d is not a qn_act", op, (int)act);
    return QN_OK;
}

static qn_status launch(qn_encoder *enc, const char *name, qn_act_args *a) {
    if (enc->dev->backend == QN_BACKEND_CPU) return qn_cpu_enqueue(enc, name, qn_cpu_act, a, sizeof *a);
    return qn_op_launch_typed(enc, name, "activation.cu", a->has_up ? "glu" : "unary", (qn_dtype)a->dst.dtype,
                              (qn_dtype)a->x.dtype, qn_rows_grid(&a->dst), qn_rows_block(a->dst.ne[0]), a);
}

static const char *const ACT_NAMES[4] = {"silu", "gelu_tanh", "gelu_erf", "sigmoid"};
static const char *const GLU_NAMES[4] = {"swiglu", "geglu_tanh", "geglu_erf", "sigmoid_mul"};

static qn_status unary(const char *op, qn_encoder *enc, qn_tensor dst, qn_tensor x, int act, float cap,
                       const char *name) {
    QN_TRY(qn_op_check_float(op, enc, "dst", &dst));
    QN_TRY(qn_op_check_float(op, enc, "x", &x));
    QN_TRY(qn_op_same_shape(op, "dst", &dst, "x", &x));
    qn_act_args a = {.dst = qn_op_kt(&dst), .x = qn_op_kt(&x), .act = act, .cap = cap};
    return launch(enc, name, &a);
}

qn_status qn_unary(qn_encoder *enc, qn_tensor dst, qn_tensor x, qn_act act) {
    QN_TRY(check_act("qn_unary", act));
    return unary("qn_unary", enc, dst, x, (int)act, 0.0f, ACT_NAMES[act]);
}

qn_status qn_softcap(qn_encoder *enc, qn_tensor dst, qn_tensor x, float cap) {
    if (!(cap > 0.0f) || isinf(cap))
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_softcap: cap %g is not finite and > 0", (double)cap);
    return unary("qn_softcap", enc, dst, x, QN_ACT_K_SOFTCAP, cap, "softcap");
}

static qn_status glu(const char *op, qn_encoder *enc, qn_tensor dst, qn_tensor gate, qn_tensor up, qn_act act) {
    QN_TRY(check_act(op, act));
    QN_TRY(qn_op_check_float(op, enc, "dst", &dst));
    QN_TRY(qn_op_check_float(op, enc, "gate", &gate));
    QN_TRY(qn_op_check_float(op, enc, "up", &up));
    QN_TRY(qn_op_same_shape(op, "dst", &dst, "gate", &gate));
    QN_TRY(qn_op_same_shape(op, "dst", &dst, "up", &up));
    if (gate.dtype != up.dtype)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: gate is %s and up %s (they must match)", op,
                        qn_dtype_name(gate.dtype), qn_dtype_name(up.dtype));
    qn_act_args a = {.dst = qn_op_kt(&dst), .x = qn_op_kt(&gate), .up = qn_op_kt(&up), .act = (int)act, .has_up = 1};
    return launch(enc, GLU_NAMES[act], &a);
}

qn_status qn_glu(qn_encoder *enc, qn_tensor dst, qn_tensor gate, qn_tensor up, qn_act act) {
    return glu("qn_glu", enc, dst, gate, up, act);
}

qn_status qn_glu_fused(qn_encoder *enc, qn_tensor dst, qn_tensor x, qn_act act) {
    const char *op = "qn_glu_fused";
    QN_TRY(qn_op_check_float(op, enc, "x", &x));
    QN_TRY(qn_op_check_float(op, enc, "dst", &dst));
    if (x.ne[0] != 2 * dst.ne[0] || x.ne[1] != dst.ne[1] || x.ne[2] != dst.ne[2] || x.ne[3] != dst.ne[3])
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: x [%lld,%lld,%lld,%lld] is not dst [%lld,%lld,%lld,%lld] with ne[0] doubled",
                        op, (long long)x.ne[0], (long long)x.ne[1], (long long)x.ne[2], (long long)x.ne[3],
                        (long long)dst.ne[0], (long long)dst.ne[1], (long long)dst.ne[2], (long long)dst.ne[3]);
    /* two views of x: the gate half, then the up half of each row */
    qn_tensor gate = x, up = x;
    gate.ne[0] = up.ne[0] = dst.ne[0];
    up.offset += (size_t)(dst.ne[0] * x.nb[0]);
    return glu(op, enc, dst, gate, up, act);
}
