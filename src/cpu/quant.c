/* CPU side of qn_qdq (ggml's reference quantizer and dequantizer, block by
 * block, blocks split across threads) and qn_mlx_dequantize (the host MLX
 * dequantizer, rows split across threads), both from src/formats. */
#include "cpu/cpu_ops.h"
#include "formats/quants.h"

static void qdq_blocks(void *ctx, int64_t begin, int64_t end) {
    const qn_qdq_args *a = ctx;
    /* arguments were checked at encode, so the row call cannot fail */
    qn_qdq_row((qn_dtype)a->type, a->src + 32 * begin, a->dst + 32 * begin, 32 * (end - begin));
}

void qn_cpu_qdq(qn_device *dev, const void *args) {
    const qn_qdq_args *a = args;
    qn_cpu_parallel_for(dev, a->nblocks, qdq_blocks, (void *)a);
}

/* A row in chunks of 128 (a whole number of groups), stored with conversion. */
static void mlx_rows(void *ctx, int64_t begin, int64_t end) {
    const qn_mlx_args *a = ctx;
    const qn_mlx_quant p = {a->bits, a->group};
    float tmp[128];
    for (int64_t r = begin; r < end; r++) {
        long long i1, i2, i3;
        qn_kt_row(&a->dst, r, &i1, &i2, &i3);
        const char *q = qn_kt_at(&a->q, 0, i1, i2, i3), *s = qn_kt_at(&a->scales, 0, i1, i2, i3);
        const char *b = qn_kt_at(&a->biases, 0, i1, i2, i3);
        char *dst = qn_kt_at(&a->dst, 0, i1, i2, i3);
        for (int64_t i0 = 0; i0 < a->dst.ne[0]; i0 += 128) {
            int64_t n = a->dst.ne[0] - i0 < 128 ? a->dst.ne[0] - i0 : 128;
            int64_t g = i0 / a->group;
            qn_mlx_dequantize_row(p, (qn_dtype)a->scales.dtype, q + i0 * a->bits / 8, s + g * a->scales.nb[0],
                                  b + g * a->biases.nb[0], tmp, n);
            for (int64_t i = 0; i < n; i++) qn_store_f32(dst + (i0 + i) * a->dst.nb[0], a->dst.dtype, tmp[i]);
        }
    }
}

void qn_cpu_mlx_dequant(qn_device *dev, const void *args) {
    const qn_mlx_args *a = args;
    qn_cpu_parallel_for(dev, qn_kt_rows(&a->dst), mlx_rows, (void *)a);
}
