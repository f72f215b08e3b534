/* Quantized weights as ops: the quantize-dequantize round trip (qn_qdq):
 * dst = dequant(quant(src)) through q4_0 or q8_0, ggml's reference
 * quantizer, bit-identical on both backends, for quantization-sensitivity
 * work (the error a weight would take from a format, without writing the
 * format); and MLX affine dequantization (qn_mlx_dequantize). */
#include "cpu/cpu_ops.h"
#include "ops/ops.h"

#include <stdio.h>

static bool contiguous(const qn_tensor *t) {
    return t->nb[0] == 4 && t->nb[1] == 4 * t->ne[0] && t->nb[2] == t->nb[1] * t->ne[1] &&
           t->nb[3] == t->nb[2] * t->ne[2];
}

qn_status qn_qdq(qn_encoder *enc, qn_tensor dst, qn_tensor src, qn_dtype type) {
    QN_TRY(qn_op_check("qn_qdq", enc, "dst", &dst));
    QN_TRY(qn_op_check("qn_qdq", enc, "src", &src));
    if (type != QN_Q4_0 && type != QN_Q8_0)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_qdq: type %s (expected q4_0 or q8_0)",
                        qn_dtype_name(type) ? qn_dtype_name(type) : "(invalid)");
    if (dst.dtype != QN_F32 || src.dtype != QN_F32)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_qdq: dst is %s and src is %s (both must be f32)",
                        qn_dtype_name(dst.dtype), qn_dtype_name(src.dtype));
    int64_t n = qn_tensor_nelements(&src);
    if (qn_tensor_nelements(&dst) != n)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_qdq: dst has %lld elements, src %lld",
                        (long long)qn_tensor_nelements(&dst), (long long)n);
    if (n % 32 != 0)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_qdq: %lld elements is not a multiple of the block of 32",
                        (long long)n);
    if (!contiguous(&dst) || !contiguous(&src))
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_qdq: dst and src must be contiguous");
    qn_qdq_args a = {(float *)(uintptr_t)qn_tensor_addr(&dst), (const float *)(uintptr_t)qn_tensor_addr(&src), n / 32,
                     (int)type};
    if (enc->dev->backend == QN_BACKEND_CPU) return qn_cpu_enqueue(enc, "qdq", qn_cpu_qdq, &a, sizeof a);
    uint64_t d = qn_tensor_addr(&dst), s = qn_tensor_addr(&src);
    void *args[] = {&d, &s, &a.nblocks};
    long long blocks = (a.nblocks + 127) / 128;
    qn_dim3 grid = {(unsigned)(blocks < 65536 ? blocks : 65536), 1, 1}, block = {128, 1, 1};
    return qn_cuda_launch(enc, "qdq", "quant.cu", "", type == QN_Q4_0 ? "qdq_q4_0" : "qdq_q8_0", grid, block, 0,
                          args);
}

/* An MLX weight: q u32 [cols * bits / 32, rows...], scales and biases [cols /
 * group, rows...] of one float type, all with the same rows. */
qn_status qn_mlx_weight_check(const char *op, qn_encoder *enc, const qn_mlx_weight *w, int64_t *cols) {
    if (!w) return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: weight is NULL", op);
    QN_TRY(qn_op_check(op, enc, "q", &w->q));
    QN_TRY(qn_op_check_float(op, enc, "scales", &w->scales));
    QN_TRY(qn_op_check_float(op, enc, "biases", &w->biases));
    if (w->bits != 2 && w->bits != 3 && w->bits != 4 && w->bits != 6 && w->bits != 8)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: bits %d is not 2, 3, 4, 6 or 8", op, w->bits);
    if (w->group_size != 32 && w->group_size != 64 && w->group_size != 128)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: group size %d is not 32, 64 or 128", op, w->group_size);
    if (w->q.dtype != QN_U32 || w->q.nb[0] != 4)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: q is %s (expected contiguous u32 words)", op,
                        qn_dtype_name(w->q.dtype));
    if (w->scales.dtype != w->biases.dtype)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: scales are %s but biases %s", op, qn_dtype_name(w->scales.dtype),
                        qn_dtype_name(w->biases.dtype));
    *cols = w->q.ne[0] * 32 / w->bits;
    if (w->q.ne[0] * 32 % w->bits != 0 || *cols % w->group_size != 0)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: q rows of %lld words are not whole groups of %d %d-bit weights", op,
                        (long long)w->q.ne[0], w->group_size, w->bits);
    if (w->scales.ne[0] * w->group_size != *cols || w->biases.ne[0] != w->scales.ne[0])
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %lld columns need %lld scales and biases per row, got %lld and %lld",
                        op, (long long)*cols, (long long)(*cols / w->group_size), (long long)w->scales.ne[0],
                        (long long)w->biases.ne[0]);
    for (int i = 1; i < 4; i++)
        if (w->scales.ne[i] != w->q.ne[i] || w->biases.ne[i] != w->q.ne[i])
            return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: scales, biases and q differ in ne[%d]", op, i);
    return QN_OK;
}

qn_status qn_mlx_dequantize(qn_encoder *enc, qn_tensor dst, const qn_mlx_weight *w) {
    int64_t cols;
    QN_TRY(qn_mlx_weight_check("qn_mlx_dequantize", enc, w, &cols));
    QN_TRY(qn_op_check_float("qn_mlx_dequantize", enc, "dst", &dst));
    if (dst.ne[0] != cols || dst.ne[1] != w->q.ne[1] || dst.ne[2] != w->q.ne[2] || dst.ne[3] != w->q.ne[3])
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_mlx_dequantize: dst [%lld,%lld,%lld,%lld] is not the weight's [%lld,%lld,%lld,%lld]",
                        (long long)dst.ne[0], (long long)dst.ne[1], (long long)dst.ne[2], (long long)dst.ne[3],
                        (long long)cols, (long long)w->q.ne[1], (long long)w->q.ne[2], (long long)w->q.ne[3]);
    qn_mlx_args a = {qn_op_kt(&dst), qn_op_kt(&w->q), qn_op_kt(&w->scales), qn_op_kt(&w->biases), w->bits,
                     w->group_size};
    if (enc->dev->backend == QN_BACKEND_CPU)
        return qn_cpu_enqueue(enc, "mlx_dequantize", qn_cpu_mlx_dequant, &a, sizeof a);
    char fn[32];
    snprintf(fn, sizeof fn, "mlx_dequant_%s", qn_dtype_name(dst.dtype));
    void *args[] = {&a.dst, &a.q, &a.scales, &a.biases, &a.bits, &a.group};
    return qn_cuda_launch(enc, "mlx_dequantize", "quant.cu", "", fn, qn_rows_grid(&a.dst), qn_rows_block(cols), 0,
                          args);
}
