/* GGUF reader.
 *
 * Layout (all little-endian): "GGUF", u32 version, u64 tensor count, u64
 * metadata count; the metadata entries (string key, u32 type, value); the
 * tensor infos (string name, u32 n_dims, u64 ne[n_dims], u32 type, u64
 * offset); padding to the alignment; the tensor data. A string is a u64
 * length and its bytes; an array is a u32 element type, a u64 count and the
 * elements, which may themselves be strings or arrays.
 *
 * Everything before the data is parsed once at open, through a cursor that
 * refuses to step past the end, so no later access can leave the file. Counts
 * are checked against the bytes left before anything is allocated for them,
 * which bounds memory by the file size. The tensor data is only mapped. */
#include "formats/gguf_internal.h"
#include "formats/mapped_file.h"
#include "core/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Arrays of arrays deeper than this are refused (recursion bound). */
#define MAX_DEPTH 16

/* A parsed value. Arrays of strings or arrays keep one node per element,
 * contiguous from `first`, so element i is found without rescanning. */
typedef struct {
    uint32_t type, elem_type;
    uint64_t count;
    uint64_t pos;      /* payload offset in the file (after the type) */
    uint64_t size;     /* payload bytes */
    uint64_t data_pos; /* where data points: scalar, string bytes, elements */
    uint64_t first;    /* first element node, for arrays of strings/arrays */
} node;

typedef struct {
    char *key;
    node value;
} kv;

struct qn_gguf {
    const uint8_t *base;
    uint64_t size;
    int mapped;
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset;
    kv *kvs;
    int64_t n_kv;
    struct name_index *kv_sorted; /* keys sorted, for lookups */
    qn_gguf_tensor_record *tensors;
    int64_t n_tensors;
    struct name_index *tensor_sorted;
    node *nodes;
    uint64_t n_nodes, cap_nodes;
};

int qn_gguf_type_size(uint32_t type) {
    switch (type) {
    case QN_GGUF_UINT8: case QN_GGUF_INT8: case QN_GGUF_BOOL: return 1;
    case QN_GGUF_UINT16: case QN_GGUF_INT16: return 2;
    case QN_GGUF_UINT32: case QN_GGUF_INT32: case QN_GGUF_FLOAT32: return 4;
    case QN_GGUF_UINT64: case QN_GGUF_INT64: case QN_GGUF_FLOAT64: return 8;
    case QN_GGUF_STRING: case QN_GGUF_ARRAY: return 0;
    }
    return -1;
}

const char *qn_gguf_type_name(qn_gguf_type t) {
    static const char *const names[] = {"uint8",   "int8",  "uint16", "int16", "uint32",
                                        "int32",   "float32", "bool", "string", "array",
                                        "uint64",  "int64", "float64"};
    return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : NULL;
}

/* ---- the cursor */

typedef struct {
    const uint8_t *base;
    uint64_t size, pos;
    char what[160]; /* the field being read, for error messages */
} cursor;

static qn_status truncated(const cursor *c, uint64_t need) {
    return qn_error(QN_ERR_FORMAT, "gguf: %s: needs %llu bytes at offset %llu but the file has %llu left",
                    c->what, (unsigned long long)need, (unsigned long long)c->pos,
                    (unsigned long long)(c->size - c->pos));
}

static qn_status take(cursor *c, uint64_t n, uint64_t *at) {
    if (n > c->size - c->pos) return truncated(c, n);
    *at = c->pos;
    c->pos += n;
    return QN_OK;
}

static qn_status read_u32(cursor *c, uint32_t *v) {
    uint64_t at = 0;
    QN_TRY(take(c, 4, &at));
    memcpy(v, c->base + at, 4);
    return QN_OK;
}

static qn_status read_u64(cursor *c, uint64_t *v) {
    uint64_t at = 0;
    QN_TRY(take(c, 8, &at));
    memcpy(v, c->base + at, 8);
    return QN_OK;
}

/* A string: its bytes are at *at, *len of them. */
static qn_status read_string(cursor *c, uint64_t *at, uint64_t *len) {
    QN_TRY(read_u64(c, len));
    if (*len > c->size - c->pos)
        return qn_error(QN_ERR_FORMAT, "gguf: %s: string length %llu at offset %llu runs past the end of the file",
                        c->what, (unsigned long long)*len, (unsigned long long)(c->pos - 8));
    return take(c, *len, at);
}

/* A NUL-terminated copy of a key or tensor name (embedded NULs refused so
 * that lookups by C string are exact). */
static qn_status copy_name(const cursor *c, uint64_t at, uint64_t len, char **out) {
    if (memchr(c->base + at, 0, len))
        return qn_error(QN_ERR_FORMAT, "gguf: %s: name contains a NUL byte", c->what);
    *out = malloc(len + 1);
    if (!*out) return qn_error(QN_ERR_OUT_OF_MEMORY, "gguf: %s: %llu bytes", c->what, (unsigned long long)len);
    memcpy(*out, c->base + at, len);
    (*out)[len] = 0;
    return QN_OK;
}

/* ---- values */

static qn_status reserve_nodes(qn_gguf *g, uint64_t n, uint64_t *first) {
    if (g->n_nodes + n > g->cap_nodes) {
        uint64_t cap = g->cap_nodes ? g->cap_nodes : 64;
        while (cap < g->n_nodes + n) cap *= 2;
        node *nodes = realloc(g->nodes, cap * sizeof *nodes);
        if (!nodes) return qn_error(QN_ERR_OUT_OF_MEMORY, "gguf: %llu metadata nodes", (unsigned long long)cap);
        g->nodes = nodes;
        g->cap_nodes = cap;
    }
    *first = g->n_nodes;
    g->n_nodes += n;
    return QN_OK;
}

static qn_status parse_value(qn_gguf *g, cursor *c, uint32_t type, int depth, node *out) {
    int fixed = qn_gguf_type_size(type);
    if (fixed < 0) return qn_error(QN_ERR_FORMAT, "gguf: %s: unknown value type %u", c->what, type);
    memset(out, 0, sizeof *out);
    out->type = type;
    out->pos = c->pos;
    out->count = 1;
    if (fixed > 0) {
        QN_TRY(take(c, (uint64_t)fixed, &out->data_pos));
        if (type == QN_GGUF_BOOL && c->base[out->data_pos] > 1)
            return qn_error(QN_ERR_FORMAT, "gguf: %s: bool value %u is not 0 or 1", c->what,
                            c->base[out->data_pos]);
    } else if (type == QN_GGUF_STRING) {
        QN_TRY(read_string(c, &out->data_pos, &out->count));
    } else {
        uint32_t elem = 0;
        uint64_t count = 0;
        QN_TRY(read_u32(c, &elem));
        QN_TRY(read_u64(c, &count));
        int esize = qn_gguf_type_size(elem);
        if (esize < 0) return qn_error(QN_ERR_FORMAT, "gguf: %s: unknown array element type %u", c->what, elem);
        out->elem_type = elem;
        out->count = count;
        uint64_t left = c->size - c->pos;
        if (esize > 0) {
            if (count > left / (uint64_t)esize)
                return qn_error(QN_ERR_FORMAT, "gguf: %s: array of %llu %s runs past the end of the file",
                                c->what, (unsigned long long)count, qn_gguf_type_name((qn_gguf_type)elem));
            QN_TRY(take(c, count * (uint64_t)esize, &out->data_pos));
            if (elem == QN_GGUF_BOOL)
                for (uint64_t i = 0; i < count; i++)
                    if (c->base[out->data_pos + i] > 1)
                        return qn_error(QN_ERR_FORMAT, "gguf: %s: bool element %llu is not 0 or 1", c->what,
                                        (unsigned long long)i);
        } else {
            if (depth >= MAX_DEPTH)
                return qn_error(QN_ERR_FORMAT, "gguf: %s: arrays nested deeper than %d", c->what, MAX_DEPTH);
            /* Each element takes at least its length (string) or its type
             * and count (array), which bounds the nodes allocated below. */
            uint64_t min_size = elem == QN_GGUF_STRING ? 8 : 12;
            if (count > left / min_size)
                return qn_error(QN_ERR_FORMAT, "gguf: %s: array of %llu %ss runs past the end of the file",
                                c->what, (unsigned long long)count, qn_gguf_type_name((qn_gguf_type)elem));
            out->data_pos = c->pos;
            QN_TRY(reserve_nodes(g, count, &out->first));
            for (uint64_t i = 0; i < count; i++) {
                node child;
                QN_TRY(parse_value(g, c, elem, depth + 1, &child));
                g->nodes[out->first + i] = child; /* after the call: it may move g->nodes */
            }
        }
    }
    out->size = c->pos - out->pos;
    return QN_OK;
}

static qn_gguf_value make_value(const qn_gguf *g, const node *n) {
    qn_gguf_value v = {
        .type = (qn_gguf_type)n->type,
        .elem_type = (qn_gguf_type)n->elem_type,
        .count = n->count,
        .data = g->base + n->data_pos,
        .raw = g->base + n->pos,
        .raw_bytes = (size_t)n->size,
        .file = g,
        .node = n->first,
    };
    return v;
}

/* ---- lookups: names sorted once at open, then binary-searched */

typedef struct name_index {
    const char *name;
    int64_t index;
} name_index;

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const name_index *)a)->name, ((const name_index *)b)->name);
}

/* Sort the n names (keys or tensor names) into *out and refuse
 * duplicates. */
static qn_status build_index(qn_gguf *g, int64_t n, int tensors, name_index **out) {
    *out = malloc((size_t)(n ? n : 1) * sizeof **out);
    if (!*out) return qn_error(QN_ERR_OUT_OF_MEMORY, "gguf: index of %lld names", (long long)n);
    for (int64_t i = 0; i < n; i++) {
        (*out)[i].name = tensors ? g->tensors[i].name : g->kvs[i].key;
        (*out)[i].index = i;
    }
    qsort(*out, (size_t)n, sizeof **out, cmp_name);
    for (int64_t i = 1; i < n; i++)
        if (strcmp((*out)[i - 1].name, (*out)[i].name) == 0)
            return qn_error(QN_ERR_FORMAT, "gguf: duplicate %s '%.100s'", tensors ? "tensor" : "key",
                            (*out)[i].name);
    return QN_OK;
}

static int64_t lookup(const qn_gguf *g, const char *name, int tensors) {
    if (!g || !name) return -1;
    const name_index *idx = tensors ? g->tensor_sorted : g->kv_sorted;
    int64_t lo = 0, hi = idx ? (tensors ? g->n_tensors : g->n_kv) : 0;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(idx[mid].name, name);
        if (c == 0) return idx[mid].index;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

/* ---- open */

static qn_status parse_header(qn_gguf *g, cursor *c, uint64_t *n_tensors, uint64_t *n_kv) {
    snprintf(c->what, sizeof c->what, "header");
    uint64_t at = 0;
    QN_TRY(take(c, 4, &at));
    if (memcmp(c->base + at, QN_GGUF_MAGIC, 4) != 0)
        return qn_error(QN_ERR_FORMAT, "gguf: bad magic: not a GGUF file");
    snprintf(c->what, sizeof c->what, "version");
    QN_TRY(read_u32(c, &g->version));
    if (g->version != 2 && g->version != 3) {
        if ((g->version & 0xffff) == 0 && g->version != 0)
            return qn_error(QN_ERR_FORMAT, "gguf: version field 0x%08x: big-endian files are not supported",
                            g->version);
        return qn_error(QN_ERR_FORMAT, "gguf: version %u is not supported (2 and 3 are)", g->version);
    }
    snprintf(c->what, sizeof c->what, "tensor count");
    QN_TRY(read_u64(c, n_tensors));
    snprintf(c->what, sizeof c->what, "metadata count");
    QN_TRY(read_u64(c, n_kv));
    /* The smallest entry is a key length, a type and a one-byte value; the
     * smallest tensor info a name length, n_dims, type and offset. */
    uint64_t left = c->size - c->pos;
    if (*n_kv > left / 13)
        return qn_error(QN_ERR_FORMAT, "gguf: metadata count %llu does not fit in the %llu bytes left",
                        (unsigned long long)*n_kv, (unsigned long long)left);
    if (*n_tensors > left / 24)
        return qn_error(QN_ERR_FORMAT, "gguf: tensor count %llu does not fit in the %llu bytes left",
                        (unsigned long long)*n_tensors, (unsigned long long)left);
    return QN_OK;
}

static qn_status parse_kvs(qn_gguf *g, cursor *c, uint64_t n_kv) {
    g->kvs = calloc(n_kv ? n_kv : 1, sizeof *g->kvs);
    if (!g->kvs) return qn_error(QN_ERR_OUT_OF_MEMORY, "gguf: %llu metadata entries", (unsigned long long)n_kv);
    for (uint64_t i = 0; i < n_kv; i++) {
        snprintf(c->what, sizeof c->what, "key of metadata entry %llu", (unsigned long long)i);
        uint64_t at = 0, len = 0;
        QN_TRY(read_string(c, &at, &len));
        QN_TRY(copy_name(c, at, len, &g->kvs[i].key));
        g->n_kv = (int64_t)i + 1;
        snprintf(c->what, sizeof c->what, "metadata '%.100s'", g->kvs[i].key);
        uint32_t type = 0;
        QN_TRY(read_u32(c, &type));
        QN_TRY(parse_value(g, c, type, 0, &g->kvs[i].value));
    }
    QN_TRY(build_index(g, g->n_kv, 0, &g->kv_sorted));

    g->alignment = QN_GGUF_DEFAULT_ALIGNMENT;
    int64_t ia = lookup(g, "general.alignment", 0);
    if (ia >= 0) {
        const node *n = &g->kvs[ia].value;
        if (n->type != QN_GGUF_UINT32)
            return qn_error(QN_ERR_FORMAT, "gguf: general.alignment has type %s, not uint32",
                            qn_gguf_type_name((qn_gguf_type)n->type));
        memcpy(&g->alignment, g->base + n->data_pos, 4);
        if (g->alignment == 0 || (g->alignment & (g->alignment - 1)) != 0)
            return qn_error(QN_ERR_FORMAT, "gguf: general.alignment %u is not a power of two", g->alignment);
    }
    return QN_OK;
}

/* a * b into *out, false on uint64 overflow. */
static int mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
    if (a != 0 && b > UINT64_MAX / a) return 0;
    *out = a * b;
    return 1;
}

static qn_status parse_tensor_info(qn_gguf *g, cursor *c, uint64_t i, qn_gguf_tensor_record *t) {
    snprintf(c->what, sizeof c->what, "name of tensor %llu", (unsigned long long)i);
    uint64_t at = 0, len = 0;
    QN_TRY(read_string(c, &at, &len));
    QN_TRY(copy_name(c, at, len, &t->name));
    snprintf(c->what, sizeof c->what, "tensor '%.100s'", t->name);
    uint32_t n_dims = 0;
    QN_TRY(read_u32(c, &n_dims));
    if (n_dims > QN_GGUF_MAX_DIMS)
        return qn_error(QN_ERR_FORMAT, "gguf: %s: n_dims %u is more than %d", c->what, n_dims, QN_GGUF_MAX_DIMS);
    t->n_dims = (int)n_dims;
    uint64_t nelem = 1;
    for (int d = 0; d < 4; d++) {
        uint64_t ne = 1;
        if (d < t->n_dims) QN_TRY(read_u64(c, &ne));
        if (ne > INT64_MAX || !mul_u64(nelem, ne, &nelem) || nelem > INT64_MAX)
            return qn_error(QN_ERR_FORMAT, "gguf: %s: ne[%d] = %llu overflows the element count", c->what, d,
                            (unsigned long long)ne);
        t->ne[d] = (int64_t)ne;
    }
    uint32_t type = 0;
    QN_TRY(read_u32(c, &type));
    t->type = (qn_dtype)type;
    /* quanta's own dtypes (100+) are not GGUF types */
    if (type >= 100 || qn_dtype_block_bytes(t->type) == 0)
        return qn_error(QN_ERR_UNSUPPORTED, "gguf: %s: tensor type %u is not supported", c->what, type);
    if (t->ne[0] / qn_dtype_block_elems(t->type) > INT64_MAX / qn_dtype_block_bytes(t->type))
        return qn_error(QN_ERR_FORMAT, "gguf: %s: a row of ne[0] = %lld overflows its byte size", c->what,
                        (long long)t->ne[0]);
    int64_t row = qn_dtype_row_bytes(t->type, t->ne[0]);
    if (row < 0)
        return qn_error(QN_ERR_FORMAT, "gguf: %s: ne[0] = %lld is not a multiple of %s's block of %lld", c->what,
                        (long long)t->ne[0], qn_dtype_name(t->type), (long long)qn_dtype_block_elems(t->type));
    uint64_t rows;
    if (!mul_u64((uint64_t)t->ne[1], (uint64_t)t->ne[2], &rows) || !mul_u64(rows, (uint64_t)t->ne[3], &rows) ||
        !mul_u64((uint64_t)row, rows, &t->bytes))
        return qn_error(QN_ERR_FORMAT, "gguf: %s: byte size overflows", c->what);
    QN_TRY(read_u64(c, &t->offset));
    if (t->offset % g->alignment != 0)
        return qn_error(QN_ERR_FORMAT, "gguf: %s: offset %llu is not a multiple of the alignment %u", c->what,
                        (unsigned long long)t->offset, g->alignment);
    return QN_OK;
}

static qn_status parse_tensors(qn_gguf *g, cursor *c, uint64_t n_tensors) {
    g->tensors = calloc(n_tensors ? n_tensors : 1, sizeof *g->tensors);
    if (!g->tensors) return qn_error(QN_ERR_OUT_OF_MEMORY, "gguf: %llu tensors", (unsigned long long)n_tensors);
    for (uint64_t i = 0; i < n_tensors; i++) {
        g->n_tensors = (int64_t)i + 1;
        QN_TRY(parse_tensor_info(g, c, i, &g->tensors[i]));
    }
    QN_TRY(build_index(g, g->n_tensors, 1, &g->tensor_sorted));

    /* The data section starts at the next multiple of the alignment. */
    uint64_t pad = (g->alignment - c->pos % g->alignment) % g->alignment;
    g->data_offset = c->pos + pad;
    if (n_tensors == 0) return QN_OK;
    if (g->data_offset > g->size)
        return qn_error(QN_ERR_FORMAT, "gguf: the data section would start at %llu, past the end of the file (%llu)",
                        (unsigned long long)g->data_offset, (unsigned long long)g->size);
    uint64_t data_size = g->size - g->data_offset;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const qn_gguf_tensor_record *t = &g->tensors[i];
        if (t->offset > data_size || t->bytes > data_size - t->offset)
            return qn_error(QN_ERR_FORMAT,
                            "gguf: tensor '%.100s': %llu bytes at data offset %llu run past the end of the file "
                            "(data section %llu bytes)",
                            t->name, (unsigned long long)t->bytes, (unsigned long long)t->offset,
                            (unsigned long long)data_size);
    }
    return QN_OK;
}

static qn_status parse(qn_gguf *g) {
    cursor c = {.base = g->base, .size = g->size, .pos = 0};
    uint64_t n_tensors = 0, n_kv = 0;
    QN_TRY(parse_header(g, &c, &n_tensors, &n_kv));
    QN_TRY(parse_kvs(g, &c, n_kv));
    QN_TRY(parse_tensors(g, &c, n_tensors));
    return QN_OK;
}

qn_status qn_gguf_open_memory(const void *data, size_t size, qn_gguf **out) {
    if (!out || (!data && size)) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_gguf_open_memory: NULL argument");
    *out = NULL;
    qn_gguf *g = calloc(1, sizeof *g);
    if (!g) return qn_error(QN_ERR_OUT_OF_MEMORY, "qn_gguf_open_memory");
    g->base = data;
    g->size = size;
    qn_status s = parse(g);
    if (s != QN_OK) {
        qn_gguf_close(g);
        return s;
    }
    *out = g;
    return QN_OK;
}

qn_status qn_gguf_open(const char *path, qn_gguf **out) {
    if (!path || !out) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_gguf_open: NULL argument");
    *out = NULL;
    void *map;
    size_t size;
    QN_TRY(qn_map_file("qn_gguf_open", "gguf", path, &map, &size));
    qn_gguf *g;
    qn_status s = qn_gguf_open_memory(map, size, &g);
    if (s != QN_OK) return qn_unmap_refused(s, map, size, path);
    g->mapped = 1;
    *out = g;
    return QN_OK;
}

void qn_gguf_close(qn_gguf *g) {
    if (!g) return;
    for (int64_t i = 0; i < g->n_kv; i++) free(g->kvs[i].key);
    for (int64_t i = 0; i < g->n_tensors; i++) free(g->tensors[i].name);
    free(g->kvs);
    free(g->kv_sorted);
    free(g->tensors);
    free(g->tensor_sorted);
    free(g->nodes);
    if (g->mapped) munmap((void *)g->base, (size_t)g->size);
    free(g);
}

/* ---- queries */

uint32_t qn_gguf_version(const qn_gguf *g) { return g ? g->version : 0; }
uint32_t qn_gguf_alignment(const qn_gguf *g) { return g ? g->alignment : 0; }
uint64_t qn_gguf_data_offset(const qn_gguf *g) { return g ? g->data_offset : 0; }
int64_t qn_gguf_kv_count(const qn_gguf *g) { return g ? g->n_kv : 0; }
int64_t qn_gguf_tensor_count(const qn_gguf *g) { return g ? g->n_tensors : 0; }
int64_t qn_gguf_find_key(const qn_gguf *g, const char *key) { return lookup(g, key, 0); }
int64_t qn_gguf_find_tensor(const qn_gguf *g, const char *name) { return lookup(g, name, 1); }

qn_status qn_gguf_kv(const qn_gguf *g, int64_t i, const char **key, qn_gguf_value *value) {
    if (!g || !key || !value) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_gguf_kv: NULL argument");
    if (i < 0 || i >= g->n_kv)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_gguf_kv: index %lld not in [0, %lld)", (long long)i,
                        (long long)g->n_kv);
    *key = g->kvs[i].key;
    *value = make_value(g, &g->kvs[i].value);
    return QN_OK;
}

qn_status qn_gguf_get(const qn_gguf *g, const char *key, qn_gguf_value *value) {
    if (!g || !key || !value) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_gguf_get: NULL argument");
    int64_t i = lookup(g, key, 0);
    if (i < 0) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_gguf_get: no metadata key '%s'", key);
    *value = make_value(g, &g->kvs[i].value);
    return QN_OK;
}

qn_status qn_gguf_array_get(const qn_gguf_value *array, uint64_t i, qn_gguf_value *out) {
    if (!array || !out || !array->file) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_gguf_array_get: NULL argument");
    if (array->type != QN_GGUF_ARRAY)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_gguf_array_get: value is a %s, not an array",
                        qn_gguf_type_name(array->type));
    if (i >= array->count)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_gguf_array_get: index %llu not in [0, %llu)",
                        (unsigned long long)i, (unsigned long long)array->count);
    const qn_gguf *g = array->file;
    int esize = qn_gguf_type_size(array->elem_type);
    if (esize == 0) {
        *out = make_value(g, &g->nodes[array->node + i]);
        return QN_OK;
    }
    const uint8_t *p = (const uint8_t *)array->data + i * (uint64_t)esize;
    qn_gguf_value v = {.type = array->elem_type, .count = 1, .data = p, .raw = p, .raw_bytes = (size_t)esize,
                       .file = g};
    *out = v;
    return QN_OK;
}

qn_status qn_gguf_value_int(const qn_gguf_value *v, int64_t *out) {
    if (!v || !out) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_gguf_value_int: NULL argument");
    const uint8_t *p = v->data;
    switch (v->type) {
    case QN_GGUF_UINT8: case QN_GGUF_BOOL: *out = p[0]; return QN_OK;
    case QN_GGUF_INT8: *out = (int8_t)p[0]; return QN_OK;
    case QN_GGUF_UINT16: { uint16_t x; memcpy(&x, p, 2); *out = x; return QN_OK; }
    case QN_GGUF_INT16: { int16_t x; memcpy(&x, p, 2); *out = x; return QN_OK; }
    case QN_GGUF_UINT32: { uint32_t x; memcpy(&x, p, 4); *out = x; return QN_OK; }
    case QN_GGUF_INT32: { int32_t x; memcpy(&x, p, 4); *out = x; return QN_OK; }
    case QN_GGUF_INT64: { int64_t x; memcpy(&x, p, 8); *out = x; return QN_OK; }
    case QN_GGUF_UINT64: {
        uint64_t x;
        memcpy(&x, p, 8);
        if (x > INT64_MAX)
            return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_gguf_value_int: uint64 %llu exceeds int64",
                            (unsigned long long)x);
        *out = (int64_t)x;
        return QN_OK;
    }
    default:
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_gguf_value_int: value is a %s, not an integer",
                        qn_gguf_type_name(v->type) ? qn_gguf_type_name(v->type) : "(invalid)");
    }
}

qn_status qn_gguf_value_float(const qn_gguf_value *v, double *out) {
    if (!v || !out) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_gguf_value_float: NULL argument");
    if (v->type == QN_GGUF_FLOAT32) {
        float f;
        memcpy(&f, v->data, 4);
        *out = f;
        return QN_OK;
    }
    if (v->type == QN_GGUF_FLOAT64) {
        memcpy(out, v->data, 8);
        return QN_OK;
    }
    if (v->type == QN_GGUF_UINT64) {
        uint64_t x;
        memcpy(&x, v->data, 8);
        *out = (double)x;
        return QN_OK;
    }
    int64_t i;
    if (qn_gguf_value_int(v, &i) != QN_OK)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_gguf_value_float: value is a %s, not a number",
                        qn_gguf_type_name(v->type) ? qn_gguf_type_name(v->type) : "(invalid)");
    *out = (double)i;
    return QN_OK;
}

qn_status qn_gguf_value_str(const qn_gguf_value *v, const char **s, size_t *len) {
    if (!v || !s || !len) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_gguf_value_str: NULL argument");
    if (v->type != QN_GGUF_STRING)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_gguf_value_str: value is a %s, not a string",
                        qn_gguf_type_name(v->type) ? qn_gguf_type_name(v->type) : "(invalid)");
    *s = v->data;
    *len = (size_t)v->count;
    return QN_OK;
}

qn_status qn_gguf_tensor_get(const qn_gguf *g, int64_t i, qn_gguf_tensor *out) {
    if (!g || !out) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_gguf_tensor_get: NULL argument");
    if (i < 0 || i >= g->n_tensors)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_gguf_tensor_get: index %lld not in [0, %lld)", (long long)i,
                        (long long)g->n_tensors);
    const qn_gguf_tensor_record *t = &g->tensors[i];
    out->name = t->name;
    out->type = t->type;
    out->n_dims = t->n_dims;
    memcpy(out->ne, t->ne, sizeof out->ne);
    out->offset = t->offset;
    out->bytes = t->bytes;
    out->data = g->base + g->data_offset + t->offset;
    return QN_OK;
}

qn_status qn_gguf_tensor_upload(const qn_gguf *g, int64_t i, qn_device *dev, qn_buffer **out) {
    if (!dev || !out) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_gguf_tensor_upload: NULL argument");
    qn_gguf_tensor t;
    QN_TRY(qn_gguf_tensor_get(g, i, &t));
    qn_buffer *buf;
    QN_TRY(qn_buffer_alloc(dev, t.type, t.n_dims > 0 ? t.n_dims : 1, t.ne, &buf));
    qn_status s = qn_buffer_write(buf, 0, t.data, (size_t)t.bytes);
    if (s != QN_OK) {
        qn_buffer_free(buf);
        return s;
    }
    *out = buf;
    return QN_OK;
}
