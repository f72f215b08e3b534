/* The RoPE family: qn_rope and the fused qn_rms_norm_rope (and its form
 * that appends to a KV cache, qn_rms_norm_rope_append, and the one that
 * takes an attention layer's q, k and v, qn_rms_norm_rope_qkv). The angles
 * follow llama.cpp's rope (linear and YaRN scaling, frequency factors,
 * multi-section positions); see qn_rope_params in quanta.h. */
#include "cpu/attention.h"
#include "ops/transformer.h"

#include <math.h>

qn_rope_params qn_rope_params_default(qn_rope_mode mode, int n_dims, float freq_base) {
    qn_rope_params p = {mode, n_dims, freq_base, 1.0f, 0, 0.0f, 1.0f, 32.0f, 1.0f, {0, 0, 0, 0}};
    return p;
}

/* The pair index where the YaRN ramp starts (or ends): the rotation whose
 * wavelength fits n_rot times in the original context. */
static float yarn_corr_dim(int n_dims, int n_ctx_orig, float n_rot, float base) {
    return (float)n_dims * logf((float)n_ctx_orig / (n_rot * 2.0f * (float)M_PI)) / (2.0f * logf(base));
}

static qn_status check_params(const char *op, const qn_rope_params *p, const qn_tensor *x, qn_rope_k *k) {
    if (!p) return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: params is NULL", op);
    if ((int)p->mode < QN_ROPE_NORMAL || (int)p->mode > QN_ROPE_VISION)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: mode %d is not a qn_rope_mode", op, (int)p->mode);
    long long ne0 = x->ne[0];
    if (p->n_dims < 2 || p->n_dims % 2 || p->n_dims > ne0)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: n_dims %d is not even and in 2..head_dim (%lld)", op, p->n_dims,
                        ne0);
    if (p->mode == QN_ROPE_VISION && ne0 != 2LL * p->n_dims)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: VISION rotates head_dim = 2 * n_dims, got head_dim %lld, n_dims %d",
                        op, ne0, p->n_dims);
    if (!(p->freq_base > 0.0f) || !isfinite(p->freq_base) || !(p->freq_scale > 0.0f) || !isfinite(p->freq_scale))
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: freq_base %g and freq_scale %g must be finite and > 0", op,
                        (double)p->freq_base, (double)p->freq_scale);
    if (!isfinite(p->attn_factor) || !isfinite(p->ext_factor))
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: attn_factor %g and ext_factor %g must be finite", op,
                        (double)p->attn_factor, (double)p->ext_factor);
    if (p->ext_factor != 0.0f && (p->n_ctx_orig <= 0 || !(p->beta_fast > 0.0f) || !(p->beta_slow > 0.0f)))
        return qn_error(QN_ERR_INVALID_ARGUMENT,
                        "%s: YaRN (ext_factor %g) needs n_ctx_orig > 0 (got %d) and beta_fast, beta_slow > 0 (got %g, %g)",
                        op, (double)p->ext_factor, p->n_ctx_orig, (double)p->beta_fast, (double)p->beta_slow);
    int nsec = p->mode == QN_ROPE_VISION ? 2 : 4, total = 0;
    if (p->mode >= QN_ROPE_MULTI) {
        for (int s = 0; s < nsec; s++) {
            if (p->sections[s] < 0 || p->sections[s] > (1 << 20))
                return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: sections[%d] = %d out of range", op, s, p->sections[s]);
            total += p->sections[s];
        }
        if (total == 0) return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: sections are all zero", op);
    }
    qn_rope_k r = {(int)p->mode, p->n_dims, powf(p->freq_base, -2.0f / (float)p->n_dims), p->freq_scale,
                   p->ext_factor, p->attn_factor, 0.0f, 0.0f, {0, 0, 0, 0}};
    for (int s = 0; s < 4; s++) r.sections[s] = p->mode >= QN_ROPE_MULTI ? p->sections[s] : 0;
    if (p->ext_factor != 0.0f) {
        r.corr0 = fmaxf(0.0f, floorf(yarn_corr_dim(p->n_dims, p->n_ctx_orig, p->beta_fast, p->freq_base)));
        r.corr1 = fminf((float)(p->n_dims - 1), ceilf(yarn_corr_dim(p->n_dims, p->n_ctx_orig, p->beta_slow, p->freq_base)));
    }
    *k = r;
    return QN_OK;
}

/* What an op calls its tensors in messages. */
typedef struct {
    const char *dst, *x, *w;
} rope_names;

/* x [head_dim, tokens] does not fit the KV cache c [head_dim, capacity,
 * n_kv_heads]. */
static qn_status check_fits(const char *op, const char *xn, const qn_tensor *x, const char *cn, const qn_tensor *c) {
    if (x->ne[0] == c->ne[0] && x->ne[1] == c->ne[2] && x->ne[2] <= c->ne[1]) return QN_OK;
    return qn_error(QN_ERR_INVALID_ARGUMENT,
                    "%s: %s [%lld,%lld,%lld] does not fit %s [%lld,%lld,%lld] (expected [head_dim, n_kv_heads, "
                    "n_tokens <= capacity])",
                    op, xn, (long long)x->ne[0], (long long)x->ne[1], (long long)x->ne[2], cn, (long long)c->ne[0],
                    (long long)c->ne[1], (long long)c->ne[2]);
}

/* Checks the arguments of one set of rows and fills their record: dst is
 * x's shape, or with `cache` a KV cache [head_dim, capacity, heads] (f16,
 * bf16 or q8_0) that the rows are appended to. */
static qn_status rope_args(const char *op, const rope_names *nm, qn_encoder *enc, qn_tensor dst, qn_tensor x,
                           qn_tensor w, float eps, float w_off, int norm, bool cache, qn_tensor pos, qn_tensor ff,
                           const qn_rope_params *p, qn_rope_args *a) {
    QN_TRY(qn_op_check_float(op, enc, nm->x, &x));
    if (x.ne[3] != 1)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %s ne[3] = %lld (expected [head_dim, heads, tokens, 1])", op,
                        nm->x, (long long)x.ne[3]);
    if (cache) {
        QN_TRY(qn_kv_cache_check(op, enc, nm->dst, &dst));
        QN_TRY(check_fits(op, nm->x, &x, nm->dst, &dst));
    } else {
        QN_TRY(qn_op_check_float(op, enc, nm->dst, &dst));
        QN_TRY(qn_op_same_shape(op, nm->dst, &dst, nm->x, &x));
    }
    *a = (qn_rope_args){.dst = qn_op_kt(&dst), .x = qn_op_kt(&x), .norm = norm, .dst_cache = cache, .eps = eps,
                        .w_off = w_off};
    QN_TRY(check_params(op, p, &x, &a->r));
    int multi = p->mode >= QN_ROPE_MULTI;
    QN_TRY(qn_op_check_i32(op, enc, "pos", &pos, (multi ? 4 : 1) * x.ne[2], 1));
    QN_TRY(qn_op_check_vector(op, enc, "freq_factors", &ff, qn_rope_npairs(&a->r), true));
    QN_TRY(qn_op_check_vector(op, enc, nm->w, &w, x.ne[0], false));
    if (norm && (!(eps >= 0.0f) || isinf(eps) || !isfinite(w_off)))
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: eps %g must be finite and >= 0, weight_offset %g finite", op,
                        (double)eps, (double)w_off);
    a->pos = qn_op_kt(&pos);
    a->ff = qn_op_kt_opt(&ff);
    a->has_ff = qn_op_has(&ff);
    a->w = qn_op_kt_opt(&w);
    a->has_w = qn_op_has(&w);
    return QN_OK;
}

static qn_status rope(const char *op, const char *name, qn_encoder *enc, qn_tensor dst, qn_tensor x, qn_tensor w,
                      float eps, float w_off, int norm, bool cache, qn_tensor pos, qn_tensor ff,
                      const qn_rope_params *p) {
    const rope_names nm = {cache ? "cache" : "dst", "x", "w"};
    qn_rope_args a;
    QN_TRY(rope_args(op, &nm, enc, dst, x, w, eps, w_off, norm, cache, pos, ff, p, &a));
    if (cache && dst.dtype == QN_Q8_0)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: cache is q8_0 (expected f16 or bf16)", op);
    if (enc->dev->backend == QN_BACKEND_CPU) return qn_cpu_enqueue(enc, name, qn_cpu_rope, &a, sizeof a);
    return qn_op_launch_typed(enc, name, "rope.cu", "rope", dst.dtype, x.dtype, qn_rows_grid(&a.x),
                              qn_rows_block(norm ? x.ne[0] : qn_rope_npairs(&a.r)), &a);
}

qn_status qn_rope(qn_encoder *enc, qn_tensor dst, qn_tensor x, qn_tensor pos, qn_tensor freq_factors,
                  const qn_rope_params *p) {
    return rope("qn_rope", "rope", enc, dst, x, QN_TENSOR_NONE, 0.0f, 0.0f, 0, false, pos, freq_factors, p);
}

qn_status qn_rms_norm_rope(qn_encoder *enc, qn_tensor dst, qn_tensor x, qn_tensor w, float eps, float weight_offset,
                           qn_tensor pos, qn_tensor freq_factors, const qn_rope_params *p) {
    return rope("qn_rms_norm_rope", "rms_norm_rope", enc, dst, x, w, eps, weight_offset, 1, false, pos, freq_factors,
                p);
}

qn_status qn_rms_norm_rope_append(qn_encoder *enc, qn_tensor cache, qn_tensor x, qn_tensor w, float eps,
                                  float weight_offset, qn_tensor pos, qn_tensor freq_factors, const qn_rope_params *p) {
    return rope("qn_rms_norm_rope_append", "rms_norm_rope_append", enc, cache, x, w, eps, weight_offset, 1, true, pos,
                freq_factors, p);
}

qn_status qn_rms_norm_rope_qkv(qn_encoder *enc, qn_tensor q_dst, qn_tensor k_cache, qn_tensor v_cache, qn_tensor q,
                               qn_tensor k, qn_tensor v, qn_tensor q_w, qn_tensor k_w, float eps, float weight_offset,
                               qn_tensor pos, qn_tensor freq_factors, const qn_rope_params *p) {
    const char *op = "qn_rms_norm_rope_qkv";
    const rope_names qn = {"q_dst", "q", "q_w"}, kn = {"k_cache", "k", "k_w"};
    qn_rope_qkv_args a;
    QN_TRY(rope_args(op, &qn, enc, q_dst, q, q_w, eps, weight_offset, 1, false, pos, freq_factors, p, &a.q));
    QN_TRY(rope_args(op, &kn, enc, k_cache, k, k_w, eps, weight_offset, 1, true, pos, freq_factors, p, &a.k));
    const int64_t d = k.ne[0], H = q.ne[1], Hkv = k.ne[1], n = k.ne[2];
    /* (their token counts agree: pos was checked against both) */
    if (q.ne[0] != d)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: q head_dim %lld and k head_dim %lld differ", op,
                        (long long)q.ne[0], (long long)d);
    if (H % Hkv != 0 || H > (1 << 20))
        return qn_error(QN_ERR_INVALID_ARGUMENT,
                        "%s: %lld q heads for %lld kv heads (expected a multiple, at most 1048576)", op, (long long)H,
                        (long long)Hkv);
    if (k_cache.dtype == QN_Q8_0 && d > QN_ROPE_QKV_Q8_MAX_D)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: head_dim %lld is over %d for a q8_0 k_cache", op,
                        (long long)d, QN_ROPE_QKV_Q8_MAX_D);
    QN_TRY(qn_op_check_float(op, enc, "v", &v));
    QN_TRY(qn_op_same_shape(op, "v", &v, "k", &k));
    QN_TRY(qn_kv_cache_check(op, enc, "v_cache", &v_cache));
    QN_TRY(check_fits(op, "v", &v, "v_cache", &v_cache));
    a.v = qn_op_kt(&v);
    a.v_cache = qn_op_kt(&v_cache);
    if (enc->dev->backend == QN_BACKEND_CPU)
        return qn_cpu_enqueue(enc, "rms_norm_rope_qkv", qn_cpu_rope_qkv, &a, sizeof a);
    qn_dim3 grid = {(unsigned)(H + 2 * Hkv), (unsigned)(n < 65535 ? n : 65535), 1};
    void *args[] = {&a};
    return qn_cuda_launch(enc, "rms_norm_rope_qkv", "rope.cu", "", "rope_qkv", grid, qn_rows_block(d), 0, args);
}
