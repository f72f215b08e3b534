/* Encoders and graphs.
 *
 * CUDA: an encoder is a stream; ops launch as they are encoded, commit has
 * nothing left to submit and wait synchronizes the stream. A graph is a
 * stream capture, instantiated once and launched per replay.
 * CPU: an encoder records ops and commit runs them in order; a graph keeps
 * the recorded list and a replay appends it to an encoder. Either way a
 * replay reads buffer contents when it runs, never when it was captured. */
#include "core/internal.h"
#include "cuda/cuda.h"
#include "cuda/kernels/tensor.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static bool is_cuda(const qn_encoder *enc) { return enc->dev->backend == QN_BACKEND_CUDA; }

qn_status qn_encoder_create(qn_device *dev, qn_encoder **out) {
    if (!dev || !out) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_encoder_create: NULL argument");
    *out = NULL;
    qn_encoder *enc = calloc(1, sizeof *enc);
    if (!enc) return qn_error(QN_ERR_OUT_OF_MEMORY, "qn_encoder_create: out of host memory");
    enc->dev = dev;
    enc->flags_addr = (uint64_t)(uintptr_t)&enc->cpu_flags;
    if (dev->backend == QN_BACKEND_CUDA) {
        qn_status s = qn_cuda_encoder_init(enc);
        if (s != QN_OK) {
            free(enc);
            return s;
        }
    }
    *out = enc;
    return QN_OK;
}

void qn_encoder_destroy(qn_encoder *enc) {
    if (!enc) return;
    if (is_cuda(enc)) qn_cuda_encoder_fini(enc);
    qn_cpu_cmd_list_free(&enc->pending);
    free(enc->times);
    free(enc);
}

qn_device *qn_encoder_device(const qn_encoder *enc) { return enc ? enc->dev : NULL; }

qn_status qn_encoder_note_time(qn_encoder *enc, const char *op, double ms) {
    if (enc->ntimes == enc->times_cap) {
        size_t cap = enc->times_cap ? enc->times_cap * 2 : 64;
        qn_op_time *t = realloc(enc->times, cap * sizeof *t);
        if (!t) return qn_error(QN_ERR_OUT_OF_MEMORY, "qn_encoder_profile: out of host memory");
        enc->times = t;
        enc->times_cap = cap;
    }
    enc->times[enc->ntimes++] = (qn_op_time){op, ms};
    return QN_OK;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* CPU: run the recorded ops in order. */
static qn_status run_pending(qn_encoder *enc) {
    qn_cpu_cmd_list *l = &enc->pending;
    qn_status s = QN_OK;
    for (size_t i = 0; i < l->n; i++) {
        const qn_cpu_cmd *c = &l->cmds[i];
        double t0 = enc->profiling ? now_ms() : 0;
        c->fn(enc->dev, l->args + c->args_offset);
        if (enc->profiling && s == QN_OK) s = qn_encoder_note_time(enc, c->op, now_ms() - t0);
    }
    l->n = 0;
    l->args_len = 0;
    return s;
}

uint64_t qn_encoder_flags(qn_encoder *enc) {
    enc->flags_armed = true;
    return enc->flags_addr;
}

qn_status qn_encoder_flags_status(qn_encoder *enc, int flags) {
    enc->flags_armed = false;
    if (flags & QN_FLAG_BAD_EXPERT)
        return qn_error(QN_ERR_INVALID_ARGUMENT,
                        "qn_qmatmul_id: an expert id was outside [0, n_experts); those outputs were not written");
    if (flags & QN_FLAG_HOST_MEMORY)
        return qn_error(QN_ERR_OUT_OF_MEMORY, "a CPU kernel found no host memory for its scratch; its outputs were not written");
    return QN_OK;
}

qn_status qn_encoder_commit(qn_encoder *enc) {
    if (!enc) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_encoder_commit: enc is NULL");
    if (enc->capturing)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_encoder_commit: the encoder is capturing a graph (end it first)");
    if (is_cuda(enc)) return QN_OK;
    QN_TRY(run_pending(enc));
    if (!enc->flags_armed) return QN_OK;
    int flags = enc->cpu_flags;
    enc->cpu_flags = 0;
    return qn_encoder_flags_status(enc, flags);
}

qn_status qn_encoder_wait(qn_encoder *enc) {
    if (!enc) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_encoder_wait: enc is NULL");
    if (enc->capturing)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_encoder_wait: the encoder is capturing a graph (end it first)");
    /* CPU work finishes inside commit. */
    return is_cuda(enc) ? qn_cuda_encoder_wait(enc) : QN_OK;
}

qn_status qn_encoder_commit_wait(qn_encoder *enc) {
    QN_TRY(qn_encoder_commit(enc));
    return qn_encoder_wait(enc);
}

qn_status qn_encoder_set_profiling(qn_encoder *enc, bool on) {
    if (!enc) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_encoder_set_profiling: enc is NULL");
    enc->profiling = on;
    return QN_OK;
}

qn_status qn_encoder_profile(qn_encoder *enc, const qn_op_time **times, size_t *count) {
    if (!enc || !times || !count) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_encoder_profile: NULL argument");
    if (is_cuda(enc)) QN_TRY(qn_cuda_encoder_profile(enc));
    *times = enc->times;
    *count = enc->ntimes;
    return QN_OK;
}

void qn_encoder_profile_clear(qn_encoder *enc) {
    if (!enc) return;
    enc->ntimes = 0;
    if (is_cuda(enc)) qn_cuda_encoder_profile_clear(enc);
}

/* ---- graphs */

qn_status qn_graph_begin(qn_encoder *enc) {
    if (!enc) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_graph_begin: enc is NULL");
    if (enc->capturing) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_graph_begin: already capturing");
    if (is_cuda(enc)) {
        QN_TRY(qn_cuda_graph_begin(enc));
    } else {
        QN_TRY(run_pending(enc)); /* ops encoded before the capture are not part of it */
    }
    enc->capturing = true;
    enc->armed_before_capture = enc->flags_armed;
    enc->flags_armed = false;
    return QN_OK;
}

qn_status qn_graph_end(qn_encoder *enc, qn_graph **out) {
    if (!enc || !out) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_graph_end: NULL argument");
    *out = NULL;
    if (!enc->capturing) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_graph_end: the encoder is not capturing");
    enc->capturing = false;
    bool arms = enc->flags_armed;
    enc->flags_armed = enc->armed_before_capture;
    qn_graph *g = calloc(1, sizeof *g);
    if (!g) {
        if (!is_cuda(enc)) enc->pending.n = enc->pending.args_len = 0;
        return qn_error(QN_ERR_OUT_OF_MEMORY, "qn_graph_end: out of host memory");
    }
    g->dev = enc->dev;
    g->arms_flags = arms;
    if (is_cuda(enc)) {
        qn_status s = qn_cuda_graph_end(enc, g);
        if (s != QN_OK) {
            free(g);
            return s;
        }
    } else {
        g->cpu = enc->pending; /* the recorded ops become the graph */
        memset(&enc->pending, 0, sizeof enc->pending);
        g->nodes = g->cpu.n;
    }
    *out = g;
    return QN_OK;
}

qn_status qn_graph_launch(qn_graph *g, qn_encoder *enc) {
    if (!g || !enc) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_graph_launch: NULL argument");
    if (g->dev != enc->dev)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_graph_launch: graph and encoder belong to different devices");
    if (enc->capturing) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_graph_launch: the encoder is capturing");
    if (g->arms_flags) enc->flags_armed = true;
    if (is_cuda(enc)) return qn_cuda_graph_launch(g, enc);
    return qn_cpu_cmd_list_append(&enc->pending, &g->cpu);
}

void qn_graph_destroy(qn_graph *g) {
    if (!g) return;
    if (g->dev->backend == QN_BACKEND_CUDA) qn_cuda_graph_destroy(g);
    qn_cpu_cmd_list_free(&g->cpu);
    free(g);
}

size_t qn_graph_nodes(const qn_graph *g) { return g ? g->nodes : 0; }
