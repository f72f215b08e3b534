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
/* Make `waiter`'s later work wait for all work encoded so far on `signaler`. */
qn_status qn_cuda_encoder_after(qn_encoder *waiter, qn_encoder *signaler);

/* Launch function `fn` of the registered kernel variant (source, defines)
 * on the encoder's stream. `op` names the op for profiles and errors. */
qn_status qn_cuda_launch(qn_encoder *enc, const char *op, const char *source, const char *defines,
                         const char *fn, qn_dim3 grid, qn_dim3 block, unsigned smem, void **args);
/* Programmatic dependent launch (sm_90 and later): a kernel launched this
 * way waits (griddepcontrol.wait) before it touches what earlier kernels
 * wrote, writes only [writes_lo, writes_hi) and lets the next kernel start
 * (griddepcontrol.launch_dependents) only after its wait. When the kernel
 * before it on the stream was launched this way too, it may start while
 * that one finishes; what it reads before waiting must then not be in that
 * kernel's writes: qn_cuda_pdl_overlaps says whether [lo, hi) is. */
qn_status qn_cuda_launch_pdl(qn_encoder *enc, const char *op, const char *source, const char *defines,
                             const char *fn, qn_dim3 grid, qn_dim3 block, unsigned smem, void **args,
                             uint64_t writes_lo, uint64_t writes_hi);
bool qn_cuda_pdl_overlaps(const qn_encoder *enc, uint64_t lo, uint64_t hi);

qn_status qn_cuda_graph_begin(qn_encoder *enc);
qn_status qn_cuda_graph_end(qn_encoder *enc, qn_graph *g);
qn_status qn_cuda_graph_launch(qn_graph *g, qn_encoder *enc);
void qn_cuda_graph_destroy(qn_graph *g);

/* NVRTC target for a compute capability: "sm_90a" for 9.0 (so Hopper's own
 * instructions are available), else "sm_XY". */
void qn_cuda_arch_name(int cc_major, int cc_minor, char *out, size_t out_len);

#endif
