/* The mixture-of-experts routing family: qn_moe_route (choose each token's
 * experts and their weights) and qn_moe_combine (the weighted sum of the
 * experts' outputs, plus an optionally gated shared expert). */
#include "ops/transformer.h"

#include <math.h>

/* Tokens per block of the routing kernel: one warp each. */
#define ROUTE_WARPS 4

qn_status qn_moe_route(qn_encoder *enc, qn_tensor ids, qn_tensor weights, qn_tensor logits, qn_tensor bias,
                       qn_tensor expert_scale, const qn_moe_route_params *p) {
    const char *op = "qn_moe_route";
    QN_TRY(qn_op_check_float(op, enc, "logits", &logits));
    if (!p) return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: params is NULL", op);
    int64_t n = logits.ne[0], tokens = logits.ne[1];
    if (logits.ne[2] != 1 || logits.ne[3] != 1)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: logits [%lld,%lld,%lld,%lld] must be [n_experts, tokens]", op,
                        (long long)n, (long long)tokens, (long long)logits.ne[2], (long long)logits.ne[3]);
    if (n > QN_MOE_MAX_EXPERTS)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %lld experts (at most %d)", op, (long long)n, QN_MOE_MAX_EXPERTS);
    if (p->top_k < 1 || p->top_k > n || p->top_k > QN_MOE_MAX_TOP_K)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: top_k %d not in 1..%lld", op, p->top_k,
                        (long long)(n < QN_MOE_MAX_TOP_K ? n : QN_MOE_MAX_TOP_K));
    if ((int)p->gating < QN_MOE_SOFTMAX || (int)p->gating > QN_MOE_SOFTMAX_TOPK)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: gating %d is not a qn_moe_gating", op, (int)p->gating);
    if (!isfinite(p->scale)) return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: scale %g is not finite", op, (double)p->scale);
    QN_TRY(qn_op_check_i32(op, enc, "ids", &ids, p->top_k, tokens));
    QN_TRY(qn_op_check(op, enc, "weights", &weights));
    if (weights.dtype != QN_F32 || weights.ne[0] != p->top_k || weights.ne[1] != tokens || weights.ne[2] != 1 ||
        weights.ne[3] != 1)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: weights is %s [%lld,%lld,%lld,%lld], expected f32 [%d,%lld]", op,
                        qn_dtype_name(weights.dtype), (long long)weights.ne[0], (long long)weights.ne[1],
                        (long long)weights.ne[2], (long long)weights.ne[3], p->top_k, (long long)tokens);
    QN_TRY(qn_op_check_vector(op, enc, "bias", &bias, n, true));
    QN_TRY(qn_op_check_vector(op, enc, "expert_scale", &expert_scale, n, true));
    qn_moe_route_args a = {qn_op_kt(&ids),        qn_op_kt(&weights),      qn_op_kt(&logits),
                           qn_op_kt_opt(&bias),   qn_op_kt_opt(&expert_scale), p->top_k,
                           (int)p->gating,        p->normalize,            qn_op_has(&bias),
                           qn_op_has(&expert_scale), p->scale};
    if (enc->dev->backend == QN_BACKEND_CPU) return qn_cpu_enqueue(enc, "moe_route", qn_cpu_moe_route, &a, sizeof a);
    void *args[] = {&a};
    qn_dim3 grid = {(unsigned)((tokens + ROUTE_WARPS - 1) / ROUTE_WARPS), 1, 1}, block = {32 * ROUTE_WARPS, 1, 1};
    return qn_cuda_launch(enc, "moe_route", "moe_route.cu", "", "moe_route", grid, block, 0, args);
}

qn_status qn_moe_combine(qn_encoder *enc, qn_tensor dst, qn_tensor experts, qn_tensor weights, qn_tensor shared,
                         qn_tensor shared_gate) {
    const char *op = "qn_moe_combine";
    QN_TRY(qn_op_check_float(op, enc, "dst", &dst));
    QN_TRY(qn_op_check_float(op, enc, "experts", &experts));
    QN_TRY(qn_op_check(op, enc, "weights", &weights));
    int64_t n = dst.ne[0], tokens = dst.ne[1], k = experts.ne[1];
    if (dst.ne[2] != 1 || dst.ne[3] != 1 || experts.ne[0] != n || experts.ne[2] != tokens || experts.ne[3] != 1)
        return qn_error(QN_ERR_INVALID_ARGUMENT,
                        "%s: experts [%lld,%lld,%lld,%lld] is not [n, top_k, tokens] for dst [%lld,%lld,%lld,%lld] = [n, tokens]",
                        op, (long long)experts.ne[0], (long long)experts.ne[1], (long long)experts.ne[2],
                        (long long)experts.ne[3], (long long)dst.ne[0], (long long)dst.ne[1], (long long)dst.ne[2],
                        (long long)dst.ne[3]);
    if (weights.dtype != QN_F32 || weights.ne[0] != k || weights.ne[1] != tokens || weights.ne[2] != 1 ||
        weights.ne[3] != 1)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: weights is %s [%lld,%lld,%lld,%lld], expected f32 [%lld,%lld]", op,
                        qn_dtype_name(weights.dtype), (long long)weights.ne[0], (long long)weights.ne[1],
                        (long long)weights.ne[2], (long long)weights.ne[3], (long long)k, (long long)tokens);
    if (qn_op_has(&shared)) {
        QN_TRY(qn_op_check_float(op, enc, "shared", &shared));
        QN_TRY(qn_op_same_shape(op, "shared", &shared, "dst", &dst));
    }
    if (qn_op_has(&shared_gate)) {
        if (!qn_op_has(&shared))
            return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: shared_gate given without shared", op);
        QN_TRY(qn_op_check(op, enc, "shared_gate", &shared_gate));
        if (shared_gate.dtype != QN_F32 || shared_gate.ne[0] != 1 || shared_gate.ne[1] != tokens ||
            shared_gate.ne[2] != 1 || shared_gate.ne[3] != 1)
            return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: shared_gate is %s [%lld,%lld,%lld,%lld], expected f32 [1,%lld]",
                            op, qn_dtype_name(shared_gate.dtype), (long long)shared_gate.ne[0],
                            (long long)shared_gate.ne[1], (long long)shared_gate.ne[2], (long long)shared_gate.ne[3],
                            (long long)tokens);
    }
    qn_moe_combine_args a = {qn_op_kt(&dst), qn_op_kt(&experts), qn_op_kt(&weights), qn_op_kt_opt(&shared),
                             qn_op_kt_opt(&shared_gate), qn_op_has(&shared), qn_op_has(&shared_gate)};
    if (enc->dev->backend == QN_BACKEND_CPU)
        return qn_cpu_enqueue(enc, "moe_combine", qn_cpu_moe_combine, &a, sizeof a);
    return qn_op_launch_typed(enc, "moe_combine", "moe_route.cu", "moe_combine", dst.dtype, experts.dtype,
                              qn_rows_grid(&a.dst), qn_rows_block(n), &a);
}
