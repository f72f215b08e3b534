/* The copy family: qn_fill, qn_copy, qn_set_rows. */
#include "cpu/cpu_ops.h"
#include "ops/ops.h"

#include <math.h>
#include <stdio.h>

static const char *const SRC = "copy.cu";

qn_status qn_fill(qn_encoder *enc, qn_tensor dst, float value) {
    QN_TRY(qn_op_check("qn_fill", enc, "dst", &dst));
    if (!qn_dtype_is_float(dst.dtype) && dst.dtype != QN_I32)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_fill: dst is %s (expected f32, f16, bf16 or i32)",
                        qn_dtype_name(dst.dtype));
    if (dst.dtype == QN_I32 && !(value == floorf(value) && fabsf(value) <= 2147483520.0f))
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_fill: value %g is not an i32", (double)value);
    qn_fill_args a = {qn_op_kt(&dst), value};
    if (enc->dev->backend == QN_BACKEND_CPU) return qn_cpu_enqueue(enc, "fill", qn_cpu_fill, &a, sizeof a);
    void *args[] = {&a.dst, &a.value};
    return qn_cuda_launch(enc, "fill", SRC, "", "fill", qn_rows_grid(&a.dst), qn_rows_block(a.dst.ne[0]), 0, args);
}

/* A quantized source dequantizes: ggml's values, bit for bit, on both
 * backends. Its rows must be whole blocks back to back. */
static qn_status dequantize(qn_encoder *enc, qn_copy_args *a, const qn_tensor *src) {
    if (src->nb[0] != qn_dtype_block_bytes(src->dtype))
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_copy: src %s blocks are not contiguous (nb[0] = %lld)",
                        qn_dtype_name(src->dtype), (long long)src->nb[0]);
    if (enc->dev->backend == QN_BACKEND_CPU) return qn_cpu_enqueue(enc, "dequantize", qn_cpu_copy_dequant, a, sizeof *a);
    char fn[48], defines[32];
    snprintf(fn, sizeof fn, "dequant_%s_%s", qn_dtype_name(src->dtype), qn_dtype_name(a->dst.dtype));
    snprintf(defines, sizeof defines, "-DQN_BLOCK=%s", qn_dtype_name(src->dtype));
    void *args[] = {&a->dst, &a->src};
    return qn_cuda_launch(enc, "dequantize", "quant.cu", defines, fn, qn_rows_grid(&a->dst), qn_rows_block(a->dst.ne[0] / 16),
                          0, args);
}

qn_status qn_copy(qn_encoder *enc, qn_tensor dst, qn_tensor src) {
    QN_TRY(qn_op_check("qn_copy", enc, "dst", &dst));
    QN_TRY(qn_op_check("qn_copy", enc, "src", &src));
    QN_TRY(qn_op_same_shape("qn_copy", "dst", &dst, "src", &src));
    qn_copy_args a = {qn_op_kt(&dst), qn_op_kt(&src), 0, 0};
    if (qn_dtype_is_float(dst.dtype) && qn_dtype_is_float(src.dtype)) {
        if (enc->dev->backend == QN_BACKEND_CPU)
            return qn_cpu_enqueue(enc, "copy", qn_cpu_copy_convert, &a, sizeof a);
        char fn[48], defines[32];
        snprintf(fn, sizeof fn, "copy_%s_%s", qn_dtype_name(dst.dtype), qn_dtype_name(src.dtype));
        snprintf(defines, sizeof defines, "-DQN_DST=%s", qn_dtype_name(dst.dtype));
        void *args[] = {&a.dst, &a.src};
        return qn_cuda_launch(enc, "copy", SRC, defines, fn, qn_rows_grid(&a.dst), qn_rows_block(dst.ne[0]), 0, args);
    }
    if (qn_dtype_block_elems(src.dtype) > 1 && qn_dtype_is_float(dst.dtype)) return dequantize(enc, &a, &src);
    if (dst.dtype != src.dtype)
        return qn_error(QN_ERR_INVALID_ARGUMENT,
                        "qn_copy: cannot convert %s to %s (float types convert, quantized types dequantize to float)",
                        qn_dtype_name(src.dtype), qn_dtype_name(dst.dtype));
    a.units = dst.ne[0] / qn_dtype_block_elems(dst.dtype);
    a.unit_bytes = (int)qn_dtype_block_bytes(dst.dtype);
    if (enc->dev->backend == QN_BACKEND_CPU) return qn_cpu_enqueue(enc, "copy", qn_cpu_copy_bytes, &a, sizeof a);
    void *args[] = {&a.dst, &a.src, &a.units, &a.unit_bytes};
    return qn_cuda_launch(enc, "copy", SRC, "", "copy_bytes", qn_rows_grid(&a.dst),
                          qn_rows_block(a.units * a.unit_bytes), 0, args);
}

qn_status qn_set_rows(qn_encoder *enc, qn_tensor dst, qn_tensor src, qn_tensor idx) {
    QN_TRY(qn_op_check_float("qn_set_rows", enc, "dst", &dst));
    QN_TRY(qn_op_check_float("qn_set_rows", enc, "src", &src));
    QN_TRY(qn_op_check("qn_set_rows", enc, "idx", &idx));
    if (idx.dtype != QN_I32 && idx.dtype != QN_I64)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_set_rows: idx is %s (expected i32 or i64)",
                        qn_dtype_name(idx.dtype));
    if (idx.ne[0] != src.ne[1] || idx.ne[1] != 1 || idx.ne[2] != 1 || idx.ne[3] != 1)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_set_rows: idx has %lld x %lld x %lld x %lld entries, src %lld rows",
                        (long long)idx.ne[0], (long long)idx.ne[1], (long long)idx.ne[2], (long long)idx.ne[3],
                        (long long)src.ne[1]);
    if (dst.ne[0] != src.ne[0] || dst.ne[2] != src.ne[2] || dst.ne[3] != src.ne[3])
        return qn_error(QN_ERR_INVALID_ARGUMENT,
                        "qn_set_rows: dst [%lld,_,%lld,%lld] and src [%lld,_,%lld,%lld] differ outside dim 1",
                        (long long)dst.ne[0], (long long)dst.ne[2], (long long)dst.ne[3], (long long)src.ne[0],
                        (long long)src.ne[2], (long long)src.ne[3]);
    qn_set_rows_args a = {qn_op_kt(&dst), qn_op_kt(&src), qn_op_kt(&idx)};
    if (enc->dev->backend == QN_BACKEND_CPU) return qn_cpu_enqueue(enc, "set_rows", qn_cpu_set_rows, &a, sizeof a);
    char fn[48], defines[32];
    snprintf(fn, sizeof fn, "set_rows_%s_%s", qn_dtype_name(dst.dtype), qn_dtype_name(src.dtype));
    snprintf(defines, sizeof defines, "-DQN_DST=%s", qn_dtype_name(dst.dtype));
    void *args[] = {&a.dst, &a.src, &a.idx};
    return qn_cuda_launch(enc, "set_rows", SRC, defines, fn, qn_rows_grid(&a.src), qn_rows_block(src.ne[0]), 0, args);
}
