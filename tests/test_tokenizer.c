/* The SentencePiece tokenizer and the model loader's metadata checks on
 * small GGUF files written here (no model needed): merge order by score and
 * position, byte fallback, special and user-defined tokens, the space
 * prefix, decoding, and an error naming the key or tensor for each kind of
 * bad file. The real vocabulary is checked against llama.cpp in
 * test_gemma3.c. */
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { T_NORMAL = 1, T_UNKNOWN = 2, T_CONTROL = 3, T_USER = 4, T_BYTE = 6 };
enum { UNK = 0, BOS = 1, EOS = 2, BYTE0 = 3 }; /* bytes: BYTE0 + b */
enum { SP = 259, A, B, AB, SP_A, BA, AA, TAG, E_ACUTE, NL2, START, N_VOCAB };

static const char *texts[N_VOCAB];
static float scores[N_VOCAB];
static int32_t types[N_VOCAB];

static void vocab(void) {
    static char bytes[256][8];
    texts[UNK] = "<unk>", types[UNK] = T_UNKNOWN;
    texts[BOS] = "<bos>", types[BOS] = T_CONTROL;
    texts[EOS] = "<eos>", types[EOS] = T_CONTROL;
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        texts[BYTE0 + b] = bytes[b], types[BYTE0 + b] = T_BYTE;
    }
    struct { int id; const char *t; float s; int ty; } rest[] = {
        {SP, "\xe2\x96\x81", -1, T_NORMAL}, {A, "a", -2, T_NORMAL},       {B, "b", -2, T_NORMAL},
        {AB, "ab", -1.5f, T_NORMAL},        {SP_A, "\xe2\x96\x81" "a", -1, T_NORMAL},
        {BA, "ba", -1, T_NORMAL},           {AA, "aa", -1, T_NORMAL},     {TAG, "<tag>", 0, T_USER},
        {E_ACUTE, "\xc3\xa9", -3, T_NORMAL}, {NL2, "\n\n", 0, T_USER},    {START, "<start>", 0, T_CONTROL},
    };
    for (size_t i = 0; i < sizeof rest / sizeof rest[0]; i++)
        texts[rest[i].id] = rest[i].t, scores[rest[i].id] = rest[i].s, types[rest[i].id] = rest[i].ty;
}

/* What a test file may change. */
typedef struct {
    const char *model;       /* tokenizer.ggml.model                   */
    int n_scores;            /* length of the scores array            */
    bool types_as_float;     /* token_type written as float32         */
    bool add_space_prefix;
    bool add_bos_as_string;  /* tokenizer.ggml.add_bos_token mistyped */
    uint32_t bos;
    const char *arch;        /* general.architecture (NULL: none)     */
    bool embd_as_string;     /* gemma3.embedding_length mistyped      */
    bool no_block_count;
    int64_t embd_rows;       /* token_embd.weight rows; 0: no tensor  */
} spec;

static spec base(void) {
    return (spec){.model = "llama", .n_scores = N_VOCAB, .bos = BOS, .arch = NULL, .embd_rows = 0};
}

static const char *write_file(const spec *s) {
    static char path[256];
    snprintf(path, sizeof path, "/tmp/quanta_test_tokenizer_%d.gguf", (int)getpid());
    qn_gguf_writer *w;
    QT_OK(qn_gguf_writer_create(&w));
    if (s->arch) QT_OK(qn_gguf_writer_set_str(w, "general.architecture", s->arch));
    QT_OK(qn_gguf_writer_set_str(w, "tokenizer.ggml.model", s->model));
    QT_OK(qn_gguf_writer_set_str_array(w, "tokenizer.ggml.tokens", texts, N_VOCAB));
    QT_OK(qn_gguf_writer_set_array(w, "tokenizer.ggml.scores", QN_GGUF_FLOAT32, scores, (uint64_t)s->n_scores));
    if (s->types_as_float) {
        float f[N_VOCAB] = {0};
        QT_OK(qn_gguf_writer_set_array(w, "tokenizer.ggml.token_type", QN_GGUF_FLOAT32, f, N_VOCAB));
    } else {
        QT_OK(qn_gguf_writer_set_array(w, "tokenizer.ggml.token_type", QN_GGUF_INT32, types, N_VOCAB));
    }
    QT_OK(qn_gguf_writer_set_scalar(w, "tokenizer.ggml.bos_token_id", QN_GGUF_UINT32, &s->bos));
    uint32_t eos = EOS, unk = UNK;
    QT_OK(qn_gguf_writer_set_scalar(w, "tokenizer.ggml.eos_token_id", QN_GGUF_UINT32, &eos));
    QT_OK(qn_gguf_writer_set_scalar(w, "tokenizer.ggml.unknown_token_id", QN_GGUF_UINT32, &unk));
    if (s->add_bos_as_string) QT_OK(qn_gguf_writer_set_str(w, "tokenizer.ggml.add_bos_token", "yes"));
    bool prefix = s->add_space_prefix;
    QT_OK(qn_gguf_writer_set_scalar(w, "tokenizer.ggml.add_space_prefix", QN_GGUF_BOOL, &prefix));
    if (s->arch && strcmp(s->arch, "gemma3") == 0) {
        uint32_t one = 1, embd = 64, ctx = 128;
        if (s->embd_as_string) QT_OK(qn_gguf_writer_set_str(w, "gemma3.embedding_length", "64"));
        else QT_OK(qn_gguf_writer_set_scalar(w, "gemma3.embedding_length", QN_GGUF_UINT32, &embd));
        if (!s->no_block_count) QT_OK(qn_gguf_writer_set_scalar(w, "gemma3.block_count", QN_GGUF_UINT32, &one));
        QT_OK(qn_gguf_writer_set_scalar(w, "gemma3.feed_forward_length", QN_GGUF_UINT32, &embd));
        QT_OK(qn_gguf_writer_set_scalar(w, "gemma3.context_length", QN_GGUF_UINT32, &ctx));
        QT_OK(qn_gguf_writer_set_scalar(w, "gemma3.attention.head_count", QN_GGUF_UINT32, &one));
        QT_OK(qn_gguf_writer_set_scalar(w, "gemma3.attention.key_length", QN_GGUF_UINT32, &embd));
    }
    if (s->embd_rows) QT_OK(qn_gguf_writer_add_tensor(w, "token_embd.weight", QN_F32, 2, (int64_t[]){64, s->embd_rows}));
    QT_OK(qn_gguf_writer_begin(w, path));
    if (s->embd_rows) {
        size_t bytes = (size_t)(64 * s->embd_rows) * sizeof(float);
        float *zero = calloc(1, bytes);
        QT_OK(qn_gguf_writer_write_tensor(w, zero, bytes));
        free(zero);
    }
    QT_OK(qn_gguf_writer_finish(w));
    qn_gguf_writer_destroy(w);
    return path;
}

static qn_tokenizer *open_tok(const spec *s) {
    const char *path = write_file(s);
    qn_gguf *g;
    qn_tokenizer *t;
    QT_OK(qn_gguf_open(path, &g));
    QT_OK(qn_tokenizer_load(g, &t));
    qn_gguf_close(g); /* the tokenizer keeps its own copy */
    unlink(path);
    return t;
}

static void expect(const qn_tokenizer *t, const char *text, bool bos, bool special, const int32_t *want, size_t n) {
    int32_t got[64];
    size_t ng;
    QT_OK(qn_tokenize(t, text, strlen(text), bos, special, got, 64, &ng));
    if (ng != n || memcmp(got, want, n * sizeof *got) != 0) {
        fprintf(stderr, "'%s': got", text);
        for (size_t i = 0; i < ng; i++) fprintf(stderr, " %d", got[i]);
        fprintf(stderr, ", want");
        for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", want[i]);
        fail_msg("tokenization of '%s' differs", text);
    }
}

#define EXPECT(t, text, bos, special, ...)                                                        \
    do {                                                                                          \
        const int32_t want_[] = {__VA_ARGS__};                                                    \
        expect(t, text, bos, special, want_, sizeof want_ / sizeof want_[0]);                      \
    } while (0)

static void test_encode(void **state) {
    (void)state;
    spec s = base();
    qn_tokenizer *t = open_tok(&s);
    assert_int_equal(qn_tokenizer_vocab_size(t), N_VOCAB);
    EXPECT(t, "ab", true, false, BOS, AB);
    EXPECT(t, "ab", false, false, AB);
    /* "ba" (-1) beats "ab" (-1.5): a | ba */
    EXPECT(t, "aba", false, false, A, BA);
    /* "ba" and "aa" tie at -1: the left pair first */
    EXPECT(t, "baa", false, false, BA, A);
    EXPECT(t, " a", false, false, SP_A);
    EXPECT(t, "a a", false, false, A, SP_A);
    /* byte fallback: 'x' and the two bytes of U+00EA */
    EXPECT(t, "x\xc3\xaa\xc3\xa9", false, false, BYTE0 + 'x', BYTE0 + 0xc3, BYTE0 + 0xaa, E_ACUTE);
    /* control tokens only when parsed; user-defined ones always */
    EXPECT(t, "a<start>b", false, true, A, START, B);
    EXPECT(t, "<start>", false, false, BYTE0 + '<', BYTE0 + 's', BYTE0 + 't', A, BYTE0 + 'r', BYTE0 + 't',
           BYTE0 + '>');
    EXPECT(t, "a<tag>b<tag>", false, false, A, TAG, B, TAG);
    EXPECT(t, "\n\n\n", false, false, NL2, BYTE0 + '\n');
    EXPECT(t, "<bos>", false, true, BOS);
    int32_t none[1];
    size_t n = 9;
    QT_OK(qn_tokenize(t, "", 0, false, false, none, 1, &n));
    assert_int_equal(n, 0);
    QT_FAILS(qn_tokenize(t, "abx", 3, false, false, none, 1, &n), QN_ERR_INVALID_ARGUMENT, "2 tokens do not fit in cap 1");
    assert_int_equal(n, 2);
    assert_int_equal(qn_token_find(t, "<tag>"), TAG);
    assert_int_equal(qn_token_find(t, "nope"), -1);
    qn_tokenizer_free(t);

    /* With the space prefix: a space in front of the text and after a special token. */
    s.add_space_prefix = true;
    t = open_tok(&s);
    EXPECT(t, "a", true, false, BOS, SP_A);
    EXPECT(t, "<start>a", false, true, START, SP_A);
    qn_tokenizer_free(t);
}

static void test_decode(void **state) {
    (void)state;
    spec s = base();
    qn_tokenizer *t = open_tok(&s);
    struct { int id; bool special; const char *want; } cases[] = {
        {SP_A, false, " a"}, {BYTE0 + 'A', false, "A"}, {BYTE0 + 0xff, false, "\xff"}, {START, false, ""},
        {START, true, "<start>"}, {UNK, false, ""}, {UNK, true, "<unk>"}, {TAG, false, "<tag>"}, {E_ACUTE, false, "\xc3\xa9"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *p;
        size_t len;
        QT_OK(qn_token_to_piece(t, cases[i].id, cases[i].special, &p, &len));
        assert_int_equal(len, strlen(cases[i].want));
        assert_memory_equal(p, cases[i].want, len);
    }
    const char *p;
    size_t len;
    QT_FAILS(qn_token_to_piece(t, -1, false, &p, &len), QN_ERR_INVALID_ARGUMENT, "id -1 not in [0, 270)");
    assert_true(qn_token_is_eog(t, EOS));
    assert_false(qn_token_is_eog(t, BOS));
    assert_int_equal(qn_tokenizer_bos(t), BOS);
    qn_tokenizer_free(t);
}

static void tok_fails(const spec *s, qn_status want, const char *needle) {
    const char *path = write_file(s);
    qn_gguf *g;
    qn_tokenizer *t = (qn_tokenizer *)1;
    QT_OK(qn_gguf_open(path, &g));
    QT_FAILS(qn_tokenizer_load(g, &t), want, needle);
    assert_null(t);
    qn_gguf_close(g);
    unlink(path);
}

static void test_tokenizer_errors(void **state) {
    (void)state;
    spec s = base();
    s.model = "gpt2";
    tok_fails(&s, QN_ERR_UNSUPPORTED, "tokenizer.ggml.model: 'gpt2' is not supported");
    s = base();
    s.n_scores = 3;
    tok_fails(&s, QN_ERR_FORMAT, "tokenizer.ggml.scores has 3 elements, expected 270");
    s = base();
    s.types_as_float = true;
    tok_fails(&s, QN_ERR_FORMAT, "tokenizer.ggml.token_type is an array of float32, expected int32");
    s = base();
    s.bos = 9999;
    tok_fails(&s, QN_ERR_FORMAT, "tokenizer.ggml.bos_token_id: token id 9999 is not in the vocabulary of 270");
    s = base();
    s.add_bos_as_string = true;
    tok_fails(&s, QN_ERR_FORMAT, "tokenizer.ggml.add_bos_token is a string, expected an integer");
}

static void model_fails(const spec *s, qn_status want, const char *needle) {
    const char *path = write_file(s);
    qn_model *m = (qn_model *)1;
    QT_FAILS(qn_model_load(qt_cpu(), path, NULL, NULL, &m), want, needle);
    assert_null(m);
    unlink(path);
}

static void test_model_errors(void **state) {
    (void)state;
    spec s = base();
    model_fails(&s, QN_ERR_FORMAT, "metadata key general.architecture is missing");
    s.arch = "llama";
    model_fails(&s, QN_ERR_UNSUPPORTED, "architecture 'llama' is not supported");
    s.arch = "gemma3";
    s.embd_as_string = true;
    model_fails(&s, QN_ERR_FORMAT, "metadata key gemma3.embedding_length is a string, expected an integer");
    s.embd_as_string = false;
    s.no_block_count = true;
    model_fails(&s, QN_ERR_FORMAT, "metadata key gemma3.block_count is missing");
    s.no_block_count = false;
    model_fails(&s, QN_ERR_FORMAT, "tensor token_embd.weight is missing");
    s.embd_rows = 100;
    model_fails(&s, QN_ERR_FORMAT, "tensor token_embd.weight has shape [64 x 100], expected [64 x 270]");
    s.embd_rows = N_VOCAB;
    model_fails(&s, QN_ERR_FORMAT, "tensor blk.0.attn_norm.weight is missing");
    QT_FAILS(qn_model_load(qt_cpu(), "/nonexistent/model.gguf", NULL, NULL, &(qn_model *){0}), QN_ERR_IO,
             "/nonexistent/model.gguf");
}

static int teardown(void **state) {
    (void)state;
    qt_close_devices();
    return 0;
}

int main(void) {
    vocab();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode),
        cmocka_unit_test(test_decode),
        cmocka_unit_test(test_tokenizer_errors),
        cmocka_unit_test(test_model_errors),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
