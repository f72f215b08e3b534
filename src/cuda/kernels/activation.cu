/* Activations: dst = act(x) (unary_<dst>_<x>) and the gated units dst =
 * act(gate) * up (glu_<dst>_<x>, gate and up of dtype x).
 *
 * Layout: any strides (qn_kt; the fused GLU input is two views of one
 * tensor). Grid: one block per dst row (i1, i2, i3) as blockIdx (x, y, z),
 * striding where the grid is smaller; threads split the row, four elements
 * in flight each. Bytes: each input element read once, dst written once.
 * The activation (qn_act_apply) is shared with the CPU and chosen at run
 * time, uniformly over the grid. */
#include "ops_math.cuh"

template <int DT, int XT, bool GLU>
__device__ void act_rows(const qn_act_args &a) {
    const long long n = a.dst.ne[0], step = blockDim.x;
    QN_FOR_EACH_ROW(a.dst) {
        const char *x = qn_kt_at(&a.x, 0, i1, i2, i3);
        const char *u = GLU ? qn_kt_at(&a.up, 0, i1, i2, i3) : x;
        char *d = qn_kt_at(&a.dst, 0, i1, i2, i3);
        for (long long i = threadIdx.x; i < n; i += 4 * step) {
            float v[4], w[4];
            qn_load4(v, x, a.x.nb[0], XT, i, step, n);
            if (GLU) qn_load4(w, u, a.up.nb[0], XT, i, step, n);
            for (int k = 0; k < 4; k++) {
                if (i + k * step >= n) continue;
                float o = qn_act_apply(a.act, v[k], a.cap);
                if (GLU) o *= w[k];
                qn_store_f32(d + (i + k * step) * a.dst.nb[0], DT, o);
            }
        }
    }
}

#define ACT(dn, xn, DT, XT)                                                                                \
    extern "C" __global__ void unary_##dn##_##xn(qn_act_args a) { QN_GRID_WAIT(); act_rows<DT, XT, false>(a); }          \
    extern "C" __global__ void glu_##dn##_##xn(qn_act_args a) { QN_GRID_WAIT(); act_rows<DT, XT, true>(a); }
#define ACT_X(dn, DT)           \
    ACT(dn, f32, DT, QN_KT_F32) \
    ACT(dn, f16, DT, QN_KT_F16) \
    ACT(dn, bf16, DT, QN_KT_BF16)

ACT_X(f32, QN_KT_F32)
ACT_X(f16, QN_KT_F16)
ACT_X(bf16, QN_KT_BF16)
