/* Mixture-of-experts routing and combination.
 *
 * moe_route: logits [n_experts, tokens] (n_experts <= 1024) -> ids i32 and
 * weights f32, both [top_k, tokens]. Grid: one warp per token, 4 tokens
 * per block of 128 threads; the warp keeps its token's probabilities and
 * selection scores in shared memory (8 KB a warp) and takes the top k by k
 * rounds of a warp-wide arg-max (ties to the lower id, as the CPU). Bytes:
 * the logits once, the outputs once; n_experts * top_k / 32 compares a lane.
 *
 * moe_combine_<dst>_<experts>: dst[:, t] = sum_k w[k, t] experts[:, k, t]
 * (+ sigmoid(gate[t]) shared[:, t]). Grid: one block per token as
 * blockIdx.x; threads split the n outputs. Bytes: experts read once, dst
 * written once. */
#include "ops_math.cuh"

#define ROUTE_WARPS 4

extern "C" __global__ void moe_route(qn_moe_route_args a) { QN_GRID_WAIT();
    __shared__ float p_all[ROUTE_WARPS][QN_MOE_MAX_EXPERTS], sel_all[ROUTE_WARPS][QN_MOE_MAX_EXPERTS];
    __shared__ float w_all[ROUTE_WARPS][QN_MOE_MAX_TOP_K];
    __shared__ int id_all[ROUTE_WARPS][QN_MOE_MAX_TOP_K];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const long long t = (long long)blockIdx.x * ROUTE_WARPS + warp;
    if (t >= a.logits.ne[1]) return; /* no block-wide barriers below */
    float *p = p_all[warp], *sel = sel_all[warp], *w = w_all[warp];
    int *ids = id_all[warp];
    const int n = (int)a.logits.ne[0];

    float mx = __int_as_float(0xff800000);
    for (int e = lane; e < n; e += 32) {
        p[e] = qn_load_f32(qn_kt_at(&a.logits, e, t, 0, 0), a.logits.dtype);
        mx = fmaxf(mx, p[e]);
    }
    mx = qn_warp_max(mx);
    if (a.gating == QN_MOE_K_SOFTMAX) {
        float s = 0.0f;
        for (int e = lane; e < n; e += 32) s += p[e] = expf(p[e] - mx);
        s = qn_warp_sum(s);
        for (int e = lane; e < n; e += 32) p[e] /= s;
    } else if (a.gating == QN_MOE_K_SIGMOID) {
        for (int e = lane; e < n; e += 32) p[e] = qn_sigmoid(p[e]);
    }
    for (int e = lane; e < n; e += 32)
        sel[e] = p[e] + (a.has_bias ? *(const float *)qn_kt_at(&a.bias, e, 0, 0, 0) : 0.0f);
    __syncwarp(); /* lane 0 reads p of every lane below */

    unsigned taken = 0; /* bit j: expert lane + 32 j chosen */
    for (int k = 0; k < a.top_k; k++) {
        float bv = 0.0f;
        int bi = -1;
        for (int j = 0, e = lane; e < n; j++, e += 32)
            if (!(taken >> j & 1u) && (bi < 0 || sel[e] > bv)) bv = sel[e], bi = e;
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, bv, o);
            int oi = __shfl_xor_sync(0xffffffffu, bi, o);
            if (oi >= 0 && (bi < 0 || ov > bv || (ov == bv && oi < bi))) bv = ov, bi = oi;
        }
        if ((bi & 31) == lane) taken |= 1u << (bi >> 5);
        if (lane == 0) {
            ids[k] = bi;
            w[k] = p[bi];
        }
    }
    __syncwarp();
    if (a.gating == QN_MOE_K_SOFTMAX_TOPK) {
        /* the softmax of the chosen logits; w[0] is the largest */
        const float m0 = w[0];
        float s = 0.0f;
        for (int k = lane; k < a.top_k; k += 32) s += expf(w[k] - m0);
        s = qn_warp_sum(s);
        __syncwarp();
        for (int k = lane; k < a.top_k; k += 32) w[k] = expf(w[k] - m0) / s;
        __syncwarp();
    }
    float wsum = 0.0f;
    for (int k = lane; k < a.top_k; k += 32) wsum += w[k];
    wsum = qn_warp_sum(wsum);
    for (int k = lane; k < a.top_k; k += 32) {
        float v = w[k];
        if (a.normalize) v /= fmaxf(wsum, 6.103515625e-5f);
        v *= a.scale;
        if (a.has_escale) v *= *(const float *)qn_kt_at(&a.escale, ids[k], 0, 0, 0);
        *(int *)qn_kt_at(&a.ids, k, t, 0, 0) = ids[k];
        *(float *)qn_kt_at(&a.weights, k, t, 0, 0) = v;
    }
}

template <int DT, int ET>
__device__ void combine_rows(const qn_moe_combine_args &a) {
    const long long n = a.dst.ne[0];
    const int top_k = (int)a.experts.ne[1];
    for (long long t = blockIdx.x; t < a.dst.ne[1]; t += gridDim.x) {
        const float g = a.has_gate ? qn_sigmoid(*(const float *)qn_kt_at(&a.gate, 0, t, 0, 0)) : 1.0f;
        for (long long i = threadIdx.x; i < n; i += blockDim.x) {
            float v = 0.0f;
            for (int k = 0; k < top_k; k++)
                v += *(const float *)qn_kt_at(&a.weights, k, t, 0, 0) *
                     qn_load_f32(qn_kt_at(&a.experts, i, k, t, 0), ET);
            if (a.has_shared) v += g * qn_load_f32(qn_kt_at(&a.shared, i, t, 0, 0), a.shared.dtype);
            qn_store_f32(qn_kt_at(&a.dst, i, t, 0, 0), DT, v);
        }
    }
}

#define COMBINE(dn, en, DT, ET) \
    extern "C" __global__ void moe_combine_##dn##_##en(qn_moe_combine_args a) { QN_GRID_WAIT(); combine_rows<DT, ET>(a); }
#define COMBINE_E(dn, DT)           \
    COMBINE(dn, f32, DT, QN_KT_F32) \
    COMBINE(dn, f16, DT, QN_KT_F16) \
    COMBINE(dn, bf16, DT, QN_KT_BF16)

COMBINE_E(f32, QN_KT_F32)
COMBINE_E(f16, QN_KT_F16)
COMBINE_E(bf16, QN_KT_BF16)
