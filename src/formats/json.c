/* JSON (RFC 8259) parser: recursive descent with a depth limit, every read
 * bounds-checked against the text length. */
#include "formats/json.h"
#include "core/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64

typedef struct {
    const char *s;
    size_t len, pos;
    const char *what;
} parser;

static qn_status bad(const parser *p, const char *why) {
    return qn_error(QN_ERR_FORMAT, "%s: invalid JSON at byte %zu: %s", p->what, p->pos, why);
}

static void skip_space(parser *p) {
    while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' || p->s[p->pos] == '\n' ||
                               p->s[p->pos] == '\r'))
        p->pos++;
}

static int peek(const parser *p) { return p->pos < p->len ? (unsigned char)p->s[p->pos] : -1; }

static qn_status literal(parser *p, const char *word) {
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0) return bad(p, "unknown literal");
    p->pos += n;
    return QN_OK;
}

static int hex4(const parser *p, size_t at, unsigned *out) {
    if (p->len - at < 4) return 0;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p->s[at + (size_t)i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return 0;
    }
    *out = v;
    return 1;
}

static size_t put_utf8(char *o, unsigned cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | cp >> 6); o[1] = (char)(0x80 | (cp & 63)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12); o[1] = (char)(0x80 | ((cp >> 6) & 63)); o[2] = (char)(0x80 | (cp & 63));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18); o[1] = (char)(0x80 | ((cp >> 12) & 63));
    o[2] = (char)(0x80 | ((cp >> 6) & 63)); o[3] = (char)(0x80 | (cp & 63));
    return 4;
}

/* A string at p->pos (at its opening quote) into a new NUL-terminated
 * buffer; the unescaped text is never longer than the escaped one. */
static qn_status parse_string(parser *p, char **out, size_t *out_len) {
    p->pos++; /* the quote */
    size_t start = p->pos;
    while (p->pos < p->len && p->s[p->pos] != '"') p->pos += p->s[p->pos] == '\\' ? 2 : 1;
    if (p->pos >= p->len) return bad(p, "unterminated string");
    size_t end = p->pos;
    char *o = malloc(end - start + 1);
    if (!o) return qn_error(QN_ERR_OUT_OF_MEMORY, "%s: string of %zu bytes", p->what, end - start);
    size_t n = 0;
    for (size_t i = start; i < end;) {
        unsigned char c = (unsigned char)p->s[i];
        if (c < 0x20) {
            free(o);
            p->pos = i;
            return bad(p, "control character in string");
        }
        if (c != '\\') {
            o[n++] = (char)c;
            i++;
            continue;
        }
        char e = p->s[i + 1];
        i += 2;
        switch (e) {
        case '"': o[n++] = '"'; break;
        case '\\': o[n++] = '\\'; break;
        case '/': o[n++] = '/'; break;
        case 'b': o[n++] = '\b'; break;
        case 'f': o[n++] = '\f'; break;
        case 'n': o[n++] = '\n'; break;
        case 'r': o[n++] = '\r'; break;
        case 't': o[n++] = '\t'; break;
        case 'u': {
            unsigned cp, lo;
            if (i > end || !hex4(p, i, &cp) || i + 4 > end) goto bad_escape;
            i += 4;
            if (cp >= 0xD800 && cp < 0xDC00) { /* a surrogate pair */
                if (i + 6 > end || p->s[i] != '\\' || p->s[i + 1] != 'u' || !hex4(p, i + 2, &lo) || lo < 0xDC00 ||
                    lo >= 0xE000)
                    goto bad_escape;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                i += 6;
            } else if (cp >= 0xDC00 && cp < 0xE000) {
                goto bad_escape;
            }
            n += put_utf8(o + n, cp);
            break;
        }
        default:
        bad_escape:
            free(o);
            p->pos = i < end ? i : end;
            return bad(p, "bad escape in string");
        }
    }
    o[n] = 0;
    p->pos = end + 1;
    *out = o;
    *out_len = n;
    return QN_OK;
}

static qn_status parse_number(parser *p, qn_json *j) {
    size_t start = p->pos;
    if (peek(p) == '-') p->pos++;
    if (peek(p) == '0') p->pos++;
    else if (peek(p) >= '1' && peek(p) <= '9') while (peek(p) >= '0' && peek(p) <= '9') p->pos++;
    else return bad(p, "bad number");
    size_t int_end = p->pos;
    if (peek(p) == '.') {
        p->pos++;
        if (!(peek(p) >= '0' && peek(p) <= '9')) return bad(p, "bad fraction");
        while (peek(p) >= '0' && peek(p) <= '9') p->pos++;
    }
    if (peek(p) == 'e' || peek(p) == 'E') {
        p->pos++;
        if (peek(p) == '+' || peek(p) == '-') p->pos++;
        if (!(peek(p) >= '0' && peek(p) <= '9')) return bad(p, "bad exponent");
        while (peek(p) >= '0' && peek(p) <= '9') p->pos++;
    }
    char buf[64];
    size_t n = p->pos - start;
    if (n >= sizeof buf) return bad(p, "number too long");
    memcpy(buf, p->s + start, n);
    buf[n] = 0;
    j->kind = QN_JSON_NUMBER;
    j->number = strtod(buf, NULL);
    if (int_end == p->pos && p->s[start] != '-') { /* exact unsigned integer */
        uint64_t v = 0;
        for (size_t i = start; i < int_end; i++) {
            unsigned d = (unsigned)(p->s[i] - '0');
            if (v > (UINT64_MAX - d) / 10) return QN_OK; /* too big: only the double */
            v = v * 10 + d;
        }
        j->is_uint = true;
        j->uint = v;
    }
    return QN_OK;
}

static qn_status parse_value(parser *p, qn_json *j, int depth);

/* Grow an array of `size`-byte items to hold n + 1. */
static int grow(void **items, size_t size, size_t n, size_t *cap) {
    if (n < *cap) return 1;
    size_t c = *cap ? *cap * 2 : 4;
    void *q = realloc(*items, c * size);
    if (!q) return 0;
    *items = q;
    *cap = c;
    return 1;
}

static qn_status parse_container(parser *p, qn_json *j, int depth, int object) {
    if (depth >= MAX_DEPTH) return bad(p, "nested too deeply");
    j->kind = object ? QN_JSON_OBJECT : QN_JSON_ARRAY;
    p->pos++;
    skip_space(p);
    char close = object ? '}' : ']';
    if (peek(p) == close) {
        p->pos++;
        return QN_OK;
    }
    size_t cap = 0, kcap = 0;
    for (;;) {
        skip_space(p);
        if (object) {
            if (peek(p) != '"') return bad(p, "expected a key");
            if (!grow((void **)&j->keys, sizeof *j->keys, j->count, &kcap))
                return qn_error(QN_ERR_OUT_OF_MEMORY, "%s", p->what);
            size_t klen;
            QN_TRY(parse_string(p, &j->keys[j->count], &klen));
            if (strlen(j->keys[j->count]) != klen) { /* keys are looked up as C strings */
                free(j->keys[j->count]);
                return bad(p, "NUL in a key");
            }
            skip_space(p);
            if (peek(p) != ':') {
                free(j->keys[j->count]);
                return bad(p, "expected ':'");
            }
            p->pos++;
        }
        if (!grow((void **)&j->items, sizeof *j->items, j->count, &cap)) {
            if (object) free(j->keys[j->count]);
            return qn_error(QN_ERR_OUT_OF_MEMORY, "%s", p->what);
        }
        memset(&j->items[j->count], 0, sizeof *j->items);
        j->count++; /* counted before parsing so a failure frees it */
        QN_TRY(parse_value(p, &j->items[j->count - 1], depth + 1));
        skip_space(p);
        if (peek(p) == ',') {
            p->pos++;
            continue;
        }
        if (peek(p) == close) {
            p->pos++;
            return QN_OK;
        }
        return bad(p, object ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

static qn_status parse_value(parser *p, qn_json *j, int depth) {
    skip_space(p);
    switch (peek(p)) {
    case '{': return parse_container(p, j, depth, 1);
    case '[': return parse_container(p, j, depth, 0);
    case '"': j->kind = QN_JSON_STRING; return parse_string(p, &j->str, &j->len);
    case 't': j->kind = QN_JSON_BOOL; j->boolean = true; return literal(p, "true");
    case 'f': j->kind = QN_JSON_BOOL; return literal(p, "false");
    case 'n': j->kind = QN_JSON_NULL; return literal(p, "null");
    case -1: return bad(p, "unexpected end");
    default: return parse_number(p, j);
    }
}

static void free_contents(qn_json *j) {
    free(j->str);
    for (size_t i = 0; i < j->count; i++) {
        free_contents(&j->items[i]);
        if (j->keys) free(j->keys[i]);
    }
    free(j->items);
    free(j->keys);
}

void qn_json_free(qn_json *j) {
    if (!j) return;
    free_contents(j);
    free(j);
}

qn_status qn_json_parse(const char *text, size_t len, const char *what, qn_json **out) {
    *out = NULL;
    qn_json *j = calloc(1, sizeof *j);
    if (!j) return qn_error(QN_ERR_OUT_OF_MEMORY, "%s", what);
    parser p = {.s = text, .len = len, .what = what};
    qn_status s = parse_value(&p, j, 0);
    skip_space(&p);
    if (s == QN_OK && p.pos != p.len) s = bad(&p, "text after the value");
    if (s != QN_OK) {
        qn_json_free(j);
        return s;
    }
    *out = j;
    return QN_OK;
}

const qn_json *qn_json_get(const qn_json *obj, const char *key) {
    if (!obj || obj->kind != QN_JSON_OBJECT) return NULL;
    for (size_t i = 0; i < obj->count; i++)
        if (strcmp(obj->keys[i], key) == 0) return &obj->items[i];
    return NULL;
}
