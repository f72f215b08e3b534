/* The parts of a model every architecture shares: loading (checked metadata
 * and tensors, the tokenizer, progress), contexts and the token loop
 * (chunked prefill, sampling on the device, the decode step as a replayed
 * graph). What differs between architectures sits behind qn_arch. */
#include "models/model.h"
#include "formats/quants.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const qn_arch qn_arch_gemma3;

static const qn_arch *const archs[] = {&qn_arch_gemma3};

/* Tokens a prefill pass takes at most: bounds the step buffers and, with
 * the sliding window, the local layers' rings. */
#define QN_PREFILL_CHUNK 512

/* ---- metadata */

static qn_status meta_find(const qn_gguf *g, const char *key, bool required, qn_gguf_value *v, bool *found) {
    *found = qn_gguf_find_key(g, key) >= 0;
    if (!*found) return required ? qn_error(QN_ERR_FORMAT, "metadata key %s is missing", key) : QN_OK;
    return qn_gguf_get(g, key, v);
}

qn_status qn_meta_int(const qn_gguf *g, const char *key, bool required, int64_t def, int64_t *out) {
    qn_gguf_value v;
    bool found;
    QN_TRY(meta_find(g, key, required, &v, &found));
    if (!found) {
        *out = def;
        return QN_OK;
    }
    if (v.type == QN_GGUF_STRING || v.type == QN_GGUF_ARRAY || v.type == QN_GGUF_FLOAT32 || v.type == QN_GGUF_FLOAT64)
        return qn_error(QN_ERR_FORMAT, "metadata key %s is a %s, expected an integer", key, qn_gguf_type_name(v.type));
    if (qn_gguf_value_int(&v, out) != QN_OK) return qn_error(QN_ERR_FORMAT, "metadata key %s: %s", key, qn_last_error());
    return QN_OK;
}

qn_status qn_meta_float(const qn_gguf *g, const char *key, bool required, double def, double *out) {
    qn_gguf_value v;
    bool found;
    QN_TRY(meta_find(g, key, required, &v, &found));
    if (!found) {
        *out = def;
        return QN_OK;
    }
    if (v.type == QN_GGUF_STRING || v.type == QN_GGUF_ARRAY || v.type == QN_GGUF_BOOL)
        return qn_error(QN_ERR_FORMAT, "metadata key %s is a %s, expected a number", key, qn_gguf_type_name(v.type));
    if (qn_gguf_value_float(&v, out) != QN_OK) return qn_error(QN_ERR_FORMAT, "metadata key %s: %s", key, qn_last_error());
    return QN_OK;
}

qn_status qn_meta_str(const qn_gguf *g, const char *key, const char **s, size_t *len) {
    qn_gguf_value v;
    bool found;
    QN_TRY(meta_find(g, key, true, &v, &found));
    if (v.type != QN_GGUF_STRING)
        return qn_error(QN_ERR_FORMAT, "metadata key %s is a %s, expected a string", key, qn_gguf_type_name(v.type));
    return qn_gguf_value_str(&v, s, len);
}

qn_status qn_meta_array(const qn_gguf *g, const char *key, qn_gguf_type elem, int64_t count, qn_gguf_value *out) {
    bool found;
    QN_TRY(meta_find(g, key, true, out, &found));
    if (out->type != QN_GGUF_ARRAY)
        return qn_error(QN_ERR_FORMAT, "metadata key %s is a %s, expected an array of %s", key,
                        qn_gguf_type_name(out->type), qn_gguf_type_name(elem));
    if (out->elem_type != elem)
        return qn_error(QN_ERR_FORMAT, "metadata key %s is an array of %s, expected %s", key,
                        qn_gguf_type_name(out->elem_type), qn_gguf_type_name(elem));
    if (count >= 0 && out->count != (uint64_t)count)
        return qn_error(QN_ERR_FORMAT, "metadata key %s has %llu elements, expected %lld (the vocabulary)", key,
                        (unsigned long long)out->count, (long long)count);
    return QN_OK;
}

const char *qn_arch_key(const qn_model *m, const char *suffix, char *buf, size_t len) {
    snprintf(buf, len, "%s.%s", m->arch->name, suffix);
    return buf;
}

/* ---- tensors */

static void shape_text(int n_dims, const int64_t *ne, char *buf, size_t len) {
    size_t k = 0;
    buf[0] = 0;
    for (int d = 0; d < n_dims && k < len; d++)
        k += (size_t)snprintf(buf + k, len - k, "%s%lld", d ? " x " : "", (long long)ne[d]);
}

/* The tensor `name`, checked to have n_dims dimensions of sizes ne. */
static qn_status find_tensor(qn_model *m, const char *name, int n_dims, const int64_t *ne, qn_gguf_tensor *t,
                             int64_t *index) {
    int64_t i = qn_gguf_find_tensor(m->gguf, name);
    if (i < 0) return qn_error(QN_ERR_FORMAT, "tensor %s is missing", name);
    QN_TRY(qn_gguf_tensor_get(m->gguf, i, t));
    bool ok = t->n_dims == n_dims;
    for (int d = 0; d < n_dims && ok; d++) ok = t->ne[d] == ne[d];
    if (!ok) {
        char want[96], got[96];
        shape_text(n_dims, ne, want, sizeof want);
        shape_text(t->n_dims, t->ne, got, sizeof got);
        return qn_error(QN_ERR_FORMAT, "tensor %s has shape [%s], expected [%s]", name, got, want);
    }
    *index = i;
    return QN_OK;
}

/* A buffer the model owns (freed with it). */
static qn_status own(qn_model *m, qn_buffer *b) {
    qn_buffer **bufs = realloc(m->bufs, (m->n_bufs + 1) * sizeof *bufs);
    if (!bufs) {
        qn_buffer_free(b);
        return qn_error(QN_ERR_OUT_OF_MEMORY, "qn_model_load: out of host memory");
    }
    m->bufs = bufs;
    m->bufs[m->n_bufs++] = b;
    return QN_OK;
}

/* `name` is loaded: `file_bytes` of the file done (the progress report),
 * `device_bytes` on the device. */
static void loaded(qn_model *m, const char *name, uint64_t file_bytes, uint64_t device_bytes) {
    m->load_done += file_bytes;
    m->info.weight_bytes += device_bytes;
    if (m->progress) m->progress((size_t)m->load_done, (size_t)m->load_total, name, m->progress_user);
}

qn_status qn_model_tensor(qn_model *m, const char *name, int n_dims, const int64_t *ne, qn_buffer **out) {
    qn_gguf_tensor t;
    int64_t i = -1;
    QN_TRY(find_tensor(m, name, n_dims, ne, &t, &i));
    QN_TRY(qn_gguf_tensor_upload(m->gguf, i, m->dev, out));
    QN_TRY(own(m, *out));
    loaded(m, name, t.bytes, t.bytes);
    return QN_OK;
}

qn_status qn_model_tensor_type(qn_model *m, const char *name, qn_dtype *type) {
    int64_t i = qn_gguf_find_tensor(m->gguf, name);
    if (i < 0) return qn_error(QN_ERR_FORMAT, "tensor %s is missing", name);
    qn_gguf_tensor t;
    QN_TRY(qn_gguf_tensor_get(m->gguf, i, &t));
    *type = t.type;
    return QN_OK;
}

bool qn_model_stack_type(qn_dtype a, qn_dtype b, qn_dtype *common) {
    if (a == b || qn_legacy_widens(b, a)) *common = a;
    else if (qn_legacy_widens(a, b)) *common = b;
    else return false;
    return true;
}

qn_status qn_model_tensor_stack(qn_model *m, const char *const *names, int n, int64_t ne0, const int64_t *ne1,
                                qn_buffer **out) {
    qn_gguf_tensor t[8];
    int64_t idx, rows = 0;
    if (n < 1 || n > 8) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_model_tensor_stack: %d tensors (1 to 8)", n);
    qn_dtype type = QN_F32;
    for (int k = 0; k < n; k++) {
        QN_TRY(find_tensor(m, names[k], 2, (int64_t[]){ne0, ne1[k]}, &t[k], &idx));
        if (k == 0) type = t[0].type;
        else if (!qn_model_stack_type(type, t[k].type, &type))
            return qn_error(QN_ERR_UNSUPPORTED, "tensor %s is %s but %s is %s (not one stack's type)", names[k],
                            qn_dtype_name(t[k].type), names[0], qn_dtype_name(t[0].type));
        rows += ne1[k];
    }
    qn_buffer *b;
    QN_TRY(qn_buffer_alloc(m->dev, type, 2, (int64_t[]){ne0, rows}, &b));
    QN_TRY(own(m, b));
    size_t at = 0;
    for (int k = 0; k < n; k++) {
        const int64_t blocks = ne0 / qn_dtype_block_elems(type) * ne1[k];
        const size_t bytes = (size_t)(blocks * qn_dtype_block_bytes(type));
        if (t[k].type == type) {
            QN_TRY(qn_buffer_write(b, at, t[k].data, bytes));
        } else {
            void *wide = malloc(bytes);
            if (!wide) return qn_error(QN_ERR_OUT_OF_MEMORY, "%s: out of host memory widening it to %s", names[k],
                                       qn_dtype_name(type));
            qn_legacy_widen(t[k].type, type, t[k].data, wide, blocks);
            qn_status s = qn_buffer_write(b, at, wide, bytes);
            free(wide);
            QN_TRY(s);
        }
        at += bytes;
        loaded(m, names[k], t[k].bytes, bytes);
    }
    *out = b;
    return QN_OK;
}

/* ---- models */

void qn_model_free(qn_model *m) {
    if (!m) return;
    if (m->arch && m->weights) m->arch->free(m);
    for (size_t i = 0; i < m->n_bufs; i++) qn_buffer_free(m->bufs[i]);
    free(m->bufs);
    qn_tokenizer_free(m->tok);
    qn_gguf_close(m->gguf);
    free(m);
}

qn_status qn_model_load(qn_device *dev, const char *path, qn_progress_fn progress, void *user, qn_model **out) {
    if (!dev || !path || !out) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_model_load: NULL argument");
    *out = NULL;
    qn_model *m = calloc(1, sizeof *m);
    if (!m) return qn_error(QN_ERR_OUT_OF_MEMORY, "qn_model_load: out of host memory");
    m->dev = dev;
    m->progress = progress;
    m->progress_user = user;
    qn_status s = qn_gguf_open(path, &m->gguf);
    const char *arch;
    size_t arch_len;
    if (s == QN_OK) s = qn_meta_str(m->gguf, "general.architecture", &arch, &arch_len);
    for (size_t i = 0; s == QN_OK && i < sizeof archs / sizeof archs[0]; i++)
        if (strlen(archs[i]->name) == arch_len && memcmp(archs[i]->name, arch, arch_len) == 0) m->arch = archs[i];
    if (s == QN_OK && !m->arch)
        s = qn_error(QN_ERR_UNSUPPORTED, "%s: architecture '%.*s' is not supported (supported: gemma3)", path,
                     (int)arch_len, arch);
    if (s == QN_OK) s = qn_tokenizer_load(m->gguf, &m->tok);
    if (s == QN_OK) {
        snprintf(m->info.arch, sizeof m->info.arch, "%s", m->arch->name);
        const char *name;
        size_t name_len;
        if (qn_gguf_find_key(m->gguf, "general.name") >= 0 && qn_meta_str(m->gguf, "general.name", &name, &name_len) == QN_OK)
            snprintf(m->info.name, sizeof m->info.name, "%.*s", (int)name_len, name);
        else
            snprintf(m->info.name, sizeof m->info.name, "%s", strrchr(path, '/') ? strrchr(path, '/') + 1 : path);
        m->info.n_vocab = qn_tokenizer_vocab_size(m->tok);
        for (int64_t i = 0; i < qn_gguf_tensor_count(m->gguf); i++) {
            qn_gguf_tensor t;
            if (qn_gguf_tensor_get(m->gguf, i, &t) == QN_OK) m->load_total += t.bytes;
        }
        s = m->arch->load(m);
    }
    if (s != QN_OK) {
        qn_model_free(m);
        return s;
    }
    *out = m;
    return QN_OK;
}

qn_status qn_model_info_get(const qn_model *m, qn_model_info *out) {
    if (!m || !out) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_model_info_get: NULL argument");
    *out = m->info;
    return QN_OK;
}

const qn_tokenizer *qn_model_tokenizer(const qn_model *m) { return m ? m->tok : NULL; }

/* ---- contexts */

void qn_context_free(qn_context *c) {
    if (!c) return;
    if (c->state) c->m->arch->context_free(c);
    qn_graph_destroy(c->step);
    qn_buffer_free(c->ids);
    qn_buffer_free(c->positions);
    qn_buffer_free(c->logits);
    qn_buffer_free(c->counter);
    qn_encoder_destroy(c->enc);
    free(c->host_pos);
    free(c);
}

qn_status qn_context_create(qn_model *m, int32_t n_ctx, qn_context **out) {
    if (!m || !out) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_context_create: NULL argument");
    *out = NULL;
    if (n_ctx < 1 || n_ctx > m->info.n_ctx_train)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_context_create: n_ctx %d not in [1, %d]", n_ctx,
                        m->info.n_ctx_train);
    qn_context *c = calloc(1, sizeof *c);
    if (!c) return qn_error(QN_ERR_OUT_OF_MEMORY, "qn_context_create: out of host memory");
    c->m = m;
    c->n_ctx = n_ctx;
    c->chunk = n_ctx < QN_PREFILL_CHUNK ? n_ctx : QN_PREFILL_CHUNK;
    c->host_pos = malloc((size_t)c->chunk * sizeof *c->host_pos);
    int64_t chunk = c->chunk, vocab = m->info.n_vocab, one = 1;
    qn_status s = c->host_pos ? QN_OK : qn_error(QN_ERR_OUT_OF_MEMORY, "qn_context_create: out of host memory");
    if (s == QN_OK) s = qn_encoder_create(m->dev, &c->enc);
    if (s == QN_OK) s = qn_buffer_alloc(m->dev, QN_I32, 1, &chunk, &c->ids);
    if (s == QN_OK) s = qn_buffer_alloc(m->dev, QN_I32, 1, &chunk, &c->positions);
    if (s == QN_OK) s = qn_buffer_alloc(m->dev, QN_F32, 1, &vocab, &c->logits);
    if (s == QN_OK) s = qn_buffer_alloc(m->dev, QN_I32, 1, &one, &c->counter);
    if (s == QN_OK) s = qn_fill(c->enc, qn_tensor_of(c->counter), 0);
    if (s == QN_OK) s = qn_encoder_commit_wait(c->enc);
    if (s == QN_OK) s = m->arch->context_init(c);
    if (s != QN_OK) {
        qn_context_free(c);
        return s;
    }
    *out = c;
    return QN_OK;
}

int32_t qn_context_pos(const qn_context *c) { return c ? c->pos : 0; }
int32_t qn_context_size(const qn_context *c) { return c ? c->n_ctx : 0; }

void qn_context_reset(qn_context *c) {
    if (!c) return;
    c->pos = 0;
    c->sampled = false;
}

/* Positions p0 .. p0 + n - 1 into c->positions. */
static qn_status write_positions(qn_context *c, int32_t n) {
    for (int32_t t = 0; t < n; t++) c->host_pos[t] = c->pos + t;
    return qn_buffer_write(c->positions, 0, c->host_pos, (size_t)n * sizeof(int32_t));
}

qn_status qn_context_eval(qn_context *c, const int32_t *ids, size_t n) {
    if (!c || (!ids && n)) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_context_eval: NULL argument");
    if (n == 0) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_context_eval: no tokens");
    if ((int64_t)n > (int64_t)c->n_ctx - c->pos)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_context_eval: %zu tokens at position %d exceed the context of %d",
                        n, c->pos, c->n_ctx);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= c->m->info.n_vocab)
            return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_context_eval: token %zu is %d, not in [0, %d)", i, ids[i],
                            c->m->info.n_vocab);
    for (size_t done = 0; done < n;) {
        int32_t k = (int32_t)(n - done < (size_t)c->chunk ? n - done : (size_t)c->chunk);
        QN_TRY(qn_buffer_write(c->ids, 0, ids + done, (size_t)k * sizeof(int32_t)));
        QN_TRY(write_positions(c, k));
        QN_TRY(c->m->arch->forward(c, c->enc, k));
        QN_TRY(qn_encoder_commit_wait(c->enc));
        c->pos += k;
        done += (size_t)k;
    }
    c->sampled = false;
    return QN_OK;
}

qn_status qn_context_logits(qn_context *c, float *out, size_t n) {
    if (!c || !out) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_context_logits: NULL argument");
    if (n != (size_t)c->m->info.n_vocab)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_context_logits: n %zu, the vocabulary has %d", n,
                        c->m->info.n_vocab);
    if (c->pos == 0) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_context_logits: nothing evaluated yet");
    return qn_buffer_read(c->logits, 0, out, n * sizeof(float));
}

static qn_status check_params(const char *op, const qn_sample_params *p) {
    if (!p) return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: NULL params", op);
    if (p->repeat_penalty != 1.0f)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: repeat_penalty %g (only 1: the context keeps no history)", op,
                        (double)p->repeat_penalty);
    return QN_OK;
}

/* The sampler on the device: the last logits into ids[0]. */
static qn_status encode_sample(qn_context *c, const qn_sample_params *p) {
    qn_tensor token = qn_tensor_make(c->ids, 0, QN_I32, 1, 1, 1, 1);
    qn_tensor logits = qn_tensor_make(c->logits, 0, QN_F32, c->m->info.n_vocab, 1, 1, 1);
    return qn_sample(c->enc, token, QN_TENSOR_NONE, logits, QN_TENSOR_NONE, qn_tensor_of(c->counter), p);
}

qn_status qn_context_sample(qn_context *c, const qn_sample_params *p, int32_t *token) {
    if (!c || !token) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_context_sample: NULL argument");
    QN_TRY(check_params("qn_context_sample", p));
    if (c->pos == 0) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_context_sample: nothing evaluated yet");
    QN_TRY(encode_sample(c, p));
    QN_TRY(qn_encoder_commit_wait(c->enc));
    QN_TRY(qn_buffer_read(c->ids, 0, token, sizeof *token));
    c->sampled = true;
    return QN_OK;
}

static bool same_params(const qn_sample_params *a, const qn_sample_params *b) {
    return a->temperature == b->temperature && a->top_k == b->top_k && a->top_p == b->top_p && a->min_p == b->min_p &&
           a->repeat_penalty == b->repeat_penalty && a->seed == b->seed;
}

qn_status qn_context_queue_step(qn_context *c, int32_t pos) {
    if (!c->step) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_context_queue_step: no decode step captured yet");
    /* The position goes in on the stream, ahead of the replay: no host sync
     * (exact as a float: positions stay below 2^24). */
    QN_TRY(qn_fill(c->enc, qn_tensor_make(c->positions, 0, QN_I32, 1, 1, 1, 1), (float)pos));
    return qn_graph_launch(c->step, c->enc);
}

qn_status qn_context_decode(qn_context *c, const qn_sample_params *p, int32_t *token) {
    if (!c || !token) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_context_decode: NULL argument");
    QN_TRY(check_params("qn_context_decode", p));
    if (!c->sampled) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_context_decode: no sampled token to evaluate");
    if (c->pos >= c->n_ctx)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_context_decode: the context of %d is full", c->n_ctx);
    if (c->step && !same_params(&c->step_params, p)) {
        qn_graph_destroy(c->step);
        c->step = NULL;
    }
    if (!c->step) {
        /* One decode step: the forward pass of ids[0] at positions[0], then
         * the sampler writing the next id over ids[0]. Nothing in it comes
         * from the host, so the same graph serves every step. */
        QN_TRY(qn_graph_begin(c->enc));
        qn_status s = c->m->arch->forward(c, c->enc, 1);
        if (s == QN_OK) s = encode_sample(c, p);
        qn_graph *g = NULL;
        qn_status e = qn_graph_end(c->enc, &g);
        if (s == QN_OK) s = e;
        if (s != QN_OK) {
            qn_graph_destroy(g);
            return s;
        }
        c->step = g;
        c->step_params = *p;
    }
    QN_TRY(qn_context_queue_step(c, c->pos));
    QN_TRY(qn_encoder_commit_wait(c->enc));
    QN_TRY(qn_buffer_read(c->ids, 0, token, sizeof *token));
    c->pos++;
    return QN_OK;
}
