/* The transformer row ops on the device under test: norms, RoPE (and the
 * fused norm + RoPE, alone, with the K cache append, and with q, k and v
 * and both caches), activations and gated units, softmax, embedding
 * gathers and mixture-of-experts routing. Each runs on fresh random inputs
 * of odd sizes, outputs poisoned first, against a reference written here
 * in double precision; on a GPU each also runs on the CPU backend and the
 * two must agree within the same tolerance (bit for bit where the op is a
 * pure gather). Tolerances are relative to max(|expected|, a tenth of the
 * largest expected value): 2e-5 for f32 outputs, 2e-3 for f16, 1.6e-2 for
 * bf16 (a few units in the last place of the output type). */
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const qn_dtype FLOATS[3] = {QN_F32, QN_F16, QN_BF16};

/* ---- harness */

static size_t esz(qn_dtype t) { return (size_t)qn_dtype_block_bytes(t); }

/* v as a buffer of dtype t would hold it. */
static float round_to(qn_dtype t, float v) {
    if (t == QN_F16) return qn_f16_to_f32(qn_f32_to_f16(v));
    if (t == QN_BF16) return qn_bf16_to_f32(qn_f32_to_bf16(v));
    return v;
}

/* n random values in [lo, hi), already rounded to t. */
static float *rand_vals(qn_dtype t, size_t n, float lo, float hi) {
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = round_to(t, qt_randf(lo, hi));
    return v;
}

static void pack(qn_dtype t, const float *v, size_t n, unsigned char *out) {
    for (size_t i = 0; i < n; i++) {
        if (t == QN_F32) {
            memcpy(out + 4 * i, &v[i], 4);
        } else {
            uint16_t h = t == QN_F16 ? qn_f32_to_f16(v[i]) : qn_f32_to_bf16(v[i]);
            memcpy(out + 2 * i, &h, 2);
        }
    }
}

/* A contiguous buffer of dtype t holding v. */
static qn_buffer *upload(qn_device *dev, qn_dtype t, int ndim, const int64_t *ne, const float *v) {
    qn_buffer *b;
    QT_OK(qn_buffer_alloc(dev, t, ndim, ne, &b));
    size_t n = qn_buffer_bytes(b) / esz(t);
    unsigned char *h = malloc(n * esz(t));
    pack(t, v, n, h);
    QT_OK(qn_buffer_write(b, 0, h, n * esz(t)));
    free(h);
    return b;
}

static qn_buffer *upload_i32(qn_device *dev, int64_t n, const int32_t *v) {
    qn_buffer *b;
    QT_OK(qn_buffer_alloc(dev, QN_I32, 1, &n, &b));
    QT_OK(qn_buffer_write(b, 0, v, (size_t)n * 4));
    return b;
}

/* A buffer's n first elements (f32, f16, bf16) as floats. */
static float *download(qn_buffer *b, size_t n) {
    qn_dtype t = qn_buffer_dtype(b);
    unsigned char *h = qt_read_all(b);
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) {
        if (t == QN_F32) {
            memcpy(&v[i], h + 4 * i, 4);
        } else {
            uint16_t x;
            memcpy(&x, h + 2 * i, 2);
            v[i] = t == QN_F16 ? qn_f16_to_f32(x) : qn_bf16_to_f32(x);
        }
    }
    free(h);
    return v;
}

static double tol_of(qn_dtype t) { return t == QN_F32 ? 2e-5 : t == QN_F16 ? 2e-3 : 1.6e-2; }

static void expect_close(const float *got, const double *want, size_t n, double tol, const char *what) {
    double big = 0;
    for (size_t i = 0; i < n; i++) big = fmax(big, fabs(want[i]));
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - want[i]);
        if (!(err <= tol * fmax(fabs(want[i]), 0.1 * big)))
            fail_msg("%s: element %zu is %.9g, expected %.9g (tolerance %g)", what, i, (double)got[i], want[i], tol);
    }
}

/* Run `run` (which returns n output floats) on the device under test and
 * check it; on a GPU, run it on the CPU as well and compare the two. */
typedef float *(*run_fn)(qn_device *dev, const void *c);
static void verify(run_fn run, const void *c, const double *want, size_t n, double tol, const char *what) {
    float *got = run(qt_device(), c);
    expect_close(got, want, n, tol, what);
    if (qt_on_gpu()) {
        float *cpu = run(qt_cpu(), c);
        double *cw = malloc(n * sizeof *cw);
        for (size_t i = 0; i < n; i++) cw[i] = cpu[i];
        char w2[200];
        snprintf(w2, sizeof w2, "%s (GPU vs CPU)", what);
        expect_close(got, cw, n, tol, w2);
        free(cw);
        free(cpu);
    }
    free(got);
}

static qn_encoder *new_encoder(qn_device *dev) {
    qn_encoder *enc;
    QT_OK(qn_encoder_create(dev, &enc));
    return enc;
}

/* ---- norms */

enum { RMS, ADD_RMS, L2, LAYER, NORM_ADD_RMS };

typedef struct {
    int kind;
    qn_dtype dt, xt, wt;
    int64_t ne[3];
    int pad;   /* x is a view with this many extra elements per row */
    bool has_w, has_bias;
    float off, eps;
    float *x, *b, *w, *bias, *bw; /* x [ne0 + pad, ne1, ne2]; b [ne0, ne1, ne2]; bw b's norm weight */
} norm_case;

/* dst, then (ADD_RMS, NORM_ADD_RMS) the sum written over a */
static float *norm_run(qn_device *dev, const void *p) {
    const norm_case *c = p;
    qn_encoder *enc = new_encoder(dev);
    int64_t n = c->ne[0] * c->ne[1] * c->ne[2];
    int64_t xne[3] = {c->ne[0] + c->pad, c->ne[1], c->ne[2]};
    qn_buffer *xb = upload(dev, c->xt, 3, xne, c->x), *d = qt_poisoned(dev, c->dt, 3, c->ne);
    qn_buffer *wb = c->has_w ? upload(dev, c->wt, 1, c->ne, c->w) : NULL;
    qn_buffer *bb = c->has_bias ? upload(dev, c->wt, 1, c->ne, c->bias) : NULL;
    const bool adds = c->kind == ADD_RMS || c->kind == NORM_ADD_RMS;
    qn_buffer *addb = adds ? upload(dev, c->xt, 3, c->ne, c->b) : NULL;
    qn_buffer *bwb = c->kind == NORM_ADD_RMS ? upload(dev, c->wt, 1, c->ne, c->bw) : NULL;
    qn_tensor x = qn_tensor_of(xb), w = wb ? qn_tensor_of(wb) : QN_TENSOR_NONE;
    qn_tensor bias = bb ? qn_tensor_of(bb) : QN_TENSOR_NONE;
    x.ne[0] = c->ne[0];
    switch (c->kind) {
    case RMS: QT_OK(qn_rms_norm(enc, qn_tensor_of(d), x, w, c->eps, c->off)); break;
    case ADD_RMS: QT_OK(qn_add_rms_norm(enc, qn_tensor_of(d), x, x, qn_tensor_of(addb), w, c->eps, c->off)); break;
    case NORM_ADD_RMS:
        QT_OK(qn_norm_add_rms_norm(enc, qn_tensor_of(d), x, x, qn_tensor_of(addb), qn_tensor_of(bwb), w, c->eps, c->off));
        break;
    case L2: QT_OK(qn_l2_norm(enc, qn_tensor_of(d), x, c->eps)); break;
    default: QT_OK(qn_layer_norm(enc, qn_tensor_of(d), x, w, bias, c->eps));
    }
    QT_OK(qn_encoder_commit_wait(enc));
    float *out = malloc((size_t)(2 * n) * sizeof *out), *dv = download(d, (size_t)n);
    memcpy(out, dv, (size_t)n * sizeof *out);
    if (adds) {
        float *xv = download(xb, (size_t)(xne[0] * xne[1] * xne[2]));
        for (int64_t r = 0; r < c->ne[1] * c->ne[2]; r++)
            memcpy(out + n + r * c->ne[0], xv + r * xne[0], (size_t)c->ne[0] * sizeof *out);
        free(xv);
    }
    free(dv);
    qn_buffer_free(xb);
    qn_buffer_free(d);
    qn_buffer_free(wb);
    qn_buffer_free(bb);
    qn_buffer_free(addb);
    qn_buffer_free(bwb);
    qn_encoder_destroy(enc);
    return out;
}

static void norm_check(norm_case *c) {
    int64_t n0 = c->ne[0], rows = c->ne[1] * c->ne[2], n = n0 * rows, xs = n0 + c->pad;
    c->x = rand_vals(c->xt, (size_t)(xs * rows), -3, 3);
    c->b = rand_vals(c->xt, (size_t)n, -3, 3);
    c->w = rand_vals(c->wt, (size_t)n0, -2, 2);
    c->bias = rand_vals(c->wt, (size_t)n0, -1, 1);
    c->bw = rand_vals(c->wt, (size_t)n0, -2, 2);
    const bool adds = c->kind == ADD_RMS || c->kind == NORM_ADD_RMS;
    double *want = malloc((size_t)(2 * n) * sizeof *want), *v = malloc((size_t)n0 * sizeof *v);
    for (int64_t r = 0; r < rows; r++) {
        double bscale = 1.0; /* NORM_ADD_RMS: b's own RMS norm */
        if (c->kind == NORM_ADD_RMS) {
            double bsq = 0;
            for (int64_t i = 0; i < n0; i++) bsq += (double)c->b[r * n0 + i] * c->b[r * n0 + i];
            bscale = 1.0 / sqrt(bsq / (double)n0 + c->eps);
        }
        for (int64_t i = 0; i < n0; i++) {
            v[i] = c->x[r * xs + i];
            double bi = c->b[r * n0 + i];
            if (c->kind == NORM_ADD_RMS) bi *= bscale * ((double)c->bw[i] + c->off);
            if (adds) v[i] = want[n + r * n0 + i] = round_to(c->xt, c->x[r * xs + i] + bi);
        }
        double mean = 0, sq = 0, scale;
        if (c->kind == LAYER) {
            for (int64_t i = 0; i < n0; i++) mean += v[i];
            mean /= (double)n0;
        }
        for (int64_t i = 0; i < n0; i++) sq += (v[i] - mean) * (v[i] - mean);
        scale = c->kind == L2 ? 1.0 / fmax(sqrt(sq), c->eps) : 1.0 / sqrt(sq / (double)n0 + c->eps);
        for (int64_t i = 0; i < n0; i++) {
            double o = (v[i] - mean) * scale;
            if (c->has_w) o *= (double)c->w[i] + c->off;
            if (c->has_bias) o += c->bias[i];
            want[r * n0 + i] = o;
        }
    }
    static const char *names[5] = {"rms_norm", "add_rms_norm", "l2_norm", "layer_norm", "norm_add_rms_norm"};
    char what[160];
    snprintf(what, sizeof what, "%s %s<-%s w %s [%lld,%lld,%lld]%s", names[c->kind], qn_dtype_name(c->dt),
             qn_dtype_name(c->xt), c->has_w ? qn_dtype_name(c->wt) : "none", (long long)n0, (long long)c->ne[1],
             (long long)c->ne[2], c->pad ? " strided" : "");
    /* the sum is rounded to x's dtype; with b's norm before it (computed in
     * f32, not exactly) that rounding may land one step of x's dtype away */
    const double tol = fmax(tol_of(c->dt), tol_of(c->xt) / (c->kind == NORM_ADD_RMS ? 1 : 4));
    verify(norm_run, c, want, (size_t)(adds ? 2 * n : n), tol, what);
    free(want);
    free(v);
    free(c->x);
    free(c->b);
    free(c->w);
    free(c->bias);
    free(c->bw);
}

static void test_norms(void **state) {
    (void)state;
    const int64_t sizes[5] = {1, 7, 128, 333, 4099};
    for (int kind = RMS; kind <= NORM_ADD_RMS; kind++)
        for (int s = 0; s < 5; s++)
            for (int t = 0; t < 3; t++) {
                const bool rms = kind == RMS || kind == ADD_RMS || kind == NORM_ADD_RMS;
                norm_case c = {kind, FLOATS[t], FLOATS[(t + s) % 3], FLOATS[(t + kind) % 3], {sizes[s], 3, 2}, s % 2 * 3,
                               kind != L2 && (s + t) % 3 != 0, kind == LAYER && t != 1, s == 2 && rms ? 1.0f : 0.0f, 1e-6f,
                               NULL, NULL, NULL, NULL, NULL};
                if (sizes[s] == 1 && rms) c.eps = 1e-3f;
                if (kind == LAYER && sizes[s] == 1) continue; /* a one-element row has no spread */
                norm_check(&c);
            }
}

/* ---- RoPE */

typedef struct {
    qn_rope_params p;
    qn_dtype dt, xt;
    int64_t ne[3]; /* head_dim, heads, tokens */
    bool ff, norm, in_place, w;
    float *x, *f, *wv;
    int32_t *pos;
} rope_case;

static float *rope_run(qn_device *dev, const void *p) {
    const rope_case *c = p;
    qn_encoder *enc = new_encoder(dev);
    int multi = c->p.mode >= QN_ROPE_MULTI;
    int64_t n = c->ne[0] * c->ne[1] * c->ne[2], npairs = c->p.mode == QN_ROPE_VISION ? c->p.n_dims : c->p.n_dims / 2;
    qn_buffer *xb = upload(dev, c->xt, 3, c->ne, c->x), *d = c->in_place ? xb : qt_poisoned(dev, c->dt, 3, c->ne);
    qn_buffer *pb = upload_i32(dev, (multi ? 4 : 1) * c->ne[2], c->pos);
    qn_buffer *fb = c->ff ? upload(dev, QN_F32, 1, &npairs, c->f) : NULL;
    qn_buffer *wb = c->w ? upload(dev, QN_F32, 1, c->ne, c->wv) : NULL;
    qn_tensor ft = fb ? qn_tensor_of(fb) : QN_TENSOR_NONE, wt = wb ? qn_tensor_of(wb) : QN_TENSOR_NONE;
    if (c->norm)
        QT_OK(qn_rms_norm_rope(enc, qn_tensor_of(d), qn_tensor_of(xb), wt, 1e-5f, 0.0f, qn_tensor_of(pb), ft, &c->p));
    else
        QT_OK(qn_rope(enc, qn_tensor_of(d), qn_tensor_of(xb), qn_tensor_of(pb), ft, &c->p));
    QT_OK(qn_encoder_commit_wait(enc));
    float *out = download(d, (size_t)n);
    qn_buffer_free(xb);
    if (!c->in_place) qn_buffer_free(d);
    qn_buffer_free(pb);
    qn_buffer_free(fb);
    qn_buffer_free(wb);
    qn_encoder_destroy(enc);
    return out;
}

/* The reference angle: the spec's f32 base angle (pos * theta_scale^i /
 * ff, as llama.cpp computes it, so that an ulp of it does not become a
 * visible angle error at large positions), then YaRN and the rotation in
 * double. */
static void ref_cs(const qn_rope_params *p, int i, const int32_t *pos4, float ff, double *c, double *s) {
    const int *sec = p->sections;
    int ch = 0, expo = i;
    if (p->mode == QN_ROPE_VISION) {
        int sector = i % (sec[0] + sec[1]);
        ch = sector < sec[0] ? 0 : 1;
        expo = sector < sec[0] ? sector : sector - sec[0];
    } else if (p->mode == QN_ROPE_MULTI || p->mode == QN_ROPE_IMULTI) {
        int sector = i % (sec[0] + sec[1] + sec[2] + sec[3]);
        if (p->mode == QN_ROPE_IMULTI)
            ch = sector % 3 == 1 && sector < 3 * sec[1]   ? 1
                 : sector % 3 == 2 && sector < 3 * sec[2] ? 2
                 : sector % 3 == 0 && sector < 3 * sec[0] ? 0
                                                          : 3;
        else
            ch = sector < sec[0] ? 0 : sector < sec[0] + sec[1] ? 1 : sector < sec[0] + sec[1] + sec[2] ? 2 : 3;
    }
    float theta_scale = powf(p->freq_base, -2.0f / (float)p->n_dims);
    double ext = (float)pos4[ch] * powf(theta_scale, (float)expo) / ff;
    double th = p->freq_scale * ext, mag = p->attn_factor;
    if (p->ext_factor != 0) {
        double lo = floor(p->n_dims * log(p->n_ctx_orig / (p->beta_fast * 2 * M_PI)) / (2 * log(p->freq_base)));
        double hi = ceil(p->n_dims * log(p->n_ctx_orig / (p->beta_slow * 2 * M_PI)) / (2 * log(p->freq_base)));
        lo = fmax(0, lo);
        hi = fmin(p->n_dims - 1, hi);
        double y = (i - lo) / fmax(0.001, hi - lo), mix = (1 - fmin(1, fmax(0, y))) * p->ext_factor;
        th = th * (1 - mix) + ext * mix;
        mag *= 1 + 0.1 * log(1 / p->freq_scale);
    }
    *c = cos(th) * mag;
    *s = sin(th) * mag;
}

static void rope_check(rope_case *c) {
    int64_t hd = c->ne[0], rows = c->ne[1] * c->ne[2], n = hd * rows, T = c->ne[2];
    int multi = c->p.mode >= QN_ROPE_MULTI;
    int npairs = c->p.mode == QN_ROPE_VISION ? c->p.n_dims : c->p.n_dims / 2;
    c->x = rand_vals(c->xt, (size_t)n, -2, 2);
    c->f = rand_vals(QN_F32, (size_t)npairs, 0.5f, 4.0f);
    c->wv = rand_vals(QN_F32, (size_t)hd, -1.5f, 1.5f);
    c->pos = malloc((size_t)(4 * T) * sizeof *c->pos);
    for (int64_t i = 0; i < (multi ? 4 : 1) * T; i++) c->pos[i] = (int32_t)(qt_rand() % 1000);
    double *want = malloc((size_t)n * sizeof *want), *v = malloc((size_t)hd * sizeof *v);
    for (int64_t r = 0; r < rows; r++) {
        int64_t t = r / c->ne[1];
        int32_t p4[4] = {c->pos[t], multi ? c->pos[t + T] : 0, multi ? c->pos[t + 2 * T] : 0, multi ? c->pos[t + 3 * T] : 0};
        double sq = 0;
        for (int64_t i = 0; i < hd; i++) sq += (double)c->x[r * hd + i] * c->x[r * hd + i];
        double scale = c->norm ? 1.0 / sqrt(sq / (double)hd + 1e-5) : 1.0;
        for (int64_t i = 0; i < hd; i++) v[i] = c->x[r * hd + i] * scale * (c->w ? c->wv[i] : 1.0);
        for (int64_t i = 0; i < hd; i++) want[r * hd + i] = v[i];
        for (int i = 0; i < npairs; i++) {
            int a = c->p.mode == QN_ROPE_NORMAL ? 2 * i : i;
            int b = c->p.mode == QN_ROPE_NORMAL ? 2 * i + 1 : c->p.mode == QN_ROPE_VISION ? i + c->p.n_dims : i + c->p.n_dims / 2;
            double cs, sn;
            ref_cs(&c->p, i, p4, c->ff ? c->f[i] : 1.0f, &cs, &sn);
            want[r * hd + a] = v[a] * cs - v[b] * sn;
            want[r * hd + b] = v[a] * sn + v[b] * cs;
        }
    }
    char what[160];
    snprintf(what, sizeof what, "rope mode %d %s<-%s n_dims %d head %lld%s%s%s%s", (int)c->p.mode,
             qn_dtype_name(c->dt), qn_dtype_name(c->xt), c->p.n_dims, (long long)hd, c->ff ? " ff" : "",
             c->p.ext_factor != 0 ? " yarn" : "", c->norm ? " +norm" : "", c->in_place ? " in place" : "");
    /* The angle of a position up to 1000 is an f32 near 1000, and the GPU's
     * powf may be 4 ulp (2.4e-4 rad) off the host's: up to 8e-4 on an
     * element of 0.3, the tenth of the largest. */
    verify(rope_run, c, want, (size_t)n, fmax(tol_of(c->dt), 3e-3), what);
    free(want);
    free(v);
    free(c->x);
    free(c->f);
    free(c->wv);
    free(c->pos);
}

static void test_rope(void **state) {
    (void)state;
    for (int mode = QN_ROPE_NORMAL; mode <= QN_ROPE_VISION; mode++)
        for (int k = 0; k < 6; k++) {
            int64_t hd = mode == QN_ROPE_VISION ? 80 : k % 2 ? 128 : 96;
            int n_dims = mode == QN_ROPE_VISION ? 40 : k % 3 == 0 ? 64 : (int)hd; /* partial rotation too */
            rope_case c = {qn_rope_params_default((qn_rope_mode)mode, n_dims, k % 2 ? 1e6f : 1e4f),
                           FLOATS[k % 3], FLOATS[(k + mode) % 3], {hd, 3 + k, 5}, k % 2 == 0, k >= 4, k == 3, k == 5,
                           NULL, NULL, NULL, NULL};
            if (c.in_place) c.dt = c.xt;
            if (k == 1 || k == 2) { /* linear and YaRN scaling */
                c.p.freq_scale = 0.25f;
                c.p.ext_factor = k == 2 ? 1.0f : 0.0f;
                c.p.n_ctx_orig = 4096;
                c.p.attn_factor = 0.9f;
            }
            if (mode == QN_ROPE_MULTI || mode == QN_ROPE_IMULTI) {
                int q = n_dims / 2;
                c.p.sections[0] = q / 4 + 1, c.p.sections[1] = q / 4, c.p.sections[2] = q / 4 - 1, c.p.sections[3] = 2;
            }
            if (mode == QN_ROPE_VISION) c.p.sections[0] = 10, c.p.sections[1] = 10;
            rope_check(&c);
        }
}

/* qn_rms_norm_rope_append writes into the cache exactly what qn_rms_norm_rope
 * into f32 followed by qn_kv_cache_append writes, wrapping around the ring;
 * rows of other positions stay untouched (poison). */
static uint8_t *rope_append_run(qn_device *dev, qn_dtype ct, bool fused, const int64_t xne[3], int64_t cap,
                                const float *x, const float *w, int32_t p0, const qn_rope_params *rp, size_t *bytes) {
    qn_encoder *enc = new_encoder(dev);
    int64_t cne[3] = {xne[0], cap, xne[1]};
    qn_buffer *xb = upload(dev, QN_F32, 3, xne, x), *wb = upload(dev, QN_F32, 1, xne, w);
    qn_buffer *cb = qt_poisoned(dev, ct, 3, cne), *tmp = qt_poisoned(dev, QN_F32, 3, xne);
    int32_t *pos = malloc((size_t)xne[2] * sizeof *pos);
    for (int64_t t = 0; t < xne[2]; t++) pos[t] = p0 + (int32_t)t;
    qn_buffer *pb = upload_i32(dev, xne[2], pos);
    if (fused) {
        QT_OK(qn_rms_norm_rope_append(enc, qn_tensor_of(cb), qn_tensor_of(xb), qn_tensor_of(wb), 1e-6f, 0.0f,
                                      qn_tensor_of(pb), QN_TENSOR_NONE, rp));
    } else {
        QT_OK(qn_rms_norm_rope(enc, qn_tensor_of(tmp), qn_tensor_of(xb), qn_tensor_of(wb), 1e-6f, 0.0f,
                               qn_tensor_of(pb), QN_TENSOR_NONE, rp));
        QT_OK(qn_kv_cache_append(enc, qn_tensor_of(cb), qn_tensor_of(tmp), qn_tensor_of(pb)));
    }
    QT_OK(qn_encoder_commit_wait(enc));
    uint8_t *out = qt_read_all(cb);
    *bytes = qn_buffer_bytes(cb);
    qn_buffer *bufs[] = {xb, wb, cb, tmp, pb};
    for (int i = 0; i < 5; i++) qn_buffer_free(bufs[i]);
    free(pos);
    qn_encoder_destroy(enc);
    return out;
}

static void test_rope_append(void **state) {
    (void)state;
    static const struct {
        int64_t d, heads, tokens, cap;
        int32_t p0;
        qn_rope_mode mode;
    } cases[] = {{256, 1, 1, 7, 12, QN_ROPE_NEOX}, {128, 3, 5, 8, 6, QN_ROPE_NORMAL}, {64, 2, 9, 9, 0, QN_ROPE_NEOX},
                 {80, 1, 3, 100, 98, QN_ROPE_NEOX}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        for (int ct = 0; ct < 2; ct++) {
            const int64_t xne[3] = {cases[k].d, cases[k].heads, cases[k].tokens};
            const size_t n = (size_t)(xne[0] * xne[1] * xne[2]);
            float *x = malloc(n * sizeof *x), *w = malloc((size_t)xne[0] * sizeof *w);
            qt_fill_random_f32(x, n, -4, 4);
            qt_fill_random_f32(w, (size_t)xne[0], -2, 2);
            qn_rope_params rp = qn_rope_params_default(cases[k].mode, (int)(k % 2 ? xne[0] : xne[0] / 2), 1e4f);
            qn_device *devs[2] = {qt_device(), qt_cpu()};
            uint8_t *ref = NULL;
            size_t bytes = 0;
            for (int di = 0; di < (qt_on_gpu() ? 2 : 1); di++) {
                size_t b1, b2;
                qn_dtype t = ct ? QN_BF16 : QN_F16;
                uint8_t *two = rope_append_run(devs[di], t, false, xne, cases[k].cap, x, w, cases[k].p0, &rp, &b1);
                uint8_t *one = rope_append_run(devs[di], t, true, xne, cases[k].cap, x, w, cases[k].p0, &rp, &b2);
                if (b1 != b2 || memcmp(one, two, b1) != 0)
                    fail_msg("rms_norm_rope_append %s case %zu on %s differs from rms_norm_rope + kv_cache_append",
                             qn_dtype_name(t), k, di ? "CPU" : "the device under test");
                /* the rows written: the poison is gone from exactly those rows */
                size_t row = (size_t)xne[0] * 2;
                for (int64_t h = 0; h < xne[1]; h++)
                    for (int64_t r = 0; r < cases[k].cap; r++) {
                        bool written = false;
                        for (int64_t tt = 0; tt < xne[2]; tt++) written |= (cases[k].p0 + tt) % cases[k].cap == r;
                        const uint8_t *p = one + (size_t)(h * cases[k].cap + r) * row;
                        bool poisoned = true;
                        for (size_t i = 0; i < row; i++) poisoned &= p[i] == 0xFF;
                        if (written == poisoned) fail_msg("case %zu head %lld row %lld: written %d, poisoned %d", k,
                                                          (long long)h, (long long)r, written, poisoned);
                    }
                if (di == 0) {
                    ref = one;
                    bytes = b2;
                } else {
                    /* the GPU sums the squares in another order: equal within a rounding step */
                    const size_t nv = bytes / 2;
                    float *g = malloc(nv * sizeof *g), *c = malloc(nv * sizeof *c);
                    QT_OK(qn_dequantize_row(t, ref, g, (int64_t)nv));
                    QT_OK(qn_dequantize_row(t, one, c, (int64_t)nv));
                    for (size_t i = 0; i < nv; i++)
                        if (isnan(g[i]) != isnan(c[i]) || (!isnan(c[i]) && fabsf(g[i] - c[i]) > tol_of(t) * fmaxf(fabsf(c[i]), 1.0f)))
                            fail_msg("rms_norm_rope_append %s case %zu: element %zu is %g on the GPU, %g on the CPU",
                                     qn_dtype_name(t), k, i, (double)g[i], (double)c[i]);
                    free(g);
                    free(c);
                    free(one);
                }
                free(two);
            }
            free(ref);
            free(x);
            free(w);
        }
}

/* ---- qn_rms_norm_rope_qkv: on each backend, byte for byte what the
 * separate ops write (qn_rms_norm_rope of q; qn_rms_norm_rope_append of k,
 * or for a q8_0 cache qn_rms_norm_rope into f32 and qn_kv_cache_append; and
 * qn_kv_cache_append of v); only the new tokens' cache rows lose their
 * poison; on a GPU, the CPU's result within a rounding step (v's rows bit
 * for bit: they are only converted). q, k and v sit in one buffer, either
 * one token's q, k and v after another (as a fused projection writes them)
 * or three regions of contiguous tensors, each in its own dtype. */

typedef struct {
    int64_t d, H, Hkv, n, kcap, vcap;
    int32_t p0;
    qn_rope_mode mode;
    int n_dims;
    qn_dtype kc, vc;         /* the caches */
    qn_dtype qt, kt, vt, dt; /* q, k, v and q_dst (q's when in place) */
    bool packed, in_place, weights, ff, yarn;
    float w_off;
} qkv_case;

/* Where q, k and v lie in their buffer: byte offsets of token 0 and byte
 * strides between tokens. */
typedef struct {
    size_t off[3], stride[3], bytes;
} qkv_layout;

static qkv_layout qkv_place(const qkv_case *c) {
    const size_t row[3] = {(size_t)(c->d * c->H) * esz(c->qt), (size_t)(c->d * c->Hkv) * esz(c->kt),
                           (size_t)(c->d * c->Hkv) * esz(c->vt)};
    qkv_layout l;
    l.bytes = (row[0] + row[1] + row[2]) * (size_t)c->n;
    for (int i = 0; i < 3; i++) {
        l.off[i] = i == 0 ? 0 : c->packed ? l.off[i - 1] + row[i - 1] : l.off[i - 1] + row[i - 1] * (size_t)c->n;
        l.stride[i] = c->packed ? row[0] + row[1] + row[2] : row[i];
    }
    return l;
}

static qn_tensor qkv_view(qn_buffer *b, const qkv_layout *l, int which, qn_dtype t, int64_t d, int64_t heads, int64_t n) {
    qn_tensor v = qn_tensor_make(b, l->off[which], t, d, heads, n, 1);
    v.nb[2] = (int64_t)l->stride[which];
    v.nb[3] = v.nb[2] * n;
    return v;
}

/* n rows of `per` elements of dtype t, row r at off + r * stride, as floats. */
static float *gather(const uint8_t *bytes, qn_dtype t, size_t off, size_t stride, int64_t per, int64_t n) {
    float *v = malloc((size_t)(per * n) * sizeof *v);
    for (int64_t r = 0; r < n; r++)
        for (int64_t i = 0; i < per; i++) {
            const uint8_t *p = bytes + off + (size_t)r * stride + (size_t)i * esz(t);
            uint16_t h;
            memcpy(&h, p, 2);
            if (t == QN_F32) memcpy(&v[r * per + i], p, 4);
            else v[r * per + i] = t == QN_F16 ? qn_f16_to_f32(h) : qn_bf16_to_f32(h);
        }
    return v;
}

typedef struct {
    float *q, *k, *v, *qw, *kw, *ff;
    int32_t *pos;
} qkv_in;

typedef struct {
    float *q; /* q_dst [d, H, n] as floats */
    uint8_t *kc, *vc;
    size_t kc_bytes, vc_bytes;
} qkv_out;

static void qkv_run(qn_device *dev, const qkv_case *c, const qkv_in *in, bool fused, qkv_out *o) {
    qn_encoder *enc = new_encoder(dev);
    const qkv_layout l = qkv_place(c);
    const int64_t d = c->d, n = c->n, npairs = c->n_dims / 2, npos = (c->mode >= QN_ROPE_MULTI ? 4 : 1) * n;
    const int64_t qn = d * c->H * n;
    /* the inputs, packed on the host into one buffer */
    uint8_t *host = malloc(l.bytes);
    const float *src[3] = {in->q, in->k, in->v};
    const qn_dtype st[3] = {c->qt, c->kt, c->vt};
    const int64_t per[3] = {d * c->H, d * c->Hkv, d * c->Hkv};
    for (int i = 0; i < 3; i++)
        for (int64_t t = 0; t < n; t++) pack(st[i], src[i] + t * per[i], (size_t)per[i], host + l.off[i] + (size_t)t * l.stride[i]);
    int64_t total = (int64_t)l.bytes;
    qn_buffer *qkv;
    QT_OK(qn_buffer_alloc(dev, QN_U8, 1, &total, &qkv));
    QT_OK(qn_buffer_write(qkv, 0, host, l.bytes));
    qn_tensor q = qkv_view(qkv, &l, 0, c->qt, d, c->H, n), k = qkv_view(qkv, &l, 1, c->kt, d, c->Hkv, n),
              v = qkv_view(qkv, &l, 2, c->vt, d, c->Hkv, n);
    int64_t qne[3] = {d, c->H, n}, kne[3] = {d, c->Hkv, n}, kcne[3] = {d, c->kcap, c->Hkv}, vcne[3] = {d, c->vcap, c->Hkv};
    qn_buffer *qd = c->in_place ? NULL : qt_poisoned(dev, c->dt, 3, qne);
    qn_buffer *kc = qt_poisoned(dev, c->kc, 3, kcne), *vc = qt_poisoned(dev, c->vc, 3, vcne);
    qn_buffer *tmp = qt_poisoned(dev, QN_F32, 3, kne), *pb = upload_i32(dev, npos, in->pos);
    qn_buffer *qwb = upload(dev, QN_F32, 1, &d, in->qw), *kwb = upload(dev, QN_BF16, 1, &d, in->kw);
    qn_buffer *ffb = upload(dev, QN_F32, 1, &npairs, in->ff);
    qn_tensor qdt = c->in_place ? q : qn_tensor_of(qd), P = qn_tensor_of(pb), N = QN_TENSOR_NONE;
    qn_tensor qw = c->weights ? qn_tensor_of(qwb) : N, kw = c->weights ? qn_tensor_of(kwb) : N,
              ff = c->ff ? qn_tensor_of(ffb) : N;
    qn_rope_params rp = qn_rope_params_default(c->mode, c->n_dims, 1e4f);
    if (c->mode >= QN_ROPE_MULTI) rp.sections[0] = 3, rp.sections[1] = 2, rp.sections[2] = 2, rp.sections[3] = 1;
    if (c->yarn) rp.freq_scale = 0.25f, rp.ext_factor = 1.0f, rp.n_ctx_orig = 4096, rp.attn_factor = 0.9f;
    const float eps = 1e-6f;
    if (fused) {
        QT_OK(qn_rms_norm_rope_qkv(enc, qdt, qn_tensor_of(kc), qn_tensor_of(vc), q, k, v, qw, kw, eps, c->w_off, P, ff,
                                   &rp));
    } else {
        QT_OK(qn_rms_norm_rope(enc, qdt, q, qw, eps, c->w_off, P, ff, &rp));
        if (c->kc == QN_Q8_0) {
            QT_OK(qn_rms_norm_rope(enc, qn_tensor_of(tmp), k, kw, eps, c->w_off, P, ff, &rp));
            QT_OK(qn_kv_cache_append(enc, qn_tensor_of(kc), qn_tensor_of(tmp), P));
        } else {
            QT_OK(qn_rms_norm_rope_append(enc, qn_tensor_of(kc), k, kw, eps, c->w_off, P, ff, &rp));
        }
        QT_OK(qn_kv_cache_append(enc, qn_tensor_of(vc), v, P));
    }
    QT_OK(qn_encoder_commit_wait(enc));
    uint8_t *qbytes = qt_read_all(c->in_place ? qkv : qd);
    o->q = c->in_place ? gather(qbytes, c->qt, l.off[0], l.stride[0], d * c->H, n) : gather(qbytes, c->dt, 0, 0, qn, 1);
    o->kc = qt_read_all(kc);
    o->vc = qt_read_all(vc);
    o->kc_bytes = qn_buffer_bytes(kc);
    o->vc_bytes = qn_buffer_bytes(vc);
    free(qbytes);
    free(host);
    qn_buffer *bufs[] = {qkv, qd, kc, vc, tmp, pb, qwb, kwb, ffb};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) qn_buffer_free(bufs[i]);
    qn_encoder_destroy(enc);
}

static void qkv_out_free(qkv_out *o) {
    free(o->q);
    free(o->kc);
    free(o->vc);
}

/* Each cache row of each head is poisoned unless a new token went there. */
static void qkv_check_rows(const qkv_case *c, const uint8_t *cache, qn_dtype t, int64_t cap, const char *what) {
    const size_t row = (size_t)qn_dtype_row_bytes(t, c->d);
    for (int64_t h = 0; h < c->Hkv; h++)
        for (int64_t r = 0; r < cap; r++) {
            bool written = false, poisoned = true;
            for (int64_t tt = 0; tt < c->n; tt++) written |= (c->p0 + tt) % cap == r;
            const uint8_t *p = cache + (size_t)(h * cap + r) * row;
            for (size_t i = 0; i < row; i++) poisoned &= p[i] == 0xFF;
            if (written == poisoned)
                fail_msg("%s: head %lld row %lld: written %d, poisoned %d", what, (long long)h, (long long)r, written,
                         poisoned);
        }
}

/* GPU cache bytes against the CPU's, dequantized: f16 and bf16 within a
 * rounding step of the value, q8_0 within 1.25 quantization steps of its
 * block (a value near a rounding boundary may land a step apart, and d
 * itself may differ in its last bit). */
static void qkv_cache_close(const uint8_t *gpu, const uint8_t *cpu, qn_dtype t, int64_t d, size_t bytes, const char *what) {
    const int64_t nv = (int64_t)(bytes / (size_t)qn_dtype_row_bytes(t, d)) * d;
    float *g = malloc((size_t)nv * sizeof *g), *c = malloc((size_t)nv * sizeof *c);
    QT_OK(qn_dequantize_row(t, gpu, g, nv));
    QT_OK(qn_dequantize_row(t, cpu, c, nv));
    for (int64_t i = 0; i < nv; i++) {
        double lim = tol_of(t) * fmax(fabs(c[i]), 1.0);
        if (t == QN_Q8_0) {
            float amax = 0;
            for (int64_t j = i / 32 * 32; j < i / 32 * 32 + 32; j++) amax = fmaxf(amax, fabsf(c[j]));
            lim = 1.25 * amax / 127 + 1e-6;
        }
        if (isnan(g[i]) != isnan(c[i]) || (!isnan(c[i]) && !(fabs((double)g[i] - c[i]) <= lim)))
            fail_msg("%s: element %lld is %g on the GPU, %g on the CPU", what, (long long)i, (double)g[i],
                     (double)c[i]);
    }
    free(g);
    free(c);
}

static void test_rope_qkv(void **state) {
    (void)state;
    /* d H Hkv n kcap vcap p0 mode n_dims kc vc qt kt vt dt packed in_place weights ff yarn w_off */
    static const qkv_case cases[] = {
        /* Gemma 3 270M decode: f32 projections in one buffer, q in place, weight + 1 */
        {256, 4, 1, 1, 33, 33, 40, QN_ROPE_NEOX, 256, QN_F16, QN_F16, QN_F32, QN_F32, QN_F32, QN_F32, true, true, true, false, false, 1.0f},
        /* its prefill: odd token count, the ring wraps */
        {256, 4, 1, 37, 40, 40, 30, QN_ROPE_NEOX, 256, QN_F16, QN_F16, QN_F32, QN_F32, QN_F32, QN_F32, true, true, true, false, false, 1.0f},
        {128, 8, 2, 7, 8, 8, 5, QN_ROPE_NORMAL, 64, QN_BF16, QN_BF16, QN_F16, QN_BF16, QN_F32, QN_BF16, false, false, true, true, false, 0.0f},
        {64, 6, 3, 9, 9, 12, 0, QN_ROPE_NEOX, 64, QN_F16, QN_BF16, QN_BF16, QN_F16, QN_F16, QN_F32, true, false, false, false, true, 0.0f},
        {96, 3, 3, 5, 6, 7, 3, QN_ROPE_IMULTI, 96, QN_Q8_0, QN_Q8_0, QN_F32, QN_F32, QN_BF16, QN_F16, false, false, true, true, false, 0.0f},
        {256, 16, 8, 33, 40, 64, 20, QN_ROPE_NEOX, 128, QN_Q8_0, QN_F16, QN_F32, QN_F32, QN_F32, QN_F32, true, true, true, false, true, 1.0f},
        {80, 2, 1, 3, 100, 100, 98, QN_ROPE_NEOX, 80, QN_BF16, QN_F16, QN_F16, QN_F32, QN_BF16, QN_F16, false, true, true, true, false, 0.0f},
        {128, 32, 4, 1, 1000, 1000, 999, QN_ROPE_MULTI, 128, QN_F16, QN_Q8_0, QN_BF16, QN_BF16, QN_F32, QN_F32, true, false, false, true, false, 0.0f},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        qkv_case c = cases[ci];
        if (c.in_place) c.dt = c.qt;
        const int64_t d = c.d, n = c.n;
        qkv_in in = {rand_vals(c.qt, (size_t)(d * c.H * n), -3, 3), rand_vals(c.kt, (size_t)(d * c.Hkv * n), -3, 3),
                     rand_vals(c.vt, (size_t)(d * c.Hkv * n), -3, 3), rand_vals(QN_F32, (size_t)d, -1.5f, 1.5f),
                     rand_vals(QN_BF16, (size_t)d, -1.5f, 1.5f), rand_vals(QN_F32, (size_t)(c.n_dims / 2), 0.5f, 4.0f),
                     malloc((size_t)(4 * n) * sizeof(int32_t))};
        for (int64_t t = 0; t < 4 * n; t++) in.pos[t] = t < n ? c.p0 + (int32_t)t : (int32_t)(qt_rand() % 1000);
        char what[160];
        snprintf(what, sizeof what, "rms_norm_rope_qkv case %zu (head %lld, %lld/%lld heads, %lld tokens, %s/%s caches)",
                 ci, (long long)d, (long long)c.H, (long long)c.Hkv, (long long)n, qn_dtype_name(c.kc),
                 qn_dtype_name(c.vc));
        qn_device *devs[2] = {qt_device(), qt_cpu()};
        qkv_out res[2];
        for (int di = 0; di < (qt_on_gpu() ? 2 : 1); di++) {
            qkv_out sep;
            qkv_run(devs[di], &c, &in, true, &res[di]);
            qkv_run(devs[di], &c, &in, false, &sep);
            if (memcmp(res[di].q, sep.q, (size_t)(d * c.H * n) * sizeof(float)) != 0)
                fail_msg("%s on %s: q_dst differs from qn_rms_norm_rope's", what, di ? "the CPU" : "the device");
            if (memcmp(res[di].kc, sep.kc, sep.kc_bytes) != 0)
                fail_msg("%s on %s: the K cache differs from the separate ops'", what, di ? "the CPU" : "the device");
            if (memcmp(res[di].vc, sep.vc, sep.vc_bytes) != 0)
                fail_msg("%s on %s: the V cache differs from qn_kv_cache_append's", what, di ? "the CPU" : "the device");
            for (int64_t i = 0; i < d * c.H * n; i++)
                if (isnan(res[di].q[i])) fail_msg("%s: q_dst element %lld is NaN", what, (long long)i);
            qkv_check_rows(&c, res[di].kc, c.kc, c.kcap, what);
            qkv_check_rows(&c, res[di].vc, c.vc, c.vcap, what);
            qkv_out_free(&sep);
        }
        if (qt_on_gpu()) {
            const int64_t nq = d * c.H * n;
            double *want = malloc((size_t)nq * sizeof *want);
            for (int64_t i = 0; i < nq; i++) want[i] = res[1].q[i];
            char w2[200];
            snprintf(w2, sizeof w2, "%s: q_dst (GPU vs CPU)", what);
            expect_close(res[0].q, want, (size_t)nq, fmax(tol_of(c.dt), 3e-3), w2);
            snprintf(w2, sizeof w2, "%s: K cache (GPU vs CPU)", what);
            qkv_cache_close(res[0].kc, res[1].kc, c.kc, d, res[1].kc_bytes, w2);
            if (memcmp(res[0].vc, res[1].vc, res[1].vc_bytes) != 0)
                fail_msg("%s: the V cache differs between the GPU and the CPU", what);
            free(want);
            qkv_out_free(&res[1]);
        }
        qkv_out_free(&res[0]);
        free(in.q), free(in.k), free(in.v), free(in.qw), free(in.kw), free(in.ff), free(in.pos);
    }
}

static void test_rope_qkv_errors(void **state) {
    (void)state;
    qn_device *dev = qt_device();
    qn_encoder *enc = new_encoder(dev);
    int64_t qne[3] = {64, 4, 3}, kne[3] = {64, 2, 3}, cne[3] = {64, 8, 2}, wne[1] = {64};
    qn_buffer *qb = upload(dev, QN_F32, 3, qne, (float[768]){0}), *kb = upload(dev, QN_F32, 3, kne, (float[384]){0});
    qn_buffer *kc = qt_poisoned(dev, QN_F16, 3, cne), *vc = qt_poisoned(dev, QN_Q8_0, 3, cne);
    qn_buffer *wb = upload(dev, QN_F32, 1, wne, (float[64]){0}), *pb = upload_i32(dev, 3, (int32_t[3]){5, 6, 7});
    qn_buffer *big = qt_poisoned(dev, QN_Q8_0, 3, (int64_t[]){544, 4, 1}), *bigx;
    QT_OK(qn_buffer_alloc(dev, QN_F32, 1, (int64_t[]){544 * 3}, &bigx));
    qn_tensor Q = qn_tensor_of(qb), K = qn_tensor_of(kb), KC = qn_tensor_of(kc), VC = qn_tensor_of(vc),
              W = qn_tensor_of(wb), P = qn_tensor_of(pb), N = QN_TENSOR_NONE;
    qn_rope_params rp = qn_rope_params_default(QN_ROPE_NEOX, 64, 1e4f);
    QT_FAILS(qn_rms_norm_rope_qkv(enc, Q, KC, VC, Q, K, K, W, W, 1e-6f, 0, P, N, NULL), QN_ERR_INVALID_ARGUMENT,
             "qn_rms_norm_rope_qkv: params is NULL");
    QT_FAILS(qn_rms_norm_rope_qkv(enc, qn_tensor_make(qb, 0, QN_F32, 64, 4, 2, 1), KC, VC, Q, K, K, W, W, 1e-6f, 0, P,
                                  N, &rp),
             QN_ERR_INVALID_ARGUMENT, "q_dst [64,4,2,1] and q [64,4,3,1] differ");
    QT_FAILS(qn_rms_norm_rope_qkv(enc, Q, KC, VC, Q, qn_tensor_make(kb, 0, QN_F32, 64, 3, 2, 1), K, W, W, 1e-6f, 0, P,
                                  N, &rp),
             QN_ERR_INVALID_ARGUMENT, "k [64,3,2] does not fit k_cache [64,8,2]");
    QT_FAILS(qn_rms_norm_rope_qkv(enc, Q, qn_tensor_make(kc, 0, QN_F16, 64, 2, 2, 1), VC, Q, K, K, W, W, 1e-6f, 0, P,
                                  N, &rp),
             QN_ERR_INVALID_ARGUMENT, "k [64,2,3] does not fit k_cache [64,2,2]");
    QT_FAILS(qn_rms_norm_rope_qkv(enc, Q, KC, VC, Q, K, K, qn_tensor_make(wb, 0, QN_F32, 32, 1, 1, 1), W, 1e-6f, 0, P,
                                  N, &rp),
             QN_ERR_INVALID_ARGUMENT, "q_w is [32,1,1,1], expected [64]");
    QT_FAILS(qn_rms_norm_rope_qkv(enc, Q, KC, VC, Q, K, K, W, P, 1e-6f, 0, P, N, &rp), QN_ERR_INVALID_ARGUMENT,
             "k_w is i32");
    QT_FAILS(qn_rms_norm_rope_qkv(enc, Q, KC, VC, Q, K, K, W, W, -1.0f, 0, P, N, &rp), QN_ERR_INVALID_ARGUMENT, "eps -1");
    QT_FAILS(qn_rms_norm_rope_qkv(enc, Q, KC, VC, Q, K, K, W, W, 1e-6f, 0, qn_tensor_make(pb, 0, QN_I32, 2, 1, 1, 1), N,
                                  &rp),
             QN_ERR_INVALID_ARGUMENT, "pos is [2,1,1,1], expected [3,1]");
    QT_FAILS(qn_rms_norm_rope_qkv(enc, Q, KC, VC, Q, K, K, W, W, 1e-6f, 0, P, W, &rp), QN_ERR_INVALID_ARGUMENT,
             "freq_factors is [64,1,1,1], expected [32]");
    qn_tensor q3 = qn_tensor_make(qb, 0, QN_F32, 64, 3, 3, 1);
    QT_FAILS(qn_rms_norm_rope_qkv(enc, q3, KC, VC, q3, K, K, W, W, 1e-6f, 0, P, N, &rp), QN_ERR_INVALID_ARGUMENT,
             "3 q heads for 2 kv heads (expected a multiple");
    qn_tensor q32 = qn_tensor_make(qb, 0, QN_F32, 32, 4, 3, 1);
    qn_rope_params r32 = qn_rope_params_default(QN_ROPE_NEOX, 32, 1e4f);
    QT_FAILS(qn_rms_norm_rope_qkv(enc, q32, KC, VC, q32, K, K, N, N, 1e-6f, 0, P, N, &r32), QN_ERR_INVALID_ARGUMENT,
             "q head_dim 32 and k head_dim 64 differ");
    QT_FAILS(qn_rms_norm_rope_qkv(enc, Q, KC, VC, Q, K, Q, W, W, 1e-6f, 0, P, N, &rp), QN_ERR_INVALID_ARGUMENT,
             "v [64,4,3,1] and k [64,2,3,1] differ");
    QT_FAILS(qn_rms_norm_rope_qkv(enc, Q, KC, VC, Q, K, qn_tensor_of(vc), W, W, 1e-6f, 0, P, N, &rp),
             QN_ERR_INVALID_ARGUMENT, "v is q8_0 (expected f32, f16 or bf16)");
    QT_FAILS(qn_rms_norm_rope_qkv(enc, Q, KC, Q, Q, K, K, W, W, 1e-6f, 0, P, N, &rp), QN_ERR_INVALID_ARGUMENT,
             "v_cache is f32 (expected f16, bf16 or q8_0)");
    QT_FAILS(qn_rms_norm_rope_qkv(enc, Q, KC, qn_tensor_make(vc, 0, QN_Q8_0, 64, 2, 2, 1), Q, K, K, W, W, 1e-6f, 0, P,
                                  N, &rp),
             QN_ERR_INVALID_ARGUMENT, "v [64,2,3] does not fit v_cache [64,2,2]");
    /* a q8_0 key row longer than the kernels' row buffer */
    qn_tensor bq = qn_tensor_make(bigx, 0, QN_F32, 544, 2, 1, 1), bk = qn_tensor_make(bigx, 544 * 8, QN_F32, 544, 1, 1, 1);
    QT_FAILS(qn_rms_norm_rope_qkv(enc, bq, qn_tensor_of(big), qn_tensor_of(big), bq, bk, bk, N, N, 1e-6f, 0,
                                  qn_tensor_make(pb, 0, QN_I32, 1, 1, 1, 1), N, &rp),
             QN_ERR_INVALID_ARGUMENT, "head_dim 544 is over 512 for a q8_0 k_cache");
    /* nothing ran: the caches keep their poison */
    QT_OK(qn_encoder_commit_wait(enc));
    qn_buffer *poisoned[] = {kc, vc, big};
    for (int b = 0; b < 3; b++) {
        uint8_t *p = qt_read_all(poisoned[b]);
        for (size_t i = 0; i < qn_buffer_bytes(poisoned[b]); i++) assert_int_equal(p[i], 0xFF);
        free(p);
    }
    qn_buffer *bufs[] = {qb, kb, kc, vc, wb, pb, big, bigx};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) qn_buffer_free(bufs[i]);
    qn_encoder_destroy(enc);
}

/* ---- activations */

typedef struct {
    int kind; /* 0 unary, 1 softcap, 2 glu, 3 glu_fused */
    qn_act act;
    float cap;
    qn_dtype dt, xt;
    int64_t ne[2];
    float *x, *u; /* fused: x is [2 ne0, ne1] */
} act_case;

static float *act_run(qn_device *dev, const void *p) {
    const act_case *c = p;
    qn_encoder *enc = new_encoder(dev);
    int64_t n = c->ne[0] * c->ne[1], xne[2] = {c->kind == 3 ? 2 * c->ne[0] : c->ne[0], c->ne[1]};
    qn_buffer *xb = upload(dev, c->xt, 2, xne, c->x), *d = qt_poisoned(dev, c->dt, 2, c->ne);
    qn_buffer *ub = c->kind == 2 ? upload(dev, c->xt, 2, c->ne, c->u) : NULL;
    if (c->kind == 0) QT_OK(qn_unary(enc, qn_tensor_of(d), qn_tensor_of(xb), c->act));
    if (c->kind == 1) QT_OK(qn_softcap(enc, qn_tensor_of(d), qn_tensor_of(xb), c->cap));
    if (c->kind == 2) QT_OK(qn_glu(enc, qn_tensor_of(d), qn_tensor_of(xb), qn_tensor_of(ub), c->act));
    if (c->kind == 3) QT_OK(qn_glu_fused(enc, qn_tensor_of(d), qn_tensor_of(xb), c->act));
    QT_OK(qn_encoder_commit_wait(enc));
    float *out = download(d, (size_t)n);
    qn_buffer_free(xb);
    qn_buffer_free(d);
    qn_buffer_free(ub);
    qn_encoder_destroy(enc);
    return out;
}

static double ref_act(qn_act act, double x) {
    switch (act) {
    case QN_ACT_SILU: return x / (1 + exp(-x));
    case QN_ACT_GELU_TANH: return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
    case QN_ACT_GELU_ERF: return 0.5 * x * (1 + erf(x / sqrt(2)));
    default: return 1 / (1 + exp(-x));
    }
}

static void test_activations(void **state) {
    (void)state;
    for (int kind = 0; kind < 4; kind++)
        for (int act = QN_ACT_SILU; act <= QN_ACT_SIGMOID; act++)
            for (int t = 0; t < 3; t++) {
                if (kind == 1 && act > 0) continue;
                act_case c = {kind, (qn_act)act, 30.0f, FLOATS[t], FLOATS[(t + act) % 3], {37 + 64 * act, 3}, NULL, NULL};
                int64_t n = c.ne[0] * c.ne[1], xn = kind == 3 ? 2 * n : n;
                float range = kind == 1 ? 90.0f : 8.0f;
                c.x = rand_vals(c.xt, (size_t)xn, -range, range);
                c.u = rand_vals(c.xt, (size_t)n, -3, 3);
                double *want = malloc((size_t)n * sizeof *want);
                for (int64_t r = 0; r < c.ne[1]; r++)
                    for (int64_t i = 0; i < c.ne[0]; i++) {
                        int64_t j = r * c.ne[0] + i;
                        if (kind == 0) want[j] = ref_act(c.act, c.x[j]);
                        if (kind == 1) want[j] = c.cap * tanh(c.x[j] / c.cap);
                        if (kind == 2) want[j] = ref_act(c.act, c.x[j]) * c.u[j];
                        if (kind == 3) want[j] = ref_act(c.act, c.x[r * 2 * c.ne[0] + i]) * c.x[r * 2 * c.ne[0] + c.ne[0] + i];
                    }
                char what[128];
                snprintf(what, sizeof what, "activation kind %d act %d %s<-%s", kind, act, qn_dtype_name(c.dt),
                         qn_dtype_name(c.xt));
                /* f32 transcendentals: a few ulps; near the zero of gelu, relative to the row */
                verify(act_run, &c, want, (size_t)n, fmax(tol_of(c.dt), 1e-5), what);
                free(want);
                free(c.x);
                free(c.u);
            }
}

/* ---- softmax */

typedef struct {
    qn_dtype dt, xt, mt;
    int64_t ne[3];
    int mask_rows; /* 0: no mask; else the mask is [ne0, ne1, 1] (broadcast over ne2) */
    float scale;
    float *x, *m;
} softmax_case;

static float *softmax_run(qn_device *dev, const void *p) {
    const softmax_case *c = p;
    qn_encoder *enc = new_encoder(dev);
    int64_t n = c->ne[0] * c->ne[1] * c->ne[2];
    qn_buffer *xb = upload(dev, c->xt, 3, c->ne, c->x), *d = qt_poisoned(dev, c->dt, 3, c->ne), *mb = NULL;
    if (c->mask_rows) mb = upload(dev, c->mt, 2, c->ne, c->m);
    QT_OK(qn_softmax(enc, qn_tensor_of(d), qn_tensor_of(xb), mb ? qn_tensor_of(mb) : QN_TENSOR_NONE, c->scale));
    QT_OK(qn_encoder_commit_wait(enc));
    float *out = download(d, (size_t)n);
    qn_buffer_free(xb);
    qn_buffer_free(d);
    qn_buffer_free(mb);
    qn_encoder_destroy(enc);
    return out;
}

static void test_softmax(void **state) {
    (void)state;
    const int64_t sizes[4] = {1, 37, 1000, 5001};
    for (int s = 0; s < 4; s++)
        for (int t = 0; t < 3; t++) {
            softmax_case c = {FLOATS[t], FLOATS[(t + s) % 3], t == 1 ? QN_F16 : QN_F32, {sizes[s], 4, 3}, s % 2 == 0 || t == 2,
                              0.7f, NULL, NULL};
            int64_t n0 = c.ne[0], n = n0 * c.ne[1] * c.ne[2];
            c.x = rand_vals(c.xt, (size_t)n, -6, 6);
            c.m = rand_vals(c.mt, (size_t)(n0 * c.ne[1]), -2, 2);
            for (int64_t i = 0; i < n0 * c.ne[1]; i += 3) c.m[i] = -INFINITY;
            for (int64_t i = 0; i < n0; i++) c.m[n0 + i] = -INFINITY; /* row 1 fully masked */
            double *want = malloc((size_t)n * sizeof *want);
            for (int64_t r = 0; r < c.ne[1] * c.ne[2]; r++) {
                const float *mrow = c.mask_rows ? c.m + (r % c.ne[1]) * n0 : NULL;
                double mx = -INFINITY, sum = 0;
                for (int64_t i = 0; i < n0; i++) mx = fmax(mx, (double)c.x[r * n0 + i] * c.scale + (mrow ? mrow[i] : 0));
                for (int64_t i = 0; i < n0; i++) {
                    double z = (double)c.x[r * n0 + i] * c.scale + (mrow ? mrow[i] : 0);
                    want[r * n0 + i] = mx == -INFINITY ? 0 : exp(z - mx);
                    sum += want[r * n0 + i];
                }
                for (int64_t i = 0; i < n0; i++) want[r * n0 + i] = mx == -INFINITY ? 0 : want[r * n0 + i] / sum;
            }
            char what[128];
            snprintf(what, sizeof what, "softmax %s<-%s [%lld] mask %s", qn_dtype_name(c.dt), qn_dtype_name(c.xt),
                     (long long)n0, c.mask_rows ? qn_dtype_name(c.mt) : "none");
            verify(softmax_run, &c, want, (size_t)n, fmax(tol_of(c.dt), 1e-4), what);
            free(want);
            free(c.x);
            free(c.m);
        }
}

/* ---- embedding */

typedef struct {
    qn_dtype dt, tt;
    int64_t n, vocab, nids;
    const void *table; /* host bytes of the table */
    const int32_t *ids;
    float scale;
} embed_case;

static float *embed_run(qn_device *dev, const void *p) {
    const embed_case *c = p;
    qn_encoder *enc = new_encoder(dev);
    int64_t tne[2] = {c->n, c->vocab}, dne[2] = {c->n, c->nids};
    qn_buffer *tb, *d = qt_poisoned(dev, c->dt, 2, dne), *ib = upload_i32(dev, c->nids, c->ids);
    QT_OK(qn_buffer_alloc(dev, c->tt, 2, tne, &tb));
    QT_OK(qn_buffer_write(tb, 0, c->table, qn_buffer_bytes(tb)));
    QT_OK(qn_embed(enc, qn_tensor_of(d), qn_tensor_of(tb), qn_tensor_of(ib), c->scale));
    QT_OK(qn_encoder_commit_wait(enc));
    float *out = download(d, (size_t)(c->n * c->nids));
    qn_buffer_free(tb);
    qn_buffer_free(d);
    qn_buffer_free(ib);
    qn_encoder_destroy(enc);
    return out;
}

/* Every table type: floats converted here; quantized tables made by the
 * host quantizer and read back by the host dequantizer (both checked
 * against ggml's bytes and the gguf package in the formats tests). The GPU
 * must give the CPU's bits. */
static void test_embed(void **state) {
    (void)state;
    const qn_dtype types[] = {QN_F32,  QN_F16,  QN_BF16, QN_Q4_0, QN_Q4_1, QN_Q5_0,   QN_Q5_1,   QN_Q8_0, QN_Q8_1,
                              QN_Q2_K, QN_Q3_K, QN_Q4_K, QN_Q5_K, QN_Q6_K, QN_IQ4_NL, QN_IQ4_XS, QN_MXFP4};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        qn_dtype tt = types[k];
        embed_case c = {FLOATS[k % 3], tt, qn_dtype_block_elems(tt) == 256 ? 512 : 96, 37, 9, NULL, NULL,
                        k % 2 ? 25.3f : 1.0f};
        size_t row_bytes = (size_t)qn_dtype_row_bytes(tt, c.n);
        unsigned char *table = malloc(row_bytes * (size_t)c.vocab);
        float *vals = rand_vals(QN_F32, (size_t)(c.n * c.vocab), -1, 1), *row = malloc((size_t)c.n * sizeof *row);
        QT_OK(qn_quantize_row(tt, vals, table, c.n * c.vocab));
        int32_t ids[9] = {5, 0, 36, -1, 5, 37, 12, 2147483647, 20};
        c.table = table;
        c.ids = ids;
        double *want = malloc((size_t)(c.n * c.nids) * sizeof *want);
        for (int i = 0; i < 9; i++) {
            bool ok = ids[i] >= 0 && ids[i] < c.vocab;
            if (ok) QT_OK(qn_dequantize_row(tt, table + (size_t)ids[i] * row_bytes, row, c.n));
            for (int64_t j = 0; j < c.n; j++) want[i * c.n + j] = ok ? round_to(c.dt, row[j] * c.scale) : 0.0;
        }
        char what[96];
        snprintf(what, sizeof what, "embed %s table -> %s", qn_dtype_name(tt), qn_dtype_name(c.dt));
        float *got = embed_run(qt_device(), &c);
        for (int64_t j = 0; j < c.n * c.nids; j++)
            if (got[j] != (float)want[j]) fail_msg("%s: element %lld is %g, expected %g", what, (long long)j, (double)got[j], want[j]);
        free(got);
        free(want);
        free(table);
        free(vals);
        free(row);
    }
}

/* ---- mixture-of-experts routing */

typedef struct {
    qn_moe_route_params p;
    int64_t n, tokens;
    float *logits, *bias, *escale;
    bool has_bias, has_escale;
} route_case;

/* ids (as floats), then weights */
static float *route_run(qn_device *dev, const void *pp) {
    const route_case *c = pp;
    qn_encoder *enc = new_encoder(dev);
    int64_t lne[2] = {c->n, c->tokens}, one[1] = {c->n}, k = c->p.top_k, out_ne[2] = {k, c->tokens};
    qn_buffer *lb = upload(dev, QN_F32, 2, lne, c->logits);
    qn_buffer *bb = c->has_bias ? upload(dev, QN_F32, 1, one, c->bias) : NULL;
    qn_buffer *sb = c->has_escale ? upload(dev, QN_F32, 1, one, c->escale) : NULL;
    qn_buffer *ib = qt_poisoned(dev, QN_I32, 2, out_ne), *wb = qt_poisoned(dev, QN_F32, 2, out_ne);
    QT_OK(qn_moe_route(enc, qn_tensor_of(ib), qn_tensor_of(wb), qn_tensor_of(lb), bb ? qn_tensor_of(bb) : QN_TENSOR_NONE,
                       sb ? qn_tensor_of(sb) : QN_TENSOR_NONE, &c->p));
    QT_OK(qn_encoder_commit_wait(enc));
    size_t m = (size_t)(k * c->tokens);
    int32_t *ids = qt_read_all(ib);
    float *w = qt_read_all(wb), *out = malloc(2 * m * sizeof *out);
    for (size_t i = 0; i < m; i++) out[i] = (float)ids[i], out[m + i] = w[i];
    free(ids);
    free(w);
    qn_buffer_free(lb);
    qn_buffer_free(bb);
    qn_buffer_free(sb);
    qn_buffer_free(ib);
    qn_buffer_free(wb);
    qn_encoder_destroy(enc);
    return out;
}

/* The reference selects in double. Scores that differ by less than f32
 * rounding (1e-6) can rank either way in the op's f32 arithmetic, so among
 * such near-ties the reference follows the op's choice; ids are otherwise
 * exact, and the weights are checked for the experts the op chose. */
static void route_check(const route_case *c, int g, const float *got, const char *what) {
    const int64_t n = c->n, T = c->tokens;
    const int top_k = c->p.top_k;
    const size_t m = (size_t)(top_k * T);
    double *p = malloc((size_t)n * sizeof *p), *sel = malloc((size_t)n * sizeof *sel);
    for (int64_t t = 0; t < T; t++) {
        const float *l = c->logits + t * n;
        double mx = -INFINITY, sum = 0, wsum = 0, w[64];
        for (int64_t i = 0; i < n; i++) mx = fmax(mx, l[i]);
        for (int64_t i = 0; i < n; i++) {
            p[i] = g == QN_MOE_SOFTMAX ? exp(l[i] - mx) : g == QN_MOE_SIGMOID ? 1 / (1 + exp(-(double)l[i])) : l[i];
            sum += p[i];
        }
        for (int64_t i = 0; i < n; i++) {
            if (g == QN_MOE_SOFTMAX) p[i] /= sum;
            sel[i] = p[i] + (c->has_bias ? c->bias[i] : 0);
        }
        int64_t ids[64];
        for (int k = 0; k < top_k; k++) {
            int64_t best = -1, op = (int64_t)got[t * top_k + k];
            for (int64_t i = 0; i < n; i++)
                if (sel[i] != -INFINITY && (best < 0 || sel[i] > sel[best])) best = i;
            if (op != best && op >= 0 && op < n && sel[op] != -INFINITY && fabs(sel[op] - sel[best]) < 1e-6) best = op;
            if (op != best)
                fail_msg("%s: token %lld slot %d is expert %lld (score %.9g), expected %lld (score %.9g)", what,
                         (long long)t, k, (long long)op, op >= 0 && op < n ? sel[op] : 0.0, (long long)best, sel[best]);
            ids[k] = best;
            w[k] = p[best];
            sel[best] = -INFINITY;
        }
        if (g == QN_MOE_SOFTMAX_TOPK) {
            double s = 0, m0 = w[0];
            for (int k = 0; k < top_k; k++) s += w[k] = exp(w[k] - m0);
            for (int k = 0; k < top_k; k++) w[k] /= s;
        }
        for (int k = 0; k < top_k; k++) wsum += w[k];
        double want[64];
        for (int k = 0; k < top_k; k++) {
            double v = w[k];
            if (c->p.normalize) v /= fmax(wsum, 6.103515625e-5);
            v *= c->p.scale;
            if (c->has_escale) v *= c->escale[ids[k]];
            want[k] = v;
        }
        expect_close(got + m + t * top_k, want, (size_t)top_k, 2e-5, what);
    }
    free(p);
    free(sel);
}

static void test_moe_route(void **state) {
    (void)state;
    const int64_t experts[4] = {8, 60, 128, 1024};
    for (int g = QN_MOE_SOFTMAX; g <= QN_MOE_SOFTMAX_TOPK; g++)
        for (int e = 0; e < 4; e++) {
            int top_k = e == 0 ? 2 : e == 3 ? 64 : 8;
            route_case c = {{top_k, (qn_moe_gating)g, e % 2 == 0, e == 2 ? 2.5f : 1.0f}, experts[e], 37, NULL, NULL,
                            NULL, g == QN_MOE_SIGMOID || e == 1, e == 3};
            c.logits = rand_vals(QN_F32, (size_t)(c.n * c.tokens), -4, 4);
            c.bias = rand_vals(QN_F32, (size_t)c.n, -0.5f, 0.5f);
            c.escale = rand_vals(QN_F32, (size_t)c.n, 0.5f, 2.0f);
            char what[96];
            snprintf(what, sizeof what, "moe_route gating %d, %lld experts, top %d", g, (long long)c.n, top_k);
            /* the device under test, and on a GPU the CPU too */
            for (int dv = 0; dv < (qt_on_gpu() ? 2 : 1); dv++) {
                float *got = route_run(dv ? qt_cpu() : qt_device(), &c);
                route_check(&c, g, got, what);
                free(got);
            }
            free(c.logits);
            free(c.bias);
            free(c.escale);
        }
}

typedef struct {
    qn_dtype dt, et;
    int64_t n, k, tokens;
    bool shared, gate;
    float *ex, *w, *sh, *g;
} combine_case;

static float *combine_run(qn_device *dev, const void *pp) {
    const combine_case *c = pp;
    qn_encoder *enc = new_encoder(dev);
    int64_t ene[3] = {c->n, c->k, c->tokens}, wne[2] = {c->k, c->tokens}, dne[2] = {c->n, c->tokens},
            gne[2] = {1, c->tokens};
    qn_buffer *eb = upload(dev, c->et, 3, ene, c->ex), *wb = upload(dev, QN_F32, 2, wne, c->w);
    qn_buffer *sb = c->shared ? upload(dev, c->et, 2, dne, c->sh) : NULL, *gb = c->gate ? upload(dev, QN_F32, 2, gne, c->g) : NULL;
    qn_buffer *d = qt_poisoned(dev, c->dt, 2, dne);
    QT_OK(qn_moe_combine(enc, qn_tensor_of(d), qn_tensor_of(eb), qn_tensor_of(wb), sb ? qn_tensor_of(sb) : QN_TENSOR_NONE,
                         gb ? qn_tensor_of(gb) : QN_TENSOR_NONE));
    QT_OK(qn_encoder_commit_wait(enc));
    float *out = download(d, (size_t)(c->n * c->tokens));
    qn_buffer_free(eb);
    qn_buffer_free(wb);
    qn_buffer_free(sb);
    qn_buffer_free(gb);
    qn_buffer_free(d);
    qn_encoder_destroy(enc);
    return out;
}

static void test_moe_combine(void **state) {
    (void)state;
    for (int t = 0; t < 3; t++)
        for (int s = 0; s < 3; s++) {
            combine_case c = {FLOATS[t], FLOATS[(t + s) % 3], 301, 1 + 3 * s, 7, s > 0, s == 2, NULL, NULL, NULL, NULL};
            int64_t n = c.n, K = c.k, T = c.tokens;
            c.ex = rand_vals(c.et, (size_t)(n * K * T), -2, 2);
            c.w = rand_vals(QN_F32, (size_t)(K * T), 0, 1);
            c.sh = rand_vals(c.et, (size_t)(n * T), -2, 2);
            c.g = rand_vals(QN_F32, (size_t)T, -3, 3);
            double *want = malloc((size_t)(n * T) * sizeof *want);
            for (int64_t tk = 0; tk < T; tk++)
                for (int64_t i = 0; i < n; i++) {
                    double v = 0;
                    for (int64_t k = 0; k < K; k++) v += (double)c.w[tk * K + k] * c.ex[(tk * K + k) * n + i];
                    if (c.shared) v += (c.gate ? 1 / (1 + exp(-(double)c.g[tk])) : 1.0) * c.sh[tk * n + i];
                    want[tk * n + i] = v;
                }
            char what[96];
            snprintf(what, sizeof what, "moe_combine %s<-%s top %lld shared %d gate %d", qn_dtype_name(c.dt),
                     qn_dtype_name(c.et), (long long)K, c.shared, c.gate);
            verify(combine_run, &c, want, (size_t)(n * T), fmax(tol_of(c.dt), 1e-5), what);
            free(want);
            free(c.ex);
            free(c.w);
            free(c.sh);
            free(c.g);
        }
}

/* ---- errors: status, message, and nothing enqueued */

static void test_errors(void **state) {
    (void)state;
    qn_device *dev = qt_device();
    qn_encoder *enc = new_encoder(dev);
    int64_t ne[2] = {64, 4}, ne1[1] = {96}, ne33[1] = {33}, four[1] = {4};
    qn_buffer *x = upload(dev, QN_F32, 2, ne, (float[256]){0}), *d = qt_poisoned(dev, QN_F32, 2, ne);
    qn_buffer *w = upload(dev, QN_F32, 1, ne33, (float[33]){0}), *i32 = qt_poisoned(dev, QN_I32, 1, four);
    qn_buffer *q8;
    QT_OK(qn_buffer_alloc(dev, QN_Q8_0, 1, ne1, &q8));
    qn_tensor X = qn_tensor_of(x), D = qn_tensor_of(d), W = qn_tensor_of(w), I = qn_tensor_of(i32), N = QN_TENSOR_NONE;
    QT_FAILS(qn_rms_norm(enc, D, X, W, 1e-6f, 0), QN_ERR_INVALID_ARGUMENT, "qn_rms_norm: w is [33,1,1,1], expected [64]");
    QT_FAILS(qn_rms_norm(enc, D, X, N, -1.0f, 0), QN_ERR_INVALID_ARGUMENT, "eps -1");
    QT_FAILS(qn_rms_norm(enc, D, qn_tensor_of(i32), N, 1e-6f, 0), QN_ERR_INVALID_ARGUMENT, "x is i32");
    QT_FAILS(qn_add_rms_norm(enc, X, X, X, X, N, 1e-6f, 0), QN_ERR_INVALID_ARGUMENT, "dst must not overlap sum");
    QT_FAILS(qn_norm_add_rms_norm(enc, D, X, X, X, N, N, 1e-6f, 0), QN_ERR_INVALID_ARGUMENT, "b_w is missing");
    QT_FAILS(qn_norm_add_rms_norm(enc, D, X, X, X, W, N, 1e-6f, 0), QN_ERR_INVALID_ARGUMENT, "b_w is [33,1,1,1], expected [64]");
    QT_FAILS(qn_layer_norm(enc, D, X, N, W, 1e-6f), QN_ERR_INVALID_ARGUMENT, "b is [33");
    {
        int64_t cne[3] = {64, 4, 4}, q8ne[3] = {64, 8, 4};
        qn_buffer *c16 = qt_poisoned(dev, QN_F16, 3, cne), *c8 = qt_poisoned(dev, QN_Q8_0, 3, q8ne);
        qn_rope_params np = qn_rope_params_default(QN_ROPE_NEOX, 64, 1e4f);
        qn_tensor x3 = qn_tensor_make(x, 0, QN_F32, 64, 4, 1, 1), pos1 = qn_tensor_make(i32, 0, QN_I32, 1, 1, 1, 1);
        QT_FAILS(qn_rms_norm_rope_append(enc, qn_tensor_of(c8), x3, N, 1e-6f, 0, pos1, N, &np), QN_ERR_INVALID_ARGUMENT,
                 "cache is q8_0");
        qn_tensor x5 = qn_tensor_make(x, 0, QN_F32, 64, 2, 2, 1);
        QT_FAILS(qn_rms_norm_rope_append(enc, qn_tensor_of(c16), x5, N, 1e-6f, 0, pos1, N, &np), QN_ERR_INVALID_ARGUMENT,
                 "does not fit cache");
        qn_buffer_free(c16);
        qn_buffer_free(c8);
    }
    qn_rope_params rp = qn_rope_params_default(QN_ROPE_NEOX, 65, 1e4f);
    QT_FAILS(qn_rope(enc, D, X, I, N, &rp), QN_ERR_INVALID_ARGUMENT, "n_dims 65");
    rp.n_dims = 64;
    QT_FAILS(qn_rope(enc, D, X, I, N, NULL), QN_ERR_INVALID_ARGUMENT, "params is NULL");
    QT_FAILS(qn_rope(enc, D, X, X, N, &rp), QN_ERR_INVALID_ARGUMENT, "pos is f32 (expected i32)");
    QT_FAILS(qn_rope(enc, D, X, qn_tensor_make(i32, 0, QN_I32, 3, 1, 1, 1), N, &rp), QN_ERR_INVALID_ARGUMENT,
             "pos is [3,1,1,1], expected [1,1]");
    rp.mode = QN_ROPE_MULTI;
    QT_FAILS(qn_rope(enc, D, X, I, N, &rp), QN_ERR_INVALID_ARGUMENT, "sections are all zero");
    rp = qn_rope_params_default(QN_ROPE_NORMAL, 64, 1e4f);
    rp.ext_factor = 1;
    QT_FAILS(qn_rope(enc, D, X, I, N, &rp), QN_ERR_INVALID_ARGUMENT, "needs n_ctx_orig > 0");
    rp = qn_rope_params_default(QN_ROPE_VISION, 16, 1e4f);
    QT_FAILS(qn_rope(enc, D, X, I, N, &rp), QN_ERR_INVALID_ARGUMENT, "VISION rotates head_dim = 2 * n_dims");
    QT_FAILS(qn_unary(enc, D, X, (qn_act)9), QN_ERR_INVALID_ARGUMENT, "act 9 is not a qn_act");
    QT_FAILS(qn_softcap(enc, D, X, 0.0f), QN_ERR_INVALID_ARGUMENT, "cap 0");
    QT_FAILS(qn_glu_fused(enc, D, X, QN_ACT_SILU), QN_ERR_INVALID_ARGUMENT, "with ne[0] doubled");
    QT_FAILS(qn_softmax(enc, D, X, I, 1.0f), QN_ERR_INVALID_ARGUMENT, "mask is i32 (expected f32 or f16)");
    QT_FAILS(qn_softmax(enc, D, X, W, 1.0f), QN_ERR_INVALID_ARGUMENT, "mask ne[0] = 33");
    QT_FAILS(qn_embed(enc, D, qn_tensor_of(q8), I, 1.0f), QN_ERR_INVALID_ARGUMENT, "dst rows have 64 elements, table rows 96");
    QT_FAILS(qn_embed(enc, qn_tensor_make(d, 0, QN_F32, 64, 4, 1, 1), X, X, 1.0f), QN_ERR_INVALID_ARGUMENT,
             "ids is f32 (expected i32)");
    qn_moe_route_params mp = {9, QN_MOE_SOFTMAX, true, 1.0f};
    QT_FAILS(qn_moe_route(enc, I, D, qn_tensor_make(x, 0, QN_F32, 8, 4, 1, 1), N, N, &mp), QN_ERR_INVALID_ARGUMENT,
             "top_k 9 not in 1..8");
    mp.top_k = 2;
    QT_FAILS(qn_moe_route(enc, I, D, qn_tensor_make(x, 0, QN_F32, 8, 4, 1, 1), N, N, &mp), QN_ERR_INVALID_ARGUMENT,
             "ids is [4,1,1,1], expected [2,4]");
    QT_FAILS(qn_moe_combine(enc, D, X, X, N, qn_tensor_make(x, 0, QN_F32, 1, 4, 1, 1)), QN_ERR_INVALID_ARGUMENT,
             "is not [n, top_k, tokens]");
    /* nothing ran: dst keeps its poison */
    QT_OK(qn_encoder_commit_wait(enc));
    uint32_t *got = qt_read_all(d);
    for (int k = 0; k < 256; k++) assert_int_equal(got[k], 0xFFFFFFFFu);
    free(got);
    qn_buffer_free(x);
    qn_buffer_free(d);
    qn_buffer_free(w);
    qn_buffer_free(i32);
    qn_buffer_free(q8);
    qn_encoder_destroy(enc);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_norms),     cmocka_unit_test(test_rope),      cmocka_unit_test(test_rope_append),
        cmocka_unit_test(test_rope_qkv),  cmocka_unit_test(test_rope_qkv_errors),      cmocka_unit_test(test_activations),
        cmocka_unit_test(test_softmax),   cmocka_unit_test(test_embed),     cmocka_unit_test(test_moe_route),
        cmocka_unit_test(test_moe_combine), cmocka_unit_test(test_errors),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    qt_close_devices();
    return rc;
}
