/* CPU kernel of flash attention (decode and prefill): each query row (token,
 * head) on its own, an online softmax over its visible keys in double, K and
 * V rows converted to f32 exactly as the GPU converts them. */
#include "cpu/attention.h"

#include <math.h>
#include <string.h>

#define MAX_HEAD_DIM 512

/* Row `row` of kv head h of a cache, as floats. */
static void load_row(const qn_kt *t, long long row, long long h, float *out) {
    const char *base = qn_kt_at(t, 0, row, h, 0);
    if (t->dtype != QN_KT_Q8_0) {
        for (long long i = 0; i < t->ne[0]; i++) out[i] = qn_load_f32(base + i * t->nb[0], t->dtype);
        return;
    }
    for (long long b = 0; b < t->ne[0] / 32; b++) {
        const char *blk = base + b * t->nb[0];
        qn_u16 d_bits;
        memcpy(&d_bits, blk, 2);
        const float d = qn_f16_bits_to_f32(d_bits);
        for (int i = 0; i < 32; i++) out[b * 32 + i] = d * (float)(signed char)blk[2 + i];
    }
}

static void attn_rows(void *ctx, int64_t begin, int64_t end) {
    const qn_flash_attn_args *a = ctx;
    const qn_attn_params *p = &a->p;
    const int d = p->head_dim, p0 = qn_attn_p0(&a->pos);
    float kf[MAX_HEAD_DIM], vf[MAX_HEAD_DIM];
    double acc[MAX_HEAD_DIM];
    for (int64_t r = begin; r < end; r++) {
        const int t = (int)(r / p->n_q_heads), h = (int)(r % p->n_q_heads), kvh = h / p->group;
        const float *q = (const float *)qn_kt_at(&a->q, 0, h, t, 0);
        int lo, hi;
        qn_attn_keys(p, p0, t, &lo, &hi);
        double m = -INFINITY, l = 0.0;
        for (int i = 0; i < d; i++) acc[i] = 0.0;
        for (int j = lo; j < hi; j++) {
            const long long row = j % p->capacity;
            load_row(&a->k, row, kvh, kf);
            double x = 0.0;
            for (int i = 0; i < d; i++) x += (double)q[i] * kf[i];
            x *= p->scale;
            if (p->softcap > 0.0f) x = p->softcap * tanh(x / p->softcap);
            if (x > m) { /* rescale what was summed against the old maximum */
                const double corr = exp(m - x);
                l *= corr;
                for (int i = 0; i < d; i++) acc[i] *= corr;
                m = x;
            }
            const double w = exp(x - m);
            l += w;
            load_row(&a->v, row, kvh, vf);
            for (int i = 0; i < d; i++) acc[i] += w * vf[i];
        }
        if (a->sinks.addr && hi > lo) l += exp(*(const float *)qn_kt_at(&a->sinks, h, 0, 0, 0) - m);
        float *o = (float *)qn_kt_at(&a->out, 0, h, t, 0);
        for (int i = 0; i < d; i++) o[i] = l > 0.0 ? (float)(acc[i] / l) : 0.0f;
    }
}

void qn_cpu_flash_attn(qn_device *dev, const void *args) {
    const qn_flash_attn_args *a = args;
    qn_cpu_parallel_for(dev, (int64_t)a->p.n_tokens * a->p.n_q_heads, attn_rows, (void *)a);
}
