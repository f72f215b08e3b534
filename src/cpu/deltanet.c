/* CPU kernels of the gated delta net family: the plain token-by-token
 * recurrence in f64 (the reference the GPU's chunked form is held to), and
 * the layer's helpers (convolution, gates, gated norm), also in f64. */
#include "cpu/cpu_ops.h"
#include "cuda/kernels/deltanet_args.cuh"

#include <math.h>

/* State rows (d_v indices) per task: a row of S evolves independently of
 * the others, so a task carries ROWS rows through all T tokens and
 * normalises each token's q and k once for them. */
#define ROWS 16
#define MAX_HEAD 256

static void gdn_rows(void *ctx, int64_t begin, int64_t end) {
    const qn_gdn_args *a = ctx;
    long long dk = a->q.ne[0], dv = a->v.ne[0], hk = a->q.ne[1], hv = a->v.ne[1], n_tok = a->q.ne[2];
    long long blocks = (dv + ROWS - 1) / ROWS;
    double s[ROWS][MAX_HEAD], qn[MAX_HEAD], kn[MAX_HEAD];
    for (int64_t task = begin; task < end; task++) {
        long long blk = task % blocks, h = (task / blocks) % hv, b = task / (blocks * hv);
        long long kh = h / (hv / hk), n0 = blk * ROWS;
        int nr = (int)(dv - n0 < ROWS ? dv - n0 : ROWS);
        for (int r = 0; r < nr; r++)
            for (long long d = 0; d < dk; d++) s[r][d] = *(const float *)qn_kt_at(&a->state_in, d, n0 + r, h, b);
        for (long long t = 0; t < n_tok; t++) {
            double qq = 0, kk = 0;
            for (long long d = 0; d < dk; d++) {
                qn[d] = qn_load_f32(qn_kt_at(&a->q, d, kh, t, b), a->q.dtype);
                kn[d] = qn_load_f32(qn_kt_at(&a->k, d, kh, t, b), a->k.dtype);
                qq += qn[d] * qn[d];
                kk += kn[d] * kn[d];
            }
            double qs = (double)a->scale / sqrt(qq + (double)QN_GDN_L2_EPS),
                   ks = 1.0 / sqrt(kk + (double)QN_GDN_L2_EPS);
            for (long long d = 0; d < dk; d++) {
                qn[d] *= qs;
                kn[d] *= ks;
            }
            double decay = exp((double)qn_load_f32(qn_kt_at(&a->g, h, t, b, 0), a->g.dtype));
            double beta = qn_load_f32(qn_kt_at(&a->beta, h, t, b, 0), a->beta.dtype);
            for (int r = 0; r < nr; r++) {
                double sk = 0;
                for (long long d = 0; d < dk; d++) {
                    s[r][d] *= decay;
                    sk += s[r][d] * kn[d];
                }
                double u = beta * ((double)qn_load_f32(qn_kt_at(&a->v, n0 + r, h, t, b), a->v.dtype) - sk);
                double o = 0;
                for (long long d = 0; d < dk; d++) {
                    s[r][d] += u * kn[d];
                    o += s[r][d] * qn[d];
                }
                qn_store_f32(qn_kt_at(&a->out, n0 + r, h, t, b), a->out.dtype, (float)o);
            }
        }
        /* Written only now, so state_out may be state_in itself. */
        for (int r = 0; r < nr; r++)
            for (long long d = 0; d < dk; d++) *(float *)qn_kt_at(&a->state_out, d, n0 + r, h, b) = (float)s[r][d];
    }
}

void qn_cpu_gated_delta_net(qn_device *dev, const void *args) {
    const qn_gdn_args *a = args;
    long long blocks = (a->v.ne[0] + ROWS - 1) / ROWS;
    qn_cpu_parallel_for(dev, blocks * a->v.ne[1] * a->v.ne[3], gdn_rows, (void *)a);
}

static double silu(double x) { return x / (1.0 + exp(-x)); }

/* One task per (channel, sequence): the channel's whole time series. */
static void conv_channels(void *ctx, int64_t begin, int64_t end) {
    const qn_gdn_conv_args *a = ctx;
    long long n_ch = a->x.ne[0], n_tok = a->x.ne[1];
    int w = (int)a->weight.ne[0];
    for (int64_t task = begin; task < end; task++) {
        long long c = task % n_ch, b = task / n_ch;
        double old[8], wt[8];
        for (int j = 0; j < w - 1; j++) old[j] = qn_load_f32(qn_kt_at(&a->state_in, c, j, b, 0), a->state_in.dtype);
        for (int j = 0; j < w; j++) wt[j] = qn_load_f32(qn_kt_at(&a->weight, j, c, 0, 0), a->weight.dtype);
            /* xs[u] for u in [-(w-1), T): the carried inputs, then x. */
#define XS(u) ((u) < 0 ? old[(u) + w - 1] : (double)qn_load_f32(qn_kt_at(&a->x, c, (u), b, 0), a->x.dtype))
        for (long long t = 0; t < n_tok; t++) {
            double acc = 0;
            for (int j = 0; j < w; j++) acc += wt[j] * XS(t - (w - 1) + j);
            qn_store_f32(qn_kt_at(&a->out, c, t, b, 0), a->out.dtype, (float)silu(acc));
        }
        double next[8];
        for (int j = 0; j < w - 1; j++) next[j] = XS(n_tok - (w - 1) + j);
#undef XS
        for (int j = 0; j < w - 1; j++)
            qn_store_f32(qn_kt_at(&a->state_out, c, j, b, 0), a->state_out.dtype, (float)next[j]);
    }
}

void qn_cpu_gdn_conv1d(qn_device *dev, const void *args) {
    const qn_gdn_conv_args *a = args;
    qn_cpu_parallel_for(dev, a->x.ne[0] * a->x.ne[2], conv_channels, (void *)a);
}

static void gates_rows(void *ctx, int64_t begin, int64_t end) {
    const qn_gdn_gates_args *a = ctx;
    for (int64_t r = begin; r < end; r++) {
        long long i1, i2, i3;
        qn_kt_row(&a->a, r, &i1, &i2, &i3);
        for (long long h = 0; h < a->a.ne[0]; h++) {
            double x = (double)qn_load_f32(qn_kt_at(&a->a, h, i1, i2, i3), a->a.dtype) +
                       (double)qn_load_f32(qn_kt_at(&a->dt_bias, h, 0, 0, 0), a->dt_bias.dtype);
            double softplus = x > 20.0 ? x : log1p(exp(x));
            double decay_rate = exp((double)qn_load_f32(qn_kt_at(&a->a_log, h, 0, 0, 0), a->a_log.dtype));
            double bv = qn_load_f32(qn_kt_at(&a->b, h, i1, i2, i3), a->b.dtype);
            qn_store_f32(qn_kt_at(&a->g, h, i1, i2, i3), a->g.dtype, (float)(-decay_rate * softplus));
            qn_store_f32(qn_kt_at(&a->beta, h, i1, i2, i3), a->beta.dtype, (float)(1.0 / (1.0 + exp(-bv))));
        }
    }
}

void qn_cpu_gdn_gates(qn_device *dev, const void *args) {
    const qn_gdn_gates_args *a = args;
    qn_cpu_parallel_for(dev, qn_kt_rows(&a->a), gates_rows, (void *)a);
}

static void norm_rows(void *ctx, int64_t begin, int64_t end) {
    const qn_gdn_norm_args *a = ctx;
    long long n = a->x.ne[0];
    for (int64_t r = begin; r < end; r++) {
        long long i1, i2, i3;
        qn_kt_row(&a->x, r, &i1, &i2, &i3);
        double ss = 0;
        for (long long i = 0; i < n; i++) {
            double x = qn_load_f32(qn_kt_at(&a->x, i, i1, i2, i3), a->x.dtype);
            ss += x * x;
        }
        double inv = 1.0 / sqrt(ss / (double)n + (double)a->eps);
        for (long long i = 0; i < n; i++) {
            double x = qn_load_f32(qn_kt_at(&a->x, i, i1, i2, i3), a->x.dtype);
            double z = qn_load_f32(qn_kt_at(&a->z, i, i1, i2, i3), a->z.dtype);
            double w = qn_load_f32(qn_kt_at(&a->weight, i, 0, 0, 0), a->weight.dtype);
            qn_store_f32(qn_kt_at(&a->out, i, i1, i2, i3), a->out.dtype, (float)(x * inv * w * silu(z)));
        }
    }
}

void qn_cpu_gdn_gated_norm(qn_device *dev, const void *args) {
    const qn_gdn_norm_args *a = args;
    qn_cpu_parallel_for(dev, qn_kt_rows(&a->x), norm_rows, (void *)a);
}
