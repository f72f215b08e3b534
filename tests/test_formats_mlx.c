/* safetensors and MLX affine quantization against files MLX wrote
 * (tests/fixtures/mlx, from scripts/gen_mlx_fixtures.py): the checkpoint's
 * header and config read, each module dequantized to exactly what
 * mx.dequantize gives, and quanta's quantizer reproducing MLX's packed
 * weights, scales and biases byte for byte. Then malformed headers. */
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fixture(char *out, size_t size, const char *file) {
    const char *root = getenv("QUANTA_SOURCE_DIR");
    snprintf(out, size, "%s/tests/fixtures/mlx/%s", root ? root : ".", file);
}

static qn_safetensors *open_fixture(const char *file) {
    char path[1024];
    fixture(path, sizeof path, file);
    qn_safetensors *st;
    QT_OK(qn_safetensors_open(path, &st));
    return st;
}

/* The fixture's config.json, which says how each module is quantized. */
static qn_mlx_config *open_config_fixture(void) {
    char path[1024];
    fixture(path, sizeof path, "config.json");
    qn_mlx_config *cfg;
    QT_OK(qn_mlx_config_open(path, &cfg));
    return cfg;
}

static const char *modules[] = {"layers.0.q", "layers.0.k", "layers.1.v", "layers.1.o", "layers.2.up"};

static const void *tensor(const qn_safetensors *st, const char *module, const char *part, qn_safetensors_tensor *t) {
    char name[256];
    snprintf(name, sizeof name, "%s.%s", module, part);
    int64_t i = qn_safetensors_find(st, name);
    if (i < 0) fail_msg("no tensor %s", name);
    QT_OK(qn_safetensors_tensor_get(st, i, t));
    return t->data;
}

static void test_checkpoint_header(void **state) {
    (void)state;
    qn_safetensors *st = open_fixture("model.safetensors");
    assert_int_equal(qn_safetensors_tensor_count(st), 16);
    assert_string_equal(qn_safetensors_metadata(st, "format"), "mlx");
    assert_null(qn_safetensors_metadata(st, "nope"));
    qn_safetensors_tensor t;
    tensor(st, "layers.0.q", "weight", &t);
    assert_string_equal(t.dtype, "U32");
    assert_int_equal(t.n_dims, 2);
    assert_int_equal(t.shape[0], 8);
    assert_int_equal(t.shape[1], 128 * 4 / 32);
    assert_int_equal(t.bytes, 8 * 16 * 4);
    tensor(st, "layers.0.k", "scales", &t);
    assert_true(t.has_type && t.type == QN_BF16);
    tensor(st, "embed", "weight", &t);
    assert_true(t.has_type && t.type == QN_F16);
    assert_int_equal(qn_safetensors_find(st, "missing"), -1);
    /* tensors come in data order, without overlap */
    const uint8_t *prev_end = NULL;
    for (int64_t i = 0; i < qn_safetensors_tensor_count(st); i++) {
        QT_OK(qn_safetensors_tensor_get(st, i, &t));
        if (prev_end) assert_true((const uint8_t *)t.data >= prev_end);
        prev_end = (const uint8_t *)t.data + t.bytes;
    }
    qn_safetensors_close(st);
}

static void test_config(void **state) {
    (void)state;
    qn_mlx_config *cfg = open_config_fixture();
    bool quantized;
    qn_mlx_quant p;
    QT_OK(qn_mlx_config_lookup(cfg, "layers.0.q", &quantized, &p));
    assert_true(quantized);
    assert_int_equal(p.bits, 4);
    assert_int_equal(p.group_size, 64);
    QT_OK(qn_mlx_config_lookup(cfg, "layers.1.v", &quantized, &p));
    assert_int_equal(p.bits, 6);
    assert_int_equal(p.group_size, 128);
    QT_OK(qn_mlx_config_lookup(cfg, "embed", &quantized, &p));
    assert_false(quantized);
    qn_mlx_config_close(cfg);
}

/* Dequantization equals mx.dequantize; quantizing MLX's source weights
 * gives MLX's bytes. */
static void test_matches_mlx(void **state) {
    (void)state;
    qn_mlx_config *cfg = open_config_fixture();
    qn_safetensors *model = open_fixture("model.safetensors");
    qn_safetensors *expect = open_fixture("expected.safetensors");
    for (size_t m = 0; m < sizeof modules / sizeof modules[0]; m++) {
        bool quantized;
        qn_mlx_quant p;
        QT_OK(qn_mlx_config_lookup(cfg, modules[m], &quantized, &p));
        qn_safetensors_tensor src, deq, w, s, b;
        const float *x = tensor(expect, modules[m], "source", &src);
        const float *want = tensor(expect, modules[m], "dequant", &deq);
        int64_t rows = src.shape[0], cols = src.shape[1];
        float *got = malloc((size_t)(rows * cols) * sizeof *got);
        for (int64_t i = 0; i < rows * cols; i++) got[i] = NAN;
        QT_OK(qn_safetensors_mlx_dequantize(model, modules[m], p, got, rows * cols));
        for (int64_t i = 0; i < rows * cols; i++)
            if (memcmp(&got[i], &want[i], 4) != 0)
                fail_msg("%s: element %lld: %g, MLX %g", modules[m], (long long)i, got[i], want[i]);
        free(got);

        tensor(model, modules[m], "weight", &w);
        tensor(model, modules[m], "scales", &s);
        tensor(model, modules[m], "biases", &b);
        int64_t qrow = cols * p.bits / 8, srow = cols / p.group_size * qn_dtype_block_bytes(s.type);
        uint8_t *q = malloc((size_t)qrow), *sc = malloc((size_t)srow), *bi = malloc((size_t)srow);
        for (int64_t r = 0; r < rows; r++) {
            QT_OK(qn_mlx_quantize_row(p, s.type, x + r * cols, cols, q, sc, bi));
            assert_memory_equal(q, (const uint8_t *)w.data + r * qrow, (size_t)qrow);
            assert_memory_equal(sc, (const uint8_t *)s.data + r * srow, (size_t)srow);
            assert_memory_equal(bi, (const uint8_t *)b.data + r * srow, (size_t)srow);
        }
        free(q);
        free(sc);
        free(bi);
    }
    /* wrong parameters for a module are caught by the shapes */
    qn_mlx_quant wrong = {8, 64};
    float dummy[8 * 128];
    QT_FAILS(qn_safetensors_mlx_dequantize(model, "layers.0.q", wrong, dummy, 8 * 128), QN_ERR_FORMAT, "layers.0.q");
    QT_FAILS(qn_safetensors_mlx_dequantize(model, "embed", wrong, dummy, 32), QN_ERR_INVALID_ARGUMENT, "embed.scales");
    qn_safetensors_close(model);
    qn_safetensors_close(expect);
    qn_mlx_config_close(cfg);
}

/* Round trip on fresh random data for every bits/group size/scale type. */
static void test_round_trip(void **state) {
    (void)state;
    enum { N = 256 };
    float x[N], y[N];
    uint8_t q[N], s[N], b[N];
    const int bits[] = {2, 3, 4, 6, 8}, groups[] = {32, 64, 128};
    const qn_dtype types[] = {QN_F32, QN_F16, QN_BF16};
    for (int bi = 0; bi < 5; bi++)
        for (int gi = 0; gi < 3; gi++)
            for (int ti = 0; ti < 3; ti++) {
                qn_mlx_quant p = {bits[bi], groups[gi]};
                qt_fill_random_f32(x, N, -3.0f, 1.0f);
                QT_OK(qn_mlx_quantize_row(p, types[ti], x, N, q, s, b));
                QT_OK(qn_mlx_dequantize_row(p, types[ti], q, s, b, y, N));
                /* Half a step, where MLX may widen the step by up to 1.5x
                 * to put the larger end exactly on a level; plus the
                 * scale's and bias's rounding. */
                float step = 4.0f / (float)((1 << p.bits) - 1);
                float tol = 0.75f * step + (types[ti] == QN_BF16 ? 0.1f : types[ti] == QN_F16 ? 0.02f : 1e-4f);
                for (int i = 0; i < N; i++)
                    if (!(fabsf(x[i] - y[i]) <= tol))
                        fail_msg("bits %d group %d %s: %g -> %g", p.bits, p.group_size, qn_dtype_name(types[ti]), x[i], y[i]);
            }
    qn_mlx_quant bad = {5, 32};
    QT_FAILS(qn_mlx_quantize_row(bad, QN_F16, x, N, q, s, b), QN_ERR_INVALID_ARGUMENT, "bits 5");
    bad = (qn_mlx_quant){4, 48};
    QT_FAILS(qn_mlx_dequantize_row(bad, QN_F16, q, s, b, y, N), QN_ERR_INVALID_ARGUMENT, "group size 48");
    bad = (qn_mlx_quant){4, 32};
    QT_FAILS(qn_mlx_dequantize_row(bad, QN_Q4_0, q, s, b, y, N), QN_ERR_INVALID_ARGUMENT, "q4_0");
    QT_FAILS(qn_mlx_dequantize_row(bad, QN_F16, q, s, b, y, 33), QN_ERR_INVALID_ARGUMENT, "33");
}

static qn_status open_header(const char *json, size_t data_bytes) {
    size_t hlen = strlen(json), size = 8 + hlen + data_bytes;
    uint8_t *buf = calloc(1, size);
    uint64_t h = hlen;
    memcpy(buf, &h, 8);
    memcpy(buf + 8, json, hlen);
    qn_safetensors *st = NULL;
    qn_status s = qn_safetensors_open_memory(buf, size, &st);
    qn_safetensors_close(st);
    free(buf);
    return s;
}

static void test_malformed(void **state) {
    (void)state;
    QT_OK(open_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", 16));
    QT_OK(open_header("{}", 0));
    QT_FAILS(open_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", 15), QN_ERR_FORMAT,
             "outside the 15 data bytes");
    QT_FAILS(open_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,16]}}", 16), QN_ERR_FORMAT,
             "need 24");
    QT_FAILS(open_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4), QN_ERR_FORMAT,
             "non-negative integer");
    QT_FAILS(open_header("{\"a\":{\"dtype\":\"Q9\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4), QN_ERR_UNSUPPORTED,
             "'Q9'");
    QT_FAILS(open_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4), QN_ERR_FORMAT, "data_offsets");
    QT_FAILS(open_header("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                         "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]}}", 4),
             QN_ERR_FORMAT, "overlap");
    QT_FAILS(open_header("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                         "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2),
             QN_ERR_FORMAT, "duplicate tensor 'a'");
    QT_FAILS(open_header("{\"__metadata__\":{\"k\":1}}", 0), QN_ERR_FORMAT, "'k' is not a string");
    QT_FAILS(open_header("[1,2]", 0), QN_ERR_FORMAT, "not a JSON object");
    QT_FAILS(open_header("{\"a\":", 0), QN_ERR_FORMAT, "invalid JSON");
    QT_FAILS(open_header("{\"a\\u0000b\":1}", 0), QN_ERR_FORMAT, "NUL");
    QT_FAILS(open_header("{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1),
             QN_ERR_FORMAT, "8 dimensions");
    uint8_t tiny[8] = {200, 0, 0, 0, 0, 0, 0, 0};
    qn_safetensors *st;
    QT_FAILS(qn_safetensors_open_memory(tiny, 8, &st), QN_ERR_FORMAT, "header length 200");
    QT_FAILS(qn_safetensors_open_memory(tiny, 5, &st), QN_ERR_FORMAT, "too short");
    /* nesting beyond the parser's limit */
    char deep[300];
    memset(deep, '[', 200);
    deep[200] = 0;
    QT_FAILS(open_header(deep, 0), QN_ERR_FORMAT, "nested too deeply");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checkpoint_header), cmocka_unit_test(test_config),
        cmocka_unit_test(test_matches_mlx),       cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
