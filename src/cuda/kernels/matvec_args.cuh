/* The matvec kernels' argument record and shared-memory layout, shared by
 * the op (src/ops/qmatmul.c), which plans a launch, and matvec.cu, which
 * takes the record by value. Like tensor.h, this file is compiled both into
 * the library and by NVRTC. */
#ifndef QN_KERNELS_MATVEC_ARGS_CUH
#define QN_KERNELS_MATVEC_ARGS_CUH

#include "tensor.h"

#define QN_MV_THREADS 256 /* threads a block */
#define QN_MV_WARPS (QN_MV_THREADS / 32)
#define QN_MV_BUFS 4      /* stage buffers a warp cycles through: three in flight while one is used */
#define QN_MV_TOKENS 8    /* tokens a launch covers at most */
#define QN_MV_BLOCKS_SM 2 /* blocks a multiprocessor holds (the kernel's launch bounds promise the registers) */
#define QN_MV_STAGE 3072  /* bytes of weights a warp's stage holds, about (QUANTA_MV_STAGE overrides it) */
#define QN_MV_STAGE_MIN 512 /* the least the plan shrinks a stage to before it takes fewer tokens */
#define QN_MV_UPL 8         /* units a lane of a row's team takes at most, where rows are short (QUANTA_MV_UPL overrides it) */

typedef struct {
    unsigned long long w, up;         /* gate (or only) weights; up weights (GLU) or 0 */
    unsigned long long w_end, up_end; /* one past the last byte of each: no copy reads beyond */
    unsigned long long x, y, ids, flags;
    long long row_bytes;    /* between weight rows */
    long long expert_bytes; /* between experts (routed form) */
    long long N;            /* rows */
    long long x_nb1;        /* bytes between x's token rows (dense) or tokens (routed) */
    long long x_slot_nb;    /* routed: bytes between the slots' x rows (0: x shared by the slots) */
    long long y_nb1;        /* floats between y's token rows (dense) */
    long long ids_nb1;      /* routed: ints between the tokens' ids */
    int bpr;                /* blocks a row */
    int team;               /* lanes a row (a power of two up to 32): a warp takes 32 / team rows at once */
    int kc;                 /* blocks of each row a stage holds: bpr, or fewer for long rows */
    int rs;                 /* rows a stage holds (1 when kc < bpr) */
    int nx;                 /* tokens (dense; 1 in the routed form) */
    int xt;                 /* x's dtype (QN_KT_F32, _F16, _BF16) */
    int act;                /* GLU activation */
    int n_experts, top_k;   /* routed form */
    int glu;                /* 1: y = act(gate x) * (up x) */
    int early;              /* 1: the weights may be read before the kernel before has finished */
    /* The norm in front (dense, quantized weights; qn_qmatmul_normed): x
     * is not read but made, per token, from a (the residual stream), b (a
     * branch's output, or 0), b_w and w (f32 [K]): sum = a + rms_norm(b) *
     * (b_w + w_off), x = rms_norm(sum) * (w + w_off); block (0, 0) stores x
     * (f32, at x) and sum at ps (0: no b). Strides in bytes between tokens. */
    unsigned long long pa, pb, pbw, pw, ps;
    long long pa_nb1, pb_nb1, ps_nb1;
    float eps, w_off;
    int norm; /* 1: x comes from the norm */
} qn_mv_args;

/* Bytes of x, quantized to int8 in blocks of 32 with a float scale and sum
 * each, for one token of k values (float weights keep x in global memory);
 * a multiple of 16, so every token's values and the stages after them stay
 * 16-byte aligned. */
QN_HD long long qn_mv_xq_bytes(long long k) { return (k + k / 32 * 8 + 15) / 16 * 16; }

/* A stage holds rs rows (or, for rows longer than a stage, kc blocks of one
 * row), copied as ranges of bytes: one per weight tensor when rows are
 * packed (row_bytes is the row's size), else one per row. The longest
 * range: */
QN_HD long long qn_mv_range(long long row_bytes, int bpr, int kc, int rs, int bytes) {
    return (row_bytes == (long long)bpr * bytes ? (rs - 1) * row_bytes : 0) + (long long)kc * bytes;
}
/* A range's slot: copied in 16-byte pieces from the 16-byte boundary at or
 * below its start, with room for the up to 15 bytes before it and 4 bytes
 * of over-read after. */
QN_HD long long qn_mv_seg_bytes(long long range) { return (range + 15 + 4 + 15) / 16 * 16; }

/* Ranges of a stage, and the bytes of one of a warp's stage buffers. */
QN_HD int qn_mv_ranges(const qn_mv_args *a, int bytes) {
    return (a->glu ? 2 : 1) * (a->row_bytes == (long long)a->bpr * bytes ? 1 : a->rs);
}
QN_HD long long qn_mv_buf_bytes(const qn_mv_args *a, int bytes) {
    return qn_mv_ranges(a, bytes) * qn_mv_seg_bytes(qn_mv_range(a->row_bytes, a->bpr, a->kc, a->rs, bytes));
}

/* Dynamic shared memory: x for every token (quantized types), then each
 * warp's stage buffers. */
QN_HD long long qn_mv_smem(const qn_mv_args *a, long long xq_bytes, int bytes) {
    return xq_bytes * a->nx + (long long)QN_MV_WARPS * QN_MV_BUFS * qn_mv_buf_bytes(a, bytes);
}

/* Plans a launch: a->bpr, row_bytes, glu and nx (the most tokens wanted)
 * in; team, rs, kc and nx (fewer tokens when they do not fit) out, *grid_x
 * blocks a pair.
 * qk and bytes: the kernel's block (8 values for float weights); pairs: the
 * routed form's (slot, token) pairs (1 when dense); stage: the bytes a
 * warp's stage should hold; smem_sm: shared memory a multiprocessor has,
 * smem_block the most a block may take. Returns the dynamic shared memory,
 * or -1 when one token's x and the smallest stages do not fit.
 *
 * A stage holds whole rows when they fit (as many as make `stage` bytes,
 * but no more than leave every warp of the launch a stage: small matvecs
 * want all their rows in flight at once, not a few warps walking many),
 * else a row's blocks in chunks of `stage` bytes. A row's units go to a
 * team of lanes: the least power of two that leaves each lane at most upl
 * of them (a lane's units reuse nothing, but a team's sums cost a shuffle
 * a halving and every lane of a row loads its own x: short rows go
 * faster to a few lanes each), but no fewer lanes than keep the warp busy
 * with the rows a stage holds; 32 for rows in chunks. */
QN_HD long long qn_mv_plan(qn_mv_args *a, int qk, int bytes, long long N, int pairs, int sms, long long stage,
                           int upl, long long smem_sm, long long smem_block, unsigned *grid_x) {
    const int upb = qk == 256 ? 4 : 1, mult = a->glu ? 2 : 1;
    const long long xq = qk >= 32 ? qn_mv_xq_bytes((long long)a->bpr * qk) : 0;
    const long long units = (long long)a->bpr * upb;
    int least = 1;
    while (least < 32 && (long long)least * upl < units) least *= 2;
    long long blocks = (long long)sms * QN_MV_BLOCKS_SM / pairs;
    blocks = blocks < 1 ? 1 : blocks;
    const long long warps = blocks * QN_MV_WARPS, row = (long long)a->bpr * bytes;
    /* the blocks of a multiprocessor share its memory, less 1 KB each the
     * system keeps */
    const long long per_sm = smem_sm / QN_MV_BLOCKS_SM - 1024;
    const long long budget = per_sm < smem_block ? per_sm : smem_block;
    for (;;) {
        long long rs = 1, kc = a->bpr;
        int team = 32;
        if (row * mult <= stage) {
            const long long fill = (N + warps - 1) / warps; /* rows a warp, with every warp at work */
            rs = stage / (row * mult);
            rs = rs < fill ? rs : fill;
            for (team = least; team < 32 && 32 / team > rs;) team *= 2;
            if (rs > 32 / team) rs = rs / (32 / team) * (32 / team); /* whole passes of the warp's teams */
        } else {
            /* whole blocks, a multiple of the 32 lanes' units when the
             * stage is large enough for that */
            const long long step = 32 / upb;
            kc = stage / ((long long)bytes * mult);
            kc = kc >= step ? kc / step * step : kc < 1 ? 1 : kc;
        }
        a->rs = (int)rs;
        a->kc = (int)kc;
        a->team = team;
        const long long smem = qn_mv_smem(a, xq, bytes);
        /* one block a multiprocessor rather than none, for the longest x */
        const bool last = stage <= QN_MV_STAGE_MIN && a->nx == 1;
        if (smem <= budget || (last && smem <= smem_block)) {
            const long long groups = (N + rs - 1) / rs, need = (groups + QN_MV_WARPS - 1) / QN_MV_WARPS;
            *grid_x = (unsigned)(blocks < need ? blocks : need);
            return smem;
        }
        /* fewer tokens first while x takes half the budget, then smaller
         * stages, then fewer tokens again */
        if (a->nx > 1 && xq * a->nx * 2 > budget) a->nx = (a->nx + 1) / 2;
        else if (stage > QN_MV_STAGE_MIN) stage = stage * 7 / 8 > QN_MV_STAGE_MIN ? stage * 7 / 8 : QN_MV_STAGE_MIN;
        else if (a->nx > 1) a->nx = (a->nx + 1) / 2;
        else return -1;
    }
}

#endif
