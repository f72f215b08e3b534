/* libFuzzer target: the GGUF reader on arbitrary bytes. A file that opens is
 * walked completely (every value, every array element at any depth, every
 * tensor's first row dequantized), so a bound the parser forgot to check
 * shows up as a sanitizer report here. */
#include "quanta.h"

#include <stdint.h>
#include <stdlib.h>

static void walk(const qn_gguf_value *v, int depth) {
    int64_t i;
    double d;
    const char *s;
    size_t len;
    volatile size_t sink = 0;
    if (qn_gguf_value_int(v, &i) == QN_OK) sink += (size_t)i;
    if (qn_gguf_value_float(v, &d) == QN_OK) sink += (size_t)(d != d);
    if (qn_gguf_value_str(v, &s, &len) == QN_OK && len) sink += (size_t)s[len - 1];
    if (v->type != QN_GGUF_ARRAY || depth > 32) return;
    for (uint64_t k = 0; k < v->count && k < 4096; k++) {
        qn_gguf_value e;
        if (qn_gguf_array_get(v, k, &e) == QN_OK) walk(&e, depth + 1);
    }
    (void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    qn_gguf *g;
    if (qn_gguf_open_memory(data, size, &g) != QN_OK) return 0;
    for (int64_t i = 0; i < qn_gguf_kv_count(g); i++) {
        const char *key;
        qn_gguf_value v;
        if (qn_gguf_kv(g, i, &key, &v) == QN_OK) {
            walk(&v, 0);
            qn_gguf_find_key(g, key);
        }
    }
    for (int64_t i = 0; i < qn_gguf_tensor_count(g); i++) {
        qn_gguf_tensor t;
        if (qn_gguf_tensor_get(g, i, &t) != QN_OK) continue;
        qn_gguf_find_tensor(g, t.name);
        if (t.bytes == 0 || t.ne[0] > 4096 || !qn_dtype_is_quantizable(t.type)) continue;
        float *row = malloc((size_t)t.ne[0] * sizeof *row);
        if (row) qn_dequantize_row(t.type, t.data, row, t.ne[0]);
        free(row);
    }
    qn_gguf_close(g);
    return 0;
}
