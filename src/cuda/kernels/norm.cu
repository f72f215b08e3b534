/* Norms over rows: RMS (optionally after a residual add, itself optionally
 * of an RMS-normed row: Gemma's sandwich norm), L2, LayerNorm.
 *
 * Layout: any strides (qn_kt); w and bias are [ne0] vectors shared by the
 * rows. Grid: one block per row (i1, i2, i3) as blockIdx (x, y, z), striding
 * where the grid is smaller; the block's threads (up to 1024, 4 elements
 * each a trip) split the row and reduce with warp shuffles. Bytes: x, w and
 * bias read once from memory (a row up to 4096 wide stays in registers;
 * longer rows reread later trips from cache), dst written once; the fused
 * add also writes sum and reads b (and bw). One kernel per (dst, x) dtype pair,
 * norm_<dst>_<x>; the norm kind and the dtypes of w, bias, b and sum are
 * runtime values, uniform over the block. */
#include "norm.cuh"

template <int DT, int XT>
__device__ void norm_rows(const qn_norm_args &a) {
    __shared__ float red[32];
    QN_FOR_EACH_ROW(a.x) qn_norm_row<DT, XT>(a, i1, i2, i3, red);
}

#define NORM(dn, xn, DT, XT) \
    extern "C" __global__ void __launch_bounds__(1024) norm_##dn##_##xn(qn_norm_args a) {     \
        QN_GRID_WAIT();                                                                                 \
        norm_rows<DT, XT>(a);                                                                           \
    }
#define NORM_X(dn, DT)                  \
    NORM(dn, f32, DT, QN_KT_F32)        \
    NORM(dn, f16, DT, QN_KT_F16)        \
    NORM(dn, bf16, DT, QN_KT_BF16)

NORM_X(f32, QN_KT_F32)
NORM_X(f16, QN_KT_F16)
NORM_X(bf16, QN_KT_BF16)
