/* The gated delta net family's argument records and workspace layout,
 * shared by the op (src/ops/deltanet.c), the CPU kernels
 * (src/cpu/deltanet.c) and the CUDA kernels (deltanet.cu), which take the
 * records by value. Like tensor.h, this file is compiled both into the
 * library and by NVRTC. */
#ifndef QN_KERNELS_DELTANET_ARGS_CUH
#define QN_KERNELS_DELTANET_ARGS_CUH

#include "tensor.h"

/* Tokens per chunk of the chunked (prefill) form. */
#define QN_GDN_CHUNK 64
/* Added to the sum of squares before the L2 norm of q and k. */
#define QN_GDN_L2_EPS 1e-6f

/* qn_gated_delta_net: shapes as in quanta.h. */
typedef struct {
    qn_kt out, state_out, q, k, v, g, beta, state_in;
    unsigned long long ws; /* workspace address (chunked form only) */
    float scale;           /* applied to q after its L2 norm */
    int n_chunks;          /* ceil(T / QN_GDN_CHUNK) */
} qn_gdn_args;

/* The chunked form's workspace: five f32 regions, each holding one entry per
 * chunk of every (sequence, value head), chunk index
 * ch = (b * n_v_heads + h) * n_chunks + c:
 *   W   [ch][64][d_k]   T diag(beta exp(G)) K        (written by gdn_prep)
 *   KT  [ch][64][d_k]   exp(G_63 - G_j) k_j           (gdn_prep)
 *   U   [ch][64][d_v]   T diag(beta) V, overwritten by the chunk's
 *                       corrected values (gdn_prep, then gdn_state)
 *   G   [ch][64]        cumulative log decay within the chunk (gdn_prep)
 *   M   [ch][d_k][d_v]  the state (transposed) at the chunk's start (gdn_state)
 * with T = (I + A)^-1, A the strictly lower beta_i exp(G_i - G_j) k_i.k_j.
 * Region r starts at qn_gdn_ws_offset(r, ...) floats; r = 5 gives the total.
 * Every region starts on a multiple of 64 floats (256 bytes). */
#define QN_GDN_WS_W 0
#define QN_GDN_WS_KT 1
#define QN_GDN_WS_U 2
#define QN_GDN_WS_G 3
#define QN_GDN_WS_M 4
#define QN_GDN_WS_END 5
QN_HD long long qn_gdn_ws_offset(int region, long long n_chunk_heads, long long dk, long long dv) {
    long long per_chunk = 0; /* floats of one chunk in the regions before `region` */
    if (region > QN_GDN_WS_W) per_chunk += QN_GDN_CHUNK * dk;
    if (region > QN_GDN_WS_KT) per_chunk += QN_GDN_CHUNK * dk;
    if (region > QN_GDN_WS_U) per_chunk += QN_GDN_CHUNK * dv;
    if (region > QN_GDN_WS_G) per_chunk += QN_GDN_CHUNK;
    if (region > QN_GDN_WS_M) per_chunk += dk * dv;
    return n_chunk_heads * per_chunk;
}

/* Shared-memory bytes of the chunked kernels (the layouts are described in
 * deltanet.cu, which checks them against these at compile time): gdn_prep
 * and gdn_out with 256 threads, gdn_state with 128 and
 * QN_GDN_STATE_STAGES(d_k) buffers of a chunk's inputs. */
#define QN_GDN_STATE_STAGES(dk) ((dk) <= 128 ? 2 : 1)
#define QN_GDN_PREP_SMEM(dk, dv) (4 * QN_GDN_CHUNK * ((dk) + 4 + (dv) + 8 + QN_GDN_CHUNK + 4 + 3))
#define QN_GDN_STATE_SMEM(dk) \
    (4 * (QN_GDN_STATE_STAGES(dk) * QN_GDN_CHUNK * (2 * (dk) + 29) + 24 * (dk) + 24 * QN_GDN_CHUNK))
#define QN_GDN_OUT_SMEM(dk) (4 * QN_GDN_CHUNK * (2 * ((dk) + 4) + QN_GDN_CHUNK + 4 + 1))

/* qn_gdn_conv1d */
typedef struct {
    qn_kt out, state_out, x, weight, state_in;
} qn_gdn_conv_args;

/* qn_gdn_gates */
typedef struct {
    qn_kt g, beta, a, b, a_log, dt_bias;
} qn_gdn_gates_args;

/* qn_gdn_gated_norm */
typedef struct {
    qn_kt out, x, z, weight;
    float eps;
} qn_gdn_norm_args;

#if !defined(__CUDACC_RTC__) && !defined(__CUDACC__)
/* The CPU kernels (src/cpu/deltanet.c), run by a CPU encoder with a record. */
#include "quanta.h"
void qn_cpu_gated_delta_net(qn_device *dev, const void *args);
void qn_cpu_gdn_conv1d(qn_device *dev, const void *args);
void qn_cpu_gdn_gates(qn_device *dev, const void *args);
void qn_cpu_gdn_gated_norm(qn_device *dev, const void *args);
#endif

#endif
