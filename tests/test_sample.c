/* Sampling on the device under test: greedy choice and its log-probability,
 * the repetition penalty, the distribution of seeded draws (many rows of
 * the same logits draw independently in one launch; a chi-square statistic
 * against probabilities computed here in double, with a fixed seed so the
 * test is repeatable), truncation by top_k / top_p / min_p (no draw outside
 * the survivors computed here), determinism from the device counter, and on
 * a GPU agreement with the CPU backend's draws. */
#include "util.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const float *logits;
    int64_t V, rows;
    const int32_t *recent; /* [window, rows] or NULL */
    int64_t window;
    qn_sample_params p;
    int32_t counter0;
    int no_logprob; /* pass no logprob tensor (its buffer stays poisoned) */
    int no_logits;  /* do not read the logits back */
} sample_case;

typedef struct {
    int32_t *tok;
    float *lp;
    int32_t *ctr;
    float *logits; /* after the op (the penalty is written into them) */
} sample_out;

static sample_out sample_run(qn_device *dev, const sample_case *c) {
    qn_encoder *enc;
    QT_OK(qn_encoder_create(dev, &enc));
    int64_t lne[2] = {c->V, c->rows}, rne[2] = {c->window, c->rows}, one[1] = {c->rows};
    qn_buffer *lb, *rb = NULL, *cb, *tb = qt_poisoned(dev, QN_I32, 1, one), *pb = qt_poisoned(dev, QN_F32, 1, one);
    QT_OK(qn_buffer_alloc(dev, QN_F32, 2, lne, &lb));
    QT_OK(qn_buffer_write(lb, 0, c->logits, (size_t)(c->V * c->rows) * 4));
    if (c->recent) {
        QT_OK(qn_buffer_alloc(dev, QN_I32, 2, rne, &rb));
        QT_OK(qn_buffer_write(rb, 0, c->recent, (size_t)(c->window * c->rows) * 4));
    }
    QT_OK(qn_buffer_alloc(dev, QN_I32, 1, one, &cb));
    int32_t *ctr = malloc((size_t)c->rows * 4);
    for (int64_t r = 0; r < c->rows; r++) ctr[r] = c->counter0;
    QT_OK(qn_buffer_write(cb, 0, ctr, (size_t)c->rows * 4));
    free(ctr);
    QT_OK(qn_sample(enc, qn_tensor_of(tb), c->no_logprob ? QN_TENSOR_NONE : qn_tensor_of(pb), qn_tensor_of(lb),
                    rb ? qn_tensor_of(rb) : QN_TENSOR_NONE, qn_tensor_of(cb), &c->p));
    QT_OK(qn_encoder_commit_wait(enc));
    sample_out o = {qt_read_all(tb), qt_read_all(pb), qt_read_all(cb), c->no_logits ? NULL : qt_read_all(lb)};
    qn_buffer_free(lb);
    qn_buffer_free(rb);
    qn_buffer_free(cb);
    qn_buffer_free(tb);
    qn_buffer_free(pb);
    qn_encoder_destroy(enc);
    return o;
}

static void out_free(sample_out *o) {
    free(o->tok);
    free(o->lp);
    free(o->ctr);
    free(o->logits);
}

/* Draws of every row against probabilities `prob` (0 outside the
 * survivors): none outside, and a chi-square statistic (categories
 * expecting at least 5 draws) below df + 8 sqrt(2 df) + 10, which a
 * correct sampler exceeds with probability far below 1e-6. */
static void check_distribution(const int32_t *tok, int64_t rows, const double *prob, int64_t V, const char *what) {
    int64_t *count = calloc((size_t)V, sizeof *count);
    for (int64_t r = 0; r < rows; r++) {
        if (tok[r] < 0 || tok[r] >= V || prob[tok[r]] == 0)
            fail_msg("%s: row %lld drew %d, which is not a survivor", what, (long long)r, tok[r]);
        count[tok[r]]++;
    }
    double chi = 0;
    int df = -1;
    for (int64_t i = 0; i < V; i++) {
        double e = prob[i] * (double)rows;
        if (e < 5) continue;
        chi += ((double)count[i] - e) * ((double)count[i] - e) / e;
        df++;
    }
    double bound = df + 8 * sqrt(2.0 * df) + 10;
    fprintf(stderr, "%s: chi-square %.1f over %d degrees of freedom (bound %.1f)\n", what, chi, df, bound);
    if (!(chi < bound)) fail_msg("%s: chi-square %.1f exceeds %.1f (%d degrees of freedom)", what, chi, bound, df);
    free(count);
}

/* The same logits in every row. */
static float *repeat_rows(const float *row, int64_t V, int64_t rows) {
    float *l = malloc((size_t)(V * rows) * sizeof *l);
    for (int64_t r = 0; r < rows; r++) memcpy(l + r * V, row, (size_t)V * sizeof *l);
    return l;
}

/* Probabilities after top_k, top_p, min_p and temperature, in double. */
static const float *sort_logits;
static int by_logit(const void *a, const void *b) {
    int64_t i = *(const int64_t *)a, j = *(const int64_t *)b;
    float x = sort_logits[i], y = sort_logits[j];
    return x > y ? -1 : x < y ? 1 : i < j ? -1 : i > j; /* ties to the lower id */
}

static void ref_probs(const float *l, int64_t V, const qn_sample_params *p, double *prob) {
    int64_t *order = malloc((size_t)V * sizeof *order);
    for (int64_t i = 0; i < V; i++) order[i] = i;
    sort_logits = l;
    qsort(order, (size_t)V, sizeof *order, by_logit);
    double M = l[order[0]];
    int64_t keep = p->top_k > 0 && p->top_k < V ? p->top_k : V;
    double mass = 0, cum = 0;
    for (int64_t j = 0; j < keep; j++) mass += exp(l[order[j]] - M);
    for (int64_t j = 0; j < keep && p->top_p < 1; j++) {
        cum += exp(l[order[j]] - M);
        if (cum >= p->top_p * mass) {
            keep = j + 1;
            break;
        }
    }
    while (keep > 1 && exp(l[order[keep - 1]] - M) < p->min_p) keep--;
    double total = 0;
    for (int64_t i = 0; i < V; i++) prob[i] = 0;
    for (int64_t j = 0; j < keep; j++) total += prob[order[j]] = exp((l[order[j]] - M) / p->temperature);
    for (int64_t j = 0; j < keep; j++) prob[order[j]] /= total;
    free(order);
}

/* GPU and CPU drew from the same uniform number: the same token, or
 * tokens whose spans of the cumulative probability (computed here in
 * double, in the draw's order: decreasing logit with top_k, ids
 * otherwise) lie within 1e-3 of each other, as float running sums over
 * many ids round differently on the two backends. */
static void check_same_draw(const float *l, int64_t V, const qn_sample_params *p, int32_t gpu, int32_t cpu,
                            const char *what, int64_t row) {
    if (gpu == cpu) return;
    double *prob = malloc((size_t)V * sizeof *prob);
    int64_t *order = malloc((size_t)V * sizeof *order);
    ref_probs(l, V, p, prob);
    for (int64_t i = 0; i < V; i++) order[i] = i;
    sort_logits = l;
    if (p->top_k > 0) qsort(order, (size_t)V, sizeof *order, by_logit);
    double cum = 0, lo[2] = {-1, -1}, hi[2] = {-1, -1};
    for (int64_t j = 0; j < V; j++) {
        int64_t i = order[j];
        for (int w = 0; w < 2; w++)
            if (i == (w ? cpu : gpu)) lo[w] = cum, hi[w] = cum + prob[i];
        cum += prob[i];
    }
    free(prob);
    free(order);
    if (lo[0] < 0 || lo[1] < 0 || lo[0] > hi[1] + 1e-3 || lo[1] > hi[0] + 1e-3)
        fail_msg("%s: row %lld: the GPU drew %d (cumulative %.6f..%.6f), the CPU %d (%.6f..%.6f)", what,
                 (long long)row, gpu, lo[0], hi[0], cpu, lo[1], hi[1]);
}

/* Sample on the device under test and check the distribution; then the
 * same again must give the same tokens, the counters must have moved on,
 * and on a GPU the CPU must draw the same tokens (rounding of the running
 * sums may move a draw that lands on a boundary: at most 0.5% of rows). */
static void distribution_case(const float *row, int64_t V, int64_t rows, const qn_sample_params *p, const char *what) {
    float *l = repeat_rows(row, V, rows);
    double *prob = malloc((size_t)V * sizeof *prob);
    ref_probs(row, V, p, prob);
    sample_case c = {l, V, rows, NULL, 0, *p, 7, 0, 1};
    sample_out a = sample_run(qt_device(), &c), b = sample_run(qt_device(), &c);
    check_distribution(a.tok, rows, prob, V, what);
    for (int64_t r = 0; r < rows; r++) {
        if (a.tok[r] != b.tok[r]) fail_msg("%s: row %lld drew %d, then %d from the same counter", what, (long long)r, a.tok[r], b.tok[r]);
        assert_int_equal(a.ctr[r], 8);
    }
    if (qt_on_gpu()) {
        sample_out cpu = sample_run(qt_cpu(), &c);
        int64_t differ = 0;
        for (int64_t r = 0; r < rows; r++) differ += cpu.tok[r] != a.tok[r];
        if (differ * 200 > rows) fail_msg("%s: GPU and CPU drew differently in %lld of %lld rows", what, (long long)differ, (long long)rows);
        out_free(&cpu);
    }
    /* another counter, other draws */
    c.counter0 = 8;
    sample_out d = sample_run(qt_device(), &c);
    int64_t same = 0;
    for (int64_t r = 0; r < rows; r++) same += d.tok[r] == a.tok[r];
    if (same == rows) fail_msg("%s: the counter does not change the draws", what);
    out_free(&a);
    out_free(&b);
    out_free(&d);
    free(l);
    free(prob);
}

static void test_greedy(void **state) {
    (void)state;
    const int64_t V = 999, rows = 3;
    float *l = malloc((size_t)(V * rows) * sizeof *l);
    for (int64_t i = 0; i < V * rows; i++) l[i] = qt_randf(-10, 10);
    l[1 * V + 10] = l[1 * V + 500] = 11.0f; /* a tie: the lower id wins */
    l[2 * V + 998] = 12.0f;                 /* the last id */
    sample_case c = {l, V, rows, NULL, 0, {0.0f, 0, 1.0f, 0.0f, 1.0f, 1}, 0, 0, 0};
    sample_out o = sample_run(qt_device(), &c);
    for (int64_t r = 0; r < rows; r++) {
        int64_t best = 0;
        double mx = -INFINITY, sum = 0;
        for (int64_t i = 0; i < V; i++)
            if (l[r * V + i] > mx) mx = l[r * V + i], best = i;
        for (int64_t i = 0; i < V; i++) sum += exp(l[r * V + i] - mx);
        assert_int_equal(o.tok[r], best);
        if (fabs(o.lp[r] - (0 - log(sum))) > 1e-5) fail_msg("row %lld: logprob %g, expected %g", (long long)r, o.lp[r], -log(sum));
        assert_int_equal(o.ctr[r], 0); /* greedy draws nothing */
    }
    assert_int_equal(o.tok[1], 10);
    assert_int_equal(o.tok[2], 998);
    /* without a logprob (the arg-max alone): the same ids */
    c.no_logprob = 1;
    sample_out o2 = sample_run(qt_device(), &c);
    for (int64_t r = 0; r < rows; r++) {
        assert_int_equal(o2.tok[r], o.tok[r]);
        assert_true(isnan(o2.lp[r]));
    }
    out_free(&o2);
    out_free(&o);
    free(l);
}

static void test_penalty(void **state) {
    (void)state;
    const int64_t V = 50, rows = 2, W = 6;
    float *l = malloc((size_t)(V * rows) * sizeof *l);
    for (int64_t i = 0; i < V * rows; i++) l[i] = qt_randf(-1, 1);
    l[3] = 5.0f;      /* row 0: the best, penalized below id 9 */
    l[9] = 4.0f;
    l[7] = -2.0f;     /* negative: multiplied */
    l[V + 20] = 3.0f; /* row 1: untouched by row 0's window */
    int32_t recent[12] = {3, 7, 3, -1, 60, 7, /* row 1: */ 1, 2, 2, 2, 2, 2};
    sample_case c = {l, V, rows, recent, W, {0.0f, 0, 1.0f, 0.0f, 2.0f, 1}, 0, 0, 0};
    sample_out o = sample_run(qt_device(), &c);
    float want[100];
    memcpy(want, l, sizeof want);
    want[3] = 2.5f;                          /* 5 / 2, once despite the repeat */
    want[7] = -4.0f;                         /* -2 * 2 */
    want[V + 1] = l[V + 1] > 0 ? l[V + 1] / 2 : l[V + 1] * 2;
    want[V + 2] = l[V + 2] > 0 ? l[V + 2] / 2 : l[V + 2] * 2;
    for (int i = 0; i < 100; i++)
        if (o.logits[i] != want[i]) fail_msg("logit %d is %g after the penalty, expected %g", i, o.logits[i], want[i]);
    assert_int_equal(o.tok[0], 9);
    assert_int_equal(o.tok[1], 20);
    out_free(&o);
    free(l);
}

static void test_distribution_full(void **state) {
    (void)state;
    float row[10];
    for (int i = 0; i < 10; i++) row[i] = qt_randf(-2, 2);
    qn_sample_params p = {0.7f, 0, 1.0f, 0.0f, 1.0f, 12345};
    distribution_case(row, 10, 20000, &p, "temperature 0.7, 10 ids");
}

static void test_distribution_truncated(void **state) {
    (void)state;
    float row[50];
    for (int i = 0; i < 50; i++) row[i] = qt_randf(-3, 3);
    qn_sample_params p = {1.3f, 10, 0.8f, 0.05f, 1.0f, 777};
    distribution_case(row, 50, 20000, &p, "top_k 10, top_p 0.8, min_p 0.05, temperature 1.3");
    qn_sample_params q = {1.0f, 7, 1.0f, 0.0f, 1.0f, 778};
    distribution_case(row, 50, 20000, &q, "top_k 7");
}

/* The full-vocabulary draw over three slices of the GPU's blocks (4096
 * ids each): the draw finds the slice, then the id inside it. */
static void test_distribution_min_p(void **state) {
    (void)state;
    const int64_t V = 9001;
    float *row = malloc((size_t)V * sizeof *row);
    for (int64_t i = 0; i < V; i++) row[i] = qt_randf(-4, -3);
    for (int k = 0; k < 12; k++) row[(qt_rand() % (uint64_t)V)] = qt_randf(1, 3);
    row[4095] = row[4096] = 2.5f; /* on both sides of a slice boundary */
    qn_sample_params p = {1.0f, 0, 1.0f, 0.01f, 1.0f, 99};
    distribution_case(row, V, 3000, &p, "min_p 0.01 over 9001 ids");
    qn_sample_params q = {1.5f, 0, 1.0f, 0.0f, 1.0f, 98};
    distribution_case(row, V, 3000, &q, "temperature 1.5 over 9001 ids, no truncation");
    free(row);
}

/* Many equal logits: the top k of them are the lowest ids, within one
 * slice and across the GPU's slices (9000 ids: three; the merge sees
 * slices full of equal candidates). */
static void test_ties(void **state) {
    (void)state;
    float *row = malloc(9000 * sizeof *row);
    for (int i = 0; i < 9000; i++) row[i] = 0.5f;
    qn_sample_params p = {1.0f, 5, 1.0f, 0.0f, 1.0f, 5};
    distribution_case(row, 1500, 20000, &p, "top_k 5 of 1500 equal logits");
    distribution_case(row, 9000, 3000, &p, "top_k 5 of 9000 equal logits");
    /* the top 300 of 9000: 299 equal ones below one larger at the end */
    row[8999] = 0.75f;
    qn_sample_params q = {1.0f, 300, 1.0f, 0.0f, 1.0f, 6};
    distribution_case(row, 9000, 3000, &q, "top_k 300 of 9000, ties below the largest");
    free(row);
}

/* Greedy ties across a slice boundary, and -0 against +0: the lower id. */
static void test_greedy_ties(void **state) {
    (void)state;
    const int64_t V = 9000, rows = 3;
    float *l = malloc((size_t)(V * rows) * sizeof *l);
    for (int64_t i = 0; i < V * rows; i++) l[i] = qt_randf(-3, -1);
    l[0 * V + 4096] = l[0 * V + 4095] = 1.0f; /* ids 4095 and 4096 */
    l[1 * V + 8191] = l[1 * V + 8999] = l[1 * V + 4097] = 2.0f;
    l[2 * V + 5000] = 0.0f;
    l[2 * V + 7] = -0.0f;
    sample_case c = {l, V, rows, NULL, 0, {0.0f, 0, 1.0f, 0.0f, 1.0f, 1}, 0, 1, 0};
    sample_out o = sample_run(qt_device(), &c);
    assert_int_equal(o.tok[0], 4095);
    assert_int_equal(o.tok[1], 4097);
    assert_int_equal(o.tok[2], 7);
    out_free(&o);
    free(l);
}

/* The arg-max of a row in id order (ties to the lower id) and the
 * log-softmax of id tok, in double. */
static int64_t ref_argmax(const float *l, int64_t V) {
    int64_t best = 0;
    for (int64_t i = 1; i < V; i++)
        if (l[i] > l[best]) best = i;
    return best;
}

static double ref_logprob(const float *l, int64_t V, int64_t tok) {
    double mx = l[ref_argmax(l, V)], sum = 0;
    for (int64_t i = 0; i < V; i++) sum += exp(l[i] - mx);
    return l[tok] - mx - log(sum);
}

/* Large vocabularies, every row's token a survivor of the truncation
 * computed here, its logprob, the same tokens again from the same
 * counter, and on a GPU the CPU's tokens. */
static void large_case(int64_t V, int64_t rows, const qn_sample_params *p) {
    float *l = malloc((size_t)(V * rows) * sizeof *l);
    for (int64_t i = 0; i < V * rows; i++) l[i] = qt_randf(-8, 8);
    double *prob = malloc((size_t)V * sizeof *prob);
    sample_case c = {l, V, rows, NULL, 0, *p, 3, 0, 1};
    sample_out a = sample_run(qt_device(), &c), b = sample_run(qt_device(), &c);
    for (int64_t r = 0; r < rows; r++) {
        ref_probs(l + r * V, V, p, prob);
        if (prob[a.tok[r]] == 0) fail_msg("row %lld drew %d, outside the survivors", (long long)r, a.tok[r]);
        assert_int_equal(a.tok[r], b.tok[r]);
        assert_int_equal(a.ctr[r], 4);
        double lp = ref_logprob(l + r * V, V, a.tok[r]);
        if (!(fabs(a.lp[r] - lp) <= 1e-4)) fail_msg("row %lld: logprob %g, expected %g", (long long)r, a.lp[r], lp);
    }
    if (qt_on_gpu()) {
        sample_out cpu = sample_run(qt_cpu(), &c);
        for (int64_t r = 0; r < rows; r++) check_same_draw(l + r * V, V, p, a.tok[r], cpu.tok[r], "large", r);
        out_free(&cpu);
    }
    out_free(&a);
    out_free(&b);
    free(prob);
    free(l);
}

/* top_k 40 and top_p 0.9 over 262144 ids; top_k 1000 over 262181 ids in
 * more rows than one launch's scratch holds on a GPU (26 a launch). */
static void test_large_vocab(void **state) {
    (void)state;
    qn_sample_params p = {0.8f, 40, 0.9f, 0.0f, 1.0f, 4242}, q = {1.0f, 1000, 0.95f, 0.0f, 1.0f, 21};
    large_case(262144, 4, &p);
    large_case(262181, 28, &q);
}

/* Every path on odd vocabularies (one id, fewer than a warp, one GPU slice
 * of 4096, a slice and one more id, 64 slices and a partial one), with a
 * repetition window holding duplicates and ids outside the vocabulary:
 * the penalized logits as computed here, the token a survivor of the
 * truncation computed here in double (the arg-max when greedy or top_k 1),
 * its logprob, the counter; on a GPU, the CPU backend's tokens. */
static void test_paths(void **state) {
    (void)state;
    const int64_t sizes[] = {1, 7, 1000, 4097, 262181}, rows = 3, W = 8;
    const qn_sample_params params[] = {
        {0.0f, 0, 1.0f, 0.0f, 1.0f, 1},     {0.0f, 0, 1.0f, 0.0f, 1.3f, 1},   {1.0f, 1, 1.0f, 0.0f, 1.0f, 11},
        {0.8f, 40, 0.9f, 0.05f, 1.3f, 12},  {1.5f, 1024, 1.0f, 0.0f, 1.0f, 13}, {1.0f, 0, 1.0f, 0.0f, 1.0f, 14},
        {0.7f, 0, 1.0f, 0.1f, 1.2f, 15},
    };
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        const int64_t V = sizes[si];
        float *l = malloc((size_t)(V * rows) * sizeof *l), *want = malloc((size_t)(V * rows) * sizeof *want);
        double *prob = malloc((size_t)V * sizeof *prob);
        int32_t recent[3 * 8];
        for (size_t pi = 0; pi < sizeof params / sizeof params[0]; pi++) {
            const qn_sample_params *p = &params[pi];
            for (int64_t i = 0; i < V * rows; i++) l[i] = qt_randf(-6, 6);
            for (int64_t j = 0; j < W * rows; j++) recent[j] = (int32_t)(qt_rand() % (uint64_t)(V + 4)) - 2;
            for (int64_t r = 0; r < rows; r++) recent[r * W + 5] = recent[r * W + 1]; /* a repeat */
            memcpy(want, l, (size_t)(V * rows) * sizeof *l);
            for (int64_t r = 0; r < rows; r++)
                for (int64_t j = 0; j < W; j++) {
                    int32_t id = recent[r * W + j];
                    bool seen = id < 0 || id >= V;
                    for (int64_t k = 0; k < j; k++) seen = seen || recent[r * W + k] == id;
                    float *x = &want[r * V + (seen ? 0 : id)];
                    if (!seen) *x = *x > 0 ? *x / p->repeat_penalty : *x * p->repeat_penalty;
                }
            sample_case c = {l, V, rows, recent, W, *p, 5, 0, 0};
            sample_out o = sample_run(qt_device(), &c);
            char what[96];
            snprintf(what, sizeof what, "vocab %lld, params %zu", (long long)V, pi);
            for (int64_t r = 0; r < rows; r++) {
                const float *pl = want + r * V;
                for (int64_t i = 0; i < V; i++)
                    if (memcmp(&o.logits[r * V + i], &pl[i], 4))
                        fail_msg("%s: row %lld logit %lld is %g after the penalty, expected %g", what, (long long)r,
                                 (long long)i, o.logits[r * V + i], pl[i]);
                const int32_t tok = o.tok[r];
                if (tok < 0 || tok >= V) fail_msg("%s: row %lld drew %d", what, (long long)r, tok);
                if (p->temperature <= 0 || p->top_k == 1) {
                    if (tok != ref_argmax(pl, V))
                        fail_msg("%s: row %lld chose %d, the arg-max is %lld", what, (long long)r, tok,
                                 (long long)ref_argmax(pl, V));
                } else {
                    ref_probs(pl, V, p, prob);
                    if (prob[tok] == 0)
                        fail_msg("%s: row %lld drew %d, which is not a survivor", what, (long long)r, tok);
                }
                double lp = ref_logprob(pl, V, tok);
                if (!(fabs(o.lp[r] - lp) <= 1e-4))
                    fail_msg("%s: row %lld logprob %g, expected %g", what, (long long)r, o.lp[r], lp);
                assert_int_equal(o.ctr[r], p->temperature > 0 ? 6 : 5);
            }
            if (qt_on_gpu()) {
                sample_out cpu = sample_run(qt_cpu(), &c);
                for (int64_t r = 0; r < rows; r++) {
                    if (p->temperature > 0) check_same_draw(want + r * V, V, p, o.tok[r], cpu.tok[r], what, r);
                    else assert_int_equal(o.tok[r], cpu.tok[r]);
                }
                out_free(&cpu);
            }
            out_free(&o);
        }
        free(l);
        free(want);
        free(prob);
    }
}

/* A captured graph: each replay draws from the counter it finds, as an
 * eager call from that counter does, so the blocks' merge leaves its
 * scratch ready for the next replay (greedy, top_k, and the
 * full-vocabulary draw's two kernels). */
static void test_graph_replay(void **state) {
    (void)state;
    const int64_t V = 262181, rows = 2, one[1] = {rows}, lne[2] = {V, rows};
    const qn_sample_params params[] = {
        {0.0f, 0, 1.0f, 0.0f, 1.0f, 1}, {0.8f, 40, 0.9f, 0.05f, 1.0f, 31}, {1.0f, 0, 1.0f, 0.02f, 1.0f, 32}};
    qn_device *dev = qt_device();
    float *l = malloc((size_t)(V * rows) * sizeof *l);
    for (int64_t i = 0; i < V * rows; i++) l[i] = qt_randf(-4, 4);
    qn_encoder *enc;
    qn_buffer *lb, *tb, *cb, *pb;
    QT_OK(qn_encoder_create(dev, &enc));
    QT_OK(qn_buffer_alloc(dev, QN_F32, 2, lne, &lb));
    QT_OK(qn_buffer_write(lb, 0, l, (size_t)(V * rows) * 4));
    QT_OK(qn_buffer_alloc(dev, QN_I32, 1, one, &tb));
    QT_OK(qn_buffer_alloc(dev, QN_I32, 1, one, &cb));
    QT_OK(qn_buffer_alloc(dev, QN_F32, 1, one, &pb));
    qn_tensor T_tok = qn_tensor_of(tb), T_lp = qn_tensor_of(pb), T_logits = qn_tensor_of(lb), T_ctr = qn_tensor_of(cb);
    enum { REPLAYS = 6 };
    for (size_t pi = 0; pi < sizeof params / sizeof params[0]; pi++) {
        const qn_sample_params *p = &params[pi];
        int32_t zero[2] = {0, 0}, got[REPLAYS][2], ctr[2];
        QT_OK(qn_buffer_write(cb, 0, zero, sizeof zero));
        qn_graph *g;
        QT_OK(qn_graph_begin(enc));
        QT_OK(qn_sample(enc, T_tok, T_lp, T_logits, QN_TENSOR_NONE, T_ctr, p));
        QT_OK(qn_graph_end(enc, &g));
        for (int i = 0; i < REPLAYS; i++) {
            QT_OK(qn_graph_launch(g, enc));
            QT_OK(qn_encoder_commit_wait(enc));
            QT_OK(qn_buffer_read(tb, 0, got[i], sizeof got[i]));
        }
        QT_OK(qn_buffer_read(cb, 0, ctr, sizeof ctr));
        assert_int_equal(ctr[0], p->temperature > 0 ? REPLAYS : 0);
        for (int i = 0; i < REPLAYS; i++) {
            int32_t c0[2] = {i, i}, eager[2];
            QT_OK(qn_buffer_write(cb, 0, c0, sizeof c0));
            QT_OK(qn_sample(enc, T_tok, T_lp, T_logits, QN_TENSOR_NONE, T_ctr, p));
            QT_OK(qn_encoder_commit_wait(enc));
            QT_OK(qn_buffer_read(tb, 0, eager, sizeof eager));
            for (int r = 0; r < rows; r++)
                if (eager[r] != got[i][r])
                    fail_msg("params %zu, replay %d, row %d: the graph drew %d, an eager call %d", pi, i, r, got[i][r],
                             eager[r]);
        }
        qn_graph_destroy(g);
    }
    qn_buffer_free(lb);
    qn_buffer_free(tb);
    qn_buffer_free(cb);
    qn_buffer_free(pb);
    qn_encoder_destroy(enc);
    free(l);
}

static void test_sample_errors(void **state) {
    (void)state;
    qn_device *dev = qt_device();
    qn_encoder *enc;
    QT_OK(qn_encoder_create(dev, &enc));
    int64_t lne[2] = {100, 2}, two[1] = {2};
    qn_buffer *l, *h, *t = qt_poisoned(dev, QN_I32, 1, two), *ctr;
    QT_OK(qn_buffer_alloc(dev, QN_F32, 2, lne, &l));
    QT_OK(qn_buffer_alloc(dev, QN_F16, 2, lne, &h));
    QT_OK(qn_buffer_alloc(dev, QN_I32, 1, two, &ctr));
    qn_tensor L = qn_tensor_of(l), T = qn_tensor_of(t), C = qn_tensor_of(ctr), N = QN_TENSOR_NONE;
    qn_sample_params p = {1.0f, 0, 0.9f, 0.0f, 1.0f, 1};
    QT_FAILS(qn_sample(enc, T, N, L, N, C, &p), QN_ERR_INVALID_ARGUMENT, "top_p 0.9 needs top_k in 1..1024");
    p.top_p = 1.0f;
    p.top_k = 2000;
    QT_FAILS(qn_sample(enc, T, N, L, N, C, &p), QN_ERR_INVALID_ARGUMENT, "top_k 2000 not in 0..1024");
    p.top_k = 0;
    QT_FAILS(qn_sample(enc, T, N, L, N, N, &p), QN_ERR_INVALID_ARGUMENT, "counter is required");
    QT_FAILS(qn_sample(enc, T, N, qn_tensor_of(h), N, C, &p), QN_ERR_INVALID_ARGUMENT, "logits is f16 (expected f32)");
    QT_FAILS(qn_sample(enc, T, N, L, L, C, &p), QN_ERR_INVALID_ARGUMENT, "recent is f32");
    QT_FAILS(qn_sample(enc, C, L, L, N, C, &p), QN_ERR_INVALID_ARGUMENT, "logprob is f32 [100,2,1,1], expected f32 [2]");
    p.min_p = 1.0f;
    QT_FAILS(qn_sample(enc, T, N, L, N, C, &p), QN_ERR_INVALID_ARGUMENT, "min_p 1 not in [0, 1)");
    p.min_p = 0.0f;
    p.repeat_penalty = 0.0f;
    QT_FAILS(qn_sample(enc, T, N, L, N, C, &p), QN_ERR_INVALID_ARGUMENT, "repeat_penalty 0");
    QT_FAILS(qn_sample(enc, T, N, L, N, C, NULL), QN_ERR_INVALID_ARGUMENT, "params is NULL");
    p.repeat_penalty = 1.0f;
    QT_FAILS(qn_sample(enc, T, N, qn_tensor_make(l, 0, QN_F32, 50, 2, 2, 1), N, C, &p), QN_ERR_INVALID_ARGUMENT,
             "logits [50,2,2,1] must be [vocab <= 16777216, rows]");
    QT_FAILS(qn_sample(enc, qn_tensor_make(t, 0, QN_I32, 1, 1, 1, 1), N, L, N, C, &p), QN_ERR_INVALID_ARGUMENT,
             "token is [1,1,1,1], expected [2,1]");
    QT_OK(qn_encoder_commit_wait(enc));
    int32_t *tok = qt_read_all(t);
    assert_int_equal(tok[0], -1); /* nothing ran */
    free(tok);
    qn_buffer_free(l);
    qn_buffer_free(h);
    qn_buffer_free(t);
    qn_buffer_free(ctr);
    qn_encoder_destroy(enc);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy),
        cmocka_unit_test(test_penalty),
        cmocka_unit_test(test_distribution_full),
        cmocka_unit_test(test_distribution_truncated),
        cmocka_unit_test(test_distribution_min_p),
        cmocka_unit_test(test_ties),
        cmocka_unit_test(test_greedy_ties),
        cmocka_unit_test(test_large_vocab),
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_graph_replay),
        cmocka_unit_test(test_sample_errors),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    qt_close_devices();
    return rc;
}
