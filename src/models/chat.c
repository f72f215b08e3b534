/* Chat templates: a conversation as the text a model was trained on.
 *
 * GGUF files carry the template as Jinja source (tokenizer.chat_template);
 * quanta does not run Jinja, but recognises the template by a marker it
 * must contain and writes the same text in C. A file without a template
 * gets its architecture's. */
#include "models/model.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

/* Text written into out[0..cap) while it fits, always counted in len. */
typedef struct {
    char *out;
    size_t cap, len;
} text;

static void put(text *t, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++, t->len++)
        if (t->len + 1 < t->cap) t->out[t->len] = s[i];
}

static void puts_(text *t, const char *s) { put(t, s, strlen(s)); }

/* s without leading and trailing white space. */
static void put_trimmed(text *t, const char *s) {
    size_t n = strlen(s);
    while (n && isspace((unsigned char)*s)) s++, n--;
    while (n && isspace((unsigned char)s[n - 1])) n--;
    put(t, s, n);
}

/* Gemma: "<start_of_turn>ROLE\nCONTENT<end_of_turn>\n" per message, with
 * "assistant" spelled "model"; system messages go, trimmed, in front of the
 * next user turn's content followed by a blank line. */
static void gemma(text *t, const qn_chat_message *msgs, size_t n, bool add_generation_prompt) {
    const char *system = NULL;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(msgs[i].role, "system") == 0) {
            system = msgs[i].content;
            continue;
        }
        bool model = strcmp(msgs[i].role, "assistant") == 0 || strcmp(msgs[i].role, "model") == 0;
        puts_(t, "<start_of_turn>");
        puts_(t, model ? "model" : msgs[i].role);
        puts_(t, "\n");
        if (system && !model) {
            put_trimmed(t, system);
            puts_(t, "\n\n");
            system = NULL;
        }
        put_trimmed(t, msgs[i].content);
        puts_(t, "<end_of_turn>\n");
    }
    if (add_generation_prompt) puts_(t, "<start_of_turn>model\n");
}

typedef struct {
    const char *name;
    const char *marker; /* a string the Jinja source contains */
    const char *arch;   /* the architecture whose files default to it */
    void (*write)(text *t, const qn_chat_message *msgs, size_t n, bool add_generation_prompt);
} chat_template;

static const chat_template templates[] = {
    {"gemma", "<start_of_turn>", "gemma3", gemma},
};

qn_status qn_chat_format(const qn_model *m, const qn_chat_message *msgs, size_t n, bool add_generation_prompt,
                         char *out, size_t cap, size_t *len) {
    if (!m || (!msgs && n) || (!out && cap) || !len) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_chat_format: NULL argument");
    for (size_t i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].content)
            return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_chat_format: message %zu has a NULL role or content", i);
    const chat_template *tpl = NULL;
    const char *src = NULL;
    size_t src_len = 0;
    if (qn_gguf_find_key(m->gguf, "tokenizer.chat_template") >= 0)
        QN_TRY(qn_meta_str(m->gguf, "tokenizer.chat_template", &src, &src_len));
    for (size_t i = 0; i < sizeof templates / sizeof templates[0] && !tpl; i++) {
        if (src ? memmem(src, src_len, templates[i].marker, strlen(templates[i].marker)) != NULL
                : strcmp(templates[i].arch, m->info.arch) == 0)
            tpl = &templates[i];
    }
    if (!tpl)
        return qn_error(QN_ERR_UNSUPPORTED, "qn_chat_format: %s: the model's chat template is not one quanta knows",
                        m->info.name);
    text t = {out, cap, 0};
    tpl->write(&t, msgs, n, add_generation_prompt);
    if (cap) out[t.len < cap ? t.len : cap - 1] = 0;
    *len = t.len;
    if (t.len + 1 > cap)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_chat_format: %zu bytes do not fit in cap %zu", t.len + 1, cap);
    return QN_OK;
}
