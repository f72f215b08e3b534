/* The CUDA backend as the rest of the library sees it: memory, streams,
 * kernel launch, graphs and events. Every function sets the device's context
 * on the calling thread first, so any thread may call them. */
#ifndef QN_CUDA_CUDA_H
#define QN_CUDA_CUDA_H

#include "core/internal.h"

typedef struct {
    unsigned x, y, z;
} qn_dim3;

qn_status qn_cuda_device_count(int *count);
qn_status qn_cuda_device_open(qn_device *dev, int index);
void qn_cuda_device_close(qn_device *dev);
qn_status qn_cuda_mem_info(qn_device *dev, uint64_t *free_bytes, uint64_t *total_bytes);
qn_status qn_cuda_synchronize(qn_device *dev);
/* Bytes of dynamic shared memory one block may use (after opting in). */
int qn_cuda_smem_optin(const qn_device *dev);

qn_status qn_cuda_alloc(qn_device *dev, size_t bytes, uint64_t *addr);
void qn_cuda_free(qn_device *dev, uint64_t addr);
qn_status qn_cuda_write(qn_device *dev, uint64_t addr, const void *src, size_t bytes);
qn_status qn_cuda_read(qn_device *dev, uint64_t addr, void *dst, size_t bytes);

qn_status qn_cuda_encoder_init(qn_encoder *enc);
void qn_cuda_encoder_fini(qn_encoder *enc);
qn_status qn_cuda_encoder_wait(qn_encoder *enc);
/* Fill enc->times from the profile events recorded since the last clear. */
qn_status qn_cuda_encoder_profile(qn_encoder *enc);
void qn_cuda_encoder_profile_clear(qn_encoder *enc);
/* Device memory for the ops whose blocks merge their partial results
 * through it (sampling): QN_CUDA_MERGE_SCRATCH_BYTES, made and zeroed on the
 * encoder's first request. It begins with QN_CUDA_MERGE_SCRATCH_COUNTERS u32
 * counters (the last-block tickets), which every op leaves at zero for the
 * next op or graph replay and never uses for anything else; the rest is
 * free for each op's data. Ops on one stream run one after another, so they
 * share it. A graph captured on the encoder keeps using this memory. */
#define QN_CUDA_MERGE_SCRATCH_BYTES (1u << 20)
#define QN_CUDA_MERGE_SCRATCH_COUNTERS 4096u
qn_status qn_cuda_encoder_merge_scratch(qn_encoder *enc, uint64_t *addr);
/* At least `bytes` of device memory for the op being encoded, valid in
 * stream order: the encoder's later ops (and replays of graphs captured on
 * it) may reuse it, so an op must be done with it when it ends. */
qn_status qn_cuda_encoder_scratch(qn_encoder *enc, size_t bytes, uint64_t *addr);
/* Make `waiter`'s later work wait for all work encoded so far on `signaler`. */
qn_status qn_cuda_encoder_after(qn_encoder *waiter, qn_encoder *signaler);

/* Launch function `fn` of the registered kernel variant (source, defines)
 * on the encoder's stream. `op` names the op for profiles and errors. */
qn_status qn_cuda_launch(qn_encoder *enc, const char *op, const char *source, const char *defines,
                         const char *fn, qn_dim3 grid, qn_dim3 block, unsigned smem, void **args);
/* Programmatic dependent launch (sm_90 and later): a kernel launched this
 * way waits (griddepcontrol.wait) before it touches what earlier kernels
 * wrote, writes only [writes_lo, writes_hi) and lets the next kernel start
 * (griddepcontrol.launch_dependents) only after its wait. It may start
 * while the kernel before it on the stream finishes; what it reads before
 * waiting must then not be in what that kernel may still write:
 * qn_cuda_pdl_overlaps says whether [lo, hi) is (a kernel launched by
 * qn_cuda_launch counts as writing everything). */
qn_status qn_cuda_launch_pdl(qn_encoder *enc, const char *op, const char *source, const char *defines,
                             const char *fn, qn_dim3 grid, qn_dim3 block, unsigned smem, void **args,
                             uint64_t writes_lo, uint64_t writes_hi);
bool qn_cuda_pdl_overlaps(const qn_encoder *enc, uint64_t lo, uint64_t hi);

qn_status qn_cuda_graph_begin(qn_encoder *enc);
qn_status qn_cuda_graph_end(qn_encoder *enc, qn_graph *g);
qn_status qn_cuda_graph_launch(qn_graph *g, qn_encoder *enc);
void qn_cuda_graph_destroy(qn_graph *g);

/* Shared memory a block may use (opting in above 48 KiB, as qn_cuda_launch
 * does) and a multiprocessor holds, in bytes. */
void qn_cuda_smem_limits(qn_device *dev, int *per_block, int *per_sm);

/* NVRTC target for a compute capability: "sm_90a" for 9.0 (so Hopper's own
 * instructions are available), else "sm_XY". */
void qn_cuda_arch_name(int cc_major, int cc_minor, char *out, size_t out_len);

#endif
