/*
 * quanta: quantized LLM inference on NVIDIA GPUs, with a portable CPU backend.
 *
 * The one public header. Every fallible call returns a qn_status; on failure
 * qn_last_error() holds a message (thread-local) that names the call and the
 * offending value. The library never aborts, exits or prints.
 *
 * Objects:
 *   qn_device   a backend (cpu or cuda) and its queue
 *   qn_buffer   device memory with a dtype and shape; views share memory
 *   qn_pool     power-of-two buckets of buffers, reset once per step
 *   qn_encoder  an ordered queue of ops (a CUDA stream on the GPU)
 *   qn_graph    a captured sequence of encoded ops, replayed as one
 *   qn_worker   a thread with its own encoder, joined through events
 *
 * Tensor arguments are views (qn_tensor): buffer, byte offset, dtype, ne[4]
 * (innermost dimension first, as in GGUF) and byte strides nb[4].
 */
#ifndef QUANTA_H
#define QUANTA_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

#define QN_VERSION_MAJOR 0
#define QN_VERSION_MINOR 1
#define QN_VERSION_PATCH 0

/* "0.1.0" */
const char *qn_version(void);

/* ---------------------------------------------------------------- errors */

typedef enum {
    QN_OK = 0,
    QN_ERR_INVALID_ARGUMENT = 1, /* a bad value from the caller            */
    QN_ERR_OUT_OF_MEMORY = 2,    /* an allocation did not fit              */
    QN_ERR_DEVICE = 3,           /* a CUDA driver or NVRTC call failed     */
    QN_ERR_COMPILE = 4,          /* a kernel did not compile (log in message) */
    QN_ERR_UNSUPPORTED = 5,      /* valid request this build/device lacks  */
    QN_ERR_IO = 6,               /* a file could not be read or written    */
    QN_ERR_FORMAT = 7,           /* a file is malformed or truncated       */
} qn_status;

/* Message of the last failure on this thread ("" if none yet). */
const char *qn_last_error(void);
/* "QN_ERR_INVALID_ARGUMENT", ... */
const char *qn_status_name(qn_status s);

/* ---------------------------------------------------------------- dtypes */

/* Element types. The numbers are GGUF's tensor type ids where GGUF has the
 * type, so a GGUF tensor's type can be used as is. */
typedef enum {
    QN_F32 = 0,
    QN_F16 = 1,
    QN_Q4_0 = 2,
    QN_Q4_1 = 3,
    QN_Q5_0 = 6,
    QN_Q5_1 = 7,
    QN_Q8_0 = 8,
    QN_Q8_1 = 9,
    QN_Q2_K = 10,
    QN_Q3_K = 11,
    QN_Q4_K = 12,
    QN_Q5_K = 13,
    QN_Q6_K = 14,
    QN_Q8_K = 15,
    QN_IQ4_NL = 20,
    QN_IQ4_XS = 23,
    QN_I8 = 24,
    QN_I16 = 25,
    QN_I32 = 26,
    QN_I64 = 27,
    QN_F64 = 28,
    QN_BF16 = 30,
    QN_MXFP4 = 39,
    /* not in GGUF */
    QN_U8 = 100,
    QN_U32 = 101,
} qn_dtype;

/* Name ("f32", "q4_K", ...) or NULL for a value that is not a dtype. */
const char *qn_dtype_name(qn_dtype t);
/* Lookup by name; QN_ERR_INVALID_ARGUMENT for an unknown name. */
qn_status qn_dtype_from_name(const char *name, qn_dtype *out);
/* Elements per block (1 for plain types, 32 for q8_0, 256 for K-quants). */
int64_t qn_dtype_block_elems(qn_dtype t);
/* Bytes per block (4 for f32, 34 for q8_0, 210 for q6_K). 0 if not a dtype. */
int64_t qn_dtype_block_bytes(qn_dtype t);
/* Bytes of a row of n elements; -1 if n is not a multiple of the block (or
 * the byte count would overflow). */
int64_t qn_dtype_row_bytes(qn_dtype t, int64_t n);

/* ---------------------------------------------------------------- device */

typedef enum {
    QN_BACKEND_AUTO = 0, /* QUANTA_BACKEND if set, else cuda if usable, else cpu */
    QN_BACKEND_CPU = 1,
    QN_BACKEND_CUDA = 2,
} qn_backend;

const char *qn_backend_name(qn_backend b);

typedef struct qn_device qn_device;

typedef struct {
    qn_backend backend;
    int index;
    char name[256];
    uint64_t total_memory; /* bytes (host memory for the CPU backend) */
    uint64_t free_memory;  /* bytes, at the time of the call          */
    int cc_major, cc_minor; /* compute capability; 0 on the CPU        */
    int sm_count;           /* multiprocessors; CPU: worker threads    */
    int l2_bytes;           /* 0 on the CPU                            */
    char arch[16];          /* NVRTC target, "sm_90a"; "cpu"            */
} qn_device_info;

/* Number of devices of a backend (cpu: 1; cuda: 0 when no driver). */
qn_status qn_device_count(qn_backend b, int *count);
/* Open device `index` of backend `b`. With QN_BACKEND_AUTO the environment
 * variable QUANTA_BACKEND (cpu|cuda) chooses, else cuda when a GPU is
 * usable, else cpu. QUANTA_DEVICE overrides the index for AUTO. */
qn_status qn_device_open(qn_backend b, int index, qn_device **out);
void qn_device_close(qn_device *dev);
qn_status qn_device_info_get(qn_device *dev, qn_device_info *out);
qn_backend qn_device_backend(const qn_device *dev);
/* Wait until all work queued on the device is done. */
qn_status qn_device_synchronize(qn_device *dev);

/* ---------------------------------------------------------------- buffers */

typedef struct qn_buffer qn_buffer;

/* A buffer of `dtype` with shape ne[0..ndim-1] (innermost first), 1 <= ndim
 * <= 4. The row length ne[0] must be a multiple of the dtype's block. */
qn_status qn_buffer_alloc(qn_device *dev, qn_dtype dtype, int ndim,
                          const int64_t *ne, qn_buffer **out);
/* A view of `base` at a byte offset with its own dtype and shape; it keeps
 * the memory alive and must lie inside `base`. */
qn_status qn_buffer_view(qn_buffer *base, size_t offset, qn_dtype dtype,
                         int ndim, const int64_t *ne, qn_buffer **out);
/* Release a buffer (a pooled one goes back to its pool). NULL is allowed. */
void qn_buffer_free(qn_buffer *buf);

size_t qn_buffer_bytes(const qn_buffer *buf);
qn_dtype qn_buffer_dtype(const qn_buffer *buf);
int qn_buffer_ndim(const qn_buffer *buf);
int64_t qn_buffer_ne(const qn_buffer *buf, int dim);
qn_device *qn_buffer_device(const qn_buffer *buf);

/* Copy host memory into the buffer at a byte offset, and back. Synchronous:
 * when the call returns the data is in place. Work queued on encoders is not
 * waited for: commit and wait before reading what an op wrote. Large writes
 * go through pinned staging. */
qn_status qn_buffer_write(qn_buffer *buf, size_t offset, const void *src,
                          size_t bytes);
qn_status qn_buffer_read(qn_buffer *buf, size_t offset, void *dst,
                         size_t bytes);

/* ---------------------------------------------------------------- pool */

/* Buffers in power-of-two size buckets. Allocations during a step are all
 * returned by qn_pool_reset, so a decode loop allocates nothing after its
 * first step. */
typedef struct qn_pool qn_pool;

qn_status qn_pool_create(qn_device *dev, qn_pool **out);
/* Destroys the pool and all its memory; its buffers must not be used after. */
void qn_pool_destroy(qn_pool *pool);
qn_status qn_pool_alloc(qn_pool *pool, qn_dtype dtype, int ndim,
                        const int64_t *ne, qn_buffer **out);
/* Return every buffer handed out since the last reset to the buckets. */
void qn_pool_reset(qn_pool *pool);
typedef struct {
    size_t bytes_reserved; /* device memory held by the pool   */
    size_t bytes_in_use;   /* bucket bytes handed out now      */
    size_t allocations;    /* device allocations made so far   */
    size_t hits;           /* requests served from a bucket    */
} qn_pool_stats;
void qn_pool_stats_get(const qn_pool *pool, qn_pool_stats *out);

/* ---------------------------------------------------------------- tensors */

/* A view passed to ops. Make one with qn_tensor_of or qn_tensor_make and
 * adjust ne/nb for strided views. */
typedef struct {
    qn_buffer *buf;
    size_t offset;   /* bytes from the start of buf */
    qn_dtype dtype;
    int64_t ne[4];   /* elements, innermost first; unused dims are 1 */
    int64_t nb[4];   /* byte strides; nb[0] is the element (block) size */
} qn_tensor;

/* The whole buffer, contiguous, with the buffer's dtype and shape. */
qn_tensor qn_tensor_of(qn_buffer *buf);
/* A contiguous view of dtype and shape ne0..ne3 at a byte offset. */
qn_tensor qn_tensor_make(qn_buffer *buf, size_t offset, qn_dtype dtype,
                         int64_t ne0, int64_t ne1, int64_t ne2, int64_t ne3);
int64_t qn_tensor_nelements(const qn_tensor *t);

/* ---------------------------------------------------------------- encoder */

typedef struct qn_encoder qn_encoder;

qn_status qn_encoder_create(qn_device *dev, qn_encoder **out);
void qn_encoder_destroy(qn_encoder *enc);
qn_device *qn_encoder_device(const qn_encoder *enc);
/* Submit what was encoded. On the GPU, ops are already queued on the stream
 * as they are encoded; on the CPU commit runs them. */
qn_status qn_encoder_commit(qn_encoder *enc);
/* Wait for everything committed. Returns the first error of the work. */
qn_status qn_encoder_wait(qn_encoder *enc);
qn_status qn_encoder_commit_wait(qn_encoder *enc);

/* Per-op timing: when on, every op records its device time (CUDA events on
 * the GPU, the wall clock on the CPU). Off by default. On the GPU, ops
 * encoded while a graph is captured put their timing events into the graph:
 * after one launch of it and a wait, qn_encoder_profile gives each op's time
 * in that replay, free of the gaps that eager launches leave between ops. */
qn_status qn_encoder_set_profiling(qn_encoder *enc, bool on);
typedef struct {
    const char *op;    /* op name ("add", "copy", ...), static storage */
    double ms;         /* device time */
} qn_op_time;
/* After a wait: the ops timed since the last qn_encoder_profile_clear.
 * The array stays valid until the next clear or encode. */
qn_status qn_encoder_profile(qn_encoder *enc, const qn_op_time **times,
                             size_t *count);
void qn_encoder_profile_clear(qn_encoder *enc);

/* ---------------------------------------------------------------- graphs */

/* Capture the ops encoded between begin and end as a graph; replay runs them
 * again with the same buffers. Values that change between replays (a
 * position, a sequence length) live in device memory that ops read, so one
 * capture serves every step. While capturing nothing executes. Some ops
 * (the routed and large-batch quantized matmul) use working memory owned by
 * the encoder they were captured on: keep that encoder alive while the graph
 * is used, and do not replay the graph on another encoder while the first
 * has work in flight. */
typedef struct qn_graph qn_graph;

qn_status qn_graph_begin(qn_encoder *enc);
qn_status qn_graph_end(qn_encoder *enc, qn_graph **out);
/* Enqueue one replay on `enc` (commit and wait as for any op). */
qn_status qn_graph_launch(qn_graph *graph, qn_encoder *enc);
void qn_graph_destroy(qn_graph *graph);
/* Number of ops captured. */
size_t qn_graph_nodes(const qn_graph *graph);

/* ---------------------------------------------------------------- worker */

/* A thread with its own encoder. Jobs submitted to it encode onto that
 * encoder while the caller encodes on its own; joins order the two through
 * events, never through host waits on the GPU. */
typedef struct qn_worker qn_worker;
typedef qn_status (*qn_job_fn)(qn_encoder *enc, void *arg);

qn_status qn_worker_create(qn_device *dev, qn_worker **out);
void qn_worker_destroy(qn_worker *w);
/* Queue a job. Work it encodes starts after everything already encoded on
 * `after` (may be NULL: no ordering). */
qn_status qn_worker_submit(qn_worker *w, qn_encoder *after, qn_job_fn fn,
                           void *arg);
/* Wait until the worker has encoded every submitted job and committed it,
 * then make `into` (may be NULL) wait on the worker's work on the device.
 * Returns the first error a job returned since the last join. */
qn_status qn_worker_join(qn_worker *w, qn_encoder *into);

/* ---------------------------------------------------------------- kernels */

/* Kernels are CUDA C compiled by NVRTC on first use, cached in memory and on
 * disk ($QUANTA_CACHE_DIR, else $XDG_CACHE_HOME/quanta, else
 * ~/.cache/quanta). Compile every registered variant for the device now;
 * `progress` (may be NULL) is called after each. No-op on the CPU. */
typedef void (*qn_progress_fn)(size_t done, size_t total, const char *name,
                               void *user);
qn_status qn_kernels_precompile(qn_device *dev, qn_progress_fn progress,
                                void *user);
/* Number of registered kernel variants. */
size_t qn_kernels_count(void);

/* ---------------------------------------------------------------- ops */

/* dst = value, converted to dst's dtype (f32, f16, bf16, i32). */
qn_status qn_fill(qn_encoder *enc, qn_tensor dst, float value);
/* dst = src element by element over any strides; shapes must match. Between
 * f32, f16 and bf16 it converts (round to nearest even, NaN and infinity
 * kept); other dtypes copy bytes and must match. */
qn_status qn_copy(qn_encoder *enc, qn_tensor dst, qn_tensor src);
/* dst[idx[i], :] = src[i, :] for every row i, idx (i32 or i64) read from
 * device memory when the op runs, so a graph can write a moving row. src is
 * [ne0, n, ne2, ne3], dst [ne0, rows, ne2, ne3], idx [n]. f32/f16/bf16. */
qn_status qn_set_rows(qn_encoder *enc, qn_tensor dst, qn_tensor src,
                      qn_tensor idx);
/* dst = a + b and dst = a * b, b broadcast where its ne[i] is 1; dst = a *
 * s. f32, f16 and bf16 in any mix; computed in f32. */
qn_status qn_add(qn_encoder *enc, qn_tensor dst, qn_tensor a, qn_tensor b);
qn_status qn_mul(qn_encoder *enc, qn_tensor dst, qn_tensor a, qn_tensor b);
qn_status qn_scale(qn_encoder *enc, qn_tensor dst, qn_tensor a, float s);

/* The copy above also dequantizes: a quantized src (any block type) into an
 * f32, f16 or bf16 dst of the same shape gives ggml's values bit for bit. */

/* Quantize-dequantize round trip: dst = dequant(quant(src)) through `type`
 * (q4_0 or q8_0) with ggml's reference quantizer, block by block; for
 * quantization-sensitivity work. dst and src: contiguous f32 with the same
 * element count, a multiple of 32 (dst may be src). Bit-identical on every
 * backend. */
qn_status qn_qdq(qn_encoder *enc, qn_tensor dst, qn_tensor src, qn_dtype type);

/* An MLX affine-quantized weight on a device: q holds the packed bit stream
 * of each row as u32 words [cols * bits / 32, rows, ...]; scales and biases
 * (f16, bf16 or f32, the same type) [cols / group_size, rows, ...]. */
typedef struct {
    qn_tensor q, scales, biases;
    int bits;       /* 2, 3, 4, 6, 8 */
    int group_size; /* 32, 64, 128 */
} qn_mlx_weight;

/* dst [cols, rows, ...] (f32, f16, bf16) = scale * q + bias per group, as the
 * host's qn_mlx_dequantize_row computes it, on every backend. */
qn_status qn_mlx_dequantize(qn_encoder *enc, qn_tensor dst, const qn_mlx_weight *w);

/* Host conversions with the exact rounding the ops use. */
uint16_t qn_f32_to_f16(float f);
float qn_f16_to_f32(uint16_t h);
uint16_t qn_f32_to_bf16(float f);
float qn_bf16_to_f32(uint16_t h);

/* ------------------------------------------------ formats (begin)
 * GGUF and safetensors files, quantization and dequantization. */

/* ---- quantization on the host
 * Types: f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q8_1, q2_K, q3_K,
 * q4_K, q5_K, q6_K, q8_K, iq4_nl, iq4_xs, mxfp4. Quantization gives the same
 * bytes as ggml's reference quantizers for finite inputs (iq4_nl: as ggml
 * writes files, with the scale search); other inputs give defined bytes. */

/* True if `type` can be quantized to and dequantized from. */
bool qn_dtype_is_quantizable(qn_dtype type);
/* Quantize n floats (a multiple of the type's block) into
 * qn_dtype_row_bytes(type, n) bytes at dst. */
qn_status qn_quantize_row(qn_dtype type, const float *src, void *dst, int64_t n);
/* Dequantize n elements of `type` at src into n floats. */
qn_status qn_dequantize_row(qn_dtype type, const void *src, float *dst, int64_t n);

/* ---- GGUF files (versions 2 and 3)
 * Opening maps the file and checks every count, length, offset and size in
 * it against the file; tensor bytes are not read until used. A malformed or
 * truncated file gives QN_ERR_FORMAT with a message naming the field; a
 * tensor type quanta lacks gives QN_ERR_UNSUPPORTED. */

typedef struct qn_gguf qn_gguf;

/* Metadata value types (GGUF's numbering). */
typedef enum {
    QN_GGUF_UINT8 = 0,
    QN_GGUF_INT8 = 1,
    QN_GGUF_UINT16 = 2,
    QN_GGUF_INT16 = 3,
    QN_GGUF_UINT32 = 4,
    QN_GGUF_INT32 = 5,
    QN_GGUF_FLOAT32 = 6,
    QN_GGUF_BOOL = 7,
    QN_GGUF_STRING = 8,
    QN_GGUF_ARRAY = 9,
    QN_GGUF_UINT64 = 10,
    QN_GGUF_INT64 = 11,
    QN_GGUF_FLOAT64 = 12,
} qn_gguf_type;

/* "uint8", ..., "array"; NULL for a value that is not a type. */
const char *qn_gguf_type_name(qn_gguf_type t);

/* A metadata value: a view into the open file, valid until qn_gguf_close. */
typedef struct {
    qn_gguf_type type;
    qn_gguf_type elem_type; /* ARRAY: the type of its elements             */
    uint64_t count;         /* ARRAY: elements; STRING: bytes; else 1       */
    const void *data;       /* scalar: its little-endian bytes; STRING: its
                               bytes (not NUL-terminated); ARRAY of numbers
                               or bools: the packed elements                */
    const void *raw;        /* the value as encoded in the file, after its
                               type (what qn_gguf_writer_set_value copies)  */
    size_t raw_bytes;
    const qn_gguf *file;    /* internal: for qn_gguf_array_get              */
    uint64_t node;          /* internal                                     */
} qn_gguf_value;

/* Open a file (memory-mapped, read-only). */
qn_status qn_gguf_open(const char *path, qn_gguf **out);
/* Parse `size` bytes at `data` in place; they must outlive the handle. */
qn_status qn_gguf_open_memory(const void *data, size_t size, qn_gguf **out);
void qn_gguf_close(qn_gguf *g);

uint32_t qn_gguf_version(const qn_gguf *g);
/* general.alignment, or 32 when the file does not set it. */
uint32_t qn_gguf_alignment(const qn_gguf *g);
/* Byte offset of the tensor data section in the file. */
uint64_t qn_gguf_data_offset(const qn_gguf *g);

int64_t qn_gguf_kv_count(const qn_gguf *g);
/* Key (NUL-terminated) and value of metadata entry i, in file order. */
qn_status qn_gguf_kv(const qn_gguf *g, int64_t i, const char **key, qn_gguf_value *value);
/* Index of `key`, or -1. */
int64_t qn_gguf_find_key(const qn_gguf *g, const char *key);
/* The value of `key`; QN_ERR_INVALID_ARGUMENT naming the key if absent. */
qn_status qn_gguf_get(const qn_gguf *g, const char *key, qn_gguf_value *value);
/* Element i of an array value (any element type, nested arrays included). */
qn_status qn_gguf_array_get(const qn_gguf_value *array, uint64_t i, qn_gguf_value *out);
/* A number or bool value as int64 (a uint64 above INT64_MAX is an error) or
 * as double; a string value's bytes. Other types: QN_ERR_INVALID_ARGUMENT. */
qn_status qn_gguf_value_int(const qn_gguf_value *v, int64_t *out);
qn_status qn_gguf_value_float(const qn_gguf_value *v, double *out);
qn_status qn_gguf_value_str(const qn_gguf_value *v, const char **s, size_t *len);

typedef struct {
    const char *name;  /* NUL-terminated */
    qn_dtype type;
    int n_dims;        /* 0..4 */
    int64_t ne[4];     /* GGUF order, innermost first; unused dims are 1 */
    uint64_t offset;   /* from the start of the data section */
    uint64_t bytes;
    const void *data;  /* the bytes, in the mapping */
} qn_gguf_tensor;

int64_t qn_gguf_tensor_count(const qn_gguf *g);
qn_status qn_gguf_tensor_get(const qn_gguf *g, int64_t i, qn_gguf_tensor *out);
/* Index of the tensor called `name`, or -1. */
int64_t qn_gguf_find_tensor(const qn_gguf *g, const char *name);
/* A new buffer on `dev` of the tensor's dtype and shape, holding its bytes. */
qn_status qn_gguf_tensor_upload(const qn_gguf *g, int64_t i, qn_device *dev, qn_buffer **out);

/* ---- writing GGUF (version 3)
 * Set metadata and declare tensors, then qn_gguf_writer_begin writes the
 * header, and each tensor's bytes follow in declaration order through
 * qn_gguf_writer_write_tensor, so a file larger than memory can be written.
 * Setting a key again replaces its value. The alignment is general.alignment
 * when set (a uint32 power of two), else 32. */
typedef struct qn_gguf_writer qn_gguf_writer;

qn_status qn_gguf_writer_create(qn_gguf_writer **out);
/* Closes and deletes an unfinished file. NULL is allowed. */
void qn_gguf_writer_destroy(qn_gguf_writer *w);
/* A number or bool; `value` points at a C value of that type (bool: one byte). */
qn_status qn_gguf_writer_set_scalar(qn_gguf_writer *w, const char *key, qn_gguf_type type,
                                    const void *value);
qn_status qn_gguf_writer_set_str(qn_gguf_writer *w, const char *key, const char *s);
/* An array of numbers or bools, `count` packed C values of elem_type. */
qn_status qn_gguf_writer_set_array(qn_gguf_writer *w, const char *key, qn_gguf_type elem_type,
                                   const void *data, uint64_t count);
qn_status qn_gguf_writer_set_str_array(qn_gguf_writer *w, const char *key,
                                       const char *const *strs, uint64_t count);
/* A copy of a value read from a GGUF file (any type, nested arrays too). */
qn_status qn_gguf_writer_set_value(qn_gguf_writer *w, const char *key, const qn_gguf_value *v);
qn_status qn_gguf_writer_add_tensor(qn_gguf_writer *w, const char *name, qn_dtype type,
                                    int n_dims, const int64_t *ne);
qn_status qn_gguf_writer_begin(qn_gguf_writer *w, const char *path);
/* The next declared tensor's bytes (exactly its size). */
qn_status qn_gguf_writer_write_tensor(qn_gguf_writer *w, const void *data, uint64_t bytes);
/* Check every tensor was written and close the file. */
qn_status qn_gguf_writer_finish(qn_gguf_writer *w);

/* ---- safetensors files
 * An 8-byte header length, a JSON header naming each tensor's dtype, shape
 * and byte range, then the data. Opening maps the file and checks the header
 * completely (QN_ERR_FORMAT naming the tensor and field). */
typedef struct qn_safetensors qn_safetensors;

typedef struct {
    const char *name;
    const char *dtype;  /* as in the file: "F32", "BF16", "U32", ...      */
    bool has_type;      /* whether dtype is one of quanta's: then `type`  */
    qn_dtype type;
    int n_dims;         /* 0..8 */
    int64_t shape[8];   /* NumPy order, outermost first */
    uint64_t offset;    /* from the start of the data section */
    uint64_t bytes;
    const void *data;   /* the bytes, in the mapping */
} qn_safetensors_tensor;

qn_status qn_safetensors_open(const char *path, qn_safetensors **out);
/* Parse `size` bytes at `data` in place; they must outlive the handle. */
qn_status qn_safetensors_open_memory(const void *data, size_t size, qn_safetensors **out);
void qn_safetensors_close(qn_safetensors *st);
int64_t qn_safetensors_tensor_count(const qn_safetensors *st);
/* Tensors in the order of their data in the file. */
qn_status qn_safetensors_tensor_get(const qn_safetensors *st, int64_t i, qn_safetensors_tensor *out);
int64_t qn_safetensors_find(const qn_safetensors *st, const char *name);
/* A "__metadata__" string, or NULL. */
const char *qn_safetensors_metadata(const qn_safetensors *st, const char *key);
/* The "__metadata__" entries, in file order. */
int64_t qn_safetensors_metadata_count(const qn_safetensors *st);
qn_status qn_safetensors_metadata_at(const qn_safetensors *st, int64_t i, const char **key, const char **value);

/* ---- MLX affine quantization
 * Groups of group_size (32, 64, 128) consecutive weights share a scale and
 * a bias: w = scale * q + bias, q an unsigned `bits`-bit integer (2, 3, 4,
 * 6, 8). The q of a row are packed little-endian into a bit stream, element
 * i at bit i * bits, stored as uint32 words; scales and biases are f16,
 * bf16 or f32, one per group. A checkpoint's config.json says the bits and
 * group size ("quantization": {"group_size": 64, "bits": 4}, with optional
 * per-module overrides). */
typedef struct {
    int bits;
    int group_size;
} qn_mlx_quant;

/* w = scale * q + bias for n weights (a multiple of the group size), in
 * f32 arithmetic from the stored scale and bias. */
qn_status qn_mlx_dequantize_row(qn_mlx_quant p, qn_dtype scale_type, const void *q, const void *scales,
                                const void *biases, float *dst, int64_t n);
/* MLX's affine quantization of n floats: per group, the scale spans
 * [min, max] over 2^bits - 1 steps with the larger-magnitude end exactly
 * representable; scales and biases are then stored as scale_type. */
qn_status qn_mlx_quantize_row(qn_mlx_quant p, qn_dtype scale_type, const float *src, int64_t n, void *q,
                              void *scales, void *biases);

typedef struct qn_mlx_config qn_mlx_config;
/* Read a checkpoint's config.json ("quantization" or "quantization_config"). */
qn_status qn_mlx_config_open(const char *path, qn_mlx_config **out);
void qn_mlx_config_close(qn_mlx_config *cfg);
/* The parameters of `module` (a weight name less ".weight"): its override,
 * else the default. *quantized is false when the config quantizes nothing
 * or the override is false. */
qn_status qn_mlx_config_lookup(const qn_mlx_config *cfg, const char *module, bool *quantized,
                               qn_mlx_quant *out);
/* Dequantize module `module` of an MLX checkpoint: its packed
 * module.weight (uint32 [rows, cols * bits / 32]) with module.scales and
 * module.biases, into rows * cols floats at dst (`count` of them). */
qn_status qn_safetensors_mlx_dequantize(const qn_safetensors *st, const char *module, qn_mlx_quant p,
                                        float *dst, int64_t count);

/* ------------------------------------------------ formats (end) */


/* ------------------------------------------------ transformer ops (begin) */

/* Norms, RoPE, activations, softmax, embedding rows, mixture-of-experts
 * routing and sampling. Float tensors are f32, f16 or bf16 in any mix
 * unless said otherwise; the arithmetic is f32, rounded once on store. Rows
 * are dimension 0 (ne[0]); every op works on every row (i1, i2, i3). An
 * optional tensor argument is absent when its buf is NULL: pass
 * QN_TENSOR_NONE. dst may be the input itself (in place) where an op reads
 * an element before it writes it, which every op here does except where
 * said. */
#define QN_TENSOR_NONE ((qn_tensor){0})

/* ---- norms (each row of x; w and b are [ne0] vectors shared by the rows) */

/* dst = x / sqrt(mean(x^2) + eps) * (w + weight_offset); without w, no
 * weight. Gemma stores the weight minus one: weight_offset 1. A per-head
 * norm is this op on a [head_dim, heads, tokens] view. */
qn_status qn_rms_norm(qn_encoder *enc, qn_tensor dst, qn_tensor x, qn_tensor w, float eps,
                      float weight_offset);
/* The residual add and the next norm in one pass: sum = a + b (same shape;
 * sum may be a, for a residual stream updated in place), then dst =
 * qn_rms_norm(sum) computed from sum as stored, so the result is exactly
 * what the two separate ops would give. dst must not overlap sum. */
qn_status qn_add_rms_norm(qn_encoder *enc, qn_tensor dst, qn_tensor sum, qn_tensor a, qn_tensor b,
                          qn_tensor w, float eps, float weight_offset);
/* The sandwich norm around a residual add (Gemma 2 and 3): sum = a +
 * qn_rms_norm(b) * b_w, then dst = qn_rms_norm(sum) * w, in one pass; the
 * result is what qn_rms_norm into an f32 tensor followed by qn_add_rms_norm
 * gives. b_w is required; weight_offset applies to b_w and w. */
qn_status qn_norm_add_rms_norm(qn_encoder *enc, qn_tensor dst, qn_tensor sum, qn_tensor a, qn_tensor b,
                               qn_tensor b_w, qn_tensor w, float eps, float weight_offset);
/* dst = x / max(sqrt(sum(x^2)), eps) (as llama.cpp's l2_norm). */
qn_status qn_l2_norm(qn_encoder *enc, qn_tensor dst, qn_tensor x, float eps);
/* dst = (x - mean) / sqrt(variance + eps) * w + b; w and b optional. */
qn_status qn_layer_norm(qn_encoder *enc, qn_tensor dst, qn_tensor x, qn_tensor w, qn_tensor b, float eps);

/* ---- RoPE
 * x is [head_dim, heads, tokens, 1]; pos is i32 in device memory, read when
 * the op runs: [tokens] for NORMAL and NEOX, [4 * tokens] for MULTI,
 * IMULTI and VISION (position of section s of token t at pos[t + s *
 * tokens]). Pair i (0 <= i < n_dims / 2) turns by the angle
 *     theta_i = pos * freq_base^(-2 i / n_dims) / freq_factors[i]
 * scaled as llama.cpp's rope does: linear (theta * freq_scale) and, with
 * ext_factor != 0, YaRN's ramp between the scaled and unscaled angle over
 * the correction dimensions given by beta_fast, beta_slow and n_ctx_orig,
 * with the magnitude attn_factor * (1 + 0.1 ln(1 / freq_scale)); without
 * YaRN the magnitude is attn_factor. Elements from n_dims on pass through. */
typedef enum {
    QN_ROPE_NORMAL = 0, /* pairs (2i, 2i + 1)                                     */
    QN_ROPE_NEOX = 1,   /* pairs (i, i + n_dims / 2)                              */
    QN_ROPE_MULTI = 2,  /* NEOX pairs; pair i takes its position from section s,
                           sections[0..3] consecutive pair ranges (i % their sum)  */
    QN_ROPE_IMULTI = 3, /* NEOX pairs; sections interleaved (Qwen3.5 "imrope"):
                           i % 3 == 0, 1, 2 take sections 0, 1, 2 while within
                           3 * sections[s], the rest section 3                   */
    QN_ROPE_VISION = 4, /* pairs (i, i + n_dims), head_dim = 2 * n_dims; the
                           angle's exponent restarts in each of two sections     */
} qn_rope_mode;

typedef struct {
    qn_rope_mode mode;
    int n_dims;        /* rotated dimensions: even, <= head_dim        */
    float freq_base;   /* 10000, 1e6, ...                               */
    float freq_scale;  /* 1 / linear scaling factor; 1: none             */
    int n_ctx_orig;    /* YaRN: the training context                     */
    float ext_factor;  /* YaRN: 0 off, 1 on                              */
    float attn_factor; /* magnitude scale; 1                             */
    float beta_fast;   /* YaRN: 32                                        */
    float beta_slow;   /* YaRN: 1                                         */
    int sections[4];   /* MULTI, IMULTI, VISION: pairs per section        */
} qn_rope_params;

/* mode, n_dims and freq_base; no scaling (freq_scale 1, ext_factor 0,
 * attn_factor 1, beta_fast 32, beta_slow 1), no sections. */
qn_rope_params qn_rope_params_default(qn_rope_mode mode, int n_dims, float freq_base);
/* dst = x rotated; freq_factors: optional f32 [n_dims / 2]. */
qn_status qn_rope(qn_encoder *enc, qn_tensor dst, qn_tensor x, qn_tensor pos, qn_tensor freq_factors,
                  const qn_rope_params *p);
/* Per-head RMS norm (w over head_dim, optional) then RoPE, in one pass:
 * dst = qn_rope(qn_rms_norm(x)) without the rounding between the two. */
qn_status qn_rms_norm_rope(qn_encoder *enc, qn_tensor dst, qn_tensor x, qn_tensor w, float eps,
                           float weight_offset, qn_tensor pos, qn_tensor freq_factors, const qn_rope_params *p);
/* qn_rms_norm_rope of the new keys, appended to a KV cache in the same
 * pass: cache[:, (pos[0] + t) % capacity, h] = the result for head h of token
 * t, rounded to the cache's dtype (f16 or bf16) as qn_kv_cache_append
 * rounds. x [head_dim, n_kv_heads, n_tokens <= capacity]; cache [head_dim,
 * capacity, n_kv_heads]; pos as qn_rms_norm_rope takes it. */
qn_status qn_rms_norm_rope_append(qn_encoder *enc, qn_tensor cache, qn_tensor x, qn_tensor w, float eps,
                                  float weight_offset, qn_tensor pos, qn_tensor freq_factors,
                                  const qn_rope_params *p);
/* What follows an attention layer's q, k and v projections, in one pass:
 *     q_dst = qn_rms_norm_rope(q, q_w);
 *     qn_rms_norm_rope(k, k_w) appended to k_cache;
 *     v appended to v_cache;
 * each cache row written as qn_kv_cache_append writes it: cache[:, (pos[0]
 * + t) % capacity, h] for head h of token t, rounded to the cache's dtype
 * (f16, bf16 or q8_0; q8_0 keys: head_dim <= 512). The result is the same
 * as qn_rms_norm_rope into q_dst, qn_rms_norm_rope into an f32 tensor with
 * qn_kv_cache_append, and qn_kv_cache_append of v. q, q_dst [head_dim,
 * n_q_heads, n_tokens]; k, v [head_dim, n_kv_heads, n_tokens]; caches
 * [head_dim, capacity, n_kv_heads] with n_tokens <= capacity; n_q_heads a
 * multiple of n_kv_heads (grouped-query attention). eps, weight_offset,
 * pos, freq_factors and p as qn_rms_norm_rope takes them, for q and k
 * alike; q_w and k_w optional. q_dst may be q; it shares no memory with k,
 * v or the caches. */
qn_status qn_rms_norm_rope_qkv(qn_encoder *enc, qn_tensor q_dst, qn_tensor k_cache, qn_tensor v_cache, qn_tensor q,
                               qn_tensor k, qn_tensor v, qn_tensor q_w, qn_tensor k_w, float eps, float weight_offset,
                               qn_tensor pos, qn_tensor freq_factors, const qn_rope_params *p);

/* ---- activations */

typedef enum {
    QN_ACT_SILU = 0,      /* x * sigmoid(x)                                  */
    QN_ACT_GELU_TANH = 1, /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))  */
    QN_ACT_GELU_ERF = 2,  /* 0.5 x (1 + erf(x / sqrt(2)))                    */
    QN_ACT_SIGMOID = 3,   /* 1 / (1 + exp(-x))                               */
} qn_act;

/* dst = act(x). */
qn_status qn_unary(qn_encoder *enc, qn_tensor dst, qn_tensor x, qn_act act);
/* dst = cap * tanh(x / cap) (logit soft-capping), cap > 0. */
qn_status qn_softcap(qn_encoder *enc, qn_tensor dst, qn_tensor x, float cap);
/* Gated units: dst = act(gate) * up (SwiGLU: SILU, GeGLU: GELU_TANH or
 * GELU_ERF, the sigmoid-gated multiply x * sigmoid(g): SIGMOID with gate g
 * and up x). gate and up have dst's shape and one dtype. */
qn_status qn_glu(qn_encoder *enc, qn_tensor dst, qn_tensor gate, qn_tensor up, qn_act act);
/* The same on one tensor x [2 * n, ...] holding the gate then the up half
 * of each row; dst is [n, ...]. */
qn_status qn_glu_fused(qn_encoder *enc, qn_tensor dst, qn_tensor x, qn_act act);

/* ---- softmax over each row: dst = softmax(x * scale + mask). mask is
 * optional, f32 or f16, [ne0, m1, m2, m3] with each m equal to x's or 1
 * (broadcast); -inf masks an element; a row masked completely gives 0. */
qn_status qn_softmax(qn_encoder *enc, qn_tensor dst, qn_tensor x, qn_tensor mask, float scale);

/* ---- embedding rows: dst[:, i] = dequantize(table[:, ids[i]]) * scale.
 * table [n, vocab] of f32, f16, bf16 or any quantized type of
 * qn_dequantize_row; ids i32 [n_ids] in device memory; dst [n, n_ids]
 * f32, f16 or bf16. An id outside [0, vocab) gives a row of zeros. Both
 * backends give the same bits (ggml's dequantization). */
qn_status qn_embed(qn_encoder *enc, qn_tensor dst, qn_tensor table, qn_tensor ids, float scale);

/* ---- mixture-of-experts routing */

typedef enum {
    QN_MOE_SOFTMAX = 0,        /* p = softmax(logits) over all experts           */
    QN_MOE_SIGMOID = 1,        /* p = sigmoid(logits) (DeepSeek V3, GLM)          */
    QN_MOE_SOFTMAX_TOPK = 2,   /* select on logits, p = softmax over the top k   */
} qn_moe_gating;

typedef struct {
    int top_k;             /* 1 .. min(n_experts, 64)                          */
    qn_moe_gating gating;
    bool normalize;        /* weights /= their sum (at least 2^-14)              */
    float scale;           /* weights *= scale after normalizing; 1: none        */
} qn_moe_route_params;

/* For each token (a column of logits [n_experts, tokens], n_experts <=
 * 1024): p from the gating, the top_k experts by p + bias (bias optional
 * f32 [n_experts], the selection bias of DeepSeek V3 / GLM; it chooses but
 * does not weigh), weight = p of each chosen expert, normalized and scaled
 * as asked, times expert_scale[e] (optional f32 [n_experts]). Outputs: ids
 * i32 [top_k, tokens], weights f32 [top_k, tokens], in decreasing order of
 * selection score; equal scores go to the lower expert id. */
qn_status qn_moe_route(qn_encoder *enc, qn_tensor ids, qn_tensor weights, qn_tensor logits, qn_tensor bias,
                       qn_tensor expert_scale, const qn_moe_route_params *p);
/* dst[:, t] = sum_k weights[k, t] * experts[:, k, t]
 *           + sigmoid(shared_gate[t]) * shared[:, t]
 * experts [n, top_k, tokens]; weights f32 [top_k, tokens]; shared [n,
 * tokens] optional (a shared expert's output); shared_gate optional f32
 * [1, tokens] (the gate's logit, e.g. a [hidden] x [1] matvec of the input
 * computed by the caller); without it the shared output is added as is. */
qn_status qn_moe_combine(qn_encoder *enc, qn_tensor dst, qn_tensor experts, qn_tensor weights, qn_tensor shared,
                         qn_tensor shared_gate);

/* ---- sampling on the device
 * For each row of logits (f32 [vocab, rows], vocab <= 2^24), in this order:
 * the repetition penalty on the distinct ids of recent (a logit l > 0
 * becomes l / penalty, else l * penalty; written into logits, which the op
 * therefore changes), then the top_k largest logits, the top_p nucleus (the
 * fewest of them, in decreasing order, whose probability renormalized over
 * the top-k survivors reaches top_p), min_p (probability at least min_p
 * times the largest), and a draw from the survivors with probability
 * proportional to exp(l / temperature). Temperature <= 0 is greedy (the
 * largest logit; ties to the lower id). The draw's uniform number is a
 * hash of (seed, counter[row], row); counter (i32 [rows], device memory,
 * required unless greedy) is then incremented, so a replayed graph draws
 * afresh each step and a rerun from the same counter repeats exactly.
 * Outputs: token i32 [rows]; logprob (optional, f32 [rows]) the chosen
 * token's log-softmax of the penalized logits, before temperature and
 * truncation. recent: optional i32 [window, rows], entries outside [0,
 * vocab) ignored. Limits: top_k 0 (off) or 1..1024; top_p < 1 needs top_k
 * on. On a GPU a row is split over many blocks that merge through the
 * encoder's scratch memory: a graph capturing the op uses that encoder's
 * scratch, so replay it on that encoder and destroy it before the encoder. */
typedef struct {
    float temperature;    /* <= 0: greedy                      */
    int top_k;            /* 0: off                            */
    float top_p;          /* 1: off                            */
    float min_p;          /* 0: off                            */
    float repeat_penalty; /* 1: off                            */
    uint64_t seed;
} qn_sample_params;

#define QN_SAMPLE_MAX_TOP_K 1024

qn_status qn_sample(qn_encoder *enc, qn_tensor token, qn_tensor logprob, qn_tensor logits, qn_tensor recent,
                    qn_tensor counter, const qn_sample_params *p);

/* ------------------------------------------------ transformer ops (end) */

/* ------------------------------------------------ quantized matmul (begin)
 * y = x · Wᵀ with W in any weight type: f32, f16, bf16, q4_0, q4_1, q5_0,
 * q5_1, q8_0, q8_1, q2_K ... q8_K, iq4_nl, iq4_xs, mxfp4. W is [K, N] (N
 * rows of K weights, whole blocks back to back), x [K, M] in f32, f16 or bf16
 * (rows contiguous; on the GPU 16-byte aligned), y f32 [N, M] (rows
 * contiguous). y[n, m] = sum_k W[n, k] x[k, m]. On the GPU, plain-type
 * weights need K a multiple of 8. */
qn_status qn_qmatmul(qn_encoder *enc, qn_tensor y, qn_tensor w, qn_tensor x);
/* Fused gate and up projections: y = act(x · Gᵀ) * (x · Uᵀ), one pass over
 * both weights; act QN_ACT_SILU (SwiGLU), QN_ACT_GELU_TANH or QN_ACT_GELU_ERF
 * (GeGLU). G and U have the same type and shape. */
qn_status qn_qmatmul_glu(qn_encoder *enc, qn_tensor y, qn_tensor gate, qn_tensor up, qn_tensor x, qn_act act);
/* A product whose x is made by a norm first (Gemma's sandwich norm, or a
 * layer's input norm), which a decode step's matvec computes in each of its
 * blocks instead of a kernel of its own:
 *   sum = a + qn_rms_norm(b) * (b_w + weight_offset)   (b absent: sum = a)
 *   x   = qn_rms_norm(sum) * (w + weight_offset)
 * then y = x · Wᵀ as qn_qmatmul (or qn_qmatmul_glu). a, b, sum and x are f32
 * [K, M] with contiguous rows (on the GPU 16-byte aligned); b_w and w f32
 * [K]. sum, the new residual stream, is given exactly when b is; x gets
 * the normed input too (later products of the same input take it as a
 * plain x). Neither may overlap a, b, y or the other. The result is what
 * qn_norm_add_rms_norm (qn_rms_norm without b) followed by the product
 * gives, up to the f32 rounding of the norm's sums. */
typedef struct {
    qn_tensor x, sum, a, b, b_w, w;
    float eps, weight_offset;
} qn_norm_in;
qn_status qn_qmatmul_normed(qn_encoder *enc, qn_tensor y, qn_tensor w, const qn_norm_in *in);
qn_status qn_qmatmul_glu_normed(qn_encoder *enc, qn_tensor y, qn_tensor gate, qn_tensor up, const qn_norm_in *in,
                                qn_act act);
/* Expert-routed (mixture of experts): W [K, N, n_experts], ids i32 [top_k,
 * M] (the experts of each token, read on the device), x [K, 1, M] (every
 * expert sees the token) or [K, top_k, M] (each slot its own input), y f32
 * [N, top_k, M] contiguous: y[:, s, m] = W[ids[s, m]] x[:, s or 0, m]. One
 * launch covers every (slot, token) pair. An id outside [0, n_experts) leaves
 * its output unwritten and makes the encoder's next wait (CPU: commit) fail
 * with QN_ERR_INVALID_ARGUMENT. */
qn_status qn_qmatmul_id(qn_encoder *enc, qn_tensor y, qn_tensor w, qn_tensor x, qn_tensor ids);
qn_status qn_qmatmul_glu_id(qn_encoder *enc, qn_tensor y, qn_tensor gate, qn_tensor up, qn_tensor x, qn_tensor ids,
                            qn_act act);
/* Which kernel(s) a request of N x K weights of `wtype` times M tokens runs
 * on `dev`, as text. */
qn_status qn_qmatmul_plan(qn_device *dev, qn_dtype wtype, int64_t n, int64_t k, int64_t m, char *out, size_t len);
/* The same for an expert-routed request of `top_k` of `n_experts` experts. */
qn_status qn_qmatmul_id_plan(qn_device *dev, qn_dtype wtype, int64_t n, int64_t k, int64_t m, int64_t n_experts,
                             int64_t top_k, char *out, size_t len);

/* The same products with W in MLX's affine format (qn_mlx_weight: bits 2,
 * 3, 4, 6 or 8, groups of 32, 64 or 128, f16, bf16 or f32 scales and
 * biases in contiguous rows): W is N rows of K weights, q [K * bits / 32,
 * N], scales and biases [K / group, N]; for the routed form [.., N,
 * n_experts], as MLX's SwitchGLU stacks its experts. x, y, ids and act as
 * above. On the GPU, q rows start at multiples of 16 bytes (4 and 8 bits),
 * 8 bytes (2 and 6 bits) or 4 bytes (3 bits), and x values must stay below
 * 2^43 in magnitude. */
qn_status qn_qmatmul_mlx(qn_encoder *enc, qn_tensor y, const qn_mlx_weight *w, qn_tensor x);
qn_status qn_qmatmul_mlx_glu(qn_encoder *enc, qn_tensor y, const qn_mlx_weight *gate, const qn_mlx_weight *up,
                             qn_tensor x, qn_act act);
qn_status qn_qmatmul_mlx_id(qn_encoder *enc, qn_tensor y, const qn_mlx_weight *w, qn_tensor x, qn_tensor ids);
qn_status qn_qmatmul_mlx_glu_id(qn_encoder *enc, qn_tensor y, const qn_mlx_weight *gate, const qn_mlx_weight *up,
                                qn_tensor x, qn_tensor ids, qn_act act);
/* Which kernel(s) an MLX affine request of N x K weights times M tokens
 * (routed: with n_experts experts, top_k a token) runs on `dev`, as text. */
qn_status qn_qmatmul_mlx_plan(qn_device *dev, qn_mlx_quant p, int64_t n, int64_t k, int64_t m, char *out, size_t len);
qn_status qn_qmatmul_mlx_id_plan(qn_device *dev, qn_mlx_quant p, int64_t n, int64_t k, int64_t m, int64_t n_experts,
                                 int64_t top_k, char *out, size_t len);

/* ------------------------------------------------ quantized matmul (end) */

/* ------------------------------------------------ attention (begin)
 * A KV cache and flash attention over it, for decode (1 to 8 new tokens)
 * and prefill (any number, tensor cores).
 *
 * Layouts (innermost first, as every tensor here):
 *   q, out     [head_dim, n_q_heads, n_tokens] f32, rows contiguous (nb[0] 4)
 *   k, v cache [head_dim, capacity, n_kv_heads] f16, bf16 or q8_0, rows
 *              contiguous; for f16/bf16 the offset and strides are
 *              multiples of 16 bytes (the GPU reads 16 bytes at a time)
 *   new k, v   [head_dim, n_kv_heads, n_tokens] f32 (a projection's output)
 *   pos        i32 [>= 1]: pos[0] = p0, the position of the first new token
 *              (the tokens already in the cache). Read by the kernels when
 *              they run, so one captured graph serves every step: write
 *              pos before each replay.
 *   sinks      f32 [n_q_heads] or NULL: a learned logit per query head that
 *              joins the softmax's denominator only (gpt-oss).
 *
 * Positions and the ring: position j lives in cache row j % capacity. A
 * cache at least as long as the context never wraps; a sliding-window layer
 * can use a ring of capacity >= window + n_tokens - 1. Either way the keys
 * seen are the last `capacity` positions at most: older ones have been
 * overwritten.
 *
 * Queries: token t (0 <= t < n_tokens) is at position p0 + t; query head h
 * reads kv head h / (n_q_heads / n_kv_heads) (grouped-query attention of
 * any ratio). Keys visible to it, besides the ring's limit:
 *   QN_ATTN_MASK_NONE    positions 0 .. p0 + n_tokens - 1
 *   QN_ATTN_MASK_CAUSAL  positions 0 .. p0 + t
 *   QN_ATTN_MASK_WINDOW  positions p0 + t - window + 1 .. p0 + t
 * so a chunked prefill continues from the cache: queries at p0 .. p0+n-1
 * attend to cache positions 0 .. p0+n-1 (append the chunk's K and V first).
 *
 * logit = scale * q.k, then with softcap > 0: softcap * tanh(logit /
 * softcap); out = sum_j softmax_j v_j, the softmax over the visible logits
 * and the sink. Head dims 64, 80, 96, 128, 256 and 512 (q8_0: multiples of
 * 32). */

/* Append n_tokens new rows: cache[:, (p0 + t) % capacity, h] = src[:, h, t],
 * converted to the cache's dtype (f16, bf16: round to nearest even; q8_0:
 * ggml's blocks of 32, d = amax / 127 stored as f16, q = round(x / d)).
 * n_tokens <= capacity. src f32, f16 or bf16. */
qn_status qn_kv_cache_append(qn_encoder *enc, qn_tensor cache, qn_tensor src, qn_tensor pos);

typedef enum {
    QN_ATTN_MASK_NONE = 0,
    QN_ATTN_MASK_CAUSAL = 1,
    QN_ATTN_MASK_WINDOW = 2,
} qn_attn_mask;

/* Per-model constants of an attention layer. */
typedef struct {
    float scale;       /* usually 1 / sqrt(head_dim); finite                  */
    float softcap;     /* 0: off; > 0: logits squashed to (-softcap, softcap) */
    qn_attn_mask mask;
    int32_t window;    /* QN_ATTN_MASK_WINDOW: keys p - window + 1 .. p; >= 1 */
} qn_attn_opts;

/* Decode: 1 to 8 query tokens over a cache of f16, bf16 or q8_0. The GPU
 * splits the cache across blocks and merges their partial softmaxes, in
 * `scratch`: an f32 tensor, contiguous, of at least the number of
 * elements qn_flash_attn_scratch gives for these shapes on this device (0 on
 * the CPU, where scratch may be NULL). A scratch belongs to one op at a
 * time in flight. */
qn_status qn_flash_attn_decode(qn_encoder *enc, qn_tensor out, qn_tensor q, qn_tensor k, qn_tensor v,
                               qn_tensor pos, const qn_tensor *sinks, const qn_tensor *scratch,
                               qn_attn_opts opts);
/* Prefill: any number of query tokens (at most the capacity) with tensor
 * cores; the cache is f16 or bf16, and q and the softmax weights are
 * rounded to it on the GPU (f32 accumulation). Same arguments. */
qn_status qn_flash_attn_prefill(qn_encoder *enc, qn_tensor out, qn_tensor q, qn_tensor k, qn_tensor v,
                                qn_tensor pos, const qn_tensor *sinks, const qn_tensor *scratch,
                                qn_attn_opts opts);
/* f32 elements of scratch an op needs for q [head_dim, n_q_heads, n_tokens]
 * and a cache k [head_dim, capacity, n_kv_heads] on `dev` (only their shapes
 * are read); `prefill` chooses the op. */
qn_status qn_flash_attn_scratch(qn_device *dev, bool prefill, qn_tensor q, qn_tensor k, int64_t *elems);

/* ------------------------------------------------ attention (end) */

/* ------------------------------------------------ gated delta net (begin)
 * The linear-attention layer of hybrid models (Qwen3-Next, Qwen3.5). Each
 * value head h keeps a state S_h (d_v x d_k, f32) that every token decays,
 * corrects toward its value and reads with its query:
 *
 *   S = exp(g) * S;   S += beta * (v - S k) k^T;   o = S q
 *
 * q and k are L2-normalised inside the op, x / sqrt(sum(x^2) + 1e-6), and q
 * is then multiplied by `scale` (1/sqrt(d_k) in Qwen3-Next and Qwen3.5).
 *
 * Layouts (ne, innermost first; T tokens, B independent sequences):
 *   q, k       [d_k, n_k_heads, T, B]   f32, f16 or bf16 (q, k, v one dtype)
 *   v, out     [d_v, n_v_heads, T, B]   out f32, f16 or bf16
 *   g, beta    [n_v_heads, T, B]        f32, f16 or bf16; g is the log of the
 *                                       decay (<= 0), beta in (0, 1)
 *   state      [d_k, d_v, n_v_heads, B] f32: S of shape [B][heads][d_v][d_k]
 *                                       row-major; ne[0] contiguous and every
 *                                       row 16-byte aligned
 * d_k and d_v are 128 or 256. n_v_heads is a multiple of n_k_heads; value
 * head h reads key head h / (n_v_heads / n_k_heads) (as repeat_interleave).
 * Any strides for q, k, v, g, beta and out, so they can be views into a
 * fused projection. */

/* Bytes of scratch memory qn_gated_delta_net needs on `dev` for this shape:
 * 0 on the CPU and for T = 1 (decode), else about
 * 4 * B * n_v_heads * ceil(T / 64) * (64 * (2 d_k + d_v + 1) + d_k * d_v). */
size_t qn_gated_delta_net_workspace(qn_device *dev, int64_t d_k, int64_t d_v, int64_t n_v_heads, int64_t n_tokens,
                                    int64_t n_seqs);
/* Run T tokens of every head and sequence from state_in, writing each
 * token's output and the final state to state_out. state_out may be
 * state_in itself (updated in place) but must not otherwise overlap it.
 * `workspace` is any contiguous tensor of at least
 * qn_gated_delta_net_workspace bytes, 16-byte aligned (ignored, and may be
 * a tensor with no buffer, when that is 0).
 * On the GPU, T = 1 runs the recurrence directly (a decode step reads
 * nothing from the host, so it can be captured in a graph); longer inputs
 * run the chunked form (64-token chunks, tensor cores in TF32). The CPU runs
 * the token-by-token recurrence in f64. */
qn_status qn_gated_delta_net(qn_encoder *enc, qn_tensor out, qn_tensor state_out, qn_tensor q, qn_tensor k,
                             qn_tensor v, qn_tensor g, qn_tensor beta, qn_tensor state_in, qn_tensor workspace,
                             float scale);

/* Causal depthwise convolution over time, then SiLU, with the last W - 1
 * inputs carried between calls:
 *   out[c, t] = silu(sum_j weight[j, c] * xs[c, t + j]),  j = 0 .. W-1,
 * where xs = the W - 1 carried inputs (state_in, oldest first) followed by
 * x. state_out receives the last W - 1 columns of xs; it may be state_in
 * itself but must not otherwise overlap it.
 *   x, out     [C, T, B]     weight [W, C] (2 <= W <= 8)
 *   state      [C, W - 1, B] (the same layout as x: W - 1 past tokens)
 * f32, f16 or bf16 in any mix; computed in f32. */
qn_status qn_gdn_conv1d(qn_encoder *enc, qn_tensor out, qn_tensor state_out, qn_tensor x, qn_tensor weight,
                        qn_tensor state_in);

/* The decay and the write strength from their projections (Qwen3-Next):
 *   g = -exp(a_log[h]) * softplus(a + dt_bias[h]),   beta = sigmoid(b)
 * a, b, g, beta [H, T, B]; a_log, dt_bias [H]. softplus(x) = log(1 + e^x),
 * x beyond 20 taken as is. f32, f16 or bf16 in any mix; computed in f32. */
qn_status qn_gdn_gates(qn_encoder *enc, qn_tensor g, qn_tensor beta, qn_tensor a, qn_tensor b, qn_tensor a_log,
                       qn_tensor dt_bias);

/* The gated output norm, per row of ne[0] = D:
 *   out = x / sqrt(mean(x^2) + eps) * weight * silu(z)
 * x, z, out [D, ...] (same shape); weight [D]. f32, f16 or bf16 in any mix;
 * computed in f32. */
qn_status qn_gdn_gated_norm(qn_encoder *enc, qn_tensor out, qn_tensor x, qn_tensor z, qn_tensor weight, float eps);

/* ------------------------------------------------ gated delta net (end) */

/* ------------------------------------------------ models (begin)
 * Whole models from a GGUF file: the tokenizer of its vocabulary, the
 * weights on a device, and contexts (a KV cache and per-step buffers) that
 * evaluate tokens and sample the next one. Architectures: gemma3. */

/* ---- tokenizer (tokenizer.ggml.model "llama": SentencePiece with byte
 * fallback), encoding and decoding as llama.cpp does. */
typedef struct qn_tokenizer qn_tokenizer;

/* Read the vocabulary of a GGUF file (copied: the file may be closed after).
 * A key of the wrong type, or an array whose element type or length does
 * not match tokenizer.ggml.tokens, is QN_ERR_FORMAT naming the key. */
qn_status qn_tokenizer_load(const qn_gguf *g, qn_tokenizer **out);
void qn_tokenizer_free(qn_tokenizer *t);
int32_t qn_tokenizer_vocab_size(const qn_tokenizer *t);
/* Token ids; -1 where the vocabulary has none. */
int32_t qn_tokenizer_bos(const qn_tokenizer *t);
int32_t qn_tokenizer_eos(const qn_tokenizer *t);
/* The id whose text is exactly `text` (e.g. "<end_of_turn>"), or -1. */
int32_t qn_token_find(const qn_tokenizer *t, const char *text);
/* True for the tokens that end generation: end of sequence, end of turn. */
bool qn_token_is_eog(const qn_tokenizer *t, int32_t id);
/* Text to token ids. add_special: BOS (and EOS) where the vocabulary asks
 * for them; parse_special: control tokens written in the text ("<bos>",
 * "<start_of_turn>") become those tokens, else they are text. All ids are
 * counted in *n_ids; those that fit in cap are written; more than cap is
 * QN_ERR_INVALID_ARGUMENT (call again with cap >= *n_ids). */
qn_status qn_tokenize(const qn_tokenizer *t, const char *text, size_t len, bool add_special, bool parse_special,
                      int32_t *ids, size_t cap, size_t *n_ids);
/* The text of a token (not NUL-terminated; it lives as long as t): spaces
 * restored, a byte token its byte. Control tokens give "" unless special. */
qn_status qn_token_to_piece(const qn_tokenizer *t, int32_t id, bool special, const char **piece, size_t *len);

/* ---- models */
typedef struct qn_model qn_model;

typedef struct {
    char arch[32];        /* general.architecture, "gemma3"             */
    char name[128];       /* general.name, or the file name             */
    int32_t n_vocab;
    int32_t n_embd;
    int32_t n_layer;
    int32_t n_ctx_train;  /* the context it was trained for             */
    uint64_t weight_bytes; /* bytes of its tensors on the device         */
} qn_model_info;

/* Load a GGUF model onto `dev`. Its metadata is checked before use: a
 * missing or mistyped key, a tokenizer array that does not match the
 * vocabulary, a missing tensor or one of the wrong shape are QN_ERR_FORMAT
 * naming it; an architecture quanta lacks is QN_ERR_UNSUPPORTED.
 * `progress` (may be NULL) is called as tensors are uploaded, with bytes
 * done and total. */
qn_status qn_model_load(qn_device *dev, const char *path, qn_progress_fn progress, void *user, qn_model **out);
void qn_model_free(qn_model *m);
qn_status qn_model_info_get(const qn_model *m, qn_model_info *out);
const qn_tokenizer *qn_model_tokenizer(const qn_model *m);

/* ---- chat templates
 * A conversation as the model was trained to see it (Gemma's turns
 * "<start_of_turn>user\n...<end_of_turn>\n"; a "system" message goes in
 * front of the first user turn). add_generation_prompt ends with the
 * opening of the model's turn. The text (NUL-terminated) is written when
 * it fits in cap bytes; *len gets its length either way (QN_ERR_INVALID_
 * ARGUMENT when it does not fit). */
typedef struct {
    const char *role;    /* "system", "user", "assistant" (or "model") */
    const char *content;
} qn_chat_message;

qn_status qn_chat_format(const qn_model *m, const qn_chat_message *msgs, size_t n, bool add_generation_prompt,
                         char *out, size_t cap, size_t *len);

/* ---- contexts: one sequence's KV cache and step buffers */
typedef struct qn_context qn_context;

/* A context of n_ctx positions (1 .. the model's training context). Local
 * (sliding-window) layers keep a ring of about window + prompt chunk rows,
 * global layers n_ctx rows; f16 keys and values. */
qn_status qn_context_create(qn_model *m, int32_t n_ctx, qn_context **out);
void qn_context_free(qn_context *c);
/* Tokens evaluated so far (the next token's position). */
int32_t qn_context_pos(const qn_context *c);
int32_t qn_context_size(const qn_context *c);
/* Forget the sequence (position 0 again). */
void qn_context_reset(qn_context *c);
/* Evaluate n tokens at the current position (prefill in chunks, or one
 * token); the logits of the last one stay on the device. */
qn_status qn_context_eval(qn_context *c, const int32_t *ids, size_t n);
/* The last evaluated token's logits (n_vocab floats) to the host. */
qn_status qn_context_logits(qn_context *c, float *out, size_t n);
/* Sample the next token from the last logits on the device (repeat_penalty
 * must be 1). The token stays on the device for qn_context_decode. */
qn_status qn_context_sample(qn_context *c, const qn_sample_params *p, int32_t *token);
/* Evaluate the token sampled last and sample the one after it: one decode
 * step, captured as a graph on first use (again when p changes) and
 * replayed; only the new id comes back to the host. */
qn_status qn_context_decode(qn_context *c, const qn_sample_params *p, int32_t *token);

/* ------------------------------------------------ models (end) */

#ifdef __cplusplus
}
#endif
#endif /* QUANTA_H */
