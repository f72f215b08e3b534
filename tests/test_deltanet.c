/* The gated delta net family against references written here in double:
 * the token-by-token recurrence for qn_gated_delta_net (which the GPU's
 * chunked form must match), and direct formulas for the conv, gates and
 * gated norm helpers. Inputs are fresh random values; outputs start
 * poisoned. On a GPU every case also runs on the CPU backend, both held to
 * the same reference.
 *
 * Tolerances, as the largest error over the largest |reference| value:
 *   CPU (f64 inside)        1e-5 for f32 outputs; half a unit of the last
 *                           place (and a little) for f16 and bf16 outputs
 *   GPU decode (f32 math)   1e-4
 *   GPU chunked (TF32 mma)  5e-3: TF32 keeps 10 mantissa bits (relative
 *                           rounding 2^-11) of every product operand; a
 *                           simulation of that rounding on these shapes
 *                           gave errors of 3e-4 to 6e-4 */
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- host <-> device in any float dtype */

static float round_to(qn_dtype t, float x) {
    if (t == QN_BF16) return qn_bf16_to_f32(qn_f32_to_bf16(x));
    if (t == QN_F16) return qn_f16_to_f32(qn_f32_to_f16(x));
    return x;
}

/* A buffer of dtype t holding vals (n of them) in the 4-D shape ne. */
static qn_buffer *upload(qn_device *dev, qn_dtype t, const int64_t ne[4], const float *vals) {
    size_t n = (size_t)(ne[0] * ne[1] * ne[2] * ne[3]), es = (size_t)qn_dtype_block_bytes(t);
    unsigned char *bytes = malloc(n * es);
    for (size_t i = 0; i < n; i++) {
        if (t == QN_F32)
            memcpy(bytes + 4 * i, &vals[i], 4);
        else {
            uint16_t h = t == QN_BF16 ? qn_f32_to_bf16(vals[i]) : qn_f32_to_f16(vals[i]);
            memcpy(bytes + 2 * i, &h, 2);
        }
    }
    qn_buffer *b;
    QT_OK(qn_buffer_alloc(dev, t, 4, ne, &b));
    QT_OK(qn_buffer_write(b, 0, bytes, n * es));
    free(bytes);
    return b;
}

/* The whole buffer as floats (malloc). */
static float *download(qn_buffer *b) {
    size_t n = qn_buffer_bytes(b) / (size_t)qn_dtype_block_bytes(qn_buffer_dtype(b));
    void *raw = qt_read_all(b);
    float *f = malloc(n * sizeof *f);
    for (size_t i = 0; i < n; i++) {
        qn_dtype t = qn_buffer_dtype(b);
        if (t == QN_F32)
            memcpy(&f[i], (char *)raw + 4 * i, 4);
        else {
            uint16_t h;
            memcpy(&h, (char *)raw + 2 * i, 2);
            f[i] = t == QN_BF16 ? qn_bf16_to_f32(h) : qn_f16_to_f32(h);
        }
    }
    free(raw);
    return f;
}

static float *random_values(size_t n, float lo, float hi, qn_dtype t) {
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = round_to(t, qt_randf(lo, hi));
    return x;
}

/* max |got - want| must stay within tol * max |want|. */
static void expect_close(const char *what, const float *got, const double *want, size_t n, double tol) {
    double biggest = 0, err = 0;
    size_t worst = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) fail_msg("%s: element %zu is %g, expected %g", what, i, (double)got[i], want[i]);
        biggest = fmax(biggest, fabs(want[i]));
        double e = fabs((double)got[i] - want[i]);
        if (e > err) {
            err = e;
            worst = i;
        }
    }
    if (err > tol * fmax(biggest, 1e-30))
        fail_msg("%s: element %zu is %.7g, expected %.7g (error %.3g, %.3g of max |ref| %.3g; tolerance %.3g)", what,
                 worst, (double)got[worst], want[worst], err, err / biggest, biggest, tol);
}

/* ---- the recurrence */

typedef struct {
    int dk, dv, hk, hv, n_tok, n_seq;
    qn_dtype dt;  /* q, k, v and out */
    qn_dtype gdt; /* g and beta */
    bool zero_state;
    float g_lo, g_hi; /* range of g (log decay) */
} gdn_shape;

typedef struct {
    gdn_shape s;
    float *q, *k, *v, *g, *beta, *state; /* values exactly representable in their dtypes */
    float scale;
} gdn_inputs;

static size_t n_q(const gdn_shape *s) { return (size_t)s->dk * s->hk * s->n_tok * s->n_seq; }
static size_t n_v(const gdn_shape *s) { return (size_t)s->dv * s->hv * s->n_tok * s->n_seq; }
static size_t n_g(const gdn_shape *s) { return (size_t)s->hv * s->n_tok * s->n_seq; }
static size_t n_state(const gdn_shape *s) { return (size_t)s->dk * s->dv * s->hv * s->n_seq; }

static gdn_inputs make_inputs(gdn_shape s) {
    gdn_inputs in = {s, NULL, NULL, NULL, NULL, NULL, NULL, 1.0f / sqrtf((float)s.dk)};
    in.q = random_values(n_q(&s), -1, 1, s.dt);
    in.k = random_values(n_q(&s), -1, 1, s.dt);
    in.v = random_values(n_v(&s), -1, 1, s.dt);
    in.g = random_values(n_g(&s), s.g_lo, s.g_hi, s.gdt);
    in.beta = random_values(n_g(&s), 0.02f, 0.98f, s.gdt);
    in.state = random_values(n_state(&s), -0.5f, 0.5f, QN_F32);
    if (s.zero_state) memset(in.state, 0, n_state(&s) * sizeof(float));
    return in;
}

static void free_inputs(gdn_inputs *in) {
    free(in->q);
    free(in->k);
    free(in->v);
    free(in->g);
    free(in->beta);
    free(in->state);
}

/* out [B][T][hv][dv] and the final state [B][hv][dv][dk], in double:
 * S = exp(g) S; S += beta (v - S k) k^T; o = S q, q and k L2-normalised. */
static void reference(const gdn_inputs *in, double *out, double *state) {
    const gdn_shape *s = &in->s;
    double *qn = malloc(s->dk * sizeof *qn), *kn = malloc(s->dk * sizeof *kn);
    for (size_t i = 0; i < n_state(s); i++) state[i] = in->state[i];
    for (int b = 0; b < s->n_seq; b++)
        for (int h = 0; h < s->hv; h++) {
            int kh = h / (s->hv / s->hk);
            double *S = state + ((size_t)b * s->hv + h) * s->dv * s->dk;
            for (int t = 0; t < s->n_tok; t++) {
                const float *q = in->q + (((size_t)b * s->n_tok + t) * s->hk + kh) * s->dk;
                const float *k = in->k + (((size_t)b * s->n_tok + t) * s->hk + kh) * s->dk;
                const float *v = in->v + (((size_t)b * s->n_tok + t) * s->hv + h) * s->dv;
                size_t gi = ((size_t)b * s->n_tok + t) * s->hv + h;
                double qq = 0, kk = 0;
                for (int d = 0; d < s->dk; d++) {
                    qq += (double)q[d] * q[d];
                    kk += (double)k[d] * k[d];
                }
                for (int d = 0; d < s->dk; d++) {
                    qn[d] = q[d] / sqrt(qq + 1e-6) * in->scale;
                    kn[d] = k[d] / sqrt(kk + 1e-6);
                }
                double decay = exp((double)in->g[gi]), beta = in->beta[gi];
                for (int n = 0; n < s->dv; n++) {
                    double *row = S + (size_t)n * s->dk, pred = 0, o = 0;
                    for (int d = 0; d < s->dk; d++) pred += decay * row[d] * kn[d];
                    double u = beta * (v[n] - pred);
                    for (int d = 0; d < s->dk; d++) {
                        row[d] = decay * row[d] + u * kn[d];
                        o += row[d] * qn[d];
                    }
                    out[(((size_t)b * s->n_tok + t) * s->hv + h) * s->dv + n] = o;
                }
            }
        }
    free(qn);
    free(kn);
}

/* Error bound for an output of dtype t on dev (see the top of the file). */
static double tolerance(qn_device *dev, qn_dtype t, int n_tok) {
    double rounding = t == QN_BF16 ? 1.0 / 256 : t == QN_F16 ? 1.0 / 2048 : 0;
    double method = qn_device_backend(dev) == QN_BACKEND_CPU ? 1e-5 : n_tok == 1 ? 1e-4 : 5e-3;
    return rounding + method;
}

/* A contiguous U8 buffer for the op's workspace, or NULL when none is needed. */
static qn_buffer *workspace_for(qn_device *dev, const gdn_shape *s, qn_tensor *t) {
    size_t bytes = qn_gated_delta_net_workspace(dev, s->dk, s->dv, s->hv, s->n_tok, s->n_seq);
    memset(t, 0, sizeof *t);
    if (bytes == 0) return NULL;
    qn_buffer *w = qt_poisoned(dev, QN_U8, 1, (int64_t[]){(int64_t)bytes});
    *t = qn_tensor_of(w);
    return w;
}

typedef struct {
    qn_buffer *q, *k, *v, *g, *beta, *state_in, *state_out, *out, *ws;
    qn_tensor wst;
} gdn_buffers;

static gdn_buffers upload_inputs(qn_device *dev, const gdn_inputs *in) {
    const gdn_shape *s = &in->s;
    gdn_buffers b;
    b.q = upload(dev, s->dt, (int64_t[]){s->dk, s->hk, s->n_tok, s->n_seq}, in->q);
    b.k = upload(dev, s->dt, (int64_t[]){s->dk, s->hk, s->n_tok, s->n_seq}, in->k);
    b.v = upload(dev, s->dt, (int64_t[]){s->dv, s->hv, s->n_tok, s->n_seq}, in->v);
    b.g = upload(dev, s->gdt, (int64_t[]){s->hv, s->n_tok, s->n_seq, 1}, in->g);
    b.beta = upload(dev, s->gdt, (int64_t[]){s->hv, s->n_tok, s->n_seq, 1}, in->beta);
    b.state_in = upload(dev, QN_F32, (int64_t[]){s->dk, s->dv, s->hv, s->n_seq}, in->state);
    b.state_out = qt_poisoned(dev, QN_F32, 4, (int64_t[]){s->dk, s->dv, s->hv, s->n_seq});
    b.out = qt_poisoned(dev, s->dt, 4, (int64_t[]){s->dv, s->hv, s->n_tok, s->n_seq});
    b.ws = workspace_for(dev, s, &b.wst);
    return b;
}

static void free_buffers(gdn_buffers *b) {
    qn_buffer *all[] = {b->q, b->k, b->v, b->g, b->beta, b->state_in, b->state_out, b->out, b->ws};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) qn_buffer_free(all[i]);
}

/* Run the op on dev; the outputs as floats (malloc). With in_place the
 * state is updated in state_in's buffer. */
static void run_gdn(qn_device *dev, const gdn_inputs *in, bool in_place, float **out, float **state) {
    gdn_buffers b = upload_inputs(dev, in);
    qn_encoder *enc;
    QT_OK(qn_encoder_create(dev, &enc));
    qn_buffer *st_out = in_place ? b.state_in : b.state_out;
    QT_OK(qn_gated_delta_net(enc, qn_tensor_of(b.out), qn_tensor_of(st_out), qn_tensor_of(b.q), qn_tensor_of(b.k),
                             qn_tensor_of(b.v), qn_tensor_of(b.g), qn_tensor_of(b.beta), qn_tensor_of(b.state_in),
                             b.wst, in->scale));
    QT_OK(qn_encoder_commit_wait(enc));
    *out = download(b.out);
    *state = download(st_out);
    qn_encoder_destroy(enc);
    free_buffers(&b);
}

/* The device under test (and on a GPU the CPU backend too) against the
 * reference. */
static void check_case(gdn_shape s, bool in_place) {
    gdn_inputs in = make_inputs(s);
    double *want_out = malloc(n_v(&s) * sizeof(double)), *want_state = malloc(n_state(&s) * sizeof(double));
    reference(&in, want_out, want_state);
    qn_device *devs[2] = {qt_device(), qt_on_gpu() ? qt_cpu() : NULL};
    for (int i = 0; i < 2 && devs[i]; i++) {
        float *out, *state;
        run_gdn(devs[i], &in, in_place, &out, &state);
        char what[160];
        snprintf(what, sizeof what, "%s: dk %d dv %d heads %d/%d T %d B %d %s%s%s out",
                 qn_backend_name(qn_device_backend(devs[i])), s.dk, s.dv, s.hk, s.hv, s.n_tok, s.n_seq,
                 qn_dtype_name(s.dt), s.zero_state ? " zero state" : "", in_place ? " in place" : "");
        expect_close(what, out, want_out, n_v(&s), tolerance(devs[i], s.dt, s.n_tok));
        strcpy(strrchr(what, ' '), " state");
        expect_close(what, state, want_state, n_state(&s), tolerance(devs[i], QN_F32, s.n_tok));
        free(out);
        free(state);
    }
    free(want_out);
    free(want_state);
    free_inputs(&in);
}

/* Lengths around the chunk size and long ones, from a zero and a random state. */
static void test_lengths(void **state) {
    (void)state;
    const int lengths[] = {1, 63, 64, 65, 1000, 4096};
    for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++)
        for (int zero = 0; zero < 2; zero++)
            check_case((gdn_shape){128, 128, 2, 4, lengths[i], 1, QN_F32, QN_F32, zero, -0.1f, 0.0f}, false);
}

/* Head sizes 256 and mixed, several sequences, a slowly decaying state
 * (errors would add up over the chunks), one value head per key head. */
static void test_shapes(void **state) {
    (void)state;
    check_case((gdn_shape){256, 256, 1, 2, 65, 1, QN_F32, QN_F32, false, -0.1f, 0.0f}, false);
    check_case((gdn_shape){256, 256, 1, 2, 1, 2, QN_F32, QN_F32, false, -0.1f, 0.0f}, false);
    check_case((gdn_shape){128, 256, 1, 3, 130, 2, QN_F32, QN_F32, false, -0.1f, 0.0f}, false);
    check_case((gdn_shape){256, 128, 2, 2, 1, 3, QN_F32, QN_F32, false, -0.1f, 0.0f}, false);
    check_case((gdn_shape){256, 128, 2, 2, 100, 1, QN_F32, QN_F32, false, -0.1f, 0.0f}, false);
    check_case((gdn_shape){128, 128, 4, 4, 1000, 1, QN_F32, QN_F32, false, -0.01f, 0.0f}, false);
    check_case((gdn_shape){128, 128, 1, 1, 300, 2, QN_F32, QN_F32, false, -2.0f, -0.5f}, false);
}

/* Many heads and sequences (state grids of 128 to 256 blocks), grouped
 * value heads, every head size pair. */
static void test_many_heads(void **state) {
    (void)state;
    check_case((gdn_shape){128, 128, 8, 32, 130, 1, QN_F32, QN_F32, false, -0.1f, 0.0f}, false);
    check_case((gdn_shape){128, 128, 4, 16, 70, 1, QN_F32, QN_F32, true, -0.1f, 0.0f}, false);
    check_case((gdn_shape){128, 256, 4, 8, 100, 2, QN_F32, QN_F32, false, -0.1f, 0.0f}, false);
    check_case((gdn_shape){256, 128, 2, 8, 65, 2, QN_BF16, QN_F32, false, -0.1f, 0.0f}, false);
    check_case((gdn_shape){256, 256, 4, 8, 64, 2, QN_F32, QN_F32, false, -0.1f, 0.0f}, false);
}

/* bf16 and f16 activations (g and beta too), within their rounding. */
static void test_half_inputs(void **state) {
    (void)state;
    check_case((gdn_shape){128, 128, 2, 4, 200, 1, QN_BF16, QN_BF16, false, -0.1f, 0.0f}, false);
    check_case((gdn_shape){128, 128, 2, 4, 1, 2, QN_BF16, QN_BF16, false, -0.1f, 0.0f}, false);
    check_case((gdn_shape){256, 256, 1, 2, 70, 1, QN_F16, QN_F32, false, -0.1f, 0.0f}, false);
    check_case((gdn_shape){128, 128, 2, 2, 1, 1, QN_F16, QN_F16, false, -0.1f, 0.0f}, false);
}

/* state_out = state_in: prefill and decode update the state in place. */
static void test_in_place(void **state) {
    (void)state;
    check_case((gdn_shape){128, 128, 2, 4, 130, 1, QN_F32, QN_F32, false, -0.1f, 0.0f}, true);
    check_case((gdn_shape){128, 128, 2, 4, 1, 2, QN_F32, QN_F32, false, -0.1f, 0.0f}, true);
}

/* Prefill of n tokens then one decode step gives what prefill of n + 1
 * gives: the last output and the state. */
static void test_prefill_then_decode(void **state) {
    (void)state;
    qn_device *dev = qt_device();
    const int lengths[] = {64, 100};
    for (int li = 0; li < 2; li++) {
        int n = lengths[li];
        gdn_shape s = {128, 128, 2, 4, n + 1, 1, QN_F32, QN_F32, false, -0.1f, 0.0f};
        gdn_inputs all = make_inputs(s);
        float *out_all, *state_all;
        run_gdn(dev, &all, false, &out_all, &state_all);

        /* the first n tokens: the leading part of each [.., T, 1] array */
        gdn_inputs head = all;
        head.s.n_tok = n;
        float *out_head, *state_head;
        run_gdn(dev, &head, false, &out_head, &state_head);

        /* token n from the state the prefill left */
        gdn_inputs step = all;
        step.s.n_tok = 1;
        step.q = all.q + (size_t)n * s.hk * s.dk;
        step.k = all.k + (size_t)n * s.hk * s.dk;
        step.v = all.v + (size_t)n * s.hv * s.dv;
        step.g = all.g + (size_t)n * s.hv;
        step.beta = all.beta + (size_t)n * s.hv;
        step.state = state_head;
        float *out_step, *state_step;
        run_gdn(dev, &step, false, &out_step, &state_step);

        double *want = malloc(n_state(&s) * sizeof(double));
        for (size_t i = 0; i < (size_t)s.hv * s.dv; i++) want[i] = out_all[(size_t)n * s.hv * s.dv + i];
        double tol = tolerance(dev, QN_F32, 2);
        expect_close("decode after prefill: output", out_step, want, (size_t)s.hv * s.dv, tol);
        for (size_t i = 0; i < n_state(&s); i++) want[i] = state_all[i];
        expect_close("decode after prefill: state", state_step, want, n_state(&s), tol);
        free(want);
        free(out_all);
        free(state_all);
        free(out_head);
        free(state_head);
        free(out_step);
        free(state_step);
        free_inputs(&all);
    }
}

/* q, k and v as strided views into one [2 hk dk + hv dv, T] buffer, as they
 * come out of the fused projection and convolution. */
static void test_fused_views(void **state) {
    (void)state;
    qn_device *dev = qt_device();
    gdn_shape s = {128, 128, 2, 4, 70, 1, QN_F32, QN_F32, false, -0.1f, 0.0f};
    gdn_inputs in = make_inputs(s);
    const int64_t row = 2 * s.hk * s.dk + s.hv * s.dv;
    float *fused = malloc((size_t)row * s.n_tok * sizeof(float));
    for (int t = 0; t < s.n_tok; t++) {
        memcpy(fused + (size_t)t * row, in.q + (size_t)t * s.hk * s.dk, (size_t)s.hk * s.dk * 4);
        memcpy(fused + (size_t)t * row + s.hk * s.dk, in.k + (size_t)t * s.hk * s.dk, (size_t)s.hk * s.dk * 4);
        memcpy(fused + (size_t)t * row + 2 * s.hk * s.dk, in.v + (size_t)t * s.hv * s.dv, (size_t)s.hv * s.dv * 4);
    }
    gdn_buffers b = upload_inputs(dev, &in);
    qn_buffer *fb = upload(dev, QN_F32, (int64_t[]){row, s.n_tok, 1, 1}, fused);
    qn_tensor q = qn_tensor_make(fb, 0, QN_F32, s.dk, s.hk, s.n_tok, 1), k = q, v;
    q.nb[2] = k.nb[2] = row * 4;
    q.nb[3] = k.nb[3] = row * 4 * s.n_tok;
    k.offset = (size_t)s.hk * s.dk * 4;
    v = qn_tensor_make(fb, (size_t)2 * s.hk * s.dk * 4, QN_F32, s.dv, s.hv, s.n_tok, 1);
    v.nb[2] = row * 4;
    v.nb[3] = row * 4 * s.n_tok;
    qn_encoder *enc;
    QT_OK(qn_encoder_create(dev, &enc));
    QT_OK(qn_gated_delta_net(enc, qn_tensor_of(b.out), qn_tensor_of(b.state_out), q, k, v, qn_tensor_of(b.g),
                             qn_tensor_of(b.beta), qn_tensor_of(b.state_in), b.wst, in.scale));
    QT_OK(qn_encoder_commit_wait(enc));
    double *want_out = malloc(n_v(&s) * sizeof(double)), *want_state = malloc(n_state(&s) * sizeof(double));
    reference(&in, want_out, want_state);
    float *out = download(b.out), *st = download(b.state_out);
    expect_close("fused views: out", out, want_out, n_v(&s), tolerance(dev, QN_F32, s.n_tok));
    expect_close("fused views: state", st, want_state, n_state(&s), tolerance(dev, QN_F32, s.n_tok));
    free(out);
    free(st);
    free(want_out);
    free(want_state);
    free(fused);
    qn_buffer_free(fb);
    free_buffers(&b);
    qn_encoder_destroy(enc);
    free_inputs(&in);
}

/* A decode step captured once and replayed with new inputs written into the
 * same buffers each time, the state carried in place: every replay follows
 * its inputs, so the kernel reads them from memory, not from the capture. */
static void test_graph_decode(void **state) {
    (void)state;
    qn_device *dev = qt_device();
    gdn_shape s = {128, 128, 2, 4, 1, 1, QN_F32, QN_F32, false, -0.1f, 0.0f};
    enum { STEPS = 3 };
    gdn_shape all_s = s;
    all_s.n_tok = STEPS;
    gdn_inputs all = make_inputs(all_s);
    gdn_inputs first = all;
    first.s = s;
    gdn_buffers b = upload_inputs(dev, &first);
    qn_encoder *enc;
    QT_OK(qn_encoder_create(dev, &enc));
    qn_graph *graph;
    QT_OK(qn_graph_begin(enc));
    QT_OK(qn_gated_delta_net(enc, qn_tensor_of(b.out), qn_tensor_of(b.state_in), qn_tensor_of(b.q), qn_tensor_of(b.k),
                             qn_tensor_of(b.v), qn_tensor_of(b.g), qn_tensor_of(b.beta), qn_tensor_of(b.state_in),
                             b.wst, all.scale));
    QT_OK(qn_graph_end(enc, &graph));
    double *want_out = malloc(n_v(&all_s) * sizeof(double)), *want_state = malloc(n_state(&s) * sizeof(double));
    reference(&all, want_out, want_state);
    for (int t = 0; t < STEPS; t++) {
        QT_OK(qn_buffer_write(b.q, 0, all.q + (size_t)t * s.hk * s.dk, (size_t)s.hk * s.dk * 4));
        QT_OK(qn_buffer_write(b.k, 0, all.k + (size_t)t * s.hk * s.dk, (size_t)s.hk * s.dk * 4));
        QT_OK(qn_buffer_write(b.v, 0, all.v + (size_t)t * s.hv * s.dv, (size_t)s.hv * s.dv * 4));
        QT_OK(qn_buffer_write(b.g, 0, all.g + (size_t)t * s.hv, (size_t)s.hv * 4));
        QT_OK(qn_buffer_write(b.beta, 0, all.beta + (size_t)t * s.hv, (size_t)s.hv * 4));
        QT_OK(qn_graph_launch(graph, enc));
        QT_OK(qn_encoder_commit_wait(enc));
        float *out = download(b.out);
        char what[64];
        snprintf(what, sizeof what, "graph replay %d: out", t);
        expect_close(what, out, want_out + (size_t)t * s.hv * s.dv, (size_t)s.hv * s.dv, tolerance(dev, QN_F32, 1));
        free(out);
    }
    float *st = download(b.state_in);
    expect_close("graph replays: state", st, want_state, n_state(&s), tolerance(dev, QN_F32, 1));
    free(st);
    free(want_out);
    free(want_state);
    qn_graph_destroy(graph);
    qn_encoder_destroy(enc);
    free_buffers(&b);
    free_inputs(&all);
}

static void test_errors(void **state) {
    (void)state;
    qn_device *dev = qt_device();
    qn_encoder *enc;
    QT_OK(qn_encoder_create(dev, &enc));
    gdn_shape s = {128, 128, 2, 4, 65, 1, QN_F32, QN_F32, false, -0.1f, 0.0f};
    gdn_inputs in = make_inputs(s);
    gdn_buffers b = upload_inputs(dev, &in);
    qn_tensor out = qn_tensor_of(b.out), so = qn_tensor_of(b.state_out), q = qn_tensor_of(b.q), k = qn_tensor_of(b.k),
              v = qn_tensor_of(b.v), g = qn_tensor_of(b.g), beta = qn_tensor_of(b.beta), si = qn_tensor_of(b.state_in),
              ws = b.wst;
    qn_tensor bad;
    const qn_status E = QN_ERR_INVALID_ARGUMENT;

    bad = q;
    bad.ne[0] = 64;
    QT_FAILS(qn_gated_delta_net(enc, out, so, bad, k, v, g, beta, si, ws, in.scale), E,
             "d_k) = 64 (supported: 128, 256)");
    bad = v;
    bad.ne[0] = 96;
    QT_FAILS(qn_gated_delta_net(enc, out, so, q, k, bad, g, beta, si, ws, in.scale), E, "d_v) = 96");
    bad = k;
    bad.ne[1] = 1;
    QT_FAILS(qn_gated_delta_net(enc, out, so, q, bad, v, g, beta, si, ws, in.scale), E, "k is [128,1,65,1]");
    qn_tensor q3 = q, k3 = k;
    q3.ne[1] = k3.ne[1] = 3;
    q3.ne[2] = k3.ne[2] = 40;
    QT_FAILS(qn_gated_delta_net(enc, out, so, q3, k3, v, g, beta, si, ws, in.scale), E,
             "not a multiple of q and k's 3");
    bad = g;
    bad.ne[1] = 64;
    QT_FAILS(qn_gated_delta_net(enc, out, so, q, k, v, bad, beta, si, ws, in.scale), E, "g is [4,64,1,1]");
    bad = beta;
    bad.ne[0] = 2;
    QT_FAILS(qn_gated_delta_net(enc, out, so, q, k, v, g, bad, si, ws, in.scale), E, "beta is [2,65,1,1]");
    bad = out;
    bad.ne[2] = 64;
    QT_FAILS(qn_gated_delta_net(enc, bad, so, q, k, v, g, beta, si, ws, in.scale), E, "out is [128,4,64,1]");
    bad = k;
    bad.dtype = QN_BF16;
    QT_FAILS(qn_gated_delta_net(enc, out, so, q, bad, v, g, beta, si, ws, in.scale), E, "expected one dtype");
    bad = si;
    bad.dtype = QN_F16;
    bad.nb[0] = 2;
    QT_FAILS(qn_gated_delta_net(enc, out, so, q, k, v, g, beta, bad, ws, in.scale), E,
             "state_in is f16 (expected f32)");
    bad = so;
    bad.ne[2] = 2;
    QT_FAILS(qn_gated_delta_net(enc, out, bad, q, k, v, g, beta, si, ws, in.scale), E, "state_out is [128,128,2,1]");
    bad = qn_tensor_make(b.state_in, 256, QN_F32, 128, 128, 4, 1);
    QT_FAILS(qn_gated_delta_net(enc, out, bad, q, k, v, g, beta, si, ws, in.scale), E, "reaches byte");
    qn_buffer *big = qt_poisoned(dev, QN_F32, 1, (int64_t[]){2 * 128 * 128 * 4});
    QT_FAILS(qn_gated_delta_net(enc, out, qn_tensor_make(big, 4, QN_F32, 128, 128, 4, 1), q, k, v, g, beta, si, ws,
                                in.scale),
             E, "state_out rows must be contiguous (nb[0] = 4, got 4) and 16-byte aligned (offset 4");
    QT_FAILS(qn_gated_delta_net(enc, out, qn_tensor_make(big, 4096, QN_F32, 128, 128, 4, 1), q, k, v, g, beta,
                                qn_tensor_make(big, 0, QN_F32, 128, 128, 4, 1), ws, in.scale),
             E, "state_out overlaps state_in");
    qn_buffer_free(big);
    QT_FAILS(qn_gated_delta_net(enc, out, so, q, k, v, g, beta, si, ws, NAN), E, "scale nan is not finite");
    if (ws.buf) { /* the GPU's chunked form needs a workspace */
        bad = qn_tensor_make(ws.buf, 0, QN_U8, ws.ne[0] - 16, 1, 1, 1);
        QT_FAILS(qn_gated_delta_net(enc, out, so, q, k, v, g, beta, si, bad, in.scale), E,
                 "workspace must be contiguous");
        qn_tensor none = {0};
        QT_FAILS(qn_gated_delta_net(enc, out, so, q, k, v, g, beta, si, none, in.scale), E, "workspace has no buffer");
    }
    /* nothing ran: the output is still poisoned */
    QT_OK(qn_encoder_commit_wait(enc));
    float *o = download(b.out);
    for (size_t i = 0; i < n_v(&s); i++)
        if (!isnan(o[i])) fail_msg("a refused call wrote out[%zu] = %g", i, (double)o[i]);
    free(o);

    /* the helpers */
    qn_buffer *x = qt_poisoned(dev, QN_F32, 2, (int64_t[]){64, 10}),
              *w = qt_poisoned(dev, QN_F32, 2, (int64_t[]){9, 64}),
              *cs = qt_poisoned(dev, QN_F32, 2, (int64_t[]){64, 3}),
              *w4 = qt_poisoned(dev, QN_F32, 2, (int64_t[]){4, 64});
    QT_FAILS(qn_gdn_conv1d(enc, qn_tensor_of(x), qn_tensor_of(cs), qn_tensor_of(x), qn_tensor_of(w), qn_tensor_of(cs)),
             E, "width) = 9 (supported: 2 to 8)");
    qn_tensor cs2 = qn_tensor_make(cs, 0, QN_F32, 64, 2, 1, 1);
    QT_FAILS(qn_gdn_conv1d(enc, qn_tensor_of(x), qn_tensor_of(cs), qn_tensor_of(x), qn_tensor_of(w4), cs2), E,
             "state_in is [64,2,1,1] (expected [C, W - 1, B] = [64,3,1,1])");
    qn_tensor h1 = qn_tensor_make(x, 0, QN_F32, 4, 5, 1, 1), h2 = qn_tensor_make(x, 0, QN_F32, 3, 1, 1, 1);
    QT_FAILS(qn_gdn_gates(enc, h1, h1, h1, h1, h2, h2), E, "a_log is [3,1,1,1] (expected [H] = [4,1,1,1])");
    qn_tensor row = qn_tensor_make(x, 0, QN_F32, 32, 1, 1, 1);
    QT_FAILS(qn_gdn_gated_norm(enc, qn_tensor_of(x), qn_tensor_of(x), qn_tensor_of(x), row, 1e-6f), E,
             "weight is [32,1,1,1] (expected [D] = [64,1,1,1])");
    QT_FAILS(qn_gdn_gated_norm(enc, qn_tensor_of(x), qn_tensor_of(x), qn_tensor_of(x),
                               qn_tensor_make(x, 0, QN_F32, 64, 1, 1, 1), 0.0f),
             E, "eps 0 is not a positive number");
    qn_buffer_free(x);
    qn_buffer_free(w);
    qn_buffer_free(cs);
    qn_buffer_free(w4);
    free_buffers(&b);
    free_inputs(&in);
    qn_encoder_destroy(enc);
}

/* ---- the helpers */

static double silu(double x) { return x / (1.0 + exp(-x)); }

/* out and new state of the causal conv over [C, T, B] from `st` [C, W-1, B]. */
static void conv_reference(int C, int T, int B, int W, const float *x, const float *w, const float *st, double *out,
                           double *new_state) {
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++) {
            /* xs: W - 1 carried inputs, then x */
            double *xs = malloc((size_t)(T + W - 1) * sizeof *xs);
            for (int j = 0; j < W - 1; j++) xs[j] = st[((size_t)b * (W - 1) + j) * C + c];
            for (int t = 0; t < T; t++) xs[W - 1 + t] = x[((size_t)b * T + t) * C + c];
            for (int t = 0; t < T; t++) {
                double acc = 0;
                for (int j = 0; j < W; j++) acc += (double)w[(size_t)c * W + j] * xs[t + j];
                out[((size_t)b * T + t) * C + c] = silu(acc);
            }
            for (int j = 0; j < W - 1; j++) new_state[((size_t)b * (W - 1) + j) * C + c] = xs[T + j];
            free(xs);
        }
}

static void run_conv(qn_device *dev, int C, int T, int B, int W, qn_dtype dt, const float *x, const float *w,
                     const float *st, bool in_place, float **out, float **new_state) {
    qn_buffer *xb = upload(dev, dt, (int64_t[]){C, T, B, 1}, x), *wb = upload(dev, dt, (int64_t[]){W, C, 1, 1}, w);
    qn_buffer *sb = upload(dev, QN_F32, (int64_t[]){C, W - 1, B, 1}, st);
    qn_buffer *ob = qt_poisoned(dev, dt, 3, (int64_t[]){C, T, B}),
              *so = qt_poisoned(dev, QN_F32, 3, (int64_t[]){C, W - 1, B});
    qn_encoder *enc;
    QT_OK(qn_encoder_create(dev, &enc));
    QT_OK(qn_gdn_conv1d(enc, qn_tensor_of(ob), qn_tensor_of(in_place ? sb : so), qn_tensor_of(xb), qn_tensor_of(wb),
                        qn_tensor_of(sb)));
    QT_OK(qn_encoder_commit_wait(enc));
    *out = download(ob);
    *new_state = download(in_place ? sb : so);
    qn_encoder_destroy(enc);
    qn_buffer_free(xb);
    qn_buffer_free(wb);
    qn_buffer_free(sb);
    qn_buffer_free(ob);
    qn_buffer_free(so);
}

/* Widths 2, 4 and 8; lengths shorter than the window (the new state mixes
 * carried and new inputs), one tile, several tiles; then a split run with
 * the state carried equals the whole run. */
static void test_conv1d(void **state) {
    (void)state;
    const struct {
        int C, T, B, W;
        qn_dtype dt;
    } cases[] = {{100, 1, 2, 4, QN_F32}, {100, 2, 1, 4, QN_F32}, {300, 150, 2, 4, QN_F32},
                 {64, 70, 1, 2, QN_F32}, {33, 9, 1, 8, QN_F32},  {256, 130, 1, 4, QN_BF16}};
    qn_device *devs[2] = {qt_device(), qt_on_gpu() ? qt_cpu() : NULL};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        int C = cases[ci].C, T = cases[ci].T, B = cases[ci].B, W = cases[ci].W;
        qn_dtype dt = cases[ci].dt;
        float *x = random_values((size_t)C * T * B, -2, 2, dt), *w = random_values((size_t)C * W, -1, 1, dt);
        float *st = random_values((size_t)C * (W - 1) * B, -2, 2, QN_F32);
        double *want = malloc((size_t)C * T * B * sizeof(double)),
               *want_st = malloc((size_t)C * (W - 1) * B * sizeof(double));
        conv_reference(C, T, B, W, x, w, st, want, want_st);
        double tol = (dt == QN_BF16 ? 1.0 / 256 : 0) + 1e-5;
        for (int di = 0; di < 2 && devs[di]; di++)
            for (int in_place = 0; in_place < 2; in_place++) {
                float *out, *ns;
                run_conv(devs[di], C, T, B, W, dt, x, w, st, in_place, &out, &ns);
                expect_close("conv1d out", out, want, (size_t)C * T * B, tol);
                expect_close("conv1d state", ns, want_st, (size_t)C * (W - 1) * B, 1e-6);
                free(out);
                free(ns);
            }
        free(x);
        free(w);
        free(st);
        free(want);
        free(want_st);
    }

    /* 150 tokens as 70 + 80 with the state carried: the same outputs, bit for bit */
    qn_device *dev = qt_device();
    const int C = 200, T1 = 70, T2 = 80, W = 4;
    float *x = random_values((size_t)C * (T1 + T2), -2, 2, QN_F32), *w = random_values((size_t)C * W, -1, 1, QN_F32);
    float *st = random_values((size_t)C * (W - 1), -2, 2, QN_F32);
    float *whole, *whole_st, *a, *a_st, *b, *b_st;
    run_conv(dev, C, T1 + T2, 1, W, QN_F32, x, w, st, false, &whole, &whole_st);
    run_conv(dev, C, T1, 1, W, QN_F32, x, w, st, false, &a, &a_st);
    run_conv(dev, C, T2, 1, W, QN_F32, x + (size_t)C * T1, w, a_st, false, &b, &b_st);
    assert_memory_equal(a, whole, (size_t)C * T1 * 4);
    assert_memory_equal(b, whole + (size_t)C * T1, (size_t)C * T2 * 4);
    assert_memory_equal(b_st, whole_st, (size_t)C * (W - 1) * 4);
    free(x);
    free(w);
    free(st);
    free(whole);
    free(whole_st);
    free(a);
    free(a_st);
    free(b);
    free(b_st);
}

static void test_gates(void **state) {
    (void)state;
    const int H = 32, T = 37, B = 2;
    const size_t n = (size_t)H * T * B;
    float *a = random_values(n, -30, 30, QN_F32), *bv = random_values(n, -12, 12, QN_F32);
    float *a_log = random_values(H, -3, 2, QN_F32), *dt_bias = random_values(H, -2, 2, QN_F32);
    a[0] = 25.0f; /* softplus taken as its argument past 20 */
    double *want_g = malloc(n * sizeof(double)), *want_b = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) {
        int h = (int)(i % H);
        double x = (double)a[i] + dt_bias[h];
        want_g[i] = -exp((double)a_log[h]) * (x > 20 ? x : log1p(exp(x)));
        want_b[i] = 1.0 / (1.0 + exp(-(double)bv[i]));
    }
    qn_device *devs[2] = {qt_device(), qt_on_gpu() ? qt_cpu() : NULL};
    for (int di = 0; di < 2 && devs[di]; di++) {
        qn_device *dev = devs[di];
        qn_buffer *ab = upload(dev, QN_F32, (int64_t[]){H, T, B, 1}, a),
                  *bb = upload(dev, QN_F32, (int64_t[]){H, T, B, 1}, bv);
        qn_buffer *lb = upload(dev, QN_F32, (int64_t[]){H, 1, 1, 1}, a_log),
                  *db = upload(dev, QN_F32, (int64_t[]){H, 1, 1, 1}, dt_bias);
        qn_buffer *gb = qt_poisoned(dev, QN_F32, 3, (int64_t[]){H, T, B}),
                  *betab = qt_poisoned(dev, QN_F32, 3, (int64_t[]){H, T, B});
        qn_encoder *enc;
        QT_OK(qn_encoder_create(dev, &enc));
        QT_OK(qn_gdn_gates(enc, qn_tensor_of(gb), qn_tensor_of(betab), qn_tensor_of(ab), qn_tensor_of(bb),
                           qn_tensor_of(lb), qn_tensor_of(db)));
        QT_OK(qn_encoder_commit_wait(enc));
        float *g = download(gb), *beta = download(betab);
        /* element-wise: each within 1e-5 of its own magnitude */
        for (size_t i = 0; i < n; i++) {
            if (!(fabs(g[i] - want_g[i]) <= 1e-5 * fabs(want_g[i]) + 1e-30))
                fail_msg("g[%zu] = %.9g, expected %.9g", i, (double)g[i], want_g[i]);
            if (!(fabs(beta[i] - want_b[i]) <= 1e-5 * fabs(want_b[i]) + 1e-30))
                fail_msg("beta[%zu] = %.9g, expected %.9g", i, (double)beta[i], want_b[i]);
        }
        free(g);
        free(beta);
        qn_buffer *bufs[] = {ab, bb, lb, db, gb, betab};
        for (int i = 0; i < 6; i++) qn_buffer_free(bufs[i]);
        qn_encoder_destroy(enc);
    }
    free(a);
    free(bv);
    free(a_log);
    free(dt_bias);
    free(want_g);
    free(want_b);
}

static void test_gated_norm(void **state) {
    (void)state;
    const qn_dtype types[2] = {QN_F32, QN_BF16};
    const int D = 128, H = 5, T = 7;
    const size_t n = (size_t)D * H * T;
    const float eps = 1e-6f;
    qn_device *devs[2] = {qt_device(), qt_on_gpu() ? qt_cpu() : NULL};
    for (int ti = 0; ti < 2; ti++) {
        qn_dtype dt = types[ti];
        float *x = random_values(n, -3, 3, dt), *z = random_values(n, -4, 4, dt), *w = random_values(D, 0.5f, 1.5f, dt);
        double *want = malloc(n * sizeof(double));
        for (size_t r = 0; r < n / D; r++) {
            double ss = 0;
            for (int i = 0; i < D; i++) ss += (double)x[r * D + i] * x[r * D + i];
            double inv = 1.0 / sqrt(ss / D + eps);
            for (int i = 0; i < D; i++) want[r * D + i] = x[r * D + i] * inv * w[i] * silu(z[r * D + i]);
        }
        for (int di = 0; di < 2 && devs[di]; di++) {
            qn_device *dev = devs[di];
            qn_buffer *xb = upload(dev, dt, (int64_t[]){D, H, T, 1}, x),
                      *zb = upload(dev, dt, (int64_t[]){D, H, T, 1}, z);
            qn_buffer *wb = upload(dev, dt, (int64_t[]){D, 1, 1, 1}, w),
                      *ob = qt_poisoned(dev, dt, 3, (int64_t[]){D, H, T});
            qn_encoder *enc;
            QT_OK(qn_encoder_create(dev, &enc));
            QT_OK(qn_gdn_gated_norm(enc, qn_tensor_of(ob), qn_tensor_of(xb), qn_tensor_of(zb), qn_tensor_of(wb), eps));
            QT_OK(qn_encoder_commit_wait(enc));
            float *out = download(ob);
            expect_close(dt == QN_F32 ? "gated norm f32" : "gated norm bf16", out, want, n,
                         (dt == QN_BF16 ? 1.0 / 256 : 0) + 1e-5);
            free(out);
            qn_buffer_free(xb);
            qn_buffer_free(zb);
            qn_buffer_free(wb);
            qn_buffer_free(ob);
            qn_encoder_destroy(enc);
        }
        free(x);
        free(z);
        free(w);
        free(want);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lengths),
        cmocka_unit_test(test_shapes),
        cmocka_unit_test(test_many_heads),
        cmocka_unit_test(test_half_inputs),
        cmocka_unit_test(test_in_place),
        cmocka_unit_test(test_prefill_then_decode),
        cmocka_unit_test(test_fused_views),
        cmocka_unit_test(test_graph_decode),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_conv1d),
        cmocka_unit_test(test_gates),
        cmocka_unit_test(test_gated_norm),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    qt_close_devices();
    return rc;
}
