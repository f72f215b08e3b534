/* Every op of the runtime on the device under test, against references
 * written here (not the library's code), and on a GPU also against the CPU
 * backend bit for bit. Inputs are fresh random values; outputs start
 * poisoned (NaN bytes) so a skipped element shows. */
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- independent references for the conversions */

/* f16: the compiler's _Float16 (IEEE binary16, round to nearest even). */
static uint16_t ref_f16(float f) {
    _Float16 h = (_Float16)f;
    uint16_t u;
    memcpy(&u, &h, 2);
    return u;
}
static float ref_f16_to_f32(uint16_t u) {
    _Float16 h;
    memcpy(&h, &u, 2);
    return (float)h;
}

/* bf16: choose the nearer of the two bf16 neighbours in double, ties to the
 * even one; overflow past the largest finite rounds to infinity. */
static uint16_t ref_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if (isnan(f)) return (uint16_t)((x >> 16) | 0x40);
    if (isinf(f)) return (uint16_t)(x >> 16);
    uint32_t lo = x & 0xffff0000u, hi = lo + 0x10000u;
    float flo, fhi;
    memcpy(&flo, &lo, 4);
    memcpy(&fhi, &hi, 4);
    double dlo = fabs((double)f - (double)flo);
    double dhi = isinf(fhi) ? fabs((double)f - ldexp(copysign(1.0, f), 128)) : fabs((double)fhi - (double)f);
    if (dlo < dhi || (dlo == dhi && ((lo >> 16) & 1) == 0)) return (uint16_t)(lo >> 16);
    return (uint16_t)(hi >> 16);
}

static float f32_of(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void test_conversions(void **state) {
    (void)state;
    /* f16 -> f32: every value */
    for (uint32_t u = 0; u < 65536; u++) {
        float a = qn_f16_to_f32((uint16_t)u), b = ref_f16_to_f32((uint16_t)u);
        if (isnan(b)) assert_true(isnan(a));
        else assert_memory_equal(&a, &b, 4);
        float c = qn_bf16_to_f32((uint16_t)u);
        uint32_t cu;
        memcpy(&cu, &c, 4);
        assert_int_equal(cu, u << 16);
    }
    /* f32 -> f16 and bf16: specials, the edges of the f16 range, random bits */
    const uint32_t special[] = {0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00001, 0x7f800001,
                                0x477fe000, 0x477ff000, 0x477fefff, 0x47800000, 0x38800000, 0x387fffff, 0x33000000,
                                0x33000001, 0x32ffffff, 0x33800000, 0x3f800000, 0x3f808000, 0x3f818000, 0x7f7fffff,
                                0x7f7f8000, 0x00000001, 0x807fffff};
    for (size_t i = 0; i < sizeof special / sizeof special[0] + 2000000; i++) {
        uint32_t u = i < sizeof special / sizeof special[0] ? special[i] : (uint32_t)qt_rand();
        float f = f32_of(u);
        uint16_t h = qn_f32_to_f16(f), hr = ref_f16(f);
        if (isnan(f)) {
            assert_true((h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0); /* NaN stays NaN, */
            assert_int_equal(h >> 15, u >> 31);                       /* with its sign */
        } else if (h != hr) {
            fail_msg("f32 0x%08x -> f16 0x%04x, expected 0x%04x", u, h, hr);
        }
        uint16_t b = qn_f32_to_bf16(f), br = ref_bf16(f);
        if (b != br) fail_msg("f32 0x%08x -> bf16 0x%04x, expected 0x%04x", u, b, br);
    }
}

/* The conversion kernels on every f16 and bf16 value and on a million random
 * f32 bit patterns (NaNs, subnormals, overflow included): the same bits as
 * the host conversions, NaN payloads too. */
static void test_conversion_kernels(void **state) {
    (void)state;
    qn_device *dev = qt_device();
    qn_encoder *enc;
    QT_OK(qn_encoder_create(dev, &enc));
    enum { N = 1 << 20 };
    uint32_t *bits = malloc(N * 4);
    uint16_t *h16 = malloc(N * 2), *want16 = malloc(N * 2);
    float *f = malloc(N * 4);
    for (uint32_t i = 0; i < N; i++) bits[i] = i < 65536 ? (i << 16) | (i & 0x1fff) : (uint32_t)qt_rand();
    for (uint32_t i = 0; i < 65536; i++) h16[i] = (uint16_t)i;
    qn_buffer *src32, *src16, *dst16 = qt_poisoned(dev, QN_F16, 1, (int64_t[]){N}), *dst32;
    QT_OK(qn_buffer_alloc(dev, QN_F32, 1, (int64_t[]){N}, &src32));
    QT_OK(qn_buffer_alloc(dev, QN_F16, 1, (int64_t[]){65536}, &src16));
    dst32 = qt_poisoned(dev, QN_F32, 1, (int64_t[]){65536});
    QT_OK(qn_buffer_write(src32, 0, bits, N * 4));
    QT_OK(qn_buffer_write(src16, 0, h16, 65536 * 2));
    for (int bf = 0; bf < 2; bf++) {
        qn_dtype t = bf ? QN_BF16 : QN_F16;
        qn_tensor d16 = qn_tensor_make(dst16, 0, t, N, 1, 1, 1);
        QT_OK(qn_copy(enc, d16, qn_tensor_of(src32)));
        QT_OK(qn_copy(enc, qn_tensor_of(dst32), qn_tensor_make(src16, 0, t, 65536, 1, 1, 1)));
        QT_OK(qn_encoder_commit_wait(enc));
        QT_OK(qn_buffer_read(dst16, 0, h16, N * 2));
        QT_OK(qn_buffer_read(dst32, 0, f, 65536 * 4));
        for (uint32_t i = 0; i < N; i++) {
            float x;
            memcpy(&x, &bits[i], 4);
            want16[i] = bf ? qn_f32_to_bf16(x) : qn_f32_to_f16(x);
            if (h16[i] != want16[i]) fail_msg("f32 0x%08x -> %s 0x%04x, host 0x%04x", bits[i], qn_dtype_name(t), h16[i], want16[i]);
        }
        for (uint32_t i = 0; i < 65536; i++) {
            float w = bf ? qn_bf16_to_f32((uint16_t)i) : qn_f16_to_f32((uint16_t)i);
            if (memcmp(&f[i], &w, 4) != 0) fail_msg("%s 0x%04x -> f32 %g, host %g", qn_dtype_name(t), i, f[i], w);
        }
    }
    free(bits);
    free(h16);
    free(want16);
    free(f);
    qn_buffer_free(src32);
    qn_buffer_free(src16);
    qn_buffer_free(dst16);
    qn_buffer_free(dst32);
    qn_encoder_destroy(enc);
}

/* ---- a small harness: host data <-> device buffers */

static float from_bits(const void *p, qn_dtype t) {
    uint16_t h;
    float f;
    switch (t) {
    case QN_F16: memcpy(&h, p, 2); return ref_f16_to_f32(h);
    case QN_BF16: memcpy(&h, p, 2); return f32_of((uint32_t)h << 16);
    default: memcpy(&f, p, 4); return f;
    }
}

static void to_bits(void *p, qn_dtype t, float v) {
    uint16_t h;
    switch (t) {
    case QN_F16: h = ref_f16(v); memcpy(p, &h, 2); break;
    case QN_BF16: h = ref_bf16(v); memcpy(p, &h, 2); break;
    default: memcpy(p, &v, 4);
    }
}

static size_t esize(qn_dtype t) { return (size_t)qn_dtype_block_bytes(t); }

/* A buffer of n random floats of dtype t, the host copy in *host. */
static qn_buffer *random_buffer(qn_device *dev, qn_dtype t, int ndim, const int64_t *ne, void **host) {
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)ne[i];
    unsigned char *h = malloc(n * esize(t));
    for (size_t i = 0; i < n; i++) to_bits(h + i * esize(t), t, qt_randf(-4, 4));
    qn_buffer *b;
    QT_OK(qn_buffer_alloc(dev, t, ndim, ne, &b));
    QT_OK(qn_buffer_write(b, 0, h, n * esize(t)));
    *host = h;
    return b;
}

/* Same bytes, with NaN == NaN (any payload: a NaN's payload is not specified
 * by the ops beyond "stays NaN"). */
static void assert_same(const void *got, const void *want, size_t n, qn_dtype t, const char *what) {
    size_t es = esize(t);
    for (size_t i = 0; i < n; i++) {
        const unsigned char *g = (const unsigned char *)got + i * es, *w = (const unsigned char *)want + i * es;
        if (memcmp(g, w, es) == 0) continue;
        if (t != QN_I32 && isnan(from_bits(g, t)) && isnan(from_bits(w, t))) continue;
        fail_msg("%s: element %zu is %g, expected %g (%s)", what, i, (double)from_bits(g, t), (double)from_bits(w, t),
                 qn_dtype_name(t));
    }
}

static const qn_dtype FLOATS[3] = {QN_F32, QN_F16, QN_BF16};

/* Run `body` on the device under test; on a GPU, also on the CPU backend, and
 * require identical output bytes. body returns the output bytes (malloc). */
typedef void *(*op_body)(qn_device *dev, const void *param, size_t *bytes);
static void *run_everywhere(op_body body, const void *param, size_t *bytes) {
    void *got = body(qt_device(), param, bytes);
    if (qt_on_gpu()) {
        size_t cpu_bytes;
        void *cpu = body(qt_cpu(), param, &cpu_bytes);
        assert_int_equal(cpu_bytes, *bytes);
        if (memcmp(cpu, got, *bytes) != 0) fail_msg("GPU and CPU outputs differ");
        free(cpu);
    }
    return got;
}

/* ---- fill */

typedef struct {
    qn_dtype t;
    float v;
    uint64_t seed;
} fill_param;

/* Fill a strided window of a poisoned [23, 9, 3] buffer: rows 2..6, every
 * other column-block. Outside the window the poison must survive. */
static void *fill_body(qn_device *dev, const void *param, size_t *bytes) {
    const fill_param *p = param;
    qn_encoder *enc;
    QT_OK(qn_encoder_create(dev, &enc));
    int64_t ne[3] = {23, 9, 3};
    qn_buffer *b = qt_poisoned(dev, p->t, 3, ne);
    qn_tensor all = qn_tensor_of(b), w = all;
    w.offset = (size_t)(2 * all.nb[1]);
    w.ne[0] = 11;
    w.nb[0] = 2 * all.nb[0];
    w.ne[1] = 5;
    QT_OK(qn_fill(enc, w, p->v));
    QT_OK(qn_encoder_commit_wait(enc));
    *bytes = qn_buffer_bytes(b);
    void *out = qt_read_all(b);
    qn_buffer_free(b);
    qn_encoder_destroy(enc);
    return out;
}

static void test_fill(void **state) {
    (void)state;
    const qn_dtype types[4] = {QN_F32, QN_F16, QN_BF16, QN_I32};
    for (int k = 0; k < 4; k++) {
        fill_param p = {types[k], types[k] == QN_I32 ? -123456.0f : qt_randf(-100, 100), 0};
        size_t n;
        unsigned char *got = run_everywhere(fill_body, &p, &n);
        size_t es = esize(p.t);
        for (int i2 = 0; i2 < 3; i2++)
            for (int i1 = 0; i1 < 9; i1++)
                for (int i0 = 0; i0 < 23; i0++) {
                    const unsigned char *e = got + (((size_t)i2 * 9 + i1) * 23 + i0) * es;
                    bool in = i1 >= 2 && i1 < 7 && i0 % 2 == 0 && i0 < 22;
                    unsigned char want[4];
                    if (!in) memset(want, 0xFF, es);
                    else if (p.t == QN_I32) memcpy(want, &(int32_t){-123456}, 4);
                    else to_bits(want, p.t, p.v);
                    if (memcmp(e, want, es) != 0)
                        fail_msg("fill %s: element (%d,%d,%d) %s", qn_dtype_name(p.t), i0, i1, i2,
                                 in ? "wrong" : "written outside the view");
                }
        free(got);
    }
}

/* ---- copy: every pair of float types, from a transposed view */

typedef struct {
    qn_dtype dst, src;
    int64_t ne0, ne1, ne2;
    void *host; /* the source values, filled by the test */
} copy_param;

static void *copy_body(qn_device *dev, const void *param, size_t *bytes) {
    const copy_param *p = param;
    qn_encoder *enc;
    QT_OK(qn_encoder_create(dev, &enc));
    /* source stored [ne1, ne0, ne2]; read through a transposed view as [ne0, ne1, ne2] */
    int64_t sne[3] = {p->ne1, p->ne0, p->ne2}, dne[3] = {p->ne0, p->ne1, p->ne2};
    qn_buffer *s, *d = qt_poisoned(dev, p->dst, 3, dne);
    QT_OK(qn_buffer_alloc(dev, p->src, 3, sne, &s));
    QT_OK(qn_buffer_write(s, 0, p->host, qn_buffer_bytes(s)));
    qn_tensor st = qn_tensor_of(s);
    int64_t t0 = st.nb[0];
    st.ne[0] = p->ne0;
    st.ne[1] = p->ne1;
    st.nb[0] = st.nb[1];
    st.nb[1] = t0;
    QT_OK(qn_copy(enc, qn_tensor_of(d), st));
    QT_OK(qn_encoder_commit_wait(enc));
    *bytes = qn_buffer_bytes(d);
    void *out = qt_read_all(d);
    qn_buffer_free(s);
    qn_buffer_free(d);
    qn_encoder_destroy(enc);
    return out;
}

static void test_copy_convert(void **state) {
    (void)state;
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) {
            copy_param p = {FLOATS[a], FLOATS[b], 37, 13, 3, NULL};
            size_t n = (size_t)(p.ne0 * p.ne1 * p.ne2);
            unsigned char *src = malloc(n * esize(p.src)), *want = malloc(n * esize(p.dst));
            for (size_t i = 0; i < n; i++) {
                /* include values that round, overflow f16 and underflow it */
                float v = i % 7 == 0 ? qt_randf(-1e5f, 1e5f) : i % 11 == 0 ? qt_randf(-1e-6f, 1e-6f) : qt_randf(-3, 3);
                if (i == 5) v = INFINITY;
                if (i == 6) v = NAN;
                to_bits(src + i * esize(p.src), p.src, v);
            }
            for (int64_t i2 = 0; i2 < p.ne2; i2++)
                for (int64_t i1 = 0; i1 < p.ne1; i1++)
                    for (int64_t i0 = 0; i0 < p.ne0; i0++) {
                        size_t si = (size_t)((i2 * p.ne0 + i0) * p.ne1 + i1);
                        size_t di = (size_t)((i2 * p.ne1 + i1) * p.ne0 + i0);
                        to_bits(want + di * esize(p.dst), p.dst, from_bits(src + si * esize(p.src), p.src));
                    }
            p.host = src;
            size_t bytes;
            void *got = run_everywhere(copy_body, &p, &bytes);
            char what[64];
            snprintf(what, sizeof what, "copy %s -> %s", qn_dtype_name(p.src), qn_dtype_name(p.dst));
            assert_same(got, want, n, p.dst, what);
            free(got);
            free(src);
            free(want);
        }
}

/* Same-dtype copies of non-float types move bytes: i32 and q8_0 blocks. */
static void test_copy_bytes(void **state) {
    (void)state;
    qn_device *dev = qt_device();
    qn_encoder *enc;
    QT_OK(qn_encoder_create(dev, &enc));
    const qn_dtype types[2] = {QN_I32, QN_Q8_0};
    for (int k = 0; k < 2; k++) {
        int64_t ne[2] = {96, 5};
        qn_buffer *s, *d = qt_poisoned(dev, types[k], 2, ne);
        QT_OK(qn_buffer_alloc(dev, types[k], 2, ne, &s));
        size_t n = qn_buffer_bytes(s);
        unsigned char *h = malloc(n);
        for (size_t i = 0; i < n; i++) h[i] = (unsigned char)qt_rand();
        QT_OK(qn_buffer_write(s, 0, h, n));
        QT_OK(qn_copy(enc, qn_tensor_of(d), qn_tensor_of(s)));
        QT_OK(qn_encoder_commit_wait(enc));
        unsigned char *got = qt_read_all(d);
        assert_memory_equal(got, h, n);
        free(got);
        free(h);
        qn_buffer_free(s);
        qn_buffer_free(d);
    }
    qn_encoder_destroy(enc);
}

/* ---- set_rows */

typedef struct {
    qn_dtype dst, src, idx;
    void *src_host;
    int64_t rows[5];
} set_rows_param;

static void *set_rows_body(qn_device *dev, const void *param, size_t *bytes) {
    const set_rows_param *p = param;
    qn_encoder *enc;
    QT_OK(qn_encoder_create(dev, &enc));
    int64_t dne[3] = {19, 11, 2}, sne[3] = {19, 5, 2};
    qn_buffer *d = qt_poisoned(dev, p->dst, 3, dne), *s, *ix;
    QT_OK(qn_buffer_alloc(dev, p->src, 3, sne, &s));
    QT_OK(qn_buffer_write(s, 0, p->src_host, qn_buffer_bytes(s)));
    QT_OK(qn_buffer_alloc(dev, p->idx, 1, (int64_t[]){5}, &ix));
    if (p->idx == QN_I64) {
        QT_OK(qn_buffer_write(ix, 0, p->rows, sizeof p->rows));
    } else {
        int32_t r32[5];
        for (int i = 0; i < 5; i++) r32[i] = (int32_t)p->rows[i];
        QT_OK(qn_buffer_write(ix, 0, r32, sizeof r32));
    }
    QT_OK(qn_set_rows(enc, qn_tensor_of(d), qn_tensor_of(s), qn_tensor_of(ix)));
    QT_OK(qn_encoder_commit_wait(enc));
    *bytes = qn_buffer_bytes(d);
    void *out = qt_read_all(d);
    qn_buffer_free(d);
    qn_buffer_free(s);
    qn_buffer_free(ix);
    qn_encoder_destroy(enc);
    return out;
}

static void test_set_rows(void **state) {
    (void)state;
    for (int k = 0; k < 3; k++) {
        /* rows 3, 10, 0 land; -1 and 11 are out of range and skipped */
        set_rows_param p = {FLOATS[k], FLOATS[(k + 1) % 3], k == 1 ? QN_I64 : QN_I32, NULL, {3, 10, -1, 0, 11}};
        void *src_host;
        qn_buffer *tmp = random_buffer(qt_cpu(), p.src, 3, (int64_t[]){19, 5, 2}, &src_host);
        qn_buffer_free(tmp);
        p.src_host = src_host;
        size_t bytes;
        unsigned char *got = run_everywhere(set_rows_body, &p, &bytes);
        size_t es = esize(p.dst);
        unsigned char *want = malloc(bytes);
        memset(want, 0xFF, bytes);
        for (int i2 = 0; i2 < 2; i2++)
            for (int i1 = 0; i1 < 5; i1++) {
                int64_t r = p.rows[i1];
                if (r < 0 || r >= 11) continue;
                for (int i0 = 0; i0 < 19; i0++)
                    to_bits(want + (((size_t)i2 * 11 + (size_t)r) * 19 + i0) * es, p.dst,
                            from_bits((unsigned char *)src_host + (((size_t)i2 * 5 + i1) * 19 + i0) * esize(p.src),
                                      p.src));
            }
        assert_same(got, want, bytes / es, p.dst, "set_rows");
        free(got);
        free(want);
        free(src_host);
    }
}

/* ---- add, mul, scale */

typedef struct {
    int op; /* 0 add, 1 mul, 2 scale */
    qn_dtype d, a, b;
    int64_t ne[4], bne[4];
    void *ha, *hb;
    float s;
    bool in_place; /* dst is a */
} bin_param;

static void *bin_body(qn_device *dev, const void *param, size_t *bytes) {
    const bin_param *p = param;
    qn_encoder *enc;
    QT_OK(qn_encoder_create(dev, &enc));
    qn_buffer *a, *b, *d;
    QT_OK(qn_buffer_alloc(dev, p->a, 4, p->ne, &a));
    QT_OK(qn_buffer_write(a, 0, p->ha, qn_buffer_bytes(a)));
    QT_OK(qn_buffer_alloc(dev, p->b, 4, p->bne, &b));
    QT_OK(qn_buffer_write(b, 0, p->hb, qn_buffer_bytes(b)));
    d = p->in_place ? a : qt_poisoned(dev, p->d, 4, p->ne);
    qn_tensor td = qn_tensor_of(d), ta = qn_tensor_of(a), tb = qn_tensor_of(b);
    if (p->op == 0) QT_OK(qn_add(enc, td, ta, tb));
    if (p->op == 1) QT_OK(qn_mul(enc, td, ta, tb));
    if (p->op == 2) QT_OK(qn_scale(enc, td, ta, p->s));
    QT_OK(qn_encoder_commit_wait(enc));
    *bytes = qn_buffer_bytes(d);
    void *out = qt_read_all(d);
    if (!p->in_place) qn_buffer_free(d);
    qn_buffer_free(a);
    qn_buffer_free(b);
    qn_encoder_destroy(enc);
    return out;
}

static void test_binary(void **state) {
    (void)state;
    const int64_t shapes[3][2][4] = {
        {{33, 7, 3, 2}, {33, 7, 3, 2}}, /* no broadcast */
        {{33, 7, 3, 2}, {33, 1, 3, 1}}, /* broadcast over rows and dim 3 */
        {{5, 4, 1, 1}, {1, 4, 1, 1}},   /* a scalar per row */
    };
    int cases = 0;
    for (int op = 0; op < 3; op++)
        for (int sh = 0; sh < 3; sh++)
            for (int combo = 0; combo < 9; combo++) {
                bin_param p = {op, FLOATS[combo % 3], FLOATS[combo / 3], FLOATS[(combo + op) % 3], {0}, {0},
                               NULL, NULL, qt_randf(-3, 3), combo == 4};
                if (p.in_place) p.d = p.a;
                memcpy(p.ne, shapes[sh][0], sizeof p.ne);
                memcpy(p.bne, shapes[sh][1], sizeof p.bne);
                qn_buffer *t1 = random_buffer(qt_cpu(), p.a, 4, p.ne, &p.ha);
                qn_buffer *t2 = random_buffer(qt_cpu(), p.b, 4, p.bne, &p.hb);
                qn_buffer_free(t1);
                qn_buffer_free(t2);
                size_t bytes;
                void *got = run_everywhere(bin_body, &p, &bytes);
                size_t n = (size_t)(p.ne[0] * p.ne[1] * p.ne[2] * p.ne[3]);
                unsigned char *want = malloc(n * esize(p.d));
                for (int64_t i3 = 0; i3 < p.ne[3]; i3++)
                    for (int64_t i2 = 0; i2 < p.ne[2]; i2++)
                        for (int64_t i1 = 0; i1 < p.ne[1]; i1++)
                            for (int64_t i0 = 0; i0 < p.ne[0]; i0++) {
                                size_t i = (size_t)(((i3 * p.ne[2] + i2) * p.ne[1] + i1) * p.ne[0] + i0);
                                size_t j = (size_t)((((i3 % p.bne[3]) * p.bne[2] + i2 % p.bne[2]) * p.bne[1] +
                                                     i1 % p.bne[1]) * p.bne[0] + i0 % p.bne[0]);
                                float x = from_bits((unsigned char *)p.ha + i * esize(p.a), p.a);
                                float y = from_bits((unsigned char *)p.hb + j * esize(p.b), p.b);
                                float r = op == 0 ? x + y : op == 1 ? x * y : x * p.s;
                                to_bits(want + i * esize(p.d), p.d, r);
                            }
                char what[96];
                snprintf(what, sizeof what, "op %d: %s = %s, %s%s", op, qn_dtype_name(p.d), qn_dtype_name(p.a),
                         qn_dtype_name(p.b), p.in_place ? " (in place)" : "");
                assert_same(got, want, n, p.d, what);
                free(got);
                free(want);
                free(p.ha);
                free(p.hb);
                cases++;
            }
    assert_int_equal(cases, 81);
}

/* ---- argument errors: each names what was wrong and changes nothing */

static void test_op_errors(void **state) {
    (void)state;
    qn_device *dev = qt_device();
    qn_encoder *enc;
    QT_OK(qn_encoder_create(dev, &enc));
    qn_buffer *f = qt_poisoned(dev, QN_F32, 2, (int64_t[]){16, 4});
    qn_buffer *g = qt_poisoned(dev, QN_F32, 2, (int64_t[]){8, 4});
    qn_buffer *i = qt_poisoned(dev, QN_I32, 1, (int64_t[]){4});
    qn_buffer *q = qt_poisoned(dev, QN_Q8_0, 2, (int64_t[]){32, 4});
    qn_buffer *other;
    QT_OK(qn_buffer_alloc(qt_cpu(), QN_F32, 2, (int64_t[]){16, 4}, &other));
    qn_tensor tf = qn_tensor_of(f), tg = qn_tensor_of(g), ti = qn_tensor_of(i), tq = qn_tensor_of(q);

    QT_FAILS(qn_add(enc, tf, tf, tg), QN_ERR_INVALID_ARGUMENT, "cannot broadcast");
    QT_FAILS(qn_add(enc, tg, tf, tf), QN_ERR_INVALID_ARGUMENT, "differ");
    QT_FAILS(qn_mul(enc, tf, tf, ti), QN_ERR_INVALID_ARGUMENT, "b is i32");
    QT_FAILS(qn_scale(enc, tq, tq, 2), QN_ERR_INVALID_ARGUMENT, "q8_0");
    QT_FAILS(qn_copy(enc, tf, tq), QN_ERR_INVALID_ARGUMENT, "differ");
    QT_FAILS(qn_copy(enc, qn_tensor_make(q, 0, QN_Q8_0, 32, 2, 1, 1), qn_tensor_make(f, 0, QN_F32, 32, 2, 1, 1)),
             QN_ERR_INVALID_ARGUMENT, "cannot convert f32 to q8_0");
    QT_FAILS(qn_fill(enc, tq, 1), QN_ERR_INVALID_ARGUMENT, "q8_0");
    QT_FAILS(qn_fill(enc, ti, 0.5f), QN_ERR_INVALID_ARGUMENT, "not an i32");
    QT_FAILS(qn_set_rows(enc, tf, tf, tf), QN_ERR_INVALID_ARGUMENT, "idx is f32");
    QT_FAILS(qn_set_rows(enc, tf, tg, ti), QN_ERR_INVALID_ARGUMENT, "outside dim 1");
    /* views that leave their buffer, or are misaligned */
    qn_tensor big = tf;
    big.ne[1] = 5;
    QT_FAILS(qn_fill(enc, big, 1), QN_ERR_INVALID_ARGUMENT, "reaches byte 320 of a 256-byte buffer");
    qn_tensor odd = qn_tensor_make(f, 2, QN_F32, 4, 1, 1, 1);
    QT_FAILS(qn_fill(enc, odd, 1), QN_ERR_INVALID_ARGUMENT, "not aligned");
    qn_tensor neg = tf;
    neg.nb[1] = -64;
    QT_FAILS(qn_fill(enc, neg, 1), QN_ERR_INVALID_ARGUMENT, "nb[1] = -64");
    qn_tensor none = {0};
    QT_FAILS(qn_fill(enc, none, 1), QN_ERR_INVALID_ARGUMENT, "no buffer");
    QT_FAILS(qn_fill(NULL, tf, 1), QN_ERR_INVALID_ARGUMENT, "encoder is NULL");
    /* a tensor of another device (a second CPU device is another device too) */
    if (qt_cpu() != dev) QT_FAILS(qn_fill(enc, qn_tensor_of(other), 1), QN_ERR_INVALID_ARGUMENT, "another device");

    /* nothing ran: the outputs still hold their poison */
    QT_OK(qn_encoder_commit_wait(enc));
    uint32_t *x = qt_read_all(f);
    for (int k = 0; k < 64; k++) assert_int_equal(x[k], 0xFFFFFFFFu);
    free(x);
    qn_buffer_free(f);
    qn_buffer_free(g);
    qn_buffer_free(i);
    qn_buffer_free(q);
    qn_buffer_free(other);
    qn_encoder_destroy(enc);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conversions), cmocka_unit_test(test_conversion_kernels), cmocka_unit_test(test_fill),     cmocka_unit_test(test_copy_convert),
        cmocka_unit_test(test_copy_bytes),  cmocka_unit_test(test_set_rows), cmocka_unit_test(test_binary),
        cmocka_unit_test(test_op_errors),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    qt_close_devices();
    return rc;
}
