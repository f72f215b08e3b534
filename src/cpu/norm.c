/* CPU reference of the norms: RMS (optionally after a residual add, of a
 * normed row or not), L2 and
 * LayerNorm over each row, rows split across threads. */
#include "cpu/transformer_ops.h"

static void norm_rows(void *ctx, int64_t begin, int64_t end) {
    const qn_norm_args *a = ctx;
    long long n = a->x.ne[0];
    for (int64_t r = begin; r < end; r++) {
        long long i1, i2, i3;
        qn_kt_row(&a->x, r, &i1, &i2, &i3);
        const char *x = qn_kt_at(&a->x, 0, i1, i2, i3);
        char *d = qn_kt_at(&a->dst, 0, i1, i2, i3);
        if (a->has_b) {
            /* sum = a + b (b first RMS-normed with weight bw when has_bw, in
             * f32), stored; the norm reads the stored values */
            const char *b = qn_kt_at(&a->b, 0, i1, i2, i3);
            char *s = qn_kt_at(&a->sum, 0, i1, i2, i3);
            float bscale = 1.0f;
            if (a->has_bw)
                bscale = qn_norm_scale(QN_NORM_RMS, qn_cpu_row_sumsq(b, a->b.nb[0], a->b.dtype, 0.0f, n), n, a->eps);
            for (long long i = 0; i < n; i++) {
                float o = qn_load_f32(b + i * a->b.nb[0], a->b.dtype);
                if (a->has_bw) o = o * bscale * (qn_load_f32(qn_kt_at(&a->bw, i, 0, 0, 0), a->bw.dtype) + a->w_off);
                qn_store_f32(s + i * a->sum.nb[0], a->sum.dtype, qn_load_f32(x + i * a->x.nb[0], a->x.dtype) + o);
            }
            x = s;
        }
        long long xnb = a->has_b ? a->sum.nb[0] : a->x.nb[0];
        int xt = a->has_b ? a->sum.dtype : a->x.dtype;
        float mean = 0.0f, sq = 0.0f;
        if (a->kind == QN_NORM_LAYER) {
            for (long long i = 0; i < n; i++) mean += qn_load_f32(x + i * xnb, xt);
            mean /= (float)n;
        }
        sq = qn_cpu_row_sumsq(x, xnb, xt, mean, n);
        float scale = qn_norm_scale(a->kind, sq, n, a->eps);
        for (long long i = 0; i < n; i++) {
            float v = (qn_load_f32(x + i * xnb, xt) - mean) * scale;
            if (a->has_w) v *= qn_load_f32(qn_kt_at(&a->w, i, 0, 0, 0), a->w.dtype) + a->w_off;
            if (a->has_bias) v += qn_load_f32(qn_kt_at(&a->bias, i, 0, 0, 0), a->bias.dtype);
            qn_store_f32(d + i * a->dst.nb[0], a->dst.dtype, v);
        }
    }
}

void qn_cpu_norm(qn_device *dev, const void *args) {
    const qn_norm_args *a = args;
    qn_cpu_parallel_for(dev, qn_kt_rows(&a->x), norm_rows, (void *)a);
}
