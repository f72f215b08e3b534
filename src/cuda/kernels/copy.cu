/* Fill, strided copy with conversion, byte copy and set_rows.
 *
 * Layout: any strides (qn_kt). Grid: one block per row (i1, i2, i3), striding
 * when there are more rows than blocks; the block's threads split the row
 * (the row bodies in tensor.h, shared with the CPU).
 * Bytes: each element read once and written once (fill: written once). */
#include "tensor.h"

extern "C" __global__ void fill(qn_kt dst, float value) {
    for (long long r = blockIdx.x; r < qn_kt_rows(&dst); r += gridDim.x) {
        long long i1, i2, i3;
        qn_kt_row(&dst, r, &i1, &i2, &i3);
        qn_row_fill(qn_kt_at(&dst, 0, i1, i2, i3), dst.nb[0], dst.dtype, value, threadIdx.x, dst.ne[0], blockDim.x);
    }
}

/* dst = src between f32, f16 and bf16 (same shape). */
extern "C" __global__ void copy_convert(qn_kt dst, qn_kt src) {
    for (long long r = blockIdx.x; r < qn_kt_rows(&dst); r += gridDim.x) {
        long long i1, i2, i3;
        qn_kt_row(&dst, r, &i1, &i2, &i3);
        qn_row_convert(qn_kt_at(&dst, 0, i1, i2, i3), dst.nb[0], dst.dtype, qn_kt_at(&src, 0, i1, i2, i3),
                       src.nb[0], src.dtype, threadIdx.x, dst.ne[0], blockDim.x);
    }
}

/* dst = src for any one dtype: `units` elements (blocks, for block types) of
 * `unit_bytes` each per row, copied byte by byte. */
extern "C" __global__ void copy_bytes(qn_kt dst, qn_kt src, long long units, int unit_bytes) {
    for (long long r = blockIdx.x; r < qn_kt_rows(&dst); r += gridDim.x) {
        long long i1, i2, i3;
        qn_kt_row(&dst, r, &i1, &i2, &i3);
        qn_row_bytes(qn_kt_at(&dst, 0, i1, i2, i3), dst.nb[0], qn_kt_at(&src, 0, i1, i2, i3), src.nb[0], unit_bytes,
                     threadIdx.x, units * unit_bytes, blockDim.x);
    }
}

/* dst[:, idx[i1], i2, i3] = src[:, i1, i2, i3]; the index is read here, when
 * the kernel runs, so a replayed graph follows its current value. Rows whose
 * index is out of range are skipped. */
extern "C" __global__ void set_rows(qn_kt dst, qn_kt src, qn_kt idx) {
    for (long long r = blockIdx.x; r < qn_kt_rows(&src); r += gridDim.x) {
        long long i1, i2, i3;
        qn_kt_row(&src, r, &i1, &i2, &i3);
        const char *ip = qn_kt_at(&idx, i1, 0, 0, 0);
        long long row = idx.dtype == QN_KT_I64 ? *(const long long *)ip : *(const int *)ip;
        if (row < 0 || row >= dst.ne[1]) continue;
        qn_row_convert(qn_kt_at(&dst, 0, row, i2, i3), dst.nb[0], dst.dtype, qn_kt_at(&src, 0, i1, i2, i3),
                       src.nb[0], src.dtype, threadIdx.x, src.ne[0], blockDim.x);
    }
}
