/* CPU reference of the activations: dst = act(x), or act(gate) * up for
 * the gated units; rows split across threads. */
#include "cpu/transformer_ops.h"

static void act_rows(void *ctx, int64_t begin, int64_t end) {
    const qn_act_args *a = ctx;
    for (int64_t r = begin; r < end; r++) {
        long long i1, i2, i3;
        qn_kt_row(&a->dst, r, &i1, &i2, &i3);
        const char *x = qn_kt_at(&a->x, 0, i1, i2, i3);
        const char *u = a->has_up ? qn_kt_at(&a->up, 0, i1, i2, i3) : 0;
        char *d = qn_kt_at(&a->dst, 0, i1, i2, i3);
        for (long long i = 0; i < a->dst.ne[0]; i++) {
            float v = qn_act_apply(a->act, qn_load_f32(x + i * a->x.nb[0], a->x.dtype), a->cap);
            if (u) v *= qn_load_f32(u + i * a->up.nb[0], a->up.dtype);
            qn_store_f32(d + i * a->dst.nb[0], a->dst.dtype, v);
        }
    }
}

void qn_cpu_act(qn_device *dev, const void *args) {
    const qn_act_args *a = args;
    qn_cpu_parallel_for(dev, qn_kt_rows(&a->dst), act_rows, (void *)a);
}
