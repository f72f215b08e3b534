/* Sampling one token per row of logits, on the device (see qn_sample in
 * quanta.h for the semantics; sample.c on the CPU takes the same steps in
 * the same orders).
 *
 * Layout: logits f32 [vocab, rows] (any strides); recent i32 [window,
 * rows]; token, logprob and counter [rows]. Grid: one block of 1024
 * threads per row as blockIdx.x (striding over rows). Steps, each a pass
 * over the row by the whole block (the row is 1 MB at a 262144 vocabulary,
 * read from L2 after the first pass):
 *   1. the repetition penalty, written into logits (a thread per recent id);
 *   2. max, sum of exp and arg-max (one pass, running max per thread);
 *   greedy: done. With top_k:
 *   3. radix select of the top_k-th largest logit over order-preserving
 *      32-bit keys: 11, 11 and 10 bits a pass (2048-bin histograms in
 *      shared memory), stopping as soon as the boundary bin and everything
 *      above it fit in the QN_SAMPLE_CAP candidate slots;
 *   4. gather those candidates, sort them on chip (bitonic, by key then id),
 *      and let one warp apply top_p, min_p and temperature and draw.
 *   Without top_k (full vocabulary, min_p alone):
 *   3. each thread sums the weights of its ids (t, t + 1024, ...), a warp
 *      scans the 1024 shares, and walks the share holding the draw.
 * Shared memory: 16 KB of candidates, 8 KB of histogram, 4 KB of shares. */
#include "ops_math.cuh"

#define T QN_SAMPLE_THREADS
#define BINS 2048

/* Inclusive prefix sum over the warp's lanes. */
__device__ __forceinline__ float warp_scan(float v) {
    const int lane = threadIdx.x & 31;
    for (int o = 1; o < 32; o <<= 1) {
        float u = __shfl_up_sync(0xffffffffu, v, o);
        if (lane >= o) v += u;
    }
    return v;
}

/* (v, i) beats (w, j): larger value, then lower id. */
__device__ __forceinline__ bool beats(float v, int i, float w, int j) {
    return i >= 0 && (j < 0 || v > w || (v == w && i < j));
}

/* The float a key came from. */
__device__ __forceinline__ float key_float(unsigned k) {
    return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

/* The first index in [0, n) where the running sum of f(j) in index order
 * exceeds target (>= target when inclusive_ge), for a warp: lane l walks
 * the l-th run of ceil(n / 32) consecutive indices. Returns n when none
 * does. Every lane of warp 0 calls it; f is evaluated twice per index. */
template <typename F>
__device__ int warp_find(int n, float target, bool ge, F f) {
    const int lane = threadIdx.x & 31, per = (n + 31) / 32;
    const int lo = min(n, lane * per), hi = min(n, lo + per);
    float mine = 0.0f;
    for (int j = lo; j < hi; j++) mine += f(j);
    float incl = warp_scan(mine), cum = incl - mine;
    int found = n;
    for (int j = lo; j < hi; j++) {
        cum += f(j);
        if (ge ? cum >= target : cum > target) {
            found = j;
            break;
        }
    }
    for (int o = 16; o > 0; o >>= 1) found = min(found, __shfl_xor_sync(0xffffffffu, found, o));
    return found;
}

extern "C" __global__ void __launch_bounds__(T, 1) sample(qn_sample_args a) {
    __shared__ unsigned long long cand[QN_SAMPLE_CAP];
    __shared__ unsigned hist[BINS];
    __shared__ float share[T];
    __shared__ float red[32];
    __shared__ float arg_v[32];
    __shared__ int arg_i[32];
    __shared__ unsigned n_above, n_in;
    __shared__ int s_token;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const long long V = a.logits.ne[0], nb = a.logits.nb[0];
    const float NEG_INF = __int_as_float(0xff800000);

    for (long long row = blockIdx.x; row < a.logits.ne[1]; row += gridDim.x) {
        char *L = qn_kt_at(&a.logits, 0, row, 0, 0);
#define LOGIT(i) (*(float *)(L + (long long)(i) * nb))

        /* 1. the penalty, once per distinct id */
        if (a.has_recent && a.penalty != 1.0f) {
            for (long long j = tid; j < a.recent.ne[0]; j += T) {
                int id = *(const int *)qn_kt_at(&a.recent, j, row, 0, 0);
                bool dup = id < 0 || id >= V;
                for (long long k = 0; k < j && !dup; k++) dup = *(const int *)qn_kt_at(&a.recent, k, row, 0, 0) == id;
                if (!dup) {
                    float l = LOGIT(id);
                    LOGIT(id) = l > 0.0f ? l / a.penalty : l * a.penalty;
                }
            }
            __syncthreads();
        }

        /* 2. max, sum of exp, arg-max (greedy without a logprob needs only
         * the arg-max: no exponentials) */
        const bool need_sum = a.has_logprob || a.temperature > 0.0f;
        float m = NEG_INF, s = 0.0f, bv = 0.0f;
        int bi = -1;
        for (long long i = tid; i < V; i += T) {
            float l = LOGIT(i);
            if (beats(l, (int)i, bv, bi)) bv = l, bi = (int)i;
            if (!need_sum || l == NEG_INF) continue;
            if (l > m) {
                s = s * expf(m - l) + 1.0f;
                m = l;
            } else {
                s += expf(l - m);
            }
        }
        const float M = qn_block_max(m, red);
        const float S1 = qn_block_sum(m == NEG_INF ? 0.0f : s * expf(m - M), red);
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, bv, o);
            int oi = __shfl_xor_sync(0xffffffffu, bi, o);
            if (beats(ov, oi, bv, bi)) bv = ov, bi = oi;
        }
        if (lane == 0) arg_v[warp] = bv, arg_i[warp] = bi;
        __syncthreads();
        if (warp == 0) {
            bv = arg_v[lane];
            bi = arg_i[lane];
            for (int o = 16; o > 0; o >>= 1) {
                float ov = __shfl_xor_sync(0xffffffffu, bv, o);
                int oi = __shfl_xor_sync(0xffffffffu, bi, o);
                if (beats(ov, oi, bv, bi)) bv = ov, bi = oi;
            }
            if (lane == 0) s_token = bi;
        }

        if (a.temperature > 0.0f) {
            const float inv_t = 1.0f / a.temperature;
            const float log_min_p = a.min_p > 0.0f ? logf(a.min_p) : NEG_INF;
            const int ctr = *(const int *)qn_kt_at(&a.counter, row, 0, 0, 0);
            const float u = qn_sample_uniform(a.seed, ctr, row);
            if (a.top_k > 0) {
                /* 3. radix select: the bin holding the m-th largest key */
                const long long mk = V < a.top_k ? V : a.top_k;
                unsigned prefix = 0, mask = 0, above = 0, need = (unsigned)mk, in_bin = 0;
                for (int shift = 21; shift >= 0; shift = shift == 21 ? 10 : shift == 10 ? 0 : -1) {
                    const int bits = shift == 0 ? 10 : 11;
                    const unsigned nbins = 1u << bits;
                    for (int b = tid; b < BINS; b += T) hist[b] = 0;
                    __syncthreads();
                    for (long long i = tid; i < V; i += T) {
                        unsigned k = qn_float_key(LOGIT(i));
                        if ((k & mask) == prefix) atomicAdd(&hist[(k >> shift) & (nbins - 1)], 1u);
                    }
                    __syncthreads();
                    /* warp 0 finds the bin from the top: lane l sums bins
                     * counted from the top, l-th run of nbins / 32 */
                    if (warp == 0) {
                        const int per = (int)nbins / 32;
                        unsigned mine = 0;
                        for (int j = 0; j < per; j++) mine += hist[nbins - 1 - (lane * per + j)];
                        unsigned incl = mine;
                        for (int o = 1; o < 32; o <<= 1) {
                            unsigned v = __shfl_up_sync(0xffffffffu, incl, o);
                            if (lane >= o) incl += v;
                        }
                        unsigned before = incl - mine;
                        unsigned ball = __ballot_sync(0xffffffffu, before < need && incl >= need);
                        int src = __ffs(ball) - 1; /* exactly one lane: the counts rise to >= need */
                        if (lane == src) {
                            unsigned cum = before;
                            for (int j = 0; j < per; j++) {
                                unsigned b = nbins - 1 - (lane * per + j);
                                if (cum + hist[b] >= need) {
                                    n_above = cum;
                                    n_in = b;
                                    break;
                                }
                                cum += hist[b];
                            }
                        }
                    }
                    __syncthreads();
                    const unsigned bin = n_in;
                    above += n_above;
                    need -= n_above;
                    in_bin = hist[bin];
                    prefix |= bin << shift;
                    mask |= (nbins - 1) << shift;
                    __syncthreads(); /* n_above, n_in and hist are reused */
                    if (above + in_bin <= QN_SAMPLE_CAP) break;
                }
                /* 4. gather: keys above the bin first, then the bin's */
                if (tid == 0) n_above = n_in = 0;
                for (int j = tid; j < QN_SAMPLE_CAP; j += T) cand[j] = 0;
                __syncthreads();
                for (long long i = tid; i < V; i += T) {
                    unsigned k = qn_float_key(LOGIT(i));
                    unsigned long long c = (unsigned long long)k << 32 | (0xffffffffu - (unsigned)i);
                    if ((k & mask) > prefix) {
                        cand[atomicAdd(&n_above, 1u)] = c;
                    } else if ((k & mask) == prefix) {
                        unsigned slot = above + atomicAdd(&n_in, 1u);
                        if (slot < QN_SAMPLE_CAP) cand[slot] = c;
                    }
                }
                __syncthreads();
                const int ncand = (int)min(above + in_bin, (unsigned)QN_SAMPLE_CAP);
                int P = 2;
                while (P < ncand) P <<= 1;
                /* bitonic sort, descending (empty slots are 0, the least) */
                for (int k = 2; k <= P; k <<= 1)
                    for (int j = k >> 1; j > 0; j >>= 1) {
                        for (int i = tid; i < P; i += T) {
                            int ixj = i ^ j;
                            if (ixj > i) {
                                unsigned long long x = cand[i], y = cand[ixj];
                                bool desc = (i & k) == 0;
                                if (desc ? x < y : x > y) cand[i] = y, cand[ixj] = x;
                            }
                        }
                        __syncthreads();
                    }
                if (warp == 0) {
                    const int mm = (int)min((long long)ncand, mk);
#define CV(j) key_float((unsigned)(cand[j] >> 32))
                    int keep = mm;
                    if (a.top_p < 1.0f) {
                        float mass = 0.0f;
                        for (int j = lane; j < mm; j += 32) mass += expf(CV(j) - M);
                        mass = qn_warp_sum(mass);
                        int j = warp_find(mm, a.top_p * mass, true, [&](int q) { return expf(CV(q) - M); });
                        keep = j < mm ? j + 1 : mm;
                    }
                    int kept = 0; /* min_p keeps a prefix of the sorted candidates */
                    for (int j = lane; j < keep; j += 32) kept += CV(j) - M >= log_min_p;
                    for (int o = 16; o > 0; o >>= 1) kept += __shfl_xor_sync(0xffffffffu, kept, o);
                    keep = max(kept, 1);
                    float W = 0.0f;
                    for (int j = lane; j < keep; j += 32) W += expf((CV(j) - M) * inv_t);
                    W = qn_warp_sum(W);
                    int j = warp_find(keep, u * W, false, [&](int q) { return expf((CV(q) - M) * inv_t); });
                    if (lane == 0) s_token = (int)(0xffffffffu - (unsigned)cand[j < keep ? j : keep - 1]);
#undef CV
                }
            } else {
                /* 3'. the full vocabulary: thread shares, then the owner's ids */
                float mine = 0.0f;
                for (long long i = tid; i < V; i += T) {
                    float z = LOGIT(i) - M;
                    if (z >= log_min_p) mine += expf(z * inv_t);
                }
                share[tid] = mine;
                __syncthreads();
                if (warp == 0) {
                    float W = 0.0f;
                    for (int t = lane; t < T; t += 32) W += share[t];
                    W = qn_warp_sum(W);
                    const float target = u * W;
                    /* the first share taking the sum past target, else the last non-empty one */
                    int owner = warp_find(T, target, false, [&](int t) { return share[t]; });
                    if (owner == T) {
                        int last = -1;
                        for (int t = lane; t < T; t += 32)
                            if (share[t] > 0.0f) last = t;
                        for (int o = 16; o > 0; o >>= 1) last = max(last, __shfl_xor_sync(0xffffffffu, last, o));
                        owner = max(last, 0);
                    }
                    /* the sum before the owner's share, as warp_find saw it */
                    float before = 0.0f;
                    {
                        const int per = T / 32, lo = lane * per;
                        float run = 0.0f;
                        for (int t = lo; t < lo + per; t++) run += share[t];
                        float incl = warp_scan(run), cum = incl - run;
                        for (int t = lo; t < lo + per && t < owner; t++) cum += share[t];
                        int src = owner / per;
                        before = __shfl_sync(0xffffffffu, cum, src);
                    }
                    /* walk the owner's ids (owner, owner + T, ...), 32 at a time */
                    int tok = -1;
                    float cum = before;
                    for (long long base = owner; base < V && tok < 0; base += 32LL * T) {
                        long long i = base + (long long)lane * T;
                        float z = i < V ? LOGIT(i) - M : NEG_INF;
                        bool kept = i < V && z >= log_min_p;
                        float w = kept ? expf(z * inv_t) : 0.0f;
                        float incl = cum + warp_scan(w);
                        unsigned hit = __ballot_sync(0xffffffffu, kept && incl > target);
                        unsigned any = __ballot_sync(0xffffffffu, kept);
                        if (hit) tok = (int)(base + (long long)(__ffs(hit) - 1) * T);
                        else if (any && lane == 0) s_token = (int)(base + (long long)(31 - __clz(any)) * T); /* fallback: last kept */
                        cum = __shfl_sync(0xffffffffu, incl, 31);
                    }
                    if (tok >= 0 && lane == 0) s_token = tok;
                }
            }
        }
        __syncthreads();
        if (tid == 0) {
            const int tok = s_token;
            *(int *)qn_kt_at(&a.token, row, 0, 0, 0) = tok;
            if (a.has_logprob) *(float *)qn_kt_at(&a.logprob, row, 0, 0, 0) = LOGIT(tok) - M - logf(S1);
            if (a.temperature > 0.0f) *(int *)qn_kt_at(&a.counter, row, 0, 0, 0) += 1;
        }
        __syncthreads();
#undef LOGIT
    }
}
