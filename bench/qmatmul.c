/* Benchmarks of the quantized matrix products (family "qmatmul"): the
 * shapes of ANCHORS.md, each beside llama.cpp's CUDA figure on an H100.
 *
 * Method: the weights are random bytes (timing does not depend on the
 * values), in as many copies as it takes to pass 256 MB, so successive calls
 * read different memory and the 50 MB L2 cannot serve them; calls rotate
 * through the copies inside one captured graph (qn_bench_time_graph), so
 * the time per call is device time plus a graph node's overhead (~1 us).
 * Bytes: the weights read once (for the routed form: the top-k experts'),
 * x and y once. The ceiling is a 1 GiB streaming read in the same process.
 * Prefill rows (more than one token) print TFLOP/s: 2 N K tokens (times
 * top_k for the routed form) over the time, x in f32 and its conversion
 * included; routed prefill draws top_k distinct random experts a token,
 * a new draw for each call of the graph. */
#include "bench.h"
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    qn_tensor w[16], ids[16];
    qn_mlx_weight mw[16]; /* MLX affine cases */
    qn_tensor x, y;
    int copies, nids; /* weight copies; id sets (routed form) */
    bool mlx;
} mv_args;

static qn_status mv_once(qn_encoder *enc, const void *arg, int i) {
    const mv_args *a = arg;
    if (a->mlx) return qn_qmatmul_mlx(enc, a->y, &a->mw[i % a->copies], a->x);
    if (a->nids) return qn_qmatmul_id(enc, a->y, a->w[i % a->copies], a->x, a->ids[i % a->nids]);
    return qn_qmatmul(enc, a->y, a->w[i % a->copies], a->x);
}

/* Random bytes fast: xorshift over 64-bit words. */
static void fill_random(void *p, size_t n, uint64_t seed) {
    uint64_t s = seed | 1, *q = p;
    for (size_t i = 0; i < n / 8; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        q[i] = s & 0x3bff3bff3bff3bffULL; /* keeps f16 fields finite and modest */
    }
}

typedef struct {
    qn_dtype t;
    int64_t n, k, m;   /* rows, row length, tokens */
    int64_t experts, top_k;
    double llama_us;   /* 0: no anchor */
} mv_case;

/* An MLX weight's three tensors (f16 scales and biases), from `host` bytes
 * (q, then scales and biases). */
static qn_status mlx_alloc(qn_device *dev, const mv_case *c, qn_mlx_quant p, const void *host, qn_buffer *b[3],
                           qn_mlx_weight *w) {
    int64_t words = c->k * p.bits / 32, groups = c->k / p.group_size;
    qn_status s = qn_buffer_alloc(dev, QN_U32, 2, (int64_t[]){words, c->n}, &b[0]);
    if (s == QN_OK) s = qn_buffer_alloc(dev, QN_F16, 2, (int64_t[]){groups, c->n}, &b[1]);
    if (s == QN_OK) s = qn_buffer_alloc(dev, QN_F16, 2, (int64_t[]){groups, c->n}, &b[2]);
    size_t qb = (size_t)(words * c->n * 4), sb = (size_t)(groups * c->n * 2);
    if (s == QN_OK) s = qn_buffer_write(b[0], 0, host, qb);
    if (s == QN_OK) s = qn_buffer_write(b[1], 0, (const char *)host + qb, sb);
    if (s == QN_OK) s = qn_buffer_write(b[2], 0, (const char *)host + qb + sb, sb);
    if (s == QN_OK) *w = (qn_mlx_weight){qn_tensor_of(b[0]), qn_tensor_of(b[1]), qn_tensor_of(b[2]), p.bits, p.group_size};
    return s;
}

/* Time one case (MLX weights when mlx is not NULL; c->t is then ignored);
 * *us per call, *bytes moved per call. */
static qn_status run_case(qn_device *dev, qn_encoder *enc, const mv_case *c, const qn_mlx_quant *mlx, double *us,
                          double *bytes) {
    int64_t row_bytes = mlx ? c->k * mlx->bits / 8 + 4 * (c->k / mlx->group_size) : qn_dtype_row_bytes(c->t, c->k);
    int64_t experts = c->experts ? c->experts : 1;
    size_t wbytes = (size_t)(row_bytes * c->n * experts);
    mv_args a = {.mlx = mlx != NULL};
    const bool routed = c->experts > 0;
    a.copies = (int)((256u << 20) / wbytes + 1);
    if (a.copies > 16) a.copies = 16;
    if (routed) a.copies = 1; /* 128 experts are already 1.6 GB; the ids rotate instead */
    a.nids = routed ? 16 : 0;
    qn_buffer *bw[16 * 3] = {0}, *bi[16] = {0}, *bx = NULL, *by = NULL;
    qn_status s = QN_OK;
    void *host = malloc(wbytes);
    if (!host) return QN_ERR_OUT_OF_MEMORY;
    fill_random(host, wbytes, 0x9e3779b97f4a7c15ULL);
    for (int i = 0; i < a.copies && s == QN_OK && a.mlx; i++) s = mlx_alloc(dev, c, *mlx, host, &bw[3 * i], &a.mw[i]);
    for (int i = 0; i < a.copies && s == QN_OK && !a.mlx; i++) {
        int64_t ne[3] = {c->k, c->n, experts};
        s = qn_buffer_alloc(dev, c->t, routed ? 3 : 2, ne, &bw[i]);
        if (s == QN_OK) s = qn_buffer_write(bw[i], 0, host, wbytes);
        if (s == QN_OK) a.w[i] = qn_tensor_of(bw[i]);
    }
    free(host);
    int32_t *ids = routed ? malloc((size_t)(c->top_k * c->m) * 4) : NULL;
    if (routed && !ids) s = QN_ERR_OUT_OF_MEMORY;
    uint64_t h = 0x2545f4914f6cdd1dULL;
    for (int i = 0; i < a.nids && s == QN_OK; i++) {
        /* each call a different set of experts, as successive tokens route:
         * a token's top_k experts are distinct (a random start, stride 17) */
        for (int64_t t = 0; t < c->m; t++) {
            h ^= h << 13, h ^= h >> 7, h ^= h << 17;
            for (int64_t j = 0; j < c->top_k; j++) ids[t * c->top_k + j] = (int32_t)((h % c->experts + 17 * j) % c->experts);
        }
        s = qn_buffer_alloc(dev, QN_I32, 2, (int64_t[]){c->top_k, c->m}, &bi[i]);
        if (s == QN_OK) s = qn_buffer_write(bi[i], 0, ids, (size_t)(c->top_k * c->m * 4));
        if (s == QN_OK) a.ids[i] = qn_tensor_of(bi[i]);
    }
    free(ids);
    int64_t ymid = routed ? c->top_k : c->m;
    if (s == QN_OK) s = qn_buffer_alloc(dev, QN_F32, routed ? 3 : 2, (int64_t[]){c->k, routed ? 1 : c->m, c->m}, &bx);
    if (s == QN_OK) s = qn_buffer_alloc(dev, QN_F32, routed ? 3 : 2, (int64_t[]){c->n, ymid, c->m}, &by);
    if (s == QN_OK) {
        float *xs = calloc((size_t)(c->k * c->m), 4);
        for (int64_t i = 0; xs && i < c->k * c->m; i++) xs[i] = (float)(i % 17) * 0.01f - 0.08f;
        s = xs ? qn_buffer_write(bx, 0, xs, (size_t)(c->k * c->m * 4)) : QN_ERR_OUT_OF_MEMORY;
        free(xs);
        a.x = qn_tensor_of(bx);
        a.y = qn_tensor_of(by);
    }
    if (s == QN_OK) s = qn_bench_time_graph(enc, mv_once, &a, 32, us);
    int64_t read_experts = routed ? c->top_k * c->m : 1;
    *bytes = (double)row_bytes * c->n * (double)read_experts + 4.0 * c->k * c->m + 4.0 * c->n * ymid * c->m;
    for (int i = 0; i < 16 * 3; i++) qn_buffer_free(bw[i]);
    for (int i = 0; i < 16; i++) qn_buffer_free(bi[i]);
    qn_buffer_free(bx);
    qn_buffer_free(by);
    return s;
}

static const mv_case CASES[] = {
    {QN_Q4_0, 4096, 4096, 1, 0, 0, 9.04},     {QN_Q4_0, 14336, 4096, 1, 0, 0, 16.70},
    {QN_Q4_0, 2816, 2816, 1, 0, 0, 8.78},     {QN_Q4_0, 2048, 640, 1, 0, 0, 8.66},
    {QN_Q4_0, 640, 2048, 1, 0, 0, 8.84},      {QN_Q4_0, 262144, 640, 1, 0, 0, 73.21},
    {QN_Q8_0, 4096, 4096, 1, 0, 0, 9.14},     {QN_Q8_0, 14336, 4096, 1, 0, 0, 25.09},
    {QN_Q8_0, 2816, 2816, 1, 0, 0, 9.13},     {QN_Q8_0, 2048, 640, 1, 0, 0, 9.06},
    {QN_Q8_0, 640, 2048, 1, 0, 0, 8.75},      {QN_Q8_0, 262144, 640, 1, 0, 0, 76.24},
    {QN_Q4_K, 4096, 4096, 1, 0, 0, 9.14},     {QN_Q4_K, 14336, 4096, 1, 0, 0, 19.58},
    {QN_Q4_K, 2816, 2816, 1, 0, 0, 7.21},     {QN_Q4_K, 640, 2048, 1, 0, 0, 6.64},
    {QN_Q4_K, 2048, 1024, 1, 0, 0, 7.61},     {QN_Q4_K, 1024, 2048, 1, 0, 0, 9.07},
    {QN_Q6_K, 4096, 4096, 1, 0, 0, 10.25},    {QN_Q6_K, 14336, 4096, 1, 0, 0, 31.70},
    {QN_Q6_K, 2816, 2816, 1, 0, 0, 8.88},     {QN_Q6_K, 640, 2048, 1, 0, 0, 7.86},
    {QN_Q6_K, 2048, 1024, 1, 0, 0, 6.31},     {QN_Q6_K, 1024, 2048, 1, 0, 0, 6.50},
    {QN_Q5_K, 14336, 4096, 1, 0, 0, 0},       {QN_IQ4_NL, 14336, 4096, 1, 0, 0, 0},
    {QN_Q4_K, 2816, 8192, 1, 128, 8, 52.05},  {QN_Q6_K, 2816, 8192, 1, 128, 8, 86.05},
};

/* Prefill: ANCHORS.md's matmul rows, other types at the same shape, the
 * token counts around the matvec / matmul crossover, Gemma 3 270M's
 * projections at 2048 tokens. */
static const mv_case PREFILL[] = {
    {QN_Q4_0, 4096, 4096, 512, 0, 0, 92.80},   {QN_Q8_0, 4096, 4096, 512, 0, 0, 95.00},
    {QN_Q4_K, 4096, 4096, 512, 0, 0, 103.47},  {QN_Q6_K, 4096, 4096, 512, 0, 0, 124.56},
    {QN_Q5_K, 4096, 4096, 512, 0, 0, 0},       {QN_IQ4_NL, 4096, 4096, 512, 0, 0, 0},
    {QN_Q5_0, 4096, 4096, 512, 0, 0, 0},       {QN_F16, 4096, 4096, 512, 0, 0, 0},
    {QN_Q4_K, 2816, 8192, 512, 128, 8, 4106.10}, {QN_Q6_K, 2816, 8192, 512, 128, 8, 5227.93},
    {QN_Q4_0, 4096, 4096, 8, 0, 0, 0},         {QN_Q4_0, 4096, 4096, 9, 0, 0, 0},
    {QN_Q4_0, 4096, 4096, 16, 0, 0, 0},        {QN_Q4_0, 4096, 4096, 64, 0, 0, 0},
    {QN_Q4_0, 4096, 4096, 200, 0, 0, 0},       {QN_Q5_0, 1024, 640, 2048, 0, 0, 0},
    {QN_Q8_0, 256, 640, 2048, 0, 0, 0},        {QN_Q4_K, 2048, 1024, 2048, 0, 0, 0},
    {QN_Q6_K, 640, 2048, 2048, 0, 0, 0},
};

/* MLX affine weights, f16 scales and biases, groups of 64: 4 bits cost 4.5
 * bits a weight like q4_0, 8 bits 8.5 like q8_0, so llama.cpp's figure for
 * that type at the same shape moves the same bytes (it has no MLX path). */
static const mv_case MLX_CASES[] = {
    {QN_Q4_0, 4096, 4096, 1, 0, 0, 9.04},    {QN_Q4_0, 14336, 4096, 1, 0, 0, 16.70},
    {QN_Q8_0, 4096, 4096, 1, 0, 0, 9.14},    {QN_Q8_0, 14336, 4096, 1, 0, 0, 25.09},
    {QN_Q4_0, 4096, 14336, 1, 0, 0, 0},      {QN_Q4_0, 14336, 4096, 8, 0, 0, 0},
    {QN_Q4_0, 4096, 4096, 512, 0, 0, 92.80}, {QN_Q8_0, 4096, 4096, 512, 0, 0, 95.00},
};
static const qn_mlx_quant MLX_QUANT[] = {{4, 64}, {4, 64}, {8, 64}, {8, 64}, {4, 64}, {4, 64}, {4, 64}, {8, 64}};

/* The cases, with MLX parameters per case when mlx is not NULL. */
static int run_cases(qn_device *dev, const qn_bench_opts *opts, const mv_case *cases, const qn_mlx_quant *mlx,
                     size_t n) {
    if (qn_bench_gpu_only(dev)) return 0;
    qn_encoder *enc;
    double ceiling;
    if (qn_bench_start(dev, &enc, &ceiling)) return 1;
    qn_status s = QN_OK;
    printf("%-44s %9s %9s %7s | %9s %7s %s\n", "case", "us", "GB/s", "ceiling", "llama us", "ceiling", "speedup");
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const mv_case *c = &cases[i];
        char name[96];
        if (mlx)
            snprintf(name, sizeof name, "%s mlx %d-bit g%d %lldx%lld%s%.0lld (llama: %s)", c->m > 1 ? "matmul" : "matvec",
                     mlx[i].bits, mlx[i].group_size, (long long)c->n, (long long)c->k, c->m > 1 ? ", tokens " : "",
                     (long long)(c->m > 1 ? c->m : 0), qn_dtype_name(c->t));
        else if (c->experts)
            snprintf(name, sizeof name, "moe %s %lld experts top-%lld %lldx%lld%s%.0lld", qn_dtype_name(c->t),
                     (long long)c->experts, (long long)c->top_k, (long long)c->n, (long long)c->k,
                     c->m > 1 ? ", tokens " : "", (long long)(c->m > 1 ? c->m : 0));
        else
            snprintf(name, sizeof name, "%s %s %lldx%lld%s%.0lld", c->m > 1 ? "matmul" : "matvec", qn_dtype_name(c->t),
                     (long long)c->n, (long long)c->k, c->m > 1 ? ", tokens " : "", (long long)(c->m > 1 ? c->m : 0));
        if (opts->only && !strstr(name, opts->only)) continue;
        double us, bytes;
        s = run_case(dev, enc, c, mlx ? &mlx[i] : NULL, &us, &bytes);
        if (s != QN_OK) {
            rc = qn_cli_fail(name, s);
            break;
        }
        if (c->m > 1) {
            double flop = 2.0 * c->n * c->k * c->m * (c->experts ? c->top_k : 1), tf = flop / us / 1e6;
            if (c->llama_us > 0)
                printf("%-52s %9.2f %7.1f TF %7s | %9.2f %5.0f TF %.2fx\n", name, us, tf, "", c->llama_us,
                       flop / c->llama_us / 1e6, c->llama_us / us);
            else
                printf("%-52s %9.2f %7.1f TF %7s | %9s\n", name, us, tf, "", "no anchor");
            if (opts->profile) {
                char plan[512];
                if (mlx)
                    s = qn_qmatmul_mlx_plan(dev, mlx[i], c->n, c->k, c->m, plan, sizeof plan);
                else if (c->experts)
                    s = qn_qmatmul_id_plan(dev, c->t, c->n, c->k, c->m, c->experts, c->top_k, plan, sizeof plan);
                else
                    s = qn_qmatmul_plan(dev, c->t, c->n, c->k, c->m, plan, sizeof plan);
                if (s == QN_OK) printf("  plan: %s\n", plan);
            }
            continue;
        }
        double gbs = bytes / us / 1e3;
        if (c->llama_us > 0)
            printf("%-44s %9.2f %9.0f %6.1f%% | %9.2f %6.1f%% %.2fx\n", name, us, gbs, 100 * gbs / ceiling, c->llama_us,
                   100 * bytes / c->llama_us / 1e3 / ceiling, c->llama_us / us);
        else
            printf("%-44s %9.2f %9.0f %6.1f%% | %9s\n", name, us, gbs, 100 * gbs / ceiling, "no anchor");
    }
    qn_encoder_destroy(enc);
    return rc;
}

int qn_bench_matvec(qn_device *dev, const qn_bench_opts *opts) {
    return run_cases(dev, opts, CASES, NULL, sizeof CASES / sizeof CASES[0]);
}

int qn_bench_matmul(qn_device *dev, const qn_bench_opts *opts) {
    return run_cases(dev, opts, PREFILL, NULL, sizeof PREFILL / sizeof PREFILL[0]);
}

int qn_bench_mlx_matvec(qn_device *dev, const qn_bench_opts *opts) {
    return run_cases(dev, opts, MLX_CASES, MLX_QUANT, sizeof MLX_CASES / sizeof MLX_CASES[0]);
}

/* The original library's per-dispatch comparison: the expert-routed matvec
 * (top 8 of 128 experts) against the plain one at the same shape (q6_K,
 * 2816 x 8192), per output row-set. */
int qn_bench_id_vs_plain(qn_device *dev, const qn_bench_opts *opts) {
    (void)opts;
    if (qn_bench_gpu_only(dev)) return 0;
    qn_encoder *enc = NULL;
    qn_status s = qn_encoder_create(dev, &enc);
    mv_case plain = {QN_Q6_K, 2816, 8192, 1, 0, 0, 0}, routed = {QN_Q6_K, 2816, 8192, 1, 128, 8, 0};
    double up, ur, bp, br;
    if (s == QN_OK) s = run_case(dev, enc, &plain, NULL, &up, &bp);
    if (s == QN_OK) s = run_case(dev, enc, &routed, NULL, &ur, &br);
    qn_encoder_destroy(enc);
    if (s != QN_OK) return qn_cli_fail("timing", s);
    printf("plain matvec q6_K 2816x8192:          %8.2f us\n", up);
    printf("routed matvec, top 8 of 128 experts:  %8.2f us (%.2f us per expert)\n", ur, ur / 8);
    printf("routing overhead per expert: %+.1f%%\n", 100.0 * (ur / 8 - up) / up);
    return 0;
}
