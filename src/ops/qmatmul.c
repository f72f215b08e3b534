/* The quantized matrix product family: y = x · Wᵀ for weights in any block
 * type or in MLX's affine format, dense or expert-routed, plain or with a
 * fused gate/up activation.
 *
 * Routing on the GPU: up to QN_MV_TOKENS tokens go to the matvec kernels
 * (matvec.cu, one launch: weight rows streamed through shared memory, x
 * quantized to int8, dp4a dots; the launch plan comes from qn_mv_plan in
 * matvec_args.cuh); more go to the tensor-core matmul (matmul.cu):
 * x converted once to the compute dtype (mm_x_prep), for the routed form
 * the (slot, token) pairs grouped by expert on the device (mm_route), then
 * one matmul launch. A device without the shared memory the matmul needs
 * runs the matvec once per QN_MV_TOKENS tokens instead. qn_qmatmul_plan
 * names the kernels a request runs (qn_qmatmul_mlx_plan for MLX weights,
 * whose matvec is matvec_affine.cu). On the CPU every request goes to the
 * threaded reference (src/cpu/qmatmul.c). */
#include "cpu/cpu_ops.h"
#include "cuda/kernels/affine.h"
#include "cuda/kernels/matmul_args.cuh"
#include "ops/ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
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

/* A plan parameter: its default, or the environment variable `name`
 * within [lo, hi], to time others (bench's qmatmul family). */
static long long mv_tunable(const char *name, long long def, long long lo, long long hi) {
    const char *env = getenv(name);
    long long v = env ? atoll(env) : 0;
    return v >= lo && v <= hi ? v : def;
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
    long long s = qn_mv_plan(a, (int)qk, bytes, N, pairs, dev->info.sm_count > 0 ? dev->info.sm_count : 1,
                             mv_tunable("QUANTA_MV_STAGE", QN_MV_STAGE, QN_MV_STAGE_MIN, 65536),
                             (int)mv_tunable("QUANTA_MV_UPL", QN_MV_UPL, 1, 64), sm, block, &gx);
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
                           uint64_t writes_lo, uint64_t writes_hi) {
    char fn[48], defines[32];
    snprintf(fn, sizeof fn, "matvec_%s%s", qn_dtype_name(t), m->nx > 1 ? "_tokens" : "");
    snprintf(defines, sizeof defines, "-DQN_BLOCK=%s", qn_dtype_name(t));
    m->early = !qn_cuda_pdl_overlaps(enc, m->w, m->w_end) && !(m->up && qn_cuda_pdl_overlaps(enc, m->up, m->up_end));
    void *args[] = {m};
    return qn_cuda_launch_pdl(enc, op + 3, "matvec.cu", defines, fn, grid, (qn_dim3){QN_MV_THREADS, 1, 1}, smem, args,
                              writes_lo, writes_hi);
}

/* A weight format as the GPU paths see it: a ggml block type, or MLX
 * affine (bits > 0; t is then QN_U32). */
typedef struct {
    qn_dtype t;
    int bits, group;
} wformat;

static wformat block_format(qn_dtype t) { return (wformat){t, 0, 0}; }
static wformat mlx_format(qn_mlx_quant p) { return (wformat){QN_U32, p.bits, p.group_size}; }

/* ---- the MLX affine matvec's launch shape (matvec_affine.cu) */

/* Threads a block: a thread takes a 32-weight unit of each row of a group
 * at a time; short rows get the fewest warps that cover them. */
static unsigned affine_threads(int64_t K) {
    int64_t units = K / 32;
    return units <= 32 ? 32 : units <= 64 ? 64 : units <= 96 ? 96 : 32 * QN_AFFINE_WARPS;
}

static int affine_rows_out(int bits, bool glu) { return glu ? QN_AFFINE_ROWS(bits) / 2 : QN_AFFINE_ROWS(bits); }

typedef struct {
    unsigned threads, smem, grid_x;
    int stages, groups; /* pipeline depth; row groups a block */
} affine_geom;

/* Pipeline stages as deep as leave room for two blocks a multiprocessor
 * (two to four), and a grid that is resident at once with equal work a
 * block: `pairs` (routed) share the GPU's blocks. */
static qn_status affine_geometry(const char *op, const qn_device *dev, int bits, bool glu, int64_t N, int64_t K,
                                 int64_t pairs, affine_geom *g) {
    const int64_t optin = qn_cuda_smem_optin(dev), sms = dev->info.sm_count > 0 ? dev->info.sm_count : 1;
    g->threads = affine_threads(K);
    g->stages = 4;
    while (g->stages > 2 && 2 * QN_AFFINE_SMEM(bits, (int64_t)g->threads, K, g->stages) > optin) g->stages--;
    const int64_t smem = QN_AFFINE_SMEM(bits, (int64_t)g->threads, K, g->stages);
    if (smem > optin)
        return qn_error(QN_ERR_UNSUPPORTED, "%s: rows of %lld weights need %lld bytes of shared memory, the GPU has %lld",
                        op, (long long)K, (long long)smem, (long long)optin);
    g->smem = (unsigned)smem;
    int64_t per_sm = (optin + 1024) / (smem + 1024), G = (N + affine_rows_out(bits, glu) - 1) / affine_rows_out(bits, glu);
    per_sm = per_sm < 1 ? 1 : per_sm > 3 ? 3 : per_sm; /* three blocks' registers fill a multiprocessor */
    int64_t blocks = sms * per_sm / pairs;
    blocks = blocks < 1 ? 1 : blocks > G ? G : blocks;
    g->groups = (int)((G + blocks - 1) / blocks);
    g->grid_x = (unsigned)((G + g->groups - 1) / g->groups);
    return QN_OK;
}

/* ---- the tensor-core path (matmul.cu) */

#define MM_MAX_EXPERTS 4096 /* mm_route keeps two ints an expert in shared memory */

/* Compute dtype: f16, but bf16 for weights whose values may exceed f16.
 * MLX weights are f16 (a dequantized weight is s * q + b of the model's
 * own small weights). */
static qn_dtype mm_dtype(wformat f) { return f.t == QN_F32 || f.t == QN_BF16 ? QN_BF16 : QN_F16; }

/* Dynamic shared memory of the kernel for weights of format f and tiles of
 * bm token rows (plain types are 8-element blocks to the kernel). */
static unsigned mm_smem(wformat f, int bm) {
    if (f.bits) return (unsigned)QN_MM_AFFINE_SMEM(f.bits, bm);
    int64_t e = qn_dtype_block_elems(f.t), qk = e == 1 ? 8 : e, bytes = qn_dtype_block_bytes(f.t) * (e == 1 ? 8 : 1);
    return (unsigned)QN_MM_SMEM(qk, bytes, bm);
}

static bool mm_fits(const qn_device *dev, wformat f, int bm) {
    return dev->backend == QN_BACKEND_CUDA && mm_smem(f, bm) <= (unsigned)qn_cuda_smem_optin(dev);
}

/* The kernel of format f for tiles of bm tokens: its name and defines. */
static void mm_kernel(wformat f, int bm, char *fn, size_t fn_len, char *defines, size_t def_len) {
    if (f.bits) {
        snprintf(fn, fn_len, "mm_affine_%d", bm);
        snprintf(defines, def_len, "-DQN_AFFINE_BITS=%d", f.bits);
    } else {
        snprintf(fn, fn_len, "mm_%s_%d", qn_dtype_name(f.t), bm);
        snprintf(defines, def_len, "-DQN_BLOCK=%s", qn_dtype_name(f.t));
    }
}

/* Token rows a tile: 128, unless tiles of 64 finish sooner. A tile of 64
 * costs about 0.55 of one of 128 (the weight dequantization is the same,
 * the mma half), and the grid runs in waves of one block a multiprocessor. */
static int mm_bm(const qn_device *dev, int64_t row_tiles, int64_t tokens) {
    int64_t sms = dev->info.sm_count > 0 ? dev->info.sm_count : 1;
    int64_t w128 = (row_tiles * ((tokens + 127) / 128) + sms - 1) / sms;
    int64_t w64 = (row_tiles * ((tokens + 63) / 64) + sms - 1) / sms;
    return 100 * w128 <= 55 * w64 ? 128 : 64;
}

static size_t round256(size_t n) { return (n + 255) / 256 * 256; }

/* x as the kernel reads it: rows of `slots` x `tokens` (slot stride
 * slot_nb, token stride tok_nb). In the compute dtype already, it is used
 * in place; else mm_x_prep converts it into scratch (rows, then their
 * multipliers). Fills a's x fields. */
static size_t mm_x_bytes(qn_dtype xt, qn_dtype dt, int64_t rows, int64_t K) {
    return xt == dt ? 0 : round256((size_t)(rows * K * 2)) + round256((size_t)rows * 4);
}

static qn_status mm_x(qn_encoder *enc, const qn_tensor *x, int64_t slots, long long slot_nb,
                      long long tok_nb, int64_t tokens, qn_dtype dt, uint64_t scratch, qn_mm_args *a) {
    long long K = x->ne[0], ne1 = slots;
    a->x = qn_tensor_addr(x);
    a->x_slot_nb = slot_nb;
    a->x_tok_nb = tok_nb;
    a->x_scale = 0;
    if (x->dtype == dt) return QN_OK;
    uint64_t out = scratch, scale = scratch + round256((size_t)(slots * tokens * K * 2)), xp = a->x;
    int xt = x->dtype, dti = dt;
    void *args[] = {&xp, &ne1, &slot_nb, &tok_nb, &K, &xt, &dti, &out, &scale};
    QN_TRY(qn_cuda_launch(enc, "mm_x_prep", "matmul.cu", "", "mm_x_prep", (qn_dim3){(unsigned)(slots * tokens), 1, 1},
                          (qn_dim3){256, 1, 1}, 0, args));
    a->x = out;
    a->x_scale = scale;
    a->x_slot_nb = 2 * K;
    a->x_tok_nb = 2 * K * slots;
    return QN_OK;
}

/* wa: the loader's weight record (qn_mm_gguf_w, qn_affine_w). */
static qn_status mm_launch(qn_encoder *enc, const char *op, wformat f, int bm, void *wa, qn_mm_args a,
                           int64_t row_tiles, int64_t token_tiles) {
    char fn[48], defines[32];
    mm_kernel(f, bm, fn, sizeof fn, defines, sizeof defines);
    void *args[] = {wa, &a};
    return qn_cuda_launch(enc, op, "matmul.cu", defines, fn, (qn_dim3){(unsigned)row_tiles, (unsigned)token_tiles, 1},
                          (qn_dim3){QN_MM_THREADS, 1, 1}, mm_smem(f, bm), args);
}

/* Weight rows a tile's outputs cover: 128, or 64 of gate and up each. */
static int64_t mm_row_tiles(int64_t N, bool glu) { return (N + (glu ? 63 : 127)) / (glu ? 64 : 128); }

static bool mm_dense_ok(const qn_device *dev, wformat f, int64_t N, int64_t M, bool glu) {
    return M > QN_MV_TOKENS && mm_fits(dev, f, mm_bm(dev, mm_row_tiles(N, glu), M)) && (M + 63) / 64 <= 65535;
}

/* Token rows a tile of the routed tensor-core path (64, or 128 where the
 * experts average 128 pairs), or 0 where the request takes the matvec. */
static int mm_routed_bm(const qn_device *dev, wformat f, int64_t E, int64_t top_k, int64_t M) {
    const int64_t P = top_k * M;
    const int bm = P >= 128 * E ? 128 : 64;
    bool ok = M > QN_MV_TOKENS && E <= MM_MAX_EXPERTS && P <= INT32_MAX && mm_fits(dev, f, bm) &&
              qn_mm_max_tiles(P, E, bm) <= 65535;
    return ok ? bm : 0;
}

static qn_status plan_shape(const char *op, qn_device *dev, int64_t n, int64_t k, int64_t m, char *out, size_t len) {
    if (!dev || !out || len == 0) return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: NULL argument", op);
    if (n < 1 || k < 1 || m < 1)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: shape n=%lld k=%lld m=%lld", op, (long long)n, (long long)k,
                        (long long)m);
    return QN_OK;
}

static qn_status plan_cpu(int64_t n, int64_t m, char *out, size_t len) {
    snprintf(out, len, "cpu: dequantize each row, dot with %lld token(s), %lld rows across threads", (long long)m,
             (long long)n);
    return QN_OK;
}

/* The tensor-core kernel's name, as the plans print it. */
static void mm_name(wformat f, int bm, char *out, size_t len) {
    char fn[48], defines[32];
    mm_kernel(f, bm, fn, sizeof fn, defines, sizeof defines);
    if (f.bits) snprintf(out, len, "%s (%d-bit, groups of %d)", fn, f.bits, f.group);
    else snprintf(out, len, "%s", fn);
}

/* The matvec of format f, as the plans print it. */
static void mv_name(wformat f, bool routed, char *out, size_t len) {
    if (f.bits) snprintf(out, len, "affine_matvec%s (%d-bit, groups of %d)", routed ? "_id" : "", f.bits, f.group);
    else snprintf(out, len, "matvec%s_%s", routed ? "_id" : "", qn_dtype_name(f.t));
}

/* The matvec's launch for n rows of k weights, nx tokens a launch (at most;
 * the plan may take fewer: *per_launch) over `pairs` (slot, token) pairs. */
static qn_status mv_shape(const qn_device *dev, wformat f, int64_t n, int64_t k, int nx, int64_t pairs,
                          int *per_launch, char *out, size_t len) {
    if (f.bits) {
        affine_geom g;
        QN_TRY(affine_geometry("plan", dev, f.bits, false, n, k, pairs, &g));
        snprintf(out, len, "%u x %lld block(s) of %u threads, %d row group(s) of %d rows a block, %d-stage cp.async pipeline",
                 g.grid_x, (long long)pairs, g.threads, g.groups, affine_rows_out(f.bits, false), g.stages);
        *per_launch = QN_MV_TOKENS;
        return QN_OK;
    }
    if (k % mv_block_elems(f.t) != 0)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "plan: k=%lld is not a multiple of %lld", (long long)k,
                        (long long)mv_block_elems(f.t));
    qn_mv_args a = {0};
    qn_dim3 grid;
    unsigned smem;
    QN_TRY(mv_plan(dev, "plan", f.t, k, n, qn_dtype_row_bytes(f.t, k), 0, nx, (int)pairs, &a, &grid, &smem));
    snprintf(out, len,
             "%u x %lld block(s) of %d warps, each warp streaming its rows through shared memory in stages of %d "
             "row(s) x %d blocks, %d lanes a row (%u bytes of shared memory)",
             grid.x, (long long)pairs, QN_MV_WARPS, a.rs, a.kc, a.team, smem);
    *per_launch = a.nx;
    return QN_OK;
}

static qn_status plan_dense(qn_device *dev, wformat f, int64_t n, int64_t k, int64_t m, char *out, size_t len) {
    if (dev->backend == QN_BACKEND_CPU) return plan_cpu(n, m, out, len);
    char name[96], shape[160];
    if (mm_dense_ok(dev, f, n, m, false)) {
        int bm = mm_bm(dev, mm_row_tiles(n, false), m);
        qn_dtype dt = mm_dtype(f);
        mm_name(f, bm, name, sizeof name);
        snprintf(out, len,
                 "%s: tensor cores (mma m16n8k16, %s operands, f32 sums), tiles of 128 rows x %d tokens, "
                 "grid %lld x %lld; x converted to %s first (mm_x_prep) unless it is %s",
                 name, qn_dtype_name(dt), bm, (long long)mm_row_tiles(n, false), (long long)((m + bm - 1) / bm),
                 qn_dtype_name(dt), qn_dtype_name(dt));
        return QN_OK;
    }
    mv_name(f, false, name, sizeof name);
    int per_launch;
    QN_TRY(mv_shape(dev, f, n, k, (int)(m < QN_MV_TOKENS ? m : QN_MV_TOKENS), 1, &per_launch, shape, sizeof shape));
    snprintf(out, len, "%s: %s; %lld launch(es) of up to %d tokens", name, shape,
             (long long)((m + per_launch - 1) / per_launch), per_launch);
    return QN_OK;
}

static qn_status plan_routed(const char *op, qn_device *dev, wformat f, int64_t n, int64_t k, int64_t m,
                             int64_t n_experts, int64_t top_k, char *out, size_t len) {
    if (n_experts < 1 || top_k < 1)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: n_experts=%lld top_k=%lld", op, (long long)n_experts,
                        (long long)top_k);
    if (dev->backend == QN_BACKEND_CPU) {
        snprintf(out, len, "cpu: for each (slot, token) pair, the expert's rows dequantized and dotted, rows across "
                           "threads");
        return QN_OK;
    }
    char name[96], shape[160];
    const int bm = mm_routed_bm(dev, f, n_experts, top_k, m);
    if (bm) {
        qn_dtype dt = mm_dtype(f);
        mm_name(f, bm, name, sizeof name);
        snprintf(out, len,
                 "mm_route (pairs grouped by expert on the device) then %s: tensor cores (%s operands, f32 "
                 "sums), tiles of 128 rows x up to %d pairs of one expert, grid %lld x %lld (tiles past the list "
                 "return); x converted to %s first (mm_x_prep) unless it is %s",
                 name, qn_dtype_name(dt), bm, (long long)mm_row_tiles(n, false),
                 (long long)qn_mm_max_tiles(top_k * m, n_experts, bm), qn_dtype_name(dt), qn_dtype_name(dt));
        return QN_OK;
    }
    mv_name(f, true, name, sizeof name);
    int per_launch;
    QN_TRY(mv_shape(dev, f, n, k, 1, top_k * m, &per_launch, shape, sizeof shape));
    snprintf(out, len, "%s: %s, one launch", name, shape);
    return QN_OK;
}

static qn_status plan_check(const char *op, qn_device *dev, qn_dtype wtype, int64_t n, int64_t k, int64_t m,
                            char *out, size_t len) {
    QN_TRY(plan_shape(op, dev, n, k, m, out, len));
    if (!weight_type_ok(wtype))
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: weights of dtype %s are not supported", op,
                        qn_dtype_name(wtype) ? qn_dtype_name(wtype) : "(invalid)");
    return QN_OK;
}

qn_status qn_qmatmul_plan(qn_device *dev, qn_dtype wtype, int64_t n, int64_t k, int64_t m, char *out, size_t len) {
    QN_TRY(plan_check("qn_qmatmul_plan", dev, wtype, n, k, m, out, len));
    return plan_dense(dev, block_format(wtype), n, k, m, out, len);
}

qn_status qn_qmatmul_id_plan(qn_device *dev, qn_dtype wtype, int64_t n, int64_t k, int64_t m, int64_t n_experts,
                             int64_t top_k, char *out, size_t len) {
    QN_TRY(plan_check("qn_qmatmul_id_plan", dev, wtype, n, k, m, out, len));
    return plan_routed("qn_qmatmul_id_plan", dev, block_format(wtype), n, k, m, n_experts, top_k, out, len);
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

static wformat operand_format(const operand *o) {
    return o->mlx ? mlx_format((qn_mlx_quant){o->mlx->bits, o->mlx->group_size}) : block_format(o->w.dtype);
}

static qn_affine_w affine_w(const operand *g, const operand *u);
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

/* ---- the norm in front (qn_qmatmul_normed) */

/* a, b or sum of a qn_norm_in: f32 [K, M], rows contiguous (on the GPU
 * 16-byte aligned, as the matvec reads them in float4s). */
static qn_status check_norm_rows(const char *op, qn_encoder *enc, const char *name, const qn_tensor *t, int64_t K,
                                 int64_t M) {
    QN_TRY(qn_op_check(op, enc, name, t));
    if (t->dtype != QN_F32 || t->nb[0] != 4)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %s must be f32 with contiguous rows (is %s)", op, name,
                        qn_dtype_name(t->dtype));
    if (t->ne[0] != K || t->ne[1] != M || t->ne[2] != 1 || t->ne[3] != 1)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %s is [%lld,%lld,%lld,%lld], expected [%lld,%lld]", op, name,
                        (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3],
                        (long long)K, (long long)M);
    if (enc->dev->backend == QN_BACKEND_CUDA && (qn_tensor_addr(t) % 16 || t->nb[1] % 16))
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %s rows must start at 16-byte aligned addresses on the GPU", op,
                        name);
    return QN_OK;
}

static qn_status check_norm_vector(const char *op, qn_encoder *enc, const char *name, const qn_tensor *t, int64_t K) {
    if (!t->buf) return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: the norm weight %s is missing", op, name);
    QN_TRY(qn_op_check(op, enc, name, t));
    if (t->dtype != QN_F32 || t->ne[0] != K || t->ne[1] != 1 || t->ne[2] != 1 || t->ne[3] != 1 || t->nb[0] != 4 ||
        (enc->dev->backend == QN_BACKEND_CUDA && qn_tensor_addr(t) % 16))
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %s must be a contiguous f32 [%lld] vector (16-byte aligned on the GPU)",
                        op, name, (long long)K);
    return QN_OK;
}

/* The norm's operands, after x and y are checked (x's shape is a's). */
static qn_status check_norm_in(const char *op, qn_encoder *enc, const qn_norm_in *in, const qn_tensor *y) {
    const int64_t K = in->x.ne[0], M = in->x.ne[1];
    const bool has_b = in->b.buf != NULL;
    if (has_b != (in->sum.buf != NULL))
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: sum is given without b, or b without sum (both or neither)", op);
    if (in->x.dtype != QN_F32) return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: x must be f32 (is %s)", op, qn_dtype_name(in->x.dtype));
    QN_TRY(check_norm_rows(op, enc, "a", &in->a, K, M));
    QN_TRY(check_norm_vector(op, enc, "w", &in->w, K));
    if (has_b) {
        QN_TRY(check_norm_rows(op, enc, "b", &in->b, K, M));
        QN_TRY(check_norm_rows(op, enc, "sum", &in->sum, K, M));
        QN_TRY(check_norm_vector(op, enc, "b_w", &in->b_w, K));
    }
    /* x and sum are written while other blocks still read a and b */
    const qn_tensor *outs[] = {&in->x, &in->sum}, *ins[] = {&in->a, &in->b, y, &in->x};
    static const char *const out_names[] = {"x", "sum"}, *const in_names[] = {"a", "b", "y", "x"};
    for (int o = 0; o < 2; o++)
        for (int i = 0; i < 4; i++)
            if (outs[o]->buf && ins[i]->buf && ins[i] != outs[o] && qn_op_overlap(outs[o], ins[i]))
                return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %s overlaps %s (the norm's outputs need memory of their own)",
                                op, out_names[o], in_names[i]);
    if (!(in->eps >= 0.0f) || isinf(in->eps) || !isfinite(in->weight_offset))
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: eps %g and weight_offset %g must be finite (eps >= 0)", op,
                        (double)in->eps, (double)in->weight_offset);
    return QN_OK;
}

/* The norm as its own op, for the paths that do not fuse it. */
static qn_status norm_op(qn_encoder *enc, const qn_norm_in *in) {
    if (!in->b.buf) return qn_rms_norm(enc, in->x, in->a, in->w, in->eps, in->weight_offset);
    return qn_norm_add_rms_norm(enc, in->x, in->sum, in->a, in->b, in->b_w, in->w, in->eps, in->weight_offset);
}

/* The matvec's norm fields for tokens t0 ... of the request. */
static void mv_norm(qn_mv_args *m, const qn_norm_in *in, int64_t t0) {
    m->norm = 1;
    m->pa = qn_tensor_addr(&in->a) + (uint64_t)(t0 * in->a.nb[1]);
    m->pa_nb1 = in->a.nb[1];
    m->pw = qn_tensor_addr(&in->w);
    m->eps = in->eps;
    m->w_off = in->weight_offset;
    if (in->b.buf) {
        m->pb = qn_tensor_addr(&in->b) + (uint64_t)(t0 * in->b.nb[1]);
        m->pb_nb1 = in->b.nb[1];
        m->pbw = qn_tensor_addr(&in->b_w);
        m->ps = qn_tensor_addr(&in->sum) + (uint64_t)(t0 * in->sum.nb[1]);
        m->ps_nb1 = in->sum.nb[1];
    }
}

/* Widens [lo, hi) (empty: UINT64_MAX, 0) to cover n rows of row_bytes,
 * nb1 bytes apart, from p. */
static void widen(uint64_t *lo, uint64_t *hi, uint64_t p, int64_t nb1, int64_t n, int64_t row_bytes) {
    const uint64_t end = p + (uint64_t)((n - 1) * nb1 + row_bytes);
    *lo = p < *lo ? p : *lo;
    *hi = end > *hi ? end : *hi;
}

/* pre: the norm that makes x (then x is pre->x), or NULL. */
static qn_status dense(const char *op, qn_encoder *enc, qn_tensor y, operand *g, operand *u, qn_tensor x,
                       const qn_norm_in *pre, int act) {
    QN_TRY(check_operand(op, enc, "w", g));
    if (u) QN_TRY(check_up(op, enc, g, u));
    const qn_tensor w = g->w, *up = u ? &u->w : NULL;
    if (w.ne[2] != 1 || w.ne[3] != 1 || x.ne[2] != 1 || x.ne[3] != 1 || y.ne[2] != 1 || y.ne[3] != 1)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: W, x and y must be 2-D (use the _id form for experts)", op);
    QN_TRY(check_x(op, enc, &x, g->K));
    QN_TRY(check_y(op, enc, &y, w.ne[1]));
    if (y.ne[1] != x.ne[1])
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: y has %lld tokens, x %lld", op, (long long)y.ne[1],
                        (long long)x.ne[1]);
    if (pre) QN_TRY(check_norm_in(op, enc, pre, &y));
    /* The matvec of block-quantized weights makes x itself; every other
     * path runs the norm first. */
    const wformat f = operand_format(g);
    const bool gpu = enc->dev->backend == QN_BACKEND_CUDA;
    const bool mm = gpu && mm_dense_ok(enc->dev, f, w.ne[1], x.ne[1], up != NULL);
    const bool fuse = pre && gpu && !mm && !g->mlx && mv_block_elems(w.dtype) >= 32;
    if (pre && !fuse) QN_TRY(norm_op(enc, pre));
    qn_qmatmul_args a = make_args(enc, &y, g, u, &x, NULL, act); /* flags: for a failed CPU scratch allocation */
    if (!gpu) return qn_cpu_enqueue(enc, op + 3, qn_cpu_qmatmul, &a, sizeof a);

    if (mm) {
        int64_t M = x.ne[1], row_tiles = mm_row_tiles(w.ne[1], up != NULL);
        int bm = mm_bm(enc->dev, row_tiles, M);
        qn_dtype dt = mm_dtype(f);
        uint64_t scratch = 0;
        size_t need = mm_x_bytes(x.dtype, dt, M, g->K);
        if (need) QN_TRY(qn_cuda_encoder_scratch(enc, need, &scratch));
        qn_mm_args ma = {0};
        QN_TRY(mm_x(enc, &x, 1, 0, x.nb[1], M, dt, scratch, &ma));
        ma.y = qn_tensor_addr(&y);
        ma.y_nb1 = y.nb[1] / 4;
        ma.N = w.ne[1];
        ma.K = g->K;
        ma.M = M;
        ma.top_k = 1;
        ma.glu = up != NULL;
        ma.act = act;
        qn_mm_gguf_w gw = {qn_tensor_addr(&w), up ? qn_tensor_addr(up) : 0, w.nb[1], 0};
        qn_affine_w aw = g->mlx ? affine_w(g, u) : (qn_affine_w){.group_shift = 0};
        return mm_launch(enc, op + 3, f, bm, g->mlx ? (void *)&aw : (void *)&gw, ma, row_tiles, (M + bm - 1) / bm);
    }
    if (g->mlx) return affine_dense(op, enc, &a, g, u);

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
        /* the writes' hull: y, and the norm's x and sum */
        uint64_t lo = UINT64_MAX, hi = 0;
        widen(&lo, &hi, m.y, y.nb[1], m.nx, m.N * 4);
        if (fuse) {
            mv_norm(&m, pre, t0);
            widen(&lo, &hi, m.x, m.x_nb1, m.nx, g->K * 4);
            if (m.ps) widen(&lo, &hi, m.ps, m.ps_nb1, m.nx, g->K * 4);
        }
        QN_TRY(mv_launch(enc, op, w.dtype, &m, grid, smem, lo, hi));
    }
    return QN_OK;
}

qn_status qn_qmatmul(qn_encoder *enc, qn_tensor y, qn_tensor w, qn_tensor x) {
    operand g = block_operand(w);
    return dense("qn_qmatmul", enc, y, &g, NULL, x, NULL, 0);
}

static qn_status check_in(const char *op, const qn_norm_in *in) {
    if (!in) return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: the norm (in) is NULL", op);
    return QN_OK;
}

qn_status qn_qmatmul_normed(qn_encoder *enc, qn_tensor y, qn_tensor w, const qn_norm_in *in) {
    QN_TRY(check_in("qn_qmatmul_normed", in));
    operand g = block_operand(w);
    return dense("qn_qmatmul_normed", enc, y, &g, NULL, in->x, in, 0);
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
    return dense("qn_qmatmul_glu", enc, y, &g, &u, x, NULL, (int)act);
}

qn_status qn_qmatmul_glu_normed(qn_encoder *enc, qn_tensor y, qn_tensor gate, qn_tensor up, const qn_norm_in *in,
                                qn_act act) {
    QN_TRY(check_act("qn_qmatmul_glu_normed", act));
    QN_TRY(check_in("qn_qmatmul_glu_normed", in));
    operand g = block_operand(gate), u = block_operand(up);
    return dense("qn_qmatmul_glu_normed", enc, y, &g, &u, in->x, in, (int)act);
}

/* Expert-routed: W [K, N, E], ids i32 [top_k, M], x [K, 1 or top_k, M],
 * y f32 [N, top_k, M] contiguous. */
static qn_status routed(const char *op, qn_encoder *enc, qn_tensor y, operand *g, operand *u, qn_tensor x,
                        qn_tensor ids, int act) {
    QN_TRY(check_operand(op, enc, "w", g));
    if (u) QN_TRY(check_up(op, enc, g, u));
    const qn_tensor w = g->w, *up = u ? &u->w : NULL;
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
    const int64_t P = top_k * M;
    const wformat f = operand_format(g);
    const int bm = mm_routed_bm(enc->dev, f, E, top_k, M);
    const int64_t max_tiles = bm ? qn_mm_max_tiles(P, E, bm) : 0;
    const bool mm = bm > 0;
    if (!mm && P > 65535)
        return qn_error(QN_ERR_UNSUPPORTED, "%s: %lld (expert, token) pairs exceed one launch's 65535", op,
                        (long long)P);
    qn_qmatmul_args a = make_args(enc, &y, g, u, &x, &ids, act);
    if (enc->dev->backend == QN_BACKEND_CPU) return qn_cpu_enqueue(enc, op + 3, qn_cpu_qmatmul_id, &a, sizeof a);

    if (mm) {
        /* scratch: x rows (when converted), then the tile list and pair lists */
        const qn_dtype dt = mm_dtype(f);
        const int64_t slots = x.ne[1];
        const size_t xbytes = mm_x_bytes(x.dtype, dt, slots * M, g->K);
        const size_t tbytes = round256((size_t)(4 + 4 * max_tiles) * 4);
        uint64_t scratch;
        QN_TRY(qn_cuda_encoder_scratch(enc, xbytes + tbytes + (size_t)P * 4, &scratch));
        uint64_t tiles = scratch + xbytes, pairs = tiles + tbytes, idp = qn_tensor_addr(&ids), flags = a.flags;
        long long ids_nb1 = ids.nb[1] / 4, Ml = M;
        int tk = (int)top_k, n_experts = (int)E, bmi = bm;
        void *rargs[] = {&idp, &ids_nb1, &tk, &Ml, &n_experts, &bmi, &tiles, &pairs, &flags};
        QN_TRY(qn_cuda_launch(enc, "mm_route", "matmul.cu", "", "mm_route", (qn_dim3){1, 1, 1}, (qn_dim3){1024, 1, 1},
                              (unsigned)(8 * E), rargs));
        qn_mm_args ma = {0};
        QN_TRY(mm_x(enc, &x, slots, x.nb[1], x.nb[2], M, dt, scratch, &ma));
        ma.y = qn_tensor_addr(&y);
        ma.y_nb1 = w.ne[1];
        ma.N = w.ne[1];
        ma.K = g->K;
        ma.M = M;
        ma.tiles = tiles;
        ma.pairs = pairs;
        ma.top_k = (int)top_k;
        ma.x_per_slot = slots > 1;
        ma.glu = up != NULL;
        ma.act = act;
        qn_mm_gguf_w gw = {qn_tensor_addr(&w), up ? qn_tensor_addr(up) : 0, w.nb[1], w.nb[2]};
        qn_affine_w aw = g->mlx ? affine_w(g, u) : (qn_affine_w){.group_shift = 0};
        return mm_launch(enc, op + 3, f, bm, g->mlx ? (void *)&aw : (void *)&gw, ma, mm_row_tiles(w.ne[1], up != NULL),
                         max_tiles);
    }
    if (g->mlx) return affine_routed(op, enc, &a, g, u);

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
    return mv_launch(enc, op, w.dtype, &m, grid, smem, m.y, m.y + (uint64_t)(top_k * M * m.N * 4));
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

/* The weights' record (gate and up, or the one weight twice). */
static qn_affine_w affine_w(const operand *g, const operand *u) {
    const qn_mlx_weight *gw = g->mlx, *uw = u ? u->mlx : g->mlx;
    qn_affine_w w = {{qn_tensor_addr(&gw->q), qn_tensor_addr(&uw->q)},
                     {qn_tensor_addr(&gw->scales), qn_tensor_addr(&uw->scales)},
                     {qn_tensor_addr(&gw->biases), qn_tensor_addr(&uw->biases)},
                     gw->q.nb[1], gw->scales.nb[1], gw->biases.nb[1],
                     gw->q.nb[2], gw->scales.nb[2], gw->biases.nb[2],
                     0, gw->scales.dtype};
    while ((1 << w.group_shift) < gw->group_size) w.group_shift++;
    return w;
}

/* The matvec's arguments but for x, y and the tokens, and its launch. */
static qn_affine_args affine_args(const qn_qmatmul_args *a, const operand *g, const operand *u) {
    qn_affine_args k = {.w = affine_w(g, u), .N = g->w.ne[1], .K = g->K, .xt = a->x.dtype, .act = a->act};
    return k;
}

static qn_status affine_launch(qn_encoder *enc, const char *op, qn_affine_args *k, const operand *g, bool glu,
                               bool routed, unsigned pairs) {
    affine_geom geo;
    QN_TRY(affine_geometry(op, enc->dev, g->mlx->bits, glu, k->N, k->K, pairs, &geo));
    k->stages = geo.stages, k->groups = geo.groups;
    char fn[32], defines[32];
    snprintf(fn, sizeof fn, "affine_matvec%s%s", glu ? "_glu" : "", routed ? "_id" : "");
    snprintf(defines, sizeof defines, "-DQN_AFFINE_BITS=%d", g->mlx->bits);
    void *args[] = {(void *)k};
    return qn_cuda_launch(enc, op + 3, "matvec_affine.cu", defines, fn, (qn_dim3){geo.grid_x, pairs, 1},
                          (qn_dim3){geo.threads, 1, 1}, geo.smem, args);
}

static qn_status affine_dense(const char *op, qn_encoder *enc, const qn_qmatmul_args *a, const operand *g,
                              const operand *u) {
    qn_affine_args k = affine_args(a, g, u);
    k.x_tok = a->x.nb[1], k.y_tok = a->y.nb[1] / 4;
    for (int64_t t0 = 0; t0 < a->x.ne[1]; t0 += QN_MV_TOKENS) {
        k.x = a->x.addr + (uint64_t)(t0 * a->x.nb[1]), k.y = a->y.addr + (uint64_t)(t0 * a->y.nb[1]);
        k.nx = (int)(a->x.ne[1] - t0 < QN_MV_TOKENS ? a->x.ne[1] - t0 : QN_MV_TOKENS);
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
    return dense("qn_qmatmul_mlx", enc, y, &g, NULL, x, NULL, 0);
}

qn_status qn_qmatmul_mlx_glu(qn_encoder *enc, qn_tensor y, const qn_mlx_weight *gate, const qn_mlx_weight *up,
                             qn_tensor x, qn_act act) {
    QN_TRY(check_act("qn_qmatmul_mlx_glu", act));
    operand g = mlx_operand(gate), u = mlx_operand(up);
    return dense("qn_qmatmul_mlx_glu", enc, y, &g, &u, x, NULL, (int)act);
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

static qn_status mlx_plan_check(const char *who, qn_device *dev, qn_mlx_quant p, int64_t n, int64_t k, int64_t m,
                                char *out, size_t len) {
    QN_TRY(plan_shape(who, dev, n, k, m, out, len));
    if (p.bits != 2 && p.bits != 3 && p.bits != 4 && p.bits != 6 && p.bits != 8)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: bits %d is not 2, 3, 4, 6 or 8", who, p.bits);
    if (p.group_size != 32 && p.group_size != 64 && p.group_size != 128)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: group size %d is not 32, 64 or 128", who, p.group_size);
    if (k % p.group_size != 0)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: k = %lld is not a multiple of the group size %d", who,
                        (long long)k, p.group_size);
    return QN_OK;
}

qn_status qn_qmatmul_mlx_plan(qn_device *dev, qn_mlx_quant p, int64_t n, int64_t k, int64_t m, char *out, size_t len) {
    QN_TRY(mlx_plan_check("qn_qmatmul_mlx_plan", dev, p, n, k, m, out, len));
    return plan_dense(dev, mlx_format(p), n, k, m, out, len);
}

qn_status qn_qmatmul_mlx_id_plan(qn_device *dev, qn_mlx_quant p, int64_t n, int64_t k, int64_t m, int64_t n_experts,
                                 int64_t top_k, char *out, size_t len) {
    QN_TRY(mlx_plan_check("qn_qmatmul_mlx_id_plan", dev, p, n, k, m, out, len));
    return plan_routed("qn_qmatmul_mlx_id_plan", dev, mlx_format(p), n, k, m, n_experts, top_k, out, len);
}
