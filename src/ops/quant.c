/* The quantize-dequantize round trip (qn_qdq): dst = dequant(quant(src))
 * through q4_0 or q8_0, ggml's reference quantizer, bit-identical on both
 * backends. It serves quantization-sensitivity work: the error a weight
 * would take from a format, without writing the format. */
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
