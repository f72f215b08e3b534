/* Quantized matrix products on tensor cores, for prefill (more tokens than
 * the matvec kernels take): y[j, n] = sum_k W[n, k] x[j, k], dense, with a
 * fused gate/up activation (GLU), and expert-routed.
 *
 * Layout: W rows of K weights in one block type (blocks.cuh), row n of
 * expert e at w + e * expert_bytes + n * row_bytes. x rows of K values in
 * the compute dtype (f16; bf16 for bf16 and f32 weights), 16-byte aligned,
 * with a per-row f32 multiplier (mm_x_prep writes both from f32/f16/bf16
 * x; see QN_MM_X_TOP). y f32, row j at y + j * y_nb1 (qn_mm_args).
 *
 * Grid (weight tiles, token tiles), QN_MM_THREADS threads. A block computes
 * QN_MM_BN weight rows (with a GLU: 64 gate rows and the same 64 up rows,
 * so every thread holds a gate and an up sum of the same output) times BM
 * token rows (128, or 64 for few tokens and the routed form), K in steps
 * of KT (128; 64 for f32 weights):
 *
 *   raw weight bytes --cp.async--> shared (two stages)
 *       --loader: dequantize (blocks.cuh's unpack, the reference's
 *         multiply-add) and round--> weight tile, f16 (two buffers)
 *   x rows --cp.async--> x tile (two buffers)
 *   ldmatrix + mma.sync m16n8k16, f32 accumulators in registers.
 *
 * Step s: one barrier; copies for x of s+1 and raw bytes of s+2 start; the
 * mma of s and the dequantization of s+1 (its raw bytes arrived during step
 * s-1) run together; wait for the copies. So copies have a whole step to
 * land and dequantization hides behind the tensor cores. A warp owns a
 * WN x WM piece of the tile (64 x 32 or 32 x 32). Bytes: each block reads
 * its weight rows once and its token rows once; the weights are re-read
 * once per token tile (from L2 when tiles of the same rows run together).
 *
 * Routed: tiles come from mm_route's list (expert, first pair, rows); the
 * grid's y is the list's upper bound and blocks past its length return.
 *
 * A weight format plugs in as a loader L (qn_mm_gguf below is ggml's):
 *   L::wargs          its weight arguments, the kernel's first parameter
 *   L::DT             compute dtype (QN_KT_F16 or QN_KT_BF16), x's too
 *   L::KT             elements of a row per step (a multiple of 16)
 *   L::RAW_BYTES      shared bytes of one raw stage (a multiple of 16)
 *   L::ROW_BYTES      shared bytes of its per-block row state
 *   L::setup(wa, rows, glu, n0, e, N)       row state for the block's tile:
 *                      tile row r is gate/w row n0 + r (with glu: r < 64
 *                      gate rows n0 + r, r >= 64 up rows n0 + r - 64),
 *                      clamped to N - 1, of expert e
 *   L::issue(wa, rows, raw, s, K)           start cp.async copies of step
 *                      s's raw data into a raw stage (no wait)
 *   L::dequant(rows, raw, s, K, tile)       write step s's weights as DT
 *                      into tile[QN_MM_BN][KT + 8], zeros past K
 * All are called by every thread of the block. The module is compiled per
 * block type (-DQN_BLOCK); without it, it holds mm_x_prep and mm_route. */
#include "blocks.cuh"
#include "matmul_args.cuh"
#include "mma.cuh"
#include "ops_math.cuh"

#define MM_NT QN_MM_THREADS
#define MM_BN QN_MM_BN

#if defined(QN_BLOCK) || defined(QN_AFFINE_BITS)

/* The weight row of tile row r (the loaders' setup): gate (or the only
 * weight) row n0 + r, with a GLU up rows for r >= MM_BN / 2 (*up set),
 * clamped to N - 1. */
__device__ __forceinline__ long long qn_mm_tile_row(int r, int glu, long long n0, long long N, bool *up) {
    *up = glu && r >= MM_BN / 2;
    const long long n = n0 + (glu ? r % (MM_BN / 2) : r);
    return n < N ? n : N - 1;
}

#ifdef QN_BLOCK

/* ---- the ggml block loader */

template <class B>
struct qn_mm_dtype {
    enum { DT = QN_KT_F16 };
};
/* bf16 weights may exceed f16's range; f32 weights too, and bf16 keeps it */
template <>
struct qn_mm_dtype<qn_f32> {
    enum { DT = QN_KT_BF16 };
};
template <>
struct qn_mm_dtype<qn_bf16> {
    enum { DT = QN_KT_BF16 };
};

/* Steps cover whole blocks, or (256-element blocks) half a block: parts
 * 0-3 hold elements 0-127 and parts 4-7 elements 128-255 in every such
 * type, so a step dequantizes four parts and the raw stage holds the whole
 * block (its scales serve both halves). */
template <class B>
struct qn_mm_gguf {
    typedef qn_mm_gguf_w wargs;
    enum {
        DT = qn_mm_dtype<B>::DT,
        KT = QN_MM_KT(B::QK, B::BYTES),
        BPS = B::QK <= KT ? KT / B::QK : 1, /* blocks a step */
        HALF = B::QK > KT ? B::QK / KT : 1, /* steps a block */
        PPS = B::PARTS / HALF,              /* parts of a block a step */
        UPR = BPS * PPS,                    /* units (parts) of a row a step */
        RP = QN_MM_RAW_PITCH(B::QK, B::BYTES),
        RAW_BYTES = MM_BN * RP,
        ROW_BYTES = 8 * MM_BN,
    };

    static __device__ void setup(const wargs &wa, unsigned char *rows, int glu, long long n0, int e, long long N) {
        unsigned long long *base = (unsigned long long *)rows;
        for (int r = threadIdx.x; r < MM_BN; r += MM_NT) {
            bool up;
            const long long n = qn_mm_tile_row(r, glu, n0, N, &up);
            base[r] = (up ? wa.up : wa.w) + (unsigned long long)e * wa.expert_bytes + n * wa.row_bytes;
        }
    }

    /* The raw bytes of step s in every row: `bytes` from byte `first`. */
    static __device__ __forceinline__ void step_bytes(int s, long long K, long long &first, int &bytes) {
        const long long b0 = (long long)(s / HALF) * BPS, left = K / B::QK - b0;
        first = b0 * B::BYTES;
        bytes = (int)(left < BPS ? left : BPS) * B::BYTES;
    }

    /* 16-byte copies of the aligned span around each row's bytes; the
     * bytes before a row's start lie in its allocation (which starts
     * 16-byte aligned), the end is cut exactly by the copy's source size. */
    static __device__ void issue(const wargs &, const unsigned char *rows, unsigned char *raw, int s, long long K) {
        const unsigned long long *base = (const unsigned long long *)rows;
        long long first;
        int bytes;
        step_bytes(s, K, first, bytes);
        const unsigned dst = smem_addr(raw);
        constexpr int CH = RP / 16;
        for (int i = threadIdx.x; i < MM_BN * CH; i += MM_NT) {
            const int r = i / CH, c = i % CH;
            const unsigned long long src = base[r] + first, a = (src & ~15ull) + 16 * c;
            const long long left = (long long)(src + bytes - a);
            if (left > 0) cp_async16(dst + r * RP + 16 * c, (const void *)a, left < 16 ? (int)left : 16);
        }
    }

    /* Thread units: consecutive threads take consecutive parts of a row,
     * so a warp's raw reads fall in a few rows' contiguous bytes. Each part
     * unpacks to PE weights in runs of 8 positions: one 16-byte store a run. */
    static __device__ void dequant(const unsigned char *rows, const unsigned char *raw, int s, long long K,
                                   unsigned short *tile) {
        const unsigned long long *base = (const unsigned long long *)rows;
        long long first;
        int bytes;
        step_bytes(s, K, first, bytes);
        constexpr int P = KT + 8;
        for (int i = threadIdx.x; i < MM_BN * UPR; i += MM_NT) {
            const int r = i / UPR, u = i % UPR, b = u / PPS, p = (s % HALF) * PPS + u % PPS;
            unsigned short *dst = tile + r * P + b * B::QK - (s % HALF) * KT;
            const bool have = b * B::BYTES < bytes;
            float q[B::PE], d[B::NS], m[B::NS];
            if (have) B::unpack(raw + r * RP + ((base[r] + first) & 15) + b * B::BYTES, p, q, d, m);
#pragma unroll
            for (int e = 0; e < B::PE; e += 8) {
                uint4 v = make_uint4(0u, 0u, 0u, 0u);
                if (have) {
                    v.x = pack2<DT>(qn_block_value<B>(q, d, m, e), qn_block_value<B>(q, d, m, e + 1));
                    v.y = pack2<DT>(qn_block_value<B>(q, d, m, e + 2), qn_block_value<B>(q, d, m, e + 3));
                    v.z = pack2<DT>(qn_block_value<B>(q, d, m, e + 4), qn_block_value<B>(q, d, m, e + 5));
                    v.w = pack2<DT>(qn_block_value<B>(q, d, m, e + 6), qn_block_value<B>(q, d, m, e + 7));
                }
                *(uint4 *)(dst + B::pos(p, e)) = v;
            }
        }
    }
};

#endif /* QN_BLOCK */

#ifdef QN_AFFINE_BITS
#include "affine.cuh"

/* ---- the MLX affine loader (affine.cuh): a step is 128 weights of every
 * row, four units. Its raw bytes are the q words and the step's 1 to 4
 * scales and biases, each copied as the 16-byte chunks around them (those
 * chunks lie in the tensors' allocations, which start 16-byte aligned; the
 * copy's source size cuts the end). A unit dequantizes as the reference
 * does, s * q + b in f32, then rounds to f16. */
struct qn_mm_affine {
    typedef qn_affine_w wargs;
    enum {
        BITS = QN_AFFINE_BITS,
        DT = QN_KT_F16,
        KT = 128,
        QB = 16 * BITS, /* q bytes of a row a step */
        QCH = QB / 16 + 1, SCH = 2, /* chunks of q, of scales (and of biases) */
        RP = QN_MM_AFFINE_RAW_PITCH(BITS),
        RAW_BYTES = MM_BN * RP,
        ROW_BYTES = QN_MM_AFFINE_ROW_BYTES,
    };

    /* row state: q, scale and bias row addresses, then the group shift and
     * the scale dtype for dequant */
    static __device__ void setup(const wargs &wa, unsigned char *rows, int glu, long long n0, int e, long long N) {
        unsigned long long *base = (unsigned long long *)rows;
        for (int r = threadIdx.x; r < MM_BN; r += MM_NT) {
            bool m;
            const long long n = qn_mm_tile_row(r, glu, n0, N, &m);
            /* selects, not wa.q[m]: a variable index would copy the record to local memory */
            base[r] = (m ? wa.q[1] : wa.q[0]) + e * wa.q_expert + n * wa.q_row;
            base[MM_BN + r] = (m ? wa.s[1] : wa.s[0]) + e * wa.s_expert + n * wa.s_row;
            base[2 * MM_BN + r] = (m ? wa.b[1] : wa.b[0]) + e * wa.b_expert + n * wa.b_row;
        }
        if (threadIdx.x == 0) {
            int *info = (int *)(base + 3 * MM_BN);
            info[0] = wa.group_shift;
            info[1] = wa.stype;
        }
    }

    /* Elements and scales of step s: the first element, the q bytes and
     * the scale bytes. */
    static __device__ __forceinline__ void step_span(int s, long long K, int gs, int ssz, long long &e0, int &qbytes,
                                                     int &sbytes) {
        e0 = (long long)s * KT;
        const int ne = (int)(K - e0 < KT ? K - e0 : KT); /* a whole number of groups */
        qbytes = ne * BITS / 8;
        sbytes = (ne >> gs) * ssz;
    }

    static __device__ void issue(const wargs &wa, const unsigned char *rows, unsigned char *raw, int s, long long K) {
        const unsigned long long *base = (const unsigned long long *)rows;
        long long e0;
        int qbytes, sbytes;
        const int ssz = wa.stype == QN_KT_F32 ? 4 : 2;
        step_span(s, K, wa.group_shift, ssz, e0, qbytes, sbytes);
        const unsigned dst = smem_addr(raw);
        constexpr int CH = QCH + 2 * SCH;
        for (int i = threadIdx.x; i < MM_BN * CH; i += MM_NT) {
            const int r = i / CH, c = i % CH;
            unsigned long long src;
            int bytes, at;
            if (c < QCH) src = base[r] + e0 * BITS / 8, bytes = qbytes, at = 16 * c;
            else if (c < QCH + SCH) src = base[MM_BN + r] + (e0 >> wa.group_shift) * ssz, bytes = sbytes, at = 16 * (c - QCH);
            else src = base[2 * MM_BN + r] + (e0 >> wa.group_shift) * ssz, bytes = sbytes, at = 16 * (c - QCH - SCH);
            const unsigned long long a = (src & ~15ull) + at;
            const long long left = (long long)(src + bytes - a);
            const int slot = c < QCH ? 0 : c < QCH + SCH ? QB + 16 : QB + 16 + 16 * SCH;
            if (left > 0) cp_async16(dst + r * RP + slot + at, (const void *)a, left < 16 ? (int)left : 16);
        }
    }

    /* A thread a unit: consecutive threads take a row's four units. */
    static __device__ void dequant(const unsigned char *rows, const unsigned char *raw, int s, long long K,
                                   unsigned short *tile) {
        const unsigned long long *base = (const unsigned long long *)rows;
        const int *info = (const int *)(base + 3 * MM_BN);
        const int gs = info[0], st = info[1], ssz = st == QN_KT_F32 ? 4 : 2;
        constexpr int P = KT + 8;
        for (int i = threadIdx.x; i < MM_BN * 4; i += MM_NT) {
            const int r = i / 4, u = i % 4;
            const long long e0 = (long long)s * KT + 32 * u;
            uint4 *dst = (uint4 *)(tile + r * P + 32 * u);
            if (e0 >= K) {
#pragma unroll
                for (int j = 0; j < 4; j++) dst[j] = make_uint4(0u, 0u, 0u, 0u);
                continue;
            }
            const unsigned char *slot = raw + r * RP;
            const unsigned long long qsrc = base[r] + (long long)s * QB, ssrc = base[MM_BN + r] + (((long long)s * KT) >> gs) * ssz;
            unsigned w[BITS];
#pragma unroll
            for (int k = 0; k < BITS; k++) w[k] = *(const unsigned *)(slot + (qsrc & 15) + u * 4 * BITS + 4 * k);
            const int at = (int)(ssrc & 15) + ((32 * u) >> gs) * ssz;
            const unsigned sb = ssz == 4 ? *(const unsigned *)(slot + QB + 16 + at) : *(const unsigned short *)(slot + QB + 16 + at);
            const unsigned bb = ssz == 4 ? *(const unsigned *)(slot + QB + 16 + 16 * SCH + at)
                                         : *(const unsigned short *)(slot + QB + 16 + 16 * SCH + at);
            const float sc = qn_af_float(sb, st), bi = qn_af_float(bb, st);
            float v[32];
#pragma unroll
            for (int e = 0; e < 32; e++) {
                const unsigned q = qn_af<BITS>::field(w, e) >> qn_af<BITS>::pos(e);
                v[e] = __fadd_rn(__fmul_rn(sc, __uint_as_float(q | 0x4B000000u) - 8388608.0f), bi);
            }
#pragma unroll
            for (int j = 0; j < 4; j++)
                dst[j] = make_uint4(pack2<DT>(v[8 * j], v[8 * j + 1]), pack2<DT>(v[8 * j + 2], v[8 * j + 3]),
                                    pack2<DT>(v[8 * j + 4], v[8 * j + 5]), pack2<DT>(v[8 * j + 6], v[8 * j + 7]));
        }
    }
};
#endif /* QN_AFFINE_BITS */

/* ---- the kernel */

template <int BM>
struct qn_mm_geom {
    enum {
        WARPS_N = BM >= 128 ? 2 : 4,
        WARPS_M = MM_NT / 32 / WARPS_N,
        WN = MM_BN / WARPS_N, /* a warp's weight rows */
        WM = BM / WARPS_M,    /* its token rows */
        FN = WN / 16,         /* m16 fragments */
        FM = WM / 8,          /* n8 fragments */
    };
};

extern __shared__ __align__(16) unsigned char qn_mm_smem[];

template <class L, int BM>
__device__ __forceinline__ void qn_mm(const typename L::wargs &wa, const qn_mm_args &a) {
    typedef qn_mm_geom<BM> G;
    constexpr int KT = L::KT, P = KT + 8, DT = L::DT;
    unsigned short *wt = (unsigned short *)qn_mm_smem;       /* [2][BN][P] */
    unsigned short *xt = wt + 2 * MM_BN * P;                 /* [2][BM][P] */
    unsigned char *raw = (unsigned char *)(xt + 2 * BM * P); /* [2][RAW_BYTES] */
    unsigned long long *tok_x = (unsigned long long *)(raw + 2 * L::RAW_BYTES);
    int *tok_j = (int *)(tok_x + BM);
    float *tok_s = (float *)(tok_j + BM);
    unsigned char *rows = (unsigned char *)(tok_s + BM);

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const long long n0 = (long long)blockIdx.x * (a.glu ? MM_BN / 2 : MM_BN);
    int e = 0, count;
    long long first;
    if (a.tiles) {
        const int *tl = (const int *)a.tiles;
        if ((int)blockIdx.y >= tl[0]) return;
        e = tl[4 + 4 * blockIdx.y];
        first = tl[5 + 4 * blockIdx.y];
        count = tl[6 + 4 * blockIdx.y];
    } else {
        first = (long long)blockIdx.y * BM;
        count = (int)(a.M - first < BM ? a.M - first : BM);
    }
    /* the tile's token rows: x row, y row j (-1: none), x multiplier */
    for (int r = tid; r < BM; r += MM_NT) {
        int j = -1;
        if (r < count) j = a.tiles ? ((const int *)a.pairs)[first + r] : (int)(first + r);
        tok_j[r] = j;
        tok_x[r] = a.x;
        tok_s[r] = 0.0f;
        if (j >= 0) {
            const int slot = j % a.top_k, tok = j / a.top_k, xs = a.x_per_slot ? slot : 0;
            tok_x[r] = a.x + xs * a.x_slot_nb + tok * a.x_tok_nb;
            tok_s[r] = a.x_scale ? ((const float *)a.x_scale)[(long long)tok * (a.x_per_slot ? a.top_k : 1) + xs]
                                 : 1.0f;
        }
    }
    L::setup(wa, rows, a.glu, n0, e, a.N);
    __syncthreads();

    const long long K = a.K;
    const int S = (int)((K + KT - 1) / KT);
    auto issue_x = [&](int s, int buf) {
        const unsigned dst = smem_addr(xt + buf * BM * P);
        constexpr int CH = KT / 8;
        for (int i = tid; i < BM * CH; i += MM_NT) {
            const int r = i / CH, c = i % CH;
            const long long k = (long long)s * KT + 8 * c;
            const bool ok = tok_j[r] >= 0 && k < K;
            cp_async16(dst + (r * P + 8 * c) * 2, (const void *)(ok ? tok_x[r] + 2 * k : a.x), ok ? 16 : 0);
        }
    };

    /* the warp's fragments: tile rows of its m16 pieces (with a GLU the
     * first half gate rows, the second the same rows of up), token rows */
    const int wn = warp % G::WARPS_N, wm = warp / G::WARPS_N;
    int arow[G::FN];
#pragma unroll
    for (int i = 0; i < G::FN; i++)
        arow[i] = !a.glu              ? wn * G::WN + 16 * i
                  : i < G::FN / 2     ? wn * (G::WN / 2) + 16 * i
                                      : MM_BN / 2 + wn * (G::WN / 2) + 16 * (i - G::FN / 2);
    const unsigned a_off = ((lane % 16) * P + (lane / 16) * 8) * 2;
    const unsigned b_off = ((wm * G::WM + lane % 8 + (lane / 16) * 8) * P + ((lane / 8) % 2) * 8) * 2;

    float acc[G::FN][G::FM][4];
#pragma unroll
    for (int i = 0; i < G::FN; i++)
#pragma unroll
        for (int j = 0; j < G::FM; j++) acc[i][j][0] = acc[i][j][1] = acc[i][j][2] = acc[i][j][3] = 0.0f;

    auto mma_step = [&](int buf) {
        const unsigned ws = smem_addr(wt + buf * MM_BN * P), xs = smem_addr(xt + buf * BM * P);
#pragma unroll
        for (int kk = 0; kk < KT / 16; kk++) {
            unsigned af[G::FN][4], bf[G::FM / 2][4];
#pragma unroll
            for (int i = 0; i < G::FN; i++) ldsm_x4(af[i], ws + arow[i] * P * 2 + a_off + kk * 32);
#pragma unroll
            for (int jp = 0; jp < G::FM / 2; jp++) ldsm_x4(bf[jp], xs + b_off + jp * 16 * P * 2 + kk * 32);
#pragma unroll
            for (int i = 0; i < G::FN; i++)
#pragma unroll
                for (int j = 0; j < G::FM; j++)
                    mma16816<DT>(acc[i][j], af[i], bf[j / 2][2 * (j % 2)], bf[j / 2][2 * (j % 2) + 1]);
        }
    };

    /* prologue: raw bytes of steps 0 and 1, x of step 0; weights of step 0 */
    L::issue(wa, rows, raw, 0, K);
    if (S > 1) L::issue(wa, rows, raw + L::RAW_BYTES, 1, K);
    issue_x(0, 0);
    cp_commit();
    cp_wait<0>();
    __syncthreads();
    L::dequant(rows, raw, 0, K, wt);
    for (int s = 0; s < S; s++) {
        __syncthreads(); /* weights of s dequantized, x of s and raw of s + 1 landed, step s - 1 done */
        if (s + 1 < S) issue_x(s + 1, (s + 1) % 2);
        if (s + 2 < S) L::issue(wa, rows, raw + (s % 2) * L::RAW_BYTES, s + 2, K);
        cp_commit();
        mma_step(s % 2);
        if (s + 1 < S) L::dequant(rows, raw + ((s + 1) % 2) * L::RAW_BYTES, s + 1, K, wt + ((s + 1) % 2) * MM_BN * P);
        cp_wait<0>();
    }

    /* epilogue: fragment element (h2, h) is tile row arow + lane / 4 + 8 h2,
     * token row wm * WM + 8 j + 2 (lane % 4) + h */
#pragma unroll
    for (int i = 0; i < G::FN; i++) {
        if (a.glu && i >= G::FN / 2) continue;
#pragma unroll
        for (int h2 = 0; h2 < 2; h2++) {
            const long long n = n0 + arow[i] + lane / 4 + 8 * h2;
            if (n >= a.N) continue;
#pragma unroll
            for (int j = 0; j < G::FM; j++)
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    const int tr = wm * G::WM + 8 * j + 2 * (lane % 4) + h, jr = tok_j[tr];
                    if (jr < 0) continue;
                    float v = acc[i][j][2 * h2 + h] * tok_s[tr];
                    if (a.glu) v = qn_act_apply(a.act, v, 0.0f) * (acc[(i + G::FN / 2) % G::FN][j][2 * h2 + h] * tok_s[tr]);
                    ((float *)a.y)[jr * a.y_nb1 + n] = v;
                }
        }
    }
}

#define MATMUL(name, bm)                                                                       \
    extern "C" __global__ void __launch_bounds__(MM_NT, 1)                                     \
        mm_##name##_##bm(qn_mm_gguf<QN_CAT(qn_, name)>::wargs wa, qn_mm_args a) {             \
        static_assert(QN_MM_SMEM(QN_CAT(qn_, name)::QK, QN_CAT(qn_, name)::BYTES, bm) ==        \
                          4 * (MM_BN + bm) * (qn_mm_gguf<QN_CAT(qn_, name)>::KT + 8) +          \
                              2 * qn_mm_gguf<QN_CAT(qn_, name)>::RAW_BYTES + 16 * bm +          \
                              qn_mm_gguf<QN_CAT(qn_, name)>::ROW_BYTES,                         \
                      "QN_MM_SMEM matches the kernel's layout");                               \
        qn_mm<qn_mm_gguf<QN_CAT(qn_, name)>, bm>(wa, a);                                        \
    }
#define MATMUL_EXPAND(name) MATMUL(name, 64) MATMUL(name, 128)
#ifdef QN_BLOCK
MATMUL_EXPAND(QN_BLOCK)
#endif

#define MATMUL_AFFINE(bm)                                                                                    \
    extern "C" __global__ void __launch_bounds__(MM_NT, 1) mm_affine_##bm(qn_affine_w wa, qn_mm_args a) {    \
        static_assert(QN_MM_AFFINE_SMEM(QN_AFFINE_BITS, bm) == 4 * (MM_BN + bm) * (qn_mm_affine::KT + 8) +   \
                                                                  2 * qn_mm_affine::RAW_BYTES + 16 * bm +  \
                                                                  qn_mm_affine::ROW_BYTES,                  \
                      "QN_MM_AFFINE_SMEM matches the kernel's layout");                                     \
        qn_mm<qn_mm_affine, bm>(wa, a);                                                                      \
    }
#ifdef QN_AFFINE_BITS
MATMUL_AFFINE(64) MATMUL_AFFINE(128)
#endif

#else /* ---- type-independent kernels */

/* x rows in the compute dtype `dt` with their multipliers (QN_MM_X_TOP):
 * row r of x is x + (r % ne1) * nb1 + (r / ne1) * nb2 (ne1: slots a token),
 * written to out + r * K, its multiplier 2^-shift to scale[r]. Grid: a block
 * a row. Bytes: the row read twice (the second time from cache), written
 * once at 2 bytes a value. */
extern "C" __global__ void __launch_bounds__(256)
    mm_x_prep(const char *x, long long ne1, long long nb1, long long nb2, long long K, int xt, int dt,
              unsigned *out, float *scale) {
    __shared__ float red[32];
    const long long r = blockIdx.x;
    const char *row = x + (r % ne1) * nb1 + (r / ne1) * nb2;
    const int es = xt == QN_KT_F32 ? 4 : 2;
    float mx = 0.0f;
    for (long long i = threadIdx.x; i < K; i += 4 * blockDim.x) {
        float f[4];
        qn_load4(f, row, es, xt, i, blockDim.x, K);
        for (int k = 0; k < 4; k++) mx = fmaxf(mx, fabsf(f[k]));
    }
    mx = qn_block_max(mx, red);
    /* mx = m * 2^ex with m in [0.5, 1): the top exponent is ex - 1 */
    int ex = 0;
    frexpf(mx, &ex);
    int shift = mx > 0.0f && mx <= 3.402823466e38f ? QN_MM_X_TOP - (ex - 1) : 0;
    if (shift > QN_MM_X_MAX_SHIFT) shift = QN_MM_X_MAX_SHIFT;
    const float up = __int_as_float((127 + shift) << 23);
    for (long long i = 2 * threadIdx.x; i < K; i += 2 * blockDim.x) {
        const float lo = qn_load_f32(row + i * es, xt) * up, hi = qn_load_f32(row + (i + 1) * es, xt) * up;
        out[(r * K + i) / 2] = dt == QN_KT_F16 ? pack2<QN_KT_F16>(lo, hi) : pack2<QN_KT_BF16>(lo, hi);
    }
    if (threadIdx.x == 0) scale[r] = __int_as_float((127 - shift) << 23);
}

/* Block-wide exclusive prefix sum of v (every thread gets its offset) and
 * the total; red holds 32 ints. */
__device__ __forceinline__ int qn_scan_exclusive(int v, int *red, int *total) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
    int inc = v;
    for (int o = 1; o < 32; o *= 2) {
        const int t = __shfl_up_sync(0xffffffffu, inc, o);
        if (lane >= o) inc += t;
    }
    __syncthreads();
    if (lane == 31) red[warp] = inc;
    __syncthreads();
    int before = 0, all = 0;
    for (int w = 0; w < nw; w++) {
        before += w < warp ? red[w] : 0;
        all += red[w];
    }
    *total = all;
    return before + inc - v;
}

/* The routed form's lists (matmul_args.cuh): count the (slot, token) pairs
 * of each expert, lay the experts out in order, cut each into tiles of at
 * most bm rows, and place every pair's j in its expert's range (in no
 * particular order within it: each output row is computed alone, so the
 * order changes no bits). An id outside [0, n_experts) raises
 * QN_FLAG_BAD_EXPERT and its pair is left out. One block of 1024 threads;
 * shared memory: 2 n_experts ints. Bytes: ids read twice. */
extern "C" __global__ void __launch_bounds__(1024)
    mm_route(const int *ids, long long ids_nb1, int top_k, long long M, int n_experts, int bm, int *tiles,
             int *pairs, int *flags) {
    extern __shared__ int qn_route_smem[];
    __shared__ int red[32];
    int *cnt = qn_route_smem, *fill = qn_route_smem + n_experts;
    const long long P = (long long)top_k * M;
    for (int e = threadIdx.x; e < n_experts; e += blockDim.x) cnt[e] = 0;
    __syncthreads();
    bool bad = false;
    for (long long j = threadIdx.x; j < P; j += blockDim.x) {
        const int e = ids[j % top_k + (j / top_k) * ids_nb1];
        if (e < 0 || e >= n_experts) bad = true;
        else atomicAdd(&cnt[e], 1);
    }
    if (bad) atomicOr(flags, QN_FLAG_BAD_EXPERT);
    __syncthreads();
    /* thread t lays out experts [t * per, (t + 1) * per) */
    const int per = (n_experts + blockDim.x - 1) / blockDim.x, e0 = threadIdx.x * per;
    int my_pairs = 0, my_tiles = 0;
    for (int e = e0; e < e0 + per && e < n_experts; e++) {
        my_pairs += cnt[e];
        my_tiles += (cnt[e] + bm - 1) / bm;
    }
    int n_pairs, n_tiles;
    int p0 = qn_scan_exclusive(my_pairs, red, &n_pairs);
    int t0 = qn_scan_exclusive(my_tiles, red, &n_tiles);
    for (int e = e0; e < e0 + per && e < n_experts; e++) {
        for (int k = 0; k < cnt[e]; k += bm) {
            int *t = tiles + 4 + 4 * t0++;
            t[0] = e;
            t[1] = p0 + k;
            t[2] = cnt[e] - k < bm ? cnt[e] - k : bm;
            t[3] = 0;
        }
        fill[e] = p0;
        p0 += cnt[e];
    }
    if (threadIdx.x == 0) tiles[0] = n_tiles;
    __syncthreads();
    for (long long j = threadIdx.x; j < P; j += blockDim.x) {
        const int e = ids[j % top_k + (j / top_k) * ids_nb1];
        if (e >= 0 && e < n_experts) pairs[atomicAdd(&fill[e], 1)] = (int)j;
    }
}

#endif
