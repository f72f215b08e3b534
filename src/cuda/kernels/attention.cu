/* Flash attention over the KV cache: decode (1 to 8 query tokens, K and V
 * in f16, bf16 or q8_0, merging its split blocks' partial softmaxes
 * itself) and prefill (f16 or bf16, with a kernel merging its splits),
 * both on tensor cores.
 *
 * Compiled once per head dim: -DQN_ATTN_D=64, 80, 96, 128, 256 or 512.
 *
 * Layouts (quanta.h): q and out [D, n_q_heads, n_tokens] f32 with
 * contiguous rows; K and V [D, capacity, n_kv_heads], position j in row
 * j % capacity; pos[0] = p0, the first query token's position, read here so
 * a replayed graph follows it. Query rows of a kv head are numbered
 * token-major, row = t * group + g, for query head kv_head * group + g.
 * Logits are kept in base 2 (scaled by log2 e) from the dot product on.
 * Every kernel opens with QN_GRID_WAIT: it may start while the kernel
 * before it on the stream finishes, and reads nothing before the wait. */
#include "attention_common.cuh"
#include "mma.cuh"

#ifndef QN_ATTN_D
#error "attention.cu is compiled with -DQN_ATTN_D=<head dim>"
#endif

constexpr int HD = QN_ATTN_D;
#define NEG_INF __int_as_float(0xff800000u)

/* ---- PTX helpers (the shared ones are in mma.cuh) */

extern __shared__ __align__(16) unsigned char qn_attn_smem[];

/* 4 bytes global -> shared; only the first src_bytes (0 or 4) are read,
 * the rest is zero-filled. */
__device__ __forceinline__ void cp_async4(unsigned dst, const void *src, int src_bytes) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}
/* The transpose of an 8x8 matrix of 16-bit values spread over the warp as
 * ldmatrix spreads it (lane 4r + c holds row r, columns 2c and 2c + 1). */
__device__ __forceinline__ unsigned movtrans(unsigned a) {
    unsigned d;
    asm volatile("movmatrix.sync.aligned.m8n8.trans.b16 %0, %1;" : "=r"(d) : "r"(a));
    return d;
}

/* A pair split in two packed pairs, hi = round(x) and lo = round(x - hi):
 * the tensor cores then see x to about 2^-22 (f16) or 2^-16 (bf16). */
template <int DT>
__device__ __forceinline__ void split2(float x0, float x1, unsigned &hi, unsigned &lo) {
    hi = pack2<DT>(x0, x1);
    float h0, h1;
    if (DT == QN_KT_BF16) {
        h0 = __uint_as_float(hi << 16);
        h1 = __uint_as_float(hi & 0xffff0000u);
    } else {
        asm("cvt.f32.f16 %0, %1;" : "=f"(h0) : "h"((unsigned short)(hi & 0xffffu)));
        asm("cvt.f32.f16 %0, %1;" : "=f"(h1) : "h"((unsigned short)(hi >> 16)));
    }
    lo = pack2<DT>(x0 - h0, x1 - h1);
}

/* 2^x; -inf gives 0 */
__device__ __forceinline__ float ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

/* Copy `rows` K or V rows of `CH` 16-byte chunks, keys j0, j0 + 1, ..., into
 * shared memory rows `stride` halves apart, thread t of NT taking chunks
 * of NT / CH rows at a time, so a warp's copy instruction reads whole rows
 * (a thread a row reading its own chunks makes each instruction touch many
 * lines, which throttles the load/store unit). Key j lives in cache row
 * j - off, less C past the end of the ring; the row address steps along
 * instead of being recomputed (a key before `end` is less than 2C past
 * off, so one wrap keeps its row right). Keys from `end` on are
 * zero-filled from the ring's first row. */
template <int NT, int CH>
__device__ __forceinline__ void copy_rows(unsigned dst, int stride, const char *src, long long nb, int rows, int j0,
                                          int end, int off, int C, int t) {
    constexpr int RP = CH >= NT ? 1 : NT / CH, CL = CH >= NT ? CH / NT : 1;
    if (t >= RP * CH) return; /* threads past the last chunk */
    int r = RP > 1 ? t / CH : 0, row = j0 + r - off;
    if (row >= C) row -= C;
    const char *s = src + row * nb;
    const long long ring = C * nb;
#pragma unroll 4
    for (; r < rows; r += RP) {
        const bool ok = j0 + r < end;
#pragma unroll
        for (int u = 0; u < CL; u++) {
            const int ch = RP > 1 ? t % CH : t + NT * u;
            cp_async16(dst + (r * stride + ch * 8) * 2, (ok ? s : src) + ch * 16, ok ? 16 : 0);
        }
        row += RP;
        s += RP * nb;
        if (row >= C) {
            row -= C;
            s -= ring;
        }
    }
}

/* Query row rg of kv head kvh is token rg / G, head kvh G + rg % G (a
 * single token's rows need no division). */
__device__ __forceinline__ int row_token(int rg, int G, int n_tokens) { return n_tokens == 1 ? 0 : rg / G; }
__device__ __forceinline__ int row_head(int rg, int G, int n_tokens, int kvh) {
    return kvh * G + (n_tokens == 1 ? rg : rg % G);
}

/* q rows row0, row0 + 1, ... of kv head kvh (query row r: token r / G,
 * head kvh G + r % G) times qs, as f16/bf16 pairs into shared memory
 * [ROWS][stride] halves, and with LO their low parts, x - round(x), in the
 * ROWS rows after; rows from `rows` on are zeros. Lane r of each warp
 * finds row r's address (one division a row, not one an element) and
 * passes it round. A thread's pairs go in batches of up to 8: fetch(u0)
 * issues a batch's loads, put(u0) converts and stores it, so the first
 * batch can be fetched early and its latency hidden behind other work. */
template <int DT, int NT, int ROWS, bool LO>
struct q_rows {
    static constexpr int PAIRS = ROWS * (HD / 2), PER = (PAIRS + NT - 1) / NT, BATCH = PER < 8 ? PER : 8;
    static_assert(ROWS <= 32, "a lane a row");
    unsigned long long mine;
    float qs, x[BATCH][2];

    __device__ __forceinline__ q_rows(const qn_kt &q, int row0, int rows, int kvh, int G, int n_tokens, float scale)
        : mine(0), qs(scale) {
        const int lane = threadIdx.x % 32;
        if (lane < rows)
            mine = (unsigned long long)qn_kt_at(&q, 0, row_head(row0 + lane, G, n_tokens, kvh),
                                                row_token(row0 + lane, G, n_tokens), 0);
    }
    __device__ __forceinline__ void fetch(int u0) {
#pragma unroll
        for (int u = 0; u < BATCH; u++) {
            const int i = threadIdx.x + (u0 + u) * NT, r = i / (HD / 2), d = (i % (HD / 2)) * 2;
            const float *qrow = (const float *)__shfl_sync(0xffffffffu, mine, r < ROWS ? r : 0);
            const bool ok = i < PAIRS && qrow;
            x[u][0] = ok ? qrow[d] * qs : 0.0f;
            x[u][1] = ok ? qrow[d + 1] * qs : 0.0f;
        }
    }
    __device__ __forceinline__ void put(int u0, unsigned char *dst, int stride) const {
#pragma unroll
        for (int u = 0; u < BATCH; u++) {
            const int i = threadIdx.x + (u0 + u) * NT, r = i / (HD / 2), d = (i % (HD / 2)) * 2;
            if (i >= PAIRS) continue;
            unsigned hi, lo;
            if (LO) split2<DT>(x[u][0], x[u][1], hi, lo);
            else hi = pack2<DT>(x[u][0], x[u][1]);
            *(unsigned *)(dst + (r * stride + d) * 2) = hi;
            if (LO) *(unsigned *)(dst + ((ROWS + r) * stride + d) * 2) = lo;
        }
    }
    /* the rest after the first batch */
    __device__ __forceinline__ void finish(unsigned char *dst, int stride) {
        put(0, dst, stride);
        for (int u0 = BATCH; u0 < PER; u0 += BATCH) {
            fetch(u0);
            put(u0, dst, stride);
        }
    }
};

/* ---- clusters (sm_90 on)
 *
 * Decode's split blocks come in clusters of DEC_CL (the grid's x in
 * consecutive runs): the blocks of a cluster merge their partials by
 * reading each other's shared memory, with no global round trip. Before
 * sm_90 a cluster is one block. */
#if __CUDA_ARCH__ >= 900
#define DEC_CL QN_ATTN_DEC_CL
#define DEC_CLUSTER_DIMS __cluster_dims__(QN_ATTN_DEC_CL, 1, 1)
#else
#define DEC_CL 1
#define DEC_CLUSTER_DIMS
#endif

__device__ __forceinline__ int cluster_rank() {
#if DEC_CL > 1
    unsigned r;
    asm("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
    return (int)r;
#else
    return 0;
#endif
}
/* A barrier over the cluster's threads, split in two: arrive, with
 * RELEASE after this thread's shared-memory writes that the others will
 * read (it costs a device-wide fence; without, it only says this thread is
 * done reading theirs), and wait (acquire). */
template <bool RELEASE>
__device__ __forceinline__ void cluster_arrive() {
#if DEC_CL > 1
    if (RELEASE) asm volatile("barrier.cluster.arrive.release.aligned;" ::: "memory");
    else asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory");
#else
    if (RELEASE) __syncthreads();
#endif
}
__device__ __forceinline__ void cluster_wait() {
#if DEC_CL > 1
    asm volatile("barrier.cluster.wait.acquire.aligned;" ::: "memory");
#endif
}
/* The pair at p, p + 1 (shared memory, 8-byte aligned) of the cluster's
 * block `rank`. */
__device__ __forceinline__ float2 ld_cluster2(const float *p, int rank) {
#if DEC_CL > 1
    unsigned a;
    float2 v;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(a) : "r"(smem_addr(p)), "r"(rank));
    asm volatile("ld.shared::cluster.v2.f32 {%0, %1}, [%2];" : "=f"(v.x), "=f"(v.y) : "r"(a));
    return v;
#else
    (void)rank;
    return *(const float2 *)p;
#endif
}

/* ---- split partials across clusters and their merge
 *
 * When a row group's keys take nsplit clusters, each cluster's merged
 * partial (acc, m, l) goes to scratch, one column slice per block of the
 * cluster: acc = sum_j 2^(logit_j - m) v_j unscaled, m its reference max,
 * l = sum_j 2^(logit_j - m). The block then raises its flag, and a block
 * that sees every flag of its slice raised merges the slice over the
 * clusters, out = sum_s w_s acc_s / (sum_s w_s l_s + sink), w_s =
 * 2^(m_s - max m), and lowers the flags. Each block orders its flag store
 * before its flag loads with fences, so at least one sees all flags; two
 * that both do write the same values. A flag is a magic word, not a count:
 * whatever a fresh or reused scratch holds, only a complete set reads as
 * done, and each merge leaves the flags lowered. No second kernel, no
 * counter to reset.
 *
 * Scratch (f32 words), S = clusters a group may take, RG slices (row
 * groups times blocks a cluster) of ROWS rows and COLS columns: acc
 * [S][RG][ROWS][COLS], then (m, l) [S][RG][ROWS][2], then flags [RG][S].
 * Bytes: (COLS + 2) floats per row and working cluster, written once and
 * read once. */

#define QN_ATTN_DONE 0x7fc0da7au /* a NaN no arithmetic produces */

typedef struct {
    float *acc, *ml;          /* this slice's split 0 */
    long long acc_sp, ml_sp;  /* floats from one split to the next */
    volatile unsigned *flags; /* this slice's [S] */
} qn_partials;

__device__ __forceinline__ qn_partials partials_at(float *scratch, int S, int RG, int rows, int cols, int grp) {
    const long long R = (long long)RG * rows;
    qn_partials P;
    P.acc = scratch + (long long)grp * rows * cols;
    P.acc_sp = R * cols;
    P.ml = scratch + S * R * cols + (long long)grp * rows * 2;
    P.ml_sp = R * 2;
    P.flags = (volatile unsigned *)(scratch + S * R * (cols + 2)) + (long long)grp * S;
    return P;
}

/* Called by every thread once this block's partial is written: raise the
 * split's flag (after a fence, so the partial's stores, ordered before it
 * by the barrier, are visible first); true (in every thread) when all
 * nsplit flags are raised, and then after a fence that makes the other
 * splits' partials visible. */
__device__ __forceinline__ bool publish_split(const qn_partials &P, int split, int nsplit, int *s_last) {
    __syncthreads();
    if (threadIdx.x < 32) {
        if (threadIdx.x == 0) {
            __threadfence();
            P.flags[split] = QN_ATTN_DONE;
        }
        __syncwarp();
        __threadfence();
        bool all = true;
        for (int sp = threadIdx.x; sp < nsplit; sp += 32) all = all && P.flags[sp] == QN_ATTN_DONE;
        all = __all_sync(0xffffffffu, all);
        if (threadIdx.x == 0) *s_last = all;
    }
    __syncthreads();
    const bool last = *s_last != 0;
    if (last) __threadfence();
    return last;
}

/* The merge into out for the group's first rv rows (query row row0 + r is
 * token (row0 + r) / G, head kvh G + (row0 + r) % G) and COLS columns from
 * dv0; then the flags are lowered. sW, sM: [nsplit][ROWS] floats, sInv [ROWS]. */
template <int NT, int ROWS, int COLS>
__device__ __forceinline__ void merge_splits(const qn_partials &P, int nsplit, int rv, const qn_kt &out,
                                             const qn_kt &sinks, int row0, int G, int n_tokens, int kvh, int dv0,
                                             float *sW, float *sM, float *sInv) {
    /* every (split, row)'s m and l at once, then per row the largest m,
     * each split's weight 2^(m_s - m) (over l, in place) and 1 / sum */
    for (int i = threadIdx.x; i < nsplit * rv; i += NT) {
        const int sp = i / rv, r = i % rv;
        sM[sp * ROWS + r] = __ldcg(P.ml + sp * P.ml_sp + r * 2);
        sW[sp * ROWS + r] = __ldcg(P.ml + sp * P.ml_sp + r * 2 + 1);
    }
    __syncthreads();
    for (int r = threadIdx.x; r < rv; r += NT) {
        float mn = NEG_INF, sum = 0.0f;
        for (int sp = 0; sp < nsplit; sp++) mn = fmaxf(mn, sM[sp * ROWS + r]);
        const float b = mn == NEG_INF ? 0.0f : mn;
        for (int sp = 0; sp < nsplit; sp++) {
            const float wt = ex2(sM[sp * ROWS + r] - b);
            sum += wt * sW[sp * ROWS + r];
            sW[sp * ROWS + r] = wt;
        }
        const int h = row_head(row0 + r, G, n_tokens, kvh);
        if (sinks.addr) sum += ex2(*(const float *)qn_kt_at(&sinks, h, 0, 0, 0) * QN_ATTN_LOG2E - b);
        sInv[r] = sum > 0.0f ? 1.0f / sum : 0.0f;
    }
    __syncthreads();
    /* the sums: a thread takes EB elements at a time and loads 8 splits of
     * each before it adds any (and stores nothing until all splits are in),
     * so EB * 8 loads are in flight at once */
    constexpr int E = (ROWS * COLS + NT - 1) / NT, EB = E < 4 ? E : 4;
    for (int e0 = 0; e0 < E; e0 += EB) {
        float a[EB];
#pragma unroll
        for (int e = 0; e < EB; e++) a[e] = 0.0f;
        for (int sp = 0; sp < nsplit; sp += 8) {
            float x[EB][8];
#pragma unroll
            for (int e = 0; e < EB; e++) {
                const int i = threadIdx.x + (e0 + e) * NT, r = i / COLS, col = i % COLS;
#pragma unroll
                for (int u = 0; u < 8; u++)
                    x[e][u] = r < rv && sp + u < nsplit ? __ldcg(P.acc + r * COLS + col + (sp + u) * P.acc_sp) : 0.0f;
            }
#pragma unroll
            for (int e = 0; e < EB; e++) {
                const int r = (threadIdx.x + (e0 + e) * NT) / COLS;
#pragma unroll
                for (int u = 0; u < 8; u++)
                    if (r < rv && sp + u < nsplit) a[e] += sW[(sp + u) * ROWS + r] * x[e][u];
            }
        }
#pragma unroll
        for (int e = 0; e < EB; e++) {
            const int i = threadIdx.x + (e0 + e) * NT, r = i / COLS, col = i % COLS, rg = row0 + r;
            if (r < rv)
                ((float *)qn_kt_at(&out, 0, row_head(rg, G, n_tokens, kvh), row_token(rg, G, n_tokens), 0))[dv0 + col] =
                    a[e] * sInv[r];
        }
    }
    for (int sp = threadIdx.x; sp < nsplit; sp += NT) P.flags[sp] = 0u;
}

/* ---- decode
 *
 * Grid (splits, n_kv_heads, row tiles), QN_ATTN_DEC_WARPS(D) warps, the
 * splits in clusters of DEC_CL blocks. A block takes 8 query rows of one kv
 * head (the heads of its group times the step's tokens), so every K and V
 * row is read once for all of them, and one slice of the keys they see.
 * The grid is sized on the host from the capacity; the visible length,
 * read from pos, decides how many clusters work (up to QN_ATTN_DEC_TPW
 * 16-key tiles per warp before another cluster joins), and the others
 * return at once, so a replayed graph fits every step and a short context
 * costs only the blocks it needs: up to 512 keys at head 256, one cluster
 * whose warps take a tile each.
 *
 * Tensor cores compute S^T = K Q^T (16 keys as the mma's M, the 8 rows as
 * N) and O^T += V^T P^T: a tile of 16 keys costs D / 4 mma for all rows. q
 * and the softmax weights enter as high and low f16/bf16 parts (two mma
 * each, about f32 accuracy), K and V as stored. q8_0 tiles are converted
 * to their integers in f16 (exact), and the block scales are applied in
 * f32: to S per 32-wide block of the dot product, to P per 32-wide block
 * of V. Each warp streams its own tiles (warp w takes tiles w, w + W, ... of
 * the slice) through `stages` shared-memory buffers filled by cp.async;
 * keys past the slice are zero-filled (a NaN in an unused cache row must
 * not reach P V) and masked. The online softmax keeps a reference max per
 * row that moves only when a logit passes it by more than 8 (weights stay
 * below 2^8), which spares most rescales of the accumulators.
 *
 * At the end the warps merge through shared memory into the block's
 * partial, and the blocks of a cluster through each other's shared memory,
 * block r taking columns r D / DEC_CL onwards: with one working cluster it
 * writes out; with several, each block's slice goes through scratch as
 * above (rows of 8, columns D / DEC_CL, a slice per kv head, row tile and
 * block of a cluster).
 * Bytes: K and V of the visible keys once per row tile, q once, partials
 * D + 2 DEC_CL floats per row and working cluster beyond the first. */

template <int DT>
__device__ __forceinline__ void attn_decode(const qn_kt &out, const qn_kt &q, const qn_kt &k, const qn_kt &v,
                                            const qn_kt &pos, const qn_kt &sinks, float *scratch,
                                            const qn_attn_params &p) {
    constexpr bool Q8 = DT == QN_KT_Q8_0;
    constexpr int MT = DT == QN_KT_BF16 ? QN_KT_BF16 : QN_KT_F16; /* the tensor cores' inputs */
    constexpr int NW = QN_ATTN_DEC_WARPS(HD), NT = 32 * NW, TK = QN_ATTN_DEC_KEYS, NR = QN_ATTN_DEC_ROWS;
    constexpr int KS = HD + 8, NKC = HD / 16, NB = HD / 32;
    constexpr int RB = NB * 34, RBS = (RB + 15) / 16 * 16; /* q8_0 row bytes, in global and shared memory */
    constexpr int STAGE = Q8 ? 2 * TK * RBS : 2 * TK * KS * 2;
    constexpr bool QREG = HD <= 128; /* q's fragments live in registers, else in shared memory */
    constexpr float TAU = 8.0f;

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, c = lane % 4;
    const int split = blockIdx.x, kvh = blockIdx.y, tile = blockIdx.z;
    const int clu = split / DEC_CL, rank = cluster_rank(), grid_clu = gridDim.x / DEC_CL;
    const int groups = gridDim.y * gridDim.z, grp = tile * gridDim.y + kvh;
    const int G = p.group, R = G * p.n_tokens, C = p.capacity, stages = p.stages;
    const int rv = min(NR, R - tile * NR); /* rows of this tile */
    const int nt = p.n_tokens;
    const int p0 = qn_attn_p0(&pos);
    /* q, scaled so S is the base-2 logit (with a softcap, the logit over
     * the cap): its first loads go out with pos's, before anything waits */
    q_rows<MT, NT, NR, true> qr(q, tile * NR, rv, kvh, G, nt,
                                p.softcap > 0.0f ? __fdividef(p.scale, p.softcap) : p.scale * QN_ATTN_LOG2E);
    qr.fetch(0);

    /* The tile's keys: its first row's token has the lowest bounds and its
     * last row's the highest. Splits take whole 16-key tiles of them. */
    int lo_all, hi_first, lo_last, hi_all;
    qn_attn_keys(&p, p0, row_token(tile * NR, G, nt), &lo_all, &hi_first);
    qn_attn_keys(&p, p0, row_token(tile * NR + rv - 1, G, nt), &lo_last, &hi_all);
    const int ntiles = (max(hi_all - lo_all, 0) + TK - 1) / TK;
    constexpr int PER_CLU = DEC_CL * NW * QN_ATTN_DEC_TPW;
    const int nclu = max(1, min(grid_clu, (ntiles + PER_CLU - 1) / PER_CLU));
    if (clu >= nclu) return; /* whole clusters: no block of a working one leaves early */
    const int nsplit = nclu * DEC_CL;
    /* slice: ntiles / nsplit tiles, one more for the first ntiles % nsplit
     * (one cluster: a constant divisor) */
    const int per = nclu == 1 ? ntiles / DEC_CL : ntiles / nsplit, extra = ntiles - per * nsplit;
    const int t0 = split * per + min(split, extra), t1 = t0 + per + (split < extra);
    const int blo = lo_all + TK * t0, bhi = min(lo_all + TK * t1, hi_all);
    const int off = blo - blo % C;                              /* row of key j: j - off, less C past the end */
    const int full_lo = lo_last, full_hi = min(hi_first, bhi); /* keys every row of the tile sees */
    const int nmine = t1 - t0 > warp ? (t1 - t0 - warp + NW - 1) / NW : 0;

    /* this lane's rows of S^T's columns: 2c and 2c + 1 */
    int rlo[2], rhi[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        rlo[r] = rhi[r] = 0;
        if (2 * c + r < rv) qn_attn_keys(&p, p0, row_token(tile * NR + 2 * c + r, G, nt), &rlo[r], &rhi[r]);
    }

    unsigned char *sm = qn_attn_smem;
    unsigned char *wsm = sm + qn_attn_dec_q_bytes(HD) + warp * (stages * STAGE + qn_attn_dec_conv_bytes(HD, Q8));
    const unsigned sQa = smem_addr(sm), wsa = smem_addr(wsm);
    const char *kb = (const char *)k.addr + kvh * k.nb[2], *vb = (const char *)v.addr + kvh * v.nb[2];
    const long long knb = k.nb[1], vnb = v.nb[1];
    const bool al4 = ((k.addr | v.addr | (unsigned long long)(k.nb[1] | k.nb[2] | v.nb[1] | v.nb[2])) & 3) == 0;

    /* the buffer of this warp's tile `it`: it % stages, without a division */
    auto buf = [&](int it) { return stages == 3 ? it % 3 : stages == 2 ? it & 1 : 0; };
    /* Copy this warp's tile `it` (its (warp + it W)-th of the slice) into
     * its buffer, as one cp.async group (empty past the last). */
    auto issue = [&](int it) {
        if (it < nmine) {
            const int key0 = blo + TK * (warp + it * NW);
            const unsigned st = wsa + buf(it) * STAGE;
            if (!Q8) {
                copy_rows<32, HD / 8>(st, KS, kb, knb, TK, key0, bhi, off, C, lane);
                copy_rows<32, HD / 8>(st + TK * KS * 2, KS, vb, vnb, TK, key0, bhi, off, C, lane);
            } else {
                /* q8_0 rows: 4-byte copies where every row is 4-byte aligned,
                 * else 2-byte loads and stores */
                unsigned char *dst = wsm + buf(it) * STAGE;
#pragma unroll 1
                for (int r = 0; r < TK; r++) {
                    const int j = key0 + r;
                    int row = j - off;
                    if (row >= C) row -= C;
                    const bool ok = j < bhi;
                    const char *ks = kb + (ok ? row * knb : 0), *vs = vb + (ok ? row * vnb : 0);
                    if (al4) {
                        for (int w = lane; w < RB / 4; w += 32) {
                            cp_async4(st + r * RBS + w * 4, ks + w * 4, ok ? 4 : 0);
                            cp_async4(st + (TK + r) * RBS + w * 4, vs + w * 4, ok ? 4 : 0);
                        }
                    } else {
                        for (int w = lane; w < RB / 2; w += 32) {
                            *(unsigned short *)(dst + r * RBS + w * 2) = ok ? *(const unsigned short *)(ks + w * 2) : 0;
                            *(unsigned short *)(dst + (TK + r) * RBS + w * 2) =
                                ok ? *(const unsigned short *)(vs + w * 2) : 0;
                        }
                    }
                }
            }
        }
        cp_commit();
    };
    auto wait_tile = [&]() { /* the oldest group: this warp's next tile */
        if (stages >= 3) cp_wait<2>();
        else if (stages == 2) cp_wait<1>();
        else cp_wait<0>();
        __syncwarp();
    };
    for (int it = 0; it < stages - 1; it++) issue(it);

    /* q as high and low parts [2][8][KS]; rows past the tile's are zeros */
    qr.finish(sm, KS);
    __syncthreads();

    /* ldmatrix addresses of this lane: q as B (matrices: high d0, high
     * d0 + 8, low d0, low d0 + 8), K as A (keys 0-7 / 8-15 by d0 / d0 + 8),
     * V transposed as A (d0 / d0 + 8 by keys 0-7 / 8-15) */
    const unsigned qoff = sQa + (((lane / 16) * NR + lane % 8) * KS + ((lane / 8) % 2) * 8) * 2;
    const unsigned koff = ((lane % 8 + ((lane / 8) % 2) * 8) * KS + (lane / 16) * 8) * 2;
    const unsigned voff = ((lane % 8 + (lane / 16) * 8) * KS + ((lane / 8) % 2) * 8) * 2;
    unsigned qf[QREG ? NKC : 1][4];
    if (QREG)
#pragma unroll
        for (int kc = 0; kc < NKC; kc++) ldsm_x4(qf[QREG ? kc : 0], qoff + kc * 32);

    const float cap_l2 = p.softcap * QN_ATTN_LOG2E;
    float o[NKC][4];
#pragma unroll
    for (int mt = 0; mt < NKC; mt++) o[mt][0] = o[mt][1] = o[mt][2] = o[mt][3] = 0.0f;
    float mref[2] = {NEG_INF, NEG_INF}, l[2] = {0.0f, 0.0f};

    /* q8_0: the converted tile and its scales, once per warp */
    unsigned char *cv = wsm + stages * STAGE;
    const float *ksc = (const float *)(cv + 2 * TK * KS * 2), *vsc = ksc + TK * NB;

    for (int it = 0; it < nmine; it++) {
        issue(it + stages - 1);
        wait_tile();
        const int key0 = blo + TK * (warp + it * NW);
        unsigned kt = wsa + buf(it) * STAGE;
        if (Q8) {
            const unsigned char *raw = wsm + buf(it) * STAGE;
            float *sc = (float *)(cv + 2 * TK * KS * 2);
            for (int i = lane; i < TK * (HD / 2); i += 32) {
                const int r = i / (HD / 2), e = (i % (HD / 2)) * 2, at = r * RBS + e / 32 * 34 + 2 + e % 32;
#pragma unroll
                for (int kv = 0; kv < 2; kv++) {
                    /* two int8 as f16 1152 + x (0x64 over x + 128), less 1152 */
                    const unsigned u = *(const unsigned short *)(raw + kv * TK * RBS + at);
                    unsigned h = __byte_perm(u ^ 0x8080u, 0x64646464u, 0x4140), x;
                    asm("sub.f16x2 %0, %1, %2;" : "=r"(x) : "r"(h), "r"(0x64806480u));
                    *(unsigned *)(cv + kv * TK * KS * 2 + (r * KS + e) * 2) = x;
                }
            }
            for (int i = lane; i < TK * NB; i += 32) {
                const int at = i / NB * RBS + i % NB * 34;
                float d0, d1;
                asm("cvt.f32.f16 %0, %1;" : "=f"(d0) : "h"(*(const unsigned short *)(raw + at)));
                asm("cvt.f32.f16 %0, %1;" : "=f"(d1) : "h"(*(const unsigned short *)(raw + TK * RBS + at)));
                sc[i] = d0;
                sc[TK * NB + i] = d1;
            }
            __syncwarp();
            kt = smem_addr(cv);
        }
        const unsigned vt = kt + TK * KS * 2;

        /* S^T: element e is key key0 + g + 8 (e / 2), row 2c + e % 2 */
        float s[4];
        if (!Q8) {
            /* QC independent accumulator pairs, so the mma chain is NKC / QC deep */
            constexpr int QC = HD >= 512 ? 2 : 4;
            float ah[QC][4] = {}, al[QC][4] = {};
#pragma unroll
            for (int kc = 0; kc < NKC; kc++) {
                unsigned a[4], b[4];
                ldsm_x4(a, kt + koff + kc * 32);
                if (QREG) b[0] = qf[QREG ? kc : 0][0], b[1] = qf[QREG ? kc : 0][1], b[2] = qf[QREG ? kc : 0][2],
                          b[3] = qf[QREG ? kc : 0][3];
                else ldsm_x4(b, qoff + kc * 32);
                mma16816<MT>(ah[kc % QC], a, b[0], b[1]);
                mma16816<MT>(al[kc % QC], a, b[2], b[3]);
            }
#pragma unroll
            for (int e = 0; e < 4; e++) {
                s[e] = 0.0f;
#pragma unroll
                for (int u = 0; u < QC; u++) s[e] += ah[u][e] + al[u][e];
            }
        } else {
            s[0] = s[1] = s[2] = s[3] = 0.0f;
#pragma unroll
            for (int b = 0; b < NB; b++) {
                float ah[4] = {}, al[4] = {};
#pragma unroll
                for (int kc = 2 * b; kc < 2 * b + 2; kc++) {
                    unsigned a[4], bq[4];
                    ldsm_x4(a, kt + koff + kc * 32);
                    if (QREG) bq[0] = qf[QREG ? kc : 0][0], bq[1] = qf[QREG ? kc : 0][1],
                              bq[2] = qf[QREG ? kc : 0][2], bq[3] = qf[QREG ? kc : 0][3];
                    else ldsm_x4(bq, qoff + kc * 32);
                    mma16816<MT>(ah, a, bq[0], bq[1]);
                    mma16816<MT>(al, a, bq[2], bq[3]);
                }
                const float d0 = ksc[g * NB + b], d1 = ksc[(g + 8) * NB + b];
                s[0] += d0 * (ah[0] + al[0]);
                s[1] += d0 * (ah[1] + al[1]);
                s[2] += d1 * (ah[2] + al[2]);
                s[3] += d1 * (ah[3] + al[3]);
            }
        }

        /* logits, mask, online softmax */
        const bool full = key0 >= full_lo && key0 + TK <= full_hi;
#pragma unroll
        for (int e = 0; e < 4; e++) {
            float x = p.softcap > 0.0f ? cap_l2 * tanhf(s[e]) : s[e];
            if (!full) {
                const int j = key0 + g + (e >> 1) * 8, r = e & 1;
                if (!(j < bhi && j >= rlo[r] && j < rhi[r])) x = NEG_INF;
            }
            s[e] = x;
        }
        float mx[2] = {fmaxf(s[0], s[2]), fmaxf(s[1], s[3])};
#pragma unroll
        for (int sh = 4; sh < 32; sh *= 2)
#pragma unroll
            for (int r = 0; r < 2; r++) mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], sh));
        if (__any_sync(0xffffffffu, mx[0] > mref[0] + TAU || mx[1] > mref[1] + TAU)) {
#pragma unroll
            for (int r = 0; r < 2; r++) {
                const float mn = fmaxf(mref[r], mx[r]), corr = mn == NEG_INF ? 1.0f : ex2(mref[r] - mn);
                mref[r] = mn;
                l[r] *= corr;
#pragma unroll
                for (int mt = 0; mt < NKC; mt++) {
                    o[mt][r] *= corr;
                    o[mt][r + 2] *= corr;
                }
            }
        }
        const float base[2] = {mref[0] == NEG_INF ? 0.0f : mref[0], mref[1] == NEG_INF ? 0.0f : mref[1]};
        float pr[4];
#pragma unroll
        for (int e = 0; e < 4; e++) {
            pr[e] = ex2(s[e] - base[e & 1]);
            l[e & 1] += pr[e];
        }

        /* O^T += V^T P^T: P^T's fragments are S^T's, transposed per 8x8 */
#pragma unroll
        for (int b = 0; b < (Q8 ? NB : 1); b++) {
            const float d0 = Q8 ? vsc[g * NB + b] : 1.0f, d1 = Q8 ? vsc[(g + 8) * NB + b] : 1.0f;
            unsigned h0, l0, h1, l1;
            split2<MT>(pr[0] * d0, pr[1] * d0, h0, l0);
            split2<MT>(pr[2] * d1, pr[3] * d1, h1, l1);
            const unsigned bh0 = movtrans(h0), bh1 = movtrans(h1), bl0 = movtrans(l0), bl1 = movtrans(l1);
#pragma unroll
            for (int mt = Q8 ? 2 * b : 0; mt < (Q8 ? 2 * b + 2 : NKC); mt++) {
                unsigned a[4];
                ldsm_x4_trans(a, vt + voff + mt * 32);
                mma16816<MT>(o[mt], a, bh0, bh1);
                mma16816<MT>(o[mt], a, bl0, bl1);
            }
        }
        __syncwarp(); /* every lane is done with the buffers before they are refilled */
    }
    cp_wait<0>();

    /* l: the 8 lanes of a row pair each summed their own keys */
#pragma unroll
    for (int sh = 4; sh < 32; sh *= 2)
#pragma unroll
        for (int r = 0; r < 2; r++) l[r] += __shfl_xor_sync(0xffffffffu, l[r], sh);

    /* merge the warps: partial sums [NW][8][HD + 4] and (m, l) [NW][8] */
    __syncthreads();
    float *sAcc = (float *)sm, *sM = sAcc + NW * NR * (HD + 4), *sL = sM + NW * NR, *sML = sL + NW * NR;
    float *sWt = sML + 2 * NR, *sSink = sWt + NW * NR;
    unsigned long long *sOut = (unsigned long long *)(sSink + NR);
    float *sW = (float *)(sOut + NR), *sMs = sW + QN_ATTN_DEC_MAX_SPLITS * NR, *sInv = sMs + QN_ATTN_DEC_MAX_SPLITS * NR;
#pragma unroll
    for (int mt = 0; mt < NKC; mt++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            sAcc[(warp * NR + 2 * c + (e & 1)) * (HD + 4) + mt * 16 + g + (e >> 1) * 8] = o[mt][e];
    if (g == 0)
#pragma unroll
        for (int r = 0; r < 2; r++) {
            sM[warp * NR + 2 * c + r] = mref[r];
            sL[warp * NR + 2 * c + r] = l[r];
        }
    __syncthreads();
    /* per row: the block's max, the warps' weights 2^(m_w - max), the
     * block's l; and where out's row is and its sink (base 2) */
    if (tid < rv) {
        const int r = tid, rg = tile * NR + r, h = row_head(rg, G, nt, kvh);
        float mn = NEG_INF;
#pragma unroll
        for (int w = 0; w < NW; w++) mn = fmaxf(mn, sM[w * NR + r]);
        const float b = mn == NEG_INF ? 0.0f : mn;
        float sum = 0.0f;
#pragma unroll
        for (int w = 0; w < NW; w++) {
            const float wt = ex2(sM[w * NR + r] - b);
            sWt[w * NR + r] = wt;
            sum += wt * sL[w * NR + r];
        }
        sML[2 * r] = mn;
        sML[2 * r + 1] = sum;
        sOut[r] = (unsigned long long)qn_kt_at(&out, 0, h, row_token(rg, G, nt), 0);
        sSink[r] = sinks.addr ? *(const float *)qn_kt_at(&sinks, h, 0, 0, 0) * QN_ATTN_LOG2E : NEG_INF;
    }
    __syncthreads();
    /* the block's partial, four columns a thread at a time, in place of
     * warp 0's (each element is read and written by one thread) */
    for (int i = tid; i < rv * (HD / 4); i += NT) {
        const int r = i / (HD / 4), d = i % (HD / 4) * 4;
        float4 x[NW];
#pragma unroll
        for (int w = 0; w < NW; w++) x[w] = *(const float4 *)(sAcc + (w * NR + r) * (HD + 4) + d);
        float4 a = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
        for (int w = 0; w < NW; w++) {
            const float wt = sWt[w * NR + r];
            a.x += wt * x[w].x;
            a.y += wt * x[w].y;
            a.z += wt * x[w].z;
            a.w += wt * x[w].w;
        }
        *(float4 *)(sAcc + r * (HD + 4) + d) = a;
    }
    cluster_arrive<true>();
    cluster_wait();

    /* the cluster's merge of columns c0 .. c0 + CS, a pair of them a thread:
     * every block's (m, l) and partial of the pair loaded at once */
    constexpr int CS = HD / DEC_CL;
    static_assert(CS % 2 == 0, "column pairs");
    const int c0 = rank * CS;
    const bool single = nclu == 1;
    const qn_partials P = partials_at(scratch, grid_clu, groups * DEC_CL, NR, CS, grp * DEC_CL + rank);
    float *part = P.acc + clu * P.acc_sp, *pml = P.ml + clu * P.ml_sp;
    for (int i = tid; i < rv * (CS / 2); i += NT) {
        const int r = i / (CS / 2), col = c0 + i % (CS / 2) * 2;
        float2 ml[DEC_CL], a[DEC_CL];
#pragma unroll
        for (int b = 0; b < DEC_CL; b++) {
            ml[b] = ld_cluster2(sML + 2 * r, b);
            a[b] = ld_cluster2(sAcc + r * (HD + 4) + col, b);
        }
        float mn = NEG_INF;
#pragma unroll
        for (int b = 0; b < DEC_CL; b++) mn = fmaxf(mn, ml[b].x);
        const float base = mn == NEG_INF ? 0.0f : mn;
        float acc0 = 0.0f, acc1 = 0.0f, sum = 0.0f;
#pragma unroll
        for (int b = 0; b < DEC_CL; b++) {
            const float wt = ex2(ml[b].x - base);
            acc0 += wt * a[b].x;
            acc1 += wt * a[b].y;
            sum += wt * ml[b].y;
        }
        if (single) {
            sum += ex2(sSink[r] - base);
            const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
            float *orow = (float *)sOut[r];
            orow[col] = acc0 * inv;
            orow[col + 1] = acc1 * inv;
        } else {
            part[r * CS + col - c0] = acc0;
            part[r * CS + col - c0 + 1] = acc1;
            if (col == c0) {
                pml[2 * r] = mn;
                pml[2 * r + 1] = sum;
            }
        }
    }
    cluster_arrive<false>(); /* done with the other blocks' shared memory */
    if (!single && publish_split(P, clu, nclu, (int *)(sInv + NR)))
        merge_splits<NT, NR, CS>(P, nclu, rv, out, sinks, tile * NR, G, nt, kvh, c0, sW, sMs, sInv);
    cluster_wait(); /* and they with this one's, before it leaves */
}

#define DECODE_KERNEL(dn, DT)                                                                                    \
    extern "C" __global__ void DEC_CLUSTER_DIMS __launch_bounds__(32 * QN_ATTN_DEC_WARPS(HD), QN_ATTN_DEC_MINB(HD)) \
        attn_decode_##dn(qn_kt out, qn_kt q, qn_kt k, qn_kt v, qn_kt pos, qn_kt sinks, float *scratch,            \
                         qn_attn_params p) {                                                                       \
        QN_GRID_WAIT();                                                                                            \
        attn_decode<DT>(out, q, k, v, pos, sinks, scratch, p);                                                    \
    }
DECODE_KERNEL(f16, QN_KT_F16)
DECODE_KERNEL(bf16, QN_KT_BF16)
#if QN_ATTN_D % 32 == 0 /* q8_0 rows are whole 32-value blocks */
DECODE_KERNEL(q8_0, QN_KT_Q8_0)
#endif

/* ---- the merge of prefill's split partials
 *
 * Grid (n_q_heads, n_tokens), 128 threads: out = sum_s w_s acc_s / (sum_s
 * w_s l_s + sink), w_s = 2^(m_s - max m). Bytes: S * (D + 2) floats read and
 * D written per row. */
extern "C" __global__ void __launch_bounds__(128) attn_reduce(qn_kt out, qn_kt sinks, const float *scratch,
                                                              qn_attn_params p) {
    QN_GRID_WAIT();
    __shared__ float w[QN_ATTN_MAX_SPLITS];
    const int h = blockIdx.x, t = blockIdx.y, S = p.n_splits;
    const long long rows = (long long)p.n_tokens * p.n_q_heads, row = (long long)t * p.n_q_heads + h;
    const float *ml = scratch + (long long)S * rows * HD;
    float mn = NEG_INF;
    for (int s = 0; s < S; s++) mn = fmaxf(mn, ml[(s * rows + row) * 2]);
    const float mref = mn == NEG_INF ? 0.0f : mn;
    for (int s = threadIdx.x; s < S; s += blockDim.x) w[s] = exp2f(ml[(s * rows + row) * 2] - mref);
    __syncthreads();
    float sum = 0.0f;
    for (int s = 0; s < S; s++) sum += w[s] * ml[(s * rows + row) * 2 + 1];
    if (sinks.addr) sum += exp2f(*(const float *)qn_kt_at(&sinks, h, 0, 0, 0) * QN_ATTN_LOG2E - mref);
    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    float *orow = (float *)qn_kt_at(&out, 0, h, t, 0);
    for (int d = threadIdx.x; d < HD; d += blockDim.x) {
        float a = 0.0f;
        for (int s = 0; s < S; s++) a += w[s] * scratch[(s * rows + row) * HD + d];
        orow[d] = a * inv;
    }
}

/* ---- prefill
 *
 * Tensor cores: mma.sync m16n8k16, f16 or bf16 inputs, f32 accumulation.
 * Grid (row tiles x value halves, n_kv_heads, splits), 4 warps. A block
 * takes 64 query rows of one kv head (token-major over the group's heads,
 * so grouped heads share every K and V tile), warp w rows 16w .. 16w + 15,
 * and a slice of the keys those rows see, in tiles of BN keys:
 *   S = Q K^T (Q and K from shared memory by ldmatrix), scaled, capped and
 *   masked, online softmax in registers; O += P V with P taken straight
 *   from S's accumulators and V by ldmatrix.trans.
 * K and V tiles have their own buffers so V's copy (cp.async) overlaps
 * Q K^T and the next K's copy overlaps P V. Keys outside the slice are
 * zero-filled (a NaN in an unused cache row must not reach P V) and masked.
 * At head 512 a block covers half of the value columns (the grid's x
 * alternates halves) and computes S for its half.
 *
 * With one split the block writes out (normalised, with the sink); with
 * more it writes partials to scratch for attn_reduce.
 * FLOPs: 4 * rows * keys * D per kv-head group; bytes: K and V once per
 * row tile, q and out once. */

__device__ __forceinline__ float tanh_approx(float x) {
    float y;
    asm("tanh.approx.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

template <int DT>
__device__ __forceinline__ void attn_prefill(const qn_kt &out, const qn_kt &q, const qn_kt &k, const qn_kt &v,
                                             const qn_kt &pos, const qn_kt &sinks, float *scratch,
                                             const qn_attn_params &p) {
    constexpr int BM = QN_ATTN_PF_ROWS, BN = QN_ATTN_PF_KEYS(HD), DV = QN_ATTN_PF_DV(HD), NDV = HD / DV;
    constexpr int QS = HD + 8, VS = DV + 8; /* shared row strides, halves */
    constexpr int NT = 32 * QN_ATTN_PF_WARPS;
    unsigned short *sQ = (unsigned short *)qn_attn_smem, *sK = sQ + BM * QS, *sV = sK + BN * QS;

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, c = lane % 4;
    const int tile = blockIdx.x / NDV, dv0 = (blockIdx.x % NDV) * DV;
    const int kvh = blockIdx.y, split = blockIdx.z;
    const int G = p.group, R = G * p.n_tokens, C = p.capacity;
    const int p0 = qn_attn_p0(&pos);

    /* Q tile to shared memory, rounded to the K dtype; rows past the last
     * are zeros */
    for (int i = tid; i < BM * (HD / 2); i += NT) {
        const int r = i / (HD / 2), d = (i % (HD / 2)) * 2, rg = tile * BM + r;
        float x0 = 0.0f, x1 = 0.0f;
        if (rg < R) {
            const float *qrow = (const float *)qn_kt_at(&q, 0, kvh * G + rg % G, rg / G, 0);
            x0 = qrow[d];
            x1 = qrow[d + 1];
        }
        *(unsigned *)(sQ + r * QS + d) = pack2<DT>(x0, x1);
    }

    /* The visible keys of this thread's two rows (g and g + 8 of its
     * warp's 16), and of the block: its first row's token has the lowest
     * bounds and its last valid row's the highest. */
    int rlo[2], rhi[2];
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        const int rg = tile * BM + warp * 16 + g + rr * 8;
        rlo[rr] = rhi[rr] = 0;
        if (rg < R) qn_attn_keys(&p, p0, rg / G, &rlo[rr], &rhi[rr]);
    }
    int lo_first, hi_first, lo_last, hi_last;
    qn_attn_keys(&p, p0, tile * BM / G, &lo_first, &hi_first);
    qn_attn_keys(&p, p0, (min(tile * BM + BM, R) - 1) / G, &lo_last, &hi_last);
    const int len = max(hi_last - lo_first, 0);
    const int chunk = ((len + p.n_splits - 1) / p.n_splits + BN - 1) / BN * BN;
    const int blo = min(lo_first + split * chunk, lo_first + len), bhi = min(blo + chunk, lo_first + len);
    const int ntiles = (bhi - blo + BN - 1) / BN;
    /* tiles from full_lo to full_hi are visible to every row: no mask */
    const int full_lo = lo_last, full_hi = min(hi_first, bhi);
    const int off = blo - blo % C;

    const char *kb = (const char *)k.addr + kvh * k.nb[2];
    const char *vb = (const char *)v.addr + kvh * v.nb[2] + dv0 * 2;
    const long long knb = k.nb[1], vnb = v.nb[1];
    const unsigned sQa = smem_addr(sQ), sKa = smem_addr(sK), sVa = smem_addr(sV);

    /* Copy tile j0 of K (all D columns) or V (this block's DV columns). */
    auto load_tile = [&](unsigned dst, const char *base, long long nb, int cols, int stride, int j0) {
        const int chunks = cols / 8;
        for (int i = tid; i < BN * chunks; i += NT) {
            const int r = i / chunks, ch = i % chunks, j = j0 + r;
            int row = j - off;
            if (row >= C) row -= C;
            const bool ok = j < bhi;
            cp_async16(dst + (r * stride + ch * 8) * 2, ok ? base + row * nb + ch * 16 : base, ok ? 16 : 0);
        }
    };

    /* ldmatrix addresses of this lane: Q rows of the warp (A), K rows as
     * B's columns (two n-tiles of 8 keys by 16 d), V rows transposed (two
     * n-tiles of 8 columns by 16 keys) */
    const unsigned qoff = ((warp * 16 + lane % 16) * QS + (lane / 16) * 8) * 2;
    const unsigned koff = ((lane % 8 + (lane / 16) * 8) * QS + ((lane / 8) % 2) * 8) * 2;
    const unsigned voff = ((lane % 8 + ((lane / 8) % 2) * 8) * VS + (lane / 16) * 8) * 2;

    const float sl2 = p.scale * QN_ATTN_LOG2E, cap_l2 = p.softcap * QN_ATTN_LOG2E;
    const float scale_cap = p.softcap > 0.0f ? p.scale / p.softcap : 0.0f;
    float o[DV / 8][4];
#pragma unroll
    for (int n = 0; n < DV / 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    float m[2] = {NEG_INF, NEG_INF}, l[2] = {0.0f, 0.0f};

    if (ntiles > 0) {
        load_tile(sKa, kb, knb, HD, QS, blo);
        cp_commit();
    }
    for (int it = 0; it < ntiles; it++) {
        const int j0 = blo + it * BN;
        load_tile(sVa, vb, vnb, DV, VS, j0);
        cp_commit();
        cp_wait<1>(); /* K of this tile has landed (V may still be coming) */
        __syncthreads();

        float s[BN / 8][4];
#pragma unroll
        for (int n = 0; n < BN / 8; n++) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
        for (int ks = 0; ks < HD / 16; ks++) {
            unsigned a[4];
            ldsm_x4(a, sQa + qoff + ks * 32);
#pragma unroll
            for (int np = 0; np < BN / 16; np++) {
                unsigned b[4];
                ldsm_x4(b, sKa + koff + (np * 16 * QS + ks * 16) * 2);
                mma16816<DT>(s[2 * np], a, b[0], b[1]);
                mma16816<DT>(s[2 * np + 1], a, b[2], b[3]);
            }
        }

        /* base-2 logits; element e of n-tile n is row g + 8 * (e / 2), key
         * j0 + 8 n + 2 c + e % 2 */
        const bool full = j0 >= full_lo && j0 + BN <= full_hi;
        float mx[2] = {NEG_INF, NEG_INF};
#pragma unroll
        for (int n = 0; n < BN / 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                float x = p.softcap > 0.0f ? cap_l2 * tanh_approx(s[n][e] * scale_cap) : s[n][e] * sl2;
                if (!full) {
                    const int j = j0 + n * 8 + 2 * c + (e & 1), rr = e >> 1;
                    if (!(j < bhi && j >= rlo[rr] && j < rhi[rr])) x = NEG_INF;
                }
                s[n][e] = x;
                mx[e >> 1] = fmaxf(mx[e >> 1], x);
            }
        float mref[2];
#pragma unroll
        for (int rr = 0; rr < 2; rr++) {
            mx[rr] = fmaxf(mx[rr], __shfl_xor_sync(0xffffffffu, mx[rr], 1));
            mx[rr] = fmaxf(mx[rr], __shfl_xor_sync(0xffffffffu, mx[rr], 2));
            const float mn = fmaxf(m[rr], mx[rr]);
            mref[rr] = mn == NEG_INF ? 0.0f : mn;
            const float corr = exp2f(m[rr] - mref[rr]);
            m[rr] = mn;
            l[rr] *= corr;
#pragma unroll
            for (int n = 0; n < DV / 8; n++) {
                o[n][2 * rr] *= corr;
                o[n][2 * rr + 1] *= corr;
            }
        }
#pragma unroll
        for (int n = 0; n < BN / 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                s[n][e] = exp2f(s[n][e] - mref[e >> 1]);
                l[e >> 1] += s[n][e];
            }

        __syncthreads(); /* every warp is done with this K tile */
        if (it + 1 < ntiles) {
            load_tile(sKa, kb, knb, HD, QS, j0 + BN);
            cp_commit();
            cp_wait<1>(); /* V of this tile has landed */
        } else {
            cp_wait<0>();
        }
        __syncthreads();

#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++) {
            const unsigned a[4] = {pack2<DT>(s[2 * kk][0], s[2 * kk][1]), pack2<DT>(s[2 * kk][2], s[2 * kk][3]),
                                   pack2<DT>(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                   pack2<DT>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
            for (int dp = 0; dp < DV / 16; dp++) {
                unsigned b[4];
                ldsm_x4_trans(b, sVa + voff + (kk * 16 * VS + dp * 16) * 2);
                mma16816<DT>(o[2 * dp], a, b[0], b[1]);
                mma16816<DT>(o[2 * dp + 1], a, b[2], b[3]);
            }
        }
        __syncthreads(); /* every warp is done with this V tile */
    }

    /* the row sums are spread over the 4 lanes of a quad */
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        l[rr] += __shfl_xor_sync(0xffffffffu, l[rr], 1);
        l[rr] += __shfl_xor_sync(0xffffffffu, l[rr], 2);
    }
    const long long rows = (long long)p.n_tokens * p.n_q_heads;
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        const int rg = tile * BM + warp * 16 + g + rr * 8;
        if (rg >= R) continue;
        const int t = rg / G, h = kvh * G + rg % G;
        if (p.n_splits == 1) {
            float sum = l[rr];
            if (sinks.addr)
                sum += exp2f(*(const float *)qn_kt_at(&sinks, h, 0, 0, 0) * QN_ATTN_LOG2E -
                             (m[rr] == NEG_INF ? 0.0f : m[rr]));
            const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
            float *orow = (float *)qn_kt_at(&out, 0, h, t, 0);
#pragma unroll
            for (int n = 0; n < DV / 8; n++) {
                orow[dv0 + n * 8 + 2 * c] = o[n][2 * rr] * inv;
                orow[dv0 + n * 8 + 2 * c + 1] = o[n][2 * rr + 1] * inv;
            }
        } else {
            const long long row = (long long)split * rows + (long long)t * p.n_q_heads + h;
            float *arow = scratch + row * HD;
#pragma unroll
            for (int n = 0; n < DV / 8; n++) {
                arow[dv0 + n * 8 + 2 * c] = o[n][2 * rr];
                arow[dv0 + n * 8 + 2 * c + 1] = o[n][2 * rr + 1];
            }
            if (dv0 == 0 && c == 0) {
                float *ml = scratch + (long long)p.n_splits * rows * HD + row * 2;
                ml[0] = m[rr];
                ml[1] = l[rr];
            }
        }
    }
}

#define PREFILL_KERNEL(dn, DT)                                                                                   \
    extern "C" __global__ void __launch_bounds__(32 * QN_ATTN_PF_WARPS, QN_ATTN_PF_MINB(HD))                     \
        attn_prefill_##dn(qn_kt out, qn_kt q, qn_kt k, qn_kt v, qn_kt pos, qn_kt sinks, float *scratch,           \
                          qn_attn_params p) {                                                                      \
        QN_GRID_WAIT();                                                                                            \
        attn_prefill<DT>(out, q, k, v, pos, sinks, scratch, p);                                                   \
    }
PREFILL_KERNEL(f16, QN_KT_F16)
PREFILL_KERNEL(bf16, QN_KT_BF16)

