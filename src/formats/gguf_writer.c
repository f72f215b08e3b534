/* GGUF writer (version 3; the layout is described in gguf.c).
 *
 * Metadata entries are kept encoded (type and payload bytes) so a value
 * copied from a file needs no decoding, nested arrays included. Tensors are
 * declared first so the header, which holds every tensor's offset, can be
 * written before any tensor data; the data then streams in declaration
 * order. */
#include "formats/gguf_internal.h"
#include "core/error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *key;
    uint8_t *bytes; /* u32 type, then the payload */
    size_t len;
} entry;

struct qn_gguf_writer {
    entry *entries;
    size_t n_entries;
    qn_gguf_tensor_record *tensors;
    size_t n_tensors;
    FILE *file;
    char *path;
    uint32_t alignment;
    size_t next; /* the tensor whose data comes next */
};

qn_status qn_gguf_writer_create(qn_gguf_writer **out) {
    if (!out) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_gguf_writer_create: NULL argument");
    *out = calloc(1, sizeof **out);
    if (!*out) return qn_error(QN_ERR_OUT_OF_MEMORY, "qn_gguf_writer_create");
    return QN_OK;
}

void qn_gguf_writer_destroy(qn_gguf_writer *w) {
    if (!w) return;
    if (w->file) {
        fclose(w->file);
        remove(w->path); /* unfinished: a partial file would mislead */
    }
    for (size_t i = 0; i < w->n_entries; i++) {
        free(w->entries[i].key);
        free(w->entries[i].bytes);
    }
    for (size_t i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    free(w->entries);
    free(w->tensors);
    free(w->path);
    free(w);
}

/* ---- metadata: an encoder that grows one entry's bytes */

typedef struct {
    uint8_t *p;
    size_t len, cap;
    int failed;
} bytes_out;

static void put(bytes_out *b, const void *src, size_t n) {
    if (b->failed) return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n) cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}
static void put_u32(bytes_out *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(bytes_out *b, uint64_t v) { put(b, &v, 8); }
static void put_str(bytes_out *b, const char *s, size_t len) {
    put_u64(b, len);
    put(b, s, len);
}

static qn_status check_key(const char *who, qn_gguf_writer *w, const char *key) {
    if (!w || !key) return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: NULL argument", who);
    if (w->file) return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: '%s': the header is already written", who, key);
    return QN_OK;
}

/* Store the encoded entry under key, replacing an earlier value. Takes b. */
static qn_status set_entry(const char *who, qn_gguf_writer *w, const char *key, bytes_out *b) {
    if (b->failed) {
        free(b->p);
        return qn_error(QN_ERR_OUT_OF_MEMORY, "%s: '%s'", who, key);
    }
    for (size_t i = 0; i < w->n_entries; i++) {
        if (strcmp(w->entries[i].key, key) == 0) {
            free(w->entries[i].bytes);
            w->entries[i].bytes = b->p;
            w->entries[i].len = b->len;
            return QN_OK;
        }
    }
    entry *e = realloc(w->entries, (w->n_entries + 1) * sizeof *e);
    char *k = malloc(strlen(key) + 1);
    if (e) w->entries = e;
    if (!e || !k) {
        free(k);
        free(b->p);
        return qn_error(QN_ERR_OUT_OF_MEMORY, "%s: '%s'", who, key);
    }
    strcpy(k, key);
    w->entries[w->n_entries++] = (entry){.key = k, .bytes = b->p, .len = b->len};
    return QN_OK;
}

qn_status qn_gguf_writer_set_scalar(qn_gguf_writer *w, const char *key, qn_gguf_type type, const void *value) {
    const char *who = "qn_gguf_writer_set_scalar";
    QN_TRY(check_key(who, w, key));
    int size = qn_gguf_type_size(type);
    if (size <= 0) return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: '%s': type %d is not a number or bool", who, key, type);
    if (!value) return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: '%s': NULL value", who, key);
    if (type == QN_GGUF_BOOL && *(const uint8_t *)value > 1)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: '%s': bool byte %u is not 0 or 1", who, key,
                        *(const uint8_t *)value);
    bytes_out b = {0};
    put_u32(&b, type);
    put(&b, value, (size_t)size);
    return set_entry(who, w, key, &b);
}

qn_status qn_gguf_writer_set_str(qn_gguf_writer *w, const char *key, const char *s) {
    const char *who = "qn_gguf_writer_set_str";
    QN_TRY(check_key(who, w, key));
    if (!s) return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: '%s': NULL string", who, key);
    bytes_out b = {0};
    put_u32(&b, QN_GGUF_STRING);
    put_str(&b, s, strlen(s));
    return set_entry(who, w, key, &b);
}

qn_status qn_gguf_writer_set_array(qn_gguf_writer *w, const char *key, qn_gguf_type elem_type, const void *data,
                                   uint64_t count) {
    const char *who = "qn_gguf_writer_set_array";
    QN_TRY(check_key(who, w, key));
    int size = qn_gguf_type_size(elem_type);
    if (size <= 0)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: '%s': element type %d is not a number or bool", who, key,
                        elem_type);
    if (!data && count) return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: '%s': NULL data", who, key);
    if (count > SIZE_MAX / (size_t)size)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: '%s': %llu elements", who, key, (unsigned long long)count);
    bytes_out b = {0};
    put_u32(&b, QN_GGUF_ARRAY);
    put_u32(&b, elem_type);
    put_u64(&b, count);
    if (count) put(&b, data, (size_t)count * (size_t)size);
    return set_entry(who, w, key, &b);
}

qn_status qn_gguf_writer_set_str_array(qn_gguf_writer *w, const char *key, const char *const *strs,
                                       uint64_t count) {
    const char *who = "qn_gguf_writer_set_str_array";
    QN_TRY(check_key(who, w, key));
    if (!strs && count) return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: '%s': NULL strings", who, key);
    bytes_out b = {0};
    put_u32(&b, QN_GGUF_ARRAY);
    put_u32(&b, QN_GGUF_STRING);
    put_u64(&b, count);
    for (uint64_t i = 0; i < count; i++) {
        if (!strs[i]) {
            free(b.p);
            return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: '%s': string %llu is NULL", who, key,
                            (unsigned long long)i);
        }
        put_str(&b, strs[i], strlen(strs[i]));
    }
    return set_entry(who, w, key, &b);
}

qn_status qn_gguf_writer_set_value(qn_gguf_writer *w, const char *key, const qn_gguf_value *v) {
    const char *who = "qn_gguf_writer_set_value";
    QN_TRY(check_key(who, w, key));
    if (!v || !v->raw || qn_gguf_type_size(v->type) < 0)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: '%s': not a value read from a GGUF file", who, key);
    bytes_out b = {0};
    put_u32(&b, v->type);
    put(&b, v->raw, v->raw_bytes);
    return set_entry(who, w, key, &b);
}

/* ---- tensors */

qn_status qn_gguf_writer_add_tensor(qn_gguf_writer *w, const char *name, qn_dtype type, int n_dims,
                                    const int64_t *ne) {
    const char *who = "qn_gguf_writer_add_tensor";
    QN_TRY(check_key(who, w, name));
    if (n_dims < 0 || n_dims > QN_GGUF_MAX_DIMS || (n_dims > 0 && !ne))
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: '%s': n_dims %d not in [0, 4]", who, name, n_dims);
    if ((int)type >= 100 || qn_dtype_block_bytes(type) == 0)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: '%s': %d is not a GGUF tensor type", who, name, (int)type);
    for (size_t i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0)
            return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: '%s' is already declared", who, name);
    qn_gguf_tensor_record t = {.type = type, .n_dims = n_dims, .ne = {1, 1, 1, 1}};
    uint64_t rows = 1;
    for (int d = 0; d < n_dims; d++) {
        if (ne[d] < 0) return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: '%s': ne[%d] = %lld", who, name, d, (long long)ne[d]);
        t.ne[d] = ne[d];
        if (d > 0) {
            if (ne[d] != 0 && rows > UINT64_MAX / (uint64_t)ne[d])
                return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: '%s': shape overflows", who, name);
            rows *= (uint64_t)ne[d];
        }
    }
    if (t.ne[0] / qn_dtype_block_elems(type) > INT64_MAX / qn_dtype_block_bytes(type))
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: '%s': a row of ne[0] = %lld overflows its byte size", who, name,
                        (long long)t.ne[0]);
    int64_t row = qn_dtype_row_bytes(type, t.ne[0]);
    if (row < 0)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: '%s': ne[0] = %lld is not a multiple of %s's block of %lld",
                        who, name, (long long)t.ne[0], qn_dtype_name(type), (long long)qn_dtype_block_elems(type));
    if (row != 0 && rows > UINT64_MAX / (uint64_t)row)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: '%s': byte size overflows", who, name);
    t.bytes = (uint64_t)row * rows;
    qn_gguf_tensor_record *ts = realloc(w->tensors, (w->n_tensors + 1) * sizeof *ts);
    t.name = malloc(strlen(name) + 1);
    if (ts) w->tensors = ts;
    if (!ts || !t.name) {
        free(t.name);
        return qn_error(QN_ERR_OUT_OF_MEMORY, "%s: '%s'", who, name);
    }
    strcpy(t.name, name);
    w->tensors[w->n_tensors++] = t;
    return QN_OK;
}

/* ---- the file */

static qn_status write_bytes(qn_gguf_writer *w, const void *p, size_t n) {
    if (n && fwrite(p, 1, n, w->file) != n)
        return qn_error(QN_ERR_IO, "gguf writer: %s: %s", w->path, strerror(errno));
    return QN_OK;
}

static qn_status write_padding(qn_gguf_writer *w, uint64_t pos) {
    static const uint8_t zeros[256];
    uint64_t pad = (w->alignment - pos % w->alignment) % w->alignment;
    while (pad > 0) {
        size_t n = pad < sizeof zeros ? (size_t)pad : sizeof zeros;
        QN_TRY(write_bytes(w, zeros, n));
        pad -= n;
    }
    return QN_OK;
}

/* general.alignment if set (must be a uint32 power of two), else 32. */
static qn_status resolve_alignment(qn_gguf_writer *w) {
    w->alignment = QN_GGUF_DEFAULT_ALIGNMENT;
    for (size_t i = 0; i < w->n_entries; i++) {
        if (strcmp(w->entries[i].key, "general.alignment") != 0) continue;
        uint32_t type, a;
        memcpy(&type, w->entries[i].bytes, 4);
        if (type != QN_GGUF_UINT32)
            return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_gguf_writer_begin: general.alignment must be a uint32");
        memcpy(&a, w->entries[i].bytes + 4, 4);
        if (a == 0 || (a & (a - 1)) != 0)
            return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_gguf_writer_begin: general.alignment %u is not a power of two", a);
        w->alignment = a;
    }
    return QN_OK;
}

static qn_status write_header(qn_gguf_writer *w) {
    bytes_out b = {0};
    put(&b, QN_GGUF_MAGIC, 4);
    put_u32(&b, QN_GGUF_VERSION);
    put_u64(&b, w->n_tensors);
    put_u64(&b, w->n_entries);
    for (size_t i = 0; i < w->n_entries; i++) {
        put_str(&b, w->entries[i].key, strlen(w->entries[i].key));
        put(&b, w->entries[i].bytes, w->entries[i].len);
    }
    uint64_t offset = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        qn_gguf_tensor_record *t = &w->tensors[i];
        t->offset = offset;
        put_str(&b, t->name, strlen(t->name));
        put_u32(&b, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) put_u64(&b, (uint64_t)t->ne[d]);
        put_u32(&b, (uint32_t)t->type);
        put_u64(&b, t->offset);
        offset += (t->bytes + w->alignment - 1) / w->alignment * w->alignment;
    }
    if (b.failed) {
        free(b.p);
        return qn_error(QN_ERR_OUT_OF_MEMORY, "qn_gguf_writer_begin: header");
    }
    qn_status s = write_bytes(w, b.p, b.len);
    if (s == QN_OK) s = write_padding(w, b.len);
    free(b.p);
    return s;
}

qn_status qn_gguf_writer_begin(qn_gguf_writer *w, const char *path) {
    if (!w || !path) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_gguf_writer_begin: NULL argument");
    if (w->file || w->path) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_gguf_writer_begin: already begun");
    QN_TRY(resolve_alignment(w));
    w->path = malloc(strlen(path) + 1);
    if (!w->path) return qn_error(QN_ERR_OUT_OF_MEMORY, "qn_gguf_writer_begin");
    strcpy(w->path, path);
    w->file = fopen(path, "wb");
    if (!w->file) return qn_error(QN_ERR_IO, "qn_gguf_writer_begin: %s: %s", path, strerror(errno));
    return write_header(w);
}

qn_status qn_gguf_writer_write_tensor(qn_gguf_writer *w, const void *data, uint64_t bytes) {
    if (!w || (!data && bytes)) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_gguf_writer_write_tensor: NULL argument");
    if (!w->file) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_gguf_writer_write_tensor: call qn_gguf_writer_begin first");
    if (w->next >= w->n_tensors)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_gguf_writer_write_tensor: all %zu tensors are written", w->n_tensors);
    const qn_gguf_tensor_record *t = &w->tensors[w->next];
    if (bytes != t->bytes)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_gguf_writer_write_tensor: '%s' has %llu bytes, not %llu", t->name,
                        (unsigned long long)t->bytes, (unsigned long long)bytes);
    QN_TRY(write_bytes(w, data, (size_t)bytes));
    QN_TRY(write_padding(w, bytes));
    w->next++;
    return QN_OK;
}

qn_status qn_gguf_writer_finish(qn_gguf_writer *w) {
    if (!w || !w->file) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_gguf_writer_finish: nothing begun");
    if (w->next != w->n_tensors)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_gguf_writer_finish: tensor '%s' was not written",
                        w->tensors[w->next].name);
    int bad = fclose(w->file) != 0;
    w->file = NULL;
    if (bad) return qn_error(QN_ERR_IO, "qn_gguf_writer_finish: %s: %s", w->path, strerror(errno));
    return QN_OK;
}
