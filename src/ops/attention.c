/* Flash attention over the KV cache: qn_flash_attn_decode,
 * qn_flash_attn_prefill and the scratch they need (qn_flash_attn_scratch). */
#include "cpu/attention.h"
#include "ops/ops.h"

#include <math.h>
#include <stdio.h>

static const char *const SRC = "attention.cu";

static bool head_dim_ok(int64_t d) { return d == 64 || d == 80 || d == 96 || d == 128 || d == 256 || d == 512; }

/* How the GPU covers an op: `rows` query rows a block (decode 8, prefill
 * 64), `tiles` blocks of rows per kv head, and the visible keys cut into
 * `splits` slices. The grid is sized from what the host knows (shapes,
 * capacity, multiprocessors), never from the position, so a graph replays
 * it at every step: enough blocks to fill the GPU once (blocks resident
 * per multiprocessor x multiprocessors), no more. Decode's splits come in
 * clusters of `cluster` blocks (a whole number of them); it also picks its
 * shared-memory buffers (`stages`, `smem` bytes); stages 0: the device's
 * shared memory is too small. */
typedef struct {
    int rows, tiles, splits, cluster, stages;
    unsigned smem;
} attn_plan;

/* Decode blocks a cluster: the kernel is compiled with clusters from sm_90 on. */
static int dec_cluster(const qn_device *dev) {
    return dev->backend == QN_BACKEND_CUDA && dev->info.cc_major >= 9 ? QN_ATTN_DEC_CL : 1;
}

static attn_plan plan(qn_device *dev, bool prefill, int64_t d, int64_t hq, int64_t n, int64_t hkv, int64_t cap,
                      bool q8) {
    attn_plan pl = {0};
    const int64_t rows = hq / hkv * n;
    int64_t resident, blocks, max_splits, limit;
    if (prefill) {
        pl.rows = QN_ATTN_PF_ROWS;
        pl.tiles = (int)((rows + pl.rows - 1) / pl.rows);
        pl.smem = QN_ATTN_PF_SMEM(d);
        blocks = (int64_t)pl.tiles * (d / QN_ATTN_PF_DV(d)) * hkv;
        resident = (int64_t)QN_ATTN_PF_MINB(d) * dev->info.sm_count;
        max_splits = cap / (2 * QN_ATTN_PF_KEYS(d)); /* two key tiles a slice at least */
        if (n > 65535) max_splits = 1;               /* the merge's grid has a row of blocks per token */
        limit = QN_ATTN_MAX_SPLITS;
    } else {
        int smem_block = 0, smem_sm = 0;
        if (dev->backend == QN_BACKEND_CUDA) qn_cuda_smem_limits(dev, &smem_block, &smem_sm);
        for (int st = QN_ATTN_DEC_MAX_STAGES; st >= 1 && !pl.stages; st--)
            if (qn_attn_dec_smem((int)d, q8, st) <= smem_block) pl.stages = st;
        pl.smem = pl.stages ? (unsigned)qn_attn_dec_smem((int)d, q8, pl.stages) : 0;
        pl.rows = QN_ATTN_DEC_ROWS;
        pl.tiles = (int)((rows + pl.rows - 1) / pl.rows);
        blocks = (int64_t)pl.tiles * hkv;
        int64_t per_sm = pl.smem ? smem_sm / ((int64_t)pl.smem + 1024) : 1; /* the driver keeps 1 KiB a block */
        if (per_sm > QN_ATTN_DEC_MINB(d)) per_sm = QN_ATTN_DEC_MINB(d);
        if (per_sm < 1) per_sm = 1;
        resident = per_sm * dev->info.sm_count;
        /* A cluster's blocks run together on the multiprocessors of one
         * GPC, and not all of them can take part: on an H100 SXM (132
         * multiprocessors, one block each) 15 clusters of 8 fit, not 16. A
         * grid of more clusters than fit runs a second wave, which costs
         * more than the multiprocessors left idle, so count on 7/8 of them. */
        pl.cluster = dec_cluster(dev);
        if (pl.cluster > 1) resident = resident * 7 / 8;
        resident /= pl.cluster;
        /* a cluster takes up to QN_ATTN_DEC_TPW 16-key tiles a warp before
         * another joins (the kernel's rule) */
        const int64_t per_clu = (int64_t)QN_ATTN_DEC_KEYS * QN_ATTN_DEC_WARPS(d) * QN_ATTN_DEC_TPW * pl.cluster;
        max_splits = (cap + per_clu - 1) / per_clu;
        limit = QN_ATTN_DEC_MAX_SPLITS;
    }
    int64_t s = resident / blocks;
    if (s > max_splits) s = max_splits;
    if (s > limit) s = limit;
    pl.splits = s < 1 ? 1 : (int)s;
    if (!prefill) pl.splits *= pl.cluster;
    return pl;
}

/* Scratch elements when the op splits: decode's partials (acc, m, l) per
 * cluster and row of a row tile when it takes several clusters (a column
 * slice per block of a cluster), and a flag word per cluster and slice;
 * prefill's partials per split and query row. */
static int64_t scratch_elems(const qn_device *dev, const attn_plan *pl, bool prefill, int64_t d, int64_t hq,
                             int64_t n, int64_t hkv) {
    if (dev->backend != QN_BACKEND_CUDA) return 0;
    if (!prefill) {
        const int64_t clusters = pl->splits / pl->cluster, slices = (int64_t)pl->tiles * hkv * pl->cluster;
        return clusters == 1 ? 0 : clusters * slices * (QN_ATTN_DEC_ROWS * (d / pl->cluster + 2) + 1);
    }
    return pl->splits == 1 ? 0 : (int64_t)pl->splits * n * hq * (d + 2);
}

qn_status qn_flash_attn_scratch(qn_device *dev, bool prefill, qn_tensor q, qn_tensor k, int64_t *elems) {
    if (!dev || !elems) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_flash_attn_scratch: device or elems is NULL");
    for (int i = 0; i < 3; i++)
        if (q.ne[i] < 1 || k.ne[i] < 1 || q.ne[i] > INT32_MAX || k.ne[i] > INT32_MAX)
            return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_flash_attn_scratch: q or k ne[%d] out of range", i);
    if (q.ne[1] % k.ne[2] != 0)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_flash_attn_scratch: n_q_heads %lld is not a multiple of n_kv_heads %lld",
                        (long long)q.ne[1], (long long)k.ne[2]);
    attn_plan pl = plan(dev, prefill, q.ne[0], q.ne[1], q.ne[2], k.ne[2], k.ne[1], k.dtype == QN_Q8_0);
    *elems = scratch_elems(dev, &pl, prefill, q.ne[0], q.ne[1], q.ne[2], k.ne[2]);
    return QN_OK;
}

/* q or out: [head_dim, n_q_heads, n_tokens] f32 with contiguous rows. */
static qn_status check_rows(const char *op, qn_encoder *enc, const char *name, const qn_tensor *t) {
    QN_TRY(qn_op_check(op, enc, name, t));
    if (t->dtype != QN_F32)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %s is %s (expected f32)", op, name, qn_dtype_name(t->dtype));
    if (t->nb[0] != 4 || t->ne[3] != 1)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %s must be [head_dim, n_q_heads, n_tokens] with contiguous rows",
                        op, name);
    return QN_OK;
}

static qn_status flash_attn(const char *op, bool prefill, qn_encoder *enc, qn_tensor out, qn_tensor q, qn_tensor k,
                            qn_tensor v, qn_tensor pos, const qn_tensor *sinks, const qn_tensor *scratch,
                            qn_attn_opts o) {
    QN_TRY(check_rows(op, enc, "q", &q));
    QN_TRY(check_rows(op, enc, "out", &out));
    QN_TRY(qn_op_same_shape(op, "out", &out, "q", &q));
    QN_TRY(qn_kv_cache_check(op, enc, "k", &k));
    QN_TRY(qn_kv_cache_check(op, enc, "v", &v));
    QN_TRY(qn_op_same_shape(op, "k", &k, "v", &v));
    QN_TRY(qn_kv_pos_check(op, enc, &pos));
    const int64_t d = q.ne[0], hq = q.ne[1], n = q.ne[2], cap = k.ne[1], hkv = k.ne[2];
    if (k.dtype != v.dtype)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: k is %s but v is %s", op, qn_dtype_name(k.dtype),
                        qn_dtype_name(v.dtype));
    if (!head_dim_ok(d))
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: head_dim %lld (expected 64, 80, 96, 128, 256 or 512)", op,
                        (long long)d);
    if (k.ne[0] != d)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: k head_dim %lld differs from q's %lld", op, (long long)k.ne[0],
                        (long long)d);
    if (hq % hkv != 0 || hkv > 65535)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: n_q_heads %lld is not a multiple of n_kv_heads %lld", op,
                        (long long)hq, (long long)hkv);
    if (!prefill && n > 8)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %lld query tokens (decode takes 1 to 8; use prefill)", op,
                        (long long)n);
    if (prefill && k.dtype == QN_Q8_0)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: k and v are q8_0 (prefill takes f16 or bf16)", op);
    if (n > cap)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %lld query tokens do not fit a cache of capacity %lld", op,
                        (long long)n, (long long)cap);
    if (hq * n > INT32_MAX / 8)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %lld heads x %lld tokens is too many", op, (long long)hq,
                        (long long)n);
    /* the GPU reads f16/bf16 rows 16 bytes at a time */
    if (k.dtype != QN_Q8_0)
        for (int i = 0; i < 2; i++) {
            const qn_tensor *t = i ? &v : &k;
            if (qn_tensor_addr(t) % 16 || t->nb[1] % 16 || t->nb[2] % 16)
                return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %s offset or strides are not multiples of 16 bytes", op,
                                i ? "v" : "k");
        }
    if (sinks) {
        QN_TRY(qn_op_check(op, enc, "sinks", sinks));
        if (sinks->dtype != QN_F32 || sinks->ne[0] != hq || sinks->ne[1] * sinks->ne[2] * sinks->ne[3] != 1)
            return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: sinks must be f32 [%lld] (one per query head)", op,
                            (long long)hq);
    }
    if (!isfinite(o.scale) || !isfinite(o.softcap) || o.softcap < 0.0f)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: scale %g or softcap %g is not a finite number (softcap >= 0)",
                        op, (double)o.scale, (double)o.softcap);
    if (o.mask != QN_ATTN_MASK_NONE && o.mask != QN_ATTN_MASK_CAUSAL && o.mask != QN_ATTN_MASK_WINDOW)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: mask %d is not a qn_attn_mask", op, (int)o.mask);
    if (o.mask == QN_ATTN_MASK_WINDOW && o.window < 1)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: window %d (expected >= 1)", op, (int)o.window);

    const attn_plan pl = plan(enc->dev, prefill, d, hq, n, hkv, cap, k.dtype == QN_Q8_0);
    if (enc->dev->backend == QN_BACKEND_CUDA && !prefill && !pl.stages)
        return qn_error(QN_ERR_UNSUPPORTED, "%s: head_dim %lld needs %d bytes of shared memory a block (more than this GPU has)",
                        op, (long long)d, qn_attn_dec_smem((int)d, k.dtype == QN_Q8_0, 1));
    if (pl.tiles > 65535)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %lld query heads a kv head x %lld tokens is too many", op,
                        (long long)(hq / hkv), (long long)n);
    const int64_t need = scratch_elems(enc->dev, &pl, prefill, d, hq, n, hkv);
    qn_kt sk = {0};
    if (need > 0) {
        if (!scratch)
            return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: scratch is NULL (needs %lld f32 elements)", op,
                            (long long)need);
        QN_TRY(qn_op_check(op, enc, "scratch", scratch));
        const int64_t have = qn_tensor_nelements(scratch);
        if (scratch->dtype != QN_F32 || scratch->nb[0] != 4 || scratch->nb[1] != 4 * scratch->ne[0] ||
            scratch->nb[2] != scratch->nb[1] * scratch->ne[1] || scratch->nb[3] != scratch->nb[2] * scratch->ne[2] ||
            have < need)
            return qn_error(QN_ERR_INVALID_ARGUMENT,
                            "%s: scratch must be contiguous f32 of at least %lld elements (has %lld %s)", op,
                            (long long)need, (long long)have, qn_dtype_name(scratch->dtype));
        sk = qn_op_kt(scratch);
    }

    qn_flash_attn_args a = {qn_op_kt(&out), qn_op_kt(&q), qn_op_kt(&k), qn_op_kt(&v), qn_op_kt(&pos),
                            sinks ? qn_op_kt(sinks) : (qn_kt){0},
                            {o.scale, o.softcap, (int)o.mask, o.mask == QN_ATTN_MASK_WINDOW ? o.window : 0, (int)d,
                             (int)n, (int)hq, (int)hkv, (int)(hq / hkv), (int)cap, pl.splits, pl.stages}};
    const char *name = prefill ? "flash_attn_prefill" : "flash_attn_decode";
    if (enc->dev->backend == QN_BACKEND_CPU) return qn_cpu_enqueue(enc, name, qn_cpu_flash_attn, &a, sizeof a);

    char defines[32], fn[48];
    snprintf(defines, sizeof defines, "-DQN_ATTN_D=%d", (int)d);
    unsigned long long saddr = sk.addr;
    const char *dt = qn_dtype_name(k.dtype);
    if (!prefill) {
        snprintf(fn, sizeof fn, "attn_decode_%s", dt);
        qn_dim3 grid = {(unsigned)pl.splits, (unsigned)hkv, (unsigned)pl.tiles};
        void *args[] = {&a.out, &a.q, &a.k, &a.v, &a.pos, &a.sinks, &saddr, &a.p};
        return qn_cuda_launch(enc, name, SRC, defines, fn, grid, (qn_dim3){32 * QN_ATTN_DEC_WARPS(d), 1, 1}, pl.smem,
                              args);
    }
    snprintf(fn, sizeof fn, "attn_prefill_%s", dt);
    qn_dim3 grid = {(unsigned)(pl.tiles * (d / QN_ATTN_PF_DV(d))), (unsigned)hkv, (unsigned)pl.splits};
    void *args[] = {&a.out, &a.q, &a.k, &a.v, &a.pos, &a.sinks, &saddr, &a.p};
    QN_TRY(qn_cuda_launch(enc, name, SRC, defines, fn, grid, (qn_dim3){32 * QN_ATTN_PF_WARPS, 1, 1}, pl.smem, args));
    if (pl.splits == 1) return QN_OK;
    void *rargs[] = {&a.out, &a.sinks, &saddr, &a.p};
    return qn_cuda_launch(enc, "flash_attn_reduce", SRC, defines, "attn_reduce", (qn_dim3){(unsigned)hq, (unsigned)n, 1},
                          (qn_dim3){128, 1, 1}, 0, rargs);
}

qn_status qn_flash_attn_decode(qn_encoder *enc, qn_tensor out, qn_tensor q, qn_tensor k, qn_tensor v, qn_tensor pos,
                               const qn_tensor *sinks, const qn_tensor *scratch, qn_attn_opts opts) {
    return flash_attn("qn_flash_attn_decode", false, enc, out, q, k, v, pos, sinks, scratch, opts);
}

qn_status qn_flash_attn_prefill(qn_encoder *enc, qn_tensor out, qn_tensor q, qn_tensor k, qn_tensor v,
                                qn_tensor pos, const qn_tensor *sinks, const qn_tensor *scratch, qn_attn_opts opts) {
    return flash_attn("qn_flash_attn_prefill", true, enc, out, q, k, v, pos, sinks, scratch, opts);
}
