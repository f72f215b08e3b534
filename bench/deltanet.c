/* The gated delta net on the shapes of ANCHORS.md (f32 activations, head
 * size 128, one value head per key head):
 *   deltanet-prefill-4096   4096 tokens, 4 heads (chunked form)
 *   deltanet-prefill-512    512 tokens, 32 heads (chunked form)
 *   deltanet-decode         1 token, 32 heads (the recurrence, state in place)
 * Each op is captured N times in one graph and the graph replayed
 * (qn_bench_time_graph); the time per op is the best of five replays
 * divided by N, after half a second of warm-up. A replayed graph node costs about 1 us of device time
 * (ANCHORS.md), which the decode figure includes. Printed beside each: the
 * bytes the op must move (inputs read once, outputs and the state written
 * once) as GB/s, and llama.cpp's time on an H100 with the target. */
#include "bench.h"
#include "cli.h"

#include <stdlib.h>

typedef struct {
    int n_tok, heads;
    double llama_us, target_us;
} gdn_bench;

/* One call: the state is read and written in place. */
typedef struct {
    qn_tensor out, state, q, k, v, g, beta, ws;
    float scale;
} gdn_call;

static qn_status gdn_once(qn_encoder *enc, const void *arg, int i) {
    const gdn_call *a = arg;
    (void)i;
    return qn_gated_delta_net(enc, a->out, a->state, a->q, a->k, a->v, a->g, a->beta, a->state, a->ws, a->scale);
}

static int run_case(qn_device *dev, const qn_bench_opts *opts, gdn_bench c) {
    const int64_t d = 128, h = c.heads, t = c.n_tok;
    const bool cpu = qn_device_backend(dev) == QN_BACKEND_CPU;
    const int per_graph = cpu ? 1 : t == 1 ? 100 : 20;
    qn_buffer *q = NULL, *k = NULL, *v = NULL, *g = NULL, *beta = NULL, *state = NULL, *out = NULL, *ws = NULL;
    qn_encoder *enc = NULL;
    const char *stage = "allocating";
    qn_status s = QN_OK;

    /* Inputs: deterministic spread values (not zeros), g in [-0.1, 0]. */
    const size_t nq = (size_t)(d * h * t), ng = (size_t)(h * t), nst = (size_t)(d * d * h);
    const size_t n_host = nq + 3 > nst ? nq + 3 : nst;
    float *host = malloc(n_host * sizeof *host);
    if (!host) s = QN_ERR_OUT_OF_MEMORY;
    for (size_t i = 0; s == QN_OK && i < n_host; i++) host[i] = (float)((i * 2654435761u) % 2001) / 1000.0f - 1.0f;
    qn_buffer **bufs[] = {&q, &k, &v};
    for (int i = 0; s == QN_OK && i < 3; i++) { /* q, k and v shifted from one another */
        s = qn_buffer_alloc(dev, QN_F32, 3, (int64_t[]){d, h, t}, bufs[i]);
        if (s == QN_OK) s = qn_buffer_write(*bufs[i], 0, host + i, nq * sizeof *host);
    }
    if (s == QN_OK) s = qn_buffer_alloc(dev, QN_F32, 4, (int64_t[]){d, d, h, 1}, &state);
    if (s == QN_OK) s = qn_buffer_write(state, 0, host, nst * sizeof *host);
    if (s == QN_OK) s = qn_buffer_alloc(dev, QN_F32, 3, (int64_t[]){d, h, t}, &out);
    for (size_t i = 0; s == QN_OK && i < ng; i++) host[i] = -0.05f * (1.0f + host[i]);
    if (s == QN_OK) s = qn_buffer_alloc(dev, QN_F32, 2, (int64_t[]){h, t}, &g);
    if (s == QN_OK) s = qn_buffer_write(g, 0, host, ng * sizeof *host);
    for (size_t i = 0; s == QN_OK && i < ng; i++) host[i] = 0.5f + 0.4f * (float)((i * 7919) % 100) / 100.0f;
    if (s == QN_OK) s = qn_buffer_alloc(dev, QN_F32, 2, (int64_t[]){h, t}, &beta);
    if (s == QN_OK) s = qn_buffer_write(beta, 0, host, ng * sizeof *host);
    free(host);
    size_t ws_bytes = qn_gated_delta_net_workspace(dev, d, d, h, t, 1);
    qn_tensor wst = {0};
    if (s == QN_OK && ws_bytes > 0) {
        s = qn_buffer_alloc(dev, QN_U8, 1, (int64_t[]){(int64_t)ws_bytes}, &ws);
        if (s == QN_OK) wst = qn_tensor_of(ws);
    }
    if (s == QN_OK) s = qn_encoder_create(dev, &enc);

    gdn_call call = {qn_tensor_of(out), qn_tensor_of(state), qn_tensor_of(q), qn_tensor_of(k), qn_tensor_of(v),
                     qn_tensor_of(g), qn_tensor_of(beta), wst, 0.08838834764831845f /* 1 / sqrt(128) */};
    double best = 0;
    stage = "timing";
    if (s == QN_OK) s = qn_bench_time_graph(enc, gdn_once, &call, per_graph, &best);
    if (s == QN_OK && opts->profile) s = qn_bench_profile(enc, gdn_once, &call);

    int rc = 0;
    if (s != QN_OK) {
        rc = qn_cli_fail(stage, s);
    } else {
        /* q, k, v read and out written (4 bytes each), g and beta read, the state read and written */
        double bytes = 4.0 * (4.0 * (double)nq + 2.0 * (double)ng + 2.0 * (double)nst);
        printf("gated delta net f32, %d heads of %lld, %d token%s: %9.2f us  %7.1f GB/s  (%d ops per graph, best of 5)\n",
               c.heads, (long long)d, c.n_tok, c.n_tok == 1 ? "" : "s", best, bytes / best / 1e3, per_graph);
        printf("  llama.cpp CUDA on an H100: %.2f us; target %.0f us; %s\n", c.llama_us, c.target_us,
               cpu                   ? "(CPU backend: not comparable)"
               : best <= c.target_us ? "target met"
                                     : "target missed");
    }
    qn_encoder_destroy(enc);
    qn_buffer *all[] = {q, k, v, g, beta, state, out, ws};
    for (int i = 0; i < 8; i++) qn_buffer_free(all[i]);
    return rc;
}

int qn_bench_deltanet_prefill_4096(qn_device *dev, const qn_bench_opts *opts) {
    return run_case(dev, opts, (gdn_bench){4096, 4, 2322.40, 150});
}

int qn_bench_deltanet_prefill_512(qn_device *dev, const qn_bench_opts *opts) {
    return run_case(dev, opts, (gdn_bench){512, 32, 316.87, 60});
}

int qn_bench_deltanet_decode(qn_device *dev, const qn_bench_opts *opts) {
    return run_case(dev, opts, (gdn_bench){1, 32, 3.56, 3});
}
