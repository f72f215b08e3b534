/* Whole-model benchmarks on a GGUF (-m FILE, default: the cached default
 * model), measured the way llama-bench reports them so the figures compare
 * with ANCHORS.md: decode of 128 and 512 tokens from an empty context
 * (tg128, tg512: greedy, one replayed graph a token, the id read back each
 * token), prefill of 512 and 2048 tokens (pp512, pp2048). Run it on the
 * real file and on a same-shape file of random weights
 * (`quanta quantize REAL.gguf SAME.gguf keep --random 1`), as the anchor was.
 * On a GPU also tg128 with its steps queued back to back (each step's
 * sampled id stays on the device and feeds the next; the host waits once):
 * the device's time a token, so the difference to tg128 is what the
 * host's round trip a token costs (wait, read the id, launch).
 * With --profile: the per-op device times of one decode step, replayed as a
 * graph. */
#include "bench.h"
#include "cli.h"
#include "model_commands.h"
#include "models/model.h"

#include <stdio.h>
#include <stdlib.h>

static int fail(const char *what, qn_status s) {
    fprintf(stderr, "quanta bench: %s: %s (%s)\n", what, qn_last_error(), qn_status_name(s));
    return 1;
}

/* The model (opts->model or the default one), its info, and a context of
 * n_ctx positions; nonzero (said on stderr) on failure. */
static int open_model(qn_device *dev, const qn_bench_opts *opts, int32_t n_ctx, qn_model **m, qn_model_info *info,
                      qn_context **c) {
    char def[1024];
    const char *path = opts->model ? opts->model : qn_default_model_path(def, sizeof def);
    qn_status s = qn_model_load(dev, path, NULL, NULL, m);
    if (s != QN_OK) return fail(path, s);
    qn_model_info_get(*m, info);
    printf("model: %s (%s, %d layers, %.1f MB of weights)\n", path, info->name, info->n_layer,
           (double)info->weight_bytes / 1e6);
    s = qn_context_create(*m, n_ctx, c);
    return s != QN_OK ? fail("qn_context_create", s) : 0;
}

/* Decode n tokens after a one-token prompt; tokens/s. With queued, the
 * steps go back to back (qn_context_queue_step, the step graph captured by
 * an earlier call) and the host waits once, instead of reading each id. */
static qn_status decode_rate(qn_context *c, int n, bool queued, double *rate) {
    const qn_sample_params greedy = {.temperature = 0.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f,
                                     .repeat_penalty = 1.0f, .seed = 1};
    int32_t tok = 2;
    qn_context_reset(c);
    QN_TRY(qn_context_eval(c, &tok, 1));
    QN_TRY(qn_context_sample(c, &greedy, &tok));
    double t0 = qn_cli_now_us();
    for (int i = 0; i < n; i++) {
        if (queued) QN_TRY(qn_context_queue_step(c, c->pos + i));
        else QN_TRY(qn_context_decode(c, &greedy, &tok));
    }
    if (queued) QN_TRY(qn_encoder_commit_wait(c->enc));
    *rate = n / ((qn_cli_now_us() - t0) * 1e-6);
    return QN_OK;
}

int qn_bench_model_decode(qn_device *dev, const qn_bench_opts *opts) {
    qn_model *m = NULL;
    qn_context *c = NULL;
    qn_model_info info;
    int rc = open_model(dev, opts, 4096, &m, &info, &c);
    double rate = 0;
    qn_status s = rc ? QN_ERR_DEVICE : decode_rate(c, 4, false, &rate); /* warm-up: kernels compiled, graph captured */
    /* The CPU backend runs tg16 only: a 2-core machine decodes a few tokens a second. */
    const bool cpu = qn_device_backend(dev) == QN_BACKEND_CPU;
    for (int i = 0; i < (cpu ? 1 : 2) && s == QN_OK; i++) {
        const int n = cpu ? 16 : i ? 512 : 128;
        s = decode_rate(c, n, false, &rate);
        if (s == QN_OK)
            printf("tg%-4d %9.1f tokens/s  %8.1f us a token  %7.1f GB/s of weights a token\n", n, rate, 1e6 / rate,
                   (double)info.weight_bytes * rate / 1e9);
    }
    if (s == QN_OK && !cpu) {
        double per_token = 0;
        s = decode_rate(c, 128, false, &per_token);
        if (s == QN_OK) s = decode_rate(c, 128, true, &rate);
        if (s == QN_OK)
            printf("tg128 back to back %9.1f tokens/s  %8.1f us a token: the host's round trip costs %.1f us a token\n",
                   rate, 1e6 / rate, 1e6 / per_token - 1e6 / rate);
    }
    if (s == QN_OK && opts->profile) {
        /* One decode step's forward pass, captured with its timing events and
         * replayed once: each op's device time as a replay runs it. */
        qn_encoder *enc = c->enc;
        qn_graph *g = NULL;
        qn_encoder_set_profiling(enc, true);
        qn_encoder_profile_clear(enc);
        s = qn_graph_begin(enc);
        if (s == QN_OK) {
            s = m->arch->forward(c, enc, 1);
            qn_status e = qn_graph_end(enc, &g);
            if (s == QN_OK) s = e;
        }
        if (s == QN_OK) s = qn_graph_launch(g, enc);
        if (s == QN_OK) s = qn_encoder_commit_wait(enc);
        if (s == QN_OK) qn_cli_print_profile(enc, stdout);
        qn_encoder_set_profiling(enc, false);
        qn_graph_destroy(g);
    }
    if (s != QN_OK && !rc) fail("model-decode", s);
    qn_context_free(c);
    qn_model_free(m);
    return s != QN_OK;
}

int qn_bench_model_prefill(qn_device *dev, const qn_bench_opts *opts) {
    qn_model *m = NULL;
    qn_context *c = NULL;
    qn_model_info info;
    const int most = 2048;
    int rc = open_model(dev, opts, most, &m, &info, &c);
    int32_t *ids = malloc(most * sizeof *ids);
    qn_status s = rc ? QN_ERR_DEVICE : ids ? QN_OK : qn_error(QN_ERR_OUT_OF_MEMORY, "model-prefill: ids");
    uint32_t r = 12345;
    for (int i = 0; i < most && s == QN_OK; i++) ids[i] = (int32_t)((r = r * 1664525u + 1013904223u) % (uint32_t)info.n_vocab);
    for (int i = 0; i < 2 && s == QN_OK; i++) {
        const int n = i ? 2048 : 512;
        double best = 1e30;
        for (int rep = 0; rep < 4 && s == QN_OK; rep++) { /* the first one warms up */
            qn_context_reset(c);
            double t0 = qn_cli_now_us();
            s = qn_context_eval(c, ids, (size_t)n);
            double t = qn_cli_now_us() - t0;
            if (rep > 0 && t < best) best = t;
        }
        if (s == QN_OK) printf("pp%-4d %9.0f tokens/s  %8.1f us\n", n, n / (best * 1e-6), best);
    }
    if (s != QN_OK && !rc) fail("model-prefill", s);
    free(ids);
    qn_context_free(c);
    qn_model_free(m);
    return s != QN_OK;
}
