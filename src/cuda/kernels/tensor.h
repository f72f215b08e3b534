/* Tensor views as kernels see them, shared by the CPU code and the CUDA
 * kernels (this file is embedded for NVRTC, like numeric.h).
 *
 * qn_kt is passed to kernels by value: address, dtype, ne[4] (innermost
 * first) and byte strides nb[4]. The field types have the same size and
 * alignment in C and CUDA C++, so the host fills it and the kernel reads it. */
#ifndef QN_KERNELS_TENSOR_H
#define QN_KERNELS_TENSOR_H

#include "numeric.h"

typedef struct {
    unsigned long long addr; /* device address (CUDA) or host pointer (CPU) */
    long long ne[4];
    long long nb[4];
    int dtype; /* a qn_dtype value; the QN_KT_* names below */
    int pad_;
} qn_kt;

/* qn_dtype values the kernels handle (quanta.h is not visible to NVRTC). */
#define QN_KT_F32 0
#define QN_KT_F16 1
#define QN_KT_I32 26
#define QN_KT_I64 27
#define QN_KT_BF16 30

/* Bits kernels OR into their encoder's flag word (see qn_encoder). */
#define QN_FLAG_BAD_EXPERT 1  /* an expert id outside [0, n_experts) */
#define QN_FLAG_HOST_MEMORY 2 /* a CPU kernel could not get its scratch memory */

/* Token pasting after expansion, and a float dtype's id from its name, for
 * kernels specialised by a define naming a dtype (-DQN_DST=f16). */
#define QN_CAT_(a, b) a##b
#define QN_CAT(a, b) QN_CAT_(a, b)
#define QN_KT_ID_f32 QN_KT_F32
#define QN_KT_ID_f16 QN_KT_F16
#define QN_KT_ID_bf16 QN_KT_BF16

/* Address of element (i0, i1, i2, i3). */
QN_HD char *qn_kt_at(const qn_kt *t, long long i0, long long i1, long long i2, long long i3) {
    return (char *)t->addr + i0 * t->nb[0] + i1 * t->nb[1] + i2 * t->nb[2] + i3 * t->nb[3];
}

/* An f32, f16 or bf16 element: its raw bits (a load and nothing else), and
 * those bits as f32. The row bodies load every element of a trip before
 * converting any, so on the GPU the loads are in flight together instead of
 * each waiting for the previous one's conversion. */
QN_HD qn_u32 qn_load_bits(const char *p, int dtype) {
    return dtype == QN_KT_F16 || dtype == QN_KT_BF16 ? (qn_u32) * (const qn_u16 *)p : *(const qn_u32 *)p;
}

QN_HD float qn_bits_to_f32(qn_u32 bits, int dtype) {
    if (dtype == QN_KT_F16) return qn_f16_bits_to_f32((qn_u16)bits);
    if (dtype == QN_KT_BF16) return qn_bf16_bits_to_f32((qn_u16)bits);
    return qn_bits_f32(bits);
}

QN_HD float qn_load_f32(const char *p, int dtype) { return qn_bits_to_f32(qn_load_bits(p, dtype), dtype); }

QN_HD void qn_store_f32(char *p, int dtype, float v) {
    if (dtype == QN_KT_F16) *(qn_u16 *)p = qn_f32_to_f16_bits(v);
    else if (dtype == QN_KT_BF16) *(qn_u16 *)p = qn_f32_to_bf16_bits(v);
    else *(float *)p = v;
}

/* Rows of a tensor: ne[1] * ne[2] * ne[3]. */
QN_HD long long qn_kt_rows(const qn_kt *t) { return t->ne[1] * t->ne[2] * t->ne[3]; }

/* Row r of a tensor's rows (i1, i2, i3 flattened, i1 fastest); the CPU
 * splits work by flat row number. */
QN_HD void qn_kt_row(const qn_kt *t, long long r, long long *i1, long long *i2, long long *i3) {
    *i1 = r % t->ne[1];
    *i2 = (r / t->ne[1]) % t->ne[2];
    *i3 = r / (t->ne[1] * t->ne[2]);
}

#if defined(__CUDACC_RTC__) || defined(__CUDACC__)
/* The row kernels' grid: block (x, y, z) takes row (i1, i2, i3), striding
 * by the grid where a dimension has more rows than the grid allows. No
 * division: 64-bit divides cost hundreds of instructions per thread. */
#define QN_FOR_EACH_ROW(t)                                                      \
    for (long long i3 = blockIdx.z; i3 < (t).ne[3]; i3 += gridDim.z)           \
        for (long long i2 = blockIdx.y; i2 < (t).ne[2]; i2 += gridDim.y)       \
            for (long long i1 = blockIdx.x; i1 < (t).ne[1]; i1 += gridDim.x)

/* The first statement of every kernel: wait until the kernel before it on
 * the stream has finished and its writes are visible, then let the next
 * one launch. The launcher starts a kernel whose source opens each kernel
 * with this while its predecessor still runs (programmatic dependent
 * launch, sm_90 on), so a chain of small kernels does not pay a launch
 * latency each; nothing may be read before it. The next kernel's blocks
 * wait in their own QN_GRID_WAIT until this grid has finished. */
#if __CUDA_ARCH__ >= 900
#define QN_GRID_DEPS_WAIT() asm volatile("griddepcontrol.wait;" ::: "memory")
#define QN_GRID_DEPS_RELEASE() asm volatile("griddepcontrol.launch_dependents;" ::: "memory")
#else
#define QN_GRID_DEPS_WAIT() ((void)0)
#define QN_GRID_DEPS_RELEASE() ((void)0)
#endif
#define QN_GRID_WAIT()          \
    do {                        \
        QN_GRID_DEPS_WAIT();    \
        QN_GRID_DEPS_RELEASE(); \
    } while (0)
#endif

/* Row bodies, shared by the CPU and the CUDA kernels: they handle elements
 * i0 = first, first + step, ... < n of one row whose start addresses the
 * caller computed. The CPU runs a whole row (first 0, step 1); a CUDA block
 * splits it (first threadIdx.x, step blockDim.x). */

QN_HD void qn_row_fill(char *d, long long dnb0, int dt, float v, long long first, long long n, long long step) {
    for (long long i = first; i < n; i += step) {
        if (dt == QN_KT_I32) *(int *)(d + i * dnb0) = (int)v;
        else qn_store_f32(d + i * dnb0, dt, v);
    }
}

/* The bulk bodies take QN_ROW_UNROLL elements per trip (first + k * step),
 * loading all before storing any: on the GPU that keeps several loads in
 * flight per thread, which a streaming kernel needs to approach bandwidth. */
#define QN_ROW_UNROLL 4

QN_HD void qn_row_convert(char *d, long long dnb0, int dt, const char *s, long long snb0, int st, long long first,
                          long long n, long long step) {
    for (long long i = first; i < n; i += QN_ROW_UNROLL * step) {
        qn_u32 v[QN_ROW_UNROLL];
        for (int k = 0; k < QN_ROW_UNROLL; k++) v[k] = i + k * step < n ? qn_load_bits(s + (i + k * step) * snb0, st) : 0;
        for (int k = 0; k < QN_ROW_UNROLL; k++)
            if (i + k * step < n) qn_store_f32(d + (i + k * step) * dnb0, dt, qn_bits_to_f32(v[k], st));
    }
}

/* Bytes of `unit` bytes per element (a block, for block types). */
QN_HD void qn_row_bytes(char *d, long long dnb0, const char *s, long long snb0, int unit, long long first,
                        long long n_bytes, long long step) {
    for (long long k = first; k < n_bytes; k += step) d[(k / unit) * dnb0 + k % unit] = s[(k / unit) * snb0 + k % unit];
}

/* The element-wise binary ops, computed in f32 and rounded once on store:
 * d = a + b or a * b; with b NULL, d = a * s (qn_scale). bnb0 is 0 where b
 * is broadcast along the row. */
#define QN_BIN_ADD 0
#define QN_BIN_MUL 1
QN_HD void qn_row_binary(char *d, long long dnb0, int dt, const char *a, long long anb0, int at, const char *b,
                         long long bnb0, int bt, int op, float s, long long first, long long n, long long step) {
    for (long long i = first; i < n; i += QN_ROW_UNROLL * step) {
        qn_u32 x[QN_ROW_UNROLL], y[QN_ROW_UNROLL];
        for (int k = 0; k < QN_ROW_UNROLL; k++) {
            int in = i + k * step < n;
            x[k] = in ? qn_load_bits(a + (i + k * step) * anb0, at) : 0;
            y[k] = in && b ? qn_load_bits(b + (i + k * step) * bnb0, bt) : 0;
        }
        for (int k = 0; k < QN_ROW_UNROLL; k++) {
            if (i + k * step >= n) continue;
            float xf = qn_bits_to_f32(x[k], at), yf = b ? qn_bits_to_f32(y[k], bt) : s;
            qn_store_f32(d + (i + k * step) * dnb0, dt, op == QN_BIN_ADD ? xf + yf : xf * yf);
        }
    }
}

#endif
