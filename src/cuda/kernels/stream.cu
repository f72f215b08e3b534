/* The read ceiling the benchmarks measure themselves against: n16 16-byte
 * words streamed with 16-byte loads, four in flight per thread
 * (grid-stride). The xor of everything read is stored only in the
 * impossible case that it equals `never`, which keeps the loads without
 * writing. Bytes: 16 n16 read. */
extern "C" __global__ void __launch_bounds__(256) stream_read(const uint4 *src, long long n16, unsigned never,
                                                              unsigned *sink) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    unsigned x = 0;
    for (; i + 3 * stride < n16; i += 4 * stride) {
        uint4 w[4];
#pragma unroll
        for (int u = 0; u < 4; u++) w[u] = src[i + u * stride];
#pragma unroll
        for (int u = 0; u < 4; u++) x ^= w[u].x ^ w[u].y ^ w[u].z ^ w[u].w;
    }
    for (; i < n16; i += stride) {
        uint4 w = src[i];
        x ^= w.x ^ w.y ^ w.z ^ w.w;
    }
    if (x == never) sink[0] = x;
}
