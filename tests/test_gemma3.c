/* Gemma 3 270M end to end against llama.cpp on the same GGUF file: the
 * tokenizer, the next-token logits and greedy continuations (the fixtures in
 * tests/fixtures/gemma3/ come from scripts/gen_gemma_fixtures.py).
 *
 * The model comes from scripts/fetch-model.sh (QUANTA_MODEL_DIR, else the
 * cache). Without it the tests skip, except under QUANTA_REQUIRE_MODEL=1
 * (CI), where they fail. On a GPU (QUANTA_BACKEND=cuda) the logits are
 * checked on the GPU, and the GPU's greedy tokens must equal the CPU's. */
#include "util.h"
#include "formats/json.h"
#include "models/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Two references (scripts/gen_gemma_fixtures.py): llama.cpp on the CPU,
 * which quantizes activations to 8 bits before each matrix product and so
 * moves logits (of magnitude ~20) by up to ~0.4 on this model; and a
 * float64 NumPy forward pass from the gguf package's dequantized weights,
 * which quanta's CPU backend (f64 accumulation) matches to ~0.002. The GPU
 * rounds attention inputs to f16 in prefill, accumulates in f32, and its
 * matvec (up to 8 tokens) rounds x to 8 bits in blocks of 32 as llama.cpp's
 * does, which moves logits by up to ~0.2. */
#define LLAMA_TOL 0.6
#define REF_TOL (qt_on_gpu() ? 0.3 : 0.01)

/* Under the sanitizers (10x slower) the long checks run shortened. */
#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#else
#define SANITIZED 0
#endif

static qn_model *cpu_model, *dev_model;
static qn_json *fx_tok, *fx_logits, *fx_greedy;

static char *model_path(void) {
    static char buf[4096];
    const char *dir = getenv("QUANTA_MODEL_DIR"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (dir && *dir) snprintf(buf, sizeof buf, "%s/gemma-3-270m-q4_k_m.gguf", dir);
    else if (xdg && *xdg) snprintf(buf, sizeof buf, "%s/quanta/models/gemma-3-270m-q4_k_m.gguf", xdg);
    else snprintf(buf, sizeof buf, "%s/.cache/quanta/models/gemma-3-270m-q4_k_m.gguf", home ? home : ".");
    return buf;
}

static qn_json *load_fixture(const char *name) {
    char path[512];
    snprintf(path, sizeof path, "tests/fixtures/gemma3/%s", name);
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s (run the tests from the source root)", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)n);
    assert_non_null(text);
    assert_int_equal(fread(text, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    qn_json *j;
    QT_OK(qn_json_parse(text, (size_t)n, path, &j));
    free(text);
    return j;
}

/* A JSON array of integers into ids; its length. */
static size_t json_ids(const qn_json *arr, int32_t *ids, size_t cap) {
    assert_true(arr && arr->kind == QN_JSON_ARRAY && arr->count <= cap);
    for (size_t i = 0; i < arr->count; i++) ids[i] = (int32_t)arr->items[i].number;
    return arr->count;
}

static int setup(void **state) {
    (void)state;
    const char *path = model_path();
    if (access(path, R_OK) != 0) {
        const char *req = getenv("QUANTA_REQUIRE_MODEL");
        if (req && strcmp(req, "1") == 0) {
            fprintf(stderr, "the model %s is missing: run scripts/fetch-model.sh\n", path);
            return -1;
        }
        printf("skipping: no model at %s (scripts/fetch-model.sh fetches it)\n", path);
        return 0;
    }
    fx_tok = load_fixture("tokenize.json");
    fx_logits = load_fixture("logits.json");
    fx_greedy = load_fixture("greedy.json");
    if (qn_model_load(qt_cpu(), path, NULL, NULL, &cpu_model) != QN_OK) {
        fprintf(stderr, "loading %s: %s\n", path, qn_last_error());
        return -1;
    }
    dev_model = cpu_model;
    if (qt_on_gpu() && qn_model_load(qt_device(), path, NULL, NULL, &dev_model) != QN_OK) {
        fprintf(stderr, "loading %s on the GPU: %s\n", path, qn_last_error());
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    if (dev_model != cpu_model) qn_model_free(dev_model);
    qn_model_free(cpu_model);
    qn_json_free(fx_tok);
    qn_json_free(fx_logits);
    qn_json_free(fx_greedy);
    qt_close_devices();
    return 0;
}

#define NEED_MODEL()               \
    do {                           \
        if (!cpu_model) skip();    \
    } while (0)

static void test_tokenize(void **state) {
    (void)state;
    NEED_MODEL();
    const qn_tokenizer *tok = qn_model_tokenizer(cpu_model);
    const qn_json *strings = qn_json_get(fx_tok, "strings");
    assert_true(strings && strings->count > 10);
    int32_t want[4096], got[4096];
    for (size_t i = 0; i < strings->count; i++) {
        const qn_json *s = &strings->items[i];
        const qn_json *text = qn_json_get(s, "text");
        bool bos = qn_json_get(s, "add_bos")->boolean, special = qn_json_get(s, "parse_special")->boolean;
        size_t nw = json_ids(qn_json_get(s, "ids"), want, 4096), ng = 0;
        QT_OK(qn_tokenize(tok, text->str, text->len, bos, special, got, 4096, &ng));
        bool same = ng == nw && memcmp(got, want, nw * sizeof *got) == 0;
        if (!same) {
            fprintf(stderr, "string %zu (bos %d, special %d): %zu tokens, llama.cpp %zu\n  quanta:", i, bos, special,
                    ng, nw);
            for (size_t k = 0; k < ng; k++) fprintf(stderr, " %d", got[k]);
            fprintf(stderr, "\n  llama.cpp:");
            for (size_t k = 0; k < nw; k++) fprintf(stderr, " %d", want[k]);
            fprintf(stderr, "\n");
            fail_msg("tokenization of string %zu differs from llama.cpp", i);
        }
        /* The count alone, with no room: the same number and the error. */
        if (nw > 0) {
            size_t n0 = 0;
            QT_FAILS(qn_tokenize(tok, text->str, text->len, bos, special, NULL, 0, &n0), QN_ERR_INVALID_ARGUMENT,
                     "do not fit");
            assert_int_equal(n0, nw);
        }
    }
    /* Decoding: each id's text, special tokens hidden and shown. */
    const qn_json *pieces = qn_json_get(fx_tok, "pieces_hex");
    for (size_t i = 0; i < pieces->count; i++) {
        int32_t id = (int32_t)qn_json_get(&pieces->items[i], "id")->number;
        for (int sp = 0; sp < 2; sp++) {
            const qn_json *hex = qn_json_get(&pieces->items[i], sp ? "text_special" : "text");
            const char *p;
            size_t len;
            QT_OK(qn_token_to_piece(tok, id, sp, &p, &len));
            char buf[512] = {0};
            for (size_t k = 0; k < len && 2 * k + 2 < sizeof buf; k++) snprintf(buf + 2 * k, 3, "%02x", (unsigned char)p[k]);
            if (strcmp(buf, hex->str) != 0)
                fail_msg("piece of token %d (special %d): %s, llama.cpp %s", id, sp, buf, hex->str);
        }
    }
    QT_FAILS(qn_token_to_piece(tok, qn_tokenizer_vocab_size(tok), false, &(const char *){0}, &(size_t){0}),
             QN_ERR_INVALID_ARGUMENT, "not in [0, 262144)");
    assert_true(qn_token_is_eog(tok, qn_tokenizer_eos(tok)));
    assert_true(qn_token_is_eog(tok, qn_token_find(tok, "<end_of_turn>")));
    assert_false(qn_token_is_eog(tok, qn_tokenizer_bos(tok)));
}

static void test_chat_template(void **state) {
    (void)state;
    NEED_MODEL();
    qn_chat_message msgs[] = {{"system", "  Be brief. "}, {"user", "Hi there\n"}, {"assistant", "Hello!"}, {"user", "Bye"}};
    char out[512];
    size_t len;
    QT_OK(qn_chat_format(cpu_model, msgs, 4, true, out, sizeof out, &len));
    const char *want = "<start_of_turn>user\nBe brief.\n\nHi there<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n"
                       "<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n";
    assert_string_equal(out, want);
    assert_int_equal(len, strlen(want));
    QT_FAILS(qn_chat_format(cpu_model, msgs, 4, true, out, 10, &len), QN_ERR_INVALID_ARGUMENT, "do not fit");
    assert_int_equal(len, strlen(want));
}

/* The 10 largest of n logits (ties: lower id), by insertion. */
static void top10(const float *logits, size_t n, int32_t *top) {
    int k = 0;
    for (size_t i = 0; i < n; i++) {
        if (k == 10 && !(logits[i] > logits[top[9]])) continue;
        int j = k < 10 ? k++ : 9;
        while (j > 0 && logits[top[j - 1]] < logits[i]) {
            top[j] = top[j - 1];
            j--;
        }
        top[j] = (int32_t)i;
    }
}

/* Our top 10 against a reference's (ids and logits, best first). Rank by
 * rank, the same token, or one whose logit is within tol of the token the
 * reference ranks there (an order the reference's precision cannot fix);
 * and every reference token's logit within tol of ours. */
static void compare_top10(const char *what, size_t p, const float *logits, const int32_t *top, const qn_json *ids,
                          const qn_json *vals, double tol, double *worst) {
    for (int k = 0; k < 10; k++) {
        int32_t want = (int32_t)ids->items[k].number;
        double ref = vals->items[k].number;
        if (top[k] != want && fabs((double)logits[top[k]] - ref) >= tol)
            fail_msg("prompt %zu rank %d: token %d (%.4f), %s %d (%.4f)", p, k, top[k], (double)logits[top[k]], what,
                     want, ref);
        double d = fabs((double)logits[want] - ref);
        if (d > *worst) *worst = d;
        if (d > tol)
            fail_msg("prompt %zu: logit of token %d %.5f, %s %.5f (tolerance %.2f)", p, want, (double)logits[want], what,
                     ref, tol);
    }
}

static void test_logits(void **state) {
    (void)state;
    NEED_MODEL();
    const qn_json *prompts = qn_json_get(fx_logits, "prompts");
    const qn_tokenizer *tok = qn_model_tokenizer(cpu_model);
    size_t n_prompts = SANITIZED ? 1 : prompts->count, nv = (size_t)qn_tokenizer_vocab_size(tok);
    float *logits = malloc(nv * sizeof *logits);
    double worst_ref = 0, worst_llama = 0;
    for (size_t p = 0; p < n_prompts; p++) {
        const qn_json *pr = &prompts->items[p];
        const qn_json *text = qn_json_get(pr, "text");
        int32_t ids[4096], got_ids[4096], top[10];
        size_t n = json_ids(qn_json_get(pr, "ids"), ids, 4096), ng;
        QT_OK(qn_tokenize(tok, text->str, text->len, true, true, got_ids, 4096, &ng));
        assert_int_equal(ng, n);
        assert_memory_equal(got_ids, ids, n * sizeof *ids);
        qn_context *c;
        QT_OK(qn_context_create(dev_model, 2048, &c));
        QT_OK(qn_context_eval(c, ids, n));
        QT_OK(qn_context_logits(c, logits, nv));
        qn_context_free(c);
        top10(logits, nv, top);
        compare_top10("reference", p, logits, top, qn_json_get(pr, "ref_top_ids"), qn_json_get(pr, "ref_top_logits"),
                      REF_TOL, &worst_ref);
        compare_top10("llama.cpp", p, logits, top, qn_json_get(pr, "top_ids"), qn_json_get(pr, "top_logits"), LLAMA_TOL,
                      &worst_llama);
        printf("prompt %zu (%zu tokens): top 10 match; largest difference so far %.4f from the f64 reference, %.4f "
               "from llama.cpp\n", p, n, worst_ref, worst_llama);
    }
    free(logits);
}

/* The first `count` greedy tokens after ids on model m, and at each step
 * the margin between the two largest logits. */
static void greedy(qn_model *m, const int32_t *ids, size_t n, int32_t *out, float *margin, int count) {
    qn_context *c;
    qn_sample_params sp = {.temperature = 0, .top_p = 1, .repeat_penalty = 1};
    size_t nv = (size_t)qn_tokenizer_vocab_size(qn_model_tokenizer(m));
    float *l = malloc(nv * sizeof *l);
    QT_OK(qn_context_create(m, 1024, &c));
    QT_OK(qn_context_eval(c, ids, n));
    for (int i = 0; i < count; i++) {
        if (i == 0) QT_OK(qn_context_sample(c, &sp, &out[0]));
        else QT_OK(qn_context_decode(c, &sp, &out[i]));
        QT_OK(qn_context_logits(c, l, nv));
        int32_t two[10];
        top10(l, nv, two);
        assert_int_equal(two[0], out[i]); /* the sampler's greedy choice is the argmax */
        margin[i] = l[two[0]] - l[two[1]];
    }
    assert_int_equal(qn_context_pos(c), (int)n + count - 1);
    free(l);
    qn_context_free(c);
}

/* Where `got` first leaves `want` (count if nowhere). */
static int first_difference(const int32_t *got, const qn_json *want, int count) {
    for (int i = 0; i < count; i++)
        if (got[i] != (int32_t)want->items[i].number) return i;
    return count;
}

static void test_greedy(void **state) {
    (void)state;
    NEED_MODEL();
    const qn_json *prompts = qn_json_get(fx_greedy, "prompts");
    size_t n_prompts = SANITIZED ? 1 : prompts->count;
    int count = SANITIZED ? 4 : (int)qn_json_get(fx_greedy, "tokens")->number;
    for (size_t p = 0; p < n_prompts; p++) {
        const qn_json *pr = &prompts->items[p];
        int32_t ids[1024], got[128];
        float margin[128];
        size_t n = json_ids(qn_json_get(pr, "ids"), ids, 1024);
        greedy(cpu_model, ids, n, got, margin, count);

        /* The f64 reference: the same tokens, unless a step's two best
         * logits are closer than our tolerance (there either is right). */
        const qn_json *ref = qn_json_get(pr, "ref_continuation"), *ref_margin = qn_json_get(pr, "ref_margins");
        int d = first_difference(got, ref, count);
        if (d < count && ref_margin->items[d].number >= REF_TOL)
            fail_msg("prompt %zu token %d: %d, the f64 reference %d by a margin of %.4f", p, d, got[d],
                     (int)ref->items[d].number, ref_margin->items[d].number);

        /* llama.cpp: the same tokens up to the first step its own precision
         * cannot decide (its two best within LLAMA_TOL), where we must agree
         * with the f64 reference; after that the texts differ. */
        const qn_json *lc = qn_json_get(pr, "continuation"), *lc_margin = qn_json_get(pr, "margins");
        int dl = first_difference(got, lc, count);
        if (dl < count && (lc_margin->items[dl].number >= LLAMA_TOL || dl >= d))
            fail_msg("prompt %zu token %d: %d, llama.cpp %d by a margin of %.4f (the reference: %d)", p, dl, got[dl],
                     (int)lc->items[dl].number, lc_margin->items[dl].number, (int)ref->items[dl].number);
        printf("prompt %zu: %d of %d greedy tokens as the f64 reference, %d as llama.cpp%s\n", p, d, count, dl,
               dl < count ? " (then a choice within llama.cpp's precision)" : "");

        if (dev_model != cpu_model) {
            int32_t gpu[128];
            float gpu_margin[128];
            greedy(dev_model, ids, n, gpu, gpu_margin, count);
            for (int i = 0; i < count; i++) {
                if (gpu[i] == got[i]) continue;
                if (margin[i] >= REF_TOL)
                    fail_msg("prompt %zu token %d: GPU %d, CPU %d by a margin of %.4f", p, i, gpu[i], got[i],
                             (double)margin[i]);
                printf("prompt %zu: GPU and CPU agree on %d tokens, then a near tie (%.4f)\n", p, i, (double)margin[i]);
                break;
            }
        }
    }
}

/* Decode steps replayed from a graph give the same logits as evaluating
 * the same tokens one call at a time. */
static void test_decode_graph_matches_eval(void **state) {
    (void)state;
    NEED_MODEL();
    const qn_tokenizer *tok = qn_model_tokenizer(dev_model);
    int32_t ids[64];
    size_t n;
    QT_OK(qn_tokenize(tok, "A graph replays", 15, true, false, ids, 64, &n));
    qn_sample_params sp = {.temperature = 0, .top_p = 1, .repeat_penalty = 1};
    qn_context *a, *b;
    QT_OK(qn_context_create(dev_model, 64, &a));
    QT_OK(qn_context_create(dev_model, 64, &b));
    QT_OK(qn_context_eval(a, ids, n));
    QT_OK(qn_context_eval(b, ids, n));
    int32_t ta, tb;
    QT_OK(qn_context_sample(a, &sp, &ta));
    size_t nv = (size_t)qn_tokenizer_vocab_size(tok);
    float *la = malloc(nv * sizeof *la), *lb = malloc(nv * sizeof *lb);
    for (int step = 0; step < 3; step++) {
        tb = ta;
        QT_OK(qn_context_decode(a, &sp, &ta));
        QT_OK(qn_context_eval(b, &tb, 1));
        QT_OK(qn_context_logits(a, la, nv));
        QT_OK(qn_context_logits(b, lb, nv));
        assert_memory_equal(la, lb, nv * sizeof *la);
    }
    /* Steps queued back to back (qn_context_queue_step, as model-decode's
     * bench runs them) feed each other's ids on the device: three queued
     * after a decode end where four decodes end, same id and logits. A
     * context with no step captured yet refuses to queue one. */
    qn_context *q;
    QT_OK(qn_context_create(dev_model, 64, &q));
    QT_OK(qn_context_eval(q, ids, n));
    int32_t tq;
    QT_OK(qn_context_sample(q, &sp, &tq));
    QT_FAILS(qn_context_queue_step(q, q->pos), QN_ERR_INVALID_ARGUMENT, "no decode step captured yet");
    QT_OK(qn_context_decode(a, &sp, &ta));
    QT_OK(qn_context_decode(q, &sp, &tq));
    for (int i = 0; i < 3; i++) QT_OK(qn_context_queue_step(q, q->pos + i));
    QT_OK(qn_encoder_commit_wait(q->enc));
    q->pos += 3;
    QT_OK(qn_buffer_read(q->ids, 0, &tq, sizeof tq));
    assert_int_equal(tq, ta);
    QT_OK(qn_context_logits(a, la, nv));
    QT_OK(qn_context_logits(q, lb, nv));
    assert_memory_equal(la, lb, nv * sizeof *la);
    qn_context_free(q);
    /* Errors: decode with nothing sampled, a full context, bad tokens. */
    QT_FAILS(qn_context_decode(b, &sp, &tb), QN_ERR_INVALID_ARGUMENT, "no sampled token");
    QT_FAILS(qn_context_eval(b, &(int32_t){-1}, 1), QN_ERR_INVALID_ARGUMENT, "token 0 is -1");
    int32_t many[64] = {0};
    QT_FAILS(qn_context_eval(b, many, 64), QN_ERR_INVALID_ARGUMENT, "exceed the context of 64");
    sp.repeat_penalty = 1.1f;
    QT_FAILS(qn_context_sample(b, &sp, &tb), QN_ERR_INVALID_ARGUMENT, "repeat_penalty");
    qn_context *none;
    QT_FAILS(qn_context_create(dev_model, 0, &none), QN_ERR_INVALID_ARGUMENT, "n_ctx 0 not in [1, 32768]");
    free(la);
    free(lb);
    qn_context_free(a);
    qn_context_free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokenize),
        cmocka_unit_test(test_chat_template),
        cmocka_unit_test(test_decode_graph_matches_eval),
        cmocka_unit_test(test_logits),
        cmocka_unit_test(test_greedy),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
