/* dst = a + b, a * b (b broadcast where its ne is 1) and dst = a * s; f32,
 * f16 and bf16 in any mix, computed in f32 and rounded once on store.
 *
 * Layout: any strides (qn_kt). Grid: one block per dst row, striding; the
 * block's threads split the row (qn_row_binary, shared with the CPU).
 * Bytes: a and dst once each, b once per use (cached when broadcast). */
#include "tensor.h"

/* b == 0 (no b tensor): dst = a * s. */
extern "C" __global__ void binary(qn_kt dst, qn_kt a, qn_kt b, int has_b, int op, float s) {
    for (long long r = blockIdx.x; r < qn_kt_rows(&dst); r += gridDim.x) {
        long long i1, i2, i3;
        qn_kt_row(&dst, r, &i1, &i2, &i3);
        const char *brow = has_b ? qn_kt_at(&b, 0, i1 % b.ne[1], i2 % b.ne[2], i3 % b.ne[3]) : 0;
        qn_row_binary(qn_kt_at(&dst, 0, i1, i2, i3), dst.nb[0], dst.dtype, qn_kt_at(&a, 0, i1, i2, i3), a.nb[0],
                      a.dtype, brow, b.ne[0] == 1 ? 0 : b.nb[0], b.dtype, op, s, threadIdx.x, dst.ne[0], blockDim.x);
    }
}
