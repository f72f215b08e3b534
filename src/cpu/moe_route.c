/* CPU reference of mixture-of-experts routing (top-k selection of experts
 * per token) and of the combination of the experts' outputs; tokens split
 * across threads. */
#include "cpu/transformer_ops.h"

#include <math.h>

static void route_tokens(void *ctx, int64_t begin, int64_t end) {
    const qn_moe_route_args *a = ctx;
    int n = (int)a->logits.ne[0];
    float p[QN_MOE_MAX_EXPERTS], sel[QN_MOE_MAX_EXPERTS];
    unsigned char taken[QN_MOE_MAX_EXPERTS];
    for (int64_t t = begin; t < end; t++) {
        float mx = -INFINITY, sum = 0.0f;
        for (int e = 0; e < n; e++) {
            p[e] = qn_load_f32(qn_kt_at(&a->logits, e, t, 0, 0), a->logits.dtype);
            mx = fmaxf(mx, p[e]);
        }
        if (a->gating == QN_MOE_K_SOFTMAX) {
            for (int e = 0; e < n; e++) sum += p[e] = expf(p[e] - mx);
            for (int e = 0; e < n; e++) p[e] /= sum;
        } else if (a->gating == QN_MOE_K_SIGMOID) {
            for (int e = 0; e < n; e++) p[e] = qn_sigmoid(p[e]);
        }
        for (int e = 0; e < n; e++) {
            sel[e] = p[e] + (a->has_bias ? qn_load_f32(qn_kt_at(&a->bias, e, 0, 0, 0), QN_KT_F32) : 0.0f);
            taken[e] = 0;
        }
        int ids[QN_MOE_MAX_TOP_K];
        float w[QN_MOE_MAX_TOP_K], wsum = 0.0f;
        for (int k = 0; k < a->top_k; k++) {
            int best = -1;
            for (int e = 0; e < n; e++) /* strictly greater: ties go to the lower id */
                if (!taken[e] && (best < 0 || sel[e] > sel[best])) best = e;
            taken[best] = 1;
            ids[k] = best;
            w[k] = p[best];
        }
        if (a->gating == QN_MOE_K_SOFTMAX_TOPK) {
            /* the chosen logits' softmax; ids[0] holds the largest */
            float s = 0.0f, m0 = w[0];
            for (int k = 0; k < a->top_k; k++) s += w[k] = expf(w[k] - m0);
            for (int k = 0; k < a->top_k; k++) w[k] /= s;
        }
        for (int k = 0; k < a->top_k; k++) wsum += w[k];
        for (int k = 0; k < a->top_k; k++) {
            float v = w[k];
            if (a->normalize) v /= fmaxf(wsum, 6.103515625e-5f);
            v *= a->scale;
            if (a->has_escale) v *= qn_load_f32(qn_kt_at(&a->escale, ids[k], 0, 0, 0), QN_KT_F32);
            *(int *)qn_kt_at(&a->ids, k, t, 0, 0) = ids[k];
            *(float *)qn_kt_at(&a->weights, k, t, 0, 0) = v;
        }
    }
}

void qn_cpu_moe_route(qn_device *dev, const void *args) {
    const qn_moe_route_args *a = args;
    qn_cpu_parallel_for(dev, a->logits.ne[1], route_tokens, (void *)a);
}

static void combine_tokens(void *ctx, int64_t begin, int64_t end) {
    const qn_moe_combine_args *a = ctx;
    long long n = a->dst.ne[0];
    int top_k = (int)a->experts.ne[1];
    for (int64_t t = begin; t < end; t++) {
        float g = a->has_gate ? qn_sigmoid(qn_load_f32(qn_kt_at(&a->gate, 0, t, 0, 0), QN_KT_F32)) : 1.0f;
        for (long long i = 0; i < n; i++) {
            float v = 0.0f;
            for (int k = 0; k < top_k; k++)
                v += qn_load_f32(qn_kt_at(&a->weights, k, t, 0, 0), QN_KT_F32) *
                     qn_load_f32(qn_kt_at(&a->experts, i, k, t, 0), a->experts.dtype);
            if (a->has_shared) v += g * qn_load_f32(qn_kt_at(&a->shared, i, t, 0, 0), a->shared.dtype);
            qn_store_f32(qn_kt_at(&a->dst, i, t, 0, 0), a->dst.dtype, v);
        }
    }
}

void qn_cpu_moe_combine(qn_device *dev, const void *args) {
    const qn_moe_combine_args *a = args;
    qn_cpu_parallel_for(dev, a->dst.ne[1], combine_tokens, (void *)a);
}
