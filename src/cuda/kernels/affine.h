/* The MLX affine matrix product's kernel arguments (matvec_affine.cu),
 * shared by the op that fills them (src/ops/qmatmul.c) and the kernels that
 * read them: one struct passed by value, its fields of the same size and
 * alignment in C and CUDA C++ (as qn_kt in tensor.h). */
#ifndef QN_KERNELS_AFFINE_H
#define QN_KERNELS_AFFINE_H

/* Weight rows of the matvec's row group (for GLU half of them gate rows,
 * half up rows): a power of two for the block's reduction, as many as keep
 * a thread's 32-weight unit of every row near 128 bytes. */
#define QN_AFFINE_ROWS(bits) ((bits) <= 4 ? 8 : 4)
#define QN_AFFINE_WARPS 4 /* warps a block at most */

/* Dynamic shared memory of a matvec block of `threads` threads over rows of
 * k weights with `stages` pipeline stages: the stages' words, then x
 * (scaled, k floats) and its unit sums (k / 32 floats). */
#define QN_AFFINE_SMEM(bits, threads, k, stages) \
    ((stages) * QN_AFFINE_ROWS(bits) * (threads) * 4 * (bits) + 4 * (k) + (k) / 8)

/* MLX weights as the kernels take them: the weight, or the GLU's gate ([0])
 * and up ([1]) weights (the same layout): packed q rows, scales, biases.
 * The tensor-core matmul's loader takes this record alone. */
typedef struct {
    unsigned long long q[2], s[2], b[2];
    long long q_row, s_row, b_row;          /* bytes between rows */
    long long q_expert, s_expert, b_expert; /* bytes between experts (routed) */
    int group_shift;                        /* log2 of the group size */
    int stype;                              /* scale and bias dtype (QN_KT_*) */
} qn_affine_w;

/* The matvec's arguments. */
typedef struct {
    qn_affine_w w;
    long long N, K; /* rows, weights a row */
    unsigned long long x, y;
    long long x_tok;  /* bytes between tokens' x rows */
    long long x_slot; /* routed: bytes between a token's slots' x rows (0: shared) */
    long long y_tok;  /* floats between tokens' y rows (dense) */
    unsigned long long ids, flags; /* routed: i32 ids, the encoder's flag word */
    long long ids_tok;             /* ids between tokens */
    int top_k, n_experts;
    int xt;     /* x dtype (QN_KT_*) */
    int nx;     /* tokens (dense, at most 8) */
    int act;    /* GLU activation (QN_ACT_K_*) */
    int stages; /* pipeline depth: 2 to 4 */
    int groups; /* row groups a block takes, in a row */
    int pad_;
} qn_affine_args;

#endif
