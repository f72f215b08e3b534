/* GGUF reader and writer through the C API: every value type written and
 * read back, values copied file to file byte for byte, every truncation of a
 * file refused, tensor upload, and the writer's argument errors.
 * Interoperability with the gguf Python package is in test_gguf.py. */
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *temp_path(const char *tag) {
    static char paths[4][256];
    static int next;
    char *p = paths[next++ % 4];
    const char *dir = getenv("TMPDIR");
    snprintf(p, 256, "%s/quanta_test_gguf_%d_%s.gguf", dir && *dir ? dir : "/tmp", (int)getpid(), tag);
    return p;
}

static void *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    void *data = malloc(*size);
    assert_int_equal(fread(data, 1, *size, f), *size);
    fclose(f);
    return data;
}

enum { ROWS = 3, COLS = 64 };
static float weights[ROWS * COLS];
static uint8_t weights_q4[ROWS * COLS / 32 * 18];
static int32_t ids[5] = {7, -1, 0, 42, 9};

/* A file with every value type, empty and nested-free arrays, and three
 * tensors; general.alignment 64. */
static void write_sample(const char *path) {
    qn_gguf_writer *w;
    QT_OK(qn_gguf_writer_create(&w));
    uint8_t u8 = 250, b = 1;
    int8_t i8 = -7;
    uint16_t u16 = 65000;
    int16_t i16 = -32000;
    uint32_t u32 = 4000000000u, align = 64;
    int32_t i32 = -5;
    float f32 = 0.25f;
    uint64_t u64 = UINT64_MAX;
    int64_t i64 = INT64_MIN;
    double f64 = -1e-300;
    QT_OK(qn_gguf_writer_set_scalar(w, "u8", QN_GGUF_UINT8, &u8));
    QT_OK(qn_gguf_writer_set_scalar(w, "i8", QN_GGUF_INT8, &i8));
    QT_OK(qn_gguf_writer_set_scalar(w, "u16", QN_GGUF_UINT16, &u16));
    QT_OK(qn_gguf_writer_set_scalar(w, "i16", QN_GGUF_INT16, &i16));
    QT_OK(qn_gguf_writer_set_scalar(w, "u32", QN_GGUF_UINT32, &u32));
    QT_OK(qn_gguf_writer_set_scalar(w, "i32", QN_GGUF_INT32, &i32));
    QT_OK(qn_gguf_writer_set_scalar(w, "f32", QN_GGUF_FLOAT32, &f32));
    QT_OK(qn_gguf_writer_set_scalar(w, "bool", QN_GGUF_BOOL, &b));
    QT_OK(qn_gguf_writer_set_scalar(w, "u64", QN_GGUF_UINT64, &u64));
    QT_OK(qn_gguf_writer_set_scalar(w, "i64", QN_GGUF_INT64, &i64));
    QT_OK(qn_gguf_writer_set_scalar(w, "f64", QN_GGUF_FLOAT64, &f64));
    QT_OK(qn_gguf_writer_set_str(w, "str", "first"));
    QT_OK(qn_gguf_writer_set_str(w, "str", "héllo")); /* replaces */
    QT_OK(qn_gguf_writer_set_array(w, "ids", QN_GGUF_INT32, ids, 5));
    QT_OK(qn_gguf_writer_set_array(w, "empty", QN_GGUF_FLOAT32, NULL, 0));
    const char *strs[] = {"a", "", "xyz"};
    QT_OK(qn_gguf_writer_set_str_array(w, "strs", strs, 3));
    QT_OK(qn_gguf_writer_set_scalar(w, "general.alignment", QN_GGUF_UINT32, &align));
    int64_t ne2[2] = {COLS, ROWS}, ne1[1] = {5};
    QT_OK(qn_gguf_writer_add_tensor(w, "w.f32", QN_F32, 2, ne2));
    QT_OK(qn_gguf_writer_add_tensor(w, "w.q4_0", QN_Q4_0, 2, ne2));
    QT_OK(qn_gguf_writer_add_tensor(w, "ids", QN_I32, 1, ne1));
    QT_OK(qn_gguf_writer_begin(w, path));
    QT_OK(qn_gguf_writer_write_tensor(w, weights, sizeof weights));
    QT_OK(qn_gguf_writer_write_tensor(w, weights_q4, sizeof weights_q4));
    QT_OK(qn_gguf_writer_write_tensor(w, ids, sizeof ids));
    QT_OK(qn_gguf_writer_finish(w));
    qn_gguf_writer_destroy(w);
}

static int setup(void **state) {
    (void)state;
    qt_fill_random_f32(weights, ROWS * COLS, -2.0f, 2.0f);
    QT_OK(qn_quantize_row(QN_Q4_0, weights, weights_q4, ROWS * COLS));
    return 0;
}

static int64_t get_int(qn_gguf *g, const char *key) {
    qn_gguf_value v;
    int64_t x;
    QT_OK(qn_gguf_get(g, key, &v));
    QT_OK(qn_gguf_value_int(&v, &x));
    return x;
}

static void test_round_trip(void **state) {
    (void)state;
    const char *path = temp_path("rt");
    write_sample(path);
    qn_gguf *g;
    QT_OK(qn_gguf_open(path, &g));
    assert_int_equal(qn_gguf_version(g), 3);
    assert_int_equal(qn_gguf_alignment(g), 64);
    assert_int_equal(qn_gguf_data_offset(g) % 64, 0);
    assert_int_equal(qn_gguf_kv_count(g), 16);
    assert_int_equal(get_int(g, "u8"), 250);
    assert_int_equal(get_int(g, "i8"), -7);
    assert_int_equal(get_int(g, "u16"), 65000);
    assert_int_equal(get_int(g, "i16"), -32000);
    assert_int_equal(get_int(g, "u32"), 4000000000ll);
    assert_int_equal(get_int(g, "i32"), -5);
    assert_int_equal(get_int(g, "bool"), 1);
    assert_true(get_int(g, "i64") == INT64_MIN);
    qn_gguf_value v, e;
    int64_t x;
    double d;
    QT_OK(qn_gguf_get(g, "u64", &v));
    QT_FAILS(qn_gguf_value_int(&v, &x), QN_ERR_INVALID_ARGUMENT, "exceeds int64");
    QT_OK(qn_gguf_value_float(&v, &d));
    assert_true(d == 18446744073709551615.0);
    QT_OK(qn_gguf_get(g, "f32", &v));
    QT_OK(qn_gguf_value_float(&v, &d));
    assert_true(d == 0.25);
    QT_OK(qn_gguf_get(g, "f64", &v));
    QT_OK(qn_gguf_value_float(&v, &d));
    assert_true(d == -1e-300);
    const char *s;
    size_t len;
    QT_OK(qn_gguf_get(g, "str", &v));
    QT_OK(qn_gguf_value_str(&v, &s, &len));
    assert_int_equal(len, strlen("héllo"));
    assert_memory_equal(s, "héllo", len);
    QT_FAILS(qn_gguf_value_int(&v, &x), QN_ERR_INVALID_ARGUMENT, "string");
    QT_OK(qn_gguf_get(g, "ids", &v));
    assert_int_equal(v.type, QN_GGUF_ARRAY);
    assert_int_equal(v.elem_type, QN_GGUF_INT32);
    assert_int_equal(v.count, 5);
    for (int i = 0; i < 5; i++) {
        QT_OK(qn_gguf_array_get(&v, (uint64_t)i, &e));
        QT_OK(qn_gguf_value_int(&e, &x));
        assert_int_equal(x, ids[i]);
    }
    QT_FAILS(qn_gguf_array_get(&v, 5, &e), QN_ERR_INVALID_ARGUMENT, "index 5");
    QT_OK(qn_gguf_get(g, "empty", &v));
    assert_int_equal(v.count, 0);
    QT_OK(qn_gguf_get(g, "strs", &v));
    QT_OK(qn_gguf_array_get(&v, 2, &e));
    QT_OK(qn_gguf_value_str(&e, &s, &len));
    assert_int_equal(len, 3);
    assert_memory_equal(s, "xyz", 3);
    QT_OK(qn_gguf_array_get(&v, 1, &e));
    QT_OK(qn_gguf_value_str(&e, &s, &len));
    assert_int_equal(len, 0);
    QT_FAILS(qn_gguf_get(g, "nope", &v), QN_ERR_INVALID_ARGUMENT, "'nope'");
    assert_int_equal(qn_gguf_find_key(g, "nope"), -1);

    assert_int_equal(qn_gguf_tensor_count(g), 3);
    qn_gguf_tensor t;
    QT_OK(qn_gguf_tensor_get(g, qn_gguf_find_tensor(g, "w.q4_0"), &t));
    assert_int_equal(t.type, QN_Q4_0);
    assert_int_equal(t.n_dims, 2);
    assert_int_equal(t.ne[0], COLS);
    assert_int_equal(t.ne[1], ROWS);
    assert_int_equal(t.ne[2], 1);
    assert_int_equal(t.bytes, sizeof weights_q4);
    assert_int_equal(t.offset % 64, 0);
    assert_memory_equal(t.data, weights_q4, sizeof weights_q4);
    QT_OK(qn_gguf_tensor_get(g, qn_gguf_find_tensor(g, "w.f32"), &t));
    assert_memory_equal(t.data, weights, sizeof weights);
    assert_int_equal(qn_gguf_find_tensor(g, "missing"), -1);
    QT_FAILS(qn_gguf_tensor_get(g, 3, &t), QN_ERR_INVALID_ARGUMENT, "index 3");
    qn_gguf_close(g);
    unlink(path);
}

/* Every value copied through qn_gguf_writer_set_value, and every tensor's
 * bytes, gives the same file again. */
static void test_copy_is_identical(void **state) {
    (void)state;
    const char *a = temp_path("a"), *b = temp_path("b");
    write_sample(a);
    qn_gguf *g;
    QT_OK(qn_gguf_open(a, &g));
    qn_gguf_writer *w;
    QT_OK(qn_gguf_writer_create(&w));
    for (int64_t i = 0; i < qn_gguf_kv_count(g); i++) {
        const char *key;
        qn_gguf_value v;
        QT_OK(qn_gguf_kv(g, i, &key, &v));
        QT_OK(qn_gguf_writer_set_value(w, key, &v));
    }
    qn_gguf_tensor t;
    for (int64_t i = 0; i < qn_gguf_tensor_count(g); i++) {
        QT_OK(qn_gguf_tensor_get(g, i, &t));
        QT_OK(qn_gguf_writer_add_tensor(w, t.name, t.type, t.n_dims, t.ne));
    }
    QT_OK(qn_gguf_writer_begin(w, b));
    for (int64_t i = 0; i < qn_gguf_tensor_count(g); i++) {
        QT_OK(qn_gguf_tensor_get(g, i, &t));
        QT_OK(qn_gguf_writer_write_tensor(w, t.data, t.bytes));
    }
    QT_OK(qn_gguf_writer_finish(w));
    qn_gguf_writer_destroy(w);
    qn_gguf_close(g);
    size_t na, nb;
    void *da = read_file(a, &na), *db = read_file(b, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(da, db, na);
    free(da);
    free(db);
    unlink(a);
    unlink(b);
}

/* No prefix of a file parses (the last tensor ends at the end), and each
 * failure is QN_ERR_FORMAT. */
static void test_every_truncation_fails(void **state) {
    (void)state;
    const char *path = temp_path("tr");
    write_sample(path);
    size_t size;
    uint8_t *data = read_file(path, &size);
    /* The file ends with the last tensor plus padding to 64: cutting into
     * the padding still leaves a whole file. */
    qn_gguf *g;
    qn_gguf_tensor last;
    QT_OK(qn_gguf_open_memory(data, size, &g));
    QT_OK(qn_gguf_tensor_get(g, 2, &last));
    size_t end = (size_t)(qn_gguf_data_offset(g) + last.offset + last.bytes);
    qn_gguf_close(g);
    for (size_t cut = 0; cut < end; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1); /* exact size, so ASan sees overreads */
        memcpy(copy, data, cut);
        qn_status s = qn_gguf_open_memory(copy, cut, &g);
        if (s != QN_ERR_FORMAT) fail_msg("prefix of %zu bytes: %s", cut, qn_status_name(s));
        assert_null(g);
        free(copy);
    }
    free(data);
    unlink(path);
}

static void test_upload(void **state) {
    (void)state;
    const char *path = temp_path("up");
    write_sample(path);
    qn_gguf *g;
    QT_OK(qn_gguf_open(path, &g));
    qn_buffer *buf;
    int64_t i = qn_gguf_find_tensor(g, "w.q4_0");
    QT_OK(qn_gguf_tensor_upload(g, i, qt_device(), &buf));
    assert_int_equal(qn_buffer_dtype(buf), QN_Q4_0);
    assert_int_equal(qn_buffer_ne(buf, 0), COLS);
    assert_int_equal(qn_buffer_ne(buf, 1), ROWS);
    void *back = qt_read_all(buf);
    assert_memory_equal(back, weights_q4, sizeof weights_q4);
    free(back);
    qn_buffer_free(buf);
    QT_FAILS(qn_gguf_tensor_upload(g, 99, qt_device(), &buf), QN_ERR_INVALID_ARGUMENT, "index 99");
    qn_gguf_close(g);
    unlink(path);
}

static void test_writer_errors(void **state) {
    (void)state;
    const char *path = temp_path("err");
    qn_gguf_writer *w;
    QT_OK(qn_gguf_writer_create(&w));
    int64_t ne[2] = {COLS, ROWS}, odd[1] = {33};
    uint8_t two = 2;
    uint32_t align = 48;
    QT_FAILS(qn_gguf_writer_set_scalar(w, "b", QN_GGUF_BOOL, &two), QN_ERR_INVALID_ARGUMENT, "not 0 or 1");
    QT_FAILS(qn_gguf_writer_set_scalar(w, "s", QN_GGUF_STRING, "x"), QN_ERR_INVALID_ARGUMENT, "not a number");
    QT_FAILS(qn_gguf_writer_add_tensor(w, "q", QN_Q8_0, 1, odd), QN_ERR_INVALID_ARGUMENT, "block of 32");
    QT_FAILS(qn_gguf_writer_add_tensor(w, "q", QN_Q8_0, 5, ne), QN_ERR_INVALID_ARGUMENT, "n_dims 5");
    QT_OK(qn_gguf_writer_add_tensor(w, "t", QN_F32, 2, ne));
    QT_FAILS(qn_gguf_writer_add_tensor(w, "t", QN_F32, 2, ne), QN_ERR_INVALID_ARGUMENT, "already declared");
    QT_OK(qn_gguf_writer_set_scalar(w, "general.alignment", QN_GGUF_UINT32, &align));
    QT_FAILS(qn_gguf_writer_begin(w, path), QN_ERR_INVALID_ARGUMENT, "power of two");
    align = 16;
    QT_OK(qn_gguf_writer_set_scalar(w, "general.alignment", QN_GGUF_UINT32, &align));
    QT_FAILS(qn_gguf_writer_write_tensor(w, weights, sizeof weights), QN_ERR_INVALID_ARGUMENT, "begin first");
    QT_OK(qn_gguf_writer_begin(w, path));
    QT_FAILS(qn_gguf_writer_set_str(w, "late", "x"), QN_ERR_INVALID_ARGUMENT, "already written");
    QT_FAILS(qn_gguf_writer_write_tensor(w, weights, 8), QN_ERR_INVALID_ARGUMENT, "not 8");
    QT_FAILS(qn_gguf_writer_finish(w), QN_ERR_INVALID_ARGUMENT, "'t' was not written");
    qn_gguf_writer_destroy(w); /* removes the unfinished file */
    assert_int_equal(access(path, F_OK), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_copy_is_identical),
        cmocka_unit_test(test_every_truncation_fails),
        cmocka_unit_test(test_upload),
        cmocka_unit_test(test_writer_errors),
    };
    int rc = cmocka_run_group_tests(tests, setup, NULL);
    qt_close_devices();
    return rc;
}
