/* The table of benchmark cases; each lives in its own file in bench/. */
#include "bench.h"

int qn_bench_encode_worker(qn_device *dev, const qn_bench_opts *opts);
int qn_bench_transfer(qn_device *dev, const qn_bench_opts *opts);
/* formats */
int qn_bench_gguf_upload(qn_device *dev, const qn_bench_opts *opts);
/* quantized matmul */
/* transformer ops */
/* attention */
/* gated delta net */

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
    /* transformer ops cases */
    /* attention cases */
    /* gated delta net cases */
};

const int qn_bench_ncases = sizeof qn_bench_cases / sizeof qn_bench_cases[0];
