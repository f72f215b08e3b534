/* The 32-element block family: q4_0, q4_1, q5_0, q5_1 (4- or 5-bit levels,
 * symmetric or with a minimum), q8_0, q8_1 (8-bit symmetric) and mxfp4
 * (4-bit E2M1 values under a power-of-two scale).
 *
 * Every type goes through one path: the block's floats become levels L[32]
 * and one or two scales, then the levels are packed into the type's layout
 * (and back). Low nibbles of elements 0..15 share bytes with elements
 * 16..31; a fifth bit, where there is one, sits in qh bit j for element j. */
#include "formats/quants.h"
#include "formats/blocks.h"

#include <float.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

const int8_t qn_mxfp4_levels[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

/* One block in a type-neutral form. */
typedef struct {
    float d;     /* scale (mxfp4: the decoded power of two times one half) */
    float m;     /* minimum (q4_1, q5_1); q8_1: d * sum of the quants */
    uint8_t e;   /* mxfp4 exponent byte */
    int L[QN_QK]; /* levels: 0..15 or 0..31 unsigned; -128..127 for q8 */
} legacy_block;

static int level_bits(qn_dtype type) {
    return (type == QN_Q5_0 || type == QN_Q5_1) ? 5 : 4;
}

/* q4_0, q5_0: d = -max/2^(bits-1) where max is the value of largest
 * magnitude, so that value lands exactly on level 0. */
static void quantize_symmetric(const float *x, int bits, legacy_block *b) {
    const int levels = 1 << bits;
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < QN_QK; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    const float d = max / (float)-(levels / 2);
    const float id = d ? 1.0f / d : 0.0f;
    b->d = d;
    for (int j = 0; j < QN_QK; j++) {
        int8_t q = (int8_t)qn_trunc_int(x[j] * id + ((float)(levels / 2) + 0.5f));
        b->L[j] = q < levels - 1 ? q : levels - 1;
    }
}

/* q4_1, q5_1: levels span [min, max]. */
static void quantize_affine(const float *x, int bits, legacy_block *b) {
    const int levels = 1 << bits;
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < QN_QK; j++) {
        if (x[j] < min) min = x[j];
        if (x[j] > max) max = x[j];
    }
    const float d = (max - min) / (float)(levels - 1);
    const float id = d ? 1.0f / d : 0.0f;
    b->d = d;
    b->m = min;
    for (int j = 0; j < QN_QK; j++) {
        int8_t q = (int8_t)qn_trunc_int((x[j] - min) * id + 0.5f);
        b->L[j] = q < levels - 1 ? q : levels - 1;
    }
}

/* q8_0, q8_1: d = amax/127, quants rounded half away from zero. */
static void quantize_q8(const float *x, legacy_block *b) {
    float amax = 0.0f;
    for (int j = 0; j < QN_QK; j++) {
        float a = fabsf(x[j]);
        amax = amax > a ? amax : a;
    }
    const float d = amax / 127.0f;
    const float id = d ? 1.0f / d : 0.0f;
    int sum = 0;
    b->d = d;
    for (int j = 0; j < QN_QK; j++) {
        b->L[j] = (int8_t)qn_trunc_int(roundf(x[j] * id));
        sum += b->L[j];
    }
    b->m = (float)sum * d;
}

/* E8M0 exponent e as a float scale with the one-half factor folded in:
 * 2^(e-128), written bit by bit so that e = 0 and 1 give the subnormals. */
static float mxfp4_scale(uint8_t e) {
    uint32_t bits = e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23;
    return qn_bits_f32(bits);
}

static int mxfp4_nearest(float x, float d) {
    int best = 0;
    float best_err = fabsf(qn_mxfp4_levels[0] * d - x);
    for (int i = 1; i < 16; i++) {
        float err = fabsf(qn_mxfp4_levels[i] * d - x);
        if (err < best_err) {
            best = i;
            best_err = err;
        }
    }
    return best;
}

/* mxfp4: the exponent puts amax in the top binade of E2M1 (max value 6). */
static void quantize_mxfp4(const float *x, legacy_block *b) {
    float amax = 0.0f;
    for (int j = 0; j < QN_QK; j++)
        if (amax < fabsf(x[j])) amax = fabsf(x[j]);
    b->e = amax > 0.0f ? (uint8_t)qn_trunc_int(floorf(log2f(amax)) - 2.0f + 127.0f) : 0;
    b->d = mxfp4_scale(b->e);
    for (int j = 0; j < QN_QK; j++) b->L[j] = mxfp4_nearest(x[j], b->d);
}

static void pack_nibbles(const int *L, uint8_t qs[16], uint8_t qh[4]) {
    uint32_t high = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((L[j] & 0xF) | (L[j + 16] & 0xF) << 4);
        high |= (uint32_t)((L[j] >> 4) & 1) << j;
        high |= (uint32_t)((L[j + 16] >> 4) & 1) << (j + 16);
    }
    if (qh) memcpy(qh, &high, 4);
}

static void unpack_nibbles(const uint8_t qs[16], const uint8_t *qh, int *L) {
    uint32_t high = 0;
    if (qh) memcpy(&high, qh, 4);
    for (int j = 0; j < 16; j++) {
        L[j] = (qs[j] & 0xF) | (int)((high >> j) & 1) << 4;
        L[j + 16] = (qs[j] >> 4) | (int)((high >> (j + 16)) & 1) << 4;
    }
}

/* Where the fields of each type's block sit, as byte offsets taken from the
 * structs in blocks.h, so that one load and one store serve every type.
 * Each block starts with its scale: an f16 d, or mxfp4's exponent byte e.
 * NO_FIELD marks a field the type does not have (offset 0 is always the scale). */
#define NO_FIELD 0
typedef struct {
    size_t m;  /* f16 minimum (q4_1, q5_1), or q8_1's s = d * sum of the quants */
    size_t qh; /* the 32 fifth bits (q5_0, q5_1) */
    size_t qs; /* nibbles, or one int8 a level for q8_0 and q8_1 */
} legacy_layout;

static legacy_layout layout_of(qn_dtype type) {
    switch (type) {
    case QN_Q4_0: return (legacy_layout){NO_FIELD, NO_FIELD, offsetof(qn_block_q4_0, qs)};
    case QN_Q4_1: return (legacy_layout){offsetof(qn_block_q4_1, m), NO_FIELD, offsetof(qn_block_q4_1, qs)};
    case QN_Q5_0: return (legacy_layout){NO_FIELD, offsetof(qn_block_q5_0, qh), offsetof(qn_block_q5_0, qs)};
    case QN_Q5_1:
        return (legacy_layout){offsetof(qn_block_q5_1, m), offsetof(qn_block_q5_1, qh),
                               offsetof(qn_block_q5_1, qs)};
    case QN_Q8_0: return (legacy_layout){NO_FIELD, NO_FIELD, offsetof(qn_block_q8_0, qs)};
    case QN_Q8_1: return (legacy_layout){offsetof(qn_block_q8_1, s), NO_FIELD, offsetof(qn_block_q8_1, qs)};
    default: return (legacy_layout){NO_FIELD, NO_FIELD, offsetof(qn_block_mxfp4, qs)}; /* QN_MXFP4 */
    }
}

static int is_q8(qn_dtype type) { return type == QN_Q8_0 || type == QN_Q8_1; }

static void put_f16(uint8_t *p, float f) {
    uint16_t h = qn_f2h(f);
    memcpy(p, &h, sizeof h);
}

static float get_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, sizeof h);
    return qn_h2f(h);
}

/* Write b in the layout of `type` at dst. */
static void store_block(qn_dtype type, const legacy_block *b, uint8_t *dst) {
    const legacy_layout f = layout_of(type);
    uint8_t o[sizeof(qn_block_q8_1)] = {0}; /* the largest block of the family */
    if (type == QN_MXFP4)
        o[0] = b->e;
    else
        put_f16(o, b->d);
    if (f.m != NO_FIELD) put_f16(o + f.m, b->m);
    if (is_q8(type))
        for (int j = 0; j < QN_QK; j++) o[f.qs + j] = (uint8_t)(int8_t)b->L[j];
    else
        pack_nibbles(b->L, o + f.qs, f.qh != NO_FIELD ? o + f.qh : NULL);
    memcpy(dst, o, (size_t)qn_dtype_block_bytes(type));
}

/* Read a block of `type` at src into b (d and m decoded to float), every
 * field set (inlined into the loops over blocks: a call a block cost more
 * than the block's arithmetic). */
static inline void load_block(qn_dtype type, const uint8_t *src, legacy_block *b) {
    const legacy_layout f = layout_of(type);
    b->e = 0;
    if (type == QN_MXFP4) {
        b->e = src[0];
        b->d = mxfp4_scale(b->e);
    } else {
        b->d = get_f16(src);
    }
    b->m = f.m != NO_FIELD ? get_f16(src + f.m) : 0.0f;
    if (is_q8(type))
        for (int j = 0; j < QN_QK; j++) b->L[j] = (int8_t)src[f.qs + j];
    else
        unpack_nibbles(src + f.qs, f.qh != NO_FIELD ? src + f.qh : NULL, b->L);
}

/* The symmetric types hold d * (L - offset), levels L of 4, 5 or 8 bits
 * under one f16 scale: a narrower one is the wider one with its levels
 * re-offset, value for value. */
static int symmetric_bits(qn_dtype type) {
    return type == QN_Q4_0 ? 4 : type == QN_Q5_0 ? 5 : type == QN_Q8_0 ? 8 : 0;
}

/* Levels of the symmetric 4- and 5-bit types are stored with an offset of
 * half their range (q8_0's are signed bytes); 0 for any other type. */
static int symmetric_offset(qn_dtype type) {
    return type == QN_Q4_0 ? 8 : type == QN_Q5_0 ? 16 : 0;
}

bool qn_legacy_widens(qn_dtype from, qn_dtype to) {
    return symmetric_bits(from) && symmetric_bits(to) && symmetric_bits(from) <= symmetric_bits(to);
}

void qn_legacy_widen(qn_dtype from, qn_dtype to, const void *x, void *y, int64_t nb) {
    const int64_t in_bytes = qn_dtype_block_bytes(from), out_bytes = qn_dtype_block_bytes(to);
    const int shift = symmetric_offset(to) - symmetric_offset(from);
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *src = (const uint8_t *)x + i * in_bytes;
        uint8_t *dst = (uint8_t *)y + i * out_bytes;
        legacy_block b;
        load_block(from, src, &b);
        for (int j = 0; j < QN_QK; j++) b.L[j] += shift;
        store_block(to, &b, dst);
        memcpy(dst, src, 2); /* the f16 scale's own bits, NaN payloads and all */
    }
}

void qn_quantize_legacy(qn_dtype type, const float *x, void *y, int64_t nb) {
    const int64_t bytes = qn_dtype_block_bytes(type);
    for (int64_t i = 0; i < nb; i++) {
        const float *xb = x + i * QN_QK;
        legacy_block b = {0};
        switch (type) {
        case QN_Q4_0:
        case QN_Q5_0: quantize_symmetric(xb, level_bits(type), &b); break;
        case QN_Q4_1:
        case QN_Q5_1: quantize_affine(xb, level_bits(type), &b); break;
        case QN_Q8_0:
        case QN_Q8_1: quantize_q8(xb, &b); break;
        default: quantize_mxfp4(xb, &b); break;
        }
        store_block(type, &b, (uint8_t *)y + i * bytes);
    }
}

void qn_dequantize_legacy(qn_dtype type, const void *x, float *y, int64_t nb) {
    const int64_t bytes = qn_dtype_block_bytes(type);
    const int offset = symmetric_offset(type);
    const int affine = type == QN_Q4_1 || type == QN_Q5_1;
    for (int64_t i = 0; i < nb; i++) {
        legacy_block b;
        load_block(type, (const uint8_t *)x + i * bytes, &b);
        float *yb = y + i * QN_QK;
        /* the type tested once a block, not once a value */
        if (type == QN_MXFP4)
            for (int j = 0; j < QN_QK; j++) yb[j] = qn_mxfp4_levels[b.L[j]] * b.d;
        else if (affine)
            for (int j = 0; j < QN_QK; j++) yb[j] = (float)b.L[j] * b.d + b.m;
        else
            for (int j = 0; j < QN_QK; j++) yb[j] = (float)(b.L[j] - offset) * b.d;
    }
}
