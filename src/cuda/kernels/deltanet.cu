/* The gated delta net: decode step, chunked prefill, and the layer helpers.
 *
 * Compiled with -DQN_GDN_DK=.. -DQN_GDN_DV=.. (128 or 256 each) this file holds the
 * recurrence kernels for that head size; without them, the helpers
 * (convolution, gates, gated norm), which have no head size.
 *
 * Per value head, with q and k L2-normalised (q also times `scale`):
 *   S_t = exp(g_t) S_{t-1};  S_t += beta_t (v_t - S_t k_t) k_t^T;  o_t = S_t q_t
 * Tensors are as quanta.h describes them (q, k [d_k, Hk, T, B]; v, out
 * [d_v, Hv, T, B]; g, beta [Hv, T, B]; state [d_k, d_v, Hv, B] f32, so a row
 * of S is d_k contiguous floats).
 *
 * Decode (T = 1), gdn_decode: grid (d_v / 16, Hv, B), 4 warps; a warp owns
 * 4 rows of S (a float4 or two per lane each) and needs nothing from the
 * other warps, because the rows of S evolve independently once q and k are
 * normalised (each warp normalises them itself). Every load is issued
 * before the first store (a store may alias a later load as far as the
 * compiler knows, which would serialise the rows). Bytes: the state read
 * and written once (2 * 4 d_k d_v Hv B) plus q, k, v; 32 heads of 128 x 128
 * move 4 MiB.
 *
 * Chunked form (T > 1) over 64-token chunks. In a chunk with cumulative log
 * decay G_i, K, Q (normalised rows), V and the start state S:
 *   L  = strictly lower part of beta_i exp(G_i - G_j) k_i.k_j      (64 x 64)
 *   P  = lower part (j <= i) of exp(G_i - G_j) q_i.k_j            (64 x 64)
 *   T  = (I + L)^-1,  W = T diag(beta exp(G)) K,  U = T diag(beta) V
 *   KT = diag(exp(G_63 - G_j)) K
 *   end state   S' = S A + B     A = exp(G_63) I - W^T KT   (d_k x d_k)
 *                                B = U^T KT                  (d_v x d_k)
 *   outputs     O  = Qe S^T + PU Qe = diag(exp(G)) Q - P T diag(beta exp(G)) K
 *                                PU = P T diag(beta) V
 * which is the recurrence unrolled over the chunk (the corrected values of
 * the chunk are U - W S^T; the decays enter only as exp of differences that
 * are <= 0, so nothing overflows). Tokens past T are zero (k, v, beta, g),
 * which leaves S' and every other row intact. Only S' = S A + B is
 * sequential, and it is one product per chunk. Two kernels:
 *   gdn_prep      grid (chunks, Hv, B), 16 warps: everything above but S, into
 *                 the workspace (deltanet_args.cuh), with W and U folded
 *                 away: Z = T^T KT gives W^T KT = Z^T X and U^T KT = Y^T Z
 *                 (X = diag(beta exp(G)) K, Y = diag(beta) V), and P T gives
 *                 P W = (P T) X, P U = (P T) Y. T by blocks: the four 16 x 16
 *                 diagonal blocks by forward substitution, then two levels of
 *                 [[A, 0], [C, B]]^-1 = [[A^-1, 0], [-B^-1 C A^-1, B^-1]].
 *                 Reads q, k, v, g, beta once; writes
 *                 4 (d_k^2 + d_v d_k + 64 (d_k + d_v)) bytes.
 *   gdn_state_<mt> grid (d_v / (16 mt), Hv, B), d_k / 32 warps: the only
 *                 sequential kernel, and the outputs. A block carries 16 mt
 *                 rows of S through all chunks (rows of S evolve
 *                 independently); warp w owns the state columns 32 w ..
 *                 32 w + 31 of them, in mma accumulators. Per chunk the warps
 *                 trade their columns through shared memory (the products
 *                 need whole rows), then S' = S A + B, and, for the tokens
 *                 16 w .. 16 w + 15 of the chunk, O^T = S Qe^T + PU^T, both on
 *                 the tensor cores from the same a fragments. A, B, Qe and
 *                 PU stream through a per-warp ring of cp.async copies (each
 *                 lane reads back only what it copied, so the ring needs no
 *                 barrier), most of a chunk ahead. Per chunk a block reads
 *                 4 (d_k^2 + 64 d_k) bytes of A and Qe, and 64 mt (d_k + 64)
 *                 bytes of B and PU.
 * Products run on tensor cores in TF32 (10-bit mantissa, f32 range: values
 * and states need no scaling) with f32 accumulation. Operands stored for
 * another kernel are rounded to TF32 when stored.
 *
 * Fragment layouts (mma.m16n8k8, lane = 4 gr + tg). The workspace stores
 * every operand as the fragments its reader loads, a float4 per lane: a
 * "unit" is 32 lanes x 4 floats. The k index of a product may be permuted
 * as long as both operands agree; the state kernel's products use k slot
 * tg for column 2 tg of an 8-wide k tile and slot tg + 4 for column
 * 2 tg + 1, which makes an accumulator tile of S (rows gr, gr + 8; columns
 * 2 tg, 2 tg + 1) an a operand without moving data between lanes:
 *   B       [d_v / 16][d_k / 8] units, accumulator tiles (rows of S, columns
 *           of S): B[r][2 tg], B[r][2 tg + 1], B[r + 8][2 tg],
 *           B[r + 8][2 tg + 1], r = gr
 *   A       [d_k / 8 (n tile u)][d_k / 16 (k pair p)] units: the b operands
 *           of k tiles 2p and 2p + 1: A[16p + 2tg][8u + gr],
 *           A[16p + 2tg + 1][8u + gr], A[16p + 8 + 2tg][8u + gr],
 *           A[16p + 9 + 2tg][8u + gr]
 *   QE      [8 (token tile u)][d_k / 16] units: the same for Qe^T,
 *           Qe[8u + gr][16p + 2tg], ...
 *   PU      [d_v / 16][8 (token tile)] units, accumulator tiles of PU^T.
 *
 * Helpers (no QN_GDN_DK):
 *   gdn_conv1d      grid (T / 64, C / 128, B): a thread per channel runs 64
 *                   tokens with its W - 1 previous inputs in registers.
 *   gdn_gates       row kernel over [Hv, T, B].
 *   gdn_gated_norm  a warp per row. */
#include "deltanet_args.cuh"

#define FULL_MASK 0xffffffffu

__device__ __forceinline__ float warp_sum(float x) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(FULL_MASK, x, o);
    return x;
}

__device__ __forceinline__ float silu_f(float x) { return x / (1.0f + expf(-x)); }

#ifdef QN_GDN_DK

#define DK QN_GDN_DK
#define DV QN_GDN_DV
#define CH QN_GDN_CHUNK
static_assert((DK == 128 || DK == 256) && (DV == 128 || DV == 256), "head sizes 128 and 256");
static_assert(CH == 64, "the kernels' warp layouts assume 64-token chunks");

/* The dynamic shared memory of the chunked kernels (each lays it out). */
extern __shared__ __align__(16) float sm[];

/* ---- tensor cores: mma.m16n8k8 in TF32 */

__device__ __forceinline__ unsigned tf32(float x) {
    unsigned r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
}

__device__ __forceinline__ void mma_tf32(float c[4], const unsigned a[4], const unsigned b[2]) {
    asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

/* The same with both operands as stored fragments (float4 a; b0, b1). */
__device__ __forceinline__ void mma_frag(float c[4], float4 a, float b0, float b1) {
    const unsigned af[4] = {tf32(a.x), tf32(a.y), tf32(a.z), tf32(a.w)}, bf[2] = {tf32(b0), tf32(b1)};
    mma_tf32(c, af, bf);
}

__device__ __forceinline__ int lane_gr() { return (threadIdx.x & 31) >> 2; }
__device__ __forceinline__ int lane_tg() { return threadIdx.x & 3; }

/* Row and column of accumulator element e of a 16 x 8 tile at (m0, n0). */
__device__ __forceinline__ int acc_row(int m0, int e) { return m0 + lane_gr() + 8 * (e >> 1); }
__device__ __forceinline__ int acc_col(int n0, int e) { return n0 + 2 * lane_tg() + (e & 1); }

/* acc[i][j] (the 16 x 8 tile at rows m0 + 16 i, columns n0 + 8 j) +=
 * sum over k < n_k of a(m, k) b(k, n), the operands given as functions of
 * their element indices (shared memory reads, scaled, masked, transposed as
 * the caller needs). The warp's a fragments serve NT tiles, its b fragments
 * MT tiles. */
template <int MT, int NT, class FA, class FB>
__device__ __forceinline__ void mma_tiles(float (&acc)[MT][NT][4], int m0, int n0, int n_k, FA a, FB b) {
    const int gr = lane_gr(), tg = lane_tg();
#pragma unroll 2
    for (int k0 = 0; k0 < n_k; k0 += 8) {
        unsigned af[MT][4], bf[NT][2];
#pragma unroll
        for (int i = 0; i < MT; i++) {
            const int m = m0 + 16 * i + gr;
            af[i][0] = tf32(a(m, k0 + tg));
            af[i][1] = tf32(a(m + 8, k0 + tg));
            af[i][2] = tf32(a(m, k0 + tg + 4));
            af[i][3] = tf32(a(m + 8, k0 + tg + 4));
        }
#pragma unroll
        for (int j = 0; j < NT; j++) {
            bf[j][0] = tf32(b(k0 + tg, n0 + 8 * j + gr));
            bf[j][1] = tf32(b(k0 + tg + 4, n0 + 8 * j + gr));
        }
#pragma unroll
        for (int i = 0; i < MT; i++)
#pragma unroll
            for (int j = 0; j < NT; j++) mma_tf32(acc[i][j], af[i], bf[j]);
    }
}

/* Calls f(row, column, element) for each accumulator element of acc. */
template <int MT, int NT, class F>
__device__ __forceinline__ void for_acc(float (&acc)[MT][NT][4], int m0, int n0, F f) {
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int j = 0; j < NT; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) f(acc_row(m0 + 16 * i, e), acc_col(n0 + 8 * j, e), acc[i][j][e]);
}

/* A unit of the workspace: this lane's float4. */
__device__ __forceinline__ float *unit(float *base, long long u) { return base + u * 128 + 4 * (threadIdx.x & 31); }
__device__ __forceinline__ const float *unit(const float *base, long long u) {
    return base + u * 128 + 4 * (threadIdx.x & 31);
}

/* ---- cp.async: 16 bytes global -> shared, waited for by group. */

__device__ __forceinline__ void cp16(float *dst, const float *src) {
    unsigned s;
    asm("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }" : "=r"(s) : "l"(dst));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(s), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_wait() {
    asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

/* ---- loads of a chunk's rows */

/* Rows 0 .. 63 of a chunk (row t at base + t * nb_row, element i of it at
 * + i * nb_el) into s[64][ld] as f32, rows t >= n_valid zero. With
 * `normalise`, each row is divided by sqrt(sum x^2 + eps) and multiplied by
 * `mul`. Warp w takes rows w, w + 16, ..., lanes along the row (coalesced
 * when the elements are contiguous); all its loads are issued before the
 * first is used. */
template <int D, int XT>
__device__ __noinline__ void load_rows_as(float *s, int ld, const char *base, long long nb_el, long long nb_row,
                                          int n_valid, bool normalise, float mul) {
    constexpr int NW = QN_GDN_PREP_THREADS / 32, R = CH / NW, E = D / 32;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    unsigned bits[R][E];
#pragma unroll
    for (int r = 0; r < R; r++) {
        const int t = warp + NW * r;
        const char *p = base + (t < n_valid ? t : 0) * nb_row + lane * nb_el;
#pragma unroll
        for (int i = 0; i < E; i++) bits[r][i] = t < n_valid ? qn_load_bits(p + 32 * i * nb_el, XT) : 0u;
    }
#pragma unroll
    for (int r = 0; r < R; r++) {
        float vals[E], ss = 0.0f;
#pragma unroll
        for (int i = 0; i < E; i++) {
            vals[i] = qn_bits_to_f32(bits[r][i], XT);
            ss += vals[i] * vals[i];
        }
        const float f = normalise ? mul / sqrtf(warp_sum(ss) + QN_GDN_L2_EPS) : 1.0f;
#pragma unroll
        for (int i = 0; i < E; i++) s[(warp + NW * r) * ld + lane + 32 * i] = vals[i] * f;
    }
}

/* The chunk's rows of x ([D, heads, T, B]) at `head`, sequence b, from token t0. */
template <int D>
__device__ void load_rows(float *s, int ld, const qn_kt &x, long long head, long long b, long long t0,
                          bool normalise, float mul) {
    const char *base = qn_kt_at(&x, 0, head, t0, b);
    const long long left = x.ne[2] - t0;
    const int n_valid = left < CH ? (int)left : CH;
    if (x.dtype == QN_KT_BF16) load_rows_as<D, QN_KT_BF16>(s, ld, base, x.nb[0], x.nb[2], n_valid, normalise, mul);
    else if (x.dtype == QN_KT_F16) load_rows_as<D, QN_KT_F16>(s, ld, base, x.nb[0], x.nb[2], n_valid, normalise, mul);
    else load_rows_as<D, QN_KT_F32>(s, ld, base, x.nb[0], x.nb[2], n_valid, normalise, mul);
}

/* ---- decode: one token */

extern "C" __global__ void __launch_bounds__(128) gdn_decode(qn_gdn_args a) {
    constexpr int ROWS = 4, PER = DK / 128; /* rows per warp; float4s per lane per row */
    const long long h = blockIdx.y, b = blockIdx.z, hv = a.v.ne[1], kh = h / (hv / a.q.ne[1]);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const long long n0 = blockIdx.x * 16LL + warp * ROWS;

    unsigned qb[4 * PER], kb[4 * PER], vb[ROWS];
#pragma unroll
    for (int i = 0; i < 4 * PER; i++) {
        const long long d = 128 * (i / 4) + 4 * lane + (i % 4);
        qb[i] = qn_load_bits(qn_kt_at(&a.q, d, kh, 0, b), a.q.dtype);
        kb[i] = qn_load_bits(qn_kt_at(&a.k, d, kh, 0, b), a.k.dtype);
    }
#pragma unroll
    for (int r = 0; r < ROWS; r++) vb[r] = qn_load_bits(qn_kt_at(&a.v, n0 + r, h, 0, b), a.v.dtype);
    float4 s[ROWS][PER];
#pragma unroll
    for (int r = 0; r < ROWS; r++)
#pragma unroll
        for (int p = 0; p < PER; p++)
            s[r][p] = *(const float4 *)qn_kt_at(&a.state_in, 128 * p + 4 * lane, n0 + r, h, b);
    const float decay = expf(qn_load_f32(qn_kt_at(&a.g, h, 0, b, 0), a.g.dtype));
    const float beta = qn_load_f32(qn_kt_at(&a.beta, h, 0, b, 0), a.beta.dtype);

    float qv[4 * PER], kv[4 * PER], qq = 0.0f, kk = 0.0f, qk = 0.0f;
#pragma unroll
    for (int i = 0; i < 4 * PER; i++) {
        qv[i] = qn_bits_to_f32(qb[i], a.q.dtype);
        kv[i] = qn_bits_to_f32(kb[i], a.k.dtype);
        qq += qv[i] * qv[i];
        kk += kv[i] * kv[i];
        qk += qv[i] * kv[i];
    }
    /* S k and S q of the old state for every row; with them the new row is
     * decay S + u k^T, u = beta (v - decay S k), and o = decay S q + u k.q
     * (q and k scaled by their norms afterwards). */
    float sk[ROWS], sq[ROWS];
#pragma unroll
    for (int r = 0; r < ROWS; r++) {
        sk[r] = sq[r] = 0.0f;
#pragma unroll
        for (int p = 0; p < PER; p++) {
            const float4 x = s[r][p];
            const float *kp = kv + 4 * p, *qp = qv + 4 * p;
            sk[r] += x.x * kp[0] + x.y * kp[1] + x.z * kp[2] + x.w * kp[3];
            sq[r] += x.x * qp[0] + x.y * qp[1] + x.z * qp[2] + x.w * qp[3];
        }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        qq += __shfl_xor_sync(FULL_MASK, qq, o);
        kk += __shfl_xor_sync(FULL_MASK, kk, o);
        qk += __shfl_xor_sync(FULL_MASK, qk, o);
#pragma unroll
        for (int r = 0; r < ROWS; r++) {
            sk[r] += __shfl_xor_sync(FULL_MASK, sk[r], o);
            sq[r] += __shfl_xor_sync(FULL_MASK, sq[r], o);
        }
    }
    const float qs = a.scale / sqrtf(qq + QN_GDN_L2_EPS), ks = 1.0f / sqrtf(kk + QN_GDN_L2_EPS);
    const float kq = qk * qs * ks;
    float o_mine = 0.0f;
#pragma unroll
    for (int r = 0; r < ROWS; r++) {
        const float u = beta * (qn_bits_to_f32(vb[r], a.v.dtype) - decay * ks * sk[r]);
        const float uk = u * ks;
#pragma unroll
        for (int p = 0; p < PER; p++) {
            float4 x = s[r][p];
            x.x = decay * x.x + uk * kv[4 * p + 0];
            x.y = decay * x.y + uk * kv[4 * p + 1];
            x.z = decay * x.z + uk * kv[4 * p + 2];
            x.w = decay * x.w + uk * kv[4 * p + 3];
            s[r][p] = x;
        }
        if (lane == r) o_mine = decay * qs * sq[r] + u * kq;
    }
#pragma unroll
    for (int r = 0; r < ROWS; r++)
#pragma unroll
        for (int p = 0; p < PER; p++) *(float4 *)qn_kt_at(&a.state_out, 128 * p + 4 * lane, n0 + r, h, b) = s[r][p];
    if (lane < ROWS) qn_store_f32(qn_kt_at(&a.out, n0 + lane, h, 0, b), a.out.dtype, o_mine);
}

/* ---- chunked form, kernel 1: the chunk's A, B, Qe and PU */

/* Shared memory: K [64][DK + 4], Q then Z [64][DK + 4], V [64][DV + 8], TP
 * [64][68] (T strictly below the diagonal, P transposed above it: T's
 * diagonal is 1, P's is kept in pd), and the per-token vectors G, beta,
 * exp(G), beta exp(G), exp(G_63 - G), pd. Row pads keep the fragment reads
 * mostly free of bank conflicts and rows 16-byte aligned. */
constexpr int PREP_LDK = DK + 4, PREP_LDV = DV + 8, PREP_LDT = CH + 4, PREP_NW = QN_GDN_PREP_THREADS / 32;
static_assert(4 * (CH * (2 * PREP_LDK + PREP_LDV + PREP_LDT) + 6 * CH) == QN_GDN_PREP_SMEM(DK, DV), "prep smem");
static_assert(QN_GDN_PREP_SMEM(DK, DV) <= 227 * 1024, "prep shared memory exceeds a block's limit");

/* The b operands held in accumulator tiles acc[j], acc[j + 1] (n tiles 2p
 * and 2p + 1 of row tile mt, whose rows are the reader's n index) as the
 * units (2 mt, p) and (2 mt + 1, p) of base [..][n_p], tf32-rounded: the A
 * and QE layouts. */
__device__ __forceinline__ void store_b_pair(float *base, int n_p, int mt, int p, const float *c0, const float *c1) {
    auto r = [](float x) { return __uint_as_float(tf32(x)); };
    *(float4 *)unit(base, 2 * mt * n_p + p) = make_float4(r(c0[0]), r(c0[1]), r(c1[0]), r(c1[1]));
    *(float4 *)unit(base, (2 * mt + 1) * n_p + p) = make_float4(r(c0[2]), r(c0[3]), r(c1[2]), r(c1[3]));
}

/* Each phase below splits its output into 16 x 32 blocks (a row tile, 4 n
 * tiles), spread over the 16 warps. */
extern "C" __global__ void __launch_bounds__(QN_GDN_PREP_THREADS) gdn_prep(qn_gdn_args a) {
    constexpr int LDK = PREP_LDK, LDV = PREP_LDV, LDT = PREP_LDT, NW = PREP_NW, KP = DK / 16;
    float *Ks = sm, *Qs = Ks + CH * LDK, *Vs = Qs + CH * LDK, *TP = Vs + CH * LDV;
    float *gG = TP + CH * LDT, *gB = gG + CH, *eG = gB + CH, *bG = eG + CH, *kD = bG + CH, *pD = kD + CH;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const long long h = blockIdx.y, b = blockIdx.z, hv = a.v.ne[1], n_tok = a.q.ne[2];
    const long long kh = h / (hv / a.q.ne[1]), t0 = (long long)blockIdx.x * CH;
    const long long nch = hv * a.v.ne[3] * a.n_chunks, ch = (b * hv + h) * a.n_chunks + blockIdx.x;
    float *ws = (float *)a.ws;
    float *wsA = ws + qn_gdn_ws_offset(QN_GDN_WS_A, nch, DK, DV) + ch * DK * DK;
    float *wsB = ws + qn_gdn_ws_offset(QN_GDN_WS_B, nch, DK, DV) + ch * DV * DK;
    float *wsQ = ws + qn_gdn_ws_offset(QN_GDN_WS_QE, nch, DK, DV) + ch * CH * DK;
    float *wsP = ws + qn_gdn_ws_offset(QN_GDN_WS_PU, nch, DK, DV) + ch * CH * DV;

    if (tid < CH) {
        const bool in = t0 + tid < n_tok;
        gG[tid] = in ? qn_load_f32(qn_kt_at(&a.g, h, t0 + tid, b, 0), a.g.dtype) : 0.0f;
        gB[tid] = in ? qn_load_f32(qn_kt_at(&a.beta, h, t0 + tid, b, 0), a.beta.dtype) : 0.0f;
    }
    load_rows<DK>(Ks, LDK, a.k, kh, b, t0, true, 1.0f);
    load_rows<DK>(Qs, LDK, a.q, kh, b, t0, true, a.scale);
    load_rows<DV>(Vs, LDV, a.v, h, b, t0, false, 1.0f);
    __syncthreads();
    if (warp == 0) { /* inclusive prefix sum of g: two halves of 32, then joined */
        float lo = gG[lane], hi = gG[lane + 32];
        for (int o = 1; o < 32; o <<= 1) {
            const float x = __shfl_up_sync(FULL_MASK, lo, o), y = __shfl_up_sync(FULL_MASK, hi, o);
            if (lane >= o) {
                lo += x;
                hi += y;
            }
        }
        hi += __shfl_sync(FULL_MASK, lo, 31);
        const float last = __shfl_sync(FULL_MASK, hi, 31);
        gG[lane] = lo;
        gG[lane + 32] = hi;
        eG[lane] = __expf(lo);
        eG[lane + 32] = __expf(hi);
        bG[lane] = gB[lane] * __expf(lo);
        bG[lane + 32] = gB[lane + 32] * __expf(hi);
        kD[lane] = __expf(last - lo);
        kD[lane + 32] = __expf(last - hi);
    }
    __syncthreads();

    /* Element views of TP. */
    auto T = [&](int i, int j) { return i > j ? TP[i * LDT + j] : i == j ? 1.0f : 0.0f; };
    auto P = [&](int i, int j) { return j < i ? TP[j * LDT + i] : i == j ? pD[i] : 0.0f; };
    auto put_P = [&](int i, int j, float x) {
        if (j < i) TP[j * LDT + i] = x;
        else if (j == i) pD[i] = x;
    };

    /* L (blocks 0-7) and P (8-15): K K^T and Q K^T, masked and decayed */
    for (int it = warp; it < 16; it += NW) {
        const int m0 = 16 * ((it & 7) >> 1), n0 = 32 * (it & 1);
        const float *X = it < 8 ? Ks : Qs;
        float acc[1][4][4] = {};
        mma_tiles(acc, m0, n0, DK, [&](int m, int k) { return X[m * LDK + k]; },
                  [&](int k, int n) { return Ks[n * LDK + k]; });
        if (it < 8)
            for_acc(acc, m0, n0, [&](int i, int j, float x) {
                if (i > j) TP[i * LDT + j] = gB[i] * __expf(gG[i] - gG[j]) * x;
            });
        else
            for_acc(acc, m0, n0, [&](int i, int j, float x) {
                if (j <= i) put_P(i, j, __expf(gG[i] - gG[j]) * x);
            });
    }
    __syncthreads();

    /* T = (I + L)^-1. The diagonal 16 x 16 blocks: warp d < 4, a column per
     * lane < 16, forward substitution (rows of L read as broadcasts). */
    if (warp < 4 && lane < 16) {
        const int o = 16 * warp;
        float x[16];
#pragma unroll
        for (int i = 0; i < 16; i++) {
            float s0 = i == lane ? 1.0f : 0.0f, s1 = 0.0f;
#pragma unroll
            for (int l = 0; l < i; l++) {
                if (l & 1) s1 -= TP[(o + i) * LDT + o + l] * x[l];
                else s0 -= TP[(o + i) * LDT + o + l] * x[l];
            }
            x[i] = s0 + s1;
        }
        __syncwarp(0xffffu);
#pragma unroll
        for (int i = 0; i < 16; i++)
            if (i > lane) TP[(o + i) * LDT + o + lane] = x[i];
    }
    __syncthreads();
    /* 32 x 32 blocks: warp 0 rows 16-31 x columns 0-15, warp 1 rows 48-63 x
     * 32-47: C = -T_BB (L_C T_AA), each product into C's place. */
    if (warp < 2) {
        const int r = 16 + 32 * warp, c = r - 16;
        float y[1][2][4] = {}, z[1][2][4] = {};
        mma_tiles(y, 0, 0, 16, [&](int m, int k) { return TP[(r + m) * LDT + c + k]; },
                  [&](int k, int n) { return T(c + k, c + n); });
        __syncwarp();
        for_acc(y, 0, 0, [&](int i, int j, float v) { TP[(r + i) * LDT + c + j] = v; });
        __syncwarp();
        mma_tiles(z, 0, 0, 16, [&](int m, int k) { return T(r + m, r + k); },
                  [&](int k, int n) { return TP[(r + k) * LDT + c + n]; });
        __syncwarp();
        for_acc(z, 0, 0, [&](int i, int j, float v) { TP[(r + i) * LDT + c + j] = -v; });
    }
    __syncthreads();
    { /* the 64 x 64 level: rows 32-63 x columns 0-31, warp w < 4 a 16 x 16 block */
        const int m0 = 16 * (warp >> 1), n0 = 16 * (warp & 1);
        float y[1][2][4] = {}, z[1][2][4] = {};
        if (warp < 4)
            mma_tiles(y, m0, n0, 32, [&](int m, int k) { return TP[(32 + m) * LDT + k]; },
                      [&](int k, int n) { return T(k, n); });
        __syncthreads();
        if (warp < 4) for_acc(y, m0, n0, [&](int i, int j, float v) { TP[(32 + i) * LDT + j] = v; });
        __syncthreads();
        if (warp < 4)
            mma_tiles(z, m0, n0, 32, [&](int m, int k) { return T(32 + m, 32 + k); },
                      [&](int k, int n) { return TP[(32 + k) * LDT + n]; });
        __syncthreads();
        if (warp < 4) for_acc(z, m0, n0, [&](int i, int j, float v) { TP[(32 + i) * LDT + j] = -v; });
    }
    __syncthreads();

    { /* P T over P (lower triangular too): warp w < 8 the block (w / 2, w % 2) */
        const int m0 = 16 * (warp >> 1), n0 = 32 * (warp & 1);
        float acc[1][4][4] = {};
        if (warp < 8) mma_tiles(acc, m0, n0, CH, P, T);
        __syncthreads();
        if (warp < 8) for_acc(acc, m0, n0, [&](int i, int j, float x) { put_P(i, j, x); });
    }
    __syncthreads();

    /* Qe = diag(exp(G)) Q - (P T) X (rows: tokens) and PU^T = Y^T (P T)^T
     * (rows: value columns), X = diag(beta exp(G)) K, Y = diag(beta) V */
    for (int it = warp; it < 4 * (DK / 32) + (DV / 16) * 2; it += NW) {
        float acc[1][4][4];
        if (it < 4 * (DK / 32)) {
            const int mt = it / (DK / 32), n0 = 32 * (it % (DK / 32));
            for_acc(acc, 16 * mt, n0, [&](int i, int j, float &x) { x = eG[i] * Qs[i * LDK + j]; });
            mma_tiles(acc, 16 * mt, n0, CH, [&](int m, int k) { return -P(m, k); },
                      [&](int k, int n) { return bG[k] * Ks[k * LDK + n]; });
            store_b_pair(wsQ, KP, mt, n0 / 16, acc[0][0], acc[0][1]);
            store_b_pair(wsQ, KP, mt, n0 / 16 + 1, acc[0][2], acc[0][3]);
        } else {
            const int mt = (it - 4 * (DK / 32)) / 2, n0 = 32 * (it % 2);
            for_acc(acc, 0, 0, [&](int, int, float &x) { x = 0.0f; });
            mma_tiles(acc, 16 * mt, n0, CH, [&](int m, int k) { return gB[k] * Vs[k * LDV + m]; },
                      [&](int k, int n) { return P(n, k); });
#pragma unroll
            for (int j = 0; j < 4; j++)
                *(float4 *)unit(wsP, mt * 8 + n0 / 8 + j) = make_float4(acc[0][j][0], acc[0][j][1], acc[0][j][2], acc[0][j][3]);
        }
    }
    __syncthreads();

    /* Z = T^T KT over Q, KT = diag(exp(G_63 - G)) K (then KT^T W = Z^T X and U^T KT = Y^T Z) */
    for (int it = warp; it < 4 * (DK / 32); it += NW) {
        const int m0 = 16 * (it / (DK / 32)), n0 = 32 * (it % (DK / 32));
        float acc[1][4][4] = {};
        mma_tiles(acc, m0, n0, CH, [&](int m, int k) { return T(k, m); },
                  [&](int k, int n) { return kD[k] * Ks[k * LDK + n]; });
        for_acc(acc, m0, n0, [&](int i, int j, float x) { Qs[i * LDK + j] = x; });
    }
    __syncthreads();

    /* A^T = exp(G_63) I - Z^T X (row tiles of d') and B = Y^T Z (row tiles of
     * value columns), n over d */
    for (int it = warp; it < (DK / 16 + DV / 16) * (DK / 32); it += NW) {
        const int r = it / (DK / 32), n0 = 32 * (it % (DK / 32));
        float acc[1][4][4];
        if (r < DK / 16) {
            for_acc(acc, 16 * r, n0, [&](int i, int j, float &x) { x = i == j ? eG[CH - 1] : 0.0f; });
            mma_tiles(acc, 16 * r, n0, CH, [&](int m, int k) { return -Qs[k * LDK + m]; },
                      [&](int k, int n) { return bG[k] * Ks[k * LDK + n]; });
            store_b_pair(wsA, KP, r, n0 / 16, acc[0][0], acc[0][1]);
            store_b_pair(wsA, KP, r, n0 / 16 + 1, acc[0][2], acc[0][3]);
        } else {
            const int m0 = 16 * (r - DK / 16);
            for_acc(acc, 0, 0, [&](int, int, float &x) { x = 0.0f; });
            mma_tiles(acc, m0, n0, CH, [&](int m, int k) { return gB[k] * Vs[k * LDV + m]; },
                      [&](int k, int n) { return Qs[k * LDK + n]; });
#pragma unroll
            for (int j = 0; j < 4; j++)
                *(float4 *)unit(wsB, (r - DK / 16) * (DK / 8) + n0 / 8 + j) =
                    make_float4(acc[0][j][0], acc[0][j][1], acc[0][j][2], acc[0][j][3]);
        }
    }
}

/* ---- chunked form, kernel 2: the state through the chunks, and the outputs */

/* Shared memory: per warp a ring of QN_GDN_STATE_RING(DK) groups of 4 units
 * (2 KiB), then the block's rows of S as a operands, [MT][DK / 8] units,
 * twice (even and odd chunks: one barrier a chunk suffices). Per chunk a
 * warp's stream of groups is: the MT groups of B (row tile m; the warp's 4
 * n tiles), the NPU groups of PU^T (row tiles 2j, 2j + 1; the warp's token
 * tiles 2 warp, 2 warp + 1), then for each q < DK / 32 the A groups of k
 * pairs 2q and 2q + 1 (the warp's 4 n tiles) and the QE group of k pairs 2q,
 * 2q + 1 (the warp's 2 token tiles). */
template <int MT>
__device__ void gdn_state(const qn_gdn_args &a) {
    constexpr int KT = DK / 8, KP = DK / 16, NPU = MT > 1 ? MT / 2 : 1, GPC = MT + NPU + KP + KP / 2;
    constexpr int RG = QN_GDN_STATE_RING(DK);
    static_assert(DK / 32 * RG * 2048 + 2 * MT * KT * 512 == QN_GDN_STATE_SMEM(DK, MT), "state smem");
    static_assert(QN_GDN_STATE_SMEM(DK, MT) <= 227 * 1024, "state shared memory exceeds a block's limit");
    static_assert((RG & (RG - 1)) == 0, "the ring's size is a power of two");
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, tile0 = blockIdx.x * MT;
    const long long h = blockIdx.y, b = blockIdx.z, hv = a.v.ne[1], n_tok = a.q.ne[2];
    const int nc = a.n_chunks;
    const long long nch = hv * a.v.ne[3] * nc, ch0 = (b * hv + h) * nc;
    const float *ws = (const float *)a.ws;
    const float *wsA = ws + qn_gdn_ws_offset(QN_GDN_WS_A, nch, DK, DV) + ch0 * DK * DK;
    const float *wsB = ws + qn_gdn_ws_offset(QN_GDN_WS_B, nch, DK, DV) + ch0 * DV * DK;
    const float *wsQ = ws + qn_gdn_ws_offset(QN_GDN_WS_QE, nch, DK, DV) + ch0 * CH * DK;
    const float *wsP = ws + qn_gdn_ws_offset(QN_GDN_WS_PU, nch, DK, DV) + ch0 * CH * DV;
    float *ring = sm + warp * RG * 512, *ex = sm + DK / 32 * RG * 512;

    /* The next group to issue, (chunk ic, group ir of the chunk), into ring
     * slot is. A commit is made even past the end, which keeps the count of
     * groups in flight uniform. */
    int ic = 0, ir = 0, is = 0;
    auto issue = [&]() {
        if (ic < nc) {
            const float *src[4];
            int n_units = 4;
            if (ir < MT) {
                for (int n = 0; n < 4; n++) src[n] = unit(wsB + ic * (long long)(DV * DK), (tile0 + ir) * KT + 4 * warp + n);
            } else if (ir < MT + NPU) {
                const int j = ir - MT;
                n_units = MT > 1 ? 4 : 2;
                for (int n = 0; n < 4; n++)
                    src[n] = unit(wsP + ic * (long long)(DV * CH), (tile0 + 2 * j + (n >> 1)) * 8 + 2 * warp + (n & 1));
            } else {
                const int r = ir - MT - NPU, q = r / 3, k = r - 3 * q;
                for (int n = 0; n < 4; n++)
                    src[n] = k < 2 ? unit(wsA + ic * (long long)(DK * DK), (4 * warp + n) * KP + 2 * q + k)
                                   : unit(wsQ + ic * (long long)(CH * DK), (2 * warp + (n & 1)) * KP + 2 * q + (n >> 1));
            }
            float *dst = ring + is * 512 + 4 * lane;
            for (int n = 0; n < n_units; n++) cp16(dst + 128 * n, src[n]);
        }
        cp_commit();
        is = (is + 1) & (RG - 1);
        if (++ir == GPC) {
            ir = 0;
            ic++;
        }
    };
    /* The next group to use (this lane's 4 float4s, 128 floats apart). The
     * copy issued first refills the previous group's slot, whose values are
     * in registers by now, read by loads that complete long before a copy's
     * data comes back from global memory. */
    int us = 0;
    auto next = [&]() {
        issue();
        cp_wait<RG - 1>();
        const float *g = ring + us * 512 + 4 * lane;
        us = (us + 1) & (RG - 1);
        return g;
    };
    for (int i = 0; i < RG - 1; i++) issue();

    /* S in the accumulator tiles: rows 16 (tile0 + m) + .., columns 32 warp + 8 n + .. */
    float acc[MT][4][4];
    for_acc(acc, 16 * tile0, 32 * warp, [&](int r, int d, float &x) {
        x = *(const float *)qn_kt_at(&a.state_in, d, r, h, b);
    });
    for (int c = 0; c < nc; c++) {
        float *exc = ex + (c & 1) * MT * KT * 128;
#pragma unroll
        for (int m = 0; m < MT; m++)
#pragma unroll
            for (int n = 0; n < 4; n++) {
                const float *x = acc[m][n];
                *(uint4 *)unit(exc, m * KT + 4 * warp + n) = make_uint4(tf32(x[0]), tf32(x[2]), tf32(x[1]), tf32(x[3]));
            }
        __syncthreads(); /* S's rows whole in exc */

        /* S' = S A + B; O^T = S Qe^T + PU^T (value rows; the warp's 16 tokens) */
        float o[MT][2][4];
#pragma unroll
        for (int m = 0; m < MT; m++) {
            const float *g = next();
#pragma unroll
            for (int n = 0; n < 4; n++) {
                const float4 v = *(const float4 *)(g + 128 * n);
                acc[m][n][0] = v.x;
                acc[m][n][1] = v.y;
                acc[m][n][2] = v.z;
                acc[m][n][3] = v.w;
            }
        }
#pragma unroll
        for (int j = 0; j < NPU; j++) {
            const float *g = next();
#pragma unroll
            for (int n = 0; n < (MT > 1 ? 4 : 2); n++) {
                const float4 v = *(const float4 *)(g + 128 * n);
                float *x = o[2 * j + (n >> 1)][n & 1];
                x[0] = v.x;
                x[1] = v.y;
                x[2] = v.z;
                x[3] = v.w;
            }
        }
#pragma unroll 1
        for (int q = 0; q < KP / 2; q++) {
            uint4 bA[2][4], bQ[4];
#pragma unroll
            for (int k = 0; k < 2; k++) {
                const float *g = next();
#pragma unroll
                for (int n = 0; n < 4; n++) bA[k][n] = *(const uint4 *)(g + 128 * n);
            }
            {
                const float *g = next();
#pragma unroll
                for (int n = 0; n < 4; n++) bQ[n] = *(const uint4 *)(g + 128 * n);
            }
#pragma unroll
            for (int kt = 0; kt < 4; kt++) {
                unsigned af[MT][4];
#pragma unroll
                for (int m = 0; m < MT; m++) {
                    const uint4 v = *(const uint4 *)unit(exc, m * KT + 4 * q + kt);
                    af[m][0] = v.x;
                    af[m][1] = v.y;
                    af[m][2] = v.z;
                    af[m][3] = v.w;
                }
#pragma unroll
                for (int n = 0; n < 4; n++) {
                    const uint4 v = bA[kt >> 1][n];
                    const unsigned bf[2] = {kt & 1 ? v.z : v.x, kt & 1 ? v.w : v.y};
#pragma unroll
                    for (int m = 0; m < MT; m++) mma_tf32(acc[m][n], af[m], bf);
                }
#pragma unroll
                for (int t = 0; t < 2; t++) {
                    const uint4 v = bQ[t + 2 * (kt >> 1)];
                    const unsigned bf[2] = {kt & 1 ? v.z : v.x, kt & 1 ? v.w : v.y};
#pragma unroll
                    for (int m = 0; m < MT; m++) mma_tf32(o[m][t], af[m], bf);
                }
            }
        }
        const long long tc = (long long)c * CH + 16 * warp;
        for_acc(o, 16 * tile0, 0, [&](int r, int t, float x) {
            if (tc + t < n_tok) qn_store_f32(qn_kt_at(&a.out, r, h, tc + t, b), a.out.dtype, x);
        });
    }
    for_acc(acc, 16 * tile0, 32 * warp,
            [&](int r, int d, float x) { *(float *)qn_kt_at(&a.state_out, d, r, h, b) = x; });
}

extern "C" __global__ void __launch_bounds__(DK) gdn_state_1(qn_gdn_args a) { gdn_state<1>(a); }
extern "C" __global__ void __launch_bounds__(DK) gdn_state_2(qn_gdn_args a) { gdn_state<2>(a); }
#if DK == 128
extern "C" __global__ void __launch_bounds__(DK) gdn_state_4(qn_gdn_args a) { gdn_state<4>(a); }
#endif

#else /* the helpers */

/* 64 tokens of one channel per thread, the W - 1 previous inputs in
 * registers (arrays of 8 indexed by unrolled loops, W <= 8). Only the
 * blocks of the first 64 tokens read the carried state and they alone write
 * the new one, each channel by one thread after its reads, so state_out may
 * be state_in. */
extern "C" __global__ void __launch_bounds__(128) gdn_conv1d(qn_gdn_conv_args a) {
    const long long c = blockIdx.y * 128LL + threadIdx.x, b = blockIdx.z, t0 = blockIdx.x * 64LL;
    const long long n_ch = a.x.ne[0], n_tok = a.x.ne[1];
    const int w = (int)a.weight.ne[0];
    if (c >= n_ch) return;
    /* win[j], j < w - 1: input t - (w - 1) + j of the token t about to run */
    float wt[8], win[8];
#pragma unroll
    for (int j = 0; j < 8; j++) {
        wt[j] = j < w ? qn_load_f32(qn_kt_at(&a.weight, j, c, 0, 0), a.weight.dtype) : 0.0f;
        const long long u = t0 - (w - 1) + j;
        win[j] = j >= w - 1 ? 0.0f
                 : u < 0    ? qn_load_f32(qn_kt_at(&a.state_in, c, j, b, 0), a.state_in.dtype)
                            : qn_load_f32(qn_kt_at(&a.x, c, u, b, 0), a.x.dtype);
    }
    const long long t1 = t0 + 64 < n_tok ? t0 + 64 : n_tok;
    for (long long t = t0; t < t1; t++) {
        const float xt = qn_load_f32(qn_kt_at(&a.x, c, t, b, 0), a.x.dtype);
        float acc = 0.0f;
#pragma unroll
        for (int j = 0; j < 8; j++)
            if (j < w - 1) acc += wt[j] * win[j];
#pragma unroll
        for (int j = 0; j < 8; j++)
            if (j == w - 1) acc += wt[j] * xt;
        qn_store_f32(qn_kt_at(&a.out, c, t, b, 0), a.out.dtype, silu_f(acc));
#pragma unroll
        for (int j = 0; j < 7; j++) {
            if (j < w - 2) win[j] = win[j + 1];
            else if (j == w - 2) win[j] = xt;
        }
    }
    /* The new state: the last w - 1 inputs. With T <= 64 this block ran the
     * last token and its window holds them (carried ones included); else
     * they all lie in x. */
    if (t0 == 0) {
#pragma unroll
        for (int j = 0; j < 7; j++) {
            if (j >= w - 1) continue;
            const float val =
                n_tok <= 64 ? win[j] : qn_load_f32(qn_kt_at(&a.x, c, n_tok - (w - 1) + j, b, 0), a.x.dtype);
            qn_store_f32(qn_kt_at(&a.state_out, c, j, b, 0), a.state_out.dtype, val);
        }
    }
}

extern "C" __global__ void gdn_gates(qn_gdn_gates_args a) {
    QN_FOR_EACH_ROW(a.a) {
        for (long long h = threadIdx.x; h < a.a.ne[0]; h += blockDim.x) {
            const float x = qn_load_f32(qn_kt_at(&a.a, h, i1, i2, i3), a.a.dtype) +
                            qn_load_f32(qn_kt_at(&a.dt_bias, h, 0, 0, 0), a.dt_bias.dtype);
            const float softplus = x > 20.0f ? x : log1pf(expf(x));
            const float rate = expf(qn_load_f32(qn_kt_at(&a.a_log, h, 0, 0, 0), a.a_log.dtype));
            const float bv = qn_load_f32(qn_kt_at(&a.b, h, i1, i2, i3), a.b.dtype);
            qn_store_f32(qn_kt_at(&a.g, h, i1, i2, i3), a.g.dtype, -rate * softplus);
            qn_store_f32(qn_kt_at(&a.beta, h, i1, i2, i3), a.beta.dtype, 1.0f / (1.0f + expf(-bv)));
        }
    }
}

/* A warp per row, 4 rows per block. */
extern "C" __global__ void __launch_bounds__(128) gdn_gated_norm(qn_gdn_norm_args a) {
    const long long r = blockIdx.x * 4LL + (threadIdx.x >> 5), n = a.x.ne[0];
    const int lane = threadIdx.x & 31;
    if (r >= qn_kt_rows(&a.x)) return;
    long long i1, i2, i3;
    qn_kt_row(&a.x, r, &i1, &i2, &i3);
    float ss = 0.0f;
    for (long long i = lane; i < n; i += 32) {
        const float x = qn_load_f32(qn_kt_at(&a.x, i, i1, i2, i3), a.x.dtype);
        ss += x * x;
    }
    const float inv = 1.0f / sqrtf(warp_sum(ss) / (float)n + a.eps);
    for (long long i = lane; i < n; i += 32) {
        const float x = qn_load_f32(qn_kt_at(&a.x, i, i1, i2, i3), a.x.dtype);
        const float z = qn_load_f32(qn_kt_at(&a.z, i, i1, i2, i3), a.z.dtype);
        const float w = qn_load_f32(qn_kt_at(&a.weight, i, 0, 0, 0), a.weight.dtype);
        qn_store_f32(qn_kt_at(&a.out, i, i1, i2, i3), a.out.dtype, x * inv * w * silu_f(z));
    }
}

#endif
