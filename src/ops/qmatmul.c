/* The quantized matrix product family: y = x · Wᵀ for weights in any block
 * type, dense or expert-routed, plain or with a fused gate/up activation.
 *
 * Routing: on the GPU every request goes to the matvec kernels
 * (matvec.cu): one launch covers up to 8 tokens (fewer when their x does
 * not fit in shared memory beside the weight stages), larger batches launch
 * once per that many. The launch plan (blocks, rows a stage, shared memory)
 * comes from qn_mv_plan in matvec_args.cuh; qn_qmatmul_plan describes it.
 * On the CPU every request goes to the threaded reference
 * (src/cpu/qmatmul.c). */
#include "cpu/cpu_ops.h"
#include "ops/ops.h"

#include <stdio.h>
#include <string.h>

#include "cuda/kernels/matvec_args.cuh"

static bool weight_type_ok(qn_dtype t) {
    switch (t) {
    case QN_F32: case QN_F16: case QN_BF16: case QN_Q4_0: case QN_Q4_1: case QN_Q5_0: case QN_Q5_1: case QN_Q8_0:
    case QN_Q8_1: case QN_Q2_K: case QN_Q3_K: case QN_Q4_K: case QN_Q5_K: case QN_Q6_K: case QN_Q8_K:
    case QN_IQ4_NL: case QN_IQ4_XS: case QN_MXFP4: return true;
    default: return false;
    }
}

/* The matvec kernels' block: 8 values for plain weights. */
static int64_t mv_block_elems(qn_dtype t) { return qn_dtype_block_elems(t) == 1 ? 8 : qn_dtype_block_elems(t); }

/* Shared memory of a multiprocessor and the most one block may take, by
 * compute capability (8.0/8.7: 164 KB, 9.0/10.x: 228 KB, others 100 KB). */
static void smem_limits(const qn_device *dev, long long *sm, long long *block) {
    int cc = dev->info.cc_major * 10 + dev->info.cc_minor;
    *sm = (cc == 80 || cc == 87) ? 164 * 1024 : (cc == 90 || cc == 100 || cc == 103) ? 228 * 1024 : 100 * 1024;
    *block = *sm - 1024;
}

/* A matvec launch for weights of type t, K x N, nx tokens (at most; the plan
 * may take fewer), over `pairs` (slot, token) pairs. */
static qn_status mv_plan(const qn_device *dev, const char *op, qn_dtype t, int64_t K, int64_t N, int64_t row_bytes,
                         int glu, int nx, int pairs, qn_mv_args *a, qn_dim3 *grid, unsigned *smem) {
    long long sm, block;
    smem_limits(dev, &sm, &block);
    int64_t qk = mv_block_elems(t);
    int bytes = (int)(qn_dtype_block_bytes(t) * (qk / qn_dtype_block_elems(t)));
    a->bpr = (int)(K / qk);
    a->row_bytes = row_bytes;
    a->glu = glu;
    a->nx = nx;
    unsigned gx;
    long long s = qn_mv_plan(a, (int)qk, bytes, N, pairs, dev->info.sm_count > 0 ? dev->info.sm_count : 1, sm, block, &gx);
    if (s < 0)
        return qn_error(QN_ERR_UNSUPPORTED, "%s: rows of %lld %s values do not fit the GPU's shared memory", op,
                        (long long)K, qn_dtype_name(t));
    *grid = (qn_dim3){gx, (unsigned)pairs, 1};
    *smem = (unsigned)s;
    return QN_OK;
}

/* The weights' fields of a launch: addresses, strides, and the end of each
 * tensor's last row, past which no copy reads. */
static void mv_weights(qn_mv_args *m, const qn_tensor *w, const qn_tensor *up) {
    int64_t last = (w->ne[2] - 1) * w->nb[2] + (w->ne[1] - 1) * w->nb[1] + qn_dtype_row_bytes(w->dtype, w->ne[0]);
    m->w = qn_tensor_addr(w);
    m->w_end = m->w + (uint64_t)last;
    m->up = up ? qn_tensor_addr(up) : 0;
    m->up_end = up ? m->up + (uint64_t)last : 0;
    m->row_bytes = w->nb[1];
    m->expert_bytes = w->nb[2];
    m->N = w->ne[1];
}

/* Launched so that a matvec after a matvec overlaps it; it writes only y
 * ([y, y_end)) and fetches weights early unless the kernel before it may
 * still be writing them. */
static qn_status mv_launch(qn_encoder *enc, const char *op, qn_dtype t, qn_mv_args *m, qn_dim3 grid, unsigned smem,
                           uint64_t y_end) {
    char fn[48], defines[32];
    snprintf(fn, sizeof fn, "matvec_%s", qn_dtype_name(t));
    snprintf(defines, sizeof defines, "-DQN_BLOCK=%s", qn_dtype_name(t));
    m->early = !qn_cuda_pdl_overlaps(enc, m->w, m->w_end) && !(m->up && qn_cuda_pdl_overlaps(enc, m->up, m->up_end));
    void *args[] = {m};
    return qn_cuda_launch_pdl(enc, op + 3, "matvec.cu", defines, fn, grid, (qn_dim3){QN_MV_THREADS, 1, 1}, smem, args,
                              m->y, y_end);
}

qn_status qn_qmatmul_plan(qn_device *dev, qn_dtype wtype, int64_t n, int64_t k, int64_t m, char *out, size_t len) {
    if (!dev || !out || len == 0) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_qmatmul_plan: NULL argument");
    if (!weight_type_ok(wtype))
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_qmatmul_plan: weights of dtype %s are not supported",
                        qn_dtype_name(wtype) ? qn_dtype_name(wtype) : "(invalid)");
    if (n < 1 || k < 1 || m < 1)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_qmatmul_plan: shape n=%lld k=%lld m=%lld", (long long)n,
                        (long long)k, (long long)m);
    if (dev->backend == QN_BACKEND_CPU) {
        snprintf(out, len, "cpu: dequantize each row, dot with %lld token(s), %lld rows across threads", (long long)m,
                 (long long)n);
        return QN_OK;
    }
    if (k % mv_block_elems(wtype) != 0)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_qmatmul_plan: k=%lld is not a multiple of %lld", (long long)k,
                        (long long)mv_block_elems(wtype));
    qn_mv_args a = {0};
    qn_dim3 grid;
    unsigned smem;
    QN_TRY(mv_plan(dev, "qn_qmatmul_plan", wtype, k, n, qn_dtype_row_bytes(wtype, k), 0,
                   (int)(m < QN_MV_TOKENS ? m : QN_MV_TOKENS), 1, &a, &grid, &smem));
    snprintf(out, len,
             "matvec_%s: %u blocks of %d threads, each streaming %lld rows through shared memory in stages of %d "
             "row(s) x %d blocks (%u bytes of shared memory); %lld launch(es) of up to %d tokens",
             qn_dtype_name(wtype), grid.x, QN_MV_THREADS, (long long)((n + grid.x - 1) / grid.x), a.rs, a.kc, smem,
             (long long)((m + a.nx - 1) / a.nx), a.nx);
    return QN_OK;
}

/* Weights: a known type, whole blocks back to back in each row, K a multiple
 * of the block (on the GPU of 8 for plain types: the kernels take 8 at a
 * time). Rows and blocks keep the alignment their size allows
 * (qn_op_check), which is what the kernels assume. */
static qn_status check_weight(const char *op, qn_encoder *enc, const char *name, const qn_tensor *w) {
    QN_TRY(qn_op_check(op, enc, name, w));
    if (!weight_type_ok(w->dtype))
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %s of dtype %s is not a weight type", op, name,
                        qn_dtype_name(w->dtype));
    if (w->nb[0] != qn_dtype_block_bytes(w->dtype))
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %s rows are not contiguous (nb[0] = %lld)", op, name,
                        (long long)w->nb[0]);
    if (enc->dev->backend == QN_BACKEND_CUDA && w->ne[0] % mv_block_elems(w->dtype) != 0)
        return qn_error(QN_ERR_UNSUPPORTED, "%s: %s weights on the GPU need rows of a multiple of 8 (got %lld)", op,
                        qn_dtype_name(w->dtype), (long long)w->ne[0]);
    return QN_OK;
}

/* x: float rows of K contiguous values; on the GPU 16-byte aligned. */
static qn_status check_x(const char *op, qn_encoder *enc, const qn_tensor *x, int64_t K) {
    QN_TRY(qn_op_check_float(op, enc, "x", x));
    if (x->ne[0] != K)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: x rows have %lld values, the weight rows %lld", op,
                        (long long)x->ne[0], (long long)K);
    if (x->nb[0] != qn_dtype_block_bytes(x->dtype))
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: x rows are not contiguous", op);
    if (enc->dev->backend == QN_BACKEND_CUDA &&
        (qn_tensor_addr(x) % 16 || x->nb[1] % 16 || x->nb[2] % 16 || x->nb[3] % 16))
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: x rows must start at 16-byte aligned addresses on the GPU", op);
    return QN_OK;
}

static qn_status check_y(const char *op, qn_encoder *enc, const qn_tensor *y, int64_t N) {
    QN_TRY(qn_op_check(op, enc, "y", y));
    if (y->dtype != QN_F32 || y->nb[0] != 4)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: y must be f32 with contiguous rows (is %s)", op,
                        qn_dtype_name(y->dtype));
    if (y->ne[0] != N)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: y rows have %lld values, W has %lld rows", op,
                        (long long)y->ne[0], (long long)N);
    return QN_OK;
}

static qn_status dense(const char *op, qn_encoder *enc, qn_tensor y, qn_tensor w, const qn_tensor *up, qn_tensor x,
                       int act) {
    QN_TRY(check_weight(op, enc, "w", &w));
    if (up) {
        QN_TRY(check_weight(op, enc, "up", up));
        if (up->dtype != w.dtype || up->ne[0] != w.ne[0] || up->ne[1] != w.ne[1] || up->nb[1] != w.nb[1])
            return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: gate and up weights differ in type, shape or stride", op);
    }
    if (w.ne[2] != 1 || w.ne[3] != 1 || x.ne[2] != 1 || x.ne[3] != 1 || y.ne[2] != 1 || y.ne[3] != 1)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: W, x and y must be 2-D (use qn_qmatmul_id for experts)", op);
    QN_TRY(check_x(op, enc, &x, w.ne[0]));
    QN_TRY(check_y(op, enc, &y, w.ne[1]));
    if (y.ne[1] != x.ne[1])
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: y has %lld tokens, x %lld", op, (long long)y.ne[1],
                        (long long)x.ne[1]);
    qn_qmatmul_args a = {qn_op_kt(&y), qn_op_kt(&w), up ? qn_op_kt(up) : qn_op_kt(&w), qn_op_kt(&x),
                         (qn_kt){0}, up != NULL, act, 0, 0, 0};
    if (enc->dev->backend == QN_BACKEND_CPU) {
        a.flags = qn_encoder_flags(enc); /* for a failed scratch allocation */
        return qn_cpu_enqueue(enc, op + 3, qn_cpu_qmatmul, &a, sizeof a);
    }

    qn_mv_args m = {0};
    qn_dim3 grid;
    unsigned smem;
    QN_TRY(mv_plan(enc->dev, op, w.dtype, w.ne[0], w.ne[1], w.nb[1], up != NULL,
                   (int)(x.ne[1] < QN_MV_TOKENS ? x.ne[1] : QN_MV_TOKENS), 1, &m, &grid, &smem));
    mv_weights(&m, &w, up);
    m.y_nb1 = y.nb[1] / 4;
    m.xt = x.dtype;
    m.act = act;
    const int per_launch = m.nx;
    for (int64_t t0 = 0; t0 < x.ne[1]; t0 += per_launch) {
        m.x = qn_tensor_addr(&x) + (uint64_t)(t0 * x.nb[1]);
        m.y = qn_tensor_addr(&y) + (uint64_t)(t0 * y.nb[1]);
        m.x_nb1 = x.nb[1];
        m.nx = (int)(x.ne[1] - t0 < per_launch ? x.ne[1] - t0 : per_launch);
        QN_TRY(mv_launch(enc, op, w.dtype, &m, grid, smem, m.y + (uint64_t)(((m.nx - 1) * m.y_nb1 + m.N) * 4)));
    }
    return QN_OK;
}

qn_status qn_qmatmul(qn_encoder *enc, qn_tensor y, qn_tensor w, qn_tensor x) {
    return dense("qn_qmatmul", enc, y, w, NULL, x, 0);
}

static qn_status check_act(const char *op, qn_act act) {
    if (act != QN_ACT_SILU && act != QN_ACT_GELU_TANH && act != QN_ACT_GELU_ERF)
        return qn_error(QN_ERR_INVALID_ARGUMENT,
                        "%s: activation %d (expected QN_ACT_SILU, QN_ACT_GELU_TANH or QN_ACT_GELU_ERF)", op, (int)act);
    return QN_OK;
}

qn_status qn_qmatmul_glu(qn_encoder *enc, qn_tensor y, qn_tensor gate, qn_tensor up, qn_tensor x, qn_act act) {
    QN_TRY(check_act("qn_qmatmul_glu", act));
    return dense("qn_qmatmul_glu", enc, y, gate, &up, x, (int)act);
}

/* Expert-routed: W [K, N, E], ids i32 [top_k, M], x [K, 1 or top_k, M],
 * y f32 [N, top_k, M] contiguous. */
static qn_status routed(const char *op, qn_encoder *enc, qn_tensor y, qn_tensor w, const qn_tensor *up, qn_tensor x,
                        qn_tensor ids, int act) {
    QN_TRY(check_weight(op, enc, "w", &w));
    if (up) {
        QN_TRY(check_weight(op, enc, "up", up));
        if (up->dtype != w.dtype || memcmp(up->ne, w.ne, sizeof w.ne) != 0 || up->nb[1] != w.nb[1] ||
            up->nb[2] != w.nb[2])
            return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: gate and up weights differ in type, shape or stride", op);
    }
    QN_TRY(qn_op_check(op, enc, "ids", &ids));
    if (ids.dtype != QN_I32 || ids.nb[0] != 4 || ids.ne[2] != 1 || ids.ne[3] != 1)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: ids must be i32 [top_k, tokens] (is %s)", op,
                        qn_dtype_name(ids.dtype));
    int64_t top_k = ids.ne[0], M = ids.ne[1], E = w.ne[2];
    if (w.ne[3] != 1) return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: W must be [K, N, n_experts]", op);
    QN_TRY(check_x(op, enc, &x, w.ne[0]));
    if ((x.ne[1] != 1 && x.ne[1] != top_k) || x.ne[2] != M || x.ne[3] != 1)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: x is [%lld, %lld, %lld], expected [K, 1 or top_k=%lld, tokens=%lld]",
                        op, (long long)x.ne[0], (long long)x.ne[1], (long long)x.ne[2], (long long)top_k, (long long)M);
    QN_TRY(check_y(op, enc, &y, w.ne[1]));
    if (y.ne[1] != top_k || y.ne[2] != M || y.ne[3] != 1 || y.nb[1] != 4 * y.ne[0] || y.nb[2] != y.nb[1] * top_k)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: y must be contiguous f32 [N, top_k=%lld, tokens=%lld]", op,
                        (long long)top_k, (long long)M);
    if (top_k * M > 65535)
        return qn_error(QN_ERR_UNSUPPORTED, "%s: %lld (expert, token) pairs exceed one launch's 65535", op,
                        (long long)(top_k * M));
    qn_qmatmul_args a = {qn_op_kt(&y), qn_op_kt(&w), up ? qn_op_kt(up) : qn_op_kt(&w), qn_op_kt(&x), qn_op_kt(&ids),
                         up != NULL, act, (int)E, (int)top_k, qn_encoder_flags(enc)};
    if (enc->dev->backend == QN_BACKEND_CPU) return qn_cpu_enqueue(enc, op + 3, qn_cpu_qmatmul_id, &a, sizeof a);

    qn_mv_args m = {0};
    qn_dim3 grid;
    unsigned smem;
    QN_TRY(mv_plan(enc->dev, op, w.dtype, w.ne[0], w.ne[1], w.nb[1], up != NULL, 1, (int)(top_k * M), &m, &grid, &smem));
    mv_weights(&m, &w, up);
    m.x = qn_tensor_addr(&x);
    m.x_slot_nb = x.ne[1] == 1 ? 0 : x.nb[1];
    m.x_nb1 = x.nb[2];
    m.xt = x.dtype;
    m.y = qn_tensor_addr(&y);
    m.ids = qn_tensor_addr(&ids);
    m.ids_nb1 = ids.nb[1] / 4;
    m.flags = a.flags;
    m.n_experts = (int)E;
    m.top_k = (int)top_k;
    m.act = act;
    return mv_launch(enc, op, w.dtype, &m, grid, smem, m.y + (uint64_t)(top_k * M * m.N * 4));
}

qn_status qn_qmatmul_id(qn_encoder *enc, qn_tensor y, qn_tensor w, qn_tensor x, qn_tensor ids) {
    return routed("qn_qmatmul_id", enc, y, w, NULL, x, ids, 0);
}

qn_status qn_qmatmul_glu_id(qn_encoder *enc, qn_tensor y, qn_tensor gate, qn_tensor up, qn_tensor x, qn_tensor ids,
                            qn_act act) {
    QN_TRY(check_act("qn_qmatmul_glu_id", act));
    return routed("qn_qmatmul_glu_id", enc, y, gate, &up, x, ids, (int)act);
}
