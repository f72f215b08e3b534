/* The original library's encoding experiment, on quanta's runtime.
 *
 * 60 independent ops (2 per layer of a 30-layer model), each a decode
 * matvec of the original's shape: a q6_K 2816x2816 weight (6.5 MB) times
 * one f32 token. Each op has its own weight, input and output.
 *
 * Three ways to get the 60 ops to the device, each timed from the first
 * encode to the end of the wait (min and mean over trials, after a warm-up):
 *   serial    the main thread encodes all 60 and commits
 *   worker    the main thread encodes 30 while a qn_worker encodes the other
 *             30 on its own stream; joined by an event, then committed
 *   graph     the 60 ops captured once, replayed as one graph launch */
#include "bench.h"
#include "cli.h"

#include <stdlib.h>

#define N_OPS 60
#define DIM 2816

typedef struct {
    qn_tensor y[N_OPS], w[N_OPS], x[N_OPS];
    int first, count;
} op_range;

static qn_status encode_range(qn_encoder *enc, void *arg) {
    const op_range *r = arg;
    for (int i = r->first; i < r->first + r->count; i++) {
        qn_status s = qn_qmatmul(enc, r->y[i], r->w[i], r->x[i]);
        if (s != QN_OK) return s;
    }
    return QN_OK;
}

static qn_status encode_all(qn_encoder *enc, const void *arg, int i) {
    (void)i;
    return encode_range(enc, (void *)arg);
}

typedef struct {
    double min, mean;
} stat;

static stat summarize(const double *t, int n) {
    stat s = {t[0], 0};
    for (int i = 0; i < n; i++) {
        if (t[i] < s.min) s.min = t[i];
        s.mean += t[i] / n;
    }
    return s;
}

int qn_bench_encode_worker(qn_device *dev, const qn_bench_opts *opts) {
    int trials = opts->iters > 0 ? opts->iters : 20;
    qn_buffer *bufs[3 * N_OPS] = {0};
    op_range all = {.first = 0, .count = N_OPS};
    qn_encoder *enc = NULL;
    qn_worker *worker = NULL;
    qn_graph *graph = NULL;
    double *t = calloc((size_t)trials * 3, sizeof *t);
    qn_status s = t ? QN_OK : QN_ERR_OUT_OF_MEMORY;
    const char *stage = "allocating";

    /* Weights are random bytes with modest f16 fields, inputs small values:
     * not zeros, which can run faster than real data. */
    size_t wbytes = (size_t)qn_dtype_row_bytes(QN_Q6_K, DIM) * DIM;
    uint16_t *host = malloc(wbytes);
    float xs[DIM];
    if (!host) s = QN_ERR_OUT_OF_MEMORY;
    for (size_t i = 0; s == QN_OK && i < wbytes / 2; i++) host[i] = (uint16_t)((i * 2654435761u) >> 7) & 0x3bff;
    for (int i = 0; i < DIM; i++) xs[i] = (float)(i % 13) * 0.01f - 0.06f;
    for (int i = 0; s == QN_OK && i < N_OPS; i++) {
        s = qn_buffer_alloc(dev, QN_Q6_K, 2, (int64_t[]){DIM, DIM}, &bufs[3 * i]);
        if (s == QN_OK) s = qn_buffer_alloc(dev, QN_F32, 1, (int64_t[]){DIM}, &bufs[3 * i + 1]);
        if (s == QN_OK) s = qn_buffer_alloc(dev, QN_F32, 1, (int64_t[]){DIM}, &bufs[3 * i + 2]);
        if (s == QN_OK) s = qn_buffer_write(bufs[3 * i], 0, host, wbytes);
        if (s == QN_OK) s = qn_buffer_write(bufs[3 * i + 1], 0, xs, sizeof xs);
        if (s == QN_OK) {
            all.w[i] = qn_tensor_of(bufs[3 * i]);
            all.x[i] = qn_tensor_of(bufs[3 * i + 1]);
            all.y[i] = qn_tensor_of(bufs[3 * i + 2]);
        }
    }
    free(host);
    if (s == QN_OK) s = qn_encoder_create(dev, &enc);
    if (s == QN_OK) s = qn_worker_create(dev, &worker);

    /* Warm-up: kernels compiled and loaded, memory touched, and half a
     * second of work so an idle GPU has raised its clocks. */
    stage = "warming up";
    for (double t0 = qn_cli_now_us(); s == QN_OK && qn_cli_now_us() - t0 < 500e3;) {
        s = encode_range(enc, &all);
        if (s == QN_OK) s = qn_encoder_commit_wait(enc);
    }

    stage = "serial";
    for (int k = 0; s == QN_OK && k < trials; k++) {
        double t0 = qn_cli_now_us();
        s = encode_range(enc, &all);
        if (s == QN_OK) s = qn_encoder_commit_wait(enc);
        t[k] = qn_cli_now_us() - t0;
    }

    stage = "worker";
    op_range second = all, first = all;
    first.count = second.first = second.count = N_OPS / 2;
    for (int k = 0; s == QN_OK && k < trials; k++) {
        double t0 = qn_cli_now_us();
        s = qn_worker_submit(worker, enc, encode_range, &second);
        if (s == QN_OK) s = encode_range(enc, &first);
        qn_status j = qn_worker_join(worker, enc);
        if (s == QN_OK) s = j;
        if (s == QN_OK) s = qn_encoder_commit_wait(enc);
        t[trials + k] = qn_cli_now_us() - t0;
    }

    stage = "graph";
    if (s == QN_OK) s = qn_graph_begin(enc);
    if (s == QN_OK) {
        s = encode_range(enc, &all);
        qn_status e = qn_graph_end(enc, &graph);
        if (s == QN_OK) s = e;
    }
    for (int k = 0; s == QN_OK && k < trials; k++) {
        double t0 = qn_cli_now_us();
        s = qn_graph_launch(graph, enc);
        if (s == QN_OK) s = qn_encoder_commit_wait(enc);
        t[2 * trials + k] = qn_cli_now_us() - t0;
    }

    if (s == QN_OK && opts->profile) s = qn_bench_profile(enc, encode_all, &all); /* one more serial pass */

    int rc = 0;
    if (s != QN_OK) {
        rc = qn_cli_fail(stage, s);
    } else {
        stat ser = summarize(t, trials), wk = summarize(t + trials, trials), gr = summarize(t + 2 * trials, trials);
        printf("ops: %d x q6_K matvec %dx%d (%.1f MB of weights each); %d trials\n", N_OPS, DIM, DIM,
               wbytes / 1e6, trials);
        printf("%-8s min %9.1f us  mean %9.1f us  (%.2f us/op)\n", "serial", ser.min, ser.mean, ser.min / N_OPS);
        printf("%-8s min %9.1f us  mean %9.1f us  (%.2f us/op)\n", "worker", wk.min, wk.mean, wk.min / N_OPS);
        printf("%-8s min %9.1f us  mean %9.1f us  (%.2f us/op, %zu nodes)\n", "graph", gr.min, gr.mean,
               gr.min / N_OPS, qn_graph_nodes(graph));
        const char *best = ser.min <= wk.min && ser.min <= gr.min ? "serial" : wk.min <= gr.min ? "worker" : "graph";
        printf("verdict: %s wins; worker vs serial %.3fx, graph vs serial %.3fx\n", best, ser.min / wk.min,
               ser.min / gr.min);
    }
    qn_graph_destroy(graph);
    qn_worker_destroy(worker);
    qn_encoder_destroy(enc);
    for (int i = 0; i < 3 * N_OPS; i++) qn_buffer_free(bufs[i]);
    free(t);
    return rc;
}
