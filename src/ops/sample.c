/* qn_sample: penalties, truncation and a seeded draw on the device; only
 * the token (and its log-probability) need come back to the host. */
#include "ops/transformer.h"

#include <math.h>

qn_status qn_sample(qn_encoder *enc, qn_tensor token, qn_tensor logprob, qn_tensor logits, qn_tensor recent,
                    qn_tensor counter, const qn_sample_params *p) {
    const char *op = "qn_sample";
    QN_TRY(qn_op_check(op, enc, "logits", &logits));
    if (!p) return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: params is NULL", op);
    if (logits.dtype != QN_F32)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: logits is %s (expected f32)", op, qn_dtype_name(logits.dtype));
    int64_t V = logits.ne[0], rows = logits.ne[1];
    if (logits.ne[2] != 1 || logits.ne[3] != 1 || V > (1 << 24))
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: logits [%lld,%lld,%lld,%lld] must be [vocab <= 16777216, rows]", op,
                        (long long)V, (long long)rows, (long long)logits.ne[2], (long long)logits.ne[3]);
    if (isnan(p->temperature) || isinf(p->temperature))
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: temperature %g is not finite", op, (double)p->temperature);
    if (p->top_k < 0 || p->top_k > QN_SAMPLE_MAX_TOP_K)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: top_k %d not in 0..%d", op, p->top_k, QN_SAMPLE_MAX_TOP_K);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: top_p %g not in (0, 1]", op, (double)p->top_p);
    if (p->top_p < 1.0f && p->top_k == 0)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: top_p %g needs top_k in 1..%d (top_k is 0)", op,
                        (double)p->top_p, QN_SAMPLE_MAX_TOP_K);
    if (!(p->min_p >= 0.0f && p->min_p < 1.0f))
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: min_p %g not in [0, 1)", op, (double)p->min_p);
    if (!(p->repeat_penalty > 0.0f) || isinf(p->repeat_penalty))
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: repeat_penalty %g is not finite and > 0", op,
                        (double)p->repeat_penalty);
    QN_TRY(qn_op_check_i32(op, enc, "token", &token, rows, 1));
    if (qn_op_has(&logprob)) {
        QN_TRY(qn_op_check(op, enc, "logprob", &logprob));
        if (logprob.dtype != QN_F32 || logprob.ne[0] != rows || logprob.ne[1] != 1 || logprob.ne[2] != 1 ||
            logprob.ne[3] != 1)
            return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: logprob is %s [%lld,%lld,%lld,%lld], expected f32 [%lld]", op,
                            qn_dtype_name(logprob.dtype), (long long)logprob.ne[0], (long long)logprob.ne[1],
                            (long long)logprob.ne[2], (long long)logprob.ne[3], (long long)rows);
    }
    if (qn_op_has(&recent)) {
        QN_TRY(qn_op_check(op, enc, "recent", &recent));
        if (recent.dtype != QN_I32 || recent.ne[1] != rows || recent.ne[2] != 1 || recent.ne[3] != 1)
            return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: recent is %s [%lld,%lld,%lld,%lld], expected i32 [window, %lld]",
                            op, qn_dtype_name(recent.dtype), (long long)recent.ne[0], (long long)recent.ne[1],
                            (long long)recent.ne[2], (long long)recent.ne[3], (long long)rows);
    }
    bool greedy = p->temperature <= 0.0f;
    if (!greedy && !qn_op_has(&counter))
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: counter is required when temperature %g > 0", op,
                        (double)p->temperature);
    if (qn_op_has(&counter)) QN_TRY(qn_op_check_i32(op, enc, "counter", &counter, rows, 1));
    qn_sample_args a = {qn_op_kt(&token),
                        qn_op_kt_opt(&logprob),
                        qn_op_kt(&logits),
                        qn_op_kt_opt(&recent),
                        qn_op_kt_opt(&counter),
                        qn_op_has(&logprob),
                        qn_op_has(&recent),
                        qn_op_has(&counter),
                        p->top_k,
                        greedy ? 0.0f : p->temperature,
                        p->top_p,
                        p->min_p,
                        p->repeat_penalty,
                        (unsigned long long)p->seed,
                        0,
                        0,
                        0,
                        0,
                        0};
    if (enc->dev->backend == QN_BACKEND_CPU) return qn_cpu_enqueue(enc, "sample", qn_cpu_sample, &a, sizeof a);

    /* Slices of the vocabulary, one block each; for top_k they grow until
     * the merging block's candidates (slices x top_k) fit its stage. Rows
     * go in launches of as many as the encoder's scratch holds, a ticket
     * each. */
    _Static_assert(QN_SAMPLE_MAX_TOP_K <= QN_SAMPLE_THREADS, "the merging block ranks one candidate a thread");
    const bool topk = !greedy && p->top_k > 0;
    a.slice = QN_SAMPLE_SLICE;
    while (topk && (V + a.slice - 1) / a.slice * p->top_k > QN_SAMPLE_MERGE) a.slice *= 2;
    const int64_t slices = (V + a.slice - 1) / a.slice;
    const int64_t data = QN_CUDA_MERGE_SCRATCH_BYTES - 4 * QN_CUDA_MERGE_SCRATCH_COUNTERS;
    a.scratch_row = (16 + 16 * slices + (topk ? 8 * slices * p->top_k : 0) + 15) / 16 * 16;
    int64_t chunk = data / a.scratch_row;
    if (chunk > QN_CUDA_MERGE_SCRATCH_COUNTERS) chunk = QN_CUDA_MERGE_SCRATCH_COUNTERS;
    uint64_t scratch;
    QN_TRY(qn_cuda_encoder_merge_scratch(enc, &scratch));
    a.tickets = scratch;
    a.scratch = scratch + 4 * QN_CUDA_MERGE_SCRATCH_COUNTERS;
    /* top_k stages the slice's keys, then the slices' candidates, in
     * shared memory */
    const int64_t keys = a.slice < QN_SAMPLE_STAGE_KEYS ? a.slice : QN_SAMPLE_STAGE_KEYS;
    const int64_t cands = slices > 1 ? slices * p->top_k : 0;
    const unsigned smem = topk ? (unsigned)(4 * keys > 8 * cands ? 4 * keys : 8 * cands) : 0;
    void *args[] = {&a};
    for (a.row0 = 0; a.row0 < rows; a.row0 += chunk) {
        qn_dim3 grid = {(unsigned)slices, (unsigned)(rows - a.row0 < chunk ? rows - a.row0 : chunk), 1};
        qn_dim3 block = {QN_SAMPLE_THREADS, 1, 1};
        QN_TRY(qn_cuda_launch(enc, "sample", "sample.cu", "", "sample", grid, block, smem, args));
        if (!greedy && !topk)
            QN_TRY(qn_cuda_launch(enc, "sample", "sample.cu", "", "sample_draw", grid, block, 0, args));
    }
    return QN_OK;
}
