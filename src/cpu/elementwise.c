/* CPU kernel of the element-wise family: the row body of elementwise.cu
 * (tensor.h) over whole rows, rows split across threads. */
#include "cpu/cpu_ops.h"

static void binary_rows(void *ctx, int64_t begin, int64_t end) {
    const qn_binary_args *a = ctx;
    for (int64_t r = begin; r < end; r++) {
        long long i1, i2, i3;
        qn_kt_row(&a->dst, r, &i1, &i2, &i3);
        const char *brow = a->has_b ? qn_kt_at(&a->b, 0, a->b.ne[1] == 1 ? 0 : i1, a->b.ne[2] == 1 ? 0 : i2,
                                               a->b.ne[3] == 1 ? 0 : i3)
                                    : 0;
        qn_row_binary(qn_kt_at(&a->dst, 0, i1, i2, i3), a->dst.nb[0], a->dst.dtype, qn_kt_at(&a->a, 0, i1, i2, i3),
                      a->a.nb[0], a->a.dtype, brow, a->b.ne[0] == 1 ? 0 : a->b.nb[0], a->b.dtype, a->op, a->s, 0,
                      a->dst.ne[0], 1);
    }
}

void qn_cpu_binary(qn_device *dev, const void *args) {
    const qn_binary_args *a = args;
    qn_cpu_parallel_for(dev, qn_kt_rows(&a->dst), binary_rows, (void *)a);
}
