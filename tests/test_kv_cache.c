/* qn_kv_cache_append on the device under test against references written
 * here: f16 by the compiler's _Float16, bf16 by rounding in double, q8_0 by
 * ggml's reference quantizer restated (and cross-checked with
 * qn_quantize_row). The cache starts poisoned, so a row written where it
 * should not be, or a row left alone that should not be, shows. On a GPU the
 * CPU backend must give the same bytes. */
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint16_t ref_f16(float f) {
    _Float16 h = (_Float16)f;
    uint16_t u;
    memcpy(&u, &h, 2);
    return u;
}

/* bf16 keeps 8 significant bits: scale the value so its last kept bit is
 * the units place and round there to nearest even (rint), in double. */
static uint16_t ref_bf16(float f) {
    int e;
    frexp(f, &e);
    const float r = (float)(rint(ldexp(f, 8 - e)) * ldexp(1.0, e - 8));
    uint32_t u;
    memcpy(&u, &r, 4);
    return (uint16_t)(u >> 16);
}

/* ggml's quantize_row_q8_0_ref: d = amax / 127, q = roundf(x * (1 / d)). */
static void ref_q8_0(const float *x, int64_t n, unsigned char *out) {
    for (int64_t b = 0; b < n / 32; b++) {
        float amax = 0.0f;
        for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[b * 32 + i]));
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        const uint16_t dh = ref_f16(d);
        memcpy(out + b * 34, &dh, 2);
        for (int i = 0; i < 32; i++) out[b * 34 + 2 + i] = (unsigned char)(signed char)roundf(x[b * 32 + i] * id);
    }
}

/* Expected bytes of one cache row holding the floats x. */
static void ref_row(qn_dtype t, const float *x, int64_t d, unsigned char *out) {
    if (t == QN_Q8_0) {
        ref_q8_0(x, d, out);
        return;
    }
    for (int64_t i = 0; i < d; i++) {
        const uint16_t h = t == QN_F16 ? ref_f16(x[i]) : ref_bf16(x[i]);
        memcpy(out + 2 * i, &h, 2);
    }
}

typedef struct {
    qn_dtype cache, src;
    int64_t d, hkv, cap, n;
    int32_t p0;
} append_case;

/* Append on `dev`; returns the whole cache's bytes. src holds n x hkv rows
 * of d floats (already representable in the src dtype). */
static unsigned char *run_append(qn_device *dev, const append_case *c, const float *src) {
    qn_encoder *enc;
    QT_OK(qn_encoder_create(dev, &enc));
    qn_buffer *cache = qt_poisoned(dev, c->cache, 3, (int64_t[]){c->d, c->cap, c->hkv}), *s, *pos;
    QT_OK(qn_buffer_alloc(dev, c->src, 3, (int64_t[]){c->d, c->hkv, c->n}, &s));
    QT_OK(qn_buffer_alloc(dev, QN_I32, 1, (int64_t[]){1}, &pos));
    const size_t n = (size_t)(c->d * c->hkv * c->n);
    if (c->src == QN_F32) {
        QT_OK(qn_buffer_write(s, 0, src, n * 4));
    } else {
        uint16_t *h = malloc(n * 2);
        for (size_t i = 0; i < n; i++) h[i] = c->src == QN_F16 ? ref_f16(src[i]) : ref_bf16(src[i]);
        QT_OK(qn_buffer_write(s, 0, h, n * 2));
        free(h);
    }
    QT_OK(qn_buffer_write(pos, 0, &c->p0, 4));
    QT_OK(qn_kv_cache_append(enc, qn_tensor_of(cache), qn_tensor_of(s), qn_tensor_of(pos)));
    QT_OK(qn_encoder_commit_wait(enc));
    unsigned char *got = qt_read_all(cache);
    qn_buffer_free(cache);
    qn_buffer_free(s);
    qn_buffer_free(pos);
    qn_encoder_destroy(enc);
    return got;
}

static void check_append(const append_case *c) {
    const size_t n = (size_t)(c->d * c->hkv * c->n);
    float *src = malloc(n * 4);
    /* values the src dtype holds exactly; a few blocks of zeros (d = 0) */
    for (size_t i = 0; i < n; i++) {
        float x = qt_randf(-3, 3) * (i / 32 % 5 == 4 ? 0.0f : 1.0f);
        if (c->src == QN_F16) x = (float)(_Float16)x;
        if (c->src == QN_BF16) {
            const uint32_t u = (uint32_t)ref_bf16(x) << 16;
            memcpy(&x, &u, 4);
        }
        src[i] = x;
    }
    /* a block of exact halves (d = 1): q8_0 rounds them away from zero */
    src[0] = 127.0f;
    for (int i = 1; i < 32; i++) src[i] = (float)(i - 16) + 0.5f;
    unsigned char *got = run_append(qt_device(), c, src);
    const int64_t rb = qn_dtype_row_bytes(c->cache, c->d);
    unsigned char *want = malloc((size_t)(rb * c->cap * c->hkv)), *row = malloc((size_t)rb);
    memset(want, 0xFF, (size_t)(rb * c->cap * c->hkv));
    for (int64_t t = 0; t < c->n; t++)
        for (int64_t h = 0; h < c->hkv; h++) {
            const int64_t r = (c->p0 + t) % c->cap;
            ref_row(c->cache, src + (t * c->hkv + h) * c->d, c->d, want + (h * c->cap + r) * rb);
        }
    for (int64_t h = 0; h < c->hkv; h++)
        for (int64_t r = 0; r < c->cap; r++) {
            const unsigned char *g = got + (h * c->cap + r) * rb, *w = want + (h * c->cap + r) * rb;
            if (memcmp(g, w, (size_t)rb) != 0)
                fail_msg("%s cache (src %s, d %lld, p0 %d, %lld tokens, capacity %lld): kv head %lld row %lld differs",
                         qn_dtype_name(c->cache), qn_dtype_name(c->src), (long long)c->d, c->p0, (long long)c->n,
                         (long long)c->cap, (long long)h, (long long)r);
        }
    if (c->cache == QN_Q8_0 && c->src == QN_F32) /* the formats' quantizer agrees */
        for (int64_t t = 0; t < c->n; t++) {
            QT_OK(qn_quantize_row(QN_Q8_0, src + t * c->hkv * c->d, row, c->d));
            assert_memory_equal(row, want + ((c->p0 + t) % c->cap) * rb, (size_t)rb);
        }
    if (qt_on_gpu()) {
        unsigned char *cpu = run_append(qt_cpu(), c, src);
        if (memcmp(cpu, got, (size_t)(rb * c->cap * c->hkv)) != 0) fail_msg("GPU and CPU caches differ");
        free(cpu);
    }
    free(src);
    free(got);
    free(want);
    free(row);
}

/* Every cache dtype, src dtypes, one token and several, at the start of the
 * cache and wrapping around the end of the ring. */
static void test_append(void **state) {
    (void)state;
    const qn_dtype caches[3] = {QN_F16, QN_BF16, QN_Q8_0};
    for (int ci = 0; ci < 3; ci++)
        for (int k = 0; k < 6; k++) {
            append_case c = {caches[ci], QN_F32, k % 2 ? 128 : 96, 1 + k % 3, 13, k < 2 ? 1 : 5, 0};
            c.p0 = k < 4 ? (int32_t)(3 * k) : 11 + 13 * k; /* the last ones wrap */
            if (k == 5) c.src = QN_BF16;
            if (k == 4) c.src = QN_F16;
            check_append(&c);
        }
    /* odd head dims for the row types, a large one for q8_0 */
    check_append(&(append_case){QN_F16, QN_F32, 80, 2, 7, 7, 3});
    check_append(&(append_case){QN_BF16, QN_F32, 64, 1, 5, 2, 4});
    check_append(&(append_case){QN_Q8_0, QN_F32, 512, 2, 9, 3, 8});
}

/* The position is read when the op runs: one captured append writes where
 * pos says at each replay. */
static void test_append_graph(void **state) {
    (void)state;
    qn_device *dev = qt_device();
    const int64_t d = 64, hkv = 2, cap = 6;
    qn_encoder *enc;
    QT_OK(qn_encoder_create(dev, &enc));
    qn_buffer *cache = qt_poisoned(dev, QN_F16, 3, (int64_t[]){d, cap, hkv}), *src, *pos;
    QT_OK(qn_buffer_alloc(dev, QN_F32, 3, (int64_t[]){d, hkv, 1}, &src));
    QT_OK(qn_buffer_alloc(dev, QN_I32, 1, (int64_t[]){1}, &pos));
    qn_graph *g;
    QT_OK(qn_graph_begin(enc));
    QT_OK(qn_kv_cache_append(enc, qn_tensor_of(cache), qn_tensor_of(src), qn_tensor_of(pos)));
    QT_OK(qn_graph_end(enc, &g));
    float x[128];
    const int32_t steps[3] = {4, 9, 1}; /* 9 wraps to row 3 */
    for (int s = 0; s < 3; s++) {
        qt_fill_random_f32(x, 128, -2, 2);
        QT_OK(qn_buffer_write(src, 0, x, sizeof x));
        QT_OK(qn_buffer_write(pos, 0, &steps[s], 4));
        QT_OK(qn_graph_launch(g, enc));
        QT_OK(qn_encoder_commit_wait(enc));
        uint16_t *got = qt_read_all(cache);
        for (int64_t h = 0; h < hkv; h++)
            for (int64_t i = 0; i < d; i++)
                assert_int_equal(got[(h * cap + steps[s] % cap) * d + i], ref_f16(x[h * d + i]));
        if (s == 2) /* rows 0, 2 and 5 were never written */
            for (int64_t h = 0; h < hkv; h++)
                for (int i = 0; i < 3; i++) assert_int_equal(got[(h * cap + (int[]){0, 2, 5}[i]) * d], 0xFFFF);
        free(got);
    }
    qn_graph_destroy(g);
    qn_buffer_free(cache);
    qn_buffer_free(src);
    qn_buffer_free(pos);
    qn_encoder_destroy(enc);
}

static void test_append_errors(void **state) {
    (void)state;
    qn_device *dev = qt_device();
    qn_encoder *enc;
    QT_OK(qn_encoder_create(dev, &enc));
    qn_buffer *c16, *c32, *src, *pos, *pos64;
    QT_OK(qn_buffer_alloc(dev, QN_F16, 3, (int64_t[]){64, 4, 2}, &c16));
    QT_OK(qn_buffer_alloc(dev, QN_F32, 3, (int64_t[]){64, 4, 2}, &c32));
    QT_OK(qn_buffer_alloc(dev, QN_F32, 3, (int64_t[]){64, 2, 5}, &src));
    QT_OK(qn_buffer_alloc(dev, QN_I32, 1, (int64_t[]){1}, &pos));
    QT_OK(qn_buffer_alloc(dev, QN_I64, 1, (int64_t[]){1}, &pos64));
    qn_tensor c = qn_tensor_of(c16), s = qn_tensor_of(src), p = qn_tensor_of(pos);
    QT_FAILS(qn_kv_cache_append(enc, qn_tensor_of(c32), s, p), QN_ERR_INVALID_ARGUMENT,
             "cache is f32 (expected f16, bf16 or q8_0)");
    QT_FAILS(qn_kv_cache_append(enc, c, s, p), QN_ERR_INVALID_ARGUMENT, "5 tokens do not fit a capacity of 4");
    QT_FAILS(qn_kv_cache_append(enc, c, qn_tensor_make(src, 0, QN_F32, 64, 1, 2, 1), p), QN_ERR_INVALID_ARGUMENT,
             "does not match cache");
    QT_FAILS(qn_kv_cache_append(enc, c, qn_tensor_make(src, 0, QN_F32, 32, 2, 2, 1), p), QN_ERR_INVALID_ARGUMENT,
             "does not match cache");
    QT_FAILS(qn_kv_cache_append(enc, c, qn_tensor_make(src, 0, QN_F32, 64, 2, 2, 1), qn_tensor_of(pos64)),
             QN_ERR_INVALID_ARGUMENT, "pos is i64 (expected i32)");
    qn_tensor strided = c;
    strided.nb[0] = 4;
    strided.ne[0] = 32;
    QT_FAILS(qn_kv_cache_append(enc, strided, qn_tensor_make(src, 0, QN_F32, 32, 2, 2, 1), p),
             QN_ERR_INVALID_ARGUMENT, "rows are not contiguous");
    QT_FAILS(qn_kv_cache_append(enc, c, qn_tensor_make(src, 0, QN_I32, 64, 2, 2, 1), p), QN_ERR_INVALID_ARGUMENT,
             "src is i32");
    qn_buffer_free(c16);
    qn_buffer_free(c32);
    qn_buffer_free(src);
    qn_buffer_free(pos);
    qn_buffer_free(pos64);
    qn_encoder_destroy(enc);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append),
        cmocka_unit_test(test_append_graph),
        cmocka_unit_test(test_append_errors),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    qt_close_devices();
    return rc;
}
