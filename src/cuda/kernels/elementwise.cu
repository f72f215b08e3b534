/* dst = a + b, a * b (b broadcast where its ne is 1) and dst = a * s; f32,
 * f16 and bf16 in any mix, computed in f32 and rounded once on store.
 *
 * Layout: any strides (qn_kt). Grid: one block per dst row (i1, i2, i3) as blockIdx (x, y, z); the
 * block's threads split the row (qn_row_binary, shared with the CPU).
 * Bytes: a and dst once each, b once per use (cached when broadcast).
 *
 * The dtypes are template arguments: with them constant the row body has no
 * branches around its loads, so a thread's loads issue together rather than
 * one memory latency each. One kernel per combination, named
 * binary_<dst>_<a>_<b> and scale_<dst>_<a>; a module holds one dst dtype
 * (the define QN_DST), so a first use compiles 12 kernels, not 36. */
#include "tensor.h"

template <int DT, int AT, int BT>
__device__ void binary_rows(const qn_kt &dst, const qn_kt &a, const qn_kt &b, int op, float s) {
    QN_FOR_EACH_ROW(dst) {
        /* b's index is 0 in a dimension where it is broadcast */
        const char *brow = BT >= 0 ? qn_kt_at(&b, 0, b.ne[1] == 1 ? 0 : i1, b.ne[2] == 1 ? 0 : i2, b.ne[3] == 1 ? 0 : i3)
                                   : 0;
        qn_row_binary(qn_kt_at(&dst, 0, i1, i2, i3), dst.nb[0], DT, qn_kt_at(&a, 0, i1, i2, i3), a.nb[0], AT, brow,
                      b.ne[0] == 1 ? 0 : b.nb[0], BT, op, s, threadIdx.x, dst.ne[0], blockDim.x);
    }
}

#define BINARY(dn, an, bn, DT, AT, BT)                                                                  \
    extern "C" __global__ void binary_##dn##_##an##_##bn(qn_kt dst, qn_kt a, qn_kt b, int op) { QN_GRID_WAIT();       \
        binary_rows<DT, AT, BT>(dst, a, b, op, 0.0f);                                                \
    }
#define BINARY_B(dn, an, DT, AT)                                                                      \
    BINARY(dn, an, f32, DT, AT, QN_KT_F32)                                                            \
    BINARY(dn, an, f16, DT, AT, QN_KT_F16)                                                            \
    BINARY(dn, an, bf16, DT, AT, QN_KT_BF16)                                                          \
    extern "C" __global__ void scale_##dn##_##an(qn_kt dst, qn_kt a, float s) { QN_GRID_WAIT();                       \
        binary_rows<DT, AT, -1>(dst, a, a, QN_BIN_MUL, s);                                            \
    }
#define BINARY_A(dn, DT)                                                                              \
    BINARY_B(dn, f32, DT, QN_KT_F32)                                                                  \
    BINARY_B(dn, f16, DT, QN_KT_F16)                                                                  \
    BINARY_B(dn, bf16, DT, QN_KT_BF16)

BINARY_A(QN_DST, QN_CAT(QN_KT_ID_, QN_DST))
