/* quanta run: text generation with a model, streamed as it is sampled; an
 * interactive chat when no prompt is given on a terminal. */
#include "cli.h"
#include "model_commands.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_MODEL "gemma-3-270m-q4_k_m.gguf"

#define TRY(expr)                          \
    do {                                   \
        qn_status try_s_ = (expr);         \
        if (try_s_ != QN_OK) return try_s_; \
    } while (0)

const char *qn_default_model_path(char *buf, size_t len) {
    const char *dir = getenv("QUANTA_MODEL_DIR"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (dir && *dir) snprintf(buf, len, "%s/%s", dir, DEFAULT_MODEL);
    else if (xdg && *xdg) snprintf(buf, len, "%s/quanta/models/%s", xdg, DEFAULT_MODEL);
    else snprintf(buf, len, "%s/.cache/quanta/models/%s", home ? home : ".", DEFAULT_MODEL);
    return buf;
}

static void progress_bar(size_t done, size_t total, const char *name, void *user) {
    (void)name;
    (void)user;
    int width = 30, fill = total ? (int)((double)done / (double)total * width) : width;
    fprintf(stderr, "\rloading [%.*s%*s] %3d%% %zu/%zu MB", fill, "##############################", width - fill, "",
            total ? (int)(100.0 * (double)done / (double)total) : 100, done >> 20, total >> 20);
    if (done >= total) fprintf(stderr, "\n");
}

int qn_model_open_cli(const char *path, qn_backend backend, qn_device **dev, qn_model **model) {
    char def[4096];
    if (!path) {
        path = qn_default_model_path(def, sizeof def);
        if (access(path, R_OK) != 0) {
            fprintf(stderr,
                    "quanta: no model given and the default model is not in the cache (%s).\n"
                    "Fetch it with scripts/fetch-model.sh (from the quanta source tree), or pass -m FILE.gguf.\n",
                    path);
            return 1;
        }
    } else if (access(path, R_OK) != 0) {
        fprintf(stderr, "quanta: cannot read model file %s\n", path);
        return 1;
    }
    qn_status s = qn_device_open(backend, 0, dev);
    if (s != QN_OK) return qn_cli_fail("opening the device", s);
    s = qn_model_load(*dev, path, isatty(2) ? progress_bar : NULL, NULL, model);
    if (s != QN_OK) {
        fprintf(stderr, "quanta: cannot load %s: %s (%s)\n", path, qn_last_error(), qn_status_name(s));
        qn_device_close(*dev);
        return 1;
    }
    return 0;
}

typedef struct {
    const char *model, *prompt;
    int n_predict, ctx, top_k;
    float temp, top_p;
    uint64_t seed;
    bool seeded, chat;
    qn_backend backend;
} run_opts;

static int usage(void) {
    fprintf(stderr,
            "usage: quanta run [-m FILE] [-p PROMPT] [-n N] [--temp T] [--top-k K] [--top-p P] [--seed S]\n"
            "                  [--ctx N] [--backend cpu|cuda] [--chat]\n"
            "  -m FILE      GGUF model (default: the cached default model, see scripts/fetch-model.sh)\n"
            "  -p PROMPT    the prompt; without it, a chat on a terminal, else the prompt is read from stdin\n"
            "  -n N         tokens to generate at most (default 256)\n"
            "  --temp T     temperature (default 0.8; 0: greedy, deterministic)\n"
            "  --top-k K    keep the K most likely tokens (default 40; 0: all)\n"
            "  --top-p P    nucleus: the fewest tokens whose probability reaches P (default 0.95)\n"
            "  --seed S     seed of the sampler (default: from the clock)\n"
            "  --ctx N      context length (default 4096, at most the model's)\n"
            "  --chat       wrap the prompt in the model's chat template\n");
    return 2;
}

static int parse(int argc, char **argv, run_opts *o) {
    *o = (run_opts){.n_predict = 256, .ctx = 4096, .top_k = 40, .temp = 0.8f, .top_p = 0.95f,
                    .backend = QN_BACKEND_AUTO};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes = strcmp(a, "-m") == 0 || strcmp(a, "-p") == 0 || strcmp(a, "-n") == 0 || strcmp(a, "--temp") == 0 ||
                     strcmp(a, "--top-k") == 0 || strcmp(a, "--top-p") == 0 || strcmp(a, "--seed") == 0 ||
                     strcmp(a, "--ctx") == 0 || strcmp(a, "--backend") == 0;
        if (takes && !v) {
            fprintf(stderr, "quanta run: %s needs a value\n", a);
            return 2;
        }
        if (strcmp(a, "-m") == 0) o->model = v;
        else if (strcmp(a, "-p") == 0) o->prompt = v;
        else if (strcmp(a, "-n") == 0) o->n_predict = atoi(v);
        else if (strcmp(a, "--temp") == 0) o->temp = strtof(v, NULL);
        else if (strcmp(a, "--top-k") == 0) o->top_k = atoi(v);
        else if (strcmp(a, "--top-p") == 0) o->top_p = strtof(v, NULL);
        else if (strcmp(a, "--seed") == 0) o->seed = strtoull(v, NULL, 10), o->seeded = true;
        else if (strcmp(a, "--ctx") == 0) o->ctx = atoi(v);
        else if (strcmp(a, "--backend") == 0) {
            if (qn_cli_backend(v, &o->backend)) return 2;
        } else if (strcmp(a, "--chat") == 0) {
            o->chat = true;
            continue;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage();
            return 1;
        } else {
            fprintf(stderr, "quanta run: unknown argument '%s'\n", a);
            return usage();
        }
        i++;
    }
    if (o->n_predict < 1 || o->ctx < 1 || o->top_k < 0 || o->top_k > QN_SAMPLE_MAX_TOP_K || o->top_p <= 0 ||
        o->top_p > 1 || o->temp < 0) {
        fprintf(stderr, "quanta run: -n and --ctx must be >= 1, --top-k in [0, %d], --top-p in (0, 1], --temp >= 0\n",
                QN_SAMPLE_MAX_TOP_K);
        return 2;
    }
    if (!o->seeded) o->seed = (uint64_t)time(NULL);
    return 0;
}

typedef struct {
    int prompt_tokens, gen_tokens;
    double prompt_us, decode_us;
} run_stats;

static void print_piece(const qn_tokenizer *tok, int32_t id, char *reply, size_t *reply_len, size_t reply_cap) {
    const char *p;
    size_t n;
    if (qn_token_to_piece(tok, id, false, &p, &n) != QN_OK) return;
    fwrite(p, 1, n, stdout);
    fflush(stdout);
    if (reply && *reply_len + n < reply_cap) {
        memcpy(reply + *reply_len, p, n);
        *reply_len += n;
        reply[*reply_len] = 0;
    }
}

/* Evaluate ids, then sample and stream up to n tokens, stopping at the end
 * of a turn or of the context. *last gets the last sampled token. With
 * reply (a chat), the generated text goes there and the context holds it
 * all; without, the last token is not evaluated. */
static qn_status generate(qn_context *c, const qn_tokenizer *tok, const int32_t *ids, size_t n_ids, int n,
                          const qn_sample_params *sp, run_stats *st, char *reply, size_t reply_cap, int32_t *last) {
    size_t reply_len = 0;
    double t0 = qn_cli_now_us();
    TRY(qn_context_eval(c, ids, n_ids));
    double t1 = qn_cli_now_us();
    st->prompt_tokens += (int)n_ids;
    st->prompt_us += t1 - t0;
    int32_t id;
    TRY(qn_context_sample(c, sp, &id));
    double t2 = qn_cli_now_us();
    int decoded = 0;
    for (int i = 0; i < n && !qn_token_is_eog(tok, id); i++) {
        print_piece(tok, id, reply, &reply_len, reply_cap);
        if (i + 1 == n || qn_context_pos(c) >= qn_context_size(c)) {
            /* A chat goes on from this text: the context must hold it all. */
            if (reply && qn_context_pos(c) < qn_context_size(c)) TRY(qn_context_eval(c, &id, 1));
            break;
        }
        TRY(qn_context_decode(c, sp, &id));
        decoded++;
    }
    st->gen_tokens += decoded;
    st->decode_us += qn_cli_now_us() - t2;
    *last = id;
    return QN_OK;
}

static void print_stats(const run_stats *st) {
    fprintf(stderr, "\nprompt: %d tokens in %.1f ms (%.1f tokens/s); decode: %d tokens in %.1f ms (%.1f tokens/s)\n",
            st->prompt_tokens, st->prompt_us / 1e3, st->prompt_us > 0 ? st->prompt_tokens / (st->prompt_us / 1e6) : 0.0,
            st->gen_tokens, st->decode_us / 1e3, st->decode_us > 0 ? st->gen_tokens / (st->decode_us / 1e6) : 0.0);
}

/* Tokenize text (special tokens parsed; BOS when add_bos) into a new array. */
static qn_status tokenize(const qn_tokenizer *tok, const char *text, bool add_bos, int32_t **ids, size_t *n) {
    size_t need = 0;
    qn_tokenize(tok, text, strlen(text), add_bos, true, NULL, 0, &need);
    *ids = malloc((need + 1) * sizeof **ids);
    if (!*ids) return QN_ERR_OUT_OF_MEMORY;
    return qn_tokenize(tok, text, strlen(text), add_bos, true, *ids, need + 1, n);
}

static char *read_all(FILE *f) {
    size_t cap = 4096, n = 0;
    char *s = malloc(cap);
    for (size_t k; s && (k = fread(s + n, 1, cap - n - 1, f)) > 0;) {
        n += k;
        if (n + 1 == cap) {
            char *t = realloc(s, cap *= 2);
            if (!t) break;
            s = t;
        }
    }
    if (s) s[n] = 0;
    return s;
}

/* The conversation so far is in the context up to the text `shown`; a new
 * user turn evaluates only what the template adds after it. */
static int chat_loop(qn_model *m, qn_context *c, const run_opts *o, const qn_sample_params *sp) {
    const qn_tokenizer *tok = qn_model_tokenizer(m);
    qn_chat_message msgs[512];
    char *owned[512];
    size_t n_msgs = 0, shown = 0;
    char line[8192];
    run_stats st = {0};
    fprintf(stderr, "chat with %s: type a message, an empty line or Ctrl-D ends\n", o->model ? o->model : "the default model");
    while (n_msgs + 2 < 512) {
        fprintf(stderr, "\n> ");
        if (!fgets(line, sizeof line, stdin) || line[0] == '\n') break;
        line[strcspn(line, "\n")] = 0;
        owned[n_msgs] = strdup(line);
        msgs[n_msgs] = (qn_chat_message){"user", owned[n_msgs]};
        n_msgs++;
        size_t len = 0;
        qn_chat_format(m, msgs, n_msgs, true, NULL, 0, &len);
        char *text = malloc(len + 1);
        int32_t *ids = NULL, last;
        size_t n_ids = 0;
        qn_status s = text ? qn_chat_format(m, msgs, n_msgs, true, text, len + 1, &len) : QN_ERR_OUT_OF_MEMORY;
        if (s == QN_OK) s = tokenize(tok, text + shown, shown == 0, &ids, &n_ids);
        char *reply = malloc(1 << 16);
        if (s == QN_OK && reply) {
            reply[0] = 0;
            s = generate(c, tok, ids, n_ids, o->n_predict, sp, &st, reply, 1 << 16, &last);
        }
        free(ids);
        if (s != QN_OK) {
            free(text);
            free(reply);
            return qn_cli_fail("chat", s);
        }
        /* The reply joins the history; the context holds the template up to
         * and including the reply's text, so the next turn starts there. */
        owned[n_msgs] = reply;
        msgs[n_msgs] = (qn_chat_message){"assistant", reply};
        n_msgs++;
        shown = len + strlen(reply);
        free(text);
        fprintf(stderr, "\n");
    }
    print_stats(&st);
    for (size_t i = 0; i < n_msgs; i++) free(owned[i]);
    return 0;
}

int qn_cmd_run(int argc, char **argv) {
    run_opts o;
    int rc = parse(argc, argv, &o);
    if (rc) return rc == 1 ? 0 : rc;
    char *stdin_prompt = NULL;
    bool interactive = !o.prompt && isatty(0);
    if (!o.prompt && !interactive) o.prompt = stdin_prompt = read_all(stdin);
    qn_device *dev;
    qn_model *m;
    if (qn_model_open_cli(o.model, o.backend, &dev, &m)) return 1;
    qn_model_info info;
    qn_model_info_get(m, &info);
    qn_context *c = NULL;
    qn_sample_params sp = {.temperature = o.temp, .top_k = o.top_k, .top_p = o.top_k ? o.top_p : 1.0f,
                           .repeat_penalty = 1.0f, .seed = o.seed};
    qn_status s = qn_context_create(m, o.ctx < info.n_ctx_train ? o.ctx : info.n_ctx_train, &c);
    if (s != QN_OK) rc = qn_cli_fail("creating the context", s);
    else if (interactive) rc = chat_loop(m, c, &o, &sp);
    else {
        const qn_tokenizer *tok = qn_model_tokenizer(m);
        char *text = (char *)o.prompt;
        size_t len = 0;
        if (o.chat) {
            qn_chat_message msg = {"user", o.prompt};
            qn_chat_format(m, &msg, 1, true, NULL, 0, &len);
            text = malloc(len + 1);
            s = text ? qn_chat_format(m, &msg, 1, true, text, len + 1, &len) : QN_ERR_OUT_OF_MEMORY;
        }
        int32_t *ids = NULL, last;
        size_t n_ids = 0;
        run_stats st = {0};
        if (s == QN_OK) s = tokenize(tok, text, true, &ids, &n_ids);
        if (s == QN_OK && !o.chat) fputs(o.prompt, stdout);
        if (s == QN_OK) s = generate(c, tok, ids, n_ids, o.n_predict, &sp, &st, NULL, 0, &last);
        if (s != QN_OK) rc = qn_cli_fail("generating", s);
        else {
            printf("\n");
            print_stats(&st);
        }
        free(ids);
        if (text != o.prompt) free(text);
    }
    qn_context_free(c);
    qn_model_free(m);
    qn_device_close(dev);
    free(stdin_prompt);
    return rc;
}
