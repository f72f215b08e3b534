/* The element types: block geometry and names. Block sizes and byte counts
 * are GGUF's (ggml's type traits), so a GGUF tensor's bytes can be computed
 * from its type id and shape alone. */
#include "quanta.h"
#include "core/error.h"
#include "cuda/kernels/numeric.h"

#include <string.h>

typedef struct {
    qn_dtype type;
    const char *name;
    int64_t block_elems;
    int64_t block_bytes;
} dtype_traits;

static const dtype_traits traits[] = {
    {QN_F32, "f32", 1, 4},
    {QN_F16, "f16", 1, 2},
    {QN_Q4_0, "q4_0", 32, 18},       /* f16 d, 16 bytes of nibbles          */
    {QN_Q4_1, "q4_1", 32, 20},       /* f16 d, f16 m, 16 bytes of nibbles   */
    {QN_Q5_0, "q5_0", 32, 22},       /* f16 d, 4 bytes high bits, 16 nibbles */
    {QN_Q5_1, "q5_1", 32, 24},       /* f16 d, f16 m, 4 high, 16 nibbles    */
    {QN_Q8_0, "q8_0", 32, 34},       /* f16 d, 32 int8                      */
    {QN_Q8_1, "q8_1", 32, 36},       /* f16 d, f16 s, 32 int8               */
    {QN_Q2_K, "q2_K", 256, 84},
    {QN_Q3_K, "q3_K", 256, 110},
    {QN_Q4_K, "q4_K", 256, 144},
    {QN_Q5_K, "q5_K", 256, 176},
    {QN_Q6_K, "q6_K", 256, 210},
    {QN_Q8_K, "q8_K", 256, 292},     /* f32 d, 256 int8, 16 int16 sums      */
    {QN_IQ4_NL, "iq4_nl", 32, 18},
    {QN_IQ4_XS, "iq4_xs", 256, 136},
    {QN_I8, "i8", 1, 1},
    {QN_I16, "i16", 1, 2},
    {QN_I32, "i32", 1, 4},
    {QN_I64, "i64", 1, 8},
    {QN_F64, "f64", 1, 8},
    {QN_BF16, "bf16", 1, 2},
    {QN_MXFP4, "mxfp4", 32, 17},     /* e8m0 scale, 16 bytes of fp4 nibbles */
    {QN_U8, "u8", 1, 1},
    {QN_U32, "u32", 1, 4},
};

static const dtype_traits *find(qn_dtype t) {
    for (size_t i = 0; i < sizeof traits / sizeof traits[0]; i++)
        if (traits[i].type == t) return &traits[i];
    return NULL;
}

const char *qn_dtype_name(qn_dtype t) {
    const dtype_traits *tr = find(t);
    return tr ? tr->name : NULL;
}

qn_status qn_dtype_from_name(const char *name, qn_dtype *out) {
    if (!name || !out) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_dtype_from_name: NULL argument");
    for (size_t i = 0; i < sizeof traits / sizeof traits[0]; i++) {
        if (strcmp(traits[i].name, name) == 0) {
            *out = traits[i].type;
            return QN_OK;
        }
    }
    return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_dtype_from_name: unknown dtype '%s'", name);
}

int64_t qn_dtype_block_elems(qn_dtype t) {
    const dtype_traits *tr = find(t);
    return tr ? tr->block_elems : 0;
}

int64_t qn_dtype_block_bytes(qn_dtype t) {
    const dtype_traits *tr = find(t);
    return tr ? tr->block_bytes : 0;
}

int64_t qn_dtype_row_bytes(qn_dtype t, int64_t n) {
    const dtype_traits *tr = find(t);
    if (!tr || n < 0 || n % tr->block_elems != 0) return -1;
    if (n / tr->block_elems > INT64_MAX / tr->block_bytes) return -1; /* would overflow */
    return n / tr->block_elems * tr->block_bytes;
}

/* Host conversions: the very functions the kernels use (numeric.h). */
uint16_t qn_f32_to_f16(float f) { return qn_f32_to_f16_bits(f); }
float qn_f16_to_f32(uint16_t h) { return qn_f16_bits_to_f32(h); }
uint16_t qn_f32_to_bf16(float f) { return qn_f32_to_bf16_bits(f); }
float qn_bf16_to_f32(uint16_t h) { return qn_bf16_bits_to_f32(h); }
