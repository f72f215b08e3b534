/* Quantization: byte-identical with ggml's reference quantizers on the
 * fixtures (tests/fixtures/quant, written by scripts/gen_quant_fixtures.py
 * from a real ggml build), plus properties on fresh random inputs and the
 * argument errors. */
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quanta.h"
#include "formats/quants.h"

#define N_FIXTURE 4096

typedef struct {
    const char *name;
    qn_dtype type;
} type_case;

static const type_case all_types[] = {
    {"f16", QN_F16},     {"bf16", QN_BF16},   {"q4_0", QN_Q4_0},   {"q4_1", QN_Q4_1},
    {"q5_0", QN_Q5_0},   {"q5_1", QN_Q5_1},   {"q8_0", QN_Q8_0},   {"q8_1", QN_Q8_1},
    {"q2_K", QN_Q2_K},   {"q3_K", QN_Q3_K},   {"q4_K", QN_Q4_K},   {"q5_K", QN_Q5_K},
    {"q6_K", QN_Q6_K},   {"q8_K", QN_Q8_K},   {"iq4_nl", QN_IQ4_NL}, {"iq4_xs", QN_IQ4_XS},
    {"mxfp4", QN_MXFP4},
};
#define N_TYPES (sizeof all_types / sizeof all_types[0])

/* Fixtures live in the source tree: $QUANTA_SOURCE_DIR, else the working
 * directory (ctest runs tests from the source root). */
static void fixture_path(char *out, size_t size, const char *file) {
    const char *root = getenv("QUANTA_SOURCE_DIR");
    snprintf(out, size, "%s/tests/fixtures/quant/%s", root ? root : ".", file);
}

static void *read_fixture(const char *file, size_t *size) {
    char path[1024];
    fixture_path(path, sizeof path, file);
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open fixture %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *data = malloc((size_t)len);
    assert_non_null(data);
    assert_int_equal(fread(data, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *size = (size_t)len;
    return data;
}

/* Roughly normal (a sum of uniforms) times a spread that changes every 32
 * elements, so blocks of very different magnitude sit side by side. */
static void random_floats(float *x, int64_t n) {
    float spread = 1.0f;
    for (int64_t i = 0; i < n; i++) {
        if (i % 32 == 0) spread = expf(qt_randf(-6.0f, 4.0f));
        float s = 0;
        for (int k = 0; k < 4; k++) s += qt_randf(-0.5f, 0.5f);
        x[i] = s * spread;
    }
}

static void test_matches_ggml_fixtures(void **state) {
    (void)state;
    size_t in_size;
    float *x = read_fixture("input.f32", &in_size);
    assert_int_equal(in_size, N_FIXTURE * sizeof(float));
    for (size_t t = 0; t < N_TYPES; t++) {
        char file[64];
        snprintf(file, sizeof file, "%s.bin", all_types[t].name);
        size_t ref_size;
        uint8_t *ref = read_fixture(file, &ref_size);
        assert_int_equal((int64_t)ref_size, qn_dtype_row_bytes(all_types[t].type, N_FIXTURE));
        uint8_t *out = malloc(ref_size);
        memset(out, 0xA5, ref_size); /* poison */
        QT_OK(qn_quantize_row(all_types[t].type, x, out, N_FIXTURE));
        for (size_t i = 0; i < ref_size; i++)
            if (out[i] != ref[i])
                fail_msg("%s: byte %zu is 0x%02x, ggml wrote 0x%02x", all_types[t].name, i, out[i],
                         ref[i]);
        free(out);
        free(ref);
    }
    free(x);
}

/* The gguf package has no q8_K, so its dequantization is checked against
 * ggml's own output. */
static void test_q8_K_dequant_matches_ggml(void **state) {
    (void)state;
    size_t qsize, dsize;
    uint8_t *q = read_fixture("q8_K.bin", &qsize);
    float *ref = read_fixture("q8_K.deq.f32", &dsize);
    float *out = malloc(dsize);
    assert_int_equal(qn_dequantize_row(QN_Q8_K, q, out, N_FIXTURE), QN_OK);
    assert_memory_equal(out, ref, dsize);
    free(out);
    free(ref);
    free(q);
}

/* Quantizing a row block by block gives the bytes of the whole row, so
 * callers may split rows anywhere on a block boundary. */
static void test_blocks_are_independent(void **state) {
    (void)state;
    const int64_t n = 3 * 256;
    float x[3 * 256];
    random_floats(x, n);
    for (size_t t = 0; t < N_TYPES; t++) {
        qn_dtype type = all_types[t].type;
        int64_t be = qn_dtype_block_elems(type), bb = qn_dtype_block_bytes(type);
        uint8_t whole[3 * 256 * 2], parts[3 * 256 * 2];
        assert_int_equal(qn_quantize_row(type, x, whole, n), QN_OK);
        for (int64_t b = 0; b < n / be; b++)
            assert_int_equal(qn_quantize_row(type, x + b * be, parts + b * bb, be), QN_OK);
        assert_memory_equal(whole, parts, (size_t)qn_dtype_row_bytes(type, n));
    }
}

/* Round trip on fresh random data: every type reproduces its input within
 * a bound set by its level count and the largest magnitude of its block
 * (for K-quants the super-block, whose scale bounds every sub-block's). */
static void test_round_trip_error(void **state) {
    (void)state;
    enum { N = 8 * 256 };
    static float x[N], y[N];
    static uint8_t q[N * 4];
    /* Worst error relative to the block max: generous for each family, far
     * below what a wrong layout or scale gives. */
    struct { qn_dtype type; float tol; } cases[] = {
        {QN_F16, 1e-3f},  {QN_BF16, 8e-3f},  {QN_Q8_0, 0.01f}, {QN_Q8_1, 0.01f},
        {QN_Q8_K, 0.01f}, {QN_Q6_K, 0.05f},  {QN_Q5_0, 0.07f}, {QN_Q5_1, 0.05f},
        {QN_Q5_K, 0.08f}, {QN_Q4_0, 0.13f},  {QN_Q4_1, 0.1f},  {QN_Q4_K, 0.15f},
        {QN_IQ4_NL, 0.2f}, {QN_IQ4_XS, 0.2f}, {QN_MXFP4, 0.26f}, {QN_Q3_K, 0.35f},
        {QN_Q2_K, 0.6f},
    };
    for (int trial = 0; trial < 4; trial++) {
        random_floats(x, N);
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            for (int i = 0; i < N; i++) y[i] = NAN;
            assert_int_equal(qn_quantize_row(cases[c].type, x, q, N), QN_OK);
            assert_int_equal(qn_dequantize_row(cases[c].type, q, y, N), QN_OK);
            const int be = qn_dtype_block_elems(cases[c].type) == 256 ? 256 : 32;
            for (int b = 0; b < N / be; b++) {
                float amax = 0;
                for (int i = 0; i < be; i++) amax = fmaxf(amax, fabsf(x[be * b + i]));
                for (int i = 0; i < be; i++) {
                    float err = fabsf(y[be * b + i] - x[be * b + i]);
                    if (!(err <= cases[c].tol * amax + 1e-30f))
                        fail_msg("%s: element %d: %g -> %g (block max %g)",
                                 qn_dtype_name(cases[c].type), be * b + i, x[be * b + i],
                                 y[be * b + i], amax);
                }
            }
        }
    }
}

static void test_qdq_equals_quantize_dequantize(void **state) {
    (void)state;
    enum { N = 32 * 37 }; /* an odd number of blocks */
    static float x[N], expect[N], got[N];
    static uint8_t q[N * 2];
    qn_dtype types[] = {QN_Q4_0, QN_Q8_0};
    for (int t = 0; t < 2; t++) {
        random_floats(x, N);
        assert_int_equal(qn_quantize_row(types[t], x, q, N), QN_OK);
        assert_int_equal(qn_dequantize_row(types[t], q, expect, N), QN_OK);
        assert_int_equal(qn_qdq_row(types[t], x, got, N), QN_OK);
        assert_memory_equal(got, expect, sizeof got);
        /* in place */
        assert_int_equal(qn_qdq_row(types[t], x, x, N), QN_OK);
        assert_memory_equal(x, expect, sizeof x);
    }
    assert_int_equal(qn_qdq_row(QN_Q4_K, x, got, 256), QN_ERR_UNSUPPORTED);
    assert_int_equal(qn_qdq_row(QN_Q8_0, x, got, 33), QN_ERR_INVALID_ARGUMENT);
}

/* Widening a symmetric block (q4_0 -> q5_0 -> q8_0) keeps every value: the
 * widened blocks dequantize to the same floats, bit for bit, for quantized
 * data and for arbitrary bytes (any scale, NaN and infinity included). */
static void test_widen_is_exact(void **state) {
    (void)state;
    enum { NB = 37, N = 32 * NB };
    static const qn_dtype sym[] = {QN_Q4_0, QN_Q5_0, QN_Q8_0};
    static float x[N], expect[N], got[N];
    static uint8_t narrow[NB * 34], wide[NB * 34];
    for (int f = 0; f < 3; f++)
        for (int t = 0; t < 3; t++) {
            assert_int_equal(qn_legacy_widens(sym[f], sym[t]), f <= t);
            if (f > t) continue;
            for (int pass = 0; pass < 2; pass++) {
                if (pass == 0) {
                    random_floats(x, N);
                    assert_int_equal(qn_quantize_row(sym[f], x, narrow, N), QN_OK);
                } else {
                    for (size_t i = 0; i < sizeof narrow; i++) narrow[i] = (uint8_t)qt_rand();
                }
                memset(wide, 0xA5, sizeof wide);
                qn_legacy_widen(sym[f], sym[t], narrow, wide, NB);
                assert_int_equal(qn_dequantize_row(sym[f], narrow, expect, N), QN_OK);
                assert_int_equal(qn_dequantize_row(sym[t], wide, got, N), QN_OK);
                assert_memory_equal(got, expect, sizeof got);
            }
        }
    /* Types with a minimum, another block size or non-linear levels do not. */
    assert_false(qn_legacy_widens(QN_Q4_1, QN_Q8_0));
    assert_false(qn_legacy_widens(QN_Q4_0, QN_Q8_1));
    assert_false(qn_legacy_widens(QN_Q4_0, QN_Q4_K));
    assert_false(qn_legacy_widens(QN_IQ4_NL, QN_Q8_0));
    assert_false(qn_legacy_widens(QN_F16, QN_F16));
}

static void test_edge_blocks(void **state) {
    (void)state;
    float x[256], y[256];
    uint8_t q[256 * 2]; /* the largest row: f16 */
    /* All zero: every type gives zeros back. */
    memset(x, 0, sizeof x);
    for (size_t t = 0; t < N_TYPES; t++) {
        assert_int_equal(qn_quantize_row(all_types[t].type, x, q, 256), QN_OK);
        assert_int_equal(qn_dequantize_row(all_types[t].type, q, y, 256), QN_OK);
        for (int i = 0; i < 256; i++) assert_true(y[i] == 0.0f);
    }
    /* A single negative outlier is reproduced exactly by q8_0 and q4_0 (it
     * sets the scale and lands on the extreme level). */
    x[7] = -3.0f;
    assert_int_equal(qn_quantize_row(QN_Q8_0, x, q, 32), QN_OK);
    assert_int_equal(qn_dequantize_row(QN_Q8_0, q, y, 32), QN_OK);
    assert_true(fabsf(y[7] + 3.0f) < 2e-3f);
    assert_int_equal(qn_quantize_row(QN_Q4_0, x, q, 32), QN_OK);
    assert_int_equal(qn_dequantize_row(QN_Q4_0, q, y, 32), QN_OK);
    assert_true(y[7] == -3.0f);
    for (int i = 0; i < 32; i++)
        if (i != 7) assert_true(y[i] == 0.0f);
}

static void test_argument_errors(void **state) {
    (void)state;
    float x[64] = {0};
    uint8_t q[64];
    QT_FAILS(qn_quantize_row(QN_Q4_0, x, q, 31), QN_ERR_INVALID_ARGUMENT, "q4_0's block of 32");
    assert_int_equal(qn_quantize_row(QN_Q4_K, x, q, 32), QN_ERR_INVALID_ARGUMENT);
    assert_int_equal(qn_dequantize_row(QN_Q8_0, q, x, -32), QN_ERR_INVALID_ARGUMENT);
    assert_int_equal(qn_quantize_row(QN_Q8_0, NULL, q, 32), QN_ERR_INVALID_ARGUMENT);
    assert_int_equal(qn_dequantize_row(QN_Q8_0, q, NULL, 32), QN_ERR_INVALID_ARGUMENT);
    assert_int_equal(qn_quantize_row(QN_I32, x, q, 4), QN_ERR_UNSUPPORTED);
    assert_int_equal(qn_quantize_row((qn_dtype)77, x, q, 4), QN_ERR_INVALID_ARGUMENT);
    assert_false(qn_dtype_is_quantizable(QN_I8));
    assert_true(qn_dtype_is_quantizable(QN_MXFP4));
    /* n = 0 converts nothing and succeeds. */
    assert_int_equal(qn_quantize_row(QN_Q6_K, x, q, 0), QN_OK);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_ggml_fixtures),
        cmocka_unit_test(test_q8_K_dequant_matches_ggml),
        cmocka_unit_test(test_blocks_are_independent),
        cmocka_unit_test(test_round_trip_error),
        cmocka_unit_test(test_qdq_equals_quantize_dequantize),
        cmocka_unit_test(test_widen_is_exact),
        cmocka_unit_test(test_edge_blocks),
        cmocka_unit_test(test_argument_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
