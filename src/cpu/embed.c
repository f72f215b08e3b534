/* CPU reference of the embedding gather: each output row is a table row,
 * dequantized (by the formats module's host dequantizers for block types)
 * and scaled; output rows split across threads. */
#include "cpu/transformer_ops.h"

#include <string.h>

/* Floats dequantized per call: a whole number of blocks of every type. */
#define CHUNK 256

static void embed_rows(void *ctx, int64_t begin, int64_t end) {
    const qn_embed_args *a = ctx;
    long long n = a->dst.ne[0];
    int tt = a->table.dtype;
    int float_table = tt == QN_KT_F32 || tt == QN_KT_F16 || tt == QN_KT_BF16;
    long long blk = qn_dtype_block_elems((qn_dtype)tt), bb = qn_dtype_block_bytes((qn_dtype)tt);
    for (int64_t r = begin; r < end; r++) {
        int id = *(const int *)qn_kt_at(&a->ids, r, 0, 0, 0);
        char *d = qn_kt_at(&a->dst, 0, r, 0, 0);
        if (id < 0 || id >= a->table.ne[1]) {
            for (long long i = 0; i < n; i++) qn_store_f32(d + i * a->dst.nb[0], a->dst.dtype, 0.0f);
            continue;
        }
        const char *src = qn_kt_at(&a->table, 0, id, 0, 0);
        if (float_table) {
            for (long long i = 0; i < n; i++)
                qn_store_f32(d + i * a->dst.nb[0], a->dst.dtype, qn_load_f32(src + i * a->table.nb[0], tt) * a->scale);
            continue;
        }
        float buf[CHUNK];
        for (long long i0 = 0; i0 < n; i0 += CHUNK) {
            long long m = n - i0 < CHUNK ? n - i0 : CHUNK; /* a multiple of the block: ne0 is */
            /* the ops checked the type and the row: this cannot fail */
            (void)qn_dequantize_row((qn_dtype)tt, src + (i0 / blk) * bb, buf, m);
            for (long long i = 0; i < m; i++) qn_store_f32(d + (i0 + i) * a->dst.nb[0], a->dst.dtype, buf[i] * a->scale);
        }
    }
}

void qn_cpu_embed(qn_device *dev, const void *args) {
    const qn_embed_args *a = args;
    qn_cpu_parallel_for(dev, a->ids.ne[0], embed_rows, (void *)a);
}
