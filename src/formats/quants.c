/* Quantize and dequantize rows of any supported type: checks the arguments,
 * then hands whole blocks to the type's family (quant_legacy.c, quant_k.c,
 * quant_iq4.c). The plain float types live here. */
#include "formats/quants.h"
#include "formats/blocks.h"
#include "core/error.h"

typedef void (*quantize_fn)(qn_dtype type, const float *x, void *y, int64_t nb);
typedef void (*dequantize_fn)(qn_dtype type, const void *x, float *y, int64_t nb);

/* f32, f16, bf16: one element per block; conversions round to nearest even
 * as ggml's do. */
static void quantize_plain(qn_dtype type, const float *x, void *y, int64_t n) {
    if (type == QN_F32) {
        memcpy(y, x, (size_t)n * sizeof(float));
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = type == QN_F16 ? qn_f32_to_f16_bits(x[i]) : qn_f32_to_bf16_bits(x[i]);
        memcpy((uint8_t *)y + 2 * i, &h, 2);
    }
}

static void dequantize_plain(qn_dtype type, const void *x, float *y, int64_t n) {
    if (type == QN_F32) {
        memcpy(y, x, (size_t)n * sizeof(float));
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, (const uint8_t *)x + 2 * i, 2);
        y[i] = type == QN_F16 ? qn_f16_bits_to_f32(h) : qn_bf16_bits_to_f32(h);
    }
}

typedef struct {
    qn_dtype type;
    quantize_fn quantize;
    dequantize_fn dequantize;
} family;

static const family families[] = {
    {QN_F32, quantize_plain, dequantize_plain},
    {QN_F16, quantize_plain, dequantize_plain},
    {QN_BF16, quantize_plain, dequantize_plain},
    {QN_Q4_0, qn_quantize_legacy, qn_dequantize_legacy},
    {QN_Q4_1, qn_quantize_legacy, qn_dequantize_legacy},
    {QN_Q5_0, qn_quantize_legacy, qn_dequantize_legacy},
    {QN_Q5_1, qn_quantize_legacy, qn_dequantize_legacy},
    {QN_Q8_0, qn_quantize_legacy, qn_dequantize_legacy},
    {QN_Q8_1, qn_quantize_legacy, qn_dequantize_legacy},
    {QN_MXFP4, qn_quantize_legacy, qn_dequantize_legacy},
    {QN_Q2_K, qn_quantize_k, qn_dequantize_k},
    {QN_Q3_K, qn_quantize_k, qn_dequantize_k},
    {QN_Q4_K, qn_quantize_k, qn_dequantize_k},
    {QN_Q5_K, qn_quantize_k, qn_dequantize_k},
    {QN_Q6_K, qn_quantize_k, qn_dequantize_k},
    {QN_Q8_K, qn_quantize_k, qn_dequantize_k},
    {QN_IQ4_NL, qn_quantize_iq4, qn_dequantize_iq4},
    {QN_IQ4_XS, qn_quantize_iq4, qn_dequantize_iq4},
};

static const family *find_family(qn_dtype type) {
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
        if (families[i].type == type) return &families[i];
    return NULL;
}

bool qn_dtype_is_quantizable(qn_dtype type) { return find_family(type) != NULL; }

/* The family of `type` and the number of blocks in n elements, or an error
 * naming the call. */
static qn_status check_row(const char *who, qn_dtype type, const void *src, const void *dst,
                           int64_t n, const family **fam, int64_t *nb) {
    if (!src || !dst) return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: NULL argument", who);
    *fam = find_family(type);
    if (!*fam) {
        const char *name = qn_dtype_name(type);
        if (name) return qn_error(QN_ERR_UNSUPPORTED, "%s: dtype %s has no float conversion", who, name);
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %d is not a dtype", who, (int)type);
    }
    int64_t block = qn_dtype_block_elems(type);
    if (n < 0 || n % block != 0)
        return qn_error(QN_ERR_INVALID_ARGUMENT,
                        "%s: n = %lld is not a non-negative multiple of %s's block of %lld", who,
                        (long long)n, qn_dtype_name(type), (long long)block);
    *nb = n / block;
    return QN_OK;
}

/* The body of qn_quantize_row (to_blocks) and qn_dequantize_row: one of src
 * and dst holds floats, the other blocks of `type`. */
static qn_status convert_row(const char *who, bool to_blocks, qn_dtype type, const void *src,
                             void *dst, int64_t n) {
    const family *fam = NULL;
    int64_t nb = 0;
    QN_TRY(check_row(who, type, src, dst, n, &fam, &nb));
    if (to_blocks)
        fam->quantize(type, src, dst, nb);
    else
        fam->dequantize(type, src, dst, nb);
    return QN_OK;
}

qn_status qn_quantize_row(qn_dtype type, const float *src, void *dst, int64_t n) {
    return convert_row("qn_quantize_row", true, type, src, dst, n);
}

qn_status qn_dequantize_row(qn_dtype type, const void *src, float *dst, int64_t n) {
    return convert_row("qn_dequantize_row", false, type, src, dst, n);
}

qn_status qn_qdq_row(qn_dtype type, const float *src, float *dst, int64_t n) {
    if (type != QN_Q4_0 && type != QN_Q8_0)
        return qn_error(QN_ERR_UNSUPPORTED, "qn_qdq_row: dtype %s is not q4_0 or q8_0",
                        qn_dtype_name(type) ? qn_dtype_name(type) : "(invalid)");
    const family *fam = NULL;
    int64_t nb = 0;
    QN_TRY(check_row("qn_qdq_row", type, src, dst, n, &fam, &nb));
    /* Block by block through a local block, so dst may alias src. */
    uint8_t block[sizeof(qn_block_q8_0)];
    for (int64_t i = 0; i < nb; i++) {
        qn_quantize_legacy(type, src + i * QN_QK, block, 1);
        qn_dequantize_legacy(type, block, dst + i * QN_QK, 1);
    }
    return QN_OK;
}
