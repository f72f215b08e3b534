/* A small strict JSON parser for the safetensors header and MLX's
 * config.json: the whole text becomes a tree, strings unescaped to UTF-8. */
#ifndef QN_FORMATS_JSON_H
#define QN_FORMATS_JSON_H

#include "quanta.h"

typedef enum { QN_JSON_NULL, QN_JSON_BOOL, QN_JSON_NUMBER, QN_JSON_STRING, QN_JSON_ARRAY, QN_JSON_OBJECT } qn_json_kind;

typedef struct qn_json qn_json;
struct qn_json {
    qn_json_kind kind;
    bool boolean;
    double number;
    bool is_uint;     /* NUMBER written as a plain non-negative integer */
    uint64_t uint;    /* its exact value (when is_uint) */
    char *str;        /* STRING: NUL-terminated (may hold NULs; see len) */
    size_t len;
    qn_json *items;   /* ARRAY elements, OBJECT values */
    char **keys;      /* OBJECT keys, NUL-terminated */
    size_t count;
};

/* Parse `len` bytes. `what` names the text in error messages
 * ("safetensors header"); errors are QN_ERR_FORMAT with the byte offset. */
qn_status qn_json_parse(const char *text, size_t len, const char *what, qn_json **out);
void qn_json_free(qn_json *j);
/* The value of `key` in an object, or NULL. */
const qn_json *qn_json_get(const qn_json *obj, const char *key);

#endif
