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

/* The chunked form's workspace: four f32 regions, each holding one entry per
 * chunk of every (sequence, value head), chunk index
 * ch = (b * n_v_heads + h) * n_chunks + c. With S the state [d_v][d_k] at
 * the chunk's start, the chunk maps S to S A + B and its outputs are
 * O = Qe S^T + PU (deltanet.cu derives A, B, Qe and PU); all four are
 * written by gdn_prep and read by gdn_state:
 *   A   [ch][d_k * d_k]   the state transition
 *   B   [ch][d_v * d_k]   the state increment
 *   QE  [ch][64 * d_k]    the outputs' state weights
 *   PU  [ch][64 * d_v]    the outputs' chunk part
 * Each is stored in the order the tensor-core fragments of its reader take
 * it (deltanet.cu gives the layouts), so every read is a 16-byte load per
 * lane. Region r starts at qn_gdn_ws_offset(r, ...) floats; r = 4 gives the
 * total. Every region starts on a multiple of 512 floats (2 KiB). */
#define QN_GDN_WS_A 0
#define QN_GDN_WS_B 1
#define QN_GDN_WS_QE 2
#define QN_GDN_WS_PU 3
#define QN_GDN_WS_END 4
QN_HD long long qn_gdn_ws_offset(int region, long long n_chunk_heads, long long dk, long long dv) {
    long long per_chunk = 0; /* floats of one chunk in the regions before `region` */
    if (region > QN_GDN_WS_A) per_chunk += dk * dk;
    if (region > QN_GDN_WS_B) per_chunk += dv * dk;
    if (region > QN_GDN_WS_QE) per_chunk += QN_GDN_CHUNK * dk;
    if (region > QN_GDN_WS_PU) per_chunk += QN_GDN_CHUNK * dv;
    return n_chunk_heads * per_chunk;
}

/* Launch shapes of the chunked kernels (deltanet.cu checks its shared-memory
 * layouts against these at compile time):
 *   gdn_prep         512 threads;
 *   gdn_state_<mt>   d_k threads (d_k / 32 warps), 16 mt value rows of the
 *                    state a block, mt in 1, 2, 4 (4 only for d_k = 128);
 *                    each warp streams its operands through a ring of
 *                    QN_GDN_STATE_RING(d_k) groups of 2 KiB. */
#define QN_GDN_PREP_THREADS 512
#define QN_GDN_PREP_SMEM(dk, dv) (4 * (QN_GDN_CHUNK * (2 * ((dk) + 4) + (dv) + 8 + QN_GDN_CHUNK + 4) + 6 * QN_GDN_CHUNK))
#define QN_GDN_STATE_RING(dk) ((dk) <= 128 ? 16 : 8)
#define QN_GDN_STATE_SMEM(dk, mt) ((dk) / 32 * QN_GDN_STATE_RING(dk) * 2048 + (mt) * (dk) * 128)

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
