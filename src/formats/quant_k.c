/* The K-quant family: 256-element super-blocks split into sub-blocks of 16
 * (q2_K, q3_K, q6_K) or 32 (q4_K, q5_K), each with its own scale (and min),
 * the sub-block scales themselves quantized against one f16 super-scale.
 * q8_K is the 8-bit intermediate form used by dot products.
 *
 * Sub-block scales are searched, not just computed from the extremes: the
 * helpers below try a few candidate scales and keep the one with the least
 * weighted error, exactly as ggml's reference quantizers do (same candidates,
 * same weights, same order of float operations), because the chosen levels
 * depend on every rounding step. */
#include "formats/quants.h"
#include "formats/blocks.h"

#include <math.h>

/* ggml treats a group whose largest magnitude is below this as all zero. */
#define GROUP_MAX_EPS 1e-15f

static inline int imin(int a, int b) { return a < b ? a : b; }
static inline int imax(int a, int b) { return a > b ? a : b; }
static inline int clampi(int v, int lo, int hi) { return imax(lo, imin(hi, v)); }

/* The value of largest magnitude in x, sign kept (the first one on a tie);
 * *amax gets its magnitude. The symmetric searches scale from it so that
 * this value lands exactly on level -nmax. */
static float signed_abs_max(int n, const float *x, float *amax) {
    float max = 0;
    *amax = 0;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > *amax) {
            *amax = ax;
            max = x[i];
        }
    }
    return max;
}

/* Rounds each iscale * x[i] to a level in [-nmax, nmax-1], stores it plus
 * `offset` in L, and returns the x^2-weighted sums sum(w*x*l) in *sumlx and
 * sum(w*l*l) in *suml2: the least-squares scale for these levels is
 * sumlx / suml2, and the larger sumlx^2 / suml2, the smaller the error. */
static void symmetric_levels(int n, int nmax, float iscale, const float *x, int offset, int8_t *L,
                             float *sumlx, float *suml2) {
    float slx = 0, sl2 = 0;
    for (int i = 0; i < n; i++) {
        int l = clampi(qn_round_nearest(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)(l + offset);
        float w = x[i] * x[i];
        slx += w * x[i] * l;
        sl2 += w * l * l;
    }
    *sumlx = slx;
    *suml2 = sl2;
}

/* Where both symmetric searches start: the levels for the scale that puts
 * *max, the value of largest magnitude, exactly on -nmax (stored plus
 * `offset` in L, sums as symmetric_levels gives them). Returns false, with L
 * all zero, for a group that ggml treats as all zero. */
static bool symmetric_first_guess(int n, int nmax, const float *x, int offset, int8_t *L, float *max,
                                  float *sumlx, float *suml2) {
    float amax;
    *max = signed_abs_max(n, x, &amax);
    if (amax < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return false;
    }
    symmetric_levels(n, nmax, -nmax / *max, x, offset, L, sumlx, suml2);
    return true;
}

/* Symmetric levels in [-nmax, nmax-1] for the n (at most 16) values of x,
 * scale searched around -nmax/max with weights x^2 (q6_K). L gets levels +
 * nmax. */
static float search_symmetric(int n, int nmax, const float *x, int8_t *L) {
    float max, sumlx, suml2;
    if (!symmetric_first_guess(n, nmax, x, nmax, L, &max, &sumlx, &suml2)) return 0.0f;
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    int8_t Laux[16];
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        const float iscale = -(nmax + 0.1f * is) / max;
        symmetric_levels(n, nmax, iscale, x, nmax, Laux, &sumlx, &suml2);
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            memcpy(L, Laux, (size_t)n);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Symmetric levels for q3_K: start from -nmax/max, then move single levels
 * while that lowers the x^2-weighted error (up to 5 passes). L gets levels
 * + nmax. */
static float search_symmetric_refine(int n, int nmax, const float *x, int8_t *L) {
    float max, sumlx, suml2;
    /* Levels without the offset while refining: the sums need them signed. */
    if (!symmetric_first_guess(n, nmax, x, 0, L, &max, &sumlx, &suml2)) return 0.0f;
    for (int pass = 0; pass < 5; pass++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * L[i] * L[i];
                int new_l = clampi(qn_round_nearest(x[i] * sl2 / slx), -nmax, nmax - 1);
                if (new_l != L[i]) {
                    slx += w * x[i] * new_l;
                    sl2 += w * new_l * new_l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        changed++;
                    }
                }
            }
        }
        if (!changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* Affine levels in [0, nmax]: x ~ scale * L - min. Tries nstep+1 scales
 * (rmin + rdelta*is + nmax)/(max - min), each with its least-squares scale
 * and min, and keeps the one of least weighted error (absolute error when
 * use_mad). Returns the scale; *the_min gets the (non-negative) min. */
static float search_affine(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                           float *the_min, float rmin, float rdelta, int nstep, int use_mad) {
    uint8_t Laux[32];
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; i++) L[i] = 0;
        *the_min = -min;
        return 0.0f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; i++) {
        int l = qn_round_nearest(iscale * (x[i] - min));
        L[i] = (uint8_t)clampi(l, 0, nmax);
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_error += weights[i] * diff;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = clampi(qn_round_nearest(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = (uint8_t)l;
            float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                cur_error += weights[i] * diff;
            }
            if (cur_error < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* q4_K / q5_K pack 8 6-bit scales and 8 6-bit mins into 12 bytes: the first
 * four of each whole in bytes 0-7 (low 6 bits), the last four as nibbles in
 * bytes 8-11 with their top two bits in the spare bits of bytes 0-7. */
static void get_scale_min_6bit(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

static void set_scale_min_6bit(int j, uint8_t ls, uint8_t lm, uint8_t *q) {
    if (j < 4) {
        q[j] = ls;
        q[j + 4] = lm;
    } else {
        q[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
        q[j - 4] |= (uint8_t)((ls >> 4) << 6);
        q[j] |= (uint8_t)((lm >> 4) << 6);
    }
}

/* q3_K: 16 6-bit scales; low nibbles in bytes 0-7 (scale j and j+8 share a
 * byte), the top two bits of scale j in byte 8 + j%4 at bit 2*(j/4). */
static int get_scale_q3(const uint8_t *s, int j) {
    int low = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
    return (low | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
}

/* 2-bit fields: byte l of each 32-byte group holds elements l, l+32, l+64,
 * l+96 of the group's 128 at bits 0, 2, 4, 6. */
static void pack_2bit(const uint8_t *L, uint8_t *qs) {
    for (int j = 0; j < QN_QK_K; j += 128)
        for (int l = 0; l < 32; l++)
            qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                      (L[j + l + 96] << 6));
}

static int get_2bit(const uint8_t *qs, int i) {
    return (qs[(i / 128) * 32 + i % 32] >> (2 * ((i % 128) / 32))) & 3;
}

static void quantize_q2_K(const float *x, qn_block_q2_K *y) {
    uint8_t L[QN_QK_K];
    float weights[16], mins[16], scales[16];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 16; j++) {
        for (int l = 0; l < 16; l++) weights[l] = fabsf(x[16 * j + l]);
        scales[j] = search_affine(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], -0.5f, 0.1f, 15, 1);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    memset(y->scales, 0, sizeof y->scales);
    y->d = y->dmin = qn_f2h(0.0f);
    if (max_scale > 0) {
        float iscale = 15.0f / max_scale;
        for (int j = 0; j < 16; j++) y->scales[j] = (uint8_t)qn_round_nearest(iscale * scales[j]);
        y->d = qn_f2h(max_scale / 15.0f);
    }
    if (max_min > 0) {
        float iscale = 15.0f / max_min;
        for (int j = 0; j < 16; j++) y->scales[j] |= (uint8_t)(qn_round_nearest(iscale * mins[j]) << 4);
        y->dmin = qn_f2h(max_min / 15.0f);
    }
    for (int j = 0; j < 16; j++) {
        const float d = qn_h2f(y->d) * (y->scales[j] & 0xF);
        if (!d) continue;
        const float dm = qn_h2f(y->dmin) * (y->scales[j] >> 4);
        for (int i = 0; i < 16; i++)
            L[16 * j + i] = (uint8_t)clampi(qn_round_nearest((x[16 * j + i] + dm) / d), 0, 3);
    }
    pack_2bit(L, y->qs);
}

static void dequantize_q2_K(const qn_block_q2_K *b, float *y) {
    const float d = qn_h2f(b->d), min = qn_h2f(b->dmin);
    for (int i = 0; i < QN_QK_K; i++) {
        uint8_t sc = b->scales[i / 16];
        float dl = d * (sc & 0xF), ml = min * (sc >> 4);
        y[i] = dl * get_2bit(b->qs, i) - ml;
    }
}

static void quantize_q3_K(const float *x, qn_block_q3_K *y) {
    int8_t L[QN_QK_K];
    float scales[16];
    float max_scale = 0, amax = 0;
    for (int j = 0; j < 16; j++) {
        scales[j] = search_symmetric_refine(16, 4, x + 16 * j, L + 16 * j);
        float scale = fabsf(scales[j]);
        if (scale > amax) {
            amax = scale;
            max_scale = scales[j];
        }
    }
    memset(y->scales, 0, sizeof y->scales);
    if (max_scale) {
        float iscale = -32.0f / max_scale;
        for (int j = 0; j < 16; j++) {
            int8_t l = (int8_t)qn_round_nearest(iscale * scales[j]);
            int ls = clampi(l, -32, 31) + 32;
            if (j < 8)
                y->scales[j] = (uint8_t)(ls & 0xF);
            else
                y->scales[j - 8] |= (uint8_t)((ls & 0xF) << 4);
            y->scales[j % 4 + 8] |= (uint8_t)((ls >> 4) << (2 * (j / 4)));
        }
        y->d = qn_f2h(1 / iscale);
    } else {
        y->d = qn_f2h(0.0f);
    }
    for (int j = 0; j < 16; j++) {
        float d = qn_h2f(y->d) * (int8_t)get_scale_q3(y->scales, j);
        if (!d) continue;
        for (int i = 0; i < 16; i++)
            L[16 * j + i] = (int8_t)(clampi(qn_round_nearest(x[16 * j + i] / d), -4, 3) + 4);
    }
    /* The third bit of element i goes to hmask[i % 32] bit i / 32. */
    uint8_t low[QN_QK_K];
    memset(y->hmask, 0, sizeof y->hmask);
    for (int i = 0; i < QN_QK_K; i++) {
        int l = L[i];
        if (l > 3) {
            y->hmask[i % 32] |= (uint8_t)(1u << (i / 32));
            l -= 4;
        }
        low[i] = (uint8_t)l;
    }
    pack_2bit(low, y->qs);
}

static void dequantize_q3_K(const qn_block_q3_K *b, float *y) {
    const float d_all = qn_h2f(b->d);
    for (int i = 0; i < QN_QK_K; i++) {
        float dl = d_all * get_scale_q3(b->scales, i / 16);
        int high = (b->hmask[i % 32] >> (i / 32)) & 1;
        y[i] = dl * (get_2bit(b->qs, i) - (high ? 0 : 4));
    }
}

/* q4_K and q5_K differ only in the level count and the search constants;
 * both write 8 scale/min pairs and levels L (0..nmax) for the caller to
 * pack. */
static void quantize_k_affine(const float *x, int nmax, float rmin, int nstep, uint16_t *d,
                              uint16_t *dmin, uint8_t scales_6bit[12], uint8_t L[QN_QK_K]) {
    float weights[32], mins[8], scales[8];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        const float *xb = x + 32 * j;
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += xb[l] * xb[l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) weights[l] = av_x + fabsf(xb[l]);
        scales[j] = search_affine(32, nmax, xb, weights, L + 32 * j, &mins[j], rmin, 0.1f, nstep, 0);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    memset(scales_6bit, 0, 12);
    for (int j = 0; j < 8; j++) {
        uint8_t ls = (uint8_t)qn_round_nearest(inv_scale * scales[j]);
        uint8_t lm = (uint8_t)qn_round_nearest(inv_min * mins[j]);
        set_scale_min_6bit(j, ls < 63 ? ls : 63, lm < 63 ? lm : 63, scales_6bit);
    }
    *d = qn_f2h(max_scale / 63.0f);
    *dmin = qn_f2h(max_min / 63.0f);
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        get_scale_min_6bit(j, scales_6bit, &sc, &m);
        const float dj = qn_h2f(*d) * sc;
        if (!dj) continue;
        const float dm = qn_h2f(*dmin) * m;
        for (int i = 0; i < 32; i++)
            L[32 * j + i] = (uint8_t)clampi(qn_round_nearest((x[32 * j + i] + dm) / dj), 0, nmax);
    }
}

/* q4_K/q5_K nibbles: byte l of each 32-byte group holds element l (low) and
 * l+32 (high) of the group's 64. q5_K's fifth bit of element i sits in
 * qh[i % 32] at bit i / 32. */
static void quantize_q4_K(const float *x, qn_block_q4_K *y) {
    uint8_t L[QN_QK_K];
    quantize_k_affine(x, 15, -1.0f, 20, &y->d, &y->dmin, y->scales, L);
    for (int i = 0; i < QN_QK_K / 2; i++) {
        int g = i / 32, l = i % 32;
        y->qs[i] = (uint8_t)(L[64 * g + l] | (L[64 * g + l + 32] << 4));
    }
}

static void quantize_q5_K(const float *x, qn_block_q5_K *y) {
    uint8_t L[QN_QK_K];
    quantize_k_affine(x, 31, -0.5f, 15, &y->d, &y->dmin, y->scales, L);
    memset(y->qh, 0, sizeof y->qh);
    for (int i = 0; i < QN_QK_K; i++)
        if (L[i] > 15) y->qh[i % 32] |= (uint8_t)(1u << (i / 32));
    for (int i = 0; i < QN_QK_K / 2; i++) {
        int g = i / 32, l = i % 32;
        y->qs[i] = (uint8_t)((L[64 * g + l] & 0xF) | ((L[64 * g + l + 32] & 0xF) << 4));
    }
}

static int get_nibble_k(const uint8_t *qs, int i) {
    uint8_t byte = qs[(i / 64) * 32 + i % 32];
    return (i % 64) < 32 ? byte & 0xF : byte >> 4;
}

static void dequantize_k_affine(const uint8_t *qs, const uint8_t *qh, uint16_t d16, uint16_t dmin16,
                                const uint8_t *scales_6bit, float *y) {
    const float d = qn_h2f(d16), min = qn_h2f(dmin16);
    for (int j = 0; j < QN_QK_K / 32; j++) { /* sub-block j: one scale and min */
        uint8_t sc, m;
        get_scale_min_6bit(j, scales_6bit, &sc, &m);
        const float dl = d * sc, ml = min * m;
        for (int i = 32 * j; i < 32 * j + 32; i++) {
            int q = get_nibble_k(qs, i);
            if (qh && ((qh[i % 32] >> j) & 1)) q += 16;
            y[i] = dl * q - ml;
        }
    }
}

/* q6_K: ql holds the low nibbles, qh the top two bits. Within each half of
 * 128 elements: ql[l] has elements l (low) and l+64 (high), ql[l+32] has
 * l+32 and l+96; qh[l] has the top bits of l, l+32, l+64, l+96 at bits 0, 2,
 * 4, 6. */
static void quantize_q6_K(const float *x, qn_block_q6_K *y) {
    int8_t L[QN_QK_K];
    float scales[16];
    float max_scale = 0, max_abs_scale = 0;
    for (int ib = 0; ib < 16; ib++) {
        const float scale = search_symmetric(16, 32, x + 16 * ib, L + 16 * ib);
        scales[ib] = scale;
        if (fabsf(scale) > max_abs_scale) {
            max_abs_scale = fabsf(scale);
            max_scale = scale;
        }
    }
    if (max_abs_scale < GROUP_MAX_EPS) {
        memset(y, 0, sizeof *y);
        return;
    }
    float iscale = -128.0f / max_scale;
    y->d = qn_f2h(1 / iscale);
    for (int ib = 0; ib < 16; ib++) y->scales[ib] = (int8_t)imin(127, qn_round_nearest(iscale * scales[ib]));
    for (int j = 0; j < 16; j++) {
        float d = qn_h2f(y->d) * y->scales[j];
        if (!d) continue;
        for (int i = 0; i < 16; i++)
            L[16 * j + i] = (int8_t)(clampi(qn_round_nearest(x[16 * j + i] / d), -32, 31) + 32);
    }
    for (int h = 0; h < 2; h++) {
        const int8_t *Lh = L + 128 * h;
        uint8_t *ql = y->ql + 64 * h, *qh = y->qh + 32 * h;
        for (int l = 0; l < 32; l++) {
            ql[l] = (uint8_t)((Lh[l] & 0xF) | ((Lh[l + 64] & 0xF) << 4));
            ql[l + 32] = (uint8_t)((Lh[l + 32] & 0xF) | ((Lh[l + 96] & 0xF) << 4));
            qh[l] = (uint8_t)((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) | ((Lh[l + 64] >> 4) << 4) |
                              ((Lh[l + 96] >> 4) << 6));
        }
    }
}

static void dequantize_q6_K(const qn_block_q6_K *b, float *y) {
    const float d = qn_h2f(b->d);
    for (int g = 0; g < QN_QK_K / 16; g++) { /* group g: one scale */
        const float dg = d * b->scales[g];
        for (int i = 16 * g; i < 16 * g + 16; i++) {
            int h = i / 128, r = i % 128, l = r % 32, quarter = r / 32;
            uint8_t low = b->ql[64 * h + l + 32 * (quarter & 1)];
            int q = (quarter < 2 ? low & 0xF : low >> 4) | (((b->qh[32 * h + l] >> (2 * quarter)) & 3) << 4);
            y[i] = dg * (q - 32);
        }
    }
}

static void quantize_q8_K(const float *x, qn_block_q8_K *y) {
    float amax;
    const float max = signed_abs_max(QN_QK_K, x, &amax);
    memset(y, 0, sizeof *y);
    if (!amax) return;
    /* -127 rather than -128 keeps every quant in [-127, 127]. */
    const float iscale = -127.0f / max;
    for (int j = 0; j < QN_QK_K; j++) y->qs[j] = (int8_t)imin(127, qn_round_nearest(iscale * x[j]));
    for (int j = 0; j < 16; j++) {
        int sum = 0;
        for (int i = 0; i < 16; i++) sum += y->qs[16 * j + i];
        y->bsums[j] = (int16_t)sum;
    }
    y->d = 1 / iscale;
}

static void dequantize_q8_K(const qn_block_q8_K *b, float *y) {
    for (int i = 0; i < QN_QK_K; i++) y[i] = b->d * b->qs[i];
}

void qn_quantize_k(qn_dtype type, const float *x, void *y, int64_t nb) {
    const int64_t bytes = qn_dtype_block_bytes(type);
    for (int64_t i = 0; i < nb; i++) {
        const float *xb = x + i * QN_QK_K;
        uint8_t *dst = (uint8_t *)y + i * bytes;
        switch (type) {
        case QN_Q2_K: { qn_block_q2_K b; quantize_q2_K(xb, &b); memcpy(dst, &b, sizeof b); break; }
        case QN_Q3_K: { qn_block_q3_K b; quantize_q3_K(xb, &b); memcpy(dst, &b, sizeof b); break; }
        case QN_Q4_K: { qn_block_q4_K b; quantize_q4_K(xb, &b); memcpy(dst, &b, sizeof b); break; }
        case QN_Q5_K: { qn_block_q5_K b; quantize_q5_K(xb, &b); memcpy(dst, &b, sizeof b); break; }
        case QN_Q6_K: { qn_block_q6_K b; quantize_q6_K(xb, &b); memcpy(dst, &b, sizeof b); break; }
        default: { qn_block_q8_K b; quantize_q8_K(xb, &b); memcpy(dst, &b, sizeof b); break; }
        }
    }
}

void qn_dequantize_k(qn_dtype type, const void *x, float *y, int64_t nb) {
    const int64_t bytes = qn_dtype_block_bytes(type);
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *src = (const uint8_t *)x + i * bytes;
        float *yb = y + i * QN_QK_K;
        switch (type) {
        case QN_Q2_K: { qn_block_q2_K b; memcpy(&b, src, sizeof b); dequantize_q2_K(&b, yb); break; }
        case QN_Q3_K: { qn_block_q3_K b; memcpy(&b, src, sizeof b); dequantize_q3_K(&b, yb); break; }
        case QN_Q4_K: {
            qn_block_q4_K b;
            memcpy(&b, src, sizeof b);
            dequantize_k_affine(b.qs, NULL, b.d, b.dmin, b.scales, yb);
            break;
        }
        case QN_Q5_K: {
            qn_block_q5_K b;
            memcpy(&b, src, sizeof b);
            dequantize_k_affine(b.qs, b.qh, b.d, b.dmin, b.scales, yb);
            break;
        }
        case QN_Q6_K: { qn_block_q6_K b; memcpy(&b, src, sizeof b); dequantize_q6_K(&b, yb); break; }
        default: { qn_block_q8_K b; memcpy(&b, src, sizeof b); dequantize_q8_K(&b, yb); break; }
        }
    }
}
