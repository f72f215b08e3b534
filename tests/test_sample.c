/* Sampling on the device under test: greedy choice and its log-probability,
 * the repetition penalty, the distribution of seeded draws (many rows of
 * the same logits draw independently in one launch; a chi-square statistic
 * against probabilities computed here in double, with a fixed seed so the
 * test is repeatable), truncation by top_k / top_p / min_p (no draw outside
 * the survivors computed here), determinism from the device counter, and on
 * a GPU agreement with the CPU backend's draws. */
#include "util.h"

#include <math.h>
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
    sample_out o = {qt_read_all(tb), qt_read_all(pb), qt_read_all(cb), qt_read_all(lb)};
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

/* Sample on the device under test and check the distribution; then the
 * same again must give the same tokens, the counters must have moved on,
 * and on a GPU the CPU must draw the same tokens (rounding of the running
 * sums may move a draw that lands on a boundary: at most 0.5% of rows). */
static void distribution_case(const float *row, int64_t V, const qn_sample_params *p, const char *what) {
    const int64_t rows = 20000;
    float *l = repeat_rows(row, V, rows);
    double *prob = malloc((size_t)V * sizeof *prob);
    ref_probs(row, V, p, prob);
    sample_case c = {l, V, rows, NULL, 0, *p, 7, 0};
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
    sample_case c = {l, V, rows, NULL, 0, {0.0f, 0, 1.0f, 0.0f, 1.0f, 1}, 0, 0};
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
    sample_case c = {l, V, rows, recent, W, {0.0f, 0, 1.0f, 0.0f, 2.0f, 1}, 0, 0};
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
    distribution_case(row, 10, &p, "temperature 0.7, 10 ids");
}

static void test_distribution_truncated(void **state) {
    (void)state;
    float row[50];
    for (int i = 0; i < 50; i++) row[i] = qt_randf(-3, 3);
    qn_sample_params p = {1.3f, 10, 0.8f, 0.05f, 1.0f, 777};
    distribution_case(row, 50, &p, "top_k 10, top_p 0.8, min_p 0.05, temperature 1.3");
    qn_sample_params q = {1.0f, 7, 1.0f, 0.0f, 1.0f, 778};
    distribution_case(row, 50, &q, "top_k 7");
}

/* More ids than the GPU block has threads: the draw walks a thread's ids. */
static void test_distribution_min_p(void **state) {
    (void)state;
    const int64_t V = 2053;
    float *row = malloc((size_t)V * sizeof *row);
    for (int64_t i = 0; i < V; i++) row[i] = qt_randf(-4, -3);
    for (int k = 0; k < 12; k++) row[(qt_rand() % (uint64_t)V)] = qt_randf(1, 3);
    qn_sample_params p = {1.0f, 0, 1.0f, 0.01f, 1.0f, 99};
    distribution_case(row, V, &p, "min_p 0.01 over 2053 ids");
    free(row);
}

/* Many equal logits: the top k of them are the lowest ids. */
static void test_ties(void **state) {
    (void)state;
    float *row = malloc(1500 * sizeof *row);
    for (int i = 0; i < 1500; i++) row[i] = 0.5f;
    qn_sample_params p = {1.0f, 5, 1.0f, 0.0f, 1.0f, 5};
    distribution_case(row, 1500, &p, "top_k 5 of 1500 equal logits");
    free(row);
}

/* A 262144 vocabulary: top_k 40 and top_p 0.9 from the largest logits. */
static void test_large_vocab(void **state) {
    (void)state;
    const int64_t V = 262144, rows = 4;
    float *l = malloc((size_t)(V * rows) * sizeof *l);
    for (int64_t i = 0; i < V * rows; i++) l[i] = qt_randf(-8, 8);
    double *prob = malloc((size_t)V * sizeof *prob);
    sample_case c = {l, V, rows, NULL, 0, {0.8f, 40, 0.9f, 0.0f, 1.0f, 4242}, 0, 0};
    sample_out a = sample_run(qt_device(), &c), b = sample_run(qt_device(), &c);
    for (int64_t r = 0; r < rows; r++) {
        ref_probs(l + r * V, V, &c.p, prob);
        if (prob[a.tok[r]] == 0) fail_msg("row %lld drew %d, outside the top_k / top_p survivors", (long long)r, a.tok[r]);
        assert_int_equal(a.tok[r], b.tok[r]);
        double mx = -INFINITY, sum = 0;
        for (int64_t i = 0; i < V; i++) mx = fmax(mx, l[r * V + i]);
        for (int64_t i = 0; i < V; i++) sum += exp(l[r * V + i] - mx);
        double want = l[r * V + a.tok[r]] - mx - log(sum);
        if (fabs(a.lp[r] - want) > 1e-4) fail_msg("row %lld: logprob %g, expected %g", (long long)r, a.lp[r], want);
    }
    if (qt_on_gpu()) {
        sample_out cpu = sample_run(qt_cpu(), &c);
        for (int64_t r = 0; r < rows; r++) assert_int_equal(cpu.tok[r], a.tok[r]);
        out_free(&cpu);
    }
    out_free(&a);
    out_free(&b);
    free(prob);
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
        cmocka_unit_test(test_large_vocab),
        cmocka_unit_test(test_sample_errors),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    qt_close_devices();
    return rc;
}
