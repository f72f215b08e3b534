/* The gated delta net: decode step, chunked prefill, and the layer helpers.
 *
 * Compiled with -DQN_GDN_DK=.. -DQN_GDN_DV=.. (128 or 256 each) this file holds the
 * recurrence kernels for that head size; without them, the helpers
 * (convolution, gates, gated norm), which have no head size.
 *
 * Per value head, with q and k L2-normalised (q also times `scale`):
 *   S_t = exp(g_t) S_{t-1};  S_t += beta_t (v_t - S_t k_t) k_t^T;  o_t = S_t q_t
 * Tensors are as quanta.h describes them (q, k [d_k, Hk, T, B]; v, out
 * [d_v, Hv, T, B]; g, beta [Hv, T, B]; state [d_k, d_v, Hv, B] f32).
 *
 * Decode (T = 1), gdn_decode: grid (d_v / 16, Hv, B), 4 warps; a warp owns
 * 4 rows of S (a row is d_k contiguous floats, a float4 or two per lane)
 * and needs nothing from the other warps, because the rows of S evolve
 * independently once q and k are normalised (each warp normalises them
 * itself). Every load is issued before the first store (a store may alias
 * a later load as far as the compiler knows). Bytes: the state read and written once (2 * 4 d_k d_v Hv B)
 * plus q, k, v; 32 heads of 128 x 128 move 4 MiB.
 *
 * Chunked form (T > 1), three kernels over 64-token chunks. In a chunk with
 * cumulative log decay G_i and start state M = S^T (d_k x d_v):
 *   A  = strictly lower part of beta_i exp(G_i - G_j) k_i.k_j      (64 x 64)
 *   T  = (I + A)^-1
 *   W  = T diag(beta exp(G)) K,   U = T diag(beta) V
 *   D  = U - W M                  (the corrected values of the chunk)
 *   O  = diag(exp(G)) Q M + (Q K^T masked to j <= i, times exp(G_i - G_j)) D
 *   M' = exp(G_63) M + (exp(G_63 - G_j) k_j)^T D
 * which is the recurrence unrolled over the chunk (the decays enter only as
 * exp of differences that are <= 0, so nothing overflows). Tokens past T
 * are zero (k, v, beta and g), which leaves M' and every other row intact.
 *   gdn_prep       grid (chunks, Hv, B), 8 warps: normalises k, builds A
 *                  (TF32 mma), inverts I + A by forward substitution (a
 *                  thread per column), then W and U (mma) into the
 *                  workspace with exp(G_63 - G_j) k_j and G. Reads k, v, g,
 *                  beta once; writes 4 (64 (2 d_k + d_v + 1)) bytes.
 *   gdn_state      grid (d_v / 16, Hv, B), 4 warps: the only sequential
 *                  part. A block carries 16 columns of M through all chunks
 *                  (columns of M evolve independently, so 4 heads of 128
 *                  still give 32 blocks): D = U - W M and M' by mma, the
 *                  next chunk's W, KT and U arriving by cp.async meanwhile
 *                  (double-buffered for d_k = 128). Writes each chunk's
 *                  start M and D to the workspace, the final state out.
 *                  Per chunk a block reads W and KT whole (2 * 4 * 64 d_k
 *                  bytes, from L2 after the head's first block) and its 16
 *                  columns of U; that read, not the mma, sets the pace.
 *   gdn_out        grid (chunks, Hv, B), 8 warps: O from q, k, G, M and D.
 *                  Reads q, k once and per chunk M (4 d_k d_v bytes) and D;
 *                  writes out once.
 * Products run on tensor cores in TF32 (10-bit mantissa, f32 range: values
 * and states need no scaling) with f32 accumulation; these kernels are
 * bound by latency, not by tensor throughput, so TF32's lower rate costs
 * nothing that matters.
 *
 * Helpers (no QN_GDN_DK):
 *   gdn_conv1d      grid (T / 64, C / 128, B): a thread per channel runs 64
 *                   tokens with its W - 1 previous inputs in registers.
 *   gdn_gates       row kernel over [Hv, T, B].
 *   gdn_gated_norm  a warp per row.
 * Every kernel opens with QN_GRID_WAIT, so each launches while the one
 * before it finishes (its launch latency hidden: a decode step is a chain
 * of such small kernels). */
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

/* ---- tensor-core helpers: mma.m16n8k8 in TF32.
 * Fragments, lane = 4 * gr + tg:
 *   a (16 x 8):  (gr, tg), (gr + 8, tg), (gr, tg + 4), (gr + 8, tg + 4)
 *   b (8 x 8):   (tg, gr), (tg + 4, gr)
 *   c (16 x 8):  (gr, 2 tg), (gr, 2 tg + 1), (gr + 8, 2 tg), (gr + 8, 2 tg + 1)
 * The loaders read f32 from shared or global memory and round to TF32. */

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

__device__ __forceinline__ int lane_gr() { return (threadIdx.x & 31) >> 2; }
__device__ __forceinline__ int lane_tg() { return threadIdx.x & 3; }

/* A(m, k) = x[m * ld + k] at block (m0, k0). */
__device__ __forceinline__ void frag_a(unsigned a[4], const float *x, int ld, int m0, int k0) {
    const float *p = x + (m0 + lane_gr()) * ld + k0 + lane_tg();
    a[0] = tf32(p[0]);
    a[1] = tf32(p[8 * ld]);
    a[2] = tf32(p[4]);
    a[3] = tf32(p[8 * ld + 4]);
}

/* A(m, k) = x[m * ld + k] * s[k]: a matrix times a diagonal on the right. */
__device__ __forceinline__ void frag_a_scaled(unsigned a[4], const float *x, int ld, int m0, int k0, const float *s) {
    const float *p = x + (m0 + lane_gr()) * ld + k0 + lane_tg();
    float s0 = s[k0 + lane_tg()], s4 = s[k0 + lane_tg() + 4];
    a[0] = tf32(p[0] * s0);
    a[1] = tf32(p[8 * ld] * s0);
    a[2] = tf32(p[4] * s4);
    a[3] = tf32(p[8 * ld + 4] * s4);
}

/* A(m, k) = x[k * ld + m]: a transposed operand. */
__device__ __forceinline__ void frag_at(unsigned a[4], const float *x, int ld, int m0, int k0) {
    const float *p = x + (k0 + lane_tg()) * ld + m0 + lane_gr();
    a[0] = tf32(p[0]);
    a[1] = tf32(p[8]);
    a[2] = tf32(p[4 * ld]);
    a[3] = tf32(p[4 * ld + 8]);
}

/* B(k, n) = x[k * ld + n] at block (k0, n0). */
__device__ __forceinline__ void frag_b(unsigned b[2], const float *x, int ld, int k0, int n0) {
    const float *p = x + (k0 + lane_tg()) * ld + n0 + lane_gr();
    b[0] = tf32(p[0]);
    b[1] = tf32(p[4 * ld]);
}

/* B(k, n) = x[n * ld + k]: a transposed operand (x x^T products). */
__device__ __forceinline__ void frag_bt(unsigned b[2], const float *x, int ld, int k0, int n0) {
    const float *p = x + (n0 + lane_gr()) * ld + k0 + lane_tg();
    b[0] = tf32(p[0]);
    b[1] = tf32(p[4]);
}

/* Row and column of accumulator element e of a 16 x 8 tile at (m0, n0). */
__device__ __forceinline__ int acc_row(int m0, int e) { return m0 + lane_gr() + 8 * (e >> 1); }
__device__ __forceinline__ int acc_col(int n0, int e) { return n0 + 2 * lane_tg() + (e & 1); }

/* dst[i][j] = f(i, j, (X Y^T)[i][j]) for the 64 x 64 product of a chunk's
 * rows X and Y (DK columns, row stride ld) on the tensor cores: warp w of 8
 * takes rows 16 (w % 4), columns 32 (w / 4). Builds A (X = Y = K) and P
 * (X = Q, Y = K). */
template <class F>
__device__ __forceinline__ void chunk_gram(const float *X, const float *Y, int ld, float *dst, int ldd, F f) {
    const int warp = threadIdx.x >> 5, m0 = 16 * (warp & 3), nb = 32 * (warp >> 2);
    float acc[4][4] = {};
    for (int k0 = 0; k0 < DK; k0 += 8) {
        unsigned af[4];
        frag_a(af, X, ld, m0, k0);
#pragma unroll
        for (int j = 0; j < 4; j++) {
            unsigned bf[2];
            frag_bt(bf, Y, ld, k0, nb + 8 * j);
            mma_tf32(acc[j], af, bf);
        }
    }
#pragma unroll
    for (int j = 0; j < 4; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int i = acc_row(m0, e), jj = acc_col(nb + 8 * j, e);
            dst[i * ldd + jj] = f(i, jj, acc[j][e]);
        }
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
 * `mul`. Warp w of 8 takes rows w, w + 8, ..., lanes along the row
 * (coalesced when the elements are contiguous); all its loads are issued
 * before the first is used (a row at a time would wait out one memory
 * latency per row). */
template <int D, int XT>
__device__ __noinline__ void load_rows_as(float *s, int ld, const char *base, long long nb_el, long long nb_row,
                                          int n_valid, bool normalise, float mul) {
    constexpr int NW = 8, R = CH / NW, E = D / 32;
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

/* The chunk's rows of x ([D, heads, T, B]) at `head`, sequence b, from
 * token t0, in x's dtype (one copy of the loads per dtype; the rest of the
 * kernels is shared). */
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
    QN_GRID_WAIT();
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

/* ---- chunked form, kernel 1: the chunk-local quantities */

/* Shared memory: K [64][DK + 4], V [64][DV + 8], A then T [64][68], G, beta
 * and beta exp(G) [64] each. Row pads keep the fragment loads mostly free
 * of bank conflicts and rows 16-byte aligned. */
constexpr int PREP_LDK = DK + 4, PREP_LDV = DV + 8, PREP_LDA = CH + 4;
static_assert(4 * CH * (PREP_LDK + PREP_LDV + PREP_LDA + 3) == QN_GDN_PREP_SMEM(DK, DV), "prep shared memory");

/* dst [CH rows, N] = T diag(scale) X for the chunk: T in As (CH x CH, row
 * stride lda), X in xs (CH x N, row stride ldx), on the tensor cores. Warp w
 * takes rows 16 (w % 4) (m0) and half w / 4 of the columns. Used for W
 * (scale beta exp(G), X = K) and U (scale beta, X = V). */
template <int N>
__device__ __forceinline__ void chunk_project(const float *As, int lda, const float *scale, const float *xs, int ldx,
                                              int m0, int warp, float *dst) {
    constexpr int NT = N / 16;
    const int nb = (warp >> 2) * (N / 2);
    float acc[NT][4] = {};
    for (int k0 = 0; k0 < CH; k0 += 8) {
        unsigned af[4];
        frag_a_scaled(af, As, lda, m0, k0, scale);
#pragma unroll
        for (int j = 0; j < NT; j++) {
            unsigned bf[2];
            frag_b(bf, xs, ldx, k0, nb + 8 * j);
            mma_tf32(acc[j], af, bf);
        }
    }
#pragma unroll
    for (int j = 0; j < NT; j++)
#pragma unroll
        for (int e = 0; e < 4; e += 2)
            *(float2 *)(dst + acc_row(m0, e) * N + acc_col(nb + 8 * j, e)) = make_float2(acc[j][e], acc[j][e + 1]);
}

/* Everything after the loads, for chunk `ch` of nch in the workspace ws. */
__device__ void prep_chunk(float *ws, long long nch, long long ch);

extern "C" __global__ void __launch_bounds__(256, 2) gdn_prep(qn_gdn_args a) {
    QN_GRID_WAIT();
    float *Ks = sm, *Vs = Ks + CH * PREP_LDK, *gs = Vs + CH * PREP_LDV + CH * PREP_LDA, *bs = gs + CH;
    const int c = blockIdx.x, tid = threadIdx.x;
    const long long h = blockIdx.y, b = blockIdx.z, hv = a.v.ne[1], n_tok = a.q.ne[2];
    const long long kh = h / (hv / a.q.ne[1]), t0 = (long long)c * CH;

    load_rows<DK>(Ks, PREP_LDK, a.k, kh, b, t0, true, 1.0f);
    load_rows<DV>(Vs, PREP_LDV, a.v, h, b, t0, false, 1.0f);
    if (tid < CH) {
        const bool in = t0 + tid < n_tok;
        gs[tid] = in ? qn_load_f32(qn_kt_at(&a.g, h, t0 + tid, b, 0), a.g.dtype) : 0.0f;
        bs[tid] = in ? qn_load_f32(qn_kt_at(&a.beta, h, t0 + tid, b, 0), a.beta.dtype) : 0.0f;
    }
    prep_chunk((float *)a.ws, hv * a.v.ne[3] * a.n_chunks, (b * hv + h) * a.n_chunks + c);
}

__device__ void prep_chunk(float *ws, long long nch, long long ch) {
    constexpr int LDK = PREP_LDK, LDV = PREP_LDV, LDA = PREP_LDA;
    float *Ks = sm, *Vs = Ks + CH * LDK, *As = Vs + CH * LDV, *gs = As + CH * LDA, *bs = gs + CH, *bgs = bs + CH;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;

    __syncthreads();
    if (warp == 0) { /* inclusive prefix sum of g: two halves of 32, then joined */
        float lo = gs[lane], hi = gs[lane + 32];
        for (int o = 1; o < 32; o <<= 1) {
            float x = __shfl_up_sync(FULL_MASK, lo, o), y = __shfl_up_sync(FULL_MASK, hi, o);
            if (lane >= o) {
                lo += x;
                hi += y;
            }
        }
        hi += __shfl_sync(FULL_MASK, lo, 31);
        gs[lane] = lo;
        gs[lane + 32] = hi;
        bgs[lane] = bs[lane] * expf(lo);
        bgs[lane + 32] = bs[lane + 32] * expf(hi);
    }
    __syncthreads();

    /* A */
    chunk_gram(Ks, Ks, LDK, As, LDA, [&](int i, int j, float x) { return i > j ? bs[i] * expf(gs[i] - gs[j]) * x : 0.0f; });
    __syncthreads();

    /* T = (I + A)^-1, a column per thread of the first two warps: column j
     * solves (I + A) x = e_j by forward substitution, x_i = [i == j] -
     * sum_{l<i} A_il x_l. A's row i is read as float4s (the same address in
     * every lane: a broadcast); the terms with l >= i multiply A's zeros, so
     * every thread runs the same unrolled code. Meanwhile the other warps
     * write exp(G_63 - G_j) k_j and G to the workspace. */
    float x[CH];
    if (tid < CH) {
#pragma unroll
        for (int i = 0; i < CH; i++) x[i] = i == tid ? 1.0f : 0.0f;
#pragma unroll
        for (int i = 1; i < CH; i++) {
            const float4 *row = (const float4 *)(As + i * LDA);
            float s0 = x[i], s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
#pragma unroll
            for (int l = 0; l < i; l += 4) {
                float4 r = row[l / 4];
                s0 -= r.x * x[l];
                s1 -= r.y * x[l + 1];
                s2 -= r.z * x[l + 2];
                s3 -= r.w * x[l + 3];
            }
            x[i] = (s0 + s1) + (s2 + s3);
        }
    } else {
        float *kt = ws + qn_gdn_ws_offset(QN_GDN_WS_KT, nch, DK, DV) + ch * CH * DK;
        const float g_last = gs[CH - 1];
        for (int idx = tid - CH; idx < CH * DK / 4; idx += blockDim.x - CH) {
            const int j = idx / (DK / 4), d = 4 * (idx % (DK / 4));
            const float f = expf(g_last - gs[j]);
            float4 v = *(const float4 *)(Ks + j * LDK + d);
            v.x *= f;
            v.y *= f;
            v.z *= f;
            v.w *= f;
            *(float4 *)(kt + j * DK + d) = v;
        }
        if (tid - CH < CH) ws[qn_gdn_ws_offset(QN_GDN_WS_G, nch, DK, DV) + ch * CH + tid - CH] = gs[tid - CH];
    }
    __syncthreads(); /* every read of A done before T overwrites it */
    if (tid < CH) {
#pragma unroll
        for (int i = 0; i < CH; i++) As[i * LDA + tid] = x[i];
    }
    __syncthreads();

    /* W = T diag(beta exp(G)) K and U = T diag(beta) V */
    const int m0 = 16 * (warp & 3);
    chunk_project<DK>(As, LDA, bgs, Ks, LDK, m0, warp, ws + qn_gdn_ws_offset(QN_GDN_WS_W, nch, DK, DV) + ch * CH * DK);
    chunk_project<DV>(As, LDA, bs, Vs, LDV, m0, warp, ws + qn_gdn_ws_offset(QN_GDN_WS_U, nch, DK, DV) + ch * CH * DV);
}

/* ---- chunked form, kernel 2: the state through the chunks */

/* Shared memory: QN_GDN_STATE_STAGES(DK) stages of {W [64][DK + 4], KT
 * [64][DK + 8], U [64][16], G [64]}, then M [DK][24] and D [64][24]. */
extern "C" __global__ void __launch_bounds__(128) gdn_state(qn_gdn_args a) {
    QN_GRID_WAIT();
    constexpr int DVT = 16, LDW = DK + 4, LDKT = DK + 8, LDU = DVT, LDM = DVT + 8;
    constexpr int NSTAGE = QN_GDN_STATE_STAGES(DK), STAGE = CH * (LDW + LDKT + LDU + 1);
    constexpr int MT = DK / 64; /* 16-row tiles of M per warp: a warp owns DK / 4 rows */
    static_assert(4 * (NSTAGE * STAGE + DK * LDM + CH * LDM) == QN_GDN_STATE_SMEM(DK), "state shared memory");
    float *Ms = sm + NSTAGE * STAGE, *Ds = Ms + DK * LDM;

    const int tid = threadIdx.x, warp = tid >> 5, n0 = blockIdx.x * DVT;
    const long long h = blockIdx.y, b = blockIdx.z, hv = a.v.ne[1], nc = a.n_chunks;
    const long long nch = hv * a.v.ne[3] * nc, ch0 = (b * hv + h) * nc;
    float *ws = (float *)a.ws;
    const float *wsW = ws + qn_gdn_ws_offset(QN_GDN_WS_W, nch, DK, DV);
    const float *wsKT = ws + qn_gdn_ws_offset(QN_GDN_WS_KT, nch, DK, DV);
    float *wsU = ws + qn_gdn_ws_offset(QN_GDN_WS_U, nch, DK, DV);
    const float *wsG = ws + qn_gdn_ws_offset(QN_GDN_WS_G, nch, DK, DV);
    float *wsM = ws + qn_gdn_ws_offset(QN_GDN_WS_M, nch, DK, DV);

    /* Chunk c's W, KT, U columns and G into stage st (16-byte copies). */
    auto issue = [&](long long c, int st) {
        float *Wst = sm + st * STAGE, *KTst = Wst + CH * LDW, *Ust = KTst + CH * LDKT, *Gst = Ust + CH * LDU;
        const long long ch = ch0 + c;
        for (int idx = tid; idx < CH * DK / 4; idx += 128) {
            const int j = idx / (DK / 4), d = 4 * (idx % (DK / 4));
            cp16(Wst + j * LDW + d, wsW + ch * CH * DK + j * DK + d);
            cp16(KTst + j * LDKT + d, wsKT + ch * CH * DK + j * DK + d);
        }
        for (int idx = tid; idx < CH * DVT / 4; idx += 128) {
            const int j = idx / (DVT / 4), d = 4 * (idx % (DVT / 4));
            cp16(Ust + j * LDU + d, wsU + ch * CH * DV + j * DV + n0 + d);
        }
        if (tid < CH / 4) cp16(Gst + 4 * tid, wsG + ch * CH + 4 * tid);
        cp_commit();
    };

    issue(0, 0);
    /* M = S^T: M[d][n] = S[n0 + n][d], read along d (coalesced). */
    for (int idx = tid; idx < DK * DVT; idx += 128) {
        const int n = idx / DK, d = idx % DK;
        Ms[d * LDM + n] = *(const float *)qn_kt_at(&a.state_in, d, n0 + n, h, b);
    }
    __syncthreads();
    float macc[MT][2][4];
    const int mr0 = warp * (DK / 4);
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int nt = 0; nt < 2; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) macc[mt][nt][e] = Ms[acc_row(mr0 + 16 * mt, e) * LDM + acc_col(8 * nt, e)];

    for (long long c = 0; c < nc; c++) {
        const int st = NSTAGE == 2 ? (int)(c & 1) : 0;
        if (NSTAGE == 1 && c > 0) issue(c, 0);
        if (NSTAGE == 2 && c + 1 < nc) {
            issue(c + 1, st ^ 1);
            cp_wait<1>();
        } else {
            cp_wait<0>();
        }
        __syncthreads(); /* chunk c's stage and M visible to all */
        const float *Wst = sm + st * STAGE, *KTst = Wst + CH * LDW, *Ust = KTst + CH * LDKT, *Gst = Ust + CH * LDU;
        const long long ch = ch0 + c;

        /* the chunk's start state, for gdn_out */
        for (int idx = tid; idx < DK * DVT / 4; idx += 128) {
            const int d = idx / (DVT / 4), n = 4 * (idx % (DVT / 4));
            *(float4 *)(wsM + ch * DK * DV + d * DV + n0 + n) = *(const float4 *)(Ms + d * LDM + n);
        }

        /* D = U - W M: warp w takes rows 16 w */
        {
            float wm[2][4] = {};
            for (int k0 = 0; k0 < DK; k0 += 8) {
                unsigned af[4];
                frag_a(af, Wst, LDW, 16 * warp, k0);
#pragma unroll
                for (int nt = 0; nt < 2; nt++) {
                    unsigned bf[2];
                    frag_b(bf, Ms, LDM, k0, 8 * nt);
                    mma_tf32(wm[nt], af, bf);
                }
            }
#pragma unroll
            for (int nt = 0; nt < 2; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int i = acc_row(16 * warp, e), n = acc_col(8 * nt, e);
                    Ds[i * LDM + n] = Ust[i * LDU + n] - wm[nt][e];
                }
        }
        __syncthreads(); /* D complete */

        /* D over U in the workspace, for gdn_out */
        for (int idx = tid; idx < CH * DVT / 4; idx += 128) {
            const int j = idx / (DVT / 4), n = 4 * (idx % (DVT / 4));
            *(float4 *)(wsU + ch * CH * DV + j * DV + n0 + n) = *(const float4 *)(Ds + j * LDM + n);
        }

        /* M = exp(G_63) M + KT^T D on this warp's rows */
        const float decay = expf(Gst[CH - 1]);
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int nt = 0; nt < 2; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) macc[mt][nt][e] *= decay;
        for (int k0 = 0; k0 < CH; k0 += 8) {
            unsigned bf[2][2];
#pragma unroll
            for (int nt = 0; nt < 2; nt++) frag_b(bf[nt], Ds, LDM, k0, 8 * nt);
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                unsigned af[4];
                frag_at(af, KTst, LDKT, mr0 + 16 * mt, k0);
#pragma unroll
                for (int nt = 0; nt < 2; nt++) mma_tf32(macc[mt][nt], af, bf[nt]);
            }
        }
        __syncthreads(); /* the stage, D and M read by all before they are rewritten */
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int nt = 0; nt < 2; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) Ms[acc_row(mr0 + 16 * mt, e) * LDM + acc_col(8 * nt, e)] = macc[mt][nt][e];
    }
    __syncthreads();
    for (int idx = tid; idx < DK * DVT; idx += 128) {
        const int n = idx / DK, d = idx % DK;
        *(float *)qn_kt_at(&a.state_out, d, n0 + n, h, b) = Ms[d * LDM + n];
    }
}

/* ---- chunked form, kernel 3: the outputs */

/* Shared memory: Q and K [64][DK + 4], P [64][68], G [64]. M and D are read
 * from the workspace (L1/L2) as mma operands. */
constexpr int OUT_LDQ = DK + 4, OUT_LDP = CH + 4;
static_assert(4 * CH * (2 * OUT_LDQ + OUT_LDP + 1) == QN_GDN_OUT_SMEM(DK), "out shared memory");

/* Everything after the loads of q and k: out is the output tensor, rows
 * t0 .. of head h, sequence b. */
__device__ void out_chunk(qn_kt out, const float *ws, long long nch, long long ch, long long h,
                                       long long b, long long t0, long long n_tok);

extern "C" __global__ void __launch_bounds__(256, 2) gdn_out(qn_gdn_args a) {
    QN_GRID_WAIT();
    float *Qs = sm, *Ks = Qs + CH * OUT_LDQ;
    const long long h = blockIdx.y, b = blockIdx.z, hv = a.v.ne[1], n_tok = a.q.ne[2];
    const long long kh = h / (hv / a.q.ne[1]), t0 = (long long)blockIdx.x * CH;
    load_rows<DK>(Qs, OUT_LDQ, a.q, kh, b, t0, true, a.scale);
    load_rows<DK>(Ks, OUT_LDQ, a.k, kh, b, t0, true, 1.0f);
    out_chunk(a.out, (const float *)a.ws, hv * a.v.ne[3] * a.n_chunks, (b * hv + h) * a.n_chunks + blockIdx.x, h, b,
              t0, n_tok);
}

__device__ void out_chunk(qn_kt out, const float *ws, long long nch, long long ch, long long h, long long b,
                          long long t0, long long n_tok) {
    constexpr int LDQ = OUT_LDQ, LDP = OUT_LDP;
    float *Qs = sm, *Ks = Qs + CH * LDQ, *Ps = Ks + CH * LDQ, *gs = Ps + CH * LDP;
    const int tid = threadIdx.x, warp = tid >> 5;
    if (tid < CH) gs[tid] = ws[qn_gdn_ws_offset(QN_GDN_WS_G, nch, DK, DV) + ch * CH + tid];
    __syncthreads();

    const int m0 = 16 * (warp & 3);
    /* P = Q K^T, j <= i, times exp(G_i - G_j) */
    chunk_gram(Qs, Ks, LDQ, Ps, LDP, [&](int i, int j, float x) { return j <= i ? expf(gs[i] - gs[j]) * x : 0.0f; });
    __syncthreads();

    /* O = diag(exp(G)) Q M + P D: warp w takes rows 16 (w % 4), half (w / 4) of the columns */
    constexpr int NT = DV / 16;
    const int nb = (warp >> 2) * (DV / 2);
    const float *Mc = ws + qn_gdn_ws_offset(QN_GDN_WS_M, nch, DK, DV) + ch * DK * DV;
    const float *Dc = ws + qn_gdn_ws_offset(QN_GDN_WS_U, nch, DK, DV) + ch * CH * DV;
    float acc[NT][4] = {};
    for (int k0 = 0; k0 < DK; k0 += 8) {
        unsigned af[4];
        frag_a(af, Qs, LDQ, m0, k0);
#pragma unroll
        for (int j = 0; j < NT; j++) {
            unsigned bf[2];
            frag_b(bf, Mc, DV, k0, nb + 8 * j);
            mma_tf32(acc[j], af, bf);
        }
    }
    const float up = expf(gs[acc_row(m0, 0)]), down = expf(gs[acc_row(m0, 2)]);
#pragma unroll
    for (int j = 0; j < NT; j++) {
        acc[j][0] *= up;
        acc[j][1] *= up;
        acc[j][2] *= down;
        acc[j][3] *= down;
    }
    for (int k0 = 0; k0 < CH; k0 += 8) {
        unsigned af[4];
        frag_a(af, Ps, LDP, m0, k0);
#pragma unroll
        for (int j = 0; j < NT; j++) {
            unsigned bf[2];
            frag_b(bf, Dc, DV, k0, nb + 8 * j);
            mma_tf32(acc[j], af, bf);
        }
    }
#pragma unroll
    for (int j = 0; j < NT; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const long long t = t0 + acc_row(m0, e);
            if (t < n_tok) qn_store_f32(qn_kt_at(&out, acc_col(nb + 8 * j, e), h, t, b), out.dtype, acc[j][e]);
        }
}

#else /* the helpers */

/* 64 tokens of one channel per thread, the W - 1 previous inputs in
 * registers (arrays of 8 indexed by unrolled loops, W <= 8). Only the
 * blocks of the first 64 tokens read the carried state and they alone write
 * the new one, each channel by one thread after its reads, so state_out may
 * be state_in. */
extern "C" __global__ void __launch_bounds__(128) gdn_conv1d(qn_gdn_conv_args a) {
    QN_GRID_WAIT();
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
    QN_GRID_WAIT();
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
    QN_GRID_WAIT();
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
