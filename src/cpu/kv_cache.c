/* CPU kernel of the KV cache append: each (token, kv head) row converted
 * into cache row (p0 + t) % capacity, with the same row body (f16, bf16) and
 * q8_0 rounding (attention_common.cuh) as the CUDA kernel, so the bytes
 * match. */
#include "cpu/attention.h"

void qn_cpu_kv_append_row(char *dst, int ct, long long cnb0, const char *s, long long snb0, int st, long long d) {
    if (ct != QN_KT_Q8_0) {
        qn_row_convert(dst, cnb0, ct, s, snb0, st, 0, d, 1);
        return;
    }
    for (long long b = 0; b < d / 32; b++) {
        float x[32], amax = 0.0f;
        for (int i = 0; i < 32; i++) {
            x[i] = qn_load_f32(s + (b * 32 + i) * snb0, st);
            amax = fmaxf(amax, fabsf(x[i]));
        }
        qn_u16 d_bits;
        const float inv = qn_q8_0_inverse(amax, &d_bits);
        char *blk = dst + b * cnb0;
        memcpy(blk, &d_bits, 2);
        for (int i = 0; i < 32; i++) blk[2 + i] = qn_q8_0_round(x[i], inv);
    }
}

static void append_rows(void *ctx, int64_t begin, int64_t end) {
    const qn_kv_append_args *a = ctx;
    const int p0 = qn_attn_p0(&a->pos);
    for (int64_t r = begin; r < end; r++) {
        const long long h = r % a->src.ne[1], t = r / a->src.ne[1];
        qn_cpu_kv_append_row(qn_kv_row(&a->cache, p0, t, h), a->cache.dtype, a->cache.nb[0],
                             qn_kt_at(&a->src, 0, h, t, 0), a->src.nb[0], a->src.dtype, a->cache.ne[0]);
    }
}

void qn_cpu_kv_append(qn_device *dev, const void *args) {
    const qn_kv_append_args *a = args;
    qn_cpu_parallel_for(dev, a->src.ne[1] * a->src.ne[2], append_rows, (void *)a);
}
