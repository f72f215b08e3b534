/* Benchmark of the transformer ops (family "ops"): norms, RoPE, activations,
 * softmax, embedding, routing and sampling, on decode (1 token) and
 * prefill (512 tokens) shapes of an 8B-class model (hidden 4096, 32 heads
 * of 128, feed-forward 14336) and a 262144 vocabulary.
 *
 * Each op is captured 50 times into a graph and replayed (best of 5), so
 * the time is device time per op plus a graph node's overhead (about 1 us
 * on an H100). Bytes count each input read once and each output written
 * once; GB/s is set against the streaming-read ceiling measured in the same
 * process (bench/common.c). The fused forms are timed
 * beside the ops they replace. llama.cpp's per-op figures for these ops are
 * not in the anchors yet, so the last column is empty. */
#include "bench.h"
#include "cli.h"
#include "cuda/cuda.h"

#include <stdio.h>
#include <stdlib.h>

#define REPS 50

/* ---- the cases: buffers made once, then each op as a closure over them */

enum { HID = 4096, HEADS = 32, HD = 128, FF = 14336, VOCAB = 262144, EXPERTS = 128, TOPK = 8 };

typedef struct {
    int64_t tokens;
    qn_buffer *x, *y, *sum, *w, *q, *q2, *pos, *ffn, *ffo, *att, *att_o, *logits, *ids, *wts, *tok, *ctr, *table,
        *emb, *tid;
} bufs;

static qn_tensor T(qn_buffer *b) { return qn_tensor_of(b); }

static qn_status op_rms(qn_encoder *e, const void *c, int i) {
    const bufs *b = c;
    (void)i;
    return qn_rms_norm(e, T(b->y), T(b->x), T(b->w), 1e-6f, 0.0f);
}
static qn_status op_add(qn_encoder *e, const void *c, int i) {
    const bufs *b = c;
    (void)i;
    return qn_add(e, T(b->sum), T(b->sum), T(b->x));
}
static qn_status op_add_rms(qn_encoder *e, const void *c, int i) {
    const bufs *b = c;
    (void)i;
    return qn_add_rms_norm(e, T(b->y), T(b->sum), T(b->sum), T(b->x), T(b->w), 1e-6f, 0.0f);
}
static qn_status op_rope(qn_encoder *e, const void *c, int i) {
    const bufs *b = c;
    (void)i;
    qn_rope_params p = qn_rope_params_default(QN_ROPE_NEOX, HD, 5e5f);
    return qn_rope(e, T(b->q2), T(b->q), T(b->pos), QN_TENSOR_NONE, &p);
}
static qn_status op_head_norm(qn_encoder *e, const void *c, int i) {
    const bufs *b = c;
    (void)i;
    return qn_rms_norm(e, T(b->q2), T(b->q), QN_TENSOR_NONE, 1e-6f, 0.0f);
}
static qn_status op_norm_rope(qn_encoder *e, const void *c, int i) {
    const bufs *b = c;
    (void)i;
    qn_rope_params p = qn_rope_params_default(QN_ROPE_NEOX, HD, 5e5f);
    return qn_rms_norm_rope(e, T(b->q2), T(b->q), QN_TENSOR_NONE, 1e-6f, 0.0f, T(b->pos), QN_TENSOR_NONE, &p);
}
static qn_status op_swiglu(qn_encoder *e, const void *c, int i) {
    const bufs *b = c;
    (void)i;
    return qn_glu_fused(e, T(b->ffo), T(b->ffn), QN_ACT_SILU);
}
static qn_status op_softmax(qn_encoder *e, const void *c, int i) {
    const bufs *b = c;
    (void)i;
    return qn_softmax(e, T(b->att_o), T(b->att), QN_TENSOR_NONE, 0.088f);
}
static qn_status op_embed(qn_encoder *e, const void *c, int i) {
    const bufs *b = c;
    (void)i;
    return qn_embed(e, T(b->emb), T(b->table), T(b->tid), 45.25f);
}
static qn_status op_route(qn_encoder *e, const void *c, int i) {
    const bufs *b = c;
    (void)i;
    qn_moe_route_params p = {TOPK, QN_MOE_SOFTMAX, true, 1.0f};
    qn_tensor lg = qn_tensor_make(b->logits, 0, QN_F32, EXPERTS, b->tokens, 1, 1);
    return qn_moe_route(e, T(b->ids), T(b->wts), lg, QN_TENSOR_NONE, QN_TENSOR_NONE, &p);
}
static qn_status op_greedy(qn_encoder *e, const void *c, int i) {
    const bufs *b = c;
    (void)i;
    qn_sample_params p = {0.0f, 0, 1.0f, 0.0f, 1.0f, 1};
    return qn_sample(e, T(b->tok), QN_TENSOR_NONE, qn_tensor_make(b->logits, 0, QN_F32, VOCAB, 1, 1, 1), QN_TENSOR_NONE,
                     QN_TENSOR_NONE, &p);
}
static qn_status op_topk(qn_encoder *e, const void *c, int i) {
    const bufs *b = c;
    (void)i;
    qn_sample_params p = {0.8f, 40, 0.95f, 0.05f, 1.0f, 1};
    return qn_sample(e, T(b->tok), QN_TENSOR_NONE, qn_tensor_make(b->logits, 0, QN_F32, VOCAB, 1, 1, 1), QN_TENSOR_NONE,
                     T(b->ctr), &p);
}

static void free_bufs(bufs *b) {
    qn_buffer *all[] = {b->x,   b->y,     b->sum,   b->w,   b->q,   b->q2,  b->pos,   b->ffn,  b->ffo,  b->att,
                        b->att_o, b->logits, b->ids, b->wts, b->tok, b->ctr, b->table, b->emb, b->tid};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) qn_buffer_free(all[i]);
}

/* Random-ish contents (not zeros, which can run faster). */
static qn_status fill_noise(qn_buffer *b) {
    size_t n = qn_buffer_bytes(b);
    unsigned char *h = malloc(n);
    if (!h) return QN_ERR_OUT_OF_MEMORY;
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        h[i] = (unsigned char)(x >> 24);
    }
    if (qn_buffer_dtype(b) == QN_F32) /* finite floats in about [-2, 2] */
        for (size_t i = 0; i + 3 < n; i += 4) h[i + 3] = (unsigned char)((h[i + 3] & 0x80) | 0x3f), h[i + 2] &= 0x7f;
    if (qn_buffer_dtype(b) == QN_F16)
        for (size_t i = 0; i + 1 < n; i += 2) h[i + 1] = (unsigned char)((h[i + 1] & 0x83) | 0x38);
    if (qn_buffer_dtype(b) == QN_I32)
        for (size_t i = 0; i + 3 < n; i += 4) h[i + 3] = 0, h[i + 2] &= 0x03; /* ids below 262144 */
    qn_status s = qn_buffer_write(b, 0, h, n);
    free(h);
    return s;
}

static qn_status make_bufs(qn_device *dev, int64_t tokens, bufs *b) {
    struct {
        qn_buffer **out;
        qn_dtype t;
        int64_t ne0, ne1, ne2;
    } spec[] = {
        {&b->x, QN_F32, HID, tokens, 1},          {&b->y, QN_F32, HID, tokens, 1},
        {&b->sum, QN_F32, HID, tokens, 1},        {&b->w, QN_F32, HID, 1, 1},
        {&b->q, QN_F16, HD, HEADS, tokens},       {&b->q2, QN_F16, HD, HEADS, tokens},
        {&b->pos, QN_I32, tokens, 1, 1},          {&b->ffn, QN_F16, 2 * FF, tokens, 1},
        {&b->ffo, QN_F16, FF, tokens, 1},         {&b->att, QN_F32, 4096, HEADS * (tokens < 16 ? tokens : 16), 1},
        {&b->att_o, QN_F32, 4096, HEADS * (tokens < 16 ? tokens : 16), 1},
        {&b->logits, QN_F32, VOCAB, 1, 1},        {&b->ids, QN_I32, TOPK, tokens, 1},
        {&b->wts, QN_F32, TOPK, tokens, 1},       {&b->tok, QN_I32, 1, 1, 1},
        {&b->ctr, QN_I32, 1, 1, 1},               {&b->table, QN_Q8_0, 640, VOCAB, 1},
        {&b->emb, QN_F32, 640, tokens, 1},        {&b->tid, QN_I32, tokens, 1, 1},
    };
    b->tokens = tokens;
    qn_status s = QN_OK;
    for (size_t i = 0; i < sizeof spec / sizeof spec[0] && s == QN_OK; i++) {
        int64_t ne[3] = {spec[i].ne0, spec[i].ne1, spec[i].ne2};
        s = qn_buffer_alloc(dev, spec[i].t, 3, ne, spec[i].out);
        if (s == QN_OK) s = fill_noise(*spec[i].out);
    }
    return s;
}

int qn_bench_ops(qn_device *dev, const qn_bench_opts *opts) {
    (void)opts;
    if (qn_bench_gpu_only(dev)) return 0;
    qn_encoder *enc;
    double ceiling;
    if (qn_bench_start(dev, &enc, &ceiling)) return 1;
    qn_status s = QN_OK;
    printf("%-46s %9s %8s %8s | %s\n", "op", "us", "GB/s", "ceiling", "llama.cpp (H100)");
    const int64_t token_counts[2] = {1, 512};
    int rc = 0;
    for (int k = 0; k < 2 && rc == 0; k++) {
        int64_t t = token_counts[k];
        double att_rows = HEADS * (double)(t < 16 ? t : 16);
        const struct {
            const char *name;
            qn_bench_fn fn;
            double bytes;
        } cases[] = {
            {"rms_norm f32 [4096]", op_rms, 8.0 * HID * t + 4.0 * HID},
            {"add f32 [4096] (unfused residual)", op_add, 12.0 * HID * t},
            {"add_rms_norm f32 [4096] (fused add + norm)", op_add_rms, 16.0 * HID * t + 4.0 * HID},
            {"rope neox f16 [128 x 32 heads]", op_rope, 4.0 * HD * HEADS * t + 4.0 * t},
            {"rms_norm f16 per head [128 x 32]", op_head_norm, 4.0 * HD * HEADS * t},
            {"rms_norm_rope f16 [128 x 32] (fused)", op_norm_rope, 4.0 * HD * HEADS * t + 4.0 * t},
            {"swiglu fused f16 [2 x 14336]", op_swiglu, 6.0 * FF * t},
            {"softmax f32 [4096 x rows]", op_softmax, 8.0 * 4096 * att_rows},
            {"embed q8_0 [640] rows of 262144", op_embed, (34.0 / 32 * 640 + 4.0 * 640 + 4) * t},
            {"moe_route softmax 128 experts top 8", op_route, (4.0 * EXPERTS + 8.0 * TOPK) * t},
            {"sample greedy, vocab 262144 (one row)", op_greedy, 4.0 * VOCAB},
            {"sample top_k 40 top_p min_p, vocab 262144", op_topk, 4.0 * VOCAB},
        };
        bufs b = {0};
        s = make_bufs(dev, t, &b);
        printf("-- %lld token%s\n", (long long)t, t == 1 ? "" : "s");
        for (size_t i = 0; i < sizeof cases / sizeof cases[0] && s == QN_OK; i++) {
            if (t > 1 && (cases[i].fn == op_greedy || cases[i].fn == op_topk)) continue;
            double us;
            s = qn_bench_time_graph(enc, cases[i].fn, &b, REPS, &us);
            if (s != QN_OK) {
                rc = qn_cli_fail(cases[i].name, s);
                break;
            }
            double gbs = cases[i].bytes / us / 1e3;
            printf("%-46s %9.2f %8.0f %7.1f%% | no anchor\n", cases[i].name, us, gbs, 100.0 * gbs / ceiling);
        }
        if (s != QN_OK && rc == 0) rc = qn_cli_fail("allocating", s);
        free_bufs(&b);
    }
    qn_encoder_destroy(enc);
    return rc;
}
