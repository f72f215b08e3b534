/* The KV cache: qn_kv_cache_append. */
#include "cpu/attention.h"
#include "ops/ops.h"

#include <stdio.h>

qn_status qn_kv_cache_check(const char *op, qn_encoder *enc, const char *name, const qn_tensor *c) {
    QN_TRY(qn_op_check(op, enc, name, c));
    if (c->dtype != QN_F16 && c->dtype != QN_BF16 && c->dtype != QN_Q8_0)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %s is %s (expected f16, bf16 or q8_0)", op, name,
                        qn_dtype_name(c->dtype));
    if (c->ne[3] != 1)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %s ne[3] = %lld (expected [head_dim, capacity, n_kv_heads])",
                        op, name, (long long)c->ne[3]);
    if (c->nb[0] != qn_dtype_block_bytes(c->dtype))
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %s rows are not contiguous (nb[0] = %lld)", op, name,
                        (long long)c->nb[0]);
    if (c->ne[1] > INT32_MAX / 2)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %s capacity %lld is too large", op, name, (long long)c->ne[1]);
    return QN_OK;
}

qn_status qn_kv_pos_check(const char *op, qn_encoder *enc, const qn_tensor *pos) {
    QN_TRY(qn_op_check(op, enc, "pos", pos));
    if (pos->dtype != QN_I32)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: pos is %s (expected i32)", op, qn_dtype_name(pos->dtype));
    return QN_OK;
}

qn_status qn_kv_cache_append(qn_encoder *enc, qn_tensor cache, qn_tensor src, qn_tensor pos) {
    const char *op = "qn_kv_cache_append";
    QN_TRY(qn_kv_cache_check(op, enc, "cache", &cache));
    QN_TRY(qn_op_check_float(op, enc, "src", &src));
    QN_TRY(qn_kv_pos_check(op, enc, &pos));
    if (src.ne[0] != cache.ne[0] || src.ne[1] != cache.ne[2] || src.ne[3] != 1)
        return qn_error(QN_ERR_INVALID_ARGUMENT,
                        "qn_kv_cache_append: src [%lld,%lld,%lld,%lld] does not match cache [%lld,_,%lld] "
                        "(expected [head_dim, n_kv_heads, n_tokens])",
                        (long long)src.ne[0], (long long)src.ne[1], (long long)src.ne[2], (long long)src.ne[3],
                        (long long)cache.ne[0], (long long)cache.ne[2]);
    if (src.ne[2] > cache.ne[1])
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_kv_cache_append: %lld tokens do not fit a capacity of %lld",
                        (long long)src.ne[2], (long long)cache.ne[1]);
    qn_kv_append_args a = {qn_op_kt(&cache), qn_op_kt(&src), qn_op_kt(&pos)};
    if (enc->dev->backend == QN_BACKEND_CPU) return qn_cpu_enqueue(enc, "kv_cache_append", qn_cpu_kv_append, &a, sizeof a);
    char fn[32];
    snprintf(fn, sizeof fn, "kv_append_%s", qn_dtype_name(cache.dtype));
    qn_dim3 grid = {(unsigned)cache.ne[2], (unsigned)(src.ne[2] < 65535 ? src.ne[2] : 65535), 1};
    void *args[] = {&a.cache, &a.src, &a.pos};
    return qn_cuda_launch(enc, "kv_cache_append", "kv_cache.cu", "", fn, grid, (qn_dim3){128, 1, 1}, 0, args);
}
