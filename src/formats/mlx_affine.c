/* MLX affine quantization: groups of consecutive weights share a scale and
 * a bias (w = scale * q + bias), q packed little-endian as a bit stream.
 * Also config.json's quantization entry and dequantizing a module of an MLX
 * checkpoint.
 *
 * Quantization follows MLX's own (mx.quantize on the CPU): the scale and
 * bias are found and the weights quantized in f32, and only then are the
 * scale and bias rounded to the storage type. */
#include "formats/json.h"
#include "formats/blocks.h"
#include "core/error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static qn_status check_params(const char *who, qn_mlx_quant p, qn_dtype scale_type, int64_t n) {
    if (p.bits != 2 && p.bits != 3 && p.bits != 4 && p.bits != 6 && p.bits != 8)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: bits %d is not 2, 3, 4, 6 or 8", who, p.bits);
    if (p.group_size != 32 && p.group_size != 64 && p.group_size != 128)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: group size %d is not 32, 64 or 128", who, p.group_size);
    if (scale_type != QN_F16 && scale_type != QN_BF16 && scale_type != QN_F32)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: scales of dtype %s (f16, bf16 or f32 expected)", who,
                        qn_dtype_name(scale_type) ? qn_dtype_name(scale_type) : "(invalid)");
    if (n < 0 || n % p.group_size != 0)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: n = %lld is not a multiple of the group size %d", who,
                        (long long)n, p.group_size);
    return QN_OK;
}

static float load_scale(qn_dtype t, const void *base, int64_t i) {
    if (t == QN_F32) {
        float f;
        memcpy(&f, (const uint8_t *)base + 4 * i, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, (const uint8_t *)base + 2 * i, 2);
    return t == QN_F16 ? qn_f16_bits_to_f32(h) : qn_bf16_bits_to_f32(h);
}

static void store_scale(qn_dtype t, void *base, int64_t i, float f) {
    if (t == QN_F32) {
        memcpy((uint8_t *)base + 4 * i, &f, 4);
        return;
    }
    uint16_t h = t == QN_F16 ? qn_f32_to_f16_bits(f) : qn_f32_to_bf16_bits(f);
    memcpy((uint8_t *)base + 2 * i, &h, 2);
}

/* Element i of the bit stream (bits <= 8, so it spans at most two bytes). */
static unsigned get_bits(const uint8_t *q, int64_t i, int bits) {
    int64_t bit = i * bits;
    unsigned v = q[bit / 8];
    if (bit % 8 + bits > 8) v |= (unsigned)q[bit / 8 + 1] << 8;
    return (v >> (bit % 8)) & ((1u << bits) - 1);
}

static void put_bits(uint8_t *q, int64_t i, int bits, unsigned v) {
    int64_t bit = i * bits;
    q[bit / 8] |= (uint8_t)(v << (bit % 8));
    if (bit % 8 + bits > 8) q[bit / 8 + 1] |= (uint8_t)(v >> (8 - bit % 8));
}

qn_status qn_mlx_dequantize_row(qn_mlx_quant p, qn_dtype scale_type, const void *q, const void *scales,
                                const void *biases, float *dst, int64_t n) {
    const char *who = "qn_mlx_dequantize_row";
    if (!q || !scales || !biases || !dst) return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: NULL argument", who);
    QN_TRY(check_params(who, p, scale_type, n));
    for (int64_t g = 0; g < n / p.group_size; g++) {
        const float scale = load_scale(scale_type, scales, g), bias = load_scale(scale_type, biases, g);
        for (int64_t i = g * p.group_size; i < (g + 1) * p.group_size; i++)
            dst[i] = scale * (float)get_bits(q, i, p.bits) + bias;
    }
    return QN_OK;
}

qn_status qn_mlx_quantize_row(qn_mlx_quant p, qn_dtype scale_type, const float *src, int64_t n, void *q,
                              void *scales, void *biases) {
    const char *who = "qn_mlx_quantize_row";
    if (!src || !q || !scales || !biases) return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: NULL argument", who);
    QN_TRY(check_params(who, p, scale_type, n));
    const float n_bins = (float)((1 << p.bits) - 1), eps = 1e-7f;
    memset(q, 0, (size_t)(n * p.bits / 8));
    for (int64_t g = 0; g < n / p.group_size; g++) {
        const float *x = src + g * p.group_size;
        float w_min = x[0], w_max = x[0];
        for (int i = 1; i < p.group_size; i++) {
            w_min = x[i] < w_min ? x[i] : w_min;
            w_max = x[i] > w_max ? x[i] : w_max;
        }
        /* Put the end of larger magnitude exactly on a level: the scale's
         * sign makes that end level 0 (the bias) or the top level. */
        const bool min_side = fabsf(w_min) > fabsf(w_max);
        float scale = (w_max - w_min) / n_bins;
        scale = scale > eps ? scale : eps;
        scale = min_side ? scale : -scale;
        const float edge = min_side ? w_min : w_max;
        const float q0 = rintf(edge / scale);
        scale = q0 != 0.0f ? edge / q0 : scale;
        const float bias = q0 == 0.0f ? 0.0f : edge;
        store_scale(scale_type, scales, g, scale);
        store_scale(scale_type, biases, g, bias);
        for (int i = 0; i < p.group_size; i++) {
            float l = rintf((x[i] - bias) / scale);
            l = l < 0.0f ? 0.0f : l > n_bins ? n_bins : l;
            put_bits(q, g * p.group_size + i, p.bits, (unsigned)l);
        }
    }
    return QN_OK;
}

/* ---- config.json */

struct qn_mlx_config {
    qn_json *root;
    const qn_json *quant; /* the quantization object, or NULL */
};

qn_status qn_mlx_config_open(const char *path, qn_mlx_config **out) {
    if (!path || !out) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_mlx_config_open: NULL argument");
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return qn_error(QN_ERR_IO, "qn_mlx_config_open: %s: cannot open", path);
    char *text = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 4096;
            char *t = cap > (64u << 20) ? NULL : realloc(text, cap);
            if (!t) {
                free(text);
                fclose(f);
                return qn_error(QN_ERR_FORMAT, "qn_mlx_config_open: %s: too large", path);
            }
            text = t;
        }
        size_t got = fread(text + len, 1, cap - len, f);
        len += got;
        if (got == 0) break;
    }
    fclose(f);
    qn_mlx_config *cfg = calloc(1, sizeof *cfg);
    qn_status s = cfg ? qn_json_parse(text, len, path, &cfg->root) : qn_error(QN_ERR_OUT_OF_MEMORY, "config");
    free(text);
    if (s != QN_OK) {
        free(cfg);
        return s;
    }
    cfg->quant = qn_json_get(cfg->root, "quantization");
    if (!cfg->quant) cfg->quant = qn_json_get(cfg->root, "quantization_config");
    if (cfg->quant && cfg->quant->kind != QN_JSON_OBJECT) {
        qn_mlx_config_close(cfg);
        return qn_error(QN_ERR_FORMAT, "%s: \"quantization\" is not an object", path);
    }
    *out = cfg;
    return QN_OK;
}

void qn_mlx_config_close(qn_mlx_config *cfg) {
    if (!cfg) return;
    qn_json_free(cfg->root);
    free(cfg);
}

static qn_status read_params(const qn_json *obj, const char *where, qn_mlx_quant *out) {
    const qn_json *bits = qn_json_get(obj, "bits"), *gs = qn_json_get(obj, "group_size");
    if (!bits || !bits->is_uint || !gs || !gs->is_uint || bits->uint > 64 || gs->uint > 1024)
        return qn_error(QN_ERR_FORMAT, "mlx config: %s: needs integer \"bits\" and \"group_size\"", where);
    out->bits = (int)bits->uint;
    out->group_size = (int)gs->uint;
    return check_params("mlx config", *out, QN_F32, 0);
}

qn_status qn_mlx_config_lookup(const qn_mlx_config *cfg, const char *module, bool *quantized, qn_mlx_quant *out) {
    if (!cfg || !module || !quantized || !out) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_mlx_config_lookup: NULL argument");
    *quantized = false;
    if (!cfg->quant) return QN_OK;
    const qn_json *o = qn_json_get(cfg->quant, module);
    if (o && o->kind == QN_JSON_BOOL && !o->boolean) return QN_OK;
    if (o && o->kind == QN_JSON_OBJECT) QN_TRY(read_params(o, module, out));
    else QN_TRY(read_params(cfg->quant, "quantization", out));
    *quantized = true;
    return QN_OK;
}

/* ---- a quantized module of a checkpoint */

static qn_status find_part(const qn_safetensors *st, const char *module, const char *part, qn_safetensors_tensor *t) {
    char name[512];
    if (snprintf(name, sizeof name, "%s.%s", module, part) >= (int)sizeof name)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_safetensors_mlx_dequantize: module name too long");
    int64_t i = qn_safetensors_find(st, name);
    if (i < 0) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_safetensors_mlx_dequantize: no tensor '%s'", name);
    return qn_safetensors_tensor_get(st, i, t);
}

qn_status qn_safetensors_mlx_dequantize(const qn_safetensors *st, const char *module, qn_mlx_quant p, float *dst,
                                        int64_t count) {
    const char *who = "qn_safetensors_mlx_dequantize";
    if (!st || !module || !dst) return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: NULL argument", who);
    qn_safetensors_tensor w, s, b;
    QN_TRY(find_part(st, module, "weight", &w));
    QN_TRY(find_part(st, module, "scales", &s));
    QN_TRY(find_part(st, module, "biases", &b));
    QN_TRY(check_params(who, p, QN_F32, 0));
    if (strcmp(w.dtype, "U32") != 0 || w.n_dims < 1)
        return qn_error(QN_ERR_FORMAT, "%s: %s.weight is %s, not packed U32", who, module, w.dtype);
    if (!s.has_type || s.type != b.type || strcmp(s.dtype, b.dtype) != 0 || s.n_dims != w.n_dims)
        return qn_error(QN_ERR_FORMAT, "%s: %s.scales (%s) and .biases (%s) do not match", who, module, s.dtype, b.dtype);
    /* Rows are everything but the last dimension. */
    int64_t rows = 1;
    for (int d = 0; d + 1 < w.n_dims; d++) {
        if (w.shape[d] != s.shape[d] || w.shape[d] != b.shape[d])
            return qn_error(QN_ERR_FORMAT, "%s: %s: weight and scales disagree in dimension %d", who, module, d);
        rows *= w.shape[d];
    }
    const int64_t cols = w.shape[w.n_dims - 1] * 32 / p.bits, groups = cols / p.group_size;
    if (cols % p.group_size != 0 || s.shape[s.n_dims - 1] != groups || b.shape[b.n_dims - 1] != groups)
        return qn_error(QN_ERR_FORMAT, "%s: %s: %lld packed words a row do not give %lld groups of %d at %d bits", who,
                        module, (long long)w.shape[w.n_dims - 1], (long long)s.shape[s.n_dims - 1], p.group_size, p.bits);
    if (count != rows * cols)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %s has %lld x %lld weights, not %lld", who, module,
                        (long long)rows, (long long)cols, (long long)count);
    const int64_t sbytes = qn_dtype_block_bytes(s.type);
    for (int64_t r = 0; r < rows; r++)
        QN_TRY(qn_mlx_dequantize_row(p, s.type, (const uint8_t *)w.data + r * cols * p.bits / 8,
                                     (const uint8_t *)s.data + r * groups * sbytes,
                                     (const uint8_t *)b.data + r * groups * sbytes, dst + r * cols, cols));
    return QN_OK;
}
