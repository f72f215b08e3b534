/* The SentencePiece-style tokenizer of a GGUF vocabulary (tokenizer.ggml.model
 * "llama"), encoding and decoding as llama.cpp does.
 *
 * Encoding, in order:
 *   1. Special tokens are cut out of the text first, longest text first (ties:
 *      lower id), every occurrence left to right. User-defined tokens (type 4)
 *      are always cut out; control and unknown tokens (types 3, 2) only when
 *      the caller parses special tokens.
 *   2. Each remaining piece of text has its spaces replaced by U+2581 (with
 *      one added in front where the vocabulary asks for a space prefix and the
 *      piece starts the text or follows a special token), is split into UTF-8
 *      characters, and adjacent symbols are merged greedily: always the pair
 *      whose merged text is a token of the highest score, the leftmost pair on
 *      a tie, until no pair forms a token.
 *   3. A symbol that is not a token becomes its bytes' tokens <0xXX>.
 *   BOS goes in front when asked for and the vocabulary says so.
 * Decoding a token: normal tokens with U+2581 back to spaces, byte tokens as
 * their byte, user-defined tokens as their text, control and unknown tokens
 * as their text only when asked for (else nothing), others nothing. */
#include "models/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };

struct qn_tokenizer {
    int32_t n;            /* vocabulary size                                  */
    char *text;           /* every token's text back to back                  */
    int64_t *off;         /* [n + 1]: token i is text[off[i] .. off[i+1])     */
    float *score;         /* [n]                                              */
    uint8_t *type;        /* [n] GGUF token types                             */
    char *piece;          /* decoded text of every token (special shown)      */
    int64_t *piece_off;   /* [n + 1]                                          */
    int32_t *hash;        /* open addressing: token ids, -1 empty             */
    uint64_t hash_mask;
    int32_t *special;     /* ids cut out before merging, longest text first   */
    int32_t n_special;
    int32_t byte_id[256]; /* token of each byte, -1 if the vocabulary lacks it */
    int32_t bos, eos, eot, unk;
    bool add_bos, add_eos, add_space_prefix;
};

static uint64_t fnv1a(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

static int64_t tok_len(const qn_tokenizer *t, int32_t id) { return t->off[id + 1] - t->off[id]; }

/* The id whose text is exactly s[0..n), or -1. */
static int32_t find_token(const qn_tokenizer *t, const char *s, size_t n) {
    for (uint64_t h = fnv1a(s, n) & t->hash_mask;; h = (h + 1) & t->hash_mask) {
        int32_t id = t->hash[h];
        if (id < 0) return -1;
        if ((size_t)tok_len(t, id) == n && memcmp(t->text + t->off[id], s, n) == 0) return id;
    }
}

void qn_tokenizer_free(qn_tokenizer *t) {
    if (!t) return;
    free(t->text);
    free(t->off);
    free(t->score);
    free(t->type);
    free(t->piece);
    free(t->piece_off);
    free(t->hash);
    free(t->special);
    free(t);
}

/* An optional token id key: -1 when absent. */
static qn_status opt_id(const qn_gguf *g, const char *key, int32_t n, int32_t *out) {
    int64_t v = -1;
    QN_TRY(qn_meta_int(g, key, false, -1, &v));
    if (v != -1 && (v < 0 || v >= n))
        return qn_error(QN_ERR_FORMAT, "%s: token id %lld is not in the vocabulary of %d", key, (long long)v, n);
    *out = (int32_t)v;
    return QN_OK;
}

static int cmp_special(const void *a, const void *b, void *ctx) {
    const qn_tokenizer *t = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    int64_t lx = tok_len(t, x), ly = tok_len(t, y);
    if (lx != ly) return lx > ly ? -1 : 1;
    return x < y ? -1 : 1;
}

/* Token text to the text it decodes to (special tokens shown). */
static size_t decode_piece(const qn_tokenizer *t, int32_t id, char *out) {
    const char *s = t->text + t->off[id];
    size_t n = (size_t)tok_len(t, id), k = 0;
    switch (t->type[id]) {
    case TT_NORMAL:
        for (size_t i = 0; i < n; i++) {
            if (i + 2 < n && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
                out[k++] = ' ';
                i += 2;
            } else {
                out[k++] = s[i];
            }
        }
        return k;
    case TT_BYTE:
        out[0] = (char)strtol(s + 3, NULL, 16); /* "<0xXX>", checked at load */
        return 1;
    case TT_UNKNOWN:
    case TT_CONTROL:
    case TT_USER:
        memcpy(out, s, n);
        return n;
    default:
        return 0;
    }
}

qn_status qn_tokenizer_load(const qn_gguf *g, qn_tokenizer **out) {
    if (!g || !out) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_tokenizer_load: NULL argument");
    *out = NULL;
    const char *model;
    size_t model_len;
    qn_gguf_value v;
    QN_TRY(qn_meta_str(g, "tokenizer.ggml.model", &model, &model_len));
    if (model_len != 5 || memcmp(model, "llama", 5) != 0)
        return qn_error(QN_ERR_UNSUPPORTED, "tokenizer.ggml.model: '%.*s' is not supported (only 'llama', SentencePiece)",
                        (int)model_len, model);

    qn_gguf_value tokens, scores, types;
    QN_TRY(qn_meta_array(g, "tokenizer.ggml.tokens", QN_GGUF_STRING, -1, &tokens));
    if (tokens.count == 0 || tokens.count > INT32_MAX / 2)
        return qn_error(QN_ERR_FORMAT, "tokenizer.ggml.tokens: %llu tokens", (unsigned long long)tokens.count);
    int32_t n = (int32_t)tokens.count;
    QN_TRY(qn_meta_array(g, "tokenizer.ggml.scores", QN_GGUF_FLOAT32, n, &scores));
    QN_TRY(qn_meta_array(g, "tokenizer.ggml.token_type", QN_GGUF_INT32, n, &types));

    qn_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return qn_error(QN_ERR_OUT_OF_MEMORY, "qn_tokenizer_load: out of host memory");
    t->n = n;
    int64_t total = 0;
    for (int32_t i = 0; i < n; i++) {
        QN_TRY(qn_gguf_array_get(&tokens, (uint64_t)i, &v));
        total += (int64_t)v.count;
    }
    uint64_t slots = 1;
    while (slots < 2 * (uint64_t)n) slots <<= 1;
    t->text = malloc((size_t)total + 1);
    t->off = malloc(((size_t)n + 1) * sizeof *t->off);
    t->score = malloc((size_t)n * sizeof *t->score);
    t->type = malloc((size_t)n);
    t->piece = malloc((size_t)total + 1);
    t->piece_off = malloc(((size_t)n + 1) * sizeof *t->piece_off);
    t->hash = malloc(slots * sizeof *t->hash);
    t->special = malloc((size_t)n * sizeof *t->special);
    if (!t->text || !t->off || !t->score || !t->type || !t->piece || !t->piece_off || !t->hash || !t->special) {
        qn_tokenizer_free(t);
        return qn_error(QN_ERR_OUT_OF_MEMORY, "qn_tokenizer_load: out of host memory for %d tokens", n);
    }
    t->hash_mask = slots - 1;
    memset(t->hash, 0xff, slots * sizeof *t->hash);
    memset(t->byte_id, 0xff, sizeof t->byte_id);

    qn_status s = QN_OK;
    int64_t at = 0;
    for (int32_t i = 0; i < n && s == QN_OK; i++) {
        const char *str;
        size_t len;
        qn_gguf_array_get(&tokens, (uint64_t)i, &v);
        qn_gguf_value_str(&v, &str, &len);
        t->off[i] = at;
        memcpy(t->text + at, str, len);
        at += (int64_t)len;
        int32_t ty;
        memcpy(&t->score[i], (const char *)scores.data + 4 * (size_t)i, 4);
        memcpy(&ty, (const char *)types.data + 4 * (size_t)i, 4);
        if (ty < TT_NORMAL || ty > TT_BYTE) ty = 0; /* undefined: decodes to nothing */
        t->type[i] = (uint8_t)ty;
        if (len == 0) s = qn_error(QN_ERR_FORMAT, "tokenizer.ggml.tokens: token %d is empty", i);
        if (ty == TT_BYTE && (len != 6 || memcmp(str, "<0x", 3) != 0 || str[5] != '>'))
            s = qn_error(QN_ERR_FORMAT, "tokenizer.ggml.tokens: byte token %d is '%.*s', not <0xXX>", i, (int)len, str);
    }
    t->off[n] = at;
    for (int32_t i = 0; i < n && s == QN_OK; i++) {
        uint64_t h = fnv1a(t->text + t->off[i], (size_t)tok_len(t, i)) & t->hash_mask;
        while (t->hash[h] >= 0) {
            int32_t j = t->hash[h];
            if (tok_len(t, j) == tok_len(t, i) && memcmp(t->text + t->off[j], t->text + t->off[i], (size_t)tok_len(t, i)) == 0) {
                s = qn_error(QN_ERR_FORMAT, "tokenizer.ggml.tokens: tokens %d and %d have the same text", j, i);
                break;
            }
            h = (h + 1) & t->hash_mask;
        }
        t->hash[h] = i;
    }
    if (s != QN_OK) {
        qn_tokenizer_free(t);
        return s;
    }

    int64_t p = 0;
    for (int32_t i = 0; i < n; i++) {
        t->piece_off[i] = p;
        p += (int64_t)decode_piece(t, i, t->piece + p);
        if (t->type[i] == TT_CONTROL || t->type[i] == TT_USER || t->type[i] == TT_UNKNOWN) t->special[t->n_special++] = i;
    }
    t->piece_off[n] = p;
    qsort_r(t->special, (size_t)t->n_special, sizeof *t->special, cmp_special, t);

    for (int b = 0; b < 256; b++) {
        char hex[8];
        snprintf(hex, sizeof hex, "<0x%02X>", b);
        t->byte_id[b] = find_token(t, hex, 6);
        if (t->byte_id[b] < 0) {
            char one = (char)b;
            t->byte_id[b] = find_token(t, &one, 1);
        }
    }

    int64_t flag;
    if ((s = opt_id(g, "tokenizer.ggml.bos_token_id", n, &t->bos)) != QN_OK ||
        (s = opt_id(g, "tokenizer.ggml.eos_token_id", n, &t->eos)) != QN_OK ||
        (s = opt_id(g, "tokenizer.ggml.eot_token_id", n, &t->eot)) != QN_OK ||
        (s = opt_id(g, "tokenizer.ggml.unknown_token_id", n, &t->unk)) != QN_OK ||
        (s = qn_meta_int(g, "tokenizer.ggml.add_bos_token", false, 1, &flag)) != QN_OK) {
        qn_tokenizer_free(t);
        return s;
    }
    t->add_bos = flag != 0;
    if ((s = qn_meta_int(g, "tokenizer.ggml.add_eos_token", false, 0, &flag)) != QN_OK) goto fail;
    t->add_eos = flag != 0;
    if ((s = qn_meta_int(g, "tokenizer.ggml.add_space_prefix", false, 1, &flag)) != QN_OK) goto fail;
    t->add_space_prefix = flag != 0;
    if (t->add_bos && t->bos < 0) {
        s = qn_error(QN_ERR_FORMAT, "tokenizer.ggml.add_bos_token is set but tokenizer.ggml.bos_token_id is missing");
        goto fail;
    }
    if (t->add_eos && t->eos < 0) {
        s = qn_error(QN_ERR_FORMAT, "tokenizer.ggml.add_eos_token is set but tokenizer.ggml.eos_token_id is missing");
        goto fail;
    }
    /* Chat models end a turn with a token of their own. */
    if (t->eot < 0) t->eot = find_token(t, "<end_of_turn>", 13);
    *out = t;
    return QN_OK;
fail:
    qn_tokenizer_free(t);
    return s;
}

int32_t qn_tokenizer_vocab_size(const qn_tokenizer *t) { return t ? t->n : 0; }
int32_t qn_tokenizer_bos(const qn_tokenizer *t) { return t ? t->bos : -1; }
int32_t qn_tokenizer_eos(const qn_tokenizer *t) { return t ? t->eos : -1; }
bool qn_token_is_eog(const qn_tokenizer *t, int32_t id) { return t && id >= 0 && (id == t->eos || id == t->eot); }
int32_t qn_token_find(const qn_tokenizer *t, const char *text) {
    return t && text && *text ? find_token(t, text, strlen(text)) : -1;
}

qn_status qn_token_to_piece(const qn_tokenizer *t, int32_t id, bool special, const char **piece, size_t *len) {
    if (!t || !piece || !len) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_token_to_piece: NULL argument");
    if (id < 0 || id >= t->n)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_token_to_piece: id %d not in [0, %d)", id, t->n);
    *piece = t->piece + t->piece_off[id];
    *len = (size_t)(t->piece_off[id + 1] - t->piece_off[id]);
    if (!special && (t->type[id] == TT_CONTROL || t->type[id] == TT_UNKNOWN)) *len = 0;
    return QN_OK;
}

/* ---- encoding */

/* The output: ids written while they fit, all counted. */
typedef struct {
    int32_t *ids;
    size_t cap, n;
} sink;

static void emit(sink *o, int32_t id) {
    if (o->n < o->cap) o->ids[o->n] = id;
    o->n++;
}

/* A run of text (is_token false) or a special token cut out of it. */
typedef struct {
    bool is_token;
    int32_t id;
    size_t off, len;
} fragment;

typedef struct {
    int32_t left, right;
    float score;
    size_t size;
} bigram;

/* Heap order: the higher score first, then the lower left index. */
static bool before(const bigram *a, const bigram *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

typedef struct {
    bigram *v;
    size_t n, cap;
} heap;

static bool heap_push(heap *h, bigram b) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 64;
        bigram *v = realloc(h->v, cap * sizeof *v);
        if (!v) return false;
        h->v = v;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0 && before(&b, &h->v[(i - 1) / 2])) {
        h->v[i] = h->v[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->v[i] = b;
    return true;
}

static bigram heap_pop(heap *h) {
    bigram top = h->v[0], last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && before(&h->v[c + 1], &h->v[c])) c++;
        if (!before(&h->v[c], &last)) break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n) h->v[i] = last;
    return top;
}

typedef struct {
    size_t off, n; /* bytes of the escaped text; n 0 once merged away */
    int32_t prev, next;
} symbol;

static bool try_pair(const qn_tokenizer *t, const char *s, const symbol *sym, int32_t l, int32_t r, heap *h) {
    if (l < 0 || r < 0) return true;
    size_t size = sym[l].n + sym[r].n;
    int32_t id = find_token(t, s + sym[l].off, size);
    if (id < 0) return true;
    return heap_push(h, (bigram){l, r, t->score[id], size});
}

/* Step 2 and 3 on escaped text s[0..n). */
static qn_status merge_text(const qn_tokenizer *t, const char *s, size_t n, sink *o) {
    static const uint8_t utf8_len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    symbol *sym = malloc((n + 1) * sizeof *sym);
    heap h = {0};
    if (!sym) return qn_error(QN_ERR_OUT_OF_MEMORY, "qn_tokenize: out of host memory");
    int32_t count = 0;
    for (size_t at = 0; at < n; count++) {
        size_t len = utf8_len[(uint8_t)s[at] >> 4];
        if (len > n - at) len = n - at;
        sym[count] = (symbol){at, len, count - 1, at + len == n ? -1 : count + 1};
        at += len;
    }
    bool ok = true;
    for (int32_t i = 1; i < count && ok; i++) ok = try_pair(t, s, sym, i - 1, i, &h);
    while (ok && h.n) {
        bigram b = heap_pop(&h);
        symbol *l = &sym[b.left], *r = &sym[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) sym[r->next].prev = b.left;
        ok = try_pair(t, s, sym, l->prev, b.left, &h) && try_pair(t, s, sym, b.left, l->next, &h);
    }
    for (int32_t i = 0; ok && count > 0 && i != -1; i = sym[i].next) {
        int32_t id = find_token(t, s + sym[i].off, sym[i].n);
        if (id >= 0) {
            emit(o, id);
            continue;
        }
        for (size_t j = 0; j < sym[i].n; j++) {
            int32_t b = t->byte_id[(uint8_t)s[sym[i].off + j]];
            emit(o, b >= 0 ? b : t->unk);
        }
    }
    free(sym);
    free(h.v);
    return ok ? QN_OK : qn_error(QN_ERR_OUT_OF_MEMORY, "qn_tokenize: out of host memory");
}

/* Cut every occurrence of special token `id` out of the text fragments. */
static qn_status cut_special(const qn_tokenizer *t, const char *text, int32_t id, fragment **frags, size_t *nf,
                             size_t *capf) {
    const char *tt = t->text + t->off[id];
    size_t tl = (size_t)tok_len(t, id);
    for (size_t i = 0; i < *nf; i++) {
        fragment f = (*frags)[i];
        if (f.is_token || f.len < tl) continue;
        const char *hit = memmem(text + f.off, f.len, tt, tl);
        if (!hit) continue;
        /* Replace f by [left], token, [right]; the right part is looked at
         * again by the next iteration. */
        size_t left = (size_t)(hit - (text + f.off)), right = f.len - left - tl;
        if (*nf + 2 > *capf) {
            size_t cap = 2 * *capf + 4;
            fragment *v = realloc(*frags, cap * sizeof *v);
            if (!v) return qn_error(QN_ERR_OUT_OF_MEMORY, "qn_tokenize: out of host memory");
            *frags = v;
            *capf = cap;
        }
        fragment parts[3];
        size_t k = 0;
        if (left) parts[k++] = (fragment){false, -1, f.off, left};
        parts[k++] = (fragment){true, id, 0, 0};
        if (right) parts[k++] = (fragment){false, -1, f.off + left + tl, right};
        memmove(*frags + i + k, *frags + i + 1, (*nf - i - 1) * sizeof **frags);
        memcpy(*frags + i, parts, k * sizeof *parts);
        *nf += k - 1;
        /* Go on with the right part, or after the token. */
        size_t next = right ? i + k - 1 : i + k;
        i = next - 1;
    }
    return QN_OK;
}

qn_status qn_tokenize(const qn_tokenizer *t, const char *text, size_t len, bool add_special, bool parse_special,
                      int32_t *ids, size_t cap, size_t *n_ids) {
    if (!t || (!text && len) || (!ids && cap) || !n_ids)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_tokenize: NULL argument");
    sink o = {ids, cap, 0};
    size_t nf = 0, capf = 16;
    fragment *frags = malloc(capf * sizeof *frags);
    char *esc = malloc(3 * len + 4);
    qn_status s = QN_OK;
    if (!frags || !esc) {
        s = qn_error(QN_ERR_OUT_OF_MEMORY, "qn_tokenize: out of host memory");
        goto done;
    }
    if (len) frags[nf++] = (fragment){false, -1, 0, len};
    for (int32_t i = 0; i < t->n_special && s == QN_OK; i++) {
        int32_t id = t->special[i];
        if (!parse_special && (t->type[id] == TT_CONTROL || t->type[id] == TT_UNKNOWN)) continue;
        s = cut_special(t, text, id, &frags, &nf, &capf);
    }
    if (add_special && t->add_bos) emit(&o, t->bos);
    bool prev_special = true;
    for (size_t i = 0; i < nf && s == QN_OK; i++) {
        if (frags[i].is_token) {
            emit(&o, frags[i].id);
            prev_special = true;
            continue;
        }
        size_t k = 0;
        if (t->add_space_prefix && prev_special) {
            memcpy(esc, "\xe2\x96\x81", 3);
            k = 3;
        }
        for (size_t j = 0; j < frags[i].len; j++) {
            char c = text[frags[i].off + j];
            if (c == ' ') {
                memcpy(esc + k, "\xe2\x96\x81", 3);
                k += 3;
            } else {
                esc[k++] = c;
            }
        }
        s = merge_text(t, esc, k, &o);
        prev_special = false;
    }
    if (s == QN_OK && add_special && t->add_eos) emit(&o, t->eos);
    *n_ids = o.n;
    if (s == QN_OK && o.n > cap)
        s = qn_error(QN_ERR_INVALID_ARGUMENT, "qn_tokenize: %zu tokens do not fit in cap %zu", o.n, cap);
done:
    free(frags);
    free(esc);
    return s;
}
