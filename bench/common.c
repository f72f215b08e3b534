/* What the benchmark cases share: graph timing and the read ceiling. */
#include "bench.h"
#include "cli.h"
#include "cuda/cuda.h"

#include <stdio.h>

bool qn_bench_gpu_only(qn_device *dev) {
    if (qn_device_backend(dev) == QN_BACKEND_CUDA) return false;
    printf("skipped: this case measures GPU kernels against llama.cpp's CUDA figures\n");
    return true;
}

qn_status qn_bench_time_graph(qn_encoder *enc, qn_bench_fn fn, const void *arg, int reps, double *us) {
    qn_status s = QN_OK;
    /* warm-up: kernels compiled and loaded, and half a second of work so an
     * idle GPU has raised its clocks */
    for (double t0 = qn_cli_now_us(); s == QN_OK && qn_cli_now_us() - t0 < 500e3;) {
        for (int i = 0; i < reps && s == QN_OK; i++) s = fn(enc, arg, i);
        if (s == QN_OK) s = qn_encoder_commit_wait(enc);
    }
    qn_graph *g = NULL;
    if (s == QN_OK) s = qn_graph_begin(enc);
    if (s == QN_OK) {
        for (int i = 0; i < reps && s == QN_OK; i++) s = fn(enc, arg, i);
        qn_status e = qn_graph_end(enc, &g);
        if (s == QN_OK) s = e;
    }
    *us = 1e30;
    for (int r = 0; r < 5 && s == QN_OK; r++) {
        double t0 = qn_cli_now_us();
        s = qn_graph_launch(g, enc);
        if (s == QN_OK) s = qn_encoder_commit_wait(enc);
        double t = (qn_cli_now_us() - t0) / reps;
        if (t < *us) *us = t;
    }
    qn_graph_destroy(g);
    return s;
}

qn_status qn_bench_profile(qn_encoder *enc, qn_bench_fn fn, const void *arg) {
    qn_encoder_set_profiling(enc, true);
    qn_encoder_profile_clear(enc);
    qn_status s = fn(enc, arg, 0);
    if (s == QN_OK) s = qn_encoder_commit_wait(enc);
    if (s == QN_OK) qn_cli_print_profile(enc, stdout);
    qn_encoder_set_profiling(enc, false);
    return s;
}

typedef struct {
    qn_dim3 grid;
    uint64_t src, sink;
    long long n16;
} read_args;

static qn_status read_once(qn_encoder *enc, const void *arg, int i) {
    const read_args *r = arg;
    unsigned never = 0x9e3779b9u;
    (void)i;
    void *args[] = {(void *)&r->src, (void *)&r->n16, &never, (void *)&r->sink};
    return qn_cuda_launch(enc, "stream_read", "stream.cu", "", "stream_read", r->grid, (qn_dim3){256, 1, 1}, 0, args);
}

qn_status qn_bench_read_ceiling(qn_device *dev, qn_encoder *enc, double *gbps) {
    const int64_t bytes = (int64_t)1 << 30; /* 1 GiB: 20 times the L2 */
    qn_device_info info;
    qn_buffer *buf = NULL, *sink = NULL;
    qn_status s = qn_device_info_get(dev, &info);
    if (s == QN_OK) s = qn_buffer_alloc(dev, QN_U8, 1, &bytes, &buf);
    if (s == QN_OK) s = qn_buffer_alloc(dev, QN_U32, 1, (int64_t[]){1}, &sink);
    if (s == QN_OK) {
        qn_tensor tb = qn_tensor_of(buf), ts = qn_tensor_of(sink);
        read_args r = {{(unsigned)info.sm_count * 8, 1, 1}, qn_tensor_addr(&tb), qn_tensor_addr(&ts), bytes / 16};
        double us;
        s = qn_bench_time_graph(enc, read_once, &r, 10, &us);
        *gbps = (double)bytes / us / 1e3;
    }
    qn_buffer_free(buf);
    qn_buffer_free(sink);
    return s;
}

int qn_bench_start(qn_device *dev, qn_encoder **enc, double *ceiling) {
    qn_status s = qn_encoder_create(dev, enc);
    if (s == QN_OK) s = qn_bench_read_ceiling(dev, *enc, ceiling);
    if (s != QN_OK) {
        qn_encoder_destroy(*enc);
        *enc = NULL;
        return qn_cli_fail("measuring the read ceiling", s);
    }
    printf("read ceiling: 1 GiB streamed with 16-byte loads: %.0f GB/s\n", *ceiling);
    return 0;
}
