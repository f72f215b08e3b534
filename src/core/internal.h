/* The runtime's objects, shared by core, the two backends and the ops.
 *
 * A device is either the CPU backend (a thread pool; ops are recorded by an
 * encoder and run at commit) or the CUDA backend (a context and streams; ops
 * launch onto the encoder's stream as they are encoded). */
#ifndef QN_CORE_INTERNAL_H
#define QN_CORE_INTERNAL_H

#include "quanta.h"
#include "core/error.h"

#include <pthread.h>
#include <stdatomic.h>

typedef struct qn_cpu_device qn_cpu_device;   /* src/cpu/cpu.c   */
typedef struct qn_cuda_device qn_cuda_device; /* src/cuda/cuda.c */

struct qn_device {
    qn_backend backend;
    qn_device_info info;
    qn_cpu_device *cpu;   /* CPU backend state; NULL on CUDA */
    qn_cuda_device *cuda; /* CUDA backend state; NULL on CPU */
};

struct qn_buffer {
    qn_device *dev;
    qn_buffer *base;      /* a view's owner; NULL for an owner */
    atomic_int refs;      /* owner: itself plus its live views */
    uint64_t addr;        /* host pointer (CPU) or CUdeviceptr (CUDA) */
    size_t bytes;
    qn_dtype dtype;
    int ndim;
    int64_t ne[4];
    qn_pool *pool;        /* the pool an owner came from, or NULL */
    size_t pool_bucket;   /* its bucket size in bytes */
    qn_buffer *pool_next; /* link in the pool's lists */
};

/* Memory of a tensor as a host pointer (CPU) or device address (CUDA). */
static inline uint64_t qn_tensor_addr(const qn_tensor *t) { return t->buf->addr + t->offset; }

/* ---- CPU backend (src/cpu/cpu.c) */

/* An op recorded on a CPU encoder: fn(dev, args) with a private copy of args. */
typedef void (*qn_cpu_fn)(qn_device *dev, const void *args);
typedef struct {
    const char *op;
    qn_cpu_fn fn;
    size_t args_offset, args_size; /* into the list's argument bytes */
} qn_cpu_cmd;
typedef struct {
    qn_cpu_cmd *cmds;
    size_t n, cap;
    unsigned char *args;
    size_t args_len, args_cap;
} qn_cpu_cmd_list;

qn_status qn_cpu_device_open(qn_device *dev);
void qn_cpu_device_close(qn_device *dev);
/* Record an op on a CPU encoder (it runs at commit). */
qn_status qn_cpu_enqueue(qn_encoder *enc, const char *op, qn_cpu_fn fn, const void *args,
                         size_t args_size);
qn_status qn_cpu_cmd_list_append(qn_cpu_cmd_list *list, const qn_cpu_cmd_list *src);
void qn_cpu_cmd_list_free(qn_cpu_cmd_list *list);
/* Run fn(ctx, begin, end) over [0, n) split across the device's threads.
 * Calls from several threads take turns. */
void qn_cpu_parallel_for(qn_device *dev, int64_t n, void (*fn)(void *ctx, int64_t begin, int64_t end),
                         void *ctx);

/* ---- encoder */

typedef struct qn_cuda_event_pair qn_cuda_event_pair;

struct qn_encoder {
    qn_device *dev;
    bool capturing;
    bool profiling;
    /* Problems only the kernels can see (an expert id out of range): they OR
     * a QN_FLAG_* bit into this word, and the next wait reports it. On the
     * GPU the word is device memory, read back only when an op that may set
     * it was encoded since the last wait. */
    uint64_t flags_addr; /* CUDA: CUdeviceptr of an int; CPU: &cpu_flags */
    int cpu_flags;
    bool flags_armed;
    bool armed_before_capture;
    qn_op_time *times; /* profile results, filled by qn_encoder_profile */
    size_t ntimes, times_cap;
    /* CPU */
    qn_cpu_cmd_list pending; /* encoded, not yet committed */
    /* CUDA */
    void *stream;              /* CUstream */
    uint64_t merge_scratch;    /* CUdeviceptr: qn_cuda_encoder_merge_scratch's, 0 until used */
    /* Device scratch of ops that need working memory (qn_cuda_encoder_scratch):
     * grown on demand; a replaced area stays allocated until the encoder is
     * destroyed, since graphs captured earlier may still use it. */
    uint64_t scratch;
    size_t scratch_bytes;
    uint64_t *retired;
    size_t nretired;
    /* What the last kernel on the stream may still write while the next
     * one starts (programmatic dependent launch): [pdl_lo, pdl_hi). */
    uint64_t pdl_lo, pdl_hi;
    qn_cuda_event_pair *evs;   /* profile events, one pair an op */
    size_t nev, evcap;
};

/* The flag word for an op's kernel, armed so the next wait checks it. */
uint64_t qn_encoder_flags(qn_encoder *enc);
/* After a wait: QN_OK, or the error the flag bits describe (and clear). */
qn_status qn_encoder_flags_status(qn_encoder *enc, int flags);

/* Profile bookkeeping shared by both backends: remember that op `name` ran
 * (CPU: with its time). */
qn_status qn_encoder_note_time(qn_encoder *enc, const char *op, double ms);

/* ---- graphs */

struct qn_graph {
    qn_device *dev;
    size_t nodes;
    bool arms_flags; /* holds an op that may set its encoder's flag word */
    qn_cpu_cmd_list cpu; /* CPU: the recorded ops */
    void *graph;         /* CUDA: CUgraph */
    void *exec;          /* CUDA: CUgraphExec */
};

/* ---- memory (src/core/buffer.c, src/core/pool.c) */

/* Device memory (CPU: 64-byte aligned host memory) without a buffer object. */
qn_status qn_device_alloc_raw(qn_device *dev, size_t bytes, uint64_t *addr);
void qn_device_free_raw(qn_device *dev, uint64_t addr);

qn_status qn_buffer_wrap(qn_device *dev, uint64_t addr, size_t bytes, qn_dtype dtype, int ndim,
                         const int64_t *ne, qn_buffer **out);
qn_status qn_buffer_shape_bytes(const char *who, qn_dtype dtype, int ndim, const int64_t *ne,
                                size_t *bytes);
void qn_pool_give_back(qn_buffer *buf);

#endif
