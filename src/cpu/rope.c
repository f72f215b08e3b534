/* CPU reference of RoPE (and of the fused per-head RMS norm + RoPE): each
 * row (a head of a token) is rotated pair by pair; rows split across
 * threads. */
#include "cpu/attention.h"
#include "cpu/transformer_ops.h"

static void rope_rows(void *ctx, int64_t begin, int64_t end) {
    const qn_rope_args *a = ctx;
    long long n = a->x.ne[0], n_tokens = a->x.ne[2];
    int npairs = qn_rope_npairs(&a->r);
    for (int64_t r = begin; r < end; r++) {
        long long i1, i2, i3;
        qn_kt_row(&a->x, r, &i1, &i2, &i3);
        const char *x = qn_kt_at(&a->x, 0, i1, i2, i3);
        char *d = a->dst_cache ? qn_kt_at(&a->dst, 0, (qn_attn_p0(&a->pos) + i2) % a->dst.ne[1], i1, 0)
                               : qn_kt_at(&a->dst, 0, i1, i2, i3);
        float scale = 1.0f;
        if (a->norm) scale = qn_norm_scale(QN_NORM_RMS, qn_cpu_row_sumsq(x, a->x.nb[0], a->x.dtype, 0.0f, n), n, a->eps);
        /* positions of this token: one, or one per section */
        int p[4] = {0, 0, 0, 0};
        int nsec = a->r.mode == QN_ROPE_K_NORMAL || a->r.mode == QN_ROPE_K_NEOX ? 1 : 4;
        for (int s = 0; s < nsec; s++) p[s] = *(const int *)qn_kt_at(&a->pos, i2 + s * n_tokens, 0, 0, 0);
        /* element value after the optional norm */
#define VAL(i)                                                                                                   \
    (qn_load_f32(x + (i) * a->x.nb[0], a->x.dtype) * scale *                                                     \
     (a->has_w ? qn_load_f32(qn_kt_at(&a->w, (i), 0, 0, 0), a->w.dtype) + a->w_off : 1.0f))
        for (int i = 0; i < npairs; i++) {
            int ia, ib;
            qn_rope_pair(&a->r, i, &ia, &ib);
            float ff = a->has_ff ? qn_load_f32(qn_kt_at(&a->ff, i, 0, 0, 0), QN_KT_F32) : 1.0f;
            float c, s;
            qn_rope_cs(&a->r, i, p, ff, &c, &s);
            float x0 = VAL(ia), x1 = VAL(ib);
            qn_store_f32(d + ia * a->dst.nb[0], a->dst.dtype, x0 * c - x1 * s);
            qn_store_f32(d + ib * a->dst.nb[0], a->dst.dtype, x0 * s + x1 * c);
        }
        for (long long i = 2 * npairs; i < n; i++) qn_store_f32(d + i * a->dst.nb[0], a->dst.dtype, VAL(i));
#undef VAL
    }
}

void qn_cpu_rope(qn_device *dev, const void *args) {
    const qn_rope_args *a = args;
    qn_cpu_parallel_for(dev, qn_kt_rows(&a->x), rope_rows, (void *)a);
}
