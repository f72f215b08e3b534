/* The quantized matrix product family: y = x · Wᵀ for weights in any block
 * type or in MLX's affine format, dense or expert-routed, plain or with a
 * fused gate/up activation.
 *
 * Routing: on the GPU every request goes to the matvec kernels
 * (matvec.cu; matvec_affine.cu for MLX weights): one launch covers up to 8
 * tokens, larger batches launch once per 8 tokens. qn_qmatmul_plan and
 * qn_qmatmul_mlx_plan name the kernels a request runs. On the CPU every
 * request goes to the threaded reference (src/cpu/qmatmul.c). */
#include "cpu/cpu_ops.h"
#include "cuda/kernels/affine.h"
#include "ops/ops.h"

#include <stdio.h>
#include <string.h>

#define MV_ROWS 4        /* rows a block: matvec.cu's MV_ROWS */
#define MV_THREADS 128   /* threads a block at most: 32 * matvec.cu's MV_WARPS */
#define MV_MAX_TOKENS 8  /* tokens one matvec launch covers */

static bool weight_type_ok(qn_dtype t) {
    switch (t) {
    case QN_F32: case QN_F16: case QN_BF16: case QN_Q4_0: case QN_Q4_1: case QN_Q5_0: case QN_Q5_1: case QN_Q8_0:
    case QN_Q8_1: case QN_Q2_K: case QN_Q3_K: case QN_Q4_K: case QN_Q5_K: case QN_Q6_K: case QN_Q8_K:
    case QN_IQ4_NL: case QN_IQ4_XS: case QN_MXFP4: return true;
    default: return false;
    }
}

/* Threads a block: the block's threads split a row's parts. A short row
 * gets the fewest warps that still cover it in one trip, or, when there are
 * rows enough to fill the GPU several times over anyway (a vocabulary
 * head), a single warp. */
static unsigned mv_threads(const qn_device *dev, qn_dtype t, int64_t K, int64_t N) {
    int64_t blk = qn_dtype_block_elems(t) == 1 ? 8 : qn_dtype_block_elems(t);
    int64_t parts = K / blk * (blk == 256 ? 8 : blk == 32 ? 2 : 1);
    int64_t blocks = (N + MV_ROWS - 1) / MV_ROWS, sms = dev->info.sm_count > 0 ? dev->info.sm_count : 1;
    if (parts <= 32 || (parts < MV_THREADS && blocks >= 64 * sms)) return 32;
    return parts <= 64 ? 64 : MV_THREADS;
}

/* What the plan calls share: the shape's check, and the CPU's answer
 * (*done then). */
static qn_status plan_start(const char *who, qn_device *dev, int64_t n, int64_t k, int64_t m, char *out, size_t len,
                            bool *done) {
    *done = false;
    if (!dev || !out || len == 0) return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: NULL argument", who);
    if (n < 1 || k < 1 || m < 1)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: shape n=%lld k=%lld m=%lld", who, (long long)n, (long long)k,
                        (long long)m);
    if (dev->backend == QN_BACKEND_CPU) {
        snprintf(out, len, "cpu: dequantize each row, dot with %lld token(s), %lld rows across threads", (long long)m,
                 (long long)n);
        *done = true;
    }
    return QN_OK;
}

qn_status qn_qmatmul_plan(qn_device *dev, qn_dtype wtype, int64_t n, int64_t k, int64_t m, char *out, size_t len) {
    if (!weight_type_ok(wtype))
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_qmatmul_plan: weights of dtype %s are not supported",
                        qn_dtype_name(wtype) ? qn_dtype_name(wtype) : "(invalid)");
    bool done;
    QN_TRY(plan_start("qn_qmatmul_plan", dev, n, k, m, out, len, &done));
    if (done) return QN_OK;
    int64_t launches = (m + MV_MAX_TOKENS - 1) / MV_MAX_TOKENS;
    snprintf(out, len, "matvec_%s: %lld block(s) of %u threads, %d rows a block; %lld launch(es) of up to %d tokens",
             qn_dtype_name(wtype), (long long)((n + MV_ROWS - 1) / MV_ROWS), mv_threads(dev, wtype, k, n), MV_ROWS,
             (long long)launches, MV_MAX_TOKENS);
    return QN_OK;
}

/* Weights: a known type, whole blocks back to back in each row, K a multiple
 * of the block (on the GPU of 8 for plain types: 16-byte loads). */
static qn_status check_weight(const char *op, qn_encoder *enc, const char *name, const qn_tensor *w) {
    QN_TRY(qn_op_check(op, enc, name, w));
    if (!weight_type_ok(w->dtype))
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %s of dtype %s is not a weight type", op, name,
                        qn_dtype_name(w->dtype));
    if (w->nb[0] != qn_dtype_block_bytes(w->dtype))
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %s rows are not contiguous (nb[0] = %lld)", op, name,
                        (long long)w->nb[0]);
    if (enc->dev->backend == QN_BACKEND_CUDA && qn_dtype_block_elems(w->dtype) == 1 &&
        (w->ne[0] % 8 != 0 || w->nb[1] % 16 != 0 || qn_tensor_addr(w) % 16 != 0))
        return qn_error(QN_ERR_UNSUPPORTED,
                        "%s: %s weights on the GPU need rows of a multiple of 8 (got %lld) at 16-byte alignment", op,
                        qn_dtype_name(w->dtype), (long long)w->ne[0]);
    return QN_OK;
}

/* A weight operand: rows of one block type, or an MLX affine weight. */
typedef struct {
    qn_tensor w;              /* the rows; for MLX, the packed q (set by the check) */
    const qn_mlx_weight *mlx; /* the MLX weight, NULL for block types */
    bool affine;              /* MLX (mlx may be NULL before the check) */
    int64_t K;                /* weights a row (set by the check) */
} operand;

static operand block_operand(qn_tensor w) { return (operand){w, NULL, false, 0}; }
static operand mlx_operand(const qn_mlx_weight *w) { return (operand){{0}, w, true, 0}; }

static qn_status check_mlx(const char *op, qn_encoder *enc, const char *name, operand *o);

static qn_status check_operand(const char *op, qn_encoder *enc, const char *name, operand *o) {
    if (o->affine) return check_mlx(op, enc, name, o);
    QN_TRY(check_weight(op, enc, name, &o->w));
    o->K = o->w.ne[0];
    return QN_OK;
}

/* Same dtype, shape and strides (the kernels read gate and up rows with
 * the same offsets). */
static bool same_layout(const qn_tensor *a, const qn_tensor *b) {
    return a->dtype == b->dtype && memcmp(a->ne, b->ne, sizeof a->ne) == 0 && a->nb[1] == b->nb[1] &&
           (a->ne[2] == 1 || a->nb[2] == b->nb[2]);
}

static qn_status check_up(const char *op, qn_encoder *enc, const operand *g, operand *u) {
    QN_TRY(check_operand(op, enc, "up", u));
    bool same = same_layout(&g->w, &u->w);
    if (g->mlx)
        same = same && g->mlx->bits == u->mlx->bits && g->mlx->group_size == u->mlx->group_size &&
               same_layout(&g->mlx->scales, &u->mlx->scales) && same_layout(&g->mlx->biases, &u->mlx->biases);
    if (!same) return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: gate and up weights differ in type, shape or stride", op);
    return QN_OK;
}

/* The CPU's argument record (the GPU's for block types). */
static qn_qmatmul_args make_args(qn_encoder *enc, const qn_tensor *y, const operand *g, const operand *u,
                                 const qn_tensor *x, const qn_tensor *ids, int act) {
    qn_qmatmul_args a = {.y = qn_op_kt(y), .w = qn_op_kt(&g->w), .up = qn_op_kt(u ? &u->w : &g->w), .x = qn_op_kt(x),
                         .ids = ids ? qn_op_kt(ids) : (qn_kt){0}, .glu = u != NULL, .act = act,
                         .n_experts = (int)g->w.ne[2], .top_k = ids ? (int)ids->ne[0] : 0,
                         .flags = qn_encoder_flags(enc)};
    if (g->mlx) {
        const qn_mlx_weight *um = u ? u->mlx : g->mlx;
        a.w_scales = qn_op_kt(&g->mlx->scales), a.w_biases = qn_op_kt(&g->mlx->biases);
        a.up_scales = qn_op_kt(&um->scales), a.up_biases = qn_op_kt(&um->biases);
        a.bits = g->mlx->bits, a.group = g->mlx->group_size;
    }
    return a;
}

static qn_status affine_dense(const char *op, qn_encoder *enc, const qn_qmatmul_args *a, const operand *g,
                              const operand *u);
static qn_status affine_routed(const char *op, qn_encoder *enc, const qn_qmatmul_args *a, const operand *g,
                               const operand *u);

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

static qn_status dense(const char *op, qn_encoder *enc, qn_tensor y, operand *g, operand *u, qn_tensor x, int act) {
    QN_TRY(check_operand(op, enc, "w", g));
    if (u) QN_TRY(check_up(op, enc, g, u));
    const qn_tensor w = g->w;
    if (w.ne[2] != 1 || w.ne[3] != 1 || x.ne[2] != 1 || x.ne[3] != 1 || y.ne[2] != 1 || y.ne[3] != 1)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: W, x and y must be 2-D (use the _id form for experts)", op);
    QN_TRY(check_x(op, enc, &x, g->K));
    QN_TRY(check_y(op, enc, &y, w.ne[1]));
    if (y.ne[1] != x.ne[1])
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: y has %lld tokens, x %lld", op, (long long)y.ne[1],
                        (long long)x.ne[1]);
    qn_qmatmul_args a = make_args(enc, &y, g, u, &x, NULL, act); /* flags: for a failed CPU scratch allocation */
    if (enc->dev->backend == QN_BACKEND_CPU) return qn_cpu_enqueue(enc, op + 3, qn_cpu_qmatmul, &a, sizeof a);
    if (g->mlx) return affine_dense(op, enc, &a, g, u);
    const qn_tensor *up = u ? &u->w : NULL;

    char fn[48], defines[32];
    snprintf(fn, sizeof fn, "matvec_%s", qn_dtype_name(w.dtype));
    snprintf(defines, sizeof defines, "-DQN_BLOCK=%s", qn_dtype_name(w.dtype));
    uint64_t wp = qn_tensor_addr(&w), upp = up ? qn_tensor_addr(up) : 0;
    long long row_bytes = w.nb[1], N = w.ne[1], K = w.ne[0], x_nb1 = x.nb[1], y_nb1 = y.nb[1] / 4;
    int xt = x.dtype;
    qn_dim3 grid = {(unsigned)((N + MV_ROWS - 1) / MV_ROWS), 1, 1}, block = {mv_threads(enc->dev, w.dtype, K, N), 1, 1};
    for (int64_t t0 = 0; t0 < x.ne[1]; t0 += MV_MAX_TOKENS) {
        uint64_t xp = qn_tensor_addr(&x) + (uint64_t)(t0 * x.nb[1]), yp = qn_tensor_addr(&y) + (uint64_t)(t0 * y.nb[1]);
        int nx = (int)(x.ne[1] - t0 < MV_MAX_TOKENS ? x.ne[1] - t0 : MV_MAX_TOKENS);
        void *args[] = {&wp, &upp, &row_bytes, &N, &K, &xp, &x_nb1, &xt, &nx, &yp, &y_nb1, &act};
        QN_TRY(qn_cuda_launch(enc, op + 3, "matvec.cu", defines, fn, grid, block, 0, args));
    }
    return QN_OK;
}

qn_status qn_qmatmul(qn_encoder *enc, qn_tensor y, qn_tensor w, qn_tensor x) {
    operand g = block_operand(w);
    return dense("qn_qmatmul", enc, y, &g, NULL, x, 0);
}

static qn_status check_act(const char *op, qn_act act) {
    if (act != QN_ACT_SILU && act != QN_ACT_GELU_TANH && act != QN_ACT_GELU_ERF)
        return qn_error(QN_ERR_INVALID_ARGUMENT,
                        "%s: activation %d (expected QN_ACT_SILU, QN_ACT_GELU_TANH or QN_ACT_GELU_ERF)", op, (int)act);
    return QN_OK;
}

qn_status qn_qmatmul_glu(qn_encoder *enc, qn_tensor y, qn_tensor gate, qn_tensor up, qn_tensor x, qn_act act) {
    QN_TRY(check_act("qn_qmatmul_glu", act));
    operand g = block_operand(gate), u = block_operand(up);
    return dense("qn_qmatmul_glu", enc, y, &g, &u, x, (int)act);
}

/* Expert-routed: W [K, N, E], ids i32 [top_k, M], x [K, 1 or top_k, M],
 * y f32 [N, top_k, M] contiguous. */
static qn_status routed(const char *op, qn_encoder *enc, qn_tensor y, operand *g, operand *u, qn_tensor x,
                        qn_tensor ids, int act) {
    QN_TRY(check_operand(op, enc, "w", g));
    if (u) QN_TRY(check_up(op, enc, g, u));
    const qn_tensor w = g->w;
    QN_TRY(qn_op_check(op, enc, "ids", &ids));
    if (ids.dtype != QN_I32 || ids.nb[0] != 4 || ids.ne[2] != 1 || ids.ne[3] != 1)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: ids must be i32 [top_k, tokens] (is %s)", op,
                        qn_dtype_name(ids.dtype));
    int64_t top_k = ids.ne[0], M = ids.ne[1], E = w.ne[2];
    if (w.ne[3] != 1) return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: W must be [K, N, n_experts]", op);
    QN_TRY(check_x(op, enc, &x, g->K));
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
    qn_qmatmul_args a = make_args(enc, &y, g, u, &x, &ids, act);
    if (enc->dev->backend == QN_BACKEND_CPU) return qn_cpu_enqueue(enc, op + 3, qn_cpu_qmatmul_id, &a, sizeof a);
    if (g->mlx) return affine_routed(op, enc, &a, g, u);
    const qn_tensor *up = u ? &u->w : NULL;

    char fn[48], defines[32];
    snprintf(fn, sizeof fn, "matvec_id_%s", qn_dtype_name(w.dtype));
    snprintf(defines, sizeof defines, "-DQN_BLOCK=%s", qn_dtype_name(w.dtype));
    uint64_t wp = qn_tensor_addr(&w), upp = up ? qn_tensor_addr(up) : 0, xp = qn_tensor_addr(&x),
             yp = qn_tensor_addr(&y), idp = qn_tensor_addr(&ids), flags = a.flags;
    long long row_bytes = w.nb[1], expert_bytes = w.nb[2], N = w.ne[1], K = w.ne[0], ids_nb1 = ids.nb[1] / 4;
    long long x_slot_nb = x.ne[1] == 1 ? 0 : x.nb[1], x_nb1 = x.nb[2];
    int n_experts = (int)E, tk = (int)top_k, xt = x.dtype;
    void *args[] = {&wp, &upp, &row_bytes, &expert_bytes, &n_experts, &N, &K, &idp, &ids_nb1, &tk,
                    &xp, &x_slot_nb, &x_nb1, &xt, &yp, &act, &flags};
    qn_dim3 grid = {(unsigned)((N + MV_ROWS - 1) / MV_ROWS), (unsigned)(top_k * M), 1},
            block = {mv_threads(enc->dev, w.dtype, K, N), 1, 1};
    return qn_cuda_launch(enc, op + 3, "matvec.cu", defines, fn, grid, block, 0, args);
}

qn_status qn_qmatmul_id(qn_encoder *enc, qn_tensor y, qn_tensor w, qn_tensor x, qn_tensor ids) {
    operand g = block_operand(w);
    return routed("qn_qmatmul_id", enc, y, &g, NULL, x, ids, 0);
}

qn_status qn_qmatmul_glu_id(qn_encoder *enc, qn_tensor y, qn_tensor gate, qn_tensor up, qn_tensor x, qn_tensor ids,
                            qn_act act) {
    QN_TRY(check_act("qn_qmatmul_glu_id", act));
    operand g = block_operand(gate), u = block_operand(up);
    return routed("qn_qmatmul_glu_id", enc, y, &g, &u, x, ids, (int)act);
}

/* ---- MLX affine weights (matvec_affine.cu) */

/* Alignment of a q row on the GPU: the kernel reads a 32-weight unit (bits
 * words) with the widest loads that divide it. */
static int64_t affine_align(int bits) { return bits % 4 == 0 ? 16 : bits % 2 == 0 ? 8 : 4; }

static qn_status check_mlx(const char *op, qn_encoder *enc, const char *name, operand *o) {
    const qn_mlx_weight *w = o->mlx;
    int64_t cols;
    QN_TRY(qn_mlx_weight_check(op, enc, w, &cols));
    int64_t sb = qn_dtype_block_bytes(w->scales.dtype);
    if (w->scales.nb[0] != sb || w->biases.nb[0] != sb)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %s scales and biases must be contiguous within a row", op, name);
    if (enc->dev->backend == QN_BACKEND_CUDA) {
        int64_t al = affine_align(w->bits);
        if (qn_tensor_addr(&w->q) % (uint64_t)al || w->q.nb[1] % al || w->q.nb[2] % al || w->q.nb[3] % al)
            return qn_error(QN_ERR_UNSUPPORTED, "%s: %s q rows of %d-bit weights must start at multiples of %lld bytes on the GPU",
                            op, name, w->bits, (long long)al);
    }
    o->w = w->q;
    o->K = cols;
    return QN_OK;
}

static unsigned affine_threads(int64_t K) {
    int64_t units = K / 32; /* a thread's step: 32 weights of each of the block's rows */
    return units <= 32 ? 32 : units <= 64 ? 64 : units <= 96 ? 96 : 32 * QN_AFFINE_WARPS;
}

static int affine_rows_out(int bits, bool glu) { return glu ? QN_AFFINE_ROWS(bits) / 2 : QN_AFFINE_ROWS(bits); }

/* The kernels' arguments but for x, y and the tokens. */
static qn_affine_args affine_args(const qn_qmatmul_args *a, const operand *g, const operand *u) {
    const qn_mlx_weight *gw = g->mlx, *uw = u ? u->mlx : g->mlx;
    qn_affine_args k = {0};
    k.q[0] = qn_tensor_addr(&gw->q), k.q[1] = qn_tensor_addr(&uw->q);
    k.s[0] = qn_tensor_addr(&gw->scales), k.s[1] = qn_tensor_addr(&uw->scales);
    k.b[0] = qn_tensor_addr(&gw->biases), k.b[1] = qn_tensor_addr(&uw->biases);
    k.q_row = gw->q.nb[1], k.s_row = gw->scales.nb[1], k.b_row = gw->biases.nb[1];
    k.q_expert = gw->q.nb[2], k.s_expert = gw->scales.nb[2], k.b_expert = gw->biases.nb[2];
    k.N = gw->q.ne[1], k.K = g->K;
    while ((1 << k.group_shift) < gw->group_size) k.group_shift++;
    k.stype = gw->scales.dtype, k.xt = a->x.dtype, k.act = a->act;
    return k;
}

static qn_status affine_launch(qn_encoder *enc, const char *op, const qn_affine_args *k, const operand *g, bool glu,
                               bool routed, unsigned pairs) {
    char fn[32], defines[32];
    snprintf(fn, sizeof fn, "affine_matvec%s%s", glu ? "_glu" : "", routed ? "_id" : "");
    snprintf(defines, sizeof defines, "-DQN_AFFINE_BITS=%d", g->mlx->bits);
    int rows = affine_rows_out(g->mlx->bits, glu);
    qn_dim3 grid = {(unsigned)((k->N + rows - 1) / rows), pairs, 1}, block = {affine_threads(k->K), 1, 1};
    void *args[] = {(void *)k};
    return qn_cuda_launch(enc, op + 3, "matvec_affine.cu", defines, fn, grid, block, 0, args);
}

static qn_status affine_dense(const char *op, qn_encoder *enc, const qn_qmatmul_args *a, const operand *g,
                              const operand *u) {
    qn_affine_args k = affine_args(a, g, u);
    k.x_tok = a->x.nb[1], k.y_tok = a->y.nb[1] / 4;
    for (int64_t t0 = 0; t0 < a->x.ne[1]; t0 += MV_MAX_TOKENS) {
        k.x = a->x.addr + (uint64_t)(t0 * a->x.nb[1]), k.y = a->y.addr + (uint64_t)(t0 * a->y.nb[1]);
        k.nx = (int)(a->x.ne[1] - t0 < MV_MAX_TOKENS ? a->x.ne[1] - t0 : MV_MAX_TOKENS);
        QN_TRY(affine_launch(enc, op, &k, g, u != NULL, false, 1));
    }
    return QN_OK;
}

static qn_status affine_routed(const char *op, qn_encoder *enc, const qn_qmatmul_args *a, const operand *g,
                               const operand *u) {
    qn_affine_args k = affine_args(a, g, u);
    k.x = a->x.addr, k.y = a->y.addr, k.x_tok = a->x.nb[2], k.x_slot = a->x.ne[1] == 1 ? 0 : a->x.nb[1];
    k.ids = a->ids.addr, k.ids_tok = a->ids.nb[1] / 4, k.flags = a->flags;
    k.top_k = a->top_k, k.n_experts = a->n_experts, k.nx = 1;
    return affine_launch(enc, op, &k, g, u != NULL, true, (unsigned)(a->top_k * a->ids.ne[1]));
}

qn_status qn_qmatmul_mlx(qn_encoder *enc, qn_tensor y, const qn_mlx_weight *w, qn_tensor x) {
    operand g = mlx_operand(w);
    return dense("qn_qmatmul_mlx", enc, y, &g, NULL, x, 0);
}

qn_status qn_qmatmul_mlx_glu(qn_encoder *enc, qn_tensor y, const qn_mlx_weight *gate, const qn_mlx_weight *up,
                             qn_tensor x, qn_act act) {
    QN_TRY(check_act("qn_qmatmul_mlx_glu", act));
    operand g = mlx_operand(gate), u = mlx_operand(up);
    return dense("qn_qmatmul_mlx_glu", enc, y, &g, &u, x, (int)act);
}

qn_status qn_qmatmul_mlx_id(qn_encoder *enc, qn_tensor y, const qn_mlx_weight *w, qn_tensor x, qn_tensor ids) {
    operand g = mlx_operand(w);
    return routed("qn_qmatmul_mlx_id", enc, y, &g, NULL, x, ids, 0);
}

qn_status qn_qmatmul_mlx_glu_id(qn_encoder *enc, qn_tensor y, const qn_mlx_weight *gate, const qn_mlx_weight *up,
                                qn_tensor x, qn_tensor ids, qn_act act) {
    QN_TRY(check_act("qn_qmatmul_mlx_glu_id", act));
    operand g = mlx_operand(gate), u = mlx_operand(up);
    return routed("qn_qmatmul_mlx_glu_id", enc, y, &g, &u, x, ids, (int)act);
}

qn_status qn_qmatmul_mlx_plan(qn_device *dev, qn_mlx_quant p, int64_t n, int64_t k, int64_t m, char *out, size_t len) {
    const char *who = "qn_qmatmul_mlx_plan";
    if (p.bits != 2 && p.bits != 3 && p.bits != 4 && p.bits != 6 && p.bits != 8)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: bits %d is not 2, 3, 4, 6 or 8", who, p.bits);
    if (p.group_size != 32 && p.group_size != 64 && p.group_size != 128)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: group size %d is not 32, 64 or 128", who, p.group_size);
    if (k % p.group_size != 0)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: k = %lld is not a multiple of the group size %d", who,
                        (long long)k, p.group_size);
    bool done;
    QN_TRY(plan_start(who, dev, n, k, m, out, len, &done));
    if (done) return QN_OK;
    int rows = affine_rows_out(p.bits, false);
    snprintf(out, len,
             "affine_matvec (%d-bit, groups of %d): %lld block(s) of %u threads, %d rows a block; %lld launch(es) of up "
             "to %d tokens",
             p.bits, p.group_size, (long long)((n + rows - 1) / rows), affine_threads(k), rows,
             (long long)((m + MV_MAX_TOKENS - 1) / MV_MAX_TOKENS), MV_MAX_TOKENS);
    return QN_OK;
}
