/* Gemma 3 (general.architecture "gemma3"), configured from the file's
 * metadata. One layer, for hidden size E, H query heads and Hkv key/value
 * heads of D dimensions, F feed-forward units:
 *
 *   x   = embed(token) * sqrt(E)
 *   per layer:
 *     h = rms_norm(x) * attn_norm
 *     q, k, v = Wq h, Wk h, Wv h            per-head rms_norm of q and k,
 *                                           then RoPE (NeoX pairs); local
 *                                           layers use the sliding-window
 *                                           base, global layers the other
 *     a = attention(q, k, v)                grouped-query; local layers see
 *                                           the last `window` positions,
 *                                           global layers all of them
 *     x = x + rms_norm(Wo a) * post_attention_norm
 *     h = rms_norm(x) * ffn_norm
 *     x = x + rms_norm(Wdown (gelu(Wgate h) * Wup h)) * post_ffw_norm
 *   logits = Wemb rms_norm(x) * output_norm  (the embedding is the head),
 *            soft-capped where the file sets final_logit_softcapping
 *
 * llama.cpp's converter stores Gemma's norm weights with the 1 already
 * added (Gemma3RMSNorm scales by 1 + w), so they are used as stored
 * (weight_offset 0). Every rms_norm uses attention.layer_norm_rms_epsilon.
 */
#include "models/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LAYERS 256

/* q, k and v come from one stacked projection where their types agree or
 * widen to one (one matvec instead of three; qn_model_stack_type): proj[i]
 * holds the rows of consecutive projections of one type, and writes rows
 * row0[i] .. row0[i] + rows[i] of the qkv step buffer. */
typedef struct {
    qn_buffer *proj[3];        /* [E, rows[i]]             */
    int64_t row0[3], rows[3];
    int nproj;
} qkv_weights;

typedef struct {
    qn_buffer *attn_norm;      /* f32 [E]                  */
    qkv_weights qkv;           /* q [E, H*D], k and v [E, Hkv*D] */
    qn_buffer *q_norm, *k_norm; /* f32 [D]                 */
    qn_buffer *wo;             /* [H*D, E]                 */
    qn_buffer *post_attn_norm; /* f32 [E]                  */
    qn_buffer *ffn_norm;       /* f32 [E]                  */
    qn_buffer *gate, *up;      /* [E, F]                   */
    qn_buffer *down;           /* [F, E]                   */
    qn_buffer *post_ffn_norm;  /* f32 [E]                  */
    bool local;                /* sliding-window layer     */
} layer;

typedef struct {
    int32_t n_embd, n_layer, n_ff, n_head, n_head_kv, head_dim, n_vocab, window;
    float eps, attn_scale, softcap;
    qn_rope_params rope_global, rope_local;
    qn_buffer *tok_embd;       /* [E, vocab]: embedding rows and output head */
    qn_buffer *output_norm;    /* f32 [E] */
    layer layers[MAX_LAYERS];
} gemma3;

/* Per context: the caches and the step buffers (T = the context's chunk). */
typedef struct {
    qn_buffer *k_cache[MAX_LAYERS], *v_cache[MAX_LAYERS]; /* f16 [D, capacity, Hkv] */
    qn_buffer *x[2];    /* f32 [E, T]     the residual stream, in turns: a norm
                         * fused into a matvec writes the new stream while
                         * the matvec's other blocks still read the old */
    qn_buffer *xn;      /* f32 [E, T]     the normed input of the next block */
    qn_buffer *qkv;     /* f32 [(H + 2 Hkv) D, T]: a token's q, k, v heads   */
    qn_buffer *att;     /* f32 [D, H, T]  attention output                  */
    qn_buffer *proj;    /* f32 [E, T]     attention / feed-forward output   */
    qn_buffer *hidden;  /* f32 [F, T]     GeGLU units                       */
    qn_buffer *scratch; /* f32 [elems]    split-K partials of the attention */
} gemma3_state;

static qn_status get_i32(qn_model *m, const char *suffix, bool required, int64_t def, int64_t lo, int64_t hi,
                         int32_t *out) {
    char key[128];
    int64_t v;
    QN_TRY(qn_meta_int(m->gguf, qn_arch_key(m, suffix, key, sizeof key), required, def, &v));
    if (v < lo || v > hi)
        return qn_error(QN_ERR_FORMAT, "metadata key %s is %lld, expected %lld .. %lld", key, (long long)v,
                        (long long)lo, (long long)hi);
    *out = (int32_t)v;
    return QN_OK;
}

static qn_status get_f32(qn_model *m, const char *suffix, double def, float *out) {
    char key[128];
    double v;
    QN_TRY(qn_meta_float(m->gguf, qn_arch_key(m, suffix, key, sizeof key), false, def, &v));
    if (!isfinite(v) || v < 0) return qn_error(QN_ERR_FORMAT, "metadata key %s is %g, expected >= 0", key, v);
    *out = (float)v;
    return QN_OK;
}

/* Which layers are local: attention.sliding_window_pattern as an array of
 * bools (true: local), or a period P (layer l is local unless l % P == P -
 * 1; 6 when absent, as Gemma 3 is built). Without a sliding window, none. */
static qn_status read_pattern(qn_model *m, gemma3 *w) {
    char key[128];
    qn_arch_key(m, "attention.sliding_window_pattern", key, sizeof key);
    if (w->window == 0) return QN_OK;
    if (qn_gguf_find_key(m->gguf, key) >= 0) {
        qn_gguf_value v;
        QN_TRY(qn_gguf_get(m->gguf, key, &v));
        if (v.type == QN_GGUF_ARRAY) {
            QN_TRY(qn_meta_array(m->gguf, key, QN_GGUF_BOOL, w->n_layer, &v));
            for (int l = 0; l < w->n_layer; l++) w->layers[l].local = ((const uint8_t *)v.data)[l] != 0;
            return QN_OK;
        }
    }
    int32_t period = 0;
    QN_TRY(get_i32(m, "attention.sliding_window_pattern", false, 6, 0, MAX_LAYERS, &period));
    for (int l = 0; l < w->n_layer; l++) w->layers[l].local = period == 0 || l % period < period - 1;
    return QN_OK;
}

static qn_status load_hparams(qn_model *m, gemma3 *w) {
    int32_t n_ctx = 0, rope_dims = 0;
    QN_TRY(get_i32(m, "embedding_length", true, 0, 1, 1 << 16, &w->n_embd));
    QN_TRY(get_i32(m, "block_count", true, 0, 1, MAX_LAYERS, &w->n_layer));
    QN_TRY(get_i32(m, "feed_forward_length", true, 0, 1, 1 << 20, &w->n_ff));
    QN_TRY(get_i32(m, "context_length", true, 0, 1, 1 << 24, &n_ctx));
    QN_TRY(get_i32(m, "attention.head_count", true, 0, 1, 1024, &w->n_head));
    QN_TRY(get_i32(m, "attention.head_count_kv", false, w->n_head, 1, w->n_head, &w->n_head_kv));
    QN_TRY(get_i32(m, "attention.key_length", false, w->n_embd / w->n_head, 1, 1024, &w->head_dim));
    int32_t v_len;
    QN_TRY(get_i32(m, "attention.value_length", false, w->head_dim, w->head_dim, w->head_dim, &v_len));
    QN_TRY(get_i32(m, "attention.sliding_window", false, 0, 0, 1 << 24, &w->window));
    QN_TRY(get_i32(m, "rope.dimension_count", false, w->head_dim, 2, w->head_dim, &rope_dims));
    if (w->n_head % w->n_head_kv != 0)
        return qn_error(QN_ERR_FORMAT, "%s.attention.head_count %d is not a multiple of head_count_kv %d", m->arch->name,
                        w->n_head, w->n_head_kv);
    float base, base_swa, scale_factor;
    QN_TRY(get_f32(m, "attention.layer_norm_rms_epsilon", 1e-6, &w->eps));
    QN_TRY(get_f32(m, "rope.freq_base", 10000.0, &base));
    QN_TRY(get_f32(m, "rope.freq_base_swa", 10000.0, &base_swa));
    QN_TRY(get_f32(m, "rope.scaling.factor", 1.0, &scale_factor));
    QN_TRY(get_f32(m, "final_logit_softcapping", 0.0, &w->softcap));
    if (base <= 0 || base_swa <= 0 || scale_factor <= 0)
        return qn_error(QN_ERR_FORMAT, "%s.rope: freq_base %g, freq_base_swa %g, scaling.factor %g must be > 0",
                        m->arch->name, (double)base, (double)base_swa, (double)scale_factor);
    QN_TRY(read_pattern(m, w));
    /* Linear position scaling (the larger Gemma 3 models) applies to the
     * global layers only, as in llama.cpp. */
    w->rope_global = qn_rope_params_default(QN_ROPE_NEOX, rope_dims, base);
    w->rope_global.freq_scale = 1.0f / scale_factor;
    w->rope_local = qn_rope_params_default(QN_ROPE_NEOX, rope_dims, base_swa);
    /* Queries are scaled by query_pre_attn_scalar^-1/2, which the file does
     * not carry: the head size, except in the 27B model (62 layers), where
     * it is E / H (Gemma's reference configuration; llama.cpp does the same). */
    w->attn_scale = w->n_layer == 62 ? 1.0f / sqrtf((float)w->n_embd / (float)w->n_head)
                                     : 1.0f / sqrtf((float)w->head_dim);
    w->n_vocab = m->info.n_vocab;
    m->info.n_embd = w->n_embd;
    m->info.n_layer = w->n_layer;
    m->info.n_ctx_train = n_ctx;
    return QN_OK;
}

static qn_status tensor2(qn_model *m, const char *name, int64_t ne0, int64_t ne1, qn_buffer **out) {
    int64_t ne[2] = {ne0, ne1};
    return qn_model_tensor(m, name, ne1 == 1 ? 1 : 2, ne, out);
}

static qn_status blk(qn_model *m, int l, const char *what, int64_t ne0, int64_t ne1, qn_buffer **out) {
    char name[96];
    snprintf(name, sizeof name, "blk.%d.%s.weight", l, what);
    return tensor2(m, name, ne0, ne1, out);
}

/* q, k, v of layer l, consecutive ones that can share a type stacked (a
 * q5_0 q and k with a q8_0 v: one q8_0 matvec, not two launches). */
static qn_status load_qkv(qn_model *m, int l, int64_t E, int64_t HD, int64_t KD, qkv_weights *w) {
    static const char *const what[3] = {"attn_q", "attn_k", "attn_v"};
    char names[3][96];
    qn_dtype types[3];
    const int64_t rows[3] = {HD, KD, KD};
    for (int i = 0; i < 3; i++) {
        snprintf(names[i], sizeof names[i], "blk.%d.%s.weight", l, what[i]);
        QN_TRY(qn_model_tensor_type(m, names[i], &types[i]));
    }
    w->nproj = 0;
    for (int i = 0, row0 = 0; i < 3;) {
        int j = i + 1;
        qn_dtype common = types[i];
        while (j < 3 && qn_model_stack_type(common, types[j], &common)) j++;
        const char *stack[3];
        int64_t total = 0;
        for (int k = i; k < j; k++) stack[k - i] = names[k], total += rows[k];
        QN_TRY(qn_model_tensor_stack(m, stack, j - i, E, rows + i, &w->proj[w->nproj]));
        w->row0[w->nproj] = row0;
        w->rows[w->nproj++] = total;
        row0 += (int)total;
        i = j;
    }
    return QN_OK;
}

static void gemma3_free(qn_model *m) {
    free(m->weights); /* the tensors are the model's (m->bufs) */
    m->weights = NULL;
}

static qn_status gemma3_load(qn_model *m) {
    gemma3 *w = calloc(1, sizeof *w);
    if (!w) return qn_error(QN_ERR_OUT_OF_MEMORY, "qn_model_load: out of host memory");
    m->weights = w;
    QN_TRY(load_hparams(m, w));
    int64_t E = w->n_embd, D = w->head_dim, HD = (int64_t)w->n_head * D, KD = (int64_t)w->n_head_kv * D,
            F = w->n_ff;
    QN_TRY(tensor2(m, "token_embd.weight", E, w->n_vocab, &w->tok_embd));
    if (qn_gguf_find_tensor(m->gguf, "output.weight") >= 0)
        return qn_error(QN_ERR_UNSUPPORTED, "tensor output.weight: a separate output head is not supported (gemma3 ties it to token_embd)");
    for (int l = 0; l < w->n_layer; l++) {
        layer *L = &w->layers[l];
        QN_TRY(blk(m, l, "attn_norm", E, 1, &L->attn_norm));
        QN_TRY(load_qkv(m, l, E, HD, KD, &L->qkv));
        QN_TRY(blk(m, l, "attn_q_norm", D, 1, &L->q_norm));
        QN_TRY(blk(m, l, "attn_k_norm", D, 1, &L->k_norm));
        QN_TRY(blk(m, l, "attn_output", HD, E, &L->wo));
        QN_TRY(blk(m, l, "post_attention_norm", E, 1, &L->post_attn_norm));
        QN_TRY(blk(m, l, "ffn_norm", E, 1, &L->ffn_norm));
        QN_TRY(blk(m, l, "ffn_gate", E, F, &L->gate));
        QN_TRY(blk(m, l, "ffn_up", E, F, &L->up));
        QN_TRY(blk(m, l, "ffn_down", F, E, &L->down));
        QN_TRY(blk(m, l, "post_ffw_norm", E, 1, &L->post_ffn_norm));
        if (qn_buffer_dtype(L->gate) != qn_buffer_dtype(L->up))
            return qn_error(QN_ERR_UNSUPPORTED, "blk.%d.ffn_gate.weight is %s but ffn_up is %s (the fused GeGLU needs one type)",
                            l, qn_dtype_name(qn_buffer_dtype(L->gate)), qn_dtype_name(qn_buffer_dtype(L->up)));
    }
    return tensor2(m, "output_norm.weight", E, 1, &w->output_norm);
}

/* ---- contexts */

/* Rows of layer l's cache: global layers hold the context; local layers a
 * ring of the window plus a prefill chunk less one, so a chunk's queries
 * still see their whole window after its keys are appended. */
static int64_t cache_rows(const qn_context *c, const gemma3 *w, int l) {
    int64_t ring = (int64_t)w->window + c->chunk - 1;
    return w->layers[l].local && ring < c->n_ctx ? ring : c->n_ctx;
}

static void gemma3_context_free(qn_context *c) {
    gemma3_state *st = c->state;
    for (int l = 0; l < MAX_LAYERS; l++) {
        qn_buffer_free(st->k_cache[l]);
        qn_buffer_free(st->v_cache[l]);
    }
    qn_buffer *bufs[] = {st->x[0], st->x[1], st->xn, st->qkv, st->att, st->proj, st->hidden, st->scratch};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) qn_buffer_free(bufs[i]);
    free(st);
    c->state = NULL;
}

static qn_status alloc2(qn_device *dev, int64_t ne0, int64_t ne1, qn_buffer **out) {
    int64_t ne[2] = {ne0, ne1};
    return qn_buffer_alloc(dev, QN_F32, 2, ne, out);
}

static qn_status gemma3_context_init(qn_context *c) {
    const gemma3 *w = c->m->weights;
    qn_device *dev = c->m->dev;
    gemma3_state *st = calloc(1, sizeof *st);
    if (!st) return qn_error(QN_ERR_OUT_OF_MEMORY, "qn_context_create: out of host memory");
    c->state = st;
    int64_t T = c->chunk, E = w->n_embd, D = w->head_dim, H = w->n_head, Hkv = w->n_head_kv;
    int64_t scratch = 1;
    for (int l = 0; l < w->n_layer; l++) {
        int64_t ne[3] = {D, cache_rows(c, w, l), Hkv};
        QN_TRY(qn_buffer_alloc(dev, QN_F16, 3, ne, &st->k_cache[l]));
        QN_TRY(qn_buffer_alloc(dev, QN_F16, 3, ne, &st->v_cache[l]));
        /* Split-K scratch for the largest requests this layer makes: decode
         * (up to 8 tokens) and prefill (a chunk). */
        for (int prefill = 0; prefill < 2; prefill++) {
            int64_t n = prefill ? T : (T < 8 ? T : 8), elems;
            int64_t qne[3] = {D, H, n};
            qn_tensor q = {.dtype = QN_F32, .ne = {qne[0], qne[1], qne[2], 1}};
            QN_TRY(qn_flash_attn_scratch(dev, prefill, q, qn_tensor_of(st->k_cache[l]), &elems));
            if (elems > scratch) scratch = elems;
        }
    }
    QN_TRY(alloc2(dev, E, T, &st->x[0]));
    QN_TRY(alloc2(dev, E, T, &st->x[1]));
    QN_TRY(alloc2(dev, E, T, &st->xn));
    QN_TRY(alloc2(dev, D * (H + 2 * Hkv), T, &st->qkv));
    QN_TRY(alloc2(dev, D * H, T, &st->att));
    QN_TRY(alloc2(dev, E, T, &st->proj));
    QN_TRY(alloc2(dev, w->n_ff, T, &st->hidden));
    return qn_buffer_alloc(dev, QN_F32, 1, &scratch, &st->scratch);
}

/* A contiguous f32 view of the first n tokens of a step buffer. */
static qn_tensor f32_view(qn_buffer *b, int64_t ne0, int64_t ne1, int64_t ne2) {
    return qn_tensor_make(b, 0, QN_F32, ne0, ne1, ne2, 1);
}

/* Views into the qkv buffer, whose token rows are `stride` floats apart:
 * [ne0, n] (a projection's output rows) and [ne0, ne1, n] (heads), from
 * element `first` of each token's row. */
static qn_tensor qkv_rows(qn_buffer *b, int64_t first, int64_t stride, int64_t ne0, int64_t n) {
    qn_tensor t = qn_tensor_make(b, (size_t)first * sizeof(float), QN_F32, ne0, n, 1, 1);
    t.nb[1] = stride * (int64_t)sizeof(float);
    t.nb[2] = t.nb[3] = t.nb[1] * n;
    return t;
}

static qn_tensor qkv_heads(qn_buffer *b, int64_t first, int64_t stride, int64_t ne0, int64_t ne1, int64_t n) {
    qn_tensor t = qn_tensor_make(b, (size_t)first * sizeof(float), QN_F32, ne0, ne1, n, 1);
    t.nb[2] = stride * (int64_t)sizeof(float);
    t.nb[3] = t.nb[2] * n;
    return t;
}

/* ---- the forward pass */

/* The norm in front of a product: x = rms_norm(a + rms_norm(b) * b_w) * w
 * into xn, the new stream into sum (without b: x = rms_norm(a) * w). */
static qn_norm_in norm_in(const gemma3 *w, qn_tensor xn, qn_tensor a, const qn_tensor *b, qn_buffer *b_w,
                          qn_tensor sum, qn_buffer *nw) {
    qn_norm_in in = {.x = xn, .a = a, .w = qn_tensor_of(nw), .eps = w->eps, .weight_offset = 0};
    if (b) in.b = *b, in.b_w = qn_tensor_of(b_w), in.sum = sum;
    return in;
}

static qn_status gemma3_forward(qn_context *c, qn_encoder *enc, int32_t n) {
    const gemma3 *w = c->m->weights;
    gemma3_state *st = c->state;
    int64_t E = w->n_embd, D = w->head_dim, H = w->n_head, Hkv = w->n_head_kv, F = w->n_ff;

    qn_tensor ids = qn_tensor_make(c->ids, 0, QN_I32, n, 1, 1, 1);       /* i32 [n]        */
    qn_tensor pos = qn_tensor_make(c->positions, 0, QN_I32, n, 1, 1, 1); /* i32 [n]        */
    qn_tensor xs[2] = {f32_view(st->x[0], E, n, 1), f32_view(st->x[1], E, n, 1)}; /* [E, n] each */
    qn_tensor xn = f32_view(st->xn, E, n, 1);                            /* [E, n]         */
    const int64_t QKV = D * (H + 2 * Hkv);                               /* a token's qkv row */
    qn_tensor q = qkv_heads(st->qkv, 0, QKV, D, H, n);                   /* [D, H, n]      */
    qn_tensor k = qkv_heads(st->qkv, D * H, QKV, D, Hkv, n);             /* [D, Hkv, n]    */
    qn_tensor v = qkv_heads(st->qkv, D * (H + Hkv), QKV, D, Hkv, n);     /* [D, Hkv, n]    */
    qn_tensor att = f32_view(st->att, D, H, n);                          /* [D, H, n]      */
    qn_tensor proj = f32_view(st->proj, E, n, 1);                        /* [E, n]         */
    qn_tensor hidden = f32_view(st->hidden, F, n, 1);                    /* [F, n]         */
    qn_tensor scratch = qn_tensor_of(st->scratch);
    /* The output projection sees att as a matrix of one column a token. */
    qn_tensor att2 = f32_view(st->att, D * H, n, 1);
    int cur = 0; /* xs[cur] holds the stream */

    QN_TRY(qn_embed(enc, xs[0], qn_tensor_of(w->tok_embd), ids, sqrtf((float)E)));

    for (int l = 0; l < w->n_layer; l++) {
        const layer *L = &w->layers[l];
        const qn_rope_params *rope = L->local ? &w->rope_local : &w->rope_global;
        qn_tensor kc = qn_tensor_of(st->k_cache[l]), vc = qn_tensor_of(st->v_cache[l]);

        /* attention; its input norm (after the layer before's feed-forward
         * add: x += rms_norm(proj) * post_ffw_norm) made by the first of
         * the q, k, v matvecs (one stack where their types widen to one),
         * which leave it in xn for the others */
        const qn_norm_in in = norm_in(w, xn, xs[cur], l > 0 ? &proj : NULL,
                                      l > 0 ? w->layers[l - 1].post_ffn_norm : NULL, xs[!cur], L->attn_norm);
        if (l > 0) cur = !cur;
        for (int i = 0; i < L->qkv.nproj; i++) {
            qn_tensor y = qkv_rows(st->qkv, L->qkv.row0[i], QKV, L->qkv.rows[i], n);
            if (i == 0) QN_TRY(qn_qmatmul_normed(enc, y, qn_tensor_of(L->qkv.proj[i]), &in));
            else QN_TRY(qn_qmatmul(enc, y, qn_tensor_of(L->qkv.proj[i]), xn));
        }
        /* q normed and rotated in place, k normed and rotated straight into
         * its cache rows, v into its: one launch */
        QN_TRY(qn_rms_norm_rope_qkv(enc, q, kc, vc, q, k, v, qn_tensor_of(L->q_norm), qn_tensor_of(L->k_norm), w->eps,
                                    0, pos, QN_TENSOR_NONE, rope));
        qn_attn_opts opts = {.scale = w->attn_scale,
                             .mask = L->local ? QN_ATTN_MASK_WINDOW : QN_ATTN_MASK_CAUSAL,
                             .window = L->local ? w->window : 0};
        if (n <= 8)
            QN_TRY(qn_flash_attn_decode(enc, att, q, kc, vc, pos, NULL, &scratch, opts));
        else
            QN_TRY(qn_flash_attn_prefill(enc, att, q, kc, vc, pos, NULL, &scratch, opts));
        QN_TRY(qn_qmatmul(enc, proj, qn_tensor_of(L->wo), att2));

        /* feed-forward: GeGLU (tanh GELU), its input norm (x +=
         * rms_norm(proj) * post_attention_norm; rms_norm(x) * ffn_norm)
         * made by the GLU matvec */
        const qn_norm_in fin = norm_in(w, xn, xs[cur], &proj, L->post_attn_norm, xs[!cur], L->ffn_norm);
        cur = !cur;
        QN_TRY(qn_qmatmul_glu_normed(enc, hidden, qn_tensor_of(L->gate), qn_tensor_of(L->up), &fin, QN_ACT_GELU_TANH));
        QN_TRY(qn_qmatmul(enc, proj, qn_tensor_of(L->down), hidden));
    }

    /* The head, for the last token only: logits [vocab] = Wemb x, x the
     * final norm of the last add's result. */
    const size_t last = (size_t)(n - 1) * (size_t)E * sizeof(float);
    qn_tensor a1 = qn_tensor_make(st->x[cur], last, QN_F32, E, 1, 1, 1);
    qn_tensor s1 = qn_tensor_make(st->x[!cur], last, QN_F32, E, 1, 1, 1);
    qn_tensor b1 = qn_tensor_make(st->proj, last, QN_F32, E, 1, 1, 1);
    qn_tensor x1 = qn_tensor_make(st->xn, last, QN_F32, E, 1, 1, 1);
    const qn_norm_in out = norm_in(w, x1, a1, &b1, w->layers[w->n_layer - 1].post_ffn_norm, s1, w->output_norm);
    qn_tensor logits = qn_tensor_make(c->logits, 0, QN_F32, w->n_vocab, 1, 1, 1);
    QN_TRY(qn_qmatmul_normed(enc, logits, qn_tensor_of(w->tok_embd), &out));
    if (w->softcap > 0) QN_TRY(qn_softcap(enc, logits, logits, w->softcap));
    return QN_OK;
}

const qn_arch qn_arch_gemma3 = {
    .name = "gemma3",
    .load = gemma3_load,
    .free = gemma3_free,
    .context_init = gemma3_context_init,
    .context_free = gemma3_context_free,
    .forward = gemma3_forward,
};
