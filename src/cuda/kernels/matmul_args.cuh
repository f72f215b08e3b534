/* The tensor-core matmul's argument records, tile geometry and scratch
 * layout, shared by the op (src/ops/qmatmul.c) and the kernels (matmul.cu),
 * which take the records by value. Like tensor.h, this file is compiled
 * both into the library and by NVRTC. */
#ifndef QN_KERNELS_MATMUL_ARGS_CUH
#define QN_KERNELS_MATMUL_ARGS_CUH

#include "tensor.h"

#define QN_MM_THREADS 256 /* threads a block: 8 warps */
#define QN_MM_BN 128      /* weight rows a tile (output rows; 64 with a GLU) */

/* x is handed to the tensor cores as f16 (bf16 for bf16 and f32 weights),
 * each x row first multiplied by 2^shift so that its largest magnitude lies
 * in [2^QN_MM_X_TOP, 2^(QN_MM_X_TOP + 1)): the row keeps f16's 11
 * significant bits whatever its range, and the result is multiplied back by
 * 2^-shift. shift is at most QN_MM_X_MAX_SHIFT (rows of tiny values). */
#define QN_MM_X_TOP 14
#define QN_MM_X_MAX_SHIFT 64

/* Common arguments (addresses as integers, as in qn_kt). Token rows of the
 * product are numbered j: dense, j is the token (top_k 1); routed, j =
 * slot + top_k * token, the row of y [N, top_k, M]. */
typedef struct {
    unsigned long long x;       /* x rows in the compute dtype */
    unsigned long long x_scale; /* f32 multiplier of each x row; 0: all 1 */
    long long x_slot_nb;        /* bytes between the slot rows of a token */
    long long x_tok_nb;         /* bytes between tokens */
    unsigned long long y;       /* f32 */
    long long y_nb1;            /* floats between y rows */
    long long N, K, M;          /* weight rows, row length, tokens (dense) */
    unsigned long long tiles;   /* routed: qn_mm_route's tile list; 0 dense */
    unsigned long long pairs;   /* routed: its j lists */
    int top_k;
    int x_per_slot; /* x [K, top_k, M] (else [K, 1, M]) */
    int glu, act;   /* y = act(W x) * (U x) when glu */
} qn_mm_args;

/* The ggml block loader's weights: row n of expert e (gate or up) starts at
 * w + e * expert_bytes + n * row_bytes. */
typedef struct {
    unsigned long long w, up;
    long long row_bytes, expert_bytes;
} qn_mm_gguf_w;

/* Geometry of the ggml block loader for blocks of qk elements in `bytes`
 * bytes (plain types: 8-element groups): a step covers QN_MM_KT elements of
 * every row (64 for f32 weights, whose raw bytes are twice f16's), and its
 * raw bytes are copied into a row slot of QN_MM_RAW_PITCH bytes that keeps
 * their address modulo 16 (so a block's alignment is its global one). */
#define QN_MM_KT(qk, bytes) ((qk) == 8 && (bytes) == 32 ? 64 : 128)
#define QN_MM_STEP_BYTES(qk, bytes) (((qk) <= QN_MM_KT(qk, bytes) ? QN_MM_KT(qk, bytes) / (qk) : 1) * (bytes))
#define QN_MM_RAW_PITCH(qk, bytes) ((QN_MM_STEP_BYTES(qk, bytes) + 30) / 16 * 16)
/* Dynamic shared memory of a block with bm token rows: two f16 weight
 * tiles and two x tiles (rows of KT + 8 halves), two raw stages, the
 * token rows (x address, j, scale) and the weight rows' addresses. */
#define QN_MM_SMEM(qk, bytes, bm)                                                                      \
    (4 * (QN_MM_BN + (bm)) * (QN_MM_KT(qk, bytes) + 8) + 2 * QN_MM_BN * QN_MM_RAW_PITCH(qk, bytes) + \
     16 * (bm) + 8 * QN_MM_BN)

/* The MLX affine loader (QN_AFFINE_BITS modules): a step is 128 weights of
 * a row, whose q words (16 * bits bytes) and 1 to 4 scales and biases are
 * copied as the 16-byte chunks around them: a row's raw slot holds
 * 16 * bits + 16 bytes of q and 32 of scales, 32 of biases. Its row state:
 * three addresses a row, then the group shift and the scale dtype. */
#define QN_MM_AFFINE_RAW_PITCH(bits) (16 * (bits) + 16 + 2 * 32)
#define QN_MM_AFFINE_ROW_BYTES (24 * QN_MM_BN + 16)
#define QN_MM_AFFINE_SMEM(bits, bm)                                                                            \
    (4 * (QN_MM_BN + (bm)) * (128 + 8) + 2 * QN_MM_BN * QN_MM_AFFINE_RAW_PITCH(bits) + 16 * (bm) + \
     QN_MM_AFFINE_ROW_BYTES)

/* The routed form's lists, built on the device by mm_route (ints):
 * tiles[0] the number of tiles, tile t at tiles + 4 + 4 t as {expert, first
 * entry of pairs, rows}; pairs: the j of every valid (slot, token) pair,
 * grouped by expert. A tile is at most bm rows of one expert; there are at
 * most qn_mm_max_tiles of them. */
QN_HD long long qn_mm_max_tiles(long long pairs, long long experts, int bm) {
    long long used = experts < pairs ? experts : pairs; /* experts with a pair */
    long long t = (pairs + used * (bm - 1)) / bm;
    return t < pairs ? t : pairs;
}

#endif
