/* safetensors reader: u64 header length, a JSON object
 *   {"__metadata__": {str: str}, NAME: {"dtype": D, "shape": [..],
 *    "data_offsets": [begin, end]}, ...}
 * then the data section, which the offsets index. Every entry is checked at
 * open: known dtype, whole shape, offsets inside the data, size equal to
 * shape times element size. */
#include "formats/json.h"
#include "formats/mapped_file.h"
#include "core/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* The reference implementation refuses larger headers too. */
#define MAX_HEADER (100u << 20)
#define MAX_DIMS 8

typedef struct {
    const char *name;
    int bytes;
    bool has_type;
    qn_dtype type;
} dtype_info;

static const dtype_info dtypes[] = {
    {"F64", 8, true, QN_F64},   {"F32", 4, true, QN_F32},    {"F16", 2, true, QN_F16},
    {"BF16", 2, true, QN_BF16}, {"I64", 8, true, QN_I64},    {"I32", 4, true, QN_I32},
    {"I16", 2, true, QN_I16},   {"I8", 1, true, QN_I8},      {"U8", 1, true, QN_U8},
    {"U32", 4, true, QN_U32},   {"U16", 2, false, QN_F32},   {"U64", 8, false, QN_F32},
    {"BOOL", 1, false, QN_F32}, {"F8_E4M3", 1, false, QN_F32}, {"F8_E5M2", 1, false, QN_F32},
};

typedef struct {
    const char *name; /* points into the JSON tree */
    const dtype_info *dtype;
    int n_dims;
    int64_t shape[MAX_DIMS];
    uint64_t begin, bytes;
} entry;

struct qn_safetensors {
    const uint8_t *base;
    uint64_t size, data_start;
    int mapped;
    qn_json *header;
    const qn_json *metadata;
    entry *entries; /* sorted by data offset */
    int64_t n;
    int64_t *by_name; /* entry indices sorted by name */
};

static qn_status entry_error(const char *name, const char *fmt, const char *detail) {
    char why[256];
    snprintf(why, sizeof why, fmt, detail);
    return qn_error(QN_ERR_FORMAT, "safetensors: tensor '%.100s': %s", name, why);
}

static qn_status parse_entry(qn_safetensors *st, const char *name, const qn_json *j, entry *e) {
    e->name = name;
    if (j->kind != QN_JSON_OBJECT) return entry_error(name, "%s", "entry is not an object");
    const qn_json *dt = qn_json_get(j, "dtype"), *shape = qn_json_get(j, "shape"),
                  *offs = qn_json_get(j, "data_offsets");
    if (!dt || dt->kind != QN_JSON_STRING) return entry_error(name, "%s", "no \"dtype\" string");
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (strcmp(dt->str, dtypes[i].name) == 0) e->dtype = &dtypes[i];
    if (!e->dtype)
        return qn_error(QN_ERR_UNSUPPORTED, "safetensors: tensor '%.100s': dtype '%.32s' is not supported", name, dt->str);
    if (!shape || shape->kind != QN_JSON_ARRAY) return entry_error(name, "%s", "no \"shape\" array");
    if (shape->count > MAX_DIMS) return entry_error(name, "%s", "more than 8 dimensions");
    e->n_dims = (int)shape->count;
    uint64_t nelem = 1;
    for (size_t d = 0; d < shape->count; d++) {
        const qn_json *x = &shape->items[d];
        if (x->kind != QN_JSON_NUMBER || !x->is_uint || x->uint > INT64_MAX)
            return entry_error(name, "%s", "shape holds something other than a non-negative integer");
        if (x->uint != 0 && nelem > UINT64_MAX / x->uint) return entry_error(name, "%s", "shape overflows");
        nelem *= x->uint;
        e->shape[d] = (int64_t)x->uint;
    }
    if (!offs || offs->kind != QN_JSON_ARRAY || offs->count != 2 || offs->items[0].kind != QN_JSON_NUMBER ||
        !offs->items[0].is_uint || offs->items[1].kind != QN_JSON_NUMBER || !offs->items[1].is_uint)
        return entry_error(name, "%s", "\"data_offsets\" is not two non-negative integers");
    uint64_t begin = offs->items[0].uint, end = offs->items[1].uint, data_size = st->size - st->data_start;
    if (begin > end || end > data_size) {
        char d[128];
        snprintf(d, sizeof d, "[%llu, %llu] outside the %llu data bytes", (unsigned long long)begin,
                 (unsigned long long)end, (unsigned long long)data_size);
        return entry_error(name, "data_offsets %s", d);
    }
    if (nelem > UINT64_MAX / (uint64_t)e->dtype->bytes || nelem * (uint64_t)e->dtype->bytes != end - begin) {
        char d[128];
        snprintf(d, sizeof d, "%llu bytes where the shape and dtype need %llu", (unsigned long long)(end - begin),
                 (unsigned long long)(nelem * (uint64_t)e->dtype->bytes));
        return entry_error(name, "data_offsets span %s", d);
    }
    e->begin = begin;
    e->bytes = end - begin;
    return QN_OK;
}

static int by_offset(const void *a, const void *b) {
    const entry *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : strcmp(x->name, y->name);
}

typedef struct {
    const char *name;
    int64_t index;
} name_index;
static int by_name(const void *a, const void *b) {
    return strcmp(((const name_index *)a)->name, ((const name_index *)b)->name);
}

static qn_status parse(qn_safetensors *st) {
    if (st->size < 8)
        return qn_error(QN_ERR_FORMAT, "safetensors: %llu bytes is too short for the header length",
                        (unsigned long long)st->size);
    uint64_t hlen;
    memcpy(&hlen, st->base, 8);
    if (hlen > st->size - 8)
        return qn_error(QN_ERR_FORMAT, "safetensors: header length %llu runs past the end of the file (%llu bytes)",
                        (unsigned long long)hlen, (unsigned long long)st->size);
    if (hlen > MAX_HEADER)
        return qn_error(QN_ERR_FORMAT, "safetensors: header length %llu is over the %u-byte limit",
                        (unsigned long long)hlen, MAX_HEADER);
    st->data_start = 8 + hlen;
    QN_TRY(qn_json_parse((const char *)st->base + 8, (size_t)hlen, "safetensors header", &st->header));
    const qn_json *h = st->header;
    if (h->kind != QN_JSON_OBJECT) return qn_error(QN_ERR_FORMAT, "safetensors: the header is not a JSON object");
    st->entries = calloc(h->count ? h->count : 1, sizeof *st->entries);
    st->by_name = calloc(h->count ? h->count : 1, sizeof *st->by_name);
    if (!st->entries || !st->by_name) return qn_error(QN_ERR_OUT_OF_MEMORY, "safetensors: %zu entries", h->count);
    for (size_t i = 0; i < h->count; i++) {
        if (strcmp(h->keys[i], "__metadata__") == 0) {
            const qn_json *m = &h->items[i];
            if (m->kind == QN_JSON_NULL) continue; /* some writers put null for none */
            if (m->kind != QN_JSON_OBJECT) return qn_error(QN_ERR_FORMAT, "safetensors: __metadata__ is not an object");
            for (size_t k = 0; k < m->count; k++)
                if (m->items[k].kind != QN_JSON_STRING)
                    return qn_error(QN_ERR_FORMAT, "safetensors: __metadata__ '%.100s' is not a string", m->keys[k]);
            st->metadata = m;
            continue;
        }
        QN_TRY(parse_entry(st, h->keys[i], &h->items[i], &st->entries[st->n]));
        st->n++;
    }
    qsort(st->entries, (size_t)st->n, sizeof *st->entries, by_offset);
    name_index *idx = malloc((size_t)(st->n ? st->n : 1) * sizeof *idx);
    if (!idx) return qn_error(QN_ERR_OUT_OF_MEMORY, "safetensors: index");
    for (int64_t i = 0; i < st->n; i++) idx[i] = (name_index){st->entries[i].name, i};
    qsort(idx, (size_t)st->n, sizeof *idx, by_name);
    qn_status s = QN_OK;
    for (int64_t i = 0; i < st->n; i++) {
        st->by_name[i] = idx[i].index;
        if (i > 0 && strcmp(idx[i - 1].name, idx[i].name) == 0 && s == QN_OK)
            s = qn_error(QN_ERR_FORMAT, "safetensors: duplicate tensor '%.100s'", idx[i].name);
    }
    free(idx);
    QN_TRY(s);
    /* Tensors may not share bytes. */
    for (int64_t i = 1; i < st->n; i++) {
        const entry *a = &st->entries[i - 1], *b = &st->entries[i];
        if (a->begin + a->bytes > b->begin)
            return qn_error(QN_ERR_FORMAT, "safetensors: tensors '%.100s' and '%.100s' overlap", a->name, b->name);
    }
    return QN_OK;
}

qn_status qn_safetensors_open_memory(const void *data, size_t size, qn_safetensors **out) {
    if (!out || (!data && size)) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_safetensors_open_memory: NULL argument");
    *out = NULL;
    qn_safetensors *st = calloc(1, sizeof *st);
    if (!st) return qn_error(QN_ERR_OUT_OF_MEMORY, "qn_safetensors_open_memory");
    st->base = data;
    st->size = size;
    qn_status s = parse(st);
    if (s != QN_OK) {
        qn_safetensors_close(st);
        return s;
    }
    *out = st;
    return QN_OK;
}

qn_status qn_safetensors_open(const char *path, qn_safetensors **out) {
    if (!path || !out) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_safetensors_open: NULL argument");
    *out = NULL;
    void *map;
    size_t size;
    QN_TRY(qn_map_file("qn_safetensors_open", "safetensors", path, &map, &size));
    qn_safetensors *st;
    qn_status s = qn_safetensors_open_memory(map, size, &st);
    if (s != QN_OK) return qn_unmap_refused(s, map, size, path);
    st->mapped = 1;
    *out = st;
    return QN_OK;
}

void qn_safetensors_close(qn_safetensors *st) {
    if (!st) return;
    qn_json_free(st->header);
    free(st->entries);
    free(st->by_name);
    if (st->mapped) munmap((void *)st->base, (size_t)st->size);
    free(st);
}

int64_t qn_safetensors_tensor_count(const qn_safetensors *st) { return st ? st->n : 0; }

qn_status qn_safetensors_tensor_get(const qn_safetensors *st, int64_t i, qn_safetensors_tensor *out) {
    if (!st || !out) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_safetensors_tensor_get: NULL argument");
    if (i < 0 || i >= st->n)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_safetensors_tensor_get: index %lld not in [0, %lld)",
                        (long long)i, (long long)st->n);
    const entry *e = &st->entries[i];
    memset(out, 0, sizeof *out);
    out->name = e->name;
    out->dtype = e->dtype->name;
    out->has_type = e->dtype->has_type;
    out->type = e->dtype->type;
    out->n_dims = e->n_dims;
    memcpy(out->shape, e->shape, sizeof out->shape);
    out->offset = e->begin;
    out->bytes = e->bytes;
    out->data = st->base + st->data_start + e->begin;
    return QN_OK;
}

int64_t qn_safetensors_find(const qn_safetensors *st, const char *name) {
    if (!st || !name) return -1;
    int64_t lo = 0, hi = st->n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(st->entries[st->by_name[mid]].name, name);
        if (c == 0) return st->by_name[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

const char *qn_safetensors_metadata(const qn_safetensors *st, const char *key) {
    if (!st || !key) return NULL;
    const qn_json *v = qn_json_get(st->metadata, key);
    return v ? v->str : NULL;
}

int64_t qn_safetensors_metadata_count(const qn_safetensors *st) {
    return st && st->metadata ? (int64_t)st->metadata->count : 0;
}

qn_status qn_safetensors_metadata_at(const qn_safetensors *st, int64_t i, const char **key, const char **value) {
    if (!st || !key || !value) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_safetensors_metadata_at: NULL argument");
    if (i < 0 || i >= qn_safetensors_metadata_count(st))
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_safetensors_metadata_at: index %lld not in [0, %lld)",
                        (long long)i, (long long)qn_safetensors_metadata_count(st));
    *key = st->metadata->keys[i];
    *value = st->metadata->items[i].str;
    return QN_OK;
}
