/* quanta logits: the most likely next tokens after a prompt, with their
 * text and logits, as a table or JSON (what the model tests compare with
 * llama.cpp). */
#include "cli.h"
#include "model_commands.h"

#include <stdlib.h>
#include <string.h>

static int usage(void) {
    fprintf(stderr, "usage: quanta logits [-m FILE] -p PROMPT [--top K] [--json] [--backend cpu|cuda]\n"
                    "  the K (default 10) largest next-token logits after PROMPT (BOS added, special tokens parsed)\n");
    return 2;
}

/* s as a JSON string. */
static void json_string(FILE *f, const char *s, size_t n) {
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
        else if (ch < 0x20) fprintf(f, "\\u%04x", ch);
        else fputc(ch, f);
    }
    fputc('"', f);
}

int qn_cmd_logits(int argc, char **argv) {
    const char *model = NULL, *prompt = NULL;
    int top = 10;
    bool json = false;
    qn_backend backend = QN_BACKEND_AUTO;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--json") == 0) json = true;
        else if (!v) return usage();
        else if (strcmp(a, "-m") == 0) model = argv[++i];
        else if (strcmp(a, "-p") == 0) prompt = argv[++i];
        else if (strcmp(a, "--top") == 0) top = atoi(argv[++i]);
        else if (strcmp(a, "--backend") == 0) {
            if (qn_cli_backend(argv[++i], &backend)) return 2;
        } else return usage();
    }
    if (!prompt || top < 1) return usage();

    qn_device *dev;
    qn_model *m;
    if (qn_model_open_cli(model, backend, &dev, &m)) return 1;
    const qn_tokenizer *tok = qn_model_tokenizer(m);
    qn_model_info info;
    qn_model_info_get(m, &info);
    if (top > info.n_vocab) top = info.n_vocab;
    size_t n = 0;
    qn_tokenize(tok, prompt, strlen(prompt), true, true, NULL, 0, &n);
    int32_t *ids = malloc((n + 1) * sizeof *ids);
    float *logits = malloc((size_t)info.n_vocab * sizeof *logits);
    int *best = malloc((size_t)top * sizeof *best);
    qn_context *c = NULL;
    qn_status s = ids && logits && best ? QN_OK : QN_ERR_OUT_OF_MEMORY;
    if (s == QN_OK) s = qn_tokenize(tok, prompt, strlen(prompt), true, true, ids, n + 1, &n);
    if (s == QN_OK) s = qn_context_create(m, (int32_t)(n < 16 ? 16 : n), &c);
    if (s == QN_OK) s = qn_context_eval(c, ids, n);
    if (s == QN_OK) s = qn_context_logits(c, logits, (size_t)info.n_vocab);
    int rc = 0;
    if (s != QN_OK) rc = qn_cli_fail("evaluating the prompt", s);
    else {
        /* The top K by insertion into a sorted list (ties: the lower id). */
        int k = 0;
        for (int i = 0; i < info.n_vocab; i++) {
            if (k == top && logits[i] <= logits[best[k - 1]]) continue;
            int j = k < top ? k++ : k - 1;
            while (j > 0 && logits[best[j - 1]] < logits[i]) {
                best[j] = best[j - 1];
                j--;
            }
            best[j] = i;
        }
        if (json) printf("{\"n_prompt\": %zu, \"top\": [", n);
        else printf("%zu prompt tokens; the %d most likely next tokens:\n%8s %12s  %s\n", n, top, "id", "logit", "text");
        for (int i = 0; i < k; i++) {
            const char *p;
            size_t len;
            qn_token_to_piece(tok, best[i], true, &p, &len);
            if (json) {
                printf("%s{\"id\": %d, \"logit\": %.6f, \"text\": ", i ? ", " : "", best[i], (double)logits[best[i]]);
                json_string(stdout, p, len);
                printf("}");
            } else {
                printf("%8d %12.4f  ", best[i], (double)logits[best[i]]);
                json_string(stdout, p, len);
                printf("\n");
            }
        }
        if (json) printf("]}\n");
    }
    qn_context_free(c);
    free(ids);
    free(logits);
    free(best);
    qn_model_free(m);
    qn_device_close(dev);
    return rc;
}
