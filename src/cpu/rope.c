/* CPU reference of RoPE (and of the fused per-head RMS norm + RoPE, and of
 * the norm + RoPE of q and k with the K and V cache append): each row (a
 * head of a token) is rotated pair by pair; rows split across threads. */
#include "cpu/attention.h"
#include "cpu/transformer_ops.h"

/* Head i1 of token i2 of a->x, normed (with a->norm) and rotated into the
 * row d (dtype dt, element stride dnb0). */
static void rope_row(const qn_rope_args *a, long long i1, long long i2, long long i3, char *d, long long dnb0, int dt) {
    long long n = a->x.ne[0], n_tokens = a->x.ne[2];
    int npairs = qn_rope_npairs(&a->r);
    const char *x = qn_kt_at(&a->x, 0, i1, i2, i3);
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
        qn_store_f32(d + ia * dnb0, dt, x0 * c - x1 * s);
        qn_store_f32(d + ib * dnb0, dt, x0 * s + x1 * c);
    }
    for (long long i = 2 * npairs; i < n; i++) qn_store_f32(d + i * dnb0, dt, VAL(i));
#undef VAL
}

static void rope_rows(void *ctx, int64_t begin, int64_t end) {
    const qn_rope_args *a = ctx;
    for (int64_t r = begin; r < end; r++) {
        long long i1, i2, i3;
        qn_kt_row(&a->x, r, &i1, &i2, &i3);
        char *d = a->dst_cache ? qn_kv_row(&a->dst, qn_attn_p0(&a->pos), i2, i1) : qn_kt_at(&a->dst, 0, i1, i2, i3);
        rope_row(a, i1, i2, i3, d, a->dst.nb[0], a->dst.dtype);
    }
}

void qn_cpu_rope(qn_device *dev, const void *args) {
    const qn_rope_args *a = args;
    qn_cpu_parallel_for(dev, qn_kt_rows(&a->x), rope_rows, (void *)a);
}

/* Row r of the fused op: head b = r % (H + 2 Hkv) of token r / (H + 2 Hkv),
 * where heads 0..H-1 are q's, then k's, then v's. */
static void rope_qkv_rows(void *ctx, int64_t begin, int64_t end) {
    const qn_rope_qkv_args *a = ctx;
    const long long H = a->q.x.ne[1], Hkv = a->k.x.ne[1], d = a->k.x.ne[0];
    const int p0 = qn_attn_p0(&a->k.pos);
    const qn_kt *kc = &a->k.dst;
    for (int64_t r = begin; r < end; r++) {
        const long long b = r % (H + 2 * Hkv), t = r / (H + 2 * Hkv);
        if (b < H) {
            rope_row(&a->q, b, t, 0, qn_kt_at(&a->q.dst, 0, b, t, 0), a->q.dst.nb[0], a->q.dst.dtype);
        } else if (b < H + Hkv && kc->dtype != QN_KT_Q8_0) {
            rope_row(&a->k, b - H, t, 0, qn_kv_row(kc, p0, t, b - H), kc->nb[0], kc->dtype);
        } else if (b < H + Hkv) { /* q8_0 rounds a block of 32 at once: rotate the row first */
            float row[QN_ROPE_QKV_Q8_MAX_D];
            rope_row(&a->k, b - H, t, 0, (char *)row, sizeof *row, QN_KT_F32);
            qn_cpu_kv_append_row(qn_kv_row(kc, p0, t, b - H), kc->dtype, kc->nb[0], (const char *)row, sizeof *row,
                                 QN_KT_F32, d);
        } else {
            const long long h = b - H - Hkv;
            qn_cpu_kv_append_row(qn_kv_row(&a->v_cache, p0, t, h), a->v_cache.dtype, a->v_cache.nb[0],
                                 qn_kt_at(&a->v, 0, h, t, 0), a->v.nb[0], a->v.dtype, d);
        }
    }
}

void qn_cpu_rope_qkv(qn_device *dev, const void *args) {
    const qn_rope_qkv_args *a = args;
    qn_cpu_parallel_for(dev, (a->q.x.ne[1] + 2 * a->k.x.ne[1]) * a->q.x.ne[2], rope_qkv_rows, (void *)a);
}
