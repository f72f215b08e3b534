/* CPU reference of sampling: the same steps as sample.cu, in the same
 * orders where the order picks the token (candidates by decreasing logit,
 * ties to the lower id; the full-vocabulary draw slice by slice, as the
 * GPU's blocks take the vocabulary), so both backends choose the same token
 * from the same uniform number except where float rounding of the running
 * sums differs at a boundary. Rows split across threads. */
#include "cpu/transformer_ops.h"

#include <math.h>
#include <stdlib.h>

typedef struct {
    float v;
    int id;
} cand;

/* a ranks before b: larger logit, then lower id */
static int before(cand a, cand b) { return a.v > b.v || (a.v == b.v && a.id < b.id); }

static int cmp_cand(const void *pa, const void *pb) {
    cand a = *(const cand *)pa, b = *(const cand *)pb;
    return before(a, b) ? -1 : before(b, a) ? 1 : 0;
}

/* Keep the m best of the stream in a heap whose root is the worst kept. */
static void heap_sift(cand *h, int m, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        if (l < m && before(h[w], h[l])) w = l;
        if (r < m && before(h[w], h[r])) w = r;
        if (w == i) return;
        cand t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

/* The weight of ids [lo, hi) of a row: exp((l - max) / temperature) over
 * those min_p keeps. */
static float slice_share(const char *L, long long nb, long long lo, long long hi, float M, float log_min_p,
                         float inv_t) {
    float s = 0.0f;
    for (long long i = lo; i < hi; i++) {
        float z = *(const float *)(L + i * nb) - M;
        if (z >= log_min_p) s += expf(z * inv_t);
    }
    return s;
}

static void sample_rows(void *ctx, int64_t begin, int64_t end) {
    const qn_sample_args *a = ctx;
    long long V = a->logits.ne[0], nb = a->logits.nb[0];
    for (int64_t r = begin; r < end; r++) {
        char *L = qn_kt_at(&a->logits, 0, r, 0, 0);
#define LOGIT(i) (*(float *)(L + (long long)(i) * nb))
        if (a->has_recent && a->penalty != 1.0f) {
            for (long long j = 0; j < a->recent.ne[0]; j++) {
                int id = *(const int *)qn_kt_at(&a->recent, j, r, 0, 0), dup = 0;
                if (id < 0 || id >= V) continue;
                for (long long k = 0; k < j && !dup; k++) dup = *(const int *)qn_kt_at(&a->recent, k, r, 0, 0) == id;
                if (dup) continue;
                float l = LOGIT(id);
                LOGIT(id) = l > 0.0f ? l / a->penalty : l * a->penalty;
            }
        }
        float M = -INFINITY;
        double S1 = 0.0; /* a long f32 running sum would lose the log-probability's digits */
        int arg = 0;
        for (long long i = 0; i < V; i++)
            if (LOGIT(i) > M) M = LOGIT(i), arg = (int)i;
        for (long long i = 0; i < V; i++) S1 += expf(LOGIT(i) - M);
        int tok = arg;
        if (a->temperature > 0.0f) {
            int *ctr = (int *)qn_kt_at(&a->counter, r, 0, 0, 0);
            float u = qn_sample_uniform(a->seed, *ctr, r);
            *ctr += 1;
            float inv_t = 1.0f / a->temperature, log_min_p = a->min_p > 0.0f ? logf(a->min_p) : -INFINITY;
            if (a->top_k > 0) {
                cand c[QN_SAMPLE_MAX_TOP_K];
                int m = (int)(V < a->top_k ? V : a->top_k), n = 0;
                for (long long i = 0; i < V; i++) {
                    cand x = {LOGIT(i), (int)i};
                    if (n < m) {
                        c[n++] = x;
                        if (n == m)
                            for (int k = m / 2 - 1; k >= 0; k--) heap_sift(c, m, k);
                    } else if (before(x, c[0])) {
                        c[0] = x;
                        heap_sift(c, m, 0);
                    }
                }
                qsort(c, (size_t)m, sizeof c[0], cmp_cand);
                int keep = m;
                if (a->top_p < 1.0f) {
                    float mass = 0.0f, cum = 0.0f;
                    for (int j = 0; j < m; j++) mass += expf(c[j].v - M);
                    for (int j = 0; j < m; j++) {
                        cum += expf(c[j].v - M);
                        if (cum >= a->top_p * mass) {
                            keep = j + 1;
                            break;
                        }
                    }
                }
                while (keep > 1 && c[keep - 1].v - M < log_min_p) keep--;
                float W = 0.0f, cum = 0.0f;
                for (int j = 0; j < keep; j++) W += expf((c[j].v - M) * inv_t);
                float target = u * W;
                tok = c[keep - 1].id;
                for (int j = 0; j < keep; j++) {
                    cum += expf((c[j].v - M) * inv_t);
                    if (cum > target) {
                        tok = c[j].id;
                        break;
                    }
                }
            } else {
                /* the vocabulary in slices of QN_SAMPLE_SLICE ids, as the
                 * GPU's blocks take it: the total weight, then the first
                 * slice whose share takes the running sum past the target
                 * (the last non-empty one, should rounding leave the target
                 * unmet), then the id within it */
                const long long SL = QN_SAMPLE_SLICE;
                float W = 0.0f;
                for (long long lo = 0; lo < V; lo += SL)
                    W += slice_share(L, nb, lo, V < lo + SL ? V : lo + SL, M, log_min_p, inv_t);
                float target = u * W, cum = 0.0f, before_owner = 0.0f;
                long long owner = 0;
                for (long long lo = 0; lo < V; lo += SL) {
                    float share = slice_share(L, nb, lo, V < lo + SL ? V : lo + SL, M, log_min_p, inv_t);
                    if (share > 0.0f) {
                        owner = lo;
                        before_owner = cum;
                        if (cum + share > target) break;
                    }
                    cum += share;
                }
                cum = before_owner;
                for (long long i = owner; i < V && i < owner + SL; i++) {
                    if (LOGIT(i) - M < log_min_p) continue;
                    tok = (int)i;
                    cum += expf((LOGIT(i) - M) * inv_t);
                    if (cum > target) break;
                }
            }
        }
        *(int *)qn_kt_at(&a->token, r, 0, 0, 0) = tok;
        if (a->has_logprob) *(float *)qn_kt_at(&a->logprob, r, 0, 0, 0) = LOGIT(tok) - M - (float)log(S1);
#undef LOGIT
    }
}

void qn_cpu_sample(qn_device *dev, const void *args) {
    const qn_sample_args *a = args;
    qn_cpu_parallel_for(dev, a->logits.ne[1], sample_rows, (void *)a);
}
