/* qn_embed: gather rows of an embedding table by id, dequantized and
 * scaled: on the CPU by the formats module's host dequantizers, on the GPU
 * by blocks.cuh's, which give the same bits. */
#include "ops/transformer.h"

#include <math.h>

qn_status qn_embed(qn_encoder *enc, qn_tensor dst, qn_tensor table, qn_tensor ids, float scale) {
    const char *op = "qn_embed";
    QN_TRY(qn_op_check_float(op, enc, "dst", &dst));
    QN_TRY(qn_op_check(op, enc, "table", &table));
    if (!qn_dtype_is_quantizable(table.dtype))
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: table is %s (expected a float or quantized type)", op,
                        qn_dtype_name(table.dtype));
    if (table.ne[2] != 1 || table.ne[3] != 1 || dst.ne[2] != 1 || dst.ne[3] != 1)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: table [%lld,%lld,%lld,%lld] and dst [%lld,%lld,%lld,%lld] must be 2-D",
                        op, (long long)table.ne[0], (long long)table.ne[1], (long long)table.ne[2],
                        (long long)table.ne[3], (long long)dst.ne[0], (long long)dst.ne[1], (long long)dst.ne[2],
                        (long long)dst.ne[3]);
    if (dst.ne[0] != table.ne[0])
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: dst rows have %lld elements, table rows %lld", op,
                        (long long)dst.ne[0], (long long)table.ne[0]);
    if (!qn_dtype_is_float(table.dtype) && table.nb[0] != qn_dtype_block_bytes(table.dtype))
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: table nb[0] = %lld: %s blocks must be contiguous (%lld bytes)", op,
                        (long long)table.nb[0], qn_dtype_name(table.dtype),
                        (long long)qn_dtype_block_bytes(table.dtype));
    QN_TRY(qn_op_check_i32(op, enc, "ids", &ids, dst.ne[1], 1));
    if (!isfinite(scale)) return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: scale %g is not finite", op, (double)scale);
    qn_embed_args a = {qn_op_kt(&dst), qn_op_kt(&table), qn_op_kt(&ids), scale};
    if (enc->dev->backend == QN_BACKEND_CPU) return qn_cpu_enqueue(enc, "embed", qn_cpu_embed, &a, sizeof a);
    return qn_op_launch_typed(enc, "embed", "embed.cu", "embed", dst.dtype, table.dtype, qn_rows_grid(&a.dst),
                              qn_rows_block(dst.ne[0]), &a);
}
