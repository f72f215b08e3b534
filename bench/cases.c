/* The table of benchmark cases; each lives in its own file in bench/. */
#include "bench.h"

int qn_bench_encode_worker(qn_device *dev, const qn_bench_opts *opts);
int qn_bench_transfer(qn_device *dev, const qn_bench_opts *opts);
/* formats */
int qn_bench_gguf_upload(qn_device *dev, const qn_bench_opts *opts);
/* quantized matmul */
int qn_bench_matvec(qn_device *dev, const qn_bench_opts *opts);
int qn_bench_matmul(qn_device *dev, const qn_bench_opts *opts);
int qn_bench_id_vs_plain(qn_device *dev, const qn_bench_opts *opts);
int qn_bench_mlx_matvec(qn_device *dev, const qn_bench_opts *opts);
/* transformer ops */
int qn_bench_ops(qn_device *dev, const qn_bench_opts *opts);
/* attention */
int qn_bench_attn_decode(qn_device *dev, const qn_bench_opts *opts);
int qn_bench_attn_prefill(qn_device *dev, const qn_bench_opts *opts);
/* gated delta net */
int qn_bench_deltanet_prefill_4096(qn_device *dev, const qn_bench_opts *opts);
int qn_bench_deltanet_prefill_512(qn_device *dev, const qn_bench_opts *opts);
int qn_bench_deltanet_decode(qn_device *dev, const qn_bench_opts *opts);
/* whole models */
int qn_bench_model_decode(qn_device *dev, const qn_bench_opts *opts);
int qn_bench_model_prefill(qn_device *dev, const qn_bench_opts *opts);

const qn_bench_case qn_bench_cases[] = {
    {"encode-worker", "runtime",
     "60 independent matvec-sized ops: serial encoding vs main thread + worker vs one replayed graph",
     qn_bench_encode_worker},
    {"transfer", "runtime", "host to device and back through qn_buffer_write/read: 4 KiB, 64 MiB, 1 GiB",
     qn_bench_transfer},
    /* formats cases */
    {"gguf-upload", "runtime", "open a 1 GiB GGUF (16 f16 tensors) and upload every tensor to the device",
     qn_bench_gguf_upload},
    /* quantized matmul cases */
    {"matvec", "qmatmul", "quantized matvec (1 token) on ANCHORS.md's shapes, beside llama.cpp", qn_bench_matvec},
    {"matmul", "qmatmul",
     "quantized prefill matmul on tensor cores (512 tokens, moe 512 tokens, the matvec crossover, Gemma 3 270M "
     "shapes), beside llama.cpp",
     qn_bench_matmul},
    {"moe-id-vs-plain", "qmatmul", "expert-routed matvec's per-expert cost against the plain one (q6_K 2816x8192)",
     qn_bench_id_vs_plain},
    {"mlx-matvec", "qmatmul", "MLX affine matvec, 4 and 8 bits, groups of 64, 8B shapes, beside llama.cpp's q4_0/q8_0",
     qn_bench_mlx_matvec},
    /* transformer ops cases */
    {"ops", "ops",
     "norms, RoPE, SwiGLU, softmax, embedding, MoE routing, sampling: 1 and 512 tokens of an 8B shape, vs the read ceiling",
     qn_bench_ops},
    /* attention cases */
    {"attn-decode", "attention",
     "flash attention decode, f16 K/V, 4096 and 32768 keys, head 256 (8/4) and 128 (32/8), vs the read ceiling; a small model's (head 256, 4/1) short contexts",
     qn_bench_attn_decode},
    {"attn-prefill", "attention", "flash attention prefill, f16, head 256, 8/4 heads, 512 queries x 4096 keys",
     qn_bench_attn_prefill},
    /* gated delta net cases */
    {"deltanet-prefill-4096", "deltanet", "gated delta net f32, 4 heads of 128, 4096 tokens (chunked prefill)",
     qn_bench_deltanet_prefill_4096},
    {"deltanet-prefill-512", "deltanet", "gated delta net f32, 32 heads of 128, 512 tokens (chunked prefill)",
     qn_bench_deltanet_prefill_512},
    {"deltanet-decode", "deltanet", "gated delta net f32, 32 heads of 128, one decode step (state in place)",
     qn_bench_deltanet_decode},
    /* whole-model cases */
    {"model-decode", "model", "a model's decode, tg128 and tg512 tokens/s (-m FILE; default: the default model)",
     qn_bench_model_decode},
    {"model-prefill", "model", "a model's prefill, pp512 and pp2048 tokens/s (-m FILE; default: the default model)",
     qn_bench_model_prefill},
};

const int qn_bench_ncases = sizeof qn_bench_cases / sizeof qn_bench_cases[0];
