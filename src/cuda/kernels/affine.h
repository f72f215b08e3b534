/* The MLX affine matrix product's kernel arguments (matvec_affine.cu),
 * shared by the op that fills them (src/ops/qmatmul.c) and the kernels that
 * read them: one struct passed by value, its fields of the same size and
 * alignment in C and CUDA C++ (as qn_kt in tensor.h). */
#ifndef QN_KERNELS_AFFINE_H
#define QN_KERNELS_AFFINE_H

/* Weight rows a block of the matvec reads (for GLU half of them gate rows,
 * half up rows): as many as keep each thread's loads of one 32-weight unit
 * per row near 128 bytes, a power of two for the block's reduction. */
#define QN_AFFINE_ROWS(bits) ((bits) <= 4 ? 8 : 4)
#define QN_AFFINE_WARPS 4 /* warps a block at most */

typedef struct {
    /* The weight, or the GLU's gate ([0]) and up ([1]) weights: packed q
     * rows, scales, biases. */
    unsigned long long q[2], s[2], b[2];
    long long q_row, s_row, b_row;          /* bytes between rows */
    long long q_expert, s_expert, b_expert; /* bytes between experts (routed) */
    long long N, K;                         /* rows, weights a row */
    unsigned long long x, y;
    long long x_tok;  /* bytes between tokens' x rows */
    long long x_slot; /* routed: bytes between a token's slots' x rows (0: shared) */
    long long y_tok;  /* floats between tokens' y rows (dense) */
    unsigned long long ids, flags; /* routed: i32 ids, the encoder's flag word */
    long long ids_tok;             /* ids between tokens */
    int top_k, n_experts;
    int group_shift;  /* log2 of the group size */
    int stype, xt;    /* scale/bias and x dtypes (QN_KT_*) */
    int nx;           /* tokens (dense, at most 8) */
    int act;          /* GLU activation (QN_ACT_K_*) */
    int pad_;
} qn_affine_args;

#endif
