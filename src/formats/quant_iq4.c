/* Non-linear 4-bit quants: iq4_nl (32-element blocks, one f16 scale) and
 * iq4_xs (256-element super-blocks of eight 32s, each with a 6-bit scale
 * under one f16 super-scale). Both map each element to the nearest of 16
 * fixed levels; only the scale is searched.
 *
 * Quantization matches ggml's file-writing path (ggml_quantize_chunk without
 * an importance matrix, as llama-quantize runs it): scales searched over 15
 * candidates (ntry = 7) with weights x^2. For iq4_xs that is also what
 * quantize_row_iq4_xs_ref does; ggml's quantize_row_iq4_nl_ref alone skips
 * the search, and files are not written with it. */
#include "formats/quants.h"
#include "formats/blocks.h"

#include <math.h>

const int8_t qn_iq4_levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                  1,    13,   25,  38,  53,  69,  89,  113};

#define GROUP_MAX_EPS 1e-15f
#define NTRY 7

/* Index of the level nearest to x (ties to the lower level). */
static int nearest_level(float x) {
    const int8_t *v = qn_iq4_levels;
    if (x <= v[0]) return 0;
    if (x >= v[15]) return 15;
    int lo = 0, hi = 15;
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (x < v[mid]) hi = mid;
        else lo = mid;
    }
    return x - v[hi - 1] < v[hi] - x ? hi - 1 : hi;
}

/* Scale of one 32-element block: start from the scale that puts the
 * largest-magnitude value on the lowest level, then try the scales that put
 * it on level (-127 + t) for t in [-NTRY, NTRY] and keep the best
 * least-squares fit. (The levels are chosen afresh once the scale is
 * final, so none are returned.) */
static float block_scale(const float *x) {
    float amax = 0, max = 0;
    for (int j = 0; j < 32; j++) {
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    if (amax < GROUP_MAX_EPS) return 0.0f;
    const int8_t *v = qn_iq4_levels;
    float d = -max / v[0];
    float id = 1 / d;
    float sumqx = 0, sumq2 = 0;
    for (int j = 0; j < 32; j++) {
        float q = v[nearest_level(id * x[j])], w = x[j] * x[j];
        sumqx += w * q * x[j];
        sumq2 += w * q * q;
    }
    d = sumq2 > 0 ? sumqx / sumq2 : 0.0f;
    float best = d * sumqx;
    for (int t = -NTRY; t <= NTRY; t++) {
        id = (t + v[0]) / max;
        sumqx = sumq2 = 0;
        for (int j = 0; j < 32; j++) {
            float q = v[nearest_level(id * x[j])], w = x[j] * x[j];
            sumqx += w * q * x[j];
            sumq2 += w * q * q;
        }
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    return d;
}

/* Two 16-element halves: byte j holds element j (low) and j+16 (high). */
static void pack_levels(const uint8_t *L, uint8_t *qs, int nblocks32) {
    for (int b = 0; b < nblocks32; b++)
        for (int j = 0; j < 16; j++)
            qs[16 * b + j] = (uint8_t)(L[32 * b + j] | (L[32 * b + 16 + j] << 4));
}

static void quantize_iq4_nl(const float *x, qn_block_iq4_nl *y) {
    uint8_t L[32];
    float d = block_scale(x);
    y->d = qn_f2h(d);
    float id = d ? 1 / d : 0.0f;
    for (int j = 0; j < 32; j++) L[j] = (uint8_t)nearest_level(id * x[j]);
    pack_levels(L, y->qs, 1);
}

static void quantize_iq4_xs(const float *x, qn_block_iq4_xs *y) {
    uint8_t L[QN_QK_K];
    float scales[8];
    float max_scale = 0, amax_scale = 0;
    for (int ib = 0; ib < 8; ib++) {
        scales[ib] = block_scale(x + 32 * ib);
        if (fabsf(scales[ib]) > amax_scale) {
            amax_scale = fabsf(scales[ib]);
            max_scale = scales[ib];
        }
    }
    /* Block scales become 6-bit multiples (-32..31) of d, chosen so the
     * largest-magnitude block scale lands on -32. */
    float d = -max_scale / 32;
    y->d = qn_f2h(d);
    y->scales_h = 0;
    memset(y->scales_l, 0, sizeof y->scales_l);
    float id = d ? 1 / d : 0.0f;
    for (int ib = 0; ib < 8; ib++) {
        int l = qn_round_nearest(id * scales[ib]);
        l = l < -32 ? -32 : l > 31 ? 31 : l;
        float dl = d * l;
        float idl = dl ? 1 / dl : 0.0f;
        for (int j = 0; j < 32; j++) L[32 * ib + j] = (uint8_t)nearest_level(idl * x[32 * ib + j]);
        l += 32;
        y->scales_l[ib / 2] |= (uint8_t)((l & 0xF) << (4 * (ib % 2)));
        y->scales_h |= (uint16_t)((l >> 4) << (2 * ib));
    }
    pack_levels(L, y->qs, 8);
}

static void dequantize_levels(const uint8_t *qs, float d, float *y) {
    for (int j = 0; j < 16; j++) {
        y[j] = d * qn_iq4_levels[qs[j] & 0xF];
        y[j + 16] = d * qn_iq4_levels[qs[j] >> 4];
    }
}

void qn_quantize_iq4(qn_dtype type, const float *x, void *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        if (type == QN_IQ4_NL) {
            qn_block_iq4_nl b;
            quantize_iq4_nl(x + 32 * i, &b);
            memcpy((uint8_t *)y + i * sizeof b, &b, sizeof b);
        } else {
            qn_block_iq4_xs b;
            quantize_iq4_xs(x + QN_QK_K * i, &b);
            memcpy((uint8_t *)y + i * sizeof b, &b, sizeof b);
        }
    }
}

void qn_dequantize_iq4(qn_dtype type, const void *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        if (type == QN_IQ4_NL) {
            qn_block_iq4_nl b;
            memcpy(&b, (const uint8_t *)x + i * sizeof b, sizeof b);
            dequantize_levels(b.qs, qn_h2f(b.d), y + 32 * i);
        } else {
            qn_block_iq4_xs b;
            memcpy(&b, (const uint8_t *)x + i * sizeof b, sizeof b);
            const float d = qn_h2f(b.d);
            for (int ib = 0; ib < 8; ib++) {
                int ls = ((b.scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((b.scales_h >> (2 * ib)) & 3) << 4);
                dequantize_levels(b.qs + 16 * ib, d * (ls - 32), y + QN_QK_K * i + 32 * ib);
            }
        }
    }
}
