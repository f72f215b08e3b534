/* Flash attention on the GPU, beside llama.cpp's CUDA backend on the same
 * shapes (ANCHORS.md, H100).
 *
 * attn-decode: one query token over an f16 cache of 4096 and 32768 keys,
 *   head 256 (8 query / 4 kv heads) and head 128 (32 / 8). Bytes: K and V
 *   of the visible keys read once, 2 * keys * head_dim * 2 * kv_heads, as
 *   llama.cpp counts them; shown as TB/s and as a fraction of the read
 *   ceiling measured here, in the same process: a kernel streaming 1 GiB
 *   with 16-byte loads. Then a small model's decode (Gemma 3 270M: head
 *   256, 4 query heads over 1 kv head): global layers (causal) with 128 and
 *   512 keys in a cache of capacity 4096 and 300 keys in one of 32768; local
 *   layers (a window of 512 over a ring of 1023 rows, as the model sizes
 *   it) at position 127 (128 keys) and 5000 (512 keys, the ring wrapped);
 *   no llama.cpp figure, the target is 4 us.
 * attn-prefill: 512 queries after 3584 cached positions (4096 keys), head
 *   256, 8 / 4 heads, f16: causal, and without a mask. FLOPs counted as
 *   llama.cpp counts them, 4 * 512 * 4096 * 256 * 8, for both.
 *
 * Each op is captured 50 times in a graph; the time is the best replay of
 * five divided by 50 (so launch costs are not counted, as a model's graph
 * replay does not pay them), after half a second of warm-up. */
#include "bench.h"
#include "cli.h"
#include "cuda/cuda.h"

#include <stdlib.h>

#define REPS 50

typedef struct {
    qn_buffer *q, *out, *k, *v, *pos, *scratch;
    qn_attn_opts opts;
    bool prefill;
} attn_op;

static qn_status run_op(qn_encoder *enc, const attn_op *a) {
    qn_tensor s = a->scratch ? qn_tensor_of(a->scratch) : (qn_tensor){0};
    return (a->prefill ? qn_flash_attn_prefill : qn_flash_attn_decode)(
        enc, qn_tensor_of(a->out), qn_tensor_of(a->q), qn_tensor_of(a->k), qn_tensor_of(a->v), qn_tensor_of(a->pos),
        NULL, a->scratch ? &s : NULL, a->opts);
}

static void free_op(attn_op *a) {
    qn_buffer_free(a->q);
    qn_buffer_free(a->out);
    qn_buffer_free(a->k);
    qn_buffer_free(a->v);
    qn_buffer_free(a->pos);
    qn_buffer_free(a->scratch);
}

/* Random-looking values (zeros can run faster), as f16 or f32 bits. */
static void *noise(size_t n, bool half, uint32_t seed) {
    void *p = malloc(n * (half ? 2 : 4));
    for (size_t i = 0; p && i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        const float x = (float)(seed >> 8) / 16777216.0f - 0.5f;
        if (half) ((uint16_t *)p)[i] = qn_f32_to_f16(x);
        else ((float *)p)[i] = x;
    }
    return p;
}

/* q [d, hq, n] and an f16 cache [d, cap, hkv] whose newest position is
 * p0 + n - 1 (every row written, as a cache that has wrapped). */
static qn_status make_op(qn_device *dev, int64_t d, int64_t hq, int64_t hkv, int64_t n, int64_t cap, int32_t p0,
                         bool prefill, qn_attn_mask mask, int32_t window, attn_op *a) {
    *a = (attn_op){.opts = {1.0f / 16.0f, 0.0f, mask, window}, .prefill = prefill};
    const int64_t nq = d * hq * n, nkv = d * cap * hkv;
    void *hq_ = noise((size_t)nq, false, 1), *hk = noise((size_t)nkv, true, 2), *hv = noise((size_t)nkv, true, 3);
    qn_status s = hq_ && hk && hv ? QN_OK : QN_ERR_OUT_OF_MEMORY;
    if (s == QN_OK) s = qn_buffer_alloc(dev, QN_F32, 3, (int64_t[]){d, hq, n}, &a->q);
    if (s == QN_OK) s = qn_buffer_alloc(dev, QN_F32, 3, (int64_t[]){d, hq, n}, &a->out);
    if (s == QN_OK) s = qn_buffer_alloc(dev, QN_F16, 3, (int64_t[]){d, cap, hkv}, &a->k);
    if (s == QN_OK) s = qn_buffer_alloc(dev, QN_F16, 3, (int64_t[]){d, cap, hkv}, &a->v);
    if (s == QN_OK) s = qn_buffer_alloc(dev, QN_I32, 1, (int64_t[]){1}, &a->pos);
    if (s == QN_OK) s = qn_buffer_write(a->q, 0, hq_, (size_t)nq * 4);
    if (s == QN_OK) s = qn_buffer_write(a->k, 0, hk, (size_t)nkv * 2);
    if (s == QN_OK) s = qn_buffer_write(a->v, 0, hv, (size_t)nkv * 2);
    if (s == QN_OK) s = qn_buffer_write(a->pos, 0, &p0, 4);
    int64_t elems = 0;
    if (s == QN_OK) s = qn_flash_attn_scratch(dev, prefill, qn_tensor_of(a->q), qn_tensor_of(a->k), &elems);
    if (s == QN_OK && elems > 0) s = qn_buffer_alloc(dev, QN_F32, 1, (int64_t[]){elems}, &a->scratch);
    free(hq_);
    free(hk);
    free(hv);
    return s;
}

static qn_status op_once(qn_encoder *enc, const void *arg, int i) {
    (void)i;
    return run_op(enc, arg);
}


int qn_bench_attn_decode(qn_device *dev, const qn_bench_opts *opts) {
    if (qn_bench_gpu_only(dev)) return 0;
    static const struct {
        const char *name;
        int64_t d, hq, hkv, cap, keys; /* keys: visible, ending at the newest position */
        int32_t p0, window;             /* window 0: causal */
        double llama_us, llama_tbs;
        int llama_pct;
    } cases[] = {
        {"head 256, 8/4 heads, 4096 keys", 256, 8, 4, 4096, 4096, 4095, 0, 12.37, 1.36, 44},
        {"head 128, 32/8 heads, 4096 keys", 128, 32, 8, 4096, 4096, 4095, 0, 14.04, 1.19, 38},
        {"head 256, 8/4 heads, 32768 keys", 256, 8, 4, 32768, 32768, 32767, 0, 54.75, 2.45, 79},
        {"head 128, 32/8 heads, 32768 keys", 128, 32, 8, 32768, 32768, 32767, 0, 69.51, 1.93, 62},
        {"head 256, 4/1, 128 keys, capacity 4096", 256, 4, 1, 4096, 128, 127, 0, 0, 0, 0},
        {"head 256, 4/1, 512 keys, capacity 4096", 256, 4, 1, 4096, 512, 511, 0, 0, 0, 0},
        {"head 256, 4/1, 300 keys, capacity 32768", 256, 4, 1, 32768, 300, 299, 0, 0, 0, 0},
        {"head 256, 4/1, window 512, ring 1023, 128 keys", 256, 4, 1, 1023, 128, 127, 512, 0, 0, 0},
        {"head 256, 4/1, window 512, ring 1023, 512 keys", 256, 4, 1, 1023, 512, 5000, 512, 0, 0, 0},
    };
    qn_encoder *enc;
    double ceiling;
    if (qn_bench_start(dev, &enc, &ceiling)) return 1;
    qn_status s = QN_OK;
    printf("%-48s %9s %8s %8s | %s\n", "decode, 1 token, f16 K/V", "us", "TB/s", "ceiling", "llama.cpp (H100)");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0] && s == QN_OK; i++) {
        attn_op a;
        double us = 0.0;
        s = make_op(dev, cases[i].d, cases[i].hq, cases[i].hkv, 1, cases[i].cap, cases[i].p0, false,
                    cases[i].window ? QN_ATTN_MASK_WINDOW : QN_ATTN_MASK_CAUSAL, cases[i].window, &a);
        if (s == QN_OK) s = qn_bench_time_graph(enc, op_once, &a, REPS, &us);
        if (s == QN_OK && opts->profile) s = qn_bench_profile(enc, op_once, &a);
        free_op(&a);
        if (s != QN_OK) break;
        const double bytes = 2.0 * (double)cases[i].keys * (double)cases[i].d * 2.0 * (double)cases[i].hkv;
        printf("%-48s %9.2f %8.2f %7.1f%% | ", cases[i].name, us, bytes / us / 1e6, 100.0 * bytes / us / 1e3 / ceiling);
        if (cases[i].llama_us > 0)
            printf("%.2f us, %.2f TB/s (%d%%)\n", cases[i].llama_us, cases[i].llama_tbs, cases[i].llama_pct);
        else
            printf("small-model decode: 4 us wanted\n");
    }
    qn_encoder_destroy(enc);
    return s == QN_OK ? 0 : qn_cli_fail("attention decode", s);
}

int qn_bench_attn_prefill(qn_device *dev, const qn_bench_opts *opts) {
    if (qn_bench_gpu_only(dev)) return 0;
    const double flops = 4.0 * 512 * 4096 * 256 * 8, llama_us = 92.36;
    qn_encoder *enc;
    qn_status s = qn_encoder_create(dev, &enc);
    printf("%-44s %9s %8s | %s\n", "prefill f16, head 256, 8/4 heads", "us", "TFLOP/s",
           "llama.cpp (H100): 92.36 us, 186 TFLOP/s");
    for (int m = 0; m < 2 && s == QN_OK; m++) {
        attn_op a;
        double us = 0.0;
        s = make_op(dev, 256, 8, 4, 512, 4096, 3584, true, m ? QN_ATTN_MASK_NONE : QN_ATTN_MASK_CAUSAL, 0, &a);
        if (s == QN_OK) s = qn_bench_time_graph(enc, op_once, &a, REPS, &us);
        if (s == QN_OK && opts->profile) s = qn_bench_profile(enc, op_once, &a);
        free_op(&a);
        if (s == QN_OK)
            printf("%-44s %9.2f %8.1f | %.2fx llama.cpp\n",
                   m ? "512 queries x 4096 keys, no mask" : "512 queries at 3584.., causal", us, flops / us / 1e6,
                   llama_us / us);
    }
    qn_encoder_destroy(enc);
    return s == QN_OK ? 0 : qn_cli_fail("attention prefill", s);
}
