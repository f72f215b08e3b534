/* Sampling one token per row of logits, on the device (see qn_sample in
 * quanta.h for the semantics; sample.c on the CPU takes the same steps and
 * walks the vocabulary in the same order).
 *
 * Layout: logits f32 [vocab, rows] (any strides); recent i32 [window,
 * rows]; token, logprob and counter [rows]. The vocabulary is cut into
 * slices of a.slice ids (QN_SAMPLE_SLICE, more for a large top_k); grid:
 * one block of QN_SAMPLE_THREADS per (slice, row) as (blockIdx.x,
 * blockIdx.y), rows from a.row0 on. Thread t of a block takes a run of
 * consecutive ids of its slice. A block writes what it found into the
 * row's part of the encoder's scratch; the last block of the row to finish
 * (an atomic ticket among the scratch's counters, which it leaves at zero
 * for the next launch) merges. Nothing goes to the host, so a graph
 * replays it.
 *
 * sample, every case:
 *   1. the repetition penalty on the recent ids inside the slice, written
 *      into logits;
 *   2. the slice's largest logit (ties to the lower id) and, for a
 *      logprob, its sum of exp(l - slice max);
 *   3. top_k: the slice's top_k candidates by radix select (digits of 11,
 *      11 and 10 bits over order-preserving keys, 2048-bin histogram in
 *      shared memory) over the slice's keys staged in dynamic shared
 *      memory (up to QN_SAMPLE_STAGE_KEYS; a larger slice is reread from
 *      global memory), written in id order;
 *   the last block: the row's max and softmax sum from the slices'; greedy
 *   is done. top_k: the slices' candidates staged in shared memory, the
 *   same select over them (stopping once up to CAP candidates hold the
 *   top_k), a rank sort, and warp 0 applies top_p, min_p and temperature
 *   to the top_k and draws. Without top_k the row's max and sum go to scratch for
 *   sample_draw.
 * sample_draw (temperature without top_k, after sample): each block sums
 *   its slice's weights exp((l - max) / temperature) over the min_p
 *   survivors; the last block finds the slice whose share holds the draw,
 *   then the id inside it.
 * Bytes: the logits read once from memory (a block rereads its slice from
 * cache); sample_draw reads them once more (from L2 at vocabularies that
 * fit). Scratch per row: a ticket among the counters, then 16 bytes, 16 a
 * slice, 8 a top_k candidate. */
#include "ops_math.cuh"

#define T QN_SAMPLE_THREADS
#define BINS 2048
/* Candidates the merging block may keep for its sort (a digit sooner) */
#define CAP 128

typedef unsigned long long u64;


/* The row's part of the scratch; all fields written before a ticket are
 * read after it with __ldcg (L2), never a stale L1 line. The row's ticket
 * (blocks done so far) is counter blockIdx.y of the scratch. */
typedef struct {
    float max, sum; /* for sample_draw: the row's max and sum of exp(l - max) */
    int arg;        /* the row's largest logit's id */
    int pad;
} row_head;

typedef struct {
    u64 best;    /* the slice's largest candidate */
    float sum;   /* its sum of exp(l - slice max) */
    float share; /* sample_draw: its weight */
} slice_part;

/* A candidate: the logit's order-preserving key in the high half, the
 * complement of its id in the low half, so the larger of two is the larger
 * logit and, among equal logits, the lower id. 0 is no candidate. */
__device__ __forceinline__ u64 cand_of(float l, long long id) {
    return (u64)qn_float_key(l) << 32 | (0xffffffffu - (unsigned)id);
}
__device__ __forceinline__ float cand_value(u64 c) {
    unsigned k = (unsigned)(c >> 32);
    return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}
__device__ __forceinline__ int cand_id(u64 c) { return (int)(0xffffffffu - (unsigned)c); }

/* Inclusive prefix sum over the warp's lanes. */
template <typename V> __device__ __forceinline__ V warp_scan(V v) {
    const int lane = threadIdx.x & 31;
    for (int o = 1; o < 32; o <<= 1) {
        V u = __shfl_up_sync(0xffffffffu, v, o);
        if (lane >= o) v += u;
    }
    return v;
}

/* op over the block; every thread gets the result. sh: 32 values. */
template <typename V, typename Op> __device__ V block_reduce(V v, V identity, Op op, V *sh) {
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads(); /* sh may still be read by a previous call */
    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v;
    __syncthreads();
    v = (threadIdx.x & 31) < (blockDim.x >> 5) ? sh[threadIdx.x & 31] : identity;
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Exclusive prefix sum over the block in thread order; *total gets the
 * sum. sh: 33 values. */
template <typename V> __device__ V block_scan(V v, V *sh, V *total) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    V incl = warp_scan(v), ex = __shfl_up_sync(0xffffffffu, incl, 1);
    if (lane == 0) ex = 0;
    __syncthreads();
    if (lane == 31) sh[warp] = incl;
    __syncthreads();
    if (warp == 0) {
        V x = lane < (int)(blockDim.x >> 5) ? sh[lane] : (V)0, xi = warp_scan(x);
        __syncwarp();
        sh[lane] = xi - x;
        if (lane == 31) sh[32] = xi;
    }
    __syncthreads();
    *total = sh[32];
    return sh[warp] + ex;
}

/* The first index in [0, n) where the running sum of f(j) in index order
 * exceeds target (>= target when ge), for a warp: lane l walks the l-th
 * run of ceil(n / 32) consecutive indices. Returns n when none does. Every
 * lane of the warp calls it; f is evaluated twice per index. */
template <typename F> __device__ int warp_find(int n, float target, bool ge, F f) {
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

typedef struct {
    unsigned hist[BINS];
    u64 found[T]; /* the top_k candidates (top_k <= T), in id order */
    union {
        u64 u[33];
        float f[33];
        int i[33];
        unsigned w[33];
    } red;
    unsigned bin, above, last, nfound;
    int token;
    float before;
} sample_smem;

/* Where the `need` largest of the candidates item(i), i in [0, n), begin
 * (thread t holds the run [t * per, (t + 1) * per)): a prefix of the key
 * under mask such that `above` candidates have a larger masked key, and
 * `take` of those with an equal one are wanted. Digits narrow the cut until
 * the candidates at or above it number at most cap (>= need; then all are
 * taken), else, after the last digit (the whole key), take = need - above:
 * the equal keys' lowest ids. Needs need <= the number of candidates;
 * every thread calls it. */
typedef struct {
    unsigned prefix, mask, above, take;
} radix_cut;

template <typename F>
__device__ radix_cut radix_select(long long n, long long per, unsigned need, unsigned cap, F item,
                                  sample_smem *sm) {
    const int tid = threadIdx.x, lane = tid & 31;
    radix_cut c = {0u, 0u, 0u, 0u};
    for (int pass = 0; pass < 3; pass++) {
        const int shift = pass == 0 ? 21 : pass == 1 ? 10 : 0, nbins = pass == 2 ? 1024 : 2048;
        for (int b = tid; b < BINS; b += T) sm->hist[b] = 0;
        __syncthreads();
        for (long long r = 0; r < per; r++) {
            const long long i = tid * per + r;
            const u64 x = i < n ? item(i) : 0ull;
            const unsigned k = (unsigned)(x >> 32);
            const bool in = x != 0ull && (k & c.mask) == c.prefix;
            const unsigned bin = in ? (k >> shift) & (unsigned)(nbins - 1) : 0xffffffffu;
            /* one atomic per distinct bin of the warp: logits crowd a few bins */
            const unsigned peers = __match_any_sync(0xffffffffu, bin);
            if (in && lane == __ffs(peers) - 1) atomicAdd(&sm->hist[bin], (unsigned)__popc(peers));
        }
        __syncthreads();
        /* thread t sums bins counted from the top, the t-th run of nbins / T */
        const int per_bin = nbins / T;
        unsigned mine = 0, total;
        for (int j = 0; j < per_bin; j++) mine += sm->hist[nbins - 1 - (tid * per_bin + j)];
        const unsigned before = block_scan(mine, sm->red.w, &total), want = need - c.above;
        if (before < want && before + mine >= want) { /* exactly one thread */
            unsigned cum = before;
            for (int j = 0; j < per_bin; j++) {
                const unsigned b = nbins - 1 - (tid * per_bin + j);
                if (cum + sm->hist[b] >= want) {
                    sm->bin = b;
                    sm->above = cum;
                    break;
                }
                cum += sm->hist[b];
            }
        }
        __syncthreads();
        const unsigned bin = sm->bin, in_bin = sm->hist[bin];
        c.above += sm->above;
        c.prefix |= bin << shift;
        c.mask |= (unsigned)(nbins - 1) << shift;
        __syncthreads(); /* hist, bin and above are reused */
        c.take = c.above + in_bin <= cap ? in_bin : need - c.above;
        if (c.above + in_bin <= cap) break;
    }
    return c;
}

/* Hands out(pos, x) the candidates radix_select cut, in item order: all
 * above the cut and the first c.take at it (the lowest ids, as items run in
 * id order). */
template <typename F, typename O>
__device__ void radix_gather(long long n, long long per, radix_cut c, F item, O out, sample_smem *sm) {
    u64 count = 0; /* above the cut << 32 | at it */
    for (long long r = 0; r < per; r++) {
        const long long i = threadIdx.x * per + r;
        const u64 x = i < n ? item(i) : 0ull;
        const unsigned k = (unsigned)(x >> 32) & c.mask;
        if (x != 0ull && k > c.prefix) count += 1ull << 32;
        else if (x != 0ull && k == c.prefix) count += 1ull;
    }
    u64 total;
    const u64 ex = block_scan(count, sm->red.u, &total);
    unsigned gt = (unsigned)(ex >> 32), eq = (unsigned)ex;
    const unsigned take = c.take;
    for (long long r = 0; r < per; r++) {
        const long long i = threadIdx.x * per + r;
        const u64 x = i < n ? item(i) : 0ull;
        const unsigned k = (unsigned)(x >> 32) & c.mask;
        if (x == 0ull) continue;
        if (k > c.prefix) {
            out(gt + min(eq, take), x);
            gt++;
        } else if (k == c.prefix) {
            if (eq < take) out(gt + eq, x);
            eq++;
        }
    }
}

/* True in every thread of the row's last block to get here, which then
 * sees what the row's other blocks wrote before their call. One thread
 * fences and takes the ticket after the barrier (as a grid sync does). */
__device__ bool last_block(unsigned *ticket, unsigned *flag) {
    const unsigned S = gridDim.x;
    __syncthreads();
    if (threadIdx.x == 0) {
        __threadfence();
        *flag = S == 1 || atomicInc(ticket, S - 1) == S - 1;
        __threadfence();
    }
    __syncthreads();
    return *flag != 0;
}

/* Where the row's data begins in the scratch. */
__device__ char *row_scratch(const qn_sample_args &a) { return (char *)a.scratch + blockIdx.y * a.scratch_row; }

/* The `need` largest of items (the slice or the slices' candidates), or up
 * to cap candidates holding them, by radix select and in-order gather:
 * through out; returns how many. */
template <typename F, typename O>
__device__ unsigned select_top(long long n, unsigned need, unsigned cap, F item, O out, sample_smem *sm) {
    const long long per = (n + T - 1) / T;
    const radix_cut c = radix_select(n, per, need, cap, item, sm);
    radix_gather(n, per, c, item, out, sm);
    return c.above + c.take;
}

extern "C" __global__ void __launch_bounds__(T, 1) sample(qn_sample_args a) {
    __shared__ sample_smem sm;
    extern __shared__ u64 stage[]; /* top_k: the slice's keys, then the merge's candidates */
    unsigned *keys = (unsigned *)stage;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int S = (int)gridDim.x, b = (int)blockIdx.x;
    const long long V = a.logits.ne[0], nb = a.logits.nb[0], row = a.row0 + blockIdx.y;
    const long long lo = b * a.slice, n = min(a.slice, V - lo), per = (n + T - 1) / T, i0 = tid * per;
    const float NEG_INF = __int_as_float(0xff800000);
    char *L = qn_kt_at(&a.logits, 0, row, 0, 0);
#define LOGIT(i) (*(float *)(L + (long long)(i) * nb))
    char *scr = row_scratch(a);
    row_head *head = (row_head *)scr;
    slice_part *part = (slice_part *)(scr + sizeof(row_head));
    u64 *cand = (u64 *)(scr + sizeof(row_head) + S * sizeof(slice_part));
    const bool greedy = a.temperature <= 0.0f, topk = !greedy && a.top_k > 0, need_sum = a.has_logprob;
    const bool need_stats = !topk || need_sum; /* top_k draws from its candidates alone */
    const bool staged = topk && n <= QN_SAMPLE_STAGE_KEYS;
    const auto umax = [](u64 x, u64 y) { return x > y ? x : y; };
    const auto fsum = [](float x, float y) { return x + y; };

    /* 1. the penalty, once per distinct id of the slice */
    if (a.has_recent && a.penalty != 1.0f) {
        for (long long j = tid; j < a.recent.ne[0]; j += T) {
            const int id = *(const int *)qn_kt_at(&a.recent, j, row, 0, 0);
            if (id < lo || id >= lo + n) continue;
            bool dup = false;
            for (long long k = 0; k < j && !dup; k++) dup = *(const int *)qn_kt_at(&a.recent, k, row, 0, 0) == id;
            if (dup) continue;
            const float l = LOGIT(id);
            LOGIT(id) = l > 0.0f ? l / a.penalty : l * a.penalty;
        }
        __syncthreads();
    }

    /* 2. the slice's largest candidate (and, staged, every candidate of
     * the thread's run), four loads in flight per thread */
    u64 best = 0ull;
    for (long long r = 0; r < per; r += 4) {
        float v[4];
        for (int q = 0; q < 4; q++) v[q] = r + q < per && i0 + r + q < n ? LOGIT(lo + i0 + r + q) : 0.0f;
        for (int q = 0; q < 4; q++) {
            if (r + q >= per || i0 + r + q >= n) continue;
            const u64 c = cand_of(v[q], lo + i0 + r + q);
            best = umax(best, c);
            if (staged) keys[i0 + r + q] = (unsigned)(c >> 32);
        }
    }
    if (need_stats) {
        const u64 slice_best = block_reduce(best, 0ull, umax, sm.red.u);
        float slice_sum = 0.0f;
        if (need_sum) { /* and the sum of exp(l - the slice's max) */
            const float m = best ? cand_value(best) : NEG_INF, sm_max = cand_value(slice_best);
            float s = 0.0f;
            if (m != NEG_INF)
                for (long long i = i0; i < min(i0 + per, n); i++) s += expf(LOGIT(lo + i) - m);
            slice_sum = block_reduce(m == NEG_INF ? 0.0f : s * expf(m - sm_max), 0.0f, fsum, sm.red.f);
        }
        if (tid == 0) {
            part[b].best = slice_best;
            part[b].sum = slice_sum;
        }
    }

    /* 3. the slice's top_k candidates: into scratch, or straight to
     * sm.found when the slice is the whole row */
    if (topk) {
        const unsigned kc = (unsigned)min((long long)a.top_k, n);
        const auto to_found = [&](unsigned pos, u64 x) { sm.found[pos] = x; };
        const auto to_scratch = [&](unsigned pos, u64 x) { cand[b * a.top_k + pos] = x; };
        const auto from_stage = [&](long long i) {
            return (u64)keys[i] << 32 | (0xffffffffu - (unsigned)(lo + i));
        };
        const auto from_logits = [&](long long i) { return cand_of(LOGIT(lo + i), lo + i); };
        __syncthreads(); /* the stage is written */
        /* exactly kc (cap kc): the slots of the slice in scratch */
        unsigned got;
        if (staged && S == 1) got = select_top(n, kc, kc, from_stage, to_found, &sm);
        else if (staged) got = select_top(n, kc, kc, from_stage, to_scratch, &sm);
        else if (S == 1) got = select_top(n, kc, kc, from_logits, to_found, &sm);
        else got = select_top(n, kc, kc, from_logits, to_scratch, &sm);
        if (tid == 0) sm.nfound = got;
    }

    if (!last_block((unsigned *)a.tickets + blockIdx.y, &sm.last)) return;

    /* the row's max, arg-max and softmax sum */
    best = 0ull;
    if (need_stats) {
        for (int p = tid; p < S; p += T) best = umax(best, __ldcg(&part[p].best));
        best = block_reduce(best, 0ull, umax, sm.red.u);
    }
    const float M = cand_value(best);
    float S1 = 0.0f;
    if (need_sum) {
        float s = 0.0f;
        for (int p = tid; p < S; p += T) {
            const float m = cand_value(__ldcg(&part[p].best));
            if (m != NEG_INF) s += __ldcg(&part[p].sum) * expf(m - M);
        }
        S1 = block_reduce(s, 0.0f, fsum, sm.red.f);
    }
    int tok = cand_id(best);
    if (!greedy && !topk) { /* sample_draw takes it from here */
        if (tid == 0) head->max = M, head->sum = S1, head->arg = tok;
        return;
    }
    if (topk) {
        const unsigned mk = (unsigned)min((long long)a.top_k, V);
        if (S > 1) {
            /* the slices' candidates, staged: slice p's at p * top_k, in id
             * order, 0 past its count */
            const long long items = (long long)S * a.top_k;
#pragma unroll 4
            for (long long j = tid; j < items; j += T) {
                const long long p = j / a.top_k, r = j - p * a.top_k;
                stage[j] = r < min((long long)a.top_k, V - p * a.slice) ? __ldcg(&cand[j]) : 0ull;
            }
            __syncthreads();
            /* up to CAP candidates holding the top mk may stop a digit
             * early: the sort below orders them */
            const auto from_stage = [&](long long i) { return stage[i]; };
            const auto to_found = [&](unsigned pos, u64 x) { sm.found[pos] = x; };
            const unsigned got = select_top(items, mk, max(mk, (unsigned)CAP), from_stage, to_found, &sm);
            if (tid == 0) sm.nfound = got;
        }
        __syncthreads();
        /* rank sort into the stage (free now): the candidates are distinct,
         * so the ranks are too; the draw takes the first mk */
        u64 *sorted = stage;
        const unsigned nf = sm.nfound;
        if (tid < (int)nf) {
            const u64 x = sm.found[tid];
            unsigned rank = 0;
            for (unsigned j = 0; j < nf; j++) rank += sm.found[j] > x;
            sorted[rank] = x;
        }
        __syncthreads();
        if (warp == 0) {
#define CV(j) cand_value(sorted[j])
            const float top = CV(0), inv_t = 1.0f / a.temperature;
            const float log_min_p = a.min_p > 0.0f ? logf(a.min_p) : NEG_INF;
            const int ctr = *(const int *)qn_kt_at(&a.counter, row, 0, 0, 0);
            const float u = qn_sample_uniform(a.seed, ctr, row);
            int keep = (int)mk;
            if (a.top_p < 1.0f) {
                float mass = 0.0f;
                for (int j = lane; j < keep; j += 32) mass += expf(CV(j) - top);
                mass = qn_warp_sum(mass);
                const int j = warp_find(keep, a.top_p * mass, true, [&](int q) { return expf(CV(q) - top); });
                keep = j < keep ? j + 1 : keep;
            }
            int kept = 0; /* min_p keeps a prefix of the sorted candidates */
            for (int j = lane; j < keep; j += 32) kept += CV(j) - top >= log_min_p;
            for (int o = 16; o > 0; o >>= 1) kept += __shfl_xor_sync(0xffffffffu, kept, o);
            keep = max(kept, 1);
            float W = 0.0f;
            for (int j = lane; j < keep; j += 32) W += expf((CV(j) - top) * inv_t);
            W = qn_warp_sum(W);
            const int j = warp_find(keep, u * W, false, [&](int q) { return expf((CV(q) - top) * inv_t); });
            if (lane == 0) sm.token = cand_id(sorted[j < keep ? j : keep - 1]);
#undef CV
        }
        __syncthreads();
        tok = sm.token;
    }
    if (tid == 0) {
        *(int *)qn_kt_at(&a.token, row, 0, 0, 0) = tok;
        if (a.has_logprob)
            *(float *)qn_kt_at(&a.logprob, row, 0, 0, 0) = __ldcg((const float *)(L + tok * nb)) - M - logf(S1);
        if (topk) *(int *)qn_kt_at(&a.counter, row, 0, 0, 0) += 1;
    }
#undef LOGIT
}

extern "C" __global__ void __launch_bounds__(T, 1) sample_draw(qn_sample_args a) {
    __shared__ union {
        float f[33];
        int i[33];
    } red;
    __shared__ unsigned last;
    __shared__ float before_chosen;
    const int tid = threadIdx.x, S = (int)gridDim.x;
    const long long V = a.logits.ne[0], nb = a.logits.nb[0], row = a.row0 + blockIdx.y;
    char *L = qn_kt_at(&a.logits, 0, row, 0, 0);
    char *scr = row_scratch(a);
    row_head *head = (row_head *)scr;
    slice_part *part = (slice_part *)(scr + sizeof(row_head));
    const float M = __ldcg(&head->max), inv_t = 1.0f / a.temperature;
    const float log_min_p = a.min_p > 0.0f ? logf(a.min_p) : __int_as_float(0xff800000);
    const auto fsum = [](float x, float y) { return x + y; };
    const auto imin = [](int x, int y) { return min(x, y); };
    const auto imax = [](int x, int y) { return max(x, y); };
    /* an id's weight; -1 for one min_p cuts */
    const auto weight = [&](long long id) {
        const float z = *(const float *)(L + id * nb) - M;
        return z >= log_min_p ? expf(z * inv_t) : -1.0f;
    };

    /* this slice's share */
    long long lo = blockIdx.x * a.slice, n = min(a.slice, V - lo), per = (n + T - 1) / T;
    float s = 0.0f;
    for (long long i = tid * per; i < min(tid * per + per, n); i++) s += fmaxf(weight(lo + i), 0.0f);
    s = block_reduce(s, 0.0f, fsum, red.f);
    if (tid == 0) part[blockIdx.x].share = s;

    if (!last_block((unsigned *)a.tickets + blockIdx.y, &last)) return;

    /* the first slice whose share takes the running sum past the target
     * (the last non-empty one, should rounding leave the target unmet) */
    const int ctr = *(const int *)qn_kt_at(&a.counter, row, 0, 0, 0);
    const float u = qn_sample_uniform(a.seed, ctr, row);
    const int pp = (S + T - 1) / T, p0 = tid * pp, p1 = min(p0 + pp, S);
    float mine = 0.0f, W;
    for (int p = p0; p < p1; p++) mine += __ldcg(&part[p].share);
    float cum = block_scan(mine, red.f, &W), first_before = 0.0f, last_before = 0.0f;
    const float target = u * W;
    int first = S, lastp = -1;
    for (int p = p0; p < p1; p++) {
        const float w = __ldcg(&part[p].share);
        if (w > 0.0f) {
            if (first == S && cum + w > target) first = p, first_before = cum;
            lastp = p, last_before = cum;
        }
        cum += w;
    }
    const int f = block_reduce(first, S, imin, red.i), lp = block_reduce(lastp, -1, imax, red.i);
    const int chosen = f < S ? f : max(lp, 0);
    if (chosen >= p0 && chosen < p1) before_chosen = f < S ? first_before : lp >= 0 ? last_before : 0.0f;
    __syncthreads();

    /* the id inside it: the first survivor taking the sum past the target,
     * else the last survivor, else the arg-max */
    lo = chosen * a.slice, n = min(a.slice, V - lo), per = (n + T - 1) / T;
    const long long i0 = tid * per, i1 = min(i0 + per, n);
    mine = 0.0f;
    for (long long i = i0; i < i1; i++) mine += fmaxf(weight(lo + i), 0.0f);
    float unused;
    cum = before_chosen + block_scan(mine, red.f, &unused);
    int hit = (int)n, lastk = -1;
    for (long long i = i0; i < i1; i++) {
        const float w = weight(lo + i);
        if (w < 0.0f) continue;
        cum += w;
        if (hit == (int)n && cum > target) hit = (int)i;
        lastk = (int)i;
    }
    hit = block_reduce(hit, (int)n, imin, red.i);
    lastk = block_reduce(lastk, -1, imax, red.i);
    if (tid == 0) {
        const int tok = hit < n ? (int)lo + hit : lastk >= 0 ? (int)lo + lastk : __ldcg(&head->arg);
        *(int *)qn_kt_at(&a.token, row, 0, 0, 0) = tok;
        if (a.has_logprob)
            *(float *)qn_kt_at(&a.logprob, row, 0, 0, 0) =
                *(const float *)(L + tok * nb) - M - logf(__ldcg(&head->sum));
        *(int *)qn_kt_at(&a.counter, row, 0, 0, 0) += 1;
    }
}
