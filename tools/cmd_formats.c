/* quanta inspect | dump | quantize: look into and rewrite weight files. */
#include "cli.h"
#include "commands.h"
#include "core/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- printing metadata values */

static void print_json_string(FILE *f, const char *s, size_t len) {
    fputc('"', f);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c == '\n') fputs("\\n", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c == '\r') fputs("\\r", f);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

/* One value as JSON. Arrays print in full with --json; in the text listing
 * (`limit` > 0) only their first `limit` elements. */
static void print_value(FILE *f, const qn_gguf_value *v, uint64_t limit) {
    switch (v->type) {
    case QN_GGUF_STRING: {
        const char *s;
        size_t len;
        qn_gguf_value_str(v, &s, &len);
        print_json_string(f, s, len);
        return;
    }
    case QN_GGUF_BOOL:
        fputs(*(const uint8_t *)v->data ? "true" : "false", f);
        return;
    case QN_GGUF_FLOAT32:
    case QN_GGUF_FLOAT64: {
        double d;
        qn_gguf_value_float(v, &d);
        /* JSON has no NaN or infinity */
        if (!isfinite(d)) fputs("null", f);
        else fprintf(f, v->type == QN_GGUF_FLOAT32 ? "%.9g" : "%.17g", d);
        return;
    }
    case QN_GGUF_UINT64: {
        uint64_t u;
        memcpy(&u, v->data, 8);
        fprintf(f, "%llu", (unsigned long long)u);
        return;
    }
    case QN_GGUF_ARRAY: {
        fputc('[', f);
        uint64_t n = limit && v->count > limit ? limit : v->count;
        for (uint64_t i = 0; i < n; i++) {
            qn_gguf_value e;
            qn_gguf_array_get(v, i, &e);
            if (i) fputs(", ", f);
            print_value(f, &e, limit);
        }
        if (n < v->count) fprintf(f, ", ... (%llu in all)", (unsigned long long)v->count);
        fputc(']', f);
        return;
    }
    default: {
        int64_t i;
        qn_gguf_value_int(v, &i);
        fprintf(f, "%lld", (long long)i);
        return;
    }
    }
}

static void print_type(FILE *f, const qn_gguf_value *v) {
    if (v->type == QN_GGUF_ARRAY) fprintf(f, "%s[%llu]", qn_gguf_type_name(v->elem_type), (unsigned long long)v->count);
    else fputs(qn_gguf_type_name(v->type), f);
}

static void print_shape(FILE *f, const qn_gguf_tensor *t) {
    for (int d = 0; d < t->n_dims; d++) fprintf(f, "%s%lld", d ? ", " : "", (long long)t->ne[d]);
}

static int inspect_gguf(const char *path, int json) {
    qn_gguf *g;
    qn_status s = qn_gguf_open(path, &g);
    if (s != QN_OK) return qn_cli_fail("inspect", s);
    FILE *f = stdout;
    if (json) fputs("{\"metadata\": {", f);
    else printf("%s: GGUF version %u, %lld metadata entries, %lld tensors, alignment %u, data at %llu\n\n", path,
                qn_gguf_version(g), (long long)qn_gguf_kv_count(g), (long long)qn_gguf_tensor_count(g),
                qn_gguf_alignment(g), (unsigned long long)qn_gguf_data_offset(g));
    for (int64_t i = 0; i < qn_gguf_kv_count(g); i++) {
        const char *key;
        qn_gguf_value v;
        qn_gguf_kv(g, i, &key, &v);
        if (json) {
            fputs(i ? ", " : "", f);
            print_json_string(f, key, strlen(key));
            fputs(": ", f);
            print_value(f, &v, 0);
        } else {
            printf("  %-40s ", key);
            print_type(f, &v);
            fputs(" = ", f);
            print_value(f, &v, 8);
            fputc('\n', f);
        }
    }
    if (json) fputs("}, \"tensors\": [", f);
    else printf("\n  %-40s %-8s %-24s %14s %14s\n", "tensor", "type", "shape", "offset", "bytes");
    for (int64_t i = 0; i < qn_gguf_tensor_count(g); i++) {
        qn_gguf_tensor t;
        qn_gguf_tensor_get(g, i, &t);
        if (json) {
            fputs(i ? ", {\"name\": " : "{\"name\": ", f);
            print_json_string(f, t.name, strlen(t.name));
            fprintf(f, ", \"type\": \"%s\", \"shape\": [", qn_dtype_name(t.type));
            print_shape(f, &t);
            fprintf(f, "], \"offset\": %llu, \"bytes\": %llu}", (unsigned long long)t.offset,
                    (unsigned long long)t.bytes);
        } else {
            char shape[64] = "";
            for (int d = 0; d < t.n_dims; d++)
                snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%lld", d ? " x " : "",
                         (long long)t.ne[d]);
            printf("  %-40s %-8s %-24s %14llu %14llu\n", t.name, qn_dtype_name(t.type), shape,
                   (unsigned long long)t.offset, (unsigned long long)t.bytes);
        }
    }
    if (json) fputs("]}\n", f);
    qn_gguf_close(g);
    return 0;
}

static int inspect_safetensors(const char *path, int json) {
    qn_safetensors *st;
    qn_status s = qn_safetensors_open(path, &st);
    if (s != QN_OK) return qn_cli_fail("inspect", s);
    int64_t n = qn_safetensors_tensor_count(st);
    if (json) fputs("{\"metadata\": {", stdout);
    else printf("%s: safetensors, %lld tensors\n\n", path, (long long)n);
    for (int64_t i = 0; i < qn_safetensors_metadata_count(st); i++) {
        const char *key, *value;
        qn_safetensors_metadata_at(st, i, &key, &value);
        if (json) {
            fputs(i ? ", " : "", stdout);
            print_json_string(stdout, key, strlen(key));
            fputs(": ", stdout);
            print_json_string(stdout, value, strlen(value));
        } else {
            printf("  %-40s string = ", key);
            print_json_string(stdout, value, strlen(value));
            fputc('\n', stdout);
        }
    }
    if (!json) printf("\n  %-40s %-8s %-24s %14s %14s\n", "tensor", "dtype", "shape", "offset", "bytes");
    else fputs("}, \"tensors\": [", stdout);
    for (int64_t i = 0; i < n; i++) {
        qn_safetensors_tensor t;
        qn_safetensors_tensor_get(st, i, &t);
        unsigned long long offset = (unsigned long long)t.offset;
        char shape[128] = "";
        for (int d = 0; d < t.n_dims; d++)
            snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%lld",
                     d ? (json ? ", " : " x ") : "", (long long)t.shape[d]);
        if (json) {
            fputs(i ? ", {\"name\": " : "{\"name\": ", stdout);
            print_json_string(stdout, t.name, strlen(t.name));
            printf(", \"type\": \"%s\", \"shape\": [%s], \"offset\": %llu, \"bytes\": %llu}", t.dtype, shape,
                   offset, (unsigned long long)t.bytes);
        } else {
            printf("  %-40s %-8s %-24s %14llu %14llu\n", t.name, t.dtype, shape, offset, (unsigned long long)t.bytes);
        }
    }
    if (json) fputs("]}\n", stdout);
    qn_safetensors_close(st);
    return 0;
}

/* A file is read as GGUF when it starts with "GGUF" or is named *.gguf
 * (so a damaged one gets the GGUF reader's message); else as safetensors. */
static int is_gguf(const char *path) {
    size_t len = strlen(path);
    if (len >= 5 && strcmp(path + len - 5, ".gguf") == 0) return 1;
    char magic[4] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return 1; /* let the GGUF reader report the error */
    size_t got = fread(magic, 1, 4, f);
    fclose(f);
    return got == 4 && memcmp(magic, "GGUF", 4) == 0;
}

int qn_cmd_inspect(int argc, char **argv) {
    const char *path = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) json = 1;
        else if (!path) path = argv[i];
        else path = NULL, i = argc;
    }
    if (!path) {
        fprintf(stderr, "usage: quanta inspect FILE [--json]\n");
        return 2;
    }
    return is_gguf(path) ? inspect_gguf(path, json) : inspect_safetensors(path, json);
}

/* ---- dump */

/* A .npy (format 1.0) header for float32 data of the given NumPy shape. */
static int write_npy_header(FILE *f, int ndim, const int64_t *shape) {
    char dict[256];
    int n = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    for (int d = 0; d < ndim; d++) n += snprintf(dict + n, sizeof dict - (size_t)n, "%lld,%s", (long long)shape[d], d + 1 < ndim ? " " : "");
    n += snprintf(dict + n, sizeof dict - (size_t)n, "), }");
    /* magic (6) + version (2) + length (2) + dict + padding + '\n' is a
     * multiple of 64 */
    int total = (10 + n + 1 + 63) / 64 * 64;
    int pad = total - 10 - n - 1;
    unsigned char head[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)((total - 10) & 0xff),
                              (unsigned char)((total - 10) >> 8)};
    if (fwrite(head, 1, 10, f) != 10 || fwrite(dict, 1, (size_t)n, f) != (size_t)n) return 1;
    for (int i = 0; i < pad; i++) fputc(' ', f);
    return fputc('\n', f) == EOF;
}

/* Write rows x ne0 elements of `type` at data as float32 NumPy data. */
static int write_npy(const char *out, int ndim, const int64_t *shape, qn_dtype type, const void *data, int64_t rows,
                     int64_t ne0) {
    int64_t row_bytes = qn_dtype_row_bytes(type, ne0);
    float *row = malloc((size_t)(ne0 ? ne0 : 1) * sizeof *row);
    FILE *f = fopen(out, "wb");
    int rc = 0;
    if (!row || !f || write_npy_header(f, ndim, shape)) {
        fprintf(stderr, "quanta: dump: cannot write %s\n", out);
        rc = 1;
    }
    for (int64_t r = 0; rc == 0 && r < rows; r++) {
        qn_status s = qn_dequantize_row(type, (const uint8_t *)data + r * row_bytes, row, ne0);
        if (s != QN_OK) rc = qn_cli_fail("dump", s);
        else if (fwrite(row, sizeof *row, (size_t)ne0, f) != (size_t)ne0) {
            fprintf(stderr, "quanta: dump: cannot write %s\n", out);
            rc = 1;
        }
    }
    if (f && fclose(f) != 0 && rc == 0) {
        fprintf(stderr, "quanta: dump: cannot write %s\n", out);
        rc = 1;
    }
    if (rc != 0 && f) remove(out);
    free(row);
    return rc;
}

static int dump_gguf(const char *path, const char *name, const char *out) {
    qn_gguf *g;
    qn_status s = qn_gguf_open(path, &g);
    if (s != QN_OK) return qn_cli_fail("dump", s);
    int64_t idx = qn_gguf_find_tensor(g, name);
    int rc = 1;
    if (idx < 0) {
        fprintf(stderr, "quanta: dump: no tensor '%s' in %s\n", name, path);
    } else {
        qn_gguf_tensor t;
        qn_gguf_tensor_get(g, idx, &t);
        int64_t shape[4];
        for (int d = 0; d < t.n_dims; d++) shape[d] = t.ne[t.n_dims - 1 - d]; /* NumPy order */
        rc = write_npy(out, t.n_dims, shape, t.type, t.data, t.ne[1] * t.ne[2] * t.ne[3], t.ne[0]);
    }
    qn_gguf_close(g);
    return rc;
}

static int dump_safetensors(const char *path, const char *name, const char *out) {
    qn_safetensors *st;
    qn_status s = qn_safetensors_open(path, &st);
    if (s != QN_OK) return qn_cli_fail("dump", s);
    int64_t idx = qn_safetensors_find(st, name);
    int rc = 1;
    qn_safetensors_tensor t;
    if (idx < 0) {
        fprintf(stderr, "quanta: dump: no tensor '%s' in %s\n", name, path);
    } else if (qn_safetensors_tensor_get(st, idx, &t), !t.has_type || !qn_dtype_is_quantizable(t.type)) {
        fprintf(stderr, "quanta: dump: tensor '%s' is %s, not a float type\n", name, t.dtype);
    } else {
        int64_t n = 1;
        for (int d = 0; d < t.n_dims; d++) n *= t.shape[d];
        rc = write_npy(out, t.n_dims, t.shape, t.type, t.data, 1, n);
    }
    qn_safetensors_close(st);
    return rc;
}

int qn_cmd_dump(int argc, char **argv) {
    const char *path = NULL, *name = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) out = argv[++i];
        else if (!path) path = argv[i];
        else if (!name) name = argv[i];
    }
    if (!path || !name || !out) {
        fprintf(stderr, "usage: quanta dump FILE TENSOR -o OUT.npy\n");
        return 2;
    }
    return is_gguf(path) ? dump_gguf(path, name, out) : dump_safetensors(path, name, out);
}

/* ---- quantize */

/* llama.cpp's llama_ftype for a file whose weights are all `type` (the _S
 * variant for K-quants), written to general.file_type; -1 when none. */
static int file_type_of(qn_dtype type) {
    switch (type) {
    case QN_F32: return 0;
    case QN_F16: return 1;
    case QN_Q4_0: return 2;
    case QN_Q4_1: return 3;
    case QN_Q8_0: return 7;
    case QN_Q5_0: return 8;
    case QN_Q5_1: return 9;
    case QN_Q2_K: return 10;
    case QN_Q3_K: return 11;
    case QN_Q4_K: return 14;
    case QN_Q5_K: return 16;
    case QN_Q6_K: return 18;
    case QN_IQ4_NL: return 25;
    case QN_IQ4_XS: return 30;
    case QN_BF16: return 32;
    case QN_MXFP4: return 38;
    default: return -1;
    }
}

/* The type a tensor with rows of ne0 gets: `want`, or when ne0 does not fit
 * its block, what llama.cpp falls back to (K-quants and iq4_xs to a 32-block
 * type of similar size, then f16). */
static qn_dtype fit_type(qn_dtype want, int64_t ne0) {
    if (ne0 % qn_dtype_block_elems(want) == 0) return want;
    qn_dtype alt = QN_F16;
    switch (want) {
    case QN_Q2_K: case QN_Q3_K: case QN_IQ4_XS: alt = QN_IQ4_NL; break;
    case QN_Q4_K: alt = QN_Q5_0; break;
    case QN_Q5_K: alt = QN_Q5_1; break;
    case QN_Q6_K: alt = QN_Q8_0; break;
    default: break;
    }
    return ne0 % qn_dtype_block_elems(alt) == 0 ? alt : QN_F16;
}

/* Weights are quantized: float tensors of two or more dimensions. */
static int is_weight(const qn_gguf_tensor *t) {
    return t->n_dims >= 2 && (t->type == QN_F32 || t->type == QN_F16 || t->type == QN_BF16 ||
                              qn_dtype_block_elems(t->type) > 1);
}

static void progress(int64_t done, int64_t total, const char *name) {
    const int width = 30;
    int fill = total ? (int)(done * width / total) : width;
    fprintf(stderr, "\r[%.*s%*s] %lld/%lld %-48.48s", fill, "##############################", width - fill, "",
            (long long)done, (long long)total, name);
    if (done == total) fputc('\n', stderr);
    fflush(stderr);
}

/* What quantize writes: each weight in `type`, or in its own type when
 * `keep`; with `random`, the weights' values are replaced by random ones
 * (normal, standard deviation 0.02, from `seed`) before quantizing: a file of
 * the same shape and types for benchmarks. */
typedef struct {
    qn_dtype type;
    bool keep, random;
    uint64_t seed;
} quantize_opts;

/* A standard normal value from the xorshift state *s (Box-Muller). */
static float normal(uint64_t *s) {
    double u[2];
    for (int i = 0; i < 2; i++) {
        *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
        u[i] = ((double)(*s >> 11) + 0.5) / 9007199254740992.0;
    }
    return (float)(sqrt(-2.0 * log(u[0])) * cos(6.283185307179586 * u[1]));
}

/* Convert one tensor row by row into `dst` (rows of `to`). */
static qn_status convert_tensor(const qn_gguf_tensor *t, qn_dtype to, const quantize_opts *o, uint64_t *rng,
                                uint8_t *dst, float *row) {
    int64_t rows = t->ne[1] * t->ne[2] * t->ne[3];
    int64_t in_row = qn_dtype_row_bytes(t->type, t->ne[0]), out_row = qn_dtype_row_bytes(to, t->ne[0]);
    for (int64_t r = 0; r < rows; r++) {
        if (o->random)
            for (int64_t i = 0; i < t->ne[0]; i++) row[i] = 0.02f * normal(rng);
        else
            QN_TRY(qn_dequantize_row(t->type, (const uint8_t *)t->data + r * in_row, row, t->ne[0]));
        QN_TRY(qn_quantize_row(to, row, dst + r * out_row, t->ne[0]));
    }
    return QN_OK;
}

static qn_status quantize_file(qn_gguf *in, const char *out_path, const quantize_opts *o) {
    const qn_dtype type = o->type;
    uint64_t rng = o->seed * 0x9E3779B97F4A7C15ull + 1;
    qn_gguf_writer *w;
    QN_TRY(qn_gguf_writer_create(&w));
    qn_status s = QN_OK;
    for (int64_t i = 0; s == QN_OK && i < qn_gguf_kv_count(in); i++) {
        const char *key;
        qn_gguf_value v;
        s = qn_gguf_kv(in, i, &key, &v);
        if (s == QN_OK) s = qn_gguf_writer_set_value(w, key, &v);
    }
    uint32_t qversion = 2;
    int ftype = o->keep ? -1 : file_type_of(type);
    if (s == QN_OK) s = qn_gguf_writer_set_scalar(w, "general.quantization_version", QN_GGUF_UINT32, &qversion);
    if (s == QN_OK && ftype >= 0) {
        uint32_t ft = (uint32_t)ftype;
        s = qn_gguf_writer_set_scalar(w, "general.file_type", QN_GGUF_UINT32, &ft);
    }
    int64_t n = qn_gguf_tensor_count(in);
    qn_dtype *to = calloc((size_t)(n ? n : 1), sizeof *to);
    if (!to) s = qn_error(QN_ERR_OUT_OF_MEMORY, "quantize: %lld tensors", (long long)n);
    int64_t max_ne0 = 1;
    uint64_t max_bytes = 1;
    for (int64_t i = 0; s == QN_OK && i < n; i++) {
        qn_gguf_tensor t;
        qn_gguf_tensor_get(in, i, &t);
        to[i] = !is_weight(&t) || o->keep ? t.type : fit_type(type, t.ne[0]);
        if (is_weight(&t) && !o->keep && to[i] != type)
            fprintf(stderr, "quanta: quantize: %s: rows of %lld do not fit %s's block of %lld, using %s\n", t.name,
                    (long long)t.ne[0], qn_dtype_name(type), (long long)qn_dtype_block_elems(type),
                    qn_dtype_name(to[i]));
        s = qn_gguf_writer_add_tensor(w, t.name, to[i], t.n_dims, t.ne);
        if (t.ne[0] > max_ne0) max_ne0 = t.ne[0];
        uint64_t b = (uint64_t)qn_dtype_row_bytes(to[i], t.ne[0]) * (uint64_t)(t.ne[1] * t.ne[2] * t.ne[3]);
        if (b > max_bytes) max_bytes = b;
    }
    if (s == QN_OK) s = qn_gguf_writer_begin(w, out_path);
    uint8_t *buf = s == QN_OK ? malloc((size_t)max_bytes) : NULL;
    float *row = s == QN_OK ? malloc((size_t)max_ne0 * sizeof *row) : NULL;
    if (s == QN_OK && (!buf || !row)) s = qn_error(QN_ERR_OUT_OF_MEMORY, "quantize: %llu bytes", (unsigned long long)max_bytes);
    for (int64_t i = 0; s == QN_OK && i < n; i++) {
        qn_gguf_tensor t;
        qn_gguf_tensor_get(in, i, &t);
        progress(i, n, t.name);
        if (to[i] == t.type && !(o->random && is_weight(&t))) {
            s = qn_gguf_writer_write_tensor(w, t.data, t.bytes);
        } else {
            s = convert_tensor(&t, to[i], o, &rng, buf, row);
            if (s == QN_OK)
                s = qn_gguf_writer_write_tensor(
                    w, buf, (uint64_t)qn_dtype_row_bytes(to[i], t.ne[0]) * (uint64_t)(t.ne[1] * t.ne[2] * t.ne[3]));
        }
    }
    if (s == QN_OK) {
        progress(n, n, "done");
        s = qn_gguf_writer_finish(w);
    }
    free(buf);
    free(row);
    free(to);
    qn_gguf_writer_destroy(w);
    return s;
}

int qn_cmd_quantize(int argc, char **argv) {
    quantize_opts o = {QN_F32, false, false, 0};
    bool ok = argc == 4 || (argc == 6 && strcmp(argv[4], "--random") == 0);
    if (!ok) {
        fprintf(stderr, "usage: quanta quantize IN.gguf OUT.gguf TYPE|keep [--random SEED]\n"
                        "  TYPE: q4_0 q4_1 q5_0 q5_1 q8_0 q2_K q3_K q4_K q5_K q6_K iq4_nl iq4_xs mxfp4 f16 bf16 f32\n"
                        "  keep: every weight keeps its type; --random SEED: random weights (a same-shape file)\n");
        return 2;
    }
    qn_status s = QN_OK;
    if (argc == 6) {
        char *end;
        o.random = true;
        o.seed = strtoull(argv[5], &end, 10);
        if (*argv[5] == 0 || *end != 0) s = qn_error(QN_ERR_INVALID_ARGUMENT, "--random %s is not a seed (a number)", argv[5]);
    }
    o.keep = strcmp(argv[3], "keep") == 0;
    if (s == QN_OK && !o.keep) s = qn_dtype_from_name(argv[3], &o.type);
    if (s == QN_OK && !o.keep && !qn_dtype_is_quantizable(o.type))
        s = qn_error(QN_ERR_INVALID_ARGUMENT, "%s is not a type quanta can quantize to", argv[3]);
    if (s != QN_OK) return qn_cli_fail("quantize", s);
    qn_gguf *in;
    s = qn_gguf_open(argv[1], &in);
    if (s != QN_OK) return qn_cli_fail("quantize", s);
    s = quantize_file(in, argv[2], &o);
    qn_gguf_close(in);
    if (s != QN_OK) return qn_cli_fail("quantize", s);
    return 0;
}
