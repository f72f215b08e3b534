/* Row softmax: dst = softmax(x * scale + mask), mask (f32 or f16) broadcast
 * where its ne is 1; a fully masked row gives zeros.
 *
 * Layout: any strides (qn_kt). Grid: one block per row (i1, i2, i3) as
 * blockIdx (x, y, z), striding where the grid is smaller. Each thread keeps
 * a running (max, sum of exp) over its elements (one pass), the block
 * combines them, and a second pass (from cache) writes. Bytes: x and mask
 * read once from memory, dst written once. Kernels softmax_<dst>_<x>. */
#include "ops_math.cuh"

template <int DT, int XT>
__device__ void softmax_rows(const qn_softmax_args &a) {
    __shared__ float red[32];
    const long long n = a.x.ne[0], step = blockDim.x;
    const float NEG_INF = __int_as_float(0xff800000);
    QN_FOR_EACH_ROW(a.x) {
        const char *x = qn_kt_at(&a.x, 0, i1, i2, i3);
        const char *m = a.has_mask ? qn_kt_at(&a.mask, 0, a.mask.ne[1] == 1 ? 0 : i1, a.mask.ne[2] == 1 ? 0 : i2,
                                              a.mask.ne[3] == 1 ? 0 : i3)
                                   : 0;
        char *d = qn_kt_at(&a.dst, 0, i1, i2, i3);
        float mx = NEG_INF, sum = 0.0f;
        for (long long i = threadIdx.x; i < n; i += 4 * step) {
            float v[4], w[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            qn_load4(v, x, a.x.nb[0], XT, i, step, n);
            if (m) qn_load4(w, m, a.mask.nb[0], a.mask.dtype, i, step, n);
            for (int k = 0; k < 4; k++) {
                float z = v[k] * a.scale + w[k];
                if (i + k * step >= n || z == NEG_INF) continue;
                if (z > mx) {
                    sum = sum * expf(mx - z) + 1.0f;
                    mx = z;
                } else {
                    sum += expf(z - mx);
                }
            }
        }
        const float M = qn_block_max(mx, red);
        const float S = qn_block_sum(mx == NEG_INF ? 0.0f : sum * expf(mx - M), red);
        for (long long i = threadIdx.x; i < n; i += 4 * step) {
            float v[4], w[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            qn_load4(v, x, a.x.nb[0], XT, i, step, n);
            if (m) qn_load4(w, m, a.mask.nb[0], a.mask.dtype, i, step, n);
            for (int k = 0; k < 4; k++)
                if (i + k * step < n)
                    qn_store_f32(d + (i + k * step) * a.dst.nb[0], DT,
                                 M == NEG_INF ? 0.0f : expf(v[k] * a.scale + w[k] - M) / S);
        }
    }
}

#define SOFTMAX(dn, xn, DT, XT) \
    extern "C" __global__ void softmax_##dn##_##xn(qn_softmax_args a) { QN_GRID_WAIT(); softmax_rows<DT, XT>(a); }
#define SOFTMAX_X(dn, DT)           \
    SOFTMAX(dn, f32, DT, QN_KT_F32) \
    SOFTMAX(dn, f16, DT, QN_KT_F16) \
    SOFTMAX(dn, bf16, DT, QN_KT_BF16)

SOFTMAX_X(f32, QN_KT_F32)
SOFTMAX_X(f16, QN_KT_F16)
SOFTMAX_X(bf16, QN_KT_BF16)
