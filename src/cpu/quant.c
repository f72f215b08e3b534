/* CPU side of qn_qdq: ggml's reference quantizer and dequantizer, block by
 * block (src/formats), blocks split across threads. */
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
