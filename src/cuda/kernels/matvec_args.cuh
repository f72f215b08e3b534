/* The matvec kernels' argument record and shared-memory layout, shared by
 * the op (src/ops/qmatmul.c), which plans a launch, and matvec.cu, which
 * takes the record by value. Like tensor.h, this file is compiled both into
 * the library and by NVRTC. */
#ifndef QN_KERNELS_MATVEC_ARGS_CUH
#define QN_KERNELS_MATVEC_ARGS_CUH

#include "tensor.h"

#define QN_MV_THREADS 256 /* threads a block */
#define QN_MV_STAGES 3    /* stage buffers a block cycles through: two in flight while one is used */
#define QN_MV_TOKENS 8    /* tokens a launch covers at most (at most the warps of a block) */
#define QN_MV_BLOCKS_SM 3 /* blocks a multiprocessor holds (the kernel's launch bounds promise the registers) */
#define QN_MV_STAGE 16384 /* bytes of weights a stage holds, about */

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
    int kc;                 /* blocks of each row a stage holds: bpr, or fewer for long rows */
    int rs;                 /* rows a stage holds (1 when kc < bpr) */
    int nx;                 /* tokens (dense; 1 in the routed form) */
    int xt;                 /* x's dtype (QN_KT_F32, _F16, _BF16) */
    int act;                /* GLU activation */
    int n_experts, top_k;   /* routed form */
    int glu;                /* 1: y = act(gate x) * (up x) */
    int early;              /* 1: the weights may be read before the kernel before has finished */
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

/* Units of a stage's segment (a row's blocks in it) a thread's partial sums
 * are kept for: the threads split a segment's units, and the ones that
 * share a unit position split the segments. */
QN_HD int qn_mv_lanes(long long units) { return units < QN_MV_THREADS ? (int)units : QN_MV_THREADS; }

/* Dynamic shared memory: x for every token (quantized types), the stage
 * buffers of `slots` ranges each, and two sets of per-lane partial sums for
 * `segs` segments (one being reduced while the next is written). */
QN_HD long long qn_mv_smem(long long xq_bytes, int nx, int slots, long long slot_bytes, int segs, int lanes) {
    return xq_bytes * nx + (long long)QN_MV_STAGES * slots * slot_bytes + 2LL * segs * nx * lanes * 4;
}

/* Plans a launch: a->bpr, row_bytes, glu and nx (the most tokens wanted)
 * in; rs, kc and nx (fewer tokens when they do not fit) out, *grid_x blocks
 * a pair.
 * qk and bytes: the kernel's block (8 values for float weights); pairs: the
 * routed form's (slot, token) pairs (1 when dense); smem_sm: shared memory a
 * multiprocessor has, smem_block the most a block may take. Returns the
 * dynamic shared memory, or -1 when one token's x and a stage do not fit. */
QN_HD long long qn_mv_plan(qn_mv_args *a, int qk, int bytes, long long N, int pairs, int sms, long long smem_sm,
                           long long smem_block, unsigned *grid_x) {
    const int upb = qk == 256 ? 4 : 1, mult = a->glu ? 2 : 1;
    const long long xq = qk >= 32 ? qn_mv_xq_bytes((long long)a->bpr * qk) : 0;
    long long g = (long long)sms * QN_MV_BLOCKS_SM / pairs;
    g = g < 1 ? 1 : g > N ? N : g;
    *grid_x = (unsigned)g;
    const long long row = (long long)a->bpr * bytes, rows_per_block = (N + g - 1) / g;
    long long rs = 1, kc = a->bpr;
    if (row * mult <= QN_MV_STAGE) {
        /* a multiple of the row groups the kernel's threads split into, so
         * they get equal shares */
        const long long units = (long long)a->bpr * upb, groups = units < QN_MV_THREADS ? QN_MV_THREADS / units : 1;
        rs = QN_MV_STAGE / (row * mult);
        if (rs * mult >= groups) rs = (rs * mult / groups) * groups / mult;
        rs = rs < rows_per_block ? rs : rows_per_block;
    } else {
        kc = QN_MV_STAGE / ((long long)bytes * mult);
        kc = kc < 1 ? 1 : kc;
    }
    a->kc = (int)kc;
    /* the blocks of a multiprocessor share its memory, less 1 KB each the
     * system keeps */
    const long long budget = smem_sm / QN_MV_BLOCKS_SM - 1024 < smem_block ? smem_sm / QN_MV_BLOCKS_SM - 1024 : smem_block;
    for (;;) {
        const int slots = mult * (a->row_bytes == row ? 1 : (int)rs);
        const long long slot = qn_mv_seg_bytes(qn_mv_range(a->row_bytes, a->bpr, (int)kc, (int)rs, bytes));
        const long long smem = qn_mv_smem(xq, a->nx, slots, slot, (int)rs * mult, qn_mv_lanes(kc * upb));
        if (smem <= budget || (rs == 1 && a->nx == 1 && smem <= smem_block)) {
            a->rs = (int)rs;
            return smem;
        }
        if (rs > 1) rs = (rs + 1) / 2;
        else if (a->nx > 1) a->nx = (a->nx + 1) / 2;
        else return -1;
    }
}

#endif
