/* CPU kernels of the copy family: the row bodies of copy.cu (tensor.h) run
 * over whole rows, rows split across the device's threads. */
#include "cpu/cpu_ops.h"
#include "formats/quants.h"

#include <string.h>

static void fill_rows(void *ctx, int64_t begin, int64_t end) {
    const qn_fill_args *a = ctx;
    for (int64_t r = begin; r < end; r++) {
        long long i1, i2, i3;
        qn_kt_row(&a->dst, r, &i1, &i2, &i3);
        qn_row_fill(qn_kt_at(&a->dst, 0, i1, i2, i3), a->dst.nb[0], a->dst.dtype, a->value, 0, a->dst.ne[0], 1);
    }
}

void qn_cpu_fill(qn_device *dev, const void *args) {
    const qn_fill_args *a = args;
    qn_cpu_parallel_for(dev, qn_kt_rows(&a->dst), fill_rows, (void *)a);
}

static void convert_rows(void *ctx, int64_t begin, int64_t end) {
    const qn_copy_args *a = ctx;
    for (int64_t r = begin; r < end; r++) {
        long long i1, i2, i3;
        qn_kt_row(&a->dst, r, &i1, &i2, &i3);
        qn_row_convert(qn_kt_at(&a->dst, 0, i1, i2, i3), a->dst.nb[0], a->dst.dtype, qn_kt_at(&a->src, 0, i1, i2, i3),
                       a->src.nb[0], a->src.dtype, 0, a->dst.ne[0], 1);
    }
}

void qn_cpu_copy_convert(qn_device *dev, const void *args) {
    const qn_copy_args *a = args;
    qn_cpu_parallel_for(dev, qn_kt_rows(&a->dst), convert_rows, (void *)a);
}

static void bytes_rows(void *ctx, int64_t begin, int64_t end) {
    const qn_copy_args *a = ctx;
    for (int64_t r = begin; r < end; r++) {
        long long i1, i2, i3;
        qn_kt_row(&a->dst, r, &i1, &i2, &i3);
        qn_row_bytes(qn_kt_at(&a->dst, 0, i1, i2, i3), a->dst.nb[0], qn_kt_at(&a->src, 0, i1, i2, i3), a->src.nb[0],
                     a->unit_bytes, 0, a->units * a->unit_bytes, 1);
    }
}

void qn_cpu_copy_bytes(qn_device *dev, const void *args) {
    const qn_copy_args *a = args;
    qn_cpu_parallel_for(dev, qn_kt_rows(&a->dst), bytes_rows, (void *)a);
}

/* Dequantize a row in chunks of 256 elements (a whole number of blocks of
 * every type), then store with conversion. */
static void dequant_rows(void *ctx, int64_t begin, int64_t end) {
    const qn_copy_args *a = ctx;
    const int64_t blk = qn_dtype_block_elems((qn_dtype)a->src.dtype), bb = qn_dtype_block_bytes((qn_dtype)a->src.dtype);
    float tmp[256];
    for (int64_t r = begin; r < end; r++) {
        long long i1, i2, i3;
        qn_kt_row(&a->dst, r, &i1, &i2, &i3);
        const char *src = qn_kt_at(&a->src, 0, i1, i2, i3);
        char *dst = qn_kt_at(&a->dst, 0, i1, i2, i3);
        for (int64_t i0 = 0; i0 < a->dst.ne[0]; i0 += 256) {
            int64_t n = a->dst.ne[0] - i0 < 256 ? a->dst.ne[0] - i0 : 256;
            qn_dequantize_row((qn_dtype)a->src.dtype, src + i0 / blk * bb, tmp, n); /* checked at encode */
            for (int64_t i = 0; i < n; i++) qn_store_f32(dst + (i0 + i) * a->dst.nb[0], a->dst.dtype, tmp[i]);
        }
    }
}

void qn_cpu_copy_dequant(qn_device *dev, const void *args) {
    const qn_copy_args *a = args;
    qn_cpu_parallel_for(dev, qn_kt_rows(&a->dst), dequant_rows, (void *)a);
}

static void set_rows_rows(void *ctx, int64_t begin, int64_t end) {
    const qn_set_rows_args *a = ctx;
    for (int64_t r = begin; r < end; r++) {
        long long i1, i2, i3;
        qn_kt_row(&a->src, r, &i1, &i2, &i3);
        const char *ip = qn_kt_at(&a->idx, i1, 0, 0, 0);
        long long row;
        if (a->idx.dtype == QN_KT_I64) {
            memcpy(&row, ip, 8);
        } else {
            int v;
            memcpy(&v, ip, 4);
            row = v;
        }
        if (row < 0 || row >= a->dst.ne[1]) continue; /* skipped, as on the GPU */
        qn_row_convert(qn_kt_at(&a->dst, 0, row, i2, i3), a->dst.nb[0], a->dst.dtype,
                       qn_kt_at(&a->src, 0, i1, i2, i3), a->src.nb[0], a->src.dtype, 0, a->src.ne[0], 1);
    }
}

void qn_cpu_set_rows(qn_device *dev, const void *args) {
    const qn_set_rows_args *a = args;
    qn_cpu_parallel_for(dev, qn_kt_rows(&a->src), set_rows_rows, (void *)a);
}
