/* Argument checks and launch geometry shared by the op families. */
#include "ops/ops.h"

bool qn_dtype_is_float(qn_dtype t) { return t == QN_F32 || t == QN_F16 || t == QN_BF16; }

qn_status qn_op_check(const char *op, qn_encoder *enc, const char *name, const qn_tensor *t) {
    if (!enc) return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: encoder is NULL", op);
    if (!t->buf) return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %s has no buffer", op, name);
    if (t->buf->dev != enc->dev)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %s lives on another device than the encoder", op, name);
    if (!qn_dtype_name(t->dtype))
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %s has unknown dtype %d", op, name, (int)t->dtype);
    int64_t blk = qn_dtype_block_elems(t->dtype), bb = qn_dtype_block_bytes(t->dtype);
    for (int i = 0; i < 4; i++) {
        if (t->ne[i] < 1 || t->ne[i] > ((int64_t)1 << 40))
            return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %s ne[%d] = %lld out of range", op, name, i,
                            (long long)t->ne[i]);
        if (t->nb[i] < 0 || t->nb[i] > ((int64_t)1 << 48))
            return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %s nb[%d] = %lld out of range", op, name, i,
                            (long long)t->nb[i]);
    }
    if (t->ne[0] % blk != 0)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %s ne[0] = %lld is not a multiple of %s's block of %lld", op,
                        name, (long long)t->ne[0], qn_dtype_name(t->dtype), (long long)blk);
    if (t->nb[0] < bb)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %s nb[0] = %lld is less than a %s element (%lld bytes)", op,
                        name, (long long)t->nb[0], qn_dtype_name(t->dtype), (long long)bb);
    /* The last byte the view can touch must lie in the buffer. */
    uint64_t last = (uint64_t)t->offset + (uint64_t)(t->ne[0] / blk - 1) * (uint64_t)t->nb[0] + (uint64_t)bb;
    for (int i = 1; i < 4; i++) last += (uint64_t)(t->ne[i] - 1) * (uint64_t)t->nb[i];
    if (last > t->buf->bytes)
        return qn_error(QN_ERR_INVALID_ARGUMENT,
                        "%s: %s [%lld,%lld,%lld,%lld] %s at offset %zu reaches byte %llu of a %zu-byte buffer", op,
                        name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3],
                        qn_dtype_name(t->dtype), t->offset, (unsigned long long)last, t->buf->bytes);
    /* Kernels load whole elements: addresses and strides keep their alignment. */
    uint64_t align = (uint64_t)(bb & -bb);
    if (qn_tensor_addr(t) % align != 0 || t->nb[0] % (int64_t)align || t->nb[1] % (int64_t)align ||
        t->nb[2] % (int64_t)align || t->nb[3] % (int64_t)align)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %s offset %zu or strides not aligned to %llu bytes for %s", op,
                        name, t->offset, (unsigned long long)align, qn_dtype_name(t->dtype));
    return QN_OK;
}

qn_status qn_op_check_float(const char *op, qn_encoder *enc, const char *name, const qn_tensor *t) {
    QN_TRY(qn_op_check(op, enc, name, t));
    if (!qn_dtype_is_float(t->dtype))
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %s is %s (expected f32, f16 or bf16)", op, name,
                        qn_dtype_name(t->dtype));
    return QN_OK;
}

qn_status qn_op_same_shape(const char *op, const char *na, const qn_tensor *a, const char *nb, const qn_tensor *b) {
    for (int i = 0; i < 4; i++)
        if (a->ne[i] != b->ne[i])
            return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %s [%lld,%lld,%lld,%lld] and %s [%lld,%lld,%lld,%lld] differ",
                            op, na, (long long)a->ne[0], (long long)a->ne[1], (long long)a->ne[2],
                            (long long)a->ne[3], nb, (long long)b->ne[0], (long long)b->ne[1], (long long)b->ne[2],
                            (long long)b->ne[3]);
    return QN_OK;
}

qn_kt qn_op_kt(const qn_tensor *t) {
    qn_kt k = {qn_tensor_addr(t), {t->ne[0], t->ne[1], t->ne[2], t->ne[3]}, {t->nb[0], t->nb[1], t->nb[2], t->nb[3]},
               (int)t->dtype, 0};
    return k;
}

qn_dim3 qn_rows_grid(const qn_kt *t) {
    /* The kernels stride where a dimension exceeds the grid's limits. */
    long long x = t->ne[1] < (1 << 30) ? t->ne[1] : (1 << 30);
    long long y = t->ne[2] < 65535 ? t->ne[2] : 65535, z = t->ne[3] < 65535 ? t->ne[3] : 65535;
    return (qn_dim3){(unsigned)x, (unsigned)y, (unsigned)z};
}

/* Byte range [lo, hi) the view can touch. */
static void byte_range(const qn_tensor *t, uint64_t *lo, uint64_t *hi) {
    uint64_t last = (uint64_t)qn_dtype_block_bytes(t->dtype);
    for (int i = 0; i < 4; i++) last += (uint64_t)(t->ne[i] - 1) * (uint64_t)t->nb[i];
    *lo = qn_tensor_addr(t);
    *hi = *lo + last;
}

bool qn_op_overlap(const qn_tensor *a, const qn_tensor *b) {
    uint64_t a0, a1, b0, b1;
    byte_range(a, &a0, &a1);
    byte_range(b, &b0, &b1);
    return a0 < b1 && b0 < a1;
}

qn_dim3 qn_rows_block(long long units) {
    long long t = (units + 31) / 32 * 32;
    return (qn_dim3){(unsigned)(t < 256 ? t : 256), 1, 1};
}
