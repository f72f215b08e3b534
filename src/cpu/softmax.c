/* CPU reference of the row softmax with scale and broadcast mask; rows
 * split across threads. */
#include "cpu/transformer_ops.h"

#include <math.h>

static void softmax_rows(void *ctx, int64_t begin, int64_t end) {
    const qn_softmax_args *a = ctx;
    long long n = a->x.ne[0];
    for (int64_t r = begin; r < end; r++) {
        long long i1, i2, i3;
        qn_kt_row(&a->x, r, &i1, &i2, &i3);
        const char *x = qn_kt_at(&a->x, 0, i1, i2, i3);
        const char *m = a->has_mask ? qn_kt_at(&a->mask, 0, a->mask.ne[1] == 1 ? 0 : i1, a->mask.ne[2] == 1 ? 0 : i2,
                                               a->mask.ne[3] == 1 ? 0 : i3)
                                    : 0;
        char *d = qn_kt_at(&a->dst, 0, i1, i2, i3);
#define VAL(i) \
    (qn_load_f32(x + (i) * a->x.nb[0], a->x.dtype) * a->scale + (m ? qn_load_f32(m + (i) * a->mask.nb[0], a->mask.dtype) : 0.0f))
        float mx = -INFINITY, sum = 0.0f;
        for (long long i = 0; i < n; i++) mx = fmaxf(mx, VAL(i));
        if (mx != -INFINITY)
            for (long long i = 0; i < n; i++) sum += expf(VAL(i) - mx);
        for (long long i = 0; i < n; i++)
            qn_store_f32(d + i * a->dst.nb[0], a->dst.dtype, mx == -INFINITY ? 0.0f : expf(VAL(i) - mx) / sum);
#undef VAL
    }
}

void qn_cpu_softmax(qn_device *dev, const void *args) {
    const qn_softmax_args *a = args;
    qn_cpu_parallel_for(dev, qn_kt_rows(&a->x), softmax_rows, (void *)a);
}
