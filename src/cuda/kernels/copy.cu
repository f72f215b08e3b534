/* Fill, strided copy with conversion, byte copy and set_rows.
 *
 * Layout: any strides (qn_kt). Grid: one block per row (i1, i2, i3) as
 * blockIdx (x, y, z), striding where the grid is smaller; the block's threads split the row
 * (the row bodies in tensor.h, shared with the CPU).
 * Bytes: each element read once and written once (fill: written once).
 *
 * Conversions take their dtypes as template arguments, so the row body has
 * no branches around its loads (see elementwise.cu): copy_<dst>_<src> and
 * set_rows_<dst>_<src>, in a module per dst dtype (the define QN_DST); the
 * module without QN_DST holds fill and copy_bytes. */
#include "tensor.h"

#ifndef QN_DST
extern "C" __global__ void fill(qn_kt dst, float value) { QN_GRID_WAIT();
    QN_FOR_EACH_ROW(dst) {
        qn_row_fill(qn_kt_at(&dst, 0, i1, i2, i3), dst.nb[0], dst.dtype, value, threadIdx.x, dst.ne[0], blockDim.x);
    }
}

/* dst = src for any one dtype: `units` elements (blocks, for block types) of
 * `unit_bytes` each per row, copied byte by byte. */
extern "C" __global__ void copy_bytes(qn_kt dst, qn_kt src, long long units, int unit_bytes) { QN_GRID_WAIT();
    QN_FOR_EACH_ROW(dst) {
        qn_row_bytes(qn_kt_at(&dst, 0, i1, i2, i3), dst.nb[0], qn_kt_at(&src, 0, i1, i2, i3), src.nb[0], unit_bytes,
                     threadIdx.x, units * unit_bytes, blockDim.x);
    }
}

#else
/* dst = src between f32, f16 and bf16 (same shape). */
template <int DT, int ST>
__device__ void convert_rows(const qn_kt &dst, const qn_kt &src) {
    QN_FOR_EACH_ROW(dst) {
        qn_row_convert(qn_kt_at(&dst, 0, i1, i2, i3), dst.nb[0], DT, qn_kt_at(&src, 0, i1, i2, i3), src.nb[0], ST,
                       threadIdx.x, dst.ne[0], blockDim.x);
    }
}

/* dst[:, idx[i1], i2, i3] = src[:, i1, i2, i3]; the index is read here, when
 * the kernel runs, so a replayed graph follows its current value. Rows whose
 * index is out of range are skipped. */
template <int DT, int ST>
__device__ void set_rows_t(const qn_kt &dst, const qn_kt &src, const qn_kt &idx) {
    QN_FOR_EACH_ROW(src) {
        const char *ip = qn_kt_at(&idx, i1, 0, 0, 0);
        long long row = idx.dtype == QN_KT_I64 ? *(const long long *)ip : *(const int *)ip;
        if (row < 0 || row >= dst.ne[1]) continue;
        qn_row_convert(qn_kt_at(&dst, 0, row, i2, i3), dst.nb[0], DT, qn_kt_at(&src, 0, i1, i2, i3), src.nb[0], ST,
                       threadIdx.x, src.ne[0], blockDim.x);
    }
}

#define CONVERT(dn, sn, DT, ST)                                                                        \
    extern "C" __global__ void copy_##dn##_##sn(qn_kt dst, qn_kt src) { QN_GRID_WAIT(); convert_rows<DT, ST>(dst, src); } \
    extern "C" __global__ void set_rows_##dn##_##sn(qn_kt dst, qn_kt src, qn_kt idx) { QN_GRID_WAIT();                  \
        set_rows_t<DT, ST>(dst, src, idx);                                                           \
    }
#define CONVERT_FROM(dn, DT)                                                                          \
    CONVERT(dn, f32, DT, QN_KT_F32)                                                                   \
    CONVERT(dn, f16, DT, QN_KT_F16)                                                                   \
    CONVERT(dn, bf16, DT, QN_KT_BF16)

CONVERT_FROM(QN_DST, QN_CAT(QN_KT_ID_, QN_DST))
#endif
