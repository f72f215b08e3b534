/* The gated delta net family: qn_gated_delta_net (decode step and chunked
 * prefill) and the layer's helpers qn_gdn_conv1d, qn_gdn_gates and
 * qn_gdn_gated_norm. Shapes and layouts are in quanta.h; the algorithms in
 * src/cuda/kernels/deltanet.cu. */
#include "cuda/kernels/deltanet_args.cuh"
#include "ops/ops.h"

#include <math.h>
#include <stdio.h>

static const char *const SRC = "deltanet.cu";

/* The tensor's ne are exactly (n0, n1, n2, n3). */
static qn_status check_shape(const char *op, const char *name, const qn_tensor *t, int64_t n0, int64_t n1, int64_t n2,
                             int64_t n3, const char *expected) {
    if (t->ne[0] == n0 && t->ne[1] == n1 && t->ne[2] == n2 && t->ne[3] == n3) return QN_OK;
    return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %s is [%lld,%lld,%lld,%lld] (expected %s = [%lld,%lld,%lld,%lld])",
                    op, name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3],
                    expected, (long long)n0, (long long)n1, (long long)n2, (long long)n3);
}

/* state_out is state_in itself, or does not overlap it: a kernel that
 * reads one while writing the other sees either the same element or none. */
static qn_status check_in_place(const char *op, const char *out_name, const qn_tensor *out, const char *in_name,
                                const qn_tensor *in) {
    bool same = qn_tensor_addr(out) == qn_tensor_addr(in) && out->dtype == in->dtype;
    for (int i = 0; i < 4; i++) same = same && out->ne[i] == in->ne[i] && out->nb[i] == in->nb[i];
    if (same) return QN_OK;
    if (!qn_op_overlap(out, in)) return QN_OK;
    return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %s overlaps %s without being the same view", op, out_name, in_name);
}

/* A state tensor: f32 [d_k, d_v, hv, B], rows contiguous and 16-byte
 * aligned (the decode kernel moves them as float4). */
static qn_status check_state(const char *op, qn_encoder *enc, const char *name, const qn_tensor *t, int64_t dk,
                             int64_t dv, int64_t hv, int64_t nseq) {
    QN_TRY(qn_op_check(op, enc, name, t));
    if (t->dtype != QN_F32)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %s is %s (expected f32)", op, name, qn_dtype_name(t->dtype));
    QN_TRY(check_shape(op, name, t, dk, dv, hv, nseq, "[d_k, d_v, n_v_heads, B]"));
    if (t->nb[0] != 4 || qn_tensor_addr(t) % 16 || t->nb[1] % 16 || t->nb[2] % 16 || t->nb[3] % 16)
        return qn_error(QN_ERR_INVALID_ARGUMENT,
                        "%s: %s rows must be contiguous (nb[0] = 4, got %lld) and 16-byte aligned (offset %zu, "
                        "nb %lld %lld %lld)",
                        op, name, (long long)t->nb[0], t->offset, (long long)t->nb[1], (long long)t->nb[2],
                        (long long)t->nb[3]);
    return QN_OK;
}

size_t qn_gated_delta_net_workspace(qn_device *dev, int64_t d_k, int64_t d_v, int64_t n_v_heads, int64_t n_tokens,
                                    int64_t n_seqs) {
    if (!dev || dev->backend != QN_BACKEND_CUDA || n_tokens <= 1 || d_k < 1 || d_v < 1 || n_v_heads < 1 || n_seqs < 1)
        return 0;
    /* Shapes the op would refuse anyway: keep the product from overflowing. */
    if (d_k > 256 || d_v > 256 || n_v_heads > 65535 || n_seqs > 65535 || n_tokens > ((int64_t)1 << 36)) return 0;
    int64_t chunks = (n_tokens + QN_GDN_CHUNK - 1) / QN_GDN_CHUNK;
    double floats =
        (double)qn_gdn_ws_offset(QN_GDN_WS_END, 1, d_k, d_v) * (double)(n_seqs * n_v_heads) * (double)chunks;
    if (floats * 4 > 9e18) return 0;
    return (size_t)(4 * qn_gdn_ws_offset(QN_GDN_WS_END, n_seqs * n_v_heads * chunks, d_k, d_v));
}

qn_status qn_gated_delta_net(qn_encoder *enc, qn_tensor out, qn_tensor state_out, qn_tensor q, qn_tensor k, qn_tensor v,
                             qn_tensor g, qn_tensor beta, qn_tensor state_in, qn_tensor workspace, float scale) {
    static const char *const op = "qn_gated_delta_net";
    QN_TRY(qn_op_check_float(op, enc, "q", &q));
    QN_TRY(qn_op_check_float(op, enc, "k", &k));
    QN_TRY(qn_op_check_float(op, enc, "v", &v));
    QN_TRY(qn_op_check_float(op, enc, "g", &g));
    QN_TRY(qn_op_check_float(op, enc, "beta", &beta));
    QN_TRY(qn_op_check_float(op, enc, "out", &out));
    const int64_t dk = q.ne[0], hk = q.ne[1], n_tok = q.ne[2], nseq = q.ne[3], dv = v.ne[0], hv = v.ne[1];
    if (dk != 128 && dk != 256)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: q ne[0] (d_k) = %lld (supported: 128, 256)", op, (long long)dk);
    if (dv != 128 && dv != 256)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: v ne[0] (d_v) = %lld (supported: 128, 256)", op, (long long)dv);
    QN_TRY(check_shape(op, "k", &k, dk, hk, n_tok, nseq, "q's shape"));
    if (hv % hk != 0)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: v has %lld heads, not a multiple of q and k's %lld", op,
                        (long long)hv, (long long)hk);
    QN_TRY(check_shape(op, "v", &v, dv, hv, n_tok, nseq, "[d_v, n_v_heads, T, B]"));
    QN_TRY(check_shape(op, "out", &out, dv, hv, n_tok, nseq, "v's shape"));
    QN_TRY(check_shape(op, "g", &g, hv, n_tok, nseq, 1, "[n_v_heads, T, B]"));
    QN_TRY(check_shape(op, "beta", &beta, hv, n_tok, nseq, 1, "[n_v_heads, T, B]"));
    if (k.dtype != q.dtype || v.dtype != q.dtype)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: q, k, v are %s, %s, %s (expected one dtype)", op,
                        qn_dtype_name(q.dtype), qn_dtype_name(k.dtype), qn_dtype_name(v.dtype));
    QN_TRY(check_state(op, enc, "state_in", &state_in, dk, dv, hv, nseq));
    QN_TRY(check_state(op, enc, "state_out", &state_out, dk, dv, hv, nseq));
    QN_TRY(check_in_place(op, "state_out", &state_out, "state_in", &state_in));
    if (!isfinite(scale)) return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: scale %g is not finite", op, (double)scale);
    /* Grid limits: heads and sequences are grid y and z, chunks grid x. */
    if (hv > 65535 || nseq > 65535 || n_tok > ((int64_t)1 << 36))
        return qn_error(QN_ERR_INVALID_ARGUMENT,
                        "%s: %lld heads, %lld sequences, %lld tokens exceed 65535, 65535, 2^36", op, (long long)hv,
                        (long long)nseq, (long long)n_tok);

    qn_gdn_args a = {qn_op_kt(&out),
                     qn_op_kt(&state_out),
                     qn_op_kt(&q),
                     qn_op_kt(&k),
                     qn_op_kt(&v),
                     qn_op_kt(&g),
                     qn_op_kt(&beta),
                     qn_op_kt(&state_in),
                     0,
                     scale,
                     (int)((n_tok + QN_GDN_CHUNK - 1) / QN_GDN_CHUNK)};
    size_t need = qn_gated_delta_net_workspace(enc->dev, dk, dv, hv, n_tok, nseq);
    if (need > 0) {
        QN_TRY(qn_op_check(op, enc, "workspace", &workspace));
        int64_t es = qn_dtype_block_bytes(workspace.dtype), be = qn_dtype_block_elems(workspace.dtype);
        bool contiguous = workspace.nb[0] == es && workspace.nb[1] == workspace.nb[0] * (workspace.ne[0] / be) &&
                          workspace.nb[2] == workspace.nb[1] * workspace.ne[1] &&
                          workspace.nb[3] == workspace.nb[2] * workspace.ne[2];
        uint64_t bytes = (uint64_t)workspace.nb[3] * (uint64_t)workspace.ne[3];
        if (!contiguous || bytes < need || qn_tensor_addr(&workspace) % 16)
            return qn_error(QN_ERR_INVALID_ARGUMENT,
                            "%s: workspace must be contiguous, 16-byte aligned and hold %zu bytes (got %llu bytes%s%s)",
                            op, need, (unsigned long long)bytes, contiguous ? "" : ", not contiguous",
                            qn_tensor_addr(&workspace) % 16 ? ", misaligned" : "");
        a.ws = qn_tensor_addr(&workspace);
    }
    if (enc->dev->backend == QN_BACKEND_CPU)
        return qn_cpu_enqueue(enc, "gated_delta_net", qn_cpu_gated_delta_net, &a, sizeof a);

    char defines[48];
    snprintf(defines, sizeof defines, "-DQN_GDN_DK=%d -DQN_GDN_DV=%d", (int)dk, (int)dv);
    void *args[] = {&a};
    qn_dim3 cols = {(unsigned)(dv / 16), (unsigned)hv, (unsigned)nseq};
    if (n_tok == 1)
        return qn_cuda_launch(enc, "gated_delta_net_decode", SRC, defines, "gdn_decode", cols, (qn_dim3){128, 1, 1}, 0,
                              args);
    qn_dim3 chunks = {(unsigned)a.n_chunks, (unsigned)hv, (unsigned)nseq};
    /* Three launches, named apart so a profile shows each. */
    QN_TRY(qn_cuda_launch(enc, "gated_delta_net_prep", SRC, defines, "gdn_prep", chunks, (qn_dim3){256, 1, 1},
                          QN_GDN_PREP_SMEM(dk, dv), args));
    QN_TRY(qn_cuda_launch(enc, "gated_delta_net_state", SRC, defines, "gdn_state", cols, (qn_dim3){128, 1, 1},
                          QN_GDN_STATE_SMEM(dk), args));
    return qn_cuda_launch(enc, "gated_delta_net_out", SRC, defines, "gdn_out", chunks, (qn_dim3){256, 1, 1},
                          QN_GDN_OUT_SMEM(dk), args);
}

qn_status qn_gdn_conv1d(qn_encoder *enc, qn_tensor out, qn_tensor state_out, qn_tensor x, qn_tensor weight,
                        qn_tensor state_in) {
    static const char *const op = "qn_gdn_conv1d";
    QN_TRY(qn_op_check_float(op, enc, "out", &out));
    QN_TRY(qn_op_check_float(op, enc, "state_out", &state_out));
    QN_TRY(qn_op_check_float(op, enc, "x", &x));
    QN_TRY(qn_op_check_float(op, enc, "weight", &weight));
    QN_TRY(qn_op_check_float(op, enc, "state_in", &state_in));
    const int64_t n_ch = x.ne[0], n_tok = x.ne[1], nseq = x.ne[2], w = weight.ne[0];
    if (x.ne[3] != 1)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: x ne[3] = %lld (expected [C, T, B])", op, (long long)x.ne[3]);
    if (w < 2 || w > 8)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: weight ne[0] (width) = %lld (supported: 2 to 8)", op,
                        (long long)w);
    QN_TRY(check_shape(op, "weight", &weight, w, n_ch, 1, 1, "[W, C]"));
    QN_TRY(check_shape(op, "out", &out, n_ch, n_tok, nseq, 1, "x's shape"));
    QN_TRY(check_shape(op, "state_in", &state_in, n_ch, w - 1, nseq, 1, "[C, W - 1, B]"));
    QN_TRY(check_shape(op, "state_out", &state_out, n_ch, w - 1, nseq, 1, "[C, W - 1, B]"));
    QN_TRY(check_in_place(op, "state_out", &state_out, "state_in", &state_in));
    if (nseq > 65535 || n_ch > 65535 * 128 || n_tok > ((int64_t)1 << 36))
        return qn_error(QN_ERR_INVALID_ARGUMENT,
                        "%s: %lld sequences, %lld channels, %lld tokens exceed 65535, %d, 2^36", op, (long long)nseq,
                        (long long)n_ch, (long long)n_tok, 65535 * 128);
    qn_gdn_conv_args a = {qn_op_kt(&out), qn_op_kt(&state_out), qn_op_kt(&x), qn_op_kt(&weight), qn_op_kt(&state_in)};
    if (enc->dev->backend == QN_BACKEND_CPU) return qn_cpu_enqueue(enc, "gdn_conv1d", qn_cpu_gdn_conv1d, &a, sizeof a);
    void *args[] = {&a};
    qn_dim3 grid = {(unsigned)((n_tok + 63) / 64), (unsigned)((n_ch + 127) / 128), (unsigned)nseq};
    return qn_cuda_launch(enc, "gdn_conv1d", SRC, "", "gdn_conv1d", grid, (qn_dim3){128, 1, 1}, 0, args);
}

qn_status qn_gdn_gates(qn_encoder *enc, qn_tensor g, qn_tensor beta, qn_tensor a, qn_tensor b, qn_tensor a_log,
                       qn_tensor dt_bias) {
    static const char *const op = "qn_gdn_gates";
    QN_TRY(qn_op_check_float(op, enc, "g", &g));
    QN_TRY(qn_op_check_float(op, enc, "beta", &beta));
    QN_TRY(qn_op_check_float(op, enc, "a", &a));
    QN_TRY(qn_op_check_float(op, enc, "b", &b));
    QN_TRY(qn_op_check_float(op, enc, "a_log", &a_log));
    QN_TRY(qn_op_check_float(op, enc, "dt_bias", &dt_bias));
    const int64_t h = a.ne[0];
    if (a.ne[3] != 1)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: a ne[3] = %lld (expected [H, T, B])", op, (long long)a.ne[3]);
    QN_TRY(check_shape(op, "b", &b, h, a.ne[1], a.ne[2], 1, "a's shape"));
    QN_TRY(check_shape(op, "g", &g, h, a.ne[1], a.ne[2], 1, "a's shape"));
    QN_TRY(check_shape(op, "beta", &beta, h, a.ne[1], a.ne[2], 1, "a's shape"));
    QN_TRY(check_shape(op, "a_log", &a_log, h, 1, 1, 1, "[H]"));
    QN_TRY(check_shape(op, "dt_bias", &dt_bias, h, 1, 1, 1, "[H]"));
    qn_gdn_gates_args r = {qn_op_kt(&g), qn_op_kt(&beta),  qn_op_kt(&a),
                           qn_op_kt(&b), qn_op_kt(&a_log), qn_op_kt(&dt_bias)};
    if (enc->dev->backend == QN_BACKEND_CPU) return qn_cpu_enqueue(enc, "gdn_gates", qn_cpu_gdn_gates, &r, sizeof r);
    void *args[] = {&r};
    return qn_cuda_launch(enc, "gdn_gates", SRC, "", "gdn_gates", qn_rows_grid(&r.a), qn_rows_block(h), 0, args);
}

qn_status qn_gdn_gated_norm(qn_encoder *enc, qn_tensor out, qn_tensor x, qn_tensor z, qn_tensor weight, float eps) {
    static const char *const op = "qn_gdn_gated_norm";
    QN_TRY(qn_op_check_float(op, enc, "out", &out));
    QN_TRY(qn_op_check_float(op, enc, "x", &x));
    QN_TRY(qn_op_check_float(op, enc, "z", &z));
    QN_TRY(qn_op_check_float(op, enc, "weight", &weight));
    QN_TRY(qn_op_same_shape(op, "out", &out, "x", &x));
    QN_TRY(qn_op_same_shape(op, "z", &z, "x", &x));
    QN_TRY(check_shape(op, "weight", &weight, x.ne[0], 1, 1, 1, "[D]"));
    if (!(eps > 0.0f) || !isfinite(eps))
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: eps %g is not a positive number", op, (double)eps);
    qn_gdn_norm_args r = {qn_op_kt(&out), qn_op_kt(&x), qn_op_kt(&z), qn_op_kt(&weight), eps};
    int64_t rows = x.ne[1] * x.ne[2] * x.ne[3];
    if (rows > ((int64_t)1 << 32))
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %lld rows exceed 2^32", op, (long long)rows);
    if (enc->dev->backend == QN_BACKEND_CPU)
        return qn_cpu_enqueue(enc, "gdn_gated_norm", qn_cpu_gdn_gated_norm, &r, sizeof r);
    void *args[] = {&r};
    qn_dim3 grid = {(unsigned)((rows + 3) / 4), 1, 1};
    return qn_cuda_launch(enc, "gdn_gated_norm", SRC, "", "gdn_gated_norm", grid, (qn_dim3){128, 1, 1}, 0, args);
}
