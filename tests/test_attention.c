/* Flash attention (decode and prefill) on the device under test against a
 * reference written here in double: which keys each query sees, the softcap,
 * the sinks and the softmax are restated from the documented semantics, not
 * taken from the library. Caches are written byte by byte by the test (f16
 * by _Float16, bf16 by truncating random values, q8_0 by ggml's algorithm),
 * and every cache row outside the live positions is poisoned (NaN), so a
 * kernel that reads a key it should not gives NaN. On a GPU the CPU backend
 * runs the same inputs and both are checked.
 *
 * Tolerances (max abs error; outputs are averages of values in [-1, 1]):
 * CPU 1e-5 (double arithmetic on the same f32 values); GPU decode 1e-4 (f32
 * arithmetic); GPU prefill 3e-3 with f16 and 1.5e-2 with bf16, where q and
 * the softmax weights are rounded to the cache type for the tensor cores
 * (relative 2^-11 and 2^-8). */
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int64_t d, hq, hkv, n, cap;
    int32_t p0;
    qn_dtype kv;
    qn_attn_mask mask;
    int32_t window;
    float softcap;
    bool sinks, prefill;
} acase;

typedef struct {
    float *q;           /* [n][hq][d]                                   */
    float *val[2];      /* K, V as the cache holds them: [hkv][cap][d] */
    unsigned char *bytes[2];
    float *sinks;       /* [hq] */
} inputs;

static uint16_t f16_bits(float f) {
    _Float16 h = (_Float16)f;
    uint16_t u;
    memcpy(&u, &h, 2);
    return u;
}
static float f16_value(uint16_t u) {
    _Float16 h;
    memcpy(&h, &u, 2);
    return (float)h;
}

static float scale_of(const acase *c) { return 1.0f / sqrtf((float)c->d); }

static void describe(const acase *c, char *buf, size_t len) {
    snprintf(buf, len, "%s d %lld, %lld/%lld heads, %lld tokens at p0 %d, capacity %lld, %s, mask %d window %d, softcap %g%s",
             c->prefill ? "prefill" : "decode", (long long)c->d, (long long)c->hq, (long long)c->hkv, (long long)c->n,
             c->p0, (long long)c->cap, qn_dtype_name(c->kv), (int)c->mask, c->window, (double)c->softcap,
             c->sinks ? ", sinks" : "");
}

/* Positions the cache holds after this step's tokens were appended. */
static bool live(const acase *c, int64_t pos) { return pos >= 0 && pos < c->p0 + c->n && pos >= c->p0 + c->n - c->cap; }

/* Random inputs; cache rows of dead positions are 0xFF bytes (NaN). */
static inputs make_inputs(const acase *c) {
    inputs in;
    const size_t nq = (size_t)(c->n * c->hq * c->d), nkv = (size_t)(c->hkv * c->cap * c->d);
    const int64_t rb = qn_dtype_row_bytes(c->kv, c->d);
    in.q = malloc(nq * 4);
    qt_fill_random_f32(in.q, nq, -3, 3);
    in.sinks = malloc((size_t)c->hq * 4);
    qt_fill_random_f32(in.sinks, (size_t)c->hq, -2, 3);
    for (int w = 0; w < 2; w++) {
        in.val[w] = malloc(nkv * 4);
        in.bytes[w] = malloc((size_t)(rb * c->cap * c->hkv));
        memset(in.bytes[w], 0xFF, (size_t)(rb * c->cap * c->hkv));
        for (size_t i = 0; i < nkv; i++) in.val[w][i] = NAN;
        for (int64_t pos = c->p0 + c->n - 1; pos >= 0 && live(c, pos); pos--)
            for (int64_t h = 0; h < c->hkv; h++) {
                const int64_t row = h * c->cap + pos % c->cap;
                float *x = in.val[w] + row * c->d;
                unsigned char *b = in.bytes[w] + row * rb;
                qt_fill_random_f32(x, (size_t)c->d, -1, 1);
                for (int64_t blk = 0; c->kv == QN_Q8_0 && blk < c->d / 32; blk++) {
                    /* ggml's q8_0, and the values it stands for: d * q */
                    float amax = 0.0f;
                    for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[blk * 32 + i]));
                    const float dd = amax / 127.0f, id = dd != 0.0f ? 1.0f / dd : 0.0f;
                    const uint16_t dh = f16_bits(dd);
                    memcpy(b + blk * 34, &dh, 2);
                    for (int i = 0; i < 32; i++) {
                        const signed char qv = (signed char)roundf(x[blk * 32 + i] * id);
                        b[blk * 34 + 2 + i] = (unsigned char)qv;
                        x[blk * 32 + i] = f16_value(dh) * (float)qv;
                    }
                }
                for (int64_t i = 0; c->kv != QN_Q8_0 && i < c->d; i++) {
                    uint16_t h16;
                    if (c->kv == QN_F16) {
                        h16 = f16_bits(x[i]);
                        x[i] = f16_value(h16);
                    } else { /* a bf16 value: drop the low 16 bits */
                        uint32_t u;
                        memcpy(&u, &x[i], 4);
                        h16 = (uint16_t)(u >> 16);
                        u &= 0xffff0000u;
                        memcpy(&x[i], &u, 4);
                    }
                    memcpy(b + 2 * i, &h16, 2);
                }
            }
    }
    return in;
}

static void free_inputs(inputs *in) {
    free(in->q);
    free(in->sinks);
    for (int w = 0; w < 2; w++) {
        free(in->val[w]);
        free(in->bytes[w]);
    }
}

/* The reference: for query token t at position p0 + t and head h, the keys
 * of kv head h / (hq / hkv) at positions the mask allows and the cache still
 * holds; logits scale * q.k, softcapped; softmax with the sink in the
 * denominator. */
static void reference(const acase *c, const inputs *in, double *out) {
    const int64_t g = c->hq / c->hkv;
    double *logit = malloc((size_t)(c->p0 + c->n) * sizeof(double));
    for (int64_t t = 0; t < c->n; t++)
        for (int64_t h = 0; h < c->hq; h++) {
            const int64_t me = c->p0 + t;
            const float *q = in->q + (t * c->hq + h) * c->d;
            double mx = -INFINITY;
            for (int64_t j = 0; j < c->p0 + c->n; j++) {
                bool seen = live(c, j);
                if (c->mask != QN_ATTN_MASK_NONE && j > me) seen = false;
                if (c->mask == QN_ATTN_MASK_WINDOW && j <= me - c->window) seen = false;
                logit[j] = -INFINITY;
                if (!seen) continue;
                const float *k = in->val[0] + ((h / g) * c->cap + j % c->cap) * c->d;
                double s = 0.0;
                for (int64_t i = 0; i < c->d; i++) s += (double)q[i] * k[i];
                s *= scale_of(c);
                if (c->softcap > 0.0f) s = c->softcap * tanh(s / c->softcap);
                logit[j] = s;
                if (s > mx) mx = s;
            }
            double sum = c->sinks ? exp(in->sinks[h] - mx) : 0.0;
            for (int64_t j = 0; j < c->p0 + c->n; j++)
                if (logit[j] > -INFINITY) sum += exp(logit[j] - mx);
            double *o = out + (t * c->hq + h) * c->d;
            for (int64_t i = 0; i < c->d; i++) o[i] = 0.0;
            for (int64_t j = 0; j < c->p0 + c->n; j++) {
                if (logit[j] == -INFINITY) continue;
                const double w = exp(logit[j] - mx) / sum;
                const float *v = in->val[1] + ((h / g) * c->cap + j % c->cap) * c->d;
                for (int64_t i = 0; i < c->d; i++) o[i] += w * v[i];
            }
        }
    free(logit);
}

static qn_attn_opts opts_of(const acase *c) { return (qn_attn_opts){scale_of(c), c->softcap, c->mask, c->window}; }

/* Run the op on `dev` with `shared` as its scratch, or a fresh poisoned
 * one when NULL; returns out [n][hq][d]. */
static float *run_attn(qn_device *dev, const acase *c, const inputs *in, qn_buffer *shared) {
    qn_encoder *enc;
    QT_OK(qn_encoder_create(dev, &enc));
    const int64_t rb = qn_dtype_row_bytes(c->kv, c->d);
    qn_buffer *q, *k, *v, *pos, *sinks, *scratch = NULL;
    qn_buffer *out = qt_poisoned(dev, QN_F32, 3, (int64_t[]){c->d, c->hq, c->n});
    QT_OK(qn_buffer_alloc(dev, QN_F32, 3, (int64_t[]){c->d, c->hq, c->n}, &q));
    QT_OK(qn_buffer_alloc(dev, c->kv, 3, (int64_t[]){c->d, c->cap, c->hkv}, &k));
    QT_OK(qn_buffer_alloc(dev, c->kv, 3, (int64_t[]){c->d, c->cap, c->hkv}, &v));
    QT_OK(qn_buffer_alloc(dev, QN_I32, 1, (int64_t[]){1}, &pos));
    QT_OK(qn_buffer_alloc(dev, QN_F32, 1, (int64_t[]){c->hq}, &sinks));
    QT_OK(qn_buffer_write(q, 0, in->q, (size_t)(c->n * c->hq * c->d) * 4));
    QT_OK(qn_buffer_write(k, 0, in->bytes[0], (size_t)(rb * c->cap * c->hkv)));
    QT_OK(qn_buffer_write(v, 0, in->bytes[1], (size_t)(rb * c->cap * c->hkv)));
    QT_OK(qn_buffer_write(pos, 0, &c->p0, 4));
    QT_OK(qn_buffer_write(sinks, 0, in->sinks, (size_t)c->hq * 4));
    int64_t elems;
    QT_OK(qn_flash_attn_scratch(dev, c->prefill, qn_tensor_of(q), qn_tensor_of(k), &elems));
    if (qn_device_backend(dev) == QN_BACKEND_CPU) assert_int_equal(elems, 0);
    qn_tensor st;
    if (elems > 0 && shared) {
        assert_true(qn_buffer_ne(shared, 0) >= elems);
        st = qn_tensor_of(shared);
    } else if (elems > 0) {
        scratch = qt_poisoned(dev, QN_F32, 1, (int64_t[]){elems});
        st = qn_tensor_of(scratch);
    }
    qn_tensor sk = qn_tensor_of(sinks);
    QT_OK((c->prefill ? qn_flash_attn_prefill : qn_flash_attn_decode)(
        enc, qn_tensor_of(out), qn_tensor_of(q), qn_tensor_of(k), qn_tensor_of(v), qn_tensor_of(pos),
        c->sinks ? &sk : NULL, elems > 0 ? &st : NULL, opts_of(c)));
    QT_OK(qn_encoder_commit_wait(enc));
    float *got = qt_read_all(out);
    qn_buffer_free(out);
    qn_buffer_free(q);
    qn_buffer_free(k);
    qn_buffer_free(v);
    qn_buffer_free(pos);
    qn_buffer_free(sinks);
    qn_buffer_free(scratch);
    qn_encoder_destroy(enc);
    return got;
}

static void expect_close(const acase *c, const float *got, const double *want, double tol, const char *who) {
    const int64_t n = c->n * c->hq * c->d;
    double worst = 0.0;
    int64_t at = 0;
    for (int64_t i = 0; i < n; i++) {
        const double e = fabs((double)got[i] - want[i]);
        if (!(e <= worst)) { /* NaN counts as worst */
            worst = isnan(e) ? INFINITY : e;
            at = i;
        }
    }
    if (worst > tol) {
        char what[256];
        describe(c, what, sizeof what);
        fail_msg("%s, %s: out[d %lld, head %lld, token %lld] = %.7g, expected %.7g (error %.3g > %.3g)", what, who,
                 (long long)(at % c->d), (long long)(at / c->d % c->hq), (long long)(at / (c->d * c->hq)),
                 (double)got[at], want[at], worst, tol);
    }
}

static double gpu_tolerance(const acase *c) {
    if (!c->prefill) return 1e-4;
    return c->kv == QN_BF16 ? 1.5e-2 : 3e-3;
}

static void check_case_with(const acase *c, qn_buffer *scratch) {
    inputs in = make_inputs(c);
    double *want = malloc((size_t)(c->n * c->hq * c->d) * sizeof(double));
    reference(c, &in, want);
    float *got = run_attn(qt_device(), c, &in, scratch);
    expect_close(c, got, want, qt_on_gpu() ? gpu_tolerance(c) : 1e-5, qt_on_gpu() ? "GPU" : "CPU");
    if (qt_on_gpu()) { /* the CPU backend, and the GPU against it */
        float *cpu = run_attn(qt_cpu(), c, &in, NULL);
        expect_close(c, cpu, want, 1e-5, "CPU");
        double *cpu_d = malloc((size_t)(c->n * c->hq * c->d) * sizeof(double));
        for (int64_t i = 0; i < c->n * c->hq * c->d; i++) cpu_d[i] = cpu[i];
        expect_close(c, got, cpu_d, gpu_tolerance(c), "GPU vs CPU backend");
        free(cpu_d);
        free(cpu);
    }
    free(got);
    free(want);
    free_inputs(&in);
}

static void check_case(const acase *c) { check_case_with(c, NULL); }

#define CAUSAL QN_ATTN_MASK_CAUSAL
#define NONE QN_ATTN_MASK_NONE
#define WINDOW QN_ATTN_MASK_WINDOW

/* Every head dim, dtype, mask and group ratio; windows smaller and larger
 * than the sequence; rings wrapped several times; odd lengths; a first
 * token with a single key; as many tokens as the capacity. */
static void test_decode(void **state) {
    (void)state;
    const acase cases[] = {
        /* d, hq, hkv, n, cap, p0, kv, mask, window, softcap, sinks */
        {128, 8, 2, 1, 64, 40, QN_F16, CAUSAL, 0, 0, false, false},
        {64, 4, 4, 3, 50, 17, QN_F16, CAUSAL, 0, 0, false, false},
        {80, 6, 2, 2, 37, 20, QN_BF16, NONE, 0, 0, false, false},
        {96, 12, 1, 1, 40, 33, QN_Q8_0, CAUSAL, 0, 0, false, false},
        {256, 8, 4, 8, 100, 61, QN_F16, WINDOW, 16, 0, false, false},
        {512, 4, 2, 5, 30, 11, QN_F16, CAUSAL, 0, 0, true, false},
        {128, 32, 8, 1, 300, 299, QN_Q8_0, CAUSAL, 0, 2.0f, false, false},
        {128, 4, 1, 4, 12, 53, QN_BF16, WINDOW, 9, 0, false, false},
        {64, 2, 1, 6, 80, 9, QN_F16, WINDOW, 100, 0, false, false},
        {256, 2, 1, 1, 2048, 1500, QN_BF16, CAUSAL, 0, 0, true, false},
        {64, 8, 8, 7, 20, 97, QN_Q8_0, WINDOW, 13, 5.0f, true, false},
        {512, 16, 2, 1, 64, 0, QN_Q8_0, CAUSAL, 0, 0, false, false},
        {80, 5, 5, 8, 8, 3, QN_F16, NONE, 0, 0, false, false},
        {256, 16, 2, 3, 700, 513, QN_Q8_0, WINDOW, 256, 0, false, false},
        {128, 64, 8, 8, 90, 44, QN_F16, CAUSAL, 0, 30.0f, true, false},
        {96, 6, 3, 2, 33, 31, QN_BF16, CAUSAL, 0, 0, false, false},
        /* a small model's global layer: a few hundred keys in a large
         * cache (the GPU's grid is sized for the capacity, most of its
         * blocks find no work) */
        {256, 4, 1, 1, 32768, 299, QN_F16, CAUSAL, 0, 0, false, false},
        /* many row tiles (64 rows a kv head) and many splits per tile */
        {128, 16, 2, 8, 4096, 2990, QN_F16, CAUSAL, 0, 0, true, false},
        {64, 8, 1, 3, 3000, 2400, QN_Q8_0, WINDOW, 1500, 3.0f, false, false},
        /* q8_0 rows of 102 bytes (only 2-byte aligned) over many splits */
        {96, 4, 2, 1, 2000, 1800, QN_Q8_0, CAUSAL, 0, 0, true, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(&cases[i]);
}

/* Short contexts, where one cluster of blocks takes all the keys and
 * merges through shared memory (a small model's decode): lengths around
 * the 16-key tile and the warp and cluster boundaries (64 keys a block of
 * 4 warps, 512 a cluster of 8 at head 256, more than 512 with a second
 * tile a warp); Gemma 3 270M's shape (head 256, 4 query heads over 1 kv
 * head) causal in a large cache and with its window of 512 over a ring of
 * 1023, from the start and wrapped; then every head dim, cache type and
 * other group ratios, 1 to 3 tokens, softcap and sinks. */
static void test_decode_short(void **state) {
    (void)state;
    static const int32_t lens[] = {1, 2, 63, 64, 65, 511, 512, 600};
    static const int64_t dims[] = {64, 80, 96, 128, 256, 512};
    static const qn_dtype kvs[] = {QN_F16, QN_BF16, QN_Q8_0};
    for (int i = 0; i < 8; i++) {
        const int32_t n = lens[i];
        const acase gemma[] = {
            {256, 4, 1, 1, 4096, n - 1, QN_F16, CAUSAL, 0, 0, false, false},
            {256, 4, 1, 1, 1023, n - 1, QN_F16, WINDOW, 512, 0, i % 2 == 1, false},
            {256, 4, 1, 1, 1023, 3 * 1023 + n, QN_F16, WINDOW, 512, 0, false, false},
            {256, 4, 1, 1, 512, 700 + n, QN_BF16, WINDOW, 512, 0, false, false},
        };
        for (size_t j = 0; j < sizeof gemma / sizeof gemma[0]; j++) check_case(&gemma[j]);
        const int64_t d1 = dims[i % 6], d2 = dims[(i + 3) % 6];
        const qn_dtype kv1 = kvs[i % 3], kv2 = kvs[(i + 1) % 3];
        const acase other[] = {
            /* a cache just long enough for the step's keys, 1 to 3 tokens */
            {d1, 8, 2, 1 + i % 3, n + 2, n - 1, kv1 == QN_Q8_0 && d1 % 32 ? QN_F16 : kv1, CAUSAL, 0,
             i == 5 ? 10.0f : 0.0f, i % 3 == 1, false},
            /* a window of n keys over a wrapped ring of 600 */
            {d2, 6, 1, 2, 600, 1800 + 7 * n, kv2 == QN_Q8_0 && d2 % 32 ? QN_F16 : kv2, WINDOW, n, 0, i % 2 == 0,
             false},
            {d1, 16, 16, 1, 4096, n - 1, QN_F16, CAUSAL, 0, 0, false, false},
        };
        for (size_t j = 0; j < sizeof other / sizeof other[0]; j++) check_case(&other[j]);
    }
}

/* One scratch shared by decodes and prefills of different shapes in turn,
 * as a model's layers share one, starting from bytes the ops did not write
 * (random, and then small integers, what a count-based handshake would
 * misread): every call must find its splits' partials and leave the
 * scratch fit for the next. */
static void test_shared_scratch(void **state) {
    (void)state;
    const acase cases[] = {
        {128, 8, 2, 1, 4096, 3000, QN_F16, CAUSAL, 0, 0, false, false},
        {256, 4, 1, 2, 4096, 700, QN_BF16, WINDOW, 600, 0, true, false},
        {128, 8, 2, 40, 4096, 3000, QN_F16, CAUSAL, 0, 0, false, true},
        {128, 8, 2, 1, 4096, 1000, QN_F16, CAUSAL, 0, 0, false, false},
        {64, 16, 4, 4, 4096, 4000, QN_Q8_0, CAUSAL, 0, 0, false, false},
        {256, 4, 1, 100, 4096, 500, QN_BF16, WINDOW, 300, 0, true, true},
        {128, 8, 2, 1, 4096, 3000, QN_F16, CAUSAL, 0, 0, false, false},
        /* short contexts between the long ones: no partials through the scratch */
        {256, 4, 1, 1, 4096, 300, QN_F16, CAUSAL, 0, 0, false, false},
        {256, 4, 1, 1, 1023, 5000, QN_F16, WINDOW, 512, 0, true, false},
        {256, 4, 1, 1, 4096, 2000, QN_F16, CAUSAL, 0, 0, false, false},
    };
    const size_t nc = sizeof cases / sizeof cases[0];
    int64_t most = 1;
    for (size_t i = 0; i < nc; i++) {
        const acase *c = &cases[i];
        qn_tensor q = {.dtype = QN_F32, .ne = {c->d, c->hq, c->n, 1}}, k = {.dtype = c->kv, .ne = {c->d, c->cap, c->hkv, 1}};
        int64_t elems;
        QT_OK(qn_flash_attn_scratch(qt_device(), c->prefill, q, k, &elems));
        if (elems > most) most = elems;
    }
    qn_buffer *scratch;
    QT_OK(qn_buffer_alloc(qt_device(), QN_F32, 1, &most, &scratch));
    uint32_t *fill = malloc((size_t)most * 4);
    for (int round = 0; round < 2; round++) {
        for (int64_t i = 0; i < most; i++) fill[i] = round == 0 ? (uint32_t)qt_rand() : (uint32_t)(i % 7);
        QT_OK(qn_buffer_write(scratch, 0, fill, (size_t)most * 4));
        for (size_t i = 0; i < nc; i++) check_case_with(&cases[i], scratch);
    }
    free(fill);
    qn_buffer_free(scratch);
}

static void test_prefill(void **state) {
    (void)state;
    const acase cases[] = {
        {128, 8, 2, 100, 160, 0, QN_F16, CAUSAL, 0, 0, false, true},
        {128, 8, 2, 37, 200, 45, QN_BF16, CAUSAL, 0, 0, false, true},
        {64, 4, 1, 130, 300, 21, QN_F16, WINDOW, 50, 0, false, true},
        {80, 6, 2, 17, 40, 5, QN_F16, NONE, 0, 0, true, true},
        {96, 3, 3, 64, 64, 0, QN_BF16, CAUSAL, 0, 0, false, true},
        {256, 8, 4, 70, 512, 300, QN_F16, CAUSAL, 0, 20.0f, false, true},
        {512, 2, 1, 33, 96, 40, QN_F16, CAUSAL, 0, 0, false, true},
        {512, 4, 2, 20, 512, 200, QN_BF16, WINDOW, 70, 0, true, true},
        {128, 4, 2, 40, 72, 150, QN_F16, WINDOW, 33, 0, false, true},
        {256, 1, 1, 1, 300, 250, QN_BF16, CAUSAL, 0, 0, false, true},
        {64, 16, 2, 200, 1024, 700, QN_F16, CAUSAL, 0, 0, false, true},
        {96, 10, 2, 9, 129, 120, QN_F16, WINDOW, 500, 0, true, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(&cases[i]);
}

/* A decode step as a model runs it, captured once: append the new K and V,
 * attend. Replayed for 20 positions on a ring of 16 with a window of 10, so
 * the ring wraps; each replay matches the reference on a host mirror of the
 * cache, which proves the position is read from device memory. */
static void test_decode_graph(void **state) {
    (void)state;
    qn_device *dev = qt_device();
    acase c = {128, 8, 2, 1, 16, 0, QN_F16, WINDOW, 10, 0, true, false};
    const int64_t d = c.d, nkv = c.hkv * c.cap * d;
    qn_encoder *enc;
    QT_OK(qn_encoder_create(dev, &enc));
    qn_buffer *q, *newk, *newv, *pos, *sinks, *scratch = NULL;
    qn_buffer *k = qt_poisoned(dev, QN_F16, 3, (int64_t[]){d, c.cap, c.hkv});
    qn_buffer *v = qt_poisoned(dev, QN_F16, 3, (int64_t[]){d, c.cap, c.hkv});
    qn_buffer *out = qt_poisoned(dev, QN_F32, 3, (int64_t[]){d, c.hq, 1});
    QT_OK(qn_buffer_alloc(dev, QN_F32, 3, (int64_t[]){d, c.hq, 1}, &q));
    QT_OK(qn_buffer_alloc(dev, QN_F32, 3, (int64_t[]){d, c.hkv, 1}, &newk));
    QT_OK(qn_buffer_alloc(dev, QN_F32, 3, (int64_t[]){d, c.hkv, 1}, &newv));
    QT_OK(qn_buffer_alloc(dev, QN_I32, 1, (int64_t[]){1}, &pos));
    QT_OK(qn_buffer_alloc(dev, QN_F32, 1, (int64_t[]){c.hq}, &sinks));
    inputs in = {malloc((size_t)(c.hq * d) * 4), {malloc((size_t)nkv * 4), malloc((size_t)nkv * 4)}, {NULL, NULL},
                 malloc((size_t)c.hq * 4)};
    qt_fill_random_f32(in.sinks, (size_t)c.hq, -1, 1);
    QT_OK(qn_buffer_write(sinks, 0, in.sinks, (size_t)c.hq * 4));
    int64_t elems;
    QT_OK(qn_flash_attn_scratch(dev, false, qn_tensor_of(q), qn_tensor_of(k), &elems));
    qn_tensor st, sk = qn_tensor_of(sinks);
    if (elems > 0) {
        QT_OK(qn_buffer_alloc(dev, QN_F32, 1, (int64_t[]){elems}, &scratch));
        st = qn_tensor_of(scratch);
    }
    qn_graph *g;
    QT_OK(qn_graph_begin(enc));
    QT_OK(qn_kv_cache_append(enc, qn_tensor_of(k), qn_tensor_of(newk), qn_tensor_of(pos)));
    QT_OK(qn_kv_cache_append(enc, qn_tensor_of(v), qn_tensor_of(newv), qn_tensor_of(pos)));
    QT_OK(qn_flash_attn_decode(enc, qn_tensor_of(out), qn_tensor_of(q), qn_tensor_of(k), qn_tensor_of(v),
                               qn_tensor_of(pos), &sk, scratch ? &st : NULL, opts_of(&c)));
    QT_OK(qn_graph_end(enc, &g));
    double want[8 * 128];
    float nk[2 * 128], nv[2 * 128];
    for (int32_t step = 0; step < 20; step++) {
        c.p0 = step;
        qt_fill_random_f32(in.q, (size_t)(c.hq * d), -3, 3);
        qt_fill_random_f32(nk, 256, -1, 1);
        qt_fill_random_f32(nv, 256, -1, 1);
        for (int64_t h = 0; h < c.hkv; h++) /* the mirror: what append stores */
            for (int64_t i = 0; i < d; i++) {
                in.val[0][(h * c.cap + step % c.cap) * d + i] = f16_value(f16_bits(nk[h * d + i]));
                in.val[1][(h * c.cap + step % c.cap) * d + i] = f16_value(f16_bits(nv[h * d + i]));
            }
        QT_OK(qn_buffer_write(q, 0, in.q, (size_t)(c.hq * d) * 4));
        QT_OK(qn_buffer_write(newk, 0, nk, sizeof nk));
        QT_OK(qn_buffer_write(newv, 0, nv, sizeof nv));
        QT_OK(qn_buffer_write(pos, 0, &step, 4));
        QT_OK(qn_graph_launch(g, enc));
        QT_OK(qn_encoder_commit_wait(enc));
        float *got = qt_read_all(out);
        reference(&c, &in, want);
        expect_close(&c, got, want, qt_on_gpu() ? 1e-3 : 1e-5, "graph replay");
        free(got);
    }
    qn_graph_destroy(g);
    free_inputs(&in);
    qn_buffer_free(q);
    qn_buffer_free(k);
    qn_buffer_free(v);
    qn_buffer_free(newk);
    qn_buffer_free(newv);
    qn_buffer_free(out);
    qn_buffer_free(pos);
    qn_buffer_free(sinks);
    qn_buffer_free(scratch);
    qn_encoder_destroy(enc);
}

static void test_attn_errors(void **state) {
    (void)state;
    qn_device *dev = qt_device();
    qn_encoder *enc;
    QT_OK(qn_encoder_create(dev, &enc));
    qn_buffer *qb, *ob, *kb, *vb, *k8, *kbf, *pb, *pf, *sb, *scratch;
    qn_buffer *q100, *k100;
    QT_OK(qn_buffer_alloc(dev, QN_F32, 3, (int64_t[]){128, 8, 9}, &qb));
    ob = qt_poisoned(dev, QN_F32, 3, (int64_t[]){128, 8, 9});
    QT_OK(qn_buffer_alloc(dev, QN_F16, 3, (int64_t[]){128, 4096, 2}, &kb));
    QT_OK(qn_buffer_alloc(dev, QN_F16, 3, (int64_t[]){128, 4096, 2}, &vb));
    QT_OK(qn_buffer_alloc(dev, QN_Q8_0, 3, (int64_t[]){128, 4096, 2}, &k8));
    QT_OK(qn_buffer_alloc(dev, QN_BF16, 3, (int64_t[]){128, 4096, 2}, &kbf));
    QT_OK(qn_buffer_alloc(dev, QN_I32, 1, (int64_t[]){1}, &pb));
    QT_OK(qn_buffer_alloc(dev, QN_F32, 1, (int64_t[]){1}, &pf));
    QT_OK(qn_buffer_alloc(dev, QN_F32, 1, (int64_t[]){7}, &sb));
    QT_OK(qn_buffer_alloc(dev, QN_F32, 1, (int64_t[]){1}, &scratch));
    QT_OK(qn_buffer_alloc(dev, QN_F32, 3, (int64_t[]){100, 2, 1}, &q100));
    QT_OK(qn_buffer_alloc(dev, QN_F16, 3, (int64_t[]){100, 8, 1}, &k100));
    const qn_tensor q1 = qn_tensor_make(qb, 0, QN_F32, 128, 8, 1, 1), o1 = qn_tensor_make(ob, 0, QN_F32, 128, 8, 1, 1);
    const qn_tensor q9 = qn_tensor_of(qb), o9 = qn_tensor_of(ob);
    const qn_tensor k = qn_tensor_of(kb), v = qn_tensor_of(vb), p = qn_tensor_of(pb);
    const qn_attn_opts ok = {0.088f, 0, QN_ATTN_MASK_CAUSAL, 0};
    int64_t need;
    QT_OK(qn_flash_attn_scratch(dev, false, q1, k, &need));
    if (qt_on_gpu()) assert_true(need > 0); /* 4096 keys split on the GPU: the scratch checks below run */
    qn_buffer *sfull = NULL;
    if (need > 0) QT_OK(qn_buffer_alloc(dev, QN_F32, 1, (int64_t[]){need}, &sfull));
    qn_tensor sc = need > 0 ? qn_tensor_of(sfull) : qn_tensor_of(scratch), *s = need > 0 ? &sc : NULL;
#define DEC(out, q, k, v, p, sinks, scr, o) qn_flash_attn_decode(enc, out, q, k, v, p, sinks, scr, o)
#define BAD(expr, needle) QT_FAILS(expr, QN_ERR_INVALID_ARGUMENT, needle)
    BAD(DEC(qn_tensor_of(k100), qn_tensor_of(q100), qn_tensor_of(k100), qn_tensor_of(k100), p, NULL, s, ok),
        "out is f16 (expected f32)");
    BAD(DEC(qn_tensor_make(ob, 0, QN_F32, 100, 2, 1, 1), qn_tensor_of(q100), qn_tensor_of(k100), qn_tensor_of(k100), p,
            NULL, s, ok),
        "head_dim 100 (expected 64, 80, 96, 128, 256 or 512)");
    BAD(DEC(o1, q1, qn_tensor_make(kb, 0, QN_F16, 128, 20, 3, 1), qn_tensor_make(vb, 0, QN_F16, 128, 20, 3, 1), p,
            NULL, s, ok),
        "n_q_heads 8 is not a multiple of n_kv_heads 3");
    BAD(DEC(o9, q9, k, v, p, NULL, s, ok), "9 query tokens (decode takes 1 to 8; use prefill)");
    BAD(qn_flash_attn_prefill(enc, o9, q9, qn_tensor_of(k8), qn_tensor_of(k8), p, NULL, NULL, ok),
        "k and v are q8_0 (prefill takes f16 or bf16)");
    BAD(DEC(o1, q1, k, qn_tensor_of(kbf), p, NULL, s, ok), "k is f16 but v is bf16");
    BAD(DEC(o1, qn_tensor_make(kb, 0, QN_F16, 128, 8, 1, 1), k, v, p, NULL, s, ok), "q is f16 (expected f32)");
    BAD(DEC(qn_tensor_make(ob, 0, QN_F32, 128, 4, 2, 1), q1, k, v, p, NULL, s, ok), "out [128,4,2,1] and q [128,8,1,1] differ");
    qn_tensor sinks = qn_tensor_of(sb);
    BAD(DEC(o1, q1, k, v, p, &sinks, s, ok), "sinks must be f32 [8] (one per query head)");
    BAD(DEC(o1, q1, k, v, qn_tensor_of(pf), NULL, s, ok), "pos is f32 (expected i32)");
    BAD(DEC(o1, q1, k, v, p, NULL, s, ((qn_attn_opts){0.1f, 0, QN_ATTN_MASK_WINDOW, 0})), "window 0 (expected >= 1)");
    BAD(DEC(o1, q1, k, v, p, NULL, s, ((qn_attn_opts){0.1f, -1.0f, QN_ATTN_MASK_CAUSAL, 0})), "softcap -1");
    BAD(DEC(o1, q1, k, v, p, NULL, s, ((qn_attn_opts){NAN, 0, QN_ATTN_MASK_CAUSAL, 0})), "scale nan");
    BAD(DEC(o1, q1, k, v, p, NULL, s, ((qn_attn_opts){0.1f, 0, (qn_attn_mask)7, 0})), "mask 7 is not a qn_attn_mask");
    BAD(DEC(qn_tensor_make(ob, 0, QN_F32, 128, 8, 3, 1), qn_tensor_make(qb, 0, QN_F32, 128, 8, 3, 1),
            qn_tensor_make(kb, 0, QN_F16, 128, 2, 2, 1), qn_tensor_make(vb, 0, QN_F16, 128, 2, 2, 1), p, NULL, s, ok),
        "3 query tokens do not fit a cache of capacity 2");
    /* f16 rows 16-byte aligned: a view 2 bytes in is refused */
    BAD(DEC(o1, q1, qn_tensor_make(kb, 2, QN_F16, 128, 63, 2, 1), qn_tensor_make(vb, 2, QN_F16, 128, 63, 2, 1), p, NULL,
            s, ok),
        "k offset or strides are not multiples of 16 bytes");
    if (need > 0) { /* the GPU's scratch */
        BAD(DEC(o1, q1, k, v, p, NULL, NULL, ok), "scratch is NULL");
        qn_tensor small = qn_tensor_make(sfull, 0, QN_F32, need - 1, 1, 1, 1);
        BAD(DEC(o1, q1, k, v, p, NULL, &small, ok), "scratch must be contiguous f32 of at least");
    }
    int64_t elems;
    QT_FAILS(qn_flash_attn_scratch(dev, true, q1, qn_tensor_make(kb, 0, QN_F16, 128, 20, 3, 1), &elems),
             QN_ERR_INVALID_ARGUMENT, "n_q_heads 8 is not a multiple of n_kv_heads 3");
#undef DEC
#undef BAD
    /* nothing was enqueued: out is still poisoned */
    QT_OK(qn_encoder_commit_wait(enc));
    uint32_t *o = qt_read_all(ob);
    for (int i = 0; i < 128 * 8 * 9; i++) assert_int_equal(o[i], 0xFFFFFFFFu);
    free(o);
    qn_buffer *bufs[] = {qb, ob, kb, vb, k8, kbf, pb, pf, sb, scratch, q100, k100, sfull};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) qn_buffer_free(bufs[i]);
    qn_encoder_destroy(enc);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode),
        cmocka_unit_test(test_decode_short),
        cmocka_unit_test(test_prefill),
        cmocka_unit_test(test_shared_scratch),
        cmocka_unit_test(test_decode_graph),
        cmocka_unit_test(test_attn_errors),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    qt_close_devices();
    return rc;
}
