/* Benchmark of the transformer ops (family "ops"): norms, RoPE, activations,
 * softmax, embedding, routing and sampling, on decode (1 token) and
 * prefill (512 tokens) shapes of an 8B-class model (hidden 4096, 32 heads
 * of 128, feed-forward 14336), the 640-wide norms of Gemma 3 270M and a
 * 262144 vocabulary.
 *
 * Each op is captured many times into a graph and replayed (best of 5), so
 * the time is device time per op plus a graph node's overhead (about 1 us
 * on an H100). Every input and output lives in as many copies as it takes
 * to span twice the L2 (up to 8192 copies), and call i of the graph uses
 * copy i of each, with enough calls (up to 8192) that the graph touches
 * twice the L2 too (the "MB" column; at least the L2 for the smallest
 * ops): every call reads from memory, as a decode step reads weights it
 * last touched a token ago. The one-token ops are timed once more on one
 * copy for every call ("L2-hot"), as a decode step finds the activations the
 * previous op just wrote (the logits, for sampling). Bytes count each input
 * read once and each output written once; GB/s is set against the
 * streaming-read ceiling measured in the same process (bench/common.c).
 * The fused forms are timed beside the ops they replace: among them what
 * follows the q/k/v projections of Gemma 3 270M (q and k per-head RMS
 * norm + NeoX RoPE, k and v appended to f16 caches; head 256, 4 q heads,
 * 1 kv head; q, k and v interleaved per token in one f32 buffer as the
 * model's stacked projection writes them) as one op and as the three ops
 * it replaces, in one graph node each vs three. llama.cpp's
 * per-op figures for these ops are not in the anchors yet. */
#include "bench.h"
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { HID = 4096, SMALL = 640, HEADS = 32, HD = 128, FF = 14336, VOCAB = 262144, EXPERTS = 128, TOPK = 8 };
enum { MAX_COPIES = 8192, MIN_REPS = 50, WINDOW = 64 };
/* Gemma 3 270M's attention: head, q heads, kv heads; a cache of CAP rows. */
enum { GD = 256, GH = 4, GHKV = 1, CAP = 1024 };

/* The tensors the ops take, each in copies. */
enum { X, Y, SUM, W, Q, Q2, POS, FFN, FFO, ATT, ATT_O, LOGITS, IDS, WTS, TOK, CTR, RECENT, TABLE, EMB, TID, QKV, KC, VC,
       NROLES };

typedef struct {
    qn_buffer *buf;
    qn_dtype t;
    int64_t ne[3];
    size_t bytes; /* one copy */
    int copies;
} role;

typedef struct {
    role r[NROLES];
    int64_t tokens;
    int hot; /* every call on copy 0 */
} bufs;

/* Copy i of a tensor (copy 0 when hot), as [ne0, ne1, ne2] (a smaller
 * shape for the 640-wide norms and the router's logits). */
static qn_tensor view(const bufs *b, int which, int i, int64_t ne0, int64_t ne1, int64_t ne2) {
    const role *r = &b->r[which];
    int c = b->hot ? 0 : i % r->copies;
    return qn_tensor_make(r->buf, (size_t)c * r->bytes, r->t, ne0, ne1, ne2, 1);
}

static qn_tensor R(const bufs *b, int which, int i) {
    const role *r = &b->r[which];
    return view(b, which, i, r->ne[0], r->ne[1], r->ne[2]);
}

static qn_tensor narrow(const bufs *b, int which, int i) { return view(b, which, i, SMALL, b->r[which].ne[1], 1); }

static qn_status op_rms(qn_encoder *e, const void *c, int i) {
    const bufs *b = c;
    return qn_rms_norm(e, R(b, Y, i), R(b, X, i), R(b, W, i), 1e-6f, 0.0f);
}
static qn_status op_rms_small(qn_encoder *e, const void *c, int i) {
    const bufs *b = c;
    return qn_rms_norm(e, narrow(b, Y, i), narrow(b, X, i), narrow(b, W, i), 1e-6f, 1.0f);
}
static qn_status op_add(qn_encoder *e, const void *c, int i) {
    const bufs *b = c;
    return qn_add(e, R(b, SUM, i), R(b, SUM, i), R(b, X, i));
}
static qn_status op_add_rms(qn_encoder *e, const void *c, int i) {
    const bufs *b = c;
    return qn_add_rms_norm(e, R(b, Y, i), R(b, SUM, i), R(b, SUM, i), R(b, X, i), R(b, W, i), 1e-6f, 0.0f);
}
static qn_status op_add_rms_small(qn_encoder *e, const void *c, int i) {
    const bufs *b = c;
    qn_tensor s = narrow(b, SUM, i);
    return qn_add_rms_norm(e, narrow(b, Y, i), s, s, narrow(b, X, i), narrow(b, W, i), 1e-6f,
                           1.0f);
}
static qn_status op_rope(qn_encoder *e, const void *c, int i) {
    const bufs *b = c;
    qn_rope_params p = qn_rope_params_default(QN_ROPE_NEOX, HD, 5e5f);
    return qn_rope(e, R(b, Q2, i), R(b, Q, i), R(b, POS, i), QN_TENSOR_NONE, &p);
}
static qn_status op_head_norm(qn_encoder *e, const void *c, int i) {
    const bufs *b = c;
    return qn_rms_norm(e, R(b, Q2, i), R(b, Q, i), QN_TENSOR_NONE, 1e-6f, 0.0f);
}
static qn_status op_norm_rope(qn_encoder *e, const void *c, int i) {
    const bufs *b = c;
    qn_rope_params p = qn_rope_params_default(QN_ROPE_NEOX, HD, 5e5f);
    return qn_rms_norm_rope(e, R(b, Q2, i), R(b, Q, i), QN_TENSOR_NONE, 1e-6f, 0.0f, R(b, POS, i), QN_TENSOR_NONE,
                            &p);
}
/* Gemma's q, k or v heads (first..first + heads) of each token's row of QKV. */
static qn_tensor gemma_heads(const bufs *b, int i, int64_t first, int64_t heads) {
    qn_tensor t = view(b, QKV, i, GD, heads, b->tokens);
    t.offset += (size_t)(first * GD) * sizeof(float);
    t.nb[2] = (GH + 2 * GHKV) * GD * (int64_t)sizeof(float);
    t.nb[3] = t.nb[2] * b->tokens;
    return t;
}
static qn_status op_qkv_three(qn_encoder *e, const void *c, int i) {
    const bufs *b = c;
    qn_rope_params p = qn_rope_params_default(QN_ROPE_NEOX, GD, 1e6f);
    qn_tensor q = gemma_heads(b, i, 0, GH), w = view(b, W, i, GD, 1, 1), pos = R(b, POS, i);
    qn_status s = qn_rms_norm_rope(e, q, q, w, 1e-6f, 1.0f, pos, QN_TENSOR_NONE, &p);
    if (s == QN_OK)
        s = qn_rms_norm_rope_append(e, R(b, KC, i), gemma_heads(b, i, GH, GHKV), w, 1e-6f, 1.0f, pos, QN_TENSOR_NONE,
                                    &p);
    return s == QN_OK ? qn_kv_cache_append(e, R(b, VC, i), gemma_heads(b, i, GH + GHKV, GHKV), pos) : s;
}
static qn_status op_qkv_fused(qn_encoder *e, const void *c, int i) {
    const bufs *b = c;
    qn_rope_params p = qn_rope_params_default(QN_ROPE_NEOX, GD, 1e6f);
    qn_tensor q = gemma_heads(b, i, 0, GH), w = view(b, W, i, GD, 1, 1);
    return qn_rms_norm_rope_qkv(e, q, R(b, KC, i), R(b, VC, i), q, gemma_heads(b, i, GH, GHKV),
                                gemma_heads(b, i, GH + GHKV, GHKV), w, w, 1e-6f, 1.0f, R(b, POS, i), QN_TENSOR_NONE,
                                &p);
}
static qn_status op_swiglu(qn_encoder *e, const void *c, int i) {
    const bufs *b = c;
    return qn_glu_fused(e, R(b, FFO, i), R(b, FFN, i), QN_ACT_SILU);
}
static qn_status op_softmax(qn_encoder *e, const void *c, int i) {
    const bufs *b = c;
    return qn_softmax(e, R(b, ATT_O, i), R(b, ATT, i), QN_TENSOR_NONE, 0.088f);
}
static qn_status op_embed(qn_encoder *e, const void *c, int i) {
    const bufs *b = c;
    return qn_embed(e, R(b, EMB, i), R(b, TABLE, 0), R(b, TID, i), 45.25f);
}
static qn_status op_route(qn_encoder *e, const void *c, int i) {
    const bufs *b = c;
    qn_moe_route_params p = {TOPK, QN_MOE_SOFTMAX, true, 1.0f};
    qn_tensor lg = view(b, LOGITS, i, EXPERTS, b->tokens, 1);
    return qn_moe_route(e, R(b, IDS, i), R(b, WTS, i), lg, QN_TENSOR_NONE, QN_TENSOR_NONE, &p);
}

static qn_status sample(qn_encoder *e, const bufs *b, int i, qn_sample_params p, bool penalty) {
    return qn_sample(e, R(b, TOK, i), QN_TENSOR_NONE, R(b, LOGITS, i), penalty ? R(b, RECENT, i) : QN_TENSOR_NONE,
                     R(b, CTR, i), &p);
}
static qn_status op_greedy(qn_encoder *e, const void *c, int i) {
    return sample(e, c, i, (qn_sample_params){0.0f, 0, 1.0f, 0.0f, 1.0f, 1}, false);
}
static qn_status op_topk(qn_encoder *e, const void *c, int i) {
    return sample(e, c, i, (qn_sample_params){0.8f, 40, 0.95f, 0.05f, 1.0f, 1}, false);
}
static qn_status op_topk_penalty(qn_encoder *e, const void *c, int i) {
    return sample(e, c, i, (qn_sample_params){0.8f, 40, 0.95f, 0.05f, 1.1f, 1}, true);
}
static qn_status op_topk_max(qn_encoder *e, const void *c, int i) {
    return sample(e, c, i, (qn_sample_params){1.0f, QN_SAMPLE_MAX_TOP_K, 1.0f, 0.0f, 1.0f, 1}, false);
}
static qn_status op_min_p(qn_encoder *e, const void *c, int i) {
    return sample(e, c, i, (qn_sample_params){1.0f, 0, 1.0f, 0.05f, 1.0f, 1}, false);
}

static void free_bufs(bufs *b) {
    for (int k = 0; k < NROLES; k++) qn_buffer_free(b->r[k].buf);
}

/* Random-ish contents (not zeros, which can run faster), the same in every
 * copy; uploaded through a host block of whole copies (about 16 MB). */
static qn_status fill_noise(role *r) {
    size_t per = (16u << 20) / r->bytes + 1, total = r->bytes * (size_t)r->copies;
    if (per > (size_t)r->copies) per = (size_t)r->copies;
    unsigned char *h = malloc(per * r->bytes);
    if (!h) return QN_ERR_OUT_OF_MEMORY;
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < r->bytes; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        h[i] = (unsigned char)(x >> 24);
    }
    if (r->t == QN_F32) /* finite floats in about [-2, 2] */
        for (size_t i = 0; i + 3 < r->bytes; i += 4)
            h[i + 3] = (unsigned char)((h[i + 3] & 0x80) | 0x3f), h[i + 2] &= 0x7f;
    if (r->t == QN_F16)
        for (size_t i = 0; i + 1 < r->bytes; i += 2) h[i + 1] = (unsigned char)((h[i + 1] & 0x83) | 0x38);
    if (r->t == QN_I32)
        for (size_t i = 0; i + 3 < r->bytes; i += 4) h[i + 3] = 0, h[i + 2] &= 0x03; /* ids below 262144 */
    for (size_t c = 1; c < per; c++) memcpy(h + c * r->bytes, h, r->bytes);
    qn_status s = QN_OK;
    for (size_t off = 0; off < total && s == QN_OK; off += per * r->bytes)
        s = qn_buffer_write(r->buf, off, h, total - off < per * r->bytes ? total - off : per * r->bytes);
    free(h);
    return s;
}

static qn_status make_bufs(qn_device *dev, int64_t tokens, size_t span, bufs *b) {
    const int64_t att_rows = HEADS * (tokens < 16 ? tokens : 16);
    const struct {
        qn_dtype t;
        int64_t ne0, ne1, ne2;
    } spec[NROLES] = {
        [X] = {QN_F32, HID, tokens, 1},       [Y] = {QN_F32, HID, tokens, 1},
        [SUM] = {QN_F32, HID, tokens, 1},     [W] = {QN_F32, HID, 1, 1},
        [Q] = {QN_F16, HD, HEADS, tokens},    [Q2] = {QN_F16, HD, HEADS, tokens},
        [POS] = {QN_I32, tokens, 1, 1},       [FFN] = {QN_F16, 2 * FF, tokens, 1},
        [FFO] = {QN_F16, FF, tokens, 1},      [ATT] = {QN_F32, 4096, att_rows, 1},
        [ATT_O] = {QN_F32, 4096, att_rows, 1}, [LOGITS] = {QN_F32, VOCAB, 1, 1},
        [IDS] = {QN_I32, TOPK, tokens, 1},    [WTS] = {QN_F32, TOPK, tokens, 1},
        [TOK] = {QN_I32, 1, 1, 1},            [CTR] = {QN_I32, 1, 1, 1},
        [RECENT] = {QN_I32, WINDOW, 1, 1},    [TABLE] = {QN_Q8_0, 640, VOCAB, 1},
        [EMB] = {QN_F32, 640, tokens, 1},     [TID] = {QN_I32, tokens, 1, 1},
        [QKV] = {QN_F32, GD * (GH + 2 * GHKV), tokens, 1}, [KC] = {QN_F16, GD, CAP, GHKV},
        [VC] = {QN_F16, GD, CAP, GHKV},
    };
    b->tokens = tokens;
    qn_status s = QN_OK;
    for (int k = 0; k < NROLES && s == QN_OK; k++) {
        role *r = &b->r[k];
        r->t = spec[k].t;
        r->ne[0] = spec[k].ne0, r->ne[1] = spec[k].ne1, r->ne[2] = spec[k].ne2;
        r->bytes = (size_t)(qn_dtype_row_bytes(r->t, r->ne[0]) * r->ne[1] * r->ne[2] + 255) / 256 * 256;
        size_t copies = k == TABLE ? 1 : (span + r->bytes - 1) / r->bytes; /* the table is cold as it is */
        r->copies = (int)(copies < MAX_COPIES ? copies : MAX_COPIES);
        int64_t n = (int64_t)(r->bytes * (size_t)r->copies);
        s = qn_buffer_alloc(dev, QN_U8, 1, &n, &r->buf);
        if (s == QN_OK) s = fill_noise(r);
    }
    return s;
}

int qn_bench_ops(qn_device *dev, const qn_bench_opts *opts) {
    (void)opts;
    if (qn_bench_gpu_only(dev)) return 0;
    qn_encoder *enc;
    double ceiling;
    if (qn_bench_start(dev, &enc, &ceiling)) return 1;
    qn_device_info info;
    qn_status s = qn_device_info_get(dev, &info);
    const size_t span = 2 * (size_t)info.l2_bytes;
    printf("every call on its own copies of the tensors, spanning %.0f MB (twice the L2); L2-hot: the same copy\n",
           span / 1e6);
    printf("%-50s %6s %9s %8s %8s %9s | %s\n", "op", "MB", "us", "GB/s", "ceiling", "L2-hot us",
           "llama.cpp (H100)");
    const int64_t token_counts[2] = {1, 512};
    int rc = 0;
    for (int k = 0; k < 2 && rc == 0 && s == QN_OK; k++) {
        int64_t t = token_counts[k];
        double att_rows = HEADS * (double)(t < 16 ? t : 16);
        /* q read and written (f32), k and v read (f32) and written (f16),
         * the two norm weights, pos */
        double qkv_bytes = (8.0 * GH + 12.0 * GHKV) * GD * t + 8.0 * GD + 4.0 * t;
        const struct {
            const char *name;
            qn_bench_fn fn;
            double bytes;
            bool decode_only;
        } cases[] = {
            {"rms_norm f32 [4096]", op_rms, 8.0 * HID * t + 4.0 * HID, false},
            {"rms_norm f32 [640], weight + 1 (Gemma)", op_rms_small, 8.0 * SMALL * t + 4.0 * SMALL, false},
            {"add f32 [4096] (unfused residual)", op_add, 12.0 * HID * t, false},
            {"add_rms_norm f32 [4096] (fused add + norm)", op_add_rms, 16.0 * HID * t + 4.0 * HID, false},
            {"add_rms_norm f32 [640] (fused, Gemma)", op_add_rms_small, 16.0 * SMALL * t + 4.0 * SMALL, false},
            {"rope neox f16 [128 x 32 heads]", op_rope, 4.0 * HD * HEADS * t + 4.0 * t, false},
            {"rms_norm f16 per head [128 x 32]", op_head_norm, 4.0 * HD * HEADS * t, false},
            {"rms_norm_rope f16 [128 x 32] (fused)", op_norm_rope, 4.0 * HD * HEADS * t + 4.0 * t, false},
            {"q/k norm+rope, k/v append [256 x 4/1], 3 ops", op_qkv_three, qkv_bytes, false},
            {"rms_norm_rope_qkv [256 x 4/1] (the 3 fused)", op_qkv_fused, qkv_bytes, false},
            {"swiglu fused f16 [2 x 14336]", op_swiglu, 6.0 * FF * t, false},
            {"softmax f32 [4096 x rows]", op_softmax, 8.0 * 4096 * att_rows, false},
            {"embed q8_0 [640] rows of 262144", op_embed, (34.0 / 32 * 640 + 4.0 * 640 + 4) * t, false},
            {"moe_route softmax 128 experts top 8", op_route, (4.0 * EXPERTS + 8.0 * TOPK) * t, false},
            {"sample greedy, vocab 262144", op_greedy, 4.0 * VOCAB, true},
            {"sample top_k 40 top_p min_p temp, 262144", op_topk, 4.0 * VOCAB, true},
            {"  the same + repetition penalty (64 recent)", op_topk_penalty, 4.0 * VOCAB + 4.0 * WINDOW, true},
            {"sample top_k 1024 (the largest), 262144", op_topk_max, 4.0 * VOCAB, true},
            {"sample min_p 0.05, full vocabulary, 262144", op_min_p, 4.0 * VOCAB, true},
        };
        bufs b = {0};
        s = make_bufs(dev, t, span, &b);
        printf("-- %lld token%s\n", (long long)t, t == 1 ? "" : "s");
        for (size_t i = 0; i < sizeof cases / sizeof cases[0] && s == QN_OK; i++) {
            if (t > 1 && cases[i].decode_only) continue;
            double cold, hot = 0;
            double r = span / cases[i].bytes + 1;
            int reps = r < MIN_REPS ? MIN_REPS : r > MAX_COPIES ? MAX_COPIES : (int)r;
            b.hot = 0;
            s = qn_bench_time_graph(enc, cases[i].fn, &b, reps, &cold);
            if (s == QN_OK && t == 1) {
                b.hot = 1;
                s = qn_bench_time_graph(enc, cases[i].fn, &b, MIN_REPS, &hot);
            }
            if (s != QN_OK) {
                rc = qn_cli_fail(cases[i].name, s);
                break;
            }
            double gbs = cases[i].bytes / cold / 1e3;
            printf("%-50s %6.0f %9.2f %8.0f %7.1f%% ", cases[i].name, reps * cases[i].bytes / 1e6, cold, gbs,
                   100.0 * gbs / ceiling);
            if (t == 1) printf("%9.2f | no anchor\n", hot);
            else printf("%9s | no anchor\n", "-");
        }
        if (s != QN_OK && rc == 0) rc = qn_cli_fail("allocating", s);
        free_bufs(&b);
    }
    qn_encoder_destroy(enc);
    return rc;
}
